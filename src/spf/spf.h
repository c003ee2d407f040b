/*
 * spf - Sender Policy Framework (RFC 7208), complete: record selection,
 * every mechanism and modifier, the macro language, the DNS lookup and
 * void-lookup limits, and all seven results.
 *
 * The evaluator does no I/O. spf_eval_new() takes the request; then the
 * caller loops: spf_eval_step() either says SPF_STEP_DONE or hands out one
 * DNS question, whose answer the caller passes to spf_eval_answer().
 * spf_check() is the driver over the dns interface (dns/dns.h): it works
 * with synchronous backends (zone file) and asynchronous ones (libunbound
 * on the event loop) alike, and calls done exactly once.
 *
 * Results carry the RFC 7208 meaning exactly: none, neutral, pass, fail,
 * softfail, temperror, permerror; the explanation (exp=, macro-expanded)
 * for fail, and a short reason for logs and Received-SPF.
 *
 * Trust: every DNS answer and every identity string is untrusted input;
 * malformed records give permerror, never a crash. A client address that
 * is not an IP address gives permerror; a domain that is malformed or not
 * multi-label gives none (RFC 7208 4.3).
 *
 * Names handed out by spf_eval_step() are raw text like every name of
 * dns.h: a macro expansion may hold spaces or other octets (RFC 7208 test
 * "macro-mania-in-domain" asks for "macro%percent  space%20url-space...").
 */
#ifndef MW_SPF_SPF_H
#define MW_SPF_SPF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "dns/dns.h"

enum spf_result {
    SPF_NONE,
    SPF_NEUTRAL,
    SPF_PASS,
    SPF_FAIL,
    SPF_SOFTFAIL,
    SPF_TEMPERROR,
    SPF_PERMERROR,
};

struct spf_request {
    const char *ip;        /* client address, IPv4 or IPv6 text */
    const char *sender;    /* MAIL FROM address, "" for the null sender */
    const char *helo;      /* HELO/EHLO name */
    bool helo_identity;    /* check the HELO identity instead of MAIL FROM */
    const char *receiver;  /* our host name, for the %{r} macro */
    uint64_t now;          /* %{t}, seconds since the epoch; 0: the clock */
};

struct spf_outcome {
    enum spf_result result;
    const char *domain;       /* the domain checked */
    const char *explanation;  /* fail: expanded exp= text, else NULL; printable
                                 ASCII (the exp grammar), at most 8 KiB: cut
                                 it to fit an SMTP reply line */
    const char *reason;       /* short human text: matched mechanism or the error */
    const char *mechanism;    /* the mechanism that matched, or NULL */
};

struct spf_eval;

enum spf_step { SPF_STEP_DNS, SPF_STEP_DONE };

struct spf_eval *spf_eval_new(const struct spf_request *req);
void spf_eval_free(struct spf_eval *e);
/* SPF_STEP_DNS: *name and *type say what to look up (valid until the
 * next call); answer it with spf_eval_answer(). */
enum spf_step spf_eval_step(struct spf_eval *e, const char **name, enum dns_type *type);
void spf_eval_answer(struct spf_eval *e, const struct dns_answer *ans);
/* After SPF_STEP_DONE; strings live as long as e. */
const struct spf_outcome *spf_eval_outcome(const struct spf_eval *e);

typedef void (*spf_done_cb)(void *arg, const struct spf_outcome *o);
/* Evaluate req over r; done(arg, outcome) is called exactly once (the
 * outcome is valid only during the call). */
void spf_check(struct dns_resolver *r, const struct spf_request *req, spf_done_cb done, void *arg);

const char *spf_result_name(enum spf_result r);   /* "pass", "fail", ... */

/* Received-SPF header field (RFC 7208 9.1), folded, ending in CRLF. */
void spf_received_header(const struct spf_outcome *o, const struct spf_request *req,
                         struct buf *out);

#endif
