/*
 * Element-wise operators in plain C: unary math, binary arithmetic and comparisons with
 * NumPy-style broadcasting, Where, Cast. Broadcasting collapses adjacent dimensions that
 * broadcast alike, so the inner loop runs over the longest contiguous row; rows are spread
 * over the run's threads. Integer division by zero yields 0 instead of trapping, and float to
 * integer conversions saturate, so hostile data cannot crash a run.
 */
#include "engine_int.h"

#include <math.h>
#include <omp.h>
#include <string.h>

void veil__parallel(uint64_t n, uint64_t grain, veil__range_fn fn, void *ud)
{
    int nt = omp_get_max_threads();
    if (n <= grain || nt <= 1 || omp_in_parallel()) {
        if (n > 0)
            fn(ud, 0, n);
        return;
    }
    uint64_t chunks = n / grain;
    if (chunks < (uint64_t)nt)
        nt = (int)chunks;
#pragma omp parallel num_threads(nt)
    {
        uint64_t t = (uint64_t)omp_get_thread_num(), tn = (uint64_t)omp_get_num_threads();
        uint64_t lo = n * t / tn, hi = n * (t + 1) / tn;
        if (lo < hi)
            fn(ud, lo, hi);
    }
}

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
    U_NOT,
    U_COPY,
};

struct un_job {
    const struct veil__tv *in;
    struct veil__tv *out;
    int kind;
    float a, b;
};

static inline float un_f(int kind, float x, float a, float b)
{
    switch (kind) {
    case U_RELU:
        return x > 0.0f ? x : 0.0f;
    case U_LEAKY:
        return x >= 0.0f ? x : x * a;
    case U_CLIP:
        return x < a ? a : (x > b ? b : x);
    case U_SIGMOID:
        return 1.0f / (1.0f + expf(-x));
    case U_TANH:
        return tanhf(x);
    case U_ERF:
        return erff(x);
    case U_GELU:
        return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case U_GELU_TANH:
        return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case U_SQRT:
        return sqrtf(x);
    case U_EXP:
        return expf(x);
    case U_LOG:
        return logf(x);
    case U_NEG:
        return -x;
    case U_ABS:
        return fabsf(x);
    case U_RECIP:
        return 1.0f / x;
    default:
        return x;
    }
}

static inline double un_d(int kind, double x, double a, double b)
{
    switch (kind) {
    case U_RELU:
        return x > 0.0 ? x : 0.0;
    case U_LEAKY:
        return x >= 0.0 ? x : x * a;
    case U_CLIP:
        return x < a ? a : (x > b ? b : x);
    case U_SIGMOID:
        return 1.0 / (1.0 + exp(-x));
    case U_TANH:
        return tanh(x);
    case U_ERF:
        return erf(x);
    case U_GELU:
        return 0.5 * x * (1.0 + erf(x * 0.70710678118654752));
    case U_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    case U_SQRT:
        return sqrt(x);
    case U_EXP:
        return exp(x);
    case U_LOG:
        return log(x);
    case U_NEG:
        return -x;
    case U_ABS:
        return fabs(x);
    case U_RECIP:
        return 1.0 / x;
    default:
        return x;
    }
}

static void un_range(void *ud, uint64_t lo, uint64_t hi)
{
    struct un_job *j = ud;
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
    bool is_int = j->in->dt != VEIL_DT_DOUBLE;
    for (uint64_t i = lo; i < hi; i++) {
        if (is_int) {
            int64_t v = veil__get_i64(j->in, i);
            if (j->kind == U_NEG)
                v = (int64_t)(0ull - (uint64_t)v);
            else if (j->kind == U_ABS)
                v = v < 0 ? (int64_t)(0ull - (uint64_t)v) : v;
            else if (j->kind == U_RELU)
                v = v > 0 ? v : 0;
            else if (j->kind == U_CLIP)
                v = (double)v < j->a ? (int64_t)j->a : ((double)v > j->b ? (int64_t)j->b : v);
            veil__set_i64(j->out, i, v);
        } else {
            veil__set_f64(j->out, i, un_d(j->kind, veil__get_f64(j->in, i), j->a, j->b));
        }
    }
}

