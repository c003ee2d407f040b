/*
 * outbound - the client side of one SMTP session to another MTA, as a
 * state machine that does no I/O (RFC 5321; PIPELINING RFC 2920, SIZE RFC
 * 1870, 8BITMIME RFC 6152, SMTPUTF8 RFC 6531, STARTTLS RFC 3207).
 *
 * The caller owns the socket. It feeds what it reads to smtpo_input(),
 * writes out whatever smtpo_output() holds, and looks at smtpo_state():
 *
 *   SMTPO_WAIT      waiting for the peer: read (within smtpo_timeout())
 *   SMTPO_TLS       the peer said 220 to STARTTLS: do the handshake, then
 *                   smtpo_tls_done() (or smtpo_tls_failed(): the session
 *                   is closed, the caller may try again without TLS)
 *   SMTPO_READY     greeting and EHLO done and nothing in flight: give it
 *                   a message (smtpo_send) or end (smtpo_quit)
 *   SMTPO_SENT      the last message's transaction is over: its outcome
 *                   per recipient is in smtpo_results(); then READY
 *   SMTPO_CLOSED    the session is over (QUIT answered, or an error:
 *                   smtpo_error() says which, and smtpo_session_reply()
 *                   holds the reply that ended it, if any)
 *
 * A message goes out as MAIL, RCPT..., DATA (in one write when the peer
 * offers PIPELINING, else one command at a time), then the data
 * dot-stuffed with CRLF line ends only (smtp_data_encode); to a peer that
 * offers CHUNKING, as one "BDAT <n> LAST" chunk instead (CRLF line ends,
 * nothing stuffed). What the peer
 * did not offer is never sent: SIZE= only when offered, the DSN
 * parameters (RET, ENVID, NOTIFY, ORCPT; an ORCPT of the recipient itself
 * when none was given) only to a peer that offers DSN, and a message over
 * its SIZE limit, with 8-bit bytes to a peer without 8BITMIME, or with a
 * UTF-8 address to a peer without SMTPUTF8 fails at once for every
 * recipient with a 5.x.x local reply (code 554 and `local` set) saying
 * why; nothing is sent. A recipient refused at RCPT keeps its own reply;
 * the others get the reply to the final dot (or to MAIL/DATA when those
 * fail). After a message whose transaction did not end cleanly, the next
 * starts with RSET.
 *
 * With require_tls, a peer that does not offer STARTTLS or refuses it is
 * left at once (SMTPO_ETLS); with auth_user, the session authenticates
 * (RFC 4954: PLAIN with an initial response, else LOGIN) once TLS is up,
 * and credentials are never sent without it (SMTPO_ETLS), nor to a peer
 * that offers neither mechanism (SMTPO_EAUTH).
 *
 * Replies are read with the bounded parser of smtp/reply.h; garbage, a
 * reply out of place or a peer that closes turns into SMTPO_CLOSED with a
 * 4xx-class error, and every recipient still open gets a local 451 4.4.2
 * result with the reason (a temporary failure: the message is retried).
 * Reply text kept for results is sanitised (printable ASCII only).
 *
 * Timeouts (RFC 5321 4.5.3.2), per wait, from smtpo_timeout(): greeting
 * and MAIL and RCPT 300 s, DATA 120 s, each block of data 180 s, the
 * final dot 600 s (struct smtpo_timeouts; 0 takes the default).
 */
#ifndef MW_SMTP_OUTBOUND_H
#define MW_SMTP_OUTBOUND_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "smtp/ext.h"
#include "smtp/reply.h"

enum smtpo_state { SMTPO_WAIT, SMTPO_TLS, SMTPO_READY, SMTPO_SENT, SMTPO_CLOSED };

enum smtpo_error {
    SMTPO_OK = 0,
    SMTPO_EGREETING,  /* the greeting was not 220 */
    SMTPO_EHELO,      /* EHLO and HELO refused */
    SMTPO_EPROTO,     /* garbage, a reply out of place */
    SMTPO_ECLOSED,    /* the peer closed or the caller gave up (timeout) */
    SMTPO_ETLS,       /* the handshake failed, or TLS is required and not offered */
    SMTPO_EAUTH,      /* AUTH refused, or no mechanism we can use */
};

struct smtpo_timeouts {
    unsigned greeting, mail, rcpt, data_init, data_block, data_end;
};

struct smtpo_opts {
    const char *helo;             /* our name for EHLO */
    bool starttls;                /* use STARTTLS when offered */
    bool require_tls;             /* no TLS (not offered, refused): close, send nothing */
    const char *auth_user;        /* AUTH (PLAIN, else LOGIN) after TLS; NULL: none */
    const char *auth_pass;        /* must outlive the machine */
    struct smtpo_timeouts timeouts;
};

struct smtpo_msg {
    const char *from;             /* "" for the null sender */
    const char *const *rcpts;
    size_t nrcpt;
    /* RFC 3461, passed on when the peer offers DSN (all may be 0/NULL) */
    char ret;                     /* 'F', 'H' or 0 */
    const char *envid;
    const unsigned *notify;       /* per recipient, 0: none given */
    const char *const *orcpt;     /* per recipient "type;address", or NULL entries */
    const char *body;             /* the stored message, CRLF lines */
    size_t body_len;
};

/* The outcome for one recipient of the last message. */
struct smtpo_result {
    unsigned code;                /* 250, 4xx, 5xx */
    char enhanced[12];            /* "5.1.1" or "" */
    char text[256];               /* the reply's text, sanitised, lines joined */
    bool local;                   /* decided here, not by the peer */
};

struct smtpo;

struct smtpo *smtpo_new(const struct smtpo_opts *o);
void smtpo_free(struct smtpo *s);

/* Take bytes read from the peer; returns how many were used (the rest
 * belong after a state change, e.g. bytes before a TLS handshake, which
 * must not exist: then SMTPO_CLOSED with SMTPO_EPROTO). n == 0: the peer
 * closed. */
size_t smtpo_input(struct smtpo *s, const char *p, size_t n);
/* Bytes to write to the peer (drain them: buf_reset). */
struct buf *smtpo_output(struct smtpo *s);
enum smtpo_state smtpo_state(const struct smtpo *s);
unsigned smtpo_timeout(const struct smtpo *s);

void smtpo_tls_done(struct smtpo *s);
void smtpo_tls_failed(struct smtpo *s);
bool smtpo_tls_active(const struct smtpo *s);

/* In SMTPO_READY only. The strings of m must stay valid until SMTPO_SENT. */
void smtpo_send(struct smtpo *s, const struct smtpo_msg *m);
const struct smtpo_result *smtpo_results(const struct smtpo *s, size_t *n);
/* After SMTPO_SENT: go back to READY. */
void smtpo_next(struct smtpo *s);
void smtpo_quit(struct smtpo *s);
/* The caller's timeout expired, or the connection broke. */
void smtpo_abort(struct smtpo *s, const char *why);

enum smtpo_error smtpo_error(const struct smtpo *s);
/* One line on what ended the session or why it is unusable. */
const char *smtpo_why(const struct smtpo *s);
/* The session-level reply that ended it (greeting, EHLO), if any. */
const struct smtpo_result *smtpo_session_reply(const struct smtpo *s);
const struct smtp_ext *smtpo_ext(const struct smtpo *s);

#endif
