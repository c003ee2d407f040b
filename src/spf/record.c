/*
 * record - SPF record parsing (RFC 7208 4.5, 4.6, 5, 6 and the ABNF of 12),
 * and the Received-SPF header field (9.1).
 *
 * spf_record_is_v1() is the record-selection test: "v=spf1" in any case,
 * then SP or the end ("v=spf10" and "v=spf1mx" are not SPF records).
 *
 * spf_record_parse() checks the whole record before anything is evaluated,
 * so a syntax error anywhere is a permerror even when an earlier mechanism
 * would match (4.6). Terms are separated by one or more SP (0x20) only;
 * any other byte outside 0x21-0x7e inside a term is a syntax error. A term
 * is a modifier when it starts with name "=" (name = ALPHA *(ALPHA / DIGIT
 * / "-" / "_" / ".")), else a directive. redirect= and exp= must hold a
 * valid domain-spec and appear at most once; an unknown modifier must hold
 * a valid macro-string. Mechanism and modifier names are case-insensitive
 * (ABNF literals). For a and mx the dual-cidr-length is the longest suffix
 * of the form ["/" n]["//" n], so that "a:foo:bar/baz.example.com" keeps
 * its '/'. CIDR lengths have no leading zeros and stay within 32 / 128.
 *
 * Returns 0, or -1 with a short reason in err (printable, for logs and the
 * Received-SPF problem= field). The result owns copies of its strings.
 *
 * The other text form of SPF lives here too: spf_received_header() writes
 * the Received-SPF field (RFC 7208 9.1): the result, a comment, and the
 * key-value pairs client-ip, envelope-from, helo, receiver, mechanism (or
 * problem for the error results) and identity. Values are dot-atoms when
 * they can be, else quoted-strings; every byte outside printable ASCII
 * becomes '?', so untrusted identities cannot break the header; lines are
 * folded before 78 columns where words allow, ending in CRLF.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>

#include "core/str.h"
#include "core/xmalloc.h"
#include "spf/spf_int.h"

static bool is_alnum(char c) { return ascii_alpha(c) || ascii_digit(c); }

static int fail(struct buf *err, const char *what, const char *t, size_t n)
{
    buf_append_str(err, what);
    if (t != NULL) {
        buf_append_str(err, " '");
        spf_quote_for_msg(err, t, n > 64 ? 64 : n);
        buf_append_str(err, n > 64 ? "...'" : "'");
    }
    return -1;
}

void spf_quote_for_msg(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            buf_append_byte(b, (char)c);
        } else {
            char esc[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };
            buf_append(b, esc, 4);
        }
    }
}

bool spf_record_is_v1(const char *txt, size_t n)
{
    return str_iprefix(txt, n, "v=spf1") && (n == 6 || txt[6] == ' ');
}

const char *spf_mech_name(enum spf_mech_kind k)
{
    static const char *const names[] = { "all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists" };
    return names[k];
}

/* toplabel = ( *alphanum ALPHA *alphanum ) /
 *            ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) */
static bool toplabel_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    bool alpha = false, dash = false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '-')
            dash = true;
        else if (ascii_alpha(s[i]))
            alpha = true;
        else if (!ascii_digit(s[i]))
            return false;
    }
    if (!dash)
        return alpha;
    return is_alnum(s[0]) && is_alnum(s[n - 1]);
}

/* domain-spec = macro-string domain-end;
 * domain-end = ( "." toplabel [ "." ] ) / macro-expand */
static int domain_spec_ok(const char *s, size_t n, struct buf *err)
{
    if (n == 0)
        return fail(err, "empty domain-spec", NULL, 0);
    struct spf_macro_info info;
    if (spf_macro_check(s, n, SPF_MACRO_DOMAIN, &info, err) < 0)
        return -1;
    if (info.ends_macro)
        return 0;
    size_t end = s[n - 1] == '.' ? n - 1 : n;
    size_t dot = end;
    while (dot > 0 && s[dot - 1] != '.')
        dot--;
    if (dot == 0 || !toplabel_ok(s + dot, end - dot))
        return fail(err, "invalid domain-spec (must end in a top label or a macro)", s, n);
    return 0;
}

/* ip4-cidr-length = "/" ("0" / %x31-39 0*1DIGIT), ip6 up to 3 digits. */
static int cidr_num(const char *s, size_t n, unsigned max, uint8_t *out)
{
    uint64_t v;
    if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
        return -1;
    if (str_to_u64(s, n, max, &v) < 0)
        return -1;
    *out = (uint8_t)v;
    return 0;
}

static size_t digits_before(const char *s, size_t end)
{
    size_t j = end;
    while (j > 0 && ascii_digit(s[j - 1]))
        j--;
    return j;
}

