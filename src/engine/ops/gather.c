/*
 * The gather and scatter family in plain C: Gather, GatherElements, GatherND,
 * ScatterElements, ScatterND and OneHot. Every index is checked at run time and a run with one
 * out of range fails before anything is read or written, so hostile indices never reach
 * memory. Scatters write over their data input when the planner lets them (in place).
 */
#include "engine_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- Index checks and element-wise reductions shared by the gather and scatter family ---- */

/* Fails the run on the first index of ix outside [-len, len): hostile indices never read. */
static veil_err check_indices(const struct veil__engine_tv *ix, int64_t len, struct veil_errbuf *eb)
{
    for (uint64_t k = 0; k < ix->numel; k++) {
        int64_t v = veil__engine_get_i64(ix, k);
        if (v < -len || v >= len)
            return veil_errf(eb, VEIL_E_INVALID, "index %lld out of range [-%lld, %lld)",
                             (long long)v, (long long)len, (long long)len);
    }
    return VEIL_OK;
}

enum reduction { RED_NONE, RED_ADD, RED_MUL, RED_MAX, RED_MIN };

/* The reduction attribute of ScatterElements and ScatterND: add, mul (16), max, min (18). */
static veil_err reduction_of(struct veil__engine_ictx *c, enum veil_dtype dt, int64_t *out)
{
    const char *s = veil__engine_attr_s(c->n, "reduction", "none");
    *out = RED_NONE;
    if (strcmp(s, "add") == 0)
        *out = RED_ADD;
    else if (strcmp(s, "mul") == 0)
        *out = RED_MUL;
    else if (strcmp(s, "max") == 0)
        *out = RED_MAX;
    else if (strcmp(s, "min") == 0)
        *out = RED_MIN;
    else if (strcmp(s, "none") != 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "unknown reduction '%s'", s);
    if (*out != RED_NONE && c->opset < 16)
        return veil_errf(c->eb, VEIL_E_INVALID, "reduction '%s' needs opset 16", s);
    if ((*out == RED_MAX || *out == RED_MIN) && c->opset < 18)
        return veil_errf(c->eb, VEIL_E_INVALID, "reduction '%s' needs opset 18", s);
    if (*out != RED_NONE && !veil__engine_dt_is_numeric(dt))
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "reduction '%s' of %s", s, veil_dtype_name(dt));
    return VEIL_OK;
}

/*
 * Element i of o becomes o[i] (+, *, max or min) u[k]. Floats go through double, whose 53
 * bits round a single float sum or product exactly as float arithmetic would; integers wrap
 * (sums, products) or compare as signed values. A NaN on either side of max or min wins, as
 * in ONNX Runtime.
 */
static void reduce_at(struct veil__engine_tv *o, uint64_t i, const struct veil__engine_tv *u,
                      uint64_t k, int64_t red)
{
    if (veil__engine_dt_is_float(o->dt)) {
        double a = veil__engine_get_f64(o, i), b = veil__engine_get_f64(u, k), r;
        if (red == RED_ADD)
            r = a + b;
        else if (red == RED_MUL)
            r = a * b;
        else if (a != a || b != b)
            r = a != a ? a : b;
        else
            r = red == RED_MAX ? (a > b ? a : b) : (a < b ? a : b);
        veil__engine_set_f64(o, i, r);
    } else if (red == RED_MAX || red == RED_MIN) {
        int64_t a = veil__engine_get_i64(o, i), b = veil__engine_get_i64(u, k);
        veil__engine_set_i64(o, i, red == RED_MAX ? (a > b ? a : b) : (a < b ? a : b));
    } else {
        uint64_t a = (uint64_t)veil__engine_get_i64(o, i), b = (uint64_t)veil__engine_get_i64(u, k);
        veil__engine_set_i64(o, i, (int64_t)(red == RED_ADD ? a + b : a * b));
    }
}

