/*
 * test_outbound - the outbound SMTP client state machine (smtp/outbound.h),
 * driven through scripted dialogues: what it writes, in which order, and
 * what each recipient's outcome is.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "smtp/outbound.h"

static struct smtpo *start(const char *ehlo, bool starttls)
{
    struct smtpo_opts o = { .helo = "mx.us.test", .starttls = starttls };
    struct smtpo *s = smtpo_new(&o);
    assert_int_equal(smtpo_state(s), SMTPO_WAIT);
    const char *g = "220 mx.peer.test ESMTP\r\n";
    assert_int_equal(smtpo_input(s, g, strlen(g)), strlen(g));
    assert_string_equal(buf_ptr(smtpo_output(s)), "EHLO mx.us.test\r\n");
    buf_reset(smtpo_output(s));
    smtpo_input(s, ehlo, strlen(ehlo));
    return s;
}

/* Feed text; the output written since the last call, then cleared. */
static char *feed(struct smtpo *s, const char *in)
{
    if (in != NULL)
        assert_int_equal(smtpo_input(s, in, strlen(in)), strlen(in));
    struct buf *o = smtpo_output(s);
    char *copy = strdup(buf_ptr(o));
    buf_reset(o);
    return copy;
}

static void expect_out(struct smtpo *s, const char *in, const char *want)
{
    char *got = feed(s, in);
    assert_string_equal(got, want);
    free(got);
}

static const char *const two[] = { "a@peer.test", "b@peer.test" };

static void test_pipelined(void **state)
{
    (void)state;
    struct smtpo *s = start("250-mx.peer.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
                            "250 8BITMIME\r\n", false);
    assert_int_equal(smtpo_state(s), SMTPO_READY);
    struct smtpo_msg m = { .from = "s@us.test", .rcpts = two, .nrcpt = 2,
                           .body = "Subject: x\r\n\r\n.dot\r\nend\r\n", .body_len = 25 };
    smtpo_send(s, &m);
    /* one write: MAIL, every RCPT and DATA */
    expect_out(s, NULL, "MAIL FROM:<s@us.test> SIZE=25\r\nRCPT TO:<a@peer.test>\r\n"
                        "RCPT TO:<b@peer.test>\r\nDATA\r\n");
    expect_out(s, "250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n354 go\r\n",
               "Subject: x\r\n\r\n..dot\r\nend\r\n.\r\n");
    assert_int_equal(smtpo_state(s), SMTPO_WAIT);
    assert_int_equal(smtpo_timeout(s), 600);
    expect_out(s, "250 2.0.0 queued as X\r\n", "");
    assert_int_equal(smtpo_state(s), SMTPO_SENT);
    size_t n;
    const struct smtpo_result *r = smtpo_results(s, &n);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].code, 250);
    assert_string_equal(r[0].enhanced, "2.0.0");
    assert_string_equal(r[0].text, "queued as X");
    assert_int_equal(r[1].code, 550);
    assert_string_equal(r[1].enhanced, "5.1.1");
    assert_false(r[1].local);
    smtpo_next(s);
    /* a clean end: the next message needs no RSET */
    const char *const one[] = { "c@peer.test" };
    struct smtpo_msg m2 = { .from = "", .rcpts = one, .nrcpt = 1, .body = "x\r\n", .body_len = 3 };
    smtpo_send(s, &m2);
    expect_out(s, NULL, "MAIL FROM:<> SIZE=3\r\nRCPT TO:<c@peer.test>\r\nDATA\r\n");
    smtpo_quit(s);
    smtpo_free(s);
}

