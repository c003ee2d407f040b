/*
 * send_msg - the I/O-free parts of `mailwarden send` / sendmail: the
 * sendmail command line, reading the message, recipients, and the header
 * clean-up a submission agent owes the message (as Postfix's cleanup does).
 *
 *   send_parse_args(argc, argv, a, err)
 *       sendmail options (see the table in send_msg.c): attached or separate
 *       arguments (-fADDR, -f ADDR), grouped flags (-ti), options anywhere
 *       before "--", harmless sendmail options accepted and ignored.
 *       0 ok, 1 --help, -1 usage error (one line in err).
 *   send_read_message(in, dot_ends, max, out)
 *       the message with every line ending (CRLF, LF, lone CR) made CRLF
 *       and a final CRLF added; with dot_ends a line holding only "." ends
 *       it (classic sendmail without -i). 0, or a negative SEND_READ_*.
 *   send_add_rcpts(list, text, domain, rcpts, err)
 *       every address of an address list ("a@b", "Bob <b@c>", "root",
 *       groups, comments) added to rcpts, unqualified ones completed with
 *       domain, each checked as an RFC 5321 mailbox, duplicates dropped.
 *       0, or -1 with the reason in err.
 *   send_qualify(addr, domain, out, err)   one address, as above
 *   send_prepare(msg, n, o, out, rcpts, err)
 *       the message to submit: a leading mbox "From " line dropped; the
 *       header ends at the empty line or at the first line that is not a
 *       header field (an empty line is inserted there); Bcc fields removed;
 *       From, Date and Message-ID added when missing; the body unchanged.
 *       With o->extract the To, Cc and Bcc addresses go into rcpts.
 *       0, or -1 (an address list that cannot be read) with err set.
 *   send_format_date(t, out)    RFC 5322 date, local time, numeric zone
 *   send_format_from(name, addr, out)   "Name <addr>" with the name quoted
 *       or RFC 2047-encoded as needed; control characters become spaces
 *
 * Trusts nothing in the message or the arguments; every output address has
 * passed addr_parse_path, so no CR, LF or '>' reaches an SMTP command.
 */
#ifndef MW_CLI_SEND_MSG_H
#define MW_CLI_SEND_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "core/buf.h"

struct send_args {
    const char *sender;    /* -f / -r; NULL when not given, "" or "<>" the null path */
    const char *fullname;  /* -F */
    const char *config;    /* -C */
    bool extract;          /* -t */
    bool ignore_dots;      /* -i, -oi */
    bool verbose;          /* -v */
    const char **rcpts;    /* the operands */
    size_t nrcpts;
};

struct send_rcpts {
    char **v;
    size_t n;
};

enum {
    SEND_READ_EIO = -1,    /* read error */
    SEND_READ_ETOOBIG = -2,
    SEND_READ_ENUL = -3,   /* a NUL byte */
};

struct send_header_opts {
    const char *from_addr; /* for a missing From field */
    const char *fullname;  /* -F, or NULL */
    const char *domain;    /* unqualified addresses */
    const char *date;      /* a formatted date for a missing Date */
    const char *msgid;     /* "<...>" for a missing Message-ID */
    bool extract;          /* -t */
};

int send_parse_args(int argc, char **argv, struct send_args *a, struct buf *err);
void send_args_free(struct send_args *a);
int send_read_message(FILE *in, bool dot_ends, size_t max, struct buf *out);
int send_qualify(const char *addr, const char *domain, struct buf *out, struct buf *err);
int send_add_rcpts(const char *text, size_t n, const char *domain, struct send_rcpts *rcpts,
                   struct buf *err);
void send_rcpts_free(struct send_rcpts *r);
int send_prepare(const char *msg, size_t n, const struct send_header_opts *o, struct buf *out,
                 struct send_rcpts *rcpts, struct buf *err);
void send_format_date(time_t t, struct buf *out);
void send_format_from(const char *name, const char *addr, struct buf *out);

#endif
