/*
 * client.c - the blocking submission client; the contract is in client.h.
 *
 * The socket is non-blocking from the start and every read, write and
 * handshake step waits in poll() for at most the timeout, so a silent or
 * slow server cannot hold the command forever. Reading goes through one
 * input buffer and the reply parser; the parser takes one reply at a time,
 * so whatever follows stays in the buffer where the STARTTLS check can see
 * it.
 *
 * SECURITY: the server is untrusted: its replies are parsed with bounds
 * and its text is only ever shown after the parser has refused controls.
 * Credentials exist here only in buffers that are wiped before they are
 * freed, and only ever go out after the TLS handshake verified the peer.
 */
#include "smtp/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/base64.h"
#include "core/str.h"
#include "core/xmalloc.h"
#include "tls/tls.h"

#define READ_CHUNK 4096
#define DATA_CHUNK 65536

struct smtp_client {
    struct smtp_client_opts o;
    char *host;
    char *helo;
    char *ca_file;
    char peer[300];
    bool ip_literal;
    bool dead;             /* no more commands: the session is unusable */
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    struct buf in;         /* read, not yet parsed */
    struct buf raw;        /* the reply's bytes as received, for the trace */
    struct smtp_reply_parser parser;
    struct smtp_reply reply;
    struct smtp_ext ext;
    struct buf err;
};

static void buf_wipe(struct buf *b)
{
    if (b->data != NULL)
        explicit_bzero(b->data, b->cap);
    buf_free(b);
}

__attribute__((format(printf, 3, 4)))
static int fail(struct smtp_client *c, int rc, const char *fmt, ...)
{
    va_list ap;
    buf_reset(&c->err);
    va_start(ap, fmt);
    buf_vprintf(&c->err, fmt, ap);
    va_end(ap);
    if (rc != SMTPC_EREPLY)
        c->dead = true;
    return rc;
}

/* ------------------------------------------------------------------ trace */

static void trace_text(struct smtp_client *c, const char *dir, const char *p, size_t n)
{
    if (c->o.trace == NULL)
        return;
    fprintf(c->o.trace, "%s", dir);
    for (size_t i = 0; i < n; i++) {
        unsigned char u = (unsigned char)p[i];
        if (u == '\n' && i + 1 < n)
            fprintf(c->o.trace, "\n%s", dir);
        else if (u == '\r' || u == '\n')
            continue;
        else if (u < 0x20 || u == 0x7f)
            fprintf(c->o.trace, "\\x%02x", u);
        else
            fputc(u, c->o.trace);
    }
    fputc('\n', c->o.trace);
    fflush(c->o.trace);
}

/* --------------------------------------------------------------- raw I/O */

/* Wait until fd is ready for ev; 0, or -1 with errno (ETIMEDOUT). */
static int wait_fd(int fd, short ev, unsigned timeout)
{
    struct pollfd p = { .fd = fd, .events = ev };
    for (;;) {
        int r = poll(&p, 1, (int)(timeout * 1000));
        if (r > 0)
            return 0;
        if (r == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR)
            return -1;
    }
}

static int connect_one(const struct addrinfo *ai, unsigned timeout)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return fd;
    int e = errno;
    if (e == EINPROGRESS && wait_fd(fd, POLLOUT, timeout) == 0) {
        socklen_t len = sizeof(e);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
            e = errno;
        if (e == 0)
            return fd;
    } else if (e == EINPROGRESS) {
        e = errno;
    }
    close(fd);
    errno = e;
    return -1;
}

static int do_connect(struct smtp_client *c)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", c->o.port);
    int g = getaddrinfo(c->host, port, &hints, &res);
    if (g != 0)
        return fail(c, SMTPC_ECONNECT, "cannot resolve %s: %s", c->host,
                    g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
    int e = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if ((c->fd = connect_one(ai, c->o.timeout)) >= 0)
            break;
        e = errno;
    }
    freeaddrinfo(res);
    if (c->fd < 0)
        return fail(c, SMTPC_ECONNECT, "cannot connect to %s: %s", c->peer,
                    e == ETIMEDOUT ? "connection timed out" : strerror(e));
    if (c->o.trace)
        fprintf(c->o.trace, "connected to %s\n", c->peer);
    return SMTPC_OK;
}

