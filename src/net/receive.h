/*
 * receive - from a complete SMTP transaction to a durable queue file, and
 * only then the 250 (receive.c says each step). Private to net/.
 *
 *   receive_message(c)   answer SMTP_ASK_MESSAGE (asynchronously)
 */
#ifndef MW_NET_RECEIVE_H
#define MW_NET_RECEIVE_H

struct conn;

void receive_message(struct conn *c);

#endif
