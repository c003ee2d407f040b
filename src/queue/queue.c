#include "queue/queue.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "core/fsutil.h"
#include "core/str.h"
#include "core/xmalloc.h"

#define STATE_SUFFIX ".state"   /* <ID>.state: what became of each recipient */

#define QUEUE_MAGIC "MWQ 2\n"
#define QUEUE_SPENT "MWQ 0\n"
#define MAGIC_LEN (sizeof(QUEUE_MAGIC) - 1)
#define QUEUE_END "\nMWQ END "   /* then the CRC-32 in 8 hex digits and \n */
#define END_LEN (sizeof(QUEUE_END) - 1 + 8 + 1)
#define QUEUE_MAX_FILE ((size_t)2200 * 1024 * 1024)
#define SLOT_PREFIX "slot."
#define SLOT_NAME_MAX 24

/* Free slots, and the live records found by queue_open(). */
struct queue_pool {
    pthread_mutex_t mu;
    uint32_t next;              /* the next unused slot number */
    size_t count;
    uint32_t free[QUEUE_POOL_MAX];
    struct queue_ref *found;    /* for queue_list() */
    size_t nfound;
};

static char *join(const char *a, const char *b)
{
    struct buf p;
    buf_init(&p);
    buf_printf(&p, "%s/%s", a, b);
    return p.data;
}

static void slot_name(char out[SLOT_NAME_MAX], uint32_t n)
{
    snprintf(out, SLOT_NAME_MAX, SLOT_PREFIX "%" PRIu32, n);
}

/* slot.<N>, N a plain decimal number below UINT32_MAX. */
static bool parse_slot_name(const char *s, uint32_t *n)
{
    size_t plen = sizeof(SLOT_PREFIX) - 1;
    uint64_t v;
    if (strncmp(s, SLOT_PREFIX, plen) != 0 ||
        str_to_u64(s + plen, strlen(s + plen), UINT32_MAX - 1, &v) < 0)
        return false;
    *n = (uint32_t)v;
    return true;
}

/* Put slot n into the pool; false when the pool is full. */
static bool pool_put(struct queue_pool *p, uint32_t n)
{
    pthread_mutex_lock(&p->mu);
    bool ok = p->count < QUEUE_POOL_MAX;
    if (ok)
        p->free[p->count++] = n;
    pthread_mutex_unlock(&p->mu);
    return ok;
}

/* Give slot n back, or delete it when the pool is full. */
static void pool_return(const struct queue *q, uint32_t n)
{
    if (!pool_put(q->pool, n)) {
        char name[SLOT_NAME_MAX];
        slot_name(name, n);
        unlinkat(q->dirfd, name, 0);
    }
}

/* A slot to write into, open: a pooled one, else a new file (*created). */
static int pool_take(const struct queue *q, uint32_t *n, bool *created)
{
    struct queue_pool *p = q->pool;
    char name[SLOT_NAME_MAX];
    for (;;) {
        pthread_mutex_lock(&p->mu);
        bool pooled = p->count > 0;
        *n = pooled ? p->free[--p->count] : p->next++;
        pthread_mutex_unlock(&p->mu);
        slot_name(name, *n);
        if (!pooled)
            break;
        int fd = openat(q->dirfd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0 || errno != ENOENT) {
            *created = false;
            return fd >= 0 ? fd : -errno;
        }
        /* Removed by hand: take another. */
    }
    *created = true;
    int fd = openat(q->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    return fd >= 0 ? fd : -errno;
}

bool queue_folder_ok(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!ascii_alpha(s[i]) && !ascii_digit(s[i]) && s[i] != '-' && s[i] != '_')
            return false;
    return true;
}

/* The id of a record that starts at p (n bytes or more), into id; false
 * if p does not start with the magic and a well-formed id line. */