static void test_one_at_a_time(void **state)
{
    (void)state;
    struct smtpo *s = start("250-mx.peer.test\r\n250 8BITMIME\r\n", false);
    struct smtpo_msg m = { .from = "s@us.test", .rcpts = two, .nrcpt = 2,
                           .body = "x\r\n", .body_len = 3 };
    smtpo_send(s, &m);
    expect_out(s, NULL, "MAIL FROM:<s@us.test>\r\n");
    expect_out(s, "250 ok\r\n", "RCPT TO:<a@peer.test>\r\n");
    expect_out(s, "451 4.3.0 later\r\n", "RCPT TO:<b@peer.test>\r\n");
    expect_out(s, "250 ok\r\n", "DATA\r\n");
    expect_out(s, "354 go\r\n", "x\r\n.\r\n");
    expect_out(s, "554 5.7.1 rejected\r\n", "");
    size_t n;
    const struct smtpo_result *r = smtpo_results(s, &n);
    assert_int_equal(r[0].code, 451);
    assert_int_equal(r[1].code, 554);
    smtpo_next(s);
    /* the refusal at the dot was a clean end; a refused MAIL is not */
    smtpo_send(s, &m);
    expect_out(s, NULL, "MAIL FROM:<s@us.test>\r\n");
    expect_out(s, "452 4.3.1 full\r\n", "");
    assert_int_equal(smtpo_state(s), SMTPO_SENT);
    r = smtpo_results(s, &n);
    assert_int_equal(r[0].code, 452);
    assert_int_equal(r[1].code, 452);
    smtpo_next(s);
    smtpo_send(s, &m);
    expect_out(s, NULL, "RSET\r\n");
    expect_out(s, "250 ok\r\n", "MAIL FROM:<s@us.test>\r\n");
    smtpo_free(s);
}

static void test_every_rcpt_refused(void **state)
{
    (void)state;
    struct smtpo *s = start("250-mx.peer.test\r\n250 PIPELINING\r\n", false);
    struct smtpo_msg m = { .from = "s@us.test", .rcpts = two, .nrcpt = 2,
                           .body = "x\r\n", .body_len = 3 };
    smtpo_send(s, &m);
    free(feed(s, NULL));
    /* RFC 2920: a 354 with no recipient accepted gets an empty message */
    expect_out(s, "250 ok\r\n550 no\r\n550 no\r\n354 go\r\n", ".\r\n");
    expect_out(s, "554 no valid recipients\r\n", "");
    size_t n;
    const struct smtpo_result *r = smtpo_results(s, &n);
    assert_int_equal(r[0].code, 550);
    assert_int_equal(r[1].code, 550);
    smtpo_free(s);
}

static void test_starttls(void **state)
{
    (void)state;
    struct smtpo *s = start("250-mx.peer.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n", true);
    expect_out(s, NULL, "STARTTLS\r\n");
    expect_out(s, "220 go ahead\r\n", "");
    assert_int_equal(smtpo_state(s), SMTPO_TLS);
    smtpo_tls_done(s);
    assert_true(smtpo_tls_active(s));
    /* what was offered in clear text is forgotten until the new EHLO */
    assert_false(smtpo_ext(s)->pipelining);
    expect_out(s, NULL, "EHLO mx.us.test\r\n");
    expect_out(s, "250-mx.peer.test\r\n250 8BITMIME\r\n", "");
    assert_int_equal(smtpo_state(s), SMTPO_READY);
    assert_true(smtpo_ext(s)->eightbitmime);
    smtpo_free(s);

    /* bytes after the 220 and before the handshake are never taken */
    s = start("250-mx.peer.test\r\n250 STARTTLS\r\n", true);
    free(feed(s, NULL));
    const char *inj = "220 go\r\n250 injected\r\n";
    smtpo_input(s, inj, strlen(inj));
    assert_int_equal(smtpo_state(s), SMTPO_CLOSED);
    assert_int_equal(smtpo_error(s), SMTPO_EPROTO);
    smtpo_free(s);

    /* a refused STARTTLS: opportunistic, the session goes on in clear */
    s = start("250-mx.peer.test\r\n250 STARTTLS\r\n", true);
    free(feed(s, NULL));
    expect_out(s, "454 4.7.0 not now\r\n", "");
    assert_int_equal(smtpo_state(s), SMTPO_READY);
    assert_false(smtpo_tls_active(s));
    smtpo_free(s);
}

