/*
 * handlers - the decisions a session's questions go to: access.c (AUTH,
 * MAIL, RCPT) and receive.c (the message). The daemon points
 * server.handlers here; conn.c only moves bytes and asks.
 */
#ifndef MW_NET_HANDLERS_H
#define MW_NET_HANDLERS_H

#include "net/server.h"

extern const struct conn_handlers net_handlers;

#endif
