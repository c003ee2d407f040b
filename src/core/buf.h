/*
 * buf - the one growable byte buffer.
 *
 * A buf holds len bytes at data and keeps data[len] == '\0' so that text
 * built with it can be used as a C string; binary data with NULs is fine,
 * len is authoritative. Growth goes through xmalloc (never fails). An
 * optional read offset (off) lets a consumer drop a prefix cheaply: the
 * live bytes are data+off .. data+len; buf_compact() moves them down.
 *
 *   buf_init / buf_free        life cycle (a zeroed struct buf is valid)
 *   buf_append(_str, _byte)    add bytes
 *   buf_printf                 formatted append (vsnprintf, bounded)
 *   buf_consume(n)             drop n live bytes from the front
 *   buf_reset                  empty, keep the allocation
 */
#ifndef MW_CORE_BUF_H
#define MW_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t len;  /* end of live bytes */
    size_t off;  /* start of live bytes */
    size_t cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_append_str(struct buf *b, const char *s);
void buf_append_byte(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
void buf_consume(struct buf *b, size_t n);
void buf_compact(struct buf *b);

static inline const char *buf_ptr(const struct buf *b) { return b->data ? b->data + b->off : ""; }
static inline size_t buf_size(const struct buf *b) { return b->len - b->off; }

#endif
