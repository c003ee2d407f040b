/*
 * zone_parse.c - the zone master-file parser (RFC 1035 section 5) of the
 * zone-file backend: text in, a filled record table (dns/zone.h) and a
 * resolver out. The table and the lookups are in zone.c.
 *
 *   dns_zone_parse(name, text, len, out, err)  dns/zone.h; 0, or -1 and
 *                                              "name:line: what" in err
 *
 * Syntax: $ORIGIN (the origin starts at the root, so without it names are
 * just absolute names and a file may hold several zones), $TTL, "@", names
 * relative to the origin or absolute, a blank owner field meaning the
 * previous owner, optional TTL (seconds or 1w2d3h4m5s) and class IN in
 * either order, ( ) spanning lines, ; comments, "quoted strings" with \"
 * \\ and \DDD escapes. Types: A AAAA MX TXT PTR CNAME NS TLSA SOA (SOA is
 * checked and makes its owner exist; it cannot be queried). Anything else
 * is an error, as are $INCLUDE and a CNAME next to other data at its owner.
 * A TTL omitted everywhere defaults to $TTL, then the last TTL given, then
 * 3600. Identical records are kept once. "*" is an ordinary label: no
 * wildcards.
 *
 * Names (owners, $ORIGIN, $TEMPFAIL, NS/CNAME/PTR targets, MX exchange,
 * SOA) take RFC 1035 5.1 escapes: \DDD (decimal, 0 to 255) and \X (the
 * byte X), and are stored decoded, as raw text (dns.h), so "a\032b" is
 * the label "a b". Outside an escape a name byte must be printable ASCII
 * (IDNs as A-labels). Refused with file:line: a bad \DDD, and an escaped
 * '.' or NUL (\. \046 \000): raw text has no way to hold such a label,
 * so it could never be asked for (an escaped '.' is fine in the SOA's two
 * names, which are only checked: "john\.doe.example.").
 *
 * One non-standard directive, for offline tests of temporary failures:
 *   $TEMPFAIL <name> [<type>]   queries for that name (of that type only,
 *                               if given) answer DNS_TEMPFAIL
 *
 * Trust: the file is operator input, but its bytes are still parsed with
 * explicit bounds and every error names its line.
 */
#include "dns/zone.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/str.h"
#include "core/xmalloc.h"

#define MAX_FIELDS 65536         /* tokens in one entry */
#define DEFAULT_TTL 3600
#define TTL_MAX 2147483647u      /* RFC 2181 8 */
#define TYPE_SOA 6               /* parsed, not in enum dns_type */

/* ----------------------------------------------------------------- parser */

struct tok {
    const char *p;
    size_t n;
    unsigned line;
    bool quoted;
};

struct parser {
    const char *path;
    const char *s;
    size_t n, pos;
    unsigned line;
    struct buf *err;
    struct zone *z;
    struct tok *toks;           /* the current entry */
    size_t ntoks, captoks;
    bool blank_owner;           /* the entry's line starts with a blank */
    unsigned eline;             /* the entry's first line */
    char origin[NAME_MAX_LEN + 1];
    size_t originlen;
    char owner[NAME_MAX_LEN + 1];
    size_t ownerlen;
    bool have_owner;
    uint32_t dflt_ttl, last_ttl;
    bool have_dflt_ttl, have_last_ttl;
    char shown[NAME_MAX_LEN * 4 + 4];
};

static int perr(struct parser *p, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int perr(struct parser *p, unsigned line, const char *fmt, ...)
{
    buf_printf(p->err, "%s:%u: ", p->path, line);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(p->err, fmt, ap);
    va_end(ap);
    return -1;
}

/* Bytes made printable for an error message: \xNN escapes, cut at max
 * bytes (at most NAME_MAX_LEN). */
static const char *show_bytes(struct parser *p, const char *s, size_t n, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == max) {
            memcpy(p->shown + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\'') {
            p->shown[o++] = (char)c;
        } else {
            p->shown[o++] = '\\';
            p->shown[o++] = 'x';
            p->shown[o++] = hex[c >> 4];
            p->shown[o++] = hex[c & 15];
        }
    }
    p->shown[o] = '\0';
    return p->shown;
}

