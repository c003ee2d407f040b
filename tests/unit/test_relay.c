/*
 * test_relay - the relay decision (policy/relay.h) and the CIDR matching
 * it relies on (core/cidr.h).
 *
 * The configuration is loaded from a file like the daemon's, with
 * local_domains { localhost, example.com } and relay_networks
 * { 192.0.2.0/24, 2001:db8::/32 }. Recipients go through the real path
 * parser (ADDR_ALLOW_POSTMASTER, as at RCPT), then every recipient is
 * judged for every client in a fixed list: a local or bad-local verdict
 * must not depend on the client; a remote recipient is allowed exactly
 * for authenticated clients and clients inside relay_networks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "core/cidr.h"
#include "msg/addr.h"
#include "policy/relay.h"

static const char conf_text[] = "local_domains = { \"localhost\", \"example.com\" }\n"
                                "relay_networks = { \"192.0.2.0/24\", \"2001:db8::/32\" }\n"
                                "listen smtp { port = 2525 }\n";

static int setup_conf(void **state)
{
    char path[] = "/tmp/mwrelay.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, conf_text, strlen(conf_text));
    close(fd);
    struct mw_config *c = NULL;
    struct buf err;
    buf_init(&err);
    int r = (w == (ssize_t)strlen(conf_text)) ? conf_load(path, &c, &err) : -1;
    if (r != 0)
        fprintf(stderr, "conf_load: %s\n", buf_size(&err) ? buf_ptr(&err) : "write failed");
    buf_free(&err);
    unlink(path);
    *state = c;
    return r;
}

static int teardown_conf(void **state)
{
    conf_unref(*state);
    return 0;
}

/* ---- clients ---- */

struct client_case {
    struct relay_client cl;
    bool may_relay;
    const char *why;  /* for a remote recipient */
};

static const struct client_case clients[] = {
    { { NULL, false }, false, "not a local domain" },
    { { "198.51.100.1", false }, false, "not a local domain" },
    { { "198.51.100.1", true }, true, "authenticated" },
    { { NULL, true }, true, "authenticated" },
    { { "192.0.2.7", false }, true, "relay_networks" },
    { { "192.0.2.7", true }, true, "authenticated" },
    { { "2001:db8::5", false }, true, "relay_networks" },
    { { "::ffff:192.0.2.9", false }, true, "relay_networks" },
    { { "192.0.3.1", false }, false, "not a local domain" },
    { { "192.0.1.255", false }, false, "not a local domain" },
    { { "2001:db9::1", false }, false, "not a local domain" },
    { { "::ffff:198.51.100.1", false }, false, "not a local domain" },
    { { "::1", false }, false, "not a local domain" },
    { { "127.0.0.1", false }, false, "not a local domain" },
    { { "not an address", false }, false, "not a local domain" },
    { { "", false }, false, "not a local domain" },
};

/* ---- recipients ---- */

enum kind { K_LOCAL, K_BAD_LOCAL, K_REMOTE, K_REFUSED };

struct rcpt_case {
    const char *in;
    enum kind kind;
    const char *why;  /* for K_LOCAL and K_BAD_LOCAL */
};

#define ROUTING "routing characters in local part"

