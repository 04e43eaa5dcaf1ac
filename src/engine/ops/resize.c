/*
 * Resize and GridSample in plain C.
 *
 * Resize: nearest, linear and cubic modes over any number of axes, every coordinate
 * transformation mode of opsets 11 to 19, opset 18's antialias (the filter widened by
 * 1/scale when shrinking), axes and keep_aspect_ratio_policy. Infer builds, per resized axis,
 * a table giving each output coordinate a contiguous window of input positions and its
 * weights (edge padding folded into the end taps); the run is then one separable pass per
 * axis that is not the identity, each a weighted sum of whole rows that the compiler
 * vectorises. Shrinking axes go first and growing ones last, so no intermediate is larger than
 * the input or the output. Bilinear resizing of the last two axes follows ONNX Runtime's float
 * arithmetic instead (see bilinear_coord).
 *
 * GridSample (opsets 16 and 20): linear, nearest and cubic sampling of N-D inputs at the
 * grid's normalised positions, with zeros, border and reflection padding, as ONNX Runtime
 * computes it; every tap index is mapped into the input or dropped before it is read.
 */
#include "engine_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- Resize (nearest, linear, cubic) ---- */

/*
 * One output coordinate of one axis: the window [start, start + n) of input positions, its
 * weights in the axis' weight table. n == 0 makes the output 0, or extrapolation_value when
 * out is set (a coordinate outside the input under tf_crop_and_resize).
 */
struct rz_entry {
    int64_t start;
    uint32_t n;
    bool out;
};

/* One axis' table: out entries, and taps weights per entry (the widest window). */
struct rz_axis {
    int64_t in, out;
    size_t taps;
    const struct rz_entry *e;
    const float *w;
    bool any_out; /* some entry is out */
};

/* One output coordinate of the bilinear path: taps i0 and i1 (equal at the edge), weights. */
struct rz_bil {
    int64_t i0, i1;
    float w0, w1;
};

/*
 * What kparams.ptr holds: the tables of every axis (identity axes have none), or on the
 * bilinear path those of the last two axes only.
 */
struct rz_tables {
    struct rz_axis ax[VEIL__ENGINE_RANK];
    const struct rz_bil *bil[2];
};

enum { RZ_NEAREST, RZ_LINEAR, RZ_CUBIC };
enum { CT_HALF_PIXEL, CT_PYTORCH, CT_ALIGN, CT_ASYMMETRIC, CT_TF_NN, CT_CROP, CT_HALF_SYM };
enum { KA_STRETCH, KA_NOT_LARGER, KA_NOT_SMALLER };

struct resize_cfg {
    int mode, ctm, nm;
    double a;       /* cubic_coeff_a */
    bool excl;      /* exclude_outside */
    bool antialias; /* opset 18: widen linear and cubic filters when shrinking */
};

static int name_index(const char *s, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return (int)i;
    return -1;
}

/*
 * The original coordinate of output coordinate x on an axis resized from in to out elements
 * at scale s; [r0, r1] is the axis' crop (tf_crop_and_resize only).
 */
static double resize_coord(int ctm, int64_t x, int64_t in, int64_t out, double s, double r0,
                           double r1)
{
    switch (ctm) {
    case CT_HALF_PIXEL:
        return ((double)x + 0.5) / s - 0.5;
    case CT_PYTORCH:
        return out > 1 ? ((double)x + 0.5) / s - 0.5 : 0.0;
    case CT_ALIGN: {
        double den = (double)in * s - 1.0;
        return den <= 0 ? 0.0 : (double)x * (double)(in - 1) / den;
    }
    case CT_ASYMMETRIC:
        return (double)x / s;
    case CT_TF_NN:
        return ((double)x + 0.5) / s;
    case CT_HALF_SYM: {
        /*
         * Opset 19: half_pixel with the input's centre mapped to the output's centre, which
         * differs from half_pixel only where out is not exactly in * s. The offset is taken
         * in float and the coordinate rounded to float as ONNX Runtime does, so nearest
         * picks the same side of a tie.
         */
        float fs = (float)s, adj = (float)out / (fs * (float)in);
        float off = (float)in / 2.0f * (1.0f - adj);
        return (double)(float)((double)off + ((double)x + 0.5) / (double)fs - 0.5);
    }
    default:
        return out > 1 ? r0 * (double)(in - 1) +
                             (double)x * (r1 - r0) * (double)(in - 1) / (double)(out - 1)
                       : 0.5 * (r0 + r1) * (double)(in - 1);
    }
}

/*
 * Keys' cubic convolution weights, with coefficient a, of the four taps around a point a
 * fraction t in (0, 1] past the second tap.
 */
static void cubic_coeffs(double t, double a, double *c)
{
    double s = 1.0 + t, u = 1.0 - t, v = 2.0 - t;
    c[0] = ((a * s - 5.0 * a) * s + 8.0 * a) * s - 4.0 * a;
    c[1] = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0;
    c[2] = ((a + 2.0) * u - (a + 3.0)) * u * u + 1.0;
    c[3] = ((a * v - 5.0 * a) * v + 8.0 * a) * v - 4.0 * a;
}

/* Keys' cubic kernel with coefficient a at distance d. */
static double keys(double d, double a)
{
    d = fabs(d);
    if (d <= 1.0)
        return ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0;
    if (d < 2.0)
        return ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a;
    return 0.0;
}

/* Whether the axis filters with a widened kernel: antialias, linear or cubic, shrinking. */
static bool widened(const struct resize_cfg *cf, double s)
{
    return cf->antialias && cf->mode != RZ_NEAREST && s < 1.0;
}

/*
 * The first tap of the widened filter relative to the position below the point (ONNX's
 * reference: floor(-support / scale) + 1, support 1 for linear and 2 for cubic); the filter
 * has 2 - 2 * that many taps.
 */
static double widened_start(const struct resize_cfg *cf, double s)
{
    return floor((cf->mode == RZ_CUBIC ? -2.0 : -1.0) / s) + 1.0;
}

/* The most raw taps one coordinate of an axis at scale s can have. */
static double raw_tap_count(const struct resize_cfg *cf, double s)
{
    if (widened(cf, s))
        return 2.0 - 2.0 * widened_start(cf, s);
    return cf->mode == RZ_NEAREST ? 1.0 : cf->mode == RZ_LINEAR ? 2.0 : 4.0;
}

