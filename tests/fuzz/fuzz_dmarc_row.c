/*
 * Fuzz the DMARC aggregate report rows (dmarc/report.h).
 *
 * The input is one row: a parse must either fail with a reason and leave
 * nothing allocated, or give a row whose format parses again to a row
 * that formats the same (the written form is canonical). The input is
 * also read as a stream of rows (dmarc_rows_read, the daemon's path) into
 * an aggregation whose XML must be well-formed UTF-8 with no control
 * byte but LF, and whose gzip must succeed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/str.h"
#include "dmarc/report.h"
#include "fuzz.h"

static void check_xml(const struct buf *x)
{
    if (!str_utf8_valid(buf_ptr(x), buf_size(x)))
        abort();
    for (size_t i = 0; i < buf_size(x); i++) {
        unsigned char c = (unsigned char)x->data[i];
        if ((c < 0x20 && c != '\n') || c == 0x7f)
            abort();
    }
}

static void check_reports(const struct dmarc_agg *a)
{
    struct dmarc_report_meta m = { .org_name = "fuzz & <org>", .email = "r@x.test",
                                   .report_id = "1" };
    for (size_t i = 0; i < dmarc_agg_count(a); i++) {
        struct buf x = { 0 }, gz = { 0 };
        dmarc_report_xml(dmarc_agg_report(a, i), &m, &x);
        check_xml(&x);
        if (dmarc_gzip(buf_ptr(&x), buf_size(&x), &gz) != 0)
            abort();
        buf_free(&x);
        buf_free(&gz);
    }
}

static void check_line(const char *s, size_t n)
{
    struct dmarc_row_parsed p, q;
    const char *why = NULL;
    if (dmarc_row_parse(s, n, &p, &why) != 0) {
        if (why == NULL || p.mem != NULL)
            abort();
        return;
    }
    struct buf a = { 0 }, b = { 0 };
    dmarc_row_format(&p.row, &a);
    if (dmarc_row_parse(buf_ptr(&a), buf_size(&a) - 1, &q, &why) != 0)
        abort();
    dmarc_row_format(&q.row, &b);
    if (buf_size(&a) != buf_size(&b) || memcmp(buf_ptr(&a), buf_ptr(&b), buf_size(&a)) != 0)
        abort();
    struct dmarc_agg *agg = dmarc_agg_new();
    dmarc_agg_add(agg, &p.row);
    dmarc_agg_add(agg, &q.row);
    if (dmarc_agg_count(agg) != 1 || dmarc_agg_report(agg, 0)->nrec != 1 ||
        !dmarc_report_has_row(dmarc_agg_report(agg, 0), &q.row))
        abort();
    check_reports(agg);
    dmarc_agg_free(agg);
    dmarc_row_parsed_free(&p);
    dmarc_row_parsed_free(&q);
    buf_free(&a);
    buf_free(&b);
}

static void check_stream(const uint8_t *data, size_t size)
{
    if (size == 0)
        return;
    FILE *f = fmemopen((void *)data, size, "r");
    if (f == NULL)
        return;
    struct dmarc_agg *agg = dmarc_agg_new();
    struct buf err = { 0 };
    size_t rows = 0, bad = 0;
    if (dmarc_agg_read(agg, f, "fuzz", &err, 5, &rows, &bad) != 0)
        abort();
    fclose(f);
    size_t lines = 0;
    for (size_t i = 0; i < buf_size(&err); i++)
        lines += err.data[i] == '\n';
    if (lines != (bad < 5 ? bad : 5) || (rows > 0) != (dmarc_agg_count(agg) > 0))
        abort();
    check_reports(agg);
    dmarc_agg_free(agg);
    buf_free(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_line((const char *)data, size);
    check_stream(data, size);
    return 0;
}

const struct fuzz_seed fuzz_seeds[] = {
    SEED("DMARC1\t1700000000\t192.0.2.1\texample.com\tmail.example.com\texample.com\treject"
         "\tquarantine\t50\ts\tr\tquarantine\tfail\tpass\t%2D\tpass"
         "\texample.com:sel1:pass,other.test:s2:fail\tmailto%3Admarc@localhost"),
    SEED("DMARC1\t1\t2001%3Adb8%3A%3A1\tb\xc3\xbc" "cher.example\t-\tex.test\tnone\tnone\t0\tr\tr"
         "\tnone\tfail\tfail\th%09e%0Al%26o\tnone\t-:%FF%FE:neutral\tmailto%3Aa%21b@x!10485760,"
         "https%3A//r.example/x"),
    SEED("DMARC1\t1700000000\t192.0.2.1\ta%3Cb%3E%26c.test\t-\ta.test\treject\treject\t100\tr\tr"
         "\treject\tfail\tfail\t-\tsoftfail\t-\t-\n"
         "DMARC1\tgarbage\n"
         "DMARC1\t1700000001\t%3A%3Affff%3A192.0.2.1\ta.test\t-\ta.test\treject\treject\t100\tr"
         "\tr\treject\tfail\tfail\t-\tsoftfail\t-\t-\n"),
};
const size_t fuzz_nseeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
