/*
 * test_core - core/buf, core/str and log_escape from core/log.
 *
 * Table-driven where the module is a parser (str_to_u64, str_utf8_valid,
 * log_escape). Inputs are copied into heap blocks of exactly their length
 * (no terminating NUL) so that AddressSanitizer catches any read past n.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/str.h"

/* A heap copy of exactly n bytes: reading s[n] is an ASan error. */
static char *exact_copy(const char *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    assert_non_null(c);
    if (n)
        memcpy(c, p, n);
    return c;
}

static void assert_buf_eq(const struct buf *b, const char *want, size_t wn)
{
    if (buf_size(b) != wn || memcmp(buf_ptr(b), want, wn) != 0)
        fail_msg("buf holds %zu bytes \"%.*s\", want %zu bytes \"%.*s\"", buf_size(b),
                 (int)buf_size(b), buf_ptr(b), wn, (int)wn, want);
    /* The contract: data[len] == '\0' whenever data is allocated. */
    if (b->data != NULL)
        assert_int_equal(b->data[b->len], '\0');
}

/* ------------------------------------------------------------------ buf */

static void test_buf_zeroed_is_valid(void **state)
{
    struct buf b;
    memset(&b, 0, sizeof(b));
    assert_string_equal(buf_ptr(&b), "");
    assert_int_equal(buf_size(&b), 0);
    buf_append(&b, "x", 1);
    assert_buf_eq(&b, "x", 1);
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(buf_size(&b), 0);

    buf_init(&b);
    assert_int_equal(buf_size(&b), 0);
    assert_string_equal(buf_ptr(&b), "");
    buf_free(&b);
}

static void test_buf_append(void **state)
{
    struct buf b;
    buf_init(&b);
    buf_append(&b, "ab", 2);
    buf_append(&b, "", 0);
    buf_append_str(&b, "cd");
    buf_append_byte(&b, 'e');
    buf_append(&b, "\0f", 2); /* binary data: len is authoritative */
    assert_buf_eq(&b, "abcde\0f", 7);
    buf_free(&b);
}

static void test_buf_append_grows(void **state)
{
    struct buf b;
    char expect[5000];
    buf_init(&b);
    for (size_t i = 0; i < sizeof(expect); i++) {
        expect[i] = (char)('a' + i % 26);
        buf_append_byte(&b, expect[i]);
        assert_true(b.cap > b.len);
    }
    assert_buf_eq(&b, expect, sizeof(expect));

    /* One big append. */
    struct buf c;
    buf_init(&c);
    buf_append(&c, expect, sizeof(expect));
    assert_buf_eq(&c, expect, sizeof(expect));
    buf_free(&b);
    buf_free(&c);
}

static void test_buf_reserve(void **state)
{
    struct buf b;
    buf_init(&b);
    buf_append_str(&b, "abc");
    buf_reserve(&b, 1000);
    assert_true(b.cap >= b.len + 1000 + 1);
    assert_buf_eq(&b, "abc", 3);
    char *before = b.data;
    /* After reserve, appending up to the reserved amount does not move the data. */
    char big[1000];
    memset(big, 'z', sizeof(big));
    buf_append(&b, big, sizeof(big));
    assert_ptr_equal(b.data, before);
    assert_int_equal(buf_size(&b), 1003);
    buf_free(&b);
}

static void test_buf_printf_lengths(void **state)
{
    /* Around the first allocation sizes and well past them, so both the
     * "fits" and the "retry after growing" paths of vprintf run. */
    char src[700];
    memset(src, 'q', sizeof(src));
    for (size_t len = 0; len < 600; len++) {
        struct buf b;
        buf_init(&b);
        buf_append_str(&b, "<");
        buf_printf(&b, "%.*s|%d", (int)len, src, (int)len);
        char want[800];
        int wn = snprintf(want, sizeof(want), "<%.*s|%d", (int)len, src, (int)len);
        assert_buf_eq(&b, want, (size_t)wn);
        buf_free(&b);
    }
}

static void test_buf_printf_accumulates(void **state)
{
    struct buf b;
    struct buf want;
    buf_init(&b);
    buf_init(&want);
    for (int i = 0; i < 2000; i++) {
        buf_printf(&b, "%d,", i);
        char tmp[16];
        int n = snprintf(tmp, sizeof(tmp), "%d,", i);
        buf_append(&want, tmp, (size_t)n);
    }
    buf_printf(&b, "%s", "");
    assert_buf_eq(&b, buf_ptr(&want), buf_size(&want));
    buf_free(&b);
    buf_free(&want);
}