/*
 * The raw taps of original coordinate xo on an axis of in > 0 elements, unwidened: n <= 4
 * consecutive input positions from *first (possibly outside the axis, which is edge
 * padding), with weights w. Returns n.
 */
static uint32_t raw_taps(const struct resize_cfg *cf, double xo, int64_t in, int64_t *first,
                         double *w)
{
    double hi = (double)(in - 1);
    *first = 0;
    if (cf->mode == RZ_NEAREST) {
        /* Clamping first changes no result (the index is clamped anyway) and keeps the
         * conversion to an integer defined. */
        xo = xo < -1.0 ? -1.0 : xo > (double)in ? (double)in : xo;
        double fl = floor(xo), fr = xo - fl;
        switch (cf->nm) {
        case 0:
            *first = fr == 0.5 ? (int64_t)fl : (int64_t)floor(xo + 0.5);
            break;
        case 1:
            *first = fr == 0.5 ? (int64_t)fl + 1 : (int64_t)floor(xo + 0.5);
            break;
        case 2:
            *first = (int64_t)fl;
            break;
        default:
            *first = (int64_t)ceil(xo);
            break;
        }
        w[0] = 1.0;
        return 1;
    }
    if (cf->mode == RZ_LINEAR) {
        xo = xo < 0.0 ? 0.0 : xo > hi ? hi : xo;
        double fl = floor(xo);
        *first = (int64_t)fl;
        w[0] = 1.0 - (xo - fl);
        w[1] = xo - fl;
        return 2;
    }
    /*
     * Cubic: the four nearest positions of the edge-padded axis (two padding elements on
     * each side), ties to the lower ones, so the point lies a fraction t in (0, 1] past the
     * second; far outside the axis the window stops at the padding's end, as in ONNX's
     * reference.
     */
    double fl = floor(xo), t = xo - fl;
    if (t == 0.0) {
        t = 1.0;
        fl -= 1.0;
    }
    double start = fl - 1.0, sum = 0.0;
    start = start < -2.0 ? -2.0 : start > (double)in - 2.0 ? (double)in - 2.0 : start;
    *first = (int64_t)start;
    cubic_coeffs(t, cf->a, w);
    if (cf->excl) {
        for (int k = 0; k < 4; k++) {
            if (*first + k < 0 || *first + k >= in)
                w[k] = 0.0;
            sum += w[k];
        }
        for (int k = 0; k < 4 && sum != 0.0; k++)
            w[k] /= sum;
    }
    return 4;
}

static int64_t clamp_i64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Stores the folded window acc[0, m) from position lo, zero weights at either end dropped. */
static void store_window(int64_t lo, size_t m, const double *acc, struct rz_entry *e, float *wout)
{
    size_t b = 0;
    while (b < m && acc[b] == 0.0)
        b++;
    while (m > b && acc[m - 1] == 0.0)
        m--;
    e->start = lo + (int64_t)b;
    e->n = (uint32_t)(m - b);
    for (size_t k = b; k < m; k++)
        wout[k - b] = (float)acc[k];
}

/*
 * The widened filter of original coordinate xo (antialias on a shrinking axis), folded into
 * the axis as it is computed: acc has room for min(taps, in) values. ONNX's reference: the
 * point lies a fraction ratio in (0, 1] past position b; the taps b + i for i in [start,
 * 1 - start) weigh filter((i - ratio) * s), normalised (with exclude_outside, over the taps
 * inside the axis). The window is the 2 - 2 * start positions of the edge-padded axis nearest
 * to the point, which far outside the axis stop at the padding's end.
 */
static void widened_entry(const struct resize_cfg *cf, double xo, int64_t in, double s, double *acc,
                          struct rz_entry *e, float *wout)
{
    double b = floor(xo), ratio = xo - b, st = widened_start(cf, s), sum = 0.0;
    if (ratio == 0.0) {
        ratio = 1.0;
        b -= 1.0;
    }
    int64_t n = (int64_t)(2.0 - 2.0 * st);
    double pad = (double)(n / 2), f = b + st;
    f = f < -pad ? -pad : f > (double)in + pad - (double)n ? (double)in + pad - (double)n : f;
    int64_t first = (int64_t)f;
    int64_t lo = clamp_i64(first, 0, in - 1), hi = clamp_i64(first + n - 1, 0, in - 1);
    size_t m = (size_t)(hi - lo + 1);
    for (size_t k = 0; k < m; k++)
        acc[k] = 0.0;
    for (int64_t k = 0; k < n; k++) {
        double d = (st + (double)k - ratio) * s;
        double v = cf->mode == RZ_CUBIC ? keys(d, cf->a) : 1.0 - fabs(d);
        int64_t j = first + k;
        if ((v < 0.0 && cf->mode == RZ_LINEAR) || (cf->excl && (j < 0 || j >= in)))
            continue;
        acc[clamp_i64(j, 0, in - 1) - lo] += v;
        sum += v;
    }
    for (size_t k = 0; k < m; k++)
        acc[k] = sum != 0.0 ? acc[k] / sum : 0.0;
    store_window(lo, m, acc, e, wout);
}

/*
 * Folds n raw taps from first (weights w) into a window inside an axis of in elements: taps
 * outside add to the edge position (edge padding), zero weights at either end are dropped.
 * acc has room for min(n, in) values; the weights go to wout.
 */
static void fold_taps(int64_t first, uint32_t n, const double *w, int64_t in, double *acc,
                      struct rz_entry *e, float *wout)
{
    if (n == 0) {
        e->start = 0;
        e->n = 0;
        return;
    }
    int64_t lo = clamp_i64(first, 0, in - 1), hi = clamp_i64(first + (int64_t)n - 1, 0, in - 1);
    size_t m = (size_t)(hi - lo + 1);
    for (size_t k = 0; k < m; k++)
        acc[k] = 0.0;
    for (uint32_t k = 0; k < n; k++)
        acc[clamp_i64(first + (int64_t)k, 0, in - 1) - lo] += w[k];
    store_window(lo, m, acc, e, wout);
}

/* Whether an axis' table maps every output coordinate to its own input position. */
static bool axis_identity(const struct rz_axis *ax)
{
    if (ax->in != ax->out)
        return false;
    for (int64_t x = 0; x < ax->out; x++)
        if (ax->e[x].out || ax->e[x].n != 1 || ax->e[x].start != x ||
            ax->w[(size_t)x * ax->taps] != 1.0f)
            return false;
    return true;
}

