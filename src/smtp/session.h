/*
 * session - the SMTP server session (RFC 5321 with PIPELINING, SIZE,
 * 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING) as a state machine.
 *
 * The session does no I/O. The daemon feeds it the bytes it reads
 * (smtp_session_feed) and sends whatever appears in its output buffer.
 * Decisions that belong to the daemon (accept this sender, this recipient,
 * queue this message) are asked through hooks->ask(); the session then
 * stops consuming input until smtp_session_answer() supplies the reply,
 * which may happen inside ask() or later from the event loop. Input that
 * arrives meanwhile is buffered, so pipelined commands are answered in
 * order (RFC 2920).
 *
 * Line policy: a command line must end with CRLF. A line ended by a bare
 * LF, or holding a CR or NUL, or longer than max_line, is refused whole
 * with 500 5.5.2 and never executed. Message content
 * goes through data.h (the smuggling defence). Every reply after the
 * greeting and EHLO/HELO carries an RFC 3463 enhanced status code.
 *
 * AUTH (RFC 4954, PLAIN and LOGIN through auth/sasl.h) is advertised and
 * accepted only when the listener allows it and TLS is active; before TLS
 * it is refused with 538 5.7.11. The session runs the SASL exchange and
 * asks the daemon to check the credentials (SMTP_ASK_AUTH); a 235 answer
 * makes the session authenticated for its lifetime. The password is wiped
 * as soon as the ask is answered; no AUTH line is ever logged.
 *
 * STARTTLS (RFC 3207): after the 220, every byte already received is
 * dropped and nothing more is processed until the daemon reports the
 * handshake done; then the session starts over as if newly connected
 * (no HELO, no transaction), so no plaintext byte can act inside TLS.
 *
 * Trust: every byte fed is untrusted; the params and hooks are trusted.
 *
 *   smtp_session_new(params, hooks, ctx)   greeting is queued at once
 *   smtp_session_feed(s, p, n)             process input
 *   smtp_session_output(s)                 bytes to send (caller consumes)
 *   smtp_session_waiting(s)                an ask is outstanding
 *   smtp_session_closing(s)                send the output, then close
 *   smtp_session_shutdown(s)               daemon is stopping (421)
 *   smtp_session_timeout(s)                client was idle too long (421)
 */
#ifndef MW_SMTP_SESSION_H
#define MW_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "msg/addr.h"

enum smtp_state {
    SMTP_ST_INIT,   /* greeting sent, waiting for HELO/EHLO */
    SMTP_ST_READY,  /* HELO/EHLO done, no transaction */
    SMTP_ST_MAIL,   /* MAIL accepted, no recipient yet */
    SMTP_ST_RCPT,   /* at least one recipient accepted */
    SMTP_ST_DATA,   /* reading DATA content */
    SMTP_ST_BDAT,   /* reading a BDAT chunk */
    SMTP_ST_CLOSED, /* 221 or 421 queued; input is ignored */
};
#define SMTP_NSTATES 7

enum smtp_ask {
    SMTP_ASK_MAIL,    /* txn.from is set */
    SMTP_ASK_RCPT,    /* smtp_session_pending_rcpt() */
    SMTP_ASK_MESSAGE, /* txn complete, body in txn.body: answer 250 once durable */
    SMTP_ASK_STARTTLS,/* 220 queued: send it, run the handshake, then call
                       * smtp_session_tls_started() (or close) */
    SMTP_ASK_AUTH,    /* smtp_session_auth_request(): answer 235, 535 or 454 */
};

enum smtp_body { SMTP_BODY_NONE, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };

/* A recipient's DSN parameters (RFC 3461 4.1, 4.2). */
struct smtp_rcpt_dsn {
    unsigned notify;          /* SMTP_NOTIFY_* (smtp/ext.h); 0: not given */
    char *orcpt;              /* "rfc822;addr" decoded from xtext, or NULL */
};

struct smtp_txn {
    struct mail_addr from;
    struct mail_addr *rcpts;
    struct smtp_rcpt_dsn *rcpt_dsn;  /* one per rcpts entry */
    size_t nrcpt;
    char ret;                 /* RET=: 'F' (FULL), 'H' (HDRS), 0: not given */
    char *envid;              /* ENVID= decoded, or NULL */
    uint64_t declared_size;   /* SIZE=, 0 if absent */
    enum smtp_body body_type;
    bool smtputf8;
    bool bdat;                /* content comes by BDAT */
    char *auth_param;         /* MAIL AUTH= (xtext decoded), NULL if absent */
    struct buf body;          /* message content as received, CRLF lines */
};

struct smtp_params {
    const char *hostname;
    const char *session_id;   /* for log lines */
    size_t max_line;          /* command line incl. CRLF */
    uint64_t max_message;     /* bytes of content */
    unsigned max_rcpt;
    unsigned max_errors;
    bool starttls;            /* offer STARTTLS (a certificate is there) */
    bool tls_required;        /* RFC 6409 submission: mail commands need TLS */
    bool tls_active;          /* implicit TLS: the session starts secured */
    bool auth;                /* offer AUTH (once TLS is active) */
};

struct smtp_auth_request {
    const char *mech;         /* "PLAIN" or "LOGIN" */
    const char *user;         /* authentication identity as sent */
    const char *pass;         /* valid until the ask is answered */
};

struct smtp_session;

struct smtp_hooks {
    void (*ask)(void *ctx, struct smtp_session *s, enum smtp_ask what);
};

struct smtp_session *smtp_session_new(const struct smtp_params *p, const struct smtp_hooks *h,
                                      void *ctx);
void smtp_session_free(struct smtp_session *s);

void smtp_session_feed(struct smtp_session *s, const void *p, size_t n);
struct buf *smtp_session_output(struct smtp_session *s);

/* Answer the outstanding ask. code is the SMTP reply code (2xx accepts),
 * enh the enhanced status code ("2.1.0"), text the reply text. */
void smtp_session_answer(struct smtp_session *s, int code, const char *enh, const char *text);

/* The TLS handshake after STARTTLS succeeded: resume, forgetting state. */
void smtp_session_tls_started(struct smtp_session *s);
bool smtp_session_tls_active(const struct smtp_session *s);

void smtp_session_shutdown(struct smtp_session *s);
void smtp_session_timeout(struct smtp_session *s);

bool smtp_session_waiting(const struct smtp_session *s);
bool smtp_session_closing(const struct smtp_session *s);
enum smtp_state smtp_session_state(const struct smtp_session *s);
const struct smtp_txn *smtp_session_txn(const struct smtp_session *s);
const struct mail_addr *smtp_session_pending_rcpt(const struct smtp_session *s);
const char *smtp_session_helo(const struct smtp_session *s);
/* During SMTP_ASK_AUTH: the credentials to check; false at other times. */
bool smtp_session_auth_request(const struct smtp_session *s, struct smtp_auth_request *out);
/* The authenticated user (lower case), or NULL. */
const char *smtp_session_auth_user(const struct smtp_session *s);
/* Protocol for the Received header "with" clause (RFC 3848, RFC 6531):
 * SMTP, ESMTP, ESMTPS, ESMTPSA, UTF8SMTP, UTF8SMTPS, UTF8SMTPSA. */
const char *smtp_session_protocol(const struct smtp_session *s);
/* Bytes buffered but not yet processed (for flow control). */
size_t smtp_session_backlog(const struct smtp_session *s);
const char *smtp_state_name(enum smtp_state st);

#endif
