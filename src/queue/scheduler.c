/*
 * scheduler.c - queued messages to their transports; see scheduler.h.
 *
 * Ids wait in a FIFO; at most max_in_flight deliveries run on the delivery
 * worker pool at once, so a backlog never starves queue commits. A message
 * whose delivery fails for some recipient stays queued and is retried
 * after retry_min seconds, doubling up to retry_max; recipients already
 * delivered are recorded and not delivered again. A queue file that does
 * not parse is moved to queue/corrupt/ and reported, never deleted.
 * Recipients outside local_domains (relayed for authenticated clients or
 * relay_networks) stay queued: there is no outbound delivery yet.
 *
 * Settling: a delivery leaves its Maildir files in new/ without the
 * directory fsync. The attempt then waits (at most SETTLE_DELAY_MS, or
 * until SETTLE_BATCH attempts wait) for one settle job on the pool that
 * fsyncs every new/ directory written by the batch once, and only then
 * removes the queue files of complete messages and records the delivered
 * recipients of the others. So a queue file never goes before the copies
 * it was delivered as are durable, and a busy mailbox costs one directory
 * fsync per batch instead of one per message. Retries are scheduled once
 * the attempt is settled.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/fsutil.h"
#include "core/log.h"
#include "core/worker.h"
#include "core/xmalloc.h"
#include "msg/addr.h"
#include "queue/scheduler.h"

struct pending {
    struct pending *next;
    struct queue_ref ref;
    unsigned attempts;
    bool check_done;    /* an <ID>.done may exist: found at start, or retried */
};

struct retry {
    struct retry *prev, *next;
    struct scheduler *d;
    struct event *ev;
    struct pending *p;
};

#define SETTLE_DELAY_MS 20
#define SETTLE_BATCH 64
static const struct timeval settle_delay = { 0, SETTLE_DELAY_MS * 1000 };

/* A delivery attempt whose queue update waits for its directories. */
struct settle {
    struct settle *next;
    struct pending *p;
    bool has_done_file;
    bool remove;            /* every recipient done: remove the queue file */
    bool retry;             /* some recipient failed: retry once settled */
    size_t *newly;          /* recipients delivered in this attempt */
    size_t nnewly;
    char **dirs;            /* new/ directories written (no duplicates) */
    size_t ndirs;
    int error;              /* a directory fsync failed */
};

struct settle_job {
    struct scheduler *d;
    struct settle *list;
};

struct scheduler {
    struct sched_ctx ctx;
    struct pending *head, *tail;
    struct retry *retries;
    unsigned in_flight, max_in_flight;
    struct settle *unsettled;   /* waiting for the next settle job */
    size_t nunsettled;
    struct event *settle_ev;    /* SETTLE_DELAY_MS timer */
    bool settling;              /* a settle job runs */
    size_t nsettling;
    bool stopped;
};

struct deliver_job {
    struct scheduler *d;
    struct pending *p;
    struct mw_config *conf;  /* local_domains, as of this attempt */
    /* results */
    int read_error;
    char session[ID_LEN + 1];
    size_t nrcpt, ndelivered, nfailed;
    bool *was_done;   /* recipients done before this attempt */
    struct buf log;   /* per-recipient log lines, written on the loop */
    struct settle *settle;  /* what is left to do once durable, or NULL */
};

static void run_next(struct scheduler *d);
static void settle_cb(evutil_socket_t fd, short what, void *arg);

struct scheduler *sched_new(const struct sched_ctx *ctx)
{
    struct scheduler *d = xcalloc(1, sizeof(*d));
    d->ctx = *ctx;
    d->max_in_flight = (*ctx->conf)->workers * 2;
    d->settle_ev = evtimer_new(ctx->base, settle_cb, d);
    return d;
}

static void push(struct scheduler *d, struct pending *p)
{
    p->next = NULL;
    if (d->tail)
        d->tail->next = p;
    else
        d->head = p;
    d->tail = p;
}

static void enqueue(struct scheduler *d, const char *id, uint32_t slot, bool check_done)
{
    struct pending *p = xcalloc(1, sizeof(*p));
    memcpy(p->ref.id, id, ID_LEN + 1);
    p->ref.slot = slot;
    p->check_done = check_done;
    push(d, p);
    run_next(d);
}

void sched_enqueue(struct scheduler *d, const char *id, uint32_t slot)
{
    enqueue(d, id, slot, false);
}

