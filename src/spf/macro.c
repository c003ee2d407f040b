/*
 * macro - the SPF macro language (RFC 7208 7).
 *
 *   macro-string  = *( macro-expand / macro-literal )
 *   macro-expand  = ( "%{" macro-letter transformers *delimiter "}" )
 *                   / "%%" / "%_" / "%-"
 *   macro-literal = %x21-24 / %x26-7E
 *   transformers  = *DIGIT [ "r" ]
 *   delimiter     = "." / "-" / "+" / "," / "/" / "_" / "="
 *
 * Letters: s l o d i p h v everywhere; c r t only in explanation text (a
 * domain-spec using them is a syntax error, hence permerror). An upper-case
 * letter expands like its lower-case one and is then URL-escaped: every
 * byte outside ALPHA DIGIT "-" "." "_" "~" becomes %XX. A '%' followed by
 * anything but '{', '%', '_' or '-' is a syntax error; so is a digit
 * transformer of 0. "r" (either case) reverses. With transformers or
 * delimiters the value is split on the delimiters (default "."), reversed,
 * cut to the rightmost N parts and joined with "."; without them it is
 * used as it is. An explain-string may also contain SP.
 *
 * %{p}: its value is the validated domain name of the client, which takes
 * DNS lookups (PTR, then A/AAAA of each name). This module does no I/O:
 * spf_macro_check() reports uses_p, and spf_macro_expand() returns
 * SPF_MACRO_NEED_P when ctx->p is NULL. The evaluator (spf.c) then asks its
 * caller for the PTR and address records through spf_eval_step() /
 * spf_eval_answer() like for any mechanism, keeps the validated names, and
 * expands again with ctx->p set (or "unknown").
 *
 * spf_ident_init() derives the letter values from the request: s, l and o
 * from MAIL FROM, or postmaster@HELO for the HELO identity and the null
 * sender (an empty local part is "postmaster" too); i as a dotted quad or
 * 32 dot-separated nibbles (upper-case hex as in RFC 4408 and the test
 * suite; DNS does not care), c in RFC 5952 form, v; and whether the
 * initial domain is usable at all (4.3: else the result is "none").
 *
 * The output is capped at SPF_MACRO_MAX_OUT bytes (-1 beyond it).
 * spf_target_name() finishes an expanded domain-spec (7.3): one trailing
 * dot dropped, labels removed from the left until 253 octets, and NULL
 * when the result is still no usable DNS name.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "core/idna.h"
#include "core/str.h"
#include "core/xmalloc.h"
#include "spf/spf_int.h"

struct macro_tok {
    enum { TOK_LIT, TOK_TEXT, TOK_MACRO } kind;
    size_t len;          /* bytes of the input */
    const char *text;    /* TOK_TEXT: replacement ("%", " ", "%20") */
    char letter;         /* TOK_MACRO: lower case */
    bool upper, reverse;
    uint64_t keep;       /* 0: all parts */
    char delims[8];      /* NUL-terminated set, "" for the default "." */
    bool split;          /* transformers or delimiters given */
};

static const char delimiter_set[] = ".-+,/_=";

static int bad(struct buf *err, const char *what, const char *s, size_t n)
{
    buf_append_str(err, what);
    buf_append_str(err, " '");
    spf_quote_for_msg(err, s, n > 32 ? 32 : n);
    buf_append_str(err, "'");
    return -1;
}

static bool letter_ok(char l, enum spf_macro_mode mode)
{
    if (strchr("slodiphv", l) != NULL)
        return true;
    return mode != SPF_MACRO_DOMAIN && strchr("crt", l) != NULL;
}

