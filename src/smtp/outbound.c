/*
 * outbound.c - the outbound SMTP client state machine; see outbound.h.
 */
#include "smtp/outbound.h"

#include <stdio.h>
#include <string.h>

#include "core/base64.h"
#include "core/xmalloc.h"

enum phase {
    P_GREETING, P_EHLO, P_HELO, P_STARTTLS, P_TLS, P_AUTH, P_AUTH_USER, P_AUTH_PASS,
    P_READY, P_TXN, P_SENT, P_QUIT, P_CLOSED,
};

enum cmd { C_RSET, C_MAIL, C_RCPT, C_DATA, C_DOT, C_BDAT };

#define MAX_EXPECT 4096   /* commands in flight: RSET, MAIL, RCPTs, DATA */

struct expect {
    enum cmd cmd;
    size_t rcpt;
};

struct smtpo {
    struct smtpo_opts o;
    char *helo;
    enum phase phase;
    enum smtpo_error error;
    char why[300];
    struct smtp_reply_parser parser;
    struct buf out;
    struct smtp_ext ext;
    bool tls;
    /* the transaction */
    const struct smtpo_msg *msg;
    struct smtpo_result *res;
    size_t nres;
    bool *accepted;
    size_t naccepted;
    bool mail_failed;
    bool dirty;               /* the last transaction did not end cleanly: RSET first */
    struct expect *exp;       /* replies awaited, in order */
    size_t nexp, hexp;        /* count, index of the head */
    struct expect *todo;      /* commands not yet sent (no PIPELINING) */
    size_t ntodo, htodo;
    struct smtpo_result session_reply;
    bool have_session_reply;
};

static void result_from_reply(struct smtpo_result *r, const struct smtp_reply *rep)
{
    memset(r, 0, sizeof(*r));
    r->code = rep->code;
    snprintf(r->enhanced, sizeof(r->enhanced), "%s", rep->enhanced);
    size_t k = 0;
    for (size_t i = 0; i < rep->nlines && k + 1 < sizeof(r->text); i++) {
        size_t n;
        const char *p = smtp_reply_line(rep, i, &n);
        if (i > 0 && k + 1 < sizeof(r->text))
            r->text[k++] = ' ';
        for (size_t j = 0; j < n && k + 1 < sizeof(r->text); j++) {
            unsigned char ch = (unsigned char)p[j];
            r->text[k++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
        }
    }
    r->text[k] = '\0';
}

static void result_local(struct smtpo_result *r, unsigned code, const char *enh, const char *text)
{
    memset(r, 0, sizeof(*r));
    r->code = code;
    r->local = true;
    snprintf(r->enhanced, sizeof(r->enhanced), "%s", enh);
    snprintf(r->text, sizeof(r->text), "%s", text);
}

struct smtpo *smtpo_new(const struct smtpo_opts *o)
{
    struct smtpo *s = xcalloc(1, sizeof(*s));
    s->o = *o;
    s->helo = xstrdup(o->helo);
    s->o.helo = s->helo;
    struct smtpo_timeouts *t = &s->o.timeouts;
    if (!t->greeting) t->greeting = 300;
    if (!t->mail) t->mail = 300;
    if (!t->rcpt) t->rcpt = 300;
    if (!t->data_init) t->data_init = 120;
    if (!t->data_block) t->data_block = 180;
    if (!t->data_end) t->data_end = 600;
    smtp_reply_parser_init(&s->parser);
    s->phase = P_GREETING;
    return s;
}

static void txn_clear(struct smtpo *s)
{
    xfree(s->accepted);
    s->accepted = NULL;
    xfree(s->exp);
    s->exp = NULL;
    xfree(s->todo);
    s->todo = NULL;
    s->nexp = s->hexp = s->ntodo = s->htodo = 0;
    s->naccepted = 0;
    s->mail_failed = false;
}

void smtpo_free(struct smtpo *s)
{
    if (s == NULL)
        return;
    txn_clear(s);
    xfree(s->res);
    smtp_reply_parser_reset(&s->parser);
    buf_free(&s->out);
    xfree(s->helo);
    xfree(s);
}

/* Every recipient without an outcome gets a local temporary failure. */
static void fill_open_results(struct smtpo *s)
{
    if (s->res == NULL)
        return;
    for (size_t i = 0; i < s->nres; i++)
        if (s->res[i].code == 0)
            result_local(&s->res[i], 451, "4.4.2", s->why);
}

static void close_with(struct smtpo *s, enum smtpo_error e, const char *why)
{
    if (s->phase == P_CLOSED)
        return;
    bool in_txn = s->phase == P_TXN;
    s->error = e;
    snprintf(s->why, sizeof(s->why), "%s", why);
    s->phase = P_CLOSED;
    if (in_txn)
        fill_open_results(s);
    txn_clear(s);
}

static void session_reply(struct smtpo *s, const struct smtp_reply *r)
{
    result_from_reply(&s->session_reply, r);
    s->have_session_reply = true;
}

static void send_line(struct smtpo *s, const char *line)
{
    buf_append_str(&s->out, line);
    buf_append_str(&s->out, "\r\n");
}

static void send_ehlo(struct smtpo *s, const char *verb)
{
    buf_printf(&s->out, "%s %s\r\n", verb, s->helo);
}

static bool has_8bit(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80)
            return true;
    return false;
}

