/*
 * SMTP AUTH in the session state machine (RFC 4954) and the SASL PLAIN and
 * LOGIN decoders under it: where AUTH is offered (only inside TLS, only
 * where the listener allows it), the exchange, cancel and bad input, the
 * state checks, what the daemon is asked, and MAIL's AUTH= parameter.
 * Every script is fed whole and one byte at a time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "auth/sasl.h"
#include "core/base64.h"
#include "core/log.h"
#include "smtp/session.h"

struct h {
    int asked_auth;
    char user[300], pass[300], mech[16];
    int answer;            /* code the fake daemon gives AUTH */
    bool defer;            /* do not answer AUTH inside ask() */
    char auth_param[300];
};

static void ask(void *ctx, struct smtp_session *s, enum smtp_ask what)
{
    struct h *h = ctx;
    struct smtp_auth_request req;
    switch (what) {
    case SMTP_ASK_MAIL: {
        const struct smtp_txn *t = smtp_session_txn(s);
        snprintf(h->auth_param, sizeof(h->auth_param), "%s",
                 t->auth_param ? t->auth_param : "(none)");
        smtp_session_answer(s, 250, "2.1.0", "Ok");
        break;
    }
    case SMTP_ASK_RCPT: smtp_session_answer(s, 250, "2.1.5", "Ok"); break;
    case SMTP_ASK_MESSAGE: smtp_session_answer(s, 250, "2.0.0", "Ok"); break;
    case SMTP_ASK_STARTTLS: fail_msg("no STARTTLS here"); break;
    case SMTP_ASK_AUTH:
        h->asked_auth++;
        assert_true(smtp_session_auth_request(s, &req));
        snprintf(h->user, sizeof(h->user), "%s", req.user);
        snprintf(h->pass, sizeof(h->pass), "%s", req.pass);
        snprintf(h->mech, sizeof(h->mech), "%s", req.mech);
        if (!h->defer)
            smtp_session_answer(s, h->answer, h->answer == 235 ? "2.7.0" : "5.7.8",
                                h->answer == 235 ? "Authentication successful" : "Bad");
        break;
    }
}

static const struct smtp_hooks hooks = { .ask = ask };

static struct smtp_session *new_session(struct h *h, bool auth, bool tls, bool required)
{
    struct smtp_params p = {
        .hostname = "mx.test", .session_id = "T", .max_line = 512, .max_message = 10000,
        .max_rcpt = 100, .max_errors = 50, .starttls = !tls, .tls_required = required,
        .tls_active = tls, .auth = auth,
    };
    memset(h, 0, sizeof(*h));
    h->answer = 235;
    return smtp_session_new(&p, &hooks, h);
}

/* Feed a script, return everything the session wrote after its greeting. */
static char *run(struct smtp_session *s, const char *in, bool bytewise)
{
    static char out[8192];
    size_t n = strlen(in);
    if (bytewise)
        for (size_t i = 0; i < n; i++)
            smtp_session_feed(s, in + i, 1);
    else
        smtp_session_feed(s, in, n);
    struct buf *o = smtp_session_output(s);
    snprintf(out, sizeof(out), "%.*s", (int)buf_size(o), buf_ptr(o));
    buf_reset(o);
    return out;
}

static void b64(const char *raw, size_t n, char *out, size_t cap)
{
    struct buf b;
    buf_init(&b);
    b64_encode(raw, n, &b);
    snprintf(out, cap, "%s", buf_ptr(&b));
    buf_free(&b);
}

/* The greeting is dropped first so each script sees only its own replies. */
static struct smtp_session *start(struct h *h, bool auth, bool tls, bool required)
{
    struct smtp_session *s = new_session(h, auth, tls, required);
    buf_reset(smtp_session_output(s));
    return s;
}

