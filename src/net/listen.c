/*
 * listen.c - the listeners: bind the configured addresses, accept, and
 * hand each connection to conn.c.
 */
#include "net/listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "core/log.h"
#include "core/worker.h"
#include "core/xmalloc.h"
#include "net/conn.h"

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

void server_unlisten(struct server *srv)
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

int server_listen(struct server *srv)
{
    for (size_t i = 0; i < srv->conf->nlisten; i++)
        if (open_listener(srv, &srv->conf->listens[i]) < 0)
            return -1;
    return 0;
}

void server_stop(struct server *srv)
{
    server_unlisten(srv);
    conn_shutdown_all(srv);
}
