/*
 * scheduler.c - queued messages to their transports; see scheduler.h.
 *
 * Every queued message the daemon knows has a struct qmsg. An attempt
 * runs on the delivery pool (deliver_work): read the record and its
 * recipient states, fail the recipients of a message older than
 * max_queue_lifetime, deliver the local ones that are due, and group the
 * remote ones that are due by domain. Back on the loop the groups go to
 * their destinations' queues (dest.c), and the local part waits to be
 * settled.
 *
 * Settling: a local delivery leaves its Maildir file in new/ without the
 * directory fsync. The attempt waits (at most SETTLE_DELAY_MS, or until
 * SETTLE_BATCH attempts wait) for one settle job on the pool that fsyncs
 * every new/ directory written by the batch once, and only then records
 * the delivered recipients, or removes the queue record when that was
 * everything. So a queue record never goes before the copies it was
 * delivered as are durable, and a busy mailbox costs one directory fsync
 * per batch instead of one per message.
 *
 * Remote outcomes come back per destination item and are recorded on the
 * pool. Once every part of the attempt is in, the message is either
 * finished (every recipient delivered or failed: a bounce for the failed
 * ones, then the record goes) or waits for its earliest deferred
 * recipient, with a delay warning first when delay_warning_time has
 * passed. Retry delays double from retry_min up to retry_max, each drawn
 * between half and all of that (jitter), so that messages deferred
 * together do not come back together.
 */
#include "queue/scheduler.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <event2/event.h>

#include "core/fsutil.h"
#include "core/id.h"
#include "core/idna.h"
#include "core/log.h"
#include "core/str.h"
#include "core/worker.h"
#include "core/xmalloc.h"
#include "msg/addr.h"
#include "msg/dsn.h"
#include "queue/bounce.h"
#include "queue/dest.h"

#define SETTLE_DELAY_MS 20
#define SETTLE_BATCH 64
static const struct timeval settle_delay = { 0, SETTLE_DELAY_MS * 1000 };

enum where { W_RUN, W_ATTEMPT, W_WAITING, W_HELD, W_FINISHING };

struct qmsg {
    struct qmsg *next;          /* in the run FIFO */
    struct qmsg *hnext;         /* in the id table */
    enum where where;
    bool force;                 /* the next attempt tries every deferred recipient */
    bool flush_pending;         /* flushed during an attempt: try again right after it */
    bool hold_requested, remove_requested, remove_silent;
    char *domains;              /* " a.example b.example ": remote domains of the last attempt */
    unsigned attempts;          /* the most any recipient has had */
    struct qmsg *wprev, *wnext; /* among those waiting for a retry */
    struct scheduler *s;
    struct queue_ref ref;
    bool check_done;            /* an <ID>.state may exist */
    struct event *timer;        /* the retry, while waiting */
    /* the attempt in progress */
    unsigned open;              /* parts not yet in: destination items, the local settle */
    size_t nrcpt;
    uint8_t *st;                /* enum queue_rcpt_state of each recipient */
    time_t next_due;            /* the earliest deferred recipient's next attempt */
    time_t arrival;
    bool bounce_owed;           /* some recipient failed and no bounce went yet */
    bool warn_owed;             /* the delay warning is due and did not go yet */
    bool removed;               /* the settle removed the record */
    bool has_state;             /* an <ID>.state may exist (removal unlinks it) */
};

/* A local attempt whose queue update waits for its directories. */
struct settle {
    struct settle *next;
    struct qmsg *m;
    bool has_done_file;
    bool remove;            /* every recipient delivered here: remove the record */
    size_t *newly;          /* recipients delivered in this attempt */
    bool *success;          /* ...whose sender asked to hear of it */
    size_t nnewly;
    char **dirs;            /* new/ directories written (no duplicates) */
    size_t ndirs;
    int error;              /* a directory fsync failed */
};

struct settle_job {
    struct scheduler *s;
    struct settle *list;
};

#define ID_BUCKETS 16384

struct scheduler {
    struct sched_ctx ctx;
    struct qmsg *ids[ID_BUCKETS];
    struct qmsg *held;          /* held by the operator */
    struct dests *dests;
    struct qmsg *head, *tail;   /* waiting for an attempt */
    struct qmsg *waiting;       /* waiting for a retry timer */
    struct qmsg *attempting;    /* with an attempt in progress */
    unsigned in_flight, max_in_flight;  /* deliver_work jobs */
    unsigned jobs;              /* other pool jobs (records, bounces, removals) */
    unsigned attempts_open;     /* messages with an attempt in progress */
    struct settle *unsettled;
    size_t nunsettled;
    struct event *settle_ev;
    bool settling;
    size_t nsettling;
    bool stopped;
};

/* A remote group, as deliver_work found it. */
struct group {
    char *domain;
    size_t n;
    size_t *index;
    unsigned *prior;        /* attempts so far, per recipient */
};

struct deliver_job {
    struct scheduler *s;
    struct qmsg *m;
    struct mw_config *conf;
    time_t now;
    /* results */
    int read_error;
    char session[ID_LEN + 1];
    char *from;
    struct buf log;         /* per-recipient log lines, written on the loop */
    struct settle *settle;
    struct group *groups;
    size_t ngroups;
    char **rcpts;           /* copies, for the destination items */
    unsigned *notify;       /* RFC 3461 parameters, for the items */
    char **orcpt;
    char ret;
    char *envid;
    size_t nrcpt;
    uint8_t *st;
    time_t next_due;
    bool bounce_owed, warn_owed;
    bool force, held;
    bool state_file;        /* the record has a state file, or this attempt wrote one */
    unsigned attempts;
    time_t arrival;
};

