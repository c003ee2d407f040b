/*
 * test_data - the DATA/BDAT content decoder (smtp/data.h), home of the
 * SMTP smuggling defence.
 *
 * data_decode cases are a table of (input, max, expected content, bytes
 * consumed, done, bad_newline, nul, too_big). Each input is fed whole, one
 * byte at a time, and split in two at every position; all feedings must
 * agree. The decoder starts at the beginning of a line: the CRLF that ended
 * the DATA command counts as the first CRLF of <CRLF>.<CRLF>.
 *
 * data_chunk cases are lists of BDAT chunks, each chunk fed whole and one
 * byte at a time, then data_chunk_end when the last chunk was LAST.
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
#include "smtp/data.h"

#define ALL SIZE_MAX /* "consumes the whole input" */

struct decode_case {
    const char *name;
    const char *in;
    size_t n;
    uint64_t max;
    const char *out;   /* expected decoded content; NULL = not checked (failed input) */
    size_t out_n;
    size_t consumed;   /* ALL or the byte count */
    bool done, bad_newline, nul, too_big;
};

#define IN(s) s, sizeof(s) - 1
#define OUT(s) s, sizeof(s) - 1
#define NOOUT NULL, 0

/* The five end-of-data variants from the 2023 SMTP smuggling research
 * (SEC Consult; Longin/Möller), which some receivers take for <CRLF>.<CRLF>. */
static const struct {
    const char *name;
    const char *seq;
} smuggle[] = {
    { "LF.LF", "\n.\n" },
    { "LF.CRLF", "\n.\r\n" },
    { "CRLF.LF", "\r\n.\n" },
    { "CR.CR", "\r.\r" },
    { "CRLF.CR", "\r\n.\r" },
};
#define NSMUGGLE (sizeof(smuggle) / sizeof(smuggle[0]))

