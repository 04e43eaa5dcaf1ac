/* Fuzzes the TensorProto decoder: protobuf-c unpacking into a request arena, then conversion
 * to dense tensors against several signatures, and back to the typed wire form. */
#include "serve/serve_int.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum veil_dtype dts[] = {VEIL_DT_FLOAT,   VEIL_DT_INT64,  VEIL_DT_BOOL,
                                          VEIL_DT_UINT8,   VEIL_DT_DOUBLE, VEIL_DT_FLOAT16,
                                          VEIL_DT_BFLOAT16};
    struct veil_arena a;
    ProtobufCAllocator al;
    veil_arena_init(&a, 4096, 64u << 20);
    veil__serve_pb_allocator(&a, &al);
    Tensorflow__TensorProto *tp = tensorflow__tensor_proto__unpack(&al, size, data);
    if (tp != NULL) {
        for (size_t i = 0; i < sizeof(dts) / sizeof(dts[0]); i++) {
            struct sv_tinfo ti;
            struct veil_tensor t;
            struct sv_status st;
            memset(&ti, 0, sizeof(ti));
            ti.name = (char *)"x";
            ti.dt = dts[i];
            ti.tf_dtype = veil__serve_tf_dtype(dts[i]);
            ti.rank = 2;
            ti.dims[0] = -1;
            ti.dims[1] = 3;
            if (!veil__serve_tensor_from_proto(tp, &ti, &a, &t, &st))
                continue;
            uint64_t numel = 0;
            if (veil_tensor_numel(t.dims, t.rank, &numel) != VEIL_OK ||
                numel * veil_dtype_size(t.dtype) != t.nbytes)
                __builtin_trap();
            (void)veil__serve_tensor_check(&t, &ti, 0, &st);
            Tensorflow__TensorProto back;
            tensorflow__tensor_proto__init(&back);
            if (veil__serve_tensor_to_proto(&t, &a, &back, &st)) {
                size_t n = tensorflow__tensor_proto__get_packed_size(&back);
                uint8_t *buf = NULL;
                if (veil_arena_alloc(&a, n + 1, 8, (void **)&buf) == VEIL_OK)
                    tensorflow__tensor_proto__pack(&back, buf);
            }
        }
    }
    veil_arena_release(&a);
    return 0;
}