static void expect(struct smtpo *s, enum cmd c, size_t rcpt)
{
    s->exp[s->nexp].cmd = c;
    s->exp[s->nexp].rcpt = rcpt;
    s->nexp++;
}

/* Write one command of the transaction and expect its reply. */
static void emit(struct smtpo *s, enum cmd c, size_t rcpt)
{
    const struct smtpo_msg *m = s->msg;
    switch (c) {
    case C_RSET:
        send_line(s, "RSET");
        break;
    case C_MAIL: {
        buf_printf(&s->out, "MAIL FROM:<%s>", m->from);
        if (s->ext.size)
            buf_printf(&s->out, " SIZE=%zu", m->body_len);
        if (s->ext.eightbitmime && has_8bit(m->body, m->body_len))
            buf_append_str(&s->out, " BODY=8BITMIME");
        bool utf8 = has_8bit(m->from, strlen(m->from));
        for (size_t i = 0; i < m->nrcpt && !utf8; i++)
            utf8 = has_8bit(m->rcpts[i], strlen(m->rcpts[i]));
        if (utf8)
            buf_append_str(&s->out, " SMTPUTF8");
        if (s->ext.dsn && (m->ret == 'F' || m->ret == 'H'))
            buf_append_str(&s->out, m->ret == 'F' ? " RET=FULL" : " RET=HDRS");
        if (s->ext.dsn && m->envid) {
            buf_append_str(&s->out, " ENVID=");
            smtp_xtext_encode(m->envid, &s->out);
        }
        buf_append_str(&s->out, "\r\n");
        break;
    }
    case C_RCPT:
        buf_printf(&s->out, "RCPT TO:<%s>", m->rcpts[rcpt]);
        if (s->ext.dsn) {
            unsigned nt = m->notify ? m->notify[rcpt] : 0;
            if (nt) {
                buf_append_str(&s->out, " NOTIFY=");
                smtp_dsn_notify_format(nt, &s->out);
            }
            const char *oc = m->orcpt ? m->orcpt[rcpt] : NULL;
            const char *semi = oc ? strchr(oc, ';') : NULL;
            if (semi) {
                buf_printf(&s->out, " ORCPT=%.*s;", (int)(semi - oc), oc);
                smtp_xtext_encode(semi + 1, &s->out);
            } else if (!has_8bit(m->rcpts[rcpt], strlen(m->rcpts[rcpt]))) {
                buf_append_str(&s->out, " ORCPT=rfc822;");
                smtp_xtext_encode(m->rcpts[rcpt], &s->out);
            }
        }
        buf_append_str(&s->out, "\r\n");
        break;
    case C_DATA:
        send_line(s, "DATA");
        break;
    case C_DOT:
        break;
    case C_BDAT: {
        /* CHUNKING (RFC 3030): the message in one chunk, its length
         * exact, nothing stuffed; a pipelined transaction whose every
         * RCPT failed still sends the chunk (its bytes are counted) */
        struct buf body = { 0 };
        smtp_crlf_only(m->body, m->body_len, &body);
        buf_printf(&s->out, "BDAT %zu LAST\r\n", buf_size(&body));
        buf_append(&s->out, buf_ptr(&body), buf_size(&body));
        buf_free(&body);
        break;
    }
    }
    expect(s, c, rcpt);
}

