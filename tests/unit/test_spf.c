/*
 * test_spf - SPF (spf/spf.h, spf/spf_int.h).
 *
 * 1. Record parser: a table of valid records with their parse written
 *    back in a canonical form, and a table of malformed records of every
 *    kind (each must be refused with a reason: permerror). Every input is
 *    parsed from a heap block of exactly its length (no NUL after it), so
 *    AddressSanitizer sees any read past the end; the parser is not a
 *    streaming parser, so "one byte at a time" becomes "every prefix".
 * 2. Macro expander: the examples of RFC 7208 section 7.4 exactly, the
 *    special cases of 7.1-7.3 (%% %_ %-, URL escaping, delimiters, the
 *    exp-only letters, %{p}), and malformed macros.
 * 3. Evaluator over an in-memory resolver, driven three ways (the step
 *    interface by hand; spf_check with answers inside dns_resolve; with
 *    answers delivered later, as libunbound does) with the same result:
 *    results, limits, include/redirect mapping, exp=, %{p}, the identities.
 * 4. Received-SPF (RFC 7208 9.1).
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/str.h"
#include "core/xmalloc.h"
#include "spf/spf.h"
#include "spf/spf_int.h"

/* ------------------------------------------------------------ record parser */

/* The parse written back: one word per mechanism, then the modifiers. */
static void dump_record(const struct spf_record *r, struct buf *b)
{
    static const char quals[] = { [SPF_PASS] = '+', [SPF_FAIL] = '-', [SPF_SOFTFAIL] = '~',
                                  [SPF_NEUTRAL] = '?' };
    char a[INET6_ADDRSTRLEN];
    for (size_t i = 0; i < r->nmech; i++) {
        const struct spf_mech *m = &r->mech[i];
        buf_printf(b, "%s%c%s", i ? " " : "", quals[m->qual], spf_mech_name(m->kind));
        if (m->kind == SPF_M_IP4)
            buf_printf(b, ":%s", inet_ntop(AF_INET, m->addr, a, sizeof(a)));
        if (m->kind == SPF_M_IP6)
            buf_printf(b, ":%s", inet_ntop(AF_INET6, m->addr, a, sizeof(a)));
        if (m->domain != NULL)
            buf_printf(b, ":%s", m->domain);
        if (m->cidr4 != 32)
            buf_printf(b, "/%u", m->cidr4);
        if (m->cidr6 != 128)
            buf_printf(b, "//%u", m->cidr6);
    }
    if (r->redirect != NULL)
        buf_printf(b, " redirect=%s", r->redirect);
    if (r->exp != NULL)
        buf_printf(b, " exp=%s", r->exp);
}

static const struct {
    const char *in, *out;
} valid_records[] = {
    { "v=spf1", "" },
    { "V=SpF1 ", "" },
    { "v=spf1 -all", "-all" },
    { "v=spf1  a   mx  ~all  ", "+a +mx ~all" },
    { "v=spf1 +all ?all ~all -all ALL", "+all ?all ~all -all +all" },
    { "v=spf1 a a:example.com a/24 a//64 a/24//64 a:example.com/0//0",
      "+a +a:example.com +a/24 +a//64 +a/24//64 +a:example.com/0//0" },
    { "v=spf1 mx:mx.example.org/30 MX//126", "+mx:mx.example.org/30 +mx//126" },
    { "v=spf1 a:foo:bar/baz.example.com", "+a:foo:bar/baz.example.com" },
    { "v=spf1 mx:foo:bar/baz.example.com/24", "+mx:foo:bar/baz.example.com/24" },
    { "v=spf1 ip4:192.0.2.1 ip4:10.0.0.0/8 -ip4:0.0.0.0/0 ip4:255.255.255.255/32",
      "+ip4:192.0.2.1 +ip4:10.0.0.0/8 -ip4:0.0.0.0/0 +ip4:255.255.255.255" },
    { "v=spf1 ip6:2001:db8::/32 ip6:::1 ip6:::1.1.1.1/0 ip6:Cafe:Babe:8000::/33",
      "+ip6:2001:db8:://32 +ip6:::1 +ip6:::1.1.1.1//0 +ip6:cafe:babe:8000:://33" },
    { "v=spf1 include:_spf.example.com Include:x.example.ORG",
      "+include:_spf.example.com +include:x.example.ORG" },
    { "v=spf1 ptr ptr:example.com -ptr:%{d}", "+ptr +ptr:example.com -ptr:%{d}" },
    { "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} exists:foo.example.",
      "+exists:%{ir}.%{l1r+-}._spf.%{d} +exists:foo.example." },
    { "v=spf1 a:foo.example.xn--zckzah a:x.1-2 a:x.a1", "+a:foo.example.xn--zckzah +a:x.1-2 +a:x.a1" },
    { "v=spf1 a:%{d} a:x%%%_%-.example.com a:.com", "+a:%{d} +a:x%%%_%-.example.com +a:.com" },
    { "v=spf1 mx redirect=_spf.example.com", "+mx redirect=_spf.example.com" },
    { "v=spf1 -all exp=explain._spf.%{d}", "-all exp=explain._spf.%{d}" },
    { "v=spf1 REDIRECT=a.example.com EXP=b.example.com", " redirect=a.example.com exp=b.example.com" },
    { "v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all", "+ip4:1.2.3.4 -all" },
    { "v=spf1 default=pass foo= x=%{c}%{r}%{t} -all", "-all" },
    { "v=spf1 a:%{H}.bar -all", "+a:%{H}.bar -all" },
    { "v=spf1 exists:%{p}.should.example.com", "+exists:%{p}.should.example.com" },
};