static bool head_id(const char *p, size_t n, char id[ID_LEN + 1])
{
    const char *idp = p + MAGIC_LEN + 3;
    if (n < MAGIC_LEN + 3 + ID_LEN + 1 || memcmp(p, QUEUE_MAGIC, MAGIC_LEN) != 0 ||
        memcmp(p + MAGIC_LEN, "id ", 3) != 0 || !id_valid(idp, ID_LEN) || idp[ID_LEN] != '\n')
        return false;
    memcpy(id, idp, ID_LEN);
    id[ID_LEN] = '\0';
    return true;
}

/* What the head of a slot holds. */
enum slot_state { SLOT_FREE, SLOT_LIVE };

static enum slot_state read_head(int dirfd, const char *name, struct queue_ref *ref)
{
    char head[256];
    ssize_t n = -1;
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        n = pread(fd, head, sizeof(head) - 1, 0);
        close(fd);
    }
    if (n == 0 || (n >= (ssize_t)MAGIC_LEN && memcmp(head, QUEUE_SPENT, MAGIC_LEN) == 0))
        return SLOT_FREE;
    /* Live, or not a record at all: the reader decides, and reports. The
     * id line comes right after the magic; without one the id stays 0. */
    memset(ref->id, '0', ID_LEN);
    ref->id[ID_LEN] = '\0';
    if (n > 0)
        head_id(head, (size_t)n, ref->id);
    return SLOT_LIVE;
}

static int cmp_ref(const void *a, const void *b)
{
    const struct queue_ref *x = a, *y = b;
    int c = memcmp(x->id, y->id, ID_LEN);
    return c ? c : (x->slot > y->slot) - (x->slot < y->slot);
}

/* Read every slot: live records to found, the rest to the pool. */
static int scan_slots(struct queue *q)
{
    struct queue_pool *p = q->pool;
    int fd = dup(q->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        int r = -errno;
        if (fd >= 0)
            close(fd);
        return r;
    }
    size_t cap = 0;
    struct dirent *e;
    uint32_t n;
    while ((e = readdir(d)) != NULL) {
        if (!parse_slot_name(e->d_name, &n))
            continue;
        if (n >= p->next)
            p->next = n + 1;
        struct queue_ref ref = { .slot = n };
        if (read_head(q->dirfd, e->d_name, &ref) == SLOT_FREE) {
            if (!pool_put(p, n))
                unlinkat(q->dirfd, e->d_name, 0);
            continue;
        }
        if (p->nfound == cap) {
            cap = cap ? cap * 2 : 64;
            p->found = xreallocarray(p->found, cap, sizeof(*p->found));
        }
        p->found[p->nfound++] = ref;
    }
    closedir(d);
    if (p->nfound)
        qsort(p->found, p->nfound, sizeof(*p->found), cmp_ref);
    return 0;
}

