/*
 * The quantised operators (src/engine/ops/quant.c) on models built in the test, against naive
 * references that use ONNX Runtime's arithmetic, at shapes ONNX's node tests leave out:
 * ConvInteger and QLinearConv with groups, depthwise, padding, strides, dilations, batches,
 * odd channel counts, per-channel weight zero points and scales, u8 and s8 on both sides, 1-D
 * and 3-D, constant weights (oneDNN) and weights read at run time (C kernels);
 * MatMulInteger and QLinearMatMul with broadcast batches and per-column zero points;
 * QuantizeLinear and DequantizeLinear per axis, 16-bit and int32, ties and saturation; the
 * DynamicQuantizeLinear -> ConvInteger / MatMulInteger -> Cast -> Mul -> Add -> Relu pattern
 * fused into one step, bit for bit; QLinearConv feeding QLinearConv channels-last; the QDQ
 * form of a convolution fused into one int8 step with QLinearConv's result; and refusals of
 * malformed operands with the problem named.
 */
#include "harness.h"
#include "engine_test.h"
#include "model_builder.h"

#include "veil/engine.h"

#include <math.h>

enum { DT_F = 1, DT_U8 = 2, DT_S8 = 3, DT_S32 = 6 };

static size_t count(size_t rank, const int64_t *dims)
{
    size_t n = 1;
    for (size_t i = 0; i < rank; i++)
        n *= (size_t)dims[i];
    return n;
}

static size_t esize(int dt)
{
    return dt == DT_U8 || dt == DT_S8 ? 1 : 4;
}

static enum veil_dtype vdt(int dt)
{
    return dt == DT_F    ? VEIL_DT_FLOAT
           : dt == DT_U8 ? VEIL_DT_UINT8
           : dt == DT_S8 ? VEIL_DT_INT8
                         : VEIL_DT_INT32;
}

/* An initializer of ONNX type dt over data. */
static void init_t(struct mb *b, const char *name, int dt, size_t rank, const int64_t *dims,
                   const void *data)
{
    b->inits[b->n_inits++] =
        mb_tensor(b, name, dt, rank, dims, data, count(rank, dims) * esize(dt));
}

/* An operand: an initializer (constant) or a graph input fed at run time. */
struct operand {
    const char *name;
    int dt;
    size_t rank;
    int64_t dims[5];
    const void *data;
    bool input;
};

struct feed {
    struct veil_tensor t[16];
    size_t n;
};

static void add_operand(struct mb *b, struct feed *f, const struct operand *o)
{
    if (!o->input) {
        init_t(b, o->name, o->dt, o->rank, o->dims, o->data);
        return;
    }
    mb_input(b, o->name, o->dt, o->rank, o->dims);
    f->t[f->n++] = tensor_of(vdt(o->dt), o->rank, o->dims, o->data);
}

/* Loads b (released) and runs it on f; on success *out holds output 0 (caller releases). */
static veil_err run_model(struct mb *b, const struct feed *f, struct veil_tensor *out,
                          struct veil_errbuf *eb, bool profile, char *prof, size_t prof_len)
{
    struct veil_engine_model *m = NULL;
    struct veil_engine_options opt = {.threads = 2, .profile = profile};
    memset(out, 0, sizeof(*out));
    veil_err rc = mb_load(b, &opt, &m, eb);
    if (rc != VEIL_OK)
        return rc;
    rc = veil_engine_run(m, f->t, f->n, out, 1, eb);
    if (rc == VEIL_OK && profile) {
        struct veil_engine_prof_row rows[32];
        size_t n = 0, len = 0;
        uint64_t runs;
        double ms;
        prof[0] = '\0';
        if (veil_engine_model_profile(m, rows, 32, &n, &runs, &ms, eb) == VEIL_OK)
            for (size_t i = 0; i < n && i < 32 && len + 2 < prof_len; i++)
                len += (size_t)snprintf(prof + len, prof_len - len, "%s;", rows[i].op);
    }
    veil_engine_model_free(m);
    return rc;
}

static uint32_t g_seed = 12345;

static int32_t rnd_int(int32_t lo, int32_t hi)
{
    g_seed = g_seed * 1664525u + 1013904223u;
    return lo + (int32_t)((g_seed >> 8) % (uint32_t)(hi - lo + 1));
}

static void fill_q(void *p, size_t n, int dt)
{
    for (size_t i = 0; i < n; i++) {
        if (dt == DT_U8)
            ((uint8_t *)p)[i] = (uint8_t)rnd_int(0, 255);
        else
            ((int8_t *)p)[i] = (int8_t)rnd_int(-128, 127);
    }
}

static int32_t qget(const void *p, int dt, size_t i)
{
    return dt == DT_U8 ? ((const uint8_t *)p)[i] : ((const int8_t *)p)[i];
}

/* ONNX Runtime's requantisation: clamp in float, round half to even, add the zero point. */
static int32_t ref_requant(float v, int32_t zp, int32_t lo, int32_t hi)
{
    float flo = (float)(lo - zp), fhi = (float)(hi - zp);
    v = v > flo ? v : flo;
    v = v < fhi ? v : fhi;
    return (int32_t)nearbyintf(v) + zp;
}

/* ---- Convolutions ---- */

struct conv_cfg {
    int64_t n, c, m, g;
    size_t sp;
    int64_t in[3], k[3], st[3], pb[3], pe[3], dl[3];
    int xdt, wdt;
    bool wz_per_ch, w_input;
};

static void conv_out_dims(const struct conv_cfg *q, int64_t *out)
{
    for (size_t i = 0; i < q->sp; i++)
        out[i] = (q->in[i] + q->pb[i] + q->pe[i] - ((q->k[i] - 1) * q->dl[i] + 1)) / q->st[i] + 1;
}

