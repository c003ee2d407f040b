/*
 * test_dmarc - the DMARC evaluator (dmarc/dmarc.h); records and domains
 * are in test_dmarc_record.c.
 *
 * The evaluator over a zone file (dns_zone_parse), each case run four
 * ways with the same outcome: dmarc_check() with answers inside
 * dns_resolve(), dmarc_check() with answers delivered later (as libunbound
 * does), dmarc_check_wait() with a pump, and the step interface by hand.
 * Discovery (From domain, organizational fallback, several records,
 * invalid records, DNS failures), sp= and np= with the existence checks,
 * alignment of SPF and DKIM in both modes, pct= with fixed draws, the From
 * rules of 6.6.1 (no DNS asked at all), and the Authentication-Results
 * entry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/xmalloc.h"
#include "dmarc/dmarc.h"
#include "dns/dns.h"
#include "dns/zone.h"
#include "msg/authres.h"

/* ------------------------------------------------------------ the evaluator */

static const char zone_text[] =
    /* strict and relaxed alignment */
    "_dmarc.strict.example. IN TXT \"v=DMARC1; p=reject; adkim=s; aspf=s\"\n"
    "_dmarc.relaxed.example. IN TXT \"v=DMARC1; p=quarantine; rua=mailto:agg@relaxed.example\"\n"
    "mail.relaxed.example. IN A 192.0.2.1\n"
    /* sp= and np= with every kind of existence */
    "_dmarc.org.example. IN TXT \"v=DMARC1; p=none; sp=quarantine; np=reject\"\n"
    "exists.org.example. IN A 192.0.2.1\n"
    "v6.org.example. IN AAAA 2001:db8::1\n"
    "mx.org.example. IN MX 10 mail.relaxed.example.\n"
    "txtonly.org.example. IN TXT \"hello\"\n"
    "x.ent.org.example. IN A 192.0.2.1\n"
    "$TEMPFAIL tf.org.example. A\n"
    "_dmarc.nonp.example. IN TXT \"v=DMARC1; p=reject; sp=quarantine\"\n"
    "_dmarc.samenp.example. IN TXT \"v=DMARC1; p=reject; sp=quarantine; np=quarantine\"\n"
    /* a multi-label public suffix */
    "_dmarc.example.co.uk. IN TXT \"v=DMARC1; p=reject\"\n"
    "_dmarc.co.uk. IN TXT \"v=DMARC1; p=reject\"\n"
    /* discovery */
    "_dmarc.multi.example. IN TXT \"v=DMARC1; p=reject\"\n"
    "_dmarc.multi.example. IN TXT \"v=DMARC1; p=none\"\n"
    "_dmarc.mixed.example. IN TXT \"v=spf1 -all\"\n"
    "_dmarc.mixed.example. IN TXT \"v=DMARC1; p=reject\"\n"
    "_dmarc.mixed.example. IN TXT \"v=DMARC2; p=none\"\n"
    "_dmarc.valid.example. IN TXT \"v=DMARC1; p=reject\"\n"
    "_dmarc.bad.valid.example. IN TXT \"v=DMARC1; p=bogus\"\n"
    "_dmarc.two.valid.example. IN TXT \"v=DMARC1; p=none\"\n"
    "_dmarc.two.valid.example. IN TXT \"v=DMARC1; p=none; pct=50\"\n"
    "_dmarc.other.valid.example. IN TXT \"not dmarc\"\n"
    "_dmarc.split.example. IN TXT \"v=DMARC1; \" \"p=reject\"\n"
    "_dmarc.alias.example. IN CNAME _dmarc.strict.example.\n"
    "$TEMPFAIL _dmarc.temp.example.\n"
    "$TEMPFAIL _dmarc.orgtemp.example.\n"
    "_dmarc.rua.example. IN TXT \"v=DMARC1; p=bogus; rua=mailto:r@rua.example\"\n"
    /* pct */
    "_dmarc.pct50.example. IN TXT \"v=DMARC1; p=reject; pct=50\"\n"
    "_dmarc.pct0.example. IN TXT \"v=DMARC1; p=reject; pct=0\"\n"
    "_dmarc.pct100.example. IN TXT \"v=DMARC1; p=reject; pct=100\"\n"
    "_dmarc.q0.example. IN TXT \"v=DMARC1; p=quarantine; pct=0\"\n";

struct got {
    bool called;
    enum dmarc_result result;
    enum dmarc_from from;
    enum dmarc_policy policy, dis;
    enum dmarc_source source;
    bool sampled_out, spf_aligned, dkim_aligned, nonexistent, has_record;
    char from_domain[64], org_domain[64], record_domain[64], dkim_domain[64], spf_domain[64];
    char reason[256], authres[512];
};

