/*
 * test_dkim - DKIM (dkim/dkim.h, dkim/dkim_int.h) and Authentication-Results
 * (msg/authres.h).
 *
 * 1. Tag-list parser: valid lists (with folding, empty values, trailing ';')
 *    and invalid ones (duplicates, bad names, empty tag-specs, bad bytes),
 *    each parsed from a heap block of exactly its length; base64 with FWS.
 * 2. Canonicalization: the RFC 6376 section 3.4.5 example exactly.
 * 3. Sign-then-verify over an in-memory zone (dns_zone_parse): RSA and
 *    Ed25519 in all four canonicalization pairs; tampering; l=; x=; revoked
 *    key; t=s; rsa-sha1; a 512-bit RSA key; DNS temporary failure; no
 *    signature; the step interface.
 * 4. The RFC 8463 Appendix A message ($MW_TESTDATA), keys and DNS from
 *    dns.json: both signatures pass at t=1528637909.
 * 5. The Authentication-Results builder.
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
#include "core/fsutil.h"
#include "core/xmalloc.h"
#include "dkim/dkim.h"
#include "dkim/dkim_int.h"
#include "dns/zone.h"
#include "msg/authres.h"

/* ------------------------------------------------------------------ tags */

static int parse_exact(const char *s, struct dkim_tags *t, const char **why)
{
    size_t n = strlen(s);
    char *p = xmalloc(n ? n : 1);
    memcpy(p, s, n);
    int rc = dkim_tags_parse(p, n, t, why);
    /* values point into p: copy what the caller checks before freeing */
    static char vals[8][128];
    for (size_t i = 0; rc == 0 && i < t->n && i < 8; i++) {
        size_t k = t->tag[i].val_len < 127 ? t->tag[i].val_len : 127;
        memcpy(vals[i], t->tag[i].val, k);
        vals[i][k] = '\0';
        t->tag[i].val = vals[i];
        t->tag[i].name = NULL;
    }
    xfree(p);
    return rc;
}

