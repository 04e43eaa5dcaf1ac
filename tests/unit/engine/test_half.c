/*
 * 16-bit floats (src/engine/ops/half.c): every float16 and bfloat16 bit pattern widened and
 * narrowed back, rounding to nearest even at and around every midpoint, overflow, subnormals
 * and NaN, a property check (the nearest neighbour wins) over a sweep of all floats, every
 * vector variant the CPU has against the portable loops; then models with float16 and
 * bfloat16 inputs, outputs, initializers (raw and int32_data), Cast, CastLike, Constant,
 * ConstantOfShape, EyeLike and data-movement operators through the public API.
 */
#include "harness.h"
#include "engine_test.h"
#include "model_builder.h"

#include "engine_int.h"
#include "veil/engine.h"

#include <float.h>
#include <math.h>
#include <stdio.h>

static uint32_t fbits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof(b));
    return b;
}

static float fof(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof(f));
    return f;
}

/* The value of a float16 pattern from its fields (an oracle independent of half.c). */
static double f16_value(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double s = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 0x1f)
        return m ? NAN : s * INFINITY;
    if (e == 0)
        return s * ldexp(m, -24);
    return s * ldexp(1024 + m, e - 25);
}

/* The expected narrowing of a widened pattern: itself, with a NaN's quiet bit set. */
static uint16_t quieted(enum veil_dtype dt, uint16_t h)
{
    bool f16 = dt == VEIL_DT_FLOAT16;
    uint16_t exp = f16 ? 0x7c00 : 0x7f80, mant = f16 ? 0x03ff : 0x007f;
    if ((h & exp) == exp && (h & mant) != 0)
        return (uint16_t)(h | (f16 ? 0x0200 : 0x0040));
    return h;
}

static const enum veil__engine_vec_isa k_isas[] = {VEIL__ENGINE_VEC_BASE, VEIL__ENGINE_VEC_AVX2,
                                                   VEIL__ENGINE_VEC_AVX512};
static const char *const k_isa_names[] = {"base", "avx2", "avx512"};

TEST(every_float16_pattern)
{
    static uint16_t all[65536], back[65536];
    static float wide[65536], ref[65536], rnd[65536];
    for (uint32_t h = 0; h < 65536; h++) {
        all[h] = (uint16_t)h;
        double v = f16_value((uint16_t)h);
        float w = veil_half_to_float(VEIL_DT_FLOAT16, (uint16_t)h);
        if (isnan(v)) {
            /* A NaN keeps its sign and payload and becomes quiet. */
            uint32_t want = ((h & 0x8000u) << 16) | 0x7fc00000u | ((h & 0x3ffu) << 13);
            if (fbits(w) != want)
                HFAIL("float16 %04x widened to %08x, expected %08x", h, fbits(w), want);
        } else if (fbits(w) != fbits((float)v)) {
            HFAIL("float16 %04x widened to %a, expected %a", h, (double)w, v);
        }
        ref[h] = w;
        uint16_t n = veil_half_from_double(VEIL_DT_FLOAT16, (double)w);
        if (n != quieted(VEIL_DT_FLOAT16, (uint16_t)h))
            HFAIL("float16 %04x narrowed back to %04x", h, n);
    }
    for (size_t k = 0; k < sizeof(k_isas) / sizeof(k_isas[0]); k++) {
        if (!veil__engine_half_widen_isa(k_isas[k], VEIL_DT_FLOAT16, all, wide, 65536)) {
            fprintf(stderr, "  (no %s variant on this CPU)\n", k_isa_names[k]);
            continue;
        }
        ASSERT_MEM_EQ(wide, ref, sizeof(ref));
        ASSERT_TRUE(veil__engine_half_narrow_isa(k_isas[k], VEIL_DT_FLOAT16, wide, back, 65536));
        ASSERT_TRUE(veil__engine_half_round_isa(k_isas[k], VEIL_DT_FLOAT16, wide, rnd, 65536));
        for (uint32_t h = 0; h < 65536; h++)
            if (back[h] != quieted(VEIL_DT_FLOAT16, (uint16_t)h) || fbits(rnd[h]) != fbits(ref[h]))
                HFAIL("%s: float16 %04x narrowed to %04x, rounded to %08x", k_isa_names[k], h,
                      back[h], fbits(rnd[h]));
        /* Odd lengths and offsets exercise the tails. */
        for (size_t len = 0; len < 40; len++) {
            memset(wide, 0, 64 * sizeof(float));
            ASSERT_TRUE(veil__engine_half_widen_isa(k_isas[k], VEIL_DT_FLOAT16, all + 15360 + len,
                                                    wide, len));
            for (size_t i = 0; i < 64; i++)
                ASSERT_EQ_U64(fbits(wide[i]), i < len ? fbits(ref[15360 + len + i]) : 0);
            /* The 16-bit side at an odd address (a tensor inside a request body). */
            uint8_t raw[2 * 40 + 3] = {0}, out16[2 * 40 + 3];
            memcpy(raw + 1, all + 15360 + len, len * 2);
            memset(wide, 0, 64 * sizeof(float));
            ASSERT_TRUE(
                veil__engine_half_widen_isa(k_isas[k], VEIL_DT_FLOAT16, raw + 1, wide, len));
            for (size_t i = 0; i < len; i++)
                ASSERT_EQ_U64(fbits(wide[i]), fbits(ref[15360 + len + i]));
            memset(out16, 0xee, sizeof(out16));
            ASSERT_TRUE(
                veil__engine_half_narrow_isa(k_isas[k], VEIL_DT_FLOAT16, wide, out16 + 1, len));
            ASSERT_MEM_EQ(out16 + 1, raw + 1, len * 2);
            ASSERT_EQ_U64(out16[0], 0xee);
            ASSERT_EQ_U64(out16[len * 2 + 1], 0xee);
        }
    }
}

