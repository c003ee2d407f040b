/*
 * ext - I/O-free pieces every SMTP client here shares (`mailwarden send`,
 * outbound delivery): what an EHLO reply offers, and the message as it
 * goes out after DATA.
 *
 *   smtp_ext_parse(ehlo, ext)    the keywords of an EHLO reply (RFC 5321
 *                                4.1.1.1; line 0, the server's name, skipped)
 *   smtp_dot_stuff(p, n, bol, out)
 *       append p[0..n) to out dot-stuffed (RFC 5321 4.5.2); *bol: "at the
 *       start of a line", true before the first chunk and carried between
 *       chunks
 *   smtp_data_encode(p, n, st, out)
 *       the same, and every line end CRLF: a bare CR or LF in a stored
 *       message goes out as CRLF, so no byte sequence in it can end the
 *       data early at the next hop (SMTP smuggling); st starts zeroed
 *   smtp_data_end(st, out)       ".\r\n", after a CRLF if the data did not
 *                                end with one
 *   smtp_xtext_decode(v, n, out) RFC 3461 4 xtext (hexchar upper case):
 *                                0, or -1 if malformed; out NUL-terminated
 *   smtp_xtext_encode(s, out)    the other way
 *   smtp_dsn_notify_parse(v, n)  a NOTIFY= value: SMTP_NOTIFY_* bits, 0 if
 *                                malformed (NEVER with another word, an
 *                                unknown or repeated word)
 */
#ifndef MW_SMTP_EXT_H
#define MW_SMTP_EXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "msg/dsn.h"
#include "smtp/reply.h"

#define SMTP_AUTH_PLAIN 0x1
#define SMTP_AUTH_LOGIN 0x2

/* What the server's EHLO reply offered. */
struct smtp_ext {
    bool starttls, pipelining, eightbitmime, smtputf8, enhancedstatuscodes, chunking, dsn;
    bool auth;             /* any AUTH keyword */
    unsigned auth_mechs;   /* SMTP_AUTH_* we know among those offered */
    bool size;             /* SIZE offered */
    uint64_t size_max;     /* its limit; 0 = none given */
};

void smtp_ext_parse(const struct smtp_reply *ehlo, struct smtp_ext *ext);
void smtp_dot_stuff(const char *p, size_t n, bool *bol, struct buf *out);

struct smtp_data_state {
    bool mid_line;   /* the last byte written was not the end of a line */
    bool cr;         /* the last byte seen was a CR (its LF may follow) */
};
void smtp_data_encode(const char *p, size_t n, struct smtp_data_state *st, struct buf *out);
void smtp_data_end(struct smtp_data_state *st, struct buf *out);
/* For BDAT (RFC 3030): p[0..n) with every bare CR or LF made CRLF, not
 * dot-stuffed, ending in CRLF. */
void smtp_crlf_only(const char *p, size_t n, struct buf *out);
int smtp_xtext_decode(const char *v, size_t n, struct buf *out);
void smtp_xtext_encode(const char *s, struct buf *out);
unsigned smtp_dsn_notify_parse(const char *v, size_t n);
/* "NEVER" or e.g. "SUCCESS,FAILURE"; "" for 0. */
void smtp_dsn_notify_format(unsigned notify, struct buf *out);

#endif
