/*
 * remote.c - SMTP sessions to other MTAs; see remote.h.
 *
 * A session moves through: MX lookup -> address lookups of one host ->
 * connect to one address -> the SMTP dialogue (smtp/outbound.c) with
 * messages loaded from the queue on the pool. DNS answers may come before
 * dns_resolve() returns (the zone backend), so each answer only records
 * what it says and activates the session's step event; the next step
 * runs from the loop, never inside a callback.
 */
#include "deliver/remote.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/fsutil.h"
#include "core/log.h"
#include "core/str.h"
#include "core/worker.h"
#include "core/xmalloc.h"
#include "dns/dns.h"
#include "queue/scheduler.h"
#include "smtp/outbound.h"

#define MAX_MX 10        /* hosts tried per session */
#define MAX_ADDRS 16     /* addresses per host */

struct mx {
    char *host;
    unsigned pref;
    unsigned rnd;
};

enum step { S_MX, S_ADDRS, S_CONNECT, S_SMTP, S_NORELAY };

struct rsess {
    struct rsess *prev, *next;
    struct remote *r;
    struct dest_session *ds;
    char *domain;
    enum step step;
    struct event *step_ev;
    unsigned dns_pending;
    /* the MX answer */
    enum dns_status mx_status;
    struct mx *mx;
    size_t nmx, imx;
    bool implicit_mx;
    bool null_mx;                 /* RFC 7505 */
    bool loop_skipped;            /* some host was us */
    bool resolved;                /* the addresses of mx[imx] are in */
    bool relayhost;               /* to the smarthost: verified TLS required, AUTH */
    unsigned port;
    /* addresses of the current host */
    struct sockaddr_storage addr[MAX_ADDRS];
    socklen_t addrlen[MAX_ADDRS];
    size_t naddr, iaddr;
    /* the connection */
    struct bufferevent *bev;
    struct smtpo *o;
    bool no_tls;                  /* retrying this address without STARTTLS */
    bool reached;                 /* some peer got as far as READY */
    char relay[320];              /* "host[ip]:port" */
    char tls[160];                /* "none" or "TLSv1.3/cipher/verified" */
    char why[320];                /* the last reason a host was not usable */
    /* the message being sent */
    struct dest_item *item;
    struct smtpo_msg om;          /* what the machine sends: points into item and msg */
    struct queue_msg msg;
    bool have_msg;
    bool loading;
    bool stopping;
    struct timespec started;
};

struct remote {
    struct remote_ctx ctx;
    SSL_CTX *ssl;
    char *relay_pass;             /* relayhost_password_file, read at start */
    struct rsess *sessions;
};

