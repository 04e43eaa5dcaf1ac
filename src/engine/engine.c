/*
 * The engine's public API: model load (parse, build the IR, check it, optimise it once) and
 * runs. A model is immutable after load except for its plan cache, which a mutex guards;
 * plans themselves are immutable once built and are shared by concurrent runs, each of which
 * takes its own scratch arena from the plan's pool.
 */
#include "engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Marks graph inputs whose values decide shapes (cond false: walking back from every
 * shape-deciding input slot) or an If's condition (cond true: from every If's condition),
 * through any node but Shape and Size (whose outputs depend only on shapes).
 */
static veil_err mark_keys(struct veil__engine_graph *g, bool cond, struct veil_errbuf *eb)
{
    int32_t *stack = veil_allocarray(g->n_values + 1, sizeof(int32_t));
    bool *seen = veil_calloc(g->n_values + 1, sizeof(bool));
    size_t sp = 0;
    veil_err rc = VEIL_OK;
    if (stack == NULL || seen == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for shape analysis");
        goto out;
    }
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct veil__engine_node *n = &g->nodes[i];
        if (n->dead)
            continue;
        /* A Loop with scan outputs stacks one row per iteration: its trip count is a shape. */
        bool loop_scan = strcmp(n->op_type, "Loop") == 0 && n->body != NULL &&
                         n->body->g.n_outputs + n->body_captured > n->n_in - 1;
        uint32_t seeds = cond ? (strcmp(n->op_type, "If") == 0 ? 1u
                                 : loop_scan                   ? 2u
                                                               : 0u)
                              : veil__engine_op_get(n->op)->shape_inputs | (loop_scan ? 1u : 0u);
        for (size_t k = 0; k < n->n_in; k++)
            if (k < 32 && ((seeds >> k) & 1u) && n->in[k] >= 0 && !seen[n->in[k]]) {
                seen[n->in[k]] = true;
                stack[sp++] = n->in[k];
            }
    }
    while (sp > 0) {
        int32_t v = stack[--sp];
        const struct veil__engine_value *val = &g->values[v];
        if (val->input >= 0) {
            if (cond)
                g->values[v].cond_key = true;
            else
                g->values[v].shape_key = true;
            continue;
        }
        if (val->producer < 0)
            continue;
        const struct veil__engine_node *n = &g->nodes[val->producer];
        if (strcmp(n->op_type, "Shape") == 0 || strcmp(n->op_type, "Size") == 0)
            continue;
        for (size_t k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0 && !seen[n->in[k]]) {
                seen[n->in[k]] = true;
                stack[sp++] = n->in[k];
            }
    }
out:
    veil_free(stack);
    veil_free(seen);
    return rc;
}

/* True when every element of an INTS attribute (absent: the default 1) equals 1. */
static bool attr_all_ones(const struct veil__engine_node *n, const char *name)
{
    const struct veil__engine_attr *a = veil__engine_attr_get(n, name);
    for (size_t i = 0; a != NULL && i < a->n; i++)
        if (a->ints == NULL || a->ints[i] != 1)
            return false;
    return true;
}

/*
 * A Conv that oneDNN's Winograd kernels can run: 2-D, constant 3x3 weights with input and
 * output channels in whole 16-channel blocks, stride 1, no dilation, one group.
 */
static bool winograd_shape(const struct veil__engine_graph *g, const struct veil__engine_node *n)
{
    if (n->n_in < 2 || n->in[1] < 0 || veil__engine_attr_i(n, "group", 1) != 1 ||
        !attr_all_ones(n, "strides") || !attr_all_ones(n, "dilations"))
        return false;
    const struct veil__engine_value *w = &g->values[n->in[1]];
    return w->is_const && w->c.rank == 4 && w->c.dims[2] == 3 && w->c.dims[3] == 3 &&
           w->c.dims[0] % 16 == 0 && w->c.dims[1] % 16 == 0;
}

static veil_err model_build(const struct veil_onnx_model *om, const struct veil_engine_options *opt,
                            bool subgraph, struct veil_engine_model **out, struct veil_errbuf *eb);

/*
 * The model of a Loop's or Scan's body: its declared inputs, then one untyped input per outer
 * value it reads (named as the body names them), its nodes, initializers and outputs.
 */
