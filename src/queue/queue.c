#include "queue/queue.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/str.h"
#include "core/xmalloc.h"

#define QUEUE_MAGIC "MWQ 1\n"
#define QUEUE_END "\nMWQ END\n"
#define QUEUE_MAX_FILE ((size_t)2200 * 1024 * 1024)

static char *join(const char *a, const char *b)
{
    struct buf p;
    buf_init(&p);
    buf_printf(&p, "%s/%s", a, b);
    return p.data;
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

int queue_open(struct queue *q, const char *data_dir)
{
    memset(q, 0, sizeof(*q));
    q->dir = join(data_dir, "queue");
    q->tmpdir = join(q->dir, "tmp");
    q->baddir = join(q->dir, "corrupt");
    int r;
    if ((r = fs_mkdirs(q->tmpdir, 0700)) < 0 || (r = fs_mkdirs(q->baddir, 0700)) < 0)
        return r;
    /* Files left in tmp/ were never acknowledged: remove them. */
    DIR *d = opendir(q->tmpdir);
    if (d == NULL)
        return -errno;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
    return 0;
}

void queue_close(struct queue *q)
{
    xfree(q->dir);
    xfree(q->tmpdir);
    xfree(q->baddir);
    memset(q, 0, sizeof(*q));
}

int queue_commit(const struct queue *q, const char *id, const struct queue_env *env,
                 const struct iovec *msg, int msgcnt)
{
    size_t total = 0;
    for (int i = 0; i < msgcnt; i++)
        total += msg[i].iov_len;

    struct buf head;
    struct iovec iov[QUEUE_MAX_IOV + 2];
    if (msgcnt < 0 || msgcnt > QUEUE_MAX_IOV)
        return -EINVAL;
    buf_init(&head);
    buf_printf(&head, QUEUE_MAGIC "id %s\nsession %s\ntime %lld\nfrom %s\n", id, env->session,
               (long long)env->arrival, env->from);
    if (env->spf)
        buf_printf(&head, "spf %s\n", env->spf);
    if (env->folder) {
        if (!queue_folder_ok(env->folder, strlen(env->folder))) {
            buf_free(&head);
            return -EINVAL;
        }
        buf_printf(&head, "folder %s\n", env->folder);
    }
    for (size_t i = 0; i < env->nrcpt; i++)
        buf_printf(&head, "rcpt %s\n", env->rcpts[i]);
    buf_printf(&head, "size %zu\n\n", total);
    iov[0].iov_base = head.data;
    iov[0].iov_len = buf_size(&head);
    for (int i = 0; i < msgcnt; i++)
        iov[i + 1] = msg[i];
    iov[msgcnt + 1].iov_base = (void *)QUEUE_END;
    iov[msgcnt + 1].iov_len = sizeof(QUEUE_END) - 1;
    int r = fs_commit_file(q->tmpdir, q->dir, id, iov, msgcnt + 2, 0600, 0);
    buf_free(&head);
    return r;
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

static int parse_file(struct queue_msg *m)
{
    const char *p = buf_ptr(&m->raw), *end = p + buf_size(&m->raw);
    const char *line;
    size_t len;
    bool have_size = false, have_from = false, have_id = false;
    uint64_t size = 0;

    if ((size_t)(end - p) < sizeof(QUEUE_MAGIC) - 1 || memcmp(p, QUEUE_MAGIC, sizeof(QUEUE_MAGIC) - 1))
        return -EBADMSG;
    p += sizeof(QUEUE_MAGIC) - 1;
    for (;;) {
        if (!next_line(&p, end, &line, &len))
            return -EBADMSG;
        if (len == 0)
            break;
        uint64_t v;
        if (len > 3 && memcmp(line, "id ", 3) == 0) {
            if (len - 3 != ID_LEN || memcmp(line + 3, m->id, ID_LEN) != 0)
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
        } else if (len > 5 && memcmp(line, "size ", 5) == 0) {
            if (str_to_u64(line + 5, len - 5, QUEUE_MAX_FILE, &size) < 0)
                return -EBADMSG;
            have_size = true;
        } else {
            return -EBADMSG;
        }
    }
    if (!have_id || !have_from || !have_size || m->nrcpt == 0)
        return -EBADMSG;
    if ((uint64_t)(end - p) != size + sizeof(QUEUE_END) - 1 ||
        memcmp(p + size, QUEUE_END, sizeof(QUEUE_END) - 1) != 0)
        return -EBADMSG;
    m->body = p;
    m->body_len = (size_t)size;
    m->done = xcalloc(m->nrcpt, sizeof(bool));
    return 0;
}

static void read_done(const struct queue *q, struct queue_msg *m)
{
    char name[ID_LEN + 8];
    snprintf(name, sizeof(name), "%s.done", m->id);
    char *path = join(q->dir, name);
    struct buf b;
    buf_init(&b);
    if (fs_read_file(path, 1 << 20, &b) == 0) {
        const char *p = buf_ptr(&b), *end = p + buf_size(&b), *line;
        size_t len;
        while (next_line(&p, end, &line, &len)) {
            uint64_t idx;
            if (str_to_u64(line, len, m->nrcpt - 1, &idx) == 0)
                m->done[idx] = true;
        }
    }
    buf_free(&b);
    xfree(path);
}

int queue_read(const struct queue *q, const char *id, struct queue_msg *m)
{
    memset(m, 0, sizeof(*m));
    if (!id_valid(id, strlen(id)))
        return -EINVAL;
    memcpy(m->id, id, ID_LEN + 1);
    char *path = join(q->dir, id);
    int r = fs_read_file(path, QUEUE_MAX_FILE, &m->raw);
    xfree(path);
    if (r == 0)
        r = parse_file(m);
    if (r == 0)
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
    xfree(m->done);
    buf_free(&m->raw);
    memset(m, 0, sizeof(*m));
}

int queue_mark_done(const struct queue *q, const char *id, size_t rcpt_index)
{
    char name[ID_LEN + 8];
    snprintf(name, sizeof(name), "%s.done", id);
    char *path = join(q->dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    xfree(path);
    if (fd < 0)
        return -errno;
    char line[32];
    int n = snprintf(line, sizeof(line), "%zu\n", rcpt_index);
    int r = fs_write_all(fd, line, (size_t)n);
    close(fd);
    return r;
}

int queue_remove(const struct queue *q, const char *id)
{
    char name[ID_LEN + 8];
    char *path = join(q->dir, id);
    int r = unlink(path) < 0 ? -errno : 0;
    xfree(path);
    snprintf(name, sizeof(name), "%s.done", id);
    path = join(q->dir, name);
    unlink(path);
    xfree(path);
    return r;
}

int queue_quarantine(const struct queue *q, const char *id)
{
    char *from = join(q->dir, id), *to = join(q->baddir, id);
    int r = rename(from, to) < 0 ? -errno : 0;
    xfree(from);
    xfree(to);
    return r;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, ID_LEN);
}

int queue_list(const struct queue *q, char (**ids)[ID_LEN + 1], size_t *n)
{
    DIR *d = opendir(q->dir);
    if (d == NULL)
        return -errno;
    size_t count = 0, cap = 0;
    char (*list)[ID_LEN + 1] = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!id_valid(e->d_name, strlen(e->d_name)))
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            list = xreallocarray(list, cap, sizeof(*list));
        }
        memcpy(list[count++], e->d_name, ID_LEN + 1);
    }
    closedir(d);
    if (count)
        qsort(list, count, sizeof(*list), cmp_id);
    *ids = list;
    *n = count;
    return 0;
}