TEST(float16_rounding_cases)
{
    struct {
        double v;
        uint16_t want;
    } cases[] = {
        {0.0, 0x0000},
        {-0.0, 0x8000},
        {1.0, 0x3c00},
        {-2.0, 0xc000},
        {65504.0, 0x7bff},  /* the largest finite float16 */
        {65519.99, 0x7bff}, /* below the midpoint to 65536 */
        {65520.0, 0x7c00},  /* the midpoint: ties to even, which is infinity */
        {1e10, 0x7c00},     /* overflow */
        {-1e300, 0xfc00},   /* overflow, negative */
        {INFINITY, 0x7c00},
        {-INFINITY, 0xfc00},
        {ldexp(1, -14), 0x0400},         /* the smallest normal */
        {ldexp(1023, -24), 0x03ff},      /* the largest subnormal */
        {ldexp(1, -24), 0x0001},         /* the smallest subnormal */
        {ldexp(1, -25), 0x0000},         /* half of it: a tie, to even (zero) */
        {ldexp(1.0000001, -25), 0x0001}, /* just above the tie */
        {ldexp(3, -25), 0x0002},         /* 1.5 units: a tie, to even (2) */
        {ldexp(5, -25), 0x0002},         /* 2.5 units: a tie, to even (2) */
        {-ldexp(1, -26), 0x8000},        /* underflow keeps the sign */
        {1e-300, 0x0000},
        {1.0 + ldexp(1, -11), 0x3c00},     /* midpoint of 1 and its successor: even */
        {1.0 + 3 * ldexp(1, -11), 0x3c02}, /* next midpoint: up to even */
        /* One rounding from the double: a float would drop the 2^-40 and tie to even. */
        {1.0 + ldexp(1, -11) + ldexp(1, -40), 0x3c01},
        {0.1, 0x2e66},
        {2049.0, 0x6800}, /* integers above 2048 are spaced by 2: ties to even */
        {2051.0, 0x6802},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint16_t got = veil_half_from_double(VEIL_DT_FLOAT16, cases[i].v);
        if (got != cases[i].want)
            HFAIL("%a became float16 %04x, expected %04x", cases[i].v, got, cases[i].want);
    }
    ASSERT_EQ_U64(veil_half_from_double(VEIL_DT_FLOAT16, NAN) & 0x7e00, 0x7e00);
    ASSERT_EQ_U64(veil_half_from_double(VEIL_DT_FLOAT16, -NAN) & 0xfe00, 0xfe00);
}

/*
 * Floats at, just below and just above the midpoint between every pair of neighbouring
 * 16-bit values of dt (both signs) round to the nearer one, and ties to the even one, in every
 * variant.
 */
static bool midpoints(enum veil_dtype dt, uint16_t top, double (*value)(uint16_t), char *why,
                      size_t why_len)
{
    size_t n = (size_t)top * 6, k = 0;
    float *x = calloc(n, sizeof(float)), *r = calloc(n, sizeof(float));
    uint16_t *want = calloc(n, sizeof(uint16_t)), *got = calloc(n, sizeof(uint16_t));
    bool ok = x != NULL && r != NULL && want != NULL && got != NULL;
    for (uint16_t h = 0; ok && h < top; h++) {
        float mid = (float)((value(h) + value((uint16_t)(h + 1))) / 2);
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : h;
        float xs[3] = {nextafterf(mid, 0.0f), mid, nextafterf(mid, INFINITY)};
        uint16_t ws[3] = {h, even, (uint16_t)(h + 1)};
        for (int s = 0; s < 2; s++)
            for (int j = 0; j < 3; j++) {
                x[k] = s ? -xs[j] : xs[j];
                want[k++] = (uint16_t)(ws[j] | (s ? 0x8000 : 0));
            }
    }
    for (size_t v = 0; ok && v < sizeof(k_isas) / sizeof(k_isas[0]); v++) {
        if (!veil__engine_half_narrow_isa(k_isas[v], dt, x, got, n))
            continue;
        ok = veil__engine_half_round_isa(k_isas[v], dt, x, r, n);
        for (size_t i = 0; ok && i < n; i++) {
            uint16_t d = veil_half_from_double(dt, (double)x[i]);
            if (got[i] != want[i] || d != want[i] ||
                fbits(r[i]) != fbits(veil_half_to_float(dt, want[i]))) {
                snprintf(why, why_len, "%s: %a became %04x (double path %04x), expected %04x",
                         k_isa_names[v], (double)x[i], got[i], d, want[i]);
                ok = false;
            }
        }
    }
    free(x);
    free(r);
    free(want);
    free(got);
    return ok;
}

