/*
 * 16-bit floats: IEEE 754 binary16 (float16) and bfloat16. The engine holds values of both
 * types as float, so these conversions run only at the edges: constants are widened at load,
 * model inputs when a run starts, outputs narrowed when it ends, and Cast or CastLike to a
 * 16-bit type rounds to that type's precision and keeps the result as float.
 *
 * Widening is exact. Narrowing rounds to nearest, ties to even; values beyond the largest
 * finite one round to infinity, subnormal results are produced (never flushed), and a NaN
 * stays a NaN of the same sign with its quiet bit set and the top bits of its payload kept,
 * which is what the x86 conversion instructions do. The bulk loops use those instructions
 * (F16C, AVX-512) for float16 and integer arithmetic for bfloat16, picked once from the CPU's
 * features; the portable loops compute the same bits, which the unit tests check.
 */
#include "engine_int.h"

#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

/* Field layouts of the two formats: mantissa bits, exponent bits, exponent bias. */
#define F16_MBITS 10u
#define F16_EBITS 5u
#define BF16_MBITS 7u
#define BF16_EBITS 8u

bool veil__engine_dt_is_half(enum veil_dtype dt)
{
    return dt == VEIL_DT_FLOAT16 || dt == VEIL_DT_BFLOAT16;
}

/*
 * Rounds v to the nearest value of a sign + ebits exponent + mbits mantissa format (ties to
 * even), from the bits of the double: the rounding is done once, on the exact value, so a
 * double, a float (widened exactly) and an integer up to 2^53 all round correctly.
 */
static uint16_t narrow_bits(double v, unsigned mbits, unsigned ebits)
{
    uint64_t x;
    memcpy(&x, &v, sizeof(x));
    uint16_t sign = (uint16_t)((x >> 48) & 0x8000u);
    uint64_t e = (x >> 52) & 0x7ffu, mant = x & ((UINT64_C(1) << 52) - 1);
    uint16_t emax = (uint16_t)((1u << ebits) - 1u), inf = (uint16_t)(emax << mbits);
    int64_t bias = ((int64_t)1 << (ebits - 1)) - 1;
    if (e == 0x7ff) {
        if (mant == 0)
            return sign | inf;
        /* Quiet NaN: the top payload bits, with the quiet bit (the mantissa's highest) set. */
        return (uint16_t)(sign | inf | (1u << (mbits - 1)) | (mant >> (52 - mbits)));
    }
    if (e == 0)
        return sign; /* zero or a double subnormal: far below the smallest 16-bit subnormal */
    int64_t ue = (int64_t)e - 1023;
    uint64_t sig = (UINT64_C(1) << 52) | mant;
    uint64_t h, rem, halfway;
    if (ue >= 1 - bias) {
        int64_t be = ue + bias;
        if (be >= (int64_t)emax)
            return sign | inf;
        unsigned shift = 52 - mbits;
        h = ((uint64_t)be << mbits) | (mant >> shift);
        rem = mant & ((UINT64_C(1) << shift) - 1);
        halfway = UINT64_C(1) << (shift - 1);
    } else {
        /* A subnormal result: the value in units of the smallest subnormal, 2^(1-bias-mbits). */
        int64_t shift = 52 + 1 - bias - (int64_t)mbits - ue;
        if (shift >= 64)
            return sign;
        h = sig >> shift;
        rem = sig & ((UINT64_C(1) << shift) - 1);
        halfway = UINT64_C(1) << (shift - 1);
    }
    /* A carry out of the mantissa moves to the next binade, up to the infinity pattern. */
    if (rem > halfway || (rem == halfway && (h & 1u)))
        h++;
    return (uint16_t)(sign | h);
}

uint16_t veil_half_from_double(enum veil_dtype dt, double v)
{
    VEIL_ASSERT(veil__engine_dt_is_half(dt));
    return dt == VEIL_DT_FLOAT16 ? narrow_bits(v, F16_MBITS, F16_EBITS)
                                 : narrow_bits(v, BF16_MBITS, BF16_EBITS);
}

static float f32_of_bits(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof(f));
    return f;
}

