/*
 * addr - RFC 5321 paths and mailboxes (4.1.2), with RFC 6531 UTF-8.
 *
 * addr_parse_path() reads one "<...>" path at the start of s and stops at
 * the closing '>'; *used tells how many bytes it took so the caller can go
 * on with the ESMTP parameters. A source route (<@a,@b:user@c>) is accepted
 * and dropped, as RFC 5321 4.1.1.3 asks. Limits: local part 64 octets,
 * domain 255, path 256 (4.5.3.1). Address literals must be IPv4 or
 * "IPv6:" literals. Without ADDR_UTF8 any byte >= 0x80 is ADDR_ENONASCII;
 * with it, non-ASCII must be well-formed UTF-8, and a domain with U-labels
 * must be a valid IDNA2008 name (core/idna.h), else ADDR_ESYNTAX.
 *
 * The result holds the mailbox as written (text, without route), the local
 * part with quoting removed (local), and the domain in lower case.
 * Returns 0 or a negative enum addr_error; out is untouched on error.
 *
 * addr_helo_ok() tells whether a HELO/EHLO argument is a Domain or an
 * IPv4/IPv6 address literal (RFC 5321 4.1.1.1), in ASCII. It tolerates '_'
 * in labels, which Windows host names carry: it is no danger in a trace
 * field, unlike the quotes, parentheses and '@' that it refuses.
 */
#ifndef MW_MSG_ADDR_H
#define MW_MSG_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#define ADDR_ALLOW_NULL 0x1       /* "<>" is valid (reverse-path) */
#define ADDR_UTF8 0x2             /* SMTPUTF8 in effect */
#define ADDR_ALLOW_POSTMASTER 0x4 /* "<Postmaster>" with no domain (RCPT) */

#define ADDR_MAX_LOCAL 64
#define ADDR_MAX_DOMAIN 255
#define ADDR_MAX_PATH 256

enum addr_error {
    ADDR_ESYNTAX = -1,
    ADDR_ENONASCII = -2,
    ADDR_ETOOLONG = -3,
};

struct mail_addr {
    char *text;    /* mailbox as written: local@domain, "" for the null path */
    char *local;   /* local part, quotes and quoted-pairs removed */
    char *domain;  /* lower case; "" for null path or bare postmaster */
    bool null;     /* the null reverse-path <> */
    bool utf8;     /* contains non-ASCII */
    bool literal;  /* domain is an address literal [..] */
    bool quoted;   /* local part was a quoted-string */
};

int addr_parse_path(const char *s, size_t n, unsigned flags, struct mail_addr *out, size_t *used);
bool addr_helo_ok(const char *s, size_t n);
void addr_free(struct mail_addr *a);
void addr_copy(struct mail_addr *dst, const struct mail_addr *src);
const char *addr_strerror(int err);

#endif