static double bf16_value(uint16_t h)
{
    return (double)fof((uint32_t)h << 16);
}

TEST(midpoints_round_to_nearest_even)
{
    char why[256] = "allocation failed";
    /* Up to the largest finite value: its midpoint with infinity rounds up to infinity. */
    if (!midpoints(VEIL_DT_FLOAT16, 0x7bff, f16_value, why, sizeof(why)))
        HFAIL("float16: %s", why);
    if (!midpoints(VEIL_DT_BFLOAT16, 0x7f7f, bf16_value, why, sizeof(why)))
        HFAIL("bfloat16: %s", why);
    /* The midpoint above the largest finite values (odd patterns) ties up to infinity. */
    ASSERT_EQ_U64(veil_half_from_double(VEIL_DT_FLOAT16, 65520.0), 0x7c00);
    ASSERT_EQ_U64(veil_half_from_double(VEIL_DT_BFLOAT16, (double)fof(0x7f7f8000u)), 0x7f80);
    ASSERT_EQ_U64(veil_half_from_double(VEIL_DT_BFLOAT16, (double)fof(0x7f7f7fffu)), 0x7f7f);
}

/*
 * Over a sweep of float bit patterns (a prime stride through all 2^32), every variant agrees
 * with the scalar conversion, which rounds to a nearest 16-bit value (checked against the
 * neighbours in exact double arithmetic) and, on a tie, to the even one.
 */
static bool sweep(enum veil_dtype dt, char *why, size_t why_len)
{
    const uint32_t step = 4093;
    size_t n = (size_t)(UINT32_MAX / step) + 1;
    float *x = malloc(n * sizeof(float));
    uint16_t *got = malloc(n * sizeof(uint16_t));
    bool ok = x != NULL && got != NULL;
    for (size_t i = 0; ok && i < n; i++)
        x[i] = fof((uint32_t)(i * step));
    for (size_t i = 0; ok && i < n; i++) {
        uint16_t r = veil_half_from_double(dt, (double)x[i]);
        double v = (double)x[i], rv = (double)veil_half_to_float(dt, r);
        if (isnan(v)) {
            ok = isnan(rv) && signbit(rv) == signbit(v);
        } else if (isinf(v)) {
            ok = rv == v;
        } else if (isinf(rv)) {
            /* Overflow only past the midpoint above the largest finite value. */
            uint16_t maxf = (uint16_t)((r & 0x8000) | (dt == VEIL_DT_FLOAT16 ? 0x7bff : 0x7f7f));
            double mx = fabs((double)veil_half_to_float(dt, maxf));
            double ulp = dt == VEIL_DT_FLOAT16 ? 32.0 : ldexp(1, 127 - 7);
            ok = fabs(v) >= mx + ulp / 2;
        } else {
            for (int d = -1; ok && d <= 1; d += 2) {
                uint16_t nb = (uint16_t)(r + d);
                if ((r & 0x7fff) == 0 && d < 0)
                    nb = (uint16_t)((r ^ 0x8000) + 1); /* across zero */
                double nv = (double)veil_half_to_float(dt, nb);
                if (isnan(nv) || isinf(nv))
                    continue;
                double e0 = fabs(v - rv), e1 = fabs(v - nv);
                ok = e0 < e1 || (e0 == e1 && (r & 1) == 0);
            }
        }
        if (!ok)
            snprintf(why, why_len, "%a rounded to %04x", v, r);
    }
    for (size_t k = 0; ok && k < sizeof(k_isas) / sizeof(k_isas[0]); k++) {
        if (!veil__engine_half_narrow_isa(k_isas[k], dt, x, got, n))
            continue;
        for (size_t i = 0; ok && i < n; i++)
            if (got[i] != veil_half_from_double(dt, (double)x[i])) {
                snprintf(why, why_len, "%s: %08x became %04x, scalar %04x", k_isa_names[k],
                         fbits(x[i]), got[i], veil_half_from_double(dt, (double)x[i]));
                ok = false;
            }
    }
    free(x);
    free(got);
    return ok;
}

TEST(sweep_of_floats)
{
    char why[256] = "allocation failed";
    if (!sweep(VEIL_DT_FLOAT16, why, sizeof(why)))
        HFAIL("float16: %s", why);
    if (!sweep(VEIL_DT_BFLOAT16, why, sizeof(why)))
        HFAIL("bfloat16: %s", why);
}

