/*
 * Fuzzes the DCAP quote parser (v3/v4/v5, nested certification data) and the evidence-kind
 * detection through veil_attest_verify without collateral: every input must be rejected with
 * a reason, and never crash or read out of bounds.
 */
#include "attest/attest_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_attest_claims c;
    struct veil_attest_verify_opts opts = {1750000000, false};
    veil_err rc = veil_attest_verify(veil_span_make(data, size), NULL, NULL, &opts, &c);
    VEIL_ASSERT(rc != VEIL_OK && !c.verified);
    return 0;
}
