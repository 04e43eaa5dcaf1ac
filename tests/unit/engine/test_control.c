/*
 * If: branches lifted into the graph, chosen per plan when the condition is known while
 * planning (an integer input that decides it is part of the plan key) and per run otherwise;
 * outer-scope reads, nesting, branches that cannot run at some shapes, and hostile models.
 * Loop and Scan: bodies run per iteration, trip counts from inputs, early stops, reverse scans
 * on other axes, a loop inside a branch, and hostile bodies.
 */
#include "harness.h"

#include "engine_test.h"
#include "model_builder.h"
#include "veil/engine.h"

#include <stdio.h>
#include <string.h>

static const int64_t dyn2[2] = {-1, 4};

/* cond = ReduceSum(x) > 0; then z = x + y, else z = x - y (both read the outer x and y). */
static veil_err load_runtime_if(struct veil_engine_model **m, struct veil_errbuf *eb)
{
    struct mb b;
    mb_init(&b);
    static const float zero = 0.0f;
    mb_input(&b, "x", 1, 2, dyn2);
    mb_input(&b, "y", 1, 2, dyn2);
    mb_output(&b, "z", 1, 2, dyn2);
    mb_init_f(&b, "zero", 0, NULL, &zero);
    mb_node(&b, "ReduceSum", "x", "s", 1, mb_attr_i(&b, "keepdims", 0));
    mb_node(&b, "Greater", "s,zero", "cond", 0);
    size_t n0 = b.n_nodes, i0 = b.n_inits;
    mb_node(&b, "Add", "x,y", "t", 0);
    VeilOnnx__AttributeProto *then = mb_attr_graph(&b, "then_branch", n0, i0, "t");
    mb_node(&b, "Sub", "x,y", "e", 0);
    VeilOnnx__AttributeProto *els = mb_attr_graph(&b, "else_branch", n0, i0, "e");
    mb_node(&b, "If", "cond", "z", 2, then, els);
    return mb_load(&b, NULL, m, eb);
}

static veil_err run1(struct veil_engine_model *m, struct veil_tensor *in, size_t n_in,
                     struct veil_tensor *out, struct veil_errbuf *eb)
{
    return veil_engine_run(m, in, n_in, out, 1, eb);
}

TEST(if_runtime_condition_both_branches)
{
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(load_runtime_if(&m, &eb));
    /* Alternating signs and batch sizes: one plan per batch size, the branch chosen per run. */
    for (int round = 0; round < 6; round++) {
        int64_t rows = 1 + round % 3;
        float x[12], y[12];
        float sign = round % 2 == 0 ? 1.0f : -1.0f;
        for (int i = 0; i < rows * 4; i++) {
            x[i] = sign * (float)(i + 1);
            y[i] = 0.5f * (float)i;
        }
        int64_t dims[2] = {rows, 4};
        struct veil_tensor in[2] = {tensor_f(x, 2, dims), tensor_f(y, 2, dims)}, out;
        ASSERT_OK(run1(m, in, 2, &out, &eb));
        ASSERT_EQ_U64(out.rank, 2);
        ASSERT_EQ_I64(out.dims[0], rows);
        const float *z = out.data;
        for (int i = 0; i < rows * 4; i++)
            ASSERT_TRUE(z[i] == (sign > 0 ? x[i] + y[i] : x[i] - y[i]));
        veil_tensor_release(&out);
    }
    veil_engine_model_free(m);
}

/*
 * cond = Equal(sr, 16000) on an int64 scalar input: part of the plan key, so the If folds and
 * its branches may even give different shapes (then: Concat(x, x) of [N, 8]; else: x).
 */
