/*
 * Neural-network operators on models built in the test, against naive double-precision
 * references, for what ONNX's node tests leave out: InstanceNormalization and LRN on larger
 * tensors, cubic Resize (every coordinate mode with exclude_outside, cubic_coeff_a, scales and
 * sizes, tf_crop_and_resize with extrapolation), bilinear Resize bit for bit as ONNX Runtime
 * computes it, GlobalMaxPool on the oneDNN and plain paths,
 * the new reductions on the vector and element-by-element paths with empty sets and large
 * ReduceLogSumExp inputs, Hardmax before and after opset 13; and refusals of malformed or
 * unsupported attributes with the node named.
 */
#include "harness.h"
#include "engine_test.h"
#include "model_builder.h"

#include "veil/engine.h"

#include <math.h>

static size_t count(size_t rank, const int64_t *dims)
{
    size_t n = 1;
    for (size_t i = 0; i < rank; i++)
        n *= (size_t)dims[i];
    return n;
}

/*
 * Loads the model of b (released here) and runs it on one input of type dt; the first error
 * of load or run is returned, and on success *out holds output 0 (caller releases).
 */
static veil_err run_dt(struct mb *b, int dt, const void *x, size_t rank, const int64_t *dims,
                       struct veil_tensor *out, struct veil_errbuf *eb)
{
    struct veil_buf buf;
    struct veil_engine_model *m = NULL;
    struct veil_engine_options opt = {.threads = 2};
    memset(out, 0, sizeof(*out));
    mb_pack(b, &buf);
    mb_release(b);
    veil_err rc = veil_engine_model_load(veil_buf_span(&buf), &opt, &m, eb);
    veil_buf_release(&buf);
    if (rc != VEIL_OK)
        return rc;
    struct veil_tensor in;
    memset(&in, 0, sizeof(in));
    in.dtype = dt == 1 ? VEIL_DT_FLOAT : dt == 6 ? VEIL_DT_INT32 : VEIL_DT_INT64;
    in.rank = rank;
    memcpy(in.dims, dims, rank * sizeof(int64_t));
    in.data = (void *)(uintptr_t)x;
    in.nbytes = count(rank, dims) * veil_dtype_size(in.dtype);
    rc = veil_engine_run(m, &in, 1, out, 1, eb);
    veil_engine_model_free(m);
    return rc;
}

static veil_err run_f(struct mb *b, const float *x, size_t rank, const int64_t *dims,
                      struct veil_tensor *out, struct veil_errbuf *eb)
{
    return run_dt(b, 1, x, rank, dims, out, eb);
}

/* A STRING attribute. */
static VeilOnnx__AttributeProto *attr_s(struct mb *b, const char *name, const char *v)
{
    VeilOnnx__AttributeProto *a = mb_alloc(b, sizeof(*a));
    veil_onnx__attribute_proto__init(a);
    a->name = mb_str(b, name);
    a->has_type = 1;
    a->type = VEIL_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    a->has_s = 1;
    a->s.data = (uint8_t *)mb_str(b, v);
    a->s.len = strlen(v);
    return a;
}

/* Whether got (float) matches want everywhere within tol relative (plus tol absolute). */
static bool close_all(const char *what, const struct veil_tensor *got, const double *want, size_t n,
                      double tol)
{
    if (got->nbytes != n * sizeof(float)) {
        fprintf(stderr, "%s: %zu bytes, want %zu floats\n", what, got->nbytes, n);
        return false;
    }
    const float *g = got->data;
    for (size_t i = 0; i < n; i++) {
        if (isnan(want[i]) ? isnan(g[i])
                           : (isinf(want[i]) ? g[i] == want[i]
                                             : fabs(g[i] - want[i]) <= tol * (1 + fabs(want[i]))))
            continue;
        fprintf(stderr, "%s: element %zu is %.9g, want %.9g\n", what, i, (double)g[i], want[i]);
        return false;
    }
    return true;
}

/* ---- InstanceNormalization, LRN ---- */

TEST(instance_norm_against_reference)
{
    const int64_t xd[4] = {3, 6, 19, 23}, cd[1] = {6};
    size_t n = count(4, xd), sp = 19 * 23;
    float *x = malloc(n * sizeof(float));
    double *want = malloc(n * sizeof(double));
    float sc[6], bi[6];
    uint32_t seed = 11;
    ASSERT_TRUE(x != NULL && want != NULL);
    for (size_t i = 0; i < n; i++)
        x[i] = rnd(&seed) * 4.0f + (float)(i / sp % 6) * 100.0f;
    for (size_t c = 0; c < 6; c++) {
        sc[c] = rnd(&seed) * 2.0f;
        bi[c] = rnd(&seed);
    }
    const double eps = 1e-3;
    for (size_t g = 0; g < 18; g++) {
        double mean = 0, var = 0;
        for (size_t i = 0; i < sp; i++)
            mean += x[g * sp + i];
        mean /= (double)sp;
        for (size_t i = 0; i < sp; i++)
            var += (x[g * sp + i] - mean) * (x[g * sp + i] - mean);
        var /= (double)sp;
        for (size_t i = 0; i < sp; i++)
            want[g * sp + i] = (x[g * sp + i] - mean) / sqrt(var + eps) * sc[g % 6] + bi[g % 6];
    }
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_init_f(&b, "s", 1, cd, sc);
    mb_init_f(&b, "b", 1, cd, bi);
    mb_node(&b, "InstanceNormalization", "x,s,b", "y", 1, mb_attr_f(&b, "epsilon", 1e-3f));
    mb_output(&b, "y", 1, 4, xd);
    ASSERT_OK(run_f(&b, x, 4, xd, &out, &eb));
    bool ok = close_all("InstanceNormalization", &out, want, n, 1e-5);
    veil_tensor_release(&out);
    free(x);
    free(want);
    ASSERT_TRUE(ok);
}