/* A token made printable for an error message, cut at 100 bytes. */
static const char *show(struct parser *p, const struct tok *t)
{
    return show_bytes(p, t->p, t->n, 100);
}

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* A backslash escapes the next byte, which must be on the same line. */
static int skip_escape(struct parser *p, unsigned line)
{
    if (p->pos + 1 >= p->n || p->s[p->pos + 1] == '\n')
        return perr(p, line, "backslash at the end of a line");
    if (p->s[p->pos + 1] == '\0')
        return perr(p, line, "NUL byte");
    p->pos += 2;
    return 0;
}

static int read_token(struct parser *p)
{
    if (p->ntoks == MAX_FIELDS)
        return perr(p, p->line, "more than %d fields in one entry", MAX_FIELDS);
    if (p->ntoks == p->captoks) {
        p->captoks = p->captoks ? p->captoks * 2 : 32;
        p->toks = xreallocarray(p->toks, p->captoks, sizeof(*p->toks));
    }
    struct tok *t = &p->toks[p->ntoks];
    t->line = p->line;
    t->quoted = p->s[p->pos] == '"';
    if (t->quoted)
        p->pos++;
    size_t start = p->pos;
    for (;;) {
        if (p->pos >= p->n) {
            if (t->quoted)
                return perr(p, t->line, "quoted string not closed");
            break;
        }
        char c = p->s[p->pos];
        if (c == '\0')
            return perr(p, p->line, "NUL byte");
        if (c == '\\') {
            if (skip_escape(p, t->line) < 0)
                return -1;
            continue;
        }
        if (t->quoted) {
            if (c == '"')
                break;
            if (c == '\n')
                return perr(p, t->line, "quoted string not closed before the end of the line");
        } else if (is_blank(c) || c == '\n' || c == ';' || c == '(' || c == ')' || c == '"') {
            break;
        }
        p->pos++;
    }
    t->p = p->s + start;
    t->n = p->pos - start;
    if (t->quoted)
        p->pos++;   /* the closing quote */
    p->ntoks++;
    return 0;
}

/* The next entry (a line, or lines joined by parentheses) into p->toks.
 * 1: an entry; 0: end of file; -1: error. */
static int read_entry(struct parser *p)
{
    for (;;) {
        if (p->pos >= p->n)
            return 0;
        p->ntoks = 0;
        p->blank_owner = is_blank(p->s[p->pos]);
        p->eline = p->line;
        unsigned open_line = 0;
        bool open = false;
        for (;;) {
            if (p->pos >= p->n) {
                if (open)
                    return perr(p, open_line, "'(' not closed before the end of the file");
                break;
            }
            char c = p->s[p->pos];
            if (is_blank(c)) {
                p->pos++;
            } else if (c == ';') {
                while (p->pos < p->n && p->s[p->pos] != '\n')
                    p->pos++;
            } else if (c == '\n') {
                p->pos++;
                p->line++;
                if (!open)
                    break;
            } else if (c == '(') {
                if (open)
                    return perr(p, p->line, "nested '('");
                open = true;
                open_line = p->line;
                p->pos++;
            } else if (c == ')') {
                if (!open)
                    return perr(p, p->line, "')' without '('");
                open = false;
                p->pos++;
            } else if (read_token(p) < 0) {
                return -1;
            }
        }
        if (p->ntoks > 0)
            return 1;
    }
}

/* The byte of a name field at t->p[*i], escapes decoded (\DDD, \X), into
 * *c; *i moves past it. 0, or -1 for a bad \DDD. */
static int name_byte(struct parser *p, const struct tok *t, size_t *i, unsigned char *c,
                     bool *escaped)
{
    *c = (unsigned char)t->p[*i];
    *escaped = *c == '\\';
    if (!*escaped) {
        *i += 1;
        return 0;
    }
    /* The tokenizer guarantees a byte after a backslash, in the token. */
    if (!ascii_digit(t->p[*i + 1])) {
        *c = (unsigned char)t->p[*i + 1];
        *i += 2;
        return 0;
    }
    uint64_t v;
    if (t->n - *i < 4 || str_to_u64(t->p + *i + 1, 3, 255, &v) < 0)
        return perr(p, t->line, "bad \\DDD escape in name '%s'", show(p, t));
    *c = (unsigned char)v;
    *i += 4;
    return 0;
}

