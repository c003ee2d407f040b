/*
 * test_dns_zone - the zone-file backend (dns/zone.c) and the common part
 * of the resolver interface (dns/dns.c).
 *
 * 1. Invalid files: each must fail with exactly "t.zone:LINE: what".
 * 2. Valid files with queries: each answer is rendered as one string
 *    ("ok|MX 10 mx.example|..." or "nxdomain", ...) and compared, so the
 *    tables read as the zone semantics they pin down: NXDOMAIN versus
 *    NODATA versus empty non-terminals, CNAME chasing and loops, case,
 *    the final dot, $TEMPFAIL, TXT concatenation and escapes, MX, TLSA,
 *    escaped names (\DDD, \X) stored as raw octets and asked for as raw
 *    text (spaces, bytes >= 0x80; only ASCII letters fold case).
 * Every text is parsed from a heap block of exactly its length (no NUL
 * after it), so AddressSanitizer catches a read past the end; every proper
 * prefix of every valid file is parsed too (it must succeed or fail with a
 * t.zone:LINE error, never crash).
 * 3. Details: TTL defaults, duplicates, dns_zone_open() on real files, a
 *    large zone (hash table growth), closing from inside the callback,
 *    dns_resolve()'s own checks (raw-text names) and the name helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "core/buf.h"
#include "dns/dns.h"
#include "dns/zone.h"

/* ------------------------------------------------------------ helpers */

static int parse_exact(const char *text, size_t len, struct dns_resolver *r, struct buf *err)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    int rc = dns_zone_parse("t.zone", copy, len, r, err);
    free(copy);
    return rc;
}

static void render_rr(struct buf *b, const struct dns_rr *rr)
{
    char addr[INET6_ADDRSTRLEN];
    buf_printf(b, "|%s ", dns_type_name(rr->type));
    switch (rr->type) {
    case DNS_T_A:
        buf_append_str(b, inet_ntop(AF_INET, rr->u.a, addr, sizeof(addr)));
        break;
    case DNS_T_AAAA:
        buf_append_str(b, inet_ntop(AF_INET6, rr->u.aaaa, addr, sizeof(addr)));
        break;
    case DNS_T_MX:
        buf_printf(b, "%u %s", (unsigned)rr->u.mx.pref, rr->u.mx.host);
        break;
    case DNS_T_NS:
    case DNS_T_CNAME:
    case DNS_T_PTR:
        buf_append_str(b, rr->u.name);
        break;
    case DNS_T_TXT:
        buf_append_byte(b, '"');
        for (size_t i = 0; i < rr->u.txt.len; i++) {
            unsigned char c = (unsigned char)rr->u.txt.data[i];
            if (c == '"' || c == '\\')
                buf_printf(b, "\\%c", c);
            else if (c < 0x20 || c >= 0x7f)
                buf_printf(b, "\\%03u", (unsigned)c);
            else
                buf_append_byte(b, (char)c);
        }
        assert_int_equal(rr->u.txt.data[rr->u.txt.len], '\0');
        buf_append_byte(b, '"');
        break;
    case DNS_T_TLSA:
        buf_printf(b, "%u %u %u ", (unsigned)rr->u.tlsa.usage, (unsigned)rr->u.tlsa.selector,
                   (unsigned)rr->u.tlsa.mtype);
        for (size_t i = 0; i < rr->u.tlsa.len; i++)
            buf_printf(b, "%02x", (unsigned)rr->u.tlsa.data[i]);
        break;
    }
}

struct got {
    int calls;
    struct buf text;         /* "status|rr|rr" */
    enum dns_sec sec;
    uint32_t ttl[16];
    const char *why;
};

static void collect(void *arg, const struct dns_answer *ans)
{
    struct got *g = arg;
    g->calls++;
    g->sec = ans->sec;
    g->why = ans->why;
    buf_reset(&g->text);
    buf_append_str(&g->text, dns_status_name(ans->status));
    if (ans->status == DNS_OK)
        assert_true(ans->n >= 1);
    else
        assert_int_equal(ans->n, 0);
    for (size_t i = 0; i < ans->n; i++) {
        render_rr(&g->text, &ans->rr[i]);
        if (i < 16)
            g->ttl[i] = ans->rr[i].ttl;
    }
}

/* Resolve and return the rendered answer (valid until the next call). */
static const char *ask(struct dns_resolver *r, struct got *g, const char *name, enum dns_type t)
{
    g->calls = 0;
    dns_resolve(r, name, t, collect, g);
    assert_int_equal(g->calls, 1);   /* synchronous: cb ran inside */
    if (g->sec != DNS_SEC_INSECURE)
        fail_msg("zone answers must be insecure");
    return buf_ptr(&g->text);
}

/* ------------------------------------------------------- invalid files */

struct bad_case {
    const char *text;
    size_t len;   /* 0: strlen */
    const char *err;
};

#define LONG63 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk"
#define S255                                                                               \
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234" \
    "5678901234567890123456789012345678901234567890123456789012345678901234567890123456789" \
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234"

