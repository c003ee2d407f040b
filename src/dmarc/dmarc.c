/*
 * dmarc/dmarc.c - the DMARC evaluator (RFC 7489 6.6, RFC 9091), the
 * organizational domain over libpsl, alignment, the drivers over dns/ and
 * the Authentication-Results entry; the contract is in dmarc.h.
 *
 * Order of work: dmarc_eval_new() reads the From field (msg/header.h) and
 * decides alignment at once, since it needs no DNS; then policy discovery
 * (6.6.3): TXT at _dmarc.<From domain>; when that holds no DMARC record
 * (NXDOMAIN, NODATA, a bad name, only other TXT records) and the From
 * domain is not its own organizational domain, TXT at _dmarc.<org>. A
 * temporary failure is temperror (no fallback); several DMARC records at
 * one name, or an invalid one, end discovery with none.
 *
 * np= (RFC 9091): when the record came from the organizational domain,
 * sets an np= that differs from the subdomain policy, the From domain is
 * checked for existence: A, then AAAA, then MX; NXDOMAIN at any of them,
 * or NODATA at all three, makes it non-existent and np= applies. A lookup
 * failure there makes a failing message temperror (the policy is unknown);
 * a passing one keeps its pass with the subdomain policy.
 *
 * The Public Suffix List is loaded once (pthread_once) and only read after.
 * Every handler that needs a lookup calls ask() and returns; step() hands
 * the question out; answers are read during dmarc_eval_answer() only.
 */
#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>

#include <libpsl.h>

#include "core/buf.h"
#include "core/idna.h"
#include "core/str.h"
#include "core/xmalloc.h"
#include "dmarc/dmarc.h"
#include "msg/authres.h"
#include "msg/author.h"
#include "msg/header.h"

/* The OS list: the compiled DAFSA form loads in a few ms, the text form
 * (same list, same package) in about 15; either beats libpsl's built-in. */
#define PSL_DAFSA "/usr/share/publicsuffix/public_suffix_list.dafsa"
#define PSL_FILE "/usr/share/publicsuffix/public_suffix_list.dat"

enum stage { ST_NONE, ST_REC_FROM, ST_REC_ORG, ST_EXIST_A, ST_EXIST_AAAA, ST_EXIST_MX };

struct dmarc_eval {
    dmarc_done_cb report;      /* dmarc_check(): whom to tell */
    void *report_arg;
    bool finished;             /* dmarc_check_wait(): the driver is through */

    char *from_domain, *org_domain, *spf_domain;
    char **dkim;               /* d= of the passing signatures, normalized */
    size_t ndkim;
    char **dkim_temp;          /* d= of the signatures whose key lookup failed */
    size_t ndkim_temp;
    unsigned draw;
    struct dmarc_record rec;
    bool have_rec, exist_unknown;

    enum stage st;             /* the question out, ST_NONE if none */
    char *q_name;
    enum dns_type q_type;

    bool done;
    struct dmarc_outcome out;
    struct buf reason, rec_domain;
};

/* ---- the Public Suffix List ------------------------------------------------ */

static const psl_ctx_t *psl;
static const char *psl_from = "libpsl built-in";
static pthread_once_t psl_once = PTHREAD_ONCE_INIT;

static void psl_init(void)
{
    static const char *const files[] = { PSL_DAFSA, PSL_FILE };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        psl_ctx_t *f = psl_load_file(files[i]);
        if (f != NULL) {
            psl = f;
            psl_from = files[i];
            return;
        }
    }
    psl = psl_builtin();
}

const char *dmarc_psl_source(void)
{
    pthread_once(&psl_once, psl_init);
    return psl != NULL ? psl_from : "none";
}

/* domain in lower case without a final dot, U-labels as A-labels (RFC
 * 8616 6: every lookup and comparison uses the A-label form), if it is a
 * DNS name; NULL for an invalid U-label. */
static char *norm_domain(const char *given)
{
    char *ace = idna_to_ascii(given);
    if (ace == NULL)
        return NULL;
    const char *domain = ace;
    size_t n = strlen(domain);
    if (n > 0 && domain[n - 1] == '.')
        n--;
    if (n == 0 || n > 253) {
        xfree(ace);
        return NULL;
    }
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = i < n ? (unsigned char)domain[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63) {
                xfree(ace);
                return NULL;
            }
            label = 0;
        } else if (c <= 0x20 || c == 0x7f || c == '[' || c == ']') {
            xfree(ace);
            return NULL;
        } else {
            label++;
        }
    }
    ace[n] = '\0';
    return ace;
}

