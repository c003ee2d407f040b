/*
 * report_agg.c - rows into aggregate reports; see report.h.
 *
 * Every row gives two keys, byte strings with NUL between the parts: the
 * report key (policy domain, p, sp, pct, adkim, aspf, the rua list) and
 * the record key (the report's index, then source IP, header From,
 * envelope From, disposition, the aligned verdicts, SPF domain, scope and
 * result, and the DKIM results sorted). One open-addressing hash table
 * maps both kinds of key to an index, so a day of rows costs memory per
 * distinct record, not per message.
 *
 * dmarc_rows_read() reads a stream in chunks and cuts lines itself: a line
 * longer than DMARC_ROW_MAX_LINE is skipped to its end without being held,
 * and a last line without '\n' (a write cut short) is reported, not used.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"
#include "dmarc/report.h"

struct slot {
    char *key;       /* NULL: empty */
    size_t len;
    uint64_t hash;
    size_t val;
};

struct dmarc_agg {
    struct slot *slots;
    size_t nslots, used;     /* nslots a power of two */
    struct dmarc_report *rep;
    size_t nrep;
};

/* ---- the table ----------------------------------------------------------------------- */

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static struct slot *find_slot(struct slot *slots, size_t nslots, const char *k, size_t n,
                              uint64_t h)
{
    for (size_t i = (size_t)h & (nslots - 1);; i = (i + 1) & (nslots - 1)) {
        struct slot *s = &slots[i];
        if (s->key == NULL || (s->hash == h && s->len == n && memcmp(s->key, k, n) == 0))
            return s;
    }
}

static void grow(struct dmarc_agg *a)
{
    size_t n = a->nslots ? a->nslots * 2 : 256;
    struct slot *ns = xcalloc(n, sizeof(*ns));
    for (size_t i = 0; i < a->nslots; i++)
        if (a->slots[i].key != NULL)
            *find_slot(ns, n, a->slots[i].key, a->slots[i].len, a->slots[i].hash) = a->slots[i];
    xfree(a->slots);
    a->slots = ns;
    a->nslots = n;
}

/* The index stored under key, or, if none, next (stored) and *fresh. */
static size_t lookup(struct dmarc_agg *a, const struct buf *key, size_t next, bool *fresh)
{
    if ((a->used + 1) * 10 > a->nslots * 7)
        grow(a);
    uint64_t h = fnv1a(buf_ptr(key), buf_size(key));
    struct slot *s = find_slot(a->slots, a->nslots, buf_ptr(key), buf_size(key), h);
    *fresh = s->key == NULL;
    if (*fresh) {
        *s = (struct slot){ xmemdup0(buf_ptr(key), buf_size(key)), buf_size(key), h, next };
        a->used++;
    }
    return s->val;
}

/* ---- keys ----------------------------------------------------------------------------- */

static void part(struct buf *k, const char *s)
{
    buf_append_str(k, s != NULL ? s : "");
    buf_append_byte(k, '\0');
}

static void report_key(struct buf *k, const struct dmarc_row *r)
{
    buf_reset(k);
    buf_printf(k, "R%s", r->policy_domain);
    buf_append_byte(k, '\0');
    buf_printf(k, "%d %d %u %d %d", (int)r->p, (int)r->sp, r->pct, (int)r->adkim, (int)r->aspf);
    buf_append_byte(k, '\0');
    for (size_t i = 0; i < r->nrua && i < DMARC_MAX_URIS; i++) {
        buf_printf(k, "%llu ", (unsigned long long)r->rua[i].max_size);
        part(k, r->rua[i].uri);
    }
}

static int cmp_dkim(const void *x, const void *y)
{
    const struct dmarc_row_dkim *a = x, *b = y;
    int c = strcmp(a->domain ? a->domain : "", b->domain ? b->domain : "");
    if (c == 0)
        c = strcmp(a->selector ? a->selector : "", b->selector ? b->selector : "");
    if (c == 0)
        c = strcmp(a->result ? a->result : "", b->result ? b->result : "");
    return c;
}

static void record_key(struct buf *k, size_t rep, const struct dmarc_row *r,
                       const char *ip, const struct dmarc_row_dkim *dk, size_t ndkim)
{
    buf_reset(k);
    buf_printf(k, "C%zu", rep);
    buf_append_byte(k, '\0');
    part(k, ip);
    part(k, r->header_from);
    part(k, r->envelope_from);
    buf_printf(k, "%d %d %d", (int)r->disposition, r->dkim_pass, r->spf_pass);
    buf_append_byte(k, '\0');
    part(k, r->spf_domain);
    part(k, r->spf_result);
    for (size_t i = 0; i < ndkim; i++) {
        part(k, dk[i].domain);
        part(k, dk[i].selector);
        part(k, dk[i].result);
    }
}

/* ---- adding rows -------------------------------------------------------------------------- */