void sched_load_queue(struct scheduler *d)
{
    struct queue_ref *refs;
    size_t n;
    int r = queue_list(d->ctx.queue, &refs, &n);
    if (r < 0) {
        log_kv(MW_LOG_ERROR, "queue_scan", "error", strerror(-r), NULL);
        return;
    }
    struct log_line l;
    log_begin(&l, MW_LOG_INFO, "queue_scan");
    log_u64(&l, "messages", n);
    log_end(&l);
    for (size_t i = 0; i < n; i++)
        enqueue(d, refs[i].id, refs[i].slot, true);
    xfree(refs);
}

/* Note a delivery to path in st: its index and its new/ directory. */
static void settle_note(struct settle *st, size_t index, const char *path)
{
    st->newly = xreallocarray(st->newly, st->nnewly + 1, sizeof(size_t));
    st->newly[st->nnewly++] = index;
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    for (size_t k = 0; k < st->ndirs; k++)
        if (strlen(st->dirs[k]) == n && memcmp(st->dirs[k], path, n) == 0)
            return;
    st->dirs = xreallocarray(st->dirs, st->ndirs + 1, sizeof(char *));
    st->dirs[st->ndirs++] = xmemdup0(path, n);
}

static void settle_free(struct settle *st)
{
    for (size_t k = 0; k < st->ndirs; k++)
        xfree(st->dirs[k]);
    xfree(st->dirs);
    xfree(st->newly);
    xfree(st);
}