char *dmarc_org_domain(const char *domain)
{
    char *d = norm_domain(domain);
    if (d == NULL)
        return NULL;
    pthread_once(&psl_once, psl_init);
    const char *reg = psl != NULL ? psl_registrable_domain(psl, d) : NULL;
    if (reg == NULL || reg == d)
        return d;
    char *org = xstrdup(reg);
    xfree(d);
    return org;
}

static bool aligned_norm(const char *a, const char *b, const char *b_org, enum dmarc_align mode)
{
    if (strcmp(a, b) == 0)
        return true;
    if (mode == DMARC_STRICT)
        return false;
    char *a_org = dmarc_org_domain(a);
    bool same = a_org != NULL && strcmp(a_org, b_org) == 0;
    xfree(a_org);
    return same;
}

bool dmarc_aligned(const char *a, const char *b, enum dmarc_align mode)
{
    char *na = norm_domain(a), *nb = norm_domain(b), *ob = dmarc_org_domain(b);
    bool r = na != NULL && nb != NULL && ob != NULL && aligned_norm(na, nb, ob, mode);
    xfree(na);
    xfree(nb);
    xfree(ob);
    return r;
}

unsigned dmarc_pct_draw(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (unsigned)(z % 100);
}

/* ---- From (6.6.1) ------------------------------------------------------------ */

static enum dmarc_from from_domain(const char *msg, size_t len, const struct msg_author *given,
                                   char **domain, size_t *line)
{
    struct msg_author own = { 0 };
    const struct msg_author *a = given;
    if (a == NULL) {
        msg_author(msg, len, &own);
        a = &own;
    }
    enum dmarc_from r = DMARC_FROM_OK;
    switch (a->status) {
    case MSG_AUTHOR_OK:
        if ((*domain = norm_domain(a->mb[0].domain)) == NULL)
            r = DMARC_FROM_NO_DOMAIN;
        break;
    case MSG_AUTHOR_BAD_HEADER: r = DMARC_FROM_HEADER; break;
    case MSG_AUTHOR_MISSING: r = DMARC_FROM_MISSING; break;
    case MSG_AUTHOR_MULTIPLE: r = DMARC_FROM_MULTIPLE; break;
    case MSG_AUTHOR_SENDER: r = DMARC_FROM_SENDER; break;
    case MSG_AUTHOR_SYNTAX: r = DMARC_FROM_SYNTAX; break;
    case MSG_AUTHOR_AMBIGUOUS: r = DMARC_FROM_AMBIGUOUS; break;
    case MSG_AUTHOR_MAILBOXES: r = DMARC_FROM_MAILBOXES; break;
    }
    *line = a->line;
    msg_author_free(&own);
    return r;
}

/* ---- the evaluator ------------------------------------------------------------ */

