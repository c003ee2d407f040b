/*
 * maildir - local delivery into <root>/<domain>/<local-part>/ (Maildir).
 *
 * maildir_deliver() creates the mailbox (tmp, new, cur) if needed and
 * writes Return-Path and Delivered-To followed by the message through the
 * durable path (tmp/ -> fsync -> new/ -> fsync). It returns 0 once the
 * message is safe in new/, else -errno; it blocks, so the daemon runs it
 * on a worker thread. With MAILDIR_DIRSYNC_LATER the fsync of new/ is left
 * to the caller, who batches it over several deliveries: the message is
 * then in new/ but safe only once that directory is fsync'd (path_out
 * names the file; its directory is everything before the last '/').
 *
 * The file name is <arrival>.Q<queue id>R<recipient index>.<host>, the
 * same at every attempt: a delivery retried after a crash finds its own
 * earlier copy (rename without replace answers EEXIST) and makes no second
 * one.
 *
 * The domain directory is the domain's A-label form (RFC 8616), so a
 * U-label and an A-label address share one mailbox.
 * The domain and local part come from the network: maildir_component()
 * turns them into a single safe path component (lower case; '/', '%',
 * control bytes and a leading '.' percent-encoded), so no address can
 * name a path outside its own mailbox. With folder set, the message goes
 * into the Maildir++ folder <mailbox>/.<folder>/ (e.g. ".Junk"); the
 * folder name is checked by the queue (queue_folder_ok).
 */
#ifndef MW_DELIVER_MAILDIR_H
#define MW_DELIVER_MAILDIR_H

#include <stddef.h>
#include <time.h>

#include "core/buf.h"

struct maildir_msg {
    const char *return_path;   /* envelope sender, "" for <> */
    const char *delivered_to;  /* the recipient address */
    const char *domain;        /* recipient domain */
    const char *local;         /* recipient local part, unquoted */
    const char *folder;        /* Maildir++ folder, or NULL for the inbox */
    const char *queue_id;
    unsigned seq;              /* recipient index, for a unique file name */
    time_t arrival;            /* when it was queued: the name's time */
    const char *body;
    size_t body_len;
};

#define MAILDIR_DIRSYNC_LATER 1
int maildir_deliver(const char *root, const char *hostname, const struct maildir_msg *m,
                    int flags, struct buf *path_out);
void maildir_component(struct buf *out, const char *s);

#endif
