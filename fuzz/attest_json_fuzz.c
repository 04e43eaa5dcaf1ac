/*
 * Fuzzes the strict JSON parser used for collateral and policies: on success every value's raw
 * span lies inside the input.
 */
#include "attest/attest_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct veil_json *v, const uint8_t *data, size_t size, size_t depth)
{
    VEIL_ASSERT(depth <= VEIL_ATTEST_JSON_MAX_DEPTH + 1);
    VEIL_ASSERT(v->raw.p >= data && v->raw.p + v->raw.len <= data + size);
    for (size_t i = 0; v->type == VEIL_JSON_ARRAY && i < v->n; i++)
        check(v->items[i], data, size, depth + 1);
    for (size_t i = 0; v->type == VEIL_JSON_OBJECT && i < v->n; i++)
        check(v->members[i].value, data, size, depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_arena a;
    struct veil_json *v = NULL;
    veil_arena_init(&a, 4096, 16u << 20);
    if (veil__attest_json_parse(veil_span_make(data, size), &a, &v, NULL) == VEIL_OK)
        check(v, data, size, 0);
    veil_arena_release(&a);
    return 0;
}