/* what: the command whose reply we wait for, NULL for the greeting, or a
 * phrase starting with "while" for a write. */
static int io_error(struct smtp_client *c, const char *what, int e)
{
    char phrase[200];
    if (what == NULL)
        snprintf(phrase, sizeof(phrase), "waiting for the greeting");
    else if (strncmp(what, "while ", 6) == 0)
        snprintf(phrase, sizeof(phrase), "%s", what + 6);
    else
        snprintf(phrase, sizeof(phrase), "waiting for the reply to %s", what);
    if (e == ETIMEDOUT)
        return fail(c, SMTPC_EIO, "%s: timed out %s", c->peer, phrase);
    if (e == 0)
        return fail(c, SMTPC_EIO, "%s closed the connection while %s", c->peer, phrase);
    return fail(c, SMTPC_EIO, "%s: error while %s: %s", c->peer, phrase, strerror(e));
}

/* After an SSL call returned r <= 0: wait for what it needs. 0 retry,
 * -1 give up with errno set (0 for a closed connection). */
static int ssl_wait(struct smtp_client *c, int r)
{
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ: return wait_fd(c->fd, POLLIN, c->o.timeout);
    case SSL_ERROR_WANT_WRITE: return wait_fd(c->fd, POLLOUT, c->o.timeout);
    case SSL_ERROR_ZERO_RETURN: errno = 0; return -1;
    case SSL_ERROR_SYSCALL: return -1;  /* errno is 0 at end of file */
    default: errno = EPROTO; return -1;
    }
}

/* Read what is there (at least one byte) into c->in. */
static int io_read(struct smtp_client *c, const char *what)
{
    char chunk[READ_CHUNK];
    for (;;) {
        ssize_t r;
        errno = 0;
        if (c->ssl != NULL) {
            ERR_clear_error();
            int k = SSL_read(c->ssl, chunk, sizeof(chunk));
            if (k > 0) {
                buf_append(&c->in, chunk, (size_t)k);
                return SMTPC_OK;
            }
            if (ssl_wait(c, k) < 0)
                return io_error(c, what, errno);
            continue;
        }
        r = read(c->fd, chunk, sizeof(chunk));
        if (r > 0) {
            buf_append(&c->in, chunk, (size_t)r);
            return SMTPC_OK;
        }
        if (r == 0)
            return io_error(c, what, 0);
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN || wait_fd(c->fd, POLLIN, c->o.timeout) < 0)
            return io_error(c, what, errno);
    }
}

static int io_write(struct smtp_client *c, const char *p, size_t n, const char *what)
{
    while (n > 0) {
        errno = 0;
        if (c->ssl != NULL) {
            ERR_clear_error();
            int k = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
            if (k > 0) {
                p += k;
                n -= (size_t)k;
            } else if (ssl_wait(c, k) < 0) {
                return io_error(c, what, errno);
            }
            continue;
        }
        ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        } else if (r < 0 && errno != EINTR &&
                   (errno != EAGAIN || wait_fd(c->fd, POLLOUT, c->o.timeout) < 0)) {
            return io_error(c, what, errno);
        }
    }
    return SMTPC_OK;
}

/* ---------------------------------------------------------------- replies */

static int read_reply(struct smtp_client *c, const char *what)
{
    smtp_reply_free(&c->reply);
    buf_reset(&c->raw);
    for (;;) {
        size_t used = 0;
        int rc = smtp_reply_feed(&c->parser, buf_ptr(&c->in), buf_size(&c->in), &used, &c->reply);
        if (c->o.trace)
            buf_append(&c->raw, buf_ptr(&c->in), used);
        buf_consume(&c->in, used);
        if (rc == SMTP_REPLY_DONE) {
            trace_text(c, "S: ", buf_ptr(&c->raw), buf_size(&c->raw));
            return SMTPC_OK;
        }
        if (rc < 0)
            return fail(c, SMTPC_EPROTO, "%s sent a malformed %s%s: %s", c->peer,
                        what ? "reply to " : "greeting", what ? what : "",
                        smtp_reply_strerror(rc));
        rc = io_read(c, what);
        if (rc < 0)
            return rc;
    }
}

