/*
 * Allocation wrappers: the only place that calls malloc and free (STYLE rule 21), so tests
 * can make the Nth allocation fail (VEIL_TEST_FAIL_ALLOC=N or veil_alloc_fail_after) and
 * walk every error path.
 */
#include "veil/base.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static _Atomic uint64_t g_count;
static _Atomic uint64_t g_fail_at; /* 0 = never; else the count at which failures start */
static _Atomic int g_env_checked;

static void check_env(void)
{
    if (atomic_exchange(&g_env_checked, 1))
        return;
    const char *v = getenv("VEIL_TEST_FAIL_ALLOC");
    if (v == NULL || *v == '\0')
        return;
    uint64_t n = 0;
    for (; *v >= '0' && *v <= '9'; v++)
        n = n * 10 + (uint64_t)(*v - '0');
    atomic_store(&g_fail_at, atomic_load(&g_count) + n + 1);
}

/* Counts an allocation; returns true when it must fail. */
static bool count_and_fail(void)
{
    check_env();
    uint64_t c = atomic_fetch_add(&g_count, 1) + 1;
    uint64_t at = atomic_load(&g_fail_at);
    return at != 0 && c >= at;
}

void veil_alloc_fail_after(uint64_t n)
{
    atomic_store(&g_env_checked, 1);
    atomic_store(&g_fail_at, atomic_load(&g_count) + n + 1);
}

void veil_alloc_fail_reset(void)
{
    atomic_store(&g_env_checked, 1);
    atomic_store(&g_fail_at, 0);
}

uint64_t veil_alloc_count(void)
{
    return atomic_load(&g_count);
}

void *veil_malloc(size_t size)
{
    if (count_and_fail())
        return NULL;
    return malloc(size == 0 ? 1 : size);
}

void *veil_calloc(size_t n, size_t size)
{
    if (count_and_fail())
        return NULL;
    if (n == 0 || size == 0)
        return calloc(1, 1);
    return calloc(n, size);
}

void *veil_realloc(void *p, size_t size)
{
    if (count_and_fail())
        return NULL;
    return realloc(p, size == 0 ? 1 : size);
}

void *veil_allocarray(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        return NULL;
    return veil_malloc(total);
}

void *veil_reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        return NULL;
    return veil_realloc(p, total);
}

void veil_free(void *p)
{
    free(p);
}

char *veil_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = veil_malloc(len + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *veil_strdup(const char *s)
{
    return veil_strndup(s, SIZE_MAX - 1);
}

/*
 * Aligned blocks are carved out of an ordinary malloc block of size + align + one pointer,
 * with the block's own address stored just below the aligned one. posix_memalign would hand
 * back a block trimmed to the size, and a later request of the same size needs size + align
 * more than that before glibc can align it, so a freed tensor never fits the next one:
 * every run's multi-MB outputs landed on fresh pages (a page fault per 4 KiB, 35 ms for a
 * 12 MB output). A block of exactly the same request size is reused.
 */
void *veil_aligned_alloc(size_t align, size_t size)
{
    if (size == 0)
        size = align;
    if (size > SIZE_MAX - align - sizeof(void *))
        return NULL;
    uint8_t *raw = veil_malloc(size + align + sizeof(void *));
    if (raw == NULL)
        return NULL;
    uintptr_t at = ((uintptr_t)raw + sizeof(void *) + align - 1) & ~(uintptr_t)(align - 1);
    void *p = raw + (at - (uintptr_t)raw);
    memcpy((uint8_t *)p - sizeof(void *), &raw, sizeof(void *));
    return p;
}

void veil_aligned_free(void *p)
{
    if (p == NULL)
        return;
    void *raw;
    memcpy(&raw, (uint8_t *)p - sizeof(void *), sizeof(void *));
    free(raw);
}

void veil_alloc_tune_large_blocks(void)
{
    (void)mallopt(M_MMAP_THRESHOLD, 64 << 20);
    (void)mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

void veil_advise_huge(void *p, size_t size)
{
    const uintptr_t huge = (uintptr_t)2 << 20;
    if (p == NULL || size < 2 * huge)
        return;
    uintptr_t lo = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t hi = ((uintptr_t)p + size) & ~(huge - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
}

void veil_heap_release(void)
{
#if defined(__GLIBC__)
    (void)malloc_trim(0);
#endif
}

void veil_free_wipe(void *p)
{
    if (p == NULL)
        return;
    veil_memzero(p, malloc_usable_size(p));
    free(p);
}
