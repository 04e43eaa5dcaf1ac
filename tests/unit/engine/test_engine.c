/*
 * The engine's public API on small models built in the test: element-wise ops with dynamic
 * batch, MatMul and Gemm, Conv with fused BatchNormalization, bias, residual Add and ReLU
 * (checked against naive C references, with Winograd and direct 3x3 kernels, a residual read
 * from a graph input in another layout), plan reuse across batch sizes, concurrent runs, and
 * the contract's error cases.
 */
#include "harness.h"
#include "engine_test.h"
#include "model_builder.h"

#include "veil/engine.h"

#include <math.h>
#include <pthread.h>

static veil_err load(struct mb *b, struct veil_engine_model **m, struct veil_errbuf *eb)
{
    struct veil_buf buf;
    mb_pack(b, &buf);
    struct veil_engine_options opt = {.threads = 2};
    veil_err rc = veil_engine_model_load(veil_buf_span(&buf), &opt, m, eb);
    veil_buf_release(&buf);
    return rc;
}

static double max_rel(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (fabs(b[i]) + 1e-3);
        if (d > m)
            m = d;
    }
    return m;
}

TEST(add_relu_dynamic_batch)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    mb_init(&b);
    int64_t d[2] = {-1, 3}, bd[1] = {3};
    float bias[3] = {1.0f, -2.0f, 0.5f};
    mb_input(&b, "x", 1, 2, d);
    mb_init_f(&b, "b", 1, bd, bias);
    mb_node(&b, "Add", "x,b", "s", 0);
    mb_node(&b, "Relu", "s", "y", 0);
    mb_output(&b, "y", 1, 2, d);
    ASSERT_OK(load(&b, &m, &eb));
    mb_release(&b);
    ASSERT_EQ_U64(veil_engine_model_num_inputs(m), 1);
    ASSERT_STR_EQ(veil_engine_model_input(m, 0)->name, "x");
    ASSERT_EQ_I64(veil_engine_model_input(m, 0)->dims[0], -1);
    for (int64_t n = 1; n <= 4; n += 3) {
        float x[12];
        for (int i = 0; i < 12; i++)
            x[i] = (float)i - 5.0f;
        int64_t xd[2] = {n, 3};
        struct veil_tensor in = tensor_f(x, 2, xd), out;
        ASSERT_OK(veil_engine_run(m, &in, 1, &out, 1, &eb));
        ASSERT_EQ_I64(out.dims[0], n);
        for (int64_t i = 0; i < n * 3; i++) {
            float want = x[i] + bias[i % 3];
            ASSERT_TRUE(((float *)out.data)[i] == (want > 0 ? want : 0));
        }
        veil_tensor_release(&out);
    }
    ASSERT_TRUE(veil_engine_model_peak_bytes(m) > 0);
    veil_engine_model_free(m);
}

TEST(matmul_bias_gemm)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    uint32_t seed = 7;
    float w[8 * 5], bias[5], w2[3 * 5], c2[3];
    for (size_t i = 0; i < 40; i++)
        w[i] = rnd(&seed);
    for (size_t i = 0; i < 5; i++)
        bias[i] = rnd(&seed);
    for (size_t i = 0; i < 15; i++)
        w2[i] = rnd(&seed);
    for (size_t i = 0; i < 3; i++)
        c2[i] = rnd(&seed);
    mb_init(&b);
    int64_t xd[2] = {-1, 8}, wd[2] = {8, 5}, bd[1] = {5}, w2d[2] = {3, 5}, c2d[1] = {3},
            yd[2] = {-1, 3};
    mb_input(&b, "x", 1, 2, xd);
    mb_init_f(&b, "w", 2, wd, w);
    mb_init_f(&b, "bias", 1, bd, bias);
    mb_init_f(&b, "w2", 2, w2d, w2);
    mb_init_f(&b, "c2", 1, c2d, c2);
    mb_node(&b, "MatMul", "x,w", "h0", 0);
    mb_node(&b, "Add", "h0,bias", "h1", 0);
    mb_node(&b, "Tanh", "h1", "h", 0);
    mb_node(&b, "Gemm", "h,w2,c2", "y", 3, mb_attr_i(&b, "transB", 1), mb_attr_f(&b, "alpha", 0.5f),
            mb_attr_f(&b, "beta", 2.0f));
    mb_output(&b, "y", 1, 2, yd);
    ASSERT_OK(load(&b, &m, &eb));
    mb_release(&b);
    float x[6 * 8], want[6 * 3];
    for (size_t i = 0; i < 48; i++)
        x[i] = rnd(&seed);
    for (size_t r = 0; r < 6; r++) {
        float h[5];
        for (size_t j = 0; j < 5; j++) {
            double s = bias[j];
            for (size_t k = 0; k < 8; k++)
                s += (double)x[r * 8 + k] * w[k * 5 + j];
            h[j] = tanhf((float)s);
        }
        for (size_t j = 0; j < 3; j++) {
            double s = 0;
            for (size_t k = 0; k < 5; k++)
                s += (double)h[k] * w2[j * 5 + k];
            want[r * 3 + j] = (float)(0.5 * s + 2.0 * c2[j]);
        }
    }
    int64_t in_d[2] = {6, 8};
    struct veil_tensor in = tensor_f(x, 2, in_d), out;
    ASSERT_OK(veil_engine_run(m, &in, 1, &out, 1, &eb));
    ASSERT_EQ_I64(out.dims[1], 3);
    ASSERT_TRUE(max_rel(out.data, want, 18) < 1e-4);
    veil_tensor_release(&out);
    veil_engine_model_free(m);
}

/*
 * y = relu(bn(conv(x, w) + b) [+ x]) against a naive reference: the optimiser folds BN and fuses
 * the add and the ReLU. With 16-channel multiples the 3x3 convolution runs on Winograd kernels
 * unless direct_conv is set; odd sizes exercise partial Winograd tiles.
 */
