/*
 * Shape and data-movement operators in plain C: Shape, Size, Flatten, Reshape, Squeeze,
 * Unsqueeze, Transpose, Concat, Split, Slice, Gather, GatherElements, GatherND,
 * ScatterElements, ScatterND, Tile, Trilu, DepthToSpace, SpaceToDepth, Constant,
 * ConstantOfShape, EyeLike, OneHot, Range, Pad, Resize, CumSum and Einsum. Operators whose
 * outputs' shapes depend on input values read those values at plan time (the operator table
 * marks them), so shapes are known before anything runs. The gathers and scatters check every
 * index at run time and fail the run on one out of range, before reading or writing anything.
 */
#include "engine_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static veil_err norm_axis(int64_t axis, size_t rank, size_t *out, struct veil_errbuf *eb)
{
    int64_t r = (int64_t)rank;
    *out = 0;
    if (axis < -r || axis >= r)
        return veil_errf(eb, VEIL_E_INVALID, "axis %lld out of range for rank %zu", (long long)axis,
                         rank);
    *out = (size_t)(axis < 0 ? axis + r : axis);
    return VEIL_OK;
}

/* Reads a 1-D integer tensor of at most cap values. */
static veil_err read_ints(const struct veil__tv *t, int64_t *v, size_t cap, size_t *n,
                          struct veil_errbuf *eb)
{
    *n = 0;
    if ((t->dt != VEIL_DT_INT64 && t->dt != VEIL_DT_INT32) || t->rank > 1 || t->numel > cap)
        return veil_errf(eb, VEIL_E_INVALID, "expected at most %zu int64 values", cap);
    for (uint64_t i = 0; i < t->numel; i++)
        v[i] = veil__get_i64(t, i);
    *n = (size_t)t->numel;
    return VEIL_OK;
}

static bool has_in(const struct veil__ictx *c, size_t i)
{
    return i < c->n_in && c->n->in[i] >= 0;
}

static void strides_of(const int64_t *dims, size_t rank, int64_t *st)
{
    int64_t s = 1;
    for (size_t i = rank; i-- > 0;) {
        st[i] = s;
        s *= dims[i];
    }
}

/* ---- Shape, Size ---- */

static veil_err shape_infer(struct veil__ictx *c)
{
    int64_t r = (int64_t)c->in[0].rank;
    int64_t start = veil__attr_i(c->n, "start", 0), end = veil__attr_i(c->n, "end", r);
    if (start < 0)
        start += r;
    if (end < 0)
        end += r;
    start = start < 0 ? 0 : start > r ? r : start;
    end = end < 0 ? 0 : end > r ? r : end;
    if (end < start)
        end = start;
    c->kp->i[0] = start;
    c->out[0].dt = VEIL_DT_INT64;
    c->out[0].rank = 1;
    c->out[0].dims[0] = end - start;
    return VEIL_OK;
}

static veil_err shape_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    for (int64_t i = 0; i < c->out[0].dims[0]; i++)
        ((int64_t *)c->out[0].data)[i] = c->in[0].dims[kp->i[0] + i];
    return VEIL_OK;
}

static veil_err size_infer(struct veil__ictx *c)
{
    c->out[0].dt = VEIL_DT_INT64;
    c->out[0].rank = 0;
    return VEIL_OK;
}

static veil_err size_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    (void)kp;
    *(int64_t *)c->out[0].data = (int64_t)c->in[0].numel;
    return VEIL_OK;
}

/* ---- Views: Flatten, Reshape, Squeeze, Unsqueeze ---- */

static veil_err flatten_infer(struct veil__ictx *c)
{
    int64_t r = (int64_t)c->in[0].rank, axis = veil__attr_i(c->n, "axis", 1);
    if (axis < -r || axis > r)
        return veil_errf(c->eb, VEIL_E_INVALID, "axis %lld out of range", (long long)axis);
    if (axis < 0)
        axis += r;
    int64_t a = 1, b = 1;
    for (int64_t i = 0; i < r; i++) {
        if (i < axis)
            a *= c->in[0].dims[i];
        else
            b *= c->in[0].dims[i];
    }
    c->out[0] = c->in[0];
    c->out[0].rank = 2;
    c->out[0].dims[0] = a;
    c->out[0].dims[1] = b;
    return VEIL_OK;
}

static veil_err reshape_infer(struct veil__ictx *c)
{
    int64_t shp[VEIL__ENG_RANK];
    size_t n;
    veil_err rc = read_ints(&c->in[1], shp, VEIL__ENG_RANK, &n, c->eb);
    if (rc != VEIL_OK)
        return rc;
    bool allowzero = veil__attr_i(c->n, "allowzero", 0) != 0;
    int64_t infer_at = -1;
    uint64_t known = 1;
    for (size_t i = 0; i < n; i++) {
        if (shp[i] == 0 && !allowzero) {
            if (i >= c->in[0].rank)
                return veil_errf(c->eb, VEIL_E_INVALID, "shape copies a missing dimension");
            shp[i] = c->in[0].dims[i];
        }
        if (shp[i] == -1) {
            if (infer_at >= 0)
                return veil_errf(c->eb, VEIL_E_INVALID, "shape has more than one -1");
            infer_at = (int64_t)i;
            continue;
        }
        if (shp[i] < 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "shape has a negative dimension");
        if (__builtin_mul_overflow(known, (uint64_t)shp[i], &known))
            return veil_errf(c->eb, VEIL_E_LIMIT, "shape is too large");
    }
    if (infer_at >= 0) {
        if (known == 0 || c->in[0].numel % known != 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "cannot infer -1 in shape");
        shp[infer_at] = (int64_t)(c->in[0].numel / known);
        known *= (uint64_t)shp[infer_at];
    }
    if (known != c->in[0].numel)
        return veil_errf(c->eb, VEIL_E_INVALID, "shape has %llu elements, input has %llu",
                         (unsigned long long)known, (unsigned long long)c->in[0].numel);
    c->out[0] = c->in[0];
    c->out[0].rank = n;
    memcpy(c->out[0].dims, shp, n * sizeof(int64_t));
    return VEIL_OK;
}

static veil_err axes_of(struct veil__ictx *c, size_t in_idx, int64_t *axes, size_t *n)
{
    *n = 0;
    if (c->opset >= 13) {
        if (has_in(c, in_idx))
            return read_ints(&c->in[in_idx], axes, VEIL__ENG_RANK, n, c->eb);
        return VEIL_OK;
    }
    const struct veil__attr *a = veil__attr_typed(c->n, "axes", VEIL_ONNX_ATTR_INTS);
    if (a == NULL)
        return VEIL_OK;
    if (a->n > VEIL__ENG_RANK)
        return veil_errf(c->eb, VEIL_E_INVALID, "too many axes");
    memcpy(axes, a->ints, a->n * sizeof(int64_t));
    *n = a->n;
    return VEIL_OK;
}

static veil_err squeeze_infer(struct veil__ictx *c)
{
    int64_t axes[VEIL__ENG_RANK];
    size_t na;
    veil_err rc = axes_of(c, 1, axes, &na);
    if (rc != VEIL_OK)
        return rc;
    bool drop[VEIL__ENG_RANK] = {false};
    for (size_t i = 0; i < na; i++) {
        size_t ax;
        if ((rc = norm_axis(axes[i], c->in[0].rank, &ax, c->eb)) != VEIL_OK)
            return rc;
        if (c->in[0].dims[ax] != 1)
            return veil_errf(c->eb, VEIL_E_INVALID, "cannot squeeze dimension %zu of size %lld", ax,
                             (long long)c->in[0].dims[ax]);
        drop[ax] = true;
    }
    c->out[0] = c->in[0];
    c->out[0].rank = 0;
    for (size_t i = 0; i < c->in[0].rank; i++)
        if (na > 0 ? !drop[i] : c->in[0].dims[i] != 1)
            c->out[0].dims[c->out[0].rank++] = c->in[0].dims[i];
    return VEIL_OK;
}

static veil_err unsqueeze_infer(struct veil__ictx *c)
{
    int64_t axes[VEIL__ENG_RANK];
    size_t na;
    veil_err rc = axes_of(c, 1, axes, &na);
    if (rc != VEIL_OK)
        return rc;
    size_t r = c->in[0].rank + na;
    if (na == 0 || r > VEIL__ENG_RANK)
        return veil_errf(c->eb, VEIL_E_INVALID, "bad axes for Unsqueeze");
    bool ins[VEIL__ENG_RANK] = {false};
    for (size_t i = 0; i < na; i++) {
        size_t ax;
        if ((rc = norm_axis(axes[i], r, &ax, c->eb)) != VEIL_OK)
            return rc;
        if (ins[ax])
            return veil_errf(c->eb, VEIL_E_INVALID, "axis repeated");
        ins[ax] = true;
    }
    c->out[0] = c->in[0];
    c->out[0].rank = r;
    for (size_t i = 0, k = 0; i < r; i++)
        c->out[0].dims[i] = ins[i] ? 1 : c->in[0].dims[k++];
    return VEIL_OK;
}

/* ---- Strided copies: Transpose and Slice ---- */

struct sjob {
    const uint8_t *in;
    uint8_t *out;
    size_t es, r;
    int64_t dims[VEIL__ENG_RANK];
    int64_t ist[VEIL__ENG_RANK];
    int64_t base;
};

static void strided_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct sjob *j = ud;
    int64_t len = j->dims[j->r - 1], s = j->ist[j->r - 1];
    for (uint64_t row = lo; row < hi; row++) {
        int64_t off = j->base;
        uint64_t q = row;
        for (size_t i = j->r - 1; i-- > 0;) {
            off += (int64_t)(q % (uint64_t)j->dims[i]) * j->ist[i];
            q /= (uint64_t)j->dims[i];
        }
        uint8_t *o = j->out + row * (uint64_t)len * j->es;
        if (j->es == 4) {
            const float *src = (const float *)(const void *)j->in + off;
            float *dst = (float *)(void *)o;
            if (s == 1)
                memcpy(dst, src, (size_t)len * 4);
            else
                for (int64_t i = 0; i < len; i++)
                    dst[i] = src[i * s];
        } else {
            for (int64_t i = 0; i < len; i++)
                memcpy(o + (size_t)i * j->es, j->in + (size_t)(off + i * s) * j->es, j->es);
        }
    }
}

static void strided_run(struct sjob *j, const struct veil__tv *out)
{
    if (out->numel == 0)
        return;
    if (j->r == 0) {
        j->r = 1;
        j->dims[0] = 1;
        j->ist[0] = 1;
    }
    uint64_t len = (uint64_t)j->dims[j->r - 1];
    veil__parallel(out->numel / len, len > 4096 ? 1 : 4096 / len, strided_range, j);
}

veil_err veil__transpose_perm(const struct veil__node *n, size_t r, size_t *perm,
                              struct veil_errbuf *eb)
{
    const struct veil__attr *a = veil__attr_typed(n, "perm", VEIL_ONNX_ATTR_INTS);
    bool used[VEIL__ENG_RANK] = {false};
    if (r > VEIL__ENG_RANK || (a != NULL && a->n != r))
        return veil_errf(eb, VEIL_E_INVALID, "perm has %zu entries for rank %zu",
                         a != NULL ? a->n : r, r);
    for (size_t i = 0; i < r; i++) {
        int64_t p = a != NULL ? a->ints[i] : (int64_t)(r - 1 - i);
        size_t ax;
        veil_err rc = norm_axis(p, r, &ax, eb);
        if (rc != VEIL_OK)
            return rc;
        if (used[ax])
            return veil_errf(eb, VEIL_E_INVALID, "perm repeats axis %zu", ax);
        used[ax] = true;
        perm[i] = ax;
    }
    return VEIL_OK;
}

static veil_err transpose_infer(struct veil__ictx *c)
{
    size_t r = c->in[0].rank, perm[VEIL__ENG_RANK];
    veil_err rc = veil__transpose_perm(c->n, r, perm, c->eb);
    if (rc != VEIL_OK)
        return rc;
    c->out[0] = c->in[0];
    for (size_t i = 0; i < r; i++) {
        c->kp->i[i] = (int64_t)perm[i];
        c->out[0].dims[i] = c->in[0].dims[perm[i]];
    }
    return VEIL_OK;
}

