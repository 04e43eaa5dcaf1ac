/*
 * Load-time graph optimisation. Each pass rewrites nodes in place and marks the nodes it
 * absorbs dead; a value is only rewired when it has exactly one reader and is not a graph
 * output, so no other consumer can observe the change. Passes, in order:
 *  - Constant nodes become constants, and Identity nodes are bypassed;
 *  - the GELU subgraph of exporters (x * 0.5 * (1 + erf(x / sqrt 2))) becomes one Gelu node,
 *    and so does its tanh approximation (Gelu with approximate = "tanh");
 *  - the layer normalisation subgraph of exporters before opset 17 (ReduceMean, Sub, Pow,
 *    ReduceMean, Add, Sqrt, Div, Mul, Add) becomes one LayerNormalization node;
 *  - BatchNormalization after a Conv with constant weights is folded into the weights and bias;
 *  - MatMul followed by Add of a constant [N] vector takes the vector as its bias;
 *  - Softmax of an Add (attention scores plus a mask) takes the Add's second operand as its
 *    addend (add_in): over the last axis the row kernel adds it in its first pass;
 *  - a residual Add of a Conv/MatMul/Gemm output becomes a post-op of that node;
 *  - ReLU, LeakyRelu, Clip (constant bounds), Sigmoid, Tanh and Gelu (either form) after a
 *    Conv/MatMul/Gemm become post-ops.
 */
#include "engine_int.h"

#include <math.h>
#include <string.h>

struct uses {
    size_t *count;   /* readers per value (live nodes) plus one if a graph output */
    int32_t *reader; /* the last reader seen */
};

static veil_err count_uses(const struct veil__engine_graph *g, struct uses *u)
{
    u->count = veil_calloc(g->n_values + 1, sizeof(size_t));
    u->reader = veil_calloc(g->n_values + 1, sizeof(int32_t));
    if (u->count == NULL || u->reader == NULL)
        return VEIL_E_NOMEM;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct veil__engine_node *n = &g->nodes[i];
        if (n->dead)
            continue;
        for (size_t k = 0; k <= n->n_in; k++) {
            int32_t v = k < n->n_in ? n->in[k] : n->add_in;
            if (v < 0)
                continue;
            u->count[v]++;
            u->reader[v] = (int32_t)i;
        }
    }
    for (size_t i = 0; i < g->n_outputs; i++)
        u->count[g->outputs[i]]++;
    return VEIL_OK;
}

static void uses_release(struct uses *u)
{
    veil_free(u->count);
    veil_free(u->reader);
}

/* The single reader of node i's output 0, or -1. */
static int32_t sole_reader(const struct veil__engine_graph *g, const struct uses *u, size_t i)
{
    const struct veil__engine_node *n = &g->nodes[i];
    if (n->n_out < 1 || n->out[0] < 0)
        return -1;
    for (size_t k = 1; k < n->n_out; k++)
        if (n->out[k] >= 0)
            return -1;
    int32_t v = n->out[0];
    if (u->count[v] != 1 || g->values[v].is_output)
        return -1;
    return u->reader[v];
}

static bool is_op(const struct veil__engine_node *n, const char *name)
{
    return !n->dead && strcmp(n->op_type, name) == 0;
}

static const struct veil__engine_value *const_in(const struct veil__engine_graph *g,
                                                 const struct veil__engine_node *n, size_t k)
{
    if (k >= n->n_in || n->in[k] < 0 || !g->values[n->in[k]].is_const)
        return NULL;
    return &g->values[n->in[k]];
}

static bool scalar_is(const struct veil__engine_value *v, float x, float tol)
{
    return v != NULL && v->c.dt == VEIL_DT_FLOAT && v->c.numel == 1 &&
           fabsf(*(const float *)v->c.data - x) <= tol;
}

/* The node output `to` now carries what `from` carried (from's producer output is replaced). */
static void take_output(struct veil__engine_graph *g, struct veil__engine_node *n,
                        struct veil__engine_node *dead)
{
    int32_t v = dead->out[0];
    n->out[0] = v;
    g->values[v].producer = (int32_t)(n - g->nodes);
    dead->dead = true;
}

