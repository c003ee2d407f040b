/*
 * report_xml.c - the aggregate report document (RFC 7489 appendix C, in
 * the element order of the schema in rua-schema.xsd) and its gzip; see
 * report.h.
 *
 * Order: feedback = report_metadata (org_name, email, extra_contact_info?,
 * report_id, date_range (begin, end)), policy_published (domain, adkim,
 * aspf, p, sp), record+ (row (source_ip, count, policy_evaluated
 * (disposition, dkim, spf)), identifiers (envelope_from, header_from),
 * auth_results (dkim*, spf)). One spf result is always there, as the
 * schema asks: with no SPF check recorded it is "none" for the envelope
 * domain (or the header From domain for the null sender).
 */
#include <arpa/inet.h>
#include <limits.h>
#include <string.h>

#include <zlib.h>

#include "dmarc/report.h"

/* ---- text ------------------------------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at p that is an XML Char, or 0. */
static size_t xml_char_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return (c >= 0x20 || c == '\t' || c == '\n' || c == '\r') && c != 0x7f ? 1 : 0;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff || (cp >= 0x80 && cp < 0xa0))
        return 0;
    return len;
}

void dmarc_xml_escape(struct buf *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
    size_t n = strlen((const char *)p);
    for (size_t i = 0; i < n;) {
        size_t len = xml_char_len(p + i, n - i);
        if (len == 0) {
            buf_append_byte(out, '?');
            i++;
            continue;
        }
        switch (p[i]) {
        case '&': buf_append_str(out, "&amp;"); break;
        case '<': buf_append_str(out, "&lt;"); break;
        case '>': buf_append_str(out, "&gt;"); break;
        case '"': buf_append_str(out, "&quot;"); break;
        case '\'': buf_append_str(out, "&apos;"); break;
        case '\t': buf_append_str(out, "&#9;"); break;
        case '\n': buf_append_str(out, "&#10;"); break;
        case '\r': buf_append_str(out, "&#13;"); break;
        default: buf_append(out, p + i, len); break;
        }
        i += len;
    }
}

int dmarc_ip_for_xml(const char *ip, char out[64])
{
    unsigned char a[16];
    if (strlen(ip) < 64 && inet_pton(AF_INET, ip, a) == 1) {
        inet_ntop(AF_INET, a, out, 64);
        return 0;
    }
    if (strlen(ip) >= 64 || inet_pton(AF_INET6, ip, a) != 1)
        return -1;
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (memcmp(a, mapped, sizeof(mapped)) == 0) {
        inet_ntop(AF_INET, a + 12, out, 64);
        return 0;
    }
    /* Eight groups, no "::": the schema's pattern knows no other form. */
    snprintf(out, 64, "%x:%x:%x:%x:%x:%x:%x:%x", a[0] << 8 | a[1], a[2] << 8 | a[3],
             a[4] << 8 | a[5], a[6] << 8 | a[7], a[8] << 8 | a[9], a[10] << 8 | a[11],
             a[12] << 8 | a[13], a[14] << 8 | a[15]);
    return 0;
}

void dmarc_report_identity(const char *org, const char *email, const char *hostname,
                           struct buf *org_out, struct buf *email_out)
{
    buf_reset(org_out);
    buf_reset(email_out);
    buf_append_str(org_out, org != NULL && org[0] ? org : hostname);
    if (email != NULL && email[0])
        buf_append_str(email_out, email);
    else
        buf_printf(email_out, "postmaster@%s", hostname);
}

/* ---- the document ------------------------------------------------------------------------ */

static void elem(struct buf *out, int depth, const char *name, const char *text)
{
    buf_printf(out, "%*s<%s>", depth * 2, "", name);
    dmarc_xml_escape(out, text);
    buf_printf(out, "</%s>\n", name);
}

static void open_tag(struct buf *out, int depth, const char *name)
{
    buf_printf(out, "%*s<%s>\n", depth * 2, "", name);
}

static void close_tag(struct buf *out, int depth, const char *name)
{
    buf_printf(out, "%*s</%s>\n", depth * 2, "", name);
}

