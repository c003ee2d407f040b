/*
 * STARTTLS in the session state machine (RFC 3207, RFC 6409): what is
 * offered where, the command's checks, the injection defence (nothing
 * received before the handshake is ever executed), the reset after the
 * handshake, and the commands a TLS-required listener refuses before TLS.
 * Every script is fed whole and one byte at a time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "smtp/session.h"

struct h {
    int asked_tls;
    int messages;
};

static void ask(void *ctx, struct smtp_session *s, enum smtp_ask what)
{
    struct h *h = ctx;
    switch (what) {
    case SMTP_ASK_MAIL: smtp_session_answer(s, 250, "2.1.0", "Ok"); break;
    case SMTP_ASK_RCPT: smtp_session_answer(s, 250, "2.1.5", "Ok"); break;
    case SMTP_ASK_MESSAGE:
        h->messages++;
        smtp_session_answer(s, 250, "2.0.0", "Ok: queued as X");
        break;
    case SMTP_ASK_STARTTLS: h->asked_tls++; break; /* handshake "runs" later */
    case SMTP_ASK_AUTH: fail_msg("AUTH is not offered here"); break;
    }
}

static const struct smtp_hooks hooks = { .ask = ask };

static struct smtp_session *new_session(struct h *h, bool starttls, bool required, bool active)
{
    struct smtp_params p = {
        .hostname = "mx.test", .session_id = "T", .max_line = 512, .max_message = 10000,
        .max_rcpt = 100, .max_errors = 50,
        .starttls = starttls, .tls_required = required, .tls_active = active,
    };
    memset(h, 0, sizeof(*h));
    return smtp_session_new(&p, &hooks, h);
}

static void feed(struct smtp_session *s, const char *in, bool bytewise)
{
    size_t n = strlen(in);
    if (!bytewise) {
        smtp_session_feed(s, in, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        smtp_session_feed(s, in + i, 1);
}

/* Take the output so far as a string (static buffer, valid until next call). */
static const char *take(struct smtp_session *s)
{
    static char out[8192];
    struct buf *b = smtp_session_output(s);
    size_t n = buf_size(b) < sizeof(out) - 1 ? buf_size(b) : sizeof(out) - 1;
    memcpy(out, buf_ptr(b), n);
    out[n] = '\0';
    buf_reset(b);
    return out;
}

static void test_offer_and_injection(void **state)
{
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct h h;
        struct smtp_session *s = new_session(&h, true, false, false);
        take(s);
        feed(s, "EHLO c.test\r\n", bytewise);
        assert_non_null(strstr(take(s), "250-STARTTLS\r\n"));
        /* The attack: commands pipelined behind STARTTLS in the clear. */
        feed(s, "STARTTLS\r\nRSET\r\nMAIL FROM:<evil@x>\r\n", bytewise);
        assert_string_equal(take(s), "220 2.0.0 Ready to start TLS\r\n");
        assert_int_equal(h.asked_tls, 1);
        assert_true(smtp_session_waiting(s));
        /* More plaintext before the handshake completes is dropped too. */
        feed(s, "QUIT\r\n", bytewise);
        smtp_session_tls_started(s);
        assert_string_equal(take(s), "");
        assert_true(smtp_session_tls_active(s));
        assert_int_equal(smtp_session_state(s), SMTP_ST_INIT);
        /* EHLO state was forgotten: MAIL needs a new EHLO. */
        feed(s, "MAIL FROM:<a@b>\r\n", bytewise);
        assert_string_equal(take(s), "503 5.5.1 Error: send HELO/EHLO first\r\n");
        feed(s, "EHLO c.test\r\n", bytewise);
        const char *ehlo = take(s);
        assert_null(strstr(ehlo, "STARTTLS"));
        assert_non_null(strstr(ehlo, "250 CHUNKING\r\n"));
        feed(s, "STARTTLS\r\n", bytewise);
        assert_string_equal(take(s), "503 5.5.1 Error: TLS already active\r\n");
        feed(s, "MAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\nDATA\r\nx\r\n.\r\n", bytewise);
        take(s);
        assert_int_equal(h.messages, 1);
        assert_string_equal(smtp_session_protocol(s), "ESMTPS");
        smtp_session_free(s);
    }
}

static void test_refusals(void **state)
{
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct h h;
        /* Not offered on a plaintext listener. */
        struct smtp_session *s = new_session(&h, false, false, false);
        take(s);
        feed(s, "EHLO c.test\r\n", bytewise);
        assert_null(strstr(take(s), "STARTTLS"));
        feed(s, "STARTTLS\r\n", bytewise);
        assert_string_equal(take(s), "502 5.5.1 Error: STARTTLS not offered here\r\n");
        smtp_session_free(s);

        /* Not inside a transaction; no argument. */
        s = new_session(&h, true, false, false);
        take(s);
        feed(s, "EHLO c.test\r\nSTARTTLS now\r\nMAIL FROM:<a@b>\r\nSTARTTLS\r\n", bytewise);
        const char *out = take(s);
        assert_non_null(strstr(out, "501 5.5.4 Syntax: STARTTLS\r\n"));
        assert_non_null(strstr(out, "503 5.5.1 Error: MAIL transaction in progress\r\n"));
        assert_int_equal(h.asked_tls, 0);
        smtp_session_free(s);

        /* Implicit TLS: active from the start, never offered. */
        s = new_session(&h, false, false, true);
        take(s);
        feed(s, "EHLO c.test\r\nSTARTTLS\r\n", bytewise);
        out = take(s);
        assert_null(strstr(out, "250-STARTTLS"));
        assert_non_null(strstr(out, "503 5.5.1 Error: TLS already active\r\n"));
        smtp_session_free(s);
    }
}

