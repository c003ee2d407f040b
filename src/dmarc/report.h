/*
 * report - DMARC aggregate reporting (RFC 7489 7.2 and appendix C).
 *
 * The daemon appends one row per DMARC-evaluated message (a policy record
 * was found) to <data_dir>/dmarc/rows; `mailwarden dmarc report` reads the
 * rows, groups them per policy domain and reporting period into records of
 * (source IP, header From domain, disposition, DKIM and SPF results) and
 * mails the gzipped XML to each rua address that passes the external
 * destination check (RFC 7489 7.1).
 *
 * Row format: one line, tab-separated fields, the first being the version
 * tag "DMARC1"; every value is percent-encoded where it holds a byte
 * outside 0x21..0x7e or one of '%', ',', ':', '!' (list syntax), so a
 * row is always one line however hostile the message was:
 *
 *   DMARC1 when ip header_from envelope_from policy_domain p sp pct adkim
 *   aspf disposition dkim_eval spf_eval spf_domain spf_result
 *   dkim(d:s:result,...) rua(uri,...)
 *
 * p/sp/disposition are none|quarantine|reject, adkim/aspf r|s, *_eval
 * pass|fail (the DMARC-aligned verdicts), "-" stands for an empty value.
 *
 *   dmarc_row_format(row, out)        append one line (with '\n') to out
 */
#ifndef MW_DMARC_REPORT_H
#define MW_DMARC_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "core/buf.h"
#include "dmarc/dmarc.h"

#define DMARC_ROW_MAX_DKIM 16

struct dmarc_row_dkim {
    const char *domain, *selector, *result;
};

struct dmarc_row {
    time_t when;
    const char *source_ip;
    const char *header_from;
    const char *envelope_from;       /* MAIL FROM domain, "" for <> */
    const char *policy_domain;       /* where the record was found */
    enum dmarc_policy p, sp;         /* as published */
    unsigned pct;
    enum dmarc_align adkim, aspf;
    enum dmarc_policy disposition;   /* what was done */
    bool dkim_pass, spf_pass;        /* aligned verdicts */
    const char *spf_domain, *spf_result;
    struct dmarc_row_dkim dkim[DMARC_ROW_MAX_DKIM];
    size_t ndkim;
    const struct dmarc_uri *rua;
    size_t nrua;
};

void dmarc_row_format(const struct dmarc_row *r, struct buf *out);

#endif
