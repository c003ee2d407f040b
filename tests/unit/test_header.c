/*
 * test_header - RFC 5322 header fields and address lists (msg/header.h).
 *
 * 1. Fields: a table of messages, each walked with msg_next_field() and
 *    rendered as "name=value|..." ("!" for a malformed line), with the
 *    body offset. Folding, LF-only lines, a last line without line break,
 *    malformed names, the obsolete "Name :" form, a header that starts
 *    with a continuation line.
 * 2. Address lists: a table of valid lists rendered "local@domain,..."
 *    (display names, comments, quoted local parts, groups, folding, obs
 *    forms, domain literals, UTF-8) and of invalid ones (garbage of every
 *    kind), with and without MSG_ALLOW_NO_DOMAIN.
 * Every input is parsed from a heap block of exactly its length (no NUL
 * after it), so AddressSanitizer catches a read past the end. The parsers
 * are not streaming parsers, so "one byte at a time" becomes "every
 * prefix": each prefix of each input is parsed too and must give a
 * well-formed answer (fields inside the prefix; a list or -1 with nothing
 * allocated).
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
#include "msg/header.h"

#define ERR "ERR"

static char *heap_copy(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    memcpy(p, s, n);
    return p;
}

/* ------------------------------------------------------------ fields */

/* All fields of msg[0..n) as "name=value|...", "!" for a bad line. */
static void render_fields(const char *msg, size_t n, struct buf *out)
{
    size_t pos = 0;
    struct msg_field f;
    int rc, guard = 0;
    while ((rc = msg_next_field(msg, n, &pos, &f)) != 0) {
        assert_true(pos <= n);
        assert_true(guard++ < 10000);
        if (buf_size(out) > 0)
            buf_append_byte(out, '|');
        if (rc < 0) {
            buf_append_byte(out, '!');
            continue;
        }
        assert_true(f.raw >= msg && f.raw + f.raw_len <= msg + n);
        assert_ptr_equal(f.name, f.raw);
        assert_true(f.value + f.value_len <= f.raw + f.raw_len);
        assert_int_equal(f.value[-1], ':');
        buf_append(out, f.name, f.name_len);
        buf_append_byte(out, '=');
        buf_append(out, f.value, f.value_len);
    }
}

static const struct {
    const char *in;
    const char *fields;
    size_t body;    /* offset of the body */
} field_cases[] = {
    { "From: a@b\r\nTo: c@d\r\n\r\nbody\r\n", "From= a@b|To= c@d", 22 },
    { "From: a@b\nTo: c@d\n\nbody\n", "From= a@b|To= c@d", 19 },
    { "Subject: a\r\n b\r\n\tc\r\nX: y\r\n\r\n", "Subject= a\r\n b\r\n\tc|X= y", 28 },
    { "A: b\r\n", "A= b", 6 },
    { "A: b", "A= b", 4 },
    { "A:\r\nB:x\r\n\r\n", "A=|B=x", 11 },
    { "No colon here\r\nA: b\r\n\r\n", "!|A= b", 23 },
    /* obsolete WSP before the colon (RFC 5322 4.5.8): the same field */
    { "From : x\r\nA: b\r\n\r\n", "From= x|A= b", 18 },
    { "From\t: x\r\n\r\n", "From= x", 12 },
    { "From \t :x\r\n\r\n", "From=x", 13 },
    { "From x: y\r\n\r\n", "!", 13 },
    { "From \r\n : y\r\n\r\n", "!", 15 },
    { ": novalue\r\nA: b\r\n", "!|A= b", 17 },
    { " x: y\r\n z\r\nA: b\r\n\r\n", "!|A= b", 19 },
    { "Fr\xc3\xb6m: x\r\nA: b\r\n\r\n", "!|A= b", 18 },
    { "A: b\rc\r\n\r\n", "A= b\rc", 10 },
    { "A: b\r\n \r\n\r\nbody", "A= b\r\n ", 11 },
    { "", "", 0 },
    { "\r\nbody", "", 2 },
    { "\nbody", "", 1 },
    { "A: b\r\n\r\nB: not a field\r\n", "A= b", 8 },
    { "X-Empty-Name-Char\x7f: v\r\nOK: 1\r\n", "!|OK= 1", 30 },
    { "A: b\r\r\n\r\n", "A= b\r", 9 },
};

