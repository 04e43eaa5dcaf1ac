/*
 * Fuzz target for the ONNX parser: any bytes either parse into a model whose invariants hold
 * (checked below) or fail with an error; never a crash, leak or out-of-bounds read. Bytes that
 * parse are also offered to the tensor parser, which shares the tensor checks.
 */
#include "veil/onnx.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_tensor(const struct veil_onnx_tensor *t)
{
    uint64_t n = 1;
    VEIL_ASSERT(t->rank <= VEIL_LIMIT_TENSOR_RANK);
    for (size_t i = 0; i < t->rank; i++) {
        VEIL_ASSERT(t->dims[i] >= 0);
        n *= (uint64_t)t->dims[i];
    }
    VEIL_ASSERT(n * veil_dtype_size(t->dtype) == t->nbytes);
    VEIL_ASSERT(t->nbytes == 0 || t->data != NULL);
    /* Touch the first and last byte so a sanitizer sees any bad bound. */
    if (t->nbytes > 0) {
        volatile uint8_t x = ((const uint8_t *)t->data)[0];
        x = ((const uint8_t *)t->data)[t->nbytes - 1];
        (void)x;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_onnx_model *m = NULL;
    struct veil_errbuf eb;
    if (veil_onnx_parse(veil_span_make(data, size), &m, &eb) == VEIL_OK) {
        VEIL_ASSERT(m->opset >= VEIL_ONNX_OPSET_MIN && m->opset <= VEIL_ONNX_OPSET_MAX);
        for (size_t i = 0; i < m->n_initializers; i++)
            check_tensor(&m->initializers[i]);
        for (size_t i = 0; i < m->n_nodes; i++) {
            const struct veil_onnx_node *n = &m->nodes[i];
            VEIL_ASSERT(strlen(n->op_type) <= VEIL_ONNX_MAX_NAME);
            for (size_t k = 0; k < n->n_inputs; k++)
                VEIL_ASSERT(strlen(n->inputs[k]) <= VEIL_ONNX_MAX_NAME);
            for (size_t k = 0; k < n->n_attrs; k++)
                if (n->attrs[k].t != NULL)
                    check_tensor(n->attrs[k].t);
        }
        for (size_t i = 0; i < m->n_inputs; i++)
            VEIL_ASSERT(m->inputs[i].rank <= VEIL_LIMIT_TENSOR_RANK);
        veil_onnx_model_free(m);
    }
    struct veil_onnx_tensor_file tf;
    if (veil_onnx_parse_tensor(veil_span_make(data, size), &tf, &eb) == VEIL_OK) {
        check_tensor(&tf.t);
        veil_onnx_tensor_file_release(&tf);
    }
    return 0;
}
