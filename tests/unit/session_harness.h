/*
 * session_harness.h - how test_session runs a golden-transcript case
 * against the SMTP session (smtp/session.h) and checks it: steps, the
 * synchronous ask hook, reply parsing and matching, and the three feeding
 * modes whose outputs must agree. The cases themselves are in
 * test_session.c.
 *
 * A case is a list of steps (feed bytes, answer an outstanding ask, shut
 * down, time out, check the reply count / waiting flag / protocol) and the
 * expected replies, each summarised as "CODE" or "CODE X.Y.Z" (the
 * enhanced status code when the reply text starts with one). An expected
 * entry may list alternatives ("503 5.5.1|554 5.5.1") or end in '*' to
 * match any reply with that prefix ("354*").
 *
 * Every case runs three times: input fed whole, one byte at a time, and in
 * 7-byte pieces. Each run must match the expectation, and the three runs
 * must produce byte-identical output, the same asks and the same messages.
 * Every fed piece is a heap block of exactly its size, freed right after
 * smtp_session_feed returns, so ASan catches a session that keeps a
 * pointer into the caller's buffer.
 *
 * The ask hook answers synchronously (inside ask) unless the case defers
 * that kind of ask, in which case an ANSWER step answers it later. Policy
 * of the synchronous hook:
 *   MAIL     250 2.1.0, or 550 5.7.1 when the local part is "reject"
 *   RCPT     250 2.1.5 when the domain is "localhost" (or a bare
 *            Postmaster), else 554 5.7.1
 *   MESSAGE  records the transaction, 250 2.0.0 "Ok: queued as X"
 */
#ifndef MW_TEST_SESSION_HARNESS_H
#define MW_TEST_SESSION_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <fcntl.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/log.h"
#include "smtp/session.h"

/* ------------------------------------------------------------- harness */

enum step_kind {
    S_END = 0,
    S_FEED,     /* p, n */
    S_ANSWER,   /* code, enh, text */
    S_SHUTDOWN,
    S_TIMEOUT,
    S_NREPLIES, /* count: complete replies so far */
    S_WAITING,  /* flag: smtp_session_waiting() */
    S_PROTO,    /* text: smtp_session_protocol() */
    S_STATE,    /* code: smtp_session_state() */
};

struct step {
    enum step_kind k;
    const char *p;
    size_t n;
    int code;
    const char *enh, *text;
    size_t count;
    bool flag;
};

#define FEED(s) { .k = S_FEED, .p = (s), .n = sizeof(s) - 1 }
#define ANSWER(c, e, t) { .k = S_ANSWER, .code = (c), .enh = (e), .text = (t) }
#define SHUTDOWN { .k = S_SHUTDOWN }
#define TIMEOUT { .k = S_TIMEOUT }
#define NREPLIES(x) { .k = S_NREPLIES, .count = (x) }
#define WAITING(b) { .k = S_WAITING, .flag = (b) }
#define PROTO(s) { .k = S_PROTO, .text = (s) }
#define STATE(st) { .k = S_STATE, .code = (st) }

#define DEFER(a) (1u << (a))
#define ANY_STATE (-1)

#define MAXSTEPS 16
#define MAXEXP 48

struct scase {
    const char *name;
    unsigned defer;                 /* asks answered by ANSWER steps */
    struct step steps[MAXSTEPS];
    const char *replies[MAXEXP];    /* NULL-terminated */
    bool closing;
    int state;                      /* final smtp_session_state, or ANY_STATE */
    int nmsg;                       /* MESSAGE asks expected; -1 = not checked */
    void (*extra)(const struct scase *c, const struct smtp_session *s, void *run);
};

struct msg_rec {
    char *from;
    char *rcpt[16];
    size_t nrcpt;
    char *body;
    size_t body_len;
    uint64_t declared_size;
    enum smtp_body body_type;
    bool smtputf8, bdat;
};

