/*
 * ratelimit.c - rate limiters and failure back-off; see ratelimit.h.
 *
 * Both are a `struct table`: a chained hash table of string keys with an
 * LRU list, holding at most max_keys entries (the least recently used is
 * dropped to make room). The keys come from the network (client IPs, AUTH
 * user names), so the hash is SipHash-1-3 with a per-table random key: no
 * one can aim many keys at one chain.
 *
 * rate, exact: when limit <= RATE_RING_MAX each key keeps the times of its
 * counted events in a ring (grown on demand up to limit slots) and counts
 * those less than window seconds old.
 *
 * rate, bucketed: for larger limits a ring of timestamps would cost too
 * much memory per key, so the window is cut into RATE_BUCKETS buckets of
 * ceil(window / RATE_BUCKETS) seconds, each holding a count. A bucket
 * counts while any second in it is inside the window, so an event is
 * forgotten up to (bucket width - 1) seconds late: the limiter may be a
 * little stricter than a true sliding window, never more lenient. When
 * window <= RATE_BUCKETS a bucket is one second and the count is exact.
 *
 * Time: a key's clock never goes backwards - if `now` is older than the
 * newest event of a key it is taken as that newest time (a stepped-back
 * system clock makes limits stricter for a while, not looser). Negative
 * times are taken as 0. All differences of times are computed unsigned.
 *
 * backoff: per key the failure count (saturating) and the time of the
 * last failure. The wait is base << (failures - threshold), capped at max,
 * computed without overflow.
 */
#include "policy/ratelimit.h"

#include <assert.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

#include "core/xmalloc.h"

#define RATE_RING_MAX 64u
#define RATE_BUCKETS 64u
#define RATE_RING_START 4u
#define TABLE_MIN_BUCKETS 16u

/* ---- time ---- */

static uint64_t time_u(time_t t) { return t < 0 ? 0 : (uint64_t)t; }

/* later - earlier for later >= earlier (both clamped to >= 0). */
static uint64_t elapsed(time_t earlier, time_t later)
{
    uint64_t a = time_u(earlier), b = time_u(later);
    return b > a ? b - a : 0;
}

/* ---- SipHash-1-3, 64-bit output ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void sip_round(uint64_t v[4])
{
    v[0] += v[1], v[1] = ROTL(v[1], 13), v[1] ^= v[0], v[0] = ROTL(v[0], 32);
    v[2] += v[3], v[3] = ROTL(v[3], 16), v[3] ^= v[2];
    v[0] += v[3], v[3] = ROTL(v[3], 21), v[3] ^= v[0];
    v[2] += v[1], v[1] = ROTL(v[1], 17), v[1] ^= v[2], v[2] = ROTL(v[2], 32);
}

static uint64_t load_le64(const unsigned char *p, size_t n)
{
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)p[i] << (8 * i);
    return w;
}

static uint64_t siphash13(const uint64_t k[2], const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    uint64_t v[4] = { k[0] ^ 0x736f6d6570736575ULL, k[1] ^ 0x646f72616e646f6dULL,
                      k[0] ^ 0x6c7967656e657261ULL, k[1] ^ 0x7465646279746573ULL };
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t m = load_le64(p + i, 8);
        v[3] ^= m;
        sip_round(v);
        v[0] ^= m;
    }
    uint64_t last = load_le64(p + i, n - i) | ((uint64_t)n << 56);
    v[3] ^= last;
    sip_round(v);
    v[0] ^= last;
    v[2] ^= 0xff;
    for (int r = 0; r < 3; r++)
        sip_round(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* ---- the table ---- */

struct rate_state {
    time_t newest;      /* latest time seen for this key */
    unsigned *counts;   /* bucketed: RATE_BUCKETS + 1 counts */
    time_t *stamps;     /* exact: ring of event times, oldest at head */
    unsigned cap, head, n;
    uint64_t last_bucket;
};

struct backoff_state {
    unsigned failures;
    time_t last;
};

struct entry {
    struct entry *chain;
    struct entry *newer, *older;  /* LRU list */
    uint64_t hash;
    char *key;
    union {
        struct rate_state rate;
        struct backoff_state bo;
    } u;
};

struct table {
    struct entry **buckets;
    size_t nbuckets, count, max_keys;
    struct entry lru;              /* sentinel: lru.newer oldest, lru.older newest */
    uint64_t seed[2];
    void (*drop)(struct entry *);  /* frees what an entry's payload holds */
};

