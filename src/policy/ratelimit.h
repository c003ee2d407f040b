/*
 * ratelimit - in-memory counters keyed by a string (client IP, account),
 * for the daemon's limits and the AUTH brute-force throttle. No I/O; the
 * caller passes the time, so tests drive a fake clock.
 *
 * rate: at most `limit` events per `window` seconds per key (a sliding
 * window: events older than window seconds no longer count). An event
 * that is refused is not counted.
 *
 * backoff: failures per key. Once a key has `threshold` failures, it must
 * wait base * 2^(failures - threshold) seconds (capped at max) after its
 * last failure before the next attempt is allowed. Failures older than
 * max seconds (since the last one) are forgotten; clear() forgets at once.
 *
 * Memory is bounded: each table holds at most max_keys keys; when full, the
 * entry used least recently is dropped (for backoff that forgives it; the
 * default cap is large enough that an attacker cannot flush a real entry
 * without thousands of addresses).
 *
 *   rate_new(limit, window, max_keys) / rate_free
 *   rate_allow(r, key, now)          true and counted, or false (over limit)
 *   backoff_new(threshold, base, max, max_keys) / backoff_free
 *   backoff_wait(b, key, now)        seconds until an attempt is allowed, 0 now
 *   backoff_fail(b, key, now)        count a failure
 *   backoff_failures(b, key)         failures counted (for logs)
 *   backoff_forgive(b, key)          take one failure back (an attempt counted
 *                                    when it started, that did not fail)
 *   backoff_clear(b, key)
 */
#ifndef MW_POLICY_RATELIMIT_H
#define MW_POLICY_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct rate_limiter;
struct backoff;

struct rate_limiter *rate_new(unsigned limit, unsigned window, size_t max_keys);
void rate_free(struct rate_limiter *r);
bool rate_allow(struct rate_limiter *r, const char *key, time_t now);

struct backoff *backoff_new(unsigned threshold, unsigned base, unsigned max, size_t max_keys);
void backoff_free(struct backoff *b);
unsigned backoff_wait(struct backoff *b, const char *key, time_t now);
void backoff_fail(struct backoff *b, const char *key, time_t now);
unsigned backoff_failures(struct backoff *b, const char *key);
void backoff_clear(struct backoff *b, const char *key);
void backoff_forgive(struct backoff *b, const char *key);

#endif