/* The exact int32 sums of conv(x - xz, w - wz[oc]) into acc [N][M][out...]. */
static void ref_conv(const struct conv_cfg *q, const void *x, int32_t xz, const void *w,
                     const int32_t *wz, int32_t *acc)
{
    int64_t out[3] = {1, 1, 1}, in[3] = {1, 1, 1}, k[3] = {1, 1, 1}, st[3] = {1, 1, 1};
    int64_t pb[3] = {0, 0, 0}, dl[3] = {1, 1, 1};
    conv_out_dims(q, out);
    for (size_t i = 0; i < q->sp; i++) {
        in[i] = q->in[i];
        k[i] = q->k[i];
        st[i] = q->st[i];
        pb[i] = q->pb[i];
        dl[i] = q->dl[i];
    }
    int64_t cg = q->c / q->g, mg = q->m / q->g, sp_in = in[0] * in[1] * in[2];
    size_t o = 0;
    for (int64_t n = 0; n < q->n; n++)
        for (int64_t oc = 0; oc < q->m; oc++)
            for (int64_t a = 0; a < out[0]; a++)
                for (int64_t bb = 0; bb < out[1]; bb++)
                    for (int64_t cc = 0; cc < out[2]; cc++) {
                        int64_t s = 0;
                        for (int64_t ic = 0; ic < cg; ic++)
                            for (int64_t ka = 0; ka < k[0]; ka++)
                                for (int64_t kb = 0; kb < k[1]; kb++)
                                    for (int64_t kc = 0; kc < k[2]; kc++) {
                                        int64_t ia = a * st[0] - pb[0] + ka * dl[0];
                                        int64_t ib = bb * st[1] - pb[1] + kb * dl[1];
                                        int64_t ix = cc * st[2] - pb[2] + kc * dl[2];
                                        if (ia < 0 || ib < 0 || ix < 0 || ia >= in[0] ||
                                            ib >= in[1] || ix >= in[2])
                                            continue;
                                        int64_t ch = (oc / mg) * cg + ic;
                                        size_t xi = (size_t)((n * q->c + ch) * sp_in +
                                                             (ia * in[1] + ib) * in[2] + ix);
                                        size_t wi =
                                            (size_t)((((oc * cg + ic) * k[0] + ka) * k[1] + kb) *
                                                         k[2] +
                                                     kc);
                                        s += (int64_t)(qget(x, q->xdt, xi) - xz) *
                                             (qget(w, q->wdt, wi) - wz[oc]);
                                    }
                        acc[o++] = (int32_t)s;
                    }
}

/* The ConvInteger (or QLinearConv when ql) node's attributes for q. */
static VeilOnnx__NodeProto *conv_node(struct mb *b, const struct conv_cfg *q, const char *op,
                                      const char *ins)
{
    int64_t pads[6], st[3], dl[3];
    for (size_t i = 0; i < q->sp; i++) {
        pads[i] = q->pb[i];
        pads[i + q->sp] = q->pe[i];
        st[i] = q->st[i];
        dl[i] = q->dl[i];
    }
    return mb_node(b, op, ins, "y", 4, mb_attr_ints(b, "pads", 2 * q->sp, pads),
                   mb_attr_ints(b, "strides", q->sp, st), mb_attr_ints(b, "dilations", q->sp, dl),
                   mb_attr_i(b, "group", q->g));
}

struct conv_data {
    void *x, *w;
    int32_t xz, wz[64];
    size_t nx, nw, ny;
    int64_t xd[5], wd[5], yd[5];
};

static void conv_data_make(const struct conv_cfg *q, struct conv_data *d)
{
    memset(d, 0, sizeof(*d));
    int64_t out[3];
    conv_out_dims(q, out);
    d->xd[0] = q->n;
    d->xd[1] = q->c;
    d->wd[0] = q->m;
    d->wd[1] = q->c / q->g;
    d->yd[0] = q->n;
    d->yd[1] = q->m;
    for (size_t i = 0; i < q->sp; i++) {
        d->xd[2 + i] = q->in[i];
        d->wd[2 + i] = q->k[i];
        d->yd[2 + i] = out[i];
    }
    d->nx = count(2 + q->sp, d->xd);
    d->nw = count(2 + q->sp, d->wd);
    d->ny = count(2 + q->sp, d->yd);
    d->x = malloc(d->nx);
    d->w = malloc(d->nw);
    fill_q(d->x, d->nx, q->xdt);
    fill_q(d->w, d->nw, q->wdt);
    d->xz = q->xdt == DT_U8 ? rnd_int(0, 255) : rnd_int(-128, 127);
    for (int64_t i = 0; i < q->m; i++)
        d->wz[i] = q->wz_per_ch || i == 0 ? (q->wdt == DT_U8 ? rnd_int(0, 255) : rnd_int(-128, 127))
                                          : d->wz[0];
}

static void conv_data_free(struct conv_data *d)
{
    free(d->x);
    free(d->w);
}

/* One ConvInteger case: the engine's int32 result against the reference, exactly. */
static void conv_integer_case(const struct conv_cfg *q)
{
    struct conv_data d;
    conv_data_make(q, &d);
    int32_t *want = malloc(d.ny * 4);
    ref_conv(q, d.x, d.xz, d.w, d.wz, want);
    uint8_t xz8 = (uint8_t)d.xz, wz8[64];
    for (int64_t i = 0; i < q->m; i++)
        wz8[i] = (uint8_t)d.wz[i];
    struct mb b;
    struct feed f = {.n = 0};
    mb_init(&b);
    size_t r = 2 + q->sp;
    struct operand ox = {"x", q->xdt, r, {0}, d.x, true};
    struct operand ow = {"w", q->wdt, r, {0}, d.w, q->w_input};
    memcpy(ox.dims, d.xd, sizeof(ox.dims));
    memcpy(ow.dims, d.wd, sizeof(ow.dims));
    struct operand oxz = {"xz", q->xdt, 0, {0}, &xz8, false};
    struct operand owz = {"wz", q->wdt, q->wz_per_ch ? 1 : 0, {q->m}, wz8, false};
    add_operand(&b, &f, &ox);
    add_operand(&b, &f, &ow);
    add_operand(&b, &f, &oxz);
    add_operand(&b, &f, &owz);
    conv_node(&b, q, "ConvInteger", "x,w,xz,wz");
    mb_output(&b, "y", DT_S32, r, d.yd);
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    veil_err rc = run_model(&b, &f, &out, &eb, false, NULL, 0);
    if (rc != VEIL_OK)
        fprintf(stderr, "ConvInteger: %s\n", veil_errbuf_msg(&eb, rc));
    ASSERT_OK(rc);
    ASSERT_EQ_U64(out.nbytes, d.ny * 4);
    const int32_t *got = out.data;
    size_t bad = 0;
    for (size_t i = 0; i < d.ny; i++)
        if (got[i] != want[i] && bad++ < 3)
            fprintf(stderr, "ConvInteger %lldx%lld g%lld: element %zu is %d, want %d\n",
                    (long long)q->c, (long long)q->m, (long long)q->g, i, got[i], want[i]);
    ASSERT_EQ_U64(bad, 0);
    veil_tensor_release(&out);
    free(want);
    conv_data_free(&d);
}

