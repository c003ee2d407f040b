/*
 * inbound_dmarc - DMARC (RFC 7489) on inbound mail, after SPF and DKIM:
 * evaluates over the daemon's resolver, logs event=dmarc, keeps a row for
 * aggregate reports, and decides what to do. Private to net/.
 *
 * Verdicts (dmarc_enforce on, neither the From domain nor the client
 * trusted): a From that makes the message not DMARC-evaluable (none,
 * several, several mailboxes, no domain) -> 550 5.6.0 when
 * dmarc_reject_bad_from; disposition reject -> 550 5.7.1 naming the
 * policy; quarantine -> accept into the Maildir folder "Junk"; temperror
 * (a lookup failed, also an aligned DKIM key) under p=reject or
 * p=quarantine -> 451 4.7.5, so the sender retries. Everything else is
 * accepted. Authenticated submissions are not evaluated at all.
 *
 *   inbound_dmarc(c, msg, n, author, dkim, ndkim, done, arg)   author is
 *       msg_author() of msg, read off the loop; done is called exactly
 *       once, maybe before inbound_dmarc returns; the outcome and verdict
 *       live during the call only
 */
#ifndef MW_NET_INBOUND_DMARC_H
#define MW_NET_INBOUND_DMARC_H

#include <stddef.h>

#include "dkim/dkim.h"
#include "dmarc/dmarc.h"
#include "net/conn.h"

struct dmarc_verdict {
    int code;                 /* 0: accept; else the reply (550) */
    const char *enh;
    char text[300];
    const char *folder;       /* "Junk" for quarantine, else NULL */
};

typedef void (*inbound_dmarc_cb)(void *arg, const struct dmarc_outcome *o,
                                 const struct dmarc_verdict *v);

void inbound_dmarc(struct conn *c, const char *msg, size_t n, const struct msg_author *author,
                   const struct dkim_sig_result *dkim, size_t ndkim, inbound_dmarc_cb done,
                   void *arg);

#endif
