/*
 * Neural-network operators in plain C: reductions (ReduceMean, ReduceSum, ReduceMax, ReduceMin,
 * ReduceProd, ReduceL1, ReduceL2, ReduceLogSum, ReduceLogSumExp, ReduceSumSquare), Softmax,
 * LogSoftmax, Hardmax, LayerNormalization, InstanceNormalization, MeanVarianceNormalization,
 * LRN, ArgMax, ArgMin, TopK, BatchNormalization (inference form), GlobalAveragePool,
 * GlobalMaxPool, MaxPool and AveragePool. Most work on an [outer, axis, inner] view of the
 * input, so one loop shape serves every axis; accumulation is in double where a sum over a long
 * axis would otherwise lose precision.
 */
#include "engine_int.h"

#include <math.h>
#include <string.h>

static void split3(const struct veil__engine_tv *t, size_t ax, uint64_t *outer, uint64_t *len,
                   uint64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (size_t d = 0; d < ax; d++)
        *outer *= (uint64_t)t->dims[d];
    for (size_t d = ax + 1; d < t->rank; d++)
        *inner *= (uint64_t)t->dims[d];
    *len = t->rank > 0 ? (uint64_t)t->dims[ax] : 1;
}

static veil_err need_float(const struct veil__engine_ictx *c, size_t i)
{
    if (c->in[i].dt != VEIL_DT_FLOAT)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "input %zu of type %s (float is supported)", i,
                         veil_dtype_name(c->in[i].dt));
    return VEIL_OK;
}

/* ---- Reductions ---- */

enum { R_MEAN, R_SUM, R_MAX, R_MIN, R_PROD, R_L1, R_L2, R_LOGSUM, R_LSE, R_SUMSQ };

static const char *const k_reduce_ops[] = {
    [R_MEAN] = "ReduceMean",       [R_SUM] = "ReduceSum",       [R_MAX] = "ReduceMax",
    [R_MIN] = "ReduceMin",         [R_PROD] = "ReduceProd",     [R_L1] = "ReduceL1",
    [R_L2] = "ReduceL2",           [R_LOGSUM] = "ReduceLogSum", [R_LSE] = "ReduceLogSumExp",
    [R_SUMSQ] = "ReduceSumSquare",
};

veil_err veil__engine_reduce_infer(struct veil__engine_ictx *c)
{
    int kind = -1;
    for (size_t k = 0; k < sizeof(k_reduce_ops) / sizeof(k_reduce_ops[0]); k++)
        if (strcmp(c->n->op_type, k_reduce_ops[k]) == 0)
            kind = (int)k;
    if (kind < 0)
        return veil_errf(c->eb, VEIL_E_INTERNAL, "not a reduction");
    size_t r = c->in[0].rank;
    int64_t axes[VEIL__ENGINE_RANK];
    size_t na = 0;
    bool keep = veil__engine_attr_i(c->n, "keepdims", 1) != 0;
    bool noop_empty = veil__engine_attr_i(c->n, "noop_with_empty_axes", 0) != 0;
    if (c->in[0].dt != VEIL_DT_FLOAT && c->in[0].dt != VEIL_DT_DOUBLE &&
        c->in[0].dt != VEIL_DT_INT64 && c->in[0].dt != VEIL_DT_INT32)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "input type %s", veil_dtype_name(c->in[0].dt));
    /*
     * Axes are an input: ReduceSum's from opset 13, every reduction's from opset 18 (a
     * constant one was made the attribute when the graph was optimised, ir/opt.c).
     */
    bool axes_input = (kind == R_SUM && c->opset >= 13) || c->opset >= 18;
    if (axes_input && veil__engine_has_input(c, 1)) {
        if (c->in[1].numel > VEIL__ENGINE_RANK || c->in[1].dt != VEIL_DT_INT64)
            return veil_errf(c->eb, VEIL_E_INVALID, "bad axes");
        na = (size_t)c->in[1].numel;
        for (size_t i = 0; i < na; i++)
            axes[i] = veil__engine_get_i64(&c->in[1], i);
    } else if (!(kind == R_SUM && c->opset >= 13)) {
        const struct veil__engine_attr *a =
            veil__engine_attr_typed(c->n, "axes", VEIL_ONNX_ATTR_INTS);
        if (a != NULL) {
            if (a->n > VEIL__ENGINE_RANK)
                return veil_errf(c->eb, VEIL_E_INVALID, "too many axes");
            na = a->n;
            memcpy(axes, a->ints, na * sizeof(int64_t));
        }
    }
    bool red[VEIL__ENGINE_RANK] = {false};
    if (na == 0 && !noop_empty)
        for (size_t i = 0; i < r; i++)
            red[i] = true;
    for (size_t i = 0; i < na; i++) {
        size_t ax;
        veil_err rc = veil__engine_norm_axis(axes[i], r, &ax, c->eb);
        if (rc != VEIL_OK)
            return rc;
        red[ax] = true;
    }
    c->out[0].dt = c->in[0].dt;
    c->out[0].rank = 0;
    for (size_t i = 0; i < r; i++) {
        c->kp->reduce.reduced[i] = red[i];
        if (!red[i])
            c->out[0].dims[c->out[0].rank++] = c->in[0].dims[i];
        else if (keep)
            c->out[0].dims[c->out[0].rank++] = 1;
    }
    c->kp->reduce.kind = kind;
    return VEIL_OK;
}

/*
 * One reduction's arithmetic, shared by the vector and the element-by-element paths: the
 * accumulator's start (the value of an empty reduction before red_finish), one step, the
 * combination of two partial accumulators, and the result. ReduceLogSumExp accumulates
 * exp(v - shift), shift being the maximum of its set, so large inputs do not overflow.
 */
static double red_init(int kind)
{
    return kind == R_MAX ? -INFINITY : kind == R_MIN ? INFINITY : kind == R_PROD ? 1.0 : 0.0;
}

/* ReduceMax's and ReduceMin's steps: NaN wins. */
static double red_max(double acc, double v)
{
    return v > acc || isnan(v) ? v : acc;
}

static double red_min(double acc, double v)
{
    return v < acc || isnan(v) ? v : acc;
}

static inline double red_step(int kind, double acc, double v, double shift)
{
    switch (kind) {
    case R_MAX:
        return red_max(acc, v);
    case R_MIN:
        return red_min(acc, v);
    case R_PROD:
        return acc * v;
    case R_L1:
        return acc + fabs(v);
    case R_L2:
    case R_SUMSQ:
        return acc + v * v;
    case R_LSE:
        return acc + exp(v - shift);
    default:
        return acc + v;
    }
}

static double red_comb(int kind, double a, double b)
{
    return kind == R_MAX    ? red_max(a, b)
           : kind == R_MIN  ? red_min(a, b)
           : kind == R_PROD ? a * b
                            : a + b;
}

static double red_finish(int kind, double acc, uint64_t len, double shift)
{
    switch (kind) {
    case R_MEAN:
        return len ? acc / (double)len : NAN;
    case R_L2:
        return sqrt(acc);
    case R_LOGSUM:
        return log(acc);
    case R_LSE:
        /* An infinite or NaN maximum is the result (an empty set gives -inf, as log(0)). */
        return isfinite(shift) ? log(acc) + shift : shift;
    default:
        return acc;
    }
}

/*
 * Float reductions whose reduced axes are one contiguous block (ignoring axes of size 1): the
 * input is [outer, len, inner] and each output is a plain loop over len, in double lanes the
 * compiler vectorises. Units are (outer row, block of RED_BLOCK inner positions); an inner part
 * of at most RED_BLOCK is one block, summed over its whole contiguous slab.
 */
#define RED_BLOCK 64u

struct red_job {
    const float *x;
    float *y;
    uint64_t len, inner, blocks;
    int kind;
};

/* acc[i] = step(acc[i], x[i]) for i < n, with the kind fixed per loop so each vectorises. */
#define RED_LANES(K)                                                                               \
    for (uint64_t i = 0; i < n; i++)                                                               \
        acc[i] = red_step(K, acc[i], x[i], (K) == R_LSE ? shift[i] : 0.0);

static void red_lanes(int kind, double *acc, const float *x, uint64_t n, const double *shift)
{
    switch (kind) {
    case R_MAX:
        RED_LANES(R_MAX)
        break;
    case R_MIN:
        RED_LANES(R_MIN)
        break;
    case R_PROD:
        RED_LANES(R_PROD)
        break;
    case R_L1:
        RED_LANES(R_L1)
        break;
    case R_L2:
    case R_SUMSQ:
        RED_LANES(R_SUMSQ)
        break;
    case R_LSE:
        RED_LANES(R_LSE)
        break;
    default:
        RED_LANES(R_SUM)
        break;
    }
}

