/*
 * test_session - the SMTP server state machine (smtp/session.h), driven
 * through its public API only, the Dovecot way: golden transcripts. How a
 * case is written, run and checked is in session_harness.h; here are the
 * cases: a command x state matrix, whole-session transcripts, and the
 * limits (line length, errors, message size, smuggling).
 */
#include "session_harness.h"

/* ------------------------------------------------------ common scripts */

#define EHLO "EHLO client.example\r\n"
#define MAIL "MAIL FROM:<s@sender.example>\r\n"
#define RCPT "RCPT TO:<u@localhost>\r\n"
#define TXN EHLO MAIL RCPT
#define R_TXN "220", "250", "250 2.1.0", "250 2.1.5"

/* ------------------------------------------- command x state matrix */

struct mrow {
    const char *verb;
    const char *cmd;
    const char *exp[4];   /* per state INIT, READY, MAIL, RCPT */
    int after[4];         /* state after the command */
};

static const struct mrow mrows[] = {
    { "HELO", "HELO client.example\r\n", { "250", "250", "250", "250" },
      { SMTP_ST_READY, SMTP_ST_READY, SMTP_ST_READY, SMTP_ST_READY } },
    { "EHLO", "EHLO client.example\r\n", { "250", "250", "250", "250" },
      { SMTP_ST_READY, SMTP_ST_READY, SMTP_ST_READY, SMTP_ST_READY } },
    { "MAIL", "MAIL FROM:<t@sender.example>\r\n",
      { "503 5.5.1", "250 2.1.0", "503 5.5.1", "503 5.5.1" },
      { SMTP_ST_INIT, SMTP_ST_MAIL, SMTP_ST_MAIL, SMTP_ST_RCPT } },
    { "RCPT", "RCPT TO:<v@localhost>\r\n",
      { "503 5.5.1", "503 5.5.1", "250 2.1.5", "250 2.1.5" },
      { SMTP_ST_INIT, SMTP_ST_READY, SMTP_ST_RCPT, SMTP_ST_RCPT } },
    { "DATA", "DATA\r\n", { "503 5.5.1", "503 5.5.1", "554 5.5.1", "354*" },
      { SMTP_ST_INIT, SMTP_ST_READY, SMTP_ST_MAIL, SMTP_ST_DATA } },
    /* The chunk is "RSET\r\n": when BDAT is refused, those bytes must be
     * read and dropped, never executed. */
    { "BDAT", "BDAT 6 LAST\r\nRSET\r\n",
      { "503 5.5.1", "503 5.5.1", "503 5.5.1|554 5.5.1", "250 2.0.0" },
      { SMTP_ST_INIT, SMTP_ST_READY, SMTP_ST_MAIL, SMTP_ST_READY } },
    { "RSET", "RSET\r\n", { "250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0" },
      { SMTP_ST_INIT, SMTP_ST_READY, SMTP_ST_READY, SMTP_ST_READY } },
    { "NOOP", "NOOP\r\n", { "250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0" },
      { SMTP_ST_INIT, SMTP_ST_READY, SMTP_ST_MAIL, SMTP_ST_RCPT } },
    { "QUIT", "QUIT\r\n", { "221 2.0.0", "221 2.0.0", "221 2.0.0", "221 2.0.0" },
      { SMTP_ST_CLOSED, SMTP_ST_CLOSED, SMTP_ST_CLOSED, SMTP_ST_CLOSED } },
    { "HELP", "HELP\r\n", { "214 2.0.0", "214 2.0.0", "214 2.0.0", "214 2.0.0" },
      { SMTP_ST_INIT, SMTP_ST_READY, SMTP_ST_MAIL, SMTP_ST_RCPT } },
    { "VRFY", "VRFY postmaster\r\n", { "252 2.1.5", "252 2.1.5", "252 2.1.5", "252 2.1.5" },
      { SMTP_ST_INIT, SMTP_ST_READY, SMTP_ST_MAIL, SMTP_ST_RCPT } },
    { "EXPN", "EXPN staff\r\n", { "502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1" },
      { SMTP_ST_INIT, SMTP_ST_READY, SMTP_ST_MAIL, SMTP_ST_RCPT } },
    { "unknown verb", "FROB x\r\n", { "500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2" },
      { SMTP_ST_INIT, SMTP_ST_READY, SMTP_ST_MAIL, SMTP_ST_RCPT } },
    { "lower-case noop", "noop\r\n", { "250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0" },
      { SMTP_ST_INIT, SMTP_ST_READY, SMTP_ST_MAIL, SMTP_ST_RCPT } },
};
#define NMROWS (sizeof(mrows) / sizeof(mrows[0]))

static const struct {
    const char *name;
    const char *prefix;
    const char *replies[4];
} mstates[4] = {
    { "INIT", "", { "220" } },
    { "READY", EHLO, { "220", "250" } },
    { "MAIL", EHLO MAIL, { "220", "250", "250 2.1.0" } },
    { "RCPT", TXN, { "220", "250", "250 2.1.0", "250 2.1.5" } },
};

static struct scase matrix[NMROWS * 4];
static char matrix_names[NMROWS * 4][64];

/* After each command a "HELP" probe must be answered 214 (the session is
 * in sync), except after QUIT (input ignored) and DATA (it is content). */
static void build_matrix(void)
{
    for (size_t r = 0; r < NMROWS; r++) {
        for (size_t st = 0; st < 4; st++) {
            struct scase *c = &matrix[r * 4 + st];
            memset(c, 0, sizeof(*c));
            snprintf(matrix_names[r * 4 + st], sizeof(matrix_names[0]), "%s in %s",
                     mrows[r].verb, mstates[st].name);
            c->name = matrix_names[r * 4 + st];
            c->steps[0] = (struct step){ .k = S_FEED, .p = mstates[st].prefix,
                                         .n = strlen(mstates[st].prefix) };
            c->steps[1] = (struct step){ .k = S_FEED, .p = mrows[r].cmd,
                                         .n = strlen(mrows[r].cmd) };
            c->steps[2] = (struct step){ .k = S_FEED, .p = "HELP\r\n", .n = 6 };
            size_t k = 0;
            for (; k < 4 && mstates[st].replies[k] != NULL; k++)
                c->replies[k] = mstates[st].replies[k];
            c->replies[k++] = mrows[r].exp[st];
            int after = mrows[r].after[st];
            if (after != SMTP_ST_CLOSED && after != SMTP_ST_DATA)
                c->replies[k++] = "214 2.0.0";
            c->replies[k] = NULL;
            c->closing = after == SMTP_ST_CLOSED;
            c->state = after;
            c->nmsg = (strcmp(mrows[r].verb, "BDAT") == 0 && st == 3) ? 1 : 0;
        }
    }
}

