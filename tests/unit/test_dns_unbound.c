/*
 * test_dns_unbound - the libunbound backend (dns/unbound.c) against a tiny
 * DNS responder on a loopback UDP port, run on the same event loop, so no
 * network is needed. No trust anchors: everything is insecure here (DNSSEC
 * validation is covered end to end by tests/integration/test_dnssec.py).
 *
 * The responder answers by the first label of the question:
 *   nx.*        NXDOMAIN            nodata.*   NOERROR, no answer
 *   servfail.*  SERVFAIL            silent.*   never answers
 *   raw.*       names in the data hold a space and 0xC3 0xA9
 *   dot.*       names in the data hold a '.' inside a label
 *   anything else: one or two records of the type asked for (see answer()).
 * It keeps the last question's name as it came on the wire.
 *
 * Checked: record data parsed from wire format for every type; status
 * mapping; answers arrive from the loop, never inside dns_resolve();
 * dns_close() cancels outstanding queries (no callback afterwards, nothing
 * leaked), also from inside a callback; bad setup is refused at open;
 * raw-text names (a space, bytes >= 0x80, printable specials) leave as
 * exactly their octets, and names in answers arrive as raw octets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "core/buf.h"
#include "dns/dns.h"
#include "dns/unbound.h"

/* ----------------------------------------------------------- responder */

struct responder {
    int fd;
    uint16_t port;
    struct event *ev;
    unsigned queries;
    uint8_t qname[256];   /* the last question's name, wire format */
    size_t qnamelen;
};

static void put16(uint8_t *p, size_t *n, uint16_t v)
{
    p[(*n)++] = (uint8_t)(v >> 8);
    p[(*n)++] = (uint8_t)v;
}

static void put32(uint8_t *p, size_t *n, uint32_t v)
{
    put16(p, n, (uint16_t)(v >> 16));
    put16(p, n, (uint16_t)v);
}

static void put_bytes(uint8_t *p, size_t *n, const void *b, size_t len)
{
    memcpy(p + *n, b, len);
    *n += len;
}

/* An RR with owner = the question name (a pointer to offset 12). */
static void put_rr(uint8_t *p, size_t *n, uint16_t type, const void *rdata, size_t rdlen)
{
    put16(p, n, 0xc00c);
    put16(p, n, type);
    put16(p, n, 1);
    put32(p, n, 60);
    put16(p, n, (uint16_t)rdlen);
    put_bytes(p, n, rdata, rdlen);
}

static const uint8_t target_name[] = "\6target\7example"; /* + the final 0 from the literal */
static const uint8_t raw_name[] = "\5a b\xc3\xa9\7example";
static const uint8_t dot_name[] = "\3a.b\7example";

/* Answers for an ordinary name, names in the data being target (with its
 * final 0); returns the number of RRs written. */