static void test_fields(void **state)
{
    for (size_t i = 0; i < sizeof(field_cases) / sizeof(field_cases[0]); i++) {
        const char *in = field_cases[i].in;
        size_t n = strlen(in);
        char *m = heap_copy(in, n);
        struct buf out = { 0 };
        render_fields(m, n, &out);
        if (strcmp(buf_ptr(&out), field_cases[i].fields) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, buf_ptr(&out),
                     field_cases[i].fields);
        if (msg_body_offset(m, n) != field_cases[i].body)
            fail_msg("case %zu: body at %zu, want %zu", i, msg_body_offset(m, n),
                     field_cases[i].body);
        for (size_t k = 0; k < n; k++) {   /* every prefix */
            char *p = heap_copy(in, k);
            struct buf o2 = { 0 };
            render_fields(p, k, &o2);
            assert_true(msg_body_offset(p, k) <= k);
            buf_free(&o2);
            free(p);
        }
        buf_free(&out);
        free(m);
    }
}

static void test_field_raw_and_is(void **state)
{
    const char *msg = "fROM: x\r\n\tcont\r\nTo: y\n\n";
    size_t pos = 0;
    struct msg_field f;
    assert_int_equal(msg_next_field(msg, strlen(msg), &pos, &f), 1);
    assert_true(msg_field_is(&f, "From"));
    assert_false(msg_field_is(&f, "Fro"));
    assert_false(msg_field_is(&f, "From2"));
    assert_int_equal(f.raw_len, 16);   /* with its final CRLF */
    assert_int_equal(f.value_len, 9);
    assert_int_equal(pos, 16);
    assert_int_equal(msg_next_field(msg, strlen(msg), &pos, &f), 1);
    assert_true(msg_field_is(&f, "to"));
    assert_int_equal(f.raw_len, 6);
    assert_int_equal(msg_next_field(msg, strlen(msg), &pos, &f), 0);
    assert_int_equal(msg_next_field(msg, strlen(msg), &pos, &f), 0);   /* stays at the end */
}

/* ------------------------------------------------------------ address lists */

#define NODOM MSG_ALLOW_NO_DOMAIN

