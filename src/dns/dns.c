/*
 * dns.c - the backend-independent part of the resolver interface (dns.h).
 *
 * dns_resolve() checks the question before any backend sees it, so every
 * backend answers a bad question the same way. A name is raw text, not
 * presentation form: labels of octets separated by '.', each label 1 to 63
 * octets of any value except '.' and NUL (spaces, backslashes, bytes >=
 * 0x80 are ordinary octets: SPF macro expansion makes such names), at most 253
 * octets in all, an optional final dot; the root is ".". A name that breaks
 * this (empty, an empty label, a label over 63 octets, over 253 in all) and
 * a type outside enum dns_type are answered DNS_PERMFAIL at once. A label
 * holding a '.' or a NUL cannot be asked for.
 *
 * dns_close() is idempotent: it clears the resolver, and a cleared (or
 * zeroed) resolver may be closed again.
 *
 * dns_answer_free_records(rr, n) frees what each record owns (names, TXT
 * and TLSA data) and then the array itself; (NULL, 0) is harmless.
 *
 * Names inside answers (MX host, CNAME/PTR/NS targets) follow one
 * convention in every backend: raw text like a question, so they can be
 * asked for as they are; absolute, without the final dot, except the root
 * which is "." (a null MX, RFC 7505, has host ".").
 *
 * dns_name_presentation(b, name) turns a raw-text name into presentation
 * form (for libunbound, for display); untrusted bytes never pass through.
 */
#include "dns/dns.h"

#include <assert.h>
#include <string.h>

#include "core/xmalloc.h"

/* Longest name in octets without the final dot (RFC 1035 2.3.4). */
#define NAME_MAX_LEN 253

static bool type_known(enum dns_type t)
{
    switch (t) {
    case DNS_T_A:
    case DNS_T_NS:
    case DNS_T_CNAME:
    case DNS_T_PTR:
    case DNS_T_MX:
    case DNS_T_TXT:
    case DNS_T_AAAA:
    case DNS_T_TLSA:
        return true;
    }
    return false;
}

/* Bounded: never reads more than NAME_MAX_LEN + 2 bytes of name. */
static const char *name_problem(const char *name)
{
    if (name == NULL)
        return "no name";
    size_t len = 0;
    while (len <= NAME_MAX_LEN + 1 && name[len] != '\0')
        len++;
    if (len == 0)
        return "empty name";
    if (len == 1 && name[0] == '.')
        return NULL;
    if (name[len - 1] == '.')
        len--;
    if (len > NAME_MAX_LEN)
        return "name too long";
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (label == 0)
                return "empty label in name";
            label = 0;
            continue;
        }
        if (++label > 63)
            return "label longer than 63 bytes";
    }
    if (label == 0)
        return "empty label in name";
    return NULL;
}

void dns_resolve(struct dns_resolver *r, const char *name, enum dns_type type, dns_cb cb,
                 void *arg)
{
    assert(r != NULL && r->ops != NULL && cb != NULL);
    const char *why = name_problem(name);
    if (why == NULL && !type_known(type))
        why = "unsupported query type";
    if (why != NULL) {
        struct dns_answer ans = {
            .status = DNS_PERMFAIL, .sec = DNS_SEC_INSECURE, .why = why,
        };
        cb(arg, &ans);
        return;
    }
    r->ops->resolve(r->impl, name, type, cb, arg);
}

struct drive {
    struct dns_resolver *r;
    const struct dns_stepper *s;
    void *ev;
    bool looping;   /* drive_loop() is on the stack */
    bool answered;  /* the question out has its answer */
};

static void drive_loop(struct drive *d);

static void drive_answer(void *arg, const struct dns_answer *ans)
{
    struct drive *d = arg;
    d->s->answer(d->ev, ans);
    d->answered = true;
    if (!d->looping)    /* asynchronous answer: resume; a synchronous one */
        drive_loop(d);  /* is picked up by the loop below, no recursion */
}

static void drive_loop(struct drive *d)
{
    d->looping = true;
    const char *name;
    enum dns_type type;
    while (d->s->next(d->ev, &name, &type)) {
        d->answered = false;
        dns_resolve(d->r, name, type, drive_answer, d);
        if (!d->answered) {
            d->looping = false;
            return;
        }
    }
    d->s->finish(d->ev);
    xfree(d);
}

void dns_drive(struct dns_resolver *r, const struct dns_stepper *s, void *ev)
{
    struct drive *d = xcalloc(1, sizeof(*d));
    d->r = r;
    d->s = s;
    d->ev = ev;
    drive_loop(d);
}

static bool plain_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '*';
}

void dns_name_presentation(struct buf *b, const char *name)
{
    for (size_t i = 0; name[i] != '\0'; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.' || plain_byte(c))
            buf_append_byte(b, (char)c);
        else if (c > 0x20 && c < 0x7f)
            buf_printf(b, "\\%c", c);
        else
            buf_printf(b, "\\%03u", (unsigned)c);
    }
    size_t len = strlen(name);
    if (len == 0 || name[len - 1] != '.')
        buf_append_byte(b, '.');
}

void dns_close(struct dns_resolver *r)
{
    if (r == NULL || r->ops == NULL)
        return;
    const struct dns_backend *ops = r->ops;
    void *impl = r->impl;
    r->ops = NULL;
    r->impl = NULL;
    ops->close(impl);
}

