/*
 * Resize in plain C: nearest, linear and cubic modes over any number of axes, with the
 * half_pixel, pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nearest and
 * tf_crop_and_resize coordinate transformations. Each axis gets a table of input taps and
 * weights at plan time; the run sums, for every output element, the products of the weights
 * over all combinations of its axes' taps. Bilinear resizing of the last two axes follows ONNX
 * Runtime's float arithmetic instead (see bilinear_coord).
 */
#include "engine_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- Resize (nearest, linear, cubic) ---- */

/*
 * One output coordinate of one axis: up to four input positions (clamped into the input,
 * which is ONNX's edge padding) with their weights, zero weights dropped. out marks a
 * coordinate outside the input under tf_crop_and_resize: every output that uses it is
 * extrapolation_value.
 */
struct resize_axis {
    int64_t i[4];
    float w[4];
    uint32_t n;
    bool out;
};

enum { RZ_NEAREST, RZ_LINEAR, RZ_CUBIC };
enum { CT_HALF_PIXEL, CT_PYTORCH, CT_ALIGN, CT_ASYMMETRIC, CT_TF_NN, CT_CROP };

struct resize_cfg {
    int mode, ctm, nm;
    double a;  /* cubic_coeff_a */
    bool excl; /* exclude_outside */
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

static void resize_tap(struct resize_axis *e, int64_t i, double w, int64_t in)
{
    if (w == 0.0)
        return;
    e->i[e->n] = i < 0 ? 0 : i >= in ? in - 1 : i;
    e->w[e->n++] = (float)w;
}

/* The taps of original coordinate xo on an axis of in > 0 elements. */
static void resize_entry(const struct resize_cfg *cf, double xo, int64_t in, struct resize_axis *e)
{
    double hi = (double)(in - 1);
    memset(e, 0, sizeof(*e));
    if (cf->ctm == CT_CROP && !(xo >= 0.0 && xo <= hi)) {
        e->out = true;
        return;
    }
    if (cf->mode == RZ_NEAREST) {
        /* Clamping first changes no result (the index is clamped anyway) and keeps the
         * conversion to an integer defined. */
        xo = xo < -1.0 ? -1.0 : xo > (double)in ? (double)in : xo;
        double fl = floor(xo), fr = xo - fl;
        int64_t ix;
        switch (cf->nm) {
        case 0:
            ix = fr == 0.5 ? (int64_t)fl : (int64_t)floor(xo + 0.5);
            break;
        case 1:
            ix = fr == 0.5 ? (int64_t)fl + 1 : (int64_t)floor(xo + 0.5);
            break;
        case 2:
            ix = (int64_t)fl;
            break;
        default:
            ix = (int64_t)ceil(xo);
            break;
        }
        resize_tap(e, ix, 1.0, in);
        return;
    }
    if (cf->mode == RZ_LINEAR) {
        xo = xo < 0.0 ? 0.0 : xo > hi ? hi : xo;
        int64_t i0 = (int64_t)floor(xo);
        double w = xo - (double)i0;
        resize_tap(e, i0, 1.0 - w, in);
        resize_tap(e, i0 + 1, w, in);
        return;
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
    double start = fl - 1.0;
    start = start < -2.0 ? -2.0 : start > (double)in - 2.0 ? (double)in - 2.0 : start;
    int64_t s0 = (int64_t)start;
    double c[4], sum = 0.0;
    cubic_coeffs(t, cf->a, c);
    if (cf->excl) {
        for (int k = 0; k < 4; k++) {
            if (s0 + k < 0 || s0 + k >= in)
                c[k] = 0.0;
            sum += c[k];
        }
        for (int k = 0; k < 4 && sum != 0.0; k++)
            c[k] /= sum;
    }
    for (int k = 0; k < 4; k++)
        resize_tap(e, s0 + k, c[k], in);
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
static float bilinear_coord(int ctm, int64_t x, int64_t out, float s)
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
    default:
        return (xf + 0.5f) / s - 0.5f;
    }
}

static void bilinear_entry(float xo, int64_t in, struct resize_axis *e)
{
    float hi = (float)(in - 1);
    memset(e, 0, sizeof(*e));
    xo = xo < hi ? xo : hi;
    xo = xo > 0.0f ? xo : 0.0f;
    int64_t i0 = (int64_t)xo < in - 1 ? (int64_t)xo : in - 1;
    int64_t i1 = i0 + 1 < in - 1 ? i0 + 1 : in - 1;
    e->n = 2;
    e->i[0] = i0;
    e->i[1] = i1;
    e->w[0] = i0 == i1 ? 0.5f : fabsf(xo - (float)i1);
    e->w[1] = i0 == i1 ? 0.5f : fabsf(xo - (float)i0);
}

veil_err veil__engine_resize_infer(struct veil__engine_ictx *c)
{
    static const char *const modes[] = {"nearest", "linear", "cubic"};
    static const char *const ctms[] = {"half_pixel", "pytorch_half_pixel",   "align_corners",
                                       "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize"};
    static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    size_t r = c->in[0].rank;
    const char *mode = veil__engine_attr_s(c->n, "mode", "nearest");
    const char *ctm = veil__engine_attr_s(c->n, "coordinate_transformation_mode", "half_pixel");
    const char *nm = veil__engine_attr_s(c->n, "nearest_mode", "round_prefer_floor");
    /* Opset 18's additions change the result: refused by name rather than ignored. */
    if (veil__engine_attr_i(c->n, "antialias", 0) != 0)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "antialias=1 (opset 18)");
    if (veil__engine_attr_get(c->n, "axes") != NULL)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "the axes attribute (opset 18)");
    const char *kar = veil__engine_attr_s(c->n, "keep_aspect_ratio_policy", "stretch");
    if (strcmp(kar, "stretch") != 0)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "keep_aspect_ratio_policy '%s' (opset 18)",
                         kar);
    struct resize_cfg cf;
    double scales[VEIL__ENGINE_RANK], r0[VEIL__ENGINE_RANK], r1[VEIL__ENGINE_RANK];
    int64_t sizes[VEIL__ENGINE_RANK];
    size_t n;
    veil_err rc;
    if (c->in[0].dt != VEIL_DT_FLOAT)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "Resize of %s", veil_dtype_name(c->in[0].dt));
    cf.mode = name_index(mode, modes, 3);
    cf.ctm = name_index(ctm, ctms, 6);
    cf.nm = name_index(nm, nms, 4);
    cf.a = veil__engine_attr_f(c->n, "cubic_coeff_a", -0.75f);
    cf.excl = veil__engine_attr_i(c->n, "exclude_outside", 0) != 0;
    if (cf.mode < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "mode '%s' (nearest, linear or cubic)", mode);
    if (cf.ctm < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "coordinate_transformation_mode '%s'", ctm);
    if (cf.nm < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "nearest_mode '%s'", nm);
    /*
     * Before opset 11 (Resize 10 and Upsample, see ir/legacy.c) coordinates were asymmetric and
     * nearest rounded down on an enlarged axis and up on a shrunk one (ONNX Runtime's
     * "simple" mode; ONNX's reference only defines whole enlargements, where both agree).
     */
    bool simple = c->opset < 11;
    if (simple)
        cf.ctm = name_index("asymmetric", ctms, 6);
    if (!isfinite(cf.a))
        return veil_errf(c->eb, VEIL_E_INVALID, "cubic_coeff_a is not finite");
    float ext = veil__engine_attr_f(c->n, "extrapolation_value", 0.0f);
    for (size_t i = 0; i < r; i++) {
        r0[i] = 0.0;
        r1[i] = 1.0;
    }
    /* roi only takes effect under tf_crop_and_resize: [start_1..start_r, end_1..end_r]. */
    if (cf.ctm == CT_CROP && veil__engine_has_input(c, 1) && c->in[1].numel > 0) {
        const struct veil__engine_tv *roi = &c->in[1];
        if ((roi->dt != VEIL_DT_FLOAT && roi->dt != VEIL_DT_DOUBLE) || roi->numel != 2 * r)
            return veil_errf(c->eb, VEIL_E_INVALID, "roi must hold %zu floats", 2 * r);
        for (size_t i = 0; i < r; i++) {
            r0[i] = veil__engine_get_f64(roi, i);
            r1[i] = veil__engine_get_f64(roi, i + r);
            if (!isfinite(r0[i]) || !isfinite(r1[i]))
                return veil_errf(c->eb, VEIL_E_INVALID, "roi is not finite");
        }
    }
    c->out[0] = c->in[0];
    if (veil__engine_has_input(c, 3) && c->in[3].numel > 0) {
        if ((rc = veil__engine_read_ints(&c->in[3], sizes, VEIL__ENGINE_RANK, &n, c->eb)) !=
            VEIL_OK)
            return rc;
        if (n != r)
            return veil_errf(c->eb, VEIL_E_INVALID, "sizes has %zu values for rank %zu", n, r);
        for (size_t i = 0; i < r; i++) {
            if (sizes[i] < 0 || sizes[i] > (1 << 24))
                return veil_errf(c->eb, VEIL_E_INVALID, "bad size");
            c->out[0].dims[i] = sizes[i];
            scales[i] =
                c->in[0].dims[i] > 0 ? (double)((float)sizes[i] / (float)c->in[0].dims[i]) : 1.0;
        }
    } else if (veil__engine_has_input(c, 2) && c->in[2].numel > 0) {
        if (c->in[2].dt != VEIL_DT_FLOAT || c->in[2].numel != r)
            return veil_errf(c->eb, VEIL_E_INVALID, "scales must hold %zu floats", r);
        for (size_t i = 0; i < r; i++) {
            scales[i] = ((const float *)c->in[2].data)[i];
            /*
             * floor(length * scale) under every mode, tf_crop_and_resize included: ONNX
             * Runtime and ONNX's reference implementation both size the output this way.
             */
            double d = floor((double)c->in[0].dims[i] * scales[i]);
            if (!(scales[i] > 0) || !isfinite(scales[i]) || !(d >= 0) || d > (1 << 24))
                return veil_errf(c->eb, VEIL_E_INVALID, "bad scale");
            c->out[0].dims[i] = (int64_t)d;
        }
    } else {
        return veil_errf(c->eb, VEIL_E_INVALID, "Resize needs scales or sizes");
    }
    uint64_t total = 0;
    for (size_t i = 0; i < r; i++) {
        if (c->in[0].dims[i] == 0 && c->out[0].dims[i] > 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "axis %zu is empty and cannot be resized", i);
        total += (uint64_t)c->out[0].dims[i];
    }
    struct resize_axis *tab = veil_allocarray(total + 1, sizeof(*tab));
    if (tab == NULL)
        return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for Resize tables");
    veil_free(c->kp->ptr);
    c->kp->ptr = tab;
    c->kp->resize.extrapolation = ext;
    /* align_corners is left out: ONNX's reference and ONNX Runtime define it differently. */
    bool bil = cf.mode == RZ_LINEAR && cf.ctm != CT_CROP && cf.ctm != CT_ALIGN &&
               (r == 2 ||
                (r == 4 && scales[0] == 1.0 && scales[1] == 1.0 &&
                 c->out[0].dims[0] == c->in[0].dims[0] && c->out[0].dims[1] == c->in[0].dims[1]));
    for (size_t i = 0; bil && i < r; i++)
        bil = c->in[0].dims[i] > 0 && c->in[0].dims[i] <= INT32_MAX;
    c->kp->resize.bilinear = bil;
    for (size_t i = 0; i < r; i++) {
        int64_t in = c->in[0].dims[i], out = c->out[0].dims[i];
        struct resize_cfg ax = cf;
        if (simple)
            ax.nm = scales[i] < 1.0 ? 3 : 2; /* ceil, floor */
        for (int64_t x = 0; x < out; x++) {
            if (bil && i + 2 >= r)
                bilinear_entry(bilinear_coord(ax.ctm, x, out, (float)scales[i]), in, &tab[x]);
            else
                resize_entry(&ax, resize_coord(ax.ctm, x, in, out, scales[i], r0[i], r1[i]), in,
                             &tab[x]);
        }
        tab += out;
    }
    return VEIL_OK;
}