static char *dup0(const char *s)
{
    return xstrdup(s != NULL ? s : "");
}

static void new_report(struct dmarc_report *rep, const struct dmarc_row *r)
{
    memset(rep, 0, sizeof(*rep));
    rep->domain = dup0(r->policy_domain);
    rep->p = r->p, rep->sp = r->sp, rep->pct = r->pct;
    rep->adkim = r->adkim, rep->aspf = r->aspf;
    rep->nrua = r->nrua < DMARC_MAX_URIS ? r->nrua : DMARC_MAX_URIS;
    rep->rua = xcalloc(rep->nrua ? rep->nrua : 1, sizeof(*rep->rua));
    for (size_t i = 0; i < rep->nrua; i++) {
        rep->rua[i] = r->rua[i];
        rep->rua[i].uri = dup0(r->rua[i].uri);
    }
    rep->begin = rep->end = r->when;
}

static void new_record(struct dmarc_agg_record *c, const struct dmarc_row *r, const char *ip,
                       const struct dmarc_row_dkim *dk, size_t ndkim)
{
    memset(c, 0, sizeof(*c));
    c->source_ip = xstrdup(ip);
    c->header_from = dup0(r->header_from);
    c->envelope_from = dup0(r->envelope_from);
    c->disposition = r->disposition;
    c->dkim_pass = r->dkim_pass;
    c->spf_pass = r->spf_pass;
    c->spf_domain = dup0(r->spf_domain);
    c->spf_result = dup0(r->spf_result && r->spf_result[0] ? r->spf_result : "none");
    c->spf_helo = r->envelope_from == NULL || r->envelope_from[0] == '\0';
    c->ndkim = ndkim;
    c->dkim = xcalloc(ndkim ? ndkim : 1, sizeof(*c->dkim));
    for (size_t i = 0; i < ndkim; i++)
        c->dkim[i] = (struct dmarc_agg_dkim){ dup0(dk[i].domain), dup0(dk[i].selector),
                                              dup0(dk[i].result) };
}

void dmarc_agg_add(struct dmarc_agg *a, const struct dmarc_row *r)
{
    struct buf k = { 0 };
    bool fresh;
    char ip[64];
    if (dmarc_ip_for_xml(r->source_ip ? r->source_ip : "", ip) < 0)
        snprintf(ip, sizeof(ip), "0.0.0.0");   /* rows from dmarc_row_parse never get here */
    report_key(&k, r);
    size_t ri = lookup(a, &k, a->nrep, &fresh);
    if (fresh) {
        a->rep = xreallocarray(a->rep, a->nrep + 1, sizeof(*a->rep));
        new_report(&a->rep[a->nrep++], r);
    }
    struct dmarc_report *rep = &a->rep[ri];
    struct dmarc_row_dkim dk[DMARC_ROW_MAX_DKIM];
    size_t ndkim = r->ndkim < DMARC_ROW_MAX_DKIM ? r->ndkim : DMARC_ROW_MAX_DKIM;
    memcpy(dk, r->dkim, ndkim * sizeof(*dk));
    qsort(dk, ndkim, sizeof(*dk), cmp_dkim);
    record_key(&k, ri, r, ip, dk, ndkim);
    size_t ci = lookup(a, &k, rep->nrec, &fresh);
    if (fresh) {
        rep->rec = xreallocarray(rep->rec, rep->nrec + 1, sizeof(*rep->rec));
        new_record(&rep->rec[rep->nrec++], r, ip, dk, ndkim);
    }
    rep->rec[ci].count++;
    rep->messages++;
    if (r->when < rep->begin)
        rep->begin = r->when;
    if (r->when > rep->end)
        rep->end = r->when;
    buf_free(&k);
}

bool dmarc_report_has_row(const struct dmarc_report *rep, const struct dmarc_row *r)
{
    if (strcmp(rep->domain, r->policy_domain ? r->policy_domain : "") != 0 || rep->p != r->p ||
        rep->sp != r->sp || rep->pct != r->pct || rep->adkim != r->adkim ||
        rep->aspf != r->aspf || rep->nrua != r->nrua)
        return false;
    for (size_t i = 0; i < rep->nrua; i++)
        if (rep->rua[i].max_size != r->rua[i].max_size ||
            strcmp(rep->rua[i].uri, r->rua[i].uri ? r->rua[i].uri : "") != 0)
            return false;
    return true;
}

/* ---- the rest of the interface -------------------------------------------------------------- */

struct dmarc_agg *dmarc_agg_new(void)
{
    return xcalloc(1, sizeof(struct dmarc_agg));
}

