/*
 * Operators on oneDNN primitives: Conv, ConvTranspose, MatMul and Gemm. Primitives are
 * created once per plan; constant weights are reordered once into the layout the primitive
 * prefers and shared read-only by every run. Fused work (bias, a residual Add, and ReLU,
 * LeakyRelu, Clip, Sigmoid, Tanh, GELU activations) runs as oneDNN post-ops inside the same
 * primitive. Each primitive's scratchpad lives in the run's scratch arena (user scratchpad
 * mode), so a run allocates nothing. MatMul and Gemm also have plain C kernels, used for
 * constant folding and for the cases the primitive path does not cover.
 */
#include "engine_int.h"

#include <math.h>
#include <string.h>

static void row_major_strides(size_t r, const int64_t *dims, int64_t *st)
{
    int64_t s = 1;
    for (size_t i = r; i-- > 0;) {
        st[i] = s;
        s *= dims[i] > 0 ? dims[i] : 1;
    }
}

static void plain_md(dnnl_memory_desc_t *md, size_t rank, const int64_t *dims)
{
    dnnl_dims_t d = {0}, s = {0};
    memcpy(d, dims, rank * sizeof(int64_t));
    row_major_strides(rank, dims, s);
    dnnl_memory_desc_init_by_strides(md, (int)rank, d, dnnl_f32, s);
}

static void any_md(dnnl_memory_desc_t *md, size_t rank, const int64_t *dims)
{
    dnnl_dims_t d;
    for (size_t i = 0; i < rank; i++)
        d[i] = dims[i];
    dnnl_memory_desc_init_by_tag(md, (int)rank, d, dnnl_f32, dnnl_format_tag_any);
}

static void add_arg(struct veil__engine_dnnl_exec *ex, int arg, const dnnl_memory_desc_t *md,
                    int32_t value, const void *ptr, size_t off)
{
    VEIL_ASSERT(ex->n_args < VEIL__ENGINE_MAX_ARGS);
    struct veil__engine_dnnl_arg *a = &ex->args[ex->n_args++];
    a->arg = arg;
    a->md = *md;
    a->value = value;
    a->ptr = ptr;
    a->off = off;
}

/* Post-ops of node n: the residual add (binary, full tensor) at its place, then activations. */
static veil_err make_attr_sum(const struct veil__engine_node *n, const dnnl_memory_desc_t *add_md,
                              bool sum, dnnl_primitive_attr_t *attr, struct veil_errbuf *eb)
{
    dnnl_post_ops_t po = NULL;
    veil_err rc = veil__engine_dnnl_err(dnnl_primitive_attr_create(attr), "attr", eb);
    if (rc != VEIL_OK)
        return rc;
    dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (n->n_post == 0 && n->add_in < 0)
        return VEIL_OK;
    if ((rc = veil__engine_dnnl_err(dnnl_post_ops_create(&po), "post-ops", eb)) != VEIL_OK)
        return rc;
    for (size_t i = 0; i <= n->n_post; i++) {
        if (n->add_in >= 0 && n->add_at == i)
            rc = sum ? veil__engine_dnnl_err(dnnl_post_ops_append_sum(po, 1.0f), "sum post-op", eb)
                     : veil__engine_dnnl_err(
                           dnnl_post_ops_append_binary(po, dnnl_binary_add, add_md),
                           "binary post-op", eb);
        if (rc != VEIL_OK || i == n->n_post)
            break;
        const struct veil__engine_post *p = &n->post[i];
        dnnl_alg_kind_t alg;
        float a = 0.0f, b = 0.0f;
        switch (p->kind) {
        case VEIL__ENGINE_POST_RELU:
            alg = dnnl_eltwise_relu;
            break;
        case VEIL__ENGINE_POST_LEAKY:
            alg = dnnl_eltwise_relu;
            a = p->a;
            break;
        case VEIL__ENGINE_POST_CLIP:
            alg = dnnl_eltwise_clip_v2;
            a = p->a;
            b = p->b;
            break;
        case VEIL__ENGINE_POST_SIGMOID:
            alg = dnnl_eltwise_logistic;
            break;
        case VEIL__ENGINE_POST_TANH:
            alg = dnnl_eltwise_tanh;
            break;
        case VEIL__ENGINE_POST_LINEAR:
            alg = dnnl_eltwise_linear;
            a = p->a;
            b = p->b;
            break;
        case VEIL__ENGINE_POST_SWISH:
            alg = dnnl_eltwise_swish;
            a = 1.0f;
            break;
        case VEIL__ENGINE_POST_HARDSWISH:
            alg = dnnl_eltwise_hardswish;
            break;
        case VEIL__ENGINE_POST_GELU_TANH:
            alg = dnnl_eltwise_gelu_tanh;
            break;
        default:
            alg = dnnl_eltwise_gelu_erf;
            break;
        }
        rc = veil__engine_dnnl_err(dnnl_post_ops_append_eltwise(po, 1.0f, alg, a, b),
                                   "eltwise post-op", eb);
    }
    if (rc == VEIL_OK)
        rc = veil__engine_dnnl_err(dnnl_primitive_attr_set_post_ops(*attr, po), "post-ops", eb);
    dnnl_post_ops_destroy(po);
    return rc;
}

static veil_err make_attr(const struct veil__engine_node *n, const dnnl_memory_desc_t *add_md,
                          dnnl_primitive_attr_t *attr, struct veil_errbuf *eb)
{
    return make_attr_sum(n, add_md, false, attr, eb);
}

/* Reserves sz bytes of the step's scratch region at the cursor and returns their offset. */
static size_t take_scratch(struct veil__engine_step *st, size_t *cur, size_t sz)
{
    size_t off = *cur;
    *cur += (sz + 63) & ~(size_t)63;
    if (*cur > st->scratch_bytes)
        st->scratch_bytes = *cur;
    return off;
}

/* Creates the primitive of pd into ex, with its scratchpad in the step's scratch region. */
static veil_err finish_prim_at(dnnl_primitive_desc_t pd, struct veil__engine_dnnl_exec *ex,
                               struct veil__engine_step *st, size_t *cur, struct veil_errbuf *eb)
{
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    veil_err rc =
        veil__engine_dnnl_err(dnnl_primitive_create(&ex->prim, pd), "primitive creation", eb);
    if (rc != VEIL_OK)
        return rc;
    if (sp != NULL && dnnl_memory_desc_get_size(sp) > 0)
        add_arg(ex, DNNL_ARG_SCRATCHPAD, sp, -1, NULL,
                take_scratch(st, cur, dnnl_memory_desc_get_size(sp)));
    return VEIL_OK;
}

static veil_err finish_prim(dnnl_primitive_desc_t pd, struct veil__engine_dnnl_exec *ex,
                            struct veil__engine_step *st, struct veil_errbuf *eb)
{
    size_t cur = 0;
    return finish_prim_at(pd, ex, st, &cur, eb);
}

/* A reorder execution between two bindings (value >= 0, or step scratch offset). */
static veil_err add_reorder(dnnl_engine_t eng, struct veil__engine_kstate *ks,
                            const dnnl_memory_desc_t *from, int32_t from_v, size_t from_off,
                            const dnnl_memory_desc_t *to, int32_t to_v, size_t to_off,
                            struct veil_errbuf *eb)
{
    dnnl_primitive_desc_t pd = NULL;
    VEIL_ASSERT(ks->n_ex < VEIL__ENGINE_MAX_EX);
    struct veil__engine_dnnl_exec *ex = &ks->ex[ks->n_ex];
    veil_err rc = veil__engine_dnnl_err(
        dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, NULL), "reorder", eb);
    if (rc == VEIL_OK)
        rc = veil__engine_dnnl_err(dnnl_primitive_create(&ex->prim, pd), "reorder", eb);
    if (pd != NULL)
        dnnl_primitive_desc_destroy(pd);
    if (rc != VEIL_OK)
        return rc;
    ks->n_ex++;
    add_arg(ex, DNNL_ARG_FROM, from, from_v, NULL, from_off);
    add_arg(ex, DNNL_ARG_TO, to, to_v, NULL, to_off);
    return VEIL_OK;
}

/* The layout a value is stored in: its producer's blocked md, or row-major. */
static void value_md(const struct veil__engine_ictx *c, int32_t v, const struct veil__engine_tv *t,
                     dnnl_memory_desc_t *md)
{
    if (v >= 0 && c->vals != NULL && c->vals[v].blocked)
        *md = c->vals[v].md;
    else
        plain_md(md, t->rank, t->dims);
}

/*
 * Binds the primitive pd's source (query src_md) to value v and its destination (query dst_md)
 * to value out, adding reorders through the step scratch where the layouts differ. The output
 * value keeps the primitive's layout when every reader accepts it (c->blockable).
 * main is filled with the main primitive's SRC/DST args; reorders go before and after it.
 */
static veil_err bind_src_dst(const struct veil__engine_ictx *c, dnnl_engine_t eng,
                             dnnl_primitive_desc_t pd, struct veil__engine_kstate *ks,
                             struct veil__engine_dnnl_exec *main_ex, struct veil__engine_step *st,
                             size_t *cur, struct veil__engine_dnnl_exec *post, bool *has_post)
{
    veil_err rc;
    dnnl_memory_desc_t have, plain;
    int32_t in = c->n->in[0], out = c->n->out[0];
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    value_md(c, in, &c->in[0], &have);
    if (dnnl_memory_desc_equal(want, &have)) {
        add_arg(main_ex, DNNL_ARG_SRC, &have, in, NULL, 0);
    } else {
        size_t off = take_scratch(st, cur, dnnl_memory_desc_get_size(want));
        if ((rc = add_reorder(eng, ks, &have, in, 0, want, -1, off, c->eb)) != VEIL_OK)
            return rc;
        add_arg(main_ex, DNNL_ARG_SRC, want, -1, NULL, off);
    }
    const dnnl_memory_desc_t *dwant = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    plain_md(&plain, c->out[0].rank, c->out[0].dims);
    *has_post = false;
    if (c->blockable != NULL && c->blockable[out] && c->vals != NULL) {
        struct veil__engine_pval *pv = &c->vals[out];
        pv->blocked = !dnnl_memory_desc_equal(dwant, &plain);
        pv->md = *dwant;
        size_t sz = dnnl_memory_desc_get_size(dwant);
        if (sz > pv->nbytes)
            pv->nbytes = sz;
        add_arg(main_ex, DNNL_ARG_DST, dwant, out, NULL, 0);
    } else if (dnnl_memory_desc_equal(dwant, &plain)) {
        add_arg(main_ex, DNNL_ARG_DST, &plain, out, NULL, 0);
    } else {
        size_t off = take_scratch(st, cur, dnnl_memory_desc_get_size(dwant));
        add_arg(main_ex, DNNL_ARG_DST, dwant, -1, NULL, off);
        dnnl_primitive_desc_t rpd = NULL;
        rc = veil__engine_dnnl_err(
            dnnl_reorder_primitive_desc_create(&rpd, dwant, eng, &plain, eng, NULL), "reorder",
            c->eb);
        if (rc == VEIL_OK)
            rc = veil__engine_dnnl_err(dnnl_primitive_create(&post->prim, rpd), "reorder", c->eb);
        if (rpd != NULL)
            dnnl_primitive_desc_destroy(rpd);
        if (rc != VEIL_OK)
            return rc;
        add_arg(post, DNNL_ARG_FROM, dwant, -1, NULL, off);
        add_arg(post, DNNL_ARG_TO, &plain, out, NULL, 0);
        *has_post = true;
    }
    return VEIL_OK;
}

