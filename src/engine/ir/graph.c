/*
 * The load-time graph IR: built from a parsed ONNX model, checked and ordered. Invariants after
 * veil__engine_graph_build, veil__engine_graph_legacy and veil__engine_graph_order: every
 * node's operator has kernels in the operator registry, every value used is defined exactly
 * once (graph input, initializer or node output), the order visits each live node after all
 * producers of its inputs (cycles are refused), and constants own aligned copies of their
 * data, so the parsed model can be freed.
 */
#include "engine_int.h"

#include <stdlib.h>
#include <string.h>

static veil_err grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return VEIL_OK;
    size_t nc = *cap ? *cap * 2 : 64;
    while (nc < need)
        nc *= 2;
    void *np = veil_reallocarray(*p, nc, elem);
    if (np == NULL)
        return VEIL_E_NOMEM;
    memset((uint8_t *)np + *cap * elem, 0, (nc - *cap) * elem);
    *p = np;
    *cap = nc;
    return VEIL_OK;
}

static veil_err add_value(struct veil__engine_graph *g, const char *name, int32_t *id)
{
    veil_err rc = grow((void **)&g->values, &g->cap_values, g->n_values + 1, sizeof(*g->values));
    if (rc != VEIL_OK)
        return rc;
    struct veil__engine_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof(*v));
    v->name = veil_strdup(name);
    if (v->name == NULL)
        return VEIL_E_NOMEM;
    v->producer = -1;
    v->input = -1;
    *id = (int32_t)g->n_values++;
    return VEIL_OK;
}

veil_err veil__engine_graph_add_const(struct veil__engine_graph *g, const char *name,
                                      enum veil_dtype dt, size_t rank, const int64_t *dims,
                                      void *data, int32_t *id)
{
    int32_t v;
    veil_err rc = add_value(g, name, &v);
    if (rc != VEIL_OK)
        return rc;
    struct veil__engine_value *val = &g->values[v];
    val->is_const = true;
    val->c.dt = dt;
    val->c.rank = rank;
    for (size_t i = 0; i < rank; i++)
        val->c.dims[i] = dims[i];
    val->c.numel = veil__engine_numel(dims, rank);
    val->nbytes = (size_t)val->c.numel * veil_dtype_size(dt);
    val->c.data = data;
    *id = v;
    return VEIL_OK;
}

veil_err veil__engine_node_grow_inputs(struct veil__engine_node *n, size_t want)
{
    if (n->n_in >= want)
        return VEIL_OK;
    int32_t *in = veil_reallocarray(n->in, want + 1, sizeof(int32_t));
    if (in == NULL)
        return VEIL_E_NOMEM;
    for (size_t k = n->n_in; k < want; k++)
        in[k] = -1;
    n->in = in;
    n->n_in = want;
    return VEIL_OK;
}

veil_err veil__engine_node_retype(struct veil__engine_node *n, const char *op_type)
{
    char *name = veil_strdup(op_type);
    if (name == NULL)
        return VEIL_E_NOMEM;
    veil_free(n->op_type);
    n->op_type = name;
    n->op = veil__engine_op_index(op_type);
    return VEIL_OK;
}

veil_err veil__engine_node_add_attr(struct veil__engine_node *n, const char *name,
                                    enum veil_onnx_attr_type type, int64_t i, float f,
                                    const char *str)
{
    if (type != VEIL_ONNX_ATTR_INT && type != VEIL_ONNX_ATTR_FLOAT &&
        (type != VEIL_ONNX_ATTR_STRING || str == NULL))
        return VEIL_E_INVALID;
    for (size_t k = 0; k < n->n_attrs; k++)
        if (strcmp(n->attrs[k].name, name) == 0)
            return VEIL_E_INVALID;
    struct veil__engine_attr *a = veil_reallocarray(n->attrs, n->n_attrs + 1, sizeof(*a));
    if (a == NULL)
        return VEIL_E_NOMEM;
    n->attrs = a;
    struct veil__engine_attr *d = &a[n->n_attrs];
    memset(d, 0, sizeof(*d));
    d->tensor = -1;
    d->name = veil_strdup(name);
    if (d->name == NULL)
        return VEIL_E_NOMEM;
    d->type = type;
    d->i = i;
    d->f = f;
    n->n_attrs++; /* from here the node owns d->name, whatever follows */
    if (type == VEIL_ONNX_ATTR_STRING && (d->s = veil_strdup(str)) == NULL)
        return VEIL_E_NOMEM;
    return VEIL_OK;
}

