/*
 * unbound.c - the libunbound backend: DNSSEC-validating lookups on the
 * daemon's libevent loop (contract in dns/unbound.h).
 *
 * libunbound runs its resolver in a background thread (ub_ctx_async(ctx,
 * 1)); answers come back over a pipe whose read end, ub_fd(), is watched
 * by one persistent event that calls ub_process(), which runs our result
 * callback in the loop's thread. Each query also holds a timer: it bounds
 * the query (30 s) and, fired at once, delivers a failure to submit the
 * query, so answers never arrive inside dns_resolve().
 *
 * The question's raw-text name (dns.h) goes to libunbound in presentation
 * form (dns_name_presentation(): every unusual byte escaped), so it leaves
 * as exactly those octets. Record data arrives in wire format and is
 * parsed here with explicit bounds (A, AAAA, MX, TXT, PTR/CNAME/NS, TLSA);
 * names must be uncompressed (libunbound decompresses them), at most 255
 * bytes, and become raw text: a label holding a '.' or a NUL cannot be
 * raw text, so it makes the record malformed. A record that does not
 * parse makes the whole answer DNS_TEMPFAIL.
 *
 * Closing cancels every outstanding query (ub_cancel: its callback never
 * runs). A close from inside a callback, while ub_process() is still on
 * the stack, only marks the backend; it is freed when ub_process() returns.
 *
 * Trust: the answers come from the network; only what validation marks
 * secure is reported DNS_SEC_SECURE, a bogus answer never carries data.
 */
#include "dns/unbound.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <unbound.h>

#include "core/xmalloc.h"

#define QUERY_TIMEOUT_SEC 30
#define CLASS_IN 1

struct ubr;

struct ubq {
    struct ubr *u;
    struct ubq *prev, *next;
    struct event *timer;
    int id;                 /* libunbound's async id */
    bool submitted;
    enum dns_status fail;   /* when !submitted: the answer to deliver */
    const char *why;
    enum dns_type type;
    dns_cb cb;
    void *arg;
};

struct ubr {
    struct ub_ctx *ctx;
    struct event_base *base;
    struct event *ev;       /* ub_fd() readable */
    struct ubq *head;
    unsigned processing;    /* inside ub_process() */
    bool closed;
};