static void table_init(struct table *t, size_t max_keys, void (*drop)(struct entry *))
{
    assert(max_keys > 0);
    memset(t, 0, sizeof(*t));
    t->max_keys = max_keys;
    t->drop = drop;
    t->nbuckets = TABLE_MIN_BUCKETS;
    t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
    t->lru.newer = t->lru.older = &t->lru;
    /* Without randomness the table still works, only its hash is guessable. */
    if (getrandom(t->seed, sizeof(t->seed), GRND_NONBLOCK) != (ssize_t)sizeof(t->seed)) {
        t->seed[0] = (uint64_t)(uintptr_t)t ^ 0x9e3779b97f4a7c15ULL;
        t->seed[1] = (uint64_t)(uintptr_t)&table_init;
    }
}

static void lru_unlink(struct entry *e)
{
    e->newer->older = e->older;
    e->older->newer = e->newer;
}

/* Put e at the newest end. */
static void lru_push(struct table *t, struct entry *e)
{
    e->older = t->lru.older;
    e->newer = &t->lru;
    t->lru.older->newer = e;
    t->lru.older = e;
}

static void entry_destroy(struct table *t, struct entry *e)
{
    if (t->drop != NULL)
        t->drop(e);
    xfree(e->key);
    xfree(e);
}

static void table_destroy(struct table *t)
{
    struct entry *e = t->lru.newer;
    while (e != &t->lru) {
        struct entry *next = e->newer;
        entry_destroy(t, e);
        e = next;
    }
    xfree(t->buckets);
}

static struct entry *table_find(struct table *t, const char *key, bool touch)
{
    uint64_t h = siphash13(t->seed, key, strlen(key));
    for (struct entry *e = t->buckets[h & (t->nbuckets - 1)]; e != NULL; e = e->chain) {
        if (e->hash == h && strcmp(e->key, key) == 0) {
            if (touch) {
                lru_unlink(e);
                lru_push(t, e);
            }
            return e;
        }
    }
    return NULL;
}