static const char *const invalid_records[] = {
    "", "v=spf", "v=spf10", "v=spf1mx", " v=spf1", "v=spf1\t-all", "spf1 -all",
    "v=spf1 -all moo", "v=spf1 moo.cow/far_out=man:dog/cat", "v=spf1 moo.cow:far_out=man",
    "v=spf1 =all", "v=spf1 1up=foo", "v=spf1 -", "v=spf1 +", "v=spf1 --all", "v=spf1 -all.",
    "v=spf1 -all:foobar", "v=spf1 -all/8", "v=spf1 redirect:t2.example.com", "v=spf1 ptr/0",
    "v=spf1 ptr:", "v=spf1 a:", "v=spf1 mx:", "v=spf1 include:", "v=spf1 include",
    "v=spf1 exists", "v=spf1 exists:", "v=spf1 exists:mail.example.com/24",
    "v=spf1 include:ip5.example.com/24", "v=spf1 a:foo-bar", "v=spf1 a:museum",
    "v=spf1 a:museum.", "v=spf1 a:abc.123", "v=spf1 a:111.222.33.44", "v=spf1 a:example.-com",
    "v=spf1 a:example.com-", "v=spf1 a:example.com:8080", "v=spf1 a:foo.example.com/",
    "v=spf1 a/33", "v=spf1 a//129", "v=spf1 a/24/64", "v=spf1 a/032", "v=spf1 a//0128",
    "v=spf1 a/", "v=spf1 a//", "v=spf1 a/-1", "v=spf1 mx/33 -all", "v=spf1 mx//129",
    "v=spf1 ip4", "v=spf1 ip4:", "v=spf1 ip4:1.2.3", "v=spf1 ip4:1.2.3.4.5", "v=spf1 ip4:1.2.3.256",
    "v=spf1 ip4:1.2.03.4", "v=spf1 ip4:1.2.3.4/33", "v=spf1 ip4:1.2.3.4/032",
    "v=spf1 ip4:1.2.3.4//32", "v=spf1 ip4:1.2.3.4:8080", "v=spf1 ip4:1.2.3.4/", "v=spf1 ip4:a.b.c.d",
    "v=spf1 ip4:1.2.3.4 /24", "v=spf1 ip6", "v=spf1 ip6:", "v=spf1 ip6::CAFE::BABE",
    "v=spf1 ip6:::1.1.1.1/129", "v=spf1 ip6:::1.1.1.1//33", "v=spf1 ip6:1.2.3.4", "v=spf1 ip6:g::1",
    "v=spf1 ip6:2001:db8::/064", "v=spf1 ip6:1:2:3:4:5:6:7:8:9", "v=spf1 exp=", "v=spf1 redirect=",
    "v=spf1 exp=-all", "v=spf1 redirect=-all ?all", "v=spf1 exp=a.example.com exp=b.example.com",
    "v=spf1 redirect=a.example.com redirect=a.example.com",
    "v=spf1 -all exp=%{r}.example.com", "v=spf1 a:%{c}.example.com", "v=spf1 a:%{t}.example.com",
    "v=spf1 a:%{a}.example.com", "v=spf1 a:%{d0}.example.com", "v=spf1 a:%{d}x",
    "v=spf1 exists:%(ir).sbl.example.com", "v=spf1 exists:foo%.sbl.example.com",
    "v=spf1 exists:foo.example.com%", "v=spf1 a:%{d", "v=spf1 a:%{}.example.com",
    "v=spf1 a:%{d2x}.example.com", "v=spf1 a:%{dr2}.example.com", "v=spf1 foo=%abc",
    "v=spf1 foo=%", "v=spf1 ip4:192.0.2.5\n include:x.example.com ~all",
    "v=spf1 a:ctrl.example.com\rptr -all", "v=spf1 a:\xef\xbb\xbfgarbage.example.net -all",
    "v=spf1 \x80" "a:example.net -all", "v=spf1 a:example.net \x96" "all",
    "v=spf1 prt", "v=spf1 a,mx",
    "v=spf1 ip:1.2.3.4", "v=spf1 a:mail.example.com,",
};

static int parse_exact(const char *in, size_t n, struct spf_record *r, struct buf *err)
{
    char *copy = xmalloc(n ? n : 1);
    memcpy(copy, in, n);
    int rc = spf_record_parse(copy, n, r, err);
    xfree(copy);
    return rc;
}

static void test_record_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid_records) / sizeof(valid_records[0]); i++) {
        struct spf_record r;
        struct buf err = { 0 }, got = { 0 };
        const char *in = valid_records[i].in;
        if (parse_exact(in, strlen(in), &r, &err) != 0)
            fail_msg("'%s' refused: %s", in, buf_ptr(&err));
        dump_record(&r, &got);
        if (strcmp(buf_ptr(&got), valid_records[i].out) != 0)
            fail_msg("'%s' parsed as '%s', want '%s'", in, buf_ptr(&got), valid_records[i].out);
        assert_true(spf_record_is_v1(in, strlen(in)));
        spf_record_free(&r);
        buf_free(&err);
        buf_free(&got);
    }
}

static void test_record_invalid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(invalid_records) / sizeof(invalid_records[0]); i++) {
        const char *in = invalid_records[i];
        size_t n = strlen(in);
        struct spf_record r;
        struct buf err = { 0 };
        if (parse_exact(in, n, &r, &err) == 0)
            fail_msg("'%s' (#%zu) accepted", in, i);
        assert_true(buf_size(&err) > 0);
        for (size_t k = 0; k < buf_size(&err); k++)   /* printable for logs */
            assert_true(buf_ptr(&err)[k] >= 0x20 && buf_ptr(&err)[k] < 0x7f);
        buf_free(&err);
    }
    /* embedded NUL bytes, given by length */
    static const char nul1[] = "v=spf1 a:foo.example.com\0";
    static const char nul2[] = "v=spf1 -all \0";
    struct spf_record r;
    struct buf err = { 0 };
    assert_int_equal(parse_exact(nul1, sizeof(nul1) - 1, &r, &err), -1);
    assert_int_equal(parse_exact(nul2, sizeof(nul2) - 1, &r, &err), -1);
    buf_free(&err);
}

/* Every prefix of every record, valid or not: a result, never a crash. */
static void test_record_prefixes(void **state)
{
    (void)state;
    for (int pass = 0; pass < 2; pass++) {
        size_t n = pass ? sizeof(invalid_records) / sizeof(invalid_records[0])
                        : sizeof(valid_records) / sizeof(valid_records[0]);
        for (size_t i = 0; i < n; i++) {
            const char *in = pass ? invalid_records[i] : valid_records[i].in;
            for (size_t len = 0; len <= strlen(in); len++) {
                struct spf_record r;
                struct buf err = { 0 };
                if (parse_exact(in, len, &r, &err) == 0)
                    spf_record_free(&r);
                else
                    assert_true(buf_size(&err) > 0);
                buf_free(&err);
            }
        }
    }
}

static void test_record_selection(void **state)
{
    (void)state;
    assert_true(spf_record_is_v1("v=spf1", 6));
    assert_true(spf_record_is_v1("V=SPF1 mx", 9));
    assert_false(spf_record_is_v1("v=spf10", 7));
    assert_false(spf_record_is_v1("v=spf1mx", 8));
    assert_false(spf_record_is_v1("v=spf", 5));
    assert_false(spf_record_is_v1(" v=spf1", 7));
    assert_false(spf_record_is_v1("", 0));
}

/* ------------------------------------------------------------------ macros */

static const struct spf_macro_ctx rfc_ctx = {
    .s = "strong-bad@email.example.com", .l = "strong-bad", .o = "email.example.com",
    .d = "email.example.com", .i = "192.0.2.3", .h = "mx.example.org", .c = "192.0.2.3",
    .r = "mx.example.net", .v = "in-addr", .p = "mx.example.org", .t = 1234567890,
};

