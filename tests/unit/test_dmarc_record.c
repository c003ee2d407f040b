/*
 * test_dmarc_record - DMARC records and domains (dmarc/dmarc.h); the
 * evaluator is in test_dmarc.c.
 *
 * 1. Record parser: a table of records with their parse written back in a
 *    short canonical form ("p=reject sp=reject np=reject" plus whatever
 *    differs from the defaults), of texts that are not DMARC records, and
 *    of DMARC records that give no policy. Every input is parsed from a
 *    heap block of exactly its length, and every prefix of it too (it must
 *    parse or be refused, never crash).
 * 2. Organizational domains over libpsl (multi-label suffixes, wildcard
 *    and exception rules, case, the final dot, malformed names) and the
 *    official PSL test vectors ($MW_TESTDATA/public-suffix-list/tests.txt);
 *    alignment strict and relaxed; the pct= draw.
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
#include "core/xmalloc.h"
#include "core/idna.h"
#include "dmarc/dmarc.h"
#include "dns/dns.h"
#include "dns/zone.h"
#include "msg/authres.h"

/* ------------------------------------------------------------ record parser */

static void dump_uris(struct buf *b, const char *tag, const struct dmarc_uri *u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf_printf(b, "%s%s", i ? "," : tag, u[i].uri);
        if (u[i].max_size)
            buf_printf(b, "!%llu", (unsigned long long)u[i].max_size);
        if (!u[i].mailto)
            buf_append_str(b, "(not-mailto)");
    }
}

static void dump_record(const struct dmarc_record *r, struct buf *b)
{
    buf_printf(b, "p=%s sp=%s np=%s", dmarc_policy_name(r->p), dmarc_policy_name(r->sp),
               dmarc_policy_name(r->np));
    if (r->pct != 100)
        buf_printf(b, " pct=%u", r->pct);
    if (r->adkim == DMARC_STRICT)
        buf_append_str(b, " adkim=s");
    if (r->aspf == DMARC_STRICT)
        buf_append_str(b, " aspf=s");
    if (r->fo != DMARC_FO_0)
        buf_printf(b, " fo=%s%s%s%s", r->fo & DMARC_FO_0 ? "0" : "", r->fo & DMARC_FO_1 ? "1" : "",
                   r->fo & DMARC_FO_D ? "d" : "", r->fo & DMARC_FO_S ? "s" : "");
    if (!r->rf_afrf)
        buf_append_str(b, " rf=-afrf");
    if (r->ri != 86400)
        buf_printf(b, " ri=%u", (unsigned)r->ri);
    dump_uris(b, " rua=", r->rua, r->nrua);
    dump_uris(b, " ruf=", r->ruf, r->nruf);
    if (r->p_from_rua)
        buf_append_str(b, " (p from rua)");
    if (r->ignored)
        buf_printf(b, " ignored=%u", r->ignored);
}

#define NOT "NOT-DMARC"
#define INVALID "INVALID: "

