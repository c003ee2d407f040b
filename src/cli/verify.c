/*
 * cli/verify - `mailwarden verify`: check a message, print one
 * Authentication-Results header field (RFC 8601).
 *
 *   mailwarden verify [--authserv-id ID] [--time T] [--dmarc-random N]
 *                     [--client-ip IP --helo NAME [--mail-from ADDR]]
 *                     [DNS options] [FILE...] < message
 *
 *   DNS options as for `mailwarden spf`: --dns-zone FILE, or libunbound
 *   with [--dns-forwarder IP[@PORT]]... [--trust-anchor-file FILE|none]
 *   [--trust-anchor "RR"]...
 *
 * One dkim entry per DKIM-Signature (header.d, header.s, header.b, header.a,
 * header.i: i= or its default "@" d), "dkim=none" when there is none; with
 * --client-ip and --helo also spf (smtp.mailfrom, smtp.helo) via spf_check.
 * Last one dmarc entry (dmarc_check_wait: "dmarc=fail (p=reject dis=reject)
 * header.from=..."), fed with the DKIM results and, with the client
 * options, the SPF result and domain. --dmarc-random N (0..99) is the pct=
 * draw, for reproducible runs; without it the draw is random.
 * The message is read as bytes, bare LF becomes CRLF. The authserv-id
 * defaults to the host name; --time to the clock.
 *
 * Batch: with FILE arguments each file is a message, evaluated in turn in
 * this process with the one resolver (and its answers: the zone, or
 * libunbound's cache); each field follows a line "==> FILE <==". A file
 * that cannot be read is reported on stderr and skipped.
 *
 * Exit: 0 evaluated (whatever the results); 64 bad usage; 65 unreadable
 * message on stdin; 66 a FILE could not be read (the others were
 * evaluated); 78 zone file error or unusable resolver set-up.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/str.h"
#include "core/xmalloc.h"
#include "dkim/dkim.h"
#include "dmarc/dmarc.h"
#include "dns/dns.h"
#include "dns/unbound.h"
#include "msg/authres.h"
#include "spf/spf.h"

#define MAX_MSG ((size_t)256 << 20)

struct verify_args {
    const char *zone, *anchor_file, *authserv, *ip, *helo, *mail_from;
    const char **fwd, **anchors;
    size_t nfwd, nanchors;
    char **files;   /* FILE arguments: batch mode when nfiles > 0 */
    size_t nfiles;
    uint64_t now;
    bool have_draw;
    unsigned draw;
};

struct run {
    struct dns_resolver r;
    struct event_base *base;
    bool done;
    struct authres ar;
    const struct verify_args *a;
    const char *authserv;            /* --authserv-id or the host name */
    /* Per message, reset by evaluate(): */
    struct dmarc_dkim_input *dkim;   /* for DMARC: d= and pass of each signature */
    char **dkim_d;                   /* the d= strings dkim points to */
    size_t ndkim;
    size_t dkim_skipped;     /* DKIM-Signature fields over the limit */
    char *spf_domain;
    bool spf_pass;
};

static void usage(FILE *f)
{
    fputs("usage: mailwarden verify [--authserv-id ID] [--time T] [--dmarc-random N]\n"
          "           [--client-ip IP --helo NAME [--mail-from ADDR]]\n"
          "           [--dns-zone FILE | [--dns-forwarder IP[@PORT]]...\n"
          "           [--trust-anchor-file FILE|none] [--trust-anchor \"RR\"]...]\n"
          "           [FILE...] (or < msg)\n",
          f);
}

static void add_opt(const char ***v, size_t *n, const char *s)
{
    *v = xreallocarray(*v, *n + 1, sizeof(**v));
    (*v)[(*n)++] = s;
}

