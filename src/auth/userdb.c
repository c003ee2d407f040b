/*
 * userdb - the users file: parse, look up, rewrite atomically.
 *
 * Grammar, one line at a time (LF ends a line; a CR, spaces or tabs before
 * it are ignored):
 *   blank      only spaces and tabs
 *   comment    optional spaces and tabs, then '#'
 *   entry      ADDRESS ':' HASH, nothing before ADDRESS; ADDRESS passes
 *              userdb_address_ok(), HASH is printable ASCII without spaces
 *              (what it means is password.c's business; "!" or "*" lock
 *              an account). A line is at most MAX_LINE bytes.
 * userdb_load() also refuses a user listed twice, naming both lines.
 * The file is read whole, bounded by MAX_FILE, and wiped after use.
 *
 * userdb_lookup() scans every line even after a match (a found user costs
 * the same as a missing one), compares ADDRESS without regard to ASCII
 * case, takes the first match and reports malformed lines in *why
 * ("file:N: what; file:N: what"). A missing file finds nobody.
 *
 * userdb_save(): mkostemp "<path>.tmp.XXXXXX" (0600, exclusive) in the
 * file's own directory, give it the owner and group of the file it
 * replaces (so the daemon keeps reading it when root runs the tool), write,
 * fsync, rename over path, fsync the directory. On any failure the
 * temporary file is removed and path is untouched.
 *
 * userdb_set() is given a valid address and hash by its caller (asserted:
 * a newline in either would forge a line). The entry array grows to the
 * next power of two whenever n reaches one, so loading n users is O(n).
 */
#include "auth/userdb.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/str.h"
#include "core/xmalloc.h"

#define MAX_FILE ((size_t)64 << 20)
#define MAX_LINE 4096
#define MAX_ADDRESS 254 /* RFC 5321 path, without the angle brackets */
#define MAX_LOCAL 64

struct line {
    const char *user, *hash;
    size_t ulen, hlen;
};

enum line_kind { LINE_SKIP, LINE_ENTRY, LINE_BAD };

static bool address_ok_n(const char *a, size_t n)
{
    if (n == 0 || n > MAX_ADDRESS || a[0] == '#')
        return false;
    size_t at = n;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c <= 0x20 || c >= 0x7f || c == ':')
            return false;
        if (c == '@') {
            if (at != n)
                return false;
            at = i;
        }
    }
    return at > 0 && at <= MAX_LOCAL && at + 1 < n;
}

static bool hash_ok_n(const char *h, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)h[i] <= 0x20 || (unsigned char)h[i] >= 0x7f)
            return false;
    return true;
}

bool userdb_address_ok(const char *addr)
{
    return addr != NULL && address_ok_n(addr, strnlen(addr, MAX_ADDRESS + 1));
}

/* ASCII case-insensitive: the n bytes at a against the C string b. */
static bool ieq(const char *a, size_t n, const char *b)
{
    size_t i = 0;
    for (; i < n; i++)
        if (b[i] == '\0' || ascii_lower(a[i]) != ascii_lower(b[i]))
            return false;
    return b[i] == '\0';
}

static enum line_kind parse_line(const char *p, size_t n, struct line *l, const char **why)
{
    while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    if (i == n || p[i] == '#')
        return LINE_SKIP;
    if (n > MAX_LINE)
        return *why = "line too long", LINE_BAD;
    const char *colon = memchr(p, ':', n);
    if (colon == NULL)
        return *why = "line has no ':'", LINE_BAD;
    l->user = p;
    l->ulen = (size_t)(colon - p);
    l->hash = colon + 1;
    l->hlen = n - l->ulen - 1;
    if (!address_ok_n(l->user, l->ulen))
        return *why = "not a valid address before ':'", LINE_BAD;
    if (l->hlen == 0)
        return *why = "empty hash after ':'", LINE_BAD;
    if (!hash_ok_n(l->hash, l->hlen))
        return *why = "hash holds a space or a control character", LINE_BAD;
    return LINE_ENTRY;
}

/* The next line of text at *pos (without its LF); false at the end. */
static bool next_line(const struct buf *text, size_t *pos, const char **p, size_t *n)
{
    const char *s = buf_ptr(text);
    size_t len = buf_size(text);
    if (*pos >= len)
        return false;
    const char *lf = memchr(s + *pos, '\n', len - *pos);
    size_t end = lf ? (size_t)(lf - s) : len;
    *p = s + *pos;
    *n = end - *pos;
    *pos = lf ? end + 1 : len;
    return true;
}

static void buf_wipe_free(struct buf *b)
{
    if (b->data != NULL)
        explicit_bzero(b->data, b->cap);
    buf_free(b);
}

