/*
 * test_sendmail_args - the I/O-free parts of `mailwarden send` / sendmail
 * (cli/send_msg.h): the sendmail command line as cron, PHP and git
 * send-email use it; reading the message (line ends, the lone dot, chunk
 * boundaries); address lists for -t; the header clean-up (From, Date,
 * Message-ID added, Bcc removed, header end); From and Date formatting.
 *
 * Table-driven throughout. Messages are read through fmemopen so the same
 * code path as standard input is used.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cli/send_msg.h"
#include "core/base64.h"
#include "core/buf.h"
#include "core/str.h"

/* ------------------------------------------------------------- arguments */

#define MAXARGS 10

struct args_case {
    const char *name;
    const char *argv[MAXARGS]; /* argv[0] first, NULL-terminated */
    int rc;
    const char *sender, *fullname, *config;
    bool extract, ignore_dots, verbose;
    const char *rcpts;         /* joined by '|' */
};

static const struct args_case args_cases[] = {
    { "cron (Debian)", { "sendmail", "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root" }, 0,
      NULL, "CronDaemon", NULL, false, true, false, "root" },
    { "PHP mail()", { "sendmail", "-t", "-i" }, 0, NULL, NULL, NULL, true, true, false, "" },
    { "git send-email", { "sendmail", "-i", "-f", "me@example.org", "a@x.org", "b@y.org" }, 0,
      "me@example.org", NULL, NULL, false, true, false, "a@x.org|b@y.org" },
    { "attached -f", { "send", "-fme@x.org", "a@x.org" }, 0, "me@x.org", NULL, NULL, false,
      false, false, "a@x.org" },
    { "-r is -f", { "send", "-r", "me@x.org", "a@x.org" }, 0, "me@x.org", NULL, NULL, false,
      false, false, "a@x.org" },
    { "separate -F", { "send", "-F", "Full Name", "a@x.org" }, 0, NULL, "Full Name", NULL, false,
      false, false, "a@x.org" },
    { "grouped flags", { "send", "-ti" }, 0, NULL, NULL, NULL, true, true, false, "" },
    { "grouped, then an argument", { "send", "-tvfme@x.org" }, 0, "me@x.org", NULL, NULL, true,
      false, true, "" },
    { "-oi", { "send", "-oi", "a@x.org" }, 0, NULL, NULL, NULL, false, true, false, "a@x.org" },
    { "ignored -o options", { "send", "-oee", "-odi", "-odb", "-oep", "a@x.org" }, 0, NULL, NULL,
      NULL, false, false, false, "a@x.org" },
    { "ignored options with arguments", { "send", "-N", "never", "-R", "hdrs", "-V", "env", "-bm",
      "a@x.org" }, 0, NULL, NULL, NULL, false, false, false, "a@x.org" },
    { "ignored flags", { "send", "-U", "-n", "-m", "-G", "-B", "7BIT", "a@x.org" }, 0, NULL, NULL,
      NULL, false, false, false, "a@x.org" },
    { "-C separate", { "send", "-C", "/etc/x.conf", "a@x.org" }, 0, NULL, NULL, "/etc/x.conf",
      false, false, false, "a@x.org" },
    { "-C attached", { "send", "-C/etc/x.conf", "a@x.org" }, 0, NULL, NULL, "/etc/x.conf", false,
      false, false, "a@x.org" },
    { "-v", { "send", "-v", "a@x.org" }, 0, NULL, NULL, NULL, false, false, true, "a@x.org" },
    { "options after operands", { "send", "a@x.org", "-i", "b@x.org" }, 0, NULL, NULL, NULL,
      false, true, false, "a@x.org|b@x.org" },
    { "--", { "send", "-i", "--", "-odd@x.org", "-i" }, 0, NULL, NULL, NULL, false, true, false,
      "-odd@x.org|-i" },
    { "empty -f", { "send", "-f", "", "a@x.org" }, 0, "", NULL, NULL, false, false, false,
      "a@x.org" },
    { "--help", { "send", "--help" }, 1, .rcpts = NULL },
    /* usage errors */
    { "unknown option", { "send", "-Z", "a@x.org" }, -1, .rcpts = NULL },
    { "unknown in a group", { "send", "-tZ" }, -1, .rcpts = NULL },
    { "-f without argument", { "send", "a@x.org", "-f" }, -1, .rcpts = NULL },
    { "-bs", { "sendmail", "-bs" }, -1, .rcpts = NULL },
    { "-bp (mailq)", { "sendmail", "-bp" }, -1, .rcpts = NULL },
    { "-bi (newaliases)", { "sendmail", "-bi" }, -1, .rcpts = NULL },
    { "-q", { "sendmail", "-q" }, -1, .rcpts = NULL },
    { "unknown long option", { "send", "--from", "a@x.org" }, -1, .rcpts = NULL },
    { "lone dash", { "send", "-" }, -1, .rcpts = NULL },
};

