/*
 * cli/user - `mailwarden user`: the users file that SMTP AUTH checks.
 *
 *   mailwarden user add ADDRESS      add a user; refuses one that exists
 *   mailwarden user passwd ADDRESS   set a new password; the user must exist
 *   mailwarden user del ADDRESS      remove a user
 *   mailwarden user list             print one address per line
 *   options: [-c FILE] [--data-dir DIR] [--users-file FILE]
 *
 * The file is --users-file, else the configuration's users_file, else
 * <data_dir>/users with data_dir from --data-dir or the configuration
 * (-c FILE, or the embedded default as for serve). The configuration is
 * read only when --users-file is absent. add creates the file's directory
 * (0700) when it is missing.
 *
 * The password never comes from the command line (there is no option for
 * it, and an extra argument is a usage error). If standard input is a
 * terminal the password is asked for twice on /dev/tty with echo off and
 * the two must match; the terminal is restored if a signal ends the
 * prompt. Otherwise the first line of standard input is the password, its
 * LF or CRLF dropped. Refused: empty, longer than SASL_MAX_FIELD (255)
 * bytes or not UTF-8 (SMTP AUTH could never carry it), or holding a NUL
 * byte. add and passwd check the user before
 * asking, then hash, then take the lock, load, check again, change and save
 * (userdb.h), so the lock is never held while someone types.
 *
 * Exit: 0 done; 64 bad usage; 65 ADDRESS not valid, password refused, or a
 * malformed users file (file:line); 66 the password or the users file
 * cannot be read; 67 passwd or del of a user that does not exist; 70 the
 * hash could not be made; 73 add of a user that exists already; 74 the
 * directory, lock or users file cannot be written; 78 bad configuration.
 *
 * SECURITY: run by whoever manages the users, usually root. The password
 * is read with read(2), not stdio, so no library buffer keeps a copy; our
 * buffers are wiped with explicit_bzero. Only the hash is written.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

#include "auth/password.h"
#include "auth/sasl.h"
#include "auth/userdb.h"
#include "cli/cli.h"
#include "conf/conf.h"
#include "core/buf.h"
#include "core/fsutil.h"
#include "core/str.h"
#include "core/xmalloc.h"

#define PW_MAX 511 /* CRYPT_MAX_PASSPHRASE_SIZE - 1: crypt_rn refuses longer */

enum action { ACT_ADD, ACT_PASSWD, ACT_DEL, ACT_LIST };

struct user_args {
    const char *conf, *data_dir, *users_file;
    enum action act;
    char *user; /* lower case; NULL for list */
};

enum pw_result { PW_OK, PW_EMPTY, PW_LONG, PW_NUL, PW_MISMATCH, PW_IOERR };

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

static void usage(FILE *f)
{
    fputs("usage: mailwarden user add|passwd|del ADDRESS [-c FILE] [--data-dir DIR]\n"
          "                                          [--users-file FILE]\n"
          "       mailwarden user list [-c FILE] [--data-dir DIR] [--users-file FILE]\n"
          "The password is read from the terminal (asked twice) or from the first\n"
          "line of standard input, never from the command line.\n",
          f);
}

