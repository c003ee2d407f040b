/*
 * server.c - start-up, listeners, signals, reload and orderly shutdown.
 */
#include "net/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "core/fsutil.h"
#include "core/log.h"
#include "core/worker.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "dns/unbound.h"
#include "net/access.h"
#include "net/conn.h"
#include "net/dmarc_reports.h"
#include "net/signing.h"
#include "tls/tls.h"

struct listener_ctx {
    struct server *srv;
    char *name;
    enum mw_tls_mode mode;
};

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct listener_ctx *lc = arg;
    evutil_make_socket_closeonexec(fd);
    /* Replies are written whole, one batch per read: Nagle would only hold
     * the last small write (e.g. after TLS 1.3 session tickets) for the
     * client's delayed ACK, about 40 ms per session. */
    int one = 1;
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conn_accept(lc->srv, fd, sa, salen, lc->name, lc->mode);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();
    log_kv(MW_LOG_ERROR, "accept_error", "error", evutil_socket_error_to_string(e), NULL);
}

static int open_listener(struct server *srv, const struct mw_listen *ml)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ml->address, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)ml->port);
        len = sizeof(*in);
    } else if (inet_pton(AF_INET6, ml->address, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)ml->port);
        len = sizeof(*in6);
    } else {
        log_kv(MW_LOG_ERROR, "listen_error", "listener", ml->name, "address", ml->address,
               "error", "not an IP address", NULL);
        return -1;
    }
    struct listener_ctx *lc = xcalloc(1, sizeof(*lc));
    lc->srv = srv;
    lc->name = xstrdup(ml->name);
    lc->mode = ml->tls;
    struct evconnlistener *l = evconnlistener_new_bind(
        srv->base, accept_cb, lc,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 511,
        (struct sockaddr *)&ss, (int)len);
    if (l == NULL) {
        char port[16];
        snprintf(port, sizeof(port), "%u", ml->port);
        log_kv(MW_LOG_ERROR, "listen_error", "listener", ml->name, "address", ml->address,
               "port", port, "error", strerror(errno), NULL);
        xfree(lc->name);
        xfree(lc);
        return -1;
    }
    evconnlistener_set_error_cb(l, accept_error_cb);
    srv->listeners = xreallocarray(srv->listeners, srv->nlisteners + 1, sizeof(*srv->listeners));
    srv->listener_ctx = xreallocarray(srv->listener_ctx, srv->nlisteners + 1,
                                      sizeof(*srv->listener_ctx));
    srv->listener_ctx[srv->nlisteners] = lc;
    srv->listeners[srv->nlisteners++] = l;
    char port[16];
    snprintf(port, sizeof(port), "%u", ml->port);
    log_kv(MW_LOG_INFO, "listening", "listener", ml->name, "address", ml->address, "port", port,
           "tls", conf_tls_mode_name(ml->tls), NULL);
    return 0;
}

static void close_listeners(struct server *srv)
{
    for (size_t i = 0; i < srv->nlisteners; i++) {
        evconnlistener_free(srv->listeners[i]);
        xfree(srv->listener_ctx[i]->name);
        xfree(srv->listener_ctx[i]);
    }
    xfree(srv->listeners);
    xfree(srv->listener_ctx);
    srv->listeners = NULL;
    srv->listener_ctx = NULL;
    srv->nlisteners = 0;
}

void server_maybe_exit(struct server *srv)
{
    if (!srv->stopping)
        return;
    if (srv->nconns == 0 && worker_pool_busy(srv->commit_pool) == 0 &&
        worker_pool_busy(srv->auth_pool) == 0 && worker_pool_busy(srv->verify_pool) == 0 &&
        delivery_in_flight(srv->delivery) == 0)
        event_base_loopbreak(srv->base);
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    if (srv->stopping)
        return;
    srv->stopping = true;
    log_kv(MW_LOG_INFO, "shutdown", "signal", sig == SIGTERM ? "TERM" : "INT", NULL);
    close_listeners(srv);
    delivery_stop(srv->delivery);
    conn_shutdown_all(srv);
    server_maybe_exit(srv);
}

static bool listeners_equal(const struct mw_config *a, const struct mw_config *b)
{
    if (a->nlisten != b->nlisten)
        return false;
    for (size_t i = 0; i < a->nlisten; i++)
        if (strcmp(a->listens[i].name, b->listens[i].name) ||
            strcmp(a->listens[i].address, b->listens[i].address) ||
            a->listens[i].port != b->listens[i].port)
            return false;
    return true;
}

static bool needs_tls(const struct mw_config *c)
{
    for (size_t i = 0; i < c->nlisten; i++)
        if (c->listens[i].tls != MW_TLS_NONE)
            return true;
    return false;
}

