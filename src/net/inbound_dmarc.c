/*
 * inbound_dmarc.c - DMARC for inbound mail; see inbound_dmarc.h.
 *
 * The aggregate-report row is appended to <data_dir>/dmarc/rows with one
 * O_APPEND write of one short line (page cache, no fsync): losing the last
 * rows in a crash costs report accuracy, never mail.
 */
#include "net/inbound_dmarc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/cidr.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "dmarc/report.h"
#include "spf/spf.h"

struct dmarc_job {
    struct conn *c;
    inbound_dmarc_cb done;
    void *arg;
    struct dmarc_dkim_input in[DKIM_MAX_SIGS];
    struct dmarc_row_dkim rows[DMARC_ROW_MAX_DKIM];
    char *strs[DKIM_MAX_SIGS * 3];   /* copies of d=, s=, results for the row */
    size_t n;
    char *spf_domain;
};

static bool trusted(const struct mw_config *conf, const struct conn *c, const char *from_domain)
{
    for (size_t i = 0; i < conf->ndmarc_trusted_domains; i++)
        if (strcmp(conf->dmarc_trusted_domains[i], from_domain) == 0)
            return true;
    return cidr_match_any(conf->dmarc_trusted_networks, conf->ndmarc_trusted_networks, c->ip);
}

/* done: what actually happened to the message, which is what a report
 * must say (an override or dmarc_enforce=false delivers despite p=). */