/* The transformers and delimiters of "%{" letter ... "}" at s[i..). */
static int parse_braced(const char *s, size_t n, size_t i, struct macro_tok *t, struct buf *err)
{
    size_t d0 = i;
    while (i < n && ascii_digit(s[i]))
        i++;
    if (i > d0) {
        size_t z = d0;
        while (z < i && s[z] == '0')
            z++;
        if (z == i)
            return -1;  /* %{d0}: the value MUST be nonzero (7.3) */
        if (i - z > 19 || str_to_u64(s + z, i - z, UINT64_MAX, &t->keep) < 0)
            t->keep = UINT64_MAX;
        t->split = true;
    }
    if (i < n && (s[i] == 'r' || s[i] == 'R')) {
        t->reverse = t->split = true;
        i++;
    }
    size_t nd = 0;
    while (i < n && s[i] != '}') {
        if (s[i] == '\0' || strchr(delimiter_set, s[i]) == NULL)
            return -1;
        if (strchr(t->delims, s[i]) == NULL && nd < sizeof(t->delims) - 1)
            t->delims[nd++] = s[i], t->delims[nd] = '\0';
        t->split = true;
        i++;
    }
    if (i >= n)
        return -1;
    (void)err;
    t->len = i + 1;
    return 0;
}

/* One token at s[0..n); n > 0. */
static int next_token(const char *s, size_t n, enum spf_macro_mode mode, struct macro_tok *t,
                      struct buf *err)
{
    memset(t, 0, sizeof(*t));
    unsigned char c = (unsigned char)s[0];
    if (c != '%') {
        t->kind = TOK_LIT;
        t->len = 1;
        if ((c >= 0x21 && c <= 0x7e) || (c == ' ' && mode == SPF_MACRO_EXP))
            return 0;
        return bad(err, "invalid character in macro-string at", s, n);
    }
    if (n < 2)
        return bad(err, "'%' at the end of a macro-string:", s, n);
    t->kind = TOK_TEXT;
    t->len = 2;
    switch (s[1]) {
    case '%': t->text = "%"; return 0;
    case '_': t->text = " "; return 0;
    case '-': t->text = "%20"; return 0;
    case '{': break;
    default: return bad(err, "'%' not followed by '{', '%', '_' or '-' at", s, n);
    }
    if (n < 4)
        return bad(err, "unterminated macro", s, n);
    t->kind = TOK_MACRO;
    t->letter = ascii_lower(s[2]);
    t->upper = s[2] >= 'A' && s[2] <= 'Z';
    if (!ascii_alpha(s[2]) || !letter_ok(t->letter, mode))
        return bad(err, mode == SPF_MACRO_DOMAIN && strchr("crt", t->letter) && ascii_alpha(s[2])
                            ? "macro letter allowed only in explanations:"
                            : "unknown macro letter in",
                   s, n);
    if (parse_braced(s, n, 3, t, err) < 0)
        return bad(err, "invalid macro", s, n);
    return 0;
}

int spf_macro_check(const char *s, size_t n, enum spf_macro_mode mode,
                    struct spf_macro_info *info, struct buf *err)
{
    memset(info, 0, sizeof(*info));
    size_t i = 0;
    while (i < n) {
        struct macro_tok t;
        if (next_token(s + i, n - i, mode, &t, err) < 0)
            return -1;
        if (t.kind == TOK_MACRO && t.letter == 'p')
            info->uses_p = true;
        info->ends_macro = t.kind != TOK_LIT;
        i += t.len;
    }
    return 0;
}

static bool unreserved(unsigned char c)
{
    return ascii_alpha((char)c) || ascii_digit((char)c) || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

static void put_escaped(struct buf *out, const char *s, size_t n, bool escape)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!escape) {
        buf_append(out, s, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c)) {
            buf_append_byte(out, (char)c);
        } else {
            char e[3] = { '%', hex[c >> 4], hex[c & 15] };
            buf_append(out, e, 3);
        }
    }
}

static const char *letter_value(const struct spf_macro_ctx *ctx, char l, char *tbuf, size_t tn)
{
    const char *v = NULL;
    switch (l) {
    case 's': v = ctx->s; break;
    case 'l': v = ctx->l; break;
    case 'o': v = ctx->o; break;
    case 'd': v = ctx->d; break;
    case 'i': v = ctx->i; break;
    case 'p': v = ctx->p; break;
    case 'h': v = ctx->h; break;
    case 'v': v = ctx->v; break;
    case 'c': v = ctx->c; break;
    case 'r': v = ctx->r; break;
    case 't':
        snprintf(tbuf, tn, "%llu", (unsigned long long)ctx->t);
        v = tbuf;
        break;
    default: break;
    }
    return v != NULL ? v : "";
}

