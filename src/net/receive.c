/*
 * receive.c - from a complete SMTP transaction to a durable queue file.
 *
 * On the loop: take the envelope and pick a queue id. On a verify worker
 * (on the loop for a message of at most 64 KiB, where the hop would cost
 * more than the work): everything that reads the whole message, so that no
 * message, however large or hostile, holds up other sessions: its author (msg_author, the
 * reading DMARC and the sender binding share), DKIM's local work (header
 * index, canonical body, hashes) and the removal of forged
 * Authentication-Results. Back on the loop: the sender binding, then every
 * DKIM key asked for at once, within dkim_timeout (what has not answered
 * by then is temperror); then DMARC, and Authentication-Results (SPF from
 * MAIL, DKIM, DMARC), Received-SPF and the Received header (RFC 5321 4.4).
 * On a commit worker: queue_commit() (fsync'd file and directory). Back on
 * the loop: only now answer 250 with the queue id, and hand the message to
 * delivery. The session holds the body untouched while it waits, so the
 * workers read it in place.
 */
#include "net/receive.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "core/idna.h"
#include "core/log.h"
#include "core/str.h"
#include "core/worker.h"
#include "core/xmalloc.h"
#include "dkim/dkim.h"
#include "msg/authres.h"
#include "net/access.h"
#include "net/conn.h"
#include "net/inbound_dmarc.h"
#include "queue/queue.h"
#include "net/signing.h"
#include "msg/header.h"
#include "spf/spf.h"

/* Messages up to this size are read on the loop (about a millisecond at
 * most, even for a header built to be expensive); larger ones on the
 * verify pool. */
#define INSPECT_ON_LOOP_MAX (64 * 1024)

struct commit_job {
    struct conn *c;
    struct server *srv;
    char id[ID_LEN + 1];
    struct buf received;
    char **rcpts;
    unsigned *notify;      /* RFC 3461, per recipient */
    char **orcpt;
    size_t nrcpt;
    char ret;
    char *envid;
    char *from;
    char *spf;          /* "<result> <domain>" for the envelope */
    time_t arrival;
    const struct buf *body;
    struct buf stripped;   /* the body without forged Authentication-Results */
    char *authserv;        /* our host name, for the worker */
    size_t forged;         /* forged Authentication-Results fields removed */
    struct msg_author author;
    struct dkim_verify *dkim;      /* made on the worker, until its keys are asked */
    struct dkim_verify *keys;      /* while its keys are out (for the deadline) */
    struct event *deadline;        /* dkim_timeout */
    size_t dkim_skipped;
    struct signing *signing;  /* DKIM keys, when signing for sign_domain */
    char *sign_domain;
    struct buf sig;        /* DKIM-Signature fields made on the worker */
    struct buf sig_err;
    int nsig;
    struct authres ar;     /* our Authentication-Results, built in stages */
    const char *folder;    /* Maildir++ folder (DMARC quarantine), or NULL */
    uint32_t slot;         /* where the queue put it */
    int result;
};