/* A name field into out as raw text (case kept, escapes decoded, absolute,
 * no final dot, root ""). dot_ok: an escaped dot may stand in a label
 * (SOA names, only checked: "john\.doe.example."). */
static int parse_name_in(struct parser *p, const struct tok *t, bool dot_ok, char *out,
                         size_t *outlen)
{
    if (t->quoted)
        return perr(p, t->line, "a name cannot be quoted: \"%s\"", show(p, t));
    if (t->n == 1 && t->p[0] == '@') {
        memcpy(out, p->origin, p->originlen + 1);
        *outlen = p->originlen;
        return 0;
    }
    if (t->n == 1 && t->p[0] == '.') {
        out[0] = '\0';
        *outlen = 0;
        return 0;
    }
    bool absolute = false;
    size_t n = 0, label = 0;
    for (size_t i = 0; i < t->n;) {
        unsigned char c;
        bool escaped;
        if (name_byte(p, t, &i, &c, &escaped) < 0)
            return -1;
        if (escaped && ((c == '.' && !dot_ok) || c == '\0'))
            return perr(p, t->line, "%s inside a label is not supported: '%s'",
                        c ? "a dot" : "a NUL byte", show(p, t));
        if (!escaped && (c < 0x20 || c >= 0x7f))
            return perr(p, t->line, "invalid character in name '%s' (use A-labels for IDNs)",
                        show(p, t));
        if (!escaped && c == '.') {
            if (label == 0)
                return perr(p, t->line, "empty label in name '%s'", show(p, t));
            label = 0;
            absolute = i == t->n;
            if (absolute)
                break;
        } else if (++label > 63) {
            return perr(p, t->line, "label longer than 63 bytes in name '%s'", show(p, t));
        }
        if (n == NAME_MAX_LEN)
            return perr(p, t->line, "name longer than %d bytes: '%s'", NAME_MAX_LEN, show(p, t));
        out[n++] = (char)c;
    }
    if (!absolute && label == 0)
        return perr(p, t->line, "empty label in name '%s'", show(p, t));
    size_t total = n + (!absolute && p->originlen > 0 ? 1 + p->originlen : 0);
    if (total > NAME_MAX_LEN)
        return perr(p, t->line, "name longer than %d bytes: '%s'", NAME_MAX_LEN, show(p, t));
    if (!absolute && p->originlen > 0) {
        out[n] = '.';
        memcpy(out + n + 1, p->origin, p->originlen);
    }
    out[total] = '\0';
    *outlen = total;
    return 0;
}

static int parse_name(struct parser *p, const struct tok *t, char *out, size_t *outlen)
{
    return parse_name_in(p, t, false, out, outlen);
}

/* A name field as an answer string: "." for the root. */
static int parse_target(struct parser *p, const struct tok *t, char **out)
{
    char name[NAME_MAX_LEN + 1];
    size_t len;
    if (parse_name(p, t, name, &len) < 0)
        return -1;
    *out = len ? xmemdup0(name, len) : xstrdup(".");
    return 0;
}

/* 3600, or 1w2d3h4m5s in any combination of units. */
static int parse_ttl(const struct tok *t, uint32_t *out)
{
    if (t->quoted || t->n == 0)
        return -1;
    uint64_t total = 0;
    size_t i = 0;
    while (i < t->n) {
        size_t start = i;
        while (i < t->n && ascii_digit(t->p[i]))
            i++;
        uint64_t v, mul = 1;
        if (str_to_u64(t->p + start, i - start, TTL_MAX, &v) < 0)
            return -1;
        if (i < t->n) {
            switch (ascii_lower(t->p[i])) {
            case 's': mul = 1; break;
            case 'm': mul = 60; break;
            case 'h': mul = 3600; break;
            case 'd': mul = 86400; break;
            case 'w': mul = 604800; break;
            default: return -1;
            }
            i++;
        } else if (start > 0) {
            return -1;   /* "1h30": a number without unit only alone */
        }
        total += v * mul;
        if (total > TTL_MAX)
            return -1;
    }
    *out = (uint32_t)total;
    return 0;
}