/* Appends the main exec and the optional trailing reorder to ks, in order. */
static void push_execs(struct veil__engine_kstate *ks, const struct veil__engine_dnnl_exec *main_ex,
                       const struct veil__engine_dnnl_exec *post, bool has_post)
{
    VEIL_ASSERT(ks->n_ex + 1 + has_post <= VEIL__ENGINE_MAX_EX);
    ks->ex[ks->n_ex++] = *main_ex;
    if (has_post)
        ks->ex[ks->n_ex++] = *post;
}

/*
 * The memory descriptor of a fused residual: its shape padded to rank r with leading 1s, and
 * every dimension equal to the output's or 1 (so the fused add cannot change the shape). A
 * residual of the output's full shape takes the destination's layout dst (the layout oneDNN's
 * kernels read a binary operand in); residual_bind reorders it there when it is stored
 * otherwise. Broadcast residuals are row-major.
 */
static veil_err residual_md(const struct veil__engine_ictx *c, size_t r, const int64_t *odims,
                            const dnnl_memory_desc_t *dst, dnnl_memory_desc_t *md)
{
    int64_t d[VEIL__ENGINE_RANK + 2];
    if (c->n->add_in < 0) {
        plain_md(md, r, odims);
        return VEIL_OK;
    }
    const struct veil__engine_tv *a = &c->add;
    bool full = a->rank == r;
    for (size_t i = 0; full && i < r; i++)
        full = a->dims[i] == odims[i];
    if (full && a->dt == VEIL_DT_FLOAT) {
        *md = *dst;
        return VEIL_OK;
    }
    if ((c->vals != NULL && c->vals[c->n->add_in].blocked) || a->rank > r || a->dt != VEIL_DT_FLOAT)
        return veil_errf(c->eb, VEIL_E_INVALID, "fused residual does not match the output");
    for (size_t i = 0; i < r; i++) {
        d[i] = i + a->rank >= r ? a->dims[i + a->rank - r] : 1;
        if (d[i] != odims[i] && d[i] != 1)
            return veil_errf(c->eb, VEIL_E_INVALID, "fused residual does not match the output");
    }
    plain_md(md, r, d);
    return VEIL_OK;
}

/*
 * Binds the fused residual for a binary post-op described by add_md (from residual_md): the
 * value itself where it is stored in that layout (or row-major with the same bytes, for
 * broadcasts and collapsed views), else a reorder into the step's scratch appended to ks (so
 * it runs before the kernel that ks gets next). *v and *off receive the binding.
 */
static veil_err residual_bind(const struct veil__engine_ictx *c, dnnl_engine_t eng,
                              struct veil__engine_kstate *ks, struct veil__engine_step *st,
                              size_t *cur, const dnnl_memory_desc_t *add_md, int32_t *v,
                              size_t *off)
{
    int32_t res = c->n->add_in;
    dnnl_memory_desc_t have, want;
    value_md(c, res, &c->add, &have);
    bool same_dims = (size_t)add_md->ndims == c->add.rank;
    for (size_t i = 0; same_dims && i < c->add.rank; i++)
        same_dims = add_md->dims[i] == c->add.dims[i];
    if (same_dims)
        want = *add_md;
    else
        plain_md(&want, c->add.rank, c->add.dims);
    *v = res;
    *off = 0;
    if (dnnl_memory_desc_equal(&have, &want))
        return VEIL_OK;
    *off = take_scratch(st, cur, dnnl_memory_desc_get_size(&want));
    *v = -1;
    return add_reorder(eng, ks, &have, res, 0, &want, -1, *off, c->eb);
}

/* ---- Conv, ConvTranspose ---- */

veil_err veil__engine_conv_infer(struct veil__engine_ictx *c)
{
    bool tr = strcmp(c->n->op_type, "ConvTranspose") == 0;
    if (!veil__engine_has_input(c, 1) || c->in[0].dt != VEIL_DT_FLOAT ||
        c->in[1].dt != VEIL_DT_FLOAT)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "float input and weights are required");
    size_t r = c->in[0].rank;
    if (r < 3 || r > 5 || c->in[1].rank != r)
        return veil_errf(c->eb, VEIL_E_INVALID, "input and weights must have rank 3 to 5");
    int64_t group = veil__engine_attr_i(c->n, "group", 1);
    int64_t ch = c->in[0].dims[1];
    if (group < 1 || ch % group != 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "group %lld does not divide %lld channels",
                         (long long)group, (long long)ch);
    int64_t m = tr ? c->in[1].dims[1] * group : c->in[1].dims[0];
    if (tr ? c->in[1].dims[0] != ch : c->in[1].dims[1] * group != ch)
        return veil_errf(c->eb, VEIL_E_INVALID, "weights do not match %lld input channels",
                         (long long)ch);
    if (!tr && m % group != 0)
        return veil_errf(c->eb, VEIL_E_INVALID, "group does not divide output channels");
    if (veil__engine_has_input(c, 2) &&
        (c->in[2].dt != VEIL_DT_FLOAT || c->in[2].numel != (uint64_t)m))
        return veil_errf(c->eb, VEIL_E_INVALID, "bias must hold %lld floats", (long long)m);
    c->kp->conv.group = group;
    c->kp->conv.out_channels = m;
    if (!tr) {
        veil_err rc = veil__engine_pool_geometry(c, true, &c->in[1].dims[2], &c->kp->conv.window);
        if (rc != VEIL_OK)
            return rc;
        c->out[0].dims[1] = m;
        return VEIL_OK;
    }
    /* ConvTranspose: out = stride*(in-1) + output_padding + ((k-1)*d+1) - pads. */
    size_t sp = r - 2;
    const struct veil__engine_attr *st =
        veil__engine_attr_typed(c->n, "strides", VEIL_ONNX_ATTR_INTS);
    const struct veil__engine_attr *pd = veil__engine_attr_typed(c->n, "pads", VEIL_ONNX_ATTR_INTS);
    const struct veil__engine_attr *dl =
        veil__engine_attr_typed(c->n, "dilations", VEIL_ONNX_ATTR_INTS);
    const struct veil__engine_attr *op =
        veil__engine_attr_typed(c->n, "output_padding", VEIL_ONNX_ATTR_INTS);
    const struct veil__engine_attr *os =
        veil__engine_attr_typed(c->n, "output_shape", VEIL_ONNX_ATTR_INTS);
    const char *ap = veil__engine_attr_s(c->n, "auto_pad", "NOTSET");
    if ((st && st->n != sp) || (pd && pd->n != 2 * sp) || (dl && dl->n != sp) ||
        (op && op->n != sp) || (os && os->n != sp && os->n != r))
        return veil_errf(c->eb, VEIL_E_INVALID, "attribute lengths do not match the rank");
    c->out[0] = c->in[0];
    c->out[0].dims[1] = m;
    for (size_t i = 0; i < sp; i++) {
        int64_t in = c->in[0].dims[2 + i], k = c->in[1].dims[2 + i];
        int64_t s = st ? st->ints[i] : 1, d = dl ? dl->ints[i] : 1, o = op ? op->ints[i] : 0;
        if (s < 1 || d < 1 || o < 0 || s > 4096 || d > 4096 || o >= s + d || k > 4096)
            return veil_errf(c->eb, VEIL_E_INVALID, "bad stride, dilation or output padding");
        int64_t full = s * (in - 1) + o + (k - 1) * d + 1, pb, pe, out;
        if (os != NULL) {
            out = os->ints[os->n == r ? i + 2 : i];
            int64_t total = full - out;
            if (out < 0 || out > full + 4096)
                return veil_errf(c->eb, VEIL_E_INVALID, "output_shape %lld out of range",
                                 (long long)out);
            /*
             * total/2 rounds down, so an output_shape larger than the full result (total < 0)
             * gives a negative end pad: the extra positions get no contribution (bias only).
             */
            int64_t half = total >= 0 ? total / 2 : -((1 - total) / 2);
            pb = strcmp(ap, "SAME_UPPER") == 0 ? half : total - half;
            pe = total - pb;
        } else if (strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) {
            out = in * s;
            int64_t total = full - out;
            if (total < 0)
                total = 0;
            pb = strcmp(ap, "SAME_UPPER") == 0 ? total / 2 : total - total / 2;
            pe = total - pb;
        } else {
            pb = pd ? pd->ints[i] : 0;
            pe = pd ? pd->ints[i + sp] : 0;
            if (pb < 0 || pe < 0 || pb > 4096 || pe > 4096)
                return veil_errf(c->eb, VEIL_E_INVALID, "bad pads");
            out = full - pb - pe;
        }
        if (out < 0)
            return veil_errf(c->eb, VEIL_E_INVALID, "negative output size");
        c->out[0].dims[2 + i] = out;
        c->kp->conv.window.kernel[i] = k;
        c->kp->conv.window.strides[i] = s;
        c->kp->conv.window.pads[i] = pb;
        c->kp->conv.window.pads[i + sp] = pe;
        c->kp->conv.window.dilations[i] = d;
    }
    return VEIL_OK;
}

