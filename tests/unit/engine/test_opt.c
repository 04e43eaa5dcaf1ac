/*
 * Load-time rewrites of exporters' subgraphs: the layer normalisation written out as
 * ReduceMean, Sub, Pow (or Mul), ReduceMean, Add, Sqrt, Div, Mul and Add (torch before
 * opset 17) runs as one LayerNormalization, with the scale reached through an Identity (as
 * torch writes deduplicated weights), with the square as d * d, and without the shift. Chains
 * that differ in meaning or whose pieces are read elsewhere stay as written. Likewise the tanh
 * form of GELU. A softmax's mask addend is taken into it before opset 13 too. Every case checks the
 * outputs against a double-precision reference and, through the profile, which operators ran.
 */
#include "harness.h"
#include "engine_test.h"
#include "model_builder.h"

#include "veil/engine.h"

#include <math.h>

#define ROWS 6
#define LEN 40

enum variant {
    V_POW,           /* Pow(d, 2), gamma and beta */
    V_MUL_NO_BETA,   /* d * d, gamma only */
    V_SCALAR_GAMMA,  /* gamma of one element: broadcast, not a per-feature scale */
    V_D_IS_OUTPUT,   /* d = x - mean is also a graph output */
    V_FOURTH,        /* Pow(d, 4): not a variance */
    V_NOT_LAST_AXIS, /* ReduceMean over axis -2 */
};

struct ln_case {
    enum variant v;
    bool fused; /* expected */
};

/* The chain's value in double, normalising over the last axis (V_NOT_LAST_AXIS excluded). */
static void reference(const struct ln_case *c, const float *x, const float *gamma,
                      const float *beta, float eps, double *y, double *d)
{
    int p = c->v == V_FOURTH ? 4 : 2;
    for (int r = 0; r < ROWS; r++) {
        const float *row = x + r * LEN;
        double m = 0, v = 0;
        for (int i = 0; i < LEN; i++)
            m += row[i];
        m /= LEN;
        for (int i = 0; i < LEN; i++) {
            double di = (double)row[i] - m;
            d[r * LEN + i] = di;
            v += p == 2 ? di * di : di * di * di * di;
        }
        v /= LEN;
        for (int i = 0; i < LEN; i++) {
            double g = c->v == V_SCALAR_GAMMA ? gamma[0] : gamma[i];
            double b = c->v == V_MUL_NO_BETA ? 0.0 : beta[c->v == V_SCALAR_GAMMA ? 0 : i];
            y[r * LEN + i] = d[r * LEN + i] / sqrt(v + eps) * g + b;
        }
    }
}