struct remote *remote_new(const struct remote_ctx *ctx, struct buf *err)
{
    const struct mw_config *c = *ctx->conf;
    SSL_CTX *ssl = SSL_CTX_new(TLS_client_method());
    if (ssl == NULL) {
        buf_printf(err, "cannot create the outbound TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
    SSL_CTX_set_options(ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* Opportunistic: the check is done and logged, a failure does not
     * stop delivery (remote.h). */
    SSL_CTX_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    if (c->outbound_ca_file && c->outbound_ca_file[0]) {
        if (SSL_CTX_load_verify_locations(ssl, c->outbound_ca_file, NULL) != 1) {
            buf_printf(err, "%s: outbound_ca_file %s: cannot load the certificates in it",
                       c->source, c->outbound_ca_file);
            SSL_CTX_free(ssl);
            return NULL;
        }
    } else {
        SSL_CTX_set_default_verify_paths(ssl);
    }
    char *pass = NULL;
    if (c->relayhost_password_file && c->relayhost_password_file[0] &&
        fs_read_secret(c->relayhost_password_file, 255, &pass, err) < 0) {
        SSL_CTX_free(ssl);
        return NULL;
    }
    struct remote *r = xcalloc(1, sizeof(*r));
    r->ctx = *ctx;
    r->ssl = ssl;
    r->relay_pass = pass;
    return r;
}

void remote_free(struct remote *r)
{
    if (r == NULL)
        return;
    if (r->ssl)
        SSL_CTX_free(r->ssl);
    if (r->relay_pass) {
        explicit_bzero(r->relay_pass, strlen(r->relay_pass));
        xfree(r->relay_pass);
    }
    xfree(r);
}

static void step_cb(evutil_socket_t fd, short what, void *arg);

static void next_step(struct rsess *s, enum step st)
{
    s->step = st;
    event_active(s->step_ev, EV_TIMEOUT, 0);
}

/* ---- ending ------------------------------------------------------------------------ */

static void close_conn(struct rsess *s)
{
    if (s->bev) {
        bufferevent_free(s->bev);
        s->bev = NULL;
    }
    smtpo_free(s->o);
    s->o = NULL;
}

static void session_end(struct rsess *s)
{
    struct remote *r = s->r;
    close_conn(s);
    if (s->have_msg)
        queue_msg_free(&s->msg);
    for (size_t i = 0; i < s->nmx; i++)
        xfree(s->mx[i].host);
    xfree(s->mx);
    if (s->prev)
        s->prev->next = s->next;
    else
        r->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    event_free(s->step_ev);
    struct dest_session *ds = s->ds;
    bool reached = s->reached;
    char why[sizeof(s->why)];
    memcpy(why, s->why, sizeof(why));
    xfree(s->domain);
    xfree(s);
    dests_session_end(ds, reached, why);
    if (r->ctx.idle)
        r->ctx.idle(r->ctx.idle_arg);
}

static void log_outcome(struct rsess *s, struct dest_item *it)
{
    time_t now = time(NULL);
    for (size_t k = 0; k < it->n; k++) {
        const struct dest_result *res = &it->res[k];
        struct log_line l;
        const char *status = res->state == QUEUE_RCPT_DELIVERED ? "sent"
                             : res->state == QUEUE_RCPT_FAILED  ? "bounced"
                                                                : "deferred";
        log_begin(&l, res->state == QUEUE_RCPT_DELIVERED ? MW_LOG_INFO : MW_LOG_WARN, "delivery");
        log_str(&l, "queue", it->ref.id);
        log_str(&l, "rcpt", it->rcpts[k]);
        log_str(&l, "relay", res->mta[0] ? res->mta : "none");
        log_str(&l, "tls", s->tls[0] ? s->tls : "none");
        log_str(&l, "status", status);
        if (res->code)
            log_u64(&l, "code", res->code);
        if (res->enhanced[0])
            log_str(&l, "dsn", res->enhanced);
        log_str(&l, "reply", res->text);
        char delay[32];
        snprintf(delay, sizeof(delay), "%lld", (long long)(now - it->arrival));
        log_str(&l, "delay", delay);
        log_end(&l);
    }
}

/* Hand an item back with the outcome already in it->res. */
static void item_done(struct rsess *s, struct dest_item *it)
{
    log_outcome(s, it);
    it->done(it->done_arg, it);
}

/* Every recipient of it gets the same outcome. */
static void item_finish(struct rsess *s, struct dest_item *it, enum queue_rcpt_state st,
                        unsigned code, const char *enh, const char *text)
{
    for (size_t k = 0; k < it->n; k++) {
        struct dest_result *res = &it->res[k];
        res->state = st;
        res->code = code;
        str_lcpy(res->enhanced, enh, sizeof(res->enhanced));
        str_lcpy(res->mta, s->relay, sizeof(res->mta));
        str_lcpy(res->text, text, sizeof(res->text));
    }
    item_done(s, it);
}

/* The destination itself has an answer for everything queued for it
 * (no such domain, null MX, a loop): give it to every item, then end. */
static void drain(struct rsess *s, enum queue_rcpt_state st, unsigned code, const char *enh,
                  const char *text)
{
    s->reached = true;   /* not unreachable: answered */
    struct dest_item *it;
    while ((it = dests_next(s->ds)) != NULL)
        item_finish(s, it, st, code, enh, text);
    session_end(s);
}

/* ---- DNS ----------------------------------------------------------------------------- */

static void mx_answer(void *arg, const struct dns_answer *a)
{
    struct rsess *s = arg;
    s->dns_pending--;
    s->mx_status = a->status;
    s->null_mx = dns_answer_null_mx(a);
    if (a->status == DNS_TEMPFAIL)
        snprintf(s->why, sizeof(s->why), "MX lookup for %s failed: %s", s->domain,
                 a->why ? a->why : "temporary DNS failure");
    if (a->status == DNS_OK) {
        s->mx = xcalloc(a->n, sizeof(*s->mx));
        for (size_t i = 0; i < a->n; i++) {
            if (a->rr[i].type != DNS_T_MX)
                continue;
            struct mx *m = &s->mx[s->nmx++];
            m->host = xstrdup(a->rr[i].u.mx.host);
            m->pref = a->rr[i].u.mx.pref;
            uint32_t rnd = 0;
            if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
                rnd = (uint32_t)i * 2654435761u;
            m->rnd = rnd;
        }
    }
    next_step(s, S_MX);
}

/* An address of family AF_INET (4 bytes) or AF_INET6 (16) on port. */
static socklen_t set_addr(struct sockaddr_storage *ss, int family, const void *bytes,
                          unsigned port)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        memcpy(&in->sin_addr, bytes, 4);
        return sizeof(*in);
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    memcpy(&in6->sin6_addr, bytes, 16);
    return sizeof(*in6);
}

/* Its printable address, and its port. */
static unsigned addr_text(const struct sockaddr_storage *ss, char ip[INET6_ADDRSTRLEN])
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, INET6_ADDRSTRLEN);
        return ntohs(in->sin_port);
    }
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, INET6_ADDRSTRLEN);
    return ntohs(in6->sin6_port);
}

