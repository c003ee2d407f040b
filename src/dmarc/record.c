/*
 * dmarc/record.c - the DMARC record parser (RFC 7489 6.3, 6.4; np= of
 * RFC 9091) and the names of the enums; the contract is in dmarc.h.
 *
 * Layers: the record is split at ';' into tag-specs (name *WSP "=" *WSP
 * value, white space SP/HT only, tag names ALPHA *(ALPHA / DIGIT / "_"),
 * case-insensitive); then each known tag's value is read. The first
 * tag-spec must be v=DMARC1 (the version is case-sensitive, as in the
 * ABNF), else the text is not a DMARC record at all and discovery skips
 * it. Empty tag-specs (";;", a final ';') are allowed, as real records
 * have them.
 *
 * What makes a DMARC record invalid (no policy, 6.6.3): a tag given twice
 * (which value would rule?), p= missing or not none / quarantine / reject,
 * sp= present and invalid, bytes outside printable ASCII, more than 32
 * tags. The exception of 6.6.3 step 6: with a bad or missing p= (or a bad
 * sp=) and at least one valid rua= URI the record acts as p=none.
 *
 * Dropped for their defaults (6.3 "syntax errors in the remainder"): a
 * tag-spec that is not name=value ("v=DMARC1; p=none; reject"), pct=
 * outside 0..100, adkim/aspf= not r or s, fo= not a ':' list of 0 1 d s,
 * rf= not a ':' list of keywords, ri= not a 32-bit number, np= not a
 * policy; in rua/ruf a URI without a scheme or with a bad !size.
 * URIs: scheme ":" rest, no WSP ',' or '!' inside; "!" digits [kmgt]
 * sets the size limit (units of 2^10..2^40 bytes).
 */
#include <string.h>
#include <strings.h>

#include "core/str.h"
#include "core/xmalloc.h"
#include "dmarc/dmarc.h"

#define MAX_TAGS 32

struct span {
    const char *p;
    size_t n;
};

struct tagspec {
    struct span name, val;
};

static bool wsp(char c)
{
    return c == ' ' || c == '\t';
}

static struct span trim(const char *p, size_t n)
{
    while (n > 0 && wsp(p[0]))
        p++, n--;
    while (n > 0 && wsp(p[n - 1]))
        n--;
    return (struct span){ p, n };
}

static bool tag_name_ok(struct span s)
{
    if (s.n == 0 || !ascii_alpha(s.p[0]))
        return false;
    for (size_t i = 1; i < s.n; i++) {
        if (!ascii_alpha(s.p[i]) && !ascii_digit(s.p[i]) && s.p[i] != '_')
            return false;
    }
    return true;
}

/* Split into tag-specs; a malformed one is dropped and counted in *bad;
 * -1 for too many. */
static int split_tags(const char *s, size_t n, struct tagspec *t, size_t *nt, unsigned *bad)
{
    size_t i = 0;
    *nt = 0;
    while (i <= n) {
        const char *semi = i < n ? memchr(s + i, ';', n - i) : NULL;
        size_t end = semi != NULL ? (size_t)(semi - s) : n;
        struct span spec = trim(s + i, end - i);
        i = end + 1;
        if (spec.n == 0)
            continue;
        const char *eq = memchr(spec.p, '=', spec.n);
        struct span name = trim(spec.p, eq != NULL ? (size_t)(eq - spec.p) : 0);
        if (eq == NULL || !tag_name_ok(name)) {
            (*bad)++;
            continue;
        }
        if (*nt == MAX_TAGS)
            return -1;
        t[(*nt)++] = (struct tagspec){ name, trim(eq + 1, spec.n - (size_t)(eq + 1 - spec.p)) };
    }
    return 0;
}

static bool is(struct span s, const char *lit)
{
    return str_ieq(s.p, s.n, lit);
}

static int parse_policy(struct span v, enum dmarc_policy *out)
{
    if (is(v, "none"))
        *out = DMARC_P_NONE;
    else if (is(v, "quarantine"))
        *out = DMARC_P_QUARANTINE;
    else if (is(v, "reject"))
        *out = DMARC_P_REJECT;
    else
        return -1;
    return 0;
}

static int parse_align(struct span v, enum dmarc_align *out)
{
    if (is(v, "r"))
        *out = DMARC_RELAXED;
    else if (is(v, "s"))
        *out = DMARC_STRICT;
    else
        return -1;
    return 0;
}

/* Calls item() for each ':'-separated element (trimmed); -1 if any fails. */
static int colon_list(struct span v, int (*item)(struct span, unsigned *), unsigned *acc)
{
    size_t i = 0;
    while (i <= v.n) {
        const char *c = i < v.n ? memchr(v.p + i, ':', v.n - i) : NULL;
        size_t end = c != NULL ? (size_t)(c - v.p) : v.n;
        if (item(trim(v.p + i, end - i), acc) < 0)
            return -1;
        i = end + 1;
    }
    return 0;
}