static void test_tags_valid(void **state)
{
    static const struct {
        const char *in;
        size_t n;
        const char *first_val, *last_val;
    } cases[] = {
        { "", 0, NULL, NULL },
        { "v=1", 1, "1", "1" },
        { "v=1;", 1, "1", "1" },
        { "  v = 1 ; a=rsa-sha256 ;  ", 2, "1", "rsa-sha256" },
        { "v=1; b=", 2, "1", "" },
        { "v=1;\r\n\tbh=abc\r\n def ;", 2, "1", "abc\r\n def" },
        { "k=rsa; p=MIGf MA0G\r\n CSqG", 2, "rsa", "MIGf MA0G\r\n CSqG" },
        { "A_1=x:y|z; a=~!@#", 2, "x:y|z", "~!@#" },
        { "n=notes with spaces; t=y:s", 2, "notes with spaces", "y:s" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dkim_tags t;
        const char *why = NULL;
        assert_int_equal(parse_exact(cases[i].in, &t, &why), 0);
        assert_int_equal(t.n, cases[i].n);
        if (cases[i].n > 0) {
            assert_string_equal(t.tag[0].val, cases[i].first_val);
            assert_string_equal(t.tag[t.n - 1].val, cases[i].last_val);
        }
    }
}

static void test_tags_invalid(void **state)
{
    static const char *const cases[] = {
        "v=1; v=1", "a=1; b=2; a=3", "=1", "1a=x", "v", "v=1;;a=2", ";", "v=1; ; a=2",
        "v=\x80", "v=a\x01b", "_x=1", "v-x=1", "v=1; b=x;y=",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dkim_tags t;
        const char *why = NULL;
        if (strcmp(cases[i], "v=1; b=x;y=") == 0) {   /* valid: y has an empty value */
            assert_int_equal(parse_exact(cases[i], &t, &why), 0);
            continue;
        }
        assert_int_equal(parse_exact(cases[i], &t, &why), -1);
        assert_non_null(why);
    }
    /* case-sensitive names: "v" and "V" are different tags */
    struct dkim_tags t;
    const char *why;
    assert_int_equal(parse_exact("v=1; V=2", &t, &why), 0);
}

static void test_base64(void **state)
{
    static const struct {
        const char *in, *out;
        int rc;
    } cases[] = {
        { "", "", 0 },
        { "Zm9v", "foo", 0 },
        { "Zm9vYg==", "foob", 0 },
        { "Zm9vYmE=", "fooba", 0 },
        { " Zm9v\r\n\tYmFy ", "foobar", 0 },
        { "Zm9vYg=", NULL, -1 },
        { "Zm9vY", NULL, -1 },
        { "Zm9v!", NULL, -1 },
        { "Zm9vYg==Zg==", NULL, -1 },
        { "Zm9vY===", NULL, -1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b = { 0 };
        assert_int_equal(b64_decode(cases[i].in, strlen(cases[i].in), B64_SKIP_WS, &b), cases[i].rc);
        if (cases[i].rc == 0)
            assert_string_equal(buf_ptr(&b), cases[i].out);
        buf_free(&b);
    }
}

/* ----------------------------------------------------------- canonicalize */

static void canon_all(enum dkim_canon c, const char *msg, struct buf *h, struct buf *b)
{
    struct dkim_hdr *hdrs;
    size_t off, n = dkim_msg_split(msg, strlen(msg), &hdrs, &off);
    for (size_t i = 0; i < n; i++)
        dkim_canon_header(c, hdrs[i].p, hdrs[i].len, h);
    dkim_canon_body(c, msg + off, strlen(msg) - off, b);
    xfree(hdrs);
}

static void test_canon_rfc6376(void **state)
{
    static const char msg[] = "A: X\r\n"
                              "B : Y\t\r\n"
                              "\tZ  \r\n"
                              "\r\n"
                              " C \r\n"
                              "D \t E\r\n"
                              "\r\n"
                              "\r\n";
    struct buf h = { 0 }, b = { 0 };
    canon_all(DKIM_CANON_RELAXED, msg, &h, &b);
    assert_string_equal(buf_ptr(&h), "a:X\r\nb:Y Z\r\n");
    assert_string_equal(buf_ptr(&b), " C\r\nD E\r\n");
    /* lines already canonical (copied whole) and not (rebuilt), side by side */
    static const struct { const char *in, *out; } lines[] = {
        { "a b c", "a b c\r\n" }, { " a b", " a b\r\n" }, { "a  b", "a b\r\n" },
        { "a\tb", "a b\r\n" }, { "a \t b  ", "a b\r\n" }, { "\t\ta", " a\r\n" },
        { "word", "word\r\n" }, { "a b ", "a b\r\n" }, { "  ", "" },
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        struct buf one = { 0 };
        dkim_canon_body(DKIM_CANON_RELAXED, lines[i].in, strlen(lines[i].in), &one);
        assert_string_equal(buf_ptr(&one), lines[i].out);
        buf_free(&one);
    }
    buf_reset(&h);
    buf_reset(&b);
    canon_all(DKIM_CANON_SIMPLE, msg, &h, &b);
    assert_string_equal(buf_ptr(&h), "A: X\r\nB : Y\t\r\n\tZ  \r\n");
    assert_string_equal(buf_ptr(&b), " C \r\nD \t E\r\n");
    /* empty bodies: simple is CRLF, relaxed is empty; missing final CRLF */
    buf_reset(&b);
    dkim_canon_body(DKIM_CANON_SIMPLE, "", 0, &b);
    assert_string_equal(buf_ptr(&b), "\r\n");
    buf_reset(&b);
    dkim_canon_body(DKIM_CANON_RELAXED, "\r\n \r\n", 5, &b);
    assert_string_equal(buf_ptr(&b), "");
    buf_reset(&b);
    dkim_canon_body(DKIM_CANON_SIMPLE, "x\r\n\r\ny", 6, &b);
    assert_string_equal(buf_ptr(&b), "x\r\n\r\ny\r\n");
    buf_free(&h);
    buf_free(&b);
}

/* ------------------------------------------------------ sign and verify */

static const char test_msg[] = "From: Joe <joe@example.com>\r\n"
                               "To: Suzie <suzie@example.net>\r\n"
                               "Subject: Is dinner ready?\r\n"
                               "Date: Fri, 11 Jul 2003 21:00:37 -0700\r\n"
                               "Message-ID: <1@example.com>\r\n"
                               "\r\n"
                               "Hi.\r\n"
                               "\r\n"
                               "We lost the game.  Are you hungry yet?\r\n"
                               "\r\n"
                               "Joe.\r\n";

#define T0 1700000000u

struct keys {
    struct dkim_key *rsa, *ed, *rsa512;
};
static struct keys K;

static int setup_keys(void **state)
{
    struct buf err = { 0 };
    K.rsa = dkim_key_generate(DKIM_KEY_RSA, 1024, &err);
    K.ed = dkim_key_generate(DKIM_KEY_ED25519, 0, &err);
    K.rsa512 = dkim_key_generate(DKIM_KEY_RSA, 512, &err);
    buf_free(&err);
    return K.rsa && K.ed && K.rsa512 ? 0 : -1;
}

static int teardown_keys(void **state)
{
    dkim_key_free(K.rsa);
    dkim_key_free(K.ed);
    dkim_key_free(K.rsa512);
    return 0;
}

/* Zone with selector rsa, ed, weak (512), revoked, strict (t=s, rsa), and a
 * temporary failure at tmp; extra is appended to the ed record text. */
static struct dns_resolver make_zone(void)
{
    struct buf z = { 0 }, rec = { 0 }, err = { 0 };
    const struct {
        const char *sel;
        struct dkim_key *k;
        const char *suffix;
    } e[] = {
        { "rsa", K.rsa, "" }, { "ed", K.ed, "" }, { "weak", K.rsa512, "" },
        { "strict", K.rsa, "; t=s" }, { "testing", K.rsa, "; t=y" },
    };
    for (size_t i = 0; i < sizeof(e) / sizeof(e[0]); i++) {
        buf_reset(&rec);
        dkim_key_dns_record(e[i].k, &rec);
        buf_append_str(&rec, e[i].suffix);
        struct buf name = { 0 };
        buf_printf(&name, "%s._domainkey.example.com.", e[i].sel);
        dkim_zone_txt_line(buf_ptr(&name), buf_ptr(&rec), &z);
        buf_append_byte(&z, '\n');
        buf_free(&name);
    }
    buf_append_str(&z, "revoked._domainkey.example.com. IN TXT \"v=DKIM1; k=rsa; p=\"\n"
                       "$TEMPFAIL tmp._domainkey.example.com.\n");
    struct dns_resolver r;
    assert_int_equal(dns_zone_parse("test", buf_ptr(&z), buf_size(&z), &r, &err), 0);
    buf_free(&z);
    buf_free(&rec);
    buf_free(&err);
    return r;
}

struct got {
    bool called;
    size_t n;
    struct dkim_sig_result r[4];
    char reason[4][128];
};

static void on_done(void *arg, const struct dkim_sig_result *res, size_t n)
{
    struct got *g = arg;
    g->called = true;
    g->n = n;
    for (size_t i = 0; i < n && i < 4; i++) {
        g->r[i] = res[i];
        snprintf(g->reason[i], sizeof(g->reason[i]), "%s", res[i].reason);
        g->r[i].reason = g->reason[i];
        g->r[i].d = g->r[i].s = g->r[i].a = g->r[i].i = NULL;
    }
}

static void sign_into(struct buf *out, const struct dkim_sign_opts *o, const char *msg)
{
    struct buf err = { 0 };
    assert_int_equal(dkim_sign(o, msg, strlen(msg), out, &err), 0);
    buf_append_str(out, msg);
    buf_free(&err);
}

static struct got verify_at(const char *msg, size_t len, uint64_t now, bool accept_partial)
{
    struct dns_resolver r = make_zone();
    struct got g = { 0 };
    struct dkim_verify_opts o = { .now = now, .accept_partial_body = accept_partial };
    dkim_verify_opt(&r, msg, len, &o, on_done, &g);
    assert_true(g.called);
    dns_close(&r);
    return g;
}

static struct dkim_sign_opts opts(const char *sel, struct dkim_key *k)
{
    return (struct dkim_sign_opts){ .domain = "example.com", .selector = sel, .key = k,
                                    .hcanon = DKIM_CANON_RELAXED, .bcanon = DKIM_CANON_RELAXED,
                                    .t = T0 };
}

static void test_roundtrip(void **state)
{
    for (int h = 0; h < 2; h++) {
        for (int b = 0; b < 2; b++) {
            struct buf m = { 0 };
            struct dkim_sign_opts o = opts("rsa", K.rsa);
            o.hcanon = (enum dkim_canon)h;
            o.bcanon = (enum dkim_canon)b;
            struct buf one = { 0 };
            sign_into(&one, &o, test_msg);
            o.selector = "ed";
            o.key = K.ed;
            sign_into(&m, &o, buf_ptr(&one));   /* dual: ed25519 on top of rsa */
            struct got g = verify_at(buf_ptr(&m), buf_size(&m), T0 + 60, false);
            assert_int_equal(g.n, 2);
            assert_int_equal(g.r[0].result, DKIM_PASS);
            assert_int_equal(g.r[1].result, DKIM_PASS);
            /* tamper one header byte, then one body byte */
            char *p = strstr(m.data, "dinner");
            p[0] = 'D';
            g = verify_at(buf_ptr(&m), buf_size(&m), T0 + 60, false);
            assert_int_equal(g.r[0].result, DKIM_FAIL);
            assert_string_equal(g.r[0].reason, "signature did not verify");
            p[0] = 'd';
            p = strstr(m.data, "game");
            p[0] = 'G';
            g = verify_at(buf_ptr(&m), buf_size(&m), T0 + 60, false);
            assert_int_equal(g.r[0].result, DKIM_FAIL);
            assert_int_equal(g.r[1].result, DKIM_FAIL);
            assert_string_equal(g.r[1].reason, "body hash did not verify");
            buf_free(&m);
            buf_free(&one);
        }
    }
}

static struct got sign_verify(struct dkim_sign_opts o, const char *append, uint64_t now,
                              bool accept_partial)
{
    struct buf m = { 0 };
    sign_into(&m, &o, test_msg);
    if (append != NULL)
        buf_append_str(&m, append);
    struct got g = verify_at(buf_ptr(&m), buf_size(&m), now, accept_partial);
    buf_free(&m);
    assert_int_equal(g.n, 1);
    return g;
}

static void test_body_length(void **state)
{
    struct dkim_sign_opts o = opts("ed", K.ed);
    o.body_length = true;
    struct got g = sign_verify(o, NULL, T0, false);
    assert_int_equal(g.r[0].result, DKIM_PASS);
    g = sign_verify(o, "Buy now!\r\n", T0, false);
    assert_int_equal(g.r[0].result, DKIM_POLICY);
    assert_string_equal(g.r[0].reason, "l= does not cover the body");
    assert_true(g.r[0].partial_body);
    g = sign_verify(o, "Buy now!\r\n", T0, true);
    assert_int_equal(g.r[0].result, DKIM_PASS);
}

static void test_times(void **state)
{
    struct dkim_sign_opts o = opts("rsa", K.rsa);
    o.x = T0 + 10;
    struct got g = sign_verify(o, NULL, T0 + 5, false);
    assert_int_equal(g.r[0].result, DKIM_PASS);
    g = sign_verify(o, NULL, T0 + 100, false);
    assert_int_equal(g.r[0].result, DKIM_FAIL);
    assert_string_equal(g.r[0].reason, "signature expired (x=)");
    o.x = 0;
    g = sign_verify(o, NULL, T0 - 3600, false);
    assert_int_equal(g.r[0].result, DKIM_FAIL);
    assert_non_null(strstr(g.r[0].reason, "future"));
}

static void test_key_cases(void **state)
{
    struct got g = sign_verify(opts("revoked", K.rsa), NULL, T0, false);
    assert_int_equal(g.r[0].result, DKIM_PERMERROR);
    assert_non_null(strstr(g.r[0].reason, "revoked"));
    g = sign_verify(opts("weak", K.rsa512), NULL, T0, false);
    assert_int_equal(g.r[0].result, DKIM_FAIL);
    assert_non_null(strstr(g.r[0].reason, "1024"));
    g = sign_verify(opts("tmp", K.rsa), NULL, T0, false);
    assert_int_equal(g.r[0].result, DKIM_TEMPERROR);
    g = sign_verify(opts("missing", K.rsa), NULL, T0, false);
    assert_int_equal(g.r[0].result, DKIM_PERMERROR);
    g = sign_verify(opts("ed", K.rsa), NULL, T0, false);   /* k=ed25519, a=rsa-sha256 */
    assert_int_equal(g.r[0].result, DKIM_PERMERROR);
    g = sign_verify(opts("testing", K.rsa), NULL, T0, false);
    assert_int_equal(g.r[0].result, DKIM_PASS);
    assert_true(g.r[0].testing);

    struct dkim_sign_opts o = opts("strict", K.rsa);
    o.identity = "joe@sub.example.com";
    g = sign_verify(o, NULL, T0, false);
    assert_int_equal(g.r[0].result, DKIM_PERMERROR);
    assert_non_null(strstr(g.r[0].reason, "t=s"));
    o.selector = "rsa";   /* the same i= without t=s passes */
    g = sign_verify(o, NULL, T0, false);
    assert_int_equal(g.r[0].result, DKIM_PASS);
    o.identity = "joe@example.org";
    g = sign_verify(o, NULL, T0, false);
    assert_int_equal(g.r[0].result, DKIM_PERMERROR);
}

/* Decoded keys are cached by their record's bytes: a rotated record under
 * the same name is a new key, never the one decoded before. */
static void test_key_rotation(void **state)
{
    struct buf err = { 0 }, m = { 0 };
    struct dkim_key *k2 = dkim_key_generate(DKIM_KEY_RSA, 1024, &err);
    assert_non_null(k2);
    sign_into(&m, &(struct dkim_sign_opts){ .domain = "example.com", .selector = "rot",
                                             .key = K.rsa, .hcanon = DKIM_CANON_RELAXED,
                                             .bcanon = DKIM_CANON_RELAXED, .t = T0 },
              "From: a@example.com\r\nSubject: rot\r\n\r\nbody\r\n");
    struct dkim_key *order[] = { K.rsa, k2, K.rsa, k2 };
    enum dkim_result want[] = { DKIM_PASS, DKIM_FAIL, DKIM_PASS, DKIM_FAIL };
    for (size_t i = 0; i < 4; i++) {
        struct buf z = { 0 }, rec = { 0 };
        dkim_key_dns_record(order[i], &rec);
        dkim_zone_txt_line("rot._domainkey.example.com.", buf_ptr(&rec), &z);
        buf_append_byte(&z, '\n');
        struct dns_resolver r;
        assert_int_equal(dns_zone_parse("rot", buf_ptr(&z), buf_size(&z), &r, &err), 0);
        struct got g = { 0 };
        struct dkim_verify_opts o = { .now = T0 };
        dkim_verify_opt(&r, buf_ptr(&m), buf_size(&m), &o, on_done, &g);
        assert_true(g.called);
        assert_int_equal(g.r[0].result, want[i]);
        dns_close(&r);
        buf_free(&z);
        buf_free(&rec);
    }
    dkim_key_free(k2);
    buf_free(&m);
    buf_free(&err);
}

static void test_rsa_sha1_and_malformed(void **state)
{
    struct buf m = { 0 };
    struct dkim_sign_opts o = opts("rsa", K.rsa);
    sign_into(&m, &o, test_msg);
    char *p = strstr(m.data, "a=rsa-sha256;");
    memcpy(p, "a=rsa-sha1;  ", 13);
    struct got g = verify_at(buf_ptr(&m), buf_size(&m), T0, false);
    assert_int_equal(g.r[0].result, DKIM_FAIL);
    assert_non_null(strstr(g.r[0].reason, "RFC 8301"));
    buf_free(&m);

    static const char *const bad[] = {
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa; h=to; bh=; b=\r\n",
        "DKIM-Signature: v=1; v=1\r\n",
        "DKIM-Signature: v=2; a=rsa-sha256; d=example.com; s=rsa; h=from; bh=x; b=x\r\n",
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa; h=from; b=x\r\n",
        "DKIM-Signature: v=1; a=foo; d=example.com; s=rsa; h=from; bh=x; b=x\r\n",
        "DKIM-Signature: v=1; a=rsa-sha256; c=bogus; d=example.com; s=rsa; h=from; bh=x; b=x\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct buf mm = { 0 };
        buf_append_str(&mm, bad[i]);
        buf_append_str(&mm, test_msg);
        g = verify_at(buf_ptr(&mm), buf_size(&mm), T0, false);
        assert_int_equal(g.n, 1);
        assert_int_equal(g.r[0].result, DKIM_PERMERROR);
        buf_free(&mm);
    }
    g = verify_at(test_msg, strlen(test_msg), T0, false);
    assert_int_equal(g.n, 0);
}

/* Junk DKIM-Signature fields cannot take a real signature's slot: the
 * parseable ones near the From domain go first, junk last, and what is
 * over DKIM_MAX_SIGS is counted as skipped. */
static void test_junk_does_not_take_slots(void **state)
{
    struct buf m = { 0 }, signed_msg = { 0 };
    struct dkim_sign_opts o = opts("rsa", K.rsa);
    sign_into(&signed_msg, &o, test_msg);
    for (int i = 0; i < 16; i++)
        buf_append_str(&m, "DKIM-Signature: x\r\n");
    for (int i = 0; i < 16; i++)
        buf_printf(&m, "DKIM-Signature: v=1; a=rsa-sha256; d=attacker%d.example; s=s; h=from; "
                       "bh=x; b=x\r\n", i);
    buf_append(&m, buf_ptr(&signed_msg), buf_size(&signed_msg));
    struct dkim_verify_opts vo = { .now = T0 };
    struct dkim_verify *v = dkim_verify_new(buf_ptr(&m), buf_size(&m), &vo);
    assert_int_equal(dkim_verify_skipped(v), 17);   /* 33 fields, 16 slots */
    dkim_verify_free(v);
    struct got g = verify_at(buf_ptr(&m), buf_size(&m), T0, false);
    assert_int_equal(g.n, 16);
    assert_int_equal(g.r[0].result, DKIM_PASS);     /* example.com: From's domain, first */
    assert_int_equal(g.r[1].result, DKIM_PERMERROR);
    buf_free(&m);
    buf_free(&signed_msg);
}

/* q= is a list; other methods are ignored (RFC 6376 3.5): with dns/txt
 * among them the signature goes on to be checked (here it fails: q= was
 * added after signing), without it there is no method to use. */
static void test_query_method_list(void **state)
{
    static const struct {
        const char *q;
        enum dkim_result want;
    } t[] = {
        { "q=dns/txt:foo/bar; ", DKIM_FAIL },
        { "q=foo/bar:DNS/TXT; ", DKIM_FAIL },
        { "q= dns/txt ; ", DKIM_FAIL },
        { "q=foo/bar; ", DKIM_PERMERROR },
        { "q=dns/txtx; ", DKIM_PERMERROR },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct buf m = { 0 }, out = { 0 };
        struct dkim_sign_opts o = opts("rsa", K.rsa);
        sign_into(&m, &o, test_msg);
        char *p = strstr(m.data, "d=example.com;");
        buf_append(&out, m.data, (size_t)(p - m.data));
        buf_append_str(&out, t[i].q);
        buf_append_str(&out, p);
        struct got g = verify_at(buf_ptr(&out), buf_size(&out), T0, false);
        if (g.r[0].result != t[i].want)
            fail_msg("%s: got %s (%s)", t[i].q, dkim_result_name(g.r[0].result), g.reason[0]);
        buf_free(&m);
        buf_free(&out);
    }
}

/* A resolver that keeps the questions, answered by the test when it likes. */
struct held {
    struct dns_resolver zone;
    struct { dns_cb cb; void *arg; char name[128]; } q[8];
    size_t n;
};

static void held_resolve(void *impl, const char *name, enum dns_type type, dns_cb cb, void *arg)
{
    struct held *h = impl;
    assert_true(h->n < 8 && type == DNS_T_TXT);
    h->q[h->n].cb = cb, h->q[h->n].arg = arg;
    snprintf(h->q[h->n].name, sizeof(h->q[h->n].name), "%s", name);
    h->n++;
}

static void held_close(void *impl)
{
    (void)impl;
}

static const struct dns_backend held_ops = { held_resolve, held_close };

/* Answer question i from the zone. */
static void held_answer(struct held *h, size_t i)
{
    dns_resolve(&h->zone, h->q[i].name, DNS_T_TXT, h->q[i].cb, h->q[i].arg);
}

/* Every key is asked for at once; expire gives temperror to what has not
 * answered and reports at once; a late answer changes nothing. */
static void test_parallel_keys_and_expiry(void **state)
{
    struct buf m = { 0 }, one = { 0 };
    struct dkim_sign_opts o = opts("rsa", K.rsa);
    sign_into(&one, &o, test_msg);
    o = opts("ed", K.ed);
    sign_into(&m, &o, buf_ptr(&one));
    struct held h = { .zone = make_zone() };
    struct dns_resolver r = { &held_ops, &h };
    struct got g = { 0 };
    struct dkim_verify_opts vo = { .now = T0 };
    struct dkim_verify *v = dkim_verify_new(buf_ptr(&m), buf_size(&m), &vo);
    dkim_verify_keys(v, &r, on_done, &g);
    assert_int_equal(h.n, 2);            /* both questions out before any answer */
    assert_false(g.called);
    held_answer(&h, 1);                  /* the second answers first */
    assert_false(g.called);
    dkim_verify_expire(v);               /* the caller's deadline */
    assert_true(g.called);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.r[0].result, DKIM_TEMPERROR);
    assert_non_null(strstr(g.reason[0], "in time"));
    assert_int_equal(g.r[1].result, DKIM_PASS);
    g.called = false;
    held_answer(&h, 0);                  /* late: ignored, and v freed now (ASan) */
    assert_false(g.called);
    /* all answered in time: done once, after the last */
    h.n = 0;
    struct got g2 = { 0 };
    dkim_verify_keys(dkim_verify_new(buf_ptr(&m), buf_size(&m), &vo), &r, on_done, &g2);
    held_answer(&h, 0);
    assert_false(g2.called);
    held_answer(&h, 1);
    assert_true(g2.called);
    assert_int_equal(g2.r[0].result, DKIM_PASS);
    assert_int_equal(g2.r[1].result, DKIM_PASS);
    buf_free(&m);
    buf_free(&one);
    dns_close(&h.zone);
}

static void test_step_interface(void **state)
{
    struct buf m = { 0 };
    sign_into(&m, &(struct dkim_sign_opts){ .domain = "example.com", .selector = "ed",
                                            .key = K.ed, .t = T0 },
              test_msg);
    struct dkim_verify *v = dkim_verify_new(buf_ptr(&m), buf_size(&m),
                                            &(struct dkim_verify_opts){ .now = T0 });
    buf_free(&m);   /* the verifier keeps no pointer into the message */
    const char *name;
    enum dns_type type;
    assert_int_equal(dkim_verify_step(v, &name, &type), DKIM_STEP_DNS);
    assert_string_equal(name, "ed._domainkey.example.com");
    assert_int_equal(type, DNS_T_TXT);
    struct buf rec = { 0 };
    dkim_key_dns_record(K.ed, &rec);
    struct dns_rr rr = { .type = DNS_T_TXT, .u.txt = { rec.data, rec.len } };
    struct dns_answer ans = { .status = DNS_OK, .rr = &rr, .n = 1 };
    dkim_verify_answer(v, &ans);
    assert_int_equal(dkim_verify_step(v, &name, &type), DKIM_STEP_DONE);
    size_t n;
    const struct dkim_sig_result *r = dkim_verify_results(v, &n);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].result, DKIM_PASS);
    assert_string_equal(r[0].d, "example.com");
    assert_string_equal(r[0].i, "@example.com");
    assert_string_equal(r[0].a, "ed25519-sha256");
    assert_int_equal(strlen(r[0].b8), 8);
    dkim_verify_free(v);
    buf_free(&rec);
}

