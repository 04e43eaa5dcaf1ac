/*
 * Fused attention: O = softmax(scale * Q K^T + mask) V as one kernel, for the
 * MatMul -> Softmax -> MatMul chain of transformer models. The unfused chain writes the scores
 * (batch x heads x Sq x Sk floats, 6 MiB per BERT-base layer at batch 8) to memory three times
 * and reads them back; here each block of query rows keeps its scores in a per-thread buffer
 * while they are scaled, masked, normalised and multiplied by V.
 *
 * Work items are (batch, head, block of up to 128 query rows), split evenly over the threads.
 * For each (batch, head) a thread packs K^T ([D][Sk], so score rows are vector loads) and V
 * ([Sk][Dv]); for each row block it packs Q and runs two register-tiled products (6 rows by
 * up to 64 columns of accumulators, one broadcast A element against 4 vectors of B per step)
 * with the softmax of veil__engine_softmax_row between them. Operands are read through element
 * strides, so the Transposes that split heads (Q, K, V) and merge them (the output) are read
 * through rather than run, as for MatMul (ops/dnnl.c).
 *
 * The kernels come in AVX-512 (16-float vectors, K^T transposed in 16 x 16 register blocks)
 * and AVX2+FMA variants (8-float vectors, 6 x 16 tiles), chosen from the CPU; without AVX2
 * the chain runs unfused.
 */
#include "engine_int.h"

#include <math.h>
#include <omp.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* Query rows per work item. */
#define ATT_ROWS 128

/*
 * kp->attention.mask: no mask, a float mask value (the softmax's addend), one owned in kp->ptr
 * (a Where's constant condition made an addend), or a Where's run-time boolean condition,
 * turned into an addend row by row (with kp->attention.fill).
 */
enum { MASK_NONE, MASK_VALUE, MASK_OWNED, MASK_COND };

static size_t round16(int64_t n)
{
    return (size_t)(n + 15) / 16 * 16;
}

/* Per-thread scratch floats: K^T, V, a Q block, a score block and one mask row. */
static size_t thread_floats(int64_t sk, int64_t d, int64_t dv)
{
    size_t skp = round16(sk);
    return round16(d) * skp + (size_t)sk * round16(dv) + ATT_ROWS * round16(d) + ATT_ROWS * skp +
           skp + 4 * 16;
}

#if defined(__x86_64__)
#define AVX512 __attribute__((target("avx512f,fma")))
#define INLINE __attribute__((always_inline)) inline

/*
 * c[i][0, n) = scale * sum_k a[i * as + k] b[k * bs + 0, n) for i < mr (at most 6), where n
 * covers nv vectors of 16 (at most 4), the last masked by last.
 */
AVX512 static INLINE void tile512(int mr, int nv, size_t kn, const float *a, size_t as,
                                  const float *b, size_t bs, float *c, size_t cs, __mmask16 last,
                                  float scale)
{
    __m512 acc[6][4];
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            acc[i][j] = _mm512_setzero_ps();
    for (size_t k = 0; k < kn; k++) {
        __m512 bv[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            if (j < nv)
                bv[j] = j == nv - 1 ? _mm512_maskz_loadu_ps(last, b + k * bs + 16 * j)
                                    : _mm512_loadu_ps(b + k * bs + 16 * j);
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            if (i >= mr)
                continue;
            __m512 av = _mm512_set1_ps(a[(size_t)i * as + k]);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                if (j < nv)
                    acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
        }
    }
    __m512 vs = _mm512_set1_ps(scale);
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) {
        if (i >= mr)
            continue;
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            if (j >= nv)
                continue;
            float *dst = c + (size_t)i * cs + 16 * j;
            __m512 v = _mm512_mul_ps(acc[i][j], vs);
            if (j == nv - 1 && last != 0xffff)
                _mm512_mask_storeu_ps(dst, last, v);
            else
                _mm512_storeu_ps(dst, v);
        }
    }
}

#define TILE_CASE(MR, NV)                                                                          \
    case (MR)*8 + (NV):                                                                            \
        tile512(MR, NV, kn, a, as, b, bs, c, cs, last, scale);                                     \
        break
#define TILE_ROW(MR)                                                                               \
    TILE_CASE(MR, 1);                                                                              \
    TILE_CASE(MR, 2);                                                                              \
    TILE_CASE(MR, 3);                                                                              \
    TILE_CASE(MR, 4)

/* One tile with the row and vector counts as constants, so the accumulators stay registers. */
AVX512 static void tile_any512(int mr, int nv, size_t kn, const float *a, size_t as, const float *b,
                               size_t bs, float *c, size_t cs, __mmask16 last, float scale)
{
    switch (mr * 8 + nv) {
        TILE_ROW(1);
        TILE_ROW(2);
        TILE_ROW(3);
        TILE_ROW(4);
        TILE_ROW(5);
        TILE_ROW(6);
    default:
        break;
    }
}

