/*
 * bounce.c - delivery status notifications; see bounce.h.
 */
#include "queue/bounce.h"

#include <stdio.h>
#include <string.h>

#include "msg/dsn.h"

bool bounce_wanted(const struct queue_msg *m)
{
    return m->from != NULL && m->from[0] != '\0';
}

static void date(struct buf *b, time_t t)
{
    struct tm tm;
    char s[64];
    gmtime_r(&t, &tm);
    strftime(s, sizeof(s), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    buf_append_str(b, s);
}

static bool ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* text (printable ASCII) folded at spaces so that lines stay within 78
 * octets where the words allow (never over 998): col is where it starts,
 * indent what begins a continuation line. */
static void fold(struct buf *b, const char *text, size_t col, const char *indent)
{
    size_t start = col;
    const char *p = text;
    while (*p) {
        const char *sp = strchr(p, ' ');
        size_t n = sp ? (size_t)(sp - p) : strlen(p);
        if (col + n > 78 && col > start) {
            buf_printf(b, "\r\n%s", indent);
            col = strlen(indent);
        }
        buf_append(b, p, n > 900 ? 900 : n);   /* a word longer than any line: cut */
        col += n;
        p += n;
        if (*p == ' ') {
            buf_append_byte(b, ' ');
            col++;
            p++;
        }
    }
}

static void field(struct buf *b, const char *name, const char *value)
{
    buf_printf(b, "%s: ", name);
    fold(b, value, strlen(name) + 2, " ");
    buf_append_str(b, "\r\n");
}

static const char *status_of(const struct queue_rcpt *r, enum bounce_kind kind)
{
    if (r->enhanced[0])
        return r->enhanced;
    if (kind == BOUNCE_DELAYED)
        return "4.0.0";
    return r->code >= 500 ? "5.0.0" : "4.0.0";
}

/* The original header section: up to the empty line, or all of a message
 * that has none. */
static size_t header_len(const char *p, size_t n)
{
    if (n >= 2 && p[0] == '\r' && p[1] == '\n')
        return 0;
    for (size_t i = 0; i + 3 < n; i++)
        if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n')
            return i + 2;
    return n;
}

/* What the report says of recipient i: NULL (nothing), "failed",
 * "delayed", "delivered" or "relayed" (RFC 3464 2.3.3), as its NOTIFY
 * (RFC 3461 4.1) allows: none given means failures and delays. */
static const char *action_of(const struct queue_msg *m, size_t i, enum bounce_kind kind)
{
    const struct queue_rcpt *r = &m->rs[i];
    unsigned nt = m->notify ? m->notify[i] : 0;
    if (r->reported)
        return NULL;
    if (kind == BOUNCE_DELAYED)
        return r->state == QUEUE_RCPT_DEFERRED && (nt == 0 || (nt & SMTP_NOTIFY_DELAY))
                   ? "delayed" : NULL;
    if (r->state == QUEUE_RCPT_FAILED)
        return nt == 0 || (nt & SMTP_NOTIFY_FAILURE) ? "failed" : NULL;
    if (r->state == QUEUE_RCPT_DELIVERED && r->success_owed && (nt & SMTP_NOTIFY_SUCCESS))
        return r->mta ? "relayed" : "delivered";
    return NULL;
}

size_t bounce_build(enum bounce_kind kind, const struct queue_msg *m,
                    const struct bounce_opts *o, struct buf *out)
{
    size_t count = 0, failed = 0;
    for (size_t i = 0; i < m->nrcpt; i++) {
        const char *a = action_of(m, i, kind);
        count += a != NULL;
        failed += a != NULL && a[0] == 'f';
    }
    if (count == 0)
        return 0;
    char boundary[64];
    snprintf(boundary, sizeof(boundary), "%s.%lld/%s", o->id, (long long)o->now, o->hostname);

    buf_printf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", o->hostname);
    buf_printf(out, "To: <%s>\r\n", m->from);
    buf_append_str(out, kind == BOUNCE_DELAYED ? "Subject: Delayed Mail (still being retried)\r\n"
                        : failed ? "Subject: Undelivered Mail Returned to Sender\r\n"
                                 : "Subject: Successful Mail Delivery Report\r\n");
    buf_append_str(out, "Date: ");
    date(out, o->now);
    buf_printf(out, "\r\nMessage-ID: <%s.dsn@%s>\r\n", o->id, o->hostname);
    buf_append_str(out, "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
    buf_printf(out, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
                    " boundary=\"%s\"\r\n\r\n", boundary);
    buf_append_str(out, "This is a MIME-encapsulated message.\r\n\r\n");

    /* the part for people */
    buf_printf(out, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary);
    buf_printf(out, "This is the mail system at host %s.\r\n\r\n", o->hostname);
    if (kind == BOUNCE_FAILED && failed)
        buf_append_str(out, "Your message could not be delivered to one or more recipients.\r\n"
                            "It is attached below.\r\n\r\n");
    else if (kind == BOUNCE_FAILED)
        buf_append_str(out, "Your message was delivered to the recipients below, as you asked\r\n"
                            "to be told.\r\n\r\n");
    else
        buf_append_str(out, "Your message could not be delivered yet to one or more recipients.\r\n"
                            "It is still being retried; you do not need to send it again.\r\n\r\n");
    for (size_t i = 0; i < m->nrcpt; i++) {
        const struct queue_rcpt *r = &m->rs[i];
        const char *action = action_of(m, i, kind);
        if (action == NULL)
            continue;
        struct buf line = { 0 };
        buf_printf(&line, "<%s>: ", ascii(m->rcpts[i]) ? m->rcpts[i] : "(a UTF-8 address)");
        if (r->mta)
            buf_printf(&line, "host %s said: ", r->mta);
        if (r->code)
            buf_printf(&line, "%u ", r->code);
        if (r->enhanced[0])
            buf_printf(&line, "%s ", r->enhanced);
        buf_append_str(&line, r->reply ? r->reply : "no reason recorded");
        fold(out, buf_ptr(&line), 0, "    ");
        buf_append_str(out, "\r\n\r\n");
        buf_free(&line);
    }

    /* the part for programs (RFC 3464 2.2, 2.3) */
    buf_printf(out, "--%s\r\nContent-Type: message/delivery-status\r\n\r\n", boundary);
    if (m->envid)
        buf_printf(out, "Original-Envelope-Id: %s\r\n", m->envid);
    buf_printf(out, "Reporting-MTA: dns; %s\r\n", o->hostname);
    buf_printf(out, "X-Mailwarden-Queue-ID: %s\r\n", m->ref.id);
    buf_append_str(out, "Arrival-Date: ");
    date(out, m->arrival);
    buf_append_str(out, "\r\n");
    for (size_t i = 0; i < m->nrcpt; i++) {
        const struct queue_rcpt *r = &m->rs[i];
        const char *action = action_of(m, i, kind);
        if (action == NULL)
            continue;
        buf_append_str(out, "\r\n");
        if (m->orcpt && m->orcpt[i])
            buf_printf(out, "Original-Recipient: %s\r\n", m->orcpt[i]);
        /* RFC 6533: a UTF-8 address is "utf-8" typed */
        buf_printf(out, "Final-Recipient: %s; %s\r\n", ascii(m->rcpts[i]) ? "rfc822" : "utf-8",
                   m->rcpts[i]);
        buf_printf(out, "Action: %s\r\n", action);
        buf_printf(out, "Status: %s\r\n",
                   r->state == QUEUE_RCPT_DELIVERED ? (r->enhanced[0] ? r->enhanced : "2.0.0")
                                                    : status_of(r, kind));
        if (r->mta) {
            /* "host[ip]:port": the host name is what RFC 3464 2.3.5 asks for */
            size_t n = strcspn(r->mta, "[");
            buf_printf(out, "Remote-MTA: dns; %.*s\r\n", (int)n, r->mta);
        }
        if (r->code) {
            struct buf v = { 0 };
            buf_printf(&v, "smtp; %u", r->code);
            if (r->enhanced[0])
                buf_printf(&v, " %s", r->enhanced);
            if (r->reply && r->reply[0])
                buf_printf(&v, " %s", r->reply);
            field(out, "Diagnostic-Code", buf_ptr(&v));
            buf_free(&v);
        } else if (r->reply && r->reply[0]) {
            struct buf v = { 0 };
            buf_printf(&v, "X-mailwarden; %s", r->reply);
            field(out, "Diagnostic-Code", buf_ptr(&v));
            buf_free(&v);
        }
        buf_append_str(out, "Last-Attempt-Date: ");
        date(out, o->now);
        buf_append_str(out, "\r\n");
        if (kind == BOUNCE_DELAYED) {
            buf_append_str(out, "Will-Retry-Until: ");
            date(out, o->retry_until);
            buf_append_str(out, "\r\n");
        }
    }
    buf_append_str(out, "\r\n");

    /* the original: the whole message for RET=FULL (RFC 3461 4.3), on a
     * failure; its header section otherwise */
    if (m->ret == 'F' && failed) {
        buf_printf(out, "--%s\r\nContent-Type: message/rfc822\r\n\r\n", boundary);
        buf_append(out, m->body, m->body_len);
        if (m->body_len >= 2 && !(m->body[m->body_len - 2] == '\r' &&
                                  m->body[m->body_len - 1] == '\n'))
            buf_append_str(out, "\r\n");
    } else {
        buf_printf(out, "--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary);
        size_t hl = header_len(m->body, m->body_len);
        buf_append(out, m->body, hl);
        if (hl >= 2 && !(m->body[hl - 2] == '\r' && m->body[hl - 1] == '\n'))
            buf_append_str(out, "\r\n");
    }
    buf_printf(out, "\r\n--%s--\r\n", boundary);
    return count;
}