static void run_next(struct scheduler *s);
static void settle_cb(evutil_socket_t fd, short what, void *arg);
static void attempt_end(struct qmsg *m);
static void remote_done(void *arg, struct dest_item *it);

struct scheduler *sched_new(const struct sched_ctx *ctx)
{
    struct scheduler *s = xcalloc(1, sizeof(*s));
    s->ctx = *ctx;
    s->max_in_flight = (*ctx->conf)->workers * 2;
    s->settle_ev = evtimer_new(ctx->base, settle_cb, s);
    struct dests_ctx dc = {
        .base = ctx->base,
        .conf = ctx->conf,
        .start = ctx->remote,
        .arg = ctx->remote_arg,
    };
    s->dests = dests_new(&dc);
    return s;
}

struct dests *sched_dests(struct scheduler *s)
{
    return s->dests;
}

static void idle(struct scheduler *s)
{
    s->ctx.idle(s->ctx.idle_arg);
}

static void push(struct scheduler *s, struct qmsg *m)
{
    m->next = NULL;
    if (s->tail)
        s->tail->next = m;
    else
        s->head = m;
    s->tail = m;
}

static uint32_t id_hash(const char *id)
{
    uint32_t h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (uint8_t)*id) * 16777619u;
    return h % ID_BUCKETS;
}

static struct qmsg *by_id(struct scheduler *s, const char *id)
{
    for (struct qmsg *m = s->ids[id_hash(id)]; m; m = m->hnext)
        if (strcmp(m->ref.id, id) == 0)
            return m;
    return NULL;
}

static void enqueue(struct scheduler *s, const char *id, uint32_t slot, bool check_done)
{
    if (by_id(s, id) != NULL)
        return;   /* known already */
    struct qmsg *m = xcalloc(1, sizeof(*m));
    m->s = s;
    memcpy(m->ref.id, id, ID_LEN + 1);
    m->ref.slot = slot;
    m->check_done = check_done;
    uint32_t h = id_hash(m->ref.id);
    m->hnext = s->ids[h];
    s->ids[h] = m;
    m->where = W_RUN;
    push(s, m);
    run_next(s);
}

void sched_enqueue(struct scheduler *s, const char *id, uint32_t slot)
{
    enqueue(s, id, slot, false);
}

void sched_load_queue(struct scheduler *s)
{
    struct queue_ref *refs;
    size_t n;
    int r = queue_list(s->ctx.queue, &refs, &n);
    if (r < 0) {
        log_kv(MW_LOG_ERROR, "queue_scan", "error", strerror(-r), NULL);
        return;
    }
    struct log_line l;
    log_begin(&l, MW_LOG_INFO, "queue_scan");
    log_u64(&l, "messages", n);
    log_end(&l);
    for (size_t i = 0; i < n; i++)
        enqueue(s, refs[i].id, refs[i].slot, true);
    xfree(refs);
}

static void list_add(struct qmsg **head, struct qmsg *m)
{
    m->wprev = NULL;
    m->wnext = *head;
    if (*head)
        (*head)->wprev = m;
    *head = m;
}

static void list_del(struct qmsg **head, struct qmsg *m)
{
    if (m->wprev)
        m->wprev->wnext = m->wnext;
    else
        *head = m->wnext;
    if (m->wnext)
        m->wnext->wprev = m->wprev;
    m->wprev = m->wnext = NULL;
}

static void qmsg_free(struct qmsg *m)
{
    struct qmsg **pp = &m->s->ids[id_hash(m->ref.id)];
    while (*pp && *pp != m)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = m->hnext;
    xfree(m->domains);
    if (m->timer)
        event_free(m->timer);
    xfree(m->st);
    xfree(m);
}

/* ---- settling ------------------------------------------------------------------------ */

static void settle_note(struct settle *st, size_t index, const char *path)
{
    st->newly = xreallocarray(st->newly, st->nnewly + 1, sizeof(size_t));
    st->success = xreallocarray(st->success, st->nnewly + 1, sizeof(bool));
    st->success[st->nnewly] = false;
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
    xfree(st->success);
    xfree(st);
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
    const struct queue *q = sj->s->ctx.queue;
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
        if (st->error < 0)
            continue;   /* delivered again later: the same file name, no second copy */
        if (st->remove) {
            queue_remove(q, &st->m->ref, st->has_done_file);
        } else {
            for (size_t k = 0; k < st->nnewly; k++)
                if (st->success[k])
                    queue_mark_success(q, st->m->ref.id, st->newly[k]);
                else
                    queue_mark_done(q, st->m->ref.id, st->newly[k]);
        }
    }
    xfree(dirs);
    xfree(err);
}

static void settle_done(void *arg)
{
    struct settle_job *sj = arg;
    struct scheduler *s = sj->s;
    while (sj->list) {
        struct settle *st = sj->list;
        sj->list = st->next;
        struct qmsg *m = st->m;
        if (st->error < 0) {
            log_kv(MW_LOG_ERROR, "delivery_sync_error", "queue", m->ref.id, "error",
                   strerror(-st->error), "action", "delivered again later", NULL);
            /* not durable: those recipients are tried again */
            for (size_t k = 0; k < st->nnewly; k++)
                m->st[st->newly[k]] = QUEUE_RCPT_DEFERRED;
            if (m->next_due == 0 || m->next_due > time(NULL))
                m->next_due = time(NULL);
        } else if (st->remove) {
            m->removed = true;
        } else if (st->nnewly > 0) {
            m->has_state = true;   /* the deliveries were recorded there */
        }
        settle_free(st);
        m->open--;
        attempt_end(m);
    }
    xfree(sj);
    s->settling = false;
    s->nsettling = 0;
    if (s->unsettled && (s->stopped || s->nunsettled >= SETTLE_BATCH))
        settle_cb(-1, 0, s);
    else if (s->unsettled && !evtimer_pending(s->settle_ev, NULL))
        evtimer_add(s->settle_ev, &settle_delay);
    idle(s);
}

