/*
 * report - DMARC aggregate reporting (RFC 7489 7.1, 7.2 and appendix C).
 *
 * The daemon appends one row per DMARC-evaluated message (a policy record
 * was found) to <data_dir>/dmarc/rows; every dmarc_report_interval seconds
 * it reads the rows, groups them into reports and mails the gzipped XML
 * to each rua address that passes the external destination check.
 * Everything here is pure: no I/O but the stream a caller hands to
 * dmarc_rows_read() and the questions the ext evaluator asks.
 *
 * Row format: one line, 18 tab-separated fields, the first being the
 * version tag "DMARC1"; every value is percent-encoded where it holds a
 * byte outside 0x21..0x7e or one of '%', ',', ':', '!' (list syntax), so
 * a row is always one line however hostile the message was:
 *
 *   DMARC1 when ip header_from envelope_from policy_domain p sp pct adkim
 *   aspf disposition dkim_eval spf_eval spf_domain spf_result
 *   dkim(d:s:result,...) rua(uri[!size],...)
 *
 * p/sp/disposition are none|quarantine|reject, adkim/aspf r|s, *_eval
 * pass|fail (the DMARC-aligned verdicts), spf_result and the DKIM results
 * the RFC 8601 names; "-" stands for an empty value (a value that is just
 * "-" is written %2D).
 *
 *   dmarc_row_format(row, out)      append one line (with '\n') to out
 *   dmarc_row_parse(line, n, p, why)  strict: every field checked; 0, or
 *                                   -1 with *why a static text
 *   dmarc_agg_*                     rows -> reports; bad lines of a stream
 *                                   are reported as "name:line: why"
 *   dmarc_report_xml / dmarc_gzip   the document of appendix C, gzipped
 *   dmarc_report_mail_build         the report mail (7.2.1.1)
 *   dmarc_ext_*                     the external destination check (7.1)
 *
 * Reports: one per (policy domain, published policy, rua list): rows of a
 * domain whose record changed during the period, or rows kept back for
 * one destination after a temporary error, make reports of their own, so
 * no destination ever gets a record twice. Records inside a report are
 * grouped by (source IP, header From, envelope From, disposition, aligned
 * DKIM and SPF verdicts, the set of DKIM results, the SPF result) and
 * counted. Reports and records keep the order of first appearance.
 *
 * XML: the schema shipped as rua-schema.xsd (appendix C as amended for
 * DMARCbis) has no pct in policy_published, so pct is not written; the
 * root element is <feedback> without a namespace, as receivers read it.
 * Text is escaped (& < > " '), bytes that XML cannot carry (controls,
 * malformed UTF-8) become '?'; IPv6 sources are written as eight groups,
 * IPv4-mapped ones as IPv4, as the schema's pattern wants.
 *
 * Trust: rows are untrusted input (they hold what remote senders wrote);
 * so are DNS answers. The reporter identity comes from the configuration.
 */
#ifndef MW_DMARC_REPORT_H
#define MW_DMARC_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "core/buf.h"
#include "dmarc/dmarc.h"

#define DMARC_ROW_MAX_DKIM 16
#define DMARC_ROW_MAX_LINE 16384  /* longer lines are refused */

/* ---- rows ----------------------------------------------------------------- */

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

/* The row parses again when source_ip, header_from and policy_domain are
 * set and the results are RFC 8601 names (a missing spf_result is written
 * "none"). The writer accepts the reader's language only: of the DKIM
 * results it writes those it can (passes first; none whose domain or
 * selector is over 255 bytes; at most DMARC_ROW_MAX_DKIM; within
 * DMARC_ROW_MAX_LINE), of the rua URIs those with a scheme and at most
 * 2048 bytes (at most DMARC_MAX_URIS): a report may carry a subset of the
 * DKIM results (RFC 7489 appendix C), and every row is counted. */
void dmarc_row_format(const struct dmarc_row *r, struct buf *out);

/* A parsed row: the strings of row live in mem, its URIs in rua. */
struct dmarc_row_parsed {
    struct dmarc_row row;
    struct dmarc_uri rua[DMARC_MAX_URIS];
    char *mem;
};

/* One line of n bytes (without its '\n'). 0 fills *out (free it with
 * dmarc_row_parsed_free); -1 leaves *out empty and says why. */
int dmarc_row_parse(const char *line, size_t n, struct dmarc_row_parsed *out, const char **why);
void dmarc_row_parsed_free(struct dmarc_row_parsed *p);

/* Every line of f: each good row is handed to cb (valid during the call),
 * bad lines are reported into errors (may be NULL) as "name:line: why\n"
 * and skipped, at most max_errors of them written; a line longer than
 * DMARC_ROW_MAX_LINE is skipped without being held, a last line without
 * '\n' (a write cut short) is reported. With keep (may be NULL) every bad
 * line is also copied there as it was, with its '\n', so that nothing is
 * lost with the file it came from. *nrows and *nbad (may be NULL) count.
 * 0, or -1 on a read error (errno set; what was read counts) or a write
 * error on keep. */
typedef void (*dmarc_row_cb)(void *arg, const struct dmarc_row *r);
int dmarc_rows_read(FILE *f, const char *name, dmarc_row_cb cb, void *arg, struct buf *errors,
                    size_t max_errors, FILE *keep, size_t *nrows, size_t *nbad);

/* ---- aggregation ------------------------------------------------------------ */

struct dmarc_agg_dkim {
    char *domain, *selector, *result;
};

