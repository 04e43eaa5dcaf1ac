/*
 * Quantised operators: QuantizeLinear, DequantizeLinear (per tensor and per axis),
 * DynamicQuantizeLinear and the integer products ConvInteger, MatMulInteger, QLinearConv and
 * QLinearMatMul, in ONNX Runtime's arithmetic (x / scale rounded half to even and saturated,
 * float(q - zp) * scale, float(acc + bias) * (sx * sw / sy) requantised; one rounding per
 * operation), so quantised models give its results bit for bit.
 *
 * With VNNI (exact u8 x s8 sums) and constant weights the products run on oneDNN's int8
 * primitives: the source zero point as a run-time oneDNN zero point, the weights made s8 at
 * plan time (u8 shifted by 128), int32 sums in the step's scratch. What the shift and the
 * weight zero points change is taken out by an epilogue over 16 x 16 tiles, k[oc] * S(p) with
 * S(p) the sum of x - xz over output p's window, which also scales or requantises and
 * transposes to NCHW. The prepares fuse the dynamic quantisation pattern after a product
 * (Cast -> Mul [-> Add] [-> Relu]), DequantizeLinear -> Conv/MatMul -> QuantizeLinear, and
 * channels-last hand-offs to convolutions; everything else runs on C kernels with the same
 * arithmetic.
 */
#include "engine_int.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#endif

/* Inputs of QLinearConv and QLinearMatMul, in ONNX order. */
enum { QX = 0, QXS, QXZ, QW, QWS, QWZ, QYS, QYZ, QB };

static bool has_in(const struct veil__engine_ictx *c, size_t i)
{
    return i < c->n_in && c->n->in[i] >= 0;
}

static bool kin(const struct veil__engine_kctx *c, size_t i)
{
    return i < c->n_in && c->n->in[i] >= 0;
}

static bool q8(enum veil_dtype dt)
{
    return dt == VEIL_DT_UINT8 || dt == VEIL_DT_INT8;
}

/* Integer types a quantised tensor may have: 8- and 16-bit, signed or not. */
static bool qint(enum veil_dtype dt)
{
    return q8(dt) || dt == VEIL_DT_UINT16 || dt == VEIL_DT_INT16;
}

static void q_range(enum veil_dtype dt, int32_t *lo, int32_t *hi)
{
    switch (dt) {
    case VEIL_DT_INT8:
        *lo = -128;
        *hi = 127;
        break;
    case VEIL_DT_UINT16:
        *lo = 0;
        *hi = 65535;
        break;
    case VEIL_DT_INT16:
        *lo = -32768;
        *hi = 32767;
        break;
    default:
        *lo = 0;
        *hi = 255;
        break;
    }
}

/* Element i of an 8-, 16- or 32-bit integer tensor. */
static int32_t get_i32(enum veil_dtype dt, const void *p, uint64_t i)
{
    switch (dt) {
    case VEIL_DT_UINT8:
        return ((const uint8_t *)p)[i];
    case VEIL_DT_INT8:
        return ((const int8_t *)p)[i];
    case VEIL_DT_UINT16:
        return ((const uint16_t *)p)[i];
    case VEIL_DT_INT16:
        return ((const int16_t *)p)[i];
    default:
        return ((const int32_t *)p)[i];
    }
}

static void put_q(enum veil_dtype dt, void *p, uint64_t i, int32_t v)
{
    switch (dt) {
    case VEIL_DT_INT8:
        ((int8_t *)p)[i] = (int8_t)v;
        break;
    case VEIL_DT_UINT16:
        ((uint16_t *)p)[i] = (uint16_t)v;
        break;
    case VEIL_DT_INT16:
        ((int16_t *)p)[i] = (int16_t)v;
        break;
    default:
        ((uint8_t *)p)[i] = (uint8_t)v;
        break;
    }
}

/* int32 arithmetic that wraps as the hardware does, where hostile data overflows it. */
static int32_t wadd(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static int32_t wmul(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a * (uint32_t)b);
}

/*
 * saturate(round_half_even(v) + zp) for v already divided or multiplied by the scale: clamped
 * in float first, as ONNX Runtime does, so a NaN gives the low bound and infinities the bounds.
 */
static int32_t requant1(float v, int32_t zp, int32_t lo, int32_t hi)
{
    float flo = (float)(lo - zp), fhi = (float)(hi - zp);
    v = v > flo ? v : flo;
    v = v < fhi ? v : fhi;
    return (int32_t)nearbyintf(v) + zp;
}

static bool have_avx512(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
}

/* oneDNN's int8 kernels are exact only with VNNI (see the top of the file). */
static bool dnnl_int8_exact(void)
{
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_vnni) ==
               (unsigned)dnnl_cpu_isa_avx512_core_vnni ||
           ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx2_vnni) == (unsigned)dnnl_cpu_isa_avx2_vnni;
}

static int64_t norm_axis(int64_t axis, size_t rank)
{
    return axis < 0 ? axis + (int64_t)rank : axis;
}

/*
 * A run's work space of `bytes` bytes: the step's scratch region during a run (its size was
 * reserved at plan time), or an allocation while constants are folded at plan time (*tmp,
 * freed by the caller). NULL when that allocation fails.
 */
static void *workspace(const struct veil__engine_kctx *c, size_t bytes, void **tmp)
{
    *tmp = NULL;
    if (c->sc != NULL && c->st != NULL && c->st->scratch_bytes >= bytes)
        return c->sc->step_region;
    *tmp = veil_aligned_alloc(64, bytes + 64);
    return *tmp;
}

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

static void reserve_scratch(struct veil__engine_step *st, size_t bytes)
{
    if (st->scratch_bytes < bytes)
        st->scratch_bytes = bytes;
}

/* ---- QuantizeLinear, DequantizeLinear ---- */

/*
 * The scale (input 1) and zero point (input 2) against x: one value (per tensor) or, from
 * opset 13, a 1-D tensor of x.dims[axis] values (per axis). Sets kp->quant.len (values) and
 * kp->quant.inner (elements sharing one value in a row).
 */
static veil_err qdq_params(struct veil__engine_ictx *c, const char *sname, const char *zname)
{
    const struct veil__engine_tv *x = &c->in[0], *s = &c->in[1];
    if (!has_in(c, 1))
        return veil_errf(c->eb, VEIL_E_INVALID, "%s is required", sname);
    if (s->dt != VEIL_DT_FLOAT)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "%s must be float (has %s)", sname,
                         veil_dtype_name(s->dt));
    if (veil__engine_attr_i(c->n, "block_size", 0) != 0)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "blocked quantisation (block_size)");
    bool per_axis = s->rank > 1 || s->numel != 1;
    int64_t len = 1, inner = (int64_t)x->numel;
    if (per_axis) {
        if (s->rank != 1)
            return veil_errf(c->eb, VEIL_E_INVALID, "%s must be a scalar or 1-D (has rank %zu)",
                             sname, s->rank);
        if (c->opset < 13)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "a per-axis %s needs opset 13 (the model has %lld)", sname,
                             (long long)c->opset);
        int64_t a0 = veil__engine_attr_i(c->n, "axis", 1), axis = norm_axis(a0, x->rank);
        if (axis < 0 || axis >= (int64_t)x->rank)
            return veil_errf(c->eb, VEIL_E_INVALID, "axis %lld is out of range for rank %zu",
                             (long long)a0, x->rank);
        if (s->dims[0] != x->dims[axis])
            return veil_errf(c->eb, VEIL_E_INVALID, "%s has %lld values for axis %lld of size %lld",
                             sname, (long long)s->dims[0], (long long)axis,
                             (long long)x->dims[axis]);
        len = x->dims[axis];
        inner = 1;
        for (size_t i = (size_t)axis + 1; i < x->rank; i++)
            inner *= x->dims[i];
    }
    if (has_in(c, 2)) {
        const struct veil__engine_tv *z = &c->in[2];
        bool same = z->numel == s->numel && (per_axis ? z->rank == 1 : z->rank <= 1);
        if (!same)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "%s (%llu values, rank %zu) does not match %s (%llu values, rank %zu)",
                             zname, (unsigned long long)z->numel, z->rank, sname,
                             (unsigned long long)s->numel, s->rank);
    }
    c->kp->quant.len = len;
    c->kp->quant.inner = inner > 0 ? inner : 1;
    return VEIL_OK;
}

veil_err veil__engine_quantize_infer(struct veil__engine_ictx *c)
{
    const struct veil__engine_tv *x = &c->in[0];
    if (x->dt != VEIL_DT_FLOAT && x->dt != VEIL_DT_INT32)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "x must be float or int32 (has %s)",
                         veil_dtype_name(x->dt));
    enum veil_dtype odt = VEIL_DT_UINT8;
    if (has_in(c, 2)) {
        odt = c->in[2].dt;
    } else {
        int64_t want = veil__engine_attr_i(c->n, "output_dtype", 0);
        if (want != 0)
            odt = (enum veil_dtype)want;
    }
    if (!qint(odt))
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED,
                         "quantising to %s (uint8, int8, uint16 and int16 are supported)",
                         veil_dtype_name(odt));
    if (has_in(c, 2) && veil__engine_attr_i(c->n, "output_dtype", 0) != 0 &&
        veil__engine_attr_i(c->n, "output_dtype", 0) != (int64_t)odt)
        return veil_errf(c->eb, VEIL_E_INVALID, "output_dtype differs from the zero point's type");
    veil_err rc = qdq_params(c, "y_scale", "y_zero_point");
    if (rc != VEIL_OK)
        return rc;
    c->kp->quant.odt = odt;
    c->out[0] = *x;
    c->out[0].dt = odt;
    return VEIL_OK;
}

veil_err veil__engine_dequantize_infer(struct veil__engine_ictx *c)
{
    const struct veil__engine_tv *x = &c->in[0];
    if (!qint(x->dt) && x->dt != VEIL_DT_INT32)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED,
                         "x must be uint8, int8, uint16, int16 or int32 (has %s)",
                         veil_dtype_name(x->dt));
    if (has_in(c, 2) && c->in[2].dt != x->dt)
        return veil_errf(c->eb, VEIL_E_INVALID, "x_zero_point is %s but x is %s",
                         veil_dtype_name(c->in[2].dt), veil_dtype_name(x->dt));
    veil_err rc = qdq_params(c, "x_scale", "x_zero_point");
    if (rc != VEIL_OK)
        return rc;
    c->out[0] = *x;
    c->out[0].dt = VEIL_DT_FLOAT;
    return VEIL_OK;
}

/* One row of QuantizeLinear: out[i] = saturate(round(x[i] / scale) + zp). */
static void quant_row_c(const float *x, size_t n, float scale, int32_t zp, enum veil_dtype odt,
                        void *out, size_t off)
{
    int32_t lo, hi;
    q_range(odt, &lo, &hi);
    for (size_t i = 0; i < n; i++)
        put_q(odt, out, off + i, requant1(x[i] / scale, zp, lo, hi));
}

#if defined(__x86_64__)
AVX512 static void quant_row_512(const float *x, size_t n, float scale, int32_t zp, bool is_u8,
                                 uint8_t *out)
{
    int32_t lo = is_u8 ? 0 : -128, hi = is_u8 ? 255 : 127;
    __m512 vs = _mm512_set1_ps(scale), vlo = _mm512_set1_ps((float)(lo - zp)),
           vhi = _mm512_set1_ps((float)(hi - zp));
    __m512i vz = _mm512_set1_epi32(zp);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        /* max(v, lo) gives lo for a NaN v: the second operand wins, as in ONNX Runtime. */
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(m, x + i), vs);
        v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi);
        __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), vz);
        _mm512_mask_cvtepi32_storeu_epi8(out + i, m, q);
    }
}
#endif

static void quant_row(const float *x, size_t n, float scale, int32_t zp, enum veil_dtype odt,
                      void *out, size_t off, bool avx512)
{
#if defined(__x86_64__)
    if (avx512 && q8(odt)) {
        quant_row_512(x, n, scale, zp, odt == VEIL_DT_UINT8, (uint8_t *)out + off);
        return;
    }
#endif
    (void)avx512;
    quant_row_c(x, n, scale, zp, odt, out, off);
}

#if defined(__x86_64__)
AVX512 static void dequant_row_512(const uint8_t *p, size_t n, bool is_u8, int32_t zp, float scale,
                                   float *out)
{
    __m512 vs = _mm512_set1_ps(scale);
    __m512i vz = _mm512_set1_epi32(zp);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m128i b = _mm_maskz_loadu_epi8(m, p + i);
        __m512i q = is_u8 ? _mm512_cvtepu8_epi32(b) : _mm512_cvtepi8_epi32(b);
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, vz)), vs);
        _mm512_mask_storeu_ps(out + i, m, v);
    }
}
#endif

