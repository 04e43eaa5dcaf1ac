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

TEST(parse_strings_attr)
{
    struct veil_buf b;
    struct veil_onnx_model *m = NULL;
    ASSERT_TRUE(read_corpus("recurrent_lstm_gru_rnn.onnx", &b));
    ASSERT_OK(veil_onnx_parse(veil_buf_span(&b), &m, NULL));
    ASSERT_STR_EQ(m->nodes[0].op_type, "LSTM");
    const struct veil_onnx_attr *a = veil_onnx_node_attr(&m->nodes[0], "activations");
    ASSERT_TRUE(a != NULL && a->strings != NULL);
    ASSERT_EQ_U64(a->type, VEIL_ONNX_ATTR_STRINGS);
    ASSERT_EQ_U64(a->n, 6);
    ASSERT_EQ_U64(a->strings[3].len, strlen("HardSigmoid"));
    ASSERT_MEM_EQ(a->strings[3].p, "HardSigmoid", a->strings[3].len);
    ASSERT_MEM_EQ(a->strings[5].p, "Softsign", a->strings[5].len);
    /* Attributes of other types carry no string list. */
    a = veil_onnx_node_attr(&m->nodes[0], "hidden_size");
    ASSERT_TRUE(a != NULL && a->strings == NULL);
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

TEST(parse_if_subgraphs)
{
    struct veil_buf b;
    struct veil_onnx_model *m = NULL;
    ASSERT_TRUE(read_corpus("test_if.onnx", &b));
    ASSERT_OK(veil_onnx_parse(veil_buf_span(&b), &m, NULL));
    ASSERT_EQ_U64(m->n_nodes, 1);
    ASSERT_STR_EQ(m->nodes[0].op_type, "If");
    const struct veil_onnx_attr *t = veil_onnx_node_attr(&m->nodes[0], "then_branch");
    const struct veil_onnx_attr *e = veil_onnx_node_attr(&m->nodes[0], "else_branch");
    ASSERT_TRUE(t != NULL && e != NULL);
    ASSERT_EQ_U64(t->type, VEIL_ONNX_ATTR_GRAPH);
    ASSERT_TRUE(t->g != NULL && e->g != NULL);
    ASSERT_EQ_U64(t->g->n_outputs, 1);
    ASSERT_EQ_U64(t->g->n_nodes, 1);
    ASSERT_STR_EQ(t->g->nodes[0].op_type, "Constant");
    ASSERT_EQ_U64(t->g->n_inputs, 0);
    veil_onnx_model_free(m);
    veil_buf_release(&b);
}

/* Protobuf writer for the nesting test: a length-delimited field around body. */
static void pb_wrap(struct veil_buf *out, uint32_t field, const struct veil_buf *body)
{
    uint8_t hdr[16];
    size_t n = 0;
    hdr[n++] = (uint8_t)(field << 3 | 2u);
    for (uint64_t v = body->len;; v >>= 7) {
        hdr[n++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80)
            break;
    }
    out->len = 0;
    ASSERT_OK(veil_buf_append(out, hdr, n));
    ASSERT_OK(veil_buf_append(out, body->p, body->len));
}

/* A model whose main graph holds an If whose then_branch holds an If ... `depth` deep. */
static void nested_model(struct veil_buf *model, unsigned depth)
{
    struct veil_buf g, t;
    veil_buf_init(&g, 64u << 20);
    veil_buf_init(&t, 64u << 20);
    static const uint8_t attr_head[] = {0x0a, 0x0b, 't', 'h', 'e', 'n',  '_',  'b',
                                        'r',  'a',  'n', 'c', 'h', 0xa0, 0x01, 0x05};
    static const uint8_t if_op[] = {0x22, 0x02, 'I', 'f'};
    for (unsigned d = 0; d < depth; d++) {
        /* attribute = {name, type GRAPH, g = graph}; node = {op_type If, attribute}. */
        pb_wrap(&t, 6, &g);
        g.len = 0;
        ASSERT_OK(veil_buf_append(&g, attr_head, sizeof(attr_head)));
        ASSERT_OK(veil_buf_append(&g, t.p, t.len));
        pb_wrap(&t, 5, &g);
        g.len = 0;
        ASSERT_OK(veil_buf_append(&g, if_op, sizeof(if_op)));
        ASSERT_OK(veil_buf_append(&g, t.p, t.len));
        pb_wrap(&t, 1, &g);
        g.len = 0;
        ASSERT_OK(veil_buf_append(&g, t.p, t.len));
    }
    static const uint8_t head[] = {0x08, 0x08, 0x42, 0x02, 0x10, 0x10};
    pb_wrap(&t, 7, &g);
    model->len = 0;
    ASSERT_OK(veil_buf_append(model, head, sizeof(head)));
    ASSERT_OK(veil_buf_append(model, t.p, t.len));
    veil_buf_release(&g);
    veil_buf_release(&t);
}

TEST(subgraph_nesting_capped)
{
    struct veil_buf b;
    struct veil_onnx_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    veil_buf_init(&b, 64u << 20);
    nested_model(&b, VEIL_ONNX_MAX_GRAPH_DEPTH);
    ASSERT_OK(veil_onnx_parse(veil_buf_span(&b), &m, &eb));
    const struct veil_onnx_graph *g = veil_onnx_node_attr(&m->nodes[0], "then_branch")->g;
    for (unsigned d = 1; d < VEIL_ONNX_MAX_GRAPH_DEPTH; d++)
        g = veil_onnx_node_attr(&g->nodes[0], "then_branch")->g;
    ASSERT_EQ_U64(g->n_nodes, 0);
    veil_onnx_model_free(m);
    /* One level more, and a nesting that would exhaust the decoder's stack: refused first. */
    unsigned deep[] = {VEIL_ONNX_MAX_GRAPH_DEPTH + 1, 20000};
    for (size_t i = 0; i < 2; i++) {
        nested_model(&b, deep[i]);
        m = (struct veil_onnx_model *)1;
        ASSERT_ERR(veil_onnx_parse(veil_buf_span(&b), &m, &eb), VEIL_E_LIMIT);
        ASSERT_TRUE(m == NULL);
        ASSERT_STR_CONTAINS(eb.msg, "nested more than");
    }
    veil_buf_release(&b);
}

RUN_TESTS()