static const struct bad_case bad_cases[] = {
    { "$INCLUDE other.zone\n", 0, "t.zone:1: $INCLUDE is not supported: put all zones in one file" },
    { "$include other.zone\n", 0, "t.zone:1: $INCLUDE is not supported: put all zones in one file" },
    { "$GENERATE 1-2 a$ A 1.2.3.$\n", 0, "t.zone:1: unknown directive '$GENERATE'" },
    { "$ORIGIN\n", 0, "t.zone:1: $ORIGIN needs one name" },
    { "$ORIGIN a. b.\n", 0, "t.zone:1: $ORIGIN needs one name" },
    { "$TTL 1d 2\n", 0, "t.zone:1: $TTL needs one TTL" },
    { "$TTL x\n", 0, "t.zone:1: bad TTL 'x'" },
    { "$TEMPFAIL\n", 0, "t.zone:1: $TEMPFAIL needs a name and optionally a type" },
    { "$TEMPFAIL a A b\n", 0, "t.zone:1: $TEMPFAIL needs a name and optionally a type" },
    { "$TEMPFAIL a SOA\n", 0, "t.zone:1: $TEMPFAIL: SOA cannot be queried" },
    { "$TEMPFAIL a SRV\n", 0, "t.zone:1: unknown or unsupported type 'SRV'" },
    { "a A 1.2.3\n", 0, "t.zone:1: bad IPv4 address '1.2.3'" },
    { "a A 1.2.3.4.5\n", 0, "t.zone:1: bad IPv4 address '1.2.3.4.5'" },
    { "a A 01.2.3.4x\n", 0, "t.zone:1: bad IPv4 address '01.2.3.4x'" },
    { "a A \"1.2.3.4\"\n", 0, "t.zone:1: bad IPv4 address '1.2.3.4'" },
    { "\n\na AAAA ::g\n", 0, "t.zone:3: bad IPv6 address '::g'" },
    { "a AAAA 1.2.3.4\n", 0, "t.zone:1: bad IPv6 address '1.2.3.4'" },
    { "a A 1.2.3.4 5\n", 0, "t.zone:1: A needs one IPv4 address (2 fields given)" },
    { "a A\n", 0, "t.zone:1: A needs one IPv4 address (0 fields given)" },
    { "a MX 10\n", 0, "t.zone:1: MX needs a preference and a host name (1 field given)" },
    { "a MX 65536 b\n", 0, "t.zone:1: bad MX preference '65536' (0 to 65535)" },
    { "a MX -1 b\n", 0, "t.zone:1: bad MX preference '-1' (0 to 65535)" },
    { "a CNAME\n", 0, "t.zone:1: CNAME needs one name (0 fields given)" },
    { "a PTR b c\n", 0, "t.zone:1: PTR needs one name (2 fields given)" },
    { "a NS \"b\"\n", 0, "t.zone:1: a name cannot be quoted: \"b\"" },
    { "a SPF \"v=spf1\"\n", 0, "t.zone:1: unknown or unsupported type 'SPF'" },
    { "a TYPE16 \\# 0\n", 0, "t.zone:1: unknown or unsupported type 'TYPE16'" },
    { "a 300 IN RRSIG A 13 2 300 ( x )\n", 0, "t.zone:1: unknown or unsupported type 'RRSIG'" },
    { "a CH A 1.2.3.4\n", 0, "t.zone:1: class 'CH' is not supported (only IN)" },
    { "a 300 HS A 1.2.3.4\n", 0, "t.zone:1: class 'HS' is not supported (only IN)" },
    { "a IN\n", 0, "t.zone:1: missing type" },
    { "a 300 IN\n", 0, "t.zone:1: missing type" },
    { "a IN IN A 1.2.3.4\n", 0, "t.zone:1: unknown or unsupported type 'IN'" },
    { "a 1h30 A 1.2.3.4\n", 0, "t.zone:1: bad TTL '1h30'" },
    { "a 2147483648 A 1.2.3.4\n", 0, "t.zone:1: bad TTL '2147483648'" },
    { "a 9999999999999999999999 A 1.2.3.4\n", 0, "t.zone:1: bad TTL '9999999999999999999999'" },
    { "a 1x A 1.2.3.4\n", 0, "t.zone:1: bad TTL '1x'" },
    { "a TXT \"abc\nb A 1.2.3.4\n", 0,
      "t.zone:1: quoted string not closed before the end of the line" },
    { "a TXT \"abc", 0, "t.zone:1: quoted string not closed" },
    { "a TXT ( \"x\"\n\n", 0, "t.zone:1: '(' not closed before the end of the file" },
    { "a TXT x )\n", 0, "t.zone:1: ')' without '('" },
    { "a TXT ( ( x ) )\n", 0, "t.zone:1: nested '('" },
    { "a TXT\n", 0, "t.zone:1: TXT needs at least one string" },
    { "a TXT \"x\\\nb\"\n", 0, "t.zone:1: backslash at the end of a line" },
    { "a TXT x\\", 0, "t.zone:1: backslash at the end of a line" },
    { "a TXT \"\\999\"\n", 0, "t.zone:1: bad \\DDD escape in \"\\999\"" },
    { "a TXT \"\\12\"\n", 0, "t.zone:1: bad \\DDD escape in \"\\12\"" },
    { "a TXT \"\\1a2\"\n", 0, "t.zone:1: bad \\DDD escape in \"\\1a2\"" },
    { "a TXT \"" S255 "x\"\n", 0, "t.zone:1: string longer than 255 bytes: \"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789...\"" },
    { "  A 1.2.3.4\n", 0, "t.zone:1: no owner name: the first record starts with a blank" },
    { "a..b A 1.2.3.4\n", 0, "t.zone:1: empty label in name 'a..b'" },
    { ".a A 1.2.3.4\n", 0, "t.zone:1: empty label in name '.a'" },
    { "a.. A 1.2.3.4\n", 0, "t.zone:1: empty label in name 'a..'" },
    { LONG63 "x A 1.2.3.4\n", 0,
      "t.zone:1: label longer than 63 bytes in name '" LONG63 "x'" },
    { "a\\.b A 1.2.3.4\n", 0, "t.zone:1: a dot inside a label is not supported: 'a\\.b'" },
    { "x CNAME a\\046b\n", 0, "t.zone:1: a dot inside a label is not supported: 'a\\046b'" },
    { "a\\000b A 1.2.3.4\n", 0, "t.zone:1: a NUL byte inside a label is not supported: 'a\\000b'" },
    { "a\\256 A 1.2.3.4\n", 0, "t.zone:1: bad \\DDD escape in name 'a\\256'" },
    { "a\\999b A 1.2.3.4\n", 0, "t.zone:1: bad \\DDD escape in name 'a\\999b'" },
    { "\n\nx CNAME a\\12\n", 0, "t.zone:3: bad \\DDD escape in name 'a\\12'" },
    { "x MX 10 a\\1x2.b.\n", 0, "t.zone:1: bad \\DDD escape in name 'a\\1x2.b.'" },
    { "$ORIGIN a\\12.\n", 0, "t.zone:1: bad \\DDD escape in name 'a\\12.'" },
    { "$TEMPFAIL a\\25x\n", 0, "t.zone:1: bad \\DDD escape in name 'a\\25x'" },
    { "x PTR \\\\\\.\n", 0, "t.zone:1: a dot inside a label is not supported: '\\\\\\.'" },
    { "a SOA ns host\\000x 1 2 3 4 5\n", 0,
      "t.zone:1: a NUL byte inside a label is not supported: 'host\\000x'" },
    { "\\065" LONG63 " A 1.2.3.4\n", 0,
      "t.zone:1: label longer than 63 bytes in name '\\065" LONG63 "'" },
    { "a\\.. A 1.2.3.4\n", 0, "t.zone:1: a dot inside a label is not supported: 'a\\..'" },
    { "a\x7f A 1.2.3.4\n", 0, "t.zone:1: invalid character in name 'a\\x7f' (use A-labels for IDNs)" },
    { "\xc3\xa9 A 1.2.3.4\n", 0,
      "t.zone:1: invalid character in name '\\xc3\\xa9' (use A-labels for IDNs)" },
    { "$ORIGIN " LONG63 "." LONG63 "." LONG63 ".\n" LONG63 " A 1.2.3.4\n", 0,
      "t.zone:2: name longer than 253 bytes: '" LONG63 "'" },
    { "a A 1.2.3.4\nb\0 A 1.2.3.4\n", 25, "t.zone:2: NUL byte" },
    { "a TXT \"x\0\"\n", 11, "t.zone:1: NUL byte" },
    { "a TLSA 3 1 1 abc\n", 0, "t.zone:1: odd number of hex digits in TLSA data" },
    { "a TLSA 3 1 1 (\n 00\n zz )\n", 0, "t.zone:3: bad hex in TLSA data 'zz'" },
    { "a TLSA 3 1 1 \"00\"\n", 0, "t.zone:1: bad hex in TLSA data '00'" },
    { "a TLSA 3 1\n", 0, "t.zone:1: TLSA needs usage, selector, matching type and hex data" },
    { "a TLSA 256 1 1 00\n", 0, "t.zone:1: bad TLSA usage '256' (0 to 255)" },
    { "a TLSA 3 x 1 00\n", 0, "t.zone:1: bad TLSA selector 'x' (0 to 255)" },
    { "a TLSA 3 1 1x 00\n", 0, "t.zone:1: bad TLSA matching type '1x' (0 to 255)" },
    { "a CNAME b\na A 1.2.3.4\n", 0, "t.zone:2: CNAME and other data at 'a'" },
    { "A.x A 1.2.3.4\na.X CNAME b\n", 0, "t.zone:2: CNAME and other data at 'a.X'" },
    { "a CNAME b\na CNAME c\n", 0, "t.zone:2: more than one CNAME at 'a'" },
    { "a SOA ns host 1 2 3 4 5\na CNAME c\n", 0, "t.zone:2: CNAME and other data at 'a'" },
    { "a CNAME c\na SOA ns host 1 2 3 4 5\n", 0, "t.zone:2: CNAME and other data at 'a'" },
    { "a SOA ns host 1 2 3 4\n", 0,
      "t.zone:1: SOA needs mname rname serial refresh retry expire minimum (6 fields given)" },
    { "a SOA ns host 4294967296 2 3 4 5\n", 0,
      "t.zone:1: bad SOA serial '4294967296' (0 to 4294967295)" },
    { "a SOA ns host 1 2 3 4 5x\n", 0, "t.zone:1: bad SOA time '5x'" },
    { "\"quoted\" A 1.2.3.4\n", 0, "t.zone:1: a name cannot be quoted: \"quoted\"" },
    { "ok A 1.2.3.4 ; fine\n\n; comment\nbad A 300.1.1.1\n", 0,
      "t.zone:4: bad IPv4 address '300.1.1.1'" },
    { "a TXT (\n \"x\"\n \"y\" ) 5\nb MX ( 10\n\n  ) ; no host\n", 0,
      "t.zone:4: MX needs a preference and a host name (1 field given)" },
    { "a A 1.2.3.4\r\nb A x\r\n", 0, "t.zone:2: bad IPv4 address 'x'" },
    { "a\r\n", 0, "t.zone:1: missing type" },
};

