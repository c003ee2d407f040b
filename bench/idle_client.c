/*
 * bench/idle_client.c - open N idle SMTP sessions and hold them, for
 * bench/idle.
 *
 * One thread, non-blocking sockets and epoll.  Each connection: connect,
 * read the 220 greeting, send EHLO, read the whole 250 reply; it is then
 * idle and stays open.  At most -c connections are between connect and the
 * end of the EHLO reply at any time, so the server's listen queue is not
 * flooded.  A connection with an unexpected reply, an error or a timeout
 * counts as failed and is not retried.
 *
 * When every connection is idle or failed, one line goes to stdout:
 *   ready established=E failed=F elapsed=SECONDS
 * The client then holds the connections until its standard input reaches
 * end of file (or a line arrives on it), watching them meanwhile: one the
 * server closes counts as dropped.  At the end one more line:
 *   done established=E dropped=D
 * and every connection is closed with a reset (SO_LINGER 0), so that no
 * TIME_WAIT state is left on either side.
 *
 * RLIMIT_NOFILE is raised to what N connections need (root may raise the
 * hard limit).  The first few errors go to stderr.  Exit status: 0 if all
 * N connections became idle and none was dropped, 1 otherwise, 2 on a
 * usage or set-up error.
 *
 * Build: cc -O2 bench/idle_client.c -o idle_client
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLIENT_NAME "idle_client"
#define CLIENT_ITEM "connection"
#include "client_common.h"

#define REPLY_MAX 4096

enum state { ST_CONNECTING, ST_GREETING, ST_EHLO, ST_IDLE, ST_DONE };

struct conn {
    int fd;
    enum state st;
    double started;
    size_t len;
    char buf[REPLY_MAX];
};

static const char *opt_host = "127.0.0.1";
static int opt_port;
static long opt_count = 100;
static int opt_concurrent = 50;
static int opt_timeout = 60;
static const char *opt_helo = "idle.bench.test";


static void raise_nofile(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if ((long)rl.rlim_cur >= need)
        return;
    if ((long)rl.rlim_max < need) {
        struct rlimit hard = { (rlim_t)need, (rlim_t)need };
        if (setrlimit(RLIMIT_NOFILE, &hard) == 0)
            return;
        need = (long)rl.rlim_max;
    }
    rl.rlim_cur = (rlim_t)need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        fprintf(stderr, "idle_client: setrlimit(NOFILE, %ld): %s\n", need,
                strerror(errno));
}

/* 1: a complete reply is in c->buf (its code in *code), 0: need more,
 * -1: malformed. */
static int parse_reply(struct conn *c, int *code)
{
    size_t off = 0;
    for (;;) {
        char *nl = memchr(c->buf + off, '\n', c->len - off);
        if (nl == NULL)
            return c->len == sizeof c->buf ? -1 : 0;
        char *line = c->buf + off;
        size_t llen = (size_t)(nl - line);
        if (llen < 3 || line[0] < '2' || line[0] > '5')
            return -1;
        *code = atoi(line);
        off += llen + 1;
        if (llen == 3 || (llen > 3 && line[3] == ' ') ||
            (llen == 4 && line[3] == '\r'))
            return 1;
        if (line[3] != '-')
            return -1;
    }
}

