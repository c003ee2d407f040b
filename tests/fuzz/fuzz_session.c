/*
 * Fuzz the SMTP server session: the input is split into feeds at points
 * chosen by its first byte, and asks are answered (accept or refuse,
 * at once or after the next feed) from the input too, so every path of
 * the state machine, including deferred answers, is reachable.
 */
#include <string.h>

#include "fuzz.h"
#include "core/log.h"
#include "smtp/session.h"

struct fz {
    uint8_t mode;
    unsigned n;
    bool deferred;
};

static void answer(struct smtp_session *s, struct fz *f)
{
    bool ok = ((f->mode >> (f->n++ % 8)) & 1) == 0;
    if (ok)
        smtp_session_answer(s, 250, "2.0.0", "Ok");
    else
        smtp_session_answer(s, 550, "5.7.1", "No");
}

static void ask(void *ctx, struct smtp_session *s, enum smtp_ask what)
{
    struct fz *f = ctx;
    if (f->mode & 0x80) {
        f->deferred = true;
        return;
    }
    (void)what;
    answer(s, f);
}

static const struct smtp_hooks hooks = { .ask = ask };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    log_set_level(MW_LOG_ERROR);
    if (size < 2)
        return 0;
    struct fz f = { .mode = data[0] };
    size_t step = 1 + data[1] % 64;
    data += 2;
    size -= 2;
    struct smtp_params p = {
        .hostname = "mx.test", .session_id = "FUZZ", .max_line = 512,
        .max_message = 4096, .max_rcpt = 4, .max_errors = 50,
        .auth = true, .tls_active = (data[-1] & 0x40) != 0,  /* bit 6 of the step byte */
    };
    struct smtp_session *s = smtp_session_new(&p, &hooks, &f);
    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        smtp_session_feed(s, data + off, n);
        if (f.deferred && smtp_session_waiting(s)) {
            f.deferred = false;
            answer(s, &f);
        }
        buf_reset(smtp_session_output(s));
        if (smtp_session_closing(s))
            break;
    }
    if (smtp_session_waiting(s))
        answer(s, &f);
    smtp_session_shutdown(s);
    smtp_session_timeout(s);
    smtp_session_free(s);
    return 0;
}

const struct fuzz_seed fuzz_seeds[] = {
    SEED("\x00\x47" "EHLO a\r\nAUTH PLAIN AGFsaWNlAHB3\r\nMAIL FROM:<a@b> AUTH=a+2Bb@c\r\n"
         "RCPT TO:<x@localhost>\r\nDATA\r\nx\r\n.\r\n"),
    SEED("\x80\x41" "EHLO a\r\nAUTH LOGIN\r\nYWxpY2U=\r\ncHc=\r\nAUTH PLAIN\r\n*\r\nQUIT\r\n"),
    SEED("\x00\x07" "EHLO a\r\nMAIL FROM:<a@b> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<x@localhost>\r\n"
         "DATA\r\nSubject: x\r\n\r\n..body\r\n.\r\nQUIT\r\n"),
    SEED("\x80\x03" "HELO a\r\nMAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nBDAT 5\r\nabcdeBDAT 3 LAST\r\n"
         "xyzRSET\r\n"),
    SEED("\x01\x3f" "EHLO a\r\nMAIL FROM:<\xc3\xa9@b> SMTPUTF8\r\nRCPT TO:<\"q\\\"x\"@[IPv6:::1]>\r\n"
         "DATA\r\nx\n.\nMAIL FROM:<e@v>\r\n.\r\n"),
    SEED("\x02\x01" "EHLO a\r\nMAIL FROM:<@r1,@r2:a@b.c>\r\nRCPT TO:<a@localhost> NOTIFY=NEVER\r\n"
         "VRFY x\r\nEXPN y\r\nHELP\r\nNOOP\r\nBDAT x\r\n"),
    SEED("\x00\x11" "EHLO a\r\nMAIL FROM:<a@b> RET=FULL ENVID=x+2By\r\n"
         "RCPT TO:<x@localhost> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;x+40y\r\n"
         "RCPT TO:<z@localhost> NOTIFY=FAILURE ORCPT=utf-8;a\r\nDATA\r\nx\r\n.\r\n"),
};
const size_t fuzz_nseeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