/* x / sqrt(2) -> Erf -> + 1 -> * x -> * 0.5 (or 0.5 * x first), as torch exports GELU. */
static veil_err fuse_gelu(struct veil__engine_graph *g, struct uses *u)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct veil__engine_node *div = &g->nodes[i];
        if (!is_op(div, "Div") || div->n_in != 2 ||
            !scalar_is(const_in(g, div, 1), 1.4142135f, 1e-4f))
            continue;
        int32_t x = div->in[0];
        int32_t e = sole_reader(g, u, i);
        if (e < 0 || !is_op(&g->nodes[e], "Erf"))
            continue;
        int32_t a = sole_reader(g, u, (size_t)e);
        if (a < 0 || !is_op(&g->nodes[a], "Add"))
            continue;
        struct veil__engine_node *add = &g->nodes[a];
        if (!(scalar_is(const_in(g, add, 1), 1.0f, 0) || scalar_is(const_in(g, add, 0), 1.0f, 0)))
            continue;
        int32_t m1 = sole_reader(g, u, (size_t)a);
        if (m1 < 0 || !is_op(&g->nodes[m1], "Mul"))
            continue;
        struct veil__engine_node *mul1 = &g->nodes[m1];
        if (!(mul1->in[0] == x || mul1->in[1] == x))
            continue;
        int32_t m2 = sole_reader(g, u, (size_t)m1);
        if (m2 < 0 || !is_op(&g->nodes[m2], "Mul"))
            continue;
        struct veil__engine_node *mul2 = &g->nodes[m2];
        if (!(scalar_is(const_in(g, mul2, 1), 0.5f, 0) || scalar_is(const_in(g, mul2, 0), 0.5f, 0)))
            continue;
        /* Rewrite div into Gelu(x) producing mul2's output. */
        veil_err rc = veil__engine_node_retype(div, "Gelu");
        if (rc != VEIL_OK)
            return rc;
        div->n_in = 1;
        g->nodes[e].dead = true;
        add->dead = true;
        mul1->dead = true;
        take_output(g, div, mul2);
    }
    return VEIL_OK;
}

/* The node that produced value v when it is a live op, or NULL. */
static struct veil__engine_node *producer_op(struct veil__engine_graph *g, int32_t v,
                                             const char *op)
{
    int32_t p = v >= 0 ? g->values[v].producer : -1;
    return p >= 0 && is_op(&g->nodes[p], op) ? &g->nodes[p] : NULL;
}

/* Whether binary node n reads value v and a constant scalar within tol of x, either order. */
static bool with_scalar(const struct veil__engine_graph *g, const struct veil__engine_node *n,
                        int32_t v, float x, float tol)
{
    if (n == NULL || n->n_in != 2)
        return false;
    return (n->in[0] == v && scalar_is(const_in(g, n, 1), x, tol)) ||
           (n->in[1] == v && scalar_is(const_in(g, n, 0), x, tol));
}

/* The operand of binary node n whose other operand is a constant scalar within tol of x, or -1. */
static int32_t scaled_operand(const struct veil__engine_graph *g, const struct veil__engine_node *n,
                              float x, float tol)
{
    if (n->n_in != 2)
        return -1;
    if (with_scalar(g, n, n->in[0], x, tol))
        return n->in[0];
    return with_scalar(g, n, n->in[1], x, tol) ? n->in[1] : -1;
}

/* Value v has node n as its single reader (n reading it once), and is not a graph output. */
static bool only_reader(const struct veil__engine_graph *g, const struct uses *u, int32_t v,
                        const struct veil__engine_node *n)
{
    return v >= 0 && u->count[v] == 1 && !g->values[v].is_output &&
           u->reader[v] == (int32_t)(n - g->nodes);
}

/*
 * The tanh approximation of GELU as exporters write it (GPT-2's and the "new" GELU):
 *   0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))
 * with x^3 as Pow(x, 3), the 0.5 taken first (Mul(Mul(x, 0.5), ...)) or last
 * (Mul(Mul(x, ...), 0.5)), constants on either side. The Tanh node becomes
 * Gelu(x, approximate = "tanh") producing the final Mul's output.
 */