static void todo(struct smtpo *s, enum cmd c, size_t rcpt)
{
    if (s->ext.pipelining) {
        emit(s, c, rcpt);
        return;
    }
    s->todo[s->ntodo].cmd = c;
    s->todo[s->ntodo].rcpt = rcpt;
    s->ntodo++;
}

/* Without PIPELINING: the next command once the last one is answered. */
static void send_next(struct smtpo *s)
{
    if (s->ext.pipelining || s->hexp < s->nexp)
        return;
    while (s->htodo < s->ntodo) {
        struct expect t = s->todo[s->htodo++];
        if (t.cmd == C_RCPT && s->mail_failed)
            continue;
        if ((t.cmd == C_DATA || t.cmd == C_BDAT) && (s->mail_failed || s->naccepted == 0))
            continue;
        emit(s, t.cmd, t.rcpt);
        return;
    }
}

static void txn_end(struct smtpo *s, bool clean)
{
    s->dirty = !clean;
    for (size_t i = 0; i < s->nres; i++)
        if (s->res[i].code == 0)
            result_local(&s->res[i], 451, "4.4.2", "no reply for this recipient");
    txn_clear(s);
    s->phase = P_SENT;
}

static void send_body(struct smtpo *s)
{
    struct smtp_data_state st = { 0 };
    if (s->naccepted > 0 && !s->mail_failed)
        smtp_data_encode(s->msg->body, s->msg->body_len, &st, &s->out);
    smtp_data_end(&st, &s->out);
    expect(s, C_DOT, 0);
}

static void txn_reply(struct smtpo *s, const struct smtp_reply *r)
{
    if (s->hexp >= s->nexp) {
        close_with(s, SMTPO_EPROTO, "a reply nobody asked for");
        return;
    }
    struct expect e = s->exp[s->hexp++];
    unsigned cls = smtp_reply_class(r);
    struct smtpo_result res;
    result_from_reply(&res, r);
    switch (e.cmd) {
    case C_RSET:
        if (cls != 2) {
            close_with(s, SMTPO_EPROTO, "RSET refused");
            return;
        }
        break;
    case C_MAIL:
        if (cls != 2) {
            s->mail_failed = true;
            for (size_t i = 0; i < s->nres; i++)
                s->res[i] = res;
        }
        break;
    case C_RCPT:
        if (s->mail_failed)
            break;
        if (cls == 2) {
            s->accepted[e.rcpt] = true;
            s->naccepted++;
        } else {
            s->res[e.rcpt] = res;
        }
        break;
    case C_DATA:
        if (r->code == 354) {
            send_body(s);
            return;
        }
        if (!s->mail_failed)
            for (size_t i = 0; i < s->nres; i++)
                if (s->accepted[i])
                    s->res[i] = res;
        txn_end(s, false);
        return;
    case C_DOT:
    case C_BDAT:
        if (s->naccepted > 0 && !s->mail_failed) {
            for (size_t i = 0; i < s->nres; i++)
                if (s->accepted[i])
                    s->res[i] = res;
            txn_end(s, true);
        } else {
            txn_end(s, false);
        }
        return;
    }
    if (s->hexp >= s->nexp && s->htodo >= s->ntodo) {
        /* Everything answered and DATA never went (MAIL or every RCPT
         * refused, without PIPELINING). */
        txn_end(s, false);
        return;
    }
    send_next(s);
    if (s->hexp >= s->nexp)
        txn_end(s, false);
}

