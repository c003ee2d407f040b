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
 *                        [--identity I] [--signature-only] [MSG...] < message
 *       prints the message with a DKIM-Signature field prepended, or with
 *       --signature-only that field alone. Input is read as bytes; bare LF
 *       line ends become CRLF; output is CRLF. --canon defaults to
 *       relaxed/relaxed; --time to the clock (read per message).
 *       Batch: with MSG arguments each file is signed in turn with the key
 *       loaded once, its output after a line "==> MSG <=="; a file that
 *       cannot be read, or cannot be signed, is reported on stderr and the
 *       others are still signed.
 *
 * Exit: 0 done; 64 bad usage; 65 unreadable message (stdin), a message
 * without From, or a key file that holds no usable key; 66 the key file
 * or a MSG file cannot be read (the other files were signed); 73 the key
 * file cannot be created (exists already).
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
    bool signature_only;
};

struct sign_run {
    const struct dkim_args *a;
    const struct dkim_key *key;
    struct buf out, err;   /* reused from message to message */
};

static void usage(FILE *f)
{
    fputs("usage: mailwarden dkim keygen --domain D --selector S --algo rsa|ed25519\n"
          "                              [--bits N] [--out FILE]\n"
          "       mailwarden dkim sign --domain D --selector S --key FILE\n"
          "                            [--canon relaxed/relaxed|simple/simple|...]\n"
          "                            [--time T] [--expire SECONDS] [--identity I]\n"
          "                            [--signature-only] [MSG...] (or < msg)\n",
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
        { "signature-only", no_argument, NULL, 'S' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
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
        case 'S': a->signature_only = true; break;
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

/* One message: print it signed, or its signature (a cli_message_fn). */
static int sign_one(void *arg, const struct buf *msg)
{
    struct sign_run *run = arg;
    const struct dkim_args *a = run->a;
    struct dkim_sign_opts o = {
        .domain = a->domain, .selector = a->selector, .identity = a->identity, .key = run->key,
        .hcanon = a->hc, .bcanon = a->bc, .t = a->t ? a->t : (uint64_t)time(NULL),
    };
    if (a->expire != 0)
        o.x = o.t + a->expire;
    buf_reset(&run->out);
    buf_reset(&run->err);
    if (dkim_sign(&o, buf_ptr(msg), buf_size(msg), &run->out, &run->err) < 0) {
        fprintf(stderr, "mailwarden dkim: %s\n", buf_ptr(&run->err));
        return EX_DATAERR;
    }
    fwrite(buf_ptr(&run->out), 1, buf_size(&run->out), stdout);
    if (!a->signature_only)
        fwrite(buf_ptr(msg), 1, buf_size(msg), stdout);
    return EX_OK;
}

static int sign(const struct dkim_args *a, char **files, size_t nfiles)
{
    if (a->key == NULL)
        return fputs("mailwarden dkim: --key is required\n", stderr), EX_USAGE;
    struct buf pem = { 0 }, err = { 0 };
    struct dkim_key *k = NULL;
    int rc = EX_OK;
    if (fs_read_file(a->key, 1 << 20, &pem) < 0) {
        fprintf(stderr, "mailwarden dkim: cannot read %s\n", a->key);
        rc = EX_NOINPUT;
    } else if ((k = dkim_key_load_pem(buf_ptr(&pem), buf_size(&pem), &err)) == NULL) {
        fprintf(stderr, "mailwarden dkim: %s: %s\n", a->key, buf_ptr(&err));
        rc = EX_DATAERR;
    } else {
        struct sign_run run = { .a = a, .key = k };
        rc = cli_each_message("dkim", files, nfiles, MAX_MSG, sign_one, &run);
        buf_free(&run.out);
        buf_free(&run.err);
    }
    if (pem.data != NULL)
        memset(pem.data, 0, pem.cap);
    dkim_key_free(k);
    buf_free(&pem);
    buf_free(&err);
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
    /* optind counts in argv + 1; what follows the options is sign's MSG... */
    char **files = argv + 1 + optind;
    size_t nfiles = (size_t)(argc - 1 - optind);
    bool keygen_cmd = strcmp(cmd, "keygen") == 0;
    if (keygen_cmd && (nfiles > 0 || a.signature_only)) {
        fputs(nfiles > 0 ? "mailwarden dkim: unexpected argument\n"
                         : "mailwarden dkim: --signature-only is for sign\n",
              stderr);
        return EX_USAGE;
    }
    return keygen_cmd ? keygen(&a) : sign(&a, files, nfiles);
}