static int parse_uint(struct parser *p, const struct tok *t, uint64_t max, const char *what,
                      uint64_t *out)
{
    if (t->quoted || str_to_u64(t->p, t->n, max, out) < 0)
        return perr(p, t->line, "bad %s '%s' (0 to %llu)", what, show(p, t),
                    (unsigned long long)max);
    return 0;
}

static const struct {
    const char *name;
    unsigned type;
} types[] = {
    { "A", DNS_T_A }, { "NS", DNS_T_NS }, { "CNAME", DNS_T_CNAME }, { "SOA", TYPE_SOA },
    { "PTR", DNS_T_PTR }, { "MX", DNS_T_MX }, { "TXT", DNS_T_TXT }, { "AAAA", DNS_T_AAAA },
    { "TLSA", DNS_T_TLSA },
};

static unsigned type_code(const struct tok *t)
{
    if (t->quoted)
        return 0;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (str_ieq(t->p, t->n, types[i].name))
            return types[i].type;
    return 0;
}

static int parse_type(struct parser *p, const struct tok *t, unsigned *type)
{
    *type = type_code(t);
    if (*type == 0)
        return perr(p, t->line, "unknown or unsupported type '%s'", show(p, t));
    return 0;
}

static bool is_class(const struct tok *t)
{
    static const char *const classes[] = { "IN", "CH", "CS", "HS", "NONE", "ANY" };
    for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
        if (!t->quoted && str_ieq(t->p, t->n, classes[i]))
            return true;
    return false;
}

/* One character-string (quoted or not) decoded and appended to out. */
static int parse_string(struct parser *p, const struct tok *t, struct buf *out)
{
    size_t before = buf_size(out);
    for (size_t i = 0; i < t->n; i++) {
        char c = t->p[i];
        if (c == '\\') {   /* the tokenizer guarantees a byte after it */
            i++;
            if (ascii_digit(t->p[i])) {
                uint64_t v;
                if (i + 3 > t->n || str_to_u64(t->p + i, 3, 255, &v) < 0)
                    return perr(p, t->line, "bad \\DDD escape in \"%s\"", show(p, t));
                c = (char)v;
                i += 2;
            } else {
                c = t->p[i];
            }
        }
        buf_append_byte(out, c);
    }
    if (buf_size(out) - before > 255)
        return perr(p, t->line, "string longer than 255 bytes: \"%s\"", show(p, t));
    return 0;
}

static int parse_tlsa(struct parser *p, const struct tok *rd, size_t nr, struct dns_rr *rr)
{
    if (nr < 4)
        return perr(p, p->eline, "TLSA needs usage, selector, matching type and hex data");
    uint64_t f[3];
    static const char *const what[] = { "TLSA usage", "TLSA selector", "TLSA matching type" };
    for (int i = 0; i < 3; i++)
        if (parse_uint(p, &rd[i], 255, what[i], &f[i]) < 0)
            return -1;
    struct buf data = { 0 };
    int hi = -1;
    for (size_t k = 3; k < nr; k++) {
        for (size_t i = 0; i < rd[k].n; i++) {
            int v = rd[k].quoted ? -1 : ascii_hex_value(rd[k].p[i]);
            if (v < 0) {
                buf_free(&data);
                return perr(p, rd[k].line, "bad hex in TLSA data '%s'", show(p, &rd[k]));
            }
            if (hi < 0) {
                hi = v;
            } else {
                buf_append_byte(&data, (char)(hi << 4 | v));
                hi = -1;
            }
        }
    }
    if (hi >= 0) {
        buf_free(&data);
        return perr(p, rd[nr - 1].line, "odd number of hex digits in TLSA data");
    }
    rr->u.tlsa.usage = (uint8_t)f[0];
    rr->u.tlsa.selector = (uint8_t)f[1];
    rr->u.tlsa.mtype = (uint8_t)f[2];
    rr->u.tlsa.len = buf_size(&data);
    rr->u.tlsa.data = (uint8_t *)xmemdup0(buf_ptr(&data), buf_size(&data));
    buf_free(&data);
    return 0;
}

