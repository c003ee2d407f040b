/*
 * dkim/verify.c - the DKIM verifier (RFC 6376 6, RFC 8301, RFC 8463) as a
 * pull-style state machine, and its drivers over dns/ (dkim_verify_keys,
 * dkim_verify_opt).
 *
 * dkim_verify_new() does everything that needs no DNS, for each
 * DKIM-Signature field from the top: tag list, required tags (v a b bh d h
 * s), v=1, the algorithm (rsa-sha1 fails per RFC 8301), c=, q=, h= naming
 * From, i= within d=, t=/x= against the caller's clock, l=, the body hash
 * (one canonical body per body canonicalization, shared by the signatures)
 * and the header hash input (h= fields picked bottom-up, each instance once,
 * then this field with the b= value removed and no final CRLF; the fields
 * are found through a name index, so the work is linear in the message).
 * At most DKIM_MAX_SIGS signatures are evaluated: those near the From
 * domain first, then the other parseable ones, junk last, so unparseable
 * fields cannot push a real signature out. A signature that survives waits
 * for its key: dkim_verify_keys() asks for every key at once and
 * dkim_verify_expire() ends the wait (temperror for what has not
 * answered); the pull form, dkim_verify_step() and dkim_verify_answer(),
 * hands out one question at a time.
 *
 * Result words: see dkim.h. Reasons are short texts for logs and the
 * Authentication-Results comment.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/idna.h"
#include "core/str.h"
#include "core/xmalloc.h"
#include "dkim/dkim_int.h"
#include "msg/authres.h"
#include "msg/author.h"

#define MAX_H 128           /* names in h= */
#define FUTURE_SLACK 300    /* seconds of clock skew tolerated for t= */
#define MAX_TIME ((uint64_t)1 << 40)

struct vsig {
    char *d, *s, *a, *i, *reason, *qname;
    enum dkim_algo algo;
    struct buf sig, hdata;
    bool need_key;
};

struct keyq {              /* one key lookup in flight */
    struct dkim_verify *v;
    size_t k;
};

struct dkim_verify {
    dkim_done_cb done;   /* dkim_verify_keys(): whom to tell */
    void *done_arg;
    struct keyq q[DKIM_MAX_SIGS];
    size_t pending;      /* lookups in flight, plus one while asking */
    bool finished;       /* done has been called */
    size_t skipped;      /* DKIM-Signature fields past DKIM_MAX_SIGS */
    struct vsig sig[DKIM_MAX_SIGS];
    struct dkim_sig_result res[DKIM_MAX_SIGS];
    size_t n, cur;
    uint64_t now;
    bool accept_partial;
    struct buf body[2];        /* canonical body, by enum dkim_canon */
    bool body_done[2];
    const char *msg_body;
    size_t body_len;
};

static void set(struct dkim_verify *v, size_t k, enum dkim_result r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set(struct dkim_verify *v, size_t k, enum dkim_result r, const char *fmt, ...)
{
    struct buf b = { 0 };
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    xfree(v->sig[k].reason);
    v->sig[k].reason = xstrdup(buf_ptr(&b));
    buf_free(&b);
    v->res[k].result = r;
    v->res[k].reason = v->sig[k].reason;
    v->sig[k].need_key = false;
}

static char *tag_dup(const struct dkim_tags *t, const char *name)
{
    const struct dkim_tag *g = dkim_tag_find(t, name);
    return g != NULL ? xmemdup0(g->val, g->val_len) : xstrdup("");
}

/* A domain or selector we are willing to put in a query. */
static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(ascii_alpha(c) || ascii_digit(c) || c == '-' || c == '_' || c == '.') ||
            (c == '.' && s[i + 1] == '.'))
            return false;
    }
    return true;
}

