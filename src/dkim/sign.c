/*
 * dkim/sign.c - the DKIM signer (RFC 6376 5, RFC 8463).
 *
 *   dkim_sign(o, msg, len, out, err)   appends one DKIM-Signature field,
 *                                      folded at 78 columns, ending in CRLF;
 *                                      0, or -1 with the reason in err
 *
 * a= follows the key (rsa-sha256 or ed25519-sha256). h= lists From, To, Cc,
 * Subject, Date, Reply-To, Message-ID, MIME-Version, Content-Type and
 * Content-Transfer-Encoding once more than the message holds them (over-
 * signing: nobody can add one later without breaking the signature), and
 * In-Reply-To, References and every List-* field as often as present. A
 * message without From is refused (RFC 6376 5.4). t= is o->t; x= and l= are
 * optional. The header hash input is built exactly as the verifier builds
 * it (fields picked bottom-up, then this field up to "b=" without CRLF).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/str.h"
#include "core/xmalloc.h"
#include "dkim/dkim_int.h"

#define FOLD_AT 78
#define MAX_NAMES 64

static const char *const oversigned[] = {
    "From", "To", "Cc", "Subject", "Date", "Reply-To", "Message-ID",
    "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
};
static const char *const signed_if_present[] = { "In-Reply-To", "References" };

struct names {
    const char *p[MAX_NAMES];
    size_t n[MAX_NAMES];
    size_t count;
};

struct fold {
    struct buf *b;
    size_t col;
};

/* Append s (n bytes) after sep, or after a fold when the line would be too long. */
static void put(struct fold *f, const char *sep, const char *s, size_t n)
{
    size_t sl = strlen(sep);
    if (f->col + sl + n > FOLD_AT && f->col > 1) {
        buf_append(f->b, "\r\n ", 3);
        f->col = 1;
    } else {
        buf_append(f->b, sep, sl);
        f->col += sl;
    }
    buf_append(f->b, s, n);
    f->col += n;
}

static void put_tag(struct fold *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put_tag(struct fold *f, const char *fmt, ...)
{
    struct buf t = { 0 };
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&t, fmt, ap);
    va_end(ap);
    put(f, " ", buf_ptr(&t), buf_size(&t));
    buf_free(&t);
}

static size_t count_named(const struct dkim_hdr *h, size_t nh, const char *name, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < nh; i++)
        c += dkim_hdr_named(&h[i], name, n);
    return c;
}

static void add_name(struct names *nm, const char *p, size_t n, size_t times)
{
    for (size_t i = 0; i < times && nm->count < MAX_NAMES; i++) {
        nm->p[nm->count] = p;
        nm->n[nm->count++] = n;
    }
}

static void pick_names(const struct dkim_hdr *h, size_t nh, struct names *nm)
{
    nm->count = 0;
    for (size_t i = 0; i < sizeof(oversigned) / sizeof(oversigned[0]); i++) {
        size_t n = strlen(oversigned[i]);
        add_name(nm, oversigned[i], n, count_named(h, nh, oversigned[i], n) + 1);
    }
    for (size_t i = 0; i < sizeof(signed_if_present) / sizeof(signed_if_present[0]); i++) {
        size_t n = strlen(signed_if_present[i]);
        add_name(nm, signed_if_present[i], n, count_named(h, nh, signed_if_present[i], n));
    }
    for (size_t i = 0; i < nh; i++) {   /* List-*, each distinct name once per instance */
        if (h[i].name_len <= 5 || strncasecmp(h[i].p, "List-", 5) != 0)
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = dkim_hdr_named(&h[j], h[i].p, h[i].name_len);
        if (!seen)
            add_name(nm, h[i].p, h[i].name_len, count_named(h, nh, h[i].p, h[i].name_len));
    }
}

static void select_headers(const struct dkim_hdr *h, size_t nh, const struct names *nm,
                           enum dkim_canon hc, struct buf *out)
{
    bool *used = xcalloc(nh + 1, sizeof(*used));
    for (size_t k = 0; k < nm->count; k++) {
        for (size_t m = nh; m-- > 0;) {
            if (!used[m] && dkim_hdr_named(&h[m], nm->p[k], nm->n[k])) {
                used[m] = true;
                dkim_canon_header(hc, h[m].p, h[m].len, out);
                break;
            }
        }
    }
    xfree(used);
}

static bool value_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == ';')
            return false;
    }
    return true;
}

