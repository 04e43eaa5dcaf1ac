/*
 * Recurrent operators: LSTM, GRU and RNN in the forms of opsets 7 to 14 and later (forward,
 * reverse and bidirectional; sequence_lens; initial_h and initial_c; LSTM peepholes; layouts 0
 * and 1; the activation list with its alpha and beta values; clip; input_forget;
 * linear_before_reset; any of Y, Y_h and Y_c omitted).
 *
 * One oneDNN matmul projects the inputs of every time step for both directions at once
 * (X W^T). Then the directions advance in lockstep: each step multiplies the previous hidden
 * states by R^T (one batched oneDNN matmul, or for at most SMALL_ROWS batch rows the engine's
 * own kernels on R^T packed into column panels) and the gate kernels add the projection and
 * the biases, clip, apply the activations (Sigmoid and Tanh on vector exp kernels) and update
 * the states in place. Constant weights are reordered or packed once at plan time. A batch
 * entry whose sequence is shorter stops at its length: Y is zero past it, and an entry of
 * length 0 gets zero Y_h and Y_c, as ONNX Runtime gives. A run allocates nothing: every buffer
 * is a region of the step scratch sized at plan time, and the primitives use it as their
 * scratchpad.
 */
#include "engine_int.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { IN_X, IN_W, IN_R, IN_B, IN_SEQ, IN_H0, IN_C0, IN_P };
enum { OUT_Y, OUT_YH, OUT_YC };

enum rnn_kind { K_LSTM, K_GRU, K_RNN };

enum act_kind {
    A_RELU,
    A_TANH,
    A_SIGMOID,
    A_AFFINE,
    A_LEAKY,
    A_THRELU,
    A_STANH,
    A_HSIGMOID,
    A_ELU,
    A_SOFTSIGN,
    A_SOFTPLUS,
};

/*
 * The activation list of the operators' schemas. n_alpha and n_beta: how many values each
 * takes from activation_alpha and activation_beta, which are consumed in the order of the
 * activations (ONNX Runtime's reading; the lists hold values only for the activations that
 * take them). The defaults are those of the ONNX operators of the same name.
 */
struct act_def {
    const char *name;
    enum act_kind kind;
    uint8_t n_alpha, n_beta;
    float alpha, beta;
};

static const struct act_def k_acts[] = {
    {"Relu", A_RELU, 0, 0, 0.0f, 0.0f},         {"Tanh", A_TANH, 0, 0, 0.0f, 0.0f},
    {"Sigmoid", A_SIGMOID, 0, 0, 0.0f, 0.0f},   {"Affine", A_AFFINE, 1, 1, 1.0f, 0.0f},
    {"LeakyRelu", A_LEAKY, 1, 0, 0.01f, 0.0f},  {"ThresholdedRelu", A_THRELU, 1, 0, 1.0f, 0.0f},
    {"ScaledTanh", A_STANH, 1, 1, 1.0f, 1.0f},  {"HardSigmoid", A_HSIGMOID, 1, 1, 0.2f, 0.5f},
    {"Elu", A_ELU, 1, 0, 1.0f, 0.0f},           {"Softsign", A_SOFTSIGN, 0, 0, 0.0f, 0.0f},
    {"Softplus", A_SOFTPLUS, 0, 0, 0.0f, 0.0f},
};

struct act {
    enum act_kind kind;
    float a, b;
};

#define RNN_MAX_ACTS 3 /* activations per direction (LSTM: f, g, h) */

/* A node's validated shapes and attributes. */
struct rnn_cfg {
    enum rnn_kind kind;
    int64_t seq, batch, input, hidden, dirs, gates; /* gates: 4, 3 or 1 blocks of hidden */
    bool layout1;                                   /* batch first: X [batch, seq, input] */
    bool reverse;                                   /* direction "reverse" (one direction) */
    bool lbr, input_forget, has_clip;
    float clip;
    size_t n_act;
    struct act act[2][RNN_MAX_ACTS];
};

/*
 * A step's prepared state (kp.ptr). The products are oneDNN matmul primitives in the step's
 * kstate (self_exec: veil__engine_rnn_exec runs them between its own kernels): ex_in projects the
 * inputs of every time step for both directions at once ([1, rows, input] x [dirs, input, gates *
 * hidden]; -1 when there is nothing to project), ex_rec multiplies the hidden states of both
 * directions by their R^T ([dirs, batch, hidden] x [dirs, hidden, n]), and ex_rec2 is a GRU's
 * (r . H) R_h^T when linear_before_reset is 0 (-1 otherwise), its z and r columns then being
 * ex_rec's n. A small batch has no per-step primitives: its products run on the panels of pk
 * and pk2 (or, for a computed R, of the scratch at off_rt and off_rt2). Every buffer is a region
 * of the step scratch at a fixed offset.
 */
struct rnn_prep {
    struct rnn_cfg cfg;
    enum veil__engine_vec_isa isa;
    bool split;     /* GRU with linear_before_reset 0 */
    bool runtime_r; /* R is computed during the run: R^T is written to the scratch first */
    bool small;     /* at most SMALL_ROWS batch rows: the per-step products on packed panels */
    const float *pk, *pk2; /* a constant R^T packed (small): first product, a split GRU's h */
    int ex_in, ex_rec, ex_rec2;
    size_t off_xw, off_gates, off_h, off_c, off_rh, off_gh, off_bias, off_rt, off_rt2, off_len;
};

static bool has_in(const struct veil__engine_ictx *c, size_t i)
{
    return i < c->n_in && c->n->in[i] >= 0;
}

static bool kin(const struct veil__engine_kctx *c, size_t i)
{
    return i < c->n_in && c->n->in[i] >= 0;
}

static bool kout(const struct veil__engine_kctx *c, size_t i)
{
    return i < c->n_out && c->n->out[i] >= 0;
}

static bool name_eq_nocase(const char *a, const char *b)
{
    for (;; a++, b++) {
        char x = *a >= 'A' && *a <= 'Z' ? (char)(*a - 'A' + 'a') : *a;
        char y = *b >= 'A' && *b <= 'Z' ? (char)(*b - 'A' + 'a') : *b;
        if (x != y)
            return false;
        if (x == '\0')
            return true;
    }
}

/* The tensor input i must be float of the given rank. */
static veil_err want_float(const struct veil__engine_ictx *c, size_t i, const char *what,
                           size_t rank)
{
    const struct veil__engine_tv *t = &c->in[i];
    if (t->dt != VEIL_DT_FLOAT)
        return veil_errf(c->eb,
                         t->dt == VEIL_DT_DOUBLE || t->dt == VEIL_DT_FLOAT16 ? VEIL_E_UNSUPPORTED
                                                                             : VEIL_E_INVALID,
                         "input %s has type %s (float is supported)", what, veil_dtype_name(t->dt));
    if (t->rank != rank)
        return veil_errf(c->eb, VEIL_E_INVALID, "input %s has rank %zu, expected %zu", what,
                         t->rank, rank);
    return VEIL_OK;
}

static veil_err want_dims(const struct veil__engine_ictx *c, size_t i, const char *what, int64_t d0,
                          int64_t d1, int64_t d2)
{
    const struct veil__engine_tv *t = &c->in[i];
    const int64_t want[3] = {d0, d1, d2};
    for (size_t k = 0; k < t->rank; k++)
        if (t->dims[k] != want[k]) {
            if (t->rank == 2)
                return veil_errf(c->eb, VEIL_E_INVALID,
                                 "input %s has shape [%lld, %lld], expected [%lld, %lld]", what,
                                 (long long)t->dims[0], (long long)t->dims[1], (long long)d0,
                                 (long long)d1);
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "input %s has shape [%lld, %lld, %lld], expected [%lld, %lld, %lld]",
                             what, (long long)t->dims[0], (long long)t->dims[1],
                             (long long)t->dims[2], (long long)d0, (long long)d1, (long long)d2);
        }
    return VEIL_OK;
}

