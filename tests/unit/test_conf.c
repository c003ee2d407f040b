/*
 * Configuration loading: defaults, every key's validation, and errors that
 * name the file and line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"

static char path[64];

static void write_conf(const char *text)
{
    snprintf(path, sizeof(path), "/tmp/mwconf.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void test_default(void **state)
{
    struct mw_config *c = NULL;
    struct buf err;
    buf_init(&err);
    assert_int_equal(conf_load(NULL, &c, &err), 0);
    assert_int_equal(c->nlisten, 3);
    assert_string_equal(c->listens[0].address, "127.0.0.1");
    assert_int_equal(c->listens[0].port, 2525);
    assert_int_equal(c->listens[0].tls, MW_TLS_STARTTLS);
    assert_int_equal(c->listens[1].port, 5870);
    assert_int_equal(c->listens[1].tls, MW_TLS_STARTTLS_REQUIRED);
    assert_int_equal(c->listens[2].port, 4650);
    assert_int_equal(c->listens[2].tls, MW_TLS_IMPLICIT);
    for (size_t i = 0; i < c->nlisten; i++)
        assert_string_equal(c->listens[i].address, "127.0.0.1");
    assert_int_equal(c->ncert, 0);
    assert_string_equal(c->data_dir, "./var");
    assert_true(conf_is_local_domain(c, "localhost"));
    assert_true(conf_is_local_domain(c, "LocalHost"));
    assert_false(conf_is_local_domain(c, "example.org"));
    assert_true(c->max_recipients >= 100);
    conf_unref(c);
    buf_free(&err);
}

static void test_full_file(void **state)
{
    write_conf("# comment\n"
               "hostname = \"MX.Example.org\"\n"
               "data_dir = \"/srv/mw\"\n"
               "local_domains = { \"example.org\", \"Example.NET\" }\n"
               "max_message_size = 1048576\n"
               "max_recipients = 250\n"
               "listen smtp { address = \"::1\" port = 2626 }\n"
               "listen other { port = 2727 tls = \"implicit\" }\n"
               "listen plain { port = 2828 tls = \"none\" }\n"
               "certificate mx {\n"
               "  cert_file = { \"/a/rsa.pem\", \"/a/ec.pem\" }\n"
               "  key_file = { \"/a/rsa.key\", \"/a/ec.key\" }\n"
               "}\n"
               "certificate other { cert_file = { \"/b.pem\" } key_file = { \"/b.key\" } }\n");
    struct mw_config *c = NULL;
    struct buf err;
    buf_init(&err);
    assert_int_equal(conf_load(path, &c, &err), 0);
    assert_string_equal(c->hostname, "mx.example.org");
    assert_true(conf_is_local_domain(c, "example.net"));
    assert_false(conf_is_local_domain(c, "localhost"));
    assert_int_equal(c->max_message_size, 1048576);
    assert_int_equal(c->max_recipients, 250);
    assert_int_equal(c->nlisten, 3);
    assert_string_equal(c->listens[0].address, "::1");
    assert_int_equal(c->listens[0].tls, MW_TLS_STARTTLS);
    assert_string_equal(c->listens[1].name, "other");
    assert_int_equal(c->listens[1].port, 2727);
    assert_int_equal(c->listens[1].tls, MW_TLS_IMPLICIT);
    assert_int_equal(c->listens[2].tls, MW_TLS_NONE);
    assert_int_equal(c->ncert, 2);
    assert_string_equal(c->certs[0].name, "mx");
    assert_int_equal(c->certs[0].npairs, 2);
    assert_string_equal(c->certs[0].cert_files[1], "/a/ec.pem");
    assert_string_equal(c->certs[0].key_files[1], "/a/ec.key");
    assert_int_equal(c->certs[1].npairs, 1);
    conf_unref(c);
    buf_free(&err);
    unlink(path);
}

static void test_errors(void **state)
{
    static const struct { const char *text, *expect; } cases[] = {
        { "listen smtp { port = 25 }\nbogus = 1\n", ":2: no such option 'bogus'" },
        { "\n\nmax_errors = 0\nlisten smtp { port = 25 }\n", ":3: max_errors = 0 is out of range" },
        { "listen smtp {\n  port = 70000\n}\n", ":2: port = 70000 is out of range" },
        { "listen smtp {\n  address = \"example.org\"\n}\n", ":2: address: \"example.org\" is not an IPv4" },
        { "local_domains = { \"bad domain\" }\nlisten s { port = 25 }\n", ":1: local_domains: \"bad domain\"" },
        { "max_recipients = 99\nlisten s { port = 25 }\n", ":1: max_recipients = 99 is out of range" },
        { "max_line_length = 100\nlisten s { port = 25 }\n", ":1: max_line_length = 100" },
        { "hostname = \"-x\"\nlisten s { port = 25 }\n", ":1: hostname: \"-x\"" },
        { "retry_min = 10\nretry_max = 5\nlisten s { port = 25 }\n", "retry_max (5) is below retry_min (10)" },
        { "local_domains = { \"a.example\" }\n", "no listen section" },
        { "listen a { port = 25 }\nlisten a { port = 26 }\n", ":2:" },
        { "max_errors = \"x\"\nlisten s { port = 25 }\n", ":1:" },
        { "listen s {\n port = \n}\n", ":3:" },
        { "listen s {\n  tls = \"yes\"\n}\n", ":2: tls = \"yes\": expected none, starttls" },
        { "listen s { port = 25 }\ncertificate c {\n cert_file = { \"/a\", \"/b\" }\n"
          " key_file = { \"/a\" }\n}\n", "cert_file has 2 entries but key_file has 1" },
        { "listen s { port = 25 }\ncertificate c {\n}\n", "certificate c: cert_file and key_file are required" },
        { "listen s { port = 25 }\nrelay_networks = { \"10.0.0.1/8\" }\n",
          ":2: relay_networks: \"10.0.0.1/8\" is not an address or network" },
        { "relay_networks = { \"example.org\" }\nlisten s { port = 25 }\n", ":1: relay_networks:" },
        { "listen s { port = 25 }\nuser \"alice\" { }\n", "user \"alice\": the title must be" },
        { "listen s { port = 25 }\nuser \"a@b.example\" {\n senders = { \"x@\" }\n}\n",
          ":3: senders: \"x@\" is not an address or @domain" },
        { "listen s { port = 25 }\nauth_failures = 0\n", ":2: auth_failures = 0 is out of range" },
        { "listen s { port = 25 auth = maybe }\n", ":1:" },
        { "listen s { port = 25 }\ndkim_sign k {\n domain = \"example.org\"\n selector = \"s1\"\n}\n",
          "dkim_sign k: key_file is required" },
        { "listen s { port = 25 }\ndkim_sign k {\n domain = \"example.org\"\n selector = \"s 1\"\n"
          " key_file = \"/k\"\n}\n", "dkim_sign k: selector must be" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_conf(cases[i].text);
        struct mw_config *c = NULL;
        struct buf err;
        buf_init(&err);
        int r = conf_load(path, &c, &err);
        if (r == 0 || strstr(buf_ptr(&err), cases[i].expect) == NULL ||
            strncmp(buf_ptr(&err), path, strlen(path)) != 0)
            fail_msg("case %zu: r=%d err=<%s> expected <%s>", i, r, buf_ptr(&err), cases[i].expect);
        assert_null(c);
        buf_free(&err);
        unlink(path);
    }
}

static void test_access_keys(void **state)
{
    write_conf("listen s { port = 25 }\n"
               "listen sub { port = 587 tls = \"starttls-required\" auth = true }\n"
               "relay_networks = { \"192.0.2.0/24\", \"2001:db8::/32\" }\n"
               "max_connection_rate = 0\n"
               "user \"Alice@Example.org\" { senders = { \"Sales@example.org\", \"@Alice.example\" } }\n"
               "dkim_sign ed { domain = \"Example.org\" selector = \"s1.x\" key_file = \"/k\" }\n");
    struct mw_config *c = NULL;
    struct buf err;
    buf_init(&err);
    assert_int_equal(conf_load(path, &c, &err), 0);
    assert_false(c->listens[0].auth);
    assert_true(c->listens[1].auth);
    assert_int_equal(c->nrelay_networks, 2);
    assert_true(cidr_match_any(c->relay_networks, c->nrelay_networks, "192.0.2.200"));
    assert_false(cidr_match_any(c->relay_networks, c->nrelay_networks, "192.0.3.1"));
    assert_int_equal(c->max_connection_rate, 0);
    assert_int_equal(c->auth_failures, 5);
    assert_true(c->sender_header_match);
    /* own address, granted address and domain; nothing else */
    assert_true(conf_sender_allowed(c, "alice@example.org", "ALICE", "example.org"));
    assert_true(conf_sender_allowed(c, "alice@example.org", "sales", "example.org"));
    assert_true(conf_sender_allowed(c, "alice@example.org", "anyone", "alice.example"));
    assert_false(conf_sender_allowed(c, "alice@example.org", "bob", "example.org"));
    assert_false(conf_sender_allowed(c, "alice@example.org", "x", "sub.alice.example"));
    assert_false(conf_sender_allowed(c, "bob@example.org", "sales", "example.org"));
    assert_true(conf_sender_allowed(c, "bob@example.org", "bob", "example.org"));
    assert_int_equal(c->ndkim_keys, 1);
    assert_string_equal(c->dkim_keys[0].domain, "example.org");
    conf_unref(c);
    /* the embedded default offers AUTH on submission and submissions only */
    assert_int_equal(conf_load(NULL, &c, &err), 0);
    assert_false(c->listens[0].auth);
    assert_true(c->listens[1].auth && c->listens[2].auth);
    assert_int_equal(c->nrelay_networks, 0);
    assert_true(c->dmarc_enforce && c->dmarc_reject_bad_from && c->dmarc_reports);
    assert_int_equal(c->dmarc_pct_seed, 0);
    conf_unref(c);
    buf_free(&err);
    unlink(path);
}

static void test_missing_file(void **state)
{
    struct mw_config *c = NULL;
    struct buf err;
    buf_init(&err);
    assert_int_equal(conf_load("/nonexistent/mw.conf", &c, &err), -1);
    assert_non_null(strstr(buf_ptr(&err), "/nonexistent/mw.conf:0: cannot read file"));
    buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_access_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