TEST(every_bfloat16_pattern)
{
    static uint16_t all[65536], back[65536];
    static float wide[65536];
    for (uint32_t h = 0; h < 65536; h++) {
        all[h] = (uint16_t)h;
        float w = veil_half_to_float(VEIL_DT_BFLOAT16, (uint16_t)h);
        ASSERT_EQ_U64(fbits(w), h << 16);
        ASSERT_EQ_U64(veil_half_from_double(VEIL_DT_BFLOAT16, (double)w),
                      quieted(VEIL_DT_BFLOAT16, (uint16_t)h));
    }
    for (size_t k = 0; k < sizeof(k_isas) / sizeof(k_isas[0]); k++) {
        if (!veil__engine_half_widen_isa(k_isas[k], VEIL_DT_BFLOAT16, all, wide, 65536))
            continue;
        ASSERT_TRUE(veil__engine_half_narrow_isa(k_isas[k], VEIL_DT_BFLOAT16, wide, back, 65536));
        for (uint32_t h = 0; h < 65536; h++)
            if (fbits(wide[h]) != h << 16 || back[h] != quieted(VEIL_DT_BFLOAT16, (uint16_t)h))
                HFAIL("%s: bfloat16 %04x widened to %08x, narrowed to %04x", k_isa_names[k], h,
                      fbits(wide[h]), back[h]);
    }
    struct {
        double v;
        uint16_t want;
    } cases[] = {
        {1.0, 0x3f80},
        {1.0 + ldexp(1, -8), 0x3f80},                 /* a tie, to even */
        {1.0 + 3 * ldexp(1, -8), 0x3f82},             /* a tie, to even (up) */
        {1.0 + ldexp(1, -8) + ldexp(1, -40), 0x3f81}, /* one rounding from the double */
        {0.47892547, 0x3ef5},                         /* ONNX 1.12's data truncates to 3ef5 */
        {0.81910545, 0x3f52},                         /* where truncation gives 3f51 */
        {3.4e38, 0x7f80},                             /* past the largest finite bfloat16 */
        {1e39, 0x7f80},                               /* beyond float's range */
        {-1e39, 0xff80},
        {ldexp(1, -133), 0x0001}, /* the smallest subnormal */
        {ldexp(1, -134), 0x0000}, /* half of it: ties to zero */
        {ldexp(3, -134), 0x0002},
        {1e-45, 0x0000},
        {-0.0, 0x8000},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint16_t got = veil_half_from_double(VEIL_DT_BFLOAT16, cases[i].v);
        if (got != cases[i].want)
            HFAIL("%a became bfloat16 %04x, expected %04x", cases[i].v, got, cases[i].want);
    }
}

/* ---- Models ---- */

static VeilOnnx__TensorProto *tensor16(struct mb *b, const char *name, int dt, size_t rank,
                                       const int64_t *dims, const uint16_t *bits, size_t n)
{
    return mb_tensor(b, name, dt, rank, dims, bits, n * sizeof(uint16_t));
}

/* The same, with the patterns in int32_data (ONNX's other encoding of 16-bit floats). */
static VeilOnnx__TensorProto *tensor16_i32(struct mb *b, const char *name, int dt, size_t rank,
                                           const int64_t *dims, const uint16_t *bits, size_t n)
{
    VeilOnnx__TensorProto *t = mb_tensor(b, name, dt, rank, dims, NULL, 0);
    t->has_raw_data = 0;
    t->n_int32_data = n;
    t->int32_data = mb_alloc(b, n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++)
        t->int32_data[i] = bits[i];
    return t;
}

