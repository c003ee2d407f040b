/*
 * authres - a small builder for the Authentication-Results header field
 * (RFC 8601), shared by spf, dkim, dmarc and arc reporting.
 *
 *   authres_begin(a, authserv_id)             start "Authentication-Results: id"
 *   authres_method(a, method, result, reason) a new "; method=result (reason)"
 *                                             entry; reason may be NULL
 *   authres_prop(a, ptype, prop, value)       " ptype.prop=value" on the
 *                                             current entry
 *   authres_end(a, out)                       append the field (with "; none"
 *                                             when no method was added),
 *                                             folded at 78 columns, CRLF-ended;
 *                                             a is reset
 *
 * Values are written as a token, as "[local-part]@domain" (RFC 8601
 * pvalue), or else as a quoted-string. Reasons become comments: bytes
 * outside printable ASCII are replaced by '?', parentheses and backslashes
 * are escaped. The authserv-id is written as a token or quoted-string too.
 * Nothing here trusts its inputs to be clean.
 */
#ifndef MW_MSG_AUTHRES_H
#define MW_MSG_AUTHRES_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

struct authres {
    struct buf b;
    size_t col;
    bool any;
};

void authres_begin(struct authres *a, const char *authserv_id);
void authres_method(struct authres *a, const char *method, const char *result,
                    const char *reason);
void authres_prop(struct authres *a, const char *ptype, const char *prop, const char *value);
void authres_end(struct authres *a, struct buf *out);

/* Copy the message msg[0..len) to out without the Authentication-Results
 * fields in its header whose authserv-id is ours (compared without case):
 * only we may speak for our authserv-id (RFC 8601 5). Returns how many
 * fields were dropped; with 0, out holds nothing. */
size_t authres_strip_ours(const char *msg, size_t len, const char *authserv_id, struct buf *out);

#endif
