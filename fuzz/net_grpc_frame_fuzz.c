/* Fuzzes the gRPC length-prefixed message reader, the grpc-timeout grammar and the capped
 * gunzip used for grpc-encoding: gzip and REST Content-Encoding: gzip bodies. */
#include "veil/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_span s = veil_span_make(data, size), msg;
    bool compressed;
    size_t total = 0;
    while (veil_grpc_frame_read(&s, 1u << 16, &compressed, &msg) == VEIL_OK) {
        total += msg.len;
        if (total > size)
            __builtin_trap();
    }
    uint64_t ns;
    if (veil_grpc_timeout_parse(veil_span_make(data, size < 12 ? size : 12), &ns) == VEIL_OK &&
        size < 2)
        __builtin_trap();
    struct veil_buf out;
    veil_buf_init(&out, 1u << 20);
    if (veil_net_gunzip(veil_span_make(data, size), 1u << 20, &out, NULL) == VEIL_OK &&
        out.len > (1u << 20))
        __builtin_trap();
    veil_buf_release(&out);
    return 0;
}
