/*
 * Shape and data-movement operators in plain C: Shape, Size, Flatten, Reshape, Squeeze,
 * Unsqueeze, Transpose, Concat, Split, Slice, Tile, Trilu, DepthToSpace, SpaceToDepth,
 * Constant, ConstantOfShape, EyeLike, Range, Pad and CumSum. Operators whose outputs' shapes
 * depend on input values read those values at plan time (the operator table marks them), so
 * shapes are known before anything runs.
 */
#include "engine_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- Shape, Size ---- */

veil_err veil__engine_shape_infer(struct veil__engine_ictx *c)
{
    int64_t r = (int64_t)c->in[0].rank;
    int64_t start = veil__engine_attr_i(c->n, "start", 0),
            end = veil__engine_attr_i(c->n, "end", r);
    if (start < 0)
        start += r;
    if (end < 0)
        end += r;
    start = start < 0 ? 0 : start > r ? r : start;
    end = end < 0 ? 0 : end > r ? r : end;
    if (end < start)
        end = start;
    c->kp->shape.start = start;
    c->out[0].dt = VEIL_DT_INT64;
    c->out[0].rank = 1;
    c->out[0].dims[0] = end - start;
    return VEIL_OK;
}

veil_err veil__engine_shape_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    for (int64_t i = 0; i < c->out[0].dims[0]; i++)
        ((int64_t *)c->out[0].data)[i] = c->in[0].dims[kp->shape.start + i];
    return VEIL_OK;
}

veil_err veil__engine_size_infer(struct veil__engine_ictx *c)
{
    c->out[0].dt = VEIL_DT_INT64;
    c->out[0].rank = 0;
    return VEIL_OK;
}

veil_err veil__engine_size_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    (void)kp;
    *(int64_t *)c->out[0].data = (int64_t)c->in[0].numel;
    return VEIL_OK;
}

/* ---- Views: Flatten, Reshape, Squeeze, Unsqueeze ---- */