static void vprintf_helper(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void vprintf_helper(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

static void test_buf_vprintf(void **state)
{
    struct buf b;
    char big[300];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    buf_init(&b);
    vprintf_helper(&b, "%s-%u-%s", "a", 42u, big);
    char want[400];
    int n = snprintf(want, sizeof(want), "a-42-%s", big);
    assert_buf_eq(&b, want, (size_t)n);
    buf_free(&b);
}

static void test_buf_consume_compact(void **state)
{
    struct buf b;
    buf_init(&b);
    buf_append_str(&b, "hello world");
    buf_consume(&b, 6);
    assert_buf_eq(&b, "world", 5);
    buf_consume(&b, 0);
    assert_buf_eq(&b, "world", 5);

    /* Appending after a consume keeps the live bytes in order. */
    buf_append_str(&b, "!!");
    assert_buf_eq(&b, "world!!", 7);

    buf_compact(&b);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, 7);
    assert_buf_eq(&b, "world!!", 7);
    assert_memory_equal(b.data, "world!!", 8); /* includes the NUL */

    buf_consume(&b, 7);
    assert_int_equal(buf_size(&b), 0);
    assert_string_equal(buf_ptr(&b), "");
    buf_append_str(&b, "again");
    assert_buf_eq(&b, "again", 5);
    buf_free(&b);
}

static void test_buf_consume_then_grow(void **state)
{
    /* A consumer that drops a prefix while a producer appends (the session
     * output buffer pattern): the live bytes must survive any reallocation
     * or compaction that buf_reserve decides to do. */
    struct buf b, model;
    buf_init(&b);
    buf_init(&model);
    unsigned seed = 1;
    for (int round = 0; round < 3000; round++) {
        seed = seed * 1103515245u + 12345u;
        size_t add = (seed >> 16) % 97;
        for (size_t i = 0; i < add; i++) {
            char c = (char)('A' + (round + i) % 26);
            buf_append_byte(&b, c);
            buf_append_byte(&model, c);
        }
        seed = seed * 1103515245u + 12345u;
        size_t live = buf_size(&b);
        size_t take = live ? ((seed >> 16) % (live + 1)) : 0;
        buf_consume(&b, take);
        buf_consume(&model, take);
        assert_buf_eq(&b, buf_ptr(&model), buf_size(&model));
        if (round % 17 == 0) {
            buf_compact(&b);
            assert_int_equal(b.off, 0);
            assert_buf_eq(&b, buf_ptr(&model), buf_size(&model));
        }
    }
    buf_free(&b);
    buf_free(&model);
}

static void test_buf_reset(void **state)
{
    struct buf b;
    buf_init(&b);
    buf_append_str(&b, "some text here");
    buf_consume(&b, 3);
    size_t cap = b.cap;
    char *data = b.data;
    buf_reset(&b);
    assert_int_equal(buf_size(&b), 0);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.cap, cap);      /* keeps the allocation */
    assert_ptr_equal(b.data, data);
    assert_string_equal(buf_ptr(&b), "");
    buf_append_str(&b, "x");
    assert_buf_eq(&b, "x", 1);
    buf_free(&b);
}

/* ----------------------------------------------------------- str_to_u64 */

struct u64_case {
    const char *in;
    size_t n; /* bytes of in to pass; SIZE_MAX = strlen */
    uint64_t max;
    int rc;
    uint64_t val;
};

