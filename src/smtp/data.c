#include "smtp/data.h"

#include <string.h>

void data_begin(struct data_decoder *d, uint64_t max)
{
    memset(d, 0, sizeof(*d));
    d->st = DATA_BOL;
    d->max = max;
}

bool data_failed(const struct data_decoder *d)
{
    return d->bad_newline || d->nul || d->too_big;
}

static void emit(struct data_decoder *d, struct buf *out, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (!data_failed(d) && d->size + n <= d->max)
        buf_append(out, p, n);
    else if (d->size + n > d->max)
        d->too_big = true;
    d->size += n;
}

/* Length of the run of bytes needing no special treatment. */
static size_t plain_run(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] != '\r' && p[i] != '\n' && p[i] != '\0')
        i++;
    return i;
}

size_t data_decode(struct data_decoder *d, const char *p, size_t n, struct buf *out, bool *done)
{
    size_t i = 0;
    *done = false;
    while (i < n) {
        char c = p[i];
        switch (d->st) {
        case DATA_BOL:
            if (c == '.') {
                d->st = DATA_DOT;
                i++;
                continue;
            }
            d->st = DATA_MID;
            continue;
        case DATA_DOT:
            if (c == '\r') {
                d->st = DATA_DOT_CR;
                i++;
                continue;
            }
            /* A leading dot followed by more text: it was stuffing. */
            d->st = DATA_MID;
            continue;
        case DATA_DOT_CR:
            if (c == '\n') {
                *done = true;
                return i + 1;
            }
            /* "." CR x: the dot was content and the CR is bare. */
            emit(d, out, ".\r", 2);
            d->bad_newline = true;
            d->st = DATA_MID;
            continue;
        case DATA_CR:
            if (c == '\n') {
                emit(d, out, "\r\n", 2);
                d->st = DATA_BOL;
                i++;
                continue;
            }
            emit(d, out, "\r", 1);
            d->bad_newline = true;
            d->st = DATA_MID;
            continue;
        case DATA_MID: {
            size_t run = plain_run(p + i, n - i);
            if (run) {
                emit(d, out, p + i, run);
                i += run;
                continue;
            }
            if (c == '\r') {
                d->st = DATA_CR;
            } else if (c == '\n') {
                /* Bare LF: content, flagged, and not a line start. */
                emit(d, out, "\n", 1);
                d->bad_newline = true;
            } else {
                emit(d, out, "\0", 1);
                d->nul = true;
            }
            i++;
            continue;
        }
        }
    }
    return i;
}

void data_chunk(struct data_decoder *d, const char *p, size_t n, struct buf *out)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (d->st == DATA_CR) {
            if (c != '\n')
                d->bad_newline = true;
            d->st = DATA_MID;
            if (c == '\n')
                continue;
        }
        if (c == '\r')
            d->st = DATA_CR;
        else if (c == '\n')
            d->bad_newline = true;
        else if (c == '\0')
            d->nul = true;
    }
    emit(d, out, p, n);
}

void data_chunk_end(struct data_decoder *d)
{
    if (d->st == DATA_CR)
        d->bad_newline = true;
    d->st = DATA_MID;
}