static void test_offered_only_inside_tls(void **state)
{
    for (int bw = 0; bw < 2; bw++) {
        struct h h;
        struct smtp_session *s = start(&h, true, false, false);
        char *o = run(s, "EHLO c\r\n", bw);
        assert_null(strstr(o, "AUTH"));
        assert_non_null(strstr(o, "STARTTLS"));
        o = run(s, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", bw);
        assert_non_null(strstr(o, "538 5.7.11"));
        assert_int_equal(h.asked_auth, 0);
        smtp_session_free(s);

        s = start(&h, true, true, false);
        o = run(s, "EHLO c\r\n", bw);
        assert_non_null(strstr(o, "250-AUTH PLAIN LOGIN\r\n"));
        smtp_session_free(s);

        s = start(&h, false, true, false);
        o = run(s, "EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", bw);
        assert_null(strstr(o, "AUTH PLAIN LOGIN"));
        assert_non_null(strstr(o, "502 5.5.1"));
        smtp_session_free(s);

        /* Submission before STARTTLS: TLS first (RFC 6409 + 3207). */
        s = start(&h, true, false, true);
        o = run(s, "EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", bw);
        assert_non_null(strstr(o, "530 5.7.0"));
        assert_int_equal(h.asked_auth, 0);
        smtp_session_free(s);
    }
}

static void test_plain(void **state)
{
    for (int bw = 0; bw < 2; bw++) {
        struct h h;
        struct smtp_session *s = start(&h, true, true, false);
        char ir[200];
        b64("\0Alice@Example.COM\0s3cret pass", 30, ir, sizeof(ir));
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "EHLO c\r\nAUTH PLAIN %s\r\nMAIL FROM:<a@b.example>\r\n", ir);
        char *o = run(s, cmd, bw);
        assert_non_null(strstr(o, "235 2.7.0 Authentication successful\r\n250 2.1.0"));
        assert_int_equal(h.asked_auth, 1);
        assert_string_equal(h.user, "Alice@Example.COM");
        assert_string_equal(h.pass, "s3cret pass");
        assert_string_equal(h.mech, "PLAIN");
        assert_string_equal(smtp_session_auth_user(s), "alice@example.com");
        assert_string_equal(smtp_session_protocol(s), "ESMTPSA");
        struct smtp_auth_request req;
        assert_false(smtp_session_auth_request(s, &req));
        o = run(s, "RSET\r\nAUTH PLAIN\r\n", bw);
        assert_non_null(strstr(o, "503 5.5.1"));
        smtp_session_free(s);

        /* No initial response: an empty challenge, then the response. */
        s = start(&h, true, true, false);
        b64("alice\0alice\0pw", 14, ir, sizeof(ir));
        snprintf(cmd, sizeof(cmd), "EHLO c\r\nauth plain\r\n%s\r\n", ir);
        o = run(s, cmd, bw);
        assert_non_null(strstr(o, "334 \r\n235 2.7.0"));
        assert_string_equal(h.user, "alice");
        assert_string_equal(h.pass, "pw");
        smtp_session_free(s);
    }
}

static void test_login(void **state)
{
    for (int bw = 0; bw < 2; bw++) {
        struct h h;
        struct smtp_session *s = start(&h, true, true, false);
        char *o = run(s, "EHLO c\r\nAUTH LOGIN\r\n", bw);
        assert_non_null(strstr(o, "334 VXNlcm5hbWU6\r\n"));
        o = run(s, "Ym9i\r\n", bw);
        assert_string_equal(o, "334 UGFzc3dvcmQ6\r\n");
        o = run(s, "aHVudGVyMg==\r\n", bw);
        assert_string_equal(o, "235 2.7.0 Authentication successful\r\n");
        assert_string_equal(h.user, "bob");
        assert_string_equal(h.pass, "hunter2");
        assert_string_equal(h.mech, "LOGIN");
        smtp_session_free(s);

        /* The initial response is the user name. */
        s = start(&h, true, true, false);
        o = run(s, "EHLO c\r\nAUTH LOGIN Ym9i\r\naHVudGVyMg==\r\n", bw);
        assert_non_null(strstr(o, "334 UGFzc3dvcmQ6\r\n235 2.7.0"));
        smtp_session_free(s);
    }
}

