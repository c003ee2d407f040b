/*
 * bench/tls_client.c - STARTTLS SMTP load generator for bench/tls.
 *
 * N worker threads, each running its share of COUNT complete sessions one
 * after the other:
 *
 *   connect, 220, EHLO (STARTTLS must be advertised), STARTTLS, 220,
 *   TLS handshake, EHLO, MAIL FROM, RCPT TO, DATA, 354, message, 250,
 *   QUIT, 221, close_notify, close
 *
 * Every reply code is checked; a session with an unexpected reply, a TLS
 * error, a timeout or a closed connection counts as failed (and the worker
 * goes on with its next session).  The server certificate is not verified
 * (self-signed benchmark certificate), but the handshake itself is complete
 * (the server's signature is checked by TLS as always).
 *
 * With -r each worker keeps the SSL_SESSION of its last session and offers
 * it for resumption in the next one (the first session of a worker is a full
 * handshake).
 *
 * Output on stdout, one line of key=value pairs:
 *   completed= failed= resumed= elapsed= cpu_user= cpu_sys= protocol=
 *   cipher= group= server_key= tickets= mismatched=
 * protocol/cipher/group/server_key/tickets describe the first completed
 * session; mismatched counts sessions whose protocol or cipher differed
 * from it.  The first few errors go to stderr.  Exit status: 0 if every
 * session completed, 1 if any failed, 2 on a usage or set-up error.
 *
 * Build: cc -O2 bench/tls_client.c -lssl -lcrypto -lpthread
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_ERRORS_SHOWN 10

static const char *opt_host = "127.0.0.1";
static int opt_port;
static int opt_workers = 8;
static long opt_count = 100;
static long opt_size = 1024;
static int opt_resume;
static int opt_nagle; /* 1: leave Nagle's algorithm on (no TCP_NODELAY) */
static int opt_timeout = 30;
static int opt_max_version; /* 0 = library default (highest) */
static const char *opt_from = "bench@bench.test";
static const char *opt_rcpt = "user@bench.test";
static const char *opt_helo = "client.bench.test";
static const char *opt_sni = "bench.test";

static SSL_CTX *ctx;
static struct sockaddr_in server_addr;
static char *message;  /* headers + body + CRLF.CRLF, without the msg-id */
static size_t message_len;
static pthread_barrier_t start_barrier;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long n_completed, n_failed, n_resumed, n_mismatched;
static int n_errors_shown;
static int have_first;
static char first_protocol[32], first_cipher[64], first_group[32];
static char first_key[32];
static int first_tickets;

struct conn {
    int fd;
    SSL *ssl;
    char buf[8192];
    size_t off, len;
};

struct reply {
    int code;
    char text[1024]; /* all lines, truncated */
};

static void report_error(int worker, long session, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report_error(int worker, long session, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&lock);
    if (n_errors_shown < MAX_ERRORS_SHOWN) {
        fprintf(stderr, "tls_client: worker %d session %ld: %s\n", worker,
                session, msg);
        if (++n_errors_shown == MAX_ERRORS_SHOWN)
            fprintf(stderr, "tls_client: (further errors not shown)\n");
    }
    pthread_mutex_unlock(&lock);
}

/* The OpenSSL error queue of this thread as one string (and cleared). */
static void ssl_errors(char *out, size_t outlen)
{
    unsigned long e;
    size_t used = 0;
    out[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof one);
        int n = snprintf(out + used, outlen - used, "%s%s", used ? "; " : "", one);
        if (n < 0 || (size_t)n >= outlen - used)
            break;
        used += (size_t)n;
    }
}

/* Describe why an SSL_* call failed. */
static void ssl_fail(SSL *ssl, int ret, char *out, size_t outlen)
{
    int err = SSL_get_error(ssl, ret);
    int saved = errno;
    char q[512];
    ssl_errors(q, sizeof q);
    switch (err) {
    case SSL_ERROR_ZERO_RETURN:
        snprintf(out, outlen, "peer sent close_notify");
        break;
    case SSL_ERROR_SYSCALL:
        if (q[0])
            snprintf(out, outlen, "%s", q);
        else if (saved == EAGAIN || saved == EWOULDBLOCK)
            snprintf(out, outlen, "timeout (%ds)", opt_timeout);
        else if (saved)
            snprintf(out, outlen, "%s", strerror(saved));
        else
            snprintf(out, outlen, "connection closed by peer (no close_notify)");
        break;
    case SSL_ERROR_SSL:
        snprintf(out, outlen, "TLS error: %s", q[0] ? q : "(no detail)");
        break;
    default:
        snprintf(out, outlen, "SSL error %d%s%s", err, q[0] ? ": " : "", q);
        break;
    }
}