static void join_rcpts(const struct send_args *a, struct buf *out)
{
    for (size_t i = 0; i < a->nrcpts; i++)
        buf_printf(out, "%s%s", i ? "|" : "", a->rcpts[i]);
}

static bool str_same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void test_args(void **state)
{
    for (size_t i = 0; i < sizeof(args_cases) / sizeof(args_cases[0]); i++) {
        const struct args_case *c = &args_cases[i];
        int argc = 0;
        char *argv[MAXARGS];
        while (argc < MAXARGS && c->argv[argc] != NULL) {
            argv[argc] = (char *)c->argv[argc];
            argc++;
        }
        struct send_args a;
        struct buf err = { 0 }, r = { 0 };
        int rc = send_parse_args(argc, argv, &a, &err);
        if (rc != c->rc)
            fail_msg("%s: rc %d, want %d (%s)", c->name, rc, c->rc, buf_ptr(&err));
        if (rc < 0 && buf_size(&err) == 0)
            fail_msg("%s: usage error without a message", c->name);
        if (rc == 0) {
            join_rcpts(&a, &r);
            if (!str_same(a.sender, c->sender) || !str_same(a.fullname, c->fullname) ||
                !str_same(a.config, c->config) || a.extract != c->extract ||
                a.ignore_dots != c->ignore_dots || a.verbose != c->verbose ||
                strcmp(buf_ptr(&r), c->rcpts) != 0)
                fail_msg("%s: got sender=%s F=%s C=%s t=%d i=%d v=%d rcpts=[%s]", c->name,
                         a.sender ? a.sender : "-", a.fullname ? a.fullname : "-",
                         a.config ? a.config : "-", a.extract, a.ignore_dots, a.verbose,
                         buf_ptr(&r));
        }
        send_args_free(&a);
        buf_free(&err);
        buf_free(&r);
    }
}

/* -------------------------------------------------------------- message */

struct read_case {
    const char *name;
    const char *in;
    size_t n;
    bool dot_ends;
    size_t max;
    int rc;
    const char *out;
};

#define IN(s) s, sizeof(s) - 1

static const struct read_case read_cases[] = {
    { "LF", IN("a\nb\n"), false, 1000, 0, "a\r\nb\r\n" },
    { "CRLF", IN("a\r\nb\r\n"), false, 1000, 0, "a\r\nb\r\n" },
    { "lone CR", IN("a\rb\r"), false, 1000, 0, "a\r\nb\r\n" },
    { "mixed", IN("a\r\nb\nc\rd"), false, 1000, 0, "a\r\nb\r\nc\r\nd\r\n" },
    { "no final newline", IN("a"), false, 1000, 0, "a\r\n" },
    { "empty", IN(""), false, 1000, 0, "" },
    { "empty lines", IN("\n\n"), false, 1000, 0, "\r\n\r\n" },
    { "dot kept with -i", IN("a\n.\nb\n"), false, 1000, 0, "a\r\n.\r\nb\r\n" },
    { "dot ends", IN("a\n.\nb\n"), true, 1000, 0, "a\r\n" },
    { "dot CRLF ends", IN("a\r\n.\r\nb\r\n"), true, 1000, 0, "a\r\n" },
    { "dot first", IN(".\nb\n"), true, 1000, 0, "" },
    { "dot at EOF", IN("a\n."), true, 1000, 0, "a\r\n" },
    { "two dots are no end", IN("..\nb\n"), true, 1000, 0, "..\r\nb\r\n" },
    { "dot space is no end", IN(". \nb\n"), true, 1000, 0, ". \r\nb\r\n" },
    { "dot in a line", IN("a.\n.b\n"), true, 1000, 0, "a.\r\n.b\r\n" },
    { "NUL", IN("a\0b\n"), false, 1000, SEND_READ_ENUL, NULL },
    { "too big", IN("abcdefgh\n"), false, 5, SEND_READ_ETOOBIG, NULL },
    { "exactly max", IN("abc\n"), false, 5, 0, "abc\r\n" },
    { "max grows by CR", IN("abcd\n"), false, 5, SEND_READ_ETOOBIG, NULL },
};

