/*
 * reply - an I/O-free parser for SMTP replies (RFC 5321 4.2), as a client
 * reads them: the `send` command today, outbound delivery later.
 *
 * The caller feeds whatever bytes it has read; the parser takes them up to
 * the end of one complete reply and says how many it used, so bytes that
 * follow (a pipelined reply, or bytes a server must not have sent yet)
 * stay with the caller. Feeding whole or one byte at a time gives the same
 * result.
 *
 * Accepted: lines "NNN-text" ... "NNN text" (or "NNN" alone, "NNN-" with
 * no text), where NNN is 2xx..5xx with a second digit 0..5; every line of
 * one reply carries the same code. Lines end in CRLF; a bare LF is
 * tolerated and recorded (reply.bare_lf). The text is printable ASCII,
 * HT, and well-formed UTF-8; NUL, other controls and a CR inside a line
 * are refused. A line may hold SMTP_REPLY_LINE_MAX bytes before its CRLF
 * (RFC 5321 4.5.3.1.5 allows 512; we allow the 1000-byte text line limit
 * plus slack) and a reply at most SMTP_REPLY_MAX_LINES lines.
 *
 * An RFC 3463 enhanced status code ("2.1.0 ") at the start of a line whose
 * class equals the reply's first digit is split off into reply.enhanced
 * (taken from the first line) and removed from each line's text.
 *
 *   smtp_reply_parser_init            a fresh parser (no allocation)
 *   smtp_reply_parser_reset           drop a partial reply and a sticky
 *                                     error, release memory (call it when
 *                                     done with the parser)
 *   smtp_reply_feed(p, in, n, &used, &r)
 *       SMTP_REPLY_DONE: r holds one reply (smtp_reply_free it), *used
 *       bytes were taken; SMTP_REPLY_MORE: all n bytes taken, no reply yet;
 *       a negative enum smtp_reply_error: garbage (sticky until reset; the
 *       connection cannot be trusted any more), *used up to the bad byte.
 *   smtp_reply_line(r, i, &len)       text of line i (not NUL-terminated
 *                                     in general; len bytes)
 *   smtp_reply_strerror(err)
 */
#ifndef MW_SMTP_REPLY_H
#define MW_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

#define SMTP_REPLY_LINE_MAX 1024
#define SMTP_REPLY_MAX_LINES 100

enum smtp_reply_status {
    SMTP_REPLY_MORE = 0,
    SMTP_REPLY_DONE = 1,
};

enum smtp_reply_error {
    SMTP_REPLY_ESYNTAX = -1,  /* not "NNN", "NNN-..." or "NNN ..." */
    SMTP_REPLY_ECODE = -2,    /* lines of one reply disagree on the code */
    SMTP_REPLY_ETOOLONG = -3, /* a line over SMTP_REPLY_LINE_MAX */
    SMTP_REPLY_ETOOMANY = -4, /* more than SMTP_REPLY_MAX_LINES lines */
    SMTP_REPLY_ECHAR = -5,    /* NUL, control, bare CR or bad UTF-8 */
};

struct smtp_reply {
    unsigned code;                /* 200..559 */
    char enhanced[12];            /* "5.7.1", or "" */
    struct buf text;              /* the lines' texts, each ended by '\n' */
    size_t off[SMTP_REPLY_MAX_LINES + 1]; /* line i is text[off[i] .. off[i+1]-1) */
    size_t nlines;
    bool bare_lf;                 /* some line ended in LF without CR */
};

struct smtp_reply_parser {
    char line[SMTP_REPLY_LINE_MAX + 1]; /* + the CR awaiting its LF */
    size_t len;
    struct smtp_reply cur;
    int error;                    /* sticky: 0 or an smtp_reply_error */
};

void smtp_reply_parser_init(struct smtp_reply_parser *p);
void smtp_reply_parser_reset(struct smtp_reply_parser *p);
int smtp_reply_feed(struct smtp_reply_parser *p, const char *in, size_t n, size_t *used,
                    struct smtp_reply *out);
const char *smtp_reply_line(const struct smtp_reply *r, size_t i, size_t *len);
void smtp_reply_free(struct smtp_reply *r);
const char *smtp_reply_strerror(int err);

/* The reply's class: 2, 3, 4 or 5. */
static inline unsigned smtp_reply_class(const struct smtp_reply *r) { return r->code / 100; }

#endif