/* One row of DequantizeLinear: out[i] = float(q[i] - zp) * scale. */
static void dequant_row(enum veil_dtype dt, const void *q, size_t off, size_t n, int32_t zp,
                        float scale, float *out, bool avx512)
{
#if defined(__x86_64__)
    if (avx512 && q8(dt)) {
        dequant_row_512((const uint8_t *)q + off, n, dt == VEIL_DT_UINT8, zp, scale, out);
        return;
    }
#endif
    (void)avx512;
    if (dt == VEIL_DT_INT32) {
        for (size_t i = 0; i < n; i++)
            out[i] = (float)((int64_t)((const int32_t *)q)[off + i] - zp) * scale;
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(get_i32(dt, q, off + i) - zp) * scale;
}

struct qdq_job {
    const struct veil__engine_tv *x, *s, *z;
    struct veil__engine_tv *y;
    int64_t len, inner;
    bool quant, avx512;
};

static void qdq_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct qdq_job *j = ud;
    uint64_t inner = (uint64_t)j->inner;
    for (uint64_t i = lo; i < hi;) {
        uint64_t row = i / inner, end = (row + 1) * inner;
        if (end > hi)
            end = hi;
        uint64_t ch = row % (uint64_t)j->len;
        float scale = ((const float *)j->s->data)[ch];
        int32_t zp = j->z != NULL ? get_i32(j->z->dt, j->z->data, ch) : 0;
        if (!j->quant) {
            dequant_row(j->x->dt, j->x->data, (size_t)i, (size_t)(end - i), zp, scale,
                        (float *)j->y->data + i, j->avx512);
        } else if (j->x->dt == VEIL_DT_FLOAT) {
            quant_row((const float *)j->x->data + i, (size_t)(end - i), scale, zp, j->y->dt,
                      j->y->data, (size_t)i, j->avx512);
        } else {
            /* int32 x: converted to float in short pieces on the stack. */
            float buf[256];
            for (uint64_t p = i; p < end; p += 256) {
                size_t cnt = end - p < 256 ? (size_t)(end - p) : 256;
                for (size_t k = 0; k < cnt; k++)
                    buf[k] = (float)((const int32_t *)j->x->data)[p + k];
                quant_row(buf, cnt, scale, zp, j->y->dt, j->y->data, (size_t)p, j->avx512);
            }
        }
        i = end;
    }
}

veil_err veil__engine_dequantize_exec(struct veil__engine_kctx *c,
                                      const struct veil__engine_kparams *kp)
{
    struct qdq_job j = {&c->in[0],
                        &c->in[1],
                        kin(c, 2) ? &c->in[2] : NULL,
                        &c->out[0],
                        kp->quant.len,
                        kp->quant.inner,
                        strcmp(c->n->op_type, "QuantizeLinear") == 0,
                        have_avx512()};
    veil__engine_parallel(c->out[0].numel, 16384, qdq_range, &j);
    return VEIL_OK;
}

/* ---- 16 x 16 tiles (AVX-512) ---- */

#if defined(__x86_64__)
/* Transposes the 16 x 16 matrix of 32-bit lanes whose rows are r[0..15], in place. */
AVX512 static void transpose16(__m512i *r)
{
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* u[4q + j] holds, in 128-bit lane L, column 4L + j of rows 4q .. 4q + 3. */
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int j = 0; j < 4; j++) {
        __m512i x0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);
        __m512i x1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd);
        __m512i y0 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
        __m512i y1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
        r[j] = _mm512_shuffle_i32x4(x0, y0, 0x88);
        r[4 + j] = _mm512_shuffle_i32x4(x1, y1, 0x88);
        r[8 + j] = _mm512_shuffle_i32x4(x0, y0, 0xdd);
        r[12 + j] = _mm512_shuffle_i32x4(x1, y1, 0xdd);
    }
}

static __mmask16 mask16(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}
#endif

/*
 * Quantises the planes x[n][c][pix] (pixels pix in [p0, p1)) of an [N][C][P] float tensor into
 * the channels-last out[n][pix][c] (8-bit).
 */
struct nhwc_job {
    const float *x;
    uint8_t *out;
    int64_t n, ch, pix;
    float scale;
    int32_t zp;
    enum veil_dtype odt;
    bool avx512;
};

#if defined(__x86_64__)
AVX512 static void quant_nhwc_512(const struct nhwc_job *j, int64_t n, int64_t p0, int64_t p1)
{
    int32_t lo, hi;
    q_range(j->odt, &lo, &hi);
    __m512 vs = _mm512_set1_ps(j->scale), vlo = _mm512_set1_ps((float)(lo - j->zp)),
           vhi = _mm512_set1_ps((float)(hi - j->zp));
    __m512i vz = _mm512_set1_epi32(j->zp);
    const float *xb = j->x + n * j->ch * j->pix;
    uint8_t *ob = j->out + n * j->ch * j->pix;
    for (int64_t p = p0; p < p1; p += 16) {
        __mmask16 pm = mask16(p1 - p);
        for (int64_t c0 = 0; c0 < j->ch; c0 += 16) {
            __m512i r[16];
            for (int64_t k = 0; k < 16; k++) {
                if (c0 + k >= j->ch) {
                    r[k] = _mm512_setzero_si512();
                    continue;
                }
                __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(pm, xb + (c0 + k) * j->pix + p), vs);
                v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi);
                r[k] = _mm512_add_epi32(_mm512_cvtps_epi32(v), vz);
            }
            transpose16(r);
            __mmask16 cm = mask16(j->ch - c0);
            for (int64_t k = 0; k < 16 && p + k < p1; k++)
                _mm512_mask_cvtepi32_storeu_epi8(ob + (p + k) * j->ch + c0, cm, r[k]);
        }
    }
}
#endif

static void quant_nhwc_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct nhwc_job *j = ud;
    /* Work items are (image, block of 256 pixels). */
    int64_t blocks = (j->pix + 255) / 256;
    for (uint64_t t = lo; t < hi; t++) {
        int64_t n = (int64_t)t / blocks, p0 = ((int64_t)t % blocks) * 256;
        int64_t p1 = p0 + 256 < j->pix ? p0 + 256 : j->pix;
#if defined(__x86_64__)
        if (j->avx512) {
            quant_nhwc_512(j, n, p0, p1);
            continue;
        }
#endif
        int32_t qlo, qhi;
        q_range(j->odt, &qlo, &qhi);
        for (int64_t c = 0; c < j->ch; c++)
            for (int64_t p = p0; p < p1; p++)
                put_q(j->odt, j->out, (uint64_t)((n * j->pix + p) * j->ch + c),
                      requant1(j->x[(n * j->ch + c) * j->pix + p] / j->scale, j->zp, qlo, qhi));
    }
}

/*
 * Quantises float x (per tensor) into out: row-major, or channels-last when nhwc (x then 3-D
 * or more, [N][C][spatial...]).
 */
static void quantize_tensor(const struct veil__engine_tv *x, float scale, int32_t zp,
                            enum veil_dtype odt, void *out, bool nhwc)
{
    bool avx512 = have_avx512();
    if (nhwc) {
        int64_t pix = 1;
        for (size_t i = 2; i < x->rank; i++)
            pix *= x->dims[i];
        struct nhwc_job j = {x->data, out, x->dims[0], x->dims[1], pix, scale, zp, odt, avx512};
        veil__engine_parallel((uint64_t)(x->dims[0] * ((pix + 255) / 256)), 4, quant_nhwc_range,
                              &j);
        return;
    }
    struct veil__engine_tv s = {VEIL_DT_FLOAT, 0, {0}, 1, &scale};
    struct veil__engine_tv yv = *x;
    yv.dt = odt;
    yv.data = out;
    int32_t zv = zp;
    struct veil__engine_tv z = {VEIL_DT_INT32, 0, {0}, 1, &zv};
    struct qdq_job j = {x, &s, &z, &yv, 1, (int64_t)(x->numel > 0 ? x->numel : 1), true, avx512};
    veil__engine_parallel(x->numel, 16384, qdq_range, &j);
}

static bool nhwc_wanted(struct veil__engine_ictx *c, int32_t v);

/* Marks output 0 channels-last when its only reader is a convolution that wants it so. */
static void mark_nhwc(struct veil__engine_ictx *c)
{
    int32_t v = c->n->out[0];
    const struct veil__engine_tv *t = &c->vals[v].t;
    if (!nhwc_wanted(c, v))
        return;
    dnnl_dims_t d;
    for (size_t i = 0; i < t->rank; i++)
        d[i] = t->dims[i];
    dnnl_memory_desc_t md;
    if (dnnl_memory_desc_init_by_tag(&md, 4, d, t->dt == VEIL_DT_UINT8 ? dnnl_u8 : dnnl_s8,
                                     dnnl_nhwc) != dnnl_success)
        return;
    c->vals[v].blocked = true;
    c->vals[v].md = md;
    c->kp->quant.nhwc = true;
}

veil_err veil__engine_quantize_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                       struct veil__engine_step *st)
{
    (void)eng;
    (void)st;
    if (c->kp->quant.len == 1 && c->in[0].dt == VEIL_DT_FLOAT)
        mark_nhwc(c);
    return VEIL_OK;
}

veil_err veil__engine_quantize_exec(struct veil__engine_kctx *c,
                                    const struct veil__engine_kparams *kp)
{
    if (!kp->quant.nhwc)
        return veil__engine_dequantize_exec(c, kp);
    int32_t zp = kin(c, 2) ? get_i32(c->in[2].dt, c->in[2].data, 0) : 0;
    quantize_tensor(&c->in[0], *(const float *)c->in[1].data, zp, c->out[0].dt, c->out[0].data,
                    true);
    return VEIL_OK;
}

/* ---- DynamicQuantizeLinear ---- */

veil_err veil__engine_dynq_infer(struct veil__engine_ictx *c)
{
    if (c->in[0].dt != VEIL_DT_FLOAT)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "x must be float (has %s)",
                         veil_dtype_name(c->in[0].dt));
    c->out[0] = c->in[0];
    c->out[0].dt = VEIL_DT_UINT8;
    memset(&c->out[1], 0, sizeof(c->out[1]));
    c->out[1].dt = VEIL_DT_FLOAT;
    c->out[1].numel = 1;
    memset(&c->out[2], 0, sizeof(c->out[2]));
    c->out[2].dt = VEIL_DT_UINT8;
    c->out[2].numel = 1;
    return VEIL_OK;
}

veil_err veil__engine_dynq_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                   struct veil__engine_step *st)
{
    (void)eng;
    (void)st;
    mark_nhwc(c);
    return VEIL_OK;
}

/* The minimum and maximum of x (NaNs may or may not be skipped, as in ONNX Runtime). */
static void min_max(const float *x, uint64_t n, float *mn, float *mx)
{
    float lo = INFINITY, hi = -INFINITY;
    int nt = omp_get_max_threads();
    if (n < 65536 || omp_in_parallel())
        nt = 1;
#pragma omp parallel num_threads(nt) reduction(min : lo) reduction(max : hi)
    {
        uint64_t t = (uint64_t)omp_get_thread_num(), tn = (uint64_t)omp_get_num_threads();
        uint64_t a = n * t / tn, b = n * (t + 1) / tn;
        float l = INFINITY, h = -INFINITY;
        for (uint64_t i = a; i < b; i++) {
            l = x[i] < l ? x[i] : l;
            h = x[i] > h ? x[i] : h;
        }
        lo = l < lo ? l : lo;
        hi = h > hi ? h : hi;
    }
    *mn = lo;
    *mx = hi;
}

/*
 * The scale and zero point of DynamicQuantizeLinear over x as ONNX Runtime computes them: the
 * range is widened to hold 0, scale = (max - min) / 255 (1 for an all-zero range), and
 * zp = round(clamp(0 - min / scale, 0, 255)).
 */
static void dynq_params(const struct veil__engine_tv *x, float *scale, int32_t *zp)
{
    float mn = 0.0f, mx = 0.0f;
    if (x->numel > 0)
        min_max(x->data, x->numel, &mn, &mx);
    mn = mn < 0.0f ? mn : 0.0f;
    mx = mx > 0.0f ? mx : 0.0f;
    float s = mx == mn ? 1.0f : (mx - mn) / 255.0f;
    float z = 0.0f - mn / s;
    z = z < 255.0f ? z : 255.0f;
    z = 0.0f < z ? z : 0.0f;
    *scale = s;
    *zp = (int32_t)nearbyintf(z);
}

