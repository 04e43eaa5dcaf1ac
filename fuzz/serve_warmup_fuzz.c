/* Fuzzes the warmup file readers: TFRecord records one after another, and the PredictRequest
 * inside each record's PredictionLog, decoded as the warmup decodes it. */
#include "serve/serve_int.h"

#include "tensorflow_serving/apis/predict.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_span s = veil_span_make(data, size), rec, req;
    for (int i = 0; i < 1000 && s.len > 0; i++) {
        size_t before = s.len;
        if (veil__serve_tfrecord_next(&s, &rec) != VEIL_OK) {
            if (s.len != before)
                __builtin_trap();
            break;
        }
        if (s.len >= before || rec.len > size)
            __builtin_trap();
        if (veil__serve_warmup_predict(rec, &req) != VEIL_OK)
            continue;
        struct veil_arena a;
        ProtobufCAllocator al;
        veil_arena_init(&a, 4096, 64u << 20);
        veil__serve_pb_allocator(&a, &al);
        (void)tensorflow__serving__predict_request__unpack(&al, req.len, req.p);
        veil_arena_release(&a);
    }
    /* The same bytes as one PredictionLog. */
    if (veil__serve_warmup_predict(veil_span_make(data, size), &req) == VEIL_OK && req.len > size)
        __builtin_trap();
    return 0;
}
