/*
 * relay - may this recipient be accepted from this client? The DESIGN
 * contract: mail for a domain that is not local is accepted only from an
 * authenticated session or a client inside relay_networks; nothing else
 * relays, ever.
 *
 * A recipient is local only when its domain is, exactly (ASCII case
 * insensitive), one of local_domains: no address literal, no trailing dot,
 * no subdomain. A local recipient whose local part still carries routing
 * syntax - '%' (percent hack), '!' (bang path), '@' or ':' (inside quotes:
 * a second address or a route) - is refused for every client: such a
 * mailbox cannot exist here and accepting it is how open relays were
 * made. Source routes are already dropped by the address parser, which
 * leaves the final mailbox to judge.
 *
 * The bare "<Postmaster>" (no domain) is always local (RFC 5321 4.5.1).
 *
 *   relay_check(conf, client, rcpt, &why)   a verdict; why names the
 *                                           rule, for the audit log
 */
#ifndef MW_POLICY_RELAY_H
#define MW_POLICY_RELAY_H

#include <stdbool.h>

#include "conf/conf.h"
#include "msg/addr.h"

enum relay_verdict {
    RELAY_LOCAL,      /* ours: deliver here */
    RELAY_ALLOWED,    /* not ours, and this client may relay */
    RELAY_DENIED,     /* not ours, and this client may not: 554 5.7.1 */
    RELAY_BAD_LOCAL,  /* ours, but the local part carries routing: 550 5.7.1 */
};

struct relay_client {
    const char *ip;          /* text form, as inet_ntop writes it */
    bool authenticated;
};

enum relay_verdict relay_check(const struct mw_config *c, const struct relay_client *cl,
                               const struct mail_addr *rcpt, const char **why);
const char *relay_verdict_name(enum relay_verdict v);

#endif