static void addr_answer(void *arg, const struct dns_answer *a)
{
    struct rsess *s = arg;
    s->dns_pending--;
    if (a->status == DNS_OK) {
        for (size_t i = 0; i < a->n && s->naddr < MAX_ADDRS; i++) {
            if (a->rr[i].type == DNS_T_A)
                s->addrlen[s->naddr] = set_addr(&s->addr[s->naddr], AF_INET, a->rr[i].u.a, s->port);
            else if (a->rr[i].type == DNS_T_AAAA)
                s->addrlen[s->naddr] = set_addr(&s->addr[s->naddr], AF_INET6, a->rr[i].u.aaaa,
                                                s->port);
            else
                continue;
            s->naddr++;
        }
    } else if (a->status == DNS_TEMPFAIL) {
        snprintf(s->why, sizeof(s->why), "address lookup for %s failed: %s", s->mx[s->imx].host,
                 a->why ? a->why : "temporary DNS failure");
    }
    if (s->dns_pending == 0) {
        s->resolved = true;
        next_step(s, S_ADDRS);
    }
}

static int mx_cmp(const void *a, const void *b)
{
    const struct mx *x = a, *y = b;
    if (x->pref != y->pref)
        return x->pref < y->pref ? -1 : 1;
    return x->rnd < y->rnd ? -1 : x->rnd > y->rnd;
}

/* The MX answer is in: order the hosts, or find that there are none. */
static void after_mx(struct rsess *s)
{
    switch (s->mx_status) {
    case DNS_TEMPFAIL:
        session_end(s);   /* unreachable for now: the destination waits */
        return;
    case DNS_NXDOMAIN:
    case DNS_PERMFAIL: {
        char text[300];
        snprintf(text, sizeof(text), "the domain %s does not exist", s->domain);
        drain(s, QUEUE_RCPT_FAILED, 550, "5.1.2", text);
        return;
    }
    case DNS_NODATA:
        s->mx = xcalloc(1, sizeof(*s->mx));
        s->mx[0].host = xstrdup(s->domain);
        s->nmx = 1;
        s->implicit_mx = true;
        break;
    case DNS_OK:
        break;
    }
    if (s->null_mx) {
        char text[300];
        snprintf(text, sizeof(text), "the domain %s accepts no mail (null MX)", s->domain);
        drain(s, QUEUE_RCPT_FAILED, 556, "5.1.10", text);
        return;
    }
    qsort(s->mx, s->nmx, sizeof(*s->mx), mx_cmp);
    if (s->nmx > MAX_MX)
        s->nmx = MAX_MX;
    s->imx = 0;
    next_step(s, S_ADDRS);
}

static bool same_name(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na && a[na - 1] == '.')
        na--;
    if (nb && b[nb - 1] == '.')
        nb--;
    return na == nb && strncasecmp(a, b, na) == 0;
}