static veil_err build_body(const struct veil_onnx_model *outer,
                           const struct veil__engine_flat_body *fb,
                           const struct veil_engine_options *opt, struct veil_engine_model **out,
                           struct veil_errbuf *eb)
{
    veil_err rc;
    const struct veil_onnx_graph *bg = fb->g;
    struct veil_onnx_value_info *ins = veil_calloc(bg->n_inputs + fb->n_captured + 1, sizeof(*ins));
    if (ins == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for a loop body");
    for (size_t i = 0; i < bg->n_inputs; i++)
        ins[i] = bg->inputs[i];
    for (size_t i = 0; i < fb->n_captured; i++)
        ins[bg->n_inputs + i].name = fb->captured[i];
    struct veil_onnx_model bm = {
        .ir_version = outer->ir_version,
        .opset = outer->opset,
        .producer_name = outer->producer_name,
        .nodes = bg->nodes,
        .n_nodes = bg->n_nodes,
        .initializers = bg->initializers,
        .n_initializers = bg->n_initializers,
        .inputs = ins,
        .n_inputs = bg->n_inputs + fb->n_captured,
        .outputs = bg->outputs,
        .n_outputs = bg->n_outputs,
    };
    rc = model_build(&bm, opt, true, out, eb);
    veil_free(ins);
    return rc;
}

/*
 * Builds a model from a parsed one (borrowed: the caller frees it after): the graph with If
 * branches lifted, the bodies of Loop and Scan nodes as models of their own (subgraph: this is
 * one), then the optimised order and the plan keys.
 */
static veil_err model_build(const struct veil_onnx_model *om, const struct veil_engine_options *opt,
                            bool subgraph, struct veil_engine_model **out, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_engine_model *m = NULL;
    struct veil__engine_flat flat;
    bool flat_made = false;

    *out = NULL;
    m = veil_calloc(1, sizeof(*m));
    if (m == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for the model");
        goto out;
    }
    pthread_mutex_init(&m->mu, NULL);
    if ((rc = veil__engine_flatten(om, &flat, eb)) != VEIL_OK)
        goto out;
    flat_made = true;
    if ((rc = veil__engine_graph_build(&m->g, &flat, subgraph, eb)) != VEIL_OK)
        goto out;
    for (size_t i = 0; i < flat.n_nodes; i++) {
        if (flat.bodies[i].g == NULL)
            continue;
        struct veil__engine_node *n = &m->g.nodes[i];
        if ((rc = build_body(om, &flat.bodies[i], opt, &n->body, eb)) != VEIL_OK) {
            veil_err_prefix(eb, rc, "body of %s node '%s'", n->op_type, n->name);
            goto out;
        }
        n->body_captured = flat.bodies[i].n_captured;
    }
    veil__engine_flat_release(&flat);
    flat_made = false;
    if ((rc = veil__engine_graph_legacy(&m->g, eb)) != VEIL_OK)
        goto out;
    /* The declared output types are kept for the model's description. */
    m->n_in = m->g.n_inputs;
    m->n_out = m->g.n_outputs;
    m->in_info = veil_calloc(m->n_in + 1, sizeof(*m->in_info));
    m->out_info = veil_calloc(m->n_out + 1, sizeof(*m->out_info));
    if (m->in_info == NULL || m->out_info == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for the model");
        goto out;
    }
    for (size_t i = 0; i < m->n_in; i++) {
        const struct veil__engine_value *v = &m->g.values[m->g.inputs[i]];
        struct veil_tensor_info *ti = &m->in_info[i];
        ti->name = v->name;
        for (size_t k = 0; k < om->n_inputs; k++) {
            if (strcmp(om->inputs[k].name, v->name) != 0)
                continue;
            ti->dtype = om->inputs[k].dtype;
            ti->rank = om->inputs[k].rank;
            memcpy(ti->dims, om->inputs[k].dims, sizeof(ti->dims));
        }
    }
    for (size_t i = 0; i < m->n_out; i++) {
        const struct veil__engine_value *v = &m->g.values[m->g.outputs[i]];
        struct veil_tensor_info *ti = &m->out_info[i];
        ti->name = v->name;
        const struct veil_onnx_value_info *vi = &om->outputs[i];
        ti->dtype = vi->dtype;
        ti->rank = vi->has_shape ? vi->rank : 0;
        for (size_t d = 0; d < ti->rank; d++)
            ti->dims[d] = vi->dims[d];
    }
    if ((rc = veil__engine_graph_order(&m->g, eb)) != VEIL_OK)
        goto out;
    if ((rc = veil__engine_graph_optimize(&m->g, eb)) != VEIL_OK)
        goto out;
    if ((rc = veil__engine_graph_order(&m->g, eb)) != VEIL_OK)
        goto out;
    if ((rc = mark_keys(&m->g, false, eb)) != VEIL_OK ||
        (rc = mark_keys(&m->g, true, eb)) != VEIL_OK)
        goto out;
    m->g.winograd = opt == NULL || !opt->direct_conv;
    for (size_t i = 0; i < m->g.n_nodes; i++) {
        const struct veil__engine_node *n = &m->g.nodes[i];
        if (n->dead || strcmp(n->op_type, "Conv") != 0)
            continue;
        if (veil__engine_attr_i(n, "group", 1) > 1 || (m->g.winograd && winograd_shape(&m->g, n)))
            m->g.blocked_convs = true;
    }
    if (opt != NULL && opt->profile) {
        m->prof_ns = veil_calloc(m->g.n_nodes + 1, sizeof(*m->prof_ns));
        m->prof_ran = veil_calloc(m->g.n_nodes + 1, sizeof(*m->prof_ran));
        if (m->prof_ns == NULL || m->prof_ran == NULL) {
            rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for the profile");
            goto out;
        }
    }
    m->threads = opt != NULL && opt->threads > 0 ? opt->threads : veil_cpu_count();
    m->max_plans = opt != NULL && opt->max_plans > 0 ? opt->max_plans : VEIL_ENGINE_DEFAULT_PLANS;
    if (m->max_plans > VEIL_ENGINE_MAX_PLANS)
        m->max_plans = VEIL_ENGINE_MAX_PLANS;
    veil__engine_lanes_reserve(m->threads);
    m->max_act = VEIL_ENGINE_DEFAULT_MAX_ACTIVATION;
    m->attention_isa = VEIL__ENGINE_VEC_AVX512;
    rc = veil__engine_dnnl_err(dnnl_engine_create(&m->deng, dnnl_cpu, 0), "engine creation", eb);
    if (rc != VEIL_OK)
        goto out;
    *out = m;
    m = NULL;
    rc = VEIL_OK;
out:
    if (flat_made)
        veil__engine_flat_release(&flat);
    veil_engine_model_free(m);
    return rc;
}

veil_err veil_engine_model_load(struct veil_span onnx, const struct veil_engine_options *opt,
                                struct veil_engine_model **out, struct veil_errbuf *eb)
{
    return veil_engine_model_load_external(onnx, NULL, opt, out, eb);
}

veil_err veil_engine_model_load_external(struct veil_span onnx,
                                         const struct veil_onnx_external *ext,
                                         const struct veil_engine_options *opt,
                                         struct veil_engine_model **out, struct veil_errbuf *eb)
{
    struct veil_onnx_model *om = NULL;
    *out = NULL;
    veil_err rc = veil_onnx_parse_external(onnx, ext, &om, eb);
    if (rc != VEIL_OK)
        return rc;
    rc = model_build(om, opt, false, out, eb);
    veil_onnx_model_free(om);
    /* The parsed model's tensor bytes (as large as the model) go back to the system. */
    veil_heap_release();
    return rc;
}

void veil_engine_model_free(struct veil_engine_model *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->g.n_nodes; i++) {
        veil_engine_model_free(m->g.nodes[i].body);
        m->g.nodes[i].body = NULL;
    }
    for (size_t i = 0; i < m->n_plans; i++)
        veil__engine_plan_free(m->plans[i]);
    veil__engine_wcache_release(&m->wcache);
    veil__engine_graph_release(&m->g);
    veil_free(m->in_info);
    veil_free(m->out_info);
    veil_free(m->prof_ns);
    veil_free(m->prof_ran);
    if (m->deng != NULL)
        dnnl_engine_destroy(m->deng);
    pthread_mutex_destroy(&m->mu);
    veil_free(m);
}