/* Reads the activations and their alpha/beta values into cfg->act. */
static veil_err parse_acts(const struct veil__engine_ictx *c, struct rnn_cfg *cfg)
{
    static const enum act_kind defaults[3][RNN_MAX_ACTS] = {
        [K_LSTM] = {A_SIGMOID, A_TANH, A_TANH},
        [K_GRU] = {A_SIGMOID, A_TANH},
        [K_RNN] = {A_TANH},
    };
    const struct veil__engine_node *n = c->n;
    size_t per = cfg->kind == K_LSTM ? 3 : cfg->kind == K_GRU ? 2 : 1;
    cfg->n_act = per;
    for (int64_t d = 0; d < cfg->dirs; d++)
        for (size_t k = 0; k < per; k++)
            cfg->act[d][k] = (struct act){defaults[cfg->kind][k], 0.0f, 0.0f};
    const struct veil__engine_attr *names = veil__engine_attr_get(n, "activations");
    const struct veil__engine_attr *alpha = veil__engine_attr_get(n, "activation_alpha");
    const struct veil__engine_attr *beta = veil__engine_attr_get(n, "activation_beta");
    if (names != NULL && names->type != VEIL_ONNX_ATTR_STRINGS)
        return veil_errf(c->eb, VEIL_E_INVALID, "attribute activations is not a list of strings");
    if ((alpha != NULL && alpha->type != VEIL_ONNX_ATTR_FLOATS) ||
        (beta != NULL && beta->type != VEIL_ONNX_ATTR_FLOATS))
        return veil_errf(c->eb, VEIL_E_INVALID,
                         "attributes activation_alpha and activation_beta must be lists of floats");
    if (names == NULL)
        return VEIL_OK;
    size_t want = per * (size_t)cfg->dirs;
    /*
     * ONNX Runtime also takes two activations for a one-direction RNN (the second unused): the
     * list ONNX's own RNN tests were once written with.
     */
    bool rnn_pair = cfg->kind == K_RNN && cfg->dirs == 1 && names->n == 2;
    if (names->n != want && !rnn_pair)
        return veil_errf(c->eb, VEIL_E_INVALID,
                         "attribute activations has %zu names; %s with %lld direction%s takes %zu",
                         names->n, n->op_type, (long long)cfg->dirs, cfg->dirs > 1 ? "s" : "",
                         want);
    size_t ai = 0, bi = 0;
    for (size_t k = 0; k < names->n; k++) {
        const struct act_def *def = NULL;
        for (size_t j = 0; j < sizeof(k_acts) / sizeof(k_acts[0]) && def == NULL; j++)
            if (name_eq_nocase(names->strs[k], k_acts[j].name))
                def = &k_acts[j];
        if (def == NULL)
            return veil_errf(c->eb, VEIL_E_UNSUPPORTED,
                             "attribute activations: '%.64s' (entry %zu) is not one of Relu, "
                             "Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, "
                             "HardSigmoid, Elu, Softsign, Softplus",
                             names->strs[k], k);
        struct act a = {def->kind, def->alpha, def->beta};
        if (def->n_alpha > 0 && alpha != NULL && ai < alpha->n)
            a.a = alpha->floats[ai++];
        if (def->n_beta > 0 && beta != NULL && bi < beta->n)
            a.b = beta->floats[bi++];
        if (k < want)
            cfg->act[k / per][k % per] = a;
    }
    return VEIL_OK;
}

/* Checks a node's inputs and attributes and fills cfg. */
static veil_err parse_cfg(const struct veil__engine_ictx *c, struct rnn_cfg *cfg)
{
    const struct veil__engine_node *n = c->n;
    veil_err rc;
    memset(cfg, 0, sizeof(*cfg));
    if (strcmp(n->op_type, "LSTM") == 0)
        cfg->kind = K_LSTM;
    else if (strcmp(n->op_type, "GRU") == 0)
        cfg->kind = K_GRU;
    else if (strcmp(n->op_type, "RNN") == 0)
        cfg->kind = K_RNN;
    else
        return veil_errf(c->eb, VEIL_E_INTERNAL, "not a recurrent operator");
    cfg->gates = cfg->kind == K_LSTM ? 4 : cfg->kind == K_GRU ? 3 : 1;
    if (!has_in(c, IN_X) || !has_in(c, IN_W) || !has_in(c, IN_R))
        return veil_errf(c->eb, VEIL_E_INVALID, "inputs X, W and R are required");
    if ((rc = want_float(c, IN_X, "X", 3)) != VEIL_OK ||
        (rc = want_float(c, IN_W, "W", 3)) != VEIL_OK ||
        (rc = want_float(c, IN_R, "R", 3)) != VEIL_OK)
        return rc;

    const struct veil__engine_attr *la = veil__engine_attr_get(n, "layout");
    int64_t layout = la != NULL && la->type == VEIL_ONNX_ATTR_INT ? la->i : 0;
    if (la != NULL && (la->type != VEIL_ONNX_ATTR_INT || (layout != 0 && layout != 1)))
        return veil_errf(c->eb, VEIL_E_INVALID, "attribute layout must be 0 or 1 (is %lld)",
                         (long long)layout);
    cfg->layout1 = layout == 1;
    const struct veil__engine_attr *da = veil__engine_attr_get(n, "direction");
    const char *dir = da != NULL && da->type == VEIL_ONNX_ATTR_STRING ? da->s : "forward";
    if (da != NULL && da->type != VEIL_ONNX_ATTR_STRING)
        return veil_errf(c->eb, VEIL_E_INVALID, "attribute direction is not a string");
    if (strcmp(dir, "forward") == 0) {
        cfg->dirs = 1;
    } else if (strcmp(dir, "reverse") == 0) {
        cfg->dirs = 1;
        cfg->reverse = true;
    } else if (strcmp(dir, "bidirectional") == 0) {
        cfg->dirs = 2;
    } else {
        return veil_errf(c->eb, VEIL_E_INVALID,
                         "attribute direction is '%.64s' (forward, reverse or bidirectional)", dir);
    }

    const struct veil__engine_tv *x = &c->in[IN_X], *r = &c->in[IN_R];
    cfg->seq = x->dims[cfg->layout1 ? 1 : 0];
    cfg->batch = x->dims[cfg->layout1 ? 0 : 1];
    cfg->input = x->dims[2];
    cfg->hidden = r->dims[2];
    const struct veil__engine_attr *ha = veil__engine_attr_get(n, "hidden_size");
    if (ha != NULL) {
        if (ha->type != VEIL_ONNX_ATTR_INT || ha->i <= 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "attribute hidden_size must be a positive int");
        if (ha->i != cfg->hidden)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "attribute hidden_size is %lld but R has shape [%lld, %lld, %lld] "
                             "(hidden size %lld)",
                             (long long)ha->i, (long long)r->dims[0], (long long)r->dims[1],
                             (long long)r->dims[2], (long long)cfg->hidden);
    }
    if (cfg->hidden <= 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "R has hidden size %lld (must be positive)",
                         (long long)cfg->hidden);
    int64_t gh;
    if (__builtin_mul_overflow(cfg->gates, cfg->hidden, &gh))
        return veil_errf(c->eb, VEIL_E_LIMIT, "hidden size %lld is too large",
                         (long long)cfg->hidden);
    if ((rc = want_dims(c, IN_W, "W", cfg->dirs, gh, cfg->input)) != VEIL_OK ||
        (rc = want_dims(c, IN_R, "R", cfg->dirs, gh, cfg->hidden)) != VEIL_OK)
        return rc;
    if (has_in(c, IN_B)) {
        if ((rc = want_float(c, IN_B, "B", 2)) != VEIL_OK ||
            (rc = want_dims(c, IN_B, "B", cfg->dirs, 2 * gh, 0)) != VEIL_OK)
            return rc;
    }
    if (has_in(c, IN_SEQ)) {
        const struct veil__engine_tv *sl = &c->in[IN_SEQ];
        if (sl->dt != VEIL_DT_INT32 && sl->dt != VEIL_DT_INT64)
            return veil_errf(c->eb, VEIL_E_INVALID, "input sequence_lens has type %s (int32)",
                             veil_dtype_name(sl->dt));
        if (sl->rank != 1 || sl->dims[0] != cfg->batch)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "input sequence_lens must have shape [%lld] (the batch size)",
                             (long long)cfg->batch);
        for (uint64_t b = 0; sl->data != NULL && b < sl->numel; b++) {
            int64_t v = veil__engine_get_i64(sl, b);
            if (v < 0 || v > cfg->seq)
                return veil_errf(c->eb, VEIL_E_INVALID,
                                 "sequence_lens[%llu] is %lld, outside 0 to seq_length %lld",
                                 (unsigned long long)b, (long long)v, (long long)cfg->seq);
        }
    }
    int64_t s0 = cfg->layout1 ? cfg->batch : cfg->dirs, s1 = cfg->layout1 ? cfg->dirs : cfg->batch;
    if (has_in(c, IN_H0) &&
        ((rc = want_float(c, IN_H0, "initial_h", 3)) != VEIL_OK ||
         (rc = want_dims(c, IN_H0, "initial_h", s0, s1, cfg->hidden)) != VEIL_OK))
        return rc;
    if (cfg->kind == K_LSTM) {
        if (has_in(c, IN_C0) &&
            ((rc = want_float(c, IN_C0, "initial_c", 3)) != VEIL_OK ||
             (rc = want_dims(c, IN_C0, "initial_c", s0, s1, cfg->hidden)) != VEIL_OK))
            return rc;
        if (has_in(c, IN_P) &&
            ((rc = want_float(c, IN_P, "P", 2)) != VEIL_OK ||
             (rc = want_dims(c, IN_P, "P", cfg->dirs, 3 * cfg->hidden, 0)) != VEIL_OK))
            return rc;
        const struct veil__engine_attr *fa = veil__engine_attr_get(n, "input_forget");
        if (fa != NULL && fa->type != VEIL_ONNX_ATTR_INT)
            return veil_errf(c->eb, VEIL_E_INVALID, "attribute input_forget is not an int");
        cfg->input_forget = fa != NULL && fa->i != 0;
    }
    if (cfg->kind == K_GRU) {
        const struct veil__engine_attr *lb = veil__engine_attr_get(n, "linear_before_reset");
        if (lb != NULL && lb->type != VEIL_ONNX_ATTR_INT)
            return veil_errf(c->eb, VEIL_E_INVALID, "attribute linear_before_reset is not an int");
        cfg->lbr = lb != NULL && lb->i != 0;
    }
    const struct veil__engine_attr *ca = veil__engine_attr_get(n, "clip");
    if (ca != NULL) {
        if (ca->type != VEIL_ONNX_ATTR_FLOAT || !(ca->f > 0.0f))
            return veil_errf(c->eb, VEIL_E_INVALID, "attribute clip must be a positive float");
        cfg->has_clip = true;
        cfg->clip = ca->f;
    }
    return parse_acts(c, cfg);
}

