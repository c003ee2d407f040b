/*
 * userdb - the user database: one text file (by default <data_dir>/users,
 * mode 0600) of lines "address:hash", '#' comments and blank lines
 * allowed. Addresses are stored in lower case and compared that way.
 *
 * The daemon does not cache the file: userdb_lookup() reads it on a worker
 * thread for each AUTH, so `mailwarden user add` takes effect at once.
 * The command line tool loads the whole file, changes it, and writes it
 * back atomically (temporary file, fsync, rename, fsync of the directory)
 * with mode 0600, holding an flock on "<file>.lock" so two runs cannot
 * lose each other's change.
 *
 * Errors name the place: "users:3: line has no ':'". A malformed line
 * makes userdb_load fail (the tool refuses to rewrite a file it cannot
 * read); userdb_lookup skips it and reports it through *why.
 *
 *   userdb_address_ok(addr)             a usable user name: local@domain,
 *                                       printable ASCII, no ':' or space
 *   userdb_lookup(path, user, hash, why) 1 found (hash set, caller frees),
 *                                       0 not found, -1 cannot read file
 *   userdb_load(path, db, err)          0, or -1 with file:line in err;
 *                                       a missing file is an empty db
 *   userdb_find(db, user)               hash or NULL
 *   userdb_set(db, user, hash)          add or replace
 *   userdb_del(db, user)                0, or -1 if absent
 *   userdb_save(db, path, err)          atomic write, 0600; 0 or -1
 *   userdb_free(db)
 *   userdb_lock(path, err)              wait for flock(LOCK_EX) on
 *                                       "<path>.lock" (made 0600 if
 *                                       missing, never removed); the fd,
 *                                       or -1 with the reason in err
 *   userdb_unlock(fd)                   release it (close)
 *
 * A writer does: fd = userdb_lock(); userdb_load(); change; userdb_save();
 * userdb_unlock(fd). Readers need no lock: the rename is atomic. Comments
 * in the file are not kept by userdb_save, which writes one header line.
 * A struct userdb is either zeroed or filled by userdb_load.
 */
#ifndef MW_AUTH_USERDB_H
#define MW_AUTH_USERDB_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

struct userdb_entry {
    char *user;
    char *hash;
};

struct userdb {
    struct userdb_entry *v;
    size_t n;
};

bool userdb_address_ok(const char *addr);
int userdb_lookup(const char *path, const char *user, char **hash, struct buf *why);
int userdb_load(const char *path, struct userdb *db, struct buf *err);
const char *userdb_find(const struct userdb *db, const char *user);
void userdb_set(struct userdb *db, const char *user, const char *hash);
int userdb_del(struct userdb *db, const char *user);
int userdb_save(const struct userdb *db, const char *path, struct buf *err);
void userdb_free(struct userdb *db);
int userdb_lock(const char *path, struct buf *err);
void userdb_unlock(int fd);

#endif