static const struct decode_case decode_cases[] = {
    /* ends */
    { "empty message", IN(".\r\n"), 10000, OUT(""), ALL, true, false, false, false },
    { "one line", IN("abc\r\n.\r\n"), 10000, OUT("abc\r\n"), ALL, true, false, false, false },
    { "two lines", IN("Subject: x\r\n\r\nbody\r\n.\r\n"), 10000, OUT("Subject: x\r\n\r\nbody\r\n"),
      ALL, true, false, false, false },
    { "empty lines", IN("\r\n\r\n.\r\n"), 10000, OUT("\r\n\r\n"), ALL, true, false, false, false },
    { "stops at terminator", IN("abc\r\n.\r\nMAIL FROM:<a@b>\r\n"), 10000, OUT("abc\r\n"), 8, true,
      false, false, false },
    { "stops at immediate terminator", IN(".\r\nQUIT\r\n"), 10000, OUT(""), 3, true, false, false,
      false },
    /* dot-stuffing (RFC 5321 4.5.2) */
    { "stuffed dot", IN("..x\r\n.\r\n"), 10000, OUT(".x\r\n"), ALL, true, false, false, false },
    { "stuffed lone dot", IN("a\r\n..\r\n.\r\n"), 10000, OUT("a\r\n.\r\n"), ALL, true, false, false,
      false },
    { "stuffed two dots", IN("a\r\n...\r\n.\r\n"), 10000, OUT("a\r\n..\r\n"), ALL, true, false,
      false, false },
    { "leading dot with text", IN("a\r\n.b\r\n.\r\n"), 10000, OUT("a\r\nb\r\n"), ALL, true, false,
      false, false },
    { "dot mid-line is content", IN("a.b\r\nc.\r\n.\r\n"), 10000, OUT("a.b\r\nc.\r\n"), ALL, true,
      false, false, false },
    { "dot space is not end", IN(". \r\n.\r\n"), 10000, OUT(" \r\n"), ALL, true, false, false,
      false },
    /* not finished yet */
    { "no input", IN(""), 10000, OUT(""), ALL, false, false, false, false },
    { "partial line", IN("abc"), 10000, OUT("abc"), ALL, false, false, false, false },
    { "line, no terminator", IN("abc\r\n"), 10000, OUT("abc\r\n"), ALL, false, false, false,
      false },
    { "pending dot", IN("abc\r\n."), 10000, OUT("abc\r\n"), ALL, false, false, false, false },
    { "pending dot CR", IN("abc\r\n.\r"), 10000, OUT("abc\r\n"), ALL, false, false, false,
      false },
    { "pending CR", IN("abc\r"), 10000, NOOUT, ALL, false, false, false, false },
    /* bare line endings are flagged and never end the data */
    { "bare LF", IN("a\nb\r\n.\r\n"), 10000, NOOUT, ALL, true, true, false, false },
    { "bare CR", IN("a\rb\r\n.\r\n"), 10000, NOOUT, ALL, true, true, false, false },
    { "CR CR LF", IN("a\r\r\n.\r\n"), 10000, NOOUT, ALL, true, true, false, false },
    { "LF at start", IN("\nx\r\n.\r\n"), 10000, NOOUT, ALL, true, true, false, false },
    { "dot then bare LF", IN("a\r\n.\n.\r\n"), 10000, NOOUT, ALL, false, true, false, false },
    { "dot CR x", IN("a\r\n.\rx\r\n.\r\n"), 10000, NOOUT, ALL, true, true, false, false },
    /* the DATA command's CRLF + ".<LF>" / ".<CR>" */
    { "DATA CRLF . LF", IN(".\nMAIL FROM:<e@x>\r\n"), 10000, NOOUT, ALL, false, true, false,
      false },
    { "DATA CRLF . CR", IN(".\rMAIL FROM:<e@x>\r\n"), 10000, NOOUT, ALL, false, true, false,
      false },
    { "DATA CRLF . CR, then end", IN(".\rx\r\n.\r\n"), 10000, NOOUT, ALL, true, true, false,
      false },
    /* NUL */
    { "NUL", IN("a\0b\r\n.\r\n"), 10000, NOOUT, ALL, true, false, true, false },
    { "NUL at start", IN("\0\r\n.\r\n"), 10000, NOOUT, ALL, true, false, true, false },
    /* size */
    { "exactly max", IN("abc\r\n.\r\n"), 5, OUT("abc\r\n"), ALL, true, false, false, false },
    { "one over max", IN("abcd\r\n.\r\n"), 5, NOOUT, ALL, true, false, false, true },
    { "far over max", IN("abcdefghijklmnop\r\nqrstuvwxyz\r\n.\r\n"), 5, NOOUT, ALL, true, false,
      false, true },
    { "max 0, empty", IN(".\r\n"), 0, OUT(""), ALL, true, false, false, false },
    { "max 0, one byte", IN("x\r\n.\r\n"), 0, NOOUT, ALL, true, false, false, true },
    { "stuffing does not count", IN("..\r\n.\r\n"), 3, OUT(".\r\n"), ALL, true, false, false,
      false },
};
#define NDECODE (sizeof(decode_cases) / sizeof(decode_cases[0]))

struct decode_result {
    struct data_decoder d;
    struct buf out;
    size_t consumed;
    bool done;
};

/* Feed in pieces: split[] holds the piece boundaries (ascending, < n). */
static void decode_split(const struct decode_case *c, const size_t *cuts, size_t ncut,
                         struct decode_result *r)
{
    data_begin(&r->d, c->max);
    buf_init(&r->out);
    r->consumed = 0;
    r->done = false;
    size_t start = 0;
    for (size_t k = 0; k <= ncut && !r->done; k++) {
        size_t end = k < ncut ? cuts[k] : c->n;
        size_t len = end - start;
        /* exact-size heap copy: reading past the piece is an ASan error */
        char *piece = malloc(len ? len : 1);
        assert_non_null(piece);
        memcpy(piece, c->in + start, len);
        bool done = true; /* must be overwritten */
        size_t used = data_decode(&r->d, piece, len, &r->out, &done);
        free(piece);
        assert_true(used <= len);
        if (!done && used != len)
            fail_msg("%s: not done but consumed %zu of %zu", c->name, used, len);
        r->consumed += used;
        r->done = done;
        start = end;
    }
}