struct run {
    const struct scase *c;
    const char *mode;
    struct smtp_session *s;
    unsigned defer;
    struct buf out;      /* everything the session wrote */
    struct buf asklog;   /* one line per ask */
    size_t nask[4];
    struct msg_rec msgs[8];
    size_t nmsg;
    bool pending;
    enum smtp_ask pending_what;
};

static const struct smtp_params params = {
    .hostname = "mx.test",
    .session_id = "test",
    .max_line = 512,
    .max_message = 10000,
    .max_rcpt = 5,
    .max_errors = 5,
};

static char *dup_n(const char *p, size_t n)
{
    char *c = malloc(n + 1);
    assert_non_null(c);
    if (n)
        memcpy(c, p, n);
    c[n] = '\0';
    return c;
}

static void record_message(struct run *r, const struct smtp_session *s)
{
    const struct smtp_txn *t = smtp_session_txn(s);
    assert_non_null(t);
    assert_true(r->nmsg < sizeof(r->msgs) / sizeof(r->msgs[0]));
    struct msg_rec *m = &r->msgs[r->nmsg++];
    memset(m, 0, sizeof(*m));
    m->from = dup_n(t->from.text ? t->from.text : "(null)",
                    t->from.text ? strlen(t->from.text) : 6);
    assert_true(t->nrcpt <= 16);
    for (size_t i = 0; i < t->nrcpt; i++)
        m->rcpt[i] = dup_n(t->rcpts[i].text, strlen(t->rcpts[i].text));
    m->nrcpt = t->nrcpt;
    m->body = dup_n(buf_ptr(&t->body), buf_size(&t->body));
    m->body_len = buf_size(&t->body);
    m->declared_size = t->declared_size;
    m->body_type = t->body_type;
    m->smtputf8 = t->smtputf8;
    m->bdat = t->bdat;
}

static void auto_answer(struct run *r, struct smtp_session *s, enum smtp_ask what)
{
    switch (what) {
    case SMTP_ASK_MAIL: {
        const struct smtp_txn *t = smtp_session_txn(s);
        if (t->from.local != NULL && strcmp(t->from.local, "reject") == 0)
            smtp_session_answer(s, 550, "5.7.1", "Sender rejected");
        else
            smtp_session_answer(s, 250, "2.1.0", "Ok");
        break;
    }
    case SMTP_ASK_RCPT: {
        const struct mail_addr *a = smtp_session_pending_rcpt(s);
        bool local = strcmp(a->domain, "localhost") == 0 ||
                     (a->domain[0] == '\0' && strcasecmp(a->local, "postmaster") == 0);
        if (local)
            smtp_session_answer(s, 250, "2.1.5", "Ok");
        else
            smtp_session_answer(s, 554, "5.7.1", "Relay access denied");
        break;
    }
    case SMTP_ASK_MESSAGE:
        smtp_session_answer(s, 250, "2.0.0", "Ok: queued as X");
        break;
    case SMTP_ASK_STARTTLS:
        fail_msg("STARTTLS is not offered in these sessions");
        break;
    case SMTP_ASK_AUTH:
        fail_msg("AUTH is not offered in these sessions");
        break;
    }
}

static void hook_ask(void *ctx, struct smtp_session *s, enum smtp_ask what)
{
    struct run *r = ctx;
    assert_false(r->pending); /* never two asks at once */
    assert_true(what <= SMTP_ASK_STARTTLS);
    r->nask[what]++;
    switch (what) {
    case SMTP_ASK_MAIL: {
        const struct smtp_txn *t = smtp_session_txn(s);
        buf_printf(&r->asklog, "MAIL <%s>\n", t->from.text);
        break;
    }
    case SMTP_ASK_RCPT: {
        const struct mail_addr *a = smtp_session_pending_rcpt(s);
        assert_non_null(a);
        buf_printf(&r->asklog, "RCPT <%s> domain=%s\n", a->text, a->domain);
        break;
    }
    case SMTP_ASK_MESSAGE:
        record_message(r, s);
        buf_printf(&r->asklog, "MESSAGE %zu rcpts, %zu bytes\n", r->msgs[r->nmsg - 1].nrcpt,
                   r->msgs[r->nmsg - 1].body_len);
        break;
    case SMTP_ASK_STARTTLS:
        buf_printf(&r->asklog, "STARTTLS\n");
        break;
    case SMTP_ASK_AUTH:
        fail_msg("AUTH is not offered in these sessions");
        break;
    }
    if (r->defer & DEFER(what)) {
        r->pending = true;
        r->pending_what = what;
        return;
    }
    auto_answer(r, s, what);
}

