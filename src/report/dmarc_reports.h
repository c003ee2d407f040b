/*
 * dmarc_reports - the daemon's DMARC aggregate reports (RFC 7489 7.2):
 * every dmarc_report_interval seconds the rows that inbound_dmarc appended
 * to <data>/dmarc/rows become report mails in our own queue.
 *
 * One run, never two at once: on its own one-thread pool, rename rows to
 * rows.processing (new rows go to a fresh file; the loop is the only
 * writer of rows, and the read waits for one loop turn after the rename,
 * so no row is half-written when it is read); read and aggregate it, make
 * the XML and its gzip (pool); check each mailto: destination against
 * RFC 7489 7.1 over ctx->dns (loop, asynchronous); build and queue_commit
 * one message per (report, destination), write the rows of a report back
 * to rows, restricted to the destinations that had a temporary error
 * (DNS temperror, queue write error), fsync, remove rows.processing
 * (pool); hand the ids to ctx->queued and log (loop).
 *
 * Crash safety: a rows.processing found at start-up or at a tick is
 * processed before anything else; a crash in the middle of a run gives
 * duplicate reports at worst, never lost rows. Rows that do not parse are
 * logged (event=dmarc_row_error, "file:line: why") and dropped.
 *
 * Log: event=dmarc_report per report and destination: report_id domain
 * destination records messages result (queued, denied, temperror,
 * too_large, unsupported, bad_uri, no_destination, error) reason queue.
 *
 *   dmarc_reports_start(ctx)   at start-up; NULL when the interval is 0;
 *                              ctx is copied, its pointers must outlive it
 *   dmarc_reports_free(d)      at clean-up, before the resolver and the
 *                              delivery are gone; finishes a pool job in
 *                              flight, abandons the rest (the processing
 *                              file stays for the next start)
 */
#ifndef MW_REPORT_DMARC_REPORTS_H
#define MW_REPORT_DMARC_REPORTS_H

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"

struct event_base;
struct dns_resolver;
struct queue;
struct dmarc_reports;

struct report_ctx {
    struct event_base *base;
    struct dns_resolver *dns;
    const struct queue *queue;
    const char *data_dir;
    struct mw_config *const *conf;  /* the daemon's current configuration */
    const bool *stopping;           /* the daemon is shutting down */
    void (*queued)(void *arg, const char *id, uint32_t slot);
    void *arg;
};

struct dmarc_reports *dmarc_reports_start(const struct report_ctx *ctx);
void dmarc_reports_free(struct dmarc_reports *d);

#endif
