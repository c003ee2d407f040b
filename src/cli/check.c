/*
 * check - `mailwarden check SUBCOMMAND ...`: diagnostics.
 *
 *   mailwarden check dns NAME TYPE [--dns-zone FILE]
 *       [--dns-forwarder IP[@PORT]]... [--trust-anchor-file FILE|none]
 *       [--trust-anchor "RR"]...
 *
 * looks NAME up through the same resolver code the daemon uses (the zone
 * file backend with --dns-zone, else libunbound with DNSSEC validation on
 * a private event loop) and prints
 *
 *   status=<ok|nodata|nxdomain|tempfail|permfail> dnssec=<secure|insecure|bogus> [why=...]
 *   NAME. TTL IN TYPE RDATA            (one line per record, presentation form)
 *
 * NAME is raw text, as dns_resolve() takes it (a space or a byte >= 0x80 is
 * just an octet); names in the output, NAME included, are in presentation
 * form with unusual bytes escaped (\032, \195, \%, dns_name_presentation()).
 *
 * TYPE is one of A AAAA MX TXT PTR CNAME NS TLSA (any case). Exit status:
 * 0 when the lookup completed, whatever its status; 64 bad usage; 78 a zone
 * file or resolver setup that cannot be used (the reason, file:line for a
 * zone file, on stderr).
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include <event2/event.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/str.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "dns/unbound.h"

static const enum dns_type query_types[] = {
    DNS_T_A, DNS_T_AAAA, DNS_T_MX, DNS_T_TXT, DNS_T_PTR, DNS_T_CNAME, DNS_T_NS, DNS_T_TLSA,
};

static void usage(FILE *f)
{
    fputs("usage: mailwarden check dns NAME TYPE [--dns-zone FILE]\n"
          "           [--dns-forwarder IP[@PORT]]... [--trust-anchor-file FILE|none]\n"
          "           [--trust-anchor \"RR\"]...\n"
          "  TYPE: A AAAA MX TXT PTR CNAME NS TLSA\n",
          f);
}

/* A raw-text name ("." for the root) as an absolute name, escaped. */
static void put_name(struct buf *b, const char *name)
{
    dns_name_presentation(b, name);
}

/* TXT data as quoted strings of at most 255 bytes each. */
static void put_txt(struct buf *b, const char *data, size_t len)
{
    size_t i = 0;
    do {
        size_t end = len - i > 255 ? i + 255 : len;
        buf_append_str(b, i ? " \"" : "\"");
        for (; i < end; i++) {
            unsigned char c = (unsigned char)data[i];
            if (c == '"' || c == '\\')
                buf_printf(b, "\\%c", c);
            else if (c < 0x20 || c >= 0x7f)
                buf_printf(b, "\\%03u", (unsigned)c);
            else
                buf_append_byte(b, (char)c);
        }
        buf_append_byte(b, '"');
    } while (i < len);
}

static void put_rdata(struct buf *b, const struct dns_rr *rr)
{
    char addr[INET6_ADDRSTRLEN];
    switch (rr->type) {
    case DNS_T_A:
        buf_append_str(b, inet_ntop(AF_INET, rr->u.a, addr, sizeof(addr)));
        break;
    case DNS_T_AAAA:
        buf_append_str(b, inet_ntop(AF_INET6, rr->u.aaaa, addr, sizeof(addr)));
        break;
    case DNS_T_MX:
        buf_printf(b, "%u ", (unsigned)rr->u.mx.pref);
        put_name(b, rr->u.mx.host);
        break;
    case DNS_T_NS:
    case DNS_T_CNAME:
    case DNS_T_PTR:
        put_name(b, rr->u.name);
        break;
    case DNS_T_TXT:
        put_txt(b, rr->u.txt.data, rr->u.txt.len);
        break;
    case DNS_T_TLSA:
        buf_printf(b, "%u %u %u ", (unsigned)rr->u.tlsa.usage, (unsigned)rr->u.tlsa.selector,
                   (unsigned)rr->u.tlsa.mtype);
        for (size_t i = 0; i < rr->u.tlsa.len; i++)
            buf_printf(b, "%02X", (unsigned)rr->u.tlsa.data[i]);
        if (rr->u.tlsa.len == 0)
            buf_append_byte(b, '-');
        break;
    }
}

struct lookup {
    const char *name;
    struct event_base *base;
    bool done;
};

