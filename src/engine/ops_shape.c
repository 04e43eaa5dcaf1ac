/*
 * Shape and data-movement operators in plain C: Shape, Size, Flatten, Reshape, Squeeze,
 * Unsqueeze, Transpose, Concat, Split, Slice, Gather, Constant, ConstantOfShape, Range, Pad,
 * Resize. Operators whose outputs' shapes depend on input values read those values at plan
 * time (the operator table marks them), so shapes are known before anything runs. Gather
 * checks every index at run time and fails the run on one out of range.
 */
#include "engine_int.h"

#include <math.h>
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
    for (uint64_t k = 0; k < ni; k++) {
        int64_t ix = veil__get_i64(&c->in[1], k);
        if (ix < -len || ix >= len)
            return veil_errf(c->eb, VEIL_E_INVALID, "index %lld out of range [-%lld, %lld)",
                             (long long)ix, (long long)len, (long long)len);
    }
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
            /* Under tf_crop_and_resize an axis keeps (end - start) of its length. */
            double d = floor((double)c->in[0].dims[i] * (r1[i] - r0[i]) * scales[i]);
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
        for (int64_t x = 0; x < out; x++)
            resize_entry(&cf, resize_coord(cf.ctm, x, in, out, scales[i], r0[i], r1[i]), in,
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
};
const size_t veil__ops_shape_count = sizeof(veil__ops_shape) / sizeof(veil__ops_shape[0]);