static int parse_addr(struct parser *p, const struct tok *t, int af, void *out)
{
    char text[INET6_ADDRSTRLEN];
    if (t->quoted || t->n >= sizeof(text))
        return perr(p, t->line, "bad %s address '%s'", af == AF_INET ? "IPv4" : "IPv6",
                    show(p, t));
    memcpy(text, t->p, t->n);
    text[t->n] = '\0';
    if (inet_pton(af, text, out) != 1)
        return perr(p, t->line, "bad %s address '%s'", af == AF_INET ? "IPv4" : "IPv6",
                    show(p, t));
    return 0;
}

static int want_fields(struct parser *p, const char *type, size_t nr, size_t want,
                       const char *what)
{
    if (nr == want)
        return 0;
    return perr(p, p->eline, "%s needs %s (%zu field%s given)", type, what, nr,
                nr == 1 ? "" : "s");
}

/* SOA: checked, then only marks its owner. */
static int parse_soa(struct parser *p, const struct tok *rd, size_t nr)
{
    if (want_fields(p, "SOA", nr, 7, "mname rname serial refresh retry expire minimum") < 0)
        return -1;
    char name[NAME_MAX_LEN + 1];
    size_t len;
    uint64_t serial;
    uint32_t v;
    if (parse_name_in(p, &rd[0], true, name, &len) < 0 ||
        parse_name_in(p, &rd[1], true, name, &len) < 0 ||
        parse_uint(p, &rd[2], UINT32_MAX, "SOA serial", &serial) < 0)
        return -1;
    for (size_t i = 3; i < 7; i++)
        if (parse_ttl(&rd[i], &v) < 0)
            return perr(p, rd[i].line, "bad SOA time '%s'", show(p, &rd[i]));
    return 0;
}

/* The record data for type from rd[0..nr) into rr. */
static int parse_rdata(struct parser *p, unsigned type, const struct tok *rd, size_t nr,
                       struct dns_rr *rr)
{
    uint64_t v;
    switch (type) {
    case DNS_T_A:
        if (want_fields(p, "A", nr, 1, "one IPv4 address") < 0)
            return -1;
        return parse_addr(p, &rd[0], AF_INET, rr->u.a);
    case DNS_T_AAAA:
        if (want_fields(p, "AAAA", nr, 1, "one IPv6 address") < 0)
            return -1;
        return parse_addr(p, &rd[0], AF_INET6, rr->u.aaaa);
    case DNS_T_MX:
        if (want_fields(p, "MX", nr, 2, "a preference and a host name") < 0 ||
            parse_uint(p, &rd[0], UINT16_MAX, "MX preference", &v) < 0)
            return -1;
        rr->u.mx.pref = (uint16_t)v;
        return parse_target(p, &rd[1], &rr->u.mx.host);
    case DNS_T_NS:
    case DNS_T_CNAME:
    case DNS_T_PTR:
        if (want_fields(p, dns_type_name((enum dns_type)type), nr, 1, "one name") < 0)
            return -1;
        return parse_target(p, &rd[0], &rr->u.name);
    case DNS_T_TXT: {
        if (nr == 0)
            return perr(p, p->eline, "TXT needs at least one string");
        struct buf b = { 0 };
        for (size_t i = 0; i < nr; i++) {
            if (parse_string(p, &rd[i], &b) < 0) {
                buf_free(&b);
                return -1;
            }
        }
        rr->u.txt.len = buf_size(&b);
        rr->u.txt.data = xmemdup0(buf_ptr(&b), buf_size(&b));
        buf_free(&b);
        return 0;
    }
    case DNS_T_TLSA:
        return parse_tlsa(p, rd, nr, rr);
    }
    abort();
}

/* Names compare case-insensitively for ASCII letters only. */
static bool name_eq(const char *a, const char *b)
{
    return str_ieq(a, strlen(a), b);
}

