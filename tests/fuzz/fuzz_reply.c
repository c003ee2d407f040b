/*
 * Fuzz the SMTP reply parser (the client side of `send`, later outbound
 * delivery): the input is fed in pieces whose size the first byte picks;
 * every reply that comes out must be self-consistent, and the parser must
 * never take more bytes than it was given.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtp/reply.h"

static void check(const struct smtp_reply *r)
{
    if (r->code < 200 || r->code > 559 || r->nlines == 0 || r->nlines > SMTP_REPLY_MAX_LINES)
        abort();
    for (size_t i = 0; i < r->nlines; i++) {
        size_t len;
        const char *t = smtp_reply_line(r, i, &len);
        if (t == NULL && len > 0)
            abort();
        if (len > SMTP_REPLY_LINE_MAX || memchr(t, '\0', len) || memchr(t, '\r', len))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = 1 + data[0] % 32;
    const char *p = (const char *)data + 1;
    size_t left = size - 1;
    struct smtp_reply_parser ps;
    smtp_reply_parser_init(&ps);
    while (left > 0) {
        size_t n = left < step ? left : step, used = 0;
        struct smtp_reply r;
        int st = smtp_reply_feed(&ps, p, n, &used, &r);
        if (used > n)
            abort();
        if (st == SMTP_REPLY_DONE) {
            check(&r);
            smtp_reply_free(&r);
        } else if (st < 0) {
            break;
        } else if (used != n) {
            abort();
        }
        if (st == SMTP_REPLY_DONE && used == 0)
            abort();
        p += used;
        left -= used;
    }
    smtp_reply_parser_reset(&ps);
    return 0;
}

const struct fuzz_seed fuzz_seeds[] = {
    SEED("\x05" "250-mx.test\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n"),
    SEED("\x01" "220 mx.test ESMTP\r\n535 5.7.8 Authentication credentials invalid\r\n"),
    SEED("\x1f" "550-5.1.1 first\n550 5.1.1 second\r\n354 go\r\n"),
    SEED("\x02" "250-a\r\n251 b\r\n"),
};
const size_t fuzz_nseeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
