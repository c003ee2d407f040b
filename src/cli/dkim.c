/*
 * cli/dkim - `mailwarden dkim`: DKIM keys and signing.
 *
 *   mailwarden dkim keygen --domain D --selector S --algo rsa|ed25519
 *                          [--bits N] [--out FILE]
 *       writes the private key (PKCS#8 PEM, mode 0600; default S.D.key in
 *       the current directory; an existing file is never replaced) and
 *       prints the key record as a zone-file line
 *       `S._domainkey.D. IN TXT "..."` (strings of at most 255 bytes).
 *       RSA is 2048 bits unless --bits (1024..8192) says otherwise.
 *   mailwarden dkim sign --domain D --selector S --key FILE
 *                        [--canon H/B] [--time T] [--expire SECONDS]
 *                        [--identity I] < message
 *       prints the message with a DKIM-Signature field prepended. Input is
 *       read as bytes; bare LF line ends become CRLF; output is CRLF.
 *       --canon defaults to relaxed/relaxed; --time to the clock.
 *
 * Exit: 0 done; 64 bad usage; 65 unreadable message, message without
 * From, or a key file that holds no usable key; 66 the key file cannot be
 * read; 73 the key file cannot be created (exists already).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/fsutil.h"
#include "core/str.h"
#include "core/xmalloc.h"
#include "dkim/dkim.h"

#define MAX_MSG ((size_t)256 << 20)

struct dkim_args {
    const char *domain, *selector, *algo, *out, *key, *identity;
    enum dkim_canon hc, bc;
    uint64_t t, expire, bits;
};

static void usage(FILE *f)
{
    fputs("usage: mailwarden dkim keygen --domain D --selector S --algo rsa|ed25519\n"
          "                              [--bits N] [--out FILE]\n"
          "       mailwarden dkim sign --domain D --selector S --key FILE\n"
          "                            [--canon relaxed/relaxed|simple/simple|...]\n"
          "                            [--time T] [--expire SECONDS] [--identity I] < msg\n",
          f);
}

static int num_arg(const char *s, uint64_t max, uint64_t *out)
{
    return str_to_u64(s, strlen(s), max, out);
}

/* The long name of the option whose value is ch. */
static const char *opts_name(const struct option *o, int ch)
{
    for (; o->name != NULL; o++)
        if (o->val == ch)
            return o->name;
    return "?";
}

