/*
 * dkim - DomainKeys Identified Mail (RFC 6376) with the RFC 8301 algorithm
 * rules and Ed25519 (RFC 8463): verifier, signer and key handling.
 *
 * Verifier: pull-style like spf.h. dkim_verify_new() takes the whole
 * message (CRLF or LF line ends) and does all the local work at once: it
 * finds the DKIM-Signature fields (at most DKIM_MAX_SIGS, see verify.c for
 * which when there are more), parses and
 * checks each, computes its body hash and its header hash input, so the
 * message need not outlive the call. Then the caller loops:
 * dkim_verify_step() either says DKIM_STEP_DONE or hands out one TXT
 * question (<s>._domainkey.<d>), answered with dkim_verify_answer().
 * dkim_verify_keys() / dkim_verify_opt() drive it over dns/dns.h (all keys
 * at once; synchronous and asynchronous backends alike); done is called
 * exactly once.
 *
 * Results (RFC 8601 words): pass, fail (bad signature or body hash, rsa-sha1
 * (RFC 8301), RSA key < 1024 bits, expired x=, t= in the future), neutral
 * (unused), policy (l= leaves part of the body unsigned, unless the caller
 * accepts that), temperror (DNS), permerror (malformed signature or key
 * record, no key, revoked key, k= / h= / s= / t=s mismatch). A message
 * without signatures has n == 0 results: report "none".
 *
 * Signer: dkim_sign() appends one folded, CRLF-terminated DKIM-Signature
 * field to out (prepend it to the message). Dual signing = call twice.
 *
 * Keys: dkim_key_load_pem() (PKCS#8 RSA/Ed25519, PKCS#1 RSA, or the raw
 * base64 Ed25519 seed of RFC 8463 A.1), dkim_key_generate(),
 * dkim_key_write_file() (PKCS#8 PEM, O_EXCL, mode 0600), and
 * dkim_key_dns_record() ("v=DKIM1; k=...; p=...").
 *
 * Trust: the message and every DNS answer are untrusted; malformed input
 * gives permerror, never a crash. Functions returning int give 0 or -1
 * with a reason in err.
 */
#ifndef MW_DKIM_DKIM_H
#define MW_DKIM_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"
#include "dns/dns.h"

#define DKIM_MAX_SIGS 16   /* signatures evaluated per message; more are ignored */

enum dkim_result {
    DKIM_NONE,
    DKIM_PASS,
    DKIM_FAIL,
    DKIM_NEUTRAL,
    DKIM_POLICY,
    DKIM_TEMPERROR,
    DKIM_PERMERROR,
};

enum dkim_canon { DKIM_CANON_SIMPLE, DKIM_CANON_RELAXED };
enum dkim_key_type { DKIM_KEY_RSA, DKIM_KEY_ED25519 };

struct dkim_sig_result {
    enum dkim_result result;
    const char *reason;   /* short human text, never NULL */
    const char *d, *s;    /* "" when absent */
    const char *a;        /* the a= text as given, "" when absent */
    const char *i;        /* i= as given, or "@" d when absent */
    char b8[9];           /* first 8 characters of b= (header.b) */
    bool testing;         /* the key record says t=y */
    bool partial_body;    /* l= shorter than the body */
};

struct dkim_verify_opts {
    uint64_t now;               /* seconds since the epoch; 0: the clock */
    bool accept_partial_body;   /* l= shorter than the body may still pass */
    const char *from_domain;    /* the From domain, to order the signatures;
                                   NULL: read from the message */
};

struct dkim_verify;
typedef void (*dkim_done_cb)(void *arg, const struct dkim_sig_result *res, size_t n);
enum dkim_step { DKIM_STEP_DNS, DKIM_STEP_DONE };

struct dkim_verify *dkim_verify_new(const char *msg, size_t len, const struct dkim_verify_opts *o);
void dkim_verify_free(struct dkim_verify *v);
/* DKIM_STEP_DNS: *name and *type (always TXT) are the question, valid until
 * the next call; answer it with dkim_verify_answer(). */
enum dkim_step dkim_verify_step(struct dkim_verify *v, const char **name, enum dns_type *type);
void dkim_verify_answer(struct dkim_verify *v, const struct dns_answer *ans);
/* After DKIM_STEP_DONE: one result per evaluated signature (those near
 * the From domain first, then in message order). */
const struct dkim_sig_result *dkim_verify_results(const struct dkim_verify *v, size_t *n);
/* DKIM-Signature fields that were not evaluated (over DKIM_MAX_SIGS). */
size_t dkim_verify_skipped(const struct dkim_verify *v);

/* Ask for every key at once over r and call done(arg, res, n) once all
 * are answered; takes v and frees it (after done, once no answer can come
 * back). dkim_verify_expire(v), before done was called, gives temperror
 * to every signature still waiting and calls done at once: the caller's
 * deadline (dkim_timeout). */
void dkim_verify_keys(struct dkim_verify *v, struct dns_resolver *r, dkim_done_cb done, void *arg);
void dkim_verify_expire(struct dkim_verify *v);

/* Verify msg over r; done is called exactly once; res lives during the call. */
void dkim_verify_opt(struct dns_resolver *r, const char *msg, size_t len,
                     const struct dkim_verify_opts *o, dkim_done_cb done, void *arg);

const char *dkim_result_name(enum dkim_result r);   /* "pass", "fail", ... */

struct authres;
/* One "dkim=" entry per result (RFC 8601, header.d/s/b/a/i); "dkim=none"
 * for a message without signatures. */
void dkim_authres(struct authres *ar, const struct dkim_sig_result *res, size_t n);
/* "dkim=permerror (N more DKIM-Signature fields not evaluated ...)", or
 * nothing for 0. */
void dkim_authres_skipped(struct authres *ar, size_t skipped);

/* ---- keys ---------------------------------------------------------------- */

struct dkim_key;

struct dkim_key *dkim_key_load_pem(const char *text, size_t len, struct buf *err);
struct dkim_key *dkim_key_generate(enum dkim_key_type t, unsigned rsa_bits, struct buf *err);
int dkim_key_write_file(const struct dkim_key *k, const char *path, struct buf *err);
void dkim_key_pem(const struct dkim_key *k, struct buf *out);   /* PKCS#8 PEM */
void dkim_key_dns_record(const struct dkim_key *k, struct buf *out);
/* `name IN TXT "..." "..."` with strings of at most 255 bytes, no newline. */
void dkim_zone_txt_line(const char *name, const char *txt, struct buf *out);
enum dkim_key_type dkim_key_type(const struct dkim_key *k);
unsigned dkim_key_bits(const struct dkim_key *k);
void dkim_key_free(struct dkim_key *k);

/* ---- signer -------------------------------------------------------------- */

struct dkim_sign_opts {
    const char *domain, *selector;
    const char *identity;               /* i=, or NULL for none */
    const struct dkim_key *key;
    enum dkim_canon hcanon, bcanon;     /* zero: simple/simple; set relaxed explicitly */
    uint64_t t;                         /* signing time (t=) */
    uint64_t x;                         /* expiry (x=), 0 for none */
    bool body_length;                   /* add l= (not recommended) */
};

int dkim_sign(const struct dkim_sign_opts *o, const char *msg, size_t len, struct buf *out,
              struct buf *err);

/* "relaxed/simple" etc. (a lone word means word/simple); 0 or -1. */
int dkim_canon_parse(const char *s, size_t n, enum dkim_canon *h, enum dkim_canon *b);

#endif
