/*
 * Fuzz SPF: the first byte picks the target, the rest is the input.
 *
 *   0  record parser: on success every mechanism must be well-formed
 *   1  macro expander (domain-spec, modifier and explanation modes, from
 *      the second byte), with and without a %{p} value; the output stays
 *      within its cap
 *   2  the whole evaluator, step by step, over a resolver that answers
 *      every TXT question with the input (so includes and redirects of the
 *      fuzzed record are evaluated too), A/AAAA with a fixed address, MX
 *      and PTR with fixed names, and a temporary failure for names starting
 *      with "t": it must end, within a bounded number of questions, with a
 *      result, and Received-SPF must be one clean header field
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "core/buf.h"
#include "spf/spf.h"
#include "spf/spf_int.h"

static void fuzz_record(const char *s, size_t n)
{
    struct spf_record r;
    struct buf err = { 0 };
    if (spf_record_parse(s, n, &r, &err) == 0) {
        for (size_t i = 0; i < r.nmech; i++) {
            const struct spf_mech *m = &r.mech[i];
            if (m->cidr4 > 32 || m->cidr6 > 128 || m->text == NULL ||
                (m->domain != NULL && m->domain[0] == '\0'))
                abort();
        }
        spf_record_free(&r);
    } else if (buf_size(&err) == 0) {
        abort();
    }
    buf_free(&err);
}

static void fuzz_macro(uint8_t sel, const char *s, size_t n)
{
    static const enum spf_macro_mode modes[] = { SPF_MACRO_DOMAIN, SPF_MACRO_MODIFIER,
                                                 SPF_MACRO_EXP };
    struct spf_macro_ctx ctx = {
        .s = "strong-bad@email.example.com", .l = "strong-bad", .o = "email.example.com",
        .d = "email.example.com", .i = "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2",
        .h = "%{h} \"weird\" helo", .c = "2001:db8::cb01", .r = "mx.example.org", .v = "ip6",
        .p = (sel & 4) ? "mx.example.org" : NULL, .t = 1,
    };
    struct buf out = { 0 }, err = { 0 };
    int rc = spf_macro_expand(s, n, modes[sel % 3], &ctx, &out, &err);
    if (rc == 0 && buf_size(&out) > SPF_MACRO_MAX_OUT + 4096)
        abort();
    if (rc == SPF_MACRO_NEED_P && ctx.p != NULL)
        abort();
    buf_free(&out);
    buf_free(&err);
}

static void answer(struct spf_eval *e, const char *name, enum dns_type type, const char *s, size_t n)
{
    struct dns_rr rr = { .type = type };
    struct dns_answer ans = { .status = DNS_OK, .rr = &rr, .n = 1 };
    static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
    if (name[0] == 't') {
        ans = (struct dns_answer){ .status = DNS_TEMPFAIL };
    } else if (type == DNS_T_TXT) {
        rr.u.txt.data = (char *)s;
        rr.u.txt.len = n;
    } else if (type == DNS_T_A) {
        memcpy(rr.u.a, (const uint8_t[]){ 192, 0, 2, 1 }, 4);
    } else if (type == DNS_T_AAAA) {
        memcpy(rr.u.aaaa, v6, 16);
    } else if (type == DNS_T_MX) {
        rr.u.mx.host = "mx.example.com";
    } else if (type == DNS_T_PTR) {
        rr.u.name = "mail.example.com";
    } else {
        ans = (struct dns_answer){ .status = DNS_NXDOMAIN };
    }
    spf_eval_answer(e, &ans);
}

static void fuzz_eval(uint8_t sel, const char *s, size_t n)
{
    struct spf_request req = {
        .ip = (sel & 1) ? "2001:db8::1" : "192.0.2.1",
        .sender = (sel & 2) ? "" : "user@example.com",
        .helo = "mail.example.com",
        .helo_identity = (sel & 4) != 0,
        .receiver = "mx.test",
        .now = 1,
    };
    struct spf_eval *e = spf_eval_new(&req);
    const char *name;
    enum dns_type type;
    unsigned steps = 0;
    while (spf_eval_step(e, &name, &type) == SPF_STEP_DNS) {
        if (++steps > 250)
            abort();
        answer(e, name, type, s, n);
    }
    const struct spf_outcome *o = spf_eval_outcome(e);
    if (o->result > SPF_PERMERROR || o->reason == NULL)
        abort();
    struct buf h = { 0 };
    spf_received_header(o, &req, &h);
    for (size_t i = 0; i < buf_size(&h); i++) {
        char c = buf_ptr(&h)[i];
        if ((c < 0x20 || c >= 0x7f) && c != '\r' && c != '\n')
            abort();
        if (c == '\n' && (i == 0 || buf_ptr(&h)[i - 1] != '\r'))
            abort();
    }
    buf_free(&h);
    spf_eval_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const char *s = (const char *)data + 2;
    size_t n = size - 2;
    switch (data[0] % 3) {
    case 0: fuzz_record(s, n); break;
    case 1: fuzz_macro(data[1], s, n); break;
    default: fuzz_eval(data[1], s, n); break;
    }
    return 0;
}

const struct fuzz_seed fuzz_seeds[] = {
    SEED("\x00\x00v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a/24//64 mx:%{d}/30 -all"),
    SEED("\x00\x00v=spf1 include:_spf.example.com exists:%{ir}.%{l1r+-}._spf.%{d} ~all"),
    SEED("\x00\x00v=spf1 ptr:example.com a:foo:bar/baz.example.com redirect=%{d}.x exp=e.%{d2}"),
    SEED("\x00\x00v=spf1 moo.cow-far_out=man:dog/cat default=+ ?all"),
    SEED("\x01\x00%{ir}.%{v}._spf.%{d2}"),
    SEED("\x01\x02%{c} %{r} %{t} %{L} %%%_%- %{S2r-.+,/_=}"),
    SEED("\x01\x04%{p2}.trusted-domains.example.net %{d0} %{x} %(i)"),
    SEED("\x02\x00v=spf1 a mx ptr exists:%{p}.p.example.com include:%{d}.inc -all exp=%{d}"),
    SEED("\x02\x03v=spf1 mx:tmp.example.com redirect=r%{l}.example.com"),
    SEED("\x02\x05v=spf1 -include:x.example.com a:%{h} ip6:::/0 ?all exp=x.%{o}"),
};
const size_t fuzz_nseeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