#undef RED_LANES

/*
 * A slab of total = len * inner contiguous floats reduced to inner results: accumulated in w
 * lanes (w a multiple of inner), lane l then folded into result l % inner. shift holds w
 * lanes (ReduceLogSumExp) or is NULL.
 */
static void red_slab(int kind, const float *x, uint64_t total, uint64_t inner, uint64_t w,
                     const double *shift, double *res)
{
    double acc[RED_BLOCK];
    uint64_t k = 0;
    for (uint64_t i = 0; i < w; i++)
        acc[i] = red_init(kind);
    for (; k + w <= total; k += w)
        red_lanes(kind, acc, x + k, w, shift);
    red_lanes(kind, acc, x + k, total - k, shift);
    for (uint64_t i = 0; i < inner; i++) {
        double r = acc[i];
        for (uint64_t l = i + inner; l < w; l += inner)
            r = red_comb(kind, r, acc[l]);
        res[i] = r;
    }
}

/* nb inner positions from b0 of a [len, inner] block reduced over len into res. */
static void red_cols(int kind, const float *x, uint64_t len, uint64_t inner, uint64_t b0,
                     uint64_t nb, const double *shift, double *res)
{
    for (uint64_t i = 0; i < nb; i++)
        res[i] = red_init(kind);
    for (uint64_t k = 0; k < len; k++)
        red_lanes(kind, res, x + k * inner + b0, nb, shift);
}

static void red_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct red_job *j = ud;
    double res[RED_BLOCK], mx[RED_BLOCK], shift[RED_BLOCK];
    bool lse = j->kind == R_LSE;
    for (uint64_t u = lo; u < hi; u++) {
        uint64_t o = u / j->blocks, b0 = (u % j->blocks) * RED_BLOCK;
        const float *x = j->x + o * j->len * j->inner;
        float *y = j->y + o * j->inner;
        if (j->inner <= RED_BLOCK) {
            uint64_t w = j->inner * (RED_BLOCK / j->inner), total = j->len * j->inner;
            if (lse) {
                red_slab(R_MAX, x, total, j->inner, w, NULL, mx);
                for (uint64_t i = 0; i < w; i++)
                    shift[i] = isfinite(mx[i % j->inner]) ? mx[i % j->inner] : 0.0;
            }
            red_slab(j->kind, x, total, j->inner, w, lse ? shift : NULL, res);
            for (uint64_t i = 0; i < j->inner; i++)
                y[i] = (float)red_finish(j->kind, res[i], j->len, lse ? mx[i] : 0.0);
            continue;
        }
        uint64_t nb = j->inner - b0 < RED_BLOCK ? j->inner - b0 : RED_BLOCK;
        if (lse) {
            red_cols(R_MAX, x, j->len, j->inner, b0, nb, NULL, mx);
            for (uint64_t i = 0; i < nb; i++)
                shift[i] = isfinite(mx[i]) ? mx[i] : 0.0;
        }
        red_cols(j->kind, x, j->len, j->inner, b0, nb, lse ? shift : NULL, res);
        for (uint64_t i = 0; i < nb; i++)
            y[b0 + i] = (float)red_finish(j->kind, res[i], j->len, lse ? mx[i] : 0.0);
    }
}

/* Takes the fast path when the input is float and its reduced axes are contiguous. */
static bool reduce_fast(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp,
                        int kind)
{
    const struct veil__engine_tv *t = &c->in[0];
    if (t->dt != VEIL_DT_FLOAT)
        return false;
    uint64_t outer = 1, len = 1, inner = 1;
    int phase = 0; /* 0: before the reduced block, 1: in it, 2: after it */
    for (size_t i = 0; i < t->rank; i++) {
        uint64_t d = (uint64_t)t->dims[i];
        if (d == 1)
            continue;
        if (kp->reduce.reduced[i] != 0) {
            if (phase == 2)
                return false;
            phase = 1;
            len *= d;
        } else {
            if (phase == 1)
                phase = 2;
            if (phase == 0)
                outer *= d;
            else
                inner *= d;
        }
    }
    if (c->out[0].numel == 0)
        return true;
    uint64_t blocks = (inner + RED_BLOCK - 1) / RED_BLOCK;
    struct red_job j = {t->data, c->out[0].data, len, inner, blocks, kind};
    uint64_t per_unit = len * (inner < RED_BLOCK ? inner : RED_BLOCK);
    uint64_t grain = per_unit >= 32768 ? 1 : 32768 / (per_unit ? per_unit : 1);
    veil__engine_parallel(outer * blocks, grain, red_range, &j);
    return true;
}

/*
 * A tensor split into kept and reduced axes (mask[i] != 0: axis i reduced): groups are the
 * kept positions, and a group's members are its rcount reduced positions. contig: every
 * group's members are contiguous (no kept axis of size > 1 after a reduced one).
 */
struct red_geom {
    size_t nk, nr;
    int64_t kdims[VEIL__ENGINE_RANK], kst[VEIL__ENGINE_RANK], rdims[VEIL__ENGINE_RANK],
        rst[VEIL__ENGINE_RANK];
    uint64_t rcount;
    bool contig;
};

static void red_geom_init(const struct veil__engine_tv *t, const int64_t *mask, struct red_geom *g)
{
    int64_t st[VEIL__ENGINE_RANK], s = 1;
    memset(g, 0, sizeof(*g));
    for (size_t i = t->rank; i-- > 0;) {
        st[i] = s;
        s *= t->dims[i];
    }
    g->rcount = 1;
    g->contig = true;
    bool seen_red = false;
    for (size_t i = 0; i < t->rank; i++) {
        if (mask[i]) {
            g->rdims[g->nr] = t->dims[i];
            g->rst[g->nr++] = st[i];
            g->rcount *= (uint64_t)t->dims[i];
            seen_red = true;
        } else {
            g->kdims[g->nk] = t->dims[i];
            g->kst[g->nk++] = st[i];
            if (seen_red && t->dims[i] != 1)
                g->contig = false;
        }
    }
}

/* Offset of group o's first member. */
static int64_t red_base(const struct red_geom *g, uint64_t o)
{
    int64_t base = 0;
    for (size_t i = g->nk; i-- > 0;) {
        base += (int64_t)(o % (uint64_t)g->kdims[i]) * g->kst[i];
        o /= (uint64_t)g->kdims[i];
    }
    return base;
}

/* Offset of member k of the group starting at base. */
static int64_t red_off(const struct red_geom *g, int64_t base, uint64_t k)
{
    if (g->contig)
        return base + (int64_t)k;
    for (size_t i = g->nr; i-- > 0;) {
        base += (int64_t)(k % (uint64_t)g->rdims[i]) * g->rst[i];
        k /= (uint64_t)g->rdims[i];
    }
    return base;
}

veil_err veil__engine_reduce_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp)
{
    int kind = (int)kp->reduce.kind;
    if (reduce_fast(c, kp, kind))
        return VEIL_OK;
    struct red_geom g;
    red_geom_init(&c->in[0], kp->reduce.reduced, &g);
    /* Integers accumulate exactly (wrapping) where the result is an integer of the same sums;
     * the norms and logarithms go through double and saturate back. */
    bool fl = c->in[0].dt == VEIL_DT_FLOAT || c->in[0].dt == VEIL_DT_DOUBLE || kind == R_L2 ||
              kind == R_LOGSUM || kind == R_LSE;
    for (uint64_t o = 0; o < c->out[0].numel; o++) {
        int64_t base = red_base(&g, o);
        if (fl) {
            double shift = 0.0, mx = -INFINITY;
            if (kind == R_LSE) {
                for (uint64_t k = 0; k < g.rcount; k++)
                    mx = red_max(mx,
                                 veil__engine_get_f64(&c->in[0], (uint64_t)red_off(&g, base, k)));
                shift = isfinite(mx) ? mx : 0.0;
            }
            double acc = red_init(kind);
            for (uint64_t k = 0; k < g.rcount; k++)
                acc = red_step(kind, acc,
                               veil__engine_get_f64(&c->in[0], (uint64_t)red_off(&g, base, k)),
                               shift);
            veil__engine_set_f64(&c->out[0], o, red_finish(kind, acc, g.rcount, mx));
            continue;
        }
        if (g.rcount == 0 && (kind == R_MAX || kind == R_MIN)) {
            /* The empty set's extreme is the type's lowest or highest value (saturated). */
            veil__engine_set_f64(&c->out[0], o, red_init(kind));
            continue;
        }
        uint64_t acc = kind == R_PROD ? 1 : 0;
        int64_t best = 0;
        for (uint64_t k = 0; k < g.rcount; k++) {
            int64_t v = veil__engine_get_i64(&c->in[0], (uint64_t)red_off(&g, base, k));
            switch (kind) {
            case R_MAX:
                best = k == 0 || v > best ? v : best;
                break;
            case R_MIN:
                best = k == 0 || v < best ? v : best;
                break;
            case R_PROD:
                acc *= (uint64_t)v;
                break;
            case R_L1:
                acc += v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
                break;
            case R_SUMSQ:
                acc += (uint64_t)v * (uint64_t)v;
                break;
            default:
                acc += (uint64_t)v;
                break;
            }
        }
        int64_t res = kind == R_MAX || kind == R_MIN ? best : (int64_t)acc;
        if (kind == R_MEAN)
            res = g.rcount ? res / (int64_t)g.rcount : 0;
        veil__engine_set_i64(&c->out[0], o, res);
    }
    return VEIL_OK;
}

