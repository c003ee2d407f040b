/*
 * sender.c - the decision on MAIL FROM: SPF (RFC 7208) for the HELO and the
 * MAIL FROM identities, evaluated over the daemon's resolver while the
 * client waits for the MAIL reply; other sessions carry on meanwhile.
 *
 * The results are kept on the connection for the message: the MAIL FROM
 * result (or the HELO result for the null sender, RFC 7208 2.4) becomes a
 * Received-SPF header and is recorded in the queue file's envelope. By
 * default nothing is refused here (DMARC decides later); spf_reject_fail
 * refuses a fail with 550 5.7.23 and spf_temperror_defer a temperror with
 * 451 4.4.3. Lookups that take longer than spf_timeout seconds (RFC 7208
 * 4.6.4: at least 20) give temperror.
 */
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "net/conn.h"
#include "spf/spf.h"

struct spf_job {
    struct conn *c;
    struct spf_request req;
    char *ip, *sender, *helo;
    struct event *deadline;
    bool answered;     /* the client has its reply (deadline or result) */
};

static void log_spf(struct conn *c, const char *identity, const struct spf_outcome *o)
{
    struct log_line l;
    log_begin(&l, MW_LOG_INFO, "spf");
    log_str(&l, "session", c->id);
    log_str(&l, "identity", identity);
    log_str(&l, "domain", o->domain);
    log_str(&l, "result", spf_result_name(o->result));
    log_str(&l, "reason", o->reason);
    log_end(&l);
}

static void job_free(struct spf_job *j)
{
    struct conn *c = j->c;
    if (j->deadline)
        event_free(j->deadline);
    xfree(j->ip);
    xfree(j->sender);
    xfree(j->helo);
    xfree(j);
    conn_job_done(c);
}

/* Record the outcome on the conn and answer MAIL. */
static void decide(struct spf_job *j, const struct spf_outcome *o)
{
    struct conn *c = j->c;
    const struct mw_config *conf = c->conf;
    j->answered = true;
    if (c->dead)
        return;
    c->spf_result = o->result;
    xfree(c->spf_domain);
    c->spf_domain = xstrdup(o->domain ? o->domain : "");
    struct buf h;
    buf_init(&h);
    spf_received_header(o, &j->req, &h);
    xfree(c->spf_header);
    c->spf_header = h.data;

    if (o->result == SPF_FAIL && conf->spf_reject_fail) {
        log_kv(MW_LOG_INFO, "mail_rejected", "session", c->id, "reason", "spf fail", NULL);
        /* The explanation comes from the sender's DNS: printable ASCII,
         * but up to 8 KiB; a reply line gets at most 200 bytes of it. */
        char text[256];
        snprintf(text, sizeof(text), "SPF validation failed: %.200s",
                 o->explanation ? o->explanation : o->domain ? o->domain : "");
        for (char *p = text; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
                *p = '?';
        smtp_session_answer(c->sess, 550, "5.7.23", text);
    } else if (o->result == SPF_TEMPERROR && conf->spf_temperror_defer) {
        log_kv(MW_LOG_INFO, "mail_deferred", "session", c->id, "reason", "spf temperror", NULL);
        smtp_session_answer(c->sess, 451, "4.4.3", "SPF temporary error, try again later");
    } else {
        smtp_session_answer(c->sess, 250, "2.1.0", "Ok");
    }
    if (!c->in_ask)
        conn_pump(c);  /* answered later, from the resolver: send it */
}

static void mfrom_done(void *arg, const struct spf_outcome *o)
{
    struct spf_job *j = arg;
    if (!j->answered) {
        log_spf(j->c, j->req.helo_identity ? "helo" : "mailfrom", o);
        decide(j, o);
    }
    job_free(j);
}

static void helo_done(void *arg, const struct spf_outcome *o)
{
    struct spf_job *j = arg;
    struct conn *c = j->c;
    if (j->answered || c->dead) {
        job_free(j);
        return;
    }
    log_spf(c, "helo", o);
    c->spf_helo_result = o->result;
    if (j->sender[0] == '\0') {
        /* Null sender: the HELO identity is the one that counts (2.4). */
        decide(j, o);
        job_free(j);
        return;
    }
    j->req.helo_identity = false;
    spf_check(c->srv->dns, &j->req, mfrom_done, j);
}

/* The lookups are taking too long: answer with temperror now; the job
 * lives on until the resolver is done with it. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct spf_job *j = arg;
    if (j->answered)
        return;
    const char *at = strrchr(j->req.sender, '@');
    struct spf_outcome o = {
        .result = SPF_TEMPERROR,
        .domain = at ? at + 1 : j->req.helo,
        .reason = "DNS lookups did not finish in time",
    };
    log_spf(j->c, j->req.helo_identity ? "helo" : "mailfrom", &o);
    decide(j, &o);
}

void sender_check(struct conn *c)
{
    const struct smtp_txn *t = smtp_session_txn(c->sess);
    conn_spf_reset(c);
    struct spf_job *j = xcalloc(1, sizeof(*j));
    j->c = c;
    j->ip = xstrdup(c->ip);
    j->sender = xstrdup(t->from.text);
    j->helo = xstrdup(smtp_session_helo(c->sess));
    j->req.ip = j->ip;
    j->req.sender = j->sender;
    j->req.helo = j->helo;
    j->req.helo_identity = true;
    j->req.receiver = c->conf->hostname;
    c->jobs++;
    j->deadline = evtimer_new(c->srv->base, deadline_cb, j);
    struct timeval tv = { .tv_sec = c->conf->spf_timeout, .tv_usec = 0 };
    evtimer_add(j->deadline, &tv);
    spf_check(c->srv->dns, &j->req, helo_done, j);
}