static int unary_kind_of(const char *op)
{
    static const struct {
        const char *name;
        int kind;
    } map[] = {{"Relu", U_RELU},        {"LeakyRelu", U_LEAKY}, {"Clip", U_CLIP},
               {"Sigmoid", U_SIGMOID},  {"Tanh", U_TANH},       {"Erf", U_ERF},
               {"Gelu", U_GELU},        {"Sqrt", U_SQRT},       {"Exp", U_EXP},
               {"Log", U_LOG},          {"Neg", U_NEG},         {"Abs", U_ABS},
               {"Reciprocal", U_RECIP}, {"Not", U_NOT},         {"Identity", U_COPY},
               {"Dropout", U_COPY}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i].name, op) == 0)
            return map[i].kind;
    return -1;
}

static bool is_float_dt(enum veil_dtype dt)
{
    return dt == VEIL_DT_FLOAT || dt == VEIL_DT_DOUBLE;
}

static bool is_int_dt(enum veil_dtype dt)
{
    switch (dt) {
    case VEIL_DT_INT8:
    case VEIL_DT_INT16:
    case VEIL_DT_INT32:
    case VEIL_DT_INT64:
    case VEIL_DT_UINT8:
    case VEIL_DT_UINT16:
    case VEIL_DT_UINT32:
    case VEIL_DT_UINT64:
        return true;
    default:
        return false;
    }
}

static veil_err unary_infer(struct veil__ictx *c)
{
    const struct veil__node *n = c->n;
    int kind = unary_kind_of(n->op_type);
    if (c->n_in < 1 || n->in[0] < 0 || c->n_out < 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "missing input or output");
    enum veil_dtype dt = c->in[0].dt;
    bool ok;
    if (kind == U_NOT)
        ok = dt == VEIL_DT_BOOL;
    else if (kind == U_COPY)
        ok = veil_dtype_size(dt) > 0;
    else if (kind == U_NEG || kind == U_ABS || kind == U_RELU || kind == U_CLIP)
        ok = is_float_dt(dt) || is_int_dt(dt);
    else
        ok = is_float_dt(dt);
    if (!ok)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "input type %s is not supported",
                         veil_dtype_name(dt));
    c->kp->i[0] = kind;
    c->kp->f[0] = 0.0f;
    c->kp->f[1] = 0.0f;
    if (kind == U_LEAKY) {
        c->kp->f[0] = veil__attr_f(n, "alpha", 0.01f);
    } else if (kind == U_GELU) {
        const char *ap = veil__attr_s(n, "approximate", "none");
        if (strcmp(ap, "tanh") == 0)
            c->kp->i[0] = U_GELU_TANH;
        else if (strcmp(ap, "none") != 0)
            return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "approximate='%s'", ap);
    } else if (kind == U_CLIP) {
        for (size_t k = 1; k < 3 && k < c->n_in; k++)
            if (n->in[k] >= 0 && (c->in[k].numel != 1 || c->in[k].dt != dt))
                return veil_errf(c->eb, VEIL_E_INVALID,
                                 "min and max must be scalars of the "
                                 "input's type");
    } else if (kind == U_COPY && strcmp(n->op_type, "Dropout") == 0) {
        if (c->n_in > 2 && n->in[2] >= 0 &&
            (c->in[2].data == NULL || veil__get_i64(&c->in[2], 0) != 0))
            return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "training mode is not supported");
        if (c->n_out > 1 && n->out[1] >= 0) {
            c->out[1] = c->in[0];
            c->out[1].dt = VEIL_DT_BOOL;
        }
    }
    c->out[0] = c->in[0];
    if (kind == U_NOT)
        c->out[0].dt = VEIL_DT_BOOL;
    return VEIL_OK;
}

