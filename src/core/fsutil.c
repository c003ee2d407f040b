#include "core/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

int fs_writev_all(int fd, const struct iovec *iov, int iovcnt)
{
    for (int i = 0; i < iovcnt; i++) {
        int r = fs_write_all(fd, iov[i].iov_base, iov[i].iov_len);
        if (r < 0)
            return r;
    }
    return 0;
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

int fs_mkdirs(const char *path, int mode)
{
    char tmp[PATH_MAX];
    if (str_lcpy(tmp, path, sizeof(tmp)) >= sizeof(tmp))
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, (mode_t)mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, (mode_t)mode) < 0 && errno != EEXIST)
        return -errno;
    struct stat st;
    if (stat(tmp, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    return 0;
}

int fs_commit_file(const char *tmpdir, const char *destdir, const char *name,
                   const struct iovec *iov, int iovcnt, int mode)
{
    char tmppath[PATH_MAX], destpath[PATH_MAX];
    int n1 = snprintf(tmppath, sizeof(tmppath), "%s/%s", tmpdir, name);
    int n2 = snprintf(destpath, sizeof(destpath), "%s/%s", destdir, name);
    if (n1 < 0 || (size_t)n1 >= sizeof(tmppath) || n2 < 0 || (size_t)n2 >= sizeof(destpath))
        return -ENAMETOOLONG;

    int fd = open(tmppath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return -errno;
    int r = fs_writev_all(fd, iov, iovcnt);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    /* Never replace an existing file: a name collision must fail, not
     * overwrite a message that is already safe. */
    if (r == 0 && renameat2(AT_FDCWD, tmppath, AT_FDCWD, destpath, RENAME_NOREPLACE) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmppath);
        return r;
    }
    return fs_fsync_dir(destdir);
}

int fs_read_file(const char *path, size_t max, struct buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
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