veil_err veil__engine_rnn_infer(struct veil__engine_ictx *c)
{
    struct rnn_cfg cfg;
    veil_err rc = parse_cfg(c, &cfg);
    if (rc != VEIL_OK)
        return rc;
    if (c->n_out > (cfg.kind == K_LSTM ? 3u : 2u))
        return veil_errf(c->eb, VEIL_E_INVALID, "%zu outputs", c->n_out);
    for (size_t k = 0; k < c->n_out; k++) {
        struct veil__engine_tv *o = &c->out[k];
        o->dt = VEIL_DT_FLOAT;
        if (k == OUT_Y) {
            o->rank = 4;
            int64_t y0[4] = {cfg.seq, cfg.dirs, cfg.batch, cfg.hidden};
            int64_t y1[4] = {cfg.batch, cfg.seq, cfg.dirs, cfg.hidden};
            memcpy(o->dims, cfg.layout1 ? y1 : y0, sizeof(y0));
        } else {
            o->rank = 3;
            o->dims[0] = cfg.layout1 ? cfg.batch : cfg.dirs;
            o->dims[1] = cfg.layout1 ? cfg.dirs : cfg.batch;
            o->dims[2] = cfg.hidden;
        }
    }
    return VEIL_OK;
}

/* ---- Activations ---- */

#define EXP_HI 87.0f    /* exp(87) = 6e37: 1 / (1 + it) stays a normal float */
#define EXP_LO (-87.3f) /* exp(-87.3) = 1.3e-38, the smallest normal float's order */
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO (-2.12194440e-4f)
/*
 * tanh(x) for |x| below TANH_SMALL is its odd Taylor polynomial to x^11 (truncation error
 * under 3e-10 relative); above it, 1 - 2 / (e^{2|x|} + 1), whose cancellation costs at most
 * a few float ulps of the result there.
 */
#define TANH_SMALL 0.25f

static const float TANH_POLY[5] = {-1.0f / 3.0f, 2.0f / 15.0f, -17.0f / 315.0f, 62.0f / 2835.0f,
                                   -1382.0f / 155925.0f};

/*
 * e^r for |r| <= ln 2 / 2 as its degree-6 Taylor polynomial (error about one float ulp),
 * highest power first.
 */
static const float EXP_POLY[7] = {1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f,
                                  0.5f,          1.0f,          1.0f};

static void sigmoid_base(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (v >= 0.0f) {
            x[i] = 1.0f / (1.0f + expf(-v));
        } else {
            float e = expf(v);
            x[i] = e / (1.0f + e);
        }
    }
}

static void tanh_base(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = tanhf(x[i]);
}

#if defined(__x86_64__)
#define AVX512 __attribute__((target("avx512f,fma")))
#define AVX2 __attribute__((target("avx2,fma")))

/* e^x, x clamped to [EXP_LO, EXP_HI]; NaN stays NaN (max and min return their second operand). */
AVX512 static inline __m512 exp512(__m512 x)
{
    x = _mm512_min_ps(_mm512_set1_ps(EXP_HI), _mm512_max_ps(_mm512_set1_ps(EXP_LO), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    __m512 p = _mm512_set1_ps(EXP_POLY[0]);
    for (size_t i = 1; i < sizeof(EXP_POLY) / sizeof(EXP_POLY[0]); i++)
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_POLY[i]));
    return _mm512_scalef_ps(p, n);
}

AVX512 static inline __m512 sigmoid512(__m512 x)
{
    __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

AVX512 static inline __m512 tanh512(__m512 x)
{
    __m512 ax = _mm512_abs_ps(x), one = _mm512_set1_ps(1.0f);
    __m512 e = exp512(_mm512_add_ps(ax, ax));
    __m512 big = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
    /* The sign of x on |tanh x| (x's sign bit, as _mm512_abs_ps cleared it). */
    big = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_castps_si512(big),
                        _mm512_andnot_si512(_mm512_castps_si512(ax), _mm512_castps_si512(x))));
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(TANH_POLY[4]);
    for (int i = 3; i >= 0; i--)
        p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(TANH_POLY[i]));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(x, x2), p, x);
    __mmask16 lo = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(TANH_SMALL), _CMP_LT_OQ);
    return _mm512_mask_mov_ps(big, lo, small);
}

