/* Fuzzes the text-format config parsers (ModelServerConfig, BatchingParameters, SSLConfig,
 * MonitoringConfig). */
#include "serve/serve_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_arena a;
    struct veil_span s = veil_span_make(data, size);
    struct sv_model_config *m = NULL;
    size_t n = 0;
    struct sv_batching b;
    struct sv_ssl ssl;
    struct sv_monitoring mon;
    veil_arena_init(&a, 4096, 64u << 20);
    if (veil__serve_parse_model_config(s, &a, &m, &n, NULL) == VEIL_OK) {
        for (size_t i = 0; i < n; i++)
            if (m[i].name == NULL || m[i].base_path == NULL)
                __builtin_trap();
    }
    if (veil__serve_parse_batching(s, &a, &b, NULL) == VEIL_OK && b.max_batch_size <= 0)
        __builtin_trap();
    if (veil__serve_parse_ssl(s, &a, &ssl, NULL) == VEIL_OK && ssl.server_key.len > size)
        __builtin_trap();
    if (veil__serve_parse_monitoring(s, &a, &mon, NULL) == VEIL_OK && mon.path[0] != '/')
        __builtin_trap();
    veil_arena_release(&a);
    return 0;
}
