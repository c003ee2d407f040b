/*
 * test_dmarc_report - DMARC aggregate reports (dmarc/report.h).
 *
 * 1. Rows: format -> parse -> format round trips with hostile values
 *    (TAB, CR, LF, '%', list separators, a lone "-", UTF-8, bytes >= 0x80,
 *    IPv6); a table of bad rows with the reason each gets, every one also
 *    parsed from a heap block of exactly its length; streams through
 *    dmarc_rows_read with "name:line: why" errors, lines across chunk
 *    boundaries, an over-long line and a last line cut short.
 * 2. Aggregation: grouping and counts, DKIM sets in any order, reports
 *    split by policy and rua list, the date range, dmarc_report_has_row.
 * 3. The document: XML escaping, IP forms, element order, the identity
 *    defaults; gzip round trips through zlib.
 * 4. The mail: headers, CRLF only, base64 folded at 76 and decoding to the
 *    gzip, the file name, no header injection; mailto: URIs.
 * 5. The external destination check over a zone file (dns_zone_parse):
 *    same organization (no DNS), authorized, denied, temperror, bad names,
 *    through dmarc_ext_check and the step interface.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "core/base64.h"
#include "core/buf.h"
#include "core/xmalloc.h"
#include "dmarc/report.h"
#include "dns/dns.h"
#include "dns/zone.h"

/* ------------------------------------------------------------------ rows */

static const struct dmarc_uri uris[] = {
    { .uri = "mailto:dmarc@localhost", .mailto = true },
    { .uri = "mailto:a!b,c:d%e@x.test", .max_size = 10485760, .mailto = true },
    { .uri = "https://r.example/x", .mailto = false },
};

static struct dmarc_row base_row(void)
{
    struct dmarc_row r = {
        .when = 1700000000, .source_ip = "192.0.2.1", .header_from = "example.com",
        .envelope_from = "mail.example.com", .policy_domain = "example.com",
        .p = DMARC_P_REJECT, .sp = DMARC_P_QUARANTINE, .pct = 50, .adkim = DMARC_STRICT,
        .aspf = DMARC_RELAXED, .disposition = DMARC_P_QUARANTINE, .dkim_pass = false,
        .spf_pass = true, .spf_domain = "mail.example.com", .spf_result = "pass",
        .ndkim = 2, .rua = uris, .nrua = 1,
    };
    r.dkim[0] = (struct dmarc_row_dkim){ "example.com", "sel1", "pass" };
    r.dkim[1] = (struct dmarc_row_dkim){ "other.test", "s2", "fail" };
    return r;
}

static void same_str(const char *a, const char *b)
{
    assert_string_equal(a != NULL ? a : "", b != NULL ? b : "");
}

static void assert_rows_equal(const struct dmarc_row *a, const struct dmarc_row *b)
{
    assert_int_equal(a->when, b->when);
    same_str(a->source_ip, b->source_ip);
    same_str(a->header_from, b->header_from);
    same_str(a->envelope_from, b->envelope_from);
    same_str(a->policy_domain, b->policy_domain);
    assert_int_equal(a->p, b->p);
    assert_int_equal(a->sp, b->sp);
    assert_int_equal(a->pct, b->pct);
    assert_int_equal(a->adkim, b->adkim);
    assert_int_equal(a->aspf, b->aspf);
    assert_int_equal(a->disposition, b->disposition);
    assert_int_equal(a->dkim_pass, b->dkim_pass);
    assert_int_equal(a->spf_pass, b->spf_pass);
    same_str(a->spf_domain, b->spf_domain);
    same_str(a->spf_result, b->spf_result);
    assert_int_equal(a->ndkim, b->ndkim);
    for (size_t i = 0; i < a->ndkim; i++) {
        same_str(a->dkim[i].domain, b->dkim[i].domain);
        same_str(a->dkim[i].selector, b->dkim[i].selector);
        same_str(a->dkim[i].result, b->dkim[i].result);
    }
    assert_int_equal(a->nrua, b->nrua);
    for (size_t i = 0; i < a->nrua; i++) {
        same_str(a->rua[i].uri, b->rua[i].uri);
        assert_int_equal(a->rua[i].max_size, b->rua[i].max_size);
        assert_int_equal(a->rua[i].mailto, b->rua[i].mailto);
    }
}

/* Parse line (without its '\n') from a heap block of exactly its length. */
static int parse_exact(const char *line, size_t n, struct dmarc_row_parsed *p, const char **why)
{
    char *copy = xmalloc(n ? n : 1);
    memcpy(copy, line, n);
    int r = dmarc_row_parse(copy, n, p, why);
    xfree(copy);
    return r;
}

static void round_trip(const struct dmarc_row *r)
{
    struct buf a = { 0 }, b = { 0 };
    dmarc_row_format(r, &a);
    assert_true(buf_size(&a) > 0 && a.data[a.len - 1] == '\n');
    assert_null(memchr(buf_ptr(&a), '\n', buf_size(&a) - 1));   /* always one line */
    assert_null(memchr(buf_ptr(&a), '\r', buf_size(&a)));
    struct dmarc_row_parsed p;
    const char *why = NULL;
    if (parse_exact(buf_ptr(&a), buf_size(&a) - 1, &p, &why) != 0)
        fail_msg("%s: %s", buf_ptr(&a), why);
    assert_rows_equal(r, &p.row);
    dmarc_row_format(&p.row, &b);
    assert_string_equal(buf_ptr(&a), buf_ptr(&b));
    dmarc_row_parsed_free(&p);
    buf_free(&a);
    buf_free(&b);
}