veil_err veil__engine_dynq_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    float scale;
    int32_t zp;
    dynq_params(&c->in[0], &scale, &zp);
    quantize_tensor(&c->in[0], scale, zp, VEIL_DT_UINT8, c->out[0].data, kp->quant.nhwc);
    if (c->n_out > 1 && c->out[1].data != NULL)
        *(float *)c->out[1].data = scale;
    if (c->n_out > 2 && c->out[2].data != NULL)
        *(uint8_t *)c->out[2].data = (uint8_t)zp;
    return VEIL_OK;
}

/* ---- ConvInteger, QLinearConv, MatMulInteger, QLinearMatMul: shapes ---- */

/* How results leave the int32 sums: as int32, as float(acc) * scale + bias, or requantised. */
enum fin_mode { FIN_S32, FIN_F32, FIN_Q8 };

/* kp->ptr of the integer products (one flat allocation, freed with the plan). */
struct qprod {
    bool conv, qlinear;
    /* Input slots, -1 where the operator has none or the input is absent. */
    int x, xz, w, wz, xs, ws, ys, yz, b;
    enum veil_dtype odt;
    /* Convolutions: [N][C][in] by [M][C/G][k], spatial dims padded to 3 with 1s. */
    int64_t n, ch, m, g;
    int64_t in[3], out[3], k[3], st[3], pb[3], dl[3];
    size_t sp;
    /* Products: rows (of A) by depth, by cols; batch dims broadcast as in MatMul. */
    int64_t rows, depth, cols;
    size_t br;
    int64_t ad[VEIL__ENGINE_RANK], bd[VEIL__ENGINE_RANK], od[VEIL__ENGINE_RANK];
    uint64_t batches;
    /* Prepared at plan time. */
    bool dnnl;     /* oneDNN computes the sums (the step's kernel state) */
    bool x_nhwc;   /* the convolution's source is stored channels-last */
    bool out_nhwc; /* the result is written channels-last (for the next convolution) */
    bool src_reorder;
    int64_t wshift; /* 128 where u8 weights were made s8, else 0 */
    size_t ex_main; /* the main primitive's index in the kernel state */
    size_t off_arr, off_src, off_acc, off_zp, off_psum, off_s; /* in the step scratch */
    /* The fused Cast -> Mul [-> Add] [-> Relu] (kctx inputs n_in, n_in + 1, n_in + 2). */
    bool fused, fbias, relu;
    /*
     * A fused DequantizeLinear -> Conv/MatMul -> QuantizeLinear: every parameter is constant,
     * so the per-channel arrays were made at plan time (tail, arr_bytes(m) bytes after the
     * struct); the result goes to the step's extra value 0. pre_lo is the low bound (the zero
     * point when a Relu was fused: requantisation is monotonic, so Relu is max(q, zp)).
     */
    bool pre;
    int32_t pre_zp, pre_lo;
};

static void *qprod_tail(const struct qprod *q)
{
    return (uint8_t *)(uintptr_t)q + ((sizeof(*q) + 63) & ~(size_t)63);
}

/* The step's parameters, reset; NULL when there is no memory for them. */
static struct qprod *qprod_new(struct veil__engine_ictx *c)
{
    struct qprod *q = c->kp->ptr;
    if (q == NULL) {
        q = veil_calloc(1, sizeof(*q));
        if (q == NULL)
            return NULL;
        c->kp->ptr = q;
    }
    memset(q, 0, sizeof(*q));
    q->x = q->xz = q->w = q->wz = q->xs = q->ws = q->ys = q->yz = q->b = -1;
    return q;
}

static int slot(const struct veil__engine_ictx *c, size_t i)
{
    return has_in(c, i) ? (int)i : -1;
}

/* A zero point: integer of the type of its data, one value or (when per > 1) per values. */
static veil_err check_zp(const struct veil__engine_ictx *c, int s, const char *name,
                         enum veil_dtype dt, int64_t per, const char *what)
{
    if (s < 0)
        return VEIL_OK;
    const struct veil__engine_tv *z = &c->in[s];
    if (z->dt != dt)
        return veil_errf(c->eb, VEIL_E_INVALID, "%s is %s but its data is %s", name,
                         veil_dtype_name(z->dt), veil_dtype_name(dt));
    if (z->numel == 1 && z->rank <= 1)
        return VEIL_OK;
    if (per > 1 && z->numel == (uint64_t)per && z->rank >= 1 && z->dims[z->rank - 1] == per)
        return VEIL_OK;
    return veil_errf(c->eb, VEIL_E_INVALID, "%s has %llu values (rank %zu); it must have 1%s%s",
                     name, (unsigned long long)z->numel, z->rank, per > 1 ? " or " : "",
                     per > 1 ? what : "");
}

/* A float scale of one value or (when per > 1) per values. */
static veil_err check_scale(const struct veil__engine_ictx *c, int s, const char *name, int64_t per,
                            const char *what)
{
    if (s < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "%s is required", name);
    const struct veil__engine_tv *t = &c->in[s];
    if (t->dt != VEIL_DT_FLOAT)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "%s must be float (has %s)", name,
                         veil_dtype_name(t->dt));
    if (t->numel == 1 && t->rank <= 1)
        return VEIL_OK;
    if (per > 1 && t->numel == (uint64_t)per && t->rank >= 1 && t->dims[t->rank - 1] == per)
        return VEIL_OK;
    return veil_errf(c->eb, VEIL_E_INVALID, "%s has %llu values (rank %zu); it must have 1%s%s",
                     name, (unsigned long long)t->numel, t->rank, per > 1 ? " or " : "",
                     per > 1 ? what : "");
}

static veil_err check_q8(const struct veil__engine_ictx *c, int s, const char *name)
{
    if (s < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "%s is required", name);
    if (!q8(c->in[s].dt))
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "%s must be uint8 or int8 (has %s)", name,
                         veil_dtype_name(c->in[s].dt));
    return VEIL_OK;
}

/* The QLinear operators' output type and scales (y_zero_point gives the type, uint8 without). */
static veil_err qlinear_out(struct veil__engine_ictx *c, struct qprod *q, int64_t per,
                            const char *what)
{
    veil_err rc;
    if ((rc = check_scale(c, q->xs, q->conv ? "x_scale" : "a_scale", 1, NULL)) != VEIL_OK ||
        (rc = check_scale(c, q->ws, q->conv ? "w_scale" : "b_scale", per, what)) != VEIL_OK ||
        (rc = check_scale(c, q->ys, "y_scale", 1, NULL)) != VEIL_OK)
        return rc;
    q->odt = VEIL_DT_UINT8;
    if (q->yz >= 0) {
        q->odt = c->in[q->yz].dt;
        if (!q8(q->odt))
            return veil_errf(c->eb, VEIL_E_UNSUPPORTED,
                             "y_zero_point must be uint8 or int8 (has %s)",
                             veil_dtype_name(q->odt));
        if ((rc = check_zp(c, q->yz, "y_zero_point", q->odt, 1, NULL)) != VEIL_OK)
            return rc;
    }
    return VEIL_OK;
}

/* ConvInteger, or (qlinear) QLinearConv's operands in its input order. */
static veil_err qconv_setup(struct veil__engine_ictx *c, bool qlinear)
{
    veil_err rc;
    struct qprod *q = qprod_new(c);
    if (q == NULL)
        return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for a kernel");
    q->conv = true;
    q->qlinear = qlinear;
    q->x = 0;
    if (q->qlinear) {
        q->xs = slot(c, QXS);
        q->xz = slot(c, QXZ);
        q->w = slot(c, QW);
        q->ws = slot(c, QWS);
        q->wz = slot(c, QWZ);
        q->ys = slot(c, QYS);
        q->yz = slot(c, QYZ);
        q->b = slot(c, QB);
    } else {
        q->w = slot(c, 1);
        q->xz = slot(c, 2);
        q->wz = slot(c, 3);
    }
    if ((rc = check_q8(c, q->x, "x")) != VEIL_OK || (rc = check_q8(c, q->w, "w")) != VEIL_OK)
        return rc;
    const struct veil__engine_tv *x = &c->in[q->x], *w = &c->in[q->w];
    size_t r = x->rank;
    if (r < 3 || r > 5 || w->rank != r)
        return veil_errf(c->eb, VEIL_E_INVALID, "x and w must have rank 3 to 5 (have %zu and %zu)",
                         r, w->rank);
    int64_t group = veil__engine_attr_i(c->n, "group", 1), ch = x->dims[1], m = w->dims[0];
    if (group < 1 || ch % group != 0 || m % group != 0)
        return veil_errf(c->eb, VEIL_E_INVALID,
                         "group %lld does not divide %lld input and %lld output channels",
                         (long long)group, (long long)ch, (long long)m);
    if (w->dims[1] * group != ch)
        return veil_errf(c->eb, VEIL_E_INVALID,
                         "w has %lld channels per group, x %lld in %lld groups",
                         (long long)w->dims[1], (long long)ch, (long long)group);
    const struct veil__engine_attr *ks =
        veil__engine_attr_typed(c->n, "kernel_shape", VEIL_ONNX_ATTR_INTS);
    if (ks != NULL && ks->n == r - 2)
        for (size_t i = 0; i < r - 2; i++)
            if (ks->ints[i] != w->dims[2 + i])
                return veil_errf(c->eb, VEIL_E_INVALID, "kernel_shape differs from w's shape");
    if ((rc = check_zp(c, q->xz, "x_zero_point", x->dt, 1, NULL)) != VEIL_OK ||
        (rc = check_zp(c, q->wz, "w_zero_point", w->dt, m, "one per output channel")) != VEIL_OK)
        return rc;
    if (q->qlinear) {
        if ((rc = qlinear_out(c, q, m, "one per output channel")) != VEIL_OK)
            return rc;
        if (q->b >= 0 && (c->in[q->b].dt != VEIL_DT_INT32 || c->in[q->b].numel != (uint64_t)m ||
                          c->in[q->b].rank != 1))
            return veil_errf(c->eb, VEIL_E_INVALID, "B must hold %lld int32 values", (long long)m);
    } else {
        q->odt = VEIL_DT_INT32;
    }
    for (size_t i = 2; i < r; i++)
        if (w->dims[i] < 1)
            return veil_errf(c->eb, VEIL_E_INVALID, "w has an empty kernel");
    struct veil__engine_kp_window win;
    memset(&win, 0, sizeof(win));
    if ((rc = veil__engine_pool_geometry(c, true, &w->dims[2], &win)) != VEIL_OK)
        return rc;
    c->out[0].dt = q->odt;
    c->out[0].dims[1] = m;
    q->sp = r - 2;
    q->n = x->dims[0];
    q->ch = ch;
    q->m = m;
    q->g = group;
    for (size_t i = 0; i < 3; i++) {
        bool real = i < q->sp;
        q->in[i] = real ? x->dims[2 + i] : 1;
        q->out[i] = real ? c->out[0].dims[2 + i] : 1;
        q->k[i] = real ? win.kernel[i] : 1;
        q->st[i] = real ? win.strides[i] : 1;
        q->pb[i] = real ? win.pads[i] : 0;
        q->dl[i] = real ? win.dilations[i] : 1;
    }
    return VEIL_OK;
}

