/*
 * server - the daemon: one libevent loop that wires listeners, SMTP
 * sessions, the queue and local delivery together.
 *
 * SECURITY: this process reads untrusted bytes from every client. It binds
 * only the addresses in the configuration, holds no secrets yet, and never
 * blocks its loop: queue commits and deliveries run on worker threads
 * (core/worker) and complete back into the loop.
 *
 * Signals: SIGTERM/SIGINT stop accepting, let in-flight commits finish
 * (their 250 is still sent), send 421 to every other session and exit 0
 * once nothing is in flight. SIGHUP reloads the configuration; a bad file
 * keeps the running one and logs the file:line error.
 *
 *   server_run(conf_path, data_dir)   0 on clean exit, -1 on start-up failure
 */
#ifndef MW_NET_SERVER_H
#define MW_NET_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "queue/queue.h"

struct event_base;
struct sockaddr;
struct event;
struct evconnlistener;
struct worker_pool;
struct conn;
struct delivery;
struct listener_ctx;
struct access;
struct signing;
struct dmarc_reports;

struct server {
    struct event_base *base;
    struct mw_config *conf;       /* current; sessions hold their own ref */
    struct tls_server *tls;       /* current certificates; NULL if no TLS listener */
    struct dns_resolver *dns;     /* every lookup goes through this */
    const char *dns_zone_arg;     /* --dns-zone: answer from this file alone */
    const char *conf_path;        /* NULL: embedded default */
    const char *data_dir_arg;     /* --data-dir, overrides the file */
    char *data_dir;               /* fixed at start-up */
    char *mail_dir;
    struct queue queue;
    struct worker_pool *commit_pool;
    struct worker_pool *deliver_pool;
    struct worker_pool *auth_pool;    /* password hashing, off the loop */
    struct event *auth_ev;
    struct worker_pool *verify_pool;  /* reading whole messages (DKIM, From), off the loop */
    struct event *verify_ev;
    struct access *access;            /* AUTH back-off and rate-limit counters */
    struct signing *signing;          /* DKIM keys of the current config, or NULL */
    uint64_t dmarc_rng;               /* pct= draws (dmarc_pct_seed, or random) */
    struct event *commit_ev, *deliver_ev;
    struct evconnlistener **listeners;
    struct listener_ctx **listener_ctx;
    size_t nlisteners;
    struct conn *conns;
    unsigned nconns;
    struct delivery *delivery;
    struct dmarc_reports *dmarc_reports;  /* aggregate reports; NULL when off */
    struct event *sig_term, *sig_int, *sig_hup;
    bool stopping;
};

int server_run(const char *conf_path, const char *data_dir, const char *dns_zone);
/* Exit the loop if stopping and nothing is in flight. */
void server_maybe_exit(struct server *srv);

/* conn.c */
void conn_accept(struct server *srv, int fd, const struct sockaddr *sa, int salen,
                 const char *listener, enum mw_tls_mode mode);
void conn_shutdown_all(struct server *srv);

/* receive.c: queue the message of a session (asynchronous). */
void receive_message(struct conn *c);

/* delivery.c */
struct delivery *delivery_new(struct server *srv);
void delivery_free(struct delivery *d);
void delivery_enqueue(struct delivery *d, const char *id, uint32_t slot);
void delivery_load_queue(struct delivery *d);
void delivery_stop(struct delivery *d);
unsigned delivery_in_flight(const struct delivery *d);

#endif
