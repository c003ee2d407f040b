/*
 * selfsigned.c - the certificate the daemon makes for itself when the
 * operator has configured none, so that STARTTLS works out of the box.
 * Clients cannot verify it (the daemon logs a warning); operators are
 * expected to configure a real one (docs/tls.md).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "core/fsutil.h"
#include "tls/tls.h"

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static X509 *make_cert(EVP_PKEY *key, const char *hostname)
{
    X509 *x = X509_new();
    if (x == NULL)
        return NULL;
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        goto fail;
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    ASN1_INTEGER *sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    BN_free(bn);
    if (sn == NULL)
        goto fail;
    X509_set_serialNumber(x, sn);
    ASN1_INTEGER_free(sn);
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3L * 365 * 24 * 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)hostname, -1, -1, 0);
    X509_set_issuer_name(x, name);
    char san[600];
    snprintf(san, sizeof(san), "DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1", hostname);
    if (add_ext(x, NID_subject_alt_name, san) < 0 ||
        add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
        add_ext(x, NID_ext_key_usage, "serverAuth") < 0)
        goto fail;
    if (X509_sign(x, key, EVP_sha256()) == 0)
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

/* PEM of a key or certificate into a buf. */
static int to_pem(EVP_PKEY *key, X509 *x, struct buf *out)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return -1;
    int ok = key ? PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_bio_X509(b, x);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    if (ok && n > 0)
        buf_append(out, p, (size_t)n);
    BIO_free(b);
    return ok && n > 0 ? 0 : -1;
}

int tls_selfsigned_ensure(const char *dir, const char *hostname, struct buf *err)
{
    char cert[4096], key[4096];
    snprintf(cert, sizeof(cert), "%s/selfsigned.crt", dir);
    snprintf(key, sizeof(key), "%s/selfsigned.key", dir);
    if (access(cert, R_OK) == 0 && access(key, R_OK) == 0)
        return 0;
    int r = fs_mkdirs(dir, 0700);
    if (r < 0) {
        buf_printf(err, "%s: %s", dir, strerror(-r));
        return -1;
    }
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = pk ? make_cert(pk, hostname) : NULL;
    struct buf kp, cp;
    buf_init(&kp);
    buf_init(&cp);
    r = -1;
    if (x && to_pem(pk, NULL, &kp) == 0 && to_pem(NULL, x, &cp) == 0) {
        struct iovec kv = { .iov_base = kp.data, .iov_len = buf_size(&kp) };
        struct iovec cv = { .iov_base = cp.data, .iov_len = buf_size(&cp) };
        char tmpdir[4200];
        snprintf(tmpdir, sizeof(tmpdir), "%s/.new", dir);
        unlink(cert);
        unlink(key);
        /* Key first: a certificate on disk always has its key. */
        if ((r = fs_mkdirs(tmpdir, 0700)) == 0 &&
            (r = fs_commit_file(tmpdir, dir, "selfsigned.key", &kv, 1, 0600, 0)) == 0)
            r = fs_commit_file(tmpdir, dir, "selfsigned.crt", &cv, 1, 0644, 0);
        rmdir(tmpdir);
        if (r < 0)
            buf_printf(err, "%s: cannot write self-signed certificate: %s", dir, strerror(-r));
    } else {
        buf_printf(err, "%s: cannot generate a self-signed certificate", dir);
    }
    buf_free(&kp);
    buf_free(&cp);
    X509_free(x);
    EVP_PKEY_free(pk);
    return r < 0 ? -1 : 0;
}
