/*
 * Server TLS contexts: loading and its errors, the self-signed fallback,
 * SNI selection (exact and wildcard names, default for unknown or absent
 * names) and the protocol floor — each handshake runs in memory between
 * an OpenSSL client and tls_server_ssl().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/fsutil.h"
#include "core/xmalloc.h"
#include "tls/tls.h"

static char dir[64];

__attribute__((format(printf, 1, 2)))
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
}

/* A self-signed certificate for the given SAN (and CN = first name). */
static void make_cert(const char *name, const char *cn, const char *san, const char *alg)
{
    sh("cd %s && openssl req -x509 -newkey %s -nodes -days 2 -subj '/CN=%s' "
       "-addext 'subjectAltName=%s' -keyout %s.key -out %s.pem >/dev/null 2>&1",
       dir, alg, cn, san, name, name);
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/mwtls.XXXXXX");
    assert_non_null(mkdtemp(dir));
    make_cert("a", "a.test", "DNS:a.test", "rsa:2048");
    make_cert("w", "w.test", "DNS:*.wild.test,DNS:w.test", "ec -pkeyopt ec_paramgen_curve:P-256");
    make_cert("b", "b.test", "DNS:b.test", "rsa:2048");
    return 0;
}

static int teardown(void **state)
{
    sh("rm -rf %s", dir);
    return 0;
}

static struct mw_config *conf_with(const char *const *certs, size_t n)
{
    struct mw_config *c = xcalloc(1, sizeof(*c));
    c->refs = 1;
    c->hostname = xstrdup("mx.test");
    c->ncert = n;
    c->certs = xcalloc(n ? n : 1, sizeof(*c->certs));
    for (size_t i = 0; i < n; i++) {
        char p[128];
        c->certs[i].name = xstrdup(certs[i]);
        c->certs[i].npairs = 1;
        c->certs[i].cert_files = xcalloc(1, sizeof(char *));
        c->certs[i].key_files = xcalloc(1, sizeof(char *));
        snprintf(p, sizeof(p), "%s/%s.pem", dir, certs[i]);
        c->certs[i].cert_files[0] = xstrdup(p);
        snprintf(p, sizeof(p), "%s/%s.key", dir, certs[i]);
        c->certs[i].key_files[0] = xstrdup(p);
    }
    return c;
}

/* Handshake in memory; returns the CN the client saw, or "" on failure. */
static const char *handshake(struct tls_server *t, const char *sni, int max_version)
{
    static char cn[256];
    cn[0] = '\0';
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_security_level(cctx, 0);
    SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION);
    if (max_version)
        SSL_CTX_set_max_proto_version(cctx, max_version);
    SSL *cl = SSL_new(cctx), *sv = tls_server_ssl(t);
    assert_non_null(sv);
    BIO *cb, *sb;
    BIO_new_bio_pair(&cb, 0, &sb, 0);
    SSL_set_bio(cl, cb, cb);
    SSL_set_bio(sv, sb, sb);
    SSL_set_connect_state(cl);
    SSL_set_accept_state(sv);
    if (sni)
        SSL_set_tlsext_host_name(cl, sni);
    int rc = 0, rs = 0;
    for (int i = 0; i < 50; i++) {
        if (rc != 1)
            rc = SSL_do_handshake(cl);
        if (rs != 1)
            rs = SSL_do_handshake(sv);
        if (rc == 1 && rs == 1)
            break;
        if ((rc <= 0 && SSL_get_error(cl, rc) == SSL_ERROR_SSL) ||
            (rs <= 0 && SSL_get_error(sv, rs) == SSL_ERROR_SSL))
            break;
    }
    if (rc == 1 && rs == 1) {
        X509 *peer = SSL_get1_peer_certificate(cl);
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
        X509_free(peer);
    }
    ERR_clear_error();
    SSL_free(cl);
    SSL_free(sv);
    SSL_CTX_free(cctx);
    return cn;
}