static void test_invalid_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        size_t len = c->len ? c->len : strlen(c->text);
        struct dns_resolver r = { 0 };
        struct buf err = { 0 };
        int rc = parse_exact(c->text, len, &r, &err);
        if (rc != -1 || strcmp(buf_ptr(&err), c->err) != 0)
            fail_msg("case %zu: rc %d, error\n  got  [%s]\n  want [%s]", i, rc, buf_ptr(&err),
                     c->err);
        assert_null(r.ops);
        buf_free(&err);
    }
}

/* --------------------------------------------------------- valid files */

struct query {
    const char *name;
    enum dns_type type;
    const char *want;
};

struct good_case {
    const char *text;
    struct query q[24];
};

static const struct good_case good_cases[] = {
    { /* NXDOMAIN, NODATA, empty non-terminals, origin, @, blank owner */
      "$ORIGIN example.com.\n"
      "$TTL 300\n"
      "@ IN SOA ns1 hostmaster ( 2024010101 ; serial\n"
      "          3600 900 1w 1h )\n"
      "    IN NS ns1\n"
      "    MX 10 mx1\n"
      "    MX 20 mx2.example.net.\n"
      "mx1 A 192.0.2.1\n"
      "    A 192.0.2.2\n"
      "    AAAA 2001:db8::1\n"
      "a.b.c TXT x\n"
      "$ORIGIN sub.example.com.\n"
      "host A 192.0.2.9\n"
      "@ A 192.0.2.10\n",
      {
          { "example.com", DNS_T_MX, "ok|MX 10 mx1.example.com|MX 20 mx2.example.net" },
          { "example.com.", DNS_T_NS, "ok|NS ns1.example.com" },
          { "example.com", DNS_T_A, "nodata" },
          { "mx1.example.com", DNS_T_A, "ok|A 192.0.2.1|A 192.0.2.2" },
          { "mx1.example.com", DNS_T_AAAA, "ok|AAAA 2001:db8::1" },
          { "MX1.Example.COM.", DNS_T_A, "ok|A 192.0.2.1|A 192.0.2.2" },
          { "mx1.example.com", DNS_T_TXT, "nodata" },
          { "mx2.example.com", DNS_T_A, "nxdomain" },
          { "b.c.example.com", DNS_T_TXT, "nodata" },        /* empty non-terminal */
          { "c.example.com", DNS_T_A, "nodata" },            /* empty non-terminal */
          { "a.b.c.example.com", DNS_T_TXT, "ok|TXT \"x\"" },
          { "x.a.b.c.example.com", DNS_T_TXT, "nxdomain" },
          { "com", DNS_T_A, "nodata" },                      /* an ancestor of a name */
          { ".", DNS_T_NS, "nodata" },
          { "org", DNS_T_A, "nxdomain" },
          { "host.sub.example.com", DNS_T_A, "ok|A 192.0.2.9" },
          { "sub.example.com", DNS_T_A, "ok|A 192.0.2.10" },
          { "ns1.example.com", DNS_T_A, "nxdomain" },
          { NULL, 0, NULL },
      } },
    { /* CNAME chasing */
      "www.x. CNAME web.x.\n"
      "web.x. CNAME host.x.\n"
      "host.x. A 192.0.2.1\n"
      "host.x. MX 0 .\n"
      "dangling.x. CNAME nowhere.x.\n"
      "loop1.x. CNAME loop2.x.\n"
      "loop2.x. CNAME loop1.x.\n"
      "self.x. CNAME SELF.x.\n"
      "c1.x. CNAME c2.x.\nc2.x. CNAME c3.x.\nc3.x. CNAME c4.x.\nc4.x. CNAME c5.x.\n"
      "c5.x. CNAME c6.x.\nc6.x. CNAME c7.x.\nc7.x. CNAME c8.x.\nc8.x. CNAME c9.x.\n"
      "c9.x. A 192.0.2.9\n"
      "c0.x. CNAME c1.x.\n"
      "tf.x. CNAME broken.x.\n"
      "$TEMPFAIL broken.x.\n",
      {
          { "www.x", DNS_T_A, "ok|A 192.0.2.1" },
          { "www.x", DNS_T_MX, "ok|MX 0 ." },
          { "www.x", DNS_T_CNAME, "ok|CNAME web.x" },
          { "www.x", DNS_T_AAAA, "nodata" },
          { "dangling.x", DNS_T_A, "nxdomain" },
          { "dangling.x", DNS_T_CNAME, "ok|CNAME nowhere.x" },
          { "loop1.x", DNS_T_A, "tempfail" },
          { "loop1.x", DNS_T_CNAME, "ok|CNAME loop2.x" },
          { "self.x", DNS_T_TXT, "tempfail" },
          { "c1.x", DNS_T_A, "ok|A 192.0.2.9" },             /* 8 hops */
          { "c0.x", DNS_T_A, "tempfail" },                   /* 9 hops */
          { "tf.x", DNS_T_A, "tempfail" },
          { "tf.x", DNS_T_CNAME, "ok|CNAME broken.x" },
          { NULL, 0, NULL },
      } },
    { /* $TEMPFAIL */
      "$ORIGIN t.\n"
      "all A 192.0.2.1\n"
      "mx A 192.0.2.2\n"
      "mx TXT hello\n"
      "$TEMPFAIL all\n"
      "$TEMPFAIL mx txt\n"
      "$TEMPFAIL ghost.t. MX\n"
      "$TEMPFAIL @ A\n",
      {
          { "all.t", DNS_T_A, "tempfail" },
          { "ALL.T.", DNS_T_NS, "tempfail" },
          { "mx.t", DNS_T_TXT, "tempfail" },
          { "mx.t", DNS_T_A, "ok|A 192.0.2.2" },
          { "ghost.t", DNS_T_MX, "tempfail" },
          { "ghost.t", DNS_T_A, "nxdomain" },                /* $TEMPFAIL creates no name */
          { "t", DNS_T_A, "tempfail" },
          { "t", DNS_T_MX, "nodata" },
          { NULL, 0, NULL },
      } },
    { /* TXT: several strings, escapes, unquoted, parentheses, comments */
      "$ORIGIN x.\n"
      "a TXT \"v=spf1 \" \"ip4:192.0.2.0/24\" \" -all\"\n"
      "b TXT \"say \\\"hi\\\" \\\\ \\065\\066C \\000end\"\n"
      "c TXT plain words\n"
      "d TXT ( \"first\" ; a comment with \"quotes\" and ( parens\n"
      "        \"second\" )\n"
      "e TXT \"semi;colon (paren)\"\n"
      "f TXT \"\"\n"
      "g TXT \"one\"\ng TXT \"two\"\n"
      "h TXT a\\;b\\\"c\n"
      "i TXT \"" S255 "\" \"" S255 "\"\n",
      {
          { "a.x", DNS_T_TXT, "ok|TXT \"v=spf1 ip4:192.0.2.0/24 -all\"" },
          { "b.x", DNS_T_TXT, "ok|TXT \"say \\\"hi\\\" \\\\ ABC \\000end\"" },
          { "c.x", DNS_T_TXT, "ok|TXT \"plainwords\"" },
          { "d.x", DNS_T_TXT, "ok|TXT \"firstsecond\"" },
          { "e.x", DNS_T_TXT, "ok|TXT \"semi;colon (paren)\"" },
          { "f.x", DNS_T_TXT, "ok|TXT \"\"" },
          { "g.x", DNS_T_TXT, "ok|TXT \"one\"|TXT \"two\"" },
          { "h.x", DNS_T_TXT, "ok|TXT \"a;b\\\"c\"" },
          { "i.x", DNS_T_TXT, "ok|TXT \"" S255 S255 "\"" },
          { NULL, 0, NULL },
      } },
    { /* MX, TLSA, PTR, NS; TTL and class in either order; CRLF; tabs */
      "$ORIGIN example.\r\n"
      "@\t3600\tIN\tMX\t0 .\r\n"
      "mail IN 300 MX 10 mx.example.\r\n"
      "mail 300 IN MX 20 mx2\r\n"
      "_25._tcp.mx TLSA 3 1 1 ( 8cb0fc6c527506a053f4f14c8464bebb\r\n"
      "                         d6dede2738d11468dd953d7d6a3021f1 )\r\n"
      "_25._tcp.mx TLSA 2 0 0 00FF\r\n"
      "1.2.0.192.in-addr.arpa. PTR mx.example.\r\n"
      "sub NS ns.sub\r\n",
      {
          { "example", DNS_T_MX, "ok|MX 0 ." },
          { "mail.example", DNS_T_MX, "ok|MX 10 mx.example|MX 20 mx2.example" },
          { "_25._tcp.mx.example", DNS_T_TLSA,
            "ok|TLSA 3 1 1 8cb0fc6c527506a053f4f14c8464bebbd6dede2738d11468dd953d7d6a3021f1"
            "|TLSA 2 0 0 00ff" },
          { "_tcp.mx.example", DNS_T_TLSA, "nodata" },
          { "mx.example", DNS_T_A, "nodata" },
          { "1.2.0.192.in-addr.arpa", DNS_T_PTR, "ok|PTR mx.example" },
          { "2.0.192.in-addr.arpa", DNS_T_PTR, "nodata" },
          { "sub.example", DNS_T_NS, "ok|NS ns.sub.example" },
          { NULL, 0, NULL },
      } },
    { /* several zones in one file, no $ORIGIN: names are just names */
      "a.example.org. A 192.0.2.1\n"
      "b.example.net A 192.0.2.2\n"
      "@ TXT root\n"
      ". MX 5 mx.example.org\n",
      {
          { "a.example.org", DNS_T_A, "ok|A 192.0.2.1" },
          { "b.example.net.", DNS_T_A, "ok|A 192.0.2.2" },
          { ".", DNS_T_TXT, "ok|TXT \"root\"" },
          { ".", DNS_T_MX, "ok|MX 5 mx.example.org" },
          { "example.net", DNS_T_A, "nodata" },
          { "example.com", DNS_T_A, "nxdomain" },
          { NULL, 0, NULL },
      } },
    { /* escaped names: stored as raw octets, asked for as raw text */
      "$ORIGIN example.com.\n"
      "@ SOA ns john\\.doe 1 2 3 4 5\n"
      "macro%percent\\032\\032space%20url-space TXT \"v=spf1 -all\"\n"
      "\\195\\169t\\195\\169 A 192.0.2.1\n"
      "sp\\ ace MX 10 mx\\032host.example.net.\n"
      "Caf\\195\\169 CNAME t\\195\\169\\032st\n"
      "t\\195\\169\\032st A 192.0.2.2\n"
      "back\\\\slash A 192.0.2.3\n"
      "quote\\\"s\\;x\\(\\) A 192.0.2.4\n"
      "\\@at\\$ PTR p\\@q.\n"
      "\\065bc A 192.0.2.5\n"
      "\\195 A 192.0.2.8\n"
      "\\255\\001\\127 NS n\\255.\n"
      "$ORIGIN sp\\032ace.example.\n"
      "@ A 192.0.2.6\n"
      "in A 192.0.2.7\n"
      "$TEMPFAIL t\\032f\n",
      {
          { "macro%percent  space%20url-space.example.com", DNS_T_TXT, "ok|TXT \"v=spf1 -all\"" },
          { "MACRO%Percent  SPACE%20url-space.example.com.", DNS_T_TXT, "ok|TXT \"v=spf1 -all\"" },
          { "macro%percent space%20url-space.example.com", DNS_T_TXT, "nxdomain" },
          { "macro%percent\\032\\032space%20url-space.example.com", DNS_T_TXT, "nxdomain" },
          { "\xc3\xa9t\xc3\xa9.example.com", DNS_T_A, "ok|A 192.0.2.1" },
          { "\xc3\xa9T\xc3\xa9.EXAMPLE.com", DNS_T_A, "ok|A 192.0.2.1" },
          { "\xc3\x89t\xc3\x89.example.com", DNS_T_A, "nxdomain" },   /* É: no folding */
          { "sp ace.example.com", DNS_T_MX, "ok|MX 10 mx host.example.net" },
          { "caf\xc3\xa9.example.com", DNS_T_A, "ok|A 192.0.2.2" },      /* CNAME chased */
          { "Caf\xc3\xa9.example.com", DNS_T_CNAME, "ok|CNAME t\xc3\xa9 st.example.com" },
          { "back\\slash.example.com", DNS_T_A, "ok|A 192.0.2.3" },
          { "quote\"s;x().example.com", DNS_T_A, "ok|A 192.0.2.4" },
          { "@at$.example.com", DNS_T_PTR, "ok|PTR p@q" },
          { "abc.example.com", DNS_T_A, "ok|A 192.0.2.5" },
          { "\xc3.example.com", DNS_T_A, "ok|A 192.0.2.8" },
          { "\xe3.example.com", DNS_T_A, "nxdomain" },   /* 0xC3 | 0x20: not a letter */
          { "\xff\x01\x7f.example.com", DNS_T_NS, "ok|NS n\xff" },
          { "sp ace.example", DNS_T_A, "ok|A 192.0.2.6" },
          { "in.SP ACE.example.", DNS_T_A, "ok|A 192.0.2.7" },
          { "t f.sp ace.example", DNS_T_A, "tempfail" },
          { "example.com", DNS_T_A, "nodata" },
          { NULL, 0, NULL },
      } },
    { /* an empty file, comments only */
      "; nothing here\n\n   ; still nothing\n",
      {
          { "example.com", DNS_T_A, "nxdomain" },
          { ".", DNS_T_A, "nxdomain" },
          { NULL, 0, NULL },
      } },
};