/*
 * The sizes of every axis under keep_aspect_ratio_policy: one scale for all axes in ax (the
 * smallest or largest of sizes / in), lengths rounded from it as ONNX Runtime does (in float).
 */
static veil_err keep_aspect(struct veil__engine_ictx *c, int policy, const size_t *ax, size_t nax,
                            const int64_t *sizes, double *scales, int64_t *odims)
{
    float sc = policy == KA_NOT_LARGER ? INFINITY : 0.0f;
    for (size_t k = 0; k < nax; k++) {
        int64_t in = c->in[0].dims[ax[k]];
        if (in == 0)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "keep_aspect_ratio_policy over the empty axis %zu", ax[k]);
        float f = (float)sizes[k] / (float)in;
        sc = policy == KA_NOT_LARGER ? (f < sc ? f : sc) : (f > sc ? f : sc);
    }
    for (size_t k = 0; k < nax; k++) {
        double d = (double)roundf(sc * (float)c->in[0].dims[ax[k]]);
        if (!(d >= 0) || d > (1 << 24))
            return veil_errf(c->eb, VEIL_E_INVALID, "bad size");
        odims[ax[k]] = (int64_t)d;
        scales[ax[k]] = (double)sc;
    }
    return VEIL_OK;
}

/*
 * Resize's axes attribute (opset 18) normalised into ax (*nax of them); all axes in order
 * when absent. Errors: VEIL_E_INVALID (out of range, repeated, or more than the rank).
 */
static veil_err resize_axes(struct veil__engine_ictx *c, size_t r, size_t *ax, size_t *nax)
{
    const struct veil__engine_attr *a = veil__engine_attr_typed(c->n, "axes", VEIL_ONNX_ATTR_INTS);
    bool seen[VEIL__ENGINE_RANK] = {false};
    veil_err rc;
    if (a == NULL) {
        if (veil__engine_attr_get(c->n, "axes") != NULL)
            return veil_errf(c->eb, VEIL_E_INVALID, "axes must be a list of integers");
        for (size_t i = 0; i < r; i++)
            ax[i] = i;
        *nax = r;
        return VEIL_OK;
    }
    if (a->n > r)
        return veil_errf(c->eb, VEIL_E_INVALID, "axes has %zu values for rank %zu", a->n, r);
    for (size_t k = 0; k < a->n; k++) {
        if ((rc = veil__engine_norm_axis(a->ints[k], r, &ax[k], c->eb)) != VEIL_OK)
            return rc;
        if (seen[ax[k]])
            return veil_errf(c->eb, VEIL_E_INVALID, "axis %zu repeated in axes", ax[k]);
        seen[ax[k]] = true;
    }
    *nax = a->n;
    return VEIL_OK;
}

/*
 * Bilinear resizing of the last two axes (2-D inputs, or 4-D ones whose first two axes keep
 * their size) follows ONNX Runtime's arithmetic exactly, in float: the original coordinate
 * from the float scale, clamped into the axis, the two taps floor(x) and the next one (the
 * same one at the last element, each then weighted 1/2) with weights |x - tap| crossed over,
 * and y = w_x0 * w_y0 * x00 + w_x1 * w_y0 * x01 + w_x0 * w_y1 * x10 + w_x1 * w_y1 * x11, rounded
 * after every operation. Quantised models requantise these values, where one different
 * rounding moves a value by a whole quantum.
 */
static float bilinear_coord(int ctm, int64_t x, int64_t in, int64_t out, float s)
{
    float xf = (float)x;
    if (s == 1.0f)
        return xf;
    switch (ctm) {
    case CT_PYTORCH:
        return (float)out > 1.0f ? (xf + 0.5f) / s - 0.5f : 0.0f;
    case CT_ASYMMETRIC:
        return xf / s;
    case CT_TF_NN:
        return (xf + 0.5f) / s;
    case CT_HALF_SYM:
        return (float)resize_coord(CT_HALF_SYM, x, in, out, (double)s, 0.0, 1.0);
    default:
        return (xf + 0.5f) / s - 0.5f;
    }
}

static void bilinear_entry(float xo, int64_t in, struct rz_bil *e)
{
    float hi = (float)(in - 1);
    xo = xo < hi ? xo : hi;
    xo = xo > 0.0f ? xo : 0.0f;
    e->i0 = (int64_t)xo < in - 1 ? (int64_t)xo : in - 1;
    e->i1 = e->i0 + 1 < in - 1 ? e->i0 + 1 : in - 1;
    e->w0 = e->i0 == e->i1 ? 0.5f : fabsf(xo - (float)e->i1);
    e->w1 = e->i0 == e->i1 ? 0.5f : fabsf(xo - (float)e->i0);
}

/* The bilinear path's tables (the last two axes) into one block (kp->ptr). */
static veil_err bilinear_tables(struct veil__engine_ictx *c, int ctm, const double *scales)
{
    size_t r = c->in[0].rank, n[2], bytes = sizeof(struct rz_tables);
    for (size_t k = 0; k < 2; k++) {
        n[k] = (size_t)c->out[0].dims[r - 2 + k];
        if (n[k] > ((size_t)1 << 24))
            return veil_errf(c->eb, VEIL_E_LIMIT, "Resize tables too large");
        bytes += (n[k] + 1) * sizeof(struct rz_bil);
    }
    uint8_t *blk = veil_malloc(bytes);
    if (blk == NULL)
        return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for Resize tables");
    struct rz_tables *t = (struct rz_tables *)(void *)blk;
    struct rz_bil *e = (struct rz_bil *)(void *)(blk + sizeof(*t));
    memset(t, 0, sizeof(*t));
    for (size_t k = 0; k < 2; k++) {
        size_t a = r - 2 + k;
        int64_t in = c->in[0].dims[a], out = c->out[0].dims[a];
        t->bil[k] = e;
        for (int64_t x = 0; x < out; x++)
            bilinear_entry(bilinear_coord(ctm, x, in, out, (float)scales[a]), in, &e[x]);
        e += n[k] + 1;
    }
    veil_free(c->kp->ptr);
    c->kp->ptr = blk;
    c->kp->resize.n_pass = 0;
    c->kp->resize.buf_elems = 0;
    c->kp->resize.fill = false;
    return VEIL_OK;
}

/*
 * Builds every axis' table into one block (kp->ptr) and orders the passes: shrinking axes
 * first (the last axis, whose pass gathers single elements, last among them), then growing
 * ones (the last axis first), so each intermediate is at most the larger of input and output.
 */
