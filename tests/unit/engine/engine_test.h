/*
 * Helpers shared by the engine's unit tests: a fixed-seed generator, tensors over
 * caller-owned data, the whole-tensor relative error, and profile lookups.
 */
#ifndef VEIL_TEST_ENGINE_TEST_H
#define VEIL_TEST_ENGINE_TEST_H

#include "veil/engine.h"

#include <math.h>
#include <string.h>

/* Uniform in [-1, 1) from a linear congruential step of *s. */
static __attribute__((unused)) float rnd(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* A tensor of type dt and the given shape over data (not owned). */
static __attribute__((unused)) struct veil_tensor tensor_of(enum veil_dtype dt, size_t rank,
                                                            const int64_t *dims, const void *data)
{
    struct veil_tensor t;
    memset(&t, 0, sizeof(t));
    t.dtype = dt;
    t.rank = rank;
    size_t n = 1;
    for (size_t i = 0; i < rank; i++) {
        t.dims[i] = dims[i];
        n *= (size_t)dims[i];
    }
    t.data = (void *)(uintptr_t)data;
    t.nbytes = n * veil_dtype_size(dt);
    return t;
}

/* A float tensor of the given shape over data (not owned). */
static __attribute__((unused)) struct veil_tensor tensor_f(float *data, size_t rank,
                                                           const int64_t *dims)
{
    return tensor_of(VEIL_DT_FLOAT, rank, dims, data);
}

/* ||a - b|| / ||b||: the whole-tensor error, insensitive to single values near zero. */
static __attribute__((unused)) double rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1e-30));
}

/*
 * Whether a profiled model's profile has a row labelled op (exactly, or starting with op when
 * prefix). False when the profile cannot be read.
 */
static __attribute__((unused)) bool profile_has(struct veil_engine_model *m, const char *op,
                                                bool prefix)
{
    struct veil_engine_prof_row rows[64];
    size_t n = 0;
    uint64_t runs = 0;
    double ms = 0;
    struct veil_errbuf eb = {{0}};
    if (veil_engine_model_profile(m, rows, 64, &n, &runs, &ms, &eb) != VEIL_OK)
        return false;
    for (size_t i = 0; i < n && i < 64; i++)
        if (prefix ? strncmp(rows[i].op, op, strlen(op)) == 0 : strcmp(rows[i].op, op) == 0)
            return true;
    return false;
}

#endif
