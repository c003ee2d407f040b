/*
 * send_msg.c - command line, message and header handling for sendmail;
 * the contract is in send_msg.h.
 *
 * Recipients from headers are read by a small address-list scanner here,
 * not msg/header's mailbox-list parser, on purpose: sendmail -t must take
 * unqualified addresses ("To: root") and complete them, which an RFC 5322
 * parser rightly refuses. Every address it yields is then checked by
 * addr_parse_path, the same RFC 5321 parser the server uses.
 */
#include "cli/send_msg.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "core/base64.h"
#include "core/log.h"
#include "core/str.h"
#include "core/xmalloc.h"
#include "msg/addr.h"

/* ------------------------------------------------------------ arguments */

/* Options that take an argument (attached or the next word). */
static const char opts_arg[] = "fFrCBobNRVXLOhpAd";
/* Options that take none and can be grouped (-ti). */
static const char opts_flag[] = "tivnmUGq";

__attribute__((format(printf, 2, 3)))
static int usage_error(struct buf *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(err, fmt, ap);
    va_end(ap);
    return -1;
}

/* One option letter with its argument (NULL for flags). */
static int apply_opt(struct send_args *a, char opt, const char *arg, struct buf *err)
{
    switch (opt) {
    case 'f': case 'r': a->sender = arg; break;
    case 'F': a->fullname = arg; break;
    case 'C': a->config = arg; break;
    case 't': a->extract = true; break;
    case 'i': a->ignore_dots = true; break;
    case 'v': a->verbose = true; break;
    case 'o':  /* -oi; -oem, -oee, -odi, -odb ... are sendmail knobs we do not need */
        if (strcmp(arg, "i") == 0)
            a->ignore_dots = true;
        break;
    case 'b':
        if (strcmp(arg, "m") != 0)
            return usage_error(err, "-b%s is not supported (only -bm, read mail from standard "
                               "input and send it)", arg);
        break;
    case 'q':
        return usage_error(err, "-q: there is no local queue to run");
    default:  /* -B type, -N dsn, -R ret, -V envid, -X log, -L, -O, -h, -p, -A, -d, -n, -m,
               * -U, -G: accepted and ignored */
        break;
    }
    return 0;
}

/* The options in argv[*i] (and maybe argv[*i + 1]). */
static int parse_cluster(int argc, char **argv, int *i, struct send_args *a, struct buf *err)
{
    const char *s = argv[*i] + 1;
    while (*s != '\0') {
        char opt = *s++;
        if (strchr(opts_arg, opt) != NULL) {
            const char *arg = s;
            if (*arg == '\0') {
                if (*i + 1 >= argc)
                    return usage_error(err, "option -%c needs an argument", opt);
                arg = argv[++*i];
            }
            return apply_opt(a, opt, arg, err);
        }
        if (strchr(opts_flag, opt) == NULL)
            return usage_error(err, "unknown option -%c", opt);
        if (apply_opt(a, opt, NULL, err) < 0)
            return -1;
    }
    return 0;
}

int send_parse_args(int argc, char **argv, struct send_args *a, struct buf *err)
{
    memset(a, 0, sizeof(*a));
    a->rcpts = xcalloc((size_t)(argc > 0 ? argc : 1), sizeof(*a->rcpts));
    bool options = true;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (options && strcmp(s, "--") == 0) {
            options = false;
        } else if (options && strcmp(s, "--help") == 0) {
            return 1;
        } else if (options && s[0] == '-' && s[1] == '-') {
            return usage_error(err, "unknown option %s", s);
        } else if (options && strcmp(s, "-") == 0) {
            return usage_error(err, "unexpected argument \"-\"");
        } else if (options && s[0] == '-') {
            if (parse_cluster(argc, argv, &i, a, err) < 0)
                return -1;
        } else {
            a->rcpts[a->nrcpts++] = s;
        }
    }
    return 0;
}

void send_args_free(struct send_args *a)
{
    xfree(a->rcpts);
    a->rcpts = NULL;
    a->nrcpts = 0;
}

/* -------------------------------------------------------------- message */

struct reader {
    struct buf *out;
    size_t line_start;
    bool cr;               /* the last byte was a CR (its CRLF is out) */
    bool dot_ends;
    bool done;
};

static void end_line(struct reader *r)
{
    struct buf *o = r->out;
    if (r->dot_ends && o->len - r->line_start == 1 && o->data[r->line_start] == '.') {
        o->len = r->line_start;
        o->data[o->len] = '\0';
        r->done = true;
        return;
    }
    buf_append(o, "\r\n", 2);
    r->line_start = o->len;
}

