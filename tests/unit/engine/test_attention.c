/*
 * Fused attention (softmax(scale * Q K^T + mask) V as one kernel) against a double-precision
 * reference: heads split and merged by Transposes, queries and keys of different lengths,
 * value width unlike the key width, every mask broadcast the kernel reads (per sequence,
 * causal with -inf, full), scales written as Div and Mul or absent, more than one block of
 * query rows and of columns with vector tails, one head without Transposes, a model at opset
 * 12 (the softmax axis counted from the front), causal masks written as Where with a constant
 * condition, and chains the
 * kernel must leave alone (the probabilities also a graph output). Every case runs with the
 * widest kernels the CPU has, with the AVX2 kernels, and unfused; the profile says which runs
 * took the fused kernel. Also the profile API's contract.
 */
#include "harness.h"
#include "engine_int.h"
#include "engine_test.h"
#include "model_builder.h"

#include "veil/engine.h"

#include <float.h>
#include <math.h>

/*
 * Masks: none, an additive mask input (per sequence, causal, full), or a causal Where on the
 * scores with a constant condition: Where(keep, scores, -inf), or Where(drop, fill, scores)
 * with fill = -FLT_MAX (torch.finfo(float32).min, as HF's GPT-2 writes it), or
 * Where(keep, scores, -10000): a replacement, not an addend, which must stay unfused; or a
 * padding Where from a boolean input, Where(drop, finfo.min, scores), the input used as is or,
 * as DistilBERT writes it, expanded to Shape(scores) and cast to bool first.
 */
enum {
    MASK_NONE,
    MASK_PAD,
    MASK_CAUSAL,
    MASK_FULL,
    MASK_WHERE,
    MASK_WHERE_MIN,
    MASK_WHERE_SMALL,
    MASK_WHERE_INPUT,
    MASK_WHERE_EXPAND
};

static bool mask_input(int mask)
{
    return mask == MASK_PAD || mask == MASK_CAUSAL || mask == MASK_FULL ||
           mask == MASK_WHERE_INPUT || mask == MASK_WHERE_EXPAND;
}
/*
 * The scale: none, the scores divided by sqrt(D) or multiplied by its inverse, Q divided by
 * sqrt(D) before the product (DistilBERT), or Q and K^T each multiplied by D^-1/4 before it
 * (exported scaled_dot_product_attention).
 */
enum { SCALE_NONE, SCALE_DIV, SCALE_MUL, SCALE_PRE_DIV_Q, SCALE_PRE_MUL_QK };

struct spec {
    int64_t b, h, sq, sk, d, dv;
    int mask, scale;
    bool probs_out; /* the softmax output is a graph output too: the chain stays unfused */
    bool one_head;  /* rank-3 operands, K^T by Transpose(0, 2, 1), no head split */
    bool opset12;   /* the model at opset 12: the softmax axis counted from the front */
};

/* Whether the causal Where masks keys j of query i (Sk - Sq keys precede the queries). */
static bool causal_drop(const struct spec *s, int64_t i, int64_t j)
{
    return j > i + (s->sk - s->sq);
}

/* Whether the fused attention is expected with the kernels capped at isa. */
static bool fusable_with(enum veil__engine_vec_isa isa)
{
    enum veil__engine_vec_isa best = veil__engine_vec_best();
    return (isa < best ? isa : best) != VEIL__ENGINE_VEC_BASE;
}

/* The mask value for (batch b, head h, query i, key j); the mask tensor holds its own dims. */
static float mask_at(const struct spec *s, int64_t b, int64_t h, int64_t i, int64_t j)
{
    switch (s->mask) {
    case MASK_PAD:
        return b == s->b - 1 && j >= s->sk - 3 ? -10000.0f : 0.0f;
    case MASK_CAUSAL:
        return j > i + (s->sk - s->sq) ? -INFINITY : 0.0f;
    case MASK_FULL:
        return (float)((b * 7 + h * 5 + i * 3 + j) % 11) * -0.25f;
    case MASK_WHERE:
        return causal_drop(s, i, j) ? -INFINITY : 0.0f;
    case MASK_WHERE_MIN:
        return causal_drop(s, i, j) ? -FLT_MAX : 0.0f;
    case MASK_WHERE_INPUT:
    case MASK_WHERE_EXPAND:
        return b == s->b - 1 && j >= s->sk - 3 ? -FLT_MAX : 0.0f;
    default:
        return 0.0f;
    }
}