veil_err veil__engine_conv_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                   struct veil__engine_step *st)
{
    veil_err rc = VEIL_E_INTERNAL;
    bool tr = strcmp(c->n->op_type, "ConvTranspose") == 0;
    size_t r = c->in[0].rank, sp = r - 2;
    int64_t group = c->kp->conv.group, m = c->kp->conv.out_channels;
    if (tr && c->n->n_post == 0 && c->n->add_in < 0) {
        bool dilated = false;
        for (size_t i = 0; i < sp; i++)
            dilated = dilated || c->kp->conv.window.dilations[i] > 1;
        if (dilated)
            return VEIL_OK; /* the plain kernel follows ONNX exactly */
    }
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t src, wplain, wany, bias, dst, add_md;
    dnnl_dims_t strides, dil, pl, pr, wd;
    struct veil__engine_kstate *ks = veil_calloc(1, sizeof(*ks));
    if (ks == NULL)
        return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for a kernel");
    plain_md(&src, r, c->in[0].dims);
    plain_md(&dst, r, c->out[0].dims);
    /* Weights: ONNX [M, C/g, k...] (Conv) or [C, M/g, k...] (ConvTranspose), grouped view. */
    size_t wr = group > 1 ? r + 1 : r;
    int64_t wdims[VEIL__ENGINE_RANK + 1];
    if (group > 1) {
        wdims[0] = group;
        wdims[1] = tr ? c->in[1].dims[1] : m / group;
        wdims[2] = tr ? c->in[1].dims[0] / group : c->in[1].dims[1];
        for (size_t i = 0; i < sp; i++)
            wdims[3 + i] = c->in[1].dims[2 + i];
    } else {
        wdims[0] = tr ? c->in[1].dims[1] : c->in[1].dims[0];
        wdims[1] = tr ? c->in[1].dims[0] : c->in[1].dims[1];
        for (size_t i = 0; i < sp; i++)
            wdims[2 + i] = c->in[1].dims[2 + i];
    }
    for (size_t i = 0; i < wr; i++)
        wd[i] = wdims[i];
    {
        /* Strides of the ONNX layout seen through the (g, o, i, k...) dims. */
        dnnl_dims_t s;
        int64_t kprod = 1;
        for (size_t i = 0; i < sp; i++)
            kprod *= c->in[1].dims[2 + i];
        int64_t ks_ = 1;
        for (size_t i = sp; i-- > 0;) {
            s[wr - sp + i] = ks_;
            ks_ *= c->in[1].dims[2 + i];
        }
        int64_t o = wdims[wr - sp - 2], in = wdims[wr - sp - 1];
        if (!tr) {
            s[wr - sp - 1] = kprod;      /* i */
            s[wr - sp - 2] = in * kprod; /* o */
            if (group > 1)
                s[0] = o * in * kprod; /* g */
        } else {
            s[wr - sp - 2] = kprod;     /* o: ONNX dim 1 */
            s[wr - sp - 1] = o * kprod; /* i: ONNX dim 0 */
            if (group > 1)
                s[0] = in * o * kprod;
        }
        dnnl_memory_desc_init_by_strides(&wplain, (int)wr, wd, dnnl_f32, s);
    }
    dnnl_memory_desc_init_by_tag(&wany, (int)wr, wd, dnnl_f32, dnnl_format_tag_any);
    int64_t bd[1] = {m};
    plain_md(&bias, 1, bd);
    for (size_t i = 0; i < sp; i++) {
        strides[i] = c->kp->conv.window.strides[i];
        dil[i] = c->kp->conv.window.dilations[i] - 1;
        pl[i] = c->kp->conv.window.pads[i];
        pr[i] = c->kp->conv.window.pads[i + sp];
    }
    for (size_t i = 0; i < sp; i++) {
        /* oneDNN's right padding must match the sizes exactly (output_padding included). */
        int64_t ek = (c->kp->conv.window.kernel[i] - 1) * c->kp->conv.window.dilations[i] + 1;
        int64_t big = tr ? c->out[0].dims[2 + i] : c->in[0].dims[2 + i];
        int64_t small = tr ? c->in[0].dims[2 + i] : c->out[0].dims[2 + i];
        pr[i] = (small - 1) * strides[i] + ek - big - pl[i];
    }
    /*
     * A residual whose storage dies here is accumulated in place (sum post-op: the output
     * shares the residual's storage), which oneDNN's fastest kernels support; otherwise it is
     * read as a binary post-op operand.
     */
    int32_t res = c->n->add_in, out_v = c->n->out[0];
    bool try_sum = veil__engine_storage_dies(c, res) && c->vals[res].blocked &&
                   c->blockable[out_v] && c->vals[res].t.rank == c->out[0].rank;
    for (size_t i = 0; try_sum && i < c->out[0].rank; i++)
        try_sum = c->vals[res].t.dims[i] == c->out[0].dims[i];
    bool sum = false;
    bool wconst = c->in[1].data != NULL;
    const dnnl_memory_desc_t *wuse = wconst ? &wany : &wplain;
    const dnnl_memory_desc_t *buse = veil__engine_has_input(c, 2) ? &bias : NULL;
    /* 2-D convolutions pick their own activation layouts (blocked on channels). */
    bool pick = !tr && sp == 2;
    /* 3x3 stride-1 convolutions try oneDNN's Winograd kernels first (16-channel blocks). */
    bool wino =
        pick && wconst && c->g->winograd && group == 1 && m % 16 == 0 && c->in[0].dims[1] % 16 == 0;
    for (size_t i = 0; wino && i < sp; i++)
        wino = c->kp->conv.window.kernel[i] == 3 && c->kp->conv.window.strides[i] == 1 &&
               c->kp->conv.window.dilations[i] == 1;
    /*
     * 2-D convolutions choose channels-last activations (oneDNN's brgemm kernels), or 16-channel
     * blocks in models with grouped or Winograd convolutions, falling back to the other layout
     * (and from Winograd to direct) when the first choice is refused or has only a reference
     * kernel for this shape.
     * Narrow inputs (images) stay row-major: oneDNN reads them directly. Neighbouring
     * convolutions agree on the layout, so reorders appear only at the few fallbacks.
     */
    /* Candidates in order of preference: (algorithm, activation layout). */
    struct {
        dnnl_alg_kind_t alg;
        dnnl_format_tag_t tag;
    } cand[3];
    size_t n_cand = 0;
    /* Depthwise and Winograd kernels want 16-channel blocks: the whole model uses them. */
    dnnl_format_tag_t first = c->g->blocked_convs ? dnnl_nChw16c : dnnl_nhwc;
    if (wino) {
        cand[n_cand].alg = dnnl_convolution_winograd;
        cand[n_cand++].tag = dnnl_nChw16c;
    }
    cand[n_cand].alg = dnnl_convolution_direct;
    cand[n_cand++].tag = first;
    if (pick) {
        cand[n_cand].alg = dnnl_convolution_direct;
        cand[n_cand++].tag = first == dnnl_nhwc ? dnnl_nChw16c : dnnl_nhwc;
    }
    for (int pass = 0; pass < (try_sum ? 2 : 1); pass++) {
        sum = try_sum && pass == 0;
        for (size_t attempt = 0; attempt < n_cand; attempt++) {
            if (pd != NULL) {
                dnnl_primitive_desc_destroy(pd);
                pd = NULL;
            }
            if (pick) {
                dnnl_dims_t sd, dd;
                for (size_t i = 0; i < 4; i++) {
                    sd[i] = c->in[0].dims[i];
                    dd[i] = c->out[0].dims[i];
                }
                if (sd[1] >= 8)
                    dnnl_memory_desc_init_by_tag(&src, 4, sd, dnnl_f32, cand[attempt].tag);
                dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, cand[attempt].tag);
            }
            if (attr != NULL) {
                dnnl_primitive_attr_destroy(attr);
                attr = NULL;
            }
            if ((rc = residual_md(c, r, c->out[0].dims, &dst, &add_md)) != VEIL_OK ||
                (rc = make_attr_sum(c->n, &add_md, sum, &attr, c->eb)) != VEIL_OK)
                goto out;
            if (tr) {
                dnnl_deconvolution_desc_t dd;
                rc = veil__engine_dnnl_err(dnnl_dilated_deconvolution_forward_desc_init(
                                               &dd, dnnl_forward_inference,
                                               dnnl_deconvolution_direct, &src, wuse, buse, &dst,
                                               strides, dil, pl, pr),
                                           "deconvolution descriptor", c->eb);
                if (rc == VEIL_OK)
                    rc =
                        veil__engine_dnnl_err(dnnl_primitive_desc_create(&pd, &dd, attr, eng, NULL),
                                              "deconvolution", c->eb);
            } else {
                dnnl_convolution_desc_t cd;
                rc = veil__engine_dnnl_err(dnnl_dilated_convolution_forward_desc_init(
                                               &cd, dnnl_forward_inference, cand[attempt].alg, &src,
                                               wuse, buse, &dst, strides, dil, pl, pr),
                                           "convolution descriptor", c->eb);
                if (rc == VEIL_OK)
                    rc =
                        veil__engine_dnnl_err(dnnl_primitive_desc_create(&pd, &cd, attr, eng, NULL),
                                              "convolution", c->eb);
            }
            const char *impl = NULL;
            if (rc == VEIL_OK && (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0,
                                                            (void *)&impl) != dnnl_success ||
                                  impl == NULL || strncmp(impl, "ref", 3) != 0))
                break;
            if (attempt + 1 < n_cand)
                rc = VEIL_OK;
        }
        if (rc != VEIL_OK || !sum)
            break;
        const dnnl_memory_desc_t *dw = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
        if (dnnl_memory_desc_equal(dw, &c->vals[res].md))
            break;
        rc = VEIL_OK; /* layouts differ: use the binary post-op */
    }
    if (rc != VEIL_OK)
        goto out;
    struct veil__engine_dnnl_exec mex, post;
    bool has_post = false;
    size_t cur = 0;
    memset(&mex, 0, sizeof(mex));
    memset(&post, 0, sizeof(post));
    if (pick) {
        if ((rc = bind_src_dst(c, eng, pd, ks, &mex, st, &cur, &post, &has_post)) != VEIL_OK)
            goto out;
    } else {
        add_arg(&mex, DNNL_ARG_SRC, &src, c->n->in[0], NULL, 0);
        add_arg(&mex, DNNL_ARG_DST, &dst, c->n->out[0], NULL, 0);
    }
    if (wconst) {
        const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        const void *wbuf;
        if ((rc = veil__engine_wcache_reorder(c, c->n->in[1], eng, &wplain, c->in[1].data, wmd, ks,
                                              &wbuf, c->eb)) != VEIL_OK)
            goto out;
        add_arg(&mex, DNNL_ARG_WEIGHTS, wmd, -1, wbuf, 0);
    } else {
        add_arg(&mex, DNNL_ARG_WEIGHTS, &wplain, c->n->in[1], NULL, 0);
    }
    if (buse != NULL)
        add_arg(&mex, DNNL_ARG_BIAS, &bias, c->n->in[2], NULL, 0);
    if (c->n->add_in >= 0 && !sum) {
        int32_t rv;
        size_t roff;
        if ((rc = residual_bind(c, eng, ks, st, &cur, &add_md, &rv, &roff)) != VEIL_OK) {
            if (has_post)
                dnnl_primitive_destroy(post.prim);
            goto out;
        }
        add_arg(&mex, DNNL_ARG_ATTR_MULTIPLE_POST_OP((int)c->n->add_at) | DNNL_ARG_SRC_1, &add_md,
                rv, NULL, roff);
    }
    if ((rc = finish_prim_at(pd, &mex, st, &cur, c->eb)) != VEIL_OK) {
        if (has_post)
            dnnl_primitive_destroy(post.prim);
        goto out;
    }
    if (sum) {
        /* The output takes over the residual's storage, which already holds the addend. */
        c->vals[out_v].alias = true;
        c->vals[out_v].root = res;
    }
    push_execs(ks, &mex, &post, has_post);
    st->ks = ks;
    ks = NULL;
    rc = VEIL_OK;