static int read_from(const char *in, size_t n, bool dot_ends, size_t max, struct buf *out)
{
    FILE *f = n ? fmemopen((void *)in, n, "r") : fopen("/dev/null", "r");
    assert_non_null(f);
    int rc = send_read_message(f, dot_ends, max, out);
    fclose(f);
    return rc;
}

static void test_read(void **state)
{
    for (size_t i = 0; i < sizeof(read_cases) / sizeof(read_cases[0]); i++) {
        const struct read_case *c = &read_cases[i];
        struct buf out = { 0 };
        int rc = read_from(c->in, c->n, c->dot_ends, c->max, &out);
        if (rc != c->rc)
            fail_msg("%s: rc %d, want %d", c->name, rc, c->rc);
        if (c->out && (buf_size(&out) != strlen(c->out) || strcmp(buf_ptr(&out), c->out) != 0))
            fail_msg("%s: [%s], want [%s]", c->name, buf_ptr(&out), c->out);
        buf_free(&out);
    }
}

/* A CRLF, a lone dot line and a CR split by the 64 KiB read boundary. */
static void test_read_chunk_boundary(void **state)
{
    static const char *const tails[] = { "\r\nb\r\n", "\r\n.\r\nb\r\n", "\rb\r" };
    static const char *const want[] = { "\r\nb\r\n", "\r\n", "\r\nb\r\n" };
    for (size_t t = 0; t < 3; t++) {
        for (size_t pre = 65534; pre <= 65536; pre++) {
            struct buf in = { 0 }, out = { 0 }, exp = { 0 };
            for (size_t i = 0; i < pre; i++) {
                buf_append_byte(&in, 'a');
                buf_append_byte(&exp, 'a');
            }
            buf_append_str(&in, tails[t]);
            buf_append_str(&exp, want[t]);
            assert_int_equal(read_from(buf_ptr(&in), buf_size(&in), true, 1 << 20, &out), 0);
            if (buf_size(&out) != buf_size(&exp) || memcmp(buf_ptr(&out), buf_ptr(&exp),
                                                           buf_size(&exp)) != 0)
                fail_msg("tail %zu after %zu bytes: got %zu bytes, want %zu", t, pre,
                         buf_size(&out), buf_size(&exp));
            buf_free(&in);
            buf_free(&out);
            buf_free(&exp);
        }
    }
}

/* ----------------------------------------------------------- recipients */

struct rcpt_case {
    const char *in;
    int rc;
    const char *out;  /* joined by '|' */
};