static void conv_case_batches(int C, int H, int W, const int *batches, size_t nb, bool direct,
                              bool residual, unsigned max_plans)
{
    int N = 0;
    for (size_t i = 0; i < nb; i++)
        N = batches[i] > N ? batches[i] : N;
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    uint32_t seed = 11;
    size_t nw = (size_t)C * (size_t)C * 9, nx = (size_t)N * (size_t)C * (size_t)H * (size_t)W;
    float *w = malloc(nw * sizeof(float)), *x = malloc(nx * sizeof(float));
    float *want = malloc(nx * sizeof(float)), *cb = malloc(5 * (size_t)C * sizeof(float));
    ASSERT_TRUE(w != NULL && x != NULL && want != NULL && cb != NULL);
    float *sc = cb + C, *bb = cb + 2 * C, *mean = cb + 3 * C, *var = cb + 4 * C;
    float wscale = 1.0f / sqrtf((float)C * 9.0f);
    for (size_t i = 0; i < nw; i++)
        w[i] = rnd(&seed) * wscale;
    for (int i = 0; i < C; i++) {
        cb[i] = rnd(&seed);
        sc[i] = 1.0f + 0.5f * rnd(&seed);
        bb[i] = rnd(&seed);
        mean[i] = rnd(&seed);
        var[i] = 1.0f + 0.5f * rnd(&seed);
    }
    mb_init(&b);
    int64_t xd[4] = {-1, C, H, W}, wd[4] = {C, C, 3, 3}, cd[1] = {C}, pads[4] = {1, 1, 1, 1};
    mb_input(&b, "x", 1, 4, xd);
    mb_init_f(&b, "w", 4, wd, w);
    mb_init_f(&b, "cb", 1, cd, cb);
    mb_init_f(&b, "sc", 1, cd, sc);
    mb_init_f(&b, "bb", 1, cd, bb);
    mb_init_f(&b, "mean", 1, cd, mean);
    mb_init_f(&b, "var", 1, cd, var);
    mb_node(&b, "Conv", "x,w,cb", "c", 1, mb_attr_ints(&b, "pads", 4, pads));
    mb_node(&b, "BatchNormalization", "c,sc,bb,mean,var", "n", 0);
    if (residual)
        mb_node(&b, "Add", "n,x", "s", 0);
    mb_node(&b, "Relu", residual ? "s" : "n", "y", 0);
    mb_output(&b, "y", 1, 4, xd);
    struct veil_buf buf;
    mb_pack(&b, &buf);
    struct veil_engine_options opt = {.threads = 2, .direct_conv = direct, .max_plans = max_plans};
    ASSERT_OK(veil_engine_model_load(veil_buf_span(&buf), &opt, &m, &eb));
    veil_buf_release(&buf);
    mb_release(&b);
    for (size_t i = 0; i < nx; i++)
        x[i] = rnd(&seed);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < C; o++)
            for (int i = 0; i < H; i++)
                for (int j = 0; j < W; j++) {
                    double s = cb[o];
                    for (int c = 0; c < C; c++)
                        for (int ki = 0; ki < 3; ki++)
                            for (int kj = 0; kj < 3; kj++) {
                                int ii = i + ki - 1, jj = j + kj - 1;
                                if (ii < 0 || jj < 0 || ii >= H || jj >= W)
                                    continue;
                                s += (double)x[((n * C + c) * H + ii) * W + jj] *
                                     w[((o * C + c) * 3 + ki) * 3 + kj];
                            }
                    double v = (s - mean[o]) / sqrt(var[o] + 1e-5) * sc[o] + bb[o];
                    size_t at = (size_t)(((n * C + o) * H + i) * W + j);
                    if (residual)
                        v += x[at];
                    want[at] = (float)(v > 0 ? v : 0);
                }
    /* Items are independent: a batch of n answers the first n rows of the reference. */
    for (size_t bi = 0; bi < nb; bi++) {
        int n = batches[bi];
        int64_t in_d[4] = {n, C, H, W};
        size_t rows = (size_t)n * (size_t)C * (size_t)H * (size_t)W;
        struct veil_tensor in = tensor_f(x, 4, in_d), out;
        veil_err rc = veil_engine_run(m, &in, 1, &out, 1, &eb);
        if (rc != VEIL_OK)
            fprintf(stderr, "conv batch %d (run %zu): %s\n", n, bi, veil_errbuf_msg(&eb, rc));
        ASSERT_OK(rc);
        double err = rel_l2(out.data, want, rows);
        if (err >= 1e-5)
            fprintf(stderr, "conv %dx%dx%dx%d%s: relative L2 error %g\n", n, C, H, W,
                    direct ? " direct" : "", err);
        ASSERT_TRUE(err < 1e-5);
        veil_tensor_release(&out);
    }
    veil_engine_model_free(m);
    free(w);
    free(x);
    free(want);
    free(cb);
}

static void conv_case(int C, int H, int W, int N, bool direct, bool residual)
{
    conv_case_batches(C, H, W, &N, 1, direct, residual, 0);
}

TEST(conv_bn_residual_relu)
{
    conv_case(4, 6, 5, 2, false, true);
}

TEST(conv3x3_winograd_and_direct)
{
    conv_case(32, 13, 11, 3, false, false);
    conv_case(32, 13, 11, 3, true, false);
    conv_case(64, 7, 7, 1, false, false);
    conv_case(64, 7, 7, 4, false, false);
    /* The residual is the graph input, stored row-major while the output is channel-blocked. */
    conv_case(32, 13, 11, 3, false, true);
    conv_case(32, 13, 11, 3, true, true);
}

/*
 * One loaded model answers every batch size in any order: the 3x3 weights (2.25 MiB) keep only
 * their Winograd copy after the first plan, which cannot be reordered back to the plain layout,
 * so every later plan must still find (or rebuild) what it reads. With a plan cache of 2, the
 * sequence also evicts plans and rebuilds them for signatures seen before.
 */
