/*
 * cli/send - `mailwarden send`, also run as `sendmail`: submit the message
 * on standard input to the configured server over TLS, with AUTH.
 *
 *   mailwarden send [-t] [-i] [-v] [-f ADDR] [-F NAME] [-C FILE] [--] [RCPT...]
 *   sendmail ...  (the same; argv[0]'s base name selects it in main.c)
 *
 * The sendmail command line, the message and its header are handled in
 * send_msg.c; the SMTP session in smtp/client.c. This file loads the
 * client configuration (libConfuse; -C FILE, else $MAILWARDEN_SEND_CONF,
 * else /etc/mailwarden/send.conf), the password, and maps the outcome to
 * an exit status.
 *
 * Exit (sysexits.h): 0 accepted; 64 usage; 65 unusable message or address;
 * 67 a recipient refused (5xx); 69 server unreachable, or it refused the
 * session, sender or message (5xx); 71 local system error; 74 cannot read
 * standard input; 75 temporary failure (4xx, timeout, lost connection);
 * 76 TLS failure (no STARTTLS, certificate or name does not verify) or a
 * malformed reply; 77 authentication failed, or 5.7.x (not permitted)
 * for sender or message; 78 configuration error. Any refusal means that
 * nothing was sent: recipients are all accepted or the transaction is
 * abandoned.
 *
 * SECURITY: runs with the caller's privileges. The password (in the
 * configuration or a password_file) is refused when the file is open to
 * "other" (mode & 007), is sent only inside verified TLS, never printed
 * (-v masks AUTH), and wiped from our memory once the session is over.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <confuse.h>
#include <openssl/rand.h>

#include "cli/cli.h"
#include "cli/send_msg.h"
#include "conf/conf.h"
#include "core/fsutil.h"
#include "core/str.h"
#include "core/xmalloc.h"
#include "msg/addr.h"
#include "smtp/client.h"

#define DEFAULT_CONF "/etc/mailwarden/send.conf"
#define MAX_MSG ((size_t)256 << 20)
#define MAX_PASSWORD 1024

struct send_conf {
    char *server;
    unsigned port;
    enum smtp_client_tls tls;
    char *ca_file;         /* NULL: the system store */
    char *user;            /* NULL: no AUTH */
    char *password;        /* wiped in conf_free */
    char *password_file;
    char *domain;
    char *helo;
    unsigned timeout;
};

/* What the session was doing when it failed: picks the exit status. */
enum stage { ST_CONNECT, ST_AUTH, ST_MAIL, ST_RCPT, ST_DATA };

static const char *prog = "mailwarden send";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [-t] [-i] [-v] [-f ADDR] [-F NAME] [-C FILE] [--] [RCPT...] < message\n"
            "  -t         also send to the To, Cc and Bcc addresses (Bcc is removed)\n"
            "  -i, -oi    a line with a single \".\" does not end the message\n"
            "  -f, -r     envelope sender (and From, if the message has none)\n"
            "  -F NAME    full name for a From field that is added\n"
            "  -C FILE    client configuration (default: $MAILWARDEN_SEND_CONF or %s)\n"
            "  -v         show the SMTP dialogue on standard error (AUTH data masked)\n"
            "  ignored:   -oXXX -B TYPE -bm -N -R -V -X -L -O -h -p -A -d -n -m -U -G\n",
            prog, DEFAULT_CONF);
}

/* ------------------------------------------------------------ config */

static int v_range(cfg_t *cfg, cfg_opt_t *opt, long lo, long hi)
{
    long v = cfg_opt_getnint(opt, 0);
    if (v < lo || v > hi) {
        cfg_error(cfg, "%s = %ld is out of range (%ld..%ld)", cfg_opt_name(opt), v, lo, hi);
        return -1;
    }
    return 0;
}

static int v_port(cfg_t *cfg, cfg_opt_t *opt) { return v_range(cfg, opt, 1, 65535); }
static int v_timeout(cfg_t *cfg, cfg_opt_t *opt) { return v_range(cfg, opt, 1, 3600); }

static int v_tls(cfg_t *cfg, cfg_opt_t *opt)
{
    const char *m = cfg_opt_getnstr(opt, 0);
    if (m == NULL || (strcmp(m, "implicit") != 0 && strcmp(m, "starttls") != 0)) {
        cfg_error(cfg, "tls = \"%s\": expected implicit or starttls", m ? m : "");
        return -1;
    }
    return 0;
}