static void lrn_case(const int64_t *xd, int64_t size, float alpha, float beta, float bias)
{
    size_t n = count(4, xd), ch = (size_t)xd[1], sp = (size_t)(xd[2] * xd[3]);
    float *x = malloc(n * sizeof(float));
    double *want = malloc(n * sizeof(double));
    uint32_t seed = 5;
    ASSERT_TRUE(x != NULL && want != NULL);
    for (size_t i = 0; i < n; i++)
        x[i] = rnd(&seed) * 3.0f;
    for (size_t i = 0; i < n; i++) {
        size_t c = i / sp % ch, base = i - c * sp;
        double sq = 0;
        for (int64_t k = (int64_t)c - (size - 1) / 2; k <= (int64_t)c + size / 2; k++)
            if (k >= 0 && k < (int64_t)ch)
                sq += (double)x[base + (size_t)k * sp] * x[base + (size_t)k * sp];
        want[i] = x[i] / pow(bias + alpha / (double)size * sq, beta);
    }
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_node(&b, "LRN", "x", "y", 4, mb_attr_i(&b, "size", size), mb_attr_f(&b, "alpha", alpha),
            mb_attr_f(&b, "beta", beta), mb_attr_f(&b, "bias", bias));
    mb_output(&b, "y", 1, 4, xd);
    ASSERT_OK(run_f(&b, x, 4, xd, &out, &eb));
    bool ok = close_all("LRN", &out, want, n, 1e-5);
    veil_tensor_release(&out);
    free(x);
    free(want);
    ASSERT_TRUE(ok);
}

/* Windows wider than the channel count, cut at both edges; planes longer than one block. */
TEST(lrn_against_reference)
{
    const int64_t a[4] = {2, 13, 11, 17}, c[4] = {1, 3, 2, 5};
    lrn_case(a, 5, 1e-2f, 0.75f, 1.0f);
    lrn_case(a, 1, 0.5f, 0.5f, 2.0f);
    lrn_case(c, 7, 0.3f, 1.5f, 0.5f);
}

/* ---- GlobalMaxPool ---- */

TEST(global_max_pool)
{
    /* Rank 4 runs on oneDNN, rank 3 on the plain kernel. */
    for (size_t rank = 3; rank <= 4; rank++) {
        const int64_t xd[4] = {2, 5, 9, rank == 4 ? 7 : 1};
        int64_t od[4] = {2, 5, 1, 1};
        size_t n = count(rank, xd), sp = n / 10;
        float *x = malloc(n * sizeof(float));
        double want[10];
        uint32_t seed = 3;
        ASSERT_TRUE(x != NULL);
        for (size_t i = 0; i < n; i++)
            x[i] = rnd(&seed) - 2.0f;
        for (size_t r = 0; r < 10; r++) {
            want[r] = -INFINITY;
            for (size_t i = 0; i < sp; i++)
                want[r] = x[r * sp + i] > want[r] ? x[r * sp + i] : want[r];
        }
        struct mb b;
        struct veil_errbuf eb = {{0}};
        struct veil_tensor out;
        mb_init(&b);
        mb_input(&b, "x", 1, rank, xd);
        mb_node(&b, "GlobalMaxPool", "x", "y", 0);
        mb_output(&b, "y", 1, rank, od);
        ASSERT_OK(run_f(&b, x, rank, xd, &out, &eb));
        ASSERT_EQ_U64(out.rank, rank);
        bool ok = close_all("GlobalMaxPool", &out, want, 10, 0);
        veil_tensor_release(&out);
        free(x);
        ASSERT_TRUE(ok);
    }
}

/* After a 1x1 convolution, whose output oneDNN may keep in its own layout. */
TEST(global_max_pool_after_conv)
{
    const int64_t xd[4] = {2, 32, 6, 5}, wd[4] = {32, 32, 1, 1}, od[4] = {2, 32, 1, 1};
    size_t n = count(4, xd), sp = 30;
    float *x = malloc(n * sizeof(float)), w[32 * 32];
    double want[64];
    uint32_t seed = 9;
    ASSERT_TRUE(x != NULL);
    for (size_t i = 0; i < n; i++)
        x[i] = rnd(&seed);
    for (size_t i = 0; i < 32 * 32; i++)
        w[i] = rnd(&seed);
    for (size_t bo = 0; bo < 64; bo++) {
        size_t bn = bo / 32, o = bo % 32;
        want[bo] = -INFINITY;
        for (size_t p = 0; p < sp; p++) {
            double acc = 0;
            for (size_t c = 0; c < 32; c++)
                acc += (double)w[o * 32 + c] * x[(bn * 32 + c) * sp + p];
            want[bo] = acc > want[bo] ? acc : want[bo];
        }
    }
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_init_f(&b, "w", 4, wd, w);
    mb_node(&b, "Conv", "x,w", "c", 0);
    mb_node(&b, "GlobalMaxPool", "c", "y", 0);
    mb_output(&b, "y", 1, 4, od);
    ASSERT_OK(run_f(&b, x, 4, xd, &out, &eb));
    bool ok = close_all("Conv + GlobalMaxPool", &out, want, 64, 1e-5);
    veil_tensor_release(&out);
    free(x);
    ASSERT_TRUE(ok);
}

/*
 * MaxPool's indices output after a Conv (whose output would otherwise stay in oneDNN's blocked
 * layout): values and int64 positions in the flattened input, row-major and, with
 * storage_order 1, column-major within each plane; the first maximum of a window wins. The
 * 1x1 Conv has identity weights, so its output equals x exactly and the reference is exact.
 */