TEST(conv_weights_across_batches)
{
    static const int batches[] = {1, 2, 3, 8, 1, 5, 2};
    size_t nb = sizeof(batches) / sizeof(batches[0]);
    conv_case_batches(256, 6, 5, batches, nb, false, false, 0);
    conv_case_batches(256, 6, 5, batches, nb, false, true, 2);
    conv_case_batches(256, 6, 5, batches, nb, true, false, 2);
}

/*
 * Activations fused into a 1x1 Conv as oneDNN post-ops, against a naive reference: SiLU as
 * torch exports it (Sigmoid and a Mul of both, in either operand order), HardSwish and
 * HardSigmoid (a linear post-op and a clip). kind 4 keeps the Sigmoid's output as a graph
 * output too, so nothing may be fused there.
 */
static void act_case(int kind)
{
    enum { N = 2, C = 16, H = 5, W = 7 };
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    uint32_t seed = 5;
    float w[C * C], cb[C], x[N * C * H * W], want[N * C * H * W];
    for (size_t i = 0; i < C * C; i++)
        w[i] = rnd(&seed);
    for (size_t i = 0; i < C; i++)
        cb[i] = rnd(&seed);
    for (size_t i = 0; i < N * C * H * W; i++)
        x[i] = 2.0f * rnd(&seed);
    int64_t xd[4] = {N, C, H, W}, wd[4] = {C, C, 1, 1}, cd[1] = {C};
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_init_f(&b, "w", 4, wd, w);
    mb_init_f(&b, "cb", 1, cd, cb);
    mb_node(&b, "Conv", "x,w,cb", "c", 0);
    if (kind == 0 || kind == 4) {
        mb_node(&b, "Sigmoid", "c", "s", 0);
        mb_node(&b, "Mul", "c,s", "y", 0);
    } else if (kind == 1) {
        mb_node(&b, "Sigmoid", "c", "s", 0);
        mb_node(&b, "Mul", "s,c", "y", 0);
    } else if (kind == 2) {
        mb_node(&b, "HardSwish", "c", "y", 0);
    } else {
        mb_node(&b, "HardSigmoid", "c", "y", 2, mb_attr_f(&b, "alpha", 0.3f),
                mb_attr_f(&b, "beta", 0.4f));
    }
    mb_output(&b, "y", 1, 4, xd);
    if (kind == 4)
        mb_output(&b, "s", 1, 4, xd);
    struct veil_buf buf;
    mb_pack(&b, &buf);
    struct veil_engine_options opt = {.threads = 2};
    ASSERT_OK(veil_engine_model_load(veil_buf_span(&buf), &opt, &m, &eb));
    veil_buf_release(&buf);
    mb_release(&b);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < C; o++)
            for (int p = 0; p < H * W; p++) {
                double v = cb[o];
                for (int c = 0; c < C; c++)
                    v += (double)w[o * C + c] * x[(n * C + c) * H * W + p];
                double r;
                if (kind == 2)
                    r = v * fmin(1.0, fmax(0.0, v / 6.0 + 0.5));
                else if (kind == 3)
                    r = fmin(1.0, fmax(0.0, 0.3 * v + 0.4));
                else
                    r = v / (1.0 + exp(-v));
                want[(n * C + o) * H * W + p] = (float)r;
            }
    struct veil_tensor in = tensor_f(x, 4, xd), out[2];
    ASSERT_OK(veil_engine_run(m, &in, 1, out, kind == 4 ? 2 : 1, &eb));
    double err = rel_l2(out[0].data, want, N * C * H * W);
    if (err >= 1e-5)
        fprintf(stderr, "activation case %d: relative L2 error %g\n", kind, err);
    ASSERT_TRUE(err < 1e-5);
    veil_tensor_release(&out[0]);
    if (kind == 4)
        veil_tensor_release(&out[1]);
    veil_engine_model_free(m);
}

TEST(conv_activation_fusions)
{
    for (int kind = 0; kind < 5; kind++)
        act_case(kind);
}

/*
 * A squeeze-and-excitation block: y = conv3(conv1(x) * sigmoid(conv2(GAP(conv1(x))))), conv1
 * 3x3. Where oneDNN keeps conv1's output channel-blocked (32 channels on AVX-512), the Mul
 * scales it in that layout; 20 channels take a row-major or channels-last layout and the
 * other paths. kind 1 swaps the Mul's operands, kind 2 makes the product a graph output
 * (written row-major), kind 3 scales by a constant per channel, and kind 4 by a constant
 * [1, 1, H, W] map (a oneDNN binary primitive), all against a naive double reference.
 */
