/*
 * The vector kernels of ops/vec.c: every variant this CPU can run (baseline, AVX2, AVX-512) on
 * softmax rows of every length from 1 to 80 (vector bodies and tails; odd lengths span 40,
 * even ones 300, past the cut-off of exp), with the row and the addend read whole or as one
 * repeated value, in place and not, against a double-precision reference; NaN rows, and rows
 * of -inf with one finite value. LayerNorm rows the same way (within the rounding of a float
 * mean of values near 1000).
 */
#include "harness.h"

#include "engine_int.h"

#include <math.h>

static float rnd(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void check_variant(enum veil__engine_vec_isa isa)
{
    float x[80], a[80], y[80], xc[80];
    for (size_t len = 1; len <= 80; len++)
        for (int mode = 0; mode < 8; mode++) {
            size_t xs = (mode & 1) ? 0 : 1, as = (mode & 2) ? 0 : 1;
            bool with_a = (mode & 4) != 0;
            uint32_t seed = (uint32_t)(len * 8 + (size_t)mode);
            for (size_t i = 0; i < len; i++) {
                x[i] = rnd(&seed) * (len % 2 ? 20.0f : 150.0f);
                a[i] = (i % 5 == 3) ? -10000.0f : rnd(&seed);
            }
            memcpy(xc, x, sizeof(x));
            bool in_place = mode == 4;
            float *out = in_place ? xc : y;
            if (!veil__engine_softmax_row_isa(isa, xc, xs, with_a ? a : NULL, as, out, len))
                return; /* the CPU lacks this variant */
            double v[80], mx = -INFINITY, sum = 0;
            for (size_t i = 0; i < len; i++) {
                v[i] = (double)x[xs * i] + (with_a ? a[as * i] : 0.0);
                mx = v[i] > mx ? v[i] : mx;
            }
            for (size_t i = 0; i < len; i++)
                sum += exp(v[i] - mx);
            for (size_t i = 0; i < len; i++) {
                double want = exp(v[i] - mx) / sum;
                if (!(fabs(out[i] - want) <= 2e-6 * want + 1e-30)) {
                    fprintf(stderr, "variant %d len %zu mode %d [%zu]: %.9g, want %.9g\n", (int)isa,
                            len, mode, i, (double)out[i], want);
                    ASSERT_TRUE(false);
                }
            }
        }
    for (size_t len = 1; len <= 40; len += 13) {
        for (size_t i = 0; i < len; i++)
            x[i] = i == len / 2 ? NAN : 1.0f;
        ASSERT_TRUE(veil__engine_softmax_row_isa(isa, x, 1, NULL, 0, y, len));
        for (size_t i = 0; i < len; i++)
            ASSERT_TRUE(isnan(y[i]));
        for (size_t i = 0; i < len; i++)
            x[i] = i == len - 1 ? 2.0f : -INFINITY;
        ASSERT_TRUE(veil__engine_softmax_row_isa(isa, x, 1, NULL, 0, y, len));
        for (size_t i = 0; i < len; i++)
            ASSERT_TRUE(y[i] == (i == len - 1 ? 1.0f : 0.0f));
    }
}

TEST(softmax_row_variants)
{
    ASSERT_TRUE(veil__engine_softmax_row_isa(VEIL__ENGINE_VEC_BASE, (const float[]){0.0f}, 1, NULL,
                                             0, (float[1]){0}, 1));
    fprintf(stderr, "best variant on this CPU: %d (0 baseline, 1 AVX2, 2 AVX-512)\n",
            (int)veil__engine_vec_best());
    check_variant(VEIL__ENGINE_VEC_BASE);
    check_variant(VEIL__ENGINE_VEC_AVX2);
    check_variant(VEIL__ENGINE_VEC_AVX512);
}

/* LayerNorm rows of every length from 1 to 80 with and without bias, in place and not, with a
 * large common offset (the variance is taken around the mean), against a double reference. */
static void check_layernorm(enum veil__engine_vec_isa isa)
{
    float x[80], y[80], xc[80], scale[80], bias[80];
    for (size_t len = 1; len <= 80; len++)
        for (int mode = 0; mode < 4; mode++) {
            uint32_t seed = (uint32_t)(len * 4 + (size_t)mode);
            for (size_t i = 0; i < len; i++) {
                x[i] = 1000.0f + rnd(&seed) * 3.0f;
                scale[i] = 1.0f + rnd(&seed) * 0.5f;
                bias[i] = rnd(&seed);
            }
            memcpy(xc, x, sizeof(x));
            const float *b = (mode & 1) ? bias : NULL;
            float *out = (mode & 2) ? xc : y, mean, istd;
            if (!veil__engine_layernorm_row_isa(isa, xc, out, len, scale, b, 1e-5f, &mean, &istd))
                return;
            double m = 0, v = 0;
            for (size_t i = 0; i < len; i++)
                m += x[i];
            m /= (double)len;
            for (size_t i = 0; i < len; i++)
                v += (x[i] - m) * (x[i] - m);
            v /= (double)len;
            double is = 1.0 / sqrt(v + 1e-5);
            ASSERT_TRUE(fabs(mean - m) <= 1e-6 * fabs(m));
            ASSERT_TRUE(fabs(istd - is) <= 1e-4 * is);
            for (size_t i = 0; i < len; i++) {
                double want = (x[i] - m) * is * scale[i] + (b != NULL ? b[i] : 0.0);
                if (!(fabs(out[i] - want) <= 2e-4 + 1e-4 * fabs(want))) {
                    fprintf(stderr, "layernorm variant %d len %zu mode %d [%zu]: %.9g, want %.9g\n",
                            (int)isa, len, mode, i, (double)out[i], want);
                    ASSERT_TRUE(false);
                }
            }
        }
}

TEST(layernorm_row_variants)
{
    check_layernorm(VEIL__ENGINE_VEC_BASE);
    check_layernorm(VEIL__ENGINE_VEC_AVX2);
    check_layernorm(VEIL__ENGINE_VEC_AVX512);
}

RUN_TESTS()