static void test_row_round_trip(void **state)
{
    (void)state;
    struct dmarc_row r = base_row();
    round_trip(&r);
    /* empty values, the null sender, no DKIM, several URIs */
    r.envelope_from = "", r.spf_domain = "", r.ndkim = 0, r.rua = uris, r.nrua = 3;
    round_trip(&r);
    /* hostile: separators, '%', a lone "-", controls, UTF-8, raw high bytes */
    r = base_row();
    r.header_from = "b\xc3\xbc" "cher.example";
    r.spf_domain = "helo\twith\r\nlines%and,commas:colons!bangs";
    r.dkim[0] = (struct dmarc_row_dkim){ "-", "\xff\xfe sel\t", "neutral" };
    r.dkim[1] = (struct dmarc_row_dkim){ "", "", "none" };
    r.source_ip = "2001:db8::ff";
    r.rua = uris + 1, r.nrua = 2;
    round_trip(&r);
    /* the limits: 16 DKIM results, 8 URIs */
    struct dmarc_uri many[DMARC_MAX_URIS];
    for (size_t i = 0; i < DMARC_MAX_URIS; i++)
        many[i] = (struct dmarc_uri){ .uri = "mailto:x@y.test", .max_size = i, .mailto = true };
    r = base_row();
    r.ndkim = DMARC_ROW_MAX_DKIM;
    for (size_t i = 0; i < DMARC_ROW_MAX_DKIM; i++)
        r.dkim[i] = (struct dmarc_row_dkim){ "d.test", "s", "temperror" };
    r.rua = many, r.nrua = DMARC_MAX_URIS;
    round_trip(&r);
    /* an exact line */
    struct buf b = { 0 };
    r = base_row();
    r.spf_domain = "-";
    dmarc_row_format(&r, &b);
    assert_string_equal(buf_ptr(&b),
                        "DMARC1\t1700000000\t192.0.2.1\texample.com\tmail.example.com\texample.com"
                        "\treject\tquarantine\t50\ts\tr\tquarantine\tfail\tpass\t%2D\tpass"
                        "\texample.com:sel1:pass,other.test:s2:fail\tmailto%3Admarc@localhost\n");
    buf_free(&b);
}

#define GOOD_HEAD "DMARC1\t1700000000\t192.0.2.1\tex.test\t-\tex.test\treject\tnone\t100\tr\tr"
#define GOOD_TAIL "\tnone\tfail\tpass\thelo.test\tpass\t-\t-"

static const struct {
    const char *line, *why;
} bad_rows[] = {
    { "", "not 18 tab-separated fields" },
    { "DMARC2" "\t1700000000\t192.0.2.1\tex.test\t-\tex.test\treject\tnone\t100\tr\tr" GOOD_TAIL,
      "not a DMARC1 row" },
    { GOOD_HEAD GOOD_TAIL "\t-", "not 18 tab-separated fields" },
    { GOOD_HEAD "\tnone\tfail\tpass\thelo.test\tpass\t-", "not 18 tab-separated fields" },
    { GOOD_HEAD GOOD_TAIL "\r", "CR at the end of the line" },
    { "DMARC1\t-1\t192.0.2.1\tex.test\t-\tex.test\treject\tnone\t100\tr\tr" GOOD_TAIL,
      "bad number" },
    { "DMARC1\t999999999999999\t192.0.2.1\tex.test\t-\tex.test\treject\tnone\t100\tr\tr" GOOD_TAIL,
      "bad number" },
    { "DMARC1\t1\t300.0.0.1\tex.test\t-\tex.test\treject\tnone\t100\tr\tr" GOOD_TAIL,
      "source IP is not an IP address" },
    { "DMARC1\t1\t-\tex.test\t-\tex.test\treject\tnone\t100\tr\tr" GOOD_TAIL,
      "source IP is not an IP address" },
    { "DMARC1\t1\t::1\tex.test\t-\tex.test\treject\tnone\t100\tr\tr" GOOD_TAIL,
      "byte that must be percent-encoded" },
    { "DMARC1\t1\t192.0.2.1\t-\t-\tex.test\treject\tnone\t100\tr\tr" GOOD_TAIL,
      "bad header From domain" },
    { "DMARC1\t1\t192.0.2.1\tex%20test\t-\tex.test\treject\tnone\t100\tr\tr" GOOD_TAIL,
      "bad header From domain" },
    { "DMARC1\t1\t192.0.2.1\tex%FFtest\t-\tex.test\treject\tnone\t100\tr\tr" GOOD_TAIL,
      "bad header From domain" },
    { "DMARC1\t1\t192.0.2.1\tex.test\t-\t-\treject\tnone\t100\tr\tr" GOOD_TAIL,
      "bad policy domain" },
    { "DMARC1\t1\t192.0.2.1\tex.test\ta%0Ab\tex.test\treject\tnone\t100\tr\tr" GOOD_TAIL,
      "bad envelope From domain" },
    { "DMARC1\t1\t192.0.2.1\tex%2\t-\tex.test\treject\tnone\t100\tr\tr" GOOD_TAIL,
      "bad percent-encoding" },
    { "DMARC1\t1\t192.0.2.1\tex%G0\t-\tex.test\treject\tnone\t100\tr\tr" GOOD_TAIL,
      "bad percent-encoding" },
    { "DMARC1\t1\t192.0.2.1\tex%00\t-\tex.test\treject\tnone\t100\tr\tr" GOOD_TAIL,
      "NUL byte in a value" },
    { "DMARC1\t1\t192.0.2.1\tex.test\t\tex.test\treject\tnone\t100\tr\tr" GOOD_TAIL,
      "empty value (an empty value is written -)" },
    { "DMARC1\t1\t192.0.2.1\tex.test\t-\tex.test\tmaybe\tnone\t100\tr\tr" GOOD_TAIL,
      "unknown keyword" },
    { "DMARC1\t1\t192.0.2.1\tex.test\t-\tex.test\treject\tnone\t101\tr\tr" GOOD_TAIL,
      "bad number" },
    { "DMARC1\t1\t192.0.2.1\tex.test\t-\tex.test\treject\tnone\t100\tx\tr" GOOD_TAIL,
      "unknown keyword" },
    { GOOD_HEAD "\tnone\tnone\tpass\thelo.test\tpass\t-\t-", "unknown keyword" },
    { GOOD_HEAD "\tnone\tfail\tpass\thelo.test\tunknown\t-\t-", "unknown SPF result" },
    { GOOD_HEAD "\tnone\tfail\tpass\thelo.test\tpass\ta:b\t-",
      "DKIM result is not domain:selector:result" },
    { GOOD_HEAD "\tnone\tfail\tpass\thelo.test\tpass\ta:b:c:d\t-",
      "DKIM result is not domain:selector:result" },
    { GOOD_HEAD "\tnone\tfail\tpass\thelo.test\tpass\ta:b:ok\t-", "unknown DKIM result" },
    { GOOD_HEAD "\tnone\tfail\tpass\thelo.test\tpass\ta:b:pass,\t-",
      "DKIM result is not domain:selector:result" },
    { GOOD_HEAD "\tnone\tfail\tpass\thelo.test\tpass\t"
      "a:b:pass,a:b:pass,a:b:pass,a:b:pass,a:b:pass,a:b:pass,a:b:pass,a:b:pass,"
      "a:b:pass,a:b:pass,a:b:pass,a:b:pass,a:b:pass,a:b:pass,a:b:pass,a:b:pass,a:b:pass\t-",
      "more than 16 DKIM results" },
    { GOOD_HEAD "\tnone\tfail\tpass\thelo.test\tpass\t-\tnoscheme", "rua URI without a scheme" },
    { GOOD_HEAD "\tnone\tfail\tpass\thelo.test\tpass\t-\tmailto%3Ax@y!0", "bad rua size" },
    { GOOD_HEAD "\tnone\tfail\tpass\thelo.test\tpass\t-\tmailto%3Ax@y!1k", "bad rua size" },
    { GOOD_HEAD "\tnone\tfail\tpass\thelo.test\tpass\t-\tmailto%3Ax@y!1!2",
      "rua URI with two sizes" },
    { GOOD_HEAD "\tnone\tfail\tpass\thelo.test\tpass\t-\ta%3Ab,a%3Ab,a%3Ab,a%3Ab,a%3Ab,a%3Ab,"
      "a%3Ab,a%3Ab,a%3Ab", "too many rua URIs" },
    { GOOD_HEAD "\tnone\tfail\tpass\thelo,test\tpass\t-\t-", "byte that must be percent-encoded" },
    { GOOD_HEAD "\tnone\tfail\tpass\thelo test\tpass\t-\t-", "byte that must be percent-encoded" },
};

