/*
 * opendkim_lib - libopendkim in-process, as the OpenDKIM milter uses it,
 * for bench/dkim: one process signs or verifies every file given, the
 * library set up once (no process start-up per message).
 *
 *   opendkim_lib verify KEYS FILE...          KEYS: "name record" lines, read
 *                                             once and answered from memory
 *                                             (dkim_set_key_lookup: "the
 *                                             key answered locally", as a
 *                                             milter's cached DNS would);
 *                                             prints "pass" or why, per file
 *   opendkim_lib sign DOMAIN SELECTOR ALGO KEY.pem FILE...
 *                                             ALGO rsa-sha256 or
 *                                             ed25519-sha256; prints each
 *                                             DKIM-Signature field
 *
 * Relaxed/relaxed, as the other signers in the benchmark. Each file is read
 * into memory before the library sees it, as the milter has the message in
 * its buffers.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <opendkim/dkim.h>

static char *keys;   /* the KEYS file: "name record\n" lines */

static DKIM_CBSTAT lookup(DKIM *dkim, DKIM_SIGINFO *sig, unsigned char *buf, size_t buflen)
{
    (void)dkim;
    char name[512];
    snprintf(name, sizeof(name), "%s._domainkey.%s", (char *)dkim_sig_getselector(sig),
             (char *)dkim_sig_getdomain(sig));
    size_t nl = strlen(name);
    for (char *line = keys; line && *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ' ') {
            size_t rl = len - nl - 1;
            if (rl + 1 > buflen)
                return DKIM_CBSTAT_ERROR;
            memcpy(buf, line + nl + 1, rl);
            buf[rl] = '\0';
            return DKIM_CBSTAT_CONTINUE;
        }
        line = end ? end + 1 : NULL;
    }
    return DKIM_CBSTAT_NOTFOUND;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    size_t cap = 1 << 16, len = 0;
    unsigned char *b = malloc(cap);
    size_t r;
    while ((r = fread(b + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap)
            b = realloc(b, cap *= 2);
    }
    fclose(f);
    *n = len;
    return b;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    DKIM_LIB *lib = dkim_init(NULL, NULL);
    if (lib == NULL)
        return 2;
    bool verify = strcmp(argv[1], "verify") == 0;
    int first;
    unsigned char *key = NULL;
    size_t keylen = 0;
    dkim_alg_t alg = DKIM_SIGN_RSASHA256;
    if (verify) {
        size_t kn;
        keys = (char *)slurp(argv[2], &kn);
        keys = realloc(keys, kn + 1);
        keys[kn] = '\0';
        dkim_set_key_lookup(lib, lookup);
        first = 3;
    } else {
        if (argc < 7)
            return 2;
        alg = strcmp(argv[4], "ed25519-sha256") == 0 ? DKIM_SIGN_ED25519SHA256 : DKIM_SIGN_RSASHA256;
        key = slurp(argv[5], &keylen);
        key = realloc(key, keylen + 1);
        key[keylen] = '\0';
        first = 6;
    }
    for (int i = first; i < argc; i++) {
        size_t n;
        unsigned char *msg = slurp(argv[i], &n);
        DKIM_STAT st;
        DKIM *d = verify ? dkim_verify(lib, (unsigned char *)"bench", NULL, &st)
                         : dkim_sign(lib, (unsigned char *)"bench", NULL, key,
                                     (unsigned char *)argv[3], (unsigned char *)argv[2],
                                     DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, alg, -1, &st);
        if (d == NULL) {
            printf("error %d\n", (int)st);
            free(msg);
            continue;
        }
        st = dkim_chunk(d, msg, n);
        if (st == DKIM_STAT_OK)
            st = dkim_chunk(d, NULL, 0);
        if (st == DKIM_STAT_OK)
            st = dkim_eom(d, NULL);
        if (verify) {
            DKIM_SIGINFO *sig = dkim_getsignature(d);
            if (st == DKIM_STAT_OK && sig != NULL && DKIM_SIG_CHECK(sig))
                puts("pass");
            else
                printf("fail %d\n", (int)st);
        } else {
            unsigned char hdr[8192];
            if (st == DKIM_STAT_OK &&
                dkim_getsighdr(d, hdr, sizeof(hdr), strlen(DKIM_SIGNHEADER) + 2) == DKIM_STAT_OK)
                printf(DKIM_SIGNHEADER ": %s\r\n", hdr);
            else
                printf("error %d\n", (int)st);
        }
        dkim_free(d);
        free(msg);
    }
    free(key);
    free(keys);
    dkim_close(lib);
    return 0;
}