static const struct smtp_hooks hooks = { .ask = hook_ask };

static void drain(struct run *r)
{
    struct buf *o = smtp_session_output(r->s);
    assert_non_null(o);
    size_t n = buf_size(o);
    if (n) {
        buf_append(&r->out, buf_ptr(o), n);
        buf_consume(o, n);
    }
}

static void check_waiting(struct run *r)
{
    if (smtp_session_waiting(r->s) != r->pending)
        fail_msg("%s (%s): smtp_session_waiting()=%d but an ask is %s", r->c->name, r->mode,
                 smtp_session_waiting(r->s), r->pending ? "outstanding" : "not outstanding");
}

static void feed(struct run *r, const char *p, size_t n, size_t piece)
{
    if (piece == 0)
        piece = n ? n : 1;
    for (size_t i = 0; i < n; i += piece) {
        size_t k = n - i < piece ? n - i : piece;
        char *cp = malloc(k);
        assert_non_null(cp);
        memcpy(cp, p + i, k);
        smtp_session_feed(r->s, cp, k);
        memset(cp, 0xee, k); /* a session that kept the pointer sees garbage */
        free(cp);
        drain(r);
        check_waiting(r);
    }
}

/* ------------------------------------------------------- reply parsing */

struct reply {
    int code;
    char summary[32];
    char first[128];   /* first line, truncated, for diagnostics and checks */
    size_t nlines;
};

/* Write a printable form of p[0..n) for diagnostics. */
static void escaped(struct buf *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\r')
            buf_append_str(b, "\\r");
        else if (c == '\n')
            buf_append_str(b, "\\n\n    ");
        else if (c < 0x20 || c >= 0x7f)
            buf_printf(b, "\\x%02x", c);
        else
            buf_append_byte(b, (char)c);
    }
}

static bool enhanced_code(const char *t, size_t n, size_t *len)
{
    size_t i = 0;
    if (n < 5 || (t[0] != '2' && t[0] != '4' && t[0] != '5') || t[1] != '.')
        return false;
    i = 2;
    size_t d = 0;
    while (i < n && t[i] >= '0' && t[i] <= '9' && d < 4)
        i++, d++;
    if (d < 1 || d > 3 || i >= n || t[i] != '.')
        return false;
    i++;
    d = 0;
    while (i < n && t[i] >= '0' && t[i] <= '9' && d < 4)
        i++, d++;
    if (d < 1 || d > 3 || (i < n && t[i] != ' '))
        return false;
    *len = i;
    return true;
}

/* Split the output into replies. Fails the test on malformed output:
 * lines not ending in CRLF, bare CR/LF, bad codes, a multi-line reply
 * whose lines disagree on the code, an enhanced code whose class is not
 * the reply code's first digit, a trailing partial reply. */
