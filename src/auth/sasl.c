/*
 * sasl.c - PLAIN and LOGIN, server side; see sasl.h.
 */
#include "auth/sasl.h"

#include <string.h>

#include "core/base64.h"
#include "core/str.h"
#include "core/xmalloc.h"

enum sasl_mech sasl_mech_by_name(const char *s, size_t n)
{
    if (str_ieq(s, n, "PLAIN"))
        return SASL_PLAIN;
    if (str_ieq(s, n, "LOGIN"))
        return SASL_LOGIN;
    return SASL_NONE;
}

const char *sasl_mech_name(enum sasl_mech m)
{
    return m == SASL_PLAIN ? "PLAIN" : m == SASL_LOGIN ? "LOGIN" : "-";
}

static void wipe_buf(struct buf *b)
{
    if (b->data)
        explicit_bzero(b->data, b->cap);
    buf_free(b);
}

/* Decode one response into b; "*" cancels. */
static enum sasl_status decode(const char *line, size_t n, struct buf *b)
{
    if (n == 1 && line[0] == '*')
        return SASL_CANCEL;
    if (n == 1 && line[0] == '=')
        return SASL_CONTINUE; /* the empty initial response */
    if (b64_decode(line, n, 0, b) < 0)
        return SASL_BAD_BASE64;
    return SASL_CONTINUE;
}

static bool field_ok(const char *p, size_t n)
{
    return n >= 1 && n <= SASL_MAX_FIELD && memchr(p, '\0', n) == NULL && str_utf8_valid(p, n);
}

/* [authzid] NUL authcid NUL passwd */
static enum sasl_status plain_message(struct sasl *x, const struct buf *m)
{
    const char *p = buf_ptr(m);
    size_t n = buf_size(m);
    const char *z1 = memchr(p, '\0', n);
    if (z1 == NULL)
        return SASL_BAD_MESSAGE;
    const char *user = z1 + 1;
    const char *z2 = memchr(user, '\0', n - (size_t)(user - p));
    if (z2 == NULL)
        return SASL_BAD_MESSAGE;
    size_t zlen = (size_t)(z1 - p), ulen = (size_t)(z2 - user);
    const char *pass = z2 + 1;
    size_t plen = n - (size_t)(pass - p);
    if (!field_ok(user, ulen) || !field_ok(pass, plen))
        return SASL_BAD_MESSAGE;
    if (zlen > 0 && (zlen != ulen || memcmp(p, user, ulen) != 0))
        return SASL_BAD_MESSAGE;
    x->user = xmemdup0(user, ulen);
    x->pass = xmemdup0(pass, plen);
    return SASL_DONE;
}

static enum sasl_status login_field(struct sasl *x, const struct buf *m, struct buf *chal)
{
    if (!field_ok(buf_ptr(m), buf_size(m)))
        return SASL_BAD_MESSAGE;
    if (x->step == 0) {
        x->user = xmemdup0(buf_ptr(m), buf_size(m));
        x->step = 1;
        b64_encode("Password:", 9, chal);
        return SASL_CONTINUE;
    }
    x->pass = xmemdup0(buf_ptr(m), buf_size(m));
    return SASL_DONE;
}

static enum sasl_status respond(struct sasl *x, const char *line, size_t n, struct buf *chal)
{
    struct buf m;
    buf_init(&m);
    enum sasl_status st = decode(line, n, &m);
    if (st == SASL_CONTINUE)
        st = x->mech == SASL_PLAIN ? plain_message(x, &m) : login_field(x, &m, chal);
    wipe_buf(&m);
    return st;
}

enum sasl_status sasl_start(struct sasl *x, enum sasl_mech m, const char *ir, size_t n,
                            struct buf *chal)
{
    sasl_clear(x);
    x->mech = m;
    if (ir != NULL)
        return respond(x, ir, n, chal);
    if (m == SASL_LOGIN)
        b64_encode("Username:", 9, chal);
    return SASL_CONTINUE; /* PLAIN: an empty challenge */
}

enum sasl_status sasl_step(struct sasl *x, const char *line, size_t n, struct buf *chal)
{
    return respond(x, line, n, chal);
}

static void wipe_str(char **s)
{
    if (*s) {
        explicit_bzero(*s, strlen(*s));
        xfree(*s);
        *s = NULL;
    }
}

void sasl_clear(struct sasl *x)
{
    wipe_str(&x->user);
    wipe_str(&x->pass);
    x->mech = SASL_NONE;
    x->step = 0;
}