/* ---- Softmax, LogSoftmax ---- */

struct sm_job {
    const float *x;
    float *y;
    uint64_t len, inner;
    bool log;
};

static void sm_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct sm_job *j = ud;
    for (uint64_t row = lo; row < hi; row++) {
        uint64_t o = row / j->inner, in = row % j->inner;
        const float *x = j->x + o * j->len * j->inner + in;
        float *y = j->y + o * j->len * j->inner + in;
        uint64_t s = j->inner;
        float mx = -INFINITY;
        for (uint64_t i = 0; i < j->len; i++)
            mx = x[i * s] > mx ? x[i * s] : mx;
        double sum = 0;
        for (uint64_t i = 0; i < j->len; i++) {
            float e = expf(x[i * s] - mx);
            sum += e;
            if (!j->log)
                y[i * s] = e;
        }
        if (j->log) {
            float ls = (float)log(sum);
            for (uint64_t i = 0; i < j->len; i++)
                y[i * s] = x[i * s] - mx - ls;
        } else {
            float inv = (float)(1.0 / sum);
            for (uint64_t i = 0; i < j->len; i++)
                y[i * s] *= inv;
        }
    }
}

veil_err veil__engine_softmax_infer(struct veil__engine_ictx *c)
{
    veil_err rc = need_float(c, 0);
    size_t ax;
    if (rc != VEIL_OK)
        return rc;
    int64_t def = c->opset >= 13 ? -1 : 1;
    c->out[0] = c->in[0];
    if (c->n->add_in >= 0) {
        /* Softmax(x + m) as the optimiser fuses it: the output has the broadcast shape. */
        if (c->add.dt != VEIL_DT_FLOAT || strcmp(c->n->op_type, "Softmax") != 0)
            return veil_errf(c->eb, VEIL_E_INTERNAL, "fused softmax addend");
        if ((rc = veil__engine_broadcast(&c->in[0], &c->add, &c->out[0].rank, c->out[0].dims,
                                         c->eb)) != VEIL_OK)
            return rc;
        c->out[0].numel = veil__engine_numel(c->out[0].dims, c->out[0].rank);
    }
    if (c->out[0].rank == 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "scalar input");
    if ((rc = veil__engine_norm_axis(veil__engine_attr_i(c->n, "axis", def), c->out[0].rank, &ax,
                                     c->eb)) != VEIL_OK)
        return rc;
    c->kp->axis.axis = (int64_t)ax;
    return VEIL_OK;
}

/*
 * Rows of a softmax over the last axis, y = softmax(x + a), where x and a broadcast to y's
 * shape (a may be absent): each operand is read through its broadcast strides, 0 along the
 * dimensions it repeats.
 */
struct smr_job {
    const float *x, *a;
    float *y;
    uint64_t len;
    size_t rank; /* of y, without the last axis */
    int64_t dims[VEIL__ENGINE_RANK];
    uint64_t xst[VEIL__ENGINE_RANK], ast[VEIL__ENGINE_RANK];
    size_t xs, as; /* last-axis strides: 0 or 1 */
    bool add_only; /* y = x + a only (the softmax then runs over another axis) */
};

static void smr_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct smr_job *j = ud;
    for (uint64_t row = lo; row < hi; row++) {
        uint64_t q = row, xo = 0, ao = 0;
        for (size_t d = j->rank; d-- > 0;) {
            uint64_t i = q % (uint64_t)j->dims[d];
            q /= (uint64_t)j->dims[d];
            xo += i * j->xst[d];
            ao += i * j->ast[d];
        }
        float *y = j->y + row * j->len;
        if (j->add_only) {
            for (uint64_t i = 0; i < j->len; i++)
                y[i] = j->x[xo + i * j->xs] + j->a[ao + i * j->as];
            continue;
        }
        veil__engine_softmax_row(j->x + xo, j->xs, j->a != NULL ? j->a + ao : NULL, j->as, y,
                                 (size_t)j->len);
    }
}

/* Broadcast strides of t (right-aligned to rank r + 1 dims of y) for the first r dims. */
static void bcast_strides(const struct veil__engine_tv *t, const int64_t *ydims, size_t r,
                          uint64_t *st, size_t *last)
{
    size_t tr = t->rank;
    uint64_t s = 1;
    for (size_t d = r + 1; d-- > 0;) {
        size_t k = d + tr; /* t's dim index + (r + 1) */
        bool has = k >= r + 1;
        int64_t n = has ? t->dims[k - (r + 1)] : 1;
        uint64_t stride = n == 1 && ydims[d] != 1 ? 0 : s;
        if (d == r)
            *last = stride != 0 ? 1 : 0;
        else
            st[d] = stride;
        s *= (uint64_t)n;
    }
}

veil_err veil__engine_softmax_exec(struct veil__engine_kctx *c,
                                   const struct veil__engine_kparams *kp)
{
    uint64_t outer, len, inner;
    size_t ax = (size_t)kp->axis.axis;
    const struct veil__engine_tv *y = &c->out[0];
    bool log = strcmp(c->n->op_type, "LogSoftmax") == 0;
    split3(y, ax, &outer, &len, &inner);
    if (len == 0 || y->numel == 0)
        return VEIL_OK;
    /*
     * Over the last axis, where every opset means the same, the vector row kernel
     * runs, adding a fused addend in its first pass. A fused addend with the softmax over
     * another axis (an opset before 13 names its axis by position, which the optimiser cannot
     * check) is first added into the output, which the plain kernel then normalises in place.
     */
    bool rows = !log && ax + 1 == y->rank;
    if (rows || c->n->add_in >= 0) {
        struct smr_job j;
        memset(&j, 0, sizeof(j));
        j.x = c->in[0].data;
        j.a = c->n->add_in >= 0 ? c->add.data : NULL;
        j.y = y->data;
        j.rank = y->rank - 1;
        j.len = (uint64_t)y->dims[j.rank];
        j.add_only = !rows;
        memcpy(j.dims, y->dims, j.rank * sizeof(int64_t));
        bcast_strides(&c->in[0], y->dims, j.rank, j.xst, &j.xs);
        if (j.a != NULL)
            bcast_strides(&c->add, y->dims, j.rank, j.ast, &j.as);
        veil__engine_parallel(y->numel / j.len, 16, smr_range, &j);
        if (rows)
            return VEIL_OK;
    }
    if (c->opset < 13) {
        /* Opsets before 13 coerce the input to 2-D at axis. */
        len *= inner;
        inner = 1;
    }
    const float *x = c->n->add_in >= 0 ? y->data : c->in[0].data;
    struct sm_job j = {x, y->data, len, inner, log};
    veil__engine_parallel(outer * inner, 64, sm_range, &j);
    return VEIL_OK;
}

/* ---- LayerNormalization ---- */

struct ln_job {
    const float *x, *scale, *bias;
    float *y, *mean, *istd;
    uint64_t len;
    float eps;
};

static void ln_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct ln_job *j = ud;
    for (uint64_t row = lo; row < hi; row++) {
        const float *x = j->x + row * j->len;
        float *y = j->y + row * j->len;
        float m, istd;
        veil__engine_layernorm_row(x, y, (size_t)j->len, j->scale, j->bias, j->eps, &m, &istd);
        if (j->mean)
            j->mean[row] = m;
        if (j->istd)
            j->istd[row] = istd;
    }
}

