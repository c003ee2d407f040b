/*
 * control.c - the control socket; see control.h.
 */
#include "daemon/control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include "core/id.h"
#include "core/log.h"
#include "core/worker.h"
#include "core/xmalloc.h"
#include "queue/queue.h"
#include "queue/scheduler.h"

#define REQUEST_MAX 1024
#define CONTROL_TIMEOUT 30

struct client;

struct control {
    struct control_ctx ctx;
    struct evconnlistener *l;
    char *path;
    struct client *clients;
};

struct client {
    struct client *prev, *next;
    struct control *ctl;
    struct bufferevent *bev;
    bool busy;          /* a pool job holds it */
    bool dead;          /* the peer went while the job ran */
};

struct list_job {
    struct client *cl;
    struct sched_entry *e;
    size_t n;
    bool one;           /* show: the first entry only */
    char *out;          /* the JSON answer */
};

static void client_free(struct client *cl)
{
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        cl->ctl->clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    if (cl->bev)
        bufferevent_free(cl->bev);
    xfree(cl);
}

static void client_event(struct bufferevent *bev, short what, void *arg);

/* After the answer: whatever else the client sends is read and dropped,
 * so that closing never resets a connection with the answer in it. */
static void discard(struct bufferevent *bev, void *arg)
{
    (void)arg;
    evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

static void write_done(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        shutdown(bufferevent_getfd(bev), SHUT_WR);   /* EOF to the client; it closes */
}

static void send_answer(struct client *cl, const char *s)
{
    bufferevent_write(cl->bev, s, strlen(s));
    bufferevent_write(cl->bev, "\n", 1);
    bufferevent_setcb(cl->bev, discard, write_done, client_event, cl);
    bufferevent_enable(cl->bev, EV_READ);
}

/* Send the answer; the connection ends when the client has read it. */
static void answer(struct client *cl, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    send_answer(cl, s);
    free(s);
}

static void answer_error(struct client *cl, const char *why)
{
    answer(cl, json_pack("{s:b, s:s}", "ok", 0, "error", why));
}

static const char *state_name(enum queue_rcpt_state s)
{
    switch (s) {
    case QUEUE_RCPT_DELIVERED:
        return "delivered";
    case QUEUE_RCPT_FAILED:
        return "failed";
    case QUEUE_RCPT_DEFERRED:
        return "deferred";
    default:
        return "pending";
    }
}

static json_t *message_json(const struct queue_msg *m, const struct sched_entry *e)
{
    json_t *rcpts = json_array();
    for (size_t i = 0; i < m->nrcpt; i++) {
        const struct queue_rcpt *r = &m->rs[i];
        json_t *o = json_pack("{s:s, s:s, s:i}", "address", m->rcpts[i], "state",
                              state_name(r->state), "attempts", (json_int_t)r->attempts);
        if (r->state == QUEUE_RCPT_DEFERRED)
            json_object_set_new(o, "next_attempt", json_integer((json_int_t)r->next));
        if (r->code)
            json_object_set_new(o, "code", json_integer(r->code));
        if (r->enhanced[0])
            json_object_set_new(o, "dsn", json_string(r->enhanced));
        if (r->mta)
            json_object_set_new(o, "relay", json_string(r->mta));
        if (r->reply)
            json_object_set_new(o, "last_reply", json_string(r->reply));
        json_array_append_new(rcpts, o);
    }
    json_t *o = json_pack("{s:s, s:i, s:s, s:i, s:b, s:b}", "id", m->ref.id, "arrival",
                          (json_int_t)m->arrival, "from", m->from, "size",
                          (json_int_t)m->body_len, "held", e->held, "active", e->active);
    if (e->next_attempt)
        json_object_set_new(o, "next_attempt", json_integer((json_int_t)e->next_attempt));
    json_object_set_new(o, "recipients", rcpts);
    return o;
}

/* Pool: read every listed record. A string that is not UTF-8 (an address
 * of a message that came in without SMTPUTF8 cannot be; a damaged file
 * could) makes jansson refuse it: that message is listed by id alone. */
static void list_work(void *arg)
{
    struct list_job *j = arg;
    const struct queue *q = j->cl->ctl->ctx.queue;
    json_t *arr = json_array();
    for (size_t i = 0; i < j->n; i++) {
        struct queue_msg m;
        if (queue_read(q, &j->e[i].ref, true, &m) < 0)
            continue;   /* gone meanwhile */
        json_t *o = message_json(&m, &j->e[i]);
        if (o == NULL)
            o = json_pack("{s:s, s:s}", "id", m.ref.id, "error", "unreadable record");
        json_array_append_new(arr, o);
        queue_msg_free(&m);
    }
    json_t *top;
    if (j->one && json_array_size(arr) == 0) {
        top = json_pack("{s:b, s:s}", "ok", 0, "error", "no such message");
        json_decref(arr);
    } else if (j->one) {
        top = json_pack("{s:b, s:O}", "ok", 1, "message", json_array_get(arr, 0));
        json_decref(arr);
    } else {
        top = json_pack("{s:b, s:o}", "ok", 1, "messages", arr);
    }
    j->out = json_dumps(top, JSON_COMPACT);
    json_decref(top);
}

static void list_done(void *arg)
{
    struct list_job *j = arg;
    struct client *cl = j->cl;
    cl->busy = false;
    if (cl->dead)
        client_free(cl);
    else
        send_answer(cl, j->out);
    free(j->out);
    xfree(j->e);
    xfree(j);
}

static int cmp_arrival(const void *a, const void *b)
{
    /* ids begin with the time they were made: their order is the arrival order */
    return strcmp(((const struct sched_entry *)a)->ref.id, ((const struct sched_entry *)b)->ref.id);
}

static bool id_ok(const char *id)
{
    return id != NULL && id_valid(id, strlen(id));
}

static json_t *ok_n(unsigned n)
{
    return json_pack("{s:b, s:i}", "ok", 1, "affected", (json_int_t)n);
}

static void result(struct client *cl, int r)
{
    if (r == 0)
        answer(cl, ok_n(1));
    else if (r == -ENOENT)
        answer_error(cl, "no such message");
    else if (r == -EPERM)
        answer_error(cl, "the message is held: release it first");
    else
        answer_error(cl, "the message is not held");
}

static void request(struct client *cl, char *line)
{
    struct scheduler *s = cl->ctl->ctx.sched;
    char *words[4] = { 0 };
    size_t nw = 0;
    for (char *save = NULL, *w = strtok_r(line, " \t", &save); w && nw < 4;
         w = strtok_r(NULL, " \t", &save))
        words[nw++] = w;
    const char *cmd = words[0] ? words[0] : "";
    const char *arg = words[1];
    log_kv(MW_LOG_INFO, "control", "command", cmd, "arg", arg, NULL);
    if (strcmp(cmd, "list") == 0 || strcmp(cmd, "show") == 0) {
        bool one = cmd[0] == 's';
        if (one && !id_ok(arg)) {
            answer_error(cl, "show needs a queue id");
            return;
        }
        struct list_job *j = xcalloc(1, sizeof(*j));
        j->cl = cl;
        j->one = one;
        j->n = sched_list(s, &j->e);
        if (one) {
            size_t k = 0;
            for (size_t i = 0; i < j->n; i++)
                if (strcmp(j->e[i].ref.id, arg) == 0)
                    j->e[k++] = j->e[i];
            j->n = k;
        } else {
            qsort(j->e, j->n, sizeof(*j->e), cmp_arrival);
        }
        cl->busy = true;
        worker_submit(cl->ctl->ctx.pool, list_work, list_done, j);
        return;
    }
    if (strcmp(cmd, "flush") == 0) {
        unsigned n;
        sched_flush(s, arg, &n);
        answer(cl, ok_n(n));
        return;
    }
    bool needs_id = strcmp(cmd, "retry") == 0 || strcmp(cmd, "hold") == 0 ||
                    strcmp(cmd, "release") == 0 || strcmp(cmd, "remove") == 0;
    if (needs_id && !id_ok(arg)) {
        answer_error(cl, "a queue id is needed");
        return;
    }
    if (strcmp(cmd, "retry") == 0)
        result(cl, sched_retry(s, arg));
    else if (strcmp(cmd, "hold") == 0)
        result(cl, sched_hold(s, arg));
    else if (strcmp(cmd, "release") == 0)
        result(cl, sched_release(s, arg));
    else if (strcmp(cmd, "remove") == 0)
        result(cl, sched_remove(s, arg, words[2] && strcmp(words[2], "silent") == 0));
    else
        answer_error(cl, "unknown command (list, show, flush, retry, hold, release, remove)");
}

static void client_read(struct bufferevent *bev, void *arg)
{
    struct client *cl = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
    if (line == NULL) {
        if (evbuffer_get_length(in) > REQUEST_MAX)
            answer_error(cl, "request too long");
        return;
    }
    if (n > REQUEST_MAX || memchr(line, '\0', n) != NULL) {
        answer_error(cl, n > REQUEST_MAX ? "request too long" : "NUL in the request");
    } else {
        bufferevent_disable(bev, EV_READ);
        request(cl, line);
    }
    free(line);
}

static void client_event(struct bufferevent *bev, short what, void *arg)
{
    struct client *cl = arg;
    (void)bev;
    (void)what;
    if (cl->busy) {
        cl->dead = true;   /* list_done frees it */
        return;
    }
    client_free(cl);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct control *ctl = arg;
    (void)l;
    (void)sa;
    (void)len;
    struct ucred cr;
    socklen_t cl_len = sizeof(cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl_len) < 0 ||
        (cr.uid != 0 && cr.uid != geteuid())) {
        char uid[16];
        snprintf(uid, sizeof(uid), "%ld", (long)cr.uid);
        log_kv(MW_LOG_WARN, "control", "result", "refused", "uid", uid, NULL);
        close(fd);
        return;
    }
    struct client *cl = xcalloc(1, sizeof(*cl));
    cl->ctl = ctl;
    cl->next = ctl->clients;
    if (ctl->clients)
        ctl->clients->prev = cl;
    ctl->clients = cl;
    cl->bev = bufferevent_socket_new(ctl->ctx.base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(cl->bev, client_read, NULL, client_event, cl);
    struct timeval tv = { .tv_sec = CONTROL_TIMEOUT, .tv_usec = 0 };
    bufferevent_set_timeouts(cl->bev, &tv, &tv);
    bufferevent_enable(cl->bev, EV_READ);
}

struct control *control_open(const struct control_ctx *ctx)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    int n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/control.sock", ctx->data_dir);
    if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
        log_kv(MW_LOG_ERROR, "control", "error", "the data directory's path is too long for a socket",
               NULL);
        return NULL;
    }
    unlink(sun.sun_path);   /* left by a daemon that died; the queue lock says we are alone */
    struct control *c = xcalloc(1, sizeof(*c));
    c->ctx = *ctx;
    c->path = xstrdup(sun.sun_path);
    mode_t old = umask(077);
    c->l = evconnlistener_new_bind(ctx->base, accept_cb, c,
                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
                                   (struct sockaddr *)&sun, (int)sizeof(sun));
    umask(old);
    if (c->l == NULL) {
        log_kv(MW_LOG_ERROR, "control", "path", c->path, "error", strerror(errno), NULL);
        xfree(c->path);
        xfree(c);
        return NULL;
    }
    chmod(c->path, 0600);
    log_kv(MW_LOG_INFO, "control", "path", c->path, NULL);
    return c;
}

void control_close(struct control *c)
{
    if (c == NULL)
        return;
    evconnlistener_free(c->l);
    while (c->clients)   /* the pools are joined: no job holds one */
        client_free(c->clients);
    unlink(c->path);
    xfree(c->path);
    xfree(c);
}