/* ------------------------------------------------------------- RFC 8463 */

static void read_testdata(const char *rel, struct buf *out)
{
    const char *dir = getenv("MW_TESTDATA");
    if (dir == NULL)
        dir = "../../shared/testdata";
    struct buf path = { 0 };
    buf_printf(&path, "%s/%s", dir, rel);
    assert_int_equal(fs_read_file(buf_ptr(&path), 1 << 20, out), 0);
    buf_free(&path);
}

/* dns.json (name -> "TXT" -> list of chunk lists) into zone lines. */
static void json_to_zone(const char *j, size_t n, struct buf *zone)
{
    struct buf name = { 0 }, rec = { 0 }, s = { 0 };
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        if (j[i] == '[') {
            depth++;
        } else if (j[i] == ']') {
            if (depth-- == 2 && buf_size(&rec) > 0) {
                dkim_zone_txt_line(buf_ptr(&name), buf_ptr(&rec), zone);
                buf_append_byte(zone, '\n');
                buf_reset(&rec);
            }
        } else if (j[i] == '"') {
            buf_reset(&s);
            for (i++; i < n && j[i] != '"'; i++) {
                if (j[i] == '\\' && i + 1 < n)
                    i++;
                buf_append_byte(&s, j[i]);
            }
            size_t k = i + 1;
            while (k < n && (j[k] == ' ' || j[k] == '\n'))
                k++;
            if (k < n && j[k] == ':') {
                if (strcmp(buf_ptr(&s), "TXT") != 0) {
                    buf_reset(&name);
                    buf_printf(&name, "%s.", buf_ptr(&s));
                }
            } else {
                buf_append(&rec, buf_ptr(&s), buf_size(&s));
            }
        }
    }
    buf_free(&name);
    buf_free(&rec);
    buf_free(&s);
}

