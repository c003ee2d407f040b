/*
 * cli/dmarc - `mailwarden dmarc report --dry-run`: print the DMARC
 * aggregate reports (RFC 7489 appendix C) the pending rows would make.
 *
 *   mailwarden dmarc report --dry-run [-c FILE] [--data-dir DIR]
 *
 * The pending rows are <data_dir>/dmarc/rows.processing (a run the daemon
 * has begun or a crash left) and <data_dir>/dmarc/rows, read in that
 * order; data_dir comes from --data-dir or the configuration (-c FILE, or
 * the embedded default). Nothing is changed: no file is renamed, written
 * or removed, and nothing is mailed. Reports are grouped exactly as the
 * daemon groups them; the reporter identity is dmarc_report_org /
 * dmarc_report_email (host name defaults); each report gets a fresh
 * Report-ID, as it would when sent.
 *
 * Output: on standard output one XML document per report, each beginning
 * with its own "<?xml" declaration line and ending with "</feedback>", so
 * a reader splits the stream before every line that starts with "<?xml".
 * On standard error: bad rows as "file:line: why", then one summary line.
 * Without --dry-run the command is a usage error: the daemon sends the
 * reports itself, every dmarc_report_interval seconds.
 *
 * Exit: 0 printed (also when nothing is pending or rows were bad); 64 bad
 * usage; 66 a rows file exists but cannot be read; 78 bad configuration.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/buf.h"
#include "core/id.h"
#include "dmarc/report.h"

#define MAX_ERRORS 1000

struct dmarc_args {
    const char *conf, *data_dir;
    bool dry_run;
};

static void usage(FILE *f)
{
    fputs("usage: mailwarden dmarc report --dry-run [-c FILE] [--data-dir DIR]\n", f);
}

/* 0 ok, -1 usage error (reported), 1 help printed. */
static int parse_args(int argc, char **argv, struct dmarc_args *a)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "data-dir", required_argument, NULL, 'd' },
        { "dry-run", no_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': a->conf = optarg; break;
        case 'd': a->data_dir = optarg; break;
        case 'n': a->dry_run = true; break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
    }
    if (optind + 1 != argc || strcmp(argv[optind], "report") != 0) {
        fprintf(stderr, "mailwarden dmarc: %s\n",
                optind >= argc ? "which action? (report)" : "unknown action or extra argument");
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Add the rows of path to agg; EX_OK (also when the file is absent) or
 * EX_NOINPUT after saying why. */
static int read_rows(struct dmarc_agg *agg, const char *path, size_t *nrows, size_t *nbad)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        if (errno == ENOENT)
            return EX_OK;
        fprintf(stderr, "mailwarden dmarc: %s: %s\n", path, strerror(errno));
        return EX_NOINPUT;
    }
    struct buf err = { 0 };
    size_t rows = 0, bad = 0;
    int r = dmarc_agg_read(agg, f, path, &err, MAX_ERRORS, NULL, &rows, &bad);
    int e = errno;
    fclose(f);
    fputs(buf_ptr(&err), stderr);
    buf_free(&err);
    *nrows += rows;
    *nbad += bad;
    if (r < 0) {
        fprintf(stderr, "mailwarden dmarc: %s: %s\n", path, strerror(e));
        return EX_NOINPUT;
    }
    return EX_OK;
}

static void print_reports(const struct dmarc_agg *agg, const struct mw_config *c)
{
    struct buf org = { 0 }, email = { 0 }, xml = { 0 };
    dmarc_report_identity(c->dmarc_report_org, c->dmarc_report_email, c->hostname, &org, &email);
    for (size_t i = 0; i < dmarc_agg_count(agg); i++) {
        char id[ID_LEN + 1];
        id_new(id);
        struct dmarc_report_meta m = { .org_name = buf_ptr(&org), .email = buf_ptr(&email),
                                       .report_id = id };
        buf_reset(&xml);
        dmarc_report_xml(dmarc_agg_report(agg, i), &m, &xml);
        fwrite(buf_ptr(&xml), 1, buf_size(&xml), stdout);
    }
    buf_free(&org);
    buf_free(&email);
    buf_free(&xml);
}

static int dry_run(const struct dmarc_args *a)
{
    struct mw_config *c = NULL;
    struct buf err = { 0 }, path = { 0 };
    if (conf_load(a->conf, &c, &err) < 0) {
        fputs(buf_ptr(&err), stderr);
        buf_free(&err);
        return EX_CONFIG;
    }
    buf_free(&err);
    struct dmarc_agg *agg = dmarc_agg_new();
    size_t nrows = 0, nbad = 0;
    const char *dir = a->data_dir ? a->data_dir : c->data_dir;
    buf_printf(&path, "%s/dmarc/rows.processing", dir);
    int rc = read_rows(agg, buf_ptr(&path), &nrows, &nbad);
    buf_reset(&path);
    buf_printf(&path, "%s/dmarc/rows", dir);
    if (rc == EX_OK)
        rc = read_rows(agg, buf_ptr(&path), &nrows, &nbad);
    if (rc == EX_OK) {
        print_reports(agg, c);
        fprintf(stderr, "mailwarden dmarc: %zu rows (%zu bad) in %zu reports; nothing sent\n",
                nrows, nbad, dmarc_agg_count(agg));
    }
    dmarc_agg_free(agg);
    buf_free(&path);
    conf_unref(c);
    return rc;
}

int cli_dmarc(int argc, char **argv)
{
    struct dmarc_args a = { 0 };
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc > 0 ? EX_OK : EX_USAGE;
    if (!a.dry_run) {
        fputs("mailwarden dmarc report: the daemon sends the aggregate reports itself, every "
              "dmarc_report_interval seconds; --dry-run prints the pending ones\n",
              stderr);
        usage(stderr);
        return EX_USAGE;
    }
    return dry_run(&a);
}