static void rfc5322_date(char *out, size_t n, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

static void build_received(struct commit_job *j, struct conn *c, const struct smtp_txn *t)
{
    char date[64];
    rfc5322_date(date, sizeof(date), j->arrival);
    struct buf *b = &j->received;
    /* RFC 7208 9.1: Received-SPF goes above our Received field. */
    if (c->spf_header)
        buf_append_str(b, c->spf_header);
    buf_printf(b, "Received: from %s (%s)\r\n", smtp_session_helo(c->sess), c->literal);
    if (c->tls_info)
        buf_printf(b, "\t(using %s)\r\n", c->tls_info);
    buf_printf(b, "\tby %s (mailwarden) with %s id %s", c->conf->hostname,
               smtp_session_protocol(c->sess), j->id);
    if (t->nrcpt == 1)
        buf_printf(b, "\r\n\tfor <%s>", j->rcpts[0]);
    buf_printf(b, "; %s\r\n", date);
}

static void commit_job_free(struct commit_job *j)
{
    dkim_verify_free(j->dkim);
    if (j->deadline)
        event_free(j->deadline);
    msg_author_free(&j->author);
    xfree(j->authserv);
    buf_free(&j->received);
    buf_free(&j->stripped);
    buf_free(&j->sig);
    buf_free(&j->sig_err);
    buf_free(&j->ar.b);
    signing_unref(j->signing);
    xfree(j->sign_domain);
    for (size_t i = 0; i < j->nrcpt; i++) {
        xfree(j->rcpts[i]);
        xfree(j->orcpt[i]);
    }
    xfree(j->rcpts);
    xfree(j->orcpt);
    xfree(j->notify);
    xfree(j->envid);
    xfree(j->from);
    xfree(j->spf);
    xfree(j);
}

static void commit_work(void *arg)
{
    struct commit_job *j = arg;
    const char *const *rcpts = (const char *const *)j->rcpts;
    struct queue_env env = { .session = j->c->id, .from = j->from, .spf = j->spf,
                             .folder = j->folder, .rcpts = rcpts, .nrcpt = j->nrcpt,
                             .arrival = j->arrival, .ret = j->ret, .envid = j->envid,
                             .notify = j->notify, .orcpt = (const char *const *)j->orcpt };
    /* Signed here, off the loop: the signature covers the message as the
     * user sent it (our trace fields go above it). A signing error queues
     * the message unsigned and is logged, as a missing key would be. */
    if (j->sign_domain)
        j->nsig = signing_sign(j->signing, j->sign_domain, buf_ptr(j->body), buf_size(j->body),
                               j->arrival, &j->sig, &j->sig_err);
    struct iovec iov[3] = {
        { .iov_base = j->received.data, .iov_len = buf_size(&j->received) },
        { .iov_base = j->sig.data, .iov_len = j->nsig > 0 ? buf_size(&j->sig) : 0 },
        { .iov_base = (void *)buf_ptr(j->body), .iov_len = buf_size(j->body) },
    };
    j->result = queue_commit(j->srv->queue, j->id, &env, iov, 3, &j->slot);
}

static void commit_done(void *arg)
{
    struct commit_job *j = arg;
    struct conn *c = j->c;
    struct log_line l;

    if (j->sign_domain) {
        log_begin(&l, j->nsig > 0 ? MW_LOG_INFO : MW_LOG_ERROR, "dkim_sign");
        log_str(&l, "session", c->id);
        log_str(&l, "queue", j->id);
        log_str(&l, "domain", j->sign_domain);
        if (j->nsig > 0)
            log_u64(&l, "signatures", (uint64_t)j->nsig);
        else
            log_str(&l, "error", buf_size(&j->sig_err) ? buf_ptr(&j->sig_err) : "no signature");
        log_end(&l);
    }
    if (j->result == 0) {
        log_begin(&l, MW_LOG_INFO, "queued");
        log_str(&l, "session", c->id);
        log_str(&l, "queue", j->id);
        log_str(&l, "from", j->from);
        log_u64(&l, "nrcpt", j->nrcpt);
        log_u64(&l, "size", buf_size(j->body));
        log_end(&l);
        c->messages++;
        if (!c->dead) {
            char text[64];
            snprintf(text, sizeof(text), "Ok: queued as %s", j->id);
            smtp_session_answer(c->sess, 250, "2.0.0", text);
        }
    } else {
        log_begin(&l, MW_LOG_ERROR, "queue_error");
        log_str(&l, "session", c->id);
        log_str(&l, "queue", j->id);
        log_str(&l, "error", strerror(-j->result));
        log_end(&l);
        if (!c->dead)
            smtp_session_answer(c->sess, 451, "4.3.0", "Error: queue file write error, try again later");
    }
    conn_pump(c);   /* the reply first, then wake a delivery thread */
    if (j->result == 0)
        j->srv->queued(j->srv->hook_arg, j->id, j->slot);
    commit_job_free(j);
    conn_job_done(c);
}


/* Our Authentication-Results field (RFC 8601), first part: the AUTH user,
 * SPF as decided at MAIL, and every DKIM signature; DMARC comes later. */
static void authres_start(struct commit_job *j, struct conn *c, const struct dkim_sig_result *res,
                          size_t n)
{
    struct authres *ar = &j->ar;
    authres_begin(ar, c->conf->hostname);
    const char *user = smtp_session_auth_user(c->sess);
    if (user) {
        /* RFC 8601 2.7.4: the client authenticated as this user. */
        authres_method(ar, "auth", "pass", NULL);
        authres_prop(ar, "smtp", "auth", user);
    }
    if (c->spf_header) {
        authres_method(ar, "spf", spf_result_name((enum spf_result)c->spf_result), NULL);
        if (j->from[0] != '\0')
            authres_prop(ar, "smtp", "mailfrom", j->from);
        authres_prop(ar, "smtp", "helo", smtp_session_helo(c->sess));
    }
    dkim_authres(ar, res, n);
    dkim_authres_skipped(ar, j->dkim_skipped);
}

/* Trace fields done: commit on a worker; the 250 follows from there. */
static void commit_submit(struct commit_job *j, struct conn *c)
{
    authres_end(&j->ar, &j->received);
    build_received(j, c, smtp_session_txn(c->sess));
    worker_submit(c->srv->commit_pool, commit_work, commit_done, j);
}

static void refuse(struct commit_job *j, struct conn *c, int code, const char *enh,
                   const char *text)
{
    if (!c->dead) {
        smtp_session_answer(c->sess, code, enh, text);
        if (!c->in_ask)
            conn_pump(c);
    }
    commit_job_free(j);
    conn_job_done(c);
}

static void dmarc_done(void *arg, const struct dmarc_outcome *o, const struct dmarc_verdict *v)
{
    struct commit_job *j = arg;
    struct conn *c = j->c;
    if (c->dead) {
        refuse(j, c, 0, NULL, NULL);
        return;
    }
    if (v->code) {
        refuse(j, c, v->code, v->enh, v->text);
        return;
    }
    dmarc_authres(&j->ar, o);
    j->folder = v->folder;
    commit_submit(j, c);
}

static void log_dkim(struct conn *c, const struct dkim_sig_result *res, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        struct log_line l;
        log_begin(&l, MW_LOG_INFO, "dkim");
        log_str(&l, "session", c->id);
        log_str(&l, "domain", res[k].d);
        log_str(&l, "selector", res[k].s);
        log_str(&l, "result", dkim_result_name(res[k].result));
        log_str(&l, "reason", res[k].reason);
        log_end(&l);
    }
}