static const struct u64_case u64_cases[] = {
    { "0", SIZE_MAX, UINT64_MAX, 0, 0 },
    { "7", SIZE_MAX, UINT64_MAX, 0, 7 },
    { "123", SIZE_MAX, UINT64_MAX, 0, 123 },
    { "007", SIZE_MAX, UINT64_MAX, 0, 7 },
    { "00000000000000000001", SIZE_MAX, UINT64_MAX, 0, 1 }, /* 20 digits */
    { "18446744073709551615", SIZE_MAX, UINT64_MAX, 0, UINT64_MAX },
    { "18446744073709551614", SIZE_MAX, UINT64_MAX, 0, UINT64_MAX - 1 },
    { "18446744073709551616", SIZE_MAX, UINT64_MAX, -1, 0 }, /* max + 1 */
    { "18446744073709551620", SIZE_MAX, UINT64_MAX, -1, 0 },
    { "99999999999999999999", SIZE_MAX, UINT64_MAX, -1, 0 },
    { "184467440737095516150", SIZE_MAX, UINT64_MAX, -1, 0 }, /* 21 digits */
    { "36893488147419103232", SIZE_MAX, UINT64_MAX, -1, 0 },  /* 2^65 */
    { "", SIZE_MAX, UINT64_MAX, -1, 0 },
    { "+1", SIZE_MAX, UINT64_MAX, -1, 0 },
    { "-1", SIZE_MAX, UINT64_MAX, -1, 0 },
    { "-0", SIZE_MAX, UINT64_MAX, -1, 0 },
    { " 1", SIZE_MAX, UINT64_MAX, -1, 0 },
    { "1 ", SIZE_MAX, UINT64_MAX, -1, 0 },
    { "1a", SIZE_MAX, UINT64_MAX, -1, 0 },
    { "0x10", SIZE_MAX, UINT64_MAX, -1, 0 },
    { "1.5", SIZE_MAX, UINT64_MAX, -1, 0 },
    { "1e3", SIZE_MAX, UINT64_MAX, -1, 0 },
    { "\t1", SIZE_MAX, UINT64_MAX, -1, 0 },
    /* caller's maximum */
    { "10", SIZE_MAX, 10, 0, 10 },
    { "11", SIZE_MAX, 10, -1, 0 },
    { "0", SIZE_MAX, 0, 0, 0 },
    { "1", SIZE_MAX, 0, -1, 0 },
    { "10000", SIZE_MAX, 10000, 0, 10000 },
    { "10001", SIZE_MAX, 10000, -1, 0 },
    /* bounded by n, not by the NUL */
    { "12345", 2, UINT64_MAX, 0, 12 },
    { "12x45", 2, UINT64_MAX, 0, 12 },
    { "12345", 0, UINT64_MAX, -1, 0 },
    { "1\0002", 3, UINT64_MAX, -1, 0 },
};

static void test_str_to_u64(void **state)
{
    for (size_t i = 0; i < sizeof(u64_cases) / sizeof(u64_cases[0]); i++) {
        const struct u64_case *c = &u64_cases[i];
        size_t n = c->n == SIZE_MAX ? strlen(c->in) : c->n;
        char *p = exact_copy(c->in, n);
        uint64_t out = 0xdeadbeefULL;
        int rc = str_to_u64(p, n, c->max, &out);
        if (rc != c->rc)
            fail_msg("str_to_u64(\"%.*s\", max=%llu) = %d, want %d", (int)n, c->in,
                     (unsigned long long)c->max, rc, c->rc);
        if (c->rc == 0 && out != c->val)
            fail_msg("str_to_u64(\"%.*s\") value %llu, want %llu", (int)n, c->in,
                     (unsigned long long)out, (unsigned long long)c->val);
        if (c->rc != 0 && rc != 0 && out != 0xdeadbeefULL)
            fail_msg("str_to_u64(\"%.*s\") wrote *out on error", (int)n, c->in);
        free(p);
    }
}

/* ------------------------------------------------------- str_utf8_valid */

struct utf8_case {
    const char *in;
    size_t n;
    bool valid;
    const char *what;
};

#define U8(s, v, w) { s, sizeof(s) - 1, v, w }