static int fo_item(struct span s, unsigned *acc)
{
    static const struct { const char *w; unsigned bit; } fo[] = {
        { "0", DMARC_FO_0 }, { "1", DMARC_FO_1 }, { "d", DMARC_FO_D }, { "s", DMARC_FO_S },
    };
    for (size_t i = 0; i < sizeof(fo) / sizeof(fo[0]); i++) {
        if (is(s, fo[i].w)) {
            *acc |= fo[i].bit;
            return 0;
        }
    }
    return -1;
}

/* rf= keyword: ALPHA / DIGIT / "-" (the registry's format names); bit 1 = afrf */
static int rf_item(struct span s, unsigned *acc)
{
    if (s.n == 0)
        return -1;
    for (size_t i = 0; i < s.n; i++) {
        if (!ascii_alpha(s.p[i]) && !ascii_digit(s.p[i]) && s.p[i] != '-')
            return -1;
    }
    if (is(s, "afrf"))
        *acc |= 1;
    return 0;
}

/* "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] */
static int uri_size(struct span s, uint64_t *out)
{
    unsigned shift = 0;
    if (s.n > 0 && !ascii_digit(s.p[s.n - 1])) {
        const char *units = "kmgt";
        const char *u = s.p[s.n - 1] != '\0' ? strchr(units, ascii_lower(s.p[s.n - 1])) : NULL;
        if (u == NULL)
            return -1;
        shift = 10 * (unsigned)(u - units + 1);
        s.n--;
    }
    if (str_to_u64(s.p, s.n, UINT64_MAX >> shift, out) < 0)
        return -1;
    *out <<= shift;
    return 0;
}

static int parse_uri(struct span s, struct dmarc_uri *out)
{
    const char *bang = memchr(s.p, '!', s.n);
    struct span uri = { s.p, bang != NULL ? (size_t)(bang - s.p) : s.n };
    uint64_t size = 0;
    if (bang != NULL && uri_size((struct span){ bang + 1, s.n - uri.n - 1 }, &size) < 0)
        return -1;
    const char *colon = memchr(uri.p, ':', uri.n);
    if (colon == NULL || colon == uri.p || colon + 1 == uri.p + uri.n || !ascii_alpha(uri.p[0]))
        return -1;
    for (const char *c = uri.p; c < colon; c++) {
        if (!ascii_alpha(*c) && !ascii_digit(*c) && strchr("+-.", *c) == NULL)
            return -1;
    }
    for (size_t i = 0; i < uri.n; i++) {
        if (wsp(uri.p[i]))
            return -1;
    }
    out->uri = xmemdup0(uri.p, uri.n);
    out->max_size = size;
    out->mailto = str_ieq(uri.p, (size_t)(colon - uri.p), "mailto");
    return 0;
}

/* rua= / ruf=: ','-separated URIs; bad ones dropped. Returns how many. */
static size_t parse_uris(struct span v, struct dmarc_uri *uris, unsigned *ignored)
{
    size_t i = 0, n = 0;
    while (i <= v.n) {
        const char *c = i < v.n ? memchr(v.p + i, ',', v.n - i) : NULL;
        size_t end = c != NULL ? (size_t)(c - v.p) : v.n;
        struct span u = trim(v.p + i, end - i);
        if (n == DMARC_MAX_URIS || parse_uri(u, &uris[n]) < 0)
            (*ignored)++;
        else
            n++;
        i = end + 1;
    }
    return n;
}

static void set_defaults(struct dmarc_record *r)
{
    *r = (struct dmarc_record){ .pct = 100, .fo = DMARC_FO_0, .rf_afrf = true, .ri = 86400 };
}

static bool number(struct span v, uint64_t max, uint64_t *out)
{
    return str_to_u64(v.p, v.n, max, out) == 0;
}

/* One tag other than v, p, sp; false when its value is dropped or the tag
 * is unknown. */
static bool optional_tag(struct dmarc_record *r, const struct tagspec *t)
{
    struct span v = t->val;
    uint64_t num = 0;
    unsigned acc = 0;
    if (is(t->name, "np"))
        return (r->has_np = parse_policy(v, &r->np) == 0);
    if (is(t->name, "adkim"))
        return parse_align(v, &r->adkim) == 0;
    if (is(t->name, "aspf"))
        return parse_align(v, &r->aspf) == 0;
    if (is(t->name, "rua")) {
        r->nrua = parse_uris(v, r->rua, &r->ignored);
        return true;
    }
    if (is(t->name, "ruf")) {
        r->nruf = parse_uris(v, r->ruf, &r->ignored);
        return true;
    }
    if (is(t->name, "pct") && number(v, 100, &num)) {
        r->pct = (unsigned)num;
        return true;
    }
    if (is(t->name, "ri") && number(v, UINT32_MAX, &num)) {
        r->ri = (uint32_t)num;
        return true;
    }
    if (is(t->name, "fo") && colon_list(v, fo_item, &acc) == 0) {
        r->fo = acc;
        return true;
    }
    if (is(t->name, "rf") && colon_list(v, rf_item, &acc) == 0) {
        r->rf_afrf = acc != 0;
        return true;
    }
    return false;
}