static uint32_t bits_of_f32(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof(b));
    return b;
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f)
        /* Infinity, or a NaN made quiet (as VCVTPH2PS does) with its payload kept. */
        return f32_of_bits(sign | 0x7f800000u | (m << 13) | (m != 0 ? 0x400000u : 0));
    if (e == 0) {
        /* Zero or a subnormal: m units of 2^-24, exact in float. */
        float v = (float)m * 5.9604644775390625e-8f;
        return f32_of_bits(sign | bits_of_f32(v));
    }
    return f32_of_bits(sign | ((e + 112u) << 23) | (m << 13));
}

static float bf16_to_f32(uint16_t h)
{
    return f32_of_bits((uint32_t)h << 16);
}

/* float to bfloat16 on the float's bits: the same result as narrow_bits, without a double. */
static uint16_t f32_to_bf16(float f)
{
    uint32_t x = bits_of_f32(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float veil_half_to_float(enum veil_dtype dt, uint16_t bits)
{
    VEIL_ASSERT(veil__engine_dt_is_half(dt));
    return dt == VEIL_DT_FLOAT16 ? f16_to_f32(bits) : bf16_to_f32(bits);
}

/* ---- Bulk loops: portable ---- */

/*
 * The 16-bit side of every bulk loop may have any alignment (a tensor inside a request body,
 * say), so it is read and written through memcpy, which compiles to plain moves.
 */
static uint16_t ld16(const void *p, size_t i)
{
    uint16_t h;
    memcpy(&h, (const uint8_t *)p + i * sizeof(h), sizeof(h));
    return h;
}

static void st16(void *p, size_t i, uint16_t h)
{
    memcpy((uint8_t *)p + i * sizeof(h), &h, sizeof(h));
}

/* Element i of an array of 16-bit patterns, as a byte address. */
static const void *at16(const void *p, size_t i)
{
    return (const uint8_t *)p + i * sizeof(uint16_t);
}

static void *at16_mut(void *p, size_t i)
{
    return (uint8_t *)p + i * sizeof(uint16_t);
}

static void f16_widen_base(const void *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = f16_to_f32(ld16(src, i));
}

static void f16_narrow_base(const float *src, void *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        st16(dst, i, narrow_bits((double)src[i], F16_MBITS, F16_EBITS));
}

static void f16_round_base(const float *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = f16_to_f32(narrow_bits((double)src[i], F16_MBITS, F16_EBITS));
}

static void bf16_widen_base(const void *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = bf16_to_f32(ld16(src, i));
}

static void bf16_narrow_base(const float *src, void *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        st16(dst, i, f32_to_bf16(src[i]));
}

static void bf16_round_base(const float *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = bf16_to_f32(f32_to_bf16(src[i]));
}

/* ---- Bulk loops: AVX2 with F16C, and AVX-512 ---- */

#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2,f16c")))
#define AVX512 __attribute__((target("avx512f,avx512bw")))

/*
 * The tail of each loop (fewer elements than one vector) goes through a zeroed block on the
 * stack, so every element is converted by the same instruction whatever its position.
 */

AVX2 static void f16_widen_avx2(const void *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)at16(src, i))));
    if (i < n) {
        uint16_t t[8] = {0};
        float o[8];
        memcpy(t, at16(src, i), (n - i) * sizeof(*t));
        _mm256_storeu_ps(o, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)t)));
        memcpy(dst + i, o, (n - i) * sizeof(*o));
    }
}

AVX2 static void f16_narrow_avx2(const float *src, void *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)at16_mut(dst, i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        float t[8] = {0};
        uint16_t o[8];
        memcpy(t, src + i, (n - i) * sizeof(*t));
        _mm_storeu_si128((__m128i *)o,
                         _mm256_cvtps_ph(_mm256_loadu_ps(t), _MM_FROUND_TO_NEAREST_INT));
        memcpy(at16_mut(dst, i), o, (n - i) * sizeof(*o));
    }
}