static void test_required(void **state)
{
    static const char *const refused[] = {
        "MAIL FROM:<a@b>", "RCPT TO:<u@localhost>", "DATA", "VRFY u", "EXPN u", "HELP",
    };
    static const char *const allowed[][2] = {
        { "NOOP", "250 2.0.0" }, { "RSET", "250 2.0.0" }, { "HELO c.test", "250 mx.test" },
    };
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct h h;
        struct smtp_session *s = new_session(&h, true, true, false);
        take(s);
        feed(s, "EHLO c.test\r\n", bytewise);
        assert_non_null(strstr(take(s), "250-STARTTLS\r\n"));
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
            char line[64];
            snprintf(line, sizeof(line), "%s\r\n", refused[i]);
            feed(s, line, bytewise);
            assert_string_equal(take(s), "530 5.7.0 Must issue a STARTTLS command first\r\n");
        }
        for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
            char line[64];
            snprintf(line, sizeof(line), "%s\r\n", allowed[i][0]);
            feed(s, line, bytewise);
            assert_true(strncmp(take(s), allowed[i][1], strlen(allowed[i][1])) == 0);
        }
        /* A BDAT before TLS cannot be skipped safely: the session closes. */
        feed(s, "BDAT 6\r\nRSET\r\n", bytewise);
        assert_string_equal(take(s), "530 5.7.0 mx.test Must issue a STARTTLS command first; closing\r\n");
        assert_true(smtp_session_closing(s));
        smtp_session_free(s);

        /* After the handshake everything is allowed. */
        s = new_session(&h, true, true, false);
        take(s);
        feed(s, "EHLO c.test\r\nSTARTTLS\r\n", bytewise);
        take(s);
        smtp_session_tls_started(s);
        feed(s, "EHLO c.test\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@localhost>\r\n", bytewise);
        const char *out = take(s);
        assert_non_null(strstr(out, "250 2.1.0 Ok\r\n"));
        assert_non_null(strstr(out, "250 2.1.5 Ok\r\n"));
        smtp_session_free(s);
    }
}

static void test_shutdown_during_handshake(void **state)
{
    struct h h;
    struct smtp_session *s = new_session(&h, true, false, false);
    take(s);
    feed(s, "EHLO c.test\r\nSTARTTLS\r\n", false);
    take(s);
    smtp_session_shutdown(s);
    assert_string_equal(take(s), "");
    smtp_session_tls_started(s);
    assert_string_equal(take(s), "421 4.3.2 mx.test Service shutting down, closing connection\r\n");
    assert_true(smtp_session_closing(s));
    smtp_session_free(s);
}

int main(void)
{
    log_set_level(MW_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offer_and_injection),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_required),
        cmocka_unit_test(test_shutdown_during_handshake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
