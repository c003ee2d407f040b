/*
 * limits.c - the counters behind the access decisions; see limits.h.
 */
#include "net/limits.h"

#include <string.h>
#include <time.h>

#include "core/xmalloc.h"

#define ACCESS_MAX_KEYS 100000


static void access_build(struct access *a, const struct mw_config *c)
{
    static uint64_t generations;
    a->generation = ++generations;
    a->failures = c->auth_failures;
    a->backoff = c->auth_backoff;
    a->backoff_max = c->auth_backoff_max;
    a->conn_limit = c->max_connection_rate;
    a->msg_limit = c->max_message_rate;
    a->v6_prefix = c->ipv6_prefix_length;
    a->fail_ip = backoff_new(a->failures, a->backoff, a->backoff_max, ACCESS_MAX_KEYS);
    a->fail_user = backoff_new(a->failures, a->backoff, a->backoff_max, ACCESS_MAX_KEYS);
    a->conn_rate = a->conn_limit ? rate_new(a->conn_limit, 60, ACCESS_MAX_KEYS) : NULL;
    a->msg_rate = a->msg_limit ? rate_new(a->msg_limit, 60, ACCESS_MAX_KEYS) : NULL;
}

static void access_clear(struct access *a)
{
    backoff_free(a->fail_ip);
    backoff_free(a->fail_user);
    if (a->conn_rate)
        rate_free(a->conn_rate);
    if (a->msg_rate)
        rate_free(a->msg_rate);
    memset(a, 0, sizeof(*a));
}

struct access *access_new(const struct mw_config *c)
{
    struct access *a = xcalloc(1, sizeof(*a));
    access_build(a, c);
    return a;
}

void access_free(struct access *a)
{
    if (a == NULL)
        return;
    access_clear(a);
    xfree(a);
}

void access_reload(struct access *a, const struct mw_config *c)
{
    /* Counters survive a reload unless their limits changed. */
    if (a->failures == c->auth_failures && a->backoff == c->auth_backoff &&
        a->backoff_max == c->auth_backoff_max && a->conn_limit == c->max_connection_rate &&
        a->msg_limit == c->max_message_rate &&
        a->v6_prefix == c->ipv6_prefix_length)
        return;
    access_clear(a);
    access_build(a, c);
}

bool access_connect_allowed(struct access *a, const char *key)
{
    return a->conn_rate == NULL || rate_allow(a->conn_rate, key, time(NULL));
}

