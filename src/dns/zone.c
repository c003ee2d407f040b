/*
 * zone.c - the zone-file backend: every answer comes from one zone master
 * file (RFC 1035 section 5), for --dns-zone, tests and offline use. This
 * file holds the record table, the lookups and the file reading; the
 * master-file syntax is parsed in zone_parse.c, which fills the table
 * through dns/zone.h.
 *
 *   dns_zone_open(path, out, err)        dns.h; 0, or -1 and "path:line: what"
 *   dns_zone_parse(name, text, len, ...) dns/zone.h; the same from memory
 *                                        (zone_parse.c)
 *
 * Lookups are synchronous (cb runs before dns_resolve() returns) against a
 * hash table of names as raw octets, ASCII letters lower-cased (any other
 * byte, a space or 0xC3, matches only itself): a name with no records that
 * is not an ancestor of a name with records is NXDOMAIN; a name that
 * exists without the type is NODATA; a CNAME at the name is followed for other types, up
 * to 8 times, and the answer holds the final records (a longer chain or a
 * loop is DNS_TEMPFAIL). A $TEMPFAIL name (of the type, if one was given)
 * answers DNS_TEMPFAIL. Everything is DNS_SEC_INSECURE. The zone is
 * immutable after parsing; closing it from inside a callback is safe.
 *
 * Trust: the table holds only what the parser checked; a stored CNAME
 * target that is not a valid name is a bug (abort).
 */
#include "dns/zone.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/str.h"
#include "core/xmalloc.h"

#define MAX_CNAME_HOPS 8

/* ------------------------------------------------------------------ table */

static uint64_t name_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;   /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static struct znode *zone_find(const struct zone *z, const char *key, size_t len)
{
    if (z->nslots == 0)
        return NULL;
    uint64_t h = name_hash(key, len);
    for (size_t i = h & (z->nslots - 1);; i = (i + 1) & (z->nslots - 1)) {
        uint32_t s = z->slots[i];
        if (s == 0)
            return NULL;
        struct znode *nd = &z->nodes[s - 1];
        if (nd->hash == h && nd->len == len && memcmp(nd->name, key, len) == 0)
            return nd;
    }
}

static void slot_put(uint32_t *slots, size_t nslots, uint64_t h, uint32_t v)
{
    size_t i = h & (nslots - 1);
    while (slots[i] != 0)
        i = (i + 1) & (nslots - 1);
    slots[i] = v;
}

/* The index of the node for key, created if missing. */
size_t zone_node(struct zone *z, const char *key, size_t len)
{
    struct znode *found = zone_find(z, key, len);
    if (found != NULL)
        return (size_t)(found - z->nodes);
    if ((z->nnodes + 1) * 4 > z->nslots * 3) {   /* load factor 3/4 */
        size_t ns = z->nslots ? z->nslots * 2 : 64;
        uint32_t *slots = xcalloc(ns, sizeof(*slots));
        for (size_t i = 0; i < z->nnodes; i++)
            slot_put(slots, ns, z->nodes[i].hash, (uint32_t)(i + 1));
        xfree(z->slots);
        z->slots = slots;
        z->nslots = ns;
    }
    if (z->nnodes == z->capnodes) {
        z->capnodes = z->capnodes ? z->capnodes * 2 : 64;
        z->nodes = xreallocarray(z->nodes, z->capnodes, sizeof(*z->nodes));
    }
    if (z->nnodes >= UINT32_MAX - 1)
        abort();   /* four billion names: not a zone file this code serves */
    struct znode *nd = &z->nodes[z->nnodes];
    memset(nd, 0, sizeof(*nd));
    nd->name = xmemdup0(key, len);
    nd->len = len;
    nd->hash = name_hash(key, len);
    slot_put(z->slots, z->nslots, nd->hash, (uint32_t)(z->nnodes + 1));
    return z->nnodes++;
}

/* Mark key and all its ancestors as existing (empty non-terminals). */
size_t zone_mark_exists(struct zone *z, const char *key, size_t len)
{
    size_t idx = zone_node(z, key, len);
    if (z->nodes[idx].flags & ZN_EXISTS)
        return idx;
    z->nodes[idx].flags |= ZN_EXISTS;
    size_t i = 0;
    while (i < len) {
        while (i < len && key[i] != '.')
            i++;
        size_t from = i < len ? i + 1 : len;   /* the parent; the root at the end */
        size_t p = zone_node(z, key + from, len - from);
        if (z->nodes[p].flags & ZN_EXISTS)
            break;
        z->nodes[p].flags |= ZN_EXISTS;
        i = from;
        if (from == len)
            break;
    }
    return idx;
}