static void check_decode(const struct decode_case *c, const char *how, struct decode_result *r)
{
    size_t want_consumed = c->consumed == ALL ? c->n : c->consumed;
    if (r->done != c->done)
        fail_msg("%s (%s): done=%d, want %d", c->name, how, r->done, c->done);
    if (r->consumed != want_consumed)
        fail_msg("%s (%s): consumed %zu, want %zu", c->name, how, r->consumed, want_consumed);
    if (r->d.bad_newline != c->bad_newline)
        fail_msg("%s (%s): bad_newline=%d, want %d", c->name, how, r->d.bad_newline,
                 c->bad_newline);
    if (r->d.nul != c->nul)
        fail_msg("%s (%s): nul=%d, want %d", c->name, how, r->d.nul, c->nul);
    if (r->d.too_big != c->too_big)
        fail_msg("%s (%s): too_big=%d, want %d", c->name, how, r->d.too_big, c->too_big);
    bool failed = c->bad_newline || c->nul || c->too_big;
    if (data_failed(&r->d) != failed)
        fail_msg("%s (%s): data_failed=%d, want %d", c->name, how, data_failed(&r->d), failed);
    /* Never more than max is stored. */
    if (buf_size(&r->out) > c->max)
        fail_msg("%s (%s): stored %zu bytes, max %llu", c->name, how, buf_size(&r->out),
                 (unsigned long long)c->max);
    if (c->out != NULL) {
        if (buf_size(&r->out) != c->out_n || memcmp(buf_ptr(&r->out), c->out, c->out_n) != 0)
            fail_msg("%s (%s): decoded [%.*s] (%zu), want [%.*s] (%zu)", c->name, how,
                     (int)buf_size(&r->out), buf_ptr(&r->out), buf_size(&r->out), (int)c->out_n,
                     c->out, c->out_n);
        /* size counts decoded bytes (after unstuffing) */
        if (r->d.size != c->out_n)
            fail_msg("%s (%s): size=%llu, want %zu", c->name, how, (unsigned long long)r->d.size,
                     c->out_n);
    }
}

static void run_decode_case(const struct decode_case *c)
{
    struct decode_result whole, r;
    char how[64];

    decode_split(c, NULL, 0, &whole);
    check_decode(c, "whole", &whole);

    /* one byte at a time */
    size_t *cuts = malloc((c->n ? c->n : 1) * sizeof(*cuts));
    assert_non_null(cuts);
    for (size_t i = 1; i < c->n; i++)
        cuts[i - 1] = i;
    decode_split(c, cuts, c->n ? c->n - 1 : 0, &r);
    check_decode(c, "bytewise", &r);
    buf_free(&r.out);
    free(cuts);

    /* two pieces, split at every position */
    for (size_t cut = 1; cut < c->n; cut++) {
        snprintf(how, sizeof(how), "split at %zu", cut);
        decode_split(c, &cut, 1, &r);
        check_decode(c, how, &r);
        buf_free(&r.out);
    }
    buf_free(&whole.out);
}

static void test_decode_table(void **state)
{
    for (size_t i = 0; i < NDECODE; i++)
        run_decode_case(&decode_cases[i]);
}

/* Each smuggling sequence in mid-message, followed by what an attacker
 * would smuggle: the data must not end there, and it must be flagged. Then
 * the real <CRLF>.<CRLF> ends it, still flagged. */