static veil_err unary_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    struct un_job j = {&c->in[0], &c->out[0], (int)kp->i[0], kp->f[0], kp->f[1]};
    if (j.kind == U_CLIP) {
        /* Bounds are read here, so they may be computed at run time. */
        bool is_int = is_int_dt(c->in[0].dt);
        j.a = is_int ? -9.2e18f : -INFINITY;
        j.b = is_int ? 9.2e18f : INFINITY;
        if (c->n_in > 1 && c->n->in[1] >= 0)
            j.a = (float)veil__get_f64(&c->in[1], 0);
        if (c->n_in > 2 && c->n->in[2] >= 0)
            j.b = (float)veil__get_f64(&c->in[2], 0);
    }
    if (j.kind == U_COPY) {
        if (c->out[0].data != c->in[0].data && c->in[0].numel > 0)
            memcpy(c->out[0].data, c->in[0].data, c->in[0].numel * veil_dtype_size(c->in[0].dt));
        if (c->n_out > 1 && c->n->out[1] >= 0 && c->out[1].numel > 0)
            memset(c->out[1].data, 1, c->out[1].numel);
        return VEIL_OK;
    }
    veil__parallel(c->out[0].numel, 16384, un_range, &j);
    return VEIL_OK;
}

/* ---- Broadcasting machinery (up to 3 operands) ---- */

struct bcast {
    size_t r;
    int64_t dims[VEIL__ENG_RANK];
    int64_t st[3][VEIL__ENG_RANK]; /* element strides, 0 where broadcast */
    size_t n_ops;
};

