/*
 * test_ratelimit - policy/ratelimit.h on a fake clock.
 *
 * rate: hand-written edge cases (exactly `limit` per window, refused
 * events not counted, the oldest event leaving the window, keys apart,
 * LRU eviction), then a reference model: pseudo-random bursts compared
 * event by event with a naive sliding window. Where the limiter is exact
 * (limit <= 64, or window <= 64 s) the answers must be identical; where
 * it counts in buckets it must never allow more than the true window
 * would, and never refuse what a window one bucket longer would allow.
 *
 * backoff: the doubling schedule, the cap, forgetting, clear(), and
 * values chosen to overflow a careless shift or subtraction.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy/ratelimit.h"

/* ---- rate ---- */

static void test_rate_exact_limit(void **state)
{
    (void)state;
    struct rate_limiter *r = rate_new(3, 10, 100);
    assert_true(rate_allow(r, "a", 1000));
    assert_true(rate_allow(r, "a", 1003));
    assert_true(rate_allow(r, "a", 1006));
    assert_false(rate_allow(r, "a", 1006));
    assert_false(rate_allow(r, "a", 1009));
    /* 1000 is 10 s old at 1010: out of the window */
    assert_true(rate_allow(r, "a", 1010));
    assert_false(rate_allow(r, "a", 1010));
    assert_false(rate_allow(r, "a", 1012));
    assert_true(rate_allow(r, "a", 1013));
    assert_false(rate_allow(r, "a", 1015));
    /* everything long gone */
    for (int i = 0; i < 3; i++)
        assert_true(rate_allow(r, "a", 5000));
    assert_false(rate_allow(r, "a", 5000));
    rate_free(r);
}

static void test_rate_refused_not_counted(void **state)
{
    (void)state;
    struct rate_limiter *r = rate_new(2, 10, 100);
    assert_true(rate_allow(r, "k", 0));
    assert_true(rate_allow(r, "k", 0));
    for (time_t t = 0; t < 10; t++)
        for (int i = 0; i < 100; i++)
            assert_false(rate_allow(r, "k", t));
    /* had the refusals counted, the key would still be blocked */
    assert_true(rate_allow(r, "k", 10));
    assert_true(rate_allow(r, "k", 10));
    assert_false(rate_allow(r, "k", 10));
    rate_free(r);
}

static void test_rate_keys_apart(void **state)
{
    (void)state;
    struct rate_limiter *r = rate_new(1, 60, 100);
    assert_true(rate_allow(r, "192.0.2.1", 0));
    assert_false(rate_allow(r, "192.0.2.1", 1));
    assert_true(rate_allow(r, "192.0.2.10", 1));
    assert_true(rate_allow(r, "192.0.2.", 1));
    assert_true(rate_allow(r, "", 1));
    assert_false(rate_allow(r, "", 2));
    assert_true(rate_allow(r, "User", 1));
    assert_true(rate_allow(r, "user", 1));
    char long_key[5000];
    memset(long_key, 'x', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    assert_true(rate_allow(r, long_key, 1));
    long_key[4000] = 'y';
    assert_true(rate_allow(r, long_key, 1));
    assert_false(rate_allow(r, long_key, 1));
    assert_false(rate_allow(r, "192.0.2.1", 59));
    assert_true(rate_allow(r, "192.0.2.1", 60));
    rate_free(r);
}

static void test_rate_zero_limit(void **state)
{
    (void)state;
    struct rate_limiter *r = rate_new(0, 60, 10);
    for (time_t t = 0; t < 1000; t += 7)
        assert_false(rate_allow(r, "a", t));
    rate_free(r);
}

/* A clock that steps back does not reopen a full window. */
static void test_rate_clock_back(void **state)
{
    (void)state;
    for (unsigned limit = 1; limit <= 100; limit += 99) {
        struct rate_limiter *r = rate_new(limit, 10, 10);
        for (unsigned i = 0; i < limit; i++)
            assert_true(rate_allow(r, "a", 1000));
        assert_false(rate_allow(r, "a", 900));
        assert_false(rate_allow(r, "a", -5));
        assert_false(rate_allow(r, "a", 1009));
        assert_true(rate_allow(r, "a", 1010));
        /* extreme times do not break the arithmetic */
        assert_true(rate_allow(r, "b", -1));
        assert_true(rate_allow(r, "c", (time_t)INT64_MAX));
        assert_true(rate_allow(r, "c", (time_t)INT64_MIN) == (limit > 1));
        rate_free(r);
    }
}

static void test_rate_eviction(void **state)
{
    (void)state;
    struct rate_limiter *r = rate_new(1, 3600, 100);
    char key[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_true(rate_allow(r, key, 0));
    }
    /* the 100 newest are remembered (and still limited) */
    for (int i = 9999; i >= 9900; i--) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_false(rate_allow(r, key, 1));
    }
    /* the oldest was forgotten: counted afresh */
    assert_true(rate_allow(r, "k0", 1));
    assert_false(rate_allow(r, "k0", 2));
    rate_free(r);
}