static void test_valid_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
        const struct good_case *c = &good_cases[i];
        struct dns_resolver r;
        struct buf err = { 0 };
        if (parse_exact(c->text, strlen(c->text), &r, &err) != 0)
            fail_msg("case %zu: %s", i, buf_ptr(&err));
        struct got g = { 0 };
        for (const struct query *q = c->q; q->name != NULL; q++) {
            const char *got = ask(&r, &g, q->name, q->type);
            if (strcmp(got, q->want) != 0)
                fail_msg("case %zu: %s %s\n  got  [%s]\n  want [%s]", i, q->name,
                         dns_type_name(q->type), got, q->want);
        }
        buf_free(&g.text);
        buf_free(&err);
        dns_close(&r);
        assert_null(r.ops);
        dns_close(&r);   /* idempotent */
    }
}

/* Every proper prefix of every valid file: no crash, no leak, and either a
 * resolver or a t.zone:LINE error. */
static void test_valid_prefixes(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
        const char *text = good_cases[i].text;
        size_t len = strlen(text);
        for (size_t n = 0; n < len; n++) {
            struct dns_resolver r;
            struct buf err = { 0 };
            if (parse_exact(text, n, &r, &err) == 0) {
                struct got g = { 0 };
                ask(&r, &g, "example.com", DNS_T_A);
                buf_free(&g.text);
                dns_close(&r);
            } else if (strncmp(buf_ptr(&err), "t.zone:", 7) != 0) {
                fail_msg("case %zu prefix %zu: [%s]", i, n, buf_ptr(&err));
            }
            buf_free(&err);
        }
    }
}

