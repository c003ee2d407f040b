/*
 * dmarc_reports.c - aggregate reports from the daemon; see dmarc_reports.h.
 *
 * A run moves through: rotate (pool) -> read and build (pool) -> check the
 * destinations (loop, DNS) -> commit, keep back, remove (pool) -> enqueue
 * and log (loop). Each stage's completion looks at d->closing and
 * ctx.stopping first: a run caught by shutdown is dropped where it is and
 * its processing file stays for the next start.
 */
#include "report/dmarc_reports.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/fsutil.h"
#include "core/id.h"
#include "core/log.h"
#include "core/worker.h"
#include "core/xmalloc.h"
#include "dmarc/report.h"
#include "msg/addr.h"
#include "queue/queue.h"

#define MAX_ROW_ERRORS 20   /* bad rows logged one by one per run */

enum dest_state {
    D_CHECK,        /* waiting for the 7.1 check */
    D_OK,           /* authorized: to be queued */
    D_DENIED,       /* external and not authorized */
    D_TEMP,         /* the check failed for now: rows kept back */
    D_TOO_LARGE,    /* gzipped report above the URI's !size */
    D_UNSUPPORTED,  /* not a mailto: URI */
    D_BAD_URI,      /* a mailto: URI without one usable address */
    D_QUEUED,
    D_ERROR,        /* queue write failed: rows kept back */
};

static const char *const state_names[] = {
    "check", "ok", "denied", "temperror", "too_large", "unsupported", "bad_uri", "queued", "error",
};

struct run;

struct dest {
    struct run *run;
    size_t rep;                  /* index into run->reps */
    const struct dmarc_uri *uri; /* in the report */
    struct buf addr;
    const char *domain;          /* into addr */
    enum dest_state st;
    const char *why;
    int err;                     /* D_ERROR from the queue: the errno */
    char qid[ID_LEN + 1];
    uint32_t slot;
};

struct rep {
    const struct dmarc_report *r;  /* in run->agg */
    char id[ID_LEN + 1];
    struct buf gz;
    int gz_err;
};

struct run {
    struct dmarc_reports *d;
    struct mw_config *conf;
    struct buf org, email;
    bool have_file;           /* there is a processing file to work on */
    const char *fail_what;    /* a file operation that failed, or NULL */
    int fail_errno;
    struct dmarc_agg *agg;
    size_t nrows, nbad;
    struct buf row_errors;
    struct rep *reps;
    size_t nreps;
    struct dest *dests;
    size_t ndests;
    size_t checking;          /* checks outstanding, plus one while starting */
    bool removed;             /* the processing file is gone */
};

struct dmarc_reports {
    struct report_ctx ctx;
    struct worker_pool *pool;
    struct event *pool_ev, *timer;
    char *rows, *proc, *dir, *bad;   /* bad: rows.bad, the rows that did not parse */
    struct run *run;          /* NULL when idle */
    bool closing;
};

static void run_free(struct run *run)
{
    for (size_t i = 0; i < run->ndests; i++)
        buf_free(&run->dests[i].addr);
    for (size_t i = 0; i < run->nreps; i++)
        buf_free(&run->reps[i].gz);
    xfree(run->dests);
    xfree(run->reps);
    dmarc_agg_free(run->agg);
    buf_free(&run->row_errors);
    buf_free(&run->org);
    buf_free(&run->email);
    conf_unref(run->conf);
    run->d->run = NULL;
    xfree(run);
}

static bool abandoned(const struct run *run)
{
    return run->d->closing || *run->d->ctx.stopping;
}

static void fail(struct run *run, const char *what)
{
    if (run->fail_what == NULL) {
        run->fail_what = what;
        run->fail_errno = errno;
    }
}

static void log_failure(const struct run *run)
{
    if (run->fail_what != NULL)
        log_kv(MW_LOG_ERROR, "dmarc_report_error", "file", run->d->proc, "operation",
               run->fail_what, "error", strerror(run->fail_errno), NULL);
}

/* ---- stage 1 (pool): the processing file ------------------------------------------- */

