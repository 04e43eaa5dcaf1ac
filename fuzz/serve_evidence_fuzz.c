/* Fuzzes the attestation endpoint's request parsers (src/serve/evidence.c): the first input
 * byte picks the REST JSON body or the gRPC GetEvidenceRequest, the rest is the request. A
 * request that parses must hold a nonce of 16 to 64 bytes and a key hash. */
#include "serve/serve_int.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_span s = veil_span_make(data, size);
    uint8_t mode = 0;
    struct sv_evidence_req r;
    char why[160];
    if (veil_span_get_u8(&s, &mode) != VEIL_OK)
        return 0;
    bool ok = mode & 1 ? veil__serve_evidence_parse_pb(s, &r, why, sizeof(why))
                       : veil__serve_evidence_parse_json(s, &r, why, sizeof(why));
    if (ok &&
        (r.nonce_len < SV_EVIDENCE_NONCE_MIN || r.nonce_len > SV_EVIDENCE_NONCE_MAX || !r.has_key))
        abort();
    return 0;
}