struct resize_job {
    const float *x;
    float *y;
    size_t r;
    const int64_t *odims;
    const struct resize_axis *tabs[VEIL__ENGINE_RANK];
    int64_t ist[VEIL__ENGINE_RANK];
    float ext;
};

/* Each output is the sum over every combination of its axes' taps of the product of weights. */
static void resize_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct resize_job *j = ud;
    size_t r = j->r;
    for (uint64_t o = lo; o < hi; o++) {
        const struct resize_axis *e[VEIL__ENGINE_RANK];
        uint32_t k[VEIL__ENGINE_RANK];
        bool out = false, empty = false;
        uint64_t q = o;
        for (size_t i = r; i-- > 0;) {
            e[i] = &j->tabs[i][q % (uint64_t)j->odims[i]];
            q /= (uint64_t)j->odims[i];
            out = out || e[i]->out;
            empty = empty || e[i]->n == 0;
            k[i] = 0;
        }
        if (out || empty) {
            j->y[o] = out ? j->ext : 0.0f;
            continue;
        }
        double acc = 0;
        for (;;) {
            double w = 1;
            int64_t off = 0;
            for (size_t i = 0; i < r; i++) {
                w *= e[i]->w[k[i]];
                off += e[i]->i[k[i]] * j->ist[i];
            }
            acc += w * j->x[off];
            size_t i = r;
            while (i > 0 && ++k[i - 1] == e[i - 1]->n) {
                k[i - 1] = 0;
                i--;
            }
            if (i == 0)
                break;
        }
        j->y[o] = (float)acc;
    }
}