static veil_err resize_tables(struct veil__engine_ictx *c, const struct resize_cfg *cf, bool simple,
                              const double *scales, const double *r0, const double *r1)
{
    size_t r = c->in[0].rank;
    size_t taps[VEIL__ENGINE_RANK], max_taps = 4, bytes = sizeof(struct rz_tables);
    size_t ent_off[VEIL__ENGINE_RANK], w_off[VEIL__ENGINE_RANK];
    struct veil__engine_kp_resize *kr = &c->kp->resize;
    double raw[4], *acc = NULL;
    uint8_t *blk = NULL;
    veil_err rc = VEIL_E_INTERNAL;
    for (size_t i = 0; i < r; i++) {
        int64_t in = c->in[0].dims[i], out = c->out[0].dims[i];
        size_t ne = 0, nw = 0;
        taps[i] = 0;
        if (out > 0) {
            double n = raw_tap_count(cf, scales[i]);
            if (!(n <= (double)(1u << 30))) {
                rc = veil_errf(c->eb, VEIL_E_LIMIT, "the filter of axis %zu is too wide", i);
                goto out;
            }
            taps[i] = (size_t)n < (size_t)in ? (size_t)n : (size_t)in;
            max_taps = taps[i] > max_taps ? taps[i] : max_taps;
        }
        bytes = (bytes + 63) & ~(size_t)63;
        ent_off[i] = bytes;
        if (__builtin_mul_overflow((size_t)out, sizeof(struct rz_entry), &ne) ||
            __builtin_add_overflow(bytes, ne, &bytes)) {
            rc = veil_errf(c->eb, VEIL_E_LIMIT, "Resize tables too large");
            goto out;
        }
        bytes = (bytes + 63) & ~(size_t)63;
        w_off[i] = bytes;
        if (__builtin_mul_overflow((size_t)out, taps[i], &nw) ||
            __builtin_mul_overflow(nw, sizeof(float), &nw) ||
            __builtin_add_overflow(bytes, nw, &bytes) || bytes > VEIL__ENGINE_RESIZE_MAX_TABLES) {
            rc = veil_errf(c->eb, VEIL_E_LIMIT, "Resize tables need more than %llu bytes",
                           (unsigned long long)VEIL__ENGINE_RESIZE_MAX_TABLES);
            goto out;
        }
    }
    blk = veil_malloc(bytes);
    acc = veil_allocarray(max_taps, sizeof(double));
    if (blk == NULL || acc == NULL) {
        rc = veil_errf(c->eb, VEIL_E_NOMEM, "no memory for Resize tables");
        goto out;
    }
    struct rz_tables *t = (struct rz_tables *)(void *)blk;
    memset(t, 0, sizeof(*t));
    bool identity[VEIL__ENGINE_RANK];
    kr->fill = false;
    for (size_t i = 0; i < r; i++) {
        struct rz_axis *ax = &t->ax[i];
        struct rz_entry *e = (struct rz_entry *)(void *)(blk + ent_off[i]);
        float *w = (float *)(void *)(blk + w_off[i]);
        struct resize_cfg acf = *cf;
        ax->in = c->in[0].dims[i];
        ax->out = c->out[0].dims[i];
        ax->taps = taps[i];
        ax->e = e;
        ax->w = w;
        if (simple)
            acf.nm = scales[i] < 1.0 ? 3 : 2; /* ceil, floor */
        for (int64_t x = 0; x < ax->out; x++) {
            int64_t first;
            float *wx = w + (size_t)x * ax->taps;
            double xo = resize_coord(acf.ctm, x, ax->in, ax->out, scales[i], r0[i], r1[i]);
            e[x].out = acf.ctm == CT_CROP && !(xo >= 0.0 && xo <= (double)(ax->in - 1));
            if (e[x].out) {
                e[x].start = 0;
                e[x].n = 0;
                ax->any_out = true;
            } else if (widened(&acf, scales[i])) {
                widened_entry(&acf, xo, ax->in, scales[i], acc, &e[x], wx);
            } else {
                uint32_t n = raw_taps(&acf, xo, ax->in, &first, raw);
                fold_taps(first, n, raw, ax->in, acc, &e[x], wx);
            }
        }
        identity[i] = axis_identity(ax);
        kr->fill = kr->fill || ax->any_out;
    }
    /* The pass order and the largest intermediate. */
    size_t n_pass = 0;
    for (int grow = 0; grow < 2; grow++) {
        size_t first = n_pass;
        for (size_t i = 0; i < r; i++) {
            const struct rz_axis *ax = &t->ax[i];
            if (identity[i] || (ax->out >= ax->in) != (grow == 1))
                continue;
            /* Insertion by ratio out / in, smallest first. */
            size_t k = n_pass++;
            double q = (double)ax->out / (double)ax->in;
            while (k > first &&
                   (double)t->ax[kr->order[k - 1]].out / (double)t->ax[kr->order[k - 1]].in > q) {
                kr->order[k] = kr->order[k - 1];
                k--;
            }
            kr->order[k] = (int64_t)i;
        }
        /* The last axis goes last among shrinking axes and first among growing ones. */
        for (size_t k = first; k < n_pass; k++) {
            if ((size_t)kr->order[k] != r - 1)
                continue;
            if (grow == 0) {
                memmove(&kr->order[k], &kr->order[k + 1], (n_pass - 1 - k) * sizeof(int64_t));
                kr->order[n_pass - 1] = (int64_t)(r - 1);
            } else {
                memmove(&kr->order[first + 1], &kr->order[first], (k - first) * sizeof(int64_t));
                kr->order[first] = (int64_t)(r - 1);
            }
            break;
        }
    }
    kr->n_pass = (int64_t)n_pass;
    int64_t cur[VEIL__ENGINE_RANK];
    uint64_t biggest = 0;
    memcpy(cur, c->in[0].dims, r * sizeof(int64_t));
    for (size_t p = 0; p + 1 < n_pass; p++) {
        cur[kr->order[p]] = c->out[0].dims[kr->order[p]];
        uint64_t ne = veil__engine_numel(cur, r);
        biggest = ne > biggest ? ne : biggest;
    }
    kr->buf_elems = (int64_t)biggest;
    veil_free(c->kp->ptr);
    c->kp->ptr = blk;
    blk = NULL;
    rc = VEIL_OK;
out:
    veil_free(blk);
    veil_free(acc);
    return rc;
}

