/*
 * dkim/hindex.c - the header fields of one message indexed by name, so
 * that picking the fields an h= list names costs one hash lookup each, not
 * a scan of the header: a message of 400,000 header lines and 16
 * signatures of 127 names each is then linear in the message, not in
 * their product. Contract in dkim_int.h.
 *
 * Names are hashed without case (FNV-1a over the lower-cased bytes) into
 * an open-addressing table of at least twice the number of fields; each
 * bucket holds its fields' indexes in message order in one shared array.
 * take() walks a bucket from the bottom, as RFC 6376 5.4.2 asks for
 * repeated names; reset() clears what the previous signature took by
 * walking only the buckets it touched.
 */
#include <string.h>
#include <strings.h>

#include "core/str.h"
#include "core/xmalloc.h"
#include "dkim/dkim_int.h"

struct hbucket {
    const char *name;     /* a field's name, NULL: empty bucket */
    size_t name_len;
    size_t first, count;  /* its indexes: pos[first .. first + count) */
    size_t taken;
    bool touched;
};

struct dkim_hindex {
    struct hbucket *b;
    size_t mask;
    size_t *pos;
    size_t *touched;      /* buckets with taken > 0 since the last reset */
    size_t ntouched;
};

static uint64_t name_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)ascii_lower(s[i]);
        h *= 0x100000001b3ULL;
    }
    return h;
}

static struct hbucket *find(const struct dkim_hindex *x, const char *name, size_t n, bool *empty)
{
    for (size_t i = (size_t)name_hash(name, n) & x->mask;; i = (i + 1) & x->mask) {
        struct hbucket *b = &x->b[i];
        if (b->name == NULL) {
            *empty = true;
            return b;
        }
        if (b->name_len == n && strncasecmp(b->name, name, n) == 0) {
            *empty = false;
            return b;
        }
    }
}

struct dkim_hindex *dkim_hindex_new(const struct dkim_hdr *h, size_t n)
{
    struct dkim_hindex *x = xcalloc(1, sizeof(*x));
    size_t cap = 16;
    while (cap < 2 * n + 2)
        cap *= 2;
    x->b = xcalloc(cap, sizeof(*x->b));
    x->mask = cap - 1;
    x->pos = xcalloc(n + 1, sizeof(*x->pos));
    x->touched = xcalloc(cap, sizeof(*x->touched));
    bool empty;
    for (size_t i = 0; i < n; i++) {   /* count per name */
        if (h[i].name_len == 0)
            continue;
        struct hbucket *b = find(x, h[i].p, h[i].name_len, &empty);
        if (empty)
            *b = (struct hbucket){ .name = h[i].p, .name_len = h[i].name_len };
        b->count++;
    }
    size_t next = 0;
    for (size_t i = 0; i < cap; i++) {  /* each bucket's slice */
        x->b[i].first = next;
        next += x->b[i].count;
        x->b[i].count = 0;
    }
    for (size_t i = 0; i < n; i++) {   /* fill, in message order */
        if (h[i].name_len == 0)
            continue;
        struct hbucket *b = find(x, h[i].p, h[i].name_len, &empty);
        x->pos[b->first + b->count++] = i;
    }
    return x;
}

void dkim_hindex_free(struct dkim_hindex *x)
{
    if (x == NULL)
        return;
    xfree(x->b);
    xfree(x->pos);
    xfree(x->touched);
    xfree(x);
}

void dkim_hindex_reset(struct dkim_hindex *x)
{
    for (size_t i = 0; i < x->ntouched; i++) {
        x->b[x->touched[i]].taken = 0;
        x->b[x->touched[i]].touched = false;
    }
    x->ntouched = 0;
}

long dkim_hindex_take(struct dkim_hindex *x, const char *name, size_t n)
{
    if (n == 0)
        return -1;
    bool empty;
    struct hbucket *b = find(x, name, n, &empty);
    if (empty || b->taken == b->count)
        return -1;
    if (!b->touched) {
        b->touched = true;
        x->touched[x->ntouched++] = (size_t)(b - x->b);
    }
    b->taken++;
    return (long)x->pos[b->first + b->count - b->taken];
}