/* Planes of the bilinear path (see bilinear_coord), one output row per work item. */
static void bilinear_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct resize_job *j = ud;
    int64_t oh = j->odims[j->r - 2], ow = j->odims[j->r - 1];
    int64_t ih = j->ist[j->r - 2], plane = j->r == 4 ? j->ist[1] : 0;
    for (uint64_t t = lo; t < hi; t++) {
        uint64_t p = t / (uint64_t)oh;
        const struct resize_axis *ey = &j->tabs[j->r - 2][t % (uint64_t)oh];
        const float *r0 = j->x + p * (uint64_t)plane + (uint64_t)(ey->i[0] * ih);
        const float *r1 = j->x + p * (uint64_t)plane + (uint64_t)(ey->i[1] * ih);
        float wy0 = ey->w[0], wy1 = ey->w[1], *y = j->y + t * (uint64_t)ow;
        for (int64_t x = 0; x < ow; x++) {
            const struct resize_axis *ex = &j->tabs[j->r - 1][x];
            float wx0 = ex->w[0], wx1 = ex->w[1];
            /* One operation per statement: no contraction into fused multiply-adds. */
            float w00 = wx0 * wy0, w01 = wx1 * wy0, w10 = wx0 * wy1, w11 = wx1 * wy1;
            float v = w00 * r0[ex->i[0]];
            float t1 = w01 * r0[ex->i[1]];
            v = v + t1;
            t1 = w10 * r1[ex->i[0]];
            v = v + t1;
            t1 = w11 * r1[ex->i[1]];
            v = v + t1;
            y[x] = v;
        }
    }
}

veil_err veil__engine_resize_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp)
{
    struct resize_job j;
    const struct resize_axis *t = kp->ptr;
    memset(&j, 0, sizeof(j));
    j.x = c->in[0].data;
    j.y = c->out[0].data;
    j.r = c->in[0].rank;
    j.odims = c->out[0].dims;
    j.ext = kp->resize.extrapolation;
    veil__engine_strides_of(c->in[0].dims, j.r, j.ist);
    for (size_t i = 0; i < j.r; i++) {
        j.tabs[i] = t;
        t += c->out[0].dims[i];
    }
    if (kp->resize.bilinear && c->out[0].numel > 0) {
        uint64_t rows = c->out[0].numel / (uint64_t)c->out[0].dims[j.r - 1];
        veil__engine_parallel(rows, 4, bilinear_range, &j);
        return VEIL_OK;
    }
    veil__engine_parallel(c->out[0].numel, 256, resize_range, &j);
    return VEIL_OK;
}