TEST(max_pool_indices_after_conv)
{
    enum { N = 2, C = 32, H = 7, W = 6, OH = 4, OW = 3 };
    const int64_t xd[4] = {N, C, H, W}, wd[4] = {C, C, 1, 1}, od[4] = {N, C, OH, OW};
    const int64_t k[2] = {3, 3}, st[2] = {2, 2}, pads[4] = {1, 1, 1, 0};
    size_t n = count(4, xd), on = count(4, od);
    float *x = malloc(n * sizeof(float)), *w = calloc(C * C, sizeof(float));
    double *want = malloc(on * sizeof(double));
    int64_t *want_ix = malloc(on * sizeof(int64_t));
    uint32_t seed = 21;
    ASSERT_TRUE(x != NULL && w != NULL && want != NULL && want_ix != NULL);
    for (size_t i = 0; i < n; i++)
        x[i] = rnd(&seed);
    x[0] = x[1] = 2.0f; /* a tie inside one window: the first position wins */
    for (size_t i = 0; i < C; i++)
        w[i * C + i] = 1.0f;
    for (int64_t order = 0; order < 2; order++) {
        for (size_t pl = 0; pl < N * C; pl++)
            for (int64_t a = 0; a < OH; a++)
                for (int64_t b2 = 0; b2 < OW; b2++) {
                    double best = -INFINITY;
                    int64_t at = -1;
                    for (int64_t ka = 0; ka < 3; ka++)
                        for (int64_t kb = 0; kb < 3; kb++) {
                            int64_t h = a * 2 - 1 + ka, ww = b2 * 2 - 1 + kb;
                            if (h < 0 || ww < 0 || h >= H || ww >= W)
                                continue;
                            double v = x[pl * H * W + (size_t)(h * W + ww)];
                            if (v > best) {
                                best = v;
                                at = (int64_t)pl * H * W + (order ? ww * H + h : h * W + ww);
                            }
                        }
                    size_t o = pl * OH * OW + (size_t)(a * OW + b2);
                    want[o] = best;
                    want_ix[o] = at;
                }
        struct mb b;
        struct veil_errbuf eb = {{0}};
        struct veil_buf buf;
        struct veil_engine_model *m = NULL;
        mb_init(&b);
        mb_input(&b, "x", 1, 4, xd);
        mb_init_f(&b, "w", 4, wd, w);
        mb_node(&b, "Conv", "x,w", "c", 0);
        mb_node(&b, "MaxPool", "c", "y,ix", 4, mb_attr_ints(&b, "kernel_shape", 2, k),
                mb_attr_ints(&b, "strides", 2, st), mb_attr_ints(&b, "pads", 4, pads),
                mb_attr_i(&b, "storage_order", order));
        mb_output(&b, "y", 1, 4, od);
        mb_output(&b, "ix", 7, 4, od);
        mb_pack(&b, &buf);
        mb_release(&b);
        ASSERT_OK(veil_engine_model_load(veil_buf_span(&buf), NULL, &m, &eb));
        veil_buf_release(&buf);
        struct veil_tensor in = tensor_f(x, 4, xd), out[2];
        ASSERT_OK(veil_engine_run(m, &in, 1, out, 2, &eb));
        bool ok = close_all("MaxPool values", &out[0], want, on, 0);
        ok = ok && out[1].dtype == VEIL_DT_INT64 && out[1].nbytes == on * sizeof(int64_t) &&
             memcmp(out[1].data, want_ix, on * sizeof(int64_t)) == 0;
        veil_tensor_release(&out[0]);
        veil_tensor_release(&out[1]);
        veil_engine_model_free(m);
        ASSERT_TRUE(ok);
    }
    free(x);
    free(w);
    free(want);
    free(want_ix);
}

/* ---- Cubic Resize ---- */

struct rz {
    const char *ctm;
    double a;
    bool excl;
    const double *roi; /* 2 * 4 values (tf_crop_and_resize) or NULL */
    double ext;
};

/* Keys' cubic kernel at distance d. */
static double keys(double d, double a)
{
    d = fabs(d);
    if (d <= 1)
        return ((a + 2) * d - (a + 3)) * d * d + 1;
    if (d < 2)
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a;
    return 0;
}

/*
 * ONNX's reference, one axis: the 4 positions of the axis padded with 2 edge elements on
 * each side nearest to xo (ties to the lower), weighted by the kernel at the distances to
 * them (the point taken as past its left neighbour when it falls on a position).
 */
static double ref_cubic_1d(const double *v, size_t stride, int64_t in, double xo, double a,
                           bool excl)
{
    int64_t pick[4];
    bool used[64] = {false};
    int64_t plen = in + 4;
    for (int k = 0; k < 4; k++) {
        int64_t best = -1;
        for (int64_t p = 0; p < plen; p++)
            if (!used[p] && (best < 0 || fabs(xo + 2 - (double)p) < fabs(xo + 2 - (double)best)))
                best = p;
        used[best] = true;
    }
    for (int64_t p = 0, k = 0; p < plen; p++)
        if (used[p])
            pick[k++] = p - 2;
    double t = xo - floor(xo);
    if (t == 0)
        t = 1;
    double dist[4] = {1 + t, t, 1 - t, 2 - t}, c[4], sum = 0, acc = 0;
    for (int k = 0; k < 4; k++) {
        c[k] = keys(dist[k], a);
        if (excl && (pick[k] < 0 || pick[k] >= in))
            c[k] = 0;
        sum += c[k];
    }
    for (int k = 0; k < 4; k++) {
        int64_t i = pick[k] < 0 ? 0 : pick[k] >= in ? in - 1 : pick[k];
        acc += (excl ? c[k] / sum : c[k]) * v[(size_t)i * stride];
    }
    return acc;
}

static double ref_coord(const struct rz *p, int64_t x, int64_t in, int64_t out, double s, double r0,
                        double r1)
{
    if (strcmp(p->ctm, "align_corners") == 0)
        return in * s > 1 ? x * (double)(in - 1) / (in * s - 1) : 0;
    if (strcmp(p->ctm, "asymmetric") == 0)
        return x / s;
    if (strcmp(p->ctm, "pytorch_half_pixel") == 0)
        return out > 1 ? (x + 0.5) / s - 0.5 : 0;
    if (strcmp(p->ctm, "tf_crop_and_resize") == 0)
        return out > 1 ? r0 * (in - 1) + x * (r1 - r0) * (in - 1) / (out - 1)
                       : 0.5 * (r0 + r1) * (in - 1);
    return (x + 0.5) / s - 0.5;
}

