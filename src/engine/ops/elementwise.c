/*
 * Element-wise operators in plain C: unary math and activations, binary arithmetic, bitwise
 * shifts, logic and comparisons with NumPy-style broadcasting, the variadic Max, Min, Sum and
 * Mean (folded pairwise into the output), Where, Cast and CastLike. Broadcasting collapses
 * adjacent dimensions that broadcast alike, so the inner loop runs over the longest contiguous
 * row; rows are spread over the run's threads. Integer division and modulo by zero yield 0
 * instead of trapping, shifts by the type's width or more yield 0, and float to integer
 * conversions saturate, so hostile data cannot crash a run.
 */
#include "engine_int.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* ---- Unary ---- */

enum unary_kind {
    U_RELU,
    U_LEAKY,
    U_CLIP,
    U_SIGMOID,
    U_TANH,
    U_ERF,
    U_GELU,
    U_GELU_TANH,
    U_SQRT,
    U_EXP,
    U_LOG,
    U_NEG,
    U_ABS,
    U_RECIP,
    U_FLOOR,
    U_CEIL,
    U_ROUND,
    U_SIGN,
    U_SIN,
    U_COS,
    U_TAN,
    U_ASIN,
    U_ACOS,
    U_ATAN,
    U_SINH,
    U_COSH,
    U_ASINH,
    U_ACOSH,
    U_ATANH,
    U_ELU,      /* a = alpha */
    U_SELU,     /* a = alpha, b = gamma */
    U_CELU,     /* a = alpha (non-zero) */
    U_HSIGMOID, /* a = alpha, b = beta */
    U_HSWISH,
    U_THRELU, /* a = alpha */
    U_SOFTPLUS,
    U_SOFTSIGN,
    U_SHRINK, /* a = bias, b = lambd */
    U_ISNAN,
    U_ISINF, /* a = detect_negative, b = detect_positive (0 or 1) */
    U_NOT,
    U_COPY,
    U_MISH,   /* x * tanh(softplus(x)) (opset 18) */
    U_BITNOT, /* integers only (opset 18) */
};

struct un_job {
    const struct veil__engine_tv *in;
    struct veil__engine_tv *out;
    int kind;
    float a, b;
};

/*
 * The unary kernels once for float and once for double: S is the suffix of the <math.h>
 * functions of that precision (f for float, empty for double).
 */
