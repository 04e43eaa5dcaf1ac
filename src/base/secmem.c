/*
 * Secure memory for keys and plaintext weights: page-aligned anonymous mappings, locked
 * where the system allows, excluded from core dumps, and wiped with OPENSSL_cleanse (which the
 * compiler cannot elide) before they are unmapped. Comparisons of secrets use CRYPTO_memcmp.
 */
#include "veil/base.h"

#include <openssl/crypto.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

static _Atomic int g_mlock_warned;

void veil_memzero(void *p, size_t n)
{
    if (p != NULL && n > 0)
        OPENSSL_cleanse(p, n);
}

bool veil_memeq_ct(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

static size_t round_pages(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (size == 0)
        size = 1;
    if (size > SIZE_MAX - page)
        return 0;
    return (size + page - 1) / page * page;
}

veil_err veil_secure_alloc_unlocked(size_t size, void **out)
{
    *out = NULL;
    size_t len = round_pages(size);
    if (len == 0)
        return VEIL_E_NOMEM;
    /* Count it with the ordinary allocations so failure injection reaches this path too. */
    void *probe = veil_malloc(1);
    if (probe == NULL)
        return VEIL_E_NOMEM;
    veil_free(probe);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return VEIL_E_NOMEM;
    (void)madvise(p, len, MADV_DONTDUMP);
    /* Large buffers (decrypted models) fault in far faster as huge pages. */
    if (len >= (2u << 20))
        (void)madvise(p, len, MADV_HUGEPAGE);
    *out = p;
    return VEIL_OK;
}

void veil_secure_lock(void *p, size_t size)
{
    /* Large plaintext models may exceed RLIMIT_MEMLOCK; they stay out of core dumps anyway. */
    if (p != NULL && mlock(p, round_pages(size)) != 0 && !atomic_exchange(&g_mlock_warned, 1))
        VEIL_LOG_DEBUG("mlock of secret memory refused; secrets stay out of core dumps only");
}

veil_err veil_secure_alloc(size_t size, void **out)
{
    veil_err rc = veil_secure_alloc_unlocked(size, out);
    if (rc == VEIL_OK)
        veil_secure_lock(*out, size);
    return rc;
}

void veil_secure_free(void *p, size_t size)
{
    if (p == NULL)
        return;
    size_t len = round_pages(size);
    OPENSSL_cleanse(p, len);
    (void)munlock(p, len);
    munmap(p, len);
}
