/*
 * queue - the spool: durable messages waiting for delivery.
 *
 * Messages live in slot files, <data>/queue/slot.<N>, reused from message
 * to message. A slot holds one record: the envelope and the message,
 * ending with a completeness marker and padded to a multiple of
 * QUEUE_BLOCK bytes. queue_commit() writes the record into a free slot
 * from offset 0, cuts the file to the padded length and fdatasync's it;
 * a slot created for the occasion also has its directory fsync'd. Only
 * then may the SMTP 250 be sent (DESIGN: durability): data and directory
 * entry are on disk.
 *
 * Why slots and not a new file per message renamed into place: on this
 * path every creation, rename and unlink is metadata the disk must write
 * before the 250 (the directory, the inode, its bitmaps), and without a
 * journal each new inode also scans past recently deleted ones. Rewriting
 * a slot of the same padded size in place costs its data blocks alone.
 *
 * A delivered message's slot is marked spent (its magic rewritten, not
 * fsync'd: a crash that loses the mark makes a duplicate delivery, which
 * the contract allows) and goes back to the pool (at most QUEUE_POOL_MAX;
 * one over QUEUE_POOL_KEEP bytes is emptied). At start-up queue_open()
 * reads the head of every slot: live records are listed, spent and empty
 * slots go to the pool, and anything else is listed too (with an id of
 * zeros if it has none), so that the reader reports it and it is moved to
 * queue/corrupt/: it may have been acknowledged. Only one process may open a
 * queue: queue_open() locks the directory.
 *
 * Record format (text header, the exact message bytes, marker, padding):
 *   MWQ 2\n  id <ID>\n  session <ID>\n  time <unix>\n  from <addr>\n
 *   [spf <result> <domain>\n]  [folder <name>\n]  [ret F|H\n]  [envid <id>\n]
 *   rcpt <addr>\n...  [dsn <i> <notify> <orcpt or ->\n]...
 *   size <n>\n  \n  <n bytes>  \nMWQ END <crc>\n  <'\n' x 0..QUEUE_BLOCK-1>
 * <crc> is the CRC-32 (zlib's) of every byte before "\nMWQ END", in 8
 * lower-case hex digits: a slot is rewritten in place, so a write torn by
 * a crash must not pass for a record. A spent slot starts with "MWQ 0\n".
 *
 * ret, envid and the dsn lines keep the DSN parameters of RFC 3461 (RET,
 * ENVID; per recipient NOTIFY as SMTP_NOTIFY_* bits, ORCPT as
 * "type;address"), printable ASCII without spaces, as the session decoded
 * them.
 *
 * folder names a Maildir++ folder to deliver into instead of the inbox
 * (DMARC quarantine: "Junk"); letters, digits, '-' and '_' only.
 *
 * What became of each recipient is appended to a side file <ID>.state,
 * one line per event, the last word on a recipient winning (a delivery
 * is never undone):
 *   <i>                                      delivered
 *   S <i>                                    delivered, and a success report is
 *                                            owed (NOTIFY=SUCCESS, RFC 3461)
 *   F <i> <code> <enh> <mta> <text>          failed for good (a bounce is owed)
 *   T <i> <attempts> <next> <code> <enh> <mta> <text>
 *                                            deferred until <next> (unix time)
 *   B <i>                                    its failure went out in a bounce
 *   W                                        the delay warning went out
 *   H / R                                    held / released by the operator
 * <enh> and <mta> are "-" when unknown; words and text are printable ASCII.
 * The lines are written without fsync: a kill -9 keeps them (the page
 * cache survives the process), and one lost to a power failure gives a
 * duplicate delivery, which the contract allows, never a loss. A file
 * <ID>.done from before recipient states (delivered indices) is read too.
 *
 * The reader treats every file as untrusted: a malformed record is
 * reported, never guessed at. All functions block (file I/O): call them
 * from worker threads or at start-up; the pool is thread-safe. They return
 * 0 or -errno (-EBADMSG for a malformed record).
 */
#ifndef MW_QUEUE_QUEUE_H
#define MW_QUEUE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#include "core/buf.h"
#include "core/id.h"

#define QUEUE_BLOCK 4096
#define QUEUE_POOL_MAX 256
#define QUEUE_POOL_MIN 32     /* empty slots made ready at start-up */
#define QUEUE_POOL_KEEP (128 * 1024)

struct queue_pool;

struct queue {
    char *dir;      /* <data>/queue */
    char *baddir;   /* <data>/queue/corrupt */
    int dirfd;      /* dir, open for openat and fsync; holds the lock */
    struct queue_pool *pool;
};