/* Is this address one of our own listeners on the port we would use? */
static bool is_us(const struct remote *r, const struct sockaddr_storage *ss)
{
    const struct mw_config *c = *r->ctx.conf;
    char ip[INET6_ADDRSTRLEN];
    unsigned port = addr_text(ss, ip);
    for (size_t i = 0; i < c->nlisten; i++)
        if (c->listens[i].port == port && strcmp(c->listens[i].address, ip) == 0)
            return true;
    return false;
}

/* ---- the connection ------------------------------------------------------------------ */

static void sess_read(struct bufferevent *bev, void *arg);
static void sess_event(struct bufferevent *bev, short what, void *arg);
static void advance(struct rsess *s);

static void set_timeouts(struct rsess *s)
{
    const struct mw_config *c = *s->r->ctx.conf;
    struct timeval rd = { .tv_sec = smtpo_timeout(s->o), .tv_usec = 0 };
    struct timeval wr = { .tv_sec = c->smtp_timeouts[4], .tv_usec = 0 };
    bufferevent_set_timeouts(s->bev, &rd, &wr);
}

static void flush(struct rsess *s)
{
    struct buf *out = smtpo_output(s->o);
    if (buf_size(out) > 0 && s->bev)
        bufferevent_write(s->bev, buf_ptr(out), buf_size(out));
    buf_reset(out);
}

static void connect_next(struct rsess *s)
{
    const struct mw_config *c = *s->r->ctx.conf;
    close_conn(s);
    while (s->iaddr < s->naddr && is_us(s->r, &s->addr[s->iaddr])) {
        s->loop_skipped = true;
        s->iaddr++;
    }
    if (s->iaddr >= s->naddr) {
        s->imx++;
        next_step(s, S_ADDRS);
        return;
    }
    const struct sockaddr_storage *ss = &s->addr[s->iaddr];
    char ip[INET6_ADDRSTRLEN];
    unsigned port = addr_text(ss, ip);
    snprintf(s->relay, sizeof(s->relay), "%s[%s]:%u", s->mx[s->imx].host, ip, port);
    snprintf(s->tls, sizeof(s->tls), "none");
    s->bev = bufferevent_socket_new(s->r->ctx.base, -1, BEV_OPT_CLOSE_ON_FREE);
    bool auth = s->relayhost && c->relayhost_user && c->relayhost_user[0];
    struct smtpo_opts o = {
        .helo = c->hostname,
        .starttls = c->outbound_starttls && !s->no_tls,
        .require_tls = s->relayhost,
        .auth_user = auth ? c->relayhost_user : NULL,
        .auth_pass = auth ? s->r->relay_pass : NULL,
        .timeouts = { c->smtp_timeouts[0], c->smtp_timeouts[1], c->smtp_timeouts[2],
                      c->smtp_timeouts[3], c->smtp_timeouts[4], c->smtp_timeouts[5] },
    };
    s->o = smtpo_new(&o);
    s->step = S_CONNECT;
    bufferevent_setcb(s->bev, sess_read, NULL, sess_event, s);
    struct timeval tv = { .tv_sec = c->smtp_connect_timeout, .tv_usec = 0 };
    bufferevent_set_timeouts(s->bev, &tv, &tv);
    if (bufferevent_socket_connect(s->bev, (const struct sockaddr *)ss, (int)s->addrlen[s->iaddr]) < 0) {
        str_lcpy(s->why, "connect failed: ", sizeof(s->why));
        strncat(s->why, strerror(errno), sizeof(s->why) - strlen(s->why) - 1);
        s->iaddr++;
        next_step(s, S_CONNECT);
        return;
    }
    bufferevent_enable(s->bev, EV_READ);
}

/* A host, or the session, could not be used: on to the next address. */
static void host_failed(struct rsess *s, const char *why)
{
    struct buf b = { 0 };
    buf_printf(&b, "%s: %s", s->relay, why);
    str_lcpy(s->why, buf_ptr(&b), sizeof(s->why));
    buf_free(&b);
    log_kv(MW_LOG_INFO, "delivery_attempt", "destination", s->domain, "relay", s->relay,
           "result", "unusable", "reason", why, NULL);
    s->iaddr++;
    s->no_tls = false;
    next_step(s, S_CONNECT);
}