static void se_case(int kind, int C)
{
    enum { N = 2, H = 8, W = 8, HW = H * W };
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    uint32_t seed = 3;
    size_t cc = (size_t)C * (size_t)C, nx = (size_t)N * (size_t)C * HW;
    float *w1 = malloc(cc * 9 * sizeof(float)), *w2 = malloc(cc * sizeof(float));
    float *w3 = malloc(cc * sizeof(float)), *b1 = malloc((size_t)C * sizeof(float));
    float *k = malloc((size_t)C * sizeof(float)), *x = malloc(nx * sizeof(float));
    float *want = malloc(nx * sizeof(float)), t[HW];
    double *c1 = malloc(nx * sizeof(double)), *prod = malloc(nx * sizeof(double));
    double *g = malloc((size_t)N * (size_t)C * sizeof(double));
    double *sc = malloc((size_t)N * (size_t)C * sizeof(double));
    ASSERT_TRUE(w1 != NULL && w2 != NULL && w3 != NULL && b1 != NULL && k != NULL && x != NULL &&
                want != NULL && c1 != NULL && prod != NULL && g != NULL && sc != NULL);
    for (size_t i = 0; i < cc * 9; i++)
        w1[i] = rnd(&seed) * 0.1f;
    for (size_t i = 0; i < cc; i++) {
        w2[i] = rnd(&seed) * 0.3f;
        w3[i] = rnd(&seed) * 0.3f;
    }
    for (int i = 0; i < C; i++) {
        b1[i] = rnd(&seed);
        k[i] = rnd(&seed);
    }
    for (size_t i = 0; i < HW; i++)
        t[i] = rnd(&seed);
    for (size_t i = 0; i < nx; i++)
        x[i] = rnd(&seed);
    int64_t xd[4] = {N, C, H, W}, wd[4] = {C, C, 1, 1}, w1d[4] = {C, C, 3, 3}, cd[1] = {C},
            kd[4] = {1, C, 1, 1}, td[4] = {1, 1, H, W}, pads[4] = {1, 1, 1, 1};
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_init_f(&b, "w1", 4, w1d, w1);
    mb_init_f(&b, "b1", 1, cd, b1);
    mb_init_f(&b, "w2", 4, wd, w2);
    mb_init_f(&b, "w3", 4, wd, w3);
    mb_init_f(&b, "k", 4, kd, k);
    mb_init_f(&b, "t", 4, td, t);
    mb_node(&b, "Conv", "x,w1,b1", "c1", 1, mb_attr_ints(&b, "pads", 4, pads));
    mb_node(&b, "GlobalAveragePool", "c1", "g", 0);
    mb_node(&b, "Conv", "g,w2", "z", 0);
    mb_node(&b, "Sigmoid", "z", "s", 0);
    const char *mul_in[5] = {"c1,s", "s,c1", "c1,s", "c1,k", "t,c1"};
    mb_node(&b, "Mul", mul_in[kind], kind == 2 ? "y" : "m", 0);
    if (kind != 2)
        mb_node(&b, "Conv", "m,w3", "y", 0);
    mb_output(&b, "y", 1, 4, xd);
    struct veil_buf buf;
    mb_pack(&b, &buf);
    struct veil_engine_options opt = {.threads = 2};
    ASSERT_OK(veil_engine_model_load(veil_buf_span(&buf), &opt, &m, &eb));
    veil_buf_release(&buf);
    mb_release(&b);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < C; o++) {
            double sum = 0;
            for (int p = 0; p < HW; p++) {
                double v = b1[o];
                for (int c = 0; c < C; c++)
                    for (int q = 0; q < 9; q++) {
                        int i = p / W + q / 3 - 1, j = p % W + q % 3 - 1;
                        if (i >= 0 && j >= 0 && i < H && j < W)
                            v += (double)w1[((size_t)o * C + c) * 9 + q] *
                                 x[((size_t)n * C + c) * HW + (size_t)(i * W + j)];
                    }
                c1[((size_t)n * C + o) * HW + p] = v;
                sum += v;
            }
            g[n * C + o] = sum / HW;
        }
    for (int n = 0; n < N; n++)
        for (int o = 0; o < C; o++) {
            double z = 0;
            for (int c = 0; c < C; c++)
                z += (double)w2[o * C + c] * g[n * C + c];
            sc[n * C + o] = 1.0 / (1.0 + exp(-z));
        }
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < HW; p++) {
                size_t at = ((size_t)n * C + c) * HW + (size_t)p;
                double f = kind == 3 ? k[c] : kind == 4 ? t[p] : sc[n * C + c];
                prod[at] = c1[at] * f;
            }
    for (int n = 0; n < N; n++)
        for (int o = 0; o < C; o++)
            for (int p = 0; p < HW; p++) {
                double v = 0;
                if (kind == 2)
                    v = prod[((size_t)n * C + o) * HW + p];
                else
                    for (int c = 0; c < C; c++)
                        v += (double)w3[o * C + c] * prod[((size_t)n * C + c) * HW + p];
                want[((size_t)n * C + o) * HW + p] = (float)v;
            }
    struct veil_tensor in = tensor_f(x, 4, xd), out;
    ASSERT_OK(veil_engine_run(m, &in, 1, &out, 1, &eb));
    double err = rel_l2(out.data, want, nx);
    if (err >= 1e-5)
        fprintf(stderr, "squeeze-and-excitation case %d, %d channels: relative L2 error %g\n", kind,
                C, err);
    ASSERT_TRUE(err < 1e-5);
    veil_tensor_release(&out);
    veil_engine_model_free(m);
    free(w1);
    free(w2);
    free(w3);
    free(b1);
    free(k);
    free(x);
    free(want);
    free(c1);
    free(prod);
    free(g);
    free(sc);
}

TEST(squeeze_excitation_blocked_mul)
{
    for (int kind = 0; kind < 5; kind++) {
        se_case(kind, 32);
        se_case(kind, 20);
    }
}

struct conc {
    struct veil_engine_model *m;
    const float *x;
    const float *want;
    int64_t n;
    int ok;
};

static void *conc_run(void *arg)
{
    struct conc *c = arg;
    c->ok = 1;
    for (int it = 0; it < 20; it++) {
        int64_t d[2] = {c->n, 3};
        struct veil_tensor in = tensor_f((float *)(uintptr_t)c->x, 2, d), out;
        if (veil_engine_run(c->m, &in, 1, &out, 1, NULL) != VEIL_OK ||
            memcmp(out.data, c->want, (size_t)c->n * 3 * sizeof(float)) != 0)
            c->ok = 0;
        veil_tensor_release(&out);
    }
    return NULL;
}

/*
 * Weights read only through the reordered-weights cache keep one copy after the first run;
 * a new batch size (a new plan) rebuilds the plain copy while planning and results stay
 * right in every plan. A constant that is also read plainly (here by ReduceSum) keeps both.
 */