/*
 * x [1, 2, 9, 11] resized on its last two axes to od (by sizes when use_sizes, else by the
 * scales sc) and checked against the separable reference: rows first, then columns.
 */
static void cubic_case(const struct rz *p, const int64_t *od, const float *sc, bool use_sizes)
{
    const int64_t xd[4] = {1, 2, 9, 11}, four[1] = {4}, eight[1] = {8};
    const int64_t H = 9, W = 11, OH = od[2], OW = od[3];
    size_t n = count(4, xd), on = count(4, od);
    float x[198];
    double xv[198], *rows = malloc((size_t)(2 * H * OW) * sizeof(double));
    double *want = malloc(on * sizeof(double));
    uint32_t seed = 21;
    ASSERT_TRUE(rows != NULL && want != NULL);
    for (size_t i = 0; i < n; i++)
        xv[i] = x[i] = rnd(&seed) * 5.0f;
    double s_h = use_sizes ? (double)((float)OH / (float)H) : sc[2];
    double s_w = use_sizes ? (double)((float)OW / (float)W) : sc[3];
    const double *roi = p->roi;
    for (int64_t c = 0; c < 2; c++) {
        for (int64_t h = 0; h < H; h++)
            for (int64_t ow = 0; ow < OW; ow++) {
                double xo = ref_coord(p, ow, W, OW, s_w, roi ? roi[3] : 0, roi ? roi[7] : 1);
                rows[(c * H + h) * OW + ow] =
                    roi && (xo < 0 || xo > W - 1)
                        ? p->ext
                        : ref_cubic_1d(&xv[(c * H + h) * W], 1, W, xo, p->a, p->excl);
            }
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                double yo = ref_coord(p, oh, H, OH, s_h, roi ? roi[2] : 0, roi ? roi[6] : 1);
                want[(c * OH + oh) * OW + ow] =
                    roi && (yo < 0 || yo > H - 1)
                        ? p->ext
                        : ref_cubic_1d(&rows[c * H * OW + ow], (size_t)OW, H, yo, p->a, p->excl);
            }
    }
    float roi_f[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    if (roi != NULL)
        for (size_t i = 0; i < 8; i++)
            roi_f[i] = (float)roi[i];
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_init_f(&b, "roi", 1, eight, roi_f);
    if (use_sizes)
        mb_init_i64(&b, "sizes", 1, four, od);
    else
        mb_init_f(&b, "scales", 1, four, sc);
    VeilOnnx__AttributeProto *mode = attr_s(&b, "mode", "cubic");
    VeilOnnx__AttributeProto *ctm = attr_s(&b, "coordinate_transformation_mode", p->ctm);
    mb_node(&b, "Resize", use_sizes ? "x,roi,,sizes" : "x,roi,scales", "y", 5, mode, ctm,
            mb_attr_f(&b, "cubic_coeff_a", (float)p->a), mb_attr_i(&b, "exclude_outside", p->excl),
            mb_attr_f(&b, "extrapolation_value", (float)p->ext));
    mb_output(&b, "y", 1, 4, od);
    ASSERT_OK(run_f(&b, x, 4, xd, &out, &eb));
    char what[128];
    snprintf(what, sizeof(what), "cubic %s a=%g excl=%d %lldx%lld", p->ctm, p->a, p->excl,
             (long long)OH, (long long)OW);
    bool ok = out.rank == 4 && memcmp(out.dims, od, sizeof(int64_t) * 4) == 0 &&
              close_all(what, &out, want, on, 1e-5);
    veil_tensor_release(&out);
    free(rows);
    free(want);
    ASSERT_TRUE(ok);
}

TEST(cubic_resize_against_reference)
{
    static const char *const ctms[] = {"half_pixel", "pytorch_half_pixel", "align_corners",
                                       "asymmetric"};
    const int64_t up[4] = {1, 2, 20, 7}, down[4] = {1, 2, 4, 25}, one[4] = {1, 2, 1, 3};
    const float sc[4] = {1, 1, 1.7f, 0.6f};
    const int64_t sc_od[4] = {1, 2, 15, 6};
    for (size_t m = 0; m < 4; m++)
        for (int excl = 0; excl < 2; excl++) {
            struct rz p = {ctms[m], excl ? -0.5 : -0.75, excl != 0, NULL, 0};
            cubic_case(&p, up, NULL, true);
            cubic_case(&p, down, NULL, true);
            cubic_case(&p, one, NULL, true);
            cubic_case(&p, sc_od, sc, false);
        }
    /* Crops reaching outside the input: those outputs are extrapolation_value. */
    static const double roi[8] = {0, 0, -0.2, 0.1, 1, 1, 0.9, 1.3};
    for (int excl = 0; excl < 2; excl++) {
        struct rz p = {"tf_crop_and_resize", -0.75, excl != 0, roi, 7.5};
        cubic_case(&p, up, NULL, true);
        cubic_case(&p, down, NULL, true);
    }
}

/* A crop given by scales keeps floor(in * (end - start) * scale) elements of an axis. */
/*
 * Bilinear resizing of the last two axes equals ONNX Runtime's float arithmetic bit for bit
 * (quantised models requantise it): coordinates (x + 0.5) / scale - 0.5 in float, clamped,
 * weights |x - tap| crossed over, the four products summed in order; by sizes (up and down)
 * and by scales, half_pixel, pytorch_half_pixel and asymmetric.
 */
static float ort_coord(const char *ctm, int64_t x, int64_t out, float s)
{
    float xf = (float)x;
    if (s == 1.0f)
        return xf;
    if (strcmp(ctm, "asymmetric") == 0)
        return xf / s;
    if (strcmp(ctm, "pytorch_half_pixel") == 0 && out == 1)
        return 0.0f;
    return (xf + 0.5f) / s - 0.5f;
}