static veil_err fuse_gelu_tanh(struct veil__engine_graph *g, struct uses *u)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct veil__engine_node *t = &g->nodes[i];
        if (!is_op(t, "Tanh") || t->n_in != 1 || t->n_out != 1)
            continue;
        /* Backwards: d = c * sqrt(2 / pi); c = x + b; b = p * 0.044715; p = Pow(x, 3). */
        struct veil__engine_node *d = producer_op(g, t->in[0], "Mul");
        if (d == NULL || !only_reader(g, u, t->in[0], t))
            continue;
        int32_t cv = scaled_operand(g, d, 0.7978845608f, 1e-5f);
        struct veil__engine_node *c = producer_op(g, cv, "Add");
        if (c == NULL || c->n_in != 2 || !only_reader(g, u, cv, d))
            continue;
        int32_t x = -1;
        struct veil__engine_node *b = NULL, *p = NULL;
        for (size_t k = 0; k < 2 && b == NULL; k++) {
            struct veil__engine_node *bk = producer_op(g, c->in[k], "Mul");
            if (bk == NULL || !only_reader(g, u, c->in[k], c))
                continue;
            int32_t pv = scaled_operand(g, bk, 0.044715f, 1e-6f);
            struct veil__engine_node *pk = producer_op(g, pv, "Pow");
            if (pk == NULL || pk->n_in != 2 || pk->in[0] != c->in[1 - k] ||
                !scalar_is(const_in(g, pk, 1), 3.0f, 0) || !only_reader(g, u, pv, bk))
                continue;
            b = bk;
            p = pk;
            x = c->in[1 - k];
        }
        if (b == NULL || x < 0)
            continue;
        /* Forwards: e = t + 1; then 0.5 * x * e in one of two groupings. */
        int32_t ei = sole_reader(g, u, i);
        struct veil__engine_node *e = ei >= 0 ? &g->nodes[ei] : NULL;
        if (e == NULL || !is_op(e, "Add") || !with_scalar(g, e, t->out[0], 1.0f, 0))
            continue;
        int32_t mi = sole_reader(g, u, (size_t)ei);
        struct veil__engine_node *m1 = mi >= 0 ? &g->nodes[mi] : NULL;
        if (m1 == NULL || !is_op(m1, "Mul") || m1->n_in != 2)
            continue;
        int32_t other = m1->in[0] == e->out[0] ? m1->in[1] : m1->in[0];
        struct veil__engine_node *half = NULL, *last = NULL;
        if (other == x) {
            /* x * e first, then * 0.5. */
            int32_t hi = sole_reader(g, u, (size_t)mi);
            if (hi < 0 || !is_op(&g->nodes[hi], "Mul") ||
                !with_scalar(g, &g->nodes[hi], m1->out[0], 0.5f, 0))
                continue;
            half = &g->nodes[hi];
            last = half;
        } else {
            half = producer_op(g, other, "Mul");
            if (half == NULL || !with_scalar(g, half, x, 0.5f, 0) || !only_reader(g, u, other, m1))
                continue;
            last = m1;
        }
        veil_err rc = veil__engine_node_retype(t, "Gelu");
        if (rc == VEIL_OK)
            rc = veil__engine_node_add_attr(t, "approximate", VEIL_ONNX_ATTR_STRING, 0, 0.0f,
                                            "tanh");
        if (rc != VEIL_OK)
            return rc;
        t->in[0] = x;
        p->dead = true;
        b->dead = true;
        c->dead = true;
        d->dead = true;
        e->dead = true;
        m1->dead = true;
        half->dead = true;
        take_output(g, t, last);
    }
    return VEIL_OK;
}

/*
 * How many trailing axes a ReduceMean averages over with kept dims: its axes attribute must be
 * exactly -k .. -1 in some order. 0 otherwise.
 */
static int64_t reduce_suffix(const struct veil__engine_node *n)
{
    if (n->n_out != 1 || veil__engine_attr_i(n, "keepdims", 1) != 1 ||
        (n->n_in > 1 && n->in[1] >= 0))
        return 0;
    const struct veil__engine_attr *a = veil__engine_attr_typed(n, "axes", VEIL_ONNX_ATTR_INTS);
    const int64_t *ax = a != NULL ? a->ints : NULL;
    size_t na = a != NULL ? a->n : 0;
    if (na == 0 || na > VEIL__ENGINE_RANK)
        return 0;
    bool seen[VEIL__ENGINE_RANK] = {false};
    for (size_t i = 0; i < na; i++) {
        if (ax[i] >= 0 || ax[i] < -(int64_t)na || seen[-ax[i] - 1])
            return 0;
        seen[-ax[i] - 1] = true;
    }
    return (int64_t)na;
}

/* The operand of binary node n that is not value v, when n reads v exactly once. */
static int32_t other_operand(const struct veil__engine_node *n, int32_t v)
{
    if (n->n_in != 2 || n->in[0] == n->in[1])
        return -1;
    return n->in[0] == v ? n->in[1] : n->in[1] == v ? n->in[0] : -1;
}

/* A constant float vector of at least 2 elements (a per-feature scale or shift). */
static bool feature_vector(const struct veil__engine_graph *g, int32_t v, int64_t k)
{
    if (v < 0 || !g->values[v].is_const)
        return false;
    const struct veil__engine_tv *c = &g->values[v].c;
    return c->dt == VEIL_DT_FLOAT && c->rank == (size_t)k && c->numel >= 2;
}

/*
 * The layer normalisation of exporters before opset 17, as torch writes it:
 *   m = ReduceMean(x) over the last k axes; d = x - m; v = ReduceMean(d ^ 2) (Pow 2 or d * d);
 *   y = d / Sqrt(v + eps) * gamma + beta
 * becomes one LayerNormalization(x, gamma, beta) with axis -1, for k = 1 (the form exporters
 * write). gamma and beta (beta may be absent) must be constant float vectors of at least 2
 * elements: broadcasting them against the last axis then leaves only its exact length, which
 * LayerNormalization checks again at plan time.
 */
