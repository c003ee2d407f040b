/*
 * data - the message-content decoder for DATA and BDAT.
 *
 * This is where the SMTP-smuggling defence lives. For DATA, only the
 * sequence <CRLF>.<CRLF> ends the content (the first CRLF may be the one
 * that ended the DATA command line). Every other line ending is examined:
 * a bare LF or a bare CR anywhere sets bad_newline, and after a bare line
 * ending the decoder is not at the beginning of a line, so variants such
 * as <LF>.<LF>, <LF>.<CRLF>, <CRLF>.<LF>, <CR>.<CR> and <CRLF>.<CR> never
 * end the message. Dot-stuffing is undone (RFC 5321 4.5.2). A NUL byte sets
 * nul. Bytes beyond max are counted but not stored (too_big).
 *
 * For BDAT, data_chunk() applies the same line-ending and NUL checks
 * across chunk boundaries, without dot handling.
 *
 * Errors are sticky: the caller reads to the end and replies once.
 */
#ifndef MW_SMTP_DATA_H
#define MW_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum data_state { DATA_BOL, DATA_MID, DATA_CR, DATA_DOT, DATA_DOT_CR };

struct data_decoder {
    enum data_state st;
    uint64_t size;     /* decoded bytes seen (stored or not) */
    uint64_t max;      /* store at most this many */
    bool bad_newline;
    bool nul;
    bool too_big;
};

void data_begin(struct data_decoder *d, uint64_t max);
/* DATA: decode up to n bytes into out; returns bytes consumed. *done is set
 * when the terminating <CRLF>.<CRLF> has been consumed. */
size_t data_decode(struct data_decoder *d, const char *p, size_t n, struct buf *out, bool *done);
/* BDAT: check and store one piece of chunk data (all n bytes consumed). */
void data_chunk(struct data_decoder *d, const char *p, size_t n, struct buf *out);
/* BDAT LAST: a CR pending at the very end is a bare CR. */
void data_chunk_end(struct data_decoder *d);
bool data_failed(const struct data_decoder *d);

#endif