static void rotate_work(void *arg)
{
    struct run *run = arg;
    struct dmarc_reports *d = run->d;
    if (access(d->proc, F_OK) == 0) {   /* left over from a crash: first */
        run->have_file = true;
        return;
    }
    if (rename(d->rows, d->proc) == 0) {
        run->have_file = true;
        if (fs_fsync_dir(d->dir) < 0)
            fail(run, "fsync");
    } else if (errno != ENOENT) {
        fail(run, "rename");
    }
}

/* ---- stage 2 (pool): rows -> reports, XML, gzip, destinations ---------------------- */

static void add_dest(struct run *run, size_t ri, const struct dmarc_uri *u)
{
    run->dests = xreallocarray(run->dests, run->ndests + 1, sizeof(*run->dests));
    struct dest *t = &run->dests[run->ndests++];
    memset(t, 0, sizeof(*t));
    t->run = run;
    t->rep = ri;
    t->uri = u;
    t->st = D_CHECK;
    if (!u->mailto) {
        t->st = D_UNSUPPORTED, t->why = "only mailto: URIs are used";
    } else if (dmarc_mailto(u->uri, &t->addr, &t->domain) < 0) {
        t->st = D_BAD_URI, t->why = "not a mailto: URI with one address";
    } else if (u->max_size && buf_size(&run->reps[ri].gz) > u->max_size) {
        t->st = D_TOO_LARGE, t->why = "the gzipped report is larger than the URI's size limit";
    }
}

static void build_report(struct run *run, size_t ri)
{
    struct rep *rp = &run->reps[ri];
    struct buf xml = { 0 };
    id_new(rp->id);
    struct dmarc_report_meta m = { .org_name = buf_ptr(&run->org),
                                   .email = buf_ptr(&run->email), .report_id = rp->id };
    dmarc_report_xml(rp->r, &m, &xml);
    rp->gz_err = dmarc_gzip(buf_ptr(&xml), buf_size(&xml), &rp->gz);
    buf_free(&xml);
    for (size_t k = 0; k < rp->r->nrua; k++)
        add_dest(run, ri, &rp->r->rua[k]);
}

static void read_work(void *arg)
{
    struct run *run = arg;
    run->agg = dmarc_agg_new();
    FILE *f = fopen(run->d->proc, "re");
    if (f == NULL) {
        fail(run, "open");
        return;
    }
    /* A row that does not parse is not consumed with its file: it is
     * copied to rows.bad, durably, before the processing file can go. */
    FILE *bad = fopen(run->d->bad, "ae");
    if (bad == NULL) {
        fail(run, "open");
        fclose(f);
        return;
    }
    if (dmarc_agg_read(run->agg, f, run->d->proc, &run->row_errors, MAX_ROW_ERRORS, bad,
                       &run->nrows, &run->nbad) < 0)
        fail(run, "read");
    else if (run->nbad > 0 && fsync(fileno(bad)) < 0)
        fail(run, "fsync");
    fclose(f);
    fclose(bad);
    if (run->fail_what != NULL)
        return;   /* keep the file; try again next time */
    run->nreps = dmarc_agg_count(run->agg);
    run->reps = xcalloc(run->nreps ? run->nreps : 1, sizeof(*run->reps));
    for (size_t i = 0; i < run->nreps; i++) {
        run->reps[i].r = dmarc_agg_report(run->agg, i);
        build_report(run, i);
    }
}

/* ---- stage 4 (pool): queue the mails, keep back what must wait, remove ------------- */