static const struct {
    const char *in;
    enum spf_macro_mode mode;
    const char *out;  /* NULL: a syntax error */
} macro_cases[] = {
    /* RFC 7208 7.4, exactly */
    { "%{s}", SPF_MACRO_DOMAIN, "strong-bad@email.example.com" },
    { "%{o}", SPF_MACRO_DOMAIN, "email.example.com" },
    { "%{d}", SPF_MACRO_DOMAIN, "email.example.com" },
    { "%{d4}", SPF_MACRO_DOMAIN, "email.example.com" },
    { "%{d3}", SPF_MACRO_DOMAIN, "email.example.com" },
    { "%{d2}", SPF_MACRO_DOMAIN, "example.com" },
    { "%{d1}", SPF_MACRO_DOMAIN, "com" },
    { "%{dr}", SPF_MACRO_DOMAIN, "com.example.email" },
    { "%{d2r}", SPF_MACRO_DOMAIN, "example.email" },
    { "%{l}", SPF_MACRO_DOMAIN, "strong-bad" },
    { "%{l-}", SPF_MACRO_DOMAIN, "strong.bad" },
    { "%{lr}", SPF_MACRO_DOMAIN, "strong-bad" },
    { "%{lr-}", SPF_MACRO_DOMAIN, "bad.strong" },
    { "%{l1r-}", SPF_MACRO_DOMAIN, "strong" },
    { "%{ir}.%{v}._spf.%{d2}", SPF_MACRO_DOMAIN, "3.2.0.192.in-addr._spf.example.com" },
    { "%{lr-}.lp._spf.%{d2}", SPF_MACRO_DOMAIN, "bad.strong.lp._spf.example.com" },
    { "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", SPF_MACRO_DOMAIN,
      "bad.strong.lp.3.2.0.192.in-addr._spf.example.com" },
    { "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", SPF_MACRO_DOMAIN,
      "3.2.0.192.in-addr.strong.lp._spf.example.com" },
    { "%{d2}.trusted-domains.example.net", SPF_MACRO_DOMAIN,
      "example.com.trusted-domains.example.net" },
    /* (the IPv6 example of 7.4 runs through the evaluator, test_eval_rfc_ipv6) */
    /* 7.1: the special expansions */
    { "%%", SPF_MACRO_DOMAIN, "%" },
    { "%_", SPF_MACRO_DOMAIN, " " },
    { "%-", SPF_MACRO_DOMAIN, "%20" },
    { "a%%b%_c%-d", SPF_MACRO_DOMAIN, "a%b c%20d" },
    { "macro%%percent%_%_space%-url-space.example.com", SPF_MACRO_DOMAIN,
      "macro%percent  space%20url-space.example.com" },
    /* 7.3: transformers and delimiters */
    { "%{l2r-}", SPF_MACRO_DOMAIN, "bad.strong" },
    { "%{d0}", SPF_MACRO_DOMAIN, NULL },
    { "%{d00}", SPF_MACRO_DOMAIN, NULL },
    { "%{d01}", SPF_MACRO_DOMAIN, "com" },
    { "%{d99999999999999999999999999}", SPF_MACRO_DOMAIN, "email.example.com" },
    { "%{dR}", SPF_MACRO_DOMAIN, "com.example.email" },
    { "%{s-.@}", SPF_MACRO_DOMAIN, NULL },
    { "%{s=}", SPF_MACRO_DOMAIN, "strong-bad@email.example.com" },
    { "%{s-}", SPF_MACRO_DOMAIN, "strong.bad@email.example.com" },
    { "%{s2-.}", SPF_MACRO_DOMAIN, "example.com" },
    { "%{l+-}", SPF_MACRO_DOMAIN, "strong.bad" },
    { "%{l,/_=}", SPF_MACRO_DOMAIN, "strong-bad" },
    { "%{d.}", SPF_MACRO_DOMAIN, "email.example.com" },
    { "%{dr..}", SPF_MACRO_DOMAIN, "com.example.email" },
    { "%{h}", SPF_MACRO_DOMAIN, "mx.example.org" },
    { "%{p}", SPF_MACRO_DOMAIN, "mx.example.org" },
    { "%{p2}.trusted-domains.example.net", SPF_MACRO_DOMAIN,
      "example.org.trusted-domains.example.net" },
    /* upper case: URL escaping of everything but unreserved */
    { "%{S}", SPF_MACRO_DOMAIN, "strong-bad%40email.example.com" },
    { "%{L}", SPF_MACRO_DOMAIN, "strong-bad" },
    { "%{D2R}", SPF_MACRO_DOMAIN, "example.email" },
    /* exp-only letters */
    { "%{c}", SPF_MACRO_DOMAIN, NULL },
    { "%{r}", SPF_MACRO_DOMAIN, NULL },
    { "%{t}", SPF_MACRO_DOMAIN, NULL },
    { "%{C}", SPF_MACRO_DOMAIN, NULL },
    { "%{c} %{r} %{t}", SPF_MACRO_EXP, "192.0.2.3 mx.example.net 1234567890" },
    { "%{c}%{r}%{t}", SPF_MACRO_MODIFIER, "192.0.2.3mx.example.net1234567890" },
    { "Sorry, %{s} is not allowed from %{i}.", SPF_MACRO_EXP,
      "Sorry, strong-bad@email.example.com is not allowed from 192.0.2.3." },
    { "a b", SPF_MACRO_DOMAIN, NULL },
    { "a b", SPF_MACRO_MODIFIER, NULL },
    { "  ", SPF_MACRO_EXP, "  " },
    { "", SPF_MACRO_EXP, "" },
    /* malformed */
    { "%", SPF_MACRO_EXP, NULL },
    { "%(ir)", SPF_MACRO_DOMAIN, NULL },
    { "100%", SPF_MACRO_EXP, NULL },
    { "%x", SPF_MACRO_EXP, NULL },
    { "%{", SPF_MACRO_EXP, NULL },
    { "%{}", SPF_MACRO_EXP, NULL },
    { "%{d", SPF_MACRO_EXP, NULL },
    { "%{d2", SPF_MACRO_EXP, NULL },
    { "%{d2r", SPF_MACRO_EXP, NULL },
    { "%{x}", SPF_MACRO_EXP, NULL },
    { "%{a}", SPF_MACRO_EXP, NULL },
    { "%{1}", SPF_MACRO_EXP, NULL },
    { "%{dd}", SPF_MACRO_EXP, NULL },
    { "%{d2rr}", SPF_MACRO_EXP, NULL },
    { "%{dr2}", SPF_MACRO_EXP, NULL },
    { "%{d!}", SPF_MACRO_EXP, NULL },
    { "%{d }", SPF_MACRO_EXP, NULL },
    { "%{d}}", SPF_MACRO_EXP, "email.example.com}" },
    { "\x7f", SPF_MACRO_EXP, NULL },
    { "\t", SPF_MACRO_EXP, NULL },
    { "caf\xc3\xa9", SPF_MACRO_EXP, NULL },
};

