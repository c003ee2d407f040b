#include "core/buf.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/xmalloc.h"

void buf_init(struct buf *b)
{
    memset(b, 0, sizeof(*b));
}

void buf_free(struct buf *b)
{
    xfree(b->data);
    memset(b, 0, sizeof(*b));
}

void buf_reset(struct buf *b)
{
    b->len = b->off = 0;
    if (b->data)
        b->data[0] = '\0';
}

void buf_compact(struct buf *b)
{
    if (b->off == 0)
        return;
    size_t live = b->len - b->off;
    if (live)
        memmove(b->data, b->data + b->off, live);
    b->len = live;
    b->off = 0;
    b->data[b->len] = '\0';
}

void buf_reserve(struct buf *b, size_t extra)
{
    if (extra >= SIZE_MAX - b->len - 1)
        xreallocarray(NULL, SIZE_MAX, 2); /* aborts: size overflow */
    if (b->len + extra + 1 <= b->cap)
        return;
    /* Reclaim the consumed prefix before growing. */
    if (b->off > 0 && b->off >= b->cap / 2) {
        buf_compact(b);
        if (b->len + extra + 1 <= b->cap)
            return;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2)
            cap = b->len + extra + 1;
        else
            cap *= 2;
    }
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void buf_append(struct buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void buf_append_str(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_append_byte(struct buf *b, char c)
{
    buf_append(b, &c, 1);
}

void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    buf_reserve(b, 64);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    assert(n >= 0);
    if ((size_t)n >= b->cap - b->len) {
        buf_reserve(b, (size_t)n);
        n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap2);
        assert(n >= 0 && (size_t)n < b->cap - b->len);
    }
    va_end(ap2);
    b->len += (size_t)n;
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void buf_consume(struct buf *b, size_t n)
{
    assert(n <= b->len - b->off);
    b->off += n;
    if (b->off == b->len)
        buf_reset(b);
}