AVX2 static inline __m256 f16_round8(__m256 v)
{
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

AVX2 static void f16_round_avx2(const float *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, f16_round8(_mm256_loadu_ps(src + i)));
    if (i < n) {
        float t[8] = {0};
        memcpy(t, src + i, (n - i) * sizeof(*t));
        _mm256_storeu_ps(t, f16_round8(_mm256_loadu_ps(t)));
        memcpy(dst + i, t, (n - i) * sizeof(*t));
    }
}

/* bfloat16 bits of 8 floats in the low halves of 32-bit lanes (see f32_to_bf16). */
AVX2 static inline __m256i bf16_bits8(__m256i x)
{
    __m256i ax = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
    __m256i nan = _mm256_cmpgt_epi32(ax, _mm256_set1_epi32(0x7f800000));
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), odd);
    __m256i q = _mm256_or_si256(x, _mm256_set1_epi32(0x400000));
    return _mm256_srli_epi32(_mm256_blendv_epi8(r, q, nan), 16);
}

AVX2 static void bf16_widen_avx2(const void *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)at16(src, i)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_slli_epi32(w, 16));
    }
    bf16_widen_base(at16(src, i), dst + i, n - i);
}

AVX2 static void bf16_narrow_avx2(const float *src, void *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i b = bf16_bits8(_mm256_loadu_si256((const __m256i *)(src + i)));
        /* Lanes hold values below 2^16, so unsigned saturation packs them exactly. */
        __m128i lo = _mm256_castsi256_si128(b), hi = _mm256_extracti128_si256(b, 1);
        _mm_storeu_si128((__m128i *)at16_mut(dst, i), _mm_packus_epi32(lo, hi));
    }
    bf16_narrow_base(src + i, at16_mut(dst, i), n - i);
}

AVX2 static void bf16_round_avx2(const float *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i b = bf16_bits8(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_slli_epi32(b, 16));
    }
    bf16_round_base(src + i, dst + i, n - i);
}

AVX512 static void f16_widen_avx512(const void *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i,
                         _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)at16(src, i))));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        __m256i h = _mm512_castsi512_si256(_mm512_maskz_loadu_epi16((__mmask32)k, at16(src, i)));
        _mm512_mask_storeu_ps(dst + i, k, _mm512_cvtph_ps(h));
    }
}

AVX512 static void f16_narrow_avx512(const float *src, void *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)at16_mut(dst, i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(k, src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm512_mask_storeu_epi16(at16_mut(dst, i), (__mmask32)k, _mm512_castsi256_si512(h));
    }
}

AVX512 static void f16_round_avx512(const float *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(k, src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm512_mask_storeu_ps(dst + i, k, _mm512_cvtph_ps(h));
    }
}

AVX512 static inline __m512i bf16_bits16(__m512i x)
{
    __m512i ax = _mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff));
    __mmask16 nan = _mm512_cmpgt_epu32_mask(ax, _mm512_set1_epi32(0x7f800000));
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), odd);
    r = _mm512_mask_or_epi32(r, nan, x, _mm512_set1_epi32(0x400000));
    return _mm512_srli_epi32(r, 16);
}

AVX512 static void bf16_widen_avx512(const void *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        __m256i h = _mm512_castsi512_si256(_mm512_maskz_loadu_epi16((__mmask32)k, at16(src, i)));
        __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
        _mm512_mask_storeu_epi32(dst + i, k, w);
    }
}

AVX512 static void bf16_narrow_avx512(const float *src, void *dst, size_t n)
{
    size_t i = 0;
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        __m512i b = bf16_bits16(_mm512_maskz_loadu_epi32(k, src + i));
        _mm512_mask_cvtepi32_storeu_epi16(at16_mut(dst, i), k, b);
    }
}

AVX512 static void bf16_round_avx512(const float *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        __m512i b = bf16_bits16(_mm512_maskz_loadu_epi32(k, src + i));
        _mm512_mask_storeu_epi32(dst + i, k, _mm512_slli_epi32(b, 16));
    }
}
#endif

/* ---- Dispatch ---- */

struct half_kernels {
    void (*widen[2])(const void *, float *, size_t); /* [0] float16, [1] bfloat16 */
    void (*narrow[2])(const float *, void *, size_t);
    void (*round[2])(const float *, float *, size_t);
};