static void ort_taps(float xo, int64_t in, int64_t *i0, int64_t *i1, float *w0, float *w1)
{
    xo = xo < (float)(in - 1) ? xo : (float)(in - 1);
    xo = xo > 0.0f ? xo : 0.0f;
    *i0 = (int64_t)xo < in - 1 ? (int64_t)xo : in - 1;
    *i1 = *i0 + 1 < in - 1 ? *i0 + 1 : in - 1;
    *w0 = *i0 == *i1 ? 0.5f : fabsf(xo - (float)*i1);
    *w1 = *i0 == *i1 ? 0.5f : fabsf(xo - (float)*i0);
}

static void bilinear_case(const char *ctm, const int64_t *od, const float *sc)
{
    const int64_t xd[4] = {2, 3, 7, 9}, four[1] = {4};
    size_t n = count(4, xd), on = count(4, od);
    float x[378], *want = malloc(on * sizeof(float));
    uint32_t seed = 77;
    ASSERT_TRUE(want != NULL);
    for (size_t i = 0; i < n; i++)
        x[i] = rnd(&seed) * 3.0f;
    float sh = sc != NULL ? sc[2] : (float)od[2] / 7.0f,
          sw = sc != NULL ? sc[3] : (float)od[3] / 9.0f;
    for (int64_t p = 0; p < 6; p++)
        for (int64_t y = 0; y < od[2]; y++)
            for (int64_t xo = 0; xo < od[3]; xo++) {
                int64_t y0, y1, x0, x1;
                float wy0, wy1, wx0, wx1;
                ort_taps(ort_coord(ctm, y, od[2], sh), 7, &y0, &y1, &wy0, &wy1);
                ort_taps(ort_coord(ctm, xo, od[3], sw), 9, &x0, &x1, &wx0, &wx1);
                const float *r0 = x + p * 63 + y0 * 9, *r1 = x + p * 63 + y1 * 9;
                float w00 = wx0 * wy0, w01 = wx1 * wy0, w10 = wx0 * wy1, w11 = wx1 * wy1;
                float v = w00 * r0[x0], t = w01 * r0[x1];
                v = v + t;
                t = w10 * r1[x0];
                v = v + t;
                t = w11 * r1[x1];
                v = v + t;
                want[(p * od[2] + y) * od[3] + xo] = v;
            }
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    if (sc != NULL)
        mb_init_f(&b, "scales", 1, four, sc);
    else
        mb_init_i64(&b, "sizes", 1, four, od);
    mb_node(&b, "Resize", sc != NULL ? "x,,scales" : "x,,,sizes", "y", 2,
            attr_s(&b, "mode", "linear"), attr_s(&b, "coordinate_transformation_mode", ctm));
    mb_output(&b, "y", 1, 4, od);
    ASSERT_OK(run_f(&b, x, 4, xd, &out, &eb));
    ASSERT_EQ_U64(out.nbytes, on * sizeof(float));
    size_t bad = 0;
    for (size_t i = 0; i < on; i++)
        if (((const float *)out.data)[i] != want[i] && bad++ < 3)
            fprintf(stderr, "bilinear %s: element %zu is %.9g, want %.9g\n", ctm, i,
                    (double)((const float *)out.data)[i], (double)want[i]);
    veil_tensor_release(&out);
    free(want);
    ASSERT_EQ_U64(bad, 0);
}

TEST(bilinear_resize_as_onnx_runtime)
{
    static const char *const ctms[] = {"half_pixel", "pytorch_half_pixel", "asymmetric"};
    const int64_t up[4] = {2, 3, 17, 20}, down[4] = {2, 3, 4, 5}, by_scale[4] = {2, 3, 10, 22};
    const float sc[4] = {1.0f, 1.0f, 1.5f, 2.5f};
    for (size_t i = 0; i < 3; i++) {
        bilinear_case(ctms[i], up, NULL);
        bilinear_case(ctms[i], down, NULL);
        bilinear_case(ctms[i], by_scale, sc);
    }
}

TEST(crop_and_resize_by_scales)
{
    const int64_t xd[2] = {4, 10}, two[1] = {2}, four[1] = {4}, od[2] = {4, 5};
    const float roi[4] = {0, 0.2f, 1, 0.8f}, sc[2] = {1, 0.5f};
    float x[40];
    for (size_t i = 0; i < 40; i++)
        x[i] = (float)i;
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    mb_init(&b);
    mb_input(&b, "x", 1, 2, xd);
    mb_init_f(&b, "roi", 1, four, roi);
    mb_init_f(&b, "scales", 1, two, sc);
    VeilOnnx__AttributeProto *mode = attr_s(&b, "mode", "linear");
    VeilOnnx__AttributeProto *ctm =
        attr_s(&b, "coordinate_transformation_mode", "tf_crop_and_resize");
    mb_node(&b, "Resize", "x,roi,scales", "y", 2, mode, ctm);
    mb_output(&b, "y", 1, 2, od);
    ASSERT_OK(run_f(&b, x, 2, xd, &out, &eb));
    ASSERT_EQ_U64(out.rank, 2);
    ASSERT_EQ_I64(out.dims[0], 4);
    ASSERT_EQ_I64(out.dims[1], 5);
    /*
     * The output length is floor(length * scale) (10 * 0.5 = 5 columns), as ONNX Runtime and
     * ONNX's reference compute it; the 5 columns sample the crop 1.8 .. 7.2 in steps of 1.35.
     */
    double want[20];
    for (size_t r = 0; r < 4; r++)
        for (size_t c = 0; c < 5; c++)
            want[r * 5 + c] = (double)r * 10 + 1.8 + (double)c * 5.4 / 4;
    bool ok = close_all("crop by scales", &out, want, 20, 1e-5);
    veil_tensor_release(&out);
    ASSERT_TRUE(ok);
}

/* ---- Reductions, Hardmax ---- */