static veil_err transpose_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    struct sjob j;
    int64_t st[VEIL__ENG_RANK];
    strides_of(c->in[0].dims, c->in[0].rank, st);
    j.in = c->in[0].data;
    j.out = c->out[0].data;
    j.es = veil_dtype_size(c->in[0].dt);
    j.r = c->in[0].rank;
    j.base = 0;
    for (size_t i = 0; i < j.r; i++) {
        j.dims[i] = c->out[0].dims[i];
        j.ist[i] = st[kp->i[i]];
    }
    strided_run(&j, &c->out[0]);
    return VEIL_OK;
}

static veil_err slice_infer(struct veil__ictx *c)
{
    int64_t starts[VEIL__ENG_RANK], ends[VEIL__ENG_RANK], axes[VEIL__ENG_RANK],
        steps[VEIL__ENG_RANK];
    size_t ns = 0, ne = 0, na = 0, nst = 0;
    size_t r = c->in[0].rank;
    veil_err rc;
    if (!has_in(c, 1) || !has_in(c, 2))
        return veil_errf(c->eb, VEIL_E_INVALID, "Slice needs starts and ends");
    if ((rc = read_ints(&c->in[1], starts, VEIL__ENG_RANK, &ns, c->eb)) != VEIL_OK ||
        (rc = read_ints(&c->in[2], ends, VEIL__ENG_RANK, &ne, c->eb)) != VEIL_OK)
        return rc;
    if (ns != ne)
        return veil_errf(c->eb, VEIL_E_INVALID, "starts and ends differ in length");
    if (has_in(c, 3)) {
        if ((rc = read_ints(&c->in[3], axes, VEIL__ENG_RANK, &na, c->eb)) != VEIL_OK)
            return rc;
    } else {
        na = ns;
        for (size_t i = 0; i < ns; i++)
            axes[i] = (int64_t)i;
    }
    if (has_in(c, 4)) {
        if ((rc = read_ints(&c->in[4], steps, VEIL__ENG_RANK, &nst, c->eb)) != VEIL_OK)
            return rc;
    } else {
        nst = ns;
        for (size_t i = 0; i < ns; i++)
            steps[i] = 1;
    }
    if (na != ns || nst != ns)
        return veil_errf(c->eb, VEIL_E_INVALID, "Slice inputs differ in length");
    int64_t st[VEIL__ENG_RANK];
    strides_of(c->in[0].dims, r, st);
    c->out[0] = c->in[0];
    int64_t base = 0;
    bool seen[VEIL__ENG_RANK] = {false};
    for (size_t i = 0; i < r; i++)
        c->kp->v[0][i] = st[i];
    for (size_t i = 0; i < ns; i++) {
        size_t ax;
        if ((rc = norm_axis(axes[i], r, &ax, c->eb)) != VEIL_OK)
            return rc;
        if (seen[ax])
            return veil_errf(c->eb, VEIL_E_INVALID, "axis repeated");
        seen[ax] = true;
        int64_t d = c->in[0].dims[ax], s = starts[i], e = ends[i], step = steps[i];
        if (step == 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "step is 0");
        if (s < 0)
            s += d;
        if (e < 0 && e > INT64_MIN + d)
            e += d;
        else if (e < 0)
            e = -1;
        int64_t len;
        if (step > 0) {
            s = s < 0 ? 0 : s > d ? d : s;
            e = e < 0 ? 0 : e > d ? d : e;
            len = e > s ? (e - s + step - 1) / step : 0;
        } else {
            s = s < 0 ? -1 : s > d - 1 ? d - 1 : s;
            e = e < -1 ? -1 : e > d - 1 ? d - 1 : e;
            len = s > e ? (s - e + (-step) - 1) / (-step) : 0;
        }
        c->out[0].dims[ax] = len;
        if (len > 0)
            base += s * st[ax];
        c->kp->v[0][ax] = st[ax] * step;
    }
    c->kp->i[0] = base;
    return VEIL_OK;
}

static veil_err slice_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    struct sjob j;
    j.in = c->in[0].data;
    j.out = c->out[0].data;
    j.es = veil_dtype_size(c->in[0].dt);
    j.r = c->in[0].rank;
    j.base = kp->i[0];
    for (size_t i = 0; i < j.r; i++) {
        j.dims[i] = c->out[0].dims[i];
        j.ist[i] = kp->v[0][i];
    }
    strided_run(&j, &c->out[0]);
    return VEIL_OK;
}

/* ---- Concat, Split ---- */

static veil_err concat_infer(struct veil__ictx *c)
{
    if (c->n_in == 0 || !has_in(c, 0))
        return veil_errf(c->eb, VEIL_E_INVALID, "Concat needs inputs");
    size_t r = c->in[0].rank, ax;
    veil_err rc = norm_axis(veil__attr_i(c->n, "axis", 0), r, &ax, c->eb);
    if (rc != VEIL_OK)
        return rc;
    c->out[0] = c->in[0];
    int64_t total = 0;
    for (size_t i = 0; i < c->n_in; i++) {
        if (!has_in(c, i) || c->in[i].rank != r || c->in[i].dt != c->in[0].dt)
            return veil_errf(c->eb, VEIL_E_INVALID, "input %zu differs in rank or type", i);
        for (size_t d = 0; d < r; d++)
            if (d != ax && c->in[i].dims[d] != c->in[0].dims[d])
                return veil_errf(c->eb, VEIL_E_INVALID, "input %zu differs in dimension %zu", i, d);
        total += c->in[i].dims[ax];
    }
    c->out[0].dims[ax] = total;
    c->kp->i[0] = (int64_t)ax;
    return VEIL_OK;
}

static veil_err concat_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    size_t ax = (size_t)kp->i[0], es = veil_dtype_size(c->out[0].dt);
    uint64_t outer = 1, inner = 1;
    for (size_t d = 0; d < ax; d++)
        outer *= (uint64_t)c->out[0].dims[d];
    for (size_t d = ax + 1; d < c->out[0].rank; d++)
        inner *= (uint64_t)c->out[0].dims[d];
    size_t orow = (size_t)((uint64_t)c->out[0].dims[ax] * inner * es);
    size_t off = 0;
    for (size_t i = 0; i < c->n_in; i++) {
        size_t chunk = (size_t)((uint64_t)c->in[i].dims[ax] * inner * es);
        for (uint64_t o = 0; o < outer; o++)
            if (chunk > 0)
                memcpy((uint8_t *)c->out[0].data + o * orow + off,
                       (const uint8_t *)c->in[i].data + o * chunk, chunk);
        off += chunk;
    }
    return VEIL_OK;
}

static veil_err split_infer(struct veil__ictx *c)
{
    size_t r = c->in[0].rank, ax;
    veil_err rc = norm_axis(veil__attr_i(c->n, "axis", 0), r, &ax, c->eb);
    if (rc != VEIL_OK)
        return rc;
    int64_t sizes[8];
    size_t ns = 0;
    if (c->n_out > 8)
        return veil_errf(c->eb, VEIL_E_LIMIT, "too many outputs");
    if (c->opset >= 13 && has_in(c, 1)) {
        if ((rc = read_ints(&c->in[1], sizes, 8, &ns, c->eb)) != VEIL_OK)
            return rc;
    } else if (c->opset < 13 && veil__attr_typed(c->n, "split", VEIL_ONNX_ATTR_INTS) != NULL) {
        const struct veil__attr *a = veil__attr_typed(c->n, "split", VEIL_ONNX_ATTR_INTS);
        if (a->n > 8)
            return veil_errf(c->eb, VEIL_E_LIMIT, "too many splits");
        memcpy(sizes, a->ints, a->n * sizeof(int64_t));
        ns = a->n;
    } else {
        int64_t d = c->in[0].dims[ax], n = (int64_t)c->n_out;
        if (n == 0 || d % n != 0)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "dimension %lld does not split evenly into "
                             "%lld",
                             (long long)d, (long long)n);
        for (size_t i = 0; i < c->n_out; i++)
            sizes[i] = d / n;
        ns = c->n_out;
    }
    if (ns != c->n_out)
        return veil_errf(c->eb, VEIL_E_INVALID, "split has %zu sizes for %zu outputs", ns,
                         c->n_out);
    int64_t total = 0;
    for (size_t i = 0; i < ns; i++) {
        if (sizes[i] < 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "negative split");
        total += sizes[i];
        c->out[i] = c->in[0];
        c->out[i].dims[ax] = sizes[i];
    }
    if (total != c->in[0].dims[ax])
        return veil_errf(c->eb, VEIL_E_INVALID, "splits sum to %lld, dimension is %lld",
                         (long long)total, (long long)c->in[0].dims[ax]);
    c->kp->i[0] = (int64_t)ax;
    return VEIL_OK;
}

static veil_err split_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    size_t ax = (size_t)kp->i[0], es = veil_dtype_size(c->in[0].dt);
    uint64_t outer = 1, inner = 1;
    for (size_t d = 0; d < ax; d++)
        outer *= (uint64_t)c->in[0].dims[d];
    for (size_t d = ax + 1; d < c->in[0].rank; d++)
        inner *= (uint64_t)c->in[0].dims[d];
    size_t irow = (size_t)((uint64_t)c->in[0].dims[ax] * inner * es), off = 0;
    for (size_t i = 0; i < c->n_out; i++) {
        size_t chunk = (size_t)((uint64_t)c->out[i].dims[ax] * inner * es);
        if (c->n->out[i] >= 0)
            for (uint64_t o = 0; o < outer; o++)
                if (chunk > 0)
                    memcpy((uint8_t *)c->out[i].data + o * chunk,
                           (const uint8_t *)c->in[0].data + o * irow + off, chunk);
        off += chunk;
    }
    return VEIL_OK;
}

/* ---- Index checks and element-wise reductions shared by the gather and scatter family ---- */

static bool index_dt(enum veil_dtype dt)
{
    return dt == VEIL_DT_INT64 || dt == VEIL_DT_INT32;
}

/* Fails the run on the first index of ix outside [-len, len): hostile indices never read. */
static veil_err check_indices(const struct veil__tv *ix, int64_t len, struct veil_errbuf *eb)
{
    for (uint64_t k = 0; k < ix->numel; k++) {
        int64_t v = veil__get_i64(ix, k);
        if (v < -len || v >= len)
            return veil_errf(eb, VEIL_E_INVALID, "index %lld out of range [-%lld, %lld)",
                             (long long)v, (long long)len, (long long)len);
    }
    return VEIL_OK;
}

enum reduction { RED_NONE, RED_ADD, RED_MUL };

/*
 * The reduction attribute of ScatterElements and ScatterND (opset 16): none, add or mul. max
 * and min arrived in opset 18, beyond the engine's opsets.
 */
static veil_err reduction_of(struct veil__ictx *c, enum veil_dtype dt, int64_t *out)
{
    const char *s = veil__attr_s(c->n, "reduction", "none");
    *out = RED_NONE;
    if (strcmp(s, "add") == 0)
        *out = RED_ADD;
    else if (strcmp(s, "mul") == 0)
        *out = RED_MUL;
    else if (strcmp(s, "max") == 0 || strcmp(s, "min") == 0)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "reduction '%s' (opset 18)", s);
    else if (strcmp(s, "none") != 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "unknown reduction '%s'", s);
    if (*out != RED_NONE && c->opset < 16)
        return veil_errf(c->eb, VEIL_E_INVALID, "reduction '%s' needs opset 16", s);
    if (*out != RED_NONE && !veil__dt_is_numeric(dt))
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "reduction '%s' of %s", s, veil_dtype_name(dt));
    return VEIL_OK;
}

/*
 * Element i of o becomes o[i] (+ or *) u[k]. Floats go through double, whose 53 bits round a
 * single float sum or product exactly as float arithmetic would; integers wrap.
 */
static void reduce_at(struct veil__tv *o, uint64_t i, const struct veil__tv *u, uint64_t k,
                      int64_t red)
{
    if (veil__dt_is_float(o->dt)) {
        double a = veil__get_f64(o, i), b = veil__get_f64(u, k);
        veil__set_f64(o, i, red == RED_ADD ? a + b : a * b);
    } else {
        uint64_t a = (uint64_t)veil__get_i64(o, i), b = (uint64_t)veil__get_i64(u, k);
        veil__set_i64(o, i, (int64_t)(red == RED_ADD ? a + b : a * b));
    }
}

/* Copies what scatters into: data, unless the output was planned over it (in place). */
static void copy_data(struct veil__kctx *c)
{
    size_t nbytes = (size_t)c->out[0].numel * veil_dtype_size(c->out[0].dt);
    if (c->out[0].data != c->in[0].data && nbytes > 0)
        memcpy(c->out[0].data, c->in[0].data, nbytes);
}

