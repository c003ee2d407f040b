/*
 * remote - the remote transport: SMTP sessions to other MTAs, on the
 * event loop, for the destination queues of queue/dest.h.
 *
 * A session for a domain looks up its MX records (RFC 5321 5.1): in order
 * of preference, in random order among equal ones; no MX record means
 * the domain itself (implicit MX); a null MX (RFC 7505, "MX 0 .") fails
 * every recipient at once with 556 5.1.10, a domain that does not exist
 * with 550 5.1.2. For each host, its A and then AAAA addresses are tried
 * on outbound_port (25) until one answers with a usable greeting and
 * EHLO; a refused connection, a timeout or a 4xx/5xx greeting or EHLO
 * moves on to the next address and then the next host. A host that is
 * us (our hostname, or a listener's address on that port) is skipped:
 * when only such hosts are left, the mail loops, and every recipient is
 * deferred with 451 4.4.6 rather than sent to ourselves.
 *
 * Then the session sends messages one after the other (smtp/outbound.h),
 * taking each from the destination's queue, and ends with QUIT when the
 * queue is empty or max_messages_per_connection is reached. STARTTLS is
 * used when offered (outbound_starttls): the server name is sent (SNI),
 * the certificate is checked against the system's CA store (or
 * outbound_ca_file) and the MX
 * host name, and the result is logged; a certificate that does not
 * verify does not stop delivery (opportunistic TLS, RFC 3207; the policy
 * that makes TLS mandatory is another layer). A failed handshake is
 * retried once on the same address without STARTTLS.
 *
 * Each recipient's outcome is logged, as event=delivery with queue, rcpt,
 * relay=host[ip]:port, tls, status (sent, deferred, bounced), code, dsn,
 * reply and delay, and handed back on its item: 2xx delivered, 5xx
 * failed, anything else deferred.
 *
 *   remote_new(ctx) / remote_free(r)
 *   remote_start(r, sess)     dests_ctx.start
 *   remote_stop(r)            end sessions that are not in a transaction
 */
#ifndef MW_DELIVER_REMOTE_H
#define MW_DELIVER_REMOTE_H

#include "conf/conf.h"
#include "core/buf.h"
#include "queue/dest.h"
#include "queue/queue.h"

struct event_base;
struct dns_resolver;
struct worker_pool;
struct remote;

struct remote_ctx {
    struct event_base *base;
    struct dns_resolver *dns;
    struct mw_config *const *conf;
    const struct queue *queue;    /* messages are read from here */
    struct worker_pool *pool;     /* ...on this pool */
    void (*idle)(void *arg);      /* a session has ended */
    void *idle_arg;
};

/* NULL with the reason in err (outbound_ca_file cannot be loaded). The
 * trust store is read once, at start. */
struct remote *remote_new(const struct remote_ctx *ctx, struct buf *err);
void remote_free(struct remote *r);
void remote_start(void *r, struct dest_session *sess);
void remote_stop(struct remote *r);

#endif