/* Copies what scatters into: data, unless the output was planned over it (in place). */
static void copy_data(struct veil__engine_kctx *c)
{
    size_t nbytes = (size_t)c->out[0].numel * veil_dtype_size(c->out[0].dt);
    if (c->out[0].data != c->in[0].data && nbytes > 0)
        memcpy(c->out[0].data, c->in[0].data, nbytes);
}

/*
 * Scatters write over their data input when its storage dies here, unless the indices or the
 * updates are the same value (they would be overwritten while still being read).
 */
veil_err veil__engine_scatter_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                      struct veil__engine_step *st)
{
    (void)eng;
    (void)st;
    if (c->n->in[0] != c->n->in[1] && c->n->in[0] != c->n->in[2])
        (void)veil__engine_inplace(c, 0);
    return VEIL_OK;
}

/* ---- Gather ---- */

veil_err veil__engine_gather_infer(struct veil__engine_ictx *c)
{
    size_t r = c->in[0].rank, ax;
    veil_err rc = veil__engine_norm_axis(veil__engine_attr_i(c->n, "axis", 0), r, &ax, c->eb);
    if (rc != VEIL_OK)
        return rc;
    const struct veil__engine_tv *ix = &c->in[1];
    if (ix->dt != VEIL_DT_INT64 && ix->dt != VEIL_DT_INT32)
        return veil_errf(c->eb, VEIL_E_INVALID, "indices must be int32 or int64");
    if (r - 1 + ix->rank > VEIL__ENGINE_RANK)
        return veil_errf(c->eb, VEIL_E_LIMIT, "output rank too large");
    c->out[0].dt = c->in[0].dt;
    c->out[0].rank = 0;
    for (size_t d = 0; d < ax; d++)
        c->out[0].dims[c->out[0].rank++] = c->in[0].dims[d];
    for (size_t d = 0; d < ix->rank; d++)
        c->out[0].dims[c->out[0].rank++] = ix->dims[d];
    for (size_t d = ax + 1; d < r; d++)
        c->out[0].dims[c->out[0].rank++] = c->in[0].dims[d];
    c->kp->axis.axis = (int64_t)ax;
    return VEIL_OK;
}

struct gather_job {
    const struct veil__engine_tv *idx;
    const uint8_t *src;
    uint8_t *dst;
    uint64_t ni;
    int64_t len;
    size_t chunk;
};

/* Rows [lo, hi) of the output, row t = o * ni + k (indices already checked). */
static void gather_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct gather_job *j = ud;
    for (uint64_t t = lo; t < hi; t++) {
        uint64_t o = t / j->ni, k = t % j->ni;
        int64_t ix = veil__engine_get_i64(j->idx, k);
        if (ix < 0)
            ix += j->len;
        memcpy(j->dst + t * j->chunk, j->src + (o * (uint64_t)j->len + (uint64_t)ix) * j->chunk,
               j->chunk);
    }
}

veil_err veil__engine_gather_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp)
{
    size_t ax = (size_t)kp->axis.axis, es = veil_dtype_size(c->in[0].dt);
    uint64_t outer = 1, inner = 1;
    for (size_t d = 0; d < ax; d++)
        outer *= (uint64_t)c->in[0].dims[d];
    for (size_t d = ax + 1; d < c->in[0].rank; d++)
        inner *= (uint64_t)c->in[0].dims[d];
    int64_t len = c->in[0].dims[ax];
    uint64_t ni = c->in[1].numel;
    size_t chunk = (size_t)(inner * es);
    veil_err rc = check_indices(&c->in[1], len, c->eb);
    if (rc != VEIL_OK)
        return rc;
    struct gather_job j = {&c->in[1], c->in[0].data, c->out[0].data, ni, len, chunk};
    /* Rows of an embedding table are scattered through memory: copy them on every thread. */
    veil__engine_parallel(outer * ni, chunk >= 1024 ? 8 : 8192, gather_range, &j);
    return VEIL_OK;
}

/* ---- GatherElements, ScatterElements ---- */