veil_err veil__engine_resize_infer(struct veil__engine_ictx *c)
{
    static const char *const modes[] = {"nearest", "linear", "cubic"};
    static const char *const ctms[] = {
        "half_pixel",           "pytorch_half_pixel", "align_corners",       "asymmetric",
        "tf_half_pixel_for_nn", "tf_crop_and_resize", "half_pixel_symmetric"};
    static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    static const char *const policies[] = {"stretch", "not_larger", "not_smaller"};
    size_t r = c->in[0].rank;
    const char *mode = veil__engine_attr_s(c->n, "mode", "nearest");
    const char *ctm = veil__engine_attr_s(c->n, "coordinate_transformation_mode", "half_pixel");
    const char *nm = veil__engine_attr_s(c->n, "nearest_mode", "round_prefer_floor");
    const char *kar = veil__engine_attr_s(c->n, "keep_aspect_ratio_policy", "stretch");
    struct resize_cfg cf;
    double scales[VEIL__ENGINE_RANK], r0[VEIL__ENGINE_RANK], r1[VEIL__ENGINE_RANK];
    int64_t vals[VEIL__ENGINE_RANK];
    size_t ax[VEIL__ENGINE_RANK], nax = 0, n = 0;
    veil_err rc;
    if (c->in[0].dt != VEIL_DT_FLOAT)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "Resize of %s", veil_dtype_name(c->in[0].dt));
    cf.mode = name_index(mode, modes, 3);
    cf.ctm = name_index(ctm, ctms, 7);
    cf.nm = name_index(nm, nms, 4);
    cf.a = veil__engine_attr_f(c->n, "cubic_coeff_a", -0.75f);
    cf.excl = veil__engine_attr_i(c->n, "exclude_outside", 0) != 0;
    cf.antialias = veil__engine_attr_i(c->n, "antialias", 0) != 0;
    int policy = name_index(kar, policies, 3);
    if (cf.mode < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "mode '%s' (nearest, linear or cubic)", mode);
    if (cf.ctm < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "coordinate_transformation_mode '%s'", ctm);
    if (cf.nm < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "nearest_mode '%s'", nm);
    if (policy < 0)
        return veil_errf(c->eb, VEIL_E_INVALID,
                         "keep_aspect_ratio_policy '%s' (stretch, not_larger or not_smaller)", kar);
    if ((rc = resize_axes(c, r, ax, &nax)) != VEIL_OK)
        return rc;
    /*
     * Before opset 11 (Resize 10 and Upsample, see ir/legacy.c) coordinates were asymmetric and
     * nearest rounded down on an enlarged axis and up on a shrunk one (ONNX Runtime's
     * "simple" mode; ONNX's reference only defines whole enlargements, where both agree).
     */
    bool simple = c->opset < 11;
    if (simple)
        cf.ctm = CT_ASYMMETRIC;
    if (!isfinite(cf.a))
        return veil_errf(c->eb, VEIL_E_INVALID, "cubic_coeff_a is not finite");
    c->kp->resize.extrapolation = veil__engine_attr_f(c->n, "extrapolation_value", 0.0f);
    for (size_t i = 0; i < r; i++) {
        r0[i] = 0.0;
        r1[i] = 1.0;
        scales[i] = 1.0;
    }
    /*
     * roi only takes effect under tf_crop_and_resize: [start..., end...] over the axes
     * resized (all of them without the axes attribute).
     */
    if (cf.ctm == CT_CROP && veil__engine_has_input(c, 1) && c->in[1].numel > 0) {
        const struct veil__engine_tv *roi = &c->in[1];
        if ((roi->dt != VEIL_DT_FLOAT && roi->dt != VEIL_DT_DOUBLE) || roi->numel != 2 * nax)
            return veil_errf(c->eb, VEIL_E_INVALID, "roi must hold %zu floats", 2 * nax);
        for (size_t k = 0; k < nax; k++) {
            r0[ax[k]] = veil__engine_get_f64(roi, k);
            r1[ax[k]] = veil__engine_get_f64(roi, k + nax);
            if (!isfinite(r0[ax[k]]) || !isfinite(r1[ax[k]]))
                return veil_errf(c->eb, VEIL_E_INVALID, "roi is not finite");
        }
    }
    c->out[0] = c->in[0];
    if (veil__engine_has_input(c, 3) && c->in[3].numel > 0) {
        if ((rc = veil__engine_read_ints(&c->in[3], vals, VEIL__ENGINE_RANK, &n, c->eb)) != VEIL_OK)
            return rc;
        if (n != nax)
            return veil_errf(c->eb, VEIL_E_INVALID, "sizes has %zu values for %zu axes", n, nax);
        for (size_t k = 0; k < nax; k++)
            if (vals[k] < 0 || vals[k] > (1 << 24))
                return veil_errf(c->eb, VEIL_E_INVALID, "bad size");
        if (policy != KA_STRETCH) {
            if ((rc = keep_aspect(c, policy, ax, nax, vals, scales, c->out[0].dims)) != VEIL_OK)
                return rc;
        } else {
            for (size_t k = 0; k < nax; k++) {
                int64_t in = c->in[0].dims[ax[k]];
                c->out[0].dims[ax[k]] = vals[k];
                scales[ax[k]] = in > 0 ? (double)((float)vals[k] / (float)in) : 1.0;
            }
        }
    } else if (veil__engine_has_input(c, 2) && c->in[2].numel > 0) {
        if (c->in[2].dt != VEIL_DT_FLOAT || c->in[2].numel != nax)
            return veil_errf(c->eb, VEIL_E_INVALID, "scales must hold %zu floats", nax);
        for (size_t k = 0; k < nax; k++) {
            double s = ((const float *)c->in[2].data)[k];
            /*
             * floor(length * scale) under every mode, tf_crop_and_resize included: ONNX
             * Runtime and ONNX's reference implementation both size the output this way.
             */
            double d = floor((double)c->in[0].dims[ax[k]] * s);
            if (!(s > 0) || !isfinite(s) || !(d >= 0) || d > (1 << 24))
                return veil_errf(c->eb, VEIL_E_INVALID, "bad scale");
            scales[ax[k]] = s;
            c->out[0].dims[ax[k]] = (int64_t)d;
        }
    } else {
        return veil_errf(c->eb, VEIL_E_INVALID, "Resize needs scales or sizes");
    }
    for (size_t i = 0; i < r; i++)
        if (c->in[0].dims[i] == 0 && c->out[0].dims[i] > 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "axis %zu is empty and cannot be resized", i);
    c->out[0].numel = veil__engine_numel(c->out[0].dims, r);
    /*
     * align_corners is left out (ONNX's reference and ONNX Runtime define it differently), as
     * is antialias (ONNX Runtime filters through another path).
     */
    bool bil = cf.mode == RZ_LINEAR && cf.ctm != CT_CROP && cf.ctm != CT_ALIGN && !cf.antialias &&
               (r == 2 ||
                (r == 4 && scales[0] == 1.0 && scales[1] == 1.0 &&
                 c->out[0].dims[0] == c->in[0].dims[0] && c->out[0].dims[1] == c->in[0].dims[1]));
    for (size_t i = 0; bil && i < r; i++)
        bil = c->in[0].dims[i] > 0 && c->in[0].dims[i] <= INT32_MAX;
    c->kp->resize.bilinear = bil;
    if (bil)
        return bilinear_tables(c, cf.ctm, scales);
    return resize_tables(c, &cf, simple, scales, r0, r1);
}

