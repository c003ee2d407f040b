/*
 * dest.c - outbound work by destination; see dest.h.
 */
#include "queue/dest.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "core/log.h"
#include "core/xmalloc.h"

#define BUCKETS 4096

struct dest {
    struct dest *hnext;           /* hash chain */
    struct dests *ds;
    char *name;
    struct dest_item *head, *tail;
    size_t nready;
    unsigned active;
    unsigned fails;               /* unreachable in a row: held back while > 0 */
    time_t held_until;
    char why[300];                /* the last reason it was unreachable */
    struct event *timer;
    bool waiting;                 /* in ds->wait: wants a session the total limit denies */
    struct dest *wnext;
};

struct dests {
    struct dests_ctx ctx;
    struct dest *table[BUCKETS];
    unsigned active;
    struct dest *wait_head, *wait_tail;
    bool stopped;
};

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h % BUCKETS;
}

struct dests *dests_new(const struct dests_ctx *ctx)
{
    struct dests *ds = xcalloc(1, sizeof(*ds));
    ds->ctx = *ctx;
    return ds;
}

void dest_item_free(struct dest_item *it)
{
    if (it == NULL)
        return;
    for (size_t i = 0; i < it->n; i++) {
        xfree(it->rcpts[i]);
        if (it->orcpt)
            xfree(it->orcpt[i]);
    }
    xfree(it->rcpts);
    xfree(it->orcpt);
    xfree(it->notify);
    xfree(it->envid);
    xfree(it->index);
    xfree(it->prior);
    xfree(it->res);
    xfree(it->dest);
    xfree(it->from);
    xfree(it);
}

void dest_item_finish(struct dest_item *it, enum queue_rcpt_state st, unsigned code,
                      const char *enhanced, const char *mta, const char *text)
{
    for (size_t i = 0; i < it->n; i++) {
        struct dest_result *r = &it->res[i];
        r->state = st;
        r->code = code;
        snprintf(r->enhanced, sizeof(r->enhanced), "%s", enhanced ? enhanced : "");
        snprintf(r->mta, sizeof(r->mta), "%s", mta ? mta : "");
        snprintf(r->text, sizeof(r->text), "%s", text ? text : "");
    }
    it->done(it->done_arg, it);
}

static struct dest *lookup(struct dests *ds, const char *name, bool create)
{
    uint32_t h = hash(name);
    for (struct dest *d = ds->table[h]; d; d = d->hnext)
        if (strcmp(d->name, name) == 0)
            return d;
    if (!create)
        return NULL;
    struct dest *d = xcalloc(1, sizeof(*d));
    d->ds = ds;
    d->name = xstrdup(name);
    d->hnext = ds->table[h];
    ds->table[h] = d;
    return d;
}

static void dest_drop(struct dest *d)
{
    struct dests *ds = d->ds;
    struct dest **pp = &ds->table[hash(d->name)];
    while (*pp != d)
        pp = &(*pp)->hnext;
    *pp = d->hnext;
    if (d->timer)
        event_free(d->timer);
    xfree(d->name);
    xfree(d);
}

/* Nothing queued, nothing open, nothing held: forget it. */
static void maybe_drop(struct dest *d)
{
    if (d->nready == 0 && d->active == 0 && d->fails == 0 && !d->waiting)
        dest_drop(d);
}

static void kick(struct dest *d);

static void start_session(struct dest *d)
{
    struct dests *ds = d->ds;
    struct dest_session *sess = xcalloc(1, sizeof(*sess));
    sess->ds = ds;
    sess->d = d;
    sess->domain = d->name;
    d->active++;
    ds->active++;
    ds->ctx.start(ds->ctx.arg, sess);
}

static void wait_push(struct dest *d)
{
    struct dests *ds = d->ds;
    if (d->waiting)
        return;
    d->waiting = true;
    d->wnext = NULL;
    if (ds->wait_tail)
        ds->wait_tail->wnext = d;
    else
        ds->wait_head = d;
    ds->wait_tail = d;
}

/* Open as many sessions as the queue wants and the limits allow. */
static void kick(struct dest *d)
{
    struct dests *ds = d->ds;
    const struct mw_config *c = *ds->ctx.conf;
    if (ds->stopped)
        return;
    /* Held back: nothing until the back-off ends, then one probe. */
    if (d->fails > 0 && (d->held_until > time(NULL) || d->active > 0))
        return;
    unsigned per_dest = d->fails > 0 ? 1 : c->max_connections_per_destination;
    /* A session takes messages one after the other: one per queued item
     * at most, so a single message opens a single session. */
    while (d->nready > d->active && d->active < per_dest) {
        if (ds->active >= c->max_outbound_connections) {
            wait_push(d);
            return;
        }
        start_session(d);
        if (d->fails > 0)
            return;
    }
}