/* Split v on the delimiters, reverse, keep the rightmost parts, join. */
static void transform(const struct macro_tok *t, const char *v, struct buf *out)
{
    const char *delims = t->delims[0] ? t->delims : ".";
    size_t n = strlen(v), nparts = 1;
    for (size_t i = 0; i < n; i++)
        if (strchr(delims, v[i]) != NULL)
            nparts++;
    size_t *start = xreallocarray(NULL, nparts, sizeof(size_t));
    size_t *len = xreallocarray(NULL, nparts, sizeof(size_t));
    size_t k = 0, from = 0;
    for (size_t i = 0; i <= n; i++)
        if (i == n || strchr(delims, v[i]) != NULL) {
            start[k] = from, len[k] = i - from, k++;
            from = i + 1;
        }
    size_t keep = t->keep == 0 || t->keep > nparts ? nparts : (size_t)t->keep;
    /* parts in order (after reversal) are p[0..nparts); take the last keep */
    for (size_t j = nparts - keep; j < nparts; j++) {
        size_t idx = t->reverse ? nparts - 1 - j : j;
        if (j > nparts - keep)
            buf_append_byte(out, '.');
        buf_append(out, v + start[idx], len[idx]);
    }
    xfree(start);
    xfree(len);
}

static void expand_macro(const struct macro_tok *t, const struct spf_macro_ctx *ctx,
                         struct buf *out)
{
    char tbuf[24];
    const char *v = letter_value(ctx, t->letter, tbuf, sizeof(tbuf));
    if (!t->split) {
        put_escaped(out, v, strlen(v), t->upper);
        return;
    }
    struct buf tmp;
    buf_init(&tmp);
    transform(t, v, &tmp);
    put_escaped(out, buf_ptr(&tmp), buf_size(&tmp), t->upper);
    buf_free(&tmp);
}

int spf_macro_expand(const char *s, size_t n, enum spf_macro_mode mode,
                     const struct spf_macro_ctx *ctx, struct buf *out, struct buf *err)
{
    struct spf_macro_info info;
    if (spf_macro_check(s, n, mode, &info, err) < 0)
        return -1;
    if (info.uses_p && ctx->p == NULL)
        return SPF_MACRO_NEED_P;
    size_t base = buf_size(out), i = 0;
    while (i < n) {
        struct macro_tok t;
        (void)next_token(s + i, n - i, mode, &t, err); /* checked above */
        if (t.kind == TOK_LIT)
            buf_append_byte(out, s[i]);
        else if (t.kind == TOK_TEXT)
            buf_append_str(out, t.text);
        else
            expand_macro(&t, ctx, out);
        i += t.len;
        if (buf_size(out) - base > SPF_MACRO_MAX_OUT) {
            buf_append_str(err, "macro expansion too long");
            return -1;
        }
    }
    return 0;
}

/* ---- 7.3: an expanded domain-spec as a name to look up ---------------- */

bool spf_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    size_t lab = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (lab == 0 || lab > 63)
                return false;
            lab = 0;
        } else {
            lab++;
        }
    }
    return true;
}

/* A target name after macro expansion (7.3): drop one trailing dot, cut
 * labels off the left until it fits 253 octets. NULL if unusable. */
char *spf_target_name(const char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '.')
        n--;
    while (n > 253) {
        const char *dot = memchr(s, '.', n);
        if (dot == NULL)
            return NULL;
        n -= (size_t)(dot + 1 - s);
        s = dot + 1;
    }
    return spf_name_ok(s, n) ? xmemdup0(s, n) : NULL;
}

/* ---- the values of the macro letters from the request (4.1, 4.3, 7.2) -- */