static void table_remove(struct table *t, struct entry *e)
{
    struct entry **pp = &t->buckets[e->hash & (t->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
    lru_unlink(e);
    t->count--;
    entry_destroy(t, e);
}

/* Double the bucket array so that chains stay short (load <= 1). */
static void table_grow(struct table *t)
{
    if (t->nbuckets > SIZE_MAX / 2 / sizeof(*t->buckets))
        return;
    size_t n = t->nbuckets * 2;
    struct entry **b = xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct entry *e = t->buckets[i];
        while (e != NULL) {
            struct entry *next = e->chain;
            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    xfree(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

/* A new, zeroed entry for key (not present), dropping the LRU one if full. */
static struct entry *table_insert(struct table *t, const char *key)
{
    if (t->count >= t->max_keys)
        table_remove(t, t->lru.newer);
    if (t->count >= t->nbuckets)
        table_grow(t);
    struct entry *e = xcalloc(1, sizeof(*e));
    e->key = xstrdup(key);
    e->hash = siphash13(t->seed, key, strlen(key));
    size_t i = e->hash & (t->nbuckets - 1);
    e->chain = t->buckets[i];
    t->buckets[i] = e;
    lru_push(t, e);
    t->count++;
    return e;
}

/* ---- rate ---- */

struct rate_limiter {
    struct table t;
    unsigned limit, window;
    bool bucketed;
    uint64_t width;  /* seconds per bucket */
};

static void rate_drop(struct entry *e)
{
    xfree(e->u.rate.stamps);
    xfree(e->u.rate.counts);
}

struct rate_limiter *rate_new(unsigned limit, unsigned window, size_t max_keys)
{
    assert(window > 0);
    struct rate_limiter *r = xcalloc(1, sizeof(*r));
    table_init(&r->t, max_keys, rate_drop);
    r->limit = limit;
    r->window = window;
    r->bucketed = limit > RATE_RING_MAX;
    r->width = window / RATE_BUCKETS + (window % RATE_BUCKETS != 0);
    return r;
}

void rate_free(struct rate_limiter *r)
{
    if (r == NULL)
        return;
    table_destroy(&r->t);
    xfree(r);
}

/* Exact mode: forget events at least window old; the number left. */
static unsigned ring_count(const struct rate_limiter *r, struct rate_state *s, time_t now)
{
    while (s->n > 0 && elapsed(s->stamps[s->head], now) >= r->window) {
        s->head = (s->head + 1) % s->cap;
        s->n--;
    }
    return s->n;
}

static void ring_add(const struct rate_limiter *r, struct rate_state *s, time_t now)
{
    if (s->n == s->cap) {
        unsigned cap = s->cap == 0 ? RATE_RING_START : s->cap * 2;
        if (cap > r->limit)
            cap = r->limit;
        time_t *st = xreallocarray(NULL, cap, sizeof(*st));
        for (unsigned i = 0; i < s->n; i++)
            st[i] = s->stamps[(s->head + i) % s->cap];
        xfree(s->stamps);
        s->stamps = st;
        s->cap = cap;
        s->head = 0;
    }
    s->stamps[(s->head + s->n) % s->cap] = now;
    s->n++;
}

/* Bucketed mode: clear buckets that time has left behind; the sum of the
 * buckets that still hold a second inside the window. */
static unsigned bucket_count(const struct rate_limiter *r, struct rate_state *s, time_t now)
{
    const uint64_t slots = RATE_BUCKETS + 1, u = time_u(now), idx = u / r->width;
    if (s->counts == NULL) {
        s->counts = xcalloc(slots, sizeof(*s->counts));
        s->last_bucket = idx;
    }
    if (idx - s->last_bucket >= slots) {
        memset(s->counts, 0, slots * sizeof(*s->counts));
    } else {
        for (uint64_t j = s->last_bucket + 1; j <= idx; j++)
            s->counts[j % slots] = 0;
    }
    s->last_bucket = idx;
    uint64_t first = u < r->window ? 0 : (u - r->window + 1) / r->width;
    unsigned sum = 0;
    for (uint64_t j = first; j <= idx; j++)
        sum += s->counts[j % slots];
    return sum;
}

bool rate_allow(struct rate_limiter *r, const char *key, time_t now)
{
    struct entry *e = table_find(&r->t, key, true);
    if (e == NULL)
        e = table_insert(&r->t, key);
    struct rate_state *s = &e->u.rate;
    if (now < s->newest)
        now = s->newest;
    s->newest = now;
    unsigned used = r->bucketed ? bucket_count(r, s, now) : ring_count(r, s, now);
    if (used >= r->limit)
        return false;
    if (r->bucketed)
        s->counts[s->last_bucket % (RATE_BUCKETS + 1)]++;
    else
        ring_add(r, s, now);
    return true;
}

/* ---- backoff ---- */

struct backoff {
    struct table t;
    unsigned threshold, base, max;
};

struct backoff *backoff_new(unsigned threshold, unsigned base, unsigned max, size_t max_keys)
{
    struct backoff *b = xcalloc(1, sizeof(*b));
    table_init(&b->t, max_keys, NULL);
    b->threshold = threshold;
    b->base = base;
    b->max = max;
    return b;
}

void backoff_free(struct backoff *b)
{
    if (b == NULL)
        return;
    table_destroy(&b->t);
    xfree(b);
}

/* The delay after `failures` failures: base << (failures - threshold),
 * at most max; 0 below the threshold. */
static unsigned backoff_delay(const struct backoff *b, unsigned failures)
{
    if (failures < b->threshold)
        return 0;
    unsigned shift = failures - b->threshold;
    if (shift >= sizeof(unsigned) * CHAR_BIT || b->base > (b->max >> shift))
        return b->max;
    return b->base << shift;
}

/* The entry for key, or NULL if there is none or its failures are stale
 * (more than max seconds since the last one; then it is dropped). */
static struct entry *backoff_live(struct backoff *b, const char *key, time_t now)
{
    struct entry *e = table_find(&b->t, key, true);
    if (e != NULL && elapsed(e->u.bo.last, now) > b->max) {
        table_remove(&b->t, e);
        return NULL;
    }
    return e;
}

unsigned backoff_wait(struct backoff *b, const char *key, time_t now)
{
    struct entry *e = backoff_live(b, key, now);
    if (e == NULL)
        return 0;
    unsigned delay = backoff_delay(b, e->u.bo.failures);
    uint64_t since = elapsed(e->u.bo.last, now);
    return since >= delay ? 0 : (unsigned)(delay - since);
}

void backoff_fail(struct backoff *b, const char *key, time_t now)
{
    struct entry *e = backoff_live(b, key, now);
    if (e == NULL)
        e = table_insert(&b->t, key);
    if (e->u.bo.failures < UINT_MAX)
        e->u.bo.failures++;
    if (now > e->u.bo.last || e->u.bo.failures == 1)
        e->u.bo.last = now;
}

unsigned backoff_failures(struct backoff *b, const char *key)
{
    struct entry *e = table_find(&b->t, key, false);
    return e == NULL ? 0 : e->u.bo.failures;
}

void backoff_clear(struct backoff *b, const char *key)
{
    struct entry *e = table_find(&b->t, key, false);
    if (e != NULL)
        table_remove(&b->t, e);
}

void backoff_forgive(struct backoff *b, const char *key)
{
    struct entry *e = table_find(&b->t, key, false);
    if (e != NULL && --e->u.bo.failures == 0)
        table_remove(&b->t, e);
}
