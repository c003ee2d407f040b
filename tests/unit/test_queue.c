/*
 * Queue files and Maildir delivery on a real temporary directory: the
 * durable write path, the reader's distrust of what it reads back, and
 * mailbox names that cannot escape their directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/id.h"
#include "core/xmalloc.h"
#include "deliver/maildir.h"
#include "queue/queue.h"

struct fixture {
    char dir[64];
    struct queue q;
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/mwq.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(queue_open(&f->q, f->dir), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    queue_close(&f->q);
    xfree(f);
    return 0;
}

static void commit_one(struct fixture *f, char id[ID_LEN + 1], const char *body)
{
    const char *rcpts[] = { "a@localhost", "\"b c\"@localhost" };
    struct queue_env env = { .session = "0123456789ABCDEF", .from = "s@example.org",
                             .rcpts = rcpts, .nrcpt = 2, .arrival = 1700000000 };
    struct iovec iov[2] = {
        { .iov_base = (void *)"Received: x\r\n", .iov_len = 13 },
        { .iov_base = (void *)body, .iov_len = strlen(body) },
    };
    id_new(id);
    assert_int_equal(queue_commit(&f->q, id, &env, iov, 2), 0);
}

static void qpath(struct fixture *f, const char *id, char *out, size_t n)
{
    snprintf(out, n, "%s/queue/%s", f->dir, id);
}

static void test_roundtrip(void **state)
{
    struct fixture *f = *state;
    char id[ID_LEN + 1];
    commit_one(f, id, "Subject: t\r\n\r\nbody\r\n");

    struct queue_msg m;
    assert_int_equal(queue_read(&f->q, id, &m), 0);
    assert_string_equal(m.from, "s@example.org");
    assert_string_equal(m.session, "0123456789ABCDEF");
    assert_int_equal(m.nrcpt, 2);
    assert_string_equal(m.rcpts[1], "\"b c\"@localhost");
    assert_int_equal(m.arrival, 1700000000);
    assert_int_equal(m.body_len, 13 + 20);
    assert_memory_equal(m.body, "Received: x\r\nSubject: t\r\n\r\nbody\r\n", m.body_len);
    assert_false(m.done[0]);
    queue_msg_free(&m);

    /* Nothing is left in tmp/ and the same id cannot be committed twice. */
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "%s/queue/tmp", f->dir);
    DIR *d = opendir(tmp);
    assert_non_null(d);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)) != NULL)
        files += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(files, 0);
    const char *r1[] = { "a@localhost" };
    struct queue_env env = { .session = id, .from = "", .rcpts = r1, .nrcpt = 1 };
    struct iovec iov = { .iov_base = (void *)"x", .iov_len = 1 };
    assert_int_equal(queue_commit(&f->q, id, &env, &iov, 1), -EEXIST);
}

static void test_done_and_remove(void **state)
{
    struct fixture *f = *state;
    char id[ID_LEN + 1];
    commit_one(f, id, "x\r\n");
    assert_int_equal(queue_mark_done(&f->q, id, 1), 0);
    struct queue_msg m;
    assert_int_equal(queue_read(&f->q, id, &m), 0);
    assert_false(m.done[0]);
    assert_true(m.done[1]);
    queue_msg_free(&m);
    assert_int_equal(queue_remove(&f->q, id), 0);
    assert_int_equal(queue_read(&f->q, id, &m), -ENOENT);
}

/* Rewrite a committed file with a transformation and expect EBADMSG. */
static void corrupt_and_expect(struct fixture *f, void (*mangle)(char *s, size_t *n))
{
    char id[ID_LEN + 1], path[128];
    commit_one(f, id, "Subject: t\r\n\r\nbody\r\n");
    qpath(f, id, path, sizeof(path));
    struct buf b;
    buf_init(&b);
    assert_int_equal(fs_read_file(path, 1 << 20, &b), 0);
    size_t n = buf_size(&b);
    mangle(b.data, &n);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fwrite(b.data, 1, n, fp);
    fclose(fp);
    buf_free(&b);
    struct queue_msg m;
    assert_int_equal(queue_read(&f->q, id, &m), -EBADMSG);
    assert_int_equal(queue_quarantine(&f->q, id), 0);
    assert_int_equal(queue_read(&f->q, id, &m), -ENOENT);
}

static void m_truncate(char *s, size_t *n) { *n -= 5; }
static void m_no_marker(char *s, size_t *n) { s[*n - 2] = 'X'; }
static void m_extra(char *s, size_t *n) { s[(*n)++] = '\n'; }
static void m_magic(char *s, size_t *n) { s[4] = '2'; }
static void m_size(char *s, size_t *n)
{
    char *p = strstr(s, "size ");
    p[5] = p[5] == '9' ? '8' : (char)(p[5] + 1);
}
static void m_unknown_key(char *s, size_t *n)
{
    char *p = strstr(s, "from ");
    memcpy(p, "frum ", 5);
}
static void m_empty(char *s, size_t *n) { *n = 0; }

static void test_corrupt(void **state)
{
    struct fixture *f = *state;
    void (*mangles[])(char *, size_t *) = { m_truncate, m_no_marker, m_extra, m_magic,
                                            m_size, m_unknown_key, m_empty };
    for (size_t i = 0; i < sizeof(mangles) / sizeof(mangles[0]); i++)
        corrupt_and_expect(f, mangles[i]);
}

