/*
 * spf - check_host() of RFC 7208 as a pull-style state machine, and the
 * spf_check() driver over dns/.
 *
 * State: a stack of frames, one per check_host() in progress (the root,
 * then one per "include" being evaluated; "redirect" replaces the frame it
 * runs in). A frame fetches its record (FS_START), walks the mechanisms
 * (FS_TERMS, with FS_MX for the address lookups of MX hosts), waits for an
 * included child (FS_CHILD), and finally applies redirect or the default
 * neutral. Beside the frames run two sub-procedures: the validated names
 * of the client (PTR, then A/AAAA of the first 10 names), shared by the
 * "ptr" mechanism and %{p}; and the explanation (exp=), fetched only when
 * the final result is fail and only from the record on the root's redirect
 * chain that produced it. Any handler that needs a lookup sets e->pend and
 * returns; spf_eval_step() hands the question out, spf_eval_answer() feeds
 * the answer to the handler for e->pend (answers are copied, never kept).
 * A handler that needs %{p} starts the PTR procedure and is re-run after
 * it, which is why terms are counted once (frame.counted).
 *
 * Limits (4.6.4): 10 terms that query DNS (include a mx ptr exists
 * redirect), counted when reached, the 11th is permerror; 2 void lookups
 * (NODATA/NXDOMAIN of a term's own query), the 3rd is permerror; an "mx"
 * term with more than 10 MX RRs is permerror; "ptr"/%{p} validate only the
 * first 10 PTR names. exp= lookups count against neither limit. A DNS error
 * is temperror except for the ptr procedure (name skipped, 5.5) and exp=
 * (ignored, 6.2). An IPv4-mapped IPv6 client is an IPv4 client (5).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/str.h"
#include "core/xmalloc.h"
#include "spf/spf_int.h"

#define SPF_MAX_DEPTH (SPF_MAX_DNS_TERMS + 2)
#define SPF_MAX_QUERIES 200 /* belt and braces; the limits above allow ~150 */

enum fstate { FS_START, FS_TERMS, FS_MX, FS_CHILD };
enum pend { PQ_NONE, PQ_RECORD, PQ_ADDR, PQ_MX, PQ_MX_ADDR, PQ_EXISTS, PQ_PTR, PQ_PTR_ADDR, PQ_EXP };
enum pvstate { PV_NONE, PV_RUNNING, PV_DONE };
enum exstate { EX_NONE, EX_LOOKUP, EX_EXPAND };

struct frame {
    char *domain;            /* <domain> of this check_host() */
    struct spf_record rec;
    size_t pos;              /* current term */
    enum fstate st;
    bool redirected;         /* no record here is permerror, not none */
    bool counted;            /* the current term was counted */
    char *target;            /* expanded target of the current term */
    char **hosts;            /* FS_MX: exchanges still to look up */
    size_t nhosts, ihost;
};

struct spf_eval {
    spf_done_cb report;  /* spf_check(): whom to tell */
    void *report_arg;
    struct spf_ident id;     /* the request, and the macro values it gives */
    uint64_t now;

    struct frame fr[SPF_MAX_DEPTH];
    size_t depth;
    unsigned terms, voids, queries;

    enum pend pend;          /* the question out, PQ_NONE if none */
    char *q_name;
    enum dns_type q_type;

    enum pvstate pv;         /* validated names of the client */
    bool pv_asked, pv_void;
    char **pv_names;
    bool pv_valid[SPF_MAX_PTR];
    size_t pv_n, pv_i;

    enum exstate ex;
    char *ex_spec, *ex_domain, *ex_text;

    bool done;
    struct spf_outcome out;
    char *reason, *mech, *explanation;
    struct buf tmp, err;
};

static void advance(struct spf_eval *e);

/* ---- names and addresses ------------------------------------------------ */