/* 0 ok, -1 usage error (reported), 1 help printed. */
static int parse_args(int argc, char **argv, struct user_args *a)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "data-dir", required_argument, NULL, 'd' },
        { "users-file", required_argument, NULL, 'u' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static const char *const names[] = { "add", "passwd", "del", "list" };
    int ch, saved_opterr = opterr;
    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': a->conf = optarg; break;
        case 'd': a->data_dir = optarg; break;
        case 'u': a->users_file = optarg; break;
        case 'h': usage(stdout); opterr = saved_opterr; return 1;
        default: { /* name the option, never its value: it may be a password */
            const char *o = argv[optind - 1];
            const char *what = ch == ':' ? "needs a value" : "is unknown";
            if (strncmp(o, "--", 2) == 0 && (optopt == 0 || ch == ':'))
                fprintf(stderr, "mailwarden user: option '%.*s' %s\n", (int)strcspn(o, "="), o,
                        what);
            else
                fprintf(stderr, "mailwarden user: option '-%c' %s\n", optopt, what);
            usage(stderr);
            opterr = saved_opterr;
            return -1;
        }
        }
    }
    opterr = saved_opterr;
    if (optind >= argc) {
        usage(stderr);
        return -1;
    }
    size_t i = 0;
    while (i < sizeof(names) / sizeof(names[0]) && strcmp(argv[optind], names[i]) != 0)
        i++;
    if (i == sizeof(names) / sizeof(names[0])) {
        fprintf(stderr, "mailwarden user: unknown action '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    a->act = (enum action)i;
    int want = a->act == ACT_LIST ? 1 : 2;
    if (argc - optind < want) {
        fprintf(stderr, "mailwarden user: %s needs an ADDRESS\n", names[i]);
        return -1;
    }
    if (argc - optind > want) {
        fputs("mailwarden user: too many arguments (the password is never taken from the "
              "command line)\n",
              stderr);
        return -1;
    }
    if (want == 2)
        a->user = xstrdup(argv[optind + 1]);
    return 0;
}

/* One line from fd into pw (at most PW_MAX bytes, NUL-terminated, LF or
 * CRLF dropped). A longer line is read to its end and refused, so what is
 * left of it on a terminal does not reach the shell. With wait_mask, the
 * caller has blocked the prompt's signals: they are let in only while
 * waiting in ppoll, so one that comes at any moment ends the read (a plain
 * read() would sleep through a signal caught just before it). */
static enum pw_result read_line(int fd, char pw[PW_MAX + 2], const sigset_t *wait_mask)
{
    size_t n = 0;
    bool too_long = false;
    for (;;) {
        if (wait_mask != NULL) {
            struct pollfd pfd = { .fd = fd, .events = POLLIN };
            int p = ppoll(&pfd, 1, NULL, wait_mask);
            if (got_signal != 0)
                return PW_IOERR;
            if (p < 0 && errno == EINTR)
                continue;
            if (p < 0)
                return PW_IOERR;
        }
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return PW_IOERR;
        if (r == 0 || c == '\n')
            break;
        if (n < PW_MAX + 1)
            pw[n++] = c;
        else
            too_long = true;
    }
    if (n > 0 && pw[n - 1] == '\r')
        n--;
    pw[n] = '\0';
    if (too_long || n > PW_MAX)
        return PW_LONG;
    if (n == 0)
        return PW_EMPTY;
    return memchr(pw, '\0', n) != NULL ? PW_NUL : PW_OK;
}

static int prompt(int fd, const char *text)
{
    return fs_write_all(fd, text, strlen(text));
}

/* The two prompts on the quiet terminal fd. */
static enum pw_result tty_ask(int fd, const char *user, char pw[PW_MAX + 2],
                              const sigset_t *wait_mask)
{
    char again[PW_MAX + 2];
    struct buf p1 = { 0 };
    enum pw_result r = PW_IOERR;
    buf_printf(&p1, "Password for %s: ", user);
    if (prompt(fd, buf_ptr(&p1)) == 0)
        r = read_line(fd, pw, wait_mask);
    if (r == PW_OK) {
        enum pw_result r2 = PW_IOERR;
        if (prompt(fd, "Retype password: ") == 0)
            r2 = read_line(fd, again, wait_mask);
        if (r2 == PW_IOERR)
            r = PW_IOERR;
        else if (r2 != PW_OK || strcmp(pw, again) != 0)
            r = PW_MISMATCH;
    }
    explicit_bzero(again, sizeof(again));
    buf_free(&p1);
    return r;
}

/* Ask twice on /dev/tty with echo off (ECHONL keeps the line breaks).
 * INT, TERM, QUIT and HUP are caught while the echo is off: the terminal
 * is restored, then the signal is raised again with its old disposition. */
static enum pw_result tty_password(const char *user, char pw[PW_MAX + 2])
{
    static const int sigs[] = { SIGINT, SIGTERM, SIGQUIT, SIGHUP };
    enum { NSIGS = sizeof(sigs) / sizeof(sigs[0]) };
    struct sigaction sa, old_sa[NSIGS];
    sigset_t block, old_mask;
    struct termios old, quiet;
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 || tcgetattr(fd, &old) < 0) {
        if (fd >= 0)
            close(fd);
        return PW_IOERR;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&block);
    for (size_t i = 0; i < NSIGS; i++)
        sigaddset(&block, sigs[i]);
    sigprocmask(SIG_BLOCK, &block, &old_mask);
    got_signal = 0;
    for (size_t i = 0; i < NSIGS; i++)
        sigaction(sigs[i], &sa, &old_sa[i]);
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK);
    quiet.c_lflag |= ICANON | ECHONL;

    enum pw_result r = PW_IOERR;
    if (tcsetattr(fd, TCSAFLUSH, &quiet) == 0)
        r = tty_ask(fd, user, pw, &old_mask);
    int saved_errno = errno; /* for a PW_IOERR message */
    tcsetattr(fd, TCSAFLUSH, &old);
    close(fd);
    for (size_t i = 0; i < NSIGS; i++)
        sigaction(sigs[i], &old_sa[i], NULL);
    if (got_signal != 0) {
        explicit_bzero(pw, PW_MAX + 2);
        raise(got_signal); /* pending until unblocked below; normally fatal */
        r = PW_IOERR;
    }
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    errno = saved_errno;
    return r;
}

