/*
 * session_int - private to the smtp/ session: the session object shared by
 * session.c (input framing, replies, state) and commands.c (the command
 * table and handlers).
 */
#ifndef MW_SMTP_SESSION_INT_H
#define MW_SMTP_SESSION_INT_H

#include "auth/sasl.h"
#include "smtp/data.h"
#include "smtp/session.h"

struct smtp_session {
    struct smtp_params p;
    const struct smtp_hooks *hooks;
    void *ctx;

    enum smtp_state st;
    struct buf in, out, line;
    bool waiting;           /* an ask is outstanding */
    enum smtp_ask asked;
    bool in_process;        /* guards re-entry from ask() */
    bool skipping_line;     /* discarding the rest of an overlong line */
    bool shutdown_pending;  /* 421 once the outstanding ask is answered */

    bool esmtp;
    bool tls_active;
    bool tls_starting;      /* 220 sent for STARTTLS: drop all input */
    char *helo;
    unsigned errors;

    bool in_auth;           /* SASL exchange: lines are responses */
    struct sasl sasl;
    char *auth_user;        /* authenticated user, lower case */

    struct smtp_txn txn;
    struct mail_addr rcpt;  /* recipient being asked about */
    struct smtp_rcpt_dsn rcpt_dsn;  /* ...and its DSN parameters */
    bool have_rcpt;

    struct data_decoder dec;
    uint64_t bdat_left;      /* chunk bytes still to read */
    bool bdat_last;
    bool bdat_discard;       /* chunk refused: read and drop it */
    enum smtp_state bdat_ret;/* state to return to after a dropped chunk */
    int bdat_code;           /* reply for a dropped chunk */
    const char *bdat_enh, *bdat_text;
};

/* session.c */
void smtp_enter_state(struct smtp_session *s, enum smtp_state st);
void smtp_reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Like smtp_reply, but a 4xx/5xx here does not count toward max_errors. */
void smtp_reply_nocount(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void smtp_close(struct smtp_session *s, int code, const char *enh, const char *text);
void smtp_ask(struct smtp_session *s, enum smtp_ask what);
void smtp_txn_reset(struct smtp_session *s);
void smtp_log_reject(struct smtp_session *s, const char *cmd, int code, const char *why);

/* commands.c */
void smtp_command(struct smtp_session *s, const char *line, size_t n);
/* auth.c */
void smtp_cmd_auth(struct smtp_session *s, const char *args, size_t n);
void smtp_auth_response(struct smtp_session *s, const char *line, size_t n);
void smtp_auth_answered(struct smtp_session *s, int code);
int smtp_auth_param(struct smtp_session *s, const char *val, size_t n);
void smtp_data_done(struct smtp_session *s);
void smtp_chunk_done(struct smtp_session *s);
void smtp_answered(struct smtp_session *s, enum smtp_ask what, int code, const char *enh,
                   const char *text);

#endif