static void settle_cb(evutil_socket_t fd, short what, void *arg)
{
    struct scheduler *s = arg;
    (void)fd;
    (void)what;
    if (s->settling || s->unsettled == NULL)
        return;   /* settle_done starts the next batch */
    evtimer_del(s->settle_ev);
    struct settle_job *sj = xcalloc(1, sizeof(*sj));
    sj->s = s;
    sj->list = s->unsettled;
    s->unsettled = NULL;
    s->settling = true;
    s->nsettling = s->nunsettled;
    s->nunsettled = 0;
    worker_submit(s->ctx.pool, settle_work, settle_done, sj);
}

static void settle_add(struct scheduler *s, struct settle *st)
{
    st->next = s->unsettled;
    s->unsettled = st;
    s->nunsettled++;
    if (s->stopped || s->nunsettled >= SETTLE_BATCH)
        settle_cb(-1, 0, s);
    else if (!evtimer_pending(s->settle_ev, NULL))
        evtimer_add(s->settle_ev, &settle_delay);
}

/* ---- the attempt ------------------------------------------------------------------- */

static unsigned retry_delay(const struct mw_config *c, unsigned attempts)
{
    unsigned delay = c->retry_min;
    for (unsigned i = 1; i < attempts && delay < c->retry_max; i++)
        delay *= 2;
    if (delay > c->retry_max)
        delay = c->retry_max;
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint32_t)time(NULL) * 2654435761u;
    unsigned half = delay / 2;
    return delay - (half ? r % (half + 1) : 0);
}

static struct group *group_for(struct deliver_job *j, const char *domain)
{
    for (size_t g = 0; g < j->ngroups; g++)
        if (strcmp(j->groups[g].domain, domain) == 0)
            return &j->groups[g];
    j->groups = xreallocarray(j->groups, j->ngroups + 1, sizeof(*j->groups));
    struct group *g = &j->groups[j->ngroups++];
    memset(g, 0, sizeof(*g));
    g->domain = xstrdup(domain);
    return g;
}

/* Record a final or deferred state for recipient i and note it. */
static void note_state(struct deliver_job *j, const struct queue *q, struct queue_msg *m,
                       size_t i, struct queue_rcpt *r)
{
    queue_mark_rcpt(q, m->ref.id, i, r);
    j->state_file = true;
    j->st[i] = (uint8_t)r->state;
    if (r->state == QUEUE_RCPT_FAILED)
        j->bounce_owed = true;
    if (r->state == QUEUE_RCPT_DEFERRED && (j->next_due == 0 || r->next < j->next_due))
        j->next_due = r->next;
}

