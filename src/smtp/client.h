/*
 * client - a blocking SMTP submission client over TLS, for one-shot
 * commands (`mailwarden send`); the daemon never calls it.
 *
 * smtp_client_open() connects (every address of the name in turn, each
 * within the timeout), then either does the TLS handshake at once
 * (implicit TLS, RFC 8314) or reads the greeting, sends EHLO, STARTTLS
 * (RFC 3207) and EHLO again. The server certificate is always verified:
 * against ca_file or the system store, and against the host name
 * (SSL_set1_host, with SNI) or IP literal (X509_VERIFY_PARAM_set1_ip_asc).
 * TLS 1.2 is the minimum. Nothing but EHLO and STARTTLS ever goes out
 * before the handshake: a server that does not offer STARTTLS, refuses
 * it, or whose certificate does not verify ends the session with
 * SMTPC_ETLS. Bytes the server sends after its 220 to STARTTLS and before
 * the handshake (STARTTLS response injection) are refused.
 *
 * Then smtp_client_auth (PLAIN with an initial response, or LOGIN if
 * PLAIN is not offered), smtp_client_mail / _rcpt / _data (dot-stuffing
 * here; the message must be CRLF text), smtp_client_quit and
 * smtp_client_free. Every function returns SMTPC_OK or a negative enum
 * smtp_client_result; smtp_client_error() then says what went wrong in
 * one line naming host:port, and smtp_client_reply() holds the server's
 * last reply (for SMTPC_EREPLY: the refusal). After any error other than
 * SMTPC_EREPLY the connection is dead and only _quit/_free make sense.
 *
 * Every wait (connect, each read, each write) is bounded by the timeout;
 * replies go through the bounded parser of smtp/reply.h. With a trace
 * stream the dialogue is written there as "C: ..." / "S: ...", AUTH data
 * replaced by "****". Credential buffers are wiped after use.
 *
 * TLS writes go through OpenSSL's socket BIO: the caller ignores SIGPIPE.
 *
 * The I/O-free parts (the EHLO reply, dot-stuffing) are in smtp/ext.h.
 */
#ifndef MW_SMTP_CLIENT_H
#define MW_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/buf.h"
#include "smtp/ext.h"
#include "smtp/reply.h"

enum smtp_client_tls {
    SMTP_CLIENT_IMPLICIT,  /* TLS from the first byte */
    SMTP_CLIENT_STARTTLS,  /* EHLO, STARTTLS, then TLS */
};

struct smtp_client_opts {
    const char *host;      /* DNS name or IP literal; the certificate must match it */
    unsigned port;
    enum smtp_client_tls tls;
    const char *ca_file;   /* NULL or "": the system's trust store */
    const char *helo;
    unsigned timeout;      /* seconds, for each wait */
    FILE *trace;           /* NULL, or where the dialogue is written */
};

enum smtp_client_result {
    SMTPC_OK = 0,
    SMTPC_ECONNECT = -1,   /* no address, or every connect failed or timed out */
    SMTPC_ETLS = -2,       /* no STARTTLS, handshake or certificate check failed */
    SMTPC_EIO = -3,        /* connection lost or timed out after connecting */
    SMTPC_EPROTO = -4,     /* the server sent something that is not an SMTP reply */
    SMTPC_EREPLY = -5,     /* the server refused; smtp_client_reply() says how */
    SMTPC_EAUTH = -6,      /* no AUTH mechanism we can use */
    SMTPC_ECONFIG = -7,    /* the CA file cannot be loaded */
    SMTPC_EOS = -8,        /* a local failure (socket, TLS library) */
};

struct smtp_client;

/* *out is always set (free it); on failure the connection is closed. */
int smtp_client_open(const struct smtp_client_opts *o, struct smtp_client **out);
int smtp_client_auth(struct smtp_client *c, const char *user, const char *pass);
/* from "" is the null path; size (0: unknown) goes out as SIZE= when offered;
 * eightbit asks for BODY=8BITMIME, utf8 for SMTPUTF8 (when offered). */
int smtp_client_mail(struct smtp_client *c, const char *from, size_t size, bool eightbit,
                     bool utf8);
int smtp_client_rcpt(struct smtp_client *c, const char *rcpt);
int smtp_client_data(struct smtp_client *c, const char *msg, size_t n);
int smtp_client_rset(struct smtp_client *c);
/* QUIT (if the session is usable) and close; errors are ignored. */
void smtp_client_quit(struct smtp_client *c);
void smtp_client_free(struct smtp_client *c);

const char *smtp_client_error(const struct smtp_client *c);
const struct smtp_reply *smtp_client_reply(const struct smtp_client *c);
const struct smtp_ext *smtp_client_ext(const struct smtp_client *c);
/* "host:port" ("[::1]:587" for IPv6) */
const char *smtp_client_peer(const struct smtp_client *c);


#endif