static void test_row_bad(void **state)
{
    (void)state;
    struct dmarc_row_parsed p;
    const char *why = NULL;
    /* the good line the table varies */
    const char good[] = GOOD_HEAD GOOD_TAIL;
    assert_int_equal(parse_exact(good, sizeof(good) - 1, &p, &why), 0);
    assert_string_equal(p.row.envelope_from, "");
    dmarc_row_parsed_free(&p);
    for (size_t i = 0; i < sizeof(bad_rows) / sizeof(bad_rows[0]); i++) {
        why = NULL;
        int r = parse_exact(bad_rows[i].line, strlen(bad_rows[i].line), &p, &why);
        if (r != -1 || why == NULL || strcmp(why, bad_rows[i].why) != 0)
            fail_msg("row %zu (%s): got %d %s, want %s", i, bad_rows[i].line, r,
                     why ? why : "(null)", bad_rows[i].why);
        assert_null(p.mem);
    }
    /* every prefix of a good line parses or is refused, never crashes */
    for (size_t n = 0; n < sizeof(good) - 1; n++) {
        if (parse_exact(good, n, &p, &why) == 0)
            dmarc_row_parsed_free(&p);
    }
    /* the length cap */
    char *big = xmalloc(DMARC_ROW_MAX_LINE + 1);
    memset(big, 'a', DMARC_ROW_MAX_LINE + 1);
    assert_int_equal(dmarc_row_parse(big, DMARC_ROW_MAX_LINE + 1, &p, &why), -1);
    assert_string_equal(why, "line too long");
    xfree(big);
}

static int parse_formatted(const struct dmarc_row *r, struct dmarc_row_parsed *p)
{
    struct buf line = { 0 };
    dmarc_row_format(r, &line);
    assert_true(buf_size(&line) > 0 && line.data[buf_size(&line) - 1] == '\n');
    const char *why = NULL;
    int rc = dmarc_row_parse(buf_ptr(&line), buf_size(&line) - 1, p, &why);
    if (rc < 0)
        fail_msg("formatted row does not parse: %s", why);
    buf_free(&line);
    return rc;
}

/* The writer writes only what the reader takes: a spoof with a selector of
 * 256 bytes, or results that together pass the line cap, still makes a
 * row that is read and counted. */