/* The bytes of each of the two scratch buffers the passes alternate between. */
static size_t resize_buf_bytes(const struct veil__engine_kp_resize *kr)
{
    return ((size_t)kr->buf_elems * sizeof(float) + 63) & ~(size_t)63;
}

veil_err veil__engine_resize_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                     struct veil__engine_step *st)
{
    const struct veil__engine_kp_resize *kr = &st->kp.resize;
    size_t bufs = kr->n_pass >= 3 ? 2 : kr->n_pass == 2 ? 1 : 0, need;
    (void)eng;
    if (__builtin_mul_overflow(bufs, resize_buf_bytes(kr), &need))
        return veil_errf(c->eb, VEIL_E_LIMIT, "Resize scratch too large");
    if (need > st->scratch_bytes)
        st->scratch_bytes = need;
    return VEIL_OK;
}

/* One pass: src viewed as [outer, in, inner] resized on its middle axis into dst. */
struct rz_pass {
    const float *src;
    float *dst;
    const struct rz_axis *ax;
    uint64_t inner;
    float ext;
};

static void pass_rows(void *ud, uint64_t lo, uint64_t hi)
{
    const struct rz_pass *p = ud;
    const struct rz_axis *ax = p->ax;
    uint64_t inner = p->inner, out = (uint64_t)ax->out, in = (uint64_t)ax->in;
    uint64_t o = lo / out, x = lo % out;
    for (uint64_t u = lo; u < hi; u++) {
        const struct rz_entry *e = &ax->e[x];
        const float *w = ax->w + x * ax->taps;
        float *restrict d = p->dst + u * inner;
        const float *restrict s = p->src + (o * in + (uint64_t)e->start) * inner;
        if (e->n == 0) {
            float v = e->out ? p->ext : 0.0f;
            for (uint64_t i = 0; i < inner; i++)
                d[i] = v;
        } else if (inner == 1) {
            float acc = w[0] * s[0];
            for (uint32_t k = 1; k < e->n; k++)
                acc += w[k] * s[k];
            d[0] = acc;
        } else if (e->n == 1 && w[0] == 1.0f) {
            memcpy(d, s, inner * sizeof(float));
        } else {
            float w0 = w[0];
            for (uint64_t i = 0; i < inner; i++)
                d[i] = w0 * s[i];
            for (uint32_t k = 1; k < e->n; k++) {
                const float *restrict sk = s + k * inner;
                float wk = w[k];
                for (uint64_t i = 0; i < inner; i++)
                    d[i] += wk * sk[i];
            }
        }
        if (++x == out) {
            x = 0;
            o++;
        }
    }
}

/* Sets every output whose coordinate on some axis lies outside the crop to the value. */
static void fill_outside(const struct rz_tables *t, const int64_t *od, size_t r, float v, float *y)
{
    for (size_t a = 0; a < r; a++) {
        const struct rz_axis *ax = &t->ax[a];
        if (!ax->any_out)
            continue;
        uint64_t outer = veil__engine_numel(od, a),
                 inner = veil__engine_numel(od + a + 1, r - a - 1);
        for (uint64_t o = 0; o < outer; o++)
            for (int64_t x = 0; x < ax->out; x++) {
                if (!ax->e[x].out)
                    continue;
                float *d = y + (o * (uint64_t)ax->out + (uint64_t)x) * inner;
                for (uint64_t i = 0; i < inner; i++)
                    d[i] = v;
            }
    }
}

/* The bilinear path (see bilinear_coord): planes of the last two axes, one output row each. */
struct bil_job {
    const float *x;
    float *y;
    const struct rz_tables *t;
    int64_t oh, ow, iw, plane; /* output rows and columns; input row and plane lengths */
};

static void bilinear_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct bil_job *j = ud;
    for (uint64_t t = lo; t < hi; t++) {
        uint64_t p = t / (uint64_t)j->oh;
        const struct rz_bil *ey = &j->t->bil[0][t % (uint64_t)j->oh], *ex = j->t->bil[1];
        const float *r0 = j->x + p * (uint64_t)j->plane + (uint64_t)(ey->i0 * j->iw);
        const float *r1 = j->x + p * (uint64_t)j->plane + (uint64_t)(ey->i1 * j->iw);
        float wy0 = ey->w0, wy1 = ey->w1, *y = j->y + t * (uint64_t)j->ow;
        for (int64_t x = 0; x < j->ow; x++) {
            float wx0 = ex[x].w0, wx1 = ex[x].w1;
            /* One operation per statement: no contraction into fused multiply-adds. */
            float w00 = wx0 * wy0, w01 = wx1 * wy0, w10 = wx0 * wy1, w11 = wx1 * wy1;
            float v = w00 * r0[ex[x].i0];
            float t1 = w01 * r0[ex[x].i1];
            v = v + t1;
            t1 = w10 * r1[ex[x].i0];
            v = v + t1;
            t1 = w11 * r1[ex[x].i1];
            v = v + t1;
            y[x] = v;
        }
    }
}

