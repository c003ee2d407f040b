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

#include <zlib.h>

#include "core/fsutil.h"
#include "core/id.h"
#include "core/xmalloc.h"
#include "deliver/maildir.h"
#include "queue/queue.h"
#include "tmpdir.h"

struct fixture {
    char dir[64];
    struct queue q;
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    tmpdir_make(f->dir, sizeof(f->dir), "mwq");
    assert_int_equal(queue_open(&f->q, f->dir), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tmpdir_remove(f->dir);
    queue_close(&f->q);
    xfree(f);
    return 0;
}

static void commit_one(struct fixture *f, struct queue_ref *ref, const char *body)
{
    const char *rcpts[] = { "a@localhost", "\"b c\"@localhost" };
    struct queue_env env = { .session = "0123456789ABCDEF", .from = "s@example.org",
                             .rcpts = rcpts, .nrcpt = 2, .arrival = 1700000000 };
    /* an empty piece, as the daemon passes when it has no signature */
    struct iovec iov[3] = {
        { .iov_base = (void *)"Received: x\r\n", .iov_len = 13 },
        { .iov_base = NULL, .iov_len = 0 },
        { .iov_base = (void *)body, .iov_len = strlen(body) },
    };
    id_new(ref->id);
    assert_int_equal(queue_commit(&f->q, ref->id, &env, iov, 3, &ref->slot), 0);
}

static void slot_path(struct fixture *f, uint32_t slot, char *out, size_t n)
{
    snprintf(out, n, "%s/queue/slot.%u", f->dir, (unsigned)slot);
}

/* Files in queue/ whose name starts with prefix. */
static int count_files(struct fixture *f, const char *prefix)
{
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/queue", f->dir);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)) != NULL)
        files += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return files;
}

static struct stat stat_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st;
}

static void remove_msg(struct fixture *f, const struct queue_ref *ref)
{
    struct queue_msg m;
    assert_int_equal(queue_read(&f->q, ref, true, &m), 0);
    bool has_done = m.has_done_file;
    queue_msg_free(&m);
    assert_int_equal(queue_remove(&f->q, ref, has_done), 0);
}

static void test_roundtrip(void **state)
{
    struct fixture *f = *state;
    struct queue_ref ref;
    commit_one(f, &ref, "Subject: t\r\n\r\nbody\r\n");

    struct queue_msg m;
    assert_int_equal(queue_read(&f->q, &ref, true, &m), 0);
    assert_string_equal(m.ref.id, ref.id);
    assert_string_equal(m.from, "s@example.org");
    assert_string_equal(m.session, "0123456789ABCDEF");
    assert_int_equal(m.nrcpt, 2);
    assert_string_equal(m.rcpts[1], "\"b c\"@localhost");
    assert_int_equal(m.arrival, 1700000000);
    assert_int_equal(m.body_len, 13 + 20);
    assert_memory_equal(m.body, "Received: x\r\nSubject: t\r\n\r\nbody\r\n", m.body_len);
    assert_false(m.done[0]);
    queue_msg_free(&m);

    /* Written into one of the slots made at open, padded to whole blocks;
     * nothing else in the directory. */
    char path[128];
    slot_path(f, ref.slot, path, sizeof(path));
    struct stat st = stat_of(path);
    assert_int_equal(st.st_size, QUEUE_BLOCK);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(count_files(f, "slot."), QUEUE_POOL_MIN);
    assert_int_equal(count_files(f, ""), QUEUE_POOL_MIN + 3);   /* ., .., corrupt */

    /* Bad ids and folders are refused before anything is written. */
    const char *r1[] = { "a@localhost" };
    struct queue_env env = { .session = ref.id, .from = "", .rcpts = r1, .nrcpt = 1 };
    struct iovec iov = { .iov_base = (void *)"x", .iov_len = 1 };
    uint32_t slot;
    assert_int_equal(queue_commit(&f->q, "../x", &env, &iov, 1, &slot), -EINVAL);
}

