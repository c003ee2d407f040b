/*
 * header - RFC 5322 header fields of a message held in memory (CRLF lines;
 * a bare LF ends a line too, a CR before it belongs to the line break),
 * and the mailbox lists of From/Sender/To/Cc/Bcc.
 *
 * msg_next_field() walks the header one field at a time (a field is its
 * first line plus every continuation line starting with space or tab) and
 * stops at the empty line that ends the header, or at the end of the
 * message. White space between the name and the colon is the obsolete
 * syntax (RFC 5322 4.5.8): "From : x" is a From field, name "From". A
 * line without a colon, or whose name has other bytes than printable
 * ASCII, is malformed: it returns -1 (and *pos is past that line and its
 * continuation lines). Callers treat -1 as an error for the message,
 * never as a line to skip: msg_author() in author.h shows how.
 *
 * msg_parse_mailbox_list() reads an address-list field value: display
 * names, comments (nested), quoted strings and quoted local parts, angle
 * addresses, group syntax ("undisclosed-recipients:;", "team: a@b, c@d;"),
 * folding whitespace. It returns -1 for anything it cannot read as a list
 * of mailboxes with domains; then *out is NULL and *count 0. The domain is
 * in lower case, the local part as written (quotes removed). quirks says
 * what was legal but leaves room for a reader to see another address: an
 * obsolete route, a group, a comment inside the address, an encoded word
 * ("=?") in the local part or domain, an '@' inside a quoted local part.
 *
 *   msg_next_field(msg, n, &pos, &f)     1 a field, 0 end of header, -1 bad line
 *   msg_field_is(f, name)                case-insensitive field name test
 *   msg_parse_mailbox_list(v, n, &out, &count)   0 or -1
 *   msg_parse_address_list(v, n, flags, &out, &count)  the same with flags:
 *                                        MSG_ALLOW_NO_DOMAIN also reads a
 *                                        mailbox without "@domain" (domain
 *                                        ""), so that DMARC can tell "no
 *                                        domain" from "unreadable"
 *   msg_mailboxes_free(out, count)
 *   msg_body_offset(msg, n)              offset of the body (after the empty
 *                                        line), n if none
 */
#ifndef MW_MSG_HEADER_H
#define MW_MSG_HEADER_H

#include <stdbool.h>
#include <stddef.h>

struct msg_field {
    const char *name;
    size_t name_len;
    const char *value;       /* after the colon, raw (folded), without the last CRLF */
    size_t value_len;
    const char *raw;         /* the whole field, with its final CRLF */
    size_t raw_len;
};

#define MSG_MB_ROUTE 0x1         /* <@route:local@domain> */
#define MSG_MB_GROUP 0x2         /* inside "name: ... ;" */
#define MSG_MB_COMMENT 0x4       /* a comment between the tokens of the address */
#define MSG_MB_ENCODED 0x8       /* "=?" in the local part or domain */
#define MSG_MB_AT_IN_LOCAL 0x10  /* "a@b"@c */

struct msg_mailbox {
    char *local;
    char *domain;    /* "[...]" for a domain literal; "" only with MSG_ALLOW_NO_DOMAIN */
    unsigned quirks; /* MSG_MB_* */
};

#define MSG_ALLOW_NO_DOMAIN 0x1
#define MSG_MAX_MAILBOXES 10000   /* more in one list is -1 */

int msg_next_field(const char *msg, size_t n, size_t *pos, struct msg_field *f);
bool msg_field_is(const struct msg_field *f, const char *name);
int msg_parse_mailbox_list(const char *v, size_t n, struct msg_mailbox **out, size_t *count);
int msg_parse_address_list(const char *v, size_t n, unsigned flags, struct msg_mailbox **out,
                           size_t *count);
void msg_mailboxes_free(struct msg_mailbox *m, size_t n);
size_t msg_body_offset(const char *msg, size_t n);

#endif
