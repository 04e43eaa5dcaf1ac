/*
 * A minimal DER reader for the certificate extensions the verifiers read themselves (the Intel
 * PCK SGX extension, the AMD VCEK/VLEK extensions). Only single-byte tags and definite,
 * minimally encoded lengths are accepted; everything is a view into the input span.
 */
#include "attest_int.h"

#include <stdlib.h>
#include <string.h>

veil_err veil__attest_der_get(struct veil_span *s, uint8_t *tag, struct veil_span *content)
{
    struct veil_span t = *s;
    uint8_t tg, l0;
    if (veil_span_get_u8(&t, &tg) != VEIL_OK || veil_span_get_u8(&t, &l0) != VEIL_OK)
        return VEIL_E_FORMAT;
    if ((tg & 0x1F) == 0x1F)
        return VEIL_E_FORMAT; /* high tag numbers are not used by these extensions */
    size_t len = 0;
    if (l0 < 0x80) {
        len = l0;
    } else {
        size_t nb = l0 & 0x7Fu;
        if (nb == 0 || nb > 4)
            return VEIL_E_FORMAT; /* indefinite or absurd length */
        for (size_t i = 0; i < nb; i++) {
            uint8_t b;
            if (veil_span_get_u8(&t, &b) != VEIL_OK)
                return VEIL_E_FORMAT;
            if (i == 0 && b == 0)
                return VEIL_E_FORMAT; /* non-minimal */
            len = (len << 8) | b;
        }
        if (len < 0x80)
            return VEIL_E_FORMAT; /* non-minimal */
    }
    if (veil_span_get_bytes(&t, len, content) != VEIL_OK)
        return VEIL_E_FORMAT;
    *tag = tg;
    *s = t;
    return VEIL_OK;
}

veil_err veil__attest_der_uint(struct veil_span c, uint64_t *v)
{
    if (c.len == 0 || c.len > 9 || (c.p[0] & 0x80) != 0)
        return VEIL_E_FORMAT;
    if (c.len > 1 && c.p[0] == 0 && (c.p[1] & 0x80) == 0)
        return VEIL_E_FORMAT; /* non-minimal */
    if (c.len == 9 && c.p[0] != 0)
        return VEIL_E_FORMAT;
    uint64_t x = 0;
    for (size_t i = 0; i < c.len; i++)
        x = (x << 8) | c.p[i];
    *v = x;
    return VEIL_OK;
}

veil_err veil__attest_oid_encode(const char *dotted, uint8_t *out, size_t cap, size_t *len)
{
    uint64_t arcs[32];
    size_t n = 0;
    const char *q = dotted;
    while (*q) {
        if (n == 32 || *q < '0' || *q > '9')
            return VEIL_E_INVALID;
        uint64_t a = 0;
        while (*q >= '0' && *q <= '9') {
            if (a > (UINT64_MAX - 9) / 10)
                return VEIL_E_INVALID;
            a = a * 10 + (uint64_t)(*q - '0');
            q++;
        }
        arcs[n++] = a;
        if (*q == '.')
            q++;
        else if (*q != '\0')
            return VEIL_E_INVALID;
    }
    if (n < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] > 39))
        return VEIL_E_INVALID;
    size_t o = 0;
    for (size_t i = 1; i < n; i++) {
        uint64_t a = i == 1 ? arcs[0] * 40 + arcs[1] : arcs[i];
        uint8_t tmp[10];
        size_t k = 0;
        do {
            tmp[k++] = (uint8_t)(a & 0x7F);
            a >>= 7;
        } while (a != 0);
        if (o + k > cap)
            return VEIL_E_LIMIT;
        while (k > 0) {
            k--;
            out[o++] = (uint8_t)(tmp[k] | (k > 0 ? 0x80 : 0));
        }
    }
    *len = o;
    return VEIL_OK;
}