static veil_err fuse_layernorm(struct veil__engine_graph *g, struct uses *u)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct veil__engine_node *rm = &g->nodes[i];
        int64_t k;
        if (!is_op(rm, "ReduceMean") || rm->in[0] < 0 || (k = reduce_suffix(rm)) != 1)
            continue;
        int32_t x = rm->in[0];
        int32_t si = sole_reader(g, u, i);
        if (si < 0 || !is_op(&g->nodes[si], "Sub"))
            continue;
        struct veil__engine_node *sub = &g->nodes[si];
        int32_t d = sub->out[0];
        if (sub->n_in != 2 || sub->in[0] != x || sub->in[1] != rm->out[0] || sub->n_out != 1 ||
            d < 0 || g->values[d].is_output)
            continue;
        /* d is read by the squaring node and the division, nothing else. */
        int32_t sq = -1, dv = -1;
        size_t reads = 0;
        for (size_t j = 0; j < g->n_nodes; j++) {
            const struct veil__engine_node *n = &g->nodes[j];
            if (n->dead || n->n_in < 1 || (n->in[0] != d && (n->n_in < 2 || n->in[1] != d)))
                continue;
            if ((is_op(n, "Pow") && n->n_in == 2 && n->in[0] == d &&
                 scalar_is(const_in(g, n, 1), 2.0f, 0)) ||
                (is_op(n, "Mul") && n->n_in == 2 && n->in[0] == d && n->in[1] == d)) {
                sq = (int32_t)j;
                reads += n->in[1] == d ? 2 : 1;
            } else if (is_op(n, "Div") && n->n_in == 2 && n->in[0] == d && n->in[1] != d) {
                dv = (int32_t)j;
                reads++;
            }
        }
        if (sq < 0 || dv < 0 || reads != u->count[d] || g->nodes[sq].n_out != 1)
            continue;
        int32_t r2 = sole_reader(g, u, (size_t)sq);
        if (r2 < 0 || !is_op(&g->nodes[r2], "ReduceMean") || reduce_suffix(&g->nodes[r2]) != k)
            continue;
        int32_t ae = sole_reader(g, u, (size_t)r2);
        if (ae < 0 || !is_op(&g->nodes[ae], "Add"))
            continue;
        int32_t ev = other_operand(&g->nodes[ae], g->nodes[r2].out[0]);
        const struct veil__engine_value *eps =
            ev >= 0 && g->values[ev].is_const ? &g->values[ev] : NULL;
        if (eps == NULL || eps->c.dt != VEIL_DT_FLOAT || eps->c.numel != 1)
            continue;
        float epsilon = *(const float *)eps->c.data;
        int32_t sr = sole_reader(g, u, (size_t)ae);
        if (sr < 0 || !is_op(&g->nodes[sr], "Sqrt") || sole_reader(g, u, (size_t)sr) != dv ||
            g->nodes[dv].in[1] != g->nodes[sr].out[0] || !(epsilon >= 0.0f))
            continue;
        int32_t mi = sole_reader(g, u, (size_t)dv);
        if (mi < 0 || !is_op(&g->nodes[mi], "Mul"))
            continue;
        int32_t gamma = other_operand(&g->nodes[mi], g->nodes[dv].out[0]);
        if (!feature_vector(g, gamma, k))
            continue;
        int32_t bi = sole_reader(g, u, (size_t)mi);
        int32_t beta = -1;
        if (bi >= 0 && is_op(&g->nodes[bi], "Add")) {
            beta = other_operand(&g->nodes[bi], g->nodes[mi].out[0]);
            if (!feature_vector(g, beta, k) || g->values[beta].c.numel != g->values[gamma].c.numel)
                beta = -1;
        }
        struct veil__engine_node *last = beta >= 0 ? &g->nodes[bi] : &g->nodes[mi];
        veil_err rc = veil__engine_node_retype(rm, "LayerNormalization");
        if (rc == VEIL_OK)
            rc = veil__engine_node_grow_inputs(rm, 3);
        if (rc == VEIL_OK)
            rc = veil__engine_node_add_attr(rm, "axis", VEIL_ONNX_ATTR_INT, -k, 0.0f, NULL);
        if (rc == VEIL_OK)
            rc = veil__engine_node_add_attr(rm, "epsilon", VEIL_ONNX_ATTR_FLOAT, 0, epsilon, NULL);
        if (rc != VEIL_OK)
            return rc;
        rm->in[1] = gamma;
        rm->in[2] = beta;
        rm->n_in = 3;
        sub->dead = true;
        g->nodes[sq].dead = true;
        g->nodes[r2].dead = true;
        g->nodes[ae].dead = true;
        g->nodes[sr].dead = true;
        g->nodes[dv].dead = true;
        if (beta >= 0)
            g->nodes[mi].dead = true;
        take_output(g, rm, last);
    }
    return VEIL_OK;
}