static const struct rcpt_case rcpts[] = {
    /* local */
    { "<user@localhost>", K_LOCAL, "local domain" },
    { "<user@example.com>", K_LOCAL, "local domain" },
    { "<user@EXAMPLE.COM>", K_LOCAL, "local domain" },
    { "<User.Name@LocalHost>", K_LOCAL, "local domain" },
    { "<\"plain quoted\"@localhost>", K_LOCAL, "local domain" },
    { "<user+tag@example.com>", K_LOCAL, "local domain" },
    { "<Postmaster>", K_LOCAL, "postmaster" },
    { "<postmaster>", K_LOCAL, "postmaster" },
    { "<POSTMASTER>", K_LOCAL, "postmaster" },
    { "<postmaster@example.com>", K_LOCAL, "local domain" },
    /* the route is dropped; the final mailbox is local */
    { "<@other.example,@relay.example:user@localhost>", K_LOCAL, "local domain" },
    /* routing in the local part of a local domain: refused for everyone */
    { "<user%other.example@localhost>", K_BAD_LOCAL, ROUTING },
    { "<user%other.example@EXAMPLE.COM>", K_BAD_LOCAL, ROUTING },
    { "<other.example!user@localhost>", K_BAD_LOCAL, ROUTING },
    { "<\"user@other.example\"@localhost>", K_BAD_LOCAL, ROUTING },
    { "<\"@other.example:user\"@localhost>", K_BAD_LOCAL, ROUTING },
    { "<\"user:x\"@example.com>", K_BAD_LOCAL, ROUTING },
    { "<\"user\\@other.example\"@localhost>", K_BAD_LOCAL, ROUTING },
    { "<\"a%b\"@localhost>", K_BAD_LOCAL, ROUTING },
    { "<\"a!b\"@localhost>", K_BAD_LOCAL, ROUTING },
    { "<%@localhost>", K_BAD_LOCAL, ROUTING },
    /* not local */
    { "<@localhost:user@other.example>", K_REMOTE, NULL },
    { "<@localhost,@example.com:user@other.example>", K_REMOTE, NULL },
    { "<user@other.example>", K_REMOTE, NULL },
    { "<user@mail.example.com>", K_REMOTE, NULL },
    { "<user@example.com.evil.test>", K_REMOTE, NULL },
    { "<user@localhost.example>", K_REMOTE, NULL },
    { "<user@xlocalhost>", K_REMOTE, NULL },
    { "<user@ample.com>", K_REMOTE, NULL },
    { "<user@example.co>", K_REMOTE, NULL },
    { "<user@example>", K_REMOTE, NULL },
    { "<user@[127.0.0.1]>", K_REMOTE, NULL },
    { "<user@[192.0.2.7]>", K_REMOTE, NULL },
    { "<user@[IPv6:::1]>", K_REMOTE, NULL },
    { "<postmaster@other.example>", K_REMOTE, NULL },
    /* routing characters only matter for local domains */
    { "<user%localhost@other.example>", K_REMOTE, NULL },
    { "<localhost!user@other.example>", K_REMOTE, NULL },
    { "<\"user@localhost\"@other.example>", K_REMOTE, NULL },
    /* refused by the parser, so never judged at all */
    { "<user@localhost.>", K_REFUSED, NULL },
    { "<user@example.com.>", K_REFUSED, NULL },
    { "<user@.localhost>", K_REFUSED, NULL },
    { "<>", K_REFUSED, NULL },
    { "<postmaster@>", K_REFUSED, NULL },
    { "<\"postmaster\">", K_REFUSED, NULL },
};

static enum relay_verdict expected(enum kind k, bool may_relay)
{
    switch (k) {
    case K_LOCAL: return RELAY_LOCAL;
    case K_BAD_LOCAL: return RELAY_BAD_LOCAL;
    default: return may_relay ? RELAY_ALLOWED : RELAY_DENIED;
    }
}

static void judge_all_clients(const struct mw_config *c, const struct rcpt_case *rc,
                              const struct mail_addr *a)
{
    for (size_t j = 0; j < sizeof(clients) / sizeof(clients[0]); j++) {
        const struct client_case *cc = &clients[j];
        const char *why = NULL;
        enum relay_verdict v = relay_check(c, &cc->cl, a, &why);
        enum relay_verdict want = expected(rc->kind, cc->may_relay);
        const char *want_why = rc->kind == K_REMOTE ? cc->why : rc->why;
        if (v != want || why == NULL || strcmp(why, want_why) != 0)
            fail_msg("%s from %s%s: got %s (%s), want %s (%s)", rc->in,
                     cc->cl.ip ? cc->cl.ip : "(null)", cc->cl.authenticated ? " auth" : "",
                     relay_verdict_name(v), why ? why : "(null)", relay_verdict_name(want),
                     want_why);
        /* why may be NULL: the verdict is the same */
        assert_int_equal(relay_check(c, &cc->cl, a, NULL), v);
    }
}

static void test_relay_table(void **state)
{
    const struct mw_config *c = *state;
    for (size_t i = 0; i < sizeof(rcpts) / sizeof(rcpts[0]); i++) {
        const struct rcpt_case *rc = &rcpts[i];
        struct mail_addr a;
        size_t used = 0, n = strlen(rc->in);
        int r = addr_parse_path(rc->in, n, ADDR_ALLOW_POSTMASTER, &a, &used);
        if (rc->kind == K_REFUSED) {
            if (r == 0)
                fail_msg("%s: parsed (domain \"%s\"), expected refusal", rc->in, a.domain);
            continue;
        }
        if (r != 0)
            fail_msg("%s: parse error %d (%s)", rc->in, r, addr_strerror(r));
        assert_int_equal(used, n);
        judge_all_clients(c, rc, &a);
        addr_free(&a);
    }
}

