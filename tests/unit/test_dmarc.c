/*
 * test_dmarc - DMARC (dmarc/dmarc.h).
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
 *    alignment strict and relaxed.
 * 3. The evaluator over a zone file (dns_zone_parse), each case run four
 *    ways with the same outcome: dmarc_check() with answers inside
 *    dns_resolve(), dmarc_check() with answers delivered later (as
 *    libunbound does), dmarc_check_wait() with a pump, and the step
 *    interface by hand. Discovery (From domain, organizational fallback,
 *    several records, invalid records, DNS failures), sp= and np= with the
 *    existence checks, alignment of SPF and DKIM in both modes, pct= with
 *    fixed draws, the From rules of 6.6.1 (no DNS asked at all), and the
 *    Authentication-Results entry.
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
            if (org == NULL || strcmp(org, want) != 0)
                fail_msg("PSL vector %s: got %s, want %s", in, org ? org : "NULL", want);
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

/* ------------------------------------------------------------ the evaluator */

static const char zone_text[] =
    /* strict and relaxed alignment */
    "_dmarc.strict.example. IN TXT \"v=DMARC1; p=reject; adkim=s; aspf=s\"\n"
    "_dmarc.relaxed.example. IN TXT \"v=DMARC1; p=quarantine; rua=mailto:agg@relaxed.example\"\n"
    "mail.relaxed.example. IN A 192.0.2.1\n"
    /* sp= and np= with every kind of existence */
    "_dmarc.org.example. IN TXT \"v=DMARC1; p=none; sp=quarantine; np=reject\"\n"
    "exists.org.example. IN A 192.0.2.1\n"
    "v6.org.example. IN AAAA 2001:db8::1\n"
    "mx.org.example. IN MX 10 mail.relaxed.example.\n"
    "txtonly.org.example. IN TXT \"hello\"\n"
    "x.ent.org.example. IN A 192.0.2.1\n"
    "$TEMPFAIL tf.org.example. A\n"
    "_dmarc.nonp.example. IN TXT \"v=DMARC1; p=reject; sp=quarantine\"\n"
    "_dmarc.samenp.example. IN TXT \"v=DMARC1; p=reject; sp=quarantine; np=quarantine\"\n"
    /* a multi-label public suffix */
    "_dmarc.example.co.uk. IN TXT \"v=DMARC1; p=reject\"\n"
    "_dmarc.co.uk. IN TXT \"v=DMARC1; p=reject\"\n"
    /* discovery */
    "_dmarc.multi.example. IN TXT \"v=DMARC1; p=reject\"\n"
    "_dmarc.multi.example. IN TXT \"v=DMARC1; p=none\"\n"
    "_dmarc.mixed.example. IN TXT \"v=spf1 -all\"\n"
    "_dmarc.mixed.example. IN TXT \"v=DMARC1; p=reject\"\n"
    "_dmarc.mixed.example. IN TXT \"v=DMARC2; p=none\"\n"
    "_dmarc.valid.example. IN TXT \"v=DMARC1; p=reject\"\n"
    "_dmarc.bad.valid.example. IN TXT \"v=DMARC1; p=bogus\"\n"
    "_dmarc.two.valid.example. IN TXT \"v=DMARC1; p=none\"\n"
    "_dmarc.two.valid.example. IN TXT \"v=DMARC1; p=none; pct=50\"\n"
    "_dmarc.other.valid.example. IN TXT \"not dmarc\"\n"
    "_dmarc.split.example. IN TXT \"v=DMARC1; \" \"p=reject\"\n"
    "_dmarc.alias.example. IN CNAME _dmarc.strict.example.\n"
    "$TEMPFAIL _dmarc.temp.example.\n"
    "$TEMPFAIL _dmarc.orgtemp.example.\n"
    "_dmarc.rua.example. IN TXT \"v=DMARC1; p=bogus; rua=mailto:r@rua.example\"\n"
    /* pct */
    "_dmarc.pct50.example. IN TXT \"v=DMARC1; p=reject; pct=50\"\n"
    "_dmarc.pct0.example. IN TXT \"v=DMARC1; p=reject; pct=0\"\n"
    "_dmarc.pct100.example. IN TXT \"v=DMARC1; p=reject; pct=100\"\n"
    "_dmarc.q0.example. IN TXT \"v=DMARC1; p=quarantine; pct=0\"\n";