/* i= is "[local]@domain" with domain d or a subdomain of it; strict: equal. */
static bool identity_ok(const char *i, const char *d, bool strict)
{
    const char *at = strrchr(i, '@');
    if (at == NULL)
        return false;
    const char *dom = at + 1;
    size_t dn = strlen(dom), n = strlen(d);
    if (dn == n)
        return strcasecmp(dom, d) == 0;
    return !strict && dn > n && dom[dn - n - 1] == '.' && strcasecmp(dom + dn - n, d) == 0;
}

static int get_num(const struct dkim_tags *t, const char *name, uint64_t max, uint64_t *out,
                   bool *has)
{
    const struct dkim_tag *g = dkim_tag_find(t, name);
    *has = g != NULL;
    return g == NULL ? 0 : str_to_u64(g->val, g->val_len, max, out);
}

/* Checks that need only the tags: NULL, or the permerror reason. Sets the
 * canonicalizations; fail results (rsa-sha1, time) are set directly and
 * reported as "" (stop, already set). */
static const char *check_tags(struct dkim_verify *v, size_t k, const struct dkim_tags *t,
                              enum dkim_canon *hc, enum dkim_canon *bc)
{
    static const char *const req[] = { "v", "a", "b", "bh", "d", "h", "s" };
    struct vsig *vs = &v->sig[k];
    for (size_t j = 0; j < sizeof(req) / sizeof(req[0]); j++) {
        if (dkim_tag_find(t, req[j]) == NULL)
            return req[j][0] == 'v' ? "missing v= tag" : "missing required tag";
    }
    const struct dkim_tag *g = dkim_tag_find(t, "v");
    if (!(g->val_len == 1 && g->val[0] == '1'))
        return "unsupported v= version";
    g = dkim_tag_find(t, "a");
    if (dkim_tag_is(g, "rsa-sha1"))
        return set(v, k, DKIM_FAIL, "rsa-sha1 is not accepted (RFC 8301)"), "";
    if (dkim_tag_is(g, "rsa-sha256"))
        vs->algo = DKIM_A_RSA_SHA256;
    else if (dkim_tag_is(g, "ed25519-sha256"))
        vs->algo = DKIM_A_ED25519_SHA256;
    else
        return "unknown algorithm a=";
    g = dkim_tag_find(t, "c");
    *hc = *bc = DKIM_CANON_SIMPLE;
    if (g != NULL && dkim_canon_parse(g->val, g->val_len, hc, bc) < 0)
        return "unknown canonicalization c=";
    g = dkim_tag_find(t, "q");
    /* q= is a list; methods other than dns/txt are ignored (RFC 6376 3.5) */
    if (g != NULL && !dkim_tag_list_has(g, "dns/txt"))
        return "no supported query method in q=";
    if (!dkim_tag_list_has(dkim_tag_find(t, "h"), "from"))
        return "h= does not include From";
    if (!name_ok(vs->d) || !name_ok(vs->s))
        return "malformed d= or s=";
    if (!identity_ok(vs->i, vs->d, false))
        return "i= is not within d=";
    uint64_t ts = 0, xs = 0;
    bool has_t, has_x;
    if (get_num(t, "t", MAX_TIME, &ts, &has_t) < 0 || get_num(t, "x", MAX_TIME, &xs, &has_x) < 0)
        return "malformed t= or x=";
    if (has_t && has_x && xs < ts)
        return "x= is before t=";
    if (has_x && v->now > xs)
        return set(v, k, DKIM_FAIL, "signature expired (x=)"), "";
    if (has_t && ts > v->now + FUTURE_SLACK)
        return set(v, k, DKIM_FAIL, "signature timestamp is in the future (t=)"), "";
    return NULL;
}

static const struct buf *canon_body(struct dkim_verify *v, enum dkim_canon c)
{
    if (!v->body_done[c]) {
        dkim_canon_body(c, v->msg_body, v->body_len, &v->body[c]);
        v->body_done[c] = true;
    }
    return &v->body[c];
}