static const struct {
    const char *in;
    size_t n;          /* 0: strlen(in) */
    unsigned flags;
    const char *want;  /* "local@domain,...", "" for none, or ERR */
} list_cases[] = {
    /* plain and display names */
    { "a@b.example", 0, 0, "a@b.example" },
    { " John Doe <JD@Example.COM> ", 0, 0, "JD@example.com" },
    { "<a@b>", 0, 0, "a@b" },
    { "\"Doe, John\" <jd@x.example>", 0, 0, "jd@x.example" },
    { "\"A\" (c) <a@b>", 0, 0, "a@b" },
    { "John Q. Public <jqp@x.example>", 0, 0, "jqp@x.example" },        /* obs-phrase */
    { "Mary Smith <mary@x.test>, jdoe@example.org", 0, 0, "mary@x.test,jdoe@example.org" },
    { "!#$%&'*+-/=?^_`{|}~@x.example", 0, 0, "!#$%&'*+-/=?^_`{|}~@x.example" },
    /* comments */
    { "(comment) a@b (another (nested \\) one) comment)", 0, 0, "a@b" },
    { "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", 0, 0,
      "pete@silly.test" },
    /* quoted local parts */
    { "\"quoted local\"@x", 0, 0, "quoted local@x" },
    { "\"q\\\"uote\"@x", 0, 0, "q\"uote@x" },
    { "\"\"@x", 0, 0, "@x" },
    { "\"a\".b@x", 0, 0, "a.b@x" },                                   /* obs-local-part */
    /* groups */
    { "undisclosed-recipients:;", 0, 0, "" },
    { "team: a@b, c@d;, e@f", 0, 0, "a@b,c@d,e@f" },
    { "team: a@b, Cee <c@d>; (end)", 0, 0, "a@b,c@d" },
    { "Group:;, a@b", 0, 0, "a@b" },
    { "A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;", 0, 0,
      "c@a.test,joe@where.test,jdoe@one.test" },
    { "g: , a@b ,, ;", 0, 0, "a@b" },                                  /* obs-group-list */
    /* folding */
    { "John\r\n Doe <a@b>", 0, 0, "a@b" },
    { "a@b,\n c@d", 0, 0, "a@b,c@d" },
    { "\"fold\r\n ed\"@x", 0, 0, "fold ed@x" },
    { "a@b\t,\tc@d", 0, 0, "a@b,c@d" },
    /* obsolete forms */
    { "a . b@c", 0, 0, "a.b@c" },
    { "a@b . c", 0, 0, "a@b.c" },
    { "<@r1.example,@r2.example:u@d.example>", 0, 0, "u@d.example" },
    { "Name <@r1.example:u@d.example>", 0, 0, "u@d.example" },
    { ",a@b,,c@d,", 0, 0, "a@b,c@d" },
    /* domain literals */
    { "a@[192.0.2.1]", 0, 0, "a@[192.0.2.1]" },
    { "a@[ IPv6:2001:db8::1 ]", 0, 0, "a@[ipv6:2001:db8::1]" },
    /* UTF-8 (RFC 6532) */
    { "J\xc3\xb6ran <j\xc3\xb6@ex\xc3\xa4mple.de>", 0, 0, "j\xc3\xb6@ex\xc3\xa4mple.de" },
    /* no domain */
    { "alice", 0, NODOM, "alice@" },
    { "<alice>", 0, NODOM, "alice@" },
    { "Alice <alice>", 0, NODOM, "alice@" },
    { "alice, b@c", 0, NODOM, "alice@,b@c" },
    { "alice", 0, 0, ERR },
    { "<alice>", 0, 0, ERR },
    { "John Doe", 0, NODOM, ERR },
    /* garbage */
    { "", 0, 0, ERR },
    { "   ", 0, 0, ERR },
    { "(only a comment)", 0, 0, ERR },
    { ",,", 0, 0, ERR },
    { "a@", 0, 0, ERR },
    { "@b", 0, 0, ERR },
    { "a@@b", 0, 0, ERR },
    { "a@b@c", 0, 0, ERR },
    { "a..b@c", 0, 0, ERR },
    { ".a@b", 0, 0, ERR },
    { "a.@b", 0, 0, ERR },
    { "a@b.", 0, 0, ERR },
    { "a@.b", 0, 0, ERR },
    { "a@b..c", 0, 0, ERR },
    { "<a@b", 0, 0, ERR },
    { "a@b>", 0, 0, ERR },
    { "<<a@b>>", 0, 0, ERR },
    { "<>", 0, NODOM, ERR },
    { "\"unterminated@x", 0, 0, ERR },
    { "(unterminated a@b", 0, 0, ERR },
    { "a@b)", 0, 0, ERR },
    { "a@[1.2.3.4", 0, 0, ERR },
    { "a@[1.2[3]", 0, 0, ERR },
    { "a@[1.2.3.4]x", 0, 0, ERR },
    { "a@b c@d", 0, 0, ERR },
    { "g: a@b", 0, 0, ERR },
    { "g: h: a@b;;", 0, 0, ERR },
    { ": a@b;", 0, 0, ERR },
    { "a@b;", 0, 0, ERR },
    { "Name <a@b> extra", 0, 0, ERR },
    { ". <a@b>", 0, 0, ERR },
    { "a\x01@b", 0, 0, ERR },
    { "a@b\r\nc", 0, 0, ERR },
    { "a@b\r", 0, 0, ERR },
    { "a@b\n", 0, 0, ERR },
    { "a@b\0", 4, 0, ERR },
    { "\xff@b", 0, 0, ERR },
    { "\xc3@b", 0, 0, ERR },
    { "a\\b@c", 0, 0, ERR },
    { "\"a\\", 0, 0, ERR },
    { "(a\\", 0, 0, ERR },
    { "\"a\x7f\"@b", 0, 0, ERR },
    { "a@b]", 0, 0, ERR },
    { "<a@b>>", 0, 0, ERR },
    { "<@r1.example u@d>", 0, 0, ERR },
    { "<@:u@d>", 0, 0, ERR },
};

/* The list, or ERR; checks the contract on the way. */
static void render_list(const char *v, size_t n, unsigned flags, struct buf *out)
{
    struct msg_mailbox *mb = (void *)1;
    size_t count = 99;
    int rc = msg_parse_address_list(v, n, flags, &mb, &count);
    if (rc < 0) {
        assert_int_equal(rc, -1);
        assert_null(mb);
        assert_int_equal(count, 0);
        buf_append_str(out, ERR);
        return;
    }
    assert_int_equal(rc, 0);
    assert_true(count == 0 ? mb == NULL : mb != NULL);
    for (size_t i = 0; i < count; i++) {
        for (const char *c = mb[i].domain; *c != '\0'; c++)
            assert_false(*c >= 'A' && *c <= 'Z');
        assert_true(mb[i].domain[0] != '\0' || (flags & MSG_ALLOW_NO_DOMAIN));
        buf_printf(out, "%s%s@%s", i ? "," : "", mb[i].local, mb[i].domain);
    }
    msg_mailboxes_free(mb, count);
}

