/*
 * cidr.c - network parsing and matching; see cidr.h.
 */
#include "core/cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "core/str.h"

int cidr_parse(const char *s, struct cidr *out)
{
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(addr))
        return -1;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    struct cidr c;
    memset(&c, 0, sizeof(c));
    unsigned max;
    if (inet_pton(AF_INET, addr, c.addr) == 1) {
        c.family = AF_INET, max = 32;
    } else if (inet_pton(AF_INET6, addr, c.addr) == 1) {
        c.family = AF_INET6, max = 128;
    } else {
        return -1;
    }
    c.prefix = max;
    if (slash) {
        uint64_t v;
        if (str_to_u64(slash + 1, strlen(slash + 1), max, &v) < 0)
            return -1;
        c.prefix = (unsigned)v;
    }
    for (unsigned bit = c.prefix; bit < max; bit++)
        if (c.addr[bit / 8] & (0x80 >> (bit % 8)))
            return -1;
    *out = c;
    return 0;
}

static bool prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

bool cidr_match(const struct cidr *net, const char *ip)
{
    unsigned char a[16];
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (inet_pton(AF_INET, ip, a) == 1)
        return net->family == AF_INET && prefix_equal(a, net->addr, net->prefix);
    if (inet_pton(AF_INET6, ip, a) != 1)
        return false;
    if (net->family == AF_INET6)
        return prefix_equal(a, net->addr, net->prefix);
    return memcmp(a, mapped, 12) == 0 && prefix_equal(a + 12, net->addr, net->prefix);
}

bool cidr_match_any(const struct cidr *nets, size_t n, const char *ip)
{
    for (size_t i = 0; i < n; i++)
        if (cidr_match(&nets[i], ip))
            return true;
    return false;
}

void cidr_client_key(const char *ip, unsigned v6_prefix, char *out, size_t outlen)
{
    unsigned char a[16];
    char text[INET6_ADDRSTRLEN];
    if (inet_pton(AF_INET6, ip, a) == 1) {
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (memcmp(a, mapped, sizeof(mapped)) == 0 &&
            inet_ntop(AF_INET, a + 12, text, sizeof(text)) != NULL) {
            snprintf(out, outlen, "%s", text);
            return;
        }
        if (v6_prefix < 128) {
            for (unsigned bit = v6_prefix; bit < 128; bit++)
                a[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
            if (inet_ntop(AF_INET6, a, text, sizeof(text)) != NULL) {
                snprintf(out, outlen, "%s/%u", text, v6_prefix);
                return;
            }
        }
    }
    snprintf(out, outlen, "%s", ip);
}