#define VEIL_ENGINE_UNARY_CASES(T, S)                                                              \
    switch (kind) {                                                                                \
    case U_RELU:                                                                                   \
        return x > 0 ? x : (T)0;                                                                   \
    case U_LEAKY:                                                                                  \
        return x >= 0 ? x : x * a;                                                                 \
    case U_CLIP:                                                                                   \
        return x < a ? a : (x > b ? b : x);                                                        \
    case U_SIGMOID:                                                                                \
        return 1 / (1 + exp##S(-x));                                                               \
    case U_TANH:                                                                                   \
        return tanh##S(x);                                                                         \
    case U_ERF:                                                                                    \
        return erf##S(x);                                                                          \
    case U_MISH:                                                                                   \
        /* softplus(x) = log1p(exp(x)) overflows for large x, where it equals x. */                \
        return x * tanh##S(x > (T)20 ? x : log1p##S(exp##S(x)));                                   \
    case U_GELU:                                                                                   \
        return (T)0.5 * x * (1 + erf##S(x * (T)0.70710678118654752));                              \
    case U_GELU_TANH:                                                                              \
        return (T)0.5 * x * (1 + tanh##S((T)0.7978845608028654 * (x + (T)0.044715 * x * x * x)));  \
    case U_SQRT:                                                                                   \
        return sqrt##S(x);                                                                         \
    case U_EXP:                                                                                    \
        return exp##S(x);                                                                          \
    case U_LOG:                                                                                    \
        return log##S(x);                                                                          \
    case U_NEG:                                                                                    \
        return -x;                                                                                 \
    case U_ABS:                                                                                    \
        return fabs##S(x);                                                                         \
    case U_RECIP:                                                                                  \
        return 1 / x;                                                                              \
    case U_FLOOR:                                                                                  \
        return floor##S(x);                                                                        \
    case U_CEIL:                                                                                   \
        return ceil##S(x);                                                                         \
    case U_ROUND:                                                                                  \
        /* The default rounding mode rounds halves to even, as ONNX Round requires. */             \
        return nearbyint##S(x);                                                                    \
    case U_SIGN:                                                                                   \
        return x > 0 ? (T)1 : (x < 0 ? (T)-1 : x);                                                 \
    case U_SIN:                                                                                    \
        return sin##S(x);                                                                          \
    case U_COS:                                                                                    \
        return cos##S(x);                                                                          \
    case U_TAN:                                                                                    \
        return tan##S(x);                                                                          \
    case U_ASIN:                                                                                   \
        return asin##S(x);                                                                         \
    case U_ACOS:                                                                                   \
        return acos##S(x);                                                                         \
    case U_ATAN:                                                                                   \
        return atan##S(x);                                                                         \
    case U_SINH:                                                                                   \
        return sinh##S(x);                                                                         \
    case U_COSH:                                                                                   \
        return cosh##S(x);                                                                         \
    case U_ASINH:                                                                                  \
        return asinh##S(x);                                                                        \
    case U_ACOSH:                                                                                  \
        return acosh##S(x);                                                                        \
    case U_ATANH:                                                                                  \
        return atanh##S(x);                                                                        \
    case U_ELU:                                                                                    \
        return x >= 0 ? x : a * expm1##S(x);                                                       \
    case U_SELU:                                                                                   \
        return x > 0 ? b * x : b * a * expm1##S(x);                                                \
    case U_CELU: {                                                                                 \
        T e = a * expm1##S(x / a);                                                                 \
        return isnan(x) ? x : (x > 0 ? x : (T)0) + (e < 0 ? e : (T)0);                             \
    }                                                                                              \
    case U_HSIGMOID: {                                                                             \
        T v = a * x + b;                                                                           \
        return v < 0 ? (T)0 : (v > 1 ? (T)1 : v);                                                  \
    }                                                                                              \
    case U_HSWISH: {                                                                               \
        T v = x / 6 + (T)0.5;                                                                      \
        return x * (v < 0 ? (T)0 : (v > 1 ? (T)1 : v));                                            \
    }                                                                                              \
    case U_THRELU:                                                                                 \
        return x > a ? x : (T)0;                                                                   \
    case U_SOFTPLUS:                                                                               \
        /* log##S(1 + e^x) without overflowing e^x for large x. */                                 \
        return x > 0 ? x + log1p##S(exp##S(-x)) : log1p##S(exp##S(x));                             \
    case U_SOFTSIGN:                                                                               \
        return x / (1 + fabs##S(x));                                                               \
    case U_SHRINK:                                                                                 \
        return x < -b ? x + a : (x > b ? x - a : (T)0);                                            \
    default:                                                                                       \
        return x;                                                                                  \
    }

static inline float un_f(int kind, float x, float a, float b)
{
    VEIL_ENGINE_UNARY_CASES(float, f)
}

static inline double un_d(int kind, double x, double a, double b)
{
    VEIL_ENGINE_UNARY_CASES(double, )
}

static bool is_unsigned_dt(enum veil_dtype dt)
{
    return dt == VEIL_DT_UINT8 || dt == VEIL_DT_UINT16 || dt == VEIL_DT_UINT32 ||
           dt == VEIL_DT_UINT64;
}

static void un_range(void *ud, uint64_t lo, uint64_t hi)
{
    struct un_job *j = ud;
    if (j->kind == U_ISNAN || j->kind == U_ISINF) {
        uint8_t *y = j->out->data;
        bool neg = j->a != 0.0f, pos = j->b != 0.0f, nan = j->kind == U_ISNAN;
        for (uint64_t i = lo; i < hi; i++) {
            double x = j->in->dt == VEIL_DT_FLOAT ? (double)((const float *)j->in->data)[i]
                                                  : ((const double *)j->in->data)[i];
            y[i] = nan ? isnan(x) != 0 : isinf(x) && (x > 0.0 ? pos : neg);
        }
        return;
    }
    if (j->in->dt == VEIL_DT_FLOAT) {
        const float *x = j->in->data;
        float *y = j->out->data;
        int kind = j->kind;
        float a = j->a, b = j->b;
        if (kind == U_RELU) {
            for (uint64_t i = lo; i < hi; i++)
                y[i] = x[i] > 0.0f ? x[i] : 0.0f;
            return;
        }
        for (uint64_t i = lo; i < hi; i++)
            y[i] = un_f(kind, x[i], a, b);
        return;
    }
    if (j->kind == U_NOT) {
        const uint8_t *x = j->in->data;
        uint8_t *y = j->out->data;
        for (uint64_t i = lo; i < hi; i++)
            y[i] = !x[i];
        return;
    }
    /* Shrink's float bias and threshold apply to integers through double, saturating back. */
    bool is_int = j->in->dt != VEIL_DT_DOUBLE && j->kind != U_SHRINK;
    bool uns = is_unsigned_dt(j->in->dt);
    for (uint64_t i = lo; i < hi; i++) {
        if (is_int) {
            /* Unsigned values are never negative (UINT64 above INT64_MAX reads negative). */
            int64_t v = veil__engine_get_i64(j->in, i);
            if (j->kind == U_NEG)
                v = (int64_t)(0ull - (uint64_t)v);
            else if (j->kind == U_ABS)
                v = v < 0 && !uns ? (int64_t)(0ull - (uint64_t)v) : v;
            else if (j->kind == U_RELU)
                v = v > 0 || uns ? v : 0;
            else if (j->kind == U_SIGN)
                v = uns ? v != 0 : (v > 0) - (v < 0);
            else if (j->kind == U_BITNOT)
                v = (int64_t) ~(uint64_t)v; /* stored back in the element's width */
            else if (j->kind == U_CLIP)
                v = (double)v < j->a ? (int64_t)j->a : ((double)v > j->b ? (int64_t)j->b : v);
            veil__engine_set_i64(j->out, i, v);
        } else {
            veil__engine_set_f64(j->out, i,
                                 un_d(j->kind, veil__engine_get_f64(j->in, i), j->a, j->b));
        }
    }
}

static int unary_kind_of(const char *op)
{
    static const struct {
        const char *name;
        int kind;
    } map[] = {{"Relu", U_RELU},         {"LeakyRelu", U_LEAKY},
               {"Clip", U_CLIP},         {"Sigmoid", U_SIGMOID},
               {"Tanh", U_TANH},         {"Erf", U_ERF},
               {"Gelu", U_GELU},         {"Sqrt", U_SQRT},
               {"Exp", U_EXP},           {"Log", U_LOG},
               {"Neg", U_NEG},           {"Abs", U_ABS},
               {"Reciprocal", U_RECIP},  {"Floor", U_FLOOR},
               {"Ceil", U_CEIL},         {"Round", U_ROUND},
               {"Sign", U_SIGN},         {"Sin", U_SIN},
               {"Cos", U_COS},           {"Tan", U_TAN},
               {"Asin", U_ASIN},         {"Acos", U_ACOS},
               {"Atan", U_ATAN},         {"Sinh", U_SINH},
               {"Cosh", U_COSH},         {"Asinh", U_ASINH},
               {"Acosh", U_ACOSH},       {"Atanh", U_ATANH},
               {"Elu", U_ELU},           {"Selu", U_SELU},
               {"Celu", U_CELU},         {"HardSigmoid", U_HSIGMOID},
               {"HardSwish", U_HSWISH},  {"ThresholdedRelu", U_THRELU},
               {"Softplus", U_SOFTPLUS}, {"Softsign", U_SOFTSIGN},
               {"Shrink", U_SHRINK},     {"IsNaN", U_ISNAN},
               {"IsInf", U_ISINF},       {"Not", U_NOT},
               {"Mish", U_MISH},         {"BitwiseNot", U_BITNOT},
               {"Identity", U_COPY},     {"Dropout", U_COPY}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i].name, op) == 0)
            return map[i].kind;
    return -1;
}

/*
 * A float attribute of the node into *v: def when absent. Errors: VEIL_E_INVALID when the
 * attribute has another type.
 */
static veil_err attr_float(const struct veil__engine_ictx *c, const char *name, float def, float *v)
{
    const struct veil__engine_attr *a = veil__engine_attr_get(c->n, name);
    *v = def;
    if (a == NULL)
        return VEIL_OK;
    if (a->type != VEIL_ONNX_ATTR_FLOAT)
        return veil_errf(c->eb, VEIL_E_INVALID, "attribute %s must be a float", name);
    *v = a->f;
    return VEIL_OK;
}

/*
 * An integer attribute of the node that must be 0 or 1 into *v: def when absent. Errors:
 * VEIL_E_INVALID when the attribute has another type or value.
 */
static veil_err attr_flag(const struct veil__engine_ictx *c, const char *name, int64_t def,
                          int64_t *v)
{
    const struct veil__engine_attr *a = veil__engine_attr_get(c->n, name);
    *v = def;
    if (a == NULL)
        return VEIL_OK;
    if (a->type != VEIL_ONNX_ATTR_INT || (a->i != 0 && a->i != 1))
        return veil_errf(c->eb, VEIL_E_INVALID, "attribute %s must be the integer 0 or 1", name);
    *v = a->i;
    return VEIL_OK;
}

/* The float attributes of the activations (a and b of un_f) into kp->unary.a and b. */
static veil_err unary_attrs(struct veil__engine_ictx *c, int kind)
{
    float *a = &c->kp->unary.a, *b = &c->kp->unary.b;
    veil_err rc = VEIL_OK;
    int64_t neg, pos;
    switch (kind) {
    case U_LEAKY:
        *a = veil__engine_attr_f(c->n, "alpha", 0.01f);
        break;
    case U_ELU:
    case U_THRELU:
        rc = attr_float(c, "alpha", 1.0f, a);
        break;
    case U_CELU:
        if ((rc = attr_float(c, "alpha", 1.0f, a)) == VEIL_OK && *a == 0.0f)
            rc = veil_errf(c->eb, VEIL_E_INVALID, "alpha must not be 0");
        break;
    case U_SELU:
        if ((rc = attr_float(c, "alpha", 1.67326319217681884765625f, a)) == VEIL_OK)
            rc = attr_float(c, "gamma", 1.05070102214813232421875f, b);
        break;
    case U_HSIGMOID:
        if ((rc = attr_float(c, "alpha", 0.2f, a)) == VEIL_OK)
            rc = attr_float(c, "beta", 0.5f, b);
        break;
    case U_SHRINK:
        if ((rc = attr_float(c, "bias", 0.0f, a)) == VEIL_OK)
            rc = attr_float(c, "lambd", 0.5f, b);
        break;
    case U_ISINF:
        if ((rc = attr_flag(c, "detect_negative", 1, &neg)) == VEIL_OK &&
            (rc = attr_flag(c, "detect_positive", 1, &pos)) == VEIL_OK) {
            *a = (float)neg;
            *b = (float)pos;
        }
        break;
    default:
        break;
    }
    return rc;
}

veil_err veil__engine_unary_infer(struct veil__engine_ictx *c)
{
    const struct veil__engine_node *n = c->n;
    int kind = unary_kind_of(n->op_type);
    if (c->n_in < 1 || n->in[0] < 0 || c->n_out < 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "missing input or output");
    enum veil_dtype dt = c->in[0].dt;
    bool ok;
    if (kind == U_NOT)
        ok = dt == VEIL_DT_BOOL;
    else if (kind == U_BITNOT)
        ok = veil__engine_dt_is_int(dt);
    else if (kind == U_COPY)
        ok = veil_dtype_size(dt) > 0;
    else if (kind == U_NEG || kind == U_ABS || kind == U_RELU || kind == U_CLIP || kind == U_SIGN ||
             kind == U_SHRINK)
        ok = veil__engine_dt_is_float(dt) || veil__engine_dt_is_int(dt);
    else
        ok = veil__engine_dt_is_float(dt);
    if (!ok)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "input type %s is not supported",
                         veil_dtype_name(dt));
    c->kp->unary.kind = kind;
    c->kp->unary.a = 0.0f;
    c->kp->unary.b = 0.0f;
    veil_err rc = unary_attrs(c, kind);
    if (rc != VEIL_OK)
        return rc;
    if (kind == U_GELU) {
        const char *ap = veil__engine_attr_s(n, "approximate", "none");
        if (strcmp(ap, "tanh") == 0)
            c->kp->unary.kind = U_GELU_TANH;
        else if (strcmp(ap, "none") != 0)
            return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "approximate='%s'", ap);
    } else if (kind == U_CLIP) {
        for (size_t k = 1; k < 3 && k < c->n_in; k++)
            if (n->in[k] >= 0 && (c->in[k].numel != 1 || c->in[k].dt != dt))
                return veil_errf(c->eb, VEIL_E_INVALID,
                                 "min and max must be scalars of the "
                                 "input's type");
    } else if (kind == U_COPY && strcmp(n->op_type, "Dropout") == 0) {
        /*
         * Training mode drops at random, except with a ratio of 0, where it is the identity:
         * torch exports that for a functional dropout called without training=self.training.
         */
        bool train = c->n_in > 2 && n->in[2] >= 0 &&
                     (c->in[2].data == NULL || veil__engine_get_i64(&c->in[2], 0) != 0);
        bool no_drop = c->n_in > 1 && n->in[1] >= 0 && c->in[1].data != NULL &&
                       c->in[1].numel == 1 && veil__engine_get_f64(&c->in[1], 0) == 0.0;
        if (train && !no_drop)
            return veil_errf(c->eb, VEIL_E_UNSUPPORTED,
                             "training mode is not supported (only with a ratio of 0)");
        if (c->n_out > 1 && n->out[1] >= 0) {
            c->out[1] = c->in[0];
            c->out[1].dt = VEIL_DT_BOOL;
        }
    }
    c->out[0] = c->in[0];
    if (kind == U_NOT || kind == U_ISNAN || kind == U_ISINF)
        c->out[0].dt = VEIL_DT_BOOL;
    return VEIL_OK;
}