/* 0 ok (partial set when l= leaves some body out), -1 result set. */
static int check_body(struct dkim_verify *v, size_t k, const struct dkim_tags *t,
                      enum dkim_canon bc)
{
    uint64_t l = 0;
    bool has_l;
    struct buf bh = { 0 };
    if (get_num(t, "l", UINT64_MAX / 2, &l, &has_l) < 0)
        return set(v, k, DKIM_PERMERROR, "malformed l="), -1;
    const struct dkim_tag *g = dkim_tag_find(t, "bh");
    int bad = b64_decode(g->val, g->val_len, B64_SKIP_WS, &bh) < 0 || buf_size(&bh) != 32;
    if (bad) {
        buf_free(&bh);
        return set(v, k, DKIM_PERMERROR, "malformed bh="), -1;
    }
    const struct buf *body = canon_body(v, bc);
    size_t len = buf_size(body);
    if (has_l && l > len) {
        buf_free(&bh);
        return set(v, k, DKIM_FAIL, "l= is longer than the body"), -1;
    }
    if (has_l && l < len) {
        v->res[k].partial_body = true;
        len = (size_t)l;
    }
    unsigned char h[32];
    unsigned int hl = 32;
    if (EVP_Digest(buf_ptr(body), len, h, &hl, EVP_sha256(), NULL) != 1)
        abort();
    bad = memcmp(h, buf_ptr(&bh), 32) != 0;
    buf_free(&bh);
    if (bad)
        return set(v, k, DKIM_FAIL, "body hash did not verify"), -1;
    return 0;
}

/* The header hash input: h= fields bottom-up, then this field without b=. */
static int build_hdata(struct dkim_verify *v, size_t k, const struct dkim_tags *t,
                       const struct dkim_hdr *hdrs, struct dkim_hindex *idx, size_t self,
                       enum dkim_canon hc)
{
    struct vsig *vs = &v->sig[k];
    const struct dkim_tag *h = dkim_tag_find(t, "h");
    dkim_hindex_reset(idx);
    size_t i = 0, count = 0;
    while (i <= h->val_len) {
        size_t j = i;
        while (j < h->val_len && h->val[j] != ':')
            j++;
        size_t a = i, b = j;
        while (a < b && strchr(" \t\r\n", h->val[a]) != NULL)
            a++;
        while (b > a && strchr(" \t\r\n", h->val[b - 1]) != NULL)
            b--;
        if (a == b || ++count > MAX_H)
            return set(v, k, DKIM_PERMERROR, "malformed h="), -1;
        long m = dkim_hindex_take(idx, h->val + a, b - a);
        if (m >= 0)
            dkim_canon_header(hc, hdrs[m].p, hdrs[m].len, &vs->hdata);
        i = j + 1;
    }
    const struct dkim_hdr *sh = &hdrs[self];
    size_t off = sh->name_len;
    while (sh->p[off] != ':')
        off++;
    off++;
    const struct dkim_tag *b = dkim_tag_find(t, "b");
    struct buf tmp = { 0 };
    buf_append(&tmp, sh->p, off + b->raw_start);
    buf_append(&tmp, sh->p + off + b->raw_end, sh->len - off - b->raw_end);
    size_t before = buf_size(&vs->hdata);
    dkim_canon_header(hc, buf_ptr(&tmp), buf_size(&tmp), &vs->hdata);
    buf_free(&tmp);
    if (buf_size(&vs->hdata) >= before + 2)
        vs->hdata.len -= 2;   /* no CRLF after the signature field */
    vs->hdata.data[vs->hdata.len] = '\0';
    return 0;
}

