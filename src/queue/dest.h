/*
 * dest - outbound work by destination: the recipients of each message
 * for one remote domain wait in that domain's queue, and sessions to the
 * domain take them one message at a time.
 *
 * Limits: at most max_connections_per_destination sessions to one
 * destination and max_outbound_connections in all; a session takes up to
 * max_messages_per_connection messages before it ends. A destination
 * that cannot be reached (no session got as far as a usable greeting)
 * is held back: its queue waits, without any work per message, for a
 * back-off that starts at retry_min and doubles up to retry_max; then a
 * single session tries again, and only once it works do more follow.
 * While a destination is held back, a message that has been queued
 * longer than max_queue_lifetime is failed with the destination's last
 * error (a scan at each retry of the destination, not a timer per
 * message).
 *
 * The transport (deliver/remote.c) is handed in as start(): it opens a
 * session for a destination, calls dests_next() whenever it can send
 * a message, and dests_session_end() once it is over. Results go to the
 * scheduler through the item's own done() callback.
 *
 *   dests_new(ctx) / dests_free(ds)
 *   dests_submit(ds, item)     queue an item (its domain in item->dest)
 *   dests_next(sess)           the next item for this session, or NULL
 *   dests_session_end(sess, reached, why)
 *                              reached: the peer was usable (a greeting
 *                              and EHLO), else why is the destination's
 *                              error and it is held back
 *   dests_stop(ds)             start no more sessions
 *   dests_active(ds)           sessions open
 */
#ifndef MW_QUEUE_DEST_H
#define MW_QUEUE_DEST_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "conf/conf.h"
#include "queue/queue.h"

struct event_base;
struct dests;
struct dest;

/* The outcome of one recipient of an item. */
struct dest_result {
    enum queue_rcpt_state state;  /* DELIVERED, FAILED or DEFERRED */
    unsigned code;
    char enhanced[12];
    char mta[300];                /* "host[ip]:port", or "" */
    char text[300];
    bool dsn_passed;              /* the peer took NOTIFY over (it offers DSN) */
};

/* The recipients of one queued message for one destination. */
struct dest_item {
    struct dest_item *next;       /* in its destination's queue */
    struct queue_ref ref;
    char *dest;                   /* the domain, lower case A-labels */
    char *from;
    time_t arrival;
    size_t n;
    size_t *index;                /* recipient indices in the message */
    unsigned *prior;              /* attempts each has had before this one */
    unsigned *notify;             /* RFC 3461 NOTIFY bits, per recipient (0: none) */
    char **orcpt;                 /* ORCPT per recipient, or NULL entries */
    char ret;                     /* RET: 'F', 'H' or 0 */
    char *envid;
    char **rcpts;
    struct dest_result *res;      /* n outcomes, filled by the transport */
    void (*done)(void *arg, struct dest_item *it);
    void *done_arg;
};

struct dest_session {
    struct dests *ds;
    struct dest *d;
    const char *domain;
    unsigned messages;            /* items taken */
    void *transport;              /* the transport's own state */
};

struct dests_ctx {
    struct event_base *base;
    struct mw_config *const *conf;
    /* open a session for sess->domain; it must end with dests_session_end */
    void (*start)(void *arg, struct dest_session *sess);
    void *arg;
};

struct dests *dests_new(const struct dests_ctx *ctx);
void dests_free(struct dests *ds);
void dests_submit(struct dests *ds, struct dest_item *it);
struct dest_item *dests_next(struct dest_session *sess);
void dests_session_end(struct dest_session *sess, bool reached, const char *why);
void dests_stop(struct dests *ds);
/* End the hold of one destination (or all with domain NULL) and try it. */
void dests_flush(struct dests *ds, const char *domain);
unsigned dests_active(const struct dests *ds);

/* Report every recipient of it with the same outcome, and hand it back. */
void dest_item_finish(struct dest_item *it, enum queue_rcpt_state st, unsigned code,
                      const char *enhanced, const char *mta, const char *text);
void dest_item_free(struct dest_item *it);

#endif
