/*
 * report.c - DMARC aggregate report rows: the writer, the strict reader,
 * and mailto: URIs; see report.h.
 *
 * Reading is layered: the line (length cap), exactly 18 fields split at
 * TAB, then per field the list syntax (',' between entries, ':' inside a
 * DKIM entry, '!' before a rua size), then percent-decoding of each value
 * into one arena as large as the line (a decoded value is never longer
 * than its encoding, and every separator leaves room for a NUL), then
 * meaning: enumerations, numbers through str_to_u64, domain names (1..253
 * octets of well-formed UTF-8, no space or control) and bounded free text.
 */
#include "dmarc/report.h"

#include <arpa/inet.h>
#include <string.h>

#include "core/str.h"
#include "core/xmalloc.h"
#include "msg/addr.h"

#define ROW_FIELDS 18
#define MAX_WHEN 253402300799ull   /* 9999-12-31T23:59:59Z */
#define MAX_TEXT 255

/* ---- writing -------------------------------------------------------------------- */

static void put(struct buf *out, const char *v)
{
    static const char hex[] = "0123456789ABCDEF";
    if (v == NULL || v[0] == '\0') {
        buf_append_byte(out, '-');
        return;
    }
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p < 0x21 || *p > 0x7e || *p == '%' || *p == ',' || *p == ':' || *p == '!' ||
            (*p == '-' && p == (const unsigned char *)v && p[1] == '\0')) {
            buf_append_byte(out, '%');
            buf_append_byte(out, hex[*p >> 4]);
            buf_append_byte(out, hex[*p & 15]);
        } else {
            buf_append_byte(out, (char)*p);
        }
    }
}

static void field(struct buf *out, const char *v)
{
    buf_append_byte(out, '\t');
    put(out, v);
}

/* One DKIM entry, or nothing when the reader would refuse it. */
static bool dkim_entry(const struct dmarc_row_dkim *d, struct buf *out)
{
    if (strlen(d->domain ? d->domain : "") > MAX_TEXT ||
        strlen(d->selector ? d->selector : "") > MAX_TEXT)
        return false;
    put(out, d->domain);
    buf_append_byte(out, ':');
    put(out, d->selector);
    buf_append_byte(out, ':');
    put(out, d->result);
    return true;
}

/* The DKIM results that fit the row: a report may carry a subset of them
 * (RFC 7489 appendix C, "auth_results"), so passes go first, then the
 * others in order; an entry whose domain or selector is too long for the
 * report is left out, and so is whatever passes DMARC_ROW_MAX_DKIM or
 * `room` bytes. The row itself is always written: every evaluated
 * message is counted. */
static void dkim_field(const struct dmarc_row *r, size_t room, struct buf *out)
{
    size_t kept = 0;
    for (int pass_first = 1; pass_first >= 0; pass_first--) {
        for (size_t i = 0; i < r->ndkim && kept < DMARC_ROW_MAX_DKIM; i++) {
            const char *res = r->dkim[i].result ? r->dkim[i].result : "";
            if ((strcmp(res, "pass") == 0) != (pass_first == 1))
                continue;
            struct buf one = { 0 };
            if (dkim_entry(&r->dkim[i], &one) && buf_size(out) + 1 + buf_size(&one) < room) {
                if (kept++ > 0)
                    buf_append_byte(out, ',');
                buf_append(out, buf_ptr(&one), buf_size(&one));
            }
            buf_free(&one);
        }
    }
    if (kept == 0)
        buf_append_byte(out, '-');
}

/* The rua URIs the reader takes (a scheme, at most 2048 bytes). */
static void rua_field(const struct dmarc_row *r, struct buf *out)
{
    size_t kept = 0;
    for (size_t i = 0; i < r->nrua && kept < DMARC_MAX_URIS; i++) {
        const char *u = r->rua[i].uri;
        if (u == NULL || strchr(u, ':') == NULL || strlen(u) > 2048)
            continue;
        if (kept++ > 0)
            buf_append_byte(out, ',');
        put(out, u);
        if (r->rua[i].max_size)
            buf_printf(out, "!%llu", (unsigned long long)r->rua[i].max_size);
    }
    if (kept == 0)
        buf_append_byte(out, '-');
}