/* EHLO is done (and TLS, if there is to be any): authenticate, or ready. */
static void after_ehlo(struct smtpo *s)
{
    if (s->o.require_tls && !s->tls) {
        close_with(s, SMTPO_ETLS, "TLS is required and the peer does not offer STARTTLS");
        send_line(s, "QUIT");
        return;
    }
    if (s->o.auth_user == NULL) {
        s->phase = P_READY;
        return;
    }
    if (!s->tls) {
        close_with(s, SMTPO_ETLS, "credentials are only sent inside TLS");
        send_line(s, "QUIT");
        return;
    }
    if (s->ext.auth_mechs & SMTP_AUTH_PLAIN) {
        struct buf raw = { 0 }, enc = { 0 };
        buf_append_byte(&raw, '\0');
        buf_append_str(&raw, s->o.auth_user);
        buf_append_byte(&raw, '\0');
        buf_append_str(&raw, s->o.auth_pass ? s->o.auth_pass : "");
        b64_encode(buf_ptr(&raw), buf_size(&raw), &enc);
        buf_printf(&s->out, "AUTH PLAIN %s\r\n", buf_ptr(&enc));
        explicit_bzero(raw.data, buf_size(&raw));
        explicit_bzero(enc.data, buf_size(&enc));
        buf_free(&raw);
        buf_free(&enc);
        s->phase = P_AUTH;
    } else if (s->ext.auth_mechs & SMTP_AUTH_LOGIN) {
        send_line(s, "AUTH LOGIN");
        s->phase = P_AUTH_USER;
    } else {
        close_with(s, SMTPO_EAUTH, "the peer offers no AUTH mechanism we can use");
        send_line(s, "QUIT");
    }
}

static void send_b64_line(struct smtpo *s, const char *v)
{
    struct buf enc = { 0 };
    b64_encode(v, strlen(v), &enc);
    buf_printf(&s->out, "%s\r\n", buf_ptr(&enc));
    explicit_bzero(enc.data, buf_size(&enc));
    buf_free(&enc);
}

static void auth_refused(struct smtpo *s, const struct smtp_reply *r)
{
    session_reply(s, r);
    close_with(s, SMTPO_EAUTH, "authentication refused");
    send_line(s, "QUIT");
}