static const struct utf8_case utf8_cases[] = {
    U8("", true, "empty"),
    U8("plain ascii", true, "ascii"),
    U8("a\0b", true, "NUL is a valid code point"),
    U8("\x7f", true, "DEL"),
    U8("\xc2\x80", true, "U+0080 smallest 2-byte"),
    U8("\xc3\xa9", true, "e acute"),
    U8("\xdf\xbf", true, "U+07FF largest 2-byte"),
    U8("\xe0\xa0\x80", true, "U+0800 smallest 3-byte"),
    U8("\xe2\x82\xac", true, "euro sign"),
    U8("\xed\x9f\xbf", true, "U+D7FF just below surrogates"),
    U8("\xee\x80\x80", true, "U+E000 just above surrogates"),
    U8("\xef\xbf\xbf", true, "U+FFFF"),
    U8("\xf0\x90\x80\x80", true, "U+10000 smallest 4-byte"),
    U8("\xf0\x9d\x84\x9e", true, "G clef"),
    U8("\xf4\x8f\xbf\xbf", true, "U+10FFFF largest"),
    U8("\xce\xb4\xce\xbf\xce\xba\xce\xb9\xce\xbc\xce\xae", true, "greek word"),
    /* overlong forms */
    U8("\xc0\x80", false, "overlong NUL"),
    U8("\xc0\xaf", false, "overlong slash 2-byte"),
    U8("\xc1\xbf", false, "overlong U+007F"),
    U8("\xe0\x80\xaf", false, "overlong slash 3-byte"),
    U8("\xe0\x9f\xbf", false, "overlong U+07FF"),
    U8("\xf0\x80\x80\xaf", false, "overlong slash 4-byte"),
    U8("\xf0\x8f\xbf\xbf", false, "overlong U+FFFF"),
    /* surrogates */
    U8("\xed\xa0\x80", false, "U+D800"),
    U8("\xed\xad\xbf", false, "U+DB7F"),
    U8("\xed\xb0\x80", false, "U+DC00"),
    U8("\xed\xbf\xbf", false, "U+DFFF"),
    U8("\xed\xa0\xbd\xed\xb2\xa9", false, "CESU-8 surrogate pair"),
    /* beyond Unicode */
    U8("\xf4\x90\x80\x80", false, "U+110000"),
    U8("\xf5\x80\x80\x80", false, "F5 lead"),
    U8("\xf7\xbf\xbf\xbf", false, "U+1FFFFF"),
    U8("\xf8\x88\x80\x80\x80", false, "5-byte form"),
    U8("\xfc\x84\x80\x80\x80\x80", false, "6-byte form"),
    U8("\xfe", false, "FE"),
    U8("\xff", false, "FF"),
    /* stray continuation bytes */
    U8("\x80", false, "lone continuation 80"),
    U8("\xbf", false, "lone continuation BF"),
    U8("a\x80z", false, "continuation in ascii"),
    U8("\xc3\xa9\xa9", false, "extra continuation"),
    /* truncated sequences */
    U8("\xc3", false, "truncated 2-byte"),
    U8("\xe2\x82", false, "truncated 3-byte"),
    U8("\xf0\x9d\x84", false, "truncated 4-byte"),
    U8("abc\xe2", false, "truncated at end"),
    /* bad continuation */
    U8("\xc3\x28", false, "2-byte with ascii continuation"),
    U8("\xe2\x28\xa1", false, "3-byte bad second"),
    U8("\xe2\x82\x28", false, "3-byte bad third"),
    U8("\xf0\x28\x8c\xbc", false, "4-byte bad second"),
    U8("\xf0\x90\x8c\x28", false, "4-byte bad fourth"),
    U8("\xc3\xc3\xa9", false, "lead where continuation expected"),
};

static void test_str_utf8_valid(void **state)
{
    for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
        const struct utf8_case *c = &utf8_cases[i];
        char *p = exact_copy(c->in, c->n);
        bool v = str_utf8_valid(p, c->n);
        if (v != c->valid)
            fail_msg("str_utf8_valid(%s) = %d, want %d", c->what, v, c->valid);
        free(p);
    }
    /* Bounded by n: a valid 2-byte sequence cut by n is truncated. */
    char *p = exact_copy("\xc3\xa9", 2);
    assert_false(str_utf8_valid(p, 1));
    assert_true(str_utf8_valid(p, 0));
    free(p);
}

/* ---------------------------------------------- str_ieq, iprefix, lower */

static void test_str_case_helpers(void **state)
{
    assert_true(str_ieq("EHLO", 4, "ehlo"));
    assert_true(str_ieq("eHlO", 4, "EHLO"));
    assert_false(str_ieq("EHLO", 3, "ehlo"));
    assert_false(str_ieq("EHLOX", 5, "ehlo"));
    assert_false(str_ieq("EHLP", 4, "ehlo"));
    assert_true(str_ieq("", 0, ""));
    /* Only ASCII letters fold: '@' (0x40) and '`' (0x60) differ by 0x20. */
    assert_false(str_ieq("@", 1, "`"));
    assert_false(str_ieq("[", 1, "{"));

    /* Every byte: hex digits of either case, nothing else. */
    for (int c = 0; c < 256; c++) {
        const char *digits = "0123456789abcdef", *p;
        int want = -1;
        if (c != 0 && (p = strchr(digits, c)) != NULL)
            want = (int)(p - digits);
        else if (c >= 'A' && c <= 'F')
            want = c - 'A' + 10;
        assert_int_equal(ascii_hex_value((char)c), want);
    }

    assert_true(str_iprefix("MAIL FROM:<a@b>", 15, "mail from:"));
    assert_false(str_iprefix("MAIL FRO", 8, "mail from:"));
    assert_true(str_iprefix("x", 1, ""));

    char s[] = "MiXeD@Case.ORG[]";
    str_lower(s);
    assert_string_equal(s, "mixed@case.org[]");
    char u[] = "\xc3\x89X"; /* non-ASCII untouched */
    str_lower(u);
    assert_string_equal(u, "\xc3\x89x");

    char dst[4];
    assert_int_equal(str_lcpy(dst, "abcdef", sizeof(dst)), 6);
    assert_string_equal(dst, "abc");
    assert_int_equal(str_lcpy(dst, "ab", sizeof(dst)), 2);
    assert_string_equal(dst, "ab");
}

