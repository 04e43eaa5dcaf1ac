/* Fuzzes the JSON parser: any bytes parse or fail cleanly within the arena's cap. */
#include "veil/json.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_arena a;
    veil_arena_init(&a, 4096, 1u << 24);
    struct veil_json *v = NULL;
    struct veil_errbuf eb;
    veil_err rc = veil_json_parse(veil_span_make(data, size), &a, &v, &eb);
    if (rc == VEIL_OK && (v == NULL || v->raw.len > size))
        abort();
    if (rc == VEIL_OK && v->type == VEIL_JSON_STRING) {
        struct veil_buf b;
        veil_buf_init(&b, 1u << 26);
        if (veil_json_append_str(&b, veil_span_make(v->str, v->str_len)) != VEIL_OK)
            abort();
        veil_buf_release(&b);
    }
    veil_arena_release(&a);
    return 0;
}