/* Certificates for c, or NULL with the reason in err. */
static int load_tls(struct server *srv, const struct mw_config *c, struct tls_server **out,
                    struct buf *err)
{
    *out = NULL;
    if (!needs_tls(c))
        return 0;
    if (tls_server_load(c, srv->data_dir, out, err) < 0)
        return -1;
    if (tls_server_selfsigned(*out))
        log_kv(MW_LOG_WARN, "tls_selfsigned", "dir", srv->data_dir, "note",
               "no certificate configured: serving a self-signed one that clients cannot verify",
               NULL);
    return 0;
}

static void hup_cb(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    struct mw_config *nc = NULL;
    struct tls_server *nt = NULL;
    struct signing *ns = NULL;
    struct buf err;
    buf_init(&err);
    if (conf_load(srv->conf_path, &nc, &err) < 0 || load_tls(srv, nc, &nt, &err) < 0 ||
        signing_load(nc, &ns, &err) < 0) {
        tls_server_unref(nt);
        conf_unref(nc);
        /* Keep the running configuration; say exactly why. */
        if (buf_size(&err) && err.data[err.len - 1] == '\n')
            err.data[--err.len] = '\0';
        log_kv(MW_LOG_ERROR, "reload", "result", "rejected", "file",
               srv->conf_path ? srv->conf_path : "(default)", "error", buf_ptr(&err), NULL);
        buf_free(&err);
        return;
    }
    buf_free(&err);
    if (!listeners_equal(srv->conf, nc))
        log_kv(MW_LOG_WARN, "reload", "note", "listener changes take effect after a restart",
               NULL);
    if (srv->data_dir_arg == NULL && strcmp(nc->data_dir, srv->conf->data_dir) != 0)
        log_kv(MW_LOG_WARN, "reload", "note", "data_dir changes take effect after a restart",
               NULL);
    conf_unref(srv->conf);
    srv->conf = nc;
    access_reload(srv->access, nc);
    signing_unref(srv->signing);
    srv->signing = ns;
    tls_server_unref(srv->tls);
    srv->tls = nt;
    log_kv(MW_LOG_INFO, "reload", "result", "ok", "file",
           srv->conf_path ? srv->conf_path : "(default)", NULL);
}

static void pool_cb(evutil_socket_t fd, short what, void *arg)
{
    worker_pool_complete(arg);
}

/* The resolver every lookup goes through: a zone file (--dns-zone or
 * dns.zone_file) answers alone; otherwise libunbound, validating. */
static int open_resolver(struct server *srv)
{
    const struct mw_config *c = srv->conf;
    const char *zone = srv->dns_zone_arg ? srv->dns_zone_arg : c->dns_zone_file;
    struct buf err;
    buf_init(&err);
    srv->dns = xcalloc(1, sizeof(*srv->dns));
    int r;
    if (zone && zone[0]) {
        r = dns_zone_open(zone, srv->dns, &err);
    } else {
        struct dns_unbound_opts o = {
            .forwarders = (const char *const *)c->dns_forwarders,
            .nforwarders = c->ndns_forwarders,
            .trust_anchor_file = c->dns_trust_anchor_file,
            .trust_anchors = (const char *const *)c->dns_trust_anchors,
            .nanchors = c->ndns_trust_anchors,
        };
        r = dns_unbound_open(srv->base, &o, srv->dns, &err);
        if (r == 0)
            dns_cache_wrap(srv->dns, 50000, 3600, 60);
    }
    if (r < 0) {
        log_kv(MW_LOG_ERROR, "startup", "error", buf_ptr(&err), NULL);
        xfree(srv->dns);
        srv->dns = NULL;
    } else {
        log_kv(MW_LOG_INFO, "resolver", "backend", zone && zone[0] ? "zone" : "unbound", "zone",
               zone && zone[0] ? zone : NULL, NULL);
    }
    buf_free(&err);
    return r;
}

