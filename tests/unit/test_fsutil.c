/*
 * The durable-write helpers on a real temporary directory: every byte of
 * every piece written, a reused file cut to its new length, the commit
 * path with and without its directory fsync, mkdir -p.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/xmalloc.h"
#include "tmpdir.h"

struct fixture {
    char dir[64];
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    tmpdir_make(f->dir, sizeof(f->dir), "mwfs");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tmpdir_remove(f->dir);
    xfree(f);
    return 0;
}

static void read_back(const char *path, const char *want, size_t n)
{
    struct buf b;
    buf_init(&b);
    assert_int_equal(fs_read_file(path, 1 << 24, &b), 0);
    assert_int_equal(buf_size(&b), n);
    assert_memory_equal(buf_ptr(&b), want, n);
    buf_free(&b);
}

static void test_write_synced(void **state)
{
    struct fixture *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/f", f->dir);
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    assert_true(fd >= 0);

    /* Many pieces, more than one pwritev() takes at once, some empty. */
    struct iovec iov[40];
    char want[40 * 3];
    size_t n = 0;
    for (int i = 0; i < 40; i++) {
        static const char *const pieces[] = { "ab", "", "cde" };
        const char *p = pieces[i % 3];
        iov[i].iov_base = (void *)p;
        iov[i].iov_len = strlen(p);
        memcpy(want + n, p, strlen(p));
        n += strlen(p);
    }
    assert_int_equal(fs_write_synced(fd, iov, 40), 0);
    read_back(path, want, n);

    /* A large piece, then a shorter rewrite: nothing of the old is left. */
    size_t big = 3 << 20;
    char *data = xmalloc(big);
    memset(data, 'x', big);
    struct iovec one = { .iov_base = data, .iov_len = big };
    assert_int_equal(fs_write_synced(fd, &one, 1), 0);
    read_back(path, data, big);
    one.iov_base = (void *)"short";
    one.iov_len = 5;
    assert_int_equal(fs_write_synced(fd, &one, 1), 0);
    read_back(path, "short", 5);
    xfree(data);
    close(fd);

    assert_int_equal(fs_write_synced(-1, &one, 1), -EBADF);
}

static void test_commit_file(void **state)
{
    struct fixture *f = *state;
    char tmp[128], dest[128], path[160];
    snprintf(tmp, sizeof(tmp), "%s/tmp", f->dir);
    snprintf(dest, sizeof(dest), "%s/new", f->dir);
    assert_int_equal(fs_mkdirs(tmp, 0700), 0);
    assert_int_equal(fs_mkdirs(dest, 0700), 0);
    struct iovec iov = { .iov_base = (void *)"hello\n", .iov_len = 6 };
    for (int flags = 0; flags <= FS_COMMIT_DIRSYNC_LATER; flags++) {
        char name[16];
        snprintf(name, sizeof(name), "m%d", flags);
        assert_int_equal(fs_commit_file(tmp, dest, name, &iov, 1, 0640, flags), 0);
        snprintf(path, sizeof(path), "%s/%s", dest, name);
        read_back(path, "hello\n", 6);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0640);
        /* never over an existing file, and no temporary left behind */
        assert_int_equal(fs_commit_file(tmp, dest, name, &iov, 1, 0640, flags), -EEXIST);
        snprintf(path, sizeof(path), "%s/%s", tmp, name);
        assert_int_equal(access(path, F_OK), -1);
    }
    /* A missing directory is reported, not created. */
    snprintf(path, sizeof(path), "%s/none", f->dir);
    assert_int_equal(fs_commit_file(path, dest, "x", &iov, 1, 0600, 0), -ENOENT);
}

static void test_mkdirs(void **state)
{
    struct fixture *f = *state;
    char path[160];
    snprintf(path, sizeof(path), "%s/a/b/c", f->dir);
    assert_int_equal(fs_mkdirs(path, 0700), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(fs_mkdirs(path, 0700), 0);   /* exists: fine */

    snprintf(path, sizeof(path), "%s/file", f->dir);
    close(open(path, O_CREAT | O_WRONLY, 0600));
    assert_int_equal(fs_mkdirs(path, 0700), -ENOTDIR);
    snprintf(path, sizeof(path), "%s/file/sub", f->dir);
    assert_int_equal(fs_mkdirs(path, 0700), -ENOTDIR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_synced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mkdirs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
