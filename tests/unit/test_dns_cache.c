/*
 * The answer cache in front of a backend: what is kept (positive answers
 * for their TTL, NXDOMAIN/NODATA), what is not (temporary failures, bogus
 * answers, TTL 0), that the DNSSEC state and records come back intact,
 * case-insensitive keys, expiry, and that the table stays bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "core/xmalloc.h"
#include "dns/dns.h"

struct fake {
    int calls;
    enum dns_status status;
    enum dns_sec sec;
    uint32_t ttl;
};

static void fake_resolve(void *impl, const char *name, enum dns_type type, dns_cb cb, void *arg)
{
    struct fake *f = impl;
    f->calls++;
    struct dns_rr rr[2];
    memset(rr, 0, sizeof(rr));
    rr[0].type = rr[1].type = DNS_T_TXT;
    rr[0].ttl = rr[1].ttl = f->ttl;
    rr[0].u.txt.data = (char *)"v=spf1 -all";
    rr[0].u.txt.len = 11;
    rr[1].u.txt.data = (char *)name;
    rr[1].u.txt.len = strlen(name);
    struct dns_answer a = { .status = f->status, .sec = f->sec };
    if (f->status == DNS_OK) {
        a.rr = rr;
        a.n = 2;
    }
    cb(arg, &a);
}

static void fake_close(void *impl) { (void)impl; }

static const struct dns_backend fake_ops = { .resolve = fake_resolve, .close = fake_close };

struct got {
    enum dns_status status;
    enum dns_sec sec;
    size_t n;
    char txt[64];
};

static void got_cb(void *arg, const struct dns_answer *a)
{
    struct got *g = arg;
    g->status = a->status;
    g->sec = a->sec;
    g->n = a->n;
    g->txt[0] = '\0';
    if (a->n == 2)
        memcpy(g->txt, a->rr[1].u.txt.data, a->rr[1].u.txt.len < 63 ? a->rr[1].u.txt.len : 63),
            g->txt[a->rr[1].u.txt.len < 63 ? a->rr[1].u.txt.len : 63] = '\0';
}

static struct dns_resolver wrapped(struct fake *f, size_t max)
{
    struct dns_resolver r = { .ops = &fake_ops, .impl = f };
    dns_cache_wrap(&r, max, 3600, 60);
    return r;
}

static void test_positive_and_case(void **state)
{
    struct fake f = { .status = DNS_OK, .sec = DNS_SEC_SECURE, .ttl = 300 };
    struct dns_resolver r = wrapped(&f, 100);
    struct got g;
    dns_resolve(&r, "Example.ORG", DNS_T_TXT, got_cb, &g);
    assert_int_equal(f.calls, 1);
    dns_resolve(&r, "example.org.", DNS_T_TXT, got_cb, &g);
    assert_int_equal(f.calls, 1);  /* a hit */
    assert_int_equal(g.status, DNS_OK);
    assert_int_equal(g.sec, DNS_SEC_SECURE);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.txt, "Example.ORG");  /* the records as first answered */
    dns_resolve(&r, "example.org", DNS_T_A, got_cb, &g);
    assert_int_equal(f.calls, 2);  /* another type is another key */
    dns_close(&r);
}

static void test_not_cached(void **state)
{
    static const struct { enum dns_status st; enum dns_sec sec; uint32_t ttl; } cases[] = {
        { DNS_TEMPFAIL, DNS_SEC_INSECURE, 300 },
        { DNS_TEMPFAIL, DNS_SEC_BOGUS, 300 },
        { DNS_PERMFAIL, DNS_SEC_INSECURE, 300 },
        { DNS_OK, DNS_SEC_INSECURE, 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fake f = { .status = cases[i].st, .sec = cases[i].sec, .ttl = cases[i].ttl };
        struct dns_resolver r = wrapped(&f, 100);
        struct got g;
        dns_resolve(&r, "x.example", DNS_T_TXT, got_cb, &g);
        dns_resolve(&r, "x.example", DNS_T_TXT, got_cb, &g);
        assert_int_equal(f.calls, 2);
        assert_int_equal(g.status, cases[i].st);
        assert_int_equal(g.sec, cases[i].sec);
        dns_close(&r);
    }
}

static void test_negative_cached(void **state)
{
    enum dns_status sts[] = { DNS_NXDOMAIN, DNS_NODATA };
    for (size_t i = 0; i < 2; i++) {
        struct fake f = { .status = sts[i], .sec = DNS_SEC_SECURE, .ttl = 300 };
        struct dns_resolver r = wrapped(&f, 100);
        struct got g;
        dns_resolve(&r, "none.example", DNS_T_MX, got_cb, &g);
        dns_resolve(&r, "none.example", DNS_T_MX, got_cb, &g);
        assert_int_equal(f.calls, 1);
        assert_int_equal(g.status, sts[i]);
        assert_int_equal(g.sec, DNS_SEC_SECURE);
        assert_int_equal(g.n, 0);
        dns_close(&r);
    }
}

static void test_expiry_and_bound(void **state)
{
    struct fake f = { .status = DNS_OK, .sec = DNS_SEC_INSECURE, .ttl = 1 };
    struct dns_resolver r = wrapped(&f, 3);
    struct got g;
    dns_resolve(&r, "a.example", DNS_T_TXT, got_cb, &g);
    sleep(2);
    dns_resolve(&r, "a.example", DNS_T_TXT, got_cb, &g);
    assert_int_equal(f.calls, 2);  /* the TTL ran out */

    f.ttl = 300;
    const char *names[] = { "b.example", "c.example", "d.example", "e.example" };
    for (size_t i = 0; i < 4; i++)
        dns_resolve(&r, names[i], DNS_T_TXT, got_cb, &g);
    int before = f.calls;
    for (size_t i = 0; i < 4; i++)
        dns_resolve(&r, names[i], DNS_T_TXT, got_cb, &g);
    /* at most 3 kept: some of the four had to be asked again */
    assert_true(f.calls > before);
    dns_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_positive_and_case),
        cmocka_unit_test(test_not_cached),
        cmocka_unit_test(test_negative_cached),
        cmocka_unit_test(test_expiry_and_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