static void test_row_writer_speaks_reader_language(void **state)
{
    (void)state;
    char *long_sel = xmalloc(257), *max_sel = xmalloc(256), *nasty = xmalloc(256);
    memset(long_sel, 's', 256), long_sel[256] = '\0';
    memset(max_sel, 'm', 255), max_sel[255] = '\0';
    memset(nasty, ',', 255), nasty[255] = '\0';   /* 765 bytes once encoded */
    struct dmarc_row r = base_row();
    struct dmarc_row_parsed p;
    r.dkim[0] = (struct dmarc_row_dkim){ "bogus.test", long_sel, "permerror" };
    r.dkim[1] = (struct dmarc_row_dkim){ "example.com", max_sel, "pass" };
    r.ndkim = 2;
    parse_formatted(&r, &p);
    assert_int_equal(p.row.ndkim, 1);                  /* the 256-byte one left out */
    assert_string_equal(p.row.dkim[0].selector, max_sel);
    assert_string_equal(p.row.source_ip, "192.0.2.1");
    dmarc_row_parsed_free(&p);
    /* 16 results of 2 x 765 encoded bytes: over DMARC_ROW_MAX_LINE; the
     * passes go first, the row stays under the cap */
    r = base_row();
    r.ndkim = DMARC_ROW_MAX_DKIM;
    for (size_t i = 0; i < DMARC_ROW_MAX_DKIM; i++)
        r.dkim[i] = (struct dmarc_row_dkim){ nasty, nasty, i == 15 ? "pass" : "fail" };
    parse_formatted(&r, &p);
    assert_true(p.row.ndkim > 0 && p.row.ndkim < DMARC_ROW_MAX_DKIM);
    assert_string_equal(p.row.dkim[0].result, "pass");
    dmarc_row_parsed_free(&p);
    /* every entry unusable: the row says no DKIM result, and is counted */
    r = base_row();
    r.dkim[0].selector = long_sel, r.dkim[1].domain = long_sel;
    parse_formatted(&r, &p);
    assert_int_equal(p.row.ndkim, 0);
    dmarc_row_parsed_free(&p);
    /* a rua URI the reader would refuse is left out of the row */
    char *long_uri = xmalloc(2100);
    memcpy(long_uri, "mailto:", 7), memset(long_uri + 7, 'u', 2090), long_uri[2097] = '\0';
    struct dmarc_uri two[2] = { { .uri = long_uri, .mailto = true }, uris[0] };
    r = base_row();
    r.rua = two, r.nrua = 2;
    parse_formatted(&r, &p);
    assert_int_equal(p.row.nrua, 1);
    assert_string_equal(p.row.rua[0].uri, "mailto:dmarc@localhost");
    dmarc_row_parsed_free(&p);
    xfree(long_uri);
    xfree(long_sel);
    xfree(max_sel);
    xfree(nasty);
}

static void count_cb(void *arg, const struct dmarc_row *r)
{
    size_t *n = arg;
    assert_string_equal(r->policy_domain, "ex.test");
    (*n)++;
}

static size_t read_text(const char *text, size_t len, struct buf *errors, size_t *nbad)
{
    FILE *f = fmemopen((void *)text, len, "r");
    assert_non_null(f);
    size_t rows = 0, seen = 0;
    assert_int_equal(dmarc_rows_read(f, "rows", count_cb, &seen, errors, 10, NULL, &rows, nbad), 0);
    fclose(f);
    assert_int_equal(rows, seen);
    return rows;
}

static void test_rows_stream(void **state)
{
    (void)state;
    const char good[] = GOOD_HEAD GOOD_TAIL "\n";
    struct buf text = { 0 }, errors = { 0 };
    size_t nbad = 0;
    buf_append_str(&text, good);
    buf_append_str(&text, "garbage\n");
    buf_append_str(&text, good);
    for (size_t i = 0; i < DMARC_ROW_MAX_LINE + 10; i++)
        buf_append_byte(&text, 'x');
    buf_append_byte(&text, '\n');
    /* many lines: some cross the reader's 16 KiB chunks */
    for (int i = 0; i < 500; i++)
        buf_append_str(&text, good);
    buf_append_str(&text, "DMARC1\t17000");   /* a write cut short */
    size_t rows = read_text(buf_ptr(&text), buf_size(&text), &errors, &nbad);
    assert_int_equal(rows, 502);
    assert_int_equal(nbad, 3);
    assert_string_equal(buf_ptr(&errors),
                        "rows:2: not 18 tab-separated fields\n"
                        "rows:4: line too long\n"
                        "rows:505: last line has no newline (cut short); skipped\n");
    /* with keep, every bad line is copied as it was */
    char *kept = NULL;
    size_t kept_len = 0;
    FILE *k = open_memstream(&kept, &kept_len);
    FILE *f = fmemopen((void *)buf_ptr(&text), buf_size(&text), "r");
    size_t seen = 0;
    assert_int_equal(dmarc_rows_read(f, "rows", count_cb, &seen, NULL, 0, k, NULL, NULL), 0);
    fclose(f);
    fclose(k);
    assert_int_equal(seen, 502);
    assert_int_equal(kept_len, strlen("garbage\n") + DMARC_ROW_MAX_LINE + 11 +
                                   strlen("DMARC1\t17000\n"));
    assert_memory_equal(kept, "garbage\nxxx", 11);
    assert_memory_equal(kept + kept_len - 14, "\nDMARC1\t17000\n", 14);
    free(kept);
    /* the error list is capped, the count is not */
    buf_reset(&text);
    buf_reset(&errors);
    for (int i = 0; i < 25; i++)
        buf_append_str(&text, "bad\n");
    assert_int_equal(read_text(buf_ptr(&text), buf_size(&text), &errors, &nbad), 0);
    assert_int_equal(nbad, 25);
    size_t lines = 0;
    for (size_t i = 0; i < buf_size(&errors); i++)
        lines += errors.data[i] == '\n';
    assert_int_equal(lines, 10);
    buf_free(&text);
    buf_free(&errors);
}