out:
    if (pd != NULL)
        dnnl_primitive_desc_destroy(pd);
    if (attr != NULL)
        dnnl_primitive_attr_destroy(attr);
    veil__engine_kstate_free(ks);
    return rc;
}

/* ---- MaxPool, GlobalAveragePool and GlobalMaxPool on oneDNN (2-D, any layout) ---- */

veil_err veil__engine_pool_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                   struct veil__engine_step *st)
{
    veil_err rc = VEIL_E_INTERNAL;
    bool gap = strcmp(c->n->op_type, "GlobalAveragePool") == 0;
    bool gmp = strcmp(c->n->op_type, "GlobalMaxPool") == 0;
    bool blocked_in = c->vals != NULL && c->vals[c->n->in[0]].blocked;
    dnnl_primitive_desc_t pd = NULL;
    struct veil__engine_kstate *ks = NULL;
    /*
     * Empty inputs (a global pool over no elements) and MaxPool's indices output are left to
     * the plain kernels.
     */
    if (c->in[0].rank != 4 || c->in[0].dt != VEIL_DT_FLOAT || c->in[0].numel == 0 ||
        (c->n_out > 1 && c->n->out[1] >= 0))
        return blocked_in ? veil_errf(c->eb, VEIL_E_INTERNAL, "blocked input to plain pooling")
                          : VEIL_OK;
    dnnl_dims_t strides, kernel, dil = {0, 0}, pl, pr;
    for (size_t i = 0; i < 2; i++) {
        int64_t in = c->in[0].dims[2 + i], out = c->out[0].dims[2 + i];
        if (gap || gmp) {
            strides[i] = 1;
            kernel[i] = in;
            pl[i] = pr[i] = 0;
        } else {
            if (c->kp->pool.window.dilations[i] != 1)
                return blocked_in ? veil_errf(c->eb, VEIL_E_UNSUPPORTED,
                                              "dilated pooling of a "
                                              "blocked input")
                                  : VEIL_OK;
            strides[i] = c->kp->pool.window.strides[i];
            kernel[i] = c->kp->pool.window.kernel[i];
            pl[i] = c->kp->pool.window.pads[i];
            pr[i] = (out - 1) * strides[i] + kernel[i] - in - pl[i];
        }
    }
    /* Pooling takes its source layout as given; the destination follows it. */
    dnnl_memory_desc_t src, dst;
    value_md(c, c->n->in[0], &c->in[0], &src);
    any_md(&dst, 4, c->out[0].dims);
    dnnl_pooling_v2_desc_t d;
    dnnl_primitive_attr_t attr = NULL;
    if ((rc = veil__engine_dnnl_err(dnnl_primitive_attr_create(&attr), "attr", c->eb)) != VEIL_OK)
        return rc;
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    rc = veil__engine_dnnl_err(
        dnnl_pooling_v2_forward_desc_init(&d, dnnl_forward_inference,
                                          gap ? dnnl_pooling_avg_exclude_padding : dnnl_pooling_max,
                                          &src, &dst, strides, kernel, dil, pl, pr),
        "pooling descriptor", c->eb);
    if (rc == VEIL_OK)
        rc = veil__engine_dnnl_err(dnnl_primitive_desc_create(&pd, &d, attr, eng, NULL), "pooling",
                                   c->eb);
    dnnl_primitive_attr_destroy(attr);
    if (rc != VEIL_OK)
        return rc;
    ks = veil_calloc(1, sizeof(*ks));
    if (ks == NULL) {
        rc = veil_errf(c->eb, VEIL_E_NOMEM, "no memory for a kernel");
        goto out;
    }
    struct veil__engine_dnnl_exec mex, post;
    bool has_post = false;
    size_t cur = 0;
    memset(&mex, 0, sizeof(mex));
    memset(&post, 0, sizeof(post));
    if ((rc = bind_src_dst(c, eng, pd, ks, &mex, st, &cur, &post, &has_post)) != VEIL_OK)
        goto out;
    if ((rc = finish_prim_at(pd, &mex, st, &cur, c->eb)) != VEIL_OK) {
        if (has_post)
            dnnl_primitive_destroy(post.prim);
        goto out;
    }
    push_execs(ks, &mex, &post, has_post);
    st->ks = ks;
    ks = NULL;
    rc = VEIL_OK;
out:
    if (pd != NULL)
        dnnl_primitive_desc_destroy(pd);
    veil__engine_kstate_free(ks);
    return rc;
}

/* ---- Softmax and LogSoftmax (opset 13 semantics), Transpose, on oneDNN ---- */

static veil_err simple_prim(struct veil__engine_ictx *c, dnnl_engine_t eng,
                            struct veil__engine_step *st, const_dnnl_op_desc_t od,
                            const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst,
                            bool reorder)
{
    veil_err rc;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    struct veil__engine_kstate *ks = veil_calloc(1, sizeof(*ks));
    if (ks == NULL)
        return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for a kernel");
    rc = veil__engine_dnnl_err(dnnl_primitive_attr_create(&attr), "attr", c->eb);
    if (rc == VEIL_OK) {
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
        if (reorder)
            rc = veil__engine_dnnl_err(
                dnnl_reorder_primitive_desc_create(&pd, src, eng, dst, eng, attr), "reorder",
                c->eb);
        else
            rc = veil__engine_dnnl_err(dnnl_primitive_desc_create(&pd, od, attr, eng, NULL),
                                       "primitive", c->eb);
    }
    if (rc == VEIL_OK) {
        struct veil__engine_dnnl_exec *ex = &ks->ex[ks->n_ex++];
        add_arg(ex, reorder ? DNNL_ARG_FROM : DNNL_ARG_SRC, src, c->n->in[0], NULL, 0);
        add_arg(ex, reorder ? DNNL_ARG_TO : DNNL_ARG_DST, dst, c->n->out[0], NULL, 0);
        rc = finish_prim(pd, ex, st, c->eb);
    }
    if (pd != NULL)
        dnnl_primitive_desc_destroy(pd);
    if (attr != NULL)
        dnnl_primitive_attr_destroy(attr);
    if (rc == VEIL_OK) {
        st->ks = ks;
        ks = NULL;
    }
    veil__engine_kstate_free(ks);
    return rc;
}

/*
 * Whether md is oneDNN's channel-blocked 4-D layout aBcd<B>b ([N][C/B][H][W][B], channels
 * padded to a multiple of B); *block receives B.
 */
static bool channel_blocked(const dnnl_memory_desc_t *md, int64_t *block)
{
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    if (md->ndims != 4 || md->format_kind != dnnl_blocked || b->inner_nblks != 1 ||
        b->inner_idxs[0] != 1 || md->offset0 != 0)
        return false;
    int64_t bs = b->inner_blks[0], h = md->padded_dims[2], w = md->padded_dims[3];
    *block = bs;
    return b->strides[3] == bs && b->strides[2] == w * bs && b->strides[1] == h * w * bs &&
           b->strides[0] == md->padded_dims[1] * h * w && md->padded_dims[0] == md->dims[0] &&
           h == md->dims[2] && w == md->dims[3];
}

/*
 * Mul with an input in a oneDNN blocked layout (a Conv's output, e.g. the feature map that a
 * squeeze-and-excitation block scales), so the Conv need not reorder to row-major for it.
 * Source 0 is the input with the output's shape (the blocked one when both have it); the
 * other operand broadcasts. Scaling a channel-blocked map by one value per (batch, channel)
 * or per channel runs on the element-wise kernel over the blocked layout (kp->binary.mulblk),
 * writing blocked when every reader of the product accepts that, else row-major; anything
 * else runs as a oneDNN binary primitive (its operand reordered to row-major when blocked).
 * With row-major inputs Mul stays on the element-wise kernel.
 */