/* Names are looked up through a sorted index while building. */
struct name_ent {
    const char *name;
    int32_t id;
};

static int name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct name_ent *)a)->name, ((const struct name_ent *)b)->name);
}

static veil_err copy_const(const struct veil_onnx_tensor *t, void **out)
{
    size_t n = t->nbytes;
    /* Large weights on huge pages: far fewer page faults while they are copied in. */
    void *p = veil__engine_big_alloc(n > 0 ? n : 64);
    if (p == NULL)
        return VEIL_E_NOMEM;
    if (n > 0)
        memcpy(p, t->data, n);
    *out = p;
    return VEIL_OK;
}

/* A float16 or bfloat16 tensor as float (the engine computes with both as float). */
static veil_err widen_const(const struct veil_onnx_tensor *t, void **out)
{
    size_t n = t->nbytes / sizeof(uint16_t);
    float *p = veil__engine_big_alloc(n > 0 ? n * sizeof(float) : 64);
    if (p == NULL)
        return VEIL_E_NOMEM;
    /* The parser's data may sit at any alignment inside the message: the widening allows it. */
    if (n > 0)
        veil_half_widen(t->dtype, t->data, p, n);
    *out = p;
    return VEIL_OK;
}

static veil_err add_tensor_const(struct veil__engine_graph *g, const struct veil_onnx_tensor *t,
                                 const char *name, int32_t *id)
{
    void *data = NULL;
    bool half = veil__engine_dt_is_half(t->dtype);
    veil_err rc = half ? widen_const(t, &data) : copy_const(t, &data);
    if (rc != VEIL_OK)
        return rc;
    rc = veil__engine_graph_add_const(g, name, half ? VEIL_DT_FLOAT : t->dtype, t->rank, t->dims,
                                      data, id);
    if (rc != VEIL_OK) {
        veil_aligned_free(data);
        return rc;
    }
    if (half)
        g->values[*id].half_dt = t->dtype;
    return VEIL_OK;
}

static veil_err copy_attrs(struct veil__engine_graph *g, struct veil__engine_node *n,
                           const struct veil_onnx_node *on)
{
    n->attrs = veil_calloc(on->n_attrs + 1, sizeof(*n->attrs));
    if (n->attrs == NULL)
        return VEIL_E_NOMEM;
    n->n_attrs = on->n_attrs;
    for (size_t i = 0; i < on->n_attrs; i++) {
        const struct veil_onnx_attr *a = &on->attrs[i];
        struct veil__engine_attr *d = &n->attrs[i];
        d->tensor = -1;
        d->name = veil_strdup(a->name);
        if (d->name == NULL)
            return VEIL_E_NOMEM;
        d->type = a->type;
        d->f = a->f;
        d->i = a->i;
        if (a->type == VEIL_ONNX_ATTR_STRING) {
            /* An empty string may arrive without a buffer (protobuf-c leaves it NULL). */
            d->s = veil_strndup(a->s.len > 0 ? (const char *)a->s.p : "", a->s.len);
            if (d->s == NULL)
                return VEIL_E_NOMEM;
        } else if (a->type == VEIL_ONNX_ATTR_INTS) {
            d->ints = veil_allocarray(a->n + 1, sizeof(int64_t));
            if (d->ints == NULL)
                return VEIL_E_NOMEM;
            if (a->n > 0)
                memcpy(d->ints, a->ints, a->n * sizeof(int64_t));
            d->n = a->n;
        } else if (a->type == VEIL_ONNX_ATTR_FLOATS) {
            d->floats = veil_allocarray(a->n + 1, sizeof(float));
            if (d->floats == NULL)
                return VEIL_E_NOMEM;
            if (a->n > 0)
                memcpy(d->floats, a->floats, a->n * sizeof(float));
            d->n = a->n;
        } else if (a->type == VEIL_ONNX_ATTR_STRINGS) {
            d->strs = veil_allocarray(a->n + 1, sizeof(char *));
            if (d->strs == NULL)
                return VEIL_E_NOMEM;
            memset(d->strs, 0, (a->n + 1) * sizeof(char *));
            d->n = a->n;
            for (size_t k = 0; k < a->n; k++) {
                const struct veil_span *sp = &a->strings[k];
                d->strs[k] = veil_strndup(sp->len > 0 ? (const char *)sp->p : "", sp->len);
                if (d->strs[k] == NULL)
                    return VEIL_E_NOMEM;
            }
        } else if (a->type == VEIL_ONNX_ATTR_TENSOR) {
            veil_err rc = add_tensor_const(g, a->t, a->t->name, &d->tensor);
            if (rc != VEIL_OK)
                return rc;
        }
    }
    return VEIL_OK;
}