static int conn_write(struct conn *c, const char *data, size_t len,
                      char *err, size_t errlen)
{
    while (len > 0) {
        if (c->ssl) {
            size_t written = 0;
            int r = SSL_write_ex(c->ssl, data, len, &written);
            if (r <= 0) {
                ssl_fail(c->ssl, r, err, errlen);
                return -1;
            }
            data += written;
            len -= written;
        } else {
            ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                snprintf(err, errlen, "send: %s", errno == EAGAIN
                         ? "timeout" : strerror(errno));
                return -1;
            }
            data += n;
            len -= (size_t)n;
        }
    }
    return 0;
}

/* Fill the buffer; 0 on success, -1 with err set. */
static int conn_fill(struct conn *c, char *err, size_t errlen)
{
    if (c->off > 0) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->len == sizeof c->buf) {
        snprintf(err, errlen, "reply line too long");
        return -1;
    }
    for (;;) {
        if (c->ssl) {
            size_t got = 0;
            int r = SSL_read_ex(c->ssl, c->buf + c->len, sizeof c->buf - c->len,
                                &got);
            if (r <= 0) {
                ssl_fail(c->ssl, r, err, errlen);
                return -1;
            }
            c->len += got;
            return 0;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "recv: %s", errno == EAGAIN
                     ? "timeout" : strerror(errno));
            return -1;
        }
        if (n == 0) {
            snprintf(err, errlen, "connection closed by server");
            return -1;
        }
        c->len += (size_t)n;
        return 0;
    }
}

/* Read one (possibly multi-line) reply. */
static int read_reply(struct conn *c, struct reply *r, char *err, size_t errlen)
{
    size_t tlen = 0;
    r->code = 0;
    r->text[0] = '\0';
    for (;;) {
        char *nl;
        while ((nl = memchr(c->buf + c->off, '\n', c->len - c->off)) == NULL)
            if (conn_fill(c, err, errlen) < 0)
                return -1;
        char *line = c->buf + c->off;
        size_t llen = (size_t)(nl - line);
        c->off += llen + 1;
        if (llen > 0 && line[llen - 1] == '\r')
            llen--;
        if (llen < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0'
            || line[1] > '9' || line[2] < '0' || line[2] > '9'
            || (llen > 3 && line[3] != ' ' && line[3] != '-')) {
            snprintf(err, errlen, "malformed reply line: %.*s", (int)llen, line);
            return -1;
        }
        int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (r->code && code != r->code) {
            snprintf(err, errlen, "reply code changed within a reply: %d, %d",
                     r->code, code);
            return -1;
        }
        r->code = code;
        if (tlen < sizeof r->text - 1) {
            int n = snprintf(r->text + tlen, sizeof r->text - tlen, "%s%.*s",
                             tlen ? " | " : "", (int)llen, line);
            if (n > 0)
                tlen += (size_t)n;
            if (tlen >= sizeof r->text)
                tlen = sizeof r->text - 1;
        }
        if (llen == 3 || line[3] == ' ')
            return 0;
    }
}

/* Send a command (if cmd) and check the reply code. */
static int command(struct conn *c, const char *cmd, int expect, const char *what,
                   struct reply *r, char *err, size_t errlen)
{
    char e[600];
    if (cmd && conn_write(c, cmd, strlen(cmd), e, sizeof e) < 0) {
        snprintf(err, errlen, "%s: sending: %s", what, e);
        return -1;
    }
    if (read_reply(c, r, e, sizeof e) < 0) {
        snprintf(err, errlen, "%s: reading reply: %s", what, e);
        return -1;
    }
    if (r->code != expect) {
        snprintf(err, errlen, "%s: expected %d, got: %.600s", what, expect, r->text);
        return -1;
    }
    return 0;
}

