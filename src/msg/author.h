/*
 * author - who a reader would say wrote a message: the one header reader
 * behind every decision that depends on From (DMARC, the sender binding of
 * authenticated mail, the DKIM signing domain).
 *
 * msg_author() walks the whole header section with msg_next_field() and
 * reads From the strict way, so that no consumer can see a different
 * author than another, or than a mail reader would show:
 *   - every header line must be a field: a line msg_next_field() cannot
 *     read (no colon, a name with control or 8-bit bytes, a continuation
 *     line before the first field) is MSG_AUTHOR_BAD_HEADER, never skipped;
 *   - "From", "FROM" and the obsolete "From :" / "From\t:" are all From;
 *     exactly one From field, and at most one Sender field;
 *   - the From value must parse as an address list (msg_parse_address_list,
 *     mailboxes without a domain kept with domain "");
 *   - an address with a quirk (route, group, comment inside the address,
 *     encoded word in the local part or domain, '@' in a quoted local
 *     part) is MSG_AUTHOR_AMBIGUOUS: legal or obsolete syntax that readers
 *     have been shown to display as another address.
 * The status is the first problem found; mb/count hold the From mailboxes
 * whenever the From field was read (also for MAILBOXES and AMBIGUOUS), and
 * line the 1-based header line of the problem (0 when none).
 *
 *   msg_author(msg, n, &a)         fills a; returns a.status
 *   msg_author_free(&a)
 *   msg_author_strerror(status)    a short English reason
 */
#ifndef MW_MSG_AUTHOR_H
#define MW_MSG_AUTHOR_H

#include <stddef.h>

#include "msg/header.h"

enum msg_author_status {
    MSG_AUTHOR_OK,            /* one From, one mailbox (domain may be "") */
    MSG_AUTHOR_BAD_HEADER,    /* a header line that is not a field */
    MSG_AUTHOR_MISSING,       /* no From field */
    MSG_AUTHOR_MULTIPLE,      /* several From fields */
    MSG_AUTHOR_SENDER,        /* several Sender fields, or one that cannot be read */
    MSG_AUTHOR_SYNTAX,        /* the From value cannot be read */
    MSG_AUTHOR_AMBIGUOUS,     /* a From mailbox with a quirk (see above) */
    MSG_AUTHOR_MAILBOXES,     /* several mailboxes in From */
};

struct msg_author {
    enum msg_author_status status;
    struct msg_mailbox *mb;
    size_t count;
    size_t line;
};

enum msg_author_status msg_author(const char *msg, size_t n, struct msg_author *a);
void msg_author_free(struct msg_author *a);
const char *msg_author_strerror(enum msg_author_status s);

#endif