veil_err veil__engine_flatten_infer(struct veil__engine_ictx *c)
{
    int64_t r = (int64_t)c->in[0].rank, axis = veil__engine_attr_i(c->n, "axis", 1);
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

veil_err veil__engine_reshape_infer(struct veil__engine_ictx *c)
{
    int64_t shp[VEIL__ENGINE_RANK];
    size_t n;
    veil_err rc = veil__engine_read_ints(&c->in[1], shp, VEIL__ENGINE_RANK, &n, c->eb);
    if (rc != VEIL_OK)
        return rc;
    bool allowzero = veil__engine_attr_i(c->n, "allowzero", 0) != 0;
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

static veil_err axes_of(struct veil__engine_ictx *c, size_t in_idx, int64_t *axes, size_t *n)
{
    *n = 0;
    if (c->opset >= 13) {
        if (veil__engine_has_input(c, in_idx))
            return veil__engine_read_ints(&c->in[in_idx], axes, VEIL__ENGINE_RANK, n, c->eb);
        return VEIL_OK;
    }
    const struct veil__engine_attr *a = veil__engine_attr_typed(c->n, "axes", VEIL_ONNX_ATTR_INTS);
    if (a == NULL)
        return VEIL_OK;
    if (a->n > VEIL__ENGINE_RANK)
        return veil_errf(c->eb, VEIL_E_INVALID, "too many axes");
    memcpy(axes, a->ints, a->n * sizeof(int64_t));
    *n = a->n;
    return VEIL_OK;
}

veil_err veil__engine_squeeze_infer(struct veil__engine_ictx *c)
{
    int64_t axes[VEIL__ENGINE_RANK];
    size_t na;
    veil_err rc = axes_of(c, 1, axes, &na);
    if (rc != VEIL_OK)
        return rc;
    bool drop[VEIL__ENGINE_RANK] = {false};
    for (size_t i = 0; i < na; i++) {
        size_t ax;
        if ((rc = veil__engine_norm_axis(axes[i], c->in[0].rank, &ax, c->eb)) != VEIL_OK)
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

veil_err veil__engine_unsqueeze_infer(struct veil__engine_ictx *c)
{
    int64_t axes[VEIL__ENGINE_RANK];
    size_t na;
    veil_err rc = axes_of(c, 1, axes, &na);
    if (rc != VEIL_OK)
        return rc;
    size_t r = c->in[0].rank + na;
    if (na == 0 || r > VEIL__ENGINE_RANK)
        return veil_errf(c->eb, VEIL_E_INVALID, "bad axes for Unsqueeze");
    bool ins[VEIL__ENGINE_RANK] = {false};
    for (size_t i = 0; i < na; i++) {
        size_t ax;
        if ((rc = veil__engine_norm_axis(axes[i], r, &ax, c->eb)) != VEIL_OK)
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
    int64_t dims[VEIL__ENGINE_RANK];
    int64_t ist[VEIL__ENGINE_RANK];
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

static void strided_run(struct sjob *j, const struct veil__engine_tv *out)
{
    if (out->numel == 0)
        return;
    if (j->r == 0) {
        j->r = 1;
        j->dims[0] = 1;
        j->ist[0] = 1;
    }
    uint64_t len = (uint64_t)j->dims[j->r - 1];
    veil__engine_parallel(out->numel / len, len > 4096 ? 1 : 4096 / len, strided_range, j);
}

veil_err veil__engine_transpose_infer(struct veil__engine_ictx *c)
{
    size_t r = c->in[0].rank, perm[VEIL__ENGINE_RANK];
    veil_err rc = veil__engine_transpose_perm(c->n, r, perm, c->eb);
    if (rc != VEIL_OK)
        return rc;
    c->out[0] = c->in[0];
    for (size_t i = 0; i < r; i++) {
        c->kp->transpose.perm[i] = (int64_t)perm[i];
        c->out[0].dims[i] = c->in[0].dims[perm[i]];
    }
    return VEIL_OK;
}

veil_err veil__engine_transpose_exec(struct veil__engine_kctx *c,
                                     const struct veil__engine_kparams *kp)
{
    struct sjob j;
    int64_t st[VEIL__ENGINE_RANK];
    veil__engine_strides_of(c->in[0].dims, c->in[0].rank, st);
    j.in = c->in[0].data;
    j.out = c->out[0].data;
    j.es = veil_dtype_size(c->in[0].dt);
    j.r = c->in[0].rank;
    j.base = 0;
    for (size_t i = 0; i < j.r; i++) {
        j.dims[i] = c->out[0].dims[i];
        j.ist[i] = st[kp->transpose.perm[i]];
    }
    strided_run(&j, &c->out[0]);
    return VEIL_OK;
}

veil_err veil__engine_slice_infer(struct veil__engine_ictx *c)
{
    int64_t starts[VEIL__ENGINE_RANK], ends[VEIL__ENGINE_RANK], axes[VEIL__ENGINE_RANK],
        steps[VEIL__ENGINE_RANK];
    size_t ns = 0, ne = 0, na = 0, nst = 0;
    size_t r = c->in[0].rank;
    veil_err rc;
    if (!veil__engine_has_input(c, 1) || !veil__engine_has_input(c, 2))
        return veil_errf(c->eb, VEIL_E_INVALID, "Slice needs starts and ends");
    if ((rc = veil__engine_read_ints(&c->in[1], starts, VEIL__ENGINE_RANK, &ns, c->eb)) !=
            VEIL_OK ||
        (rc = veil__engine_read_ints(&c->in[2], ends, VEIL__ENGINE_RANK, &ne, c->eb)) != VEIL_OK)
        return rc;
    if (ns != ne)
        return veil_errf(c->eb, VEIL_E_INVALID, "starts and ends differ in length");
    if (veil__engine_has_input(c, 3)) {
        if ((rc = veil__engine_read_ints(&c->in[3], axes, VEIL__ENGINE_RANK, &na, c->eb)) !=
            VEIL_OK)
            return rc;
    } else {
        na = ns;
        for (size_t i = 0; i < ns; i++)
            axes[i] = (int64_t)i;
    }
    if (veil__engine_has_input(c, 4)) {
        if ((rc = veil__engine_read_ints(&c->in[4], steps, VEIL__ENGINE_RANK, &nst, c->eb)) !=
            VEIL_OK)
            return rc;
    } else {
        nst = ns;
        for (size_t i = 0; i < ns; i++)
            steps[i] = 1;
    }
    if (na != ns || nst != ns)
        return veil_errf(c->eb, VEIL_E_INVALID, "Slice inputs differ in length");
    int64_t st[VEIL__ENGINE_RANK];
    veil__engine_strides_of(c->in[0].dims, r, st);
    c->out[0] = c->in[0];
    int64_t base = 0;
    bool seen[VEIL__ENGINE_RANK] = {false};
    for (size_t i = 0; i < r; i++)
        c->kp->slice.strides[i] = st[i];
    for (size_t i = 0; i < ns; i++) {
        size_t ax;
        if ((rc = veil__engine_norm_axis(axes[i], r, &ax, c->eb)) != VEIL_OK)
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
        c->kp->slice.strides[ax] = st[ax] * step;
    }
    c->kp->slice.base = base;
    return VEIL_OK;
}

veil_err veil__engine_slice_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    struct sjob j;
    j.in = c->in[0].data;
    j.out = c->out[0].data;
    j.es = veil_dtype_size(c->in[0].dt);
    j.r = c->in[0].rank;
    j.base = kp->slice.base;
    for (size_t i = 0; i < j.r; i++) {
        j.dims[i] = c->out[0].dims[i];
        j.ist[i] = kp->slice.strides[i];
    }
    strided_run(&j, &c->out[0]);
    return VEIL_OK;
}

/* ---- Concat, Split ---- */

veil_err veil__engine_concat_infer(struct veil__engine_ictx *c)
{
    if (c->n_in == 0 || !veil__engine_has_input(c, 0))
        return veil_errf(c->eb, VEIL_E_INVALID, "Concat needs inputs");
    size_t r = c->in[0].rank, ax;
    veil_err rc = veil__engine_norm_axis(veil__engine_attr_i(c->n, "axis", 0), r, &ax, c->eb);
    if (rc != VEIL_OK)
        return rc;
    c->out[0] = c->in[0];
    int64_t total = 0;
    for (size_t i = 0; i < c->n_in; i++) {
        if (!veil__engine_has_input(c, i) || c->in[i].rank != r || c->in[i].dt != c->in[0].dt)
            return veil_errf(c->eb, VEIL_E_INVALID, "input %zu differs in rank or type", i);
        for (size_t d = 0; d < r; d++)
            if (d != ax && c->in[i].dims[d] != c->in[0].dims[d])
                return veil_errf(c->eb, VEIL_E_INVALID, "input %zu differs in dimension %zu", i, d);
        total += c->in[i].dims[ax];
    }
    c->out[0].dims[ax] = total;
    c->kp->axis.axis = (int64_t)ax;
    return VEIL_OK;
}

veil_err veil__engine_concat_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp)
{
    size_t ax = (size_t)kp->axis.axis, es = veil_dtype_size(c->out[0].dt);
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

veil_err veil__engine_split_infer(struct veil__engine_ictx *c)
{
    size_t r = c->in[0].rank, ax;
    veil_err rc = veil__engine_norm_axis(veil__engine_attr_i(c->n, "axis", 0), r, &ax, c->eb);
    if (rc != VEIL_OK)
        return rc;
    int64_t sizes[VEIL__ENGINE_MAX_NODE_OUT];
    size_t ns = 0;
    int64_t num = veil__engine_attr_i(c->n, "num_outputs", 0);
    if (c->n_out > VEIL__ENGINE_MAX_NODE_OUT)
        return veil_errf(c->eb, VEIL_E_LIMIT, "too many outputs");
    if (c->opset >= 13 && veil__engine_has_input(c, 1)) {
        if ((rc = veil__engine_read_ints(&c->in[1], sizes, VEIL__ENGINE_MAX_NODE_OUT, &ns,
                                         c->eb)) != VEIL_OK)
            return rc;
    } else if (c->opset < 13 &&
               veil__engine_attr_typed(c->n, "split", VEIL_ONNX_ATTR_INTS) != NULL) {
        const struct veil__engine_attr *a =
            veil__engine_attr_typed(c->n, "split", VEIL_ONNX_ATTR_INTS);
        if (a->n > VEIL__ENGINE_MAX_NODE_OUT)
            return veil_errf(c->eb, VEIL_E_LIMIT, "too many splits");
        memcpy(sizes, a->ints, a->n * sizeof(int64_t));
        ns = a->n;
    } else if (c->opset >= 18 && num != 0) {
        /* Opset 18: num_outputs chunks of ceil(d / n), the last one smaller when uneven. */
        int64_t d = c->in[0].dims[ax];
        if (num != (int64_t)c->n_out)
            return veil_errf(c->eb, VEIL_E_INVALID, "num_outputs is %lld for %zu outputs",
                             (long long)num, c->n_out);
        int64_t chunk = (d + num - 1) / num;
        if (chunk * (num - 1) >= d && num > 1)
            return veil_errf(c->eb, VEIL_E_INVALID,
                             "dimension %lld does not split into %lld non-empty chunks",
                             (long long)d, (long long)num);
        for (int64_t i = 0; i < num; i++)
            sizes[i] = i + 1 < num ? chunk : d - chunk * (num - 1);
        ns = (size_t)num;
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
    c->kp->axis.axis = (int64_t)ax;
    return VEIL_OK;
}

veil_err veil__engine_split_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    size_t ax = (size_t)kp->axis.axis, es = veil_dtype_size(c->in[0].dt);
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

/* ---- Constant, ConstantOfShape, Range ---- */

/* Where a Constant's value comes from (kp->constant.kind when kp->constant.value < 0). */
enum { CONST_TENSOR, CONST_FLOAT, CONST_INT, CONST_FLOATS, CONST_INTS };

veil_err veil__engine_constant_infer(struct veil__engine_ictx *c)
{
    const struct veil__engine_attr *a;
    c->kp->constant.value = -1;
    if ((a = veil__engine_attr_typed(c->n, "value", VEIL_ONNX_ATTR_TENSOR)) != NULL &&
        a->tensor >= 0) {
        c->out[0] = c->g->values[a->tensor].c;
        c->kp->constant.value = a->tensor;
        return VEIL_OK;
    }
    if ((a = veil__engine_attr_typed(c->n, "value_float", VEIL_ONNX_ATTR_FLOAT)) != NULL) {
        c->out[0].dt = VEIL_DT_FLOAT;
        c->out[0].rank = 0;
        c->kp->constant.f = a->f;
        c->kp->constant.kind = CONST_FLOAT;
        return VEIL_OK;
    }
    if ((a = veil__engine_attr_typed(c->n, "value_int", VEIL_ONNX_ATTR_INT)) != NULL) {
        c->out[0].dt = VEIL_DT_INT64;
        c->out[0].rank = 0;
        c->kp->constant.i = a->i;
        c->kp->constant.kind = CONST_INT;
        return VEIL_OK;
    }
    if ((a = veil__engine_attr_typed(c->n, "value_floats", VEIL_ONNX_ATTR_FLOATS)) != NULL ||
        (a = veil__engine_attr_typed(c->n, "value_ints", VEIL_ONNX_ATTR_INTS)) != NULL) {
        c->out[0].dt = a->type == VEIL_ONNX_ATTR_FLOATS ? VEIL_DT_FLOAT : VEIL_DT_INT64;
        c->out[0].rank = 1;
        c->out[0].dims[0] = (int64_t)a->n;
        c->kp->constant.kind = a->type == VEIL_ONNX_ATTR_FLOATS ? CONST_FLOATS : CONST_INTS;
        return VEIL_OK;
    }
    return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "Constant without a supported value attribute");
}

veil_err veil__engine_constant_exec(struct veil__engine_kctx *c,
                                    const struct veil__engine_kparams *kp)
{
    size_t nbytes = (size_t)c->out[0].numel * veil_dtype_size(c->out[0].dt);
    if (kp->constant.value >= 0) {
        if (nbytes > 0)
            memcpy(c->out[0].data, c->g->values[kp->constant.value].c.data, nbytes);
    } else if (kp->constant.kind == CONST_FLOAT) {
        *(float *)c->out[0].data = kp->constant.f;
    } else if (kp->constant.kind == CONST_INT) {
        *(int64_t *)c->out[0].data = kp->constant.i;
    } else {
        const struct veil__engine_attr *a = veil__engine_attr_typed(
            c->n, kp->constant.kind == CONST_FLOATS ? "value_floats" : "value_ints",
            kp->constant.kind == CONST_FLOATS ? VEIL_ONNX_ATTR_FLOATS : VEIL_ONNX_ATTR_INTS);
        if (nbytes > 0)
            memcpy(c->out[0].data,
                   kp->constant.kind == CONST_FLOATS ? (const void *)a->floats
                                                     : (const void *)a->ints,
                   nbytes);
    }
    return VEIL_OK;
}

veil_err veil__engine_constant_of_shape_infer(struct veil__engine_ictx *c)
{
    int64_t shp[VEIL__ENGINE_RANK];
    size_t n;
    veil_err rc = veil__engine_read_ints(&c->in[0], shp, VEIL__ENGINE_RANK, &n, c->eb);
    if (rc != VEIL_OK)
        return rc;
    const struct veil__engine_attr *a =
        veil__engine_attr_typed(c->n, "value", VEIL_ONNX_ATTR_TENSOR);
    c->out[0].dt = VEIL_DT_FLOAT;
    c->kp->constant.value = -1;
    if (a != NULL && a->tensor >= 0) {
        const struct veil__engine_tv *t = &c->g->values[a->tensor].c;
        if (t->numel != 1)
            return veil_errf(c->eb, VEIL_E_INVALID, "value must have one element");
        c->out[0].dt = t->dt;
        c->kp->constant.value = a->tensor;
    }
    c->out[0].rank = n;
    for (size_t i = 0; i < n; i++) {
        if (shp[i] < 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "negative dimension");
        c->out[0].dims[i] = shp[i];
    }
    return VEIL_OK;
}

veil_err veil__engine_constant_of_shape_exec(struct veil__engine_kctx *c,
                                             const struct veil__engine_kparams *kp)
{
    size_t es = veil_dtype_size(c->out[0].dt);
    uint8_t zero[8] = {0};
    const uint8_t *v = kp->constant.value >= 0 ? c->g->values[kp->constant.value].c.data : zero;
    for (uint64_t i = 0; i < c->out[0].numel; i++)
        memcpy((uint8_t *)c->out[0].data + i * es, v, es);
    return VEIL_OK;
}

veil_err veil__engine_range_infer(struct veil__engine_ictx *c)
{
    for (size_t i = 0; i < 3; i++)
        if (!veil__engine_has_input(c, i) || c->in[i].numel != 1 || c->in[i].dt != c->in[0].dt)
            return veil_errf(c->eb, VEIL_E_INVALID, "Range needs three scalars of one type");
    double s = veil__engine_get_f64(&c->in[0], 0), l = veil__engine_get_f64(&c->in[1], 0),
           d = veil__engine_get_f64(&c->in[2], 0);
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

veil_err veil__engine_range_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    (void)kp;
    bool fl = c->in[0].dt == VEIL_DT_FLOAT || c->in[0].dt == VEIL_DT_DOUBLE;
    for (uint64_t i = 0; i < c->out[0].numel; i++) {
        if (fl)
            veil__engine_set_f64(&c->out[0], i,
                                 veil__engine_get_f64(&c->in[0], 0) +
                                     (double)i * veil__engine_get_f64(&c->in[2], 0));
        else
            veil__engine_set_i64(&c->out[0], i,
                                 veil__engine_get_i64(&c->in[0], 0) +
                                     (int64_t)i * veil__engine_get_i64(&c->in[2], 0));
    }
    return VEIL_OK;
}

/* ---- Pad ---- */

enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE, PAD_WRAP };

veil_err veil__engine_pad_infer(struct veil__engine_ictx *c)
{
    size_t r = c->in[0].rank, n;
    int64_t pads[2 * VEIL__ENGINE_RANK];
    veil_err rc;
    const char *mode = veil__engine_attr_s(c->n, "mode", "constant");
    if (strcmp(mode, "constant") == 0)
        c->kp->pad.mode = PAD_CONSTANT;
    else if (strcmp(mode, "reflect") == 0)
        c->kp->pad.mode = PAD_REFLECT;
    else if (strcmp(mode, "edge") == 0)
        c->kp->pad.mode = PAD_EDGE;
    else if (strcmp(mode, "wrap") == 0 && c->opset >= 19)
        c->kp->pad.mode = PAD_WRAP;
    else
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "mode '%s'", mode);
    if (!veil__engine_has_input(c, 1))
        return veil_errf(c->eb, VEIL_E_INVALID, "Pad needs pads");
    if ((rc = veil__engine_read_ints(&c->in[1], pads, 2 * VEIL__ENGINE_RANK, &n, c->eb)) != VEIL_OK)
        return rc;
    if (veil__engine_has_input(c, 3)) {
        /* Opset 18: pads for the listed axes only (begins, then ends); the others get none. */
        int64_t axes[VEIL__ENGINE_RANK], part[2 * VEIL__ENGINE_RANK];
        size_t na;
        bool seen[VEIL__ENGINE_RANK] = {false};
        if ((rc = veil__engine_read_ints(&c->in[3], axes, VEIL__ENGINE_RANK, &na, c->eb)) !=
            VEIL_OK)
            return rc;
        if (n != 2 * na)
            return veil_errf(c->eb, VEIL_E_INVALID, "pads has %zu values for %zu axes", n, na);
        memcpy(part, pads, n * sizeof(int64_t));
        memset(pads, 0, sizeof(pads));
        for (size_t i = 0; i < na; i++) {
            size_t ax;
            if ((rc = veil__engine_norm_axis(axes[i], r, &ax, c->eb)) != VEIL_OK)
                return rc;
            if (seen[ax])
                return veil_errf(c->eb, VEIL_E_INVALID, "axis %lld is listed twice",
                                 (long long)axes[i]);
            seen[ax] = true;
            pads[ax] = part[i];
            pads[ax + r] = part[i + na];
        }
        n = 2 * r;
    }
    if (n != 2 * r)
        return veil_errf(c->eb, VEIL_E_INVALID, "pads has %zu values for rank %zu", n, r);
    c->out[0] = c->in[0];
    for (size_t i = 0; i < r; i++) {
        int64_t d = c->in[0].dims[i] + pads[i] + pads[i + r];
        if (d < 0 || pads[i] > (1 << 24) || pads[i + r] > (1 << 24))
            return veil_errf(c->eb, VEIL_E_INVALID, "pads give a negative or huge dimension");
        if (c->kp->pad.mode != PAD_CONSTANT && (pads[i] < 0 || pads[i + r] < 0))
            return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "negative pads in mode '%s'", mode);
        if (c->kp->pad.mode == PAD_REFLECT && d != c->in[0].dims[i] &&
            (pads[i] >= c->in[0].dims[i] || pads[i + r] >= c->in[0].dims[i]))
            return veil_errf(c->eb, VEIL_E_INVALID, "reflect pads must be below the dimension");
        if ((c->kp->pad.mode == PAD_EDGE || c->kp->pad.mode == PAD_WRAP) && d != c->in[0].dims[i] &&
            c->in[0].dims[i] == 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "%s padding of an empty dimension", mode);
        c->out[0].dims[i] = d;
        c->kp->pad.begin[i] = pads[i];
    }
    c->kp->pad.fill_f = 0.0f;
    if (veil__engine_has_input(c, 2)) {
        if (c->in[2].data == NULL || c->in[2].numel != 1 || c->in[2].dt != c->in[0].dt)
            return veil_errf(c->eb, VEIL_E_UNSUPPORTED,
                             "constant_value must be a constant "
                             "scalar of the input's type");
        c->kp->pad.fill_f = (float)veil__engine_get_f64(&c->in[2], 0);
        c->kp->pad.fill_i = veil__engine_get_i64(&c->in[2], 0);
    }
    return VEIL_OK;
}

/*
 * CenterCropPad (opset 18): each listed axis (all by default) cropped or zero-padded to its
 * target length around the centre (the smaller half before). Runs as a constant Pad whose
 * begin offsets are negative where it crops.
 */
veil_err veil__engine_center_crop_pad_infer(struct veil__engine_ictx *c)
{
    size_t r = c->in[0].rank, n;
    int64_t target[VEIL__ENGINE_RANK];
    veil_err rc = veil__engine_read_ints(&c->in[1], target, VEIL__ENGINE_RANK, &n, c->eb);
    if (rc != VEIL_OK)
        return rc;
    const struct veil__engine_attr *a = veil__engine_attr_typed(c->n, "axes", VEIL_ONNX_ATTR_INTS);
    size_t na = a != NULL ? a->n : r;
    if (n != na)
        return veil_errf(c->eb, VEIL_E_INVALID, "shape has %zu values for %zu axes", n, na);
    c->out[0] = c->in[0];
    c->kp->pad.mode = PAD_CONSTANT;
    c->kp->pad.fill_f = 0.0f;
    c->kp->pad.fill_i = 0;
    memset(c->kp->pad.begin, 0, sizeof(c->kp->pad.begin));
    bool seen[VEIL__ENGINE_RANK] = {false};
    for (size_t i = 0; i < na; i++) {
        size_t ax = i;
        if (a != NULL && (rc = veil__engine_norm_axis(a->ints[i], r, &ax, c->eb)) != VEIL_OK)
            return rc;
        if (seen[ax])
            return veil_errf(c->eb, VEIL_E_INVALID, "axis %zu is listed twice", ax);
        seen[ax] = true;
        int64_t d = c->in[0].dims[ax], t = target[i];
        if (t < 0 || t > (1 << 24) + d)
            return veil_errf(c->eb, VEIL_E_INVALID, "target length %lld for axis %zu", (long long)t,
                             ax);
        c->out[0].dims[ax] = t;
        c->kp->pad.begin[ax] = t >= d ? (t - d) / 2 : -((d - t) / 2);
    }
    return VEIL_OK;
}

veil_err veil__engine_pad_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    size_t r = c->in[0].rank, es = veil_dtype_size(c->in[0].dt);
    int64_t ist[VEIL__ENGINE_RANK];
    veil__engine_strides_of(c->in[0].dims, r, ist);
    uint8_t cval[8] = {0};
    struct veil__engine_tv cv = {c->in[0].dt, 0, {0}, 1, cval};
    if (c->in[0].dt == VEIL_DT_FLOAT || c->in[0].dt == VEIL_DT_DOUBLE)
        veil__engine_set_f64(&cv, 0, kp->pad.fill_f);
    else
        veil__engine_set_i64(&cv, 0, kp->pad.fill_i);
    for (uint64_t o = 0; o < c->out[0].numel; o++) {
        uint64_t q = o;
        int64_t off = 0;
        bool outside = false;
        for (size_t i = r; i-- > 0;) {
            int64_t d = c->in[0].dims[i];
            int64_t x = (int64_t)(q % (uint64_t)c->out[0].dims[i]) - kp->pad.begin[i];
            q /= (uint64_t)c->out[0].dims[i];
            if (x < 0 || x >= d) {
                if (kp->pad.mode == PAD_CONSTANT) {
                    outside = true;
                    break;
                }
                if (kp->pad.mode == PAD_REFLECT) {
                    if (d == 1)
                        x = 0;
                    while (x < 0 || x >= d)
                        x = x < 0 ? -x : 2 * (d - 1) - x;
                } else if (kp->pad.mode == PAD_WRAP) {
                    x = ((x % d) + d) % d;
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

/* ---- Tile ---- */

veil_err veil__engine_tile_infer(struct veil__engine_ictx *c)
{
    int64_t rep[VEIL__ENGINE_RANK];
    size_t n, r = c->in[0].rank;
    veil_err rc = veil__engine_read_ints(&c->in[1], rep, VEIL__ENGINE_RANK, &n, c->eb);
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
    int64_t idims[VEIL__ENGINE_RANK], odims[VEIL__ENGINE_RANK], ist[VEIL__ENGINE_RANK];
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

veil_err veil__engine_tile_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
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
    veil__engine_strides_of(j.idims, r, j.ist);
    uint64_t len = (uint64_t)j.odims[r - 1];
    veil__engine_parallel(c->out[0].numel / len, len > 4096 ? 1 : 4096 / len, tile_range, &j);
    return VEIL_OK;
}

/* ---- Trilu ---- */

veil_err veil__engine_trilu_infer(struct veil__engine_ictx *c)
{
    if (c->in[0].rank < 2)
        return veil_errf(c->eb, VEIL_E_INVALID, "input must have rank 2 or more");
    if (veil__engine_has_input(c, 1) && (c->in[1].dt != VEIL_DT_INT64 || c->in[1].numel != 1))
        return veil_errf(c->eb, VEIL_E_INVALID, "k must be one int64");
    c->kp->trilu.upper = veil__engine_attr_i(c->n, "upper", 1) != 0;
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

veil_err veil__engine_trilu_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    size_t r = c->in[0].rank;
    struct trilu_job j = {c->in[0].data,        c->out[0].data,       veil_dtype_size(c->in[0].dt),
                          c->in[0].dims[r - 2], c->in[0].dims[r - 1], 0,
                          kp->trilu.upper};
    if (c->out[0].numel == 0)
        return VEIL_OK;
    if (c->n_in > 1 && c->n->in[1] >= 0)
        j.k = veil__engine_get_i64(&c->in[1], 0);
    /* Beyond +-(rows + cols) every k selects the same elements; clamping keeps i + k exact. */
    int64_t lim = j.rows + j.cols;
    j.k = j.k < -lim ? -lim : j.k > lim ? lim : j.k;
    veil__engine_parallel(c->out[0].numel / (uint64_t)j.cols, 64, trilu_range, &j);
    return VEIL_OK;
}

/* ---- DepthToSpace, SpaceToDepth: 6-D transposes through the strided copy ---- */

static veil_err blocksize_of(struct veil__engine_ictx *c, int64_t *b)
{
    const struct veil__engine_attr *a =
        veil__engine_attr_typed(c->n, "blocksize", VEIL_ONNX_ATTR_INT);
    *b = 0;
    if (a == NULL || a->i < 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "blocksize must be given and positive");
    if (c->in[0].rank != 4)
        return veil_errf(c->eb, VEIL_E_INVALID, "input must have rank 4, not %zu", c->in[0].rank);
    *b = a->i;
    return VEIL_OK;
}

/* The output viewed as 6-D, and the input strides that each of its axes walks. */
static void set_view6(struct veil__engine_kparams *kp, const int64_t *dims, const int64_t *st)
{
    memcpy(kp->view6.dims, dims, 6 * sizeof(int64_t));
    memcpy(kp->view6.strides, st, 6 * sizeof(int64_t));
}

veil_err veil__engine_depth_to_space_infer(struct veil__engine_ictx *c)
{
    int64_t b, bb;
    veil_err rc = blocksize_of(c, &b);
    if (rc != VEIL_OK)
        return rc;
    const char *mode = veil__engine_attr_s(c->n, "mode", "DCR");
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

veil_err veil__engine_space_to_depth_infer(struct veil__engine_ictx *c)
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

veil_err veil__engine_depth_space_exec(struct veil__engine_kctx *c,
                                       const struct veil__engine_kparams *kp)
{
    struct sjob j;
    j.in = c->in[0].data;
    j.out = c->out[0].data;
    j.es = veil_dtype_size(c->in[0].dt);
    j.r = 6;
    j.base = 0;
    memcpy(j.dims, kp->view6.dims, 6 * sizeof(int64_t));
    memcpy(j.ist, kp->view6.strides, 6 * sizeof(int64_t));
    strided_run(&j, &c->out[0]);
    return VEIL_OK;
}

/* ---- CumSum ---- */

static bool cumsum_dt(enum veil_dtype dt)
{
    return dt == VEIL_DT_FLOAT || dt == VEIL_DT_DOUBLE || dt == VEIL_DT_INT32 ||
           dt == VEIL_DT_INT64 || dt == VEIL_DT_UINT32 || dt == VEIL_DT_UINT64;
}

veil_err veil__engine_cumsum_infer(struct veil__engine_ictx *c)
{
    const struct veil__engine_tv *a = &c->in[1];
    if (!cumsum_dt(c->in[0].dt))
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "CumSum of %s", veil_dtype_name(c->in[0].dt));
    if (c->in[0].rank < 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "input must have rank 1 or more");
    if (!veil__engine_dt_is_index(a->dt) || a->numel != 1 || a->rank > 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "axis must be one int32 or int64");
    if (a->data != NULL) {
        size_t ax;
        veil_err rc = veil__engine_norm_axis(veil__engine_get_i64(a, 0), c->in[0].rank, &ax, c->eb);
        if (rc != VEIL_OK)
            return rc;
    }
    c->kp->cumsum.exclusive = veil__engine_attr_i(c->n, "exclusive", 0) != 0;
    c->kp->cumsum.reverse = veil__engine_attr_i(c->n, "reverse", 0) != 0;
    c->out[0] = c->in[0];
    return VEIL_OK;
}

struct cumsum_job {
    const struct veil__engine_tv *x;
    struct veil__engine_tv *y;
    uint64_t len, inner;
    bool exclusive, reverse;
};

/* Lines [lo, hi) along the axis, line t = o * inner + i; floats sum in double, integers wrap. */
static void cumsum_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct cumsum_job *j = ud;
    bool fl = veil__engine_dt_is_float(j->x->dt);
    for (uint64_t t = lo; t < hi; t++) {
        uint64_t base = (t / j->inner) * j->len * j->inner + t % j->inner;
        double fs = 0;
        uint64_t is = 0;
        for (uint64_t s = 0; s < j->len; s++) {
            uint64_t e = base + (j->reverse ? j->len - 1 - s : s) * j->inner;
            double fx = fl ? veil__engine_get_f64(j->x, e) : 0;
            uint64_t ix = fl ? 0 : (uint64_t)veil__engine_get_i64(j->x, e);
            if (!j->exclusive) {
                fs += fx;
                is += ix;
            }
            if (fl)
                veil__engine_set_f64(j->y, e, fs);
            else
                veil__engine_set_i64(j->y, e, (int64_t)is);
            if (j->exclusive) {
                fs += fx;
                is += ix;
            }
        }
    }
}

veil_err veil__engine_cumsum_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp)
{
    size_t ax;
    veil_err rc =
        veil__engine_norm_axis(veil__engine_get_i64(&c->in[1], 0), c->in[0].rank, &ax, c->eb);
    if (rc != VEIL_OK)
        return rc;
    struct cumsum_job j = {&c->in[0],
                           &c->out[0],
                           (uint64_t)c->in[0].dims[ax],
                           veil__engine_numel(c->in[0].dims + ax + 1, c->in[0].rank - ax - 1),
                           kp->cumsum.exclusive,
                           kp->cumsum.reverse};
    if (c->out[0].numel == 0)
        return VEIL_OK;
    veil__engine_parallel(c->out[0].numel / j.len, 1 + 16384 / j.len, cumsum_range, &j);
    return VEIL_OK;
}

/* ---- EyeLike ---- */

veil_err veil__engine_eyelike_infer(struct veil__engine_ictx *c)
{
    const struct veil__engine_attr *a = veil__engine_attr_typed(c->n, "dtype", VEIL_ONNX_ATTR_INT);
    enum veil_dtype dt = c->in[0].dt;
    if (c->in[0].rank != 2)
        return veil_errf(c->eb, VEIL_E_INVALID, "input must have rank 2, not %zu", c->in[0].rank);
    if (a != NULL) {
        if (a->i <= 0 || a->i > 255)
            return veil_errf(c->eb, VEIL_E_INVALID, "dtype %lld is not a tensor type",
                             (long long)a->i);
        dt = (enum veil_dtype)a->i;
    }
    /* A 16-bit float identity is computed as float (exact: its values are 0 and 1). */
    if (veil__engine_dt_is_half(dt))
        dt = VEIL_DT_FLOAT;
    if (!veil__engine_dt_is_numeric(dt) && dt != VEIL_DT_BOOL)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "EyeLike of %s (dtype %d)", veil_dtype_name(dt),
                         (int)dt);
    c->out[0] = c->in[0];
    c->out[0].dt = dt;
    c->kp->eyelike.k = veil__engine_attr_i(c->n, "k", 0);
    return VEIL_OK;
}

veil_err veil__engine_eyelike_exec(struct veil__engine_kctx *c,
                                   const struct veil__engine_kparams *kp)
{
    struct veil__engine_tv *y = &c->out[0];
    int64_t rows = y->dims[0], cols = y->dims[1], k = kp->eyelike.k;
    size_t es = veil_dtype_size(y->dt);
    if (y->numel > 0)
        memset(y->data, 0, (size_t)y->numel * es);
    if (k >= cols || k <= -rows)
        return VEIL_OK;
    for (int64_t i = k < 0 ? -k : 0; i < rows && i + k < cols; i++) {
        veil__engine_set_i64(y, (uint64_t)(i * cols + i + k), 1);
    }
    return VEIL_OK;
}