static void report_fields(struct dkim_verify *v, size_t k, const struct dkim_tags *t)
{
    struct vsig *vs = &v->sig[k];
    struct dkim_sig_result *r = &v->res[k];
    vs->d = tag_dup(t, "d");
    vs->s = tag_dup(t, "s");
    vs->a = tag_dup(t, "a");
    const struct dkim_tag *i = dkim_tag_find(t, "i");
    if (i != NULL) {
        vs->i = xmemdup0(i->val, i->val_len);
    } else {
        struct buf b = { 0 };
        buf_printf(&b, "@%s", vs->d);
        vs->i = xstrdup(buf_ptr(&b));
        buf_free(&b);
    }
    const struct dkim_tag *b = dkim_tag_find(t, "b");
    size_t n = 0;
    for (size_t j = 0; b != NULL && j < b->val_len && n < 8; j++) {
        char c = b->val[j];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
            r->b8[n++] = c;
    }
    r->b8[n] = '\0';
    r->d = vs->d;
    r->s = vs->s;
    r->a = vs->a;
    r->i = vs->i;
}

/* U-labels in d= and the domain of i= become A-labels (RFC 8616 4): the
 * key is looked up, and alignment compared, in that form. 0, or -1 for a
 * label that is not a valid U-label. */
static int ace_fields(struct dkim_verify *v, size_t k)
{
    struct vsig *vs = &v->sig[k];
    if (!idna_is_ascii(vs->d)) {
        char *d = idna_to_ascii(vs->d);
        if (d == NULL)
            return -1;
        xfree(vs->d);
        v->res[k].d = vs->d = d;
    }
    const char *at = strrchr(vs->i, '@');
    if (at != NULL && !idna_is_ascii(at + 1)) {
        char *dom = idna_to_ascii(at + 1);
        if (dom == NULL)
            return -1;
        struct buf b = { 0 };
        buf_append(&b, vs->i, (size_t)(at - vs->i) + 1);
        buf_append_str(&b, dom);
        xfree(dom);
        xfree(vs->i);
        v->res[k].i = vs->i = xstrdup(buf_ptr(&b));
        buf_free(&b);
    }
    return 0;
}

static void empty_fields(struct dkim_verify *v, size_t k)
{
    struct vsig *vs = &v->sig[k];
    vs->d = xstrdup("");
    vs->s = xstrdup("");
    vs->a = xstrdup("");
    vs->i = xstrdup("");
    v->res[k].d = vs->d;
    v->res[k].s = vs->s;
    v->res[k].a = vs->a;
    v->res[k].i = vs->i;
}

static void prepare_sig(struct dkim_verify *v, size_t k, const struct dkim_hdr *hdrs,
                        struct dkim_hindex *idx, size_t self)
{
    const struct dkim_hdr *sh = &hdrs[self];
    const char *colon = memchr(sh->p, ':', sh->len);
    size_t off = (size_t)(colon - sh->p) + 1;
    struct dkim_tags t;
    const char *why;
    if (dkim_tags_parse(sh->p + off, sh->len - off, &t, &why) < 0) {
        empty_fields(v, k);
        set(v, k, DKIM_PERMERROR, "malformed signature: %s", why);
        return;
    }
    report_fields(v, k, &t);
    if (ace_fields(v, k) < 0) {
        set(v, k, DKIM_PERMERROR, "d= or i= holds an invalid U-label");
        return;
    }
    enum dkim_canon hc, bc;
    why = check_tags(v, k, &t, &hc, &bc);
    if (why != NULL) {
        if (why[0] != '\0')
            set(v, k, DKIM_PERMERROR, "%s", why);
        return;
    }
    const struct dkim_tag *b = dkim_tag_find(&t, "b");
    if (b64_decode(b->val, b->val_len, B64_SKIP_WS, &v->sig[k].sig) < 0 || b->val_len == 0) {
        set(v, k, DKIM_PERMERROR, "malformed b=");
        return;
    }
    if (check_body(v, k, &t, bc) < 0 || build_hdata(v, k, &t, hdrs, idx, self, hc) < 0)
        return;
    struct buf q = { 0 };
    buf_printf(&q, "%s._domainkey.%s", v->sig[k].s, v->sig[k].d);
    v->sig[k].qname = xstrdup(buf_ptr(&q));
    buf_free(&q);
    v->sig[k].need_key = true;
}