static void test_refused_locally(void **state)
{
    (void)state;
    struct smtpo *s = start("250-mx.peer.test\r\n250 SIZE 10\r\n", false);
    struct smtpo_msg big = { .from = "s@us.test", .rcpts = two, .nrcpt = 2,
                             .body = "0123456789ab", .body_len = 12 };
    smtpo_send(s, &big);
    assert_int_equal(smtpo_state(s), SMTPO_SENT);
    expect_out(s, NULL, "");
    size_t n;
    const struct smtpo_result *r = smtpo_results(s, &n);
    assert_int_equal(r[0].code, 552);
    assert_string_equal(r[1].enhanced, "5.3.4");
    assert_true(r[1].local);
    smtpo_next(s);
    struct smtpo_msg eight = { .from = "s@us.test", .rcpts = two, .nrcpt = 2,
                               .body = "caf\xc3\xa9\r\n", .body_len = 7 };
    smtpo_send(s, &eight);
    r = smtpo_results(s, &n);
    assert_int_equal(r[0].code, 554);
    assert_string_equal(r[0].enhanced, "5.6.3");
    smtpo_next(s);
    const char *const u[] = { "j\xc3\xb6rg@peer.test" };
    struct smtpo_msg utf = { .from = "s@us.test", .rcpts = u, .nrcpt = 1,
                             .body = "x\r\n", .body_len = 3 };
    smtpo_send(s, &utf);
    r = smtpo_results(s, &n);
    assert_int_equal(r[0].code, 553);
    assert_string_equal(r[0].enhanced, "5.6.7");
    expect_out(s, NULL, "");
    smtpo_free(s);

    /* offered: the parameters go with MAIL */
    s = start("250-mx.peer.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n", false);
    struct smtpo_msg both = { .from = "s@us.test", .rcpts = u, .nrcpt = 1,
                              .body = "caf\xc3\xa9\r\n", .body_len = 7 };
    smtpo_send(s, &both);
    expect_out(s, NULL, "MAIL FROM:<s@us.test> BODY=8BITMIME SMTPUTF8\r\n");
    smtpo_free(s);
}

static void test_line_ends_and_dots(void **state)
{
    (void)state;
    struct smtpo *s = start("250 mx.peer.test\r\n", false);
    const char *const one[] = { "a@peer.test" };
    /* bare LF, bare CR, CR CR LF, a dot after each, no final line end */
    static const char body[] = ".a\n.b\r.c\r\r\n.d";
    struct smtpo_msg m = { .from = "s@us.test", .rcpts = one, .nrcpt = 1,
                           .body = body, .body_len = sizeof(body) - 1 };
    smtpo_send(s, &m);
    free(feed(s, NULL));
    free(feed(s, "250 ok\r\n"));
    free(feed(s, "250 ok\r\n"));
    expect_out(s, "354 go\r\n", "..a\r\n..b\r\n..c\r\n\r\n..d\r\n.\r\n");
    smtpo_free(s);
}

