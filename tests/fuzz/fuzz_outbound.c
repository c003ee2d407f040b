/*
 * Fuzz the outbound SMTP client state machine (smtp/outbound.h) as a
 * hostile peer would drive it: the input is the peer's bytes, fed in
 * pieces whose size the first byte picks. The client sends a message each
 * time it is ready (up to three), says the TLS handshake worked when asked,
 * and quits. Every outcome must be a real reply class, every recipient
 * must have one, and what the client writes must be CRLF lines only.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtp/outbound.h"

static const char body[] = "Subject: x\r\n\r\n.\r\nbody\n.x\r";
static const char *const rcpts[] = { "a@peer.test", "b@peer.test", "c@peer.test" };

static void check_output(struct smtpo *s)
{
    struct buf *o = smtpo_output(s);
    const char *p = buf_ptr(o);
    size_t n = buf_size(o);
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
            abort();
        if (p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n'))
            abort();
    }
    buf_reset(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = 1 + data[0] % 64;
    const char *p = (const char *)data + 1;
    size_t left = size - 1;
    struct smtpo_opts o = { .helo = "mx.us.test", .starttls = (data[0] & 0x80) != 0 };
    struct smtpo *s = smtpo_new(&o);
    struct smtpo_msg m = { .from = "s@us.test", .rcpts = rcpts, .nrcpt = 3,
                           .body = body, .body_len = sizeof(body) - 1 };
    unsigned sent = 0;
    while (left > 0 && smtpo_state(s) != SMTPO_CLOSED) {
        switch (smtpo_state(s)) {
        case SMTPO_TLS:
            smtpo_tls_done(s);
            break;
        case SMTPO_READY:
            if (sent++ < 3)
                smtpo_send(s, &m);
            else
                smtpo_quit(s);
            break;
        case SMTPO_SENT: {
            size_t n;
            const struct smtpo_result *r = smtpo_results(s, &n);
            if (n != 3)
                abort();
            for (size_t i = 0; i < n; i++)
                if (r[i].code < 200 || r[i].code > 599 || memchr(r[i].text, '\r', sizeof(r[i].text)))
                    abort();
            smtpo_next(s);
            break;
        }
        default:
            break;
        }
        check_output(s);
        if (smtpo_state(s) != SMTPO_WAIT)
            continue;
        size_t n = left < step ? left : step;
        size_t used = smtpo_input(s, p, n);
        if (used > n)
            abort();
        p += n;
        left -= n;
    }
    smtpo_input(s, "", 0);
    smtpo_free(s);
    return 0;
}

const struct fuzz_seed fuzz_seeds[] = {
    SEED("\x10" "220 mx\r\n250-mx\r\n250-PIPELINING\r\n250 SIZE 100\r\n250 ok\r\n250 ok\r\n"
         "550 no\r\n250 ok\r\n354 go\r\n250 done\r\n"),
    SEED("\x83" "220 mx\r\n250-mx\r\n250 STARTTLS\r\n220 go\r\n250 mx\r\n250 ok\r\n250 ok\r\n"
         "250 ok\r\n250 ok\r\n354 go\r\n451 later\r\n221 bye\r\n"),
    SEED("\x01" "220 mx\r\n502 no\r\n250 hi\r\n250 ok\r\n250 ok\r\n"),
    SEED("\x05" "554 go away\r\n"),
    SEED("\x20" "220 mx\r\n250-mx\r\n250-PIPELINING\r\n250-DSN\r\n250 CHUNKING\r\n250 ok\r\n"
         "250 ok\r\n250 ok\r\n250 ok\r\n250 done\r\n"),
};
const size_t fuzz_nseeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