/* ----------------------------------------------------- golden scripts */

static void extra_pipelined(const struct scase *c, const struct smtp_session *s, void *vr)
{
    struct run *r = vr;
    assert_int_equal(r->nmsg, 1);
    assert_string_equal(r->msgs[0].from, "s@sender.example");
    assert_int_equal(r->msgs[0].nrcpt, 1);
    assert_string_equal(r->msgs[0].rcpt[0], "good@localhost");
    assert_int_equal(r->msgs[0].body_len, strlen("Subject: t\r\n\r\nbody\r\n"));
    assert_memory_equal(r->msgs[0].body, "Subject: t\r\n\r\nbody\r\n", r->msgs[0].body_len);
    assert_false(r->msgs[0].bdat);
}

static void extra_five_rcpts(const struct scase *c, const struct smtp_session *s, void *vr)
{
    struct run *r = vr;
    assert_int_equal(r->nmsg, 1);
    assert_int_equal(r->msgs[0].nrcpt, 5);
    for (size_t i = 0; i < 5; i++) {
        char want[32];
        snprintf(want, sizeof(want), "r%zu@localhost", i + 1);
        assert_string_equal(r->msgs[0].rcpt[i], want);
    }
}

static void extra_bdat_assembled(const struct scase *c, const struct smtp_session *s, void *vr)
{
    struct run *r = vr;
    assert_int_equal(r->nmsg, 1);
    assert_int_equal(r->msgs[0].body_len, 8);
    assert_memory_equal(r->msgs[0].body, "a\r\nb\r\ncd", 8);
    assert_true(r->msgs[0].bdat);
}

static void extra_bdat_abc(const struct scase *c, const struct smtp_session *s, void *vr)
{
    struct run *r = vr;
    assert_int_equal(r->nmsg, 1);
    assert_int_equal(r->msgs[0].body_len, 3);
    assert_memory_equal(r->msgs[0].body, "abc", 3);
}

static void extra_dotstuff(const struct scase *c, const struct smtp_session *s, void *vr)
{
    struct run *r = vr;
    static const char want[] = ".x\r\n.\r\n..\r\nend\r\n";
    assert_int_equal(r->nmsg, 1);
    if (r->msgs[0].body_len != sizeof(want) - 1 ||
        memcmp(r->msgs[0].body, want, sizeof(want) - 1) != 0)
        fail_msg("dot-stuffing: body [%s], want [%s]", r->msgs[0].body, want);
}

static void extra_two_txns(const struct scase *c, const struct smtp_session *s, void *vr)
{
    struct run *r = vr;
    assert_int_equal(r->nmsg, 2);
    assert_string_equal(r->msgs[0].from, "a@x.example");
    assert_int_equal(r->msgs[0].nrcpt, 1);
    assert_string_equal(r->msgs[0].rcpt[0], "one@localhost");
    assert_string_equal(r->msgs[1].from, "b@x.example");
    assert_int_equal(r->msgs[1].nrcpt, 1);
    assert_string_equal(r->msgs[1].rcpt[0], "two@localhost");
    assert_memory_equal(r->msgs[1].body, "second\r\n", 8);
}

static void extra_params(const struct scase *c, const struct smtp_session *s, void *vr)
{
    struct run *r = vr;
    assert_int_equal(r->nmsg, 1);
    assert_int_equal(r->msgs[0].declared_size, 100);
    assert_int_equal(r->msgs[0].body_type, SMTP_BODY_8BITMIME);
    assert_true(r->msgs[0].smtputf8);
    assert_string_equal(r->msgs[0].rcpt[0], "\xce\xb4@localhost");
}

static void extra_helo_name(const struct scase *c, const struct smtp_session *s, void *vr)
{
    const char *h = smtp_session_helo(s);
    assert_non_null(h);
    assert_string_equal(h, "client.example");
}

static void extra_null_sender(const struct scase *c, const struct smtp_session *s, void *vr)
{
    struct run *r = vr;
    assert_int_equal(r->nmsg, 1);
    assert_string_equal(r->msgs[0].from, "");
}