static void keep_row(struct dmarc_job *j, const struct dmarc_outcome *o, enum dmarc_policy done)
{
    struct conn *c = j->c;
    const struct dmarc_record *rec = o->record;
    if (rec == NULL || !c->conf->dmarc_reports)
        return;
    const char *from = smtp_session_txn(c->sess)->from.domain;
    struct dmarc_row row = {
        .when = time(NULL), .source_ip = c->ip, .header_from = o->from_domain,
        .envelope_from = from ? from : "", .policy_domain = o->record_domain,
        .p = rec->p, .sp = rec->sp, .pct = rec->pct, .adkim = rec->adkim, .aspf = rec->aspf,
        .disposition = done, .dkim_pass = o->dkim_aligned, .spf_pass = o->spf_aligned,
        .spf_domain = j->spf_domain,
        .spf_result = c->spf_header ? spf_result_name((enum spf_result)c->spf_result) : "none",
        .ndkim = j->n, .rua = rec->rua, .nrua = rec->nrua,
    };
    memcpy(row.dkim, j->rows, sizeof(row.dkim));
    struct buf line, path;
    buf_init(&line);
    buf_init(&path);
    dmarc_row_format(&row, &line);
    buf_printf(&path, "%s/dmarc", c->srv->data_dir);
    int fd = -1;
    if (fs_mkdirs(buf_ptr(&path), 0700) == 0) {
        buf_append_str(&path, "/rows");
        fd = open(buf_ptr(&path), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    }
    if (fd < 0 || write(fd, buf_ptr(&line), buf_size(&line)) != (ssize_t)buf_size(&line))
        log_kv(MW_LOG_ERROR, "dmarc_row_error", "session", c->id, "file", buf_ptr(&path),
               "error", strerror(errno), NULL);
    if (fd >= 0)
        close(fd);
    buf_free(&line);
    buf_free(&path);
}

static void decide(struct conn *c, const struct dmarc_outcome *o, struct dmarc_verdict *v,
                   const char **action)
{
    const struct mw_config *conf = c->conf;
    memset(v, 0, sizeof(*v));
    *action = "none";
    bool bad_from = o->result == DMARC_PERMERROR && o->from != DMARC_FROM_OK;
    /* A temporary error where the policy would act: the sender retries
     * (RFC 7489 6.6.2), and neither a refusal nor a pass is made up. */
    bool temp = o->result == DMARC_TEMPERROR && o->policy != DMARC_P_NONE && conf->dmarc_enforce;
    bool acts = bad_from || temp || o->disposition != DMARC_P_NONE;
    if (!acts)
        return;
    if (trusted(conf, c, o->from_domain)) {
        *action = "override";
    } else if (temp) {
        *action = "defer";
        v->code = 451, v->enh = "4.7.5";
        snprintf(v->text, sizeof(v->text),
                 "Error: DMARC for %.120s cannot be checked now (%.100s), try again later",
                 o->from_domain, o->reason);
    } else if (bad_from && conf->dmarc_reject_bad_from) {
        *action = "reject";
        v->code = 550, v->enh = "5.6.0";
        snprintf(v->text, sizeof(v->text),
                 "Error: message refused: %s (RFC 5322 3.6 asks for exactly one From "
                 "with one mailbox)", o->reason);
    } else if (bad_from || !conf->dmarc_enforce) {
        *action = "none";
    } else if (o->disposition == DMARC_P_REJECT) {
        *action = "reject";
        v->code = 550, v->enh = "5.7.1";
        snprintf(v->text, sizeof(v->text),
                 "Error: message rejected by the DMARC policy of %.200s (p=reject)", o->from_domain);
    } else {
        *action = "quarantine";
        v->folder = "Junk";
    }
}

static void evaluated(void *arg, const struct dmarc_outcome *o)
{
    struct dmarc_job *j = arg;
    struct conn *c = j->c;
    struct dmarc_verdict v;
    const char *action = "none";
    if (!c->dead) {
        decide(c, o, &v, &action);
        struct log_line l;
        log_begin(&l, MW_LOG_INFO, "dmarc");
        log_str(&l, "session", c->id);
        log_str(&l, "client", c->ip);
        log_str(&l, "from_domain", o->from_domain);
        log_str(&l, "result", dmarc_result_name(o->result));
        log_str(&l, "policy", dmarc_policy_name(o->policy));
        log_str(&l, "disposition", dmarc_policy_name(o->disposition));
        log_str(&l, "action", action);
        log_str(&l, "reason", o->reason);
        log_end(&l);
        enum dmarc_policy done = DMARC_P_NONE;
        if (strcmp(action, "reject") == 0 && o->from == DMARC_FROM_OK)
            done = DMARC_P_REJECT;
        else if (strcmp(action, "quarantine") == 0)
            done = DMARC_P_QUARANTINE;
        keep_row(j, o, done);
    } else {
        memset(&v, 0, sizeof(v));
    }
    j->done(j->arg, o, &v);
    for (size_t i = 0; i < j->n * 3; i++)
        xfree(j->strs[i]);
    xfree(j->spf_domain);
    xfree(j);
}

void inbound_dmarc(struct conn *c, const char *msg, size_t n, const struct msg_author *author,
                   const struct dkim_sig_result *dkim, size_t ndkim, inbound_dmarc_cb done,
                   void *arg)
{
    struct dmarc_job *j = xcalloc(1, sizeof(*j));
    j->c = c;
    j->done = done;
    j->arg = arg;
    for (size_t i = 0; i < ndkim && j->n < DKIM_MAX_SIGS; i++, j->n++) {
        char **s = &j->strs[j->n * 3];
        s[0] = xstrdup(dkim[i].d);
        s[1] = xstrdup(dkim[i].s);
        s[2] = xstrdup(dkim_result_name(dkim[i].result));
        j->in[j->n] = (struct dmarc_dkim_input){ .domain = s[0], .pass = dkim[i].result == DKIM_PASS,
                                                 .temperror = dkim[i].result == DKIM_TEMPERROR };
        j->rows[j->n] = (struct dmarc_row_dkim){ .domain = s[0], .selector = s[1], .result = s[2] };
    }
    /* The SPF identity DMARC aligns: MAIL FROM, or HELO for the null sender. */
    if (c->spf_header)
        j->spf_domain = xstrdup(c->spf_domain ? c->spf_domain : "");
    struct dmarc_request req = {
        .msg = msg, .len = n,
        .spf_domain = j->spf_domain && j->spf_domain[0] ? j->spf_domain : NULL,
        .spf_pass = c->spf_header && c->spf_result == SPF_PASS,
        .dkim = j->in, .ndkim = j->n,
        .pct_draw = dmarc_pct_draw(&c->srv->dmarc_rng),
        .author = author,
    };
    dmarc_check(c->srv->dns, &req, evaluated, j);
}