static void weights_case(bool plain_reader)
{
    enum { K = 512, N = 640 };
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    float *w = malloc((size_t)K * N * sizeof(float)), *x = malloc((size_t)5 * K * sizeof(float));
    float *want = malloc((size_t)5 * N * sizeof(float));
    ASSERT_TRUE(w != NULL && x != NULL && want != NULL);
    uint32_t seed = 5;
    for (size_t i = 0; i < (size_t)K * N; i++)
        w[i] = rnd(&seed);
    for (size_t i = 0; i < (size_t)5 * K; i++)
        x[i] = rnd(&seed);
    for (size_t r = 0; r < 5; r++)
        for (size_t j = 0; j < N; j++) {
            double acc = 0;
            for (size_t k = 0; k < K; k++)
                acc += (double)x[r * K + k] * w[k * N + j];
            want[r * N + j] = (float)acc;
        }
    double wsum = 0;
    for (size_t i = 0; i < (size_t)K * N; i++)
        wsum += w[i];
    mb_init(&b);
    int64_t xd[2] = {-1, K}, wd[2] = {K, N}, yd[2] = {-1, N}, one[1] = {1};
    mb_input(&b, "x", 1, 2, xd);
    mb_init_f(&b, "w", 2, wd, w);
    mb_node(&b, "MatMul", "x,w", "y", 0);
    mb_output(&b, "y", 1, 2, yd);
    if (plain_reader) {
        mb_node(&b, "ReduceSum", "w", "ws", 1, mb_attr_i(&b, "keepdims", 0));
        mb_output(&b, "ws", 1, 0, one);
    }
    ASSERT_OK(load(&b, &m, &eb));
    mb_release(&b);
    size_t plain = (size_t)K * N * sizeof(float), n_out = plain_reader ? 2 : 1;
    ASSERT_EQ_U64(veil_engine_model_weight_bytes(m), plain);
    static const int64_t batches[] = {2, 5, 2, 1};
    for (size_t bi = 0; bi < sizeof(batches) / sizeof(batches[0]); bi++) {
        int64_t d[2] = {batches[bi], K};
        struct veil_tensor in = tensor_f(x, 2, d), out[2];
        ASSERT_OK(veil_engine_run(m, &in, 1, out, n_out, &eb));
        ASSERT_TRUE(rel_l2(out[0].data, want, (size_t)batches[bi] * N) < 1e-5);
        if (plain_reader) {
            ASSERT_TRUE(fabs(*(const float *)out[1].data - wsum) < 1e-2 * (fabs(wsum) + 1));
            veil_tensor_release(&out[1]);
        }
        veil_tensor_release(&out[0]);
        size_t held = veil_engine_model_weight_bytes(m);
        if (plain_reader)
            ASSERT_TRUE(held >= 2 * plain);
        else
            ASSERT_TRUE(held >= plain && held < plain + plain / 2);
    }
    veil_engine_model_free(m);
    free(w);
    free(x);
    free(want);
}

TEST(weights_held_once)
{
    weights_case(false);
    weights_case(true);
}

TEST(concurrent_runs)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    mb_init(&b);
    int64_t d[2] = {-1, 3};
    mb_input(&b, "x", 1, 2, d);
    mb_node(&b, "Sigmoid", "x", "s", 0);
    mb_node(&b, "Mul", "s,x", "y", 0);
    mb_output(&b, "y", 1, 2, d);
    ASSERT_OK(load(&b, &m, NULL));
    mb_release(&b);
    static float x[3][24], want[3][24];
    pthread_t th[3];
    struct conc cs[3];
    for (int t = 0; t < 3; t++) {
        for (int i = 0; i < 24; i++) {
            x[t][i] = (float)(i - 12) * 0.25f + (float)t;
            want[t][i] = x[t][i] / (1.0f + expf(-x[t][i]));
        }
        cs[t] = (struct conc){m, x[t], want[t], 2 + 2 * t, 0};
    }
    /* One reference run per shape, so each thread compares bit-exact results. */
    for (int t = 0; t < 3; t++) {
        int64_t dd[2] = {cs[t].n, 3};
        struct veil_tensor in = tensor_f(x[t], 2, dd), out;
        ASSERT_OK(veil_engine_run(m, &in, 1, &out, 1, NULL));
        ASSERT_TRUE(max_rel(out.data, want[t], (size_t)cs[t].n * 3) < 1e-5);
        memcpy(want[t], out.data, (size_t)cs[t].n * 3 * sizeof(float));
        veil_tensor_release(&out);
    }
    for (int t = 0; t < 3; t++)
        pthread_create(&th[t], NULL, conc_run, &cs[t]);
    for (int t = 0; t < 3; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < 3; t++)
        ASSERT_TRUE(cs[t].ok);
    veil_engine_model_free(m);
}