/* Is kw one of the EHLO keywords?  text: "250-host | 250-KW1 | 250 KW2" */
static int ehlo_has(const char *text, const char *kw)
{
    size_t kl = strlen(kw);
    const char *line = text;
    while (line) {
        const char *next = strstr(line, " | ");
        if (strlen(line) > 4 && strncasecmp(line + 4, kw, kl) == 0
            && (line[4 + kl] == '\0' || line[4 + kl] == ' '))
            return 1;
        line = next ? next + 3 : NULL;
    }
    return 0;
}

static void describe_first(SSL *ssl)
{
    snprintf(first_protocol, sizeof first_protocol, "%s", SSL_get_version(ssl));
    snprintf(first_cipher, sizeof first_cipher, "%s", SSL_get_cipher_name(ssl));
    int nid = SSL_get_negotiated_group(ssl);
    const char *g = nid > 0 ? SSL_group_to_name(ssl, nid) : NULL;
    snprintf(first_group, sizeof first_group, "%s", g ? g : "none");
    X509 *cert = SSL_get1_peer_certificate(ssl);
    EVP_PKEY *pk = cert ? X509_get0_pubkey(cert) : NULL;
    if (pk)
        snprintf(first_key, sizeof first_key, "%s-%d",
                 EVP_PKEY_get0_type_name(pk), EVP_PKEY_get_bits(pk));
    else
        snprintf(first_key, sizeof first_key, "none");
    X509_free(cert);
    SSL_SESSION *s = SSL_get0_session(ssl);
    first_tickets = s && SSL_SESSION_is_resumable(s);
}

/* One complete session.  *saved: the session to offer for resumption (with
 * -r), replaced by this session's.  Returns 0 on success. */