/*
 * Checks data (input 0) against an index tensor of the same rank no larger than data off the
 * axis (so every position it names exists), and sets kp->scatter.axis to the axis.
 */
static veil_err elements_check(struct veil__engine_ictx *c, const struct veil__engine_tv *ix)
{
    size_t r = c->in[0].rank, ax;
    if (r < 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "data must have rank 1 or more");
    veil_err rc = veil__engine_norm_axis(veil__engine_attr_i(c->n, "axis", 0), r, &ax, c->eb);
    if (rc != VEIL_OK)
        return rc;
    if (!veil__engine_dt_is_index(ix->dt))
        return veil_errf(c->eb, VEIL_E_INVALID, "indices must be int32 or int64");
    if (ix->rank != r)
        return veil_errf(c->eb, VEIL_E_INVALID, "indices have rank %zu, data %zu", ix->rank, r);
    for (size_t d = 0; d < r; d++)
        if (d != ax && ix->dims[d] > c->in[0].dims[d])
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "indices dimension %zu (%lld) exceeds data's (%lld)", d,
                             (long long)ix->dims[d], (long long)c->in[0].dims[d]);
    c->kp->scatter.axis = (int64_t)ax;
    return VEIL_OK;
}

veil_err veil__engine_gather_elements_infer(struct veil__engine_ictx *c)
{
    veil_err rc = elements_check(c, &c->in[1]);
    if (rc != VEIL_OK)
        return rc;
    c->out[0] = c->in[1];
    c->out[0].dt = c->in[0].dt;
    return VEIL_OK;
}

/* Element t of an index tensor of dims idims names data element elem_off(t) (index checked). */
struct elem_job {
    const struct veil__engine_tv *idx;
    const uint8_t *src;
    uint8_t *dst;
    size_t es, r, ax;
    int64_t idims[VEIL__ENGINE_RANK];
    int64_t dst_[VEIL__ENGINE_RANK]; /* data strides */
    int64_t len;                     /* data's length along the axis */
};

static uint64_t elem_off(const struct elem_job *j, uint64_t t)
{
    uint64_t q = t, off = 0;
    for (size_t d = j->r; d-- > 0;) {
        uint64_t x = q % (uint64_t)j->idims[d];
        q /= (uint64_t)j->idims[d];
        if (d == j->ax) {
            int64_t v = veil__engine_get_i64(j->idx, t);
            x = (uint64_t)(v < 0 ? v + j->len : v);
        }
        off += x * (uint64_t)j->dst_[d];
    }
    return off;
}

static void elem_job_init(struct elem_job *j, const struct veil__engine_kctx *c, size_t ax,
                          const struct veil__engine_tv *ix)
{
    j->idx = ix;
    j->src = c->in[0].data;
    j->dst = c->out[0].data;
    j->es = veil_dtype_size(c->in[0].dt);
    j->r = c->in[0].rank;
    j->ax = ax;
    memcpy(j->idims, ix->dims, sizeof(j->idims));
    veil__engine_strides_of(c->in[0].dims, j->r, j->dst_);
    j->len = c->in[0].dims[ax];
}

static void gather_elements_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct elem_job *j = ud;
    for (uint64_t t = lo; t < hi; t++)
        memcpy(j->dst + t * j->es, j->src + elem_off(j, t) * j->es, j->es);
}

veil_err veil__engine_gather_elements_exec(struct veil__engine_kctx *c,
                                           const struct veil__engine_kparams *kp)
{
    size_t ax = (size_t)kp->scatter.axis;
    struct elem_job j;
    veil_err rc = check_indices(&c->in[1], c->in[0].dims[ax], c->eb);
    if (rc != VEIL_OK)
        return rc;
    elem_job_init(&j, c, ax, &c->in[1]);
    veil__engine_parallel(c->in[1].numel, 16384, gather_elements_range, &j);
    return VEIL_OK;
}