/* Empty slots for the first messages, made durable with one fsync. */
static int top_up(struct queue *q)
{
    bool made = false;
    while (q->pool->count < QUEUE_POOL_MIN) {
        char name[SLOT_NAME_MAX];
        uint32_t n = q->pool->next++;
        slot_name(name, n);
        int fd = openat(q->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            return -errno;
        close(fd);
        pool_put(q->pool, n);
        made = true;
    }
    return made && fsync(q->dirfd) < 0 ? -errno : 0;
}

int queue_open(struct queue *q, const char *data_dir)
{
    memset(q, 0, sizeof(*q));
    q->dirfd = -1;
    q->dir = join(data_dir, "queue");
    q->baddir = join(q->dir, "corrupt");
    int r;
    if ((r = fs_mkdirs(q->baddir, 0700)) < 0)
        return r;
    q->dirfd = open(q->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (q->dirfd < 0)
        return -errno;
    /* The pool and the slots are this process's alone. */
    if (flock(q->dirfd, LOCK_EX | LOCK_NB) < 0)
        return errno == EWOULDBLOCK ? -EBUSY : -errno;
    q->pool = xcalloc(1, sizeof(*q->pool));
    pthread_mutex_init(&q->pool->mu, NULL);
    if ((r = scan_slots(q)) < 0)
        return r;
    return top_up(q);
}

void queue_close(struct queue *q)
{
    if (q->pool) {
        pthread_mutex_destroy(&q->pool->mu);
        xfree(q->pool->found);
        xfree(q->pool);
    }
    if (q->dir != NULL && q->dirfd >= 0)   /* opened: a zeroed struct has fd 0 */
        close(q->dirfd);                    /* and with it the lock */
    xfree(q->dir);
    xfree(q->baddir);
    memset(q, 0, sizeof(*q));
    q->dirfd = -1;
}

int queue_list(const struct queue *q, struct queue_ref **refs, size_t *n)
{
    pthread_mutex_lock(&q->pool->mu);
    *refs = q->pool->found;
    *n = q->pool->nfound;
    q->pool->found = NULL;
    q->pool->nfound = 0;
    pthread_mutex_unlock(&q->pool->mu);
    return 0;
}

static const char padding[QUEUE_BLOCK] = { [0 ... QUEUE_BLOCK - 1] = '\n' };

/* A DSN value as the record keeps it: 1..500 printable ASCII, no space. */
static bool dsn_word_ok(const char *p, size_t n)
{
    if (n == 0 || n > 500)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 33 || (unsigned char)p[i] > 126)
            return false;
    return true;
}

int queue_commit(const struct queue *q, const char *id, const struct queue_env *env,
                 const struct iovec *msg, int msgcnt, uint32_t *slot)
{
    size_t total = 0;
    for (int i = 0; i < msgcnt; i++)
        total += msg[i].iov_len;

    struct buf head;
    struct iovec iov[QUEUE_MAX_IOV + 3];
    if (msgcnt < 0 || msgcnt > QUEUE_MAX_IOV || !id_valid(id, strlen(id)))
        return -EINVAL;
    if (env->folder && !queue_folder_ok(env->folder, strlen(env->folder)))
        return -EINVAL;
    buf_init(&head);
    buf_printf(&head, QUEUE_MAGIC "id %s\nsession %s\ntime %lld\nfrom %s\n", id, env->session,
               (long long)env->arrival, env->from);
    if (env->spf)
        buf_printf(&head, "spf %s\n", env->spf);
    if (env->folder)
        buf_printf(&head, "folder %s\n", env->folder);
    if (env->ret == 'F' || env->ret == 'H')
        buf_printf(&head, "ret %c\n", env->ret);
    if (env->envid && dsn_word_ok(env->envid, strlen(env->envid)))
        buf_printf(&head, "envid %s\n", env->envid);
    for (size_t i = 0; i < env->nrcpt; i++)
        buf_printf(&head, "rcpt %s\n", env->rcpts[i]);
    for (size_t i = 0; i < env->nrcpt; i++) {
        unsigned nt = env->notify ? env->notify[i] : 0;
        const char *oc = env->orcpt ? env->orcpt[i] : NULL;
        if (oc && !dsn_word_ok(oc, strlen(oc)))
            oc = NULL;
        if (nt || oc)
            buf_printf(&head, "dsn %zu %u %s\n", i, nt & 0xf, oc ? oc : "-");
    }
    buf_printf(&head, "size %zu\n\n", total);
    size_t len = buf_size(&head) + total + END_LEN;
    iov[0].iov_base = head.data;
    iov[0].iov_len = buf_size(&head);
    for (int i = 0; i < msgcnt; i++)
        iov[i + 1] = msg[i];
    /* The marker carries a CRC-32 of everything before it: a slot is
     * rewritten in place, and a write torn by a crash could otherwise
     * leave a new head on an old tail that happens to line up. */
    uLong crc = crc32_z(0L, Z_NULL, 0);
    for (int i = 0; i <= msgcnt; i++)
        if (iov[i].iov_len > 0)   /* a NULL buffer would restart the CRC */
            crc = crc32_z(crc, iov[i].iov_base, iov[i].iov_len);
    char end[END_LEN + 1];
    snprintf(end, sizeof(end), QUEUE_END "%08lx\n", crc & 0xffffffffUL);
    iov[msgcnt + 1].iov_base = end;
    iov[msgcnt + 1].iov_len = END_LEN;
    /* Padded to whole blocks: a slot keeps its size from one message to
     * the next of about the same size, so fdatasync has no inode to
     * write, only the data. */
    iov[msgcnt + 2].iov_base = (void *)padding;
    iov[msgcnt + 2].iov_len = (QUEUE_BLOCK - len % QUEUE_BLOCK) % QUEUE_BLOCK;

    bool created;
    uint32_t n;
    int fd = pool_take(q, &n, &created);
    int r = fd < 0 ? fd : fs_write_synced(fd, iov, msgcnt + 3);
    buf_free(&head);
    if (fd < 0)
        return r;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    /* A new slot's directory entry must be durable too. */
    if (r == 0 && created && fsync(q->dirfd) < 0)
        r = -errno;
    if (r < 0) {
        /* Not acknowledged: whatever the slot holds now is never read as
         * a record (a partial write has no marker; a complete one whose
         * sync failed is marked spent before reuse). */
        char name[SLOT_NAME_MAX];
        slot_name(name, n);
        if ((fd = openat(q->dirfd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)) >= 0) {
            if (pwrite(fd, QUEUE_SPENT, MAGIC_LEN, 0) == (ssize_t)MAGIC_LEN)
                pool_return(q, n);
            close(fd);
        }
        return r;
    }
    *slot = n;
    return 0;
}

/* Next header line of the queue file; false at the blank line or on error. */
static bool next_line(const char **p, const char *end, const char **line, size_t *len)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (nl == NULL)
        return false;
    *line = *p;
    *len = (size_t)(nl - *p);
    *p = nl + 1;
    return true;
}

