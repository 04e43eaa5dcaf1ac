/*
 * Hostile models: every one must be refused (at load, at plan time or during the run) with the
 * right error code and a message that says what is wrong, never a crash. Covers external data,
 * unsupported operators (all named), cycles, undefined values, duplicate definitions, wrong
 * types, bad and huge shapes, truncated tensors and truncated files, out-of-range indices,
 * unsupported opsets and ranks above the cap, and nodes with the wrong number of inputs or
 * outputs.
 */
#include "harness.h"
#include "engine_test.h"
#include "model_builder.h"

#include "veil/engine.h"

static veil_err load_b(struct mb *b, struct veil_engine_model **m, struct veil_errbuf *eb)
{
    struct veil_buf buf;
    mb_pack(b, &buf);
    veil_err rc = veil_engine_model_load(veil_buf_span(&buf), NULL, m, eb);
    veil_buf_release(&buf);
    mb_release(b);
    return rc;
}

static veil_err run1(struct veil_engine_model *m, float *x, size_t rank, const int64_t *dims,
                     struct veil_errbuf *eb)
{
    struct veil_tensor in = tensor_f(x, rank, dims), out;
    veil_err rc = veil_engine_run(m, &in, 1, &out, 1, eb);
    if (rc == VEIL_OK)
        veil_tensor_release(&out);
    return rc;
}

TEST(external_data_refused)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    mb_init(&b);
    int64_t d[1] = {4};
    float w[4] = {0};
    VeilOnnx__TensorProto *t = mb_init_f(&b, "w", 1, d, w);
    t->has_data_location = 1;
    t->data_location = VEIL_ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    t->has_raw_data = 0;
    t->n_external_data = 1;
    t->external_data = mb_alloc(&b, sizeof(*t->external_data));
    t->external_data[0] = mb_alloc(&b, sizeof(**t->external_data));
    veil_onnx__string_string_entry_proto__init(t->external_data[0]);
    t->external_data[0]->key = mb_str(&b, "location");
    t->external_data[0]->value = mb_str(&b, "w.bin");
    mb_input(&b, "x", 1, 1, d);
    mb_node(&b, "Add", "x,w", "y", 0);
    mb_output(&b, "y", 1, 1, d);
    /* From bytes alone, with no folder or bundle to read it from (test_external.c has more). */
    ASSERT_ERR(load_b(&b, &m, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "external file 'w.bin'");
    ASSERT_TRUE(m == NULL);
}

