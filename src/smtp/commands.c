/*
 * commands.c - the SMTP command table and its handlers.
 *
 * One table: name, flags, handler. A handler checks state first, then
 * limits, then syntax, and either replies or asks the daemon. Reset scopes
 * follow the protocol: EHLO/HELO and RSET end the transaction, the end of a
 * message (accepted or not) ends it too.
 */
#include "smtp/session_int.h"

#include <string.h>

#include "core/log.h"
#include "core/str.h"
#include "core/xmalloc.h"
#include "smtp/ext.h"

#define CMD_NOARGS 0x1   /* takes no argument */
#define CMD_PRE_TLS 0x2  /* allowed before TLS where TLS is required (RFC 6409) */

struct smtp_cmd {
    const char *name;
    unsigned flags;
    void (*handler)(struct smtp_session *s, const char *args, size_t n);
};

static void ready_or_init(struct smtp_session *s)
{
    smtp_enter_state(s, s->helo ? SMTP_ST_READY : SMTP_ST_INIT);
}

static bool need_helo(struct smtp_session *s, const char *cmd)
{
    if (s->st != SMTP_ST_INIT)
        return false;
    smtp_log_reject(s, cmd, 503, "no HELO");
    smtp_reply(s, 503, "5.5.1", "Error: send HELO/EHLO first");
    return true;
}

/* Returns false after refusing the argument (the only reply sent). */
static bool do_helo_common(struct smtp_session *s, const char *args, size_t n, bool esmtp)
{
    /* Some clients add text after the name; the name is the first token. */
    size_t tok = 0;
    while (tok < n && args[tok] != ' ')
        tok++;
    if (!addr_helo_ok(args, tok)) {
        smtp_log_reject(s, esmtp ? "EHLO" : "HELO", 501, "bad hostname");
        smtp_reply(s, 501, "5.5.4", "Syntax: %s domain or address literal", esmtp ? "EHLO" : "HELO");
        return false;
    }
    smtp_txn_reset(s);
    xfree(s->helo);
    s->helo = xmemdup0(args, tok);
    s->esmtp = esmtp;
    smtp_enter_state(s, SMTP_ST_READY);
    return true;
}

static void cmd_helo(struct smtp_session *s, const char *args, size_t n)
{
    if (do_helo_common(s, args, n, false))
        buf_printf(&s->out, "250 %s\r\n", s->p.hostname);
}

/* AUTH is advertised (and so its MAIL parameter understood, RFC 4954 5)
 * only inside TLS on a listener that has it. */
static bool auth_offered(const struct smtp_session *s)
{
    return s->p.auth && s->tls_active;
}

static void cmd_ehlo(struct smtp_session *s, const char *args, size_t n)
{
    if (!do_helo_common(s, args, n, true))
        return;
    buf_printf(&s->out,
               "250-%s\r\n"
               "250-PIPELINING\r\n"
               "250-SIZE %llu\r\n"
               "250-8BITMIME\r\n"
               "250-SMTPUTF8\r\n"
               "250-ENHANCEDSTATUSCODES\r\n"
               "250-DSN\r\n"
               "%s%s"
               "250 CHUNKING\r\n",
               s->p.hostname, (unsigned long long)s->p.max_message,
               s->p.starttls && !s->tls_active ? "250-STARTTLS\r\n" : "",
               auth_offered(s) ? "250-AUTH PLAIN LOGIN\r\n" : "");
}

/* Skip "FROM:" / "TO:" (case-insensitive) and any spaces after it. */
static bool skip_keyword(const char **a, size_t *n, const char *kw)
{
    if (!str_iprefix(*a, *n, kw))
        return false;
    size_t k = strlen(kw);
    while (k < *n && (*a)[k] == ' ')
        k++;
    *a += k;
    *n -= k;
    return true;
}

/* Next ESMTP parameter: keyword[=value], separated by spaces. */
struct esmtp_param {
    const char *key, *val;
    size_t klen, vlen;
    bool has_val;
};