static unsigned answer(uint8_t *p, size_t *n, uint16_t qtype, const uint8_t *target,
                       size_t tlen)
{
    switch (qtype) {
    case DNS_T_A:
        put_rr(p, n, qtype, "\xc0\x00\x02\x01", 4);
        put_rr(p, n, qtype, "\xc0\x00\x02\x02", 4);
        return 2;
    case DNS_T_AAAA:
        put_rr(p, n, qtype, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
        return 1;
    case DNS_T_MX: {
        uint8_t rd[64] = { 0, 10 };
        memcpy(rd + 2, target, tlen);
        put_rr(p, n, qtype, rd, 2 + tlen);
        put_rr(p, n, qtype, "\0\0\0", 3);   /* null MX: 0 . */
        return 2;
    }
    case DNS_T_TXT:
        put_rr(p, n, qtype, "\6hello \6w\"o\\d\0", 14);   /* a NUL inside */
        return 1;
    case DNS_T_TLSA:
        put_rr(p, n, qtype, "\3\1\1\xab\xcd", 5);
        return 1;
    case DNS_T_CNAME:
    case DNS_T_PTR:
    case DNS_T_NS:
        put_rr(p, n, qtype, target, tlen);
        return 1;
    }
    return 0;
}

static void on_query(evutil_socket_t fd, short what, void *arg)
{
    struct responder *r = arg;
    uint8_t q[512], p[1024];
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof(from);
    ssize_t len = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fromlen);
    if (len < 17)
        return;
    r->queries++;
    /* The question: labels from offset 12, then type and class. */
    size_t i = 12;
    while (i < (size_t)len && q[i] != 0)
        i += 1u + q[i];
    if (i + 5 > (size_t)len)
        return;
    size_t qend = i + 5;
    r->qnamelen = i + 1 - 12 <= sizeof(r->qname) ? i + 1 - 12 : 0;
    memcpy(r->qname, q + 12, r->qnamelen);
    uint16_t qtype = (uint16_t)(q[i + 1] << 8 | q[i + 2]);
    const char *label = (const char *)q + 13;
    size_t llen = q[12];
    uint16_t rcode = 0;
    if (llen == 6 && memcmp(label, "silent", 6) == 0)
        return;
    if (llen == 2 && memcmp(label, "nx", 2) == 0)
        rcode = 3;
    if (llen == 8 && memcmp(label, "servfail", 8) == 0)
        rcode = 2;
    bool nodata = llen == 6 && memcmp(label, "nodata", 6) == 0;
    const uint8_t *target = target_name;
    size_t tlen = sizeof(target_name);
    if (llen == 3 && memcmp(label, "raw", 3) == 0) {
        target = raw_name;
        tlen = sizeof(raw_name);
    } else if (llen == 3 && memcmp(label, "dot", 3) == 0) {
        target = dot_name;
        tlen = sizeof(dot_name);
    }

    size_t n = 0;
    put16(p, &n, (uint16_t)(q[0] << 8 | q[1]));
    put16(p, &n, (uint16_t)(0x8580 | rcode));   /* QR AA RD RA */
    put16(p, &n, 1);
    n += 6;   /* ancount, nscount, arcount: filled below */
    put_bytes(p, &n, q + 12, qend - 12);
    unsigned an = 0, ns = 0;
    if (rcode == 0 && !nodata) {
        an = answer(p, &n, qtype, target, tlen);
    } else if (rcode != 2) {
        /* SOA of the parent, for a negative answer: owner = the question
         * name minus its first label; mname and rname the root. */
        uint8_t soa[22] = { 0, 0 };
        size_t sn = 2;
        put32(soa, &sn, 1);
        put32(soa, &sn, 3600);
        put32(soa, &sn, 600);
        put32(soa, &sn, 86400);
        put32(soa, &sn, 60);
        put16(p, &n, (uint16_t)(0xc000 | (12 + 1 + llen)));
        put16(p, &n, 6);
        put16(p, &n, 1);
        put32(p, &n, 60);
        put16(p, &n, sizeof(soa));
        put_bytes(p, &n, soa, sizeof(soa));
        ns = 1;
    }
    p[6] = 0;
    p[7] = (uint8_t)an;
    p[8] = 0;
    p[9] = (uint8_t)ns;
    p[10] = p[11] = 0;
    sendto(fd, p, n, 0, (struct sockaddr *)&from, fromlen);
}

static void responder_start(struct responder *r, struct event_base *base)
{
    r->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(r->fd >= 0);
    struct sockaddr_in sin = { .sin_family = AF_INET };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(r->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t sl = sizeof(sin);
    assert_int_equal(getsockname(r->fd, (struct sockaddr *)&sin, &sl), 0);
    r->port = ntohs(sin.sin_port);
    r->ev = event_new(base, r->fd, EV_READ | EV_PERSIST, on_query, r);
    assert_int_equal(event_add(r->ev, NULL), 0);
}

static void responder_stop(struct responder *r)
{
    event_free(r->ev);
    close(r->fd);
}

/* ------------------------------------------------------------ fixtures */

struct world {
    struct event_base *base;
    struct responder resp;
    struct dns_resolver r;
    char fwd[32];
};

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    w->base = event_base_new();
    assert_non_null(w->base);
    responder_start(&w->resp, w->base);
    snprintf(w->fwd, sizeof(w->fwd), "127.0.0.1@%u", (unsigned)w->resp.port);
    const char *fwd[] = { w->fwd };
    struct dns_unbound_opts o = { .forwarders = fwd, .nforwarders = 1, .trust_anchor_file = "" };
    struct buf err = { 0 };
    if (dns_unbound_open(w->base, &o, &w->r, &err) != 0)
        fail_msg("dns_unbound_open: %s", buf_ptr(&err));
    buf_free(&err);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    dns_close(&w->r);
    responder_stop(&w->resp);
    event_base_free(w->base);
    free(w);
    return 0;
}

