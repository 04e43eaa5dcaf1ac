/*
 * Vector kernels for the CPU's instruction sets (AVX-512, AVX2 with FMA, and a portable
 * baseline), picked once at run time from what the CPU reports: softmax rows and LayerNorm
 * rows (mean, then the variance around it, both summed in vector lanes; y = (x - mean) *
 * 1/sqrt(var + eps) * scale + bias).
 *
 * Softmax rows: y = softmax(x + a) over one row, in three passes (maximum of x + a;
 * exponentials and their sum; scaling). exp is computed as 2^n * p(r) with
 * n = round(x / ln 2), r = x - n ln 2 (ln 2 split in two parts so r is exact to a few ulps),
 * and p the degree-6 Taylor polynomial of e^r on |r| <= ln 2 / 2, whose truncation error
 * (r^7 / 7! < 1.3e-7) is about one float ulp. Terms more than 72 below the row's maximum
 * are 0 (see EXP_CUT), as masked positions (-inf or -10000 added) should be. A NaN in a row
 * makes the whole row NaN, as the definition does.
 */
#include "engine_int.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/*
 * exp(x) is taken as 0 below EXP_CUT: such a term is under 6e-32 of the row's largest (whose
 * exponential is 1), far inside any tolerance, and stopping there keeps every intermediate and
 * every scaled result a normal float (denormal operands cost microcode assists: on random
 * attention scores with a wide range the kernel ran twice as slowly).
 */
#define EXP_CUT (-72.0f)
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO (-2.12194440e-4f)

/* e^r = 1 + r + r^2/2! + ... + r^6/6!, highest power first (Horner's scheme). */
static const float EXP_POLY[7] = {1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f,
                                  0.5f,          1.0f,          1.0f};

/* Baseline: the same algorithm one element at a time (expf from libm). */
static void softmax_row_base(const float *x, size_t xs, const float *a, size_t as, float *y,
                             size_t len)
{
    float mx = -INFINITY;
    for (size_t i = 0; i < len; i++) {
        float v = x[xs * i] + (a != NULL ? a[as * i] : 0.0f);
        y[i] = v;
        mx = v > mx || isnan(v) ? v : mx;
    }
    double sum = 0;
    for (size_t i = 0; i < len; i++) {
        float d = y[i] - mx;
        y[i] = d < EXP_CUT ? 0.0f : expf(d);
        sum += y[i];
    }
    float inv = (float)(1.0 / sum);
    for (size_t i = 0; i < len; i++)
        y[i] *= inv;
}

/* LayerNorm of one row (baseline): sixteen float lanes, combined in double. */
static void layernorm_row_base(const float *x, float *y, size_t len, const float *scale,
                               const float *bias, float eps, float *mean, float *istd)
{
    float acc[16] = {0}, acc2[16] = {0};
    size_t n16 = len & ~(size_t)15;
    for (size_t i = 0; i < n16; i += 16)
        for (size_t l = 0; l < 16; l++)
            acc[l] += x[i + l];
    double s = 0;
    for (size_t l = 0; l < 16; l++)
        s += acc[l];
    for (size_t i = n16; i < len; i++)
        s += x[i];
    float m = (float)(s / (double)len);
    for (size_t i = 0; i < n16; i += 16)
        for (size_t l = 0; l < 16; l++) {
            float d = x[i + l] - m;
            acc2[l] += d * d;
        }
    double s2 = 0;
    for (size_t l = 0; l < 16; l++)
        s2 += acc2[l];
    for (size_t i = n16; i < len; i++)
        s2 += (double)(x[i] - m) * (x[i] - m);
    float is = (float)(1.0 / sqrt(s2 / (double)len + eps));
    for (size_t i = 0; i < len; i++)
        y[i] = (x[i] - m) * is * scale[i] + (bias != NULL ? bias[i] : 0.0f);
    *mean = m;
    *istd = is;
}

#if defined(__x86_64__)
#define AVX512 __attribute__((target("avx512f,fma")))
#define AVX2 __attribute__((target("avx2,fma")))

AVX512 static inline __m512 exp512(__m512 x)
{
    /* max(cut, x) returns x when x is NaN (the second operand wins for NaN). */
    __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_CUT), _CMP_LT_OQ);
    x = _mm512_max_ps(_mm512_set1_ps(EXP_CUT), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    __m512 p = _mm512_set1_ps(EXP_POLY[0]);
    for (size_t i = 1; i < sizeof(EXP_POLY) / sizeof(EXP_POLY[0]); i++)
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_POLY[i]));
    return _mm512_mask_mov_ps(_mm512_scalef_ps(p, n), under, _mm512_setzero_ps());
}

/* Elements [i, i + 16) of x + a; lanes at or past len read as -inf. */
AVX512 static inline __m512 load_sum512(const float *x, size_t xs, const float *a, size_t as,
                                        size_t i, size_t len)
{
    __mmask16 k = len - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (len - i)) - 1u);
    __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 v = xs ? _mm512_mask_loadu_ps(ninf, k, x + i)
                  : _mm512_mask_mov_ps(ninf, k, _mm512_set1_ps(x[0]));
    if (a != NULL)
        v = _mm512_add_ps(v, as ? _mm512_maskz_loadu_ps(k, a + i) : _mm512_set1_ps(a[0]));
    return v;
}

