/*
 * auth.c - the AUTH command (RFC 4954) inside the SMTP session, and the
 * AUTH= parameter of MAIL.
 *
 * Order of checks: state (after EHLO, outside a transaction, not yet
 * authenticated), then availability (listener allows it, TLS active),
 * then the mechanism. The SASL exchange itself is auth/sasl.c; while it
 * runs, every input line is a response, never a command. The credentials
 * go to the daemon through SMTP_ASK_AUTH; its answer decides.
 *
 * Replies (RFC 4954 6): 235 2.7.0 success; 334 challenge; 501 5.0.0 cancelled;
 * 501 5.5.2 undecodable response; 504 5.5.4 unknown mechanism; 538 5.7.11
 * encryption required; 503 5.5.1 wrong state; 535 5.7.8 / 454 4.7.0 from
 * the daemon.
 */
#include "smtp/session_int.h"

#include <string.h>

#include "core/str.h"
#include "core/xmalloc.h"
#include "smtp/ext.h"

static void auth_reject(struct smtp_session *s, int code, const char *enh, const char *text)
{
    smtp_log_reject(s, "AUTH", code, text);
    smtp_reply(s, code, enh, "Error: %s", text);
}

static bool auth_allowed(struct smtp_session *s)
{
    if (s->st == SMTP_ST_INIT || !s->esmtp) {
        auth_reject(s, 503, "5.5.1", "send EHLO first");
    } else if (s->auth_user) {
        auth_reject(s, 503, "5.5.1", "already authenticated");
    } else if (s->st != SMTP_ST_READY) {
        auth_reject(s, 503, "5.5.1", "AUTH not allowed during a mail transaction");
    } else if (!s->p.auth) {
        auth_reject(s, 502, "5.5.1", "AUTH not available on this service");
    } else if (!s->tls_active) {
        auth_reject(s, 538, "5.7.11", "encryption required for requested authentication mechanism");
    } else {
        return true;
    }
    return false;
}

/* Act on what sasl_start/sasl_step returned. */
static void auth_next(struct smtp_session *s, enum sasl_status st, struct buf *chal)
{
    switch (st) {
    case SASL_CONTINUE:
        s->in_auth = true;
        buf_printf(&s->out, "334 %s\r\n", buf_ptr(chal) ? buf_ptr(chal) : "");
        return;
    case SASL_DONE:
        s->in_auth = false;
        smtp_ask(s, SMTP_ASK_AUTH);
        return;
    case SASL_CANCEL:
        auth_reject(s, 501, "5.0.0", "authentication cancelled");
        break;
    case SASL_BAD_BASE64:
        auth_reject(s, 501, "5.5.2", "cannot decode the response");
        break;
    case SASL_BAD_MESSAGE:
        auth_reject(s, 535, "5.7.8", "authentication credentials invalid");
        break;
    }
    s->in_auth = false;
    sasl_clear(&s->sasl);
}

void smtp_cmd_auth(struct smtp_session *s, const char *args, size_t n)
{
    if (!auth_allowed(s))
        return;
    size_t m = 0;
    while (m < n && args[m] != ' ')
        m++;
    if (m == 0) {
        auth_reject(s, 501, "5.5.4", "syntax: AUTH mechanism [initial-response]");
        return;
    }
    enum sasl_mech mech = sasl_mech_by_name(args, m);
    if (mech == SASL_NONE) {
        auth_reject(s, 504, "5.5.4", "unrecognized authentication type");
        return;
    }
    const char *ir = NULL;
    size_t irlen = 0;
    if (m < n) {
        ir = args + m + 1;
        irlen = n - m - 1;
        if (irlen == 0 || memchr(ir, ' ', irlen)) {
            auth_reject(s, 501, "5.5.4", "syntax: AUTH mechanism [initial-response]");
            return;
        }
    }
    struct buf chal;
    buf_init(&chal);
    auth_next(s, sasl_start(&s->sasl, mech, ir, irlen, &chal), &chal);
    buf_free(&chal);
}

void smtp_auth_response(struct smtp_session *s, const char *line, size_t n)
{
    if (n == 0 || line[n - 1] != '\r') {
        s->in_auth = false;
        sasl_clear(&s->sasl);
        auth_reject(s, 500, "5.5.2", "response line must end with CRLF");
        return;
    }
    struct buf chal;
    buf_init(&chal);
    auth_next(s, sasl_step(&s->sasl, line, n - 1, &chal), &chal);
    buf_free(&chal);
}

void smtp_auth_answered(struct smtp_session *s, int code)
{
    if (code >= 200 && code < 300) {
        s->auth_user = xstrdup(s->sasl.user);
        str_lower(s->auth_user);
    }
    sasl_clear(&s->sasl);
}

int smtp_auth_param(struct smtp_session *s, const char *val, size_t n)
{
    struct buf d;
    buf_init(&d);
    if (smtp_xtext_decode(val, n, &d) < 0) {
        buf_free(&d);
        return -1;
    }
    xfree(s->txn.auth_param);
    s->txn.auth_param = d.data ? d.data : xstrdup("");
    return 0;
}