static void load_work(void *arg)
{
    struct rsess *s = arg;
    int r = queue_read(s->r->ctx.queue, &s->item->ref, false, &s->msg);
    s->have_msg = r == 0;
}

static void load_done(void *arg)
{
    struct rsess *s = arg;
    s->loading = false;
    if (!s->have_msg) {
        item_finish(s, s->item, QUEUE_RCPT_DEFERRED, 451, "4.3.0",
                    "the queued message could not be read");
        s->item = NULL;
    }
    if (s->o == NULL || smtpo_state(s->o) == SMTPO_CLOSED) {
        /* the peer went while the message was read */
        if (s->item) {
            item_finish(s, s->item, QUEUE_RCPT_DEFERRED, 451, "4.4.2",
                        "the connection was lost before the message was sent");
            s->item = NULL;
        }
        if (s->have_msg) {
            queue_msg_free(&s->msg);
            s->have_msg = false;
        }
        session_end(s);
        return;
    }
    if (s->item) {
        struct smtpo_msg *m = &s->om;
        memset(m, 0, sizeof(*m));
        m->from = s->item->from;
        m->rcpts = (const char *const *)s->item->rcpts;
        m->nrcpt = s->item->n;
        m->body = s->msg.body;
        m->body_len = s->msg.body_len;
        m->ret = s->item->ret;
        m->envid = s->item->envid;
        m->notify = s->item->notify;
        m->orcpt = (const char *const *)s->item->orcpt;
        smtpo_send(s->o, m);
        flush(s);
    }
    advance(s);
}

static void tls_info(struct rsess *s, SSL *ssl)
{
    long v = SSL_get_verify_result(ssl);
    snprintf(s->tls, sizeof(s->tls), "%s/%s/%s", SSL_get_version(ssl),
             SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)),
             v == X509_V_OK ? "verified" : "unverified");
}

