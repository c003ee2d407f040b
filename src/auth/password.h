/*
 * password - password hashes through libxcrypt: yescrypt for new hashes
 * (the /etc/shadow default on Debian 12), and any hash crypt(3) knows
 * (yescrypt, bcrypt, sha512crypt) for verification.
 *
 * These calls are slow on purpose (tens of milliseconds): the daemon runs
 * them on a worker thread, never on the event loop. They are thread-safe
 * (crypt_rn with a private buffer).
 *
 * password_verify() with hash NULL (an unknown user) checks the password
 * against a fixed yescrypt hash of the same cost and returns false, so an
 * unknown user costs the same time as a wrong password. The comparison of
 * the computed and stored hash is constant-time.
 *
 * Passwords are never logged; callers wipe their copies (explicit_bzero).
 *
 *   password_hash(pw, out)        "$y$..." appended to out; 0 or -1
 *   password_verify(pw, hash)     true if pw matches hash
 *   password_needs_rehash(hash)   not yescrypt at the default cost: a wrong
 *                                 password for such an account costs another
 *                                 time than for the others, so the daemon
 *                                 replaces it at the next good login
 *   password_method_name(hash)    "yescrypt", "bcrypt", "sha512crypt", ... for logs
 */
#ifndef MW_AUTH_PASSWORD_H
#define MW_AUTH_PASSWORD_H

#include <stdbool.h>

#include "core/buf.h"

int password_hash(const char *pw, struct buf *out);
bool password_verify(const char *pw, const char *hash);
bool password_needs_rehash(const char *hash);
const char *password_method_name(const char *hash);

#endif