static void body_hash(const struct dkim_sign_opts *o, const char *body, size_t len,
                      struct buf *out, size_t *clen)
{
    struct buf cb = { 0 };
    unsigned char h[32];
    unsigned int hl = 32;
    dkim_canon_body(o->bcanon, body, len, &cb);
    *clen = buf_size(&cb);
    if (EVP_Digest(buf_ptr(&cb), buf_size(&cb), h, &hl, EVP_sha256(), NULL) != 1)
        abort();
    buf_free(&cb);
    b64_encode(h, 32, out);
}

/* The field up to "b=" (no value), folded. */
static void write_tags(const struct dkim_sign_opts *o, const struct names *nm, const char *bh,
                       size_t clen, struct buf *out)
{
    static const char *const cn[] = { "simple", "relaxed" };
    struct fold f = { out, 0 };
    bool ed = dkim_key_type(o->key) == DKIM_KEY_ED25519;
    put(&f, "", "DKIM-Signature:", 15);
    put_tag(&f, "v=1;");
    put_tag(&f, "a=%s;", ed ? "ed25519-sha256" : "rsa-sha256");
    put_tag(&f, "c=%s/%s;", cn[o->hcanon], cn[o->bcanon]);
    put_tag(&f, "d=%s;", o->domain);
    put_tag(&f, "s=%s;", o->selector);
    put_tag(&f, "t=%llu;", (unsigned long long)o->t);
    if (o->x != 0)
        put_tag(&f, "x=%llu;", (unsigned long long)o->x);
    if (o->body_length)
        put_tag(&f, "l=%zu;", clen);
    if (o->identity != NULL)
        put_tag(&f, "i=%s;", o->identity);
    for (size_t k = 0; k < nm->count; k++) {
        struct buf t = { 0 };
        buf_printf(&t, "%s%.*s%s", k == 0 ? "h=" : ":", (int)nm->n[k], nm->p[k],
                   k + 1 == nm->count ? ";" : "");
        str_lower(t.data);
        put(&f, k == 0 ? " " : "", buf_ptr(&t), buf_size(&t));
        buf_free(&t);
    }
    put_tag(&f, "bh=%s;", bh);
    put_tag(&f, "b=");
}

static void append_b(struct buf *out, const struct buf *sig)
{
    struct buf b64 = { 0 };
    b64_encode(buf_ptr(sig), buf_size(sig), &b64);
    const char *last = memrchr(buf_ptr(out), '\n', buf_size(out));
    struct fold f = { out, last ? (size_t)(buf_ptr(out) + buf_size(out) - last - 1) : 0 };
    for (size_t i = 0; i < buf_size(&b64); i += 16) {
        size_t n = buf_size(&b64) - i < 16 ? buf_size(&b64) - i : 16;
        put(&f, "", buf_ptr(&b64) + i, n);
    }
    buf_free(&b64);
}

int dkim_sign(const struct dkim_sign_opts *o, const char *msg, size_t len, struct buf *out,
              struct buf *err)
{
    if (!value_ok(o->domain) || !value_ok(o->selector) ||
        (o->identity != NULL && !value_ok(o->identity))) {
        buf_append_str(err, "bad domain, selector or identity");
        return -1;
    }
    struct dkim_hdr *h;
    size_t body_off, clen;
    size_t nh = dkim_msg_split(msg, len, &h, &body_off);
    if (count_named(h, nh, "From", 4) == 0) {
        xfree(h);
        buf_append_str(err, "the message has no From header field");
        return -1;
    }
    struct names nm;
    struct buf bh = { 0 }, field = { 0 }, data = { 0 }, sig = { 0 };
    pick_names(h, nh, &nm);
    body_hash(o, msg + body_off, len - body_off, &bh, &clen);
    write_tags(o, &nm, buf_ptr(&bh), clen, &field);
    select_headers(h, nh, &nm, o->hcanon, &data);
    dkim_canon_header(o->hcanon, buf_ptr(&field), buf_size(&field), &data);
    data.len -= 2;   /* no CRLF after the signature field */
    enum dkim_algo a = dkim_key_type(o->key) == DKIM_KEY_ED25519 ? DKIM_A_ED25519_SHA256
                                                                 : DKIM_A_RSA_SHA256;
    int rc = dkim_pk_sign(dkim_key_pkey(o->key), a, buf_ptr(&data), buf_size(&data), &sig);
    if (rc == 0) {
        append_b(&field, &sig);
        buf_append(out, buf_ptr(&field), buf_size(&field));
        buf_append(out, "\r\n", 2);
    } else {
        buf_append_str(err, "signing failed");
    }
    xfree(h);
    buf_free(&bh);
    buf_free(&field);
    buf_free(&data);
    buf_free(&sig);
    return rc;
}