AVX512 static void sigmoid_avx512(float *x, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, sigmoid512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(x + i, k, sigmoid512(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

AVX512 static void tanh_avx512(float *x, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, tanh512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(x + i, k, tanh512(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

AVX2 static inline __m256 exp256(__m256 x)
{
    x = _mm256_min_ps(_mm256_set1_ps(EXP_HI), _mm256_max_ps(_mm256_set1_ps(EXP_LO), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    __m256 p = _mm256_set1_ps(EXP_POLY[0]);
    for (size_t i = 1; i < sizeof(EXP_POLY) / sizeof(EXP_POLY[0]); i++)
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_POLY[i]));
    /* 2^n for n in [-126, 127] (the clamp keeps it there), built in the exponent field. */
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

AVX2 static inline __m256 sigmoid256(__m256 x)
{
    __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

AVX2 static inline __m256 tanh256(__m256 x)
{
    __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    __m256 ax = _mm256_andnot_ps(sign, x);
    __m256 e = exp256(_mm256_add_ps(ax, ax));
    __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
    big = _mm256_or_ps(big, _mm256_and_ps(sign, x));
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(TANH_POLY[4]);
    for (int i = 3; i >= 0; i--)
        p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(TANH_POLY[i]));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(x, x2), p, x);
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(TANH_SMALL), _CMP_LT_OQ));
}

/* The tail of fewer than 8 goes through a padded copy: AVX2 has no masked float ops. */
AVX2 static void sigmoid_avx2(float *x, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, sigmoid256(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float t[8] = {0};
        memcpy(t, x + i, (n - i) * sizeof(float));
        _mm256_storeu_ps(t, sigmoid256(_mm256_loadu_ps(t)));
        memcpy(x + i, t, (n - i) * sizeof(float));
    }
}

AVX2 static void tanh_avx2(float *x, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, tanh256(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float t[8] = {0};
        memcpy(t, x + i, (n - i) * sizeof(float));
        _mm256_storeu_ps(t, tanh256(_mm256_loadu_ps(t)));
        memcpy(x + i, t, (n - i) * sizeof(float));
    }
}
#endif

static void sigmoid_v(enum veil__engine_vec_isa isa, float *x, size_t n)
{
#if defined(__x86_64__)
    if (isa == VEIL__ENGINE_VEC_AVX512) {
        sigmoid_avx512(x, n);
        return;
    }
    if (isa == VEIL__ENGINE_VEC_AVX2) {
        sigmoid_avx2(x, n);
        return;
    }
#endif
    (void)isa;
    sigmoid_base(x, n);
}

static void tanh_v(enum veil__engine_vec_isa isa, float *x, size_t n)
{
#if defined(__x86_64__)
    if (isa == VEIL__ENGINE_VEC_AVX512) {
        tanh_avx512(x, n);
        return;
    }
    if (isa == VEIL__ENGINE_VEC_AVX2) {
        tanh_avx2(x, n);
        return;
    }
#endif
    (void)isa;
    tanh_base(x, n);
}

/* x = act(x) over n values. */
static void act_apply(enum veil__engine_vec_isa isa, const struct act *a, float *x, size_t n)
{
    float al = a->a, be = a->b;
    switch (a->kind) {
    case A_SIGMOID:
        sigmoid_v(isa, x, n);
        break;
    case A_TANH:
        tanh_v(isa, x, n);
        break;
    case A_STANH:
        for (size_t i = 0; i < n; i++)
            x[i] *= be;
        tanh_v(isa, x, n);
        for (size_t i = 0; i < n; i++)
            x[i] *= al;
        break;
    case A_RELU:
        /* x < 0 is false for NaN, which passes through as ONNX's Relu lets it. */
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] < 0.0f ? 0.0f : x[i];
        break;
    case A_AFFINE:
        for (size_t i = 0; i < n; i++)
            x[i] = al * x[i] + be;
        break;
    case A_LEAKY:
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] < 0.0f ? al * x[i] : x[i];
        break;
    case A_THRELU:
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] > al ? x[i] : 0.0f;
        break;
    case A_HSIGMOID:
        for (size_t i = 0; i < n; i++)
            x[i] = fmaxf(0.0f, fminf(1.0f, al * x[i] + be));
        break;
    case A_ELU:
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] < 0.0f ? al * expm1f(x[i]) : x[i];
        break;
    case A_SOFTSIGN:
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] / (1.0f + fabsf(x[i]));
        break;
    case A_SOFTPLUS:
        /* log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large x. */
        for (size_t i = 0; i < n; i++)
            x[i] = fmaxf(x[i], 0.0f) + log1pf(expf(-fabsf(x[i])));
        break;
    }
}

static void clip_v(float *x, size_t n, float lim)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] > lim ? lim : x[i] < -lim ? -lim : x[i];
}

/* ---- Small products ---- */

/*
 * The per-step product of a small batch (at most SMALL_ROWS rows per direction) runs on the
 * engine's own kernels rather than a primitive: at one to eight rows it reads all of R^T once
 * per step and is bound by that read, where a primitive's fixed cost per call (about 1.5 us
 * here) would double a Silero-sized step. R^T is packed once (at plan time for a constant R)
 * into panels of PANEL columns, each stored as hidden rows of PANEL contiguous floats
 * (zero past the last column), which the kernels stream in order.
 */
#define SMALL_ROWS 8
#define PANEL 64

static int64_t n_panels(int64_t n)
{
    return (n + PANEL - 1) / PANEL;
}

/* Packs src [n, k] (R's rows: the product's columns) into panels of PANEL columns. */
static void pack_panels(const float *src, int64_t n, int64_t k, float *dst)
{
    for (int64_t p = 0; p < n_panels(n); p++)
        for (int64_t kk = 0; kk < k; kk++)
            for (int64_t j = 0; j < PANEL; j++) {
                int64_t col = p * PANEL + j;
                dst[(p * k + kk) * PANEL + j] = col < n ? src[col * k + kk] : 0.0f;
            }
}

/*
 * c[r][0, w) = a[r][0, k) x panel b for the m rows of a (stride lda) and c (stride ldc); w is
 * the panel's valid columns (PANEL but at the last panel).
 */
static void panel_base(const float *a, int64_t m, int64_t lda, const float *b, int64_t k, float *c,
                       int64_t ldc, int64_t w)
{
    for (int64_t r = 0; r < m; r++) {
        float acc[PANEL] = {0};
        for (int64_t kk = 0; kk < k; kk++) {
            float av = a[r * lda + kk];
            for (int64_t j = 0; j < PANEL; j++)
                acc[j] += av * b[kk * PANEL + j];
        }
        memcpy(c + r * ldc, acc, (size_t)w * sizeof(float));
    }
}

#if defined(__x86_64__)
#define INLINE inline __attribute__((always_inline))

/* Up to four rows against a whole panel: 16 accumulators, each b vector used mr times. */
AVX512 static INLINE void tile512(const float *a, int64_t lda, int mr, const float *b, int64_t k,
                                  float *c, int64_t ldc, int64_t w)
{
    __m512 acc[4][4];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < 4; v++)
            acc[r][v] = _mm512_setzero_ps();
    for (int64_t kk = 0; kk < k; kk++) {
        const float *bp = b + kk * PANEL;
        __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
        __m512 b2 = _mm512_loadu_ps(bp + 32), b3 = _mm512_loadu_ps(bp + 48);
        for (int r = 0; r < mr; r++) {
            __m512 av = _mm512_set1_ps(a[r * lda + kk]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(av, b2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(av, b3, acc[r][3]);
        }
    }
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < 4 && w > 16 * v; v++) {
            float *cp = c + r * ldc + 16 * v;
            int64_t rem = w - 16 * v;
            if (rem >= 16)
                _mm512_storeu_ps(cp, acc[r][v]);
            else
                _mm512_mask_storeu_ps(cp, (__mmask16)((1u << rem) - 1u), acc[r][v]);
        }
}

AVX512 static void panel_avx512(const float *a, int64_t m, int64_t lda, const float *b, int64_t k,
                                float *c, int64_t ldc, int64_t w)
{
    int64_t i = 0;
    for (; i + 4 <= m; i += 4)
        tile512(a + i * lda, lda, 4, b, k, c + i * ldc, ldc, w);
    /* Literal row counts, so each call unrolls into registers. */
    switch (m - i) {
    case 3:
        tile512(a + i * lda, lda, 3, b, k, c + i * ldc, ldc, w);
        break;
    case 2:
        tile512(a + i * lda, lda, 2, b, k, c + i * ldc, ldc, w);
        break;
    case 1:
        tile512(a + i * lda, lda, 1, b, k, c + i * ldc, ldc, w);
        break;
    default:
        break;
    }
}

/* Up to three rows against half a panel (32 columns): 12 accumulators of the 16 registers. */
AVX2 static INLINE void tile256(const float *a, int64_t lda, int mr, const float *b, int64_t k,
                                float *c, int64_t ldc, int64_t w)
{
    __m256 acc[3][4];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < 4; v++)
            acc[r][v] = _mm256_setzero_ps();
    for (int64_t kk = 0; kk < k; kk++) {
        const float *bp = b + kk * PANEL;
        for (int r = 0; r < mr; r++) {
            __m256 av = _mm256_set1_ps(a[r * lda + kk]);
            for (int v = 0; v < 4; v++)
                acc[r][v] = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp + 8 * v), acc[r][v]);
        }
    }
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < 4 && w > 8 * v; v++) {
            float *cp = c + r * ldc + 8 * v;
            int64_t rem = w - 8 * v;
            if (rem >= 8) {
                _mm256_storeu_ps(cp, acc[r][v]);
            } else {
                __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), lane);
                _mm256_maskstore_ps(cp, mask, acc[r][v]);
            }
        }
}

