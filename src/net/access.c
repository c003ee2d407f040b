/*
 * access.c - the daemon's access-control decisions, each written once to
 * the log as the audit record (event=auth, sender, rcpt, limit):
 *
 *   SMTP AUTH      the user database is read and the password hash checked
 *                  on a worker thread (never the loop); an unknown user runs
 *                  the same hash as a wrong password. Failures are counted
 *                  per client IP and per account; past auth_failures, the
 *                  IP or account waits (auth_backoff, doubling, capped at
 *                  auth_backoff_max) and gets 454 4.7.0 without a check.
 *   MAIL           an authenticated user may use only the senders granted
 *                  to it (553 5.7.1) and at most max_message_rate messages
 *                  a minute (451 4.7.1); other clients go on to SPF.
 *   RCPT           policy/relay decides local, relay allowed or denied.
 *   connect        at most max_connection_rate new connections a minute per
 *                  IP (421 4.7.0; the counters are in limits.c).
 *
 * SECURITY: the password exists only in the session's SASL state and the
 * worker job's copy, which is wiped when the job ends. Log lines carry the
 * user name as sent (escaped by the logger), never the password.
 */
#include "net/access.h"
#include "net/conn.h"
#include "net/limits.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "auth/password.h"
#include "auth/userdb.h"
#include "core/idna.h"
#include "core/log.h"
#include "dns/dns.h"
#include "core/str.h"
#include "core/worker.h"
#include "core/xmalloc.h"
#include "msg/header.h"
#include "policy/ratelimit.h"
#include "policy/relay.h"

/* ---- AUTH ---- */

struct auth_job {
    struct conn *c;
    uint64_t generation;  /* of the counters the attempt was counted in */
    char key[sizeof(((struct conn *)0)->key)];
    char *user, *pass, *path;
    const char *mech;
    int found;            /* userdb_lookup: 1, 0 or -1 */
    bool ok;
    const char *rehashed; /* the method replaced after a good login, or NULL */
    struct buf why;
};

static void auth_log(struct conn *c, const char *user, const char *mech, const char *result,
                     const char *extra_key, uint64_t extra)
{
    struct log_line l;
    log_begin(&l, result[0] == 'p' ? MW_LOG_INFO : MW_LOG_WARN, "auth");
    log_str(&l, "session", c->id);
    log_str(&l, "client", c->ip);
    log_str(&l, "user", user);
    log_str(&l, "mech", mech);
    log_str(&l, "result", result);
    if (extra_key)
        log_u64(&l, extra_key, extra);
    log_end(&l);
}

/* After a good login with a hash of another method or cost: store the
 * default (yescrypt) hash of the same password, so that every account
 * answers a wrong password in the same time. The users file is rewritten
 * under its lock, as `mailwarden user` does, and only if the entry is
 * still the hash that was checked. Returns the old method's name, or NULL
 * (why says what failed). Runs on a worker. */
static const char *auth_rehash(const char *path, const char *user, const char *pass,
                               const char *old, struct buf *why)
{
    const char *method = password_method_name(old);
    struct buf fresh;
    buf_init(&fresh);
    struct userdb db = { 0 };
    const char *done = NULL;
    int fd = userdb_lock(path, why);
    if (fd >= 0 && password_hash(pass, &fresh) == 0 && userdb_load(path, &db, why) == 0) {
        const char *cur = userdb_find(&db, user);
        if (cur != NULL && strcmp(cur, old) == 0) {
            userdb_set(&db, user, buf_ptr(&fresh));
            if (userdb_save(&db, path, why) == 0)
                done = method;
        }
    }
    if (fd >= 0)
        userdb_unlock(fd);
    userdb_free(&db);
    explicit_bzero(fresh.data, buf_size(&fresh));
    buf_free(&fresh);
    return done;
}

static void auth_work(void *arg)
{
    struct auth_job *j = arg;
    char *hash = NULL;
    j->found = userdb_lookup(j->path, j->user, &hash, &j->why);
    j->ok = password_verify(j->pass, j->found == 1 ? hash : NULL) && j->found == 1;
    if (j->ok && password_needs_rehash(hash))
        j->rehashed = auth_rehash(j->path, j->user, j->pass, hash, &j->why);
    if (hash) {
        explicit_bzero(hash, strlen(hash));
        xfree(hash);
    }
    explicit_bzero(j->pass, strlen(j->pass));
}

static void auth_answer(struct conn *c, int code, const char *enh, const char *text)
{
    smtp_session_answer(c->sess, code, enh, text);
    if (!c->in_ask)
        conn_pump(c);
}

