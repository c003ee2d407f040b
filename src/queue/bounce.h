/*
 * bounce - delivery status notifications (RFC 3464) for the sender of a
 * queued message: "failed" once recipients have failed for good, or
 * "delayed" once delivery has taken longer than delay_warning_time.
 * I/O-free: the scheduler reads the message and queues what this builds.
 *
 * The report is a multipart/report; report-type=delivery-status (RFC
 * 6522) message from MAILER-DAEMON@<hostname>, with Auto-Submitted:
 * auto-replied (RFC 3834): a human-readable part, a
 * message/delivery-status part (Reporting-MTA, Arrival-Date, and per
 * recipient Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
 * Last-Attempt-Date; Will-Retry-Until for "delayed"), and the original
 * header section as text/rfc822-headers. Lines end in CRLF and stay
 * within 998 octets; text from peers is already printable ASCII
 * (queue.h) and is folded here.
 *
 * RFC 3461: a recipient is in a report as its NOTIFY allows (none given:
 * failures and delays; NEVER: nothing); a FAILED report also says
 * "delivered" (local) or "relayed" (to a next hop without DSN) for the
 * recipients that asked for SUCCESS. ENVID goes back as
 * Original-Envelope-Id, ORCPT as Original-Recipient, and RET=FULL returns
 * the whole message (message/rfc822) instead of its header section.
 *
 * Never a report for a message from the null sender (the caller checks
 * queue_msg.from first: bounce_wanted).
 */
#ifndef MW_QUEUE_BOUNCE_H
#define MW_QUEUE_BOUNCE_H

#include <stdbool.h>
#include <time.h>

#include "core/buf.h"
#include "queue/queue.h"

enum bounce_kind { BOUNCE_FAILED, BOUNCE_DELAYED };

struct bounce_opts {
    const char *hostname;          /* Reporting-MTA, and the From domain */
    const char *id;                /* the report's own queue id (Message-ID) */
    time_t now;
    time_t retry_until;            /* DELAYED: arrival + max_queue_lifetime */
};

/* A report is owed for m: it has a sender to go back to. */
bool bounce_wanted(const struct queue_msg *m);
/* The recipients it covers (kind FAILED: failed, and delivered with a
 * success owed; DELAYED: deferred), from m->rs and NOTIFY. Returns how
 * many; 0: nothing to report. */
size_t bounce_build(enum bounce_kind kind, const struct queue_msg *m,
                    const struct bounce_opts *o, struct buf *out);

#endif