static void test_list_and_tmp_cleanup(void **state)
{
    struct fixture *f = *state;
    char a[ID_LEN + 1], b[ID_LEN + 1], path[128];
    commit_one(f, a, "1\r\n");
    commit_one(f, b, "2\r\n");
    /* An unacknowledged leftover in tmp/ and an unrelated file. */
    snprintf(path, sizeof(path), "%s/queue/tmp/%s", f->dir, "0000000000000000");
    close(open(path, O_CREAT | O_WRONLY, 0600));
    snprintf(path, sizeof(path), "%s/queue/notes.txt", f->dir);
    close(open(path, O_CREAT | O_WRONLY, 0600));

    queue_close(&f->q);
    assert_int_equal(queue_open(&f->q, f->dir), 0);
    snprintf(path, sizeof(path), "%s/queue/tmp/%s", f->dir, "0000000000000000");
    assert_int_equal(access(path, F_OK), -1);

    char (*ids)[ID_LEN + 1];
    size_t n;
    assert_int_equal(queue_list(&f->q, &ids, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], a);
    assert_string_equal(ids[1], b);
    xfree(ids);
}

static void test_maildir_component(void **state)
{
    static const struct { const char *in, *out; } cases[] = {
        { "Bob", "bob" },
        { "a.b+tag", "a.b+tag" },
        { "../../etc", "%2E.%2F..%2Fetc" },
        { ".hidden", "%2Ehidden" },
        { "a/b", "a%2Fb" },
        { "a b", "a%20b" },
        { "100%", "100%25" },
        { "", "%00" },
        { "\x01", "%01" },
        { "\xc3\xa9t\xc3\xa9", "\xc3\xa9t\xc3\xa9" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;
        buf_init(&b);
        maildir_component(&b, cases[i].in);
        assert_string_equal(buf_ptr(&b), cases[i].out);
        buf_free(&b);
    }
}

static void test_maildir_deliver(void **state)
{
    struct fixture *f = *state;
    char root[128];
    snprintf(root, sizeof(root), "%s/mail", f->dir);
    struct maildir_msg m = {
        .return_path = "s@example.org", .delivered_to = "../x@localhost",
        .domain = "localhost", .local = "../x", .queue_id = "0123456789ABCDEF", .seq = 0,
        .body = "Subject: t\r\n\r\nhi\r\n", .body_len = 18,
    };
    struct buf path;
    buf_init(&path);
    assert_int_equal(maildir_deliver(root, "mx.test", &m, 0, &path), 0);
    char expect_prefix[160];
    snprintf(expect_prefix, sizeof(expect_prefix), "%s/localhost/%%2E.%%2Fx/new/", root);
    assert_true(strncmp(buf_ptr(&path), expect_prefix, strlen(expect_prefix)) == 0);
    struct buf got;
    buf_init(&got);
    assert_int_equal(fs_read_file(buf_ptr(&path), 4096, &got), 0);
    assert_string_equal(buf_ptr(&got), "Return-Path: <s@example.org>\r\nDelivered-To: ../x@localhost\r\n"
                                       "Subject: t\r\n\r\nhi\r\n");
    buf_free(&got);
    buf_free(&path);

    /* A file where the mailbox directory should be: delivery fails. */
    char blocker[160];
    snprintf(blocker, sizeof(blocker), "%s/localhost/blocked", root);
    close(open(blocker, O_CREAT | O_WRONLY, 0600));
    m.local = "blocked";
    assert_true(maildir_deliver(root, "mx.test", &m, 0, NULL) < 0);
}

/* The quarantine folder: recorded in the envelope, checked both ways, and
 * used by the Maildir writer as a Maildir++ folder. */
static void test_folder(void **state)
{
    struct fixture *f = *state;
    const char *rcpts[] = { "a@localhost" };
    struct queue_env env = { .session = "0123456789ABCDEF", .from = "s@example.org",
                             .folder = "Junk", .rcpts = rcpts, .nrcpt = 1, .arrival = 1 };
    static const char body[] = "Subject: q\r\n\r\nx\r\n";
    struct iovec iov = { .iov_base = (void *)body, .iov_len = sizeof(body) - 1 };
    char id[ID_LEN + 1];
    id_new(id);
    assert_int_equal(queue_commit(&f->q, id, &env, &iov, 1), 0);
    struct queue_msg m;
    assert_int_equal(queue_read(&f->q, id, &m), 0);
    assert_string_equal(m.folder, "Junk");
    queue_msg_free(&m);
    static const char *const bad[] = { "../x", "", ".Junk", "a/b", "J unk" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        env.folder = bad[i];
        id_new(id);
        assert_int_equal(queue_commit(&f->q, id, &env, &iov, 1), -EINVAL);
    }
    /* a file that names a bad folder is malformed, not followed */
    char path[256];
    id_new(id);
    snprintf(path, sizeof(path), "%s/queue/%s", f->dir, id);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "MWQ 1\nid %s\nsession %s\ntime 1\nfrom \nfolder ../../x\nrcpt a@localhost\n"
                "size 1\n\nx\nMWQ END\n", id, id);
    fclose(fp);
    assert_int_equal(queue_read(&f->q, id, &m), -EBADMSG);

    char root[128];
    snprintf(root, sizeof(root), "%s/mail", f->dir);
    struct maildir_msg mm = {
        .return_path = "", .delivered_to = "a@localhost", .domain = "localhost", .local = "a",
        .folder = "Junk", .queue_id = "0123456789ABCDEF", .body = "x\r\n", .body_len = 3,
    };
    struct buf out;
    buf_init(&out);
    assert_int_equal(maildir_deliver(root, "mx.test", &mm, 0, &out), 0);
    char expect[200];
    snprintf(expect, sizeof(expect), "%s/localhost/a/.Junk/new/", root);
    assert_true(strncmp(buf_ptr(&out), expect, strlen(expect)) == 0);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_and_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_and_tmp_cleanup, setup, teardown),
        cmocka_unit_test(test_maildir_component),
        cmocka_unit_test_setup_teardown(test_maildir_deliver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