static const struct rcpt_case rcpt_cases[] = {
    { "a@x.org", 0, "a@x.org" },
    { "root", 0, "root@example.org" },
    { "Postmaster", 0, "Postmaster@example.org" },
    { "root (Cron Daemon)", 0, "root@example.org" },
    { "Bob <bob@x.org>, carol@y.org", 0, "bob@x.org|carol@y.org" },
    { "\"Doe, John\" <j@x.org>", 0, "j@x.org" },
    { "Bob <bob>", 0, "bob@example.org" },
    { "< bob@x.org >", 0, "bob@x.org" },
    { "undisclosed-recipients:;", 0, "" },
    { "team: a@x.org, b@y.org;, c@z.org", 0, "a@x.org|b@y.org|c@z.org" },
    { "<@relay.x.org:u@y.org>", 0, "u@y.org" },
    { "a@x.org, A@X.ORG, a@X.org", 0, "a@x.org|A@X.ORG" },
    { "u@[127.0.0.1]", 0, "u@[127.0.0.1]" },
    { "u@[IPv6:::1]", 0, "u@[IPv6:::1]" },
    { "\"a b\"@x.org", 0, "\"a b\"@x.org" },
    { "bob@x.org,\r\n\tcarol@y.org", 0, "bob@x.org|carol@y.org" },
    { "(just a comment)", 0, "" },
    { "", 0, "" },
    { " , ,", 0, "" },
    { "J\xc3\xbcrgen <j\xc3\xbcrgen@x.org>", 0, "j\xc3\xbcrgen@x.org" },
    /* refused */
    { "John Doe", -1, NULL },
    { "a@b@c.org", -1, NULL },
    { "<a@x.org", -1, NULL },
    { "a@x.org>", -1, NULL },
    { "a@", -1, NULL },
    { "a@-x.org", -1, NULL },
    { "(unclosed", -1, NULL },
    { "\"unclosed@x.org", -1, NULL },
    { "<a@x.org> <b@x.org>", -1, NULL },
    { "a\r\nb@x.org", -1, NULL },             /* no line break reaches RCPT TO */
    { "x:<evil@x.org>", 0, "evil@x.org" },    /* a group, read as such */
    { "a@x.org\x01", -1, NULL },
};

static void test_rcpts(void **state)
{
    for (size_t i = 0; i < sizeof(rcpt_cases) / sizeof(rcpt_cases[0]); i++) {
        const struct rcpt_case *c = &rcpt_cases[i];
        struct send_rcpts r = { 0 };
        struct buf err = { 0 }, got = { 0 };
        int rc = send_add_rcpts(c->in, strlen(c->in), "example.org", &r, &err);
        if (rc != c->rc)
            fail_msg("[%s]: rc %d, want %d (%s)", c->in, rc, c->rc, buf_ptr(&err));
        if (rc < 0 && buf_size(&err) == 0)
            fail_msg("[%s]: refused without a reason", c->in);
        for (size_t k = 0; k < r.n; k++)
            buf_printf(&got, "%s%s", k ? "|" : "", r.v[k]);
        if (c->out != NULL && strcmp(buf_ptr(&got), c->out) != 0)
            fail_msg("[%s]: [%s], want [%s]", c->in, buf_ptr(&got), c->out);
        send_rcpts_free(&r);
        buf_free(&err);
        buf_free(&got);
    }
}

/* --------------------------------------------------------------- header */

#define ADDED "From: alice@example.org\r\nDate: DATE\r\nMessage-ID: <ID@example.org>\r\n"

struct prep_case {
    const char *name;
    const char *in;
    bool extract;
    const char *fullname;
    int rc;
    const char *out;
    const char *rcpts;
};