veil_err veil__engine_scatter_elements_infer(struct veil__engine_ictx *c)
{
    const struct veil__engine_tv *ix = &c->in[1], *up = &c->in[2];
    veil_err rc = elements_check(c, ix);
    if (rc != VEIL_OK)
        return rc;
    if (up->dt != c->in[0].dt || up->rank != ix->rank ||
        memcmp(up->dims, ix->dims, ix->rank * sizeof(int64_t)) != 0)
        return veil_errf(c->eb, VEIL_E_INVALID,
                         "updates must match indices' shape and data's type");
    if ((rc = reduction_of(c, c->in[0].dt, &c->kp->scatter.reduction)) != VEIL_OK)
        return rc;
    c->out[0] = c->in[0];
    return VEIL_OK;
}

veil_err veil__engine_scatter_elements_exec(struct veil__engine_kctx *c,
                                            const struct veil__engine_kparams *kp)
{
    size_t ax = (size_t)kp->scatter.axis;
    struct elem_job j;
    veil_err rc = check_indices(&c->in[1], c->in[0].dims[ax], c->eb);
    if (rc != VEIL_OK)
        return rc;
    copy_data(c);
    elem_job_init(&j, c, ax, &c->in[1]);
    /* In index order, so the last of duplicate indices wins as in ONNX's reference. */
    for (uint64_t t = 0; t < c->in[1].numel; t++) {
        uint64_t off = elem_off(&j, t);
        if (kp->scatter.reduction == RED_NONE)
            memcpy(j.dst + off * j.es, (const uint8_t *)c->in[2].data + t * j.es, j.es);
        else
            reduce_at(&c->out[0], off, &c->in[2], t, kp->scatter.reduction);
    }
    return VEIL_OK;
}

/* ---- GatherND, ScatterND ---- */

/*
 * Both read tuples of k indices (the last dimension of indices) into the leading dimensions of
 * data after b batch dimensions. Fails the run on the first index outside its dimension.
 */
static veil_err check_tuples(const struct veil__engine_tv *data, const struct veil__engine_tv *ix,
                             size_t b, struct veil_errbuf *eb)
{
    uint64_t k = (uint64_t)ix->dims[ix->rank - 1];
    for (uint64_t p = 0; p < ix->numel; p++) {
        int64_t len = data->dims[b + p % k], v = veil__engine_get_i64(ix, p);
        if (v < -len || v >= len)
            return veil_errf(eb, VEIL_E_INVALID,
                             "index %lld out of range [-%lld, %lld) for dimension %zu",
                             (long long)v, (long long)len, (long long)len, (size_t)(b + p % k));
    }
    return VEIL_OK;
}

/* Offset in elements of the slice that tuple g (k checked indices at ix[g * k]) names. */
static uint64_t tuple_off(const struct veil__engine_tv *ix, uint64_t g, uint64_t k,
                          const int64_t *dims, const int64_t *st)
{
    uint64_t off = 0;
    for (uint64_t j = 0; j < k; j++) {
        int64_t v = veil__engine_get_i64(ix, g * k + j);
        off += (uint64_t)(v < 0 ? v + dims[j] : v) * (uint64_t)st[j];
    }
    return off;
}