veil_err veil__engine_resize_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp)
{
    const struct veil__engine_kp_resize *kr = &kp->resize;
    const struct rz_tables *t = kp->ptr;
    size_t r = c->in[0].rank, bb = resize_buf_bytes(kr);
    size_t bufs = kr->n_pass >= 3 ? 2 : kr->n_pass == 2 ? 1 : 0;
    uint8_t *own = NULL, *base = NULL;
    int64_t cur[VEIL__ENGINE_RANK];
    if (c->out[0].numel == 0)
        return VEIL_OK;
    if (kr->bilinear) {
        struct bil_job j = {c->in[0].data,
                            c->out[0].data,
                            t,
                            c->out[0].dims[r - 2],
                            c->out[0].dims[r - 1],
                            c->in[0].dims[r - 1],
                            c->in[0].dims[r - 2] * c->in[0].dims[r - 1]};
        veil__engine_parallel(c->out[0].numel / (uint64_t)j.ow, 4, bilinear_range, &j);
        return VEIL_OK;
    }
    if (kr->n_pass == 0) {
        memcpy(c->out[0].data, c->in[0].data, c->out[0].numel * sizeof(float));
        return VEIL_OK;
    }
    if (bufs > 0) {
        /* At plan time (constant folding) there is no run scratch. */
        if (c->sc != NULL) {
            base = c->sc->step_region;
        } else {
            base = own = veil_malloc(bufs * bb);
            if (own == NULL)
                return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for Resize");
        }
    }
    memcpy(cur, c->in[0].dims, r * sizeof(int64_t));
    const float *src = c->in[0].data;
    for (int64_t p = 0; p < kr->n_pass; p++) {
        size_t a = (size_t)kr->order[p];
        float *dst = p + 1 == kr->n_pass ? (float *)c->out[0].data
                                         : (float *)(void *)(base + (size_t)(p % 2) * bb);
        struct rz_pass j = {src, dst, &t->ax[a], veil__engine_numel(cur + a + 1, r - a - 1),
                            kr->extrapolation};
        cur[a] = t->ax[a].out;
        uint64_t rows = veil__engine_numel(cur, a + 1);
        uint64_t grain = 32768 / (j.inner * (t->ax[a].taps + 1)) + 1;
        veil__engine_parallel(rows, grain, pass_rows, &j);
        src = dst;
    }
    if (kr->fill)
        fill_outside(t, c->out[0].dims, r, kr->extrapolation, c->out[0].data);
    veil_free(own);
    return VEIL_OK;
}

/* ---- GridSample ---- */

enum { GS_LINEAR, GS_NEAREST, GS_CUBIC };
enum { GP_ZEROS, GP_BORDER, GP_REFLECTION };

/* Tap combinations of one grid point: 4 taps on each of at most 3 axes (cubic). */
#define GS_MAX_COMBOS 64

veil_err veil__engine_gridsample_infer(struct veil__engine_ictx *c)
{
    static const char *const modes[] = {"linear", "nearest", "cubic", "bilinear", "bicubic"};
    static const char *const pads[] = {"zeros", "border", "reflection"};
    const struct veil__engine_tv *x = &c->in[0], *g = &c->in[1];
    const char *mode = veil__engine_attr_s(c->n, "mode", c->opset < 20 ? "bilinear" : "linear");
    const char *pad = veil__engine_attr_s(c->n, "padding_mode", "zeros");
    if (x->dt != VEIL_DT_FLOAT || g->dt != VEIL_DT_FLOAT)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "GridSample of %s with a %s grid",
                         veil_dtype_name(x->dt), veil_dtype_name(g->dt));
    int m = name_index(mode, modes, 5), pm = name_index(pad, pads, 3);
    if (m < 0)
        return veil_errf(c->eb, VEIL_E_INVALID,
                         "mode '%s' (linear, nearest or cubic; bilinear, bicubic)", mode);
    if (pm < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "padding_mode '%s' (zeros, border or reflection)",
                         pad);
    m = m == 3 ? GS_LINEAR : m == 4 ? GS_CUBIC : m;
    if (x->rank < 3)
        return veil_errf(c->eb, VEIL_E_INVALID, "GridSample input of rank %zu (N, C, then axes)",
                         x->rank);
    size_t r = x->rank - 2;
    if (c->opset < 20 && r != 2)
        return veil_errf(c->eb, VEIL_E_INVALID,
                         "GridSample before opset 20 samples 4-D inputs, not %zu-D", x->rank);
    if (m == GS_CUBIC && r > 3)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "cubic GridSample over %zu axes (at most 3)",
                         r);
    if (g->rank != x->rank || g->dims[0] != x->dims[0] || g->dims[r + 1] != (int64_t)r)
        return veil_errf(c->eb, VEIL_E_INVALID,
                         "grid must be [N, out axes..., %zu] for an input of rank %zu", r, x->rank);
    c->out[0] = *x;
    for (size_t d = 0; d < r; d++)
        c->out[0].dims[2 + d] = g->dims[1 + d];
    c->out[0].numel = veil__engine_numel(c->out[0].dims, x->rank);
    for (size_t d = 0; d < r; d++)
        if (x->dims[2 + d] == 0 && c->out[0].numel > 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "GridSample of the empty axis %zu", d + 2);
    c->kp->gridsample.mode = m;
    c->kp->gridsample.padding = pm;
    c->kp->gridsample.align_corners = veil__engine_attr_i(c->n, "align_corners", 0) != 0;
    return VEIL_OK;
}

/*
 * Reflects x into [lo, hi] by the nearer border until it lies inside, as ONNX Runtime does in
 * float; far outside (where its integer count of reflections would overflow) the parity comes
 * from fmod instead. An axis of one position under align_corners (lo == hi) gives lo.
 */
static float gs_reflect(float x, float lo, float hi)
{
    float range = hi - lo, dx, rem;
    bool even;
    if (!(range > 0.0f) || (x >= lo && x <= hi))
        return range > 0.0f ? x : lo;
    dx = x < lo ? lo - x : x - hi;
    float q = dx / range;
    if (q < 16777216.0f) {
        int64_t n = (int64_t)q;
        rem = dx - (float)n * range;
        even = n % 2 == 0;
    } else {
        double m = fmod((double)dx, 2.0 * (double)range);
        even = m <= (double)range;
        rem = (float)(even ? m : m - (double)range);
    }
    float v = (x < lo) == even ? lo + rem : hi - rem;
    return v < lo ? lo : v > hi ? hi : v;
}