/* A refusal: "HOST refused WHAT: 550 5.1.1 text" (first line of the reply). */
static int refused(struct smtp_client *c, const char *what)
{
    size_t n;
    const char *t = smtp_reply_line(&c->reply, 0, &n);
    return fail(c, SMTPC_EREPLY, "%s refused %s: %u%s%s %.*s", c->peer, what, c->reply.code,
                c->reply.enhanced[0] ? " " : "", c->reply.enhanced, (int)n, t);
}

/* Send one command line; mask: what the trace shows instead of the
 * argument after the first mask_after bytes (NULL: show all). */
static int send_line(struct smtp_client *c, const char *line, size_t mask_after, bool mask)
{
    size_t n = strlen(line);
    if (memchr(line, '\r', n) || memchr(line, '\n', n))
        return fail(c, SMTPC_EOS, "refusing to send a command with a line break to %s", c->peer);
    if (c->o.trace) {
        if (mask) {
            fprintf(c->o.trace, "C: %.*s****\n", (int)mask_after, line);
            fflush(c->o.trace);
        } else {
            trace_text(c, "C: ", line, n);
        }
    }
    struct buf out = { 0 };
    buf_reserve(&out, n + 3);  /* one allocation: no stray copy of a secret */
    buf_printf(&out, "%s\r\n", line);
    int rc = io_write(c, buf_ptr(&out), buf_size(&out), "while sending a command");
    if (mask)
        buf_wipe(&out);
    else
        buf_free(&out);
    return rc;
}

/* Send line, read the reply, and require its class. */
static int command(struct smtp_client *c, const char *line, unsigned want_class, const char *what)
{
    if (c->dead)
        return fail(c, SMTPC_EIO, "%s: the session is no longer usable", c->peer);
    int rc = send_line(c, line, 0, false);
    if (rc == SMTPC_OK)
        rc = read_reply(c, what);
    if (rc == SMTPC_OK && smtp_reply_class(&c->reply) != want_class)
        rc = refused(c, what);
    return rc;
}

/* ------------------------------------------------------------ EHLO */

static int ehlo(struct smtp_client *c)
{
    struct buf line = { 0 };
    buf_printf(&line, "EHLO %s", c->helo);
    int rc = command(c, buf_ptr(&line), 2, "EHLO");
    buf_free(&line);
    if (rc == SMTPC_OK)
        smtp_ext_parse(&c->reply, &c->ext);
    return rc;
}

/* -------------------------------------------------------------------- TLS */

static int tls_context(struct smtp_client *c)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        return fail(c, SMTPC_EOS, "cannot create a TLS context");
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    int ok = c->ca_file != NULL ? SSL_CTX_load_verify_locations(c->ctx, c->ca_file, NULL)
                                : SSL_CTX_set_default_verify_paths(c->ctx);
    if (ok != 1) {
        struct buf why = { 0 };
        tls_last_error(&why);
        int rc = fail(c, SMTPC_ECONFIG, "%s: cannot load the CA certificates: %s",
                      c->ca_file ? c->ca_file : "system trust store", buf_ptr(&why));
        buf_free(&why);
        return rc;
    }
    return SMTPC_OK;
}

/* The SSL object, bound to the name or address the certificate must show. */
static int tls_new_ssl(struct smtp_client *c)
{
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        return fail(c, SMTPC_EOS, "cannot create a TLS session");
    if (c->ip_literal) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host) != 1)
            return fail(c, SMTPC_EOS, "cannot set the expected address %s", c->host);
    } else {
        SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set1_host(c->ssl, c->host) != 1 || SSL_set_tlsext_host_name(c->ssl, c->host) != 1)
            return fail(c, SMTPC_EOS, "cannot set the expected host name %s", c->host);
    }
    return SMTPC_OK;
}