static void test_sni(void **state)
{
    static const char *const names[] = { "a", "w", "b" };
    struct mw_config *c = conf_with(names, 3);
    struct tls_server *t = NULL;
    struct buf err;
    buf_init(&err);
    if (tls_server_load(c, dir, &t, &err) < 0)
        fail_msg("load: %s", buf_ptr(&err));
    assert_false(tls_server_selfsigned(t));
    assert_string_equal(handshake(t, "b.test", 0), "b.test");
    assert_string_equal(handshake(t, "B.Test", 0), "b.test");
    assert_string_equal(handshake(t, "x.wild.test", 0), "w.test");
    assert_string_equal(handshake(t, "w.test", 0), "w.test");
    assert_string_equal(handshake(t, "y.x.wild.test", 0), "a.test"); /* one label only */
    assert_string_equal(handshake(t, "wild.test", 0), "a.test");
    assert_string_equal(handshake(t, "unknown.test", 0), "a.test");
    assert_string_equal(handshake(t, NULL, 0), "a.test");
    /* The protocol floor: TLS 1.1 and 1.0 are refused, 1.2 is fine. */
    assert_string_equal(handshake(t, NULL, TLS1_1_VERSION), "");
    assert_string_equal(handshake(t, NULL, TLS1_VERSION), "");
    assert_string_equal(handshake(t, NULL, TLS1_2_VERSION), "a.test");
    tls_server_unref(t);
    conf_unref(c);
    buf_free(&err);
}

static void test_load_errors(void **state)
{
    static const char *const names[] = { "a" };
    struct mw_config *c = conf_with(names, 1);
    struct tls_server *t = NULL;
    struct buf err;

    /* A key that belongs to another certificate. */
    xfree(c->certs[0].key_files[0]);
    char p[128];
    snprintf(p, sizeof(p), "%s/b.key", dir);
    c->certs[0].key_files[0] = xstrdup(p);
    buf_init(&err);
    assert_int_equal(tls_server_load(c, dir, &t, &err), -1);
    assert_null(t);
    if (strstr(buf_ptr(&err), "b.key") == NULL || strstr(buf_ptr(&err), "does not match") == NULL)
        fail_msg("mismatch not reported: %s", buf_ptr(&err));
    buf_free(&err);

    /* A missing file is named. */
    xfree(c->certs[0].cert_files[0]);
    c->certs[0].cert_files[0] = xstrdup("/nonexistent/cert.pem");
    buf_init(&err);
    assert_int_equal(tls_server_load(c, dir, &t, &err), -1);
    assert_non_null(strstr(buf_ptr(&err), "/nonexistent/cert.pem: cannot load certificate chain"));
    buf_free(&err);

    /* Garbage instead of a key. */
    snprintf(p, sizeof(p), "%s/garbage.key", dir);
    FILE *f = fopen(p, "w");
    fputs("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n", f);
    fclose(f);
    xfree(c->certs[0].cert_files[0]);
    snprintf(p, sizeof(p), "%s/a.pem", dir);
    c->certs[0].cert_files[0] = xstrdup(p);
    xfree(c->certs[0].key_files[0]);
    snprintf(p, sizeof(p), "%s/garbage.key", dir);
    c->certs[0].key_files[0] = xstrdup(p);
    buf_init(&err);
    assert_int_equal(tls_server_load(c, dir, &t, &err), -1);
    assert_non_null(strstr(buf_ptr(&err), "garbage.key: cannot load private key"));
    buf_free(&err);
    conf_unref(c);
}

static void test_selfsigned(void **state)
{
    struct mw_config *c = conf_with(NULL, 0);
    struct tls_server *t = NULL;
    struct buf err;
    buf_init(&err);
    char data[96];
    snprintf(data, sizeof(data), "%s/data", dir);
    if (tls_server_load(c, data, &t, &err) < 0)
        fail_msg("load: %s", buf_ptr(&err));
    assert_true(tls_server_selfsigned(t));
    assert_string_equal(handshake(t, NULL, 0), "mx.test");
    tls_server_unref(t);

    char key[128], crt[128];
    snprintf(key, sizeof(key), "%s/tls/selfsigned.key", data);
    snprintf(crt, sizeof(crt), "%s/tls/selfsigned.crt", data);
    struct stat st;
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    struct buf first, second;
    buf_init(&first);
    buf_init(&second);
    assert_int_equal(fs_read_file(crt, 1 << 16, &first), 0);
    /* A second start reuses it. */
    assert_int_equal(tls_server_load(c, data, &t, &err), 0);
    tls_server_unref(t);
    assert_int_equal(fs_read_file(crt, 1 << 16, &second), 0);
    assert_int_equal(buf_size(&first), buf_size(&second));
    assert_memory_equal(buf_ptr(&first), buf_ptr(&second), buf_size(&first));
    buf_free(&first);
    buf_free(&second);
    buf_free(&err);
    conf_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sni),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_selfsigned),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