/* Worker thread: no loop state is touched here. */
static void deliver_work(void *arg)
{
    struct deliver_job *j = arg;
    struct queue_msg m;
    const struct queue *q = j->s->ctx.queue;
    const struct mw_config *c = j->conf;

    j->read_error = queue_read(q, &j->m->ref, j->m->check_done, &m);
    if (j->read_error < 0)
        return;
    j->settle = xcalloc(1, sizeof(*j->settle));
    if (m.held && !j->force) {
        /* held by the operator (before a restart): nothing until released */
        j->held = true;
        j->nrcpt = m.nrcpt;
        j->st = xcalloc(m.nrcpt, 1);
        j->settle->has_done_file = m.has_done_file;
        queue_msg_free(&m);
        return;
    }
    j->nrcpt = m.nrcpt;
    j->st = xcalloc(m.nrcpt, 1);
    j->rcpts = xcalloc(m.nrcpt, sizeof(char *));
    j->notify = xcalloc(m.nrcpt, sizeof(unsigned));
    memcpy(j->notify, m.notify, m.nrcpt * sizeof(unsigned));
    j->orcpt = xcalloc(m.nrcpt, sizeof(char *));
    for (size_t i = 0; i < m.nrcpt; i++)
        j->orcpt[i] = m.orcpt[i] ? xstrdup(m.orcpt[i]) : NULL;
    j->ret = m.ret;
    j->envid = m.envid ? xstrdup(m.envid) : NULL;
    j->from = xstrdup(m.from);
    j->arrival = m.arrival;
    memcpy(j->session, m.session, sizeof(j->session));
    bool expired = j->now - m.arrival >= (time_t)c->max_queue_lifetime;
    size_t nlocal = 0, ndone = 0;
    for (size_t i = 0; i < m.nrcpt; i++) {
        struct queue_rcpt *rs = &m.rs[i];
        j->st[i] = (uint8_t)rs->state;
        if (rs->attempts > j->attempts)
            j->attempts = rs->attempts;
        if ((rs->state == QUEUE_RCPT_FAILED || rs->success_owed) && !rs->reported)
            j->bounce_owed = true;   /* a report is owed */
        if (m.done[i]) {
            ndone++;
            continue;
        }
        if (expired) {
            /* The reason is ours (code 0): the last reply, if any, is
             * quoted, not passed off as the peer's answer to this. */
            struct buf why = { 0 };
            unsigned life = c->max_queue_lifetime;
            if (life >= 86400 && life % 86400 == 0)
                buf_printf(&why, "delivery time expired after %u day%s", life / 86400,
                           life == 86400 ? "" : "s");
            else
                buf_printf(&why, "delivery time expired after %u seconds", life);
            if (rs->code)
                buf_printf(&why, "; the last reply was: %u%s%s %s", rs->code,
                           rs->enhanced[0] ? " " : "", rs->enhanced, rs->reply ? rs->reply : "");
            else if (rs->reply)
                buf_printf(&why, "; the last error was: %s", rs->reply);
            xfree(rs->reply);
            rs->reply = why.data;
            rs->state = QUEUE_RCPT_FAILED;
            rs->code = 0;
            snprintf(rs->enhanced, sizeof(rs->enhanced), "4.4.7");
            note_state(j, q, &m, i, rs);
            buf_printf(&j->log, "X%zu\t%s\t%s\n", i, m.rcpts[i], rs->reply);
            continue;
        }
        if (rs->state == QUEUE_RCPT_DEFERRED && rs->next > j->now && !j->force) {
            /* not due yet (another recipient's retry brought us here) */
            if (j->next_due == 0 || rs->next < j->next_due)
                j->next_due = rs->next;
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
            struct queue_rcpt f = { .state = QUEUE_RCPT_FAILED, .code = 550,
                                    .enhanced = "5.1.3",
                                    .reply = "bad recipient address in the queue file" };
            note_state(j, q, &m, i, &f);
            buf_printf(&j->log, "F%zu\t%s\t%s\n", i, m.rcpts[i], f.reply);
            buf_free(&path);
            continue;
        }
        if (a.domain[0] != '\0' && !conf_is_local_domain(c, a.domain)) {
            char *ace = idna_to_ascii(a.domain);
            if (ace == NULL) {
                struct queue_rcpt f = { .state = QUEUE_RCPT_FAILED, .code = 553,
                                        .enhanced = "5.1.3",
                                        .reply = "the recipient domain is not a valid IDN" };
                note_state(j, q, &m, i, &f);
                buf_printf(&j->log, "F%zu\t%s\t%s\n", i, a.text, f.reply);
            } else {
                str_lower(ace);
                /* a smarthost takes everything: one destination, "[relayhost]" */
                struct group *g = group_for(j, c->relayhost_host ? SCHED_RELAYHOST : ace);
                g->index = xreallocarray(g->index, g->n + 1, sizeof(size_t));
                g->prior = xreallocarray(g->prior, g->n + 1, sizeof(unsigned));
                g->prior[g->n] = rs->attempts;
                g->index[g->n++] = i;
                j->rcpts[i] = xstrdup(m.rcpts[i]);
                j->st[i] = QUEUE_RCPT_PENDING;
                xfree(ace);
            }
            addr_free(&a);
            buf_free(&path);
            continue;
        }
        nlocal++;
        r = j->s->ctx.local(j->s->ctx.local_arg, c, &m, i, &path);
        if (r == 0) {
            j->st[i] = QUEUE_RCPT_DELIVERED;
            ndone++;
            settle_note(j->settle, i, buf_ptr(&path));
            if (m.notify[i] & SMTP_NOTIFY_SUCCESS) {
                j->settle->success[j->settle->nnewly - 1] = true;
                j->bounce_owed = true;   /* a "delivered" report is owed */
            }
            buf_printf(&j->log, "D%zu\t%s\t%s\n", i, a.text, buf_ptr(&path));
        } else {
            struct queue_rcpt t = { .state = QUEUE_RCPT_DEFERRED, .attempts = rs->attempts + 1,
                                    .code = 451, .enhanced = "4.2.0",
                                    .reply = (char *)strerror(-r) };
            t.next = j->now + retry_delay(c, t.attempts);
            if (t.attempts > j->attempts)
                j->attempts = t.attempts;
            note_state(j, q, &m, i, &t);
            buf_printf(&j->log, "F%zu\t%s\t%s\n", i, a.text, strerror(-r));
        }
        addr_free(&a);
        buf_free(&path);
    }
    struct settle *st = j->settle;
    j->state_file = j->state_file || m.has_done_file;
    st->has_done_file = j->state_file;
    /* The fast path: everything delivered here, nothing else owed. */
    st->remove = ndone == m.nrcpt && j->ngroups == 0 && !j->bounce_owed;
    j->warn_owed = c->delay_warning_time > 0 && !m.warned && bounce_wanted(&m) &&
                   j->now - m.arrival >= (time_t)c->delay_warning_time;
    if (!bounce_wanted(&m))
        j->bounce_owed = false;   /* never a bounce for a bounce */
    (void)nlocal;
    queue_msg_free(&m);
}

/* Turn the worker's per-recipient notes into log lines. */
static void log_results(struct deliver_job *j)
{
    const char *p = buf_ptr(&j->log), *end = p + buf_size(&j->log);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            break;
        /* "D|F|X<index>\t<rcpt>\t<path or error>" */
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
        log_begin(&l, ok ? MW_LOG_INFO : MW_LOG_WARN,
                  ok ? "delivered" : *p == 'X' ? "expired" : "delivery_failed");
        log_str(&l, "queue", j->m->ref.id);
        if (j->session[0])
            log_str(&l, "session", j->session);
        log_mem(&l, "rcpt", f[1], len[1]);
        log_mem(&l, ok ? "path" : "error", f[2], len[2]);
        log_end(&l);
        p = nl + 1;
    }
}

static void job_free(struct deliver_job *j)
{
    for (size_t g = 0; g < j->ngroups; g++) {
        xfree(j->groups[g].domain);
        xfree(j->groups[g].index);
        xfree(j->groups[g].prior);
    }
    xfree(j->groups);
    if (j->rcpts)
        for (size_t i = 0; i < j->nrcpt; i++)
            xfree(j->rcpts[i]);
    if (j->orcpt)
        for (size_t i = 0; i < j->nrcpt; i++)
            xfree(j->orcpt[i]);
    xfree(j->rcpts);
    xfree(j->orcpt);
    xfree(j->notify);
    xfree(j->envid);
    xfree(j->st);
    xfree(j->from);
    buf_free(&j->log);
    conf_unref(j->conf);
    xfree(j);
}