size_t veil_engine_model_num_inputs(const struct veil_engine_model *m)
{
    return m->n_in;
}

size_t veil_engine_model_num_outputs(const struct veil_engine_model *m)
{
    return m->n_out;
}

const struct veil_tensor_info *veil_engine_model_input(const struct veil_engine_model *m, size_t i)
{
    VEIL_ASSERT(i < m->n_in);
    return &m->in_info[i];
}

const struct veil_tensor_info *veil_engine_model_output(const struct veil_engine_model *m, size_t i)
{
    VEIL_ASSERT(i < m->n_out);
    return &m->out_info[i];
}

void veil_engine_model_set_max_activation(struct veil_engine_model *m, uint64_t bytes)
{
    pthread_mutex_lock(&m->mu);
    m->max_act = bytes > 0 ? bytes : VEIL_ENGINE_DEFAULT_MAX_ACTIVATION;
    pthread_mutex_unlock(&m->mu);
}

void veil__engine_model_cap_attention(struct veil_engine_model *m, enum veil__engine_vec_isa cap)
{
    pthread_mutex_lock(&m->mu);
    m->attention_isa = cap;
    pthread_mutex_unlock(&m->mu);
}

size_t veil_engine_model_weight_bytes(struct veil_engine_model *m)
{
    pthread_mutex_lock(&m->mu);
    size_t n = veil__engine_weight_bytes(m);
    pthread_mutex_unlock(&m->mu);
    return n;
}