static const struct prep_case prep_cases[] = {
    { "adds what is missing", "Subject: hi\r\n\r\nbody\r\n", false, NULL, 0,
      "Subject: hi\r\n" ADDED "\r\nbody\r\n", "" },
    { "keeps what is there", "From: x@y.org\r\nDate: d\r\nMessage-ID: <m@y>\r\n\r\nb\r\n", false,
      NULL, 0, "From: x@y.org\r\nDate: d\r\nMessage-ID: <m@y>\r\n\r\nb\r\n", "" },
    { "names in any case", "FROM: x@y.org\r\ndate: d\r\nmessage-id: <m@y>\r\n\r\n", false, NULL,
      0, "FROM: x@y.org\r\ndate: d\r\nmessage-id: <m@y>\r\n\r\n", "" },
    { "-t with Bcc removed",
      "To: a@x.org\r\nBcc: secret@x.org,\r\n other@x.org\r\nSubject: s\r\n\r\nb\r\n", true, NULL,
      0, "To: a@x.org\r\nSubject: s\r\n" ADDED "\r\nb\r\n", "a@x.org|secret@x.org|other@x.org" },
    { "Bcc removed without -t", "bcc: s@x.org\r\nSubject: s\r\n\r\nb\r\n", false, NULL, 0,
      "Subject: s\r\n" ADDED "\r\nb\r\n", "" },
    { "Cc and unqualified To", "To: root\r\nCc: Bob <bob@x.org>\r\n\r\n", true, NULL, 0,
      "To: root\r\nCc: Bob <bob@x.org>\r\n" ADDED "\r\n", "root@example.org|bob@x.org" },
    { "not these fields", "Resent-To: r@x.org\r\nX-To: x@x.org\r\nTo-Do: t\r\n\r\n", true, NULL, 0,
      "Resent-To: r@x.org\r\nX-To: x@x.org\r\nTo-Do: t\r\n" ADDED "\r\n", "" },
    { "no header at all", "hello\r\nworld\r\n", false, NULL, 0,
      ADDED "\r\nhello\r\nworld\r\n", "" },
    { "empty message", "", false, NULL, 0, ADDED "\r\n", "" },
    { "header only", "Subject: x\r\n", false, NULL, 0, "Subject: x\r\n" ADDED "\r\n", "" },
    { "mbox From line", "From alice Mon Jan  1 00:00:00 2024\r\nSubject: x\r\n\r\nb\r\n", false,
      NULL, 0, "Subject: x\r\n" ADDED "\r\nb\r\n", "" },
    { "a non-field line starts the body", "Subject: x\r\nthis is body\r\nA: b\r\n", false, NULL,
      0, "Subject: x\r\n" ADDED "\r\nthis is body\r\nA: b\r\n", "" },
    { "space before the colon", "Subject : x\r\n", false, NULL, 0,
      ADDED "\r\nSubject : x\r\n", "" },
    { "continuation first", " x\r\n", false, NULL, 0, ADDED "\r\n x\r\n", "" },
    { "body kept byte for byte", "S: x\r\n\r\n.\r\nBcc: x@y.org\r\n\r\n", false, NULL, 0,
      "S: x\r\n" ADDED "\r\n.\r\nBcc: x@y.org\r\n\r\n", "" },
    { "-F", "Subject: x\r\n\r\n", false, "Cron Daemon", 0,
      "Subject: x\r\nFrom: Cron Daemon <alice@example.org>\r\nDate: DATE\r\n"
      "Message-ID: <ID@example.org>\r\n\r\n", "" },
    { "an unreadable To", "To: John Doe\r\n\r\n", true, NULL, -1, NULL, NULL },
    { "unreadable To is fine without -t", "To: John Doe\r\n\r\n", false, NULL, 0,
      "To: John Doe\r\n" ADDED "\r\n", "" },
};

static void test_prepare(void **state)
{
    for (size_t i = 0; i < sizeof(prep_cases) / sizeof(prep_cases[0]); i++) {
        const struct prep_case *c = &prep_cases[i];
        struct send_header_opts o = {
            .from_addr = "alice@example.org", .fullname = c->fullname, .domain = "example.org",
            .date = "DATE", .msgid = "<ID@example.org>", .extract = c->extract,
        };
        struct send_rcpts r = { 0 };
        struct buf out = { 0 }, err = { 0 }, got = { 0 };
        int rc = send_prepare(c->in, strlen(c->in), &o, &out, &r, &err);
        if (rc != c->rc)
            fail_msg("%s: rc %d, want %d (%s)", c->name, rc, c->rc, buf_ptr(&err));
        if (rc < 0 && strstr(buf_ptr(&err), "To header") == NULL)
            fail_msg("%s: error does not name the field: %s", c->name, buf_ptr(&err));
        if (c->out != NULL && strcmp(buf_ptr(&out), c->out) != 0)
            fail_msg("%s: [%s], want [%s]", c->name, buf_ptr(&out), c->out);
        for (size_t k = 0; k < r.n; k++)
            buf_printf(&got, "%s%s", k ? "|" : "", r.v[k]);
        if (c->rcpts != NULL && strcmp(buf_ptr(&got), c->rcpts) != 0)
            fail_msg("%s: rcpts [%s], want [%s]", c->name, buf_ptr(&got), c->rcpts);
        send_rcpts_free(&r);
        buf_free(&out);
        buf_free(&err);
        buf_free(&got);
    }
}