/* d= and the From domain are the same or one is a subdomain of the other:
 * a cheap stand-in for DMARC alignment, good enough to order the slots. */
static bool near_from(const char *d, size_t dn, const char *from)
{
    size_t fn = strlen(from);
    if (dn == 0 || fn == 0)
        return false;
    if (dn == fn)
        return strncasecmp(d, from, dn) == 0;
    const char *lng = dn > fn ? d : from, *sht = dn > fn ? from : d;
    size_t ln = dn > fn ? dn : fn, sn = dn > fn ? fn : dn;
    return lng[ln - sn - 1] == '.' && strncasecmp(lng + ln - sn, sht, sn) == 0;
}

/* The DKIM-Signature fields to evaluate, at most DKIM_MAX_SIGS: first
 * those whose tag list parses and whose d= is near the From domain, then
 * the other parseable ones, then the unparseable ones, each in message
 * order. Junk fields thus never take a real signature's slot. */
static size_t choose_signatures(const char *msg, size_t len, const struct dkim_verify_opts *o,
                                const struct dkim_hdr *hdrs, size_t nh,
                                size_t slots[DKIM_MAX_SIGS], size_t *skipped)
{
    struct msg_author au = { 0 };
    const char *from = o != NULL ? o->from_domain : NULL;
    if (from == NULL)
        from = msg_author(msg, len, &au) == MSG_AUTHOR_OK ? au.mb[0].domain : "";
    /* One look at each field (its tags parsed once), the first
     * DKIM_MAX_SIGS of each kind kept in message order; then near, other,
     * junk. */
    size_t kept[3][DKIM_MAX_SIGS], nk[3] = { 0 }, total = 0;
    for (size_t j = 0; j < nh; j++) {
        if (!dkim_hdr_named(&hdrs[j], "DKIM-Signature", 14))
            continue;
        total++;
        const char *colon = memchr(hdrs[j].p, ':', hdrs[j].len);
        size_t off = (size_t)(colon - hdrs[j].p) + 1;
        struct dkim_tags t;
        const char *why;
        bool parses = dkim_tags_parse(hdrs[j].p + off, hdrs[j].len - off, &t, &why) == 0;
        const struct dkim_tag *d = parses ? dkim_tag_find(&t, "d") : NULL;
        int kind = d != NULL && near_from(d->val, d->val_len, from) ? 0 : parses ? 1 : 2;
        if (nk[kind] < DKIM_MAX_SIGS)
            kept[kind][nk[kind]++] = j;
    }
    msg_author_free(&au);
    size_t n = 0;
    for (int kind = 0; kind < 3; kind++)
        for (size_t i = 0; i < nk[kind] && n < DKIM_MAX_SIGS; i++)
            slots[n++] = kept[kind][i];
    *skipped = total - n;
    return n;
}

struct dkim_verify *dkim_verify_new(const char *msg, size_t len, const struct dkim_verify_opts *o)
{
    struct dkim_verify *v = xcalloc(1, sizeof(*v));
    struct dkim_hdr *hdrs;
    size_t body_off;
    size_t nh = dkim_msg_split(msg, len, &hdrs, &body_off);
    v->now = o != NULL && o->now != 0 ? o->now : (uint64_t)time(NULL);
    v->accept_partial = o != NULL && o->accept_partial_body;
    v->msg_body = msg + body_off;
    v->body_len = len - body_off;
    size_t slots[DKIM_MAX_SIGS];
    size_t nslots = choose_signatures(msg, len, o, hdrs, nh, slots, &v->skipped);
    struct dkim_hindex *idx = nslots > 0 ? dkim_hindex_new(hdrs, nh) : NULL;
    for (size_t j = 0; j < nslots; j++) {
        size_t k = v->n++;
        v->res[k].result = DKIM_NONE;
        v->res[k].reason = "";
        prepare_sig(v, k, hdrs, idx, slots[j]);
    }
    dkim_hindex_free(idx);
    xfree(hdrs);
    for (int c = 0; c < 2; c++)
        buf_free(&v->body[c]);
    v->msg_body = NULL;
    return v;
}