/* Exactly n lower-case hex digits, as the writer prints them. */
static bool parse_hex(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d = ascii_lower(s[i]) == s[i] ? ascii_hex_value(s[i]) : -1;
        if (d < 0)
            return false;
        v = v * 16 + (uint64_t)d;
    }
    *out = v;
    return true;
}

/* The marker at p + size with the CRC-32 of start..p + size, then only
 * padding, less than a block of it. */
static bool check_end(const char *start, const char *p, const char *end, uint64_t size)
{
    size_t mlen = sizeof(QUEUE_END) - 1;
    if ((uint64_t)(end - p) < size + END_LEN || memcmp(p + size, QUEUE_END, mlen) != 0 ||
        p[size + END_LEN - 1] != '\n')
        return false;
    uint64_t want;
    if (!parse_hex(p + size + mlen, 8, &want) ||
        want != (crc32_z(crc32_z(0L, Z_NULL, 0), (const Bytef *)start, (size_t)(p + size - start)) &
                 0xffffffffUL))
        return false;
    const char *tail = p + size + END_LEN;
    if ((size_t)(end - tail) >= QUEUE_BLOCK)
        return false;
    for (; tail < end; tail++)
        if (*tail != '\n')
            return false;
    return true;
}

/* "<i> <notify> <orcpt or ->" after the rcpt lines. */
static int dsn_line(struct queue_msg *m, const char *p, size_t n)
{
    const char *sp1 = memchr(p, ' ', n);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - p)) : NULL;
    uint64_t idx, nt;
    if (sp2 == NULL || str_to_u64(p, (size_t)(sp1 - p), SIZE_MAX, &idx) < 0 ||
        idx >= m->nrcpt || str_to_u64(sp1 + 1, (size_t)(sp2 - sp1 - 1), 15, &nt) < 0)
        return -1;
    const char *oc = sp2 + 1;
    size_t on = n - (size_t)(oc - p);
    if (!(on == 1 && oc[0] == '-') && !dsn_word_ok(oc, on))
        return -1;
    if (m->notify == NULL) {
        m->notify = xcalloc(m->nrcpt, sizeof(unsigned));
        m->orcpt = xcalloc(m->nrcpt, sizeof(char *));
        m->ndsn = m->nrcpt;
    }
    if (idx >= m->ndsn)
        return -1;
    m->notify[idx] = (unsigned)nt;
    xfree(m->orcpt[idx]);
    m->orcpt[idx] = (on == 1 && oc[0] == '-') ? NULL : xmemdup0(oc, on);
    return 0;
}