static void deliver_done(void *arg)
{
    struct deliver_job *j = arg;
    struct scheduler *s = j->s;
    struct qmsg *m = j->m;
    s->in_flight--;

    if (j->read_error == -ENOENT) {
        qmsg_free(m);   /* already finished and removed */
    } else if (j->read_error < 0) {
        char slot[16];
        snprintf(slot, sizeof(slot), "%u", (unsigned)m->ref.slot);
        log_kv(MW_LOG_ERROR, "queue_corrupt", "queue", m->ref.id, "slot", slot, "error",
               strerror(-j->read_error), "action", "moved to queue/corrupt", NULL);
        queue_quarantine(s->ctx.queue, &m->ref);
        qmsg_free(m);
    } else if (j->held) {
        m->check_done = true;
        m->where = W_HELD;
        list_add(&s->held, m);
        settle_free(j->settle);
        log_kv(MW_LOG_INFO, "held", "queue", m->ref.id, NULL);
    } else {
        log_results(j);
        m->force = false;
        if (j->attempts > m->attempts)
            m->attempts = j->attempts;
        xfree(m->st);
        m->st = j->st;
        j->st = NULL;
        m->nrcpt = j->nrcpt;
        m->next_due = j->next_due;
        m->arrival = j->arrival;
        m->has_state = m->has_state || j->state_file;
        m->bounce_owed = j->bounce_owed;
        m->warn_owed = j->warn_owed;
        m->check_done = true;
        s->attempts_open++;
        m->where = W_ATTEMPT;
        list_add(&s->attempting, m);
        if (j->ngroups > 0) {
            struct buf d = { 0 };
            buf_append_byte(&d, ' ');
            for (size_t g = 0; g < j->ngroups; g++)
                buf_printf(&d, "%s ", j->groups[g].domain);
            xfree(m->domains);
            m->domains = d.data;
        }
        m->open = 1 + (unsigned)j->ngroups;
        for (size_t g = 0; g < j->ngroups; g++) {
            struct group *gr = &j->groups[g];
            struct dest_item *it = xcalloc(1, sizeof(*it));
            it->ref = m->ref;
            it->dest = gr->domain;
            gr->domain = NULL;
            it->from = xstrdup(j->from);
            it->arrival = j->arrival;
            it->n = gr->n;
            it->index = gr->index;
            gr->index = NULL;
            it->prior = gr->prior;
            gr->prior = NULL;
            it->rcpts = xcalloc(it->n, sizeof(char *));
            it->notify = xcalloc(it->n, sizeof(unsigned));
            it->orcpt = xcalloc(it->n, sizeof(char *));
            for (size_t k = 0; k < it->n; k++) {
                size_t i = it->index[k];
                it->rcpts[k] = j->rcpts[i];
                j->rcpts[i] = NULL;
                it->notify[k] = j->notify[i];
                it->orcpt[k] = j->orcpt[i] ? xstrdup(j->orcpt[i]) : NULL;
            }
            it->ret = j->ret;
            it->envid = j->envid ? xstrdup(j->envid) : NULL;
            it->res = xcalloc(it->n, sizeof(*it->res));
            it->done = remote_done;
            it->done_arg = m;
            dests_submit(s->dests, it);
        }
        j->settle->m = m;
        settle_add(s, j->settle);   /* also when nothing was delivered: keeps the order */
    }
    job_free(j);
    run_next(s);
    idle(s);
}

static void run_next(struct scheduler *s)
{
    while (!s->stopped && s->head && s->in_flight < s->max_in_flight) {
        struct qmsg *m = s->head;
        s->head = m->next;
        if (s->head == NULL)
            s->tail = NULL;
        struct deliver_job *j = xcalloc(1, sizeof(*j));
        j->s = s;
        j->m = m;
        j->conf = conf_ref(*s->ctx.conf);
        j->now = time(NULL);
        j->force = m->force;
        s->in_flight++;
        worker_submit(s->ctx.pool, deliver_work, deliver_done, j);
    }
}

/* ---- remote outcomes ----------------------------------------------------------------- */

struct record_job {
    struct scheduler *s;
    struct dest_item *it;
    struct queue_rcpt *rs;
    bool remove;        /* these outcomes finish the message: remove it instead */
    bool has_state;     /* ...and whether it has a state file to unlink */
    bool removed;
};

static void record_work(void *arg)
{
    struct record_job *r = arg;
    const struct queue *q = r->s->ctx.queue;
    /* The last part of the attempt, and nothing is owed: the record goes
     * at once, without first writing outcomes that nobody will read. */
    if (r->remove && queue_remove(q, &r->it->ref, r->has_state) == 0) {
        r->removed = true;
        return;
    }
    for (size_t k = 0; k < r->it->n; k++)
        queue_mark_rcpt(q, r->it->ref.id, r->it->index[k], &r->rs[k]);
}

static void record_done(void *arg)
{
    struct record_job *r = arg;
    struct scheduler *s = r->s;
    struct qmsg *m = r->it->done_arg;
    s->jobs--;
    for (size_t k = 0; k < r->it->n; k++)
        queue_rcpt_clear(&r->rs[k]);
    xfree(r->rs);
    dest_item_free(r->it);
    if (r->removed)
        m->removed = true;
    else
        m->has_state = true;   /* the outcomes were written there */
    xfree(r);
    m->open--;
    attempt_end(m);
    idle(s);
}

/* An item's outcomes, on the loop: record them (pool), then see whether
 * the attempt is over. */
