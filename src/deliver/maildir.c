#include "deliver/maildir.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/idna.h"
#include "core/str.h"
#include "core/xmalloc.h"

void maildir_component(struct buf *out, const char *s)
{
    for (size_t i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        bool plain = (c >= 0x80) || ascii_alpha((char)c) || ascii_digit((char)c) ||
                     (c != 0 && strchr("!#$&'*+-=?^_`{|}~.@", c) != NULL);
        if (c == '.' && i == 0)
            plain = false;
        if (plain)
            buf_append_byte(out, ascii_lower((char)c));
        else
            buf_printf(out, "%%%02X", c);
    }
    if (s[0] == '\0')
        buf_append_str(out, "%00");
}

/* A Maildir file name: <arrival>.Q<queue id>R<seq>.<host>. Unique (the
 * queue id is), and the same at every attempt of one delivery, so that a
 * retry after a crash finds the copy it already made instead of making a
 * second one. */
static void unique_name(struct buf *b, const char *hostname, time_t arrival, const char *qid,
                        unsigned seq)
{
    buf_printf(b, "%lld.Q%sR%u.", (long long)arrival, qid, seq);
    for (const char *h = hostname; *h; h++) {
        if (*h == '/')
            buf_append_str(b, "\\057");
        else if (*h == ':')
            buf_append_str(b, "\\072");
        else
            buf_append_byte(b, *h);
    }
}

int maildir_deliver(const char *root, const char *hostname, const struct maildir_msg *m,
                    int flags, struct buf *path_out)
{
    struct buf box, tmp, new, cur, name, head;
    buf_init(&box);
    buf_init(&tmp);
    buf_init(&new);
    buf_init(&cur);
    buf_init(&name);
    buf_init(&head);

    buf_printf(&box, "%s/", root);
    /* One directory per domain, whichever way it was written: A-labels. */
    char *ace = idna_to_ascii(m->domain);
    maildir_component(&box, ace != NULL ? ace : m->domain);
    xfree(ace);
    buf_append_byte(&box, '/');
    maildir_component(&box, m->local);
    if (m->folder)  /* [A-Za-z0-9_-], checked by the queue: kept as is */
        buf_printf(&box, "/.%s", m->folder);
    buf_printf(&tmp, "%s/tmp", box.data);
    buf_printf(&new, "%s/new", box.data);
    buf_printf(&cur, "%s/cur", box.data);

    unique_name(&name, hostname, m->arrival, m->queue_id, m->seq);
    buf_printf(&head, "Return-Path: <%s>\r\nDelivered-To: %s\r\n", m->return_path,
               m->delivered_to);
    struct iovec iov[2] = {
        { .iov_base = head.data, .iov_len = buf_size(&head) },
        { .iov_base = (void *)m->body, .iov_len = m->body_len },
    };
    int cflags = FS_COMMIT_IDEMPOTENT | ((flags & MAILDIR_DIRSYNC_LATER) ? FS_COMMIT_DIRSYNC_LATER : 0);
    /* The mailbox usually exists: create it only when the commit says a
     * directory is missing, not with a mkdir per path component each time. */
    int r = fs_commit_file(tmp.data, new.data, name.data, iov, 2, 0600, cflags);
    if (r == -ENOENT) {
        if ((r = fs_mkdirs(tmp.data, 0700)) < 0 || (r = fs_mkdirs(new.data, 0700)) < 0 ||
            (r = fs_mkdirs(cur.data, 0700)) < 0)
            goto out;
        r = fs_commit_file(tmp.data, new.data, name.data, iov, 2, 0600, cflags);
    }
    if (r == 0 && path_out)
        buf_printf(path_out, "%s/%s", new.data, name.data);
out:
    buf_free(&box);
    buf_free(&tmp);
    buf_free(&new);
    buf_free(&cur);
    buf_free(&name);
    buf_free(&head);
    return r;
}