/* Least recently *used*, not least recently inserted. */
static void test_rate_lru(void **state)
{
    (void)state;
    struct rate_limiter *r = rate_new(1, 3600, 3);
    assert_true(rate_allow(r, "a", 0));
    assert_true(rate_allow(r, "b", 0));
    assert_true(rate_allow(r, "c", 0));
    assert_false(rate_allow(r, "a", 1)); /* a is now the newest */
    assert_true(rate_allow(r, "d", 1));  /* drops b */
    assert_false(rate_allow(r, "a", 2));
    assert_false(rate_allow(r, "c", 2));
    assert_false(rate_allow(r, "d", 2));
    assert_true(rate_allow(r, "b", 2));  /* forgotten; drops a */
    assert_true(rate_allow(r, "a", 3));
    rate_free(r);
}

/* ---- rate against a reference model ---- */

/* The times of allowed events, in order; each head marks the first event
 * still inside a window of some length (times never go back here). */
struct model {
    time_t *t;
    size_t n, cap, head_window, head_late;
};

static size_t model_count(const struct model *m, size_t *head, time_t now, unsigned span)
{
    while (*head < m->n && now - m->t[*head] >= (time_t)span)
        (*head)++;
    return m->n - *head;
}

static void model_add(struct model *m, time_t now)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->t = realloc(m->t, m->cap * sizeof(*m->t));
        assert_non_null(m->t);
    }
    m->t[m->n++] = now;
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* slack: how many seconds late the limiter may forget an event */
static void check_model(unsigned limit, unsigned window, unsigned slack, uint32_t seed)
{
    struct rate_limiter *r = rate_new(limit, window, 4);
    struct model m = { 0 };
    time_t now = 1700000000;
    unsigned allowed = 0, refused = 0;
    int steps = limit > 1000 ? 200 : 4000;
    for (int step = 0; step < steps; step++) {
        uint32_t x = lcg(&seed);
        /* bursts: often the same second, sometimes a jump past the window */
        if (x % 8 == 0)
            now += 1 + (time_t)(lcg(&seed) % (window + window / 2 + 2));
        else if (x % 3 == 0)
            now += 1;
        unsigned burst = 1 + lcg(&seed) % (limit / 4 + 2);
        for (unsigned b = 0; b < burst; b++) {
            bool got = rate_allow(r, "key", now);
            size_t in_window = model_count(&m, &m.head_window, now, window);
            size_t in_late = model_count(&m, &m.head_late, now, window + slack);
            if (got && in_window >= limit)
                fail_msg("limit %u window %u: allowed with %zu in window at %lld", limit, window,
                         in_window, (long long)now);
            if (!got && in_late < limit)
                fail_msg("limit %u window %u: refused with %zu in window at %lld", limit, window,
                         in_late, (long long)now);
            if (got)
                model_add(&m, now), allowed++;
            else
                refused++;
        }
    }
    /* the sequence must exercise both answers */
    assert_true(allowed > 0 && refused > 0);
    free(m.t);
    rate_free(r);
}

static void test_rate_model(void **state)
{
    (void)state;
    /* exact: a ring of timestamps */
    check_model(1, 1, 0, 1);
    check_model(1, 60, 0, 2);
    check_model(3, 10, 0, 3);
    check_model(64, 60, 0, 4);
    check_model(64, 3600, 0, 5);
    /* exact: buckets of one second */
    check_model(65, 60, 0, 6);
    check_model(120, 60, 0, 7);
    check_model(1000, 64, 0, 8);
    check_model(20000, 1, 0, 9);
    /* bucketed, windows longer than the bucket count */
    check_model(100, 65, 1, 10);    /* 2 s buckets */
    check_model(200, 3600, 56, 11); /* 57 s buckets */
    check_model(20000, 86400, 1349, 12);
}