static veil_err qmatmul_setup(struct veil__engine_ictx *c, bool qlinear)
{
    veil_err rc;
    struct qprod *q = qprod_new(c);
    if (q == NULL)
        return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for a kernel");
    q->qlinear = qlinear;
    q->x = 0;
    if (q->qlinear) {
        q->xs = slot(c, QXS);
        q->xz = slot(c, QXZ);
        q->w = slot(c, QW);
        q->ws = slot(c, QWS);
        q->wz = slot(c, QWZ);
        q->ys = slot(c, QYS);
        q->yz = slot(c, QYZ);
    } else {
        q->w = slot(c, 1);
        q->xz = slot(c, 2);
        q->wz = slot(c, 3);
    }
    if ((rc = check_q8(c, q->x, "A")) != VEIL_OK || (rc = check_q8(c, q->w, "B")) != VEIL_OK)
        return rc;
    const struct veil__engine_tv *a = &c->in[q->x], *b = &c->in[q->w];
    if (a->rank < 1 || b->rank < 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "a product of a scalar");
    /* Promote 1-D operands, broadcast the batch dims, then drop the promoted dims. */
    struct veil__engine_tv pa = *a, pb = *b;
    if (a->rank == 1) {
        pa.rank = 2;
        pa.dims[0] = 1;
        pa.dims[1] = a->dims[0];
    }
    if (b->rank == 1) {
        pb.rank = 2;
        pb.dims[0] = b->dims[0];
        pb.dims[1] = 1;
    }
    int64_t k = pa.dims[pa.rank - 1], cols = pb.dims[pb.rank - 1];
    if (pb.dims[pb.rank - 2] != k)
        return veil_errf(c->eb, VEIL_E_INVALID, "inner dimensions differ: %lld and %lld",
                         (long long)k, (long long)pb.dims[pb.rank - 2]);
    struct veil__engine_tv ba = pa, bb = pb;
    ba.rank -= 2;
    bb.rank -= 2;
    size_t br;
    int64_t bd[VEIL__ENGINE_RANK];
    if ((rc = veil__engine_broadcast(&ba, &bb, &br, bd, c->eb)) != VEIL_OK)
        return rc;
    if ((rc = check_zp(c, q->xz, q->qlinear ? "a_zero_point" : "a_zero_point", a->dt, 1, NULL)) !=
            VEIL_OK ||
        (rc = check_zp(c, q->wz, "b_zero_point", b->dt, cols, "one per column")) != VEIL_OK)
        return rc;
    if (q->qlinear) {
        if ((rc = qlinear_out(c, q, cols, "one per column")) != VEIL_OK)
            return rc;
    } else {
        q->odt = VEIL_DT_INT32;
    }
    c->out[0].dt = q->odt;
    c->out[0].rank = 0;
    for (size_t i = 0; i < br; i++)
        c->out[0].dims[c->out[0].rank++] = bd[i];
    if (a->rank > 1)
        c->out[0].dims[c->out[0].rank++] = pa.dims[pa.rank - 2];
    if (b->rank > 1)
        c->out[0].dims[c->out[0].rank++] = cols;
    q->rows = pa.dims[pa.rank - 2];
    q->depth = k;
    q->cols = cols;
    q->br = br;
    q->batches = 1;
    for (size_t i = 0; i < br; i++) {
        q->ad[i] = i + ba.rank >= br ? ba.dims[i + ba.rank - br] : 1;
        q->bd[i] = i + bb.rank >= br ? bb.dims[i + bb.rank - br] : 1;
        q->od[i] = bd[i];
        q->batches *= (uint64_t)bd[i];
    }
    q->m = cols;
    return VEIL_OK;
}

veil_err veil__engine_qconv_infer(struct veil__engine_ictx *c)
{
    return qconv_setup(c, strcmp(c->n->op_type, "QLinearConv") == 0);
}

veil_err veil__engine_qmatmul_infer(struct veil__engine_ictx *c)
{
    return qmatmul_setup(c, strcmp(c->n->op_type, "QLinearMatMul") == 0);
}

/* ---- Integer products: per-channel parameters and the plain C kernels ---- */

/*
 * Per output channel (column for products), in the run's work space: kv = weight zero point
 * minus the shift the weights took (int32), ib = int32 bias, sc = float scale, fb = float bias.
 */
struct fin {
    enum fin_mode mode;
    enum veil_dtype odt;
    int32_t zp, lo, hi;
    bool relu, fbias;
    const int32_t *kv, *ib;
    const float *sc, *fb;
};

static size_t arr_len(int64_t m)
{
    return (size_t)(m + 15) & ~(size_t)15;
}

static size_t arr_bytes(int64_t m)
{
    return 4 * arr_len(m) * 4;
}

static float tv_f(const struct veil__engine_tv *t, int64_t i)
{
    return ((const float *)t->data)[t->numel == 1 ? 0 : i];
}

/* Fills f and its arrays at base (arr_bytes(q->m) bytes) for kctx c. */
static void fin_fill(const struct veil__engine_kctx *c, const struct qprod *q, void *base,
                     struct fin *f)
{
    size_t len = arr_len(q->m);
    int32_t *kv = base, *ib = kv + len;
    float *sc = (float *)(ib + len), *fb = sc + len;
    memset(f, 0, sizeof(*f));
    if (q->pre) {
        kv = qprod_tail(q);
        f->mode = FIN_Q8;
        f->odt = q->odt;
        q_range(q->odt, &f->lo, &f->hi);
        f->lo = q->pre_lo;
        f->zp = q->pre_zp;
        f->kv = kv;
        f->ib = kv + len;
        f->sc = (const float *)(kv + 2 * len);
        f->fb = f->sc + len;
        return;
    }
    f->mode = q->qlinear ? FIN_Q8 : q->fused ? FIN_F32 : FIN_S32;
    f->odt = q->odt;
    q_range(q->odt, &f->lo, &f->hi);
    f->zp = q->yz >= 0 ? get_i32(c->in[q->yz].dt, c->in[q->yz].data, 0) : 0;
    f->relu = q->relu;
    f->fbias = q->fbias;
    const struct veil__engine_tv *wz = q->wz >= 0 ? &c->in[q->wz] : NULL;
    const struct veil__engine_tv *s = q->fused ? &c->in[c->n_in] : NULL;
    const struct veil__engine_tv *b = q->fused && q->fbias ? &c->in[c->n_in + 1] : NULL;
    float xs = q->qlinear ? tv_f(&c->in[q->xs], 0) : 0.0f;
    float ys = q->qlinear ? tv_f(&c->in[q->ys], 0) : 0.0f;
    for (int64_t i = 0; i < (int64_t)len; i++) {
        bool real = i < q->m;
        int32_t z =
            real && wz != NULL ? get_i32(wz->dt, wz->data, wz->numel == 1 ? 0 : (uint64_t)i) : 0;
        kv[i] = real ? z - (int32_t)q->wshift : 0;
        ib[i] = real && q->b >= 0 ? ((const int32_t *)c->in[q->b].data)[i] : 0;
        sc[i] = 0.0f;
        fb[i] = 0.0f;
        if (!real)
            continue;
        if (q->qlinear)
            sc[i] = xs * tv_f(&c->in[q->ws], i) / ys;
        else if (s != NULL)
            sc[i] = tv_f(s, i);
        if (b != NULL)
            fb[i] = tv_f(b, i);
    }
    f->kv = kv;
    f->ib = ib;
    f->sc = sc;
    f->fb = fb;
}

/* Writes the result of sum acc for channel ch at out[idx]. */
static void fin_put(const struct fin *f, int64_t ch, int32_t acc, void *out, uint64_t idx)
{
    acc = wadd(acc, f->ib[ch]);
    if (f->mode == FIN_S32) {
        ((int32_t *)out)[idx] = acc;
        return;
    }
    /* One float operation at a time, as the separate ONNX nodes round (no fused multiply-add). */
    float v = (float)acc;
    v = v * f->sc[ch];
    if (f->mode == FIN_Q8) {
        put_q(f->odt, out, idx, requant1(v, f->zp, f->lo, f->hi));
        return;
    }
    if (f->fbias)
        v = v + f->fb[ch];
    if (f->relu)
        v = v < 0.0f ? 0.0f : v;
    ((float *)out)[idx] = v;
}

struct cconv_job {
    const struct qprod *q;
    const struct veil__engine_tv *x, *w;
    int64_t xst[5]; /* element strides of x: n, c, spatial 0..2 */
    int32_t xz;
    const struct fin *f;
    void *out;
};

/* One (image, output channel) plane per work item, every sum computed in full. */
static void cconv_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct cconv_job *j = ud;
    const struct qprod *q = j->q;
    int64_t cg = q->ch / q->g, mg = q->m / q->g;
    int64_t plane = q->out[0] * q->out[1] * q->out[2], kk = q->k[0] * q->k[1] * q->k[2];
    for (uint64_t t = lo; t < hi; t++) {
        int64_t n = (int64_t)t / q->m, oc = (int64_t)t % q->m, g = oc / mg;
        int32_t wz = j->f->kv[oc];
        uint64_t obase = (uint64_t)(n * q->m + oc) * (uint64_t)plane;
        for (int64_t o0 = 0; o0 < q->out[0]; o0++)
            for (int64_t o1 = 0; o1 < q->out[1]; o1++)
                for (int64_t o2 = 0; o2 < q->out[2]; o2++) {
                    int32_t acc = 0;
                    for (int64_t ic = 0; ic < cg; ic++) {
                        int64_t cx = g * cg + ic;
                        uint64_t wrow = (uint64_t)((oc * cg + ic) * kk);
                        for (int64_t k0 = 0; k0 < q->k[0]; k0++) {
                            int64_t i0 = o0 * q->st[0] - q->pb[0] + k0 * q->dl[0];
                            if (i0 < 0 || i0 >= q->in[0])
                                continue;
                            for (int64_t k1 = 0; k1 < q->k[1]; k1++) {
                                int64_t i1 = o1 * q->st[1] - q->pb[1] + k1 * q->dl[1];
                                if (i1 < 0 || i1 >= q->in[1])
                                    continue;
                                for (int64_t k2 = 0; k2 < q->k[2]; k2++) {
                                    int64_t i2 = o2 * q->st[2] - q->pb[2] + k2 * q->dl[2];
                                    if (i2 < 0 || i2 >= q->in[2])
                                        continue;
                                    int64_t xi = n * j->xst[0] + cx * j->xst[1] + i0 * j->xst[2] +
                                                 i1 * j->xst[3] + i2 * j->xst[4];
                                    uint64_t wi =
                                        wrow + (uint64_t)((k0 * q->k[1] + k1) * q->k[2] + k2);
                                    int32_t xv =
                                        get_i32(j->x->dt, j->x->data, (uint64_t)xi) - j->xz;
                                    int32_t wv = get_i32(j->w->dt, j->w->data, wi) - wz;
                                    acc = wadd(acc, wmul(xv, wv));
                                }
                            }
                        }
                    }
                    uint64_t idx = obase + (uint64_t)((o0 * q->out[1] + o1) * q->out[2] + o2);
                    fin_put(j->f, oc, acc, j->out, idx);
                }
    }
}

/* Element strides of the convolution source: row-major, or channels-last when stored so. */
static void conv_x_strides(const struct qprod *q, int64_t *xst)
{
    int64_t sp = q->in[0] * q->in[1] * q->in[2];
    if (q->x_nhwc) {
        xst[0] = sp * q->ch;
        xst[1] = 1;
        xst[2] = q->in[1] * q->in[2] * q->ch;
        xst[3] = q->in[2] * q->ch;
        xst[4] = q->ch;
    } else {
        xst[0] = sp * q->ch;
        xst[1] = sp;
        xst[2] = q->in[1] * q->in[2];
        xst[3] = q->in[2];
        xst[4] = 1;
    }
}

struct cmm_job {
    const struct qprod *q;
    const struct veil__engine_tv *a, *b;
    int32_t az;
    const struct fin *f;
    void *out;
};

/* One row of one batch per work item, 64 columns at a time. */
static void cmm_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct cmm_job *j = ud;
    const struct qprod *q = j->q;
    for (uint64_t t = lo; t < hi; t++) {
        uint64_t batch = t / (uint64_t)q->rows, r = t % (uint64_t)q->rows;
        uint64_t rem = batch, aoff = 0, boff = 0, as = 1, bs = 1;
        for (size_t d = q->br; d-- > 0;) {
            uint64_t idx = rem % (uint64_t)q->od[d];
            rem /= (uint64_t)q->od[d];
            if (q->ad[d] != 1)
                aoff += idx * as;
            if (q->bd[d] != 1)
                boff += idx * bs;
            as *= (uint64_t)q->ad[d];
            bs *= (uint64_t)q->bd[d];
        }
        uint64_t arow = (aoff * (uint64_t)q->rows + r) * (uint64_t)q->depth;
        uint64_t bbase = boff * (uint64_t)(q->depth * q->cols);
        uint64_t obase = (batch * (uint64_t)q->rows + r) * (uint64_t)q->cols;
        for (int64_t c0 = 0; c0 < q->cols; c0 += 64) {
            int64_t nc = q->cols - c0 < 64 ? q->cols - c0 : 64;
            int32_t acc[64];
            for (int64_t i = 0; i < nc; i++)
                acc[i] = 0;
            for (int64_t k = 0; k < q->depth; k++) {
                int32_t av = get_i32(j->a->dt, j->a->data, arow + (uint64_t)k) - j->az;
                uint64_t brow = bbase + (uint64_t)(k * q->cols + c0);
                for (int64_t i = 0; i < nc; i++) {
                    int32_t bv =
                        get_i32(j->b->dt, j->b->data, brow + (uint64_t)i) - j->f->kv[c0 + i];
                    acc[i] = wadd(acc[i], wmul(av, bv));
                }
            }
            for (int64_t i = 0; i < nc; i++)
                fin_put(j->f, c0 + i, acc[i], j->out, obase + (uint64_t)(c0 + i));
        }
    }
}

