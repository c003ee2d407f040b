/*
 * reply.c - the SMTP reply parser; the contract is in reply.h.
 *
 * Layers, as STYLE 5 asks: bytes become lines here (length cap, CR/LF
 * policy, character check), a line becomes code + separator + text
 * (take_line), and the enhanced status code is split off the text
 * (enhanced_len). Nothing here allocates except the reply's text buffer,
 * which is bounded by SMTP_REPLY_MAX_LINES * SMTP_REPLY_LINE_MAX.
 */
#include "smtp/reply.h"

#include <string.h>

#include "core/str.h"

void smtp_reply_parser_init(struct smtp_reply_parser *p)
{
    memset(p, 0, sizeof(*p));
    buf_init(&p->cur.text);
}

void smtp_reply_parser_reset(struct smtp_reply_parser *p)
{
    smtp_reply_free(&p->cur);
    smtp_reply_parser_init(p);
}

void smtp_reply_free(struct smtp_reply *r)
{
    buf_free(&r->text);
    memset(r, 0, sizeof(*r));
}

const char *smtp_reply_line(const struct smtp_reply *r, size_t i, size_t *len)
{
    if (i >= r->nlines) {
        *len = 0;
        return "";
    }
    *len = r->off[i + 1] - r->off[i] - 1;
    return r->text.data + r->off[i];
}

const char *smtp_reply_strerror(int err)
{
    switch (err) {
    case SMTP_REPLY_ESYNTAX: return "malformed reply line";
    case SMTP_REPLY_ECODE: return "reply lines with different codes";
    case SMTP_REPLY_ETOOLONG: return "reply line too long";
    case SMTP_REPLY_ETOOMANY: return "reply has too many lines";
    case SMTP_REPLY_ECHAR: return "forbidden character in reply";
    default: return "no error";
    }
}

/* Length of "C.S.D" (plus one following space) at the start of t when it
 * is an RFC 3463 code of class cls; 0 when there is none. */
static size_t enhanced_len(const char *t, size_t n, unsigned cls)
{
    if (n < 5 || (unsigned)(t[0] - '0') != cls || (cls != 2 && cls != 4 && cls != 5) || t[1] != '.')
        return 0;
    size_t i = 2;
    for (int part = 0; part < 2; part++) {
        size_t start = i;
        while (i < n && ascii_digit(t[i]) && i - start < 4)
            i++;
        if (i == start || i - start > 3)
            return 0;
        if (part == 0) {
            if (i >= n || t[i] != '.')
                return 0;
            i++;
        }
    }
    if (i == n)
        return i;
    return t[i] == ' ' ? i + 1 : 0;
}

static bool code_ok(const char *s)
{
    return s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '5' && ascii_digit(s[2]);
}

/* One complete line (without its line end). 1 it was the last line of
 * the reply, 0 more lines follow, or a negative smtp_reply_error. */
static int take_line(struct smtp_reply *r, const char *s, size_t len, bool bare_lf)
{
    if (len < 3 || !code_ok(s) || (len > 3 && s[3] != ' ' && s[3] != '-'))
        return SMTP_REPLY_ESYNTAX;
    unsigned code = (unsigned)(s[0] - '0') * 100 + (unsigned)(s[1] - '0') * 10 +
                    (unsigned)(s[2] - '0');
    if (r->nlines > 0 && code != r->code)
        return SMTP_REPLY_ECODE;
    if (r->nlines == SMTP_REPLY_MAX_LINES)
        return SMTP_REPLY_ETOOMANY;
    const char *t = len > 3 ? s + 4 : s + len;
    size_t tn = len > 3 ? len - 4 : 0;
    if (!str_utf8_valid(t, tn))
        return SMTP_REPLY_ECHAR;
    r->code = code;
    size_t e = enhanced_len(t, tn, code / 100);
    if (e > 0) {
        if (r->nlines == 0) {
            size_t k = t[e - 1] == ' ' ? e - 1 : e;
            memcpy(r->enhanced, t, k);
            r->enhanced[k] = '\0';
        }
        t += e;
        tn -= e;
    }
    r->off[r->nlines] = buf_size(&r->text);
    buf_append(&r->text, t, tn);
    buf_append_byte(&r->text, '\n');
    r->nlines++;
    r->off[r->nlines] = buf_size(&r->text);
    r->bare_lf |= bare_lf;
    return len == 3 || s[3] == ' ';
}

/* A byte of a line (not LF): 0 stored, or a negative smtp_reply_error. */
static int take_byte(struct smtp_reply_parser *p, char c)
{
    unsigned char u = (unsigned char)c;
    if (p->len > 0 && p->line[p->len - 1] == '\r')
        return SMTP_REPLY_ECHAR;  /* CR not followed by LF */
    if ((u < 0x20 && c != '\t' && c != '\r') || u == 0x7f)
        return SMTP_REPLY_ECHAR;
    if (c != '\r' && p->len >= SMTP_REPLY_LINE_MAX)
        return SMTP_REPLY_ETOOLONG;
    p->line[p->len++] = c;
    return 0;
}

int smtp_reply_feed(struct smtp_reply_parser *p, const char *in, size_t n, size_t *used,
                    struct smtp_reply *out)
{
    *used = 0;
    if (p->error != 0)
        return p->error;
    for (size_t i = 0; i < n; i++) {
        int rc;
        if (in[i] != '\n') {
            rc = take_byte(p, in[i]);
        } else {
            bool cr = p->len > 0 && p->line[p->len - 1] == '\r';
            rc = take_line(&p->cur, p->line, cr ? p->len - 1 : p->len, !cr);
            p->len = 0;
        }
        if (rc < 0) {
            p->error = rc;
            *used = i + 1;
            return rc;
        }
        if (rc == 1) {
            *out = p->cur;
            memset(&p->cur, 0, sizeof(p->cur));
            buf_init(&p->cur.text);
            *used = i + 1;
            return SMTP_REPLY_DONE;
        }
    }
    *used = n;
    return SMTP_REPLY_MORE;
}