struct got {
    int calls;
    struct buf text;
    struct event_base *base;
    int stop_after;   /* loopbreak after this many answers */
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "status|rr2|rr1" -> "status|rr1|rr2": libunbound rotates RRsets. */
static void sort_records(struct buf *text)
{
    char *copy = strdup(buf_ptr(text)), *parts[16];
    size_t n = 0;
    for (char *p = strchr(copy, '|'); p != NULL && n < 16; p = strchr(p, '|')) {
        *p++ = '\0';
        parts[n++] = p;
    }
    qsort(parts, n, sizeof(parts[0]), cmp_str);
    struct buf out = { 0 };
    buf_append_str(&out, copy);
    for (size_t i = 0; i < n; i++)
        buf_printf(&out, "|%s", parts[i]);
    buf_reset(text);
    buf_append(text, buf_ptr(&out), buf_size(&out));
    buf_free(&out);
    free(copy);
}

static void collect(void *arg, const struct dns_answer *ans)
{
    struct got *g = arg;
    g->calls++;
    buf_reset(&g->text);
    buf_printf(&g->text, "%s %s", dns_status_name(ans->status), dns_sec_name(ans->sec));
    for (size_t i = 0; i < ans->n; i++) {
        const struct dns_rr *rr = &ans->rr[i];
        char addr[INET6_ADDRSTRLEN];
        /* 60 from the responder; a cached copy may be a second or two older */
        if (rr->ttl > 60 || rr->ttl < 50)
            fail_msg("ttl %u", (unsigned)rr->ttl);
        buf_printf(&g->text, "|%s ", dns_type_name(rr->type));
        switch (rr->type) {
        case DNS_T_A: buf_append_str(&g->text, inet_ntop(AF_INET, rr->u.a, addr, sizeof(addr))); break;
        case DNS_T_AAAA: buf_append_str(&g->text, inet_ntop(AF_INET6, rr->u.aaaa, addr, sizeof(addr))); break;
        case DNS_T_MX: buf_printf(&g->text, "%u %s", (unsigned)rr->u.mx.pref, rr->u.mx.host); break;
        case DNS_T_TXT:
            buf_printf(&g->text, "%zu:", rr->u.txt.len);
            for (size_t k = 0; k < rr->u.txt.len; k++) {
                if (rr->u.txt.data[k] == '\0')
                    buf_append_str(&g->text, "\\0");
                else
                    buf_append_byte(&g->text, rr->u.txt.data[k]);
            }
            break;
        case DNS_T_TLSA:
            buf_printf(&g->text, "%u %u %u %zu", rr->u.tlsa.usage, rr->u.tlsa.selector,
                       rr->u.tlsa.mtype, rr->u.tlsa.len);
            for (size_t k = 0; k < rr->u.tlsa.len; k++)
                buf_printf(&g->text, " %02x", rr->u.tlsa.data[k]);
            break;
        default: buf_append_str(&g->text, rr->u.name); break;
        }
    }
    sort_records(&g->text);
    if (g->base && g->calls >= g->stop_after)
        event_base_loopbreak(g->base);
}

static void run_loop(struct event_base *base, int seconds)
{
    struct timeval tv = { seconds, 0 };
    event_base_loopexit(base, &tv);   /* only a guard against hangs */
    event_base_dispatch(base);
}

static const char *lookup(struct world *w, struct got *g, const char *name, enum dns_type t)
{
    g->calls = 0;
    g->base = w->base;
    g->stop_after = 1;
    dns_resolve(&w->r, name, t, collect, g);
    assert_int_equal(g->calls, 0);   /* never inside dns_resolve() */
    run_loop(w->base, 20);
    assert_int_equal(g->calls, 1);
    return buf_ptr(&g->text);
}

/* --------------------------------------------------------------- tests */

static void test_records(void **state)
{
    struct world *w = *state;
    static const struct { const char *name; enum dns_type type; const char *want; } cases[] = {
        { "host.example", DNS_T_A, "ok insecure|A 192.0.2.1|A 192.0.2.2" },
        { "host.example", DNS_T_AAAA, "ok insecure|AAAA 2001:db8::1" },
        { "host.example", DNS_T_MX, "ok insecure|MX 0 .|MX 10 target.example" },
        { "host.example", DNS_T_TXT, "ok insecure|TXT 12:hello w\"o\\d\\0" },
        { "_25._tcp.host.example", DNS_T_TLSA, "ok insecure|TLSA 3 1 1 2 ab cd" },
        { "host.example", DNS_T_CNAME, "ok insecure|CNAME target.example" },
        { "4.3.2.1.in-addr.arpa", DNS_T_PTR, "ok insecure|PTR target.example" },
        { "host.example", DNS_T_NS, "ok insecure|NS target.example" },
        { "nx.example", DNS_T_A, "nxdomain insecure" },
        { "nodata.example", DNS_T_A, "nodata insecure" },
        { "servfail.example", DNS_T_A, "tempfail insecure" },
    };
    struct got g = { 0 };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = lookup(w, &g, cases[i].name, cases[i].type);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("%s %s\n  got  [%s]\n  want [%s]", cases[i].name,
                     dns_type_name(cases[i].type), got, cases[i].want);
    }
    /* A bad name is refused before libunbound sees it, synchronously. */
    g.calls = 0;
    dns_resolve(&w->r, "a..b", DNS_T_A, collect, &g);
    assert_int_equal(g.calls, 1);
    assert_string_equal(buf_ptr(&g.text), "permfail insecure");
    buf_free(&g.text);
}

