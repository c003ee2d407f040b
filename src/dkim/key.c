/*
 * dkim/key.c - DKIM keys with OpenSSL 3: private keys (load, generate,
 * write), the DNS key record (make and parse, RFC 6376 3.6.1, RFC 8463
 * k=ed25519) and the two signature primitives.
 *
 *   dkim_key_load_pem()     PEM private key (PKCS#8 RSA or Ed25519, PKCS#1
 *                           RSA), never prompting for a pass phrase; or the
 *                           base64 32-byte Ed25519 seed of RFC 8463 A.1
 *   dkim_key_generate()     RSA of rsa_bits, or Ed25519
 *   dkim_key_write_file()   PKCS#8 PEM, O_CREAT|O_EXCL|O_NOFOLLOW, 0600,
 *                           fsync'd; an existing file is never replaced
 *   dkim_key_dns_record()   "v=DKIM1; k=rsa; p=<SubjectPublicKeyInfo>" or
 *                           "v=DKIM1; k=ed25519; p=<raw 32-byte key>"
 *   dkim_keyrec_parse()     a TXT record into type, flags (t=y, t=s),
 *                           h=/s= acceptability and the public key; an empty
 *                           p= is "revoked" (0 returned, revoked set); the
 *                           decoded keys are cached by their p= bytes
 *   dkim_pk_verify/_sign()  RSA PKCS#1 v1.5 SHA-256; Ed25519 (pure) over the
 *                           SHA-256 hash of the data (RFC 8463 3)
 *
 * Trust: key records come from DNS and are untrusted; a p= that does not
 * decode to a key of the type k= names is an error, never a crash.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "core/fsutil.h"
#include "core/str.h"
#include "core/xmalloc.h"
#include "dkim/dkim_int.h"

struct dkim_key {
    EVP_PKEY *pk;
    enum dkim_key_type type;
};

static int no_pass(char *buf, int size, int rw, void *u)
{
    return 0;
}

static struct dkim_key *wrap(EVP_PKEY *pk, struct buf *err)
{
    struct dkim_key *k;
    if (pk == NULL)
        return NULL;
    if (EVP_PKEY_is_a(pk, "RSA") || EVP_PKEY_is_a(pk, "ED25519")) {
        k = xcalloc(1, sizeof(*k));
        k->pk = pk;
        k->type = EVP_PKEY_is_a(pk, "RSA") ? DKIM_KEY_RSA : DKIM_KEY_ED25519;
        return k;
    }
    buf_append_str(err, "key is neither RSA nor Ed25519");
    EVP_PKEY_free(pk);
    return NULL;
}

struct dkim_key *dkim_key_load_pem(const char *text, size_t len, struct buf *err)
{
    if (len > 1 << 20 || len == 0) {
        buf_append_str(err, "key file is empty or too large");
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    EVP_PKEY *pk = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, no_pass, NULL) : NULL;
    BIO_free(bio);
    if (pk == NULL) {
        struct buf raw = { 0 };
        if (b64_decode(text, len, B64_SKIP_WS, &raw) == 0 && buf_size(&raw) == 32)
            pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL,
                                              (const unsigned char *)buf_ptr(&raw), 32);
        buf_free(&raw);
    }
    if (pk == NULL) {
        buf_append_str(err, "not a PEM private key (PKCS#8 or PKCS#1) nor an Ed25519 seed");
        return NULL;
    }
    return wrap(pk, err);
}

struct dkim_key *dkim_key_generate(enum dkim_key_type t, unsigned rsa_bits, struct buf *err)
{
    EVP_PKEY *pk = t == DKIM_KEY_RSA ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)rsa_bits)
                                     : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (pk == NULL) {
        buf_append_str(err, "key generation failed");
        return NULL;
    }
    return wrap(pk, err);
}

void dkim_key_pem(const struct dkim_key *k, struct buf *out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *p;
    if (bio == NULL || PEM_write_bio_PrivateKey(bio, k->pk, NULL, NULL, 0, NULL, NULL) != 1)
        abort();   /* only allocation can fail here */
    long n = BIO_get_mem_data(bio, &p);
    buf_append(out, p, (size_t)n);
    BIO_free(bio);
}

int dkim_key_write_file(const struct dkim_key *k, const char *path, struct buf *err)
{
    struct buf pem = { 0 };
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        buf_printf(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    dkim_key_pem(k, &pem);
    int rc = fs_write_all(fd, buf_ptr(&pem), buf_size(&pem));
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    OPENSSL_cleanse(pem.data, pem.cap);
    buf_free(&pem);
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0) {
        buf_printf(err, "%s: %s", path, strerror(-rc));
        unlink(path);
        return -1;
    }
    return 0;
}

