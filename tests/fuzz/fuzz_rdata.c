/*
 * Fuzz the wire-format RDATA parser that turns libunbound's answers into
 * records: the first byte picks the type, the rest is the RDATA. A parsed
 * name must stay raw text (no '.' or NUL inside a label) and a parsed
 * record must free cleanly either way.
 */
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"
#include "dns/dns.h"
#include "fuzz.h"

static const enum dns_type types[] = {
    DNS_T_A, DNS_T_AAAA, DNS_T_MX, DNS_T_TXT, DNS_T_PTR, DNS_T_CNAME, DNS_T_NS, DNS_T_TLSA,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* dns_answer_free_records() frees the array too: allocate it. */
    struct dns_rr *rr = xcalloc(1, sizeof(*rr));
    rr->type = types[data[0] % (sizeof(types) / sizeof(types[0]))];
    if (dns_rdata_parse(rr->type, data + 1, size - 1, rr) == 0) {
        const char *name = rr->type == DNS_T_MX ? rr->u.mx.host
                           : (rr->type == DNS_T_PTR || rr->type == DNS_T_CNAME || rr->type == DNS_T_NS)
                               ? rr->u.name : NULL;
        if (name && strcmp(name, ".") != 0 && (name[0] == '.' || strstr(name, "..")))
            abort();
        if (rr->type == DNS_T_TXT && rr->u.txt.len > size)
            abort();
    }
    dns_answer_free_records(rr, 1);
    return 0;
}

const struct fuzz_seed fuzz_seeds[] = {
    SEED("\x00\xc0\x00\x02\x01"),
    SEED("\x02\x00\x0a\x02mx\x07example\x03org\x00"),
    SEED("\x03\x0bv=spf1 -all\x05 more"),
    SEED("\x04\x07example\x00"),
    SEED("\x07\x03\x01\x01\xde\xad\xbe\xef"),
    SEED("\x01\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"),
};
const size_t fuzz_nseeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
