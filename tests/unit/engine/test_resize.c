/*
 * Resize of opsets 18 and 19 and GridSample (ops/resize.c) on models built in the test,
 * against naive double-precision references written from ONNX's definitions: Resize's
 * antialias (the neighbours of the edge-padded axis picked one by one, as ONNX's reference
 * does), axes, keep_aspect_ratio_policy and half_pixel_symmetric, over two and three axes,
 * folded at plan time and run; GridSample in 1, 2 and 3 dimensions with every mode, padding
 * and corner convention, tap by tap as ONNX Runtime samples. Also what input can do to them:
 * NaN, infinite and huge grid positions, huge scales and sizes, malformed attributes and
 * shapes, each refused by name or given a defined value.
 */
#include "harness.h"
#include "engine_test.h"
#include "model_builder.h"

#include "veil/engine.h"
#include "veil/onnx.h"

#include <math.h>

static size_t count(size_t rank, const int64_t *dims)
{
    size_t n = 1;
    for (size_t i = 0; i < rank; i++)
        n *= (size_t)dims[i];
    return n;
}

/*
 * Loads the model of b (released here) and runs it on float inputs x (and g when g_rank > 0);
 * the first error of load or run is returned, and on success *out holds output 0.
 */
static veil_err run2(struct mb *b, const float *x, size_t rank, const int64_t *dims, const float *g,
                     size_t g_rank, const int64_t *g_dims, struct veil_tensor *out,
                     struct veil_errbuf *eb)
{
    struct veil_engine_model *m = NULL;
    struct veil_engine_options opt = {.threads = 2};
    memset(out, 0, sizeof(*out));
    veil_err rc = mb_load(b, &opt, &m, eb);
    if (rc != VEIL_OK)
        return rc;
    struct veil_tensor in[2];
    in[0] = tensor_of(VEIL_DT_FLOAT, rank, dims, x);
    if (g_rank > 0)
        in[1] = tensor_of(VEIL_DT_FLOAT, g_rank, g_dims, g);
    rc = veil_engine_run(m, in, g_rank > 0 ? 2 : 1, out, 1, eb);
    veil_engine_model_free(m);
    return rc;
}

/* Whether got matches want everywhere within tol relative (plus tol absolute). */
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

/* Whether the parser takes models of opset o (the tests of newer forms need it). */
static bool have_opset(int64_t o)
{
    return o <= VEIL_ONNX_OPSET_MAX;
}

/* ---- The Resize reference ---- */

struct rcfg {
    const char *mode, *ctm;
    double a;
    bool excl, aa;
};

static double keys(double d, double a)
{
    d = fabs(d);
    if (d <= 1)
        return ((a + 2) * d - (a + 3)) * d * d + 1;
    if (d < 2)
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a;
    return 0;
}

/* ONNX's coordinate transformations; s is the axis' scale, out its output length. */
static double ref_coord(const char *ctm, int64_t x, int64_t in, int64_t out, double s)
{
    if (strcmp(ctm, "align_corners") == 0)
        return in * s > 1 ? x * (double)(in - 1) / (in * s - 1) : 0;
    if (strcmp(ctm, "asymmetric") == 0)
        return x / s;
    if (strcmp(ctm, "pytorch_half_pixel") == 0)
        return out > 1 ? (x + 0.5) / s - 0.5 : 0;
    if (strcmp(ctm, "half_pixel_symmetric") == 0)
        return in / 2.0 * (1 - out / (in * s)) + (x + 0.5) / s - 0.5;
    return (x + 0.5) / s - 0.5;
}

/*
 * The coefficients of ONNX's reference for a point a fraction ratio in (0, 1] past a
 * position: linear or cubic, widened by 1 / s under antialias when s < 1. Returns their count.
 */
static int ref_coeffs(const struct rcfg *c, double ratio, double s, double *co)
{
    bool cubic = strcmp(c->mode, "cubic") == 0;
    if (c->aa && s < 1) {
        int start = (int)floor((cubic ? -2.0 : -1.0) / s) + 1, n = 2 - 2 * start;
        double sum = 0;
        for (int k = 0; k < n; k++) {
            double d = (start + k - ratio) * s;
            co[k] = cubic ? keys(d, c->a) : fmax(0, 1 - fabs(d));
            sum += co[k];
        }
        for (int k = 0; k < n; k++)
            co[k] /= sum;
        return n;
    }
    if (!cubic) {
        co[0] = 1 - ratio;
        co[1] = ratio;
        return 2;
    }
    co[0] = keys(1 + ratio, c->a);
    co[1] = keys(ratio, c->a);
    co[2] = keys(1 - ratio, c->a);
    co[3] = keys(2 - ratio, c->a);
    return 4;
}

/*
 * One axis as ONNX's reference interpolates it: the n positions of the axis padded with
 * ceil(n / 2) edge elements on each side nearest to xo (ties to the lower), in order, weighted
 * by the coefficients; with exclude_outside the padding's weights are dropped and the rest
 * renormalised. Nearest rounds half down (round_prefer_floor).
 */
static double ref_1d(const struct rcfg *c, const double *v, size_t stride, int64_t in, double xo,
                     double s)
{
    if (strcmp(c->mode, "nearest") == 0) {
        double fl = floor(xo);
        int64_t i = xo - fl == 0.5 ? (int64_t)fl : (int64_t)floor(xo + 0.5);
        i = i < 0 ? 0 : i >= in ? in - 1 : i;
        return v[(size_t)i * stride];
    }
    double co[512], ratio = xo - floor(xo);
    if (ratio == 0)
        ratio = 1;
    int n = ref_coeffs(c, ratio, s, co);
    int64_t pad = (n + 1) / 2, len = in + 2 * pad, pick[512];
    bool used[2048] = {false};
    for (int k = 0; k < n; k++) {
        int64_t best = -1;
        for (int64_t p = 0; p < len; p++)
            if (!used[p] && (best < 0 || fabs(xo + pad - p) < fabs(xo + pad - best)))
                best = p;
        used[best] = true;
    }
    for (int64_t p = 0, k = 0; p < len; p++)
        if (used[p])
            pick[k++] = p - pad;
    double sum = 0, acc = 0;
    for (int k = 0; k < n; k++) {
        if (c->excl && (pick[k] < 0 || pick[k] >= in))
            co[k] = 0;
        sum += co[k];
    }
    for (int k = 0; k < n; k++) {
        int64_t i = pick[k] < 0 ? 0 : pick[k] >= in ? in - 1 : pick[k];
        acc += (c->excl ? co[k] / sum : co[k]) * v[(size_t)i * stride];
    }
    return acc;
}

