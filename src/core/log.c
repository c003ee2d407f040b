#include "core/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_fd = 2;
static enum mw_log_level log_min = MW_LOG_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_set_fd(int fd) { log_fd = fd; }
void log_set_level(enum mw_log_level level) { log_min = level; }

static int plain_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '=' && c != '\\';
}

void log_escape(struct buf *b, const char *val, size_t n)
{
    size_t i;
    for (i = 0; i < n && plain_byte((unsigned char)val[i]); i++)
        ;
    if (n > 0 && i == n) {
        buf_append(b, val, n);
        return;
    }
    buf_append_byte(b, '"');
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)val[i];
        switch (c) {
        case '"': buf_append(b, "\\\"", 2); break;
        case '\\': buf_append(b, "\\\\", 2); break;
        case '\n': buf_append(b, "\\n", 2); break;
        case '\r': buf_append(b, "\\r", 2); break;
        case '\t': buf_append(b, "\\t", 2); break;
        default:
            if (c >= 0x20 && c < 0x7f)
                buf_append_byte(b, (char)c);
            else
                buf_printf(b, "\\x%02x", c);
        }
    }
    buf_append_byte(b, '"');
}

void log_begin(struct log_line *l, enum mw_log_level level, const char *event)
{
    struct timeval tv;
    struct tm tm;
    char ts[32];

    buf_init(&l->b);
    l->level = level;
    if (level < log_min)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    buf_printf(&l->b, "ts=%s.%03dZ level=%s event=", ts, (int)(tv.tv_usec / 1000),
               level_names[level]);
    log_escape(&l->b, event, strlen(event));
}

void log_mem(struct log_line *l, const char *key, const char *val, size_t n)
{
    if (l->level < log_min || val == NULL)
        return;
    buf_printf(&l->b, " %s=", key);
    log_escape(&l->b, val, n);
}

void log_str(struct log_line *l, const char *key, const char *val)
{
    if (val != NULL)
        log_mem(l, key, val, strlen(val));
}

void log_u64(struct log_line *l, const char *key, uint64_t val)
{
    if (l->level < log_min)
        return;
    buf_printf(&l->b, " %s=%" PRIu64, key, val);
}

void log_end(struct log_line *l)
{
    if (l->level >= log_min) {
        buf_append_byte(&l->b, '\n');
        const char *p = buf_ptr(&l->b);
        size_t n = buf_size(&l->b);
        while (n > 0) {
            ssize_t w = write(log_fd, p, n);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                break;
            }
            p += w;
            n -= (size_t)w;
        }
    }
    buf_free(&l->b);
}

void log_kv(enum mw_log_level level, const char *event, ...)
{
    struct log_line l;
    va_list ap;
    const char *k;

    log_begin(&l, level, event);
    va_start(ap, event);
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        log_str(&l, k, v);
    }
    va_end(ap);
    log_end(&l);
}