static size_t parse_replies(const struct run *r, struct reply *rep, size_t max)
{
    const char *p = buf_ptr(&r->out);
    size_t n = buf_size(&r->out);
    size_t nrep = 0, i = 0;
    bool open = false;
    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        if (nl == NULL)
            fail_msg("%s (%s): output ends in a partial line: %.*s", r->c->name, r->mode,
                     (int)(n - i), p + i);
        size_t end = (size_t)(nl - p);
        if (end == i || p[end - 1] != '\r')
            fail_msg("%s (%s): reply line not ending in CRLF at offset %zu", r->c->name, r->mode,
                     i);
        const char *l = p + i;
        size_t ln = end - 1 - i;
        if (memchr(l, '\r', ln) != NULL)
            fail_msg("%s (%s): bare CR inside a reply line", r->c->name, r->mode);
        if (ln < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' ||
            l[2] > '9' || (ln > 3 && l[3] != ' ' && l[3] != '-'))
            fail_msg("%s (%s): malformed reply line \"%.*s\"", r->c->name, r->mode, (int)ln, l);
        int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
        bool last = ln == 3 || l[3] == ' ';
        if (!open) {
            assert_true(nrep < max);
            memset(&rep[nrep], 0, sizeof(rep[nrep]));
            rep[nrep].code = code;
            snprintf(rep[nrep].first, sizeof(rep[nrep].first), "%.*s", (int)ln, l);
            open = true;
        } else if (rep[nrep].code != code) {
            fail_msg("%s (%s): multi-line reply mixes codes %d and %d", r->c->name, r->mode,
                     rep[nrep].code, code);
        }
        rep[nrep].nlines++;
        if (last) {
            const char *t = ln > 4 ? l + 4 : "";
            size_t tn = ln > 4 ? ln - 4 : 0;
            size_t el;
            if (enhanced_code(t, tn, &el)) {
                if (t[0] != l[0])
                    fail_msg("%s (%s): enhanced code class differs from reply code: \"%.*s\"",
                             r->c->name, r->mode, (int)ln, l);
                snprintf(rep[nrep].summary, sizeof(rep[nrep].summary), "%d %.*s", code, (int)el,
                         t);
            } else {
                snprintf(rep[nrep].summary, sizeof(rep[nrep].summary), "%d", code);
            }
            nrep++;
            open = false;
        }
        i = end + 1;
    }
    if (open)
        fail_msg("%s (%s): output ends inside a multi-line reply", r->c->name, r->mode);
    return nrep;
}

static bool match_one(const char *got, const char *pat, size_t pn)
{
    if (pn > 0 && pat[pn - 1] == '*')
        return strncmp(got, pat, pn - 1) == 0;
    return strlen(got) == pn && strncmp(got, pat, pn) == 0;
}

static bool match(const char *got, const char *pattern)
{
    const char *p = pattern;
    for (;;) {
        const char *bar = strchr(p, '|');
        size_t pn = bar ? (size_t)(bar - p) : strlen(p);
        if (match_one(got, p, pn))
            return true;
        if (bar == NULL)
            return false;
        p = bar + 1;
    }
}

static void dump_and_fail(const struct run *r, const char *why, const char *const *exp)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s (%s): %s\n  got:\n    ", r->c->name, r->mode, why);
    escaped(&b, buf_ptr(&r->out), buf_size(&r->out));
    buf_append_str(&b, "\n  expected:");
    for (size_t i = 0; exp != NULL && exp[i] != NULL; i++)
        buf_printf(&b, " [%s]", exp[i]);
    buf_append_str(&b, "\n  asks:\n");
    buf_append(&b, buf_ptr(&r->asklog), buf_size(&r->asklog));
    print_error("%s\n", buf_ptr(&b));
    buf_free(&b);
    fail();
}

static void check_replies(const struct run *r, const char *const *exp)
{
    struct reply rep[256];
    size_t n = parse_replies(r, rep, 256);
    size_t k = 0;
    for (; exp[k] != NULL; k++) {
        if (k >= n)
            dump_and_fail(r, "fewer replies than expected", exp);
        if (!match(rep[k].summary, exp[k])) {
            char why[512];
            snprintf(why, sizeof(why), "reply %zu is \"%s\" (%s), expected %s", k + 1,
                     rep[k].summary, rep[k].first, exp[k]);
            dump_and_fail(r, why, exp);
        }
    }
    if (k != n)
        dump_and_fail(r, "more replies than expected", exp);
}

static size_t count_replies(const struct run *r)
{
    struct reply rep[256];
    return parse_replies(r, rep, 256);
}

/* --------------------------------------------------------------- runner */

/* Live runs and buffers, so that the group teardown can free what a
 * failed test (cmocka longjmps out of it) left behind: keeps LeakSanitizer
 * reports for real leaks only. */
#define MAXLIVE 16
static struct run *live_runs[MAXLIVE];
static void *live_mem[MAXLIVE];