/* C[m][n] = scale * A[m][kn] B[kn][n], rows of A, B and C at strides as, bs and cs. */
AVX512 static void gemm512(size_t m, size_t n, size_t kn, const float *a, size_t as, const float *b,
                           size_t bs, float *c, size_t cs, float scale)
{
    for (size_t j0 = 0; j0 < n; j0 += 64) {
        size_t nj = n - j0 < 64 ? n - j0 : 64;
        int nv = (int)((nj + 15) / 16);
        __mmask16 last = nj % 16 != 0 ? (__mmask16)((1u << (nj % 16)) - 1u) : (__mmask16)0xffff;
        for (size_t i0 = 0; i0 < m; i0 += 6) {
            int mr = (int)(m - i0 < 6 ? m - i0 : 6);
            tile_any512(mr, nv, kn, a + i0 * as, as, b + j0, bs, c + i0 * cs + j0, cs, last, scale);
        }
    }
}

#define AVX2 __attribute__((target("avx2,fma")))

/* As tile512 with 8-float vectors: i < mr (at most 6) rows, nv (at most 2) vectors. */
AVX2 static INLINE void tile256(int mr, int nv, size_t kn, const float *a, size_t as,
                                const float *b, size_t bs, float *c, size_t cs, __m256i last,
                                bool partial, float scale)
{
    __m256 acc[6][2];
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++)
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++)
            acc[i][j] = _mm256_setzero_ps();
    for (size_t k = 0; k < kn; k++) {
        __m256 bv[2];
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++)
            if (j < nv)
                bv[j] = j == nv - 1 && partial ? _mm256_maskload_ps(b + k * bs + 8 * j, last)
                                               : _mm256_loadu_ps(b + k * bs + 8 * j);
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            if (i >= mr)
                continue;
            __m256 av = _mm256_broadcast_ss(a + (size_t)i * as + k);
#pragma GCC unroll 2
            for (int j = 0; j < 2; j++)
                if (j < nv)
                    acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
        }
    }
    __m256 vs = _mm256_set1_ps(scale);
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) {
        if (i >= mr)
            continue;
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++) {
            if (j >= nv)
                continue;
            float *dst = c + (size_t)i * cs + 8 * j;
            __m256 v = _mm256_mul_ps(acc[i][j], vs);
            if (j == nv - 1 && partial)
                _mm256_maskstore_ps(dst, last, v);
            else
                _mm256_storeu_ps(dst, v);
        }
    }
}

#define TILE256_CASE(MR, NV)                                                                       \
    case (MR)*8 + (NV):                                                                            \
        tile256(MR, NV, kn, a, as, b, bs, c, cs, last, partial, scale);                            \
        break
#define TILE256_ROW(MR)                                                                            \
    TILE256_CASE(MR, 1);                                                                           \
    TILE256_CASE(MR, 2)

AVX2 static void tile_any256(int mr, int nv, size_t kn, const float *a, size_t as, const float *b,
                             size_t bs, float *c, size_t cs, __m256i last, bool partial,
                             float scale)
{
    switch (mr * 8 + nv) {
        TILE256_ROW(1);
        TILE256_ROW(2);
        TILE256_ROW(3);
        TILE256_ROW(4);
        TILE256_ROW(5);
        TILE256_ROW(6);
    default:
        break;
    }
}

/* As gemm512, in column blocks of 16. */
AVX2 static void gemm256(size_t m, size_t n, size_t kn, const float *a, size_t as, const float *b,
                         size_t bs, float *c, size_t cs, float scale)
{
    for (size_t j0 = 0; j0 < n; j0 += 16) {
        size_t nj = n - j0 < 16 ? n - j0 : 16;
        int nv = (int)((nj + 7) / 8);
        bool partial = nj % 8 != 0;
        __m256i last = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(nj % 8)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (size_t i0 = 0; i0 < m; i0 += 6) {
            int mr = (int)(m - i0 < 6 ? m - i0 : 6);
            tile_any256(mr, nv, kn, a + i0 * as, as, b + j0, bs, c + i0 * cs + j0, cs, last,
                        partial, scale);
        }
    }
}

struct att_job {
    const float *q, *k, *v, *mask;
    const uint8_t *cond; /* a Where's run-time condition, read as a mask (see where_mask) */
    float fill;
    bool scores_first;
    float *o;
    int64_t b, h, sq, sk, d, dv;
    const int64_t *qs, *ks, *vs, *os, *ms;
    float scale;
    uint8_t *scratch;
    size_t per_thread;
    bool avx512; /* else the AVX2 kernels */
};

/* dst[r][0, cols) = src[r * rs + c * cs] for r < rows (dst rows at stride ds). */
static void pack(float *dst, size_t ds, const float *src, int64_t rows, int64_t cols, int64_t rs,
                 int64_t cs)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *s = src + r * rs;
        float *o = dst + (size_t)r * ds;
        if (cs == 1) {
            memcpy(o, s, (size_t)cols * sizeof(float));
        } else {
            for (int64_t c = 0; c < cols; c++)
                o[c] = s[c * cs];
        }
    }
}

/* K^T block [D][Sk] from K^T's view strides rs (along D) and cs (along Sk), element by element. */
static void pack_kt(float *dst, size_t ds, const float *src, int64_t d, int64_t sk, int64_t rs,
                    int64_t cs)
{
    if (cs == 1 || rs != 1) {
        pack(dst, ds, src, d, sk, rs, cs);
        return;
    }
    for (int64_t j = 0; j < sk; j++) {
        const float *s = src + j * cs;
        for (int64_t i = 0; i < d; i++)
            dst[(size_t)i * ds + (size_t)j] = s[i];
    }
}