TEST(if_plan_time_condition_inlines_branch)
{
    struct mb b;
    mb_init(&b);
    static const int64_t k16000 = 16000;
    mb_input(&b, "x", 1, 2, dyn2);
    mb_input(&b, "sr", 7, 0, NULL);
    mb_output(&b, "z", 1, 2, (const int64_t[]){-1, -1});
    mb_init_i64(&b, "k", 0, NULL, &k16000);
    mb_node(&b, "Equal", "sr,k", "cond", 0);
    size_t n0 = b.n_nodes, i0 = b.n_inits;
    mb_node(&b, "Concat", "x,x", "t", 1, mb_attr_i(&b, "axis", 1));
    VeilOnnx__AttributeProto *then = mb_attr_graph(&b, "then_branch", n0, i0, "t");
    VeilOnnx__AttributeProto *els = mb_attr_graph(&b, "else_branch", n0, i0, "x");
    mb_node(&b, "If", "cond", "z", 2, then, els);
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t dims[2] = {2, 4};
    const int64_t srs[3] = {16000, 8000, 16000};
    for (int r = 0; r < 3; r++) {
        struct veil_tensor in[2] = {tensor_f(x, 2, dims),
                                    tensor_of(VEIL_DT_INT64, 0, NULL, &srs[r])};
        struct veil_tensor out;
        ASSERT_OK(run1(m, in, 2, &out, &eb));
        const float *z = out.data;
        if (srs[r] == 16000) {
            ASSERT_EQ_I64(out.dims[1], 8);
            ASSERT_TRUE(z[0] == 1 && z[4] == 1 && z[8] == 5 && z[15] == 8);
        } else {
            ASSERT_EQ_I64(out.dims[1], 4);
            ASSERT_TRUE(memcmp(z, x, sizeof(x)) == 0);
        }
        veil_tensor_release(&out);
    }
    veil_engine_model_free(m);
}

/*
 * A nested If in the then branch, reading the outermost x and a branch initializer:
 *   z = c1 ? (c2 ? x * two : x + bias) : Neg(x), with c1 = sum(x) > 0 and c2 = sum(y) > 0.
 */
TEST(if_nested_reads_outer_scopes)
{
    struct mb b;
    mb_init(&b);
    static const float zero = 0.0f, two = 2.0f, bias[4] = {10, 20, 30, 40};
    static const int64_t d4[1] = {4};
    mb_input(&b, "x", 1, 2, dyn2);
    mb_input(&b, "y", 1, 2, dyn2);
    mb_output(&b, "z", 1, 2, dyn2);
    mb_init_f(&b, "zero", 0, NULL, &zero);
    mb_node(&b, "ReduceSum", "x", "sx", 1, mb_attr_i(&b, "keepdims", 0));
    mb_node(&b, "Greater", "sx,zero", "c1", 0);
    mb_node(&b, "ReduceSum", "y", "sy", 1, mb_attr_i(&b, "keepdims", 0));
    mb_node(&b, "Greater", "sy,zero", "c2", 0);
    size_t n0 = b.n_nodes, i0 = b.n_inits;
    /* Inner branches first (they become attributes of the inner If). */
    mb_init_f(&b, "two", 0, NULL, &two);
    mb_node(&b, "Mul", "x,two", "p", 0);
    VeilOnnx__AttributeProto *ithen = mb_attr_graph(&b, "then_branch", n0, i0, "p");
    mb_init_f(&b, "bias", 1, d4, bias);
    mb_node(&b, "Add", "x,bias", "q", 0);
    VeilOnnx__AttributeProto *ielse = mb_attr_graph(&b, "else_branch", n0, i0, "q");
    mb_node(&b, "If", "c2", "inner", 2, ithen, ielse);
    mb_node(&b, "Identity", "inner", "t", 0);
    VeilOnnx__AttributeProto *then = mb_attr_graph(&b, "then_branch", n0, i0, "t");
    mb_node(&b, "Neg", "x", "e", 0);
    VeilOnnx__AttributeProto *els = mb_attr_graph(&b, "else_branch", n0, i0, "e");
    mb_node(&b, "If", "c1", "z", 2, then, els);
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    int64_t dims[2] = {1, 4};
    for (int c = 0; c < 3; c++) {
        float x[4] = {1, 2, 3, 4}, y[4] = {1, 1, 1, 1};
        if (c == 1)
            for (int i = 0; i < 4; i++)
                y[i] = -1;
        if (c == 2)
            for (int i = 0; i < 4; i++)
                x[i] = -x[i];
        struct veil_tensor in[2] = {tensor_f(x, 2, dims), tensor_f(y, 2, dims)}, out;
        ASSERT_OK(run1(m, in, 2, &out, &eb));
        const float *z = out.data;
        for (int i = 0; i < 4; i++) {
            float want = c == 0 ? x[i] * 2 : c == 1 ? x[i] + bias[i] : -x[i];
            ASSERT_TRUE(z[i] == want);
        }
        veil_tensor_release(&out);
    }
    veil_engine_model_free(m);
}

