/*
 * spf_int - the parts of the SPF subsystem that spf.c, the tests and the
 * fuzz target share: the record parser (record.c) and the macro language
 * (macro.c). Nothing outside src/spf/ and tests/ includes this header.
 * (record.c also writes the Received-SPF field and the result names of
 * spf.h: the text forms of SPF, in and out.)
 *
 *   spf_record_is_v1(txt, n)        record selection (RFC 7208 4.5): the
 *                                   text starts with "v=spf1" (any case)
 *                                   followed by SP or the end
 *   spf_record_parse(txt, n, r, e)  0, or -1 with the reason in e (the
 *                                   caller's permerror); the whole record
 *                                   is checked (4.6: syntax errors anywhere)
 *   spf_macro_check(s, n, mode, &info, e)   0 or -1: macro-string syntax
 *   spf_target_name(s, n)          an expanded domain-spec as a query name
 *   spf_ident_init(id, req)         the macro letter values of a request
 *   spf_macro_expand(s, n, mode, ctx, out, e)
 *                                   0, -1 (syntax error or too long: reason
 *                                   in e), or SPF_MACRO_NEED_P when s uses
 *                                   %{p} and ctx->p is NULL: the evaluator
 *                                   then computes the validated name through
 *                                   its DNS steps and calls again
 *
 * Everything takes (pointer, length); input is untrusted and may hold any
 * byte, including NUL.
 */
#ifndef MW_SPF_SPF_INT_H
#define MW_SPF_SPF_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "spf/spf.h"

/* RFC 7208 4.6.4 */
#define SPF_MAX_DNS_TERMS 10 /* include a mx ptr exists redirect */
#define SPF_MAX_VOID 2       /* terms whose lookup found nothing */
#define SPF_MAX_MX 10        /* MX RRs of one "mx" term, more: permerror */
#define SPF_MAX_PTR 10       /* PTR names validated, the rest ignored */

#define SPF_MACRO_MAX_OUT 8192 /* expansion longer than this is an error */

enum spf_mech_kind {
    SPF_M_ALL,
    SPF_M_INCLUDE,
    SPF_M_A,
    SPF_M_MX,
    SPF_M_PTR,
    SPF_M_IP4,
    SPF_M_IP6,
    SPF_M_EXISTS,
};

struct spf_mech {
    enum spf_mech_kind kind;
    enum spf_result qual;  /* SPF_PASS, SPF_FAIL, SPF_SOFTFAIL or SPF_NEUTRAL */
    char *text;            /* the directive as written (printable ASCII) */
    char *domain;          /* domain-spec, unexpanded; NULL: none given */
    uint8_t addr[16];      /* ip4 (first 4 bytes) or ip6 network */
    uint8_t cidr4, cidr6;  /* prefix lengths, default 32 and 128 */
};

struct spf_record {
    struct spf_mech *mech;
    size_t nmech, cap;
    char *redirect;  /* domain-spec of redirect=, or NULL */
    char *exp;       /* domain-spec of exp=, or NULL */
    bool has_all;    /* an "all" mechanism is present: redirect is ignored */
};

bool spf_record_is_v1(const char *txt, size_t n);
int spf_record_parse(const char *txt, size_t n, struct spf_record *out, struct buf *err);
void spf_record_free(struct spf_record *r);
const char *spf_mech_name(enum spf_mech_kind k);

enum spf_macro_mode {
    SPF_MACRO_DOMAIN,   /* domain-spec: no c, r, t; no spaces */
    SPF_MACRO_MODIFIER, /* unknown-modifier value: any letter, no spaces */
    SPF_MACRO_EXP,      /* explain-string: any letter, SP allowed */
};

struct spf_macro_info {
    bool uses_p;        /* %{p} appears */
    bool ends_macro;    /* the last token is a macro-expand (domain-end) */
};

/* The values of the macro letters, each a C string (may be ""). */
struct spf_macro_ctx {
    const char *s, *l, *o, *d, *i, *h, *c, *r, *v;
    const char *p;      /* NULL: not known yet */
    uint64_t t;
};

#define SPF_MACRO_NEED_P (-2)

int spf_macro_check(const char *s, size_t n, enum spf_macro_mode mode,
                    struct spf_macro_info *info, struct buf *err);
int spf_macro_expand(const char *s, size_t n, enum spf_macro_mode mode,
                     const struct spf_macro_ctx *ctx, struct buf *out, struct buf *err);

/* 7.3: a name of n bytes (no final dot) has labels of 1..63 bytes and at
 * most 253 in all. */
bool spf_name_ok(const char *s, size_t n);
/* 7.3: an expanded domain-spec as a name to query: one final dot dropped,
 * labels cut off the left until it fits 253 bytes; a new string, or NULL
 * when it is still not a usable name (empty label, label over 63). */
char *spf_target_name(const char *s, size_t n);

/* The request as the evaluator keeps it: the values of the macro letters
 * s l o h r i c v, and the checks of 4.3. */
struct spf_ident {
    char *sender, *local, *domain, *helo, *receiver;   /* s l o h r */
    char *domain0;          /* the initial <domain>, without a final dot */
    bool domain_ok;         /* 4.3: multi-label, well-formed, not a literal */
    bool v6, bad_ip;        /* an IPv4-mapped client is IPv4 */
    uint8_t ip[16];
    char ip_i[72], ip_c[48];
};

void spf_ident_init(struct spf_ident *id, const struct spf_request *req);
void spf_ident_free(struct spf_ident *id);

/* Append s[0..n) to b as printable ASCII for messages (others as \xHH). */
void spf_quote_for_msg(struct buf *b, const char *s, size_t n);

#endif
