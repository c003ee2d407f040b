/*
 * test_reply - the SMTP reply parser (smtp/reply.h), and the I/O-free
 * helpers of the client built on it (smtp/client.h: EHLO keywords,
 * dot-stuffing).
 *
 * Reply cases are a table of (input, expected status, code, enhanced code,
 * lines joined by '|', bare_lf, bytes used). Each input is fed whole, one
 * byte at a time, and split in two at every position; all feedings must
 * agree. Bytes after the first reply must be left to the caller. Generated
 * cases cover the limits (line length, line count).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "smtp/client.h"
#include "smtp/reply.h"

#define ALL SIZE_MAX /* "uses the whole input" */

struct reply_case {
    const char *name;
    const char *in;
    size_t n;
    int status;            /* SMTP_REPLY_DONE, _MORE or an error */
    unsigned code;
    const char *enhanced;
    const char *lines;     /* texts joined by '|' */
    bool bare_lf;
    size_t used;           /* ALL or a count */
};

#define IN(s) s, sizeof(s) - 1
#define OK(code, enh, lines) SMTP_REPLY_DONE, code, enh, lines, false, ALL
#define BAD(err) err, 0, "", "", false, ALL

static const struct reply_case cases[] = {
    /* one line */
    { "greeting", IN("220 mx.test ESMTP ready\r\n"), OK(220, "", "mx.test ESMTP ready") },
    { "code only", IN("250\r\n"), OK(250, "", "") },
    { "code and space", IN("250 \r\n"), OK(250, "", "") },
    { "enhanced", IN("250 2.1.0 Ok\r\n"), OK(250, "2.1.0", "Ok") },
    { "enhanced alone", IN("250 2.0.0\r\n"), OK(250, "2.0.0", "") },
    { "enhanced, 3-digit parts", IN("550 5.123.456 x\r\n"), OK(550, "5.123.456", "x") },
    { "enhanced then two spaces", IN("250 2.0.0  x\r\n"), OK(250, "2.0.0", " x") },
    { "class differs: no split", IN("250 5.1.1 x\r\n"), OK(250, "", "5.1.1 x") },
    { "class 3: no split", IN("354 3.0.0 go\r\n"), OK(354, "", "3.0.0 go") },
    { "4-digit part: no split", IN("250 2.1000.0 x\r\n"), OK(250, "", "2.1000.0 x") },
    { "no space after: no split", IN("250 2.0.0ok\r\n"), OK(250, "", "2.0.0ok") },
    { "missing detail: no split", IN("250 2.0 ok\r\n"), OK(250, "", "2.0 ok") },
    { "354", IN("354 End data with <CR><LF>.<CR><LF>\r\n"),
      OK(354, "", "End data with <CR><LF>.<CR><LF>") },
    { "tab and UTF-8", IN("250 h\xc3\xa9llo\tw\r\n"), OK(250, "", "h\xc3\xa9llo\tw") },
    { "559 is the top", IN("559 x\r\n"), OK(559, "", "x") },
    { "bare LF tolerated", IN("250 ok\n"), SMTP_REPLY_DONE, 250, "", "ok", true, ALL },
    /* several lines */
    { "EHLO", IN("250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"),
      OK(250, "", "mx.test|PIPELINING|SIZE 1000|8BITMIME") },
    { "enhanced on each line", IN("550-5.1.1 no such\r\n550 5.1.1 user\r\n"),
      OK(550, "5.1.1", "no such|user") },
    { "enhanced on the first only", IN("451-4.3.0 try\r\n451 later\r\n"),
      OK(451, "4.3.0", "try|later") },
    { "empty continuation", IN("250-\r\n250 \r\n"), OK(250, "", "|") },
    { "mixed line ends", IN("250-a\n250 b\r\n"), SMTP_REPLY_DONE, 250, "", "a|b", true, ALL },
    /* the caller keeps what follows */
    { "next reply stays", IN("250 a\r\n250 b\r\n"), SMTP_REPLY_DONE, 250, "", "a", false, 7 },
    { "injected bytes stay", IN("220 go\r\nxyz"), SMTP_REPLY_DONE, 220, "", "go", false, 8 },
    /* incomplete */
    { "empty input", IN(""), SMTP_REPLY_MORE, 0, "", "", false, ALL },
    { "partial line", IN("250 o"), SMTP_REPLY_MORE, 0, "", "", false, ALL },
    { "CR pending", IN("250 ok\r"), SMTP_REPLY_MORE, 0, "", "", false, ALL },
    { "continuation pending", IN("250-a\r\n"), SMTP_REPLY_MORE, 0, "", "", false, ALL },
    /* garbage */
    { "empty line", IN("\r\n"), BAD(SMTP_REPLY_ESYNTAX) },
    { "two digits", IN("25 x\r\n"), BAD(SMTP_REPLY_ESYNTAX) },
    { "four digits", IN("2500 x\r\n"), BAD(SMTP_REPLY_ESYNTAX) },
    { "letters", IN("abc\r\n"), BAD(SMTP_REPLY_ESYNTAX) },
    { "HTTP", IN("HTTP/1.1 400 Bad Request\r\n"), BAD(SMTP_REPLY_ESYNTAX) },
    { "1yz", IN("150 x\r\n"), BAD(SMTP_REPLY_ESYNTAX) },
    { "6yz", IN("650 x\r\n"), BAD(SMTP_REPLY_ESYNTAX) },
    { "x6z", IN("260 x\r\n"), BAD(SMTP_REPLY_ESYNTAX) },
    { "bad separator", IN("250_x\r\n"), BAD(SMTP_REPLY_ESYNTAX) },
    { "tab separator", IN("250\tx\r\n"), BAD(SMTP_REPLY_ESYNTAX) },
    { "leading space", IN(" 250 x\r\n"), BAD(SMTP_REPLY_ESYNTAX) },
    { "empty line inside", IN("250-a\r\n\r\n250 b\r\n"), BAD(SMTP_REPLY_ESYNTAX) },
    { "codes differ", IN("250-a\r\n251 b\r\n"), BAD(SMTP_REPLY_ECODE) },
    { "class differs", IN("250-a\r\n550 b\r\n"), BAD(SMTP_REPLY_ECODE) },
    { "NUL", IN("250 a\0b\r\n"), BAD(SMTP_REPLY_ECHAR) },
    { "bare CR", IN("250 a\rb\r\n"), BAD(SMTP_REPLY_ECHAR) },
    { "CR CR LF", IN("250 a\r\r\n"), BAD(SMTP_REPLY_ECHAR) },
    { "escape", IN("250 a\x1b[31mred\r\n"), BAD(SMTP_REPLY_ECHAR) },
    { "DEL", IN("250 a\x7f\r\n"), BAD(SMTP_REPLY_ECHAR) },
    { "bad UTF-8", IN("250 \xff\xfe\r\n"), BAD(SMTP_REPLY_ECHAR) },
    { "overlong UTF-8", IN("250 \xc0\xaf\r\n"), BAD(SMTP_REPLY_ECHAR) },
    { "truncated UTF-8", IN("250 \xc3\r\n"), BAD(SMTP_REPLY_ECHAR) },
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

struct result {
    int status;
    size_t used;
    struct smtp_reply r;
};

/* Feed c->in in pieces ending at cuts[] (ascending, < n), stopping at the
 * first reply or error, as a caller would. */
static void feed_split(const struct reply_case *c, const size_t *cuts, size_t ncut,
                       struct result *res)
{
    struct smtp_reply_parser p;
    smtp_reply_parser_init(&p);
    memset(res, 0, sizeof(*res));
    res->status = SMTP_REPLY_MORE;
    size_t start = 0;
    for (size_t k = 0; k <= ncut && res->status == SMTP_REPLY_MORE; k++) {
        size_t end = k < ncut ? cuts[k] : c->n;
        size_t len = end - start, used = 0;
        char *piece = malloc(len ? len : 1); /* exact size: ASan sees overreads */
        assert_non_null(piece);
        memcpy(piece, c->in + start, len);
        res->status = smtp_reply_feed(&p, piece, len, &used, &res->r);
        free(piece);
        assert_true(used <= len);
        if (res->status == SMTP_REPLY_MORE && used != len)
            fail_msg("%s: MORE but used %zu of %zu", c->name, used, len);
        res->used += used;
        start = end;
    }
    if (res->status < 0) {  /* sticky */
        size_t used = 1;
        assert_int_equal(smtp_reply_feed(&p, "250 x\r\n", 7, &used, &res->r), res->status);
        assert_int_equal(used, 0);
    }
    smtp_reply_parser_reset(&p);
}

static void joined(const struct smtp_reply *r, struct buf *out)
{
    for (size_t i = 0; i < r->nlines; i++) {
        size_t n;
        const char *t = smtp_reply_line(r, i, &n);
        if (i > 0)
            buf_append_byte(out, '|');
        buf_append(out, t, n);
    }
}

static void check(const struct reply_case *c, const char *how, struct result *res)
{
    if (res->status != c->status)
        fail_msg("%s (%s): status %d (%s), want %d", c->name, how, res->status,
                 smtp_reply_strerror(res->status), c->status);
    if (c->status < 0 || c->status == SMTP_REPLY_MORE)
        return;
    size_t want_used = c->used == ALL ? c->n : c->used;
    if (res->used != want_used)
        fail_msg("%s (%s): used %zu, want %zu", c->name, how, res->used, want_used);
    if (res->r.code != c->code)
        fail_msg("%s (%s): code %u, want %u", c->name, how, res->r.code, c->code);
    if (strcmp(res->r.enhanced, c->enhanced) != 0)
        fail_msg("%s (%s): enhanced [%s], want [%s]", c->name, how, res->r.enhanced, c->enhanced);
    struct buf j = { 0 };
    joined(&res->r, &j);
    if (strcmp(buf_ptr(&j), c->lines) != 0)
        fail_msg("%s (%s): lines [%s], want [%s]", c->name, how, buf_ptr(&j), c->lines);
    buf_free(&j);
    if (res->r.bare_lf != c->bare_lf)
        fail_msg("%s (%s): bare_lf %d, want %d", c->name, how, res->r.bare_lf, c->bare_lf);
}

static void run_case(const struct reply_case *c)
{
    struct result res;
    feed_split(c, NULL, 0, &res);
    check(c, "whole", &res);
    smtp_reply_free(&res.r);

    size_t *cuts = malloc((c->n ? c->n : 1) * sizeof(*cuts));
    assert_non_null(cuts);
    for (size_t i = 1; i < c->n; i++)
        cuts[i - 1] = i;
    feed_split(c, cuts, c->n ? c->n - 1 : 0, &res);
    check(c, "bytewise", &res);
    smtp_reply_free(&res.r);
    free(cuts);

    for (size_t cut = 1; cut < c->n; cut++) {
        char how[32];
        snprintf(how, sizeof(how), "split at %zu", cut);
        feed_split(c, &cut, 1, &res);
        check(c, how, &res);
        smtp_reply_free(&res.r);
    }
}

static void test_table(void **state)
{
    for (size_t i = 0; i < NCASES; i++)
        run_case(&cases[i]);
}

/* A line of exactly SMTP_REPLY_LINE_MAX bytes passes; one more fails. */
static void test_line_limit(void **state)
{
    for (int over = 0; over < 2; over++) {
        size_t len = SMTP_REPLY_LINE_MAX + (size_t)over;
        struct buf in = { 0 }, want = { 0 };
        buf_append_str(&in, "250 ");
        for (size_t i = 4; i < len; i++) {
            buf_append_byte(&in, 'x');
            buf_append_byte(&want, 'x');
        }
        buf_append_str(&in, "\r\n");
        struct reply_case c = { .name = over ? "line too long" : "longest line",
                                .in = buf_ptr(&in), .n = buf_size(&in),
                                .status = over ? SMTP_REPLY_ETOOLONG : SMTP_REPLY_DONE,
                                .code = 250, .enhanced = "", .lines = buf_ptr(&want),
                                .used = ALL };
        run_case(&c);
        buf_free(&in);
        buf_free(&want);
    }
}

/* SMTP_REPLY_MAX_LINES lines pass; one more fails. */
static void test_line_count(void **state)
{
    for (int over = 0; over < 2; over++) {
        size_t lines = SMTP_REPLY_MAX_LINES + (size_t)over;
        struct buf in = { 0 }, want = { 0 };
        for (size_t i = 0; i < lines; i++) {
            buf_printf(&in, "250%c%zu\r\n", i + 1 < lines ? '-' : ' ', i);
            buf_printf(&want, "%s%zu", i ? "|" : "", i);
        }
        struct reply_case c = { .name = over ? "too many lines" : "most lines",
                                .in = buf_ptr(&in), .n = buf_size(&in),
                                .status = over ? SMTP_REPLY_ETOOMANY : SMTP_REPLY_DONE,
                                .code = 250, .enhanced = "", .lines = buf_ptr(&want),
                                .used = ALL };
        struct result res;
        feed_split(&c, NULL, 0, &res);  /* whole only: byte-wise is quadratic here */
        check(&c, "whole", &res);
        smtp_reply_free(&res.r);
        buf_free(&in);
        buf_free(&want);
    }
}

/* Replies one after the other through one parser; reset after an error. */
static void test_sequence_and_reset(void **state)
{
    static const char in[] = "220 hi\r\n250-a\r\n250 b\r\n354 go\r\n";
    static const unsigned codes[] = { 220, 250, 354 };
    struct smtp_reply_parser p;
    smtp_reply_parser_init(&p);
    size_t off = 0, n = sizeof(in) - 1;
    for (size_t k = 0; k < 3; k++) {
        struct smtp_reply r;
        size_t used;
        assert_int_equal(smtp_reply_feed(&p, in + off, n - off, &used, &r), SMTP_REPLY_DONE);
        assert_int_equal(r.code, codes[k]);
        off += used;
        smtp_reply_free(&r);
    }
    assert_int_equal(off, n);
    struct smtp_reply r;
    size_t used;
    assert_int_equal(smtp_reply_feed(&p, "250-a\r\n25", 9, &used, &r), SMTP_REPLY_MORE);
    assert_int_equal(smtp_reply_feed(&p, "x\r\n", 3, &used, &r), SMTP_REPLY_ESYNTAX);
    smtp_reply_parser_reset(&p);
    assert_int_equal(smtp_reply_feed(&p, "221 bye\r\n", 9, &used, &r), SMTP_REPLY_DONE);
    assert_int_equal(r.code, 221);
    smtp_reply_free(&r);
    smtp_reply_parser_reset(&p);
}

/* -------------------------------------------------- client helpers */

static void parse_ehlo(const char *text, struct smtp_ext *ext)
{
    struct smtp_reply_parser p;
    struct smtp_reply r;
    size_t used;
    smtp_reply_parser_init(&p);
    assert_int_equal(smtp_reply_feed(&p, text, strlen(text), &used, &r), SMTP_REPLY_DONE);
    smtp_ext_parse(&r, ext);
    smtp_reply_free(&r);
    smtp_reply_parser_reset(&p);
}

static void test_ehlo_keywords(void **state)
{
    struct smtp_ext e;
    parse_ehlo("250-mx.test greets you\r\n250-PIPELINING\r\n250-size 35882577\r\n"
               "250-8BITMIME\r\n250-starttls\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n"
               "250-AUTH CRAM-MD5 login Plain\r\n250 CHUNKING\r\n", &e);
    assert_true(e.pipelining && e.eightbitmime && e.starttls && e.enhancedstatuscodes &&
                e.smtputf8 && e.chunking && e.auth && e.size);
    assert_int_equal(e.size_max, 35882577);
    assert_int_equal(e.auth_mechs, SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN);

    parse_ehlo("250-mx\r\n250-AUTH=LOGIN\r\n250 SIZE\r\n", &e);  /* old AUTH= form */
    assert_int_equal(e.auth_mechs, SMTP_AUTH_LOGIN);
    assert_true(e.size);
    assert_int_equal(e.size_max, 0);
    assert_false(e.starttls);

    /* The first line is the server's name, never a keyword. */
    parse_ehlo("250-STARTTLS\r\n250-AUTH XOAUTH2 GSSAPI\r\n250 SIZE 99999999999999999999999\r\n",
               &e);
    assert_false(e.starttls);
    assert_true(e.auth);
    assert_int_equal(e.auth_mechs, 0);
    assert_int_equal(e.size_max, 0);

    parse_ehlo("250 mx.test\r\n", &e);
    assert_false(e.starttls || e.auth || e.size || e.pipelining);

    /* Keyword prefixes are not keywords. */
    parse_ehlo("250-mx\r\n250-STARTTLSX\r\n250 AUTHX PLAIN\r\n", &e);
    assert_false(e.starttls || e.auth);
}

struct stuff_case {
    const char *in, *out;
};

static void test_dot_stuff(void **state)
{
    static const struct stuff_case cases_[] = {
        { "", "" },
        { "a\r\n", "a\r\n" },
        { ".\r\n", "..\r\n" },
        { "a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n" },
        { ".a\r\n..b\r\n", "..a\r\n...b\r\n" },
        { "a.b\r\nc.\r\n", "a.b\r\nc.\r\n" },
        { "\r\n.\r\n", "\r\n..\r\n" },
        { "x\r\n.", "x\r\n.." },
    };
    for (size_t i = 0; i < sizeof(cases_) / sizeof(cases_[0]); i++) {
        const char *in = cases_[i].in;
        size_t n = strlen(in);
        /* whole, and in every two-piece split: the state carries over */
        for (size_t cut = 0; cut <= n; cut++) {
            struct buf out = { 0 };
            bool bol = true;
            smtp_dot_stuff(in, cut, &bol, &out);
            smtp_dot_stuff(in + cut, n - cut, &bol, &out);
            if (strcmp(buf_ptr(&out), cases_[i].out) != 0)
                fail_msg("stuff [%s] cut %zu: [%s], want [%s]", in, cut, buf_ptr(&out),
                         cases_[i].out);
            buf_free(&out);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_line_limit),
        cmocka_unit_test(test_line_count),
        cmocka_unit_test(test_sequence_and_reset),
        cmocka_unit_test(test_ehlo_keywords),
        cmocka_unit_test(test_dot_stuff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