/* Worker thread: no loop state is touched here. */
static void deliver_work(void *arg)
{
    struct deliver_job *j = arg;
    struct queue_msg m;
    const struct queue *q = j->d->ctx.queue;

    j->read_error = queue_read(q, &j->p->ref, j->p->check_done, &m);
    if (j->read_error < 0)
        return;
    j->settle = xcalloc(1, sizeof(*j->settle));
    j->nrcpt = m.nrcpt;
    memcpy(j->session, m.session, sizeof(j->session));
    j->was_done = xcalloc(m.nrcpt, sizeof(bool));
    memcpy(j->was_done, m.done, m.nrcpt * sizeof(bool));
    for (size_t i = 0; i < m.nrcpt; i++) {
        if (m.done[i]) {
            j->ndelivered++;
            continue;
        }
        struct buf path;
        buf_init(&path);
        buf_printf(&path, "<%s>", m.rcpts[i]);
        struct mail_addr a;
        size_t used;
        int r = addr_parse_path(buf_ptr(&path), buf_size(&path), ADDR_UTF8, &a, &used);
        buf_reset(&path);
        if (r < 0) {
            buf_printf(&j->log, "F%zu\t%s\tbad recipient address in queue file\n", i, m.rcpts[i]);
            j->nfailed++;
            buf_free(&path);
            continue;
        }
        if (a.domain[0] != '\0' && !conf_is_local_domain(j->conf, a.domain)) {
            /* Accepted for relaying (authenticated or relay_networks), but
             * there is no outbound delivery yet: keep it queued. */
            buf_printf(&j->log, "F%zu\t%s\tremote delivery is not available; kept in queue\n", i,
                       a.text);
            j->nfailed++;
            addr_free(&a);
            buf_free(&path);
            continue;
        }
        r = j->d->ctx.local(j->d->ctx.local_arg, j->conf, &m, i, &path);
        if (r == 0) {
            m.done[i] = true;
            j->ndelivered++;
            settle_note(j->settle, i, buf_ptr(&path));
            buf_printf(&j->log, "D%zu\t%s\t%s\n", i, a.text, buf_ptr(&path));
        } else {
            j->nfailed++;
            buf_printf(&j->log, "F%zu\t%s\t%s\n", i, a.text, strerror(-r));
        }
        addr_free(&a);
        buf_free(&path);
    }
    struct settle *st = j->settle;
    st->has_done_file = m.has_done_file;
    st->remove = j->nfailed == 0;
    st->retry = j->nfailed > 0;
    xfree(j->was_done);
    queue_msg_free(&m);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Worker: fsync each directory of the batch once, then update the queue
 * for every attempt whose directories are all durable. */
static void settle_work(void *arg)
{
    struct settle_job *sj = arg;
    const struct queue *q = sj->d->ctx.queue;
    size_t n = 0;
    for (struct settle *st = sj->list; st; st = st->next)
        n += st->ndirs;
    char **dirs = xcalloc(n ? n : 1, sizeof(char *));
    int *err = xcalloc(n ? n : 1, sizeof(int));
    n = 0;
    for (struct settle *st = sj->list; st; st = st->next)
        for (size_t k = 0; k < st->ndirs; k++)
            dirs[n++] = st->dirs[k];
    qsort(dirs, n, sizeof(char *), cmp_str);
    for (size_t k = 0; k < n; k++)
        err[k] = (k > 0 && strcmp(dirs[k], dirs[k - 1]) == 0) ? err[k - 1] : fs_fsync_dir(dirs[k]);
    for (struct settle *st = sj->list; st; st = st->next) {
        for (size_t k = 0; k < st->ndirs && st->error == 0; k++) {
            char **hit = bsearch(&st->dirs[k], dirs, n, sizeof(char *), cmp_str);
            st->error = hit ? err[hit - dirs] : -EIO;
        }
        if (st->error < 0) {
            st->retry = true;   /* delivered again later: a duplicate, never a loss */
            continue;
        }
        if (st->remove) {
            queue_remove(q, &st->p->ref, st->has_done_file);
        } else {
            /* Remember who has their copy, so a retry does not deliver
             * twice. A crash before this gives a duplicate, which the
             * durability contract allows. */
            for (size_t k = 0; k < st->nnewly; k++)
                queue_mark_done(q, st->p->ref.id, st->newly[k]);
        }
    }
    xfree(dirs);
    xfree(err);
}

static void schedule_retry(struct scheduler *d, struct pending *p);

static void settle_done(void *arg)
{
    struct settle_job *sj = arg;
    struct scheduler *d = sj->d;
    while (sj->list) {
        struct settle *st = sj->list;
        sj->list = st->next;
        if (st->error < 0) {
            log_kv(MW_LOG_ERROR, "delivery_sync_error", "queue", st->p->ref.id, "error",
                   strerror(-st->error), "action", "delivered again later", NULL);
        }
        if (st->retry && !d->stopped)
            schedule_retry(d, st->p);
        else
            xfree(st->p);
        settle_free(st);
    }
    xfree(sj);
    d->settling = false;
    d->nsettling = 0;
    if (d->unsettled && (d->stopped || d->nunsettled >= SETTLE_BATCH))
        settle_cb(-1, 0, d);
    else if (d->unsettled && !evtimer_pending(d->settle_ev, NULL))
        evtimer_add(d->settle_ev, &settle_delay);
    d->ctx.idle(d->ctx.idle_arg);
}

/* Timer, or a full batch: hand everything unsettled to one settle job. */
static void settle_cb(evutil_socket_t fd, short what, void *arg)
{
    struct scheduler *d = arg;
    (void)fd;
    (void)what;
    if (d->settling || d->unsettled == NULL)
        return;   /* settle_done starts the next batch */
    evtimer_del(d->settle_ev);
    struct settle_job *sj = xcalloc(1, sizeof(*sj));
    sj->d = d;
    sj->list = d->unsettled;
    d->unsettled = NULL;
    d->settling = true;
    d->nsettling = d->nunsettled;
    d->nunsettled = 0;
    worker_submit(d->ctx.pool, settle_work, settle_done, sj);
}

static void settle_add(struct scheduler *d, struct settle *st)
{
    st->next = d->unsettled;
    d->unsettled = st;
    d->nunsettled++;
    if (d->stopped || d->nunsettled >= SETTLE_BATCH)
        settle_cb(-1, 0, d);
    else if (!evtimer_pending(d->settle_ev, NULL))
        evtimer_add(d->settle_ev, &settle_delay);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct retry *r = arg;
    struct scheduler *d = r->d;
    if (r->prev)
        r->prev->next = r->next;
    else
        d->retries = r->next;
    if (r->next)
        r->next->prev = r->prev;
    push(d, r->p);
    event_free(r->ev);
    xfree(r);
    run_next(d);
}

static void schedule_retry(struct scheduler *d, struct pending *p)
{
    const struct mw_config *conf = *d->ctx.conf;
    p->check_done = true;   /* this attempt may have recorded recipients */
    unsigned delay = conf->retry_min;
    for (unsigned i = 1; i < p->attempts && delay < conf->retry_max; i++)
        delay *= 2;
    if (delay > conf->retry_max)
        delay = conf->retry_max;
    struct retry *r = xcalloc(1, sizeof(*r));
    r->d = d;
    r->p = p;
    r->ev = evtimer_new(d->ctx.base, retry_cb, r);
    r->next = d->retries;
    if (d->retries)
        d->retries->prev = r;
    d->retries = r;
    struct timeval tv = { .tv_sec = delay, .tv_usec = 0 };
    evtimer_add(r->ev, &tv);
    struct log_line l;
    log_begin(&l, MW_LOG_INFO, "deferred");
    log_str(&l, "queue", p->ref.id);
    log_u64(&l, "attempts", p->attempts);
    log_u64(&l, "retry_in", delay);
    log_end(&l);
}

/* Turn the worker's per-recipient notes into log lines. */
static void log_results(struct deliver_job *j)
{
    const char *p = buf_ptr(&j->log), *end = p + buf_size(&j->log);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            break;
        /* "D|F<index>\t<rcpt>\t<path or error>" */
        const char *f[3];
        size_t len[3];
        const char *s = p + 1;
        for (int k = 0; k < 3; k++) {
            const char *tab = k < 2 ? memchr(s, '\t', (size_t)(nl - s)) : nl;
            if (tab == NULL)
                tab = nl;
            f[k] = s;
            len[k] = (size_t)(tab - s);
            s = tab < nl ? tab + 1 : nl;
        }
        struct log_line l;
        bool ok = *p == 'D';
        log_begin(&l, ok ? MW_LOG_INFO : MW_LOG_WARN, ok ? "delivered" : "delivery_failed");
        log_str(&l, "queue", j->p->ref.id);
        if (j->session[0])
            log_str(&l, "session", j->session);
        log_mem(&l, "rcpt", f[1], len[1]);
        log_mem(&l, ok ? "path" : "error", f[2], len[2]);
        log_end(&l);
        p = nl + 1;
    }
}