static void test_decode_smuggling(void **state)
{
    static const char tail[] = "MAIL FROM:<evil@x>\r\nRCPT TO:<a@localhost>\r\nDATA\r\nsmuggled\r\n";
    for (size_t v = 0; v < NSMUGGLE; v++) {
        for (int with_end = 0; with_end < 2; with_end++) {
            char in[256];
            int n = snprintf(in, sizeof(in), "Subject: t\r\n\r\nhello%s%s%s", smuggle[v].seq, tail,
                             with_end ? "\r\n.\r\n" : "");
            char name[64];
            snprintf(name, sizeof(name), "smuggle %s%s", smuggle[v].name,
                     with_end ? " + real end" : "");
            struct decode_case c = {
                .name = name, .in = in, .n = (size_t)n, .max = 10000, .out = NULL,
                .consumed = ALL, .done = with_end, .bad_newline = true,
            };
            run_decode_case(&c);
        }
        /* The variant at the very start (right after "DATA<CRLF>") for the
         * sequences that begin with the CRLF the command line supplies. */
        if (smuggle[v].seq[0] == '\r' && smuggle[v].seq[1] == '\n') {
            char in[256];
            int n = snprintf(in, sizeof(in), "%s%s", smuggle[v].seq + 2, tail);
            char name[64];
            snprintf(name, sizeof(name), "smuggle %s at start", smuggle[v].name);
            struct decode_case c = {
                .name = name, .in = in, .n = (size_t)n, .max = 10000, .out = NULL,
                .consumed = ALL, .done = false, .bad_newline = true,
            };
            run_decode_case(&c);
        }
    }
}

/* The decoder is reusable after data_begin, and errors do not leak. */
static void test_decode_begin_resets(void **state)
{
    struct data_decoder d;
    struct buf out;
    bool done;
    buf_init(&out);
    data_begin(&d, 3);
    data_decode(&d, "a\0\nbcdef", 8, &out, &done);
    assert_true(d.bad_newline && d.nul && d.too_big);
    assert_true(data_failed(&d));
    buf_reset(&out);
    data_begin(&d, 100);
    assert_false(data_failed(&d));
    assert_int_equal(d.size, 0);
    size_t used = data_decode(&d, "ok\r\n.\r\n", 7, &out, &done);
    assert_true(done);
    assert_int_equal(used, 7);
    assert_false(data_failed(&d));
    assert_int_equal(buf_size(&out), 4);
    assert_memory_equal(buf_ptr(&out), "ok\r\n", 4);
    buf_free(&out);
}

/* A large message: size keeps counting past max. */
static void test_decode_size_counts_past_max(void **state)
{
    struct data_decoder d;
    struct buf out;
    bool done = false;
    char line[100];
    memset(line, 'x', 98);
    line[98] = '\r';
    line[99] = '\n';
    buf_init(&out);
    data_begin(&d, 1000);
    for (int i = 0; i < 30; i++) {
        size_t used = data_decode(&d, line, sizeof(line), &out, &done);
        assert_int_equal(used, sizeof(line));
        assert_false(done);
    }
    data_decode(&d, ".\r\n", 3, &out, &done);
    assert_true(done);
    assert_true(d.too_big);
    assert_int_equal(d.size, 3000);
    assert_true(buf_size(&out) <= 1000);
    buf_free(&out);
}

/* ------------------------------------------------------------ data_chunk */

struct chunk_case {
    const char *name;
    const char *chunks[5]; /* NULL-terminated; lengths by strlen unless lens given */
    size_t lens[5];        /* 0 = strlen (use lens for NULs) */
    bool last;             /* call data_chunk_end */
    uint64_t max;
    const char *out;       /* NULL = not checked */
    bool bad_newline, nul, too_big;
};