AVX2 static void panel_avx2(const float *a, int64_t m, int64_t lda, const float *b, int64_t k,
                            float *c, int64_t ldc, int64_t w)
{
    for (int64_t half = 0; half < 2 && w > 32 * half; half++) {
        const float *bh = b + 32 * half;
        float *ch = c + 32 * half;
        int64_t wh = w - 32 * half < 32 ? w - 32 * half : 32;
        int64_t i = 0;
        for (; i + 3 <= m; i += 3)
            tile256(a + i * lda, lda, 3, bh, k, ch + i * ldc, ldc, wh);
        if (m - i == 2)
            tile256(a + i * lda, lda, 2, bh, k, ch + i * ldc, ldc, wh);
        else if (m - i == 1)
            tile256(a + i * lda, lda, 1, bh, k, ch + i * ldc, ldc, wh);
    }
}
#endif

/*
 * c[d] = a[d] x packed[d] for every direction d: a [dirs, m, k], c [dirs, m, n], packed
 * n_panels(n) panels of k rows per direction. Units of work are (direction, panel).
 */
struct smm_job {
    enum veil__engine_vec_isa isa;
    const float *a, *pk;
    float *c;
    int64_t m, k, n;
};

static void smm_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct smm_job *j = ud;
    int64_t np = n_panels(j->n);
    for (uint64_t u = lo; u < hi; u++) {
        int64_t d = (int64_t)u / np, p = (int64_t)u % np;
        const float *a = j->a + d * j->m * j->k, *b = j->pk + (d * np + p) * j->k * PANEL;
        float *c = j->c + d * j->m * j->n + p * PANEL;
        int64_t w = j->n - p * PANEL < PANEL ? j->n - p * PANEL : PANEL;
#if defined(__x86_64__)
        if (j->isa == VEIL__ENGINE_VEC_AVX512) {
            panel_avx512(a, j->m, j->k, b, j->k, c, j->n, w);
            continue;
        }
        if (j->isa == VEIL__ENGINE_VEC_AVX2) {
            panel_avx2(a, j->m, j->k, b, j->k, c, j->n, w);
            continue;
        }
#endif
        panel_base(a, j->m, j->k, b, j->k, c, j->n, w);
    }
}

static void small_mm(enum veil__engine_vec_isa isa, int64_t dirs, const float *a, int64_t m,
                     int64_t k, const float *pk, int64_t n, float *c)
{
    struct smm_job j = {isa, a, pk, c, m, k, n};
    /* Units of at least ~128K multiply-adds per thread. */
    uint64_t per = (uint64_t)(m * k * PANEL);
    veil__engine_parallel((uint64_t)(dirs * n_panels(n)), 1 + (131072 / per), smm_range, &j);
}

/* ---- Steps ---- */

/*
 * One time step of both directions over rows [lo, hi) of [dirs, batch]. Rows whose sequence
 * has ended keep their state. phase (a GRU with linear_before_reset 0, which needs
 * (r . H) R_h^T between its gates): 1 computes z, r and r . H, 2 the new state; 0 the whole
 * step otherwise.
 */
struct step_job {
    const struct rnn_prep *pp;
    int64_t s;
    int phase;
    const int64_t *len;
    const float *xw, *bias, *peep;
    float *gates, *h, *cs, *rh, *gh, *y;
};

static uint64_t xw_row(const struct rnn_cfg *cfg, int64_t t, int64_t b)
{
    return cfg->layout1 ? (uint64_t)(b * cfg->seq + t) : (uint64_t)(t * cfg->batch + b);
}

/* The per-row arguments of one gate kernel call. */
struct row {
    const struct act *act;
    const float *x, *bias, *peep;
    float *g, *h, *cs;
};

static void lstm_row(const struct rnn_prep *pp, const struct row *r)
{
    const struct rnn_cfg *cfg = &pp->cfg;
    enum veil__engine_vec_isa isa = pp->isa;
    size_t hs = (size_t)cfg->hidden, gs = 4 * hs;
    float *g = r->g, *cs = r->cs;
    float *gi = g, *go = g + hs, *gf = g + 2 * hs, *gc = g + 3 * hs;
    for (size_t k = 0; k < gs; k++)
        g[k] += r->x[k] + r->bias[k];
    if (r->peep != NULL) {
        const float *pi = r->peep, *pf = r->peep + 2 * hs;
        for (size_t k = 0; k < hs; k++) {
            gi[k] += pi[k] * cs[k];
            gf[k] += pf[k] * cs[k];
        }
    }
    /* The clip bounds each gate's whole input: o's only once its peephole term is in. */
    if (cfg->has_clip && r->peep == NULL) {
        clip_v(g, gs, cfg->clip);
    } else if (cfg->has_clip) {
        clip_v(gi, hs, cfg->clip);
        clip_v(gf, 2 * hs, cfg->clip);
    }
    /* i, o and f are contiguous (ONNX's iofc order): one call when o needs no peephole. */
    if (r->peep == NULL && !cfg->input_forget) {
        act_apply(isa, &r->act[0], g, 3 * hs);
    } else {
        act_apply(isa, &r->act[0], gi, hs);
        if (cfg->input_forget)
            for (size_t k = 0; k < hs; k++)
                gf[k] = 1.0f - gi[k];
        else
            act_apply(isa, &r->act[0], gf, hs);
        if (r->peep == NULL)
            act_apply(isa, &r->act[0], go, hs);
    }
    act_apply(isa, &r->act[1], gc, hs);
    for (size_t k = 0; k < hs; k++)
        cs[k] = gf[k] * cs[k] + gi[k] * gc[k];
    if (r->peep != NULL) {
        const float *po = r->peep + hs;
        for (size_t k = 0; k < hs; k++)
            go[k] += po[k] * cs[k];
        if (cfg->has_clip)
            clip_v(go, hs, cfg->clip);
        act_apply(isa, &r->act[0], go, hs);
    }
    memcpy(gc, cs, hs * sizeof(float));
    act_apply(isa, &r->act[2], gc, hs);
    for (size_t k = 0; k < hs; k++)
        r->h[k] = go[k] * gc[k];
}

static void step_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct step_job *j = ud;
    const struct rnn_prep *pp = j->pp;
    const struct rnn_cfg *cfg = &pp->cfg;
    enum veil__engine_vec_isa isa = pp->isa;
    size_t hs = (size_t)cfg->hidden, gs = (size_t)(cfg->gates * cfg->hidden);
    size_t n1 = pp->split ? 2 * hs : gs;
    for (uint64_t q = lo; q < hi; q++) {
        int64_t d = (int64_t)q / cfg->batch, b = (int64_t)q % cfg->batch;
        if (j->s >= j->len[b]) {
            if (j->phase == 1)
                memset(j->rh + q * hs, 0, hs * sizeof(float));
            continue;
        }
        bool rev = cfg->reverse || d == 1;
        int64_t t = rev ? j->len[b] - 1 - j->s : j->s;
        struct row r = {
            cfg->act[d],
            j->xw + ((uint64_t)d * (uint64_t)(cfg->seq * cfg->batch) + xw_row(cfg, t, b)) * gs,
            j->bias + (uint64_t)d * 2 * gs,
            j->peep != NULL ? j->peep + (uint64_t)d * 3 * hs : NULL,
            j->gates + q * n1,
            j->h + q * hs,
            j->cs != NULL ? j->cs + q * hs : NULL};
        float *g = r.g, *h = r.h;
        switch (cfg->kind) {
        case K_LSTM:
            lstm_row(pp, &r);
            break;
        case K_RNN:
            for (size_t k = 0; k < hs; k++)
                g[k] += r.x[k] + r.bias[k];
            if (cfg->has_clip)
                clip_v(g, hs, cfg->clip);
            act_apply(isa, &r.act[0], g, hs);
            memcpy(h, g, hs * sizeof(float));
            break;
        case K_GRU: {
            /* The h block: the gates row's third part, or (split) this row of gh. */
            float *z = g, *rg = g + hs, *hh = pp->split ? j->gh + q * hs : g + 2 * hs;
            if (j->phase != 2) {
                for (size_t k = 0; k < 2 * hs; k++)
                    g[k] += r.x[k] + r.bias[k];
                if (cfg->has_clip)
                    clip_v(g, 2 * hs, cfg->clip);
                act_apply(isa, &r.act[0], g, 2 * hs);
            }
            if (j->phase == 1) {
                float *rh = j->rh + q * hs;
                for (size_t k = 0; k < hs; k++)
                    rh[k] = rg[k] * h[k];
                continue;
            }
            /* bias holds Wb + Rb, except Wbh alone (Rbh at bias + gs) with linear_before_reset. */
            const float *xh = r.x + 2 * hs, *bh = r.bias + 2 * hs, *rbh = r.bias + gs + 2 * hs;
            if (j->phase == 2)
                for (size_t k = 0; k < hs; k++)
                    hh[k] += xh[k] + bh[k];
            else
                for (size_t k = 0; k < hs; k++)
                    hh[k] = xh[k] + bh[k] + rg[k] * (hh[k] + rbh[k]);
            if (cfg->has_clip)
                clip_v(hh, hs, cfg->clip);
            act_apply(isa, &r.act[1], hh, hs);
            for (size_t k = 0; k < hs; k++)
                h[k] = (1.0f - z[k]) * hh[k] + z[k] * h[k];
            break;
        }
        }
        if (j->y != NULL) {
            uint64_t off = cfg->layout1 ? (uint64_t)((b * cfg->seq + t) * cfg->dirs + d)
                                        : (uint64_t)((t * cfg->dirs + d) * cfg->batch + b);
            memcpy(j->y + off * hs, h, hs * sizeof(float));
        }
    }
}