const char *dns_type_name(enum dns_type t)
{
    switch (t) {
    case DNS_T_A: return "A";
    case DNS_T_NS: return "NS";
    case DNS_T_CNAME: return "CNAME";
    case DNS_T_PTR: return "PTR";
    case DNS_T_MX: return "MX";
    case DNS_T_TXT: return "TXT";
    case DNS_T_AAAA: return "AAAA";
    case DNS_T_TLSA: return "TLSA";
    }
    return "UNKNOWN";
}

const char *dns_status_name(enum dns_status s)
{
    switch (s) {
    case DNS_OK: return "ok";
    case DNS_NODATA: return "nodata";
    case DNS_NXDOMAIN: return "nxdomain";
    case DNS_TEMPFAIL: return "tempfail";
    case DNS_PERMFAIL: return "permfail";
    }
    return "unknown";
}

const char *dns_sec_name(enum dns_sec s)
{
    switch (s) {
    case DNS_SEC_INSECURE: return "insecure";
    case DNS_SEC_SECURE: return "secure";
    case DNS_SEC_BOGUS: return "bogus";
    }
    return "unknown";
}

bool dns_answer_null_mx(const struct dns_answer *a)
{
    if (a->status != DNS_OK)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        const char *h = a->rr[i].type == DNS_T_MX ? a->rr[i].u.mx.host : NULL;
        if (h != NULL && (h[0] == '\0' || strcmp(h, ".") == 0))
            return true;
    }
    return false;
}

void dns_answer_free_records(struct dns_rr *rr, size_t n)
{
    if (rr == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        switch (rr[i].type) {
        case DNS_T_MX:
            xfree(rr[i].u.mx.host);
            break;
        case DNS_T_NS:
        case DNS_T_CNAME:
        case DNS_T_PTR:
            xfree(rr[i].u.name);
            break;
        case DNS_T_TXT:
            xfree(rr[i].u.txt.data);
            break;
        case DNS_T_TLSA:
            xfree(rr[i].u.tlsa.data);
            break;
        case DNS_T_A:
        case DNS_T_AAAA:
            break;
        }
    }
    xfree(rr);
}

/* ------------------------------------------------------- wire rdata */

struct rd {
    const uint8_t *p;
    size_t n, i;
};

/* An uncompressed domain name as raw text without the final dot ("." for
 * the root); a label holding '.' or NUL cannot be raw text: malformed. */
static int rd_name(struct rd *r, char **out)
{
    struct buf b = { 0 };
    size_t wire = 1;
    for (;;) {
        if (r->i >= r->n)
            goto bad;
        uint8_t l = r->p[r->i++];
        if (l == 0)
            break;
        if (l > 63 || r->n - r->i < l || (wire += 1u + l) > 255)
            goto bad;   /* > 63 includes compression pointers */
        if (buf_size(&b) > 0)
            buf_append_byte(&b, '.');
        if (memchr(r->p + r->i, '.', l) != NULL || memchr(r->p + r->i, '\0', l) != NULL)
            goto bad;
        buf_append(&b, r->p + r->i, l);
        r->i += l;
    }
    *out = buf_size(&b) ? xmemdup0(buf_ptr(&b), buf_size(&b)) : xstrdup(".");
    buf_free(&b);
    return 0;
bad:
    buf_free(&b);
    return -1;
}

static int rd_txt(struct rd *r, struct dns_rr *rr)
{
    struct buf b = { 0 };
    if (r->n == 0)
        return -1;
    while (r->i < r->n) {
        uint8_t l = r->p[r->i++];
        if (r->n - r->i < l) {
            buf_free(&b);
            return -1;
        }
        buf_append(&b, r->p + r->i, l);
        r->i += l;
    }
    rr->u.txt.len = buf_size(&b);
    rr->u.txt.data = xmemdup0(buf_ptr(&b), buf_size(&b));
    buf_free(&b);
    return 0;
}

int dns_rdata_parse(enum dns_type type, const uint8_t *p, size_t n, struct dns_rr *rr)
{
    struct rd r = { .p = p, .n = n };
    switch (type) {
    case DNS_T_A:
        if (n != 4)
            return -1;
        memcpy(rr->u.a, p, 4);
        return 0;
    case DNS_T_AAAA:
        if (n != 16)
            return -1;
        memcpy(rr->u.aaaa, p, 16);
        return 0;
    case DNS_T_MX:
        if (n < 3)
            return -1;
        rr->u.mx.pref = (uint16_t)(p[0] << 8 | p[1]);
        r.i = 2;
        if (rd_name(&r, &rr->u.mx.host) < 0)
            return -1;
        return r.i == n ? 0 : -1;
    case DNS_T_NS:
    case DNS_T_CNAME:
    case DNS_T_PTR:
        if (rd_name(&r, &rr->u.name) < 0)
            return -1;
        return r.i == n ? 0 : -1;
    case DNS_T_TXT:
        return rd_txt(&r, rr);
    case DNS_T_TLSA:
        if (n < 3)
            return -1;
        rr->u.tlsa.usage = p[0];
        rr->u.tlsa.selector = p[1];
        rr->u.tlsa.mtype = p[2];
        rr->u.tlsa.len = n - 3;
        rr->u.tlsa.data = (uint8_t *)xmemdup0(p + 3, n - 3);
        return 0;
    }
    return -1;
}
