/*
 * dns/zone.h - private to src/dns/: the zone-file backend's second entry
 * point, for tests and fuzzing: the same parser as dns_zone_open() (dns.h),
 * fed from memory; and what the backend's two halves share: the record
 * table (zone.c) that the parser (zone_parse.c) fills.
 *
 * dns_zone_parse(name, text, len, out, err) parses len bytes at text (no
 * NUL terminator needed, NUL bytes are an error) as a zone master file;
 * name is the file name used in "name:line: what" errors. Returns 0 and a
 * resolver in *out, or -1 with the error appended to err.
 *
 * The table, for zone_parse.c only (zone.c owns it and answers from it):
 *   zone_node(z, key, len)         index of key's node, created if missing
 *   zone_mark_exists(z, key, len)  the same, and marks key and its ancestors
 *                                  as existing
 *   znode_set(nd, type)            nd's records of type, or NULL
 *   zone_free(z)                   frees z and everything it holds
 *   zone_ops                       the dns_backend that answers from a zone
 * key is a raw-text name (dns.h) with ASCII letters lower-cased (no other
 * byte is folded), without the final dot, the root "". Creating a node may
 * move z->nodes: keep indexes, not pointers, across zone_node() and
 * zone_mark_exists().
 */
#ifndef MW_DNS_ZONE_H
#define MW_DNS_ZONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "dns/dns.h"

int dns_zone_parse(const char *name, const char *text, size_t len, struct dns_resolver *out,
                   struct buf *err);

/* ------------------------------------------------- shared by zone*.c only */

#define NAME_MAX_LEN 253         /* octets of raw text, without the final dot */

struct rrset {
    enum dns_type type;
    struct dns_rr *rr;
    size_t n, cap;
};

enum {
    ZN_EXISTS = 1,     /* has records, an SOA, or a descendant that does */
    ZN_TEMPFAIL = 2,   /* $TEMPFAIL name: every type */
    ZN_SOA = 4,
};

struct znode {
    char *name;        /* raw octets, ASCII lower case, no final dot, root "" */
    size_t len;
    uint64_t hash;
    unsigned flags;
    struct rrset *sets;
    size_t nsets;
    uint16_t *tf_types;   /* $TEMPFAIL name TYPE */
    size_t ntf;
};

struct zone {
    struct znode *nodes;
    size_t nnodes, capnodes;
    uint32_t *slots;   /* node index + 1; 0 is empty */
    size_t nslots;     /* a power of two */
    unsigned busy;     /* callbacks running */
    bool closed;
};

size_t zone_node(struct zone *z, const char *key, size_t len);
size_t zone_mark_exists(struct zone *z, const char *key, size_t len);
struct rrset *znode_set(struct znode *nd, unsigned type);
void zone_free(struct zone *z);

extern const struct dns_backend zone_ops;

#endif