/* A host name (or for server, an IP literal) with no space or control. */
static int v_name(cfg_t *cfg, cfg_opt_t *opt)
{
    const char *s = cfg_opt_getnstr(opt, 0);
    bool ok = s != NULL && s[0] != '\0' && strlen(s) <= 255;
    for (const char *p = s; ok && *p; p++)
        ok = (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f && *p != '@' && *p != '<';
    if (!ok) {
        cfg_error(cfg, "%s = \"%s\" is not a host name", cfg_opt_name(opt), s ? s : "");
        return -1;
    }
    return 0;
}

/* A domain, or for helo also an address literal, as RFC 5321 has them. */
static bool domain_ok(const char *d)
{
    struct buf path = { 0 };
    struct mail_addr a;
    size_t used = 0;
    buf_printf(&path, "<x@%s>", d);
    bool ok = d[0] != '\0' && addr_parse_path(buf_ptr(&path), buf_size(&path), 0, &a, &used) == 0;
    if (ok) {
        ok = used == buf_size(&path);
        addr_free(&a);
    }
    buf_free(&path);
    return ok;
}

static int v_domain(cfg_t *cfg, cfg_opt_t *opt)
{
    const char *s = cfg_opt_getnstr(opt, 0);
    if (s == NULL || !domain_ok(s)) {
        cfg_error(cfg, "%s = \"%s\" is not a domain name", cfg_opt_name(opt), s ? s : "");
        return -1;
    }
    return 0;
}

static int v_nonempty(cfg_t *cfg, cfg_opt_t *opt)
{
    const char *s = cfg_opt_getnstr(opt, 0);
    if (s == NULL || s[0] == '\0') {
        cfg_error(cfg, "%s must not be empty", cfg_opt_name(opt));
        return -1;
    }
    return 0;
}

static cfg_opt_t conf_opts[] = {
    CFG_STR("server", NULL, CFGF_NONE),
    CFG_INT("port", 0, CFGF_NONE),
    CFG_STR("tls", "implicit", CFGF_NONE),
    CFG_STR("ca_file", NULL, CFGF_NONE),
    CFG_STR("user", NULL, CFGF_NONE),
    CFG_STR("password", NULL, CFGF_NONE),
    CFG_STR("password_file", NULL, CFGF_NONE),
    CFG_STR("domain", NULL, CFGF_NONE),
    CFG_STR("helo", NULL, CFGF_NONE),
    CFG_INT("timeout", 60, CFGF_NONE),
    CFG_END(),
};

static void conf_free(struct send_conf *c)
{
    if (c->password != NULL)
        explicit_bzero(c->password, strlen(c->password));
    xfree(c->server);
    xfree(c->ca_file);
    xfree(c->user);
    xfree(c->password);
    xfree(c->password_file);
    xfree(c->domain);
    xfree(c->helo);
    memset(c, 0, sizeof(*c));
}

static char *opt_dup(cfg_t *cfg, const char *name)
{
    const char *s = cfg_getstr(cfg, name);
    return s != NULL && s[0] != '\0' ? xstrdup(s) : NULL;
}

/* The values, and the checks that involve more than one key. */
static int conf_build(cfg_t *cfg, const char *path, mode_t mode, struct send_conf *c,
                      struct buf *err)
{
    c->server = opt_dup(cfg, "server");
    c->tls = strcmp(cfg_getstr(cfg, "tls"), "starttls") == 0 ? SMTP_CLIENT_STARTTLS
                                                              : SMTP_CLIENT_IMPLICIT;
    long port = cfg_getint(cfg, "port");
    c->port = port > 0 ? (unsigned)port : c->tls == SMTP_CLIENT_STARTTLS ? 587 : 465;
    c->ca_file = opt_dup(cfg, "ca_file");
    c->user = opt_dup(cfg, "user");
    c->password = opt_dup(cfg, "password");
    c->password_file = opt_dup(cfg, "password_file");
    c->domain = opt_dup(cfg, "domain");
    c->helo = opt_dup(cfg, "helo");
    c->timeout = (unsigned)cfg_getint(cfg, "timeout");
    if (c->domain == NULL)
        c->domain = conf_system_hostname();
    if (c->helo == NULL)
        c->helo = conf_system_hostname();
    if (c->server == NULL)
        buf_printf(err, "%s:0: server is not set: which server should mail go to?\n", path);
    else if (c->password && c->password_file)
        buf_printf(err, "%s:0: password and password_file exclude each other\n", path);
    else if (c->user && !c->password && !c->password_file)
        buf_printf(err, "%s:0: user is set, but neither password nor password_file\n", path);
    else if (!c->user && (c->password || c->password_file))
        buf_printf(err, "%s:0: a password is set, but no user\n", path);
    else if (c->password && (mode & 007))
        buf_printf(err, "%s holds a password but is open to other users (mode %04o); "
                   "run: chmod o-rwx %s\n", path, (unsigned)(mode & 07777), path);
    else if (mode & 002)
        buf_printf(err, "%s is writable by other users (mode %04o); run: chmod o-w %s\n",
                   path, (unsigned)(mode & 07777), path);
    return buf_size(err) > 0 ? -1 : 0;
}

static cfg_t *conf_parser(void)
{
    cfg_t *cfg = cfg_init(conf_opts, CFGF_NONE);
    if (cfg == NULL)
        return NULL;
    cfg_set_validate_func(cfg, "port", v_port);
    cfg_set_validate_func(cfg, "timeout", v_timeout);
    cfg_set_validate_func(cfg, "tls", v_tls);
    cfg_set_validate_func(cfg, "server", v_name);
    cfg_set_validate_func(cfg, "domain", v_domain);
    cfg_set_validate_func(cfg, "helo", v_domain);
    cfg_set_validate_func(cfg, "user", v_nonempty);
    cfg_set_validate_func(cfg, "ca_file", v_nonempty);
    cfg_set_validate_func(cfg, "password_file", v_nonempty);
    return cfg;
}

/* Parse the open file fp (its mode already known) into c. */
static int send_conf_parse(FILE *fp, const char *path, mode_t mode, struct send_conf *c,
                      struct buf *err)
{
    cfg_t *cfg = conf_parser();
    if (cfg == NULL) {
        buf_printf(err, "%s: cannot initialise the configuration parser\n", path);
        return -1;
    }
    conf_errors_begin(cfg, err);
    free(cfg->filename);  /* cfg_parse_fp() keeps the name we give for messages */
    cfg->filename = strdup(path);
    int r = cfg_parse_fp(cfg, fp);
    if (r != CFG_SUCCESS && buf_size(err) == 0)
        buf_printf(err, "%s:0: configuration error\n", path);
    int rc = r == CFG_SUCCESS ? conf_build(cfg, path, mode, c, err) : -1;
    char *pw = cfg_getstr(cfg, "password");
    if (pw != NULL)
        explicit_bzero(pw, strlen(pw));
    conf_errors_end();
    cfg_free(cfg);
    return rc;
}

static int send_conf_load(const char *path, struct send_conf *c, struct buf *err)
{
    char iobuf[BUFSIZ];
    FILE *fp = fopen(path, "re");
    struct stat st;
    if (fp == NULL || fstat(fileno(fp), &st) < 0) {
        buf_printf(err, "%s:0: cannot read file: %s\n", path, strerror(errno));
        if (fp)
            fclose(fp);
        return -1;
    }
    setvbuf(fp, iobuf, _IOFBF, sizeof(iobuf));  /* ours, so that we can wipe it */
    int rc = send_conf_parse(fp, path, st.st_mode, c, err);
    fclose(fp);
    explicit_bzero(iobuf, sizeof(iobuf));
    return rc;
}

/* The first line of password_file, which others must not be able to open. */
static int read_password_file(struct send_conf *c, struct buf *err)
{
    return fs_read_secret(c->password_file, MAX_PASSWORD, &c->password, err);
}

/* ---------------------------------------------------------- envelope */

struct envelope {
    char *sender;          /* "" for the null path */
    char *from;            /* the address for a From field we add */
    struct send_rcpts rcpts;
    struct buf msg;        /* as it goes out */
    bool eightbit, utf8;
};

static void envelope_free(struct envelope *e)
{
    xfree(e->sender);
    xfree(e->from);
    send_rcpts_free(&e->rcpts);
    buf_free(&e->msg);
}

/* Without -f: the configured user when it is an address, else the login
 * name, at the configured domain. */
static int default_sender(const struct send_conf *c, struct buf *out, struct buf *err)
{
    const char *who = c->user;
    if (who == NULL) {
        struct passwd *pw = getpwuid(getuid());
        who = pw != NULL ? pw->pw_name : getenv("USER");
    }
    return send_qualify(who != NULL && who[0] ? who : "nobody", c->domain, out, err);
}

static int make_sender(const struct send_args *a, const struct send_conf *c, struct envelope *e,
                       struct buf *err)
{
    struct buf s = { 0 }, d = { 0 };
    int rc = default_sender(c, &d, err);
    if (rc == 0 && a->sender != NULL && a->sender[0] != '\0' && strcmp(a->sender, "<>") != 0) {
        const char *f = a->sender;
        size_t n = strlen(f);
        char *bare = n > 2 && f[0] == '<' && f[n - 1] == '>' ? xmemdup0(f + 1, n - 2) : xstrdup(f);
        rc = send_qualify(bare, c->domain, &s, err);
        xfree(bare);
    }
    if (rc == 0) {
        bool given = a->sender != NULL;
        e->sender = xstrdup(given ? buf_ptr(&s) : buf_ptr(&d));
        e->from = xstrdup(buf_size(&s) > 0 ? buf_ptr(&s) : buf_ptr(&d));
    }
    buf_free(&s);
    buf_free(&d);
    return rc;
}

static void make_ids(const struct send_conf *c, struct buf *date, struct buf *msgid)
{
    time_t now = time(NULL);
    unsigned char r[12];
    struct tm tm;
    send_format_date(now, date);
    if (RAND_bytes(r, sizeof(r)) != 1)
        memset(r, 0, sizeof(r)), r[0] = (unsigned char)getpid();
    gmtime_r(&now, &tm);
    buf_printf(msgid, "<%04d%02d%02d%02d%02d%02d.", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
               tm.tm_hour, tm.tm_min, tm.tm_sec);
    for (size_t i = 0; i < sizeof(r); i++)
        buf_printf(msgid, "%02x", r[i]);
    buf_printf(msgid, "@%s>", c->domain);
}

static bool has_8bit(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80)
            return true;
    return false;
}

