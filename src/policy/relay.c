/*
 * relay.c - the relay decision; see relay.h for the rules.
 *
 * relay_check() looks only at the parsed recipient (domain already lower
 * case, local part already unquoted, source route already dropped), the
 * immutable config and what the session knows of the client. It never
 * fails: every input has a verdict, and `why` (if not NULL) is set to a
 * short constant string for the audit log.
 *
 * Order of the rules:
 *   1. no domain: the bare <Postmaster> is local; any other domain-less
 *      recipient (a null path that slipped through) is refused as
 *      RELAY_BAD_LOCAL, never relayed;
 *   2. a local domain (exact, case-insensitive, never a literal):
 *      RELAY_BAD_LOCAL if the local part has '%', '!', '@' or ':',
 *      else RELAY_LOCAL;
 *   3. anything else: RELAY_ALLOWED for an authenticated client or one in
 *      relay_networks, else RELAY_DENIED.
 *
 * SECURITY: everything in rcpt and cl->ip comes from the network. A
 * missing or unparsable client address is simply not in relay_networks.
 */
#include "policy/relay.h"

#include <assert.h>
#include <string.h>

#include "core/cidr.h"
#include "core/str.h"

/* Characters that make a local part a route to somewhere else. */
static const char routing_chars[] = "%!@:";

static enum relay_verdict verdict(enum relay_verdict v, const char *reason, const char **why)
{
    if (why != NULL)
        *why = reason;
    return v;
}

static bool has_routing(const char *local)
{
    return strpbrk(local, routing_chars) != NULL;
}

static bool may_relay(const struct mw_config *c, const struct relay_client *cl,
                      const char **reason)
{
    if (cl == NULL)
        return false;
    if (cl->authenticated) {
        *reason = "authenticated";
        return true;
    }
    if (cl->ip != NULL && cidr_match_any(c->relay_networks, c->nrelay_networks, cl->ip)) {
        *reason = "relay_networks";
        return true;
    }
    return false;
}

enum relay_verdict relay_check(const struct mw_config *c, const struct relay_client *cl,
                               const struct mail_addr *rcpt, const char **why)
{
    assert(c != NULL && rcpt != NULL && rcpt->domain != NULL && rcpt->local != NULL);

    if (rcpt->domain[0] == '\0') {
        if (!rcpt->null && str_ieq(rcpt->local, strlen(rcpt->local), "postmaster"))
            return verdict(RELAY_LOCAL, "postmaster", why);
        return verdict(RELAY_BAD_LOCAL, "no domain", why);
    }
    if (!rcpt->literal && conf_is_local_domain(c, rcpt->domain)) {
        if (has_routing(rcpt->local))
            return verdict(RELAY_BAD_LOCAL, "routing characters in local part", why);
        return verdict(RELAY_LOCAL, "local domain", why);
    }
    const char *reason = NULL;
    if (may_relay(c, cl, &reason))
        return verdict(RELAY_ALLOWED, reason, why);
    return verdict(RELAY_DENIED, "not a local domain", why);
}

const char *relay_verdict_name(enum relay_verdict v)
{
    switch (v) {
    case RELAY_LOCAL: return "local";
    case RELAY_ALLOWED: return "allowed";
    case RELAY_DENIED: return "denied";
    case RELAY_BAD_LOCAL: return "bad_local";
    }
    return "unknown";
}
