/*
 * idna - domain names in the form that reaches DNS and every comparison
 * (RFC 8616: U-labels become A-labels before any lookup), through libidn2:
 * IDNA2008 with the UTS #46 non-transitional mapping, input normalized to
 * NFC.
 *
 *   idna_to_ascii(name)   an xmalloc'd lower-case copy of name with every
 *                         U-label as its A-label ("bücher.example" ->
 *                         "xn--bcher-kva.example"); a name that is ASCII
 *                         already is only lower-cased (underscores, as in
 *                         _dmarc and DKIM selectors, stay). NULL when name
 *                         holds a label that is not a valid U-label, or is
 *                         not UTF-8: such a name is refused, never passed
 *                         through.
 *   idna_is_ascii(name)   no byte >= 0x80
 *
 * Trusts nothing: name comes from the network.
 */
#ifndef MW_CORE_IDNA_H
#define MW_CORE_IDNA_H

#include <stdbool.h>

char *idna_to_ascii(const char *name);
bool idna_is_ascii(const char *name);

#endif
