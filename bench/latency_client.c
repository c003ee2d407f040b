/*
 * bench/latency_client.c - open-loop SMTP load at a fixed rate, measuring
 * for every message the time from sending the end of its data (the final
 * ".\r\n") to receiving the server's reply to it; for bench/latency.
 *
 * Message i starts at t0 + i / RATE whether or not earlier ones have
 * finished (open loop: a slow server does not slow the offered load down,
 * so queueing in the server shows up in the figures instead of being
 * hidden).  Each message is one session on a new connection, as
 * smtp-source sends by default: connect, 220, EHLO, MAIL, RCPT, DATA, 354,
 * the message (headers, body, ".\r\n" in one write), 250, QUIT, 221,
 * close.  One thread, non-blocking sockets, epoll, a timerfd for the
 * schedule; at most -c sessions are open at a time (a start that would
 * exceed it waits, and the wait shows as start lag).
 *
 * Output on stdout, one line of key=value pairs:
 *   completed= failed= elapsed= offered_rate= achieved_rate= p50_ms=
 *   p90_ms= p99_ms= p999_ms= max_ms= mean_ms= session_p99_ms=
 *   lag_p99_ms= lag_max_ms= max_open=
 * (pNN_ms: percentiles of the end-of-data to reply time of the completed
 * messages, nearest rank; session_p99_ms: of the whole session from the
 * scheduled start; lag: how late sessions started against the schedule).
 * With -o FILE, one line per completed message: "start_us dot_us
 * session_us lag_us" (start relative to t0, the rest durations).
 * The first few errors go to stderr.  Exit status: 0 if every message was
 * accepted, 1 if any failed, 2 on a usage or set-up error.
 *
 * Build: cc -O2 bench/latency_client.c -o latency_client -lm
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define CLIENT_NAME "latency_client"
#define CLIENT_ITEM "message"
#include "client_common.h"

#define REPLY_MAX 4096
#define TIMER_TAG UINT64_MAX

enum state { ST_FREE, ST_CONNECTING, ST_GREETING, ST_EHLO, ST_MAIL, ST_RCPT,
             ST_DATA, ST_SENDING, ST_DOT, ST_QUIT };

static const char *state_name[] = { "free", "connect", "greeting", "EHLO", "MAIL",
                                    "RCPT", "DATA", "sending", "end of data", "QUIT" };

struct session {
    int fd;
    enum state st;
    long idx;           /* message number */
    double sched;       /* scheduled start */
    double started;     /* actual start */
    double t_dot;       /* end of data written */
    size_t sent;        /* of the message, while ST_SENDING */
    size_t len;
    char buf[REPLY_MAX];
};

static const char *opt_host = "127.0.0.1";
static int opt_port;
static double opt_rate = 100;
static long opt_count = 1000;
static long opt_size = 1024;
static int opt_maxopen = 2000;
static int opt_timeout = 60;
static const char *opt_out;
static const char *opt_from = "bench@bench.test";
static const char *opt_rcpt = "user@bench.test";
static const char *opt_helo = "latency.bench.test";

static char *message;
static size_t message_len;
static char cmd_ehlo[300], cmd_mail[300], cmd_rcpt[300];
static struct sockaddr_in server_addr;
static int ep;

/* Per message results (seconds); dot < 0: not completed. */
static double *res_dot, *res_session, *res_lag, *res_start;


static void build_message(void)
{
    size_t cap = (size_t)opt_size + 1024;
    message = malloc(cap);
    if (!message) {
        perror("malloc");
        exit(2);
    }
    int hl = snprintf(message, cap,
                      "From: <%s>\r\nTo: <%s>\r\nSubject: bench/latency\r\n"
                      "Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n\r\n",
                      opt_from, opt_rcpt);
    size_t len = (size_t)hl;
    long left = opt_size, ln = 0;
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
    message_len = len + 3;
}