veil_err veil__engine_unary_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    struct un_job j = {&c->in[0], &c->out[0], (int)kp->unary.kind, kp->unary.a, kp->unary.b};
    if (j.kind == U_CLIP) {
        /* Bounds are read here, so they may be computed at run time. */
        bool is_int = veil__engine_dt_is_int(c->in[0].dt);
        j.a = is_int ? -9.2e18f : -INFINITY;
        j.b = is_int ? 9.2e18f : INFINITY;
        if (c->n_in > 1 && c->n->in[1] >= 0)
            j.a = (float)veil__engine_get_f64(&c->in[1], 0);
        if (c->n_in > 2 && c->n->in[2] >= 0)
            j.b = (float)veil__engine_get_f64(&c->in[2], 0);
    }
    if (j.kind == U_COPY) {
        if (c->out[0].data != c->in[0].data && c->in[0].numel > 0)
            memcpy(c->out[0].data, c->in[0].data, c->in[0].numel * veil_dtype_size(c->in[0].dt));
        if (c->n_out > 1 && c->n->out[1] >= 0 && c->out[1].numel > 0)
            memset(c->out[1].data, 1, c->out[1].numel);
        return VEIL_OK;
    }
    veil__engine_parallel(c->out[0].numel, 16384, un_range, &j);
    return VEIL_OK;
}

/* ---- Broadcasting machinery (up to 3 operands) ---- */

struct bcast {
    size_t r;
    int64_t dims[VEIL__ENGINE_RANK];
    int64_t st[3][VEIL__ENGINE_RANK]; /* element strides, 0 where broadcast */
    size_t n_ops;
};