/* The initial <domain> (4.3): malformed or not multi-label gives "none". */
static bool initial_domain_ok(const char *d)
{
    size_t n = strlen(d);
    if (n > 0 && d[n - 1] == '.')
        n--;
    if (!spf_name_ok(d, n) || memchr(d, '.', n) == NULL || d[0] == '[')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)d[i] <= 0x20 || (unsigned char)d[i] >= 0x7f)
            return false;
    const char *last = d + n;
    while (last > d && last[-1] != '.')
        last--;
    for (const char *p = last; p < d + n; p++)
        if (!ascii_digit(*p))
            return true;
    return false;   /* an IP address is not a domain */
}

/* %{i} %{c} %{v}: an IPv4-mapped IPv6 address is IPv4 (5). */
static void parse_ip(struct spf_ident *id, const char *ip)
{
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    static const char hex[] = "0123456789ABCDEF";
    uint8_t b[16];
    if (ip != NULL && inet_pton(AF_INET, ip, b) == 1) {
        memcpy(id->ip, b, 4);
    } else if (ip != NULL && inet_pton(AF_INET6, ip, b) == 1) {
        id->v6 = memcmp(b, mapped, 12) != 0;
        memcpy(id->ip, id->v6 ? b : b + 12, id->v6 ? 16 : 4);
    } else {
        id->bad_ip = true;
        return;
    }
    inet_ntop(id->v6 ? AF_INET6 : AF_INET, id->ip, id->ip_c, sizeof(id->ip_c));
    if (!id->v6) {
        memcpy(id->ip_i, id->ip_c, sizeof(id->ip_c));
        return;
    }
    for (int i = 0; i < 32; i++) {   /* dot-format nibbles, as RFC 4408 8.1 wrote them */
        uint8_t byte = id->ip[i / 2];
        id->ip_i[2 * i] = hex[i % 2 ? byte & 15 : byte >> 4];
        id->ip_i[2 * i + 1] = i < 31 ? '.' : '\0';
    }
}

/* <sender>, its local part and domain (4.3; 2.3 for HELO; 2.4 for <>). */
void spf_ident_init(struct spf_ident *id, const struct spf_request *req)
{
    memset(id, 0, sizeof(*id));
    const char *helo = req->helo != NULL ? req->helo : "";
    const char *sender = req->sender != NULL ? req->sender : "";
    id->helo = xstrdup(helo);
    id->receiver = xstrdup(req->receiver != NULL && req->receiver[0] ? req->receiver : "unknown");
    if (req->helo_identity || sender[0] == '\0') {
        id->local = xstrdup("postmaster");
        id->domain = xstrdup(helo);
    } else {
        const char *at = strrchr(sender, '@');
        id->local = at == NULL || at == sender ? xstrdup("postmaster")
                                               : xmemdup0(sender, (size_t)(at - sender));
        id->domain = xstrdup(at == NULL ? sender : at + 1);
    }
    /* RFC 8616 3: a U-label domain is checked, and expanded in macros, as
     * its A-label; one that is not a valid U-label is a malformed domain. */
    char *ace = idna_to_ascii(id->domain);
    bool idn_ok = ace != NULL;
    if (ace != NULL) {
        xfree(id->domain);
        id->domain = ace;
    }
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s@%s", id->local, id->domain);
    id->sender = xmemdup0(buf_ptr(&b), buf_size(&b));
    buf_free(&b);
    size_t n = strlen(id->domain);
    id->domain0 = xmemdup0(id->domain, n > 0 && id->domain[n - 1] == '.' ? n - 1 : n);
    id->domain_ok = idn_ok && initial_domain_ok(id->domain);
    parse_ip(id, req->ip);
}

void spf_ident_free(struct spf_ident *id)
{
    xfree(id->sender);
    xfree(id->local);
    xfree(id->domain);
    xfree(id->domain0);
    xfree(id->helo);
    xfree(id->receiver);
    memset(id, 0, sizeof(*id));
}
