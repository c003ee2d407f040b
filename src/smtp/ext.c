#include "smtp/ext.h"

#include <string.h>

#include "core/str.h"

static bool word_is(const char *p, size_t n, const char *lit)
{
    return str_ieq(p, n, lit);
}

static void ext_auth(struct smtp_ext *ext, const char *p, size_t n)
{
    ext->auth = true;
    size_t i = 0;
    while (i < n) {
        while (i < n && p[i] == ' ')
            i++;
        size_t s = i;
        while (i < n && p[i] != ' ')
            i++;
        if (word_is(p + s, i - s, "PLAIN"))
            ext->auth_mechs |= SMTP_AUTH_PLAIN;
        else if (word_is(p + s, i - s, "LOGIN"))
            ext->auth_mechs |= SMTP_AUTH_LOGIN;
    }
}

static void ext_line(struct smtp_ext *ext, const char *p, size_t n)
{
    size_t k = 0;
    while (k < n && p[k] != ' ' && p[k] != '=')
        k++;
    const char *arg = k < n ? p + k + 1 : p + n;
    size_t an = k < n ? n - k - 1 : 0;
    if (word_is(p, k, "STARTTLS"))
        ext->starttls = true;
    else if (word_is(p, k, "PIPELINING"))
        ext->pipelining = true;
    else if (word_is(p, k, "8BITMIME"))
        ext->eightbitmime = true;
    else if (word_is(p, k, "SMTPUTF8"))
        ext->smtputf8 = true;
    else if (word_is(p, k, "ENHANCEDSTATUSCODES"))
        ext->enhancedstatuscodes = true;
    else if (word_is(p, k, "CHUNKING"))
        ext->chunking = true;
    else if (word_is(p, k, "DSN"))
        ext->dsn = true;
    else if (word_is(p, k, "AUTH"))  /* also the old "AUTH=LOGIN PLAIN" form */
        ext_auth(ext, arg, an);
    else if (word_is(p, k, "SIZE")) {
        ext->size = true;
        uint64_t v;
        ext->size_max = an > 0 && str_to_u64(arg, an, UINT64_MAX, &v) == 0 ? v : 0;
    }
}

void smtp_ext_parse(const struct smtp_reply *ehlo, struct smtp_ext *ext)
{
    memset(ext, 0, sizeof(*ext));
    for (size_t i = 1; i < ehlo->nlines; i++) {  /* line 0 is the server's name */
        size_t n;
        const char *p = smtp_reply_line(ehlo, i, &n);
        ext_line(ext, p, n);
    }
}

void smtp_dot_stuff(const char *p, size_t n, bool *bol, struct buf *out)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (*bol && p[i] == '.') {
            buf_append(out, p + start, i - start);
            buf_append_byte(out, '.');
            start = i;
        }
        *bol = p[i] == '\n';
    }
    buf_append(out, p + start, n - start);
}

void smtp_data_encode(const char *p, size_t n, struct smtp_data_state *st, struct buf *out)
{
    size_t start = 0;   /* p[start..i) is plain text still to copy */
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch != '\r' && ch != '\n') {
            if (st->cr) {            /* a bare CR before this byte */
                buf_append_str(out, "\r\n");
                st->cr = false;
                st->mid_line = false;
            }
            if (!st->mid_line && ch == '.') {
                buf_append(out, p + start, i - start);
                buf_append_byte(out, '.');
                start = i;
            }
            st->mid_line = true;
            continue;
        }
        buf_append(out, p + start, i - start);
        start = i + 1;
        if (ch == '\r') {
            if (st->cr)              /* CR CR: the first was bare */
                buf_append_str(out, "\r\n");
            st->cr = true;
            st->mid_line = false;
            continue;
        }
        /* LF, after a CR or bare: one CRLF either way */
        buf_append_str(out, "\r\n");
        st->cr = false;
        st->mid_line = false;
    }
    buf_append(out, p + start, n - start);
}

void smtp_data_end(struct smtp_data_state *st, struct buf *out)
{
    if (st->cr || st->mid_line)
        buf_append_str(out, "\r\n");
    st->cr = false;
    st->mid_line = false;
    buf_append_str(out, ".\r\n");
}

static int xhex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;   /* hexchar is upper case (RFC 3461 4) */
}

void smtp_crlf_only(const char *p, size_t n, struct buf *out)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\r' && p[i] != '\n')
            continue;
        buf_append(out, p + start, i - start);
        buf_append_str(out, "\r\n");
        if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
            i++;
        start = i + 1;
    }
    buf_append(out, p + start, n - start);
    if (n > start)
        buf_append_str(out, "\r\n");   /* a last line without its end */
}

int smtp_xtext_decode(const char *v, size_t n, struct buf *out)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '+') {
            int hi = i + 2 < n ? xhex(v[i + 1]) : -1;
            int lo = i + 2 < n ? xhex(v[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            int x = hi * 16 + lo;
            if (x < 33 || x > 126)   /* printable ASCII only: no NUL, no CR/LF */
                return -1;
            buf_append_byte(out, (char)x);
            i += 2;
        } else if (c < 33 || c > 126 || c == '=') {
            return -1;
        } else {
            buf_append_byte(out, (char)c);
        }
    }
    buf_ptr(out);
    return 0;
}

void smtp_xtext_encode(const char *s, struct buf *out)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 33 || c > 126 || c == '+' || c == '=')
            buf_printf(out, "+%02X", c);
        else
            buf_append_byte(out, (char)c);
    }
    buf_ptr(out);
}

unsigned smtp_dsn_notify_parse(const char *v, size_t n)
{
    static const struct { const char *w; unsigned bit; } words[] = {
        { "NEVER", SMTP_NOTIFY_NEVER }, { "SUCCESS", SMTP_NOTIFY_SUCCESS },
        { "FAILURE", SMTP_NOTIFY_FAILURE }, { "DELAY", SMTP_NOTIFY_DELAY },
    };
    unsigned got = 0;
    size_t i = 0;
    while (i <= n) {
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        unsigned bit = 0;
        for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++)
            if (str_ieq(v + s, i - s, words[k].w))
                bit = words[k].bit;
        if (bit == 0 || (got & bit))
            return 0;
        got |= bit;
        i++;
    }
    if ((got & SMTP_NOTIFY_NEVER) && got != SMTP_NOTIFY_NEVER)
        return 0;
    return got;
}

void smtp_dsn_notify_format(unsigned notify, struct buf *out)
{
    if (notify & SMTP_NOTIFY_NEVER) {
        buf_append_str(out, "NEVER");
        return;
    }
    const char *sep = "";
    if (notify & SMTP_NOTIFY_SUCCESS)
        buf_printf(out, "%sSUCCESS", sep), sep = ",";
    if (notify & SMTP_NOTIFY_FAILURE)
        buf_printf(out, "%sFAILURE", sep), sep = ",";
    if (notify & SMTP_NOTIFY_DELAY)
        buf_printf(out, "%sDELAY", sep);
    buf_ptr(out);
}
