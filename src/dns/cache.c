/*
 * cache.c - a positive and negative answer cache in front of a resolver
 * backend (the libunbound one), so that the lookups an SPF, DKIM or DMARC
 * check repeats within seconds are answered in the calling thread.
 *
 * An answer is kept for its TTL, at most max_ttl seconds; NXDOMAIN and
 * NODATA for neg_ttl seconds. Temporary failures and bogus answers are
 * never cached. The DNSSEC state is kept with the answer. A hit calls back
 * before dns_resolve() returns, which dns.h allows. The table is bounded:
 * when it is full it is emptied (simple, and rare at the sizes used).
 */
#include <string.h>
#include <time.h>

#include "core/str.h"
#include "core/xmalloc.h"
#include "dns/dns.h"

#define CACHE_BUCKETS 4096

struct centry {
    struct centry *next;
    char *name;             /* lower case */
    enum dns_type type;
    time_t expires;         /* monotonic seconds */
    enum dns_status status;
    enum dns_sec sec;
    struct dns_rr *rr;
    size_t n;
};

struct cache {
    struct dns_resolver inner;
    struct centry *b[CACHE_BUCKETS];
    size_t count, max;
    unsigned max_ttl, neg_ttl;
};

struct pending {
    struct cache *c;
    char *name;
    enum dns_type type;
    dns_cb cb;
    void *arg;
};

static time_t now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static unsigned hash(const char *name, enum dns_type type)
{
    unsigned h = 2166136261u ^ (unsigned)type;
    for (; *name; name++)
        h = (h ^ (unsigned char)*name) * 16777619u;
    return h % CACHE_BUCKETS;
}

static void entry_free(struct centry *e)
{
    dns_answer_free_records(e->rr, e->n);
    xfree(e->name);
    xfree(e);
}

static void clear(struct cache *c)
{
    for (size_t i = 0; i < CACHE_BUCKETS; i++) {
        while (c->b[i]) {
            struct centry *e = c->b[i];
            c->b[i] = e->next;
            entry_free(e);
        }
    }
    c->count = 0;
}

static struct dns_rr *copy_records(const struct dns_rr *rr, size_t n)
{
    if (n == 0)
        return NULL;
    struct dns_rr *out = xcalloc(n, sizeof(*out));
    memcpy(out, rr, n * sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        switch (rr[i].type) {
        case DNS_T_MX: out[i].u.mx.host = xstrdup(rr[i].u.mx.host); break;
        case DNS_T_NS:
        case DNS_T_CNAME:
        case DNS_T_PTR: out[i].u.name = xstrdup(rr[i].u.name); break;
        case DNS_T_TXT:
            out[i].u.txt.data = xmemdup0(rr[i].u.txt.data, rr[i].u.txt.len);
            break;
        case DNS_T_TLSA:
            out[i].u.tlsa.data = (uint8_t *)xmemdup0(rr[i].u.tlsa.data, rr[i].u.tlsa.len);
            break;
        case DNS_T_A:
        case DNS_T_AAAA: break;
        }
    }
    return out;
}

static struct centry *find(struct cache *c, const char *name, enum dns_type type, time_t now)
{
    struct centry **pp = &c->b[hash(name, type)];
    while (*pp) {
        struct centry *e = *pp;
        if (e->expires <= now) {  /* drop expired entries as we pass */
            *pp = e->next;
            entry_free(e);
            c->count--;
            continue;
        }
        if (e->type == type && strcmp(e->name, name) == 0)
            return e;
        pp = &e->next;
    }
    return NULL;
}

static void store(struct cache *c, const char *name, enum dns_type type,
                  const struct dns_answer *a)
{
    unsigned ttl;
    if (a->status == DNS_OK) {
        ttl = c->max_ttl;
        for (size_t i = 0; i < a->n; i++)
            if (a->rr[i].ttl < ttl)
                ttl = a->rr[i].ttl;
    } else if (a->status == DNS_NXDOMAIN || a->status == DNS_NODATA) {
        ttl = c->neg_ttl;
    } else {
        return;  /* failures and bogus answers are asked again */
    }
    if (ttl == 0 || a->sec == DNS_SEC_BOGUS)
        return;
    if (c->count >= c->max)
        clear(c);
    struct centry *e = xcalloc(1, sizeof(*e));
    e->name = xstrdup(name);
    e->type = type;
    e->expires = now_mono() + (time_t)ttl;
    e->status = a->status;
    e->sec = a->sec;
    e->rr = copy_records(a->rr, a->n);
    e->n = a->rr ? a->n : 0;
    unsigned h = hash(name, type);
    e->next = c->b[h];
    c->b[h] = e;
    c->count++;
}

static void inner_done(void *arg, const struct dns_answer *a)
{
    struct pending *p = arg;
    store(p->c, p->name, p->type, a);
    p->cb(p->arg, a);
    xfree(p->name);
    xfree(p);
}

static void cache_resolve(void *impl, const char *name, enum dns_type type, dns_cb cb, void *arg)
{
    struct cache *c = impl;
    char *key = xstrdup(name);
    size_t len = strlen(key);
    if (len > 1 && key[len - 1] == '.')
        key[len - 1] = '\0';
    str_lower(key);
    struct centry *e = find(c, key, type, now_mono());
    if (e) {
        struct dns_answer a = { .status = e->status, .sec = e->sec, .rr = e->rr, .n = e->n };
        xfree(key);
        cb(arg, &a);
        return;
    }
    struct pending *p = xcalloc(1, sizeof(*p));
    p->c = c;
    p->name = key;
    p->type = type;
    p->cb = cb;
    p->arg = arg;
    dns_resolve(&c->inner, name, type, inner_done, p);
}

static void cache_close(void *impl)
{
    struct cache *c = impl;
    dns_close(&c->inner);
    clear(c);
    xfree(c);
}

static const struct dns_backend cache_ops = { .resolve = cache_resolve, .close = cache_close };

void dns_cache_wrap(struct dns_resolver *r, size_t max_entries, unsigned max_ttl, unsigned neg_ttl)
{
    struct cache *c = xcalloc(1, sizeof(*c));
    c->inner = *r;
    c->max = max_entries ? max_entries : 1;
    c->max_ttl = max_ttl;
    c->neg_ttl = neg_ttl;
    r->ops = &cache_ops;
    r->impl = c;
}