/* ---- backoff ---- */

/* wait at t is `w`, and counts down to 0 at t + w */
static void assert_wait(struct backoff *b, const char *key, time_t t, unsigned w)
{
    unsigned got = backoff_wait(b, key, t);
    if (got != w)
        fail_msg("%s at %lld: wait %u, expected %u", key, (long long)t, got, w);
    if (w > 0) {
        assert_int_equal(backoff_wait(b, key, t + (time_t)w - 1), 1);
        assert_int_equal(backoff_wait(b, key, t + (time_t)w), 0);
    }
}

static void test_backoff_schedule(void **state)
{
    (void)state;
    struct backoff *b = backoff_new(3, 2, 60, 100);
    assert_wait(b, "ip", 1000, 0);
    assert_int_equal(backoff_failures(b, "ip"), 0);
    backoff_fail(b, "ip", 1000);
    backoff_fail(b, "ip", 1000);
    assert_wait(b, "ip", 1000, 0);  /* below the threshold */
    assert_int_equal(backoff_failures(b, "ip"), 2);
    static const unsigned expect[] = { 2, 4, 8, 16, 32, 60, 60, 60 };
    time_t t = 1000;
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        backoff_fail(b, "ip", t);
        assert_int_equal(backoff_failures(b, "ip"), 3 + i);
        assert_wait(b, "ip", t, expect[i]);
        t += expect[i];
    }
    assert_int_equal(backoff_wait(b, "other", t), 0);
    assert_int_equal(backoff_failures(b, "other"), 0);
    backoff_free(b);
}

/* The wait runs from the last failure, also when it came early. */
static void test_backoff_from_last(void **state)
{
    (void)state;
    struct backoff *b = backoff_new(1, 10, 3600, 100);
    backoff_fail(b, "u", 100);
    assert_int_equal(backoff_wait(b, "u", 105), 5);
    backoff_fail(b, "u", 105); /* tried anyway, failed again */
    assert_int_equal(backoff_wait(b, "u", 105), 20);
    assert_int_equal(backoff_wait(b, "u", 124), 1);
    assert_int_equal(backoff_wait(b, "u", 125), 0);
    /* clock stepped back: never longer than the delay itself */
    assert_int_equal(backoff_wait(b, "u", 50), 20);
    backoff_free(b);
}

static void test_backoff_forget(void **state)
{
    (void)state;
    struct backoff *b = backoff_new(2, 5, 100, 100);
    for (int i = 0; i < 10; i++)
        backoff_fail(b, "a", 1000);
    assert_int_equal(backoff_wait(b, "a", 1000), 100);
    /* exactly max idle: still remembered, but the wait is over */
    assert_int_equal(backoff_wait(b, "a", 1100), 0);
    assert_int_equal(backoff_failures(b, "a"), 10);
    /* more than max idle: forgotten */
    assert_int_equal(backoff_wait(b, "a", 1101), 0);
    assert_int_equal(backoff_failures(b, "a"), 0);
    backoff_fail(b, "a", 1101);
    assert_int_equal(backoff_failures(b, "a"), 1);
    assert_int_equal(backoff_wait(b, "a", 1101), 0);

    /* a failure after a long silence starts over, without a wait() between */
    for (int i = 0; i < 10; i++)
        backoff_fail(b, "b", 0);
    backoff_fail(b, "b", 500);
    assert_int_equal(backoff_failures(b, "b"), 1);
    assert_int_equal(backoff_wait(b, "b", 500), 0);
    backoff_fail(b, "b", 500);
    assert_int_equal(backoff_wait(b, "b", 500), 5);
    backoff_free(b);
}

static void test_backoff_clear(void **state)
{
    (void)state;
    struct backoff *b = backoff_new(1, 30, 600, 100);
    backoff_fail(b, "a", 10);
    backoff_fail(b, "a", 10);
    backoff_fail(b, "b", 10);
    assert_int_equal(backoff_wait(b, "a", 10), 60);
    backoff_clear(b, "a");
    assert_int_equal(backoff_failures(b, "a"), 0);
    assert_int_equal(backoff_wait(b, "a", 10), 0);
    assert_int_equal(backoff_wait(b, "b", 10), 30); /* other keys untouched */
    backoff_clear(b, "a");                          /* twice is harmless */
    backoff_clear(b, "never");
    backoff_fail(b, "a", 11);
    assert_int_equal(backoff_wait(b, "a", 11), 30);
    backoff_free(b);
}