veil_err veil__engine_mul_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                  struct veil__engine_step *st)
{
    if (c->vals == NULL || c->n_in != 2 || c->n->in[0] < 0 || c->n->in[1] < 0)
        return VEIL_OK;
    bool blk[2] = {c->vals[c->n->in[0]].blocked, c->vals[c->n->in[1]].blocked};
    if (!blk[0] && !blk[1])
        return VEIL_OK;
    size_t r = c->out[0].rank;
    bool full[2];
    for (size_t k = 0; k < 2; k++) {
        full[k] = c->in[k].rank == r;
        for (size_t i = 0; full[k] && i < r; i++)
            full[k] = c->in[k].dims[i] == c->out[0].dims[i];
    }
    if ((!full[0] && !full[1]) || c->in[0].dt != VEIL_DT_FLOAT || c->in[1].dt != VEIL_DT_FLOAT ||
        r > DNNL_MAX_NDIMS || c->out[0].numel == 0)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED,
                         "Mul of a blocked convolution output where neither input has the "
                         "output's shape");
    size_t s0 = full[0] && (blk[0] || !full[1]) ? 0 : 1, s1 = 1 - s0;
    int32_t v1 = c->n->in[s1], out_v = c->n->out[0];
    dnnl_memory_desc_t md0, md1, dany, have1;
    int64_t d1[VEIL__ENGINE_RANK], block = 0;
    value_md(c, c->n->in[s0], &c->in[s0], &md0);
    /* The broadcast operand, its dims padded to the output's rank with leading 1s. */
    const struct veil__engine_tv *b = &c->in[s1];
    for (size_t i = 0; i < r; i++)
        d1[i] = i + b->rank >= r ? b->dims[i + b->rank - r] : 1;
    /* A blocked [N, C, 1, 1] scale (a Conv's output) holds its values at n * Cp + c. */
    int64_t sblock = 0, s_nstride = d1[1];
    bool scale_ok = !blk[s1];
    if (blk[s1]) {
        value_md(c, v1, b, &have1);
        scale_ok =
            b->rank == 4 && channel_blocked(&have1, &sblock) && b->dims[2] == 1 && b->dims[3] == 1;
        s_nstride = have1.padded_dims[1];
    }
    if (blk[s0] && scale_ok && channel_blocked(&md0, &block) && d1[2] == 1 && d1[3] == 1) {
        struct veil__engine_kp_binary *bp = &c->kp->binary;
        bp->mulblk.scale_n_stride = s_nstride;
        bp->mulblk.on = true;
        bp->mulblk.map = (int64_t)s0;
        bp->mulblk.block = block;
        bp->mulblk.padded_channels = md0.padded_dims[1];
        bp->mulblk.scale_n = d1[0];
        bp->mulblk.scale_c = d1[1];
        bp->mulblk.blocked_out = c->blockable != NULL && c->blockable[out_v];
        if (bp->mulblk.blocked_out) {
            struct veil__engine_pval *pv = &c->vals[out_v];
            pv->blocked = true;
            pv->md = md0;
            if (dnnl_memory_desc_get_size(&md0) > pv->nbytes)
                pv->nbytes = dnnl_memory_desc_get_size(&md0);
        }
        return VEIL_OK;
    }
    veil_err rc = VEIL_OK;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    struct veil__engine_kstate *ks = veil_calloc(1, sizeof(*ks));
    if (ks == NULL)
        return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for a kernel");
    plain_md(&md1, r, d1);
    dnnl_memory_desc_init_by_tag(&dany, (int)r, md0.dims, dnnl_f32, dnnl_format_tag_any);
    size_t cur = 0, off1 = 0;
    if (blk[s1]) {
        dnnl_memory_desc_t plain1;
        plain_md(&plain1, b->rank, b->dims);
        value_md(c, v1, b, &have1);
        off1 = take_scratch(st, &cur, dnnl_memory_desc_get_size(&plain1));
        rc = add_reorder(eng, ks, &have1, v1, 0, &plain1, -1, off1, c->eb);
        v1 = -1;
    }
    dnnl_binary_desc_t bd;
    if (rc == VEIL_OK)
        rc = veil__engine_dnnl_err(dnnl_binary_desc_init(&bd, dnnl_binary_mul, &md0, &md1, &dany),
                                   "binary descriptor", c->eb);
    if (rc == VEIL_OK &&
        (rc = veil__engine_dnnl_err(dnnl_primitive_attr_create(&attr), "attr", c->eb)) == VEIL_OK) {
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
        rc = veil__engine_dnnl_err(dnnl_primitive_desc_create(&pd, &bd, attr, eng, NULL), "binary",
                                   c->eb);
    }
    if (rc == VEIL_OK) {
        /* bind_src_dst takes source 0 as the node's input 0: a view with the operands so. */
        struct veil__engine_node tmp = *c->n;
        int32_t ins[2] = {c->n->in[s0], c->n->in[s1]};
        tmp.in = ins;
        struct veil__engine_ictx c2 = *c;
        c2.n = &tmp;
        c2.in[0] = c->in[s0];
        c2.in[1] = c->in[s1];
        struct veil__engine_dnnl_exec main_ex, post;
        bool has_post = false;
        memset(&main_ex, 0, sizeof(main_ex));
        memset(&post, 0, sizeof(post));
        rc = bind_src_dst(&c2, eng, pd, ks, &main_ex, st, &cur, &post, &has_post);
        if (rc == VEIL_OK) {
            add_arg(&main_ex, DNNL_ARG_SRC_1, &md1, v1, NULL, off1);
            rc = finish_prim_at(pd, &main_ex, st, &cur, c->eb);
        }
        if (rc == VEIL_OK) {
            push_execs(ks, &main_ex, &post, has_post);
        } else {
            if (main_ex.prim != NULL)
                dnnl_primitive_destroy(main_ex.prim);
            if (post.prim != NULL)
                dnnl_primitive_destroy(post.prim);
        }
    }
    if (pd != NULL)
        dnnl_primitive_desc_destroy(pd);
    if (attr != NULL)
        dnnl_primitive_attr_destroy(attr);
    if (rc == VEIL_OK) {
        st->ks = ks;
        ks = NULL;
    }
    veil__engine_kstate_free(ks);
    return rc;
}

veil_err veil__engine_softmax_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                      struct veil__engine_step *st)
{
    bool last = c->kp->axis.axis == (int64_t)c->out[0].rank - 1;
    /*
     * Softmax over the last axis runs on the vector row kernel (always with a fused addend;
     * otherwise where the CPU has AVX2 or AVX-512: about three times faster than oneDNN 2.6's
     * softmax on BERT's attention rows), in place when the scores die here: the next reader
     * then finds the probabilities in the lines the kernel just read.
     */
    if (strcmp(c->n->op_type, "Softmax") == 0 && last &&
        (c->n->add_in >= 0 || veil__engine_vec_best() != VEIL__ENGINE_VEC_BASE)) {
        (void)veil__engine_inplace(c, 0);
        return VEIL_OK;
    }
    if (c->opset < 13 || c->in[0].numel == 0 || c->in[0].rank > DNNL_MAX_NDIMS || c->n->add_in >= 0)
        return VEIL_OK; /* the plain kernel handles the older 2-D coercion and a fused add */
    dnnl_memory_desc_t md;
    plain_md(&md, c->in[0].rank, c->in[0].dims);
    dnnl_softmax_v2_desc_t d;
    bool log = strcmp(c->n->op_type, "LogSoftmax") == 0;
    veil_err rc = veil__engine_dnnl_err(
        dnnl_softmax_v2_forward_desc_init(&d, dnnl_forward_inference,
                                          log ? dnnl_softmax_log : dnnl_softmax_accurate, &md, &md,
                                          (int)c->kp->axis.axis),
        "softmax descriptor", c->eb);
    if (rc != VEIL_OK)
        return rc;
    return simple_prim(c, eng, st, &d, &md, &md, false);
}

/*
 * Transpose as a oneDNN reorder from a permuted view of the input to the row-major output.
 * An input that its producer already wrote in the transposed order (a MatMul, see
 * fold_out_view) is not moved at all: the output becomes an alias of it and the step is
 * skipped.
 */
veil_err veil__engine_transpose_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                        struct veil__engine_step *st)
{
    size_t r = c->in[0].rank;
    int32_t in = c->n->in[0], out_v = c->n->out[0];
    bool strided = c->vals != NULL && in >= 0 && c->vals[in].blocked;
    const dnnl_memory_desc_t *imd = strided ? &c->vals[in].md : NULL;
    if (strided && (c->in[0].dt != VEIL_DT_FLOAT || imd->format_kind != dnnl_blocked ||
                    imd->format_desc.blocking.inner_nblks != 0 || imd->ndims != (int)r))
        return veil_errf(c->eb, VEIL_E_INTERNAL, "transpose of a blocked layout");
    if (c->in[0].dt != VEIL_DT_FLOAT || r < 2 || r > DNNL_MAX_NDIMS || c->in[0].numel == 0)
        return VEIL_OK;
    int64_t ist[VEIL__ENGINE_RANK], ost[VEIL__ENGINE_RANK];
    row_major_strides(r, c->in[0].dims, ist);
    row_major_strides(r, c->out[0].dims, ost);
    if (strided)
        for (size_t i = 0; i < r; i++)
            ist[i] = imd->format_desc.blocking.strides[i];
    dnnl_dims_t d, vs;
    bool same = true;
    for (size_t i = 0; i < r; i++) {
        d[i] = c->out[0].dims[i];
        vs[i] = ist[c->kp->transpose.perm[i]];
        same = same && (vs[i] == ost[i] || d[i] == 1);
    }
    if (strided && same && out_v >= 0 && c->vals[in].runtime) {
        c->vals[out_v].alias = true;
        c->vals[out_v].root = in;
        st->runtime = false;
        return VEIL_OK;
    }
    dnnl_memory_desc_t view, out;
    if (dnnl_memory_desc_init_by_strides(&view, (int)r, d, dnnl_f32, vs) != dnnl_success)
        return strided ? veil_errf(c->eb, VEIL_E_INTERNAL, "transpose of a strided layout")
                       : VEIL_OK;
    plain_md(&out, r, c->out[0].dims);
    return simple_prim(c, eng, st, NULL, &view, &out, true);
}

/* ---- MatMul, Gemm ---- */

