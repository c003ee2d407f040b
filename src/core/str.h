/*
 * str - bounded string helpers for untrusted input.
 *
 * Everything here takes (pointer, length) and never reads past it, never
 * relies on a terminating NUL. Numbers are parsed only through str_to_u64,
 * which accepts plain decimal digits and rejects empty input, signs, spaces
 * and values above the caller's maximum.
 *
 *   str_to_u64(s, n, max, &out)   0 ok, -1 not a number or out of range
 *   str_all_digits(s, n)          n > 0 and every byte an ASCII digit
 *   str_ieq(a, n, lit)            ASCII case-insensitive equality with a literal
 *   str_iprefix(a, n, lit)        ... prefix test
 *   str_lower(s)                  ASCII lowercase in place
 *   str_utf8_valid(s, n)          well-formed UTF-8 (no overlongs, no surrogates)
 */
#ifndef MW_CORE_STR_H
#define MW_CORE_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int str_to_u64(const char *s, size_t n, uint64_t max, uint64_t *out);
bool str_all_digits(const char *s, size_t n);
bool str_ieq(const char *a, size_t n, const char *lit);
bool str_iprefix(const char *a, size_t n, const char *lit);
void str_lower(char *s);
bool str_utf8_valid(const char *s, size_t n);
/* Copy at most dstsize-1 bytes and terminate; returns strlen(src). */
size_t str_lcpy(char *dst, const char *src, size_t dstsize);

static inline char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }
static inline bool ascii_digit(char c) { return c >= '0' && c <= '9'; }
static inline bool ascii_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
/* The value of a hex digit of either case, or -1. */
static inline int ascii_hex_value(char c)
{
    if (ascii_digit(c))
        return c - '0';
    c = ascii_lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

#endif