static void auth_done(void *arg)
{
    struct auth_job *j = arg;
    struct conn *c = j->c;
    struct access *a = c->srv->access;
    if (buf_size(&j->why))
        log_kv(MW_LOG_ERROR, "users_file", "file", j->path, "error", buf_ptr(&j->why), NULL);
    if (j->rehashed != NULL)
        log_kv(MW_LOG_INFO, "auth_rehash", "user", j->user, "from", j->rehashed, "to", "yescrypt",
               NULL);
    /* The attempt was counted as a failure when it started; one that did
     * not fail is given back (a reload since then made new counters). */
    bool same = a->generation == j->generation;
    if (same && j->found < 0) {
        backoff_forgive(a->fail_ip, j->key);
        backoff_forgive(a->fail_user, j->user);
    } else if (same && j->ok) {
        backoff_forgive(a->fail_ip, j->key);
        backoff_clear(a->fail_user, j->user);
    }
    if (!c->dead) {
        if (j->found < 0) {
            auth_log(c, j->user, j->mech, "tempfail", NULL, 0);
            auth_answer(c, 454, "4.7.0", "Temporary authentication failure");
        } else if (j->ok) {
            auth_log(c, j->user, j->mech, "pass", NULL, 0);
            auth_answer(c, 235, "2.7.0", "Authentication successful");
        } else {
            auth_log(c, j->user, j->mech, "fail", "failures", backoff_failures(a->fail_user, j->user));
            auth_answer(c, 535, "5.7.8", "Authentication credentials invalid");
        }
    }
    xfree(j->user);
    xfree(j->pass);
    xfree(j->path);
    buf_free(&j->why);
    xfree(j);
    conn_job_done(c);
}

void access_auth(struct conn *c)
{
    struct smtp_auth_request req;
    if (!smtp_session_auth_request(c->sess, &req)) {
        smtp_session_answer(c->sess, 454, "4.7.0", "Temporary authentication failure");
        return;
    }
    struct access *a = c->srv->access;
    char *user = xstrdup(req.user);
    str_lower(user);
    const char *key = c->key;
    time_t now = time(NULL);
    unsigned wait_ip = backoff_wait(a->fail_ip, key, now);
    unsigned wait_user = backoff_wait(a->fail_user, user, now);
    unsigned wait = wait_ip > wait_user ? wait_ip : wait_user;
    if (wait > 0) {
        auth_log(c, user, req.mech, "throttled", "wait", wait);
        char text[128];
        snprintf(text, sizeof(text),
                 "Too many failed authentication attempts, try again in %u seconds", wait);
        xfree(user);
        smtp_session_answer(c->sess, 454, "4.7.0", text);
        return;
    }
    /* Counted as a failure now, not when the check ends: attempts still
     * queued or running count against the threshold, so a burst of
     * parallel attempts gets at most auth_failures password checks. */
    backoff_fail(a->fail_ip, key, now);
    backoff_fail(a->fail_user, user, now);
    struct auth_job *j = xcalloc(1, sizeof(*j));
    j->c = c;
    j->generation = a->generation;
    memcpy(j->key, key, sizeof(j->key));
    j->user = user;
    j->pass = xstrdup(req.pass);
    j->mech = req.mech;
    struct buf path;
    buf_init(&path);
    if (c->conf->users_file[0])
        buf_append_str(&path, c->conf->users_file);
    else
        buf_printf(&path, "%s/users", c->srv->data_dir);
    j->path = path.data;
    c->jobs++;
    worker_submit(c->srv->auth_pool, auth_work, auth_done, j);
}

/* ---- MAIL and RCPT ---- */

void access_mail(struct conn *c)
{
    const char *user = smtp_session_auth_user(c->sess);
    if (user == NULL) {
        sender_check(c);
        return;
    }
    conn_spf_reset(c);
    const struct mail_addr *from = &smtp_session_txn(c->sess)->from;
    struct access *a = c->srv->access;
    if (!from->null && !conf_sender_allowed(c->conf, user, from->local, from->domain)) {
        log_kv(MW_LOG_WARN, "sender", "session", c->id, "client", c->ip, "user", user, "from",
               from->text, "result", "refused", "reason", "address not granted to user", NULL);
        char text[400];
        snprintf(text, sizeof(text), "Error: sender address <%s> not owned by user %s",
                 from->text, user);
        smtp_session_answer(c->sess, 553, "5.7.1", text);
        return;
    }
    if (a->msg_rate && !rate_allow(a->msg_rate, user, time(NULL))) {
        log_kv(MW_LOG_WARN, "limit", "session", c->id, "client", c->ip, "user", user, "limit",
               "max_message_rate", NULL);
        smtp_session_answer(c->sess, 451, "4.7.1",
                            "Error: too many messages from this user, try again later");
        return;
    }
    log_kv(MW_LOG_INFO, "sender", "session", c->id, "user", user, "from", from->text, "result",
           "accepted", NULL);
    smtp_session_answer(c->sess, 250, "2.1.0", "Ok");
}