/*
 * 16 x 16 transpose in registers: on return r[j] holds column j of the rows given. Pairs of
 * rows interleave (unpack), then groups of four (shuffle_ps), then 128-bit lanes twice.
 */
AVX512 static INLINE void transpose16(__m512 *r)
{
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* r[4g + c], lane L: column c + 4L of rows 4g .. 4g + 3. */
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        r[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
        r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
    }
    /* t[c], t[4 + c]: rows 0-7; t[8 + c], t[12 + c]: rows 8-15 (columns c, c + 8 / c + 4, c + 12).
     */
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
        t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
        r[c + 8] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xdd);
        r[c + 4] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
        r[c + 12] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xdd);
    }
}

/*
 * K^T block [D][Sk] (rows at stride ds) from K^T's view strides rs (along D) and cs (along Sk).
 * The usual view (heads split from [.., Sk, D] rows, rs = 1) is transposed in 16 x 16 register
 * blocks, writing whole blocks: dst must hold round16(D) rows of round16(Sk) columns.
 */
AVX512 static void pack_kt512(float *dst, size_t ds, const float *src, int64_t d, int64_t sk,
                              int64_t rs, int64_t cs)
{
    if (cs == 1 || rs != 1) {
        pack(dst, ds, src, d, sk, rs, cs);
        return;
    }
    for (int64_t j0 = 0; j0 < sk; j0 += 16)
        for (int64_t i0 = 0; i0 < d; i0 += 16) {
            __mmask16 km = d - i0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (d - i0)) - 1u);
            __m512 r[16];
#pragma GCC unroll 16
            for (int t = 0; t < 16; t++)
                r[t] = j0 + t < sk ? _mm512_maskz_loadu_ps(km, src + (j0 + t) * cs + i0)
                                   : _mm512_setzero_ps();
            transpose16(r);
#pragma GCC unroll 16
            for (int t = 0; t < 16; t++)
                _mm512_storeu_ps(dst + (size_t)(i0 + t) * ds + (size_t)j0, r[t]);
        }
}

static void att_gemm(const struct att_job *j, size_t m, size_t n, size_t kn, const float *a,
                     size_t as, const float *b, size_t bs, float *c, size_t cs, float scale)
{
    if (j->avx512)
        gemm512(m, n, kn, a, as, b, bs, c, cs, scale);
    else
        gemm256(m, n, kn, a, as, b, bs, c, cs, scale);
}

static void att_items(const struct att_job *j, uint64_t lo, uint64_t hi, uint8_t *buf)
{
    size_t skp = round16(j->sk), dvp = round16(j->dv), dp = round16(j->d);
    float *kt = (float *)(void *)(((uintptr_t)buf + 63) & ~(uintptr_t)63);
    float *vp = kt + dp * skp;
    float *qp = vp + (size_t)j->sk * dvp;
    float *sc = qp + ATT_ROWS * dp;
    float *mrow = sc + ATT_ROWS * skp;
    int64_t mrow_at = -1; /* the condition row mrow holds (rows repeat over heads and queries) */
    uint64_t nblk = ((uint64_t)j->sq + ATT_ROWS - 1) / ATT_ROWS, packed = UINT64_MAX;
    for (uint64_t w = lo; w < hi; w++) {
        uint64_t bh = w / nblk;
        int64_t b = (int64_t)(bh / (uint64_t)j->h), h = (int64_t)(bh % (uint64_t)j->h);
        int64_t i0 = (int64_t)(w % nblk) * ATT_ROWS;
        int64_t rows = j->sq - i0 < ATT_ROWS ? j->sq - i0 : ATT_ROWS;
        if (bh != packed) {
            const float *k = j->k + b * j->ks[0] + h * j->ks[1];
            if (j->avx512)
                pack_kt512(kt, skp, k, j->d, j->sk, j->ks[2], j->ks[3]);
            else
                pack_kt(kt, skp, k, j->d, j->sk, j->ks[2], j->ks[3]);
            pack(vp, dvp, j->v + b * j->vs[0] + h * j->vs[1], j->sk, j->dv, j->vs[2], j->vs[3]);
            packed = bh;
        }
        pack(qp, dp, j->q + b * j->qs[0] + h * j->qs[1] + i0 * j->qs[2], rows, j->d, j->qs[2],
             j->qs[3]);
        att_gemm(j, (size_t)rows, (size_t)j->sk, (size_t)j->d, qp, dp, kt, skp, sc, skp, j->scale);
        for (int64_t i = 0; i < rows; i++) {
            int64_t mo = b * j->ms[0] + h * j->ms[1] + (i0 + i) * j->ms[2];
            const float *m = j->mask != NULL ? j->mask + mo : NULL;
            size_t mstep = (size_t)j->ms[3];
            if (j->cond != NULL) {
                const uint8_t *cr = j->cond + mo;
                for (int64_t t = 0; mo != mrow_at && t < j->sk; t++)
                    mrow[t] = (cr[t * j->ms[3]] != 0) == j->scores_first ? 0.0f : j->fill;
                mrow_at = mo;
                m = mrow;
                mstep = 1;
            }
            float *row = sc + (size_t)i * skp;
            veil__engine_softmax_row(row, 1, m, mstep, row, (size_t)j->sk);
        }
        att_gemm(j, (size_t)rows, (size_t)j->dv, (size_t)j->sk, sc, skp, vp, dvp,
                 j->o + b * j->os[0] + h * j->os[1] + i0 * j->os[2], (size_t)j->os[2], 1.0f);
    }
}