/*
 * Resizes x (rank r, dims xd) to od with per-axis scales s, one axis after another (the
 * reference's interpolation is linear in the data, so the order does not matter); the
 * result is malloc'ed.
 */
static double *ref_resize(const struct rcfg *c, const double *x, size_t r, const int64_t *xd,
                          const int64_t *od, const double *s)
{
    int64_t cur[8];
    memcpy(cur, xd, r * sizeof(int64_t));
    double *src = malloc(count(r, xd) * sizeof(double));
    memcpy(src, x, count(r, xd) * sizeof(double));
    for (size_t a = 0; a < r; a++) {
        int64_t in = cur[a], out = od[a];
        size_t outer = count(a, cur), inner = count(r - a - 1, cur + a + 1);
        double *dst = malloc(outer * (size_t)out * inner * sizeof(double) + 8);
        for (size_t o = 0; o < outer; o++)
            for (int64_t xo = 0; xo < out; xo++)
                for (size_t i = 0; i < inner; i++) {
                    double co = in == out && s[a] == 1.0 ? (double)xo
                                                         : ref_coord(c->ctm, xo, in, out, s[a]);
                    dst[(o * (size_t)out + (size_t)xo) * inner + i] =
                        ref_1d(c, &src[o * (size_t)in * inner + i], inner, in, co, s[a]);
                }
        free(src);
        src = dst;
        cur[a] = out;
    }
    return src;
}

/* A Resize node with the configuration's attributes plus extra ones. */
static void resize_node(struct mb *b, const char *ins, const struct rcfg *c, size_t n_extra,
                        VeilOnnx__AttributeProto *e0, VeilOnnx__AttributeProto *e1)
{
    mb_node(b, "Resize", ins, "y", 5 + n_extra, mb_attr_s(b, "mode", c->mode),
            mb_attr_s(b, "coordinate_transformation_mode", c->ctm),
            mb_attr_f(b, "cubic_coeff_a", (float)c->a), mb_attr_i(b, "exclude_outside", c->excl),
            mb_attr_i(b, "antialias", c->aa), e0, e1);
}

/*
 * Resizes a random x (rank 4, dims xd) by sizes od (or the scales sc when sc != NULL) at
 * opset 19 and checks the result against the reference.
 */
static bool resize_case(const struct rcfg *c, const int64_t *xd, const int64_t *od, const float *sc)
{
    const int64_t four[1] = {4};
    size_t n = count(4, xd), on = count(4, od);
    float *x = malloc(n * sizeof(float));
    double *xv = malloc(n * sizeof(double)), s[4];
    uint32_t seed = 5;
    for (size_t i = 0; i < n; i++)
        xv[i] = x[i] = rnd(&seed) * 3.0f;
    for (size_t i = 0; i < 4; i++)
        s[i] = sc != NULL ? sc[i] : (double)((float)od[i] / (float)xd[i]);
    double *want = ref_resize(c, xv, 4, xd, od, s);
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    mb_init(&b);
    b.opset = 19;
    mb_input(&b, "x", 1, 4, xd);
    if (sc != NULL)
        mb_init_f(&b, "scales", 1, four, sc);
    else
        mb_init_i64(&b, "sizes", 1, four, od);
    resize_node(&b, sc != NULL ? "x,,scales" : "x,,,sizes", c, 0, NULL, NULL);
    mb_output(&b, "y", 1, 4, od);
    veil_err rc = run2(&b, x, 4, xd, NULL, 0, NULL, &out, &eb);
    char what[160];
    snprintf(what, sizeof(what), "%s %s aa=%d excl=%d to %lldx%lld", c->mode, c->ctm, c->aa,
             c->excl, (long long)od[2], (long long)od[3]);
    bool ok = rc == VEIL_OK && out.rank == 4 && memcmp(out.dims, od, 4 * sizeof(int64_t)) == 0 &&
              close_all(what, &out, want, on, 2e-5);
    if (rc != VEIL_OK)
        fprintf(stderr, "%s: %s\n", what, veil_errbuf_msg(&eb, rc));
    veil_tensor_release(&out);
    free(x);
    free(xv);
    free(want);
    return ok;
}

TEST(antialias_against_reference)
{
    if (!have_opset(19))
        SKIP("the parser takes opsets up to %d", VEIL_ONNX_OPSET_MAX);
    static const char *const ctms[] = {"half_pixel", "pytorch_half_pixel", "align_corners",
                                       "asymmetric", "half_pixel_symmetric"};
    static const char *const modes[] = {"linear", "cubic"};
    const int64_t xd[4] = {1, 2, 12, 16}, down[4] = {1, 2, 5, 7}, sc_od[4] = {1, 2, 3, 7};
    const int64_t mixed_od[4] = {1, 2, 4, 28};
    const float sc[4] = {1, 1, 0.3f, 0.45f}, mixed[4] = {1, 1, 0.4f, 1.75f};
    for (size_t m = 0; m < 2; m++)
        for (size_t t = 0; t < 5; t++)
            for (int excl = 0; excl < 2; excl++) {
                struct rcfg c = {modes[m], ctms[t], excl ? -0.5 : -0.75, excl != 0, true};
                ASSERT_TRUE(resize_case(&c, xd, down, NULL));
                ASSERT_TRUE(resize_case(&c, xd, sc_od, sc));
                ASSERT_TRUE(resize_case(&c, xd, mixed_od, mixed));
            }
    /* A strong reduction: 64 positions into 3 (a 22- and 43-tap filter). */
    const int64_t wide[4] = {1, 1, 4, 64}, wide_od[4] = {1, 1, 2, 3};
    for (size_t m = 0; m < 2; m++) {
        struct rcfg c = {modes[m], "half_pixel", -0.75, false, true};
        ASSERT_TRUE(resize_case(&c, wide, wide_od, NULL));
    }
    /* Enlarging, antialias changes nothing: the same as without it. */
    const int64_t up[4] = {1, 2, 20, 30};
    for (size_t m = 0; m < 2; m++) {
        struct rcfg c = {modes[m], "half_pixel", -0.75, false, true};
        ASSERT_TRUE(resize_case(&c, xd, up, NULL));
        c.aa = false;
        ASSERT_TRUE(resize_case(&c, xd, up, NULL));
    }
}