static void bcast_make(struct bcast *b, const struct veil__tv *const *ops, size_t n_ops,
                       const struct veil__tv *out)
{
    size_t r = out->rank;
    int64_t st[3][VEIL__ENG_RANK];
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

enum bin_kind {
    B_ADD,
    B_SUB,
    B_MUL,
    B_DIV,
    B_POW,
    B_EQ,
    B_GT,
    B_LT,
    B_AND,
    B_MAX,
    B_MIN,
    B_WHERE,
    B_EXPAND
};

struct bin_job {
    struct bcast b;
    const struct veil__tv *a, *bb, *cc;
    struct veil__tv *out;
    int kind;
};

static inline float bin_f(int k, float x, float y)
{
    switch (k) {
    case B_ADD:
        return x + y;
    case B_SUB:
        return x - y;
    case B_MUL:
        return x * y;
    case B_DIV:
        return x / y;
    case B_POW:
        return powf(x, y);
    case B_MAX:
        return x > y ? x : y;
    case B_MIN:
        return x < y ? x : y;
    default:
        return 0.0f;
    }
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
    default:
        return 0;
    }
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
        if (j->a->dt == VEIL_DT_FLOAT && j->bb->dt == VEIL_DT_FLOAT && k <= B_MIN && k != B_EQ &&
            k != B_GT && k != B_LT && k != B_AND) {
            const float *x = (const float *)j->a->data + offs[0];
            const float *y = (const float *)j->bb->data + offs[1];
            float *o = (float *)j->out->data + o0;
            if (sa == 1 && sb == 1 && k == B_ADD) {
                for (int64_t i = 0; i < len; i++)
                    o[i] = x[i] + y[i];
            } else if (sa == 1 && sb == 0 && k == B_ADD) {
                float yv = y[0];
                for (int64_t i = 0; i < len; i++)
                    o[i] = x[i] + yv;
            } else if (sa == 1 && sb == 1 && k == B_MUL) {
                for (int64_t i = 0; i < len; i++)
                    o[i] = x[i] * y[i];
            } else if (sa == 1 && sb == 0 && k == B_MUL) {
                float yv = y[0];
                for (int64_t i = 0; i < len; i++)
                    o[i] = x[i] * yv;
            } else {
                for (int64_t i = 0; i < len; i++)
                    o[i] = bin_f(k, x[i * sa], y[i * sb]);
            }
            continue;
        }
        struct veil__tv at = *j->a, bt = *j->bb;
        bool fl = is_float_dt(at.dt) || is_float_dt(bt.dt);
        for (int64_t i = 0; i < len; i++) {
            uint64_t ia = (uint64_t)(offs[0] + i * sa), ib = (uint64_t)(offs[1] + i * sb);
            uint64_t io = o0 + (uint64_t)i;
            if (k == B_EQ || k == B_GT || k == B_LT || k == B_AND) {
                bool r;
                if (k == B_AND) {
                    r = veil__get_i64(&at, ia) && veil__get_i64(&bt, ib);
                } else if (fl) {
                    double x = veil__get_f64(&at, ia), y = veil__get_f64(&bt, ib);
                    r = k == B_EQ ? x == y : k == B_GT ? x > y : x < y;
                } else if (at.dt == VEIL_DT_UINT64) {
                    uint64_t x = ((const uint64_t *)at.data)[ia],
                             y = ((const uint64_t *)bt.data)[ib];
                    r = k == B_EQ ? x == y : k == B_GT ? x > y : x < y;
                } else {
                    int64_t x = veil__get_i64(&at, ia), y = veil__get_i64(&bt, ib);
                    r = k == B_EQ ? x == y : k == B_GT ? x > y : x < y;
                }
                ((uint8_t *)j->out->data)[io] = r;
            } else if (k == B_POW || fl) {
                double x = veil__get_f64(&at, ia), y = veil__get_f64(&bt, ib);
                double r;
                switch (k) {
                case B_ADD:
                    r = x + y;
                    break;
                case B_SUB:
                    r = x - y;
                    break;
                case B_MUL:
                    r = x * y;
                    break;
                case B_DIV:
                    r = x / y;
                    break;
                case B_POW:
                    r = pow(x, y);
                    break;
                case B_MAX:
                    r = x > y ? x : y;
                    break;
                default:
                    r = x < y ? x : y;
                    break;
                }
                if (j->out->dt == VEIL_DT_FLOAT)
                    ((float *)j->out->data)[io] = (float)r;
                else
                    veil__set_f64(j->out, io, r);
            } else if (at.dt == VEIL_DT_UINT64 || at.dt == VEIL_DT_UINT32) {
                uint64_t x = at.dt == VEIL_DT_UINT64 ? ((const uint64_t *)at.data)[ia]
                                                     : ((const uint32_t *)at.data)[ia];
                uint64_t y = at.dt == VEIL_DT_UINT64 ? ((const uint64_t *)bt.data)[ib]
                                                     : ((const uint32_t *)bt.data)[ib];
                uint64_t r;
                switch (k) {
                case B_ADD:
                    r = x + y;
                    break;
                case B_SUB:
                    r = x - y;
                    break;
                case B_MUL:
                    r = x * y;
                    break;
                case B_DIV:
                    r = y ? x / y : 0;
                    break;
                case B_MAX:
                    r = x > y ? x : y;
                    break;
                default:
                    r = x < y ? x : y;
                    break;
                }
                if (at.dt == VEIL_DT_UINT64)
                    ((uint64_t *)j->out->data)[io] = r;
                else
                    ((uint32_t *)j->out->data)[io] = (uint32_t)r;
            } else {
                veil__set_i64(j->out, io, bin_i(k, veil__get_i64(&at, ia), veil__get_i64(&bt, ib)));
            }
        }
    }
}

static int bin_kind_of(const char *op)
{
    static const struct {
        const char *name;
        int kind;
    } map[] = {{"Add", B_ADD},      {"Sub", B_SUB},  {"Mul", B_MUL},    {"Div", B_DIV},
               {"Pow", B_POW},      {"Equal", B_EQ}, {"Greater", B_GT}, {"Less", B_LT},
               {"And", B_AND},      {"Max", B_MAX},  {"Min", B_MIN},    {"Where", B_WHERE},
               {"Expand", B_EXPAND}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i].name, op) == 0)
            return map[i].kind;
    return -1;
}