/* ------------------------------------------------------------ aggregation */

static const struct dmarc_agg_record *find_rec(const struct dmarc_report *rep, const char *ip,
                                               enum dmarc_policy dis)
{
    for (size_t i = 0; i < rep->nrec; i++)
        if (strcmp(rep->rec[i].source_ip, ip) == 0 && rep->rec[i].disposition == dis)
            return &rep->rec[i];
    return NULL;
}

static void test_aggregation(void **state)
{
    (void)state;
    struct dmarc_agg *a = dmarc_agg_new();
    struct dmarc_row r = base_row();
    dmarc_agg_add(a, &r);
    r.when = 1700000500;
    dmarc_agg_add(a, &r);
    /* the same DKIM results in the other order: the same record */
    r.dkim[0] = base_row().dkim[1];
    r.dkim[1] = base_row().dkim[0];
    r.when = 1699999000;
    dmarc_agg_add(a, &r);
    /* another disposition, another IP (written the long way) */
    r = base_row();
    r.disposition = DMARC_P_NONE;
    dmarc_agg_add(a, &r);
    r.source_ip = "::ffff:192.0.2.9";
    dmarc_agg_add(a, &r);
    /* another policy, another rua list, another domain: reports of their own */
    r = base_row();
    r.pct = 100;
    dmarc_agg_add(a, &r);
    r = base_row();
    r.rua = uris, r.nrua = 2;
    dmarc_agg_add(a, &r);
    r = base_row();
    r.policy_domain = "other.test";
    dmarc_agg_add(a, &r);

    assert_int_equal(dmarc_agg_count(a), 4);
    const struct dmarc_report *rep = dmarc_agg_report(a, 0);
    assert_string_equal(rep->domain, "example.com");
    assert_int_equal(rep->p, DMARC_P_REJECT);
    assert_int_equal(rep->sp, DMARC_P_QUARANTINE);
    assert_int_equal(rep->pct, 50);
    assert_int_equal(rep->adkim, DMARC_STRICT);
    assert_int_equal(rep->begin, 1699999000);
    assert_int_equal(rep->end, 1700000500);
    assert_int_equal(rep->messages, 5);
    assert_int_equal(rep->nrec, 3);
    const struct dmarc_agg_record *c = find_rec(rep, "192.0.2.1", DMARC_P_QUARANTINE);
    assert_non_null(c);
    assert_int_equal(c->count, 3);
    assert_int_equal(c->ndkim, 2);
    assert_string_equal(c->dkim[0].domain, "example.com");   /* sorted */
    assert_false(c->spf_helo);
    assert_int_equal(find_rec(rep, "192.0.2.1", DMARC_P_NONE)->count, 1);
    assert_int_equal(find_rec(rep, "192.0.2.9", DMARC_P_NONE)->count, 1);
    assert_int_equal(dmarc_agg_report(a, 1)->pct, 100);
    assert_int_equal(dmarc_agg_report(a, 2)->nrua, 2);
    assert_string_equal(dmarc_agg_report(a, 3)->domain, "other.test");
    assert_null(dmarc_agg_report(a, 4));
    /* which report a row belongs to */
    r = base_row();
    assert_true(dmarc_report_has_row(rep, &r));
    assert_false(dmarc_report_has_row(dmarc_agg_report(a, 1), &r));
    assert_false(dmarc_report_has_row(dmarc_agg_report(a, 2), &r));
    r.rua = uris + 1;
    assert_false(dmarc_report_has_row(rep, &r));
    dmarc_agg_free(a);
}

static void test_aggregation_many(void **state)
{
    (void)state;
    struct dmarc_agg *a = dmarc_agg_new();
    char ip[32];
    struct dmarc_row r = base_row();
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 2000; i++) {   /* the table grows several times */
            snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 256, i % 256);
            r.source_ip = ip;
            dmarc_agg_add(a, &r);
        }
    }
    assert_int_equal(dmarc_agg_count(a), 1);
    const struct dmarc_report *rep = dmarc_agg_report(a, 0);
    assert_int_equal(rep->nrec, 2000);
    for (size_t i = 0; i < rep->nrec; i++)
        assert_int_equal(rep->rec[i].count, 3);
    assert_string_equal(rep->rec[257].source_ip, "10.0.1.1");
    dmarc_agg_free(a);
}

/* ------------------------------------------------------------ the document */

static void test_xml_escape(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "plain.example", "plain.example" },
        { "a&b<c>\"d'e", "a&amp;b&lt;c&gt;&quot;d&apos;e" },
        { "tab\tlf\ncr\r", "tab&#9;lf&#10;cr&#13;" },
        { "\x01\x1f\x7f", "???" },
        { "b\xc3\xbc" "cher", "b\xc3\xbc" "cher" },
        { "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80" },
        { "\xff\xfe", "??" },
        { "\xc0\xaf", "??" },                 /* overlong */
        { "\xed\xa0\x80", "???" },            /* a surrogate */
        { "\xef\xbf\xbe", "???" },            /* U+FFFE */
        { "\xc3", "?" },                      /* cut short */
        { "", "" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b = { 0 };
        dmarc_xml_escape(&b, cases[i].in);
        assert_string_equal(buf_ptr(&b), cases[i].out);
        buf_free(&b);
    }
}