static veil_err check_arity(const struct veil_onnx_node *on, struct veil_errbuf *eb)
{
    const struct veil__engine_op_def *a = veil__engine_op_find(on->op_type);
    if (a == NULL)
        return veil_errf(eb, VEIL_E_INTERNAL, "operator %s has no input and output counts",
                         on->op_type);
    if (on->n_inputs < a->min_in || on->n_inputs > a->max_in)
        return veil_errf(eb, VEIL_E_INVALID, "node '%s' (%s) has %zu inputs; %s takes %u to %u",
                         on->name, on->op_type, on->n_inputs, a->name, a->min_in, a->max_in);
    if (on->n_outputs < a->min_out || on->n_outputs > a->max_out)
        return veil_errf(eb, VEIL_E_INVALID, "node '%s' (%s) has %zu outputs; %s gives %u to %u",
                         on->name, on->op_type, on->n_outputs, a->name, a->min_out, a->max_out);
    return VEIL_OK;
}

veil_err veil__engine_graph_build(struct veil__engine_graph *g,
                                  const struct veil__engine_flat *flat, bool subgraph,
                                  struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct name_ent *idx = NULL;
    size_t n_idx = 0;
    struct veil_buf missing;
    veil_buf_init(&missing, 2048);

    memset(g, 0, sizeof(*g));
    /* The If branches are in the flat model already: every check below covers their nodes. */
    const struct veil_onnx_model *om = &flat->model;
    g->opset = om->opset;
    g->subgraph = subgraph;
    /* Every operator must be known: collect all missing ones so the error names each. */
    {
        size_t seen[64], n_seen = 0;
        bool more = false;
        for (size_t i = 0; i < om->n_nodes; i++) {
            const struct veil_onnx_node *on = &om->nodes[i];
            bool default_domain = on->domain[0] == '\0' || strcmp(on->domain, "ai.onnx") == 0;
            if (default_domain && veil__engine_op_known(on->op_type, om->opset))
                continue;
            bool dup = false;
            for (size_t k = 0; k < n_seen && !dup; k++)
                dup = strcmp(om->nodes[seen[k]].op_type, on->op_type) == 0 &&
                      strcmp(om->nodes[seen[k]].domain, on->domain) == 0;
            if (dup)
                continue;
            if (n_seen == 64) {
                more = true;
                break;
            }
            seen[n_seen++] = i;
            if ((missing.len > 0 && veil_buf_append_str(&missing, ", ") != VEIL_OK) ||
                veil_buf_appendf(&missing, "%s%s%s", on->domain, on->domain[0] ? "." : "",
                                 on->op_type) != VEIL_OK) {
                more = true;
                break;
            }
        }
        if (missing.len > 0) {
            rc = veil_errf(eb, VEIL_E_UNSUPPORTED, "unsupported operators: %.*s%s",
                           (int)missing.len, (const char *)missing.p, more ? ", ..." : "");
            goto out;
        }
    }

    size_t cap_idx = om->n_initializers + om->n_inputs + 1;
    for (size_t i = 0; i < om->n_nodes; i++)
        cap_idx += om->nodes[i].n_outputs;
    idx = veil_allocarray(cap_idx, sizeof(*idx));
    if (idx == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for the graph");
        goto out;
    }
    /* Initializers first: they shadow graph inputs of the same name (IR < 4). */
    for (size_t i = 0; i < om->n_initializers; i++) {
        int32_t id;
        rc = add_tensor_const(g, &om->initializers[i], om->initializers[i].name, &id);
        if (rc != VEIL_OK) {
            rc = veil_errf(eb, rc, "no memory for initializer '%s'", om->initializers[i].name);
            goto out;
        }
        idx[n_idx++] = (struct name_ent){g->values[id].name, id};
    }
    qsort(idx, n_idx, sizeof(*idx), name_cmp);
    for (size_t i = 1; i < n_idx; i++)
        if (strcmp(idx[i - 1].name, idx[i].name) == 0) {
            rc = veil_errf(eb, VEIL_E_FORMAT, "initializer '%s' is defined twice", idx[i].name);
            goto out;
        }
    g->inputs = veil_allocarray(om->n_inputs + 1, sizeof(int32_t));
    g->outputs = veil_allocarray(om->n_outputs + 1, sizeof(int32_t));
    if (g->inputs == NULL || g->outputs == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for the graph");
        goto out;
    }
    size_t n_init_idx = n_idx;
    for (size_t i = 0; i < om->n_inputs; i++) {
        struct name_ent key = {om->inputs[i].name, 0};
        if (bsearch(&key, idx, n_init_idx, sizeof(*idx), name_cmp) != NULL)
            continue;
        const struct veil_onnx_value_info *vi = &om->inputs[i];
        /* A body's inputs take the types and shapes the outer plan gives them. */
        bool typed = vi->dtype != VEIL_DT_UNDEFINED && vi->has_shape;
        if (!(subgraph && !typed) &&
            (vi->dtype == VEIL_DT_UNDEFINED || veil_dtype_size(vi->dtype) == 0 || !vi->has_shape)) {
            rc = veil_errf(eb, VEIL_E_UNSUPPORTED,
                           "graph input '%s' must declare a tensor type "
                           "with a known element type and rank (has %s)",
                           vi->name, veil_dtype_name(vi->dtype));
            goto out;
        }
        for (size_t k = 0; k < g->n_inputs; k++)
            if (strcmp(g->values[g->inputs[k]].name, vi->name) == 0) {
                rc = veil_errf(eb, VEIL_E_FORMAT, "graph input '%s' is declared twice", vi->name);
                goto out;
            }
        int32_t id;
        if ((rc = add_value(g, vi->name, &id)) != VEIL_OK) {
            rc = veil_errf(eb, rc, "no memory for the graph");
            goto out;
        }
        g->values[id].input = (int32_t)g->n_inputs;
        if (veil__engine_dt_is_half(vi->dtype))
            g->values[id].half_dt = vi->dtype;
        g->inputs[g->n_inputs++] = id;
        idx[n_idx++] = (struct name_ent){g->values[id].name, id};
    }
    /* Node outputs, with a check that each value is defined once. */
    rc = grow((void **)&g->nodes, &g->cap_nodes, om->n_nodes + 1, sizeof(*g->nodes));
    if (rc != VEIL_OK) {
        rc = veil_errf(eb, rc, "no memory for the graph");
        goto out;
    }
    for (size_t i = 0; i < om->n_nodes; i++) {
        const struct veil_onnx_node *on = &om->nodes[i];
        if ((rc = check_arity(on, eb)) != VEIL_OK)
            goto out;
        struct veil__engine_node *n = &g->nodes[g->n_nodes++];
        n->op = veil__engine_op_index(on->op_type);
        n->add_in = -1;
        n->guard = flat->guard[i];
        n->branch = flat->branch[i];
        n->name = veil_strdup(on->name[0] ? on->name : on->op_type);
        n->op_type = veil_strdup(on->op_type);
        n->in = veil_allocarray(on->n_inputs + 1, sizeof(int32_t));
        n->out = veil_allocarray(on->n_outputs + 1, sizeof(int32_t));
        if (n->name == NULL || n->op_type == NULL || n->in == NULL || n->out == NULL) {
            rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for the graph");
            goto out;
        }
        n->n_in = on->n_inputs;
        n->n_out = on->n_outputs;
        for (size_t k = 0; k < on->n_outputs; k++) {
            n->out[k] = -1;
            if (on->outputs[k][0] == '\0')
                continue;
            int32_t id;
            if ((rc = add_value(g, on->outputs[k], &id)) != VEIL_OK) {
                rc = veil_errf(eb, rc, "no memory for the graph");
                goto out;
            }
            g->values[id].producer = (int32_t)i;
            n->out[k] = id;
            idx[n_idx++] = (struct name_ent){g->values[id].name, id};
        }
        if ((rc = copy_attrs(g, n, on)) != VEIL_OK) {
            rc = veil_errf_keep(eb, rc, "no memory for attributes");
            goto out;
        }
    }
    qsort(idx, n_idx, sizeof(*idx), name_cmp);
    for (size_t i = 1; i < n_idx; i++)
        if (strcmp(idx[i - 1].name, idx[i].name) == 0) {
            rc = veil_errf(eb, VEIL_E_FORMAT, "value '%s' is defined more than once", idx[i].name);
            goto out;
        }
    for (size_t i = 0; i < om->n_nodes; i++) {
        const struct veil_onnx_node *on = &om->nodes[i];
        struct veil__engine_node *n = &g->nodes[i];
        for (size_t k = 0; k < on->n_inputs; k++) {
            n->in[k] = -1;
            if (on->inputs[k][0] == '\0')
                continue;
            struct name_ent key = {on->inputs[k], 0};
            const struct name_ent *e = bsearch(&key, idx, n_idx, sizeof(*idx), name_cmp);
            if (e == NULL) {
                rc = veil_errf(eb, VEIL_E_FORMAT, "node '%s' reads undefined value '%s'", n->name,
                               on->inputs[k]);
                goto out;
            }
            n->in[k] = e->id;
        }
    }
    if (om->n_outputs == 0) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "graph has no outputs");
        goto out;
    }
    for (size_t i = 0; i < om->n_outputs; i++) {
        enum veil_dtype odt = om->outputs[i].dtype;
        if (odt == VEIL_DT_STRING) {
            rc = veil_errf(eb, VEIL_E_UNSUPPORTED,
                           "graph output '%s' has dtype %s, which is not "
                           "supported",
                           om->outputs[i].name, veil_dtype_name(odt));
            goto out;
        }
        struct name_ent key = {om->outputs[i].name, 0};
        const struct name_ent *e = bsearch(&key, idx, n_idx, sizeof(*idx), name_cmp);
        if (e == NULL) {
            rc = veil_errf(eb, VEIL_E_FORMAT, "graph output '%s' is never computed",
                           om->outputs[i].name);
            goto out;
        }
        g->values[e->id].is_output = true;
        g->outputs[g->n_outputs++] = e->id;
    }
    rc = VEIL_OK;