static void on_reply(struct smtpo *s, const struct smtp_reply *r)
{
    unsigned cls = smtp_reply_class(r);
    switch (s->phase) {
    case P_GREETING:
        if (r->code != 220) {
            session_reply(s, r);
            close_with(s, SMTPO_EGREETING, "the greeting was not 220");
            send_line(s, "QUIT");
            return;
        }
        send_ehlo(s, "EHLO");
        s->phase = P_EHLO;
        return;
    case P_EHLO:
        if (cls == 2) {
            smtp_ext_parse(r, &s->ext);
            if ((s->o.starttls || s->o.require_tls) && s->ext.starttls && !s->tls) {
                send_line(s, "STARTTLS");
                s->phase = P_STARTTLS;
            } else {
                after_ehlo(s);
            }
            return;
        }
        session_reply(s, r);
        if (cls == 5) {
            send_ehlo(s, "HELO");
            s->phase = P_HELO;
            return;
        }
        close_with(s, SMTPO_EHELO, "EHLO refused");
        send_line(s, "QUIT");
        return;
    case P_HELO:
        if (cls == 2) {
            memset(&s->ext, 0, sizeof(s->ext));
            after_ehlo(s);
            return;
        }
        session_reply(s, r);
        close_with(s, SMTPO_EHELO, "EHLO and HELO refused");
        send_line(s, "QUIT");
        return;
    case P_STARTTLS:
        if (r->code == 220) {
            s->phase = P_TLS;
        } else {
            /* Opportunistic: a peer that will not do TLS gets the mail in
             * clear text, as it would without STARTTLS offered (unless TLS
             * is required: after_ehlo leaves then). */
            session_reply(s, r);
            after_ehlo(s);
        }
        return;
    case P_AUTH_USER:
    case P_AUTH_PASS:
        if (r->code == 334) {
            send_b64_line(s, s->phase == P_AUTH_USER ? s->o.auth_user
                                                     : (s->o.auth_pass ? s->o.auth_pass : ""));
            s->phase = s->phase == P_AUTH_USER ? P_AUTH_PASS : P_AUTH;
            return;
        }
        auth_refused(s, r);
        return;
    case P_AUTH:
        if (r->code == 235)
            s->phase = P_READY;
        else
            auth_refused(s, r);
        return;
    case P_TXN:
        txn_reply(s, r);
        return;
    case P_QUIT:
        s->phase = P_CLOSED;
        return;
    case P_TLS:
    case P_READY:
    case P_SENT:
    case P_CLOSED:
        close_with(s, SMTPO_EPROTO, "a reply nobody asked for");
        return;
    }
}

size_t smtpo_input(struct smtpo *s, const char *p, size_t n)
{
    if (n == 0) {
        if (s->phase == P_QUIT)
            s->phase = P_CLOSED;
        else
            close_with(s, SMTPO_ECLOSED, "the peer closed the connection");
        return 0;
    }
    size_t off = 0;
    while (off < n) {
        if (s->phase == P_CLOSED)
            return n;   /* nothing more is read from a closed session */
        if (s->phase == P_TLS || s->phase == P_READY || s->phase == P_SENT) {
            /* e.g. bytes after the 220 to STARTTLS, before the handshake:
             * never taken as the TLS peer's (response injection) */
            close_with(s, SMTPO_EPROTO, "the peer sent bytes nobody asked for");
            return n;
        }
        struct smtp_reply r;
        size_t used = 0;
        int rc = smtp_reply_feed(&s->parser, p + off, n - off, &used, &r);
        off += used;
        if (rc == SMTP_REPLY_MORE)
            break;
        if (rc < 0) {
            char why[128];
            snprintf(why, sizeof(why), "not an SMTP reply: %s", smtp_reply_strerror(rc));
            close_with(s, SMTPO_EPROTO, why);
            return n;
        }
        on_reply(s, &r);
        smtp_reply_free(&r);
    }
    return off;
}

struct buf *smtpo_output(struct smtpo *s)
{
    return &s->out;
}

enum smtpo_state smtpo_state(const struct smtpo *s)
{
    switch (s->phase) {
    case P_TLS:
        return SMTPO_TLS;
    case P_READY:
        return SMTPO_READY;
    case P_SENT:
        return SMTPO_SENT;
    case P_CLOSED:
        return SMTPO_CLOSED;
    default:
        return SMTPO_WAIT;
    }
}

unsigned smtpo_timeout(const struct smtpo *s)
{
    const struct smtpo_timeouts *t = &s->o.timeouts;
    if (s->phase == P_GREETING)
        return t->greeting;
    if (s->phase == P_TXN && s->hexp < s->nexp) {
        switch (s->exp[s->hexp].cmd) {
        case C_RCPT:
            return t->rcpt;
        case C_DATA:
            return t->data_init;
        case C_DOT:
        case C_BDAT:
            return t->data_end;
        default:
            return t->mail;
        }
    }
    return t->mail;
}

