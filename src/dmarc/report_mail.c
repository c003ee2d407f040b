/*
 * report_mail.c - the report mail (RFC 7489 7.2.1.1) and the external
 * destination check (7.1); see report.h.
 *
 * Header values we write come partly from DNS and mail (the policy
 * domain) and partly from the configuration (org, addresses): each is
 * reduced to printable ASCII ('?' for anything else) and bounded, so no
 * value can end a header line or start a new field.
 */
#include <string.h>

#include "core/base64.h"
#include "core/xmalloc.h"
#include "dmarc/report.h"

#define B64_LINE 76
#define MAX_HVAL 256

/* ---- the message ------------------------------------------------------------------------- */

static void hval(struct buf *out, const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)(s != NULL ? s : ""); *p && n < MAX_HVAL;
         p++, n++)
        buf_append_byte(out, *p >= 0x20 && *p < 0x7f ? (char)*p : '?');
}

static bool file_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-';
}

void dmarc_report_filename(const char *org, const char *domain, time_t begin, time_t end,
                           struct buf *out)
{
    const char *parts[2] = { org, domain };
    for (int k = 0; k < 2; k++) {
        size_t n = 0;
        for (const unsigned char *p = (const unsigned char *)parts[k]; *p && n < 253; p++, n++)
            buf_append_byte(out, file_byte(*p) ? (char)*p : '-');
        buf_append_byte(out, '!');
    }
    buf_printf(out, "%lld!%lld.xml.gz", (long long)begin, (long long)end);
}

