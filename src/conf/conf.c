#include "conf/conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <confuse.h>

#include "core/idna.h"
#include "core/str.h"
#include "core/xmalloc.h"

/* The embedded default: what `mailwarden serve` runs with no -c. */
static const char default_text[] =
    "# mailwarden embedded default configuration\n"
    "local_domains = { \"localhost\" }\n"
    "data_dir = \"./var\"\n"
    "listen smtp {\n"
    "    address = \"127.0.0.1\"\n"
    "    port = 2525\n"
    "    tls = \"starttls\"\n"
    "}\n"
    "listen submission {\n"
    "    address = \"127.0.0.1\"\n"
    "    port = 5870\n"
    "    tls = \"starttls-required\"\n"
    "    auth = true\n"
    "}\n"
    "listen submissions {\n"
    "    address = \"127.0.0.1\"\n"
    "    port = 4650\n"
    "    tls = \"implicit\"\n"
    "    auth = true\n"
    "}\n";

static const char *const tls_mode_names[] = { "none", "starttls", "starttls-required", "implicit" };

const char *conf_tls_mode_name(enum mw_tls_mode m)
{
    return (unsigned)m < 4 ? tls_mode_names[m] : "?";
}

static int tls_mode_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, tls_mode_names[i]) == 0)
            return i;
    return -1;
}

const char *conf_default_text(void)
{
    return default_text;
}

static struct buf *err_sink;

__attribute__((format(printf, 2, 0)))
static void conf_errfunc(cfg_t *cfg, const char *fmt, va_list ap)
{
    if (err_sink == NULL)
        return;
    if (cfg && cfg->filename)
        buf_printf(err_sink, "%s:%d: ", cfg->filename, cfg->line);
    buf_vprintf(err_sink, fmt, ap);
    buf_append_byte(err_sink, '\n');
}

void conf_errors_begin(cfg_t *cfg, struct buf *err)
{
    err_sink = err;
    cfg_set_error_function(cfg, conf_errfunc);
}

void conf_errors_end(void)
{
    err_sink = NULL;
}

static int check_range(cfg_t *cfg, cfg_opt_t *opt, long lo, long hi)
{
    for (unsigned i = 0; i < cfg_opt_size(opt); i++) {
        long v = cfg_opt_getnint(opt, i);
        if (v < lo || v > hi) {
            cfg_error(cfg, "%s = %ld is out of range (%ld..%ld)", cfg_opt_name(opt), v, lo, hi);
            return -1;
        }
    }
    return 0;
}

static int v_positive(cfg_t *cfg, cfg_opt_t *opt) { return check_range(cfg, opt, 1, 1000000000L); }
static int v_port(cfg_t *cfg, cfg_opt_t *opt) { return check_range(cfg, opt, 1, 65535); }
static int v_line(cfg_t *cfg, cfg_opt_t *opt) { return check_range(cfg, opt, 512, 65536); }
static int v_rcpt(cfg_t *cfg, cfg_opt_t *opt) { return check_range(cfg, opt, 100, 100000); }
static int v_size(cfg_t *cfg, cfg_opt_t *opt) { return check_range(cfg, opt, 1024, 2147483647L); }
static int v_workers(cfg_t *cfg, cfg_opt_t *opt) { return check_range(cfg, opt, 1, 64); }
static int v_v6_prefix(cfg_t *cfg, cfg_opt_t *opt) { return check_range(cfg, opt, 16, 128); }