out:
    veil_free(idx);
    veil_buf_release(&missing);
    return rc;
}

void veil__engine_graph_release(struct veil__engine_graph *g)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct veil__engine_node *n = &g->nodes[i];
        veil_free(n->name);
        veil_free(n->op_type);
        veil_free(n->in);
        veil_free(n->out);
        for (size_t k = 0; k < n->n_attrs && n->attrs != NULL; k++) {
            veil_free(n->attrs[k].name);
            veil_free(n->attrs[k].s);
            veil_free(n->attrs[k].ints);
            veil_free(n->attrs[k].floats);
            for (size_t j = 0; n->attrs[k].strs != NULL && j < n->attrs[k].n; j++)
                veil_free(n->attrs[k].strs[j]);
            veil_free(n->attrs[k].strs);
        }
        veil_free(n->attrs);
    }
    for (size_t i = 0; i < g->n_values; i++) {
        veil_free(g->values[i].name);
        if (g->values[i].is_const && g->values[i].c.data != NULL) {
            /* Weights of a sealed model are its plaintext: wiped before they are freed. */
            veil_memzero(g->values[i].c.data, g->values[i].nbytes);
            veil_aligned_free(g->values[i].c.data);
        }
    }
    veil_free(g->nodes);
    veil_free(g->values);
    veil_free(g->order);
    veil_free(g->inputs);
    veil_free(g->outputs);
    memset(g, 0, sizeof(*g));
}

