#include "deliver/local.h"

#include <errno.h>

#include "deliver/maildir.h"
#include "msg/addr.h"

int local_deliver(const char *root, const struct mw_config *conf, const struct queue_msg *m,
                  size_t i, struct buf *path_out)
{
    struct buf path;
    buf_init(&path);
    buf_printf(&path, "<%s>", m->rcpts[i]);
    struct mail_addr a;
    size_t used;
    int r = addr_parse_path(buf_ptr(&path), buf_size(&path), ADDR_UTF8, &a, &used);
    buf_free(&path);
    if (r < 0)
        return -EINVAL;
    struct maildir_msg mm = {
        .return_path = m->from,
        .delivered_to = a.text,
        .domain = a.domain,
        .local = a.local,
        .folder = m->folder,
        .queue_id = m->ref.id,
        .seq = (unsigned)i,
        .arrival = m->arrival,
        .body = m->body,
        .body_len = m->body_len,
    };
    r = maildir_deliver(root, conf->hostname, &mm, MAILDIR_DIRSYNC_LATER, path_out);
    addr_free(&a);
    return r;
}