/*
 * Scatters write over their data input when its storage dies here, unless the indices or the
 * updates are the same value (they would be overwritten while still being read).
 */
static veil_err scatter_prepare(struct veil__ictx *c, dnnl_engine_t eng, struct veil__step *st)
{
    (void)eng;
    (void)st;
    if (c->n->in[0] != c->n->in[1] && c->n->in[0] != c->n->in[2])
        (void)veil__inplace(c, 0);
    return VEIL_OK;
}

/* ---- Gather ---- */

static veil_err gather_infer(struct veil__ictx *c)
{
    size_t r = c->in[0].rank, ax;
    veil_err rc = norm_axis(veil__attr_i(c->n, "axis", 0), r, &ax, c->eb);
    if (rc != VEIL_OK)
        return rc;
    const struct veil__tv *ix = &c->in[1];
    if (ix->dt != VEIL_DT_INT64 && ix->dt != VEIL_DT_INT32)
        return veil_errf(c->eb, VEIL_E_INVALID, "indices must be int32 or int64");
    if (r - 1 + ix->rank > VEIL__ENG_RANK)
        return veil_errf(c->eb, VEIL_E_LIMIT, "output rank too large");
    c->out[0].dt = c->in[0].dt;
    c->out[0].rank = 0;
    for (size_t d = 0; d < ax; d++)
        c->out[0].dims[c->out[0].rank++] = c->in[0].dims[d];
    for (size_t d = 0; d < ix->rank; d++)
        c->out[0].dims[c->out[0].rank++] = ix->dims[d];
    for (size_t d = ax + 1; d < r; d++)
        c->out[0].dims[c->out[0].rank++] = c->in[0].dims[d];
    c->kp->i[0] = (int64_t)ax;
    return VEIL_OK;
}

struct gather_job {
    const struct veil__tv *idx;
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
        int64_t ix = veil__get_i64(j->idx, k);
        if (ix < 0)
            ix += j->len;
        memcpy(j->dst + t * j->chunk, j->src + (o * (uint64_t)j->len + (uint64_t)ix) * j->chunk,
               j->chunk);
    }
}

static veil_err gather_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    size_t ax = (size_t)kp->i[0], es = veil_dtype_size(c->in[0].dt);
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
    veil__parallel(outer * ni, chunk >= 1024 ? 8 : 8192, gather_range, &j);
    return VEIL_OK;
}

/* ---- Constant, ConstantOfShape, Range ---- */

static veil_err constant_infer(struct veil__ictx *c)
{
    const struct veil__attr *a;
    c->kp->i[0] = -1;
    if ((a = veil__attr_typed(c->n, "value", VEIL_ONNX_ATTR_TENSOR)) != NULL && a->tensor >= 0) {
        c->out[0] = c->g->values[a->tensor].c;
        c->kp->i[0] = a->tensor;
        return VEIL_OK;
    }
    if ((a = veil__attr_typed(c->n, "value_float", VEIL_ONNX_ATTR_FLOAT)) != NULL) {
        c->out[0].dt = VEIL_DT_FLOAT;
        c->out[0].rank = 0;
        c->kp->f[0] = a->f;
        c->kp->i[1] = 1;
        return VEIL_OK;
    }
    if ((a = veil__attr_typed(c->n, "value_int", VEIL_ONNX_ATTR_INT)) != NULL) {
        c->out[0].dt = VEIL_DT_INT64;
        c->out[0].rank = 0;
        c->kp->i[2] = a->i;
        c->kp->i[1] = 2;
        return VEIL_OK;
    }
    if ((a = veil__attr_typed(c->n, "value_floats", VEIL_ONNX_ATTR_FLOATS)) != NULL ||
        (a = veil__attr_typed(c->n, "value_ints", VEIL_ONNX_ATTR_INTS)) != NULL) {
        c->out[0].dt = a->type == VEIL_ONNX_ATTR_FLOATS ? VEIL_DT_FLOAT : VEIL_DT_INT64;
        c->out[0].rank = 1;
        c->out[0].dims[0] = (int64_t)a->n;
        c->kp->i[1] = a->type == VEIL_ONNX_ATTR_FLOATS ? 3 : 4;
        return VEIL_OK;
    }
    return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "Constant without a supported value attribute");
}

static veil_err constant_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    size_t nbytes = (size_t)c->out[0].numel * veil_dtype_size(c->out[0].dt);
    if (kp->i[0] >= 0) {
        if (nbytes > 0)
            memcpy(c->out[0].data, c->g->values[kp->i[0]].c.data, nbytes);
    } else if (kp->i[1] == 1) {
        *(float *)c->out[0].data = kp->f[0];
    } else if (kp->i[1] == 2) {
        *(int64_t *)c->out[0].data = kp->i[2];
    } else {
        const struct veil__attr *a =
            veil__attr_typed(c->n, kp->i[1] == 3 ? "value_floats" : "value_ints",
                             kp->i[1] == 3 ? VEIL_ONNX_ATTR_FLOATS : VEIL_ONNX_ATTR_INTS);
        if (nbytes > 0)
            memcpy(c->out[0].data, kp->i[1] == 3 ? (const void *)a->floats : (const void *)a->ints,
                   nbytes);
    }
    return VEIL_OK;
}

static veil_err cos_infer(struct veil__ictx *c)
{
    int64_t shp[VEIL__ENG_RANK];
    size_t n;
    veil_err rc = read_ints(&c->in[0], shp, VEIL__ENG_RANK, &n, c->eb);
    if (rc != VEIL_OK)
        return rc;
    const struct veil__attr *a = veil__attr_typed(c->n, "value", VEIL_ONNX_ATTR_TENSOR);
    c->out[0].dt = VEIL_DT_FLOAT;
    c->kp->i[0] = -1;
    if (a != NULL && a->tensor >= 0) {
        const struct veil__tv *t = &c->g->values[a->tensor].c;
        if (t->numel != 1)
            return veil_errf(c->eb, VEIL_E_INVALID, "value must have one element");
        c->out[0].dt = t->dt;
        c->kp->i[0] = a->tensor;
    }
    c->out[0].rank = n;
    for (size_t i = 0; i < n; i++) {
        if (shp[i] < 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "negative dimension");
        c->out[0].dims[i] = shp[i];
    }
    return VEIL_OK;
}

static veil_err cos_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    size_t es = veil_dtype_size(c->out[0].dt);
    uint8_t zero[8] = {0};
    const uint8_t *v = kp->i[0] >= 0 ? c->g->values[kp->i[0]].c.data : zero;
    for (uint64_t i = 0; i < c->out[0].numel; i++)
        memcpy((uint8_t *)c->out[0].data + i * es, v, es);
    return VEIL_OK;
}

static veil_err range_infer(struct veil__ictx *c)
{
    for (size_t i = 0; i < 3; i++)
        if (!has_in(c, i) || c->in[i].numel != 1 || c->in[i].dt != c->in[0].dt)
            return veil_errf(c->eb, VEIL_E_INVALID, "Range needs three scalars of one type");
    double s = veil__get_f64(&c->in[0], 0), l = veil__get_f64(&c->in[1], 0),
           d = veil__get_f64(&c->in[2], 0);
    if (d == 0 || !isfinite(s) || !isfinite(l) || !isfinite(d))
        return veil_errf(c->eb, VEIL_E_INVALID, "Range delta is 0 or a bound is not finite");
    double n = ceil((l - s) / d);
    if (n < 0)
        n = 0;
    if (n > 1e9)
        return veil_errf(c->eb, VEIL_E_LIMIT, "Range of %.0f elements", n);
    c->out[0].dt = c->in[0].dt;
    c->out[0].rank = 1;
    c->out[0].dims[0] = (int64_t)n;
    return VEIL_OK;
}

static veil_err range_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    (void)kp;
    bool fl = c->in[0].dt == VEIL_DT_FLOAT || c->in[0].dt == VEIL_DT_DOUBLE;
    for (uint64_t i = 0; i < c->out[0].numel; i++) {
        if (fl)
            veil__set_f64(&c->out[0], i,
                          veil__get_f64(&c->in[0], 0) + (double)i * veil__get_f64(&c->in[2], 0));
        else
            veil__set_i64(&c->out[0], i,
                          veil__get_i64(&c->in[0], 0) + (int64_t)i * veil__get_i64(&c->in[2], 0));
    }
    return VEIL_OK;
}

/* ---- Pad ---- */

static veil_err pad_infer(struct veil__ictx *c)
{
    size_t r = c->in[0].rank, n;
    int64_t pads[2 * VEIL__ENG_RANK];
    veil_err rc;
    const char *mode = veil__attr_s(c->n, "mode", "constant");
    if (strcmp(mode, "constant") == 0)
        c->kp->i[0] = 0;
    else if (strcmp(mode, "reflect") == 0)
        c->kp->i[0] = 1;
    else if (strcmp(mode, "edge") == 0)
        c->kp->i[0] = 2;
    else
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "mode '%s'", mode);
    if (!has_in(c, 1))
        return veil_errf(c->eb, VEIL_E_INVALID, "Pad needs pads");
    if ((rc = read_ints(&c->in[1], pads, 2 * VEIL__ENG_RANK, &n, c->eb)) != VEIL_OK)
        return rc;
    if (n != 2 * r)
        return veil_errf(c->eb, VEIL_E_INVALID, "pads has %zu values for rank %zu", n, r);
    if (has_in(c, 3))
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "Pad axes input");
    c->out[0] = c->in[0];
    for (size_t i = 0; i < r; i++) {
        int64_t d = c->in[0].dims[i] + pads[i] + pads[i + r];
        if (d < 0 || pads[i] > (1 << 24) || pads[i + r] > (1 << 24))
            return veil_errf(c->eb, VEIL_E_INVALID, "pads give a negative or huge dimension");
        if (c->kp->i[0] != 0 && (pads[i] < 0 || pads[i + r] < 0))
            return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "negative pads in mode '%s'", mode);
        if (c->kp->i[0] == 1 && d != c->in[0].dims[i] &&
            (pads[i] >= c->in[0].dims[i] || pads[i + r] >= c->in[0].dims[i]))
            return veil_errf(c->eb, VEIL_E_INVALID, "reflect pads must be below the dimension");
        if (c->kp->i[0] == 2 && d != c->in[0].dims[i] && c->in[0].dims[i] == 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "edge padding of an empty dimension");
        c->out[0].dims[i] = d;
        c->kp->v[0][i] = pads[i];
    }
    c->kp->f[0] = 0.0f;
    if (has_in(c, 2)) {
        if (c->in[2].data == NULL || c->in[2].numel != 1 || c->in[2].dt != c->in[0].dt)
            return veil_errf(c->eb, VEIL_E_UNSUPPORTED,
                             "constant_value must be a constant "
                             "scalar of the input's type");
        c->kp->f[0] = (float)veil__get_f64(&c->in[2], 0);
        c->kp->i[1] = veil__get_i64(&c->in[2], 0);
    }
    return VEIL_OK;
}

static veil_err pad_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    size_t r = c->in[0].rank, es = veil_dtype_size(c->in[0].dt);
    int64_t ist[VEIL__ENG_RANK];
    strides_of(c->in[0].dims, r, ist);
    uint8_t cval[8] = {0};
    struct veil__tv cv = {c->in[0].dt, 0, {0}, 1, cval};
    if (c->in[0].dt == VEIL_DT_FLOAT || c->in[0].dt == VEIL_DT_DOUBLE)
        veil__set_f64(&cv, 0, kp->f[0]);
    else
        veil__set_i64(&cv, 0, kp->i[1]);
    for (uint64_t o = 0; o < c->out[0].numel; o++) {
        uint64_t q = o;
        int64_t off = 0;
        bool outside = false;
        for (size_t i = r; i-- > 0;) {
            int64_t d = c->in[0].dims[i];
            int64_t x = (int64_t)(q % (uint64_t)c->out[0].dims[i]) - kp->v[0][i];
            q /= (uint64_t)c->out[0].dims[i];
            if (x < 0 || x >= d) {
                if (kp->i[0] == 0) {
                    outside = true;
                    break;
                }
                if (kp->i[0] == 1) {
                    if (d == 1)
                        x = 0;
                    while (x < 0 || x >= d)
                        x = x < 0 ? -x : 2 * (d - 1) - x;
                } else {
                    x = x < 0 ? 0 : d - 1;
                }
            }
            off += x * ist[i];
        }
        memcpy((uint8_t *)c->out[0].data + o * es,
               outside ? cval : (const uint8_t *)c->in[0].data + (size_t)off * es, es);
    }
    return VEIL_OK;
}

