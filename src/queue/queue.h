/*
 * queue - the spool: durable messages waiting for delivery.
 *
 * One file per message, <data>/queue/<ID>, holding the envelope and the
 * message, written by queue_commit() through fs_commit_file(): built in
 * queue/tmp/, fsync'd, renamed into queue/, directory fsync'd. Only then
 * may the SMTP 250 be sent (DESIGN: durability). The file ends with a
 * completeness marker that queue_read() checks, and the reader treats the
 * file as untrusted: a malformed file is reported, never guessed at.
 *
 * Format (text header, then the exact message bytes):
 *   MWQ 1\n  id <ID>\n  session <ID>\n  time <unix>\n  from <addr>\n
 *   [spf <result> <domain>\n]  [folder <name>\n]  rcpt <addr>\n...
 *   size <n>\n  \n  <n bytes>  \nMWQ END\n
 *
 * folder names a Maildir++ folder to deliver into instead of the inbox
 * (DMARC quarantine: "Junk"); letters, digits, '-' and '_' only.
 *
 * Recipients already delivered are appended to a side file <ID>.done, one
 * index per line; a crash between delivery and that append gives a
 * duplicate delivery, which the contract allows, never a loss.
 *
 * All functions block (they do file I/O): call them from worker threads or
 * at start-up. They return 0 or -errno (-EBADMSG for a malformed file).
 */
#ifndef MW_QUEUE_QUEUE_H
#define MW_QUEUE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>
#include <time.h>

#include "core/buf.h"
#include "core/id.h"

struct queue {
    char *dir;      /* <data>/queue */
    char *tmpdir;   /* <data>/queue/tmp */
    char *baddir;   /* <data>/queue/corrupt */
};

struct queue_env {
    const char *session;    /* SMTP session id, for log lines */
    const char *from;       /* "" for the null sender */
    const char *spf;        /* "<result> <domain>" or NULL */
    const char *folder;     /* Maildir++ folder, or NULL for the inbox */
    const char *const *rcpts;
    size_t nrcpt;
    time_t arrival;
};

struct queue_msg {
    char id[ID_LEN + 1];
    char session[ID_LEN + 1];
    time_t arrival;
    char *from;
    char *spf;              /* NULL if not recorded */
    char *folder;           /* NULL: the inbox */
    char **rcpts;
    bool *done;
    size_t nrcpt;
    const char *body;       /* points into raw */
    size_t body_len;
    struct buf raw;
};

/* A valid folder name: 1..64 of [A-Za-z0-9_-]. */
bool queue_folder_ok(const char *s, size_t n);
int queue_open(struct queue *q, const char *data_dir);
void queue_close(struct queue *q);
/* Write env + message (at most QUEUE_MAX_IOV pieces) durably under id.
 * An id already in use gives -EEXIST: the caller treats it as a
 * temporary failure. */
#define QUEUE_MAX_IOV 8
int queue_commit(const struct queue *q, const char *id, const struct queue_env *env,
                 const struct iovec *msg, int msgcnt);
int queue_read(const struct queue *q, const char *id, struct queue_msg *m);
void queue_msg_free(struct queue_msg *m);
int queue_mark_done(const struct queue *q, const char *id, size_t rcpt_index);
int queue_remove(const struct queue *q, const char *id);
/* Move a malformed file out of the way (queue/corrupt/), keeping it. */
int queue_quarantine(const struct queue *q, const char *id);
/* Ids of all committed messages, oldest first. */
int queue_list(const struct queue *q, char (**ids)[ID_LEN + 1], size_t *n);

#endif
