/*
 * Fuzz DKIM: the first byte picks the target, the rest is the input.
 *
 *   0  tag-list parser: on success every tag has a well-formed name, a
 *      value inside the input without surrounding whitespace, and raw
 *      offsets that bracket it; names are unique. Also base64 and the key
 *      record parser over the same bytes.
 *   1  the whole verifier, step by step: the input is the message, and
 *      every TXT question is answered with the input up to its first NUL
 *      byte (or, when the second byte is odd, with a fixed Ed25519 key
 *      record, so signatures get as far as the crypto), a temporary
 *      failure for selectors starting with "t". It must end within
 *      DKIM_MAX_SIGS questions, every result in range with a reason, and
 *      the Authentication-Results built from it must be clean.
 *   2  canonicalization of the input as a message, both ways: the output
 *      is CRLF-terminated lines only.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "core/buf.h"
#include "core/xmalloc.h"
#include "dkim/dkim.h"
#include "dkim/dkim_int.h"
#include "msg/authres.h"

static void fuzz_tags(const char *s, size_t n)
{
    struct dkim_tags t;
    const char *why = NULL;
    if (dkim_tags_parse(s, n, &t, &why) == 0) {
        for (size_t i = 0; i < t.n; i++) {
            const struct dkim_tag *g = &t.tag[i];
            if (g->name_len == 0 || g->name < s || g->val < s + g->raw_start ||
                g->val + g->val_len > s + g->raw_end || g->raw_end > n)
                abort();
            if (g->val_len > 0 && (g->val[0] == ' ' || g->val[g->val_len - 1] == ' '))
                abort();
            for (size_t k = 0; k < i; k++) {
                if (t.tag[k].name_len == g->name_len && !memcmp(t.tag[k].name, g->name, g->name_len))
                    abort();
            }
        }
    } else if (why == NULL) {
        abort();
    }
    struct buf b = { 0 };
    if (b64_decode(s, n, B64_SKIP_WS, &b) == 0 && buf_size(&b) > n)
        abort();
    buf_free(&b);
    struct dkim_keyrec kr;
    if (dkim_keyrec_parse(s, n, &kr, &why) == 0 && !kr.revoked && kr.pkey == NULL)
        abort();
    dkim_keyrec_free(&kr);
}

static const char ed_key[] = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

static void check_header(const struct buf *h)
{
    for (size_t i = 0; i < buf_size(h); i++) {
        char c = buf_ptr(h)[i];
        if ((c < 0x20 || c >= 0x7f) && c != '\r' && c != '\n' && c != '\t')
            abort();
        if (c == '\n' && (i == 0 || buf_ptr(h)[i - 1] != '\r'))
            abort();
    }
}

static void fuzz_verify(uint8_t sel, const char *s, size_t n)
{
    struct dkim_verify_opts o = { .now = 1528637909 };
    struct dkim_verify *v = dkim_verify_new(s, n, &o);
    const char *name;
    enum dns_type type;
    unsigned steps = 0;
    const char *nul = memchr(s, '\0', n);
    while (dkim_verify_step(v, &name, &type) == DKIM_STEP_DNS) {
        if (++steps > DKIM_MAX_SIGS || type != DNS_T_TXT)
            abort();
        struct dns_rr rr = { .type = DNS_T_TXT };
        struct dns_answer ans = { .status = DNS_OK, .rr = &rr, .n = 1 };
        if (name[0] == 't') {
            ans = (struct dns_answer){ .status = DNS_TEMPFAIL };
        } else if (sel & 1) {
            rr.u.txt.data = (char *)ed_key;
            rr.u.txt.len = sizeof(ed_key) - 1;
        } else {
            rr.u.txt.data = (char *)s;
            rr.u.txt.len = nul != NULL ? (size_t)(nul - s) : n;
        }
        dkim_verify_answer(v, &ans);
    }
    size_t nr;
    const struct dkim_sig_result *r = dkim_verify_results(v, &nr);
    struct authres ar;
    authres_begin(&ar, "mx.test");
    for (size_t i = 0; i < nr; i++) {
        if (r[i].result > DKIM_PERMERROR || r[i].result == DKIM_NONE || r[i].reason == NULL ||
            r[i].d == NULL || r[i].s == NULL || r[i].a == NULL || r[i].i == NULL ||
            strlen(r[i].b8) > 8)
            abort();
        authres_method(&ar, "dkim", dkim_result_name(r[i].result), r[i].reason);
        authres_prop(&ar, "header", "d", r[i].d);
        authres_prop(&ar, "header", "i", r[i].i);
        authres_prop(&ar, "header", "b", r[i].b8);
    }
    struct buf h = { 0 };
    authres_end(&ar, &h);
    check_header(&h);
    buf_free(&h);
    dkim_verify_free(v);
}

static void fuzz_canon(const char *s, size_t n)
{
    struct dkim_hdr *hdrs;
    size_t off, nh = dkim_msg_split(s, n, &hdrs, &off);
    if (off > n)
        abort();
    for (int c = 0; c < 2; c++) {
        struct buf out = { 0 };
        for (size_t i = 0; i < nh; i++)
            dkim_canon_header((enum dkim_canon)c, hdrs[i].p, hdrs[i].len, &out);
        dkim_canon_body((enum dkim_canon)c, s + off, n - off, &out);
        if (buf_size(&out) > 0 &&
            (buf_size(&out) < 2 || memcmp(buf_ptr(&out) + buf_size(&out) - 2, "\r\n", 2) != 0))
            abort();
        buf_free(&out);
    }
    xfree(hdrs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const char *s = (const char *)data + 2;
    size_t n = size - 2;
    switch (data[0] % 3) {
    case 0: fuzz_tags(s, n); break;
    case 1: fuzz_verify(data[1], s, n); break;
    default: fuzz_canon(s, n); break;
    }
    return 0;
}

const struct fuzz_seed fuzz_seeds[] = {
    SEED("\x00\x00v=1; a=rsa-sha256; d=example.com; s=sel;\r\n h=from:to; bh=Zm9v; b=Zm9v\r\n YmFy"),
    SEED("\x00\x00v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="),
    SEED("\x00\x00v=DKIM1; k=rsa; t=y:s; h=sha256; s=email; p="),
    SEED("\x01\x01"
         "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
         " d=football.example.com; i=@football.example.com;\r\n"
         " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
         " subject : date : message-id : from : subject : date;\r\n"
         " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
         " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
         " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
         "From: Joe SixPack <joe@football.example.com>\r\n"
         "To: Suzie Q <suzie@shopping.example.net>\r\n"
         "Subject: Is dinner ready?\r\n"
         "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
         "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
         "\r\n"
         "Hi.\r\n"
         "\r\n"
         "We lost the game.  Are you hungry yet?\r\n"
         "\r\n"
         "Joe.\r\n"),
    SEED("\x01\x00v=DKIM1; p=\0"
         "DKIM-Signature: v=1; a=rsa-sha256; d=x.example; s=tmp; h=from; l=3; bh=; b=x\r\n"
         "DKIM-Signature: v=1; a=rsa-sha1; d=x.example; s=a; h=from; bh=x; b=x\r\n"
         "From: a@x.example\r\n\r\nbody\r\n"),
    SEED("\x02\x00"
         "A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n"),
};
const size_t fuzz_nseeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
