/* Fuzzes the sealed-file header parser: any bytes must parse cleanly or fail cleanly. */
#include "veil/crypto.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_seal_header h;
    struct veil_errbuf eb;
    veil_err rc = veil_seal_header_parse(veil_span_make(data, size), &h, &eb);
    if (rc == VEIL_OK) {
        /* A parsed header must be self-consistent. */
        if (h.header_len > size || h.chunk_count == 0 || h.model_name[0] == '\0' ||
            h.sealed_len < h.plaintext_len)
            abort();
    }
    return 0;
}
