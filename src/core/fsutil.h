/*
 * fsutil - the durable-write path and small file-system helpers.
 *
 * fs_commit_file() is the one way mailwarden makes a file durable
 * (STYLE 11): create tmpdir/name exclusively, write every byte, fsync the
 * file, rename it to destdir/name (never replacing an existing file:
 * -EEXIST), fsync destdir. When it returns 0 the
 * file and its directory entry survive a crash; on any failure the
 * temporary file is removed and -errno is returned. Callers that need a
 * completeness marker put it in the data they pass. With
 * FS_COMMIT_DIRSYNC_LATER the last step is the caller's: it fsyncs destdir
 * itself (once for a batch of files) before anything relies on them.
 *
 * fs_write_synced() is the first half for a file the caller already has
 * open, a new one or one being reused: every byte written from offset 0,
 * the file cut to that length, fdatasync'd (size and data; timestamps are
 * not needed to read the file back).
 *
 *   fs_mkdirs(path, mode)     mkdir -p, each new directory fsync'd into its
 *                             parent; 0 or -errno
 *   fs_fsync_dir(path)        0 or -errno
 *   fs_write_all(fd, p, n)    loops over short writes and EINTR
 *   fs_read_file(path, buf)   whole file into a buf, bounded by max
 */
#ifndef MW_CORE_FSUTIL_H
#define MW_CORE_FSUTIL_H

#include <stddef.h>
#include <sys/uio.h>

#include "core/buf.h"

#define FS_COMMIT_DIRSYNC_LATER 1
/* The name is the same at every attempt of one delivery: a file left in
 * tmpdir by an attempt that crashed is overwritten, and a file already in
 * destdir under that name is the earlier attempt's copy: 0, not -EEXIST. */
#define FS_COMMIT_IDEMPOTENT 2
int fs_commit_file(const char *tmpdir, const char *destdir, const char *name,
                   const struct iovec *iov, int iovcnt, int mode, int flags);
int fs_write_synced(int fd, const struct iovec *iov, int iovcnt);
int fs_mkdirs(const char *path, int mode);
int fs_fsync_dir(const char *path);
int fs_write_all(int fd, const void *p, size_t n);
int fs_read_file(const char *path, size_t max, struct buf *out);
/* The same, name relative to dirfd (no walk of the path from / each time). */
int fs_read_fileat(int dirfd, const char *name, size_t max, struct buf *out);
/* A secret kept in a file of its own (a password): a regular file not
 * open to "other" users (mode & 007), its first line, 1..max bytes. 0
 * with an xmalloc'd copy in *out, or -1 with "path: why" in err. */
int fs_read_secret(const char *path, size_t max, char **out, struct buf *err);

#endif