static void commit_one(struct run *run, struct dest *t)
{
    struct rep *rp = &run->reps[t->rep];
    struct buf msg = { 0 }, mid = { 0 };
    char qid[ID_LEN + 1];
    id_new(qid);
    buf_printf(&mid, "dmarc-%s-%s@%s", rp->id, qid, run->conf->hostname);
    struct dmarc_report_mail m = {
        .from = buf_ptr(&run->email), .to = buf_ptr(&t->addr), .org = buf_ptr(&run->org),
        .domain = rp->r->domain, .report_id = rp->id, .message_id = buf_ptr(&mid),
        .begin = rp->r->begin, .end = rp->r->end, .date = time(NULL),
        .gz = buf_ptr(&rp->gz), .gzlen = buf_size(&rp->gz),
    };
    dmarc_report_mail_build(&m, &msg);
    const char *rcpt = buf_ptr(&t->addr);
    struct queue_env env = { .session = rp->id, .from = buf_ptr(&run->email), .rcpts = &rcpt,
                             .nrcpt = 1, .arrival = m.date };
    struct iovec iov = { .iov_base = msg.data, .iov_len = buf_size(&msg) };
    uint32_t slot;
    int r = queue_commit(run->d->ctx.queue, qid, &env, &iov, 1, &slot);
    if (r == 0) {
        t->st = D_QUEUED;
        memcpy(t->qid, qid, sizeof(qid));
        t->slot = slot;
    } else {
        t->st = D_ERROR;
        t->err = -r;   /* strerror() on the loop: it is not thread-safe */
    }
    buf_free(&msg);
    buf_free(&mid);
}

struct keep {
    struct run *run;
    struct buf out;
};

/* A row of a report with destinations to retry: again, for those only. */
static void keep_row(void *arg, const struct dmarc_row *r)
{
    struct keep *k = arg;
    struct run *run = k->run;
    struct dmarc_uri uris[DMARC_MAX_URIS];
    size_t n = 0;
    for (size_t i = 0; i < run->ndests && n < DMARC_MAX_URIS; i++) {
        struct dest *t = &run->dests[i];
        if ((t->st == D_TEMP || t->st == D_ERROR) && dmarc_report_has_row(run->reps[t->rep].r, r))
            uris[n++] = *t->uri;
    }
    if (n == 0)
        return;
    struct dmarc_row copy = *r;
    copy.rua = uris;
    copy.nrua = n;
    dmarc_row_format(&copy, &k->out);
}

/* Append the kept rows to rows, durably; 0 or -1 (the caller keeps the
 * processing file then: duplicates next time, no loss). */