static void ln_case(const struct ln_case *c)
{
    int64_t xd[3] = {2, ROWS / 2, LEN}, vec[1] = {LEN}, one[1] = {1}, none[1] = {0};
    float x[ROWS * LEN], res[ROWS * LEN], gamma[LEN], beta[LEN], two = 2.0f, four = 4.0f,
                                                                 eps = 0.1f;
    uint32_t seed = 7u + (uint32_t)c->v;
    for (int i = 0; i < ROWS * LEN; i++) {
        x[i] = rnd(&seed) * 3.0f + 0.5f;
        res[i] = rnd(&seed);
    }
    for (int i = 0; i < LEN; i++) {
        gamma[i] = 1.0f + 0.5f * rnd(&seed);
        beta[i] = 0.25f * rnd(&seed);
    }
    static const int64_t last[1] = {-1}, second_last[1] = {-2};
    struct mb mb;
    mb_init(&mb);
    mb_input(&mb, "a", 1, 3, xd);
    mb_input(&mb, "res", 1, 3, xd);
    mb_init_f(&mb, "two", 0, none, c->v == V_FOURTH ? &four : &two);
    mb_init_f(&mb, "eps", 0, none, &eps);
    bool scalar = c->v == V_SCALAR_GAMMA;
    mb_init_f(&mb, "gamma0", 1, scalar ? one : vec, gamma);
    mb_init_f(&mb, "beta", 1, scalar ? one : vec, beta);
    /* x is the sum of two inputs, and is read again after the chain (a residual). */
    mb_node(&mb, "Add", "a,res", "x", 0);
    const int64_t *axes = c->v == V_NOT_LAST_AXIS ? second_last : last;
    mb_node(&mb, "ReduceMean", "x", "mean", 1, mb_attr_ints(&mb, "axes", 1, axes));
    mb_node(&mb, "Sub", "x,mean", "d", 0);
    if (c->v == V_MUL_NO_BETA)
        mb_node(&mb, "Mul", "d,d", "sq", 0);
    else
        mb_node(&mb, "Pow", "d,two", "sq", 0);
    mb_node(&mb, "ReduceMean", "sq", "var", 1, mb_attr_ints(&mb, "axes", 1, axes));
    mb_node(&mb, "Add", "var,eps", "ve", 0);
    mb_node(&mb, "Sqrt", "ve", "sd", 0);
    mb_node(&mb, "Div", "d,sd", "n", 0);
    mb_node(&mb, "Identity", "gamma0", "gamma", 0);
    if (c->v == V_MUL_NO_BETA) {
        mb_node(&mb, "Mul", "n,gamma", "ln", 0);
    } else {
        mb_node(&mb, "Mul", "n,gamma", "g", 0);
        mb_node(&mb, "Add", "g,beta", "ln", 0);
    }
    mb_node(&mb, "Add", "ln,x", "y", 0);
    mb_output(&mb, "y", 1, 3, xd);
    if (c->v == V_D_IS_OUTPUT)
        mb_output(&mb, "d", 1, 3, xd);
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    struct veil_engine_options opt = {.threads = 2, .profile = true};
    ASSERT_OK(mb_load(&mb, &opt, &m, &eb));
    struct veil_tensor in[2] = {tensor_f(x, 3, xd), tensor_f(res, 3, xd)}, out[2];
    size_t n_out = c->v == V_D_IS_OUTPUT ? 2 : 1;
    ASSERT_OK(veil_engine_run(m, in, 2, out, n_out, &eb));
    float xs[ROWS * LEN];
    for (int i = 0; i < ROWS * LEN; i++)
        xs[i] = x[i] + res[i];
    if (c->v != V_NOT_LAST_AXIS) {
        double want[ROWS * LEN], d[ROWS * LEN];
        float wf[ROWS * LEN], df[ROWS * LEN];
        reference(c, xs, gamma, beta, eps, want, d);
        for (int i = 0; i < ROWS * LEN; i++) {
            wf[i] = (float)(want[i] + xs[i]);
            df[i] = (float)d[i];
        }
        double err = rel_l2(out[0].data, wf, ROWS * LEN);
        if (!(err <= 1e-6))
            fprintf(stderr, "variant %d: relative error %g\n", (int)c->v, err);
        ASSERT_TRUE(err <= 1e-6);
        if (n_out == 2)
            ASSERT_TRUE(rel_l2(out[1].data, df, ROWS * LEN) <= 1e-6);
    } else {
        /* Normalised over the middle axis (3 rows of each batch item): each column of a batch
         * item has mean 0 before gamma and beta. */
        const float *y = out[0].data;
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < LEN; i++) {
                double s = 0;
                for (int r = 0; r < ROWS / 2; r++) {
                    int k = (b * (ROWS / 2) + r) * LEN + i;
                    s += ((double)y[k] - xs[k] - beta[i]) / gamma[i];
                }
                ASSERT_TRUE(fabs(s) < 1e-4);
            }
    }
    for (size_t k = 0; k < n_out; k++)
        veil_tensor_release(&out[k]);
    bool ln = profile_has(m, "LayerNormalization", false),
         pow_or_sqrt = profile_has(m, "Sqrt", false);
    if (ln != c->fused)
        fprintf(stderr, "variant %d: fused %d, expected %d\n", (int)c->v, ln, c->fused);
    ASSERT_TRUE(ln == c->fused);
    ASSERT_TRUE(pow_or_sqrt != c->fused); /* the written-out chain ran exactly when not fused */
    veil_engine_model_free(m);
}