static veil_err binary_infer(struct veil__ictx *c)
{
    int k = bin_kind_of(c->n->op_type);
    c->kp->i[0] = k;
    for (size_t i = 0; i < (k == B_WHERE ? 3u : 2u); i++)
        if (i >= c->n_in || c->n->in[i] < 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "missing input %zu", i);
    if (c->n_out < 1 || c->n->out[0] < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "missing output");
    struct veil__tv *a = &c->in[0], *b = &c->in[1];
    struct veil__tv *out = &c->out[0];
    veil_err rc;
    if (k == B_EXPAND) {
        struct veil__tv shp = {VEIL_DT_INT64, 1, {0}, 0, NULL};
        if (b->dt != VEIL_DT_INT64 || b->rank != 1 || b->numel > VEIL__ENG_RANK)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "shape must be a 1-D int64 tensor of at most "
                             "%d values",
                             VEIL__ENG_RANK);
        shp.rank = (size_t)b->numel;
        for (size_t i = 0; i < shp.rank; i++) {
            shp.dims[i] = veil__get_i64(b, i);
            if (shp.dims[i] < 0)
                return veil_errf(c->eb, VEIL_E_INVALID, "negative dimension in shape");
        }
        rc = veil__broadcast(a, &shp, &out->rank, out->dims, c->eb);
        out->dt = a->dt;
        return rc;
    }
    if (k == B_WHERE) {
        struct veil__tv tmp;
        if (a->dt != VEIL_DT_BOOL || b->dt != c->in[2].dt)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "Where needs a bool condition and two inputs "
                             "of one type");
        if ((rc = veil__broadcast(a, b, &tmp.rank, tmp.dims, c->eb)) != VEIL_OK)
            return rc;
        rc = veil__broadcast(&tmp, &c->in[2], &out->rank, out->dims, c->eb);
        out->dt = b->dt;
        return rc;
    }
    if (k != B_POW && a->dt != b->dt)
        return veil_errf(c->eb, VEIL_E_INVALID, "input types differ: %s and %s",
                         veil_dtype_name(a->dt), veil_dtype_name(b->dt));
    if (k == B_AND
            ? a->dt != VEIL_DT_BOOL
            : !(is_float_dt(a->dt) || is_int_dt(a->dt) || (k == B_EQ && a->dt == VEIL_DT_BOOL)))
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "input type %s is not supported",
                         veil_dtype_name(a->dt));
    if (k == B_POW && !(is_float_dt(b->dt) || is_int_dt(b->dt)))
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "exponent type %s is not supported",
                         veil_dtype_name(b->dt));
    rc = veil__broadcast(a, b, &out->rank, out->dims, c->eb);
    out->dt = (k == B_EQ || k == B_GT || k == B_LT || k == B_AND) ? VEIL_DT_BOOL : a->dt;
    return rc;
}

static veil_err binary_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    struct bin_job j;
    int k = (int)kp->i[0];
    const struct veil__tv *ops[3] = {&c->in[0], &c->in[1], &c->in[2]};
    size_t n_ops = k == B_WHERE ? 3 : k == B_EXPAND ? 1 : 2;
    if (c->out[0].numel == 0)
        return VEIL_OK;
    bcast_make(&j.b, ops, n_ops, &c->out[0]);
    j.a = &c->in[0];
    j.bb = &c->in[1];
    j.cc = &c->in[2];
    j.out = &c->out[0];
    j.kind = k;
    uint64_t len = (uint64_t)j.b.dims[j.b.r - 1];
    uint64_t rows = c->out[0].numel / len;
    uint64_t grain = len >= 16384 ? 1 : 16384 / len;
    veil__parallel(rows, grain, bin_range, &j);
    return VEIL_OK;
}

/* ---- Cast ---- */

