/*
 * test_userdb - auth/password and auth/userdb.
 *
 * password: hash then verify (right and wrong password), the default-cost
 * prefix the unknown-user dummy relies on, NULL and garbage hashes, weak
 * methods libxcrypt would still compute (DES, md5crypt), locked accounts,
 * bcrypt, sha512crypt, sha256crypt hashes made by crypt_rn here and fixed
 * vectors from Python (also $gy$, $7$, $2y$, $2a$), several threads.
 *
 * userdb: address rules (table), load/save round trip with mode 0600,
 * comments/blank lines/CRLF, malformed lines with "file:line:" (table),
 * duplicates, lookup (found, case, missing, unreadable, bad lines
 * reported but skipped), set/find/del, a big file, no temporary file left
 * after a save that succeeds or fails late (rename onto a directory), the
 * owner kept when root rewrites, and the lock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <crypt.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/password.h"
#include "auth/userdb.h"
#include "core/buf.h"
#include "core/fsutil.h"
#include "core/xmalloc.h"
#include "tmpdir.h"

struct fixture {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    tmpdir_make(f->dir, sizeof(f->dir), "mwu");
    snprintf(f->path, sizeof(f->path), "%s/users", f->dir);
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

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* Names in dir other than the users file and its lock. */
static int stray_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            strcmp(e->d_name, "users") == 0 || strcmp(e->d_name, "users.lock") == 0)
            continue;
        print_message("stray file: %s\n", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

/* A hash of pw with the given setting prefix, made by libxcrypt. */
static char *crypt_with(const char *prefix, const char *pw)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd = xcalloc(1, sizeof(*cd));
    assert_non_null(crypt_gensalt_rn(prefix, 0, NULL, 0, setting, sizeof(setting)));
    const char *h = crypt_rn(pw, setting, cd, sizeof(*cd));
    assert_non_null(h);
    char *out = xstrdup(h);
    xfree(cd);
    return out;
}

/* ------------------------------------------------------------ password */

static void test_hash_verify(void **state)
{
    struct buf h = { 0 };
    assert_int_equal(password_hash("correct horse", &h), 0);
    /* The cost password.c's dummy hash was made with: if libxcrypt's
     * default changes, update dummy_hash there. */
    assert_memory_equal(buf_ptr(&h), "$y$j9T$", 7);
    assert_true(password_verify("correct horse", buf_ptr(&h)));
    assert_false(password_verify("correct horsE", buf_ptr(&h)));
    assert_false(password_verify("", buf_ptr(&h)));
    assert_false(password_verify("correct horse ", buf_ptr(&h)));

    /* Two hashes of one password differ (fresh salt), both verify. */
    struct buf h2 = { 0 };
    assert_int_equal(password_hash("correct horse", &h2), 0);
    assert_string_not_equal(buf_ptr(&h), buf_ptr(&h2));
    assert_true(password_verify("correct horse", buf_ptr(&h2)));
    buf_free(&h);
    buf_free(&h2);
}

static void test_hash_limits(void **state)
{
    char pw[600];
    struct buf h = { 0 };
    memset(pw, 'p', sizeof(pw));
    pw[511] = '\0'; /* the longest libxcrypt accepts */
    assert_int_equal(password_hash(pw, &h), 0);
    assert_true(password_verify(pw, buf_ptr(&h)));
    pw[511] = 'p';
    pw[512] = '\0';
    assert_false(password_verify(pw, buf_ptr(&h)));
    buf_reset(&h);
    assert_int_equal(password_hash(pw, &h), -1);
    assert_int_equal(buf_size(&h), 0);
    /* the empty password hashes (the tool refuses it, not this layer) */
    assert_int_equal(password_hash("", &h), 0);
    assert_true(password_verify("", buf_ptr(&h)));
    buf_free(&h);
}

static void test_verify_unknown_user(void **state)
{
    assert_false(password_verify("", NULL));
    assert_false(password_verify("anything", NULL));
    assert_false(password_verify("mailwarden: no such user", NULL));
}