static void bcast_make(struct bcast *b, const struct veil__engine_tv *const *ops, size_t n_ops,
                       const struct veil__engine_tv *out)
{
    size_t r = out->rank;
    int64_t st[3][VEIL__ENGINE_RANK];
    for (size_t o = 0; o < n_ops; o++) {
        int64_t s = 1;
        for (size_t i = r; i-- > 0;) {
            size_t off = r - ops[o]->rank;
            int64_t d = i >= off ? ops[o]->dims[i - off] : 1;
            st[o][i] = d == 1 ? 0 : s;
            s *= d;
        }
    }
    /* Drop size-1 dims and merge neighbours that broadcast alike for every operand. */
    b->r = 0;
    b->n_ops = n_ops;
    for (size_t i = 0; i < r; i++) {
        if (out->dims[i] == 1)
            continue;
        if (b->r > 0) {
            bool merge = true;
            size_t k = b->r - 1;
            for (size_t o = 0; o < n_ops && merge; o++)
                merge = (st[o][i] == 0 && b->st[o][k] == 0) ||
                        (st[o][i] != 0 && b->st[o][k] == st[o][i] * out->dims[i]);
            if (merge) {
                b->dims[k] *= out->dims[i];
                for (size_t o = 0; o < n_ops; o++)
                    b->st[o][k] = st[o][i];
                continue;
            }
        }
        b->dims[b->r] = out->dims[i];
        for (size_t o = 0; o < n_ops; o++)
            b->st[o][b->r] = st[o][i];
        b->r++;
    }
    if (b->r == 0) {
        b->r = 1;
        b->dims[0] = 1;
        for (size_t o = 0; o < n_ops; o++)
            b->st[o][0] = 0;
    }
}

/* Offsets of the operands at the start of row `row` (all dims but the last). */
static void bcast_row(const struct bcast *b, uint64_t row, int64_t *offs)
{
    for (size_t o = 0; o < b->n_ops; o++)
        offs[o] = 0;
    for (size_t i = b->r - 1; i-- > 0;) {
        int64_t idx = (int64_t)(row % (uint64_t)b->dims[i]);
        row /= (uint64_t)b->dims[i];
        for (size_t o = 0; o < b->n_ops; o++)
            offs[o] += idx * b->st[o][i];
    }
}

/* Arithmetic kinds (output of the inputs' type) come before B_EQ, boolean ones up to B_XOR. */
enum bin_kind {
    B_ADD,
    B_SUB,
    B_MUL,
    B_DIV,
    B_POW,
    B_MAX,
    B_MIN,
    B_MOD,   /* integer modulo, the result taking the divisor's sign (Mod fmod=0) */
    B_FMOD,  /* the result taking the dividend's sign, as C's fmod (Mod fmod=1) */
    B_PRELU, /* x < 0 ? x * slope : x */
    B_SHL,   /* unsigned only */
    B_SHR,
    B_BAND, /* BitwiseAnd, BitwiseOr, BitwiseXor: integers only (opset 18) */
    B_BOR,
    B_BXOR,
    B_EQ,
    B_GT,
    B_LT,
    B_GE,
    B_LE,
    B_AND,
    B_OR,
    B_XOR,
    B_WHERE,
    B_EXPAND
};

static bool bin_is_bool(int k)
{
    return k >= B_EQ && k <= B_XOR;
}

struct bin_job {
    struct bcast b;
    const struct veil__engine_tv *a, *bb, *cc;
    struct veil__engine_tv *out;
    int kind;
};

/*
 * The binary float kernels once per precision, as VEIL_ENGINE_UNARY_CASES. Max and Min
 * propagate NaN from either side, as NumPy's maximum and minimum do.
 */
#define VEIL_ENGINE_BINARY_CASES(T, S)                                                             \
    switch (k) {                                                                                   \
    case B_ADD:                                                                                    \
        return x + y;                                                                              \
    case B_SUB:                                                                                    \
        return x - y;                                                                              \
    case B_MUL:                                                                                    \
        return x * y;                                                                              \
    case B_DIV:                                                                                    \
        return x / y;                                                                              \
    case B_POW:                                                                                    \
        return pow##S(x, y);                                                                       \
    case B_MAX:                                                                                    \
        return x > y || isnan(x) ? x : y;                                                          \
    case B_MIN:                                                                                    \
        return x < y || isnan(x) ? x : y;                                                          \
    case B_FMOD:                                                                                   \
        return fmod##S(x, y);                                                                      \
    case B_PRELU:                                                                                  \
        return x < 0 ? x * y : x;                                                                  \
    default:                                                                                       \
        return (T)0;                                                                               \
    }

static inline float bin_f(int k, float x, float y)
{
    VEIL_ENGINE_BINARY_CASES(float, f)
}

static inline double bin_d(int k, double x, double y)
{
    VEIL_ENGINE_BINARY_CASES(double, )
}

/* A shift by 64 or more clears every bit (C leaves it undefined). */
static inline uint64_t shift_u(int k, uint64_t x, uint64_t y)
{
    if (y >= 64)
        return 0;
    return k == B_SHL ? x << y : x >> y;
}

static inline int64_t bin_i(int k, int64_t x, int64_t y)
{
    uint64_t ux = (uint64_t)x, uy = (uint64_t)y;
    switch (k) {
    case B_ADD:
        return (int64_t)(ux + uy);
    case B_SUB:
        return (int64_t)(ux - uy);
    case B_MUL:
        return (int64_t)(ux * uy);
    case B_DIV:
        if (y == 0 || (y == -1 && x == INT64_MIN))
            return y == 0 ? 0 : x;
        return x / y;
    case B_MAX:
        return x > y ? x : y;
    case B_MIN:
        return x < y ? x : y;
    case B_MOD:
    case B_FMOD: {
        /* y == -1 is excluded because INT64_MIN % -1 traps; the remainder is 0 anyway. */
        if (y == 0 || y == -1)
            return 0;
        int64_t r = x % y;
        if (k == B_MOD && r != 0 && (r < 0) != (y < 0))
            r += y;
        return r;
    }
    case B_PRELU:
        return x < 0 ? (int64_t)(ux * uy) : x;
    case B_SHL:
    case B_SHR:
        return (int64_t)shift_u(k, ux, uy);
    case B_BAND:
        return (int64_t)(ux & uy);
    case B_BOR:
        return (int64_t)(ux | uy);
    case B_BXOR:
        return (int64_t)(ux ^ uy);
    default:
        return 0;
    }
}