static VeilOnnx__AttributeProto *attr_tensor(struct mb *b, const char *name,
                                             VeilOnnx__TensorProto *t)
{
    VeilOnnx__AttributeProto *a =
        mb_attr_new(b, name, VEIL_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
    a->t = t;
    return a;
}

static uint16_t h16(double v)
{
    return veil_half_from_double(VEIL_DT_FLOAT16, v);
}

static float w16(uint16_t h)
{
    return veil_half_to_float(VEIL_DT_FLOAT16, h);
}

TEST(float16_inputs_initializers_outputs)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t xd[2] = {-1, 3}, wd[1] = {3};
    uint16_t w[3] = {h16(0.5), h16(-3.25), h16(0.1)}, wi[3] = {h16(1.5), h16(2), h16(-0.75)};
    mb_init(&b);
    mb_input(&b, "x", VEIL_DT_FLOAT16, 2, xd);
    b.inits[b.n_inits++] = tensor16(&b, "w", VEIL_DT_FLOAT16, 1, wd, w, 3);
    b.inits[b.n_inits++] = tensor16_i32(&b, "wi", VEIL_DT_FLOAT16, 1, wd, wi, 3);
    mb_node(&b, "Mul", "x,w", "p", 0);
    mb_node(&b, "Add", "p,wi", "y", 0);
    mb_node(&b, "Cast", "y", "yf", 1, mb_attr_i(&b, "to", VEIL_DT_FLOAT));
    mb_output(&b, "y", VEIL_DT_FLOAT16, 2, xd);
    mb_output(&b, "yf", VEIL_DT_FLOAT, 2, xd);
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    ASSERT_EQ_U64(veil_engine_model_input(m, 0)->dtype, VEIL_DT_FLOAT16);
    ASSERT_EQ_U64(veil_engine_model_output(m, 0)->dtype, VEIL_DT_FLOAT16);
    uint16_t x[6] = {h16(1), h16(-2), h16(100), h16(1e-3), h16(65504), h16(-7.5)};
    int64_t d[2] = {2, 3};
    struct veil_tensor in = tensor_of(VEIL_DT_FLOAT16, 2, d, x), out[2];
    ASSERT_EQ_U64(in.nbytes, 12);
    ASSERT_OK(veil_engine_run(m, &in, 1, out, 2, &eb));
    ASSERT_EQ_U64(out[0].dtype, VEIL_DT_FLOAT16);
    ASSERT_EQ_U64(out[0].nbytes, 12);
    ASSERT_EQ_U64(out[1].dtype, VEIL_DT_FLOAT);
    for (size_t i = 0; i < 6; i++) {
        /* Mul and Add compute in float; y, a graph output, is read rounded by the Cast too. */
        float want = w16(h16(w16(x[i]) * w16(w[i % 3]) + w16(wi[i % 3])));
        ASSERT_EQ_U64(((const uint16_t *)out[0].data)[i], h16(want));
        ASSERT_EQ_U64(fbits(((const float *)out[1].data)[i]), fbits(want));
    }
    veil_tensor_release(&out[0]);
    veil_tensor_release(&out[1]);
    /* A float tensor where the model takes float16 is refused. */
    float xf[6] = {0};
    struct veil_tensor bad = tensor_f(xf, 2, d);
    ASSERT_ERR(veil_engine_run(m, &bad, 1, out, 2, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "must be float16");
    veil_engine_model_free(m);
}

/*
 * Where float16 values are rounded: a value computed by one float operator and read by another
 * stays float (as ONNX Runtime keeps it between two operators it runs in float), and one read
 * by a data-movement operator (which runs on float16 data there) is rounded first.
 */
TEST(intermediate_values_are_rounded_where_read_as_16_bit)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t d[1] = {1};
    mb_init(&b);
    mb_input(&b, "x", VEIL_DT_FLOAT16, 1, d);
    mb_node(&b, "Mul", "x,x", "p", 0);
    mb_node(&b, "Sub", "p,x", "y", 0);
    mb_node(&b, "Mul", "x,x", "q", 0);
    mb_node(&b, "Transpose", "q", "qt", 0);
    mb_node(&b, "Sub", "qt,x", "z", 0);
    mb_node(&b, "Mul", "x,x", "r", 0);
    mb_node(&b, "Max", "r,r", "rm", 0);
    mb_node(&b, "Sub", "rm,x", "w", 0);
    mb_output(&b, "y", VEIL_DT_FLOAT16, 1, d);
    mb_output(&b, "z", VEIL_DT_FLOAT16, 1, d);
    mb_output(&b, "w", VEIL_DT_FLOAT16, 1, d);
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    /*
     * (1 + 2^-10)^2 = 1 + 2^-9 + 2^-20, which is float16 1 + 2^-9. Kept in float, y is
     * 2^-10 + 2^-20 (float16 0x1401); rounded before the Transpose or by Max, 2^-10 (0x1400).
     */
    uint16_t x[1] = {0x3c01};
    struct veil_tensor in = tensor_of(VEIL_DT_FLOAT16, 1, d, x), out[3];
    ASSERT_OK(veil_engine_run(m, &in, 1, out, 3, &eb));
    ASSERT_EQ_U64(((const uint16_t *)out[0].data)[0], 0x1401);
    ASSERT_EQ_U64(((const uint16_t *)out[1].data)[0], 0x1400);
    ASSERT_EQ_U64(((const uint16_t *)out[2].data)[0], 0x1400);
    for (size_t i = 0; i < 3; i++)
        veil_tensor_release(&out[i]);
    veil_engine_model_free(m);
}

/*
 * A model's Cast to float16 next to float operators is a copy, and so is its Cast back (ONNX
 * Runtime deletes both against the Casts it inserts around those operators), even where a
 * 16-bit kernel (here Shape) also reads the value; a Cast of a Cast's output or of a graph
 * output reads it rounded (cast_rounds_to_16_bit_precision, the test above).
 */
TEST(casts_next_to_float_operators)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t d[1] = {3};
    mb_init(&b);
    mb_input(&b, "x", VEIL_DT_FLOAT, 1, d);
    mb_node(&b, "Cast", "x", "h", 1, mb_attr_i(&b, "to", VEIL_DT_FLOAT16));
    mb_node(&b, "Relu", "h", "r", 0);
    mb_node(&b, "Cast", "r", "y", 1, mb_attr_i(&b, "to", VEIL_DT_FLOAT));
    mb_node(&b, "Neg", "h", "s", 0);
    mb_node(&b, "Shape", "s", "shp", 0);
    mb_node(&b, "Cast", "s", "z", 1, mb_attr_i(&b, "to", VEIL_DT_FLOAT));
    mb_output(&b, "y", VEIL_DT_FLOAT, 1, d);
    mb_output(&b, "z", VEIL_DT_FLOAT, 1, d);
    mb_output(&b, "shp", VEIL_DT_INT64, 1, (int64_t[]){1});
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    float x[3] = {0.1f, 1.0f / 3, 70000.0f};
    struct veil_tensor in = tensor_f(x, 1, d), out[3];
    ASSERT_OK(veil_engine_run(m, &in, 1, out, 3, &eb));
    for (size_t i = 0; i < 3; i++) {
        ASSERT_EQ_U64(fbits(((const float *)out[0].data)[i]), fbits(x[i]));
        ASSERT_EQ_U64(fbits(((const float *)out[1].data)[i]), fbits(-x[i]));
    }
    for (size_t i = 0; i < 3; i++)
        veil_tensor_release(&out[i]);
    veil_engine_model_free(m);
}

