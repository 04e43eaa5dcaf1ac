/*
 * The ONNX parser on real files (the fuzz corpus: small models from ONNX's node tests) and on
 * malformed bytes: truncations, bad varints, oversized input. Every failure must leave *out
 * NULL and say why.
 */
#include "harness.h"

#include "veil/onnx.h"

#include <stdio.h>
#include <stdlib.h>

static bool read_corpus(const char *name, struct veil_buf *b)
{
    char path[1024];
    const char *src = getenv("VEIL_SRC");
    snprintf(path, sizeof(path), "%s/fuzz/corpus/onnx_model/%s", src ? src : ".", name);
    veil_buf_init(b, 1u << 20);
    return veil_file_read_all(path, b->max, b, NULL) == VEIL_OK;
}

TEST(parse_conv_model)
{
    struct veil_buf b;
    struct veil_onnx_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_TRUE(read_corpus("test_conv_with_strides_padding.onnx", &b));
    ASSERT_OK(veil_onnx_parse(veil_buf_span(&b), &m, &eb));
    ASSERT_EQ_U64(m->n_nodes, 1);
    ASSERT_STR_EQ(m->nodes[0].op_type, "Conv");
    ASSERT_EQ_U64(m->nodes[0].n_inputs, 2);
    const struct veil_onnx_attr *a = veil_onnx_node_attr(&m->nodes[0], "strides");
    ASSERT_TRUE(a != NULL);
    ASSERT_EQ_U64(a->type, VEIL_ONNX_ATTR_INTS);
    ASSERT_EQ_U64(a->n, 2);
    ASSERT_EQ_I64(a->ints[0], 2);
    ASSERT_EQ_U64(m->n_inputs, 2);
    ASSERT_EQ_U64(m->inputs[0].dtype, VEIL_DT_FLOAT);
    ASSERT_EQ_U64(m->inputs[0].rank, 4);
    ASSERT_TRUE(m->opset >= VEIL_ONNX_OPSET_MIN);
    veil_onnx_model_free(m);
    /* Every strict prefix fails cleanly or parses to a consistent model. */
    for (size_t len = 0; len < b.len; len++) {
        m = NULL;
        veil_err rc = veil_onnx_parse(veil_span_make(b.p, len), &m, &eb);
        if (rc != VEIL_OK)
            ASSERT_TRUE(m == NULL);
        veil_onnx_model_free(m);
    }
    veil_buf_release(&b);
}

TEST(parse_constant_tensor_attr)
{
    struct veil_buf b;
    struct veil_onnx_model *m = NULL;
    ASSERT_TRUE(read_corpus("test_constant.onnx", &b));
    ASSERT_OK(veil_onnx_parse(veil_buf_span(&b), &m, NULL));
    const struct veil_onnx_attr *a = veil_onnx_node_attr(&m->nodes[0], "value");
    ASSERT_TRUE(a != NULL && a->t != NULL);
    ASSERT_EQ_U64(a->t->dtype, VEIL_DT_FLOAT);
    ASSERT_EQ_U64(a->t->nbytes, 5 * 5 * 4);
    veil_onnx_model_free(m);
    veil_buf_release(&b);
}

TEST(parse_tensor_file)
{
    struct veil_buf b;
    struct veil_onnx_tensor_file tf;
    ASSERT_TRUE(read_corpus("tensor_add_input_0.pb", &b));
    ASSERT_OK(veil_onnx_parse_tensor(veil_buf_span(&b), &tf, NULL));
    ASSERT_EQ_U64(tf.t.dtype, VEIL_DT_FLOAT);
    ASSERT_EQ_U64(tf.t.rank, 3);
    ASSERT_EQ_U64(tf.t.nbytes, 3 * 4 * 5 * 4);
    veil_onnx_tensor_file_release(&tf);
    veil_onnx_tensor_file_release(&tf);
    veil_buf_release(&b);
}

TEST(malformed_bytes)
{
    struct veil_onnx_model *m = (struct veil_onnx_model *)1;
    struct veil_errbuf eb = {{0}};
    static const uint8_t bad_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                                         0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    ASSERT_ERR(veil_onnx_parse(veil_span_make(bad_varint, sizeof(bad_varint)), &m, &eb),
               VEIL_E_FORMAT);
    ASSERT_TRUE(m == NULL);
    static const uint8_t no_graph[] = {0x08, 0x08};
    ASSERT_ERR(veil_onnx_parse(veil_span_make(no_graph, sizeof(no_graph)), &m, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(eb.msg, "no graph");
    /* A length-delimited field that claims more bytes than remain. */
    static const uint8_t overlong[] = {0x3a, 0x7f, 0x0a, 0x01};
    ASSERT_ERR(veil_onnx_parse(veil_span_make(overlong, sizeof(overlong)), &m, &eb), VEIL_E_FORMAT);
    ASSERT_ERR(
        veil_onnx_parse(veil_span_make(no_graph, (size_t)VEIL_LIMIT_MODEL_BYTES + 1), &m, &eb),
        VEIL_E_LIMIT);
    ASSERT_STR_EQ(veil_dtype_name(VEIL_DT_INT64), "int64");
    ASSERT_EQ_U64(veil_dtype_size(VEIL_DT_DOUBLE), 8);
    ASSERT_EQ_U64(veil_dtype_size(VEIL_DT_STRING), 0);
}

RUN_TESTS()
