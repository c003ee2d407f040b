/*
 * listen - the daemon's listening sockets (server.h says what they serve).
 *
 *   server_listen(srv)     open every listener of srv->conf; -1 if one
 *                          cannot be opened (logged as event=listen_error)
 *   server_unlisten(srv)   close them all (stop accepting)
 *   server_stop(srv)       stop accepting, and 421 to every session not
 *                          in a commit (shutdown)
 */
#ifndef MW_NET_LISTEN_H
#define MW_NET_LISTEN_H

#include "net/server.h"

int server_listen(struct server *srv);
void server_unlisten(struct server *srv);
void server_stop(struct server *srv);

#endif
