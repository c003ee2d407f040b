/*
 * session.c - input framing, reply formatting and the session life cycle.
 * The command table and handlers are in commands.c.
 */
#include "smtp/session_int.h"

#include <assert.h>
#include <stdarg.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"

static const char *const state_names[SMTP_NSTATES] = {
    "init", "ready", "mail", "rcpt", "data", "bdat", "closed",
};

const char *smtp_state_name(enum smtp_state st)
{
    return (unsigned)st < SMTP_NSTATES ? state_names[st] : "?";
}

struct smtp_session *smtp_session_new(const struct smtp_params *p, const struct smtp_hooks *h,
                                      void *ctx)
{
    struct smtp_session *s = xcalloc(1, sizeof(*s));
    s->p = *p;
    s->p.hostname = xstrdup(p->hostname);
    s->p.session_id = xstrdup(p->session_id ? p->session_id : "-");
    s->hooks = h;
    s->ctx = ctx;
    s->st = SMTP_ST_INIT;
    s->tls_active = p->tls_active;
    buf_printf(&s->out, "220 %s ESMTP mailwarden\r\n", s->p.hostname);
    return s;
}

void smtp_session_free(struct smtp_session *s)
{
    if (s == NULL)
        return;
    smtp_txn_reset(s);
    buf_free(&s->txn.body);
    buf_free(&s->in);
    buf_free(&s->out);
    buf_free(&s->line);
    xfree(s->helo);
    sasl_clear(&s->sasl);
    xfree(s->auth_user);
    xfree((char *)s->p.hostname);
    xfree((char *)s->p.session_id);
    xfree(s);
}

void smtp_enter_state(struct smtp_session *s, enum smtp_state st)
{
    if (s->st == st)
        return;
    log_kv(MW_LOG_DEBUG, "state", "session", s->p.session_id, "from", smtp_state_name(s->st),
           "to", smtp_state_name(st), NULL);
    s->st = st;
}

__attribute__((format(printf, 5, 0)))
static void vreply(struct smtp_session *s, bool count, int code, const char *enh,
                   const char *fmt, va_list ap)
{
    buf_printf(&s->out, "%03d ", code);
    if (enh)
        buf_printf(&s->out, "%s ", enh);
    buf_vprintf(&s->out, fmt, ap);
    buf_append(&s->out, "\r\n", 2);
    if (count && code >= 400)
        s->errors++;
}

void smtp_reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreply(s, true, code, enh, fmt, ap);
    va_end(ap);
}

void smtp_reply_nocount(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreply(s, false, code, enh, fmt, ap);
    va_end(ap);
}

void smtp_close(struct smtp_session *s, int code, const char *enh, const char *text)
{
    if (s->st == SMTP_ST_CLOSED)
        return;
    smtp_reply_nocount(s, code, enh, "%s %s", s->p.hostname, text);
    smtp_enter_state(s, SMTP_ST_CLOSED);
    buf_reset(&s->in);
}

void smtp_log_reject(struct smtp_session *s, const char *cmd, int code, const char *why)
{
    struct log_line l;
    log_begin(&l, MW_LOG_INFO, "reject");
    log_str(&l, "session", s->p.session_id);
    log_str(&l, "cmd", cmd);
    log_u64(&l, "code", (uint64_t)code);
    log_str(&l, "reason", why);
    log_end(&l);
}

void smtp_txn_reset(struct smtp_session *s)
{
    struct smtp_txn *t = &s->txn;
    addr_free(&t->from);
    for (size_t i = 0; i < t->nrcpt; i++) {
        addr_free(&t->rcpts[i]);
        xfree(t->rcpt_dsn[i].orcpt);
    }
    xfree(t->rcpts);
    xfree(t->rcpt_dsn);
    t->rcpts = NULL;
    t->rcpt_dsn = NULL;
    t->nrcpt = 0;
    t->ret = 0;
    xfree(t->envid);
    t->envid = NULL;
    t->declared_size = 0;
    t->body_type = SMTP_BODY_NONE;
    t->smtputf8 = false;
    t->bdat = false;
    xfree(t->auth_param);
    t->auth_param = NULL;
    buf_free(&t->body);
    if (s->have_rcpt) {
        addr_free(&s->rcpt);
        xfree(s->rcpt_dsn.orcpt);
        s->rcpt_dsn.orcpt = NULL;
        s->have_rcpt = false;
    }
}

void smtp_ask(struct smtp_session *s, enum smtp_ask what)
{
    assert(!s->waiting);
    s->waiting = true;
    s->asked = what;
    s->hooks->ask(s->ctx, s, what);
}

static void check_errors(struct smtp_session *s)
{
    if (s->st != SMTP_ST_CLOSED && s->p.max_errors && s->errors >= s->p.max_errors) {
        log_kv(MW_LOG_INFO, "limit", "session", s->p.session_id, "limit", "max_errors", NULL);
        smtp_close(s, 421, "4.7.0", "Error: too many errors, closing connection");
    }
}

