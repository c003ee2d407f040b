/*
 * dkim_int.h - private to src/dkim/ (and its tests and fuzz target): the
 * tag-list parser, base64, message splitting and canonicalization, key
 * records and the signature primitives.
 *
 *   dkim_tags_parse(s, n, out, &why)  RFC 6376 3.2 tag-list; 0, or -1 with
 *                                     a static reason. No allocation: tags
 *                                     point into s. Duplicate names, bad
 *                                     names, empty tag-specs, non-VALCHAR
 *                                     bytes and > DKIM_MAX_TAGS are errors.
 *   dkim_msg_split(msg, len, ...)     header fields (raw, without their final
 *                                     line break) and the body offset
 *   dkim_canon_header / _body         RFC 6376 3.4, appending to out
 *   dkim_keyrec_parse(s, n, out, &why) key record (3.6.1); 0 or -1
 *   dkim_pk_verify / dkim_pk_sign     RSA-SHA256 PKCS#1 v1.5 or Ed25519 over
 *                                     SHA-256(data) (RFC 8463)
 */
#ifndef MW_DKIM_DKIM_INT_H
#define MW_DKIM_DKIM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "core/base64.h"
#include "core/buf.h"
#include "dkim/dkim.h"

#define DKIM_MAX_TAGS 64

struct dkim_tag {
    const char *name;
    size_t name_len;
    const char *val;          /* value without surrounding whitespace */
    size_t val_len;
    size_t raw_start, raw_end; /* offsets in s of everything between '=' and ';' */
};

struct dkim_tags {
    struct dkim_tag tag[DKIM_MAX_TAGS];
    size_t n;
};

int dkim_tags_parse(const char *s, size_t n, struct dkim_tags *out, const char **why);
const struct dkim_tag *dkim_tag_find(const struct dkim_tags *t, const char *name);
bool dkim_tag_is(const struct dkim_tag *t, const char *lit);   /* case-insensitive value */
/* The value is a colon-separated list (h=, q=, s=, t=) holding word, compared
 * without case, white space around the entries ignored. */
bool dkim_tag_list_has(const struct dkim_tag *t, const char *word);

struct dkim_hdr {
    const char *p;     /* start of the field */
    size_t len;        /* up to, not including, the final line break */
    size_t name_len;   /* bytes before ':' minus trailing WSP; 0: no colon */
};

/* Returns the number of fields (array in *hdrs, xfree it) and the body offset. */
size_t dkim_msg_split(const char *msg, size_t len, struct dkim_hdr **hdrs, size_t *body_off);

/* The fields of a split message indexed by name (hindex.c), for h=:
 * take() returns the next field of that name from the bottom that this
 * signature has not taken yet (each instance once, RFC 6376 5.4.2), or -1;
 * reset() makes every field available again for the next signature. Cost:
 * O(fields) to build, O(1) per take. */
struct dkim_hindex;
struct dkim_hindex *dkim_hindex_new(const struct dkim_hdr *h, size_t n);
void dkim_hindex_free(struct dkim_hindex *x);
void dkim_hindex_reset(struct dkim_hindex *x);
long dkim_hindex_take(struct dkim_hindex *x, const char *name, size_t n);
bool dkim_hdr_named(const struct dkim_hdr *h, const char *name, size_t n);
void dkim_canon_header(enum dkim_canon c, const char *p, size_t len, struct buf *out);
void dkim_canon_body(enum dkim_canon c, const char *p, size_t len, struct buf *out);

enum dkim_algo { DKIM_A_RSA_SHA256, DKIM_A_ED25519_SHA256 };

struct dkim_keyrec {
    enum dkim_key_type type;
    bool testing, strict, revoked;
    bool sha256_ok;    /* h= absent or lists sha256 */
    bool email_ok;     /* s= absent, "*" or "email" */
    EVP_PKEY *pkey;    /* NULL when revoked */
};

int dkim_keyrec_parse(const char *s, size_t n, struct dkim_keyrec *out, const char **why);
void dkim_keyrec_free(struct dkim_keyrec *k);
/* 1 valid, 0 not valid. */
int dkim_pk_verify(EVP_PKEY *pk, enum dkim_algo a, const void *data, size_t n, const uint8_t *sig,
                   size_t siglen);
int dkim_pk_sign(EVP_PKEY *pk, enum dkim_algo a, const void *data, size_t n, struct buf *sig);
EVP_PKEY *dkim_key_pkey(const struct dkim_key *k);

#endif