static veil_err fold_bn(struct veil__engine_graph *g, struct uses *u)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct veil__engine_node *conv = &g->nodes[i];
        if (!is_op(conv, "Conv") || conv->n_post > 0 || conv->add_in >= 0)
            continue;
        const struct veil__engine_value *w = const_in(g, conv, 1), *b = const_in(g, conv, 2);
        if (w == NULL || w->c.dt != VEIL_DT_FLOAT || w->c.rank < 3 ||
            (conv->n_in > 2 && conv->in[2] >= 0 && b == NULL))
            continue;
        int32_t r = sole_reader(g, u, i);
        if (r < 0 || !is_op(&g->nodes[r], "BatchNormalization"))
            continue;
        struct veil__engine_node *bn = &g->nodes[r];
        if (bn->n_in != 5 || bn->in[0] != conv->out[0] || bn->n_out != 1 ||
            veil__engine_attr_i(bn, "training_mode", 0) != 0)
            continue;
        const struct veil__engine_value *p[4];
        int64_t m = w->c.dims[0];
        bool ok = true;
        for (size_t k = 0; k < 4; k++) {
            p[k] = const_in(g, bn, k + 1);
            ok = ok && p[k] != NULL && p[k]->c.dt == VEIL_DT_FLOAT && p[k]->c.numel == (uint64_t)m;
        }
        if (!ok || (b != NULL && (b->c.dt != VEIL_DT_FLOAT || b->c.numel != (uint64_t)m)))
            continue;
        float eps = veil__engine_attr_f(bn, "epsilon", 1e-5f);
        size_t per = (size_t)(w->c.numel / (uint64_t)m);
        float *nw = veil_aligned_alloc(64, w->nbytes + 64);
        float *nb = veil_aligned_alloc(64, (size_t)m * sizeof(float) + 64);
        if (nw == NULL || nb == NULL) {
            veil_aligned_free(nw);
            veil_aligned_free(nb);
            return VEIL_E_NOMEM;
        }
        const float *ow = w->c.data, *sc = p[0]->c.data, *bb = p[1]->c.data, *mean = p[2]->c.data,
                    *var = p[3]->c.data;
        for (int64_t o = 0; o < m; o++) {
            double a = sc[o] / sqrt((double)var[o] + eps);
            for (size_t k = 0; k < per; k++)
                nw[(size_t)o * per + k] = (float)(ow[(size_t)o * per + k] * a);
            double ob = b != NULL ? ((const float *)b->c.data)[o] : 0.0;
            nb[o] = (float)((ob - mean[o]) * a + bb[o]);
        }
        int64_t wd[VEIL__ENGINE_RANK], bd[1] = {m};
        memcpy(wd, w->c.dims, sizeof(wd));
        size_t wrank = w->c.rank;
        int32_t wid, bid;
        veil_err rc =
            veil__engine_graph_add_const(g, "bn_folded_weight", VEIL_DT_FLOAT, wrank, wd, nw, &wid);
        if (rc != VEIL_OK) {
            veil_aligned_free(nw);
            veil_aligned_free(nb);
            return rc;
        }
        rc = veil__engine_graph_add_const(g, "bn_folded_bias", VEIL_DT_FLOAT, 1, bd, nb, &bid);
        if (rc != VEIL_OK) {
            veil_aligned_free(nb);
            return rc;
        }
        conv = &g->nodes[i]; /* values may have moved; nodes did not */
        if ((rc = veil__engine_node_grow_inputs(conv, 3)) != VEIL_OK)
            return rc;
        conv->in[1] = wid;
        conv->in[2] = bid;
        take_output(g, conv, bn);
    }
    return VEIL_OK;
}

static veil_err fuse_matmul_bias(struct veil__engine_graph *g, struct uses *u)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct veil__engine_node *mm = &g->nodes[i];
        if (!is_op(mm, "MatMul") || mm->n_in != 2 || mm->n_post > 0 || mm->add_in >= 0)
            continue;
        const struct veil__engine_value *w = const_in(g, mm, 1);
        if (w == NULL || w->c.dt != VEIL_DT_FLOAT || w->c.rank != 2)
            continue;
        int32_t r = sole_reader(g, u, i);
        if (r < 0 || !is_op(&g->nodes[r], "Add"))
            continue;
        struct veil__engine_node *add = &g->nodes[r];
        size_t other = add->in[0] == mm->out[0] ? 1 : 0;
        const struct veil__engine_value *b = const_in(g, add, other);
        if (b == NULL || b->c.dt != VEIL_DT_FLOAT || b->c.numel != (uint64_t)w->c.dims[1] ||
            b->c.rank < 1 || b->c.dims[b->c.rank - 1] != w->c.dims[1] || b->c.rank > 1)
            continue;
        veil_err rc = veil__engine_node_grow_inputs(mm, 3);
        if (rc != VEIL_OK)
            return rc;
        mm->in[2] = add->in[other];
        take_output(g, mm, add);
    }
    return VEIL_OK;
}