AVX512 static void softmax_row_avx512(const float *x, size_t xs, const float *a, size_t as,
                                      float *y, size_t len)
{
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (size_t i = 0; i < len; i += 16)
        vmax = _mm512_max_ps(vmax, load_sum512(x, xs, a, as, i, len));
    __m512 vm = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512 vs = _mm512_setzero_ps();
    /*
     * Whole vectors use plain stores: a masked store does not forward to the next pass's load
     * and, on a line not yet in the cache, stalls (it took half the kernel's time in a model).
     */
    size_t nv = len - len % 16;
    for (size_t i = 0; i < nv; i += 16) {
        __m512 e = exp512(_mm512_sub_ps(load_sum512(x, xs, a, as, i, len), vm));
        _mm512_storeu_ps(y + i, e);
        vs = _mm512_add_ps(vs, e);
    }
    __mmask16 k = (__mmask16)((1u << (len - nv)) - 1u);
    if (k != 0) {
        __m512 e = exp512(_mm512_sub_ps(load_sum512(x, xs, a, as, nv, len), vm));
        _mm512_mask_storeu_ps(y + nv, k, e);
        vs = _mm512_mask_add_ps(vs, k, vs, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vs));
    for (size_t i = 0; i < nv; i += 16)
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), inv));
    if (k != 0)
        _mm512_mask_storeu_ps(y + nv, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, y + nv), inv));
}

/* Lanes at or past len are masked off. */
AVX512 static inline __mmask16 tail512(size_t i, size_t len)
{
    return len - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (len - i)) - 1u);
}

AVX512 static void layernorm_row_avx512(const float *x, float *y, size_t len, const float *scale,
                                        const float *bias, float eps, float *mean, float *istd)
{
    __m512 acc = _mm512_setzero_ps(), acc2 = _mm512_setzero_ps();
    for (size_t i = 0; i < len; i += 16)
        acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(tail512(i, len), x + i));
    float m = (float)(_mm512_reduce_add_ps(acc) / (double)len);
    __m512 vm = _mm512_set1_ps(m);
    for (size_t i = 0; i < len; i += 16) {
        __mmask16 k = tail512(i, len);
        __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + i), vm);
        acc2 = _mm512_fmadd_ps(d, d, acc2);
    }
    float is = (float)(1.0 / sqrt(_mm512_reduce_add_ps(acc2) / (double)len + eps));
    __m512 vis = _mm512_set1_ps(is);
    size_t nv = len - len % 16;
    for (size_t i = 0; i < len; i += 16) {
        __mmask16 k = tail512(i, len);
        __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm), vis);
        __m512 b = bias != NULL ? _mm512_maskz_loadu_ps(k, bias + i) : _mm512_setzero_ps();
        __m512 v = _mm512_fmadd_ps(t, _mm512_maskz_loadu_ps(k, scale + i), b);
        if (i < nv)
            _mm512_storeu_ps(y + i, v);
        else
            _mm512_mask_storeu_ps(y + i, k, v);
    }
    *mean = m;
    *istd = is;
}

AVX2 static inline __m256 exp256(__m256 x)
{
    __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_CUT), _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_set1_ps(EXP_CUT), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    __m256 p = _mm256_set1_ps(EXP_POLY[0]);
    for (size_t i = 1; i < sizeof(EXP_POLY) / sizeof(EXP_POLY[0]); i++)
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_POLY[i]));
    /* 2^n from its exponent bits; n >= -104 after the clamp, so the field stays normal. */
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

