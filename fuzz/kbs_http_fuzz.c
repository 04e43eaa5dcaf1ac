/* Fuzzes the key broker's HTTP/1.1 head parser, as a request and as a response. */
#include "veil/kbs.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_kbs_http_head h;
    for (int req = 0; req < 2; req++) {
        if (veil_kbs_http_parse(veil_span_make(data, size), req != 0, &h) == VEIL_OK) {
            if (h.head_len > size || h.content_length > VEIL_LIMIT_KBS_BODY)
                abort();
            if (req && (h.path.len == 0 || h.path.p[0] != '/'))
                abort();
        }
    }
    return 0;
}
