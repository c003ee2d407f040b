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
 *   sched_in_flight(s)          attempts not yet settled
 *   sched_free(s)
 */
#ifndef MW_QUEUE_SCHEDULER_H
#define MW_QUEUE_SCHEDULER_H

#include <stdint.h>

#include "conf/conf.h"
#include "core/buf.h"
#include "queue/queue.h"

struct event_base;
struct worker_pool;
struct scheduler;

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
    void (*idle)(void *arg);           /* an attempt has settled */
    void *idle_arg;
};

struct scheduler *sched_new(const struct sched_ctx *ctx);
void sched_free(struct scheduler *s);
void sched_enqueue(struct scheduler *s, const char *id, uint32_t slot);
void sched_load_queue(struct scheduler *s);
void sched_stop(struct scheduler *s);
unsigned sched_in_flight(const struct scheduler *s);

#endif