struct got {
    bool called;
    enum dmarc_result result;
    enum dmarc_from from;
    enum dmarc_policy policy, dis;
    enum dmarc_source source;
    bool sampled_out, spf_aligned, dkim_aligned, nonexistent, has_record;
    char from_domain[64], org_domain[64], record_domain[64], dkim_domain[64], spf_domain[64];
    char reason[256], authres[512];
};

static void copy_outcome(struct got *g, const struct dmarc_outcome *o)
{
    assert_false(g->called);
    g->called = true;
    g->result = o->result;
    g->from = o->from;
    g->policy = o->policy;
    g->dis = o->disposition;
    g->source = o->policy_source;
    g->sampled_out = o->sampled_out;
    g->spf_aligned = o->spf_aligned;
    g->dkim_aligned = o->dkim_aligned;
    g->nonexistent = o->nonexistent;
    g->has_record = o->record != NULL;
    snprintf(g->from_domain, sizeof(g->from_domain), "%s", o->from_domain);
    snprintf(g->org_domain, sizeof(g->org_domain), "%s", o->org_domain);
    snprintf(g->record_domain, sizeof(g->record_domain), "%s", o->record_domain);
    snprintf(g->dkim_domain, sizeof(g->dkim_domain), "%s", o->dkim_domain ? o->dkim_domain : "");
    snprintf(g->spf_domain, sizeof(g->spf_domain), "%s", o->spf_domain ? o->spf_domain : "");
    snprintf(g->reason, sizeof(g->reason), "%s", o->reason);
    struct authres ar;
    struct buf b = { 0 };
    authres_begin(&ar, "mx.test");
    dmarc_authres(&ar, o);
    authres_end(&ar, &b);
    snprintf(g->authres, sizeof(g->authres), "%s", buf_ptr(&b));
    buf_free(&b);
}

/* A backend in front of the zone that records each question and, when
 * async, answers only when pumped. */
struct rec_backend {
    struct dns_resolver zone;
    bool async;
    struct buf log;   /* "TYPE name\n" per question */
    struct { char *name; enum dns_type t; dns_cb cb; void *arg; } q[4];
    size_t nq;
};

static void rb_resolve(void *impl, const char *name, enum dns_type t, dns_cb cb, void *arg)
{
    struct rec_backend *rb = impl;
    buf_printf(&rb->log, "%s %s\n", dns_type_name(t), name);
    if (!rb->async) {
        dns_resolve(&rb->zone, name, t, cb, arg);
        return;
    }
    assert_true(rb->nq < 4);
    rb->q[rb->nq].name = xstrdup(name);
    rb->q[rb->nq].t = t;
    rb->q[rb->nq].cb = cb;
    rb->q[rb->nq].arg = arg;
    rb->nq++;
}

static void rb_close(void *impl) { (void)impl; }

static const struct dns_backend rb_ops = { .resolve = rb_resolve, .close = rb_close };

static void rb_pump(void *arg)
{
    struct rec_backend *rb = arg;
    assert_true(rb->nq > 0);
    char *name = rb->q[0].name;
    enum dns_type t = rb->q[0].t;
    dns_cb cb = rb->q[0].cb;
    void *cbarg = rb->q[0].arg;
    memmove(rb->q, rb->q + 1, (rb->nq - 1) * sizeof(rb->q[0]));
    rb->nq--;
    dns_resolve(&rb->zone, name, t, cb, cbarg);
    xfree(name);
}

static void rb_open(struct rec_backend *rb, bool async, struct dns_resolver *r)
{
    struct buf err = { 0 };
    memset(rb, 0, sizeof(*rb));
    rb->async = async;
    if (dns_zone_parse("dmarc.zone", zone_text, sizeof(zone_text) - 1, &rb->zone, &err) != 0)
        fail_msg("zone: %s", buf_ptr(&err));
    buf_free(&err);
    *r = (struct dns_resolver){ .ops = &rb_ops, .impl = rb };
}

static void rb_free(struct rec_backend *rb)
{
    assert_int_equal(rb->nq, 0);
    dns_close(&rb->zone);
    buf_free(&rb->log);
}