/* ---- Resize (nearest, linear, cubic) ---- */

/*
 * One output coordinate of one axis: up to four input positions (clamped into the input,
 * which is ONNX's edge padding) with their weights, zero weights dropped. out marks a
 * coordinate outside the input under tf_crop_and_resize: every output that uses it is
 * extrapolation_value.
 */
struct resize_axis {
    int64_t i[4];
    float w[4];
    uint32_t n;
    bool out;
};

enum { RZ_NEAREST, RZ_LINEAR, RZ_CUBIC };
enum { CT_HALF_PIXEL, CT_PYTORCH, CT_ALIGN, CT_ASYMMETRIC, CT_TF_NN, CT_CROP };

struct resize_cfg {
    int mode, ctm, nm;
    double a;  /* cubic_coeff_a */
    bool excl; /* exclude_outside */
};

static int name_index(const char *s, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return (int)i;
    return -1;
}

/*
 * The original coordinate of output coordinate x on an axis resized from in to out elements
 * at scale s; [r0, r1] is the axis' crop (tf_crop_and_resize only).
 */
static double resize_coord(int ctm, int64_t x, int64_t in, int64_t out, double s, double r0,
                           double r1)
{
    switch (ctm) {
    case CT_HALF_PIXEL:
        return ((double)x + 0.5) / s - 0.5;
    case CT_PYTORCH:
        return out > 1 ? ((double)x + 0.5) / s - 0.5 : 0.0;
    case CT_ALIGN: {
        double den = (double)in * s - 1.0;
        return den <= 0 ? 0.0 : (double)x * (double)(in - 1) / den;
    }
    case CT_ASYMMETRIC:
        return (double)x / s;
    case CT_TF_NN:
        return ((double)x + 0.5) / s;
    default:
        return out > 1 ? r0 * (double)(in - 1) +
                             (double)x * (r1 - r0) * (double)(in - 1) / (double)(out - 1)
                       : 0.5 * (r0 + r1) * (double)(in - 1);
    }
}

/*
 * Keys' cubic convolution weights, with coefficient a, of the four taps around a point a
 * fraction t in (0, 1] past the second tap.
 */
static void cubic_coeffs(double t, double a, double *c)
{
    double s = 1.0 + t, u = 1.0 - t, v = 2.0 - t;
    c[0] = ((a * s - 5.0 * a) * s + 8.0 * a) * s - 4.0 * a;
    c[1] = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0;
    c[2] = ((a + 2.0) * u - (a + 3.0)) * u * u + 1.0;
    c[3] = ((a * v - 5.0 * a) * v + 8.0 * a) * v - 4.0 * a;
}

static void resize_tap(struct resize_axis *e, int64_t i, double w, int64_t in)
{
    if (w == 0.0)
        return;
    e->i[e->n] = i < 0 ? 0 : i >= in ? in - 1 : i;
    e->w[e->n++] = (float)w;
}

/* The taps of original coordinate xo on an axis of in > 0 elements. */
static void resize_entry(const struct resize_cfg *cf, double xo, int64_t in, struct resize_axis *e)
{
    double hi = (double)(in - 1);
    memset(e, 0, sizeof(*e));
    if (cf->ctm == CT_CROP && !(xo >= 0.0 && xo <= hi)) {
        e->out = true;
        return;
    }
    if (cf->mode == RZ_NEAREST) {
        /* Clamping first changes no result (the index is clamped anyway) and keeps the
         * conversion to an integer defined. */
        xo = xo < -1.0 ? -1.0 : xo > (double)in ? (double)in : xo;
        double fl = floor(xo), fr = xo - fl;
        int64_t ix;
        switch (cf->nm) {
        case 0:
            ix = fr == 0.5 ? (int64_t)fl : (int64_t)floor(xo + 0.5);
            break;
        case 1:
            ix = fr == 0.5 ? (int64_t)fl + 1 : (int64_t)floor(xo + 0.5);
            break;
        case 2:
            ix = (int64_t)fl;
            break;
        default:
            ix = (int64_t)ceil(xo);
            break;
        }
        resize_tap(e, ix, 1.0, in);
        return;
    }
    if (cf->mode == RZ_LINEAR) {
        xo = xo < 0.0 ? 0.0 : xo > hi ? hi : xo;
        int64_t i0 = (int64_t)floor(xo);
        double w = xo - (double)i0;
        resize_tap(e, i0, 1.0 - w, in);
        resize_tap(e, i0 + 1, w, in);
        return;
    }
    /*
     * Cubic: the four nearest positions of the edge-padded axis (two padding elements on
     * each side), ties to the lower ones, so the point lies a fraction t in (0, 1] past the
     * second; far outside the axis the window stops at the padding's end, as in ONNX's
     * reference.
     */
    double fl = floor(xo), t = xo - fl;
    if (t == 0.0) {
        t = 1.0;
        fl -= 1.0;
    }
    double start = fl - 1.0;
    start = start < -2.0 ? -2.0 : start > (double)in - 2.0 ? (double)in - 2.0 : start;
    int64_t s0 = (int64_t)start;
    double c[4], sum = 0.0;
    cubic_coeffs(t, cf->a, c);
    if (cf->excl) {
        for (int k = 0; k < 4; k++) {
            if (s0 + k < 0 || s0 + k >= in)
                c[k] = 0.0;
            sum += c[k];
        }
        for (int k = 0; k < 4 && sum != 0.0; k++)
            c[k] /= sum;
    }
    for (int k = 0; k < 4; k++)
        resize_tap(e, s0 + k, c[k], in);
}

static veil_err resize_infer(struct veil__ictx *c)
{
    static const char *const modes[] = {"nearest", "linear", "cubic"};
    static const char *const ctms[] = {"half_pixel", "pytorch_half_pixel",   "align_corners",
                                       "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize"};
    static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    size_t r = c->in[0].rank;
    const char *mode = veil__attr_s(c->n, "mode", "nearest");
    const char *ctm = veil__attr_s(c->n, "coordinate_transformation_mode", "half_pixel");
    const char *nm = veil__attr_s(c->n, "nearest_mode", "round_prefer_floor");
    struct resize_cfg cf;
    double scales[VEIL__ENG_RANK], r0[VEIL__ENG_RANK], r1[VEIL__ENG_RANK];
    int64_t sizes[VEIL__ENG_RANK];
    size_t n;
    veil_err rc;
    if (c->in[0].dt != VEIL_DT_FLOAT)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "Resize of %s", veil_dtype_name(c->in[0].dt));
    cf.mode = name_index(mode, modes, 3);
    cf.ctm = name_index(ctm, ctms, 6);
    cf.nm = name_index(nm, nms, 4);
    cf.a = veil__attr_f(c->n, "cubic_coeff_a", -0.75f);
    cf.excl = veil__attr_i(c->n, "exclude_outside", 0) != 0;
    if (cf.mode < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "mode '%s' (nearest, linear or cubic)", mode);
    if (cf.ctm < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "coordinate_transformation_mode '%s'", ctm);
    if (cf.nm < 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "nearest_mode '%s'", nm);
    /*
     * Before opset 11 (Resize 10 and Upsample, see legacy.c) coordinates were asymmetric and
     * nearest rounded down on an enlarged axis and up on a shrunk one (ONNX Runtime's
     * "simple" mode; ONNX's reference only defines whole enlargements, where both agree).
     */
    bool simple = c->opset < 11;
    if (simple)
        cf.ctm = name_index("asymmetric", ctms, 6);
    if (!isfinite(cf.a))
        return veil_errf(c->eb, VEIL_E_INVALID, "cubic_coeff_a is not finite");
    float ext = veil__attr_f(c->n, "extrapolation_value", 0.0f);
    for (size_t i = 0; i < r; i++) {
        r0[i] = 0.0;
        r1[i] = 1.0;
    }
    /* roi only takes effect under tf_crop_and_resize: [start_1..start_r, end_1..end_r]. */
    if (cf.ctm == CT_CROP && has_in(c, 1) && c->in[1].numel > 0) {
        const struct veil__tv *roi = &c->in[1];
        if ((roi->dt != VEIL_DT_FLOAT && roi->dt != VEIL_DT_DOUBLE) || roi->numel != 2 * r)
            return veil_errf(c->eb, VEIL_E_INVALID, "roi must hold %zu floats", 2 * r);
        for (size_t i = 0; i < r; i++) {
            r0[i] = veil__get_f64(roi, i);
            r1[i] = veil__get_f64(roi, i + r);
            if (!isfinite(r0[i]) || !isfinite(r1[i]))
                return veil_errf(c->eb, VEIL_E_INVALID, "roi is not finite");
        }
    }
    c->out[0] = c->in[0];
    if (has_in(c, 3) && c->in[3].numel > 0) {
        if ((rc = read_ints(&c->in[3], sizes, VEIL__ENG_RANK, &n, c->eb)) != VEIL_OK)
            return rc;
        if (n != r)
            return veil_errf(c->eb, VEIL_E_INVALID, "sizes has %zu values for rank %zu", n, r);
        for (size_t i = 0; i < r; i++) {
            if (sizes[i] < 0 || sizes[i] > (1 << 24))
                return veil_errf(c->eb, VEIL_E_INVALID, "bad size");
            c->out[0].dims[i] = sizes[i];
            scales[i] =
                c->in[0].dims[i] > 0 ? (double)((float)sizes[i] / (float)c->in[0].dims[i]) : 1.0;
        }
    } else if (has_in(c, 2) && c->in[2].numel > 0) {
        if (c->in[2].dt != VEIL_DT_FLOAT || c->in[2].numel != r)
            return veil_errf(c->eb, VEIL_E_INVALID, "scales must hold %zu floats", r);
        for (size_t i = 0; i < r; i++) {
            scales[i] = ((const float *)c->in[2].data)[i];
            /*
             * floor(length * scale) under every mode, tf_crop_and_resize included: ONNX
             * Runtime and ONNX's reference implementation both size the output this way.
             */
            double d = floor((double)c->in[0].dims[i] * scales[i]);
            if (!(scales[i] > 0) || !isfinite(scales[i]) || !(d >= 0) || d > (1 << 24))
                return veil_errf(c->eb, VEIL_E_INVALID, "bad scale");
            c->out[0].dims[i] = (int64_t)d;
        }
    } else {
        return veil_errf(c->eb, VEIL_E_INVALID, "Resize needs scales or sizes");
    }
    uint64_t total = 0;
    for (size_t i = 0; i < r; i++) {
        if (c->in[0].dims[i] == 0 && c->out[0].dims[i] > 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "axis %zu is empty and cannot be resized", i);
        total += (uint64_t)c->out[0].dims[i];
    }
    struct resize_axis *tab = veil_allocarray(total + 1, sizeof(*tab));
    if (tab == NULL)
        return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for Resize tables");
    veil_free(c->kp->ptr);
    c->kp->ptr = tab;
    c->kp->f[0] = ext;
    for (size_t i = 0; i < r; i++) {
        int64_t in = c->in[0].dims[i], out = c->out[0].dims[i];
        struct resize_cfg ax = cf;
        if (simple)
            ax.nm = scales[i] < 1.0 ? 3 : 2; /* ceil, floor */
        for (int64_t x = 0; x < out; x++)
            resize_entry(&ax, resize_coord(ax.ctm, x, in, out, scales[i], r0[i], r1[i]), in,
                         &tab[x]);
        tab += out;
    }
    return VEIL_OK;
}

struct resize_job {
    const float *x;
    float *y;
    size_t r;
    const int64_t *odims;
    const struct resize_axis *tabs[VEIL__ENG_RANK];
    int64_t ist[VEIL__ENG_RANK];
    float ext;
};