static veil_err matmul_infer(struct veil__engine_ictx *c)
{
    const struct veil__engine_tv *a = &c->in[0], *b = &c->in[1];
    if (!veil__engine_has_input(c, 1) || a->dt != VEIL_DT_FLOAT || b->dt != VEIL_DT_FLOAT)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "float inputs are required");
    if (a->rank < 1 || b->rank < 1)
        return veil_errf(c->eb, VEIL_E_INVALID, "MatMul of a scalar");
    /* Promote 1-D operands, broadcast the batch dims, then drop the promoted dims. */
    struct veil__engine_tv pa = *a, pb = *b;
    if (a->rank == 1) {
        pa.rank = 2;
        pa.dims[0] = 1;
        pa.dims[1] = a->dims[0];
    }
    if (b->rank == 1) {
        pb.rank = 2;
        pb.dims[0] = b->dims[0];
        pb.dims[1] = 1;
    }
    int64_t k = pa.dims[pa.rank - 1];
    if (pb.dims[pb.rank - 2] != k)
        return veil_errf(c->eb, VEIL_E_INVALID, "inner dimensions differ: %lld and %lld",
                         (long long)k, (long long)pb.dims[pb.rank - 2]);
    struct veil__engine_tv ba = pa, bb = pb;
    ba.rank -= 2;
    bb.rank -= 2;
    size_t br;
    int64_t bd[VEIL__ENGINE_RANK];
    veil_err rc = veil__engine_broadcast(&ba, &bb, &br, bd, c->eb);
    if (rc != VEIL_OK)
        return rc;
    c->out[0].dt = VEIL_DT_FLOAT;
    c->out[0].rank = 0;
    for (size_t i = 0; i < br; i++)
        c->out[0].dims[c->out[0].rank++] = bd[i];
    if (a->rank > 1)
        c->out[0].dims[c->out[0].rank++] = pa.dims[pa.rank - 2];
    if (b->rank > 1)
        c->out[0].dims[c->out[0].rank++] = pb.dims[pb.rank - 1];
    c->kp->matmul.m = pa.dims[pa.rank - 2]; /* M */
    c->kp->matmul.k = k;
    c->kp->matmul.n = pb.dims[pb.rank - 1]; /* N */
    c->kp->matmul.batch_rank = (int64_t)br;
    for (size_t i = 0; i < br; i++) {
        c->kp->matmul.a_batch[i] = i + ba.rank >= br ? ba.dims[i + ba.rank - br] : 1;
        c->kp->matmul.b_batch[i] = i + bb.rank >= br ? bb.dims[i + bb.rank - br] : 1;
        c->kp->matmul.batch[i] = bd[i];
    }
    if (c->n->add_in >= 0 || c->n->n_post > 0)
        return veil_errf(c->eb, VEIL_E_INTERNAL, "fusion without a primitive");
    return VEIL_OK;
}

/* Plain matmul over broadcast batches; A is M x K with strides (sam, sak), B K x N (sbk, sbn). */
struct mm_job {
    const float *a, *b;
    float *y;
    int64_t m, k, n;
    int64_t sam, sak, sbk, sbn;
    size_t br;
    const int64_t *ad, *bd, *od;
    float alpha;
};

static void mm_range(void *ud, uint64_t lo, uint64_t hi)
{
    const struct mm_job *j = ud;
    for (uint64_t t = lo; t < hi; t++) {
        uint64_t batch = t / (uint64_t)j->m;
        int64_t i = (int64_t)(t % (uint64_t)j->m);
        uint64_t q = batch, aoff = 0, boff = 0, as = 1, bs = 1;
        for (size_t d = j->br; d-- > 0;) {
            uint64_t idx = q % (uint64_t)j->od[d];
            q /= (uint64_t)j->od[d];
            if (j->ad[d] != 1)
                aoff += idx * as;
            if (j->bd[d] != 1)
                boff += idx * bs;
            as *= (uint64_t)j->ad[d];
            bs *= (uint64_t)j->bd[d];
        }
        const float *a = j->a + aoff * (uint64_t)(j->m * j->k);
        const float *b = j->b + boff * (uint64_t)(j->k * j->n);
        float *y = j->y + batch * (uint64_t)(j->m * j->n) + (uint64_t)(i * j->n);
        for (int64_t x = 0; x < j->n; x++)
            y[x] = 0.0f;
        for (int64_t kk = 0; kk < j->k; kk++) {
            float av = a[i * j->sam + kk * j->sak] * j->alpha;
            const float *brow = b + kk * j->sbk;
            for (int64_t x = 0; x < j->n; x++)
                y[x] += av * brow[x * j->sbn];
        }
    }
}

veil_err veil__engine_matmul_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp)
{
    struct mm_job j = {c->in[0].data,
                       c->in[1].data,
                       c->out[0].data,
                       kp->matmul.m,
                       kp->matmul.k,
                       kp->matmul.n,
                       kp->matmul.k,
                       1,
                       kp->matmul.n,
                       1,
                       (size_t)kp->matmul.batch_rank,
                       kp->matmul.a_batch,
                       kp->matmul.b_batch,
                       kp->matmul.batch,
                       1.0f};
    uint64_t batches = 1;
    for (size_t d = 0; d < j.br; d++)
        batches *= (uint64_t)kp->matmul.batch[d];
    veil__engine_parallel(batches * (uint64_t)j.m, 4, mm_range, &j);
    if (c->n_in > 2 && c->n->in[2] >= 0) {
        /* A bias fused by the optimiser: one value per output column. */
        const float *bias = c->in[2].data;
        float *y = c->out[0].data;
        for (uint64_t i = 0; i < c->out[0].numel; i++)
            y[i] += bias[i % (uint64_t)j.n];
    }
    return VEIL_OK;
}

/*
 * Transposes folded into a MatMul (the attention heads of transformer models are split and
 * merged by Transpose around their two MatMuls). A runtime Transpose whose output only this
 * MatMul reads is skipped: the MatMul reads the Transpose's input through a strided view
 * (fold_in_view). A MatMul whose output only a Transpose reads writes it already in the
 * transposed order (fold_out_view), and the Transpose becomes an alias of it
 * (veil__engine_transpose_prepare). The folds are kept only where oneDNN has a real kernel for the
 * strides, not its reference implementation (fold_commit).
 */
struct mm_fold {
    bool in[2];       /* input k is read through its producer Transpose's input */
    int32_t tnode[2]; /* that Transpose */
    bool out;         /* the output is written in its reader Transpose's order */
};

static bool fold_in_view(const struct veil__engine_ictx *c, size_t k, size_t r,
                         dnnl_memory_desc_t *md, int32_t *tnode)
{
    int32_t v = c->n->in[k];
    if (v < 0 || c->vals == NULL || c->sole_reader == NULL || c->in[k].data != NULL ||
        c->in[k].rank != r || c->sole_reader[v] != c->node || c->vals[v].blocked)
        return false;
    int32_t p = c->g->values[v].producer;
    if (p < 0 || strcmp(c->g->nodes[p].op_type, "Transpose") != 0 || c->step_of[p] < 0)
        return false;
    const struct veil__engine_step *ts = &c->steps[c->step_of[p]];
    int32_t u = c->g->nodes[p].in[0];
    if (!ts->runtime || u < 0 || !c->vals[u].runtime || c->vals[u].blocked ||
        c->vals[u].t.dt != VEIL_DT_FLOAT || c->vals[u].t.rank != r ||
        !veil__engine_storage_unwritten_since(c, u, c->step_of[p]))
        return false;
    int64_t ust[DNNL_MAX_NDIMS];
    dnnl_dims_t d, st;
    row_major_strides(r, c->vals[u].t.dims, ust);
    for (size_t i = 0; i < r; i++) {
        if (ts->kp.transpose.perm[i] < 0 || (size_t)ts->kp.transpose.perm[i] >= r)
            return false;
        d[i] = c->in[k].dims[i];
        st[i] = ust[ts->kp.transpose.perm[i]];
    }
    *tnode = p;
    return dnnl_memory_desc_init_by_strides(md, (int)r, d, dnnl_f32, st) == dnnl_success;
}

static bool fold_out_view(const struct veil__engine_ictx *c, size_t r, const int64_t *od,
                          dnnl_memory_desc_t *md)
{
    int32_t o = c->n->out[0];
    if (o < 0 || c->vals == NULL || c->sole_reader == NULL || c->n->add_in >= 0 ||
        c->out[0].rank != r)
        return false;
    int32_t t = c->sole_reader[o];
    if (t < 0 || strcmp(c->g->nodes[t].op_type, "Transpose") != 0 || c->g->nodes[t].in[0] != o ||
        c->g->nodes[t].n_out < 1 || c->g->nodes[t].out[0] < 0)
        return false;
    size_t perm[VEIL__ENGINE_RANK];
    if (veil__engine_transpose_perm(&c->g->nodes[t], r, perm, NULL) != VEIL_OK)
        return false; /* the Transpose reports it at its own step */
    int64_t td[DNNL_MAX_NDIMS], tst[DNNL_MAX_NDIMS];
    dnnl_dims_t d, st;
    for (size_t i = 0; i < r; i++)
        td[i] = od[perm[i]];
    row_major_strides(r, td, tst);
    for (size_t i = 0; i < r; i++) {
        d[i] = od[i];
        st[perm[i]] = tst[i];
    }
    return dnnl_memory_desc_init_by_strides(md, (int)r, d, dnnl_f32, st) == dnnl_success;
}

/* oneDNN's reference kernels are far slower than a separate transpose. */
static bool fast_impl(dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success ||
        impl == NULL)
        return false;
    return strncmp(impl, "ref", 3) != 0;
}

/* Makes the folds of f part of the plan: skipped Transposes, aliases and layouts. */
static void fold_commit(const struct veil__engine_ictx *c, const struct mm_fold *f,
                        const dnnl_memory_desc_t *o_md)
{
    for (size_t k = 0; k < 2; k++)
        if (f->in[k])
            veil__engine_skip_transpose(c, f->tnode[k], c->n->in[k]);
    if (f->out) {
        struct veil__engine_pval *pv = &c->vals[c->n->out[0]];
        pv->blocked = true;
        pv->md = *o_md;
    }
}