TEST(unsupported_ops_all_named)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    mb_init(&b);
    int64_t d[1] = {4};
    mb_input(&b, "x", 1, 1, d);
    mb_node(&b, "Relu", "x", "a", 0);
    mb_node(&b, "Unique", "a", "b", 0);
    mb_node(&b, "Unique", "b", "c", 0);
    mb_node(&b, "NonZero", "c", "y", 0);
    mb_output(&b, "y", 1, 1, d);
    ASSERT_ERR(load_b(&b, &m, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_EQ(eb.msg, "unsupported operators: Unique, NonZero");
}

TEST(cycle_refused)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    mb_init(&b);
    int64_t d[1] = {4};
    mb_input(&b, "x", 1, 1, d);
    mb_node(&b, "Add", "x,c", "a", 0);
    mb_node(&b, "Relu", "a", "c", 0);
    mb_node(&b, "Relu", "c", "y", 0);
    mb_output(&b, "y", 1, 1, d);
    ASSERT_ERR(load_b(&b, &m, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(eb.msg, "cycle");
}

TEST(undefined_and_duplicate_values)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t d[1] = {4};
    mb_init(&b);
    mb_input(&b, "x", 1, 1, d);
    mb_node(&b, "Add", "x,nowhere", "y", 0);
    mb_output(&b, "y", 1, 1, d);
    ASSERT_ERR(load_b(&b, &m, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(eb.msg, "undefined value 'nowhere'");
    mb_init(&b);
    mb_input(&b, "x", 1, 1, d);
    mb_node(&b, "Relu", "x", "y", 0);
    mb_node(&b, "Relu", "x", "y", 0);
    mb_output(&b, "y", 1, 1, d);
    ASSERT_ERR(load_b(&b, &m, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(eb.msg, "defined more than once");
    mb_init(&b);
    mb_input(&b, "x", 1, 1, d);
    mb_node(&b, "Relu", "x", "y", 0);
    mb_output(&b, "z", 1, 1, d);
    ASSERT_ERR(load_b(&b, &m, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(eb.msg, "never computed");
}

TEST(truncated_tensor_and_file)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t d[2] = {4, 4};
    float w[16] = {0};
    mb_init(&b);
    mb_input(&b, "x", 1, 2, d);
    VeilOnnx__TensorProto *t = mb_init_f(&b, "w", 2, d, w);
    t->raw_data.len = 60; /* one float short */
    mb_node(&b, "MatMul", "x,w", "y", 0);
    mb_output(&b, "y", 1, 2, d);
    ASSERT_ERR(load_b(&b, &m, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(eb.msg, "raw data");

    /* A valid model cut at every length must fail cleanly. */
    mb_init(&b);
    mb_input(&b, "x", 1, 2, d);
    mb_init_f(&b, "w", 2, d, w);
    mb_node(&b, "MatMul", "x,w", "y", 0);
    mb_output(&b, "y", 1, 2, d);
    struct veil_buf buf;
    mb_pack(&b, &buf);
    mb_release(&b);
    ASSERT_OK(veil_engine_model_load(veil_buf_span(&buf), NULL, &m, NULL));
    veil_engine_model_free(m);
    size_t ok_prefixes = 0;
    for (size_t len = 0; len < buf.len; len++) {
        m = NULL;
        veil_err rc = veil_engine_model_load(veil_span_make(buf.p, len), NULL, &m, &eb);
        if (rc == VEIL_OK) {
            ok_prefixes++;
            veil_engine_model_free(m);
        } else {
            ASSERT_TRUE(m == NULL);
        }
    }
    veil_buf_release(&buf);
    /* Only prefixes that end on a field boundary and still hold a graph can load. */
    ASSERT_TRUE(ok_prefixes < 8);
}

TEST(wrong_types)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t d[1] = {4};
    int64_t iv[4] = {1, 2, 3, 4};
    mb_init(&b);
    mb_input(&b, "x", 1, 1, d);
    mb_init_i64(&b, "i", 1, d, iv);
    mb_node(&b, "Add", "x,i", "y", 0);
    mb_output(&b, "y", 1, 1, d);
    ASSERT_OK(load_b(&b, &m, &eb));
    float x[4] = {0};
    ASSERT_ERR(run1(m, x, 1, d, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "input types differ: float and int64");
    veil_engine_model_free(m);

    mb_init(&b);
    mb_input(&b, "x", 1, 1, d);
    VeilOnnx__TensorProto *t = mb_init_f(&b, "w", 1, d, x);
    t->data_type = 99;
    mb_node(&b, "Add", "x,w", "y", 0);
    mb_output(&b, "y", 1, 1, d);
    ASSERT_ERR(load_b(&b, &m, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(eb.msg, "data type 99");
}

TEST(bad_shapes)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t d[2] = {-1, 4}, wd[2] = {5, 3};
    float w[15] = {0}, x[8] = {0};
    mb_init(&b);
    mb_input(&b, "x", 1, 2, d);
    mb_init_f(&b, "w", 2, wd, w);
    mb_node(&b, "MatMul", "x,w", "y", 0);
    mb_output(&b, "y", 1, 2, d);
    ASSERT_OK(load_b(&b, &m, &eb));
    int64_t xd[2] = {2, 4};
    ASSERT_ERR(run1(m, x, 2, xd, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "inner dimensions differ");
    veil_engine_model_free(m);

    int64_t shape[2] = {3, 3}, sd[1] = {2};
    mb_init(&b);
    mb_input(&b, "x", 1, 2, d);
    mb_init_i64(&b, "shape", 1, sd, shape);
    mb_node(&b, "Reshape", "x,shape", "y", 0);
    mb_output(&b, "y", 1, 2, shape);
    ASSERT_OK(load_b(&b, &m, &eb));
    ASSERT_ERR(run1(m, x, 2, xd, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "shape has 9 elements, input has 8");
    veil_engine_model_free(m);
}

TEST(huge_dimensions)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t d[1] = {4}, d1[1] = {1}, sd[1] = {4};
    int64_t huge[4] = {1 << 20, 1 << 20, 1 << 20, 1 << 20};
    mb_init(&b);
    mb_input(&b, "x", 1, 1, d1);
    mb_init_i64(&b, "shape", 1, sd, huge);
    mb_node(&b, "Expand", "x,shape", "y", 0);
    mb_output(&b, "y", 1, 1, d);
    ASSERT_OK(load_b(&b, &m, &eb));
    float x[4] = {0};
    ASSERT_ERR(run1(m, x, 1, d1, &eb), VEIL_E_LIMIT);
    ASSERT_STR_CONTAINS(eb.msg, "huge");
    veil_engine_model_free(m);

    /* An initializer whose dims overflow 64 bits. */
    mb_init(&b);
    int64_t big[4] = {INT64_MAX / 2, 4, 4, 4};
    mb_input(&b, "x", 1, 1, d);
    VeilOnnx__TensorProto *t = mb_init_f(&b, "w", 1, d, x);
    t->n_dims = 4;
    t->dims = big;
    mb_node(&b, "Add", "x,w", "y", 0);
    mb_output(&b, "y", 1, 1, d);
    ASSERT_ERR(load_b(&b, &m, &eb), VEIL_E_LIMIT);

    /* Rank above the cap. */
    mb_init(&b);
    int64_t r9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    mb_input(&b, "x", 1, 9, r9);
    mb_node(&b, "Relu", "x", "y", 0);
    mb_output(&b, "y", 1, 1, d);
    ASSERT_ERR(load_b(&b, &m, &eb), VEIL_E_LIMIT);
    ASSERT_STR_CONTAINS(eb.msg, "rank 9");
}

TEST(index_out_of_range_at_run)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t d[1] = {4}, id[1] = {2}, ix[2] = {1, 7};
    mb_init(&b);
    mb_input(&b, "x", 1, 1, d);
    mb_init_i64(&b, "ix", 1, id, ix);
    mb_node(&b, "Gather", "x,ix", "y", 0);
    mb_output(&b, "y", 1, 1, id);
    ASSERT_OK(load_b(&b, &m, &eb));
    float x[4] = {0};
    ASSERT_ERR(run1(m, x, 1, d, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "index 7 out of range");
    veil_engine_model_free(m);
}

TEST(opset_and_garbage)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t d[1] = {4};
    /* Just below and just above the opsets the engine reads. */
    static const int64_t opsets[2] = {6, 22};
    for (size_t i = 0; i < 2; i++) {
        mb_init(&b);
        b.opset = opsets[i];
        mb_input(&b, "x", 1, 1, d);
        mb_node(&b, "Relu", "x", "y", 0);
        mb_output(&b, "y", 1, 1, d);
        ASSERT_ERR(load_b(&b, &m, &eb), VEIL_E_UNSUPPORTED);
        char want[16];
        snprintf(want, sizeof(want), "opset %lld", (long long)opsets[i]);
        ASSERT_STR_CONTAINS(eb.msg, want);
    }
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    ASSERT_ERR(veil_engine_model_load(veil_span_make(junk, sizeof(junk)), NULL, &m, &eb),
               VEIL_E_FORMAT);
    ASSERT_ERR(veil_engine_model_load(veil_span_make(junk, 0), NULL, &m, &eb), VEIL_E_FORMAT);
}

TEST(conv_bad_group)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t xd[4] = {1, 3, 4, 4}, wd[4] = {4, 1, 1, 1};
    float w[4] = {0}, x[48] = {0};
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_init_f(&b, "w", 4, wd, w);
    mb_node(&b, "Conv", "x,w", "y", 1, mb_attr_i(&b, "group", 2));
    mb_output(&b, "y", 1, 4, xd);
    ASSERT_OK(load_b(&b, &m, &eb));
    ASSERT_ERR(run1(m, x, 4, xd, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "group 2 does not divide 3 channels");
    veil_engine_model_free(m);
}

/* Nodes with more or fewer inputs or outputs than their operator takes are refused at load. */
TEST(wrong_input_and_output_counts)
{
    static const struct {
        const char *op, *ins, *outs, *want;
    } cases[] = {
        {"Softmax", "x,x", "y", "(Softmax) has 2 inputs; Softmax takes 1 to 1"},
        {"Add", "x", "y", "(Add) has 1 inputs; Add takes 2 to 2"},
        {"Relu", "x", "y,z", "(Relu) has 2 outputs; Relu gives 1 to 1"},
        {"Where", "x,x", "y", "(Where) has 2 inputs; Where takes 3 to 3"},
        {"TopK", "x,k", "y", "(TopK) has 1 outputs; TopK gives 2 to 2"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mb b;
        struct veil_engine_model *m = NULL;
        struct veil_errbuf eb = {{0}};
        int64_t d[1] = {4}, kd[1] = {1}, k[1] = {2};
        mb_init(&b);
        mb_input(&b, "x", 1, 1, d);
        mb_init_i64(&b, "k", 1, kd, k);
        mb_node(&b, cases[i].op, cases[i].ins, cases[i].outs, 0);
        mb_output(&b, "y", 1, 1, d);
        ASSERT_ERR(load_b(&b, &m, &eb), VEIL_E_INVALID);
        ASSERT_STR_CONTAINS(eb.msg, cases[i].want);
        ASSERT_TRUE(m == NULL);
    }
}

/*
 * A batched MatMul whose output is empty through a zero batch dim, with B 2-D (batches folded
 * into M, which becomes 0) and with B batched: nothing to compute and nothing handed to oneDNN
 * (its primitive creation divides by the zero extent).
 */
TEST(matmul_with_zero_batch)
{
    static const int64_t wdims[2][4] = {{4, 5, 0, 0}, {2, 1, 4, 5}};
    static const size_t wrank[2] = {2, 4};
    float w[40];
    for (size_t i = 0; i < 40; i++)
        w[i] = (float)i;
    for (size_t c = 0; c < 2; c++) {
        struct mb b;
        struct veil_engine_model *m = NULL;
        struct veil_errbuf eb = {{0}};
        int64_t xd[4] = {2, 0, 3, 4}, yd[4] = {2, 0, 3, 5};
        mb_init(&b);
        mb_input(&b, "x", 1, 4, xd);
        mb_init_f(&b, "w", wrank[c], wdims[c], w);
        mb_node(&b, "MatMul", "x,w", "y", 0);
        mb_output(&b, "y", 1, 4, yd);
        ASSERT_OK(load_b(&b, &m, &eb));
        struct veil_tensor in, out;
        memset(&in, 0, sizeof(in));
        in.dtype = VEIL_DT_FLOAT;
        in.rank = 4;
        memcpy(in.dims, xd, sizeof(xd));
        in.data = w;
        in.nbytes = 0;
        ASSERT_OK(veil_engine_run(m, &in, 1, &out, 1, &eb));
        ASSERT_EQ_U64(out.rank, 4);
        for (size_t i = 0; i < 4; i++)
            ASSERT_EQ_I64(out.dims[i], yd[i]);
        ASSERT_EQ_U64(out.nbytes, 0);
        veil_tensor_release(&out);
        veil_engine_model_free(m);
    }
}

RUN_TESTS()