/* An attempt counted when it starts and given back when it succeeds. */
static void test_backoff_forgive(void **state)
{
    (void)state;
    struct backoff *b = backoff_new(2, 30, 600, 100);
    backoff_fail(b, "a", 10);
    backoff_fail(b, "a", 10);
    assert_int_equal(backoff_wait(b, "a", 10), 30);
    backoff_forgive(b, "a");
    assert_int_equal(backoff_failures(b, "a"), 1);
    assert_int_equal(backoff_wait(b, "a", 10), 0);
    backoff_forgive(b, "a");
    assert_int_equal(backoff_failures(b, "a"), 0);
    backoff_forgive(b, "a");                  /* nothing left: harmless */
    backoff_forgive(b, "never");
    assert_int_equal(backoff_failures(b, "a"), 0);
    backoff_fail(b, "a", 11);
    assert_int_equal(backoff_failures(b, "a"), 1);
    backoff_free(b);
}

static void test_backoff_overflow(void **state)
{
    (void)state;
    /* base << shift overflows long before the cap is reached */
    struct backoff *b = backoff_new(1, UINT_MAX, UINT_MAX, 10);
    for (int i = 0; i < 1000; i++) {
        backoff_fail(b, "a", 0);
        assert_int_equal(backoff_wait(b, "a", 0), UINT_MAX);
    }
    assert_int_equal(backoff_failures(b, "a"), 1000);
    backoff_free(b);

    b = backoff_new(0, 1, UINT_MAX, 10);
    for (unsigned i = 1; i <= 100; i++) {
        backoff_fail(b, "a", 0);
        unsigned want = i < 32 ? 1u << i : UINT_MAX;
        assert_int_equal(backoff_wait(b, "a", 0), want);
    }
    backoff_free(b);

    /* base above max: the cap wins from the first wait */
    b = backoff_new(1, 1000, 10, 10);
    backoff_fail(b, "a", 0);
    assert_int_equal(backoff_wait(b, "a", 0), 10);
    backoff_free(b);

    /* extreme clocks */
    b = backoff_new(1, 8, 64, 10);
    backoff_fail(b, "a", (time_t)INT64_MIN);
    assert_int_equal(backoff_wait(b, "a", (time_t)INT64_MAX), 0);
    assert_int_equal(backoff_failures(b, "a"), 0);
    backoff_fail(b, "a", (time_t)INT64_MAX);
    assert_int_equal(backoff_wait(b, "a", (time_t)INT64_MAX), 8);
    assert_int_equal(backoff_wait(b, "a", (time_t)INT64_MIN), 8);
    backoff_fail(b, "a", (time_t)INT64_MIN);
    assert_int_equal(backoff_wait(b, "a", (time_t)INT64_MAX), 16);
    backoff_free(b);
}

static void test_backoff_eviction(void **state)
{
    (void)state;
    struct backoff *b = backoff_new(1, 60, 3600, 100);
    char key[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "user%d", i);
        backoff_fail(b, key, 0);
    }
    assert_int_equal(backoff_failures(b, "user0"), 0);
    assert_int_equal(backoff_failures(b, "user9899"), 0);
    for (int i = 9900; i < 10000; i++) {
        snprintf(key, sizeof(key), "user%d", i);
        assert_int_equal(backoff_failures(b, key), 1);
        assert_int_equal(backoff_wait(b, key, 1), 59);
    }
    backoff_free(b);
    /* free of NULL is harmless */
    backoff_free(NULL);
    rate_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_exact_limit),
        cmocka_unit_test(test_rate_refused_not_counted),
        cmocka_unit_test(test_rate_keys_apart),
        cmocka_unit_test(test_rate_zero_limit),
        cmocka_unit_test(test_rate_clock_back),
        cmocka_unit_test(test_rate_eviction),
        cmocka_unit_test(test_rate_lru),
        cmocka_unit_test(test_rate_model),
        cmocka_unit_test(test_backoff_schedule),
        cmocka_unit_test(test_backoff_from_last),
        cmocka_unit_test(test_backoff_forget),
        cmocka_unit_test(test_backoff_clear),
        cmocka_unit_test(test_backoff_forgive),
        cmocka_unit_test(test_backoff_overflow),
        cmocka_unit_test(test_backoff_eviction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