static void test_verify_garbage(void **state)
{
    struct buf h = { 0 };
    assert_int_equal(password_hash("x", &h), 0);
    struct buf locked = { 0 }, cut = { 0 }, extra = { 0 };
    buf_printf(&locked, "!%s", buf_ptr(&h));
    buf_append(&cut, buf_ptr(&h), buf_size(&h) - 1);
    buf_printf(&extra, "%sA", buf_ptr(&h));
    char *md5 = crypt_with("$1$", "x");
    char huge[2000];
    memset(huge, 'a', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    memcpy(huge, "$y$j9T$", 7);
    const char *bad[] = {
        "", "*", "!", "!!", "*LK*", "x", "garbage", "$", "$y$", "$y$j9T$", "$y$j9T$$",
        "$y$!!!$abc$def", "$2b$", "$2b$99$abcdefghijklmnopqrstuu", "$6$", "$6$rounds=0$",
        "$9$unknown$method", "$5", "$y$j9T$abcdefghijklmnop$", huge,
        "abiQ6Ep3EYTHc",      /* DES of "x": computed by libxcrypt, refused by us */
        md5,                  /* md5crypt of "x": likewise */
        buf_ptr(&locked),     /* a locked account */
        buf_ptr(&cut),        /* one character short */
        buf_ptr(&extra),      /* one character too many */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (password_verify("x", bad[i]))
            fail_msg("hash %zu \"%.40s\" verified", i, bad[i]);
    }
    xfree(md5);
    buf_free(&h);
    buf_free(&locked);
    buf_free(&cut);
    buf_free(&extra);
}

static void test_verify_other_methods(void **state)
{
    const char *prefixes[] = { "$2b$", "$6$", "$5$", "$y$" };
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        char *h = crypt_with(prefixes[i], "s3cret pass");
        if (!password_verify("s3cret pass", h))
            fail_msg("%s hash %s does not verify", prefixes[i], h);
        assert_false(password_verify("s3cret pasS", h));
        assert_false(password_verify("", h));
        xfree(h);
    }
    /* fixed vectors for "x", made by Python's crypt module */
    static const char *const py[] = {
        "$y$j9T$abcdefghijklmnop$xxI14acrF4kcY59GsyqJ1DqdhVdc9N0f1.omTKnq.61",
        "$gy$j9T$abcdefghijklmnop$iAhyhrFG8gN3RUpwkuadelXVBU0Zpz893kYISCCQqMA",
        "$7$CU..../....abcdefghijklmnop$HGqqwmSOvSe.xhCn7qqy2pydXhCwdkuM.bb6BMJGMo/",
        "$5$abcdefgh$sI6g8tHKrJ6RX7w.YoN9B7a/5wK5jYEOMmMnt3tPl0/",
        "$2y$05$abcdefghijklmnopqrstuuhKF09ZYWwH2zP/0fwE1X8e/Q1YNx/hO",
        "$2a$05$abcdefghijklmnopqrstuuhKF09ZYWwH2zP/0fwE1X8e/Q1YNx/hO",
    };
    for (size_t i = 0; i < sizeof(py) / sizeof(py[0]); i++) {
        if (!password_verify("x", py[i]))
            fail_msg("%s does not verify", py[i]);
        assert_false(password_verify("y", py[i]));
    }
}

struct thread_arg {
    char pw[16];
    int ok;
};

static void *hash_thread(void *p)
{
    struct thread_arg *a = p;
    struct buf h = { 0 };
    a->ok = password_hash(a->pw, &h) == 0 && password_verify(a->pw, buf_ptr(&h)) &&
            !password_verify("other", buf_ptr(&h)) && !password_verify(a->pw, NULL);
    buf_free(&h);
    return NULL;
}