/*
 * A value LayerNormalization reads is rounded first (a 16-bit kernel that does not commute
 * with rounding): 1 + (2^-11 - 2^-21) is float16 1, so the first two rows' values normalise
 * alike; kept in float the first would sit between the second and the fourth.
 */
TEST(layernorm_reads_rounded_values)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t d[2] = {1, 4}, sd[1] = {4};
    uint16_t one[4] = {0x3c00, 0x3c00, 0x3c00, 0x3c00};
    mb_init(&b);
    mb_input(&b, "x", VEIL_DT_FLOAT16, 2, d);
    mb_input(&b, "e", VEIL_DT_FLOAT16, 2, d);
    b.inits[b.n_inits++] = tensor16(&b, "g", VEIL_DT_FLOAT16, 1, sd, one, 4);
    mb_node(&b, "Add", "x,e", "p", 0);
    mb_node(&b, "LayerNormalization", "p,g", "y", 2, mb_attr_i(&b, "axis", -1),
            mb_attr_f(&b, "epsilon", 1e-12f));
    mb_output(&b, "y", VEIL_DT_FLOAT16, 2, d);
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    uint16_t x[4] = {0x3c00, 0x3c00, 0x3c00, 0x3c00};
    uint16_t e[4] = {h16(0x1p-11 - 0x1p-21), 0, 0, h16(0x1p-10)};
    ASSERT_EQ_U64(fbits(w16(e[0])), fbits((float)(0x1p-11 - 0x1p-21)));
    struct veil_tensor in[2] = {tensor_of(VEIL_DT_FLOAT16, 2, d, x),
                                tensor_of(VEIL_DT_FLOAT16, 2, d, e)},
                       out;
    ASSERT_OK(veil_engine_run(m, in, 2, &out, 1, &eb));
    const uint16_t *y = out.data;
    ASSERT_EQ_U64(y[0], y[1]);
    ASSERT_EQ_U64(y[1], y[2]);
    ASSERT_TRUE(w16(y[3]) > 1.5f && w16(y[0]) < -0.5f);
    veil_tensor_release(&out);
    veil_engine_model_free(m);
}

TEST(cast_rounds_to_16_bit_precision)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t d[1] = {-1};
    mb_init(&b);
    mb_input(&b, "x", VEIL_DT_FLOAT, 1, d);
    mb_input(&b, "xd", VEIL_DT_DOUBLE, 1, d);
    mb_input(&b, "xi", VEIL_DT_INT64, 1, d);
    mb_node(&b, "Cast", "x", "h", 1, mb_attr_i(&b, "to", VEIL_DT_FLOAT16));
    mb_node(&b, "Cast", "h", "hf", 1, mb_attr_i(&b, "to", VEIL_DT_FLOAT));
    mb_node(&b, "Cast", "x", "g", 1, mb_attr_i(&b, "to", VEIL_DT_BFLOAT16));
    mb_node(&b, "Cast", "g", "gf", 1, mb_attr_i(&b, "to", VEIL_DT_FLOAT));
    mb_node(&b, "Cast", "xd", "hd", 1, mb_attr_i(&b, "to", VEIL_DT_FLOAT16));
    mb_node(&b, "Cast", "xi", "hi", 1, mb_attr_i(&b, "to", VEIL_DT_FLOAT16));
    mb_node(&b, "Cast", "h", "hb", 1, mb_attr_i(&b, "to", VEIL_DT_BFLOAT16));
    mb_output(&b, "hf", VEIL_DT_FLOAT, 1, d);
    mb_output(&b, "gf", VEIL_DT_FLOAT, 1, d);
    mb_output(&b, "hd", VEIL_DT_FLOAT16, 1, d);
    mb_output(&b, "hi", VEIL_DT_FLOAT16, 1, d);
    mb_output(&b, "hb", VEIL_DT_BFLOAT16, 1, d);
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    float x[5] = {0.1f, 1.0f + 0x1p-11f, 70000.0f, 3e-8f, -1.0f / 3};
    double xd[5] = {1.0 + 0x1p-11 + 0x1p-40, 0.1, -65520.0, 0x1p-25, 1e-30};
    int64_t xi[5] = {2049, 2051, 70000, -3, 65504};
    int64_t n[1] = {5};
    struct veil_tensor in[3] = {tensor_of(VEIL_DT_FLOAT, 1, n, x),
                                tensor_of(VEIL_DT_DOUBLE, 1, n, xd),
                                tensor_of(VEIL_DT_INT64, 1, n, xi)},
                       out[5];
    ASSERT_OK(veil_engine_run(m, in, 3, out, 5, &eb));
    const float *hf = out[0].data, *gf = out[1].data;
    const uint16_t *hd = out[2].data, *hi = out[3].data, *hb = out[4].data;
    uint16_t want_hd[5] = {0x3c01, 0x2e66, 0xfc00, 0x0000, 0x0000};
    uint16_t want_hi[5] = {0x6800, 0x6802, 0x7c00, 0xc200, 0x7bff};
    for (size_t i = 0; i < 5; i++) {
        ASSERT_EQ_U64(fbits(hf[i]), fbits(w16(h16((double)x[i]))));
        ASSERT_EQ_U64(fbits(gf[i]),
                      fbits(veil_half_to_float(VEIL_DT_BFLOAT16,
                                               veil_half_from_double(VEIL_DT_BFLOAT16, x[i]))));
        ASSERT_EQ_U64(hd[i], want_hd[i]);
        ASSERT_EQ_U64(hi[i], want_hi[i]);
        ASSERT_EQ_U64(hb[i], veil_half_from_double(VEIL_DT_BFLOAT16, w16(h16((double)x[i]))));
    }
    ASSERT_EQ_U64(fbits(hf[0]), fbits(w16(0x2e66)));
    ASSERT_TRUE(isinf(hf[2]));
    for (size_t i = 0; i < 5; i++)
        veil_tensor_release(&out[i]);
    veil_engine_model_free(m);
}