TEST(run_contract_errors)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    mb_init(&b);
    int64_t d[2] = {-1, 3};
    mb_input(&b, "x", 1, 2, d);
    mb_node(&b, "Relu", "x", "y", 0);
    mb_output(&b, "y", 1, 2, d);
    ASSERT_OK(load(&b, &m, NULL));
    mb_release(&b);
    float x[6] = {0};
    int64_t bad[2] = {2, 4};
    struct veil_tensor in = tensor_f(x, 2, bad), out[2];
    ASSERT_ERR(veil_engine_run(m, &in, 1, out, 1, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "dimension 1 must be 3");
    int64_t good[2] = {2, 3};
    in = tensor_f(x, 2, good);
    in.dtype = VEIL_DT_INT32;
    ASSERT_ERR(veil_engine_run(m, &in, 1, out, 1, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "must be float");
    in = tensor_f(x, 2, good);
    in.nbytes = 4;
    ASSERT_ERR(veil_engine_run(m, &in, 1, out, 1, &eb), VEIL_E_INVALID);
    in = tensor_f(x, 2, good);
    ASSERT_ERR(veil_engine_run(m, &in, 1, out, 2, &eb), VEIL_E_INVALID);
    ASSERT_ERR(veil_engine_run(m, &in, 0, out, 1, &eb), VEIL_E_INVALID);
    in.rank = 1;
    ASSERT_ERR(veil_engine_run(m, &in, 1, out, 1, &eb), VEIL_E_INVALID);
    ASSERT_TRUE(out[0].data == NULL);
    veil_engine_model_free(m);
}

/* One reduction of x [2, 37, 150, 3] against a double-precision reference. */
static void reduce_case(const char *op, size_t na, const int64_t *axes, bool keep, float *x)
{
    const int64_t xd[4] = {2, 37, 150, 3};
    bool red[4] = {na == 0, na == 0, na == 0, na == 0};
    for (size_t i = 0; i < na; i++)
        red[(axes[i] + 4) % 4] = true;
    int64_t od[4] = {0}, odk[4] = {0};
    size_t orank = 0;
    for (size_t i = 0; i < 4; i++) {
        odk[i] = red[i] ? 1 : xd[i];
        if (keep || !red[i])
            od[orank++] = odk[i];
    }
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    if (na > 0)
        mb_node(&b, op, "x", "y", 2, mb_attr_ints(&b, "axes", na, axes),
                mb_attr_i(&b, "keepdims", keep));
    else
        mb_node(&b, op, "x", "y", 1, mb_attr_i(&b, "keepdims", keep));
    mb_output(&b, "y", 1, orank, od);
    ASSERT_OK(load(&b, &m, &eb));
    mb_release(&b);
    struct veil_tensor in = tensor_f(x, 4, xd), out;
    ASSERT_OK(veil_engine_run(m, &in, 1, &out, 1, &eb));
    ASSERT_EQ_U64(out.rank, orank);
    bool is_max = strcmp(op, "ReduceMax") == 0;
    size_t k = 0;
    for (int64_t a = 0; a < odk[0]; a++)
        for (int64_t b1 = 0; b1 < odk[1]; b1++)
            for (int64_t c = 0; c < odk[2]; c++)
                for (int64_t d = 0; d < odk[3]; d++, k++) {
                    double acc = is_max ? -INFINITY : 0;
                    size_t cnt = 0;
                    for (int64_t i = 0; i < xd[0]; i++)
                        for (int64_t j = 0; j < xd[1]; j++)
                            for (int64_t l = 0; l < xd[2]; l++)
                                for (int64_t q = 0; q < xd[3]; q++) {
                                    if ((!red[0] && i != a) || (!red[1] && j != b1) ||
                                        (!red[2] && l != c) || (!red[3] && q != d))
                                        continue;
                                    double v = x[((i * 37 + j) * 150 + l) * 3 + q];
                                    acc = is_max ? (v > acc || isnan(v) ? v : acc) : acc + v;
                                    cnt++;
                                }
                    if (!is_max)
                        acc /= (double)cnt;
                    float got = ((float *)out.data)[k];
                    if (isnan(acc)) {
                        ASSERT_TRUE(isnan(got));
                    } else if (fabs(got - acc) > 1e-6 * (fabs(acc) + 1e-3)) {
                        fprintf(stderr, "%s output %zu: %g, want %g\n", op, k, got, acc);
                        ASSERT_TRUE(false);
                    }
                }
    ASSERT_EQ_U64(k, out.nbytes / sizeof(float));
    veil_tensor_release(&out);
    veil_engine_model_free(m);
}

/* ReduceMean and ReduceMax over contiguous axis blocks (the vectorised paths: last axis, all
 * axes, a narrow inner part of 3, a wide one of 450) and non-contiguous ones, NaN propagating. */
TEST(reductions_against_reference)
{
    size_t n = 2 * 37 * 150 * 3;
    float *x = malloc(n * sizeof(float));
    ASSERT_TRUE(x != NULL);
    uint32_t seed = 7;
    for (size_t i = 0; i < n; i++)
        x[i] = rnd(&seed) * 10.0f + 3.0f;
    x[((1 * 37 + 20) * 150 + 99) * 3 + 2] = NAN;
    static const int64_t last[1] = {3}, mid[1] = {1}, mid2[2] = {1, 2}, apart[2] = {0, 2},
                         neg[1] = {-2};
    for (int op = 0; op < 2; op++) {
        const char *name = op == 0 ? "ReduceMean" : "ReduceMax";
        reduce_case(name, 1, last, true, x);
        reduce_case(name, 1, mid, false, x);
        reduce_case(name, 2, mid2, true, x);
        reduce_case(name, 2, apart, false, x);
        reduce_case(name, 1, neg, true, x);
        reduce_case(name, 0, NULL, false, x);
    }
    free(x);
}

/*
 * One attention block as transformer exports write it: heads split by Reshape + Transpose,
 * Q K^T / sqrt(D) + mask, Softmax, times V, heads merged by Transpose + Reshape. The engine
 * reads the transposes through strided views, writes the merged heads in place, and adds the
 * mask inside the softmax kernel; the result must match a double-precision reference. With
 * extra_out the transposed Q is also a graph output, so that transpose must stay. A masked
 * key (mask -10000) and odd sizes (rows of 37: vector tails) are included.
 */
static void attention_case(int64_t B, int64_t S, int64_t H, int64_t D, bool extra_out)
{
    int64_t E = H * D;
    size_t nx = (size_t)(B * S * E);
    float *xq = malloc(nx * sizeof(float)), *xk = malloc(nx * sizeof(float)),
          *xv = malloc(nx * sizeof(float)), *mask = malloc((size_t)(B * S) * sizeof(float)),
          *want = malloc(nx * sizeof(float));
    double *p = malloc((size_t)S * sizeof(double));
    ASSERT_TRUE(xq && xk && xv && mask && want && p);
    uint32_t seed = 11;
    for (size_t i = 0; i < nx; i++) {
        xq[i] = rnd(&seed) * 2.0f;
        xk[i] = rnd(&seed) * 2.0f;
        xv[i] = rnd(&seed);
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < S; j++)
            mask[b * S + j] = (b == 1 && j >= S - 2) ? -10000.0f : 0.0f;
    struct mb mb;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    mb_init(&mb);
    int64_t xd[3] = {B, S, E}, md[4] = {B, 1, 1, S}, sd[1] = {4}, od[4] = {B, H, S, D},
            shp[4] = {B, S, H, D}, flat[3] = {B, S, E}, fd[1] = {3}, one[1] = {1};
    static const int64_t p_split[4] = {0, 2, 1, 3}, p_kt[4] = {0, 2, 3, 1};
    float scale = sqrtf((float)D);
    mb_input(&mb, "xq", 1, 3, xd);
    mb_input(&mb, "xk", 1, 3, xd);
    mb_input(&mb, "xv", 1, 3, xd);
    mb_input(&mb, "mask", 1, 4, md);
    mb_init_i64(&mb, "heads", 1, sd, shp);
    mb_init_i64(&mb, "merged", 1, fd, flat);
    mb_init_f(&mb, "scale", 1, one, &scale);
    mb_node(&mb, "Reshape", "xq,heads", "q4", 0);
    mb_node(&mb, "Reshape", "xk,heads", "k4", 0);
    mb_node(&mb, "Reshape", "xv,heads", "v4", 0);
    mb_node(&mb, "Transpose", "q4", "qt", 1, mb_attr_ints(&mb, "perm", 4, p_split));
    mb_node(&mb, "Transpose", "k4", "kt", 1, mb_attr_ints(&mb, "perm", 4, p_kt));
    mb_node(&mb, "Transpose", "v4", "vt", 1, mb_attr_ints(&mb, "perm", 4, p_split));
    mb_node(&mb, "MatMul", "qt,kt", "s", 0);
    mb_node(&mb, "Div", "s,scale", "s2", 0);
    mb_node(&mb, "Add", "s2,mask", "s3", 0);
    mb_node(&mb, "Softmax", "s3", "pr", 1, mb_attr_i(&mb, "axis", -1));
    mb_node(&mb, "MatMul", "pr,vt", "o", 0);
    mb_node(&mb, "Transpose", "o", "ot", 1, mb_attr_ints(&mb, "perm", 4, p_split));
    mb_node(&mb, "Reshape", "ot,merged", "y", 0);
    mb_output(&mb, "y", 1, 3, xd);
    if (extra_out)
        mb_output(&mb, "qt", 1, 4, od);
    ASSERT_OK(load(&mb, &m, &eb));
    mb_release(&mb);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < S; i++) {
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < S; j++) {
                    double dot = 0;
                    for (int64_t d = 0; d < D; d++)
                        dot += (double)xq[(b * S + i) * E + h * D + d] *
                               xk[(b * S + j) * E + h * D + d];
                    p[j] = dot / scale + mask[b * S + j];
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int64_t j = 0; j < S; j++) {
                    p[j] = exp(p[j] - mx);
                    sum += p[j];
                }
                for (int64_t d = 0; d < D; d++) {
                    double acc = 0;
                    for (int64_t j = 0; j < S; j++)
                        acc += p[j] / sum * xv[(b * S + j) * E + h * D + d];
                    want[(b * S + i) * E + h * D + d] = (float)acc;
                }
            }
    struct veil_tensor in[4] = {tensor_f(xq, 3, xd), tensor_f(xk, 3, xd), tensor_f(xv, 3, xd),
                                tensor_f(mask, 4, md)};
    struct veil_tensor out[2];
    ASSERT_OK(veil_engine_run(m, in, 4, out, extra_out ? 2 : 1, &eb));
    ASSERT_EQ_U64(out[0].rank, 3);
    double err = rel_l2(out[0].data, want, nx);
    if (err > 1e-5)
        fprintf(stderr, "attention B%lld S%lld H%lld D%lld: relative L2 %g\n", (long long)B,
                (long long)S, (long long)H, (long long)D, err);
    ASSERT_TRUE(err <= 1e-5);
    if (extra_out) {
        const float *qt = out[1].data;
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < S; i++)
                    for (int64_t d = 0; d < D; d++)
                        ASSERT_TRUE(qt[((b * H + h) * S + i) * D + d] ==
                                    xq[(b * S + i) * E + h * D + d]);
        veil_tensor_release(&out[1]);
    }
    veil_tensor_release(&out[0]);
    veil_engine_model_free(m);
    free(xq);
    free(xk);
    free(xv);
    free(mask);
    free(want);
    free(p);
}

