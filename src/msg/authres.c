/*
 * msg/authres.c - the Authentication-Results builder (RFC 8601); see
 * authres.h for the contract. Every method entry starts on a new folded
 * line; within an entry, words fold when a line would pass 78 columns.
 */
#include "msg/authres.h"

#include <string.h>

#include "core/str.h"
#include "msg/header.h"

#define FOLD_AT 78

static bool tspecial(char c)
{
    return strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || tspecial(*s))
            return false;
    }
    return true;
}

/* [local-part] "@" domain, with dot-atom-ish characters only. */
static bool is_addr(const char *s)
{
    const char *at = strchr(s, '@');
    if (at == NULL || at[1] == '\0' || strchr(at + 1, '@') != NULL)
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        if (p == at)
            continue;
        bool local_ok = p < at && strchr("!#$%&'*+-/=?^_`{|}~.", *p) != NULL;
        if (!(ascii_alpha(*p) || ascii_digit(*p) || *p == '-' || *p == '.' || local_ok))
            return false;
    }
    return true;
}

static void word(struct authres *a, const char *s, size_t n, bool newline)
{
    if (newline || a->col + 1 + n > FOLD_AT) {
        buf_append(&a->b, "\r\n\t", 3);
        a->col = 8;
    } else {
        buf_append_byte(&a->b, ' ');
        a->col++;
    }
    buf_append(&a->b, s, n);
    a->col += n;
}

static void quoted(struct buf *w, const char *s)
{
    buf_append_byte(w, '"');
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            buf_append_byte(w, '\\');
        buf_append_byte(w, (c < 0x20 || c >= 0x7f) ? '?' : (char)c);
    }
    buf_append_byte(w, '"');
}

static void value(struct buf *w, const char *s)
{
    if (is_token(s) || is_addr(s))
        buf_append_str(w, s);
    else
        quoted(w, s);
}

void authres_begin(struct authres *a, const char *authserv_id)
{
    buf_init(&a->b);
    buf_append_str(&a->b, "Authentication-Results:");
    a->col = buf_size(&a->b);
    a->any = false;
    struct buf w = { 0 };
    value(&w, authserv_id);
    word(a, buf_ptr(&w), buf_size(&w), false);
    buf_free(&w);
}

void authres_method(struct authres *a, const char *method, const char *result, const char *reason)
{
    struct buf w = { 0 };
    buf_append_byte(&a->b, ';');
    a->col++;
    a->any = true;
    buf_printf(&w, "%s=%s", method, result);
    word(a, buf_ptr(&w), buf_size(&w), true);
    if (reason != NULL && reason[0] != '\0') {
        buf_reset(&w);
        buf_append_byte(&w, '(');
        for (const char *p = reason; *p != '\0'; p++) {
            unsigned char c = (unsigned char)*p;
            if (c == '(' || c == ')' || c == '\\')
                buf_append_byte(&w, '\\');
            buf_append_byte(&w, (c < 0x20 || c >= 0x7f) ? '?' : (char)c);
        }
        buf_append_byte(&w, ')');
        word(a, buf_ptr(&w), buf_size(&w), false);
    }
    buf_free(&w);
}

void authres_prop(struct authres *a, const char *ptype, const char *prop, const char *val)
{
    struct buf w = { 0 };
    buf_printf(&w, "%s.%s=", ptype, prop);
    value(&w, val);
    word(a, buf_ptr(&w), buf_size(&w), false);
    buf_free(&w);
}

void authres_end(struct authres *a, struct buf *out)
{
    if (!a->any)
        buf_append_str(&a->b, "; none");
    buf_append(&a->b, "\r\n", 2);
    buf_append(out, buf_ptr(&a->b), buf_size(&a->b));
    buf_free(&a->b);
    a->col = 0;
}

/* The authserv-id of an Authentication-Results field value: skip white
 * space, line folds and comments, then take the token up to ';' or space,
 * or the quoted string; a trailing dot is the same name. */
static bool authserv_is(const char *v, size_t n, const char *id)
{
    size_t i = 0;
    int depth = 0;
    while (i < n) {
        char c = v[i];
        if (depth > 0) {
            if (c == '\\' && i + 1 < n)
                i++;
            else if (c == '(')
                depth++;
            else if (c == ')')
                depth--;
            i++;
        } else if (c == '(') {
            depth = 1;
            i++;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            i++;
        } else {
            break;
        }
    }
    char word[256];
    size_t w = 0;
    if (i < n && v[i] == '"') {
        /* authserv-id is a value: token or quoted-string (RFC 8601 2.2) */
        for (i++; i < n && v[i] != '"'; i++) {
            if (v[i] == '\\' && i + 1 < n)
                i++;
            if (w == sizeof(word))
                return false;
            word[w++] = v[i];
        }
    } else {
        for (; i < n && v[i] != ';' && v[i] != ' ' && v[i] != '\t' && v[i] != '\r' &&
               v[i] != '\n' && v[i] != '(';
             i++) {
            if (w == sizeof(word))
                return false;
            word[w++] = v[i];
        }
    }
    if (w > 1 && word[w - 1] == '.')   /* "mx.test." names the same host */
        w--;
    return str_ieq(word, w, id);
}

size_t authres_strip_ours(const char *msg, size_t len, const char *authserv_id, struct buf *out)
{
    /* Fields as msg_next_field() reads them, so "Authentication-Results :"
     * and any case are the same field; a line it cannot read is kept (the
     * daemon refuses such a message before it gets here). */
    size_t dropped = 0, pos = 0, copied = 0, start = 0;
    struct msg_field f;
    int r;
    while ((r = msg_next_field(msg, len, &pos, &f)) != 0) {
        if (r > 0 && msg_field_is(&f, "Authentication-Results") &&
            authserv_is(f.value, f.value_len, authserv_id)) {
            buf_append(out, msg + copied, start - copied);
            copied = pos;
            dropped++;
        }
        start = pos;
    }
    if (dropped == 0) {
        buf_reset(out);
        return 0;
    }
    buf_append(out, msg + copied, len - copied);
    return dropped;
}