static void fail_expired(struct dest *d)
{
    const struct mw_config *c = *d->ds->ctx.conf;
    time_t now = time(NULL);
    struct dest_item **pp = &d->head, *last = NULL;
    while (*pp) {
        struct dest_item *it = *pp;
        if (now - it->arrival < (time_t)c->max_queue_lifetime) {
            last = it;
            pp = &it->next;
            continue;
        }
        *pp = it->next;
        d->nready--;
        char text[400];
        snprintf(text, sizeof(text), "delivery time expired; the last error was: %s", d->why);
        dest_item_finish(it, QUEUE_RCPT_FAILED, 0, "4.4.7", "", text);
    }
    d->tail = last;
}

static void held_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dest *d = arg;
    (void)fd;
    (void)what;
    fail_expired(d);
    kick(d);
    maybe_drop(d);
}

void dests_submit(struct dests *ds, struct dest_item *it)
{
    struct dest *d = lookup(ds, it->dest, true);
    it->next = NULL;
    if (d->tail)
        d->tail->next = it;
    else
        d->head = it;
    d->tail = it;
    d->nready++;
    kick(d);
}

struct dest_item *dests_next(struct dest_session *sess)
{
    struct dest *d = sess->d;
    const struct mw_config *c = *d->ds->ctx.conf;
    if (d->ds->stopped || d->head == NULL || sess->messages >= c->max_messages_per_connection)
        return NULL;
    struct dest_item *it = d->head;
    d->head = it->next;
    if (d->head == NULL)
        d->tail = NULL;
    d->nready--;
    sess->messages++;
    it->next = NULL;
    return it;
}

static unsigned backoff(const struct mw_config *c, unsigned fails)
{
    unsigned delay = c->retry_min;
    for (unsigned i = 1; i < fails && delay < c->retry_max; i++)
        delay *= 2;
    return delay > c->retry_max ? c->retry_max : delay;
}

void dests_session_end(struct dest_session *sess, bool reached, const char *why)
{
    struct dest *d = sess->d;
    struct dests *ds = d->ds;
    const struct mw_config *c = *ds->ctx.conf;
    d->active--;
    ds->active--;
    xfree(sess);
    if (reached) {
        d->fails = 0;
    } else if (!ds->stopped) {
        d->fails++;
        snprintf(d->why, sizeof(d->why), "%s", why ? why : "unreachable");
        unsigned delay = backoff(c, d->fails);
        d->held_until = time(NULL) + delay;
        if (d->timer == NULL)
            d->timer = evtimer_new(ds->ctx.base, held_cb, d);
        struct timeval tv = { .tv_sec = delay, .tv_usec = 0 };
        evtimer_add(d->timer, &tv);
        struct log_line l;
        log_begin(&l, MW_LOG_WARN, "destination_held");
        log_str(&l, "destination", d->name);
        log_u64(&l, "queued", d->nready);
        log_u64(&l, "failures", d->fails);
        log_u64(&l, "retry_in", delay);
        log_str(&l, "reason", d->why);
        log_end(&l);
    }
    /* The total limit freed a place: the destinations that waited first. */
    while (ds->wait_head && ds->active < c->max_outbound_connections) {
        struct dest *w = ds->wait_head;
        ds->wait_head = w->wnext;
        if (ds->wait_head == NULL)
            ds->wait_tail = NULL;
        w->waiting = false;
        kick(w);
        if (w != d)
            maybe_drop(w);
    }
    kick(d);
    maybe_drop(d);
}

static void flush_one(struct dest *d)
{
    if (d->fails > 0) {
        d->held_until = 0;
        if (d->timer)
            evtimer_del(d->timer);
    }
    kick(d);
}

void dests_flush(struct dests *ds, const char *domain)
{
    if (domain) {
        struct dest *d = lookup(ds, domain, false);
        if (d)
            flush_one(d);
        return;
    }
    for (size_t b = 0; b < BUCKETS; b++)
        for (struct dest *d = ds->table[b]; d; d = d->hnext)
            flush_one(d);
}

void dests_stop(struct dests *ds)
{
    ds->stopped = true;
}

unsigned dests_active(const struct dests *ds)
{
    return ds->active;
}

void dests_free(struct dests *ds)
{
    if (ds == NULL)
        return;
    for (size_t b = 0; b < BUCKETS; b++) {
        while (ds->table[b]) {
            struct dest *d = ds->table[b];
            while (d->head) {
                struct dest_item *it = d->head;
                d->head = it->next;
                dest_item_free(it);
            }
            dest_drop(d);
        }
    }
    xfree(ds);
}
