/*
 * queue.c - `mailwarden queue`: look into and act on the running daemon's
 * queue over its control socket (daemon/control.h).
 *
 *   mailwarden queue list [--json]        every message, each recipient's state
 *   mailwarden queue show ID [--json]
 *   mailwarden queue flush [DOMAIN]       try waiting mail (for DOMAIN) now
 *   mailwarden queue retry ID
 *   mailwarden queue hold ID | release ID
 *   mailwarden queue remove [--silent] ID a bounce goes to the sender unless --silent
 *   options: [-c FILE] [--data-dir DIR]   which daemon: <data_dir>/control.sock
 *
 * Exit status: 0; EX_UNAVAILABLE when no daemon answers (or we may not
 * talk to it); EX_DATAERR when the daemon refuses the request (no such
 * message, ...); EX_USAGE for a bad command line.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/buf.h"

static void usage(FILE *f)
{
    fputs("usage: mailwarden queue list|show ID [--json] [-c FILE] [--data-dir DIR]\n"
          "       mailwarden queue flush [DOMAIN] | retry ID | hold ID | release ID\n"
          "       mailwarden queue remove [--silent] ID\n", f);
}

static int ask(const char *data_dir, const char *req, struct buf *out)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    int n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/control.sock", data_dir);
    if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
        fprintf(stderr, "mailwarden queue: %s: path too long for a socket\n", data_dir);
        return EX_USAGE;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        fprintf(stderr, "mailwarden queue: %s: %s (is the daemon running, and may you talk to it?)\n",
                sun.sun_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return EX_UNAVAILABLE;
    }
    struct timeval tv = { .tv_sec = 60, .tv_usec = 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t len = strlen(req);
    if (write(fd, req, len) != (ssize_t)len || write(fd, "\n", 1) != 1) {
        fprintf(stderr, "mailwarden queue: %s: %s\n", sun.sun_path, strerror(errno));
        close(fd);
        return EX_UNAVAILABLE;
    }
    char chunk[65536];
    ssize_t r;
    while ((r = read(fd, chunk, sizeof(chunk))) > 0)
        buf_append(out, chunk, (size_t)r);
    close(fd);
    if (buf_size(out) == 0) {
        fprintf(stderr, "mailwarden queue: %s: the daemon closed without an answer\n", sun.sun_path);
        return EX_UNAVAILABLE;
    }
    return EX_OK;
}

static void when(char *s, size_t n, json_int_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(s, n, "%Y-%m-%d %H:%M:%S", &tm);
}

static void print_message(json_t *m)
{
    char at[32];
    when(at, sizeof(at), json_integer_value(json_object_get(m, "arrival")));
    const char *from = json_string_value(json_object_get(m, "from"));
    printf("%s  %s  %8lld  <%s>%s\n", json_string_value(json_object_get(m, "id")), at,
           (long long)json_integer_value(json_object_get(m, "size")), from ? from : "",
           json_is_true(json_object_get(m, "held")) ? "  (held)" : "");
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(m, "recipients"), i, r) {
        printf("    %-10s %s", json_string_value(json_object_get(r, "state")),
               json_string_value(json_object_get(r, "address")));
        json_int_t att = json_integer_value(json_object_get(r, "attempts"));
        if (att)
            printf("  attempts=%lld", (long long)att);
        json_t *next = json_object_get(r, "next_attempt");
        if (next) {
            char nx[32];
            when(nx, sizeof(nx), json_integer_value(next));
            printf("  next=%s", nx);
        }
        putchar('\n');
        const char *reply = json_string_value(json_object_get(r, "last_reply"));
        if (reply) {
            json_t *code = json_object_get(r, "code");
            const char *relay = json_string_value(json_object_get(r, "relay"));
            printf("               ");
            if (relay)
                printf("%s said: ", relay);
            if (code)
                printf("%lld ", (long long)json_integer_value(code));
            printf("%s\n", reply);
        }
    }
}

int cli_queue(int argc, char **argv)
{
    const char *conf_path = NULL, *data_dir = NULL;
    bool json = false, silent = false;
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "data-dir", required_argument, NULL, 'd' },
        { "json", no_argument, NULL, 'j' },
        { "silent", no_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int o;
    while ((o = getopt_long(argc, argv, "c:d:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': conf_path = optarg; break;
        case 'd': data_dir = optarg; break;
        case 'j': json = true; break;
        case 's': silent = true; break;
        case 'h': usage(stdout); return EX_OK;
        default: usage(stderr); return EX_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EX_USAGE;
    }
    const char *cmd = argv[optind];
    const char *arg = optind + 1 < argc ? argv[optind + 1] : NULL;
    bool needs_id = strcmp(cmd, "show") == 0 || strcmp(cmd, "retry") == 0 ||
                    strcmp(cmd, "hold") == 0 || strcmp(cmd, "release") == 0 ||
                    strcmp(cmd, "remove") == 0;
    bool known = needs_id || strcmp(cmd, "list") == 0 || strcmp(cmd, "flush") == 0;
    if (!known || (needs_id && arg == NULL) || optind + 2 < argc ||
        (strcmp(cmd, "list") == 0 && arg != NULL)) {
        usage(stderr);
        return EX_USAGE;
    }
    for (const char *p = arg; p && *p; p++)
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            fprintf(stderr, "mailwarden queue: bad argument: %s\n", arg);
            return EX_USAGE;
        }
    struct mw_config *conf = NULL;
    if (data_dir == NULL) {
        struct buf err = { 0 };
        if (conf_load(conf_path, &conf, &err) < 0) {
            fputs(buf_ptr(&err), stderr);
            buf_free(&err);
            return EX_CONFIG;
        }
        buf_free(&err);
        data_dir = conf->data_dir;
    }
    struct buf req = { 0 };
    buf_append_str(&req, cmd);
    if (arg)
        buf_printf(&req, " %s", arg);
    if (silent && strcmp(cmd, "remove") == 0)
        buf_append_str(&req, " silent");
    struct buf out = { 0 };
    int rc = ask(data_dir, buf_ptr(&req), &out);
    buf_free(&req);
    if (rc != EX_OK) {
        buf_free(&out);
        conf_unref(conf);
        return rc;
    }
    json_error_t jerr;
    json_t *top = json_loadb(buf_ptr(&out), buf_size(&out), 0, &jerr);
    if (top == NULL || !json_is_object(top)) {
        fprintf(stderr, "mailwarden queue: the daemon's answer is not JSON: %s\n", jerr.text);
        json_decref(top);
        buf_free(&out);
        conf_unref(conf);
        return EX_PROTOCOL;
    }
    if (!json_is_true(json_object_get(top, "ok"))) {
        const char *e = json_string_value(json_object_get(top, "error"));
        fprintf(stderr, "mailwarden queue %s: %s\n", cmd, e ? e : "refused");
        rc = EX_DATAERR;
    } else if (json) {
        fwrite(buf_ptr(&out), 1, buf_size(&out), stdout);
    } else if (strcmp(cmd, "list") == 0) {
        json_t *msgs = json_object_get(top, "messages");
        size_t i;
        json_t *m;
        json_array_foreach(msgs, i, m) print_message(m);
        printf("%zu message%s in the queue\n", json_array_size(msgs),
               json_array_size(msgs) == 1 ? "" : "s");
    } else if (strcmp(cmd, "show") == 0) {
        print_message(json_object_get(top, "message"));
    } else {
        printf("%s: %lld message%s\n", cmd,
               (long long)json_integer_value(json_object_get(top, "affected")),
               json_integer_value(json_object_get(top, "affected")) == 1 ? "" : "s");
    }
    json_decref(top);
    buf_free(&out);
    conf_unref(conf);
    return rc;
}