/* ------------------------------------------------------------- details */

static struct dns_resolver must_parse(const char *text)
{
    struct dns_resolver r;
    struct buf err = { 0 };
    if (parse_exact(text, strlen(text), &r, &err) != 0)
        fail_msg("%s", buf_ptr(&err));
    buf_free(&err);
    return r;
}

static void test_ttl(void **state)
{
    (void)state;
    struct dns_resolver r = must_parse("a A 192.0.2.1\n"            /* nothing known: 3600 */
                                       "b 1w2d3h4m5s A 192.0.2.2\n" /* explicit, now the last */
                                       "c A 192.0.2.3\n"            /* the last TTL */
                                       "$TTL 1H\n"
                                       "d A 192.0.2.4\n"            /* $TTL */
                                       "e 0 A 192.0.2.5\n"
                                       "f A 192.0.2.6\n"            /* $TTL wins over last */
                                       "g 2147483647 A 192.0.2.7\n"
                                       "h 100 A 192.0.2.8\nh 50 A 192.0.2.8\n" /* duplicate */
                                       "h 60 A 192.0.2.9\n");
    static const struct { const char *name; uint32_t ttl; } want[] = {
        { "a", 3600 }, { "b", 788645 }, { "c", 788645 }, { "d", 3600 },
        { "e", 0 }, { "f", 3600 }, { "g", 2147483647 },
    };
    struct got g = { 0 };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        ask(&r, &g, want[i].name, DNS_T_A);
        if (g.ttl[0] != want[i].ttl)
            fail_msg("%s: ttl %u, want %u", want[i].name, g.ttl[0], want[i].ttl);
    }
    /* Identical records are kept once (with the lower TTL). */
    assert_string_equal(ask(&r, &g, "h", DNS_T_A), "ok|A 192.0.2.8|A 192.0.2.9");
    assert_int_equal(g.ttl[0], 50);
    assert_int_equal(g.ttl[1], 60);
    buf_free(&g.text);
    dns_close(&r);
}