static void process_command_input(struct smtp_session *s)
{
    const char *p = buf_ptr(&s->in);
    size_t avail = buf_size(&s->in);
    const char *lf = memchr(p, '\n', avail);

    if (lf == NULL) {
        if (avail >= s->p.max_line) {
            s->skipping_line = true;
            buf_consume(&s->in, avail);
        }
        return;
    }
    size_t n = (size_t)(lf - p) + 1;
    if (s->skipping_line || n > s->p.max_line) {
        s->skipping_line = false;
        buf_consume(&s->in, n);
        if (s->in_auth) {
            s->in_auth = false; /* an overlong response ends the exchange */
            sasl_clear(&s->sasl);
        }
        smtp_log_reject(s, "-", 500, "line too long");
        smtp_reply(s, 500, "5.5.2", "Error: line too long");
        return;
    }
    buf_reset(&s->line);
    buf_append(&s->line, p, n - 1);
    buf_consume(&s->in, n);
    smtp_command(s, buf_ptr(&s->line), buf_size(&s->line));
}

static void process(struct smtp_session *s)
{
    if (s->in_process)
        return;
    s->in_process = true;
    while (!s->waiting && s->st != SMTP_ST_CLOSED && buf_size(&s->in) > 0) {
        size_t before = buf_size(&s->in);
        const char *p = buf_ptr(&s->in);
        if (s->st == SMTP_ST_DATA) {
            bool done;
            size_t used = data_decode(&s->dec, p, before, &s->txn.body, &done);
            buf_consume(&s->in, used);
            if (done)
                smtp_data_done(s);
        } else if (s->st == SMTP_ST_BDAT) {
            size_t take = before < s->bdat_left ? before : (size_t)s->bdat_left;
            if (!s->bdat_discard)
                data_chunk(&s->dec, p, take, &s->txn.body);
            buf_consume(&s->in, take);
            s->bdat_left -= take;
            if (s->bdat_left == 0)
                smtp_chunk_done(s);
        } else {
            process_command_input(s);
            if (buf_size(&s->in) == before)
                break; /* incomplete line */
        }
        check_errors(s);
    }
    if (s->st == SMTP_ST_CLOSED)
        buf_reset(&s->in);
    s->in_process = false;
}

void smtp_session_feed(struct smtp_session *s, const void *p, size_t n)
{
    if (s->st == SMTP_ST_CLOSED || s->tls_starting)
        return;
    buf_append(&s->in, p, n);
    process(s);
}

struct buf *smtp_session_output(struct smtp_session *s)
{
    return &s->out;
}

void smtp_session_answer(struct smtp_session *s, int code, const char *enh, const char *text)
{
    assert(s->waiting);
    s->waiting = false;
    smtp_answered(s, s->asked, code, enh, text);
    if (s->shutdown_pending) {
        smtp_close(s, 421, "4.3.2", "Service shutting down, closing connection");
        return;
    }
    check_errors(s);
    process(s);
}

void smtp_session_tls_started(struct smtp_session *s)
{
    assert(s->waiting && s->asked == SMTP_ASK_STARTTLS);
    s->waiting = false;
    s->tls_starting = false;
    s->tls_active = true;
    buf_reset(&s->in);
    s->skipping_line = false;
    /* RFC 3207 4.2: discard all knowledge obtained before TLS. */
    smtp_txn_reset(s);
    xfree(s->helo);
    s->helo = NULL;
    s->esmtp = false;
    smtp_enter_state(s, SMTP_ST_INIT);
    if (s->shutdown_pending)
        smtp_close(s, 421, "4.3.2", "Service shutting down, closing connection");
}

bool smtp_session_tls_active(const struct smtp_session *s)
{
    return s->tls_active;
}

void smtp_session_shutdown(struct smtp_session *s)
{
    if (s->waiting) {
        s->shutdown_pending = true;
        return;
    }
    smtp_close(s, 421, "4.3.2", "Service shutting down, closing connection");
}

void smtp_session_timeout(struct smtp_session *s)
{
    if (s->waiting)
        return; /* the daemon is the slow one; not the client's fault */
    smtp_close(s, 421, "4.4.2", "Error: timeout exceeded");
}

bool smtp_session_waiting(const struct smtp_session *s) { return s->waiting; }
bool smtp_session_closing(const struct smtp_session *s) { return s->st == SMTP_ST_CLOSED; }
enum smtp_state smtp_session_state(const struct smtp_session *s) { return s->st; }
const struct smtp_txn *smtp_session_txn(const struct smtp_session *s) { return &s->txn; }
const char *smtp_session_helo(const struct smtp_session *s) { return s->helo ? s->helo : ""; }
const char *smtp_session_auth_user(const struct smtp_session *s) { return s->auth_user; }

bool smtp_session_auth_request(const struct smtp_session *s, struct smtp_auth_request *out)
{
    if (!s->waiting || s->asked != SMTP_ASK_AUTH || s->sasl.user == NULL)
        return false;
    out->mech = sasl_mech_name(s->sasl.mech);
    out->user = s->sasl.user;
    out->pass = s->sasl.pass;
    return true;
}
size_t smtp_session_backlog(const struct smtp_session *s) { return buf_size(&s->in); }

const struct mail_addr *smtp_session_pending_rcpt(const struct smtp_session *s)
{
    return s->have_rcpt ? &s->rcpt : NULL;
}

const char *smtp_session_protocol(const struct smtp_session *s)
{
    /* AUTH implies TLS here, so the "A" forms always carry the "S". */
    if (s->txn.smtputf8)
        return s->auth_user ? "UTF8SMTPSA" : s->tls_active ? "UTF8SMTPS" : "UTF8SMTP";
    if (!s->esmtp)
        return "SMTP";
    return s->auth_user ? "ESMTPSA" : s->tls_active ? "ESMTPS" : "ESMTP";
}