static veil_err attention_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    struct att_job j;
    j.q = c->in[0].data;
    j.k = c->in[1].data;
    j.v = c->in[2].data;
    j.mask = kp->attention.mask == MASK_OWNED   ? kp->ptr
             : kp->attention.mask == MASK_VALUE ? c->in[3].data
                                                : NULL;
    j.cond = kp->attention.mask == MASK_COND ? c->in[3].data : NULL;
    j.fill = kp->attention.fill;
    j.scores_first = kp->attention.scores_first;
    j.o = c->in[4].data;
    j.b = kp->attention.b;
    j.h = kp->attention.h;
    j.sq = kp->attention.sq;
    j.sk = kp->attention.sk;
    j.d = kp->attention.d;
    j.dv = kp->attention.dv;
    j.qs = kp->attention.q_strides;
    j.ks = kp->attention.k_strides;
    j.vs = kp->attention.v_strides;
    j.os = kp->attention.o_strides;
    j.ms = kp->attention.mask_strides;
    j.scale = kp->attention.scale;
    j.scratch = c->sc->step_region;
    j.per_thread = (size_t)kp->attention.per_thread;
    j.avx512 = kp->attention.isa == VEIL__ENGINE_VEC_AVX512;
    uint64_t items = (uint64_t)(j.b * j.h) * (((uint64_t)j.sq + ATT_ROWS - 1) / ATT_ROWS);
    int nt = omp_get_max_threads();
    if (nt > kp->attention.threads)
        nt = (int)kp->attention.threads;
    if ((uint64_t)nt > items)
        nt = (int)items;
    if (nt <= 1 || omp_in_parallel()) {
        att_items(&j, 0, items, j.scratch);
        return VEIL_OK;
    }
#pragma omp parallel num_threads(nt)
    {
        uint64_t t = (uint64_t)omp_get_thread_num(), tn = (uint64_t)omp_get_num_threads();
        uint64_t lo = items * t / tn, hi = items * (t + 1) / tn;
        if (lo < hi)
            att_items(&j, lo, hi, j.scratch + t * j.per_thread);
    }
    return VEIL_OK;
}
#endif

/* ---- Plan time ---- */

static void row_major(size_t r, const int64_t *dims, int64_t *st)
{
    int64_t s = 1;
    for (size_t i = r; i-- > 0;) {
        st[i] = s;
        s *= dims[i];
    }
}

/* A read of value v by node `reader`: v's own storage, or its producer Transpose's input. */
struct att_view {
    int64_t st[VEIL__ENGINE_RANK]; /* element strides of v's dims */
    int32_t tnode;                 /* the Transpose read through, or -1 */
};

static bool known_before(const struct veil__engine_ictx *c, int32_t v)
{
    int32_t p = c->g->values[v].producer;
    return p < 0 || (c->step_of[p] >= 0 && c->step_of[p] < c->step);
}

static bool input_view(const struct veil__engine_ictx *c, int32_t v, int32_t reader, size_t r,
                       struct att_view *w)
{
    const struct veil__engine_pval *pv = &c->vals[v];
    w->tnode = -1;
    if (pv->t.dt != VEIL_DT_FLOAT || pv->t.rank != r || pv->blocked || !known_before(c, v))
        return false;
    if (!pv->runtime && pv->t.data == NULL)
        return false;
    row_major(r, pv->t.dims, w->st);
    int32_t p = c->g->values[v].producer;
    if (!pv->runtime || p < 0 || c->sole_reader[v] != reader ||
        strcmp(c->g->nodes[p].op_type, "Transpose") != 0)
        return true;
    const struct veil__engine_step *ts = &c->steps[c->step_of[p]];
    int32_t u = c->g->nodes[p].in[0];
    if (!ts->runtime || ts->absorbed_by > 0 || u < 0 || !c->vals[u].runtime || c->vals[u].blocked ||
        c->vals[u].t.dt != VEIL_DT_FLOAT || c->vals[u].t.rank != r ||
        !veil__engine_storage_unwritten_since(c, u, c->step_of[p]))
        return true;
    int64_t ust[VEIL__ENGINE_RANK];
    row_major(r, c->vals[u].t.dims, ust);
    for (size_t i = 0; i < r; i++)
        if (ts->kp.transpose.perm[i] < 0 || (size_t)ts->kp.transpose.perm[i] >= r)
            return true;
    for (size_t i = 0; i < r; i++)
        w->st[i] = ust[ts->kp.transpose.perm[i]];
    w->tnode = p;
    return true;
}