TEST(half_pixel_symmetric_against_reference)
{
    if (!have_opset(19))
        SKIP("the parser takes opsets up to %d", VEIL_ONNX_OPSET_MAX);
    static const char *const modes[] = {"nearest", "linear", "cubic"};
    /* in * scale is 8.5 and 5.95 here, so the outputs are shifted from half_pixel's. */
    const int64_t xd[4] = {1, 1, 5, 7}, od[4] = {1, 1, 8, 5};
    const float sc[4] = {1, 1, 1.7f, 0.85f};
    for (size_t m = 0; m < 3; m++) {
        struct rcfg c = {modes[m], "half_pixel_symmetric", -0.75, false, false};
        ASSERT_TRUE(resize_case(&c, xd, od, sc));
    }
}

/* Every way to order the passes: three axes resized, shrinking and growing, against the reference.
 */
TEST(three_axes_against_reference)
{
    if (!have_opset(19))
        SKIP("the parser takes opsets up to %d", VEIL_ONNX_OPSET_MAX);
    const int64_t xd[4] = {2, 9, 10, 11};
    const int64_t ods[4][4] = {{2, 4, 17, 6}, {2, 13, 4, 23}, {2, 5, 6, 3}, {2, 12, 15, 20}};
    static const char *const modes[] = {"nearest", "linear", "cubic"};
    for (size_t m = 0; m < 3; m++)
        for (size_t k = 0; k < 4; k++)
            for (int aa = 0; aa < 2; aa++) {
                struct rcfg c = {modes[m], "half_pixel", -0.75, false, aa != 0};
                ASSERT_TRUE(resize_case(&c, xd, ods[k], NULL));
            }
}

TEST(nearest_ignores_antialias)
{
    if (!have_opset(18))
        SKIP("the parser takes opsets up to %d", VEIL_ONNX_OPSET_MAX);
    const int64_t xd[4] = {1, 2, 12, 16}, od[4] = {1, 2, 5, 7};
    struct rcfg c = {"nearest", "asymmetric", -0.75, false, true};
    ASSERT_TRUE(resize_case(&c, xd, od, NULL));
}

/* Runs Resize of x [2, 3, 6, 8] (values 0, 1, 2, ...) with attrs and the input ins. */
static veil_err axes_run(const char *ins, const float *sc, size_t n_sc, const int64_t *sizes,
                         size_t n_sizes, size_t n_attrs, VeilOnnx__AttributeProto *a0,
                         VeilOnnx__AttributeProto *a1, VeilOnnx__AttributeProto *a2, struct mb *b,
                         struct veil_tensor *out, struct veil_errbuf *eb)
{
    static const int64_t xd[4] = {2, 3, 6, 8};
    float x[288];
    for (size_t i = 0; i < 288; i++)
        x[i] = (float)i;
    const int64_t dn[1] = {(int64_t)n_sc}, ds[1] = {(int64_t)n_sizes};
    mb_input(b, "x", 1, 4, xd);
    if (sc != NULL)
        mb_init_f(b, "scales", 1, dn, sc);
    if (sizes != NULL)
        mb_init_i64(b, "sizes", 1, ds, sizes);
    mb_node(b, "Resize", ins, "y", n_attrs, a0, a1, a2);
    mb_output(b, "y", 1, 4, xd);
    return run2(b, x, 4, xd, NULL, 0, NULL, out, eb);
}

/* Checks out's shape and values against the reference for x = 0, 1, 2, ... */
static bool axes_check(const struct veil_tensor *out, const struct rcfg *c, const int64_t *od,
                       const double *s)
{
    static const int64_t xd[4] = {2, 3, 6, 8};
    double xv[288];
    for (size_t i = 0; i < 288; i++)
        xv[i] = (double)i;
    if (out->rank != 4 || memcmp(out->dims, od, 4 * sizeof(int64_t)) != 0) {
        fprintf(stderr, "shape [%lld %lld %lld %lld]\n", (long long)out->dims[0],
                (long long)out->dims[1], (long long)out->dims[2], (long long)out->dims[3]);
        return false;
    }
    double *want = ref_resize(c, xv, 4, xd, od, s);
    bool ok = close_all("axes", out, want, count(4, od), 1e-5);
    free(want);
    return ok;
}

