/*
 * Fuzz target for the model bundle reader (docs/format/external-data.md): any bytes either
 * parse into files that lie back to back inside the input, named by valid locations, or fail
 * cleanly. A parsed bundle is rebuilt from its names and sizes and must give the same head.
 */
#include "veil/onnx.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_onnx_bundle b;
    if (veil_onnx_bundle_parse(veil_span_make(data, size), &b, NULL) != VEIL_OK)
        return 0;
    static const char *names[VEIL_ONNX_BUNDLE_MAX_FILES];
    static uint64_t sizes[VEIL_ONNX_BUNDLE_MAX_FILES];
    VEIL_ASSERT(b.n_files >= 1 && b.n_files <= VEIL_ONNX_BUNDLE_MAX_FILES);
    for (size_t i = 0; i < b.n_files; i++) {
        VEIL_ASSERT(veil_onnx_location_ok(b.files[i].name, strlen(b.files[i].name)));
        names[i] = b.files[i].name;
        sizes[i] = b.files[i].bytes.len;
        VEIL_ASSERT(i == 0 ||
                    b.files[i].bytes.p == b.files[i - 1].bytes.p + b.files[i - 1].bytes.len);
    }
    const struct veil_onnx_bundle_file *last = &b.files[b.n_files - 1];
    VEIL_ASSERT(last->bytes.p + last->bytes.len == data + size);
    struct veil_buf head;
    veil_buf_init(&head, 1u << 24);
    VEIL_ASSERT(veil_onnx_bundle_head(names, sizes, b.n_files, &head, NULL) == VEIL_OK);
    VEIL_ASSERT(head.len == (size_t)(b.files[0].bytes.p - data));
    VEIL_ASSERT(memcmp(head.p, data, head.len) == 0);
    struct veil_onnx_external ext = veil_onnx_bundle_external(&b);
    struct veil_span got;
    for (size_t i = 1; i < b.n_files; i++) {
        VEIL_ASSERT(ext.get(ext.ctx, names[i], &got, NULL) == VEIL_OK);
        VEIL_ASSERT(got.p == b.files[i].bytes.p && got.len == b.files[i].bytes.len);
    }
    veil_buf_release(&head);
    veil_onnx_bundle_release(&b);
    return 0;
}