veil_err veil__engine_gather_nd_infer(struct veil__engine_ictx *c)
{
    const struct veil__engine_tv *d = &c->in[0], *ix = &c->in[1];
    size_t r = d->rank, q = ix->rank;
    int64_t b = veil__engine_attr_i(c->n, "batch_dims", 0);
    if (!veil__engine_dt_is_index(ix->dt))
        return veil_errf(c->eb, VEIL_E_INVALID, "indices must be int32 or int64");
    if (r < 1 || q < 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "data and indices must have rank 1 or more");
    if (b < 0 || (uint64_t)b >= (r < q ? r : q))
        return veil_errf(c->eb, VEIL_E_INVALID, "batch_dims %lld out of range for ranks %zu, %zu",
                         (long long)b, r, q);
    int64_t k = ix->dims[q - 1];
    if (k < 1 || k > (int64_t)r - b)
        return veil_errf(c->eb, VEIL_E_INVALID, "indices' last dimension %lld not in [1, %lld]",
                         (long long)k, (long long)((int64_t)r - b));
    for (size_t i = 0; i < (size_t)b; i++)
        if (ix->dims[i] != d->dims[i])
            return veil_errf(c->eb, VEIL_E_INVALID, "batch dimension %zu differs", i);
    size_t orank = q - 1 + r - (size_t)b - (size_t)k;
    if (orank > VEIL__ENGINE_RANK)
        return veil_errf(c->eb, VEIL_E_LIMIT, "output rank too large");
    c->out[0].dt = d->dt;
    c->out[0].rank = 0;
    for (size_t i = 0; i < q - 1; i++)
        c->out[0].dims[c->out[0].rank++] = ix->dims[i];
    for (size_t i = (size_t)(b + k); i < r; i++)
        c->out[0].dims[c->out[0].rank++] = d->dims[i];
    c->kp->gather_nd.batch_dims = b;
    return VEIL_OK;
}

veil_err veil__engine_gather_nd_exec(struct veil__engine_kctx *c,
                                     const struct veil__engine_kparams *kp)
{
    const struct veil__engine_tv *d = &c->in[0], *ix = &c->in[1];
    size_t b = (size_t)kp->gather_nd.batch_dims, es = veil_dtype_size(d->dt);
    uint64_t k = (uint64_t)ix->dims[ix->rank - 1];
    int64_t st[VEIL__ENGINE_RANK];
    veil_err rc = check_tuples(d, ix, b, c->eb);
    if (rc != VEIL_OK)
        return rc;
    veil__engine_strides_of(d->dims, d->rank, st);
    uint64_t batches = veil__engine_numel(d->dims, b), tuples = ix->numel / k;
    uint64_t per_batch = batches > 0 ? tuples / batches : 0;
    uint64_t slice = veil__engine_numel(d->dims + b + k, d->rank - b - (size_t)k);
    uint64_t bstride = b > 0 ? (uint64_t)st[b - 1] : 0;
    for (uint64_t g = 0; g < tuples; g++) {
        uint64_t off = (g / per_batch) * bstride + tuple_off(ix, g, k, d->dims + b, st + b);
        if (slice > 0)
            memcpy((uint8_t *)c->out[0].data + g * slice * es, (const uint8_t *)d->data + off * es,
                   (size_t)(slice * es));
    }
    return VEIL_OK;
}

veil_err veil__engine_scatter_nd_infer(struct veil__engine_ictx *c)
{
    const struct veil__engine_tv *d = &c->in[0], *ix = &c->in[1], *up = &c->in[2];
    size_t r = d->rank, q = ix->rank;
    if (!veil__engine_dt_is_index(ix->dt))
        return veil_errf(c->eb, VEIL_E_INVALID, "indices must be int32 or int64");
    if (q < 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "indices must have rank 1 or more");
    int64_t k = ix->dims[q - 1];
    if (k < 0 || k > (int64_t)r)
        return veil_errf(c->eb, VEIL_E_INVALID, "indices' last dimension %lld exceeds rank %zu",
                         (long long)k, r);
    /* updates.shape = indices.shape[:-1] + data.shape[k:] */
    bool ok = up->dt == d->dt && up->rank == q - 1 + r - (size_t)k;
    for (size_t i = 0; ok && i < up->rank; i++)
        ok = up->dims[i] == (i < q - 1 ? ix->dims[i] : d->dims[(size_t)k + i - (q - 1)]);
    if (!ok)
        return veil_errf(c->eb, VEIL_E_INVALID,
                         "updates must have shape indices[:-1] + data[k:] and data's type");
    veil_err rc = reduction_of(c, d->dt, &c->kp->scatter.reduction);
    if (rc != VEIL_OK)
        return rc;
    c->out[0] = *d;
    return VEIL_OK;
}