TEST(axes_attribute)
{
    if (!have_opset(18))
        SKIP("the parser takes opsets up to %d", VEIL_ONNX_OPSET_MAX);
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    struct rcfg lin = {"linear", "half_pixel", -0.75, false, false};
    /* Scales for axes 3 and 1, in that order. */
    const int64_t ax31[2] = {3, 1}, axm2[1] = {-2}, ax22[2] = {2, 2}, ax4[1] = {4};
    const float sc31[2] = {0.5f, 2.0f};
    mb_init(&b);
    b.opset = 18;
    ASSERT_OK(axes_run("x,,scales", sc31, 2, NULL, 0, 2, mb_attr_s(&b, "mode", "linear"),
                       mb_attr_ints(&b, "axes", 2, ax31), NULL, &b, &out, &eb));
    const int64_t od31[4] = {2, 6, 6, 4};
    const double s31[4] = {1, 2, 1, 0.5};
    bool ok = axes_check(&out, &lin, od31, s31);
    veil_tensor_release(&out);
    ASSERT_TRUE(ok);
    /* Sizes for axis -2 alone. */
    const int64_t sz[1] = {9};
    mb_init(&b);
    b.opset = 18;
    ASSERT_OK(axes_run("x,,,sizes", NULL, 0, sz, 1, 2, mb_attr_s(&b, "mode", "linear"),
                       mb_attr_ints(&b, "axes", 1, axm2), NULL, &b, &out, &eb));
    const int64_t odm2[4] = {2, 3, 9, 8};
    const double sm2[4] = {1, 1, (double)(9.0f / 6.0f), 1};
    ok = axes_check(&out, &lin, odm2, sm2);
    veil_tensor_release(&out);
    ASSERT_TRUE(ok);
    /* A repeated axis, one out of range, and scales not matching the axes. */
    mb_init(&b);
    b.opset = 18;
    ASSERT_ERR(axes_run("x,,scales", sc31, 2, NULL, 0, 1, mb_attr_ints(&b, "axes", 2, ax22), NULL,
                        NULL, &b, &out, &eb),
               VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "axis 2 repeated in axes");
    mb_init(&b);
    b.opset = 18;
    ASSERT_ERR(axes_run("x,,scales", sc31, 1, NULL, 0, 1, mb_attr_ints(&b, "axes", 1, ax4), NULL,
                        NULL, &b, &out, &eb),
               VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'Resize'");
    mb_init(&b);
    b.opset = 18;
    ASSERT_ERR(axes_run("x,,scales", sc31, 2, NULL, 0, 1, mb_attr_ints(&b, "axes", 1, axm2), NULL,
                        NULL, &b, &out, &eb),
               VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "scales must hold 1 floats");
    mb_init(&b);
    b.opset = 18;
    ASSERT_ERR(axes_run("x,,scales", sc31, 2, NULL, 0, 1, mb_attr_i(&b, "axes", 2), NULL, NULL, &b,
                        &out, &eb),
               VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "axes must be a list");
}

TEST(keep_aspect_ratio_policy)
{
    if (!have_opset(18))
        SKIP("the parser takes opsets up to %d", VEIL_ONNX_OPSET_MAX);
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    struct rcfg lin = {"linear", "half_pixel", -0.75, false, false};
    const int64_t ax23[2] = {2, 3}, sz[2] = {9, 9};
    const int64_t sz4[4] = {2, 3, 9, 9};
    /*
     * x is 6 x 8 on axes 2 and 3; sizes 9 x 9. not_larger takes the scale 9/8 (both fit),
     * not_smaller 9/6 = 1.5 (both cover): 6.75 and 9 rows round to 7 and 9, 9 and 12 columns.
     */
    const int64_t od_nl[4] = {2, 3, 7, 9}, od_ns[4] = {2, 3, 9, 12};
    const double s_nl[4] = {1, 1, 1.125, 1.125}, s_ns[4] = {1, 1, 1.5, 1.5};
    mb_init(&b);
    b.opset = 18;
    ASSERT_OK(axes_run("x,,,sizes", NULL, 0, sz, 2, 3, mb_attr_s(&b, "mode", "linear"),
                       mb_attr_ints(&b, "axes", 2, ax23),
                       mb_attr_s(&b, "keep_aspect_ratio_policy", "not_larger"), &b, &out, &eb));
    bool ok = axes_check(&out, &lin, od_nl, s_nl);
    veil_tensor_release(&out);
    ASSERT_TRUE(ok);
    mb_init(&b);
    b.opset = 18;
    ASSERT_OK(axes_run("x,,,sizes", NULL, 0, sz, 2, 3, mb_attr_s(&b, "mode", "linear"),
                       mb_attr_ints(&b, "axes", 2, ax23),
                       mb_attr_s(&b, "keep_aspect_ratio_policy", "not_smaller"), &b, &out, &eb));
    ok = axes_check(&out, &lin, od_ns, s_ns);
    veil_tensor_release(&out);
    ASSERT_TRUE(ok);
    /*
     * Without axes the policy spans every axis: with sizes [2, 3, 9, 9] not_larger's scale is
     * 1 (N and C) and nothing changes, not_smaller's is 1.5 and N and C become 3 and
     * round(4.5) = 5 too.
     */
    static const char *const pol[2] = {"not_larger", "not_smaller"};
    const int64_t want_d[2][4] = {{2, 3, 6, 8}, {3, 5, 9, 12}};
    for (size_t k = 0; k < 2; k++) {
        mb_init(&b);
        b.opset = 18;
        ASSERT_OK(axes_run("x,,,sizes", NULL, 0, sz4, 4, 2, mb_attr_s(&b, "mode", "nearest"),
                           mb_attr_s(&b, "keep_aspect_ratio_policy", pol[k]), NULL, &b, &out, &eb));
        bool same = out.rank == 4 && memcmp(out.dims, want_d[k], sizeof(want_d[k])) == 0;
        veil_tensor_release(&out);
        ASSERT_TRUE(same);
    }
    /* The policy only applies to sizes: with scales it changes nothing. */
    const float sc[2] = {1.5f, 0.5f};
    mb_init(&b);
    b.opset = 18;
    ASSERT_OK(axes_run("x,,scales", sc, 2, NULL, 0, 3, mb_attr_s(&b, "mode", "linear"),
                       mb_attr_ints(&b, "axes", 2, ax23),
                       mb_attr_s(&b, "keep_aspect_ratio_policy", "not_smaller"), &b, &out, &eb));
    const int64_t od_sc[4] = {2, 3, 9, 4};
    const double s_sc[4] = {1, 1, 1.5, 0.5};
    ok = axes_check(&out, &lin, od_sc, s_sc);
    veil_tensor_release(&out);
    ASSERT_TRUE(ok);
    mb_init(&b);
    b.opset = 18;
    ASSERT_ERR(axes_run("x,,,sizes", NULL, 0, sz, 2, 2, mb_attr_ints(&b, "axes", 2, ax23),
                        mb_attr_s(&b, "keep_aspect_ratio_policy", "fit"), NULL, &b, &out, &eb),
               VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "keep_aspect_ratio_policy 'fit'");
}

TEST(empty_axis_under_policy_refused)
{
    if (!have_opset(18))
        SKIP("the parser takes opsets up to %d", VEIL_ONNX_OPSET_MAX);
    const int64_t xd[4] = {1, 1, 0, 4}, sz[2] = {3, 3}, two[1] = {2}, ax[2] = {2, 3};
    float dummy[1] = {0};
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    mb_init(&b);
    b.opset = 18;
    mb_input(&b, "x", 1, 4, xd);
    mb_init_i64(&b, "sizes", 1, two, sz);
    mb_node(&b, "Resize", "x,,,sizes", "y", 2, mb_attr_ints(&b, "axes", 2, ax),
            mb_attr_s(&b, "keep_aspect_ratio_policy", "not_smaller"));
    mb_output(&b, "y", 1, 4, xd);
    ASSERT_ERR(run2(&b, dummy, 4, xd, NULL, 0, NULL, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "empty axis 2");
}

/*
 * A Resize of a constant is folded while planning (its passes then use a buffer of their own):
 * y = Resize(c) + z over three axes.
 */
TEST(folded_resize)
{
    if (!have_opset(18))
        SKIP("the parser takes opsets up to %d", VEIL_ONNX_OPSET_MAX);
    const int64_t cd[4] = {1, 6, 7, 8}, od[4] = {1, 3, 10, 5}, four[1] = {4};
    double cv[336];
    float c[336], z[150];
    uint32_t seed = 9;
    for (size_t i = 0; i < 336; i++)
        cv[i] = c[i] = rnd(&seed);
    for (size_t i = 0; i < 150; i++)
        z[i] = (float)i;
    struct rcfg lin = {"linear", "half_pixel", -0.75, false, true};
    double s[4];
    for (size_t i = 0; i < 4; i++)
        s[i] = (double)((float)od[i] / (float)cd[i]);
    double *want = ref_resize(&lin, cv, 4, cd, od, s);
    for (size_t i = 0; i < 150; i++)
        want[i] += z[i];
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    mb_init(&b);
    b.opset = 18;
    mb_input(&b, "z", 1, 4, od);
    mb_init_f(&b, "c", 4, cd, c);
    mb_init_i64(&b, "sizes", 1, four, od);
    mb_node(&b, "Resize", "c,,,sizes", "r", 2, mb_attr_s(&b, "mode", "linear"),
            mb_attr_i(&b, "antialias", 1));
    mb_node(&b, "Add", "r,z", "y", 0);
    mb_output(&b, "y", 1, 4, od);
    ASSERT_OK(run2(&b, z, 4, od, NULL, 0, NULL, &out, &eb));
    bool ok = close_all("folded", &out, want, 150, 1e-5);
    veil_tensor_release(&out);
    free(want);
    ASSERT_TRUE(ok);
}

/*
 * Scales of 1 copy the input unchanged, NaN included (a 3-D input: the bilinear path of 2-D
 * and 4-D ones weighs the next element by 0, as ONNX Runtime does, so a NaN spreads there);
 * an axis shrunk to nothing empties the output.
 */
TEST(identity_and_empty)
{
    const int64_t xd[3] = {2, 3, 4}, four[1] = {3};
    const float one[3] = {1, 1, 1}, tiny[3] = {1, 0.2f, 1};
    float x[24];
    for (size_t i = 0; i < 24; i++)
        x[i] = (float)i * 0.5f - 3.0f;
    x[5] = NAN;
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    static const char *const modes[] = {"nearest", "linear", "cubic"};
    for (size_t m = 0; m < 3; m++) {
        mb_init(&b);
        mb_input(&b, "x", 1, 3, xd);
        mb_init_f(&b, "scales", 1, four, one);
        mb_node(&b, "Resize", "x,,scales", "y", 1, mb_attr_s(&b, "mode", modes[m]));
        mb_output(&b, "y", 1, 3, xd);
        ASSERT_OK(run2(&b, x, 3, xd, NULL, 0, NULL, &out, &eb));
        ASSERT_EQ_U64(out.nbytes, sizeof(x));
        const float *y = out.data;
        bool same = true;
        for (size_t i = 0; i < 24; i++)
            same = same && (i == 5 ? isnan(y[i]) : y[i] == x[i]);
        veil_tensor_release(&out);
        ASSERT_TRUE(same);
    }
    mb_init(&b);
    mb_input(&b, "x", 1, 3, xd);
    mb_init_f(&b, "scales", 1, four, tiny);
    mb_node(&b, "Resize", "x,,scales", "y", 1, mb_attr_s(&b, "mode", "linear"));
    mb_output(&b, "y", 1, 3, xd);
    ASSERT_OK(run2(&b, x, 3, xd, NULL, 0, NULL, &out, &eb));
    ASSERT_EQ_I64(out.dims[1], 0);
    ASSERT_EQ_U64(out.nbytes, 0);
    veil_tensor_release(&out);
}

TEST(huge_scales_and_sizes_refused)
{
    const int64_t xd[4] = {1, 1, 2, 2}, four[1] = {4};
    const float huge[4] = {1, 1, 1e30f, 1}, neg[4] = {1, 1, -2, 1}, nan_sc[4] = {1, 1, NAN, 1};
    const int64_t big[4] = {1, 1, (int64_t)1 << 40, 2}, negsz[4] = {1, 1, -1, 2};
    float x[4] = {1, 2, 3, 4};
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    const float *scs[3] = {huge, neg, nan_sc};
    for (size_t k = 0; k < 3; k++) {
        mb_init(&b);
        mb_input(&b, "x", 1, 4, xd);
        mb_init_f(&b, "scales", 1, four, scs[k]);
        mb_node(&b, "Resize", "x,,scales", "y", 1, mb_attr_s(&b, "mode", "linear"));
        mb_output(&b, "y", 1, 4, xd);
        ASSERT_ERR(run2(&b, x, 4, xd, NULL, 0, NULL, &out, &eb), VEIL_E_INVALID);
        ASSERT_STR_CONTAINS(eb.msg, "bad scale");
    }
    const int64_t *szs[2] = {big, negsz};
    for (size_t k = 0; k < 2; k++) {
        mb_init(&b);
        mb_input(&b, "x", 1, 4, xd);
        mb_init_i64(&b, "sizes", 1, four, szs[k]);
        mb_node(&b, "Resize", "x,,,sizes", "y", 1, mb_attr_s(&b, "mode", "cubic"));
        mb_output(&b, "y", 1, 4, xd);
        ASSERT_ERR(run2(&b, x, 4, xd, NULL, 0, NULL, &out, &eb), VEIL_E_INVALID);
        ASSERT_STR_CONTAINS(eb.msg, "bad size");
    }
    /* keep_aspect_ratio_policy cannot take a length past the cap either. */
    if (!have_opset(18))
        return;
    /* The scale 2^24 / 3 that covers axis 3 would make axis 2 2^25 long. */
    const int64_t ax[2] = {2, 3}, two[1] = {2}, sz[2] = {1, 1 << 24}, hd[4] = {1, 1, 6, 3};
    float hx[18] = {0};
    mb_init(&b);
    b.opset = 18;
    mb_input(&b, "x", 1, 4, hd);
    mb_init_i64(&b, "sizes", 1, two, sz);
    mb_node(&b, "Resize", "x,,,sizes", "y", 2, mb_attr_ints(&b, "axes", 2, ax),
            mb_attr_s(&b, "keep_aspect_ratio_policy", "not_smaller"));
    mb_output(&b, "y", 1, 4, hd);
    ASSERT_ERR(run2(&b, hx, 4, hd, NULL, 0, NULL, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "bad size");
}

/* ---- GridSample ---- */

struct gcfg {
    const char *mode, *pad;
    bool ac;
};

/* ONNX Runtime's reflection of x into [lo, hi], in float. */
static float ref_reflect(float x, float lo, float hi)
{
    float range = hi - lo;
    if (x < lo) {
        float dx = lo - x;
        int n = (int)(dx / range);
        float r = dx - (float)n * range;
        return n % 2 == 0 ? lo + r : hi - r;
    }
    if (x > hi) {
        float dx = x - hi;
        int n = (int)(dx / range);
        float r = dx - (float)n * range;
        return n % 2 == 0 ? hi - r : lo + r;
    }
    return x;
}

/* The value at integer position p (r axes) of one channel under the padding mode. */
static double ref_pixel(const struct gcfg *c, const float *xc, size_t r, const int64_t *in,
                        const int64_t *p)
{
    int64_t off = 0;
    for (size_t d = 0; d < r; d++) {
        int64_t i = p[d];
        if (i < 0 || i >= in[d]) {
            if (strcmp(c->pad, "zeros") == 0)
                return 0;
            if (strcmp(c->pad, "border") == 0) {
                i = i < 0 ? 0 : in[d] - 1;
            } else {
                float lo = c->ac ? 0.0f : -0.5f;
                float hi = c->ac ? (float)(in[d] - 1) : (float)in[d] - 0.5f;
                i = in[d] == 1 ? 0 : (int64_t)ref_reflect((float)i, lo, hi);
            }
        }
        off = off * in[d] + i;
    }
    return xc[off];
}

static void ref_cubic(double t, double *w)
{
    for (int k = 0; k < 4; k++)
        w[k] = keys(t + 1 - k, -0.75);
}

/*
 * GridSample of x [N, C, in...] at grid [N, out..., r], tap by tap: each tap's position is
 * padded (zeros, clamped, reflected), positions are denormalised in float.
 */
static double *ref_gridsample(const struct gcfg *c, const float *x, const int64_t *xd, size_t r,
                              const float *g, const int64_t *gd)
{
    int64_t n = xd[0], ch = xd[1], pts = (int64_t)count(r, gd + 1),
            plane = (int64_t)count(r, xd + 2);
    double *y = malloc((size_t)(n * ch * pts) * sizeof(double) + 8);
    int taps = strcmp(c->mode, "nearest") == 0 ? 1 : strstr(c->mode, "cubic") ? 4 : 2;
    for (int64_t b = 0; b < n; b++)
        for (int64_t p = 0; p < pts; p++) {
            const float *gp = g + (b * pts + p) * (int64_t)r;
            int64_t base[3];
            double w[3][4];
            for (size_t d = 0; d < r; d++) {
                int64_t len = xd[2 + d];
                float v = gp[r - 1 - d];
                float xf =
                    c->ac ? (v + 1) / 2.0f * (float)(len - 1) : ((v + 1) * (float)len - 1) / 2.0f;
                if (taps == 1) {
                    base[d] = (int64_t)nearbyintf(xf);
                    w[d][0] = 1;
                } else if (taps == 2) {
                    base[d] = (int64_t)floorf(xf);
                    w[d][0] = (double)(base[d] + 1) - xf;
                    w[d][1] = xf - (double)base[d];
                } else {
                    base[d] = (int64_t)floorf(xf) - 1;
                    ref_cubic(xf - floorf(xf), w[d]);
                }
            }
            for (int64_t k = 0; k < ch; k++) {
                const float *xc = x + (b * ch + k) * plane;
                double acc = 0;
                int64_t combos = 1;
                for (size_t d = 0; d < r; d++)
                    combos *= taps;
                for (int64_t q = 0; q < combos; q++) {
                    int64_t pos[3], rest = q;
                    double wt = 1;
                    for (size_t d = r; d-- > 0;) {
                        int t = (int)(rest % taps);
                        rest /= taps;
                        pos[d] = base[d] + t;
                        wt *= w[d][t];
                    }
                    acc += wt * ref_pixel(c, xc, r, xd + 2, pos);
                }
                y[(b * ch + k) * pts + p] = acc;
            }
        }
    return y;
}

/* A GridSample model of x (rank 2 + r) and grid at opset. */
static void gs_model(struct mb *b, const struct gcfg *c, int64_t opset, size_t rank,
                     const int64_t *xd, const int64_t *gd, const int64_t *yd)
{
    mb_init(b);
    b->opset = opset;
    mb_input(b, "x", 1, rank, xd);
    mb_input(b, "g", 1, rank, gd);
    mb_node(b, "GridSample", "x,g", "y", 3, mb_attr_s(b, "mode", c->mode),
            mb_attr_s(b, "padding_mode", c->pad), mb_attr_i(b, "align_corners", c->ac));
    mb_output(b, "y", 1, rank, yd);
}

/*
 * Random x and a grid uniform in [-span, span) (the first points at the corners and centre),
 * sampled and checked against the reference.
 */
static bool gs_case(const struct gcfg *c, int64_t opset, size_t r, const int64_t *xd,
                    const int64_t *gd, float span)
{
    size_t rank = r + 2, nx = count(rank, xd), ng = count(rank, gd);
    int64_t yd[5] = {xd[0], xd[1], 0, 0, 0};
    for (size_t d = 0; d < r; d++)
        yd[2 + d] = gd[1 + d];
    float *x = malloc(nx * sizeof(float)), *g = malloc(ng * sizeof(float));
    uint32_t seed = 77;
    for (size_t i = 0; i < nx; i++)
        x[i] = rnd(&seed) * 2.0f;
    for (size_t i = 0; i < ng; i++)
        g[i] = rnd(&seed) * span;
    static const float fixed[] = {-1, -1, 1, 1, 0, 0, -1, 1, 1, -1, 0.5f, -0.5f};
    for (size_t i = 0; i < 12 && i < ng; i++)
        g[i] = fixed[i];
    double *want = ref_gridsample(c, x, xd, r, g, gd);
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    gs_model(&b, c, opset, rank, xd, gd, yd);
    veil_err rc = run2(&b, x, rank, xd, g, rank, gd, &out, &eb);
    char what[128];
    snprintf(what, sizeof(what), "GridSample %zu-D %s %s ac=%d opset %lld", r, c->mode, c->pad,
             c->ac, (long long)opset);
    bool ok = rc == VEIL_OK && out.rank == rank &&
              memcmp(out.dims, yd, rank * sizeof(int64_t)) == 0 &&
              close_all(what, &out, want, count(rank, yd), 1e-5);
    if (rc != VEIL_OK)
        fprintf(stderr, "%s: %s\n", what, veil_errbuf_msg(&eb, rc));
    veil_tensor_release(&out);
    free(x);
    free(g);
    free(want);
    return ok;
}

TEST(gridsample_2d_against_reference)
{
    static const char *const m16[] = {"bilinear", "nearest", "bicubic"};
    static const char *const m20[] = {"linear", "nearest", "cubic"};
    static const char *const pads[] = {"zeros", "border", "reflection"};
    const int64_t xd[4] = {2, 3, 5, 7}, gd[4] = {2, 6, 9, 2};
    const int64_t big_x[4] = {1, 4, 20, 24}, big_g[4] = {1, 48, 40, 2};
    const int64_t one_x[4] = {1, 2, 1, 1}, one_g[4] = {1, 3, 4, 2};
    for (size_t m = 0; m < 3; m++)
        for (size_t p = 0; p < 3; p++)
            for (int ac = 0; ac < 2; ac++) {
                struct gcfg c = {m16[m], pads[p], ac != 0};
                ASSERT_TRUE(gs_case(&c, 16, 2, xd, gd, 1.6f));
                ASSERT_TRUE(gs_case(&c, 16, 2, xd, gd, 7.0f));
                ASSERT_TRUE(gs_case(&c, 16, 2, one_x, one_g, 3.0f));
                if (have_opset(20)) {
                    c.mode = m20[m];
                    ASSERT_TRUE(gs_case(&c, 20, 2, xd, gd, 1.6f));
                }
            }
    /* Enough points for the parallel loop to split them. */
    struct gcfg c = {"bilinear", "zeros", true};
    ASSERT_TRUE(gs_case(&c, 16, 2, big_x, big_g, 1.1f));
}

TEST(gridsample_1d_and_3d_against_reference)
{
    if (!have_opset(20))
        SKIP("the parser takes opsets up to %d", VEIL_ONNX_OPSET_MAX);
    static const char *const modes[] = {"linear", "nearest", "cubic"};
    static const char *const pads[] = {"zeros", "border", "reflection"};
    const int64_t xd3[5] = {2, 2, 4, 5, 6}, gd3[5] = {2, 3, 4, 5, 3};
    const int64_t xd1[3] = {2, 3, 9}, gd1[3] = {2, 11, 1};
    for (size_t m = 0; m < 3; m++)
        for (size_t p = 0; p < 3; p++)
            for (int ac = 0; ac < 2; ac++) {
                struct gcfg c = {modes[m], pads[p], ac != 0};
                ASSERT_TRUE(gs_case(&c, 20, 3, xd3, gd3, 1.5f));
                ASSERT_TRUE(gs_case(&c, 20, 1, xd1, gd1, 4.0f));
            }
}

/*
 * Grid positions no reference defines: NaN gives NaN; an infinite position is padding under
 * zeros (0), the edge under border (as a position 100 beyond it) and NaN under reflection;
 * huge finite ones are padding, the edge, or reflected into the input. Nothing is read
 * outside the input (ASan checks).
 */
TEST(gridsample_hostile_grid)
{
    static const char *const modes[] = {"bilinear", "nearest", "bicubic"};
    static const char *const pads[] = {"zeros", "border", "reflection"};
    const int64_t xd[4] = {1, 1, 3, 4}, gd[4] = {1, 1, 6, 2}, yd[4] = {1, 1, 1, 6};
    const float x[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    /* (x, y) pairs: NaN, +inf, -inf, 1e30, -1e30, and 3e9 with a NaN y. */
    const float g[12] = {NAN, 0, INFINITY, 0.5f, -INFINITY, 0.5f, 1e30f, 1, -1e30f, -1, 3e9f, NAN};
    for (size_t m = 0; m < 3; m++)
        for (size_t p = 0; p < 3; p++)
            for (int ac = 0; ac < 2; ac++) {
                struct gcfg c = {modes[m], pads[p], ac != 0};
                struct mb b;
                struct veil_errbuf eb = {{0}};
                struct veil_tensor out;
                gs_model(&b, &c, 16, 4, xd, gd, yd);
                ASSERT_OK(run2(&b, x, 4, xd, g, 4, gd, &out, &eb));
                const float *y = out.data;
                char what[96];
                snprintf(what, sizeof(what), "%s %s ac=%d: %g %g %g %g %g %g", c.mode, c.pad, ac,
                         (double)y[0], (double)y[1], (double)y[2], (double)y[3], (double)y[4],
                         (double)y[5]);
                bool ok = isnan(y[0]) && isnan(y[5]);
                if (p == 0) {
                    ok = ok && y[1] == 0 && y[2] == 0 && y[3] == 0 && y[4] == 0;
                } else if (p == 1) {
                    float g2[12];
                    memcpy(g2, g, sizeof(g2));
                    g2[0] = g2[11] = 0; /* NaN: not compared, and not for the reference */
                    g2[2] = g2[6] = 100;
                    g2[4] = g2[8] = -100;
                    double *want = ref_gridsample(&c, x, xd, 2, g2, gd);
                    for (size_t k = 1; k < 5; k++)
                        ok = ok && fabs(y[k] - want[k]) < 1e-4;
                    free(want);
                } else {
                    ok = ok && isnan(y[1]) && isnan(y[2]) && isfinite(y[3]) && isfinite(y[4]) &&
                         y[3] >= -2 && y[3] <= 14 && y[4] >= -2 && y[4] <= 14;
                }
                veil_tensor_release(&out);
                if (!ok)
                    fprintf(stderr, "%s\n", what);
                ASSERT_TRUE(ok);
            }
}

/* Runs a GridSample of the given shapes and attributes; returns the error. */
static veil_err gs_refusal(int64_t opset, size_t rank, const int64_t *xd, size_t g_rank,
                           const int64_t *gd, const char *mode, const char *pad, int gdt,
                           struct veil_errbuf *eb)
{
    struct mb b;
    struct veil_tensor out;
    float buf[4096] = {0};
    mb_init(&b);
    b.opset = opset;
    mb_input(&b, "x", 1, rank, xd);
    mb_input(&b, "g", gdt, g_rank, gd);
    mb_node(&b, "GridSample", "x,g", "y", 2, mb_attr_s(&b, "mode", mode),
            mb_attr_s(&b, "padding_mode", pad));
    mb_output(&b, "y", 1, rank, xd);
    struct veil_engine_model *m = NULL;
    struct veil_engine_options opt = {.threads = 1};
    veil_err rc = mb_load(&b, &opt, &m, eb);
    if (rc != VEIL_OK)
        return rc;
    struct veil_tensor in[2];
    in[0] = tensor_of(VEIL_DT_FLOAT, rank, xd, buf);
    in[1] = tensor_of(gdt == 1 ? VEIL_DT_FLOAT : VEIL_DT_DOUBLE, g_rank, gd, buf);
    memset(&out, 0, sizeof(out));
    rc = veil_engine_run(m, in, 2, &out, 1, eb);
    veil_tensor_release(&out);
    veil_engine_model_free(m);
    return rc;
}

TEST(gridsample_refusals)
{
    struct veil_errbuf eb = {{0}};
    const int64_t xd[4] = {2, 3, 4, 5}, gd[4] = {2, 6, 7, 2}, bad_n[4] = {1, 6, 7, 2};
    const int64_t bad_last[4] = {2, 6, 7, 3}, g3[3] = {2, 6, 2}, empty_x[4] = {2, 3, 0, 5};
    const int64_t x5[5] = {1, 1, 2, 2, 2}, g5[5] = {1, 2, 2, 2, 3};
    const int64_t x6[6] = {1, 1, 2, 2, 2, 2}, g6[6] = {1, 2, 2, 2, 2, 4};
    ASSERT_ERR(gs_refusal(16, 4, xd, 4, bad_n, "bilinear", "zeros", 1, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "grid must be [N, out axes..., 2]");
    ASSERT_ERR(gs_refusal(16, 4, xd, 4, bad_last, "bilinear", "zeros", 1, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "grid must be");
    ASSERT_ERR(gs_refusal(16, 4, xd, 3, g3, "bilinear", "zeros", 1, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'GridSample'");
    ASSERT_ERR(gs_refusal(16, 4, xd, 4, gd, "trilinear", "zeros", 1, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "mode 'trilinear'");
    ASSERT_ERR(gs_refusal(16, 4, xd, 4, gd, "bilinear", "wrap", 1, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "padding_mode 'wrap'");
    ASSERT_ERR(gs_refusal(16, 4, xd, 4, gd, "bilinear", "zeros", 11, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "GridSample of float with a double grid");
    ASSERT_ERR(gs_refusal(16, 4, empty_x, 4, gd, "bilinear", "border", 1, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "empty axis 2");
    ASSERT_ERR(gs_refusal(16, 5, x5, 5, g5, "bilinear", "zeros", 1, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "before opset 20 samples 4-D inputs");
    if (!have_opset(20))
        return;
    ASSERT_ERR(gs_refusal(20, 6, x6, 6, g6, "cubic", "zeros", 1, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "cubic GridSample over 4 axes");
}

RUN_TESTS()