static void *track(void *p)
{
    for (size_t i = 0; i < MAXLIVE; i++) {
        if (live_mem[i] == NULL) {
            live_mem[i] = p;
            return p;
        }
    }
    fail_msg("too many tracked buffers");
    return p;
}

static void untrack_free(void *p)
{
    for (size_t i = 0; i < MAXLIVE; i++)
        if (live_mem[i] == p)
            live_mem[i] = NULL;
    free(p);
}

static struct run *run_start(const struct scase *c, const char *mode)
{
    struct run *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    size_t slot = 0;
    while (slot < MAXLIVE && live_runs[slot] != NULL)
        slot++;
    assert_true(slot < MAXLIVE);
    live_runs[slot] = r;
    r->c = c;
    r->mode = mode;
    r->defer = c->defer;
    buf_init(&r->out);
    buf_init(&r->asklog);
    r->s = smtp_session_new(&params, &hooks, r);
    assert_non_null(r->s);
    drain(r); /* the greeting is queued at once */
    check_waiting(r);
    return r;
}

static void run_steps(struct run *r, const struct step *steps, size_t piece)
{
    for (size_t i = 0; i < MAXSTEPS && steps[i].k != S_END; i++) {
        const struct step *st = &steps[i];
        switch (st->k) {
        case S_FEED:
            feed(r, st->p, st->n, piece);
            break;
        case S_ANSWER:
            if (!r->pending)
                fail_msg("%s (%s): step %zu answers, but no ask is outstanding", r->c->name,
                         r->mode, i);
            r->pending = false;
            smtp_session_answer(r->s, st->code, st->enh, st->text);
            drain(r);
            check_waiting(r);
            break;
        case S_SHUTDOWN:
            smtp_session_shutdown(r->s);
            drain(r);
            check_waiting(r);
            break;
        case S_TIMEOUT:
            smtp_session_timeout(r->s);
            drain(r);
            check_waiting(r);
            break;
        case S_NREPLIES: {
            size_t n = count_replies(r);
            if (n != st->count) {
                char why[100];
                snprintf(why, sizeof(why), "at step %zu: %zu replies, expected %zu so far", i, n,
                         st->count);
                dump_and_fail(r, why, NULL);
            }
            break;
        }
        case S_WAITING:
            if (smtp_session_waiting(r->s) != st->flag)
                fail_msg("%s (%s): step %zu: waiting=%d, expected %d", r->c->name, r->mode, i,
                         smtp_session_waiting(r->s), st->flag);
            break;
        case S_PROTO: {
            const char *proto = smtp_session_protocol(r->s);
            if (proto == NULL || strcmp(proto, st->text) != 0)
                fail_msg("%s (%s): step %zu: protocol \"%s\", expected \"%s\"", r->c->name,
                         r->mode, i, proto ? proto : "(null)", st->text);
            break;
        }
        case S_STATE:
            if ((int)smtp_session_state(r->s) != st->code)
                fail_msg("%s (%s): step %zu: state %s, expected %s", r->c->name, r->mode, i,
                         smtp_state_name(smtp_session_state(r->s)),
                         smtp_state_name((enum smtp_state)st->code));
            break;
        case S_END:
            break;
        }
    }
}

static void run_free(struct run *r)
{
    for (size_t i = 0; i < MAXLIVE; i++)
        if (live_runs[i] == r)
            live_runs[i] = NULL;
    smtp_session_free(r->s);
    buf_free(&r->out);
    buf_free(&r->asklog);
    for (size_t i = 0; i < r->nmsg; i++) {
        free(r->msgs[i].from);
        for (size_t k = 0; k < r->msgs[i].nrcpt; k++)
            free(r->msgs[i].rcpt[k]);
        free(r->msgs[i].body);
    }
    free(r);
}

static int free_leftovers(void **state)
{
    for (size_t i = 0; i < MAXLIVE; i++) {
        if (live_runs[i] != NULL)
            run_free(live_runs[i]);
        if (live_mem[i] != NULL)
            untrack_free(live_mem[i]);
    }
    return 0;
}

