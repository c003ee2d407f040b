/*
 * dmarc - Domain-based Message Authentication, Reporting and Conformance
 * (RFC 7489) with np= (RFC 9091): record parser, organizational domain,
 * identifier alignment and the policy evaluator.
 *
 * Evaluator: pull-style like spf.h and dkim.h. dmarc_eval_new() takes the
 * message (its header is enough) and the SPF and DKIM results the caller
 * already has, as plain values (dmarc_request; copied, so the request need
 * not outlive the call). It reads the From field at once (RFC 7489 6.6.1):
 * none, several, one with several mailboxes or with a mailbox without a
 * usable domain give permerror with from != DMARC_FROM_OK and no DNS at
 * all: such a message is not DMARC-evaluable. The From is read by
 * msg_author() (msg/author.h), the reader every From consumer shares, so
 * an unreadable header line, an obsolete "From :" second field or an
 * address a mail reader could show differently is permerror too. Then the caller loops:
 * dmarc_eval_step() says DMARC_STEP_DONE or hands out one question
 * (_dmarc.<From domain> TXT, maybe _dmarc.<organizational domain> TXT,
 * maybe A/AAAA/MX of the From domain for np=), answered with
 * dmarc_eval_answer(). dmarc_check() is the driver over dns/dns.h (done is
 * called exactly once); dmarc_check_wait() the blocking form for the CLI.
 *
 * Results: pass (an aligned identifier passed), fail (a policy exists, no
 * aligned pass), none (no usable record: none found, several at one name,
 * an invalid one), temperror (a DNS lookup failed, also an aligned DKIM
 * signature's key lookup: it might have passed; policy is then set),
 * permerror (the From
 * field, see above). policy is the p=, sp= or np= that applies;
 * disposition what to do after pct= (a failing message not sampled gets
 * the next lower policy: reject -> quarantine -> none); pass, none and the
 * errors have disposition none: acting on errors is the caller's choice.
 *
 * pct= is reproducible: the caller supplies the draw, a number in
 * [0, 100) (dmarc_pct_draw() makes them from a seed); the policy applies
 * when draw < pct, so pct=100 always and pct=0 never applies.
 *
 * Trust: the message and every DNS answer are untrusted; a malformed
 * record is "no policy", never a crash. SPF and DKIM results are trusted.
 */
#ifndef MW_DMARC_DMARC_H
#define MW_DMARC_DMARC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns/dns.h"

#define DMARC_MAX_URIS 8   /* per rua= / ruf=; more are ignored */

enum dmarc_result { DMARC_NONE, DMARC_PASS, DMARC_FAIL, DMARC_TEMPERROR, DMARC_PERMERROR };
enum dmarc_policy { DMARC_P_NONE, DMARC_P_QUARANTINE, DMARC_P_REJECT };
enum dmarc_align { DMARC_RELAXED, DMARC_STRICT };
enum dmarc_source { DMARC_SRC_NONE, DMARC_SRC_P, DMARC_SRC_SP, DMARC_SRC_NP };

/* Why the From field makes the message not DMARC-evaluable. */
enum dmarc_from {
    DMARC_FROM_OK,
    DMARC_FROM_MISSING,      /* no From field */
    DMARC_FROM_MULTIPLE,     /* several From fields */
    DMARC_FROM_MAILBOXES,    /* one From field, several (or no) mailboxes */
    DMARC_FROM_NO_DOMAIN,    /* the mailbox has no domain, a literal or a bad name */
    DMARC_FROM_SYNTAX,       /* the field cannot be read as a mailbox list */
    DMARC_FROM_HEADER,       /* a header line is not a field: the From is not certain */
    DMARC_FROM_SENDER,       /* several or unreadable Sender fields */
    DMARC_FROM_AMBIGUOUS,    /* a route, group, comment or encoded word in the address */
};

/* ---- records (RFC 7489 6.3) ---------------------------------------------- */

#define DMARC_FO_0 0x1
#define DMARC_FO_1 0x2
#define DMARC_FO_D 0x4
#define DMARC_FO_S 0x8

struct dmarc_uri {
    char *uri;          /* as written, without the !size suffix */
    uint64_t max_size;  /* bytes; 0 when no !size was given */
    bool mailto;        /* the scheme is mailto: */
};

struct dmarc_record {
    enum dmarc_policy p, sp, np;   /* sp and np already defaulted (np -> sp -> p) */
    bool has_sp, has_np;
    bool p_from_rua;               /* p= missing or invalid, acting as p=none
                                      because rua= holds a URI (6.6.3 6.1) */
    unsigned pct;                  /* 0..100, default 100 */
    enum dmarc_align adkim, aspf;
    unsigned fo;                   /* DMARC_FO_*, default DMARC_FO_0 */
    bool rf_afrf;                  /* rf= lists afrf (the default) */
    uint32_t ri;                   /* seconds, default 86400 */
    struct dmarc_uri rua[DMARC_MAX_URIS], ruf[DMARC_MAX_URIS];
    size_t nrua, nruf;
    unsigned ignored;              /* unknown tags and malformed values dropped */
};

enum dmarc_rec_status {
    DMARC_REC_OK = 0,
    DMARC_REC_NOT_DMARC = -1,   /* does not start with v=DMARC1: not a DMARC record */
    DMARC_REC_INVALID = -2,     /* a DMARC record that gives no policy; see *why */
};