static void copy_outcome(struct got *g, const struct dmarc_outcome *o)
{
    assert_false(g->called);
    g->called = true;
    g->result = o->result;
    g->from = o->from;
    g->policy = o->policy;
    g->dis = o->disposition;
    g->source = o->policy_source;
    g->sampled_out = o->sampled_out;
    g->spf_aligned = o->spf_aligned;
    g->dkim_aligned = o->dkim_aligned;
    g->nonexistent = o->nonexistent;
    g->has_record = o->record != NULL;
    snprintf(g->from_domain, sizeof(g->from_domain), "%s", o->from_domain);
    snprintf(g->org_domain, sizeof(g->org_domain), "%s", o->org_domain);
    snprintf(g->record_domain, sizeof(g->record_domain), "%s", o->record_domain);
    snprintf(g->dkim_domain, sizeof(g->dkim_domain), "%s", o->dkim_domain ? o->dkim_domain : "");
    snprintf(g->spf_domain, sizeof(g->spf_domain), "%s", o->spf_domain ? o->spf_domain : "");
    snprintf(g->reason, sizeof(g->reason), "%s", o->reason);
    struct authres ar;
    struct buf b = { 0 };
    authres_begin(&ar, "mx.test");
    dmarc_authres(&ar, o);
    authres_end(&ar, &b);
    snprintf(g->authres, sizeof(g->authres), "%s", buf_ptr(&b));
    buf_free(&b);
}

/* A backend in front of the zone that records each question and, when
 * async, answers only when pumped. */
struct rec_backend {
    struct dns_resolver zone;
    bool async;
    struct buf log;   /* "TYPE name\n" per question */
    struct { char *name; enum dns_type t; dns_cb cb; void *arg; } q[4];
    size_t nq;
};

static void rb_resolve(void *impl, const char *name, enum dns_type t, dns_cb cb, void *arg)
{
    struct rec_backend *rb = impl;
    buf_printf(&rb->log, "%s %s\n", dns_type_name(t), name);
    if (!rb->async) {
        dns_resolve(&rb->zone, name, t, cb, arg);
        return;
    }
    assert_true(rb->nq < 4);
    rb->q[rb->nq].name = xstrdup(name);
    rb->q[rb->nq].t = t;
    rb->q[rb->nq].cb = cb;
    rb->q[rb->nq].arg = arg;
    rb->nq++;
}

static void rb_close(void *impl) { (void)impl; }

static const struct dns_backend rb_ops = { .resolve = rb_resolve, .close = rb_close };

static void rb_pump(void *arg)
{
    struct rec_backend *rb = arg;
    assert_true(rb->nq > 0);
    char *name = rb->q[0].name;
    enum dns_type t = rb->q[0].t;
    dns_cb cb = rb->q[0].cb;
    void *cbarg = rb->q[0].arg;
    memmove(rb->q, rb->q + 1, (rb->nq - 1) * sizeof(rb->q[0]));
    rb->nq--;
    dns_resolve(&rb->zone, name, t, cb, cbarg);
    xfree(name);
}

static void rb_open(struct rec_backend *rb, bool async, struct dns_resolver *r)
{
    struct buf err = { 0 };
    memset(rb, 0, sizeof(*rb));
    rb->async = async;
    if (dns_zone_parse("dmarc.zone", zone_text, sizeof(zone_text) - 1, &rb->zone, &err) != 0)
        fail_msg("zone: %s", buf_ptr(&err));
    buf_free(&err);
    *r = (struct dns_resolver){ .ops = &rb_ops, .impl = rb };
}

static void rb_free(struct rec_backend *rb)
{
    assert_int_equal(rb->nq, 0);
    dns_close(&rb->zone);
    buf_free(&rb->log);
}

struct ev_case {
    const char *name;
    const char *header;       /* header fields; "From: u@<from>\r\n" when from is set */
    const char *from;
    const char *spf;          /* SPF domain, "+" prefix: pass */
    const char *dkim;         /* "d1+,d2-": d= with pass (+) or not (-) */
    unsigned draw;
    enum dmarc_result want;
    enum dmarc_policy policy, dis;
    const char *record;       /* record domain, "" none */
    const char *aligned;      /* "spf", "dkim", "spf+dkim" or "" */
    const char *asked;        /* the exact questions, "TYPE name;..."; NULL: not checked */
    enum dmarc_from from_st;
    enum dmarc_source source;
    const char *reason;       /* a substring of the reason; NULL: not checked */
};