static void test_failures(void **state)
{
    static const struct {
        const char *script;
        const char *expect;
    } cases[] = {
        { "AUTH PLAIN\r\n*\r\n", "501 5.0.0" },
        { "AUTH LOGIN\r\n*\r\n", "501 5.0.0" },
        { "AUTH PLAIN not-base64!\r\n", "501 5.5.2" },
        { "AUTH PLAIN\r\nYWJj ZA==\r\n", "501 5.5.2" },
        { "AUTH PLAIN YWJjZA\r\n", "501 5.5.2" },              /* missing padding */
        { "AUTH PLAIN YWJjZA==\r\n", "535 5.7.8" },            /* no NULs */
        { "AUTH PLAIN Ym9iAGFsaWNlAHB3\r\n", "535 5.7.8" },    /* bob acting as alice */
        { "AUTH PLAIN AGFsaWNlAA==\r\n", "535 5.7.8" },        /* empty password */
        { "AUTH PLAIN =\r\n", "535 5.7.8" },                   /* empty message */
        { "AUTH CRAM-MD5\r\n", "504 5.5.4" },
        { "AUTH\r\n", "501 5.5.4" },                          /* no mechanism: syntax */
        { "AUTH PLAIN a b\r\n", "501 5.5.4" },
        { "AUTH LOGIN\r\nYWxpY2U=\n", "500 5.5.2" },           /* bare LF response */
    };
    for (int bw = 0; bw < 2; bw++) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            struct h h;
            struct smtp_session *s = start(&h, true, true, false);
            run(s, "EHLO c\r\n", bw);
            char *o = run(s, cases[i].script, bw);
            if (strstr(o, cases[i].expect) == NULL)
                fail_msg("case %zu: expected %s, got %s", i, cases[i].expect, o);
            assert_int_equal(h.asked_auth, 0);
            /* The exchange is over: the next line is a command again. */
            o = run(s, "NOOP\r\n", bw);
            assert_string_equal(o, "250 2.0.0 Ok\r\n");
            assert_null(smtp_session_auth_user(s));
            smtp_session_free(s);
        }
    }
}

static void test_state_and_retry(void **state)
{
    struct h h;
    struct smtp_session *s = start(&h, true, true, false);
    char *o = run(s, "AUTH PLAIN AGEAYg==\r\n", false);
    assert_non_null(strstr(o, "503 5.5.1"));
    o = run(s, "HELO c\r\nAUTH PLAIN AGEAYg==\r\n", false);
    assert_non_null(strstr(o, "503 5.5.1"));
    o = run(s, "EHLO c\r\nMAIL FROM:<a@b.example>\r\nAUTH PLAIN AGEAYg==\r\n", false);
    assert_non_null(strstr(o, "503 5.5.1 Error: AUTH not allowed during a mail transaction"));
    assert_int_equal(h.asked_auth, 0);
    /* The daemon refuses: not authenticated, and the client may try again. */
    h.answer = 535;
    o = run(s, "RSET\r\nAUTH PLAIN AGEAYg==\r\n", false);
    assert_non_null(strstr(o, "535 5.7.8"));
    assert_null(smtp_session_auth_user(s));
    assert_string_equal(smtp_session_protocol(s), "ESMTPS");
    h.answer = 235;
    o = run(s, "AUTH PLAIN AGEAYg==\r\n", false);
    assert_non_null(strstr(o, "235 2.7.0"));
    assert_int_equal(h.asked_auth, 2);
    smtp_session_free(s);
}

/* Commands pipelined behind AUTH wait for the daemon's answer. */
static void test_deferred_answer(void **state)
{
    struct h h;
    struct smtp_session *s = start(&h, true, true, false);
    h.defer = true;
    char *o = run(s, "EHLO c\r\nAUTH PLAIN AGEAYg==\r\nMAIL FROM:<a@b.example>\r\n", false);
    assert_null(strstr(o, "235"));
    assert_null(strstr(o, "250 2.1.0"));
    assert_true(smtp_session_waiting(s));
    smtp_session_answer(s, 235, "2.7.0", "Authentication successful");
    o = run(s, "", false);
    assert_string_equal(o, "235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n");
    smtp_session_free(s);
}