static void test_duplicates(void **state)
{
    (void)state;
    struct dns_resolver r = must_parse("a MX 10 MX.x.\na MX 10 mx.x.\na MX 20 mx.x.\n"
                   "a TXT \"ab\"\na TXT a b\na TXT \"a\" \"b\" \"\"\n"
                   "c CNAME d\nc CNAME D.\n"
                   "t TLSA 3 1 1 ab\nt TLSA 3 1 1 AB\nt TLSA 3 1 2 ab\n"
                   "m MX 10 \\195X.x.\nm MX 10 \\195x.x.\nm MX 10 \\227x.x.\n"
                   "p PTR a\\032b.\np PTR A\\ B.\n");
    struct got g = { 0 };
    assert_string_equal(ask(&r, &g, "a", DNS_T_MX), "ok|MX 10 MX.x|MX 20 mx.x");
    assert_string_equal(ask(&r, &g, "a", DNS_T_TXT), "ok|TXT \"ab\"");
    assert_string_equal(ask(&r, &g, "c", DNS_T_CNAME), "ok|CNAME d");
    assert_string_equal(ask(&r, &g, "t", DNS_T_TLSA), "ok|TLSA 3 1 1 ab|TLSA 3 1 2 ab");
    /* Names compare case-insensitively for ASCII letters only. */
    assert_string_equal(ask(&r, &g, "m", DNS_T_MX), "ok|MX 10 \xc3X.x|MX 10 \xe3x.x");
    assert_string_equal(ask(&r, &g, "p", DNS_T_PTR), "ok|PTR a b");
    buf_free(&g.text);
    dns_close(&r);
}

