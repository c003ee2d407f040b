#include "msg/addr.h"

#include <arpa/inet.h>
#include <string.h>

#include "core/buf.h"
#include "core/idna.h"
#include "core/str.h"
#include "core/xmalloc.h"

struct cursor {
    const char *s;
    size_t n, i;
    unsigned flags;
    bool utf8_seen;
    int err;  /* first error wins */
};

static bool at_end(const struct cursor *c) { return c->i >= c->n; }
static unsigned char peek(const struct cursor *c) { return at_end(c) ? 0 : (unsigned char)c->s[c->i]; }

static void fail(struct cursor *c, int err)
{
    if (c->err == 0)
        c->err = err;
}

/* Consume one UTF-8 sequence starting at a byte >= 0x80, if allowed. */
static bool take_utf8(struct cursor *c)
{
    unsigned char b = peek(c);
    if (b < 0x80)
        return false;
    if (!(c->flags & ADDR_UTF8)) {
        fail(c, ADDR_ENONASCII);
        return false;
    }
    size_t len = (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3 : (b & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || c->n - c->i < len || !str_utf8_valid(c->s + c->i, len)) {
        fail(c, ADDR_ESYNTAX);
        return false;
    }
    c->i += len;
    c->utf8_seen = true;
    return true;
}

static bool is_atext(unsigned char ch)
{
    if (ascii_alpha((char)ch) || ascii_digit((char)ch))
        return true;
    return ch != 0 && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL;
}

static bool parse_atom(struct cursor *c)
{
    size_t start = c->i;
    for (;;) {
        unsigned char ch = peek(c);
        if (is_atext(ch))
            c->i++;
        else if (ch >= 0x80 && take_utf8(c))
            continue;
        else
            break;
    }
    return c->i > start && c->err == 0;
}

static bool parse_local(struct cursor *c, struct buf *local, bool *quoted)
{
    size_t start = c->i;
    if (peek(c) == '"') {
        *quoted = true;
        c->i++;
        for (;;) {
            unsigned char ch = peek(c);
            if (at_end(c))
                return false;
            if (ch == '"') {
                c->i++;
                break;
            }
            if (ch == '\\') {
                c->i++;
                unsigned char q = peek(c);
                if (at_end(c) || q < 32 || q > 126)
                    return false;
                buf_append_byte(local, (char)q);
                c->i++;
            } else if (ch >= 0x80) {
                size_t k = c->i;
                if (!take_utf8(c))
                    return false;
                buf_append(local, c->s + k, c->i - k);
            } else if (ch >= 32 && ch <= 126) {
                buf_append_byte(local, (char)ch);
                c->i++;
            } else {
                return false;
            }
        }
    } else {
        *quoted = false;
        if (!parse_atom(c))
            return false;
        while (peek(c) == '.') {
            c->i++;
            if (!parse_atom(c))
                return false;
        }
        buf_append(local, c->s + start, c->i - start);
    }
    if (c->i - start > ADDR_MAX_LOCAL) {
        fail(c, ADDR_ETOOLONG);
        return false;
    }
    return true;
}

static bool parse_label(struct cursor *c)
{
    size_t start = c->i;
    bool last_hyphen = false;
    for (;;) {
        unsigned char ch = peek(c);
        if (ascii_alpha((char)ch) || ascii_digit((char)ch)) {
            c->i++;
            last_hyphen = false;
        } else if (ch == '-' && c->i > start) {
            c->i++;
            last_hyphen = true;
        } else if (ch >= 0x80 && take_utf8(c)) {
            last_hyphen = false;
        } else {
            break;
        }
    }
    return c->i > start && !last_hyphen && c->i - start <= 63 && c->err == 0;
}

static bool parse_domain(struct cursor *c)
{
    size_t start = c->i;
    if (!parse_label(c))
        return false;
    while (peek(c) == '.') {
        c->i++;
        if (!parse_label(c))
            return false;
    }
    if (c->i - start > ADDR_MAX_DOMAIN) {
        fail(c, ADDR_ETOOLONG);
        return false;
    }
    return true;
}

/* IPv4-address-literal = Snum 3("." Snum), Snum = 1*3DIGIT of value 0-255
 * (RFC 5321 4.1.3): "01.2.3.4" is legal, unlike for inet_pton. */
static bool ipv4_snums(const char *s, size_t n)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0 && (i >= n || s[i++] != '.'))
            return false;
        size_t d = i;
        while (i < n && i - d < 3 && ascii_digit(s[i]))
            i++;
        uint64_t v;
        if (str_to_u64(s + d, i - d, 255, &v) < 0)
            return false;
    }
    return i == n;
}