static void outbound_tls_begin(struct rsess *s)
{
    SSL *ssl = SSL_new(s->r->ssl);
    const char *host = s->mx[s->imx].host;
    if (ssl == NULL) {
        smtpo_tls_failed(s->o);
        return;
    }
    struct in6_addr a6;
    struct in_addr a4;
    bool literal = inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
    if (literal)
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    else {
        SSL_set_tlsext_host_name(ssl, host);
        SSL_set1_host(ssl, host);
    }
    if (s->relayhost)   /* the smarthost: a certificate that does not verify ends it */
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    struct bufferevent *tb = bufferevent_openssl_filter_new(
        s->r->ctx.base, s->bev, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (tb == NULL) {
        SSL_free(ssl);
        smtpo_tls_failed(s->o);
        return;
    }
    s->bev = tb;
    bufferevent_setcb(s->bev, sess_read, NULL, sess_event, s);
    const struct mw_config *c = *s->r->ctx.conf;
    struct timeval tv = { .tv_sec = c->smtp_timeouts[0], .tv_usec = 0 };
    bufferevent_set_timeouts(s->bev, &tv, &tv);
    bufferevent_enable(s->bev, EV_READ);
}

/* The outcome of the message just sent (or cut short) per recipient:
 * 2xx delivered, 5xx failed, anything else deferred. */
static void take_results(struct rsess *s)
{
    size_t n;
    const struct smtpo_result *res = smtpo_results(s->o, &n);
    struct dest_item *it = s->item;
    s->item = NULL;
    for (size_t k = 0; k < it->n; k++) {
        struct dest_result *d = &it->res[k];
        bool have = k < n && res[k].code != 0;
        d->code = have ? res[k].code : 451;
        d->state = d->code / 100 == 2   ? QUEUE_RCPT_DELIVERED
                   : d->code / 100 == 5 ? QUEUE_RCPT_FAILED
                                        : QUEUE_RCPT_DEFERRED;
        str_lcpy(d->enhanced, have ? res[k].enhanced : "4.4.2", sizeof(d->enhanced));
        str_lcpy(d->mta, s->relay, sizeof(d->mta));
        str_lcpy(d->text, have ? res[k].text : smtpo_why(s->o), sizeof(d->text));
        d->dsn_passed = smtpo_ext(s->o)->dsn;
    }
    if (s->have_msg) {
        queue_msg_free(&s->msg);
        s->have_msg = false;
    }
    item_done(s, it);
}

/* Look at the machine's state and do what it asks. */
static void advance(struct rsess *s)
{
    for (;;) {
        flush(s);
        switch (smtpo_state(s->o)) {
        case SMTPO_WAIT:
            if (s->bev)
                set_timeouts(s);
            return;
        case SMTPO_TLS:
            if (s->bev && bufferevent_openssl_get_ssl(s->bev) == NULL) {
                outbound_tls_begin(s);
                if (smtpo_state(s->o) == SMTPO_CLOSED)
                    continue;
                return;
            }
            return;   /* handshaking */
        case SMTPO_READY:
            s->reached = true;
            if (s->loading)
                return;
            if (s->stopping || (s->item = dests_next(s->ds)) == NULL) {
                smtpo_quit(s->o);
                flush(s);
                if (s->bev) {
                    /* the goodbye is not waited for long */
                    struct timeval tv = { .tv_sec = 10, .tv_usec = 0 };
                    bufferevent_set_timeouts(s->bev, &tv, &tv);
                }
                return;
            }
            s->loading = true;
            worker_submit(s->r->ctx.pool, load_work, load_done, s);
            return;
        case SMTPO_SENT:
            take_results(s);
            smtpo_next(s->o);
            continue;
        case SMTPO_CLOSED: {
            if (s->item && !s->loading)
                take_results(s);   /* the machine gave every open recipient a 4xx */
            if (s->loading)
                return;   /* load_done ends it */
            if (s->reached) {
                session_end(s);
                return;
            }
            enum smtpo_error e = smtpo_error(s->o);
            const struct smtpo_result *sr = smtpo_session_reply(s->o);
            char why[400];
            if (sr)
                snprintf(why, sizeof(why), "%s: %u %s%s%s", smtpo_why(s->o), sr->code,
                         sr->enhanced, sr->enhanced[0] ? " " : "", sr->text);
            else
                str_lcpy(why, smtpo_why(s->o), sizeof(why));
            if (e == SMTPO_ETLS && !s->no_tls && !s->relayhost) {
                /* opportunistic: the same address again, in clear text */
                log_kv(MW_LOG_WARN, "delivery_attempt", "destination", s->domain, "relay",
                       s->relay, "result", "tls_failed", "action", "retry without STARTTLS",
                       NULL);
                s->no_tls = true;
                next_step(s, S_CONNECT);
                return;
            }
            host_failed(s, why);
            return;
        }
        }
    }
}

static void feed(struct rsess *s, struct bufferevent *bev)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    if (n == 0 || s->o == NULL)
        return;
    const char *p = (const char *)evbuffer_pullup(in, (ssize_t)n);
    smtpo_input(s->o, p, n);
    evbuffer_drain(in, n);
}

static void sess_read(struct bufferevent *bev, void *arg)
{
    struct rsess *s = arg;
    feed(s, bev);
    advance(s);
}