static veil_err cast_infer(struct veil__ictx *c)
{
    int64_t to = veil__attr_i(c->n, "to", 0);
    if (veil_dtype_size((enum veil_dtype)to) == 0 || to == VEIL_DT_FLOAT16)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "cast to %s is not supported",
                         veil_dtype_name((enum veil_dtype)to));
    if (veil_dtype_size(c->in[0].dt) == 0 || c->in[0].dt == VEIL_DT_FLOAT16)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "cast from %s is not supported",
                         veil_dtype_name(c->in[0].dt));
    c->out[0] = c->in[0];
    c->out[0].dt = (enum veil_dtype)to;
    return VEIL_OK;
}

struct cast_job {
    const struct veil__tv *in;
    struct veil__tv *out;
};

static void cast_range(void *ud, uint64_t lo, uint64_t hi)
{
    struct cast_job *j = ud;
    enum veil_dtype from = j->in->dt, to = j->out->dt;
    if (from == to) {
        size_t es = veil_dtype_size(from);
        memcpy((uint8_t *)j->out->data + lo * es, (const uint8_t *)j->in->data + lo * es,
               (hi - lo) * es);
        return;
    }
    for (uint64_t i = lo; i < hi; i++) {
        if (is_float_dt(from))
            veil__set_f64(j->out, i, veil__get_f64(j->in, i));
        else if (from == VEIL_DT_UINT64 && is_float_dt(to))
            veil__set_f64(j->out, i, (double)((const uint64_t *)j->in->data)[i]);
        else
            veil__set_i64(j->out, i, veil__get_i64(j->in, i));
    }
}

static veil_err cast_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    (void)kp;
    struct cast_job j = {&c->in[0], &c->out[0]};
    veil__parallel(c->out[0].numel, 16384, cast_range, &j);
    return VEIL_OK;
}

const struct veil__op_def veil__ops_elem[] = {
    {"Relu", unary_infer, NULL, unary_exec, 0, false, false},
    {"LeakyRelu", unary_infer, NULL, unary_exec, 0, false, false},
    {"Clip", unary_infer, NULL, unary_exec, 0, false, false},
    {"Sigmoid", unary_infer, NULL, unary_exec, 0, false, false},
    {"Tanh", unary_infer, NULL, unary_exec, 0, false, false},
    {"Erf", unary_infer, NULL, unary_exec, 0, false, false},
    {"Gelu", unary_infer, NULL, unary_exec, 0, false, false},
    {"Sqrt", unary_infer, NULL, unary_exec, 0, false, false},
    {"Exp", unary_infer, NULL, unary_exec, 0, false, false},
    {"Log", unary_infer, NULL, unary_exec, 0, false, false},
    {"Neg", unary_infer, NULL, unary_exec, 0, false, false},
    {"Abs", unary_infer, NULL, unary_exec, 0, false, false},
    {"Reciprocal", unary_infer, NULL, unary_exec, 0, false, false},
    {"Not", unary_infer, NULL, unary_exec, 0, false, false},
    {"Identity", unary_infer, NULL, unary_exec, 0, true, false},
    {"Dropout", unary_infer, NULL, unary_exec, 0x6, false, false},
    {"Add", binary_infer, NULL, binary_exec, 0, false, false},
    {"Sub", binary_infer, NULL, binary_exec, 0, false, false},
    {"Mul", binary_infer, NULL, binary_exec, 0, false, false},
    {"Div", binary_infer, NULL, binary_exec, 0, false, false},
    {"Pow", binary_infer, NULL, binary_exec, 0, false, false},
    {"Equal", binary_infer, NULL, binary_exec, 0, false, false},
    {"Greater", binary_infer, NULL, binary_exec, 0, false, false},
    {"Less", binary_infer, NULL, binary_exec, 0, false, false},
    {"And", binary_infer, NULL, binary_exec, 0, false, false},
    {"Where", binary_infer, NULL, binary_exec, 0, false, false},
    {"Expand", binary_infer, NULL, binary_exec, 0x2, false, false},
    {"Cast", cast_infer, NULL, cast_exec, 0, false, false},
};
const size_t veil__ops_elem_count = sizeof(veil__ops_elem) / sizeof(veil__ops_elem[0]);