/* ------------------------------------------------------- From and Date */

static void test_format_from(void **state)
{
    static const struct {
        const char *name, *want;
    } cases[] = {
        { NULL, "a@x.org" },
        { "", "a@x.org" },
        { "   ", "a@x.org" },
        { "Cron Daemon", "Cron Daemon <a@x.org>" },
        { " Cron ", "Cron <a@x.org>" },
        { "John Q. Public", "\"John Q. Public\" <a@x.org>" },
        { "a\"b\\c", "\"a\\\"b\\\\c\" <a@x.org>" },
        { "x\r\nBcc: evil@y.org", "\"x  Bcc: evil@y.org\" <a@x.org>" },
        { "J\xc3\xbcrgen", "=?UTF-8?B?SsO8cmdlbg==?= <a@x.org>" },
        { "\xff", "\"?\" <a@x.org>" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf out = { 0 };
        send_format_from(cases[i].name, "a@x.org", &out);
        if (strcmp(buf_ptr(&out), cases[i].want) != 0)
            fail_msg("[%s]: [%s], want [%s]", cases[i].name ? cases[i].name : "(null)",
                     buf_ptr(&out), cases[i].want);
        buf_free(&out);
    }
}

/* A long UTF-8 name: encoded words of at most 75 characters, each
 * decoding to whole characters, together the name. */
static void test_format_from_long(void **state)
{
    struct buf name = { 0 }, out = { 0 }, back = { 0 };
    for (int i = 0; i < 40; i++)
        buf_append_str(&name, i % 3 ? "\xc3\xbc" : "\xe2\x82\xac");  /* ü, € */
    send_format_from(buf_ptr(&name), "a@x.org", &out);
    const char *p = buf_ptr(&out);
    int words = 0;
    while ((p = strstr(p, "=?UTF-8?B?")) != NULL) {
        const char *end = strstr(p + 10, "?=");
        assert_non_null(end);
        assert_true(end + 2 - p <= 75);
        struct buf part = { 0 };
        assert_int_equal(b64_decode(p + 10, (size_t)(end - p - 10), 0, &part), 0);
        assert_true(str_utf8_valid(buf_ptr(&part), buf_size(&part)));
        buf_append(&back, buf_ptr(&part), buf_size(&part));
        buf_free(&part);
        words++;
        p = end + 2;
    }
    assert_true(words >= 2);
    assert_string_equal(buf_ptr(&back), buf_ptr(&name));
    assert_non_null(strstr(buf_ptr(&out), "?=\r\n =?UTF-8?B?"));  /* folded */
    buf_free(&name);
    buf_free(&out);
    buf_free(&back);
}

static void test_format_date(void **state)
{
    static const struct {
        const char *tz;
        time_t t;
        const char *want;
    } cases[] = {
        { "UTC", 0, "Thu, 1 Jan 1970 00:00:00 +0000" },
        { "EST5", 0, "Wed, 31 Dec 1969 19:00:00 -0500" },
        { "IST-5:30", 1700000000, "Wed, 15 Nov 2023 03:43:20 +0530" },
        { "UTC", 1700000000, "Tue, 14 Nov 2023 22:13:20 +0000" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        setenv("TZ", cases[i].tz, 1);
        tzset();
        struct buf out = { 0 };
        send_format_date(cases[i].t, &out);
        if (strcmp(buf_ptr(&out), cases[i].want) != 0)
            fail_msg("%s %lld: [%s], want [%s]", cases[i].tz, (long long)cases[i].t,
                     buf_ptr(&out), cases[i].want);
        buf_free(&out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_read),
        cmocka_unit_test(test_read_chunk_boundary),
        cmocka_unit_test(test_rcpts),
        cmocka_unit_test(test_prepare),
        cmocka_unit_test(test_format_from),
        cmocka_unit_test(test_format_from_long),
        cmocka_unit_test(test_format_date),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