/* Raw-text questions leave as exactly their octets; names in answers come
 * back as raw octets; a label with a '.' inside cannot be raw text. */
static void test_raw_names(void **state)
{
    struct world *w = *state;
    static const struct { const char *name; const char *wire; size_t wirelen; } q[] = {
#define W(s) s, sizeof(s)   /* with the final 0 */
        { "sp ace.\xc3\xa9t\xc3\xa9.example", W("\6sp ace\5\xc3\xa9t\xc3\xa9\7example") },
        { "macro%percent  space%20url-space.example.",
          W("\x20macro%percent  space%20url-space\7example") },
        { "q\\\"(;)@$/.x\x01\x7f\xff.example", W("\x09q\\\"(;)@$/\4x\x01\x7f\xff\7example") },
        { "a\\032b.-_*.example", W("\6a\\032b\3-_*\7example") },
#undef W
    };
    struct got g = { 0 };
    for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
        const char *got = lookup(w, &g, q[i].name, DNS_T_A);
        if (strcmp(got, "ok insecure|A 192.0.2.1|A 192.0.2.2") != 0)
            fail_msg("%s: %s", q[i].name, got);
        if (w->resp.qnamelen != q[i].wirelen ||
            memcmp(w->resp.qname, q[i].wire, q[i].wirelen) != 0)
            fail_msg("name %zu left with other octets (%zu bytes)", i, w->resp.qnamelen);
    }
    assert_string_equal(lookup(w, &g, "raw.example", DNS_T_MX),
                        "ok insecure|MX 0 .|MX 10 a b\xc3\xa9.example");
    assert_string_equal(lookup(w, &g, "raw.example", DNS_T_PTR),
                        "ok insecure|PTR a b\xc3\xa9.example");
    assert_string_equal(lookup(w, &g, "dot.example", DNS_T_CNAME), "tempfail insecure");
    buf_free(&g.text);
}

static void never_called(void *arg, const struct dns_answer *ans)
{
    (void)ans;
    fail_msg("callback ran after dns_close() for %s", (const char *)arg);
}