static void test_address_lists(void **state)
{
    for (size_t i = 0; i < sizeof(list_cases) / sizeof(list_cases[0]); i++) {
        size_t n = list_cases[i].n ? list_cases[i].n : strlen(list_cases[i].in);
        char *v = heap_copy(list_cases[i].in, n);
        struct buf out = { 0 };
        render_list(v, n, list_cases[i].flags, &out);
        if (strcmp(buf_ptr(&out), list_cases[i].want) != 0)
            fail_msg("case %zu (%s): got \"%s\", want \"%s\"", i, list_cases[i].in,
                     buf_ptr(&out), list_cases[i].want);
        if (list_cases[i].flags == 0) {   /* the two entry points agree */
            struct msg_mailbox *mb;
            size_t count;
            int rc = msg_parse_mailbox_list(v, n, &mb, &count);
            assert_int_equal(rc, strcmp(list_cases[i].want, ERR) == 0 ? -1 : 0);
            msg_mailboxes_free(mb, count);
        }
        for (size_t k = 0; k < n; k++) {   /* every prefix */
            char *p = heap_copy(v, k);
            struct buf o2 = { 0 };
            render_list(p, k, list_cases[i].flags, &o2);
            buf_free(&o2);
            free(p);
        }
        buf_free(&out);
        free(v);
    }
}

static void test_mailbox_limit(void **state)
{
    struct buf b = { 0 };
    for (size_t i = 0; i < MSG_MAX_MAILBOXES; i++)
        buf_printf(&b, "%su%zu@x.example", i ? "," : "", i);
    struct msg_mailbox *mb;
    size_t count;
    assert_int_equal(msg_parse_mailbox_list(buf_ptr(&b), buf_size(&b), &mb, &count), 0);
    assert_int_equal(count, MSG_MAX_MAILBOXES);
    assert_string_equal(mb[MSG_MAX_MAILBOXES - 1].local, "u9999");
    msg_mailboxes_free(mb, count);
    buf_append_str(&b, ",one@too.many");
    assert_int_equal(msg_parse_mailbox_list(buf_ptr(&b), buf_size(&b), &mb, &count), -1);
    assert_null(mb);
    buf_free(&b);
}

static void test_deep_comment(void **state)
{
    /* nesting is a counter, not recursion: 100000 levels are fine */
    struct buf b = { 0 };
    for (int i = 0; i < 100000; i++)
        buf_append_byte(&b, '(');
    for (int i = 0; i < 100000; i++)
        buf_append_byte(&b, ')');
    buf_append_str(&b, " a@b");
    struct msg_mailbox *mb;
    size_t count;
    assert_int_equal(msg_parse_mailbox_list(buf_ptr(&b), buf_size(&b), &mb, &count), 0);
    assert_int_equal(count, 1);
    msg_mailboxes_free(mb, count);
    buf_free(&b);
}

/* The From field of a whole message, found by walking the fields. */
static void test_from_in_message(void **state)
{
    const char *msg = "Received: from x\r\n\tby y\r\nbad line\r\n"
                      "FROM: \"Alice\r\n Example\" <alice@Mail.Example.ORG>\r\nTo: b@c\r\n\r\n"
                      "From: not@a.field\r\n";
    size_t pos = 0, n = strlen(msg), froms = 0;
    struct msg_field f;
    int rc;
    while ((rc = msg_next_field(msg, n, &pos, &f)) != 0) {
        if (rc < 0 || !msg_field_is(&f, "from"))
            continue;
        froms++;
        struct msg_mailbox *mb;
        size_t count;
        assert_int_equal(msg_parse_mailbox_list(f.value, f.value_len, &mb, &count), 0);
        assert_int_equal(count, 1);
        assert_string_equal(mb[0].local, "alice");
        assert_string_equal(mb[0].domain, "mail.example.org");
        msg_mailboxes_free(mb, count);
    }
    assert_int_equal(froms, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_field_raw_and_is),
        cmocka_unit_test(test_address_lists),
        cmocka_unit_test(test_mailbox_limit),
        cmocka_unit_test(test_deep_comment),
        cmocka_unit_test(test_from_in_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
