/*
 * id - session and queue identifiers.
 *
 * An id is 16 upper-case hex digits: 13 for the microseconds since the
 * epoch, 3 for a per-process counter mixed with random bits. Ids sort by
 * creation time, are safe as file names and log tokens, and are unique in
 * practice; the queue still creates files with O_EXCL and asks for a new id
 * on the rare collision.
 */
#ifndef MW_CORE_ID_H
#define MW_CORE_ID_H

#include <stdbool.h>
#include <stddef.h>

#define ID_LEN 16

void id_new(char out[ID_LEN + 1]);
/* True when s is exactly ID_LEN hex digits (upper case). */
bool id_valid(const char *s, size_t n);

#endif