/* 1: a complete reply is in s->buf (code in *code), 0: need more, -1: bad. */
static int parse_reply(struct session *s, int *code)
{
    size_t off = 0;
    for (;;) {
        char *nl = memchr(s->buf + off, '\n', s->len - off);
        if (nl == NULL)
            return s->len == sizeof s->buf ? -1 : 0;
        char *line = s->buf + off;
        size_t llen = (size_t)(nl - line);
        if (llen < 3 || line[0] < '2' || line[0] > '5')
            return -1;
        *code = atoi(line);
        off += llen + 1;
        if (llen == 3 || line[3] == ' ' || line[3] == '\r')
            return 1;
        if (line[3] != '-')
            return -1;
    }
}

static void finish(struct session *s, int ok, int *open)
{
    if (s->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
    }
    if (!ok)
        res_dot[s->idx] = -1;
    s->fd = -1;
    s->st = ST_FREE;
    (*open)--;
}

static int start_session(struct session *s, long idx, double sched, double t0)
{
    s->idx = idx;
    s->sched = sched;
    s->started = now();
    s->len = 0;
    s->sent = 0;
    res_lag[idx] = s->started - sched;
    res_start[idx] = sched - t0;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        report_error(idx, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(s->fd, (struct sockaddr *)&server_addr, sizeof server_addr) < 0 &&
        errno != EINPROGRESS) {
        report_error(idx, "connect: %s", strerror(errno));
        close(s->fd);
        s->fd = -1;
        return -1;
    }
    s->st = ST_CONNECTING;
    struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN, .data.ptr = s };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
        report_error(idx, "epoll_ctl: %s", strerror(errno));
        close(s->fd);
        s->fd = -1;
        return -1;
    }
    return 0;
}

static int send_cmd(struct session *s, const char *cmd)
{
    size_t n = strlen(cmd);
    ssize_t w = send(s->fd, cmd, n, MSG_NOSIGNAL);
    if (w != (ssize_t)n) {
        report_error(s->idx, "sending %.4s: %s", cmd, w < 0 ? strerror(errno) : "short write");
        return -1;
    }
    return 0;
}

/* Write (more of) the message; 1 when all of it is out. */
static int send_message(struct session *s)
{
    while (s->sent < message_len) {
        ssize_t w = send(s->fd, message + s->sent, message_len - s->sent, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            report_error(s->idx, "sending the message: %s", strerror(errno));
            return -1;
        }
        s->sent += (size_t)w;
    }
    return 1;
}

static void want_events(struct session *s, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = s };
    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
}