/* Each output is the sum over every combination of its axes' taps of the product of weights. */
static void resize_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct resize_job *j = ud;
    size_t r = j->r;
    for (uint64_t o = lo; o < hi; o++) {
        const struct resize_axis *e[VEIL__ENG_RANK];
        uint32_t k[VEIL__ENG_RANK];
        bool out = false, empty = false;
        uint64_t q = o;
        for (size_t i = r; i-- > 0;) {
            e[i] = &j->tabs[i][q % (uint64_t)j->odims[i]];
            q /= (uint64_t)j->odims[i];
            out = out || e[i]->out;
            empty = empty || e[i]->n == 0;
            k[i] = 0;
        }
        if (out || empty) {
            j->y[o] = out ? j->ext : 0.0f;
            continue;
        }
        double acc = 0;
        for (;;) {
            double w = 1;
            int64_t off = 0;
            for (size_t i = 0; i < r; i++) {
                w *= e[i]->w[k[i]];
                off += e[i]->i[k[i]] * j->ist[i];
            }
            acc += w * j->x[off];
            size_t i = r;
            while (i > 0 && ++k[i - 1] == e[i - 1]->n) {
                k[i - 1] = 0;
                i--;
            }
            if (i == 0)
                break;
        }
        j->y[o] = (float)acc;
    }
}

static veil_err resize_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    struct resize_job j;
    const struct resize_axis *t = kp->ptr;
    memset(&j, 0, sizeof(j));
    j.x = c->in[0].data;
    j.y = c->out[0].data;
    j.r = c->in[0].rank;
    j.odims = c->out[0].dims;
    j.ext = kp->f[0];
    strides_of(c->in[0].dims, j.r, j.ist);
    for (size_t i = 0; i < j.r; i++) {
        j.tabs[i] = t;
        t += c->out[0].dims[i];
    }
    veil__parallel(c->out[0].numel, 256, resize_range, &j);
    return VEIL_OK;
}

/* ---- GatherElements, ScatterElements ---- */

/*
 * Checks data (input 0) against an index tensor of the same rank no larger than data off the
 * axis (so every position it names exists), and sets kp->i[0] to the axis.
 */
static veil_err elements_check(struct veil__ictx *c, const struct veil__tv *ix)
{
    size_t r = c->in[0].rank, ax;
    if (r < 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "data must have rank 1 or more");
    veil_err rc = norm_axis(veil__attr_i(c->n, "axis", 0), r, &ax, c->eb);
    if (rc != VEIL_OK)
        return rc;
    if (!index_dt(ix->dt))
        return veil_errf(c->eb, VEIL_E_INVALID, "indices must be int32 or int64");
    if (ix->rank != r)
        return veil_errf(c->eb, VEIL_E_INVALID, "indices have rank %zu, data %zu", ix->rank, r);
    for (size_t d = 0; d < r; d++)
        if (d != ax && ix->dims[d] > c->in[0].dims[d])
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "indices dimension %zu (%lld) exceeds data's (%lld)", d,
                             (long long)ix->dims[d], (long long)c->in[0].dims[d]);
    c->kp->i[0] = (int64_t)ax;
    return VEIL_OK;
}

static veil_err gather_elements_infer(struct veil__ictx *c)
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
    const struct veil__tv *idx;
    const uint8_t *src;
    uint8_t *dst;
    size_t es, r, ax;
    int64_t idims[VEIL__ENG_RANK];
    int64_t dst_[VEIL__ENG_RANK]; /* data strides */
    int64_t len;                  /* data's length along the axis */
};

static uint64_t elem_off(const struct elem_job *j, uint64_t t)
{
    uint64_t q = t, off = 0;
    for (size_t d = j->r; d-- > 0;) {
        uint64_t x = q % (uint64_t)j->idims[d];
        q /= (uint64_t)j->idims[d];
        if (d == j->ax) {
            int64_t v = veil__get_i64(j->idx, t);
            x = (uint64_t)(v < 0 ? v + j->len : v);
        }
        off += x * (uint64_t)j->dst_[d];
    }
    return off;
}

static void elem_job_init(struct elem_job *j, const struct veil__kctx *c, size_t ax,
                          const struct veil__tv *ix)
{
    j->idx = ix;
    j->src = c->in[0].data;
    j->dst = c->out[0].data;
    j->es = veil_dtype_size(c->in[0].dt);
    j->r = c->in[0].rank;
    j->ax = ax;
    memcpy(j->idims, ix->dims, sizeof(j->idims));
    strides_of(c->in[0].dims, j->r, j->dst_);
    j->len = c->in[0].dims[ax];
}

static void gather_elements_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct elem_job *j = ud;
    for (uint64_t t = lo; t < hi; t++)
        memcpy(j->dst + t * j->es, j->src + elem_off(j, t) * j->es, j->es);
}

static veil_err gather_elements_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    size_t ax = (size_t)kp->i[0];
    struct elem_job j;
    veil_err rc = check_indices(&c->in[1], c->in[0].dims[ax], c->eb);
    if (rc != VEIL_OK)
        return rc;
    elem_job_init(&j, c, ax, &c->in[1]);
    veil__parallel(c->in[1].numel, 16384, gather_elements_range, &j);
    return VEIL_OK;
}

static veil_err scatter_elements_infer(struct veil__ictx *c)
{
    const struct veil__tv *ix = &c->in[1], *up = &c->in[2];
    veil_err rc = elements_check(c, ix);
    if (rc != VEIL_OK)
        return rc;
    if (up->dt != c->in[0].dt || up->rank != ix->rank ||
        memcmp(up->dims, ix->dims, ix->rank * sizeof(int64_t)) != 0)
        return veil_errf(c->eb, VEIL_E_INVALID,
                         "updates must match indices' shape and data's type");
    if ((rc = reduction_of(c, c->in[0].dt, &c->kp->i[1])) != VEIL_OK)
        return rc;
    c->out[0] = c->in[0];
    return VEIL_OK;
}

static veil_err scatter_elements_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    size_t ax = (size_t)kp->i[0];
    struct elem_job j;
    veil_err rc = check_indices(&c->in[1], c->in[0].dims[ax], c->eb);
    if (rc != VEIL_OK)
        return rc;
    copy_data(c);
    elem_job_init(&j, c, ax, &c->in[1]);
    /* In index order, so the last of duplicate indices wins as in ONNX's reference. */
    for (uint64_t t = 0; t < c->in[1].numel; t++) {
        uint64_t off = elem_off(&j, t);
        if (kp->i[1] == RED_NONE)
            memcpy(j.dst + off * j.es, (const uint8_t *)c->in[2].data + t * j.es, j.es);
        else
            reduce_at(&c->out[0], off, &c->in[2], t, kp->i[1]);
    }
    return VEIL_OK;
}

/* ---- GatherND, ScatterND ---- */

/*
 * Both read tuples of k indices (the last dimension of indices) into the leading dimensions of
 * data after b batch dimensions. Fails the run on the first index outside its dimension.
 */
static veil_err check_tuples(const struct veil__tv *data, const struct veil__tv *ix, size_t b,
                             struct veil_errbuf *eb)
{
    uint64_t k = (uint64_t)ix->dims[ix->rank - 1];
    for (uint64_t p = 0; p < ix->numel; p++) {
        int64_t len = data->dims[b + p % k], v = veil__get_i64(ix, p);
        if (v < -len || v >= len)
            return veil_errf(eb, VEIL_E_INVALID,
                             "index %lld out of range [-%lld, %lld) for dimension %zu",
                             (long long)v, (long long)len, (long long)len, (size_t)(b + p % k));
    }
    return VEIL_OK;
}

/* Offset in elements of the slice that tuple g (k checked indices at ix[g * k]) names. */
static uint64_t tuple_off(const struct veil__tv *ix, uint64_t g, uint64_t k, const int64_t *dims,
                          const int64_t *st)
{
    uint64_t off = 0;
    for (uint64_t j = 0; j < k; j++) {
        int64_t v = veil__get_i64(ix, g * k + j);
        off += (uint64_t)(v < 0 ? v + dims[j] : v) * (uint64_t)st[j];
    }
    return off;
}

static veil_err gather_nd_infer(struct veil__ictx *c)
{
    const struct veil__tv *d = &c->in[0], *ix = &c->in[1];
    size_t r = d->rank, q = ix->rank;
    int64_t b = veil__attr_i(c->n, "batch_dims", 0);
    if (!index_dt(ix->dt))
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
    if (orank > VEIL__ENG_RANK)
        return veil_errf(c->eb, VEIL_E_LIMIT, "output rank too large");
    c->out[0].dt = d->dt;
    c->out[0].rank = 0;
    for (size_t i = 0; i < q - 1; i++)
        c->out[0].dims[c->out[0].rank++] = ix->dims[i];
    for (size_t i = (size_t)(b + k); i < r; i++)
        c->out[0].dims[c->out[0].rank++] = d->dims[i];
    c->kp->i[0] = b;
    return VEIL_OK;
}

static veil_err gather_nd_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    const struct veil__tv *d = &c->in[0], *ix = &c->in[1];
    size_t b = (size_t)kp->i[0], es = veil_dtype_size(d->dt);
    uint64_t k = (uint64_t)ix->dims[ix->rank - 1];
    int64_t st[VEIL__ENG_RANK];
    veil_err rc = check_tuples(d, ix, b, c->eb);
    if (rc != VEIL_OK)
        return rc;
    strides_of(d->dims, d->rank, st);
    uint64_t batches = veil__numel(d->dims, b), tuples = ix->numel / k;
    uint64_t per_batch = batches > 0 ? tuples / batches : 0;
    uint64_t slice = veil__numel(d->dims + b + k, d->rank - b - (size_t)k);
    uint64_t bstride = b > 0 ? (uint64_t)st[b - 1] : 0;
    for (uint64_t g = 0; g < tuples; g++) {
        uint64_t off = (g / per_batch) * bstride + tuple_off(ix, g, k, d->dims + b, st + b);
        if (slice > 0)
            memcpy((uint8_t *)c->out[0].data + g * slice * es, (const uint8_t *)d->data + off * es,
                   (size_t)(slice * es));
    }
    return VEIL_OK;
}

static veil_err scatter_nd_infer(struct veil__ictx *c)
{
    const struct veil__tv *d = &c->in[0], *ix = &c->in[1], *up = &c->in[2];
    size_t r = d->rank, q = ix->rank;
    if (!index_dt(ix->dt))
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
    veil_err rc = reduction_of(c, d->dt, &c->kp->i[1]);
    if (rc != VEIL_OK)
        return rc;
    c->out[0] = *d;
    return VEIL_OK;
}

static veil_err scatter_nd_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    const struct veil__tv *d = &c->in[0], *ix = &c->in[1], *up = &c->in[2];
    size_t es = veil_dtype_size(d->dt);
    uint64_t k = (uint64_t)ix->dims[ix->rank - 1];
    int64_t st[VEIL__ENG_RANK];
    veil_err rc = check_tuples(d, ix, 0, c->eb);
    if (rc != VEIL_OK)
        return rc;
    copy_data(c);
    strides_of(d->dims, d->rank, st);
    uint64_t slice = veil__numel(d->dims + k, d->rank - (size_t)k);
    uint64_t tuples = veil__numel(ix->dims, ix->rank - 1);
    for (uint64_t g = 0; g < tuples; g++) {
        uint64_t off = tuple_off(ix, g, k, d->dims, st);
        if (kp->i[1] == RED_NONE) {
            if (slice > 0)
                memcpy((uint8_t *)c->out[0].data + off * es,
                       (const uint8_t *)up->data + g * slice * es, (size_t)(slice * es));
            continue;
        }
        for (uint64_t s = 0; s < slice; s++)
            reduce_at(&c->out[0], off + s, up, g * slice + s, kp->i[1]);
    }
    return VEIL_OK;
}

/* ---- Tile ---- */

static veil_err tile_infer(struct veil__ictx *c)
{
    int64_t rep[VEIL__ENG_RANK];
    size_t n, r = c->in[0].rank;
    veil_err rc = read_ints(&c->in[1], rep, VEIL__ENG_RANK, &n, c->eb);
    if (rc != VEIL_OK)
        return rc;
    if (n != r)
        return veil_errf(c->eb, VEIL_E_INVALID, "repeats has %zu values for rank %zu", n, r);
    c->out[0] = c->in[0];
    for (size_t i = 0; i < r; i++) {
        if (rep[i] < 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "repeats has a negative value");
        if (__builtin_mul_overflow(c->in[0].dims[i], rep[i], &c->out[0].dims[i]))
            return veil_errf(c->eb, VEIL_E_LIMIT, "repeats give dimension %zu more than 2^63", i);
    }
    return VEIL_OK;
}

struct tile_job {
    const uint8_t *in;
    uint8_t *out;
    size_t es, r;
    int64_t idims[VEIL__ENG_RANK], odims[VEIL__ENG_RANK], ist[VEIL__ENG_RANK];
};