static void remote_done(void *arg, struct dest_item *it)
{
    struct qmsg *m = arg;
    struct scheduler *s = m->s;
    const struct mw_config *c = *s->ctx.conf;
    time_t now = time(NULL);
    struct record_job *r = xcalloc(1, sizeof(*r));
    r->s = s;
    r->it = it;
    r->rs = xcalloc(it->n, sizeof(*r->rs));
    for (size_t k = 0; k < it->n; k++) {
        const struct dest_result *res = &it->res[k];
        struct queue_rcpt *q = &r->rs[k];
        q->state = res->state;
        q->code = res->code;
        snprintf(q->enhanced, sizeof(q->enhanced), "%s", res->enhanced);
        q->mta = res->mta[0] ? xstrdup(res->mta) : NULL;
        q->reply = xstrdup(res->text);
        size_t i = it->index[k];
        if (i < m->nrcpt)
            m->st[i] = (uint8_t)q->state;
        if (q->state == QUEUE_RCPT_FAILED && it->from[0] != '\0')
            m->bounce_owed = true;
        if (q->state == QUEUE_RCPT_DELIVERED && (it->notify[k] & SMTP_NOTIFY_SUCCESS) &&
            !res->dsn_passed && it->from[0] != '\0') {
            q->success_owed = true;   /* "relayed": the next hop will not say it */
            m->bounce_owed = true;
        }
        if (q->state == QUEUE_RCPT_DEFERRED) {
            q->attempts = it->prior[k] + 1;
            if (q->attempts > m->attempts)
                m->attempts = q->attempts;
            q->next = now + retry_delay(c, q->attempts);
            if (m->next_due == 0 || q->next < m->next_due)
                m->next_due = q->next;
        }
    }
    bool final = m->open == 1 && !m->bounce_owed && !m->warn_owed && !m->hold_requested &&
                 !m->remove_requested && !m->flush_pending;
    for (size_t i = 0; i < m->nrcpt && final; i++)
        final = m->st[i] == QUEUE_RCPT_DELIVERED || m->st[i] == QUEUE_RCPT_FAILED;
    r->remove = final;
    r->has_state = m->has_state;
    s->jobs++;
    worker_submit(s->ctx.pool, record_work, record_done, r);
}

/* ---- the end of an attempt ------------------------------------------------------------- */

struct finish_job {
    struct scheduler *s;
    struct qmsg *m;
    struct mw_config *conf;
    enum bounce_kind kind;
    bool remove;            /* the message is done: remove the record */
    bool removed_by_operator, silent;
    int error;
    size_t reported;
    char report_id[ID_LEN + 1];
    uint32_t report_slot;
};

/* Every failure and success report that was owed has gone (or was not
 * wanted): say so, so that no later attempt sends it again. */
static void mark_reported(const struct queue *q, const struct queue_msg *m)
{
    for (size_t i = 0; i < m->nrcpt; i++)
        if ((m->rs[i].state == QUEUE_RCPT_FAILED || m->rs[i].success_owed) && !m->rs[i].reported)
            queue_mark_reported(q, m->ref.id, i);
}

/* Worker: write the bounce or the delay warning into our own queue, mark
 * it sent, and remove the record when the message is done. */
static void finish_work(void *arg)
{
    struct finish_job *f = arg;
    const struct queue *q = f->s->ctx.queue;
    struct queue_msg m;
    f->error = queue_read(q, &f->m->ref, true, &m);
    if (f->error < 0)
        return;
    if (f->removed_by_operator) {
        /* every recipient not yet delivered fails, reported unless silent */
        for (size_t i = 0; i < m.nrcpt; i++) {
            struct queue_rcpt *r = &m.rs[i];
            if (r->state == QUEUE_RCPT_DELIVERED || r->state == QUEUE_RCPT_FAILED)
                continue;
            queue_rcpt_clear(r);
            r->state = QUEUE_RCPT_FAILED;
            snprintf(r->enhanced, sizeof(r->enhanced), "5.0.0");
            r->reply = xstrdup("removed from the queue by the operator");
            r->reported = f->silent;
        }
        if (f->silent)
            for (size_t i = 0; i < m.nrcpt; i++)
                m.rs[i].reported = true;
    }
    bool owed = bounce_wanted(&m) && (f->kind == BOUNCE_FAILED || !m.warned);
    if (owed) {
        struct buf out = { 0 };
        id_new(f->report_id);
        struct bounce_opts o = {
            .hostname = f->conf->hostname,
            .id = f->report_id,
            .now = time(NULL),
            .retry_until = m.arrival + (time_t)f->conf->max_queue_lifetime,
        };
        f->reported = bounce_build(f->kind, &m, &o, &out);
        if (f->reported > 0) {
            const char *rcpt = m.from;
            struct queue_env env = { .session = m.session[0] ? m.session : m.ref.id, .from = "",
                                     .rcpts = &rcpt, .nrcpt = 1, .arrival = o.now };
            struct iovec iov = { .iov_base = out.data, .iov_len = buf_size(&out) };
            f->error = queue_commit(q, f->report_id, &env, &iov, 1, &f->report_slot);
            if (f->error != 0)
                f->reported = 0;
            else if (f->kind == BOUNCE_DELAYED)
                queue_mark_flag(q, m.ref.id, 'W');
            else
                mark_reported(q, &m);
        }
        buf_free(&out);
        /* NOTIFY=NEVER, or without FAILURE: nothing to say, nothing owed */
        if (f->reported == 0 && f->error == 0 && f->kind == BOUNCE_FAILED)
            mark_reported(q, &m);
    }
    if (f->remove && f->error == 0)
        f->error = queue_remove(q, &m.ref, true);
    queue_msg_free(&m);
}

static void schedule_retry(struct qmsg *m);
static void operator_action(struct qmsg *m);
static void finish_as(struct qmsg *m, enum bounce_kind kind, bool remove, bool by_operator,
                      bool silent);