veil_err veil__engine_matmul_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                     struct veil__engine_step *st)
{
    veil_err rc = VEIL_E_INTERNAL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    struct veil__engine_kstate *ks = NULL;
    size_t br = (size_t)c->kp->matmul.batch_rank, r = br + 2;
    int64_t m = c->kp->matmul.m, k = c->kp->matmul.k, n = c->kp->matmul.n;
    int64_t ad[VEIL__ENGINE_RANK + 2], bd[VEIL__ENGINE_RANK + 2], od[VEIL__ENGINE_RANK + 2];
    dnnl_memory_desc_t a_md, b_md, o_md, bias_md, add_md;
    if (c->out[0].numel == 0)
        return VEIL_OK; /* an empty output (a zero batch dim too): nothing to compute */
    bool fused = false;
    if ((rc = veil__engine_attention_prepare(c, st, &fused)) != VEIL_OK || fused)
        return rc;
    if (r > DNNL_MAX_NDIMS || k == 0)
        return c->n->n_post > 0 || c->n->add_in >= 0
                   ? veil_errf(c->eb, VEIL_E_INTERNAL, "fusion without a primitive")
                   : VEIL_OK; /* the plain kernel handles these */
    for (size_t i = 0; i < br; i++) {
        ad[i] = c->kp->matmul.a_batch[i];
        bd[i] = c->kp->matmul.b_batch[i];
        od[i] = c->kp->matmul.batch[i];
    }
    /*
     * With a 2-D B (every batch dim of B is 1) the batches of A are rows of one big product:
     * one [batch * M, K] x [K, N] matmul runs much faster than many small ones.
     */
    bool collapse = br > 0;
    for (size_t i = 0; i < br; i++)
        collapse = collapse && bd[i] == 1;
    if (collapse && c->n->add_in >= 0) {
        collapse = c->add.rank == c->out[0].rank;
        for (size_t i = 0; collapse && i < c->add.rank; i++)
            collapse = c->add.dims[i] == c->out[0].dims[i];
    }
    if (collapse) {
        for (size_t i = 0; i < br; i++)
            m *= ad[i];
        br = 0;
        r = 2;
    }
    ad[br] = m, ad[br + 1] = k;
    bd[br] = k, bd[br + 1] = n;
    od[br] = m, od[br + 1] = n;
    plain_md(&a_md, r, ad);
    plain_md(&o_md, r, od);
    ks = veil_calloc(1, sizeof(*ks));
    if (ks == NULL)
        return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for a kernel");
    bool bconst = c->in[1].data != NULL;
    dnnl_memory_desc_t b_plain;
    plain_md(&b_plain, r, bd);
    if (bconst)
        any_md(&b_md, r, bd);
    else
        b_md = b_plain;
    /* A fused bias (a constant [N] or [1, N]) and residual add come from the optimiser. */
    const struct veil__engine_node *nd = c->n;
    const struct veil__engine_tv *bias = nd->n_in > 2 && nd->in[2] >= 0 ? &c->in[2] : NULL;
    if (bias != NULL) {
        int64_t bdims[VEIL__ENGINE_RANK + 2];
        for (size_t i = 0; i < r; i++)
            bdims[i] = 1;
        bdims[r - 1] = n;
        plain_md(&bias_md, r, bdims);
    }
    if (collapse && nd->add_in >= 0)
        plain_md(&add_md, r, od);
    else if ((rc = residual_md(c, r, od, &o_md, &add_md)) != VEIL_OK)
        goto out;
    /* As for convolutions: a residual whose storage dies here is accumulated in place. */
    int32_t res = nd->add_in;
    bool sum =
        veil__engine_storage_dies(c, res) && !c->vals[res].blocked && c->add.rank == c->out[0].rank;
    for (size_t i = 0; sum && i < c->out[0].rank; i++)
        sum = c->add.dims[i] == c->out[0].dims[i];
    if ((rc = make_attr_sum(nd, &add_md, sum, &attr, c->eb)) != VEIL_OK)
        goto out;
    dnnl_matmul_desc_t md;
    struct mm_fold fold = {{false, false}, {-1, -1}, false};
    if (!collapse) {
        dnnl_memory_desc_t fa = a_md, fb = b_md, fo = o_md;
        fold.in[0] = fold_in_view(c, 0, r, &fa, &fold.tnode[0]);
        fold.in[1] = !bconst && fold_in_view(c, 1, r, &fb, &fold.tnode[1]);
        fold.out = !sum && fold_out_view(c, r, od, &fo);
        if ((fold.in[0] || fold.in[1] || fold.out) &&
            dnnl_matmul_desc_init(&md, &fa, &fb, bias ? &bias_md : NULL, &fo) == dnnl_success &&
            dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL) == dnnl_success &&
            fast_impl(pd)) {
            a_md = fa;
            b_md = fb;
            o_md = fo;
        } else {
            if (pd != NULL)
                dnnl_primitive_desc_destroy(pd);
            pd = NULL;
            fold = (struct mm_fold){{false, false}, {-1, -1}, false};
        }
    }
    if (pd == NULL &&
        ((rc = veil__engine_dnnl_err(
              dnnl_matmul_desc_init(&md, &a_md, &b_md, bias ? &bias_md : NULL, &o_md),
              "matmul descriptor", c->eb)) != VEIL_OK ||
         (rc = veil__engine_dnnl_err(dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL),
                                     "matmul", c->eb)) != VEIL_OK))
        goto out;
    size_t cur = 0;
    int32_t rv = -1;
    size_t roff = 0;
    if (nd->add_in >= 0 && !sum &&
        (rc = residual_bind(c, eng, ks, st, &cur, &add_md, &rv, &roff)) != VEIL_OK)
        goto out;
    struct veil__engine_dnnl_exec *ex = &ks->ex[ks->n_ex++];
    add_arg(ex, DNNL_ARG_SRC, &a_md, nd->in[0], NULL, 0);
    if (bconst) {
        const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        const void *wbuf;
        if ((rc = veil__engine_wcache_reorder(c, nd->in[1], eng, &b_plain, c->in[1].data, wmd, ks,
                                              &wbuf, c->eb)) != VEIL_OK)
            goto out;
        add_arg(ex, DNNL_ARG_WEIGHTS, wmd, -1, wbuf, 0);
    } else {
        add_arg(ex, DNNL_ARG_WEIGHTS, &b_md, nd->in[1], NULL, 0);
    }
    if (bias != NULL)
        add_arg(ex, DNNL_ARG_BIAS, &bias_md, nd->in[2], NULL, 0);
    add_arg(ex, DNNL_ARG_DST, &o_md, nd->out[0], NULL, 0);
    if (nd->add_in >= 0 && !sum)
        add_arg(ex, DNNL_ARG_ATTR_MULTIPLE_POST_OP((int)nd->add_at) | DNNL_ARG_SRC_1, &add_md, rv,
                NULL, roff);
    if ((rc = finish_prim_at(pd, ex, st, &cur, c->eb)) != VEIL_OK)
        goto out;
    if (sum) {
        c->vals[nd->out[0]].alias = true;
        c->vals[nd->out[0]].root = res;
    }
    fold_commit(c, &fold, &o_md);
    st->ks = ks;
    ks = NULL;
    rc = VEIL_OK;
out:
    if (pd != NULL)
        dnnl_primitive_desc_destroy(pd);
    if (attr != NULL)
        dnnl_primitive_attr_destroy(attr);
    veil__engine_kstate_free(ks);
    return rc;
}

/* MatMul as the optimiser leaves it: inputs A, B and an optional fused bias. */
veil_err veil__engine_matmul_infer_fused(struct veil__engine_ictx *c)
{
    struct veil__engine_node tmp = *c->n;
    const struct veil__engine_node *orig = c->n;
    tmp.add_in = -1;
    tmp.n_post = 0;
    c->n = &tmp;
    veil_err rc = matmul_infer(c);
    c->n = orig;
    if (rc != VEIL_OK)
        return rc;
    if (c->n_in > 2 && orig->in[2] >= 0) {
        int64_t n = c->kp->matmul.n;
        if (c->in[2].dt != VEIL_DT_FLOAT || c->in[2].numel != (uint64_t)n || c->in[2].data == NULL)
            return veil_errf(c->eb, VEIL_E_INTERNAL, "fused bias must be a constant [N]");
    }
    return VEIL_OK;
}

veil_err veil__engine_gemm_infer(struct veil__engine_ictx *c)
{
    const struct veil__engine_tv *a = &c->in[0], *b = &c->in[1];
    if (!veil__engine_has_input(c, 1) || a->dt != VEIL_DT_FLOAT || b->dt != VEIL_DT_FLOAT ||
        a->rank != 2 || b->rank != 2)
        return veil_errf(c->eb, VEIL_E_UNSUPPORTED, "Gemm needs 2-D float A and B");
    bool ta = veil__engine_attr_i(c->n, "transA", 0) != 0,
         tb = veil__engine_attr_i(c->n, "transB", 0) != 0;
    int64_t m = ta ? a->dims[1] : a->dims[0], k = ta ? a->dims[0] : a->dims[1];
    int64_t kb = tb ? b->dims[1] : b->dims[0], n = tb ? b->dims[0] : b->dims[1];
    if (k != kb)
        return veil_errf(c->eb, VEIL_E_INVALID, "inner dimensions differ");
    c->out[0].dt = VEIL_DT_FLOAT;
    c->out[0].rank = 2;
    c->out[0].dims[0] = m;
    c->out[0].dims[1] = n;
    if (veil__engine_has_input(c, 2)) {
        struct veil__engine_tv t = c->out[0];
        size_t rr;
        int64_t dd[VEIL__ENGINE_RANK];
        veil_err rc = veil__engine_broadcast(&c->in[2], &t, &rr, dd, c->eb);
        if (rc != VEIL_OK || rr != 2 || dd[0] != m || dd[1] != n || c->in[2].dt != VEIL_DT_FLOAT)
            return veil_errf(c->eb, VEIL_E_INVALID, "C does not broadcast to [M, N]");
    }
    c->kp->gemm.m = m;
    c->kp->gemm.k = k;
    c->kp->gemm.n = n;
    c->kp->gemm.trans_a = ta;
    c->kp->gemm.trans_b = tb;
    c->kp->gemm.alpha = veil__engine_attr_f(c->n, "alpha", 1.0f);
    c->kp->gemm.beta = veil__engine_attr_f(c->n, "beta", 1.0f);
    return VEIL_OK;
}