/*
 * Builds the chain, runs it with the fused attention capped at isa, checks it; *fused_out:
 * whether the runs used the fused kernel.
 */
static void attention_case(const struct spec *s, enum veil__engine_vec_isa isa, bool *fused_out)
{
    *fused_out = false;
    int64_t E = s->h * s->d, EV = s->h * s->dv;
    size_t nq = (size_t)(s->b * s->sq * E), nk = (size_t)(s->b * s->sk * E),
           nv = (size_t)(s->b * s->sk * EV), no = (size_t)(s->b * s->sq * EV);
    size_t nm = (size_t)(s->b * s->h * s->sq * s->sk);
    float *xq = malloc(nq * sizeof(float)), *xk = malloc(nk * sizeof(float)),
          *xv = malloc(nv * sizeof(float)), *mask = malloc(nm * sizeof(float)),
          *want = malloc(no * sizeof(float));
    double *p = malloc((size_t)s->sk * sizeof(double));
    ASSERT_TRUE(xq && xk && xv && mask && want && p);
    uint32_t seed = (uint32_t)(s->sq * 131 + s->sk * 7 + s->d);
    for (size_t i = 0; i < nq; i++)
        xq[i] = rnd(&seed) * 2.0f;
    for (size_t i = 0; i < nk; i++)
        xk[i] = rnd(&seed) * 2.0f;
    for (size_t i = 0; i < nv; i++)
        xv[i] = rnd(&seed);
    /* The mask tensor: its dims per kind, filled from mask_at. */
    int64_t mdims[4];
    size_t mrank = s->one_head ? 3 : 4;
    if (s->mask == MASK_PAD || s->mask == MASK_WHERE_INPUT || s->mask == MASK_WHERE_EXPAND) {
        int64_t d4[4] = {s->b, 1, 1, s->sk}, d3[3] = {s->b, 1, s->sk};
        memcpy(mdims, s->one_head ? d3 : d4, mrank * sizeof(int64_t));
    } else if (s->mask == MASK_CAUSAL) {
        int64_t d4[4] = {1, 1, s->sq, s->sk}, d3[3] = {1, s->sq, s->sk};
        memcpy(mdims, s->one_head ? d3 : d4, mrank * sizeof(int64_t));
    } else {
        int64_t d4[4] = {s->b, s->h, s->sq, s->sk}, d3[3] = {s->b, s->sq, s->sk};
        memcpy(mdims, s->one_head ? d3 : d4, mrank * sizeof(int64_t));
    }
    {
        /* Fill in the mask tensor's own row-major order (4-D view, leading 1 for rank 3). */
        int64_t m4[4] = {1, 1, 1, 1};
        for (size_t i = 0; i < mrank; i++)
            m4[4 - mrank + i] = mdims[i];
        size_t k = 0;
        for (int64_t b = 0; b < m4[0]; b++)
            for (int64_t h = 0; h < m4[1]; h++)
                for (int64_t i = 0; i < m4[2]; i++)
                    for (int64_t j = 0; j < m4[3]; j++)
                        mask[k++] = mask_at(s, s->one_head ? h : b, s->one_head ? 0 : h, i, j);
    }
    struct mb mb;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    mb_init(&mb);
    if (s->opset12)
        mb.opset = 12;
    int64_t qd[3] = {s->b, s->sq, E}, kd[3] = {s->b, s->sk, E}, vd[3] = {s->b, s->sk, EV},
            odims[3] = {s->b, s->sq, EV}, pd4[4] = {s->b, s->h, s->sq, s->sk},
            pd3[3] = {s->b, s->sq, s->sk};
    int64_t qsh[4] = {s->b, s->sq, s->h, s->d}, ksh[4] = {s->b, s->sk, s->h, s->d},
            vsh[4] = {s->b, s->sk, s->h, s->dv}, osh[3] = {s->b, s->sq, EV}, four[1] = {4},
            three[1] = {3}, one[1] = {1};
    static const int64_t p_split[4] = {0, 2, 1, 3}, p_kt[4] = {0, 2, 3, 1}, p_t3[3] = {0, 2, 1};
    float sc = sqrtf((float)s->d), inv = 1.0f / sqrtf((float)s->d);
    mb_input(&mb, "xq", 1, 3, qd);
    mb_input(&mb, "xk", 1, 3, kd);
    mb_input(&mb, "xv", 1, 3, vd);
    if (mask_input(s->mask))
        mb_input(&mb, "mask", s->mask >= MASK_WHERE_INPUT ? 9 : 1, mrank, mdims);
    float quarter = 1.0f / sqrtf(sqrtf((float)s->d));
    mb_init_f(&mb, "sc", 1, one,
              s->scale == SCALE_PRE_MUL_QK ? &quarter
              : s->scale == SCALE_MUL      ? &inv
                                           : &sc);
    /* Q and K^T as the product reads them, after any scaling before it. */
    const char *qn = s->one_head ? "xq" : "qt", *kn = "kt";
    if (s->one_head) {
        mb_node(&mb, "Transpose", "xk", "kt", 1, mb_attr_ints(&mb, "perm", 3, p_t3));
    } else {
        mb_init_i64(&mb, "qsh", 1, four, qsh);
        mb_init_i64(&mb, "ksh", 1, four, ksh);
        mb_init_i64(&mb, "vsh", 1, four, vsh);
        mb_init_i64(&mb, "osh", 1, three, osh);
        mb_node(&mb, "Reshape", "xq,qsh", "q4", 0);
        mb_node(&mb, "Reshape", "xk,ksh", "k4", 0);
        mb_node(&mb, "Reshape", "xv,vsh", "v4", 0);
        mb_node(&mb, "Transpose", "q4", "qt", 1, mb_attr_ints(&mb, "perm", 4, p_split));
        mb_node(&mb, "Transpose", "k4", "kt", 1, mb_attr_ints(&mb, "perm", 4, p_kt));
        mb_node(&mb, "Transpose", "v4", "vt", 1, mb_attr_ints(&mb, "perm", 4, p_split));
    }
    char pre[24];
    if (s->scale == SCALE_PRE_DIV_Q || s->scale == SCALE_PRE_MUL_QK) {
        snprintf(pre, sizeof(pre), "%s,sc", qn);
        mb_node(&mb, s->scale == SCALE_PRE_DIV_Q ? "Div" : "Mul", pre, "qs", 0);
        qn = "qs";
    }
    if (s->scale == SCALE_PRE_MUL_QK) {
        mb_node(&mb, "Mul", "sc,kt", "ks", 0); /* the constant first */
        kn = "ks";
    }
    snprintf(pre, sizeof(pre), "%s,%s", qn, kn);
    mb_node(&mb, "MatMul", pre, "s", 0);
    const char *scores = "s";
    if (s->scale == SCALE_DIV)
        mb_node(&mb, "Div", "s,sc", "s2", 0);
    else if (s->scale == SCALE_MUL)
        mb_node(&mb, "Mul", "s,sc", "s2", 0);
    if (s->scale == SCALE_DIV || s->scale == SCALE_MUL)
        scores = "s2";
    if (s->mask >= MASK_WHERE_INPUT) {
        static const float min_fill = -FLT_MAX;
        int64_t none[1] = {0};
        char ins[24];
        mb_init_f(&mb, "fill", 0, none, &min_fill);
        const char *cond = "mask";
        if (s->mask == MASK_WHERE_EXPAND) {
            mb_node(&mb, "Shape", scores, "ssh", 0);
            mb_node(&mb, "Expand", "mask,ssh", "mx", 0);
            mb_node(&mb, "Cast", "mx", "mc", 1, mb_attr_i(&mb, "to", 9));
            cond = "mc";
        }
        snprintf(ins, sizeof(ins), "%s,fill,%s", cond, scores);
        mb_node(&mb, "Where", ins, "s3", 0);
        scores = "s3";
    } else if (mask_input(s->mask)) {
        char ins[16];
        snprintf(ins, sizeof(ins), "%s,mask", scores);
        mb_node(&mb, "Add", ins, "s3", 0);
        scores = "s3";
    } else if (s->mask >= MASK_WHERE) {
        /* A constant [1, 1, Sq, Sk] (or [1, Sq, Sk]) condition and a scalar fill. */
        size_t nc = (size_t)(s->sq * s->sk);
        uint8_t *cond = mb_alloc(&mb, nc);
        for (int64_t i = 0; i < s->sq; i++)
            for (int64_t j = 0; j < s->sk; j++) {
                bool keep = !causal_drop(s, i, j);
                cond[i * s->sk + j] = s->mask == MASK_WHERE_MIN ? !keep : keep;
            }
        int64_t cd4[4] = {1, 1, s->sq, s->sk}, cd3[3] = {1, s->sq, s->sk}, none[1] = {0};
        static const float inf_fill = -INFINITY, min_fill = -FLT_MAX, small_fill = -10000.0f;
        mb.inits[mb.n_inits++] =
            mb_tensor(&mb, "cond", 9, s->one_head ? 3 : 4, s->one_head ? cd3 : cd4, cond, nc);
        mb_init_f(&mb, "fill", 0, none,
                  s->mask == MASK_WHERE       ? &inf_fill
                  : s->mask == MASK_WHERE_MIN ? &min_fill
                                              : &small_fill);
        char ins[24];
        snprintf(ins, sizeof(ins), s->mask == MASK_WHERE_MIN ? "cond,fill,%s" : "cond,%s,fill",
                 scores);
        mb_node(&mb, "Where", ins, "s3", 0);
        scores = "s3";
    }
    int64_t axis = s->opset12 ? (s->one_head ? 2 : 3) : -1;
    mb_node(&mb, "Softmax", scores, "pr", 1, mb_attr_i(&mb, "axis", axis));
    if (s->one_head) {
        mb_node(&mb, "MatMul", "pr,xv", "y", 0);
    } else {
        mb_node(&mb, "MatMul", "pr,vt", "o", 0);
        mb_node(&mb, "Transpose", "o", "ot", 1, mb_attr_ints(&mb, "perm", 4, p_split));
        mb_node(&mb, "Reshape", "ot,osh", "y", 0);
    }
    mb_output(&mb, "y", 1, 3, odims);
    if (s->probs_out)
        mb_output(&mb, "pr", 1, s->one_head ? 3 : 4, s->one_head ? pd3 : pd4);
    struct veil_engine_options opt = {.threads = 2, .profile = true};
    ASSERT_OK(mb_load(&mb, &opt, &m, &eb));
    veil__engine_model_cap_attention(m, isa);
    /* The reference, in double; the one-head layout is the split layout with H = 1. */
    for (int64_t b = 0; b < s->b; b++)
        for (int64_t h = 0; h < s->h; h++)
            for (int64_t i = 0; i < s->sq; i++) {
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < s->sk; j++) {
                    double dot = 0;
                    for (int64_t d = 0; d < s->d; d++)
                        dot += (double)xq[(b * s->sq + i) * E + h * s->d + d] *
                               xk[(b * s->sk + j) * E + h * s->d + d];
                    if (s->scale == SCALE_MUL)
                        dot *= inv;
                    else if (s->scale != SCALE_NONE)
                        dot /= sc;
                    p[j] = s->mask == MASK_WHERE_SMALL && causal_drop(s, i, j)
                               ? -10000.0
                               : dot + mask_at(s, b, h, i, j);
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int64_t j = 0; j < s->sk; j++) {
                    p[j] = exp(p[j] - mx);
                    sum += p[j];
                }
                for (int64_t e = 0; e < s->dv; e++) {
                    double acc = 0;
                    for (int64_t j = 0; j < s->sk; j++)
                        acc += p[j] / sum * xv[(b * s->sk + j) * EV + h * s->dv + e];
                    want[(b * s->sq + i) * EV + h * s->dv + e] = (float)acc;
                }
            }
    /* The boolean input: true where the key is dropped. */
    uint8_t *drop = malloc(nm);
    ASSERT_TRUE(drop != NULL);
    for (size_t i = 0; i < nm; i++)
        drop[i] = mask[i] != 0.0f;
    struct veil_tensor in[4] = {tensor_f(xq, 3, qd), tensor_f(xk, 3, kd), tensor_f(xv, 3, vd),
                                s->mask >= MASK_WHERE_INPUT
                                    ? tensor_of(VEIL_DT_BOOL, mrank, mdims, drop)
                                    : tensor_f(mask, mrank, mdims)};
    struct veil_tensor out[2];
    size_t n_out = s->probs_out ? 2 : 1;
    for (int run = 0; run < 2; run++) {
        ASSERT_OK(veil_engine_run(m, in, mask_input(s->mask) ? 4 : 3, out, n_out, &eb));
        double err = rel_l2(out[0].data, want, no);
        if (err > 1e-5)
            fprintf(stderr, "attention b%lld h%lld sq%lld sk%lld d%lld dv%lld mask %d: %g\n",
                    (long long)s->b, (long long)s->h, (long long)s->sq, (long long)s->sk,
                    (long long)s->d, (long long)s->dv, s->mask, err);
        ASSERT_TRUE(err <= 1e-5);
        for (size_t k = 0; k < n_out; k++)
            veil_tensor_release(&out[k]);
    }
    struct veil_engine_prof_row row;
    size_t n_rows = 0;
    uint64_t runs = 0;
    double run_ms = 0;
    ASSERT_OK(veil_engine_model_profile(m, &row, 1, &n_rows, &runs, &run_ms, &eb));
    ASSERT_EQ_U64(runs, 2);
    bool fused = profile_has(m, "Attention", true), softmax = profile_has(m, "Softmax", true);
    /* Fused, a scaling of Q or K^T before the product is folded into the kernel's scale. */
    if (fused && (s->scale == SCALE_PRE_DIV_Q || s->scale == SCALE_PRE_MUL_QK))
        ASSERT_TRUE(!profile_has(m, "Div", false) && !profile_has(m, "Mul", false));
    ASSERT_TRUE(fused != softmax); /* the softmax ran on its own exactly when not fused */
    veil_engine_model_free(m);
    free(xq);
    free(xk);
    free(xv);
    free(mask);
    free(drop);
    free(want);
    free(p);
    *fused_out = fused;
}