struct ev_case {
    const char *name;
    const char *header;       /* header fields; "From: u@<from>\r\n" when from is set */
    const char *from;
    const char *spf;          /* SPF domain, "+" prefix: pass */
    const char *dkim;         /* "d1+,d2-": d= with pass (+) or not (-) */
    unsigned draw;
    enum dmarc_result want;
    enum dmarc_policy policy, dis;
    const char *record;       /* record domain, "" none */
    const char *aligned;      /* "spf", "dkim", "spf+dkim" or "" */
    const char *asked;        /* the exact questions, "TYPE name;..."; NULL: not checked */
    enum dmarc_from from_st;
    enum dmarc_source source;
    const char *reason;       /* a substring of the reason; NULL: not checked */
};

static const struct ev_case ev_cases[] = {
    /* alignment, relaxed */
    { "relaxed dkim, same domain", .from = "relaxed.example", .dkim = "relaxed.example+",
      .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE, .record = "relaxed.example",
      .aligned = "dkim", .asked = "TXT _dmarc.relaxed.example", .source = DMARC_SRC_P },
    { "relaxed dkim, parent d= for a subdomain From", .from = "mail.relaxed.example",
      .dkim = "relaxed.example+", .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE,
      .record = "relaxed.example", .aligned = "dkim",
      .asked = "TXT _dmarc.mail.relaxed.example;TXT _dmarc.relaxed.example" },
    { "relaxed dkim, subdomain d=", .from = "relaxed.example", .dkim = "x.y.relaxed.example+",
      .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE, .record = "relaxed.example",
      .aligned = "dkim" },
    { "relaxed spf", .from = "relaxed.example", .spf = "+bounce.relaxed.example",
      .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE, .record = "relaxed.example",
      .aligned = "spf" },
    { "spf and dkim", .from = "relaxed.example", .spf = "+relaxed.example",
      .dkim = "relaxed.example+", .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE,
      .record = "relaxed.example", .aligned = "spf+dkim" },
    { "spf aligned but not pass", .from = "relaxed.example", .spf = "relaxed.example",
      .dkim = "relaxed.example-", .want = DMARC_FAIL, .policy = DMARC_P_QUARANTINE,
      .dis = DMARC_P_QUARANTINE, .record = "relaxed.example", .aligned = "" },
    { "pass but unaligned", .from = "relaxed.example", .spf = "+other.example",
      .dkim = "other.example+", .want = DMARC_FAIL, .policy = DMARC_P_QUARANTINE,
      .dis = DMARC_P_QUARANTINE, .record = "relaxed.example", .aligned = "",
      .reason = "neither SPF nor DKIM aligned" },
    { "lookalike domain", .from = "relaxed.example", .dkim = "notrelaxed.example+",
      .want = DMARC_FAIL, .policy = DMARC_P_QUARANTINE, .dis = DMARC_P_QUARANTINE,
      .record = "relaxed.example", .aligned = "" },
    { "second signature aligns", .from = "relaxed.example",
      .dkim = "other.example+,relaxed.example-,mail.relaxed.example+", .want = DMARC_PASS,
      .policy = DMARC_P_QUARANTINE, .record = "relaxed.example", .aligned = "dkim" },
    { "case and final dot", .header = "From: U@RELAXED.Example\r\n", .dkim = "Relaxed.EXAMPLE.+",
      .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE, .record = "relaxed.example",
      .aligned = "dkim" },
    /* alignment, strict */
    { "strict dkim exact", .from = "strict.example", .dkim = "strict.example+",
      .want = DMARC_PASS, .policy = DMARC_P_REJECT, .record = "strict.example",
      .aligned = "dkim" },
    { "strict dkim parent d= fails", .from = "sub.strict.example", .dkim = "strict.example+",
      .want = DMARC_FAIL, .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT,
      .record = "strict.example", .aligned = "", .source = DMARC_SRC_P },
    { "strict dkim subdomain d= fails", .from = "strict.example", .dkim = "a.strict.example+",
      .want = DMARC_FAIL, .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT,
      .record = "strict.example", .aligned = "" },
    { "strict dkim, the exact one among several", .from = "strict.example",
      .dkim = "a.strict.example+,strict.example+", .want = DMARC_PASS,
      .policy = DMARC_P_REJECT, .record = "strict.example", .aligned = "dkim" },
    { "strict spf exact", .from = "strict.example", .spf = "+strict.example",
      .want = DMARC_PASS, .policy = DMARC_P_REJECT, .record = "strict.example",
      .aligned = "spf" },
    { "strict spf subdomain fails", .from = "strict.example", .spf = "+mail.strict.example",
      .want = DMARC_FAIL, .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT,
      .record = "strict.example", .aligned = "" },
    { "record through a CNAME", .from = "alias.example", .dkim = "alias.example+",
      .want = DMARC_PASS, .policy = DMARC_P_REJECT, .record = "alias.example",
      .aligned = "dkim" },
    /* sp= and np= */
    { "org domain itself: p", .from = "org.example", .want = DMARC_FAIL,
      .policy = DMARC_P_NONE, .dis = DMARC_P_NONE, .record = "org.example",
      .asked = "TXT _dmarc.org.example", .source = DMARC_SRC_P },
    { "existing subdomain: sp", .from = "exists.org.example", .want = DMARC_FAIL,
      .policy = DMARC_P_QUARANTINE, .dis = DMARC_P_QUARANTINE, .record = "org.example",
      .asked = "TXT _dmarc.exists.org.example;TXT _dmarc.org.example;A exists.org.example",
      .source = DMARC_SRC_SP },
    { "NXDOMAIN subdomain: np", .from = "ghost.org.example", .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "org.example",
      .asked = "TXT _dmarc.ghost.org.example;TXT _dmarc.org.example;A ghost.org.example",
      .source = DMARC_SRC_NP },
    { "NODATA for A, AAAA and MX: np", .from = "txtonly.org.example", .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "org.example",
      .asked = "TXT _dmarc.txtonly.org.example;TXT _dmarc.org.example;A txtonly.org.example;"
               "AAAA txtonly.org.example;MX txtonly.org.example",
      .source = DMARC_SRC_NP },
    { "only AAAA: exists", .from = "v6.org.example", .want = DMARC_FAIL,
      .policy = DMARC_P_QUARANTINE, .dis = DMARC_P_QUARANTINE, .record = "org.example",
      .asked = "TXT _dmarc.v6.org.example;TXT _dmarc.org.example;A v6.org.example;"
               "AAAA v6.org.example",
      .source = DMARC_SRC_SP },
    { "only MX: exists", .from = "mx.org.example", .want = DMARC_FAIL,
      .policy = DMARC_P_QUARANTINE, .dis = DMARC_P_QUARANTINE, .record = "org.example",
      .source = DMARC_SRC_SP },
    { "empty non-terminal: NODATA x3, np", .from = "ent.org.example", .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "org.example" },
    { "existence lookup fails: temperror", .from = "tf.org.example", .want = DMARC_TEMPERROR,
      .policy = DMARC_P_QUARANTINE, .record = "org.example", .reason = "cannot tell" },
    { "existence lookup fails but pass stands", .from = "tf.org.example",
      .dkim = "org.example+", .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE,
      .record = "org.example", .aligned = "dkim", .source = DMARC_SRC_SP },
    { "no np=: no existence lookups", .from = "ghost.nonp.example", .want = DMARC_FAIL,
      .policy = DMARC_P_QUARANTINE, .dis = DMARC_P_QUARANTINE, .record = "nonp.example",
      .asked = "TXT _dmarc.ghost.nonp.example;TXT _dmarc.nonp.example",
      .source = DMARC_SRC_SP },
    { "np= equal to sp=: no existence lookups", .from = "ghost.samenp.example",
      .want = DMARC_FAIL, .policy = DMARC_P_QUARANTINE, .dis = DMARC_P_QUARANTINE,
      .record = "samenp.example",
      .asked = "TXT _dmarc.ghost.samenp.example;TXT _dmarc.samenp.example" },
    /* multi-label public suffix */
    { "mail.example.co.uk -> example.co.uk", .from = "mail.example.co.uk",
      .dkim = "example.co.uk+", .want = DMARC_PASS, .policy = DMARC_P_REJECT,
      .record = "example.co.uk", .aligned = "dkim",
      .asked = "TXT _dmarc.mail.example.co.uk;TXT _dmarc.example.co.uk" },
    { "other.co.uk does not align with example.co.uk", .from = "mail.example.co.uk",
      .dkim = "other.co.uk+", .spf = "+co.uk", .want = DMARC_FAIL, .policy = DMARC_P_REJECT,
      .dis = DMARC_P_REJECT, .record = "example.co.uk", .aligned = "" },
    { "From a public suffix: its own record", .from = "co.uk", .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "co.uk",
      .asked = "TXT _dmarc.co.uk" },
    /* discovery */
    { "no record anywhere", .from = "sub.nodmarc.example", .want = DMARC_NONE,
      .record = "", .asked = "TXT _dmarc.sub.nodmarc.example;TXT _dmarc.nodmarc.example",
      .reason = "no DMARC record" },
    { "no record, org domain itself", .from = "nodmarc.example", .want = DMARC_NONE,
      .asked = "TXT _dmarc.nodmarc.example", .record = "" },
    { "several records: none", .from = "multi.example", .want = DMARC_NONE, .record = "",
      .reason = "several DMARC records", .asked = "TXT _dmarc.multi.example" },
    { "several records at the From domain: no fallback", .from = "two.valid.example",
      .want = DMARC_NONE, .record = "", .asked = "TXT _dmarc.two.valid.example" },
    { "one DMARC record among other TXT", .from = "mixed.example", .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "mixed.example" },
    { "invalid record: none, no fallback", .from = "bad.valid.example", .want = DMARC_NONE,
      .record = "", .asked = "TXT _dmarc.bad.valid.example", .reason = "invalid DMARC record" },
    { "only non-DMARC TXT: fallback", .from = "other.valid.example", .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "valid.example",
      .asked = "TXT _dmarc.other.valid.example;TXT _dmarc.valid.example" },
    { "record in two strings", .from = "split.example", .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "split.example" },
    { "temporary failure", .from = "temp.example", .dkim = "temp.example+",
      .want = DMARC_TEMPERROR, .record = "", .asked = "TXT _dmarc.temp.example" },
    { "temporary failure at the org domain", .from = "a.orgtemp.example",
      .want = DMARC_TEMPERROR, .record = "",
      .asked = "TXT _dmarc.a.orgtemp.example;TXT _dmarc.orgtemp.example" },
    { "p= invalid but rua=: p=none", .from = "rua.example", .want = DMARC_FAIL,
      .policy = DMARC_P_NONE, .dis = DMARC_P_NONE, .record = "rua.example" },
    /* pct */
    { "pct=50, draw 49: applied", .from = "pct50.example", .draw = 49, .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "pct50.example" },
    { "pct=50, draw 50: next lower policy", .from = "pct50.example", .draw = 50,
      .want = DMARC_FAIL, .policy = DMARC_P_REJECT, .dis = DMARC_P_QUARANTINE,
      .record = "pct50.example", .reason = "not sampled" },
    { "pct=0, draw 0: never applied", .from = "pct0.example", .draw = 0, .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_QUARANTINE, .record = "pct0.example" },
    { "pct=100, draw 99: always applied", .from = "pct100.example", .draw = 99,
      .want = DMARC_FAIL, .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT,
      .record = "pct100.example" },
    { "pct=0 quarantine -> none", .from = "q0.example", .draw = 0, .want = DMARC_FAIL,
      .policy = DMARC_P_QUARANTINE, .dis = DMARC_P_NONE, .record = "q0.example" },
    { "pct does not touch a pass", .from = "pct0.example", .dkim = "pct0.example+", .draw = 0,
      .want = DMARC_PASS, .policy = DMARC_P_REJECT, .dis = DMARC_P_NONE,
      .record = "pct0.example", .aligned = "dkim" },
    /* From rules (6.6.1): permerror, nothing asked */
    { "no From", .header = "To: a@relaxed.example\r\n", .want = DMARC_PERMERROR,
      .from_st = DMARC_FROM_MISSING, .asked = "", .record = "", .reason = "no From field" },
    { "two From fields", .header = "From: a@relaxed.example\r\nFrom: b@relaxed.example\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_MULTIPLE, .asked = "", .record = "" },
    { "two From fields, differing case",
      .header = "from: a@relaxed.example\r\nFROM: a@relaxed.example\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_MULTIPLE, .asked = "", .record = "" },
    { "two mailboxes", .header = "From: a@relaxed.example, b@strict.example\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_MAILBOXES, .asked = "", .record = "" },
    { "empty group", .header = "From: undisclosed:;\r\n", .want = DMARC_PERMERROR,
      .from_st = DMARC_FROM_MAILBOXES, .asked = "", .record = "" },
    { "no domain", .header = "From: Alice <alice>\r\n", .want = DMARC_PERMERROR,
      .from_st = DMARC_FROM_NO_DOMAIN, .asked = "", .record = "" },
    { "domain literal", .header = "From: a@[192.0.2.1]\r\n", .want = DMARC_PERMERROR,
      .from_st = DMARC_FROM_NO_DOMAIN, .asked = "", .record = "" },
    { "unreadable From", .header = "From: a@b@c\r\n", .want = DMARC_PERMERROR,
      .from_st = DMARC_FROM_SYNTAX, .asked = "", .record = "" },
    { "empty From", .header = "From:\r\n", .want = DMARC_PERMERROR,
      .from_st = DMARC_FROM_SYNTAX, .asked = "", .record = "" },
    { "obsolete 'From :' is not a From field", .header = "From : a@relaxed.example\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_MISSING, .asked = "", .record = "" },
    { "a From in the body does not count",
      .header = "From: a@relaxed.example\r\n\r\nFrom: b@strict.example\r\n",
      .dkim = "relaxed.example+", .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE,
      .record = "relaxed.example", .aligned = "dkim" },
    { "display name, comments, folding",
      .header = "From: \"Alice, Example\" (the boss)\r\n <alice@Mail.Relaxed.Example>\r\n",
      .dkim = "relaxed.example+", .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE,
      .record = "relaxed.example", .aligned = "dkim" },
};

static void make_request(const struct ev_case *c, struct buf *msg, struct dmarc_request *req,
                         struct dmarc_dkim_input *dk, char dnames[][64])
{
    if (c->header != NULL)
        buf_append_str(msg, c->header);
    else
        buf_printf(msg, "From: u@%s\r\n", c->from);
    buf_append_str(msg, "Subject: t\r\n\r\nbody\r\n");
    *req = (struct dmarc_request){ .msg = buf_ptr(msg), .len = buf_size(msg), .dkim = dk,
                                   .pct_draw = c->draw };
    if (c->spf != NULL) {
        req->spf_pass = c->spf[0] == '+';
        req->spf_domain = c->spf + (c->spf[0] == '+');
    }
    for (const char *p = c->dkim; p != NULL && *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        assert_true(n >= 2 && n < 64 && req->ndkim < 4);
        memcpy(dnames[req->ndkim], p, n - 1);
        dnames[req->ndkim][n - 1] = '\0';
        dk[req->ndkim] = (struct dmarc_dkim_input){ dnames[req->ndkim], p[n - 1] == '+' };
        req->ndkim++;
        p = end ? end + 1 : p + n;
    }
}

static void on_outcome(void *arg, const struct dmarc_outcome *o)
{
    copy_outcome(arg, o);
}

static void step_answer(void *arg, const struct dns_answer *a)
{
    dmarc_eval_answer(arg, a);
}

/* mode 0: dmarc_check sync; 1: dmarc_check async; 2: dmarc_check_wait; 3: steps */
static struct got run_case(const struct ev_case *c, int mode, struct buf *asked)
{
    struct buf msg = { 0 };
    struct dmarc_request req;
    struct dmarc_dkim_input dk[4];
    char dnames[4][64];
    make_request(c, &msg, &req, dk, dnames);
    struct rec_backend rb;
    struct dns_resolver r;
    rb_open(&rb, mode == 1 || mode == 2, &r);
    struct got g = { 0 };
    if (mode <= 1) {
        dmarc_check(&r, &req, on_outcome, &g);
        while (rb.nq > 0)
            rb_pump(&rb);
    } else if (mode == 2) {
        struct dmarc_eval *e = dmarc_check_wait(&r, &req, rb_pump, &rb);
        copy_outcome(&g, dmarc_eval_outcome(e));
        dmarc_eval_free(e);
    } else {
        struct dmarc_eval *e = dmarc_eval_new(&req);
        const char *name;
        enum dns_type t;
        int guard = 0;
        while (dmarc_eval_step(e, &name, &t) == DMARC_STEP_DNS) {
            assert_true(guard++ < 10);
            rb_resolve(&rb, name, t, step_answer, e);
        }
        copy_outcome(&g, dmarc_eval_outcome(e));
        dmarc_eval_free(e);
    }
    assert_true(g.called);
    buf_append(asked, buf_ptr(&rb.log), buf_size(&rb.log));
    rb_free(&rb);
    buf_free(&msg);
    return g;
}

static void check_case(const struct ev_case *c, const struct got *g, const char *asked, int mode)
{
    const char *why = NULL;
    char aligned[16];
    snprintf(aligned, sizeof(aligned), "%s%s%s", g->spf_aligned ? "spf" : "",
             g->spf_aligned && g->dkim_aligned ? "+" : "", g->dkim_aligned ? "dkim" : "");
    if (g->result != c->want)
        why = "result";
    else if (g->from != c->from_st)
        why = "from status";
    else if (g->policy != c->policy || g->dis != c->dis)
        why = "policy or disposition";
    else if (c->record != NULL && strcmp(g->record_domain, c->record) != 0)
        why = "record domain";
    else if (c->aligned != NULL && strcmp(aligned, c->aligned) != 0)
        why = "alignment";
    else if (c->source != DMARC_SRC_NONE && g->source != c->source)
        why = "policy source";
    else if (c->reason != NULL && strstr(g->reason, c->reason) == NULL)
        why = "reason";
    else if (c->asked != NULL && strcmp(asked, c->asked) != 0)
        why = "questions";
    if (why != NULL)
        fail_msg("case \"%s\" (mode %d): wrong %s: result %s policy %s dis %s record \"%s\" "
                 "aligned \"%s\" source %d from %s reason \"%s\" asked \"%s\"",
                 c->name, mode, why, dmarc_result_name(g->result), dmarc_policy_name(g->policy),
                 dmarc_policy_name(g->dis), g->record_domain, aligned, (int)g->source,
                 dmarc_from_name(g->from), g->reason, asked);
    assert_true(g->has_record == (c->record != NULL && c->record[0] != '\0'));
    assert_true(g->sampled_out == (g->result == DMARC_FAIL && g->dis != g->policy));
}

/* "TYPE name\n..." as "TYPE name;..." */
static void join_log(struct buf *log)
{
    for (size_t i = 0; i < buf_size(log); i++) {
        if (log->data[log->off + i] == '\n')
            log->data[log->off + i] = ';';
    }
    if (buf_size(log) > 0)
        log->len--;
    if (log->data != NULL)
        log->data[log->len] = '\0';
}

static bool same_got(const struct got *a, const struct got *b)
{
    return a->result == b->result && a->from == b->from && a->policy == b->policy &&
           a->dis == b->dis && a->source == b->source && a->sampled_out == b->sampled_out &&
           a->spf_aligned == b->spf_aligned && a->dkim_aligned == b->dkim_aligned &&
           a->nonexistent == b->nonexistent && a->has_record == b->has_record &&
           strcmp(a->from_domain, b->from_domain) == 0 &&
           strcmp(a->org_domain, b->org_domain) == 0 &&
           strcmp(a->record_domain, b->record_domain) == 0 &&
           strcmp(a->dkim_domain, b->dkim_domain) == 0 &&
           strcmp(a->spf_domain, b->spf_domain) == 0 && strcmp(a->reason, b->reason) == 0 &&
           strcmp(a->authres, b->authres) == 0;
}

static void test_evaluator(void **state)
{
    for (size_t i = 0; i < sizeof(ev_cases) / sizeof(ev_cases[0]); i++) {
        struct got first = { 0 };
        for (int mode = 0; mode < 4; mode++) {
            struct buf asked = { 0 };
            struct got g = run_case(&ev_cases[i], mode, &asked);
            join_log(&asked);
            check_case(&ev_cases[i], &g, buf_ptr(&asked), mode);
            if (mode == 0)
                first = g;
            else if (!same_got(&first, &g))
                fail_msg("case \"%s\": mode %d differs from mode 0", ev_cases[i].name, mode);
            buf_free(&asked);
        }
    }
}

/* The dmarc= entry of Authentication-Results. */
static void test_authres(void **state)
{
    static const struct {
        const char *name, *want;
    } t[] = {
        { "relaxed dkim, same domain",
          "Authentication-Results: mx.test;\r\n\tdmarc=pass (p=quarantine dis=none)"
          " header.from=relaxed.example\r\n" },
        { "pct=50, draw 50: next lower policy",
          "Authentication-Results: mx.test;\r\n\tdmarc=fail (p=reject dis=quarantine)"
          " header.from=pct50.example\r\n" },
        { "no record anywhere",
          "Authentication-Results: mx.test;\r\n\tdmarc=none (no DMARC record for"
          " sub.nodmarc.example)\r\n\theader.from=sub.nodmarc.example\r\n" },
        { "two From fields",
          "Authentication-Results: mx.test;\r\n\tdmarc=permerror (not DMARC-evaluable: several"
          " From fields)\r\n" },
        { "temporary failure",
          "Authentication-Results: mx.test;\r\n\tdmarc=temperror\r\n\t(DNS failure at"
          " _dmarc.temp.example: $TEMPFAIL in the zone file)\r\n\theader.from=temp.example\r\n" },
    };
    for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
        const struct ev_case *c = NULL;
        for (size_t i = 0; i < sizeof(ev_cases) / sizeof(ev_cases[0]); i++) {
            if (strcmp(ev_cases[i].name, t[k].name) == 0)
                c = &ev_cases[i];
        }
        assert_non_null(c);
        struct buf asked = { 0 };
        struct got g = run_case(c, 0, &asked);
        if (strcmp(g.authres, t[k].want) != 0)
            fail_msg("%s:\n got  %s\n want %s", t[k].name, g.authres, t[k].want);
        buf_free(&asked);
    }
}

/* The outcome strings live as long as the evaluator; the request need not. */
static void test_request_copied(void **state)
{
    char *msg = xstrdup("From: a@relaxed.example\r\n\r\n");
    char *d = xstrdup("relaxed.example");
    char *spf = xstrdup("relaxed.example");
    struct dmarc_dkim_input dk = { d, true };
    struct dmarc_request req = { .msg = msg, .len = strlen(msg), .dkim = &dk, .ndkim = 1,
                                 .spf_domain = spf, .spf_pass = true };
    struct dmarc_eval *e = dmarc_eval_new(&req);
    memset(msg, 'x', strlen(msg));
    memset(d, 'x', strlen(d));
    memset(spf, 'x', strlen(spf));
    xfree(msg);
    xfree(d);
    xfree(spf);
    const char *name;
    enum dns_type t;
    assert_int_equal(dmarc_eval_step(e, &name, &t), DMARC_STEP_DNS);
    assert_string_equal(name, "_dmarc.relaxed.example");
    assert_int_equal(t, DNS_T_TXT);
    struct dns_rr rr = { .type = DNS_T_TXT };
    char txt[] = "v=DMARC1; p=reject; adkim=s; aspf=s";
    rr.u.txt.data = txt;
    rr.u.txt.len = strlen(txt);
    struct dns_answer ans = { .status = DNS_OK, .rr = &rr, .n = 1 };
    dmarc_eval_answer(e, &ans);
    memset(txt, 'x', strlen(txt));   /* answers are copied, never kept */
    assert_int_equal(dmarc_eval_step(e, &name, &t), DMARC_STEP_DONE);
    const struct dmarc_outcome *o = dmarc_eval_outcome(e);
    assert_int_equal(o->result, DMARC_PASS);
    assert_true(o->spf_aligned && o->dkim_aligned);
    assert_string_equal(o->dkim_domain, "relaxed.example");
    assert_string_equal(o->spf_domain, "relaxed.example");
    assert_int_equal(o->policy, DMARC_P_REJECT);
    assert_int_equal(o->record->adkim, DMARC_STRICT);
    /* a stray answer after the end changes nothing */
    dmarc_eval_answer(e, &ans);
    assert_int_equal(dmarc_eval_outcome(e)->result, DMARC_PASS);
    dmarc_eval_free(e);
    dmarc_eval_free(NULL);
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
        cmocka_unit_test(test_evaluator),
        cmocka_unit_test(test_authres),
        cmocka_unit_test(test_request_copied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