static int take_chunk(struct reader *r, const char *p, size_t n)
{
    size_t run = 0;  /* plain bytes not yet appended, ending at p[i] */
    for (size_t i = 0; i < n && !r->done; i++) {
        char ch = p[i];
        if (ch != '\r' && ch != '\n' && ch != '\0') {
            r->cr = false;
            run++;
            continue;
        }
        buf_append(r->out, p + i - run, run);
        run = 0;
        if (ch == '\0')
            return SEND_READ_ENUL;
        if (ch == '\n' && r->cr) {
            r->cr = false;  /* the LF of a CRLF */
            continue;
        }
        end_line(r);
        r->cr = ch == '\r';
    }
    if (!r->done)
        buf_append(r->out, p + n - run, run);
    return 0;
}

int send_read_message(FILE *in, bool dot_ends, size_t max, struct buf *out)
{
    struct reader r = { .out = out, .line_start = buf_size(out), .dot_ends = dot_ends };
    char chunk[65536];
    size_t n;
    while (!r.done && (n = fread(chunk, 1, sizeof(chunk), in)) > 0) {
        int rc = take_chunk(&r, chunk, n);
        if (rc < 0)
            return rc;
        if (out->len > max)
            return SEND_READ_ETOOBIG;
    }
    if (!r.done && ferror(in))
        return SEND_READ_EIO;
    if (!r.done && out->len > r.line_start)
        end_line(&r);  /* a last line without its newline */
    return out->len > max ? SEND_READ_ETOOBIG : 0;
}

/* ----------------------------------------------------------- recipients */

static bool parses(const char *s, size_t n, struct mail_addr *a)
{
    size_t used = 0;
    if (addr_parse_path(s, n, ADDR_UTF8, a, &used) < 0)
        return false;
    if (used != n || a->domain[0] == '\0') {
        addr_free(a);
        return false;
    }
    return true;
}

int send_qualify(const char *addr, const char *domain, struct buf *out, struct buf *err)
{
    struct buf path = { 0 };
    struct mail_addr a;
    buf_printf(&path, "<%s>", addr);
    bool ok = parses(buf_ptr(&path), buf_size(&path), &a);
    if (!ok && strchr(addr, '@') == NULL) {  /* "root": complete it */
        buf_reset(&path);
        buf_printf(&path, "<%s@%s>", addr, domain);
        ok = parses(buf_ptr(&path), buf_size(&path), &a);
    }
    buf_free(&path);
    if (!ok) {
        buf_append_str(err, "not a valid e-mail address: ");
        log_escape(err, addr, strlen(addr));
        return -1;
    }
    buf_append_str(out, a.text);
    addr_free(&a);
    return 0;
}

static bool same_addr(const char *a, const char *b)
{
    const char *x = strrchr(a, '@'), *y = strrchr(b, '@');
    if (x == NULL || y == NULL || x - a != y - b)
        return false;
    return memcmp(a, b, (size_t)(x - a)) == 0 && strcasecmp(x + 1, y + 1) == 0;
}

static void rcpt_add(struct send_rcpts *r, const char *addr)
{
    for (size_t i = 0; i < r->n; i++)
        if (same_addr(r->v[i], addr))
            return;
    r->v = xreallocarray(r->v, r->n + 1, sizeof(*r->v));
    r->v[r->n++] = xstrdup(addr);
}

