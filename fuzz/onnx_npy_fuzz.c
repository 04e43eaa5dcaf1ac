/*
 * Fuzz target for the .npy reader used by `veil run` for its inputs: any bytes either parse
 * into a tensor whose data lies inside the input and matches its shape, or fail cleanly. A
 * parsed tensor is written back and must parse again to the same shape and bytes.
 */
#include "veil/engine.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_tensor t, t2;
    struct veil_buf b;
    if (veil_npy_parse(veil_span_make(data, size), &t, NULL) != VEIL_OK)
        return 0;
    uint64_t numel;
    VEIL_ASSERT(veil_tensor_numel(t.dims, t.rank, &numel) == VEIL_OK);
    VEIL_ASSERT(numel * veil_dtype_size(t.dtype) == t.nbytes);
    VEIL_ASSERT(t.nbytes == 0 || ((const uint8_t *)t.data >= data &&
                                  (const uint8_t *)t.data + t.nbytes == data + size));
    veil_buf_init(&b, 1u << 26);
    if (veil_npy_write(&t, &b) == VEIL_OK) {
        VEIL_ASSERT(veil_npy_parse(veil_buf_span(&b), &t2, NULL) == VEIL_OK);
        VEIL_ASSERT(t2.dtype == t.dtype && t2.rank == t.rank && t2.nbytes == t.nbytes);
        VEIL_ASSERT(memcmp(t2.dims, t.dims, t.rank * sizeof(int64_t)) == 0);
        VEIL_ASSERT(t.nbytes == 0 || memcmp(t2.data, t.data, t.nbytes) == 0);
    }
    veil_buf_release(&b);
    return 0;
}
