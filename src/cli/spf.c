/*
 * cli/spf - `mailwarden spf`: evaluate SPF (RFC 7208) from the command line.
 *
 *   mailwarden spf --ip IP --sender ADDR --helo NAME [--helo-identity]
 *                  [--receiver NAME] [-v] [DNS options]
 *   mailwarden spf --batch FILE [--parallel N] [--helo-identity] [--receiver NAME]
 *                  [-v] [DNS options]
 *
 *   DNS options: --dns-zone FILE (answers from that zone master file alone)
 *                or libunbound with DNSSEC validation: [--dns-forwarder
 *                IP[@PORT]]... [--trust-anchor-file FILE|none]
 *                [--trust-anchor "RR"]...
 *
 * One evaluation prints the result word (none neutral pass fail softfail
 * temperror permerror) on the first line, then the explanation if there is
 * one (a fail with exp=). -v adds the reason and the Received-SPF header
 * field on stderr. --batch reads lines "IP SENDER HELO" (whitespace
 * separated; SENDER "<>" is the null sender; blank lines and # comments
 * are skipped; FILE "-" is stdin) and prints one result word per line, in
 * input order; it exists so that benchmarks measure evaluations, not
 * start-up. --parallel N keeps up to N evaluations in flight at once over
 * libunbound (as the daemon does for concurrent sessions); the zone file
 * answers synchronously, so there it changes nothing.
 *
 * Exit: 0 when evaluated (whatever the result); 64 bad usage (also an IP
 * that does not parse); 65 a malformed batch line (FILE:LINE on stderr);
 * 66 the batch file cannot be read; 78 a zone file (file:line: what) or a
 * resolver set-up that cannot be used.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include <event2/event.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/str.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "dns/unbound.h"
#include "spf/spf.h"

struct spf_args {
    struct spf_request req;
    const char *zone, *batch, *anchor_file;
    const char **fwd, **anchors;
    size_t nfwd, nanchors, parallel;
    bool verbose;
};

struct run {
    struct dns_resolver r;
    struct event_base *base;
    bool done;
    const struct spf_request *req;    /* -v: reason and header on stderr */
    struct buf out;
};

static void usage(FILE *f)
{
    fputs("usage: mailwarden spf --ip IP --sender ADDR --helo NAME [--helo-identity]\n"
          "           [--receiver NAME] [-v] [--dns-zone FILE | [--dns-forwarder IP[@PORT]]...\n"
          "           [--trust-anchor-file FILE|none] [--trust-anchor \"RR\"]...]\n"
          "       mailwarden spf --batch FILE [--parallel N] [same options but --ip --sender\n"
          "           --helo]\n"
          "  batch lines: IP SENDER HELO (SENDER <> for the null sender)\n",
          f);
}