void smtpo_tls_done(struct smtpo *s)
{
    if (s->phase != P_TLS)
        return;
    s->tls = true;
    memset(&s->ext, 0, sizeof(s->ext));   /* forget what was said in clear text */
    send_ehlo(s, "EHLO");
    s->phase = P_EHLO;
}

void smtpo_tls_failed(struct smtpo *s)
{
    close_with(s, SMTPO_ETLS, "the TLS handshake failed");
}

bool smtpo_tls_active(const struct smtpo *s)
{
    return s->tls;
}

void smtpo_send(struct smtpo *s, const struct smtpo_msg *m)
{
    if (s->phase != P_READY)
        return;
    s->msg = m;
    xfree(s->res);
    s->nres = m->nrcpt;
    s->res = xcalloc(m->nrcpt ? m->nrcpt : 1, sizeof(*s->res));
    /* What the peer cannot take is refused here, before any byte goes. */
    const char *refuse = NULL, *enh = NULL;
    unsigned code = 554;
    bool utf8 = has_8bit(m->from, strlen(m->from));
    for (size_t i = 0; i < m->nrcpt && !utf8; i++)
        utf8 = has_8bit(m->rcpts[i], strlen(m->rcpts[i]));
    if (s->ext.size && s->ext.size_max > 0 && m->body_len > s->ext.size_max) {
        code = 552, enh = "5.3.4";
        refuse = "the message is larger than the receiving server's SIZE limit";
    } else if (utf8 && !s->ext.smtputf8) {
        code = 553, enh = "5.6.7";
        refuse = "the receiving server does not offer SMTPUTF8 for UTF-8 addresses";
    } else if (!s->ext.eightbitmime && has_8bit(m->body, m->body_len)) {
        code = 554, enh = "5.6.3";
        refuse = "the message has 8-bit data and the receiving server does not offer 8BITMIME";
    }
    if (refuse != NULL) {
        for (size_t i = 0; i < m->nrcpt; i++)
            result_local(&s->res[i], code, enh, refuse);
        s->phase = P_SENT;
        return;
    }
    size_t cap = m->nrcpt + 4;
    if (cap > MAX_EXPECT + 4)
        cap = MAX_EXPECT + 4;
    s->exp = xcalloc(cap, sizeof(*s->exp));
    s->todo = xcalloc(cap, sizeof(*s->todo));
    s->accepted = xcalloc(m->nrcpt ? m->nrcpt : 1, sizeof(bool));
    s->phase = P_TXN;
    if (s->dirty)
        todo(s, C_RSET, 0);
    todo(s, C_MAIL, 0);
    for (size_t i = 0; i < m->nrcpt && i < MAX_EXPECT; i++)
        todo(s, C_RCPT, i);
    todo(s, s->ext.chunking ? C_BDAT : C_DATA, 0);
    send_next(s);
}

const struct smtpo_result *smtpo_results(const struct smtpo *s, size_t *n)
{
    *n = s->nres;
    return s->res;
}

void smtpo_next(struct smtpo *s)
{
    if (s->phase == P_SENT)
        s->phase = P_READY;
}

void smtpo_quit(struct smtpo *s)
{
    if (s->phase == P_CLOSED)
        return;
    if (s->phase == P_TXN)
        close_with(s, SMTPO_ECLOSED, "the session was ended in a transaction");
    send_line(s, "QUIT");
    s->phase = P_QUIT;
}

void smtpo_abort(struct smtpo *s, const char *why)
{
    close_with(s, SMTPO_ECLOSED, why);
}

enum smtpo_error smtpo_error(const struct smtpo *s)
{
    return s->error;
}

const char *smtpo_why(const struct smtpo *s)
{
    return s->why;
}

const struct smtpo_result *smtpo_session_reply(const struct smtpo *s)
{
    return s->have_session_reply ? &s->session_reply : NULL;
}

const struct smtp_ext *smtpo_ext(const struct smtpo *s)
{
    return &s->ext;
}