struct rrset *znode_set(struct znode *nd, unsigned type)
{
    for (size_t i = 0; i < nd->nsets; i++)
        if ((unsigned)nd->sets[i].type == type)
            return &nd->sets[i];
    return NULL;
}

void zone_free(struct zone *z)
{
    for (size_t i = 0; i < z->nnodes; i++) {
        struct znode *nd = &z->nodes[i];
        for (size_t j = 0; j < nd->nsets; j++)
            dns_answer_free_records(nd->sets[j].rr, nd->sets[j].n);
        xfree(nd->sets);
        xfree(nd->tf_types);
        xfree(nd->name);
    }
    xfree(z->nodes);
    xfree(z->slots);
    xfree(z);
}

/* ---------------------------------------------------------------- lookups */

/* Lower-case (ASCII letters only) a raw-text name into key (NAME_MAX_LEN + 1 bytes), dropping the final
 * dot; "." becomes "". Reads at most NAME_MAX_LEN + 2 bytes of name. */
static int canon_key(const char *name, char *key, size_t *len)
{
    size_t n = 0;
    while (name[n] != '\0') {
        if (n > NAME_MAX_LEN)
            return -1;
        n++;
    }
    if (n > 0 && name[n - 1] == '.')
        n--;
    if (n > NAME_MAX_LEN)
        return -1;
    for (size_t i = 0; i < n; i++)
        key[i] = ascii_lower(name[i]);
    key[n] = '\0';
    *len = n;
    return 0;
}

static bool tempfails(const struct znode *nd, enum dns_type type)
{
    if (nd->flags & ZN_TEMPFAIL)
        return true;
    for (size_t i = 0; i < nd->ntf; i++)
        if (nd->tf_types[i] == (uint16_t)type)
            return true;
    return false;
}

static void zone_lookup(struct zone *z, const char *name, enum dns_type type,
                        struct dns_answer *ans)
{
    char key[NAME_MAX_LEN + 1];
    size_t len;
    if (canon_key(name, key, &len) < 0) {
        ans->status = DNS_PERMFAIL;
        ans->why = "name too long";
        return;
    }
    for (unsigned hops = 0;; hops++) {
        struct znode *nd = zone_find(z, key, len);
        if (nd != NULL && tempfails(nd, type)) {
            ans->status = DNS_TEMPFAIL;
            ans->why = "$TEMPFAIL in the zone file";
            return;
        }
        if (nd == NULL || !(nd->flags & ZN_EXISTS)) {
            ans->status = DNS_NXDOMAIN;
            return;
        }
        struct rrset *rs = znode_set(nd, type);
        if (rs != NULL) {
            ans->status = DNS_OK;
            ans->rr = rs->rr;
            ans->n = rs->n;
            return;
        }
        struct rrset *cn = type == DNS_T_CNAME ? NULL : znode_set(nd, DNS_T_CNAME);
        if (cn == NULL) {
            ans->status = DNS_NODATA;
            return;
        }
        if (hops == MAX_CNAME_HOPS) {
            ans->status = DNS_TEMPFAIL;
            ans->why = "CNAME chain too long or a loop";
            return;
        }
        if (canon_key(cn->rr[0].u.name, key, &len) < 0)
            abort();   /* the parser stores only valid names */
    }
}

static void zone_resolve(void *impl, const char *name, enum dns_type type, dns_cb cb, void *arg)
{
    struct zone *z = impl;
    struct dns_answer ans = { .sec = DNS_SEC_INSECURE };
    zone_lookup(z, name, type, &ans);
    z->busy++;
    cb(arg, &ans);
    z->busy--;
    if (z->closed && z->busy == 0)
        zone_free(z);
}

static void zone_close(void *impl)
{
    struct zone *z = impl;
    if (z->busy > 0)
        z->closed = true;   /* freed when the last callback returns */
    else
        zone_free(z);
}

const struct dns_backend zone_ops = { .resolve = zone_resolve, .close = zone_close };

/* --------------------------------------------------------------- the file */

int dns_zone_open(const char *path, struct dns_resolver *out, struct buf *err)
{
    out->ops = NULL;
    out->impl = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        buf_printf(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct buf text = { 0 };
    for (;;) {
        buf_reserve(&text, 65536);
        ssize_t n = read(fd, text.data + text.len, text.cap - text.len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            buf_printf(err, "%s: %s", path, strerror(errno));
            close(fd);
            buf_free(&text);
            return -1;
        }
        if (n == 0)
            break;
        text.len += (size_t)n;
        text.data[text.len] = '\0';
    }
    close(fd);
    int rc = dns_zone_parse(path, buf_ptr(&text), buf_size(&text), out, err);
    buf_free(&text);
    return rc;
}