static void on_key(struct dkim_verify *v, size_t k, const struct dns_answer *a)
{
    struct vsig *vs = &v->sig[k];
    struct dkim_keyrec kr;
    const char *why;
    if (a->status == DNS_TEMPFAIL) {
        set(v, k, DKIM_TEMPERROR, "key lookup failed temporarily");
        return;
    }
    if (a->status != DNS_OK || a->n == 0 || a->rr[0].type != DNS_T_TXT) {
        set(v, k, DKIM_PERMERROR, "no key for signature");
        return;
    }
    if (dkim_keyrec_parse(a->rr[0].u.txt.data, a->rr[0].u.txt.len, &kr, &why) < 0) {
        dkim_keyrec_free(&kr);
        set(v, k, DKIM_PERMERROR, "bad key record: %s", why);
        return;
    }
    v->res[k].testing = kr.testing;
    enum dkim_key_type want = vs->algo == DKIM_A_RSA_SHA256 ? DKIM_KEY_RSA : DKIM_KEY_ED25519;
    if (kr.revoked)
        set(v, k, DKIM_PERMERROR, "key revoked (empty p=)");
    else if (kr.type != want)
        set(v, k, DKIM_PERMERROR, "key type k= does not match a=");
    else if (!kr.sha256_ok || !kr.email_ok)
        set(v, k, DKIM_PERMERROR, "key record h= or s= excludes this signature");
    else if (kr.strict && !identity_ok(vs->i, vs->d, true))
        set(v, k, DKIM_PERMERROR, "key has t=s but i= is a subdomain of d=");
    else if (kr.type == DKIM_KEY_RSA && EVP_PKEY_get_bits(kr.pkey) < 1024)
        set(v, k, DKIM_FAIL, "RSA key shorter than 1024 bits (RFC 8301)");
    else if (!dkim_pk_verify(kr.pkey, vs->algo, buf_ptr(&vs->hdata), buf_size(&vs->hdata),
                             (const uint8_t *)buf_ptr(&vs->sig), buf_size(&vs->sig)))
        set(v, k, DKIM_FAIL, "signature did not verify");
    else if (v->res[k].partial_body && !v->accept_partial)
        set(v, k, DKIM_POLICY, "l= does not cover the body");
    else
        set(v, k, DKIM_PASS, "%s%s", v->res[k].partial_body ? "l= does not cover the body; " : "",
            kr.testing ? "good signature (key in testing mode)" : "good signature");
    dkim_keyrec_free(&kr);
}

enum dkim_step dkim_verify_step(struct dkim_verify *v, const char **name, enum dns_type *type)
{
    while (v->cur < v->n && !v->sig[v->cur].need_key)
        v->cur++;
    if (v->cur == v->n)
        return DKIM_STEP_DONE;
    *name = v->sig[v->cur].qname;
    *type = DNS_T_TXT;
    return DKIM_STEP_DNS;
}

void dkim_verify_answer(struct dkim_verify *v, const struct dns_answer *ans)
{
    if (v->cur < v->n && v->sig[v->cur].need_key)
        on_key(v, v->cur, ans);
}

size_t dkim_verify_skipped(const struct dkim_verify *v)
{
    return v->skipped;
}

/* Tell the caller once every lookup is answered (or expired), and free
 * the verifier once no lookup can come back to it. */
static void keys_settle(struct dkim_verify *v)
{
    if (!v->finished && v->pending == 0) {
        v->finished = true;
        v->done(v->done_arg, v->res, v->n);
    }
    if (v->finished && v->pending == 0)
        dkim_verify_free(v);
}