TEST(castlike_takes_the_declared_16_bit_type)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t d[2] = {3, 4}, one[1] = {1};
    mb_init(&b);
    mb_input(&b, "x", VEIL_DT_FLOAT, 2, d);
    mb_input(&b, "like", VEIL_DT_BFLOAT16, 1, one);
    mb_input(&b, "like16", VEIL_DT_FLOAT16, 1, one);
    mb_node(&b, "CastLike", "x,like", "y", 0);
    /* The like input passes through a float operator first: its type travels with it. */
    mb_node(&b, "Relu", "like16", "r", 0);
    mb_node(&b, "CastLike", "x,r", "z", 0);
    mb_output(&b, "y", VEIL_DT_BFLOAT16, 2, d);
    mb_output(&b, "z", VEIL_DT_FLOAT16, 2, d);
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    float x[12] = {0.47892547f, 0.48033667f, 0.49968487f, 0.81910545f, 0.47031248f, 0.816468f,
                   0.21087195f, 0.7229038f,  NAN,         INFINITY,    -INFINITY,   -0.0f};
    uint16_t lb[1] = {0x3f80}, lh[1] = {0x3c00};
    struct veil_tensor in[3] = {tensor_of(VEIL_DT_FLOAT, 2, d, x),
                                tensor_of(VEIL_DT_BFLOAT16, 1, one, lb),
                                tensor_of(VEIL_DT_FLOAT16, 1, one, lh)},
                       out[2];
    ASSERT_OK(veil_engine_run(m, in, 3, out, 2, &eb));
    ASSERT_EQ_U64(out[0].dtype, VEIL_DT_BFLOAT16);
    ASSERT_EQ_U64(out[1].dtype, VEIL_DT_FLOAT16);
    /* Rounded to nearest even (ONNX 1.12's data for this case truncates instead). */
    uint16_t want[12] = {0x3ef5, 0x3ef6, 0x3f00, 0x3f52, 0x3ef1, 0x3f51,
                         0x3e58, 0x3f39, 0x7fc0, 0x7f80, 0xff80, 0x8000};
    ASSERT_MEM_EQ(out[0].data, want, sizeof(want));
    for (size_t i = 0; i < 12; i++)
        ASSERT_EQ_U64(((const uint16_t *)out[1].data)[i], h16((double)x[i]));
    veil_tensor_release(&out[0]);
    veil_tensor_release(&out[1]);
    veil_engine_model_free(m);
}

