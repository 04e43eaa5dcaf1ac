/*
 * Fuzzes the workload client's parser of a broker's challenge answer (docs/kbs/protocol.md,
 * "Challenge"): JSON from the network, of which only a "nonce" of exactly 64 hex digits is
 * accepted. A parsed nonce, written back as a minimal answer, must parse to the same bytes; a
 * refused input must leave the nonce zeroed.
 */
#include "kbs/kbs_int.h"

#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t nonce[VEIL__KBS_NONCE_LEN];
    static const uint8_t zero[VEIL__KBS_NONCE_LEN];
    veil_err rc = veil__kbs_challenge_parse(veil_span_make(data, size), nonce);
    if (rc != VEIL_OK) {
        VEIL_ASSERT(memcmp(nonce, zero, sizeof(nonce)) == 0);
        return 0;
    }
    char hex[2 * VEIL__KBS_NONCE_LEN + 1], again[128];
    uint8_t back[VEIL__KBS_NONCE_LEN];
    veil_hex_encode(nonce, sizeof(nonce), hex);
    int n = snprintf(again, sizeof(again), "{\"nonce\":\"%s\"}", hex);
    VEIL_ASSERT(n > 0 && (size_t)n < sizeof(again));
    VEIL_ASSERT(veil__kbs_challenge_parse(veil_span_make(again, (size_t)n), back) == VEIL_OK);
    VEIL_ASSERT(memcmp(back, nonce, sizeof(nonce)) == 0);
    VEIL_ASSERT(size >= 2 * VEIL__KBS_NONCE_LEN);
    return 0;
}