static void test_rcpt_states(void **state)
{
    struct fixture *f = *state;
    struct queue_ref ref;
    commit_one(f, &ref, "x\r\n");   /* two recipients */
    struct queue_rcpt t = { .state = QUEUE_RCPT_DEFERRED, .attempts = 2, .next = 1700000000,
                            .code = 451, .enhanced = "4.3.0", .mta = "mx.peer.test[127.0.0.2]",
                            .reply = "try again\nlater \x01" };
    assert_int_equal(queue_mark_rcpt(&f->q, ref.id, 0, &t), 0);
    struct queue_rcpt fl = { .state = QUEUE_RCPT_FAILED, .code = 550, .enhanced = "5.1.1",
                             .reply = "no such user" };
    assert_int_equal(queue_mark_rcpt(&f->q, ref.id, 1, &fl), 0);
    assert_int_equal(queue_mark_flag(&f->q, ref.id, 'W'), 0);
    /* garbage lines are ignored, not guessed at */
    const char *junk = "F 9 550 - - out of range\nT 0 x\nZ\n\nF 1\n";
    assert_int_equal(queue_state_append(&f->q, ref.id, junk, strlen(junk)), 0);
    struct queue_msg m;
    assert_int_equal(queue_read(&f->q, &ref, true, &m), 0);
    assert_int_equal(m.rs[0].state, QUEUE_RCPT_DEFERRED);
    assert_int_equal(m.rs[0].attempts, 2);
    assert_int_equal(m.rs[0].next, 1700000000);
    assert_int_equal(m.rs[0].code, 451);
    assert_string_equal(m.rs[0].enhanced, "4.3.0");
    assert_string_equal(m.rs[0].mta, "mx.peer.test[127.0.0.2]");
    assert_string_equal(m.rs[0].reply, "try again?later ?");   /* one line, printable */
    assert_false(m.done[0]);
    assert_int_equal(m.rs[1].state, QUEUE_RCPT_FAILED);
    assert_null(m.rs[1].mta);
    assert_true(m.done[1]);   /* final: not tried again */
    assert_true(m.warned);
    assert_false(m.rs[1].reported);
    queue_msg_free(&m);
    /* the last word wins, but a delivery is never undone */
    assert_int_equal(queue_mark_done(&f->q, ref.id, 0), 0);
    assert_int_equal(queue_mark_rcpt(&f->q, ref.id, 0, &t), 0);
    assert_int_equal(queue_mark_reported(&f->q, ref.id, 1), 0);
    assert_int_equal(queue_read(&f->q, &ref, true, &m), 0);
    assert_int_equal(m.rs[0].state, QUEUE_RCPT_DELIVERED);
    assert_true(m.done[0]);
    assert_true(m.rs[1].reported);
    queue_msg_free(&m);
    /* a side file of the old format (delivered indices) still counts */
    remove_msg(f, &ref);
    commit_one(f, &ref, "y\r\n");
    char old[140];
    snprintf(old, sizeof(old), "%s/queue/%s.done", f->dir, ref.id);
    FILE *fp = fopen(old, "w");
    assert_non_null(fp);
    fputs("1\n", fp);
    fclose(fp);
    assert_int_equal(queue_read(&f->q, &ref, true, &m), 0);
    assert_false(m.done[0]);
    assert_true(m.done[1]);
    queue_msg_free(&m);
    remove_msg(f, &ref);
    assert_int_equal(access(old, F_OK), -1);
}

static void test_done_and_remove(void **state)
{
    struct fixture *f = *state;
    struct queue_ref ref;
    commit_one(f, &ref, "x\r\n");
    assert_int_equal(queue_mark_done(&f->q, ref.id, 1), 0);
    struct queue_msg m;
    /* Without check_done the side file is not looked at. */
    assert_int_equal(queue_read(&f->q, &ref, false, &m), 0);
    assert_false(m.done[1]);
    assert_false(m.has_done_file);
    queue_msg_free(&m);
    assert_int_equal(queue_read(&f->q, &ref, true, &m), 0);
    assert_false(m.done[0]);
    assert_true(m.done[1]);
    assert_true(m.has_done_file);
    queue_msg_free(&m);
    char path[128], done[140];
    slot_path(f, ref.slot, path, sizeof(path));
    snprintf(done, sizeof(done), "%s/queue/%s.state", f->dir, ref.id);
    assert_int_equal(access(done, F_OK), 0);
    ino_t ino = stat_of(path).st_ino;
    remove_msg(f, &ref);
    assert_int_equal(queue_read(&f->q, &ref, true, &m), -ENOENT);
    assert_int_equal(access(done, F_OK), -1);

    /* The spent slot is the next one written: same file, new content,
     * nothing left over; the old reference no longer reads. */
    struct queue_ref ref2;
    commit_one(f, &ref2, "y\r\n");
    assert_int_equal(ref2.slot, ref.slot);
    assert_true(stat_of(path).st_ino == ino);
    assert_int_equal(queue_read(&f->q, &ref2, true, &m), 0);
    assert_memory_equal(m.body, "Received: x\r\ny\r\n", m.body_len);
    assert_false(m.has_done_file);
    queue_msg_free(&m);
    assert_int_equal(queue_read(&f->q, &ref, true, &m), -ENOENT);
}