static void close_reset(int fd)
{
    struct linger lg = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static int start_connect(struct conn *c, int ep, long i,
                         const struct sockaddr_in *sa)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        report_error(i, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->st = ST_CONNECTING;
    c->len = 0;
    c->started = now();
    if (connect(c->fd, (const struct sockaddr *)sa, sizeof *sa) < 0 &&
        errno != EINPROGRESS) {
        report_error(i, "connect: %s", strerror(errno));
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN, .data.u64 = (uint64_t)i };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        report_error(i, "epoll_ctl: %s", strerror(errno));
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

/* Advance connection i on an event.  Returns 1 when it became idle, -1
 * when it failed, 0 otherwise. */
static int step(struct conn *c, int ep, long i, uint32_t events)
{
    if (c->st == ST_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            report_error(i, "connect: %s", strerror(err));
            return -1;
        }
        c->st = ST_GREETING;
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)i };
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        if (!(events & EPOLLIN))
            return 0;
    }
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        report_error(i, "%s while %s", n == 0 ? "closed by server" : strerror(errno),
                     c->st == ST_GREETING ? "waiting for the greeting"
                                          : "waiting for the EHLO reply");
        return -1;
    }
    c->len += (size_t)n;
    int code = 0;
    int r = parse_reply(c, &code);
    if (r == 0)
        return 0;
    if (r < 0) {
        report_error(i, "malformed reply: %.80s", c->buf);
        return -1;
    }
    if (c->st == ST_GREETING) {
        if (code != 220) {
            report_error(i, "greeting: %.200s", c->buf);
            return -1;
        }
        c->len = 0;
        char cmd[300];
        int k = snprintf(cmd, sizeof cmd, "EHLO %s\r\n", opt_helo);
        if (send(c->fd, cmd, (size_t)k, MSG_NOSIGNAL) != k) {
            report_error(i, "sending EHLO: %s", strerror(errno));
            return -1;
        }
        c->st = ST_EHLO;
        return 0;
    }
    if (code != 250) {
        report_error(i, "EHLO reply: %.200s", c->buf);
        return -1;
    }
    c->len = 0;
    c->st = ST_IDLE;
    return 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: idle_client -p PORT [-H HOST] [-n CONNECTIONS] "
            "[-c CONCURRENT_OPENS] [-t TIMEOUT_S] [-e EHLO_NAME]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int ch;
    while ((ch = getopt(argc, argv, "H:p:n:c:t:e:")) != -1) {
        switch (ch) {
        case 'H': opt_host = optarg; break;
        case 'p': opt_port = atoi(optarg); break;
        case 'n': opt_count = atol(optarg); break;
        case 'c': opt_concurrent = atoi(optarg); break;
        case 't': opt_timeout = atoi(optarg); break;
        case 'e': opt_helo = optarg; break;
        default: usage();
        }
    }
    if (opt_port <= 0 || opt_count <= 0 || opt_concurrent <= 0 || opt_timeout <= 0)
        usage();

    raise_nofile(opt_count + 64);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)opt_port) };
    if (inet_pton(AF_INET, opt_host, &sa.sin_addr) != 1) {
        fprintf(stderr, "idle_client: bad address %s\n", opt_host);
        return 2;
    }
    struct conn *conns = calloc((size_t)opt_count, sizeof *conns);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (conns == NULL || ep < 0) {
        perror("idle_client: set-up");
        return 2;
    }
    for (long i = 0; i < opt_count; i++)
        conns[i].fd = -1;

    double t0 = now(), last_scan = t0;
    long next = 0, opening = 0, idle = 0, failed = 0;
    struct epoll_event evs[256];
    while (idle + failed < opt_count) {
        while (next < opt_count && opening < opt_concurrent) {
            if (start_connect(&conns[next], ep, next, &sa) < 0) {
                conns[next].st = ST_DONE;
                failed++;
            } else {
                opening++;
            }
            next++;
        }
        int n = epoll_wait(ep, evs, 256, 200);
        if (n < 0 && errno != EINTR) {
            perror("idle_client: epoll_wait");
            return 2;
        }
        for (int k = 0; k < n; k++) {
            long i = (long)evs[k].data.u64;
            struct conn *c = &conns[i];
            if (c->st == ST_IDLE || c->st == ST_DONE)
                continue;
            int r = step(c, ep, i, evs[k].events);
            if (r > 0) {
                idle++;
                opening--;
            } else if (r < 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close_reset(c->fd);
                c->fd = -1;
                c->st = ST_DONE;
                failed++;
                opening--;
            }
        }
        double t = now();
        if (t - last_scan < 1.0)
            continue;
        last_scan = t;
        for (long i = 0; i < next; i++) {
            struct conn *c = &conns[i];
            if (c->st < ST_IDLE && t - c->started > opt_timeout) {
                report_error(i, "timeout (%ds) in state %d", opt_timeout, c->st);
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close_reset(c->fd);
                c->fd = -1;
                c->st = ST_DONE;
                failed++;
                opening--;
            }
        }
    }
    printf("ready established=%ld failed=%ld elapsed=%.3f\n", idle, failed, now() - t0);
    fflush(stdout);

    /* Hold: watch stdin and the idle connections (readable = closed by the
     * server, or an unexpected reply such as a 421 before closing). */
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)-1 };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev) < 0)
        fprintf(stderr, "idle_client: cannot watch stdin (%s): holding until "
                "killed\n", strerror(errno));
    long dropped = 0;
    int holding = 1;
    while (holding) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno != EINTR) {
            perror("idle_client: epoll_wait");
            break;
        }
        for (int k = 0; k < n; k++) {
            if (evs[k].data.u64 == (uint64_t)-1) {
                holding = 0;
                continue;
            }
            long i = (long)evs[k].data.u64;
            struct conn *c = &conns[i];
            if (c->st != ST_IDLE)
                continue;
            char tmp[512];
            ssize_t r = recv(c->fd, tmp, sizeof tmp - 1, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r > 0) {
                tmp[r] = '\0';
                report_error(i, "unexpected while idle: %.200s", tmp);
                continue;
            }
            report_error(i, "dropped by the server while idle");
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->fd = -1;
            c->st = ST_DONE;
            dropped++;
        }
    }
    printf("done established=%ld dropped=%ld\n", idle, dropped);
    fflush(stdout);
    for (long i = 0; i < opt_count; i++)
        if (conns[i].fd >= 0)
            close_reset(conns[i].fd);
    free(conns);
    return idle == opt_count && dropped == 0 ? 0 : 1;
}