/* name is dom or a subdomain of it */
static bool name_under(const char *name, const char *dom)
{
    size_t nn = strlen(name), nd = strlen(dom);
    if (nn > 0 && name[nn - 1] == '.')
        nn--;
    if (nd > 0 && dom[nd - 1] == '.')
        nd--;
    if (nn < nd || (nn > nd && name[nn - nd - 1] != '.'))
        return false;
    for (size_t i = 0; i < nd; i++)
        if (ascii_lower(name[nn - nd + i]) != ascii_lower(dom[i]))
            return false;
    return true;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

/* ---- the question, the end ---------------------------------------------- */

static void finish(struct spf_eval *e, enum spf_result r, const char *reason)
{
    if (e->done)
        return;
    e->done = true;
    e->pend = PQ_NONE;
    xfree(e->reason);
    e->reason = xstrdup(reason);
    e->out = (struct spf_outcome){ .result = r, .domain = e->id.domain0, .reason = e->reason,
                                   .mechanism = e->mech,
                                   .explanation = r == SPF_FAIL ? e->explanation : NULL };
}

/* finish with the reason made of the strings given, up to a NULL */
static void finishs(struct spf_eval *e, enum spf_result r, ...)
{
    va_list ap;
    va_start(ap, r);
    buf_reset(&e->tmp);
    for (const char *s = va_arg(ap, const char *); s != NULL; s = va_arg(ap, const char *))
        buf_append_str(&e->tmp, s);
    va_end(ap);
    finish(e, r, buf_ptr(&e->tmp));
}

/* Ask (name, t); the name is raw text as dns.h takes it (a macro expansion
 * may hold spaces or any other octet but '.' and NUL). */
static void ask(struct spf_eval *e, enum pend p, const char *name, enum dns_type t)
{
    if (++e->queries > SPF_MAX_QUERIES) {
        finish(e, SPF_PERMERROR, "too many DNS queries");
        return;
    }
    xfree(e->q_name);
    e->q_name = xstrdup(name);
    e->q_type = t;
    e->pend = p;
}

static bool count_term(struct spf_eval *e, struct frame *f)
{
    if (f->counted)
        return true;
    f->counted = true;
    if (++e->terms > SPF_MAX_DNS_TERMS) {
        finish(e, SPF_PERMERROR, "more than 10 DNS-querying terms (RFC 7208 4.6.4)");
        return false;
    }
    return true;
}

static bool count_void(struct spf_eval *e)
{
    if (++e->voids > SPF_MAX_VOID) {
        finish(e, SPF_PERMERROR, "more than 2 void DNS lookups (RFC 7208 4.6.4)");
        return false;
    }
    return true;
}

/* The answer's records of type t (CNAMEs a backend may add are skipped). */
static size_t n_of_type(const struct dns_answer *a, enum dns_type t)
{
    size_t n = 0;
    if (a->status == DNS_OK)
        for (size_t i = 0; i < a->n; i++)
            n += a->rr[i].type == t;
    return n;
}

static bool is_void(const struct dns_answer *a, enum dns_type t)
{
    return a->status == DNS_NXDOMAIN || a->status == DNS_NODATA ||
           (a->status == DNS_OK && n_of_type(a, t) == 0);
}

static void dns_error(struct spf_eval *e, const char *name, const struct dns_answer *a)
{
    finishs(e, SPF_TEMPERROR, "DNS error looking up ", name, a->why != NULL ? ": " : "",
            a->why != NULL ? a->why : "", NULL);
}

/* ---- macros -------------------------------------------------------------- */

static const char *validated_name(struct spf_eval *e, const char *domain)
{
    for (size_t i = 0; i < e->pv_n; i++)
        if (e->pv_valid[i] && name_under(e->pv_names[i], domain))
            return e->pv_names[i];
    for (size_t i = 0; i < e->pv_n; i++)
        if (e->pv_valid[i])
            return e->pv_names[i];
    return "unknown";
}

static void pv_start(struct spf_eval *e)
{
    if (e->pv == PV_NONE)
        e->pv = PV_RUNNING;
}

/* Expand s for <domain> = domain into e->tmp: 0, 1 (wait for %{p}), -1. */
static int expand(struct spf_eval *e, const char *s, enum spf_macro_mode mode, const char *domain)
{
    struct spf_macro_ctx ctx = {
        .s = e->id.sender, .l = e->id.local, .o = e->id.domain, .d = domain, .i = e->id.ip_i,
        .h = e->id.helo, .c = e->id.ip_c, .r = e->id.receiver,
        .v = e->id.v6 ? "ip6" : "in-addr",
        .p = e->pv == PV_DONE ? validated_name(e, domain) : NULL, .t = e->now,
    };
    buf_reset(&e->tmp);
    buf_reset(&e->err);
    int r = spf_macro_expand(s, strlen(s), mode, &ctx, &e->tmp, &e->err);
    if (r == SPF_MACRO_NEED_P) {
        pv_start(e);
        return 1;
    }
    return r < 0 ? -1 : 0;
}

/* The target of the current term: 0 (f->target set, NULL if malformed),
 * 1 (wait), -1 (finished with permerror). */
static int term_target(struct spf_eval *e, struct frame *f, const char *spec)
{
    xfree(f->target);
    f->target = NULL;
    if (spec == NULL) {
        f->target = xstrdup(f->domain);
        return 0;
    }
    int r = expand(e, spec, SPF_MACRO_DOMAIN, f->domain);
    if (r < 0) {
        finishs(e, SPF_PERMERROR, f->domain, ": ", buf_ptr(&e->err), NULL);
        return -1;
    }
    if (r == 0)
        f->target = spf_target_name(buf_ptr(&e->tmp), buf_size(&e->tmp));
    return r;
}

/* ---- frames -------------------------------------------------------------- */

static void frame_clear(struct frame *f)
{
    xfree(f->domain);
    xfree(f->target);
    spf_record_free(&f->rec);
    for (size_t i = 0; i < f->nhosts; i++)
        xfree(f->hosts[i]);
    xfree(f->hosts);
    memset(f, 0, sizeof(*f));
}

static void next_term(struct frame *f)
{
    f->pos++;
    f->counted = false;
    f->st = FS_TERMS;
}

static void push_frame(struct spf_eval *e, char *domain)
{
    if (e->depth >= SPF_MAX_DEPTH) {   /* cannot happen: each level costs a term */
        xfree(domain);
        finish(e, SPF_PERMERROR, "include nesting too deep");
        return;
    }
    struct frame *f = &e->fr[e->depth++];
    memset(f, 0, sizeof(*f));
    f->domain = domain;
    f->st = FS_START;
}

static void start_exp(struct spf_eval *e, struct frame *f)
{
    e->ex = EX_LOOKUP;
    e->ex_spec = xstrdup(f->rec.exp);
    e->ex_domain = xstrdup(f->domain);
}

/* The frame on top ends with r (mech: the directive that matched, or NULL). */
static void frame_result(struct spf_eval *e, enum spf_result r, const struct spf_mech *mech)
{
    while (e->depth > 1) {
        frame_clear(&e->fr[--e->depth]);
        struct frame *p = &e->fr[e->depth - 1];
        if (r != SPF_PASS) {       /* fail, softfail, neutral: no match (5.2) */
            next_term(p);
            return;
        }
        mech = &p->rec.mech[p->pos];
        r = mech->qual;
    }
    struct frame *f = &e->fr[0];
    xfree(e->mech);
    e->mech = mech != NULL ? xstrdup(mech->text) : NULL;
    if (r == SPF_FAIL && f->rec.exp != NULL) {
        start_exp(e, f);
        return;
    }
    if (mech != NULL)
        finishs(e, r, f->domain, " matched ", mech->text, NULL);
    else
        finishs(e, r, f->domain, ": no mechanism matched, default", NULL);
}

static void on_record(struct spf_eval *e, const struct dns_answer *a)
{
    struct frame *f = &e->fr[e->depth - 1];
    if (a->status == DNS_TEMPFAIL) {
        dns_error(e, f->domain, a);
        return;
    }
    const struct dns_rr *rec = NULL;
    size_t nspf = 0;
    for (size_t i = 0; a->status == DNS_OK && i < a->n; i++)
        if (a->rr[i].type == DNS_T_TXT && spf_record_is_v1(a->rr[i].u.txt.data, a->rr[i].u.txt.len))
            rec = &a->rr[i], nspf++;
    if (nspf > 1) {
        finishs(e, SPF_PERMERROR, f->domain, " has more than one SPF record", NULL);
    } else if (nspf == 0 && e->depth == 1 && !f->redirected) {
        finishs(e, SPF_NONE, f->domain, " has no SPF record", NULL);
    } else if (nspf == 0) {
        finishs(e, SPF_PERMERROR, f->domain, f->redirected ? " (redirect" : " (include",
                " target) has no SPF record", NULL);
    } else {
        buf_reset(&e->err);
        if (spf_record_parse(rec->u.txt.data, rec->u.txt.len, &f->rec, &e->err) < 0) {
            finishs(e, SPF_PERMERROR, f->domain, ": ", buf_ptr(&e->err), NULL);
            return;
        }
        f->st = FS_TERMS;
        f->pos = 0;
        f->counted = false;
    }
}

static void frame_start(struct spf_eval *e, struct frame *f)
{
    if (f->domain == NULL) {   /* a malformed include/redirect target */
        finish(e, SPF_PERMERROR, f->redirected ? "redirect target is not a valid domain name"
                                               : "include target is not a valid domain name");
        return;
    }
    ask(e, PQ_RECORD, f->domain, DNS_T_TXT);
}

static void end_of_terms(struct spf_eval *e, struct frame *f)
{
    if (f->rec.redirect == NULL || f->rec.has_all) {
        frame_result(e, SPF_NEUTRAL, NULL);
        return;
    }
    if (!count_term(e, f))
        return;
    int r = term_target(e, f, f->rec.redirect);
    if (r != 0)
        return;
    char *target = f->target;
    f->target = NULL;
    frame_clear(f);
    f->domain = target;
    f->redirected = true;
    f->st = FS_START;
}

static void match(struct spf_eval *e, struct frame *f)
{
    const struct spf_mech *m = &f->rec.mech[f->pos];
    frame_result(e, m->qual, m);
}

static void eval_ptr(struct spf_eval *e, struct frame *f)
{
    if (e->pv != PV_DONE) {
        pv_start(e);
        return;
    }
    if (e->pv_void && !count_void(e))
        return;
    for (size_t i = 0; f->target != NULL && i < e->pv_n; i++)
        if (e->pv_valid[i] && name_under(e->pv_names[i], f->target)) {
            match(e, f);
            return;
        }
    next_term(f);
}

static void eval_term(struct spf_eval *e, struct frame *f)
{
    if (f->pos >= f->rec.nmech) {
        end_of_terms(e, f);
        return;
    }
    const struct spf_mech *m = &f->rec.mech[f->pos];
    if (m->kind == SPF_M_ALL ||
        (m->kind == SPF_M_IP4 && !e->id.v6 && prefix_eq(e->id.ip, m->addr, m->cidr4)) ||
        (m->kind == SPF_M_IP6 && e->id.v6 && prefix_eq(e->id.ip, m->addr, m->cidr6))) {
        match(e, f);
        return;
    }
    if (m->kind == SPF_M_IP4 || m->kind == SPF_M_IP6) {
        next_term(f);
        return;
    }
    if (!count_term(e, f) || term_target(e, f, m->domain) != 0)
        return;
    if (m->kind == SPF_M_PTR) {
        eval_ptr(e, f);
        return;
    }
    if (m->kind == SPF_M_INCLUDE) {
        f->st = FS_CHILD;
        char *t = f->target;
        f->target = NULL;
        push_frame(e, t);
        return;
    }
    if (f->target == NULL) {   /* malformed after expansion: no match */
        next_term(f);
        return;
    }
    if (m->kind == SPF_M_A)
        ask(e, PQ_ADDR, f->target, e->id.v6 ? DNS_T_AAAA : DNS_T_A);
    else if (m->kind == SPF_M_MX)
        ask(e, PQ_MX, f->target, DNS_T_MX);
    else
        ask(e, PQ_EXISTS, f->target, DNS_T_A);
}

static bool addr_match(struct spf_eval *e, const struct spf_mech *m, const struct dns_answer *a)
{
    enum dns_type t = e->id.v6 ? DNS_T_AAAA : DNS_T_A;
    for (size_t i = 0; a->status == DNS_OK && i < a->n; i++) {
        if (a->rr[i].type != t)
            continue;
        const uint8_t *ip = e->id.v6 ? a->rr[i].u.aaaa : a->rr[i].u.a;
        if (prefix_eq(e->id.ip, ip, e->id.v6 ? m->cidr6 : m->cidr4))
            return true;
    }
    return false;
}

/* PQ_ADDR and PQ_EXISTS */
static void on_addr(struct spf_eval *e, const struct dns_answer *a, bool exists)
{
    struct frame *f = &e->fr[e->depth - 1];
    const struct spf_mech *m = &f->rec.mech[f->pos];
    enum dns_type t = exists || !e->id.v6 ? DNS_T_A : DNS_T_AAAA;
    if (a->status == DNS_TEMPFAIL) {
        dns_error(e, f->target, a);
        return;
    }
    if (is_void(a, t) && a->status != DNS_PERMFAIL && !count_void(e))
        return;
    if (exists ? n_of_type(a, DNS_T_A) > 0 : addr_match(e, m, a))
        match(e, f);
    else
        next_term(f);
}

static void on_mx(struct spf_eval *e, const struct dns_answer *a)
{
    struct frame *f = &e->fr[e->depth - 1];
    if (a->status == DNS_TEMPFAIL) {
        dns_error(e, f->target, a);
        return;
    }
    size_t n = n_of_type(a, DNS_T_MX);
    if (n == 0) {
        if (a->status != DNS_PERMFAIL && !count_void(e))
            return;
        next_term(f);
        return;
    }
    if (n > SPF_MAX_MX) {
        finishs(e, SPF_PERMERROR, f->target, " has more than 10 MX records (RFC 7208 4.6.4)",
                NULL);
        return;
    }
    f->hosts = xreallocarray(NULL, n, sizeof(char *));
    f->nhosts = f->ihost = 0;
    for (size_t i = 0; i < a->n; i++) {
        const char *h = a->rr[i].type == DNS_T_MX ? a->rr[i].u.mx.host : NULL;
        if (h != NULL && h[0] != '\0' && strcmp(h, ".") != 0)   /* null MX: nothing */
            f->hosts[f->nhosts++] = xstrdup(h);
    }
    f->st = FS_MX;
}

static void hosts_free(struct frame *f)
{
    for (size_t i = 0; i < f->nhosts; i++)
        xfree(f->hosts[i]);
    xfree(f->hosts);
    f->hosts = NULL;
    f->nhosts = f->ihost = 0;
}

static void mx_next(struct spf_eval *e, struct frame *f)
{
    if (f->ihost >= f->nhosts) {
        hosts_free(f);
        next_term(f);
        return;
    }
    ask(e, PQ_MX_ADDR, f->hosts[f->ihost], e->id.v6 ? DNS_T_AAAA : DNS_T_A);
}

static void on_mx_addr(struct spf_eval *e, const struct dns_answer *a)
{
    struct frame *f = &e->fr[e->depth - 1];
    if (a->status == DNS_TEMPFAIL) {
        dns_error(e, f->hosts[f->ihost], a);
        return;
    }
    if (addr_match(e, &f->rec.mech[f->pos], a)) {
        hosts_free(f);
        f->st = FS_TERMS;
        match(e, f);
        return;
    }
    f->ihost++;
}

/* ---- validated names of the client (5.5, %{p}) -------------------------- */

static void reverse_name(const struct spf_eval *e, struct buf *b)
{
    static const char hex[] = "0123456789abcdef";
    if (!e->id.v6) {
        buf_printf(b, "%u.%u.%u.%u.in-addr.arpa", e->id.ip[3], e->id.ip[2], e->id.ip[1], e->id.ip[0]);
        return;
    }
    for (int i = 15; i >= 0; i--) {
        char nib[4] = { hex[e->id.ip[i] & 15], '.', hex[e->id.ip[i] >> 4], '.' };
        buf_append(b, nib, 4);
    }
    buf_append_str(b, "ip6.arpa");
}

static void pv_advance(struct spf_eval *e)
{
    if (!e->pv_asked) {
        e->pv_asked = true;
        struct buf b;
        buf_init(&b);
        reverse_name(e, &b);
        ask(e, PQ_PTR, buf_ptr(&b), DNS_T_PTR);
        buf_free(&b);
    } else if (e->pv_i < e->pv_n) {
        ask(e, PQ_PTR_ADDR, e->pv_names[e->pv_i], e->id.v6 ? DNS_T_AAAA : DNS_T_A);
    } else {
        e->pv = PV_DONE;
    }
}

static void on_ptr(struct spf_eval *e, const struct dns_answer *a)
{
    size_t n = n_of_type(a, DNS_T_PTR);
    e->pv_void = a->status == DNS_NXDOMAIN || a->status == DNS_NODATA ||
                 (a->status == DNS_OK && n == 0);
    if (n > SPF_MAX_PTR)
        n = SPF_MAX_PTR;   /* 4.6.4: the rest is ignored */
    e->pv_names = xreallocarray(NULL, n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < a->n && e->pv_n < n; i++)
        if (a->rr[i].type == DNS_T_PTR && a->rr[i].u.name != NULL)
            e->pv_names[e->pv_n++] = xstrdup(a->rr[i].u.name);
}

static void on_ptr_addr(struct spf_eval *e, const struct dns_answer *a)
{
    /* a DNS error skips the name (5.5) */
    e->pv_valid[e->pv_i] = addr_match(e, &(struct spf_mech){ .cidr4 = 32, .cidr6 = 128 }, a);
    e->pv_i++;
}

/* ---- the explanation (6.2) ---------------------------------------------- */

static void finish_exp(struct spf_eval *e, const char *explanation)
{
    xfree(e->explanation);
    e->explanation = explanation != NULL ? xstrdup(explanation) : NULL;
    e->ex = EX_NONE;
    finishs(e, SPF_FAIL, e->ex_domain, " matched ", e->mech, NULL);
}

static void ex_advance(struct spf_eval *e)
{
    const char *s = e->ex == EX_LOOKUP ? e->ex_spec : e->ex_text;
    int r = expand(e, s, e->ex == EX_LOOKUP ? SPF_MACRO_DOMAIN : SPF_MACRO_EXP, e->ex_domain);
    if (r == 1)
        return;
    if (r < 0) {   /* errors in exp= processing: as if there were none */
        finish_exp(e, NULL);
        return;
    }
    if (e->ex == EX_EXPAND) {
        finish_exp(e, buf_ptr(&e->tmp));
        return;
    }
    char *t = spf_target_name(buf_ptr(&e->tmp), buf_size(&e->tmp));
    if (t == NULL) {
        finish_exp(e, NULL);
        return;
    }
    ask(e, PQ_EXP, t, DNS_T_TXT);
    xfree(t);
}

static void on_exp(struct spf_eval *e, const struct dns_answer *a)
{
    const struct dns_rr *rr = NULL;
    for (size_t i = 0; a->status == DNS_OK && i < a->n; i++)
        if (a->rr[i].type == DNS_T_TXT)
            rr = &a->rr[i];
    if (n_of_type(a, DNS_T_TXT) != 1 || memchr(rr->u.txt.data, '\0', rr->u.txt.len) != NULL) {
        finish_exp(e, NULL);
        return;
    }
    e->ex_text = xmemdup0(rr->u.txt.data, rr->u.txt.len);
    e->ex = EX_EXPAND;
}

/* ---- the step interface ------------------------------------------------- */

static void advance(struct spf_eval *e)
{
    if (e->pv == PV_RUNNING) {
        pv_advance(e);
        return;
    }
    if (e->ex != EX_NONE) {
        ex_advance(e);
        return;
    }
    struct frame *f = &e->fr[e->depth - 1];
    switch (f->st) {
    case FS_START: frame_start(e, f); break;
    case FS_TERMS: eval_term(e, f); break;
    case FS_MX: mx_next(e, f); break;
    case FS_CHILD: finish(e, SPF_PERMERROR, "internal error: orphan include"); break;
    }
}

enum spf_step spf_eval_step(struct spf_eval *e, const char **name, enum dns_type *type)
{
    while (!e->done && e->pend == PQ_NONE)
        advance(e);
    if (e->done)
        return SPF_STEP_DONE;
    *name = e->q_name;
    *type = e->q_type;
    return SPF_STEP_DNS;
}

void spf_eval_answer(struct spf_eval *e, const struct dns_answer *ans)
{
    enum pend p = e->pend;
    if (e->done || p == PQ_NONE)
        return;
    e->pend = PQ_NONE;
    switch (p) {
    case PQ_RECORD: on_record(e, ans); break;
    case PQ_ADDR: on_addr(e, ans, false); break;
    case PQ_EXISTS: on_addr(e, ans, true); break;
    case PQ_MX: on_mx(e, ans); break;
    case PQ_MX_ADDR: on_mx_addr(e, ans); break;
    case PQ_PTR: on_ptr(e, ans); break;
    case PQ_PTR_ADDR: on_ptr_addr(e, ans); break;
    case PQ_EXP: on_exp(e, ans); break;
    case PQ_NONE: break;
    }
}

struct spf_eval *spf_eval_new(const struct spf_request *req)
{
    struct spf_eval *e = xcalloc(1, sizeof(*e));
    buf_init(&e->tmp);
    buf_init(&e->err);
    e->now = req->now != 0 ? req->now : (uint64_t)time(NULL);
    spf_ident_init(&e->id, req);
    e->out.domain = e->id.domain0;
    e->out.reason = "";
    if (e->id.bad_ip)
        finish(e, SPF_PERMERROR, "the client address is not an IP address");
    else if (!e->id.domain_ok)
        finish(e, SPF_NONE, "the domain is malformed or not fully qualified (RFC 7208 4.3)");
    else
        push_frame(e, xstrdup(e->id.domain0));
    return e;
}

void spf_eval_free(struct spf_eval *e)
{
    if (e == NULL)
        return;
    while (e->depth > 0)
        frame_clear(&e->fr[--e->depth]);
    for (size_t i = 0; i < e->pv_n; i++)
        xfree(e->pv_names[i]);
    xfree(e->pv_names);
    spf_ident_free(&e->id);
    char *strs[] = { e->q_name, e->ex_spec, e->ex_domain, e->ex_text, e->reason, e->mech,
                     e->explanation };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        xfree(strs[i]);
    buf_free(&e->tmp);
    buf_free(&e->err);
    xfree(e);
}

const struct spf_outcome *spf_eval_outcome(const struct spf_eval *e)
{
    return &e->out;
}

/* ---- the driver over dns/ ------------------------------------------------ */

static bool step_next(void *ev, const char **name, enum dns_type *type)
{
    return spf_eval_step(ev, name, type) == SPF_STEP_DNS;
}

static void step_answer(void *ev, const struct dns_answer *ans)
{
    spf_eval_answer(ev, ans);
}

static void step_finish(void *ev)
{
    struct spf_eval *e = ev;
    e->report(e->report_arg, spf_eval_outcome(e));
    spf_eval_free(e);
}

static const struct dns_stepper spf_stepper = {
    .next = step_next, .answer = step_answer, .finish = step_finish,
};

void spf_check(struct dns_resolver *r, const struct spf_request *req, spf_done_cb done, void *arg)
{
    struct spf_eval *e = spf_eval_new(req);
    e->report = done;
    e->report_arg = arg;
    dns_drive(r, &spf_stepper, e);
}