static inline uint64_t bin_u(int k, uint64_t x, uint64_t y)
{
    switch (k) {
    case B_ADD:
        return x + y;
    case B_SUB:
        return x - y;
    case B_MUL:
        return x * y;
    case B_DIV:
        return y ? x / y : 0;
    case B_MAX:
        return x > y ? x : y;
    case B_MIN:
        return x < y ? x : y;
    case B_MOD:
    case B_FMOD:
        return y ? x % y : 0;
    case B_SHL:
    case B_SHR:
        return shift_u(k, x, y);
    case B_BAND:
        return x & y;
    case B_BOR:
        return x | y;
    case B_BXOR:
        return x ^ y;
    default: /* B_PRELU: an unsigned x is never negative */
        return x;
    }
}

#define CMP(k, x, y)                                                                               \
    ((k) == B_EQ   ? (x) == (y)                                                                    \
     : (k) == B_GT ? (x) > (y)                                                                     \
     : (k) == B_LT ? (x) < (y)                                                                     \
     : (k) == B_GE ? (x) >= (y)                                                                    \
                   : (x) <= (y))

/*
 * One row of a float binary operator: o[i] = x[i * sa] op y[i * sb]. The four arithmetic
 * operators with unit or zero strides get loops the compiler vectorises, and Pow with a
 * scalar exponent of 2 (the variance of exporters' layer norms), 3 (tanh GELU), 1 or 0.5
 * skips powf; the rest go element by element. o may be x itself (each element is read before it is
 * written).
 */
#define BIN_ROW(OP)                                                                                \
    do {                                                                                           \
        if (sa == 1 && sb == 1) {                                                                  \
            for (int64_t i = 0; i < len; i++)                                                      \
                o[i] = x[i] OP y[i];                                                               \
        } else if (sa == 1 && sb == 0) {                                                           \
            float yv = y[0];                                                                       \
            for (int64_t i = 0; i < len; i++)                                                      \
                o[i] = x[i] OP yv;                                                                 \
        } else if (sa == 0 && sb == 1) {                                                           \
            float xv = x[0];                                                                       \
            for (int64_t i = 0; i < len; i++)                                                      \
                o[i] = xv OP y[i];                                                                 \
        } else {                                                                                   \
            for (int64_t i = 0; i < len; i++)                                                      \
                o[i] = x[i * sa] OP y[i * sb];                                                     \
        }                                                                                          \
    } while (0)

static void bin_row_f(int k, const float *x, int64_t sa, const float *y, int64_t sb, float *o,
                      int64_t len)
{
    switch (k) {
    case B_ADD:
        BIN_ROW(+);
        return;
    case B_SUB:
        BIN_ROW(-);
        return;
    case B_MUL:
        BIN_ROW(*);
        return;
    case B_DIV:
        BIN_ROW(/);
        return;
    case B_POW:
        if (sb == 0 && y[0] == 2.0f) {
            for (int64_t i = 0; i < len; i++)
                o[i] = x[i * sa] * x[i * sa];
            return;
        }
        if (sb == 0 && y[0] == 3.0f) {
            for (int64_t i = 0; i < len; i++)
                o[i] = x[i * sa] * x[i * sa] * x[i * sa];
            return;
        }
        if (sb == 0 && y[0] == 1.0f) {
            for (int64_t i = 0; i < len; i++)
                o[i] = x[i * sa];
            return;
        }
        if (sb == 0 && y[0] == 0.5f) {
            /* As pow: +0 for -0 (the added +0 does it) and +inf for -inf. */
            for (int64_t i = 0; i < len; i++)
                o[i] = x[i * sa] == -INFINITY ? INFINITY : sqrtf(x[i * sa]) + 0.0f;
            return;
        }
        break;
    default:
        break;
    }
    for (int64_t i = 0; i < len; i++)
        o[i] = bin_f(k, x[i * sa], y[i * sb]);
}

static void bin_range(void *ud, uint64_t lo, uint64_t hi)
{
    struct bin_job *j = ud;
    const struct bcast *b = &j->b;
    int64_t len = b->dims[b->r - 1];
    int64_t sa = b->st[0][b->r - 1], sb = b->n_ops > 1 ? b->st[1][b->r - 1] : 0;
    int64_t sc = b->n_ops > 2 ? b->st[2][b->r - 1] : 0;
    int k = j->kind;
    for (uint64_t row = lo; row < hi; row++) {
        int64_t offs[3];
        bcast_row(b, row, offs);
        uint64_t o0 = row * (uint64_t)len;
        if (k == B_EXPAND || k == B_WHERE) {
            size_t es = veil_dtype_size(j->out->dt);
            const uint8_t *cond = k == B_WHERE ? (const uint8_t *)j->a->data + offs[0] : NULL;
            const uint8_t *x = (const uint8_t *)(k == B_WHERE ? j->bb : j->a)->data;
            const uint8_t *y = k == B_WHERE ? (const uint8_t *)j->cc->data : NULL;
            int64_t xo = k == B_WHERE ? offs[1] : offs[0], xs = k == B_WHERE ? sb : sa;
            uint8_t *o = (uint8_t *)j->out->data + o0 * es;
            if (es == 4 && k == B_EXPAND) {
                /* Expand of 4-byte elements: a row copy or a fill. */
                const uint32_t *xv = (const uint32_t *)(const void *)x + xo;
                uint32_t *ov = (uint32_t *)(void *)o;
                if (xs == 1) {
                    memcpy(ov, xv, (size_t)len * 4);
                } else {
                    for (int64_t i = 0; i < len; i++)
                        ov[i] = xv[i * xs];
                }
                continue;
            }
            if (es == 4 && k == B_WHERE) {
                /* Where on 4-byte elements: a select the compiler can vectorise. */
                const uint32_t *xv = (const uint32_t *)(const void *)x + xo;
                const uint32_t *yv = (const uint32_t *)(const void *)y + offs[2];
                uint32_t *ov = (uint32_t *)(void *)o;
                for (int64_t i = 0; i < len; i++)
                    ov[i] = cond[i * sa] ? xv[i * xs] : yv[i * sc];
                continue;
            }
            for (int64_t i = 0; i < len; i++) {
                const uint8_t *src;
                if (k == B_WHERE && !cond[i * sa])
                    src = y + (size_t)(offs[2] + i * sc) * es;
                else
                    src = x + (size_t)(xo + i * xs) * es;
                memcpy(o + (size_t)i * es, src, es);
            }
            continue;
        }
        if (j->a->dt == VEIL_DT_FLOAT && j->bb->dt == VEIL_DT_FLOAT && !bin_is_bool(k)) {
            /* The output may be operand a itself (variadic folds): each element is read first. */
            const float *x = (const float *)j->a->data + offs[0];
            const float *y = (const float *)j->bb->data + offs[1];
            float *o = (float *)j->out->data + o0;
            bin_row_f(k, x, sa, y, sb, o, len);
            continue;
        }
        struct veil__engine_tv at = *j->a, bt = *j->bb;
        bool fl = veil__engine_dt_is_float(at.dt) || veil__engine_dt_is_float(bt.dt);
        for (int64_t i = 0; i < len; i++) {
            uint64_t ia = (uint64_t)(offs[0] + i * sa), ib = (uint64_t)(offs[1] + i * sb);
            uint64_t io = o0 + (uint64_t)i;
            if (bin_is_bool(k)) {
                bool r;
                if (k == B_AND || k == B_OR || k == B_XOR) {
                    bool x = veil__engine_get_i64(&at, ia) != 0,
                         y = veil__engine_get_i64(&bt, ib) != 0;
                    r = k == B_AND ? x && y : k == B_OR ? x || y : x != y;
                } else if (fl) {
                    double x = veil__engine_get_f64(&at, ia), y = veil__engine_get_f64(&bt, ib);
                    r = CMP(k, x, y);
                } else if (at.dt == VEIL_DT_UINT64) {
                    uint64_t x = ((const uint64_t *)at.data)[ia],
                             y = ((const uint64_t *)bt.data)[ib];
                    r = CMP(k, x, y);
                } else {
                    int64_t x = veil__engine_get_i64(&at, ia), y = veil__engine_get_i64(&bt, ib);
                    r = CMP(k, x, y);
                }
                ((uint8_t *)j->out->data)[io] = r;
            } else if (k == B_POW || fl) {
                double r = bin_d(k, veil__engine_get_f64(&at, ia), veil__engine_get_f64(&bt, ib));
                if (j->out->dt == VEIL_DT_FLOAT)
                    ((float *)j->out->data)[io] = (float)r;
                else
                    veil__engine_set_f64(j->out, io, r);
            } else if (at.dt == VEIL_DT_UINT64 || at.dt == VEIL_DT_UINT32) {
                uint64_t x = at.dt == VEIL_DT_UINT64 ? ((const uint64_t *)at.data)[ia]
                                                     : ((const uint32_t *)at.data)[ia];
                uint64_t y = at.dt == VEIL_DT_UINT64 ? ((const uint64_t *)bt.data)[ib]
                                                     : ((const uint32_t *)bt.data)[ib];
                uint64_t r = bin_u(k, x, y);
                if (at.dt == VEIL_DT_UINT64)
                    ((uint64_t *)j->out->data)[io] = r;
                else
                    ((uint32_t *)j->out->data)[io] = (uint32_t)r;
            } else {
                veil__engine_set_i64(
                    j->out, io,
                    bin_i(k, veil__engine_get_i64(&at, ia), veil__engine_get_i64(&bt, ib)));
            }
        }
    }
}