/* Rows are normalised one at a time, each read whole before it is written: in place is safe. */
veil_err veil__engine_ln_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                 struct veil__engine_step *st)
{
    (void)eng;
    (void)st;
    (void)veil__engine_inplace(c, 0);
    return VEIL_OK;
}

veil_err veil__engine_ln_infer(struct veil__engine_ictx *c)
{
    veil_err rc = need_float(c, 0);
    size_t ax;
    if (rc != VEIL_OK)
        return rc;
    if (!veil__engine_has_input(c, 1))
        return veil_errf(c->eb, VEIL_E_INVALID, "LayerNormalization needs a scale");
    if ((rc = veil__engine_norm_axis(veil__engine_attr_i(c->n, "axis", -1), c->in[0].rank, &ax,
                                     c->eb)) != VEIL_OK)
        return rc;
    uint64_t len = 1;
    for (size_t d = ax; d < c->in[0].rank; d++)
        len *= (uint64_t)c->in[0].dims[d];
    for (size_t i = 1; i < 3 && i < c->n_in; i++)
        if (veil__engine_has_input(c, i) && (c->in[i].dt != VEIL_DT_FLOAT || c->in[i].numel != len))
            return veil_errf(c->eb, VEIL_E_UNSUPPORTED,
                             "scale and bias must be float tensors of "
                             "the normalized shape");
    c->kp->layernorm.axis = (int64_t)ax;
    c->kp->layernorm.eps = veil__engine_attr_f(c->n, "epsilon", 1e-5f);
    c->out[0] = c->in[0];
    for (size_t k = 1; k < 3 && k < c->n_out; k++) {
        c->out[k] = c->in[0];
        for (size_t d = ax; d < c->in[0].rank; d++)
            c->out[k].dims[d] = 1;
    }
    return VEIL_OK;
}

veil_err veil__engine_ln_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    size_t ax = (size_t)kp->layernorm.axis;
    uint64_t len = 1;
    for (size_t d = ax; d < c->in[0].rank; d++)
        len *= (uint64_t)c->in[0].dims[d];
    if (len == 0)
        return VEIL_OK;
    struct ln_job j = {c->in[0].data,
                       c->in[1].data,
                       c->n_in > 2 && c->n->in[2] >= 0 ? c->in[2].data : NULL,
                       c->out[0].data,
                       c->n_out > 1 && c->n->out[1] >= 0 ? c->out[1].data : NULL,
                       c->n_out > 2 && c->n->out[2] >= 0 ? c->out[2].data : NULL,
                       len,
                       kp->layernorm.eps};
    veil__engine_parallel(c->in[0].numel / len, 16, ln_range, &j);
    return VEIL_OK;
}

/* ---- ArgMax, ArgMin, Hardmax, TopK ---- */

veil_err veil__engine_argmax_infer(struct veil__engine_ictx *c)
{
    size_t ax;
    veil_err rc;
    if (c->in[0].dt != VEIL_DT_FLOAT && c->in[0].dt != VEIL_DT_INT64 &&
        c->in[0].dt != VEIL_DT_INT32 && c->in[0].dt != VEIL_DT_DOUBLE)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "input type %s", veil_dtype_name(c->in[0].dt));
    if ((rc = veil__engine_norm_axis(veil__engine_attr_i(c->n, "axis", 0), c->in[0].rank, &ax,
                                     c->eb)) != VEIL_OK)
        return rc;
    if (c->in[0].dims[ax] == 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "%s over an empty axis", c->n->op_type);
    bool keep = veil__engine_attr_i(c->n, "keepdims", 1) != 0;
    c->kp->argmax.axis = (int64_t)ax;
    c->kp->argmax.select_last = veil__engine_attr_i(c->n, "select_last_index", 0);
    c->kp->argmax.min = strcmp(c->n->op_type, "ArgMin") == 0;
    c->out[0].dt = VEIL_DT_INT64;
    c->out[0].rank = 0;
    for (size_t d = 0; d < c->in[0].rank; d++)
        if (d != ax)
            c->out[0].dims[c->out[0].rank++] = c->in[0].dims[d];
        else if (keep)
            c->out[0].dims[c->out[0].rank++] = 1;
    return VEIL_OK;
}

/*
 * Index of the largest (min: smallest) of len elements of t from base with stride s (len >
 * 0); ties go to the first index, or the last with last. A NaN wins only as the first element.
 */
static uint64_t arg_best(const struct veil__engine_tv *t, uint64_t base, uint64_t len, uint64_t s,
                         bool min, bool last)
{
    uint64_t best = 0;
    double bv = veil__engine_get_f64(t, base);
    for (uint64_t i = 1; i < len; i++) {
        double v = veil__engine_get_f64(t, base + i * s);
        if ((min ? v < bv : v > bv) || (last && v == bv)) {
            bv = v;
            best = i;
        }
    }
    return best;
}

veil_err veil__engine_argmax_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp)
{
    uint64_t outer, len, inner;
    split3(&c->in[0], (size_t)kp->argmax.axis, &outer, &len, &inner);
    bool last = kp->argmax.select_last != 0, min = kp->argmax.min != 0;
    int64_t *y = c->out[0].data;
    for (uint64_t o = 0; o < outer; o++)
        for (uint64_t in = 0; in < inner; in++)
            y[o * inner + in] =
                (int64_t)arg_best(&c->in[0], o * len * inner + in, len, inner, min, last);
    return VEIL_OK;
}

/*
 * Hardmax: 1 at the first largest element of each row, 0 elsewhere. Rows run along axis
 * (default -1) from opset 13; before, the input is coerced to 2-D at axis (default 1) and a
 * row is everything from axis on, as for Softmax.
 */
veil_err veil__engine_hardmax_infer(struct veil__engine_ictx *c)
{
    size_t ax;
    veil_err rc;
    if (c->in[0].dt != VEIL_DT_FLOAT && c->in[0].dt != VEIL_DT_DOUBLE)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "input type %s (float and double are)",
                         veil_dtype_name(c->in[0].dt));
    if (c->in[0].rank == 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "scalar input");
    int64_t def = c->opset >= 13 ? -1 : 1;
    if ((rc = veil__engine_norm_axis(veil__engine_attr_i(c->n, "axis", def), c->in[0].rank, &ax,
                                     c->eb)) != VEIL_OK)
        return rc;
    c->kp->axis.axis = (int64_t)ax;
    c->out[0] = c->in[0];
    return VEIL_OK;
}

veil_err veil__engine_hardmax_exec(struct veil__engine_kctx *c,
                                   const struct veil__engine_kparams *kp)
{
    uint64_t outer, len, inner;
    split3(&c->in[0], (size_t)kp->axis.axis, &outer, &len, &inner);
    if (c->opset < 13) {
        len *= inner;
        inner = 1;
    }
    struct veil__engine_tv *y = &c->out[0];
    memset(y->data, 0, (size_t)y->numel * veil_dtype_size(y->dt));
    if (len == 0)
        return VEIL_OK;
    for (uint64_t o = 0; o < outer; o++)
        for (uint64_t in = 0; in < inner; in++) {
            uint64_t base = o * len * inner + in;
            uint64_t best = arg_best(&c->in[0], base, len, inner, false, false);
            veil__engine_set_f64(y, base + best * inner, 1.0);
        }
    return VEIL_OK;
}

veil_err veil__engine_topk_infer(struct veil__engine_ictx *c)
{
    size_t ax;
    veil_err rc;
    if (c->in[0].dt != VEIL_DT_FLOAT && c->in[0].dt != VEIL_DT_INT64 &&
        c->in[0].dt != VEIL_DT_INT32 && c->in[0].dt != VEIL_DT_DOUBLE)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "input type %s", veil_dtype_name(c->in[0].dt));
    if ((rc = veil__engine_norm_axis(veil__engine_attr_i(c->n, "axis", -1), c->in[0].rank, &ax,
                                     c->eb)) != VEIL_OK)
        return rc;
    if (!veil__engine_has_input(c, 1) || c->in[1].numel != 1 || c->in[1].dt != VEIL_DT_INT64)
        return veil_errf(c->eb, VEIL_E_INVALID, "K must be one int64");
    int64_t k = veil__engine_get_i64(&c->in[1], 0);
    if (k < 0 || k > c->in[0].dims[ax])
        return veil_errf(c->eb, VEIL_E_INVALID, "K=%lld out of range", (long long)k);
    if (c->n_out < 2 || c->n->out[1] < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "TopK has two outputs");
    c->kp->topk.axis = (int64_t)ax;
    c->kp->topk.k = k;
    c->kp->topk.largest = veil__engine_attr_i(c->n, "largest", 1);
    c->out[0] = c->in[0];
    c->out[0].dims[ax] = k;
    c->out[1] = c->out[0];
    c->out[1].dt = VEIL_DT_INT64;
    return VEIL_OK;
}