/* Output rows [lo, hi): each is its input row repeated along the last axis. */
static void tile_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct tile_job *j = ud;
    size_t last = j->r - 1;
    size_t ilen = (size_t)j->idims[last] * j->es, olen = (size_t)j->odims[last] * j->es;
    for (uint64_t row = lo; row < hi; row++) {
        uint64_t q = row, off = 0;
        for (size_t i = last; i-- > 0;) {
            off += (q % (uint64_t)j->odims[i]) % (uint64_t)j->idims[i] * (uint64_t)j->ist[i];
            q /= (uint64_t)j->odims[i];
        }
        uint8_t *o = j->out + row * olen;
        for (size_t k = 0; k < olen; k += ilen)
            memcpy(o + k, j->in + off * j->es, ilen);
    }
}

static veil_err tile_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    (void)kp;
    struct tile_job j;
    size_t r = c->in[0].rank;
    if (c->out[0].numel == 0)
        return VEIL_OK;
    j.in = c->in[0].data;
    j.out = c->out[0].data;
    j.es = veil_dtype_size(c->in[0].dt);
    if (r == 0) {
        memcpy(j.out, j.in, j.es);
        return VEIL_OK;
    }
    j.r = r;
    memcpy(j.idims, c->in[0].dims, sizeof(j.idims));
    memcpy(j.odims, c->out[0].dims, sizeof(j.odims));
    strides_of(j.idims, r, j.ist);
    uint64_t len = (uint64_t)j.odims[r - 1];
    veil__parallel(c->out[0].numel / len, len > 4096 ? 1 : 4096 / len, tile_range, &j);
    return VEIL_OK;
}

/* ---- Trilu ---- */

static veil_err trilu_infer(struct veil__ictx *c)
{
    if (c->in[0].rank < 2)
        return veil_errf(c->eb, VEIL_E_INVALID, "input must have rank 2 or more");
    if (has_in(c, 1) && (c->in[1].dt != VEIL_DT_INT64 || c->in[1].numel != 1))
        return veil_errf(c->eb, VEIL_E_INVALID, "k must be one int64");
    c->kp->i[0] = veil__attr_i(c->n, "upper", 1) != 0;
    c->out[0] = c->in[0];
    return VEIL_OK;
}

struct trilu_job {
    const uint8_t *in;
    uint8_t *out;
    size_t es;
    int64_t rows, cols, k;
    bool upper;
};

/* Rows [lo, hi) of all matrices: upper keeps columns j >= i + k, lower keeps j <= i + k. */
static void trilu_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct trilu_job *j = ud;
    size_t rb = (size_t)j->cols * j->es;
    for (uint64_t row = lo; row < hi; row++) {
        int64_t i = (int64_t)(row % (uint64_t)j->rows), e = i + j->k;
        int64_t a = j->upper ? e : 0, b = j->upper ? j->cols : e + 1;
        a = a < 0 ? 0 : a > j->cols ? j->cols : a;
        b = b < a ? a : b > j->cols ? j->cols : b;
        uint8_t *o = j->out + row * rb;
        const uint8_t *x = j->in + row * rb;
        memset(o, 0, (size_t)a * j->es);
        memcpy(o + (size_t)a * j->es, x + (size_t)a * j->es, (size_t)(b - a) * j->es);
        memset(o + (size_t)b * j->es, 0, (size_t)(j->cols - b) * j->es);
    }
}

static veil_err trilu_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    size_t r = c->in[0].rank;
    struct trilu_job j = {c->in[0].data,        c->out[0].data,       veil_dtype_size(c->in[0].dt),
                          c->in[0].dims[r - 2], c->in[0].dims[r - 1], 0,
                          kp->i[0] != 0};
    if (c->out[0].numel == 0)
        return VEIL_OK;
    if (c->n_in > 1 && c->n->in[1] >= 0)
        j.k = veil__get_i64(&c->in[1], 0);
    /* Beyond +-(rows + cols) every k selects the same elements; clamping keeps i + k exact. */
    int64_t lim = j.rows + j.cols;
    j.k = j.k < -lim ? -lim : j.k > lim ? lim : j.k;
    veil__parallel(c->out[0].numel / (uint64_t)j.cols, 64, trilu_range, &j);
    return VEIL_OK;
}

/* ---- DepthToSpace, SpaceToDepth: 6-D transposes through the strided copy ---- */

static veil_err blocksize_of(struct veil__ictx *c, int64_t *b)
{
    const struct veil__attr *a = veil__attr_typed(c->n, "blocksize", VEIL_ONNX_ATTR_INT);
    *b = 0;
    if (a == NULL || a->i < 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "blocksize must be given and positive");
    if (c->in[0].rank != 4)
        return veil_errf(c->eb, VEIL_E_INVALID, "input must have rank 4, not %zu", c->in[0].rank);
    *b = a->i;
    return VEIL_OK;
}

/* kp->v[0] = the output viewed as 6-D, kp->v[1] = the input strides that each axis walks. */
static void set_view6(struct veil__kparams *kp, const int64_t *dims, const int64_t *st)
{
    memcpy(kp->v[0], dims, 6 * sizeof(int64_t));
    memcpy(kp->v[1], st, 6 * sizeof(int64_t));
}

static veil_err depth_to_space_infer(struct veil__ictx *c)
{
    int64_t b, bb;
    veil_err rc = blocksize_of(c, &b);
    if (rc != VEIL_OK)
        return rc;
    const char *mode = veil__attr_s(c->n, "mode", "DCR");
    bool crd = strcmp(mode, "CRD") == 0;
    if (!crd && strcmp(mode, "DCR") != 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "mode '%s' (DCR or CRD)", mode);
    const int64_t *d = c->in[0].dims;
    int64_t n = d[0], ch = d[1], h = d[2], w = d[3];
    if (__builtin_mul_overflow(b, b, &bb) || ch % bb != 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "channels %lld not divisible by blocksize^2",
                         (long long)ch);
    c->out[0] = c->in[0];
    c->out[0].dims[1] = ch / bb;
    if (__builtin_mul_overflow(h, b, &c->out[0].dims[2]) ||
        __builtin_mul_overflow(w, b, &c->out[0].dims[3]))
        return veil_errf(c->eb, VEIL_E_LIMIT, "blocksize gives a dimension over 2^63");
    int64_t cc = ch / bb, hw = h * w;
    /* Output [N, C', H, b, W, b]; DCR reads channel (b1 * b + b2) * C' + c, CRD c * b * b + ... */
    int64_t dims[6] = {n, cc, h, b, w, b};
    int64_t dcr[6] = {ch * hw, hw, w, b * cc * hw, 1, cc * hw};
    int64_t crdst[6] = {ch * hw, bb * hw, w, b * hw, 1, hw};
    set_view6(c->kp, dims, crd ? crdst : dcr);
    return VEIL_OK;
}

static veil_err space_to_depth_infer(struct veil__ictx *c)
{
    int64_t b, bb;
    veil_err rc = blocksize_of(c, &b);
    if (rc != VEIL_OK)
        return rc;
    const int64_t *d = c->in[0].dims;
    int64_t n = d[0], ch = d[1], h = d[2], w = d[3];
    if (h % b != 0 || w % b != 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "height %lld and width %lld must divide by %lld",
                         (long long)h, (long long)w, (long long)b);
    c->out[0] = c->in[0];
    if (__builtin_mul_overflow(b, b, &bb) || __builtin_mul_overflow(ch, bb, &c->out[0].dims[1]))
        return veil_errf(c->eb, VEIL_E_LIMIT, "blocksize gives a dimension over 2^63");
    c->out[0].dims[2] = h / b;
    c->out[0].dims[3] = w / b;
    /* Output [N, b, b, C, H', W']: channel (b1 * b + b2) * C + c reads x[c, h' b + b1, w' b + b2].
     */
    int64_t dims[6] = {n, b, b, ch, h / b, w / b};
    int64_t st[6] = {ch * h * w, w, 1, h * w, b * w, b};
    set_view6(c->kp, dims, st);
    return VEIL_OK;
}

static veil_err view6_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    struct sjob j;
    j.in = c->in[0].data;
    j.out = c->out[0].data;
    j.es = veil_dtype_size(c->in[0].dt);
    j.r = 6;
    j.base = 0;
    memcpy(j.dims, kp->v[0], 6 * sizeof(int64_t));
    memcpy(j.ist, kp->v[1], 6 * sizeof(int64_t));
    strided_run(&j, &c->out[0]);
    return VEIL_OK;
}

/* ---- CumSum ---- */

static bool cumsum_dt(enum veil_dtype dt)
{
    return dt == VEIL_DT_FLOAT || dt == VEIL_DT_DOUBLE || dt == VEIL_DT_INT32 ||
           dt == VEIL_DT_INT64 || dt == VEIL_DT_UINT32 || dt == VEIL_DT_UINT64;
}

static veil_err cumsum_infer(struct veil__ictx *c)
{
    const struct veil__tv *a = &c->in[1];
    if (!cumsum_dt(c->in[0].dt))
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "CumSum of %s", veil_dtype_name(c->in[0].dt));
    if (c->in[0].rank < 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "input must have rank 1 or more");
    if (!index_dt(a->dt) || a->numel != 1 || a->rank > 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "axis must be one int32 or int64");
    if (a->data != NULL) {
        size_t ax;
        veil_err rc = norm_axis(veil__get_i64(a, 0), c->in[0].rank, &ax, c->eb);
        if (rc != VEIL_OK)
            return rc;
    }
    c->kp->i[0] = veil__attr_i(c->n, "exclusive", 0) != 0;
    c->kp->i[1] = veil__attr_i(c->n, "reverse", 0) != 0;
    c->out[0] = c->in[0];
    return VEIL_OK;
}

struct cumsum_job {
    const struct veil__tv *x;
    struct veil__tv *y;
    uint64_t len, inner;
    bool exclusive, reverse;
};

/* Lines [lo, hi) along the axis, line t = o * inner + i; floats sum in double, integers wrap. */
static void cumsum_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct cumsum_job *j = ud;
    bool fl = veil__dt_is_float(j->x->dt);
    for (uint64_t t = lo; t < hi; t++) {
        uint64_t base = (t / j->inner) * j->len * j->inner + t % j->inner;
        double fs = 0;
        uint64_t is = 0;
        for (uint64_t s = 0; s < j->len; s++) {
            uint64_t e = base + (j->reverse ? j->len - 1 - s : s) * j->inner;
            double fx = fl ? veil__get_f64(j->x, e) : 0;
            uint64_t ix = fl ? 0 : (uint64_t)veil__get_i64(j->x, e);
            if (!j->exclusive) {
                fs += fx;
                is += ix;
            }
            if (fl)
                veil__set_f64(j->y, e, fs);
            else
                veil__set_i64(j->y, e, (int64_t)is);
            if (j->exclusive) {
                fs += fx;
                is += ix;
            }
        }
    }
}

static veil_err cumsum_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    size_t ax;
    veil_err rc = norm_axis(veil__get_i64(&c->in[1], 0), c->in[0].rank, &ax, c->eb);
    if (rc != VEIL_OK)
        return rc;
    struct cumsum_job j = {&c->in[0],
                           &c->out[0],
                           (uint64_t)c->in[0].dims[ax],
                           veil__numel(c->in[0].dims + ax + 1, c->in[0].rank - ax - 1),
                           kp->i[0] != 0,
                           kp->i[1] != 0};
    if (c->out[0].numel == 0)
        return VEIL_OK;
    veil__parallel(c->out[0].numel / j.len, 1 + 16384 / j.len, cumsum_range, &j);
    return VEIL_OK;
}

/* ---- OneHot ---- */

static veil_err onehot_infer(struct veil__ictx *c)
{
    const struct veil__tv *ix = &c->in[0], *dep = &c->in[1], *val = &c->in[2];
    size_t r = ix->rank, ax;
    if (!veil__dt_is_numeric(ix->dt) || !veil__dt_is_numeric(dep->dt))
        return veil_errf(c->eb, VEIL_E_INVALID, "indices and depth must be numeric");
    if (dep->numel != 1 || dep->rank > 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "depth must hold one value");
    if (val->rank != 1 || val->numel != 2)
        return veil_errf(c->eb, VEIL_E_INVALID, "values must hold [off_value, on_value]");
    if (r + 1 > VEIL__ENG_RANK)
        return veil_errf(c->eb, VEIL_E_LIMIT, "output rank too large");
    veil_err rc = norm_axis(veil__attr_i(c->n, "axis", -1), r + 1, &ax, c->eb);
    if (rc != VEIL_OK)
        return rc;
    /* A non-integer depth is cast to int64 (truncated), as the spec says. */
    int64_t depth = veil__get_i64(dep, 0);
    if (depth < 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "depth %lld must be positive", (long long)depth);
    c->out[0].dt = val->dt;
    c->out[0].rank = r + 1;
    for (size_t i = 0, k = 0; i <= r; i++)
        c->out[0].dims[i] = i == ax ? depth : ix->dims[k++];
    c->kp->i[0] = (int64_t)ax;
    c->kp->i[1] = depth;
    return VEIL_OK;
}

