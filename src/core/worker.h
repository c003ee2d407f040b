/*
 * worker - a small thread pool for work that must not block the event loop
 * (fsync, delivery writes, later password hashing).
 *
 * worker_submit() queues work(arg) for a pool thread; when it has run, the
 * pool makes its notification fd readable and worker_pool_complete(),
 * called on the loop thread, runs done(arg) there. So work() may block but
 * must not touch loop state; done() runs single-threaded with the loop.
 * worker_pool_free() finishes every queued job (their done() included)
 * before joining the threads.
 */
#ifndef MW_CORE_WORKER_H
#define MW_CORE_WORKER_H

struct worker_pool;

typedef void (*worker_fn)(void *arg);

struct worker_pool *worker_pool_new(unsigned nthreads);
void worker_pool_free(struct worker_pool *p);
int worker_pool_fd(const struct worker_pool *p);
void worker_submit(struct worker_pool *p, worker_fn work, worker_fn done, void *arg);
/* Run done() of every finished job; returns how many ran. */
unsigned worker_pool_complete(struct worker_pool *p);
/* Jobs submitted whose done() has not run yet. */
unsigned worker_pool_busy(const struct worker_pool *p);

#endif
