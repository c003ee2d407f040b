/*
 * control - the daemon's control socket, <data_dir>/control.sock, for
 * `mailwarden queue`: one request per connection, one JSON answer.
 *
 * The socket is mode 0600 in the daemon's data directory (itself 0700),
 * and a client whose user (SO_PEERCRED) is neither the daemon's nor root
 * is refused before it is read. A request is one line of at most 1024
 * bytes; anything longer, or a command nobody knows, gets an error
 * answer, never a crash:
 *
 *   list                  every queued message, with each recipient's state
 *   show ID               one message
 *   flush [DOMAIN]        try every waiting message (for DOMAIN) now
 *   retry ID              try this one now
 *   hold ID / release ID  keep it from delivery / let it go again
 *   remove ID [silent]    remove it; the sender gets a bounce unless silent
 *
 * Answers: {"ok": true, ...} or {"ok": false, "error": "..."}. list and
 * show read the queue records on the delivery pool, not on the loop.
 *
 *   control_open(ctx) / control_close(c)
 */
#ifndef MW_DAEMON_CONTROL_H
#define MW_DAEMON_CONTROL_H

struct event_base;
struct worker_pool;
struct queue;
struct scheduler;
struct control;

struct control_ctx {
    struct event_base *base;
    const char *data_dir;
    const struct queue *queue;
    struct scheduler *sched;
    struct worker_pool *pool;
};

struct control *control_open(const struct control_ctx *ctx);
void control_close(struct control *c);

#endif