static void unlink_query(struct ubq *q)
{
    struct ubr *u = q->u;
    if (q->prev)
        q->prev->next = q->next;
    else
        u->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

/* Unlink and free q; returns its callback so the caller can answer. */
static void finish_query(struct ubq *q, dns_cb *cb, void **arg)
{
    *cb = q->cb;
    *arg = q->arg;
    unlink_query(q);
    event_free(q->timer);
    xfree(q);
}

/* ------------------------------------------------------ wire format data */

static const char *rcode_why(int rcode)
{
    switch (rcode) {
    case 1: return "FORMERR";
    case 2: return "SERVFAIL";
    case 4: return "NOTIMP";
    case 5: return "REFUSED";
    }
    return "error rcode from the server";
}

/* Fill ans from a libunbound result (ans->why may point into res). */
static void fill_answer(const struct ub_result *res, enum dns_type type, struct dns_answer *ans)
{
    ans->sec = res->secure ? DNS_SEC_SECURE : DNS_SEC_INSECURE;
    if (res->bogus) {
        ans->status = DNS_TEMPFAIL;
        ans->sec = DNS_SEC_BOGUS;
        ans->why = res->why_bogus ? res->why_bogus : "DNSSEC validation failed";
        return;
    }
    if (res->rcode == 3 || res->nxdomain) {
        ans->status = DNS_NXDOMAIN;
        return;
    }
    if (res->rcode != 0) {
        ans->status = DNS_TEMPFAIL;
        ans->why = rcode_why(res->rcode);
        return;
    }
    size_t n = 0;
    while (res->havedata && res->data[n] != NULL)
        n++;
    if (n == 0) {
        ans->status = DNS_NODATA;
        return;
    }
    struct dns_rr *rr = xcalloc(n, sizeof(*rr));
    for (size_t i = 0; i < n; i++) {
        rr[i].type = type;
        rr[i].ttl = res->ttl > 0 ? (uint32_t)res->ttl : 0;
        if (res->len[i] < 0 ||
            dns_rdata_parse(type, (const uint8_t *)res->data[i], (size_t)res->len[i], &rr[i]) < 0) {
            dns_answer_free_records(rr, n);
            ans->status = DNS_TEMPFAIL;
            ans->why = "malformed record data";
            return;
        }
    }
    ans->status = DNS_OK;
    ans->rr = rr;
    ans->n = n;
}

/* ------------------------------------------------------------ callbacks */

static void on_result(void *mydata, int err, struct ub_result *res)
{
    struct ubq *q = mydata;
    enum dns_type type = q->type;
    dns_cb cb;
    void *arg;
    finish_query(q, &cb, &arg);
    struct dns_answer ans = { .status = DNS_TEMPFAIL, .sec = DNS_SEC_INSECURE };
    if (err != 0 || res == NULL)
        ans.why = ub_strerror(err);
    else
        fill_answer(res, type, &ans);
    cb(arg, &ans);
    dns_answer_free_records(ans.rr, ans.n);
    ub_resolve_free(res);
}

/* A query's timer: the query timed out, or could not be submitted. */
static void on_timer(evutil_socket_t fd, short what, void *arg_)
{
    struct ubq *q = arg_;
    struct dns_answer ans = { .status = DNS_TEMPFAIL, .sec = DNS_SEC_INSECURE, .why = "timeout" };
    if (q->submitted) {
        ub_cancel(q->u->ctx, q->id);
    } else {
        ans.status = q->fail;
        ans.why = q->why;
    }
    dns_cb cb;
    void *arg;
    finish_query(q, &cb, &arg);
    cb(arg, &ans);
}

static void ubr_free(struct ubr *u)
{
    event_free(u->ev);
    ub_ctx_delete(u->ctx);
    xfree(u);
}

/* The resolver thread is gone: answer everything, stop watching. */
static void fail_all(struct ubr *u)
{
    event_del(u->ev);
    for (struct ubq *q = u->head; q != NULL; q = q->next) {
        if (q->submitted) {
            ub_cancel(u->ctx, q->id);
            q->submitted = false;
            q->fail = DNS_TEMPFAIL;
            q->why = "resolver failed";
            struct timeval now = { 0, 0 };
            evtimer_add(q->timer, &now);
        }
    }
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct ubr *u = arg;
    u->processing++;
    int rc = ub_process(u->ctx);
    u->processing--;
    if (u->closed) {
        if (u->processing == 0)
            ubr_free(u);
        return;
    }
    if (rc != 0)
        fail_all(u);
}

/* --------------------------------------------------------------- backend */

static void ubr_resolve(void *impl, const char *name, enum dns_type type, dns_cb cb, void *arg)
{
    struct ubr *u = impl;
    struct ubq *q = xcalloc(1, sizeof(*q));
    q->u = u;
    q->type = type;
    q->cb = cb;
    q->arg = arg;
    q->timer = evtimer_new(u->base, on_timer, q);
    if (q->timer == NULL)
        abort();   /* out of memory inside libevent */
    q->next = u->head;
    if (u->head)
        u->head->prev = q;
    u->head = q;
    struct buf qname = { 0 };
    dns_name_presentation(&qname, name);
    int rc = ub_resolve_async(u->ctx, buf_ptr(&qname), (int)type, CLASS_IN, q, on_result, &q->id);
    buf_free(&qname);
    struct timeval tv = { QUERY_TIMEOUT_SEC, 0 };
    if (rc == 0) {
        q->submitted = true;
    } else {
        q->fail = rc == UB_SYNTAX ? DNS_PERMFAIL : DNS_TEMPFAIL;
        q->why = ub_strerror(rc);
        tv.tv_sec = 0;
    }
    evtimer_add(q->timer, &tv);
}

static void ubr_close(void *impl)
{
    struct ubr *u = impl;
    while (u->head != NULL) {
        struct ubq *q = u->head;
        if (q->submitted)
            ub_cancel(u->ctx, q->id);
        dns_cb cb;
        void *arg;
        finish_query(q, &cb, &arg);
    }
    u->closed = true;
    if (u->processing == 0)
        ubr_free(u);
}

static const struct dns_backend unbound_ops = { .resolve = ubr_resolve, .close = ubr_close };

static int ub_fail(struct ub_ctx *ctx, struct buf *err, int rc, const char *what, const char *arg)
{
    buf_printf(err, "%s%s%s: %s", what, arg ? " " : "", arg ? arg : "", ub_strerror(rc));
    ub_ctx_delete(ctx);
    return -1;
}

static int configure(struct ub_ctx *ctx, const struct dns_unbound_opts *o, struct buf *err)
{
    int rc;
    if ((rc = ub_ctx_async(ctx, 1)) != 0)
        return ub_fail(ctx, err, rc, "libunbound: no thread support", NULL);
    /* Forwarders on loopback (a local cache, a test server) must work. */
    if ((rc = ub_ctx_set_option(ctx, "do-not-query-localhost:", "no")) != 0)
        return ub_fail(ctx, err, rc, "libunbound: do-not-query-localhost", NULL);
    for (size_t i = 0; i < o->nforwarders; i++)
        if ((rc = ub_ctx_set_fwd(ctx, o->forwarders[i])) != 0)
            return ub_fail(ctx, err, rc, "bad forwarder address", o->forwarders[i]);
    if (o->nforwarders == 0 && (rc = ub_ctx_resolvconf(ctx, NULL)) != 0)
        return ub_fail(ctx, err, rc, "cannot use the servers of", "/etc/resolv.conf");
    const char *file = o->trust_anchor_file;
    if (file == NULL)
        file = access(DNS_UNBOUND_ROOT_KEY, R_OK) == 0 ? DNS_UNBOUND_ROOT_KEY : "";
    if (file[0] != '\0') {
        if (access(file, R_OK) != 0) {
            buf_printf(err, "trust anchor file %s: %s", file, strerror(errno));
            ub_ctx_delete(ctx);
            return -1;
        }
        if ((rc = ub_ctx_add_ta_file(ctx, file)) != 0)
            return ub_fail(ctx, err, rc, "trust anchor file", file);
    }
    for (size_t i = 0; i < o->nanchors; i++)
        if ((rc = ub_ctx_add_ta(ctx, o->trust_anchors[i])) != 0)
            return ub_fail(ctx, err, rc, "trust anchor", o->trust_anchors[i]);
    /* libunbound reads the anchors only when it finalizes its setup, which
     * it otherwise does at the first query. Removing a local zone that does
     * not exist finalizes without side effects, so bad anchors fail here. */
    if ((rc = ub_ctx_zone_remove(ctx, "finalize.mailwarden.invalid.")) != 0)
        return ub_fail(ctx, err, rc, "resolver setup failed (a bad trust anchor?)", NULL);
    return 0;
}

int dns_unbound_open(struct event_base *base, const struct dns_unbound_opts *opts,
                     struct dns_resolver *out, struct buf *err)
{
    static const struct dns_unbound_opts defaults;
    out->ops = NULL;
    out->impl = NULL;
    struct ub_ctx *ctx = ub_ctx_create();
    if (ctx == NULL) {
        buf_printf(err, "libunbound: cannot create a context: %s", strerror(errno));
        return -1;
    }
    if (configure(ctx, opts ? opts : &defaults, err) < 0)
        return -1;
    struct ubr *u = xcalloc(1, sizeof(*u));
    u->ctx = ctx;
    u->base = base;
    u->ev = event_new(base, ub_fd(ctx), EV_READ | EV_PERSIST, on_readable, u);
    if (u->ev == NULL || event_add(u->ev, NULL) != 0) {
        buf_append_str(err, "libunbound: cannot watch the result pipe");
        if (u->ev)
            event_free(u->ev);
        ub_ctx_delete(ctx);
        xfree(u);
        return -1;
    }
    out->ops = &unbound_ops;
    out->impl = u;
    return 0;
}
