/*
 * log - one logfmt line per event.
 *
 * A line is built with log_begin(), key/value calls, and written with
 * log_end() in a single write(2) so that lines from threads never
 * interleave. Every value is escaped: a value that is not a plain token of
 * printable ASCII is double-quoted with \" \\ \n \r \t and \xNN escapes, so
 * untrusted bytes can neither forge keys nor break lines. Secrets must
 * never be passed in; AUTH data is masked by the caller.
 *
 *   ts=2026-11-28T07:30:00.123Z level=info event=connect session=... client=...
 *
 * log_kv() is a convenience for string pairs ending in NULL.
 */
#ifndef MW_CORE_LOG_H
#define MW_CORE_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum mw_log_level { MW_LOG_DEBUG, MW_LOG_INFO, MW_LOG_WARN, MW_LOG_ERROR };

struct log_line {
    struct buf b;
    enum mw_log_level level;
};

void log_set_fd(int fd);
void log_set_level(enum mw_log_level level);

void log_begin(struct log_line *l, enum mw_log_level level, const char *event);
void log_str(struct log_line *l, const char *key, const char *val);
void log_mem(struct log_line *l, const char *key, const char *val, size_t n);
void log_u64(struct log_line *l, const char *key, uint64_t val);
void log_end(struct log_line *l);

/* log_kv(level, event, key1, val1, key2, val2, ..., NULL) */
void log_kv(enum mw_log_level level, const char *event, ...);

/* Append the escaped form of val to b (exposed for tests). */
void log_escape(struct buf *b, const char *val, size_t n);

#endif