static veil_err onehot_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    const struct veil__tv *ix = &c->in[0];
    size_t ax = (size_t)kp->i[0], es = veil_dtype_size(c->out[0].dt);
    int64_t depth = kp->i[1];
    const uint8_t *off = c->in[2].data, *on = off + es;
    uint8_t *y = c->out[0].data;
    uint64_t inner = veil__numel(ix->dims + ax, ix->rank - ax);
    for (uint64_t i = 0; i < c->out[0].numel; i++)
        memcpy(y + i * es, off, es);
    for (uint64_t t = 0; t < ix->numel; t++) {
        int64_t v = veil__get_i64(ix, t);
        if (v < 0)
            v += depth;
        if (v < 0 || v >= depth)
            continue;
        uint64_t o = t / inner, in = t % inner;
        memcpy(y + ((o * (uint64_t)depth + (uint64_t)v) * inner + in) * es, on, es);
    }
    return VEIL_OK;
}

/* ---- EyeLike ---- */

static veil_err eyelike_infer(struct veil__ictx *c)
{
    const struct veil__attr *a = veil__attr_typed(c->n, "dtype", VEIL_ONNX_ATTR_INT);
    enum veil_dtype dt = c->in[0].dt;
    if (c->in[0].rank != 2)
        return veil_errf(c->eb, VEIL_E_INVALID, "input must have rank 2, not %zu", c->in[0].rank);
    if (a != NULL) {
        if (a->i <= 0 || a->i > 255)
            return veil_errf(c->eb, VEIL_E_INVALID, "dtype %lld is not a tensor type",
                             (long long)a->i);
        dt = (enum veil_dtype)a->i;
    }
    if (!veil__dt_is_numeric(dt) && dt != VEIL_DT_BOOL && dt != VEIL_DT_FLOAT16)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "EyeLike of %s (dtype %d)", veil_dtype_name(dt),
                         (int)dt);
    c->out[0] = c->in[0];
    c->out[0].dt = dt;
    c->kp->i[0] = veil__attr_i(c->n, "k", 0);
    return VEIL_OK;
}

static veil_err eyelike_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    struct veil__tv *y = &c->out[0];
    int64_t rows = y->dims[0], cols = y->dims[1], k = kp->i[0];
    size_t es = veil_dtype_size(y->dt);
    if (y->numel > 0)
        memset(y->data, 0, (size_t)y->numel * es);
    if (k >= cols || k <= -rows)
        return VEIL_OK;
    for (int64_t i = k < 0 ? -k : 0; i < rows && i + k < cols; i++) {
        uint64_t e = (uint64_t)(i * cols + i + k);
        if (y->dt == VEIL_DT_FLOAT16)
            ((uint16_t *)y->data)[e] = 0x3c00; /* 1.0 in IEEE binary16 */
        else
            veil__set_i64(y, e, 1);
    }
    return VEIL_OK;
}

/* ---- Einsum ---- */

#define EIN_LABELS 52 /* a-z, A-Z */
#define EIN_MAX_IN 16
#define EIN_MAX_DIMS (EIN_LABELS + VEIL__ENG_RANK)
/* Multiply-adds one Einsum may take (operands x output elements x summed positions). */
#define EIN_MAX_WORK (1ull << 36)

/*
 * An equation resolved for given input shapes (kept in kp->ptr). Every distinct label and
 * every '...' dimension is one global dimension: the output's first, in its order, then the
 * summed ones. An operand's stride along a global dimension is 0 where it lacks it or
 * broadcasts it, and the sum of its axes' strides where a label repeats (a diagonal).
 */
struct einsum_plan {
    size_t n_in, n_dims, n_out;
    int64_t size[EIN_MAX_DIMS];
    int64_t st[EIN_MAX_IN][EIN_MAX_DIMS];
    /*
     * A summed dimension that only one operand reads ("bin,bck->": n and k) is summed inside
     * that operand first, into a dense partial sum over the operand's other dimensions (rst:
     * its strides, 0 elsewhere): the main loop then runs over the product of the remaining
     * dimensions only, not of every label (a sum of products factors). own[d]: the operand
     * that alone reads summed dimension d, or -1.
     */
    int8_t own[EIN_MAX_DIMS];
    bool reduce[EIN_MAX_IN];
    uint64_t rnumel[EIN_MAX_IN];
    int64_t rst[EIN_MAX_IN][EIN_MAX_DIMS];
    uint64_t red; /* summed positions the main loop visits per output element */
};

/* One term's subscripts: labels 0-51, and -1 for its '...' (at most one). */
struct ein_term {
    int8_t lab[VEIL__ENG_RANK + 1];
    size_t n;
    bool ell;
};

static int ein_label(char ch)
{
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a';
    if (ch >= 'A' && ch <= 'Z')
        return 26 + (ch - 'A');
    return -1;
}

static char ein_char(int l)
{
    return (char)(l < 26 ? 'a' + l : 'A' + (l - 26));
}

/* Parses the subscripts in s[0, len) of the term called what (spaces are ignored). */
static veil_err ein_parse_term(const char *s, size_t len, struct ein_term *t, const char *what,
                               struct veil_errbuf *eb)
{
    t->n = 0;
    t->ell = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        int l = ein_label((char)ch);
        if (ch == ' ')
            continue;
        if (ch == '.') {
            if (len - i < 3 || s[i + 1] != '.' || s[i + 2] != '.')
                return veil_errf(eb, VEIL_E_INVALID, "equation: %s has a '.' outside '...'", what);
            if (t->ell)
                return veil_errf(eb, VEIL_E_INVALID, "equation: %s has more than one '...'", what);
            t->ell = true;
            i += 2;
        } else if (l < 0) {
            return veil_errf(eb, VEIL_E_INVALID, "equation: unexpected character 0x%02x in %s", ch,
                             what);
        }
        if (t->n == VEIL__ENG_RANK + 1)
            return veil_errf(eb, VEIL_E_INVALID, "equation: %s has more than %d subscripts", what,
                             VEIL__ENG_RANK);
        t->lab[t->n++] = (int8_t)(ch == '.' ? -1 : l);
    }
    return VEIL_OK;
}

/* Splits and parses the operands' terms (left of "->") and the output's, if given. */
static veil_err ein_parse(struct veil__ictx *c, struct ein_term *terms, struct ein_term *out,
                          bool *explicit_out)
{
    const char *eq = veil__attr_s(c->n, "equation", NULL);
    char what[32];
    veil_err rc;
    if (eq == NULL)
        return veil_errf(c->eb, VEIL_E_INVALID, "Einsum needs a string attribute 'equation'");
    size_t len = strlen(eq);
    const char *arrow = strstr(eq, "->");
    size_t lhs = arrow != NULL ? (size_t)(arrow - eq) : len;
    if (arrow != NULL && strstr(arrow + 2, "->") != NULL)
        return veil_errf(c->eb, VEIL_E_INVALID, "equation has more than one '->'");
    size_t nt = 0;
    for (size_t p = 0;;) {
        const char *comma = memchr(eq + p, ',', lhs - p);
        size_t end = comma != NULL ? (size_t)(comma - eq) : lhs;
        if (nt == c->n_in)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "equation has more operands than the %zu inputs", c->n_in);
        snprintf(what, sizeof(what), "operand %zu", nt);
        if ((rc = ein_parse_term(eq + p, end - p, &terms[nt], what, c->eb)) != VEIL_OK)
            return rc;
        nt++;
        if (comma == NULL)
            break;
        p = end + 1;
    }
    if (nt != c->n_in)
        return veil_errf(c->eb, VEIL_E_INVALID, "equation has %zu operands, node has %zu inputs",
                         nt, c->n_in);
    *explicit_out = arrow != NULL;
    if (arrow != NULL)
        return ein_parse_term(arrow + 2, len - lhs - 2, out, "the output", c->eb);
    return VEIL_OK;
}