static int next_param(const char **a, size_t *n, struct esmtp_param *p)
{
    size_t i = 0;
    while (i < *n && (*a)[i] == ' ')
        i++;
    if (i == *n)
        return 0;
    size_t start = i;
    while (i < *n && (*a)[i] != ' ')
        i++;
    const char *tok = *a + start;
    size_t len = i - start;
    *a += i;
    *n -= i;
    const char *eq = memchr(tok, '=', len);
    p->key = tok;
    p->klen = eq ? (size_t)(eq - tok) : len;
    p->has_val = eq != NULL;
    p->val = eq ? eq + 1 : NULL;
    p->vlen = eq ? len - p->klen - 1 : 0;
    if (p->klen == 0)
        return -1;
    for (size_t k = 0; k < p->klen; k++)
        if (!ascii_alpha(p->key[k]) && !ascii_digit(p->key[k]) && p->key[k] != '-')
            return -1;
    for (size_t k = 0; k < p->vlen; k++) {
        unsigned char c = (unsigned char)p->val[k];
        if (c < 33 || c > 126 || c == '=')
            return -1;
    }
    return 1;
}

static void mail_syntax(struct smtp_session *s, int code, const char *enh, const char *why)
{
    smtp_log_reject(s, "MAIL", code, why);
    smtp_reply(s, code, enh, "Error: %s", why);
    smtp_txn_reset(s);
}

