/*
 * access - the daemon's access-control decisions (AUTH, sender binding,
 * relay, rate limits) and their audit log lines. Private to net/; the
 * rules themselves live in auth/ and policy/, the counters in limits.h.
 *
 *   access_auth(c)                       answer SMTP_ASK_AUTH (maybe later)
 *   access_mail(c)                       answer SMTP_ASK_MAIL (maybe via SPF)
 *   access_rcpt(c)                       answer SMTP_ASK_RCPT
 *   access_header_from(c, author, why)   authenticated mail: every From
 *                                        mailbox granted? 0, or -1 + reply
 */
#ifndef MW_NET_ACCESS_H
#define MW_NET_ACCESS_H

#include <stdbool.h>

#include "msg/author.h"
#include "conf/conf.h"
#include "core/buf.h"

struct conn;

void access_auth(struct conn *c);
void access_mail(struct conn *c);
void access_rcpt(struct conn *c);
int access_header_from(struct conn *c, const struct msg_author *a, struct buf *why);

#endif