static double ref_reduce(const char *op, const float *v, size_t n, size_t stride)
{
    double acc = 0, mx = -INFINITY, mn = INFINITY, prod = 1;
    for (size_t i = 0; i < n; i++) {
        double x = v[i * stride];
        mx = x > mx ? x : mx;
        mn = x < mn ? x : mn;
        prod *= x;
    }
    for (size_t i = 0; i < n; i++) {
        double x = v[i * stride];
        if (strcmp(op, "ReduceL1") == 0)
            acc += fabs(x);
        else if (strcmp(op, "ReduceL2") == 0 || strcmp(op, "ReduceSumSquare") == 0)
            acc += x * x;
        else if (strcmp(op, "ReduceLogSumExp") == 0)
            acc += exp(x - mx);
        else
            acc += x;
    }
    if (strcmp(op, "ReduceMin") == 0)
        return mn;
    if (strcmp(op, "ReduceProd") == 0)
        return prod;
    if (strcmp(op, "ReduceL2") == 0)
        return sqrt(acc);
    if (strcmp(op, "ReduceLogSum") == 0)
        return log(acc);
    if (strcmp(op, "ReduceLogSumExp") == 0)
        return n ? log(acc) + mx : -INFINITY;
    return acc;
}

/*
 * x [4, 70, 5] reduced over axis 1 (the vector path: inner part 5), axis 2 (the last axis) and
 * axes {0, 2} (not contiguous: the element-by-element path).
 */
static void reduce_case(const char *op, const float *x)
{
    const int64_t xd[3] = {4, 70, 5};
    static const int64_t ax1[1] = {1}, ax2[1] = {-1}, ax02[2] = {0, 2};
    const int64_t *axes[3] = {ax1, ax2, ax02};
    const size_t nax[3] = {1, 1, 2};
    const int64_t od[3][3] = {{4, 1, 5}, {4, 70, 1}, {1, 70, 1}};
    for (size_t k = 0; k < 3; k++) {
        double want[280];
        size_t on = count(3, od[k]);
        for (size_t o = 0; o < on; o++) {
            if (k == 0) {
                want[o] = ref_reduce(op, x + (o / 5) * 350 + o % 5, 70, 5);
            } else if (k == 1) {
                want[o] = ref_reduce(op, x + o * 5, 5, 1);
            } else {
                float tmp[20];
                for (size_t i = 0; i < 20; i++)
                    tmp[i] = x[(i / 5) * 350 + o * 5 + i % 5];
                want[o] = ref_reduce(op, tmp, 20, 1);
            }
        }
        struct mb b;
        struct veil_errbuf eb = {{0}};
        struct veil_tensor out;
        mb_init(&b);
        mb_input(&b, "x", 1, 3, xd);
        mb_node(&b, op, "x", "y", 1, mb_attr_ints(&b, "axes", nax[k], axes[k]));
        mb_output(&b, "y", 1, 3, od[k]);
        ASSERT_OK(run_f(&b, x, 3, xd, &out, &eb));
        char what[64];
        snprintf(what, sizeof(what), "%s case %zu", op, k);
        bool ok = close_all(what, &out, want, on, 1e-6);
        veil_tensor_release(&out);
        ASSERT_TRUE(ok);
    }
}

TEST(reductions_against_reference)
{
    static const char *const ops[] = {"ReduceMin",      "ReduceProd",   "ReduceL1",
                                      "ReduceL2",       "ReduceLogSum", "ReduceLogSumExp",
                                      "ReduceSumSquare"};
    float x[1400], big[1400];
    uint32_t seed = 2;
    for (size_t i = 0; i < 1400; i++) {
        /* Positive values near 1 keep products and logarithms finite. */
        x[i] = 1.0f + rnd(&seed) * 0.05f;
        big[i] = 600.0f + rnd(&seed) * 200.0f;
    }
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        reduce_case(ops[i], x);
    /* exp(800) overflows a double: the result must still be finite. */
    reduce_case("ReduceLogSumExp", big);
    for (size_t i = 0; i < 1400; i++)
        x[i] = rnd(&seed) * 3.0f;
    reduce_case("ReduceMin", x);
    reduce_case("ReduceL1", x);
    reduce_case("ReduceLogSumExp", x);
}

/* Reductions over an empty axis give the empty set's value. */
TEST(reductions_of_empty_sets)
{
    static const char *const ops[] = {"ReduceMin",      "ReduceProd",   "ReduceL1",
                                      "ReduceL2",       "ReduceLogSum", "ReduceLogSumExp",
                                      "ReduceSumSquare"};
    const double want_v[] = {INFINITY, 1, 0, 0, -INFINITY, -INFINITY, 0};
    const int64_t xd[3] = {2, 0, 3}, od[3] = {2, 1, 3}, ax[1] = {1};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        struct mb b;
        struct veil_errbuf eb = {{0}};
        struct veil_tensor out;
        double want[6];
        float dummy = 0;
        for (size_t k = 0; k < 6; k++)
            want[k] = want_v[i];
        mb_init(&b);
        mb_input(&b, "x", 1, 3, xd);
        mb_node(&b, ops[i], "x", "y", 1, mb_attr_ints(&b, "axes", 1, ax));
        mb_output(&b, "y", 1, 3, od);
        ASSERT_OK(run_f(&b, &dummy, 3, xd, &out, &eb));
        bool ok = close_all(ops[i], &out, want, 6, 0);
        veil_tensor_release(&out);
        ASSERT_TRUE(ok);
    }
}