static bool parse_literal(struct cursor *c)
{
    /* c at '[' */
    size_t start = ++c->i;
    while (!at_end(c) && peek(c) != ']') {
        unsigned char ch = peek(c);
        if (ch < 33 || ch > 126 || ch == '[' || ch == '\\')
            return false;
        c->i++;
    }
    if (at_end(c))
        return false;
    size_t len = c->i - start;
    c->i++; /* ']' */
    char tmp[64];
    unsigned char addr[16];
    if (len == 0 || len >= sizeof(tmp))
        return false;
    memcpy(tmp, c->s + start, len);
    tmp[len] = '\0';
    if (str_iprefix(tmp, len, "IPv6:"))
        return inet_pton(AF_INET6, tmp + 5, addr) == 1;
    return ipv4_snums(tmp, len);
}

static bool parse_route(struct cursor *c)
{
    /* A-d-l = At-domain *( "," At-domain ) ":" */
    for (;;) {
        if (peek(c) != '@')
            return false;
        c->i++;
        if (!parse_domain(c))
            return false;
        if (peek(c) == ',') {
            c->i++;
            continue;
        }
        if (peek(c) != ':')
            return false;
        c->i++;
        return true;
    }
}

int addr_parse_path(const char *s, size_t n, unsigned flags, struct mail_addr *out, size_t *used)
{
    struct cursor c = { .s = s, .n = n, .flags = flags };
    struct buf local;
    bool quoted = false, literal = false;

    if (peek(&c) != '<')
        return ADDR_ESYNTAX;
    c.i++;
    if (peek(&c) == '>') {
        if (!(flags & ADDR_ALLOW_NULL))
            return ADDR_ESYNTAX;
        memset(out, 0, sizeof(*out));
        out->text = xstrdup("");
        out->local = xstrdup("");
        out->domain = xstrdup("");
        out->null = true;
        *used = 2;
        return 0;
    }
    if (peek(&c) == '@' && !parse_route(&c))
        return c.err ? c.err : ADDR_ESYNTAX;

    buf_init(&local);
    size_t mbox = c.i, dom_start = 0;
    bool ok = parse_local(&c, &local, &quoted);
    bool bare = false;
    if (ok && peek(&c) == '>' && (flags & ADDR_ALLOW_POSTMASTER) && !quoted &&
        str_ieq(s + mbox, c.i - mbox, "postmaster")) {
        bare = true;
    } else if (ok && peek(&c) == '@') {
        c.i++;
        dom_start = c.i;
        if (peek(&c) == '[') {
            literal = true;
            ok = parse_literal(&c);
        } else {
            ok = parse_domain(&c);
        }
    } else {
        ok = false;
    }
    if (ok && peek(&c) != '>')
        ok = false;
    if (ok && !literal && !bare && c.utf8_seen) {
        /* A U-label domain must be a valid one (RFC 8616): it reaches DNS
         * and every comparison as its A-label. */
        char *dom = xmemdup0(s + dom_start, c.i - dom_start), *ace = idna_to_ascii(dom);
        ok = ace != NULL;
        xfree(dom);
        xfree(ace);
    }
    if (ok && c.i + 1 > ADDR_MAX_PATH) {
        ok = false;
        fail(&c, ADDR_ETOOLONG);
    }
    if (!ok) {
        buf_free(&local);
        return c.err ? c.err : ADDR_ESYNTAX;
    }

    memset(out, 0, sizeof(*out));
    out->text = xmemdup0(s + mbox, c.i - mbox);
    out->local = xmemdup0(buf_ptr(&local), buf_size(&local));
    out->domain = bare ? xstrdup("") : xmemdup0(s + dom_start, c.i - dom_start);
    str_lower(out->domain);
    out->utf8 = c.utf8_seen;
    out->literal = literal;
    out->quoted = quoted;
    *used = c.i + 1;
    buf_free(&local);
    return 0;
}

bool addr_helo_ok(const char *s, size_t n)
{
    struct cursor c = { .s = s, .n = n };
    if (n == 0 || n > ADDR_MAX_DOMAIN)
        return false;
    if (s[0] == '[')
        return parse_literal(&c) && at_end(&c);
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if (ascii_alpha(ch) || ascii_digit(ch) || ch == '_' || (ch == '-' && label > 0)) {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0 && s[n - 1] != '-';
}

void addr_free(struct mail_addr *a)
{
    if (a == NULL)
        return;
    xfree(a->text);
    xfree(a->local);
    xfree(a->domain);
    memset(a, 0, sizeof(*a));
}

void addr_copy(struct mail_addr *dst, const struct mail_addr *src)
{
    *dst = *src;
    dst->text = xstrdup(src->text);
    dst->local = xstrdup(src->local);
    dst->domain = xstrdup(src->domain);
}

const char *addr_strerror(int err)
{
    switch (err) {
    case 0: return "ok";
    case ADDR_ENONASCII: return "non-ASCII address without SMTPUTF8";
    case ADDR_ETOOLONG: return "address too long";
    default: return "address syntax error";
    }
}
