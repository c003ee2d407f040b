/*
 * core/idna.c - U-labels to A-labels through libidn2; see idna.h.
 */
#include "core/idna.h"

#include <stdlib.h>
#include <string.h>

#include <idn2.h>

#include "core/str.h"
#include "core/xmalloc.h"

bool idna_is_ascii(const char *name)
{
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p >= 0x80)
            return false;
    return true;
}

char *idna_to_ascii(const char *name)
{
    if (idna_is_ascii(name)) {
        char *d = xstrdup(name);
        str_lower(d);
        return d;
    }
    if (!str_utf8_valid(name, strlen(name)))
        return NULL;
    char *out = NULL;
    if (idn2_to_ascii_8z(name, &out, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) != IDN2_OK) {
        idn2_free(out);
        return NULL;
    }
    char *d = xstrdup(out);
    idn2_free(out);
    str_lower(d);
    return d;
}