static int bin_kind_of(const char *op)
{
    static const struct {
        const char *name;
        int kind;
    } map[] = {{"Add", B_ADD},         {"Sub", B_SUB},       {"Mul", B_MUL},
               {"Div", B_DIV},         {"Pow", B_POW},       {"Mod", B_MOD},
               {"PRelu", B_PRELU},     {"BitShift", B_SHL},  {"Equal", B_EQ},
               {"Greater", B_GT},      {"Less", B_LT},       {"GreaterOrEqual", B_GE},
               {"LessOrEqual", B_LE},  {"And", B_AND},       {"Or", B_OR},
               {"Xor", B_XOR},         {"Where", B_WHERE},   {"Expand", B_EXPAND},
               {"BitwiseAnd", B_BAND}, {"BitwiseOr", B_BOR}, {"BitwiseXor", B_BXOR}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i].name, op) == 0)
            return map[i].kind;
    return -1;
}

/*
 * The kind Mod and BitShift compute from their attributes (fmod; direction) into *k. Errors:
 * VEIL_E_INVALID for a missing or malformed attribute, and for fmod=0 on a float type, which
 * ONNX forbids (integer modulo is undefined there).
 */
static veil_err bin_attr_kind(struct veil__engine_ictx *c, enum veil_dtype dt, int *k)
{
    if (*k == B_MOD) {
        int64_t fm;
        veil_err rc = attr_flag(c, "fmod", 0, &fm);
        if (rc != VEIL_OK)
            return rc;
        if (fm == 0 && veil__engine_dt_is_float(dt))
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "fmod=0 (integer modulo) on %s input: ONNX requires fmod=1 for "
                             "floating-point types",
                             veil_dtype_name(dt));
        *k = fm ? B_FMOD : B_MOD;
    } else if (*k == B_SHL) {
        const struct veil__engine_attr *a = veil__engine_attr_get(c->n, "direction");
        if (a == NULL || a->type != VEIL_ONNX_ATTR_STRING)
            return veil_errf(c->eb, VEIL_E_INVALID, "attribute direction (a string) is required");
        if (strcmp(a->s, "RIGHT") == 0)
            *k = B_SHR;
        else if (strcmp(a->s, "LEFT") != 0)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "direction must be \"LEFT\" or \"RIGHT\", not \"%.32s\"", a->s);
    }
    return VEIL_OK;
}

