/*
 * base64 - RFC 4648 base64 with the standard alphabet and padding.
 *
 * Decoding is strict: a character outside the alphabet, padding that is
 * not at the end or of the wrong length, or a length that is not a
 * multiple of four fails. With B64_SKIP_WS, space, tab, CR and LF are
 * ignored anywhere (DKIM's folded b= and p= values); without it they fail
 * too (SASL responses, RFC 4954 4).
 *
 *   b64_decode(s, n, flags, out)   appends the bytes to out; 0 or -1
 *                                  (out may hold a partial result on -1)
 *   b64_encode(p, n, out)          appends the encoding, NUL-terminated
 */
#ifndef MW_CORE_BASE64_H
#define MW_CORE_BASE64_H

#include <stddef.h>

#include "core/buf.h"

#define B64_SKIP_WS 0x1

int b64_decode(const char *s, size_t n, unsigned flags, struct buf *out);
void b64_encode(const void *p, size_t n, struct buf *out);

#endif