/*
 * An operand scaled just before the product: v = Mul(u, k), Mul(k, u) or Div(u, k) with k a
 * float scalar known while planning (DistilBERT divides Q by sqrt(D); exported
 * scaled_dot_product_attention multiplies Q and K^T by the root of the scale), read only by
 * `reader` and computed by a runtime step whose input u nothing has overwritten since. The
 * kernel then reads u and folds k into its scale: *scale is multiplied by k (1 / k for Div).
 * Returns the Mul/Div node, or -1.
 */
static int32_t prescaled(const struct veil__engine_ictx *c, int32_t v, int32_t reader, int32_t *u,
                         float *scale)
{
    int32_t p = v >= 0 ? c->g->values[v].producer : -1;
    if (p < 0 || c->sole_reader[v] != reader || !c->vals[v].runtime || c->step_of[p] < 0 ||
        c->step_of[p] >= c->step)
        return -1;
    const struct veil__engine_node *pn = &c->g->nodes[p];
    bool div = strcmp(pn->op_type, "Div") == 0;
    if ((!div && strcmp(pn->op_type, "Mul") != 0) || pn->n_in != 2 || pn->n_out != 1 ||
        pn->n_post != 0 || pn->add_in >= 0 || pn->in[0] < 0 || pn->in[1] < 0)
        return -1;
    const struct veil__engine_step *ps = &c->steps[c->step_of[p]];
    if (!ps->runtime || ps->absorbed_by > 0)
        return -1;
    for (size_t k = 0; k < 2; k++) {
        if (div && k == 0)
            continue; /* k / u is not a scaling of u */
        const struct veil__engine_pval *kp = &c->vals[pn->in[k]], *up = &c->vals[pn->in[1 - k]];
        if (kp->runtime || kp->t.data == NULL || kp->t.dt != VEIL_DT_FLOAT || kp->t.numel != 1 ||
            kp->t.rank > up->t.rank || up->t.dt != VEIL_DT_FLOAT || !up->runtime ||
            up->t.rank != c->vals[v].t.rank ||
            !veil__engine_storage_unwritten_since(c, pn->in[1 - k], c->step_of[p]))
            continue;
        float f = *(const float *)kp->t.data;
        if (!isfinite(f) || f == 0.0f)
            return -1;
        *scale *= div ? 1.0f / f : f;
        *u = pn->in[1 - k];
        return p;
    }
    return -1;
}

/* Left-pads rank r strides to 4 (missing leading dims have extent 1). */
static void pad4(size_t r, const int64_t *st, int64_t *out)
{
    for (size_t i = 0; i < 4; i++)
        out[i] = i < 4 - r ? 0 : st[i - (4 - r)];
}

/*
 * The output's strides: written in the order of a Transpose that alone reads it and keeps the
 * last axis last (which then becomes a view, see veil__engine_transpose_prepare), else row-major.
 */
static void output_view(struct veil__engine_ictx *c, int32_t o, size_t r, const int64_t *od,
                        int64_t *st)
{
    row_major(r, od, st);
    int32_t t = c->sole_reader[o];
    if (t < 0 || strcmp(c->g->nodes[t].op_type, "Transpose") != 0 || c->g->nodes[t].in[0] != o ||
        c->g->nodes[t].n_out < 1 || c->g->nodes[t].out[0] < 0)
        return;
    size_t perm[VEIL__ENGINE_RANK];
    if (veil__engine_transpose_perm(&c->g->nodes[t], r, perm, NULL) != VEIL_OK ||
        perm[r - 1] != r - 1)
        return;
    int64_t td[VEIL__ENGINE_RANK], tst[VEIL__ENGINE_RANK], ost[VEIL__ENGINE_RANK];
    dnnl_dims_t d, dst;
    for (size_t i = 0; i < r; i++)
        td[i] = od[perm[i]];
    row_major(r, td, tst);
    for (size_t i = 0; i < r; i++) {
        ost[perm[i]] = tst[i];
        d[i] = od[i];
    }
    for (size_t i = 0; i < r; i++)
        dst[i] = ost[i];
    dnnl_memory_desc_t md;
    if (dnnl_memory_desc_init_by_strides(&md, (int)r, d, dnnl_f32, dst) != dnnl_success)
        return;
    c->vals[o].blocked = true;
    c->vals[o].md = md;
    memcpy(st, ost, r * sizeof(int64_t));
}

/* The node reading value v once and alone, when it is a live node of type op. */
static int32_t sole(const struct veil__engine_ictx *c, int32_t v, const char *op)
{
    int32_t r = v >= 0 ? c->sole_reader[v] : -1;
    if (r < 0 || c->g->nodes[r].dead || strcmp(c->g->nodes[r].op_type, op) != 0 ||
        c->step_of[r] <= c->step || c->steps[c->step_of[r]].absorbed_by > 0)
        return -1;
    return r;
}

/*
 * A Where that masks the scores s: Where(cond, s, fill) or Where(cond, fill, s), fill a float
 * scalar constant of -inf or below -1e37 (finfo.min): adding fill where the scores are dropped
 * then gives the fill itself for every score of magnitude below 1e29, so the Where is an
 * additive mask. cond is a boolean constant of the plan (a causal mask sliced from a buffer
 * folds to one), made a float addend at plan time, or a boolean computed earlier in the run
 * (a padding mask from an input), turned into an addend row by row; either may be read through
 * an Expand and a Cast (cond_source).
 */