static bool domain_ok(const char *d)
{
    size_t n = strlen(d), label = 0;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = d[i];
        if (c == '.') {
            if (label == 0 || d[i - 1] == '-')
                return false;
            label = 0;
        } else if (ascii_alpha(c) || ascii_digit(c) || (c == '-' && label > 0)) {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0 && d[n - 1] != '-';
}

/* "host", "host:port", "[host]:port" or "[IPv6]:port": 0 with the parts,
 * or -1. */
static int relayhost_split(const char *v, char *host, size_t hostsz, unsigned *port)
{
    *port = 25;
    const char *h = v, *end;
    if (v[0] == '[') {
        end = strchr(v, ']');
        if (end == NULL)
            return -1;
        h = v + 1;
        const char *rest = end + 1;
        if (*rest == ':') {
            char *e;
            long p = strtol(rest + 1, &e, 10);
            if (*e || p < 1 || p > 65535)
                return -1;
            *port = (unsigned)p;
        } else if (*rest) {
            return -1;
        }
    } else {
        end = strchr(v, ':');
        if (end == NULL)
            end = v + strlen(v);
        else {
            char *e;
            long p = strtol(end + 1, &e, 10);
            if (*e || p < 1 || p > 65535 || strchr(end + 1, ':'))
                return -1;
            *port = (unsigned)p;
        }
    }
    size_t n = (size_t)(end - h);
    if (n == 0 || n >= hostsz)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    return 0;
}

static int v_relayhost(cfg_t *cfg, cfg_opt_t *opt)
{
    const char *v = cfg_opt_getnstr(opt, 0);
    char host[256];
    unsigned port;
    if (v == NULL || v[0] == '\0')
        return 0;
    if (relayhost_split(v, host, sizeof(host), &port) < 0 ||
        (!domain_ok(host) && strspn(host, "0123456789abcdefABCDEF:.") != strlen(host))) {
        cfg_error(cfg, "relayhost %s: not host, host:port or [host]:port", v);
        return -1;
    }
    return 0;
}

static int v_domain(cfg_t *cfg, cfg_opt_t *opt)
{
    for (unsigned i = 0; i < cfg_opt_size(opt); i++) {
        const char *d = cfg_opt_getnstr(opt, i);
        if (d == NULL)
            continue;
        if (!domain_ok(d)) {
            cfg_error(cfg, "%s: \"%s\" is not a valid domain name", cfg_opt_name(opt), d);
            return -1;
        }
    }
    return 0;
}

/* local_domains: U-labels welcome, as long as their A-label form is a name
 * (addresses are matched in that form either way). */
static int v_local_domain(cfg_t *cfg, cfg_opt_t *opt)
{
    for (unsigned i = 0; i < cfg_opt_size(opt); i++) {
        const char *d = cfg_opt_getnstr(opt, i);
        char *ace = d != NULL ? idna_to_ascii(d) : NULL;
        bool ok = d == NULL || (ace != NULL && domain_ok(ace));
        xfree(ace);
        if (!ok) {
            cfg_error(cfg, "%s: \"%s\" is not a valid domain name", cfg_opt_name(opt), d);
            return -1;
        }
    }
    return 0;
}

static int v_nonempty(cfg_t *cfg, cfg_opt_t *opt)
{
    for (unsigned i = 0; i < cfg_opt_size(opt); i++) {
        const char *d = cfg_opt_getnstr(opt, i);
        if (d == NULL || d[0] == '\0') {
            cfg_error(cfg, "%s must not be empty", cfg_opt_name(opt));
            return -1;
        }
    }
    return 0;
}

static int v_address(cfg_t *cfg, cfg_opt_t *opt)
{
    const char *a = cfg_opt_getnstr(opt, 0);
    unsigned char tmp[16];
    if (a == NULL || (inet_pton(AF_INET, a, tmp) != 1 && inet_pton(AF_INET6, a, tmp) != 1)) {
        cfg_error(cfg, "address: \"%s\" is not an IPv4 or IPv6 address", a ? a : "");
        return -1;
    }
    return 0;
}

static int v_tls_mode(cfg_t *cfg, cfg_opt_t *opt)
{
    const char *m = cfg_opt_getnstr(opt, 0);
    if (m == NULL || tls_mode_parse(m) < 0) {
        cfg_error(cfg, "tls = \"%s\": expected none, starttls, starttls-required or implicit",
                  m ? m : "");
        return -1;
    }
    return 0;
}

static int v_files(cfg_t *cfg, cfg_opt_t *opt)
{
    if (cfg_opt_size(opt) == 0) {
        cfg_error(cfg, "%s must name at least one file", cfg_opt_name(opt));
        return -1;
    }
    return v_nonempty(cfg, opt);
}

/* A certificate section: the lists pair up by index. */
static int v_cert_section(cfg_t *cfg, cfg_opt_t *opt)
{
    for (unsigned i = 0; i < cfg_opt_size(opt); i++) {
        cfg_t *sec = cfg_opt_getnsec(opt, i);
        if (cfg_size(sec, "cert_file") != cfg_size(sec, "key_file")) {
            cfg_error(cfg, "certificate %s: cert_file has %u entries but key_file has %u",
                      cfg_title(sec), cfg_size(sec, "cert_file"), cfg_size(sec, "key_file"));
            return -1;
        }
        if (cfg_size(sec, "cert_file") == 0) {
            cfg_error(cfg, "certificate %s: cert_file and key_file are required", cfg_title(sec));
            return -1;
        }
    }
    return 0;
}

static int v_networks(cfg_t *cfg, cfg_opt_t *opt)
{
    for (unsigned i = 0; i < cfg_opt_size(opt); i++) {
        const char *s = cfg_opt_getnstr(opt, i);
        struct cidr net;
        if (s == NULL || cidr_parse(s, &net) < 0) {
            cfg_error(cfg, "%s: \"%s\" is not an address or network (e.g. 192.0.2.0/24)",
                      cfg_opt_name(opt), s ? s : "");
            return -1;
        }
    }
    return 0;
}

/* "local@domain" or "@domain": the forms a user or a sender grant takes. */
static bool grant_ok(const char *s, bool allow_domain)
{
    const char *at = strrchr(s, '@');
    if (at == NULL || (at == s && !allow_domain) || at - s > 64)
        return false;
    for (const char *p = s; p < at; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '@')
            return false;
    return domain_ok(at + 1);
}

static int v_senders(cfg_t *cfg, cfg_opt_t *opt)
{
    for (unsigned i = 0; i < cfg_opt_size(opt); i++) {
        const char *s = cfg_opt_getnstr(opt, i);
        if (s == NULL || !grant_ok(s, true)) {
            cfg_error(cfg, "senders: \"%s\" is not an address or @domain", s ? s : "");
            return -1;
        }
    }
    return 0;
}

static int v_user_section(cfg_t *cfg, cfg_opt_t *opt)
{
    for (unsigned i = 0; i < cfg_opt_size(opt); i++) {
        const char *t = cfg_title(cfg_opt_getnsec(opt, i));
        if (t == NULL || !grant_ok(t, false)) {
            cfg_error(cfg, "user \"%s\": the title must be the user's address", t ? t : "");
            return -1;
        }
    }
    return 0;
}

/* A selector: one or more dot-separated labels (RFC 6376 3.1). */
static bool selector_ok(const char *s)
{
    return s[0] != '\0' && domain_ok(s);
}

static int v_dkim_section(cfg_t *cfg, cfg_opt_t *opt)
{
    for (unsigned i = 0; i < cfg_opt_size(opt); i++) {
        cfg_t *sec = cfg_opt_getnsec(opt, i);
        const char *d = cfg_getstr(sec, "domain"), *s = cfg_getstr(sec, "selector");
        const char *k = cfg_getstr(sec, "key_file");
        const char *why = NULL;
        if (d == NULL || !domain_ok(d))
            why = "domain must be a valid domain name";
        else if (s == NULL || !selector_ok(s))
            why = "selector must be one or more DNS labels";
        else if (k == NULL || k[0] == '\0')
            why = "key_file is required";
        if (why) {
            cfg_error(cfg, "dkim_sign %s: %s", cfg_title(sec), why);
            return -1;
        }
    }
    return 0;
}

static int v_unsigned(cfg_t *cfg, cfg_opt_t *opt) { return check_range(cfg, opt, 0, 1000000000L); }

static cfg_opt_t listen_opts[] = {
    CFG_STR("address", "127.0.0.1", CFGF_NONE),
    CFG_INT("port", 25, CFGF_NONE),
    CFG_STR("tls", "starttls", CFGF_NONE),
    CFG_BOOL("auth", cfg_false, CFGF_NONE),
    CFG_END(),
};

static cfg_opt_t cert_opts[] = {
    CFG_STR_LIST("cert_file", NULL, CFGF_NONE),
    CFG_STR_LIST("key_file", NULL, CFGF_NONE),
    CFG_END(),
};

static cfg_opt_t dns_opts[] = {
    CFG_STR("zone_file", "", CFGF_NONE),
    CFG_STR_LIST("forwarders", "{}", CFGF_NONE),
    CFG_STR("trust_anchor_file", "/usr/share/dns/root.key", CFGF_NONE),
    CFG_STR_LIST("trust_anchors", "{}", CFGF_NONE),
    CFG_END(),
};

static cfg_opt_t user_opts[] = {
    CFG_STR_LIST("senders", "{}", CFGF_NONE),
    CFG_END(),
};

static cfg_opt_t dkim_sign_opts[] = {
    CFG_STR("domain", NULL, CFGF_NONE),
    CFG_STR("selector", NULL, CFGF_NONE),
    CFG_STR("key_file", NULL, CFGF_NONE),
    CFG_END(),
};

static cfg_opt_t root_opts[] = {
    CFG_STR("hostname", NULL, CFGF_NONE),
    CFG_STR("data_dir", "./var", CFGF_NONE),
    CFG_STR_LIST("local_domains", "{localhost}", CFGF_NONE),
    CFG_INT("max_message_size", 36700160, CFGF_NONE),
    CFG_INT("max_line_length", 2048, CFGF_NONE),
    CFG_INT("max_recipients", 1000, CFGF_NONE),
    CFG_INT("max_errors", 20, CFGF_NONE),
    CFG_INT("command_timeout", 300, CFGF_NONE),
    CFG_INT("data_timeout", 600, CFGF_NONE),
    CFG_INT("max_connections", 1000, CFGF_NONE),
    CFG_INT("max_connections_per_ip", 50, CFGF_NONE),
    CFG_INT("retry_min", 60, CFGF_NONE),
    CFG_INT("retry_max", 3600, CFGF_NONE),
    CFG_INT("workers", 4, CFGF_NONE),
    CFG_INT("max_queue_lifetime", 432000, CFGF_NONE),
    CFG_INT("delay_warning_time", 14400, CFGF_NONE),
    CFG_INT("max_connections_per_destination", 20, CFGF_NONE),
    CFG_INT("max_outbound_connections", 100, CFGF_NONE),
    CFG_INT("max_messages_per_connection", 100, CFGF_NONE),
    CFG_INT("outbound_port", 25, CFGF_NONE),
    CFG_BOOL("outbound_starttls", cfg_true, CFGF_NONE),
    CFG_STR("outbound_ca_file", "", CFGF_NONE),
    CFG_STR("relayhost", "", CFGF_NONE),
    CFG_STR("relayhost_user", "", CFGF_NONE),
    CFG_STR("relayhost_password_file", "", CFGF_NONE),
    CFG_BOOL("reject_null_mx_sender", cfg_true, CFGF_NONE),
    CFG_INT("smtp_connect_timeout", 30, CFGF_NONE),
    CFG_INT("smtp_greeting_timeout", 300, CFGF_NONE),
    CFG_INT("smtp_mail_timeout", 300, CFGF_NONE),
    CFG_INT("smtp_rcpt_timeout", 300, CFGF_NONE),
    CFG_INT("smtp_data_init_timeout", 120, CFGF_NONE),
    CFG_INT("smtp_data_block_timeout", 180, CFGF_NONE),
    CFG_INT("smtp_data_done_timeout", 600, CFGF_NONE),
    CFG_SEC("listen", listen_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
    CFG_SEC("certificate", cert_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
    CFG_SEC("dns", dns_opts, CFGF_NONE),
    CFG_BOOL("spf_reject_fail", cfg_false, CFGF_NONE),
    CFG_BOOL("spf_temperror_defer", cfg_false, CFGF_NONE),
    CFG_INT("spf_timeout", 20, CFGF_NONE),
    CFG_INT("dkim_timeout", 20, CFGF_NONE),
    CFG_STR("users_file", "", CFGF_NONE),
    CFG_STR_LIST("relay_networks", "{}", CFGF_NONE),
    CFG_INT("auth_failures", 5, CFGF_NONE),
    CFG_INT("auth_backoff", 2, CFGF_NONE),
    CFG_INT("auth_backoff_max", 3600, CFGF_NONE),
    CFG_INT("ipv6_prefix_length", 64, CFGF_NONE),
    CFG_BOOL("sender_header_match", cfg_true, CFGF_NONE),
    CFG_INT("max_connection_rate", 120, CFGF_NONE),
    CFG_INT("max_message_rate", 120, CFGF_NONE),
    CFG_SEC("user", user_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
    CFG_SEC("dkim_sign", dkim_sign_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
    CFG_BOOL("dmarc_enforce", cfg_true, CFGF_NONE),
    CFG_BOOL("dmarc_reject_bad_from", cfg_true, CFGF_NONE),
    CFG_STR_LIST("dmarc_trusted_domains", "{}", CFGF_NONE),
    CFG_STR_LIST("dmarc_trusted_networks", "{}", CFGF_NONE),
    CFG_INT("dmarc_pct_seed", 0, CFGF_NONE),
    CFG_BOOL("dmarc_reports", cfg_true, CFGF_NONE),
    CFG_STR("dmarc_report_org", "", CFGF_NONE),
    CFG_STR("dmarc_report_email", "", CFGF_NONE),
    CFG_INT("dmarc_report_interval", 86400, CFGF_NONE),
    CFG_END(),
};

static void install_validators(cfg_t *cfg)
{
    static const char *const positive[] = {
        "max_errors", "command_timeout", "data_timeout", "max_connections",
        "max_connections_per_ip", "retry_min", "retry_max", "spf_timeout", "dkim_timeout",
        "max_queue_lifetime", "max_connections_per_destination", "max_outbound_connections",
        "max_messages_per_connection", "smtp_connect_timeout", "smtp_greeting_timeout",
        "smtp_mail_timeout", "smtp_rcpt_timeout", "smtp_data_init_timeout",
        "smtp_data_block_timeout", "smtp_data_done_timeout",
    };
    for (size_t i = 0; i < sizeof(positive) / sizeof(positive[0]); i++)
        cfg_set_validate_func(cfg, positive[i], v_positive);
    cfg_set_validate_func(cfg, "max_line_length", v_line);
    cfg_set_validate_func(cfg, "max_recipients", v_rcpt);
    cfg_set_validate_func(cfg, "max_message_size", v_size);
    cfg_set_validate_func(cfg, "workers", v_workers);
    cfg_set_validate_func(cfg, "local_domains", v_local_domain);
    cfg_set_validate_func(cfg, "hostname", v_domain);
    cfg_set_validate_func(cfg, "data_dir", v_nonempty);
    cfg_set_validate_func(cfg, "listen|port", v_port);
    cfg_set_validate_func(cfg, "outbound_port", v_port);
    cfg_set_validate_func(cfg, "relayhost", v_relayhost);
    cfg_set_validate_func(cfg, "delay_warning_time", v_unsigned);
    cfg_set_validate_func(cfg, "listen|address", v_address);
    cfg_set_validate_func(cfg, "listen|tls", v_tls_mode);
    cfg_set_validate_func(cfg, "certificate|cert_file", v_files);
    cfg_set_validate_func(cfg, "certificate|key_file", v_files);
    cfg_set_validate_func(cfg, "certificate", v_cert_section);
    cfg_set_validate_func(cfg, "relay_networks", v_networks);
    cfg_set_validate_func(cfg, "auth_failures", v_positive);
    cfg_set_validate_func(cfg, "auth_backoff", v_positive);
    cfg_set_validate_func(cfg, "auth_backoff_max", v_positive);
    cfg_set_validate_func(cfg, "ipv6_prefix_length", v_v6_prefix);
    cfg_set_validate_func(cfg, "max_connection_rate", v_unsigned);
    cfg_set_validate_func(cfg, "max_message_rate", v_unsigned);
    cfg_set_validate_func(cfg, "user|senders", v_senders);
    cfg_set_validate_func(cfg, "user", v_user_section);
    cfg_set_validate_func(cfg, "dkim_sign", v_dkim_section);
    cfg_set_validate_func(cfg, "dmarc_trusted_domains", v_domain);
    cfg_set_validate_func(cfg, "dmarc_trusted_networks", v_networks);
    cfg_set_validate_func(cfg, "dmarc_pct_seed", v_unsigned);
    cfg_set_validate_func(cfg, "dmarc_report_interval", v_unsigned);
}

char *conf_system_hostname(void)
{
    char h[256];
    if (gethostname(h, sizeof(h)) < 0 || h[0] == '\0' || !domain_ok(h))
        return xstrdup("localhost");
    h[sizeof(h) - 1] = '\0';
    str_lower(h);
    return xstrdup(h);
}

/* A list option as a NULL-terminated array of copies; *n its length. */
static char **copy_strlist(cfg_t *cfg, const char *name, size_t *n)
{
    *n = cfg_size(cfg, name);
    char **v = xcalloc(*n + 1, sizeof(char *));
    for (size_t i = 0; i < *n; i++)
        v[i] = xstrdup(cfg_getnstr(cfg, name, (unsigned)i));
    return v;
}

/* Free what copy_strlist made. */
static void free_strlist(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        xfree(v[i]);
    xfree(v);
}

static void lower_all(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        str_lower(v[i]);
}

static void build_dmarc(cfg_t *cfg, struct mw_config *c)
{
    c->dmarc_enforce = cfg_getbool(cfg, "dmarc_enforce");
    c->dmarc_reject_bad_from = cfg_getbool(cfg, "dmarc_reject_bad_from");
    c->dmarc_trusted_domains = copy_strlist(cfg, "dmarc_trusted_domains",
                                            &c->ndmarc_trusted_domains);
    lower_all(c->dmarc_trusted_domains, c->ndmarc_trusted_domains);
    c->ndmarc_trusted_networks = cfg_size(cfg, "dmarc_trusted_networks");
    c->dmarc_trusted_networks = xcalloc(c->ndmarc_trusted_networks + 1, sizeof(struct cidr));
    for (size_t i = 0; i < c->ndmarc_trusted_networks; i++)
        (void)cidr_parse(cfg_getnstr(cfg, "dmarc_trusted_networks", (unsigned)i),
                         &c->dmarc_trusted_networks[i]);
    c->dmarc_pct_seed = (uint64_t)cfg_getint(cfg, "dmarc_pct_seed");
    c->dmarc_reports = cfg_getbool(cfg, "dmarc_reports");
    c->dmarc_report_org = xstrdup(cfg_getstr(cfg, "dmarc_report_org"));
    c->dmarc_report_email = xstrdup(cfg_getstr(cfg, "dmarc_report_email"));
    c->dmarc_report_interval = (unsigned)cfg_getint(cfg, "dmarc_report_interval");
}

static void build_access(cfg_t *cfg, struct mw_config *c)
{
    c->users_file = xstrdup(cfg_getstr(cfg, "users_file"));
    c->nrelay_networks = cfg_size(cfg, "relay_networks");
    c->relay_networks = xcalloc(c->nrelay_networks + 1, sizeof(*c->relay_networks));
    for (size_t i = 0; i < c->nrelay_networks; i++)
        (void)cidr_parse(cfg_getnstr(cfg, "relay_networks", (unsigned)i), &c->relay_networks[i]);
    c->auth_failures = (unsigned)cfg_getint(cfg, "auth_failures");
    c->auth_backoff = (unsigned)cfg_getint(cfg, "auth_backoff");
    c->auth_backoff_max = (unsigned)cfg_getint(cfg, "auth_backoff_max");
    c->ipv6_prefix_length = (unsigned)cfg_getint(cfg, "ipv6_prefix_length");
    c->sender_header_match = cfg_getbool(cfg, "sender_header_match");
    c->max_connection_rate = (unsigned)cfg_getint(cfg, "max_connection_rate");
    c->max_message_rate = (unsigned)cfg_getint(cfg, "max_message_rate");
    c->ngrants = cfg_size(cfg, "user");
    c->grants = xcalloc(c->ngrants + 1, sizeof(*c->grants));
    for (size_t i = 0; i < c->ngrants; i++) {
        cfg_t *u = cfg_getnsec(cfg, "user", (unsigned)i);
        c->grants[i].user = xstrdup(cfg_title(u));
        str_lower(c->grants[i].user);
        c->grants[i].senders = copy_strlist(u, "senders", &c->grants[i].nsenders);
        lower_all(c->grants[i].senders, c->grants[i].nsenders);
    }
    build_dmarc(cfg, c);
    c->ndkim_keys = cfg_size(cfg, "dkim_sign");
    c->dkim_keys = xcalloc(c->ndkim_keys + 1, sizeof(*c->dkim_keys));
    for (size_t i = 0; i < c->ndkim_keys; i++) {
        cfg_t *k = cfg_getnsec(cfg, "dkim_sign", (unsigned)i);
        c->dkim_keys[i].name = xstrdup(cfg_title(k));
        c->dkim_keys[i].domain = xstrdup(cfg_getstr(k, "domain"));
        str_lower(c->dkim_keys[i].domain);
        c->dkim_keys[i].selector = xstrdup(cfg_getstr(k, "selector"));
        c->dkim_keys[i].key_file = xstrdup(cfg_getstr(k, "key_file"));
    }
}

static void build(cfg_t *cfg, const char *source, struct mw_config *c)
{
    c->refs = 1;
    c->source = xstrdup(source);
    const char *h = cfg_getstr(cfg, "hostname");
    c->hostname = h ? xstrdup(h) : conf_system_hostname();
    str_lower(c->hostname);
    c->data_dir = xstrdup(cfg_getstr(cfg, "data_dir"));
    c->local_domains = copy_strlist(cfg, "local_domains", &c->nlocal);
    lower_all(c->local_domains, c->nlocal);
    c->max_message_size = (uint64_t)cfg_getint(cfg, "max_message_size");
    c->max_line_length = (unsigned)cfg_getint(cfg, "max_line_length");
    c->max_recipients = (unsigned)cfg_getint(cfg, "max_recipients");
    c->max_errors = (unsigned)cfg_getint(cfg, "max_errors");
    c->command_timeout = (unsigned)cfg_getint(cfg, "command_timeout");
    c->data_timeout = (unsigned)cfg_getint(cfg, "data_timeout");
    c->max_connections = (unsigned)cfg_getint(cfg, "max_connections");
    c->max_connections_per_ip = (unsigned)cfg_getint(cfg, "max_connections_per_ip");
    c->retry_min = (unsigned)cfg_getint(cfg, "retry_min");
    c->retry_max = (unsigned)cfg_getint(cfg, "retry_max");
    c->workers = (unsigned)cfg_getint(cfg, "workers");
    c->max_queue_lifetime = (unsigned)cfg_getint(cfg, "max_queue_lifetime");
    c->delay_warning_time = (unsigned)cfg_getint(cfg, "delay_warning_time");
    c->max_connections_per_destination = (unsigned)cfg_getint(cfg, "max_connections_per_destination");
    c->max_outbound_connections = (unsigned)cfg_getint(cfg, "max_outbound_connections");
    c->max_messages_per_connection = (unsigned)cfg_getint(cfg, "max_messages_per_connection");
    c->outbound_port = (unsigned)cfg_getint(cfg, "outbound_port");
    c->outbound_starttls = cfg_getbool(cfg, "outbound_starttls");
    c->outbound_ca_file = xstrdup(cfg_getstr(cfg, "outbound_ca_file"));
    c->reject_null_mx_sender = cfg_getbool(cfg, "reject_null_mx_sender");
    const char *rh = cfg_getstr(cfg, "relayhost");
    if (rh && rh[0]) {
        char host[256];
        unsigned port = 25;
        if (relayhost_split(rh, host, sizeof(host), &port) == 0) {
            c->relayhost_host = xstrdup(host);
            c->relayhost_port = port;
        }
    }
    c->relayhost_user = xstrdup(cfg_getstr(cfg, "relayhost_user"));
    c->relayhost_password_file = xstrdup(cfg_getstr(cfg, "relayhost_password_file"));
    c->smtp_connect_timeout = (unsigned)cfg_getint(cfg, "smtp_connect_timeout");
    c->smtp_timeouts[0] = (unsigned)cfg_getint(cfg, "smtp_greeting_timeout");
    c->smtp_timeouts[1] = (unsigned)cfg_getint(cfg, "smtp_mail_timeout");
    c->smtp_timeouts[2] = (unsigned)cfg_getint(cfg, "smtp_rcpt_timeout");
    c->smtp_timeouts[3] = (unsigned)cfg_getint(cfg, "smtp_data_init_timeout");
    c->smtp_timeouts[4] = (unsigned)cfg_getint(cfg, "smtp_data_block_timeout");
    c->smtp_timeouts[5] = (unsigned)cfg_getint(cfg, "smtp_data_done_timeout");
    c->nlisten = cfg_size(cfg, "listen");
    c->listens = xcalloc(c->nlisten ? c->nlisten : 1, sizeof(*c->listens));
    for (size_t i = 0; i < c->nlisten; i++) {
        cfg_t *l = cfg_getnsec(cfg, "listen", (unsigned)i);
        c->listens[i].name = xstrdup(cfg_title(l));
        c->listens[i].address = xstrdup(cfg_getstr(l, "address"));
        c->listens[i].port = (unsigned)cfg_getint(l, "port");
        c->listens[i].tls = (enum mw_tls_mode)tls_mode_parse(cfg_getstr(l, "tls"));
        c->listens[i].auth = cfg_getbool(l, "auth");
    }
    cfg_t *dns = cfg_getsec(cfg, "dns");
    c->dns_zone_file = xstrdup(cfg_getstr(dns, "zone_file"));
    c->dns_trust_anchor_file = xstrdup(cfg_getstr(dns, "trust_anchor_file"));
    c->dns_forwarders = copy_strlist(dns, "forwarders", &c->ndns_forwarders);
    c->dns_trust_anchors = copy_strlist(dns, "trust_anchors", &c->ndns_trust_anchors);
    c->spf_reject_fail = cfg_getbool(cfg, "spf_reject_fail");
    c->spf_temperror_defer = cfg_getbool(cfg, "spf_temperror_defer");
    c->spf_timeout = (unsigned)cfg_getint(cfg, "spf_timeout");
    c->dkim_timeout = (unsigned)cfg_getint(cfg, "dkim_timeout");
    build_access(cfg, c);
    c->ncert = cfg_size(cfg, "certificate");
    c->certs = xcalloc(c->ncert ? c->ncert : 1, sizeof(*c->certs));
    for (size_t i = 0; i < c->ncert; i++) {
        cfg_t *sec = cfg_getnsec(cfg, "certificate", (unsigned)i);
        struct mw_cert *mc = &c->certs[i];
        mc->name = xstrdup(cfg_title(sec));
        mc->npairs = cfg_size(sec, "cert_file");
        mc->cert_files = xcalloc(mc->npairs, sizeof(char *));
        mc->key_files = xcalloc(mc->npairs, sizeof(char *));
        for (size_t k = 0; k < mc->npairs; k++) {
            mc->cert_files[k] = xstrdup(cfg_getnstr(sec, "cert_file", (unsigned)k));
            mc->key_files[k] = xstrdup(cfg_getnstr(sec, "key_file", (unsigned)k));
        }
    }
}

int conf_load(const char *path, struct mw_config **out, struct buf *err)
{
    cfg_t *cfg = cfg_init(root_opts, CFGF_NONE);
    if (cfg == NULL) {
        buf_printf(err, "%s: cannot initialise the configuration parser\n", path ? path : "(default)");
        return -1;
    }
    conf_errors_begin(cfg, err);
    install_validators(cfg);

    int r;
    size_t before = buf_size(err);
    if (path) {
        errno = 0;
        r = cfg_parse(cfg, path);
        if (r == CFG_FILE_ERROR)
            buf_printf(err, "%s:0: cannot read file: %s\n", path,
                       errno ? strerror(errno) : "unknown error");
    } else {
        r = cfg_parse_buf(cfg, default_text);
    }
    if (r == CFG_SUCCESS) {
        long lo = cfg_getint(cfg, "retry_min"), hi = cfg_getint(cfg, "retry_max");
        if (hi < lo) {
            buf_printf(err, "%s:0: retry_max (%ld) is below retry_min (%ld)\n",
                       path ? path : "(default)", hi, lo);
            r = CFG_PARSE_ERROR;
        } else if ((cfg_getstr(cfg, "relayhost_user")[0] != '\0') !=
                   (cfg_getstr(cfg, "relayhost_password_file")[0] != '\0')) {
            buf_printf(err, "%s:0: relayhost_user and relayhost_password_file go together\n",
                       path ? path : "(default)");
            r = CFG_PARSE_ERROR;
        } else if (cfg_getstr(cfg, "relayhost_user")[0] != '\0' &&
                   cfg_getstr(cfg, "relayhost")[0] == '\0') {
            buf_printf(err, "%s:0: relayhost_user is set but relayhost is not\n",
                       path ? path : "(default)");
            r = CFG_PARSE_ERROR;
        } else if (cfg_size(cfg, "listen") == 0) {
            buf_printf(err, "%s:0: no listen section: the daemon would accept nothing\n",
                       path ? path : "(default)");
            r = CFG_PARSE_ERROR;
        }
    }
    if (r != CFG_SUCCESS && buf_size(err) == before)
        buf_printf(err, "%s:0: configuration error\n", path ? path : "(default)");
    if (r == CFG_SUCCESS) {
        struct mw_config *c = xcalloc(1, sizeof(*c));
        build(cfg, path ? path : "(default)", c);
        *out = c;
    }
    conf_errors_end();
    cfg_free(cfg);
    return r == CFG_SUCCESS ? 0 : -1;
}

struct mw_config *conf_ref(struct mw_config *c)
{
    c->refs++;
    return c;
}

void conf_unref(struct mw_config *c)
{
    if (c == NULL || --c->refs > 0)
        return;
    xfree(c->source);
    xfree(c->hostname);
    xfree(c->data_dir);
    free_strlist(c->local_domains, c->nlocal);
    for (size_t i = 0; i < c->nlisten; i++) {
        xfree(c->listens[i].name);
        xfree(c->listens[i].address);
    }
    xfree(c->listens);
    for (size_t i = 0; i < c->ncert; i++) {
        for (size_t k = 0; k < c->certs[i].npairs; k++) {
            xfree(c->certs[i].cert_files[k]);
            xfree(c->certs[i].key_files[k]);
        }
        xfree(c->certs[i].cert_files);
        xfree(c->certs[i].key_files);
        xfree(c->certs[i].name);
    }
    xfree(c->certs);
    xfree(c->outbound_ca_file);
    xfree(c->relayhost_host);
    xfree(c->relayhost_user);
    xfree(c->relayhost_password_file);
    xfree(c->dns_zone_file);
    xfree(c->dns_trust_anchor_file);
    free_strlist(c->dns_forwarders, c->ndns_forwarders);
    free_strlist(c->dns_trust_anchors, c->ndns_trust_anchors);
    xfree(c->users_file);
    xfree(c->relay_networks);
    for (size_t i = 0; i < c->ngrants; i++) {
        xfree(c->grants[i].user);
        free_strlist(c->grants[i].senders, c->grants[i].nsenders);
    }
    xfree(c->grants);
    for (size_t i = 0; i < c->ndkim_keys; i++) {
        xfree(c->dkim_keys[i].name);
        xfree(c->dkim_keys[i].domain);
        xfree(c->dkim_keys[i].selector);
        xfree(c->dkim_keys[i].key_file);
    }
    xfree(c->dkim_keys);
    free_strlist(c->dmarc_trusted_domains, c->ndmarc_trusted_domains);
    xfree(c->dmarc_trusted_networks);
    xfree(c->dmarc_report_org);
    xfree(c->dmarc_report_email);
    xfree(c);
}

/* One domain, written either way: U-labels are compared as their A-labels
 * (RFC 8616), so "bücher.example" is local when "xn--bcher-kva.example"
 * is configured; a name with an invalid U-label matches nothing. */
static bool same_domain(const char *a, const char *b)
{
    if (idna_is_ascii(a) && idna_is_ascii(b))
        return str_ieq(a, strlen(a), b);
    char *x = idna_to_ascii(a), *y = idna_to_ascii(b);
    bool same = x != NULL && y != NULL && strcmp(x, y) == 0;
    xfree(x);
    xfree(y);
    return same;
}

bool conf_is_local_domain(const struct mw_config *c, const char *domain)
{
    for (size_t i = 0; i < c->nlocal; i++)
        if (same_domain(domain, c->local_domains[i]))
            return true;
    return false;
}

static bool addr_is(const char *grant, const char *local, const char *domain)
{
    const char *at = strrchr(grant, '@');
    size_t llen = (size_t)(at - grant);
    if (!same_domain(domain, at + 1))
        return false;
    return llen == 0 || (strlen(local) == llen && strncasecmp(local, grant, llen) == 0);
}

bool conf_sender_allowed(const struct mw_config *c, const char *user, const char *local,
                         const char *domain)
{
    if (strchr(user, '@') && addr_is(user, local, domain))
        return true;
    for (size_t i = 0; i < c->ngrants; i++) {
        if (strcasecmp(c->grants[i].user, user) != 0)
            continue;
        for (size_t k = 0; k < c->grants[i].nsenders; k++)
            if (addr_is(c->grants[i].senders[k], local, domain))
                return true;
    }
    return false;
}