static void cmd_mail(struct smtp_session *s, const char *args, size_t n)
{
    if (need_helo(s, "MAIL"))
        return;
    if (s->st != SMTP_ST_READY) {
        smtp_log_reject(s, "MAIL", 503, "nested MAIL");
        smtp_reply(s, 503, "5.5.1", "Error: nested MAIL command");
        return;
    }
    if (!skip_keyword(&args, &n, "FROM:")) {
        smtp_log_reject(s, "MAIL", 501, "syntax");
        smtp_reply(s, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
        return;
    }
    struct mail_addr from;
    size_t used;
    int r = addr_parse_path(args, n, ADDR_ALLOW_NULL | ADDR_UTF8, &from, &used);
    if (r < 0) {
        smtp_log_reject(s, "MAIL", 501, addr_strerror(r));
        smtp_reply(s, 501, "5.1.7", "Error: bad sender address syntax");
        return;
    }
    s->txn.from = from;
    args += used;
    n -= used;
    if (n > 0 && args[0] != ' ') {
        mail_syntax(s, 501, "5.5.4", "bad sender address syntax");
        return;
    }

    struct esmtp_param p;
    bool seen_size = false, seen_body = false, seen_utf8 = false, seen_auth = false;
    bool seen_ret = false, seen_envid = false;
    while ((r = next_param(&args, &n, &p)) != 0) {
        if (r < 0) {
            mail_syntax(s, 501, "5.5.4", "bad MAIL parameter syntax");
            return;
        }
        if (str_ieq(p.key, p.klen, "SIZE") && !seen_size) {
            seen_size = true;
            /* size-value = 1*20DIGIT (RFC 1870): 20 digits may pass 2^64,
             * which is over any limit, not a syntax error. */
            uint64_t v;
            if (!p.has_val || !str_all_digits(p.val, p.vlen) || p.vlen > 20) {
                mail_syntax(s, 501, "5.5.4", "bad SIZE parameter");
                return;
            }
            if (str_to_u64(p.val, p.vlen, UINT64_MAX, &v) < 0 || v > s->p.max_message) {
                mail_syntax(s, 552, "5.3.4", "message size exceeds fixed maximum message size");
                return;
            }
            s->txn.declared_size = v;
        } else if (str_ieq(p.key, p.klen, "BODY") && !seen_body) {
            seen_body = true;
            if (p.has_val && str_ieq(p.val, p.vlen, "7BIT")) {
                s->txn.body_type = SMTP_BODY_7BIT;
            } else if (p.has_val && str_ieq(p.val, p.vlen, "8BITMIME")) {
                s->txn.body_type = SMTP_BODY_8BITMIME;
            } else {
                mail_syntax(s, 501, "5.5.4", "unsupported BODY type");
                return;
            }
        } else if (str_ieq(p.key, p.klen, "SMTPUTF8") && !seen_utf8) {
            seen_utf8 = true;
            if (p.has_val) {
                mail_syntax(s, 501, "5.5.4", "SMTPUTF8 takes no value");
                return;
            }
            s->txn.smtputf8 = true;
        } else if (str_ieq(p.key, p.klen, "AUTH") && !seen_auth && auth_offered(s)) {
            seen_auth = true;
            if (!p.has_val || smtp_auth_param(s, p.val, p.vlen) < 0) {
                mail_syntax(s, 501, "5.5.4", "bad AUTH parameter");
                return;
            }
        } else if (str_ieq(p.key, p.klen, "RET") && !seen_ret) {
            seen_ret = true;
            if (p.has_val && str_ieq(p.val, p.vlen, "FULL"))
                s->txn.ret = 'F';
            else if (p.has_val && str_ieq(p.val, p.vlen, "HDRS"))
                s->txn.ret = 'H';
            else {
                mail_syntax(s, 501, "5.5.4", "bad RET parameter (FULL or HDRS)");
                return;
            }
        } else if (str_ieq(p.key, p.klen, "ENVID") && !seen_envid) {
            seen_envid = true;
            struct buf d = { 0 };
            /* RFC 3461 4.4: at most 100 characters */
            if (!p.has_val || p.vlen > 100 || smtp_xtext_decode(p.val, p.vlen, &d) < 0 ||
                buf_size(&d) == 0) {
                buf_free(&d);
                mail_syntax(s, 501, "5.5.4", "bad ENVID parameter");
                return;
            }
            s->txn.envid = d.data;
        } else if (str_ieq(p.key, p.klen, "SIZE") || str_ieq(p.key, p.klen, "BODY") ||
                   str_ieq(p.key, p.klen, "SMTPUTF8") || str_ieq(p.key, p.klen, "RET") ||
                   str_ieq(p.key, p.klen, "ENVID") ||
                   (str_ieq(p.key, p.klen, "AUTH") && auth_offered(s))) {
            mail_syntax(s, 501, "5.5.4", "duplicate MAIL parameter");
            return;
        } else {
            mail_syntax(s, 555, "5.5.4", "unsupported MAIL parameter");
            return;
        }
    }
    if (s->txn.from.utf8 && !s->txn.smtputf8) {
        mail_syntax(s, 553, "5.6.7", "non-ASCII address requires SMTPUTF8");
        return;
    }
    smtp_ask(s, SMTP_ASK_MAIL);
}

static void cmd_rcpt(struct smtp_session *s, const char *args, size_t n)
{
    if (need_helo(s, "RCPT"))
        return;
    if (s->st != SMTP_ST_MAIL && s->st != SMTP_ST_RCPT) {
        smtp_log_reject(s, "RCPT", 503, "no MAIL");
        smtp_reply(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if (!skip_keyword(&args, &n, "TO:")) {
        smtp_log_reject(s, "RCPT", 501, "syntax");
        smtp_reply(s, 501, "5.5.4", "Syntax: RCPT TO:<address>");
        return;
    }
    struct mail_addr to;
    size_t used;
    unsigned flags = ADDR_ALLOW_POSTMASTER | (s->txn.smtputf8 ? ADDR_UTF8 : 0);
    int r = addr_parse_path(args, n, flags, &to, &used);
    if (r == ADDR_ENONASCII) {
        smtp_log_reject(s, "RCPT", 553, addr_strerror(r));
        smtp_reply(s, 553, "5.6.7", "Error: non-ASCII address requires SMTPUTF8");
        return;
    }
    if (r < 0) {
        smtp_log_reject(s, "RCPT", 501, addr_strerror(r));
        smtp_reply(s, 501, "5.1.3", "Error: bad recipient address syntax");
        return;
    }
    args += used;
    n -= used;
    struct esmtp_param p;
    struct smtp_rcpt_dsn dsn = { 0 };
    bool seen_orcpt = false;
    const char *bad = NULL;
    int code = 501;
    if (n > 0 && args[0] != ' ')
        bad = "bad RCPT parameter syntax";
    while (bad == NULL && (r = next_param(&args, &n, &p)) != 0) {
        if (r < 0) {
            bad = "bad RCPT parameter syntax";
        } else if (str_ieq(p.key, p.klen, "NOTIFY") && dsn.notify == 0) {
            dsn.notify = p.has_val ? smtp_dsn_notify_parse(p.val, p.vlen) : 0;
            if (dsn.notify == 0)
                bad = "bad NOTIFY parameter (NEVER, or SUCCESS, FAILURE, DELAY)";
        } else if (str_ieq(p.key, p.klen, "ORCPT") && !seen_orcpt) {
            /* RFC 3461 4.2: addr-type ";" xtext, at most 500 characters */
            seen_orcpt = true;
            const char *semi = p.has_val ? memchr(p.val, ';', p.vlen) : NULL;
            struct buf d = { 0 };
            if (semi == NULL || p.vlen > 500 || semi == p.val ||
                smtp_xtext_decode(semi + 1, p.vlen - (size_t)(semi + 1 - p.val), &d) < 0 ||
                buf_size(&d) == 0) {
                buf_free(&d);
                bad = "bad ORCPT parameter";
            } else {
                struct buf o = { 0 };
                buf_append(&o, p.val, (size_t)(semi - p.val + 1));
                buf_append(&o, buf_ptr(&d), buf_size(&d));
                buf_free(&d);
                dsn.orcpt = o.data;
            }
        } else if (str_ieq(p.key, p.klen, "NOTIFY") || str_ieq(p.key, p.klen, "ORCPT")) {
            bad = "duplicate RCPT parameter";
        } else {
            bad = "unsupported RCPT parameter";
            code = 555;
        }
    }
    if (bad != NULL) {
        addr_free(&to);
        xfree(dsn.orcpt);
        smtp_log_reject(s, "RCPT", code, bad);
        smtp_reply(s, code, "5.5.4", "Error: %s", bad);
        return;
    }
    if (s->txn.nrcpt >= s->p.max_rcpt) {
        addr_free(&to);
        xfree(dsn.orcpt);
        smtp_log_reject(s, "RCPT", 452, "too many recipients");
        smtp_reply_nocount(s, 452, "4.5.3", "Error: too many recipients");
        return;
    }
    s->rcpt = to;
    s->rcpt_dsn = dsn;
    s->have_rcpt = true;
    smtp_ask(s, SMTP_ASK_RCPT);
}

/* DATA and BDAT share these checks; returns false after replying. */
static bool txn_ready(struct smtp_session *s, const char *cmd, int *code, const char **enh,
                      const char **text)
{
    *code = 0;
    if (s->st == SMTP_ST_INIT) {
        *code = 503, *enh = "5.5.1", *text = "Error: send HELO/EHLO first";
    } else if (s->st == SMTP_ST_READY) {
        *code = 503, *enh = "5.5.1", *text = "Error: need MAIL command";
    } else if (s->st == SMTP_ST_MAIL) {
        *code = 554, *enh = "5.5.1", *text = "Error: no valid recipients";
    }
    if (*code)
        smtp_log_reject(s, cmd, *code, *text);
    return *code == 0;
}

static void cmd_data(struct smtp_session *s, const char *args, size_t n)
{
    int code;
    const char *enh, *text;
    if (!txn_ready(s, "DATA", &code, &enh, &text)) {
        smtp_reply(s, code, enh, "%s", text);
        return;
    }
    if (s->txn.bdat) {
        smtp_log_reject(s, "DATA", 503, "DATA after BDAT");
        smtp_reply(s, 503, "5.5.1", "Error: DATA not allowed after BDAT");
        return;
    }
    buf_printf(&s->out, "354 End data with <CR><LF>.<CR><LF>\r\n");
    data_begin(&s->dec, s->p.max_message);
    smtp_enter_state(s, SMTP_ST_DATA);
}

/* End of content (DATA terminator or BDAT LAST): reply for a failed
 * transfer, or ask the daemon to queue it. */
static void content_complete(struct smtp_session *s, const char *cmd)
{
    if (s->dec.too_big) {
        smtp_log_reject(s, cmd, 552, "message too big");
        smtp_reply(s, 552, "5.3.4", "Error: message size exceeds fixed maximum message size");
    } else if (s->dec.bad_newline || s->dec.nul) {
        smtp_log_reject(s, cmd, 550, s->dec.nul ? "NUL in message" : "bare CR or LF in message");
        smtp_reply(s, 550, "5.6.0",
                   "Error: message refused: %s (only CRLF line endings are accepted)",
                   s->dec.nul ? "NUL byte in message" : "bare CR or LF in message");
    } else {
        smtp_ask(s, SMTP_ASK_MESSAGE);
        return;
    }
    smtp_txn_reset(s);
    smtp_enter_state(s, SMTP_ST_READY);
}

void smtp_data_done(struct smtp_session *s)
{
    content_complete(s, "DATA");
}

void smtp_chunk_done(struct smtp_session *s)
{
    if (s->bdat_discard) {
        s->bdat_discard = false;
        smtp_enter_state(s, s->bdat_ret);
        smtp_reply(s, s->bdat_code, s->bdat_enh, "%s", s->bdat_text);
        return;
    }
    if (s->bdat_last) {
        data_chunk_end(&s->dec);
        content_complete(s, "BDAT");
        return;
    }
    smtp_enter_state(s, SMTP_ST_RCPT);
    if (data_failed(&s->dec)) {
        /* Refuse now; the client must not send more chunks (RFC 3030 4.2),
         * and any it sends are read and refused for want of a transaction. */
        content_complete(s, "BDAT");
        return;
    }
    smtp_reply(s, 250, "2.0.0", "Ok: %llu octets received", (unsigned long long)s->dec.size);
}

enum bdat_arg { BDAT_OK, BDAT_BAD_KEYWORD, BDAT_BAD_SIZE };

/* "BDAT" SP chunk-size [SP end-marker] (RFC 3030): chunk-size is 1*DIGIT,
 * so any number of leading zeros; extra spaces between and after the
 * tokens are tolerated. BDAT_BAD_KEYWORD still has a usable *size. */
static enum bdat_arg bdat_arg(const char *a, size_t n, uint64_t *size, bool *last)
{
    size_t i = 0;
    while (i < n && a[i] == ' ')
        i++;
    while (i + 1 < n && a[i] == '0' && ascii_digit(a[i + 1]))
        i++;
    size_t d = i;
    while (i < n && ascii_digit(a[i]))
        i++;
    if (str_to_u64(a + d, i - d, UINT64_MAX, size) < 0 || (i < n && a[i] != ' '))
        return BDAT_BAD_SIZE;
    while (i < n && a[i] == ' ')
        i++;
    size_t k = i;
    while (i < n && a[i] != ' ')
        i++;
    *last = i > k && str_ieq(a + k, i - k, "LAST");
    while (i < n && a[i] == ' ')
        i++;
    return i == n && (*last || i == k) ? BDAT_OK : BDAT_BAD_KEYWORD;
}

static void cmd_bdat(struct smtp_session *s, const char *args, size_t n)
{
    uint64_t size = 0;
    bool last = false;
    enum bdat_arg arg = bdat_arg(args, n, &size, &last);
    if (arg == BDAT_BAD_SIZE) {
        /* Without a size the chunk cannot be skipped: resynchronising
         * would mean executing message content as commands. */
        smtp_log_reject(s, "BDAT", 421, "bad chunk size");
        smtp_close(s, 421, "4.5.4", "Syntax: BDAT count [LAST]; cannot find the chunk's end, "
                                   "closing connection");
        return;
    }
    if (arg == BDAT_BAD_KEYWORD) {
        /* The size is known: skip the chunk, then refuse it. */
        smtp_log_reject(s, "BDAT", 501, "bad end marker");
        s->bdat_left = size;
        s->bdat_last = false;
        s->bdat_discard = true;
        s->bdat_ret = s->st;
        s->bdat_code = 501, s->bdat_enh = "5.5.4", s->bdat_text = "Syntax: BDAT count [LAST]";
        smtp_enter_state(s, SMTP_ST_BDAT);
        if (size == 0)
            smtp_chunk_done(s);
        return;
    }

    int code;
    const char *enh, *text;
    s->bdat_left = size;
    s->bdat_last = last;
    if (!txn_ready(s, "BDAT", &code, &enh, &text)) {
        s->bdat_discard = true;
        s->bdat_ret = s->st;
        s->bdat_code = code, s->bdat_enh = enh, s->bdat_text = text;
    } else {
        if (!s->txn.bdat) {
            s->txn.bdat = true;
            data_begin(&s->dec, s->p.max_message);
            s->dec.st = DATA_MID;
        }
        s->bdat_discard = false;
    }
    smtp_enter_state(s, SMTP_ST_BDAT);
    if (size == 0)
        smtp_chunk_done(s);
}

static void cmd_starttls(struct smtp_session *s, const char *args, size_t n)
{
    if (s->tls_active) {
        smtp_log_reject(s, "STARTTLS", 503, "TLS already active");
        smtp_reply(s, 503, "5.5.1", "Error: TLS already active");
        return;
    }
    if (!s->p.starttls) {
        smtp_log_reject(s, "STARTTLS", 502, "STARTTLS not offered");
        smtp_reply(s, 502, "5.5.1", "Error: STARTTLS not offered here");
        return;
    }
    if (s->st == SMTP_ST_MAIL || s->st == SMTP_ST_RCPT) {
        smtp_log_reject(s, "STARTTLS", 503, "inside a transaction");
        smtp_reply(s, 503, "5.5.1", "Error: MAIL transaction in progress");
        return;
    }
    smtp_reply(s, 220, "2.0.0", "Ready to start TLS");
    /* Anything the client sent after the command line was sent before
     * the handshake: it must never be executed (CVE-2011-0411 class). */
    s->tls_starting = true;
    buf_reset(&s->in);
    smtp_ask(s, SMTP_ASK_STARTTLS);
}

static void cmd_rset(struct smtp_session *s, const char *args, size_t n)
{
    smtp_txn_reset(s);
    ready_or_init(s);
    smtp_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(struct smtp_session *s, const char *args, size_t n)
{
    smtp_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_quit(struct smtp_session *s, const char *args, size_t n)
{
    smtp_reply(s, 221, "2.0.0", "Bye");
    smtp_enter_state(s, SMTP_ST_CLOSED);
}

static void cmd_vrfy(struct smtp_session *s, const char *args, size_t n)
{
    if (n == 0) {
        smtp_reply(s, 501, "5.5.4", "Syntax: VRFY address");
        return;
    }
    smtp_reply(s, 252, "2.1.5", "Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_expn(struct smtp_session *s, const char *args, size_t n)
{
    smtp_reply(s, 502, "5.5.1", "Error: EXPN not supported");
}

static void cmd_help(struct smtp_session *s, const char *args, size_t n)
{
    smtp_reply(s, 214, "2.0.0",
               "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY");
}

static const struct smtp_cmd commands[] = {
    { "EHLO", CMD_PRE_TLS, cmd_ehlo },
    { "HELO", CMD_PRE_TLS, cmd_helo },
    { "MAIL", 0, cmd_mail },
    { "RCPT", 0, cmd_rcpt },
    { "DATA", CMD_NOARGS, cmd_data },
    { "BDAT", 0, cmd_bdat },
    { "RSET", CMD_NOARGS | CMD_PRE_TLS, cmd_rset },
    { "NOOP", CMD_PRE_TLS, cmd_noop },
    { "QUIT", CMD_NOARGS | CMD_PRE_TLS, cmd_quit },
    { "STARTTLS", CMD_NOARGS | CMD_PRE_TLS, cmd_starttls },
    { "AUTH", 0, smtp_cmd_auth },
    { "VRFY", 0, cmd_vrfy },
    { "EXPN", 0, cmd_expn },
    { "HELP", 0, cmd_help },
};

void smtp_command(struct smtp_session *s, const char *line, size_t n)
{
    if (s->in_auth) {
        smtp_auth_response(s, line, n);
        return;
    }
    if (n == 0 || line[n - 1] != '\r') {
        smtp_log_reject(s, "-", 500, "bare LF");
        smtp_reply(s, 500, "5.5.2", "Error: command line must end with CRLF");
        return;
    }
    n--;
    for (size_t i = 0; i < n; i++) {
        if (line[i] == '\r' || line[i] == '\0') {
            smtp_log_reject(s, "-", 500, "CR or NUL in command");
            smtp_reply(s, 500, "5.5.2", "Error: invalid character in command");
            return;
        }
    }
    size_t vlen = 0;
    while (vlen < n && line[vlen] != ' ')
        vlen++;
    const char *args = line + vlen;
    size_t alen = n - vlen;
    if (alen > 0) {
        args++;
        alen--;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const struct smtp_cmd *c = &commands[i];
        if (!str_ieq(line, vlen, c->name))
            continue;
        if (s->p.tls_required && !s->tls_active && !(c->flags & CMD_PRE_TLS)) {
            smtp_log_reject(s, c->name, 530, "TLS required");
            /* A refused BDAT's chunk would otherwise be read as commands. */
            if (strcmp(c->name, "BDAT") == 0)
                smtp_close(s, 530, "5.7.0", "Must issue a STARTTLS command first; closing");
            else
                smtp_reply(s, 530, "5.7.0", "Must issue a STARTTLS command first");
            return;
        }
        if ((c->flags & CMD_NOARGS) && alen > 0) {
            smtp_log_reject(s, c->name, 501, "unexpected argument");
            smtp_reply(s, 501, "5.5.4", "Syntax: %s", c->name);
            return;
        }
        c->handler(s, args, alen);
        return;
    }
    smtp_log_reject(s, "-", 500, "unknown command");
    smtp_reply(s, 500, "5.5.2", "Error: command not recognized");
}

static bool same_rcpt(const struct mail_addr *a, const struct mail_addr *b)
{
    return strcmp(a->local, b->local) == 0 && strcmp(a->domain, b->domain) == 0;
}

void smtp_answered(struct smtp_session *s, enum smtp_ask what, int code, const char *enh,
                   const char *text)
{
    bool ok = code >= 200 && code < 300;
    smtp_reply(s, code, enh, "%s", text);
    switch (what) {
    case SMTP_ASK_MAIL:
        if (ok)
            smtp_enter_state(s, SMTP_ST_MAIL);
        else
            smtp_txn_reset(s);
        break;
    case SMTP_ASK_RCPT:
        if (ok) {
            bool dup = false;
            for (size_t i = 0; i < s->txn.nrcpt && !dup; i++)
                dup = same_rcpt(&s->txn.rcpts[i], &s->rcpt);
            if (dup) {
                addr_free(&s->rcpt);
                xfree(s->rcpt_dsn.orcpt);
            } else {
                s->txn.rcpts = xreallocarray(s->txn.rcpts, s->txn.nrcpt + 1, sizeof(*s->txn.rcpts));
                s->txn.rcpt_dsn = xreallocarray(s->txn.rcpt_dsn, s->txn.nrcpt + 1,
                                                sizeof(*s->txn.rcpt_dsn));
                s->txn.rcpt_dsn[s->txn.nrcpt] = s->rcpt_dsn;
                s->txn.rcpts[s->txn.nrcpt++] = s->rcpt;
            }
            memset(&s->rcpt_dsn, 0, sizeof(s->rcpt_dsn));
            s->have_rcpt = false;
            smtp_enter_state(s, SMTP_ST_RCPT);
        } else {
            addr_free(&s->rcpt);
            xfree(s->rcpt_dsn.orcpt);
            memset(&s->rcpt_dsn, 0, sizeof(s->rcpt_dsn));
            s->have_rcpt = false;
        }
        break;
    case SMTP_ASK_MESSAGE:
        smtp_txn_reset(s);
        smtp_enter_state(s, SMTP_ST_READY);
        break;
    case SMTP_ASK_STARTTLS:
        break; /* completed by smtp_session_tls_started() */
    case SMTP_ASK_AUTH:
        smtp_auth_answered(s, code);
        break;
    }
}