static void test_rfc8463(void **state)
{
    struct buf j = { 0 }, zone = { 0 }, raw = { 0 }, msg = { 0 }, err = { 0 };
    read_testdata("rfc8463-ed25519-example/dns.json", &j);
    read_testdata("rfc8463-ed25519-example/signed.eml", &raw);
    json_to_zone(buf_ptr(&j), buf_size(&j), &zone);
    for (size_t i = 0; i < buf_size(&raw); i++) {
        if (buf_ptr(&raw)[i] == '\n' && (i == 0 || buf_ptr(&raw)[i - 1] != '\r'))
            buf_append_byte(&msg, '\r');
        buf_append_byte(&msg, buf_ptr(&raw)[i]);
    }
    struct dns_resolver r;
    assert_int_equal(dns_zone_parse("dns.json", buf_ptr(&zone), buf_size(&zone), &r, &err), 0);
    struct got g = { 0 };
    struct dkim_verify_opts vo = { .now = 1528637909 };
    dkim_verify_opt(&r, buf_ptr(&msg), buf_size(&msg), &vo, on_done, &g);
    assert_true(g.called);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.r[0].result, DKIM_PASS);
    assert_int_equal(g.r[1].result, DKIM_PASS);
    assert_string_equal(g.r[0].b8, "/gCrinpc");
    assert_string_equal(g.r[1].b8, "F45dVWDf");
    dns_close(&r);

    /* the A.1 keys load and give the A.2 records */
    struct buf key = { 0 }, rec = { 0 };
    read_testdata("rfc8463-ed25519-example/ed25519-private-seed.b64", &key);
    struct dkim_key *k = dkim_key_load_pem(buf_ptr(&key), buf_size(&key), &err);
    assert_non_null(k);
    dkim_key_dns_record(k, &rec);
    assert_string_equal(buf_ptr(&rec),
                        "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
    dkim_key_free(k);
    buf_reset(&key);
    buf_reset(&rec);
    read_testdata("rfc8463-ed25519-example/rsa-private.pem", &key);
    k = dkim_key_load_pem(buf_ptr(&key), buf_size(&key), &err);
    assert_non_null(k);
    assert_int_equal(dkim_key_type(k), DKIM_KEY_RSA);
    dkim_key_dns_record(k, &rec);
    assert_string_equal(buf_ptr(&rec),
                        "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
                        "iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
                        "DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
                        "Ip3G+2kryOTIKT+l/K4w3QIDAQAB");
    dkim_key_free(k);
    buf_free(&key);
    buf_free(&rec);
    buf_free(&j);
    buf_free(&zone);
    buf_free(&raw);
    buf_free(&msg);
    buf_free(&err);
}