/* The domain to sign for: authenticated mail whose header From mailbox
 * is in a local domain that has signing keys; else NULL. */
static char *signing_domain(struct conn *c, const struct msg_author *a)
{
    struct signing *keys = c->srv->signing;
    if (keys == NULL || smtp_session_auth_user(c->sess) == NULL || a->count == 0)
        return NULL;
    const char *d = a->mb[0].domain;
    if (conf_is_local_domain(c->conf, d) && signing_has_domain(keys, d))
        return xstrdup(d);
    return NULL;
}

/* Every key answered, or the deadline passed (dkim_verify_expire). */
static void keys_done(void *arg, const struct dkim_sig_result *res, size_t n)
{
    struct commit_job *j = arg;
    struct conn *c = j->c;
    j->keys = NULL;
    if (j->deadline) {
        event_free(j->deadline);
        j->deadline = NULL;
    }
    if (c->dead) {
        /* The client left before its 250: it will send again; queue nothing. */
        commit_job_free(j);
        conn_job_done(c);
        return;
    }
    log_dkim(c, res, n);
    if (j->forged > 0) {
        j->body = &j->stripped;
        struct log_line l;
        log_begin(&l, MW_LOG_WARN, "authres_removed");
        log_str(&l, "session", c->id);
        log_u64(&l, "fields", j->forged);
        log_end(&l);
    }
    authres_start(j, c, res, n);
    if (smtp_session_auth_user(c->sess)) {
        commit_submit(j, c);   /* submissions are not subject to inbound DMARC */
        return;
    }
    inbound_dmarc(c, buf_ptr(j->body), buf_size(j->body), &j->author, res, n, dmarc_done, j);
}

static void keys_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct commit_job *j = arg;
    log_kv(MW_LOG_WARN, "dkim_timeout", "session", j->c->id, "queue", j->id, NULL);
    dkim_verify_expire(j->keys);   /* calls keys_done now */
}

/* On a verify worker: what reads the whole message. The message is the
 * session's body, untouched until the reply. */
static void inspect_work(void *arg)
{
    struct commit_job *j = arg;
    const char *m = buf_ptr(j->body);
    size_t n = buf_size(j->body);
    msg_author(m, n, &j->author);
    struct dkim_verify_opts o = {
        .now = (uint64_t)j->arrival,
        .from_domain = j->author.status == MSG_AUTHOR_OK ? j->author.mb[0].domain : "",
    };
    j->dkim = dkim_verify_new(m, n, &o);
    j->dkim_skipped = dkim_verify_skipped(j->dkim);
    /* Only we speak for our authserv-id: drop any such field the message
     * arrived with before adding ours (RFC 8601 5). DKIM was checked on the
     * message as it came. */
    j->forged = authres_strip_ours(m, n, j->authserv, &j->stripped);
}

static void inspect_done(void *arg)
{
    struct commit_job *j = arg;
    struct conn *c = j->c;
    if (c->dead) {
        commit_job_free(j);
        conn_job_done(c);
        return;
    }
    /* Inbound, an author that cannot be told is DMARC's permerror (and
     * refused under dmarc_reject_bad_from); submitted, the sender binding
     * refuses it here. */
    struct buf why;
    buf_init(&why);
    if (access_header_from(c, &j->author, &why) < 0) {
        refuse(j, c, 553, "5.7.1", buf_ptr(&why));
        buf_free(&why);
        return;
    }
    buf_free(&why);
    j->sign_domain = j->author.status == MSG_AUTHOR_OK ? signing_domain(c, &j->author) : NULL;
    if (j->sign_domain)
        j->signing = signing_ref(c->srv->signing);
    j->keys = j->dkim;
    j->dkim = NULL;
    j->deadline = evtimer_new(c->srv->base, keys_deadline, j);
    struct timeval tv = { .tv_sec = c->conf->dkim_timeout, .tv_usec = 0 };
    evtimer_add(j->deadline, &tv);
    dkim_verify_keys(j->keys, c->srv->dns, keys_done, j);   /* may finish at once */
}

