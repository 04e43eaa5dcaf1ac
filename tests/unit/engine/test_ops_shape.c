/*
 * The data-movement operators of ops/shape.c, ops/gather.c and ops/einsum.c, on models built in the
 * test: what ONNX's node tests do not cover. Each kernel runs one larger case against a naive
 * reference (other element types than float, negative indices, broadcasting, reductions with
 * duplicate indices); out-of-range GatherElements, ScatterElements, GatherND and ScatterND indices
 * fail the run with the node named; Tile repeats beyond the caps are refused; malformed Einsum
 * equations are VEIL_E_INVALID with a message that names the node and the fault.
 */
#include "harness.h"
#include "model_builder.h"

#include "veil/engine.h"

#include <math.h>

struct tin {
    const char *name;
    enum veil_dtype dt;
    size_t rank;
    int64_t dims[8];
    const void *data;
};

static uint32_t rnd_u32(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static float rnd_f(uint32_t *s)
{
    return (float)(rnd_u32(s) & 0xffff) / 32768.0f - 1.0f;
}

/* A value in [lo, hi). */
static int64_t rnd_in(uint32_t *s, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd_u32(s) % (uint32_t)(hi - lo));
}

static size_t numel_of(size_t rank, const int64_t *dims)
{
    size_t n = 1;
    for (size_t i = 0; i < rank; i++)
        n *= (size_t)dims[i];
    return n;
}

/*
 * Declares the inputs and one output "y" of the given rank (dynamic dims), loads the model and
 * runs it once. Returns the first error (load, plan or run); *out is set only on success.
 */
static veil_err run_graph(struct mb *b, const struct tin *ins, size_t n_in, int out_dt,
                          size_t out_rank, struct veil_tensor *out, struct veil_errbuf *eb)
{
    struct veil_tensor in[8];
    struct veil_engine_model *m = NULL;
    struct veil_buf buf;
    int64_t dyn[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    memset(in, 0, sizeof(in));
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < n_in; i++) {
        mb_input(b, ins[i].name, (int)ins[i].dt, ins[i].rank, ins[i].dims);
        in[i].dtype = ins[i].dt;
        in[i].rank = ins[i].rank;
        memcpy(in[i].dims, ins[i].dims, sizeof(ins[i].dims));
        in[i].data = (void *)(uintptr_t)ins[i].data;
        in[i].nbytes = numel_of(ins[i].rank, ins[i].dims) * veil_dtype_size(ins[i].dt);
    }
    mb_output(b, "y", out_dt, out_rank, dyn);
    mb_pack(b, &buf);
    mb_release(b);
    struct veil_engine_options opt = {.threads = 2};
    veil_err rc = veil_engine_model_load(veil_buf_span(&buf), &opt, &m, eb);
    veil_buf_release(&buf);
    if (rc != VEIL_OK)
        return rc;
    rc = veil_engine_run(m, in, n_in, out, 1, eb);
    veil_engine_model_free(m);
    return rc;
}

static bool same_dims(const struct veil_tensor *t, size_t rank, const int64_t *dims)
{
    return t->rank == rank && memcmp(t->dims, dims, rank * sizeof(int64_t)) == 0;
}

/* ---- GatherElements, ScatterElements ---- */

