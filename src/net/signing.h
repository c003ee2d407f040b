/*
 * signing - the daemon's DKIM signing keys (dkim_sign sections): read from
 * disk when a configuration is loaded (start-up and SIGHUP), never per
 * message, never logged; and the signing of mail that authenticated users
 * submit, with every key configured for the From domain (RSA and Ed25519
 * side by side give dual signing), relaxed/relaxed.
 *
 * A set is reference-counted on the loop thread: a commit job keeps the
 * set it started with across a reload. signing_sign() only reads the keys
 * and may run on a worker thread.
 *
 *   signing_load(conf, &set, err)   0 (set NULL when no keys), or -1 with
 *                                   "key_file: why" in err
 *   signing_ref / signing_unref
 *   signing_has_domain(set, d)      a key is configured for d
 *   signing_sign(set, d, msg, n, now, out, err)
 *                                   appends one DKIM-Signature field per key
 *                                   of d; the count, or -1 with err
 */
#ifndef MW_NET_SIGNING_H
#define MW_NET_SIGNING_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "conf/conf.h"
#include "core/buf.h"

struct signing;

int signing_load(const struct mw_config *c, struct signing **out, struct buf *err);
struct signing *signing_ref(struct signing *s);
void signing_unref(struct signing *s);
bool signing_has_domain(const struct signing *s, const char *domain);
int signing_sign(const struct signing *s, const char *domain, const char *msg, size_t n,
                 time_t now, struct buf *out, struct buf *err);

#endif
