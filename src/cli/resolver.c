/*
 * resolver.c - the resolver the DNS-using commands (spf, verify, check dns)
 * open from their options: a zone file answers alone (--dns-zone, the
 * offline contract), otherwise libunbound, validating, on an event loop
 * made here. Errors are printed as "mailwarden NAME: reason".
 */
#include <stdio.h>
#include <sysexits.h>

#include <event2/event.h>

#include "cli/cli.h"
#include "dns/unbound.h"

int cli_open_resolver(const char *prog, const char *zone, const struct dns_unbound_opts *o,
                      bool cache, struct event_base **base, struct dns_resolver *r)
{
    struct buf err = { 0 };
    int rc;
    *base = NULL;
    if (zone != NULL) {
        rc = dns_zone_open(zone, r, &err);
    } else {
        *base = event_base_new();
        if (*base == NULL) {
            fprintf(stderr, "mailwarden %s: cannot create an event loop\n", prog);
            return EX_OSERR;
        }
        rc = dns_unbound_open(*base, o, r, &err);
        if (rc == 0 && cache)  /* repeated lookups answered in-process */
            dns_cache_wrap(r, 50000, 3600, 60);
    }
    if (rc < 0) {
        fprintf(stderr, "mailwarden %s: %s\n", prog, buf_ptr(&err));
        if (*base) {
            event_base_free(*base);
            *base = NULL;
        }
    }
    buf_free(&err);
    return rc < 0 ? EX_CONFIG : EX_OK;
}