static const struct {
    const char *in;
    const char *want;   /* the dump, NOT, or INVALID followed by the reason */
} record_cases[] = {
    /* valid */
    { "v=DMARC1; p=none", "p=none sp=none np=none" },
    { "v=DMARC1;p=reject", "p=reject sp=reject np=reject" },
    { "v = DMARC1 ; p = quarantine ; ", "p=quarantine sp=quarantine np=quarantine" },
    { "\tv=DMARC1;\tp=REJECT;;", "p=reject sp=reject np=reject" },
    { "V=DMARC1; P=Reject", "p=reject sp=reject np=reject" },
    { "v=DMARC1; p=none; sp=reject", "p=none sp=reject np=reject" },
    { "v=DMARC1; p=reject; sp=none; np=quarantine", "p=reject sp=none np=quarantine" },
    { "v=DMARC1; p=reject; np=none", "p=reject sp=reject np=none" },
    { "v=DMARC1; rua=mailto:a@b.example; p=none", "p=none sp=none np=none rua=mailto:a@b.example" },
    { "v=DMARC1; p=reject; pct=0", "p=reject sp=reject np=reject pct=0" },
    { "v=DMARC1; p=reject; pct=100", "p=reject sp=reject np=reject" },
    { "v=DMARC1; p=reject; pct=050", "p=reject sp=reject np=reject pct=50" },
    { "v=DMARC1; p=none; adkim=s; aspf=S", "p=none sp=none np=none adkim=s aspf=s" },
    { "v=DMARC1; p=none; adkim=r; aspf=r", "p=none sp=none np=none" },
    { "v=DMARC1; p=none; fo=1:d:s", "p=none sp=none np=none fo=1ds" },
    { "v=DMARC1; p=none; fo=0 : 1", "p=none sp=none np=none fo=01" },
    { "v=DMARC1; p=none; rf=iodef", "p=none sp=none np=none rf=-afrf" },
    { "v=DMARC1; p=none; rf=afrf:iodef", "p=none sp=none np=none" },
    { "v=DMARC1; p=none; ri=3600", "p=none sp=none np=none ri=3600" },
    { "v=DMARC1; p=none; ri=4294967295", "p=none sp=none np=none ri=4294967295" },
    { "v=DMARC1; p=none; rua=mailto:a@x.example, mailto:b@y.example!10m; ruf=mailto:c@x!50k",
      "p=none sp=none np=none rua=mailto:a@x.example,mailto:b@y.example!10485760 "
      "ruf=mailto:c@x!51200" },
    { "v=DMARC1; p=none; rua=https://r.example/dmarc!1G,MAILTO:x@y!7",
      "p=none sp=none np=none rua=https://r.example/dmarc!1073741824(not-mailto),MAILTO:x@y!7" },
    /* dropped values, unknown tags, malformed tag-specs */
    { "v=DMARC1; p=reject; pct=101", "p=reject sp=reject np=reject ignored=1" },
    { "v=DMARC1; p=reject; pct=-1", "p=reject sp=reject np=reject ignored=1" },
    { "v=DMARC1; p=reject; pct=abc", "p=reject sp=reject np=reject ignored=1" },
    { "v=DMARC1; p=reject; pct=", "p=reject sp=reject np=reject ignored=1" },
    { "v=DMARC1; p=reject; pct=5 0", "p=reject sp=reject np=reject ignored=1" },
    { "v=DMARC1; p=none; adkim=x; aspf=relaxed", "p=none sp=none np=none ignored=2" },
    { "v=DMARC1; p=none; fo=x", "p=none sp=none np=none ignored=1" },
    { "v=DMARC1; p=none; fo=1:", "p=none sp=none np=none ignored=1" },
    { "v=DMARC1; p=none; rf=bad!", "p=none sp=none np=none ignored=1" },
    { "v=DMARC1; p=none; ri=4294967296", "p=none sp=none np=none ignored=1" },
    { "v=DMARC1; p=none; np=maybe", "p=none sp=none np=none ignored=1" },
    { "v=DMARC1; p=none; rua=bad, mailto:ok@x, :x, mailto:, mailto:y@z!10x, mailto:w@v!",
      "p=none sp=none np=none rua=mailto:ok@x ignored=5" },
    { "v=DMARC1; p=none; rua=mailto:1@x,mailto:2@x,mailto:3@x,mailto:4@x,mailto:5@x,"
      "mailto:6@x,mailto:7@x,mailto:8@x,mailto:9@x",
      "p=none sp=none np=none rua=mailto:1@x,mailto:2@x,mailto:3@x,mailto:4@x,mailto:5@x,"
      "mailto:6@x,mailto:7@x,mailto:8@x ignored=1" },
    { "v=DMARC1; p=none; foo=bar; x_y=1; psd=y; t=n", "p=none sp=none np=none ignored=4" },
    { "v=DMARC1; p=none; reject", "p=none sp=none np=none ignored=1" },
    { "v=DMARC1; p=none; 1x=2; =3", "p=none sp=none np=none ignored=2" },
    /* the rua= exception of 6.6.3 */
    { "v=DMARC1; rua=mailto:a@b", "p=none sp=none np=none rua=mailto:a@b (p from rua)" },
    { "v=DMARC1; p=bogus; rua=mailto:a@b", "p=none sp=none np=none rua=mailto:a@b (p from rua)" },
    { "v=DMARC1; p=reject; sp=bogus; rua=mailto:a@b",
      "p=none sp=none np=none rua=mailto:a@b (p from rua)" },
    { "v=DMARC1; sp=reject; np=reject; rua=mailto:a@b",
      "p=none sp=none np=none rua=mailto:a@b (p from rua)" },
    /* not DMARC records */
    { "", NOT },
    { "v=spf1 -all", NOT },
    { "p=none; v=DMARC1", NOT },
    { "v=DMARC2; p=none", NOT },
    { "v=dmarc1; p=none", NOT },
    { "v=DMARC1p=none", NOT },
    { "v=DMARC10; p=none", NOT },
    { "; v=DMARC1; p=none", NOT },
    { "v=DMARC1 p=none", NOT },
    { "v:DMARC1; p=none", NOT },
    { "vv=DMARC1; p=none", NOT },
    /* DMARC records without a policy */
    { "v=DMARC1", INVALID "p= missing or invalid" },
    { "v=DMARC1;", INVALID "p= missing or invalid" },
    { "v=DMARC1; p=block", INVALID "p= missing or invalid" },
    { "v=DMARC1; p=", INVALID "p= missing or invalid" },
    { "v=DMARC1; p=reject; sp=bogus", INVALID "invalid sp= value" },
    { "v=DMARC1; p=bogus; rua=bad", INVALID "p= missing or invalid" },
    { "v=DMARC1; p=none; p=reject", INVALID "a tag appears twice" },
    { "v=DMARC1; v=DMARC1; p=none", INVALID "a tag appears twice" },
    { "v=DMARC1; p=none; pct=10; PCT=20", INVALID "a tag appears twice" },
    { "v=DMARC1; p=none\x01", INVALID "control or non-ASCII bytes" },
    { "v=DMARC1; p=none; x=\xc3\xa9", INVALID "control or non-ASCII bytes" },
    { "v=DMARC1; p=none\r\n", INVALID "control or non-ASCII bytes" },
};