static const struct scase golden[] = {
    { .name = "greeting only", .replies = { "220" }, .state = SMTP_ST_INIT, .nmsg = 0 },
    { .name = "HELO name recorded", .steps = { FEED(EHLO) }, .replies = { "220", "250" },
      .state = SMTP_ST_READY, .nmsg = 0, .extra = extra_helo_name },
    { .name = "HELO without argument", .steps = { FEED("HELO\r\n") },
      .replies = { "220", "501 5.5.4" }, .state = SMTP_ST_INIT, .nmsg = 0 },
    /* The HELO/EHLO argument is a Domain or an address literal (RFC 5321
     * 4.1.1.1): what lands in the Received field must be one. */
    { .name = "EHLO with comment and quote characters", .steps = { FEED("EHLO x)(;@\"\r\n") },
      .replies = { "220", "501 5.5.4" }, .state = SMTP_ST_INIT, .nmsg = 0 },
    { .name = "EHLO with a label ending in '-'", .steps = { FEED("EHLO a-.example\r\n") },
      .replies = { "220", "501 5.5.4" }, .state = SMTP_ST_INIT, .nmsg = 0 },
    { .name = "EHLO with an empty label", .steps = { FEED("EHLO a..example\r\n") },
      .replies = { "220", "501 5.5.4" }, .state = SMTP_ST_INIT, .nmsg = 0 },
    { .name = "EHLO with a bad literal", .steps = { FEED("EHLO [1.2.3.999]\r\n") },
      .replies = { "220", "501 5.5.4" }, .state = SMTP_ST_INIT, .nmsg = 0 },
    { .name = "EHLO with an IPv4 literal", .steps = { FEED("EHLO [192.0.2.1]\r\n") },
      .replies = { "220", "250" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "EHLO with an IPv6 literal", .steps = { FEED("EHLO [IPv6:2001:db8::1]\r\n") },
      .replies = { "220", "250" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "HELO with an underscore", .steps = { FEED("HELO my_pc.example\r\n") },
      .replies = { "220", "250" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "EHLO without argument", .steps = { FEED("EHLO\r\n") },
      .replies = { "220", "501 5.5.4" }, .state = SMTP_ST_INIT, .nmsg = 0 },
    /* A refused HELO/EHLO gets exactly one reply, also after an earlier
     * successful greeting (one reply per command keeps pipelining in sync). */
    { .name = "EHLO without argument after EHLO", .steps = { FEED(EHLO "EHLO\r\nHELP\r\n") },
      .replies = { "220", "250", "501 5.5.4", "214 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "HELO without argument after HELO",
      .steps = { FEED("HELO client.example\r\nHELO\r\nHELP\r\n") },
      .replies = { "220", "250", "501 5.5.4", "214 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "HELO without argument after EHLO", .steps = { FEED(EHLO "HELO\r\nHELP\r\n") },
      .replies = { "220", "250", "501 5.5.4", "214 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "RSET with argument", .steps = { FEED(EHLO "RSET now\r\n") },
      .replies = { "220", "250", "501 5.5.4" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "VRFY without argument", .steps = { FEED(EHLO "VRFY\r\n") },
      .replies = { "220", "250", "501 5.5.4" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "QUIT then input ignored", .steps = { FEED(EHLO "QUIT\r\nNOOP\r\nHELP\r\n") },
      .replies = { "220", "250", "221 2.0.0" }, .closing = true, .state = SMTP_ST_CLOSED,
      .nmsg = 0 },
    /* MAIL FROM path and parameters */
    { .name = "bad MAIL path", .steps = { FEED(EHLO "MAIL FROM:<a@@b.example>\r\n") },
      .replies = { "220", "250", "501 5.1.7" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "unclosed MAIL path", .steps = { FEED(EHLO "MAIL FROM:<a@b.example\r\n") },
      .replies = { "220", "250", "501 5.1.7" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "MAIL path with space", .steps = { FEED(EHLO "MAIL FROM:<a b@x.example>\r\n") },
      .replies = { "220", "250", "501 5.1.7" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "null sender",
      .steps = { FEED(EHLO "MAIL FROM:<>\r\n" RCPT "DATA\r\nbounce\r\n.\r\n") },
      .replies = { "220", "250", "250 2.1.0", "250 2.1.5", "354*", "250 2.0.0" },
      .state = SMTP_ST_READY, .nmsg = 1, .extra = extra_null_sender },
    { .name = "MAIL SIZE over max",
      .steps = { FEED(EHLO "MAIL FROM:<a@x.example> SIZE=10001\r\n") },
      .replies = { "220", "250", "552 5.3.4" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "MAIL SIZE equal to max",
      .steps = { FEED(EHLO "MAIL FROM:<a@x.example> SIZE=10000\r\n") },
      .replies = { "220", "250", "250 2.1.0" }, .state = SMTP_ST_MAIL, .nmsg = 0 },
    /* size-value = 1*20DIGIT (RFC 1870): 20 digits past 2^64 is over the
     * limit, 21 digits is a syntax error. */
    { .name = "MAIL SIZE of 20 digits, past 2^64",
      .steps = { FEED(EHLO "MAIL FROM:<a@x.example> SIZE=99999999999999999999\r\n") },
      .replies = { "220", "250", "552 5.3.4" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "MAIL SIZE of 20 digits, leading zeros",
      .steps = { FEED(EHLO "MAIL FROM:<a@x.example> SIZE=00000000000000000100\r\n") },
      .replies = { "220", "250", "250 2.1.0" }, .state = SMTP_ST_MAIL, .nmsg = 0 },
    { .name = "MAIL SIZE of 21 digits",
      .steps = { FEED(EHLO "MAIL FROM:<a@x.example> SIZE=999999999999999999999\r\n") },
      .replies = { "220", "250", "501 5.5.4" }, .state = SMTP_ST_READY, .nmsg = 0 },
    /* Snum = 1*3DIGIT (RFC 5321 4.1.3): a leading zero is legal */
    { .name = "MAIL from an IPv4 literal with a leading zero",
      .steps = { FEED(EHLO "MAIL FROM:<a@[01.2.3.4]>\r\n") },
      .replies = { "220", "250", "250 2.1.0" }, .state = SMTP_ST_MAIL, .nmsg = 0 },
    { .name = "MAIL from an IPv4 literal with a 4-digit part",
      .steps = { FEED(EHLO "MAIL FROM:<a@[0001.2.3.4]>\r\n") },
      .replies = { "220", "250", "501 5.1.7" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "MAIL from an IPv4 literal over 255",
      .steps = { FEED(EHLO "MAIL FROM:<a@[1.2.3.256]>\r\n") },
      .replies = { "220", "250", "501 5.1.7" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "MAIL from an IPv4 literal with 3 parts",
      .steps = { FEED(EHLO "MAIL FROM:<a@[1.2.3]>\r\n") },
      .replies = { "220", "250", "501 5.1.7" }, .state = SMTP_ST_READY, .nmsg = 0 },
    /* AUTH is not advertised without TLS: its MAIL parameter is unknown */
    { .name = "MAIL AUTH= where AUTH is not advertised",
      .steps = { FEED(EHLO "MAIL FROM:<a@x.example> AUTH=<>\r\n") },
      .replies = { "220", "250", "555 5.5.4" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "MAIL SIZE not a number",
      .steps = { FEED(EHLO "MAIL FROM:<a@x.example> SIZE=-5\r\n") },
      .replies = { "220", "250", "501 5.5.4|555 5.5.4" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "MAIL parameter without separating space",
      .steps = { FEED(EHLO "MAIL FROM:<a@x.example>SIZE=5\r\n" RCPT) },
      .replies = { "220", "250", "501 5.5.4|501 5.1.7", "503 5.5.1" }, .state = SMTP_ST_READY,
      .nmsg = 0 },
    { .name = "unknown MAIL parameter",
      .steps = { FEED(EHLO "MAIL FROM:<a@x.example> FROB=1\r\n") },
      .replies = { "220", "250", "555 5.5.4" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "unknown RCPT parameter",
      .steps = { FEED(EHLO MAIL "RCPT TO:<u@localhost> FROB=1\r\n") },
      .replies = { "220", "250", "250 2.1.0", "555 5.5.4" }, .state = SMTP_ST_MAIL, .nmsg = 0 },
    { .name = "MAIL parameters accepted",
      .steps = { FEED(EHLO "MAIL FROM:<a@x.example> SIZE=100 BODY=8BITMIME SMTPUTF8\r\n"
                      "RCPT TO:<\xce\xb4@localhost>\r\nDATA\r\nx\r\n.\r\n") },
      .replies = { "220", "250", "250 2.1.0", "250 2.1.5", "354*", "250 2.0.0" },
      .state = SMTP_ST_READY, .nmsg = 1, .extra = extra_params },
    { .name = "BODY=7BIT accepted", .steps = { FEED(EHLO "MAIL FROM:<a@x.example> BODY=7BIT\r\n") },
      .replies = { "220", "250", "250 2.1.0" }, .state = SMTP_ST_MAIL, .nmsg = 0 },
    { .name = "non-ASCII MAIL without SMTPUTF8",
      .steps = { FEED(EHLO "MAIL FROM:<\xce\xb4@x.example>\r\n") },
      .replies = { "220", "250", "553 5.6.7" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "non-ASCII MAIL with SMTPUTF8",
      .steps = { FEED(EHLO "MAIL FROM:<\xce\xb4@x.example> SMTPUTF8\r\n") },
      .replies = { "220", "250", "250 2.1.0" }, .state = SMTP_ST_MAIL, .nmsg = 0 },
    { .name = "non-ASCII RCPT without SMTPUTF8",
      .steps = { FEED(EHLO MAIL "RCPT TO:<\xce\xb4@localhost>\r\n") },
      .replies = { "220", "250", "250 2.1.0", "553 5.6.7" }, .state = SMTP_ST_MAIL, .nmsg = 0 },
    /* RCPT TO */
    { .name = "bad RCPT path", .steps = { FEED(EHLO MAIL "RCPT TO:<u@@localhost>\r\n") },
      .replies = { "220", "250", "250 2.1.0", "501 5.1.3" }, .state = SMTP_ST_MAIL, .nmsg = 0 },
    { .name = "null RCPT path", .steps = { FEED(EHLO MAIL "RCPT TO:<>\r\n") },
      .replies = { "220", "250", "250 2.1.0", "501 5.1.3" }, .state = SMTP_ST_MAIL, .nmsg = 0 },
    { .name = "non-local RCPT", .steps = { FEED(EHLO MAIL "RCPT TO:<u@remote.example>\r\n") },
      .replies = { "220", "250", "250 2.1.0", "554 5.7.1" }, .state = SMTP_ST_MAIL, .nmsg = 0 },
    { .name = "RCPT to bare Postmaster", .steps = { FEED(EHLO MAIL "RCPT TO:<Postmaster>\r\n") },
      .replies = { "220", "250", "250 2.1.0", "250 2.1.5" }, .state = SMTP_ST_RCPT, .nmsg = 0 },
    { .name = "too many RCPT",
      .steps = { FEED(EHLO MAIL "RCPT TO:<r1@localhost>\r\nRCPT TO:<r2@localhost>\r\n"
                      "RCPT TO:<r3@localhost>\r\nRCPT TO:<r4@localhost>\r\n"
                      "RCPT TO:<r5@localhost>\r\nRCPT TO:<r6@localhost>\r\n"
                      "DATA\r\nhi\r\n.\r\n") },
      .replies = { "220", "250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "250 2.1.5", "250 2.1.5",
                   "250 2.1.5", "452 4.5.3", "354*", "250 2.0.0" },
      .state = SMTP_ST_READY, .nmsg = 1, .extra = extra_five_rcpts },
    /* transaction scopes */
    { .name = "RCPT after rejected MAIL path",
      .steps = { FEED(EHLO "MAIL FROM:<a@@b>\r\n" RCPT "DATA\r\n") },
      .replies = { "220", "250", "501 5.1.7", "503 5.5.1", "503 5.5.1" },
      .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "RCPT after MAIL refused by policy",
      .steps = { FEED(EHLO "MAIL FROM:<reject@x.example>\r\n" RCPT) },
      .replies = { "220", "250", "550 5.7.1", "503 5.5.1" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "RSET clears the transaction", .steps = { FEED(TXN "RSET\r\n" RCPT "DATA\r\n") },
      .replies = { R_TXN, "250 2.0.0", "503 5.5.1", "503 5.5.1" }, .state = SMTP_ST_READY,
      .nmsg = 0 },
    { .name = "EHLO clears the transaction", .steps = { FEED(TXN EHLO RCPT) },
      .replies = { R_TXN, "250", "503 5.5.1" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "two transactions",
      .steps = { FEED(EHLO "MAIL FROM:<a@x.example>\r\nRCPT TO:<one@localhost>\r\n"
                      "DATA\r\nfirst\r\n.\r\n"
                      "MAIL FROM:<b@x.example>\r\nRCPT TO:<two@localhost>\r\n"
                      "DATA\r\nsecond\r\n.\r\n") },
      .replies = { "220", "250", "250 2.1.0", "250 2.1.5", "354*", "250 2.0.0", "250 2.1.0",
                   "250 2.1.5", "354*", "250 2.0.0" },
      .state = SMTP_ST_READY, .nmsg = 2, .extra = extra_two_txns },
    { .name = "DATA with only refused recipients",
      .steps = { FEED(EHLO MAIL "RCPT TO:<u@remote.example>\r\nDATA\r\n") },
      .replies = { "220", "250", "250 2.1.0", "554 5.7.1", "554 5.5.1" }, .state = SMTP_ST_MAIL,
      .nmsg = 0 },
    /* pipelining */
    { .name = "pipelined batch",
      .steps = { FEED("EHLO client.example\r\nMAIL FROM:<s@sender.example>\r\n"
                      "RCPT TO:<bad@remote.example>\r\nRCPT TO:<good@localhost>\r\nDATA\r\n"
                      "Subject: t\r\n\r\nbody\r\n.\r\nQUIT\r\n") },
      .replies = { "220", "250", "250 2.1.0", "554 5.7.1", "250 2.1.5", "354*", "250 2.0.0",
                   "221 2.0.0" },
      .closing = true, .state = SMTP_ST_CLOSED, .nmsg = 1, .extra = extra_pipelined },
    /* line policy */
    { .name = "NUL in a command", .steps = { FEED(EHLO "NO\0OP\r\nHELP\r\n") },
      .replies = { "220", "250", "500 5.5.2", "214 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 0 },
    /* A bare LF ends the command it follows, which is refused unexecuted;
     * what follows is the next command. */
    { .name = "bare LF ending a command", .steps = { FEED(EHLO "NOOP\nRSET\r\nHELP\r\n") },
      .replies = { "220", "250", "500 5.5.2", "250 2.0.0", "214 2.0.0" },
      .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "bare LF at the end of input", .steps = { FEED(EHLO "NOOP\n") },
      .replies = { "220", "250", "500 5.5.2" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "bare CR ends no command", .steps = { FEED(EHLO "NOOP\rRSET\r\nHELP\r\n") },
      .replies = { "220", "250", "500 5.5.2", "214 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "MAIL ended by bare LF is not executed",
      .steps = { FEED(EHLO "MAIL FROM:<a@x.example>\n" RCPT) },
      .replies = { "220", "250", "500 5.5.2", "503 5.5.1" }, .state = SMTP_ST_READY, .nmsg = 0 },
    /* A bare CR does not end a line: the whole line up to CRLF is refused. */
    { .name = "empty line", .steps = { FEED(EHLO "\r\nHELP\r\n") },
      .replies = { "220", "250", "500 5.5.2|500 5.5.1|501 5.5.2", "214 2.0.0" },
      .state = SMTP_ST_READY, .nmsg = 0 },
    /* BDAT */
    { .name = "BDAT chunks assembled",
      .steps = { FEED(TXN "BDAT 5\r\na\r\nb\rBDAT 3 LAST\r\n\ncdHELP\r\n") },
      .replies = { R_TXN, "250*", "250 2.0.0", "214 2.0.0" }, .state = SMTP_ST_READY,
      .nmsg = 1, .extra = extra_bdat_assembled },
    { .name = "BDAT without MAIL consumes the chunk",
      .steps = { FEED(EHLO "BDAT 6\r\nRSET\r\nHELP\r\n") },
      .replies = { "220", "250", "503 5.5.1", "214 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "BDAT before HELO consumes the chunk",
      .steps = { FEED("BDAT 12 LAST\r\nQUIT\r\nQUIT\r\nHELP\r\n") },
      .replies = { "220", "503 5.5.1", "214 2.0.0" }, .state = SMTP_ST_INIT, .nmsg = 0 },
    { .name = "DATA after BDAT",
      .steps = { FEED(TXN "BDAT 3\r\nabcDATA\r\nBDAT 0 LAST\r\n") },
      .replies = { R_TXN, "250*", "503 5.5.1", "250 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 1,
      .extra = extra_bdat_abc },
    /* A BDAT whose size cannot be read leaves the length of the chunk that
     * follows unknown: the only safe course is 501 and closing, so that
     * chunk bytes are never run as commands (the HELP must not be answered). */
    /* A BDAT whose size cannot be read cannot be skipped: a deliberate
     * close, so 421 (RFC 5321 3.8). */
    { .name = "BDAT without size", .steps = { FEED(TXN "BDAT\r\nHELP\r\n") },
      .replies = { R_TXN, "421 4.5.4" }, .closing = true, .state = SMTP_ST_CLOSED, .nmsg = 0 },
    { .name = "BDAT with bad size", .steps = { FEED(TXN "BDAT x1\r\nHELP\r\n") },
      .replies = { R_TXN, "421 4.5.4" }, .closing = true, .state = SMTP_ST_CLOSED, .nmsg = 0 },
    { .name = "BDAT size past 2^64",
      .steps = { FEED(TXN "BDAT 99999999999999999999 LAST\r\nHELP\r\n") },
      .replies = { R_TXN, "421 4.5.4" }, .closing = true, .state = SMTP_ST_CLOSED, .nmsg = 0 },
    /* The size is known: the chunk is skipped, refused with 501, and the
     * session goes on. */
    { .name = "BDAT with a bad end marker before HELO",
      .steps = { FEED("BDAT 6 FIRST\r\nHELP\r\nNOOP\r\n") },
      .replies = { "220", "501 5.5.4", "250 2.0.0" }, .state = SMTP_ST_INIT, .nmsg = 0 },
    { .name = "BDAT with a bad end marker",
      .steps = { FEED(TXN "BDAT 3 LASTLY\r\nabcNOOP\r\n") },
      .replies = { R_TXN, "501 5.5.4", "250 2.0.0" }, .state = SMTP_ST_RCPT, .nmsg = 0 },
    /* chunk-size = 1*DIGIT (RFC 3030): leading zeros; spaces tolerated */
    { .name = "BDAT two spaces before LAST",
      .steps = { FEED(TXN "BDAT 3  LAST\r\nabc") },
      .replies = { R_TXN, "250 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 1 },
    { .name = "BDAT trailing space after LAST",
      .steps = { FEED(TXN "BDAT 3 LAST \r\nabc") },
      .replies = { R_TXN, "250 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 1 },
    { .name = "BDAT size with 25 digits of leading zeros",
      .steps = { FEED(TXN "BDAT 0000000000000000000000003 LAST\r\nabc") },
      .replies = { R_TXN, "250 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 1 },
    { .name = "BDAT size 0 with leading zeros",
      .steps = { FEED(TXN "BDAT 3\r\nabcBDAT 000 LAST\r\n") },
      .replies = { R_TXN, "250 2.0.0", "250 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 1 },
    { .name = "bare LF in BDAT", .steps = { FEED(TXN "BDAT 4 LAST\r\na\nbcHELP\r\n") },
      .replies = { R_TXN, "550 5.6.0", "214 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "bare CR in BDAT", .steps = { FEED(TXN "BDAT 4 LAST\r\na\rbcHELP\r\n") },
      .replies = { R_TXN, "550 5.6.0", "214 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "CR ending BDAT LAST", .steps = { FEED(TXN "BDAT 4 LAST\r\nabc\rHELP\r\n") },
      .replies = { R_TXN, "550 5.6.0", "214 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "NUL in BDAT", .steps = { FEED(TXN "BDAT 4 LAST\r\na\0bcHELP\r\n") },
      .replies = { R_TXN, "550 5.6.0", "214 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 0 },
    /* DATA content */
    { .name = "dot-stuffing undone",
      .steps = { FEED(TXN "DATA\r\n..x\r\n..\r\n...\r\nend\r\n.\r\n") },
      .replies = { R_TXN, "354*", "250 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 1,
      .extra = extra_dotstuff },
    { .name = "NUL in DATA", .steps = { FEED(TXN "DATA\r\nhel\0lo\r\n.\r\nHELP\r\n") },
      .replies = { R_TXN, "354*", "550 5.6.0", "214 2.0.0" }, .state = SMTP_ST_READY,
      .nmsg = 0 },
    { .name = "transaction over after refused DATA",
      .steps = { FEED(TXN "DATA\r\nhel\0lo\r\n.\r\nRCPT TO:<u@localhost>\r\n" MAIL) },
      .replies = { R_TXN, "354*", "550 5.6.0", "503 5.5.1", "250 2.1.0" },
      .state = SMTP_ST_MAIL, .nmsg = 0 },
    /* shutdown and timeout */
    { .name = "shutdown before HELO", .steps = { SHUTDOWN, FEED("NOOP\r\n") },
      .replies = { "220", "421 4.3.2" }, .closing = true, .state = SMTP_ST_CLOSED, .nmsg = 0 },
    { .name = "shutdown while idle", .steps = { FEED(EHLO), SHUTDOWN, FEED("NOOP\r\n") },
      .replies = { "220", "250", "421 4.3.2" }, .closing = true, .state = SMTP_ST_CLOSED,
      .nmsg = 0 },
    { .name = "shutdown in a transaction", .steps = { FEED(TXN), SHUTDOWN },
      .replies = { R_TXN, "421 4.3.2" }, .closing = true, .state = SMTP_ST_CLOSED, .nmsg = 0 },
    { .name = "shutdown while MESSAGE answer pending",
      .defer = DEFER(SMTP_ASK_MESSAGE),
      .steps = { FEED(TXN "DATA\r\nhello\r\n.\r\n"), WAITING(true), NREPLIES(5), SHUTDOWN,
                 NREPLIES(5), WAITING(true), ANSWER(250, "2.0.0", "Ok: queued as X") },
      .replies = { R_TXN, "354*", "250 2.0.0", "421 4.3.2" }, .closing = true,
      .state = SMTP_ST_CLOSED, .nmsg = 1 },
    { .name = "timeout", .steps = { FEED(EHLO), TIMEOUT, FEED("NOOP\r\n") },
      .replies = { "220", "250", "421 4.4.2" }, .closing = true, .state = SMTP_ST_CLOSED,
      .nmsg = 0 },
    /* While the daemon owes an answer the client is not the idle one: the
     * timeout changes nothing and the answer still goes out. */
    { .name = "timeout while an answer is pending",
      .defer = DEFER(SMTP_ASK_MESSAGE),
      .steps = { FEED(TXN "DATA\r\nhello\r\n.\r\nNOOP\r\n"), NREPLIES(5), TIMEOUT,
                 NREPLIES(5), ANSWER(250, "2.0.0", "Ok: queued as X") },
      .replies = { R_TXN, "354*", "250 2.0.0", "250 2.0.0" }, .state = SMTP_ST_READY,
      .nmsg = 1 },
    { .name = "timeout before HELO", .steps = { TIMEOUT },
      .replies = { "220", "421 4.4.2" }, .closing = true, .state = SMTP_ST_CLOSED, .nmsg = 0 },
    /* protocol names for the Received header */
    { .name = "protocol SMTP", .steps = { FEED("HELO client.example\r\n"), PROTO("SMTP") },
      .replies = { "220", "250" }, .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "protocol ESMTP", .steps = { FEED(EHLO), PROTO("ESMTP"), FEED(MAIL), PROTO("ESMTP") },
      .replies = { "220", "250", "250 2.1.0" }, .state = SMTP_ST_MAIL, .nmsg = 0 },
    { .name = "protocol UTF8SMTP",
      .steps = { FEED(EHLO), PROTO("ESMTP"), FEED("MAIL FROM:<s@x.example> SMTPUTF8\r\n"),
                 PROTO("UTF8SMTP") },
      .replies = { "220", "250", "250 2.1.0" }, .state = SMTP_ST_MAIL, .nmsg = 0 },
    /* deferred answers: pipelined input is held and replies stay in order */
    { .name = "deferred answers keep order",
      .defer = DEFER(SMTP_ASK_MAIL) | DEFER(SMTP_ASK_RCPT) | DEFER(SMTP_ASK_MESSAGE),
      .steps = { FEED(EHLO "MAIL FROM:<a@x.example>\r\nRCPT TO:<u@localhost>\r\n"
                      "RCPT TO:<v@localhost>\r\nNOOP\r\nDATA\r\nbody\r\n.\r\nQUIT\r\n"),
                 NREPLIES(2), WAITING(true),
                 ANSWER(250, "2.1.0", "Ok"), NREPLIES(3), WAITING(true),
                 ANSWER(250, "2.1.5", "Ok"), NREPLIES(4), WAITING(true),
                 ANSWER(550, "5.1.1", "No such user"), NREPLIES(7), WAITING(true),
                 ANSWER(250, "2.0.0", "Ok: queued as X") },
      .replies = { "220", "250", "250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.0.0", "354*",
                   "250 2.0.0", "221 2.0.0" },
      .closing = true, .state = SMTP_ST_CLOSED, .nmsg = 1 },
    { .name = "deferred MAIL refusal",
      .defer = DEFER(SMTP_ASK_MAIL),
      .steps = { FEED(EHLO MAIL RCPT "NOOP\r\n"), NREPLIES(2), WAITING(true),
                 ANSWER(451, "4.3.0", "Try later"), WAITING(false) },
      .replies = { "220", "250", "451 4.3.0", "503 5.5.1", "250 2.0.0" },
      .state = SMTP_ST_READY, .nmsg = 0 },
    { .name = "deferred MESSAGE refusal",
      .defer = DEFER(SMTP_ASK_MESSAGE),
      .steps = { FEED(TXN "DATA\r\nx\r\n.\r\n" RCPT), NREPLIES(5), WAITING(true),
                 ANSWER(451, "4.3.0", "Disk full"), WAITING(false) },
      .replies = { R_TXN, "354*", "451 4.3.0", "503 5.5.1" }, .state = SMTP_ST_READY,
      .nmsg = 1 },
};
#define NGOLDEN (sizeof(golden) / sizeof(golden[0]))

/* --------------------------------------------------- built at run time */

/* Content lines of 98 'x' + CRLF: n lines = n*100 octets of content. */
static char *content_lines(size_t nlines, size_t extra, size_t *len)
{
    size_t n = nlines * 100 + extra + 16;
    char *p = malloc(n);
    assert_non_null(p);
    size_t o = 0;
    for (size_t i = 0; i < nlines; i++) {
        memset(p + o, 'x', 98);
        p[o + 98] = '\r';
        p[o + 99] = '\n';
        o += 100;
    }
    if (extra) {
        memset(p + o, 'y', extra);
        o += extra;
        p[o++] = '\r';
        p[o++] = '\n';
    }
    *len = o;
    return p;
}

static void extra_exact_max(const struct scase *c, const struct smtp_session *s, void *vr)
{
    struct run *r = vr;
    assert_int_equal(r->nmsg, 1);
    assert_int_equal(r->msgs[0].body_len, 10000);
}

/* DATA content of exactly max_message octets is accepted; one more octet
 * is refused with 552 5.3.4 after the terminator, and the session goes on. */
static void test_message_size(void **state)
{
    size_t n_ok, n_big;
    char *ok = track(content_lines(100, 0, &n_ok));   /* 100 * 100 = 10000 */
    char *big = track(content_lines(99, 99, &n_big)); /* 9900 + 99 + 2 = 10001 */
    assert_int_equal(n_ok, 10000);
    assert_int_equal(n_big, 10001);

    struct scase c_ok = {
        .name = "message of exactly max_message",
        .steps = { FEED(TXN "DATA\r\n"), { .k = S_FEED, .p = ok, .n = n_ok },
                   FEED(".\r\nHELP\r\n") },
        .replies = { R_TXN, "354*", "250 2.0.0", "214 2.0.0" },
        .state = SMTP_ST_READY, .nmsg = 1, .extra = extra_exact_max,
    };
    run_case(&c_ok, false);

    struct scase c_big = {
        .name = "message one octet over max_message",
        .steps = { FEED(TXN "DATA\r\n"), { .k = S_FEED, .p = big, .n = n_big },
                   FEED(".\r\nHELP\r\n" MAIL) },
        .replies = { R_TXN, "354*", "552 5.3.4", "214 2.0.0", "250 2.1.0" },
        .state = SMTP_ST_MAIL, .nmsg = 0,
    };
    run_case(&c_big, false);

    struct scase c_far = {
        .name = "message far over max_message, then a new transaction",
        .steps = { FEED(TXN "DATA\r\n"), { .k = S_FEED, .p = big, .n = n_big },
                   { .k = S_FEED, .p = big, .n = n_big }, { .k = S_FEED, .p = big, .n = n_big },
                   FEED(".\r\n" TXN "DATA\r\nok\r\n.\r\n") },
        .replies = { R_TXN, "354*", "552 5.3.4", "250", "250 2.1.0", "250 2.1.5", "354*",
                     "250 2.0.0" },
        .state = SMTP_ST_READY, .nmsg = 1,
    };
    run_case(&c_far, false);
    untrack_free(ok);
    untrack_free(big);
}

/* BDAT over max_message: the chunk is read and dropped, 552 5.3.4. */
static void test_bdat_size(void **state)
{
    char *chunk = track(malloc(10001));
    assert_non_null(chunk);
    memset(chunk, 'x', 10001);

    struct scase one = {
        .name = "BDAT chunk over max_message",
        .steps = { FEED(TXN "BDAT 10001 LAST\r\n"), { .k = S_FEED, .p = chunk, .n = 10001 },
                   FEED("HELP\r\n") },
        .replies = { R_TXN, "552 5.3.4", "214 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 0,
    };
    run_case(&one, false);

    struct scase two = {
        .name = "BDAT chunks summing over max_message",
        .steps = { FEED(TXN "BDAT 6000\r\n"), { .k = S_FEED, .p = chunk, .n = 6000 },
                   FEED("BDAT 5000 LAST\r\n"), { .k = S_FEED, .p = chunk, .n = 5000 },
                   FEED("HELP\r\n") },
        .replies = { R_TXN, "250*", "552 5.3.4", "214 2.0.0" }, .state = SMTP_ST_READY,
        .nmsg = 0,
    };
    run_case(&two, false);

    struct scase exact = {
        .name = "BDAT of exactly max_message",
        .steps = { FEED(TXN "BDAT 10000 LAST\r\n"), { .k = S_FEED, .p = chunk, .n = 10000 },
                   FEED("HELP\r\n") },
        .replies = { R_TXN, "250 2.0.0", "214 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 1,
    };
    run_case(&exact, false);
    untrack_free(chunk);
}

/* Command line length: max_line counts the CRLF. 512 is fine, 513 is
 * refused with 500 5.5.2 and the session continues in sync. */
static void test_line_length(void **state)
{
    static char line512[600], line513[600], line5000[6000];
    memcpy(line512, "NOOP ", 5);
    memset(line512 + 5, 'a', 505);
    memcpy(line512 + 510, "\r\n", 2);
    memcpy(line513, "NOOP ", 5);
    memset(line513 + 5, 'a', 506);
    memcpy(line513 + 511, "\r\n", 2);
    memcpy(line5000, "NOOP ", 5);
    memset(line5000 + 5, 'a', 4993);
    memcpy(line5000 + 4998, "\r\n", 2);

    struct scase c512 = {
        .name = "512-octet command line",
        .steps = { FEED(EHLO), { .k = S_FEED, .p = line512, .n = 512 }, FEED("HELP\r\n") },
        .replies = { "220", "250", "250 2.0.0", "214 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 0,
    };
    run_case(&c512, false);
    struct scase c513 = {
        .name = "513-octet command line",
        .steps = { FEED(EHLO), { .k = S_FEED, .p = line513, .n = 513 }, FEED("HELP\r\n") },
        .replies = { "220", "250", "500 5.5.2", "214 2.0.0" }, .state = SMTP_ST_READY, .nmsg = 0,
    };
    run_case(&c513, false);
    struct scase c5000 = {
        .name = "5000-octet command line in a transaction",
        .steps = { FEED(TXN), { .k = S_FEED, .p = line5000, .n = 5000 },
                   FEED("RCPT TO:<w@localhost>\r\nHELP\r\n") },
        .replies = { R_TXN, "500 5.5.2", "250 2.1.5", "214 2.0.0" }, .state = SMTP_ST_RCPT,
        .nmsg = 0,
    };
    run_case(&c5000, false);
}

/* An endless line must not be buffered without bound: the session drops
 * what it cannot use, or a daemon doing flow control on the backlog would
 * wait forever for a CRLF that never comes. */
static void test_overlong_not_buffered(void **state)
{
    struct scase c = { .name = "endless line" };
    struct run *r = run_start(&c, "1000-byte pieces");
    char x[1000];
    memset(x, 'x', sizeof(x));
    for (int i = 0; i < 100; i++) {
        smtp_session_feed(r->s, x, sizeof(x));
        drain(r);
    }
    size_t backlog = smtp_session_backlog(r->s);
    if (backlog > 2 * params.max_line)
        fail_msg("100000 octets without CRLF: backlog %zu (max_line %zu)", backlog,
                 params.max_line);
    smtp_session_feed(r->s, "\r\nHELP\r\n", 8);
    drain(r);
    static const char *const exp[] = { "220", "500 5.5.2", "214 2.0.0", NULL };
    check_replies(r, exp);
    run_free(r);
}

/* max_errors: four errors are tolerated; the fifth closes the session with
 * 421 4.7.0 (its own 500 may or may not precede the 421). */
static void test_max_errors(void **state)
{
    struct scase four = {
        .name = "four errors tolerated",
        .steps = { FEED(EHLO "FROB\r\nFROB\r\nFROB\r\nFROB\r\nNOOP\r\n") },
        .replies = { "220", "250", "500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2",
                     "250 2.0.0" },
        .state = SMTP_ST_READY, .nmsg = 0,
    };
    run_case(&four, false);

    struct scase five_a = {
        .name = "five errors (500 then 421)",
        .steps = { FEED(EHLO "FROB\r\nFROB\r\nFROB\r\nFROB\r\nFROB\r\nNOOP\r\nFROB\r\n") },
        .replies = { "220", "250", "500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2",
                     "500 5.5.2", "421 4.7.0" },
        .closing = true, .state = SMTP_ST_CLOSED, .nmsg = 0,
    };
    struct scase five_b = five_a;
    five_b.name = "five errors (421 instead of the fifth 500)";
    five_b.replies[6] = "421 4.7.0";
    five_b.replies[7] = NULL;

    /* Decide which shape the implementation uses from a whole-feed run,
     * then hold all three feeding modes to it. */
    struct run *probe = run_start(&five_a, "probe");
    run_steps(probe, five_a.steps, 0);
    struct reply rep[64];
    size_t n = parse_replies(probe, rep, 64);
    run_free(probe);
    run_case(n == 8 ? &five_a : &five_b, false);

    /* Errors of every kind count, not only unknown verbs. */
    struct scase mixed = {
        .name = "mixed errors",
        .steps = { FEED(EHLO "RCPT TO:<u@localhost>\r\nFROB\r\nMAIL FROM:<a@@b>\r\nHELO\r\n"
                        "NO\0OP\r\nNOOP\r\nNOOP\r\n") },
        .state = SMTP_ST_CLOSED, .closing = true, .nmsg = 0,
    };
    const char *ra[] = { "220", "250", "503 5.5.1", "500 5.5.2", "501 5.1.7", "501 5.5.4",
                         "500 5.5.2", "421 4.7.0", NULL };
    const char *rb[] = { "220", "250", "503 5.5.1", "500 5.5.2", "501 5.1.7", "501 5.5.4",
                         "421 4.7.0", NULL };
    const char **use = n == 8 ? ra : rb;
    for (size_t i = 0; use[i]; i++)
        mixed.replies[i] = use[i];
    run_case(&mixed, false);
}

/* SMTP smuggling: each of the five bare-LF/CR end-of-data sequences from
 * the 2023 research, followed by a smuggled transaction, then the real
 * <CRLF>.<CRLF>. Exactly one reply (550 5.6.0) for the whole content, no
 * MESSAGE ask, no MAIL/RCPT ask for the smuggled commands, no reply to
 * them; the session stays in sync (QUIT gets 221). */
static void test_smuggling(void **state)
{
    static const struct {
        const char *name;
        const char *seq;
    } variants[] = {
        { "<LF>.<LF>", "\n.\n" },
        { "<LF>.<CR><LF>", "\n.\r\n" },
        { "<CR><LF>.<LF>", "\r\n.\n" },
        { "<CR>.<CR>", "\r.\r" },
        { "<CR><LF>.<CR>", "\r\n.\r" },
    };
    static const char smuggled[] =
        "MAIL FROM:<evil@x>\r\nRCPT TO:<a@localhost>\r\nDATA\r\nsmuggled\r\n";
    for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
        char content[512];
        int n = snprintf(content, sizeof(content), "Subject: hi\r\n\r\nhello%s%s\r\n.\r\nQUIT\r\n",
                         variants[v].seq, smuggled);
        char name[80];
        snprintf(name, sizeof(name), "smuggling %s", variants[v].name);
        struct scase c = {
            .name = name,
            .steps = { FEED(TXN "DATA\r\n"), { .k = S_FEED, .p = content, .n = (size_t)n } },
            .replies = { R_TXN, "354*", "550 5.6.0", "221 2.0.0" },
            .closing = true, .state = SMTP_ST_CLOSED, .nmsg = 0,
        };
        struct run *r = run_case(&c, true);
        assert_int_equal(r->nask[SMTP_ASK_MAIL], 1);
        assert_int_equal(r->nask[SMTP_ASK_RCPT], 1);
        assert_int_equal(r->nask[SMTP_ASK_MESSAGE], 0);
        run_free(r);
    }
}

/* ------------------------------------------ greeting and EHLO contents */

static void test_greeting_and_ehlo(void **state)
{
    struct scase c = { .name = "EHLO keywords", .steps = { FEED(EHLO "HELO client.example\r\n") },
                       .replies = { "220", "250", "250" }, .state = SMTP_ST_READY, .nmsg = 0 };
    struct run *r = run_case(&c, true);
    const char *p = buf_ptr(&r->out);
    /* greeting: "220 mx.test ..." (domain first, RFC 5321 4.3.1), no enhanced code */
    if (strncmp(p, "220 mx.test ", 12) != 0 && strncmp(p, "220 mx.test\r\n", 13) != 0 &&
        strncmp(p, "220-mx.test", 11) != 0)
        fail_msg("greeting does not start with the hostname: %.40s", p);

    /* EHLO lines */
    const char *ehlo = strstr(p, "\r\n250");
    assert_non_null(ehlo);
    ehlo += 2;
    if (strncmp(ehlo, "250-mx.test", 11) != 0)
        fail_msg("EHLO reply does not start with 250-mx.test: %.40s", ehlo);
    static const char *const want[] = { "PIPELINING", "SIZE 10000", "8BITMIME", "SMTPUTF8",
                                        "ENHANCEDSTATUSCODES", "CHUNKING" };
    bool seen[6] = { false };
    const char *l = ehlo;
    bool last = false;
    size_t nlines = 0;
    while (!last) {
        const char *e = strstr(l, "\r\n");
        assert_non_null(e);
        last = l[3] == ' ';
        nlines++;
        if (nlines > 1) {
            const char *kw = l + 4;
            size_t kn = (size_t)(e - kw);
            for (size_t i = 0; i < 6; i++)
                if (kn == strlen(want[i]) && strncasecmp(kw, want[i], kn) == 0)
                    seen[i] = true;
        }
        l = e + 2;
    }
    for (size_t i = 0; i < 6; i++)
        if (!seen[i])
            fail_msg("EHLO does not advertise %s", want[i]);
    /* HELO reply: "250 mx.test" */
    if (strncmp(l, "250 mx.test", 11) != 0)
        fail_msg("HELO reply does not start with 250 mx.test: %.40s", l);
    run_free(r);
}

static void test_state_names(void **state)
{
    for (int st = 0; st < SMTP_NSTATES; st++) {
        const char *n = smtp_state_name((enum smtp_state)st);
        assert_non_null(n);
        assert_true(strlen(n) > 0);
        for (int k = 0; k < st; k++)
            assert_string_not_equal(n, smtp_state_name((enum smtp_state)k));
    }
}

/* ---------------------------------------------------------------- main */

int main(void)
{
    /* The session logs every refusal; keep the test output readable. */
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0)
        log_set_fd(devnull);
    build_matrix();
    static struct CMUnitTest tests[NMROWS * 4 + NGOLDEN + 16];
    size_t n = 0;
    for (size_t i = 0; i < NMROWS * 4; i++)
        tests[n++] = (struct CMUnitTest){ matrix[i].name, test_scase, NULL, NULL, &matrix[i] };
    for (size_t i = 0; i < NGOLDEN; i++)
        tests[n++] = (struct CMUnitTest){ golden[i].name, test_scase, NULL, NULL,
                                          (void *)&golden[i] };
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_greeting_and_ehlo);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_line_length);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_overlong_not_buffered);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_max_errors);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_message_size);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_bdat_size);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_smuggling);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_state_names);
    return _cmocka_run_group_tests("session", tests, n, NULL, free_leftovers);
}