struct where_mask {
    const struct veil__engine_tv *cond;
    int32_t cond_v;  /* the run-time condition's value, or -1 for a constant */
    int32_t skip[2]; /* an Expand and a Cast read through (cond is their input), or -1 */
    float fill;
    bool scores_first; /* the scores are Where's second input (kept where cond is true) */
};

/*
 * The node producing v when it is a live op of that type, v's only reader is `reader`, and the
 * node runs after the current step (so it can be skipped). -1 otherwise.
 */
static int32_t later_producer(const struct veil__engine_ictx *c, int32_t v, int32_t reader,
                              const char *op)
{
    int32_t p = c->g->values[v].producer;
    if (p < 0 || c->sole_reader[v] != reader)
        return -1;
    const struct veil__engine_node *pn = &c->g->nodes[p];
    if (pn->dead || strcmp(pn->op_type, op) != 0 || pn->n_in < 1 || pn->in[0] < 0 ||
        pn->n_out != 1 || c->step_of[p] <= c->step || c->steps[c->step_of[p]].absorbed_by > 0)
        return -1;
    return p;
}

/*
 * DistilBERT's expand_as: the condition cv is a Cast to bool and/or an Expand to the shape of
 * the scores s (Shape(s)), each read only by the next. Both run after the scores' MatMul (the
 * Expand's shape comes from them), so nothing about their outputs is planned yet; what they
 * compute follows from their input x alone: a boolean x whose dims broadcast to the scores'
 * without changing them is what the Expand spreads, and a Cast of a boolean to bool changes
 * nothing. The kernel then reads x at broadcast strides, and the two are skipped (wm->skip).
 * Returns the value to read as the condition (cv itself when there is nothing to see through).
 */
static int32_t cond_source(const struct veil__engine_ictx *c, int32_t cv, int32_t w, int32_t s_v,
                           struct where_mask *wm)
{
    wm->skip[0] = wm->skip[1] = -1;
    int32_t v = cv, reader = w;
    int32_t k = later_producer(c, v, reader, "Cast");
    if (k >= 0) {
        if (c->g->nodes[k].n_in != 1 ||
            veil__engine_attr_i(&c->g->nodes[k], "to", 0) != VEIL_DT_BOOL)
            return cv;
        reader = k;
        v = c->g->nodes[k].in[0];
    }
    int32_t e = later_producer(c, v, reader, "Expand");
    if (e >= 0) {
        const struct veil__engine_node *en = &c->g->nodes[e];
        int32_t sh = en->n_in == 2 && en->in[1] >= 0 ? c->g->values[en->in[1]].producer : -1;
        const struct veil__engine_node *shn = sh >= 0 ? &c->g->nodes[sh] : NULL;
        if (shn == NULL || shn->dead || strcmp(shn->op_type, "Shape") != 0 || shn->in[0] != s_v ||
            veil__engine_attr_get(shn, "start") != NULL ||
            veil__engine_attr_get(shn, "end") != NULL)
            return cv;
        v = en->in[0];
    } else if (k < 0) {
        return cv;
    }
    /* v is now planned: a boolean that broadcasts to the scores unchanged. */
    const struct veil__engine_tv *xt = &c->vals[v].t, *st = &c->vals[s_v].t;
    if (!known_before(c, v) || xt->dt != VEIL_DT_BOOL || xt->rank > st->rank)
        return cv;
    for (size_t i = 0; i < xt->rank; i++) {
        int64_t d = xt->dims[i];
        if (d != 1 && d != st->dims[st->rank - xt->rank + i])
            return cv;
    }
    wm->skip[0] = e;
    wm->skip[1] = k;
    return v;
}

static bool where_mask(const struct veil__engine_ictx *c, int32_t w, int32_t s_v,
                       struct where_mask *wm)
{
    const struct veil__engine_node *wn = &c->g->nodes[w];
    if (wn->n_in != 3 || wn->n_out != 1 || wn->out[0] < 0 || wn->n_post != 0 || wn->add_in >= 0 ||
        wn->in[0] < 0 || (wn->in[1] == s_v) == (wn->in[2] == s_v))
        return false;
    bool first = wn->in[1] == s_v;
    int32_t fv = wn->in[first ? 2 : 1], cv = wn->in[0];
    if (fv < 0 || cv < 0)
        return false;
    cv = cond_source(c, cv, w, s_v, wm);
    const struct veil__engine_pval *fp = &c->vals[fv], *cp = &c->vals[cv];
    if (fp->runtime || fp->t.data == NULL || fp->t.dt != VEIL_DT_FLOAT || fp->t.numel != 1 ||
        cp->t.dt != VEIL_DT_BOOL)
        return false;
    if (cp->runtime ? cp->blocked || !known_before(c, cv) : cp->t.data == NULL)
        return false;
    float fill = *(const float *)fp->t.data;
    if (!(fill < -1e37f))
        return false;
    wm->cond = &cp->t;
    wm->cond_v = cp->runtime ? cv : -1;
    wm->fill = fill;
    wm->scores_first = first;
    return true;
}