static int one_session(int worker, long n, SSL_SESSION **saved, int *resumed,
                       char *err, size_t errlen)
{
    struct conn c = { .fd = -1 };
    struct reply r;
    char cmd[512];
    char e[600];
    int rc = -1;

    *resumed = 0;
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    struct timeval tv = { .tv_sec = opt_timeout };
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (!opt_nagle) {
        /* Every command and the message are one write each, so this sends
         * no more packets; but without it the EHLO written right after the
         * TLS Finished waits for the server's (delayed) ACK of the Finished
         * whenever the server has nothing to send in between (e.g. no new
         * session ticket after a resumed handshake): a 40 ms stall caused
         * by the client. */
        int one = 1;
        setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (connect(c.fd, (struct sockaddr *)&server_addr, sizeof server_addr) < 0) {
        snprintf(err, errlen, "connect: %s", strerror(errno));
        goto out;
    }
    if (command(&c, NULL, 220, "banner", &r, err, errlen) < 0)
        goto out;
    snprintf(cmd, sizeof cmd, "EHLO %s\r\n", opt_helo);
    if (command(&c, cmd, 250, "EHLO", &r, err, errlen) < 0)
        goto out;
    if (!ehlo_has(r.text, "STARTTLS")) {
        snprintf(err, errlen, "STARTTLS not advertised: %.600s", r.text);
        goto out;
    }
    if (command(&c, "STARTTLS\r\n", 220, "STARTTLS", &r, err, errlen) < 0)
        goto out;
    if (c.off != c.len) {
        snprintf(err, errlen, "%zu bytes of plaintext after the STARTTLS reply",
                 c.len - c.off);
        goto out;
    }
    c.off = c.len = 0;

    c.ssl = SSL_new(ctx);
    if (!c.ssl || !SSL_set_fd(c.ssl, c.fd)) {
        ssl_errors(e, sizeof e);
        snprintf(err, errlen, "SSL_new: %s", e);
        goto out;
    }
    if (opt_sni)
        SSL_set_tlsext_host_name(c.ssl, opt_sni);
    if (opt_resume && *saved)
        SSL_set_session(c.ssl, *saved);
    int hr = SSL_connect(c.ssl);
    if (hr != 1) {
        ssl_fail(c.ssl, hr, e, sizeof e);
        snprintf(err, errlen, "TLS handshake: %s", e);
        goto out;
    }

    snprintf(cmd, sizeof cmd, "EHLO %s\r\n", opt_helo);
    if (command(&c, cmd, 250, "EHLO after STARTTLS", &r, err, errlen) < 0)
        goto out;
    if (ehlo_has(r.text, "STARTTLS")) {
        snprintf(err, errlen, "STARTTLS still advertised after TLS: %.600s", r.text);
        goto out;
    }
    snprintf(cmd, sizeof cmd, "MAIL FROM:<%s>\r\n", opt_from);
    if (command(&c, cmd, 250, "MAIL", &r, err, errlen) < 0)
        goto out;
    snprintf(cmd, sizeof cmd, "RCPT TO:<%s>\r\n", opt_rcpt);
    if (command(&c, cmd, 250, "RCPT", &r, err, errlen) < 0)
        goto out;
    if (command(&c, "DATA\r\n", 354, "DATA", &r, err, errlen) < 0)
        goto out;
    /* Message-ID first (unique), then the prebuilt rest, as one write. */
    {
        size_t hl;
        char *m = malloc(message_len + 128);
        if (!m) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        hl = (size_t)snprintf(m, 128, "Message-ID: <%d.%ld.%ld@client.bench.test>\r\n",
                              worker, n, (long)getpid());
        memcpy(m + hl, message, message_len);
        int wr = conn_write(&c, m, hl + message_len, e, sizeof e);
        free(m);
        if (wr < 0) {
            snprintf(err, errlen, "sending message: %s", e);
            goto out;
        }
    }
    if (command(&c, NULL, 250, "end of DATA", &r, err, errlen) < 0)
        goto out;
    if (command(&c, "QUIT\r\n", 221, "QUIT", &r, err, errlen) < 0)
        goto out;

    *resumed = SSL_session_reused(c.ssl);
    pthread_mutex_lock(&lock);
    if (!have_first) {
        describe_first(c.ssl);
        have_first = 1;
    } else if (strcmp(first_protocol, SSL_get_version(c.ssl)) != 0
               || strcmp(first_cipher, SSL_get_cipher_name(c.ssl)) != 0) {
        n_mismatched++;
    }
    pthread_mutex_unlock(&lock);
    if (opt_resume) {
        SSL_SESSION *s = SSL_get1_session(c.ssl);
        if (*saved)
            SSL_SESSION_free(*saved);
        *saved = s;
    }
    /* Our close_notify; the server's is not waited for (the connection is
     * closed right after, as MTAs commonly do after 221). */
    SSL_shutdown(c.ssl);
    rc = 0;
out:
    if (c.ssl) {
        if (rc != 0)
            ERR_clear_error();
        SSL_free(c.ssl);
    }
    close(c.fd);
    return rc;
}

struct worker_arg {
    int id;
    long count;
};

static void *worker_main(void *p)
{
    struct worker_arg *a = p;
    SSL_SESSION *saved = NULL;
    long done = 0, failed = 0, resumed = 0;
    char err[1024];

    pthread_barrier_wait(&start_barrier);
    for (long i = 0; i < a->count; i++) {
        int res;
        if (one_session(a->id, i, &saved, &res, err, sizeof err) == 0) {
            done++;
            resumed += res;
        } else {
            failed++;
            report_error(a->id, i, "%s", err);
            /* A failed session is not offered for resumption. */
            if (saved) {
                SSL_SESSION_free(saved);
                saved = NULL;
            }
        }
    }
    if (saved)
        SSL_SESSION_free(saved);
    pthread_mutex_lock(&lock);
    n_completed += done;
    n_failed += failed;
    n_resumed += resumed;
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void build_message(void)
{
    /* Headers, then body lines of 76 characters + CRLF up to opt_size
     * bytes of body (CRLFs included), then the terminating dot. */
    size_t cap = (size_t)opt_size + 1024;
    message = malloc(cap);
    if (!message) {
        perror("malloc");
        exit(2);
    }
    int hl = snprintf(message, cap,
                      "From: <%s>\r\nTo: <%s>\r\nSubject: bench/tls\r\n"
                      "Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n\r\n",
                      opt_from, opt_rcpt);
    size_t len = (size_t)hl;
    long left = opt_size;
    long ln = 0;
    while (left > 0) {
        char line[80];
        long chunk = left >= 78 ? 76 : (left > 2 ? left - 2 : 0);
        int k = snprintf(line, sizeof line, "%06ld ", ln++);
        memset(line + k, 'x', sizeof line - (size_t)k);
        memcpy(message + len, line, (size_t)chunk);
        len += (size_t)chunk;
        memcpy(message + len, "\r\n", 2);
        len += 2;
        left -= chunk + 2;
    }
    memcpy(message + len, ".\r\n", 3);
    len += 3;
    message_len = len;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: tls_client -p PORT [-H HOST] [-c WORKERS] [-n SESSIONS] "
            "[-l BODY_BYTES]\n"
            "       [-r] [-N] [-t TIMEOUT_S] [-V 1.2|1.3] [-f FROM] [-R RCPT] "
            "[-e EHLO_NAME] [-S SNI|-]\n"
            "  -n total sessions, split over the workers; -r resume TLS "
            "sessions per worker;\n  -N no TCP_NODELAY on the client "
            "socket\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int ch;
    while ((ch = getopt(argc, argv, "H:p:c:n:l:rNt:V:f:R:e:S:")) != -1) {
        switch (ch) {
        case 'H': opt_host = optarg; break;
        case 'p': opt_port = atoi(optarg); break;
        case 'c': opt_workers = atoi(optarg); break;
        case 'n': opt_count = atol(optarg); break;
        case 'l': opt_size = atol(optarg); break;
        case 'r': opt_resume = 1; break;
        case 'N': opt_nagle = 1; break;
        case 't': opt_timeout = atoi(optarg); break;
        case 'V':
            if (strcmp(optarg, "1.2") == 0)
                opt_max_version = TLS1_2_VERSION;
            else if (strcmp(optarg, "1.3") == 0)
                opt_max_version = TLS1_3_VERSION;
            else
                usage();
            break;
        case 'f': opt_from = optarg; break;
        case 'R': opt_rcpt = optarg; break;
        case 'e': opt_helo = optarg; break;
        case 'S': opt_sni = strcmp(optarg, "-") == 0 ? NULL : optarg; break;
        default: usage();
        }
    }
    if (optind != argc || opt_port <= 0 || opt_port > 65535 || opt_workers <= 0
        || opt_count <= 0 || opt_size < 0 || opt_timeout <= 0)
        usage();
    if (opt_workers > opt_count)
        opt_workers = (int)opt_count;

    memset(&server_addr, 0, sizeof server_addr);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((unsigned short)opt_port);
    if (inet_pton(AF_INET, opt_host, &server_addr.sin_addr) != 1) {
        fprintf(stderr, "tls_client: -H needs an IPv4 address\n");
        return 2;
    }

    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ERR_print_errors_fp(stderr);
        return 2;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (opt_max_version)
        SSL_CTX_set_max_proto_version(ctx, opt_max_version);
    /* Sessions are kept by hand (SSL_get1_session), not in a cache. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    build_message();

    pthread_t *th = calloc((size_t)opt_workers, sizeof *th);
    struct worker_arg *args = calloc((size_t)opt_workers, sizeof *args);
    if (!th || !args) {
        perror("calloc");
        return 2;
    }
    pthread_barrier_init(&start_barrier, NULL, (unsigned)opt_workers + 1);
    for (int i = 0; i < opt_workers; i++) {
        args[i].id = i;
        args[i].count = opt_count / opt_workers + (i < opt_count % opt_workers);
        int e = pthread_create(&th[i], NULL, worker_main, &args[i]);
        if (e) {
            fprintf(stderr, "tls_client: pthread_create: %s\n", strerror(e));
            return 2;
        }
    }
    struct rusage ru0, ru1;
    struct timespec t0, t1;
    pthread_barrier_wait(&start_barrier);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    getrusage(RUSAGE_SELF, &ru0);
    for (int i = 0; i < opt_workers; i++)
        pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    getrusage(RUSAGE_SELF, &ru1);

    double elapsed = (double)(t1.tv_sec - t0.tv_sec)
                     + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
#define TV(a, b) ((double)((b).tv_sec - (a).tv_sec) \
                  + (double)((b).tv_usec - (a).tv_usec) / 1e6)
    printf("completed=%ld failed=%ld resumed=%ld elapsed=%.6f cpu_user=%.3f "
           "cpu_sys=%.3f protocol=%s cipher=%s group=%s server_key=%s "
           "tickets=%d mismatched=%ld\n",
           n_completed, n_failed, n_resumed, elapsed,
           TV(ru0.ru_utime, ru1.ru_utime), TV(ru0.ru_stime, ru1.ru_stime),
           have_first ? first_protocol : "none", have_first ? first_cipher : "none",
           have_first ? first_group : "none", have_first ? first_key : "none",
           first_tickets, n_mismatched);
    fflush(stdout);
    SSL_CTX_free(ctx);
    free(message);
    free(th);
    free(args);
    return n_failed ? 1 : 0;
}