/* Split a trailing dual-cidr-length off s[0..n); *rest = what precedes it. */
static int split_dual_cidr(const char *s, size_t n, struct spf_mech *m, size_t *rest,
                           struct buf *err)
{
    size_t end = n, j = digits_before(s, end);
    if (j < end && j >= 2 && s[j - 1] == '/' && s[j - 2] == '/') {
        if (cidr_num(s + j, end - j, 128, &m->cidr6) < 0)
            return fail(err, "invalid ip6-cidr-length in", m->text, strlen(m->text));
        end = j - 2;
        j = digits_before(s, end);
    }
    if (j < end && j >= 1 && s[j - 1] == '/' && !(j >= 2 && s[j - 2] == '/')) {
        if (cidr_num(s + j, end - j, 32, &m->cidr4) < 0)
            return fail(err, "invalid ip4-cidr-length in", m->text, strlen(m->text));
        end = j - 1;
    }
    *rest = end;
    return 0;
}

static bool qnum_ok(const char *s, size_t n)
{
    uint64_t v;
    return n >= 1 && n <= 3 && !(n > 1 && s[0] == '0') && str_to_u64(s, n, 255, &v) == 0;
}

static int parse_ip4(const char *s, size_t n, struct spf_mech *m)
{
    size_t slash = 0;
    while (slash < n && s[slash] != '/')
        slash++;
    size_t start = 0;
    for (int part = 0; part < 4; part++) {
        size_t e = start;
        while (e < slash && s[e] != '.')
            e++;
        if (!qnum_ok(s + start, e - start) || (part < 3 && e == slash) || (part == 3 && e != slash))
            return -1;
        uint64_t v;
        (void)str_to_u64(s + start, e - start, 255, &v);
        m->addr[part] = (uint8_t)v;
        start = e + 1;
    }
    if (slash < n && cidr_num(s + slash + 1, n - slash - 1, 32, &m->cidr4) < 0)
        return -1;
    return 0;
}

static int parse_ip6(const char *s, size_t n, struct spf_mech *m)
{
    size_t slash = 0;
    while (slash < n && s[slash] != '/')
        slash++;
    char tmp[64];
    if (slash == 0 || slash >= sizeof(tmp))
        return -1;
    for (size_t i = 0; i < slash; i++)
        if (!(ascii_digit(s[i]) || s[i] == ':' || s[i] == '.' ||
              (ascii_lower(s[i]) >= 'a' && ascii_lower(s[i]) <= 'f')))
            return -1;
    memcpy(tmp, s, slash);
    tmp[slash] = '\0';
    if (inet_pton(AF_INET6, tmp, m->addr) != 1)
        return -1;
    if (slash < n && cidr_num(s + slash + 1, n - slash - 1, 128, &m->cidr6) < 0)
        return -1;
    return 0;
}

static const struct {
    const char *name;
    enum spf_mech_kind kind;
} mech_names[] = {
    { "all", SPF_M_ALL }, { "include", SPF_M_INCLUDE }, { "a", SPF_M_A },
    { "mx", SPF_M_MX },   { "ptr", SPF_M_PTR },         { "ip4", SPF_M_IP4 },
    { "ip6", SPF_M_IP6 }, { "exists", SPF_M_EXISTS },
};

static int mech_kind(const char *s, size_t n, enum spf_mech_kind *out)
{
    for (size_t i = 0; i < sizeof(mech_names) / sizeof(mech_names[0]); i++)
        if (str_ieq(s, n, mech_names[i].name)) {
            *out = mech_names[i].kind;
            return 0;
        }
    return -1;
}

/* The argument part of a mechanism: arg[0..n) follows the name. */
static int parse_mech_arg(struct spf_mech *m, const char *arg, size_t n, struct buf *err)
{
    const char *t = m->text;
    size_t tn = strlen(t);
    switch (m->kind) {
    case SPF_M_ALL:
        return n == 0 ? 0 : fail(err, "'all' takes no argument:", t, tn);
    case SPF_M_IP4:
        if (n < 1 || arg[0] != ':' || parse_ip4(arg + 1, n - 1, m) < 0)
            return fail(err, "invalid ip4 mechanism", t, tn);
        return 0;
    case SPF_M_IP6:
        if (n < 1 || arg[0] != ':' || parse_ip6(arg + 1, n - 1, m) < 0)
            return fail(err, "invalid ip6 mechanism", t, tn);
        return 0;
    case SPF_M_INCLUDE:
    case SPF_M_EXISTS:
    case SPF_M_PTR:
        if (n == 0 && m->kind == SPF_M_PTR)
            return 0;
        if (n < 1 || arg[0] != ':')
            return fail(err, "mechanism needs ':' domain-spec:", t, tn);
        break;
    case SPF_M_A:
    case SPF_M_MX:
        if (n == 0)
            return 0;
        if (arg[0] == '/') {
            size_t rest;
            if (split_dual_cidr(arg, n, m, &rest, err) < 0)
                return -1;
            return rest == 0 ? 0 : fail(err, "invalid dual-cidr-length in", t, tn);
        }
        if (arg[0] != ':')
            return fail(err, "unknown mechanism", t, tn);
        if (split_dual_cidr(arg + 1, n - 1, m, &n, err) < 0)
            return -1;
        n++; /* count the ':' again */
        break;
    }
    if (domain_spec_ok(arg + 1, n - 1, err) < 0)
        return -1;
    m->domain = xmemdup0(arg + 1, n - 1);
    return 0;
}