static void test_open_file(void **state)
{
    (void)state;
    char path[] = "/tmp/test_dns_zone.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char text[] = "$ORIGIN example.\nmx A 192.0.2.1\nbad A 1.2.3.4.5\n";
    size_t good = strlen("$ORIGIN example.\nmx A 192.0.2.1\n");
    assert_int_equal(write(fd, text, good), (ssize_t)good);
    close(fd);

    struct dns_resolver r;
    struct buf err = { 0 };
    assert_int_equal(dns_zone_open(path, &r, &err), 0);
    struct got g = { 0 };
    assert_string_equal(ask(&r, &g, "mx.example", DNS_T_A), "ok|A 192.0.2.1");
    dns_close(&r);

    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    assert_int_equal(dns_zone_open(path, &r, &err), -1);
    struct buf want = { 0 };
    buf_printf(&want, "%s:3: bad IPv4 address '1.2.3.4.5'", path);
    assert_string_equal(buf_ptr(&err), buf_ptr(&want));
    assert_null(r.ops);

    unlink(path);
    buf_reset(&err);
    assert_int_equal(dns_zone_open(path, &r, &err), -1);
    buf_reset(&want);
    buf_printf(&want, "%s: No such file or directory", path);
    assert_string_equal(buf_ptr(&err), buf_ptr(&want));

    buf_free(&want);
    buf_free(&err);
    buf_free(&g.text);
}

/* Many names: the table grows; every name is found, and its neighbours
 * that do not exist are not. */
static void test_large_zone(void **state)
{
    (void)state;
    enum { N = 50000 };
    struct buf text = { 0 };
    buf_append_str(&text, "$ORIGIN big.example.\n$TTL 60\n");
    for (unsigned i = 0; i < N; i++)
        buf_printf(&text, "h%u.n%u A 10.%u.%u.%u\n", i, i % 97, (i >> 16) & 255, (i >> 8) & 255,
                   i & 255);
    struct dns_resolver r = must_parse(buf_ptr(&text));
    struct got g = { 0 };
    char name[64], want[64];
    for (unsigned i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "H%u.n%u.big.example.", i, i % 97);
        snprintf(want, sizeof(want), "ok|A 10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        assert_string_equal(ask(&r, &g, name, DNS_T_A), want);
        snprintf(name, sizeof(name), "h%u.n%u.big.example", i, (i + 1) % 97);
        assert_string_equal(ask(&r, &g, name, DNS_T_A), "nxdomain");
    }
    assert_string_equal(ask(&r, &g, "n5.big.example", DNS_T_A), "nodata");
    buf_free(&g.text);
    buf_free(&text);
    dns_close(&r);
}

struct closer {
    struct dns_resolver *r;
    int calls;
    size_t n;
};

static void close_inside(void *arg, const struct dns_answer *ans)
{
    struct closer *c = arg;
    c->calls++;
    dns_close(c->r);
    /* The answer stays valid until the callback returns. */
    c->n = ans->n;
    assert_int_equal(ans->rr[0].u.mx.pref, 10);
    assert_string_equal(ans->rr[0].u.mx.host, "mx.x");
}

static void test_close_inside_callback(void **state)
{
    (void)state;
    struct dns_resolver r = must_parse("x MX 10 mx.x.\n");
    struct closer c = { .r = &r };
    dns_resolve(&r, "x", DNS_T_MX, close_inside, &c);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.n, 1);
    assert_null(r.ops);
}