static void test_macro_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(macro_cases) / sizeof(macro_cases[0]); i++) {
        const char *in = macro_cases[i].in;
        size_t n = strlen(in);
        char *copy = xmalloc(n ? n : 1);
        memcpy(copy, in, n);
        struct buf out = { 0 }, err = { 0 };
        int rc = spf_macro_expand(copy, n, macro_cases[i].mode, &rfc_ctx, &out, &err);
        if (macro_cases[i].out == NULL && rc == 0)
            fail_msg("'%s' expanded to '%s', want an error", in, buf_ptr(&out));
        if (macro_cases[i].out != NULL && rc != 0)
            fail_msg("'%s': %s", in, buf_ptr(&err));
        if (macro_cases[i].out != NULL && strcmp(buf_ptr(&out), macro_cases[i].out) != 0)
            fail_msg("'%s' expanded to '%s', want '%s'", in, buf_ptr(&out), macro_cases[i].out);
        struct spf_macro_info info;
        struct buf e2 = { 0 };
        assert_int_equal(spf_macro_check(copy, n, macro_cases[i].mode, &info, &e2),
                         macro_cases[i].out == NULL ? -1 : 0);
        xfree(copy);
        buf_free(&out);
        buf_free(&err);
        buf_free(&e2);
    }
}

static void test_macro_specials(void **state)
{
    (void)state;
    struct buf out = { 0 }, err = { 0 };
    /* the suite's upper-macro case */
    struct spf_macro_ctx c = rfc_ctx;
    c.l = "~jack&jill=up-a_b3.c";
    assert_int_equal(spf_macro_expand("http://example.com/why.html?l=%{L}", 34, SPF_MACRO_EXP, &c,
                                      &out, &err), 0);
    assert_string_equal(buf_ptr(&out), "http://example.com/why.html?l=~jack%26jill%3Dup-a_b3.c");
    /* %{p} without a value yet: the evaluator must look it up first */
    c.p = NULL;
    buf_reset(&out);
    assert_int_equal(spf_macro_expand("%{p}.x", 6, SPF_MACRO_DOMAIN, &c, &out, &err),
                     SPF_MACRO_NEED_P);
    struct spf_macro_info info;
    assert_int_equal(spf_macro_check("a%{p2r}b%{d}", 12, SPF_MACRO_DOMAIN, &info, &err), 0);
    assert_true(info.uses_p && info.ends_macro);
    assert_int_equal(spf_macro_check("x.%{d}.com", 10, SPF_MACRO_DOMAIN, &info, &err), 0);
    assert_true(!info.ends_macro && !info.uses_p);
    assert_int_equal(spf_macro_check("x.%%", 4, SPF_MACRO_DOMAIN, &info, &err), 0);
    assert_true(info.ends_macro);
    assert_int_equal(spf_macro_check("x.%{d}", 6, SPF_MACRO_DOMAIN, &info, &err), 0);
    assert_true(info.ends_macro && !info.uses_p);
    /* the output is bounded */
    struct buf big = { 0 };
    for (int i = 0; i < 2000; i++)
        buf_append_str(&big, "%{s}");
    buf_reset(&out);
    assert_int_equal(spf_macro_expand(buf_ptr(&big), buf_size(&big), SPF_MACRO_EXP, &rfc_ctx, &out,
                                      &err), -1);
    buf_free(&big);
    buf_free(&out);
    buf_free(&err);
}

/* ------------------------------------------------------ an in-memory resolver */

struct mock_rr {
    const char *name, *type, *val;   /* type "TEMPFAIL": every query of name fails */
};

struct mock {
    const struct mock_rr *zone;
    bool async;
    struct buf log;        /* "TYPE name\n" per query */
    unsigned nqueries;
    struct pending {
        char *name;
        enum dns_type type;
        dns_cb cb;
        void *arg;
    } q[4];
    size_t nq;
};

static enum dns_type type_of(const char *t)
{
    static const struct { const char *n; enum dns_type t; } types[] = {
        { "A", DNS_T_A }, { "AAAA", DNS_T_AAAA }, { "MX", DNS_T_MX }, { "TXT", DNS_T_TXT },
        { "PTR", DNS_T_PTR }, { "CNAME", DNS_T_CNAME },
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(t, types[i].n) == 0)
            return types[i].t;
    return 0;
}

static bool name_eqi(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (nb > 0 && b[nb - 1] == '.')
        nb--;
    return na == nb && str_ieq(b, nb, a);
}

static void mock_answer(struct mock *m, const char *name, enum dns_type t, dns_cb cb, void *arg)
{
    struct dns_rr rr[16];
    struct dns_answer ans = { .status = DNS_NXDOMAIN, .rr = rr };
    char hosts[16][256];
    for (const struct mock_rr *z = m->zone; z->name != NULL; z++) {
        if (!name_eqi(z->name, name))
            continue;
        if (strcmp(z->type, "TEMPFAIL") == 0) {
            ans.status = DNS_TEMPFAIL;
            ans.n = 0;
            break;
        }
        if (ans.status == DNS_NXDOMAIN)
            ans.status = DNS_NODATA;
        if (type_of(z->type) != t || ans.n == 16)
            continue;
        struct dns_rr *r = &rr[ans.n];
        memset(r, 0, sizeof(*r));
        r->type = t;
        if (t == DNS_T_A)
            assert_int_equal(inet_pton(AF_INET, z->val, r->u.a), 1);
        else if (t == DNS_T_AAAA)
            assert_int_equal(inet_pton(AF_INET6, z->val, r->u.aaaa), 1);
        else if (t == DNS_T_TXT)
            r->u.txt.data = (char *)z->val, r->u.txt.len = strlen(z->val);
        else if (t == DNS_T_MX) {
            r->u.mx.pref = 10;
            str_lcpy(hosts[ans.n], z->val, sizeof(hosts[0]));
            r->u.mx.host = hosts[ans.n];
        } else
            r->u.name = (char *)z->val;
        ans.n++;
        ans.status = DNS_OK;
    }
    cb(arg, &ans);
}

static void mock_resolve(void *impl, const char *name, enum dns_type t, dns_cb cb, void *arg)
{
    struct mock *m = impl;
    m->nqueries++;
    buf_printf(&m->log, "%s %s\n", dns_type_name(t), name);
    if (!m->async) {
        mock_answer(m, name, t, cb, arg);
        return;
    }
    assert_true(m->nq < sizeof(m->q) / sizeof(m->q[0]));
    m->q[m->nq++] = (struct pending){ xstrdup(name), t, cb, arg };
}

static void mock_close(void *impl) { (void)impl; }

static const struct dns_backend mock_ops = { .resolve = mock_resolve, .close = mock_close };

/* Deliver the oldest queued answer (asynchronous mode). */
static bool mock_pump(struct mock *m)
{
    if (m->nq == 0)
        return false;
    struct pending p = m->q[0];
    memmove(m->q, m->q + 1, (m->nq - 1) * sizeof(m->q[0]));
    m->nq--;
    mock_answer(m, p.name, p.type, p.cb, p.arg);
    xfree(p.name);
    return true;
}

/* ------------------------------------------------------------- evaluator */

struct eval_case {
    const char *name;
    const struct mock_rr *zone;
    const char *ip, *sender, *helo;
    enum spf_result want;
    const char *exp;      /* the explanation, NULL: none */
    const char *mech;     /* the matched mechanism; NULL: not checked, "": none */
    const char *query;    /* a query that must be asked ("TYPE name", any case) */
    bool helo_id;
    const char *receiver;
};