static void metadata(struct buf *out, const struct dmarc_report *r,
                     const struct dmarc_report_meta *m)
{
    char num[32];
    open_tag(out, 1, "report_metadata");
    elem(out, 2, "org_name", m->org_name);
    elem(out, 2, "email", m->email);
    if (m->extra_contact_info != NULL && m->extra_contact_info[0])
        elem(out, 2, "extra_contact_info", m->extra_contact_info);
    elem(out, 2, "report_id", m->report_id);
    open_tag(out, 2, "date_range");
    snprintf(num, sizeof(num), "%lld", (long long)r->begin);
    elem(out, 3, "begin", num);
    snprintf(num, sizeof(num), "%lld", (long long)r->end);
    elem(out, 3, "end", num);
    close_tag(out, 2, "date_range");
    close_tag(out, 1, "report_metadata");
    open_tag(out, 1, "policy_published");
    elem(out, 2, "domain", r->domain);
    elem(out, 2, "adkim", r->adkim == DMARC_STRICT ? "s" : "r");
    elem(out, 2, "aspf", r->aspf == DMARC_STRICT ? "s" : "r");
    elem(out, 2, "p", dmarc_policy_name(r->p));
    elem(out, 2, "sp", dmarc_policy_name(r->sp));
    close_tag(out, 1, "policy_published");
}

static void auth_results(struct buf *out, const struct dmarc_agg_record *c)
{
    open_tag(out, 2, "auth_results");
    for (size_t i = 0; i < c->ndkim; i++) {
        open_tag(out, 3, "dkim");
        elem(out, 4, "domain", c->dkim[i].domain);
        elem(out, 4, "selector", c->dkim[i].selector);
        elem(out, 4, "result", c->dkim[i].result);
        close_tag(out, 3, "dkim");
    }
    const char *spf_domain = c->spf_domain;
    if (spf_domain[0] == '\0')
        spf_domain = c->envelope_from[0] ? c->envelope_from : c->header_from;
    open_tag(out, 3, "spf");
    elem(out, 4, "domain", spf_domain);
    elem(out, 4, "scope", c->spf_helo ? "helo" : "mfrom");
    elem(out, 4, "result", c->spf_result[0] ? c->spf_result : "none");
    close_tag(out, 3, "spf");
    close_tag(out, 2, "auth_results");
}

static void record(struct buf *out, const struct dmarc_agg_record *c)
{
    char num[32];
    open_tag(out, 1, "record");
    open_tag(out, 2, "row");
    elem(out, 3, "source_ip", c->source_ip);
    snprintf(num, sizeof(num), "%llu", (unsigned long long)c->count);
    elem(out, 3, "count", num);
    open_tag(out, 3, "policy_evaluated");
    elem(out, 4, "disposition", dmarc_policy_name(c->disposition));
    elem(out, 4, "dkim", c->dkim_pass ? "pass" : "fail");
    elem(out, 4, "spf", c->spf_pass ? "pass" : "fail");
    close_tag(out, 3, "policy_evaluated");
    close_tag(out, 2, "row");
    open_tag(out, 2, "identifiers");
    elem(out, 3, "envelope_from", c->envelope_from);
    elem(out, 3, "header_from", c->header_from);
    close_tag(out, 2, "identifiers");
    auth_results(out, c);
    close_tag(out, 1, "record");
}

void dmarc_report_xml(const struct dmarc_report *r, const struct dmarc_report_meta *m,
                      struct buf *out)
{
    buf_append_str(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n");
    metadata(out, r, m);
    for (size_t i = 0; i < r->nrec; i++)
        record(out, &r->rec[i]);
    buf_append_str(out, "</feedback>\n");
}

/* ---- gzip ---------------------------------------------------------------------------------- */

int dmarc_gzip(const void *p, size_t n, struct buf *out)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    /* windowBits 15 + 16: a gzip header and trailer instead of zlib's. */
    if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    const unsigned char *in = p;
    size_t left = n;
    int rc;
    do {
        uInt take = left > UINT_MAX / 2 ? UINT_MAX / 2 : (uInt)left;
        z.next_in = (unsigned char *)in;
        z.avail_in = take;
        in += take;
        left -= take;
        int flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
        do {
            buf_reserve(out, 65536);
            z.next_out = (unsigned char *)out->data + out->len;
            z.avail_out = 65536;
            rc = deflate(&z, flush);
            out->len += 65536 - z.avail_out;
            out->data[out->len] = '\0';
        } while (rc == Z_OK && (z.avail_out == 0 || flush == Z_FINISH));
    } while (left > 0 && rc == Z_OK);
    deflateEnd(&z);
    return rc == Z_STREAM_END ? 0 : -1;
}