static void print_answer(void *arg, const struct dns_answer *ans)
{
    struct lookup *l = arg;
    struct buf b = { 0 };
    buf_printf(&b, "status=%s dnssec=%s", dns_status_name(ans->status), dns_sec_name(ans->sec));
    if (ans->why != NULL && (ans->sec == DNS_SEC_BOGUS || ans->status != DNS_OK)) {
        buf_append_str(&b, " why=");
        log_escape(&b, ans->why, strlen(ans->why));
    }
    buf_append_byte(&b, '\n');
    for (size_t i = 0; i < ans->n; i++) {
        put_name(&b, l->name);
        buf_printf(&b, " %u IN %s ", (unsigned)ans->rr[i].ttl, dns_type_name(ans->rr[i].type));
        put_rdata(&b, &ans->rr[i]);
        buf_append_byte(&b, '\n');
    }
    fwrite(buf_ptr(&b), 1, buf_size(&b), stdout);
    fflush(stdout);
    buf_free(&b);
    l->done = true;
    if (l->base != NULL)
        event_base_loopbreak(l->base);
}

static int parse_type(const char *s, enum dns_type *out)
{
    for (size_t i = 0; i < sizeof(query_types) / sizeof(query_types[0]); i++) {
        if (str_ieq(s, strlen(s), dns_type_name(query_types[i]))) {
            *out = query_types[i];
            return 0;
        }
    }
    return -1;
}

struct dns_args {
    const char *zone;
    const char **fwd;
    size_t nfwd;
    const char **anchors;
    size_t nanchors;
    const char *anchor_file;
    const char *name;
    enum dns_type type;
};

/* 0 ok, -1 usage error (already reported), 1 help printed. */
static int parse_dns_args(int argc, char **argv, struct dns_args *a)
{
    static const struct option opts[] = {
        { "dns-zone", required_argument, NULL, 'z' },
        { "dns-forwarder", required_argument, NULL, 'f' },
        { "trust-anchor-file", required_argument, NULL, 'F' },
        { "trust-anchor", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'z': a->zone = optarg; break;
        case 'f':
            a->fwd = xreallocarray(a->fwd, a->nfwd + 1, sizeof(*a->fwd));
            a->fwd[a->nfwd++] = optarg;
            break;
        case 'F': a->anchor_file = strcmp(optarg, "none") == 0 ? "" : optarg; break;
        case 't':
            a->anchors = xreallocarray(a->anchors, a->nanchors + 1, sizeof(*a->anchors));
            a->anchors[a->nanchors++] = optarg;
            break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return -1;
    }
    a->name = argv[optind];
    if (parse_type(argv[optind + 1], &a->type) < 0) {
        fprintf(stderr, "mailwarden check dns: unknown type '%s'\n", argv[optind + 1]);
        usage(stderr);
        return -1;
    }
    if (a->zone != NULL && (a->nfwd || a->nanchors || a->anchor_file)) {
        fputs("mailwarden check dns: --dns-zone answers alone; it takes no forwarder or "
              "trust anchor\n", stderr);
        return -1;
    }
    return 0;
}

static int run_lookup(const struct dns_args *a)
{
    struct dns_resolver r;
    struct lookup l = { .name = a->name };
    struct dns_unbound_opts o = {
        .forwarders = a->fwd, .nforwarders = a->nfwd, .trust_anchor_file = a->anchor_file,
        .trust_anchors = a->anchors, .nanchors = a->nanchors,
    };
    /* No cache: this command shows what the resolver answers now. */
    int rc = cli_open_resolver("check dns", a->zone, &o, false, &l.base, &r);
    if (rc != EX_OK)
        return rc;
    dns_resolve(&r, a->name, a->type, print_answer, &l);
    if (!l.done && l.base != NULL)
        event_base_dispatch(l.base);
    dns_close(&r);
    if (l.base)
        event_base_free(l.base);
    return l.done ? EX_OK : EX_SOFTWARE;
}

static int check_dns(int argc, char **argv)
{
    struct dns_args a = { 0 };
    int rc = parse_dns_args(argc, argv, &a);
    if (rc == 0)
        rc = run_lookup(&a);
    else
        rc = rc > 0 ? EX_OK : EX_USAGE;
    xfree(a.fwd);
    xfree(a.anchors);
    return rc;
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} checks[] = {
    { "dns", check_dns },
};

int cli_check(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return EX_OK;
    }
    for (size_t i = 0; argc >= 2 && i < sizeof(checks) / sizeof(checks[0]); i++)
        if (strcmp(argv[1], checks[i].name) == 0)
            return checks[i].run(argc - 1, argv + 1);
    if (argc >= 2)
        fprintf(stderr, "mailwarden check: unknown check '%s'\n", argv[1]);
    usage(stderr);
    return EX_USAGE;
}