static bool rr_equal(const struct dns_rr *a, const struct dns_rr *b)
{
    switch (a->type) {
    case DNS_T_A: return memcmp(a->u.a, b->u.a, 4) == 0;
    case DNS_T_AAAA: return memcmp(a->u.aaaa, b->u.aaaa, 16) == 0;
    case DNS_T_MX:
        return a->u.mx.pref == b->u.mx.pref && name_eq(a->u.mx.host, b->u.mx.host);
    case DNS_T_NS:
    case DNS_T_CNAME:
    case DNS_T_PTR: return name_eq(a->u.name, b->u.name);
    case DNS_T_TXT:
        return a->u.txt.len == b->u.txt.len && memcmp(a->u.txt.data, b->u.txt.data, a->u.txt.len) == 0;
    case DNS_T_TLSA:
        return a->u.tlsa.usage == b->u.tlsa.usage && a->u.tlsa.selector == b->u.tlsa.selector &&
               a->u.tlsa.mtype == b->u.tlsa.mtype && a->u.tlsa.len == b->u.tlsa.len &&
               memcmp(a->u.tlsa.data, b->u.tlsa.data, a->u.tlsa.len) == 0;
    }
    return false;
}

static void rr_discard(const struct dns_rr *rr)
{
    struct dns_rr *one = xmalloc(sizeof(*one));
    *one = *rr;
    dns_answer_free_records(one, 1);
}

static void owner_key(const struct parser *p, char *key)
{
    for (size_t i = 0; i < p->ownerlen; i++)
        key[i] = ascii_lower(p->owner[i]);
    key[p->ownerlen] = '\0';
}

/* Add rr (of type, which may be TYPE_SOA with rr unused) at the current
 * owner. Takes ownership of what rr points to, also on error. */
static int add_record(struct parser *p, unsigned type, struct dns_rr *rr)
{
    char key[NAME_MAX_LEN + 1];
    owner_key(p, key);
    size_t idx = zone_mark_exists(p->z, key, p->ownerlen);   /* may move nodes */
    struct znode *nd = &p->z->nodes[idx];
    bool has_cname = znode_set(nd, DNS_T_CNAME) != NULL;
    bool has_other = (nd->flags & ZN_SOA) || nd->nsets > (has_cname ? 1u : 0u);
    const char *shown = p->ownerlen ? show_bytes(p, p->owner, p->ownerlen, NAME_MAX_LEN) : ".";
    if (type == TYPE_SOA) {
        if (has_cname)
            return perr(p, p->eline, "CNAME and other data at '%s'", shown);
        nd->flags |= ZN_SOA;
        return 0;
    }
    if ((type == DNS_T_CNAME && has_other) || (type != DNS_T_CNAME && has_cname)) {
        rr_discard(rr);
        return perr(p, p->eline, "CNAME and other data at '%s'", shown);
    }
    struct rrset *rs = znode_set(nd, type);
    if (rs == NULL) {
        nd->sets = xreallocarray(nd->sets, nd->nsets + 1, sizeof(*nd->sets));
        rs = &nd->sets[nd->nsets++];
        memset(rs, 0, sizeof(*rs));
        rs->type = (enum dns_type)type;
    }
    for (size_t i = 0; i < rs->n; i++) {
        if (rr_equal(&rs->rr[i], rr)) {
            rs->rr[i].ttl = rr->ttl < rs->rr[i].ttl ? rr->ttl : rs->rr[i].ttl;
            rr_discard(rr);
            return 0;
        }
    }
    if (type == DNS_T_CNAME && rs->n > 0) {
        rr_discard(rr);
        return perr(p, p->eline, "more than one CNAME at '%s'", shown);
    }
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 2;
        rs->rr = xreallocarray(rs->rr, rs->cap, sizeof(*rs->rr));
    }
    rs->rr[rs->n++] = *rr;
    return 0;
}

