/*
 * common.c - pieces the commands share.
 *
 * cli_open_resolver(): the resolver the DNS-using commands (spf, verify,
 * check dns) open from their options: a zone file answers alone
 * (--dns-zone, the offline contract), otherwise libunbound, validating, on
 * an event loop made here. Errors are printed as "mailwarden NAME: reason".
 *
 * cli_read_message(): a message from a stream, bare LF turned into CRLF.
 *
 * cli_each_message(): the message loop of the commands that take
 * [FILE...] (verify, dkim sign): stdin alone without files; with files,
 * each in turn in this process, its output after a "==> FILE <==" line
 * (head(1) style). An unreadable file is reported and skipped, and the
 * run goes on; the exit status says so at the end.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include <event2/event.h>

#include "cli/cli.h"
#include "dns/unbound.h"

int cli_open_resolver(const char *prog, const char *zone, const struct dns_unbound_opts *o,
                      bool cache, struct event_base **base, struct dns_resolver *r)
{
    struct buf err = { 0 };
    int rc;
    *base = NULL;
    if (zone != NULL) {
        rc = dns_zone_open(zone, r, &err);
    } else {
        *base = event_base_new();
        if (*base == NULL) {
            fprintf(stderr, "mailwarden %s: cannot create an event loop\n", prog);
            return EX_OSERR;
        }
        rc = dns_unbound_open(*base, o, r, &err);
        if (rc == 0 && cache)  /* repeated lookups answered in-process */
            dns_cache_wrap(r, 50000, 3600, 60);
    }
    if (rc < 0) {
        fprintf(stderr, "mailwarden %s: %s\n", prog, buf_ptr(&err));
        if (*base) {
            event_base_free(*base);
            *base = NULL;
        }
    }
    buf_free(&err);
    return rc < 0 ? EX_CONFIG : EX_OK;
}

int cli_read_message(FILE *in, size_t max, struct buf *b)
{
    char chunk[65536];
    size_t n;
    char prev = '\0';   /* the last byte of the previous chunk */
    while ((n = fread(chunk, 1, sizeof(chunk), in)) > 0) {
        buf_reserve(b, n + n / 16);
        /* Copy the runs between LFs whole; a CR goes in only before a bare LF. */
        size_t i = 0;
        while (i < n) {
            const char *lf = memchr(chunk + i, '\n', n - i);
            size_t e = lf != NULL ? (size_t)(lf - chunk) : n;
            buf_append(b, chunk + i, e - i);
            if (lf == NULL)
                break;
            if ((e > 0 ? chunk[e - 1] : prev) != '\r')
                buf_append_byte(b, '\r');
            buf_append_byte(b, '\n');
            i = e + 1;
        }
        prev = chunk[n - 1];
        if (buf_size(b) > max)
            return -1;
    }
    return ferror(in) ? -1 : 0;
}

/* One named file into msg: EX_OK, or EX_NOINPUT after saying why. */
static int read_file(const char *prog, const char *path, size_t max, struct buf *msg)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "mailwarden %s: %s: %s\n", prog, path, strerror(errno));
        return EX_NOINPUT;
    }
    errno = 0;
    int rc = cli_read_message(f, max, msg);
    int err = errno;
    fclose(f);
    if (rc < 0) {
        if (buf_size(msg) > max)
            fprintf(stderr, "mailwarden %s: %s: larger than %zu bytes\n", prog, path, max);
        else
            fprintf(stderr, "mailwarden %s: %s: %s\n", prog, path,
                    err != 0 ? strerror(err) : "read error");
        return EX_NOINPUT;
    }
    return EX_OK;
}

int cli_each_message(const char *prog, char *const *files, size_t nfiles, size_t max,
                     cli_message_fn fn, void *arg)
{
    struct buf msg = { 0 };
    int rc = EX_OK;
    if (nfiles == 0) {
        if (cli_read_message(stdin, max, &msg) < 0) {
            fprintf(stderr, "mailwarden %s: cannot read the message\n", prog);
            rc = EX_DATAERR;
        } else {
            rc = fn(arg, &msg);
        }
        buf_free(&msg);
        return rc;
    }
    bool unreadable = false;
    for (size_t k = 0; k < nfiles; k++) {
        buf_reset(&msg);
        if (read_file(prog, files[k], max, &msg) != EX_OK) {
            unreadable = true;
            continue;
        }
        printf("==> %s <==\n", files[k]);
        int r = fn(arg, &msg);
        if (r != EX_OK && rc == EX_OK)
            rc = r;
    }
    buf_free(&msg);
    return unreadable ? EX_NOINPUT : rc;
}