/* The password into pw; EX_OK or an exit status after saying why. */
static int get_password(const char *user, char pw[PW_MAX + 2])
{
    bool tty = isatty(STDIN_FILENO);
    enum pw_result r = tty ? tty_password(user, pw) : read_line(STDIN_FILENO, pw, NULL);
    const char *why = NULL;
    switch (r) {
    case PW_OK:
        if (strlen(pw) > SASL_MAX_FIELD)
            why = "password longer than 255 bytes refused: SMTP AUTH (SASL PLAIN, LOGIN) "
                  "cannot carry it (RFC 4616)";
        else if (!str_utf8_valid(pw, strlen(pw)))
            why = "password that is not UTF-8 refused: SMTP AUTH (SASL PLAIN, LOGIN) "
                  "cannot carry it (RFC 4616)";
        else
            return EX_OK;
        break;
    case PW_EMPTY: why = "empty password refused"; break;
    case PW_LONG: why = "password longer than 511 bytes refused"; break;
    case PW_NUL: why = "password with a NUL byte refused"; break;
    case PW_MISMATCH: why = "the passwords do not match"; break;
    case PW_IOERR:
        fprintf(stderr, "mailwarden user: cannot read the password from %s: %s\n",
                tty ? "/dev/tty" : "standard input", strerror(errno));
        return EX_NOINPUT;
    }
    fprintf(stderr, "mailwarden user: %s\n", why);
    return EX_DATAERR;
}

static void print_prefixed(const char *text)
{
    while (*text != '\0') {
        const char *nl = strchr(text, '\n');
        int n = nl ? (int)(nl - text) : (int)strlen(text);
        fprintf(stderr, "mailwarden user: %.*s\n", n, text);
        text += n + (nl != NULL);
    }
}

/* The users file's path into path; EX_OK or EX_CONFIG after saying why. */
static int users_path(const struct user_args *a, struct buf *path)
{
    if (a->users_file != NULL) {
        buf_append_str(path, a->users_file);
        return EX_OK;
    }
    struct mw_config *c = NULL;
    struct buf err = { 0 };
    int r = conf_load(a->conf, &c, &err);
    print_prefixed(buf_ptr(&err)); /* errors, or warnings on success */
    buf_free(&err);
    if (r < 0)
        return EX_CONFIG;
    if (c->users_file[0] != '\0')
        buf_append_str(path, c->users_file);
    else
        buf_printf(path, "%s/users", a->data_dir ? a->data_dir : c->data_dir);
    conf_unref(c);
    return EX_OK;
}

/* Load path into db; EX_OK, or EX_DATAERR/EX_NOINPUT after saying why. */
static int load(const char *path, struct userdb *db)
{
    struct buf err = { 0 };
    if (userdb_load(path, db, &err) == 0) {
        buf_free(&err);
        return EX_OK;
    }
    /* userdb errors are "file:LINE: what" for a bad line, "file: why"
     * when the file cannot be read at all. */
    const char *e = buf_ptr(&err);
    size_t n = strlen(path);
    bool bad_line = strncmp(e, path, n) == 0 && e[n] == ':' && ascii_digit(e[n + 1]);
    fprintf(stderr, "mailwarden user: %s\n", buf_ptr(&err));
    buf_free(&err);
    return bad_line ? EX_DATAERR : EX_NOINPUT;
}

