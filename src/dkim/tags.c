/*
 * dkim/tags.c - the DKIM tag-list parser (RFC 6376 3.2) and base64
 * (RFC 6376 2.4 base64string: FWS may appear anywhere).
 *
 *   tag-list  = tag-spec *( ";" tag-spec ) [ ";" ]
 *   tag-spec  = [FWS] tag-name [FWS] "=" [FWS] tag-value [FWS]
 *   tag-name  = ALPHA *ALNUMPUNC          (ALNUMPUNC = ALPHA / DIGIT / "_")
 *   tag-value = [ tval *( 1*(WSP / FWS) tval ) ]   tval = 1*VALCHAR (%x21-3A / %x3C-7E)
 *
 * FWS is accepted as any run of SP, HT, CR and LF: the header splitter has
 * already decided what a continuation line is. Tag names are case-sensitive;
 * a name given twice makes the whole list invalid (3.2). Everything is
 * bounded by (s, n); no NUL is needed or honoured.
 */
#include <string.h>

#include <openssl/evp.h>

#include "core/str.h"
#include "dkim/dkim_int.h"

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_valchar(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e && c != ';';
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && is_ws(s[i]))
        i++;
    return i;
}

/* Scan one tag-spec starting at i (whitespace skipped); returns the index
 * just past it (at ';' or n), or (size_t)-1 with *why. */
static size_t one_tag(const char *s, size_t n, size_t i, struct dkim_tag *t, const char **why)
{
    size_t start = i;
    if (i >= n || !ascii_alpha(s[i]))
        return *why = "tag name must start with a letter", (size_t)-1;
    while (i < n && (ascii_alpha(s[i]) || ascii_digit(s[i]) || s[i] == '_'))
        i++;
    t->name = s + start;
    t->name_len = i - start;
    i = skip_ws(s, n, i);
    if (i >= n || s[i] != '=')
        return *why = "tag without '='", (size_t)-1;
    t->raw_start = ++i;
    while (i < n && s[i] != ';') {
        if (!is_ws(s[i]) && !is_valchar((unsigned char)s[i]))
            return *why = "invalid byte in tag value", (size_t)-1;
        i++;
    }
    t->raw_end = i;
    size_t a = skip_ws(s, i, t->raw_start), b = i;
    while (b > a && is_ws(s[b - 1]))
        b--;
    t->val = s + a;
    t->val_len = b - a;
    return i;
}

int dkim_tags_parse(const char *s, size_t n, struct dkim_tags *out, const char **why)
{
    size_t i = 0;
    out->n = 0;
    for (;;) {
        i = skip_ws(s, n, i);
        if (i >= n)
            return 0;   /* empty list, or a trailing ';' */
        if (out->n == DKIM_MAX_TAGS)
            return *why = "too many tags", -1;
        struct dkim_tag *t = &out->tag[out->n];
        i = one_tag(s, n, i, t, why);
        if (i == (size_t)-1)
            return -1;
        for (size_t k = 0; k < out->n; k++) {
            if (out->tag[k].name_len == t->name_len &&
                memcmp(out->tag[k].name, t->name, t->name_len) == 0)
                return *why = "duplicate tag", -1;
        }
        out->n++;
        if (i >= n)
            return 0;
        i++;   /* ';' */
        size_t j = skip_ws(s, n, i);
        if (j < n && s[j] == ';')
            return *why = "empty tag-spec", -1;
    }
}

const struct dkim_tag *dkim_tag_find(const struct dkim_tags *t, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < t->n; i++) {
        if (t->tag[i].name_len == len && memcmp(t->tag[i].name, name, len) == 0)
            return &t->tag[i];
    }
    return NULL;
}

bool dkim_tag_is(const struct dkim_tag *t, const char *lit)
{
    return t != NULL && str_ieq(t->val, t->val_len, lit);
}

/* Does the colon-separated list in t hold word (case-insensitive)? */
bool dkim_tag_list_has(const struct dkim_tag *t, const char *word)
{
    size_t i = 0;
    while (i <= t->val_len) {
        size_t j = i;
        while (j < t->val_len && t->val[j] != ':')
            j++;
        size_t a = i, b = j;
        while (a < b && strchr(" \t\r\n", t->val[a]) != NULL)
            a++;
        while (b > a && strchr(" \t\r\n", t->val[b - 1]) != NULL)
            b--;
        if (str_ieq(t->val + a, b - a, word))
            return true;
        i = j + 1;
    }
    return false;
}