veil_err veil__engine_topk_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    uint64_t outer, len, inner;
    split3(&c->in[0], (size_t)kp->topk.axis, &outer, &len, &inner);
    uint64_t k = (uint64_t)kp->topk.k;
    bool largest = kp->topk.largest != 0;
    struct veil__engine_tv *vo = &c->out[0];
    int64_t *io = c->out[1].data;
    for (uint64_t o = 0; o < outer; o++)
        for (uint64_t in = 0; in < inner; in++) {
            uint64_t ibase = o * len * inner + in, obase = o * k * inner + in;
            uint64_t n = 0;
            /* Insertion into the sorted output; ties keep the lower index first. */
            for (uint64_t i = 0; i < len; i++) {
                double v = veil__engine_get_f64(&c->in[0], ibase + i * inner);
                uint64_t pos = n;
                while (pos > 0) {
                    double pv = veil__engine_get_f64(
                        &c->in[0], ibase + (uint64_t)io[obase + (pos - 1) * inner] * inner);
                    if (largest ? v > pv : v < pv)
                        pos--;
                    else
                        break;
                }
                if (pos >= k)
                    continue;
                uint64_t end = n < k ? n : k - 1;
                for (uint64_t q = end; q > pos; q--)
                    io[obase + q * inner] = io[obase + (q - 1) * inner];
                io[obase + pos * inner] = (int64_t)i;
                if (n < k)
                    n++;
            }
            for (uint64_t q = 0; q < k; q++) {
                uint64_t src = ibase + (uint64_t)io[obase + q * inner] * inner;
                if (vo->dt == VEIL_DT_FLOAT || vo->dt == VEIL_DT_DOUBLE)
                    veil__engine_set_f64(vo, obase + q * inner,
                                         veil__engine_get_f64(&c->in[0], src));
                else
                    veil__engine_set_i64(vo, obase + q * inner,
                                         veil__engine_get_i64(&c->in[0], src));
            }
        }
    return VEIL_OK;
}

/* ---- BatchNormalization (inference), instance and mean-variance normalisation, LRN, global
 * pooling ---- */

veil_err veil__engine_bn_infer(struct veil__engine_ictx *c)
{
    veil_err rc = need_float(c, 0);
    if (rc != VEIL_OK)
        return rc;
    if (c->n_in < 5 || c->in[0].rank < 2)
        return veil_errf(c->eb, VEIL_E_INVALID, "BatchNormalization needs 5 inputs and rank >= 2");
    if (veil__engine_attr_i(c->n, "training_mode", 0) != 0 || c->n_out > 1)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "training mode");
    for (size_t i = 1; i < 5; i++)
        if (!veil__engine_has_input(c, i) || c->in[i].dt != VEIL_DT_FLOAT ||
            c->in[i].numel != (uint64_t)c->in[0].dims[1])
            return veil_errf(c->eb, VEIL_E_INVALID, "input %zu must hold C floats", i);
    c->kp->batchnorm.eps = veil__engine_attr_f(c->n, "epsilon", 1e-5f);
    c->out[0] = c->in[0];
    return VEIL_OK;
}

veil_err veil__engine_bn_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    uint64_t n = (uint64_t)c->in[0].dims[0], ch = (uint64_t)c->in[0].dims[1];
    uint64_t sp = ch && n ? c->in[0].numel / n / ch : 0;
    const float *x = c->in[0].data, *sc = c->in[1].data, *b = c->in[2].data, *mean = c->in[3].data,
                *var = c->in[4].data;
    float *y = c->out[0].data;
    for (uint64_t i = 0; i < n; i++)
        for (uint64_t k = 0; k < ch; k++) {
            float a = sc[k] / sqrtf(var[k] + kp->batchnorm.eps), bb = b[k] - mean[k] * a;
            const float *xp = x + (i * ch + k) * sp;
            float *yp = y + (i * ch + k) * sp;
            for (uint64_t s = 0; s < sp; s++)
                yp[s] = xp[s] * a + bb;
        }
    return VEIL_OK;
}

/*
 * InstanceNormalization and MeanVarianceNormalization: each group of elements (the reduced
 * axes of struct red_geom at one kept position) is normalised by its own mean and variance,
 * both in double over two passes. InstanceNormalization's groups are the (n, c) planes, with
 * y = (x - mean) / sqrt(var + epsilon) * scale[c] + B[c]; MeanVarianceNormalization's are
 * given by axes (default [0, 2, 3]), with y = (x - mean) / (sqrt(var) + 1e-9) as in the
 * operator's function body.
 */
veil_err veil__engine_norm_infer(struct veil__engine_ictx *c)
{
    veil_err rc = need_float(c, 0);
    if (rc != VEIL_OK)
        return rc;
    size_t r = c->in[0].rank;
    memset(c->kp->norm.reduced, 0, sizeof(c->kp->norm.reduced));
    if (strcmp(c->n->op_type, "InstanceNormalization") == 0) {
        if (r < 3)
            return veil_errf(c->eb, VEIL_E_INVALID, "InstanceNormalization needs rank >= 3");
        for (size_t i = 1; i < 3; i++)
            if (!veil__engine_has_input(c, i) || c->in[i].dt != VEIL_DT_FLOAT ||
                c->in[i].rank != 1 || c->in[i].dims[0] != c->in[0].dims[1])
                return veil_errf(c->eb, VEIL_E_INVALID, "input %zu must hold C = %lld floats", i,
                                 (long long)c->in[0].dims[1]);
        float eps = veil__engine_attr_f(c->n, "epsilon", 1e-5f);
        if (!(eps >= 0.0f) || isinf(eps))
            return veil_errf(c->eb, VEIL_E_INVALID, "epsilon %g", (double)eps);
        for (size_t d = 2; d < r; d++)
            c->kp->norm.reduced[d] = 1;
        c->kp->norm.instance = 1;
        c->kp->norm.eps = eps;
    } else {
        static const int64_t def_axes[3] = {0, 2, 3};
        const struct veil__engine_attr *a = veil__engine_attr_get(c->n, "axes");
        const int64_t *axes = def_axes;
        size_t na = 3;
        if (a != NULL) {
            if (a->type != VEIL_ONNX_ATTR_INTS || a->n == 0 || a->n > VEIL__ENGINE_RANK)
                return veil_errf(c->eb, VEIL_E_INVALID, "axes must be 1 to %d integers",
                                 VEIL__ENGINE_RANK);
            axes = a->ints;
            na = a->n;
        }
        for (size_t i = 0; i < na; i++) {
            size_t ax;
            if ((rc = veil__engine_norm_axis(axes[i], r, &ax, c->eb)) != VEIL_OK)
                return rc;
            c->kp->norm.reduced[ax] = 1;
        }
        c->kp->norm.instance = 0;
        c->kp->norm.eps = 1e-9f;
    }
    c->out[0] = c->in[0];
    return VEIL_OK;
}

struct norm_job {
    const float *x, *scale, *bias;
    float *y;
    struct red_geom g;
    uint64_t ch; /* channels (InstanceNormalization) */
    bool inst;
    double eps;
};

static void norm_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct norm_job *j = ud;
    const struct red_geom *g = &j->g;
    for (uint64_t o = lo; o < hi; o++) {
        int64_t base = red_base(g, o);
        double sum = 0, sq = 0;
        for (uint64_t k = 0; k < g->rcount; k++)
            sum += j->x[red_off(g, base, k)];
        double mean = g->rcount ? sum / (double)g->rcount : 0.0;
        for (uint64_t k = 0; k < g->rcount; k++) {
            double d = j->x[red_off(g, base, k)] - mean;
            sq += d * d;
        }
        double var = g->rcount ? sq / (double)g->rcount : 0.0, a, b = 0.0;
        if (j->inst) {
            uint64_t ch = o % j->ch;
            a = j->scale[ch] / sqrt(var + j->eps);
            b = j->bias[ch];
        } else {
            a = 1.0 / (sqrt(var) + j->eps);
        }
        for (uint64_t k = 0; k < g->rcount; k++) {
            int64_t off = red_off(g, base, k);
            j->y[off] = (float)((j->x[off] - mean) * a + b);
        }
    }
}