/* Advance a session on an event: 1 done (ok), -1 failed, 0 going on. */
static int step(struct session *s, uint32_t events)
{
    if (s->st == ST_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            report_error(s->idx, "connect: %s", strerror(err));
            return -1;
        }
        s->st = ST_GREETING;
        want_events(s, EPOLLIN);
        if (!(events & EPOLLIN))
            return 0;
    }
    if (s->st == ST_SENDING) {
        int r = send_message(s);
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        s->t_dot = now();
        s->st = ST_DOT;
        want_events(s, EPOLLIN);
        return 0;
    }
    ssize_t n = recv(s->fd, s->buf + s->len, sizeof s->buf - s->len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        report_error(s->idx, "%s while waiting for the %s reply",
                     n == 0 ? "connection closed by server" : strerror(errno),
                     state_name[s->st]);
        return -1;
    }
    s->len += (size_t)n;
    int code = 0, r = parse_reply(s, &code);
    if (r == 0)
        return 0;
    if (r < 0) {
        report_error(s->idx, "malformed reply: %.100s", s->buf);
        return -1;
    }
    double t = now();
    static const int expect[] = { [ST_GREETING] = 220, [ST_EHLO] = 250, [ST_MAIL] = 250,
                                  [ST_RCPT] = 250, [ST_DATA] = 354, [ST_DOT] = 250,
                                  [ST_QUIT] = 221 };
    if (code != expect[s->st]) {
        s->buf[s->len < sizeof s->buf ? s->len : sizeof s->buf - 1] = '\0';
        report_error(s->idx, "%s: expected %d, got %.200s", state_name[s->st],
                     expect[s->st], s->buf);
        return -1;
    }
    s->len = 0;
    switch (s->st) {
    case ST_GREETING:
        s->st = ST_EHLO;
        return send_cmd(s, cmd_ehlo);
    case ST_EHLO:
        s->st = ST_MAIL;
        return send_cmd(s, cmd_mail);
    case ST_MAIL:
        s->st = ST_RCPT;
        return send_cmd(s, cmd_rcpt);
    case ST_RCPT:
        s->st = ST_DATA;
        return send_cmd(s, "DATA\r\n");
    case ST_DATA:
        s->st = ST_SENDING;
        r = send_message(s);
        if (r < 0)
            return -1;
        if (r == 0) {
            want_events(s, EPOLLOUT);
            return 0;
        }
        s->t_dot = now();
        s->st = ST_DOT;
        return 0;
    case ST_DOT:
        res_dot[s->idx] = t - s->t_dot;
        res_session[s->idx] = t - s->sched;
        s->st = ST_QUIT;
        return send_cmd(s, "QUIT\r\n");
    case ST_QUIT:
        return 1;
    default:
        return -1;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *v, long n, double p)
{
    if (n == 0)
        return 0;
    long k = (long)(p / 100.0 * (double)n + 0.999999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

static void usage(void)
{
    fprintf(stderr,
            "usage: latency_client -p PORT -r RATE -n COUNT [-H HOST] [-l BODY_BYTES]\n"
            "       [-c MAX_OPEN] [-t TIMEOUT_S] [-o FILE] [-f FROM] [-R RCPT] "
            "[-e EHLO_NAME]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int ch;
    while ((ch = getopt(argc, argv, "H:p:r:n:l:c:t:o:f:R:e:")) != -1) {
        switch (ch) {
        case 'H': opt_host = optarg; break;
        case 'p': opt_port = atoi(optarg); break;
        case 'r': opt_rate = atof(optarg); break;
        case 'n': opt_count = atol(optarg); break;
        case 'l': opt_size = atol(optarg); break;
        case 'c': opt_maxopen = atoi(optarg); break;
        case 't': opt_timeout = atoi(optarg); break;
        case 'o': opt_out = optarg; break;
        case 'f': opt_from = optarg; break;
        case 'R': opt_rcpt = optarg; break;
        case 'e': opt_helo = optarg; break;
        default: usage();
        }
    }
    if (opt_port <= 0 || opt_rate <= 0 || opt_count <= 0 || opt_size < 0 ||
        opt_maxopen <= 0 || opt_timeout <= 0)
        usage();
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)opt_port);
    if (inet_pton(AF_INET, opt_host, &server_addr.sin_addr) != 1) {
        fprintf(stderr, "latency_client: bad address %s\n", opt_host);
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)opt_maxopen + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)opt_maxopen + 64 ? rl.rlim_max
                                                             : (rlim_t)opt_maxopen + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    build_message();
    snprintf(cmd_ehlo, sizeof cmd_ehlo, "EHLO %s\r\n", opt_helo);
    snprintf(cmd_mail, sizeof cmd_mail, "MAIL FROM:<%s>\r\n", opt_from);
    snprintf(cmd_rcpt, sizeof cmd_rcpt, "RCPT TO:<%s>\r\n", opt_rcpt);

    res_dot = calloc((size_t)opt_count, sizeof(double));
    res_session = calloc((size_t)opt_count, sizeof(double));
    res_lag = calloc((size_t)opt_count, sizeof(double));
    res_start = calloc((size_t)opt_count, sizeof(double));
    struct session *slots = calloc((size_t)opt_maxopen, sizeof *slots);
    ep = epoll_create1(EPOLL_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!res_dot || !res_session || !res_lag || !res_start || !slots || ep < 0 || tfd < 0) {
        perror("latency_client: set-up");
        return 2;
    }
    for (int k = 0; k < opt_maxopen; k++)
        slots[k].fd = -1;
    for (long i = 0; i < opt_count; i++)
        res_dot[i] = -1;
    struct epoll_event tev = { .events = EPOLLIN, .data.u64 = TIMER_TAG };
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

    const double interval = 1.0 / opt_rate;
    const double t0 = now() + 0.05;
    long next = 0, completed = 0, failed = 0;
    int open = 0, max_open = 0, free_hint = 0;
    double last_scan = t0;
    struct epoll_event evs[256];
    while (completed + failed < opt_count) {
        /* Start every message whose time has come, as far as slots allow. */
        double t = now();
        while (next < opt_count && t0 + (double)next * interval <= t && open < opt_maxopen) {
            int k = free_hint;
            while (slots[k].st != ST_FREE)
                k = (k + 1) % opt_maxopen;
            free_hint = (k + 1) % opt_maxopen;
            open++;
            if (start_session(&slots[k], next, t0 + (double)next * interval, t0) < 0) {
                slots[k].st = ST_FREE;
                open--;
                failed++;
            }
            next++;
            if (open > max_open)
                max_open = open;
        }
        if (next < opt_count && open < opt_maxopen) {
            double at = t0 + (double)next * interval;
            struct itimerspec its = { 0 };
            its.it_value.tv_sec = (time_t)at;
            its.it_value.tv_nsec = (long)((at - (double)(time_t)at) * 1e9);
            if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
                its.it_value.tv_nsec = 1;
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        int n = epoll_wait(ep, evs, 256, 100);
        if (n < 0 && errno != EINTR) {
            perror("latency_client: epoll_wait");
            return 2;
        }
        for (int k = 0; k < n; k++) {
            if (evs[k].data.u64 == TIMER_TAG) {
                uint64_t x;
                while (read(tfd, &x, sizeof x) > 0)
                    ;
                continue;
            }
            struct session *s = evs[k].data.ptr;
            if (s->st == ST_FREE)
                continue;
            int r = step(s, evs[k].events);
            if (r > 0) {
                completed++;
                finish(s, 1, &open);
            } else if (r < 0) {
                failed++;
                finish(s, 0, &open);
            }
        }
        t = now();
        if (t - last_scan >= 0.5) {
            last_scan = t;
            for (int k = 0; k < opt_maxopen; k++) {
                struct session *s = &slots[k];
                if (s->st != ST_FREE && t - s->started > opt_timeout) {
                    report_error(s->idx, "timeout (%ds) in state %s", opt_timeout,
                                 state_name[s->st]);
                    failed++;
                    finish(s, 0, &open);
                }
            }
        }
    }
    double elapsed = now() - t0;

    double *dot = malloc(sizeof(double) * (size_t)opt_count);
    double *ses = malloc(sizeof(double) * (size_t)opt_count);
    double *lag = malloc(sizeof(double) * (size_t)opt_count);
    long m = 0;
    double sum = 0;
    FILE *out = opt_out ? fopen(opt_out, "w") : NULL;
    if (opt_out && !out)
        perror(opt_out);
    for (long i = 0; i < opt_count; i++) {
        if (res_dot[i] < 0)
            continue;
        dot[m] = res_dot[i];
        ses[m] = res_session[i];
        lag[m] = res_lag[i];
        sum += res_dot[i];
        if (out)
            fprintf(out, "%.0f %.0f %.0f %.0f\n", res_start[i] * 1e6, res_dot[i] * 1e6,
                    res_session[i] * 1e6, res_lag[i] * 1e6);
        m++;
    }
    if (out)
        fclose(out);
    qsort(dot, (size_t)m, sizeof(double), cmp_double);
    qsort(ses, (size_t)m, sizeof(double), cmp_double);
    qsort(lag, (size_t)m, sizeof(double), cmp_double);
    printf("completed=%ld failed=%ld elapsed=%.3f offered_rate=%.1f achieved_rate=%.1f "
           "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f mean_ms=%.3f "
           "session_p99_ms=%.3f lag_p99_ms=%.3f lag_max_ms=%.3f max_open=%d\n",
           completed, failed, elapsed, opt_rate, elapsed > 0 ? (double)completed / elapsed : 0,
           pct(dot, m, 50) * 1e3, pct(dot, m, 90) * 1e3, pct(dot, m, 99) * 1e3,
           pct(dot, m, 99.9) * 1e3, m ? dot[m - 1] * 1e3 : 0, m ? sum / (double)m * 1e3 : 0,
           pct(ses, m, 99) * 1e3, pct(lag, m, 99) * 1e3, m ? lag[m - 1] * 1e3 : 0, max_open);
    return failed ? 1 : 0;
}