static void parse_one(const char *s, size_t n, struct buf *out)
{
    struct dmarc_record r;
    const char *why = NULL;
    int rc = dmarc_record_parse(s, n, &r, &why);
    if (rc == DMARC_REC_OK) {
        dump_record(&r, out);
        dmarc_record_free(&r);
        return;
    }
    assert_non_null(why);
    assert_int_equal(r.nrua + r.nruf, 0);
    if (rc == DMARC_REC_NOT_DMARC)
        buf_append_str(out, NOT);
    else
        buf_printf(out, INVALID "%s", why);
}

static void test_record_table(void **state)
{
    for (size_t i = 0; i < sizeof(record_cases) / sizeof(record_cases[0]); i++) {
        const char *in = record_cases[i].in;
        size_t n = strlen(in);
        char *copy = malloc(n ? n : 1);
        memcpy(copy, in, n);
        struct buf out = { 0 };
        parse_one(copy, n, &out);
        if (strcmp(buf_ptr(&out), record_cases[i].want) != 0)
            fail_msg("case %zu \"%s\":\n got  \"%s\"\n want \"%s\"", i, in, buf_ptr(&out),
                     record_cases[i].want);
        for (size_t k = 0; k < n; k++) {
            char *p = malloc(k ? k : 1);
            memcpy(p, in, k);
            buf_reset(&out);
            parse_one(p, k, &out);
            free(p);
        }
        buf_free(&out);
        free(copy);
    }
}

static void test_record_too_many_tags(void **state)
{
    struct buf b = { 0 }, out = { 0 };
    buf_append_str(&b, "v=DMARC1; p=none");
    for (int i = 0; i < 30; i++)
        buf_printf(&b, "; x%d=1", i);
    parse_one(buf_ptr(&b), buf_size(&b), &out);   /* 32 tags */
    assert_string_equal(buf_ptr(&out), "p=none sp=none np=none ignored=30");
    buf_append_str(&b, "; y=2");
    buf_reset(&out);
    parse_one(buf_ptr(&b), buf_size(&b), &out);
    assert_string_equal(buf_ptr(&out), INVALID "too many tags");
    buf_free(&b);
    buf_free(&out);
}

/* ------------------------------------------------------------ domains */

static const struct {
    const char *in, *org;   /* org NULL: not a DNS name */
} org_cases[] = {
    { "example.com", "example.com" },
    { "a.b.example.com", "example.com" },
    { "mail.example.co.uk", "example.co.uk" },
    { "example.co.uk", "example.co.uk" },
    { "co.uk", "co.uk" },                        /* a public suffix is its own */
    { "uk", "uk" },
    { "EXAMPLE.COM.", "example.com" },
    { "Mail.Example.Co.UK", "example.co.uk" },
    { "foo.bar.example.test", "example.test" },  /* unlisted TLD: the "*" rule */
    { "a.b.c.kobe.jp", "b.c.kobe.jp" },          /* *.kobe.jp */
    { "www.city.kobe.jp", "city.kobe.jp" },      /* !city.kobe.jp */
    { "x.y.example.com.au", "example.com.au" },
    { "localhost", "localhost" },
    { "", NULL },
    { ".", NULL },
    { "a..b", NULL },
    { ".example.com", NULL },
    { "example.com..", NULL },
    { "[192.0.2.1]", NULL },
    { "a b.example", NULL },
    { "a\x01.example", NULL },
    { "\xff.example", NULL },
    { "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example", NULL },
};