/* Read and prepare the message, collect the recipients. An exit status. */
static int make_envelope(const struct send_args *a, const struct send_conf *c,
                         struct envelope *e, struct buf *err)
{
    for (size_t i = 0; i < a->nrcpts; i++)
        if (send_add_rcpts(a->rcpts[i], strlen(a->rcpts[i]), c->domain, &e->rcpts, err) < 0)
            return EX_DATAERR;
    if (make_sender(a, c, e, err) < 0)
        return EX_DATAERR;
    struct buf raw = { 0 }, date = { 0 }, msgid = { 0 };
    int rc = send_read_message(stdin, !a->ignore_dots, MAX_MSG, &raw);
    int status = rc == SEND_READ_EIO ? EX_IOERR : EX_DATAERR;
    if (rc == SEND_READ_EIO)
        buf_printf(err, "cannot read the message: %s", strerror(errno));
    else if (rc == SEND_READ_ETOOBIG)
        buf_printf(err, "the message is larger than %zu MiB", MAX_MSG >> 20);
    else if (rc == SEND_READ_ENUL)
        buf_append_str(err, "the message contains a NUL byte");
    if (rc == 0) {
        make_ids(c, &date, &msgid);
        struct send_header_opts o = {
            .from_addr = e->from, .fullname = a->fullname, .domain = c->domain,
            .date = buf_ptr(&date), .msgid = buf_ptr(&msgid), .extract = a->extract,
        };
        rc = send_prepare(buf_ptr(&raw), buf_size(&raw), &o, &e->msg, &e->rcpts, err);
    }
    buf_free(&raw);
    buf_free(&date);
    buf_free(&msgid);
    if (rc == 0 && e->rcpts.n == 0) {
        buf_append_str(err, "no recipients: none given and none in To, Cc or Bcc");
        rc = -1;
    }
    if (rc < 0)
        return status;
    e->eightbit = has_8bit(buf_ptr(&e->msg), buf_size(&e->msg));
    e->utf8 = has_8bit(e->sender, strlen(e->sender));
    for (size_t i = 0; i < e->rcpts.n; i++)
        e->utf8 |= has_8bit(e->rcpts.v[i], strlen(e->rcpts.v[i]));
    return EX_OK;
}

