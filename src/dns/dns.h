/*
 * dns - the one resolver interface for every lookup in mailwarden (SPF,
 * DKIM, DMARC, MX, TLSA, MTA-STS).
 *
 * dns_resolve() asks for (name, type) and calls cb exactly once with the
 * answer; a backend may call it before dns_resolve() returns (the zone
 * file backend does), so callers must not hold state across the call that
 * the callback changes. The answer and everything it points to live only
 * during the callback.
 *
 * Every answer carries its DNSSEC state. A bogus answer (a signature that
 * does not validate) is never data: the backend reports it as
 * DNS_TEMPFAIL with sec = DNS_SEC_BOGUS and no records, and the why text.
 *
 * Backends:
 *   dns_zone_open()      answers from a zone master file alone (--dns-zone;
 *                        tests, offline use): a name the file does not hold
 *                        is NXDOMAIN; everything is DNS_SEC_INSECURE
 *   dns_unbound_open()   libunbound on the daemon's libevent loop, with
 *                        DNSSEC validation (dns/unbound.c)
 *
 * dns serves and does not judge: interpreting records is the caller's job.
 */
#ifndef MW_DNS_DNS_H
#define MW_DNS_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum dns_type {
    DNS_T_A = 1,
    DNS_T_NS = 2,
    DNS_T_CNAME = 5,
    DNS_T_PTR = 12,
    DNS_T_MX = 15,
    DNS_T_TXT = 16,
    DNS_T_AAAA = 28,
    DNS_T_TLSA = 52,
};

enum dns_status {
    DNS_OK,         /* records of the type asked for (n >= 1) */
    DNS_NODATA,     /* the name exists, no records of that type */
    DNS_NXDOMAIN,   /* the name does not exist */
    DNS_TEMPFAIL,   /* SERVFAIL, timeout, bogus: try again later */
    DNS_PERMFAIL,   /* the question itself is invalid (bad name) */
};

enum dns_sec { DNS_SEC_INSECURE, DNS_SEC_SECURE, DNS_SEC_BOGUS };

struct dns_rr {
    enum dns_type type;
    uint32_t ttl;
    union {
        uint8_t a[4];
        uint8_t aaaa[16];
        struct { uint16_t pref; char *host; } mx;
        char *name;                         /* PTR, CNAME, NS target */
        struct { char *data; size_t len; } txt;  /* strings concatenated */
        struct { uint8_t usage, selector, mtype; uint8_t *data; size_t len; } tlsa;
    } u;
};

struct dns_answer {
    enum dns_status status;
    enum dns_sec sec;
    const char *why;        /* reason for TEMPFAIL/BOGUS, may be NULL */
    struct dns_rr *rr;
    size_t n;
};

typedef void (*dns_cb)(void *arg, const struct dns_answer *ans);

struct dns_backend {
    void (*resolve)(void *impl, const char *name, enum dns_type type, dns_cb cb, void *arg);
    void (*close)(void *impl);
};

struct dns_resolver {
    const struct dns_backend *ops;
    void *impl;
};

/* name: raw text, with or without the final dot: labels of 1 to 63 octets
 * of any value but '.' and NUL, separated by '.', at most 253 octets in
 * all ("." is the root). No escapes: a backslash is just an octet, so
 * a\032b is one label of six. Names inside answers follow the same
 * convention (dns.c). */
void dns_resolve(struct dns_resolver *r, const char *name, enum dns_type type, dns_cb cb,
                 void *arg);
void dns_close(struct dns_resolver *r);

/* Zone file backend: returns 0, or -1 with "file:line: what" in err. */
int dns_zone_open(const char *path, struct dns_resolver *out, struct buf *err);

/* Driving an evaluator that does no I/O (SPF, DKIM, later DMARC and ARC):
 * next() hands out its next question (true) or says it is done (false);
 * answer() takes the answer; finish() reports and frees the evaluator.
 * dns_drive() runs it over r, whether answers come before dns_resolve()
 * returns or later from the loop, without recursion; finish runs once. */
struct dns_stepper {
    bool (*next)(void *ev, const char **name, enum dns_type *type);
    void (*answer)(void *ev, const struct dns_answer *ans);
    void (*finish)(void *ev);
};
void dns_drive(struct dns_resolver *r, const struct dns_stepper *s, void *ev);

/* Put an answer cache in front of r (dns/cache.c): answers are kept for
 * their TTL (at most max_ttl s), NXDOMAIN/NODATA for neg_ttl s; failures
 * and bogus answers are never kept. Closing r closes the inner backend. */
void dns_cache_wrap(struct dns_resolver *r, size_t max_entries, unsigned max_ttl,
                    unsigned neg_ttl);

const char *dns_type_name(enum dns_type t);
const char *dns_status_name(enum dns_status s);
const char *dns_sec_name(enum dns_sec s);

/* An MX answer that is a null MX (RFC 7505: "MX 0 ."): the domain
 * accepts no mail. */
bool dns_answer_null_mx(const struct dns_answer *a);

/* Helpers for backends building answers. */
void dns_answer_free_records(struct dns_rr *rr, size_t n);
/* One record's wire-format RDATA (uncompressed, as libunbound hands it
 * out) into rr->u; rr->type must be set. 0, or -1 if malformed (what was
 * allocated is freed by dns_answer_free_records). Untrusted input. */
int dns_rdata_parse(enum dns_type type, const uint8_t *p, size_t n, struct dns_rr *rr);

/* Append a raw-text name (as dns_resolve() takes and answers hold) to b in
 * presentation form (RFC 1035 5.1), absolute, with the final dot: bytes
 * outside [A-Za-z0-9-_*] are escaped, printable ones as \X, the rest
 * (space, controls, >= 0x80) as \DDD. "." and "" are the root ".". */
void dns_name_presentation(struct buf *b, const char *name);

#endif