static bool printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 && s[i] != '\t')
            return false;
        if ((unsigned char)s[i] >= 0x7f)
            return false;
    }
    return true;
}

static bool dup_tag(const struct tagspec *t, size_t nt)
{
    for (size_t i = 0; i < nt; i++) {
        for (size_t j = i + 1; j < nt; j++) {
            if (t[i].name.n == t[j].name.n &&
                strncasecmp(t[i].name.p, t[j].name.p, t[i].name.n) == 0)
                return true;
        }
    }
    return false;
}

static bool starts_dmarc1(const char *s, size_t n)
{
    struct span all = trim(s, n);
    const char *semi = memchr(all.p, ';', all.n);
    struct span first = trim(all.p, semi != NULL ? (size_t)(semi - all.p) : all.n);
    const char *eq = memchr(first.p, '=', first.n);
    if (eq == NULL || !is(trim(first.p, (size_t)(eq - first.p)), "v"))
        return false;
    struct span v = trim(eq + 1, first.n - (size_t)(eq + 1 - first.p));
    return v.n == 6 && memcmp(v.p, "DMARC1", 6) == 0;
}

/* p= and sp=, with the rua= exception; -1 when the record gives no policy. */
static int main_policy(struct dmarc_record *r, const struct tagspec *t, size_t nt,
                       const char **why)
{
    bool p_ok = false, sp_ok = true;
    for (size_t i = 1; i < nt; i++) {
        if (is(t[i].name, "p"))
            p_ok = parse_policy(t[i].val, &r->p) == 0;
        else if (is(t[i].name, "sp"))
            sp_ok = (r->has_sp = parse_policy(t[i].val, &r->sp) == 0);
    }
    if (p_ok && sp_ok)
        return 0;
    if (r->nrua == 0)
        return *why = p_ok ? "invalid sp= value" : "p= missing or invalid", -1;
    r->p = r->sp = r->np = DMARC_P_NONE;   /* as if the record were "v=DMARC1; p=none" */
    r->has_sp = r->has_np = false;
    r->p_from_rua = true;
    return 0;
}

int dmarc_record_parse(const char *s, size_t n, struct dmarc_record *out, const char **why)
{
    struct tagspec t[MAX_TAGS];
    size_t nt = 0;
    const char *dummy;
    why = why != NULL ? why : &dummy;
    set_defaults(out);
    if (!starts_dmarc1(s, n))
        return *why = "not a DMARC record (v=DMARC1 first)", DMARC_REC_NOT_DMARC;
    int rc = DMARC_REC_INVALID;
    if (!printable(s, n))
        *why = "control or non-ASCII bytes";
    else if (split_tags(s, n, t, &nt, &out->ignored) < 0)
        *why = "too many tags";
    else if (dup_tag(t, nt))
        *why = "a tag appears twice";
    else
        rc = DMARC_REC_OK;
    for (size_t i = 1; rc == DMARC_REC_OK && i < nt; i++) {
        if (!is(t[i].name, "p") && !is(t[i].name, "sp") && !optional_tag(out, &t[i]))
            out->ignored++;
    }
    if (rc == DMARC_REC_OK && main_policy(out, t, nt, why) < 0)
        rc = DMARC_REC_INVALID;
    if (rc != DMARC_REC_OK) {
        dmarc_record_free(out);
        return rc;
    }
    out->sp = out->has_sp ? out->sp : out->p;
    out->np = out->has_np ? out->np : out->sp;
    return DMARC_REC_OK;
}

void dmarc_record_free(struct dmarc_record *r)
{
    for (size_t i = 0; i < r->nrua; i++)
        xfree(r->rua[i].uri);
    for (size_t i = 0; i < r->nruf; i++)
        xfree(r->ruf[i].uri);
    memset(r, 0, sizeof(*r));
}

/* ---- names ---------------------------------------------------------------- */

const char *dmarc_result_name(enum dmarc_result r)
{
    switch (r) {
    case DMARC_NONE: return "none";
    case DMARC_PASS: return "pass";
    case DMARC_FAIL: return "fail";
    case DMARC_TEMPERROR: return "temperror";
    case DMARC_PERMERROR: return "permerror";
    }
    return "permerror";
}

const char *dmarc_policy_name(enum dmarc_policy p)
{
    switch (p) {
    case DMARC_P_NONE: return "none";
    case DMARC_P_QUARANTINE: return "quarantine";
    case DMARC_P_REJECT: return "reject";
    }
    return "none";
}

const char *dmarc_from_name(enum dmarc_from f)
{
    switch (f) {
    case DMARC_FROM_OK: return "ok";
    case DMARC_FROM_MISSING: return "missing";
    case DMARC_FROM_MULTIPLE: return "multiple";
    case DMARC_FROM_MAILBOXES: return "mailboxes";
    case DMARC_FROM_NO_DOMAIN: return "no-domain";
    case DMARC_FROM_SYNTAX: return "syntax";
    case DMARC_FROM_HEADER: return "header";
    case DMARC_FROM_SENDER: return "sender";
    case DMARC_FROM_AMBIGUOUS: return "ambiguous";
    }
    return "syntax";
}