veil_err veil__engine_norm_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    struct norm_job j;
    memset(&j, 0, sizeof(j));
    red_geom_init(&c->in[0], kp->norm.reduced, &j.g);
    j.x = c->in[0].data;
    j.y = c->out[0].data;
    j.inst = kp->norm.instance != 0;
    j.eps = kp->norm.eps;
    if (j.inst) {
        j.scale = c->in[1].data;
        j.bias = c->in[2].data;
        j.ch = (uint64_t)c->in[0].dims[1];
    }
    if (c->in[0].numel == 0)
        return VEIL_OK;
    uint64_t groups = c->in[0].numel / j.g.rcount;
    veil__engine_parallel(groups, j.g.rcount >= 4096 ? 1 : 4096 / j.g.rcount, norm_range, &j);
    return VEIL_OK;
}

/*
 * LRN across channels: y = x / (bias + alpha / size * sum of x^2 over the channels
 * c - floor((size - 1) / 2) .. c + ceil((size - 1) / 2))^beta, the window cut at the edges.
 */
veil_err veil__engine_lrn_infer(struct veil__engine_ictx *c)
{
    veil_err rc = need_float(c, 0);
    if (rc != VEIL_OK)
        return rc;
    if (c->in[0].rank < 3)
        return veil_errf(c->eb, VEIL_E_INVALID, "LRN needs rank >= 3");
    const struct veil__engine_attr *sz = veil__engine_attr_typed(c->n, "size", VEIL_ONNX_ATTR_INT);
    if (sz == NULL)
        return veil_errf(c->eb, VEIL_E_INVALID, "LRN needs an integer size");
    if (sz->i < 1 || sz->i % 2 == 0 || sz->i > 65535)
        return veil_errf(c->eb, VEIL_E_INVALID, "size %lld (an odd number from 1 to 65535)",
                         (long long)sz->i);
    float alpha = veil__engine_attr_f(c->n, "alpha", 1e-4f),
          beta = veil__engine_attr_f(c->n, "beta", 0.75f),
          bias = veil__engine_attr_f(c->n, "bias", 1.0f);
    if (!isfinite(alpha) || !isfinite(beta) || !isfinite(bias))
        return veil_errf(c->eb, VEIL_E_INVALID, "alpha, beta and bias must be finite");
    c->kp->lrn.size = sz->i;
    c->kp->lrn.alpha = alpha;
    c->kp->lrn.beta = beta;
    c->kp->lrn.bias = bias;
    c->out[0] = c->in[0];
    return VEIL_OK;
}

struct lrn_job {
    const float *x;
    float *y;
    uint64_t ch, sp;
    int64_t lo, hi; /* window: channels c - lo .. c + hi */
    double alpha, beta, bias;
};

/* Rows are (n, c) planes, each done in blocks of RED_BLOCK positions. */
static void lrn_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct lrn_job *j = ud;
    double acc[RED_BLOCK];
    for (uint64_t row = lo; row < hi; row++) {
        int64_t ch = (int64_t)(row % j->ch), c0 = ch - j->lo, c1 = ch + j->hi;
        if (c0 < 0)
            c0 = 0;
        if (c1 > (int64_t)j->ch - 1)
            c1 = (int64_t)j->ch - 1;
        const float *plane = j->x + (row - (uint64_t)ch) * j->sp;
        const float *x = j->x + row * j->sp;
        float *y = j->y + row * j->sp;
        for (uint64_t b0 = 0; b0 < j->sp; b0 += RED_BLOCK) {
            uint64_t nb = j->sp - b0 < RED_BLOCK ? j->sp - b0 : RED_BLOCK;
            for (uint64_t i = 0; i < nb; i++)
                acc[i] = 0.0;
            for (int64_t k = c0; k <= c1; k++) {
                const float *xk = plane + (uint64_t)k * j->sp + b0;
                for (uint64_t i = 0; i < nb; i++)
                    acc[i] += (double)xk[i] * xk[i];
            }
            for (uint64_t i = 0; i < nb; i++)
                y[b0 + i] = (float)(x[b0 + i] / pow(j->bias + j->alpha * acc[i], j->beta));
        }
    }
}

veil_err veil__engine_lrn_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    int64_t size = kp->lrn.size;
    struct lrn_job j = {
        c->in[0].data,  c->out[0].data, (uint64_t)c->in[0].dims[1],           0,
        (size - 1) / 2, size / 2,       (double)kp->lrn.alpha / (double)size, kp->lrn.beta,
        kp->lrn.bias};
    uint64_t rows = (uint64_t)c->in[0].dims[0] * j.ch;
    if (rows == 0 || c->in[0].numel == 0)
        return VEIL_OK;
    j.sp = c->in[0].numel / rows;
    veil__engine_parallel(rows, j.sp >= 4096 ? 1 : 4096 / j.sp, lrn_range, &j);
    return VEIL_OK;
}

/* GlobalAveragePool and GlobalMaxPool: one mean or maximum per (n, c) plane. */
veil_err veil__engine_gap_infer(struct veil__engine_ictx *c)
{
    veil_err rc = need_float(c, 0);
    if (rc != VEIL_OK)
        return rc;
    if (c->in[0].rank < 3)
        return veil_errf(c->eb, VEIL_E_INVALID, "%s needs rank >= 3", c->n->op_type);
    c->out[0] = c->in[0];
    for (size_t d = 2; d < c->in[0].rank; d++)
        c->out[0].dims[d] = 1;
    c->kp->global_pool.max = strcmp(c->n->op_type, "GlobalMaxPool") == 0;
    return VEIL_OK;
}

struct gap_job {
    const float *x;
    float *y;
    uint64_t sp;
    bool max;
};

static void gap_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct gap_job *j = ud;
    for (uint64_t r = lo; r < hi; r++) {
        const float *x = j->x + r * j->sp;
        if (j->max) {
            double m = -INFINITY;
            for (uint64_t i = 0; i < j->sp; i++)
                m = red_max(m, x[i]);
            j->y[r] = (float)m;
            continue;
        }
        double s = 0;
        for (uint64_t i = 0; i < j->sp; i++)
            s += x[i];
        j->y[r] = (float)(s / (double)j->sp);
    }
}

veil_err veil__engine_gap_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    uint64_t rows = c->out[0].numel;
    struct gap_job j = {c->in[0].data, c->out[0].data, rows ? c->in[0].numel / rows : 0,
                        kp->global_pool.max != 0};
    veil__engine_parallel(rows, 64, gap_range, &j);
    return VEIL_OK;
}

/* ---- MaxPool, AveragePool (1-D to 3-D) ---- */

/* The window of a pooling or a convolution: see engine_int.h. Shared with Conv. */
veil_err veil__engine_pool_geometry(struct veil__engine_ictx *c, bool is_conv,
                                    const int64_t *kshape, struct veil__engine_kp_window *w)
{
    size_t sp = c->in[0].rank - 2;
    const struct veil__engine_attr *ks =
        veil__engine_attr_typed(c->n, "kernel_shape", VEIL_ONNX_ATTR_INTS);
    const struct veil__engine_attr *st =
        veil__engine_attr_typed(c->n, "strides", VEIL_ONNX_ATTR_INTS);
    const struct veil__engine_attr *pd = veil__engine_attr_typed(c->n, "pads", VEIL_ONNX_ATTR_INTS);
    const struct veil__engine_attr *dl =
        veil__engine_attr_typed(c->n, "dilations", VEIL_ONNX_ATTR_INTS);
    const char *ap = veil__engine_attr_s(c->n, "auto_pad", "NOTSET");
    bool ceil_mode = veil__engine_attr_i(c->n, "ceil_mode", 0) != 0;
    if (sp < 1 || sp > 3)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "%zu spatial dimensions", sp);
    if ((ks != NULL && ks->n != sp) || (st != NULL && st->n != sp) ||
        (pd != NULL && pd->n != 2 * sp) || (dl != NULL && dl->n != sp))
        return veil_errf(c->eb, VEIL_E_INVALID, "attribute lengths do not match the rank");
    if (ks == NULL && kshape == NULL)
        return veil_errf(c->eb, VEIL_E_INVALID, "kernel_shape is required");
    for (size_t i = 0; i < sp; i++) {
        w->kernel[i] = ks != NULL ? ks->ints[i] : kshape[i];
        w->strides[i] = st != NULL ? st->ints[i] : 1;
        w->pads[i] = pd != NULL ? pd->ints[i] : 0;
        w->pads[i + sp] = pd != NULL ? pd->ints[i + sp] : 0;
        w->dilations[i] = dl != NULL ? dl->ints[i] : 1;
        if (w->kernel[i] < 1 || w->strides[i] < 1 || w->dilations[i] < 1 || w->pads[i] < 0 ||
            w->pads[i + sp] < 0 || w->kernel[i] > 4096 || w->strides[i] > 4096 ||
            w->dilations[i] > 4096 || w->pads[i] > 4096 || w->pads[i + sp] > 4096)
            return veil_errf(c->eb, VEIL_E_INVALID, "bad kernel, stride, pad or dilation");
    }
    bool same = strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0;
    if (!same && strcmp(ap, "NOTSET") != 0 && strcmp(ap, "VALID") != 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "auto_pad '%s'", ap);
    c->out[0] = c->in[0];
    for (size_t i = 0; i < sp; i++) {
        int64_t in = c->in[0].dims[2 + i], k = w->kernel[i], s = w->strides[i], d = w->dilations[i];
        int64_t ek = (k - 1) * d + 1, out;
        if (same) {
            out = (in + s - 1) / s;
            int64_t total = (out - 1) * s + ek - in;
            if (total < 0)
                total = 0;
            int64_t small = total / 2, big = total - small;
            w->pads[i] = strcmp(ap, "SAME_UPPER") == 0 ? small : big;
            w->pads[i + sp] = total - w->pads[i];
        } else {
            if (strcmp(ap, "VALID") == 0)
                w->pads[i] = w->pads[i + sp] = 0;
            int64_t span = in + w->pads[i] + w->pads[i + sp] - ek;
            if (span < 0)
                return veil_errf(c->eb, VEIL_E_INVALID, "kernel larger than padded input");
            out = (ceil_mode && !is_conv ? (span + s - 1) / s : span / s) + 1;
            /* A ceil-mode window must start inside the input or its left padding. */
            if (ceil_mode && !is_conv && (out - 1) * s >= in + w->pads[i])
                out--;
        }
        c->out[0].dims[2 + i] = out;
    }
    return VEIL_OK;
}