static bool fusable_host(const struct veil__engine_graph *g, const struct veil__engine_node *n)
{
    if (is_op(n, "Conv"))
        return true;
    if (is_op(n, "MatMul"))
        return true;
    if (is_op(n, "Gemm")) {
        return const_in(g, n, 1) != NULL && (n->n_in < 3 || n->in[2] < 0 || const_in(g, n, 2));
    }
    return false;
}

static veil_err fuse_softmax_add(struct veil__engine_graph *g, struct uses *u)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct veil__engine_node *add = &g->nodes[i];
        if (!is_op(add, "Add") || add->dead || add->n_in != 2 || add->in[0] < 0 || add->in[1] < 0 ||
            add->in[0] == add->in[1] || add->n_post > 0 || add->add_in >= 0)
            continue;
        int32_t r = sole_reader(g, u, i);
        if (r < 0)
            continue;
        struct veil__engine_node *sm = &g->nodes[r];
        /*
         * From opset 13 the axis must be -1. Before, an axis counts from the front and the
         * rank is not known yet: the kernel then checks it (see softmax_exec).
         */
        if (!is_op(sm, "Softmax") || sm->n_in != 1 || sm->in[0] != add->out[0] || sm->add_in >= 0 ||
            sm->n_post > 0 || (g->opset >= 13 && veil__engine_attr_i(sm, "axis", -1) != -1))
            continue;
        /* The scores (a MatMul's output, when one is) stay the kernel's main input. */
        size_t main_in = 0;
        int32_t p1 = g->values[add->in[1]].producer;
        if (p1 >= 0 && fusable_host(g, &g->nodes[p1]))
            main_in = 1;
        sm->in[0] = add->in[main_in];
        sm->add_in = add->in[1 - main_in];
        add->dead = true;
    }
    return VEIL_OK;
}

/*
 * x * Sigmoid(x) (SiLU, as torch exports it) after host h: h's output is read by exactly a
 * Sigmoid and a Mul, and the Sigmoid only by that Mul. h takes a swish post-op and the Mul's
 * output. Returns whether it fused.
 */
static bool fuse_swish(struct veil__engine_graph *g, const struct uses *u,
                       struct veil__engine_node *h)
{
    int32_t v = h->out[0];
    for (size_t k = 1; k < h->n_out; k++)
        if (h->out[k] >= 0)
            return false;
    if (v < 0 || u->count[v] != 2 || g->values[v].is_output || h->n_post >= VEIL__ENGINE_MAX_POST)
        return false;
    for (size_t j = 0; j < g->n_nodes; j++) {
        struct veil__engine_node *s = &g->nodes[j];
        if (!is_op(s, "Sigmoid") || s->n_in != 1 || s->in[0] != v || s->n_out != 1)
            continue;
        int32_t r = sole_reader(g, u, j);
        if (r < 0)
            return false;
        struct veil__engine_node *m = &g->nodes[r];
        int32_t sv = s->out[0];
        if (!is_op(m, "Mul") || m->n_in != 2 ||
            !((m->in[0] == v && m->in[1] == sv) || (m->in[0] == sv && m->in[1] == v)))
            return false;
        h->post[h->n_post++] = (struct veil__engine_post){VEIL__ENGINE_POST_SWISH, 1.0f, 0.0f};
        take_output(g, h, m);
        s->dead = true;
        return true;
    }
    return false;
}

