/*
 * Secure memory for keys and plaintext weights: page-aligned anonymous mappings, locked
 * where the system allows, excluded from core dumps, and wiped with OPENSSL_cleanse (which the
 * compiler cannot elide) before they are unmapped. Comparisons of secrets use CRYPTO_memcmp.
 * Secrets also live outside secure memory (OpenSSL's key objects, heap buffers), so the servers
 * turn core dumps off for the whole process at start with veil_harden_process.
 */
#include "veil/base.h"

#include <openssl/crypto.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
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

veil_err veil_harden_process(bool allow_dumps, struct veil_errbuf *eb)
{
    if (allow_dumps) {
        VEIL_LOG_WARN("core dumps are allowed (--allow-core-dumps): a core file of this "
                      "process holds model keys, plaintext weights and private keys; use it only "
                      "to debug, never with production keys");
        return VEIL_OK;
    }
    /* The limit first: it stops file cores even if the kernel refused the flag below. */
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) != 0) {
        int e = errno;
        return veil_errf(eb, e == EPERM ? VEIL_E_PERM : VEIL_E_IO,
                         "cannot set RLIMIT_CORE to 0: %s", strerror(e));
    }
    /* Not dumpable: no core even through a core_pattern pipe, which ignores RLIMIT_CORE. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        int e = errno;
        return veil_errf(eb, e == EPERM ? VEIL_E_PERM : VEIL_E_IO,
                         "cannot clear the dumpable flag (PR_SET_DUMPABLE): %s", strerror(e));
    }
    return VEIL_OK;
}