AVX2 static inline float hmax256(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

AVX2 static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

AVX2 static inline __m256 load_sum256(const float *x, size_t xs, const float *a, size_t as,
                                      size_t i)
{
    __m256 v = xs ? _mm256_loadu_ps(x + i) : _mm256_set1_ps(x[0]);
    if (a != NULL)
        v = _mm256_add_ps(v, as ? _mm256_loadu_ps(a + i) : _mm256_set1_ps(a[0]));
    return v;
}

AVX2 static void softmax_row_avx2(const float *x, size_t xs, const float *a, size_t as, float *y,
                                  size_t len)
{
    size_t nv = len - len % 8;
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    for (size_t i = 0; i < nv; i += 8)
        vmax = _mm256_max_ps(vmax, load_sum256(x, xs, a, as, i));
    float mx = hmax256(vmax);
    for (size_t i = nv; i < len; i++) {
        float v = x[xs * i] + (a != NULL ? a[as * i] : 0.0f);
        mx = v > mx || isnan(v) ? v : mx;
    }
    __m256 vm = _mm256_set1_ps(mx), vs = _mm256_setzero_ps();
    for (size_t i = 0; i < nv; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(load_sum256(x, xs, a, as, i), vm));
        _mm256_storeu_ps(y + i, e);
        vs = _mm256_add_ps(vs, e);
    }
    float sum = hsum256(vs);
    for (size_t i = nv; i < len; i++) {
        float d = x[xs * i] + (a != NULL ? a[as * i] : 0.0f) - mx;
        y[i] = d < EXP_CUT ? 0.0f : expf(d);
        sum += y[i];
    }
    __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (size_t i = 0; i < nv; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), inv));
    for (size_t i = nv; i < len; i++)
        y[i] *= 1.0f / sum;
}
AVX2 static void layernorm_row_avx2(const float *x, float *y, size_t len, const float *scale,
                                    const float *bias, float eps, float *mean, float *istd)
{
    size_t nv = len - len % 8;
    __m256 acc = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps();
    for (size_t i = 0; i < nv; i += 8)
        acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + i));
    double s = hsum256(acc);
    for (size_t i = nv; i < len; i++)
        s += x[i];
    float m = (float)(s / (double)len);
    __m256 vm = _mm256_set1_ps(m);
    for (size_t i = 0; i < nv; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        acc2 = _mm256_fmadd_ps(d, d, acc2);
    }
    double s2 = hsum256(acc2);
    for (size_t i = nv; i < len; i++)
        s2 += (double)(x[i] - m) * (x[i] - m);
    float is = (float)(1.0 / sqrt(s2 / (double)len + eps));
    __m256 vis = _mm256_set1_ps(is);
    for (size_t i = 0; i < nv; i += 8) {
        __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vis);
        __m256 b = bias != NULL ? _mm256_loadu_ps(bias + i) : _mm256_setzero_ps();
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(t, _mm256_loadu_ps(scale + i), b));
    }
    for (size_t i = nv; i < len; i++)
        y[i] = (x[i] - m) * is * scale[i] + (bias != NULL ? bias[i] : 0.0f);
    *mean = m;
    *istd = is;
}
#endif

typedef void (*softmax_row_fn)(const float *, size_t, const float *, size_t, float *, size_t);
typedef void (*layernorm_row_fn)(const float *, float *, size_t, const float *, const float *,
                                 float, float *, float *);

struct kernels {
    softmax_row_fn softmax;
    layernorm_row_fn layernorm;
};

static const struct kernels k_base = {softmax_row_base, layernorm_row_base};
#if defined(__x86_64__)
static const struct kernels k_avx2 = {softmax_row_avx2, layernorm_row_avx2};
static const struct kernels k_avx512 = {softmax_row_avx512, layernorm_row_avx512};
#endif

static _Atomic(const struct kernels *) g_best;

/* The kernels of a variant, or NULL where the CPU lacks its instructions. */
static const struct kernels *variant(enum veil__engine_vec_isa isa)
{
    switch (isa) {
    case VEIL__ENGINE_VEC_BASE:
        return &k_base;
#if defined(__x86_64__)
    case VEIL__ENGINE_VEC_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &k_avx2 : NULL;
    case VEIL__ENGINE_VEC_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") ? &k_avx512 : NULL;
#endif
    default:
        return NULL;
    }
}

enum veil__engine_vec_isa veil__engine_vec_best(void)
{
    for (int isa = VEIL__ENGINE_VEC_AVX512; isa > VEIL__ENGINE_VEC_BASE; isa--)
        if (variant((enum veil__engine_vec_isa)isa) != NULL)
            return (enum veil__engine_vec_isa)isa;
    return VEIL__ENGINE_VEC_BASE;
}

static const struct kernels *best(void)
{
    const struct kernels *k = atomic_load_explicit(&g_best, memory_order_relaxed);
    if (k == NULL) {
        k = variant(veil__engine_vec_best());
        atomic_store_explicit(&g_best, k, memory_order_relaxed);
    }
    return k;
}

void veil__engine_softmax_row(const float *x, size_t xs, const float *a, size_t as, float *y,
                              size_t len)
{
    best()->softmax(x, xs, a, as, y, len);
}

bool veil__engine_softmax_row_isa(enum veil__engine_vec_isa isa, const float *x, size_t xs,
                                  const float *a, size_t as, float *y, size_t len)
{
    const struct kernels *k = variant(isa);
    if (k == NULL)
        return false;
    k->softmax(x, xs, a, as, y, len);
    return true;
}

void veil__engine_layernorm_row(const float *x, float *y, size_t len, const float *scale,
                                const float *bias, float eps, float *mean, float *istd)
{
    best()->layernorm(x, y, len, scale, bias, eps, mean, istd);
}

bool veil__engine_layernorm_row_isa(enum veil__engine_vec_isa isa, const float *x, float *y,
                                    size_t len, const float *scale, const float *bias, float eps,
                                    float *mean, float *istd)
{
    const struct kernels *k = variant(isa);
    if (k == NULL)
        return false;
    k->layernorm(x, y, len, scale, bias, eps, mean, istd);
    return true;
}