static int parse_directive(const char *t, size_t n, struct spf_record *r, struct buf *err)
{
    struct spf_mech m = { .qual = SPF_PASS, .cidr4 = 32, .cidr6 = 128 };
    size_t i = 0;
    switch (t[0]) {
    case '+': m.qual = SPF_PASS, i = 1; break;
    case '-': m.qual = SPF_FAIL, i = 1; break;
    case '~': m.qual = SPF_SOFTFAIL, i = 1; break;
    case '?': m.qual = SPF_NEUTRAL, i = 1; break;
    default: break;
    }
    size_t name = i;
    while (i < n && is_alnum(t[i]))
        i++;
    if (mech_kind(t + name, i - name, &m.kind) < 0 || (i < n && t[i] != ':' && t[i] != '/'))
        return fail(err, "unknown mechanism", t, n);
    m.text = xmemdup0(t, n);
    if (parse_mech_arg(&m, t + i, n - i, err) < 0) {
        xfree(m.text);
        xfree(m.domain);
        return -1;
    }
    if (m.kind == SPF_M_ALL)
        r->has_all = true;
    if (r->nmech == r->cap) {   /* geometric: a 64 KiB record of "a a a ..." stays linear */
        r->cap = r->cap ? 2 * r->cap : 8;
        r->mech = xreallocarray(r->mech, r->cap, sizeof(*r->mech));
    }
    r->mech[r->nmech++] = m;
    return 0;
}

static int parse_modifier(const char *t, size_t n, size_t namelen, struct spf_record *r,
                          struct buf *err)
{
    const char *val = t + namelen + 1;
    size_t vn = n - namelen - 1;
    char **slot = NULL;
    if (str_ieq(t, namelen, "redirect"))
        slot = &r->redirect;
    else if (str_ieq(t, namelen, "exp"))
        slot = &r->exp;
    if (slot == NULL) {
        struct spf_macro_info info;
        if (spf_macro_check(val, vn, SPF_MACRO_MODIFIER, &info, err) < 0)
            return fail(err, " in modifier", t, n);
        return 0;
    }
    if (*slot != NULL)
        return fail(err, "modifier appears twice:", t, n);
    if (domain_spec_ok(val, vn, err) < 0)
        return fail(err, " in", t, n);
    *slot = xmemdup0(val, vn);
    return 0;
}

static int parse_term(const char *t, size_t n, struct spf_record *r, struct buf *err)
{
    if (ascii_alpha(t[0])) {
        size_t i = 1;
        while (i < n && (is_alnum(t[i]) || t[i] == '-' || t[i] == '_' || t[i] == '.'))
            i++;
        if (i < n && t[i] == '=')
            return parse_modifier(t, n, i, r, err);
    }
    return parse_directive(t, n, r, err);
}

int spf_record_parse(const char *txt, size_t n, struct spf_record *out, struct buf *err)
{
    memset(out, 0, sizeof(*out));
    if (!spf_record_is_v1(txt, n))
        return fail(err, "not an SPF version 1 record", NULL, 0);
    size_t i = 6;
    while (i < n) {
        if (txt[i] == ' ') {
            i++;
            continue;
        }
        size_t start = i;
        while (i < n && txt[i] != ' ')
            i++;
        if (parse_term(txt + start, i - start, out, err) < 0) {
            spf_record_free(out);
            return -1;
        }
    }
    return 0;
}

void spf_record_free(struct spf_record *r)
{
    for (size_t i = 0; i < r->nmech; i++) {
        xfree(r->mech[i].text);
        xfree(r->mech[i].domain);
    }
    xfree(r->mech);
    xfree(r->redirect);
    xfree(r->exp);
    memset(r, 0, sizeof(*r));
}

const char *spf_result_name(enum spf_result r)
{
    static const char *const names[] = { "none",     "neutral",   "pass",     "fail",
                                         "softfail", "temperror", "permerror" };
    return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "unknown";
}

/* ---- Received-SPF (RFC 7208 9.1) ---------------------------------------- */

struct fold {
    struct buf *out;
    size_t col;
};

/* Append one word, folding before it when the line would pass 78. */
static void fold_word(struct fold *f, const char *w, size_t n)
{
    if (f->col > 0 && f->col + 1 + n > 78) {
        buf_append_str(f->out, "\r\n");
        f->col = 0;
    }
    buf_append_byte(f->out, ' ');
    buf_append(f->out, w, n);
    f->col += 1 + n;
}