static void *qprod_out(const struct veil__engine_kctx *c, const struct qprod *q)
{
    return q->fused ? c->in[c->n_in + 2].data : q->pre ? c->in[c->n_in].data : c->out[0].data;
}

/* The plain C path of every integer product. */
static veil_err qprod_exec_c(struct veil__engine_kctx *c, const struct qprod *q)
{
    void *tmp;
    void *base = workspace(c, arr_bytes(q->m), &tmp);
    if (base == NULL)
        return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for a kernel's work space");
    struct fin f;
    fin_fill(c, q, base, &f);
    int32_t xz = q->xz >= 0 ? get_i32(c->in[q->xz].dt, c->in[q->xz].data, 0) : 0;
    if (q->conv) {
        struct cconv_job j = {q, &c->in[q->x], &c->in[q->w], {0}, xz, &f, qprod_out(c, q)};
        conv_x_strides(q, j.xst);
        veil__engine_parallel((uint64_t)(q->n * q->m), 1, cconv_range, &j);
    } else {
        struct cmm_job j = {q, &c->in[q->x], &c->in[q->w], xz, &f, qprod_out(c, q)};
        veil__engine_parallel(q->batches * (uint64_t)q->rows, 1, cmm_range, &j);
    }
    veil_aligned_free(tmp);
    return VEIL_OK;
}

/* ---- Integer products on oneDNN ---- */

/* Reorders constant data (layout src) into a new buffer of layout dst. */
static veil_err reorder_new(dnnl_engine_t eng, const dnnl_memory_desc_t *src, const void *data,
                            const dnnl_memory_desc_t *dst, void **out, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t ms = NULL, md = NULL;
    dnnl_stream_t stream = NULL;
    size_t sz = dnnl_memory_desc_get_size(dst);
    void *buf = veil__engine_big_alloc(sz > 0 ? sz : 64);
    *out = NULL;
    if (buf == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for weights");
    if ((rc = veil__engine_dnnl_err(
             dnnl_reorder_primitive_desc_create(&pd, src, eng, dst, eng, NULL), "weights reorder",
             eb)) != VEIL_OK ||
        (rc = veil__engine_dnnl_err(dnnl_primitive_create(&prim, pd), "weights reorder", eb)) !=
            VEIL_OK ||
        (rc = veil__engine_dnnl_err(dnnl_memory_create(&ms, src, eng, (void *)(uintptr_t)data),
                                    "memory", eb)) != VEIL_OK ||
        (rc = veil__engine_dnnl_err(dnnl_memory_create(&md, dst, eng, buf), "memory", eb)) !=
            VEIL_OK ||
        (rc = veil__engine_dnnl_err(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags),
                                    "stream", eb)) != VEIL_OK)
        goto out;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, ms}, {DNNL_ARG_TO, md}};
    if ((rc = veil__engine_dnnl_err(dnnl_primitive_execute(prim, stream, 2, args), "reorder",
                                    eb)) != VEIL_OK ||
        (rc = veil__engine_dnnl_err(dnnl_stream_wait(stream), "reorder", eb)) != VEIL_OK)
        goto out;
    *out = buf;
    buf = NULL;
    rc = VEIL_OK;
out:
    veil_aligned_free(buf);
    if (stream != NULL)
        dnnl_stream_destroy(stream);
    if (ms != NULL)
        dnnl_memory_destroy(ms);
    if (md != NULL)
        dnnl_memory_destroy(md);
    if (prim != NULL)
        dnnl_primitive_destroy(prim);
    if (pd != NULL)
        dnnl_primitive_desc_destroy(pd);
    return rc;
}

/*
 * The weights of graph constant `value` (data, layout src: their s8 form) in layout dst,
 * through the model's weights cache, so plans of every input shape share one copy. The s8
 * form follows from the constant's type alone (u8 shifted by 128, s8 as is), so the key
 * (value, src, dst) names one content. Entries are never used to rebuild the plain constant
 * (not reversible). Data that is not a graph constant is reordered into a buffer of ks.
 */
static veil_err cached_weights(const struct veil__engine_ictx *c, int32_t value, dnnl_engine_t eng,
                               const dnnl_memory_desc_t *src, const void *data,
                               const dnnl_memory_desc_t *dst, struct veil__engine_kstate *ks,
                               const void **out)
{
    struct veil__engine_wcache *wc = c->wcache;
    bool cacheable = wc != NULL && value >= 0 && c->g->values[value].is_const &&
                     c->g->values[value].c.data != NULL;
    void *buf;
    *out = NULL;
    if (cacheable)
        for (size_t i = 0; i < wc->n; i++)
            if (wc->ents[i].value == value && dnnl_memory_desc_equal(&wc->ents[i].md, dst) &&
                dnnl_memory_desc_equal(&wc->ents[i].src_md, src)) {
                *out = wc->ents[i].data;
                if (c->wreads != NULL)
                    c->wreads[value]++;
                return VEIL_OK;
            }
    if (cacheable && wc->n == wc->cap) {
        size_t nc = wc->cap ? wc->cap * 2 : 64;
        struct veil__engine_wcache_ent *ne = veil_reallocarray(wc->ents, nc, sizeof(*ne));
        if (ne == NULL)
            return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for weights");
        wc->ents = ne;
        wc->cap = nc;
    }
    size_t slot = 0;
    while (!cacheable && slot < 4 && ks->owned[slot] != NULL)
        slot++;
    VEIL_ASSERT(slot < 4);
    veil_err rc = reorder_new(eng, src, data, dst, &buf, c->eb);
    if (rc != VEIL_OK)
        return rc;
    if (cacheable) {
        wc->ents[wc->n++] = (struct veil__engine_wcache_ent){value, *src, *dst, buf, false};
        if (c->wreads != NULL)
            c->wreads[value]++;
    } else {
        ks->owned[slot] = buf;
    }
    *out = buf;
    return VEIL_OK;
}

static size_t take(struct veil__engine_step *st, size_t *cur, size_t sz)
{
    size_t off = *cur;
    *cur += align64(sz);
    reserve_scratch(st, *cur);
    return off;
}

static void add_arg(struct veil__engine_dnnl_exec *ex, int arg, const dnnl_memory_desc_t *md,
                    int32_t value, const void *ptr, size_t off)
{
    VEIL_ASSERT(ex->n_args < VEIL__ENGINE_MAX_ARGS);
    struct veil__engine_dnnl_arg *a = &ex->args[ex->n_args++];
    a->arg = arg;
    a->md = *md;
    a->value = value;
    a->ptr = ptr;
    a->off = off;
}

/* Whether pd has a real kernel (not oneDNN's reference code, far too slow to use). */
static bool real_impl(dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, (void *)&impl) ==
               dnnl_success &&
           impl != NULL && strncmp(impl, "ref", 3) != 0;
}

static dnnl_data_type_t dnnl_q8(enum veil_dtype dt)
{
    return dt == VEIL_DT_UINT8 ? dnnl_u8 : dnnl_s8;
}

/* A convolution's 1-D or 2-D geometry as oneDNN's 2-D one ([N][C][1][L] for 1-D). */
struct g2 {
    int64_t h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
};

static struct g2 geom2(const struct qprod *q)
{
    int a = q->sp == 2 ? 0 : -1, b = q->sp == 2 ? 1 : 0;
    struct g2 g = {a < 0 ? 1 : q->in[a], q->in[b], a < 0 ? 1 : q->out[a], q->out[b],
                   a < 0 ? 1 : q->k[a],  q->k[b],  a < 0 ? 1 : q->st[a],  q->st[b],
                   a < 0 ? 0 : q->pb[a], q->pb[b], a < 0 ? 1 : q->dl[a],  q->dl[b]};
    return g;
}

/*
 * The s8 form of weights w (u8 made s8 by subtracting 128, which is an XOR of the top bit):
 * w's own data, or a new buffer in *tmp (caller frees). *shift receives what was subtracted.
 */
static veil_err weights_s8(const struct veil__engine_tv *w, const void **data, void **tmp,
                           int64_t *shift, struct veil_errbuf *eb)
{
    *tmp = NULL;
    *shift = 0;
    *data = w->data;
    if (w->dt == VEIL_DT_INT8)
        return VEIL_OK;
    uint8_t *b = veil_aligned_alloc(64, (size_t)w->numel + 64);
    if (b == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for weights");
    const uint8_t *s = w->data;
    for (uint64_t i = 0; i < w->numel; i++)
        b[i] = s[i] ^ 0x80u;
    *tmp = b;
    *data = b;
    *shift = 128;
    return VEIL_OK;
}

/* Sizes oneDNN takes as int and that the run's arithmetic indexes: kept well inside. */
#define QP_DIM_MAX ((int64_t)1 << 28)

static veil_err qconv_dnnl(struct veil__engine_ictx *c, dnnl_engine_t eng,
                           struct veil__engine_step *st, struct qprod *q)
{
    veil_err rc = VEIL_E_INTERNAL;
    const struct veil__engine_tv *x = &c->in[q->x], *w = &c->in[q->w];
    if (!dnnl_int8_exact() || q->sp > 2 || w->data == NULL || c->out[0].numel == 0 ||
        x->numel == 0 || x->numel > (uint64_t)QP_DIM_MAX || c->out[0].numel > (uint64_t)QP_DIM_MAX)
        return VEIL_OK;
    struct g2 g = geom2(q);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    struct veil__engine_kstate *ks = NULL;
    void *wtmp = NULL;
    dnnl_memory_desc_t src, wplain, wany, dst, zmd, plain_x;
    dnnl_dims_t sd = {q->n, q->ch, g.h, g.w}, dd = {q->n, q->m, g.oh, g.ow};
    dnnl_dims_t strides = {g.sh, g.sw}, dil = {g.dh - 1, g.dw - 1}, pl = {g.ph, g.pw}, pr;
    pr[0] = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1 - g.h - g.ph;
    pr[1] = (g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1 - g.w - g.pw;
    int wr = q->g > 1 ? 5 : 4;
    dnnl_dims_t wd;
    if (q->g > 1) {
        dnnl_dims_t t = {q->g, q->m / q->g, q->ch / q->g, g.kh, g.kw};
        memcpy(wd, t, sizeof(t));
    } else {
        dnnl_dims_t t = {q->m, q->ch, g.kh, g.kw};
        memcpy(wd, t, sizeof(t));
    }
    dnnl_dims_t one = {1};
    if (dnnl_memory_desc_init_by_tag(&src, 4, sd, dnnl_q8(x->dt), dnnl_nhwc) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&plain_x, 4, sd, dnnl_q8(x->dt), dnnl_nchw) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&wplain, wr, wd, dnnl_s8, q->g > 1 ? dnnl_goihw : dnnl_oihw) !=
            dnnl_success ||
        dnnl_memory_desc_init_by_tag(&wany, wr, wd, dnnl_s8, dnnl_format_tag_any) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_s32, dnnl_nhwc) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&zmd, 1, one, dnnl_s32, dnnl_a) != dnnl_success)
        return VEIL_OK;
    if ((rc = veil__engine_dnnl_err(dnnl_primitive_attr_create(&attr), "attr", c->eb)) != VEIL_OK)
        return rc;
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    static const int32_t runtime_zp = DNNL_RUNTIME_S32_VAL;
    dnnl_convolution_desc_t cd;
    /* Any refusal here leaves the C kernel to do the work. */
    if ((q->xz >= 0 && dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &runtime_zp) !=
                           dnnl_success) ||
        dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference,
                                                   dnnl_convolution_direct, &src, &wany, NULL, &dst,
                                                   strides, dil, pl, pr) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &cd, attr, eng, NULL) != dnnl_success || !real_impl(pd)) {
        rc = VEIL_OK;
        goto out;
    }
    ks = veil_calloc(1, sizeof(*ks));
    if (ks == NULL) {
        rc = veil_errf(c->eb, VEIL_E_NOMEM, "no memory for a kernel");
        goto out;
    }
    const void *wdata, *wbuf;
    if ((rc = weights_s8(w, &wdata, &wtmp, &q->wshift, c->eb)) != VEIL_OK)
        goto out;
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if ((rc = cached_weights(c, c->n->in[q->w], eng, &wplain, wdata, wmd, ks, &wbuf)) != VEIL_OK)
        goto out;
    size_t cur = 0;
    q->off_arr = take(st, &cur, arr_bytes(q->m));
    q->off_zp = take(st, &cur, 64);
    int32_t xv = c->n->in[q->x];
    struct veil__engine_dnnl_exec *mex;
    q->src_reorder = !q->x_nhwc && q->ch > 1;
    if (q->src_reorder) {
        q->off_src = take(st, &cur, (size_t)x->numel);
        dnnl_primitive_desc_t rpd = NULL;
        struct veil__engine_dnnl_exec *rex = &ks->ex[ks->n_ex];
        rc = veil__engine_dnnl_err(
            dnnl_reorder_primitive_desc_create(&rpd, &plain_x, eng, &src, eng, NULL), "reorder",
            c->eb);
        if (rc == VEIL_OK)
            rc = veil__engine_dnnl_err(dnnl_primitive_create(&rex->prim, rpd), "reorder", c->eb);
        if (rpd != NULL)
            dnnl_primitive_desc_destroy(rpd);
        if (rc != VEIL_OK)
            goto out;
        ks->n_ex++;
        add_arg(rex, DNNL_ARG_FROM, &plain_x, xv, NULL, 0);
        add_arg(rex, DNNL_ARG_TO, &src, -1, NULL, q->off_src);
    }
    q->off_acc = take(st, &cur, (size_t)c->out[0].numel * 4);
    q->off_psum = take(st, &cur, (size_t)(q->n * q->g * g.h * g.w) * 4);
    q->off_s = take(st, &cur, (size_t)(q->n * q->g * g.oh * g.ow) * 4);
    q->ex_main = ks->n_ex;
    mex = &ks->ex[ks->n_ex];
    if (q->src_reorder)
        add_arg(mex, DNNL_ARG_SRC, &src, -1, NULL, q->off_src);
    else
        add_arg(mex, DNNL_ARG_SRC, &src, xv, NULL, 0);
    add_arg(mex, DNNL_ARG_WEIGHTS, wmd, -1, wbuf, 0);
    add_arg(mex, DNNL_ARG_DST, &dst, -1, NULL, q->off_acc);
    if (q->xz >= 0)
        add_arg(mex, DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, &zmd, -1, NULL, q->off_zp);
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (sp != NULL && dnnl_memory_desc_get_size(sp) > 0)
        add_arg(mex, DNNL_ARG_SCRATCHPAD, sp, -1, NULL,
                take(st, &cur, dnnl_memory_desc_get_size(sp)));
    if ((rc = veil__engine_dnnl_err(dnnl_primitive_create(&mex->prim, pd), "convolution", c->eb)) !=
        VEIL_OK)
        goto out;
    ks->n_ex++;
    q->dnnl = true;
    st->ks = ks;
    ks = NULL;
    rc = VEIL_OK;
