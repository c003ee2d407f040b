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

#include "core/idna.h"
#include "core/log.h"
#include "dns/dns.h"
#include "core/xmalloc.h"
#include "net/conn.h"
#include "spf/spf.h"

struct spf_job {
    struct conn *c;
    struct spf_request req;
    char *ip, *sender, *helo;
    struct event *deadline;
    unsigned refs;     /* the SPF chain and the MX lookup */
    bool answered;     /* the client has its reply */
    bool spf_done, mx_done, null_mx;
    /* the reply SPF asks for, sent once the MX answer is in too */
    unsigned code;
    const char *enh;
    char text[256];
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
    if (--j->refs > 0)
        return;
    struct conn *c = j->c;
    if (j->deadline)
        event_free(j->deadline);
    xfree(j->ip);
    xfree(j->sender);
    xfree(j->helo);
    xfree(j);
    conn_job_done(c);
}

/* Both answers are in (or the deadline passed): answer MAIL. */
static void maybe_answer(struct spf_job *j)
{
    struct conn *c = j->c;
    if (j->answered || !j->spf_done || !j->mx_done)
        return;
    j->answered = true;
    if (c->dead)
        return;
    if (j->null_mx && c->conf->reject_null_mx_sender) {
        /* RFC 7505 4.2: the domain says it sends no mail to be answered */
        log_kv(MW_LOG_INFO, "mail_rejected", "session", c->id, "reason", "null MX sender",
               "from", j->sender, NULL);
        smtp_session_answer(c->sess, 550, "5.7.27",
                            "Error: the sender's domain accepts no mail (null MX)");
    } else {
        smtp_session_answer(c->sess, j->code, j->enh, j->text);
    }
    if (!c->in_ask)
        conn_pump(c);  /* answered later, from the resolver: send it */
}

/* Record the SPF outcome on the conn and the reply it asks for. */
static void decide(struct spf_job *j, const struct spf_outcome *o)
{
    struct conn *c = j->c;
    const struct mw_config *conf = c->conf;
    j->spf_done = true;
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
        snprintf(j->text, sizeof(j->text), "SPF validation failed: %.200s",
                 o->explanation ? o->explanation : o->domain ? o->domain : "");
        for (char *p = j->text; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
                *p = '?';
        j->code = 550, j->enh = "5.7.23";
    } else if (o->result == SPF_TEMPERROR && conf->spf_temperror_defer) {
        log_kv(MW_LOG_INFO, "mail_deferred", "session", c->id, "reason", "spf temperror", NULL);
        j->code = 451, j->enh = "4.4.3";
        snprintf(j->text, sizeof(j->text), "SPF temporary error, try again later");
    } else {
        j->code = 250, j->enh = "2.1.0";
        snprintf(j->text, sizeof(j->text), "Ok");
    }
    maybe_answer(j);
}

static void mx_done(void *arg, const struct dns_answer *a)
{
    struct spf_job *j = arg;
    if (!j->mx_done) {
        j->mx_done = true;
        j->null_mx = dns_answer_null_mx(a);
        maybe_answer(j);
    }
    job_free(j);
}

static void mfrom_done(void *arg, const struct spf_outcome *o)
{
    struct spf_job *j = arg;
    if (!j->spf_done) {
        log_spf(j->c, j->req.helo_identity ? "helo" : "mailfrom", o);
        decide(j, o);
    }
    job_free(j);
}

static void helo_done(void *arg, const struct spf_outcome *o)
{
    struct spf_job *j = arg;
    struct conn *c = j->c;
    if (j->spf_done || c->dead) {
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
    j->mx_done = true;   /* no MX answer in time: not known to be null */
    if (j->spf_done) {
        maybe_answer(j);
        return;
    }
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
    /* The sender domain's MX, for RFC 7505, at the same time as SPF. */
    const char *dom = t->from.domain;
    char *ace = !t->from.null && dom[0] && dom[0] != '[' && c->conf->reject_null_mx_sender
                    ? idna_to_ascii(dom) : NULL;
    j->refs = ace ? 2 : 1;
    j->mx_done = ace == NULL;
    if (ace) {
        dns_resolve(c->srv->dns, ace, DNS_T_MX, mx_done, j);
        xfree(ace);
    }
    spf_check(c->srv->dns, &j->req, helo_done, j);
}