/* Addresses the parser would never produce: relay_check must still hold. */
static void test_relay_handmade(void **state)
{
    const struct mw_config *c = *state;
    static const struct {
        struct mail_addr a;
        enum relay_verdict unauth, auth;
    } cases[] = {
        { { .text = "user@localhost.", .local = "user", .domain = "localhost." },
          RELAY_DENIED, RELAY_ALLOWED },
        { { .text = "user@Example.Com", .local = "user", .domain = "Example.Com" },
          RELAY_LOCAL, RELAY_LOCAL },
        { { .text = "user@localhost", .local = "user", .domain = "localhost", .literal = true },
          RELAY_DENIED, RELAY_ALLOWED },
        { { .text = "user@[127.0.0.1]", .local = "user", .domain = "[127.0.0.1]", .literal = true },
          RELAY_DENIED, RELAY_ALLOWED },
        { { .text = "a:b@localhost", .local = "a:b", .domain = "localhost" },
          RELAY_BAD_LOCAL, RELAY_BAD_LOCAL },
        { { .text = "", .local = "", .domain = "", .null = true }, RELAY_BAD_LOCAL, RELAY_BAD_LOCAL },
        { { .text = "user", .local = "user", .domain = "" }, RELAY_BAD_LOCAL, RELAY_BAD_LOCAL },
        { { .text = "user@", .local = "", .domain = "localhost" }, RELAY_LOCAL, RELAY_LOCAL },
    };
    const struct relay_client unauth = { "198.51.100.1", false }, auth = { "198.51.100.1", true };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *why = NULL;
        enum relay_verdict v = relay_check(c, &unauth, &cases[i].a, &why);
        if (v != cases[i].unauth || why == NULL)
            fail_msg("%s unauth: got %s", cases[i].a.text, relay_verdict_name(v));
        v = relay_check(c, &auth, &cases[i].a, &why);
        if (v != cases[i].auth || why == NULL)
            fail_msg("%s auth: got %s", cases[i].a.text, relay_verdict_name(v));
    }
    /* a NULL client is an unknown, unauthenticated one */
    struct mail_addr remote = { .text = "u@other.example", .local = "u", .domain = "other.example" };
    assert_int_equal(relay_check(c, NULL, &remote, NULL), RELAY_DENIED);
}

/* A config without relay_networks relays only for authenticated clients. */
static void test_relay_default_conf(void **state)
{
    struct mw_config *c = NULL;
    struct buf err;
    buf_init(&err);
    assert_int_equal(conf_load(NULL, &c, &err), 0);
    buf_free(&err);
    struct mail_addr a;
    size_t used;
    assert_int_equal(addr_parse_path("<u@other.example>", 17, 0, &a, &used), 0);
    static const char *const ips[] = { "127.0.0.1", "::1", "192.0.2.7", "0.0.0.0" };
    for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
        struct relay_client cl = { ips[i], false };
        assert_int_equal(relay_check(c, &cl, &a, NULL), RELAY_DENIED);
        cl.authenticated = true;
        assert_int_equal(relay_check(c, &cl, &a, NULL), RELAY_ALLOWED);
    }
    addr_free(&a);
    conf_unref(c);
}

static void test_verdict_names(void **state)
{
    (void)state;
    assert_string_equal(relay_verdict_name(RELAY_LOCAL), "local");
    assert_string_equal(relay_verdict_name(RELAY_ALLOWED), "allowed");
    assert_string_equal(relay_verdict_name(RELAY_DENIED), "denied");
    assert_string_equal(relay_verdict_name(RELAY_BAD_LOCAL), "bad_local");
}

/* ---- core/cidr ---- */

static void test_cidr_parse(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int family;
        unsigned prefix;
    } good[] = {
        { "192.0.2.0/24", AF_INET, 24 },     { "10.0.0.0/8", AF_INET, 8 },
        { "0.0.0.0/0", AF_INET, 0 },         { "192.0.2.1", AF_INET, 32 },
        { "192.0.2.1/32", AF_INET, 32 },     { "10.128.0.0/9", AF_INET, 9 },
        { "::1", AF_INET6, 128 },            { "::/0", AF_INET6, 0 },
        { "2001:db8::/32", AF_INET6, 32 },   { "2001:DB8::/32", AF_INET6, 32 },
        { "2001:db8::1/128", AF_INET6, 128 }, { "::ffff:192.0.2.0/120", AF_INET6, 120 },
    };
    static const char *const bad[] = {
        "10.0.0.1/8", "192.0.2.1/24", "2001:db8::1/32", "0.0.0.1/0", "10.128.0.0/8",
        "192.0.2.0/33", "::/129", "192.0.2.0/", "192.0.2.0/-1", "192.0.2.0/+8",
        "192.0.2.0/ 8", "192.0.2.0/8x", "192.0.2.0/24/24", "/24", "", "192.0.2",
        "192.0.2.256", "example.org", "2001:db8::/", "2001:db8:::/32", " 192.0.2.0/24",
        "192.0.2.0/99999999999999999999",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct cidr net;
        if (cidr_parse(good[i].in, &net) != 0)
            fail_msg("%s: refused", good[i].in);
        assert_int_equal(net.family, good[i].family);
        assert_int_equal(net.prefix, good[i].prefix);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cidr net = { .family = -7 };
        if (cidr_parse(bad[i], &net) == 0)
            fail_msg("\"%s\": accepted", bad[i]);
        assert_int_equal(net.family, -7); /* untouched on error */
    }
}