static const struct ev_case ev_cases[] = {
    /* alignment, relaxed */
    { "relaxed dkim, same domain", .from = "relaxed.example", .dkim = "relaxed.example+",
      .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE, .record = "relaxed.example",
      .aligned = "dkim", .asked = "TXT _dmarc.relaxed.example", .source = DMARC_SRC_P },
    { "relaxed dkim, parent d= for a subdomain From", .from = "mail.relaxed.example",
      .dkim = "relaxed.example+", .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE,
      .record = "relaxed.example", .aligned = "dkim",
      .asked = "TXT _dmarc.mail.relaxed.example;TXT _dmarc.relaxed.example" },
    { "relaxed dkim, subdomain d=", .from = "relaxed.example", .dkim = "x.y.relaxed.example+",
      .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE, .record = "relaxed.example",
      .aligned = "dkim" },
    { "relaxed spf", .from = "relaxed.example", .spf = "+bounce.relaxed.example",
      .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE, .record = "relaxed.example",
      .aligned = "spf" },
    { "spf and dkim", .from = "relaxed.example", .spf = "+relaxed.example",
      .dkim = "relaxed.example+", .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE,
      .record = "relaxed.example", .aligned = "spf+dkim" },
    { "spf aligned but not pass", .from = "relaxed.example", .spf = "relaxed.example",
      .dkim = "relaxed.example-", .want = DMARC_FAIL, .policy = DMARC_P_QUARANTINE,
      .dis = DMARC_P_QUARANTINE, .record = "relaxed.example", .aligned = "" },
    { "pass but unaligned", .from = "relaxed.example", .spf = "+other.example",
      .dkim = "other.example+", .want = DMARC_FAIL, .policy = DMARC_P_QUARANTINE,
      .dis = DMARC_P_QUARANTINE, .record = "relaxed.example", .aligned = "",
      .reason = "neither SPF nor DKIM aligned" },
    { "lookalike domain", .from = "relaxed.example", .dkim = "notrelaxed.example+",
      .want = DMARC_FAIL, .policy = DMARC_P_QUARANTINE, .dis = DMARC_P_QUARANTINE,
      .record = "relaxed.example", .aligned = "" },
    { "second signature aligns", .from = "relaxed.example",
      .dkim = "other.example+,relaxed.example-,mail.relaxed.example+", .want = DMARC_PASS,
      .policy = DMARC_P_QUARANTINE, .record = "relaxed.example", .aligned = "dkim" },
    { "case and final dot", .header = "From: U@RELAXED.Example\r\n", .dkim = "Relaxed.EXAMPLE.+",
      .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE, .record = "relaxed.example",
      .aligned = "dkim" },
    /* alignment, strict */
    { "strict dkim exact", .from = "strict.example", .dkim = "strict.example+",
      .want = DMARC_PASS, .policy = DMARC_P_REJECT, .record = "strict.example",
      .aligned = "dkim" },
    { "strict dkim parent d= fails", .from = "sub.strict.example", .dkim = "strict.example+",
      .want = DMARC_FAIL, .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT,
      .record = "strict.example", .aligned = "", .source = DMARC_SRC_P },
    { "strict dkim subdomain d= fails", .from = "strict.example", .dkim = "a.strict.example+",
      .want = DMARC_FAIL, .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT,
      .record = "strict.example", .aligned = "" },
    { "strict dkim, the exact one among several", .from = "strict.example",
      .dkim = "a.strict.example+,strict.example+", .want = DMARC_PASS,
      .policy = DMARC_P_REJECT, .record = "strict.example", .aligned = "dkim" },
    { "strict spf exact", .from = "strict.example", .spf = "+strict.example",
      .want = DMARC_PASS, .policy = DMARC_P_REJECT, .record = "strict.example",
      .aligned = "spf" },
    { "strict spf subdomain fails", .from = "strict.example", .spf = "+mail.strict.example",
      .want = DMARC_FAIL, .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT,
      .record = "strict.example", .aligned = "" },
    { "record through a CNAME", .from = "alias.example", .dkim = "alias.example+",
      .want = DMARC_PASS, .policy = DMARC_P_REJECT, .record = "alias.example",
      .aligned = "dkim" },
    /* sp= and np= */
    { "org domain itself: p", .from = "org.example", .want = DMARC_FAIL,
      .policy = DMARC_P_NONE, .dis = DMARC_P_NONE, .record = "org.example",
      .asked = "TXT _dmarc.org.example", .source = DMARC_SRC_P },
    { "existing subdomain: sp", .from = "exists.org.example", .want = DMARC_FAIL,
      .policy = DMARC_P_QUARANTINE, .dis = DMARC_P_QUARANTINE, .record = "org.example",
      .asked = "TXT _dmarc.exists.org.example;TXT _dmarc.org.example;A exists.org.example",
      .source = DMARC_SRC_SP },
    { "NXDOMAIN subdomain: np", .from = "ghost.org.example", .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "org.example",
      .asked = "TXT _dmarc.ghost.org.example;TXT _dmarc.org.example;A ghost.org.example",
      .source = DMARC_SRC_NP },
    { "NODATA for A, AAAA and MX: np", .from = "txtonly.org.example", .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "org.example",
      .asked = "TXT _dmarc.txtonly.org.example;TXT _dmarc.org.example;A txtonly.org.example;"
               "AAAA txtonly.org.example;MX txtonly.org.example",
      .source = DMARC_SRC_NP },
    { "only AAAA: exists", .from = "v6.org.example", .want = DMARC_FAIL,
      .policy = DMARC_P_QUARANTINE, .dis = DMARC_P_QUARANTINE, .record = "org.example",
      .asked = "TXT _dmarc.v6.org.example;TXT _dmarc.org.example;A v6.org.example;"
               "AAAA v6.org.example",
      .source = DMARC_SRC_SP },
    { "only MX: exists", .from = "mx.org.example", .want = DMARC_FAIL,
      .policy = DMARC_P_QUARANTINE, .dis = DMARC_P_QUARANTINE, .record = "org.example",
      .source = DMARC_SRC_SP },
    { "empty non-terminal: NODATA x3, np", .from = "ent.org.example", .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "org.example" },
    { "existence lookup fails: temperror", .from = "tf.org.example", .want = DMARC_TEMPERROR,
      .policy = DMARC_P_QUARANTINE, .record = "org.example", .reason = "cannot tell" },
    { "existence lookup fails but pass stands", .from = "tf.org.example",
      .dkim = "org.example+", .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE,
      .record = "org.example", .aligned = "dkim", .source = DMARC_SRC_SP },
    { "no np=: no existence lookups", .from = "ghost.nonp.example", .want = DMARC_FAIL,
      .policy = DMARC_P_QUARANTINE, .dis = DMARC_P_QUARANTINE, .record = "nonp.example",
      .asked = "TXT _dmarc.ghost.nonp.example;TXT _dmarc.nonp.example",
      .source = DMARC_SRC_SP },
    { "np= equal to sp=: no existence lookups", .from = "ghost.samenp.example",
      .want = DMARC_FAIL, .policy = DMARC_P_QUARANTINE, .dis = DMARC_P_QUARANTINE,
      .record = "samenp.example",
      .asked = "TXT _dmarc.ghost.samenp.example;TXT _dmarc.samenp.example" },
    /* multi-label public suffix */
    { "mail.example.co.uk -> example.co.uk", .from = "mail.example.co.uk",
      .dkim = "example.co.uk+", .want = DMARC_PASS, .policy = DMARC_P_REJECT,
      .record = "example.co.uk", .aligned = "dkim",
      .asked = "TXT _dmarc.mail.example.co.uk;TXT _dmarc.example.co.uk" },
    { "other.co.uk does not align with example.co.uk", .from = "mail.example.co.uk",
      .dkim = "other.co.uk+", .spf = "+co.uk", .want = DMARC_FAIL, .policy = DMARC_P_REJECT,
      .dis = DMARC_P_REJECT, .record = "example.co.uk", .aligned = "" },
    { "From a public suffix: its own record", .from = "co.uk", .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "co.uk",
      .asked = "TXT _dmarc.co.uk" },
    /* discovery */
    { "no record anywhere", .from = "sub.nodmarc.example", .want = DMARC_NONE,
      .record = "", .asked = "TXT _dmarc.sub.nodmarc.example;TXT _dmarc.nodmarc.example",
      .reason = "no DMARC record" },
    { "no record, org domain itself", .from = "nodmarc.example", .want = DMARC_NONE,
      .asked = "TXT _dmarc.nodmarc.example", .record = "" },
    { "several records: none", .from = "multi.example", .want = DMARC_NONE, .record = "",
      .reason = "several DMARC records", .asked = "TXT _dmarc.multi.example" },
    { "several records at the From domain: no fallback", .from = "two.valid.example",
      .want = DMARC_NONE, .record = "", .asked = "TXT _dmarc.two.valid.example" },
    { "one DMARC record among other TXT", .from = "mixed.example", .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "mixed.example" },
    { "invalid record: none, no fallback", .from = "bad.valid.example", .want = DMARC_NONE,
      .record = "", .asked = "TXT _dmarc.bad.valid.example", .reason = "invalid DMARC record" },
    { "only non-DMARC TXT: fallback", .from = "other.valid.example", .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "valid.example",
      .asked = "TXT _dmarc.other.valid.example;TXT _dmarc.valid.example" },
    { "record in two strings", .from = "split.example", .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "split.example" },
    { "temporary failure", .from = "temp.example", .dkim = "temp.example+",
      .want = DMARC_TEMPERROR, .record = "", .asked = "TXT _dmarc.temp.example" },
    { "temporary failure at the org domain", .from = "a.orgtemp.example",
      .want = DMARC_TEMPERROR, .record = "",
      .asked = "TXT _dmarc.a.orgtemp.example;TXT _dmarc.orgtemp.example" },
    { "p= invalid but rua=: p=none", .from = "rua.example", .want = DMARC_FAIL,
      .policy = DMARC_P_NONE, .dis = DMARC_P_NONE, .record = "rua.example" },
    /* pct */
    { "pct=50, draw 49: applied", .from = "pct50.example", .draw = 49, .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT, .record = "pct50.example" },
    { "pct=50, draw 50: next lower policy", .from = "pct50.example", .draw = 50,
      .want = DMARC_FAIL, .policy = DMARC_P_REJECT, .dis = DMARC_P_QUARANTINE,
      .record = "pct50.example", .reason = "not sampled" },
    { "pct=0, draw 0: never applied", .from = "pct0.example", .draw = 0, .want = DMARC_FAIL,
      .policy = DMARC_P_REJECT, .dis = DMARC_P_QUARANTINE, .record = "pct0.example" },
    { "pct=100, draw 99: always applied", .from = "pct100.example", .draw = 99,
      .want = DMARC_FAIL, .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT,
      .record = "pct100.example" },
    { "pct=0 quarantine -> none", .from = "q0.example", .draw = 0, .want = DMARC_FAIL,
      .policy = DMARC_P_QUARANTINE, .dis = DMARC_P_NONE, .record = "q0.example" },
    { "pct does not touch a pass", .from = "pct0.example", .dkim = "pct0.example+", .draw = 0,
      .want = DMARC_PASS, .policy = DMARC_P_REJECT, .dis = DMARC_P_NONE,
      .record = "pct0.example", .aligned = "dkim" },
    /* d= ending in '?': the key lookup failed temporarily (dkim=temperror) */
    { "aligned DKIM temperror: temperror, the policy known", .from = "strict.example",
      .dkim = "strict.example?", .want = DMARC_TEMPERROR, .policy = DMARC_P_REJECT,
      .record = "strict.example", .reason = "could not be fetched" },
    { "unaligned DKIM temperror: fail", .from = "strict.example", .dkim = "other.example?",
      .want = DMARC_FAIL, .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT,
      .record = "strict.example" },
    { "aligned temperror beside an aligned pass: pass", .from = "relaxed.example",
      .dkim = "relaxed.example?,relaxed.example+", .want = DMARC_PASS,
      .policy = DMARC_P_QUARANTINE, .record = "relaxed.example", .aligned = "dkim" },
    { "aligned temperror beside aligned SPF: pass", .from = "relaxed.example",
      .dkim = "relaxed.example?", .spf = "+relaxed.example", .want = DMARC_PASS,
      .policy = DMARC_P_QUARANTINE, .record = "relaxed.example", .aligned = "spf" },
    { "temperror of a subdomain under strict adkim: fail", .from = "strict.example",
      .dkim = "sub.strict.example?", .want = DMARC_FAIL, .policy = DMARC_P_REJECT,
      .dis = DMARC_P_REJECT, .record = "strict.example" },
    /* From rules (6.6.1): permerror, nothing asked */
    { "no From", .header = "To: a@relaxed.example\r\n", .want = DMARC_PERMERROR,
      .from_st = DMARC_FROM_MISSING, .asked = "", .record = "", .reason = "no From field" },
    { "two From fields", .header = "From: a@relaxed.example\r\nFrom: b@relaxed.example\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_MULTIPLE, .asked = "", .record = "" },
    { "two From fields, differing case",
      .header = "from: a@relaxed.example\r\nFROM: a@relaxed.example\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_MULTIPLE, .asked = "", .record = "" },
    { "two mailboxes", .header = "From: a@relaxed.example, b@strict.example\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_MAILBOXES, .asked = "", .record = "" },
    { "empty group", .header = "From: undisclosed:;\r\n", .want = DMARC_PERMERROR,
      .from_st = DMARC_FROM_MAILBOXES, .asked = "", .record = "" },
    { "no domain", .header = "From: Alice <alice>\r\n", .want = DMARC_PERMERROR,
      .from_st = DMARC_FROM_NO_DOMAIN, .asked = "", .record = "" },
    { "domain literal", .header = "From: a@[192.0.2.1]\r\n", .want = DMARC_PERMERROR,
      .from_st = DMARC_FROM_NO_DOMAIN, .asked = "", .record = "" },
    { "unreadable From", .header = "From: a@b@c\r\n", .want = DMARC_PERMERROR,
      .from_st = DMARC_FROM_SYNTAX, .asked = "", .record = "" },
    { "empty From", .header = "From:\r\n", .want = DMARC_PERMERROR,
      .from_st = DMARC_FROM_SYNTAX, .asked = "", .record = "" },
    /* The obsolete "From :" is a From field (RFC 5322 4.5.8): alone it is
     * evaluated, next to another From it is one too many. */
    { "obsolete 'From :' is a From field", .header = "From : a@strict.example\r\n",
      .want = DMARC_FAIL, .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT,
      .record = "strict.example" },
    { "From and obsolete 'From :'",
      .header = "From: x@relaxed.example\r\nFrom : a@strict.example\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_MULTIPLE, .asked = "", .record = "",
      .reason = "several From fields, header line 2" },
    { "obsolete 'From\\t:' first, then From",
      .header = "From\t: a@strict.example\r\nfrom: x@relaxed.example\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_MULTIPLE, .asked = "", .record = "" },
    { "a header line that is not a field",
      .header = "From: x@relaxed.example\r\nFrom\x01: a@strict.example\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_HEADER, .asked = "", .record = "",
      .reason = "header line 2" },
    { "a continuation line before the first field",
      .header = " From: a@strict.example\r\nFrom: x@relaxed.example\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_HEADER, .asked = "", .record = "" },
    { "two Sender fields", .header = "From: x@relaxed.example\r\nSender: a@strict.example\r\n"
                                      "Sender: b@relaxed.example\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_SENDER, .asked = "", .record = "" },
    { "a route in From", .header = "From: <@strict.example:x@relaxed.example>\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_AMBIGUOUS, .asked = "", .record = "" },
    { "a group in From", .header = "From: ceo: x@relaxed.example;\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_AMBIGUOUS, .asked = "", .record = "" },
    { "an encoded word as the local part",
      .header = "From: =?utf-8?q?a=40strict.example?=@relaxed.example\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_AMBIGUOUS, .asked = "", .record = "" },
    { "a comment inside the address",
      .header = "From: <x(a@strict.example)@relaxed.example>\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_AMBIGUOUS, .asked = "", .record = "" },
    { "a quoted local part holding '@'",
      .header = "From: \"a@strict.example\"@relaxed.example\r\n",
      .want = DMARC_PERMERROR, .from_st = DMARC_FROM_AMBIGUOUS, .asked = "", .record = "" },
    { "a comment after the address is only a comment",
      .header = "From: a@strict.example (x@relaxed.example)\r\n",
      .want = DMARC_FAIL, .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT,
      .record = "strict.example" },
    { "an encoded display name is only a display name",
      .header = "From: =?utf-8?q?Chief?= <a@strict.example>\r\n",
      .want = DMARC_FAIL, .policy = DMARC_P_REJECT, .dis = DMARC_P_REJECT,
      .record = "strict.example" },
    { "a From in the body does not count",
      .header = "From: a@relaxed.example\r\n\r\nFrom: b@strict.example\r\n",
      .dkim = "relaxed.example+", .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE,
      .record = "relaxed.example", .aligned = "dkim" },
    { "display name, comments, folding",
      .header = "From: \"Alice, Example\" (the boss)\r\n <alice@Mail.Relaxed.Example>\r\n",
      .dkim = "relaxed.example+", .want = DMARC_PASS, .policy = DMARC_P_QUARANTINE,
      .record = "relaxed.example", .aligned = "dkim" },
};

static void make_request(const struct ev_case *c, struct buf *msg, struct dmarc_request *req,
                         struct dmarc_dkim_input *dk, char dnames[][64])
{
    if (c->header != NULL)
        buf_append_str(msg, c->header);
    else
        buf_printf(msg, "From: u@%s\r\n", c->from);
    buf_append_str(msg, "Subject: t\r\n\r\nbody\r\n");
    *req = (struct dmarc_request){ .msg = buf_ptr(msg), .len = buf_size(msg), .dkim = dk,
                                   .pct_draw = c->draw };
    if (c->spf != NULL) {
        req->spf_pass = c->spf[0] == '+';
        req->spf_domain = c->spf + (c->spf[0] == '+');
    }
    for (const char *p = c->dkim; p != NULL && *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        assert_true(n >= 2 && n < 64 && req->ndkim < 4);
        memcpy(dnames[req->ndkim], p, n - 1);
        dnames[req->ndkim][n - 1] = '\0';
        dk[req->ndkim] = (struct dmarc_dkim_input){ dnames[req->ndkim], p[n - 1] == '+',
                                                    p[n - 1] == '?' };
        req->ndkim++;
        p = end ? end + 1 : p + n;
    }
}

static void on_outcome(void *arg, const struct dmarc_outcome *o)
{
    copy_outcome(arg, o);
}

static void step_answer(void *arg, const struct dns_answer *a)
{
    dmarc_eval_answer(arg, a);
}

/* mode 0: dmarc_check sync; 1: dmarc_check async; 2: dmarc_check_wait; 3: steps */
static struct got run_case(const struct ev_case *c, int mode, struct buf *asked)
{
    struct buf msg = { 0 };
    struct dmarc_request req;
    struct dmarc_dkim_input dk[4];
    char dnames[4][64];
    make_request(c, &msg, &req, dk, dnames);
    struct rec_backend rb;
    struct dns_resolver r;
    rb_open(&rb, mode == 1 || mode == 2, &r);
    struct got g = { 0 };
    if (mode <= 1) {
        dmarc_check(&r, &req, on_outcome, &g);
        while (rb.nq > 0)
            rb_pump(&rb);
    } else if (mode == 2) {
        struct dmarc_eval *e = dmarc_check_wait(&r, &req, rb_pump, &rb);
        copy_outcome(&g, dmarc_eval_outcome(e));
        dmarc_eval_free(e);
    } else {
        struct dmarc_eval *e = dmarc_eval_new(&req);
        const char *name;
        enum dns_type t;
        int guard = 0;
        while (dmarc_eval_step(e, &name, &t) == DMARC_STEP_DNS) {
            assert_true(guard++ < 10);
            rb_resolve(&rb, name, t, step_answer, e);
        }
        copy_outcome(&g, dmarc_eval_outcome(e));
        dmarc_eval_free(e);
    }
    assert_true(g.called);
    buf_append(asked, buf_ptr(&rb.log), buf_size(&rb.log));
    rb_free(&rb);
    buf_free(&msg);
    return g;
}

static void check_case(const struct ev_case *c, const struct got *g, const char *asked, int mode)
{
    const char *why = NULL;
    char aligned[16];
    snprintf(aligned, sizeof(aligned), "%s%s%s", g->spf_aligned ? "spf" : "",
             g->spf_aligned && g->dkim_aligned ? "+" : "", g->dkim_aligned ? "dkim" : "");
    if (g->result != c->want)
        why = "result";
    else if (g->from != c->from_st)
        why = "from status";
    else if (g->policy != c->policy || g->dis != c->dis)
        why = "policy or disposition";
    else if (c->record != NULL && strcmp(g->record_domain, c->record) != 0)
        why = "record domain";
    else if (c->aligned != NULL && strcmp(aligned, c->aligned) != 0)
        why = "alignment";
    else if (c->source != DMARC_SRC_NONE && g->source != c->source)
        why = "policy source";
    else if (c->reason != NULL && strstr(g->reason, c->reason) == NULL)
        why = "reason";
    else if (c->asked != NULL && strcmp(asked, c->asked) != 0)
        why = "questions";
    if (why != NULL)
        fail_msg("case \"%s\" (mode %d): wrong %s: result %s policy %s dis %s record \"%s\" "
                 "aligned \"%s\" source %d from %s reason \"%s\" asked \"%s\"",
                 c->name, mode, why, dmarc_result_name(g->result), dmarc_policy_name(g->policy),
                 dmarc_policy_name(g->dis), g->record_domain, aligned, (int)g->source,
                 dmarc_from_name(g->from), g->reason, asked);
    assert_true(g->has_record == (c->record != NULL && c->record[0] != '\0'));
    assert_true(g->sampled_out == (g->result == DMARC_FAIL && g->dis != g->policy));
}

/* "TYPE name\n..." as "TYPE name;..." */
static void join_log(struct buf *log)
{
    for (size_t i = 0; i < buf_size(log); i++) {
        if (log->data[log->off + i] == '\n')
            log->data[log->off + i] = ';';
    }
    if (buf_size(log) > 0)
        log->len--;
    if (log->data != NULL)
        log->data[log->len] = '\0';
}

static bool same_got(const struct got *a, const struct got *b)
{
    return a->result == b->result && a->from == b->from && a->policy == b->policy &&
           a->dis == b->dis && a->source == b->source && a->sampled_out == b->sampled_out &&
           a->spf_aligned == b->spf_aligned && a->dkim_aligned == b->dkim_aligned &&
           a->nonexistent == b->nonexistent && a->has_record == b->has_record &&
           strcmp(a->from_domain, b->from_domain) == 0 &&
           strcmp(a->org_domain, b->org_domain) == 0 &&
           strcmp(a->record_domain, b->record_domain) == 0 &&
           strcmp(a->dkim_domain, b->dkim_domain) == 0 &&
           strcmp(a->spf_domain, b->spf_domain) == 0 && strcmp(a->reason, b->reason) == 0 &&
           strcmp(a->authres, b->authres) == 0;
}

static void test_evaluator(void **state)
{
    for (size_t i = 0; i < sizeof(ev_cases) / sizeof(ev_cases[0]); i++) {
        struct got first = { 0 };
        for (int mode = 0; mode < 4; mode++) {
            struct buf asked = { 0 };
            struct got g = run_case(&ev_cases[i], mode, &asked);
            join_log(&asked);
            check_case(&ev_cases[i], &g, buf_ptr(&asked), mode);
            if (mode == 0)
                first = g;
            else if (!same_got(&first, &g))
                fail_msg("case \"%s\": mode %d differs from mode 0", ev_cases[i].name, mode);
            buf_free(&asked);
        }
    }
}

/* The dmarc= entry of Authentication-Results. */
static void test_authres(void **state)
{
    static const struct {
        const char *name, *want;
    } t[] = {
        { "relaxed dkim, same domain",
          "Authentication-Results: mx.test;\r\n\tdmarc=pass (p=quarantine dis=none)"
          " header.from=relaxed.example\r\n" },
        { "pct=50, draw 50: next lower policy",
          "Authentication-Results: mx.test;\r\n\tdmarc=fail (p=reject dis=quarantine)"
          " header.from=pct50.example\r\n" },
        { "no record anywhere",
          "Authentication-Results: mx.test;\r\n\tdmarc=none (no DMARC record for"
          " sub.nodmarc.example)\r\n\theader.from=sub.nodmarc.example\r\n" },
        { "two From fields",
          "Authentication-Results: mx.test;\r\n\tdmarc=permerror\r\n\t(not DMARC-evaluable: several"
          " From fields, header line 2)\r\n" },
        { "temporary failure",
          "Authentication-Results: mx.test;\r\n\tdmarc=temperror\r\n\t(DNS failure at"
          " _dmarc.temp.example: $TEMPFAIL in the zone file)\r\n\theader.from=temp.example\r\n" },
    };
    for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
        const struct ev_case *c = NULL;
        for (size_t i = 0; i < sizeof(ev_cases) / sizeof(ev_cases[0]); i++) {
            if (strcmp(ev_cases[i].name, t[k].name) == 0)
                c = &ev_cases[i];
        }
        assert_non_null(c);
        struct buf asked = { 0 };
        struct got g = run_case(c, 0, &asked);
        if (strcmp(g.authres, t[k].want) != 0)
            fail_msg("%s:\n got  %s\n want %s", t[k].name, g.authres, t[k].want);
        buf_free(&asked);
    }
}

/* The outcome strings live as long as the evaluator; the request need not. */
static void test_request_copied(void **state)
{
    char *msg = xstrdup("From: a@relaxed.example\r\n\r\n");
    char *d = xstrdup("relaxed.example");
    char *spf = xstrdup("relaxed.example");
    struct dmarc_dkim_input dk = { .domain = d, .pass = true };
    struct dmarc_request req = { .msg = msg, .len = strlen(msg), .dkim = &dk, .ndkim = 1,
                                 .spf_domain = spf, .spf_pass = true };
    struct dmarc_eval *e = dmarc_eval_new(&req);
    memset(msg, 'x', strlen(msg));
    memset(d, 'x', strlen(d));
    memset(spf, 'x', strlen(spf));
    xfree(msg);
    xfree(d);
    xfree(spf);
    const char *name;
    enum dns_type t;
    assert_int_equal(dmarc_eval_step(e, &name, &t), DMARC_STEP_DNS);
    assert_string_equal(name, "_dmarc.relaxed.example");
    assert_int_equal(t, DNS_T_TXT);
    struct dns_rr rr = { .type = DNS_T_TXT };
    char txt[] = "v=DMARC1; p=reject; adkim=s; aspf=s";
    rr.u.txt.data = txt;
    rr.u.txt.len = strlen(txt);
    struct dns_answer ans = { .status = DNS_OK, .rr = &rr, .n = 1 };
    dmarc_eval_answer(e, &ans);
    memset(txt, 'x', strlen(txt));   /* answers are copied, never kept */
    assert_int_equal(dmarc_eval_step(e, &name, &t), DMARC_STEP_DONE);
    const struct dmarc_outcome *o = dmarc_eval_outcome(e);
    assert_int_equal(o->result, DMARC_PASS);
    assert_true(o->spf_aligned && o->dkim_aligned);
    assert_string_equal(o->dkim_domain, "relaxed.example");
    assert_string_equal(o->spf_domain, "relaxed.example");
    assert_int_equal(o->policy, DMARC_P_REJECT);
    assert_int_equal(o->record->adkim, DMARC_STRICT);
    /* a stray answer after the end changes nothing */
    dmarc_eval_answer(e, &ans);
    assert_int_equal(dmarc_eval_outcome(e)->result, DMARC_PASS);
    dmarc_eval_free(e);
    dmarc_eval_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_evaluator),
        cmocka_unit_test(test_authres),
        cmocka_unit_test(test_request_copied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