static int server_start(struct server *srv)
{
    srv->data_dir = xstrdup(srv->data_dir_arg ? srv->data_dir_arg : srv->conf->data_dir);
    struct buf md;
    buf_init(&md);
    buf_printf(&md, "%s/mail", srv->data_dir);
    srv->mail_dir = md.data;
    int r;
    if ((r = fs_mkdirs(srv->data_dir, 0700)) < 0 || (r = fs_mkdirs(srv->mail_dir, 0700)) < 0 ||
        (r = queue_open(&srv->queue, srv->data_dir)) < 0) {
        log_kv(MW_LOG_ERROR, "startup", "data_dir", srv->data_dir, "error",
               r == -EBUSY ? "in use by another mailwarden process" : strerror(-r), NULL);
        return -1;
    }

    struct buf err;
    buf_init(&err);
    if (load_tls(srv, srv->conf, &srv->tls, &err) < 0 ||
        signing_load(srv->conf, &srv->signing, &err) < 0) {
        log_kv(MW_LOG_ERROR, "startup", "error", buf_ptr(&err), NULL);
        buf_free(&err);
        return -1;
    }
    buf_free(&err);

    evthread_use_pthreads();
    srv->base = event_base_new();
    if (srv->base == NULL)
        return -1;
    srv->commit_pool = worker_pool_new(srv->conf->workers);
    srv->deliver_pool = worker_pool_new(srv->conf->workers > 1 ? srv->conf->workers / 2 : 1);
    srv->commit_ev = event_new(srv->base, worker_pool_fd(srv->commit_pool), EV_READ | EV_PERSIST,
                               pool_cb, srv->commit_pool);
    srv->deliver_ev = event_new(srv->base, worker_pool_fd(srv->deliver_pool),
                                EV_READ | EV_PERSIST, pool_cb, srv->deliver_pool);
    event_add(srv->commit_ev, NULL);
    event_add(srv->deliver_ev, NULL);
    srv->auth_pool = worker_pool_new(2);
    srv->auth_ev = event_new(srv->base, worker_pool_fd(srv->auth_pool), EV_READ | EV_PERSIST,
                             pool_cb, srv->auth_pool);
    event_add(srv->auth_ev, NULL);
    srv->verify_pool = worker_pool_new(2);
    srv->verify_ev = event_new(srv->base, worker_pool_fd(srv->verify_pool),
                               EV_READ | EV_PERSIST, pool_cb, srv->verify_pool);
    event_add(srv->verify_ev, NULL);
    srv->access = access_new(srv->conf);
    srv->dmarc_rng = srv->conf->dmarc_pct_seed;
    if (srv->dmarc_rng == 0 && getrandom(&srv->dmarc_rng, sizeof(srv->dmarc_rng), 0) < 0)
        srv->dmarc_rng = (uint64_t)time(NULL) ^ (uint64_t)getpid();

    srv->sig_term = evsignal_new(srv->base, SIGTERM, stop_cb, srv);
    srv->sig_int = evsignal_new(srv->base, SIGINT, stop_cb, srv);
    srv->sig_hup = evsignal_new(srv->base, SIGHUP, hup_cb, srv);
    event_add(srv->sig_term, NULL);
    event_add(srv->sig_int, NULL);
    event_add(srv->sig_hup, NULL);
    signal(SIGPIPE, SIG_IGN);

    for (size_t i = 0; i < srv->conf->nlisten; i++)
        if (open_listener(srv, &srv->conf->listens[i]) < 0)
            return -1;

    if (open_resolver(srv) < 0)
        return -1;
    srv->delivery = delivery_new(srv);
    delivery_load_queue(srv->delivery);
    srv->dmarc_reports = dmarc_reports_start(srv);
    log_kv(MW_LOG_INFO, "started", "hostname", srv->conf->hostname, "data_dir", srv->data_dir,
           "config", srv->conf->source, NULL);
    return 0;
}

static void server_cleanup(struct server *srv)
{
    close_listeners(srv);
    /* Before the resolver and the delivery go: it may still use them. */
    dmarc_reports_free(srv->dmarc_reports);
    /* Joining the pools runs any last completions; delivery must exist.
     * A verification's completion may still queue a commit: it goes first. */
    worker_pool_free(srv->verify_pool);
    worker_pool_free(srv->commit_pool);
    worker_pool_free(srv->deliver_pool);
    worker_pool_free(srv->auth_pool);
    access_free(srv->access);
    delivery_free(srv->delivery);
    if (srv->dns) {
        dns_close(srv->dns);
        xfree(srv->dns);
    }
    if (srv->commit_ev)
        event_free(srv->commit_ev);
    if (srv->deliver_ev)
        event_free(srv->deliver_ev);
    if (srv->auth_ev)
        event_free(srv->auth_ev);
    if (srv->verify_ev)
        event_free(srv->verify_ev);
    if (srv->sig_term)
        event_free(srv->sig_term);
    if (srv->sig_int)
        event_free(srv->sig_int);
    if (srv->sig_hup)
        event_free(srv->sig_hup);
    if (srv->base)
        event_base_free(srv->base);
    queue_close(&srv->queue);
    tls_server_unref(srv->tls);
    signing_unref(srv->signing);
    conf_unref(srv->conf);
    xfree(srv->data_dir);
    xfree(srv->mail_dir);
}

int server_run(const char *conf_path, const char *data_dir, const char *dns_zone)
{
    struct server srv;
    memset(&srv, 0, sizeof(srv));
    srv.conf_path = conf_path;
    srv.data_dir_arg = data_dir;
    srv.dns_zone_arg = dns_zone;

    struct buf err;
    buf_init(&err);
    if (conf_load(conf_path, &srv.conf, &err) < 0) {
        fputs(buf_ptr(&err), stderr);
        buf_free(&err);
        return -1;
    }
    buf_free(&err);

    int r = server_start(&srv);
    if (r == 0) {
        event_base_dispatch(srv.base);
        log_kv(MW_LOG_INFO, "stopped", NULL);
    }
    server_cleanup(&srv);
    return r;
}