static veil_err fuse_post(struct veil__engine_graph *g, struct uses *u)
{
    bool changed = true;
    while (changed) {
        changed = false;
        for (size_t i = 0; i < g->n_nodes; i++) {
            struct veil__engine_node *h = &g->nodes[i];
            if (!fusable_host(g, h) || h->n_post >= VEIL__ENGINE_MAX_POST)
                continue;
            int32_t r = sole_reader(g, u, i);
            if (r < 0) {
                changed = fuse_swish(g, u, h) || changed;
                continue;
            }
            struct veil__engine_node *nx = &g->nodes[r];
            struct veil__engine_post p = {0, 0.0f, 0.0f};
            if (is_op(nx, "Relu")) {
                p.kind = VEIL__ENGINE_POST_RELU;
            } else if (is_op(nx, "LeakyRelu")) {
                p.kind = VEIL__ENGINE_POST_LEAKY;
                p.a = veil__engine_attr_f(nx, "alpha", 0.01f);
            } else if (is_op(nx, "Sigmoid")) {
                p.kind = VEIL__ENGINE_POST_SIGMOID;
            } else if (is_op(nx, "Tanh")) {
                p.kind = VEIL__ENGINE_POST_TANH;
            } else if (is_op(nx, "HardSwish")) {
                p.kind = VEIL__ENGINE_POST_HARDSWISH;
            } else if (is_op(nx, "HardSigmoid")) {
                /* max(0, min(1, alpha * x + beta)): a linear post-op, then a clip. */
                if (h->n_post + 2 > VEIL__ENGINE_MAX_POST)
                    continue;
                h->post[h->n_post++] = (struct veil__engine_post){
                    VEIL__ENGINE_POST_LINEAR, veil__engine_attr_f(nx, "alpha", 0.2f),
                    veil__engine_attr_f(nx, "beta", 0.5f)};
                p = (struct veil__engine_post){VEIL__ENGINE_POST_CLIP, 0.0f, 1.0f};
            } else if (is_op(nx, "Gelu") &&
                       strcmp(veil__engine_attr_s(nx, "approximate", "none"), "none") == 0) {
                p.kind = VEIL__ENGINE_POST_GELU_ERF;
            } else if (is_op(nx, "Gelu") &&
                       strcmp(veil__engine_attr_s(nx, "approximate", "none"), "tanh") == 0) {
                p.kind = VEIL__ENGINE_POST_GELU_TANH;
            } else if ((is_op(nx, "Div") || is_op(nx, "Mul")) && nx->n_in == 2 &&
                       nx->in[0] == h->out[0] && nx->in[1] != h->out[0] &&
                       const_in(g, nx, 1) != NULL && const_in(g, nx, 1)->c.dt == VEIL_DT_FLOAT &&
                       const_in(g, nx, 1)->c.numel == 1 &&
                       *(const float *)const_in(g, nx, 1)->c.data != 0.0f) {
                float v = *(const float *)const_in(g, nx, 1)->c.data;
                p.kind = VEIL__ENGINE_POST_LINEAR;
                p.a = is_op(nx, "Div") ? 1.0f / v : v;
                p.b = 0.0f;
            } else if (is_op(nx, "Clip")) {
                const struct veil__engine_value *lo = const_in(g, nx, 1), *hi = const_in(g, nx, 2);
                if ((nx->n_in > 1 && nx->in[1] >= 0 && lo == NULL) ||
                    (nx->n_in > 2 && nx->in[2] >= 0 && hi == NULL) ||
                    (lo != NULL && (lo->c.dt != VEIL_DT_FLOAT || lo->c.numel != 1)) ||
                    (hi != NULL && (hi->c.dt != VEIL_DT_FLOAT || hi->c.numel != 1)))
                    continue;
                p.kind = VEIL__ENGINE_POST_CLIP;
                p.a = lo != NULL ? *(const float *)lo->c.data : -INFINITY;
                p.b = hi != NULL ? *(const float *)hi->c.data : INFINITY;
                if (isinf(p.a))
                    p.a = -3.4e38f;
                if (isinf(p.b))
                    p.b = 3.4e38f;
            } else if (is_op(nx, "Add") && h->add_in < 0 && nx->n_in == 2 &&
                       nx->in[0] != nx->in[1]) {
                size_t other = nx->in[0] == h->out[0] ? 1 : 0;
                int32_t ov = nx->in[other];
                if (ov < 0 || g->values[ov].is_const)
                    continue;
                h->add_in = ov;
                h->add_at = h->n_post;
                u->count[ov]++;
                take_output(g, h, nx);
                changed = true;
                continue;
            } else {
                continue;
            }
            h->post[h->n_post++] = p;
            take_output(g, h, nx);
            changed = true;
        }
    }
    return VEIL_OK;
}

/* Constant nodes with a tensor value become constants, so later passes can see them. */
static veil_err fold_constant_nodes(struct veil__engine_graph *g)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct veil__engine_node *n = &g->nodes[i];
        if (!is_op(n, "Constant") || n->n_out != 1 || n->out[0] < 0)
            continue;
        const struct veil__engine_attr *a =
            veil__engine_attr_typed(n, "value", VEIL_ONNX_ATTR_TENSOR);
        if (a == NULL || a->tensor < 0 || n->n_attrs != 1)
            continue;
        struct veil__engine_value *src = &g->values[a->tensor], *dst = &g->values[n->out[0]];
        void *data = veil_aligned_alloc(64, src->nbytes + 64);
        if (data == NULL)
            return VEIL_E_NOMEM;
        if (src->nbytes > 0)
            memcpy(data, src->c.data, src->nbytes);
        dst->is_const = true;
        dst->c = src->c;
        dst->c.data = data;
        dst->nbytes = src->nbytes;
        dst->half_dt = src->half_dt;
        dst->producer = -1;
        n->dead = true;
    }
    return VEIL_OK;
}