/* ----------------------------------------------------------- log_escape */

struct esc_case {
    const char *in;
    size_t n;
    const char *out;     /* expected, hex digits in lower case */
};

#define E(s, o) { s, sizeof(s) - 1, o }

static const struct esc_case esc_cases[] = {
    E("abc", "abc"),
    E("1.2.3.4", "1.2.3.4"),
    E("mx.example.com", "mx.example.com"),
    E("<user@example.com>", "<user@example.com>"),
    E("", "\"\""),
    E("a b", "\"a b\""),
    E(" ", "\" \""),
    E("a\"b", "\"a\\\"b\""),
    E("\"", "\"\\\"\""),
    E("a \\b", "\"a \\\\b\""),
    E("a\nb", "\"a\\nb\""),
    E("a\rb", "\"a\\rb\""),
    E("a\tb", "\"a\\tb\""),
    E("line\r\nevent=forged", "\"line\\r\\nevent=forged\""),
    E("x event=forged", "\"x event=forged\""),
    E("a=b", "\"a=b\""),
    E("a\0b", "\"a\\x00b\""),
    E("\x01", "\"\\x01\""),
    E("\x1b[31m", "\"\\x1b[31m\""),
    E("\x7f", "\"\\x7f\""),
    E("\x80", "\"\\x80\""),
    E("\xff", "\"\\xff\""),
    E("caf\xc3\xa9", "\"caf\\xc3\\xa9\""),
};

/* Equal, except that the two hex digits after a \x may differ in case. */
static bool esc_equal(const char *got, size_t gn, const char *want)
{
    size_t wn = strlen(want);
    if (gn != wn)
        return false;
    for (size_t i = 0; i < wn; i++) {
        char g = got[i], w = want[i];
        bool hex = i >= 2 && want[i - 2] == '\\' && want[i - 1] == 'x';
        bool hex2 = i >= 3 && want[i - 3] == '\\' && want[i - 2] == 'x';
        if ((hex || hex2) && g >= 'A' && g <= 'F')
            g = (char)(g + 32);
        if (g != w)
            return false;
    }
    return true;
}

static void test_log_escape(void **state)
{
    for (size_t i = 0; i < sizeof(esc_cases) / sizeof(esc_cases[0]); i++) {
        const struct esc_case *c = &esc_cases[i];
        char *p = exact_copy(c->in, c->n);
        struct buf b;
        buf_init(&b);
        buf_append_str(&b, "k=");
        log_escape(&b, p, c->n);
        /* It appends: the prefix stays. */
        assert_memory_equal(buf_ptr(&b), "k=", 2);
        if (!esc_equal(buf_ptr(&b) + 2, buf_size(&b) - 2, c->out))
            fail_msg("log_escape case %zu: got [%.*s], want [%s]", i, (int)buf_size(&b) - 2,
                     buf_ptr(&b) + 2, c->out);
        free(p);
        buf_free(&b);
    }
}

/* Every byte value: the escaped form is one line of printable ASCII with
 * no unescaped quote, so untrusted bytes can never break a log line. */