static int keep_back(struct run *run)
{
    struct keep k = { .run = run };
    size_t retry = 0;
    for (size_t i = 0; i < run->ndests; i++)
        retry += run->dests[i].st == D_TEMP || run->dests[i].st == D_ERROR;
    if (retry == 0)
        return 0;
    FILE *f = fopen(run->d->proc, "re");
    if (f == NULL)
        return fail(run, "open"), -1;
    int r = dmarc_rows_read(f, run->d->proc, keep_row, &k, NULL, 0, NULL, NULL, NULL);
    fclose(f);
    if (r < 0) {
        fail(run, "read");
    } else if (buf_size(&k.out) > 0) {
        int fd = open(run->d->rows, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        r = fd < 0 ? -1 : 0;
        if (fd >= 0 && ((errno = -fs_write_all(fd, buf_ptr(&k.out), buf_size(&k.out))) != 0 ||
                        fsync(fd) < 0))
            r = -1;
        if (r < 0)
            fail(run, "append");
        if (fd >= 0)
            close(fd);
    }
    buf_free(&k.out);
    return r;
}

static void commit_work(void *arg)
{
    struct run *run = arg;
    for (size_t i = 0; i < run->ndests; i++)
        if (run->dests[i].st == D_OK)
            commit_one(run, &run->dests[i]);
    if (keep_back(run) < 0)
        return;
    if (unlink(run->d->proc) < 0 && errno != ENOENT)
        fail(run, "unlink");
    else
        run->removed = true;
    if (fs_fsync_dir(run->d->dir) < 0)
        fail(run, "fsync");
}

/* ---- stage 5 (loop): hand over and tell -------------------------------------------- */

static void log_dest(const struct run *run, const struct rep *rp, const struct dest *t)
{
    struct log_line l;
    bool bad = t != NULL && (t->st == D_ERROR || t->st == D_TEMP || t->st == D_BAD_URI);
    log_begin(&l, bad ? MW_LOG_WARN : MW_LOG_INFO, "dmarc_report");
    log_str(&l, "report_id", rp->id);
    log_str(&l, "domain", rp->r->domain);
    log_str(&l, "destination", t != NULL ? t->uri->uri : NULL);
    log_u64(&l, "records", rp->r->nrec);
    log_u64(&l, "messages", rp->r->messages);
    log_str(&l, "result", t != NULL ? state_names[t->st] : "no_destination");
    if (t != NULL && t->st == D_QUEUED)
        log_str(&l, "queue", t->qid);
    if (t != NULL && t->err != 0)
        log_str(&l, "reason", strerror(t->err));
    else
        log_str(&l, "reason", t != NULL ? t->why : "the record has no rua= URI");
    log_end(&l);
}

static void commit_done(void *arg)
{
    struct run *run = arg;
    const struct report_ctx *ctx = &run->d->ctx;
    for (size_t i = 0; i < run->nreps; i++)
        if (run->reps[i].r->nrua == 0)
            log_dest(run, &run->reps[i], NULL);
    for (size_t i = 0; i < run->ndests; i++) {
        struct dest *t = &run->dests[i];
        log_dest(run, &run->reps[t->rep], t);
        if (t->st == D_QUEUED && !abandoned(run))
            ctx->queued(ctx->arg, t->qid, t->slot);
    }
    log_failure(run);
    struct log_line l;
    log_begin(&l, MW_LOG_INFO, "dmarc_report_run");
    log_u64(&l, "rows", run->nrows);
    log_u64(&l, "bad_rows", run->nbad);
    log_u64(&l, "reports", run->nreps);
    log_str(&l, "rows_file", run->removed ? "consumed" : "kept");
    if (run->nbad > 0)
        log_str(&l, "bad_rows_file", run->d->bad);
    log_end(&l);
    run_free(run);
}

/* ---- stage 3 (loop): the destination checks ---------------------------------------- */

static void checked_one(struct run *run)
{
    if (--run->checking > 0)
        return;
    if (abandoned(run)) {
        run_free(run);
        return;
    }
    worker_submit(run->d->pool, commit_work, commit_done, run);
}

static void checked(void *arg, enum dmarc_ext result, const char *why)
{
    struct dest *t = arg;
    t->st = result == DMARC_EXT_OK ? D_OK : result == DMARC_EXT_TEMPERROR ? D_TEMP : D_DENIED;
    t->why = why;
    checked_one(t->run);
}

static void log_row_errors(const struct run *run)
{
    const char *p = buf_ptr(&run->row_errors), *end = p + buf_size(&run->row_errors);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        struct log_line l;
        log_begin(&l, MW_LOG_WARN, "dmarc_row_error");
        log_mem(&l, "error", p, n);
        log_end(&l);
        p += n + 1;
    }
    if (run->nbad > MAX_ROW_ERRORS) {
        struct log_line l;
        log_begin(&l, MW_LOG_WARN, "dmarc_row_error");
        log_u64(&l, "more", run->nbad - MAX_ROW_ERRORS);
        log_end(&l);
    }
}

static void read_done(void *arg)
{
    struct run *run = arg;
    if (abandoned(run) || run->fail_what != NULL) {
        log_failure(run);
        run_free(run);
        return;
    }
    log_row_errors(run);
    run->checking = 1;   /* answers may come at once: hold the count up */
    for (size_t i = 0; i < run->ndests; i++) {
        struct dest *t = &run->dests[i];
        if (t->st != D_CHECK)
            continue;
        if (run->reps[t->rep].gz_err) {
            t->st = D_ERROR, t->why = "gzip failed";
            continue;
        }
        run->checking++;
        dmarc_ext_check(run->d->ctx.dns, run->reps[t->rep].r->domain, t->domain, checked, t);
    }
    checked_one(run);
}

/* ---- the timer --------------------------------------------------------------------- */

static void rotate_done(void *arg)
{
    struct run *run = arg;
    if (abandoned(run) || !run->have_file) {
        log_failure(run);
        run_free(run);
        return;
    }
    /* One loop turn has passed since the rename: no row is half-written. */
    worker_submit(run->d->pool, read_work, read_done, run);
}

