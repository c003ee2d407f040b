/*
 * Fuzz DMARC (dmarc/dmarc.h). The first byte picks what the rest is:
 * even - a DMARC record: a parse must be well formed (pct 0..100, sp and
 *        np set, at most DMARC_MAX_URIS URIs each with a scheme), a
 *        refusal must leave nothing allocated;
 * odd  - a message header and, after the first NUL byte, the text of the
 *        TXT record(s) every question is answered with (split at further
 *        NULs; an empty one gives NXDOMAIN): the evaluator must finish in
 *        a few questions with a consistent outcome.
 */
#include <stdlib.h>
#include <string.h>

#include "dmarc/dmarc.h"
#include "fuzz.h"

static void check_record(const char *s, size_t n)
{
    struct dmarc_record r;
    const char *why = NULL;
    int rc = dmarc_record_parse(s, n, &r, &why);
    if (rc != DMARC_REC_OK) {
        if (why == NULL || r.nrua != 0 || r.nruf != 0 || rc > 0)
            abort();
        return;
    }
    if (r.pct > 100 || r.nrua > DMARC_MAX_URIS || r.nruf > DMARC_MAX_URIS)
        abort();
    if (!r.has_sp && r.sp != r.p)
        abort();
    for (size_t i = 0; i < r.nrua + r.nruf; i++) {
        const struct dmarc_uri *u = i < r.nrua ? &r.rua[i] : &r.ruf[i - r.nrua];
        if (strchr(u->uri, ':') == NULL || strlen(u->uri) > n)
            abort();
    }
    dmarc_record_free(&r);
}

static void check_eval(const char *s, size_t n)
{
    const char *nul = memchr(s, '\0', n);
    size_t hlen = nul != NULL ? (size_t)(nul - s) : n;
    const char *txt = nul != NULL ? nul + 1 : "";
    size_t tlen = nul != NULL ? n - hlen - 1 : 0;
    struct dmarc_dkim_input dk = { .domain = "example.com", .pass = true };
    struct dmarc_request req = { .msg = s, .len = hlen, .spf_domain = "mail.example.com",
                                 .spf_pass = true, .dkim = &dk, .ndkim = 1,
                                 .pct_draw = (unsigned)(n % 100) };
    struct dmarc_eval *e = dmarc_eval_new(&req);
    struct dns_rr rr[4];
    size_t nrr = 0;
    for (size_t i = 0; i < tlen && nrr < 4;) {
        const char *end = memchr(txt + i, '\0', tlen - i);
        size_t l = end != NULL ? (size_t)(end - txt) - i : tlen - i;
        rr[nrr].type = DNS_T_TXT;
        rr[nrr].u.txt.data = (char *)txt + i;
        rr[nrr].u.txt.len = l;
        nrr++;
        i += l + 1;
    }
    struct dns_answer ans = { .status = nrr ? DNS_OK : DNS_NXDOMAIN, .rr = rr, .n = nrr };
    struct dns_answer nodata = { .status = DNS_NODATA };
    const char *name;
    enum dns_type t;
    int steps = 0;
    while (dmarc_eval_step(e, &name, &t) == DMARC_STEP_DNS) {
        if (++steps > 5 || name == NULL)
            abort();
        dmarc_eval_answer(e, t == DNS_T_TXT ? &ans : &nodata);
    }
    const struct dmarc_outcome *o = dmarc_eval_outcome(e);
    if (o->reason == NULL || (o->result == DMARC_PERMERROR) != (o->from != DMARC_FROM_OK))
        abort();
    if (o->result != DMARC_FAIL && o->disposition != DMARC_P_NONE)
        abort();
    dmarc_eval_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        check_eval((const char *)data + 1, size - 1);
    else
        check_record((const char *)data + 1, size - 1);
    return 0;
}

const struct fuzz_seed fuzz_seeds[] = {
    SEED("\x00v=DMARC1; p=reject; sp=quarantine; np=none; pct=50; adkim=s; aspf=r"),
    SEED("\x00v=DMARC1; p=none; rua=mailto:a@example.com!10m, https://r.example/x; ruf=mailto:f@x"),
    SEED("\x00v=DMARC1; p=bogus; rua=mailto:x@y; fo=1:d:s; rf=afrf; ri=3600; foo=bar;;"),
    SEED("\x00v=DMARC1;p=none;p=reject"),
    SEED("\x01" "From: Alice <alice@mail.example.com>\r\nTo: b@c\r\n\0v=DMARC1; p=reject; np=quarantine"),
    SEED("\x01" "From: a@example.co.uk\r\n\0v=DMARC1; p=none\0v=DMARC1; p=reject"),
    SEED("\x01" "From: a@b, c@d\r\nFrom: e\r\n\0"),
};
const size_t fuzz_nseeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
