/*
 * local - the local transport: recipient i of a queued message into its
 * Maildir under <root> (deliver/maildir.h), on a worker thread.
 *
 *   local_deliver(root, conf, m, i, path_out)   0, or -errno (-EINVAL: the
 *                                               queued address does not parse)
 */
#ifndef MW_DELIVER_LOCAL_H
#define MW_DELIVER_LOCAL_H

#include <stddef.h>

#include "conf/conf.h"
#include "core/buf.h"
#include "queue/queue.h"

int local_deliver(const char *root, const struct mw_config *conf, const struct queue_msg *m,
                  size_t i, struct buf *path_out);

#endif
