/*
 * scheduler - what happens to each queued message after its 250: every
 * recipient is delivered by a transport, retried with back-off, or
 * reported. The scheduler knows no sockets and no mailbox format: the
 * transports (deliver/) are handed in by the daemon.
 *
 *   sched_new(ctx)              ctx is copied; its pointers must outlive it
 *   sched_load_queue(s)         everything queue_open() found, at start-up
 *   sched_enqueue(s, id, slot)  a message just committed
 *   sched_stop(s)               finish what runs, start nothing new
 *   sched_in_flight(s)          work that shutdown waits for: pool jobs,
 *                               unsettled deliveries, open sessions
 *   sched_free(s)
 */
#ifndef MW_QUEUE_SCHEDULER_H
#define MW_QUEUE_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "conf/conf.h"
#include "core/buf.h"
#include "queue/queue.h"

/* The destination every remote recipient goes to when relayhost is set
 * (no domain can be spelt so). */
#define SCHED_RELAYHOST "[relayhost]"

struct event_base;
struct worker_pool;
struct scheduler;
struct dest_session;
struct dests;

/* Local delivery of recipient i of m, on a worker thread: 0 with the
 * new file's path in path_out (its directory not yet fsync'd: the
 * scheduler settles directories in batches), or -errno. */
typedef int (*sched_local_fn)(void *arg, const struct mw_config *conf,
                              const struct queue_msg *m, size_t i, struct buf *path_out);

struct sched_ctx {
    struct event_base *base;
    const struct queue *queue;
    struct worker_pool *pool;          /* blocking work: reads, deliveries, fsyncs */
    struct mw_config *const *conf;     /* the daemon's current configuration */
    sched_local_fn local;
    void *local_arg;
    /* open a session to sess->domain (dest.h) */
    void (*remote)(void *arg, struct dest_session *sess);
    void *remote_arg;
    void (*idle)(void *arg);           /* an attempt has settled */
    void *idle_arg;
};

struct scheduler *sched_new(const struct sched_ctx *ctx);
void sched_free(struct scheduler *s);
void sched_enqueue(struct scheduler *s, const char *id, uint32_t slot);
void sched_load_queue(struct scheduler *s);
void sched_stop(struct scheduler *s);
unsigned sched_in_flight(const struct scheduler *s);
/* What the operator sees and does (daemon/control.c). */
struct sched_entry {
    struct queue_ref ref;
    bool held;              /* held by the operator */
    bool active;            /* an attempt is running or about to */
    time_t next_attempt;    /* waiting: when it is tried again */
};
/* Every message the scheduler knows (the caller frees *out). */
size_t sched_list(struct scheduler *s, struct sched_entry **out);
/* Try now every waiting message (with a recipient at domain, if not
 * NULL) and every held-back destination (that one). */
int sched_flush(struct scheduler *s, const char *domain, unsigned *n);
/* 0, -ENOENT (no such message) or -EPERM (held: release it first). */
int sched_retry(struct scheduler *s, const char *id);
int sched_hold(struct scheduler *s, const char *id);
int sched_release(struct scheduler *s, const char *id);
/* Remove the message; the sender gets a bounce unless silent. */
int sched_remove(struct scheduler *s, const char *id, bool silent);

/* The destination queues, for the remote transport. */
struct dests *sched_dests(struct scheduler *s);

#endif
