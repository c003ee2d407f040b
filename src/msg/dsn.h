/*
 * dsn - the NOTIFY values of RFC 3461 4.1, as bits: what the session
 * parses (smtp/ext.h), the queue keeps and the scheduler honours. None
 * of the bits: the client gave no NOTIFY (the default: report failures
 * and delays).
 */
#ifndef MW_MSG_DSN_H
#define MW_MSG_DSN_H

#define SMTP_NOTIFY_NEVER   0x1
#define SMTP_NOTIFY_SUCCESS 0x2
#define SMTP_NOTIFY_FAILURE 0x4
#define SMTP_NOTIFY_DELAY   0x8

#endif