out:
    veil_aligned_free(wtmp);
    if (pd != NULL)
        dnnl_primitive_desc_destroy(pd);
    if (attr != NULL)
        dnnl_primitive_attr_destroy(attr);
    veil__engine_kstate_free(ks);
    return rc;
}

static veil_err qmm_dnnl(struct veil__engine_ictx *c, dnnl_engine_t eng,
                         struct veil__engine_step *st, struct qprod *q)
{
    veil_err rc = VEIL_E_INTERNAL;
    const struct veil__engine_tv *a = &c->in[q->x], *b = &c->in[q->w];
    bool b2d = b->rank == 2;
    for (size_t i = 0; i < q->br; i++)
        b2d = b2d && q->bd[i] == 1;
    uint64_t rows = q->batches * (uint64_t)q->rows;
    if (!dnnl_int8_exact() || !b2d || b->data == NULL || c->out[0].numel == 0 || a->numel == 0 ||
        rows > (uint64_t)QP_DIM_MAX || a->numel > (uint64_t)QP_DIM_MAX ||
        c->out[0].numel > (uint64_t)QP_DIM_MAX)
        return VEIL_OK;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    struct veil__engine_kstate *ks = NULL;
    void *wtmp = NULL;
    dnnl_memory_desc_t src, wplain, wany, dst, zmd;
    dnnl_dims_t sd = {(int64_t)rows, q->depth}, wd = {q->depth, q->cols},
                dd = {(int64_t)rows, q->cols}, one = {1};
    if (dnnl_memory_desc_init_by_tag(&src, 2, sd, dnnl_q8(a->dt), dnnl_ab) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&wplain, 2, wd, dnnl_s8, dnnl_ab) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&wany, 2, wd, dnnl_s8, dnnl_format_tag_any) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_s32, dnnl_ab) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&zmd, 1, one, dnnl_s32, dnnl_a) != dnnl_success)
        return VEIL_OK;
    if ((rc = veil__engine_dnnl_err(dnnl_primitive_attr_create(&attr), "attr", c->eb)) != VEIL_OK)
        return rc;
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    static const int32_t runtime_zp = DNNL_RUNTIME_S32_VAL;
    dnnl_matmul_desc_t md;
    if ((q->xz >= 0 && dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &runtime_zp) !=
                           dnnl_success) ||
        dnnl_matmul_desc_init(&md, &src, &wany, NULL, &dst) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL) != dnnl_success || !real_impl(pd)) {
        rc = VEIL_OK;
        goto out;
    }
    ks = veil_calloc(1, sizeof(*ks));
    if (ks == NULL) {
        rc = veil_errf(c->eb, VEIL_E_NOMEM, "no memory for a kernel");
        goto out;
    }
    const void *wdata, *wbuf;
    if ((rc = weights_s8(b, &wdata, &wtmp, &q->wshift, c->eb)) != VEIL_OK)
        goto out;
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if ((rc = cached_weights(c, c->n->in[q->w], eng, &wplain, wdata, wmd, ks, &wbuf)) != VEIL_OK)
        goto out;
    size_t cur = 0;
    q->off_arr = take(st, &cur, arr_bytes(q->m));
    q->off_zp = take(st, &cur, 64);
    q->off_acc = take(st, &cur, (size_t)rows * (size_t)q->cols * 4);
    q->off_s = take(st, &cur, (size_t)rows * 4);
    struct veil__engine_dnnl_exec *mex = &ks->ex[0];
    add_arg(mex, DNNL_ARG_SRC, &src, c->n->in[q->x], NULL, 0);
    add_arg(mex, DNNL_ARG_WEIGHTS, wmd, -1, wbuf, 0);
    add_arg(mex, DNNL_ARG_DST, &dst, -1, NULL, q->off_acc);
    if (q->xz >= 0)
        add_arg(mex, DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, &zmd, -1, NULL, q->off_zp);
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (sp != NULL && dnnl_memory_desc_get_size(sp) > 0)
        add_arg(mex, DNNL_ARG_SCRATCHPAD, sp, -1, NULL,
                take(st, &cur, dnnl_memory_desc_get_size(sp)));
    if ((rc = veil__engine_dnnl_err(dnnl_primitive_create(&mex->prim, pd), "matmul", c->eb)) !=
        VEIL_OK)
        goto out;
    ks->n_ex = 1;
    q->ex_main = 0;
    q->dnnl = true;
    st->ks = ks;
    ks = NULL;
    rc = VEIL_OK;
out:
    veil_aligned_free(wtmp);
    if (pd != NULL)
        dnnl_primitive_desc_destroy(pd);
    if (attr != NULL)
        dnnl_primitive_attr_destroy(attr);
    veil__engine_kstate_free(ks);
    return rc;
}

/* ---- Compensation sums and the epilogue ---- */

/*
 * psum[n][g][h][w] = sum over the group's channels of x - xz (x channels-last), then
 * s[n][g][oh][ow] = sum of psum over the output's window (positions in the padding add 0).
 */
struct comp_job {
    const struct qprod *q;
    struct g2 geo;
    const void *x;
    bool is_u8;
    int32_t xz;
    int32_t *psum, *s;
};

static void psum_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct comp_job *j = ud;
    const struct qprod *q = j->q;
    int64_t cg = q->ch / q->g, h = j->geo.h, w = j->geo.w;
    for (uint64_t t = lo; t < hi; t++) {
        int64_t n = (int64_t)t / h, y = (int64_t)t % h;
        for (int64_t xw = 0; xw < w; xw++) {
            int64_t pix = (n * h + y) * w + xw;
            for (int64_t g = 0; g < q->g; g++) {
                int32_t sum = 0;
                int64_t base = pix * q->ch + g * cg;
                if (j->is_u8) {
                    const uint8_t *p = (const uint8_t *)j->x + base;
                    for (int64_t k = 0; k < cg; k++)
                        sum += p[k];
                } else {
                    const int8_t *p = (const int8_t *)j->x + base;
                    for (int64_t k = 0; k < cg; k++)
                        sum += p[k];
                }
                j->psum[((n * q->g + g) * h + y) * w + xw] = wadd(sum, -wmul(j->xz, (int32_t)cg));
            }
        }
    }
}

static void wsum_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct comp_job *j = ud;
    const struct g2 *g = &j->geo;
    for (uint64_t t = lo; t < hi; t++) {
        int64_t plane = (int64_t)t / g->oh, oy = (int64_t)t % g->oh;
        const int32_t *ps = j->psum + plane * g->h * g->w;
        int32_t *out = j->s + (plane * g->oh + oy) * g->ow;
        for (int64_t ox = 0; ox < g->ow; ox++) {
            int32_t sum = 0;
            for (int64_t ky = 0; ky < g->kh; ky++) {
                int64_t iy = oy * g->sh - g->ph + ky * g->dh;
                if (iy < 0 || iy >= g->h)
                    continue;
                for (int64_t kx = 0; kx < g->kw; kx++) {
                    int64_t ix = ox * g->sw - g->pw + kx * g->dw;
                    if (ix >= 0 && ix < g->w)
                        sum = wadd(sum, ps[iy * g->w + ix]);
                }
            }
            out[ox] = sum;
        }
    }
}

/* Row sums of a product's A less its zero point: s[r] = sum over k of a[r][k] - az. */
struct rsum_job {
    const void *a;
    bool is_u8;
    int64_t depth;
    int32_t az;
    int32_t *s;
};

static void rsum_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct rsum_job *j = ud;
    for (uint64_t r = lo; r < hi; r++) {
        int32_t sum = 0;
        if (j->is_u8) {
            const uint8_t *p = (const uint8_t *)j->a + r * (uint64_t)j->depth;
            for (int64_t k = 0; k < j->depth; k++)
                sum += p[k];
        } else {
            const int8_t *p = (const int8_t *)j->a + r * (uint64_t)j->depth;
            for (int64_t k = 0; k < j->depth; k++)
                sum += p[k];
        }
        j->s[r] = wadd(sum, -wmul(j->az, (int32_t)j->depth));
    }
}

/*
 * The epilogue over oneDNN's channels-last int32 sums acc[n][p][m]: acc - kv[oc] * s[n][g][p]
 * (when s), then the finish (fin_put), into out[n][m][p] (nchw) or out[n][p][m].
 */
struct epi {
    const struct fin *f;
    const int32_t *acc, *s;
    void *out;
    int64_t n, p, m, g;
    bool nchw, avx512;
};

#define EPI_BLOCK 64

static void epi_scalar(const struct epi *e, int64_t n, int64_t p0, int64_t p1, int64_t c0)
{
    int64_t mg = e->m / e->g;
    for (int64_t p = p0; p < p1; p++)
        for (int64_t oc = c0; oc < e->m; oc++) {
            int32_t a = e->acc[(n * e->p + p) * e->m + oc];
            if (e->s != NULL)
                a = wadd(a, -wmul(e->f->kv[oc], e->s[(n * e->g + oc / mg) * e->p + p]));
            uint64_t idx =
                (uint64_t)(e->nchw ? (n * e->m + oc) * e->p + p : (n * e->p + p) * e->m + oc);
            fin_put(e->f, oc, a, e->out, idx);
        }
}