static bool atext(char c)
{
    return ascii_alpha(c) || ascii_digit(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* key=value; the value as a dot-atom when it is one, else quoted. */
static void fold_kv(struct fold *f, const char *key, const char *v, bool last)
{
    size_t n = strnlen(v, 256);
    bool atom = n > 0 && v[0] != '.' && v[n - 1] != '.';
    for (size_t i = 0; atom && i < n; i++)   /* v[0] is no dot: v[i - 1] exists */
        atom = atext(v[i]) || (v[i] == '.' && v[i - 1] != '.');
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s=", key);
    if (!atom)
        buf_append_byte(&b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!atom && (c == '"' || c == '\\'))
            buf_append_byte(&b, '\\');
        buf_append_byte(&b, c >= 0x20 && c < 0x7f ? (char)c : '?');
    }
    buf_append_str(&b, atom ? "" : "\"");
    buf_append_str(&b, last ? "" : ";");
    fold_word(f, buf_ptr(&b), buf_size(&b));
    buf_free(&b);
}

/* The comment, word by word, with ( ) \ escaped and controls replaced. */
static void fold_comment(struct fold *f, const char *text)
{
    struct buf w;
    buf_init(&w);
    buf_append_byte(&w, '(');
    for (const char *p = text;; p++) {
        if (*p == ' ' || *p == '\0') {
            if (*p == '\0')
                buf_append_byte(&w, ')');
            if (buf_size(&w) > 0)
                fold_word(f, buf_ptr(&w), buf_size(&w));
            buf_reset(&w);
            if (*p == '\0')
                break;
            continue;
        }
        unsigned char c = (unsigned char)*p;
        if (c == '(' || c == ')' || c == '\\')
            buf_append_byte(&w, '\\');
        buf_append_byte(&w, c > 0x20 && c < 0x7f ? (char)c : '?');
    }
    buf_free(&w);
}

static void comment_text(const struct spf_outcome *o, const struct spf_request *req,
                         const char *who, struct buf *c)
{
    const char *ip = req->ip != NULL ? req->ip : "";
    buf_printf(c, "%s%s", req->receiver != NULL ? req->receiver : "",
               req->receiver != NULL ? ": " : "");
    switch (o->result) {
    case SPF_PASS: buf_printf(c, "domain of %s designates %s as permitted sender", who, ip); break;
    case SPF_FAIL:
        buf_printf(c, "domain of %s does not designate %s as permitted sender", who, ip);
        break;
    case SPF_SOFTFAIL:
        buf_printf(c, "domain of transitioning %s does not designate %s as permitted sender",
                   who, ip);
        break;
    case SPF_NEUTRAL:
        buf_printf(c, "%s is neither permitted nor denied by domain of %s", ip, who);
        break;
    case SPF_NONE: buf_printf(c, "domain of %s does not designate permitted sender hosts", who); break;
    case SPF_TEMPERROR: buf_printf(c, "temporary error checking %s: %s", who, o->reason); break;
    case SPF_PERMERROR: buf_printf(c, "permanent error in the SPF policy of %s: %s", who, o->reason); break;
    }
}

void spf_received_header(const struct spf_outcome *o, const struct spf_request *req,
                         struct buf *out)
{
    const char *helo = req->helo != NULL ? req->helo : "";
    const char *sender = req->sender != NULL && req->sender[0] ? req->sender : "<>";
    struct buf who, c;
    buf_init(&who);
    buf_init(&c);
    if (req->helo_identity || sender[0] == '<')
        buf_printf(&who, "postmaster@%s", helo);
    else
        buf_append_str(&who, sender);
    buf_append_str(out, "Received-SPF:");
    struct fold f = { out, strlen("Received-SPF:") };
    fold_word(&f, spf_result_name(o->result), strlen(spf_result_name(o->result)));
    comment_text(o, req, buf_ptr(&who), &c);
    fold_comment(&f, buf_ptr(&c));
    fold_kv(&f, "client-ip", req->ip != NULL ? req->ip : "", false);
    fold_kv(&f, "envelope-from", sender, false);
    fold_kv(&f, "helo", helo, false);
    if (req->receiver != NULL)
        fold_kv(&f, "receiver", req->receiver, false);
    bool err = o->result == SPF_TEMPERROR || o->result == SPF_PERMERROR;
    if (err || o->mechanism != NULL)
        fold_kv(&f, err ? "problem" : "mechanism", err ? o->reason : o->mechanism, false);
    fold_kv(&f, "identity", req->helo_identity ? "helo" : "mailfrom", true);
    buf_append_str(out, "\r\n");
    buf_free(&who);
    buf_free(&c);
}