void dmarc_row_format(const struct dmarc_row *r, struct buf *out)
{
    buf_printf(out, "DMARC1\t%lld", (long long)r->when);
    field(out, r->source_ip);
    field(out, r->header_from);
    field(out, r->envelope_from);
    field(out, r->policy_domain);
    field(out, dmarc_policy_name(r->p));
    field(out, dmarc_policy_name(r->sp));
    buf_printf(out, "\t%u", r->pct);
    field(out, r->adkim == DMARC_STRICT ? "s" : "r");
    field(out, r->aspf == DMARC_STRICT ? "s" : "r");
    field(out, dmarc_policy_name(r->disposition));
    field(out, r->dkim_pass ? "pass" : "fail");
    field(out, r->spf_pass ? "pass" : "fail");
    field(out, r->spf_domain);
    field(out, r->spf_result && r->spf_result[0] ? r->spf_result : "none");
    struct buf rua = { 0 }, dkim = { 0 };
    rua_field(r, &rua);
    /* What is left of the line cap goes to the DKIM results. */
    size_t used = buf_size(out) + 2 + buf_size(&rua);
    dkim_field(r, used < DMARC_ROW_MAX_LINE ? DMARC_ROW_MAX_LINE - used : 0, &dkim);
    buf_append_byte(out, '\t');
    buf_append(out, buf_ptr(&dkim), buf_size(&dkim));
    buf_append_byte(out, '\t');
    buf_append(out, buf_ptr(&rua), buf_size(&rua));
    buf_append_byte(out, '\n');
    buf_free(&rua);
    buf_free(&dkim);
}

/* ---- reading: values ---------------------------------------------------------------- */

struct span {
    const char *p;
    size_t n;
};

struct arena {
    char *p, *end;
};

/* Decode one encoded value into the arena; NULL with *why on error. */
static const char *decode(struct arena *a, struct span s, const char **why)
{
    if (s.n == 0) {
        *why = "empty value (an empty value is written -)";
        return NULL;
    }
    if ((size_t)(a->end - a->p) < s.n + 1) {
        *why = "row too long";   /* cannot happen: the arena is as long as the line */
        return NULL;
    }
    char *start = a->p;
    if (s.n == 1 && s.p[0] == '-') {
        *a->p++ = '\0';
        return start;
    }
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c == '%') {
            int hi = i + 2 < s.n ? ascii_hex_value(s.p[i + 1]) : -1;
            int lo = i + 2 < s.n ? ascii_hex_value(s.p[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                *why = "bad percent-encoding";
                return NULL;
            }
            c = (unsigned char)(hi << 4 | lo);
            if (c == 0) {
                *why = "NUL byte in a value";
                return NULL;
            }
            i += 2;
        } else if (c < 0x21 || c > 0x7e || c == ',' || c == ':' || c == '!') {
            *why = "byte that must be percent-encoded";
            return NULL;
        }
        *a->p++ = (char)c;
    }
    *a->p++ = '\0';
    return start;
}

static bool text_ok(const char *s, size_t max)
{
    return strlen(s) <= max;
}

/* A DNS name as the evaluator hands them out: well-formed UTF-8, no
 * space or control byte; min 0 allows the empty name. */
static bool name_ok(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max || !str_utf8_valid(s, n))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static int pick(const char *s, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return (int)i;
    return -1;
}

static const char *const policy_names[] = { "none", "quarantine", "reject" };
static const char *const align_names[] = { "r", "s" };
static const char *const verdict_names[] = { "fail", "pass" };
static const char *const spf_names[] = { "none", "neutral", "pass", "fail", "softfail",
                                         "temperror", "permerror" };
static const char *const dkim_names[] = { "none", "pass", "fail", "neutral", "policy",
                                          "temperror", "permerror" };
#define NAMES(a) a, sizeof(a) / sizeof(a[0])

/* ---- reading: fields ------------------------------------------------------------------ */

/* Split s at sep into at most max spans; -1 if there are more. */
static int split(struct span s, char sep, struct span *out, size_t max)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= s.n; i++) {
        if (i < s.n && s.p[i] != sep)
            continue;
        if (n == max)
            return -1;
        out[n++] = (struct span){ s.p + start, i - start };
        start = i + 1;
    }
    return (int)n;
}

