/*
 * Fuzz the RFC 5322 header walker and address-list parser (msg/header.h):
 * the first byte picks the flags, the rest is a message whose fields are
 * walked; every field value, and the whole input, is parsed as an address
 * list. Fields must stay inside the input, the walk must advance, and a
 * parsed list must be well formed (lower-case domains, a domain unless
 * MSG_ALLOW_NO_DOMAIN).
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "msg/header.h"

static void check_list(const char *v, size_t n, unsigned flags)
{
    struct msg_mailbox *mb;
    size_t count;
    if (msg_parse_address_list(v, n, flags, &mb, &count) < 0) {
        if (mb != NULL || count != 0)
            abort();
        return;
    }
    if (count > MSG_MAX_MAILBOXES || (count == 0) != (mb == NULL))
        abort();
    for (size_t i = 0; i < count; i++) {
        if (strlen(mb[i].local) > n || strlen(mb[i].domain) > n + 2)
            abort();
        if (mb[i].domain[0] == '\0' && !(flags & MSG_ALLOW_NO_DOMAIN))
            abort();
        for (const char *c = mb[i].domain; *c != '\0'; c++) {
            if (*c >= 'A' && *c <= 'Z')
                abort();
        }
    }
    msg_mailboxes_free(mb, count);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned flags = data[0] & MSG_ALLOW_NO_DOMAIN;
    const char *msg = (const char *)data + 1;
    size_t n = size - 1, pos = 0;
    struct msg_field f;
    int rc;
    while ((rc = msg_next_field(msg, n, &pos, &f)) != 0) {
        if (pos > n)
            abort();
        if (rc < 0)
            continue;
        if (f.raw != msg + (pos - f.raw_len) || f.value + f.value_len > msg + pos ||
            f.name_len == 0)
            abort();
        check_list(f.value, f.value_len, flags);
    }
    if (msg_body_offset(msg, n) > n)
        abort();
    check_list(msg, n, flags);
    return 0;
}

const struct fuzz_seed fuzz_seeds[] = {
    SEED("\x00" "From: John Doe <jd@Example.COM>\r\nTo: a@b, \"q x\"@c\r\n\r\nbody"),
    SEED("\x01" "From: alice\r\nCc: team: a@b, <c@d>;, undisclosed:;\r\n\r\n"),
    SEED("\x00" "From: (c (nested)) Pete(x) <@r.example,@s:pete@[192.0.2.1]>\r\n\tfolded\r\n"),
    SEED("\x00" "Subject: x\nFrom : bad\nFrom: J\xc3\xb6 <j\xc3\xb6@\xc3\xa4.de>\n\n"),
    SEED("\x01" "a . b@c . d, ,\"\\\"q\"@x, John Q. Public <jqp@x>"),
    SEED("\x00" " leading: continuation\r\nno colon\r\nA:\r\n"),
};
const size_t fuzz_nseeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