static const struct half_kernels k_base = {
    {f16_widen_base, bf16_widen_base},
    {f16_narrow_base, bf16_narrow_base},
    {f16_round_base, bf16_round_base},
};
#if defined(__x86_64__)
static const struct half_kernels k_avx2 = {
    {f16_widen_avx2, bf16_widen_avx2},
    {f16_narrow_avx2, bf16_narrow_avx2},
    {f16_round_avx2, bf16_round_avx2},
};
static const struct half_kernels k_avx512 = {
    {f16_widen_avx512, bf16_widen_avx512},
    {f16_narrow_avx512, bf16_narrow_avx512},
    {f16_round_avx512, bf16_round_avx512},
};
#endif

static _Atomic(const struct half_kernels *) g_half;

#if defined(__x86_64__)
/* F16C (CPUID leaf 1, ECX bit 29): clang's __builtin_cpu_supports does not know the name. */
static bool has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
#endif

/* The kernels of a variant, or NULL where the CPU lacks its instructions. */
static const struct half_kernels *half_variant(enum veil__engine_vec_isa isa)
{
    switch (isa) {
    case VEIL__ENGINE_VEC_BASE:
        return &k_base;
#if defined(__x86_64__)
    case VEIL__ENGINE_VEC_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && has_f16c() ? &k_avx2 : NULL;
    case VEIL__ENGINE_VEC_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") ? &k_avx512
                                                                                       : NULL;
#endif
    default:
        return NULL;
    }
}

static const struct half_kernels *half_best(void)
{
    const struct half_kernels *k = atomic_load_explicit(&g_half, memory_order_relaxed);
    if (k == NULL) {
        for (int isa = VEIL__ENGINE_VEC_AVX512; k == NULL && isa >= VEIL__ENGINE_VEC_BASE; isa--)
            k = half_variant((enum veil__engine_vec_isa)isa);
        atomic_store_explicit(&g_half, k, memory_order_relaxed);
    }
    return k;
}

static size_t kind(enum veil_dtype dt)
{
    VEIL_ASSERT(veil__engine_dt_is_half(dt));
    return dt == VEIL_DT_FLOAT16 ? 0 : 1;
}

void veil_half_widen(enum veil_dtype dt, const void *src, float *dst, size_t n)
{
    half_best()->widen[kind(dt)](src, dst, n);
}

void veil_half_narrow(enum veil_dtype dt, const float *src, void *dst, size_t n)
{
    half_best()->narrow[kind(dt)](src, dst, n);
}

void veil__engine_half_round(enum veil_dtype dt, const float *src, float *dst, size_t n)
{
    half_best()->round[kind(dt)](src, dst, n);
}

bool veil__engine_half_widen_isa(enum veil__engine_vec_isa isa, enum veil_dtype dt, const void *src,
                                 float *dst, size_t n)
{
    const struct half_kernels *k = half_variant(isa);
    if (k == NULL)
        return false;
    k->widen[kind(dt)](src, dst, n);
    return true;
}

bool veil__engine_half_narrow_isa(enum veil__engine_vec_isa isa, enum veil_dtype dt,
                                  const float *src, void *dst, size_t n)
{
    const struct half_kernels *k = half_variant(isa);
    if (k == NULL)
        return false;
    k->narrow[kind(dt)](src, dst, n);
    return true;
}

bool veil__engine_half_round_isa(enum veil__engine_vec_isa isa, enum veil_dtype dt,
                                 const float *src, float *dst, size_t n)
{
    const struct half_kernels *k = half_variant(isa);
    if (k == NULL)
        return false;
    k->round[kind(dt)](src, dst, n);
    return true;
}

/* ---- On the run's threads (large model inputs and outputs) ---- */

#define HALF_GRAIN 65536

enum half_op { H_WIDEN, H_NARROW, H_ROUND };

struct half_job {
    enum half_op op;
    enum veil_dtype dt;
    const void *src;
    void *dst;
};

