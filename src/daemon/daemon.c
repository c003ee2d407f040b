/*
 * daemon.c - start-up, signals, reload and orderly shutdown: the wiring of
 * the server side (net/), the scheduler (queue/), the transports
 * (deliver/) and the reports (report/).
 */
#include "daemon/daemon.h"
#include "daemon/control.h"

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
#include "deliver/local.h"
#include "deliver/remote.h"
#include "net/handlers.h"
#include "net/limits.h"
#include "net/listen.h"
#include "net/server.h"
#include "net/signing.h"
#include "queue/queue.h"
#include "queue/scheduler.h"
#include "report/dmarc_reports.h"
#include "tls/tls.h"

struct daemon {
    struct server srv;            /* the SMTP server side and what it works with */
    const char *dns_zone_arg;     /* --dns-zone: answer from this file alone */
    const char *conf_path;        /* NULL: embedded default */
    const char *data_dir_arg;     /* --data-dir, overrides the file */
    char *data_dir;               /* fixed at start-up */
    char *mail_dir;
    struct queue queue;
    struct worker_pool *deliver_pool;
    struct event *commit_ev, *deliver_ev, *auth_ev, *verify_ev;
    struct scheduler *sched;
    struct remote *remote;
    struct control *control;
    struct dmarc_reports *dmarc_reports;  /* aggregate reports; NULL when off */
    struct event *sig_term, *sig_int, *sig_hup;
};

static void maybe_exit(void *arg)
{
    struct daemon *dm = arg;
    if (!dm->srv.stopping)
        return;
    if (!server_busy(&dm->srv) && sched_in_flight(dm->sched) == 0)
        event_base_loopbreak(dm->srv.base);
}

static void daemon_queued(void *arg, const char *id, uint32_t slot)
{
    struct daemon *dm = arg;
    sched_enqueue(dm->sched, id, slot);
}

static int deliver_local(void *arg, const struct mw_config *conf, const struct queue_msg *m,
                         size_t i, struct buf *path_out)
{
    struct daemon *dm = arg;
    return local_deliver(dm->mail_dir, conf, m, i, path_out);
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *dm = arg;
    if (dm->srv.stopping)
        return;
    dm->srv.stopping = true;
    log_kv(MW_LOG_INFO, "shutdown", "signal", sig == SIGTERM ? "TERM" : "INT", NULL);
    server_stop(&dm->srv);
    sched_stop(dm->sched);
    remote_stop(dm->remote);
    maybe_exit(dm);
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
static int load_tls(struct daemon *dm, const struct mw_config *c, struct tls_server **out,
                    struct buf *err)
{
    *out = NULL;
    if (!needs_tls(c))
        return 0;
    if (tls_server_load(c, dm->data_dir, out, err) < 0)
        return -1;
    if (tls_server_selfsigned(*out))
        log_kv(MW_LOG_WARN, "tls_selfsigned", "dir", dm->data_dir, "note",
               "no certificate configured: serving a self-signed one that clients cannot verify",
               NULL);
    return 0;
}

static void hup_cb(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *dm = arg;
    struct server *srv = &dm->srv;
    struct mw_config *nc = NULL;
    struct tls_server *nt = NULL;
    struct signing *ns = NULL;
    struct buf err;
    buf_init(&err);
    if (conf_load(dm->conf_path, &nc, &err) < 0 || load_tls(dm, nc, &nt, &err) < 0 ||
        signing_load(nc, &ns, &err) < 0) {
        tls_server_unref(nt);
        conf_unref(nc);
        /* Keep the running configuration; say exactly why. */
        if (buf_size(&err) && err.data[err.len - 1] == '\n')
            err.data[--err.len] = '\0';
        log_kv(MW_LOG_ERROR, "reload", "result", "rejected", "file",
               dm->conf_path ? dm->conf_path : "(default)", "error", buf_ptr(&err), NULL);
        buf_free(&err);
        return;
    }
    buf_free(&err);
    if (!listeners_equal(srv->conf, nc))
        log_kv(MW_LOG_WARN, "reload", "note", "listener changes take effect after a restart",
               NULL);
    if (dm->data_dir_arg == NULL && strcmp(nc->data_dir, srv->conf->data_dir) != 0)
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
           dm->conf_path ? dm->conf_path : "(default)", NULL);
}