static int tls_failed(struct smtp_client *c, int e)
{
    long v = SSL_get_verify_result(c->ssl);
    if (v != X509_V_OK)
        return fail(c, SMTPC_ETLS, "the certificate of %s does not verify: %s%s", c->peer,
                    X509_verify_cert_error_string(v),
                    v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH
                        ? (c->ip_literal ? " (not issued for this address)"
                                         : " (not issued for this host name)")
                        : "");
    struct buf why = { 0 };
    tls_last_error(&why);
    if (buf_size(&why) == 0)
        buf_append_str(&why, e == ETIMEDOUT ? "timed out"
                             : e == 0 ? "connection closed" : strerror(e));
    int rc = fail(c, SMTPC_ETLS, "TLS handshake with %s failed: %s", c->peer, buf_ptr(&why));
    buf_free(&why);
    return rc;
}

static int tls_start(struct smtp_client *c)
{
    int rc = tls_context(c);
    if (rc == SMTPC_OK)
        rc = tls_new_ssl(c);
    if (rc != SMTPC_OK)
        return rc;
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_connect(c->ssl);
        if (r == 1)
            break;
        if (ssl_wait(c, r) < 0)
            return tls_failed(c, errno);
    }
    if (SSL_get_verify_result(c->ssl) != X509_V_OK || SSL_get0_peer_certificate(c->ssl) == NULL)
        return tls_failed(c, EPROTO);
    if (c->o.trace) {
        struct buf d = { 0 };
        tls_describe(c->ssl, &d);
        fprintf(c->o.trace, "TLS: %s; certificate verified for %s\n", buf_ptr(&d), c->host);
        buf_free(&d);
    }
    return SMTPC_OK;
}

static int starttls(struct smtp_client *c)
{
    if (!c->ext.starttls)
        return fail(c, SMTPC_ETLS,
                    "%s does not offer STARTTLS; "
                    "refusing to send mail or credentials in clear text", c->peer);
    int rc = command(c, "STARTTLS", 2, "STARTTLS");
    if (rc == SMTPC_EREPLY) {
        char *why = xstrdup(buf_ptr(&c->err));  /* fail() rewrites c->err */
        rc = fail(c, SMTPC_ETLS, "%s; refusing to send mail or credentials in clear text", why);
        xfree(why);
        return rc;
    }
    if (rc != SMTPC_OK)
        return rc;
    if (c->reply.code != 220)
        return fail(c, SMTPC_EPROTO, "%s answered STARTTLS with %u instead of 220", c->peer,
                    c->reply.code);
    if (buf_size(&c->in) > 0)
        return fail(c, SMTPC_ETLS, "%s sent data after its reply to STARTTLS and before the "
                    "TLS handshake (command injection?); refusing", c->peer);
    rc = tls_start(c);
    if (rc == SMTPC_OK) {
        memset(&c->ext, 0, sizeof(c->ext));  /* forget what clear text said */
        rc = ehlo(c);
    }
    return rc;
}

/* ---------------------------------------------------------------- session */

static void init_client(struct smtp_client *c, const struct smtp_client_opts *o)
{
    c->o = *o;
    c->fd = -1;
    c->host = xstrdup(o->host);
    c->helo = xstrdup(o->helo);
    c->ca_file = o->ca_file && o->ca_file[0] ? xstrdup(o->ca_file) : NULL;
    unsigned char tmp[16];
    bool v6 = inet_pton(AF_INET6, o->host, tmp) == 1;
    c->ip_literal = v6 || inet_pton(AF_INET, o->host, tmp) == 1;
    snprintf(c->peer, sizeof(c->peer), v6 ? "[%s]:%u" : "%s:%u", o->host, o->port);
    smtp_reply_parser_init(&c->parser);
    if (c->o.timeout == 0)
        c->o.timeout = 60;
}

