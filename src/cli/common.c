/*
 * common.c - pieces the commands share.
 *
 * cli_open_resolver(): the resolver the DNS-using commands (spf, verify,
 * check dns) open from their options: a zone file answers alone
 * (--dns-zone, the offline contract), otherwise libunbound, validating, on
 * an event loop made here. Errors are printed as "mailwarden NAME: reason".
 *
 * cli_read_message(): a message from a stream, bare LF turned into CRLF.
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

int cli_read_message(FILE *in, size_t max, struct buf *b)
{
    char chunk[65536];
    size_t n;
    char prev = '\0';
    while ((n = fread(chunk, 1, sizeof(chunk), in)) > 0) {
        buf_reserve(b, n + n / 16);
        for (size_t i = 0; i < n; i++) {
            if (chunk[i] == '\n' && prev != '\r')
                buf_append_byte(b, '\r');
            buf_append_byte(b, chunk[i]);
            prev = chunk[i];
        }
        if (buf_size(b) > max)
            return -1;
    }
    return ferror(in) ? -1 : 0;
}
