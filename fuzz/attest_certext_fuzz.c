/*
 * Fuzzes the certificate-extension parsers: the Intel PCK SGX extension (DER) and the RA-TLS
 * TCG DICE tagged-evidence extension with its CBOR claims, and the SEV-SNP certificate table.
 */
#include "attest/attest_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_span in = veil_span_make(data, size);
    struct veil_pck_ext e;
    if (veil__attest_pck_ext_parse(in, &e) == VEIL_OK)
        VEIL_ASSERT((e.seen & 0x1C) == 0x1C);
    struct veil_span ev, claims, hash, nonce;
    uint64_t alg;
    if (veil_attest_ratls_parse_ext(in, &ev, &claims) == VEIL_OK) {
        VEIL_ASSERT(ev.p >= data && ev.p + ev.len <= data + size);
        if (veil__attest_ratls_claims_parse(claims, &alg, &hash, &nonce) == VEIL_OK)
            VEIL_ASSERT((hash.len == 32 || hash.len == 48 || hash.len == 64) &&
                        nonce.len <= VEIL_ATTEST_RATLS_NONCE_MAX);
    }
    if (veil__attest_ratls_claims_parse(in, &alg, &hash, &nonce) == VEIL_OK)
        VEIL_ASSERT((alg == 1 || alg == 7 || alg == 8) &&
                    (nonce.len == 0 || (nonce.p >= data && nonce.p + nonce.len <= data + size)));
    struct veil_attest_snp_certs certs;
    if (veil_attest_snp_certs_parse(in, &certs) == VEIL_OK)
        VEIL_ASSERT(certs.vcek.len == 0 ||
                    (certs.vcek.p >= data && certs.vcek.p + certs.vcek.len <= data + size));
    return 0;
}