int smtp_client_open(const struct smtp_client_opts *o, struct smtp_client **out)
{
    struct smtp_client *c = xcalloc(1, sizeof(*c));
    *out = c;
    init_client(c, o);
    int rc = do_connect(c);
    if (rc == SMTPC_OK && o->tls == SMTP_CLIENT_IMPLICIT)
        rc = tls_start(c);
    if (rc == SMTPC_OK)
        rc = read_reply(c, NULL);
    if (rc == SMTPC_OK && c->reply.code != 220)
        rc = refused(c, "the session");
    if (rc == SMTPC_OK)
        rc = ehlo(c);
    if (rc == SMTPC_OK && o->tls == SMTP_CLIENT_STARTTLS)
        rc = starttls(c);
    if (rc != SMTPC_OK)
        c->dead = true;
    return rc;
}

/* ------------------------------------------------------------------- AUTH */

/* Send base64(p) as a line (masked in the trace, wiped after). */
static int send_secret(struct smtp_client *c, const char *prefix, const void *p, size_t n)
{
    struct buf line = { 0 };
    buf_reserve(&line, strlen(prefix) + (n + 2) / 3 * 4 + 3);  /* no realloc copies */
    buf_append_str(&line, prefix);
    b64_encode(p, n, &line);
    int rc = send_line(c, buf_ptr(&line), strlen(prefix), true);
    buf_wipe(&line);
    return rc;
}

/* After a reply to an AUTH step: 235 done, else a refusal. */
static int auth_result(struct smtp_client *c, int rc, const char *mech)
{
    if (rc != SMTPC_OK)
        return rc;
    if (c->reply.code == 235)
        return SMTPC_OK;
    if (c->reply.code == 334) {  /* a challenge we do not expect: cancel */
        rc = send_line(c, "*", 0, false);
        if (rc == SMTPC_OK)
            rc = read_reply(c, mech);
        if (rc != SMTPC_OK)
            return rc;
    }
    return refused(c, mech);
}

static int auth_plain(struct smtp_client *c, const char *user, const char *pass)
{
    struct buf raw = { 0 };
    buf_reserve(&raw, strlen(user) + strlen(pass) + 3);  /* no realloc copies */
    buf_append_byte(&raw, '\0');
    buf_append_str(&raw, user);
    buf_append_byte(&raw, '\0');
    buf_append_str(&raw, pass);
    int rc = send_secret(c, "AUTH PLAIN ", buf_ptr(&raw), buf_size(&raw));
    buf_wipe(&raw);
    if (rc == SMTPC_OK)
        rc = read_reply(c, "AUTH PLAIN");
    return auth_result(c, rc, "AUTH PLAIN");
}

static int auth_login(struct smtp_client *c, const char *user, const char *pass)
{
    int rc = send_line(c, "AUTH LOGIN", 0, false);
    if (rc == SMTPC_OK)
        rc = read_reply(c, "AUTH LOGIN");
    if (rc == SMTPC_OK && c->reply.code == 334) {
        rc = send_secret(c, "", user, strlen(user));
        if (rc == SMTPC_OK)
            rc = read_reply(c, "AUTH LOGIN");
    }
    if (rc == SMTPC_OK && c->reply.code == 334) {
        rc = send_secret(c, "", pass, strlen(pass));
        if (rc == SMTPC_OK)
            rc = read_reply(c, "AUTH LOGIN");
    }
    return auth_result(c, rc, "AUTH LOGIN");
}

int smtp_client_auth(struct smtp_client *c, const char *user, const char *pass)
{
    if (c->dead)
        return fail(c, SMTPC_EIO, "%s: the session is no longer usable", c->peer);
    if (c->ssl == NULL)  /* cannot happen: open() only succeeds with TLS */
        return fail(c, SMTPC_ETLS, "refusing to send credentials to %s in clear text", c->peer);
    if (c->ext.auth_mechs & SMTP_AUTH_PLAIN)
        return auth_plain(c, user, pass);
    if (c->ext.auth_mechs & SMTP_AUTH_LOGIN)
        return auth_login(c, user, pass);
    c->dead = true;
    if (c->ext.auth)
        return fail(c, SMTPC_EAUTH, "%s offers no AUTH mechanism we can use (PLAIN, LOGIN)",
                    c->peer);
    return fail(c, SMTPC_EAUTH, "%s does not offer AUTH", c->peer);
}