TEST(constants_and_generators)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t sd[1] = {2}, shape[2] = {2, 3}, one[1] = {1}, e3[2] = {3, 3}, cd[1] = {3};
    uint16_t third = h16(1.0 / 3), c[3] = {h16(1), h16(-0.5), h16(0.25)}, cb[1] = {0x4049};
    mb_init(&b);
    mb_input(&b, "x", VEIL_DT_FLOAT16, 1, cd);
    mb_input(&b, "ix", VEIL_DT_INT32, 2, e3);
    mb_init_i64(&b, "shape", 1, sd, shape);
    mb_node(&b, "ConstantOfShape", "shape", "cos", 1,
            attr_tensor(&b, "value", tensor16(&b, "v", VEIL_DT_FLOAT16, 1, one, &third, 1)));
    mb_node(&b, "EyeLike", "ix", "eye", 1, mb_attr_i(&b, "dtype", VEIL_DT_FLOAT16));
    mb_node(&b, "Constant", "", "k", 1,
            attr_tensor(&b, "value", tensor16(&b, "kv", VEIL_DT_FLOAT16, 1, cd, c, 3)));
    mb_node(&b, "Add", "x,k", "sum", 0);
    mb_node(&b, "Constant", "", "kb", 1,
            attr_tensor(&b, "value", tensor16_i32(&b, "kbv", VEIL_DT_BFLOAT16, 1, one, cb, 1)));
    mb_output(&b, "cos", VEIL_DT_FLOAT16, 2, shape);
    mb_output(&b, "eye", VEIL_DT_FLOAT16, 2, e3);
    mb_output(&b, "sum", VEIL_DT_FLOAT16, 1, cd);
    mb_output(&b, "kb", VEIL_DT_BFLOAT16, 1, one);
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    uint16_t x[3] = {h16(2), h16(0.5), h16(-1e-4)};
    int32_t ix[9] = {0};
    struct veil_tensor in[2] = {tensor_of(VEIL_DT_FLOAT16, 1, cd, x),
                                tensor_of(VEIL_DT_INT32, 2, e3, ix)},
                       out[4];
    ASSERT_OK(veil_engine_run(m, in, 2, out, 4, &eb));
    for (size_t i = 0; i < 6; i++)
        ASSERT_EQ_U64(((const uint16_t *)out[0].data)[i], third);
    for (size_t i = 0; i < 9; i++)
        ASSERT_EQ_U64(((const uint16_t *)out[1].data)[i], i % 4 == 0 ? 0x3c00 : 0);
    for (size_t i = 0; i < 3; i++)
        ASSERT_EQ_U64(((const uint16_t *)out[2].data)[i], h16(w16(x[i]) + w16(c[i])));
    ASSERT_EQ_U64(out[3].dtype, VEIL_DT_BFLOAT16);
    ASSERT_EQ_U64(((const uint16_t *)out[3].data)[0], 0x4049);
    for (size_t i = 0; i < 4; i++)
        veil_tensor_release(&out[i]);
    veil_engine_model_free(m);
}

TEST(data_movement_keeps_the_bits)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t xd[3] = {-1, 2, 3}, wd[3] = {1, 2, 3}, yd[3] = {3, 2, -1}, sd[1] = {1};
    int64_t starts[1] = {1}, ends[1] = {3}, axes[1] = {2};
    uint16_t w[6];
    for (size_t i = 0; i < 6; i++)
        w[i] = (uint16_t)(0x3000 + 37 * i);
    mb_init(&b);
    mb_input(&b, "x", VEIL_DT_BFLOAT16, 3, xd);
    b.inits[b.n_inits++] = tensor16(&b, "w", VEIL_DT_BFLOAT16, 3, wd, w, 6);
    mb_init_i64(&b, "st", 1, sd, starts);
    mb_init_i64(&b, "en", 1, sd, ends);
    mb_init_i64(&b, "ax", 1, sd, axes);
    mb_node(&b, "Concat", "x,w", "c", 1, mb_attr_i(&b, "axis", 0));
    mb_node(&b, "Transpose", "c", "t", 1, mb_attr_ints(&b, "perm", 3, (int64_t[]){2, 1, 0}));
    mb_node(&b, "Slice", "t,st,en,ax", "y", 0);
    mb_output(&b, "y", VEIL_DT_BFLOAT16, 3, yd);
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    uint16_t x[6];
    for (size_t i = 0; i < 6; i++)
        x[i] = (uint16_t)(0xbf00 + 1001 * i); /* includes subnormal-free odd patterns */
    int64_t d[3] = {1, 2, 3};
    struct veil_tensor in = tensor_of(VEIL_DT_BFLOAT16, 3, d, x), out;
    ASSERT_OK(veil_engine_run(m, &in, 1, &out, 1, &eb));
    ASSERT_EQ_U64(out.dims[0], 3);
    ASSERT_EQ_U64(out.dims[2], 1);
    /* c is [2,2,3] (x then w); t[k][j][i] = c[i][j][k]; y = t[:, :, 1:2] = c[1][j][k]. */
    const uint16_t *y = out.data;
    for (size_t k = 0; k < 3; k++)
        for (size_t j = 0; j < 2; j++)
            ASSERT_EQ_U64(y[k * 2 + j], w[j * 3 + k]);
    veil_tensor_release(&out);
    veil_engine_model_free(m);
}

TEST(undeclared_output_type_follows_the_cast)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    int64_t d[1] = {2};
    mb_init(&b);
    mb_input(&b, "x", VEIL_DT_FLOAT, 1, d);
    mb_node(&b, "Cast", "x", "h", 1, mb_attr_i(&b, "to", VEIL_DT_FLOAT16));
    mb_node(&b, "Neg", "h", "y", 0);
    mb_output(&b, "y", VEIL_DT_UNDEFINED, 1, d);
    ASSERT_OK(mb_load(&b, NULL, &m, &eb));
    float x[2] = {1.5f, 0.1f};
    struct veil_tensor in = tensor_f(x, 1, d), out;
    ASSERT_OK(veil_engine_run(m, &in, 1, &out, 1, &eb));
    ASSERT_EQ_U64(out.dtype, VEIL_DT_FLOAT16);
    ASSERT_EQ_U64(((const uint16_t *)out.data)[0], h16(-1.5));
    ASSERT_EQ_U64(((const uint16_t *)out.data)[1], 0xae66);
    veil_tensor_release(&out);
    veil_engine_model_free(m);
}

RUN_TESTS()