TEST(gather_elements_negative_indices_int16)
{
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor y;
    uint32_t s = 1;
    enum { A = 7, B = 33, C = 5, K = 40 };
    static int16_t x[A * B * C], want[A * K * C];
    static int64_t ix[A * K * C];
    for (size_t i = 0; i < A * B * C; i++)
        x[i] = (int16_t)rnd_in(&s, -30000, 30000);
    for (size_t i = 0; i < A * K * C; i++)
        ix[i] = rnd_in(&s, -B, B);
    for (size_t a = 0; a < A; a++)
        for (size_t k = 0; k < K; k++)
            for (size_t c = 0; c < C; c++) {
                int64_t v = ix[(a * K + k) * C + c];
                want[(a * K + k) * C + c] = x[(a * B + (size_t)(v < 0 ? v + B : v)) * C + c];
            }
    struct tin in[2] = {{"x", VEIL_DT_INT16, 3, {A, B, C}, x},
                        {"i", VEIL_DT_INT64, 3, {A, K, C}, ix}};
    mb_init(&b);
    mb_node(&b, "GatherElements", "x,i", "y", 1, mb_attr_i(&b, "axis", -2));
    ASSERT_OK(run_graph(&b, in, 2, VEIL_DT_INT16, 3, &y, &eb));
    ASSERT_TRUE(y.dtype == VEIL_DT_INT16 && same_dims(&y, 3, in[1].dims));
    ASSERT_MEM_EQ(y.data, want, sizeof(want));
    veil_tensor_release(&y);

    /* One index past the end fails the run and names the node. */
    ix[77] = B;
    mb_init(&b);
    mb_node(&b, "GatherElements", "x,i", "y", 1, mb_attr_i(&b, "axis", 1));
    ASSERT_ERR(run_graph(&b, in, 2, VEIL_DT_INT16, 3, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'GatherElements'");
    ASSERT_STR_CONTAINS(eb.msg, "index 33 out of range [-33, 33)");
    ix[77] = -B - 1;
    mb_init(&b);
    mb_node(&b, "GatherElements", "x,i", "y", 1, mb_attr_i(&b, "axis", 1));
    ASSERT_ERR(run_graph(&b, in, 2, VEIL_DT_INT16, 3, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "index -34 out of range");

    /* Indices larger than data off the axis would name elements that do not exist. */
    struct tin wide[2] = {{"x", VEIL_DT_INT16, 3, {A, B, C}, x},
                          {"i", VEIL_DT_INT64, 3, {A, 2, C + 1}, ix}};
    mb_init(&b);
    mb_node(&b, "GatherElements", "x,i", "y", 1, mb_attr_i(&b, "axis", 1));
    ASSERT_ERR(run_graph(&b, wide, 2, VEIL_DT_INT16, 3, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "exceeds data's");
}

TEST(scatter_elements_add_duplicates)
{
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor y;
    uint32_t s = 2;
    enum { R = 6, C = 9, K = 14 };
    float x[R * C], up[R * K], want[R * C];
    int32_t ix[R * K];
    for (size_t i = 0; i < R * C; i++)
        want[i] = x[i] = rnd_f(&s);
    for (size_t i = 0; i < R * K; i++) {
        up[i] = rnd_f(&s);
        ix[i] = (int32_t)rnd_in(&s, -C, C); /* K > C: duplicates certain */
    }
    for (size_t r = 0; r < R; r++)
        for (size_t k = 0; k < K; k++) {
            int32_t v = ix[r * K + k];
            want[r * C + (size_t)(v < 0 ? v + C : v)] += up[r * K + k];
        }
    struct tin in[3] = {{"x", VEIL_DT_FLOAT, 2, {R, C}, x},
                        {"i", VEIL_DT_INT32, 2, {R, K}, ix},
                        {"u", VEIL_DT_FLOAT, 2, {R, K}, up}};
    mb_init(&b);
    mb_node(&b, "ScatterElements", "x,i,u", "y", 2, mb_attr_i(&b, "axis", 1),
            mb_attr_s(&b, "reduction", "add"));
    ASSERT_OK(run_graph(&b, in, 3, VEIL_DT_FLOAT, 2, &y, &eb));
    ASSERT_TRUE(same_dims(&y, 2, in[0].dims));
    for (size_t i = 0; i < R * C; i++)
        ASSERT_TRUE(fabsf(((float *)y.data)[i] - want[i]) <= 1e-5f);
    veil_tensor_release(&y);

    /* Reduction none along axis 0, through a Relu so the data's storage can be reused. */
    float xr[R * C], want0[R * C];
    int64_t i0[2 * C];
    float u0[2 * C];
    for (size_t i = 0; i < R * C; i++)
        want0[i] = xr[i] = rnd_f(&s);
    for (size_t i = 0; i < R * C; i++)
        want0[i] = want0[i] > 0 ? want0[i] : 0;
    for (size_t i = 0; i < 2 * C; i++) {
        i0[i] = (int64_t)(i < C ? i % R : R - 1 - i % R);
        u0[i] = rnd_f(&s);
    }
    for (size_t i = 0; i < 2 * C; i++)
        want0[(size_t)i0[i] * C + i % C] = u0[i];
    struct tin in0[3] = {{"x", VEIL_DT_FLOAT, 2, {R, C}, xr},
                         {"i", VEIL_DT_INT64, 2, {2, C}, i0},
                         {"u", VEIL_DT_FLOAT, 2, {2, C}, u0}};
    mb_init(&b);
    mb_node(&b, "Relu", "x", "xr", 0);
    mb_node(&b, "ScatterElements", "xr,i,u", "y", 0);
    ASSERT_OK(run_graph(&b, in0, 3, VEIL_DT_FLOAT, 2, &y, &eb));
    ASSERT_MEM_EQ(y.data, want0, sizeof(want0));
    veil_tensor_release(&y);

    ix[5] = C;
    mb_init(&b);
    mb_node(&b, "ScatterElements", "x,i,u", "y", 1, mb_attr_i(&b, "axis", 1));
    ASSERT_ERR(run_graph(&b, in, 3, VEIL_DT_FLOAT, 2, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'ScatterElements'");
    ASSERT_STR_CONTAINS(eb.msg, "index 9 out of range [-9, 9)");

    /* max and min need opset 18 (this graph is 17); unknown reductions are malformed. */
    ix[5] = 0;
    mb_init(&b);
    mb_node(&b, "ScatterElements", "x,i,u", "y", 2, mb_attr_i(&b, "axis", 1),
            mb_attr_s(&b, "reduction", "max"));
    ASSERT_ERR(run_graph(&b, in, 3, VEIL_DT_FLOAT, 2, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "reduction 'max' needs opset 18");
    mb_init(&b);
    mb_node(&b, "ScatterElements", "x,i,u", "y", 2, mb_attr_i(&b, "axis", 1),
            mb_attr_s(&b, "reduction", "sum"));
    ASSERT_ERR(run_graph(&b, in, 3, VEIL_DT_FLOAT, 2, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "unknown reduction 'sum'");
}

/* ---- GatherND, ScatterND ---- */

TEST(gather_nd_batch_dims)
{
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor y;
    uint32_t s = 3;
    enum { N = 3, D1 = 5, D2 = 4, D3 = 6, T = 7 };
    static int32_t x[N * D1 * D2 * D3], want[N * T * D3];
    int64_t ix[N * T * 2];
    for (size_t i = 0; i < N * D1 * D2 * D3; i++)
        x[i] = (int32_t)rnd_u32(&s);
    for (size_t i = 0; i < N * T; i++) {
        ix[2 * i] = rnd_in(&s, -D1, D1);
        ix[2 * i + 1] = rnd_in(&s, -D2, D2);
    }
    for (size_t n = 0; n < N; n++)
        for (size_t t = 0; t < T; t++) {
            int64_t a = ix[2 * (n * T + t)], c = ix[2 * (n * T + t) + 1];
            a = a < 0 ? a + D1 : a;
            c = c < 0 ? c + D2 : c;
            for (size_t k = 0; k < D3; k++)
                want[(n * T + t) * D3 + k] = x[((n * D1 + (size_t)a) * D2 + (size_t)c) * D3 + k];
        }
    struct tin in[2] = {{"x", VEIL_DT_INT32, 4, {N, D1, D2, D3}, x},
                        {"i", VEIL_DT_INT64, 3, {N, T, 2}, ix}};
    int64_t yd[3] = {N, T, D3};
    mb_init(&b);
    mb_node(&b, "GatherND", "x,i", "y", 1, mb_attr_i(&b, "batch_dims", 1));
    ASSERT_OK(run_graph(&b, in, 2, VEIL_DT_INT32, 3, &y, &eb));
    ASSERT_TRUE(same_dims(&y, 3, yd));
    ASSERT_MEM_EQ(y.data, want, sizeof(want));
    veil_tensor_release(&y);

    ix[9] = D2; /* the second index of a tuple: dimension 2 of data */
    mb_init(&b);
    mb_node(&b, "GatherND", "x,i", "y", 1, mb_attr_i(&b, "batch_dims", 1));
    ASSERT_ERR(run_graph(&b, in, 2, VEIL_DT_INT32, 3, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'GatherND'");
    ASSERT_STR_CONTAINS(eb.msg, "index 4 out of range [-4, 4) for dimension 2");

    /* batch_dims must leave an indexed dimension. */
    mb_init(&b);
    mb_node(&b, "GatherND", "x,i", "y", 1, mb_attr_i(&b, "batch_dims", 3));
    ASSERT_ERR(run_graph(&b, in, 2, VEIL_DT_INT32, 3, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "batch_dims 3 out of range");
}

TEST(scatter_nd_mul_duplicates)
{
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor y;
    uint32_t s = 4;
    enum { D0 = 5, D1 = 4, D2 = 3, T = 9 };
    double x[D0 * D1 * D2], up[T * D2], want[D0 * D1 * D2];
    int64_t ix[T * 2];
    for (size_t i = 0; i < D0 * D1 * D2; i++)
        want[i] = x[i] = rnd_f(&s);
    for (size_t t = 0; t < T; t++) {
        ix[2 * t] = t % 3 == 0 ? 1 : rnd_in(&s, -D0, D0);
        ix[2 * t + 1] = t % 3 == 0 ? -1 : rnd_in(&s, -D1, D1);
        for (size_t k = 0; k < D2; k++)
            up[t * D2 + k] = rnd_f(&s) * 2;
    }
    for (size_t t = 0; t < T; t++) {
        int64_t a = ix[2 * t] < 0 ? ix[2 * t] + D0 : ix[2 * t];
        int64_t c = ix[2 * t + 1] < 0 ? ix[2 * t + 1] + D1 : ix[2 * t + 1];
        for (size_t k = 0; k < D2; k++)
            want[((size_t)a * D1 + (size_t)c) * D2 + k] *= up[t * D2 + k];
    }
    struct tin in[3] = {{"x", VEIL_DT_DOUBLE, 3, {D0, D1, D2}, x},
                        {"i", VEIL_DT_INT64, 2, {T, 2}, ix},
                        {"u", VEIL_DT_DOUBLE, 2, {T, D2}, up}};
    mb_init(&b);
    mb_node(&b, "ScatterND", "x,i,u", "y", 1, mb_attr_s(&b, "reduction", "mul"));
    ASSERT_OK(run_graph(&b, in, 3, VEIL_DT_DOUBLE, 3, &y, &eb));
    ASSERT_TRUE(same_dims(&y, 3, in[0].dims));
    for (size_t i = 0; i < D0 * D1 * D2; i++)
        ASSERT_TRUE(fabs(((double *)y.data)[i] - want[i]) <= 1e-12);
    veil_tensor_release(&y);

    ix[4] = -D0 - 1;
    mb_init(&b);
    mb_node(&b, "ScatterND", "x,i,u", "y", 0);
    ASSERT_ERR(run_graph(&b, in, 3, VEIL_DT_DOUBLE, 3, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'ScatterND'");
    ASSERT_STR_CONTAINS(eb.msg, "index -6 out of range [-5, 5) for dimension 0");

    /* Reductions arrived in opset 16. */
    ix[4] = 0;
    mb_init(&b);
    b.opset = 15;
    mb_node(&b, "ScatterND", "x,i,u", "y", 1, mb_attr_s(&b, "reduction", "add"));
    ASSERT_ERR(run_graph(&b, in, 3, VEIL_DT_DOUBLE, 3, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "needs opset 16");
}

/* ---- Tile ---- */

TEST(tile_uint8_and_caps)
{
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor y;
    uint8_t x[3 * 1 * 5];
    int64_t rep[3] = {2, 4, 3}, rd[1] = {3};
    enum { O0 = 6, O1 = 4, O2 = 15 };
    uint8_t want[O0 * O1 * O2];
    for (size_t i = 0; i < sizeof(x); i++)
        x[i] = (uint8_t)(i * 17 + 3);
    for (size_t a = 0; a < O0; a++)
        for (size_t c = 0; c < O1; c++)
            for (size_t e = 0; e < O2; e++)
                want[(a * O1 + c) * O2 + e] = x[(a % 3) * 5 + e % 5];
    struct tin in[2] = {{"x", VEIL_DT_UINT8, 3, {3, 1, 5}, x}, {"r", VEIL_DT_INT64, 1, {3}, rep}};
    int64_t yd[3] = {O0, O1, O2};
    mb_init(&b);
    mb_node(&b, "Tile", "x,r", "y", 0);
    ASSERT_OK(run_graph(&b, in, 2, VEIL_DT_UINT8, 3, &y, &eb));
    ASSERT_TRUE(same_dims(&y, 3, yd));
    ASSERT_MEM_EQ(y.data, want, sizeof(want));
    veil_tensor_release(&y);

    /* Repeats whose product overflows 64 bits, or just exceeds the activation cap. */
    int64_t over[3] = {INT64_MAX / 2, 1, 1}, big[3] = {1 << 20, 1 << 20, 1 << 10};
    mb_init(&b);
    mb_init_i64(&b, "r", 1, rd, over);
    mb_node(&b, "Tile", "x,r", "y", 0);
    ASSERT_ERR(run_graph(&b, in, 1, VEIL_DT_UINT8, 3, &y, &eb), VEIL_E_LIMIT);
    ASSERT_STR_CONTAINS(eb.msg, "node 'Tile'");
    mb_init(&b);
    mb_init_i64(&b, "r", 1, rd, big);
    mb_node(&b, "Tile", "x,r", "y", 0);
    ASSERT_ERR(run_graph(&b, in, 1, VEIL_DT_UINT8, 3, &y, &eb), VEIL_E_LIMIT);
    ASSERT_STR_CONTAINS(eb.msg, "node 'Tile'");
    int64_t neg[3] = {1, -1, 1}, two[2] = {1, 1}, td[1] = {2};
    mb_init(&b);
    mb_init_i64(&b, "r", 1, rd, neg);
    mb_node(&b, "Tile", "x,r", "y", 0);
    ASSERT_ERR(run_graph(&b, in, 1, VEIL_DT_UINT8, 3, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "negative");
    mb_init(&b);
    mb_init_i64(&b, "r", 1, td, two);
    mb_node(&b, "Tile", "x,r", "y", 0);
    ASSERT_ERR(run_graph(&b, in, 1, VEIL_DT_UINT8, 3, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "repeats has 2 values for rank 3");
}

/* ---- Trilu, EyeLike ---- */

TEST(trilu_batched_runtime_k)
{
    enum { M = 2, R = 5, C = 7 };
    static int64_t x[M * R * C];
    for (size_t i = 0; i < M * R * C; i++)
        x[i] = (int64_t)i + 1;
    for (int upper = 0; upper <= 1; upper++) {
        for (int64_t k = -7; k <= 8; k += 3) {
            struct mb b;
            struct veil_errbuf eb = {{0}};
            struct veil_tensor y;
            struct tin in[2] = {{"x", VEIL_DT_INT64, 3, {M, R, C}, x},
                                {"k", VEIL_DT_INT64, 0, {0}, &k}};
            mb_init(&b);
            mb_node(&b, "Trilu", "x,k", "y", 1, mb_attr_i(&b, "upper", upper));
            ASSERT_OK(run_graph(&b, in, 2, VEIL_DT_INT64, 3, &y, &eb));
            for (size_t m = 0; m < M; m++)
                for (int64_t i = 0; i < R; i++)
                    for (int64_t j = 0; j < C; j++) {
                        size_t e = (m * R + (size_t)i) * C + (size_t)j;
                        bool keep = upper ? j - i >= k : j - i <= k;
                        ASSERT_EQ_I64(((int64_t *)y.data)[e], keep ? x[e] : 0);
                    }
            veil_tensor_release(&y);
        }
    }
    /* An extreme k selects everything or nothing without overflowing. */
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor y;
    int64_t kmin = INT64_MIN;
    struct tin in[2] = {{"x", VEIL_DT_INT64, 3, {M, R, C}, x}, {"k", VEIL_DT_INT64, 0, {0}, &kmin}};
    mb_init(&b);
    mb_node(&b, "Trilu", "x,k", "y", 0);
    ASSERT_OK(run_graph(&b, in, 2, VEIL_DT_INT64, 3, &y, &eb));
    ASSERT_MEM_EQ(y.data, x, sizeof(x));
    veil_tensor_release(&y);
}

TEST(eyelike_dtype_and_k)
{
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor y;
    float x[6 * 9] = {0};
    struct tin in[1] = {{"x", VEIL_DT_FLOAT, 2, {6, 9}, x}};
    for (int64_t k = -7; k <= 9; k += 4) {
        mb_init(&b);
        mb_node(&b, "EyeLike", "x", "y", 2, mb_attr_i(&b, "k", k),
                mb_attr_i(&b, "dtype", VEIL_DT_INT32));
        ASSERT_OK(run_graph(&b, in, 1, VEIL_DT_INT32, 2, &y, &eb));
        ASSERT_TRUE(y.dtype == VEIL_DT_INT32 && same_dims(&y, 2, in[0].dims));
        for (int64_t i = 0; i < 6; i++)
            for (int64_t j = 0; j < 9; j++)
                ASSERT_EQ_I64(((int32_t *)y.data)[i * 9 + j], j - i == k);
        veil_tensor_release(&y);
    }
    mb_init(&b);
    mb_node(&b, "EyeLike", "x", "y", 1, mb_attr_i(&b, "dtype", VEIL_DT_STRING));
    ASSERT_ERR(run_graph(&b, in, 1, VEIL_DT_INT32, 2, &y, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "node 'EyeLike'");
}

/* ---- DepthToSpace, SpaceToDepth ---- */

TEST(depth_space_round_trip_and_crd)
{
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor y;
    enum { N = 2, C = 12, H = 3, W = 5, BS = 2 };
    static double x[N * C * H * W], want[N * C * H * W];
    for (size_t i = 0; i < N * C * H * W; i++)
        x[i] = (double)i * 0.5 - 7;
    /* CRD: y[n, c, h * b + i, w * b + j] = x[n, c * b * b + i * b + j, h, w]. */
    enum { CO = C / (BS * BS) };
    for (size_t n = 0; n < N; n++)
        for (size_t c = 0; c < CO; c++)
            for (size_t h = 0; h < H * BS; h++)
                for (size_t w = 0; w < W * BS; w++)
                    want[((n * CO + c) * H * BS + h) * W * BS + w] =
                        x[((n * C + c * BS * BS + (h % BS) * BS + w % BS) * H + h / BS) * W +
                          w / BS];
    struct tin in[1] = {{"x", VEIL_DT_DOUBLE, 4, {N, C, H, W}, x}};
    int64_t yd[4] = {N, CO, H * BS, W * BS};
    mb_init(&b);
    mb_node(&b, "DepthToSpace", "x", "y", 2, mb_attr_i(&b, "blocksize", BS),
            mb_attr_s(&b, "mode", "CRD"));
    ASSERT_OK(run_graph(&b, in, 1, VEIL_DT_DOUBLE, 4, &y, &eb));
    ASSERT_TRUE(same_dims(&y, 4, yd));
    ASSERT_MEM_EQ(y.data, want, sizeof(want));
    veil_tensor_release(&y);

    /* DepthToSpace (DCR) undoes SpaceToDepth. */
    struct tin sp[1] = {{"x", VEIL_DT_DOUBLE, 4, {N, CO, H * BS, W * BS}, want}};
    mb_init(&b);
    mb_node(&b, "SpaceToDepth", "x", "z", 1, mb_attr_i(&b, "blocksize", BS));
    mb_node(&b, "DepthToSpace", "z", "y", 1, mb_attr_i(&b, "blocksize", BS));
    ASSERT_OK(run_graph(&b, sp, 1, VEIL_DT_DOUBLE, 4, &y, &eb));
    ASSERT_TRUE(same_dims(&y, 4, sp[0].dims));
    ASSERT_MEM_EQ(y.data, want, sizeof(want));
    veil_tensor_release(&y);

    mb_init(&b);
    mb_node(&b, "DepthToSpace", "x", "y", 1, mb_attr_i(&b, "blocksize", 5));
    ASSERT_ERR(run_graph(&b, in, 1, VEIL_DT_DOUBLE, 4, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "not divisible");
    mb_init(&b);
    mb_node(&b, "SpaceToDepth", "x", "y", 0);
    ASSERT_ERR(run_graph(&b, in, 1, VEIL_DT_DOUBLE, 4, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "blocksize must be given");
}

/* ---- CumSum ---- */

TEST(cumsum_exclusive_reverse)
{
    enum { A = 4, L = 50, I = 3 };
    static float x[A * L * I];
    static int64_t xi[A * L * I];
    uint32_t s = 5;
    for (size_t i = 0; i < A * L * I; i++) {
        x[i] = rnd_f(&s);
        xi[i] = rnd_in(&s, -1000, 1000);
    }
    for (int mode = 0; mode < 4; mode++) {
        bool excl = mode & 1, rev = mode & 2;
        int32_t axis = mode == 3 ? -2 : 1;
        struct mb b;
        struct veil_errbuf eb = {{0}};
        struct veil_tensor y, yi;
        struct tin in[2] = {{"x", VEIL_DT_FLOAT, 3, {A, L, I}, x},
                            {"a", VEIL_DT_INT32, 0, {0}, &axis}};
        struct tin ini[2] = {{"x", VEIL_DT_INT64, 3, {A, L, I}, xi},
                             {"a", VEIL_DT_INT32, 0, {0}, &axis}};
        mb_init(&b);
        mb_node(&b, "CumSum", "x,a", "y", 2, mb_attr_i(&b, "exclusive", excl),
                mb_attr_i(&b, "reverse", rev));
        ASSERT_OK(run_graph(&b, in, 2, VEIL_DT_FLOAT, 3, &y, &eb));
        mb_init(&b);
        mb_node(&b, "CumSum", "x,a", "y", 2, mb_attr_i(&b, "exclusive", excl),
                mb_attr_i(&b, "reverse", rev));
        ASSERT_OK(run_graph(&b, ini, 2, VEIL_DT_INT64, 3, &yi, &eb));
        for (size_t a = 0; a < A; a++)
            for (size_t i = 0; i < I; i++) {
                double sum = 0;
                int64_t isum = 0;
                for (size_t t = 0; t < L; t++) {
                    size_t l = rev ? L - 1 - t : t, e = (a * L + l) * I + i;
                    if (!excl) {
                        sum += x[e];
                        isum += xi[e];
                    }
                    ASSERT_TRUE(fabs(((float *)y.data)[e] - sum) <= 1e-5);
                    ASSERT_EQ_I64(((int64_t *)yi.data)[e], isum);
                    if (excl) {
                        sum += x[e];
                        isum += xi[e];
                    }
                }
            }
        veil_tensor_release(&y);
        veil_tensor_release(&yi);
    }
    /* An axis out of range is only known at run time here. */
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor y;
    int32_t bad = 3;
    struct tin in[2] = {{"x", VEIL_DT_FLOAT, 3, {A, L, I}, x}, {"a", VEIL_DT_INT32, 0, {0}, &bad}};
    mb_init(&b);
    mb_node(&b, "CumSum", "x,a", "y", 0);
    ASSERT_ERR(run_graph(&b, in, 2, VEIL_DT_FLOAT, 3, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'CumSum'");
    ASSERT_STR_CONTAINS(eb.msg, "axis 3 out of range");
    int8_t x8[4] = {1, 2, 3, 4};
    int32_t zero = 0;
    struct tin in8[2] = {{"x", VEIL_DT_INT8, 1, {4}, x8}, {"a", VEIL_DT_INT32, 0, {0}, &zero}};
    mb_init(&b);
    mb_node(&b, "CumSum", "x,a", "y", 0);
    ASSERT_ERR(run_graph(&b, in8, 2, VEIL_DT_INT8, 1, &y, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "CumSum of int8");
}

/* ---- OneHot ---- */

TEST(onehot_axis_negative_and_out_of_range)
{
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor y;
    uint32_t s = 6;
    enum { P = 5, Q = 7, D = 10 };
    int64_t ix[P * Q];
    float depth = 10.7f; /* cast to int64: 10 */
    int32_t vals[2] = {-1, 5};
    static int32_t want[P * D * Q];
    for (size_t i = 0; i < P * Q; i++)
        ix[i] = rnd_in(&s, -12, 12);
    for (size_t p = 0; p < P; p++)
        for (size_t d = 0; d < D; d++)
            for (size_t q = 0; q < Q; q++) {
                int64_t v = ix[p * Q + q];
                v = v < 0 ? v + D : v;
                want[(p * D + d) * Q + q] = v == (int64_t)d ? 5 : -1;
            }
    struct tin in[3] = {{"i", VEIL_DT_INT64, 2, {P, Q}, ix},
                        {"d", VEIL_DT_FLOAT, 1, {1}, &depth},
                        {"v", VEIL_DT_INT32, 1, {2}, vals}};
    int64_t yd[3] = {P, D, Q};
    mb_init(&b);
    mb_node(&b, "OneHot", "i,d,v", "y", 1, mb_attr_i(&b, "axis", -2));
    ASSERT_OK(run_graph(&b, in, 3, VEIL_DT_INT32, 3, &y, &eb));
    ASSERT_TRUE(y.dtype == VEIL_DT_INT32 && same_dims(&y, 3, yd));
    ASSERT_MEM_EQ(y.data, want, sizeof(want));
    veil_tensor_release(&y);

    /* A depth beyond the activation cap is refused before anything is allocated. */
    float huge = 1e18f;
    struct tin hin[3] = {{"i", VEIL_DT_INT64, 2, {P, Q}, ix},
                         {"d", VEIL_DT_FLOAT, 1, {1}, &huge},
                         {"v", VEIL_DT_INT32, 1, {2}, vals}};
    mb_init(&b);
    mb_node(&b, "OneHot", "i,d,v", "y", 0);
    ASSERT_ERR(run_graph(&b, hin, 3, VEIL_DT_INT32, 3, &y, &eb), VEIL_E_LIMIT);
    ASSERT_STR_CONTAINS(eb.msg, "node 'OneHot'");
    float none = 0;
    hin[1].data = &none;
    mb_init(&b);
    mb_node(&b, "OneHot", "i,d,v", "y", 0);
    ASSERT_ERR(run_graph(&b, hin, 3, VEIL_DT_INT32, 3, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "depth 0 must be positive");
}

/* ---- Einsum ---- */

static veil_err einsum_run(const char *eq, const struct tin *in, size_t n_in, size_t out_rank,
                           struct veil_tensor *y, struct veil_errbuf *eb)
{
    struct mb b;
    char names[64] = "";
    size_t len = 0;
    for (size_t i = 0; i < n_in && len < sizeof(names); i++)
        len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s", i > 0 ? "," : "",
                                in[i].name);
    mb_init(&b);
    if (eq != NULL)
        mb_node(&b, "Einsum", names, "y", 1, mb_attr_s(&b, "equation", eq));
    else
        mb_node(&b, "Einsum", names, "y", 0);
    return run_graph(&b, in, n_in, (int)in[0].dt, out_rank, y, eb);
}

TEST(einsum_against_reference)
{
    struct veil_errbuf eb = {{0}};
    struct veil_tensor y;
    uint32_t s = 7;
    enum { BA = 3, I = 4, J = 5, K = 6 };
    float a[BA * I * J], bm[BA * J * K], want[BA * I * K];
    for (size_t i = 0; i < BA * I * J; i++)
        a[i] = rnd_f(&s);
    for (size_t i = 0; i < BA * J * K; i++)
        bm[i] = rnd_f(&s);
    for (size_t n = 0; n < BA; n++)
        for (size_t i = 0; i < I; i++)
            for (size_t k = 0; k < K; k++) {
                double acc = 0;
                for (size_t j = 0; j < J; j++)
                    acc += (double)a[(n * I + i) * J + j] * bm[(n * J + j) * K + k];
                want[(n * I + i) * K + k] = (float)acc;
            }
    struct tin mm[2] = {{"a", VEIL_DT_FLOAT, 3, {BA, I, J}, a},
                        {"b", VEIL_DT_FLOAT, 3, {BA, J, K}, bm}};
    int64_t yd[3] = {BA, I, K};
    /* Explicit, and with '...' for the batch. */
    const char *eqs[2] = {"bij,bjk->bik", "...ij,...jk->...ik"};
    for (size_t e = 0; e < 2; e++) {
        ASSERT_OK(einsum_run(eqs[e], mm, 2, 3, &y, &eb));
        ASSERT_TRUE(same_dims(&y, 3, yd));
        for (size_t i = 0; i < BA * I * K; i++)
            ASSERT_TRUE(fabsf(((float *)y.data)[i] - want[i]) <= 1e-5f);
        veil_tensor_release(&y);
    }
    /* Implicit output: the labels used once (i, k), so b and j are both summed. */
    int64_t ikd[2] = {I, K};
    ASSERT_OK(einsum_run(" bij , bjk ", mm, 2, 2, &y, &eb));
    ASSERT_TRUE(same_dims(&y, 2, ikd));
    for (size_t i = 0; i < I * K; i++) {
        double acc = 0;
        for (size_t n = 0; n < BA; n++)
            acc += want[n * I * K + i];
        ASSERT_TRUE(fabs(((float *)y.data)[i] - acc) <= 1e-5);
    }
    veil_tensor_release(&y);
    /* Broadcasting: a [3, 4, 5] against b [1, 5, 6] as '...' dimensions. */
    struct tin bc[2] = {{"a", VEIL_DT_FLOAT, 3, {BA, I, J}, a},
                        {"b", VEIL_DT_FLOAT, 3, {1, J, K}, bm}};
    ASSERT_OK(einsum_run("...ij,...jk->...ik", bc, 2, 3, &y, &eb));
    ASSERT_TRUE(same_dims(&y, 3, yd));
    for (size_t n = 0; n < BA; n++)
        for (size_t i = 0; i < I; i++)
            for (size_t k = 0; k < K; k++) {
                double acc = 0;
                for (size_t j = 0; j < J; j++)
                    acc += (double)a[(n * I + i) * J + j] * bm[j * K + k];
                ASSERT_TRUE(fabs(((float *)y.data)[(n * I + i) * K + k] - acc) <= 1e-5);
            }
    veil_tensor_release(&y);

    /* Diagonals (a repeated label) with a batch, a trace, and an int32 outer product. */
    enum { Q = 4 };
    int32_t sq[2 * Q * Q], v[Q], w[Q + 1];
    for (size_t i = 0; i < 2 * Q * Q; i++)
        sq[i] = (int32_t)rnd_in(&s, -50, 50);
    for (size_t i = 0; i < Q; i++)
        v[i] = (int32_t)i - 2;
    for (size_t i = 0; i <= Q; i++)
        w[i] = 3 * (int32_t)i + 1;
    struct tin sqi[1] = {{"x", VEIL_DT_INT32, 3, {2, Q, Q}, sq}};
    int64_t dd[2] = {2, Q};
    ASSERT_OK(einsum_run("...ii ->...i", sqi, 1, 2, &y, &eb));
    ASSERT_TRUE(same_dims(&y, 2, dd));
    for (size_t n = 0; n < 2; n++)
        for (size_t i = 0; i < Q; i++)
            ASSERT_EQ_I64(((int32_t *)y.data)[n * Q + i], sq[(n * Q + i) * Q + i]);
    veil_tensor_release(&y);
    ASSERT_OK(einsum_run("bii", sqi, 1, 1, &y, &eb));
    for (size_t n = 0; n < 2; n++) {
        int64_t tr = 0;
        for (size_t i = 0; i < Q; i++)
            tr += sq[(n * Q + i) * Q + i];
        ASSERT_EQ_I64(((int32_t *)y.data)[n], tr);
    }
    veil_tensor_release(&y);
    struct tin vw[2] = {{"v", VEIL_DT_INT32, 1, {Q}, v}, {"w", VEIL_DT_INT32, 1, {Q + 1}, w}};
    int64_t od[2] = {Q + 1, Q};
    ASSERT_OK(einsum_run("i,j->ji", vw, 2, 2, &y, &eb));
    ASSERT_TRUE(same_dims(&y, 2, od));
    for (size_t j = 0; j <= Q; j++)
        for (size_t i = 0; i < Q; i++)
            ASSERT_EQ_I64(((int32_t *)y.data)[j * Q + i], v[i] * w[j]);
    veil_tensor_release(&y);
    struct tin vv[2] = {{"v", VEIL_DT_INT32, 1, {Q}, v}, {"u", VEIL_DT_INT32, 1, {Q}, v}};
    ASSERT_OK(einsum_run("i,i", vv, 2, 0, &y, &eb));
    ASSERT_EQ_I64(y.rank, 0);
    ASSERT_EQ_I64(*(int32_t *)y.data, 4 + 1 + 0 + 1);
    veil_tensor_release(&y);
}

/*
 * Labels summed in one operand only are summed inside it before the products: the results
 * equal the plain sum of products. The first case is a fuzzer's model ("bin, bck ->" on two
 * [5, 122, 91] operands): 616 million products as one loop nest, 74 thousand once factored.
 */
TEST(einsum_private_sums)
{
    struct veil_errbuf eb = {{0}};
    struct veil_tensor y;
    uint32_t s = 9;
    enum { B = 5, R = 122, C = 91 };
    float *a = malloc(sizeof(float) * B * R * C), *c = malloc(sizeof(float) * B * R * C);
    ASSERT_TRUE(a != NULL && c != NULL);
    for (size_t i = 0; i < (size_t)B * R * C; i++) {
        a[i] = rnd_f(&s);
        c[i] = rnd_f(&s);
    }
    struct tin big[2] = {{"a", VEIL_DT_FLOAT, 3, {B, R, C}, a},
                         {"c", VEIL_DT_FLOAT, 3, {B, R, C}, c}};
    ASSERT_OK(einsum_run("bin, bck ->", big, 2, 0, &y, &eb));
    double want = 0;
    for (size_t n = 0; n < B; n++) {
        double sa = 0, sc = 0;
        for (size_t i = 0; i < (size_t)R * C; i++) {
            sa += a[n * R * C + i];
            sc += c[n * R * C + i];
        }
        want += sa * sc;
    }
    ASSERT_EQ_I64(y.rank, 0);
    ASSERT_TRUE(fabs(*(float *)y.data - want) <= 1e-4 * (fabs(want) + 1));
    veil_tensor_release(&y);
    /* k is summed inside b alone; j is shared; a diagonal (ii) beside a private label. */
    enum { BA = 3, I = 4, J = 5, K = 6 };
    float x[BA * I * J], w[BA * J * K];
    for (size_t i = 0; i < BA * I * J; i++)
        x[i] = rnd_f(&s);
    for (size_t i = 0; i < BA * J * K; i++)
        w[i] = rnd_f(&s);
    struct tin mm[2] = {{"a", VEIL_DT_FLOAT, 3, {BA, I, J}, x},
                        {"b", VEIL_DT_FLOAT, 3, {BA, J, K}, w}};
    int64_t bid[2] = {BA, I};
    ASSERT_OK(einsum_run("bij,bjk->bi", mm, 2, 2, &y, &eb));
    ASSERT_TRUE(same_dims(&y, 2, bid));
    for (size_t n = 0; n < BA; n++)
        for (size_t i = 0; i < I; i++) {
            double acc = 0;
            for (size_t j = 0; j < J; j++)
                for (size_t k = 0; k < K; k++)
                    acc += (double)x[(n * I + i) * J + j] * w[(n * J + j) * K + k];
            ASSERT_TRUE(fabs(((float *)y.data)[n * I + i] - acc) <= 1e-5);
        }
    veil_tensor_release(&y);
    enum { Q = 4 };
    int32_t sq[2 * Q * Q], v[2 * 3];
    for (size_t i = 0; i < 2 * Q * Q; i++)
        sq[i] = (int32_t)rnd_in(&s, -50, 50);
    for (size_t i = 0; i < 6; i++)
        v[i] = (int32_t)rnd_in(&s, -9, 9);
    struct tin dg[2] = {{"x", VEIL_DT_INT32, 3, {2, Q, Q}, sq}, {"v", VEIL_DT_INT32, 2, {2, 3}, v}};
    int64_t bd[1] = {2};
    ASSERT_OK(einsum_run("bii,bk->b", dg, 2, 1, &y, &eb));
    ASSERT_TRUE(same_dims(&y, 1, bd));
    for (size_t n = 0; n < 2; n++) {
        int64_t tr = 0, sv = 0;
        for (size_t i = 0; i < Q; i++)
            tr += sq[(n * Q + i) * Q + i];
        for (size_t k = 0; k < 3; k++)
            sv += v[n * 3 + k];
        ASSERT_EQ_I64(((int32_t *)y.data)[n], tr * sv);
    }
    veil_tensor_release(&y);
    free(a);
    free(c);
}

TEST(einsum_malformed_equations)
{
    struct veil_errbuf eb = {{0}};
    struct veil_tensor y;
    float a[6] = {0}, bm[12] = {0};
    struct tin in[2] = {{"a", VEIL_DT_FLOAT, 2, {2, 3}, a}, {"b", VEIL_DT_FLOAT, 2, {3, 4}, bm}};
    static const struct {
        const char *eq, *msg;
    } bad[] = {
        {"ij,jk->ik->k", "more than one '->'"},
        {"ij.,jk->ik", "'.' outside '...'"},
        {"i..j,jk", "'.' outside '...'"},
        {"...i...,jk", "more than one '...'"},
        {"ij,jk,kl->il", "more operands than the 2 inputs"},
        {"ij->ij", "1 operands, node has 2 inputs"},
        {"ij,jk->ii", "output repeats label 'i'"},
        {"ij,jk->iz", "output label 'z' is in no operand"},
        {"i$,jk", "unexpected character 0x24 in operand 0"},
        {"ij,jk-ik", "unexpected character 0x2d"},
        {"ijk,jk", "operand 0 3 subscripts for rank 2"},
        {"ij,ik", "label 'i' has sizes 2 and 3"},
        {"abcdefghij,jk", "more than 8 subscripts"},
        {"...j,jk->k", "'...' dimensions are missing from the output"},
        {NULL, "needs a string attribute 'equation'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&eb, 0, sizeof(eb));
        veil_err rc = einsum_run(bad[i].eq, in, 2, 2, &y, &eb);
        if (rc != VEIL_E_INVALID)
            HFAIL("'%s' gave %s (%s)", bad[i].eq ? bad[i].eq : "(none)", veil_err_name(rc), eb.msg);
        ASSERT_STR_CONTAINS(eb.msg, "node 'Einsum'");
        ASSERT_STR_CONTAINS(eb.msg, bad[i].msg);
    }
    /* '...' dimensions that do not broadcast, and an element type the engine does not sum. */
    struct tin br[2] = {{"a", VEIL_DT_FLOAT, 2, {2, 3}, a}, {"b", VEIL_DT_FLOAT, 2, {3, 4}, bm}};
    ASSERT_ERR(einsum_run("...i,...i->...", br, 2, 1, &y, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "do not broadcast");
    uint8_t bools[6] = {0};
    struct tin bl[1] = {{"a", VEIL_DT_BOOL, 2, {2, 3}, bools}};
    ASSERT_ERR(einsum_run("ij->ji", bl, 1, 2, &y, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "Einsum of bool");
}

RUN_TESTS()