/* ------------------------------------------------------------ transaction */

int smtp_client_mail(struct smtp_client *c, const char *from, size_t size, bool eightbit,
                     bool utf8)
{
    struct buf line = { 0 };
    buf_printf(&line, "MAIL FROM:<%s>", from);
    if (c->ext.size && size > 0)
        buf_printf(&line, " SIZE=%zu", size);
    if (eightbit && c->ext.eightbitmime)
        buf_append_str(&line, " BODY=8BITMIME");
    if (utf8 && c->ext.smtputf8)
        buf_append_str(&line, " SMTPUTF8");
    int rc = command(c, buf_ptr(&line), 2, buf_ptr(&line));
    buf_free(&line);
    return rc;
}

int smtp_client_rcpt(struct smtp_client *c, const char *rcpt)
{
    struct buf line = { 0 };
    buf_printf(&line, "RCPT TO:<%s>", rcpt);
    int rc = command(c, buf_ptr(&line), 2, buf_ptr(&line));
    buf_free(&line);
    return rc;
}

int smtp_client_data(struct smtp_client *c, const char *msg, size_t n)
{
    int rc = command(c, "DATA", 3, "DATA");
    if (rc != SMTPC_OK)
        return rc;
    if (c->o.trace)
        fprintf(c->o.trace, "C: (message, %zu bytes)\n", n);
    struct buf out = { 0 };
    bool bol = true;
    for (size_t off = 0; off < n && rc == SMTPC_OK; off += DATA_CHUNK) {
        size_t k = n - off < DATA_CHUNK ? n - off : DATA_CHUNK;
        buf_reset(&out);
        smtp_dot_stuff(msg + off, k, &bol, &out);
        rc = io_write(c, buf_ptr(&out), buf_size(&out), "while sending the message");
    }
    buf_free(&out);
    if (rc != SMTPC_OK)
        return rc;
    const char *end = n == 0 || bol ? ".\r\n" : "\r\n.\r\n";
    if (c->o.trace)
        fprintf(c->o.trace, "C: .\n");
    rc = io_write(c, end, strlen(end), "while sending the message");
    if (rc == SMTPC_OK)
        rc = read_reply(c, "the end of the message");
    if (rc == SMTPC_OK && smtp_reply_class(&c->reply) != 2)
        rc = refused(c, "the message");
    return rc;
}

int smtp_client_rset(struct smtp_client *c)
{
    return command(c, "RSET", 2, "RSET");
}

void smtp_client_quit(struct smtp_client *c)
{
    if (c->fd >= 0 && !c->dead) {
        unsigned t = c->o.timeout;
        c->o.timeout = t < 10 ? t : 10;  /* do not hang on the goodbye */
        if (send_line(c, "QUIT", 0, false) == SMTPC_OK)
            (void)read_reply(c, "QUIT");
        c->o.timeout = t;
    }
    if (c->ssl != NULL && !c->dead)
        (void)SSL_shutdown(c->ssl);  /* one close_notify; we do not wait for the peer's */
    c->dead = true;
}

void smtp_client_free(struct smtp_client *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    xfree(c->host);
    xfree(c->helo);
    xfree(c->ca_file);
    buf_free(&c->in);
    buf_free(&c->raw);
    smtp_reply_parser_reset(&c->parser);
    smtp_reply_free(&c->reply);
    buf_free(&c->err);
    xfree(c);
}

const char *smtp_client_error(const struct smtp_client *c)
{
    return buf_ptr(&c->err);
}

const struct smtp_reply *smtp_client_reply(const struct smtp_client *c)
{
    return &c->reply;
}

const struct smtp_ext *smtp_client_ext(const struct smtp_client *c)
{
    return &c->ext;
}

const char *smtp_client_peer(const struct smtp_client *c)
{
    return c->peer;
}
