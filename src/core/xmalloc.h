/*
 * xmalloc - the one allocator wrapper.
 *
 * Every allocation in mailwarden goes through these functions. They never
 * return NULL: running out of memory, or a size computation that would
 * overflow, is treated as a bug-class failure and aborts loudly (STYLE 7).
 * xfree(NULL) is harmless.
 */
#ifndef MW_CORE_XMALLOC_H
#define MW_CORE_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
/* Copy len bytes and add a NUL: the result is always a C string. */
char *xmemdup0(const void *p, size_t len);
void xfree(void *p);

#endif