static void test_ip_forms(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "192.0.2.1", "192.0.2.1" },
        { "::1", "0:0:0:0:0:0:0:1" },
        { "2001:DB8::A:1", "2001:db8:0:0:0:0:a:1" },
        { "::ffff:198.51.100.7", "198.51.100.7" },
        { "fe80::1:2:3:4:5", "fe80:0:0:1:2:3:4:5" },
    };
    char out[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(dmarc_ip_for_xml(cases[i].in, out), 0);
        assert_string_equal(out, cases[i].out);
    }
    assert_int_equal(dmarc_ip_for_xml("1.2.3", out), -1);
    assert_int_equal(dmarc_ip_for_xml("", out), -1);
    assert_int_equal(dmarc_ip_for_xml("fe80::1%eth0", out), -1);
}

static void assert_in_order(const char *doc, const char *const *parts, size_t n)
{
    const char *p = doc;
    for (size_t i = 0; i < n; i++) {
        const char *q = strstr(p, parts[i]);
        if (q == NULL)
            fail_msg("'%s' missing or out of order in:\n%s", parts[i], doc);
        p = q + strlen(parts[i]);
    }
}

static void test_xml_document(void **state)
{
    (void)state;
    struct dmarc_agg *a = dmarc_agg_new();
    struct dmarc_row r = base_row();
    r.header_from = "a<b>&c.example";
    dmarc_agg_add(a, &r);
    r.envelope_from = "", r.spf_domain = "", r.spf_result = "", r.ndkim = 0;
    dmarc_agg_add(a, &r);
    struct buf org = { 0 }, email = { 0 }, xml = { 0 };
    dmarc_report_identity("", "", "mx.test", &org, &email);
    assert_string_equal(buf_ptr(&org), "mx.test");
    assert_string_equal(buf_ptr(&email), "postmaster@mx.test");
    dmarc_report_identity("Org & Co", "r@x.test", "mx.test", &org, &email);
    assert_string_equal(buf_ptr(&org), "Org & Co");
    assert_string_equal(buf_ptr(&email), "r@x.test");
    struct dmarc_report_meta m = { .org_name = buf_ptr(&org), .email = buf_ptr(&email),
                                   .report_id = "ID<1>", .extra_contact_info = "https://x/?a&b" };
    dmarc_report_xml(dmarc_agg_report(a, 0), &m, &xml);
    static const char *const order[] = {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n", "<report_metadata>",
        "<org_name>Org &amp; Co</org_name>", "<email>r@x.test</email>",
        "<extra_contact_info>https://x/?a&amp;b</extra_contact_info>",
        "<report_id>ID&lt;1&gt;</report_id>", "<date_range>", "<begin>1700000000</begin>",
        "<end>1700000000</end>", "</report_metadata>", "<policy_published>",
        "<domain>example.com</domain>", "<adkim>s</adkim>", "<aspf>r</aspf>", "<p>reject</p>",
        "<sp>quarantine</sp>", "</policy_published>", "<record>", "<row>",
        "<source_ip>192.0.2.1</source_ip>", "<count>1</count>", "<policy_evaluated>",
        "<disposition>quarantine</disposition>", "<dkim>fail</dkim>", "<spf>pass</spf>",
        "</row>", "<identifiers>", "<envelope_from>mail.example.com</envelope_from>",
        "<header_from>a&lt;b&gt;&amp;c.example</header_from>", "<auth_results>", "<dkim>",
        "<domain>example.com</domain>", "<selector>sel1</selector>", "<result>pass</result>",
        "<dkim>", "<domain>other.test</domain>", "<spf>", "<domain>mail.example.com</domain>",
        "<scope>mfrom</scope>", "<result>pass</result>", "</auth_results>", "</record>",
        /* the null sender, no SPF, no DKIM: one spf result all the same */
        "<record>", "<envelope_from></envelope_from>", "<auth_results>", "<spf>",
        "<domain>a&lt;b&gt;&amp;c.example</domain>", "<scope>helo</scope>",
        "<result>none</result>", "</auth_results>", "</record>", "</feedback>\n",
    };
    assert_in_order(buf_ptr(&xml), order, sizeof(order) / sizeof(order[0]));
    assert_null(strstr(buf_ptr(&xml), "<pct>"));   /* not in the schema */
    buf_free(&org);
    buf_free(&email);
    buf_free(&xml);
    dmarc_agg_free(a);
}

static void gunzip(const struct buf *gz, struct buf *out)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = (unsigned char *)buf_ptr(gz);
    z.avail_in = (uInt)buf_size(gz);
    int rc;
    do {
        buf_reserve(out, 65536);
        z.next_out = (unsigned char *)out->data + out->len;
        z.avail_out = 65536;
        rc = inflate(&z, Z_NO_FLUSH);
        out->len += 65536 - z.avail_out;
        out->data[out->len] = '\0';
    } while (rc == Z_OK);
    assert_int_equal(rc, Z_STREAM_END);
    assert_int_equal(z.avail_in, 0);
    inflateEnd(&z);
}

static void test_gzip(void **state)
{
    (void)state;
    size_t sizes[] = { 0, 1, 100, 70000, 3u << 20 };
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        struct buf in = { 0 }, gz = { 0 }, back = { 0 };
        uint64_t x = 88172645463325252ull;
        for (size_t i = 0; i < sizes[k]; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf_append_byte(&in, i % 3 ? (char)('a' + x % 4) : (char)x);
        }
        assert_int_equal(dmarc_gzip(buf_ptr(&in), buf_size(&in), &gz), 0);
        assert_true(buf_size(&gz) >= 18);
        assert_int_equal((unsigned char)gz.data[0], 0x1f);
        assert_int_equal((unsigned char)gz.data[1], 0x8b);
        gunzip(&gz, &back);
        assert_int_equal(buf_size(&back), buf_size(&in));
        assert_memory_equal(buf_ptr(&back), buf_ptr(&in), buf_size(&in));
        buf_free(&in);
        buf_free(&gz);
        buf_free(&back);
    }
}