/*
 * A branch that cannot run at some shapes (then: Reshape to [5, -1] and back) plans anyway
 * while its condition is a run-time value, and fails only runs that take it.
 */
TEST(if_branch_failing_only_when_taken)
{
    struct mb b;
    mb_init(&b);
    static const float zero = 0.0f;
    static const int64_t five[2] = {5, -1}, d2[1] = {2};
    mb_input(&b, "x", 1, 2, dyn2);
    mb_output(&b, "z", 1, 2, dyn2);
    mb_init_f(&b, "zero", 0, NULL, &zero);
    mb_init_i64(&b, "five", 1, d2, five);
    mb_node(&b, "ReduceSum", "x", "s", 1, mb_attr_i(&b, "keepdims", 0));
    mb_node(&b, "Greater", "s,zero", "cond", 0);
    mb_node(&b, "Shape", "x", "xs", 0);
    size_t n0 = b.n_nodes, i0 = b.n_inits;
    mb_node(&b, "Reshape", "x,five", "r", 0);
    mb_node(&b, "Reshape", "r,xs", "t", 0);
    VeilOnnx__AttributeProto *then = mb_attr_graph(&b, "then_branch", n0, i0, "t");
    mb_node(&b, "Neg", "x", "e", 0);
    VeilOnnx__AttributeProto *els = mb_attr_graph(&b, "else_branch", n0, i0, "e");
    mb_node(&b, "If", "cond", "z", 2, then, els);
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    float x[12];
    int64_t dims[2] = {3, 4}; /* 12 elements: not a multiple of 5 */
    for (int i = 0; i < 12; i++)
        x[i] = -(float)(i + 1);
    struct veil_tensor in = tensor_f(x, 2, dims), out;
    ASSERT_OK(run1(m, &in, 1, &out, &eb));
    ASSERT_TRUE(((const float *)out.data)[3] == 4.0f);
    veil_tensor_release(&out);
    for (int i = 0; i < 12; i++)
        x[i] = (float)(i + 1);
    ASSERT_ERR(run1(m, &in, 1, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "then branch cannot run");
    /* 20 elements: both branches plan, and the then branch is the identity. */
    float x20[20];
    int64_t d5[2] = {5, 4};
    for (int i = 0; i < 20; i++)
        x20[i] = (float)(i + 1);
    in = tensor_f(x20, 2, d5);
    ASSERT_OK(run1(m, &in, 1, &out, &eb));
    ASSERT_TRUE(memcmp(out.data, x20, sizeof(x20)) == 0);
    veil_tensor_release(&out);
    veil_engine_model_free(m);
}

/* Branches of different shapes under a run-time condition: a clear refusal when planning. */
TEST(if_runtime_condition_shape_mismatch_refused)
{
    struct mb b;
    mb_init(&b);
    static const float zero = 0.0f;
    mb_input(&b, "x", 1, 2, dyn2);
    mb_output(&b, "z", 1, 2, (const int64_t[]){-1, -1});
    mb_init_f(&b, "zero", 0, NULL, &zero);
    mb_node(&b, "ReduceSum", "x", "s", 1, mb_attr_i(&b, "keepdims", 0));
    mb_node(&b, "Greater", "s,zero", "cond", 0);
    size_t n0 = b.n_nodes, i0 = b.n_inits;
    mb_node(&b, "Concat", "x,x", "t", 1, mb_attr_i(&b, "axis", 1));
    VeilOnnx__AttributeProto *then = mb_attr_graph(&b, "then_branch", n0, i0, "t");
    VeilOnnx__AttributeProto *els = mb_attr_graph(&b, "else_branch", n0, i0, "x");
    mb_node(&b, "If", "cond", "z", 2, then, els);
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    float x[4] = {1, 2, 3, 4};
    int64_t dims[2] = {1, 4};
    struct veil_tensor in = tensor_f(x, 2, dims), out;
    ASSERT_ERR(run1(m, &in, 1, &out, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "known only at run time");
    veil_engine_model_free(m);
}

/* Hostile If nodes: each refused at load with a reason. */
TEST(if_hostile_models_refused)
{
    struct veil_errbuf eb = {{0}};
    struct veil_engine_model *m = NULL;
    static const float zero = 0.0f;
    for (int c = 0; c < 5; c++) {
        struct mb b;
        mb_init(&b);
        mb_input(&b, "x", 1, 2, dyn2);
        mb_output(&b, "z", 1, 2, dyn2);
        mb_init_f(&b, "zero", 0, NULL, &zero);
        mb_node(&b, "ReduceSum", "x", "s", 1, mb_attr_i(&b, "keepdims", 0));
        mb_node(&b, "Greater", "s,zero", "cond", 0);
        size_t n0 = b.n_nodes, i0 = b.n_inits;
        const char *expect = NULL;
        veil_err want = VEIL_E_FORMAT;
        if (c == 0) {
            /* No else_branch. */
            mb_node(&b, "Neg", "x", "t", 0);
            VeilOnnx__AttributeProto *then = mb_attr_graph(&b, "then_branch", n0, i0, "t");
            mb_node(&b, "If", "cond", "z", 1, then);
            expect = "lacks a then_branch or else_branch";
        } else if (c == 1) {
            /* Two outputs from a branch of a one-output If. */
            mb_node(&b, "Neg", "x", "t", 0);
            VeilOnnx__AttributeProto *then = mb_attr_graph(&b, "then_branch", n0, i0, "t,x");
            VeilOnnx__AttributeProto *els = mb_attr_graph(&b, "else_branch", n0, i0, "x");
            mb_node(&b, "If", "cond", "z", 2, then, els);
            expect = "gives 2 outputs";
        } else if (c == 2) {
            /* A branch reading a name defined nowhere (nor in the sibling branch's scope). */
            mb_node(&b, "Neg", "x", "t", 0);
            VeilOnnx__AttributeProto *then = mb_attr_graph(&b, "then_branch", n0, i0, "t");
            mb_node(&b, "Neg", "t", "e", 0);
            VeilOnnx__AttributeProto *els = mb_attr_graph(&b, "else_branch", n0, i0, "e");
            mb_node(&b, "If", "cond", "z", 2, then, els);
            expect = "reads undefined value 't'";
        } else if (c == 3) {
            /* An operator the engine lacks, inside a branch: named in the refusal. */
            mb_node(&b, "NoSuchOp", "x", "t", 0);
            VeilOnnx__AttributeProto *then = mb_attr_graph(&b, "then_branch", n0, i0, "t");
            VeilOnnx__AttributeProto *els = mb_attr_graph(&b, "else_branch", n0, i0, "x");
            mb_node(&b, "If", "cond", "z", 2, then, els);
            expect = "unsupported operators: NoSuchOp";
            want = VEIL_E_UNSUPPORTED;
        } else {
            /* A branch whose value feeds back into the node itself: a cycle. */
            mb_node(&b, "Neg", "z", "t", 0);
            VeilOnnx__AttributeProto *then = mb_attr_graph(&b, "then_branch", n0, i0, "t");
            VeilOnnx__AttributeProto *els = mb_attr_graph(&b, "else_branch", n0, i0, "x");
            mb_node(&b, "If", "cond", "z", 2, then, els);
            expect = "cycle";
        }
        veil_err rc = mb_load(&b, NULL, &m, &eb);
        if (rc == VEIL_OK) {
            veil_engine_model_free(m);
            m = NULL;
            HFAIL("case %d loaded", c);
        }
        ASSERT_EQ_I64(rc, want);
        ASSERT_STR_CONTAINS(eb.msg, expect);
        ASSERT_TRUE(m == NULL);
    }
}

/* A condition of two elements is refused when planning. */
TEST(if_condition_must_be_one_element)
{
    struct mb b;
    mb_init(&b);
    static const float zero = 0.0f;
    mb_input(&b, "x", 1, 2, dyn2);
    mb_output(&b, "z", 1, 2, dyn2);
    mb_init_f(&b, "zero", 0, NULL, &zero);
    mb_node(&b, "ReduceSum", "x", "s", 2, mb_attr_i(&b, "keepdims", 0),
            mb_attr_ints(&b, "axes", 1, (const int64_t[]){1}));
    mb_node(&b, "Greater", "s,zero", "cond", 0);
    size_t n0 = b.n_nodes, i0 = b.n_inits;
    VeilOnnx__AttributeProto *then = mb_attr_graph(&b, "then_branch", n0, i0, "x");
    VeilOnnx__AttributeProto *els = mb_attr_graph(&b, "else_branch", n0, i0, "x");
    mb_node(&b, "If", "cond", "z", 2, then, els);
    b.opset = 11; /* axes as an attribute */
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t dims[2] = {2, 4};
    struct veil_tensor in = tensor_f(x, 2, dims), out;
    ASSERT_ERR(run1(m, &in, 1, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "condition has 2 elements");
    veil_engine_model_free(m);
}

/*
 * Loop: y = y0 + x * (0 + 1 + ... + (M - 1)) with the trip count M a graph input and x an
 * outer value the body reads; plus a scan output of i * x per iteration when scan is set.
 */
static veil_err load_loop(bool scan, struct veil_engine_model **m, struct veil_errbuf *eb)
{
    struct mb b;
    mb_init(&b);
    mb_input(&b, "M", 7, 0, NULL);
    mb_input(&b, "x", 1, 1, (const int64_t[]){3});
    mb_input(&b, "y0", 1, 1, (const int64_t[]){3});
    mb_output(&b, "y", 1, 1, (const int64_t[]){3});
    if (scan)
        mb_output(&b, "rows", 1, 2, (const int64_t[]){-1, 3});
    static const uint8_t yes = 1;
    b.inits[b.n_inits++] = mb_tensor(&b, "go", 9, 0, NULL, &yes, 1);
    size_t n0 = b.n_nodes, i0 = b.n_inits;
    mb_node(&b, "Cast", "i", "fi", 1, mb_attr_i(&b, "to", 1));
    mb_node(&b, "Mul", "x,fi", "xi", 0);
    mb_node(&b, "Add", "yin,xi", "yout", 0);
    mb_node(&b, "Identity", "cin", "cout", 0);
    VeilOnnx__AttributeProto *body =
        mb_attr_graph(&b, "body", n0, i0, scan ? "cout,yout,xi" : "cout,yout");
    /* The body's declared inputs: iteration, condition, the carried y. */
    VeilOnnx__GraphProto *bg = body->g;
    bg->input = mb_alloc(&b, 3 * sizeof(*bg->input));
    bg->input[0] = mb_vi(&b, "i", 7, 0, NULL);
    bg->input[1] = mb_vi(&b, "cin", 9, 0, NULL);
    bg->input[2] = mb_vi(&b, "yin", 1, 1, (const int64_t[]){3});
    bg->n_input = 3;
    mb_node(&b, "Loop", "M,go,y0", scan ? "y,rows" : "y", 1, body);
    return mb_load(&b, NULL, m, eb);
}

TEST(loop_trip_count_from_input)
{
    for (int scan = 0; scan < 2; scan++) {
        struct veil_engine_model *m = NULL;
        struct veil_errbuf eb = {{0}};
        ASSERT_OK(load_loop(scan != 0, &m, &eb));
        const int64_t trips[4] = {5, 0, 1, 5};
        for (int r = 0; r < 4; r++) {
            float x[3] = {1, 2, 3}, y0[3] = {10, 20, 30};
            int64_t d3[1] = {3};
            struct veil_tensor in[3] = {tensor_of(VEIL_DT_INT64, 0, NULL, &trips[r]),
                                        tensor_f(x, 1, d3), tensor_f(y0, 1, d3)};
            struct veil_tensor out[2];
            ASSERT_OK(veil_engine_run(m, in, 3, out, scan ? 2 : 1, &eb));
            float tri = (float)(trips[r] * (trips[r] - 1) / 2);
            const float *y = out[0].data;
            for (int k = 0; k < 3; k++)
                ASSERT_TRUE(y[k] == y0[k] + x[k] * tri);
            if (scan) {
                ASSERT_EQ_U64(out[1].rank, 2);
                ASSERT_EQ_I64(out[1].dims[0], trips[r]);
                const float *rows = out[1].data;
                for (int64_t i = 0; i < trips[r]; i++)
                    for (int k = 0; k < 3; k++)
                        ASSERT_TRUE(rows[i * 3 + k] == x[k] * (float)i);
                veil_tensor_release(&out[1]);
            }
            veil_tensor_release(&out[0]);
        }
        veil_engine_model_free(m);
    }
}

/* A body that stops on its own condition (i < 2) with a fixed trip count of 10: 3 rounds. */
TEST(loop_condition_stops_early)
{
    struct mb b;
    mb_init(&b);
    mb_input(&b, "y0", 1, 1, (const int64_t[]){2});
    mb_output(&b, "y", 1, 1, (const int64_t[]){2});
    static const int64_t ten = 10, two = 2;
    static const uint8_t yes = 1;
    static const float one = 1.0f;
    mb_init_i64(&b, "M", 0, NULL, &ten);
    b.inits[b.n_inits++] = mb_tensor(&b, "go", 9, 0, NULL, &yes, 1);
    size_t n0 = b.n_nodes, i0 = b.n_inits;
    mb_init_i64(&b, "two", 0, NULL, &two);
    mb_init_f(&b, "one", 0, NULL, &one);
    mb_node(&b, "Less", "i,two", "cout", 0);
    mb_node(&b, "Add", "yin,one", "yout", 0);
    VeilOnnx__AttributeProto *body = mb_attr_graph(&b, "body", n0, i0, "cout,yout");
    VeilOnnx__GraphProto *bg = body->g;
    bg->input = mb_alloc(&b, 3 * sizeof(*bg->input));
    bg->input[0] = mb_vi(&b, "i", 7, 0, NULL);
    bg->input[1] = mb_vi(&b, "cin", 9, 0, NULL);
    bg->input[2] = mb_vi(&b, "yin", 1, 1, (const int64_t[]){2});
    bg->n_input = 3;
    mb_node(&b, "Loop", "M,go,y0", "y", 1, body);
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    float y0[2] = {0.5f, -4.0f};
    int64_t d2[1] = {2};
    struct veil_tensor in = tensor_f(y0, 1, d2), out;
    ASSERT_OK(veil_engine_run(m, &in, 1, &out, 1, &eb));
    ASSERT_TRUE(((const float *)out.data)[0] == 3.5f && ((const float *)out.data)[1] == -1.0f);
    veil_tensor_release(&out);
    veil_engine_model_free(m);
}

/*
 * Scan: a running sum over axis 1, scanned in reverse, its per-step sums stacked along output
 * axis 1; the state is the running sum of one row per batch item.
 */
TEST(scan_reverse_axis1)
{
    struct mb b;
    mb_init(&b);
    b.opset = 11;
    mb_input(&b, "s0", 1, 1, (const int64_t[]){2});
    mb_input(&b, "xs", 1, 2, (const int64_t[]){2, -1});
    mb_output(&b, "s", 1, 1, (const int64_t[]){2});
    mb_output(&b, "ys", 1, 2, (const int64_t[]){2, -1});
    size_t n0 = b.n_nodes, i0 = b.n_inits;
    mb_node(&b, "Add", "sin,xt", "sout", 0);
    mb_node(&b, "Identity", "sout", "yt", 0);
    VeilOnnx__AttributeProto *body = mb_attr_graph(&b, "body", n0, i0, "sout,yt");
    VeilOnnx__GraphProto *bg = body->g;
    bg->input = mb_alloc(&b, 2 * sizeof(*bg->input));
    bg->input[0] = mb_vi(&b, "sin", 1, 1, (const int64_t[]){2});
    bg->input[1] = mb_vi(&b, "xt", 1, 1, (const int64_t[]){2});
    bg->n_input = 2;
    mb_node(&b, "Scan", "s0,xs", "s,ys", 6, body, mb_attr_i(&b, "num_scan_inputs", 1),
            mb_attr_ints(&b, "scan_input_axes", 1, (const int64_t[]){1}),
            mb_attr_ints(&b, "scan_input_directions", 1, (const int64_t[]){1}),
            mb_attr_ints(&b, "scan_output_axes", 1, (const int64_t[]){1}),
            mb_attr_ints(&b, "scan_output_directions", 1, (const int64_t[]){1}));
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    for (int64_t T = 1; T <= 5; T += 2) {
        float s0[2] = {100, 200}, xs[10];
        for (int i = 0; i < 2 * T; i++)
            xs[i] = (float)(i + 1);
        int64_t d2[1] = {2}, dx[2] = {2, T};
        struct veil_tensor in[2] = {tensor_f(s0, 1, d2), tensor_f(xs, 2, dx)}, out[2];
        ASSERT_OK(veil_engine_run(m, in, 2, out, 2, &eb));
        const float *s = out[0].data, *ys = out[1].data;
        ASSERT_EQ_I64(out[1].dims[1], T);
        for (int r = 0; r < 2; r++) {
            /* Reverse scan: step t reads column T-1-t; reverse output: step t lands there too. */
            float acc = s0[r];
            for (int64_t c = T - 1; c >= 0; c--) {
                acc += xs[r * T + c];
                ASSERT_TRUE(ys[r * T + c] == acc);
            }
            ASSERT_TRUE(s[r] == acc);
        }
        veil_tensor_release(&out[0]);
        veil_tensor_release(&out[1]);
    }
    veil_engine_model_free(m);
}

/* A Loop inside an If branch reads a value local to that branch (renamed when lifted). */
TEST(loop_in_branch_reads_branch_value)
{
    struct mb b;
    mb_init(&b);
    static const float zero = 0.0f, three = 3.0f;
    static const int64_t four = 4;
    static const uint8_t yes = 1;
    mb_input(&b, "x", 1, 1, (const int64_t[]){2});
    mb_output(&b, "z", 1, 1, (const int64_t[]){2});
    mb_init_f(&b, "zero", 0, NULL, &zero);
    mb_init_i64(&b, "M", 0, NULL, &four);
    b.inits[b.n_inits++] = mb_tensor(&b, "go", 9, 0, NULL, &yes, 1);
    mb_node(&b, "ReduceSum", "x", "s", 1, mb_attr_i(&b, "keepdims", 0));
    mb_node(&b, "Greater", "s,zero", "cond", 0);
    size_t n0 = b.n_nodes, i0 = b.n_inits;
    mb_init_f(&b, "three", 0, NULL, &three);
    mb_node(&b, "Mul", "x,three", "x3", 0);
    size_t n1 = b.n_nodes, i1 = b.n_inits;
    mb_node(&b, "Add", "acc,x3", "acc2", 0);
    mb_node(&b, "Identity", "c", "c2", 0);
    VeilOnnx__AttributeProto *body = mb_attr_graph(&b, "body", n1, i1, "c2,acc2");
    VeilOnnx__GraphProto *bg = body->g;
    bg->input = mb_alloc(&b, 3 * sizeof(*bg->input));
    bg->input[0] = mb_vi(&b, "i", 7, 0, NULL);
    bg->input[1] = mb_vi(&b, "c", 9, 0, NULL);
    bg->input[2] = mb_vi(&b, "acc", 1, 1, (const int64_t[]){2});
    bg->n_input = 3;
    mb_node(&b, "Loop", "M,go,x", "t", 1, body);
    VeilOnnx__AttributeProto *then = mb_attr_graph(&b, "then_branch", n0, i0, "t");
    mb_node(&b, "Neg", "x", "e", 0);
    VeilOnnx__AttributeProto *els = mb_attr_graph(&b, "else_branch", n0, i0, "e");
    mb_node(&b, "If", "cond", "z", 2, then, els);
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    float x[2] = {1, 2};
    int64_t d2[1] = {2};
    struct veil_tensor in = tensor_f(x, 1, d2), out;
    ASSERT_OK(veil_engine_run(m, &in, 1, &out, 1, &eb));
    /* x + 4 * 3x = 13x */
    ASSERT_TRUE(((const float *)out.data)[0] == 13.0f && ((const float *)out.data)[1] == 26.0f);
    veil_tensor_release(&out);
    veil_engine_model_free(m);
}

/* Hostile loops: each a clear error, at load or when planning. */
TEST(loop_hostile_refused)
{
    for (int c = 0; c < 4; c++) {
        struct mb b;
        mb_init(&b);
        static const int64_t huge = 1000000000000LL, three = 3;
        static const uint8_t yes = 1;
        mb_input(&b, "y0", 1, 1, (const int64_t[]){2});
        mb_output(&b, "y", 1, 1, (const int64_t[]){-1});
        if (c == 1)
            mb_output(&b, "rows", 1, 2, (const int64_t[]){-1, 2});
        mb_init_i64(&b, "M", 0, NULL, c == 1 ? &huge : &three);
        b.inits[b.n_inits++] = mb_tensor(&b, "go", 9, 0, NULL, &yes, 1);
        size_t n0 = b.n_nodes, i0 = b.n_inits;
        const char *outs = "cout,yout", *expect = NULL;
        veil_err want_load = VEIL_OK, want_run = VEIL_OK;
        mb_node(&b, "Identity", "cin", "cout", 0);
        if (c == 0) {
            /* The carried value doubles in length every iteration. */
            mb_node(&b, "Concat", "yin,yin", "yout", 1, mb_attr_i(&b, "axis", 0));
            expect = "values that change shape are not supported";
            want_run = VEIL_E_UNSUPPORTED;
        } else if (c == 1) {
            /* A trillion iterations of scan output. */
            mb_node(&b, "Identity", "yin", "yout", 0);
            mb_node(&b, "Identity", "yin", "row", 0);
            outs = "cout,yout,row";
            expect = "iterations, above";
            want_run = VEIL_E_LIMIT;
        } else if (c == 2) {
            /* The body reads a name defined nowhere. */
            mb_node(&b, "Add", "yin,nowhere", "yout", 0);
            expect = "reads undefined value 'nowhere'";
            want_load = VEIL_E_FORMAT;
        } else {
            /* The body gives fewer outputs than the node has carried values. */
            mb_node(&b, "Identity", "yin", "yout", 0);
            outs = "cout";
            expect = "its body gives 1 outputs";
            want_run = VEIL_E_INVALID;
        }
        VeilOnnx__AttributeProto *body = mb_attr_graph(&b, "body", n0, i0, outs);
        VeilOnnx__GraphProto *bg = body->g;
        bg->input = mb_alloc(&b, 3 * sizeof(*bg->input));
        bg->input[0] = mb_vi(&b, "i", 7, 0, NULL);
        bg->input[1] = mb_vi(&b, "cin", 9, 0, NULL);
        bg->input[2] = mb_vi(&b, "yin", 1, 1, (const int64_t[]){-1});
        bg->n_input = 3;
        mb_node(&b, "Loop", "M,go,y0", c == 1 ? "y,rows" : "y", 1, body);
        struct veil_engine_model *m = NULL;
        struct veil_errbuf eb = {{0}};
        veil_err rc = mb_load(&b, NULL, &m, &eb);
        if (want_load != VEIL_OK) {
            ASSERT_EQ_I64(rc, want_load);
            ASSERT_STR_CONTAINS(eb.msg, expect);
            continue;
        }
        ASSERT_OK(rc);
        float y0[2] = {1, 2};
        int64_t d2[1] = {2};
        struct veil_tensor in = tensor_f(y0, 1, d2), out[2];
        ASSERT_ERR(veil_engine_run(m, &in, 1, out, c == 1 ? 2 : 1, &eb), want_run);
        ASSERT_STR_CONTAINS(eb.msg, expect);
        veil_engine_model_free(m);
    }
}

/* A trip count of a trillion from an input, no scan outputs: stopped at the iteration cap. */
TEST(loop_runtime_trip_count_capped)
{
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(load_loop(false, &m, &eb));
    const int64_t trip = 1000000000000LL;
    float x[3] = {1, 2, 3}, y0[3] = {10, 20, 30};
    int64_t d3[1] = {3};
    struct veil_tensor in[3] = {tensor_of(VEIL_DT_INT64, 0, NULL, &trip), tensor_f(x, 1, d3),
                                tensor_f(y0, 1, d3)};
    struct veil_tensor out;
    ASSERT_ERR(veil_engine_run(m, in, 3, &out, 1, &eb), VEIL_E_LIMIT);
    ASSERT_STR_CONTAINS(eb.msg, "ran more than 1000000 iterations");
    veil_engine_model_free(m);
}

RUN_TESTS()