TEST(layernorm_chains_fuse)
{
    static const struct ln_case cases[] = {{V_POW, true}, {V_MUL_NO_BETA, true}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ln_case(&cases[i]);
}

TEST(layernorm_lookalikes_stay)
{
    static const struct ln_case cases[] = {{V_SCALAR_GAMMA, false},
                                           {V_D_IS_OUTPUT, false},
                                           {V_FOURTH, false},
                                           {V_NOT_LAST_AXIS, false}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ln_case(&cases[i]);
}

/*
 * Softmax(s + m) in an opset before 13, where Softmax coerces its input to 2-D at its axis
 * (counted from the front, as exporters write it): the Add is taken into the softmax for any
 * axis, the last axis runs on the row kernel and any other first adds, then normalises the
 * coerced rows. Both against a double reference of the old semantics.
 */
TEST(softmax_addend_before_opset_13)
{
    int64_t sd[4] = {2, 3, 4, 5}, md[4] = {2, 1, 1, 5};
    float sv[120], mv[10];
    uint32_t seed = 5;
    for (size_t i = 0; i < 120; i++)
        sv[i] = rnd(&seed) * 4.0f;
    for (size_t i = 0; i < 10; i++)
        mv[i] = i % 4 == 3 ? -10000.0f : 0.0f;
    static const int64_t axes[] = {3, -1, 1};
    for (size_t a = 0; a < sizeof(axes) / sizeof(axes[0]); a++) {
        struct mb mb;
        mb_init(&mb);
        mb.opset = 11;
        mb_input(&mb, "s", 1, 4, sd);
        mb_input(&mb, "m", 1, 4, md);
        mb_node(&mb, "Add", "s,m", "x", 0);
        mb_node(&mb, "Softmax", "x", "y", 1, mb_attr_i(&mb, "axis", axes[a]));
        mb_output(&mb, "y", 1, 4, sd);
        struct veil_engine_model *m = NULL;
        struct veil_errbuf eb = {{0}};
        struct veil_engine_options opt = {.threads = 2, .profile = true};
        ASSERT_OK(mb_load(&mb, &opt, &m, &eb));
        struct veil_tensor in[2] = {tensor_f(sv, 4, sd), tensor_f(mv, 4, md)}, out;
        ASSERT_OK(veil_engine_run(m, in, 2, &out, 1, &eb));
        /* Rows of the coerced 2-D view: [prod(dims before axis), prod(dims from axis)]. */
        size_t ax = axes[a] < 0 ? 3 : (size_t)axes[a], cols = 1;
        for (size_t d = ax; d < 4; d++)
            cols *= (size_t)sd[d];
        double x[120], want_d[120];
        for (size_t i = 0; i < 120; i++)
            x[i] = (double)sv[i] + mv[(i / 60) * 5 + i % 5];
        for (size_t r = 0; r < 120 / cols; r++) {
            double mx = -INFINITY, sum = 0;
            for (size_t j = 0; j < cols; j++)
                mx = x[r * cols + j] > mx ? x[r * cols + j] : mx;
            for (size_t j = 0; j < cols; j++)
                sum += exp(x[r * cols + j] - mx);
            for (size_t j = 0; j < cols; j++)
                want_d[r * cols + j] = exp(x[r * cols + j] - mx) / sum;
        }
        float want[120];
        for (size_t i = 0; i < 120; i++)
            want[i] = (float)want_d[i];
        ASSERT_TRUE(rel_l2(out.data, want, 120) <= 1e-6);
        veil_tensor_release(&out);
        /* One operator ran: the softmax with the Add taken in. */
        struct veil_engine_prof_row rows[8];
        size_t n_rows = 0;
        uint64_t runs = 0;
        double run_ms = 0;
        ASSERT_OK(veil_engine_model_profile(m, rows, 8, &n_rows, &runs, &run_ms, &eb));
        ASSERT_EQ_U64(n_rows, 1);
        ASSERT_TRUE(profile_has(m, "Softmax+Add", false));
        veil_engine_model_free(m);
    }
}

/*
 * The tanh GELU as GPT-2 exports it, 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3))),
 * with the half taken first or last: after a MatMul it becomes the matmul's gelu_tanh post-op;
 * after an Add of two inputs, one Gelu node. A wrong constant or an intermediate that is also
 * a graph output leaves the chain as written.
 */
enum gt_variant { GT_HALF_FIRST, GT_HALF_LAST, GT_AFTER_ADD, GT_WRONG_CONST, GT_INNER_OUTPUT };

static void gelu_tanh_case(enum gt_variant v, const char *want_label)
{
    enum { M = 5, K = 6, N = 33 };
    int64_t ad[2] = {M, K}, wd[2] = {K, N}, yd[2] = {M, N}, none[1] = {0};
    float a[M * K], w[K * N], a2[M * N], b2[M * N];
    float half = 0.5f, one = 1.0f, c1 = 0.7978845608f,
          c2 = v == GT_WRONG_CONST ? 0.0447f : 0.044715f, three = 3.0f;
    uint32_t seed = 11u + (uint32_t)v;
    for (int i = 0; i < M * K; i++)
        a[i] = rnd(&seed) * 2.0f;
    for (int i = 0; i < K * N; i++)
        w[i] = rnd(&seed);
    for (int i = 0; i < M * N; i++) {
        a2[i] = rnd(&seed) * 3.0f;
        b2[i] = rnd(&seed);
    }
    struct mb mb;
    mb_init(&mb);
    mb_init_f(&mb, "half", 0, none, &half);
    mb_init_f(&mb, "one", 0, none, &one);
    mb_init_f(&mb, "c1", 0, none, &c1);
    mb_init_f(&mb, "c2", 0, none, &c2);
    mb_init_f(&mb, "three", 0, none, &three);
    if (v == GT_AFTER_ADD) {
        mb_input(&mb, "p", 1, 2, yd);
        mb_input(&mb, "q", 1, 2, yd);
        mb_node(&mb, "Add", "p,q", "x", 0);
    } else {
        mb_input(&mb, "a", 1, 2, ad);
        mb_init_f(&mb, "w", 2, wd, w);
        mb_node(&mb, "MatMul", "a,w", "x", 0);
    }
    mb_node(&mb, "Pow", "x,three", "p3", 0);
    mb_node(&mb, "Mul", "c2,p3", "b", 0); /* constants on either side */
    mb_node(&mb, "Add", "x,b", "c", 0);
    mb_node(&mb, "Mul", "c,c1", "d", 0);
    mb_node(&mb, "Tanh", "d", "t", 0);
    mb_node(&mb, "Add", "one,t", "e", 0);
    if (v == GT_HALF_LAST) {
        mb_node(&mb, "Mul", "x,e", "xe", 0);
        mb_node(&mb, "Mul", "xe,half", "y", 0);
    } else {
        mb_node(&mb, "Mul", "x,half", "hx", 0);
        mb_node(&mb, "Mul", "hx,e", "y", 0);
    }
    mb_output(&mb, "y", 1, 2, yd);
    if (v == GT_INNER_OUTPUT)
        mb_output(&mb, "t", 1, 2, yd);
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    struct veil_engine_options opt = {.threads = 2, .profile = true};
    ASSERT_OK(mb_load(&mb, &opt, &m, &eb));
    struct veil_tensor in[2], out[2];
    if (v == GT_AFTER_ADD) {
        in[0] = tensor_f(a2, 2, yd);
        in[1] = tensor_f(b2, 2, yd);
    } else {
        in[0] = tensor_f(a, 2, ad);
    }
    size_t n_out = v == GT_INNER_OUTPUT ? 2 : 1;
    ASSERT_OK(veil_engine_run(m, in, v == GT_AFTER_ADD ? 2 : 1, out, n_out, &eb));
    float want[M * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double x = 0;
            if (v == GT_AFTER_ADD) {
                x = (double)a2[i * N + j] + b2[i * N + j];
            } else {
                for (int k = 0; k < K; k++)
                    x += (double)a[i * K + k] * w[k * N + j];
            }
            want[i * N + j] = (float)(0.5 * x * (1 + tanh(0.7978845608 * (x + c2 * x * x * x))));
        }
    double err = rel_l2(out[0].data, want, M * N);
    if (!(err <= 1e-5))
        fprintf(stderr, "gelu tanh variant %d: relative error %g\n", (int)v, err);
    ASSERT_TRUE(err <= 1e-5);
    for (size_t k = 0; k < n_out; k++)
        veil_tensor_release(&out[k]);
    bool found = profile_has(m, want_label, false);
    if (!found)
        fprintf(stderr, "gelu tanh variant %d: no %s in the profile\n", (int)v, want_label);
    ASSERT_TRUE(found);
    veil_engine_model_free(m);
}

TEST(gelu_tanh_chains)
{
    gelu_tanh_case(GT_HALF_FIRST, "MatMul+GeluTanh");
    gelu_tanh_case(GT_HALF_LAST, "MatMul+GeluTanh");
    gelu_tanh_case(GT_AFTER_ADD, "Gelu");
    gelu_tanh_case(GT_WRONG_CONST, "Tanh");
    gelu_tanh_case(GT_INNER_OUTPUT, "Tanh");
}

RUN_TESTS()
