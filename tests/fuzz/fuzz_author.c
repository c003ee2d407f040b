/*
 * Differential fuzzing of who a message is from (msg/author.h) against
 * every consumer of the header, so that no input can give two of them two
 * different authors:
 *   - DMARC evaluates exactly the domain msg_author() found, and only when
 *     msg_author() found exactly one readable mailbox;
 *   - a naive reader, the kind a sloppy mail reader is (every line that is
 *     not a continuation line, and the first line even if it starts with
 *     white space, whose start is "from" in any case and then a colon after
 *     any white space), never sees a From that msg_author() did not count:
 *     when msg_author() says OK, the naive reader counts one From;
 *   - DKIM's field split (what h= selects from) has the same fields with
 *     the same names as msg_next_field();
 *   - after authres_strip_ours(), no Authentication-Results field with our
 *     authserv-id is left, in any spelling.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/idna.h"
#include "core/xmalloc.h"
#include "dkim/dkim_int.h"
#include "dmarc/dmarc.h"
#include "fuzz.h"
#include "msg/authres.h"
#include "msg/author.h"

static bool wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* Lines up to the first empty one that look like "FrOm \t :" */
static size_t naive_from_count(const char *m, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n;) {
        const char *lf = memchr(m + i, '\n', n - i);
        size_t end = lf ? (size_t)(lf - m) : n, e = end;
        if (e > i && m[e - 1] == '\r')
            e--;
        if (e == i)
            break;
        size_t k = i;
        while (i == 0 && k < e && wsp(m[k]))   /* a continuation of nothing */
            k++;
        if ((i == 0 || !wsp(m[i])) && e - k >= 4 && strncasecmp(m + k, "from", 4) == 0) {
            k += 4;
            while (k < e && wsp(m[k]))
                k++;
            if (k < e && m[k] == ':')
                count++;
        }
        i = end + 1;
    }
    return count;
}

static void check_dmarc(const char *m, size_t n, const struct msg_author *a)
{
    struct dmarc_request req = { .msg = m, .len = n };
    struct dmarc_eval *e = dmarc_eval_new(&req);
    const struct dmarc_outcome *o = dmarc_eval_outcome(e);
    bool author_ok = a->status == MSG_AUTHOR_OK;
    if (o->from == DMARC_FROM_OK || o->from == DMARC_FROM_NO_DOMAIN) {
        if (!author_ok)
            abort();
    } else if (author_ok) {
        abort();
    }
    if (o->from == DMARC_FROM_OK) {
        /* the evaluated domain is the author's (as A-labels), up to a final dot */
        char *ace = idna_to_ascii(a->mb[0].domain);
        if (ace == NULL)
            abort();
        size_t dl = strlen(o->from_domain), al = strlen(ace);
        if (al > 0 && ace[al - 1] == '.')
            al--;
        if (dl != al || strncasecmp(o->from_domain, ace, al) != 0)
            abort();
        xfree(ace);
    }
    dmarc_eval_free(e);
}

static void check_dkim_split(const char *m, size_t n)
{
    struct dkim_hdr *h;
    size_t body, nh = dkim_msg_split(m, n, &h, &body), pos = 0, k = 0;
    struct msg_field f;
    int r;
    while ((r = msg_next_field(m, n, &pos, &f)) != 0) {
        if (k >= nh || h[k].name_len != (r > 0 ? f.name_len : 0) ||
            (r > 0 && h[k].p != f.name))
            abort();
        k++;
    }
    if (k != nh || body != msg_body_offset(m, n))
        abort();
    xfree(h);
}

static void check_authres_strip(const char *m, size_t n)
{
    struct buf out = { 0 };
    const char *s = m;
    size_t len = n;
    if (authres_strip_ours(m, n, "mx.test", &out) > 0) {
        s = buf_ptr(&out);
        len = buf_size(&out);
    }
    size_t pos = 0;
    struct msg_field f;
    int r;
    while ((r = msg_next_field(s, len, &pos, &f)) != 0) {
        if (r < 0 || !msg_field_is(&f, "Authentication-Results"))
            continue;
        size_t i = 0;
        while (i < f.value_len && (wsp(f.value[i]) || f.value[i] == '\r' || f.value[i] == '\n'))
            i++;
        if (f.value_len - i >= 7 && strncasecmp(f.value + i, "mx.test", 7) == 0 &&
            (f.value_len - i == 7 || f.value[i + 7] == ';' || wsp(f.value[i + 7])))
            abort();
    }
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *m = (const char *)data;
    struct msg_author a;
    enum msg_author_status st = msg_author(m, size, &a);
    if (st != a.status || (st == MSG_AUTHOR_OK && a.count != 1))
        abort();
    if (st == MSG_AUTHOR_OK && naive_from_count(m, size) != 1)
        abort();
    check_dmarc(m, size, &a);
    msg_author_free(&a);
    check_dkim_split(m, size);
    check_authres_strip(m, size);
    return 0;
}

const struct fuzz_seed fuzz_seeds[] = {
    SEED("From: x@attacker.example\r\nFrom : ceo@victim.test\r\n\r\nbody"),
    SEED("From\t: ceo@victim.test\r\nTo: a@b\r\n\r\n"),
    SEED(" From: ceo@victim.test\r\nFrom: x@attacker.example\r\n\r\n"),
    SEED("From: <@victim.test:x@attacker.example>\r\nSender: a@b\r\nSender: c@d\r\n\r\n"),
    SEED("From: =?utf-8?q?ceo=40victim.test?=@attacker.example (c)\r\n\r\n"),
    SEED("Authentication-Results : MX.TEST.; dmarc=pass\r\nFrom: a@b.example\r\n\r\n"),
    SEED("Authentication-Results: \"mx.test\"; x=y\r\nauthentication-results:mx.test\r\n\r\n"),
    SEED("FROM: \"a@b\"@c.example\nfrom:\n d@e.example\n\n"),
    SEED("From: CEO <ceo@B\xc3\xbc" "cher.example>\r\n\r\n"),
    SEED("From: ceo@xn--bcher-kva.example\r\n\r\n"),
};
const size_t fuzz_nseeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
