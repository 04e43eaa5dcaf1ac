/*
 * Growable byte buffers with a hard cap fixed at init (STYLE rule 23): input can make a
 * buffer fail with VEIL_E_LIMIT, never grow without bound. Secret buffers are wiped on every
 * move and on release.
 */
#include "veil/base.h"

#include <stdio.h>
#include <string.h>

void veil_buf_init(struct veil_buf *b, size_t max)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->secret = false;
}

void veil_buf_init_secret(struct veil_buf *b, size_t max)
{
    veil_buf_init(b, max);
    b->secret = true;
}

void veil_buf_release(struct veil_buf *b)
{
    if (b->p != NULL && b->secret)
        veil_memzero(b->p, b->cap);
    veil_free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}

void veil_buf_reset(struct veil_buf *b)
{
    if (b->p != NULL && b->secret)
        veil_memzero(b->p, b->len);
    b->len = 0;
}

size_t veil_buf_reserve_cap(const struct veil_buf *b, size_t n)
{
    size_t need;
    /* One spare byte keeps appendf's NUL terminator inside the allocation. */
    if (__builtin_add_overflow(b->len, n, &need) || need > b->max)
        return 0;
    if (need + 1 <= b->cap)
        return b->cap;
    size_t cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need + 1) {
        if (cap > SIZE_MAX / 2) {
            cap = need + 1;
            break;
        }
        cap *= 2;
    }
    if (cap > b->max + 1 && b->max < SIZE_MAX)
        cap = b->max + 1;
    return cap;
}

veil_err veil_buf_reserve(struct veil_buf *b, size_t n)
{
    size_t cap = veil_buf_reserve_cap(b, n);
    if (cap == 0)
        return VEIL_E_LIMIT;
    if (cap == b->cap)
        return VEIL_OK;
    uint8_t *p;
    if (b->secret) {
        /* realloc could leave a stale copy of the secret behind; move it by hand. */
        p = veil_malloc(cap);
        if (p == NULL)
            return VEIL_E_NOMEM;
        if (b->p != NULL) {
            memcpy(p, b->p, b->len);
            veil_memzero(b->p, b->cap);
            veil_free(b->p);
        }
    } else {
        p = veil_realloc(b->p, cap);
        if (p == NULL)
            return VEIL_E_NOMEM;
    }
    b->p = p;
    b->cap = cap;
    return VEIL_OK;
}

veil_err veil_buf_append(struct veil_buf *b, const void *p, size_t n)
{
    veil_err rc = veil_buf_reserve(b, n);
    if (rc != VEIL_OK)
        return rc;
    if (n > 0)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
    return VEIL_OK;
}

veil_err veil_buf_append_str(struct veil_buf *b, const char *s)
{
    return veil_buf_append(b, s, strlen(s));
}

veil_err veil_buf_append_u8(struct veil_buf *b, uint8_t v)
{
    return veil_buf_append(b, &v, 1);
}

static veil_err append_be(struct veil_buf *b, uint64_t v, size_t n)
{
    uint8_t tmp[8];
    for (size_t i = 0; i < n; i++)
        tmp[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    return veil_buf_append(b, tmp, n);
}

veil_err veil_buf_append_u16be(struct veil_buf *b, uint16_t v)
{
    return append_be(b, v, 2);
}

veil_err veil_buf_append_u32be(struct veil_buf *b, uint32_t v)
{
    return append_be(b, v, 4);
}

veil_err veil_buf_append_u64be(struct veil_buf *b, uint64_t v)
{
    return append_be(b, v, 8);
}

veil_err veil_buf_vappendf(struct veil_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return VEIL_E_INVALID;
    veil_err rc = veil_buf_reserve(b, (size_t)n);
    if (rc != VEIL_OK)
        return rc;
    vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return VEIL_OK;
}

veil_err veil_buf_appendf(struct veil_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    veil_err rc = veil_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

struct veil_span veil_buf_span(const struct veil_buf *b)
{
    return veil_span_make(b->p, b->len);
}

uint8_t *veil_buf_steal(struct veil_buf *b, size_t *len)
{
    uint8_t *p = b->p;
    if (len != NULL)
        *len = b->len;
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