static void sess_event(struct bufferevent *bev, short what, void *arg)
{
    struct rsess *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        if (ssl != NULL) {
            tls_info(s, ssl);
            smtpo_tls_done(s->o);
            advance(s);
        } else {
            s->step = S_SMTP;
            int one = 1;
            setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        return;
    }
    if (s->step == S_CONNECT) {
        host_failed(s, what & BEV_EVENT_TIMEOUT ? "connection timed out"
                                                 : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        return;
    }
    if (smtpo_state(s->o) == SMTPO_TLS) {
        unsigned long e = ERR_get_error();
        char buf[160];
        ERR_error_string_n(e, buf, sizeof(buf));
        smtpo_tls_failed(s->o);
        log_kv(MW_LOG_INFO, "tls_client_error", "relay", s->relay, "error", e ? buf : "closed",
               NULL);
    } else if (what & BEV_EVENT_TIMEOUT) {
        smtpo_abort(s->o, "the peer did not answer in time");
    } else {
        /* EOF or error: whatever was read first */
        feed(s, bev);
        if (s->o && smtpo_state(s->o) != SMTPO_CLOSED)
            smtpo_input(s->o, "", 0);
    }
    if (s->bev) {
        bufferevent_free(s->bev);   /* nothing more goes to a closed peer */
        s->bev = NULL;
    }
    advance(s);
}

/* A host that is an IP address needs no lookup. */
static bool add_literal(struct rsess *s, const char *h)
{
    unsigned char b[16];
    if (inet_pton(AF_INET, h, b) == 1)
        s->addrlen[0] = set_addr(&s->addr[0], AF_INET, b, s->port);
    else if (inet_pton(AF_INET6, h, b) == 1)
        s->addrlen[0] = set_addr(&s->addr[0], AF_INET6, b, s->port);
    else
        return false;
    s->naddr = 1;
    return true;
}

/* ---- the steps ----------------------------------------------------------------------- */

static void step_cb(evutil_socket_t fd, short what, void *arg)
{
    struct rsess *s = arg;
    (void)fd;
    (void)what;
    switch (s->step) {
    case S_MX:
        if (s->dns_pending > 0)
            return;
        if (s->mx == NULL && s->mx_status == DNS_OK)
            s->mx_status = DNS_NODATA;
        after_mx(s);
        return;
    case S_ADDRS: {
        if (s->dns_pending > 0)
            return;
        if (s->resolved) {
            s->resolved = false;
            if (s->naddr > 0) {
                connect_next(s);
                return;
            }
            if (s->why[0] == '\0')
                snprintf(s->why, sizeof(s->why), "%s has no address", s->mx[s->imx].host);
            s->imx++;
        }
        /* the next host */
        while (s->imx < s->nmx && same_name(s->mx[s->imx].host, (*s->r->ctx.conf)->hostname)) {
            s->loop_skipped = true;
            s->imx++;
        }
        if (s->stopping || s->imx >= s->nmx) {
            if (s->loop_skipped && !s->stopping) {
                char text[300];
                snprintf(text, sizeof(text), "mail for %s loops back to myself", s->domain);
                drain(s, QUEUE_RCPT_DEFERRED, 451, "4.4.6", text);
                return;
            }
            if (s->why[0] == '\0')
                snprintf(s->why, sizeof(s->why), "no address for any MX host of %s", s->domain);
            session_end(s);
            return;
        }
        s->naddr = 0;
        s->iaddr = 0;
        const char *h = s->mx[s->imx].host;
        if (add_literal(s, h)) {
            s->resolved = true;
            next_step(s, S_ADDRS);
            return;
        }
        s->dns_pending = 2;
        dns_resolve(s->r->ctx.dns, h, DNS_T_A, addr_answer, s);
        dns_resolve(s->r->ctx.dns, h, DNS_T_AAAA, addr_answer, s);
        return;
    }
    case S_CONNECT:
        connect_next(s);
        return;
    case S_NORELAY:
        drain(s, QUEUE_RCPT_DEFERRED, 451, "4.3.5", "relayhost is no longer configured");
        return;
    default:
        return;
    }
}

void remote_start(void *arg, struct dest_session *ds)
{
    struct remote *r = arg;
    struct rsess *s = xcalloc(1, sizeof(*s));
    s->r = r;
    s->ds = ds;
    ds->transport = s;
    s->domain = xstrdup(ds->domain);
    s->step_ev = event_new(r->ctx.base, -1, 0, step_cb, s);
    clock_gettime(CLOCK_MONOTONIC, &s->started);
    s->next = r->sessions;
    if (r->sessions)
        r->sessions->prev = s;
    r->sessions = s;
    const struct mw_config *c = *r->ctx.conf;
    s->port = c->outbound_port;
    if (strcmp(s->domain, SCHED_RELAYHOST) == 0) {
        /* the smarthost: no MX, its own port, TLS verified */
        s->relayhost = true;
        if (c->relayhost_host == NULL) {   /* unset by a reload: by MX from the next attempt */
            next_step(s, S_NORELAY);       /* never from inside dests' kick */
            return;
        }
        s->mx = xcalloc(1, sizeof(*s->mx));
        s->mx[0].host = xstrdup(c->relayhost_host);
        s->nmx = 1;
        s->port = c->relayhost_port;
        next_step(s, S_ADDRS);
        return;
    }
    s->step = S_MX;
    s->dns_pending = 1;
    dns_resolve(r->ctx.dns, s->domain, DNS_T_MX, mx_answer, s);
}

void remote_stop(struct remote *r)
{
    for (struct rsess *s = r->sessions; s; s = s->next)
        s->stopping = true;
}