static void finish_done(void *arg)
{
    struct finish_job *f = arg;
    struct scheduler *s = f->s;
    struct qmsg *m = f->m;
    s->jobs--;
    if (f->reported > 0) {
        struct log_line l;
        log_begin(&l, MW_LOG_INFO, f->kind == BOUNCE_FAILED ? "bounce" : "delay_warning");
        log_str(&l, "queue", m->ref.id);
        log_str(&l, "report", f->report_id);
        log_u64(&l, "recipients", f->reported);
        log_end(&l);
        if (!s->stopped)
            sched_enqueue(s, f->report_id, f->report_slot);
    }
    if (f->error < 0 && f->error != -ENOENT)
        log_kv(MW_LOG_ERROR, "queue_error", "queue", m->ref.id, "operation",
               f->remove ? "finish" : "delay warning", "error", strerror(-f->error), NULL);
    if (f->removed_by_operator && f->error == 0)
        log_kv(MW_LOG_INFO, "removed", "queue", m->ref.id, "bounce", f->silent ? "no" : "yes",
               NULL);
    if (f->remove && f->error == 0) {
        qmsg_free(m);
    } else if (f->remove) {
        m->next_due = time(NULL) + (*s->ctx.conf)->retry_min;
        schedule_retry(m);    /* the bounce or the removal failed: try again */
    } else {
        schedule_retry(m);
    }
    conf_unref(f->conf);
    xfree(f);
    idle(s);
}

/* The report (and removal) job; by_operator: `queue remove`, every
 * recipient not yet delivered failing (reported unless silent). */
static void finish_as(struct qmsg *m, enum bounce_kind kind, bool remove, bool by_operator,
                      bool silent)
{
    struct scheduler *s = m->s;
    m->where = W_FINISHING;
    struct finish_job *f = xcalloc(1, sizeof(*f));
    f->s = s;
    f->m = m;
    f->conf = conf_ref(*s->ctx.conf);
    f->kind = kind;
    f->remove = remove;
    f->removed_by_operator = by_operator;
    f->silent = silent;
    s->jobs++;
    worker_submit(s->ctx.pool, finish_work, finish_done, f);
}

static void finish(struct qmsg *m, enum bounce_kind kind, bool remove)
{
    finish_as(m, kind, remove, false, false);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct qmsg *m = arg;
    struct scheduler *s = m->s;
    (void)fd;
    (void)what;
    list_del(&s->waiting, m);
    m->where = W_RUN;
    push(s, m);
    run_next(s);
}

static void schedule_retry(struct qmsg *m)
{
    struct scheduler *s = m->s;
    if (s->stopped) {
        qmsg_free(m);   /* the record stays; the next start reads it */
        return;
    }
    time_t now = time(NULL);
    time_t delay = m->next_due > now ? m->next_due - now : 1;
    if (m->hold_requested || m->remove_requested) {
        operator_action(m);
        return;
    }
    if (m->flush_pending) {
        m->flush_pending = false;
        m->force = true;
        m->where = W_RUN;
        push(s, m);
        run_next(s);
        return;
    }
    if (m->timer == NULL)
        m->timer = evtimer_new(s->ctx.base, retry_cb, m);
    m->where = W_WAITING;
    list_add(&s->waiting, m);
    struct timeval tv = { .tv_sec = delay, .tv_usec = 0 };
    evtimer_add(m->timer, &tv);
    struct log_line l;
    log_begin(&l, MW_LOG_INFO, "deferred");
    log_str(&l, "queue", m->ref.id);
    log_u64(&l, "attempts", m->attempts);
    log_u64(&l, "retry_in", (uint64_t)delay);
    log_end(&l);
}

static void attempt_end(struct qmsg *m)
{
    if (m->open > 0)
        return;
    struct scheduler *s = m->s;
    s->attempts_open--;
    list_del(&s->attempting, m);
    if (m->removed) {
        qmsg_free(m);
        return;
    }
    if (m->hold_requested || m->remove_requested) {
        operator_action(m);
        return;
    }
    bool open = false;
    for (size_t i = 0; i < m->nrcpt; i++)
        if (m->st[i] == QUEUE_RCPT_DEFERRED || m->st[i] == QUEUE_RCPT_PENDING)
            open = true;
    if (!open) {
        finish(m, BOUNCE_FAILED, true);
        return;
    }
    if (m->bounce_owed) {
        /* Failed recipients are reported at once, not after the others. */
        m->bounce_owed = false;
        finish(m, BOUNCE_FAILED, false);
        return;
    }
    if (m->warn_owed) {
        m->warn_owed = false;
        finish(m, BOUNCE_DELAYED, false);
        return;
    }
    schedule_retry(m);
}

/* ---- the operator ------------------------------------------------------------------------ */

struct flag_job {
    struct scheduler *s;
    char id[ID_LEN + 1];
    char flag;
};

static void flag_work(void *arg)
{
    struct flag_job *f = arg;
    queue_mark_flag(f->s->ctx.queue, f->id, f->flag);
}

static void flag_done(void *arg)
{
    struct flag_job *f = arg;
    f->s->jobs--;
    xfree(f);
}

static void write_flag(struct scheduler *s, const char *id, char flag)
{
    struct qmsg *m = by_id(s, id);
    if (m)
        m->has_state = true;
    struct flag_job *f = xcalloc(1, sizeof(*f));
    f->s = s;
    memcpy(f->id, id, ID_LEN + 1);
    f->flag = flag;
    s->jobs++;
    worker_submit(s->ctx.pool, flag_work, flag_done, f);
}

/* A message between attempts (or whose attempt just ended) that the
 * operator asked to hold or remove. */
static void operator_action(struct qmsg *m)
{
    struct scheduler *s = m->s;
    if (m->remove_requested) {
        m->remove_requested = false;
        m->hold_requested = false;
        finish_as(m, BOUNCE_FAILED, true, true, m->remove_silent);
        return;
    }
    m->hold_requested = false;
    m->where = W_HELD;
    list_add(&s->held, m);
    write_flag(s, m->ref.id, 'H');
    log_kv(MW_LOG_INFO, "held", "queue", m->ref.id, NULL);
}