static int parse_dkim(struct arena *a, struct span f, struct dmarc_row *r, const char **why)
{
    struct span ent[DMARC_ROW_MAX_DKIM], part[3];
    if (f.n == 1 && f.p[0] == '-')
        return 0;
    int n = split(f, ',', ent, DMARC_ROW_MAX_DKIM);
    if (n < 0)
        return *why = "more than 16 DKIM results", -1;
    for (int i = 0; i < n; i++) {
        if (split(ent[i], ':', part, 3) != 3)
            return *why = "DKIM result is not domain:selector:result", -1;
        struct dmarc_row_dkim *d = &r->dkim[i];
        if (!(d->domain = decode(a, part[0], why)) || !(d->selector = decode(a, part[1], why)) ||
            !(d->result = decode(a, part[2], why)))
            return -1;
        if (!text_ok(d->domain, MAX_TEXT) || !text_ok(d->selector, MAX_TEXT))
            return *why = "DKIM domain or selector too long", -1;
        if (pick(d->result, NAMES(dkim_names)) < 0)
            return *why = "unknown DKIM result", -1;
    }
    r->ndkim = (size_t)n;
    return 0;
}

static int parse_rua(struct arena *a, struct span f, struct dmarc_row_parsed *p, const char **why)
{
    struct span ent[DMARC_MAX_URIS], part[2];
    if (f.n == 1 && f.p[0] == '-')
        return 0;
    int n = split(f, ',', ent, DMARC_MAX_URIS);
    if (n < 0)
        return *why = "too many rua URIs", -1;
    for (int i = 0; i < n; i++) {
        int k = split(ent[i], '!', part, 2);
        if (k < 0)
            return *why = "rua URI with two sizes", -1;
        const char *uri = decode(a, part[0], why);
        if (uri == NULL)
            return -1;
        if (uri[0] == '\0' || strchr(uri, ':') == NULL || !text_ok(uri, 2048))
            return *why = "rua URI without a scheme", -1;
        uint64_t size = 0;
        if (k == 2 && (str_to_u64(part[1].p, part[1].n, UINT64_MAX, &size) < 0 || size == 0))
            return *why = "bad rua size", -1;
        p->rua[i] = (struct dmarc_uri){ .uri = (char *)uri, .max_size = size,
                                        .mailto = str_iprefix(uri, strlen(uri), "mailto:") };
    }
    p->row.rua = p->rua;
    p->row.nrua = (size_t)n;
    return 0;
}

static int enum_field(struct arena *a, struct span f, const char *const *names, size_t n,
                      int *out, const char **why)
{
    const char *v = decode(a, f, why);
    if (v == NULL)
        return -1;
    *out = pick(v, names, n);
    if (*out < 0)
        return *why = "unknown keyword", -1;
    return 0;
}

static int number_field(struct span f, uint64_t max, uint64_t *out, const char **why)
{
    if (str_to_u64(f.p, f.n, max, out) < 0)
        return *why = "bad number", -1;
    return 0;
}

/* Fields 1..5: when, ip, header_from, envelope_from, policy_domain. */
static int parse_who(struct arena *a, const struct span *f, struct dmarc_row *r, const char **why)
{
    uint64_t when;
    unsigned char ip[16];
    if (number_field(f[1], MAX_WHEN, &when, why) < 0)
        return -1;
    r->when = (time_t)when;
    if (!(r->source_ip = decode(a, f[2], why)) || !(r->header_from = decode(a, f[3], why)) ||
        !(r->envelope_from = decode(a, f[4], why)) || !(r->policy_domain = decode(a, f[5], why)))
        return -1;
    if (strlen(r->source_ip) >= 64 || (inet_pton(AF_INET, r->source_ip, ip) != 1 &&
                                       inet_pton(AF_INET6, r->source_ip, ip) != 1))
        return *why = "source IP is not an IP address", -1;
    if (!name_ok(r->header_from, 1, 253))
        return *why = "bad header From domain", -1;
    if (!name_ok(r->envelope_from, 0, 255))
        return *why = "bad envelope From domain", -1;
    if (!name_ok(r->policy_domain, 1, 253))
        return *why = "bad policy domain", -1;
    return 0;
}