/* Is the change possible given db? EX_OK or the status after saying why. */
static int check_user(const struct user_args *a, const struct userdb *db)
{
    bool exists = userdb_find(db, a->user) != NULL;
    if (a->act == ACT_ADD && exists) {
        fprintf(stderr, "mailwarden user: %s exists already (use passwd to change it)\n",
                a->user);
        return EX_CANTCREAT;
    }
    if (a->act != ACT_ADD && !exists) {
        fprintf(stderr, "mailwarden user: no user %s\n", a->user);
        return EX_NOUSER;
    }
    return EX_OK;
}

/* Under the lock: load, check again, change, save. */
static int commit(const struct user_args *a, const char *path, const char *hash)
{
    struct buf err = { 0 };
    struct userdb db = { 0 };
    int fd = userdb_lock(path, &err);
    if (fd < 0) {
        fprintf(stderr, "mailwarden user: %s\n", buf_ptr(&err));
        buf_free(&err);
        return EX_IOERR;
    }
    int rc = load(path, &db);
    if (rc == EX_OK)
        rc = check_user(a, &db);
    if (rc == EX_OK) {
        if (a->act == ACT_DEL)
            userdb_del(&db, a->user);
        else
            userdb_set(&db, a->user, hash);
        if (userdb_save(&db, path, &err) < 0) {
            fprintf(stderr, "mailwarden user: %s\n", buf_ptr(&err));
            rc = EX_IOERR;
        }
    }
    userdb_unlock(fd);
    userdb_free(&db);
    buf_free(&err);
    return rc;
}

static int list(const char *path)
{
    struct userdb db = { 0 };
    int rc = load(path, &db);
    for (size_t i = 0; rc == EX_OK && i < db.n; i++)
        printf("%s\n", db.v[i].user);
    userdb_free(&db);
    if (rc == EX_OK && fflush(stdout) != 0)
        rc = EX_IOERR;
    return rc;
}

/* The directory part of path, made if missing. */
static int make_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL || slash == path)
        return EX_OK;
    char *dir = xmemdup0(path, (size_t)(slash - path));
    int r = fs_mkdirs(dir, 0700);
    if (r < 0)
        fprintf(stderr, "mailwarden user: cannot create %s: %s\n", dir, strerror(-r));
    xfree(dir);
    return r < 0 ? EX_IOERR : EX_OK;
}

static int change(const struct user_args *a, const char *path)
{
    static const char *const done[] = { "added", "password changed for", "removed" };
    struct userdb db = { 0 };
    struct buf hash = { 0 };
    char pw[PW_MAX + 2];
    int rc = load(path, &db);
    if (rc == EX_OK)
        rc = check_user(a, &db);
    userdb_free(&db);
    if (rc == EX_OK && a->act != ACT_DEL) {
        rc = get_password(a->user, pw);
        if (rc == EX_OK && password_hash(pw, &hash) < 0) {
            fputs("mailwarden user: cannot hash the password\n", stderr);
            rc = EX_SOFTWARE;
        }
        explicit_bzero(pw, sizeof(pw));
    }
    if (rc == EX_OK && a->act == ACT_ADD)
        rc = make_dir(path);
    if (rc == EX_OK)
        rc = commit(a, path, buf_ptr(&hash));
    if (rc == EX_OK)
        fprintf(stderr, "mailwarden user: %s %s\n", done[a->act], a->user);
    if (hash.data != NULL)
        explicit_bzero(hash.data, hash.cap);
    buf_free(&hash);
    return rc;
}

int cli_user(int argc, char **argv)
{
    struct user_args a = { 0 };
    struct buf path = { 0 };
    int rc = parse_args(argc, argv, &a);
    if (rc != 0) {
        xfree(a.user);
        return rc > 0 ? EX_OK : EX_USAGE;
    }
    if (a.user != NULL) {
        str_lower(a.user);
        if (!userdb_address_ok(a.user)) {
            fprintf(stderr,
                    "mailwarden user: '%s' is not a valid address (local@domain, printable "
                    "ASCII, no ':' or space)\n",
                    a.user);
            xfree(a.user);
            return EX_DATAERR;
        }
    }
    rc = users_path(&a, &path);
    if (rc == EX_OK)
        rc = a.act == ACT_LIST ? list(buf_ptr(&path)) : change(&a, buf_ptr(&path));
    buf_free(&path);
    xfree(a.user);
    return rc;
}