void dkim_key_dns_record(const struct dkim_key *k, struct buf *out)
{
    if (k->type == DKIM_KEY_ED25519) {
        unsigned char raw[32];
        size_t n = sizeof(raw);
        if (EVP_PKEY_get_raw_public_key(k->pk, raw, &n) != 1)
            abort();
        buf_append_str(out, "v=DKIM1; k=ed25519; p=");
        b64_encode(raw, n, out);
        return;
    }
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k->pk, &der);
    if (n <= 0)
        abort();
    buf_append_str(out, "v=DKIM1; k=rsa; p=");
    b64_encode(der, (size_t)n, out);
    OPENSSL_free(der);
}

void dkim_zone_txt_line(const char *name, const char *txt, struct buf *out)
{
    size_t n = strlen(txt);
    buf_printf(out, "%s IN TXT", name);
    for (size_t i = 0; i < n; i += 255) {
        buf_append_str(out, " \"");
        for (size_t k = i; k < n && k < i + 255; k++) {
            if (txt[k] == '"' || txt[k] == '\\')
                buf_append_byte(out, '\\');
            buf_append_byte(out, txt[k]);
        }
        buf_append_byte(out, '"');
    }
}

enum dkim_key_type dkim_key_type(const struct dkim_key *k)
{
    return k->type;
}

unsigned dkim_key_bits(const struct dkim_key *k)
{
    return (unsigned)EVP_PKEY_get_bits(k->pk);
}

EVP_PKEY *dkim_key_pkey(const struct dkim_key *k)
{
    return k->pk;
}

void dkim_key_free(struct dkim_key *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->pk);
    xfree(k);
}

/* ---- key records ---------------------------------------------------------- */

/* Decoded public keys, by the bytes of their p= value: decoding an RSA
 * key (an ASN.1 parse and the key's set-up) costs about as much as the
 * signature check itself, and most mail comes signed by a few keys.
 * Keyed by content, an entry can never be stale: the record itself is
 * still looked up (and cached for its TTL) by the resolver every time,
 * and a changed record is a new entry. Direct-mapped, KEY_CACHE_SLOTS
 * entries, shared by every thread (EVP_PKEY is safe to use from several
 * threads at once for verification). */
#define KEY_CACHE_SLOTS 1024
#define KEY_CACHE_MAX_RAW 2048

struct key_cache_entry {
    enum dkim_key_type type;
    unsigned char *raw;
    size_t n;
    EVP_PKEY *pk;
};

static struct key_cache_entry key_cache[KEY_CACHE_SLOTS];
static pthread_mutex_t key_cache_mu = PTHREAD_MUTEX_INITIALIZER;

static size_t key_cache_slot(enum dkim_key_type type, const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)type;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return (size_t)(h % KEY_CACHE_SLOTS);
}

static EVP_PKEY *key_cache_get(enum dkim_key_type type, const unsigned char *p, size_t n,
                               size_t slot)
{
    EVP_PKEY *pk = NULL;
    pthread_mutex_lock(&key_cache_mu);
    struct key_cache_entry *e = &key_cache[slot];
    if (e->pk && e->type == type && e->n == n && memcmp(e->raw, p, n) == 0 &&
        EVP_PKEY_up_ref(e->pk) == 1)
        pk = e->pk;
    pthread_mutex_unlock(&key_cache_mu);
    return pk;
}

static void key_cache_put(enum dkim_key_type type, const unsigned char *p, size_t n, size_t slot,
                          EVP_PKEY *pk)
{
    if (n > KEY_CACHE_MAX_RAW || EVP_PKEY_up_ref(pk) != 1)
        return;
    unsigned char *copy = xmalloc(n);
    memcpy(copy, p, n);
    pthread_mutex_lock(&key_cache_mu);
    struct key_cache_entry *e = &key_cache[slot];
    EVP_PKEY *old = e->pk;
    unsigned char *old_raw = e->raw;
    e->type = type;
    e->raw = copy;
    e->n = n;
    e->pk = pk;
    pthread_mutex_unlock(&key_cache_mu);
    EVP_PKEY_free(old);
    xfree(old_raw);
}

static EVP_PKEY *decode_pub_uncached(enum dkim_key_type type, const struct buf *raw);

static EVP_PKEY *decode_pub(enum dkim_key_type type, const struct buf *raw)
{
    const unsigned char *p = (const unsigned char *)buf_ptr(raw);
    size_t n = buf_size(raw);
    size_t slot = key_cache_slot(type, p, n);
    EVP_PKEY *pk = key_cache_get(type, p, n, slot);
    if (pk != NULL)
        return pk;
    pk = decode_pub_uncached(type, raw);
    if (pk != NULL)
        key_cache_put(type, p, n, slot, pk);
    return pk;
}