veil_err veil__engine_attention_prepare(struct veil__engine_ictx *c, struct veil__engine_step *st,
                                        bool *taken)
{
    const struct veil__engine_node *n = c->n;
    *taken = false;
#if defined(__x86_64__)
    enum veil__engine_vec_isa isa = veil__engine_vec_best();
    if (isa > c->attention_isa)
        isa = c->attention_isa;
    if (isa == VEIL__ENGINE_VEC_BASE || c->vals == NULL || c->sole_reader == NULL ||
        c->steps == NULL || strcmp(n->op_type, "MatMul") != 0 || n->n_in != 2 || n->add_in >= 0 ||
        n->n_out != 1)
        return VEIL_OK;
    float scale = 1.0f;
    if (n->n_post == 1 && n->post[0].kind == VEIL__ENGINE_POST_LINEAR && n->post[0].b == 0.0f)
        scale = n->post[0].a;
    else if (n->n_post != 0)
        return VEIL_OK;
    /*
     * The chain: this MatMul -> (a Where masking it, see where_mask) -> Softmax over the last
     * axis (+ mask) -> MatMul reading it as A.
     */
    int32_t s_v = n->out[0], w = sole(c, s_v, "Where"), sm_in = s_v;
    struct where_mask wm = {NULL, -1, {-1, -1}, 0.0f, false};
    if (w >= 0) {
        if (c->kp->ptr != NULL || !where_mask(c, w, s_v, &wm))
            return VEIL_OK;
        sm_in = c->g->nodes[w].out[0];
    }
    int32_t sm = sole(c, sm_in, "Softmax");
    if (sm < 0)
        return VEIL_OK;
    const struct veil__engine_node *smn = &c->g->nodes[sm];
    if (smn->in[0] != sm_in || smn->n_post != 0 || smn->n_out != 1 || smn->out[0] < 0 ||
        (w >= 0 && smn->add_in >= 0))
        return VEIL_OK;
    int32_t p_v = smn->out[0], m2 = sole(c, p_v, "MatMul");
    if (m2 < 0 || c->step_of[m2] <= c->step_of[sm])
        return VEIL_OK;
    const struct veil__engine_node *m2n = &c->g->nodes[m2];
    if (m2n->n_in != 2 || m2n->in[0] != p_v || m2n->in[1] < 0 || m2n->in[1] == p_v ||
        m2n->n_post != 0 || m2n->add_in >= 0 || m2n->n_out != 1 || m2n->out[0] < 0)
        return VEIL_OK;
    int32_t v_v = m2n->in[1], o_v = m2n->out[0], mask_v = smn->add_in;
    /* Shapes: Q [.., Sq, D], K^T [.., D, Sk], V [.., Sk, Dv] with equal batch dims. */
    size_t r = c->in[0].rank;
    const struct veil__engine_tv *q = &c->in[0], *kt = &c->in[1], *v = &c->vals[v_v].t;
    if (r < 2 || r > 4 || kt->rank != r || !known_before(c, v_v) || v->rank != r)
        return VEIL_OK;
    /* Over the last axis, opsets before 13 (which coerce to 2-D there) mean the same. */
    int64_t axis = veil__engine_attr_i(smn, "axis", c->opset >= 13 ? -1 : 1);
    if (axis != -1 && axis != (int64_t)r - 1)
        return VEIL_OK;
    for (size_t i = 0; i + 2 < r; i++)
        if (q->dims[i] != kt->dims[i] || q->dims[i] != v->dims[i])
            return VEIL_OK;
    int64_t sq = q->dims[r - 2], d = q->dims[r - 1], sk = kt->dims[r - 1], dv = v->dims[r - 1];
    if (kt->dims[r - 2] != d || v->dims[r - 2] != sk || sq <= 0 || d <= 0 || sk <= 0 || dv <= 0)
        return VEIL_OK;
    int64_t sdims[VEIL__ENGINE_RANK], mst[4] = {0, 0, 0, 0};
    memcpy(sdims, q->dims, r * sizeof(int64_t));
    sdims[r - 1] = sk;
    const struct veil__engine_tv *mt = wm.cond;
    if (mask_v >= 0) {
        const struct veil__engine_pval *mp = &c->vals[mask_v];
        if (mp->t.dt != VEIL_DT_FLOAT || mp->blocked || !known_before(c, mask_v) ||
            (!mp->runtime && mp->t.data == NULL))
            return VEIL_OK;
        mt = &mp->t;
    }
    if (mt != NULL) {
        /* Broadcast to the scores' shape without changing it; read at strides (0 repeats). */
        if (mt->rank > r)
            return VEIL_OK;
        int64_t mrm[VEIL__ENGINE_RANK], mfull[4] = {0, 0, 0, 0};
        row_major(mt->rank, mt->dims, mrm);
        size_t off = r - mt->rank;
        for (size_t i = 0; i < mt->rank; i++) {
            int64_t md = mt->dims[i];
            if (md != 1 && md != sdims[off + i])
                return VEIL_OK;
            mfull[4 - mt->rank + i] = md == 1 ? 0 : mrm[i];
        }
        memcpy(mst, mfull, sizeof(mst));
        if (mst[3] != 0 && mst[3] != 1)
            return VEIL_OK;
    }
    /* Q and K^T, or the operands a Mul/Div scaled just before (read unscaled, see prescaled). */
    int32_t qsrc = n->in[0], ksrc = n->in[1];
    int32_t qmul = prescaled(c, n->in[0], c->node, &qsrc, &scale);
    int32_t kmul = prescaled(c, n->in[1], c->node, &ksrc, &scale);
    struct att_view qv, kv, vv;
    if (!input_view(c, qsrc, qmul >= 0 ? qmul : c->node, r, &qv) ||
        !input_view(c, ksrc, kmul >= 0 ? kmul : c->node, r, &kv) ||
        !input_view(c, v_v, m2, r, &vv) || !isfinite(scale))
        return VEIL_OK;
    /* Every size the kernel indexes fits comfortably in its 64-bit arithmetic. */
    uint64_t tf = thread_floats(sk, d, dv);
    if ((uint64_t)sk > (1u << 24) || (uint64_t)d > (1u << 20) || (uint64_t)dv > (1u << 20) ||
        tf > (uint64_t)1 << 34)
        return VEIL_OK;
    size_t per_thread = (size_t)tf * sizeof(float);
    /*
     * From here the chain is fused. A constant Where mask becomes an addend: 0 where the
     * scores are kept, the fill elsewhere.
     */
    float *wbuf = NULL;
    if (wm.cond != NULL && wm.cond_v < 0) {
        wbuf = veil_allocarray(wm.cond->numel + 1, sizeof(float));
        if (wbuf == NULL)
            return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for an attention mask");
        const uint8_t *cb = wm.cond->data;
        for (uint64_t i = 0; i < wm.cond->numel; i++)
            wbuf[i] = (cb[i] != 0) == wm.scores_first ? 0.0f : wm.fill;
    }
    unsigned threads = c->threads > 0 ? c->threads : 1;
    int64_t od[VEIL__ENGINE_RANK], ost[VEIL__ENGINE_RANK];
    memcpy(od, q->dims, r * sizeof(int64_t));
    od[r - 1] = dv;
    output_view(c, o_v, r, od, ost);
    if (qmul >= 0)
        veil__engine_skip_node(c, qmul, n->in[0], qsrc);
    if (kmul >= 0)
        veil__engine_skip_node(c, kmul, n->in[1], ksrc);
    if (qv.tnode >= 0)
        veil__engine_skip_transpose(c, qv.tnode, qsrc);
    if (kv.tnode >= 0)
        veil__engine_skip_transpose(c, kv.tnode, ksrc);
    if (vv.tnode >= 0)
        veil__engine_skip_transpose(c, vv.tnode, v_v);
    c->vals[s_v].runtime = false; /* the scores are never stored */
    /* The later steps this kernel does (exec/plan.c gives their outputs no storage). */
    int32_t later[5] = {sm, m2, w, wm.skip[0], wm.skip[1]};
    for (size_t i = 0; i < 5; i++)
        if (later[i] >= 0)
            c->steps[c->step_of[later[i]]].absorbed_by = c->step + 1;
    struct veil__engine_kparams *kp = c->kp;
    void *keep = kp->ptr; /* owned by the step, freed with it */
    memset(kp, 0, sizeof(*kp));
    kp->ptr = wbuf != NULL ? wbuf : keep;
    int64_t d4[4];
    for (size_t i = 0; i < 4; i++)
        d4[i] = i < 4 - r ? 1 : q->dims[i - (4 - r)];
    kp->attention.b = d4[0];
    kp->attention.h = d4[1];
    kp->attention.sq = sq;
    kp->attention.sk = sk;
    kp->attention.d = d;
    kp->attention.dv = dv;
    kp->attention.threads = threads;
    kp->attention.per_thread = (int64_t)per_thread;
    kp->attention.mask = wbuf != NULL     ? MASK_OWNED
                         : wm.cond_v >= 0 ? MASK_COND
                         : mask_v >= 0    ? MASK_VALUE
                                          : MASK_NONE;
    kp->attention.scores_first = wm.scores_first;
    kp->attention.fill = wm.fill;
    memcpy(kp->attention.mask_strides, mst, sizeof(mst));
    pad4(r, qv.st, kp->attention.q_strides);
    pad4(r, kv.st, kp->attention.k_strides);
    pad4(r, vv.st, kp->attention.v_strides);
    pad4(r, ost, kp->attention.o_strides);
    kp->attention.isa = isa;
    kp->attention.scale = scale;
    st->xexec = attention_exec;
    st->xval[0] = v_v;
    st->xval[1] = wm.cond_v >= 0 ? wm.cond_v : mask_v;
    st->xval[2] = o_v;
    st->n_xval = 3;
    if (st->scratch_bytes < per_thread * threads)
        st->scratch_bytes = per_thread * threads;
    *taken = true;
#else
    (void)c;
    (void)st;
#endif
    return VEIL_OK;
}