/* Fields 6..15: the policy, the verdicts, SPF. */
static int parse_policy(struct arena *a, const struct span *f, struct dmarc_row *r,
                        const char **why)
{
    int p, sp, adkim, aspf, dis, dk, spf, res;
    uint64_t pct;
    if (enum_field(a, f[6], NAMES(policy_names), &p, why) < 0 ||
        enum_field(a, f[7], NAMES(policy_names), &sp, why) < 0 ||
        number_field(f[8], 100, &pct, why) < 0 ||
        enum_field(a, f[9], NAMES(align_names), &adkim, why) < 0 ||
        enum_field(a, f[10], NAMES(align_names), &aspf, why) < 0 ||
        enum_field(a, f[11], NAMES(policy_names), &dis, why) < 0 ||
        enum_field(a, f[12], NAMES(verdict_names), &dk, why) < 0 ||
        enum_field(a, f[13], NAMES(verdict_names), &spf, why) < 0)
        return -1;
    if (!(r->spf_domain = decode(a, f[14], why)) || !(r->spf_result = decode(a, f[15], why)))
        return -1;
    if (!text_ok(r->spf_domain, MAX_TEXT))
        return *why = "SPF domain too long", -1;
    if ((res = pick(r->spf_result, NAMES(spf_names))) < 0)
        return *why = "unknown SPF result", -1;
    r->p = (enum dmarc_policy)p;
    r->sp = (enum dmarc_policy)sp;
    r->pct = (unsigned)pct;
    r->adkim = adkim ? DMARC_STRICT : DMARC_RELAXED;
    r->aspf = aspf ? DMARC_STRICT : DMARC_RELAXED;
    r->disposition = (enum dmarc_policy)dis;
    r->dkim_pass = dk == 1;
    r->spf_pass = spf == 1;
    return 0;
}

int dmarc_row_parse(const char *line, size_t n, struct dmarc_row_parsed *out, const char **why)
{
    struct span f[ROW_FIELDS];
    memset(out, 0, sizeof(*out));
    if (n > DMARC_ROW_MAX_LINE)
        return *why = "line too long", -1;
    if (n > 0 && line[n - 1] == '\r')
        return *why = "CR at the end of the line", -1;
    if (split((struct span){ line, n }, '\t', f, ROW_FIELDS) != ROW_FIELDS)
        return *why = "not 18 tab-separated fields", -1;
    if (f[0].n != 6 || memcmp(f[0].p, "DMARC1", 6) != 0)
        return *why = "not a DMARC1 row", -1;
    out->mem = xmalloc(n + 2);
    struct arena a = { out->mem, out->mem + n + 2 };
    if (parse_who(&a, f, &out->row, why) < 0 || parse_policy(&a, f, &out->row, why) < 0 ||
        parse_dkim(&a, f[16], &out->row, why) < 0 || parse_rua(&a, f[17], out, why) < 0) {
        dmarc_row_parsed_free(out);
        return -1;
    }
    return 0;
}

void dmarc_row_parsed_free(struct dmarc_row_parsed *p)
{
    xfree(p->mem);
    memset(p, 0, sizeof(*p));
}

/* ---- mailto: ------------------------------------------------------------------------------ */

int dmarc_mailto(const char *uri, struct buf *addr, const char **domain)
{
    size_t n = strlen(uri);
    if (n > 2048 || !str_iprefix(uri, n, "mailto:"))
        return -1;
    const char *p = uri + 7, *end = memchr(p, '?', n - 7);
    if (end == NULL)
        end = uri + n;
    struct buf path = { 0 };
    buf_append_byte(&path, '<');
    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '%' && end - p >= 3 && ascii_hex_value(p[1]) >= 0 && ascii_hex_value(p[2]) >= 0) {
            c = (unsigned char)(ascii_hex_value(p[1]) << 4 | ascii_hex_value(p[2]));
            p += 2;
        } else if (c == '%') {
            c = 0;
        }
        if (c < 0x20 || c == 0x7f || c == ',' || c == '<' || c == '>') {
            buf_free(&path);   /* several addresses, or bytes no address has */
            return -1;
        }
        buf_append_byte(&path, (char)c);
    }
    buf_append_byte(&path, '>');
    struct mail_addr a;
    size_t used;
    size_t plen = buf_size(&path);
    int r = addr_parse_path(buf_ptr(&path), plen, ADDR_UTF8, &a, &used);
    buf_free(&path);
    if (r < 0)
        return -1;
    size_t tlen = strlen(a.text), dlen = strlen(a.domain);
    if (used != plen || a.null || dlen == 0 || a.domain[0] == '[' ||
        tlen <= dlen) {
        addr_free(&a);
        return -1;
    }
    buf_reset(addr);
    buf_append(addr, a.text, tlen - dlen);   /* local part as written, and '@' */
    size_t at = buf_size(addr);
    buf_append_str(addr, a.domain);
    *domain = buf_ptr(addr) + at;
    addr_free(&a);
    return 0;
}