static void finish(struct dmarc_eval *e, enum dmarc_result r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish(struct dmarc_eval *e, enum dmarc_result r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_reset(&e->reason);
    buf_vprintf(&e->reason, fmt, ap);
    va_end(ap);
    e->out.result = r;
    e->out.reason = buf_ptr(&e->reason);
    e->st = ST_NONE;
    e->done = true;
}

static void ask(struct dmarc_eval *e, enum stage st, const char *prefix, const char *domain,
                enum dns_type t)
{
    xfree(e->q_name);
    struct buf b = { 0 };
    buf_printf(&b, "%s%s", prefix, domain);
    e->q_name = xmemdup0(buf_ptr(&b), buf_size(&b));
    buf_free(&b);
    e->q_type = t;
    e->st = st;
}

/* Keep the identifiers that passed; alignment waits for the record's modes. */
static void keep_passes(struct dmarc_eval *e, const struct dmarc_request *req)
{
    if (req->spf_pass && req->spf_domain != NULL)
        e->spf_domain = norm_domain(req->spf_domain);
    e->dkim = xcalloc(req->ndkim ? req->ndkim : 1, sizeof(*e->dkim));
    e->dkim_temp = xcalloc(req->ndkim ? req->ndkim : 1, sizeof(*e->dkim_temp));
    for (size_t i = 0; i < req->ndkim; i++) {
        char *t = req->dkim[i].temperror && req->dkim[i].domain != NULL
                      ? norm_domain(req->dkim[i].domain) : NULL;
        if (t != NULL)
            e->dkim_temp[e->ndkim_temp++] = t;
        char *d = req->dkim[i].pass && req->dkim[i].domain != NULL
                      ? norm_domain(req->dkim[i].domain) : NULL;
        if (d != NULL)
            e->dkim[e->ndkim++] = d;
    }
}

static const char *first_aligned(const struct dmarc_eval *e, char *const *d, size_t n,
                                 enum dmarc_align mode)
{
    for (size_t i = 0; i < n; i++) {
        if (aligned_norm(d[i], e->from_domain, e->org_domain, mode))
            return d[i];
    }
    return NULL;
}

static const char *dkim_aligned(const struct dmarc_eval *e, enum dmarc_align mode)
{
    return first_aligned(e, e->dkim, e->ndkim, mode);
}

/* The policy record is known: alignment modes apply now. */
static void decide(struct dmarc_eval *e)
{
    const struct dmarc_record *r = &e->rec;
    const char *from = e->from_domain, *org = e->org_domain;
    assert(e->have_rec);
    struct dmarc_outcome *o = &e->out;
    o->record = r;
    o->spf_aligned = e->spf_domain != NULL && aligned_norm(e->spf_domain, from, org, r->aspf);
    o->dkim_domain = dkim_aligned(e, r->adkim);
    o->dkim_aligned = o->dkim_domain != NULL;
    o->spf_domain = o->spf_aligned ? e->spf_domain : NULL;
    bool at_org = strcmp(buf_ptr(&e->rec_domain), from) != 0;
    o->policy_source = !at_org ? DMARC_SRC_P : o->nonexistent && r->has_np ? DMARC_SRC_NP
                     : r->has_sp ? DMARC_SRC_SP : DMARC_SRC_P;
    o->policy = !at_org ? r->p : o->nonexistent ? r->np : r->sp;
    if (o->dkim_aligned || o->spf_aligned) {
        finish(e, DMARC_PASS, "%s aligned with %s", o->dkim_aligned ? "DKIM" : "SPF", from);
        return;
    }
    /* An aligned signature whose key could not be fetched might have
     * passed: not a failure, a temporary error (RFC 7489 6.6.2, RFC 8601
     * 2.7.1), so that the sender tries again rather than being refused. */
    const char *temp = first_aligned(e, e->dkim_temp, e->ndkim_temp, r->adkim);
    if (temp != NULL) {
        finish(e, DMARC_TEMPERROR, "the DKIM key of aligned %s could not be fetched", temp);
        return;
    }
    if (e->exist_unknown) {
        finish(e, DMARC_TEMPERROR, "cannot tell whether %s exists (np=)", from);
        return;
    }
    o->disposition = o->policy;
    if (o->policy != DMARC_P_NONE && e->draw >= r->pct) {
        o->sampled_out = true;
        o->disposition = o->policy == DMARC_P_REJECT ? DMARC_P_QUARANTINE : DMARC_P_NONE;
    }
    finish(e, DMARC_FAIL, "neither SPF nor DKIM aligned with %s%s", from,
           o->sampled_out ? " (not sampled by pct)" : "");
}

static void after_record(struct dmarc_eval *e)
{
    const char *from = e->from_domain;
    bool at_org = strcmp(buf_ptr(&e->rec_domain), from) != 0;
    if (at_org && e->rec.has_np && e->rec.np != e->rec.sp)
        ask(e, ST_EXIST_A, "", from, DNS_T_A);
    else
        decide(e);
}

/* How many DMARC records the answer holds; the one when exactly one. */
static size_t dmarc_records(const struct dns_answer *a, const struct dns_rr **one)
{
    size_t n = 0;
    for (size_t i = 0; a->status == DNS_OK && i < a->n; i++) {
        const struct dns_rr *rr = &a->rr[i];
        struct dmarc_record tmp;
        if (rr->type != DNS_T_TXT ||
            dmarc_record_parse(rr->u.txt.data, rr->u.txt.len, &tmp, NULL) == DMARC_REC_NOT_DMARC)
            continue;
        dmarc_record_free(&tmp);
        if (n++ == 0)
            *one = rr;
    }
    return n;
}

static void on_record(struct dmarc_eval *e, const struct dns_answer *a, bool at_org)
{
    const char *dom = at_org ? e->org_domain : e->from_domain;
    if (a->status == DNS_TEMPFAIL) {
        finish(e, DMARC_TEMPERROR, "DNS failure at _dmarc.%s: %s", dom,
               a->why != NULL ? a->why : "temporary failure");
        return;
    }
    const struct dns_rr *rr = NULL;
    size_t n = dmarc_records(a, &rr);
    if (n == 0 && !at_org && strcmp(e->org_domain, e->from_domain) != 0) {
        ask(e, ST_REC_ORG, "_dmarc.", e->org_domain, DNS_T_TXT);
    } else if (n == 0) {
        finish(e, DMARC_NONE, "no DMARC record for %s", e->from_domain);
    } else if (n > 1) {
        finish(e, DMARC_NONE, "several DMARC records at _dmarc.%s", dom);
    } else {
        const char *why = "";
        if (dmarc_record_parse(rr->u.txt.data, rr->u.txt.len, &e->rec, &why) != DMARC_REC_OK) {
            finish(e, DMARC_NONE, "invalid DMARC record at _dmarc.%s: %s", dom, why);
            return;
        }
        e->have_rec = true;
        buf_append_str(&e->rec_domain, dom);
        e->out.record_domain = buf_ptr(&e->rec_domain);
        after_record(e);
    }
}

static void on_exist(struct dmarc_eval *e, enum stage st, const struct dns_answer *a)
{
    if (a->status == DNS_NXDOMAIN) {
        e->out.nonexistent = true;
    } else if (a->status == DNS_TEMPFAIL || a->status == DNS_PERMFAIL) {
        e->exist_unknown = true;
    } else if (a->status == DNS_NODATA && st == ST_EXIST_A) {
        ask(e, ST_EXIST_AAAA, "", e->from_domain, DNS_T_AAAA);
        return;
    } else if (a->status == DNS_NODATA && st == ST_EXIST_AAAA) {
        ask(e, ST_EXIST_MX, "", e->from_domain, DNS_T_MX);
        return;
    } else if (a->status == DNS_NODATA) {
        e->out.nonexistent = true;
    }
    decide(e);
}

static const char *from_problem(enum dmarc_from f)
{
    switch (f) {
    case DMARC_FROM_OK: break;
    case DMARC_FROM_MISSING: return "no From field";
    case DMARC_FROM_MULTIPLE: return "several From fields";
    case DMARC_FROM_MAILBOXES: return "the From field does not hold exactly one mailbox";
    case DMARC_FROM_NO_DOMAIN: return "the From mailbox has no usable domain";
    case DMARC_FROM_SYNTAX: return "the From field is malformed";
    case DMARC_FROM_HEADER: return "a header line is not a header field";
    case DMARC_FROM_SENDER: return "several or unreadable Sender fields";
    case DMARC_FROM_AMBIGUOUS: return "the From address has a route, group, comment, "
                                      "encoded word or quoted '@' a reader may show as another address";
    }
    return "the From field is malformed";
}

struct dmarc_eval *dmarc_eval_new(const struct dmarc_request *req)
{
    assert(req->pct_draw < 100);
    struct dmarc_eval *e = xcalloc(1, sizeof(*e));
    e->draw = req->pct_draw;
    e->out.from_domain = e->out.org_domain = e->out.record_domain = "";
    size_t line = 0;
    e->out.from = from_domain(req->msg, req->len, req->author, &e->from_domain, &line);
    if (e->out.from != DMARC_FROM_OK && line > 0) {
        finish(e, DMARC_PERMERROR, "not DMARC-evaluable: %s, header line %zu",
               from_problem(e->out.from), line);
        return e;
    }
    if (e->out.from != DMARC_FROM_OK) {
        finish(e, DMARC_PERMERROR, "not DMARC-evaluable: %s", from_problem(e->out.from));
        return e;
    }
    e->org_domain = dmarc_org_domain(e->from_domain);
    assert(e->org_domain != NULL);   /* from_domain is a normalized name */
    e->out.from_domain = e->from_domain;
    e->out.org_domain = e->org_domain;
    keep_passes(e, req);
    ask(e, ST_REC_FROM, "_dmarc.", e->from_domain, DNS_T_TXT);
    return e;
}

void dmarc_eval_free(struct dmarc_eval *e)
{
    if (e == NULL)
        return;
    dmarc_record_free(&e->rec);
    char *strs[] = { e->from_domain, e->org_domain, e->spf_domain, e->q_name };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        xfree(strs[i]);
    for (size_t i = 0; i < e->ndkim; i++)
        xfree(e->dkim[i]);
    xfree(e->dkim);
    for (size_t i = 0; i < e->ndkim_temp; i++)
        xfree(e->dkim_temp[i]);
    xfree(e->dkim_temp);
    buf_free(&e->reason);
    buf_free(&e->rec_domain);
    xfree(e);
}

enum dmarc_step dmarc_eval_step(struct dmarc_eval *e, const char **name, enum dns_type *type)
{
    if (e->done)
        return DMARC_STEP_DONE;
    assert(e->st != ST_NONE);
    *name = e->q_name;
    *type = e->q_type;
    return DMARC_STEP_DNS;
}

void dmarc_eval_answer(struct dmarc_eval *e, const struct dns_answer *ans)
{
    enum stage st = e->st;
    if (e->done || st == ST_NONE)
        return;
    e->st = ST_NONE;
    switch (st) {
    case ST_REC_FROM: on_record(e, ans, false); break;
    case ST_REC_ORG: on_record(e, ans, true); break;
    case ST_EXIST_A:
    case ST_EXIST_AAAA:
    case ST_EXIST_MX: on_exist(e, st, ans); break;
    case ST_NONE: break;
    }
}

const struct dmarc_outcome *dmarc_eval_outcome(const struct dmarc_eval *e)
{
    return &e->out;
}

/* ---- the drivers over dns/ ------------------------------------------------------ */

static bool step_next(void *ev, const char **name, enum dns_type *type)
{
    return dmarc_eval_step(ev, name, type) == DMARC_STEP_DNS;
}

static void step_answer(void *ev, const struct dns_answer *ans)
{
    dmarc_eval_answer(ev, ans);
}

static void step_finish(void *ev)
{
    struct dmarc_eval *e = ev;
    if (e->report == NULL) {   /* dmarc_check_wait() frees it */
        e->finished = true;
        return;
    }
    e->report(e->report_arg, dmarc_eval_outcome(e));
    dmarc_eval_free(e);
}

static const struct dns_stepper dmarc_stepper = {
    .next = step_next, .answer = step_answer, .finish = step_finish,
};

void dmarc_check(struct dns_resolver *r, const struct dmarc_request *req, dmarc_done_cb done,
                 void *arg)
{
    struct dmarc_eval *e = dmarc_eval_new(req);
    e->report = done;
    e->report_arg = arg;
    dns_drive(r, &dmarc_stepper, e);
}

struct dmarc_eval *dmarc_check_wait(struct dns_resolver *r, const struct dmarc_request *req,
                                    void (*pump)(void *), void *pump_arg)
{
    struct dmarc_eval *e = dmarc_eval_new(req);
    dns_drive(r, &dmarc_stepper, e);
    while (!e->finished) {
        assert(pump != NULL);   /* an asynchronous backend needs its loop run */
        pump(pump_arg);
    }
    return e;
}

/* ---- Authentication-Results (RFC 7489 11.2) ------------------------------------- */

void dmarc_authres(struct authres *ar, const struct dmarc_outcome *o)
{
    struct buf c = { 0 };
    if (o->result == DMARC_PASS || o->result == DMARC_FAIL)
        buf_printf(&c, "p=%s dis=%s", dmarc_policy_name(o->policy),
                   dmarc_policy_name(o->disposition));
    authres_method(ar, "dmarc", dmarc_result_name(o->result),
                   buf_size(&c) > 0 ? buf_ptr(&c) : o->reason);
    if (o->from_domain[0] != '\0')
        authres_prop(ar, "header", "from", o->from_domain);
    buf_free(&c);
}