static void test_log_escape_all_bytes(void **state)
{
    for (int c = 0; c < 256; c++) {
        char in[3] = { 'a', (char)c, 'b' };
        struct buf b;
        buf_init(&b);
        log_escape(&b, in, 3);
        const char *o = buf_ptr(&b);
        size_t n = buf_size(&b);
        assert_true(n >= 3);
        for (size_t i = 0; i < n; i++) {
            unsigned char u = (unsigned char)o[i];
            if (u < 0x20 || u >= 0x7f)
                fail_msg("byte 0x%02x: escaped output has raw byte 0x%02x", c, u);
        }
        bool quoted = o[0] == '"';
        if (quoted) {
            assert_int_equal(o[n - 1], '"');
            /* inside, every quote is escaped */
            for (size_t i = 1; i + 1 < n; i++) {
                if (o[i] == '\\') {
                    i++;
                    continue;
                }
                if (o[i] == '"')
                    fail_msg("byte 0x%02x: unescaped quote in %.*s", c, (int)n, o);
            }
        } else {
            /* unquoted means plain token: no space, no quote, no '=' */
            for (size_t i = 0; i < n; i++)
                if (o[i] == ' ' || o[i] == '"' || o[i] == '=')
                    fail_msg("byte 0x%02x: unquoted output %.*s is not a token", c, (int)n, o);
        }
        buf_free(&b);
    }
}

/* A whole line through log_kv: one line, escaped values, ends with LF. */
static void test_log_line(void **state)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    log_set_fd(fds[1]);
    log_set_level(MW_LOG_DEBUG);
    log_kv(MW_LOG_INFO, "connect", "client", "1.2.3.4 x", "helo", "a\nevent=forged", NULL);

    struct log_line l;
    log_begin(&l, MW_LOG_WARN, "rcpt");
    log_str(&l, "rcpt", "u@localhost");
    log_u64(&l, "size", 18446744073709551615ULL);
    log_mem(&l, "raw", "a\0b", 3);
    log_end(&l);

    log_set_fd(2);
    close(fds[1]);
    char out[4096];
    size_t n = 0;
    ssize_t r;
    while ((r = read(fds[0], out + n, sizeof(out) - 1 - n)) > 0)
        n += (size_t)r;
    close(fds[0]);
    out[n] = '\0';

    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    *nl = '\0';
    const char *l1 = out;
    const char *l2 = nl + 1;
    assert_non_null(strstr(l1, "level=info"));
    assert_non_null(strstr(l1, " event=connect"));
    assert_non_null(strstr(l1, " client=\"1.2.3.4 x\""));
    assert_non_null(strstr(l1, " helo=\"a\\nevent=forged\""));
    assert_true(strncmp(l1, "ts=", 3) == 0);

    nl = strchr(l2, '\n');
    assert_non_null(nl);
    assert_string_equal(nl + 1, ""); /* exactly two lines */
    *nl = '\0';
    assert_non_null(strstr(l2, "level=warn"));
    assert_non_null(strstr(l2, " event=rcpt"));
    assert_non_null(strstr(l2, " rcpt=u@localhost"));
    assert_non_null(strstr(l2, " size=18446744073709551615"));
    assert_non_null(strstr(l2, " raw=\"a\\x00b\""));
}

static void test_log_level_filter(void **state)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    log_set_fd(fds[1]);
    log_set_level(MW_LOG_WARN);
    log_kv(MW_LOG_INFO, "dropped", "k", "v", NULL);
    log_kv(MW_LOG_ERROR, "kept", "k", "v", NULL);
    log_set_fd(2);
    log_set_level(MW_LOG_INFO);
    close(fds[1]);
    char out[1024];
    size_t n = 0;
    ssize_t r;
    while ((r = read(fds[0], out + n, sizeof(out) - 1 - n)) > 0)
        n += (size_t)r;
    close(fds[0]);
    out[n] = '\0';
    assert_null(strstr(out, "dropped"));
    assert_non_null(strstr(out, "event=kept"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_zeroed_is_valid),
        cmocka_unit_test(test_buf_append),
        cmocka_unit_test(test_buf_append_grows),
        cmocka_unit_test(test_buf_reserve),
        cmocka_unit_test(test_buf_printf_lengths),
        cmocka_unit_test(test_buf_printf_accumulates),
        cmocka_unit_test(test_buf_vprintf),
        cmocka_unit_test(test_buf_consume_compact),
        cmocka_unit_test(test_buf_consume_then_grow),
        cmocka_unit_test(test_buf_reset),
        cmocka_unit_test(test_str_to_u64),
        cmocka_unit_test(test_str_utf8_valid),
        cmocka_unit_test(test_str_case_helpers),
        cmocka_unit_test(test_log_escape),
        cmocka_unit_test(test_log_escape_all_bytes),
        cmocka_unit_test(test_log_line),
        cmocka_unit_test(test_log_level_filter),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