/* Integer reductions: exact, and the empty set's minimum is the type's largest value. */
TEST(integer_reductions)
{
    const int64_t xd[2] = {3, 4}, od[2] = {3, 1}, ax[1] = {1};
    const int32_t x[12] = {3, -7, 2, 5, 1, 1, 1, 1, -2, 4, -6, 0};
    static const char *const ops[] = {"ReduceMin", "ReduceProd", "ReduceL1", "ReduceSumSquare",
                                      "ReduceL2"};
    const int32_t want[5][3] = {{-7, 1, -6}, {-210, 1, 0}, {17, 4, 12}, {87, 4, 56}, {9, 2, 7}};
    for (size_t i = 0; i < 5; i++) {
        struct mb b;
        struct veil_errbuf eb = {{0}};
        struct veil_tensor out;
        mb_init(&b);
        mb_input(&b, "x", 6, 2, xd);
        mb_node(&b, ops[i], "x", "y", 1, mb_attr_ints(&b, "axes", 1, ax));
        mb_output(&b, "y", 6, 2, od);
        ASSERT_OK(run_dt(&b, 6, x, 2, xd, &out, &eb));
        ASSERT_TRUE(out.dtype == VEIL_DT_INT32);
        ASSERT_MEM_EQ(out.data, want[i], sizeof(want[i]));
        veil_tensor_release(&out);
    }
    const int64_t ed[2] = {2, 0}, eod[2] = {2, 1};
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    mb_init(&b);
    mb_input(&b, "x", 7, 2, ed);
    mb_node(&b, "ReduceMin", "x", "y", 1, mb_attr_ints(&b, "axes", 1, ax));
    mb_output(&b, "y", 7, 2, eod);
    int64_t dummy = 0;
    ASSERT_OK(run_dt(&b, 7, &dummy, 2, ed, &out, &eb));
    ASSERT_EQ_I64(((int64_t *)out.data)[0], INT64_MAX);
    ASSERT_EQ_I64(((int64_t *)out.data)[1], INT64_MAX);
    veil_tensor_release(&out);
}

/* Hardmax on [2, 3, 4] at axis 1: per (i, k) column from opset 13, per row of 12 before. */
TEST(hardmax_opset_semantics)
{
    const int64_t xd[3] = {2, 3, 4};
    float x[24];
    uint32_t seed = 4;
    for (size_t i = 0; i < 24; i++)
        x[i] = rnd(&seed);
    x[1] = x[5] = 0.9999f; /* a tie in column (0, 1): the first wins */
    for (int64_t opset = 11; opset <= 13; opset += 2) {
        double want[24] = {0};
        for (size_t i = 0; i < 2; i++) {
            if (opset >= 13) {
                for (size_t k = 0; k < 4; k++) {
                    size_t best = 0;
                    for (size_t j = 1; j < 3; j++)
                        if (x[i * 12 + j * 4 + k] > x[i * 12 + best * 4 + k])
                            best = j;
                    want[i * 12 + best * 4 + k] = 1;
                }
            } else {
                size_t best = 0;
                for (size_t j = 1; j < 12; j++)
                    if (x[i * 12 + j] > x[i * 12 + best])
                        best = j;
                want[i * 12 + best] = 1;
            }
        }
        struct mb b;
        struct veil_errbuf eb = {{0}};
        struct veil_tensor out;
        mb_init(&b);
        b.opset = opset;
        mb_input(&b, "x", 1, 3, xd);
        mb_node(&b, "Hardmax", "x", "y", 1, mb_attr_i(&b, "axis", 1));
        mb_output(&b, "y", 1, 3, xd);
        ASSERT_OK(run_f(&b, x, 3, xd, &out, &eb));
        bool ok =
            close_all(opset >= 13 ? "Hardmax opset 13" : "Hardmax opset 11", &out, want, 24, 0);
        veil_tensor_release(&out);
        ASSERT_TRUE(ok);
    }
}

/* ---- Refusals ---- */

/* The first error of loading and running the single-node model of b on a float input. */
static veil_err refusal(struct mb *b, const int64_t *xd, size_t rank, struct veil_errbuf *eb)
{
    float x[256] = {0};
    struct veil_tensor out;
    veil_err rc = run_f(b, x, rank, xd, &out, eb);
    veil_tensor_release(&out);
    return rc;
}