/* Out of the waiting list (its timer stopped) or the held list. */
static void take_out(struct qmsg *m)
{
    struct scheduler *s = m->s;
    if (m->where == W_WAITING) {
        evtimer_del(m->timer);
        list_del(&s->waiting, m);
    } else if (m->where == W_HELD) {
        list_del(&s->held, m);
    }
}

static void run_now(struct qmsg *m)
{
    take_out(m);
    m->force = true;
    m->where = W_RUN;
    push(m->s, m);
}

int sched_flush(struct scheduler *s, const char *domain, unsigned *n)
{
    *n = 0;
    char pat[300];
    if (domain)
        snprintf(pat, sizeof(pat), " %s ", domain);
    struct qmsg *m = s->waiting;
    while (m) {
        struct qmsg *nx = m->wnext;
        if (domain == NULL || (m->domains && strstr(m->domains, pat))) {
            run_now(m);
            (*n)++;
        }
        m = nx;
    }
    /* those in an attempt (just loaded, say): once more right after it */
    for (size_t b = 0; b < ID_BUCKETS; b++)
        for (struct qmsg *x = s->ids[b]; x; x = x->hnext)
            if (x->where != W_WAITING && x->where != W_HELD && !x->force &&
                (domain == NULL || (x->domains && strstr(x->domains, pat)))) {
                x->flush_pending = true;
                (*n)++;
            }
    dests_flush(s->dests, domain);
    run_next(s);
    return 0;
}

int sched_retry(struct scheduler *s, const char *id)
{
    struct qmsg *m = by_id(s, id);
    if (m == NULL)
        return -ENOENT;
    if (m->where == W_HELD)
        return -EPERM;
    if (m->where == W_WAITING) {
        run_now(m);
        run_next(s);
    } else {
        m->flush_pending = true;   /* in an attempt: once more right after it */
    }
    return 0;
}

int sched_hold(struct scheduler *s, const char *id)
{
    struct qmsg *m = by_id(s, id);
    if (m == NULL)
        return -ENOENT;
    if (m->where == W_HELD)
        return 0;
    if (m->where == W_WAITING) {
        take_out(m);
        operator_action(m);
        m->hold_requested = false;
    } else {
        m->hold_requested = true;   /* once this attempt is over */
    }
    return 0;
}

int sched_release(struct scheduler *s, const char *id)
{
    struct qmsg *m = by_id(s, id);
    if (m == NULL)
        return -ENOENT;
    if (m->where != W_HELD) {
        m->hold_requested = false;
        return m->where == W_RUN || m->where == W_ATTEMPT ? 0 : -EINVAL;
    }
    write_flag(s, m->ref.id, 'R');
    log_kv(MW_LOG_INFO, "released", "queue", m->ref.id, NULL);
    run_now(m);
    run_next(s);
    return 0;
}

int sched_remove(struct scheduler *s, const char *id, bool silent)
{
    struct qmsg *m = by_id(s, id);
    if (m == NULL)
        return -ENOENT;
    m->remove_silent = silent;
    if (m->where == W_WAITING || m->where == W_HELD) {
        take_out(m);
        m->remove_requested = true;
        operator_action(m);
    } else {
        m->remove_requested = true;   /* once this attempt is over */
    }
    return 0;
}

size_t sched_list(struct scheduler *s, struct sched_entry **out)
{
    size_t n = 0, cap = 64;
    struct sched_entry *e = xcalloc(cap, sizeof(*e));
    for (size_t b = 0; b < ID_BUCKETS; b++)
        for (struct qmsg *m = s->ids[b]; m; m = m->hnext) {
            if (n == cap) {
                cap *= 2;
                e = xreallocarray(e, cap, sizeof(*e));
            }
            struct sched_entry *x = &e[n++];
            memset(x, 0, sizeof(*x));
            x->ref = m->ref;
            x->held = m->where == W_HELD;
            x->active = m->where == W_RUN || m->where == W_ATTEMPT || m->where == W_FINISHING;
            if (m->where == W_WAITING)
                x->next_attempt = m->next_due;
        }
    *out = e;
    return n;
}

unsigned sched_in_flight(const struct scheduler *s)
{
    /* Not the attempts waiting in a destination's queue: at shutdown
     * they are left to the next start. */
    return s->in_flight + s->jobs + (unsigned)(s->nunsettled + s->nsettling) +
           (s->settling ? 1 : 0) + dests_active(s->dests);
}

void sched_stop(struct scheduler *s)
{
    s->stopped = true;
    dests_stop(s->dests);
    settle_cb(-1, 0, s);   /* settle now what waits, not after the delay */
}

void sched_free(struct scheduler *s)
{
    if (s == NULL)
        return;
    while (s->head) {
        struct qmsg *m = s->head;
        s->head = m->next;
        qmsg_free(m);
    }
    while (s->unsettled) {
        struct settle *st = s->unsettled;
        s->unsettled = st->next;
        qmsg_free(st->m);
        settle_free(st);
    }
    if (s->settle_ev)
        event_free(s->settle_ev);
    while (s->waiting) {
        struct qmsg *m = s->waiting;
        s->waiting = m->wnext;
        qmsg_free(m);
    }
    while (s->held) {
        struct qmsg *m = s->held;
        s->held = m->wnext;
        qmsg_free(m);
    }
    dests_free(s->dests);   /* the items of the attempts below */
    while (s->attempting) {
        struct qmsg *m = s->attempting;
        s->attempting = m->wnext;
        qmsg_free(m);
    }
    xfree(s);
}