static void key_answered(void *arg, const struct dns_answer *ans)
{
    struct keyq *q = arg;
    struct dkim_verify *v = q->v;
    if (!v->finished && v->sig[q->k].need_key)
        on_key(v, q->k, ans);
    v->pending--;
    keys_settle(v);
}

void dkim_verify_keys(struct dkim_verify *v, struct dns_resolver *r, dkim_done_cb done, void *arg)
{
    v->done = done;
    v->done_arg = arg;
    v->pending = 1;   /* while asking: answers may come before dns_resolve() returns */
    for (size_t k = 0; k < v->n; k++) {
        if (!v->sig[k].need_key)
            continue;
        v->q[k] = (struct keyq){ .v = v, .k = k };
        v->pending++;
        dns_resolve(r, v->sig[k].qname, DNS_T_TXT, key_answered, &v->q[k]);
    }
    v->pending--;
    keys_settle(v);
}

void dkim_verify_expire(struct dkim_verify *v)
{
    if (v->finished)
        return;
    for (size_t k = 0; k < v->n; k++)
        if (v->sig[k].need_key)
            set(v, k, DKIM_TEMPERROR, "key lookup did not finish in time");
    v->finished = true;
    v->done(v->done_arg, v->res, v->n);
    if (v->pending == 0)
        dkim_verify_free(v);
}

const struct dkim_sig_result *dkim_verify_results(const struct dkim_verify *v, size_t *n)
{
    *n = v->n;
    return v->res;
}

void dkim_verify_free(struct dkim_verify *v)
{
    if (v == NULL)
        return;
    for (size_t k = 0; k < v->n; k++) {
        struct vsig *vs = &v->sig[k];
        char *strs[] = { vs->d, vs->s, vs->a, vs->i, vs->reason, vs->qname };
        for (size_t j = 0; j < sizeof(strs) / sizeof(strs[0]); j++)
            xfree(strs[j]);
        buf_free(&vs->sig);
        buf_free(&vs->hdata);
    }
    xfree(v);
}

const char *dkim_result_name(enum dkim_result r)
{
    static const char *const names[] = { "none", "pass", "fail", "neutral", "policy",
                                         "temperror", "permerror" };
    return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "permerror";
}

/* ---- the driver over dns/ -------------------------------------------------- */

void dkim_verify_opt(struct dns_resolver *r, const char *msg, size_t len,
                     const struct dkim_verify_opts *o, dkim_done_cb done, void *arg)
{
    dkim_verify_keys(dkim_verify_new(msg, len, o), r, done, arg);
}

void dkim_authres_skipped(struct authres *ar, size_t skipped)
{
    if (skipped == 0)
        return;
    char why[96];
    snprintf(why, sizeof(why), "%zu more DKIM-Signature field%s not evaluated (limit %d)",
             skipped, skipped == 1 ? "" : "s", DKIM_MAX_SIGS);
    authres_method(ar, "dkim", "permerror", why);
}

void dkim_authres(struct authres *ar, const struct dkim_sig_result *res, size_t n)
{
    if (n == 0)
        authres_method(ar, "dkim", "none", NULL);
    for (size_t k = 0; k < n; k++) {
        const struct dkim_sig_result *r = &res[k];
        authres_method(ar, "dkim", dkim_result_name(r->result), r->reason);
        if (r->d[0] != '\0')
            authres_prop(ar, "header", "d", r->d);
        if (r->s[0] != '\0')
            authres_prop(ar, "header", "s", r->s);
        if (r->b8[0] != '\0')
            authres_prop(ar, "header", "b", r->b8);
        if (r->a[0] != '\0')
            authres_prop(ar, "header", "a", r->a);
        if (r->i[0] != '\0')
            authres_prop(ar, "header", "i", r->i);
    }
}