/* What names one mailbox: a local mailbox is its lower-cased local part in
 * its domain, as the Maildir path is (RCPT <dup@x> and <DUP@x> are one
 * copy); a remote address is the address as written. */
static char *mailbox_key(const struct mw_config *conf, const struct mail_addr *r)
{
    const char *domain = r->domain;
    if (domain[0] == '\0')
        domain = conf->nlocal ? conf->local_domains[0] : conf->hostname;
    else if (!conf_is_local_domain(conf, domain))
        return xstrdup(r->text);
    char *ace = idna_to_ascii(domain);
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s@%s", r->local, ace != NULL ? ace : domain);
    xfree(ace);
    for (size_t i = 0; i < buf_size(&b); i++)
        b.data[i] = ascii_lower(b.data[i]);
    return b.data;
}

struct rcpt_key {
    char *key;
    size_t i;
};

static int by_key_then_order(const void *a, const void *b)
{
    const struct rcpt_key *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c != 0 ? c : (x->i > y->i) - (x->i < y->i);
}

/* dup[i]: recipient i names a mailbox an earlier recipient named already.
 * Sorted, so that a transaction at max_recipients costs n log n. */
static bool *first_of_each_mailbox(const struct mw_config *conf, const struct mail_addr *r,
                                   size_t n)
{
    struct rcpt_key *k = xcalloc(n ? n : 1, sizeof(*k));
    bool *dup = xcalloc(n ? n : 1, sizeof(*dup));
    for (size_t i = 0; i < n; i++)
        k[i] = (struct rcpt_key){ mailbox_key(conf, &r[i]), i };
    qsort(k, n, sizeof(*k), by_key_then_order);
    for (size_t i = 1; i < n; i++)
        dup[k[i].i] = strcmp(k[i].key, k[i - 1].key) == 0;
    for (size_t i = 0; i < n; i++)
        xfree(k[i].key);
    xfree(k);
    return dup;
}

void receive_message(struct conn *c)
{
    const struct smtp_txn *t = smtp_session_txn(c->sess);
    struct commit_job *j = xcalloc(1, sizeof(*j));
    j->c = c;
    j->srv = c->srv;
    j->arrival = time(NULL);
    j->body = &t->body;
    j->from = xstrdup(t->from.text);
    j->rcpts = xcalloc(t->nrcpt, sizeof(char *));
    j->notify = xcalloc(t->nrcpt ? t->nrcpt : 1, sizeof(unsigned));
    j->orcpt = xcalloc(t->nrcpt ? t->nrcpt : 1, sizeof(char *));
    j->ret = t->ret;
    j->envid = t->envid ? xstrdup(t->envid) : NULL;
    bool *dup = first_of_each_mailbox(c->conf, t->rcpts, t->nrcpt);
    for (size_t i = 0; i < t->nrcpt; i++) {
        const struct mail_addr *r = &t->rcpts[i];
        if (dup[i])
            continue;
        size_t at = j->nrcpt++;
        j->notify[at] = t->rcpt_dsn[i].notify;
        j->orcpt[at] = t->rcpt_dsn[i].orcpt ? xstrdup(t->rcpt_dsn[i].orcpt) : NULL;
        if (r->domain[0] == '\0') {
            /* Bare <Postmaster> is the postmaster of our first domain. */
            struct buf pm;
            buf_init(&pm);
            buf_printf(&pm, "%s@%s", r->text,
                       c->conf->nlocal ? c->conf->local_domains[0] : c->conf->hostname);
            j->rcpts[at] = pm.data;
        } else {
            j->rcpts[at] = xstrdup(r->text);
        }
    }
    xfree(dup);
    if (c->spf_header) {
        struct buf spf;
        buf_init(&spf);
        buf_printf(&spf, "%s %s", spf_result_name((enum spf_result)c->spf_result),
                   c->spf_domain && c->spf_domain[0] ? c->spf_domain : "-");
        j->spf = spf.data;
    }
    j->authserv = xstrdup(c->conf->hostname);
    id_new(j->id);
    c->jobs++;
    /* DKIM needs the message as the client sent it: verify before our
     * trace fields exist. The work is linear in the message: a small one
     * costs the loop microseconds, less than the hop to a worker and back,
     * so only a large one goes to the pool. */
    if (buf_size(j->body) <= INSPECT_ON_LOOP_MAX) {
        inspect_work(j);
        inspect_done(j);
        return;
    }
    worker_submit(c->srv->verify_pool, inspect_work, inspect_done, j);
}