static const struct chunk_case chunk_cases[] = {
    { "plain", { "a\r\nb", NULL }, { 0 }, true, 1000, "a\r\nb", false, false, false },
    { "CRLF split across chunks", { "a\r", "\nb", NULL }, { 0 }, true, 1000, "a\r\nb", false,
      false, false },
    { "bare CR across chunks", { "a\r", "b", NULL }, { 0 }, true, 1000, NULL, true, false,
      false },
    { "CR, empty chunk, LF", { "a\r", "", "\nb", NULL }, { 0 }, true, 1000, "a\r\nb", false,
      false, false },
    { "bare LF", { "a\nb", NULL }, { 0 }, true, 1000, NULL, true, false, false },
    { "LF starting a chunk", { "a", "\nb", NULL }, { 0 }, true, 1000, NULL, true, false,
      false },
    { "bare CR", { "a\rb", NULL }, { 0 }, true, 1000, NULL, true, false, false },
    { "CR CR LF", { "a\r\r\n", NULL }, { 0 }, true, 1000, NULL, true, false, false },
    { "CR at end of LAST", { "abc\r", NULL }, { 0 }, true, 1000, NULL, true, false, false },
    { "CR at end, not last yet", { "abc\r", NULL }, { 0 }, false, 1000, "abc\r", false, false,
      false },
    { "CRLF at end of LAST", { "abc\r\n", NULL }, { 0 }, true, 1000, "abc\r\n", false, false,
      false },
    { "NUL", { "a", "b\0c", NULL }, { 0, 3 }, true, 1000, NULL, false, true, false },
    { "no dot handling", { "..x\r\n.\r\n", NULL }, { 0 }, true, 1000, "..x\r\n.\r\n", false,
      false, false },
    { "smuggle LF.LF in chunk", { "a\n.\nb", NULL }, { 0 }, true, 1000, NULL, true, false,
      false },
    { "smuggle CR.CR in chunk", { "a\r.\rb", NULL }, { 0 }, true, 1000, NULL, true, false,
      false },
    { "exactly max", { "abc", "de", NULL }, { 0 }, true, 5, "abcde", false, false, false },
    { "over max", { "abc", "def", NULL }, { 0 }, true, 5, NULL, false, false, true },
    { "over max in one chunk", { "abcdefgh", NULL }, { 0 }, true, 5, NULL, false, false,
      true },
};
#define NCHUNK (sizeof(chunk_cases) / sizeof(chunk_cases[0]))

static void run_chunk_case(const struct chunk_case *c, bool bytewise)
{
    const char *how = bytewise ? "bytewise" : "whole";
    struct data_decoder d;
    struct buf out;
    uint64_t total = 0;
    buf_init(&out);
    data_begin(&d, c->max);
    for (size_t k = 0; c->chunks[k] != NULL; k++) {
        size_t len = c->lens[k] ? c->lens[k] : strlen(c->chunks[k]);
        total += len;
        char *p = malloc(len ? len : 1);
        assert_non_null(p);
        memcpy(p, c->chunks[k], len);
        if (bytewise) {
            for (size_t i = 0; i < len; i++)
                data_chunk(&d, p + i, 1, &out);
            if (len == 0)
                data_chunk(&d, p, 0, &out);
        } else {
            data_chunk(&d, p, len, &out);
        }
        free(p);
    }
    if (c->last)
        data_chunk_end(&d);
    if (d.bad_newline != c->bad_newline)
        fail_msg("chunk %s (%s): bad_newline=%d, want %d", c->name, how, d.bad_newline,
                 c->bad_newline);
    if (d.nul != c->nul)
        fail_msg("chunk %s (%s): nul=%d, want %d", c->name, how, d.nul, c->nul);
    if (d.too_big != c->too_big)
        fail_msg("chunk %s (%s): too_big=%d, want %d", c->name, how, d.too_big, c->too_big);
    if (data_failed(&d) != (c->bad_newline || c->nul || c->too_big))
        fail_msg("chunk %s (%s): data_failed wrong", c->name, how);
    if (d.size != total)
        fail_msg("chunk %s (%s): size=%llu, want %llu", c->name, how, (unsigned long long)d.size,
                 (unsigned long long)total);
    if (buf_size(&out) > c->max)
        fail_msg("chunk %s (%s): stored %zu > max", c->name, how, buf_size(&out));
    if (c->out != NULL) {
        size_t n = strlen(c->out);
        if (buf_size(&out) != n || memcmp(buf_ptr(&out), c->out, n) != 0)
            fail_msg("chunk %s (%s): stored [%.*s], want [%s]", c->name, how,
                     (int)buf_size(&out), buf_ptr(&out), c->out);
    }
    buf_free(&out);
}

static void test_chunk_table(void **state)
{
    for (size_t i = 0; i < NCHUNK; i++) {
        run_chunk_case(&chunk_cases[i], false);
        run_chunk_case(&chunk_cases[i], true);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_table),
        cmocka_unit_test(test_decode_smuggling),
        cmocka_unit_test(test_decode_begin_resets),
        cmocka_unit_test(test_decode_size_counts_past_max),
        cmocka_unit_test(test_chunk_table),
    };
    return cmocka_run_group_tests_name("data", tests, NULL, NULL);
}