unsigned veil_engine_model_threads(const struct veil_engine_model *m)
{
    return m->threads;
}

size_t veil_engine_model_peak_bytes(struct veil_engine_model *m)
{
    size_t peak = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n_plans; i++)
        if (m->plans[i]->peak_act_bytes > peak)
            peak = m->plans[i]->peak_act_bytes;
    pthread_mutex_unlock(&m->mu);
    return peak;
}

/* A node's profile label: its operator type and what was fused into it. */
static void prof_label(const struct veil__engine_node *n, char *out, size_t cap)
{
    static const char *const post_names[] = {
        [VEIL__ENGINE_POST_RELU] = "Relu",           [VEIL__ENGINE_POST_LEAKY] = "LeakyRelu",
        [VEIL__ENGINE_POST_CLIP] = "Clip",           [VEIL__ENGINE_POST_SIGMOID] = "Sigmoid",
        [VEIL__ENGINE_POST_TANH] = "Tanh",           [VEIL__ENGINE_POST_GELU_ERF] = "Gelu",
        [VEIL__ENGINE_POST_LINEAR] = "Affine",       [VEIL__ENGINE_POST_SWISH] = "SiLU",
        [VEIL__ENGINE_POST_HARDSWISH] = "HardSwish", [VEIL__ENGINE_POST_GELU_TANH] = "GeluTanh",
    };
    size_t len = (size_t)snprintf(out, cap, "%s", n->op_type);
    for (size_t i = 0; i <= n->n_post && len < cap; i++) {
        const char *add = NULL;
        if (n->add_in >= 0 && n->add_at == i)
            add = "Add";
        if (add != NULL && len < cap)
            len += (size_t)snprintf(out + len, cap - len, "+%s", add);
        if (i < n->n_post && len < cap) {
            const char *pn = (size_t)n->post[i].kind < sizeof(post_names) / sizeof(post_names[0]) &&
                                     post_names[n->post[i].kind] != NULL
                                 ? post_names[n->post[i].kind]
                                 : "Post";
            len += (size_t)snprintf(out + len, cap - len, "+%s", pn);
        }
    }
}

static int prof_row_cmp(const void *a, const void *b)
{
    const struct veil_engine_prof_row *x = a, *y = b;
    return x->ms < y->ms ? 1 : x->ms > y->ms ? -1 : strcmp(x->op, y->op);
}

veil_err veil_engine_model_profile(struct veil_engine_model *m, struct veil_engine_prof_row *rows,
                                   size_t cap, size_t *n_rows, uint64_t *runs, double *run_ms,
                                   struct veil_errbuf *eb)
{
    *n_rows = 0;
    *runs = 0;
    *run_ms = 0;
    if (m->prof_ns == NULL)
        return veil_errf(eb, VEIL_E_INVALID, "the model was loaded without profiling");
    struct veil_engine_prof_row *all = veil_calloc(m->g.n_nodes + 1, sizeof(*all));
    if (all == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for the profile");
    size_t n = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->g.n_nodes; i++) {
        const struct veil__engine_node *nd = &m->g.nodes[i];
        if (nd->dead || !m->prof_ran[i])
            continue;
        char label[sizeof(all->op)];
        if ((m->prof_ran[i] & VEIL__ENGINE_PROF_ATTENTION) && strcmp(nd->op_type, "MatMul") == 0)
            snprintf(label, sizeof(label), "Attention (MatMul+Softmax+MatMul)");
        else
            prof_label(nd, label, sizeof(label));
        size_t r = 0;
        while (r < n && strcmp(all[r].op, label) != 0)
            r++;
        if (r == n)
            memcpy(all[n++].op, label, sizeof(label));
        all[r].nodes++;
        all[r].ms += (double)m->prof_ns[i] / 1e6;
    }
    *runs = m->prof_runs;
    *run_ms = (double)m->prof_run_ns / 1e6;
    pthread_mutex_unlock(&m->mu);
    qsort(all, n, sizeof(*all), prof_row_cmp);
    if (cap > 0)
        memcpy(rows, all, (n < cap ? n : cap) * sizeof(*all));
    *n_rows = n;
    veil_free(all);
    return VEIL_OK;
}