static const char *check_args(const struct verify_args *a)
{
    unsigned char b[16];
    if ((a->ip != NULL) != (a->helo != NULL) || (a->mail_from != NULL && a->ip == NULL))
        return "--client-ip and --helo go together (--mail-from needs them)";
    if (a->ip != NULL && inet_pton(AF_INET, a->ip, b) != 1 && inet_pton(AF_INET6, a->ip, b) != 1)
        return "--client-ip is not an IPv4 or IPv6 address";
    if (a->zone != NULL && (a->nfwd || a->nanchors || a->anchor_file))
        return "--dns-zone answers alone; it takes no forwarder or trust anchor";
    return NULL;
}

/* 0 ok, -1 usage error (reported), 1 help printed. */
static int parse_args(int argc, char **argv, struct verify_args *a)
{
    static const struct option opts[] = {
        { "dns-zone", required_argument, NULL, 'z' },   { "dns-forwarder", required_argument, NULL, 'f' },
        { "trust-anchor-file", required_argument, NULL, 'F' },
        { "trust-anchor", required_argument, NULL, 'T' },
        { "authserv-id", required_argument, NULL, 'A' }, { "time", required_argument, NULL, 't' },
        { "client-ip", required_argument, NULL, 'i' },  { "helo", required_argument, NULL, 'H' },
        { "mail-from", required_argument, NULL, 'm' },  { "help", no_argument, NULL, 'h' },
        { "dmarc-random", required_argument, NULL, 'R' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    uint64_t v;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'z': a->zone = optarg; break;
        case 'f': add_opt(&a->fwd, &a->nfwd, optarg); break;
        case 'F': a->anchor_file = strcmp(optarg, "none") == 0 ? "" : optarg; break;
        case 'T': add_opt(&a->anchors, &a->nanchors, optarg); break;
        case 'A': a->authserv = optarg; break;
        case 'i': a->ip = optarg; break;
        case 'H': a->helo = optarg; break;
        case 'm': a->mail_from = optarg; break;
        case 't':
            if (str_to_u64(optarg, strlen(optarg), (uint64_t)1 << 40, &a->now) < 0)
                return fputs("mailwarden verify: bad --time\n", stderr), -1;
            break;
        case 'R':
            if (str_to_u64(optarg, strlen(optarg), 99, &v) < 0)
                return fputs("mailwarden verify: --dmarc-random wants 0..99\n", stderr), -1;
            a->have_draw = true;
            a->draw = (unsigned)v;
            break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
    }
    a->files = argv + optind;
    a->nfiles = (size_t)(argc - optind);
    const char *bad = check_args(a);
    if (bad != NULL) {
        fprintf(stderr, "mailwarden verify: %s\n", bad);
        usage(stderr);
        return -1;
    }
    return 0;
}

static int open_resolver(const struct verify_args *a, struct run *run)
{
    struct dns_unbound_opts o = {
        .forwarders = a->fwd, .nforwarders = a->nfwd, .trust_anchor_file = a->anchor_file,
        .trust_anchors = a->anchors, .nanchors = a->nanchors,
    };
    return cli_open_resolver("verify", a->zone, &o, true, &run->base, &run->r);
}

static void finished(struct run *run)
{
    run->done = true;
    if (run->base != NULL)
        event_base_loopbreak(run->base);
}

static void wait_done(struct run *run)
{
    while (!run->done && run->base != NULL)
        event_base_loop(run->base, EVLOOP_ONCE);
    run->done = false;
}

static void on_dkim(void *arg, const struct dkim_sig_result *res, size_t n)
{
    struct run *run = arg;
    dkim_authres(&run->ar, res, n);
    dkim_authres_skipped(&run->ar, run->dkim_skipped);
    run->dkim = xcalloc(n ? n : 1, sizeof(*run->dkim));
    run->dkim_d = xcalloc(n ? n : 1, sizeof(*run->dkim_d));
    for (size_t i = 0; i < n; i++) {
        run->dkim_d[i] = xstrdup(res[i].d);
        run->dkim[i] = (struct dmarc_dkim_input){ .domain = run->dkim_d[i],
                                                  .pass = res[i].result == DKIM_PASS,
                                                  .temperror = res[i].result == DKIM_TEMPERROR };
    }
    run->ndkim = n;
    finished(run);
}

static void on_spf(void *arg, const struct spf_outcome *o)
{
    struct run *run = arg;
    authres_method(&run->ar, "spf", spf_result_name(o->result), o->reason);
    if (run->a->mail_from != NULL && run->a->mail_from[0] != '\0')
        authres_prop(&run->ar, "smtp", "mailfrom", run->a->mail_from);
    authres_prop(&run->ar, "smtp", "helo", run->a->helo);
    run->spf_domain = o->domain != NULL ? xstrdup(o->domain) : NULL;
    run->spf_pass = o->result == SPF_PASS;
    finished(run);
}

static void pump(void *arg)
{
    event_base_loop(arg, EVLOOP_ONCE);
}

static unsigned random_draw(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^
                    ((uint64_t)getpid() << 32);
    return dmarc_pct_draw(&seed);
}

static void eval_dmarc(struct run *run, const struct verify_args *a, const struct buf *msg)
{
    struct dmarc_request req = {
        .msg = buf_ptr(msg), .len = buf_size(msg), .spf_domain = run->spf_domain,
        .spf_pass = run->spf_pass, .dkim = run->dkim, .ndkim = run->ndkim,
        .pct_draw = a->have_draw ? a->draw : random_draw(),
    };
    struct dmarc_eval *e = dmarc_check_wait(&run->r, &req, run->base != NULL ? pump : NULL,
                                            run->base);
    dmarc_authres(&run->ar, dmarc_eval_outcome(e));
    dmarc_eval_free(e);
    for (size_t i = 0; i < run->ndkim; i++)
        xfree(run->dkim_d[i]);
    xfree(run->dkim_d);
    xfree(run->dkim);
    xfree(run->spf_domain);
}

/* One message: print its Authentication-Results field (a cli_message_fn). */
static int evaluate(void *arg, const struct buf *msg)
{
    struct run *run = arg;
    const struct verify_args *a = run->a;
    run->dkim = NULL;
    run->dkim_d = NULL;
    run->ndkim = 0;
    run->spf_domain = NULL;
    run->spf_pass = false;
    authres_begin(&run->ar, run->authserv);
    struct dkim_verify_opts o = { .now = a->now };
    struct dkim_verify *v = dkim_verify_new(buf_ptr(msg), buf_size(msg), &o);
    run->dkim_skipped = dkim_verify_skipped(v);
    dkim_verify_keys(v, &run->r, on_dkim, run);
    wait_done(run);
    if (a->ip != NULL) {
        struct spf_request req = {
            .ip = a->ip, .sender = a->mail_from != NULL ? a->mail_from : "", .helo = a->helo,
            .receiver = run->authserv, .now = a->now,
        };
        spf_check(&run->r, &req, on_spf, run);
        wait_done(run);
    }
    eval_dmarc(run, a, msg);
    struct buf out = { 0 };
    authres_end(&run->ar, &out);
    fwrite(buf_ptr(&out), 1, buf_size(&out), stdout);
    buf_free(&out);
    return EX_OK;
}

int cli_verify(int argc, char **argv)
{
    struct verify_args a = { 0 };
    int rc = parse_args(argc, argv, &a);
    if (rc != 0) {
        xfree(a.fwd);
        xfree(a.anchors);
        return rc > 0 ? EX_OK : EX_USAGE;
    }
    char host[256] = "localhost";
    if (a.authserv == NULL && gethostname(host, sizeof(host) - 1) < 0)
        str_lcpy(host, "localhost", sizeof(host));
    host[sizeof(host) - 1] = '\0';
    struct run run = { .a = &a, .authserv = a.authserv != NULL ? a.authserv : host };
    rc = open_resolver(&a, &run);
    if (rc == EX_OK) {
        rc = cli_each_message("verify", a.files, a.nfiles, MAX_MSG, evaluate, &run);
        dns_close(&run.r);
    }
    if (run.base != NULL)
        event_base_free(run.base);
    xfree(a.fwd);
    xfree(a.anchors);
    return rc;
}