/* Parse n bytes at s (no NUL needed). DMARC_REC_OK fills *out (free it with
 * dmarc_record_free); otherwise *out is zeroed and *why (may be NULL) says
 * what is wrong, a static string. v=DMARC1 must come first; p= is required
 * (or rua= as above); sp= must be valid when present; a duplicated tag
 * makes the record invalid. Malformed tag-specs, malformed values of
 * pct/adkim/aspf/fo/rf/ri/np and of single URIs are dropped in favour of
 * the defaults, unknown tags ignored (6.3), all counted in ignored. */
int dmarc_record_parse(const char *s, size_t n, struct dmarc_record *out, const char **why);
void dmarc_record_free(struct dmarc_record *r);

/* ---- domains --------------------------------------------------------------- */

/* The organizational domain (RFC 7489 3.2) of a domain name, lower case,
 * without a final dot: the registrable domain by the Public Suffix List,
 * or the name itself when it is a public suffix. NULL when domain is not
 * a DNS name (labels of 1..63 printable octets, at most 253 in all, no
 * literal). The list is the OS copy
 * (/usr/share/publicsuffix/public_suffix_list.dat) when readable, else
 * libpsl's built-in one; it is loaded once, thread-safely. xfree() it. */
char *dmarc_org_domain(const char *domain);
/* a and b are aligned in mode (3.1): strict = the same name (case and a
 * final dot aside), relaxed = the same organizational domain. */
bool dmarc_aligned(const char *a, const char *b, enum dmarc_align mode);
/* Where the public suffix list came from: a file path or "libpsl built-in". */
const char *dmarc_psl_source(void);

/* ---- evaluator --------------------------------------------------------------- */

struct dmarc_dkim_input {
    const char *domain;   /* d= of the signature */
    bool pass;            /* the signature verified (dkim=pass) */
    bool temperror;       /* its key lookup failed (dkim=temperror): an
                             aligned one makes a non-pass temperror */
};

struct dmarc_request {
    const char *msg;                /* the message or its header; CRLF or LF */
    size_t len;
    const char *spf_domain;         /* domain SPF checked (MAIL FROM, or HELO for
                                       the null sender); NULL: no SPF result */
    bool spf_pass;                  /* SPF said pass for spf_domain */
    const struct dmarc_dkim_input *dkim;
    size_t ndkim;
    unsigned pct_draw;              /* in [0, 100): see pct= above */
    const struct msg_author *author; /* msg_author() of msg, when the caller read
                                       it already (off its loop); NULL: read here */
};

struct dmarc_outcome {
    enum dmarc_result result;
    enum dmarc_from from;             /* permerror: why the From is unusable */
    enum dmarc_policy policy;         /* the policy that applies (none when no record) */
    enum dmarc_source policy_source;  /* which tag gave it */
    enum dmarc_policy disposition;    /* after pct; none unless result is fail */
    bool sampled_out;                 /* fail, policy not applied because of pct */
    const char *from_domain;          /* header.from, "" when unknown */
    const char *org_domain;           /* of from_domain, "" when unknown */
    const char *record_domain;        /* where the record was found, "" if none */
    bool spf_aligned, dkim_aligned;
    const char *spf_domain;           /* the aligned SPF domain, or NULL */
    const char *dkim_domain;          /* the first aligned passing d=, or NULL */
    bool nonexistent;                 /* the From domain does not exist (np checked) */
    const struct dmarc_record *record; /* the record used (rua/ruf for reports), or NULL */
    const char *reason;               /* short human text, never NULL */
};

struct dmarc_eval;
enum dmarc_step { DMARC_STEP_DNS, DMARC_STEP_DONE };

struct dmarc_eval *dmarc_eval_new(const struct dmarc_request *req);
void dmarc_eval_free(struct dmarc_eval *e);
/* DMARC_STEP_DNS: *name and *type are the question, valid until the next
 * call; answer it with dmarc_eval_answer(). */
enum dmarc_step dmarc_eval_step(struct dmarc_eval *e, const char **name, enum dns_type *type);
void dmarc_eval_answer(struct dmarc_eval *e, const struct dns_answer *ans);
/* After DMARC_STEP_DONE; everything it points to lives as long as e. */
const struct dmarc_outcome *dmarc_eval_outcome(const struct dmarc_eval *e);

typedef void (*dmarc_done_cb)(void *arg, const struct dmarc_outcome *o);
/* Evaluate req over r; done(arg, outcome) is called exactly once (the
 * outcome is valid only during the call). */
void dmarc_check(struct dns_resolver *r, const struct dmarc_request *req, dmarc_done_cb done,
                 void *arg);
/* Blocking: evaluate req over r, calling pump(pump_arg) while an answer is
 * outstanding (e.g. one event_base_loop(EVLOOP_ONCE)); pump may be NULL
 * for a backend that answers at once (the zone file). Returns the finished
 * evaluator: read dmarc_eval_outcome(), then dmarc_eval_free(). */
struct dmarc_eval *dmarc_check_wait(struct dns_resolver *r, const struct dmarc_request *req,
                                    void (*pump)(void *), void *pump_arg);

/* A draw in [0, 100) from a seedable generator (splitmix64 on *state). */
unsigned dmarc_pct_draw(uint64_t *state);

const char *dmarc_result_name(enum dmarc_result r);   /* "pass", "fail", ... */
const char *dmarc_policy_name(enum dmarc_policy p);   /* "none", "quarantine", "reject" */
const char *dmarc_from_name(enum dmarc_from f);       /* "ok", "missing", ... */

struct authres;
/* One "dmarc=" entry (RFC 7489 11.2): dmarc=fail (p=reject dis=quarantine)
 * header.from=example.com; for none and the errors the reason is the
 * comment. */
void dmarc_authres(struct authres *ar, const struct dmarc_outcome *o);

#endif