#if defined(__x86_64__)
AVX512 static void epi_512(const struct epi *e, int64_t n, int64_t p0, int64_t p1)
{
    const struct fin *f = e->f;
    int64_t mg = e->m / e->g;
    __m512 vlo = _mm512_set1_ps((float)(f->lo - f->zp)),
           vhi = _mm512_set1_ps((float)(f->hi - f->zp));
    __m512i vzp = _mm512_set1_epi32(f->zp);
    size_t osz = f->mode == FIN_Q8 ? 1 : 4;
    for (int64_t p = p0; p < p1; p += 16) {
        int64_t np = p1 - p < 16 ? p1 - p : 16;
        __mmask16 pm = mask16(np);
        for (int64_t c0 = 0; c0 < e->m; c0 += 16) {
            __mmask16 cm = mask16(e->m - c0);
            __m512i kv = _mm512_loadu_si512(f->kv + c0), ib = _mm512_loadu_si512(f->ib + c0);
            __m512 sc = _mm512_loadu_ps(f->sc + c0), fb = _mm512_loadu_ps(f->fb + c0);
            const int32_t *srow = e->s != NULL ? e->s + (n * e->g + c0 / mg) * e->p : NULL;
            __m512i r[16];
            for (int64_t k = 0; k < 16; k++) {
                if (k >= np) {
                    r[k] = _mm512_setzero_si512();
                    continue;
                }
                __m512i a = _mm512_maskz_loadu_epi32(cm, e->acc + (n * e->p + p + k) * e->m + c0);
                a = _mm512_add_epi32(a, ib);
                if (srow != NULL)
                    a = _mm512_sub_epi32(a, _mm512_mullo_epi32(kv, _mm512_set1_epi32(srow[p + k])));
                if (f->mode == FIN_S32) {
                    r[k] = a;
                    continue;
                }
                __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(a), sc);
                if (f->mode == FIN_Q8) {
                    v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi);
                    r[k] = _mm512_add_epi32(_mm512_cvtps_epi32(v), vzp);
                    continue;
                }
                if (f->fbias)
                    v = _mm512_add_ps(v, fb);
                if (f->relu)
                    v = _mm512_max_ps(_mm512_setzero_ps(), v);
                r[k] = _mm512_castps_si512(v);
            }
            if (e->nchw) {
                transpose16(r);
                for (int64_t j = 0; j < 16 && c0 + j < e->m; j++) {
                    size_t idx = (size_t)((n * e->m + c0 + j) * e->p + p);
                    if (osz == 1)
                        _mm512_mask_cvtepi32_storeu_epi8((uint8_t *)e->out + idx, pm, r[j]);
                    else
                        _mm512_mask_storeu_epi32((int32_t *)e->out + idx, pm, r[j]);
                }
            } else {
                for (int64_t k = 0; k < np; k++) {
                    size_t idx = (size_t)((n * e->p + p + k) * e->m + c0);
                    if (osz == 1)
                        _mm512_mask_cvtepi32_storeu_epi8((uint8_t *)e->out + idx, cm, r[k]);
                    else
                        _mm512_mask_storeu_epi32((int32_t *)e->out + idx, cm, r[k]);
                }
            }
        }
    }
}
#endif

static void epi_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct epi *e = ud;
    int64_t blocks = (e->p + EPI_BLOCK - 1) / EPI_BLOCK;
    /* A 16-channel tile must lie in one group to share its window sums. */
    bool vec = e->avx512 && (e->s == NULL || e->g == 1 || (e->m / e->g) % 16 == 0);
    for (uint64_t t = lo; t < hi; t++) {
        int64_t n = (int64_t)t / blocks, p0 = ((int64_t)t % blocks) * EPI_BLOCK;
        int64_t p1 = p0 + EPI_BLOCK < e->p ? p0 + EPI_BLOCK : e->p;
#if defined(__x86_64__)
        if (vec) {
            epi_512(e, n, p0, p1);
            continue;
        }
#endif
        (void)vec;
        epi_scalar(e, n, p0, p1, 0);
    }
}

/* Runs the kernel state's primitives (the integer sums) on the run's stream. */
static veil_err run_prims(const struct veil__engine_kctx *c)
{
    const struct veil__engine_step *st = c->st;
    for (size_t e = 0; e < st->ks->n_ex; e++) {
        const struct veil__engine_dnnl_exec *dx = &st->ks->ex[e];
        veil_err rc = veil__engine_dnnl_err(
            dnnl_primitive_execute(dx->prim, c->sc->stream, (int)dx->n_args,
                                   &c->sc->args[c->sc->args_base[st->ex_base + e]]),
            "execution", c->eb);
        if (rc != VEIL_OK)
            return rc;
    }
    return veil__engine_dnnl_err(dnnl_stream_wait(c->sc->stream), "stream wait", c->eb);
}

/* Every integer product: the oneDNN path (sums, compensation, epilogue) or the C kernels. */
veil_err veil__engine_qprod_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    const struct qprod *q = kp->ptr;
    if (!q->dnnl || c->sc == NULL || c->st == NULL || c->st->ks == NULL)
        return qprod_exec_c(c, q);
    uint8_t *ws = c->sc->step_region;
    struct fin f;
    fin_fill(c, q, ws + q->off_arr, &f);
    int32_t xz = q->xz >= 0 ? get_i32(c->in[q->xz].dt, c->in[q->xz].data, 0) : 0;
    *(int32_t *)(void *)(ws + q->off_zp) = xz;
    veil_err rc = run_prims(c);
    if (rc != VEIL_OK)
        return rc;
    bool comp = false;
    for (int64_t i = 0; i < q->m && !comp; i++)
        comp = f.kv[i] != 0;
    struct epi e = {&f,    (const int32_t *)(const void *)(ws + q->off_acc),
                    NULL,  qprod_out(c, q),
                    1,     0,
                    q->m,  1,
                    false, have_avx512()};
    bool is_u8 = c->in[q->x].dt == VEIL_DT_UINT8;
    if (q->conv) {
        struct g2 g = geom2(q);
        e.n = q->n;
        e.p = g.oh * g.ow;
        e.g = q->g;
        e.nchw = !q->out_nhwc;
        if (comp) {
            const void *xs = q->src_reorder ? (const void *)(ws + q->off_src) : c->in[q->x].data;
            struct comp_job j = {q,
                                 g,
                                 xs,
                                 is_u8,
                                 xz,
                                 (int32_t *)(void *)(ws + q->off_psum),
                                 (int32_t *)(void *)(ws + q->off_s)};
            veil__engine_parallel((uint64_t)(q->n * g.h), 4, psum_range, &j);
            veil__engine_parallel((uint64_t)(q->n * q->g * g.oh), 4, wsum_range, &j);
            e.s = j.s;
        }
    } else {
        e.p = (int64_t)q->batches * q->rows;
        if (comp) {
            struct rsum_job j = {c->in[q->x].data, is_u8, q->depth, xz,
                                 (int32_t *)(void *)(ws + q->off_s)};
            veil__engine_parallel((uint64_t)e.p, 64, rsum_range, &j);
            e.s = j.s;
        }
    }
    veil__engine_parallel((uint64_t)(e.n * ((e.p + EPI_BLOCK - 1) / EPI_BLOCK)), 4, epi_range, &e);
    return VEIL_OK;
}

/* ---- Plan time: layouts, the fused float pattern, kernel choice ---- */

static bool known_before(const struct veil__engine_ictx *c, int32_t v)
{
    int32_t p = c->g->values[v].producer;
    return p < 0 || (c->step_of[p] >= 0 && c->step_of[p] < c->step);
}

/* The node reading value v once and alone, when it is a live op of that type at a later step. */
static int32_t sole(const struct veil__engine_ictx *c, int32_t v, const char *op)
{
    int32_t r = v >= 0 ? c->sole_reader[v] : -1;
    if (r < 0 || c->g->nodes[r].dead || strcmp(c->g->nodes[r].op_type, op) != 0 ||
        c->step_of[r] <= c->step || c->steps[c->step_of[r]].absorbed_by > 0)
        return -1;
    const struct veil__engine_node *n = &c->g->nodes[r];
    if (n->n_post != 0 || n->add_in >= 0 || n->n_out != 1 || n->out[0] < 0)
        return -1;
    return r;
}

static bool nhwc_wanted(struct veil__engine_ictx *c, int32_t v)
{
    if (c->vals == NULL || c->sole_reader == NULL || c->steps == NULL || c->step_of == NULL ||
        v < 0 || c->vals[v].blocked || !dnnl_int8_exact())
        return false;
    const struct veil__engine_tv *t = &c->vals[v].t;
    if (t->rank != 4 || t->dims[1] < 2 || !q8(t->dt))
        return false;
    int32_t r = c->sole_reader[v];
    if (r < 0 || c->g->nodes[r].dead || c->step_of[r] <= c->step ||
        c->steps[c->step_of[r]].absorbed_by > 0)
        return false;
    const struct veil__engine_node *n = &c->g->nodes[r];
    size_t wslot;
    if (strcmp(n->op_type, "ConvInteger") == 0)
        wslot = 1;
    else if (strcmp(n->op_type, "QLinearConv") == 0)
        wslot = QW;
    else
        return false;
    if (n->n_in <= wslot || n->in[0] != v || n->in[wslot] < 0)
        return false;
    /* The convolution can only take the oneDNN path with weights known now. */
    const struct veil__engine_pval *w = &c->vals[n->in[wslot]];
    return !w->runtime && w->t.data != NULL && w->t.rank == 4 && q8(w->t.dt);
}

/*
 * A float operand of the fused Mul or Add: known before this step, and broadcasting onto the
 * product's result as one value or one per channel (the convolution's axis 1, the product's
 * last axis), never widening it.
 */
static bool chan_operand(const struct veil__engine_ictx *c, const struct qprod *q, int32_t v)
{
    if (v < 0)
        return false;
    const struct veil__engine_pval *pv = &c->vals[v];
    const struct veil__engine_tv *t = &pv->t, *o = &c->out[0];
    if (t->dt != VEIL_DT_FLOAT || pv->blocked || !known_before(c, v) ||
        (!pv->runtime && t->data == NULL) || t->rank > o->rank)
        return false;
    if (t->numel == 1)
        return true;
    size_t cax = q->conv ? 1 : o->rank - 1;
    for (size_t i = 0; i < t->rank; i++) {
        size_t axis = o->rank - t->rank + i;
        if (t->dims[i] != 1 && (axis != cax || t->dims[i] != o->dims[axis]))
            return false;
    }
    return t->numel == (uint64_t)q->m;
}

static int32_t other_in(const struct veil__engine_node *n, int32_t v)
{
    if (n->n_in != 2 || n->in[0] == n->in[1])
        return -1;
    return n->in[0] == v ? n->in[1] : n->in[1] == v ? n->in[0] : -1;
}

/*
 * ConvInteger or MatMulInteger -> Cast to float -> Mul by a scale [-> Add of a bias] [-> Relu],
 * each intermediate read only by the next: the step computes the last node's output itself
 * (float(acc) * scale + bias, rounded after each operation as the nodes do), the later nodes
 * are absorbed and the int32 result is never stored.
 */
static void fuse_float(struct veil__engine_ictx *c, struct veil__engine_step *st, struct qprod *q)
{
    if (q->qlinear || c->vals == NULL || c->sole_reader == NULL || c->steps == NULL ||
        c->step_of == NULL)
        return;
    int32_t v0 = c->n->out[0];
    int32_t cn = sole(c, v0, "Cast");
    if (cn < 0)
        return;
    const struct veil__engine_node *cast = &c->g->nodes[cn];
    if (cast->n_in != 1 || veil__engine_attr_i(cast, "to", 0) != VEIL_DT_FLOAT)
        return;
    int32_t v1 = cast->out[0], mn = sole(c, v1, "Mul");
    if (mn < 0)
        return;
    int32_t s = other_in(&c->g->nodes[mn], v1);
    if (!chan_operand(c, q, s))
        return;
    int32_t last = c->g->nodes[mn].out[0], an = sole(c, last, "Add"), bias = -1, rn;
    if (an >= 0 && chan_operand(c, q, other_in(&c->g->nodes[an], last))) {
        bias = other_in(&c->g->nodes[an], last);
        last = c->g->nodes[an].out[0];
    } else {
        an = -1;
    }
    rn = sole(c, last, "Relu");
    if (rn >= 0 && c->g->nodes[rn].n_in == 1)
        last = c->g->nodes[rn].out[0];
    else
        rn = -1;
    int32_t later[4] = {cn, mn, an, rn};
    for (size_t i = 0; i < 4; i++)
        if (later[i] >= 0)
            c->steps[c->step_of[later[i]]].absorbed_by = c->step + 1;
    c->vals[v0].runtime = false; /* the int32 sums are never stored */
    q->fused = true;
    q->fbias = bias >= 0;
    q->relu = rn >= 0;
    st->xval[0] = s;
    st->xval[1] = bias;
    st->xval[2] = last;
    st->n_xval = 3;
}

