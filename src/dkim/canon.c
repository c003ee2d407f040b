/*
 * dkim/canon.c - message splitting and the simple and relaxed
 * canonicalizations of RFC 6376 3.4, whole-message.
 *
 *   dkim_msg_split()     header fields and the body offset. A line ends at
 *                        LF (a CR before it belongs to the line break); a
 *                        line starting with SP or HT continues the field
 *                        before it. The header ends at the first empty line;
 *                        a message without one is all header, empty body.
 *   dkim_canon_header()  one field (raw, with its folding, without the final
 *                        line break) -> canonical form + CRLF
 *   dkim_canon_body()    the body -> canonical form (trailing empty lines
 *                        removed; simple turns an empty body into CRLF,
 *                        relaxed leaves it empty, RFC 6376 errata 3192)
 *   dkim_canon_parse()   c= text
 *
 * Line breaks are rebuilt as CRLF, so an LF-only message canonicalizes as if
 * it had been converted. The body copy costs one body's worth of memory; a
 * streaming hasher can reuse body_line() with the pending-empty-line count.
 */
#include <string.h>
#include <strings.h>

#include "core/str.h"
#include "core/xmalloc.h"
#include "dkim/dkim_int.h"
#include "msg/header.h"

static bool wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* End of the line starting at i (index of its LF, or len) */
static size_t line_end(const char *m, size_t len, size_t i)
{
    const char *lf = memchr(m + i, '\n', len - i);
    return lf != NULL ? (size_t)(lf - m) : len;
}

static size_t strip_cr(const char *m, size_t start, size_t end)
{
    return end > start && m[end - 1] == '\r' ? end - 1 : end;
}

static void add_field(struct dkim_hdr **h, size_t *n, size_t *cap, const char *p, size_t len,
                      size_t name_len)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 32;
        *h = xreallocarray(*h, *cap, sizeof(**h));
    }
    (*h)[(*n)++] = (struct dkim_hdr){ .p = p, .len = len, .name_len = name_len };
}

size_t dkim_msg_split(const char *msg, size_t len, struct dkim_hdr **hdrs, size_t *body_off)
{
    /* The fields as msg_next_field() reads them, the reader every header
     * consumer shares; a line it cannot read stays a field without a name,
     * which no h= entry can select. */
    size_t n = 0, cap = 0, pos = 0, start = 0;
    struct msg_field f;
    int r;
    *hdrs = NULL;
    while ((r = msg_next_field(msg, len, &pos, &f)) != 0) {
        size_t end = pos;
        if (end > start && msg[end - 1] == '\n')
            end--;
        if (end > start && msg[end - 1] == '\r')
            end--;
        add_field(hdrs, &n, &cap, msg + start, end - start, r > 0 ? f.name_len : 0);
        start = pos;
    }
    *body_off = msg_body_offset(msg, len);
    return n;
}

bool dkim_hdr_named(const struct dkim_hdr *h, const char *name, size_t n)
{
    return h->name_len == n && n > 0 && strncasecmp(h->p, name, n) == 0;
}

static void relaxed_header(const char *p, size_t len, struct buf *out)
{
    const char *colon = memchr(p, ':', len);
    size_t nl = colon != NULL ? (size_t)(colon - p) : len, i;
    while (nl > 0 && (wsp(p[nl - 1]) || p[nl - 1] == '\r' || p[nl - 1] == '\n'))
        nl--;
    for (i = 0; i < nl; i++)
        buf_append_byte(out, ascii_lower(p[i]));
    buf_append_byte(out, ':');
    bool space = false, any = false;
    for (i = colon != NULL ? (size_t)(colon - p) + 1 : len; i < len; i++) {
        char c = p[i];
        if (c == '\r' || c == '\n')
            continue;   /* unfold */
        if (wsp(c)) {
            space = true;
            continue;
        }
        if (space && any)
            buf_append_byte(out, ' ');
        space = false;
        any = true;
        buf_append_byte(out, c);
    }
    buf_append(out, "\r\n", 2);
}

void dkim_canon_header(enum dkim_canon c, const char *p, size_t len, struct buf *out)
{
    if (c == DKIM_CANON_RELAXED) {
        relaxed_header(p, len, out);
        return;
    }
    buf_append(out, p, len);
    buf_append(out, "\r\n", 2);
}

/* One body line (without its line break) in canonical form, with CRLF.
 * A canonical line is never longer than the line plus CRLF: one reserve
 * per line, then plain stores (this loop runs over every body byte). */
static void body_line(enum dkim_canon c, const char *p, size_t len, struct buf *out)
{
    buf_reserve(out, len + 2);
    char *w = out->data + out->len;
    if (c == DKIM_CANON_SIMPLE) {
        memcpy(w, p, len);
        w += len;
    } else {
        while (len > 0 && wsp(p[len - 1]))
            len--;
        /* Most lines are already canonical: no tab, no two spaces in a
         * row (the trailing WSP is gone). Two vectorized scans and one
         * copy then do the whole line. */
        if (memchr(p, '\t', len) == NULL && (len < 2 || memmem(p, len, "  ", 2) == NULL)) {
            memcpy(w, p, len);
            w += len;
            *w++ = '\r';
            *w++ = '\n';
            out->len = (size_t)(w - out->data);
            out->data[out->len] = '\0';
            return;
        }
        /* Otherwise each WSP run becomes one space: one pass, a store
         * per byte; words are too short for a copy call per word to pay. */
        bool space = false;
        for (size_t i = 0; i < len; i++) {
            char ch = p[i];
            if (wsp(ch)) {
                space = true;
                continue;
            }
            if (space) {
                *w++ = ' ';
                space = false;
            }
            *w++ = ch;
        }
    }
    *w++ = '\r';
    *w++ = '\n';
    out->len = (size_t)(w - out->data);
    out->data[out->len] = '\0';
}

static bool line_empty(enum dkim_canon c, const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (c == DKIM_CANON_SIMPLE || !wsp(p[i]))
            return false;
    }
    return true;
}

void dkim_canon_body(enum dkim_canon c, const char *p, size_t len, struct buf *out)
{
    size_t i = 0, empties = 0;
    bool any = false;
    buf_reserve(out, len + 2);  /* never longer than the input plus a CRLF */
    while (i < len) {
        size_t e = line_end(p, len, i), ce = strip_cr(p, i, e);
        if (line_empty(c, p + i, ce - i)) {
            empties++;
        } else {
            for (; empties > 0; empties--)
                buf_append(out, "\r\n", 2);
            body_line(c, p + i, ce - i, out);
            any = true;
        }
        i = e < len ? e + 1 : len;
    }
    if (!any && c == DKIM_CANON_SIMPLE)
        buf_append(out, "\r\n", 2);
    out->data[out->len] = '\0';   /* reserved above: a string even when empty */
}

static int canon_word(const char *s, size_t n, enum dkim_canon *c)
{
    if (str_ieq(s, n, "simple"))
        *c = DKIM_CANON_SIMPLE;
    else if (str_ieq(s, n, "relaxed"))
        *c = DKIM_CANON_RELAXED;
    else
        return -1;
    return 0;
}

int dkim_canon_parse(const char *s, size_t n, enum dkim_canon *h, enum dkim_canon *b)
{
    const char *slash = memchr(s, '/', n);
    *b = DKIM_CANON_SIMPLE;
    if (slash == NULL)
        return canon_word(s, n, h);
    size_t k = (size_t)(slash - s);
    if (canon_word(s, k, h) < 0 || canon_word(slash + 1, n - k - 1, b) < 0)
        return -1;
    return 0;
}