static void half_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct half_job *j = ud;
    size_t n = (size_t)(hi - lo);
    switch (j->op) {
    case H_WIDEN:
        veil_half_widen(j->dt, at16(j->src, lo), (float *)j->dst + lo, n);
        break;
    case H_NARROW:
        veil_half_narrow(j->dt, (const float *)j->src + lo, at16_mut(j->dst, lo), n);
        break;
    case H_ROUND:
        veil__engine_half_round(j->dt, (const float *)j->src + lo, (float *)j->dst + lo, n);
        break;
    }
}

void veil__engine_half_widen_par(enum veil_dtype dt, const void *src, float *dst, size_t n)
{
    struct half_job j = {H_WIDEN, dt, src, dst};
    veil__engine_parallel(n, HALF_GRAIN, half_range, &j);
}

void veil__engine_half_narrow_par(enum veil_dtype dt, const float *src, void *dst, size_t n)
{
    struct half_job j = {H_NARROW, dt, src, dst};
    veil__engine_parallel(n, HALF_GRAIN, half_range, &j);
}

void veil__engine_half_round_par(enum veil_dtype dt, const float *src, float *dst, size_t n)
{
    struct half_job j = {H_ROUND, dt, src, dst};
    veil__engine_parallel(n, HALF_GRAIN, half_range, &j);
}

/* ---- Where 16-bit values are rounded (planning) ---- */

/*
 * ONNX Runtime runs float16 models on CPUs without 16-bit arithmetic by computing every
 * operator that lacks a float16 kernel in float between inserted Casts, then deleting each
 * inserted Cast that meets a Cast going the other way (the model's own Casts to float16
 * included), so values stay float across runs of such operators. A value is held as float16,
 * and so rounded, only where one of its float16 kernels reads it (data movement, Max, Min,
 * Clip, Round, LayerNormalization, Shape, Size) or it is a graph output; a Cast from float16
 * reads the float result unless another Cast made its input or it is a graph output. The
 * engine rounds at the same
 * places, so its
 * float16 results match ONNX Runtime's bit for bit wherever the float kernels agree:
 *   - a data-movement operator, Max, Min or Clip rounds what it writes (which commutes with
 *     what it does) unless its inputs hold 16-bit values already;
 *   - a value read by Round or LayerNormalization (which do not commute with rounding) is
 *     rounded by its producer, when no float operator reads it too;
 *   - a Cast from float to a 16-bit type copies (the runtime deletes it next to float
 *     operators); from a double or an integer it rounds once, and between the two 16-bit
 *     types it rounds both ways;
 *   - a Cast from a 16-bit value rounds it first only where another Cast made it (a pair of
 *     the model's own Casts, which the runtime keeps) or it is a graph output.
 * Graph outputs are narrowed when the run ends. A value that float operators read is left as
 * it is for them (the runtime's inserted Casts go to the 16-bit readers only), except behind
 * a view (Reshape, Squeeze...), which shares its input's storage and is left unrounded then.
 */

enum {
    HR_FLOAT = 1,   /* an operator computing in float */
    HR_MOVE = 2,    /* data movement, Max, Min, Clip: commute with rounding */
    HR_NONCOMM = 4, /* Round, LayerNormalization: 16-bit kernels that do not */
    HR_CAST = 8,    /* Cast, CastLike */
    HR_SHAPE = 16,  /* Shape, Size: read only the shape (neither a float nor a 16-bit read) */
    HR_OUTPUT = 32, /* a graph output */
};

static unsigned op_class(const char *op)
{
    static const char *const move[] = {
        "Concat",   "Split",     "Slice",           "Transpose", "Reshape", "Flatten",
        "Squeeze",  "Unsqueeze", "Identity",        "Expand",    "Gather",  "GatherElements",
        "GatherND", "ScatterND", "ScatterElements", "Max",       "Min",     "Clip",
    };
    for (size_t i = 0; i < sizeof(move) / sizeof(move[0]); i++)
        if (strcmp(op, move[i]) == 0)
            return HR_MOVE;
    if (strcmp(op, "Round") == 0 || strcmp(op, "LayerNormalization") == 0)
        return HR_NONCOMM;
    if (strcmp(op, "Cast") == 0 || strcmp(op, "CastLike") == 0)
        return HR_CAST;
    if (strcmp(op, "Shape") == 0 || strcmp(op, "Size") == 0)
        return HR_SHAPE;
    return HR_FLOAT;
}

