/*
 * base64.c - RFC 4648 section 4 encoding; see base64.h.
 */
#include "core/base64.h"

#include <stdbool.h>
#include <stdint.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int b64_decode(const char *s, size_t n, unsigned flags, struct buf *out)
{
    uint32_t acc = 0;
    unsigned bits = 0, count = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if ((flags & B64_SKIP_WS) && is_ws(c))
            continue;
        if (c == '=') {
            if (++pad > 2)
                return -1;
            count++;
            continue;
        }
        int v = b64_val(c);
        if (v < 0 || pad > 0)
            return -1;
        count++;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf_append_byte(out, (char)((acc >> bits) & 0xff));
        }
    }
    if (count % 4 != 0)
        return -1;
    if (pad > 0 && bits / 2 != pad) /* "x===" or "xx=" with the wrong count */
        return -1;
    return 0;
}

void b64_encode(const void *p, size_t n, struct buf *out)
{
    const unsigned char *b = p;
    buf_reserve(out, 4 * ((n + 2) / 3) + 1);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)b[i + 1] << 8;
        if (i + 2 < n)
            v |= b[i + 2];
        char q[4] = {
            alphabet[(v >> 18) & 63],
            alphabet[(v >> 12) & 63],
            i + 1 < n ? alphabet[(v >> 6) & 63] : '=',
            i + 2 < n ? alphabet[v & 63] : '=',
        };
        buf_append(out, q, 4);
    }
    buf_reserve(out, 1);
    out->data[out->len] = '\0';
}