static veil_err einsum_infer(struct veil__ictx *c)
{
    struct ein_term terms[EIN_MAX_IN], out;
    bool explicit_out = false;
    int64_t lsize[EIN_LABELS], esize[VEIL__ENG_RANK];
    uint32_t cnt[EIN_LABELS] = {0};
    size_t ell_rank = 0, ell_of[EIN_MAX_IN];
    bool any_ell = false;
    veil_err rc;

    if (c->n_in > EIN_MAX_IN)
        return veil_errf(c->eb, VEIL_E_LIMIT, "more than %d operands", EIN_MAX_IN);
    for (size_t i = 0; i < c->n_in; i++) {
        if (!has_in(c, i))
            return veil_errf(c->eb, VEIL_E_INVALID, "operand %zu is missing", i);
        if (c->in[i].dt != c->in[0].dt)
            return veil_errf(c->eb, VEIL_E_INVALID, "operands differ in type");
    }
    if (!veil__dt_is_numeric(c->in[0].dt))
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "Einsum of %s", veil_dtype_name(c->in[0].dt));
    if ((rc = ein_parse(c, terms, &out, &explicit_out)) != VEIL_OK)
        return rc;
    for (size_t l = 0; l < EIN_LABELS; l++)
        lsize[l] = -1;
    for (size_t e = 0; e < VEIL__ENG_RANK; e++)
        esize[e] = 1;
    for (size_t i = 0; i < c->n_in; i++) {
        size_t letters = terms[i].n - (terms[i].ell ? 1 : 0), r = c->in[i].rank;
        if (terms[i].ell ? letters > r : letters != r)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "equation gives operand %zu %zu subscripts for rank %zu", i, letters,
                             r);
        ell_of[i] = r - letters;
        if (ell_of[i] > ell_rank)
            ell_rank = ell_of[i];
        any_ell = any_ell || terms[i].ell;
    }
    /* Label sizes must agree; '...' dimensions broadcast, aligned on the right. */
    for (size_t i = 0; i < c->n_in; i++) {
        const int64_t *dims = c->in[i].dims;
        for (size_t t = 0, a = 0; t < terms[i].n; t++) {
            int l = terms[i].lab[t];
            if (l < 0) {
                for (size_t e = ell_rank - ell_of[i]; e < ell_rank; e++, a++) {
                    if (esize[e] == 1)
                        esize[e] = dims[a];
                    else if (dims[a] != 1 && dims[a] != esize[e])
                        return veil_errf(c->eb, VEIL_E_INVALID,
                                         "'...' dimensions of sizes %lld and %lld do not "
                                         "broadcast",
                                         (long long)esize[e], (long long)dims[a]);
                }
                continue;
            }
            if (lsize[l] >= 0 && lsize[l] != dims[a])
                return veil_errf(c->eb, VEIL_E_INVALID, "label '%c' has sizes %lld and %lld",
                                 ein_char(l), (long long)lsize[l], (long long)dims[a]);
            lsize[l] = dims[a++];
            cnt[l]++;
        }
    }
    if (explicit_out) {
        bool seen[EIN_LABELS] = {false};
        for (size_t t = 0; t < out.n; t++) {
            int l = out.lab[t];
            if (l < 0)
                continue;
            if (cnt[l] == 0)
                return veil_errf(c->eb, VEIL_E_INVALID, "output label '%c' is in no operand",
                                 ein_char(l));
            if (seen[l])
                return veil_errf(c->eb, VEIL_E_INVALID, "output repeats label '%c'", ein_char(l));
            seen[l] = true;
        }
        /* As numpy: '...' dimensions are never summed implicitly. */
        if (!out.ell && ell_rank > 0)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "the operands' '...' dimensions are missing from the output");
    } else {
        /* Implicit output: '...', then the labels used once, in ASCII order (A-Z, a-z). */
        out.n = 0;
        out.ell = any_ell;
        if (any_ell)
            out.lab[out.n++] = -1;
        for (int k = 0; k < EIN_LABELS; k++) {
            int l = k < 26 ? 26 + k : k - 26;
            if (cnt[l] != 1)
                continue;
            if (out.n == VEIL__ENG_RANK + 1)
                return veil_errf(c->eb, VEIL_E_LIMIT, "output rank too large");
            out.lab[out.n++] = (int8_t)l;
        }
    }
    if (out.n - (out.ell ? 1 : 0) + (out.ell ? ell_rank : 0) > VEIL__ENG_RANK)
        return veil_errf(c->eb, VEIL_E_LIMIT, "output rank too large");

    struct einsum_plan *pl = veil_calloc(1, sizeof(*pl));
    if (pl == NULL)
        return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for an Einsum plan");
    veil_free(c->kp->ptr);
    c->kp->ptr = pl;
    int gl[EIN_LABELS], ge[VEIL__ENG_RANK];
    for (size_t l = 0; l < EIN_LABELS; l++)
        gl[l] = -1;
    size_t n = 0;
    for (size_t t = 0; t < out.n; t++) {
        if (out.lab[t] >= 0) {
            gl[out.lab[t]] = (int)n;
            pl->size[n++] = lsize[out.lab[t]];
            continue;
        }
        for (size_t e = 0; e < ell_rank; e++) {
            ge[e] = (int)n;
            pl->size[n++] = esize[e];
        }
    }
    pl->n_out = n;
    c->out[0].dt = c->in[0].dt;
    c->out[0].rank = n;
    memcpy(c->out[0].dims, pl->size, n * sizeof(int64_t));
    for (size_t l = 0; l < EIN_LABELS; l++)
        if (cnt[l] > 0 && gl[l] < 0) {
            gl[l] = (int)n;
            pl->size[n++] = lsize[l];
        }
    pl->n_dims = n;
    pl->n_in = c->n_in;
    for (size_t i = 0; i < c->n_in; i++) {
        int64_t ist[VEIL__ENG_RANK];
        strides_of(c->in[i].dims, c->in[i].rank, ist);
        for (size_t t = 0, a = 0; t < terms[i].n; t++) {
            int l = terms[i].lab[t];
            if (l >= 0) {
                pl->st[i][gl[l]] += ist[a++];
                continue;
            }
            for (size_t e = ell_rank - ell_of[i]; e < ell_rank; e++, a++)
                if (c->in[i].dims[a] != 1)
                    pl->st[i][ge[e]] += ist[a];
        }
    }
    /* Summed dimensions read by one operand alone are summed inside it first. */
    for (size_t d = 0; d < n; d++) {
        pl->own[d] = -1;
        if (d < pl->n_out)
            continue;
        int readers = 0, who = -1;
        for (size_t i = 0; i < c->n_in; i++)
            if (pl->st[i][d] != 0) {
                readers++;
                who = (int)i;
            }
        if (readers == 1 && c->n_in > 1) {
            pl->own[d] = (int8_t)who;
            pl->reduce[who] = true;
        }
    }
    for (size_t i = 0; i < c->n_in; i++) {
        if (!pl->reduce[i])
            continue;
        uint64_t rn = 1;
        for (size_t d = n; d-- > 0;)
            if (pl->st[i][d] != 0 && pl->own[d] < 0) {
                pl->rst[i][d] = (int64_t)rn;
                rn *= (uint64_t)pl->size[d]; /* at most the operand's numel */
            }
        pl->rnumel[i] = rn;
    }
    /*
     * Every output element sums over the summed positions the main loop visits; the partial
     * sums read each operand once. Cap the whole loop nest.
     */
    uint64_t work = c->n_in, red = 1;
    bool empty = false;
    for (size_t d = 0; d < n; d++)
        empty = empty || pl->size[d] == 0;
    for (size_t d = 0; d < n && !empty; d++) {
        if (pl->own[d] >= 0)
            continue;
        if (d >= pl->n_out)
            red *= (uint64_t)pl->size[d];
        if (__builtin_mul_overflow(work, (uint64_t)pl->size[d], &work) || work > EIN_MAX_WORK)
            return veil_errf(c->eb, VEIL_E_LIMIT, "Einsum needs more than %llu multiply-adds",
                             (unsigned long long)EIN_MAX_WORK);
    }
    pl->red = empty ? 0 : red;
    return VEIL_OK;
}

struct einsum_job {
    const struct einsum_plan *pl;
    const struct veil__tv *in; /* the operands, or their partial sums (einsum_reduce) */
    struct veil__tv *out;
};

/* The stride of operand i along dimension d in the main loop (its partial sum's if reduced). */
static int64_t ein_st(const struct einsum_plan *pl, size_t i, size_t d)
{
    return pl->reduce[i] ? pl->rst[i][d] : pl->st[i][d];
}

/*
 * Sums operand i over the dimensions it alone reads into r (rnumel elements, zeroed, float64
 * for float operands, int64 otherwise), visiting every element of the operand once.
 */
static void einsum_reduce(const struct einsum_plan *pl, size_t i, const struct veil__tv *in,
                          struct veil__tv *r)
{
    size_t dims[EIN_MAX_DIMS], nd = 0;
    int64_t pos[EIN_MAX_DIMS] = {0}, off = 0, roff = 0;
    uint64_t total = 1;
    bool fl = veil__dt_is_float(in->dt);
    for (size_t d = 0; d < pl->n_dims; d++)
        if (pl->st[i][d] != 0) {
            dims[nd++] = d;
            total *= (uint64_t)pl->size[d];
        }
    for (uint64_t k = 0; k < total; k++) {
        if (fl)
            veil__set_f64(r, (uint64_t)roff,
                          veil__get_f64(r, (uint64_t)roff) + veil__get_f64(in, (uint64_t)off));
        else /* wrapping, as the products of the main loop */
            veil__set_i64(r, (uint64_t)roff,
                          (int64_t)((uint64_t)veil__get_i64(r, (uint64_t)roff) +
                                    (uint64_t)veil__get_i64(in, (uint64_t)off)));
        for (size_t t = nd; t-- > 0;) {
            size_t d = dims[t];
            if (++pos[t] < pl->size[d]) {
                off += pl->st[i][d];
                roff += pl->rst[i][d];
                break;
            }
            pos[t] = 0;
            off -= (pl->size[d] - 1) * pl->st[i][d];
            roff -= (pl->size[d] - 1) * pl->rst[i][d];
        }
    }
}

/* Output elements [lo, hi): each sums the operands' product over the summed dimensions. */
static void einsum_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct einsum_job *j = ud;
    const struct einsum_plan *pl = j->pl;
    bool fl = veil__dt_is_float(j->out->dt);
    size_t ni = pl->n_in;
    uint64_t red = pl->red;
    for (uint64_t o = lo; o < hi; o++) {
        int64_t off[EIN_MAX_IN] = {0}, pos[EIN_MAX_DIMS] = {0};
        uint64_t q = o;
        for (size_t d = pl->n_out; d-- > 0;) {
            int64_t x = (int64_t)(q % (uint64_t)pl->size[d]);
            q /= (uint64_t)pl->size[d];
            for (size_t i = 0; i < ni; i++)
                off[i] += x * ein_st(pl, i, d);
        }
        double fs = 0;
        uint64_t is = 0;
        for (uint64_t s = 0; s < red; s++) {
            if (fl) {
                double p = 1;
                for (size_t i = 0; i < ni; i++)
                    p *= veil__get_f64(&j->in[i], (uint64_t)off[i]);
                fs += p;
            } else {
                uint64_t p = 1;
                for (size_t i = 0; i < ni; i++)
                    p *= (uint64_t)veil__get_i64(&j->in[i], (uint64_t)off[i]);
                is += p;
            }
            /* Next summed position, the last dimension fastest (not those summed inside). */
            for (size_t d = pl->n_dims; d-- > pl->n_out;) {
                if (pl->own[d] >= 0)
                    continue;
                if (++pos[d] < pl->size[d]) {
                    for (size_t i = 0; i < ni; i++)
                        off[i] += ein_st(pl, i, d);
                    break;
                }
                pos[d] = 0;
                for (size_t i = 0; i < ni; i++)
                    off[i] -= (pl->size[d] - 1) * ein_st(pl, i, d);
            }
        }
        if (fl)
            veil__set_f64(j->out, o, fs);
        else
            veil__set_i64(j->out, o, (int64_t)is);
    }
}

static veil_err einsum_exec(struct veil__kctx *c, const struct veil__kparams *kp)
{
    const struct einsum_plan *pl = kp->ptr;
    struct veil__tv src[EIN_MAX_IN];
    veil_err rc = VEIL_OK;
    for (size_t i = 0; i < pl->n_in; i++)
        src[i] = c->in[i];
    for (size_t i = 0; i < pl->n_in; i++) {
        if (!pl->reduce[i])
            continue;
        /* Partial sums are at most as large as the operand; they live for this run only. */
        bool fl = veil__dt_is_float(c->in[i].dt);
        src[i].dt = fl ? VEIL_DT_DOUBLE : VEIL_DT_INT64;
        src[i].rank = 1;
        src[i].dims[0] = (int64_t)pl->rnumel[i];
        src[i].numel = pl->rnumel[i];
        src[i].data = veil_calloc(pl->rnumel[i] > 0 ? pl->rnumel[i] : 1, 8);
        if (src[i].data == NULL) {
            rc = veil_errf(c->eb, VEIL_E_NOMEM, "no memory for an Einsum partial sum");
            break;
        }
        einsum_reduce(pl, i, &c->in[i], &src[i]);
    }
    if (rc == VEIL_OK) {
        struct einsum_job j = {pl, src, &c->out[0]};
        veil__parallel(c->out[0].numel, 1 + 4096 / (pl->red + 1), einsum_range, &j);
    }
    for (size_t i = 0; i < pl->n_in; i++)
        if (pl->reduce[i] && src[i].data != c->in[i].data)
            veil_free(src[i].data);
    return rc;
}

const struct veil__op_def veil__ops_shape[] = {
    {"Shape", shape_infer, NULL, shape_exec, 0, false, false},
    {"Size", size_infer, NULL, size_exec, 0, false, false},
    {"Flatten", flatten_infer, NULL, NULL, 0, true, false},
    {"Reshape", reshape_infer, NULL, NULL, 0x2, true, false},
    {"Squeeze", squeeze_infer, NULL, NULL, 0x2, true, false},
    {"Unsqueeze", unsqueeze_infer, NULL, NULL, 0x2, true, false},
    {"Transpose", transpose_infer, veil__transpose_prepare, transpose_exec, 0, false, false},
    {"Slice", slice_infer, NULL, slice_exec, 0x1e, false, false},
    {"Concat", concat_infer, NULL, concat_exec, 0, false, false},
    {"Split", split_infer, NULL, split_exec, 0x2, false, false},
    {"Gather", gather_infer, NULL, gather_exec, 0, false, false},
    {"Constant", constant_infer, NULL, constant_exec, 0, false, false},
    {"ConstantOfShape", cos_infer, NULL, cos_exec, 0x1, false, false},
    {"Range", range_infer, NULL, range_exec, 0x7, false, false},
    {"Pad", pad_infer, NULL, pad_exec, 0xe, false, false},
    {"Resize", resize_infer, NULL, resize_exec, 0xe, false, false},
    {"GatherElements", gather_elements_infer, NULL, gather_elements_exec, 0, false, false},
    {"ScatterElements", scatter_elements_infer, scatter_prepare, scatter_elements_exec, 0, false,
     false},
    {"GatherND", gather_nd_infer, NULL, gather_nd_exec, 0, false, false},
    {"ScatterND", scatter_nd_infer, scatter_prepare, scatter_nd_exec, 0, false, false},
    {"Tile", tile_infer, NULL, tile_exec, 0x2, false, false},
    {"Trilu", trilu_infer, NULL, trilu_exec, 0, false, false},
    {"DepthToSpace", depth_to_space_infer, NULL, view6_exec, 0, false, false},
    {"SpaceToDepth", space_to_depth_infer, NULL, view6_exec, 0, false, false},
    {"CumSum", cumsum_infer, NULL, cumsum_exec, 0, false, false},
    {"OneHot", onehot_infer, NULL, onehot_exec, 0x2, false, false},
    {"EyeLike", eyelike_infer, NULL, eyelike_exec, 0, false, false},
    {"Einsum", einsum_infer, NULL, einsum_exec, 0, false, false},
};
const size_t veil__ops_shape_count = sizeof(veil__ops_shape) / sizeof(veil__ops_shape[0]);
