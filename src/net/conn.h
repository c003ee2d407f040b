/*
 * conn - one client connection: a bufferevent feeding an SMTP session.
 * Private to net/.
 */
#ifndef MW_NET_CONN_H
#define MW_NET_CONN_H

#include <stdbool.h>
#include <time.h>

#include "core/id.h"
#include "net/server.h"
#include "smtp/session.h"

struct bufferevent;
struct sockaddr;
struct tls_server;
typedef struct ssl_st SSL;

struct conn {
    struct server *srv;
    struct conn *prev, *next;
    struct bufferevent *bev;
    struct smtp_session *sess;
    struct mw_config *conf;    /* the config this session started with */
    char id[ID_LEN + 1];
    char ip[64];               /* printable client address */
    char key[72];              /* what its limits count under: the IPv4 address,
                                  or the IPv6 /ipv6_prefix_length (cidr.h) */
    char literal[72];          /* [1.2.3.4] or [IPv6:...] */
    unsigned port;
    const char *listener;
    enum mw_tls_mode tls_mode;
    struct tls_server *tls;    /* the certificate set this conn uses */
    char *tls_info;            /* "TLSv1.3 with cipher ..." once secured */
    bool tls_switch;           /* STARTTLS accepted: switch at the next pump */
    bool in_ask;               /* inside the session's ask hook */
    /* SPF for the current transaction (sender.c) */
    int spf_result, spf_helo_result;  /* enum spf_result */
    char *spf_domain;
    char *spf_header;          /* Received-SPF field, CRLF-terminated */
    unsigned jobs;             /* workers/lookups holding a pointer to this conn */
    bool dead;                 /* peer gone: free when the job completes */
    time_t started;
    unsigned messages;
};

/* Send session output, adjust reading and timeouts, close if done. */
void conn_pump(struct conn *c);
/* A job that referred to c has finished with it (frees a dead conn). */
void conn_job_done(struct conn *c);

/* Forget the SPF result of the last transaction. */
void conn_spf_reset(struct conn *c);
/* Accept a connection from a listener; 421 4.7.0 if over a limit. */
void conn_accept(struct server *srv, int fd, const struct sockaddr *sa, int salen,
                 const char *listener, enum mw_tls_mode mode);
/* 421 to every session not in a commit (shutdown). */
void conn_shutdown_all(struct server *srv);

/* sender.c: SPF at MAIL, answered asynchronously. */
void sender_check(struct conn *c);

#endif
