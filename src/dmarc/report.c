/*
 * report.c - DMARC aggregate report rows; see report.h.
 */
#include "dmarc/report.h"

#include <string.h>

static void put(struct buf *out, const char *v)
{
    static const char hex[] = "0123456789ABCDEF";
    if (v == NULL || v[0] == '\0') {
        buf_append_byte(out, '-');
        return;
    }
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p < 0x21 || *p > 0x7e || *p == '%' || *p == ',' || *p == ':' || *p == '!' ||
            (*p == '-' && p == (const unsigned char *)v && p[1] == '\0')) {
            buf_append_byte(out, '%');
            buf_append_byte(out, hex[*p >> 4]);
            buf_append_byte(out, hex[*p & 15]);
        } else {
            buf_append_byte(out, (char)*p);
        }
    }
}

static void field(struct buf *out, const char *v)
{
    buf_append_byte(out, '\t');
    put(out, v);
}

void dmarc_row_format(const struct dmarc_row *r, struct buf *out)
{
    buf_printf(out, "DMARC1\t%lld", (long long)r->when);
    field(out, r->source_ip);
    field(out, r->header_from);
    field(out, r->envelope_from);
    field(out, r->policy_domain);
    field(out, dmarc_policy_name(r->p));
    field(out, dmarc_policy_name(r->sp));
    buf_printf(out, "\t%u", r->pct);
    field(out, r->adkim == DMARC_STRICT ? "s" : "r");
    field(out, r->aspf == DMARC_STRICT ? "s" : "r");
    field(out, dmarc_policy_name(r->disposition));
    field(out, r->dkim_pass ? "pass" : "fail");
    field(out, r->spf_pass ? "pass" : "fail");
    field(out, r->spf_domain);
    field(out, r->spf_result);
    buf_append_byte(out, '\t');
    if (r->ndkim == 0)
        buf_append_byte(out, '-');
    for (size_t i = 0; i < r->ndkim && i < DMARC_ROW_MAX_DKIM; i++) {
        if (i)
            buf_append_byte(out, ',');
        put(out, r->dkim[i].domain);
        buf_append_byte(out, ':');
        put(out, r->dkim[i].selector);
        buf_append_byte(out, ':');
        put(out, r->dkim[i].result);
    }
    buf_append_byte(out, '\t');
    if (r->nrua == 0)
        buf_append_byte(out, '-');
    for (size_t i = 0; i < r->nrua; i++) {
        if (i)
            buf_append_byte(out, ',');
        put(out, r->rua[i].uri);
        if (r->rua[i].max_size)
            buf_printf(out, "!%llu", (unsigned long long)r->rua[i].max_size);
    }
    buf_append_byte(out, '\n');
}