/* The file into text; 0, 1 if it does not exist, -1 with err set. */
static int read_text(const char *path, struct buf *text, struct buf *err)
{
    int r = fs_read_file(path, MAX_FILE, text);
    if (r == -ENOENT)
        return 1;
    if (r < 0) {
        buf_printf(err, "%s: %s", path, r == -EFBIG ? "file too large" : strerror(-r));
        return -1;
    }
    return 0;
}

int userdb_lookup(const char *path, const char *user, char **hash, struct buf *why)
{
    struct buf text = { 0 };
    *hash = NULL;
    int r = read_text(path, &text, why);
    if (r != 0) {
        buf_wipe_free(&text);
        return r < 0 ? -1 : 0;
    }
    size_t pos = 0, n;
    const char *p, *what;
    struct line l;
    for (unsigned lineno = 1; next_line(&text, &pos, &p, &n); lineno++) {
        switch (parse_line(p, n, &l, &what)) {
        case LINE_SKIP:
            break;
        case LINE_BAD:
            buf_printf(why, "%s%s:%u: %s", buf_size(why) ? "; " : "", path, lineno, what);
            break;
        case LINE_ENTRY:
            if (*hash == NULL && ieq(l.user, l.ulen, user))
                *hash = xmemdup0(l.hash, l.hlen);
            break;
        }
    }
    buf_wipe_free(&text);
    return *hash != NULL ? 1 : 0;
}

static void append_entry(struct userdb *db, char *user, char *hash)
{
    if ((db->n & (db->n - 1)) == 0) /* n is 0 or a power of two: full */
        db->v = xreallocarray(db->v, db->n ? db->n * 2 : 1, sizeof(*db->v));
    db->v[db->n].user = user;
    db->v[db->n].hash = hash;
    db->n++;
}

struct seen {
    const char *user;
    unsigned line;
};

static int seen_cmp(const void *a, const void *b)
{
    const struct seen *x = a, *y = b;
    int c = strcmp(x->user, y->user);
    return c != 0 ? c : (x->line > y->line) - (x->line < y->line);
}

/* A user listed twice: report the earliest repeat and the line it
 * repeats. 0 or -1. */
static int check_duplicates(const struct userdb *db, const unsigned *lines, const char *path,
                            struct buf *err)
{
    if (db->n < 2)
        return 0;
    struct seen *s = xreallocarray(NULL, db->n, sizeof(*s));
    for (size_t i = 0; i < db->n; i++)
        s[i] = (struct seen){ db->v[i].user, lines[i] };
    qsort(s, db->n, sizeof(*s), seen_cmp);
    /* Sorted by user, then line: the smallest repeat is the second entry
     * of its group, right after the group's first. */
    unsigned first = 0, again = UINT_MAX;
    for (size_t i = 1; i < db->n; i++)
        if (strcmp(s[i - 1].user, s[i].user) == 0 && s[i].line < again)
            first = s[i - 1].line, again = s[i].line;
    xfree(s);
    if (again == UINT_MAX)
        return 0;
    buf_printf(err, "%s:%u: user already listed on line %u", path, again, first);
    return -1;
}

int userdb_load(const char *path, struct userdb *db, struct buf *err)
{
    struct buf text = { 0 };
    db->v = NULL;
    db->n = 0;
    int r = read_text(path, &text, err);
    if (r != 0) {
        buf_wipe_free(&text);
        return r < 0 ? -1 : 0;
    }
    unsigned *lines = NULL;
    size_t pos = 0, n;
    const char *p, *what;
    struct line l;
    int rc = 0;
    for (unsigned lineno = 1; rc == 0 && next_line(&text, &pos, &p, &n); lineno++) {
        switch (parse_line(p, n, &l, &what)) {
        case LINE_SKIP:
            break;
        case LINE_BAD:
            buf_printf(err, "%s:%u: %s", path, lineno, what);
            rc = -1;
            break;
        case LINE_ENTRY: {
            char *u = xmemdup0(l.user, l.ulen);
            str_lower(u);
            if ((db->n & (db->n - 1)) == 0)
                lines = xreallocarray(lines, db->n ? db->n * 2 : 1, sizeof(*lines));
            lines[db->n] = lineno;
            append_entry(db, u, xmemdup0(l.hash, l.hlen));
            break;
        }
        }
    }
    if (rc == 0)
        rc = check_duplicates(db, lines, path, err);
    xfree(lines);
    buf_wipe_free(&text);
    if (rc < 0)
        userdb_free(db);
    return rc;
}

const char *userdb_find(const struct userdb *db, const char *user)
{
    for (size_t i = 0; i < db->n; i++)
        if (ieq(db->v[i].user, strlen(db->v[i].user), user))
            return db->v[i].hash;
    return NULL;
}