static void deliver_done(void *arg)
{
    struct deliver_job *j = arg;
    struct scheduler *d = j->d;
    struct pending *p = j->p;
    d->in_flight--;

    if (j->read_error == -ENOENT) {
        xfree(p);  /* already delivered and removed */
    } else if (j->read_error < 0) {
        char slot[16];
        snprintf(slot, sizeof(slot), "%u", (unsigned)p->ref.slot);
        log_kv(MW_LOG_ERROR, "queue_corrupt", "queue", p->ref.id, "slot", slot, "error",
               strerror(-j->read_error),
               "action", "moved to queue/corrupt", NULL);
        queue_quarantine(d->ctx.queue, &p->ref);
        xfree(p);
    } else {
        log_results(j);
        if (j->nfailed > 0)
            p->attempts++;
        j->settle->p = p;
        settle_add(d, j->settle);   /* also when nothing new was delivered: keeps the order */
    }
    buf_free(&j->log);
    conf_unref(j->conf);
    xfree(j);
    run_next(d);
    d->ctx.idle(d->ctx.idle_arg);
}

static void run_next(struct scheduler *d)
{
    while (!d->stopped && d->head && d->in_flight < d->max_in_flight) {
        struct pending *p = d->head;
        d->head = p->next;
        if (d->head == NULL)
            d->tail = NULL;
        struct deliver_job *j = xcalloc(1, sizeof(*j));
        j->d = d;
        j->p = p;
        j->conf = conf_ref(*d->ctx.conf);
        d->in_flight++;
        worker_submit(d->ctx.pool, deliver_work, deliver_done, j);
    }
}

unsigned sched_in_flight(const struct scheduler *d)
{
    return d->in_flight + (unsigned)(d->nunsettled + d->nsettling) + (d->settling ? 1 : 0);
}

void sched_stop(struct scheduler *d)
{
    d->stopped = true;
    settle_cb(-1, 0, d);   /* settle now what waits, not after the delay */
}

void sched_free(struct scheduler *d)
{
    if (d == NULL)
        return;
    while (d->head) {
        struct pending *p = d->head;
        d->head = p->next;
        xfree(p);
    }
    while (d->unsettled) {
        struct settle *st = d->unsettled;
        d->unsettled = st->next;
        xfree(st->p);
        settle_free(st);
    }
    if (d->settle_ev)
        event_free(d->settle_ev);
    while (d->retries) {
        struct retry *r = d->retries;
        d->retries = r->next;
        event_free(r->ev);
        xfree(r->p);
        xfree(r);
    }
    xfree(d);
}
