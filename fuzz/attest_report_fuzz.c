/*
 * Fuzzes the SEV-SNP report structure checks (and sim evidence parsing): without certificates
 * or trusted keys nothing may verify, and no input may crash.
 */
#include "attest/attest_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_attest_claims c;
    struct veil_attest_verify_opts opts = {1750000000, false};
    struct veil_attest_roots *roots = NULL;
    if (veil_attest_roots_new(&roots) != VEIL_OK)
        return 0;
    veil_err rc = veil__attest_verify_snp(veil_span_make(data, size),
                                          &(struct veil_attest_collateral){0}, roots, &opts, &c);
    VEIL_ASSERT(rc != VEIL_OK);
    rc = veil__attest_verify_sim(veil_span_make(data, size), roots, &c);
    VEIL_ASSERT(rc != VEIL_OK);
    veil_attest_roots_free(roots);
    return 0;
}