static void test_threads(void **state)
{
    pthread_t t[4];
    struct thread_arg a[4];
    for (int i = 0; i < 4; i++) {
        snprintf(a[i].pw, sizeof(a[i].pw), "pw-%d", i);
        assert_int_equal(pthread_create(&t[i], NULL, hash_thread, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_true(a[i].ok);
    }
}

/* ------------------------------------------------------------- address */

static void test_address_ok(void **state)
{
    static const char *good[] = {
        "a@b", "alice@example.org", "Alice@Example.ORG", "first.last+tag@sub.example.org",
        "x!#$%&'*+/=?^_`{|}~-@b.c", "a#b@c",
    };
    static const char *bad[] = {
        "", "a", "@", "a@", "@b", "a@b@c", "a b@c", "a@b c", "a:b@c", "a@b:c", "#a@b",
        " a@b", "a@b ", "a\t@b", "a\n@b", "a@b\r", "\"a\"@b\x7f", "\xc3\xa9@b.c",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!userdb_address_ok(good[i]))
            fail_msg("\"%s\" refused", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (userdb_address_ok(bad[i]))
            fail_msg("\"%s\" accepted", bad[i]);
    assert_false(userdb_address_ok(NULL));

    char addr[300];
    memset(addr, 'l', 64);
    snprintf(addr + 64, sizeof(addr) - 64, "@example.org");
    assert_true(userdb_address_ok(addr)); /* a 64-byte local part */
    memset(addr, 'l', 65);
    snprintf(addr + 65, sizeof(addr) - 65, "@example.org");
    assert_false(userdb_address_ok(addr));
    memset(addr, 'd', sizeof(addr));
    addr[0] = 'a';
    addr[1] = '@';
    addr[254] = '\0';
    assert_true(userdb_address_ok(addr)); /* 254 bytes in all */
    addr[254] = 'd';
    addr[255] = '\0';
    assert_false(userdb_address_ok(addr));
}

/* ------------------------------------------------------------- userdb */

static void test_roundtrip(void **state)
{
    struct fixture *f = *state;
    struct userdb db = { 0 }, back;
    struct buf err = { 0 };
    userdb_set(&db, "Alice@Example.org", "$y$j9T$a$b");
    userdb_set(&db, "bob@example.org", "$6$salt$hash");
    userdb_set(&db, "carol@example.net", "!");
    assert_int_equal(db.n, 3);
    assert_string_equal(db.v[0].user, "alice@example.org");

    mode_t old = umask(0);
    int r = userdb_save(&db, f->path, &err);
    umask(old);
    assert_int_equal(r, 0);
    assert_string_equal(buf_ptr(&err), "");
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);

    assert_int_equal(userdb_load(f->path, &back, &err), 0);
    assert_int_equal(back.n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(back.v[i].user, db.v[i].user);
        assert_string_equal(back.v[i].hash, db.v[i].hash);
    }

    /* a file someone made 0644 is 0600 after the next save */
    assert_int_equal(chmod(f->path, 0644), 0);
    userdb_set(&back, "dave@example.org", "$y$x");
    assert_int_equal(userdb_save(&back, f->path, &err), 0);
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stray_files(f->dir), 0);

    userdb_free(&back);
    assert_int_equal(userdb_load(f->path, &back, &err), 0);
    assert_int_equal(back.n, 4);
    assert_string_equal(userdb_find(&back, "DAVE@example.org"), "$y$x");

    /* an empty db saves as a file with no users */
    userdb_free(&back);
    assert_int_equal(userdb_save(&back, f->path, &err), 0);
    assert_int_equal(userdb_load(f->path, &back, &err), 0);
    assert_int_equal(back.n, 0);
    userdb_free(&db);
    userdb_free(&back);
    buf_free(&err);
}

static void test_missing_file_is_empty(void **state)
{
    struct fixture *f = *state;
    struct userdb db;
    struct buf err = { 0 };
    assert_int_equal(userdb_load(f->path, &db, &err), 0);
    assert_int_equal(db.n, 0);
    assert_null(userdb_find(&db, "a@b"));
    userdb_free(&db);
    buf_free(&err);
}

static void test_comments_blank_crlf(void **state)
{
    struct fixture *f = *state;
    write_file(f->path, "# users\n"
                        "\n"
                        "   \t\n"
                        "  # indented comment\n"
                        "Alice@Example.ORG:$y$hash1\r\n"
                        "bob@b.c:$6$h:with:colons  \t\n"
                        "#carol@c.d:$y$commented\n"
                        "dave@d.e:*"); /* no final LF */
    struct userdb db;
    struct buf err = { 0 };
    assert_int_equal(userdb_load(f->path, &db, &err), 0);
    assert_int_equal(db.n, 3);
    assert_string_equal(db.v[0].user, "alice@example.org");
    assert_string_equal(db.v[0].hash, "$y$hash1");
    assert_string_equal(db.v[1].hash, "$6$h:with:colons");
    assert_string_equal(db.v[2].user, "dave@d.e");
    assert_string_equal(db.v[2].hash, "*");
    assert_null(userdb_find(&db, "carol@c.d"));
    userdb_free(&db);
    buf_free(&err);
}

static void test_malformed(void **state)
{
    struct fixture *f = *state;
    char longline[5000];
    memset(longline, 'h', sizeof(longline));
    memcpy(longline, "a@b:", 4);
    longline[sizeof(longline) - 1] = '\0';
    static const struct {
        const char *text;
        unsigned line;
        const char *what;
    } cases[] = {
        { "a@b:$y$x\nno colon here\n", 2, "line has no ':'" },
        { "# c\n\nnot-an-address:$y$x\n", 3, "not a valid address before ':'" },
        { " a@b:$y$x\n", 1, "not a valid address before ':'" },
        { "a b@c:$y$x\n", 1, "not a valid address before ':'" },
        { ":$y$x\n", 1, "not a valid address before ':'" },
        { "a@b:\n", 1, "empty hash after ':'" },
        { "a@b:   \n", 1, "empty hash after ':'" },
        { "a@b:$y$ x\n", 1, "hash holds a space or a control character" },
        { "a@b:$y$\x01x\n", 1, "hash holds a space or a control character" },
        { "a@b:$y$\xc3\xa9\n", 1, "hash holds a space or a control character" },
        { "a@b:1\nc@d:2\nA@B:3\n", 3, "user already listed on line 1" },
        { "a@b:1\nc@d:2\nc@d:3\na@b:4\n", 3, "user already listed on line 2" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]) + 1; i++) {
        const char *text = i < sizeof(cases) / sizeof(cases[0]) ? cases[i].text : longline;
        write_file(f->path, text);
        struct userdb db;
        struct buf err = { 0 }, want = { 0 };
        if (i < sizeof(cases) / sizeof(cases[0]))
            buf_printf(&want, "%s:%u: %s", f->path, cases[i].line, cases[i].what);
        else
            buf_printf(&want, "%s:1: line too long", f->path);
        assert_int_equal(userdb_load(f->path, &db, &err), -1);
        if (strcmp(buf_ptr(&err), buf_ptr(&want)) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, buf_ptr(&err), buf_ptr(&want));
        assert_int_equal(db.n, 0);
        assert_null(db.v);
        buf_free(&err);
        buf_free(&want);
    }
    /* a NUL inside an entry is malformed, not a truncated line */
    int fd = open(f->path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(fs_write_all(fd, "a@b:$y$x\0y\n", 11), 0);
    close(fd);
    struct userdb db;
    struct buf err = { 0 };
    assert_int_equal(userdb_load(f->path, &db, &err), -1);
    assert_non_null(strstr(buf_ptr(&err), ":1: hash holds"));
    buf_free(&err);
}

static void test_unreadable(void **state)
{
    struct fixture *f = *state;
    struct userdb db;
    struct buf err = { 0 };
    char *hash = (char *)"sentinel";
    /* the path is a directory: cannot be read as a file */
    assert_int_equal(mkdir(f->path, 0700), 0);
    assert_int_equal(userdb_load(f->path, &db, &err), -1);
    assert_int_equal(strncmp(buf_ptr(&err), f->path, strlen(f->path)), 0);
    buf_reset(&err);
    assert_int_equal(userdb_lookup(f->path, "a@b", &hash, &err), -1);
    assert_null(hash);
    assert_true(buf_size(&err) > 0);
    buf_free(&err);
}

static void test_lookup(void **state)
{
    struct fixture *f = *state;
    struct buf why = { 0 };
    char *hash = NULL;
    assert_int_equal(userdb_lookup(f->path, "a@b", &hash, &why), 0); /* no file */
    assert_null(hash);
    assert_string_equal(buf_ptr(&why), "");

    write_file(f->path, "# users\n"
                        "Alice@Example.org:$y$one\n"
                        "broken line\n"
                        "bob@example.org:$y$two\n"
                        "alice@example.org:$y$second\n"
                        "x@y:\n");
    assert_int_equal(userdb_lookup(f->path, "alice@example.org", &hash, &why), 1);
    assert_string_equal(hash, "$y$one"); /* the first wins */
    xfree(hash);
    struct buf want = { 0 };
    buf_printf(&want, "%s:3: line has no ':'; %s:6: empty hash after ':'", f->path, f->path);
    assert_string_equal(buf_ptr(&why), buf_ptr(&want));

    buf_reset(&why);
    assert_int_equal(userdb_lookup(f->path, "BOB@EXAMPLE.ORG", &hash, &why), 1);
    assert_string_equal(hash, "$y$two");
    xfree(hash);
    assert_int_equal(userdb_lookup(f->path, "carol@example.org", &hash, &why), 0);
    assert_null(hash);
    assert_int_equal(userdb_lookup(f->path, "bob@example.or", &hash, &why), 0);
    assert_int_equal(userdb_lookup(f->path, "bob@example.orgx", &hash, &why), 0);
    assert_int_equal(userdb_lookup(f->path, "", &hash, &why), 0);
    assert_int_equal(userdb_lookup(f->path, "broken line", &hash, &why), 0);
    buf_free(&why);
    buf_free(&want);
}

static void test_set_find_del(void **state)
{
    struct userdb db = { 0 };
    assert_null(userdb_find(&db, "a@b"));
    assert_int_equal(userdb_del(&db, "a@b"), -1);
    userdb_set(&db, "A@B", "h1");
    userdb_set(&db, "c@d", "h2");
    userdb_set(&db, "e@f", "h3");
    assert_string_equal(userdb_find(&db, "a@b"), "h1");
    assert_string_equal(userdb_find(&db, "A@b"), "h1");
    userdb_set(&db, "a@B", "h1b"); /* replaces, keeps its place */
    assert_int_equal(db.n, 3);
    assert_string_equal(db.v[0].user, "a@b");
    assert_string_equal(db.v[0].hash, "h1b");
    assert_int_equal(userdb_del(&db, "C@D"), 0);
    assert_int_equal(db.n, 2);
    assert_null(userdb_find(&db, "c@d"));
    assert_string_equal(db.v[1].user, "e@f");
    assert_int_equal(userdb_del(&db, "c@d"), -1);
    assert_null(userdb_find(&db, "a@bb"));
    assert_null(userdb_find(&db, "a@"));
    assert_int_equal(userdb_del(&db, "a@b"), 0);
    assert_int_equal(userdb_del(&db, "e@f"), 0);
    assert_int_equal(db.n, 0);
    userdb_set(&db, "g@h", "h4"); /* grows again after emptying */
    assert_string_equal(userdb_find(&db, "g@h"), "h4");
    userdb_free(&db);
    assert_int_equal(db.n, 0);
}

static void test_many_users(void **state)
{
    struct fixture *f = *state;
    struct userdb db = { 0 }, back;
    struct buf err = { 0 }, addr = { 0 };
    for (int i = 0; i < 5000; i++) {
        buf_reset(&addr);
        buf_printf(&addr, "User%d@Example.org", i);
        userdb_set(&db, buf_ptr(&addr), "$y$h");
    }
    for (int i = 0; i < 5000; i += 3) { /* delete and re-add some: growth after shrink */
        buf_reset(&addr);
        buf_printf(&addr, "user%d@example.org", i);
        assert_int_equal(userdb_del(&db, buf_ptr(&addr)), 0);
    }
    for (int i = 0; i < 5000; i += 3) {
        buf_reset(&addr);
        buf_printf(&addr, "user%d@example.org", i);
        userdb_set(&db, buf_ptr(&addr), "$y$again");
    }
    assert_int_equal(db.n, 5000);
    assert_int_equal(userdb_save(&db, f->path, &err), 0);
    assert_int_equal(userdb_load(f->path, &back, &err), 0);
    assert_int_equal(back.n, 5000);
    assert_string_equal(userdb_find(&back, "user4997@example.org"), "$y$h");
    assert_string_equal(userdb_find(&back, "user4998@example.org"), "$y$again");
    userdb_free(&db);
    userdb_free(&back);
    buf_free(&err);
    buf_free(&addr);
}

static void test_save_failures_leave_nothing(void **state)
{
    struct fixture *f = *state;
    struct userdb db = { 0 };
    struct buf err = { 0 }, p = { 0 };
    userdb_set(&db, "a@b", "$y$h");

    /* the directory does not exist: nothing is created */
    buf_printf(&p, "%s/nodir/users", f->dir);
    assert_int_equal(userdb_save(&db, buf_ptr(&p), &err), -1);
    assert_non_null(strstr(buf_ptr(&err), "cannot create a temporary file"));
    assert_int_equal(strncmp(buf_ptr(&err), buf_ptr(&p), buf_size(&p)), 0);

    /* the temporary file is written, then rename fails (the target is a
     * non-empty directory): the old target is intact, the temp is gone */
    assert_int_equal(mkdir(f->path, 0700), 0);
    buf_reset(&p);
    buf_printf(&p, "%s/keep", f->path);
    write_file(buf_ptr(&p), "old");
    buf_reset(&err);
    assert_int_equal(userdb_save(&db, f->path, &err), -1);
    assert_non_null(strstr(buf_ptr(&err), "cannot rename"));
    assert_int_equal(stray_files(f->dir), 0);
    struct buf old = { 0 };
    assert_int_equal(fs_read_file(buf_ptr(&p), 100, &old), 0);
    assert_string_equal(buf_ptr(&old), "old");

    /* and a save that works leaves only the file */
    buf_reset(&p);
    buf_printf(&p, "rm -rf '%s'", f->path);
    assert_int_equal(system(buf_ptr(&p)), 0);
    buf_reset(&err);
    assert_int_equal(userdb_save(&db, f->path, &err), 0);
    assert_int_equal(userdb_save(&db, f->path, &err), 0);
    assert_int_equal(stray_files(f->dir), 0);
    userdb_free(&db);
    buf_free(&err);
    buf_free(&p);
    buf_free(&old);
}

static void test_save_keeps_owner(void **state)
{
    struct fixture *f = *state;
    if (geteuid() != 0) {
        print_message("not root: owner test skipped\n");
        skip();
    }
    struct userdb db = { 0 };
    struct buf err = { 0 };
    userdb_set(&db, "a@b", "$y$h");
    assert_int_equal(userdb_save(&db, f->path, &err), 0);
    assert_int_equal(chown(f->path, 4321, 4322), 0);
    userdb_set(&db, "c@d", "$y$h");
    assert_int_equal(userdb_save(&db, f->path, &err), 0);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_uid, 4321);
    assert_int_equal(st.st_gid, 4322);
    assert_int_equal(st.st_mode & 07777, 0600);
    userdb_free(&db);
    buf_free(&err);
}