static void log_rcpt(struct conn *c, const struct mail_addr *r, enum relay_verdict v,
                     const char *why, const char *result)
{
    const char *user = smtp_session_auth_user(c->sess);
    struct log_line l;
    log_begin(&l, MW_LOG_INFO, "rcpt");
    log_str(&l, "session", c->id);
    log_str(&l, "client", c->ip);
    log_str(&l, "rcpt", r->text);
    log_str(&l, "relay", relay_verdict_name(v));
    log_str(&l, "rule", why);
    if (user)
        log_str(&l, "user", user);
    log_str(&l, "result", result);
    log_end(&l);
}

/* A recipient we would relay: its domain's MX, for a null MX (RFC 7505). */
struct rcpt_job {
    struct conn *c;
    const char *why;       /* a static rule name from relay_check */
    bool done;
};

static void rcpt_mx(void *arg, const struct dns_answer *a)
{
    struct rcpt_job *j = arg;
    struct conn *c = j->c;
    if (!c->dead) {
        const struct mail_addr *r = smtp_session_pending_rcpt(c->sess);
        if (dns_answer_null_mx(a)) {
            log_rcpt(c, r, RELAY_ALLOWED, j->why, "null_mx");
            smtp_session_answer(c->sess, 556, "5.1.10",
                                "Error: the recipient's domain accepts no mail (null MX)");
        } else {
            log_rcpt(c, r, RELAY_ALLOWED, j->why, "accepted");
            smtp_session_answer(c->sess, 250, "2.1.5", "Ok");
        }
        if (!c->in_ask)
            conn_pump(c);
    }
    xfree(j);
    conn_job_done(c);
}

void access_rcpt(struct conn *c)
{
    const struct mail_addr *r = smtp_session_pending_rcpt(c->sess);
    const char *user = smtp_session_auth_user(c->sess);
    struct relay_client cl = { .ip = c->ip, .authenticated = user != NULL };
    const char *why = "";
    enum relay_verdict v = relay_check(c->conf, &cl, r, &why);
    int code = 250;
    const char *enh = "2.1.5", *text = "Ok", *result = "accepted";
    if (v == RELAY_DENIED) {
        code = 554, enh = "5.7.1", text = "Error: relay access denied", result = "relay_denied";
    } else if (v == RELAY_BAD_LOCAL) {
        code = 550, enh = "5.7.1";
        text = "Error: routing characters in a local address are not accepted";
        result = "refused";
    } else if (v == RELAY_ALLOWED && r->domain[0] && r->domain[0] != '[') {
        /* Mail we would relay to a domain that takes none would only
         * bounce later: say so now (RFC 7505 4.1). */
        char *ace = idna_to_ascii(r->domain);
        if (ace != NULL) {
            struct rcpt_job *j = xcalloc(1, sizeof(*j));
            j->c = c;
            j->why = why;
            c->jobs++;
            dns_resolve(c->srv->dns, ace, DNS_T_MX, rcpt_mx, j);
            xfree(ace);
            return;
        }
    }
    log_rcpt(c, r, v, why, result);
    smtp_session_answer(c->sess, code, enh, text);
}

/* ---- header From of authenticated mail ---- */

/* 0 if every From mailbox is granted to the user (or there is no From),
 * else -1 with the reply text in why. a is the message's author as
 * msg_author() read it, the same reading DMARC uses. */
int access_header_from(struct conn *c, const struct msg_author *a, struct buf *why)
{
    const char *user = smtp_session_auth_user(c->sess);
    if (user == NULL || !c->conf->sender_header_match || a->status == MSG_AUTHOR_MISSING)
        return 0;
    if (a->status != MSG_AUTHOR_OK && a->status != MSG_AUTHOR_MAILBOXES)
        buf_printf(why, "Error: cannot tell who the message is from: %s",
                   msg_author_strerror(a->status));
    for (size_t i = 0; i < a->count && buf_size(why) == 0; i++)
        if (!conf_sender_allowed(c->conf, user, a->mb[i].local, a->mb[i].domain))
            buf_printf(why, "Error: header From <%.64s@%.255s> not owned by user %s",
                       a->mb[i].local, a->mb[i].domain, user);
    if (buf_size(why) == 0)
        return 0;
    log_kv(MW_LOG_WARN, "sender", "session", c->id, "client", c->ip, "user", user, "where",
           "header", "result", "refused", "reason", buf_ptr(why), NULL);
    return -1;
}