/* ------------------------------------------------------------- authres */

static void test_authres(void **state)
{
    struct authres a;
    struct buf out = { 0 };
    authres_begin(&a, "mx.example.org");
    authres_end(&a, &out);
    assert_string_equal(buf_ptr(&out), "Authentication-Results: mx.example.org; none\r\n");
    buf_reset(&out);
    authres_begin(&a, "mx.example.org");
    authres_method(&a, "dkim", "pass", "good (signature)");
    authres_prop(&a, "header", "d", "example.com");
    authres_prop(&a, "header", "i", "@example.com");
    authres_prop(&a, "header", "b", "ab/+cd=e");
    authres_method(&a, "spf", "fail", NULL);
    authres_prop(&a, "smtp", "mailfrom", "a \"b\"\x01");
    authres_end(&a, &out);
    assert_string_equal(buf_ptr(&out),
                        "Authentication-Results: mx.example.org;\r\n"
                        "\tdkim=pass (good \\(signature\\)) header.d=example.com\r\n"
                        "\theader.i=@example.com header.b=\"ab/+cd=e\";\r\n"
                        "\tspf=fail smtp.mailfrom=\"a \\\"b\\\"?\"\r\n");
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tags_valid),
        cmocka_unit_test(test_tags_invalid),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_canon_rfc6376),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_body_length),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_key_cases),
        cmocka_unit_test(test_key_rotation),
        cmocka_unit_test(test_rsa_sha1_and_malformed),
        cmocka_unit_test(test_step_interface),
        cmocka_unit_test(test_junk_does_not_take_slots),
        cmocka_unit_test(test_query_method_list),
        cmocka_unit_test(test_parallel_keys_and_expiry),
        cmocka_unit_test(test_rfc8463),
        cmocka_unit_test(test_authres),
    };
    return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
