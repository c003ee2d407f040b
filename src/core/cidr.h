/*
 * cidr - IPv4/IPv6 networks in CIDR notation ("192.0.2.0/24", "::1",
 * "2001:db8::/32") and address matching.
 *
 * A bare address is a /32 or /128. Host bits beyond the prefix must be
 * zero ("10.0.0.1/8" is refused: it is usually a typo for a host). An
 * IPv4-mapped IPv6 address ("::ffff:192.0.2.1") matches IPv4 networks.
 *
 *   cidr_parse(s, &net)            0 or -1
 *   cidr_match(net, ip_text)       the address is inside the network
 *   cidr_match_any(nets, n, ip)    ... inside any of them
 *   cidr_client_key(ip, v6_prefix, out, outlen)
 *                                  the key one client's limits are counted
 *                                  under: an IPv4 address (also when mapped
 *                                  in IPv6) as it is, an IPv6 address as its
 *                                  /v6_prefix network ("2001:db8:1:2::/64"),
 *                                  since one host holds a whole /64; text
 *                                  that is no address, as it is
 */
#ifndef MW_CORE_CIDR_H
#define MW_CORE_CIDR_H

#include <stdbool.h>
#include <stddef.h>

struct cidr {
    int family;              /* AF_INET or AF_INET6 */
    unsigned char addr[16];  /* network bytes, 4 used for AF_INET */
    unsigned prefix;
};

int cidr_parse(const char *s, struct cidr *out);
bool cidr_match(const struct cidr *net, const char *ip);
bool cidr_match_any(const struct cidr *nets, size_t n, const char *ip);
void cidr_client_key(const char *ip, unsigned v6_prefix, char *out, size_t outlen);

#endif