static void test_broken_peers(void **state)
{
    (void)state;
    /* greeting refused */
    struct smtpo_opts o = { .helo = "mx.us.test" };
    struct smtpo *s = smtpo_new(&o);
    const char *g = "554 5.3.2 no service\r\n";
    smtpo_input(s, g, strlen(g));
    assert_int_equal(smtpo_state(s), SMTPO_CLOSED);
    assert_int_equal(smtpo_error(s), SMTPO_EGREETING);
    assert_int_equal(smtpo_session_reply(s)->code, 554);
    smtpo_free(s);

    /* EHLO refused: HELO */
    s = start("502 5.5.1 what\r\n", false);
    expect_out(s, NULL, "HELO mx.us.test\r\n");
    expect_out(s, "250 hi\r\n", "");
    assert_int_equal(smtpo_state(s), SMTPO_READY);
    smtpo_free(s);

    /* closed in the middle of a reply: every open recipient is 451 */
    s = start("250-mx.peer.test\r\n250 PIPELINING\r\n", false);
    struct smtpo_msg m = { .from = "s@us.test", .rcpts = two, .nrcpt = 2,
                           .body = "x\r\n", .body_len = 3 };
    smtpo_send(s, &m);
    free(feed(s, NULL));
    free(feed(s, "250 ok\r\n550 no\r\n250-partial"));
    smtpo_input(s, "", 0);
    assert_int_equal(smtpo_state(s), SMTPO_CLOSED);
    assert_int_equal(smtpo_error(s), SMTPO_ECLOSED);
    size_t n;
    const struct smtpo_result *r = smtpo_results(s, &n);
    assert_int_equal(r[0].code, 550);
    assert_false(r[0].local);
    assert_int_equal(r[1].code, 451);
    assert_true(r[1].local);
    assert_string_equal(r[1].enhanced, "4.4.2");
    smtpo_free(s);

    /* garbage and codes that change between lines */
    s = start("250-mx.peer.test\r\n251 mixed\r\n", false);
    assert_int_equal(smtpo_state(s), SMTPO_CLOSED);
    assert_int_equal(smtpo_error(s), SMTPO_EPROTO);
    smtpo_free(s);
    s = start("hello there\r\n", false);
    assert_int_equal(smtpo_error(s), SMTPO_EPROTO);
    smtpo_free(s);

    /* control bytes in a reply are not kept */
    s = start("250 mx.peer.test\r\n", false);
    const char *const one[] = { "a@peer.test" };
    struct smtpo_msg m1 = { .from = "s@us.test", .rcpts = one, .nrcpt = 1,
                            .body = "x\r\n", .body_len = 3 };
    smtpo_send(s, &m1);
    free(feed(s, NULL));
    free(feed(s, "550 5.1.1 caf\xc3\xa9 \x1b[31m\r\n"));
    r = smtpo_results(s, &n);
    assert_int_equal(smtpo_state(s), SMTPO_CLOSED);  /* ESC is refused by the parser */
    smtpo_free(s);
    s = start("250 mx.peer.test\r\n", false);
    smtpo_send(s, &m1);
    free(feed(s, NULL));
    free(feed(s, "550 5.1.1 caf\xc3\xa9\r\n"));
    r = smtpo_results(s, &n);
    assert_string_equal(r[0].text, "caf??");
    smtpo_free(s);
}

static struct smtpo *start_opts(const struct smtpo_opts *o, const char *ehlo)
{
    struct smtpo *s = smtpo_new(o);
    const char *g = "220 relay.test ESMTP\r\n";
    smtpo_input(s, g, strlen(g));
    buf_reset(smtpo_output(s));
    smtpo_input(s, ehlo, strlen(ehlo));
    return s;
}