/* ------------------------------------------------------------ submit */

static int exit_status(int rc, enum stage st, const struct smtp_reply *r)
{
    switch (rc) {
    case SMTPC_OK: return EX_OK;
    case SMTPC_ECONNECT: return EX_UNAVAILABLE;
    case SMTPC_ETLS: case SMTPC_EPROTO: return EX_PROTOCOL;
    case SMTPC_EIO: return EX_TEMPFAIL;
    case SMTPC_EAUTH: return EX_NOPERM;
    case SMTPC_ECONFIG: return EX_CONFIG;
    case SMTPC_EOS: return EX_OSERR;
    default: break;
    }
    if (smtp_reply_class(r) == 4)
        return EX_TEMPFAIL;
    if (st == ST_AUTH || (st != ST_RCPT && strncmp(r->enhanced, "5.7.", 4) == 0))
        return EX_NOPERM;
    if (st == ST_RCPT)
        return EX_NOUSER;
    if (st == ST_DATA &&
        (strncmp(r->enhanced, "5.6.", 4) == 0 || strcmp(r->enhanced, "5.3.4") == 0))
        return EX_DATAERR;
    return EX_UNAVAILABLE;
}

/* Every recipient, reporting each refusal; the worst exit status. */
static int send_rcpts(struct smtp_client *c, const struct envelope *e, int *rc)
{
    int status = EX_OK;
    for (size_t i = 0; i < e->rcpts.n && *rc != SMTPC_EIO; i++) {
        int r = smtp_client_rcpt(c, e->rcpts.v[i]);
        if (r == SMTPC_OK)
            continue;
        fprintf(stderr, "%s: %s\n", prog, smtp_client_error(c));
        int s = exit_status(r, ST_RCPT, smtp_client_reply(c));
        if (status == EX_OK || s == EX_NOUSER || r != SMTPC_EREPLY)
            status = s;
        *rc = r;
        if (r != SMTPC_EREPLY)
            break;
    }
    return status;
}