static void test_org_domain(void **state)
{
    for (size_t i = 0; i < sizeof(org_cases) / sizeof(org_cases[0]); i++) {
        char *org = dmarc_org_domain(org_cases[i].in);
        if (org_cases[i].org == NULL && org != NULL)
            fail_msg("\"%s\": got \"%s\", want NULL", org_cases[i].in, org);
        if (org_cases[i].org != NULL && (org == NULL || strcmp(org, org_cases[i].org) != 0))
            fail_msg("\"%s\": got \"%s\", want \"%s\"", org_cases[i].in, org ? org : "NULL",
                     org_cases[i].org);
        xfree(org);
    }
    /* 253 octets is the most a name may have */
    char name[300];
    memset(name, 'x', sizeof(name));
    for (size_t i = 63; i < 253; i += 64)
        name[i] = '.';
    name[253] = '\0';
    char *org = dmarc_org_domain(name);
    assert_non_null(org);
    xfree(org);
    name[253] = 'x';
    name[254] = '\0';
    assert_null(dmarc_org_domain(name));
    /* the OS copy, compiled form first (Debian package publicsuffix) */
    if (access("/usr/share/publicsuffix/public_suffix_list.dafsa", R_OK) == 0)
        assert_string_equal(dmarc_psl_source(), "/usr/share/publicsuffix/public_suffix_list.dafsa");
    else if (access("/usr/share/publicsuffix/public_suffix_list.dat", R_OK) == 0)
        assert_string_equal(dmarc_psl_source(), "/usr/share/publicsuffix/public_suffix_list.dat");
}

/* The PSL project's own vectors: "input registrable-or-null" per line. A
 * null registrable domain means the input is a public suffix (then the
 * organizational domain is the name itself) or not a name at all. */
static void test_psl_vectors(void **state)
{
    const char *dir = getenv("MW_TESTDATA");
    char path[1024];
    snprintf(path, sizeof(path), "%s/public-suffix-list/tests.txt",
             dir != NULL ? dir : "/work/shared/testdata");
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot open %s (MW_TESTDATA)", path);
    char line[512], in[256], want[256];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '/' || sscanf(line, "%255s %255s", in, want) != 2)
            continue;
        if (strcmp(in, "null") == 0)
            continue;
        n++;
        char *org = dmarc_org_domain(in);
        if (strcmp(want, "null") != 0) {
            /* names come back as A-labels (RFC 8616): compare in that form */
            char *want_ace = idna_to_ascii(want);
            if (org == NULL || want_ace == NULL || strcmp(org, want_ace) != 0)
                fail_msg("PSL vector %s: got %s, want %s", in, org ? org : "NULL", want);
            xfree(want_ace);
        } else if (org != NULL) {
            char *self = dmarc_org_domain(org);   /* the name itself, normalized */
            if (strcmp(self, org) != 0 || strchr(in, '.') == in)
                fail_msg("PSL vector %s (a public suffix): got %s", in, org);
            xfree(self);
        }
        xfree(org);
    }
    fclose(f);
    assert_true(n > 70);
}

static void test_alignment(void **state)
{
    static const struct {
        const char *a, *b;
        bool strict, relaxed;
    } t[] = {
        { "example.com", "example.com", true, true },
        { "Example.COM.", "example.com", true, true },
        { "mail.example.com", "example.com", false, true },
        { "example.com", "a.b.example.com", false, true },
        { "mail.example.co.uk", "example.co.uk", false, true },
        { "a.example.co.uk", "b.example.co.uk", false, true },
        { "other.co.uk", "example.co.uk", false, false },
        { "co.uk", "example.co.uk", false, false },
        { "example.com", "example.net", false, false },
        { "example.com", "notexample.com", false, false },
        { "", "example.com", false, false },
        { "a..b", "a..b", false, false },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (dmarc_aligned(t[i].a, t[i].b, DMARC_STRICT) != t[i].strict ||
            dmarc_aligned(t[i].a, t[i].b, DMARC_RELAXED) != t[i].relaxed ||
            dmarc_aligned(t[i].b, t[i].a, DMARC_RELAXED) != t[i].relaxed)
            fail_msg("alignment of %s and %s", t[i].a, t[i].b);
    }
}

static void test_pct_draw(void **state)
{
    uint64_t s1 = 42, s2 = 42, s3 = 43;
    unsigned seen[100] = { 0 };
    bool differ = false;
    for (int i = 0; i < 10000; i++) {
        unsigned a = dmarc_pct_draw(&s1), b = dmarc_pct_draw(&s2), c = dmarc_pct_draw(&s3);
        assert_true(a < 100);
        assert_int_equal(a, b);   /* reproducible */
        differ |= a != c;
        seen[a]++;
    }
    assert_true(differ);
    for (int i = 0; i < 100; i++)
        assert_true(seen[i] > 50);   /* roughly uniform */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_table),
        cmocka_unit_test(test_record_too_many_tags),
        cmocka_unit_test(test_org_domain),
        cmocka_unit_test(test_psl_vectors),
        cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_pct_draw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