veil_err veil__engine_qprod_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                    struct veil__engine_step *st)
{
    struct qprod *q = c->kp->ptr;
    if (q == NULL || c->vals == NULL)
        return veil_errf(c->eb, VEIL_E_INTERNAL, "integer product without parameters");
    if (q->conv && c->vals[c->n->in[q->x]].blocked) {
        /* Only this file stores values so, and only channels-last 4-D ones. */
        const dnnl_memory_desc_t *md = &c->vals[c->n->in[q->x]].md;
        dnnl_memory_desc_t want;
        dnnl_dims_t d = {q->n, q->ch, q->in[0], q->in[1]};
        if (q->sp != 2 ||
            dnnl_memory_desc_init_by_tag(&want, 4, d, dnnl_q8(c->in[q->x].dt), dnnl_nhwc) !=
                dnnl_success ||
            !dnnl_memory_desc_equal(md, &want))
            return veil_errf(c->eb, VEIL_E_INTERNAL, "source in an unexpected layout");
        q->x_nhwc = true;
    }
    fuse_float(c, st, q);
    veil_err rc = q->conv ? qconv_dnnl(c, eng, st, q) : qmm_dnnl(c, eng, st, q);
    if (rc != VEIL_OK)
        return rc;
    if (!q->dnnl)
        reserve_scratch(st, arr_bytes(q->m));
    if (q->dnnl && q->conv && q->qlinear && nhwc_wanted(c, c->n->out[0])) {
        int32_t v = c->n->out[0];
        dnnl_dims_t d = {q->n, q->m, q->out[0], q->out[1]};
        dnnl_memory_desc_t md;
        if (dnnl_memory_desc_init_by_tag(&md, 4, d, dnnl_q8(q->odt), dnnl_nhwc) == dnnl_success) {
            c->vals[v].blocked = true;
            c->vals[v].md = md;
            q->out_nhwc = true;
        }
    }
    if (q->dnnl || q->fused)
        st->xexec = veil__engine_qprod_exec;
    return VEIL_OK;
}

/* ---- DequantizeLinear -> Conv / MatMul -> QuantizeLinear (QDQ) on int8 primitives ---- */

/* A value whose data is known at plan time and fixed for the plan's life. */
static const struct veil__engine_tv *known(const struct veil__engine_ictx *c, int32_t v)
{
    if (v < 0 || c->vals[v].runtime || c->vals[v].t.data == NULL)
        return NULL;
    return &c->vals[v].t;
}

/* The live DequantizeLinear of constant operands producing v: its node, or NULL. */
static const struct veil__engine_node *const_dq(const struct veil__engine_ictx *c, int32_t v)
{
    int32_t p = v >= 0 ? c->g->values[v].producer : -1;
    if (p < 0 || c->g->nodes[p].dead || strcmp(c->g->nodes[p].op_type, "DequantizeLinear") != 0)
        return NULL;
    const struct veil__engine_node *n = &c->g->nodes[p];
    for (size_t k = 0; k < n->n_in; k++)
        if (n->in[k] >= 0 && known(c, n->in[k]) == NULL)
            return NULL;
    return n->n_in >= 2 && n->in[0] >= 0 && n->in[1] >= 0 ? n : NULL;
}

/*
 * In a QDQ model this DequantizeLinear's output feeds only a Conv (with at most a fused Relu)
 * or a MatMul whose weights are a DequantizeLinear of constants (per tensor, or per output
 * channel on axis 0 / per column on axis 1), with a bias (Conv only) that is a
 * DequantizeLinear of constant int32 values at scale x_scale * w_scale, and whose result only
 * a QuantizeLinear of constant per-tensor parameters reads. The three run as one QLinearConv
 * or QLinearMatMul on oneDNN, as ONNX Runtime runs them: the later two steps are absorbed, and
 * no float value is stored. Returns VEIL_OK whether it fused or not (errors only from memory).
 */
static veil_err qdq_fuse(struct veil__engine_ictx *c, dnnl_engine_t eng,
                         struct veil__engine_step *st)
{
    const struct veil__engine_node *n = c->n;
    if (c->vals == NULL || c->sole_reader == NULL || c->steps == NULL || c->step_of == NULL ||
        !dnnl_int8_exact() || c->kp->quant.len != 1 || !q8(c->in[0].dt) ||
        known(c, n->in[1]) == NULL || (has_in(c, 2) && known(c, n->in[2]) == NULL))
        return VEIL_OK;
    int32_t xd = n->out[0], r = c->sole_reader[xd];
    if (r < 0 || c->g->nodes[r].dead || c->step_of[r] <= c->step ||
        c->steps[c->step_of[r]].absorbed_by > 0)
        return VEIL_OK;
    const struct veil__engine_node *p = &c->g->nodes[r];
    bool conv = strcmp(p->op_type, "Conv") == 0,
         relu = p->n_post == 1 && p->post[0].kind == VEIL__ENGINE_POST_RELU;
    if ((!conv && strcmp(p->op_type, "MatMul") != 0) || p->n_in < 2 || p->in[0] != xd ||
        p->add_in >= 0 || (p->n_post != 0 && !(conv && relu)) || (!conv && p->n_in != 2) ||
        p->n_out != 1 || p->out[0] < 0)
        return VEIL_OK;
    const struct veil__engine_node *wdq = const_dq(c, p->in[1]);
    if (wdq == NULL || !q8(c->vals[wdq->in[0]].t.dt))
        return VEIL_OK;
    const struct veil__engine_tv *wq = &c->vals[wdq->in[0]].t, *wsc = &c->vals[wdq->in[1]].t;
    int64_t m = conv ? (wq->rank > 0 ? wq->dims[0] : 0) : (wq->rank == 2 ? wq->dims[1] : 0);
    if (m <= 0 || wsc->dt != VEIL_DT_FLOAT)
        return VEIL_OK;
    if (wsc->numel != 1) {
        int64_t axis = norm_axis(veil__engine_attr_i(wdq, "axis", 1), wq->rank);
        if (wsc->numel != (uint64_t)m || axis != (conv ? 0 : 1))
            return VEIL_OK;
    }
    const struct veil__engine_node *bdq = NULL;
    if (conv && p->n_in > 2 && p->in[2] >= 0) {
        bdq = const_dq(c, p->in[2]);
        if (bdq == NULL || c->vals[bdq->in[0]].t.dt != VEIL_DT_INT32 ||
            c->vals[bdq->in[0]].t.numel != (uint64_t)m)
            return VEIL_OK;
        const struct veil__engine_tv *bz =
            bdq->n_in > 2 && bdq->in[2] >= 0 ? &c->vals[bdq->in[2]].t : NULL;
        for (uint64_t i = 0; bz != NULL && i < bz->numel; i++)
            if (bz->dt != VEIL_DT_INT32 || ((const int32_t *)bz->data)[i] != 0)
                return VEIL_OK;
    }
    int32_t qn = c->sole_reader[p->out[0]];
    if (qn < 0 || c->g->nodes[qn].dead || c->step_of[qn] <= c->step ||
        c->steps[c->step_of[qn]].absorbed_by > 0 ||
        strcmp(c->g->nodes[qn].op_type, "QuantizeLinear") != 0)
        return VEIL_OK;
    const struct veil__engine_node *qnode = &c->g->nodes[qn];
    if (qnode->n_in < 2 || qnode->in[0] != p->out[0] || qnode->n_out != 1 || qnode->out[0] < 0 ||
        known(c, qnode->in[1]) == NULL || known(c, qnode->in[1])->numel != 1 ||
        known(c, qnode->in[1])->dt != VEIL_DT_FLOAT ||
        (qnode->n_in > 2 && qnode->in[2] >= 0 &&
         (known(c, qnode->in[2]) == NULL || known(c, qnode->in[2])->numel != 1 ||
          !q8(known(c, qnode->in[2])->dt))) ||
        veil__engine_attr_i(qnode, "output_dtype", 0) != 0)
        return VEIL_OK;
    /* The three as one QLinearConv / QLinearMatMul node, to plan it. */
    int32_t ins[9] = {n->in[0],
                      n->in[1],
                      has_in(c, 2) ? n->in[2] : -1,
                      wdq->in[0],
                      wdq->in[1],
                      wdq->n_in > 2 ? wdq->in[2] : -1,
                      qnode->in[1],
                      qnode->n_in > 2 ? qnode->in[2] : -1,
                      bdq != NULL ? bdq->in[0] : -1};
    struct veil__engine_node fake = *p;
    fake.in = ins;
    fake.n_in = 9;
    fake.n_post = 0;
    struct veil__engine_ictx c2 = *c;
    c2.n = &fake;
    c2.n_in = 9;
    c2.eb = NULL;
    for (size_t k = 0; k < 9; k++) {
        if (ins[k] >= 0)
            c2.in[k] = c->vals[ins[k]].t;
        else
            memset(&c2.in[k], 0, sizeof(c2.in[k]));
    }
    if ((conv ? qconv_setup(&c2, true) : qmatmul_setup(&c2, true)) != VEIL_OK)
        return VEIL_OK;
    c2.out[0].numel = veil__engine_numel(c2.out[0].dims, c2.out[0].rank);
    c2.eb = c->eb;
    struct qprod *q = c->kp->ptr;
    const float *bsc = bdq != NULL ? c->vals[bdq->in[1]].t.data : NULL;
    const struct veil__engine_tv *bst = bdq != NULL ? &c->vals[bdq->in[1]].t : NULL;
    float xs = tv_f(&c2.in[QXS], 0), ys = tv_f(&c2.in[QYS], 0);
    /* ONNX Runtime takes the int32 bias as is: only a bias at scale x_scale * w_scale fuses. */
    for (int64_t i = 0; bst != NULL && i < m; i++) {
        float want = xs * tv_f(wsc, i);
        if (bst->dt != VEIL_DT_FLOAT || (bst->numel != 1 && bst->numel != (uint64_t)m) ||
            bsc[bst->numel == 1 ? 0 : i] != want)
            return VEIL_OK;
    }
    veil_err rc = conv ? qconv_dnnl(&c2, eng, st, q) : qmm_dnnl(&c2, eng, st, q);
    if (rc != VEIL_OK || !q->dnnl) {
        q->dnnl = false;
        return rc;
    }
    /* From here the chain is fused: constant per-channel arrays after the struct. */
    size_t head = (sizeof(*q) + 63) & ~(size_t)63;
    struct qprod *nq = veil_calloc(1, head + arr_bytes(m));
    if (nq == NULL)
        return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for a kernel");
    memcpy(nq, q, sizeof(*q));
    veil_free(c->kp->ptr);
    c->kp->ptr = NULL;
    size_t len = arr_len(m);
    int32_t *kv = qprod_tail(nq), *ib = kv + len;
    float *sc = (float *)(ib + len), *fb = sc + len;
    const struct veil__engine_tv *wz =
        wdq->n_in > 2 && wdq->in[2] >= 0 ? &c->vals[wdq->in[2]].t : NULL;
    for (int64_t i = 0; i < (int64_t)len; i++) {
        bool real = i < m;
        int32_t z =
            real && wz != NULL ? get_i32(wz->dt, wz->data, wz->numel == 1 ? 0 : (uint64_t)i) : 0;
        kv[i] = real ? z - (int32_t)nq->wshift : 0;
        ib[i] = real && bdq != NULL ? ((const int32_t *)c->vals[bdq->in[0]].t.data)[i] : 0;
        sc[i] = real ? xs * tv_f(wsc, i) / ys : 0.0f;
        fb[i] = 0.0f;
    }
    int32_t lo, hi;
    q_range(nq->odt, &lo, &hi);
    nq->pre = true;
    nq->qlinear = true;
    nq->pre_zp = nq->yz >= 0 ? get_i32(c2.in[QYZ].dt, c2.in[QYZ].data, 0) : 0;
    nq->pre_lo = relu && nq->pre_zp > lo ? nq->pre_zp : lo;
    /* At run time the step reads only the DequantizeLinear's own inputs and writes y. */
    nq->x = 0;
    nq->xz = has_in(c, 2) ? 2 : -1;
    nq->w = nq->ws = nq->wz = nq->xs = nq->ys = nq->yz = nq->b = -1;
    c->kp->ptr = nq;
    c->vals[xd].runtime = false;
    c->vals[p->out[0]].runtime = false;
    c->steps[c->step_of[r]].absorbed_by = c->step + 1;
    c->steps[c->step_of[qn]].absorbed_by = c->step + 1;
    st->xval[0] = qnode->out[0];
    st->n_xval = 1;
    st->xexec = veil__engine_qprod_exec;
    return VEIL_OK;
}

veil_err veil__engine_dequantize_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                         struct veil__engine_step *st)
{
    return qdq_fuse(c, eng, st);
}