static int directive(struct parser *p)
{
    const struct tok *t = p->toks;
    size_t nargs = p->ntoks - 1;
    if (str_ieq(t[0].p, t[0].n, "$ORIGIN")) {
        if (nargs != 1)
            return perr(p, t[0].line, "$ORIGIN needs one name");
        char name[NAME_MAX_LEN + 1];
        size_t len;
        if (parse_name(p, &t[1], name, &len) < 0)
            return -1;
        memcpy(p->origin, name, len + 1);
        p->originlen = len;
        return 0;
    }
    if (str_ieq(t[0].p, t[0].n, "$TTL")) {
        if (nargs != 1)
            return perr(p, t[0].line, "$TTL needs one TTL");
        if (parse_ttl(&t[1], &p->dflt_ttl) < 0)
            return perr(p, t[1].line, "bad TTL '%s'", show(p, &t[1]));
        p->have_dflt_ttl = true;
        return 0;
    }
    if (str_ieq(t[0].p, t[0].n, "$INCLUDE"))
        return perr(p, t[0].line, "$INCLUDE is not supported: put all zones in one file");
    if (str_ieq(t[0].p, t[0].n, "$TEMPFAIL")) {
        if (nargs < 1 || nargs > 2)
            return perr(p, t[0].line, "$TEMPFAIL needs a name and optionally a type");
        char name[NAME_MAX_LEN + 1];
        size_t len;
        unsigned type = 0;
        if (parse_name(p, &t[1], name, &len) < 0 || (nargs == 2 && parse_type(p, &t[2], &type) < 0))
            return -1;
        if (type == TYPE_SOA)
            return perr(p, t[2].line, "$TEMPFAIL: SOA cannot be queried");
        str_lower(name);
        size_t idx = zone_node(p->z, name, len);   /* may move nodes */
        struct znode *nd = &p->z->nodes[idx];
        if (type == 0) {
            nd->flags |= ZN_TEMPFAIL;
        } else {
            nd->tf_types = xreallocarray(nd->tf_types, nd->ntf + 1, sizeof(*nd->tf_types));
            nd->tf_types[nd->ntf++] = (uint16_t)type;
        }
        return 0;
    }
    return perr(p, t[0].line, "unknown directive '%s'", show(p, &t[0]));
}

static int record(struct parser *p)
{
    const struct tok *t = p->toks;
    size_t nt = p->ntoks, i = 0;
    if (!p->blank_owner) {
        if (parse_name(p, &t[0], p->owner, &p->ownerlen) < 0)
            return -1;
        p->have_owner = true;
        i = 1;
    } else if (!p->have_owner) {
        return perr(p, p->eline, "no owner name: the first record starts with a blank");
    }
    uint32_t ttl = 0;
    bool have_ttl = false, have_class = false;
    while (i < nt && !t[i].quoted) {
        if (!have_ttl && t[i].n > 0 && ascii_digit(t[i].p[0])) {
            if (parse_ttl(&t[i], &ttl) < 0)
                return perr(p, t[i].line, "bad TTL '%s'", show(p, &t[i]));
            have_ttl = true;
        } else if (!have_class && is_class(&t[i])) {
            if (!str_ieq(t[i].p, t[i].n, "IN"))
                return perr(p, t[i].line, "class '%s' is not supported (only IN)", show(p, &t[i]));
            have_class = true;
        } else {
            break;
        }
        i++;
    }
    if (i >= nt)
        return perr(p, t[nt - 1].line, "missing type");
    unsigned type;
    if (parse_type(p, &t[i], &type) < 0)
        return -1;
    if (have_ttl) {
        p->last_ttl = ttl;
        p->have_last_ttl = true;
    } else {
        ttl = p->have_dflt_ttl ? p->dflt_ttl : p->have_last_ttl ? p->last_ttl : DEFAULT_TTL;
    }
    const struct tok *rd = &t[i + 1];
    size_t nr = nt - i - 1;
    if (type == TYPE_SOA)
        return parse_soa(p, rd, nr) < 0 ? -1 : add_record(p, type, NULL);
    struct dns_rr rr = { .type = (enum dns_type)type, .ttl = ttl };
    if (parse_rdata(p, type, rd, nr, &rr) < 0) {
        rr_discard(&rr);   /* whatever was allocated before the error */
        return -1;
    }
    return add_record(p, type, &rr);
}

int dns_zone_parse(const char *name, const char *text, size_t len, struct dns_resolver *out,
                   struct buf *err)
{
    struct parser p = { .path = name, .s = text, .n = len, .line = 1, .err = err };
    p.z = xcalloc(1, sizeof(*p.z));
    int rc;
    while ((rc = read_entry(&p)) > 0) {
        bool dir = !p.blank_owner && !p.toks[0].quoted && p.toks[0].p[0] == '$';
        if ((dir ? directive(&p) : record(&p)) < 0) {
            rc = -1;
            break;
        }
    }
    xfree(p.toks);
    if (rc < 0) {
        zone_free(p.z);
        out->ops = NULL;
        out->impl = NULL;
        return -1;
    }
    out->ops = &zone_ops;
    out->impl = p.z;
    return 0;
}