static void arm(struct dmarc_reports *d, unsigned seconds)
{
    struct timeval tv = { .tv_sec = (time_t)seconds, .tv_usec = 0 };
    evtimer_add(d->timer, &tv);
}

/* The reporter's address goes into the queue file and the From field:
 * the configuration does not check it, so it is checked here. */
static bool address_ok(const char *a)
{
    struct buf path = { 0 };
    struct mail_addr m;
    size_t used;
    buf_printf(&path, "<%s>", a);
    int r = addr_parse_path(buf_ptr(&path), buf_size(&path), ADDR_UTF8, &m, &used);
    bool ok = r == 0 && used == buf_size(&path) && m.domain[0] != '\0';
    if (r == 0)
        addr_free(&m);
    buf_free(&path);
    return ok;
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    struct dmarc_reports *d = arg;
    const struct mw_config *conf = *d->ctx.conf;
    if (conf->dmarc_report_interval > 0)
        arm(d, conf->dmarc_report_interval);
    if (d->run != NULL || *d->ctx.stopping)
        return;   /* the last run is still going */
    struct run *run = xcalloc(1, sizeof(*run));
    run->d = d;
    run->conf = conf_ref(*d->ctx.conf);
    dmarc_report_identity(run->conf->dmarc_report_org, run->conf->dmarc_report_email,
                          run->conf->hostname, &run->org, &run->email);
    d->run = run;
    if (!address_ok(buf_ptr(&run->email))) {
        log_kv(MW_LOG_ERROR, "dmarc_report_error", "operation", "config", "error",
               "dmarc_report_email is not a valid address; no reports until it is", "email",
               buf_ptr(&run->email), NULL);
        run_free(run);
        return;
    }
    worker_submit(d->pool, rotate_work, rotate_done, run);
}

static void reports_pool_cb(evutil_socket_t fd, short what, void *arg)
{
    worker_pool_complete(arg);
}

struct dmarc_reports *dmarc_reports_start(const struct report_ctx *ctx)
{
    unsigned interval = (*ctx->conf)->dmarc_report_interval;
    if (interval == 0)
        return NULL;
    struct dmarc_reports *d = xcalloc(1, sizeof(*d));
    d->ctx = *ctx;
    struct buf b = { 0 };
    buf_printf(&b, "%s/dmarc", ctx->data_dir);
    d->dir = xstrdup(buf_ptr(&b));
    buf_append_str(&b, "/rows");
    d->rows = xstrdup(buf_ptr(&b));
    buf_append_str(&b, ".processing");
    d->proc = b.data;
    struct buf bad = { 0 };
    buf_printf(&bad, "%s/rows.bad", d->dir);
    d->bad = bad.data;
    if (fs_mkdirs(d->dir, 0700) < 0)
        log_kv(MW_LOG_ERROR, "dmarc_report_error", "file", d->dir, "operation", "mkdir",
               "error", strerror(errno), NULL);
    d->pool = worker_pool_new(1);
    d->pool_ev = event_new(ctx->base, worker_pool_fd(d->pool), EV_READ | EV_PERSIST, reports_pool_cb,
                           d->pool);
    event_add(d->pool_ev, NULL);
    d->timer = evtimer_new(ctx->base, tick, d);
    /* Rows left in processing by a crash go out first, without waiting. */
    arm(d, access(d->proc, F_OK) == 0 ? 0 : interval);
    char iv[16];
    snprintf(iv, sizeof(iv), "%u", interval);
    log_kv(MW_LOG_INFO, "dmarc_reports", "interval", iv, "rows", d->rows, NULL);
    return d;
}

void dmarc_reports_free(struct dmarc_reports *d)
{
    if (d == NULL)
        return;
    d->closing = true;
    worker_pool_free(d->pool);   /* a job in flight finishes; its done() drops the run */
    if (d->run != NULL)
        run_free(d->run);        /* waiting for DNS answers that will not come */
    event_free(d->pool_ev);
    event_free(d->timer);
    xfree(d->dir);
    xfree(d->rows);
    xfree(d->proc);
    xfree(d->bad);
    xfree(d);
}