/* ---- Planning ---- */

/* Appends a 64-byte aligned region of count elements of esz bytes at *cur; false on overflow. */
static bool take(size_t *cur, uint64_t count, size_t esz, size_t *off)
{
    uint64_t bytes;
    size_t end;
    if (__builtin_mul_overflow(count, (uint64_t)esz, &bytes) || bytes > SIZE_MAX - 64 ||
        __builtin_add_overflow(*cur, (size_t)((bytes + 63) & ~(uint64_t)63), &end))
        return false;
    *off = *cur;
    *cur = end;
    return true;
}

/* dst[k * rows + j] = src[j * cols + k]: an R block [rows, cols] into its transpose. */
static void transpose(const float *src, float *dst, int64_t rows, int64_t cols)
{
    const int64_t blk = 32;
    for (int64_t j0 = 0; j0 < rows; j0 += blk)
        for (int64_t k0 = 0; k0 < cols; k0 += blk) {
            int64_t j1 = j0 + blk < rows ? j0 + blk : rows;
            int64_t k1 = k0 + blk < cols ? k0 + blk : cols;
            for (int64_t j = j0; j < j1; j++)
                for (int64_t k = k0; k < k1; k++)
                    dst[k * rows + j] = src[j * cols + k];
        }
}

static void plain_md(dnnl_memory_desc_t *md, int64_t d0, int64_t d1, int64_t d2)
{
    dnnl_dims_t dims = {d0, d1, d2}, st = {d1 * d2, d2, 1};
    dnnl_memory_desc_init_by_strides(md, 3, dims, dnnl_f32, st);
}

