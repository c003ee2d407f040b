/*
 * conf - the configuration, loaded once into an immutable struct.
 *
 * conf_load() parses a libConfuse file (or, with path NULL, the embedded
 * default text, through the same code) and validates every value. On error
 * it returns -1 and writes "file:line: what is wrong" lines into err; the
 * caller keeps whatever configuration it had. A loaded config is never
 * modified; a reload builds a new one and swaps the pointer. Sessions hold
 * a reference (conf_ref/conf_unref) so an old config lives until its last
 * session ends.
 *
 * Every key is documented in docs/config.md.
 */
#ifndef MW_CONF_CONF_H
#define MW_CONF_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/cidr.h"

enum mw_tls_mode {
    MW_TLS_NONE,              /* plaintext only */
    MW_TLS_STARTTLS,          /* offered, not required (port 25) */
    MW_TLS_STARTTLS_REQUIRED, /* required before mail commands (submission) */
    MW_TLS_IMPLICIT,          /* TLS from the first byte (RFC 8314) */
};

struct mw_listen {
    char *name;
    char *address;
    unsigned port;
    enum mw_tls_mode tls;
    bool auth;                /* offer SMTP AUTH (only ever inside TLS) */
};

/* user ADDRESS { senders = {...} }: the envelope and header From addresses
 * an authenticated user may use. "a@b" is one address, "@b" any address
 * at domain b. A user may always use its own address. */
struct mw_grant {
    char *user;               /* lower case */
    char **senders;           /* lower case */
    size_t nsenders;
};

/* One certificate section: one or more cert/key pairs (e.g. RSA and ECDSA)
 * served for the names their certificates carry. */
struct mw_cert {
    char *name;
    char **cert_files;
    char **key_files;
    size_t npairs;
};

/* dkim_sign NAME { domain selector key_file }: one signing key. Several
 * sections for one domain sign with each (RSA + Ed25519 dual signing). */
struct mw_dkim_key {
    char *name;
    char *domain;             /* lower case */
    char *selector;
    char *key_file;
};

struct mw_config {
    unsigned refs;
    char *source;            /* file name, or "(default)" */
    char *hostname;
    char *data_dir;
    char **local_domains;    /* lower case */
    size_t nlocal;
    uint64_t max_message_size;
    unsigned max_line_length;
    unsigned max_recipients;
    unsigned max_errors;
    unsigned command_timeout;
    unsigned data_timeout;
    unsigned max_connections;
    unsigned max_connections_per_ip;
    unsigned retry_min;
    unsigned retry_max;
    unsigned max_queue_lifetime;      /* seconds; then the message bounces */
    unsigned delay_warning_time;      /* seconds; 0: no delay warning */
    unsigned max_connections_per_destination;
    unsigned max_outbound_connections;
    unsigned max_messages_per_connection;
    unsigned outbound_port;           /* the port remote MX hosts are tried on */
    bool outbound_starttls;           /* STARTTLS when the peer offers it */
    bool reject_null_mx_sender;       /* MAIL FROM a null-MX domain: 550 5.7.27 */
    char *outbound_ca_file;
    char *relayhost_host;             /* smarthost: every remote recipient goes there; NULL: MX */
    unsigned relayhost_port;
    char *relayhost_user;             /* "": no AUTH */
    char *relayhost_password_file;           /* CAs for checking MX certificates; "": the system's */
    unsigned smtp_connect_timeout;
    unsigned smtp_timeouts[6];        /* greeting, MAIL, RCPT, DATA, data block, final dot */
    unsigned workers;
    struct mw_listen *listens;
    size_t nlisten;
    struct mw_cert *certs;    /* first is the default; none: self-signed */
    size_t ncert;
    /* dns { } */
    char *dns_zone_file;      /* "": use the resolver below */
    char **dns_forwarders;    /* none: the system's resolv.conf */
    size_t ndns_forwarders;
    char *dns_trust_anchor_file;
    char **dns_trust_anchors;
    size_t ndns_trust_anchors;
    /* SPF policy at MAIL FROM */
    bool spf_reject_fail;
    bool spf_temperror_defer;
    unsigned spf_timeout;     /* seconds for all of one check's lookups */
    unsigned dkim_timeout;    /* seconds for all of one message's DKIM key lookups */
    /* submission and access control */
    char *users_file;         /* "": <data_dir>/users */
    struct cidr *relay_networks;
    size_t nrelay_networks;
    unsigned auth_failures;   /* failed AUTHs per IP or account before back-off */
    unsigned auth_backoff;    /* first back-off in seconds, doubled per failure */
    unsigned auth_backoff_max;
    unsigned ipv6_prefix_length;  /* IPv6 clients are counted per /N for the limits */
    bool sender_header_match; /* authenticated mail: header From must be granted too */
    unsigned max_connection_rate; /* new connections per minute per IP; 0: no limit */
    unsigned max_message_rate;    /* messages per minute per authenticated user; 0: no limit */
    struct mw_grant *grants;
    size_t ngrants;
    struct mw_dkim_key *dkim_keys;
    size_t ndkim_keys;
    /* DMARC on inbound mail (not on authenticated submissions) */
    bool dmarc_enforce;           /* p=reject refuses, p=quarantine files in .Junk */
    bool dmarc_reject_bad_from;   /* no / several From, several mailboxes: 550 5.6.0 */
    char **dmarc_trusted_domains; /* From domains never refused or quarantined */
    size_t ndmarc_trusted_domains;
    struct cidr *dmarc_trusted_networks;
    size_t ndmarc_trusted_networks;
    uint64_t dmarc_pct_seed;      /* 0: random at start */
    bool dmarc_reports;           /* keep rows for aggregate reports */
    char *dmarc_report_org;       /* "": hostname */
    char *dmarc_report_email;     /* "": postmaster@hostname */
    unsigned dmarc_report_interval; /* seconds between aggregate reports; 0: never */
};

/* path NULL: the embedded default. */
int conf_load(const char *path, struct mw_config **out, struct buf *err);
struct mw_config *conf_ref(struct mw_config *c);
void conf_unref(struct mw_config *c);
bool conf_is_local_domain(const struct mw_config *c, const char *domain);
/* May authenticated user `user` use the address local@domain as sender? */
bool conf_sender_allowed(const struct mw_config *c, const char *user, const char *local,
                         const char *domain);
const char *conf_default_text(void);
/* libConfuse reports its errors about cfg into err, each as
 * "file:line: what\n", until conf_errors_end(). Both configuration files
 * (the daemon's and mailwarden send's) go through this; one parse at a
 * time, as the sink is process-wide. */
struct cfg_t;
void conf_errors_begin(struct cfg_t *cfg, struct buf *err);
void conf_errors_end(void);
/* The system's host name in lower case if it is a valid domain name, else
 * "localhost"; the caller frees it. */
char *conf_system_hostname(void);
const char *conf_tls_mode_name(enum mw_tls_mode m);

#endif