TEST(attention_block_against_reference)
{
    attention_case(2, 5, 3, 4, false);
    attention_case(2, 37, 4, 20, false);
    attention_case(2, 37, 4, 20, true);
    attention_case(3, 128, 2, 64, false);
}

/* Softmax rows of every length from 1 to 70 (vector bodies and tails) and a few special rows:
 * against a double reference, a row with a NaN is all NaN, and a row of -inf and 0 puts all
 * weight on the 0. */
TEST(softmax_rows)
{
    for (int64_t len = 1; len <= 70; len++) {
        struct mb b;
        struct veil_engine_model *m = NULL;
        struct veil_errbuf eb = {{0}};
        int64_t d[2] = {3, len};
        mb_init(&b);
        mb_input(&b, "x", 1, 2, d);
        mb_node(&b, "Softmax", "x", "y", 1, mb_attr_i(&b, "axis", -1));
        mb_output(&b, "y", 1, 2, d);
        ASSERT_OK(load(&b, &m, &eb));
        mb_release(&b);
        float x[3 * 70];
        uint32_t seed = (uint32_t)len;
        for (int64_t i = 0; i < len; i++) {
            x[i] = rnd(&seed) * 30.0f;
            x[len + i] = i == len / 2 ? NAN : rnd(&seed);
            x[2 * len + i] = i == len - 1 ? 0.0f : -INFINITY;
        }
        struct veil_tensor in = tensor_f(x, 2, d), out;
        ASSERT_OK(veil_engine_run(m, &in, 1, &out, 1, &eb));
        const float *y = out.data;
        double mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < len; i++)
            mx = x[i] > mx ? x[i] : mx;
        for (int64_t i = 0; i < len; i++)
            sum += exp((double)x[i] - mx);
        for (int64_t i = 0; i < len; i++) {
            double want = exp((double)x[i] - mx) / sum;
            ASSERT_TRUE(fabs(y[i] - want) <= 2e-6 * want + 1e-30);
            ASSERT_TRUE(isnan(y[len + i]));
            ASSERT_TRUE(y[2 * len + i] == (i == len - 1 ? 1.0f : 0.0f));
        }
        veil_tensor_release(&out);
        veil_engine_model_free(m);
    }
}