veil_err veil__engine_scatter_nd_exec(struct veil__engine_kctx *c,
                                      const struct veil__engine_kparams *kp)
{
    const struct veil__engine_tv *d = &c->in[0], *ix = &c->in[1], *up = &c->in[2];
    size_t es = veil_dtype_size(d->dt);
    uint64_t k = (uint64_t)ix->dims[ix->rank - 1];
    int64_t st[VEIL__ENGINE_RANK];
    veil_err rc = check_tuples(d, ix, 0, c->eb);
    if (rc != VEIL_OK)
        return rc;
    copy_data(c);
    veil__engine_strides_of(d->dims, d->rank, st);
    uint64_t slice = veil__engine_numel(d->dims + k, d->rank - (size_t)k);
    uint64_t tuples = veil__engine_numel(ix->dims, ix->rank - 1);
    for (uint64_t g = 0; g < tuples; g++) {
        uint64_t off = tuple_off(ix, g, k, d->dims, st);
        if (kp->scatter.reduction == RED_NONE) {
            if (slice > 0)
                memcpy((uint8_t *)c->out[0].data + off * es,
                       (const uint8_t *)up->data + g * slice * es, (size_t)(slice * es));
            continue;
        }
        for (uint64_t s = 0; s < slice; s++)
            reduce_at(&c->out[0], off + s, up, g * slice + s, kp->scatter.reduction);
    }
    return VEIL_OK;
}

/* ---- OneHot ---- */

veil_err veil__engine_onehot_infer(struct veil__engine_ictx *c)
{
    const struct veil__engine_tv *ix = &c->in[0], *dep = &c->in[1], *val = &c->in[2];
    size_t r = ix->rank, ax;
    if (!veil__engine_dt_is_numeric(ix->dt) || !veil__engine_dt_is_numeric(dep->dt))
        return veil_errf(c->eb, VEIL_E_INVALID, "indices and depth must be numeric");
    if (dep->numel != 1 || dep->rank > 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "depth must hold one value");
    if (val->rank != 1 || val->numel != 2)
        return veil_errf(c->eb, VEIL_E_INVALID, "values must hold [off_value, on_value]");
    if (r + 1 > VEIL__ENGINE_RANK)
        return veil_errf(c->eb, VEIL_E_LIMIT, "output rank too large");
    veil_err rc = veil__engine_norm_axis(veil__engine_attr_i(c->n, "axis", -1), r + 1, &ax, c->eb);
    if (rc != VEIL_OK)
        return rc;
    /* A non-integer depth is cast to int64 (truncated), as the spec says. */
    int64_t depth = veil__engine_get_i64(dep, 0);
    if (depth < 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "depth %lld must be positive", (long long)depth);
    c->out[0].dt = val->dt;
    c->out[0].rank = r + 1;
    for (size_t i = 0, k = 0; i <= r; i++)
        c->out[0].dims[i] = i == ax ? depth : ix->dims[k++];
    c->kp->onehot.axis = (int64_t)ax;
    c->kp->onehot.depth = depth;
    return VEIL_OK;
}

veil_err veil__engine_onehot_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp)
{
    const struct veil__engine_tv *ix = &c->in[0];
    size_t ax = (size_t)kp->onehot.axis, es = veil_dtype_size(c->out[0].dt);
    int64_t depth = kp->onehot.depth;
    const uint8_t *off = c->in[2].data, *on = off + es;
    uint8_t *y = c->out[0].data;
    uint64_t inner = veil__engine_numel(ix->dims + ax, ix->rank - ax);
    for (uint64_t i = 0; i < c->out[0].numel; i++)
        memcpy(y + i * es, off, es);
    for (uint64_t t = 0; t < ix->numel; t++) {
        int64_t v = veil__engine_get_i64(ix, t);
        if (v < 0)
            v += depth;
        if (v < 0 || v >= depth)
            continue;
        uint64_t o = t / inner, in = t % inner;
        memcpy(y + ((o * (uint64_t)depth + (uint64_t)v) * inner + in) * es, on, es);
    }
    return VEIL_OK;
}
