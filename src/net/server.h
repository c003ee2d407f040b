/*
 * server - the SMTP server side of the daemon: listeners and the sessions
 * they accept, with the context those sessions work in.
 *
 * SECURITY: this code reads untrusted bytes from every client. It binds
 * only the addresses in the configuration and never blocks its loop:
 * queue commits, password checks and message inspection run on worker
 * pools and complete back into the loop.
 *
 * The daemon (daemon/) owns a struct server, fills in what it points to
 * and swaps conf, tls and signing on reload; sessions keep references to
 * the ones they started with. conn.c moves bytes and asks handlers
 * (handlers.h: access.c and receive.c) for every decision. Two hooks lead
 * out of net/: queued() hands
 * every committed message to whoever delivers it, idle() is called when a
 * session or job has finished (the daemon exits there once stopping and
 * nothing is in flight).
 *
 * listen.h opens and closes the listeners and stops the sessions.
 *
 *   server_busy(srv)              sessions and pool jobs still in flight
 *   server_idle(srv)              a session or job has finished
 */
#ifndef MW_NET_SERVER_H
#define MW_NET_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "core/worker.h"

struct event_base;
struct evconnlistener;
struct worker_pool;
struct conn;
struct listener_ctx;
struct access;
struct signing;
struct queue;
struct dns_resolver;
struct tls_server;

/* What a session's questions go to (the decisions, above conn.c). */
struct conn_handlers {
    void (*auth)(struct conn *c);      /* SMTP_ASK_AUTH */
    void (*mail)(struct conn *c);      /* SMTP_ASK_MAIL */
    void (*rcpt)(struct conn *c);      /* SMTP_ASK_RCPT */
    void (*message)(struct conn *c);   /* SMTP_ASK_MESSAGE */
};

struct server {
    const struct conn_handlers *handlers;
    struct event_base *base;
    struct mw_config *conf;       /* current; sessions hold their own ref */
    struct tls_server *tls;       /* current certificates; NULL if no TLS listener */
    struct dns_resolver *dns;     /* every lookup goes through this */
    const char *data_dir;
    const struct queue *queue;    /* where commits go */
    struct worker_pool *commit_pool;
    struct worker_pool *auth_pool;    /* password hashing, off the loop */
    struct worker_pool *verify_pool;  /* reading whole messages (DKIM, From), off the loop */
    struct access *access;            /* AUTH back-off and rate-limit counters */
    struct signing *signing;          /* DKIM keys of the current config, or NULL */
    uint64_t dmarc_rng;               /* pct= draws (dmarc_pct_seed, or random) */
    bool stopping;
    /* hooks out of net/ */
    void (*queued)(void *arg, const char *id, uint32_t slot);
    void (*idle)(void *arg);
    void *hook_arg;
    /* private to net/ */
    struct evconnlistener **listeners;
    struct listener_ctx **listener_ctx;
    size_t nlisteners;
    struct conn *conns;
    unsigned nconns;
};

static inline bool server_busy(const struct server *srv)
{
    return srv->nconns > 0 || worker_pool_busy(srv->commit_pool) > 0 ||
           worker_pool_busy(srv->auth_pool) > 0 || worker_pool_busy(srv->verify_pool) > 0;
}

/* A session or job has finished: let the daemon see if it may exit. */
static inline void server_idle(struct server *srv)
{
    if (srv->idle != NULL)
        srv->idle(srv->hook_arg);
}

#endif