/* A slot shrinks to fit a short record after a long one; a slot over
 * QUEUE_POOL_KEEP is emptied when it is given back. */
static void test_pool_sizes(void **state)
{
    struct fixture *f = *state;
    size_t big = QUEUE_POOL_KEEP + 4096;
    char *body = xmalloc(big + 1);
    memset(body, 'a', big);
    body[big] = '\0';
    struct queue_ref ref;
    char path[128];
    commit_one(f, &ref, body);
    xfree(body);
    slot_path(f, ref.slot, path, sizeof(path));
    assert_true(stat_of(path).st_size > QUEUE_POOL_KEEP);
    remove_msg(f, &ref);
    assert_int_equal(stat_of(path).st_size, 0);

    body = xmalloc(3 * QUEUE_BLOCK);
    memset(body, 'b', 3 * QUEUE_BLOCK - 1);
    body[3 * QUEUE_BLOCK - 1] = '\0';
    commit_one(f, &ref, body);
    xfree(body);
    assert_int_equal(stat_of(path).st_size, 4 * QUEUE_BLOCK);
    remove_msg(f, &ref);
    commit_one(f, &ref, "s\r\n");
    assert_int_equal(stat_of(path).st_size, QUEUE_BLOCK);
    struct queue_msg m;
    assert_int_equal(queue_read(&f->q, &ref, true, &m), 0);
    assert_memory_equal(m.body, "Received: x\r\ns\r\n", m.body_len);
    queue_msg_free(&m);
}

/* One process per queue: the pool is not shared. */
static void test_lock(void **state)
{
    struct fixture *f = *state;
    struct queue other;
    assert_int_equal(queue_open(&other, f->dir), -EBUSY);
    queue_close(&other);
    queue_close(&f->q);
    assert_int_equal(queue_open(&other, f->dir), 0);
    queue_close(&other);
    assert_int_equal(queue_open(&f->q, f->dir), 0);
}

/* Rewrite a committed record (without its padding) with a transformation
 * and expect err from the reader; then quarantine it. */
static void corrupt_and_expect(struct fixture *f, void (*mangle)(char *s, size_t *n), int err)
{
    struct queue_ref ref;
    char path[128];
    commit_one(f, &ref, "Subject: t\r\n\r\nbody\r\n");
    slot_path(f, ref.slot, path, sizeof(path));
    struct buf b;
    buf_init(&b);
    assert_int_equal(fs_read_file(path, 1 << 20, &b), 0);
    const char *end = strstr(buf_ptr(&b), "\nMWQ END ");
    assert_non_null(end);
    size_t n = (size_t)(end - buf_ptr(&b)) + 18;   /* marker, CRC, \n */
    buf_reserve(&b, QUEUE_BLOCK + 16);
    mangle(b.data, &n);
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(fs_write_all(fd, buf_ptr(&b), n), 0);
    close(fd);
    buf_free(&b);
    struct queue_msg m;
    assert_int_equal(queue_read(&f->q, &ref, true, &m), err);
    if (err == 0)
        queue_msg_free(&m);
    if (err == -EBADMSG) {
        assert_int_equal(queue_quarantine(&f->q, &ref), 0);
        assert_int_equal(queue_read(&f->q, &ref, true, &m), -ENOENT);
        char kept[160];
        snprintf(kept, sizeof(kept), "%s/queue/corrupt/%s-slot.%u", f->dir, ref.id,
                 (unsigned)ref.slot);
        assert_int_equal(access(kept, F_OK), 0);
    }
}