static void stop_loop(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

/* Let the loop run for a while (answers that were in flight arrive). */
static void spin(struct event_base *base, int ms)
{
    struct timeval tv = { 0, ms * 1000 };
    struct event *t = evtimer_new(base, stop_loop, base);
    evtimer_add(t, &tv);
    event_base_dispatch(base);
    event_free(t);
}

static void test_close_cancels(void **state)
{
    struct world *w = *state;
    dns_resolve(&w->r, "silent.example", DNS_T_A, never_called, "silent A");
    dns_resolve(&w->r, "silent.example", DNS_T_MX, never_called, "silent MX");
    dns_resolve(&w->r, "host.example", DNS_T_TXT, never_called, "host TXT");
    dns_close(&w->r);   /* nothing has been delivered: the loop has not run */
    assert_null(w->r.ops);
    spin(w->base, 200);
    /* Queries answered but not yet delivered are cancelled just as well. */
    struct dns_unbound_opts o = {
        .forwarders = (const char *const[]){ w->fwd }, .nforwarders = 1, .trust_anchor_file = "",
    };
    struct buf err = { 0 };
    assert_int_equal(dns_unbound_open(w->base, &o, &w->r, &err), 0);
    unsigned before = w->resp.queries;
    dns_resolve(&w->r, "host.example", DNS_T_A, never_called, "fresh A");
    while (w->resp.queries == before)
        event_base_loop(w->base, EVLOOP_ONCE);
    dns_close(&w->r);
    spin(w->base, 200);
    buf_free(&err);
}

struct closer {
    struct dns_resolver *r;
    struct event_base *base;
    int calls;
};

static void close_inside(void *arg, const struct dns_answer *ans)
{
    struct closer *c = arg;
    c->calls++;
    assert_int_equal(ans->status, DNS_OK);
    dns_close(c->r);   /* the other queries must never be answered */
    assert_int_equal(ans->n, 2);
    assert_int_equal(ans->rr[0].u.a[3] + ans->rr[1].u.a[3], 3);   /* still valid */
    event_base_loopbreak(c->base);
}

static void test_close_inside_callback(void **state)
{
    struct world *w = *state;
    struct closer c = { .r = &w->r, .base = w->base };
    dns_resolve(&w->r, "silent.example", DNS_T_A, never_called, "silent A");
    dns_resolve(&w->r, "host.example", DNS_T_A, close_inside, &c);
    dns_resolve(&w->r, "silent.example", DNS_T_AAAA, never_called, "silent AAAA");
    run_loop(w->base, 20);
    assert_int_equal(c.calls, 1);
    assert_null(w->r.ops);
    spin(w->base, 200);
}

static void test_bad_setup(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct dns_resolver r;
    struct buf err = { 0 };
    const char *bad_fwd[] = { "not-an-address" };
    struct dns_unbound_opts o = { .forwarders = bad_fwd, .nforwarders = 1, .trust_anchor_file = "" };
    assert_int_equal(dns_unbound_open(base, &o, &r, &err), -1);
    assert_string_equal(buf_ptr(&err), "bad forwarder address not-an-address: syntax error");
    assert_null(r.ops);

    buf_reset(&err);
    const char *fwd[] = { "127.0.0.1@53" };
    o.forwarders = fwd;
    o.trust_anchor_file = "/nonexistent/root.key";
    assert_int_equal(dns_unbound_open(base, &o, &r, &err), -1);
    assert_string_equal(buf_ptr(&err),
                        "trust anchor file /nonexistent/root.key: No such file or directory");

    buf_reset(&err);
    o.trust_anchor_file = "";
    const char *anchors[] = { "example. IN DS 1 2 3 not-hex" };
    o.trust_anchors = anchors;
    o.nanchors = 1;
    assert_int_equal(dns_unbound_open(base, &o, &r, &err), -1);
    assert_non_null(strstr(buf_ptr(&err), "a bad trust anchor"));
    buf_free(&err);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_inside_callback, setup, teardown),
        cmocka_unit_test(test_bad_setup),
    };
    return cmocka_run_group_tests_name("dns_unbound", tests, NULL, NULL);
}
