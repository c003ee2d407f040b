/*
 * Fuzz the RFC 5321 path parser: the first byte picks the flags, and a
 * successful parse must stay within the input and produce a well-formed
 * result.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "msg/addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned flags = data[0] & 7;
    struct mail_addr a;
    size_t used = 0;
    if (addr_parse_path((const char *)data + 1, size - 1, flags, &a, &used) == 0) {
        if (used > size - 1 || strlen(a.text) > ADDR_MAX_PATH || strlen(a.local) > ADDR_MAX_LOCAL)
            abort();
        if (!a.null && strchr(a.domain, '/') != NULL)
            abort();
        addr_free(&a);
    }
    return 0;
}

const struct fuzz_seed fuzz_seeds[] = {
    SEED("\x07<user@example.org>"),
    SEED("\x01<>"),
    SEED("\x04<Postmaster>"),
    SEED("\x02<\"quoted \\\"x\\\"\"@[IPv6:2001:db8::1]> SIZE=1"),
    SEED("\x02<@a.example,@b.example:u\xc3\xa9@d\xc3\xa9.example>"),
    SEED("\x00<a.b.c@[192.0.2.1]>"),
};
const size_t fuzz_nseeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
