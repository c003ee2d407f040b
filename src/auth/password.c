/*
 * password - yescrypt hashes for new passwords, verification of the
 * strong crypt(3) methods, through libxcrypt's reentrant calls.
 *
 * password_hash(pw, out): a fresh "$y$" setting from crypt_gensalt_rn
 * (libxcrypt reads the salt from the kernel itself) at libxcrypt's default
 * cost, then crypt_rn; the hash is appended to out. 0, or -1 when libxcrypt
 * refuses (no randomness, or a passphrase of 512 bytes or more).
 *
 * password_verify(pw, hash): true only if crypt_rn(pw, hash) reproduces
 * hash exactly, compared in constant time. Only these methods are
 * accepted: yescrypt ($y$, $gy$), scrypt ($7$), bcrypt ($2b$, $2y$, $2a$),
 * sha512crypt ($6$) and sha256crypt ($5$). Anything else (NULL for an
 * unknown user, "*" or "!" for a locked account, DES and md5crypt, which
 * libxcrypt would still compute, or plain garbage) is checked against a
 * fixed yescrypt hash of the default cost and yields false, so every
 * failure costs about the same time and says nothing about the account.
 *
 * Each call allocates its own struct crypt_data (about 32 KiB, too big for
 * a worker's stack), wipes it with explicit_bzero and frees it: the calls
 * are thread-safe and leave no copy of the password or hash behind.
 *
 * SECURITY: pw is secret and never logged or copied here; hash is trusted
 * to be well-formed only as far as crypt_rn checks it (a NULL result is a
 * mismatch, never a crash). A hash with an absurd cost parameter is the
 * operator's doing: the users file is written by root.
 */
#include "auth/password.h"

#include <crypt.h>
#include <stddef.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/xmalloc.h"

/* crypt_rn(<some password>, crypt_gensalt_rn("$y$", 0, NULL, 0)) made with
 * libxcrypt 4.4.33. The cost ("j9T") must stay libxcrypt's default, or an
 * unknown user would answer faster than a known one; test_userdb checks
 * that password_hash() still produces this prefix. */
static const char dummy_hash[] =
    "$y$j9T$YRM7LS9o6TvF3eVXYjVnu1$Tz4XOVpx1v6vqG1Ae2YkWPnM1QYsgcvih5Jx56fUbBA";

static const char *const strong_prefixes[] = {
    "$y$", "$gy$", "$7$", "$2b$", "$2y$", "$2a$", "$6$", "$5$",
};

static bool strong_method(const char *hash)
{
    for (size_t i = 0; i < sizeof(strong_prefixes) / sizeof(strong_prefixes[0]); i++)
        if (strncmp(hash, strong_prefixes[i], strlen(strong_prefixes[i])) == 0)
            return true;
    return false;
}

int password_hash(const char *pw, struct buf *out)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, (int)sizeof(setting)) == NULL)
        return -1;
    struct crypt_data *cd = xcalloc(1, sizeof(*cd));
    const char *h = crypt_rn(pw, setting, cd, (int)sizeof(*cd));
    int rc = -1;
    if (h != NULL && strncmp(h, "$y$", 3) == 0) {
        buf_append_str(out, h);
        rc = 0;
    }
    explicit_bzero(cd, sizeof(*cd));
    xfree(cd);
    return rc;
}

bool password_verify(const char *pw, const char *hash)
{
    bool usable = hash != NULL && strong_method(hash);
    const char *setting = usable ? hash : dummy_hash;
    struct crypt_data *cd = xcalloc(1, sizeof(*cd));
    const char *h = crypt_rn(pw, setting, cd, (int)sizeof(*cd));
    bool match = false;
    if (h != NULL) {
        size_t hn = strlen(h), sn = strlen(setting);
        match = hn == sn && CRYPTO_memcmp(h, setting, hn) == 0;
    }
    explicit_bzero(cd, sizeof(*cd));
    xfree(cd);
    return usable && match;
}

bool password_needs_rehash(const char *hash)
{
    /* the setting of dummy_hash: "$y$j9T$", yescrypt at the default cost */
    return strncmp(hash, dummy_hash, 7) != 0;
}

const char *password_method_name(const char *hash)
{
    static const struct {
        const char *prefix, *name;
    } m[] = {
        { "$y$j9T$", "yescrypt" }, { "$y$", "yescrypt-other-cost" }, { "$gy$", "gost-yescrypt" },
        { "$7$", "scrypt" }, { "$2", "bcrypt" }, { "$6$", "sha512crypt" },
        { "$5$", "sha256crypt" },
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        if (strncmp(hash, m[i].prefix, strlen(m[i].prefix)) == 0)
            return m[i].name;
    return "unknown";
}