veil_err veil__engine_binary_infer(struct veil__engine_ictx *c)
{
    int k = bin_kind_of(c->n->op_type);
    for (size_t i = 0; i < (k == B_WHERE ? 3u : 2u); i++)
        if (i >= c->n_in || c->n->in[i] < 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "missing input %zu", i);
    if (c->n_out < 1 || c->n->out[0] < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "missing output");
    struct veil__engine_tv *a = &c->in[0], *b = &c->in[1];
    struct veil__engine_tv *out = &c->out[0];
    veil_err rc;
    c->kp->binary.kind = k;
    if (k == B_EXPAND) {
        struct veil__engine_tv shp = {VEIL_DT_INT64, 1, {0}, 0, NULL};
        if (b->dt != VEIL_DT_INT64 || b->rank != 1 || b->numel > VEIL__ENGINE_RANK)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "shape must be a 1-D int64 tensor of at most "
                             "%d values",
                             VEIL__ENGINE_RANK);
        shp.rank = (size_t)b->numel;
        for (size_t i = 0; i < shp.rank; i++) {
            shp.dims[i] = veil__engine_get_i64(b, i);
            if (shp.dims[i] < 0)
                return veil_errf(c->eb, VEIL_E_INVALID, "negative dimension in shape");
        }
        rc = veil__engine_broadcast(a, &shp, &out->rank, out->dims, c->eb);
        out->dt = a->dt;
        return rc;
    }
    if (k == B_WHERE) {
        struct veil__engine_tv tmp;
        if (a->dt != VEIL_DT_BOOL || b->dt != c->in[2].dt)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "Where needs a bool condition and two inputs "
                             "of one type");
        if ((rc = veil__engine_broadcast(a, b, &tmp.rank, tmp.dims, c->eb)) != VEIL_OK)
            return rc;
        rc = veil__engine_broadcast(&tmp, &c->in[2], &out->rank, out->dims, c->eb);
        out->dt = b->dt;
        return rc;
    }
    if (k != B_POW && a->dt != b->dt)
        return veil_errf(c->eb, VEIL_E_INVALID, "input types differ: %s and %s",
                         veil_dtype_name(a->dt), veil_dtype_name(b->dt));
    bool ok;
    if (k == B_AND || k == B_OR || k == B_XOR)
        ok = a->dt == VEIL_DT_BOOL;
    else if (k == B_SHL)
        ok = is_unsigned_dt(a->dt);
    else if (k == B_BAND || k == B_BOR || k == B_BXOR)
        ok = veil__engine_dt_is_int(a->dt);
    else
        ok = veil__engine_dt_is_float(a->dt) || veil__engine_dt_is_int(a->dt) ||
             (k == B_EQ && a->dt == VEIL_DT_BOOL);
    if (!ok)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "input type %s is not supported",
                         veil_dtype_name(a->dt));
    if (k == B_POW && !(veil__engine_dt_is_float(b->dt) || veil__engine_dt_is_int(b->dt)))
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "exponent type %s is not supported",
                         veil_dtype_name(b->dt));
    if ((rc = bin_attr_kind(c, a->dt, &k)) != VEIL_OK)
        return rc;
    c->kp->binary.kind = k;
    rc = veil__engine_broadcast(a, b, &out->rank, out->dims, c->eb);
    if (rc == VEIL_OK && k == B_PRELU &&
        (out->rank != a->rank || memcmp(out->dims, a->dims, a->rank * sizeof(int64_t)) != 0))
        return veil_errf(c->eb, VEIL_E_INVALID,
                         "slope does not broadcast to the input's shape (unidirectionally)");
    out->dt = bin_is_bool(k) ? VEIL_DT_BOOL : a->dt;
    return rc;
}

/*
 * out = a (op k) b, or the three-operand Where, or a broadcast copy of a (B_EXPAND), over
 * out's shape, to which every operand broadcasts. out may be operand a itself.
 */
static void bin_run(int k, const struct veil__engine_tv *a, const struct veil__engine_tv *b,
                    const struct veil__engine_tv *cc, struct veil__engine_tv *out)
{
    struct bin_job j;
    const struct veil__engine_tv *ops[3] = {a, b, cc};
    size_t n_ops = k == B_WHERE ? 3 : k == B_EXPAND ? 1 : 2;
    if (out->numel == 0)
        return;
    bcast_make(&j.b, ops, n_ops, out);
    j.a = a;
    j.bb = b != NULL ? b : a;
    j.cc = cc != NULL ? cc : a;
    j.out = out;
    j.kind = k;
    uint64_t len = (uint64_t)j.b.dims[j.b.r - 1];
    uint64_t rows = out->numel / len;
    uint64_t grain = len >= 16384 ? 1 : 16384 / len;
    veil__engine_parallel(rows, grain, bin_range, &j);
}

/*
 * A channel-blocked map ([N][Cp/B][H][W][B], see veil__engine_mul_prepare) times one value per
 * (batch, channel) or per channel, as kp->binary.mulblk describes it: the product stays
 * blocked (padding channels written as 0, as oneDNN expects) or is written row-major.
 */
struct mulblk_job {
    const float *x, *s;
    float *y;
    int64_t n_cb, block, cp, c, hw, sn, sc, sns;
    bool blocked;
};

static void mulblk_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct mulblk_job *j = ud;
    for (uint64_t t = lo; t < hi; t++) {
        int64_t n = (int64_t)t / j->n_cb, cb = (int64_t)t % j->n_cb;
        float sv[64];
        for (int64_t k = 0; k < j->block; k++) {
            int64_t ch = cb * j->block + k;
            sv[k] = ch < j->c ? j->s[(j->sn > 1 ? n : 0) * j->sns + (j->sc > 1 ? ch : 0)] : 0.0f;
        }
        const float *x = j->x + (uint64_t)t * (uint64_t)(j->hw * j->block);
        if (j->blocked) {
            float *y = j->y + (uint64_t)t * (uint64_t)(j->hw * j->block);
            for (int64_t p = 0; p < j->hw; p++)
                for (int64_t k = 0; k < j->block; k++)
                    y[p * j->block + k] = x[p * j->block + k] * sv[k];
            continue;
        }
        for (int64_t k = 0; k < j->block && cb * j->block + k < j->c; k++) {
            float *y = j->y + (uint64_t)(n * j->c + cb * j->block + k) * (uint64_t)j->hw;
            for (int64_t p = 0; p < j->hw; p++)
                y[p] = x[p * j->block + k] * sv[k];
        }
    }
}

veil_err veil__engine_binary_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp)
{
    const struct veil__engine_kp_binary *bp = &kp->binary;
    if (bp->mulblk.on) {
        const struct veil__engine_tv *x = &c->in[bp->mulblk.map], *s = &c->in[1 - bp->mulblk.map];
        struct mulblk_job j = {.x = x->data,
                               .s = s->data,
                               .y = c->out[0].data,
                               .n_cb = bp->mulblk.padded_channels / bp->mulblk.block,
                               .block = bp->mulblk.block,
                               .cp = bp->mulblk.padded_channels,
                               .c = x->dims[1],
                               .hw = x->dims[2] * x->dims[3],
                               .sn = bp->mulblk.scale_n,
                               .sc = bp->mulblk.scale_c,
                               .sns = bp->mulblk.scale_n_stride,
                               .blocked = bp->mulblk.blocked_out};
        if (j.block > 64)
            return veil_errf(c->eb, VEIL_E_INTERNAL, "channel block %lld", (long long)j.block);
        veil__engine_parallel((uint64_t)(x->dims[0] * j.n_cb), 1, mulblk_range, &j);
        return VEIL_OK;
    }
    bin_run((int)bp->kind, &c->in[0], &c->in[1], &c->in[2], &c->out[0]);
    return VEIL_OK;
}

/* ---- Variadic Max, Min, Sum, Mean ---- */