static bool ip_ok(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

static void add_opt(const char ***v, size_t *n, const char *s)
{
    *v = xreallocarray(*v, *n + 1, sizeof(**v));
    (*v)[(*n)++] = s;
}

/* 0 ok, -1 usage error (reported), 1 help printed. */
static int parse_args(int argc, char **argv, struct spf_args *a)
{
    static const struct option opts[] = {
        { "ip", required_argument, NULL, 'i' },        { "sender", required_argument, NULL, 's' },
        { "helo", required_argument, NULL, 'H' },      { "helo-identity", no_argument, NULL, 'I' },
        { "receiver", required_argument, NULL, 'r' },  { "batch", required_argument, NULL, 'b' },
        { "dns-zone", required_argument, NULL, 'z' },  { "dns-forwarder", required_argument, NULL, 'f' },
        { "trust-anchor-file", required_argument, NULL, 'F' },
        { "trust-anchor", required_argument, NULL, 't' },
        { "verbose", no_argument, NULL, 'v' },         { "help", no_argument, NULL, 'h' },
        { "parallel", required_argument, NULL, 'P' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    uint64_t u;
    a->parallel = 1;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (ch) {
        case 'i': a->req.ip = optarg; break;
        case 's': a->req.sender = optarg; break;
        case 'H': a->req.helo = optarg; break;
        case 'I': a->req.helo_identity = true; break;
        case 'r': a->req.receiver = optarg; break;
        case 'b': a->batch = optarg; break;
        case 'z': a->zone = optarg; break;
        case 'f': add_opt(&a->fwd, &a->nfwd, optarg); break;
        case 'F': a->anchor_file = strcmp(optarg, "none") == 0 ? "" : optarg; break;
        case 't': add_opt(&a->anchors, &a->nanchors, optarg); break;
        case 'v': a->verbose = true; break;
        case 'P':
            if (str_to_u64(optarg, strlen(optarg), 4096, &u) < 0 || u == 0)
                return fprintf(stderr, "mailwarden spf: --parallel takes 1..4096\n"), -1;
            a->parallel = (size_t)u;
            break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
    }
    const char *bad = NULL;
    if (optind != argc)
        bad = "unexpected argument";
    else if (a->batch != NULL && (a->req.ip || a->req.sender || a->req.helo))
        bad = "--batch takes --ip, --sender and --helo from its lines";
    else if (a->batch == NULL && (!a->req.ip || !a->req.sender || !a->req.helo))
        bad = "--ip, --sender and --helo are required";
    else if (a->batch == NULL && !ip_ok(a->req.ip))
        bad = "--ip is not an IPv4 or IPv6 address";
    else if (a->zone != NULL && (a->nfwd || a->nanchors || a->anchor_file))
        bad = "--dns-zone answers alone; it takes no forwarder or trust anchor";
    if (bad != NULL) {
        fprintf(stderr, "mailwarden spf: %s\n", bad);
        usage(stderr);
        return -1;
    }
    return 0;
}

static int open_resolver(const struct spf_args *a, struct run *run)
{
    struct dns_unbound_opts o = {
        .forwarders = a->fwd, .nforwarders = a->nfwd, .trust_anchor_file = a->anchor_file,
        .trust_anchors = a->anchors, .nanchors = a->nanchors,
    };
    /* batches repeat lookups: answer them in-process */
    return cli_open_resolver("spf", a->zone, &o, true, &run->base, &run->r);
}

static void print_verbose(const struct spf_outcome *o, const struct spf_request *req)
{
    struct buf h = { 0 };
    spf_received_header(o, req, &h);
    fprintf(stderr, "reason: %s\n%s", o->reason, buf_ptr(&h));
    buf_free(&h);
}

static void on_done(void *arg, const struct spf_outcome *o)
{
    struct run *run = arg;
    buf_append_str(&run->out, spf_result_name(o->result));
    buf_append_byte(&run->out, '\n');
    if (o->explanation != NULL) {
        buf_append_str(&run->out, o->explanation);
        buf_append_byte(&run->out, '\n');
    }
    if (run->req != NULL)
        print_verbose(o, run->req);
    run->done = true;
    if (run->base != NULL)
        event_base_loopbreak(run->base);
}

static void run_single(struct run *run, const struct spf_request *req)
{
    spf_check(&run->r, req, on_done, run);
    while (!run->done && run->base != NULL)
        event_base_loop(run->base, EVLOOP_ONCE);
}

/* One batch line into req (pointers into line); 0 ok, 1 skip, -1 bad. */
static int batch_line(char *line, struct spf_request *req)
{
    char *f[4];
    int n = 0;
    for (char *p = line; *p != '\0' && *p != '#';) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            *p++ = '\0';
        if (*p == '\0' || *p == '#')
            break;
        if (n == 4)
            return -1;
        f[n++] = p;
        while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            p++;
    }
    if (n == 0)
        return 1;
    if (n != 3 || !ip_ok(f[0]))
        return -1;
    req->ip = f[0];
    req->sender = strcmp(f[1], "<>") == 0 ? "" : f[1];
    req->helo = f[2];
    return 0;
}

/* One line of a batch in flight; results are printed in input order. */
struct slot {
    struct run *run;
    char line[4096];
    struct spf_request req;
    bool done, verbose;
    enum spf_result result;
};

static void slot_done(void *arg, const struct spf_outcome *o)
{
    struct slot *s = arg;
    s->result = o->result;
    s->done = true;
    if (s->verbose)
        print_verbose(o, &s->req);
    if (s->run->base != NULL)
        event_base_loopbreak(s->run->base);
}

/* Read and start lines while a slot is free: 0 more to come, 1 end of
 * input, -1 a bad line (reported). */
static int batch_fill(struct run *run, const struct spf_args *a, FILE *in, struct slot *slots,
                      size_t nslots, size_t head, size_t *next, unsigned *lineno)
{
    while (*next - head < nslots) {
        struct slot *s = &slots[*next % nslots];
        if (fgets(s->line, sizeof(s->line), in) == NULL)
            return 1;
        ++*lineno;
        s->req = a->req;
        size_t len = strlen(s->line);
        int r = len + 1 == sizeof(s->line) && s->line[len - 1] != '\n' ? -1
                                                                      : batch_line(s->line, &s->req);
        if (r < 0) {
            fprintf(stderr, "mailwarden spf: %s:%u: expected 'IP SENDER HELO'\n", a->batch,
                    *lineno);
            return -1;
        }
        if (r > 0)
            continue;
        s->run = run;
        s->done = false;
        s->verbose = a->verbose;
        ++*next;
        spf_check(&run->r, &s->req, slot_done, s);
    }
    return 0;
}

static int run_batch(struct run *run, const struct spf_args *a)
{
    FILE *in = strcmp(a->batch, "-") == 0 ? stdin : fopen(a->batch, "r");
    if (in == NULL) {
        perror(a->batch);
        return EX_NOINPUT;
    }
    size_t nslots = run->base != NULL ? a->parallel : 1;   /* the zone answers at once */
    struct slot *slots = xcalloc(nslots, sizeof(*slots));
    size_t head = 0, next = 0;
    unsigned lineno = 0;
    int st = 0;
    while (st == 0 || head < next) {
        if (st == 0)
            st = batch_fill(run, a, in, slots, nslots, head, &next, &lineno);
        for (; head < next && slots[head % nslots].done; head++) {
            buf_append_str(&run->out, spf_result_name(slots[head % nslots].result));
            buf_append_byte(&run->out, '\n');
        }
        if (buf_size(&run->out) >= 65536) {
            fwrite(buf_ptr(&run->out), 1, buf_size(&run->out), stdout);
            buf_reset(&run->out);
        }
        if (head < next && run->base != NULL)
            event_base_loop(run->base, EVLOOP_ONCE);
    }
    xfree(slots);
    if (in != stdin)
        fclose(in);
    return st < 0 ? EX_DATAERR : EX_OK;
}

int cli_spf(int argc, char **argv)
{
    struct spf_args a = { 0 };
    int rc = parse_args(argc, argv, &a);
    if (rc != 0) {
        xfree(a.fwd);
        xfree(a.anchors);
        return rc > 0 ? EX_OK : EX_USAGE;
    }
    struct run run = { .req = a.verbose ? &a.req : NULL };
    rc = open_resolver(&a, &run);
    if (rc == EX_OK) {
        if (a.batch != NULL)
            rc = run_batch(&run, &a);
        else
            run_single(&run, &a.req);
        fwrite(buf_ptr(&run.out), 1, buf_size(&run.out), stdout);
        dns_close(&run.r);
    }
    if (run.base != NULL)
        event_base_free(run.base);
    buf_free(&run.out);
    xfree(a.fwd);
    xfree(a.anchors);
    return rc;
}