static void test_lock(void **state)
{
    struct fixture *f = *state;
    struct buf err = { 0 }, lp = { 0 };
    int fd = userdb_lock(f->path, &err);
    assert_true(fd >= 0);
    buf_printf(&lp, "%s.lock", f->path);
    struct stat st;
    assert_int_equal(stat(buf_ptr(&lp), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* flock belongs to the open file: a second open conflicts */
    int other = open(buf_ptr(&lp), O_RDWR);
    assert_true(other >= 0);
    assert_int_equal(flock(other, LOCK_EX | LOCK_NB), -1);
    assert_int_equal(errno, EWOULDBLOCK);
    userdb_unlock(fd);
    assert_int_equal(flock(other, LOCK_EX | LOCK_NB), 0);
    close(other);

    /* a lock in a missing directory fails with the name */
    buf_reset(&lp);
    buf_printf(&lp, "%s/nodir/users", f->dir);
    assert_int_equal(userdb_lock(buf_ptr(&lp), &err), -1);
    assert_non_null(strstr(buf_ptr(&err), "nodir/users.lock"));
    buf_free(&err);
    buf_free(&lp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_verify),
        cmocka_unit_test(test_hash_limits),
        cmocka_unit_test(test_verify_unknown_user),
        cmocka_unit_test(test_verify_garbage),
        cmocka_unit_test(test_verify_other_methods),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_address_ok),
        cmocka_unit_test(test_set_find_del),
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file_is_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_comments_blank_crlf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_failures_leave_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_keeps_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
