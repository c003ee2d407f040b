/*
 * signing.c - DKIM signing keys of the daemon; see signing.h.
 */
#include "net/signing.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/xmalloc.h"
#include "dkim/dkim.h"

#define KEY_FILE_MAX (64 * 1024)

struct signing_key {
    char *domain, *selector;
    struct dkim_key *key;
};

struct signing {
    unsigned refs;
    struct signing_key *keys;
    size_t n;
};

static int read_small_file(const char *path, struct buf *out, struct buf *err)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        buf_printf(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0 && buf_size(out) <= KEY_FILE_MAX)
        buf_append(out, chunk, got);
    int bad = ferror(f);
    fclose(f);
    if (bad || buf_size(out) > KEY_FILE_MAX) {
        buf_printf(err, "%s: %s", path, bad ? "read error" : "too large for a key file");
        return -1;
    }
    return 0;
}

int signing_load(const struct mw_config *c, struct signing **out, struct buf *err)
{
    *out = NULL;
    if (c->ndkim_keys == 0)
        return 0;
    struct signing *s = xcalloc(1, sizeof(*s));
    s->refs = 1;
    s->keys = xcalloc(c->ndkim_keys, sizeof(*s->keys));
    for (size_t i = 0; i < c->ndkim_keys; i++) {
        const struct mw_dkim_key *k = &c->dkim_keys[i];
        struct buf text, why;
        buf_init(&text);
        buf_init(&why);
        struct dkim_key *key = NULL;
        if (read_small_file(k->key_file, &text, err) == 0) {
            key = dkim_key_load_pem(buf_ptr(&text), buf_size(&text), &why);
            if (key == NULL)
                buf_printf(err, "%s: %s", k->key_file, buf_ptr(&why));
        }
        if (text.data)
            explicit_bzero(text.data, text.cap);
        buf_free(&text);
        buf_free(&why);
        if (key == NULL) {
            signing_unref(s);
            return -1;
        }
        s->keys[s->n].domain = xstrdup(k->domain);
        s->keys[s->n].selector = xstrdup(k->selector);
        s->keys[s->n++].key = key;
    }
    *out = s;
    return 0;
}

struct signing *signing_ref(struct signing *s)
{
    if (s)
        s->refs++;
    return s;
}

void signing_unref(struct signing *s)
{
    if (s == NULL || --s->refs > 0)
        return;
    for (size_t i = 0; i < s->n; i++) {
        xfree(s->keys[i].domain);
        xfree(s->keys[i].selector);
        dkim_key_free(s->keys[i].key);
    }
    xfree(s->keys);
    xfree(s);
}

bool signing_has_domain(const struct signing *s, const char *domain)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (strcmp(s->keys[i].domain, domain) == 0)
            return true;
    return false;
}

int signing_sign(const struct signing *s, const char *domain, const char *msg, size_t n,
                 time_t now, struct buf *out, struct buf *err)
{
    int count = 0;
    for (size_t i = 0; s && i < s->n; i++) {
        if (strcmp(s->keys[i].domain, domain) != 0)
            continue;
        struct dkim_sign_opts o = {
            .domain = s->keys[i].domain,
            .selector = s->keys[i].selector,
            .key = s->keys[i].key,
            .hcanon = DKIM_CANON_RELAXED,
            .bcanon = DKIM_CANON_RELAXED,
            .t = (uint64_t)now,
        };
        if (dkim_sign(&o, msg, n, out, err) < 0)
            return -1;
        count++;
    }
    return count;
}