struct queue_env {
    const char *session;    /* SMTP session id, for log lines */
    const char *from;       /* "" for the null sender */
    const char *spf;        /* "<result> <domain>" or NULL */
    const char *folder;     /* Maildir++ folder, or NULL for the inbox */
    const char *const *rcpts;
    size_t nrcpt;
    time_t arrival;
    char ret;                       /* RET=: 'F', 'H' or 0 */
    const char *envid;              /* or NULL */
    const unsigned *notify;         /* nrcpt NOTIFY bits, or NULL: none given */
    const char *const *orcpt;       /* nrcpt ORCPT values (entries may be NULL), or NULL */
};

/* A queued message: its id and its slot. */
struct queue_ref {
    char id[ID_LEN + 1];
    uint32_t slot;
};

enum queue_rcpt_state {
    QUEUE_RCPT_PENDING,
    QUEUE_RCPT_DELIVERED,
    QUEUE_RCPT_FAILED,
    QUEUE_RCPT_DEFERRED,
};

struct queue_rcpt {
    enum queue_rcpt_state state;
    unsigned attempts;      /* deferred: attempts so far */
    time_t next;            /* deferred: not before this */
    unsigned code;          /* the last reply's code (0: none) */
    char enhanced[12];      /* "4.4.1" or "" */
    char *mta;              /* the host that answered, or NULL */
    char *reply;            /* the last reply's text, or NULL */
    bool reported;          /* failed (or delivered, success_owed), and the report went */
    bool success_owed;      /* delivered with NOTIFY=SUCCESS, and no DSN-aware
                               next hop took the duty over */
};

struct queue_msg {
    struct queue_ref ref;
    char session[ID_LEN + 1];
    time_t arrival;
    char *from;
    char *spf;              /* NULL if not recorded */
    char *folder;           /* NULL: the inbox */
    char **rcpts;
    unsigned *notify;       /* per recipient: SMTP_NOTIFY_* bits, 0: none given */
    char **orcpt;           /* per recipient: ORCPT or NULL */
    size_t ndsn;            /* entries of notify and orcpt (nrcpt) */
    char ret;               /* 'F', 'H' or 0 */
    char *envid;            /* or NULL */
    bool *done;             /* delivered, or failed for good: not tried again */
    struct queue_rcpt *rs;  /* what became of each recipient (check_done) */
    size_t nrcpt;
    bool warned, held;
    const char *body;       /* points into raw */
    size_t body_len;
    bool has_done_file;     /* <ID>.state exists */
    struct buf raw;
};

/* A valid folder name: 1..64 of [A-Za-z0-9_-]. */
bool queue_folder_ok(const char *s, size_t n);
int queue_open(struct queue *q, const char *data_dir);
void queue_close(struct queue *q);
/* Write env + message (at most QUEUE_MAX_IOV pieces) durably under id;
 * *slot says where. */
#define QUEUE_MAX_IOV 8
int queue_commit(const struct queue *q, const char *id, const struct queue_env *env,
                 const struct iovec *msg, int msgcnt, uint32_t *slot);
/* Read and check a record; -ENOENT if the slot no longer holds it. With
 * check_done, also read <ID>.state; a caller that knows none can exist (a
 * message it committed itself and has not yet partly delivered) saves the
 * look-up. */
int queue_read(const struct queue *q, const struct queue_ref *ref, bool check_done,
               struct queue_msg *m);
void queue_msg_free(struct queue_msg *m);
int queue_mark_done(const struct queue *q, const char *id, size_t rcpt_index);
/* Delivered, and its sender asked to hear of it (NOTIFY=SUCCESS). */
int queue_mark_success(const struct queue *q, const char *id, size_t rcpt_index);
/* Append recipient i's new state (delivered, failed or deferred). */
int queue_mark_rcpt(const struct queue *q, const char *id, size_t i, const struct queue_rcpt *r);
/* Recipient i's failure went out in a bounce. */
int queue_mark_reported(const struct queue *q, const char *id, size_t i);
/* Append a flag line: 'W', 'H' or 'R'. */
int queue_mark_flag(const struct queue *q, const char *id, char flag);
int queue_state_append(const struct queue *q, const char *id, const char *line, size_t n);
void queue_rcpt_clear(struct queue_rcpt *r);
/* A finished message: drop its .state file (has_done_file), mark the slot
 * spent and give it back. The caller has made every delivery durable. */
int queue_remove(const struct queue *q, const struct queue_ref *ref, bool has_done_file);
/* Move a slot whose record is malformed out of the way (queue/corrupt/),
 * keeping it for the operator. */
int queue_quarantine(const struct queue *q, const struct queue_ref *ref);
/* Every live record queue_open() found, oldest first (the caller frees
 * *refs); later calls find none. */
int queue_list(const struct queue *q, struct queue_ref **refs, size_t *n);

#endif