static int submit(struct send_conf *cf, const struct envelope *e, bool verbose)
{
    struct smtp_client_opts o = {
        .host = cf->server, .port = cf->port, .tls = cf->tls, .ca_file = cf->ca_file,
        .helo = cf->helo, .timeout = cf->timeout, .trace = verbose ? stderr : NULL,
    };
    struct smtp_client *c;
    enum stage st = ST_CONNECT;
    int rc = smtp_client_open(&o, &c);
    if (rc == SMTPC_OK && cf->user != NULL) {
        st = ST_AUTH;
        rc = smtp_client_auth(c, cf->user, cf->password);
        explicit_bzero(cf->password, strlen(cf->password));  /* used once */
    }
    if (rc == SMTPC_OK) {
        st = ST_MAIL;
        rc = smtp_client_mail(c, e->sender, buf_size(&e->msg), e->eightbit, e->utf8);
    }
    int status = EX_OK;
    if (rc == SMTPC_OK) {
        status = send_rcpts(c, e, &rc);
        if (status != EX_OK) {
            fprintf(stderr, "%s: not all recipients were accepted; the message was not sent\n",
                    prog);
            if (rc == SMTPC_EREPLY)
                (void)smtp_client_rset(c);
        }
    }
    if (rc == SMTPC_OK) {
        st = ST_DATA;
        rc = smtp_client_data(c, buf_ptr(&e->msg), buf_size(&e->msg));
    }
    if (rc != SMTPC_OK && status == EX_OK) {
        fprintf(stderr, "%s: %s\n", prog, smtp_client_error(c));
        status = exit_status(rc, st, smtp_client_reply(c));
    }
    smtp_client_quit(c);
    smtp_client_free(c);
    return status;
}

/* ------------------------------------------------------------ command */

static const char *conf_path(const struct send_args *a)
{
    if (a->config != NULL)
        return a->config;
    const char *env = getenv("MAILWARDEN_SEND_CONF");
    return env != NULL && env[0] != '\0' ? env : DEFAULT_CONF;
}

/* Configuration and password; an exit status. */
static int load_conf(const struct send_args *a, struct send_conf *c, struct buf *err)
{
    if (send_conf_load(conf_path(a), c, err) < 0 ||
        (c->password_file != NULL && read_password_file(c, err) < 0)) {
        fprintf(stderr, "%s: %s", prog, buf_ptr(err));
        return EX_CONFIG;
    }
    return EX_OK;
}

int cli_send(int argc, char **argv)
{
    const char *base = argc > 0 ? strrchr(argv[0], '/') : NULL;
    base = base != NULL ? base + 1 : argc > 0 ? argv[0] : "";
    prog = strcmp(base, "sendmail") == 0 ? "sendmail" : "mailwarden send";
    struct send_args a;
    struct buf err = { 0 };
    int rc = send_parse_args(argc, argv, &a, &err);
    if (rc == 0 && !a.extract && a.nrcpts == 0) {
        buf_append_str(&err, "no recipients given (name them, or use -t)");
        rc = -1;
    }
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "%s: %s\n", prog, buf_ptr(&err));
        usage(rc < 0 ? stderr : stdout);
        send_args_free(&a);
        buf_free(&err);
        return rc < 0 ? EX_USAGE : EX_OK;
    }
    signal(SIGPIPE, SIG_IGN);
    struct send_conf conf = { 0 };
    struct envelope e = { 0 };
    rc = load_conf(&a, &conf, &err);
    if (rc == EX_OK) {
        rc = make_envelope(&a, &conf, &e, &err);
        if (rc != EX_OK)
            fprintf(stderr, "%s: %s\n", prog, buf_ptr(&err));
    }
    if (rc == EX_OK)
        rc = submit(&conf, &e, a.verbose);
    envelope_free(&e);
    conf_free(&conf);
    send_args_free(&a);
    buf_free(&err);
    return rc;
}