/* Reorders constant data of layout src into a new buffer of layout dst owned by ks. */
static veil_err reorder_new(dnnl_engine_t eng, const dnnl_memory_desc_t *src, const void *data,
                            const dnnl_memory_desc_t *dst, struct veil__engine_kstate *ks,
                            const void **out, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t ms = NULL, md = NULL;
    dnnl_stream_t stream = NULL;
    size_t slot = 0;
    while (slot < sizeof(ks->owned) / sizeof(ks->owned[0]) && ks->owned[slot] != NULL)
        slot++;
    VEIL_ASSERT(slot < sizeof(ks->owned) / sizeof(ks->owned[0]));
    size_t sz = dnnl_memory_desc_get_size(dst);
    void *buf = veil_aligned_alloc(64, sz > 0 ? sz : 64);
    if (buf == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for the recurrent weights");
    ks->owned[slot] = buf;
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
    rc = VEIL_OK;
out:
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

static void add_arg(struct veil__engine_dnnl_exec *ex, int arg, const dnnl_memory_desc_t *md,
                    int32_t value, const void *ptr, size_t off)
{
    VEIL_ASSERT(ex->n_args < VEIL__ENGINE_MAX_ARGS);
    ex->args[ex->n_args++] = (struct veil__engine_dnnl_arg){arg, *md, value, ptr, off};
}

/*
 * One matmul dst = src x wts into the next execution of ks. src and dst are bound to value
 * src_v / dst_v or, when those are -1, to step scratch offsets src_off / dst_off. Constant
 * weights (wdata) are reordered once into the layout the primitive prefers; otherwise wts is
 * used as given, bound to value w_v or scratch offset w_off. The scratchpad goes to pad_off;
 * *pad grows to the largest scratchpad.
 */
struct mm_bind {
    int32_t src_v, w_v, dst_v;
    size_t src_off, w_off, dst_off;
    const void *wdata;
};

static veil_err add_matmul(dnnl_engine_t eng, struct veil__engine_kstate *ks,
                           const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *wts,
                           const dnnl_memory_desc_t *dst, const struct mm_bind *bd, size_t *pad,
                           struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_matmul_desc_t mmd;
    dnnl_memory_desc_t wany;
    VEIL_ASSERT(ks->n_ex < VEIL__ENGINE_MAX_EX);
    struct veil__engine_dnnl_exec *ex = &ks->ex[ks->n_ex];
    if (bd->wdata != NULL)
        dnnl_memory_desc_init_by_tag(&wany, wts->ndims, wts->dims, dnnl_f32, dnnl_format_tag_any);
    else
        wany = *wts;
    if ((rc = veil__engine_dnnl_err(dnnl_primitive_attr_create(&attr), "attr", eb)) != VEIL_OK)
        goto out;
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if ((rc = veil__engine_dnnl_err(dnnl_matmul_desc_init(&mmd, src, &wany, NULL, dst),
                                    "matmul descriptor", eb)) != VEIL_OK ||
        (rc = veil__engine_dnnl_err(dnnl_primitive_desc_create(&pd, &mmd, attr, eng, NULL),
                                    "matmul", eb)) != VEIL_OK ||
        (rc = veil__engine_dnnl_err(dnnl_primitive_create(&ex->prim, pd), "primitive creation",
                                    eb)) != VEIL_OK)
        goto out;
    ks->n_ex++;
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const void *wbuf = NULL;
    if (bd->wdata != NULL && (rc = reorder_new(eng, wts, bd->wdata, wmd, ks, &wbuf, eb)) != VEIL_OK)
        goto out;
    add_arg(ex, DNNL_ARG_SRC, src, bd->src_v, NULL, bd->src_off);
    add_arg(ex, DNNL_ARG_WEIGHTS, wmd, wbuf != NULL ? -1 : bd->w_v, wbuf, bd->w_off);
    add_arg(ex, DNNL_ARG_DST, dst, bd->dst_v, NULL, bd->dst_off);
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t spn = sp != NULL ? dnnl_memory_desc_get_size(sp) : 0;
    if (spn > 0) {
        /* SIZE_MAX marks the offset as pending: all scratchpads share one region, laid out last. */
        add_arg(ex, DNNL_ARG_SCRATCHPAD, sp, -1, NULL, SIZE_MAX);
        if (spn > *pad)
            *pad = spn;
    }
    rc = VEIL_OK;
out:
    if (pd != NULL)
        dnnl_primitive_desc_destroy(pd);
    if (attr != NULL)
        dnnl_primitive_attr_destroy(attr);
    return rc;
}

/* A buffer of n floats owned by ks (freed with it). */
static veil_err own_floats(struct veil__engine_kstate *ks, uint64_t n, float **out,
                           struct veil_errbuf *eb)
{
    size_t slot = 0;
    while (slot < sizeof(ks->owned) / sizeof(ks->owned[0]) && ks->owned[slot] != NULL)
        slot++;
    VEIL_ASSERT(slot < sizeof(ks->owned) / sizeof(ks->owned[0]));
    ks->owned[slot] = veil_aligned_alloc(64, (size_t)n * sizeof(float) + 64);
    if (ks->owned[slot] == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for the recurrent weights");
    *out = ks->owned[slot];
    return VEIL_OK;
}

veil_err veil__engine_rnn_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                  struct veil__engine_step *st)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil__engine_kstate *ks = NULL;
    struct rnn_prep *pp = NULL;
    struct rnn_cfg cfg;
    if ((rc = parse_cfg(c, &cfg)) != VEIL_OK)
        return rc;
    uint64_t hs = (uint64_t)cfg.hidden, gs = (uint64_t)(cfg.gates * cfg.hidden);
    uint64_t nb = (uint64_t)cfg.batch, nd = (uint64_t)cfg.dirs, rows, xw, st_n, gt_n;
    pp = veil_calloc(1, sizeof(*pp));
    ks = veil_calloc(1, sizeof(*ks));
    if (pp == NULL || ks == NULL) {
        rc = veil_errf(c->eb, VEIL_E_NOMEM, "no memory for a kernel");
        goto out;
    }
    pp->cfg = cfg;
    pp->split = cfg.kind == K_GRU && !cfg.lbr;
    pp->runtime_r = c->in[IN_R].data == NULL;
    pp->ex_in = pp->ex_rec = pp->ex_rec2 = -1;
    enum veil__engine_vec_isa isa = veil__engine_vec_best();
    pp->isa = isa < c->attention_isa ? isa : c->attention_isa;
    uint64_t n1 = pp->split ? 2 * hs : gs; /* columns of the first per-step product */
    pp->small = nb <= SMALL_ROWS;
    /* R^T as the products read it: packed panels (small) or plain [hidden, n]. */
    uint64_t rt1 = pp->small ? (uint64_t)n_panels((int64_t)n1) * PANEL * hs : hs * n1;
    uint64_t rt2 = pp->small ? (uint64_t)n_panels((int64_t)hs) * PANEL * hs : hs * hs;
    size_t cur = 0;
    /*
     * Every count is checked: with seq_length or input_size 0 the batch is bounded by nothing
     * but the declared shape. gs * nd and hs * n1 fit (R holds them); rt1 and rt2 add at most
     * PANEL - 1 columns to that.
     */
    bool ok = !__builtin_mul_overflow((uint64_t)cfg.seq, nb, &rows) &&
              !__builtin_mul_overflow(rows, gs * nd, &xw) &&
              !__builtin_mul_overflow(nd * hs, nb, &st_n) &&
              !__builtin_mul_overflow(nd * n1, nb, &gt_n) && take(&cur, xw, 4, &pp->off_xw) &&
              take(&cur, gt_n, 4, &pp->off_gates) && take(&cur, st_n, 4, &pp->off_h) &&
              take(&cur, cfg.kind == K_LSTM ? st_n : 0, 4, &pp->off_c) &&
              take(&cur, pp->split ? st_n : 0, 4, &pp->off_rh) &&
              take(&cur, pp->split ? st_n : 0, 4, &pp->off_gh) &&
              take(&cur, nd * 2 * gs, 4, &pp->off_bias) &&
              take(&cur, pp->runtime_r ? nd * rt1 : 0, 4, &pp->off_rt) &&
              take(&cur, pp->runtime_r && pp->split ? nd * rt2 : 0, 4, &pp->off_rt2) &&
              take(&cur, nb, sizeof(int64_t), &pp->off_len) && cur <= VEIL__ENGINE_MAX_ACT;
    if (!ok) {
        rc = veil_errf(c->eb, VEIL_E_LIMIT,
                       "the recurrence's working memory exceeds %llu bytes (sequence %lld, "
                       "batch %lld, hidden %lld)",
                       (unsigned long long)VEIL__ENGINE_MAX_ACT, (long long)cfg.seq,
                       (long long)cfg.batch, (long long)cfg.hidden);
        goto out;
    }
    size_t pad = 0;
    int64_t I = cfg.input, H = cfg.hidden, G = (int64_t)gs, D = cfg.dirs, B = cfg.batch;
    /* A zero extent never reaches oneDNN (its primitive creation divides by it). */
    if (rows > 0 && I > 0) {
        dnnl_memory_desc_t src, wts, dst;
        dnnl_dims_t wd = {D, I, G}, wst = {G * I, 1, I};
        plain_md(&src, 1, (int64_t)rows, I);
        dnnl_memory_desc_init_by_strides(&wts, 3, wd, dnnl_f32, wst);
        plain_md(&dst, D, (int64_t)rows, G);
        struct mm_bind bd = {c->n->in[IN_X], c->n->in[IN_W],  -1, 0, 0,
                             pp->off_xw,     c->in[IN_W].data};
        pp->ex_in = (int)ks->n_ex;
        if ((rc = add_matmul(eng, ks, &src, &wts, &dst, &bd, &pad, c->eb)) != VEIL_OK)
            goto out;
    }
    if (pp->small && !pp->runtime_r) {
        const float *r = c->in[IN_R].data;
        float *p1 = NULL, *p2 = NULL;
        if ((rc = own_floats(ks, nd * rt1, &p1, c->eb)) != VEIL_OK ||
            (pp->split && (rc = own_floats(ks, nd * rt2, &p2, c->eb)) != VEIL_OK))
            goto out;
        for (int64_t d = 0; d < D; d++) {
            pack_panels(r + d * G * H, (int64_t)n1, H, p1 + (uint64_t)d * rt1);
            if (pp->split)
                pack_panels(r + d * G * H + (int64_t)n1 * H, H, H, p2 + (uint64_t)d * rt2);
        }
        pp->pk = p1;
        pp->pk2 = p2;
    } else if (B > 0 && !pp->small) {
        /* R^T views: [dirs, hidden, n] over R [dirs, gates * hidden, hidden]. */
        dnnl_memory_desc_t src, wts, dst;
        dnnl_dims_t wd = {D, H, (int64_t)n1}, wst = {G * H, 1, H};
        plain_md(&src, D, B, H);
        plain_md(&dst, D, B, (int64_t)n1);
        if (pp->runtime_r)
            plain_md(&wts, D, H, (int64_t)n1);
        else
            dnnl_memory_desc_init_by_strides(&wts, 3, wd, dnnl_f32, wst);
        struct mm_bind bd = {-1,
                             -1,
                             -1,
                             pp->off_h,
                             pp->off_rt,
                             pp->off_gates,
                             pp->runtime_r ? NULL : c->in[IN_R].data};
        pp->ex_rec = (int)ks->n_ex;
        if ((rc = add_matmul(eng, ks, &src, &wts, &dst, &bd, &pad, c->eb)) != VEIL_OK)
            goto out;
        if (pp->split) {
            dnnl_dims_t wd2 = {D, H, H};
            plain_md(&dst, D, B, H);
            if (pp->runtime_r)
                plain_md(&wts, D, H, H);
            else
                dnnl_memory_desc_init_by_strides(&wts, 3, wd2, dnnl_f32, wst);
            struct mm_bind b2 = {-1,
                                 -1,
                                 -1,
                                 pp->off_rh,
                                 pp->off_rt2,
                                 pp->off_gh,
                                 pp->runtime_r ? NULL
                                               : (const float *)c->in[IN_R].data + 2 * H * H};
            pp->ex_rec2 = (int)ks->n_ex;
            if ((rc = add_matmul(eng, ks, &src, &wts, &dst, &b2, &pad, c->eb)) != VEIL_OK)
                goto out;
        }
    }
    size_t pad_off;
    if (!take(&cur, pad, 1, &pad_off) || cur > VEIL__ENGINE_MAX_ACT) {
        rc = veil_errf(c->eb, VEIL_E_LIMIT, "the recurrence's working memory is too large");
        goto out;
    }
    for (size_t e = 0; e < ks->n_ex; e++)
        for (size_t k = 0; k < ks->ex[e].n_args; k++)
            if (ks->ex[e].args[k].arg == DNNL_ARG_SCRATCHPAD)
                ks->ex[e].args[k].off = pad_off;
    ks->self_exec = true;
    if (cur > st->scratch_bytes)
        st->scratch_bytes = cur;
    st->ks = ks;
    ks = NULL;
    c->kp->ptr = pp;
    pp = NULL;
    rc = VEIL_OK;
out:
    veil__engine_kstate_free(ks);
    veil_free(pp);
    return rc;
}

/* ---- Running ---- */

/* Runs execution e of the step's kstate, its arguments bound for this scratch arena. */
static veil_err run_prim(const struct veil__engine_kctx *c, int e)
{
    const struct veil__engine_dnnl_exec *dx = &c->st->ks->ex[e];
    dnnl_exec_arg_t *args = &c->sc->args[c->sc->args_base[c->st->ex_base + (size_t)e]];
    veil_err rc = veil__engine_dnnl_err(
        dnnl_primitive_execute(dx->prim, c->sc->stream, (int)dx->n_args, args), "matmul", c->eb);
    if (rc != VEIL_OK)
        return rc;
    return veil__engine_dnnl_err(dnnl_stream_wait(c->sc->stream), "stream wait", c->eb);
}

/* Offset (in rows of hidden floats) of direction d, batch entry b in Y_h, Y_c and the inputs. */
static uint64_t state_row(const struct rnn_cfg *cfg, int64_t d, int64_t b)
{
    return cfg->layout1 ? (uint64_t)(b * cfg->dirs + d) : (uint64_t)(d * cfg->batch + b);
}

/* Biases, initial states and (for a computed R) R^T into the scratch, before the steps. */
static void setup(struct veil__engine_kctx *c, const struct rnn_prep *pp, uint8_t *scr)
{
    const struct rnn_cfg *cfg = &pp->cfg;
    int64_t hs = cfg->hidden, gs = cfg->gates * cfg->hidden, nb = cfg->batch;
    size_t row = (size_t)hs * sizeof(float);
    float *h = (float *)(scr + pp->off_h), *cst = (float *)(scr + pp->off_c);
    for (int64_t d = 0; d < cfg->dirs; d++) {
        float *bias = (float *)(scr + pp->off_bias) + d * 2 * gs;
        /* Wb + Rb, except Wbh alone for a GRU with linear_before_reset (then Rbh follows). */
        memset(bias, 0, (size_t)(2 * gs) * sizeof(float));
        if (kin(c, IN_B)) {
            const float *bw = (const float *)c->in[IN_B].data + d * 2 * gs, *br = bw + gs;
            for (int64_t k = 0; k < gs; k++)
                bias[k] = bw[k] + br[k];
            if (cfg->kind == K_GRU && cfg->lbr)
                for (int64_t k = 0; k < hs; k++) {
                    bias[2 * hs + k] = bw[2 * hs + k];
                    bias[gs + 2 * hs + k] = br[2 * hs + k];
                }
        }
        for (int64_t b = 0; b < nb; b++) {
            uint64_t src = state_row(cfg, d, b) * (uint64_t)hs, dst = (uint64_t)(d * nb + b) * hs;
            if (kin(c, IN_H0))
                memcpy(h + dst, (const float *)c->in[IN_H0].data + src, row);
            else
                memset(h + dst, 0, row);
            if (cfg->kind != K_LSTM)
                continue;
            if (kin(c, IN_C0))
                memcpy(cst + dst, (const float *)c->in[IN_C0].data + src, row);
            else
                memset(cst + dst, 0, row);
        }
        if (!pp->runtime_r)
            continue;
        /* R^T (a split GRU: its z and r columns, then its h columns apart). */
        const float *r = (const float *)c->in[IN_R].data + d * gs * hs;
        int64_t n1 = pp->split ? 2 * hs : gs;
        float *t1 = (float *)(scr + pp->off_rt), *t2 = (float *)(scr + pp->off_rt2);
        if (pp->small) {
            pack_panels(r, n1, hs, t1 + d * n_panels(n1) * PANEL * hs);
            if (pp->split)
                pack_panels(r + n1 * hs, hs, hs, t2 + d * n_panels(hs) * PANEL * hs);
        } else {
            transpose(r, t1 + d * hs * n1, n1, hs);
            if (pp->split)
                transpose(r + n1 * hs, t2 + d * hs * hs, hs, hs);
        }
    }
}

veil_err veil__engine_rnn_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    const struct rnn_prep *pp = kp->ptr;
    if (pp == NULL || c->sc == NULL || c->st == NULL || c->st->ks == NULL)
        return veil_errf(c->eb, VEIL_E_INTERNAL, "recurrent kernel without its prepared state");
    const struct rnn_cfg *cfg = &pp->cfg;
    uint8_t *scr = c->sc->step_region;
    int64_t *len = (int64_t *)(scr + pp->off_len), smax = 0;
    bool full = true;
    veil_err rc;
    for (int64_t b = 0; b < cfg->batch; b++) {
        int64_t v = kin(c, IN_SEQ) ? veil__engine_get_i64(&c->in[IN_SEQ], (uint64_t)b) : cfg->seq;
        if (v < 0 || v > cfg->seq)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "sequence_lens[%lld] is %lld, outside 0 to seq_length %lld",
                             (long long)b, (long long)v, (long long)cfg->seq);
        len[b] = v;
        smax = v > smax ? v : smax;
        full = full && v == cfg->seq;
    }
    /* Y past a sequence's end is zero. */
    if (kout(c, OUT_Y) && !full && c->out[OUT_Y].numel > 0)
        memset(c->out[OUT_Y].data, 0, (size_t)c->out[OUT_Y].numel * sizeof(float));
    setup(c, pp, scr);
    float *xw = (float *)(scr + pp->off_xw);
    if (pp->ex_in >= 0) {
        if ((rc = run_prim(c, pp->ex_in)) != VEIL_OK)
            return rc;
    } else if (cfg->input == 0 && cfg->seq * cfg->batch > 0) {
        /* No input features: the projection is an empty sum. */
        memset(xw, 0,
               (size_t)(cfg->dirs * cfg->seq * cfg->batch * cfg->gates * cfg->hidden) *
                   sizeof(float));
    }
    int64_t hs = cfg->hidden, rows = cfg->dirs * cfg->batch;
    struct step_job j = {
        .pp = pp,
        .len = len,
        .xw = xw,
        .bias = (const float *)(scr + pp->off_bias),
        .peep = cfg->kind == K_LSTM && kin(c, IN_P) ? c->in[IN_P].data : NULL,
        .gates = (float *)(scr + pp->off_gates),
        .h = (float *)(scr + pp->off_h),
        .cs = cfg->kind == K_LSTM ? (float *)(scr + pp->off_c) : NULL,
        .rh = (float *)(scr + pp->off_rh),
        .gh = (float *)(scr + pp->off_gh),
        .y = kout(c, OUT_Y) ? c->out[OUT_Y].data : NULL,
    };
    /* Rows per thread: enough gate work (a few thousand values) to pay for a fork. */
    uint64_t grain = 1 + 16384 / (uint64_t)(cfg->gates * hs);
    int64_t n1 = pp->split ? 2 * hs : cfg->gates * hs;
    const float *pk = pp->runtime_r ? (const float *)(scr + pp->off_rt) : pp->pk;
    const float *pk2 = pp->runtime_r ? (const float *)(scr + pp->off_rt2) : pp->pk2;
    for (int64_t s = 0; s < smax; s++) {
        j.s = s;
        /* gates = H_{t-1} R^T, both directions in one batched product. */
        if (pp->small)
            small_mm(pp->isa, cfg->dirs, j.h, cfg->batch, hs, pk, n1, j.gates);
        else if ((rc = run_prim(c, pp->ex_rec)) != VEIL_OK)
            return rc;
        if (!pp->split) {
            j.phase = 0;
            veil__engine_parallel((uint64_t)rows, grain, step_range, &j);
            continue;
        }
        j.phase = 1;
        veil__engine_parallel((uint64_t)rows, grain, step_range, &j);
        if (pp->small)
            small_mm(pp->isa, cfg->dirs, j.rh, cfg->batch, hs, pk2, hs, j.gh);
        else if ((rc = run_prim(c, pp->ex_rec2)) != VEIL_OK)
            return rc;
        j.phase = 2;
        veil__engine_parallel((uint64_t)rows, grain, step_range, &j);
    }
    const float *h = j.h, *cst = j.cs;
    for (int64_t d = 0; d < cfg->dirs; d++)
        for (int64_t b = 0; b < cfg->batch; b++) {
            uint64_t dst = state_row(cfg, d, b) * (uint64_t)hs,
                     src = (uint64_t)(d * cfg->batch + b) * hs;
            size_t bytes = (size_t)hs * sizeof(float);
            /* An entry of length 0 ends with zero states (ONNX Runtime's answer). */
            if (kout(c, OUT_YH)) {
                float *yh = (float *)c->out[OUT_YH].data + dst;
                if (len[b] > 0)
                    memcpy(yh, h + src, bytes);
                else
                    memset(yh, 0, bytes);
            }
            if (cfg->kind == K_LSTM && kout(c, OUT_YC)) {
                float *yc = (float *)c->out[OUT_YC].data + dst;
                if (len[b] > 0)
                    memcpy(yc, cst + src, bytes);
                else
                    memset(yc, 0, bytes);
            }
        }
    return VEIL_OK;
}
