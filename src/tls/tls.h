/*
 * tls - server TLS contexts: the certificates, the protocol profile, SNI.
 *
 * tls_server_load() builds one SSL_CTX per certificate section of the
 * configuration (each may hold several cert/key pairs, e.g. RSA and
 * ECDSA, and OpenSSL picks per client) and an SNI callback that chooses
 * the context whose certificates name the requested host (exact, or a
 * "*.example" wildcard for one label); otherwise the first section. With
 * no certificate section, a self-signed certificate is made (once) in
 * <data_dir>/tls/. Everything is checked before anything is returned:
 * a missing file, an unparsable PEM or a key that does not match its
 * certificate fails the whole load with "file: reason" in err, so a
 * reload can keep the set it has.
 *
 * Profile: TLS 1.2 and 1.3 only; TLS 1.2 with ECDHE/DHE AEAD suites only
 * (forward secrecy; Mozilla "intermediate"); no compression; no
 * renegotiation; session tickets and a server-side session cache.
 *
 * A tls_server is reference-counted: each connection's SSL keeps the
 * contexts it needs alive, and the daemon swaps the set on reload.
 *
 * SECURITY: private keys are read here, once per load, and never logged.
 */
#ifndef MW_TLS_TLS_H
#define MW_TLS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"
#include "core/buf.h"

typedef struct ssl_st SSL;
struct tls_server;

int tls_server_load(const struct mw_config *c, const char *data_dir, struct tls_server **out,
                    struct buf *err);
struct tls_server *tls_server_ref(struct tls_server *t);
void tls_server_unref(struct tls_server *t);
/* A new server-side SSL object, or NULL (reason in the OpenSSL queue). */
SSL *tls_server_ssl(struct tls_server *t);
/* True when the set uses a generated self-signed certificate. */
bool tls_server_selfsigned(const struct tls_server *t);

/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)" */
void tls_describe(SSL *ssl, struct buf *out);
/* The last OpenSSL error as text ("" if none); clears the queue. */
void tls_last_error(struct buf *out);

/* Create cert and key (P-256, 0600 key) for hostname if either is absent. */
int tls_selfsigned_ensure(const char *dir, const char *hostname, struct buf *err);

#endif
