/*
 * A stand-alone driver for the fuzz targets: without libFuzzer (gcc builds,
 * CI under ASan/UBSan) it runs N mutated inputs derived from the target's
 * seeds with a fixed PRNG seed, so a run is reproducible. Mutations flip,
 * insert, delete and splice bytes and drop in SMTP-significant tokens
 * (line endings, dots, command verbs).
 *
 *   fuzz_xxx [iterations] [seed]
 *   fuzz_xxx FILE...        replay inputs (e.g. libFuzzer crash files)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static const char *const tokens[] = {
    "\r\n", "\n", "\r", ".", "\r\n.\r\n", "\n.\n", "\r.\r", "..", "\0",
    "MAIL FROM:<a@b>\r\n", "RCPT TO:<x@localhost>\r\n", "DATA\r\n", "BDAT 4\r\n",
    "BDAT 0 LAST\r\n", "RSET\r\n", "EHLO x\r\n", "<", ">", "@", "\"", "\\", "[", "]",
    " SIZE=", " BODY=8BITMIME", " SMTPUTF8", "\xc3\xa9", "\xff", "IPv6:", "::1",
};

static size_t mutate(char *buf, size_t len, size_t cap)
{
    int rounds = 1 + (int)(rnd() % 8);
    for (int r = 0; r < rounds; r++) {
        switch (rnd() % 5) {
        case 0: /* flip a byte */
            if (len)
                buf[rnd() % len] ^= (char)(1u << (rnd() % 8));
            break;
        case 1: { /* insert a token */
            const char *t = tokens[rnd() % (sizeof(tokens) / sizeof(tokens[0]))];
            size_t tl = t[0] ? strlen(t) : 1;
            if (len + tl > cap)
                break;
            size_t at = len ? rnd() % (len + 1) : 0;
            memmove(buf + at + tl, buf + at, len - at);
            memcpy(buf + at, t, tl);
            len += tl;
            break;
        }
        case 2: /* delete a range */
            if (len) {
                size_t at = rnd() % len, n = 1 + rnd() % (len - at);
                memmove(buf + at, buf + at + n, len - at - n);
                len -= n;
            }
            break;
        case 3: { /* splice in part of another seed */
            const struct fuzz_seed *s = &fuzz_seeds[rnd() % fuzz_nseeds];
            if (s->len == 0)
                break;
            size_t from = rnd() % s->len, n = 1 + rnd() % (s->len - from);
            if (len + n > cap)
                break;
            size_t at = len ? rnd() % (len + 1) : 0;
            memmove(buf + at + n, buf + at, len - at);
            memcpy(buf + at, s->data + from, n);
            len += n;
            break;
        }
        default: /* random byte */
            if (len < cap) {
                size_t at = len ? rnd() % (len + 1) : 0;
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = (char)rnd();
                len++;
            }
        }
    }
    return len;
}

static int replay(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (f == NULL) {
            perror(argv[i]);
            return 1;
        }
        static char data[1 << 20];
        size_t n = fread(data, 1, sizeof(data), f);
        fclose(f);
        LLVMFuzzerTestOneInput((const uint8_t *)data, n);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (argv[1][0] < '0' || argv[1][0] > '9'))
        return replay(argc, argv);
    long iterations = argc > 1 ? atol(argv[1]) : 20000;
    rng_state = argc > 2 ? strtoull(argv[2], NULL, 10) : 0x9e3779b97f4a7c15ULL;
    if (rng_state == 0)
        rng_state = 1;

    enum { CAP = 8192 };
    static char buf[CAP];
    for (size_t i = 0; i < fuzz_nseeds; i++)
        LLVMFuzzerTestOneInput((const uint8_t *)fuzz_seeds[i].data, fuzz_seeds[i].len);
    for (long it = 0; it < iterations; it++) {
        const struct fuzz_seed *s = &fuzz_seeds[rnd() % fuzz_nseeds];
        size_t len = s->len < CAP ? s->len : CAP;
        memcpy(buf, s->data, len);
        len = mutate(buf, len, CAP);
        LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
    }
    printf("%ld inputs run without a fault\n", iterations + (long)fuzz_nseeds);
    return 0;
}