TEST(invalid_attributes_refused)
{
    const int64_t xd[4] = {1, 4, 3, 3}, cd[1] = {3};
    const float three[3] = {1, 1, 1};
    struct mb b;
    struct veil_errbuf eb = {{0}};
    static const int64_t sizes[4] = {0, 2, 4, -3};
    for (size_t i = 0; i < 4; i++) {
        int64_t sz = sizes[i];
        mb_init(&b);
        mb_input(&b, "x", 1, 4, xd);
        mb_node(&b, "LRN", "x", "y", 1, mb_attr_i(&b, "size", sz));
        mb_output(&b, "y", 1, 4, xd);
        ASSERT_ERR(refusal(&b, xd, 4, &eb), VEIL_E_INVALID);
        ASSERT_STR_CONTAINS(eb.msg, "node 'LRN'");
        ASSERT_STR_CONTAINS(eb.msg, "an odd number");
    }
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_node(&b, "LRN", "x", "y", 0);
    mb_output(&b, "y", 1, 4, xd);
    ASSERT_ERR(refusal(&b, xd, 4, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "LRN needs an integer size");

    const int64_t bad_axes[2] = {0, 4};
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_node(&b, "MeanVarianceNormalization", "x", "y", 1, mb_attr_ints(&b, "axes", 2, bad_axes));
    mb_output(&b, "y", 1, 4, xd);
    ASSERT_ERR(refusal(&b, xd, 4, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'MeanVarianceNormalization'");
    ASSERT_STR_CONTAINS(eb.msg, "axis 4 out of range for rank 4");

    /* The default axes [0, 2, 3] need rank 4. */
    const int64_t r3[3] = {2, 3, 4};
    mb_init(&b);
    mb_input(&b, "x", 1, 3, r3);
    mb_node(&b, "MeanVarianceNormalization", "x", "y", 0);
    mb_output(&b, "y", 1, 3, r3);
    ASSERT_ERR(refusal(&b, r3, 3, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "axis 3 out of range for rank 3");

    const int64_t neg[1] = {-5};
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_node(&b, "ReduceLogSumExp", "x", "y", 1, mb_attr_ints(&b, "axes", 1, neg));
    mb_output(&b, "y", 1, 4, xd);
    ASSERT_ERR(refusal(&b, xd, 4, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'ReduceLogSumExp'");
    ASSERT_STR_CONTAINS(eb.msg, "axis -5 out of range");

    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_node(&b, "Hardmax", "x", "y", 1, mb_attr_i(&b, "axis", 4));
    mb_output(&b, "y", 1, 4, xd);
    ASSERT_ERR(refusal(&b, xd, 4, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'Hardmax'");

    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_node(&b, "ArgMin", "x", "y", 1, mb_attr_i(&b, "axis", -7));
    mb_output(&b, "y", 7, 4, xd);
    ASSERT_ERR(refusal(&b, xd, 4, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'ArgMin'");

    /* Scale and bias must hold C = 4 values. */
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_init_f(&b, "s", 1, cd, three);
    mb_init_f(&b, "b", 1, cd, three);
    mb_node(&b, "InstanceNormalization", "x,s,b", "y", 0);
    mb_output(&b, "y", 1, 4, xd);
    ASSERT_ERR(refusal(&b, xd, 4, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'InstanceNormalization'");
    ASSERT_STR_CONTAINS(eb.msg, "C = 4 floats");

    const int64_t four[1] = {4};
    const float sc[4] = {1, 1, 2, 2};
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_init_f(&b, "scales", 1, four, sc);
    VeilOnnx__AttributeProto *mode = attr_s(&b, "mode", "quintic");
    mb_node(&b, "Resize", "x,,scales", "y", 1, mode);
    mb_output(&b, "y", 1, 4, xd);
    ASSERT_ERR(refusal(&b, xd, 4, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'Resize'");
    ASSERT_STR_CONTAINS(eb.msg, "mode 'quintic'");
}

TEST(unsupported_types_refused)
{
    const int64_t xd[4] = {1, 2, 2, 2}, four[1] = {4};
    const float sc[4] = {1, 1, 2, 2};
    int64_t x[8] = {0};
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    mb_init(&b);
    mb_input(&b, "x", 7, 4, xd);
    mb_init_f(&b, "scales", 1, four, sc);
    mb_node(&b, "Resize", "x,,scales", "y", 0);
    mb_output(&b, "y", 7, 4, xd);
    ASSERT_ERR(run_dt(&b, 7, x, 4, xd, &out, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "node 'Resize'");
    ASSERT_STR_CONTAINS(eb.msg, "Resize of int64");
    mb_init(&b);
    mb_input(&b, "x", 7, 4, xd);
    mb_node(&b, "Hardmax", "x", "y", 0);
    mb_output(&b, "y", 7, 4, xd);
    ASSERT_ERR(run_dt(&b, 7, x, 4, xd, &out, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "node 'Hardmax'");
    ASSERT_STR_CONTAINS(eb.msg, "int64");
}

/* Empty tensors and hostile Resize inputs: results or clean refusals, never a crash. */
TEST(empty_and_hostile_inputs)
{
    const int64_t xd[4] = {1, 2, 0, 3}, od[4] = {1, 2, 1, 1}, four[1] = {4}, eight[1] = {8};
    float dummy[4] = {0};
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    for (int mx = 0; mx < 2; mx++) {
        double want[2] = {mx ? -INFINITY : NAN, mx ? -INFINITY : NAN};
        mb_init(&b);
        mb_input(&b, "x", 1, 4, xd);
        mb_node(&b, mx ? "GlobalMaxPool" : "GlobalAveragePool", "x", "y", 0);
        mb_output(&b, "y", 1, 4, od);
        ASSERT_OK(run_f(&b, dummy, 4, xd, &out, &eb));
        bool ok = close_all("global pool of an empty plane", &out, want, 2, 0);
        veil_tensor_release(&out);
        ASSERT_TRUE(ok);
    }
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_node(&b, "LRN", "x", "y", 1, mb_attr_i(&b, "size", 3));
    mb_output(&b, "y", 1, 4, xd);
    ASSERT_OK(run_f(&b, dummy, 4, xd, &out, &eb));
    ASSERT_EQ_U64(out.nbytes, 0);
    veil_tensor_release(&out);

    /* An empty axis cannot be resized to a non-empty one. */
    const int64_t sizes[4] = {1, 2, 4, 3};
    mb_init(&b);
    mb_input(&b, "x", 1, 4, xd);
    mb_init_i64(&b, "sizes", 1, four, sizes);
    mb_node(&b, "Resize", "x,,,sizes", "y", 0);
    mb_output(&b, "y", 1, 4, sizes);
    ASSERT_ERR(run_f(&b, dummy, 4, xd, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "axis 2 is empty");

    const int64_t sd[4] = {1, 1, 2, 2};
    const float inf_sc[4] = {1, 1, INFINITY, 1}, nan_roi[8] = {0, 0, NAN, 0, 1, 1, 1, 1};
    const float sc[4] = {1, 1, 2, 2};
    mb_init(&b);
    mb_input(&b, "x", 1, 4, sd);
    mb_init_f(&b, "scales", 1, four, inf_sc);
    mb_node(&b, "Resize", "x,,scales", "y", 0);
    mb_output(&b, "y", 1, 4, sd);
    ASSERT_ERR(run_f(&b, dummy, 4, sd, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "bad scale");
    mb_init(&b);
    mb_input(&b, "x", 1, 4, sd);
    mb_init_f(&b, "roi", 1, eight, nan_roi);
    mb_init_f(&b, "scales", 1, four, sc);
    mb_node(&b, "Resize", "x,roi,scales", "y", 1,
            attr_s(&b, "coordinate_transformation_mode", "tf_crop_and_resize"));
    mb_output(&b, "y", 1, 4, sd);
    ASSERT_ERR(run_f(&b, dummy, 4, sd, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "roi is not finite");
    /* A roi of the wrong length. */
    mb_init(&b);
    mb_input(&b, "x", 1, 4, sd);
    mb_init_f(&b, "roi", 1, four, sc);
    mb_init_f(&b, "scales", 1, four, sc);
    mb_node(&b, "Resize", "x,roi,scales", "y", 1,
            attr_s(&b, "coordinate_transformation_mode", "tf_crop_and_resize"));
    mb_output(&b, "y", 1, 4, sd);
    ASSERT_ERR(run_f(&b, dummy, 4, sd, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "roi must hold 8 floats");
}

RUN_TESTS()