static void free_report(struct dmarc_report *rep)
{
    for (size_t i = 0; i < rep->nrec; i++) {
        struct dmarc_agg_record *c = &rep->rec[i];
        char *s[] = { c->source_ip, c->header_from, c->envelope_from, c->spf_domain,
                      c->spf_result };
        for (size_t j = 0; j < sizeof(s) / sizeof(s[0]); j++)
            xfree(s[j]);
        for (size_t j = 0; j < c->ndkim; j++) {
            xfree(c->dkim[j].domain);
            xfree(c->dkim[j].selector);
            xfree(c->dkim[j].result);
        }
        xfree(c->dkim);
    }
    for (size_t i = 0; i < rep->nrua; i++)
        xfree(rep->rua[i].uri);
    xfree(rep->rua);
    xfree(rep->rec);
    xfree(rep->domain);
}

void dmarc_agg_free(struct dmarc_agg *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->nslots; i++)
        xfree(a->slots[i].key);
    xfree(a->slots);
    for (size_t i = 0; i < a->nrep; i++)
        free_report(&a->rep[i]);
    xfree(a->rep);
    xfree(a);
}

size_t dmarc_agg_count(const struct dmarc_agg *a)
{
    return a->nrep;
}

const struct dmarc_report *dmarc_agg_report(const struct dmarc_agg *a, size_t i)
{
    return i < a->nrep ? &a->rep[i] : NULL;
}

/* ---- reading a stream ---------------------------------------------------------------------- */

struct reader {
    dmarc_row_cb cb;
    void *arg;
    const char *name;
    struct buf *errors;
    FILE *keep;
    bool keep_failed;
    size_t max_errors, lineno, nrows, nbad;
};

static void keep(struct reader *rd, const char *p, size_t n)
{
    if (rd->keep != NULL && n > 0 && fwrite(p, 1, n, rd->keep) != n)
        rd->keep_failed = true;
}

static void bad(struct reader *rd, const char *why)
{
    if (rd->errors != NULL && rd->nbad < rd->max_errors)
        buf_printf(rd->errors, "%s:%zu: %s\n", rd->name, rd->lineno, why);
    rd->nbad++;
}

static void one_line(struct reader *rd, const char *p, size_t n)
{
    struct dmarc_row_parsed pr;
    const char *why = NULL;
    if (dmarc_row_parse(p, n, &pr, &why) < 0) {
        bad(rd, why);
        keep(rd, p, n);
        keep(rd, "\n", 1);
        return;
    }
    rd->cb(rd->arg, &pr.row);
    dmarc_row_parsed_free(&pr);
    rd->nrows++;
}

/* Cut the chunk into lines; the part after the last '\n' stays in line. */
static void feed(struct reader *rd, struct buf *line, bool *skipping, const char *p,
                 const char *end)
{
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        if (!*skipping && buf_size(line) + n > DMARC_ROW_MAX_LINE) {
            *skipping = true;   /* never held: skipped to its end (and kept) */
            keep(rd, buf_ptr(line), buf_size(line));
            buf_reset(line);
        }
        if (!*skipping)
            buf_append(line, p, n);
        else
            keep(rd, p, n);
        if (nl == NULL)
            return;
        p = nl + 1;
        rd->lineno++;
        if (*skipping) {
            bad(rd, "line too long");
            keep(rd, "\n", 1);
        } else
            one_line(rd, buf_ptr(line), buf_size(line));
        *skipping = false;
        buf_reset(line);
    }
}

int dmarc_rows_read(FILE *f, const char *name, dmarc_row_cb cb, void *arg, struct buf *errors,
                    size_t max_errors, FILE *keep_to, size_t *nrows, size_t *nbad)
{
    struct reader rd = { .cb = cb, .arg = arg, .name = name, .errors = errors,
                         .max_errors = max_errors, .keep = keep_to };
    struct buf line = { 0 };
    char chunk[16384];
    bool skipping = false;
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        feed(&rd, &line, &skipping, chunk, chunk + got);
    int err = ferror(f) ? errno : 0;
    if (skipping || buf_size(&line) > 0) {
        rd.lineno++;
        bad(&rd, "last line has no newline (cut short); skipped");
        keep(&rd, buf_ptr(&line), buf_size(&line));
        keep(&rd, "\n", 1);
    }
    buf_free(&line);
    if (nrows != NULL)
        *nrows = rd.nrows;
    if (nbad != NULL)
        *nbad = rd.nbad;
    if (err == 0 && keep_to != NULL && (rd.keep_failed || fflush(keep_to) != 0))
        err = errno ? errno : EIO;
    if (err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}

static void add_cb(void *arg, const struct dmarc_row *r)
{
    dmarc_agg_add(arg, r);
}

int dmarc_agg_read(struct dmarc_agg *a, FILE *f, const char *name, struct buf *errors,
                   size_t max_errors, FILE *keep_to, size_t *nrows, size_t *nbad)
{
    return dmarc_rows_read(f, name, add_cb, a, errors, max_errors, keep_to, nrows, nbad);
}