/* ONNX Runtime's cubic weights (a = -0.75) of the taps around a fraction t in [0, 1). */
static void gs_cubic(float t, float *w)
{
    const float a = -0.75f;
    float s = t + 1.0f, u = 1.0f - t, v = 2.0f - t;
    w[0] = ((a * s - 5.0f * a) * s + 8.0f * a) * s - 4.0f * a;
    w[1] = ((a + 2.0f) * t - (a + 3.0f)) * t * t + 1.0f;
    w[2] = ((a + 2.0f) * u - (a + 3.0f)) * u * u + 1.0f;
    w[3] = ((a * v - 5.0f * a) * v + 8.0f * a) * v - 4.0f * a;
}

struct gs_job {
    const float *x, *g;
    float *y;
    size_t r;
    int64_t c, pts;                /* channels; grid points per batch item */
    int64_t plane;                 /* elements of one input channel */
    int64_t in[VEIL__ENGINE_RANK]; /* input extents, spatial axes */
    int64_t st[VEIL__ENGINE_RANK]; /* their strides within a channel */
    int mode, pad;
    bool ac;
};

/*
 * The taps of one axis for normalised coordinate v: indices (inside the axis) and weights;
 * returns their count (0: every tap is padding under zeros), or -1 for a NaN result.
 */
static int gs_axis_taps(const struct gs_job *j, size_t d, float v, int64_t *idx, float *w)
{
    int64_t len = j->in[d];
    float lo = j->ac ? 0.0f : -0.5f, hi = j->ac ? (float)(len - 1) : (float)len - 0.5f;
    float x =
        j->ac ? (v + 1.0f) / 2.0f * (float)(len - 1) : ((v + 1.0f) * (float)len - 1.0f) / 2.0f;
    int64_t t0[4];
    float tw[4];
    int n;
    if (j->mode == GS_NEAREST)
        x = nearbyintf(x);
    if (isnan(x))
        return -1;
    /*
     * Padding applies to each tap (ONNX Runtime). Reflecting the point first instead gives
     * the same taps (the reflections are about whole or half positions) and keeps them near
     * the axis; beyond 8 positions out every tap is padding or the edge under zeros and
     * border, so the point stops there and its taps stay integers.
     */
    if (j->pad == GP_REFLECTION && (x < lo || x > hi)) {
        if (isinf(x))
            return -1;
        x = gs_reflect(x, lo, hi);
    }
    x = x < -8.0f ? -8.0f : x > (float)len + 8.0f ? (float)len + 8.0f : x;
    float fl = floorf(x);
    int64_t i0 = (int64_t)fl;
    if (j->mode == GS_NEAREST) {
        t0[0] = (int64_t)x;
        tw[0] = 1.0f;
        n = 1;
    } else if (j->mode == GS_LINEAR) {
        t0[0] = i0;
        t0[1] = i0 + 1;
        tw[0] = (float)(i0 + 1) - x;
        tw[1] = x - (float)i0;
        n = 2;
    } else {
        for (int k = 0; k < 4; k++)
            t0[k] = i0 - 1 + k;
        gs_cubic(x - (float)(i0 - 1) - 1.0f, tw);
        n = 4;
    }
    int m = 0;
    for (int k = 0; k < n; k++) {
        int64_t i = t0[k];
        if (i < 0 || i >= len) {
            if (j->pad == GP_ZEROS)
                continue;
            i = j->pad == GP_BORDER ? clamp_i64(i, 0, len - 1)
                                    : clamp_i64((int64_t)gs_reflect((float)i, lo, hi), 0, len - 1);
        }
        idx[m] = i;
        w[m++] = tw[k];
    }
    return m;
}

static void gs_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct gs_job *j = ud;
    for (uint64_t u = lo; u < hi; u++) {
        uint64_t n = u / (uint64_t)j->pts, p = u % (uint64_t)j->pts;
        const float *gp = j->g + u * j->r;
        int64_t off[GS_MAX_COMBOS];
        float wt[GS_MAX_COMBOS];
        size_t m = 1;
        bool nan = false;
        off[0] = 0;
        wt[0] = 1.0f;
        /* The grid's last axis lists coordinates innermost axis first: (x, y, z). */
        for (size_t d = 0; d < j->r && !nan; d++) {
            int64_t idx[4];
            float w[4];
            int k = gs_axis_taps(j, d, gp[j->r - 1 - d], idx, w);
            if (k < 0) {
                nan = true;
                break;
            }
            int64_t o2[GS_MAX_COMBOS];
            float w2[GS_MAX_COMBOS];
            size_t c2 = 0;
            for (size_t q = 0; q < m; q++)
                for (int t = 0; t < k; t++) {
                    o2[c2] = off[q] + idx[t] * j->st[d];
                    w2[c2++] = wt[q] * w[t];
                }
            memcpy(off, o2, c2 * sizeof(int64_t));
            memcpy(wt, w2, c2 * sizeof(float));
            m = c2;
        }
        for (int64_t ch = 0; ch < j->c; ch++) {
            const float *xc = j->x + ((int64_t)n * j->c + ch) * j->plane;
            float acc = 0.0f;
            if (nan) {
                acc = NAN;
            } else {
                for (size_t q = 0; q < m; q++)
                    acc += wt[q] * xc[off[q]];
            }
            j->y[((int64_t)n * j->c + ch) * j->pts + (int64_t)p] = acc;
        }
    }
}

veil_err veil__engine_gridsample_exec(struct veil__engine_kctx *c,
                                      const struct veil__engine_kparams *kp)
{
    struct gs_job j;
    memset(&j, 0, sizeof(j));
    if (c->out[0].numel == 0)
        return VEIL_OK;
    j.x = c->in[0].data;
    j.g = c->in[1].data;
    j.y = c->out[0].data;
    j.r = c->in[0].rank - 2;
    j.c = c->in[0].dims[1];
    j.pts = (int64_t)veil__engine_numel(c->out[0].dims + 2, j.r);
    j.plane = (int64_t)veil__engine_numel(c->in[0].dims + 2, j.r);
    memcpy(j.in, c->in[0].dims + 2, j.r * sizeof(int64_t));
    veil__engine_strides_of(j.in, j.r, j.st);
    j.mode = (int)kp->gridsample.mode;
    j.pad = (int)kp->gridsample.padding;
    j.ac = kp->gridsample.align_corners;
    uint64_t units = (uint64_t)c->in[0].dims[0] * (uint64_t)j.pts;
    veil__engine_parallel(units, 4096 / ((uint64_t)j.c * 4 + 1) + 1, gs_range, &j);
    return VEIL_OK;
}