void send_rcpts_free(struct send_rcpts *r)
{
    for (size_t i = 0; i < r->n; i++)
        xfree(r->v[i]);
    xfree(r->v);
    r->v = NULL;
    r->n = 0;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The scanner's state for one item of an address list. */
struct scan {
    struct buf phrase;     /* text outside <...> */
    struct buf angle;      /* inside <...> */
    bool in_angle, had_angle, quoted, literal;
    int depth;             /* comment nesting */
};

static int scan_item(struct scan *sc, const char *domain, struct send_rcpts *r, struct buf *err)
{
    const struct buf *b = sc->had_angle ? &sc->angle : &sc->phrase;
    const char *p = buf_ptr(b);
    size_t n = buf_size(b);
    while (n > 0 && is_ws(p[0]))
        p++, n--;
    while (n > 0 && is_ws(p[n - 1]))
        n--;
    int rc = 0;
    if (n > 0) {
        char *addr = xmemdup0(p, n);
        struct buf q = { 0 };
        rc = send_qualify(addr, domain, &q, err);
        if (rc == 0)
            rcpt_add(r, buf_ptr(&q));
        buf_free(&q);
        xfree(addr);
    }
    buf_reset(&sc->phrase);
    buf_reset(&sc->angle);
    sc->had_angle = false;
    return rc;
}

/* A character outside quotes, comments and literals. */
static int scan_special(struct scan *sc, char ch, const char *domain, struct send_rcpts *r,
                        struct buf *err)
{
    struct buf *cur = sc->in_angle ? &sc->angle : &sc->phrase;
    switch (ch) {
    case '"': sc->quoted = true; buf_append_byte(cur, ch); return 0;
    case '[': sc->literal = true; buf_append_byte(cur, ch); return 0;
    case '(': sc->depth = 1; buf_append_byte(&sc->phrase, ' '); return 0;
    case '<':
        if (sc->in_angle || sc->had_angle)
            break;
        sc->in_angle = sc->had_angle = true;
        return 0;
    case '>':
        if (!sc->in_angle)
            break;
        sc->in_angle = false;
        return 0;
    case ',': case ';':
        if (sc->in_angle)
            break;
        return scan_item(sc, domain, r, err);
    case ':':
        if (sc->in_angle) {           /* a source route <@a:b@c> */
            buf_append_byte(cur, ch);
        } else if (!sc->had_angle) {  /* "group:" starts a group */
            buf_reset(&sc->phrase);
        } else {
            break;
        }
        return 0;
    default:
        if (sc->in_angle ? !is_ws(ch) : !sc->had_angle)
            buf_append_byte(cur, ch);  /* text after <...> is ignored */
        return 0;
    }
    buf_printf(err, "unexpected '%c' in an address list", ch);
    return -1;
}

int send_add_rcpts(const char *text, size_t n, const char *domain, struct send_rcpts *r,
                   struct buf *err)
{
    struct scan sc = { 0 };
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char ch = text[i];
        struct buf *cur = sc.in_angle ? &sc.angle : &sc.phrase;
        bool escaped = ch == '\\' && i + 1 < n;
        if (sc.depth > 0) {
            i += escaped;
            sc.depth += ch == '(' ? 1 : ch == ')' ? -1 : 0;
        } else if (sc.quoted || sc.literal) {
            buf_append_byte(cur, ch);
            if (escaped)
                buf_append_byte(cur, text[++i]);
            else if (ch == (sc.quoted ? '"' : ']'))
                sc.quoted = sc.literal = false;
        } else {
            rc = scan_special(&sc, ch, domain, r, err);
        }
    }
    if (rc == 0 && (sc.quoted || sc.literal || sc.depth > 0 || sc.in_angle)) {
        buf_append_str(err, "unbalanced quote, comment, [ or < in an address list");
        rc = -1;
    }
    if (rc == 0)
        rc = scan_item(&sc, domain, r, err);
    buf_free(&sc.phrase);
    buf_free(&sc.angle);
    return rc;
}

/* --------------------------------------------------------------- header */

/* Length of the header field at pos (its first line plus continuation
 * lines, with the final CRLF); 0 if the line there is not a field. */
static size_t field_len(const char *m, size_t n, size_t pos)
{
    size_t i = pos;
    while (i < n && (unsigned char)m[i] > 32 && (unsigned char)m[i] < 127 && m[i] != ':')
        i++;
    if (i == pos || i >= n || m[i] != ':')
        return 0;
    for (;;) {
        const char *lf = memchr(m + i, '\n', n - i);
        i = lf ? (size_t)(lf - m) + 1 : n;
        if (i >= n || (m[i] != ' ' && m[i] != '\t'))
            return i - pos;
    }
}

static bool name_is(const char *f, size_t len, const char *name)
{
    size_t k = strlen(name);
    return len > k && f[k] == ':' && str_ieq(f, k, name);
}

struct seen {
    bool from, date, msgid;
};