/*
 * Identity nodes are bypassed: their readers read the input instead (exporters write them
 * for deduplicated initializers, such as layers sharing equal weights). An Identity whose
 * output is a graph output stays.
 */
static void bypass_identity(struct veil__engine_graph *g)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct veil__engine_node *id = &g->nodes[i];
        if (!is_op(id, "Identity") || id->n_in != 1 || id->n_out != 1 || id->in[0] < 0 ||
            id->out[0] < 0 || g->values[id->out[0]].is_output)
            continue;
        int32_t from = id->out[0], to = id->in[0];
        for (size_t j = 0; j < g->n_nodes; j++) {
            struct veil__engine_node *n = &g->nodes[j];
            for (size_t k = 0; k < n->n_in; k++)
                if (n->in[k] == from)
                    n->in[k] = to;
            if (n->add_in == from)
                n->add_in = to;
        }
        id->dead = true;
    }
}

/*
 * From opset 18 the reductions take their axes as an input. A constant one (what exporters
 * write) becomes the axes attribute of the earlier opsets, so the fusions below see one form;
 * the kernel reads an input that stays. ReduceSum keeps its input (its form since opset 13).
 */
static veil_err axes_inputs_to_attrs(struct veil__engine_graph *g)
{
    static const char *const ops[] = {"ReduceL1",        "ReduceL2",   "ReduceLogSum",
                                      "ReduceLogSumExp", "ReduceMax",  "ReduceMean",
                                      "ReduceMin",       "ReduceProd", "ReduceSumSquare"};
    if (g->opset < 18)
        return VEIL_OK;
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct veil__engine_node *n = &g->nodes[i];
        bool red = false;
        for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]) && !red; k++)
            red = is_op(n, ops[k]);
        if (!red || n->dead || n->n_in != 2 || n->in[1] < 0 || !g->values[n->in[1]].is_const ||
            veil__engine_attr_get(n, "axes") != NULL)
            continue;
        const struct veil__engine_value *ax = &g->values[n->in[1]];
        if (ax->c.dt != VEIL_DT_INT64 || ax->c.rank != 1 || ax->c.numel > VEIL__ENGINE_RANK)
            continue; /* left for the kernel, which names what is wrong */
        struct veil__engine_attr *na = veil_reallocarray(n->attrs, n->n_attrs + 1, sizeof(*na));
        if (na == NULL)
            return VEIL_E_NOMEM;
        n->attrs = na;
        struct veil__engine_attr *d = &n->attrs[n->n_attrs];
        memset(d, 0, sizeof(*d));
        d->tensor = -1;
        d->type = VEIL_ONNX_ATTR_INTS;
        d->name = veil_strdup("axes");
        d->ints = veil_allocarray((size_t)ax->c.numel + 1, sizeof(int64_t));
        if (d->name == NULL || d->ints == NULL) {
            veil_free(d->name);
            veil_free(d->ints);
            return VEIL_E_NOMEM;
        }
        d->n = (size_t)ax->c.numel;
        if (d->n > 0)
            memcpy(d->ints, ax->c.data, d->n * sizeof(int64_t));
        n->n_attrs++;
        n->in[1] = -1;
        n->n_in = 1;
    }
    return VEIL_OK;
}

veil_err veil__engine_graph_optimize(struct veil__engine_graph *g, struct veil_errbuf *eb)
{
    /* In order; each pass sees the readers as the passes before it left them. */
    static veil_err (*const passes[])(struct veil__engine_graph *, struct uses *) = {
        fuse_gelu,        fuse_gelu_tanh,   fuse_layernorm, fold_bn,
        fuse_matmul_bias, fuse_softmax_add, fuse_post,
    };
    veil_err rc = fold_constant_nodes(g);
    if (rc == VEIL_OK)
        rc = axes_inputs_to_attrs(g);
    bypass_identity(g);
    for (size_t i = 0; rc == VEIL_OK && i < sizeof(passes) / sizeof(passes[0]); i++) {
        struct uses u = {NULL, NULL};
        rc = count_uses(g, &u);
        if (rc == VEIL_OK)
            rc = passes[i](g, &u);
        uses_release(&u);
    }
    if (rc != VEIL_OK)
        return veil_errf(eb, rc, "no memory while optimising the graph");
    return VEIL_OK;
}
