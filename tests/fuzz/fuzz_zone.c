/*
 * Fuzz the zone file parser (dns/zone.c) and its lookups: the input after
 * the first byte is a zone file; if it parses, the first up to 32
 * whitespace-separated words of the input (names, most of them, after
 * mutation) and a few fixed names are looked up, for a type chosen by the
 * first byte, so CNAME chains, $TEMPFAIL and the hash table are reached.
 * Names in answers are raw text: each is asked for again (it must never be
 * refused as a bad question) and turned into presentation form.
 */
#include <string.h>

#include "fuzz.h"
#include "core/buf.h"
#include "dns/zone.h"

static const enum dns_type types[] = {
    DNS_T_A, DNS_T_AAAA, DNS_T_MX, DNS_T_TXT, DNS_T_PTR, DNS_T_CNAME, DNS_T_NS, DNS_T_TLSA,
};

static volatile size_t sink;   /* keeps the reads in check_answer() alive */

static void check_name(const char *name, size_t *sum);

static void check_answer(void *arg, const struct dns_answer *ans)
{
    size_t *sum = arg;
    /* Touch everything the answer points to. */
    for (size_t i = 0; i < ans->n; i++) {
        const struct dns_rr *rr = &ans->rr[i];
        switch (rr->type) {
        case DNS_T_MX: check_name(rr->u.mx.host, sum); break;
        case DNS_T_NS:
        case DNS_T_CNAME:
        case DNS_T_PTR: check_name(rr->u.name, sum); break;
        case DNS_T_TXT:
            for (size_t k = 0; k < rr->u.txt.len; k++)
                *sum += (unsigned char)rr->u.txt.data[k];
            break;
        case DNS_T_TLSA:
            for (size_t k = 0; k < rr->u.tlsa.len; k++)
                *sum += rr->u.tlsa.data[k];
            break;
        case DNS_T_A: *sum += rr->u.a[0]; break;
        case DNS_T_AAAA: *sum += rr->u.aaaa[15]; break;
        }
    }
    *sum += (size_t)ans->status;
}

static void answer_name(void *arg, const struct dns_answer *ans)
{
    if (ans->status == DNS_PERMFAIL)
        __builtin_trap();   /* a stored name is always a valid question */
    *(size_t *)arg += (size_t)ans->status;
}

static struct dns_resolver *current;   /* the zone being fuzzed */

static void check_name(const char *name, size_t *sum)
{
    struct buf b = { 0 };
    dns_name_presentation(&b, name);
    *sum += buf_size(&b);
    buf_free(&b);
    dns_resolve(current, name, DNS_T_TXT, answer_name, sum);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum dns_type type = types[data[0] % (sizeof(types) / sizeof(types[0]))];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    struct dns_resolver r;
    struct buf err = { 0 };
    if (dns_zone_parse("fuzz.zone", text, len, &r, &err) != 0) {
        buf_free(&err);
        return 0;
    }
    size_t sum = 0;
    current = &r;
    static const char *const fixed[] = { ".", "example", "www.example.com", "a.b.c" };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        dns_resolve(&r, fixed[i], type, check_answer, &sum);
    size_t i = 0;
    for (int words = 0; words < 32 && i < len; words++) {
        while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n'))
            i++;
        size_t start = i;
        while (i < len && text[i] != ' ' && text[i] != '\t' && text[i] != '\n')
            i++;
        char name[300];
        size_t n = i - start < sizeof(name) - 1 ? i - start : sizeof(name) - 1;
        memcpy(name, text + start, n);
        name[n] = '\0';
        dns_resolve(&r, name, type, check_answer, &sum);
        dns_resolve(&r, name, DNS_T_CNAME, check_answer, &sum);
    }
    dns_close(&r);
    buf_free(&err);
    sink = sum;
    return 0;
}

const struct fuzz_seed fuzz_seeds[] = {
    SEED("\x02$ORIGIN example.com.\n$TTL 300\n@ IN SOA ns1 hostmaster ( 1 3600 900 1w 1h )\n"
         "    IN NS ns1\n    MX 10 mx1\n    MX 20 mx2.example.net.\nmx1 A 192.0.2.1\n"
         "    AAAA 2001:db8::1\na.b.c TXT x\n"),
    SEED("\x00www.x. CNAME web.x.\nweb.x. CNAME host.x.\nhost.x. A 192.0.2.1\n"
         "loop1.x. CNAME loop2.x.\nloop2.x. CNAME loop1.x.\n$TEMPFAIL broken.x.\n"
         "tf.x. CNAME broken.x.\n$TEMPFAIL host.x. MX\n"),
    SEED("\x03$ORIGIN x.\na TXT \"v=spf1 \" \"ip4:192.0.2.0/24\" \" -all\"\n"
         "b TXT \"say \\\"hi\\\" \\\\ \\065\\066C \\000end\"\nc TXT plain words\n"
         "d TXT ( \"first\" ; comment \"q\" (\n        \"second\" )\ne TXT \"\"\n"),
    SEED("\x07$ORIGIN example.\r\n@\t3600\tIN\tMX\t0 .\r\nmail IN 300 MX 10 mx.example.\r\n"
         "_25._tcp.mx TLSA 3 1 1 ( 8cb0fc6c527506a053f4f14c8464bebb\r\n"
         "  d6dede2738d11468dd953d7d6a3021f1 )\r\n1.2.0.192.in-addr.arpa. PTR mx.example.\r\n"),
    SEED("\x05$ORIGIN example.com.\nmacro%percent\\032\\032space TXT x\n"
         "\\195\\169t\\195\\169 CNAME a\\032b\na\\032b MX 10 m\\@x.y\n"
         "@ SOA ns john\\.doe 1 2 3 4 5\nc\\255 A 1.2.3.4\n"),
};
const size_t fuzz_nseeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);