static int parse_file(struct queue_msg *m)
{
    const char *p = buf_ptr(&m->raw), *end = p + buf_size(&m->raw);
    const char *line;
    size_t len;
    bool have_size = false, have_from = false, have_id = false;
    uint64_t size = 0;

    if ((size_t)(end - p) < MAGIC_LEN || memcmp(p, QUEUE_MAGIC, MAGIC_LEN))
        return -EBADMSG;
    p += MAGIC_LEN;
    for (;;) {
        if (!next_line(&p, end, &line, &len))
            return -EBADMSG;
        if (len == 0)
            break;
        uint64_t v;
        if (len > 3 && memcmp(line, "id ", 3) == 0) {
            if (have_id || len - 3 != ID_LEN || memcmp(line + 3, m->ref.id, ID_LEN) != 0)
                return -EBADMSG;
            have_id = true;
        } else if (len > 8 && memcmp(line, "session ", 8) == 0) {
            if (!id_valid(line + 8, len - 8))
                return -EBADMSG;
            memcpy(m->session, line + 8, ID_LEN);
            m->session[ID_LEN] = '\0';
        } else if (len > 5 && memcmp(line, "time ", 5) == 0) {
            if (str_to_u64(line + 5, len - 5, INT64_MAX, &v) < 0)
                return -EBADMSG;
            m->arrival = (time_t)v;
        } else if (len >= 5 && memcmp(line, "from ", 5) == 0 && !have_from) {
            m->from = xmemdup0(line + 5, len - 5);
            have_from = true;
        } else if (len > 4 && memcmp(line, "spf ", 4) == 0 && m->spf == NULL) {
            m->spf = xmemdup0(line + 4, len - 4);
        } else if (len > 7 && memcmp(line, "folder ", 7) == 0 && m->folder == NULL) {
            if (!queue_folder_ok(line + 7, len - 7))
                return -EBADMSG;
            m->folder = xmemdup0(line + 7, len - 7);
        } else if (len > 5 && memcmp(line, "rcpt ", 5) == 0) {
            m->rcpts = xreallocarray(m->rcpts, m->nrcpt + 1, sizeof(char *));
            m->rcpts[m->nrcpt++] = xmemdup0(line + 5, len - 5);
        } else if (len == 5 && memcmp(line, "ret ", 4) == 0 && m->ret == 0) {
            if (line[4] != 'F' && line[4] != 'H')
                return -EBADMSG;
            m->ret = line[4];
        } else if (len > 6 && memcmp(line, "envid ", 6) == 0 && m->envid == NULL) {
            if (!dsn_word_ok(line + 6, len - 6))
                return -EBADMSG;
            m->envid = xmemdup0(line + 6, len - 6);
        } else if (len > 4 && memcmp(line, "dsn ", 4) == 0) {
            if (dsn_line(m, line + 4, len - 4) < 0)
                return -EBADMSG;
        } else if (len > 5 && memcmp(line, "size ", 5) == 0) {
            if (str_to_u64(line + 5, len - 5, QUEUE_MAX_FILE, &size) < 0)
                return -EBADMSG;
            have_size = true;
        } else {
            return -EBADMSG;
        }
    }
    if (!have_id || !have_from || !have_size || m->nrcpt == 0 || !check_end(buf_ptr(&m->raw), p, end, size))
        return -EBADMSG;
    m->body = p;
    m->body_len = (size_t)size;
    m->done = xcalloc(m->nrcpt, sizeof(bool));
    m->rs = xcalloc(m->nrcpt, sizeof(*m->rs));
    if (m->notify == NULL) {   /* none given: arrays of zeros, so callers need not check */
        m->notify = xcalloc(m->nrcpt, sizeof(unsigned));
        m->orcpt = xcalloc(m->nrcpt, sizeof(char *));
        m->ndsn = m->nrcpt;
    }
    if (m->ndsn != m->nrcpt)
        return -EBADMSG;   /* a dsn line before the last rcpt */
    return 0;
}