TEST(conv_integer_against_reference)
{
    static const struct conv_cfg cases[] = {
        /* Batches, odd channels, 3x3 with padding; u8 both sides (oneDNN with a shift). */
        {2,
         5,
         7,
         1,
         2,
         {11, 9},
         {3, 3},
         {1, 1},
         {1, 1},
         {1, 1},
         {1, 1},
         DT_U8,
         DT_U8,
         false,
         false},
        /* Groups, strides, uneven padding, dilation, per-channel zero points, s8 source. */
        {1,
         6,
         9,
         3,
         2,
         {13, 10},
         {3, 2},
         {2, 1},
         {0, 1},
         {2, 1},
         {2, 1},
         DT_S8,
         DT_U8,
         true,
         false},
        /* Depthwise with per-channel weight zero points (scalar epilogue). */
        {2,
         16,
         16,
         16,
         2,
         {9, 8},
         {3, 3},
         {1, 2},
         {1, 1},
         {1, 0},
         {1, 1},
         DT_U8,
         DT_S8,
         true,
         false},
        /* Two groups of 16 channels: the vector epilogue with per-group window sums. */
        {1,
         64,
         32,
         2,
         2,
         {7, 6},
         {3, 3},
         {1, 1},
         {1, 1},
         {1, 1},
         {1, 1},
         DT_U8,
         DT_U8,
         true,
         false},
        /* 1x1, s8 weights without a zero point shift, 48 outputs (a partial tile). */
        {3,
         32,
         48,
         1,
         2,
         {5, 7},
         {1, 1},
         {1, 1},
         {0, 0},
         {0, 0},
         {1, 1},
         DT_U8,
         DT_S8,
         false,
         false},
        /* Weights read at run time: the C kernel. */
        {2, 5, 7, 1, 2, {11, 9}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, DT_U8, DT_U8, true, true},
        /* 1-D (oneDNN as a 2-D convolution of height 1) and 3-D (C kernel). */
        {2, 4, 6, 2, 1, {17}, {3}, {2}, {1}, {2}, {1}, DT_U8, DT_U8, true, false},
        {1,
         3,
         4,
         1,
         3,
         {5, 6, 7},
         {2, 3, 2},
         {1, 2, 1},
         {1, 0, 1},
         {0, 1, 1},
         {1, 1, 2},
         DT_S8,
         DT_S8,
         true,
         false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        conv_integer_case(&cases[i]);
}

/*
 * QLinearConv: requantised sums of conv + bias with per-channel weight scales, against the
 * reference (x_scale * w_scale[oc] / y_scale, ONNX Runtime's order); chained when chain: a
 * second QLinearConv (1x1, 8 outputs) reads the first's result, which then stays channels-last.
 */
static void qlinear_conv_case(const struct conv_cfg *q, int ydt, bool chain)
{
    struct conv_data d;
    conv_data_make(q, &d);
    int32_t *acc = malloc(d.ny * 4), bias[64];
    float ws[64], xs = 0.0173f, ys = 0.37f;
    uint8_t *y1 = malloc(d.ny);
    for (int64_t i = 0; i < q->m; i++) {
        bias[i] = rnd_int(-3000, 3000);
        ws[i] = 0.001f + 0.0001f * (float)i;
    }
    int32_t yz = ydt == DT_U8 ? 131 : -7, lo = ydt == DT_U8 ? 0 : -128,
            hi = ydt == DT_U8 ? 255 : 127;
    ref_conv(q, d.x, d.xz, d.w, d.wz, acc);
    size_t plane = d.ny / (size_t)(q->n * q->m);
    for (size_t i = 0; i < d.ny; i++) {
        int64_t oc = (int64_t)(i / plane) % q->m;
        float s = xs * ws[oc] / ys;
        y1[i] = (uint8_t)ref_requant((float)(acc[i] + bias[oc]) * s, yz, lo, hi);
    }
    /* The chained 1x1 convolution: 8 outputs, weights s8, per-tensor scales. */
    const int64_t m2 = 8;
    int8_t w2[8 * 64];
    int32_t w2z = 3, y2z = 100;
    float w2s = 0.02f, y2s = 0.5f;
    uint8_t *want2 = malloc((size_t)q->n * (size_t)m2 * plane);
    for (size_t i = 0; i < (size_t)(m2 * q->m); i++)
        w2[i] = (int8_t)rnd_int(-128, 127);
    for (int64_t n = 0; n < q->n; n++)
        for (int64_t o = 0; o < m2; o++)
            for (size_t p = 0; p < plane; p++) {
                int32_t s = 0;
                for (int64_t c = 0; c < q->m; c++)
                    s += (qget(y1, ydt, (size_t)(n * q->m + c) * plane + p) - yz) *
                         (w2[o * q->m + c] - w2z);
                want2[(size_t)(n * m2 + o) * plane + p] =
                    (uint8_t)ref_requant((float)s * (ys * w2s / y2s), y2z, 0, 255);
            }
    uint8_t xz8 = (uint8_t)d.xz, wz8[64], yz8 = (uint8_t)yz, w2z8 = (uint8_t)w2z,
            y2z8 = (uint8_t)y2z;
    for (int64_t i = 0; i < q->m; i++)
        wz8[i] = (uint8_t)d.wz[i];
    struct mb b;
    struct feed f = {.n = 0};
    mb_init(&b);
    size_t r = 2 + q->sp;
    int64_t one[1] = {1}, mdim[1] = {q->m}, w2d[4] = {m2, q->m, 1, 1}, y2d[5];
    struct operand ox = {"x", q->xdt, r, {0}, d.x, true};
    struct operand ow = {"w", q->wdt, r, {0}, d.w, q->w_input};
    memcpy(ox.dims, d.xd, sizeof(ox.dims));
    memcpy(ow.dims, d.wd, sizeof(ow.dims));
    add_operand(&b, &f, &ox);
    add_operand(&b, &f, &ow);
    mb_init_f(&b, "xs", 0, one, &xs);
    init_t(&b, "xz", q->xdt, 0, one, &xz8);
    mb_init_f(&b, "ws", 1, mdim, ws);
    init_t(&b, "wz", q->wdt, q->wz_per_ch ? 1 : 0, mdim, wz8);
    mb_init_f(&b, "ys", 0, one, &ys);
    init_t(&b, "yz", ydt, 0, one, &yz8);
    init_t(&b, "B", DT_S32, 1, mdim, bias);
    VeilOnnx__NodeProto *n1 = conv_node(&b, q, "QLinearConv", "x,xs,xz,w,ws,wz,ys,yz,B");
    memcpy(y2d, d.yd, sizeof(y2d));
    y2d[1] = m2;
    if (chain) {
        n1->output[0] = mb_str(&b, "y1");
        init_t(&b, "w2", DT_S8, 4, w2d, w2);
        init_t(&b, "w2z", DT_S8, 0, one, &w2z8);
        mb_init_f(&b, "w2s", 0, one, &w2s);
        mb_init_f(&b, "y2s", 0, one, &y2s);
        init_t(&b, "y2z", DT_U8, 0, one, &y2z8);
        mb_node(&b, "QLinearConv", "y1,ys,yz,w2,w2s,w2z,y2s,y2z", "y", 0);
        mb_output(&b, "y", DT_U8, r, y2d);
    } else {
        mb_output(&b, "y", ydt, r, d.yd);
    }
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    veil_err rc = run_model(&b, &f, &out, &eb, false, NULL, 0);
    if (rc != VEIL_OK)
        fprintf(stderr, "QLinearConv: %s\n", veil_errbuf_msg(&eb, rc));
    ASSERT_OK(rc);
    const uint8_t *want = chain ? want2 : y1;
    size_t ny = chain ? (size_t)q->n * (size_t)m2 * plane : d.ny, bad = 0;
    ASSERT_EQ_U64(out.nbytes, ny);
    for (size_t i = 0; i < ny; i++)
        if (((const uint8_t *)out.data)[i] != want[i] && bad++ < 3)
            fprintf(stderr, "QLinearConv%s: element %zu is %d, want %d\n", chain ? " chain" : "", i,
                    ((const uint8_t *)out.data)[i], want[i]);
    ASSERT_EQ_U64(bad, 0);
    veil_tensor_release(&out);
    free(acc);
    free(y1);
    free(want2);
    conv_data_free(&d);
}

TEST(qlinear_conv_against_reference)
{
    static const struct conv_cfg cases[] = {
        {2,
         5,
         7,
         1,
         2,
         {11, 9},
         {3, 3},
         {1, 1},
         {1, 1},
         {1, 1},
         {1, 1},
         DT_U8,
         DT_S8,
         false,
         false},
        {1,
         6,
         9,
         3,
         2,
         {13, 10},
         {3, 2},
         {2, 1},
         {0, 1},
         {2, 1},
         {2, 1},
         DT_S8,
         DT_U8,
         true,
         false},
        {2,
         32,
         32,
         32,
         2,
         {9, 8},
         {3, 3},
         {1, 1},
         {1, 1},
         {1, 1},
         {1, 1},
         DT_U8,
         DT_U8,
         true,
         false},
        {2, 5, 7, 1, 2, {11, 9}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, DT_U8, DT_S8, true, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        qlinear_conv_case(&cases[i], DT_U8, false);
        qlinear_conv_case(&cases[i], DT_S8, false);
        qlinear_conv_case(&cases[i], DT_U8, true);
    }
}

/* ---- Products ---- */

struct mm_cfg {
    size_t ar, br;
    int64_t ad[4], bd[4];
    int adt, bdt;
    bool bz_per_col, b_input;
};

/* Broadcast batch offsets of A and B for output batch t (dims padded to 2 batch axes). */
static void mm_batch(const struct mm_cfg *q, int64_t t, int64_t *ao, int64_t *bo, int64_t *nb)
{
    int64_t a[2] = {1, 1}, b[2] = {1, 1};
    for (size_t i = 0; i + 2 < q->ar; i++)
        a[2 - (q->ar - 2) + i] = q->ad[i];
    for (size_t i = 0; i + 2 < q->br; i++)
        b[2 - (q->br - 2) + i] = q->bd[i];
    int64_t o[2] = {a[0] > b[0] ? a[0] : b[0], a[1] > b[1] ? a[1] : b[1]};
    *nb = o[0] * o[1];
    int64_t i0 = t / o[1], i1 = t % o[1];
    *ao = (a[0] == 1 ? 0 : i0) * a[1] + (a[1] == 1 ? 0 : i1);
    *bo = (b[0] == 1 ? 0 : i0) * b[1] + (b[1] == 1 ? 0 : i1);
}

static void matmul_case(const struct mm_cfg *q, bool qlinear)
{
    int64_t rows = q->ad[q->ar - 2], k = q->ad[q->ar - 1], cols = q->bd[q->br - 1], nb, ao, bo;
    mm_batch(q, 0, &ao, &bo, &nb);
    size_t na = count(q->ar, q->ad), nbv = count(q->br, q->bd), ny = (size_t)(nb * rows * cols);
    uint8_t *a = malloc(na), *bm = malloc(nbv);
    fill_q(a, na, q->adt);
    fill_q(bm, nbv, q->bdt);
    int32_t az = q->adt == DT_U8 ? 120 : -5, bz[64], *want = malloc(ny * 4);
    uint8_t az8 = (uint8_t)az, bz8[64], yz8 = 77;
    float as = 0.05f, bs[64], ys = 3.5f;
    for (int64_t i = 0; i < cols; i++) {
        bz[i] = q->bz_per_col || i == 0 ? (q->bdt == DT_U8 ? rnd_int(0, 255) : rnd_int(-128, 127))
                                        : bz[0];
        bz8[i] = (uint8_t)bz[i];
        bs[i] = q->bz_per_col ? 0.01f + 0.001f * (float)i : 0.01f;
    }
    for (int64_t t = 0; t < nb; t++) {
        mm_batch(q, t, &ao, &bo, &nb);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                int32_t s = 0;
                for (int64_t x = 0; x < k; x++)
                    s += (qget(a, q->adt, (size_t)((ao * rows + r) * k + x)) - az) *
                         (qget(bm, q->bdt, (size_t)((bo * k + x) * cols + c)) - bz[c]);
                size_t at = (size_t)((t * rows + r) * cols + c);
                want[at] = qlinear ? ref_requant((float)s * (as * bs[c] / ys), 77, 0, 255) : s;
            }
    }
    struct mb b;
    struct feed f = {.n = 0};
    mb_init(&b);
    int64_t one[1] = {1}, cdim[1] = {cols}, yd[4];
    struct operand oa = {"a", q->adt, q->ar, {0}, a, true};
    struct operand ob = {"b", q->bdt, q->br, {0}, bm, q->b_input};
    memcpy(oa.dims, q->ad, sizeof(q->ad));
    memcpy(ob.dims, q->bd, sizeof(q->bd));
    add_operand(&b, &f, &oa);
    add_operand(&b, &f, &ob);
    init_t(&b, "az", q->adt, 0, one, &az8);
    init_t(&b, "bz", q->bdt, q->bz_per_col ? 1 : 0, cdim, bz8);
    size_t yr = q->ar > q->br ? q->ar : q->br;
    int64_t ab[2] = {1, 1}, bb[2] = {1, 1};
    for (size_t i = 0; i + 2 < q->ar; i++)
        ab[2 - (q->ar - 2) + i] = q->ad[i];
    for (size_t i = 0; i + 2 < q->br; i++)
        bb[2 - (q->br - 2) + i] = q->bd[i];
    for (size_t i = 0; i + 2 < yr; i++) {
        size_t j = 2 - (yr - 2) + i;
        yd[i] = ab[j] > bb[j] ? ab[j] : bb[j];
    }
    yd[yr - 2] = rows;
    yd[yr - 1] = cols;
    if (qlinear) {
        mb_init_f(&b, "as", 0, one, &as);
        mb_init_f(&b, "bs", 1, cdim, bs);
        mb_init_f(&b, "ys", 0, one, &ys);
        init_t(&b, "yz", DT_U8, 0, one, &yz8);
        mb_node(&b, "QLinearMatMul", "a,as,az,b,bs,bz,ys,yz", "y", 0);
        mb_output(&b, "y", DT_U8, yr, yd);
    } else {
        mb_node(&b, "MatMulInteger", "a,b,az,bz", "y", 0);
        mb_output(&b, "y", DT_S32, yr, yd);
    }
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    veil_err rc = run_model(&b, &f, &out, &eb, false, NULL, 0);
    if (rc != VEIL_OK)
        fprintf(stderr, "%s: %s\n", qlinear ? "QLinearMatMul" : "MatMulInteger",
                veil_errbuf_msg(&eb, rc));
    ASSERT_OK(rc);
    ASSERT_EQ_U64(out.nbytes, ny * (qlinear ? 1 : 4));
    size_t bad = 0;
    for (size_t i = 0; i < ny; i++) {
        int32_t g = qlinear ? ((const uint8_t *)out.data)[i] : ((const int32_t *)out.data)[i];
        if (g != want[i] && bad++ < 3)
            fprintf(stderr, "%s: element %zu is %d, want %d\n",
                    qlinear ? "QLinearMatMul" : "MatMulInteger", i, g, want[i]);
    }
    ASSERT_EQ_U64(bad, 0);
    veil_tensor_release(&out);
    free(a);
    free(bm);
    free(want);
}

TEST(matmul_integer_against_reference)
{
    static const struct mm_cfg cases[] = {
        /* Constant B: oneDNN over the flattened batch, per-column zero points. */
        {4, 2, {2, 3, 5, 37}, {37, 19}, DT_U8, DT_U8, true, false},
        {3, 2, {2, 7, 64}, {64, 48}, DT_S8, DT_S8, false, false},
        {2, 2, {1, 16}, {16, 33}, DT_U8, DT_S8, true, false},
        /* Broadcast batches and B read at run time: the C kernel. */
        {3, 3, {3, 4, 6}, {1, 6, 5}, DT_U8, DT_U8, true, true},
        {4, 3, {2, 1, 4, 6}, {3, 6, 5}, DT_S8, DT_U8, false, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        matmul_case(&cases[i], false);
        matmul_case(&cases[i], true);
    }
}

/* ---- QuantizeLinear, DequantizeLinear ---- */

TEST(quantize_dequantize_per_axis)
{
    /* x [2, 3, 4], per-axis on axis 1 and on axis -1, u8 and s8, and 16-bit per tensor. */
    const int64_t xd[3] = {2, 3, 4};
    float x[24];
    for (size_t i = 0; i < 24; i++)
        x[i] = (float)((int)i - 12) * 0.75f;
    /* Ties: 2.5 -> 2, 3.5 -> 4, -2.5 -> -2 (half to even); beyond the range saturates. */
    x[0] = 2.5f;
    x[1] = 3.5f;
    x[2] = -2.5f;
    x[3] = 1e9f;
    x[4] = -1e9f;
    for (int variant = 0; variant < 3; variant++) {
        int64_t axis = variant == 0 ? 1 : -1, len = variant == 0 ? 3 : 4;
        int zdt = variant == 1 ? DT_S8 : DT_U8;
        float sc[4] = {1.0f, 0.5f, 0.25f, 2.0f};
        uint8_t zp[4] = {0, 10, 128, 3};
        if (zdt == DT_S8) {
            zp[0] = (uint8_t)(int8_t)-3;
            zp[2] = (uint8_t)(int8_t)-128;
        }
        struct mb b;
        struct feed f = {.n = 0};
        mb_init(&b);
        b.opset = 13;
        int64_t sd[1] = {len};
        mb_input(&b, "x", DT_F, 3, xd);
        f.t[f.n++] = tensor_of(VEIL_DT_FLOAT, 3, xd, x);
        mb_init_f(&b, "s", 1, sd, sc);
        init_t(&b, "z", zdt, 1, sd, zp);
        mb_node(&b, "QuantizeLinear", "x,s,z", "q", 1, mb_attr_i(&b, "axis", axis));
        mb_node(&b, "DequantizeLinear", "q,s,z", "y", 1, mb_attr_i(&b, "axis", axis));
        mb_output(&b, "y", DT_F, 3, xd);
        struct veil_tensor out;
        struct veil_errbuf eb = {{0}};
        ASSERT_OK(run_model(&b, &f, &out, &eb, false, NULL, 0));
        int32_t lo = zdt == DT_U8 ? 0 : -128, hi = zdt == DT_U8 ? 255 : 127;
        for (size_t i = 0; i < 24; i++) {
            size_t ch = variant == 0 ? (i / 4) % 3 : i % 4;
            int32_t z = zdt == DT_U8 ? zp[ch] : (int8_t)zp[ch];
            int32_t q = ref_requant(x[i] / sc[ch], z, lo, hi);
            float want = (float)(q - z) * sc[ch];
            if (((const float *)out.data)[i] != want)
                fprintf(stderr, "variant %d element %zu: %g, want %g\n", variant, i,
                        (double)((const float *)out.data)[i], (double)want);
            ASSERT_TRUE(((const float *)out.data)[i] == want);
        }
        veil_tensor_release(&out);
    }
}

TEST(quantize_16_bit_and_dequantize_int32)
{
    const int64_t xd[1] = {6}, one[1] = {1};
    /* 123.25 / 0.5 = 246.5 rounds to the even 246. */
    float x[6] = {0.5f, 1.5f, -70000.0f, 70000.0f, 123.25f, -0.5f}, s = 0.5f;
    int16_t z16 = -100;
    struct mb b;
    struct feed f = {.n = 0};
    mb_init(&b);
    b.opset = 13;
    mb_input(&b, "x", DT_F, 1, xd);
    f.t[f.n++] = tensor_of(VEIL_DT_FLOAT, 1, xd, x);
    mb_init_f(&b, "s", 0, one, &s);
    b.inits[b.n_inits++] = mb_tensor(&b, "z", 5, 0, one, &z16, 2);
    mb_node(&b, "QuantizeLinear", "x,s,z", "y", 0);
    mb_output(&b, "y", 5, 1, xd);
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(run_model(&b, &f, &out, &eb, false, NULL, 0));
    const int16_t want[6] = {-99, -97, -32768, 32767, 146, -101};
    ASSERT_MEM_EQ(out.data, want, sizeof(want));
    veil_tensor_release(&out);

    int32_t xi[4] = {INT32_MAX, -5, 0, 100000};
    int32_t zi = 0;
    float si = 0.25f;
    mb_init(&b);
    f.n = 0;
    b.opset = 13;
    const int64_t d4[1] = {4};
    mb_input(&b, "x", DT_S32, 1, d4);
    f.t[f.n++] = tensor_of(VEIL_DT_INT32, 1, d4, xi);
    mb_init_f(&b, "s", 0, one, &si);
    init_t(&b, "z", DT_S32, 0, one, &zi);
    mb_node(&b, "DequantizeLinear", "x,s,z", "y", 0);
    mb_output(&b, "y", DT_F, 1, d4);
    ASSERT_OK(run_model(&b, &f, &out, &eb, false, NULL, 0));
    for (size_t i = 0; i < 4; i++)
        ASSERT_TRUE(((const float *)out.data)[i] == (float)xi[i] * si);
    veil_tensor_release(&out);
}

/* ---- The dynamic quantisation pattern ---- */

/* DynamicQuantizeLinear's scale and zero point as ONNX Runtime computes them. */
static void ref_dynq(const float *x, size_t n, float *scale, int32_t *zp)
{
    float mn = 0.0f, mx = 0.0f;
    for (size_t i = 0; i < n; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    float s = mx == mn ? 1.0f : (mx - mn) / 255.0f;
    float z = 0.0f - mn / s;
    z = z < 255.0f ? z : 255.0f;
    z = 0.0f < z ? z : 0.0f;
    *scale = s;
    *zp = (int32_t)nearbyintf(z);
}

/*
 * x [N, C, H, W] float -> DynamicQuantizeLinear -> ConvInteger (u8 weights with a zero point,
 * 3x3, padding 1) -> Cast -> Mul by (x_scale * w_scale) -> Add of a per-channel bias -> Relu,
 * as ONNX's dynamic quantisation writes it: one fused step whose output equals the reference
 * bit for bit. per_ch: the weight scale is per channel ([M, 1, 1], as a reshaped initializer).
 */
static void dynamic_conv_case(int64_t n, int64_t c, int64_t h, int64_t w, int64_t m, bool per_ch)
{
    struct conv_cfg q = {n,      c,      m,      1,     2,     {h, w}, {3, 3}, {1, 1},
                         {1, 1}, {1, 1}, {1, 1}, DT_U8, DT_U8, false,  false};
    int64_t xd[4] = {n, c, h, w}, wd[4] = {m, c, 3, 3}, one[1] = {1}, sd[3] = {m, 1, 1};
    size_t nx = count(4, xd), nw = count(4, wd), ny = (size_t)(n * m * h * w);
    float *x = malloc(nx * 4), *want = malloc(ny * 4), wsc[64], bias[64];
    uint8_t *xq = malloc(nx), *wq = malloc(nw), wz8 = 141;
    int32_t *acc = malloc(ny * 4), wz[64];
    uint32_t seed = 99;
    for (size_t i = 0; i < nx; i++)
        x[i] = rnd(&seed) * 3.0f + 0.4f;
    fill_q(wq, nw, DT_U8);
    for (int64_t i = 0; i < m; i++) {
        wsc[i] = per_ch ? 0.002f + 0.0003f * (float)i : 0.0021f;
        bias[i] = rnd(&seed);
        wz[i] = wz8;
    }
    float xs;
    int32_t xz;
    ref_dynq(x, nx, &xs, &xz);
    for (size_t i = 0; i < nx; i++)
        xq[i] = (uint8_t)ref_requant(x[i] / xs, xz, 0, 255);
    ref_conv(&q, xq, xz, wq, wz, acc);
    for (size_t i = 0; i < ny; i++) {
        int64_t oc = (int64_t)(i / (size_t)(h * w)) % m;
        float s = xs * wsc[oc], v = (float)acc[i];
        v = v * s;
        v = v + bias[oc];
        want[i] = v < 0.0f ? 0.0f : v;
    }
    struct mb b;
    struct feed f = {.n = 0};
    mb_init(&b);
    b.opset = 13;
    mb_input(&b, "x", DT_F, 4, xd);
    f.t[f.n++] = tensor_of(VEIL_DT_FLOAT, 4, xd, x);
    init_t(&b, "w", DT_U8, 4, wd, wq);
    init_t(&b, "wz", DT_U8, 0, one, &wz8);
    if (per_ch)
        mb_init_f(&b, "ws", 3, sd, wsc);
    else
        mb_init_f(&b, "ws", 0, one, wsc);
    mb_init_f(&b, "bias", 3, sd, bias);
    mb_node(&b, "DynamicQuantizeLinear", "x", "xq,xs,xz", 0);
    mb_node(&b, "Mul", "xs,ws", "scale", 0);
    mb_node(&b, "ConvInteger", "xq,w,xz,wz", "acc", 1,
            mb_attr_ints(&b, "pads", 4, (const int64_t[]){1, 1, 1, 1}));
    mb_node(&b, "Cast", "acc", "accf", 1, mb_attr_i(&b, "to", 1));
    mb_node(&b, "Mul", "accf,scale", "scaled", 0);
    mb_node(&b, "Add", "scaled,bias", "biased", 0);
    mb_node(&b, "Relu", "biased", "y", 0);
    int64_t yd[4] = {n, m, h, w};
    mb_output(&b, "y", DT_F, 4, yd);
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    char prof[512];
    veil_err rc = run_model(&b, &f, &out, &eb, true, prof, sizeof(prof));
    if (rc != VEIL_OK)
        fprintf(stderr, "dynamic conv: %s\n", veil_errbuf_msg(&eb, rc));
    ASSERT_OK(rc);
    ASSERT_EQ_U64(out.nbytes, ny * 4);
    size_t bad = 0;
    for (size_t i = 0; i < ny; i++)
        if (((const float *)out.data)[i] != want[i] && bad++ < 3)
            fprintf(stderr, "dynamic conv: element %zu is %.9g, want %.9g\n", i,
                    (double)((const float *)out.data)[i], (double)want[i]);
    ASSERT_EQ_U64(bad, 0);
    /* Cast, the second Mul, Add and Relu ran inside the convolution's step. */
    if (strstr(prof, "Cast") != NULL || strstr(prof, "Relu") != NULL)
        fprintf(stderr, "profile: %s\n", prof);
    ASSERT_TRUE(strstr(prof, "ConvInteger") != NULL);
    ASSERT_TRUE(strstr(prof, "Cast") == NULL && strstr(prof, "Relu") == NULL &&
                strstr(prof, "Add") == NULL);
    veil_tensor_release(&out);
    free(x);
    free(want);
    free(xq);
    free(wq);
    free(acc);
}

TEST(dynamic_quantized_conv_fused_exactly)
{
    dynamic_conv_case(1, 3, 20, 17, 16, false);
    dynamic_conv_case(2, 24, 9, 11, 40, true);
}

/* DynamicQuantizeLinear -> MatMulInteger (s8 weights) -> Cast -> Mul, bit for bit. */
TEST(dynamic_quantized_matmul_fused_exactly)
{
    const int64_t xd[3] = {2, 5, 40}, wd[2] = {40, 24}, one[1] = {1}, yd[3] = {2, 5, 24};
    float x[400], want[240], ws = 0.0123f;
    int8_t wq[960], wz8 = 0;
    uint8_t xq[400];
    uint32_t seed = 5;
    for (size_t i = 0; i < 400; i++)
        x[i] = rnd(&seed) * 2.0f - 0.3f;
    fill_q(wq, 960, DT_S8);
    float xs;
    int32_t xz;
    ref_dynq(x, 400, &xs, &xz);
    for (size_t i = 0; i < 400; i++)
        xq[i] = (uint8_t)ref_requant(x[i] / xs, xz, 0, 255);
    float s = xs * ws;
    for (size_t r = 0; r < 10; r++)
        for (size_t c = 0; c < 24; c++) {
            int32_t a = 0;
            for (size_t k = 0; k < 40; k++)
                a += (xq[r * 40 + k] - xz) * wq[k * 24 + c];
            want[r * 24 + c] = (float)a * s;
        }
    struct mb b;
    struct feed f = {.n = 0};
    mb_init(&b);
    mb_input(&b, "x", DT_F, 3, xd);
    f.t[f.n++] = tensor_of(VEIL_DT_FLOAT, 3, xd, x);
    init_t(&b, "w", DT_S8, 2, wd, wq);
    init_t(&b, "wz", DT_S8, 0, one, &wz8);
    mb_init_f(&b, "ws", 0, one, &ws);
    mb_node(&b, "DynamicQuantizeLinear", "x", "xq,xs,xz", 0);
    mb_node(&b, "Mul", "xs,ws", "scale", 0);
    mb_node(&b, "MatMulInteger", "xq,w,xz,wz", "acc", 0);
    mb_node(&b, "Cast", "acc", "accf", 1, mb_attr_i(&b, "to", 1));
    mb_node(&b, "Mul", "accf,scale", "y", 0);
    mb_output(&b, "y", DT_F, 3, yd);
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    char prof[512];
    ASSERT_OK(run_model(&b, &f, &out, &eb, true, prof, sizeof(prof)));
    ASSERT_MEM_EQ(out.data, want, sizeof(want));
    ASSERT_TRUE(strstr(prof, "MatMulInteger") != NULL && strstr(prof, "Cast") == NULL);
    veil_tensor_release(&out);
}

/* ---- QDQ ---- */

/*
 * QuantizeLinear -> DequantizeLinear -> Conv (weights and int32 bias each a DequantizeLinear
 * of constants, per-channel weight scales on axis 0) -> Relu -> QuantizeLinear, as ONNX
 * Runtime's quantiser writes it: one int8 step whose result is QLinearConv's (the bias added
 * to the int32 sums, requantised at x_scale * w_scale / y_scale), the Relu a floor at the
 * zero point. The profile shows no Conv: it ran inside the DequantizeLinear's step.
 */
TEST(qdq_conv_fused_as_qlinear)
{
    struct conv_cfg q = {2,      5,      16,     1,     2,     {9, 8}, {3, 3}, {1, 1},
                         {1, 1}, {1, 1}, {1, 1}, DT_U8, DT_S8, true,   false};
    int64_t xd[4] = {2, 5, 9, 8}, wd[4] = {16, 5, 3, 3}, one[1] = {1}, md[1] = {16};
    int64_t yd[4] = {2, 16, 9, 8};
    size_t nx = count(4, xd), nw = count(4, wd), ny = count(4, yd);
    float *x = malloc(nx * 4), xs = 0.031f, ys = 0.07f, wsc[16], bsc[16];
    uint8_t *xq = malloc(nx), xz8 = 119, yz8 = 9, *want = malloc(ny);
    int8_t *wq = malloc(nw), wz8[16];
    int32_t *acc = malloc(ny * 4), bias[16], wz[16] = {0}, bz[16] = {0};
    uint32_t seed = 41;
    for (size_t i = 0; i < nx; i++)
        x[i] = rnd(&seed) * 4.0f;
    fill_q(wq, nw, DT_S8);
    for (int i = 0; i < 16; i++) {
        wsc[i] = 0.003f + 0.0005f * (float)i;
        bsc[i] = xs * wsc[i];
        bias[i] = rnd_int(-800, 800);
        wz8[i] = 0;
    }
    for (size_t i = 0; i < nx; i++)
        xq[i] = (uint8_t)ref_requant(x[i] / xs, xz8, 0, 255);
    ref_conv(&q, xq, xz8, wq, wz, acc);
    for (size_t i = 0; i < ny; i++) {
        size_t oc = (i / 72) % 16;
        int32_t v = ref_requant((float)(acc[i] + bias[oc]) * (xs * wsc[oc] / ys), yz8, 0, 255);
        want[i] = (uint8_t)(v > yz8 ? v : yz8);
    }
    struct mb b;
    struct feed f = {.n = 0};
    mb_init(&b);
    b.opset = 13;
    mb_input(&b, "x", DT_F, 4, xd);
    f.t[f.n++] = tensor_of(VEIL_DT_FLOAT, 4, xd, x);
    mb_init_f(&b, "xs", 0, one, &xs);
    init_t(&b, "xz", DT_U8, 0, one, &xz8);
    init_t(&b, "wq", DT_S8, 4, wd, wq);
    mb_init_f(&b, "wsc", 1, md, wsc);
    init_t(&b, "wz", DT_S8, 1, md, wz8);
    init_t(&b, "bq", DT_S32, 1, md, bias);
    mb_init_f(&b, "bsc", 1, md, bsc);
    init_t(&b, "bz", DT_S32, 1, md, bz);
    mb_init_f(&b, "ys", 0, one, &ys);
    init_t(&b, "yz", DT_U8, 0, one, &yz8);
    mb_node(&b, "QuantizeLinear", "x,xs,xz", "q", 0);
    mb_node(&b, "DequantizeLinear", "q,xs,xz", "d", 0);
    mb_node(&b, "DequantizeLinear", "wq,wsc,wz", "w", 1, mb_attr_i(&b, "axis", 0));
    mb_node(&b, "DequantizeLinear", "bq,bsc,bz", "bias", 1, mb_attr_i(&b, "axis", 0));
    mb_node(&b, "Conv", "d,w,bias", "c", 1,
            mb_attr_ints(&b, "pads", 4, (const int64_t[]){1, 1, 1, 1}));
    mb_node(&b, "Relu", "c", "r", 0);
    mb_node(&b, "QuantizeLinear", "r,ys,yz", "y", 0);
    mb_output(&b, "y", DT_U8, 4, yd);
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    char prof[512];
    veil_err rc = run_model(&b, &f, &out, &eb, true, prof, sizeof(prof));
    if (rc != VEIL_OK)
        fprintf(stderr, "QDQ conv: %s\n", veil_errbuf_msg(&eb, rc));
    ASSERT_OK(rc);
    ASSERT_EQ_U64(out.nbytes, ny);
    size_t bad = 0;
    for (size_t i = 0; i < ny; i++)
        if (((const uint8_t *)out.data)[i] != want[i] && bad++ < 3)
            fprintf(stderr, "QDQ conv: element %zu is %d, want %d\n", i,
                    ((const uint8_t *)out.data)[i], want[i]);
    ASSERT_EQ_U64(bad, 0);
    if (strstr(prof, "Conv") != NULL)
        fprintf(stderr, "profile: %s\n", prof);
    ASSERT_TRUE(strstr(prof, "Conv") == NULL);
    veil_tensor_release(&out);
    free(x);
    free(xq);
    free(want);
    free(wq);
    free(acc);
}

/* ---- Refusals ---- */

/* Loads and runs the model of b on f; returns the first error and leaves its text in eb. */
static veil_err first_error(struct mb *b, const struct feed *f, struct veil_errbuf *eb)
{
    struct veil_tensor out;
    veil_err rc = run_model(b, f, &out, eb, false, NULL, 0);
    if (rc == VEIL_OK)
        veil_tensor_release(&out);
    return rc;
}

TEST(malformed_operands_refused)
{
    const int64_t xd[2] = {2, 3}, one[1] = {1}, three[1] = {3}, two[1] = {2};
    float x[6] = {0}, s3[3] = {1, 1, 1}, s1 = 1.0f;
    uint8_t z3[3] = {0}, z2[2] = {0};
    int32_t zi = 0;
    struct mb b;
    struct feed f = {.n = 0};
    struct veil_errbuf eb = {{0}};
    struct {
        const char *why;
        veil_err rc;
    } want[] = {
        {"does not match", VEIL_E_INVALID},   {"must be float", VEIL_E_UNSUPPORTED},
        {"out of range", VEIL_E_INVALID},     {"needs opset 13", VEIL_E_INVALID},
        {"x_zero_point is", VEIL_E_INVALID},  {"must be float", VEIL_E_UNSUPPORTED},
        {"has 3 values", VEIL_E_INVALID},     {"B must hold", VEIL_E_INVALID},
        {"a_zero_point has", VEIL_E_INVALID}, {"y_scale is required", VEIL_E_INVALID},
        {"group 2 does not", VEIL_E_INVALID}, {"must be uint8 or int8", VEIL_E_UNSUPPORTED},
        {"has 3 inputs", VEIL_E_INVALID},
    };
    for (size_t t = 0; t < sizeof(want) / sizeof(want[0]); t++) {
        mb_init(&b);
        f.n = 0;
        b.opset = 13;
        memset(&eb, 0, sizeof(eb));
        switch (t) {
        case 0: /* a zero point of another shape than its scale */
            mb_input(&b, "x", DT_F, 2, xd);
            f.t[f.n++] = tensor_of(VEIL_DT_FLOAT, 2, xd, x);
            mb_init_f(&b, "s", 1, three, s3);
            init_t(&b, "z", DT_U8, 1, two, z2);
            mb_node(&b, "QuantizeLinear", "x,s,z", "y", 0);
            break;
        case 1: /* an integer scale */
            mb_input(&b, "x", DT_F, 2, xd);
            f.t[f.n++] = tensor_of(VEIL_DT_FLOAT, 2, xd, x);
            init_t(&b, "s", DT_S32, 0, one, &zi);
            mb_node(&b, "QuantizeLinear", "x,s", "y", 0);
            break;
        case 2: /* a per-axis scale on an axis out of range */
            mb_input(&b, "x", DT_F, 2, xd);
            f.t[f.n++] = tensor_of(VEIL_DT_FLOAT, 2, xd, x);
            mb_init_f(&b, "s", 1, three, s3);
            mb_node(&b, "QuantizeLinear", "x,s", "y", 1, mb_attr_i(&b, "axis", 5));
            break;
        case 3: /* per axis before opset 13 */
            b.opset = 10;
            mb_input(&b, "x", DT_F, 2, xd);
            f.t[f.n++] = tensor_of(VEIL_DT_FLOAT, 2, xd, x);
            mb_init_f(&b, "s", 1, three, s3);
            mb_node(&b, "QuantizeLinear", "x,s", "y", 0);
            break;
        case 4: /* DequantizeLinear with a zero point of another type than x */
            mb_input(&b, "x", DT_U8, 2, xd);
            f.t[f.n++] = tensor_of(VEIL_DT_UINT8, 2, xd, x);
            mb_init_f(&b, "s", 1, three, s3);
            init_t(&b, "z", DT_S8, 1, three, z3);
            mb_node(&b, "DequantizeLinear", "x,s,z", "y", 0);
            break;
        case 5: /* DynamicQuantizeLinear of integers */
            mb_input(&b, "x", DT_S32, 2, xd);
            f.t[f.n++] = tensor_of(VEIL_DT_INT32, 2, xd, x);
            mb_node(&b, "DynamicQuantizeLinear", "x", "y,ys,yz", 0);
            break;
        case 6:    /* a weight zero point of 3 values for 2 output channels */
        case 7:    /* QLinearConv with a bias of the wrong length */
        case 10:   /* a group that does not divide the channels */
        case 11: { /* float weights */
            const int64_t cx[4] = {1, 3, 4, 4}, cw[4] = {2, 3, 1, 1};
            uint8_t wq[6] = {0};
            int32_t bias[3] = {0};
            mb_input(&b, "x", DT_U8, 4, cx);
            f.t[f.n++] = tensor_of(VEIL_DT_UINT8, 4, cx, x);
            if (t == 11)
                mb_init_f(&b, "w", 4, cw, x);
            else
                init_t(&b, "w", DT_U8, 4, cw, wq);
            init_t(&b, "wz", DT_U8, 1, t == 6 ? three : two, z3);
            if (t == 7) {
                mb_init_f(&b, "s", 0, one, &s1);
                init_t(&b, "z", DT_U8, 0, one, z3);
                init_t(&b, "B", DT_S32, 1, three, bias);
                mb_node(&b, "QLinearConv", "x,s,z,w,s,wz,s,z,B", "y", 0);
            } else {
                mb_node(&b, "ConvInteger", "x,w,,wz", "y", 1,
                        mb_attr_i(&b, "group", t == 10 ? 2 : 1));
            }
            break;
        }
        case 8:    /* a per-row zero point of A */
        case 9:    /* QLinearMatMul without y_scale */
        case 12: { /* too few inputs */
            const int64_t ad[2] = {2, 3}, bd[2] = {3, 2};
            uint8_t bq[6] = {0};
            mb_input(&b, "a", DT_U8, 2, ad);
            f.t[f.n++] = tensor_of(VEIL_DT_UINT8, 2, ad, x);
            init_t(&b, "b", DT_U8, 2, bd, bq);
            init_t(&b, "az", DT_U8, 1, two, z2);
            mb_init_f(&b, "s", 0, one, &s1);
            init_t(&b, "z", DT_U8, 0, one, z3);
            if (t == 8)
                mb_node(&b, "MatMulInteger", "a,b,az", "y", 0);
            else if (t == 9)
                mb_node(&b, "QLinearMatMul", "a,s,z,b,s,z,,z", "y", 0);
            else
                mb_node(&b, "QLinearConv", "a,s,z", "y", 0);
            break;
        }
        }
        mb_output(&b, "y", 0, 0, NULL);
        veil_err rc = first_error(&b, &f, &eb);
        if (rc != want[t].rc || strstr(eb.msg, want[t].why) == NULL)
            fprintf(stderr, "case %zu: %s (%s), want \"%s\"\n", t, veil_err_str(rc), eb.msg,
                    want[t].why);
        ASSERT_ERR(rc, want[t].rc);
        ASSERT_STR_CONTAINS(eb.msg, want[t].why);
    }
}

RUN_TESTS()
