#include "tls/tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/str.h"
#include "core/xmalloc.h"

/* Mozilla "intermediate": ECDHE/DHE with AEAD for TLS 1.2. */
#define TLS12_CIPHERS                                                                    \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                       \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                       \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                       \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

struct tls_ctx_entry {
    SSL_CTX *ctx;
    char **names;   /* DNS names from the certificates, lower case */
    size_t nnames;
};

struct tls_server {
    unsigned refs;
    struct tls_ctx_entry *e;
    size_t n;
    bool selfsigned;
};

void tls_last_error(struct buf *out)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        return;
    char text[256];
    ERR_error_string_n(e, text, sizeof(text));
    buf_append_str(out, text);
    ERR_clear_error();
}

static void add_name(struct tls_ctx_entry *e, const char *name, size_t len)
{
    if (len == 0 || len > 253 || memchr(name, '\0', len))
        return;
    e->names = xreallocarray(e->names, e->nnames + 1, sizeof(char *));
    e->names[e->nnames] = xmemdup0(name, len);
    str_lower(e->names[e->nnames]);
    e->nnames++;
}

static void collect_names(struct tls_ctx_entry *e, X509 *x)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool any = false;
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS)
            continue;
        add_name(e, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                 (size_t)ASN1_STRING_length(g->d.dNSName));
        any = true;
    }
    GENERAL_NAMES_free(sans);
    if (any)
        return;
    X509_NAME *subj = X509_get_subject_name(x);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx >= 0) {
        ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
        add_name(e, (const char *)ASN1_STRING_get0_data(cn), (size_t)ASN1_STRING_length(cn));
    }
}

static bool name_matches(const char *pattern, const char *host)
{
    if (strcmp(pattern, host) == 0)
        return true;
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(host, '.');
        return dot && dot != host && strcmp(dot, pattern + 1) == 0;
    }
    return false;
}

static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    struct tls_server *t = arg;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (sni == NULL || t->n < 2)
        return SSL_TLSEXT_ERR_OK;
    char host[256];
    if (str_lcpy(host, sni, sizeof(host)) >= sizeof(host))
        return SSL_TLSEXT_ERR_OK;
    str_lower(host);
    for (size_t i = 0; i < t->n; i++)
        for (size_t k = 0; k < t->e[i].nnames; k++)
            if (name_matches(t->e[i].names[k], host)) {
                if (i > 0)
                    SSL_set_SSL_CTX(ssl, t->e[i].ctx);
                return SSL_TLSEXT_ERR_OK;
            }
    return SSL_TLSEXT_ERR_OK;  /* unknown name: the default certificate */
}

static SSL_CTX *new_ctx(struct buf *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        buf_append_str(err, "cannot create TLS context: ");
        tls_last_error(err);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* OpenSSL 3 refuses client-initiated renegotiation unless
     * SSL_OP_ALLOW_CLIENT_RENEGOTIATION is set; NO_RENEGOTIATION also
     * stops the server side from ever starting one. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        buf_append_str(err, "cannot set TLS 1.2 ciphers: ");
        tls_last_error(err);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_dh_auto(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    static const unsigned char sid_ctx[] = "mailwarden";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

static int load_pair(struct tls_ctx_entry *e, const char *cert, const char *key, struct buf *err)
{
    if (SSL_CTX_use_certificate_chain_file(e->ctx, cert) != 1) {
        buf_printf(err, "%s: cannot load certificate chain: ", cert);
        tls_last_error(err);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(e->ctx, key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            buf_printf(err, "%s: private key does not match certificate %s", key, cert);
            ERR_clear_error();
            return -1;
        }
        buf_printf(err, "%s: cannot load private key: ", key);
        tls_last_error(err);
        return -1;
    }
    if (SSL_CTX_check_private_key(e->ctx) != 1) {
        buf_printf(err, "%s: private key does not match certificate %s", key, cert);
        ERR_clear_error();
        return -1;
    }
    X509 *x = SSL_CTX_get0_certificate(e->ctx);
    if (x)
        collect_names(e, x);
    return 0;
}

struct tls_server *tls_server_ref(struct tls_server *t)
{
    t->refs++;
    return t;
}

void tls_server_unref(struct tls_server *t)
{
    if (t == NULL || --t->refs > 0)
        return;
    for (size_t i = 0; i < t->n; i++) {
        SSL_CTX_free(t->e[i].ctx);
        for (size_t k = 0; k < t->e[i].nnames; k++)
            xfree(t->e[i].names[k]);
        xfree(t->e[i].names);
    }
    xfree(t->e);
    xfree(t);
}

int tls_server_load(const struct mw_config *c, const char *data_dir, struct tls_server **out,
                    struct buf *err)
{
    struct tls_server *t = xcalloc(1, sizeof(*t));
    t->refs = 1;
    struct mw_cert self = { 0 };
    const struct mw_cert *certs = c->certs;
    size_t ncert = c->ncert;
    struct buf cf, kf, dir;
    buf_init(&cf);
    buf_init(&kf);
    buf_init(&dir);

    if (ncert == 0) {
        buf_printf(&dir, "%s/tls", data_dir);
        if (tls_selfsigned_ensure(buf_ptr(&dir), c->hostname, err) < 0)
            goto fail;
        buf_printf(&cf, "%s/selfsigned.crt", buf_ptr(&dir));
        buf_printf(&kf, "%s/selfsigned.key", buf_ptr(&dir));
        self.name = "selfsigned";
        self.cert_files = &cf.data;
        self.key_files = &kf.data;
        self.npairs = 1;
        certs = &self;
        ncert = 1;
        t->selfsigned = true;
    }
    t->e = xcalloc(ncert, sizeof(*t->e));
    for (size_t i = 0; i < ncert; i++) {
        struct tls_ctx_entry *e = &t->e[t->n];
        if ((e->ctx = new_ctx(err)) == NULL)
            goto fail;
        t->n++;
        for (size_t k = 0; k < certs[i].npairs; k++)
            if (load_pair(e, certs[i].cert_files[k], certs[i].key_files[k], err) < 0)
                goto fail;
        SSL_CTX_set_tlsext_servername_callback(e->ctx, sni_cb);
        SSL_CTX_set_tlsext_servername_arg(e->ctx, t);
    }
    buf_free(&cf);
    buf_free(&kf);
    buf_free(&dir);
    *out = t;
    return 0;
fail:
    buf_free(&cf);
    buf_free(&kf);
    buf_free(&dir);
    tls_server_unref(t);
    return -1;
}

SSL *tls_server_ssl(struct tls_server *t)
{
    return SSL_new(t->e[0].ctx);
}

bool tls_server_selfsigned(const struct tls_server *t)
{
    return t->selfsigned;
}

void tls_describe(SSL *ssl, struct buf *out)
{
    int alg_bits = 0;
    int bits = SSL_get_cipher_bits(ssl, &alg_bits);
    buf_printf(out, "%s with cipher %s (%d/%d bits)", SSL_get_version(ssl),
               SSL_get_cipher_name(ssl), bits, alg_bits);
}