#define Z(...) ((const struct mock_rr[]){ __VA_ARGS__, { NULL, NULL, NULL } })

static const struct eval_case eval_cases[] = {
    { .name = "ip4 pass",
      .zone = Z({ "example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 -all" }),
      .ip = "192.0.2.7", .sender = "u@example.com", .helo = "h.example.net", .want = SPF_PASS,
      .mech = "ip4:192.0.2.0/24" },
    { .name = "ip4 fail",
      .zone = Z({ "example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 -all" }),
      .ip = "198.51.100.1", .sender = "u@example.com", .helo = "h.example.net", .want = SPF_FAIL,
      .mech = "-all" },
    { .name = "ipv4-mapped is ipv4",
      .zone = Z({ "example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 -all" }),
      .ip = "::ffff:192.0.2.7", .sender = "u@example.com", .helo = "h", .want = SPF_PASS },
    { .name = "ipv4-mapped never ip6",
      .zone = Z({ "example.com", "TXT", "v=spf1 ip6:::ffff:192.0.2.7 ip6:::/0 ?all" }),
      .ip = "::FFFF:192.0.2.7", .sender = "u@example.com", .helo = "h", .want = SPF_NEUTRAL,
      .mech = "?all" },
    { .name = "ip6 pass",
      .zone = Z({ "example.com", "TXT", "v=spf1 ip6:2001:db8::/32 -all" }),
      .ip = "2001:db8::1", .sender = "u@example.com", .helo = "h", .want = SPF_PASS },
    { .name = "ip6 fail",
      .zone = Z({ "example.com", "TXT", "v=spf1 ip6:2001:db8::/32 -all" }),
      .ip = "2001:db9::1", .sender = "u@example.com", .helo = "h", .want = SPF_FAIL },
    { .name = "softfail",
      .zone = Z({ "example.com", "TXT", "v=spf1 ~all" }),
      .ip = "192.0.2.1", .sender = "u@example.com", .helo = "h", .want = SPF_SOFTFAIL,
      .mech = "~all" },
    { .name = "default neutral",
      .zone = Z({ "example.com", "TXT", "v=spf1 ip4:10.0.0.0/8" }),
      .ip = "192.0.2.1", .sender = "u@example.com", .helo = "h", .want = SPF_NEUTRAL,
      .mech = "" },
    { .name = "no record",
      .zone = Z({ "other.com", "A", "192.0.2.1" }),
      .ip = "192.0.2.1", .sender = "u@example.com", .helo = "h", .want = SPF_NONE },
    { .name = "no spf among txt",
      .zone = Z({ "example.com", "TXT", "hello" }, { "example.com", "TXT", "v=spf10" }),
      .ip = "192.0.2.1", .sender = "u@example.com", .helo = "h", .want = SPF_NONE },
    { .name = "two records",
      .zone = Z({ "example.com", "TXT", "v=spf1 -all" }, { "example.com", "TXT", "v=spf1 +all" }),
      .ip = "192.0.2.1", .sender = "u@example.com", .helo = "h", .want = SPF_PERMERROR },
    { .name = "record lookup fails",
      .zone = Z({ "example.com", "TEMPFAIL", NULL }),
      .ip = "192.0.2.1", .sender = "u@example.com", .helo = "h", .want = SPF_TEMPERROR },
    { .name = "single label",
      .zone = Z({ "example", "TXT", "v=spf1 -all" }),
      .ip = "192.0.2.1", .sender = "u@example", .helo = "h", .want = SPF_NONE },
    { .name = "domain literal",
      .zone = Z({ "x", "A", "1.2.3.4" }),
      .ip = "192.0.2.1", .sender = "u@[192.0.2.1]", .helo = "h", .want = SPF_NONE },
    { .name = "empty label",
      .zone = Z({ "x", "A", "1.2.3.4" }),
      .ip = "192.0.2.1", .sender = "u@a..example.com", .helo = "h", .want = SPF_NONE },
    { .name = "numeric domain",
      .zone = Z({ "x", "A", "1.2.3.4" }),
      .ip = "192.0.2.1", .sender = "u@192.0.2.1", .helo = "h", .want = SPF_NONE },
    { .name = "bad ip",
      .zone = Z({ "example.com", "TXT", "v=spf1 +all" }),
      .ip = "192.0.2.300", .sender = "u@example.com", .helo = "h", .want = SPF_PERMERROR },
    { .name = "syntax error after a match",
      .zone = Z({ "example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 bogus" }),
      .ip = "192.0.2.7", .sender = "u@example.com", .helo = "h", .want = SPF_PERMERROR },
    { .name = "a with cidr",
      .zone = Z({ "example.com", "TXT", "v=spf1 a/24 -all" }, { "example.com", "A", "192.0.2.1" }),
      .ip = "192.0.2.200", .sender = "u@example.com", .helo = "h", .want = SPF_PASS,
      .mech = "a/24" },
    { .name = "a ipv6 with cidr6",
      .zone = Z({ "example.com", "TXT", "v=spf1 a/32//48 -all" }, { "example.com", "AAAA", "2001:db8:1::1" }),
      .ip = "2001:db8:1:ffff::9", .sender = "u@example.com", .helo = "h", .want = SPF_PASS,
      .query = "AAAA example.com" },
    { .name = "mx",
      .zone = Z({ "example.com", "TXT", "v=spf1 mx -all" }, { "example.com", "MX", "mx1.example.com" },
              { "example.com", "MX", "mx2.example.com" }, { "mx2.example.com", "A", "192.0.2.9" }),
      .ip = "192.0.2.9", .sender = "u@example.com", .helo = "h", .want = SPF_PASS,
      .mech = "mx" },
    { .name = "null mx",
      .zone = Z({ "example.com", "TXT", "v=spf1 mx" }, { "example.com", "MX", "." }),
      .ip = "192.0.2.9", .sender = "u@example.com", .helo = "h", .want = SPF_NEUTRAL },
    { .name = "mx host lookup fails",
      .zone = Z({ "example.com", "TXT", "v=spf1 mx -all" }, { "example.com", "MX", "mx1.example.com" },
        { "mx1.example.com", "TEMPFAIL", NULL }),
      .ip = "192.0.2.9", .sender = "u@example.com", .helo = "h", .want = SPF_TEMPERROR },
    { .name = "more than 10 mx",
      .zone = Z({ "example.com", "TXT", "v=spf1 mx ?all" }, { "example.com", "MX", "m1.example.com" },
        { "example.com", "MX", "m2.example.com" }, { "example.com", "MX", "m3.example.com" },
        { "example.com", "MX", "m4.example.com" }, { "example.com", "MX", "m5.example.com" },
        { "example.com", "MX", "m6.example.com" }, { "example.com", "MX", "m7.example.com" },
        { "example.com", "MX", "m8.example.com" }, { "example.com", "MX", "m9.example.com" },
        { "example.com", "MX", "m10.example.com" }, { "example.com", "MX", "m11.example.com" }),
      .ip = "192.0.2.9", .sender = "u@example.com", .helo = "h", .want = SPF_PERMERROR },
    { .name = "include pass is a match",
      .zone = Z({ "example.com", "TXT", "v=spf1 -include:inc.example.com +all" },
        { "inc.example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 -all" }),
      .ip = "192.0.2.1", .sender = "u@example.com", .helo = "h", .want = SPF_FAIL,
      .mech = "-include:inc.example.com" },
    { .name = "include fail is no match",
      .zone = Z({ "example.com", "TXT", "v=spf1 -include:inc.example.com +all" },
        { "inc.example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 -all" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_PASS,
      .mech = "+all" },
    { .name = "include none is permerror",
      .zone = Z({ "example.com", "TXT", "v=spf1 include:inc.example.com +all" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_PERMERROR },
    { .name = "include temperror",
      .zone = Z({ "example.com", "TXT", "v=spf1 include:inc.example.com +all" },
        { "inc.example.com", "TEMPFAIL", NULL }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_TEMPERROR },
    { .name = "include permerror",
      .zone = Z({ "example.com", "TXT", "v=spf1 include:inc.example.com +all" },
        { "inc.example.com", "TXT", "v=spf1 a:" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_PERMERROR },
    { .name = "include loop",
      .zone = Z({ "example.com", "TXT", "v=spf1 include:example.com" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_PERMERROR },
    { .name = "include of a malformed name",
      .zone = Z({ "example.com", "TXT", "v=spf1 include:%{l}.example.com +all" }),
      .ip = "10.0.0.1", .sender = "a..b@example.com", .helo = "h", .want = SPF_PERMERROR },
    { .name = "a of a malformed name is no match",
      .zone = Z({ "example.com", "TXT", "v=spf1 a:%{l}.example.com -all" }),
      .ip = "10.0.0.1", .sender = "a..b@example.com", .helo = "h", .want = SPF_FAIL },
    { .name = "redirect with its exp",
      .zone = Z({ "example.com", "TXT", "v=spf1 redirect=_spf.example.com exp=no.example.com" },
        { "_spf.example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 -all exp=why.example.com" },
        { "why.example.com", "TXT", "%{i} not ok for %{d} (%{o})" },
        { "no.example.com", "TXT", "wrong" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_FAIL,
      .exp = "10.0.0.1 not ok for _spf.example.com (example.com)",
      .mech = "-all" },
    { .name = "redirect none",
      .zone = Z({ "example.com", "TXT", "v=spf1 redirect=_spf.example.com" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_PERMERROR },
    { .name = "redirect ignored with all",
      .zone = Z({ "example.com", "TXT", "v=spf1 ip4:10.9.9.9 redirect=_spf.example.com -all" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_FAIL },
    { .name = "exp only from the outer record",
      .zone = Z({ "example.com", "TXT", "v=spf1 include:inc.example.com -all exp=e1.example.com" },
        { "inc.example.com", "TXT", "v=spf1 -all exp=e2.example.com" },
        { "e1.example.com", "TXT", "outer" }, { "e2.example.com", "TXT", "inner" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_FAIL,
      .exp = "outer" },
    { .name = "exp letters c r t v",
      .zone = Z({ "example.com", "TXT", "v=spf1 -all exp=e.example.com" },
        { "e.example.com", "TXT", "%{c} %{r} %{t} %{v} %{h}" }),
      .ip = "2001:DB8::1", .sender = "u@example.com", .helo = "helo.example", .want = SPF_FAIL,
      .exp = "2001:db8::1 mx.test 42 ip6 helo.example",
      .receiver = "mx.test" },
    { .name = "exp with two txt records is ignored",
      .zone = Z({ "example.com", "TXT", "v=spf1 -all exp=e.example.com" }, { "e.example.com", "TXT", "a" },
        { "e.example.com", "TXT", "b" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_FAIL },
    { .name = "exp lookup error is ignored",
      .zone = Z({ "example.com", "TXT", "v=spf1 -all exp=e.example.com" }, { "e.example.com", "TEMPFAIL", NULL }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_FAIL },
    { .name = "exp with a bad macro is ignored",
      .zone = Z({ "example.com", "TXT", "v=spf1 -all exp=e.example.com" }, { "e.example.com", "TXT", "%{x}" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_FAIL },
    { .name = "exp not used for softfail",
      .zone = Z({ "example.com", "TXT", "v=spf1 ~all exp=e.example.com" }, { "e.example.com", "TXT", "x" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_SOFTFAIL },
    { .name = "exp with %{p}",
      .zone = Z({ "example.com", "TXT", "v=spf1 -all exp=e.example.com" },
        { "e.example.com", "TXT", "connect from %{p}" },
        { "1.0.0.10.in-addr.arpa", "PTR", "bad.example.org" },
        { "1.0.0.10.in-addr.arpa", "PTR", "mail.example.com" },
        { "mail.example.com", "A", "10.0.0.1" }, { "bad.example.org", "A", "10.0.0.2" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_FAIL,
      .exp = "connect from mail.example.com" },
    { .name = "exp with %{p} unknown",
      .zone = Z({ "example.com", "TXT", "v=spf1 -all exp=e.example.com" },
        { "e.example.com", "TXT", "connect from %{p}" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_FAIL,
      .exp = "connect from unknown" },
    { .name = "ten dns terms",
      .zone = Z({ "example.com", "TXT", "v=spf1 a a a a a a a a a a -all" }, { "example.com", "A", "10.0.0.9" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_FAIL },
    { .name = "eleven dns terms",
      .zone = Z({ "example.com", "TXT", "v=spf1 a a a a a a a a a a a -all" }, { "example.com", "A", "10.0.0.9" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_PERMERROR },
    { .name = "terms counted across includes",
      .zone = Z({ "example.com", "TXT", "v=spf1 a include:i.example.com a -all" },
        { "i.example.com", "TXT", "v=spf1 a a a a a a a a" }, { "example.com", "A", "10.0.0.9" },
        { "i.example.com", "A", "10.0.0.9" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_PERMERROR },
    { .name = "two void lookups",
      .zone = Z({ "example.com", "TXT", "v=spf1 a:n1.example.com mx:n2.example.com ?all" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_NEUTRAL },
    { .name = "three void lookups",
      .zone = Z({ "example.com", "TXT", "v=spf1 a:n1.example.com mx:n2.example.com exists:n3.example.com ?all" }),
      .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h", .want = SPF_PERMERROR },
    { .name = "ptr",
      .zone = Z({ "example.com", "TXT", "v=spf1 ptr -all" }, { "1.2.0.192.in-addr.arpa", "PTR", "h.example.com" },
        { "h.example.com", "A", "192.0.2.1" }),
      .ip = "192.0.2.1", .sender = "u@example.com", .helo = "h", .want = SPF_PASS,
      .mech = "ptr" },
    { .name = "ptr not validated",
      .zone = Z({ "example.com", "TXT", "v=spf1 ptr -all" }, { "1.2.0.192.in-addr.arpa", "PTR", "h.example.com" },
        { "h.example.com", "A", "192.0.2.2" }),
      .ip = "192.0.2.1", .sender = "u@example.com", .helo = "h", .want = SPF_FAIL },
    { .name = "ptr address error skips the name",
      .zone = Z({ "example.com", "TXT", "v=spf1 ptr -all" }, { "1.2.0.192.in-addr.arpa", "PTR", "h.example.com" },
        { "1.2.0.192.in-addr.arpa", "PTR", "g.example.com" }, { "h.example.com", "TEMPFAIL", NULL },
        { "g.example.com", "A", "192.0.2.1" }),
      .ip = "192.0.2.1", .sender = "u@example.com", .helo = "h", .want = SPF_PASS },
    { .name = "ptr lookup error is no match",
      .zone = Z({ "example.com", "TXT", "v=spf1 ptr -all" }, { "1.2.0.192.in-addr.arpa", "TEMPFAIL", NULL }),
      .ip = "192.0.2.1", .sender = "u@example.com", .helo = "h", .want = SPF_FAIL },
    { .name = "ptr ipv6",
      .zone = Z({ "example.com", "TXT", "v=spf1 ptr:example.com -all" },
        { "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", "PTR",
          "Mail.Example.COM" },
        { "mail.example.com", "AAAA", "2001:db8::cb01" }),
      .ip = "2001:db8::cb01", .sender = "u@example.com", .helo = "h", .want = SPF_PASS },
    { .name = "%{p} in a mechanism",
      .zone = Z({ "example.com", "TXT", "v=spf1 exists:%{p}.p.example.com -all" },
        { "1.2.0.192.in-addr.arpa", "PTR", "mail.example.com" },
        { "mail.example.com", "A", "192.0.2.1" },
        { "mail.example.com.p.example.com", "A", "127.0.0.2" }),
      .ip = "192.0.2.1", .sender = "u@example.com", .helo = "h", .want = SPF_PASS },
    { .name = "helo identity",
      .zone = Z({ "mail.example.org", "TXT", "v=spf1 a -all" }, { "mail.example.org", "A", "192.0.2.1" },
        { "example.com", "TXT", "v=spf1 -all" }),
      .ip = "192.0.2.1", .sender = "u@example.com", .helo = "mail.example.org", .want = SPF_PASS,
      .mech = "a",
      .helo_id = true },
    { .name = "null sender uses postmaster@helo",
      .zone = Z({ "mail.example.org", "TXT", "v=spf1 -all exp=e.example.org" },
        { "e.example.org", "TXT", "%{l}@%{o} %{s}" }),
      .ip = "192.0.2.1", .sender = "", .helo = "mail.example.org", .want = SPF_FAIL,
      .exp = "postmaster@mail.example.org postmaster@mail.example.org" },
    { .name = "no local part",
      .zone = Z({ "example.com", "TXT", "v=spf1 -all exp=e.example.com" },
                         { "e.example.com", "TXT", "%{l}" }),
      .ip = "192.0.2.1", .sender = "@example.com", .helo = "h", .want = SPF_FAIL,
      .exp = "postmaster" },
    { .name = "RFC 7208 7.4 IPv6 example",
      .zone = Z({ "email.example.com", "TXT", "v=spf1 exists:%{ir}.%{v}._spf.%{d2} -all" },
        { "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com", "A",
          "127.0.0.2" }),
      .ip = "2001:db8::cb01",
      .sender = "strong-bad@email.example.com",
      .helo = "h",
      .want = SPF_PASS,
      .query = "A 1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com" },
    { .name = "exists uses A for ipv6 clients",
      .zone = Z({ "example.com", "TXT", "v=spf1 exists:x.example.com -all" }, { "x.example.com", "A", "127.0.0.2" }),
      .ip = "2001:db8::1", .sender = "u@example.com", .helo = "h", .want = SPF_PASS },
    { .name = "long target truncated",
      .zone = Z({ "example.com", "TXT", "v=spf1 exists:%{l}.%{l}.%{l}.%{l}.%{l}.example.com -all" },
        { "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example.com",
          "A", "127.0.0.2" }),
      .ip = "10.0.0.1",
      .sender = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx@example.com",
      .helo = "h",
      .want = SPF_PASS },
    { .name = "trailing dot",
      .zone = Z({ "example.com", "TXT", "v=spf1 redirect=%{d}.r.example.com." },
                       { "example.com.r.example.com", "TXT", "v=spf1 exists:%{d}.x -all" },
                       { "example.com.r.example.com.x", "A", "127.0.0.2" }),
      .ip = "10.0.0.1", .sender = "u@example.com.", .helo = "h", .want = SPF_PASS },
};

static void check_outcome(const struct eval_case *c, const struct spf_outcome *o, const char *how)
{
    if (o->result != c->want)
        fail_msg("%s (%s): %s, want %s (%s)", c->name, how, spf_result_name(o->result),
                 spf_result_name(c->want), o->reason);
    if ((c->exp == NULL) != (o->explanation == NULL) ||
        (c->exp != NULL && strcmp(c->exp, o->explanation) != 0))
        fail_msg("%s (%s): explanation '%s', want '%s'", c->name, how,
                 o->explanation ? o->explanation : "(none)", c->exp ? c->exp : "(none)");
    if (c->mech != NULL && strcmp(c->mech, o->mechanism ? o->mechanism : "") != 0)
        fail_msg("%s (%s): mechanism '%s', want '%s'", c->name, how,
                 o->mechanism ? o->mechanism : "(none)", c->mech);
    assert_non_null(o->reason);
    assert_non_null(o->domain);
}

static struct spf_request request_of(const struct eval_case *c)
{
    return (struct spf_request){ .ip = c->ip, .sender = c->sender, .helo = c->helo,
                                 .helo_identity = c->helo_id, .receiver = c->receiver, .now = 42 };
}

static void answer_cb(void *arg, const struct dns_answer *ans) { spf_eval_answer(arg, ans); }

/* The pull interface by hand; returns the log of questions. */
static void run_steps(const struct eval_case *c, struct buf *log)
{
    struct spf_request req = request_of(c);
    struct mock m = { .zone = c->zone };
    struct spf_eval *e = spf_eval_new(&req);
    const char *name, *again;
    enum dns_type type, type2;
    while (spf_eval_step(e, &name, &type) == SPF_STEP_DNS) {
        /* asking again without an answer repeats the question */
        assert_int_equal(spf_eval_step(e, &again, &type2), SPF_STEP_DNS);
        assert_string_equal(name, again);
        assert_int_equal(type, type2);
        buf_printf(log, "%s %s\n", dns_type_name(type), name);
        mock_answer(&m, name, type, answer_cb, e);
    }
    struct dns_answer stray = { .status = DNS_NXDOMAIN };
    spf_eval_answer(e, &stray);   /* nothing asked: ignored */
    check_outcome(c, spf_eval_outcome(e), "steps");
    spf_eval_free(e);
}

struct done_state {
    const struct eval_case *c;
    const char *how;
    int calls;
};

static void done_cb(void *arg, const struct spf_outcome *o)
{
    struct done_state *d = arg;
    d->calls++;
    check_outcome(d->c, o, d->how);
}

static void run_check(const struct eval_case *c, bool async, struct buf *log)
{
    struct spf_request req = request_of(c);
    struct mock m = { .zone = c->zone, .async = async };
    struct dns_resolver r = { .ops = &mock_ops, .impl = &m };
    struct done_state d = { c, async ? "spf_check async" : "spf_check sync", 0 };
    spf_check(&r, &req, done_cb, &d);
    while (mock_pump(&m))
        ;
    assert_int_equal(d.calls, 1);
    buf_append(log, buf_ptr(&m.log), buf_size(&m.log));
    buf_free(&m.log);
}

static void test_eval_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(eval_cases) / sizeof(eval_cases[0]); i++) {
        const struct eval_case *c = &eval_cases[i];
        struct buf l1 = { 0 }, l2 = { 0 }, l3 = { 0 };
        run_steps(c, &l1);
        run_check(c, false, &l2);
        run_check(c, true, &l3);
        if (strcmp(buf_ptr(&l1), buf_ptr(&l2)) != 0 || strcmp(buf_ptr(&l1), buf_ptr(&l3)) != 0)
            fail_msg("%s: the drivers asked different questions:\n%s--\n%s--\n%s", c->name,
                     buf_ptr(&l1), buf_ptr(&l2), buf_ptr(&l3));
        if (c->query != NULL) {
            struct buf want = { 0 };
            buf_printf(&want, "%s\n", c->query);
            str_lower(l1.data);
            str_lower(want.data);
            if (strstr(buf_ptr(&l1), buf_ptr(&want)) == NULL)
                fail_msg("%s: '%s' was not asked:\n%s", c->name, c->query, buf_ptr(&l1));
            buf_free(&want);
        }
        buf_free(&l1);
        buf_free(&l2);
        buf_free(&l3);
    }
}

/* Records that are not SPF at all, or malformed in any way, are answered
 * (permerror or none), never a crash. */
static void test_eval_garbage(void **state)
{
    (void)state;
    static const char *const junk[] = {
        "v=spf1 %", "v=spf1 a:%{", "v=spf1 ip6:", "v=spf1 \xff\xfe", "v=spf1 exists:%{p}%{p}%{p}.x",
        "v=spf1 include:%{d}", "v=spf1 redirect=%{d}", "v=spf1 ptr:%{p}.com ptr ptr ptr",
        "v=spf1 mx:%{ir}.%{l}.%{o}.%{h}.%{v}.%{i}.%{s}.%{d}",
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        const struct mock_rr zone[] = {
            { "example.com", "TXT", junk[i] },
            { "1.0.0.10.in-addr.arpa", "PTR", "example.com" },
            { "example.com", "A", "10.0.0.1" },
            { NULL, NULL, NULL },
        };
        struct spf_request req = { .ip = "10.0.0.1", .sender = "u@example.com", .helo = "h" };
        struct mock m = { .zone = zone };
        struct dns_resolver r = { .ops = &mock_ops, .impl = &m };
        struct done_state d = { NULL, "", 0 };
        (void)d;
        struct spf_eval *e = spf_eval_new(&req);
        const char *name;
        enum dns_type type;
        unsigned steps = 0;
        while (spf_eval_step(e, &name, &type) == SPF_STEP_DNS) {
            assert_true(++steps < 250);
            mock_answer(&m, name, type, answer_cb, e);
        }
        const struct spf_outcome *o = spf_eval_outcome(e);
        assert_true(o->result <= SPF_PERMERROR);
        spf_eval_free(e);
        (void)r;
    }
}

/* ------------------------------------------------------------- Received-SPF */

static void test_received_header(void **state)
{
    (void)state;
    struct spf_outcome o = { .result = SPF_PASS, .domain = "example.com",
                             .reason = "example.com matched ip4:192.0.2.0/24",
                             .mechanism = "ip4:192.0.2.0/24" };
    struct spf_request req = { .ip = "192.0.2.1", .sender = "user@example.com",
                               .helo = "mail.example.com", .receiver = "mx.example.net" };
    struct buf h = { 0 };
    spf_received_header(&o, &req, &h);
    assert_string_equal(buf_ptr(&h),
                        "Received-SPF: pass (mx.example.net: domain of user@example.com designates\r\n"
                        " 192.0.2.1 as permitted sender) client-ip=192.0.2.1;\r\n"
                        " envelope-from=\"user@example.com\"; helo=mail.example.com;\r\n"
                        " receiver=mx.example.net; mechanism=\"ip4:192.0.2.0/24\"; identity=mailfrom\r\n");
    /* errors carry problem=; hostile strings stay inside their quotes */
    o = (struct spf_outcome){ .result = SPF_PERMERROR, .domain = "x",
                              .reason = "x: unknown mechanism 'a\"b(c)\\'" };
    req = (struct spf_request){ .ip = "2001:db8::1", .sender = "\"q\\\"\r\n x\"@x",
                                .helo = "(evil)\r\nX-Injected: 1", .helo_identity = true };
    buf_reset(&h);
    spf_received_header(&o, &req, &h);
    const char *s = buf_ptr(&h);
    assert_true(strncmp(s, "Received-SPF: permerror (", 25) == 0);
    assert_non_null(strstr(s, "client-ip=\"2001:db8::1\";"));
    assert_non_null(strstr(s, "identity=helo\r\n"));
    assert_non_null(strstr(s, " problem=\""));
    assert_null(strstr(s, "\r\nX-Injected"));
    /* every line is continued by whitespace, and only CRLF ends one */
    for (const char *p = s; (p = strchr(p, '\n')) != NULL; p++) {
        assert_true(p[-1] == '\r');
        assert_true(p[1] == '\0' || p[1] == ' ');
    }
    for (const char *p = s; *p; p++)
        assert_true((*p >= 0x20 && *p < 0x7f) || *p == '\r' || *p == '\n');
    buf_free(&h);
}

static void test_result_names(void **state)
{
    (void)state;
    static const char *const want[] = { "none", "neutral", "pass", "fail", "softfail",
                                        "temperror", "permerror" };
    for (int r = SPF_NONE; r <= SPF_PERMERROR; r++)
        assert_string_equal(spf_result_name((enum spf_result)r), want[r]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_valid),     cmocka_unit_test(test_record_invalid),
        cmocka_unit_test(test_record_prefixes),  cmocka_unit_test(test_record_selection),
        cmocka_unit_test(test_macro_table),      cmocka_unit_test(test_macro_specials),
        cmocka_unit_test(test_eval_table),       cmocka_unit_test(test_eval_garbage),
        cmocka_unit_test(test_received_header),  cmocka_unit_test(test_result_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