/* One word of a state line: p[0..) up to a space; advances *p past it. */
static bool word(const char **p, const char *end, const char **w, size_t *n)
{
    const char *s = *p;
    const char *sp = memchr(s, ' ', (size_t)(end - s));
    const char *e = sp ? sp : end;
    if (e == s)
        return false;
    *w = s;
    *n = (size_t)(e - s);
    *p = sp ? sp + 1 : end;
    return true;
}

/* "F <i> <code> <enh> <mta> <text>" or "T <i> <attempts> <next> <code>
 * <enh> <mta> <text>"; anything malformed is ignored (the recipient stays
 * as it was: at worst tried again). */
static void state_line(struct queue_msg *m, const char *line, size_t len)
{
    const char *p = line, *end = line + len, *w;
    size_t n;
    uint64_t idx, v;
    if (len == 1 && line[0] == 'W') {
        m->warned = true;
        return;
    }
    if (len > 2 && line[0] == 'B' && line[1] == ' ') {   /* "B <i>": its failure was reported */
        if (str_to_u64(line + 2, len - 2, m->nrcpt - 1, &idx) == 0)
            m->rs[idx].reported = true;
        return;
    }
    if (len == 1 && line[0] == 'H') {
        m->held = true;
        return;
    }
    if (len == 1 && line[0] == 'R') {
        m->held = false;
        return;
    }
    if (len > 2 && line[0] == 'S' && line[1] == ' ') {
        /* "S <i> [<mta>]": delivered (relayed to mta), a report owed */
        const char *sp = memchr(line + 2, ' ', len - 2);
        size_t in = sp ? (size_t)(sp - line - 2) : len - 2;
        if (str_to_u64(line + 2, in, m->nrcpt - 1, &idx) == 0) {
            m->done[idx] = true;
            m->rs[idx].state = QUEUE_RCPT_DELIVERED;
            m->rs[idx].success_owed = true;
            if (sp && sp + 1 < line + len && m->rs[idx].mta == NULL)
                m->rs[idx].mta = xmemdup0(sp + 1, (size_t)(line + len - sp - 1));
        }
        return;
    }
    if (line[0] >= '0' && line[0] <= '9') {   /* "<i>": delivered */
        if (str_to_u64(line, len, m->nrcpt - 1, &idx) == 0) {
            m->done[idx] = true;
            m->rs[idx].state = QUEUE_RCPT_DELIVERED;
        }
        return;
    }
    if (len < 2 || (line[0] != 'F' && line[0] != 'T') || line[1] != ' ')
        return;
    bool failed = line[0] == 'F';
    p += 2;
    if (!word(&p, end, &w, &n) || str_to_u64(w, n, m->nrcpt - 1, &idx) < 0)
        return;
    struct queue_rcpt r = { 0 };
    r.state = failed ? QUEUE_RCPT_FAILED : QUEUE_RCPT_DEFERRED;
    if (!failed) {
        if (!word(&p, end, &w, &n) || str_to_u64(w, n, 1000000, &v) < 0)
            return;
        r.attempts = (unsigned)v;
        if (!word(&p, end, &w, &n) || str_to_u64(w, n, INT64_MAX, &v) < 0)
            return;
        r.next = (time_t)v;
    }
    if (!word(&p, end, &w, &n) || str_to_u64(w, n, 599, &v) < 0)
        return;
    r.code = (unsigned)v;
    if (!word(&p, end, &w, &n) || n >= sizeof(r.enhanced))
        return;
    if (!(n == 1 && w[0] == '-'))
        memcpy(r.enhanced, w, n);
    if (!word(&p, end, &w, &n))
        return;
    if (m->rs[idx].state == QUEUE_RCPT_DELIVERED)
        return;   /* a later line never undoes a delivery */
    r.reported = m->rs[idx].reported && failed;
    queue_rcpt_clear(&m->rs[idx]);
    r.mta = (n == 1 && w[0] == '-') ? NULL : xmemdup0(w, n);
    r.reply = xmemdup0(p, (size_t)(end - p));
    m->rs[idx] = r;
    m->done[idx] = failed;   /* final either way: not delivered again */
}