static void m_none(char *s, size_t *n) { }
static void m_truncate(char *s, size_t *n) { *n -= 5; }
static void m_no_marker(char *s, size_t *n) { s[*n - 2] = 'X'; }
static void m_extra(char *s, size_t *n) { s[(*n)++] = 'x'; }
static void m_padded(char *s, size_t *n)
{
    memset(s + *n, '\n', QUEUE_BLOCK - 1);
    *n += QUEUE_BLOCK - 1;
}
static void m_overpadded(char *s, size_t *n)
{
    memset(s + *n, '\n', QUEUE_BLOCK);
    *n += QUEUE_BLOCK;
}
static void m_magic(char *s, size_t *n) { s[4] = '3'; }   /* MWQ 3: not ours */
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
static void m_two_ids(char *s, size_t *n)
{
    char *p = strstr(s, "session ");
    memcpy(p, "id", 2);
    memmove(p + 3, p + 8, *n - (size_t)(p + 8 - s));
    *n -= 5;
}
static void m_body_byte(char *s, size_t *n)
{
    char *p = strstr(s, "body");
    p[0] = 'B';
}
/* Not lower-case hex: the first CRC digit upper-cased, or a 'g'. */
static void m_crc_upper(char *s, size_t *n)
{
    char *c = s + *n - 9;
    *c = (*c >= 'a' && *c <= 'f') ? (char)(*c - 'a' + 'A') : 'g';
}
/* A torn rewrite: a new head over the tail of an older record of the same
 * length, marker and padding in place. Only the CRC tells. */
static void m_torn(char *s, size_t *n)
{
    char *p = strstr(s, "Subject: t");
    memcpy(p, "Subject: u", 10);
}
static void m_spent(char *s, size_t *n) { s[4] = '0'; }
static void m_empty(char *s, size_t *n) { *n = 0; }

static void test_corrupt(void **state)
{
    struct fixture *f = *state;
    static const struct {
        void (*mangle)(char *, size_t *);
        int err;
    } cases[] = {
        { m_none, 0 }, { m_padded, 0 }, { m_truncate, -EBADMSG }, { m_no_marker, -EBADMSG },
        { m_extra, -EBADMSG }, { m_overpadded, -EBADMSG }, { m_magic, -EBADMSG },
        { m_size, -EBADMSG }, { m_unknown_key, -EBADMSG }, { m_two_ids, -EBADMSG },
        { m_body_byte, -EBADMSG }, { m_crc_upper, -EBADMSG }, { m_torn, -EBADMSG },
        /* spent or emptied: the message was delivered and removed */
        { m_spent, -ENOENT }, { m_empty, -ENOENT },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        corrupt_and_expect(f, cases[i].mangle, cases[i].err);
    }
}

static void write_file(struct fixture *f, const char *name, const char *content)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/queue/%s", f->dir, name);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(fs_write_all(fd, content, strlen(content)), 0);
    close(fd);
}

/* What a restart finds: live records listed oldest first, spent and
 * empty slots pooled, anything else listed so that the reader reports it. */