/*
 * MaxPool takes float, double, int8 and uint8 and may give the indices output (int64 positions
 * in the flattened input, row-major or, with storage_order 1, column-major within each plane);
 * AveragePool takes float. Fills kp->pool.
 */
veil_err veil__engine_pool_infer(struct veil__engine_ictx *c)
{
    bool is_max = strcmp(c->n->op_type, "MaxPool") == 0;
    enum veil_dtype dt = c->in[0].dt;
    if (!is_max || (dt != VEIL_DT_DOUBLE && dt != VEIL_DT_INT8 && dt != VEIL_DT_UINT8)) {
        veil_err rc = need_float(c, 0);
        if (rc != VEIL_OK)
            return rc;
    }
    int64_t order = veil__engine_attr_i(c->n, "storage_order", 0);
    if (order != 0 && order != 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "storage_order %lld (0 or 1)", (long long)order);
    if (c->in[0].rank < 3)
        return veil_errf(c->eb, VEIL_E_INVALID, "pooling needs rank >= 3");
    veil_err rc = veil__engine_pool_geometry(c, false, NULL, &c->kp->pool.window);
    if (rc != VEIL_OK)
        return rc;
    bool idx = is_max && c->n_out > 1 && c->n->out[1] >= 0;
    if (idx) {
        c->out[1] = c->out[0];
        c->out[1].dt = VEIL_DT_INT64;
    }
    c->kp->pool.max = is_max;
    c->kp->pool.count_include_pad = veil__engine_attr_i(c->n, "count_include_pad", 0);
    c->kp->pool.indices = idx;
    c->kp->pool.storage_order = order;
    return VEIL_OK;
}

veil_err veil__engine_pool_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    size_t sp = c->in[0].rank - 2;
    int64_t id[3] = {1, 1, 1}, od[3] = {1, 1, 1}, k[3] = {1, 1, 1}, s[3] = {1, 1, 1},
            p[3] = {0, 0, 0}, pe[3] = {0, 0, 0}, d[3] = {1, 1, 1};
    for (size_t i = 0; i < sp; i++) {
        id[i] = c->in[0].dims[2 + i];
        od[i] = c->out[0].dims[2 + i];
        k[i] = kp->pool.window.kernel[i];
        s[i] = kp->pool.window.strides[i];
        p[i] = kp->pool.window.pads[i];
        pe[i] = kp->pool.window.pads[i + sp];
        d[i] = kp->pool.window.dilations[i];
    }
    bool is_max = kp->pool.max != 0, incl = kp->pool.count_include_pad != 0,
         col = kp->pool.storage_order != 0;
    int64_t *ix = kp->pool.indices != 0 ? c->out[1].data : NULL;
    uint64_t planes = (uint64_t)c->in[0].dims[0] * (uint64_t)c->in[0].dims[1];
    bool fl = c->in[0].dt == VEIL_DT_FLOAT;
    const float *x = c->in[0].data;
    uint64_t isz = (uint64_t)(id[0] * id[1] * id[2]), osz = (uint64_t)(od[0] * od[1] * od[2]);
    for (uint64_t pl = 0; pl < planes; pl++)
        for (int64_t a = 0; a < od[0]; a++)
            for (int64_t b = 0; b < od[1]; b++)
                for (int64_t e = 0; e < od[2]; e++) {
                    double acc = is_max ? -INFINITY : 0.0;
                    int64_t cnt = 0, cnt_pad = 0, best = -1;
                    for (int64_t ka = 0; ka < k[0]; ka++) {
                        int64_t ia = a * s[0] - p[0] + ka * d[0];
                        for (int64_t kb = 0; kb < k[1]; kb++) {
                            int64_t ib = b * s[1] - p[1] + kb * d[1];
                            for (int64_t ke = 0; ke < k[2]; ke++) {
                                int64_t ie = e * s[2] - p[2] + ke * d[2];
                                bool in_pad =
                                    ia < id[0] + pe[0] && ib < id[1] + pe[1] && ie < id[2] + pe[2];
                                if (ia < 0 || ib < 0 || ie < 0 || ia >= id[0] || ib >= id[1] ||
                                    ie >= id[2]) {
                                    cnt_pad += in_pad;
                                    continue;
                                }
                                uint64_t at = pl * isz + (uint64_t)((ia * id[1] + ib) * id[2] + ie);
                                double v = fl ? x[at] : veil__engine_get_f64(&c->in[0], at);
                                if (!is_max) {
                                    acc += v;
                                } else if (v > acc) {
                                    acc = v;
                                    best = col ? (ie * id[1] + ib) * id[0] + ia
                                               : (ia * id[1] + ib) * id[2] + ie;
                                }
                                cnt++;
                                cnt_pad++;
                            }
                        }
                    }
                    if (!is_max) {
                        int64_t div = incl ? cnt_pad : cnt;
                        acc = div > 0 ? acc / (double)div : 0.0;
                    }
                    uint64_t o = pl * osz + (uint64_t)((a * od[1] + b) * od[2] + e);
                    if (fl)
                        ((float *)c->out[0].data)[o] = (float)acc;
                    else
                        veil__engine_set_f64(&c->out[0], o, acc);
                    if (ix != NULL)
                        ix[o] = (int64_t)(pl * isz) + best;
                }
    return VEIL_OK;
}

/* ---- GroupNormalization (opset 18; scale and bias per channel from opset 21) ---- */

veil_err veil__engine_groupnorm_infer(struct veil__engine_ictx *c)
{
    veil_err rc = need_float(c, 0);
    if (rc != VEIL_OK)
        return rc;
    size_t r = c->in[0].rank;
    int64_t ch = r >= 2 ? c->in[0].dims[1] : 0;
    int64_t g = veil__engine_attr_i(c->n, "num_groups", 0);
    if (r < 2)
        return veil_errf(c->eb, VEIL_E_INVALID, "GroupNormalization needs rank >= 2");
    if (g < 1 || ch % g != 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "num_groups %lld does not divide %lld channels",
                         (long long)g, (long long)ch);
    float eps = veil__engine_attr_f(c->n, "epsilon", 1e-5f);
    if (!(eps >= 0.0f) || isinf(eps))
        return veil_errf(c->eb, VEIL_E_INVALID, "epsilon %g", (double)eps);
    int64_t want = -1;
    for (size_t i = 1; i < 3; i++) {
        if (!veil__engine_has_input(c, i) || c->in[i].dt != VEIL_DT_FLOAT || c->in[i].rank != 1)
            return veil_errf(c->eb, VEIL_E_INVALID, "input %zu must be a float vector", i);
        int64_t n = c->in[i].dims[0];
        /* Opset 21 gives C values, opset 18 G: the length says which (equal when G == C). */
        if ((n != ch && n != g) || (want >= 0 && n != want))
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "input %zu has %lld values; it takes the %lld channels or the %lld "
                             "groups",
                             i, (long long)n, (long long)ch, (long long)g);
        want = n;
    }
    c->kp->groupnorm.groups = g;
    c->kp->groupnorm.per_channel = want == ch;
    c->kp->groupnorm.eps = eps;
    c->out[0] = c->in[0];
    return VEIL_OK;
}