static void read_state_file(const struct queue *q, struct queue_msg *m, const char *suffix)
{
    char name[ID_LEN + 8];
    snprintf(name, sizeof(name), "%s%s", m->ref.id, suffix);
    struct buf b;
    buf_init(&b);
    if (fs_read_fileat(q->dirfd, name, 1 << 20, &b) == 0) {
        m->has_done_file = true;
        const char *p = buf_ptr(&b), *end = p + buf_size(&b), *line;
        size_t len;
        while (next_line(&p, end, &line, &len))
            if (len > 0)
                state_line(m, line, len);
    }
    buf_free(&b);
}

static void read_done(const struct queue *q, struct queue_msg *m)
{
    read_state_file(q, m, ".done");    /* written before recipient states existed */
    read_state_file(q, m, STATE_SUFFIX);
}

int queue_read(const struct queue *q, const struct queue_ref *ref, bool check_done,
               struct queue_msg *m)
{
    memset(m, 0, sizeof(*m));
    if (!id_valid(ref->id, strlen(ref->id)))
        return -EINVAL;
    m->ref = *ref;
    char name[SLOT_NAME_MAX];
    slot_name(name, ref->slot);
    int r = fs_read_fileat(q->dirfd, name, QUEUE_MAX_FILE, &m->raw);
    /* A spent slot, or one already holding another message: this one has
     * been delivered and removed. */
    size_t sz = buf_size(&m->raw);
    char other[ID_LEN + 1];
    if (r == 0 && (sz == 0 || (sz >= MAGIC_LEN && memcmp(buf_ptr(&m->raw), QUEUE_SPENT, MAGIC_LEN) == 0) ||
                   (head_id(buf_ptr(&m->raw), sz, other) && strcmp(other, ref->id) != 0)))
        r = -ENOENT;
    if (r == 0)
        r = parse_file(m);
    if (r == 0 && check_done)
        read_done(q, m);
    if (r < 0)
        queue_msg_free(m);
    return r;
}

void queue_msg_free(struct queue_msg *m)
{
    xfree(m->from);
    xfree(m->spf);
    xfree(m->folder);
    for (size_t i = 0; i < m->nrcpt; i++)
        xfree(m->rcpts[i]);
    xfree(m->rcpts);
    if (m->orcpt)
        for (size_t i = 0; i < m->ndsn; i++)
            xfree(m->orcpt[i]);
    xfree(m->orcpt);
    xfree(m->notify);
    xfree(m->envid);
    xfree(m->done);
    if (m->rs)
        for (size_t i = 0; i < m->nrcpt; i++)
            queue_rcpt_clear(&m->rs[i]);
    xfree(m->rs);
    buf_free(&m->raw);
    memset(m, 0, sizeof(*m));
}

void queue_rcpt_clear(struct queue_rcpt *r)
{
    xfree(r->mta);
    xfree(r->reply);
    memset(r, 0, sizeof(*r));
}

int queue_state_append(const struct queue *q, const char *id, const char *line, size_t n)
{
    if (!id_valid(id, strlen(id)))
        return -EINVAL;
    char name[ID_LEN + 8];
    snprintf(name, sizeof(name), "%s%s", id, STATE_SUFFIX);
    int fd = openat(q->dirfd, name, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    /* One write: O_APPEND puts it whole at the end, even with two
     * attempts of one message (different recipients) writing at once. */
    int r = fs_write_all(fd, line, n);
    close(fd);
    return r;
}

/* "<prefix><i>\n": a state line about one recipient and nothing else. */
static int mark_index(const struct queue *q, const char *id, const char *prefix, size_t i)
{
    char line[40];
    int n = snprintf(line, sizeof(line), "%s%zu\n", prefix, i);
    return queue_state_append(q, id, line, (size_t)n);
}

int queue_mark_done(const struct queue *q, const char *id, size_t rcpt_index)
{
    return mark_index(q, id, "", rcpt_index);
}

/* A state word or text: printable ASCII only, never a line end. */
static void state_text(struct buf *b, const char *s, bool one_word)
{
    if (s == NULL || *s == '\0') {
        buf_append_byte(b, '-');
        return;
    }
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x21 || c > 0x7e)
            c = (one_word || c != ' ') ? '?' : ' ';
        buf_append_byte(b, (char)c);
    }
}

