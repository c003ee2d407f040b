/*
 * msg/header.c - RFC 5322 header fields and address lists; the contract is
 * in header.h.
 *
 * Fields: a line ends at LF (a CR right before it is part of the line
 * break); a line starting with SP or HT continues the field before it; the
 * first empty line ends the header. The field name is every byte before
 * the colon and must be printable ASCII without space (RFC 5322 ftext);
 * white space between the name and the colon is the obsolete form (4.5.8)
 * and is read as the same field, since a reader honours it: two parsers
 * reading one header differently is how sender spoofing starts.
 *
 * Address lists are read in two bounded layers. The lexer turns the value
 * into tokens (atoms, quoted strings, domain literals and the specials
 * < > @ , : ; .), dropping folding white space and (nested) comments; it
 * refuses control characters, bare CR or LF that is not folding, stray ')'
 * ']' '\', unterminated quotes, comments and literals, and malformed
 * UTF-8 (RFC 6532 allows UTF-8 in atoms, quoted strings and comments).
 * The grammar then reads the tokens with one token of lookahead after a
 * run of words: '<' makes the run a display name, ':' a group name, '@' a
 * local part. Obsolete forms accepted: phrases with '.' ("John Q. Public"),
 * CFWS around the dots of local parts and domains, empty list elements
 * (",a@b,,c@d"), routes in angle addresses (<@x,@y:a@b>, dropped).
 * Nothing recurses on input: comment depth is a counter, groups do not
 * nest.
 */
#include "msg/header.h"

#include <string.h>

#include "core/buf.h"
#include "core/str.h"
#include "core/xmalloc.h"

/* ---- fields ------------------------------------------------------------- */

/* Index just past the line starting at i (past its LF, or n). */
static size_t next_line(const char *m, size_t n, size_t i)
{
    const char *lf = memchr(m + i, '\n', n - i);
    return lf != NULL ? (size_t)(lf - m) + 1 : n;
}

static bool empty_line(const char *m, size_t n, size_t i)
{
    return m[i] == '\n' || (m[i] == '\r' && i + 1 < n && m[i + 1] == '\n');
}

static bool wsp(char c)
{
    return c == ' ' || c == '\t';
}

int msg_next_field(const char *msg, size_t n, size_t *pos, struct msg_field *f)
{
    size_t i = *pos;
    if (i >= n || empty_line(msg, n, i))
        return 0;
    size_t first_end = next_line(msg, n, i), end = first_end;
    while (end < n && wsp(msg[end]))
        end = next_line(msg, n, end);
    *pos = end;
    size_t colon = i;
    while (colon < first_end && msg[colon] != ':') {
        unsigned char c = (unsigned char)msg[colon];
        if (c <= 0x20 || c >= 0x7f)
            break;
        colon++;
    }
    size_t name_end = colon;
    while (colon < first_end && wsp(msg[colon]))   /* obs-optional (RFC 5322 4.5.8) */
        colon++;
    if (colon == first_end || msg[colon] != ':' || name_end == i)
        return -1;
    size_t vend = end;
    if (vend > colon + 1 && msg[vend - 1] == '\n')
        vend--;
    if (vend > colon + 1 && msg[vend - 1] == '\r')
        vend--;
    *f = (struct msg_field){
        .name = msg + i, .name_len = name_end - i, .value = msg + colon + 1,
        .value_len = vend - colon - 1, .raw = msg + i, .raw_len = end - i,
    };
    return 1;
}

bool msg_field_is(const struct msg_field *f, const char *name)
{
    return str_ieq(f->name, f->name_len, name);
}

size_t msg_body_offset(const char *msg, size_t n)
{
    for (size_t i = 0; i < n; i = next_line(msg, n, i)) {
        if (empty_line(msg, n, i))
            return next_line(msg, n, i);
    }
    return n;
}

/* ---- lexer -------------------------------------------------------------- */

enum { TK_ATOM = 'a', TK_QSTR = 'q', TK_DLIT = 'd', TK_END = 0 };

struct tok {
    int kind;            /* TK_* or the special character itself */
    size_t start, len;   /* ATOM: the atom; QSTR/DLIT: between the delimiters */
    bool comment;        /* a comment stood right before it */
};

struct lexer {
    const char *s;
    size_t n, i;
    struct tok *t;
    size_t nt, cap;
    bool comment;        /* skip_cfws passed a comment since the last token */
};