/* ------------------------------------------------------------ the mail */

static const char *header_end(const char *msg)
{
    const char *e = strstr(msg, "\r\n\r\n");
    assert_non_null(e);
    return e + 2;
}

static void test_mail_shape(void **state)
{
    (void)state;
    unsigned char gz[300];
    for (size_t i = 0; i < sizeof(gz); i++)
        gz[i] = (unsigned char)(i * 7);
    struct dmarc_report_mail m = {
        .from = "postmaster@mx.test", .to = "dmarc@example.com", .org = "mx.test",
        .domain = "example.com\r\nBcc: victim@x.test", .report_id = "661541CA521EE976",
        .message_id = "dmarc-1@mx.test", .begin = 1700000000, .end = 1700086399,
        .date = 1700090000, .gz = gz, .gzlen = sizeof(gz),
    };
    struct buf b = { 0 }, name = { 0 };
    dmarc_report_mail_build(&m, &b);
    const char *msg = buf_ptr(&b), *he = header_end(msg);
    for (size_t i = 0; i < buf_size(&b); i++)   /* CRLF only */
        if (msg[i] == '\n')
            assert_true(i > 0 && msg[i - 1] == '\r');
    for (const char *l = msg; l < msg + buf_size(&b);) {   /* RFC 5322 2.1.1 */
        const char *e = strstr(l, "\r\n");
        assert_true(e != NULL && e - l <= 998);
        l = e + 2;
    }
    static const char *const head[] = {
        "From: postmaster@mx.test\r\n", "To: dmarc@example.com\r\n",
        "Subject: Report Domain: example.com??Bcc: victim@x.test\r\n",
        " Submitter: mx.test\r\n Report-ID: <661541CA521EE976>\r\n",
        "Date: Wed, 15 Nov 2023 23:13:20 +0000\r\n", "Message-ID: <dmarc-1@mx.test>\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/mixed;\r\n boundary=\"=_dmarc_661541CA521EE976\"\r\n",
    };
    assert_in_order(msg, head, sizeof(head) / sizeof(head[0]));
    assert_null(strstr(msg, "\r\nBcc:"));
    assert_true(strstr(msg, "Content-Type: text/plain") > he);
    dmarc_report_filename("mx.test", "example.com", 1700000000, 1700086399, &name);
    assert_string_equal(buf_ptr(&name), "mx.test!example.com!1700000000!1700086399.xml.gz");
    buf_reset(&name);
    dmarc_report_filename("Org & <Co>", "ex\xc3\xa4.test", 1, 2, &name);
    assert_string_equal(buf_ptr(&name), "Org----Co-!ex--.test!1!2.xml.gz");
    /* the attachment: base64 folded at 76, decoding to the bytes given */
    const char *att = strstr(msg, "Content-Type: application/gzip;\r\n name=\"");
    assert_non_null(att);
    assert_non_null(strstr(att, "Content-Transfer-Encoding: base64\r\n"));
    assert_non_null(strstr(att, "Content-Disposition: attachment;\r\n filename=\""));
    const char *data = header_end(att) + 2;
    const char *end = strstr(data, "\r\n\r\n--=_dmarc_661541CA521EE976--\r\n");
    assert_non_null(end);
    struct buf dec = { 0 };
    for (const char *l = data; l < end;) {
        const char *e = strstr(l, "\r\n");
        assert_true(e - l <= 76 && (e - l == 76 || e + 2 >= end));
        l = e + 2;
    }
    assert_int_equal(b64_decode(data, (size_t)(end - data), B64_SKIP_WS, &dec), 0);
    assert_int_equal(buf_size(&dec), sizeof(gz));
    assert_memory_equal(buf_ptr(&dec), gz, sizeof(gz));
    buf_free(&dec);
    buf_free(&b);
    buf_free(&name);
}

static void test_mailto(void **state)
{
    (void)state;
    static const struct {
        const char *uri, *addr, *domain;
    } cases[] = {
        { "mailto:dmarc@localhost", "dmarc@localhost", "localhost" },
        { "MAILTO:Agg@Example.COM", "Agg@example.com", "example.com" },
        { "mailto:r%2Bdmarc@x.test?subject=hi", "r+dmarc@x.test", "x.test" },
        { "mailto:\"a b\"@x.test", "\"a b\"@x.test", "x.test" },
        { "mailto:a@b.test,c@d.test", NULL, NULL },
        { "mailto:a%2C@b.test", NULL, NULL },
        { "mailto:", NULL, NULL },
        { "mailto:nobody", NULL, NULL },
        { "mailto:a@[192.0.2.1]", NULL, NULL },
        { "mailto:a%0D%0A@b.test", NULL, NULL },
        { "mailto:a%@b.test", NULL, NULL },
        { "mailto:<a@b.test>", NULL, NULL },
        { "https://r.example/dmarc", NULL, NULL },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf addr = { 0 };
        const char *domain = NULL;
        int r = dmarc_mailto(cases[i].uri, &addr, &domain);
        if (cases[i].addr == NULL) {
            if (r != -1)
                fail_msg("%s: accepted as %s", cases[i].uri, buf_ptr(&addr));
        } else {
            if (r != 0)
                fail_msg("%s: refused", cases[i].uri);
            assert_string_equal(buf_ptr(&addr), cases[i].addr);
            assert_string_equal(domain, cases[i].domain);
        }
        buf_free(&addr);
    }
}

