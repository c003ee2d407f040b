/*
 * Fuzz the cost of DKIM verification over whole messages built to be
 * expensive: a super-linear path shows up as a libFuzzer timeout. The input
 * is three parts split at the first two LF bytes:
 *
 *   <signature template> LF <header line> LF <rest of the message>
 *
 * and the message verified is the template as 16 DKIM-Signature fields
 * (the i-th with "<i>" appended to its d=), the header line repeated
 * `scale` times, then the rest. scale is MW_FUZZ_SCALE (default 64, small
 * enough for the sanitizer run in CTest); for a cost hunt run the libFuzzer
 * build with a large one and a time limit, for example
 *
 *   MW_FUZZ_SCALE=20000 fuzz_dkim_message_lf -timeout=2 -max_len=4096
 *
 * With 16 signatures naming 127 fields each over 20,000 lines, a header
 * scan per h= name (the old code) costs about 40 million field compares
 * per input; the indexed verifier stays linear. Every key question is
 * answered with one fixed Ed25519 record; the verifier must finish in at
 * most DKIM_MAX_SIGS questions with every result in range.
 */
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/xmalloc.h"
#include "dkim/dkim.h"
#include "fuzz.h"

static size_t scale(void)
{
    static size_t s;
    if (s == 0) {
        const char *e = getenv("MW_FUZZ_SCALE");
        long v = e != NULL ? strtol(e, NULL, 10) : 0;
        s = v > 0 && v <= 1000000 ? (size_t)v : 64;
    }
    return s;
}

static const char *cut(const char **p, const char *end)
{
    const char *lf = memchr(*p, '\n', (size_t)(end - *p));
    *p = lf != NULL ? lf + 1 : end;
    return lf != NULL ? lf : end;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    const char *t0 = p, *t1 = cut(&p, end);
    const char *h0 = p, *h1 = cut(&p, end);
    struct buf m = { 0 };
    for (int i = 0; i < 16; i++) {
        buf_append_str(&m, "DKIM-Signature: ");
        const char *d = memmem(t0, (size_t)(t1 - t0), "d=", 2);
        size_t upto = d != NULL ? (size_t)(d - t0) + 2 : (size_t)(t1 - t0);
        buf_append(&m, t0, upto);
        if (d != NULL) {
            buf_printf(&m, "%d", i);
            buf_append(&m, t0 + upto, (size_t)(t1 - t0) - upto);
        }
        buf_append_str(&m, "\r\n");
    }
    for (size_t i = 0; i < scale(); i++) {
        buf_append(&m, h0, (size_t)(h1 - h0));
        buf_append_str(&m, "\r\n");
    }
    buf_append(&m, p, (size_t)(end - p));

    struct dkim_verify_opts o = { .now = 1700000000 };
    struct dkim_verify *v = dkim_verify_new(buf_ptr(&m), buf_size(&m), &o);
    static char key[] = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    struct dns_rr rr = { .type = DNS_T_TXT, .u.txt = { key, sizeof(key) - 1 } };
    struct dns_answer ans = { .status = DNS_OK, .rr = &rr, .n = 1 };
    const char *name;
    enum dns_type type;
    int steps = 0;
    while (dkim_verify_step(v, &name, &type) == DKIM_STEP_DNS) {
        if (++steps > DKIM_MAX_SIGS)
            abort();
        dkim_verify_answer(v, &ans);
    }
    size_t n;
    const struct dkim_sig_result *res = dkim_verify_results(v, &n);
    if (n > DKIM_MAX_SIGS)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned)res[i].result > DKIM_PERMERROR || res[i].reason == NULL)
            abort();
    dkim_verify_free(v);
    buf_free(&m);
    return 0;
}

const struct fuzz_seed fuzz_seeds[] = {
    SEED("v=1; a=ed25519-sha256; c=relaxed/relaxed; d=junk.example; s=s; h=x-a1:x-a2:x-a3:"
         "x-a4:x-a5:x-a6:x-a7:x-a8:x-a9:x-a10:x-a11:x-a12:x-a13:x-a14:x-a15:from; "
         "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\n"
         "X-Line: 0123456789\n"
         "From: a@junk.example\r\n\r\nbody\r\n"),
    SEED("v=1; a=rsa-sha256; d=example.com; s=sel; h=from:from:from:to:to:subject; bh=x; b=y\n"
         "From: a@example.com\n"
         "To: b@example.net\r\n\r\n"),
    SEED("x\nDKIM-Signature: v=1\n\r\n"),
};
const size_t fuzz_nseeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
