/*
 * Fuzzes the whole unseal path (header, size checks, key commitment, chunk authentication)
 * with the fixed known-answer key of docs/format/sealed-model.md, so corpus files sealed under
 * that key reach the chunk decryption.
 */
#include "veil/crypto.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)i;
    struct veil_model_key *k = NULL;
    if (veil_model_key_from_bytes("kat-key-1", raw, sizeof(raw), &k, NULL) != VEIL_OK)
        return 0;
    uint8_t *plain = NULL;
    size_t n = 0;
    struct veil_errbuf eb;
    struct veil_seal_header h;
    veil_err rc = veil_unseal_mem(veil_span_make(data, size), k, NULL, 1, &plain, &n, &h, &eb);
    if (rc == VEIL_OK) {
        if (n != h.plaintext_len)
            abort();
        veil_secure_free(plain, n);
    } else if (plain != NULL) {
        abort();
    }
    veil_model_key_free(k);
    return 0;
}