static void test_list_after_restart(void **state)
{
    struct fixture *f = *state;
    struct queue_ref a, b, c, *refs;
    size_t n;
    assert_int_equal(queue_list(&f->q, &refs, &n), 0);
    assert_int_equal(n, 0);
    xfree(refs);
    commit_one(f, &a, "1\r\n");
    commit_one(f, &b, "2\r\n");
    commit_one(f, &c, "3\r\n");
    remove_msg(f, &c);
    write_file(f, "slot.90", "hello");
    write_file(f, "slot.91", "MWQ 1\nid 0");
    write_file(f, "slot.92", "");
    write_file(f, "notes.txt", "x");

    queue_close(&f->q);
    assert_int_equal(queue_open(&f->q, f->dir), 0);
    assert_int_equal(queue_list(&f->q, &refs, &n), 0);
    assert_int_equal(n, 4);
    /* the unreadable ones have no id: all zeros, first */
    assert_string_equal(refs[0].id, "0000000000000000");
    assert_string_equal(refs[1].id, "0000000000000000");
    assert_int_equal(refs[0].slot + refs[1].slot, 90 + 91);
    assert_string_equal(refs[2].id, a.id);
    assert_int_equal(refs[2].slot, a.slot);
    assert_string_equal(refs[3].id, b.id);
    struct queue_msg m;
    assert_int_equal(queue_read(&f->q, &refs[0], true, &m), -EBADMSG);
    assert_int_equal(queue_read(&f->q, &refs[1], true, &m), -EBADMSG);
    assert_int_equal(queue_read(&f->q, &refs[2], true, &m), 0);
    queue_msg_free(&m);
    xfree(refs);
    /* listed once */
    assert_int_equal(queue_list(&f->q, &refs, &n), 0);
    assert_int_equal(n, 0);
    xfree(refs);

    /* New messages go into free slots, never over a listed one; slots
     * made later are numbered past every existing one. */
    for (int i = 0; i < QUEUE_POOL_MIN + 2; i++) {
        struct queue_ref r;
        commit_one(f, &r, "4\r\n");
        assert_true(r.slot != a.slot && r.slot != b.slot && r.slot != 90 && r.slot != 91);
        if (i == QUEUE_POOL_MIN + 1)
            assert_true(r.slot > 92);
    }
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

    /* The same delivery again (a retry after a crash): no second copy. A
     * tmp/ file a crashed attempt left is replaced, not an error. */
    char newdir[200], tmpname[300];
    snprintf(newdir, sizeof(newdir), "%s/localhost/%%2E.%%2Fx/new", root);
    const char *name = strrchr(buf_ptr(&path), '/') + 1;
    snprintf(tmpname, sizeof(tmpname), "%s/localhost/%%2E.%%2Fx/tmp/%s", root, name);
    close(open(tmpname, O_CREAT | O_WRONLY, 0600));
    struct buf again;
    buf_init(&again);
    assert_int_equal(maildir_deliver(root, "mx.test", &m, 0, &again), 0);
    assert_string_equal(buf_ptr(&again), buf_ptr(&path));
    assert_int_equal(access(tmpname, F_OK), -1);
    int entries = 0;
    DIR *d = opendir(newdir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        entries += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(entries, 1);
    /* another recipient index is another file */
    m.seq = 1;
    assert_int_equal(maildir_deliver(root, "mx.test", &m, 0, NULL), 0);
    m.seq = 0;
    buf_free(&again);
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
    struct queue_ref ref;
    id_new(ref.id);
    assert_int_equal(queue_commit(&f->q, ref.id, &env, &iov, 1, &ref.slot), 0);
    struct queue_msg m;
    assert_int_equal(queue_read(&f->q, &ref, true, &m), 0);
    assert_string_equal(m.folder, "Junk");
    queue_msg_free(&m);
    static const char *const bad[] = { "../x", "", ".Junk", "a/b", "J unk" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        env.folder = bad[i];
        uint32_t slot;
        assert_int_equal(queue_commit(&f->q, ref.id, &env, &iov, 1, &slot), -EINVAL);
    }
    /* a record that names a bad folder is malformed, not followed */
    char path[256];
    slot_path(f, ref.slot, path, sizeof(path));
    char rec[512];
    int len = snprintf(rec, sizeof(rec),
                       "MWQ 2\nid %s\nsession %s\ntime 1\nfrom \nfolder ../../x\nrcpt a@localhost\n"
                       "size 1\n\nx", ref.id, ref.id);
    uLong crc = crc32(crc32(0L, Z_NULL, 0), (const Bytef *)rec, (uInt)len);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "%s\nMWQ END %08lx\n", rec, crc & 0xffffffffUL);
    fclose(fp);
    assert_int_equal(queue_read(&f->q, &ref, true, &m), -EBADMSG);

    char root[128];
    snprintf(root, sizeof(root), "%s/mail", f->dir);
    struct maildir_msg mm = {
        .return_path = "", .delivered_to = "a@localhost", .domain = "localhost", .local = "a",
        .folder = "Junk", .queue_id = "0123456789ABCDEF", .body = "x\r\n", .body_len = 3,
    };
    struct buf out;
    buf_init(&out);
    assert_int_equal(maildir_deliver(root, "mx.test", &mm, MAILDIR_DIRSYNC_LATER, &out), 0);
    char expect[200];
    snprintf(expect, sizeof(expect), "%s/localhost/a/.Junk/new/", root);
    assert_true(strncmp(buf_ptr(&out), expect, strlen(expect)) == 0);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rcpt_states, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_and_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_after_restart, setup, teardown),
        cmocka_unit_test(test_maildir_component),
        cmocka_unit_test_setup_teardown(test_maildir_deliver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