struct gn_job {
    const float *x, *scale, *bias;
    float *y;
    uint64_t groups, cpg, spatial; /* channels per group, elements per channel */
    bool per_channel;
    double eps;
};

static void gn_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct gn_job *j = ud;
    uint64_t len = j->cpg * j->spatial;
    for (uint64_t b = lo; b < hi; b++) {
        const float *x = j->x + b * len;
        float *y = j->y + b * len;
        uint64_t grp = b % j->groups;
        double sum = 0.0, sq = 0.0;
        for (uint64_t i = 0; i < len; i++)
            sum += x[i];
        double mean = len > 0 ? sum / (double)len : 0.0;
        for (uint64_t i = 0; i < len; i++) {
            double d = x[i] - mean;
            sq += d * d;
        }
        double istd = 1.0 / sqrt((len > 0 ? sq / (double)len : 0.0) + j->eps);
        for (uint64_t cc = 0; cc < j->cpg; cc++) {
            uint64_t k = j->per_channel ? grp * j->cpg + cc : grp;
            float s = (float)(j->scale[k] * istd),
                  t = (float)(j->bias[k] - mean * j->scale[k] * istd);
            const float *xc = x + cc * j->spatial;
            float *yc = y + cc * j->spatial;
            for (uint64_t i = 0; i < j->spatial; i++)
                yc[i] = xc[i] * s + t;
        }
    }
}

veil_err veil__engine_groupnorm_exec(struct veil__engine_kctx *c,
                                     const struct veil__engine_kparams *kp)
{
    const struct veil__engine_tv *x = &c->in[0];
    uint64_t spatial = veil__engine_numel(x->dims + 2, x->rank - 2);
    struct gn_job j = {x->data,
                       c->in[1].data,
                       c->in[2].data,
                       c->out[0].data,
                       (uint64_t)kp->groupnorm.groups,
                       (uint64_t)(x->dims[1] / kp->groupnorm.groups),
                       spatial,
                       kp->groupnorm.per_channel,
                       kp->groupnorm.eps};
    veil__engine_parallel((uint64_t)x->dims[0] * j.groups, 1, gn_range, &j);
    return VEIL_OK;
}

/*
 * ---- Col2Im (opset 18) ----
 * The inverse of im2col: input [N, C * prod(block), L] of L sliding blocks, output
 * [N, C, image...], each block's values added at its positions (overlaps sum).
 */

veil_err veil__engine_col2im_infer(struct veil__engine_ictx *c)
{
    struct veil__engine_kp_col2im *k = &c->kp->col2im;
    veil_err rc = need_float(c, 0);
    if (rc != VEIL_OK)
        return rc;
    size_t ni, nb;
    if (c->in[0].rank != 3)
        return veil_errf(c->eb, VEIL_E_INVALID, "input must be [N, C * block, L]");
    if ((rc = veil__engine_read_ints(&c->in[1], k->image, VEIL__ENGINE_RANK - 2, &ni, c->eb)) !=
            VEIL_OK ||
        (rc = veil__engine_read_ints(&c->in[2], k->block, VEIL__ENGINE_RANK - 2, &nb, c->eb)) !=
            VEIL_OK)
        return rc;
    if (ni != nb || ni == 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "image_shape and block_shape differ in length");
    k->sp = ni;
    const struct veil__engine_attr *st =
        veil__engine_attr_typed(c->n, "strides", VEIL_ONNX_ATTR_INTS);
    const struct veil__engine_attr *dl =
        veil__engine_attr_typed(c->n, "dilations", VEIL_ONNX_ATTR_INTS);
    const struct veil__engine_attr *pd = veil__engine_attr_typed(c->n, "pads", VEIL_ONNX_ATTR_INTS);
    if ((st != NULL && st->n != ni) || (dl != NULL && dl->n != ni) ||
        (pd != NULL && pd->n != 2 * ni))
        return veil_errf(c->eb, VEIL_E_INVALID, "strides, dilations or pads of the wrong length");
    int64_t blk = 1, L = 1;
    for (size_t i = 0; i < ni; i++) {
        k->strides[i] = st != NULL ? st->ints[i] : 1;
        k->dilations[i] = dl != NULL ? dl->ints[i] : 1;
        k->pads[i] = pd != NULL ? pd->ints[i] : 0;
        k->pads[i + ni] = pd != NULL ? pd->ints[i + ni] : 0;
        if (k->image[i] < 1 || k->block[i] < 1 || k->strides[i] < 1 || k->dilations[i] < 1 ||
            k->pads[i] < 0 || k->pads[i + ni] < 0 || k->image[i] > (1 << 24) ||
            k->block[i] > 4096 || k->strides[i] > 4096 || k->dilations[i] > 4096 ||
            k->pads[i] > 4096 || k->pads[i + ni] > 4096)
            return veil_errf(c->eb, VEIL_E_INVALID, "image, block or geometry out of range");
        int64_t span = k->dilations[i] * (k->block[i] - 1) + 1;
        int64_t n = (k->image[i] + k->pads[i] + k->pads[i + ni] - span) / k->strides[i] + 1;
        if (n < 1)
            return veil_errf(c->eb, VEIL_E_INVALID, "the block does not fit the padded image");
        k->blocks[i] = n;
        blk *= k->block[i];
        L *= n;
    }
    int64_t cb = c->in[0].dims[1];
    if (cb % blk != 0 || c->in[0].dims[2] != L)
        return veil_errf(c->eb, VEIL_E_INVALID,
                         "input is [%lld, %lld, %lld]; the geometry needs C * %lld rows and %lld "
                         "blocks",
                         (long long)c->in[0].dims[0], (long long)cb, (long long)c->in[0].dims[2],
                         (long long)blk, (long long)L);
    c->out[0].dt = VEIL_DT_FLOAT;
    c->out[0].rank = 2 + ni;
    c->out[0].dims[0] = c->in[0].dims[0];
    c->out[0].dims[1] = cb / blk;
    for (size_t i = 0; i < ni; i++)
        c->out[0].dims[2 + i] = k->image[i];
    return VEIL_OK;
}

veil_err veil__engine_col2im_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp)
{
    const struct veil__engine_kp_col2im *k = &kp->col2im;
    const float *x = c->in[0].data;
    float *y = c->out[0].data;
    uint64_t img = veil__engine_numel(k->image, k->sp), blk = veil__engine_numel(k->block, k->sp);
    uint64_t L = veil__engine_numel(k->blocks, k->sp);
    uint64_t planes = (uint64_t)c->out[0].dims[0] * (uint64_t)c->out[0].dims[1];
    memset(y, 0, c->out[0].numel * sizeof(float));
    for (uint64_t p = 0; p < planes; p++) {
        float *yp = y + p * img;
        const float *xp = x + p * blk * L;
        for (uint64_t e = 0; e < blk; e++) {
            int64_t off[VEIL__ENGINE_RANK];
            uint64_t q = e;
            for (size_t i = k->sp; i-- > 0;) {
                off[i] = (int64_t)(q % (uint64_t)k->block[i]) * k->dilations[i] - k->pads[i];
                q /= (uint64_t)k->block[i];
            }
            for (uint64_t l = 0; l < L; l++) {
                uint64_t ql = l, at = 0;
                bool inside = true;
                for (size_t i = k->sp; i-- > 0;) {
                    int64_t pos = (int64_t)(ql % (uint64_t)k->blocks[i]) * k->strides[i] + off[i];
                    ql /= (uint64_t)k->blocks[i];
                    if (pos < 0 || pos >= k->image[i]) {
                        inside = false;
                        break;
                    }
                }
                if (!inside)
                    continue;
                ql = l;
                uint64_t mul = 1;
                for (size_t i = k->sp; i-- > 0;) {
                    int64_t pos = (int64_t)(ql % (uint64_t)k->blocks[i]) * k->strides[i] + off[i];
                    ql /= (uint64_t)k->blocks[i];
                    at += (uint64_t)pos * mul;
                    mul *= (uint64_t)k->image[i];
                }
                yp[at] += xp[e * L + l];
            }
        }
    }
    return VEIL_OK;
}
