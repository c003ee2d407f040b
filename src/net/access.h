/*
 * access - the daemon's access-control decisions (AUTH, sender binding,
 * relay, rate limits) and their audit log lines. Private to net/; the
 * rules themselves live in auth/ and policy/.
 *
 *   access_new(conf) / access_free       counters for the limits of conf
 *   access_reload(a, conf)               keep counters unless limits changed
 *   access_connect_allowed(a, key)       max_connection_rate for the client
 *                                        key (conn.h: IPv4 address or IPv6 /N)
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
#include "net/conn.h"

struct access;

struct access *access_new(const struct mw_config *c);
void access_free(struct access *a);
void access_reload(struct access *a, const struct mw_config *c);
bool access_connect_allowed(struct access *a, const char *key);
void access_auth(struct conn *c);
void access_mail(struct conn *c);
void access_rcpt(struct conn *c);
int access_header_from(struct conn *c, const struct msg_author *a, struct buf *why);

#endif
