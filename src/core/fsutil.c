#include "core/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/str.h"
#include "core/xmalloc.h"

int fs_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* pwritev() until every byte of iov is at off..; iov is not modified. */
static int pwritev_all(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    struct iovec v[16];
    int i = 0;
    size_t skip = 0;   /* bytes of iov[i] already written */
    while (i < iovcnt) {
        int n = 0;
        for (int k = i; k < iovcnt && n < (int)(sizeof(v) / sizeof(v[0])); k++) {
            v[n].iov_base = (char *)iov[k].iov_base + (k == i ? skip : 0);
            v[n].iov_len = iov[k].iov_len - (k == i ? skip : 0);
            n++;
        }
        ssize_t w = pwritev(fd, v, n, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        off += w;
        size_t left = (size_t)w;
        while (i < iovcnt && left >= iov[i].iov_len - skip) {
            left -= iov[i].iov_len - skip;
            skip = 0;
            i++;
        }
        skip += left;
    }
    return 0;
}

/* Every byte from offset 0, then fdatasync. A reused file (reused) is cut
 * to the new length first if it was longer; only then: a truncate to the
 * same size still dirties the inode, and the fdatasync writes it too. A
 * file just created empty needs neither the check nor the cut. */
static int write_synced(int fd, const struct iovec *iov, int iovcnt, bool reused)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    struct stat st = { .st_size = 0 };
    int r = reused && fstat(fd, &st) < 0 ? -errno : pwritev_all(fd, iov, iovcnt, 0);
    if (r == 0 && st.st_size > (off_t)total && ftruncate(fd, (off_t)total) < 0)
        r = -errno;
    if (r == 0 && fdatasync(fd) < 0)
        r = -errno;
    return r;
}

int fs_write_synced(int fd, const struct iovec *iov, int iovcnt)
{
    return write_synced(fd, iov, iovcnt, true);
}

int fs_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

/* mkdir tmp (a path prefix); a new directory's entry is fsync'd into its
 * parent, so that files committed inside it later cannot vanish with it. */
static int mkdir_durable(char *tmp, int mode)
{
    if (mkdir(tmp, (mode_t)mode) < 0)
        return errno == EEXIST ? 0 : -errno;
    char *slash = strrchr(tmp, '/');
    if (slash == NULL)
        return fs_fsync_dir(".");
    if (slash == tmp)
        return fs_fsync_dir("/");
    *slash = '\0';
    int r = fs_fsync_dir(tmp);
    *slash = '/';
    return r;
}

int fs_mkdirs(const char *path, int mode)
{
    char tmp[PATH_MAX];
    if (str_lcpy(tmp, path, sizeof(tmp)) >= sizeof(tmp))
        return -ENAMETOOLONG;
    int r;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        r = mkdir_durable(tmp, mode);
        *p = '/';
        if (r < 0)
            return r;
    }
    if ((r = mkdir_durable(tmp, mode)) < 0)
        return r;
    struct stat st;
    if (stat(tmp, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    return 0;
}

int fs_commit_file(const char *tmpdir, const char *destdir, const char *name,
                   const struct iovec *iov, int iovcnt, int mode, int flags)
{
    char tmppath[PATH_MAX], destpath[PATH_MAX];
    int n1 = snprintf(tmppath, sizeof(tmppath), "%s/%s", tmpdir, name);
    int n2 = snprintf(destpath, sizeof(destpath), "%s/%s", destdir, name);
    if (n1 < 0 || (size_t)n1 >= sizeof(tmppath) || n2 < 0 || (size_t)n2 >= sizeof(destpath))
        return -ENAMETOOLONG;

    bool again = (flags & FS_COMMIT_IDEMPOTENT) != 0;
    int fd = open(tmppath, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (again ? O_TRUNC : O_EXCL),
                  (mode_t)mode);
    if (fd < 0)
        return -errno;
    int r = write_synced(fd, iov, iovcnt, false);   /* a new or emptied file */
    if (close(fd) < 0 && r == 0)
        r = -errno;
    /* Never replace an existing file: a name collision must fail, not
     * overwrite a message that is already safe. */
    if (r == 0 && renameat2(AT_FDCWD, tmppath, AT_FDCWD, destpath, RENAME_NOREPLACE) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmppath);
        if (r != -EEXIST || !again)
            return r;
        r = 0;   /* the copy an earlier attempt made stays; this one goes */
    }
    return (flags & FS_COMMIT_DIRSYNC_LATER) ? 0 : fs_fsync_dir(destdir);
}

int fs_read_file(const char *path, size_t max, struct buf *out)
{
    return fs_read_fileat(AT_FDCWD, path, max, out);
}

int fs_read_fileat(int dirfd, const char *name, size_t max, struct buf *out)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if ((size_t)st.st_size > max) {
        close(fd);
        return -EFBIG;
    }
    buf_reserve(out, (size_t)st.st_size);
    for (;;) {
        buf_reserve(out, 4096);
        ssize_t r = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = -errno;
            close(fd);
            return e;
        }
        if (r == 0)
            break;
        out->len += (size_t)r;
        out->data[out->len] = '\0';
        if (buf_size(out) > max) {
            close(fd);
            return -EFBIG;
        }
    }
    close(fd);
    return 0;
}

int fs_read_secret(const char *path, size_t max, char **out, struct buf *err)
{
    *out = NULL;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        buf_printf(err, "%s: cannot read password file: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char *data = xmalloc(max + 2);
    ssize_t n = -1;
    if (!S_ISREG(st.st_mode))
        buf_printf(err, "%s: the password file is not a regular file\n", path);
    else if (st.st_mode & 007)
        buf_printf(err, "%s: the password file is open to other users (mode %04o); "
                   "run: chmod o-rwx %s\n", path, (unsigned)(st.st_mode & 07777), path);
    else if ((n = read(fd, data, max + 1)) < 0)
        buf_printf(err, "%s: cannot read password file: %s\n", path, strerror(errno));
    close(fd);
    int r = -1;
    if (n >= 0) {
        data[n] = '\0';
        data[strcspn(data, "\r\n")] = '\0';
        if (data[0] == '\0')
            buf_printf(err, "%s: the password file is empty\n", path);
        else if (strlen(data) > max)
            buf_printf(err, "%s: the password is too long\n", path);
        else
            *out = xstrdup(data), r = 0;
    }
    explicit_bzero(data, max + 2);
    xfree(data);
    return r;
}