veil_err veil__engine_half_readers(const struct veil__engine_graph *g, uint8_t **out)
{
    uint8_t *r = veil_calloc(g->n_values + 1, sizeof(uint8_t));
    *out = NULL;
    if (r == NULL)
        return VEIL_E_NOMEM;
    for (size_t s = 0; s < g->n_order; s++) {
        const struct veil__engine_node *n = &g->nodes[g->order[s]];
        uint8_t cls = (uint8_t)op_class(n->op_type);
        for (size_t k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0)
                r[n->in[k]] |= cls;
        if (n->add_in >= 0)
            r[n->add_in] |= HR_FLOAT;
    }
    for (size_t i = 0; i < g->n_outputs; i++)
        r[g->outputs[i]] |= HR_OUTPUT;
    *out = r;
    return VEIL_OK;
}

static bool is_half_value(const struct veil__engine_pval *pv)
{
    return pv->t.dt == VEIL_DT_FLOAT && veil__engine_dt_is_half(pv->ldt);
}

void veil__engine_half_plan_node(const struct veil__engine_graph *g,
                                 const struct veil__engine_node *n, bool view,
                                 struct veil__engine_pval *vals, const uint8_t *readers,
                                 struct veil__engine_kparams *kp)
{
    unsigned cls = op_class(n->op_type);
    const struct veil__engine_pval *in0 = n->n_in > 0 && n->in[0] >= 0 ? &vals[n->in[0]] : NULL;
    if (cls == HR_CAST && in0 != NULL && is_half_value(in0) && !in0->half_exact) {
        /*
         * The input is read as 16-bit only where another Cast made it or it is a graph output:
         * ONNX Runtime keeps a pair of the model's own Casts and the float16 tensor of an
         * output, but rewires a Cast from float16 whose input a float operator computed to
         * read that operator's float result, even where a Shape or a Concat reads a float16
         * copy of it.
         */
        int32_t prod = g->values[n->in[0]].producer;
        bool held = (readers[n->in[0]] & HR_OUTPUT) != 0 ||
                    (prod >= 0 && op_class(g->nodes[prod].op_type) == HR_CAST);
        enum veil_dtype to = vals[n->out[0]].ldt;
        if (held || (veil__engine_dt_is_half(to) && to != in0->ldt))
            kp->cast.from_half = in0->ldt;
    }
    for (size_t k = 0; k < n->n_out; k++) {
        int32_t v = n->out[k];
        if (v < 0 || !is_half_value(&vals[v]))
            continue;
        struct veil__engine_pval *pv = &vals[v];
        pv->round_half = false;
        if (cls == HR_CAST) {
            /*
             * From float, a copy, unless Round or LayerNormalization (and no float operator)
             * reads the result; from anything else (a double, an integer, the other 16-bit
             * type) the kernel rounds.
             */
            bool from_float = in0 != NULL && in0->t.dt == VEIL_DT_FLOAT && !is_half_value(in0);
            bool round =
                !from_float || ((readers[v] & HR_NONCOMM) != 0 && (readers[v] & HR_FLOAT) == 0);
            if (round)
                kp->cast.to_half = pv->ldt;
            pv->half_exact = round;
            continue;
        }
        if (cls == HR_MOVE) {
            bool exact = true;
            for (size_t i = 0; i < n->n_in; i++)
                if (n->in[i] >= 0 && is_half_value(&vals[n->in[i]]) && !vals[n->in[i]].half_exact)
                    exact = false;
            bool shared = view && (readers[n->in[0]] & HR_FLOAT) != 0;
            pv->round_half = !exact && !shared;
            pv->half_exact = exact || !shared;
            continue;
        }
        /* A float operator, Round or LayerNormalization: rounded for Round/LN readers only. */
        pv->round_half =
            cls == HR_NONCOMM || ((readers[v] & HR_NONCOMM) != 0 && (readers[v] & HR_FLOAT) == 0);
        pv->half_exact = pv->round_half;
    }
}