/* Softmax and LayerNormalization write over their input only when nothing reads it later:
 * here the scaled input is read again after both, so z = s + softmax(s) + ln(s) must hold. */
TEST(inplace_only_when_input_dies)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t d[2] = {4, 33}, one[1] = {1}, cd[1] = {33};
    float two = 2.0f, gamma[33], beta[33];
    for (int i = 0; i < 33; i++) {
        gamma[i] = 1.0f + 0.01f * (float)i;
        beta[i] = 0.1f;
    }
    mb_init(&b);
    mb_input(&b, "x", 1, 2, d);
    mb_init_f(&b, "two", 1, one, &two);
    mb_init_f(&b, "gamma", 1, cd, gamma);
    mb_init_f(&b, "beta", 1, cd, beta);
    mb_node(&b, "Mul", "x,two", "s", 0);
    mb_node(&b, "Softmax", "s", "p", 1, mb_attr_i(&b, "axis", -1));
    mb_node(&b, "LayerNormalization", "s,gamma,beta", "l", 1, mb_attr_i(&b, "axis", -1));
    mb_node(&b, "Add", "s,p", "t", 0);
    mb_node(&b, "Add", "t,l", "z", 0);
    mb_output(&b, "z", 1, 2, d);
    ASSERT_OK(load(&b, &m, &eb));
    mb_release(&b);
    float x[4 * 33], want[4 * 33];
    uint32_t seed = 5;
    for (int i = 0; i < 4 * 33; i++)
        x[i] = rnd(&seed);
    for (int r = 0; r < 4; r++) {
        double mx = -INFINITY, sum = 0, mean = 0, var = 0;
        for (int i = 0; i < 33; i++) {
            double v = 2.0 * x[r * 33 + i];
            mx = v > mx ? v : mx;
            mean += v / 33.0;
        }
        for (int i = 0; i < 33; i++) {
            double v = 2.0 * x[r * 33 + i];
            sum += exp(v - mx);
            var += (v - mean) * (v - mean) / 33.0;
        }
        for (int i = 0; i < 33; i++) {
            double v = 2.0 * x[r * 33 + i];
            double ln = (v - mean) / sqrt(var + 1e-5) * gamma[i] + beta[i];
            want[r * 33 + i] = (float)(v + exp(v - mx) / sum + ln);
        }
    }
    struct veil_tensor in = tensor_f(x, 2, d), out;
    ASSERT_OK(veil_engine_run(m, &in, 1, &out, 1, &eb));
    ASSERT_TRUE(max_rel(out.data, want, 4 * 33) < 1e-5);
    veil_tensor_release(&out);
    veil_engine_model_free(m);
}

/*
 * A Concat of 40 inputs (DenseNet's dense blocks concatenate up to 49 feature maps) and the
 * Dropout torch exports in training mode with ratio 0 (Swin's attention): the identity.
 */
TEST(wide_concat_and_training_dropout_ratio_zero)
{
    struct mb b;
    mb_init(&b);
    static const int64_t d2[2] = {2, 3};
    static const float zero = 0.0f, half = 0.5f;
    static const uint8_t yes = 1;
    mb_input(&b, "x", 1, 2, d2);
    mb_output(&b, "y", 1, 2, (const int64_t[]){2, 120});
    mb_output(&b, "d", 1, 2, d2);
    mb_init_f(&b, "ratio0", 0, NULL, &zero);
    mb_init_f(&b, "ratio", 0, NULL, &half);
    b.inits[b.n_inits++] = mb_tensor(&b, "train", 9, 0, NULL, &yes, 1);
    /* mb_node takes at most 16 names per list: build the Concat node's inputs by hand. */
    VeilOnnx__NodeProto *cat = mb_node(&b, "Concat", "x", "y", 1, mb_attr_i(&b, "axis", 1));
    cat->input = mb_alloc(&b, 40 * sizeof(char *));
    for (size_t i = 0; i < 40; i++)
        cat->input[i] = mb_str(&b, "x");
    cat->n_input = 40;
    mb_node(&b, "Dropout", "x,ratio0,train", "d", 0);
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    float x[6] = {1, 2, 3, 4, 5, 6};
    struct veil_tensor in = tensor_f(x, 2, d2), out[2];
    ASSERT_OK(veil_engine_run(m, &in, 1, out, 2, &eb));
    const float *y = out[0].data, *d = out[1].data;
    ASSERT_EQ_I64(out[0].dims[1], 120);
    for (int r = 0; r < 2; r++)
        for (int k = 0; k < 120; k++)
            ASSERT_TRUE(y[r * 120 + k] == x[r * 3 + k % 3]);
    ASSERT_TRUE(memcmp(d, x, sizeof(x)) == 0);
    veil_tensor_release(&out[0]);
    veil_tensor_release(&out[1]);
    veil_engine_model_free(m);
    /* A real dropout (ratio 0.5 in training mode) is random: still refused. */
    mb_init(&b);
    mb_input(&b, "x", 1, 2, d2);
    mb_output(&b, "d", 1, 2, d2);
    mb_init_f(&b, "ratio", 0, NULL, &half);
    b.inits[b.n_inits++] = mb_tensor(&b, "train", 9, 0, NULL, &yes, 1);
    mb_node(&b, "Dropout", "x,ratio,train", "d", 0);
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    ASSERT_ERR(veil_engine_run(m, &in, 1, out, 1, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "training mode");
    veil_engine_model_free(m);
}

RUN_TESTS()