int queue_mark_rcpt(const struct queue *q, const char *id, size_t i, const struct queue_rcpt *r)
{
    struct buf b;
    buf_init(&b);
    if (r->state == QUEUE_RCPT_DELIVERED && r->success_owed) {
        buf_printf(&b, "S %zu", i);
        if (r->mta) {
            buf_append_byte(&b, ' ');
            state_text(&b, r->mta, true);
        }
        buf_append_byte(&b, '\n');
    } else if (r->state == QUEUE_RCPT_DELIVERED) {
        buf_printf(&b, "%zu\n", i);
    } else if (r->state == QUEUE_RCPT_FAILED) {
        buf_printf(&b, "F %zu %u ", i, r->code);
    } else if (r->state == QUEUE_RCPT_DEFERRED) {
        buf_printf(&b, "T %zu %u %lld %u ", i, r->attempts, (long long)r->next, r->code);
    } else {
        buf_free(&b);
        return -EINVAL;
    }
    if (r->state == QUEUE_RCPT_FAILED || r->state == QUEUE_RCPT_DEFERRED) {
        state_text(&b, r->enhanced, true);
        buf_append_byte(&b, ' ');
        state_text(&b, r->mta, true);
        buf_append_byte(&b, ' ');
        state_text(&b, r->reply, false);
        buf_append_byte(&b, '\n');
    }
    int rc = queue_state_append(q, id, buf_ptr(&b), buf_size(&b));
    buf_free(&b);
    return rc;
}

int queue_mark_success(const struct queue *q, const char *id, size_t i)
{
    return mark_index(q, id, "S ", i);
}

int queue_mark_reported(const struct queue *q, const char *id, size_t i)
{
    return mark_index(q, id, "B ", i);
}

int queue_mark_flag(const struct queue *q, const char *id, char flag)
{
    char line[2] = { flag, '\n' };
    return queue_state_append(q, id, line, 2);
}

int queue_remove(const struct queue *q, const struct queue_ref *ref, bool has_done_file)
{
    if (!id_valid(ref->id, strlen(ref->id)))
        return -EINVAL;
    char name[SLOT_NAME_MAX];
    slot_name(name, ref->slot);
    int fd = openat(q->dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* Spent, not fsync'd (see the top). A large file gives its space back
     * but keeps its inode. */
    struct stat st;
    int r = 0;
    if (fstat(fd, &st) == 0 && st.st_size > QUEUE_POOL_KEEP)
        r = ftruncate(fd, 0) < 0 ? -errno : 0;
    else if (pwrite(fd, QUEUE_SPENT, MAGIC_LEN, 0) != (ssize_t)MAGIC_LEN)
        r = -EIO;
    close(fd);
    if (has_done_file) {
        char side[ID_LEN + 8];
        snprintf(side, sizeof(side), "%s.done", ref->id);
        unlinkat(q->dirfd, side, 0);
        snprintf(side, sizeof(side), "%s%s", ref->id, STATE_SUFFIX);
        unlinkat(q->dirfd, side, 0);
    }
    if (r < 0)
        return r;
    pool_return(q, ref->slot);
    return 0;
}

int queue_quarantine(const struct queue *q, const struct queue_ref *ref)
{
    char name[SLOT_NAME_MAX], to[ID_LEN + SLOT_NAME_MAX + 2];
    slot_name(name, ref->slot);
    snprintf(to, sizeof(to), "%s-%s", ref->id, name);
    int badfd = open(q->baddir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (badfd < 0)
        return -errno;
    int r = renameat(q->dirfd, name, badfd, to) < 0 ? -errno : 0;
    close(badfd);
    return r;
}