static void date(struct buf *out, time_t t)
{
    char s[64];
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(s, sizeof(s), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    buf_append_str(out, s);
}

static void headers(const struct dmarc_report_mail *m, const char *boundary, struct buf *out)
{
    buf_append_str(out, "From: ");
    hval(out, m->from);
    buf_append_str(out, "\r\nTo: ");
    hval(out, m->to);
    /* 1*FWS between the words of 7.2.1.1: folded, it unfolds to the same. */
    buf_append_str(out, "\r\nSubject: Report Domain: ");
    hval(out, m->domain);
    buf_append_str(out, "\r\n Submitter: ");
    hval(out, m->org);
    buf_append_str(out, "\r\n Report-ID: <");
    hval(out, m->report_id);
    buf_append_str(out, ">\r\nDate: ");
    date(out, m->date);
    buf_append_str(out, "\r\nMessage-ID: <");
    hval(out, m->message_id);
    buf_append_str(out, ">\r\nMIME-Version: 1.0\r\nAuto-Submitted: auto-generated\r\n");
    buf_printf(out, "Content-Type: multipart/mixed;\r\n boundary=\"%s\"\r\n\r\n", boundary);
    buf_append_str(out, "This is a DMARC aggregate report in MIME format.\r\n");
}

static void text_part(const struct dmarc_report_mail *m, struct buf *out)
{
    buf_append_str(out, "Content-Type: text/plain; charset=us-ascii\r\n"
                        "Content-Transfer-Encoding: 7bit\r\n\r\n"
                        "This is a DMARC aggregate report (RFC 7489) for ");
    hval(out, m->domain);
    buf_append_str(out, "\r\nfrom ");
    hval(out, m->org);
    buf_append_str(out, ", covering ");
    date(out, m->begin);
    buf_append_str(out, "\r\nto ");
    date(out, m->end);
    buf_append_str(out, ".\r\nReport-ID: ");
    hval(out, m->report_id);
    buf_append_str(out, "\r\nThe report is the attached gzipped XML file.\r\n");
}

void dmarc_report_mail_build(const struct dmarc_report_mail *m, struct buf *out)
{
    struct buf boundary = { 0 }, name = { 0 }, b64 = { 0 };
    buf_append_str(&boundary, "=_dmarc_");
    for (const char *p = m->report_id; *p && buf_size(&boundary) < 60; p++)
        buf_append_byte(&boundary, file_byte((unsigned char)*p) ? *p : '_');
    dmarc_report_filename(m->org, m->domain, m->begin, m->end, &name);
    headers(m, buf_ptr(&boundary), out);
    buf_printf(out, "\r\n--%s\r\n", buf_ptr(&boundary));
    text_part(m, out);
    buf_printf(out, "\r\n--%s\r\n", buf_ptr(&boundary));
    buf_printf(out, "Content-Type: application/gzip;\r\n name=\"%s\"\r\n"
                    "Content-Transfer-Encoding: base64\r\n"
                    "Content-Disposition: attachment;\r\n filename=\"%s\"\r\n\r\n",
               buf_ptr(&name), buf_ptr(&name));
    b64_encode(m->gz, m->gzlen, &b64);
    for (size_t i = 0; i < buf_size(&b64); i += B64_LINE) {
        size_t n = buf_size(&b64) - i < B64_LINE ? buf_size(&b64) - i : B64_LINE;
        buf_append(out, buf_ptr(&b64) + i, n);
        buf_append_str(out, "\r\n");
    }
    buf_printf(out, "\r\n--%s--\r\n", buf_ptr(&boundary));
    buf_free(&boundary);
    buf_free(&name);
    buf_free(&b64);
}

/* ---- the external destination check ---------------------------------------------------------- */

struct dmarc_ext_eval {
    char *q_name;          /* the question, NULL when none is due */
    bool done;
    enum dmarc_ext result;
    const char *why;
    dmarc_ext_cb report;   /* dmarc_ext_check(): whom to tell */
    void *report_arg;
};

static void finish(struct dmarc_ext_eval *e, enum dmarc_ext r, const char *why)
{
    e->done = true;
    e->result = r;
    e->why = why;
}

struct dmarc_ext_eval *dmarc_ext_new(const char *policy_domain, const char *rua_domain)
{
    struct dmarc_ext_eval *e = xcalloc(1, sizeof(*e));
    char *po = dmarc_org_domain(policy_domain), *ro = dmarc_org_domain(rua_domain);
    if (po == NULL || ro == NULL) {
        finish(e, DMARC_EXT_DENIED, "not a DNS name");
    } else if (strcmp(po, ro) == 0) {
        finish(e, DMARC_EXT_OK, "same organizational domain");
    } else {
        size_t pn = strlen(policy_domain), rn = strlen(rua_domain);
        pn -= pn > 0 && policy_domain[pn - 1] == '.';
        rn -= rn > 0 && rua_domain[rn - 1] == '.';
        struct buf q = { 0 };
        buf_printf(&q, "%.*s._report._dmarc.%.*s", (int)pn, policy_domain, (int)rn, rua_domain);
        if (buf_size(&q) > 253) {
            buf_free(&q);
            finish(e, DMARC_EXT_DENIED, "authorization name longer than 253 octets");
        } else {
            e->q_name = q.data;
        }
    }
    xfree(po);
    xfree(ro);
    return e;
}

void dmarc_ext_free(struct dmarc_ext_eval *e)
{
    if (e == NULL)
        return;
    xfree(e->q_name);
    xfree(e);
}

enum dmarc_step dmarc_ext_step(struct dmarc_ext_eval *e, const char **name, enum dns_type *type)
{
    if (e->done)
        return DMARC_STEP_DONE;
    *name = e->q_name;
    *type = DNS_T_TXT;
    return DMARC_STEP_DNS;
}

static bool is_dmarc1(const char *s, size_t n)
{
    return n >= 8 && memcmp(s, "v=DMARC1", 8) == 0 &&
           (n == 8 || s[8] == ';' || s[8] == ' ' || s[8] == '\t');
}

void dmarc_ext_answer(struct dmarc_ext_eval *e, const struct dns_answer *ans)
{
    if (e->done)
        return;
    switch (ans->status) {
    case DNS_OK:
        for (size_t i = 0; i < ans->n; i++) {
            if (ans->rr[i].type == DNS_T_TXT &&
                is_dmarc1(ans->rr[i].u.txt.data, ans->rr[i].u.txt.len)) {
                finish(e, DMARC_EXT_OK, "authorized by a _report._dmarc record");
                return;
            }
        }
        finish(e, DMARC_EXT_DENIED, "no v=DMARC1 record at the authorization name");
        break;
    case DNS_NODATA:
    case DNS_NXDOMAIN:
        finish(e, DMARC_EXT_DENIED, "no authorization record (_report._dmarc)");
        break;
    case DNS_TEMPFAIL:
        finish(e, DMARC_EXT_TEMPERROR, "DNS lookup of the authorization record failed");
        break;
    default:
        finish(e, DMARC_EXT_DENIED, "bad authorization name");
        break;
    }
}

enum dmarc_ext dmarc_ext_result(const struct dmarc_ext_eval *e, const char **why)
{
    if (why != NULL)
        *why = e->why;
    return e->result;
}

const char *dmarc_ext_name(enum dmarc_ext r)
{
    static const char *const names[] = { "ok", "denied", "temperror" };
    return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "denied";
}

static bool step_next(void *ev, const char **name, enum dns_type *type)
{
    return dmarc_ext_step(ev, name, type) == DMARC_STEP_DNS;
}

static void step_answer(void *ev, const struct dns_answer *ans)
{
    dmarc_ext_answer(ev, ans);
}

static void step_finish(void *ev)
{
    struct dmarc_ext_eval *e = ev;
    e->report(e->report_arg, e->result, e->why);
    dmarc_ext_free(e);
}

static const struct dns_stepper ext_stepper = {
    .next = step_next, .answer = step_answer, .finish = step_finish,
};

void dmarc_ext_check(struct dns_resolver *r, const char *policy_domain, const char *rua_domain,
                     dmarc_ext_cb done, void *arg)
{
    struct dmarc_ext_eval *e = dmarc_ext_new(policy_domain, rua_domain);
    e->report = done;
    e->report_arg = arg;
    dns_drive(r, &ext_stepper, e);
}