static void test_bad_questions(void **state)
{
    (void)state;
    struct dns_resolver r = must_parse("x A 192.0.2.1\n");
    struct got g = { 0 };
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    for (size_t i = 63; i < sizeof(longname) - 1; i += 64)
        longname[i] = '.';
    static const char *const bad[] = {
        "", "..", "a..b", ".a", "a.b..", " ..x", LONG63 "x.example",
        "\xff" LONG63 ".x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (strcmp(ask(&r, &g, bad[i], DNS_T_A), "permfail") != 0)
            fail_msg("name %zu: %s", i, buf_ptr(&g.text));
        assert_non_null(g.why);
    }
    longname[253] = '\0';   /* 253 bytes: the longest name */
    longname[252] = 'a';
    assert_string_equal(ask(&r, &g, longname, DNS_T_A), "nxdomain");
    longname[253] = '.';    /* 253 + a final dot: still fine */
    longname[254] = '\0';
    assert_string_equal(ask(&r, &g, longname, DNS_T_A), "nxdomain");
    longname[253] = 'a';    /* 254 bytes */
    assert_string_equal(ask(&r, &g, longname, DNS_T_A), "permfail");
    longname[254] = 'a';    /* unterminated within the bound: still refused */
    longname[sizeof(longname) - 1] = '\0';
    assert_string_equal(ask(&r, &g, longname, DNS_T_A), "permfail");
    assert_string_equal(ask(&r, &g, LONG63 ".x", DNS_T_A), "nxdomain");
    /* Raw text: any octet but '.' and NUL is part of a label. */
    static const char *const fine[] = {
        "a b", "a\\.b", "\xc3\xa9.x", "a\tb", "x\x7f", " ", "\x01.\xff.", "a\\032b",
        "\\", "@", "\"(;)\"", /* a 63-octet label */
        ("\xff" "bcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk.x"),
    };
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++)
        if (strcmp(ask(&r, &g, fine[i], DNS_T_A), "nxdomain") != 0)
            fail_msg("name %zu: %s", i, buf_ptr(&g.text));
    memset(longname, 0xc3, 253);   /* 253 octets of 0xC3, in labels */
    for (size_t i = 63; i < 253; i += 64)
        longname[i] = '.';
    longname[253] = '\0';
    assert_string_equal(ask(&r, &g, longname, DNS_T_A), "nxdomain");
    longname[253] = '\xc3';
    longname[254] = '\0';
    assert_string_equal(ask(&r, &g, longname, DNS_T_A), "permfail");
    assert_string_equal(ask(&r, &g, "x", (enum dns_type)6), "permfail");     /* SOA */
    assert_string_equal(ask(&r, &g, "x", (enum dns_type)255), "permfail");   /* ANY */
    assert_string_equal(ask(&r, &g, "x.", DNS_T_A), "ok|A 192.0.2.1");
    buf_free(&g.text);
    dns_close(&r);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(dns_type_name(DNS_T_A), "A");
    assert_string_equal(dns_type_name(DNS_T_AAAA), "AAAA");
    assert_string_equal(dns_type_name(DNS_T_MX), "MX");
    assert_string_equal(dns_type_name(DNS_T_TXT), "TXT");
    assert_string_equal(dns_type_name(DNS_T_PTR), "PTR");
    assert_string_equal(dns_type_name(DNS_T_CNAME), "CNAME");
    assert_string_equal(dns_type_name(DNS_T_NS), "NS");
    assert_string_equal(dns_type_name(DNS_T_TLSA), "TLSA");
    assert_string_equal(dns_type_name((enum dns_type)99), "UNKNOWN");
    assert_string_equal(dns_status_name(DNS_OK), "ok");
    assert_string_equal(dns_status_name(DNS_NODATA), "nodata");
    assert_string_equal(dns_status_name(DNS_NXDOMAIN), "nxdomain");
    assert_string_equal(dns_status_name(DNS_TEMPFAIL), "tempfail");
    assert_string_equal(dns_status_name(DNS_PERMFAIL), "permfail");
    assert_string_equal(dns_sec_name(DNS_SEC_SECURE), "secure");
    assert_string_equal(dns_sec_name(DNS_SEC_INSECURE), "insecure");
    assert_string_equal(dns_sec_name(DNS_SEC_BOGUS), "bogus");
    dns_answer_free_records(NULL, 0);

    static const struct { const char *raw, *shown; } names[] = {
        { "macro%percent  space%20url-space.example.com",
          "macro\\%percent\\032\\032space\\%20url-space.example.com." },
        { "\xc3\xa9.x.", "\\195\\169.x." },
        { ".", "." },
        { "", "." },
        { "a\\b\"c;d(e)f@g$h", "a\\\\b\\\"c\\;d\\(e\\)f\\@g\\$h." },
        { "_dmarc.*.X-y9", "_dmarc.*.X-y9." },
        { "\x01\x7f\xff\t", "\\001\\127\\255\\009." },
    };
    struct buf b = { 0 };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        buf_reset(&b);
        dns_name_presentation(&b, names[i].raw);
        assert_string_equal(buf_ptr(&b), names[i].shown);
    }
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_files),
        cmocka_unit_test(test_valid_files),
        cmocka_unit_test(test_valid_prefixes),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_open_file),
        cmocka_unit_test(test_large_zone),
        cmocka_unit_test(test_close_inside_callback),
        cmocka_unit_test(test_bad_questions),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests_name("dns_zone", tests, NULL, NULL);
}
