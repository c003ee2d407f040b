/*
 * conn.c - client connections: accept with limits, feed the SMTP session,
 * answer its asks for sender and recipients, send replies, time out idle
 * clients, close.
 *
 * A connection is freed only when no job refers to it: if the peer goes
 * away while its message is being committed or its SPF lookups run, the
 * conn is marked dead and freed by the last conn_job_done().
 */
#include "net/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/cidr.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "net/limits.h"
#include "spf/spf.h"
#include "tls/tls.h"

#define OUTPUT_HIGH (256 * 1024)  /* stop reading while this much is unsent */

void conn_spf_reset(struct conn *c)
{
    xfree(c->spf_header);
    xfree(c->spf_domain);
    c->spf_header = NULL;
    c->spf_domain = NULL;
    c->spf_result = SPF_NONE;
    c->spf_helo_result = SPF_NONE;
}

static void conn_free(struct conn *c)
{
    struct server *srv = c->srv;
    struct log_line l;
    log_begin(&l, MW_LOG_INFO, "disconnect");
    log_str(&l, "session", c->id);
    log_str(&l, "client", c->ip);
    log_u64(&l, "messages", c->messages);
    log_u64(&l, "seconds", (uint64_t)(time(NULL) - c->started));
    log_end(&l);

    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    if (c->bev)
        bufferevent_free(c->bev);
    smtp_session_free(c->sess);
    conn_spf_reset(c);
    conf_unref(c->conf);
    tls_server_unref(c->tls);
    xfree(c->tls_info);
    xfree(c);
    server_idle(srv);
}

static void conn_drop(struct conn *c)
{
    if (c->jobs > 0) {
        c->dead = true;
        if (c->bev) {
            bufferevent_free(c->bev);
            c->bev = NULL;
        }
        return;
    }
    conn_free(c);
}

void conn_job_done(struct conn *c)
{
    c->jobs--;
    if (c->dead && c->jobs == 0)
        conn_free(c);
}

static void set_timeouts(struct conn *c)
{
    enum smtp_state st = smtp_session_state(c->sess);
    unsigned secs = (st == SMTP_ST_DATA || st == SMTP_ST_BDAT) ? c->conf->data_timeout
                                                                : c->conf->command_timeout;
    struct timeval tv = { .tv_sec = secs, .tv_usec = 0 };
    bufferevent_set_timeouts(c->bev, &tv, &tv);
}

static bool switch_to_tls(struct conn *c);

/* A reply on a plain connection with nothing else waiting to go out is
 * sent at once rather than on the loop's next turn: that saves a wake-up
 * and two epoll changes per reply, most of the loop's work in a short
 * session. Returns the bytes the socket took; the rest (and any error,
 * which the bufferevent then reports) goes the usual way. */
