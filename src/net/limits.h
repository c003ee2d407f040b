/*
 * limits - the counters the access decisions keep: failed AUTH per client
 * key and per account (back-off), new connections and messages per minute
 * (policy/ratelimit). Private to net/.
 *
 *   access_new(conf) / access_free       counters for the limits of conf
 *   access_reload(a, conf)               keep counters unless limits changed
 *   access_connect_allowed(a, key)       max_connection_rate for the client
 *                                        key (conn.h: IPv4 address or IPv6 /N)
 */
#ifndef MW_NET_LIMITS_H
#define MW_NET_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "policy/ratelimit.h"

struct access {
    struct backoff *fail_ip, *fail_user;
    struct rate_limiter *conn_rate, *msg_rate;
    unsigned failures, backoff, backoff_max, conn_limit, msg_limit;
    unsigned v6_prefix;    /* the keys' IPv6 prefix: counters change with it */
    uint64_t generation;   /* counters rebuilt by a reload: a new generation */
};

struct access *access_new(const struct mw_config *c);
void access_free(struct access *a);
void access_reload(struct access *a, const struct mw_config *c);
bool access_connect_allowed(struct access *a, const char *key);

#endif