veil_err veil__engine_variadic_infer(struct veil__engine_ictx *c)
{
    const char *op = c->n->op_type;
    bool mean = strcmp(op, "Mean") == 0, ints = strcmp(op, "Max") == 0 || strcmp(op, "Min") == 0;
    int k = strcmp(op, "Max") == 0 ? B_MAX : strcmp(op, "Min") == 0 ? B_MIN : B_ADD;
    if (c->n_in < 1 || c->n_out < 1 || c->n->out[0] < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "needs at least one input and its output");
    enum veil_dtype dt = c->in[0].dt;
    if (!(veil__engine_dt_is_float(dt) || (ints && veil__engine_dt_is_int(dt))))
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "input type %s is not supported",
                         veil_dtype_name(dt));
    struct veil__engine_tv acc = c->in[0];
    for (size_t i = 0; i < c->n_in; i++) {
        if (c->n->in[i] < 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "input %zu is missing", i);
        if (c->in[i].dt != dt)
            return veil_errf(c->eb, VEIL_E_INVALID, "input types differ: %s and %s",
                             veil_dtype_name(dt), veil_dtype_name(c->in[i].dt));
        struct veil__engine_tv prev = acc;
        veil_err rc = veil__engine_broadcast(&prev, &c->in[i], &acc.rank, acc.dims, c->eb);
        if (rc != VEIL_OK)
            return rc;
    }
    c->out[0] = acc;
    c->out[0].dt = dt;
    c->kp->variadic.kind = k;
    c->kp->variadic.mean = mean;
    return VEIL_OK;
}

veil_err veil__engine_variadic_exec(struct veil__engine_kctx *c,
                                    const struct veil__engine_kparams *kp)
{
    struct veil__engine_tv *out = &c->out[0];
    int k = (int)kp->variadic.kind;
    if (c->n_in == 1)
        bin_run(B_EXPAND, &c->in[0], NULL, NULL, out);
    else
        bin_run(k, &c->in[0], &c->in[1], NULL, out);
    for (size_t i = 2; i < c->n_in; i++)
        bin_run(k, out, &c->in[i], NULL, out);
    if (kp->variadic.mean) {
        float nf = (float)c->n_in;
        double nd = (double)c->n_in;
        struct veil__engine_tv cnt = {
            out->dt, 0, {0}, 1, out->dt == VEIL_DT_FLOAT ? (void *)&nf : &nd};
        bin_run(B_DIV, out, &cnt, NULL, out);
    }
    return VEIL_OK;
}

/* ---- Cast ---- */

/*
 * Cast converts to its attribute `to`; CastLike to the element type the model gives its input
 * 1. The engine holds float16 and bfloat16 values as float: a Cast to either type writes
 * float, and where it rounds, and whether it rounds a 16-bit input first, is decided while
 * planning (ops/half.c, veil__engine_half_plan_node, in kp->cast).
 */
veil_err veil__engine_cast_infer(struct veil__engine_ictx *c)
{
    int64_t to;
    if (strcmp(c->n->op_type, "CastLike") == 0) {
        if (c->n_in < 2 || c->n->in[1] < 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "missing input 1 (the target type)");
        to = (int64_t)c->vals[c->n->in[1]].ldt;
    } else {
        to = veil__engine_attr_i(c->n, "to", 0);
    }
    if (to <= 0 || to > 255 || veil_dtype_size((enum veil_dtype)to) == 0)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "cast to %s (type %lld) is not supported",
                         veil_dtype_name((enum veil_dtype)to), (long long)to);
    if (veil_dtype_size(c->in[0].dt) == 0)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "cast from %s is not supported",
                         veil_dtype_name(c->in[0].dt));
    c->out[0] = c->in[0];
    c->out[0].dt =
        veil__engine_dt_is_half((enum veil_dtype)to) ? VEIL_DT_FLOAT : (enum veil_dtype)to;
    c->kp->cast.to_half = VEIL_DT_UNDEFINED;
    c->kp->cast.from_half = VEIL_DT_UNDEFINED;
    return VEIL_OK;
}

struct cast_job {
    const struct veil__engine_tv *in;
    struct veil__engine_tv *out;
    enum veil_dtype to_half, from_half; /* VEIL_DT_UNDEFINED for no rounding */
};

#define CAST_BLOCK 1024

static void cast_range(void *ud, uint64_t lo, uint64_t hi)
{
    struct cast_job *j = ud;
    enum veil_dtype from = j->in->dt, to = j->out->dt;
    if (from == VEIL_DT_FLOAT &&
        (j->from_half != VEIL_DT_UNDEFINED || j->to_half != VEIL_DT_UNDEFINED)) {
        /* Rounded block by block, on the stack unless the output is float too. */
        for (uint64_t b = lo; b < hi; b += CAST_BLOCK) {
            size_t n = (size_t)(hi - b < CAST_BLOCK ? hi - b : CAST_BLOCK);
            float tmp[CAST_BLOCK];
            float *y = to == VEIL_DT_FLOAT ? (float *)j->out->data + b : tmp;
            const float *x = (const float *)j->in->data + b;
            if (j->from_half != VEIL_DT_UNDEFINED) {
                veil__engine_half_round(j->from_half, x, y, n);
                x = y;
            }
            if (j->to_half != VEIL_DT_UNDEFINED)
                veil__engine_half_round(j->to_half, x, y, n);
            else if (x != y)
                memcpy(y, x, n * sizeof(float));
            if (y == tmp) {
                struct veil__engine_tv t = {VEIL_DT_FLOAT, 1, {(int64_t)n}, n, tmp};
                for (size_t i = 0; i < n; i++)
                    veil__engine_set_f64(j->out, b + i, veil__engine_get_f64(&t, i));
            }
        }
        return;
    }
    if (j->to_half != VEIL_DT_UNDEFINED) {
        /* From a double or an integer: one rounding from the exact value. */
        float *y = (float *)j->out->data;
        for (uint64_t i = lo; i < hi; i++) {
            double v = from == VEIL_DT_UINT64 ? (double)((const uint64_t *)j->in->data)[i]
                                              : veil__engine_get_f64(j->in, i);
            y[i] = veil_half_to_float(j->to_half, veil_half_from_double(j->to_half, v));
        }
        return;
    }
    if (from == to) {
        size_t es = veil_dtype_size(from);
        memcpy((uint8_t *)j->out->data + lo * es, (const uint8_t *)j->in->data + lo * es,
               (hi - lo) * es);
        return;
    }
    for (uint64_t i = lo; i < hi; i++) {
        if (veil__engine_dt_is_float(from))
            veil__engine_set_f64(j->out, i, veil__engine_get_f64(j->in, i));
        else if (from == VEIL_DT_UINT64 && veil__engine_dt_is_float(to))
            veil__engine_set_f64(j->out, i, (double)((const uint64_t *)j->in->data)[i]);
        else
            veil__engine_set_i64(j->out, i, veil__engine_get_i64(j->in, i));
    }
}

veil_err veil__engine_cast_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    struct cast_job j = {&c->in[0], &c->out[0], (enum veil_dtype)kp->cast.to_half,
                         (enum veil_dtype)kp->cast.from_half};
    veil__engine_parallel(c->out[0].numel, 16384, cast_range, &j);
    return VEIL_OK;
}