veil_err veil__engine_gemm_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    int64_t m = kp->gemm.m, k = kp->gemm.k, n = kp->gemm.n;
    bool ta = kp->gemm.trans_a != 0, tb = kp->gemm.trans_b != 0;
    int64_t zero = 0;
    struct mm_job j = {c->in[0].data, c->in[1].data, c->out[0].data, m,          k, n,
                       ta ? 1 : k,    ta ? m : 1,    tb ? 1 : n,     tb ? k : 1, 0, &zero,
                       &zero,         &zero,         kp->gemm.alpha};
    veil__engine_parallel((uint64_t)m, 4, mm_range, &j);
    if (c->n_in > 2 && c->n->in[2] >= 0) {
        const struct veil__engine_tv *cc = &c->in[2];
        int64_t c0 = cc->rank == 2 ? cc->dims[0] : 1;
        int64_t c1 = cc->rank >= 1 ? cc->dims[cc->rank - 1] : 1;
        float beta = kp->gemm.beta;
        float *y = c->out[0].data;
        const float *cv = cc->data;
        for (int64_t i = 0; i < m; i++)
            for (int64_t x = 0; x < n; x++)
                y[i * n + x] += beta * cv[(c0 == 1 ? 0 : i) * c1 + (c1 == 1 ? 0 : x)];
    }
    return VEIL_OK;
}

veil_err veil__engine_gemm_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                   struct veil__engine_step *st)
{
    veil_err rc = VEIL_E_INTERNAL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    struct veil__engine_kstate *ks = NULL;
    int64_t m = c->kp->gemm.m, k = c->kp->gemm.k, n = c->kp->gemm.n;
    bool ta = c->kp->gemm.trans_a != 0, tb = c->kp->gemm.trans_b != 0;
    float alpha = c->kp->gemm.alpha, beta = c->kp->gemm.beta;
    bool has_c = veil__engine_has_input(c, 2);
    /* The primitive path needs constant B (alpha folded in) and constant C (beta folded). */
    if (c->in[1].data == NULL || (has_c && c->in[2].data == NULL) || m * n == 0 || k == 0)
        return c->n->n_post > 0 || c->n->add_in >= 0
                   ? veil_errf(c->eb, VEIL_E_INTERNAL, "fusion without a primitive")
                   : VEIL_OK;
    dnnl_memory_desc_t a_md, b_plain, b_any, o_md, c_md, add_md;
    dnnl_dims_t ad = {m, k}, bdims = {k, n}, od = {m, n}, as, bs;
    as[0] = ta ? 1 : k, as[1] = ta ? m : 1;
    bs[0] = tb ? 1 : n, bs[1] = tb ? k : 1;
    dnnl_memory_desc_init_by_strides(&a_md, 2, ad, dnnl_f32, as);
    dnnl_memory_desc_init_by_strides(&b_plain, 2, bdims, dnnl_f32, bs);
    dnnl_memory_desc_init_by_tag(&b_any, 2, bdims, dnnl_f32, dnnl_format_tag_any);
    plain_md(&o_md, 2, od);
    if ((rc = residual_md(c, 2, od, &o_md, &add_md)) != VEIL_OK)
        return rc;
    ks = veil_calloc(1, sizeof(*ks));
    if (ks == NULL)
        return veil_errf(c->eb, VEIL_E_NOMEM, "no memory for a kernel");
    const void *bsrc = c->in[1].data;
    if (alpha != 1.0f) {
        float *scaled = veil_aligned_alloc(64, (size_t)(k * n) * sizeof(float));
        if (scaled == NULL) {
            rc = veil_errf(c->eb, VEIL_E_NOMEM, "no memory for weights");
            goto out;
        }
        ks->owned[0] = scaled;
        for (int64_t i = 0; i < k * n; i++)
            scaled[i] = ((const float *)bsrc)[i] * alpha;
        bsrc = scaled;
    }
    const void *csrc = NULL;
    if (has_c) {
        const struct veil__engine_tv *cc = &c->in[2];
        dnnl_dims_t cd = {cc->rank == 2 ? cc->dims[0] : 1,
                          cc->rank >= 1 ? cc->dims[cc->rank - 1] : 1};
        int64_t cdims[2] = {cd[0], cd[1]};
        plain_md(&c_md, 2, cdims);
        float *cs = veil_aligned_alloc(64, (size_t)(cd[0] * cd[1]) * sizeof(float));
        if (cs == NULL) {
            rc = veil_errf(c->eb, VEIL_E_NOMEM, "no memory for bias");
            goto out;
        }
        ks->owned[1] = cs;
        for (int64_t i = 0; i < cd[0] * cd[1]; i++)
            cs[i] = ((const float *)cc->data)[i] * beta;
        csrc = cs;
    }
    if ((rc = make_attr(c->n, &add_md, &attr, c->eb)) != VEIL_OK)
        goto out;
    dnnl_matmul_desc_t md;
    if ((rc = veil__engine_dnnl_err(
             dnnl_matmul_desc_init(&md, &a_md, &b_any, has_c ? &c_md : NULL, &o_md),
             "matmul descriptor", c->eb)) != VEIL_OK ||
        (rc = veil__engine_dnnl_err(dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL), "matmul",
                                    c->eb)) != VEIL_OK)
        goto out;
    size_t cur = 0;
    int32_t rv = -1;
    size_t roff = 0;
    if (c->n->add_in >= 0 &&
        (rc = residual_bind(c, eng, ks, st, &cur, &add_md, &rv, &roff)) != VEIL_OK)
        goto out;
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const void *wbuf;
    if ((rc = veil__engine_reorder_const(eng, &b_plain, bsrc, wmd, ks, &wbuf, c->eb)) != VEIL_OK)
        goto out;
    struct veil__engine_dnnl_exec *ex = &ks->ex[ks->n_ex++];
    add_arg(ex, DNNL_ARG_SRC, &a_md, c->n->in[0], NULL, 0);
    add_arg(ex, DNNL_ARG_WEIGHTS, wmd, -1, wbuf, 0);
    if (has_c)
        add_arg(ex, DNNL_ARG_BIAS, &c_md, -1, csrc, 0);
    add_arg(ex, DNNL_ARG_DST, &o_md, c->n->out[0], NULL, 0);
    if (c->n->add_in >= 0)
        add_arg(ex, DNNL_ARG_ATTR_MULTIPLE_POST_OP((int)c->n->add_at) | DNNL_ARG_SRC_1, &add_md, rv,
                NULL, roff);
    if ((rc = finish_prim_at(pd, ex, st, &cur, c->eb)) != VEIL_OK)
        goto out;
    st->ks = ks;
    ks = NULL;
    rc = VEIL_OK;
out:
    if (pd != NULL)
        dnnl_primitive_desc_destroy(pd);
    if (attr != NULL)
        dnnl_primitive_attr_destroy(attr);
    veil__engine_kstate_free(ks);
    return rc;
}

/*
 * Plain ConvTranspose (scatter form), used for dilated kernels, where the result must follow
 * ONNX's definition exactly: y[o * s - pad + k * d] += x[o] * w[k].
 */
veil_err veil__engine_conv_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp)
{
    if (strcmp(c->n->op_type, "ConvTranspose") != 0)
        return veil_errf(c->eb, VEIL_E_INTERNAL, "convolution without a primitive");
    size_t sp = c->in[0].rank - 2;
    int64_t id[3] = {1, 1, 1}, od[3] = {1, 1, 1}, k[3] = {1, 1, 1}, s[3] = {1, 1, 1},
            p[3] = {0, 0, 0}, d[3] = {1, 1, 1};
    for (size_t i = 0; i < sp; i++) {
        id[i] = c->in[0].dims[2 + i];
        od[i] = c->out[0].dims[2 + i];
        k[i] = kp->conv.window.kernel[i];
        s[i] = kp->conv.window.strides[i];
        p[i] = kp->conv.window.pads[i];
        d[i] = kp->conv.window.dilations[i];
    }
    int64_t group = kp->conv.group, m = kp->conv.out_channels, ch = c->in[0].dims[1],
            n = c->in[0].dims[0];
    int64_t cg = ch / group, mg = m / group;
    int64_t isz = id[0] * id[1] * id[2], osz = od[0] * od[1] * od[2], ksz = k[0] * k[1] * k[2];
    const float *x = c->in[0].data, *w = c->in[1].data;
    const float *bias = c->n_in > 2 && c->n->in[2] >= 0 ? c->in[2].data : NULL;
    float *y = c->out[0].data;
    for (int64_t b = 0; b < n; b++)
        for (int64_t oc = 0; oc < m; oc++)
            for (int64_t q = 0; q < osz; q++)
                y[(b * m + oc) * osz + q] = bias != NULL ? bias[oc] : 0.0f;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ic = 0; ic < ch; ic++) {
            int64_t g = ic / cg;
            for (int64_t mm = 0; mm < mg; mm++) {
                int64_t oc = g * mg + mm;
                const float *wk = w + (ic * mg + mm) * ksz;
                float *yp = y + (b * m + oc) * osz;
                const float *xp = x + (b * ch + ic) * isz;
                for (int64_t i0 = 0; i0 < id[0]; i0++)
                    for (int64_t i1 = 0; i1 < id[1]; i1++)
                        for (int64_t i2 = 0; i2 < id[2]; i2++) {
                            float xv = xp[(i0 * id[1] + i1) * id[2] + i2];
                            for (int64_t k0 = 0; k0 < k[0]; k0++) {
                                int64_t o0 = i0 * s[0] - p[0] + k0 * d[0];
                                if (o0 < 0 || o0 >= od[0])
                                    continue;
                                for (int64_t k1 = 0; k1 < k[1]; k1++) {
                                    int64_t o1 = i1 * s[1] - p[1] + k1 * d[1];
                                    if (o1 < 0 || o1 >= od[1])
                                        continue;
                                    for (int64_t k2 = 0; k2 < k[2]; k2++) {
                                        int64_t o2 = i2 * s[2] - p[2] + k2 * d[2];
                                        if (o2 < 0 || o2 >= od[2])
                                            continue;
                                        yp[(o0 * od[1] + o1) * od[2] + o2] +=
                                            xv * wk[(k0 * k[1] + k1) * k[2] + k2];
                                    }
                                }
                            }
                        }
            }
        }
    return VEIL_OK;
}