static void test_overlong_response(void **state)
{
    struct h h;
    struct smtp_session *s = start(&h, true, true, false);
    run(s, "EHLO c\r\nAUTH PLAIN\r\n", false);
    char big[700];
    memset(big, 'Q', sizeof(big) - 3);
    memcpy(big + sizeof(big) - 3, "\r\n", 3);
    char *o = run(s, big, false);
    assert_non_null(strstr(o, "500 5.5.2"));
    o = run(s, "NOOP\r\n", false);
    assert_string_equal(o, "250 2.0.0 Ok\r\n");
    assert_int_equal(h.asked_auth, 0);
    smtp_session_free(s);
}

static void test_mail_auth_param(void **state)
{
    static const struct {
        const char *param;
        const char *reply;
        const char *decoded;
    } cases[] = {
        { " AUTH=<>", "250 2.1.0", "<>" },
        { " AUTH=alice+2Bx@example.org", "250 2.1.0", "alice+x@example.org" },
        { " auth=a@b.example SIZE=10", "250 2.1.0", "a@b.example" },
        { " AUTH=a+ZZ@b", "501 5.5.4", NULL },
        { " AUTH=a+2", "501 5.5.4", NULL },
        { " AUTH=a+20b", "501 5.5.4", NULL },     /* +20 is a space: not xchar */
        { " AUTH", "501 5.5.4", NULL },
        { " AUTH=<> AUTH=<>", "501 5.5.4", NULL },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct h h;
        struct smtp_session *s = start(&h, true, true, false);
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "EHLO c\r\nMAIL FROM:<a@b.example>%s\r\n", cases[i].param);
        char *o = run(s, cmd, false);
        if (strstr(o, cases[i].reply) == NULL)
            fail_msg("case %zu: expected %s, got %s", i, cases[i].reply, o);
        if (cases[i].decoded)
            assert_string_equal(h.auth_param, cases[i].decoded);
        smtp_session_free(s);
    }
    /* Where AUTH is not offered, AUTH= is an unknown parameter. */
    struct h h;
    struct smtp_session *s = start(&h, false, true, false);
    char *o = run(s, "EHLO c\r\nMAIL FROM:<a@b.example> AUTH=<>\r\n", false);
    assert_non_null(strstr(o, "555 5.5.4"));
    smtp_session_free(s);
}

static void test_sasl_direct(void **state)
{
    struct sasl x;
    memset(&x, 0, sizeof(x));
    struct buf chal;
    buf_init(&chal);
    assert_int_equal(sasl_mech_by_name("plain", 5), SASL_PLAIN);
    assert_int_equal(sasl_mech_by_name("LoGiN", 5), SASL_LOGIN);
    assert_int_equal(sasl_mech_by_name("PLAINX", 6), SASL_NONE);
    /* authzid equal to authcid is accepted. */
    char ir[100];
    b64("u@x\0u@x\0p", 9, ir, sizeof(ir));
    assert_int_equal(sasl_start(&x, SASL_PLAIN, ir, strlen(ir), &chal), SASL_DONE);
    assert_string_equal(x.user, "u@x");
    assert_string_equal(x.pass, "p");
    sasl_clear(&x);
    assert_null(x.user);
    assert_null(x.pass);
    /* Invalid UTF-8 in the password, and a 256-octet user name. */
    b64("\0u\0\xff\xfe", 5, ir, sizeof(ir));
    assert_int_equal(sasl_start(&x, SASL_PLAIN, ir, strlen(ir), &chal), SASL_BAD_MESSAGE);
    char longmsg[300];
    memset(longmsg, 'a', sizeof(longmsg));
    longmsg[0] = '\0';
    longmsg[257] = '\0';
    struct buf e;
    buf_init(&e);
    b64_encode(longmsg, 260, &e);
    assert_int_equal(sasl_start(&x, SASL_PLAIN, buf_ptr(&e), buf_size(&e), &chal),
                     SASL_BAD_MESSAGE);
    buf_free(&e);
    sasl_clear(&x);
    buf_free(&chal);
}

int main(void)
{
    log_set_level(MW_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offered_only_inside_tls),
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_login),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_state_and_retry),
        cmocka_unit_test(test_deferred_answer),
        cmocka_unit_test(test_overlong_response),
        cmocka_unit_test(test_mail_auth_param),
        cmocka_unit_test(test_sasl_direct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