/* Products that dominate a run: scheduled after every lighter node that is ready. */
static bool heavy_op(const struct veil__engine_node *n)
{
    static const char *const ops[] = {"MatMul",        "Gemm",          "Conv",
                                      "ConvTranspose", "Einsum",        "ConvInteger",
                                      "QLinearConv",   "MatMulInteger", "QLinearMatMul"};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (strcmp(n->op_type, ops[i]) == 0)
            return true;
    return false;
}

/*
 * What a node waits for: its inputs, its fused residual, and the condition of every If up its
 * guard chain (a lifted branch node runs only once the conditions that select it are known).
 */
static size_t n_deps(const struct veil__engine_graph *g, const struct veil__engine_node *n)
{
    size_t d = n->n_in + 1;
    for (int32_t gi = n->guard; gi >= 0; gi = g->nodes[gi].guard)
        d++;
    return d;
}

static int32_t dep_at(const struct veil__engine_graph *g, const struct veil__engine_node *n,
                      size_t k)
{
    if (k < n->n_in)
        return n->in[k];
    if (k == n->n_in)
        return n->add_in;
    int32_t gi = n->guard;
    for (size_t up = k - n->n_in - 1; up > 0; up--)
        gi = g->nodes[gi].guard;
    return g->nodes[gi].in[0];
}