static void test_cidr_match(void **state)
{
    (void)state;
    static const struct {
        const char *net, *ip;
        bool match;
    } cases[] = {
        { "192.0.2.0/24", "192.0.2.0", true },
        { "192.0.2.0/24", "192.0.2.255", true },
        { "192.0.2.0/24", "192.0.3.0", false },
        { "192.0.2.0/24", "192.0.1.255", false },
        { "192.0.2.0/24", "::ffff:192.0.2.9", true },
        { "192.0.2.0/24", "::FFFF:192.0.2.9", true },
        { "192.0.2.0/24", "::ffff:192.0.3.9", false },
        { "192.0.2.0/24", "::192.0.2.9", false },      /* compatible, not mapped */
        { "192.0.2.0/24", "64:ff9b::192.0.2.9", false },
        { "192.0.2.0/24", "2001:db8::1", false },
        { "192.0.2.0/24", "192.0.2", false },
        { "192.0.2.0/24", "192.0.2.7 ", false },
        { "192.0.2.0/24", "", false },
        { "10.128.0.0/9", "10.255.255.255", true },
        { "10.128.0.0/9", "10.127.255.255", false },
        { "0.0.0.0/0", "203.0.113.1", true },
        { "0.0.0.0/0", "::ffff:203.0.113.1", true },
        { "0.0.0.0/0", "::1", false },
        { "192.0.2.1", "192.0.2.1", true },
        { "192.0.2.1", "192.0.2.2", false },
        { "2001:db8::/32", "2001:db8::5", true },
        { "2001:db8::/32", "2001:db8:ffff:ffff::1", true },
        { "2001:db8::/32", "2001:db9::", false },
        { "2001:db8::/32", "2001:db7:ffff::", false },
        { "2001:db8::/32", "192.0.2.1", false },
        { "::/0", "2001:db8::1", true },
        { "::1", "::1", true },
        { "::1", "::2", false },
        { "::1", "127.0.0.1", false },
        { "2001:db8:8000::/33", "2001:db8:8000::1", true },
        { "2001:db8:8000::/33", "2001:db8:7fff::1", false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cidr net;
        assert_int_equal(cidr_parse(cases[i].net, &net), 0);
        if (cidr_match(&net, cases[i].ip) != cases[i].match)
            fail_msg("%s in %s: expected %d", cases[i].ip, cases[i].net, cases[i].match);
    }
}

static void test_cidr_client_key(void **state)
{
    (void)state;
    static const struct {
        const char *ip;
        unsigned prefix;
        const char *key;
    } t[] = {
        { "192.0.2.7", 64, "192.0.2.7" },
        { "::ffff:192.0.2.7", 64, "192.0.2.7" },
        { "2001:db8:1:2::a", 64, "2001:db8:1:2::/64" },
        { "2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64" },
        { "2001:db8:1:3::a", 64, "2001:db8:1:3::/64" },
        { "2001:db8:1:2::a", 48, "2001:db8:1::/48" },
        { "2001:db8:1:2::a", 56, "2001:db8:1::/56" },
        { "2001:db8:1:2ff::a", 60, "2001:db8:1:2f0::/60" },
        { "2001:db8:1:2::a", 128, "2001:db8:1:2::a" },
        { "::1", 64, "::/64" },
        { "unknown", 64, "unknown" },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char out[72];
        cidr_client_key(t[i].ip, t[i].prefix, out, sizeof(out));
        if (strcmp(out, t[i].key) != 0)
            fail_msg("%s /%u: got %s, want %s", t[i].ip, t[i].prefix, out, t[i].key);
    }
}

static void test_cidr_match_any(void **state)
{
    (void)state;
    struct cidr nets[2];
    assert_int_equal(cidr_parse("192.0.2.0/24", &nets[0]), 0);
    assert_int_equal(cidr_parse("2001:db8::/32", &nets[1]), 0);
    assert_false(cidr_match_any(nets, 0, "192.0.2.1"));
    assert_true(cidr_match_any(nets, 1, "192.0.2.1"));
    assert_false(cidr_match_any(nets, 1, "2001:db8::1"));
    assert_true(cidr_match_any(nets, 2, "2001:db8::1"));
    assert_true(cidr_match_any(nets, 2, "::ffff:192.0.2.1"));
    assert_false(cidr_match_any(nets, 2, "198.51.100.1"));
    assert_false(cidr_match_any(nets, 2, "bogus"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay_table),
        cmocka_unit_test(test_relay_handmade),
        cmocka_unit_test(test_relay_default_conf),
        cmocka_unit_test(test_verdict_names),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_match),
        cmocka_unit_test(test_cidr_match_any),
        cmocka_unit_test(test_cidr_client_key),
    };
    return cmocka_run_group_tests(tests, setup_conf, teardown_conf);
}