void veil_engine_model_profile_reset(struct veil_engine_model *m)
{
    pthread_mutex_lock(&m->mu);
    if (m->prof_ns != NULL) {
        memset(m->prof_ns, 0, m->g.n_nodes * sizeof(*m->prof_ns));
        memset(m->prof_ran, 0, m->g.n_nodes * sizeof(*m->prof_ran));
    }
    m->prof_runs = 0;
    m->prof_run_ns = 0;
    pthread_mutex_unlock(&m->mu);
}

static veil_err check_inputs(const struct veil_engine_model *m, const struct veil_tensor *in,
                             size_t n_in, struct veil_errbuf *eb)
{
    if (n_in != m->n_in)
        return veil_errf(eb, VEIL_E_INVALID, "model takes %zu inputs, got %zu", m->n_in, n_in);
    for (size_t i = 0; i < n_in; i++) {
        const struct veil_tensor_info *ti = &m->in_info[i];
        const struct veil_tensor *t = &in[i];
        if (t->dtype != ti->dtype)
            return veil_errf(eb, VEIL_E_INVALID, "input '%s' must be %s, got %s", ti->name,
                             veil_dtype_name(ti->dtype), veil_dtype_name(t->dtype));
        if (t->rank != ti->rank)
            return veil_errf(eb, VEIL_E_INVALID, "input '%s' must have rank %zu, got %zu", ti->name,
                             ti->rank, t->rank);
        uint64_t numel;
        veil_err rc = veil_tensor_numel(t->dims, t->rank, &numel);
        if (rc != VEIL_OK)
            return veil_errf(eb, VEIL_E_INVALID, "input '%s' has an invalid shape", ti->name);
        for (size_t d = 0; d < t->rank; d++)
            if (ti->dims[d] >= 0 && t->dims[d] != ti->dims[d])
                return veil_errf(eb, VEIL_E_INVALID,
                                 "input '%s' dimension %zu must be %lld, "
                                 "got %lld",
                                 ti->name, d, (long long)ti->dims[d], (long long)t->dims[d]);
        uint64_t nbytes;
        if (__builtin_mul_overflow(numel, (uint64_t)veil_dtype_size(t->dtype), &nbytes) ||
            nbytes != t->nbytes)
            return veil_errf(eb, VEIL_E_INVALID,
                             "input '%s' has %zu bytes, its shape needs "
                             "%llu",
                             ti->name, t->nbytes, (unsigned long long)nbytes);
        if (nbytes > 0 && t->data == NULL)
            return veil_errf(eb, VEIL_E_INVALID, "input '%s' has no data", ti->name);
    }
    return VEIL_OK;
}

/* One run, executed on a compute lane (plan building included: it runs oneDNN reorders). */
struct run_job {
    struct veil_engine_model *m;
    const struct veil_tensor *inputs;
    struct veil_tensor *outputs;
    struct veil_errbuf *eb;
    veil_err rc;
};

static void run_on_lane(void *arg)
{
    struct run_job *j = arg;
    struct veil__engine_plan *p = NULL;
    if ((j->rc = veil__engine_model_get_plan(j->m, j->inputs, &p, j->eb)) != VEIL_OK)
        return;
    j->rc = veil__engine_plan_exec(j->m, p, j->inputs, j->outputs, j->eb);
    veil__engine_model_put_plan(j->m, p);
}

veil_err veil_engine_run(struct veil_engine_model *m, const struct veil_tensor *inputs, size_t n_in,
                         struct veil_tensor *outputs, size_t n_out, struct veil_errbuf *eb)
{
    veil_err rc;
    for (size_t i = 0; i < n_out; i++)
        memset(&outputs[i], 0, sizeof(outputs[i]));
    if (n_out != m->n_out)
        return veil_errf(eb, VEIL_E_INVALID, "model has %zu outputs, got room for %zu", m->n_out,
                         n_out);
    if ((rc = check_inputs(m, inputs, n_in, eb)) != VEIL_OK)
        return rc;
    struct run_job j = {m, inputs, outputs, eb, VEIL_E_INTERNAL};
    veil__engine_lanes_call(run_on_lane, &j);
    return j.rc;
}