/* Kahn's algorithm over live nodes; a node left unvisited sits on a cycle. */
veil_err veil__engine_graph_order(struct veil__engine_graph *g, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    size_t *indeg = NULL, *cons_start = NULL, *cons = NULL, *queue = NULL, *heavy = NULL;
    size_t n_edges = 0;

    veil_free(g->order);
    g->order = NULL;
    g->n_order = 0;
    indeg = veil_calloc(g->n_nodes + 1, sizeof(size_t));
    cons_start = veil_calloc(g->n_values + 2, sizeof(size_t));
    queue = veil_calloc(g->n_nodes + 1, sizeof(size_t));
    heavy = veil_calloc(g->n_nodes + 1, sizeof(size_t));
    g->order = veil_calloc(g->n_nodes + 1, sizeof(int32_t));
    if (indeg == NULL || cons_start == NULL || queue == NULL || heavy == NULL || g->order == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for the graph order");
        goto out;
    }
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct veil__engine_node *n = &g->nodes[i];
        if (n->dead)
            continue;
        for (size_t k = 0; k < n_deps(g, n); k++) {
            int32_t v = dep_at(g, n, k);
            if (v < 0 || g->values[v].producer < 0)
                continue;
            indeg[i]++;
            cons_start[v + 1]++;
            n_edges++;
        }
    }
    for (size_t v = 0; v < g->n_values; v++)
        cons_start[v + 1] += cons_start[v];
    cons = veil_calloc(n_edges + 1, sizeof(size_t));
    if (cons == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for the graph order");
        goto out;
    }
    {
        size_t *fill = veil_calloc(g->n_values + 1, sizeof(size_t));
        if (fill == NULL) {
            rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for the graph order");
            goto out;
        }
        for (size_t i = 0; i < g->n_nodes; i++) {
            const struct veil__engine_node *n = &g->nodes[i];
            if (n->dead)
                continue;
            for (size_t k = 0; k < n_deps(g, n); k++) {
                int32_t v = dep_at(g, n, k);
                if (v < 0 || g->values[v].producer < 0)
                    continue;
                cons[cons_start[v] + fill[v]++] = i;
            }
        }
        veil_free(fill);
    }
    /*
     * Two first-in first-out queues of ready nodes, taken light first: a matmul or convolution
     * waits until no lighter node is ready. Masks and shapes are then computed before the
     * products that follow them (the fused attention reads a mask computed before its scores).
     */
    size_t lh = 0, lt = 0, hh = 0, ht = 0, live = 0;
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].dead)
            continue;
        live++;
        if (indeg[i] == 0) {
            if (heavy_op(&g->nodes[i]))
                heavy[ht++] = i;
            else
                queue[lt++] = i;
        }
    }
    while (lh < lt || hh < ht) {
        size_t i = lh < lt ? queue[lh++] : heavy[hh++];
        g->order[g->n_order++] = (int32_t)i;
        const struct veil__engine_node *n = &g->nodes[i];
        for (size_t k = 0; k < n->n_out; k++) {
            int32_t v = n->out[k];
            if (v < 0)
                continue;
            for (size_t e = cons_start[v]; e < cons_start[v + 1]; e++)
                if (--indeg[cons[e]] == 0) {
                    if (heavy_op(&g->nodes[cons[e]]))
                        heavy[ht++] = cons[e];
                    else
                        queue[lt++] = cons[e];
                }
        }
    }
    if (g->n_order != live) {
        for (size_t i = 0; i < g->n_nodes; i++)
            if (!g->nodes[i].dead && indeg[i] > 0) {
                rc = veil_errf(eb, VEIL_E_FORMAT, "graph has a cycle through node '%s'",
                               g->nodes[i].name);
                goto out;
            }
        rc = veil_errf(eb, VEIL_E_FORMAT, "graph has a cycle");
        goto out;
    }
    rc = VEIL_OK;
out:
    veil_free(indeg);
    veil_free(cons_start);
    veil_free(cons);
    veil_free(queue);
    veil_free(heavy);
    return rc;
}