static void test_auth_and_required_tls(void **state)
{
    (void)state;
    struct smtpo_opts o = { .helo = "mx.us.test", .require_tls = true, .auth_user = "u@us.test",
                            .auth_pass = "s3cret" };
    /* no STARTTLS offered: leave without a word of the message or the password */
    struct smtpo *s = start_opts(&o, "250-relay.test\r\n250 AUTH PLAIN\r\n");
    assert_int_equal(smtpo_state(s), SMTPO_CLOSED);
    assert_int_equal(smtpo_error(s), SMTPO_ETLS);
    expect_out(s, NULL, "QUIT\r\n");
    smtpo_free(s);
    /* STARTTLS refused: the same */
    s = start_opts(&o, "250-relay.test\r\n250 STARTTLS\r\n");
    expect_out(s, NULL, "STARTTLS\r\n");
    expect_out(s, "454 4.7.0 no\r\n", "QUIT\r\n");
    assert_int_equal(smtpo_error(s), SMTPO_ETLS);
    smtpo_free(s);
    /* PLAIN with an initial response, after TLS */
    s = start_opts(&o, "250-relay.test\r\n250 STARTTLS\r\n");
    expect_out(s, NULL, "STARTTLS\r\n");
    expect_out(s, "220 go\r\n", "");
    smtpo_tls_done(s);
    expect_out(s, NULL, "EHLO mx.us.test\r\n");
    /* base64("\0u@us.test\0s3cret") */
    expect_out(s, "250-relay.test\r\n250 AUTH LOGIN PLAIN\r\n",
               "AUTH PLAIN AHVAdXMudGVzdABzM2NyZXQ=\r\n");
    expect_out(s, "235 2.7.0 ok\r\n", "");
    assert_int_equal(smtpo_state(s), SMTPO_READY);
    smtpo_free(s);
    /* LOGIN when PLAIN is not offered; a refusal ends the session */
    s = start_opts(&o, "250-relay.test\r\n250 STARTTLS\r\n");
    free(feed(s, NULL));
    free(feed(s, "220 go\r\n"));
    smtpo_tls_done(s);
    free(feed(s, NULL));
    expect_out(s, "250-relay.test\r\n250 AUTH LOGIN\r\n", "AUTH LOGIN\r\n");
    expect_out(s, "334 VXNlcm5hbWU6\r\n", "dUB1cy50ZXN0\r\n");
    expect_out(s, "334 UGFzc3dvcmQ6\r\n", "czNjcmV0\r\n");
    expect_out(s, "535 5.7.8 bad credentials\r\n", "QUIT\r\n");
    assert_int_equal(smtpo_error(s), SMTPO_EAUTH);
    assert_int_equal(smtpo_session_reply(s)->code, 535);
    smtpo_free(s);
    /* AUTH wanted, TLS not required but absent: no credentials in clear */
    struct smtpo_opts o2 = { .helo = "mx.us.test", .auth_user = "u", .auth_pass = "p" };
    s = start_opts(&o2, "250-relay.test\r\n250 AUTH PLAIN\r\n");
    assert_int_equal(smtpo_error(s), SMTPO_ETLS);
    expect_out(s, NULL, "QUIT\r\n");
    smtpo_free(s);
}

static void test_chunking(void **state)
{
    (void)state;
    struct smtpo *s = start("250-mx.peer.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n", false);
    const char *const one[] = { "a@peer.test" };
    static const char body[] = ".dot\r\nbare\nend";
    struct smtpo_msg m = { .from = "s@us.test", .rcpts = one, .nrcpt = 1,
                           .body = body, .body_len = sizeof(body) - 1 };
    smtpo_send(s, &m);
    /* one chunk, its length exact, nothing dot-stuffed, CRLF only */
    expect_out(s, NULL, "MAIL FROM:<s@us.test>\r\nRCPT TO:<a@peer.test>\r\n"
                        "BDAT 17 LAST\r\n.dot\r\nbare\r\nend\r\n");
    expect_out(s, "250 ok\r\n250 ok\r\n250 2.0.0 queued\r\n", "");
    size_t n;
    const struct smtpo_result *r = smtpo_results(s, &n);
    assert_int_equal(smtpo_state(s), SMTPO_SENT);
    assert_int_equal(r[0].code, 250);
    assert_string_equal(r[0].text, "queued");
    smtpo_free(s);
    /* without PIPELINING, the chunk waits for an accepted RCPT */
    s = start("250-mx.peer.test\r\n250 CHUNKING\r\n", false);
    smtpo_send(s, &m);
    expect_out(s, NULL, "MAIL FROM:<s@us.test>\r\n");
    expect_out(s, "250 ok\r\n", "RCPT TO:<a@peer.test>\r\n");
    expect_out(s, "550 5.1.1 no\r\n", "");
    assert_int_equal(smtpo_state(s), SMTPO_SENT);
    r = smtpo_results(s, &n);
    assert_int_equal(r[0].code, 550);
    smtpo_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_one_at_a_time),
        cmocka_unit_test(test_every_rcpt_refused),
        cmocka_unit_test(test_starttls),
        cmocka_unit_test(test_refused_locally),
        cmocka_unit_test(test_line_ends_and_dots),
        cmocka_unit_test(test_broken_peers),
        cmocka_unit_test(test_auth_and_required_tls),
        cmocka_unit_test(test_chunking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