/* ------------------------------------------------------------ 7.1 */

static const char ext_zone[] =
    "example.com._report._dmarc.thirdparty.test. IN TXT \"v=DMARC1\"\n"
    "withrua.example._report._dmarc.thirdparty.test. IN TXT \"v=DMARC1; rua=mailto:x@y\"\n"
    "other.example._report._dmarc.thirdparty.test. IN TXT \"v=spf1 -all\"\n"
    "ten.example._report._dmarc.thirdparty.test. IN TXT \"v=DMARC10\"\n"
    "split.example._report._dmarc.thirdparty.test. IN TXT \"v=DMA\" \"RC1;\"\n"
    "nodata.example._report._dmarc.thirdparty.test. IN A 192.0.2.1\n"
    "$TEMPFAIL temp.example._report._dmarc.thirdparty.test.\n";

struct ext_case {
    const char *policy, *rua;
    enum dmarc_ext result;
    bool asks;
};

static const struct ext_case ext_cases[] = {
    { "example.com", "reports.example.com", DMARC_EXT_OK, false },
    { "mail.example.com", "example.com.", DMARC_EXT_OK, false },
    { "example.co.uk", "other.co.uk", DMARC_EXT_DENIED, true },
    { "example.com", "thirdparty.test", DMARC_EXT_OK, true },
    { "withrua.example", "thirdparty.test", DMARC_EXT_OK, true },
    { "split.example", "thirdparty.test", DMARC_EXT_OK, true },
    { "other.example", "thirdparty.test", DMARC_EXT_DENIED, true },
    { "ten.example", "thirdparty.test", DMARC_EXT_DENIED, true },
    { "nodata.example", "thirdparty.test", DMARC_EXT_DENIED, true },
    { "missing.example", "thirdparty.test", DMARC_EXT_DENIED, true },
    { "temp.example", "thirdparty.test", DMARC_EXT_TEMPERROR, true },
    { "bad domain", "thirdparty.test", DMARC_EXT_DENIED, false },
    { "example.com", "", DMARC_EXT_DENIED, false },
};

struct ext_got {
    bool called;
    enum dmarc_ext result;
    const char *why;
};

static void ext_done(void *arg, enum dmarc_ext result, const char *why)
{
    struct ext_got *g = arg;
    assert_false(g->called);
    g->called = true;
    g->result = result;
    g->why = why;
}

static void ext_answer(void *arg, const struct dns_answer *ans)
{
    dmarc_ext_answer(arg, ans);
}

static void run_ext_case(struct dns_resolver *r, const struct ext_case *c)
{
    /* by hand, counting the questions */
    struct dmarc_ext_eval *e = dmarc_ext_new(c->policy, c->rua);
    const char *name;
    enum dns_type type;
    int asked = 0;
    struct ext_got got = { 0 };
    while (dmarc_ext_step(e, &name, &type) == DMARC_STEP_DNS) {
        assert_int_equal(type, DNS_T_TXT);
        assert_non_null(strstr(name, "._report._dmarc."));
        assert_true(++asked == 1);
        dns_resolve(r, name, type, ext_answer, e);   /* the zone answers at once */
    }
    if (dmarc_ext_result(e, &got.why) != c->result || (asked == 1) != c->asks)
        fail_msg("%s -> %s: got %s (%s), asked %d", c->policy, c->rua,
                 dmarc_ext_name(dmarc_ext_result(e, NULL)), got.why, asked);
    assert_non_null(got.why);
    dmarc_ext_free(e);
    /* through the driver */
    memset(&got, 0, sizeof(got));
    dmarc_ext_check(r, c->policy, c->rua, ext_done, &got);
    assert_true(got.called);
    assert_int_equal(got.result, c->result);
}

static void test_ext_destination(void **state)
{
    (void)state;
    struct dns_resolver r;
    struct buf err = { 0 };
    if (dns_zone_parse("ext.zone", ext_zone, sizeof(ext_zone) - 1, &r, &err) != 0)
        fail_msg("zone: %s", buf_ptr(&err));
    for (size_t i = 0; i < sizeof(ext_cases) / sizeof(ext_cases[0]); i++)
        run_ext_case(&r, &ext_cases[i]);
    /* a name over 253 octets is denied without a question */
    char longd[250];
    memset(longd, 'a', sizeof(longd) - 1);
    longd[sizeof(longd) - 1] = '\0';
    for (size_t i = 63; i < sizeof(longd) - 1; i += 64)
        longd[i] = '.';
    struct dmarc_ext_eval *e = dmarc_ext_new("x.example", longd);
    const char *name;
    enum dns_type type;
    assert_int_equal(dmarc_ext_step(e, &name, &type), DMARC_STEP_DONE);
    assert_int_equal(dmarc_ext_result(e, NULL), DMARC_EXT_DENIED);
    dmarc_ext_free(e);
    assert_string_equal(dmarc_ext_name(DMARC_EXT_TEMPERROR), "temperror");
    dns_close(&r);
    buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_round_trip),
        cmocka_unit_test(test_row_bad),
        cmocka_unit_test(test_rows_stream),
        cmocka_unit_test(test_row_writer_speaks_reader_language),
        cmocka_unit_test(test_aggregation),
        cmocka_unit_test(test_aggregation_many),
        cmocka_unit_test(test_xml_escape),
        cmocka_unit_test(test_ip_forms),
        cmocka_unit_test(test_xml_document),
        cmocka_unit_test(test_gzip),
        cmocka_unit_test(test_mail_shape),
        cmocka_unit_test(test_mailto),
        cmocka_unit_test(test_ext_destination),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