static void pool_cb(evutil_socket_t fd, short what, void *arg)
{
    worker_pool_complete(arg);
}

static struct event *pool_event(struct daemon *dm, struct worker_pool *p)
{
    struct event *ev = event_new(dm->srv.base, worker_pool_fd(p), EV_READ | EV_PERSIST, pool_cb, p);
    event_add(ev, NULL);
    return ev;
}

/* The resolver every lookup goes through: a zone file (--dns-zone or
 * dns.zone_file) answers alone; otherwise libunbound, validating. */
static int open_resolver(struct daemon *dm)
{
    struct server *srv = &dm->srv;
    const struct mw_config *c = srv->conf;
    const char *zone = dm->dns_zone_arg ? dm->dns_zone_arg : c->dns_zone_file;
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

static int daemon_start(struct daemon *dm)
{
    struct server *srv = &dm->srv;
    dm->data_dir = xstrdup(dm->data_dir_arg ? dm->data_dir_arg : srv->conf->data_dir);
    srv->data_dir = dm->data_dir;
    struct buf md;
    buf_init(&md);
    buf_printf(&md, "%s/mail", dm->data_dir);
    dm->mail_dir = md.data;
    int r;
    if ((r = fs_mkdirs(dm->data_dir, 0700)) < 0 || (r = fs_mkdirs(dm->mail_dir, 0700)) < 0 ||
        (r = queue_open(&dm->queue, dm->data_dir)) < 0) {
        log_kv(MW_LOG_ERROR, "startup", "data_dir", dm->data_dir, "error",
               r == -EBUSY ? "in use by another mailwarden process" : strerror(-r), NULL);
        return -1;
    }
    srv->queue = &dm->queue;

    struct buf err;
    buf_init(&err);
    if (load_tls(dm, srv->conf, &srv->tls, &err) < 0 ||
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
    dm->deliver_pool = worker_pool_new(srv->conf->workers > 1 ? srv->conf->workers / 2 : 1);
    srv->auth_pool = worker_pool_new(2);
    srv->verify_pool = worker_pool_new(2);
    dm->commit_ev = pool_event(dm, srv->commit_pool);
    dm->deliver_ev = pool_event(dm, dm->deliver_pool);
    dm->auth_ev = pool_event(dm, srv->auth_pool);
    dm->verify_ev = pool_event(dm, srv->verify_pool);
    srv->access = access_new(srv->conf);
    srv->dmarc_rng = srv->conf->dmarc_pct_seed;
    if (srv->dmarc_rng == 0 && getrandom(&srv->dmarc_rng, sizeof(srv->dmarc_rng), 0) < 0)
        srv->dmarc_rng = (uint64_t)time(NULL) ^ (uint64_t)getpid();
    srv->handlers = &net_handlers;
    srv->queued = daemon_queued;
    srv->idle = maybe_exit;
    srv->hook_arg = dm;

    dm->sig_term = evsignal_new(srv->base, SIGTERM, stop_cb, dm);
    dm->sig_int = evsignal_new(srv->base, SIGINT, stop_cb, dm);
    dm->sig_hup = evsignal_new(srv->base, SIGHUP, hup_cb, dm);
    event_add(dm->sig_term, NULL);
    event_add(dm->sig_int, NULL);
    event_add(dm->sig_hup, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (server_listen(srv) < 0)
        return -1;
    if (open_resolver(dm) < 0)
        return -1;
    struct remote_ctx rmc = {
        .base = srv->base,
        .dns = srv->dns,
        .conf = &srv->conf,
        .queue = &dm->queue,
        .pool = dm->deliver_pool,
        .idle = maybe_exit,
        .idle_arg = dm,
    };
    struct buf rerr = { 0 };
    dm->remote = remote_new(&rmc, &rerr);
    if (dm->remote == NULL) {
        log_kv(MW_LOG_ERROR, "startup", "error", buf_ptr(&rerr), NULL);
        buf_free(&rerr);
        return -1;
    }
    struct sched_ctx sc = {
        .base = srv->base,
        .queue = &dm->queue,
        .pool = dm->deliver_pool,
        .conf = &srv->conf,
        .local = deliver_local,
        .local_arg = dm,
        .remote = remote_start,
        .remote_arg = dm->remote,
        .idle = maybe_exit,
        .idle_arg = dm,
    };
    dm->sched = sched_new(&sc);
    sched_load_queue(dm->sched);
    struct control_ctx cc = {
        .base = srv->base,
        .data_dir = dm->data_dir,
        .queue = &dm->queue,
        .sched = dm->sched,
        .pool = dm->deliver_pool,
    };
    dm->control = control_open(&cc);
    struct report_ctx rc = {
        .base = srv->base,
        .dns = srv->dns,
        .queue = &dm->queue,
        .data_dir = dm->data_dir,
        .conf = &srv->conf,
        .stopping = &srv->stopping,
        .queued = daemon_queued,
        .arg = dm,
    };
    dm->dmarc_reports = dmarc_reports_start(&rc);
    log_kv(MW_LOG_INFO, "started", "hostname", srv->conf->hostname, "data_dir", dm->data_dir,
           "config", srv->conf->source, NULL);
    return 0;
}

static void free_event(struct event *ev)
{
    if (ev)
        event_free(ev);
}

static void daemon_cleanup(struct daemon *dm)
{
    struct server *srv = &dm->srv;
    server_unlisten(srv);
    /* Before the resolver and the scheduler go: it may still use them. */
    dmarc_reports_free(dm->dmarc_reports);
    /* Joining the pools runs any last completions; the scheduler must
     * exist. A verification's completion may still queue a commit: it
     * goes first. */
    worker_pool_free(srv->verify_pool);
    worker_pool_free(srv->commit_pool);
    worker_pool_free(dm->deliver_pool);
    worker_pool_free(srv->auth_pool);
    access_free(srv->access);
    control_close(dm->control);
    sched_free(dm->sched);
    remote_free(dm->remote);
    if (srv->dns) {
        dns_close(srv->dns);
        xfree(srv->dns);
    }
    free_event(dm->commit_ev);
    free_event(dm->deliver_ev);
    free_event(dm->auth_ev);
    free_event(dm->verify_ev);
    free_event(dm->sig_term);
    free_event(dm->sig_int);
    free_event(dm->sig_hup);
    if (srv->base)
        event_base_free(srv->base);
    queue_close(&dm->queue);
    tls_server_unref(srv->tls);
    signing_unref(srv->signing);
    conf_unref(srv->conf);
    xfree(dm->data_dir);
    xfree(dm->mail_dir);
}

int daemon_run(const char *conf_path, const char *data_dir, const char *dns_zone)
{
    struct daemon dm;
    memset(&dm, 0, sizeof(dm));
    dm.conf_path = conf_path;
    dm.data_dir_arg = data_dir;
    dm.dns_zone_arg = dns_zone;

    struct buf err;
    buf_init(&err);
    if (conf_load(conf_path, &dm.srv.conf, &err) < 0) {
        fputs(buf_ptr(&err), stderr);
        buf_free(&err);
        return -1;
    }
    buf_free(&err);

    int r = daemon_start(&dm);
    if (r == 0) {
        event_base_dispatch(dm.srv.base);
        log_kv(MW_LOG_INFO, "stopped", NULL);
    }
    daemon_cleanup(&dm);
    return r;
}
