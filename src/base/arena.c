/*
 * Arenas: bump allocation from a chain of blocks, freed in one call (STYLE rule 22). Used
 * for request-lifetime data such as decoded headers and messages. A cap on the total bytes
 * handed out bounds what one request can make us allocate.
 */
#include "veil/base.h"

#include <string.h>

struct veil_arena_block {
    struct veil_arena_block *next;
    size_t size;
    size_t used;
    _Alignas(64) uint8_t data[];
};

void veil_arena_init(struct veil_arena *a, size_t block_size, size_t max)
{
    a->head = NULL;
    a->block_size = block_size < 256 ? 256 : block_size;
    a->total = 0;
    a->max = max;
}

void veil_arena_release(struct veil_arena *a)
{
    struct veil_arena_block *b = a->head;
    while (b != NULL) {
        struct veil_arena_block *next = b->next;
        veil_aligned_free(b);
        b = next;
    }
    a->head = NULL;
    a->total = 0;
}

veil_err veil_arena_alloc_uninit(struct veil_arena *a, size_t size, size_t align, void **out)
{
    *out = NULL;
    if (align == 0 || (align & (align - 1)) != 0 || align > 64)
        return VEIL_E_INVALID;
    size_t total;
    if (__builtin_add_overflow(a->total, size, &total) || total > a->max)
        return VEIL_E_LIMIT;
    struct veil_arena_block *b = a->head;
    size_t off = 0;
    if (b != NULL) {
        off = (b->used + align - 1) & ~(align - 1);
        if (off > b->size || b->size - off < size)
            b = NULL;
    }
    if (b == NULL) {
        size_t bsize = size > a->block_size ? size : a->block_size;
        size_t alloc;
        if (__builtin_add_overflow(bsize, sizeof(struct veil_arena_block), &alloc))
            return VEIL_E_LIMIT;
        b = veil_aligned_alloc(64, alloc);
        if (b == NULL)
            return VEIL_E_NOMEM;
        b->size = bsize;
        b->used = 0;
        b->next = a->head;
        a->head = b;
        off = 0;
    }
    void *p = b->data + off;
    b->used = off + size;
    a->total = total;
    *out = p;
    return VEIL_OK;
}

veil_err veil_arena_alloc(struct veil_arena *a, size_t size, size_t align, void **out)
{
    veil_err rc = veil_arena_alloc_uninit(a, size, align, out);
    if (rc == VEIL_OK && size > 0)
        memset(*out, 0, size);
    return rc;
}

veil_err veil_arena_allocarray(struct veil_arena *a, size_t n, size_t size, size_t align,
                               void **out)
{
    size_t total;
    *out = NULL;
    if (__builtin_mul_overflow(n, size, &total))
        return VEIL_E_LIMIT;
    return veil_arena_alloc(a, total, align, out);
}

veil_err veil_arena_strdup(struct veil_arena *a, struct veil_span s, char **out)
{
    void *p;
    *out = NULL;
    if (s.len == SIZE_MAX)
        return VEIL_E_LIMIT;
    veil_err rc = veil_arena_alloc(a, s.len + 1, 1, &p);
    if (rc != VEIL_OK)
        return rc;
    if (s.len > 0)
        memcpy(p, s.p, s.len);
    ((char *)p)[s.len] = '\0';
    *out = p;
    return VEIL_OK;
}