/* One field: copied to out, or dropped (Bcc); recipients taken with -t. */
static int take_field(const char *f, size_t len, const struct send_header_opts *o,
                      struct seen *s, struct buf *out, struct send_rcpts *rcpts, struct buf *err)
{
    s->from |= name_is(f, len, "From");
    s->date |= name_is(f, len, "Date");
    s->msgid |= name_is(f, len, "Message-ID");
    bool bcc = name_is(f, len, "Bcc");
    if (o->extract && (bcc || name_is(f, len, "To") || name_is(f, len, "Cc"))) {
        const char *colon = memchr(f, ':', len);
        size_t skip = (size_t)(colon - f) + 1;
        if (send_add_rcpts(colon + 1, len - skip, o->domain, rcpts, err) < 0) {
            struct buf why = { 0 };
            buf_printf(&why, "%.*s header: %s", (int)(skip - 1), f, buf_ptr(err));
            buf_reset(err);
            buf_append(err, buf_ptr(&why), buf_size(&why));
            buf_free(&why);
            return -1;
        }
    }
    if (!bcc)
        buf_append(out, f, len);
    return 0;
}

int send_prepare(const char *msg, size_t n, const struct send_header_opts *o, struct buf *out,
                 struct send_rcpts *rcpts, struct buf *err)
{
    size_t pos = 0, body;
    if (n >= 5 && memcmp(msg, "From ", 5) == 0) {  /* an mbox "From " line */
        const char *lf = memchr(msg, '\n', n);
        pos = lf ? (size_t)(lf - msg) + 1 : n;
    }
    struct seen seen = { 0 };
    for (;;) {
        if (n - pos >= 2 && msg[pos] == '\r' && msg[pos + 1] == '\n') {
            body = pos + 2;
            break;
        }
        size_t len = pos < n ? field_len(msg, n, pos) : 0;
        if (len == 0) {  /* end of message, or a line that is no field: body */
            body = pos;
            break;
        }
        if (take_field(msg + pos, len, o, &seen, out, rcpts, err) < 0)
            return -1;
        pos += len;
    }
    if (!seen.from) {
        buf_append_str(out, "From: ");
        send_format_from(o->fullname, o->from_addr, out);
        buf_append_str(out, "\r\n");
    }
    if (!seen.date)
        buf_printf(out, "Date: %s\r\n", o->date);
    if (!seen.msgid)
        buf_printf(out, "Message-ID: %s\r\n", o->msgid);
    buf_append_str(out, "\r\n");
    buf_append(out, msg + body, n - body);
    return 0;
}

/* ------------------------------------------------------- Date and From */

void send_format_date(time_t t, struct buf *out)
{
    static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    if (localtime_r(&t, &tm) == NULL)
        gmtime_r(&t, &tm);
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    buf_printf(out, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday % 7],
               tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
               tm.tm_sec, sign, off / 60, off % 60);
}

static bool atext_or_space(unsigned char c)
{
    return ascii_alpha((char)c) || ascii_digit((char)c) || c == ' ' ||
           (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* UTF-8 name as RFC 2047 encoded words of at most 75 characters. */
static void encoded_words(const char *s, size_t n, struct buf *out)
{
    for (size_t i = 0; i < n;) {
        size_t k = n - i < 45 ? n - i : 45;
        while (k > 1 && i + k < n && ((unsigned char)s[i + k] & 0xC0) == 0x80)
            k--;
        if (i > 0)
            buf_append_str(out, "\r\n ");
        buf_append_str(out, "=?UTF-8?B?");
        b64_encode(s + i, k, out);
        buf_append_str(out, "?=");
        i += k;
    }
}

void send_format_from(const char *name, const char *addr, struct buf *out)
{
    char *clean = xstrdup(name ? name : "");
    bool plain = true, ascii = true;
    for (char *p = clean; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f)
            *p = ' ', c = ' ';  /* no header injection through -F */
        ascii &= c < 0x80;
        plain &= atext_or_space(c);
    }
    size_t n = strlen(clean), b = 0;
    while (b < n && clean[b] == ' ')
        b++;
    while (n > b && clean[n - 1] == ' ')
        n--;
    if (n == b) {
        buf_append_str(out, addr);
    } else if (!ascii && str_utf8_valid(clean + b, n - b)) {
        encoded_words(clean + b, n - b, out);
        buf_printf(out, " <%s>", addr);
    } else if (plain) {
        buf_printf(out, "%.*s <%s>", (int)(n - b), clean + b, addr);
    } else {
        buf_append_byte(out, '"');
        for (size_t i = b; i < n; i++) {
            unsigned char c = (unsigned char)clean[i];
            if (c == '"' || c == '\\')
                buf_append_byte(out, '\\');
            buf_append_byte(out, c >= 0x80 ? '?' : (char)c);
        }
        buf_printf(out, "\" <%s>", addr);
    }
    xfree(clean);
}
