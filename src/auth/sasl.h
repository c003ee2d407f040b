/*
 * sasl - the server side of the SASL mechanisms SMTP AUTH offers (RFC 4954):
 * PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login). No I/O: the
 * SMTP session passes each client response line and sends the challenge
 * it gets back as "334 <challenge>".
 *
 * Responses are base64 (strict: no spaces, correct padding); "*" cancels.
 * PLAIN's message is [authzid] NUL authcid NUL password; authcid and
 * password must be 1..255 octets of UTF-8 without NUL, and an authzid,
 * if given, must equal the authcid (acting for another user is not
 * offered). LOGIN asks "Username:" then "Password:"; an initial response
 * is taken as the user name.
 *
 * The password is held only until sasl_clear(), which wipes it
 * (explicit_bzero). Nothing here logs.
 *
 *   sasl_mech_by_name(s, n)          SASL_NONE if unknown (case-insensitive)
 *   sasl_start(x, mech, ir, n, chal) ir NULL: no initial response; "=" is
 *                                    the empty one (RFC 4954 4)
 *   sasl_step(x, line, n, chal)      one client response
 *     both return SASL_CONTINUE (send "334 " + chal), SASL_DONE (x->user and
 *     x->pass are set), or an error: SASL_CANCEL, SASL_BAD_BASE64,
 *     SASL_BAD_MESSAGE
 *   sasl_clear(x)                    wipe and free; x is reusable
 */
#ifndef MW_AUTH_SASL_H
#define MW_AUTH_SASL_H

#include <stddef.h>

#include "core/buf.h"

/* The longest user name or password PLAIN and LOGIN take (RFC 4616: 255
 * octets of UTF-8 each); a password that is longer, or not UTF-8, can never
 * log in, so `mailwarden user` refuses to store one. */
#define SASL_MAX_FIELD 255

enum sasl_mech { SASL_NONE, SASL_PLAIN, SASL_LOGIN };

enum sasl_status {
    SASL_CONTINUE,
    SASL_DONE,
    SASL_CANCEL,
    SASL_BAD_BASE64,
    SASL_BAD_MESSAGE,
};

struct sasl {
    enum sasl_mech mech;
    int step;
    char *user;
    char *pass;
};

enum sasl_mech sasl_mech_by_name(const char *s, size_t n);
const char *sasl_mech_name(enum sasl_mech m);
enum sasl_status sasl_start(struct sasl *x, enum sasl_mech m, const char *ir, size_t n,
                            struct buf *chal);
enum sasl_status sasl_step(struct sasl *x, const char *line, size_t n, struct buf *chal);
void sasl_clear(struct sasl *x);

#endif