TEST(attention_shapes_masks_and_scales)
{
    static const struct spec cases[] = {
        /* BERT-like: padding mask, Div scale. */
        {2, 3, 128, 128, 64, 64, MASK_PAD, SCALE_DIV, false, false, false},
        /* Cross attention: more keys than queries, value width 80 (two column blocks). */
        {2, 2, 37, 150, 20, 80, MASK_PAD, SCALE_MUL, false, false, false},
        /* Causal -inf mask broadcast over batch and heads; 300 query rows (three blocks). */
        {1, 2, 300, 300, 16, 16, MASK_CAUSAL, SCALE_DIV, false, false, false},
        /* A full mask per head, no scale, tiny sizes (one-lane tails). */
        {3, 2, 5, 7, 3, 1, MASK_FULL, SCALE_NONE, false, false, false},
        /* No mask; 130 keys: a column block of 64, 64 and a 2-wide tail. */
        {1, 4, 65, 130, 33, 17, MASK_NONE, SCALE_MUL, false, false, false},
        /* One head, rank-3 operands. */
        {2, 1, 50, 70, 24, 40, MASK_CAUSAL, SCALE_DIV, false, true, false},
        /* Opset 12 (as torch exports with opset_version 12): Softmax axis 3, the mask Add. */
        {2, 3, 40, 40, 16, 16, MASK_PAD, SCALE_DIV, false, false, true},
        /* GPT-2's causal Where with -inf, and with finfo.min and the operands swapped. */
        {2, 3, 70, 70, 32, 32, MASK_WHERE, SCALE_MUL, false, false, false},
        {1, 2, 20, 45, 8, 8, MASK_WHERE_MIN, SCALE_DIV, false, false, false},
        {2, 1, 33, 33, 16, 24, MASK_WHERE, SCALE_DIV, false, true, false},
        /* A padding Where from a boolean input, as is and expanded (DistilBERT). */
        {3, 2, 50, 50, 16, 16, MASK_WHERE_INPUT, SCALE_DIV, false, false, false},
        {2, 3, 64, 64, 16, 16, MASK_WHERE_EXPAND, SCALE_NONE, false, false, false},
        /* Q scaled before the product; Q and K^T scaled before it (one head too). */
        {2, 2, 48, 48, 32, 32, MASK_WHERE_EXPAND, SCALE_PRE_DIV_Q, false, false, false},
        {2, 3, 40, 56, 16, 16, MASK_PAD, SCALE_PRE_MUL_QK, false, false, false},
        {2, 1, 30, 30, 16, 16, MASK_CAUSAL, SCALE_PRE_MUL_QK, false, true, false},
    };
    static const enum veil__engine_vec_isa caps[] = {VEIL__ENGINE_VEC_AVX512, VEIL__ENGINE_VEC_AVX2,
                                                     VEIL__ENGINE_VEC_BASE};
    for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++)
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            bool fused;
            attention_case(&cases[i], caps[c], &fused);
            ASSERT_TRUE(fused == fusable_with(caps[c]));
        }
}

