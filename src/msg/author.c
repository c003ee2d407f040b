/*
 * msg/author.c - the author of a message as every consumer must see it;
 * the contract is in author.h.
 */
#include "msg/author.h"

#include <string.h>

#include "core/xmalloc.h"

/* Line number (1-based) of offset off. Only called on the error path. */
static size_t line_of(const char *msg, size_t off)
{
    size_t line = 1;
    for (const char *p = msg; (p = memchr(p, '\n', off - (size_t)(p - msg))) != NULL; p++)
        line++;
    return line;
}

static void problem(struct msg_author *a, enum msg_author_status s, const char *msg, size_t off)
{
    if (a->status == MSG_AUTHOR_OK) {
        a->status = s;
        a->line = line_of(msg, off);
    }
}

static bool sender_readable(const struct msg_field *f)
{
    struct msg_mailbox *mb;
    size_t count;
    if (msg_parse_mailbox_list(f->value, f->value_len, &mb, &count) < 0)
        return false;
    bool ok = count == 1 && mb[0].quirks == 0;
    msg_mailboxes_free(mb, count);
    return ok;
}

enum msg_author_status msg_author(const char *msg, size_t n, struct msg_author *a)
{
    *a = (struct msg_author){ .status = MSG_AUTHOR_OK };
    size_t pos = 0, start = 0, nfrom = 0, nsender = 0, from_at = 0;
    struct msg_field f, from = { 0 };
    int r;
    while ((r = msg_next_field(msg, n, &pos, &f)) != 0) {
        if (r < 0) {
            problem(a, MSG_AUTHOR_BAD_HEADER, msg, start);
        } else if (msg_field_is(&f, "From")) {
            if (nfrom++ == 0) {
                from = f;
                from_at = start;
            } else {
                problem(a, MSG_AUTHOR_MULTIPLE, msg, start);
            }
        } else if (msg_field_is(&f, "Sender")) {
            if (nsender++ > 0 || !sender_readable(&f))
                problem(a, MSG_AUTHOR_SENDER, msg, start);
        }
        start = pos;
    }
    if (nfrom == 0) {
        problem(a, MSG_AUTHOR_MISSING, msg, 0);
        a->line = 0;
        return a->status;
    }
    if (msg_parse_address_list(from.value, from.value_len, MSG_ALLOW_NO_DOMAIN, &a->mb,
                               &a->count) < 0) {
        problem(a, MSG_AUTHOR_SYNTAX, msg, from_at);
        return a->status;
    }
    for (size_t i = 0; i < a->count; i++)
        if (a->mb[i].quirks != 0)
            problem(a, MSG_AUTHOR_AMBIGUOUS, msg, from_at);
    if (a->count != 1)
        problem(a, MSG_AUTHOR_MAILBOXES, msg, from_at);
    return a->status;
}

void msg_author_free(struct msg_author *a)
{
    msg_mailboxes_free(a->mb, a->count);
    a->mb = NULL;
    a->count = 0;
}

const char *msg_author_strerror(enum msg_author_status s)
{
    switch (s) {
    case MSG_AUTHOR_OK: return "ok";
    case MSG_AUTHOR_BAD_HEADER: return "a header line is not a header field";
    case MSG_AUTHOR_MISSING: return "no From field";
    case MSG_AUTHOR_MULTIPLE: return "several From fields";
    case MSG_AUTHOR_SENDER: return "several or unreadable Sender fields";
    case MSG_AUTHOR_SYNTAX: return "the From field cannot be read as an address";
    case MSG_AUTHOR_AMBIGUOUS: return "the From address uses a route, group, comment, "
                                      "encoded word or quoted '@' that readers may show as "
                                      "another address";
    case MSG_AUTHOR_MAILBOXES: return "several mailboxes in From";
    }
    return "?";
}
