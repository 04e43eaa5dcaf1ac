/*
 * Fuzz target for the engine on hostile models: bytes that parse are loaded (graph checks,
 * optimisation) and, when they load, run once on zero-filled inputs whose dynamic dimensions
 * are 1 and whose total size is capped. Any error is fine; a crash, leak or sanitizer report is
 * a bug. This reaches shape inference, constant folding, planning and the kernels.
 */
#include "veil/engine.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT_BYTES (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_engine_model *m = NULL;
    struct veil_engine_options opt = {.threads = 1};
    struct veil_tensor in[16], out[16];
    void *bufs[16] = {NULL};
    size_t n_in, n_out;

    if (veil_engine_model_load(veil_span_make(data, size), &opt, &m, NULL) != VEIL_OK)
        return 0;
    /* A small cap keeps hostile shapes from asking for more memory than a fuzzer allows. */
    veil_engine_model_set_max_activation(m, 256u << 20);
    n_in = veil_engine_model_num_inputs(m);
    n_out = veil_engine_model_num_outputs(m);
    if (n_in > 16 || n_out > 16)
        goto out;
    for (size_t i = 0; i < n_in; i++) {
        const struct veil_tensor_info *ti = veil_engine_model_input(m, i);
        uint64_t numel;
        memset(&in[i], 0, sizeof(in[i]));
        in[i].dtype = ti->dtype;
        in[i].rank = ti->rank;
        for (size_t d = 0; d < ti->rank; d++)
            in[i].dims[d] = ti->dims[d] >= 0 ? ti->dims[d] : 1;
        if (veil_tensor_numel(in[i].dims, in[i].rank, &numel) != VEIL_OK ||
            numel > FUZZ_MAX_INPUT_BYTES / 8)
            goto out;
        in[i].nbytes = (size_t)numel * veil_dtype_size(ti->dtype);
        bufs[i] = veil_calloc(1, in[i].nbytes + 1);
        if (bufs[i] == NULL)
            goto out;
        in[i].data = bufs[i];
    }
    if (veil_engine_run(m, in, n_in, out, n_out, NULL) == VEIL_OK)
        for (size_t j = 0; j < n_out; j++)
            veil_tensor_release(&out[j]);
out:
    for (size_t i = 0; i < 16; i++)
        veil_free(bufs[i]);
    veil_engine_model_free(m);
    return 0;
}