static size_t send_now(struct conn *c, struct evbuffer *ob, const char *p, size_t n)
{
    if (evbuffer_get_length(ob) > 0 || bufferevent_openssl_get_ssl(c->bev) != NULL)
        return 0;
    ssize_t w;
    do
        w = send((int)bufferevent_getfd(c->bev), p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (w < 0 && errno == EINTR);
    return w > 0 ? (size_t)w : 0;
}

void conn_pump(struct conn *c)
{
    if (c->dead || c->bev == NULL)
        return;
    if (c->tls_switch && !switch_to_tls(c)) {
        conn_drop(c);
        return;
    }
    struct buf *out = smtp_session_output(c->sess);
    struct evbuffer *ob = bufferevent_get_output(c->bev);
    if (buf_size(out) > 0) {
        size_t sent = send_now(c, ob, buf_ptr(out), buf_size(out));
        if (sent < buf_size(out))
            bufferevent_write(c->bev, buf_ptr(out) + sent, buf_size(out) - sent);
        buf_reset(out);
    }
    if (smtp_session_closing(c->sess)) {
        bufferevent_disable(c->bev, EV_READ);
        if (evbuffer_get_length(ob) == 0)
            conn_drop(c);
        return;
    }
    if (smtp_session_waiting(c->sess) || evbuffer_get_length(ob) > OUTPUT_HIGH) {
        bufferevent_disable(c->bev, EV_READ);
    } else {
        bufferevent_enable(c->bev, EV_READ);
        set_timeouts(c);
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[8];
    int n;
    while ((n = evbuffer_peek(in, -1, NULL, v, 8)) > 0) {
        size_t total = 0;
        int k = n < 8 ? n : 8;
        for (int i = 0; i < k; i++) {
            smtp_session_feed(c->sess, v[i].iov_base, v[i].iov_len);
            total += v[i].iov_len;
        }
        evbuffer_drain(in, total);
        if (smtp_session_closing(c->sess))
            break;
    }
    evbuffer_drain(in, evbuffer_get_length(in));
    conn_pump(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    conn_pump(arg);
}

static void tls_failed(struct conn *c, struct bufferevent *bev)
{
    struct buf why;
    buf_init(&why);
    unsigned long e;
    while ((e = bufferevent_get_openssl_error(bev)) != 0) {
        if (ERR_GET_LIB(e) == 0)
            continue;  /* libevent's saved errno, not an OpenSSL reason */
        char text[256];
        ERR_error_string_n(e, text, sizeof(text));
        if (buf_size(&why))
            buf_append_str(&why, "; ");
        buf_append_str(&why, text);
    }
    if (buf_size(&why) == 0)
        buf_append_str(&why, "connection closed during handshake");
    log_kv(MW_LOG_WARN, "tls_error", "session", c->id, "client", c->ip, "listener", c->listener,
           "reason", buf_ptr(&why), NULL);
    buf_free(&why);
}

static void tls_ready(struct conn *c, struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    struct buf info;
    buf_init(&info);
    tls_describe(ssl, &info);
    xfree(c->tls_info);
    c->tls_info = info.data;
    int alg_bits = 0;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    struct log_line l;
    log_begin(&l, MW_LOG_INFO, "tls");
    log_str(&l, "session", c->id);
    log_str(&l, "version", SSL_get_version(ssl));
    log_str(&l, "cipher", SSL_get_cipher_name(ssl));
    log_u64(&l, "bits", (uint64_t)SSL_get_cipher_bits(ssl, &alg_bits));
    log_str(&l, "sni", sni);
    log_str(&l, "resumed", SSL_session_reused(ssl) ? "yes" : "no");
    log_end(&l);
    if (smtp_session_waiting(c->sess))
        smtp_session_tls_started(c->sess);
    conn_pump(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        tls_ready(c, bev);
        return;
    }
    bool handshaking = c->tls_info == NULL && bufferevent_openssl_get_ssl(bev) != NULL;
    if (handshaking && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))) {
        tls_failed(c, bev);
        conn_drop(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if (what & BEV_EVENT_READING) {
            log_kv(MW_LOG_INFO, "timeout", "session", c->id, "client", c->ip, "state",
                   smtp_state_name(smtp_session_state(c->sess)), NULL);
            smtp_session_timeout(c->sess);
            bool closing = smtp_session_closing(c->sess);
            conn_pump(c);   /* closing: may free c once the 421 is out */
            if (!closing && !c->dead && c->bev)
                bufferevent_enable(c->bev, EV_READ);
            return;
        }
        log_kv(MW_LOG_INFO, "timeout", "session", c->id, "client", c->ip, "state", "writing",
               NULL);
        conn_drop(c);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_drop(c);
}

static void start_tls(struct conn *c);

static void ask_one(struct conn *c, struct smtp_session *s, enum smtp_ask what);

static void ask_cb(void *ctx, struct smtp_session *s, enum smtp_ask what)
{
    struct conn *c = ctx;
    bool outer = c->in_ask;
    c->in_ask = true;
    ask_one(c, s, what);
    c->in_ask = outer;
}

static void ask_one(struct conn *c, struct smtp_session *s, enum smtp_ask what)
{
    const struct smtp_txn *t = smtp_session_txn(s);
    switch (what) {
    case SMTP_ASK_MAIL: {
        struct log_line l;
        log_begin(&l, MW_LOG_INFO, "mail");
        log_str(&l, "session", c->id);
        log_str(&l, "from", t->from.text);
        if (t->declared_size)
            log_u64(&l, "size", t->declared_size);
        log_end(&l);
        c->srv->handlers->mail(c);
        break;
    }
    case SMTP_ASK_RCPT:
        c->srv->handlers->rcpt(c);
        break;
    case SMTP_ASK_AUTH:
        c->srv->handlers->auth(c);
        break;
    case SMTP_ASK_MESSAGE:
        c->srv->handlers->message(c);
        break;
    case SMTP_ASK_STARTTLS:
        start_tls(c);
        break;
    }
}

static const struct smtp_hooks conn_hooks = { .ask = ask_cb };

static struct bufferevent *tls_wrap(struct conn *c, int fd)
{
    SSL *ssl = c->tls ? tls_server_ssl(c->tls) : NULL;
    if (ssl == NULL)
        return NULL;
    struct bufferevent *b = bufferevent_openssl_socket_new(
        c->srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (b == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    /* Most clients close without close_notify; that is an EOF, not an attack. */
    bufferevent_openssl_set_allow_dirty_shutdown(b, 1);
    bufferevent_setcb(b, read_cb, write_cb, event_cb, c);
    return b;
}

static void start_tls(struct conn *c)
{
    c->tls_switch = true;
}

/* STARTTLS accepted: write the 220 (and any reply before it) in the clear
 * straight to the socket, drop whatever else the client sent, and put the
 * socket under TLS. The plaintext bufferevent goes away, so no byte read
 * before the handshake can ever reach the session. */
static bool switch_to_tls(struct conn *c)
{
    c->tls_switch = false;
    struct bufferevent *plain = c->bev;
    int fd = (int)bufferevent_getfd(plain);
    /* The bufferevent's own buffer cannot be drained from outside: copy
     * what it still holds, add the session's replies, send it all now. */
    struct evbuffer *out = bufferevent_get_output(plain);
    struct buf pending;
    buf_init(&pending);
    size_t held = evbuffer_get_length(out);
    buf_reserve(&pending, held);
    evbuffer_copyout(out, pending.data, held);
    pending.len = held;
    struct buf *reply = smtp_session_output(c->sess);
    buf_append(&pending, buf_ptr(reply), buf_size(reply));
    buf_reset(reply);
    const char *p = buf_ptr(&pending);
    size_t left = buf_size(&pending);
    while (left > 0) {
        ssize_t w = send(fd, p, left, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            buf_free(&pending);
            log_kv(MW_LOG_WARN, "tls_error", "session", c->id, "client", c->ip, "reason",
                   "cannot send the STARTTLS reply", NULL);
            return false;
        }
        p += w;
        left -= (size_t)w;
    }
    buf_free(&pending);
    bufferevent_setfd(plain, -1);
    bufferevent_free(plain);
    c->bev = tls_wrap(c, fd);
    if (c->bev == NULL) {
        close(fd);
        log_kv(MW_LOG_ERROR, "tls_error", "session", c->id, "client", c->ip, "reason",
               "cannot set up TLS", NULL);
        return false;
    }
    return true;
}

static void refuse(int fd, const char *host, const char *why)
{
    char msg[512];
    int n = snprintf(msg, sizeof(msg), "421 4.7.0 %s Error: %s, try again later\r\n", host, why);
    if (n > 0)
        (void)send(fd, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1,
                   MSG_DONTWAIT | MSG_NOSIGNAL);
    close(fd);
}

static void describe_peer(struct conn *c, const struct sockaddr *sa)
{
    char a[INET6_ADDRSTRLEN] = "unknown";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
        c->port = ntohs(in->sin_port);
        snprintf(c->literal, sizeof(c->literal), "[%s]", a);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
        c->port = ntohs(in6->sin6_port);
        snprintf(c->literal, sizeof(c->literal), "[IPv6:%s]", a);
    } else {
        snprintf(c->literal, sizeof(c->literal), "[unknown]");
    }
    snprintf(c->ip, sizeof(c->ip), "%s", a);
}

/* The listener's auth flag, from the current configuration. */
static bool listener_auth(const struct mw_config *conf, const char *name)
{
    for (size_t i = 0; i < conf->nlisten; i++)
        if (strcmp(conf->listens[i].name, name) == 0)
            return conf->listens[i].auth;
    return false;
}

void conn_accept(struct server *srv, int fd, const struct sockaddr *sa, int salen,
                 const char *listener, enum mw_tls_mode mode)
{
    struct conn probe;
    memset(&probe, 0, sizeof(probe));
    describe_peer(&probe, sa);
    struct mw_config *conf = srv->conf;
    cidr_client_key(probe.ip, conf->ipv6_prefix_length, probe.key, sizeof(probe.key));

    if (srv->stopping) {
        refuse(fd, conf->hostname, "service shutting down");
        return;
    }
    unsigned same_ip = 0;
    for (struct conn *o = srv->conns; o; o = o->next)
        if (strcmp(o->key, probe.key) == 0)
            same_ip++;
    const char *why = NULL, *limit = NULL;
    if (srv->nconns >= conf->max_connections)
        why = "too many connections", limit = "max_connections";
    else if (same_ip >= conf->max_connections_per_ip)
        why = "too many connections from your address", limit = "max_connections_per_ip";
    else if (!access_connect_allowed(srv->access, probe.key))
        why = "too many connections from your address per minute", limit = "max_connection_rate";
    if (why) {
        log_kv(MW_LOG_WARN, "limit", "client", probe.ip, "limit", limit, "listener", listener,
               NULL);
        refuse(fd, conf->hostname, why);
        return;
    }

    struct conn *c = xcalloc(1, sizeof(*c));
    *c = probe;
    c->srv = srv;
    c->conf = conf_ref(conf);
    c->listener = listener;
    c->tls_mode = srv->tls ? mode : MW_TLS_NONE;
    c->tls = srv->tls ? tls_server_ref(srv->tls) : NULL;
    c->started = time(NULL);
    id_new(c->id);
    if (c->tls_mode == MW_TLS_IMPLICIT)
        c->bev = tls_wrap(c, fd);
    else
        c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        log_kv(MW_LOG_ERROR, "accept_error", "client", c->ip, "reason",
               "cannot set up the connection", NULL);
        close(fd);
        conf_unref(c->conf);
        tls_server_unref(c->tls);
        xfree(c);
        return;
    }
    struct smtp_params p = {
        .hostname = conf->hostname,
        .session_id = c->id,
        .max_line = conf->max_line_length,
        .max_message = conf->max_message_size,
        .max_rcpt = conf->max_recipients,
        .max_errors = conf->max_errors,
        .starttls = c->tls_mode == MW_TLS_STARTTLS || c->tls_mode == MW_TLS_STARTTLS_REQUIRED,
        .tls_required = c->tls_mode == MW_TLS_STARTTLS_REQUIRED,
        .tls_active = c->tls_mode == MW_TLS_IMPLICIT,
        .auth = listener_auth(conf, listener),
    };
    c->sess = smtp_session_new(&p, &conn_hooks, c);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;

    struct log_line l;
    log_begin(&l, MW_LOG_INFO, "connect");
    log_str(&l, "session", c->id);
    log_str(&l, "client", c->ip);
    log_u64(&l, "port", c->port);
    log_str(&l, "listener", listener);
    log_str(&l, "tls", conf_tls_mode_name(c->tls_mode));
    log_end(&l);

    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    conn_pump(c);
}

void conn_shutdown_all(struct server *srv)
{
    struct conn *c = srv->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->dead)
            continue;
        smtp_session_shutdown(c->sess);
        conn_pump(c);
    }
}