struct dmarc_agg_record {
    char *source_ip;                /* in the form the schema wants */
    char *header_from, *envelope_from;
    enum dmarc_policy disposition;
    bool dkim_pass, spf_pass;
    struct dmarc_agg_dkim *dkim;    /* sorted */
    size_t ndkim;
    char *spf_domain, *spf_result;
    bool spf_helo;                  /* scope helo (null sender), else mfrom */
    uint64_t count;
};

struct dmarc_report {
    char *domain;                   /* the policy domain */
    enum dmarc_policy p, sp;
    unsigned pct;
    enum dmarc_align adkim, aspf;
    struct dmarc_uri *rua;          /* as in the rows */
    size_t nrua;
    time_t begin, end;              /* of the rows */
    uint64_t messages;
    struct dmarc_agg_record *rec;
    size_t nrec;
};

struct dmarc_agg;
struct dmarc_agg *dmarc_agg_new(void);
void dmarc_agg_free(struct dmarc_agg *a);
/* Count one row (copies what it keeps). */
void dmarc_agg_add(struct dmarc_agg *a, const struct dmarc_row *r);
/* dmarc_rows_read() into a. */
int dmarc_agg_read(struct dmarc_agg *a, FILE *f, const char *name, struct buf *errors,
                   size_t max_errors, FILE *keep, size_t *nrows, size_t *nbad);
size_t dmarc_agg_count(const struct dmarc_agg *a);
const struct dmarc_report *dmarc_agg_report(const struct dmarc_agg *a, size_t i);
/* Does row r belong to report rep (same domain, policy and rua list)? */
bool dmarc_report_has_row(const struct dmarc_report *rep, const struct dmarc_row *r);

/* ---- the document ------------------------------------------------------------ */

struct dmarc_report_meta {
    const char *org_name, *email, *report_id;
    const char *extra_contact_info;  /* NULL: none */
};

/* org_out: org, or hostname when org is ""; email_out: email, or
 * postmaster@hostname when email is "". */
void dmarc_report_identity(const char *org, const char *email, const char *hostname,
                           struct buf *org_out, struct buf *email_out);
void dmarc_report_xml(const struct dmarc_report *r, const struct dmarc_report_meta *m,
                      struct buf *out);
/* Append s escaped as XML character data (see above). */
void dmarc_xml_escape(struct buf *out, const char *s);
/* ip as the schema's IPAddress type has it, into out; -1 if not an IP. */
int dmarc_ip_for_xml(const char *ip, char out[64]);
/* gzip (RFC 1952) of n bytes at p, appended to out; 0 or -1. */
int dmarc_gzip(const void *p, size_t n, struct buf *out);

/* ---- the mail ------------------------------------------------------------------ */

/* The address of a mailto: URI (RFC 6068): one addr-spec, percent-decoded,
 * a ?query ignored; into addr as local@domain with *domain pointing into
 * it (valid while addr is). 0, or -1 if uri is not such a URI. */
int dmarc_mailto(const char *uri, struct buf *addr, const char **domain);

struct dmarc_report_mail {
    const char *from;        /* the reporter's address */
    const char *to;          /* the rua address */
    const char *org;         /* the reporter (Submitter, file name) */
    const char *domain;      /* the policy domain */
    const char *report_id;
    const char *message_id;  /* without <> */
    time_t begin, end, date;
    const void *gz;          /* the gzipped document */
    size_t gzlen;
};

/* "<org>!<domain>!<begin>!<end>.xml.gz", bytes outside [A-Za-z0-9.-]
 * replaced by '-'. */
void dmarc_report_filename(const char *org, const char *domain, time_t begin, time_t end,
                           struct buf *out);
/* The whole message, CRLF line ends: multipart/mixed with a text part and
 * the application/gzip attachment in base64 folded at 76 columns. */
void dmarc_report_mail_build(const struct dmarc_report_mail *m, struct buf *out);

/* ---- external destinations (7.1) ------------------------------------------------ */

enum dmarc_ext { DMARC_EXT_OK, DMARC_EXT_DENIED, DMARC_EXT_TEMPERROR };

/* Pull-style like dmarc_eval: when the organizational domains of the
 * policy and the rua domain differ, one TXT question for
 * "<policy domain>._report._dmarc.<rua domain>"; a record starting with
 * "v=DMARC1" authorizes, none (NXDOMAIN, NODATA, other text) denies, a
 * DNS failure is temperror (try again next period). */
struct dmarc_ext_eval;
struct dmarc_ext_eval *dmarc_ext_new(const char *policy_domain, const char *rua_domain);
void dmarc_ext_free(struct dmarc_ext_eval *e);
enum dmarc_step dmarc_ext_step(struct dmarc_ext_eval *e, const char **name, enum dns_type *type);
void dmarc_ext_answer(struct dmarc_ext_eval *e, const struct dns_answer *ans);
/* After DMARC_STEP_DONE; *why (may be NULL) a short static text. */
enum dmarc_ext dmarc_ext_result(const struct dmarc_ext_eval *e, const char **why);

typedef void (*dmarc_ext_cb)(void *arg, enum dmarc_ext result, const char *why);
/* The driver over dns/: done is called exactly once, maybe at once. */
void dmarc_ext_check(struct dns_resolver *r, const char *policy_domain, const char *rua_domain,
                     dmarc_ext_cb done, void *arg);
const char *dmarc_ext_name(enum dmarc_ext r);   /* "ok", "denied", "temperror" */

#endif