static void check_run(struct run *r)
{
    const struct scase *c = r->c;
    check_replies(r, c->replies);
    if (smtp_session_closing(r->s) != c->closing)
        dump_and_fail(r, c->closing ? "session should be closing" : "session should not be closing",
                      c->replies);
    if (c->closing && smtp_session_state(r->s) != SMTP_ST_CLOSED)
        fail_msg("%s (%s): closing but state %s", c->name, r->mode,
                 smtp_state_name(smtp_session_state(r->s)));
    if (c->state != ANY_STATE && (int)smtp_session_state(r->s) != c->state)
        fail_msg("%s (%s): final state %s, expected %s", c->name, r->mode,
                 smtp_state_name(smtp_session_state(r->s)),
                 smtp_state_name((enum smtp_state)c->state));
    if (c->nmsg >= 0 && r->nask[SMTP_ASK_MESSAGE] != (size_t)c->nmsg)
        dump_and_fail(r, "wrong number of MESSAGE asks", c->replies);
    if (r->pending)
        fail_msg("%s (%s): an ask is still outstanding at the end", c->name, r->mode);
}

static void same_runs(const struct run *a, const struct run *b)
{
    if (buf_size(&a->out) != buf_size(&b->out) ||
        memcmp(buf_ptr(&a->out), buf_ptr(&b->out), buf_size(&a->out)) != 0) {
        struct buf d;
        buf_init(&d);
        buf_printf(&d, "%s: output differs between %s and %s feeding\n  %s:\n    ", a->c->name,
                   a->mode, b->mode, a->mode);
        escaped(&d, buf_ptr(&a->out), buf_size(&a->out));
        buf_printf(&d, "\n  %s:\n    ", b->mode);
        escaped(&d, buf_ptr(&b->out), buf_size(&b->out));
        print_error("%s\n", buf_ptr(&d));
        buf_free(&d);
        fail();
    }
    if (buf_size(&a->asklog) != buf_size(&b->asklog) ||
        memcmp(buf_ptr(&a->asklog), buf_ptr(&b->asklog), buf_size(&a->asklog)) != 0)
        fail_msg("%s: asks differ between %s and %s:\n%s---\n%s", a->c->name, a->mode, b->mode,
                 buf_ptr(&a->asklog), buf_ptr(&b->asklog));
    assert_int_equal(a->nmsg, b->nmsg);
    for (size_t i = 0; i < a->nmsg; i++) {
        const struct msg_rec *x = &a->msgs[i], *y = &b->msgs[i];
        if (x->body_len != y->body_len || memcmp(x->body, y->body, x->body_len) != 0)
            fail_msg("%s: message %zu body differs between %s and %s", a->c->name, i, a->mode,
                     b->mode);
        assert_string_equal(x->from, y->from);
        assert_int_equal(x->nrcpt, y->nrcpt);
        for (size_t k = 0; k < x->nrcpt; k++)
            assert_string_equal(x->rcpt[k], y->rcpt[k]);
    }
}

/* Run c whole, bytewise and in 7-byte pieces; check each; compare them.
 * With keep, the whole-feed run is handed back (caller frees it). */
static struct run *run_case(const struct scase *c, bool keep)
{
    static const struct {
        const char *mode;
        size_t piece;
    } modes[] = { { "whole", 0 }, { "bytewise", 1 }, { "7-byte pieces", 7 } };
    struct run *runs[3];
    for (size_t m = 0; m < 3; m++) {
        runs[m] = run_start(c, modes[m].mode);
        run_steps(runs[m], c->steps, modes[m].piece);
        check_run(runs[m]);
        if (c->extra)
            c->extra(c, runs[m]->s, runs[m]);
    }
    same_runs(runs[0], runs[1]);
    same_runs(runs[0], runs[2]);
    for (size_t m = keep ? 1 : 0; m < 3; m++)
        run_free(runs[m]);
    return keep ? runs[0] : NULL;
}

static void test_scase(void **state)
{
    run_case((const struct scase *)*state, false);
}

#endif
