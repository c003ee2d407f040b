/*
 * dns/unbound.h - the libunbound backend of the resolver interface (dns.h):
 * DNSSEC-validating lookups on the caller's libevent loop.
 *
 * dns_unbound_open(base, opts, out, err) returns 0 and a resolver in *out,
 * or -1 with the reason appended to err (a bad forwarder address, an
 * unreadable or malformed trust anchor). opts may be NULL (all defaults).
 *
 * Answers always arrive from the event loop, never inside dns_resolve().
 * After dns_close() no callback runs: outstanding queries are cancelled.
 * dns_close() may be called from inside a callback.
 *
 * Status mapping: data of the type -> DNS_OK; the name exists without the
 * type -> DNS_NODATA; NXDOMAIN -> DNS_NXDOMAIN; SERVFAIL, REFUSED, any
 * other error rcode, a timeout (30 s per query) or malformed record data
 * -> DNS_TEMPFAIL; a result that fails validation -> DNS_TEMPFAIL with
 * sec DNS_SEC_BOGUS, no records and unbound's reason in why.
 * sec is DNS_SEC_SECURE only when validation succeeded for the answer
 * (for NODATA/NXDOMAIN: the denial was proven).
 */
#ifndef MW_DNS_UNBOUND_H
#define MW_DNS_UNBOUND_H

#include <stddef.h>

#include "core/buf.h"
#include "dns/dns.h"

struct event_base;

struct dns_unbound_opts {
    /* "ip" or "ip@port"; none: the servers of /etc/resolv.conf */
    const char *const *forwarders;
    size_t nforwarders;
    /* DS/DNSKEY lines in a file; NULL: /usr/share/dns/root.key if it exists;
     * "": no file (only the anchors below) */
    const char *trust_anchor_file;
    /* extra anchors, zone-file DS/DNSKEY lines ("example. IN DS 1234 13 2 ...") */
    const char *const *trust_anchors;
    size_t nanchors;
};

#define DNS_UNBOUND_ROOT_KEY "/usr/share/dns/root.key"

int dns_unbound_open(struct event_base *base, const struct dns_unbound_opts *opts,
                     struct dns_resolver *out, struct buf *err);

#endif