static EVP_PKEY *decode_pub_uncached(enum dkim_key_type type, const struct buf *raw)
{
    const unsigned char *p = (const unsigned char *)buf_ptr(raw);
    long n = (long)buf_size(raw);
    if (type == DKIM_KEY_ED25519)
        return n == 32 ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, p, 32) : NULL;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, n);
    if (pk == NULL) {   /* RFC 6376 says RSAPublicKey; most publish SPKI */
        p = (const unsigned char *)buf_ptr(raw);
        pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, n);
    }
    if (pk != NULL && !EVP_PKEY_is_a(pk, "RSA")) {
        EVP_PKEY_free(pk);
        pk = NULL;
    }
    return pk;
}

int dkim_keyrec_parse(const char *s, size_t n, struct dkim_keyrec *out, const char **why)
{
    struct dkim_tags tags;
    memset(out, 0, sizeof(*out));
    if (dkim_tags_parse(s, n, &tags, why) < 0)
        return -1;
    const struct dkim_tag *v = dkim_tag_find(&tags, "v"), *k = dkim_tag_find(&tags, "k");
    const struct dkim_tag *h = dkim_tag_find(&tags, "h"), *sv = dkim_tag_find(&tags, "s");
    const struct dkim_tag *t = dkim_tag_find(&tags, "t"), *p = dkim_tag_find(&tags, "p");
    if (v != NULL && (v != &tags.tag[0] || !(v->val_len == 5 && memcmp(v->val, "DKIM1", 5) == 0)))
        return *why = "key record v= is not DKIM1 or not first", -1;
    if (k == NULL || dkim_tag_is(k, "rsa"))
        out->type = DKIM_KEY_RSA;
    else if (dkim_tag_is(k, "ed25519"))
        out->type = DKIM_KEY_ED25519;
    else
        return *why = "key record has an unknown k=", -1;
    out->sha256_ok = h == NULL || dkim_tag_list_has(h, "sha256");
    out->email_ok = sv == NULL || dkim_tag_list_has(sv, "*") || dkim_tag_list_has(sv, "email");
    out->testing = t != NULL && dkim_tag_list_has(t, "y");
    out->strict = t != NULL && dkim_tag_list_has(t, "s");
    if (p == NULL)
        return *why = "key record has no p=", -1;
    if (p->val_len == 0) {
        out->revoked = true;
        return 0;
    }
    struct buf raw = { 0 };
    if (b64_decode(p->val, p->val_len, B64_SKIP_WS, &raw) == 0)
        out->pkey = decode_pub(out->type, &raw);
    buf_free(&raw);
    if (out->pkey == NULL)
        return *why = "key record p= is not a valid public key", -1;
    return 0;
}

void dkim_keyrec_free(struct dkim_keyrec *k)
{
    EVP_PKEY_free(k->pkey);
    k->pkey = NULL;
}

/* ---- primitives ------------------------------------------------------------ */

static const EVP_MD *prepare(enum dkim_algo a, const void **data, size_t *n, unsigned char h[32])
{
    if (a == DKIM_A_RSA_SHA256)
        return EVP_sha256();
    unsigned int hl = 32;
    if (EVP_Digest(*data, *n, h, &hl, EVP_sha256(), NULL) != 1)
        abort();
    *data = h;
    *n = 32;
    return NULL;   /* Ed25519 hashes internally (pure mode) */
}

int dkim_pk_verify(EVP_PKEY *pk, enum dkim_algo a, const void *data, size_t n, const uint8_t *sig,
                   size_t siglen)
{
    unsigned char h[32];
    const EVP_MD *md = prepare(a, &data, &n, h);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, md, NULL, pk) == 1 &&
             EVP_DigestVerify(ctx, sig, siglen, data, n) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

int dkim_pk_sign(EVP_PKEY *pk, enum dkim_algo a, const void *data, size_t n, struct buf *sig)
{
    unsigned char h[32];
    const EVP_MD *md = prepare(a, &data, &n, h);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t len = 0;
    int rc = -1;
    if (ctx != NULL && EVP_DigestSignInit(ctx, NULL, md, NULL, pk) == 1 &&
        EVP_DigestSign(ctx, NULL, &len, data, n) == 1) {
        buf_reserve(sig, len);
        if (EVP_DigestSign(ctx, (unsigned char *)sig->data + sig->len, &len, data, n) == 1) {
            sig->len += len;
            sig->data[sig->len] = '\0';
            rc = 0;
        }
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}