TEST(attention_where_with_a_small_fill_stays_unfused)
{
    static const struct spec s = {2,         2,     24,    24,   8, 8, MASK_WHERE_SMALL,
                                  SCALE_DIV, false, false, false};
    bool fused = true;
    attention_case(&s, VEIL__ENGINE_VEC_AVX512, &fused);
    ASSERT_FALSE(fused);
}

TEST(attention_left_unfused_when_probabilities_are_read)
{
    static const struct spec s = {2, 2, 20, 20, 8, 8, MASK_PAD, SCALE_DIV, true, false, false};
    bool fused = true;
    attention_case(&s, VEIL__ENGINE_VEC_AVX512, &fused);
    ASSERT_FALSE(fused);
}

TEST(profile_contract)
{
    int64_t d[2] = {4, 8};
    struct mb mb;
    struct veil_engine_model *m = NULL;
    struct veil_errbuf eb = {{0}};
    float x[32];
    for (size_t i = 0; i < 32; i++)
        x[i] = (float)i - 16.0f;
    mb_init(&mb);
    mb_input(&mb, "x", 1, 2, d);
    mb_node(&mb, "Relu", "x", "r", 0);
    mb_node(&mb, "Exp", "r", "y", 0);
    mb_output(&mb, "y", 1, 2, d);
    struct veil_buf buf;
    mb_pack(&mb, &buf);
    mb_release(&mb);
    struct veil_engine_prof_row rows[4];
    size_t n = 9;
    uint64_t runs = 9;
    double ms = 9;
    /* Without the option: refused, and the counts are zeroed. */
    struct veil_engine_options plain = {.threads = 1};
    ASSERT_OK(veil_engine_model_load(veil_buf_span(&buf), &plain, &m, &eb));
    ASSERT_ERR(veil_engine_model_profile(m, rows, 4, &n, &runs, &ms, &eb), VEIL_E_INVALID);
    ASSERT_TRUE(n == 0 && runs == 0 && ms == 0);
    veil_engine_model_free(m);
    struct veil_engine_options prof = {.threads = 1, .profile = true};
    ASSERT_OK(veil_engine_model_load(veil_buf_span(&buf), &prof, &m, &eb));
    veil_buf_release(&buf);
    ASSERT_OK(veil_engine_model_profile(m, rows, 4, &n, &runs, &ms, &eb));
    ASSERT_TRUE(n == 0 && runs == 0);
    struct veil_tensor in = tensor_f(x, 2, d), out;
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(veil_engine_run(m, &in, 1, &out, 1, &eb));
        veil_tensor_release(&out);
    }
    /* Two labels; a cap of 1 writes the slower one and still counts both. */
    ASSERT_OK(veil_engine_model_profile(m, rows, 1, &n, &runs, &ms, &eb));
    ASSERT_EQ_U64(n, 2);
    ASSERT_EQ_U64(runs, 3);
    ASSERT_TRUE(ms > 0);
    ASSERT_OK(veil_engine_model_profile(m, rows, 4, &n, &runs, &ms, &eb));
    ASSERT_TRUE(rows[0].ms >= rows[1].ms);
    ASSERT_TRUE((strcmp(rows[0].op, "Relu") == 0 && strcmp(rows[1].op, "Exp") == 0) ||
                (strcmp(rows[0].op, "Exp") == 0 && strcmp(rows[1].op, "Relu") == 0));
    ASSERT_EQ_U64(rows[0].nodes, 1);
    ASSERT_TRUE(rows[0].ms + rows[1].ms <= ms);
    veil_engine_model_profile_reset(m);
    ASSERT_OK(veil_engine_model_profile(m, rows, 4, &n, &runs, &ms, &eb));
    ASSERT_TRUE(n == 0 && runs == 0 && ms == 0);
    veil_engine_model_free(m);
}

RUN_TESTS()