static void free_hash(char *h)
{
    explicit_bzero(h, strlen(h));
    xfree(h);
}

void userdb_set(struct userdb *db, const char *user, const char *hash)
{
    assert(userdb_address_ok(user));
    assert(hash_ok_n(hash, strlen(hash)));
    for (size_t i = 0; i < db->n; i++) {
        if (ieq(db->v[i].user, strlen(db->v[i].user), user)) {
            free_hash(db->v[i].hash);
            db->v[i].hash = xstrdup(hash);
            return;
        }
    }
    char *u = xstrdup(user);
    str_lower(u);
    append_entry(db, u, xstrdup(hash));
}

int userdb_del(struct userdb *db, const char *user)
{
    for (size_t i = 0; i < db->n; i++) {
        if (ieq(db->v[i].user, strlen(db->v[i].user), user)) {
            xfree(db->v[i].user);
            free_hash(db->v[i].hash);
            memmove(&db->v[i], &db->v[i + 1], (db->n - i - 1) * sizeof(*db->v));
            db->n--;
            return 0;
        }
    }
    return -1;
}

void userdb_free(struct userdb *db)
{
    for (size_t i = 0; i < db->n; i++) {
        xfree(db->v[i].user);
        free_hash(db->v[i].hash);
    }
    xfree(db->v);
    db->v = NULL;
    db->n = 0;
}

/* The directory part of path: "." or "/" when it has none. */
static void dir_of(const char *path, struct buf *out)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        buf_append_str(out, ".");
    else if (slash == path)
        buf_append_str(out, "/");
    else
        buf_append(out, path, (size_t)(slash - path));
}

/* Give the new file fd the owner and group of the file at path, if any. */
static int keep_owner(int fd, const char *path)
{
    struct stat old, cur;
    if (stat(path, &old) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (fstat(fd, &cur) < 0)
        return -errno;
    if ((cur.st_uid != old.st_uid || cur.st_gid != old.st_gid) &&
        fchown(fd, old.st_uid, old.st_gid) < 0)
        return -errno;
    return 0;
}

static int write_replace(const char *path, const struct buf *text, struct buf *err)
{
    struct buf tmp = { 0 }, dir = { 0 };
    buf_printf(&tmp, "%s.tmp.XXXXXX", path);
    dir_of(path, &dir);
    const char *step = "cannot create a temporary file";
    int r = 0, fd = mkostemp(tmp.data, O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    step = "cannot keep the owner of the file";
    if ((r = keep_owner(fd, path)) < 0)
        goto fail;
    step = "cannot write";
    if ((r = fchmod(fd, 0600) < 0 ? -errno : 0) < 0 ||
        (r = fs_write_all(fd, buf_ptr(text), buf_size(text))) < 0 ||
        (r = fsync(fd) < 0 ? -errno : 0) < 0)
        goto fail;
    int c = close(fd);
    fd = -1;
    if (c < 0) {
        r = -errno;
        goto fail;
    }
    step = "cannot rename the temporary file";
    if (rename(tmp.data, path) < 0) {
        r = -errno;
        goto fail;
    }
    step = "cannot sync the directory";
    r = fs_fsync_dir(buf_ptr(&dir));
    goto out;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp.data);
out:
    if (r < 0)
        buf_printf(err, "%s: %s: %s", path, step, strerror(-r));
    buf_free(&tmp);
    buf_free(&dir);
    return r < 0 ? -1 : 0;
}

int userdb_save(const struct userdb *db, const char *path, struct buf *err)
{
    struct buf text = { 0 };
    buf_append_str(&text, "# mailwarden users: address:hash, written by `mailwarden user`\n");
    for (size_t i = 0; i < db->n; i++)
        buf_printf(&text, "%s:%s\n", db->v[i].user, db->v[i].hash);
    int r = write_replace(path, &text, err);
    buf_wipe_free(&text);
    return r;
}

int userdb_lock(const char *path, struct buf *err)
{
    struct buf lp = { 0 };
    buf_printf(&lp, "%s.lock", path);
    int fd = open(buf_ptr(&lp), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        buf_printf(err, "%s: %s", buf_ptr(&lp), strerror(errno));
        buf_free(&lp);
        return -1;
    }
    while (flock(fd, LOCK_EX) < 0) {
        if (errno == EINTR)
            continue;
        buf_printf(err, "%s: cannot lock: %s", buf_ptr(&lp), strerror(errno));
        close(fd);
        fd = -1;
        break;
    }
    buf_free(&lp);
    return fd;
}

void userdb_unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}