static bool atext(unsigned char c)
{
    return ascii_alpha((char)c) || ascii_digit((char)c) || c >= 0x80 ||
           (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Folding white space at i: WSP, or CRLF / LF followed by WSP. Returns its
 * length, 0 if none. */
static size_t fws_len(const char *s, size_t n, size_t i)
{
    if (wsp(s[i]))
        return 1;
    if (s[i] == '\r' && i + 2 < n && s[i + 1] == '\n' && wsp(s[i + 2]))
        return 3;
    if (s[i] == '\n' && i + 1 < n && wsp(s[i + 1]))
        return 2;
    return 0;
}

/* A printable byte of text (qtext/ctext/dtext without the exclusions). */
static bool vchar(unsigned char c)
{
    return (c > 0x20 && c < 0x7f) || c >= 0x80;
}

/* Skip a comment starting at '('; -1 if it is malformed. */
static int skip_comment(struct lexer *lx)
{
    size_t depth = 0;
    while (lx->i < lx->n) {
        unsigned char c = (unsigned char)lx->s[lx->i];
        size_t w = fws_len(lx->s, lx->n, lx->i);
        if (w > 0) {
            lx->i += w;
        } else if (c == '\\') {
            if (lx->i + 1 >= lx->n || !(vchar((unsigned char)lx->s[lx->i + 1]) ||
                                        wsp(lx->s[lx->i + 1])))
                return -1;
            lx->i += 2;
        } else if (c == '(') {
            depth++;
            lx->i++;
        } else if (c == ')') {
            lx->i++;
            if (--depth == 0)
                return 0;
        } else if (vchar(c)) {
            lx->i++;
        } else {
            return -1;
        }
    }
    return -1;
}

static int skip_cfws(struct lexer *lx)
{
    while (lx->i < lx->n) {
        size_t w = fws_len(lx->s, lx->n, lx->i);
        if (w > 0) {
            lx->i += w;
        } else if (lx->s[lx->i] == '(') {
            if (skip_comment(lx) < 0)
                return -1;
            lx->comment = true;
        } else {
            break;
        }
    }
    return 0;
}

/* A quoted string or domain literal whose opening delimiter is at i;
 * close is '"' or ']'. The token spans the inside. */
static int lex_delimited(struct lexer *lx, char close, struct tok *t)
{
    t->start = ++lx->i;
    while (lx->i < lx->n) {
        unsigned char c = (unsigned char)lx->s[lx->i];
        size_t w = fws_len(lx->s, lx->n, lx->i);
        if (c == (unsigned char)close) {
            t->len = lx->i++ - t->start;
            return 0;
        }
        if (w > 0) {
            lx->i += w;
        } else if (c == '\\') {
            if (lx->i + 1 >= lx->n || !(vchar((unsigned char)lx->s[lx->i + 1]) ||
                                        wsp(lx->s[lx->i + 1])))
                return -1;
            lx->i += 2;
        } else if (vchar(c) && !(close == ']' && c == '[')) {
            lx->i++;
        } else {
            return -1;
        }
    }
    return -1;
}

static void push_tok(struct lexer *lx, struct tok t)
{
    if (lx->nt == lx->cap) {
        lx->cap = lx->cap ? lx->cap * 2 : 16;
        lx->t = xreallocarray(lx->t, lx->cap, sizeof(*lx->t));
    }
    t.comment = lx->comment;
    lx->comment = false;
    lx->t[lx->nt++] = t;
}

static int lex_one(struct lexer *lx)
{
    unsigned char c = (unsigned char)lx->s[lx->i];
    struct tok t = { .kind = c, .start = lx->i, .len = 1 };
    if (atext(c)) {
        t.kind = TK_ATOM;
        while (lx->i < lx->n && atext((unsigned char)lx->s[lx->i]))
            lx->i++;
        t.len = lx->i - t.start;
    } else if (c == '"' || c == '[') {
        t.kind = c == '"' ? TK_QSTR : TK_DLIT;
        if (lex_delimited(lx, c == '"' ? '"' : ']', &t) < 0)
            return -1;
    } else if (c != 0 && strchr("<>@,:;.", c) != NULL) {
        lx->i++;
    } else {
        return -1;
    }
    push_tok(lx, t);
    return 0;
}

static int lex_all(struct lexer *lx)
{
    if (!str_utf8_valid(lx->s, lx->n))
        return -1;
    for (;;) {
        if (skip_cfws(lx) < 0)
            return -1;
        if (lx->i >= lx->n)
            break;
        if (lex_one(lx) < 0)
            return -1;
    }
    push_tok(lx, (struct tok){ .kind = TK_END, .start = lx->n });
    return 0;
}

/* ---- grammar ------------------------------------------------------------ */

struct parser {
    const char *s;
    const struct tok *t;
    size_t p;
    unsigned flags;
    struct msg_mailbox *mb;
    size_t count, cap;
};

static int kind(const struct parser *ps, size_t at)
{
    return ps->t[at].kind;
}

static bool is_word(int k)
{
    return k == TK_ATOM || k == TK_QSTR;
}

/* The text of a word or literal: quoted pairs resolved, folding dropped. */
static void tok_text(const struct parser *ps, const struct tok *t, struct buf *b)
{
    const char *s = ps->s + t->start;
    for (size_t i = 0; i < t->len; i++) {
        if (t->kind != TK_ATOM && s[i] == '\\' && i + 1 < t->len)
            buf_append_byte(b, s[++i]);
        else if (t->kind != TK_ATOM && (s[i] == '\r' || s[i] == '\n'))
            continue;
        else if (t->kind == TK_DLIT && wsp(s[i]))
            continue;
        else
            buf_append_byte(b, s[i]);
    }
}

/* word *("." word) over tokens [from, to); appended to b. */
static int dotted_words(const struct parser *ps, size_t from, size_t to, struct buf *b)
{
    if (from == to)
        return -1;
    for (size_t i = from; i < to; i++) {
        bool want_word = (i - from) % 2 == 0;
        if (want_word ? !is_word(kind(ps, i)) : kind(ps, i) != '.')
            return -1;
        if (want_word)
            tok_text(ps, &ps->t[i], b);
        else
            buf_append_byte(b, '.');
    }
    return (to - from) % 2 == 1 ? 0 : -1;
}

/* domain at ps->p: dot-atom / obs-domain, or a domain literal. */
static int parse_domain(struct parser *ps, struct buf *b)
{
    if (kind(ps, ps->p) == TK_DLIT) {
        buf_append_byte(b, '[');
        tok_text(ps, &ps->t[ps->p++], b);
        buf_append_byte(b, ']');
        return 0;
    }
    for (;;) {
        if (kind(ps, ps->p) != TK_ATOM)
            return -1;
        tok_text(ps, &ps->t[ps->p++], b);
        if (kind(ps, ps->p) != '.')
            return 0;
        buf_append_byte(b, '.');
        ps->p++;
    }
}

static int add_mailbox(struct parser *ps, const struct buf *local, const struct buf *domain,
                       unsigned quirks)
{
    if (ps->count >= MSG_MAX_MAILBOXES)
        return -1;
    if (ps->count == ps->cap) {
        ps->cap = ps->cap ? ps->cap * 2 : 4;
        ps->mb = xreallocarray(ps->mb, ps->cap, sizeof(*ps->mb));
    }
    char *d = xmemdup0(buf_ptr(domain), buf_size(domain));
    for (char *c = d; *c != '\0'; c++)
        *c = ascii_lower(*c);
    ps->mb[ps->count].local = xmemdup0(buf_ptr(local), buf_size(local));
    ps->mb[ps->count].domain = d;
    if (memmem(buf_ptr(local), buf_size(local), "=?", 2) || strstr(d, "=?"))
        quirks |= MSG_MB_ENCODED;
    if (memchr(buf_ptr(local), '@', buf_size(local)))
        quirks |= MSG_MB_AT_IN_LOCAL;
    ps->mb[ps->count].quirks = quirks;
    ps->count++;
    return 0;
}

/* A comment before any token in (from, to]: inside the address. */
static bool comment_inside(const struct parser *ps, size_t from, size_t to)
{
    for (size_t i = from + 1; i <= to; i++)
        if (ps->t[i].comment)
            return true;
    return false;
}

/* local part over [from, to), then "@" domain at ps->p (= to) or, with
 * MSG_ALLOW_NO_DOMAIN, no domain. quirks: what the caller saw around it. */
static int addr_spec(struct parser *ps, size_t from, size_t to, unsigned quirks)
{
    struct buf local = { 0 }, domain = { 0 };
    int rc = dotted_words(ps, from, to, &local);
    if (rc == 0 && kind(ps, ps->p) == '@') {
        ps->p++;
        rc = parse_domain(ps, &domain);
    } else if (rc == 0 && !(ps->flags & MSG_ALLOW_NO_DOMAIN)) {
        rc = -1;
    }
    if (rc == 0 && ps->p > from && comment_inside(ps, from, ps->p - 1))
        quirks |= MSG_MB_COMMENT;
    if (rc == 0)
        rc = add_mailbox(ps, &local, &domain, quirks);
    buf_free(&local);
    buf_free(&domain);
    return rc;
}

/* obs-route after '<': *("," / "@" domain) ":" ; dropped. */
static int skip_route(struct parser *ps)
{
    struct buf scratch = { 0 };
    int rc = 0;
    while (rc == 0 && kind(ps, ps->p) != ':') {
        if (kind(ps, ps->p) == ',') {
            ps->p++;
        } else if (kind(ps, ps->p) == '@') {
            ps->p++;
            rc = parse_domain(ps, &scratch);
        } else {
            rc = -1;
        }
    }
    if (rc == 0)
        ps->p++;   /* the ':' */
    buf_free(&scratch);
    return rc;
}

/* "<" [route] addr-spec ">" at ps->p */
static int angle_addr(struct parser *ps)
{
    ps->p++;
    unsigned quirks = 0;
    if (kind(ps, ps->p) == '@' || kind(ps, ps->p) == ',') {
        if (skip_route(ps) < 0)
            return -1;
        quirks |= MSG_MB_ROUTE;
    }
    size_t from = ps->p;
    if (ps->t[from].comment)
        quirks |= MSG_MB_COMMENT;
    while (is_word(kind(ps, ps->p)) || kind(ps, ps->p) == '.')
        ps->p++;
    if (addr_spec(ps, from, ps->p, quirks) < 0 || kind(ps, ps->p) != '>')
        return -1;
    if (ps->t[ps->p].comment)
        ps->mb[ps->count - 1].quirks |= MSG_MB_COMMENT;
    ps->p++;
    return 0;
}

static int parse_address(struct parser *ps, bool in_group);

/* display-name ":" [mailboxes] ";" with ps->p at the ':' */
static int group(struct parser *ps)
{
    ps->p++;
    for (;;) {
        while (kind(ps, ps->p) == ',')
            ps->p++;
        if (kind(ps, ps->p) == ';')
            break;
        if (parse_address(ps, true) < 0)
            return -1;
        ps->mb[ps->count - 1].quirks |= MSG_MB_GROUP;
        if (kind(ps, ps->p) != ',' && kind(ps, ps->p) != ';')
            return -1;
    }
    ps->p++;
    return 0;
}

static int parse_address(struct parser *ps, bool in_group)
{
    size_t from = ps->p;
    while (is_word(kind(ps, ps->p)) || kind(ps, ps->p) == '.')
        ps->p++;
    bool phrase = ps->p > from && is_word(kind(ps, from));
    switch (kind(ps, ps->p)) {
    case '<':
        return ps->p == from || phrase ? angle_addr(ps) : -1;
    case ':':
        return phrase && !in_group ? group(ps) : -1;
    default:
        return addr_spec(ps, from, ps->p, 0);
    }
}

static int address_list(struct parser *ps)
{
    bool any = false;
    for (;;) {
        while (kind(ps, ps->p) == ',')
            ps->p++;
        if (kind(ps, ps->p) == TK_END)
            break;
        if (parse_address(ps, false) < 0)
            return -1;
        any = true;
        if (kind(ps, ps->p) != ',' && kind(ps, ps->p) != TK_END)
            return -1;
    }
    return any ? 0 : -1;
}

int msg_parse_address_list(const char *v, size_t n, unsigned flags, struct msg_mailbox **out,
                           size_t *count)
{
    struct lexer lx = { .s = v, .n = n };
    struct parser ps = { .s = v, .flags = flags };
    int rc = lex_all(&lx);
    if (rc == 0) {
        ps.t = lx.t;
        rc = address_list(&ps);
    }
    xfree(lx.t);
    if (rc < 0 || ps.count == 0) {
        msg_mailboxes_free(ps.mb, ps.count);
        ps.mb = NULL;
        ps.count = 0;
    }
    *out = ps.mb;
    *count = ps.count;
    return rc;
}

int msg_parse_mailbox_list(const char *v, size_t n, struct msg_mailbox **out, size_t *count)
{
    return msg_parse_address_list(v, n, 0, out, count);
}

void msg_mailboxes_free(struct msg_mailbox *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        xfree(m[i].local);
        xfree(m[i].domain);
    }
    xfree(m);
}
