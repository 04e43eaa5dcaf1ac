/*
 * Checked readers over untrusted bytes (STYLE rule 25). Every reader checks the remaining
 * length before touching memory and consumes only on success, so a parser built from them
 * cannot read out of bounds whatever the input.
 */
#include "veil/base.h"

#include <string.h>

struct veil_span veil_span_from_str(const char *s)
{
    return veil_span_make(s, strlen(s));
}

veil_err veil_span_get_bytes(struct veil_span *s, size_t n, struct veil_span *sub)
{
    if (s->len < n)
        return VEIL_E_INCOMPLETE;
    sub->p = s->p;
    sub->len = n;
    if (n > 0) { /* an empty span may have a NULL pointer: no arithmetic on it */
        s->p += n;
        s->len -= n;
    }
    return VEIL_OK;
}

veil_err veil_span_skip(struct veil_span *s, size_t n)
{
    struct veil_span sub;
    return veil_span_get_bytes(s, n, &sub);
}

veil_err veil_span_get_copy(struct veil_span *s, size_t n, void *dst)
{
    struct veil_span sub;
    veil_err rc = veil_span_get_bytes(s, n, &sub);
    if (rc == VEIL_OK && n > 0)
        memcpy(dst, sub.p, n);
    return rc;
}

static veil_err get_uint(struct veil_span *s, size_t n, bool big_endian, uint64_t *v)
{
    struct veil_span sub;
    veil_err rc = veil_span_get_bytes(s, n, &sub);
    if (rc != VEIL_OK)
        return rc;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        size_t idx = big_endian ? i : n - 1 - i;
        x = (x << 8) | sub.p[idx];
    }
    *v = x;
    return VEIL_OK;
}

veil_err veil_span_get_u8(struct veil_span *s, uint8_t *v)
{
    uint64_t x;
    veil_err rc = get_uint(s, 1, true, &x);
    if (rc == VEIL_OK)
        *v = (uint8_t)x;
    return rc;
}

#define SPAN_UINT(fn, type, n, be)                                                                 \
    veil_err fn(struct veil_span *s, type *v)                                                      \
    {                                                                                              \
        uint64_t x;                                                                                \
        veil_err rc = get_uint(s, n, be, &x);                                                      \
        if (rc == VEIL_OK)                                                                         \
            *v = (type)x;                                                                          \
        return rc;                                                                                 \
    }
SPAN_UINT(veil_span_get_u16be, uint16_t, 2, true)
SPAN_UINT(veil_span_get_u32be, uint32_t, 4, true)
SPAN_UINT(veil_span_get_u64be, uint64_t, 8, true)
SPAN_UINT(veil_span_get_u16le, uint16_t, 2, false)
SPAN_UINT(veil_span_get_u32le, uint32_t, 4, false)
SPAN_UINT(veil_span_get_u64le, uint64_t, 8, false)
#undef SPAN_UINT

veil_err veil_span_get_until(struct veil_span *s, uint8_t c, struct veil_span *sub)
{
    const uint8_t *hit = s->len > 0 ? memchr(s->p, c, s->len) : NULL;
    if (hit == NULL)
        return VEIL_E_INCOMPLETE;
    size_t n = (size_t)(hit - s->p);
    sub->p = s->p;
    sub->len = n;
    s->p += n + 1;
    s->len -= n + 1;
    return VEIL_OK;
}

veil_err veil_span_get_varint(struct veil_span *s, uint64_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < 10; i++) {
        if (i >= s->len)
            return VEIL_E_INCOMPLETE;
        uint8_t b = s->p[i];
        if (i == 9 && b > 1)
            return VEIL_E_FORMAT;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            s->p += i + 1;
            s->len -= i + 1;
            *v = x;
            return VEIL_OK;
        }
    }
    return VEIL_E_FORMAT;
}

veil_err veil_span_expect_end(const struct veil_span *s)
{
    return s->len == 0 ? VEIL_OK : VEIL_E_FORMAT;
}

bool veil_span_eq(struct veil_span a, struct veil_span b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

bool veil_span_eq_str(struct veil_span a, const char *s)
{
    return veil_span_eq(a, veil_span_from_str(s));
}

bool veil_span_starts_with(struct veil_span a, const char *prefix)
{
    size_t n = strlen(prefix);
    return a.len >= n && memcmp(a.p, prefix, n) == 0;
}

static bool is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

struct veil_span veil_span_trim(struct veil_span s)
{
    while (s.len > 0 && is_space(s.p[0])) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && is_space(s.p[s.len - 1]))
        s.len--;
    return s;
}