/* 0 ok, -1 usage error (reported), 1 help printed. */
static int parse_args(int argc, char **argv, struct dkim_args *a)
{
    static const struct option opts[] = {
        { "domain", required_argument, NULL, 'd' }, { "selector", required_argument, NULL, 's' },
        { "algo", required_argument, NULL, 'a' },   { "out", required_argument, NULL, 'o' },
        { "key", required_argument, NULL, 'k' },    { "canon", required_argument, NULL, 'c' },
        { "time", required_argument, NULL, 't' },   { "expire", required_argument, NULL, 'x' },
        { "bits", required_argument, NULL, 'b' },   { "identity", required_argument, NULL, 'i' },
        { "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
    };
    int ch;
    a->hc = a->bc = DKIM_CANON_RELAXED;
    a->bits = 2048;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (ch) {
        case 'd': a->domain = optarg; break;
        case 's': a->selector = optarg; break;
        case 'a': a->algo = optarg; break;
        case 'o': a->out = optarg; break;
        case 'k': a->key = optarg; break;
        case 'i': a->identity = optarg; break;
        case 'c': bad = dkim_canon_parse(optarg, strlen(optarg), &a->hc, &a->bc); break;
        case 't': bad = num_arg(optarg, (uint64_t)1 << 40, &a->t); break;
        case 'x': bad = num_arg(optarg, (uint64_t)1 << 40, &a->expire); break;
        case 'b': bad = num_arg(optarg, 8192, &a->bits) < 0 || a->bits < 1024 ? -1 : 0; break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
        if (bad < 0) {
            fprintf(stderr, "mailwarden dkim: bad value for --%s: %s\n", opts_name(opts, ch),
                    optarg);
            return -1;
        }
    }
    if (a->domain == NULL || a->selector == NULL) {
        fputs("mailwarden dkim: --domain and --selector are required\n", stderr);
        return -1;
    }
    return 0;
}

static int keygen(const struct dkim_args *a)
{
    enum dkim_key_type t;
    if (a->algo != NULL && strcmp(a->algo, "rsa") == 0)
        t = DKIM_KEY_RSA;
    else if (a->algo != NULL && strcmp(a->algo, "ed25519") == 0)
        t = DKIM_KEY_ED25519;
    else
        return fputs("mailwarden dkim: --algo must be rsa or ed25519\n", stderr), EX_USAGE;
    struct buf path = { 0 }, err = { 0 }, rec = { 0 }, name = { 0 }, line = { 0 };
    if (a->out != NULL)
        buf_append_str(&path, a->out);
    else
        buf_printf(&path, "%s.%s.key", a->selector, a->domain);
    int rc = EX_OK;
    struct dkim_key *k = dkim_key_generate(t, (unsigned)a->bits, &err);
    if (k == NULL || dkim_key_write_file(k, buf_ptr(&path), &err) < 0) {
        fprintf(stderr, "mailwarden dkim: %s\n", buf_ptr(&err));
        rc = k == NULL ? EX_SOFTWARE : EX_CANTCREAT;
    } else {
        dkim_key_dns_record(k, &rec);
        buf_printf(&name, "%s._domainkey.%s.", a->selector, a->domain);
        dkim_zone_txt_line(buf_ptr(&name), buf_ptr(&rec), &line);
        printf("%s\n", buf_ptr(&line));
        fprintf(stderr, "mailwarden dkim: private key written to %s\n", buf_ptr(&path));
    }
    dkim_key_free(k);
    buf_free(&path);
    buf_free(&err);
    buf_free(&rec);
    buf_free(&name);
    buf_free(&line);
    return rc;
}

static int sign(const struct dkim_args *a)
{
    if (a->key == NULL)
        return fputs("mailwarden dkim: --key is required\n", stderr), EX_USAGE;
    struct buf pem = { 0 }, err = { 0 }, msg = { 0 }, out = { 0 };
    struct dkim_key *k = NULL;
    int rc = EX_OK;
    if (fs_read_file(a->key, 1 << 20, &pem) < 0) {
        fprintf(stderr, "mailwarden dkim: cannot read %s\n", a->key);
        rc = EX_NOINPUT;
    } else if ((k = dkim_key_load_pem(buf_ptr(&pem), buf_size(&pem), &err)) == NULL) {
        fprintf(stderr, "mailwarden dkim: %s: %s\n", a->key, buf_ptr(&err));
        rc = EX_DATAERR;
    } else if (cli_read_message(stdin, MAX_MSG, &msg) < 0) {
        fputs("mailwarden dkim: cannot read the message\n", stderr);
        rc = EX_DATAERR;
    } else {
        struct dkim_sign_opts o = {
            .domain = a->domain, .selector = a->selector, .identity = a->identity, .key = k,
            .hcanon = a->hc, .bcanon = a->bc, .t = a->t ? a->t : (uint64_t)time(NULL),
        };
        if (a->expire != 0)
            o.x = o.t + a->expire;
        if (dkim_sign(&o, buf_ptr(&msg), buf_size(&msg), &out, &err) < 0) {
            fprintf(stderr, "mailwarden dkim: %s\n", buf_ptr(&err));
            rc = EX_DATAERR;
        } else {
            fwrite(buf_ptr(&out), 1, buf_size(&out), stdout);
            fwrite(buf_ptr(&msg), 1, buf_size(&msg), stdout);
        }
    }
    if (pem.data != NULL)
        memset(pem.data, 0, pem.cap);
    dkim_key_free(k);
    buf_free(&pem);
    buf_free(&err);
    buf_free(&msg);
    buf_free(&out);
    return rc;
}

int cli_dkim(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EX_USAGE : EX_OK;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "keygen") != 0 && strcmp(cmd, "sign") != 0) {
        fprintf(stderr, "mailwarden dkim: unknown command '%s'\n", cmd);
        usage(stderr);
        return EX_USAGE;
    }
    struct dkim_args a = { 0 };
    int rc = parse_args(argc - 1, argv + 1, &a);
    if (rc != 0)
        return rc > 0 ? EX_OK : EX_USAGE;
    if (optind != argc - 1) {
        fputs("mailwarden dkim: unexpected argument\n", stderr);
        return EX_USAGE;
    }
    return strcmp(cmd, "keygen") == 0 ? keygen(&a) : sign(&a);
}
