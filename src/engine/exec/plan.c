/*
 * Plans: one per input signature. Building a plan infers every value's shape and dtype,
 * evaluates every node whose inputs are all known (constant folding, which also resolves the
 * Shape -> Gather -> Concat -> Reshape chains of dynamic-batch exports), prepares the kernels of
 * the remaining steps, and lays out the activation arena by lifetime: a value occupies its
 * bytes only from the step that produces it to the last step that reads it, and view
 * operators (Reshape, Flatten, Squeeze, ...) share their input's storage. Executing a plan
 * allocates nothing but the outputs handed to the caller.
 */
#include "engine_int.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct veil__engine_planner k_planner;

#define ALIGN_UP(x) (((x) + 63) & ~(size_t)63)

static void scratch_free(struct veil__engine_scratch *sc)
{
    if (sc == NULL)
        return;
    for (size_t i = 0; i < sc->n_mems; i++)
        if (sc->mems[i] != NULL)
            dnnl_memory_destroy(sc->mems[i]);
    veil_free(sc->mems);
    veil_free(sc->args);
    veil_free(sc->args_base);
    veil_free(sc->step_ns);
    if (sc->stream != NULL)
        dnnl_stream_destroy(sc->stream);
    veil_aligned_free(sc->arena);
    veil_free(sc);
}

void veil__engine_plan_free(struct veil__engine_plan *p)
{
    if (p == NULL)
        return;
    while (p->free_scratch != NULL) {
        struct veil__engine_scratch *sc = p->free_scratch;
        p->free_scratch = sc->next;
        scratch_free(sc);
    }
    for (size_t i = 0; i < p->n_steps; i++) {
        veil__engine_kstate_free(p->steps[i].ks);
        veil_free(p->steps[i].kp.ptr);
    }
    veil_free(p->steps);
    if (p->vals != NULL) {
        /* The plan's own folded data; the graph's constants are not ours. */
        size_t n = p->n_vals;
        for (size_t i = 0; i < n; i++)
            veil_aligned_free(p->vals[i].owned);
    }
    veil_free(p->vals);
    veil_free(p->fails);
    pthread_mutex_destroy(&p->mu);
    veil_free(p);
}

static int32_t root_of(const struct veil__engine_plan *p, int32_t v)
{
    return veil__engine_storage_root(p->vals, v);
}

static void *value_addr(const struct veil__engine_plan *p, const struct veil__engine_scratch *sc,
                        int32_t v)
{
    return veil__engine_plan_addr(p, sc, v);
}

/* Memory plan: greedy best-fit by decreasing size over lifetime intervals. */
struct block {
    int32_t v;
    size_t size;
    int64_t first, last;
    size_t off;
};

static int block_cmp(const void *a, const void *b)
{
    const struct block *x = a, *y = b;
    if (x->size != y->size)
        return x->size < y->size ? 1 : -1;
    return x->v - y->v;
}

static veil_err plan_memory(struct veil__engine_plan *p, uint64_t cap, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct block *bl = NULL, **placed = NULL;
    size_t nb = 0, n_placed = 0, peak = 0, total = 0;

    bl = veil_allocarray(p->n_vals + 1, sizeof(*bl));
    placed = veil_allocarray(p->n_vals + 1, sizeof(*placed));
    if (bl == NULL || placed == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for the memory plan");
        goto out;
    }
    for (size_t v = 0; v < p->n_vals; v++) {
        const struct veil__engine_pval *pv = &p->vals[v];
        if (!pv->runtime || pv->alias)
            continue;
        bl[nb++] = (struct block){(int32_t)v, ALIGN_UP(pv->nbytes ? pv->nbytes : 1), pv->first,
                                  pv->last, 0};
        total += ALIGN_UP(pv->nbytes ? pv->nbytes : 1);
    }
    qsort(bl, nb, sizeof(*bl), block_cmp);
    for (size_t i = 0; i < nb; i++) {
        struct block *b = &bl[i];
        /* Candidate offsets: 0 and the end of every overlapping placed block. */
        size_t best = SIZE_MAX;
        for (size_t c = 0; c <= n_placed; c++) {
            size_t off = c == n_placed ? 0 : placed[c]->off + placed[c]->size;
            if (c < n_placed && (placed[c]->last < b->first || placed[c]->first > b->last))
                continue;
            bool ok = true;
            for (size_t k = 0; k < n_placed && ok; k++) {
                const struct block *o = placed[k];
                if (o->last < b->first || o->first > b->last)
                    continue;
                if (off < o->off + o->size && o->off < off + b->size)
                    ok = false;
            }
            if (ok && off < best)
                best = off;
        }
        b->off = best;
        placed[n_placed++] = b;
        if (best + b->size > peak)
            peak = best + b->size;
        p->vals[b->v].off = best;
    }
    if (peak > cap || peak > VEIL__ENGINE_MAX_ACT) {
        rc = veil_errf(eb, VEIL_E_LIMIT, "activations need %zu bytes, above the %llu-byte cap",
                       peak, (unsigned long long)cap);
        goto out;
    }
    (void)total;
    p->peak_act_bytes = peak;
    size_t step_max = 0;
    for (size_t i = 0; i < p->n_steps; i++)
        if (p->steps[i].runtime && p->steps[i].scratch_bytes > step_max)
            step_max = p->steps[i].scratch_bytes;
    p->step_region_off = ALIGN_UP(peak);
    p->arena_bytes = p->step_region_off + ALIGN_UP(step_max) + 64;
    rc = VEIL_OK;
out:
    veil_free(bl);
    veil_free(placed);
    return rc;
}

/*
 * The model's element type of an output of node n computed as dt (struct veil__engine_pval
 * ldt): a 16-bit float type where a Cast, CastLike, EyeLike, Constant or ConstantOfShape names
 * one, or where the output is float and carries the type of the node's first float input (the
 * operators' type constraints tie a float output to that input; OneHot's to its values).
 */
static enum veil_dtype value_dtype(const struct veil__engine_graph *g,
                                   const struct veil__engine_pval *vals,
                                   const struct veil__engine_node *n, enum veil_dtype dt)
{
    if (dt != VEIL_DT_FLOAT)
        return dt;
    const char *op = n->op_type;
    const struct veil__engine_attr *a;
    if (strcmp(op, "Cast") == 0) {
        int64_t to = veil__engine_attr_i(n, "to", 0);
        return veil__engine_dt_is_half((enum veil_dtype)to) ? (enum veil_dtype)to : dt;
    }
    if (strcmp(op, "CastLike") == 0)
        return n->n_in > 1 && n->in[1] >= 0 ? vals[n->in[1]].ldt : dt;
    if (strcmp(op, "EyeLike") == 0 &&
        (a = veil__engine_attr_typed(n, "dtype", VEIL_ONNX_ATTR_INT)) != NULL)
        return veil__engine_dt_is_half((enum veil_dtype)a->i) ? (enum veil_dtype)a->i : dt;
    if (strcmp(op, "Constant") == 0 || strcmp(op, "ConstantOfShape") == 0) {
        a = veil__engine_attr_typed(n, "value", VEIL_ONNX_ATTR_TENSOR);
        if (a != NULL && a->tensor >= 0 && g->values[a->tensor].half_dt != VEIL_DT_UNDEFINED)
            return g->values[a->tensor].half_dt;
        return dt;
    }
    size_t first = strcmp(op, "OneHot") == 0 ? 2 : 0;
    for (size_t k = first; k < n->n_in; k++)
        if (n->in[k] >= 0 && vals[n->in[k]].t.dt == dt)
            return vals[n->in[k]].ldt;
    return dt;
}

/*
 * The element type a graph output is returned in: its declared type, or where the model
 * declares none, the type the plan gives it. A float value the model types float16 or
 * bfloat16 is narrowed to that type when the run ends.
 */
static enum veil_dtype output_dtype(const struct veil_engine_model *m,
                                    const struct veil__engine_plan *p, size_t i)
{
    const struct veil__engine_pval *pv = &p->vals[m->g.outputs[i]];
    enum veil_dtype want = m->out_info[i].dtype;
    if (want == VEIL_DT_UNDEFINED)
        want = pv->ldt;
    return pv->t.dt == VEIL_DT_FLOAT && veil__engine_dt_is_half(want) ? want : pv->t.dt;
}

/* Rounds value v (float storage of nbytes, any layout) to its 16-bit type in place. */
static void round_half(const struct veil__engine_pval *pv, void *data)
{
    veil__engine_half_round_par(pv->ldt, data, data, pv->nbytes / sizeof(float));
}

static veil_err fill_tv(const struct veil__engine_plan *p, int32_t v, struct veil__engine_tv *t)
{
    if (v < 0) {
        memset(t, 0, sizeof(*t));
        return VEIL_OK;
    }
    *t = p->vals[v].t;
    return VEIL_OK;
}

/*
 * Values that may stay in a oneDNN blocked layout: not graph outputs, read at least once, and
 * only by readers that take any layout (Conv's data input or fused residual, MaxPool without
 * its indices output, GlobalAveragePool, GlobalMaxPool and Mul, which then run as oneDNN
 * primitives or blocked kernels and reorder what they do not want).
 */
static veil_err find_blockable(const struct veil__engine_graph *g, bool **out,
                               struct veil_errbuf *eb)
{
    bool *b = veil_calloc(g->n_values + 1, sizeof(bool));
    bool *bad = veil_calloc(g->n_values + 1, sizeof(bool));
    *out = NULL;
    if (b == NULL || bad == NULL) {
        veil_free(b);
        veil_free(bad);
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for layout analysis");
    }
    for (size_t i = 0; i < g->n_order; i++) {
        const struct veil__engine_node *n = &g->nodes[g->order[i]];
        bool conv = strcmp(n->op_type, "Conv") == 0;
        bool indices = n->n_out > 1 && n->out[1] >= 0;
        bool mul = strcmp(n->op_type, "Mul") == 0 && n->n_in == 2;
        bool pool = (strcmp(n->op_type, "MaxPool") == 0 && !indices) ||
                    strcmp(n->op_type, "GlobalAveragePool") == 0 ||
                    strcmp(n->op_type, "GlobalMaxPool") == 0;
        for (size_t k = 0; k <= n->n_in; k++) {
            int32_t v = k < n->n_in ? n->in[k] : n->add_in;
            if (v < 0)
                continue;
            bool ok = (k == 0 && (conv || pool)) || (k == n->n_in && conv) || (k < 2 && mul);
            if (ok)
                b[v] = true;
            else
                bad[v] = true;
        }
    }
    for (size_t v = 0; v < g->n_values; v++)
        if (bad[v] || g->values[v].is_output || g->values[v].is_const)
            b[v] = false;
    veil_free(bad);
    *out = b;
    return VEIL_OK;
}

/*
 * Whether graph input v's values are part of the plan key (constants of the plan): it decides
 * shapes, or it decides an If's condition and is one integer or boolean.
 */
static bool input_keyed(const struct veil__engine_value *v, const struct veil_tensor *t)
{
    return v->shape_key || (v->cond_key && veil__engine_numel(t->dims, t->rank) == 1 &&
                            (veil__engine_dt_is_int(t->dtype) || t->dtype == VEIL_DT_BOOL));
}

/* ---- If: lifted branches, chosen per plan or per run ---- */

enum activity {
    ACT_NO,  /* in a branch not taken in this plan (or one that failed to plan): skipped */
    ACT_YES, /* runs on every run */
    ACT_RUN, /* in a branch chosen by a run-time condition: runs when its guards hold */
};

static enum activity node_activity(const struct veil__engine_plan *p,
                                   const struct veil__engine_graph *g, int32_t node)
{
    enum activity a = ACT_YES;
    const struct veil__engine_node *n = &g->nodes[node];
    int32_t gi = n->guard;
    uint8_t br = n->branch;
    for (; gi >= 0; br = g->nodes[gi].branch, gi = g->nodes[gi].guard) {
        if (veil__engine_plan_branch_failed(p, gi, br) != NULL)
            return ACT_NO;
        const struct veil__engine_pval *c = &p->vals[g->nodes[gi].in[0]];
        if (c->runtime || c->t.data == NULL) {
            a = ACT_RUN;
            continue;
        }
        if (veil__engine_cond_true(&c->t, c->t.data) != (br == 0))
            return ACT_NO;
    }
    return a;
}

static veil_err record_fail(struct veil__engine_plan *p, int32_t node, uint8_t branch,
                            const char *msg)
{
    struct veil__engine_branch_fail *f = veil_reallocarray(p->fails, p->n_fails + 1, sizeof(*f));
    if (f == NULL)
        return VEIL_E_NOMEM;
    p->fails = f;
    f = &p->fails[p->n_fails++];
    f->node = node;
    f->branch = branch;
    snprintf(f->msg, sizeof(f->msg), "%s", msg);
    return VEIL_OK;
}

static veil_err build_key(const struct veil_engine_model *m, const struct veil_tensor *inputs,
                          int64_t *key, size_t *key_len, struct veil_errbuf *eb)
{
    size_t k = 0;
    const size_t cap = 64 * VEIL__ENGINE_RANK;
    for (size_t i = 0; i < m->g.n_inputs; i++) {
        const struct veil_tensor *t = &inputs[i];
        if (k + 1 + t->rank > cap)
            return veil_errf(eb, VEIL_E_LIMIT, "too many inputs for a plan key");
        key[k++] = (int64_t)t->rank;
        for (size_t d = 0; d < t->rank; d++)
            key[k++] = t->dims[d];
        if (!input_keyed(&m->g.values[m->g.inputs[i]], t))
            continue;
        struct veil__engine_tv tv = {t->dtype, t->rank, {0}, 0, t->data};
        memcpy(tv.dims, t->dims, sizeof(tv.dims));
        tv.numel = veil__engine_numel(t->dims, t->rank);
        if (tv.numel > 64 || k + tv.numel > cap)
            return veil_errf(eb, VEIL_E_LIMIT,
                             "input '%s' decides shapes and has more than 64 "
                             "values",
                             m->in_info[i].name);
        for (uint64_t e = 0; e < tv.numel; e++)
            /* A 16-bit float keys by its bits: reading it as an integer would truncate. */
            key[k++] = veil__engine_dt_is_half(t->dtype) ? ((const uint16_t *)t->data)[e]
                                                         : veil__engine_get_i64(&tv, e);
    }
    *key_len = k;
    return VEIL_OK;
}

bool veil__engine_plan_matches(const struct veil_engine_model *m, const struct veil__engine_plan *p,
                               const struct veil_tensor *inputs)
{
    int64_t key[64 * VEIL__ENGINE_RANK];
    size_t len;
    if (build_key(m, inputs, key, &len, NULL) != VEIL_OK)
        return false;
    return len == p->key_len && memcmp(key, p->key, len * sizeof(int64_t)) == 0;
}

veil_err veil__engine_plan_build(struct veil_engine_model *m, const struct veil_tensor *inputs,
                                 struct veil__engine_plan **out, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil__engine_plan *p = NULL;
    const struct veil__engine_graph *g = &m->g;
    bool *blockable = NULL, *viewed = NULL;
    uint8_t *half_readers = NULL;
    int64_t *last_read = NULL;
    int32_t *sole_reader = NULL, *step_of = NULL;
    uint32_t *n_reads = NULL, *wreads = NULL;
    struct veil_errbuf *const caller_eb = eb;
    struct veil_errbuf branch_eb = {{0}};

    *out = NULL;
    /* oneDNN sizes a primitive's work split by the thread count current at creation. */
    omp_set_num_threads((int)m->threads);
    p = veil_calloc(1, sizeof(*p));
    if (p == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for a plan");
    pthread_mutex_init(&p->mu, NULL);
    p->n_vals = g->n_values;
    p->vals = veil_calloc(g->n_values + 1, sizeof(*p->vals));
    p->steps = veil_calloc(g->n_order + 1, sizeof(*p->steps));
    if (p->vals == NULL || p->steps == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for a plan");
        goto out;
    }
    if ((rc = build_key(m, inputs, p->key, &p->key_len, eb)) != VEIL_OK)
        goto out;
    if ((rc = find_blockable(g, &blockable, eb)) != VEIL_OK)
        goto out;
    last_read = veil_allocarray(g->n_values + 1, sizeof(int64_t));
    viewed = veil_calloc(g->n_values + 1, sizeof(bool));
    sole_reader = veil_allocarray(g->n_values + 1, sizeof(int32_t));
    n_reads = veil_calloc(g->n_values + 1, sizeof(uint32_t));
    wreads = veil_calloc(g->n_values + 1, sizeof(uint32_t));
    step_of = veil_allocarray(g->n_nodes + 1, sizeof(int32_t));
    if (last_read == NULL || viewed == NULL || sole_reader == NULL || n_reads == NULL ||
        wreads == NULL || step_of == NULL ||
        veil__engine_half_readers(g, &half_readers) != VEIL_OK) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for a plan");
        goto out;
    }
    for (size_t v = 0; v < g->n_values; v++)
        last_read[v] = g->values[v].is_output ? INT64_MAX : -1;
    for (size_t i = 0; i < g->n_nodes; i++)
        step_of[i] = -1;
    for (size_t s = 0; s < g->n_order; s++) {
        const struct veil__engine_node *n = &g->nodes[g->order[s]];
        bool view = veil__engine_op_get(n->op)->view;
        step_of[g->order[s]] = (int32_t)s;
        /*
         * Shape and Size read only shapes, all known while planning (they fold, below): they
         * do not count as readers of the data, so a value that only they read besides one
         * node still has that node as its sole reader (the scores of attention whose mask is
         * expanded to their shape), and its storage need not outlive its data's last reader.
         */
        if (strcmp(n->op_type, "Shape") == 0 || strcmp(n->op_type, "Size") == 0)
            continue;
        for (size_t k = 0; k <= n->n_in; k++) {
            int32_t v = k < n->n_in ? n->in[k] : n->add_in;
            if (v < 0)
                continue;
            if (last_read[v] < (int64_t)s)
                last_read[v] = (int64_t)s;
            if (view && k == 0)
                viewed[v] = true;
            n_reads[v]++;
            sole_reader[v] = g->order[s];
        }
    }
    for (size_t v = 0; v < g->n_values; v++)
        if (n_reads[v] != 1 || g->values[v].is_output)
            sole_reader[v] = -1;
    /* Constants whose plain copy was dropped get it back while this plan is built. */
    if ((rc = veil__engine_wcache_rehydrate(m, eb)) != VEIL_OK)
        goto out;
    for (size_t v = 0; v < g->n_values; v++) {
        const struct veil__engine_value *gv = &g->values[v];
        struct veil__engine_pval *pv = &p->vals[v];
        pv->root = (int32_t)v;
        pv->first = pv->last = -1;
        if (gv->is_const) {
            pv->t = gv->c;
            pv->nbytes = gv->nbytes;
            pv->ldt = gv->half_dt != VEIL_DT_UNDEFINED ? gv->half_dt : gv->c.dt;
            pv->half_exact = true; /* widened from 16 bits */
        }
    }
    for (size_t i = 0; i < g->n_inputs; i++) {
        int32_t v = g->inputs[i];
        struct veil__engine_pval *pv = &p->vals[v];
        const struct veil_tensor *t = &inputs[i];
        bool half = veil__engine_dt_is_half(t->dtype);
        /* A float16 or bfloat16 input is widened into float storage when a run starts. */
        pv->ldt = t->dtype;
        pv->half_exact = true;
        pv->t.dt = half ? VEIL_DT_FLOAT : t->dtype;
        pv->t.rank = t->rank;
        memcpy(pv->t.dims, t->dims, sizeof(pv->t.dims));
        pv->t.numel = veil__engine_numel(t->dims, t->rank);
        pv->nbytes = (size_t)pv->t.numel * veil_dtype_size(pv->t.dt);
        if (input_keyed(&g->values[v], t)) {
            /* Its values are part of the key: a constant for this plan. */
            pv->owned = veil_aligned_alloc(64, pv->nbytes + 64);
            if (pv->owned == NULL) {
                rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for a plan");
                goto out;
            }
            if (half)
                veil_half_widen(t->dtype, t->data, pv->owned, (size_t)pv->t.numel);
            else if (pv->nbytes > 0)
                memcpy(pv->owned, t->data, pv->nbytes);
            pv->t.data = pv->owned;
        } else {
            pv->runtime = true;
            pv->first = 0;
            pv->last = 0;
        }
    }
    p->n_steps = g->n_order;
    for (size_t s = 0; s < g->n_order; s++) {
        struct veil__engine_step *st = &p->steps[s];
        const struct veil__engine_node *n = &g->nodes[g->order[s]];
        const struct veil__engine_op_def *op = veil__engine_op_get(n->op);
        struct veil__engine_ictx ic;
        memset(&ic, 0, sizeof(ic));
        st->node = g->order[s];
        st->view = op->view;
        /*
         * A node of a branch not taken is never planned (its shapes may not even hold); one of
         * a branch chosen at run time is planned, and if that fails the branch is marked failed
         * (an error only for runs that take it) instead of the plan.
         */
        enum activity act = node_activity(p, g, st->node);
        if (act == ACT_NO)
            continue;
        st->guarded = act == ACT_RUN;
        eb = act == ACT_RUN ? &branch_eb : caller_eb;
        branch_eb.msg[0] = '\0';
        if (op->plan_step != NULL) {
            rc = op->plan_step(p, g, &k_planner, m->max_act, st, (int64_t)s, eb);
            if (rc != VEIL_OK) {
                veil_err_prefix(eb, rc, "node '%s' (%s)", n->name, op->name);
                goto node_fail;
            }
            continue;
        }
        ic.g = g;
        ic.n = n;
        ic.kp = &st->kp;
        ic.opset = g->opset;
        ic.eb = eb;
        ic.vals = p->vals;
        ic.wcache = &m->wcache;
        ic.wreads = wreads;
        ic.blockable = blockable;
        ic.last_read = last_read;
        ic.viewed = viewed;
        ic.step = (int64_t)s;
        ic.node = g->order[s];
        ic.steps = p->steps;
        ic.step_of = step_of;
        ic.sole_reader = sole_reader;
        ic.threads = m->threads;
        ic.attention_isa = m->attention_isa;
        /* Room for the values a fused kernel reads besides the node's own (xval). */
        if (n->n_in + 4 > VEIL__ENGINE_MAX_NODE_IN || n->n_out > VEIL__ENGINE_MAX_NODE_OUT) {
            rc = veil_errf(eb, VEIL_E_LIMIT, "node '%s' has too many inputs or outputs", n->name);
            goto node_fail;
        }
        ic.n_in = n->n_in;
        ic.n_out = n->n_out;
        /*
         * Every operator writes its first output (the recurrent ones: at least one of theirs);
         * all but Constant read their first input.
         */
        bool some_out = false;
        for (size_t k = 0; k < n->n_out; k++)
            some_out = some_out || n->out[k] >= 0;
        if (n->n_out < 1 || (op->outputs_optional ? !some_out : n->out[0] < 0) ||
            (strcmp(op->name, "Constant") != 0 && (n->n_in < 1 || n->in[0] < 0))) {
            rc = veil_errf(eb, VEIL_E_INVALID, "node '%s' (%s) lacks its first input or output",
                           n->name, op->name);
            goto node_fail;
        }
        bool all_const = true;
        for (size_t k = 0; k < n->n_in; k++) {
            fill_tv(p, n->in[k], &ic.in[k]);
            if (n->in[k] >= 0 && ic.in[k].data == NULL)
                all_const = false;
            if (k < 32 && ((op->shape_inputs >> k) & 1u)) {
                if (n->in[k] >= 0 && ic.in[k].data == NULL) {
                    rc = veil_errf(eb, VEIL_E_UNSUPPORTED,
                                   "node '%s' (%s): input %zu decides "
                                   "an output shape but is only known at run time",
                                   n->name, op->name, k);
                    goto node_fail;
                }
            }
        }
        if (n->add_in >= 0) {
            ic.add = p->vals[n->add_in].t;
            if (ic.add.data == NULL)
                all_const = false;
        }
        rc = op->infer(&ic);
        if (rc != VEIL_OK) {
            veil_err_prefix(eb, rc, "node '%s' (%s)", n->name, op->name);
            goto node_fail;
        }
        size_t out_bytes = 0;
        for (size_t k = 0; k < n->n_out; k++) {
            int32_t v = n->out[k];
            if (v < 0)
                continue;
            struct veil__engine_pval *pv = &p->vals[v];
            struct veil__engine_tv *t = &ic.out[k];
            uint64_t numel = 1, nbytes;
            size_t esz = veil_dtype_size(t->dt);
            if (esz == 0 || t->rank > VEIL__ENGINE_RANK) {
                rc = veil_errf(eb, VEIL_E_INVALID,
                               "node '%s' (%s): output %zu has an invalid "
                               "type",
                               n->name, op->name, k);
                goto node_fail;
            }
            for (size_t d = 0; d < t->rank; d++) {
                if (t->dims[d] < 0 || __builtin_mul_overflow(numel, (uint64_t)t->dims[d], &numel)) {
                    rc = veil_errf(eb, VEIL_E_LIMIT,
                                   "node '%s' (%s): output %zu has an invalid "
                                   "or huge shape",
                                   n->name, op->name, k);
                    goto node_fail;
                }
            }
            if (__builtin_mul_overflow(numel, (uint64_t)esz, &nbytes) || nbytes > m->max_act) {
                rc = veil_errf(eb, VEIL_E_LIMIT,
                               "node '%s' (%s): output %zu needs more than "
                               "%llu bytes",
                               n->name, op->name, k, (unsigned long long)m->max_act);
                goto node_fail;
            }
            t->numel = numel;
            t->data = NULL;
            pv->t = *t;
            pv->ldt = value_dtype(g, p->vals, n, t->dt);
            pv->nbytes = (size_t)nbytes;
            out_bytes += (size_t)nbytes;
        }
        veil__engine_half_plan_node(g, n, op->view, p->vals, half_readers, &st->kp);
        if (st->absorbed_by > 0) {
            /* An earlier fused step does this node's work: only what it writes has storage. */
            const struct veil__engine_step *fs = &p->steps[st->absorbed_by - 1];
            for (size_t k = 0; k < n->n_out; k++)
                for (size_t x = 0; n->out[k] >= 0 && x < fs->n_xval; x++)
                    if (fs->xval[x] == n->out[k]) {
                        p->vals[n->out[k]].runtime = true;
                        p->vals[n->out[k]].first = st->absorbed_by - 1;
                        p->vals[n->out[k]].last = st->absorbed_by - 1;
                    }
            continue;
        }
        bool view_const = op->view && n->n_in > 0 && n->in[0] >= 0 && ic.in[0].data != NULL;
        /* Shape and Size read only shapes, which are all known here. */
        if (strcmp(op->name, "Shape") == 0 || strcmp(op->name, "Size") == 0)
            all_const = true;
        bool fold = all_const && op->exec != NULL && !op->no_fold && n->n_post == 0 &&
                    n->add_in < 0 && out_bytes <= VEIL__ENGINE_FOLD_MAX && !view_const;
        if (view_const) {
            /* A view of a constant stays a constant, without a copy. */
            bool rest_const = true;
            for (size_t k = 1; k < n->n_in; k++)
                if (n->in[k] >= 0 && ic.in[k].data == NULL)
                    rest_const = false;
            if (rest_const) {
                struct veil__engine_pval *pv = &p->vals[n->out[0]];
                pv->t.data = ic.in[0].data;
                /* Only a folded input gets here unrounded (see veil__engine_half_plan_node). */
                if (pv->round_half)
                    round_half(pv, pv->t.data);
                continue;
            }
        }
        if (fold) {
            struct veil__engine_kctx kc;
            memset(&kc, 0, sizeof(kc));
            kc.g = g;
            kc.n = n;
            kc.st = st;
            kc.n_in = n->n_in;
            kc.n_out = n->n_out;
            kc.opset = g->opset;
            kc.eb = eb;
            memcpy(kc.in, ic.in, sizeof(kc.in));
            for (size_t k = 0; k < n->n_out; k++) {
                int32_t v = n->out[k];
                if (v < 0)
                    continue;
                struct veil__engine_pval *pv = &p->vals[v];
                pv->owned = veil_aligned_alloc(64, pv->nbytes + 64);
                if (pv->owned == NULL) {
                    rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for folded constants");
                    goto node_fail;
                }
                memset(pv->owned, 0, pv->nbytes + 64);
                kc.out[k] = pv->t;
                kc.out[k].data = pv->owned;
            }
            rc = op->exec(&kc, &st->kp);
            if (rc != VEIL_OK) {
                veil_err_prefix(eb, rc, "node '%s' (%s)", n->name, op->name);
                goto node_fail;
            }
            for (size_t k = 0; k < n->n_out; k++)
                if (n->out[k] >= 0) {
                    struct veil__engine_pval *pv = &p->vals[n->out[k]];
                    pv->t.data = pv->owned;
                    if (pv->round_half)
                        round_half(pv, pv->owned);
                }
            continue;
        }
        st->runtime = true;
        for (size_t k = 0; k < n->n_out; k++) {
            int32_t v = n->out[k];
            if (v < 0)
                continue;
            struct veil__engine_pval *pv = &p->vals[v];
            pv->runtime = true;
            pv->first = pv->last = (int64_t)s;
            if (k == 0 && op->view && n->in[0] >= 0 && p->vals[n->in[0]].runtime) {
                pv->alias = true;
                pv->root = n->in[0];
            }
        }
        if (op->prepare != NULL) {
            for (size_t k = 0; k < n->n_out; k++)
                ic.out[k] = n->out[k] >= 0 ? p->vals[n->out[k]].t : ic.out[k];
            rc = op->prepare(&ic, m->deng, st);
            if (rc != VEIL_OK) {
                veil_err_prefix(eb, rc, "node '%s' (%s)", n->name, op->name);
                goto node_fail;
            }
        }
        continue;
    node_fail:
        if (act != ACT_RUN || rc == VEIL_E_NOMEM || rc == VEIL_E_INTERNAL) {
            eb = caller_eb;
            if (act == ACT_RUN)
                veil_errf(eb, rc, "%s", branch_eb.msg);
            goto out;
        }
        st->runtime = false;
        if ((rc = record_fail(p, n->guard, n->branch, branch_eb.msg)) != VEIL_OK) {
            eb = caller_eb;
            rc = veil_errf(eb, rc, "no memory for a plan");
            goto out;
        }
    }
    eb = caller_eb;
    /* Lifetimes: each read extends the storage root's life to the reading step. */
    for (size_t s = 0; s < p->n_steps; s++) {
        const struct veil__engine_step *st = &p->steps[s];
        if (!st->runtime)
            continue;
        const struct veil__engine_node *n = &g->nodes[st->node];
        for (size_t k = 0; k <= n->n_in; k++) {
            int32_t v = k < n->n_in ? n->in[k] : n->add_in;
            if (v < 0 || !p->vals[v].runtime)
                continue;
            int32_t r = root_of(p, v);
            if (p->vals[r].last < (int64_t)s)
                p->vals[r].last = (int64_t)s;
        }
        for (size_t k = 0; k < n->n_out + st->n_xval; k++) {
            int32_t v = k < n->n_out ? n->out[k] : st->xval[k - n->n_out];
            if (v < 0 || !p->vals[v].runtime)
                continue;
            int32_t r = root_of(p, v);
            if (p->vals[r].last < (int64_t)s)
                p->vals[r].last = (int64_t)s;
        }
    }
    for (size_t i = 0; i < g->n_outputs; i++) {
        int32_t v = g->outputs[i];
        if (p->vals[v].runtime)
            p->vals[root_of(p, v)].last = (int64_t)p->n_steps + 1;
    }
    for (size_t i = 0; i < g->n_inputs; i++) {
        int32_t v = g->inputs[i];
        if (p->vals[v].runtime)
            p->vals[v].first = -1;
    }
    /* Steps writing values they round to 16 bits after their kernel (ops/half.c). */
    for (size_t s = 0; s < p->n_steps; s++) {
        struct veil__engine_step *st = &p->steps[s];
        const struct veil__engine_node *n = &g->nodes[st->node];
        for (size_t k = 0; st->runtime && k < n->n_out + st->n_xval; k++) {
            int32_t v = k < n->n_out ? n->out[k] : st->xval[k - n->n_out];
            if (v >= 0 && p->vals[v].runtime && p->vals[v].round_half)
                st->half_out = true;
        }
    }
    if ((rc = plan_memory(p, m->max_act, eb)) != VEIL_OK)
        goto out;
    /* Exec argument bases for oneDNN steps. */
    size_t ex = 0;
    for (size_t s = 0; s < p->n_steps; s++) {
        p->steps[s].ex_base = ex;
        if (p->steps[s].runtime && p->steps[s].ks != NULL)
            ex += p->steps[s].ks->n_ex;
    }
    p->n_ex = ex;
    veil__engine_wcache_drop(m, wreads, n_reads);
    *out = p;
    p = NULL;
    rc = VEIL_OK;
out:
    veil_free(wreads);
    veil_free(blockable);
    veil_free(last_read);
    veil_free(viewed);
    veil_free(half_readers);
    veil_free(sole_reader);
    veil_free(n_reads);
    veil_free(step_of);
    veil__engine_plan_free(p);
    return rc;
}

static veil_err scratch_new(struct veil_engine_model *m, struct veil__engine_plan *p,
                            struct veil__engine_scratch **out, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil__engine_scratch *sc = veil_calloc(1, sizeof(*sc));
    size_t n_args = 0;

    *out = NULL;
    if (sc == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for run scratch");
    sc->arena = veil__engine_big_alloc(p->arena_bytes);
    if (sc->arena == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for %zu bytes of activations", p->arena_bytes);
        goto out;
    }
    sc->step_region = sc->arena + p->step_region_off;
    rc = veil__engine_dnnl_err(dnnl_stream_create(&sc->stream, m->deng, dnnl_stream_default_flags),
                               "stream creation", eb);
    if (rc != VEIL_OK)
        goto out;
    for (size_t s = 0; s < p->n_steps; s++)
        if (p->steps[s].runtime && p->steps[s].ks != NULL)
            for (size_t e = 0; e < p->steps[s].ks->n_ex; e++)
                n_args += p->steps[s].ks->ex[e].n_args;
    sc->mems = veil_calloc(n_args + 1, sizeof(*sc->mems));
    sc->args = veil_calloc(n_args + 1, sizeof(*sc->args));
    sc->args_base = veil_calloc(p->n_ex + 1, sizeof(*sc->args_base));
    if (m->prof_ns != NULL)
        sc->step_ns = veil_calloc(p->n_steps + 1, sizeof(*sc->step_ns));
    if (sc->mems == NULL || sc->args == NULL || sc->args_base == NULL ||
        (m->prof_ns != NULL && sc->step_ns == NULL)) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for run scratch");
        goto out;
    }
    size_t a = 0;
    for (size_t s = 0; s < p->n_steps; s++) {
        const struct veil__engine_step *st = &p->steps[s];
        if (!st->runtime || st->ks == NULL)
            continue;
        for (size_t e = 0; e < st->ks->n_ex; e++) {
            const struct veil__engine_dnnl_exec *dx = &st->ks->ex[e];
            sc->args_base[st->ex_base + e] = a;
            for (size_t k = 0; k < dx->n_args; k++) {
                const struct veil__engine_dnnl_arg *ar = &dx->args[k];
                void *addr;
                if (ar->value >= 0)
                    addr = value_addr(p, sc, ar->value);
                else if (ar->ptr != NULL)
                    addr = (void *)(uintptr_t)ar->ptr;
                else
                    addr = sc->step_region + ar->off;
                rc = veil__engine_dnnl_err(dnnl_memory_create(&sc->mems[a], &ar->md, m->deng, addr),
                                           "memory creation", eb);
                if (rc != VEIL_OK)
                    goto out;
                sc->n_mems = a + 1;
                sc->args[a].arg = ar->arg;
                sc->args[a].memory = sc->mems[a];
                a++;
            }
        }
    }
    *out = sc;
    sc = NULL;
    rc = VEIL_OK;
out:
    scratch_free(sc);
    return rc;
}

/* A run-time If condition's value (the plan's constant when it folded). */
static bool run_cond(const struct veil__engine_plan *p, const struct veil__engine_scratch *sc,
                     int32_t v)
{
    return veil__engine_cond_true(&p->vals[v].t, value_addr(p, sc, v));
}

/* Whether a guarded step runs in this run: every If up its chain takes its branch. */
static bool guard_open(const struct veil__engine_plan *p, const struct veil__engine_scratch *sc,
                       const struct veil__engine_graph *g, int32_t node)
{
    const struct veil__engine_node *n = &g->nodes[node];
    int32_t gi = n->guard;
    uint8_t br = n->branch;
    for (; gi >= 0; br = g->nodes[gi].branch, gi = g->nodes[gi].guard)
        if (veil__engine_plan_branch_failed(p, gi, br) != NULL ||
            run_cond(p, sc, g->nodes[gi].in[0]) != (br == 0))
            return false;
    return true;
}

/* Runs one step's kernel on a run's scratch. */
static veil_err exec_kernel(struct veil_engine_model *m, struct veil__engine_plan *p,
                            struct veil__engine_scratch *sc, const struct veil__engine_step *st,
                            struct veil_errbuf *eb)
{
    const struct veil__engine_graph *g = &m->g;
    const struct veil__engine_node *n = &g->nodes[st->node];
    veil_err rc;

    const struct veil__engine_op_def *cop = veil__engine_op_get(n->op);
    if (cop->run_step != NULL)
        return cop->run_step(p, sc, g, &k_planner, st, eb);
    /* A fused kernel (xexec) or a self-running one (self_exec) runs its primitives itself. */
    if (st->ks != NULL && st->xexec == NULL && !st->ks->self_exec) {
        for (size_t e = 0; e < st->ks->n_ex; e++) {
            const struct veil__engine_dnnl_exec *dx = &st->ks->ex[e];
            rc = veil__engine_dnnl_err(
                dnnl_primitive_execute(dx->prim, sc->stream, (int)dx->n_args,
                                       &sc->args[sc->args_base[st->ex_base + e]]),
                "execution", eb);
            if (rc != VEIL_OK)
                return rc;
        }
        return veil__engine_dnnl_err(dnnl_stream_wait(sc->stream), "stream wait", eb);
    }
    const struct veil__engine_op_def *op = veil__engine_op_get(n->op);
    struct veil__engine_kctx kc;
    kc.g = g;
    kc.n = n;
    kc.st = st;
    kc.n_in = n->n_in;
    kc.n_out = n->n_out;
    kc.sc = sc;
    kc.opset = g->opset;
    kc.eb = eb;
    for (size_t k = 0; k < n->n_in; k++) {
        fill_tv(p, n->in[k], &kc.in[k]);
        if (n->in[k] >= 0)
            kc.in[k].data = value_addr(p, sc, n->in[k]);
    }
    for (size_t k = 0; k < n->n_out; k++) {
        fill_tv(p, n->out[k], &kc.out[k]);
        if (n->out[k] >= 0)
            kc.out[k].data = value_addr(p, sc, n->out[k]);
    }
    if (n->add_in >= 0) {
        fill_tv(p, n->add_in, &kc.add);
        kc.add.data = value_addr(p, sc, n->add_in);
    }
    if (st->xexec != NULL) {
        for (size_t k = 0; k < st->n_xval; k++) {
            struct veil__engine_tv *t = &kc.in[n->n_in + k];
            memset(t, 0, sizeof(*t));
            if (st->xval[k] >= 0) {
                fill_tv(p, st->xval[k], t);
                t->data = value_addr(p, sc, st->xval[k]);
            }
        }
        return st->xexec(&kc, &st->kp);
    }
    if (op->view) {
        /* Same storage as the input; nothing to compute. */
        if (kc.out[0].data != kc.in[0].data && kc.out[0].numel > 0)
            memmove(kc.out[0].data, kc.in[0].data, p->vals[n->out[0]].nbytes);
        return VEIL_OK;
    }
    rc = op->exec(&kc, &st->kp);
    if (rc != VEIL_OK)
        veil_err_prefix(eb, rc, "node '%s' (%s)", n->name, op->name);
    return rc;
}

/*
 * Runs one step: its kernel, then the rounding of what it wrote that the plan rounds to 16
 * bits (its outputs, and the values of absorbed nodes a fused kernel wrote).
 */
static veil_err exec_step(struct veil_engine_model *m, struct veil__engine_plan *p,
                          struct veil__engine_scratch *sc, const struct veil__engine_step *st,
                          struct veil_errbuf *eb)
{
    veil_err rc = exec_kernel(m, p, sc, st, eb);
    if (rc != VEIL_OK || !st->half_out)
        return rc;
    const struct veil__engine_node *n = &m->g.nodes[st->node];
    for (size_t k = 0; k < n->n_out + st->n_xval; k++) {
        int32_t v = k < n->n_out ? n->out[k] : st->xval[k - n->n_out];
        if (v >= 0 && p->vals[v].round_half)
            round_half(&p->vals[v], value_addr(p, sc, v));
    }
    return VEIL_OK;
}

/* Adds a completed run's step times to the model's profile. */
static void profile_add(struct veil_engine_model *m, const struct veil__engine_plan *p,
                        struct veil__engine_scratch *sc, uint64_t run_ns)
{
    pthread_mutex_lock(&m->mu);
    for (size_t s = 0; s < p->n_steps; s++) {
        if (!p->steps[s].runtime)
            continue;
        m->prof_ns[p->steps[s].node] += sc->step_ns[s];
        m->prof_ran[p->steps[s].node] |=
            (uint8_t)(VEIL__ENGINE_PROF_RAN |
                      (p->steps[s].xexec != NULL ? VEIL__ENGINE_PROF_ATTENTION : 0));
        sc->step_ns[s] = 0;
    }
    m->prof_runs++;
    m->prof_run_ns += run_ns;
    pthread_mutex_unlock(&m->mu);
}

veil_err veil__engine_plan_exec(struct veil_engine_model *m, struct veil__engine_plan *p,
                                const struct veil_tensor *inputs, struct veil_tensor *outputs,
                                struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil__engine_scratch *sc = NULL;
    const struct veil__engine_graph *g = &m->g;
    size_t n_done = 0;
    uint64_t run_t0 = 0;

    pthread_mutex_lock(&p->mu);
    sc = p->free_scratch;
    if (sc != NULL)
        p->free_scratch = sc->next;
    pthread_mutex_unlock(&p->mu);
    if (sc == NULL && (rc = scratch_new(m, p, &sc, eb)) != VEIL_OK)
        return rc;
    if (sc->step_ns != NULL)
        run_t0 = veil_time_mono_ns();
    omp_set_num_threads((int)m->threads);
    for (size_t i = 0; i < g->n_inputs; i++) {
        int32_t v = g->inputs[i];
        if (!p->vals[v].runtime || p->vals[v].nbytes == 0)
            continue;
        if (veil__engine_dt_is_half(inputs[i].dtype))
            veil__engine_half_widen_par(inputs[i].dtype, inputs[i].data,
                                        (float *)(void *)(sc->arena + p->vals[v].off),
                                        (size_t)p->vals[v].t.numel);
        else
            memcpy(sc->arena + p->vals[v].off, inputs[i].data, p->vals[v].nbytes);
    }
    for (size_t s = 0; s < p->n_steps; s++) {
        const struct veil__engine_step *st = &p->steps[s];
        if (!st->runtime || (st->guarded && !guard_open(p, sc, g, st->node)))
            continue;
        if (sc->step_ns == NULL) {
            rc = exec_step(m, p, sc, st, eb);
        } else {
            uint64_t t0 = veil_time_mono_ns();
            rc = exec_step(m, p, sc, st, eb);
            sc->step_ns[s] += veil_time_mono_ns() - t0;
        }
        if (rc != VEIL_OK)
            goto out;
    }
    for (n_done = 0; n_done < g->n_outputs; n_done++) {
        int32_t v = g->outputs[n_done];
        const struct veil__engine_pval *pv = &p->vals[v];
        struct veil_tensor *o = &outputs[n_done];
        o->dtype = output_dtype(m, p, n_done);
        o->rank = pv->t.rank;
        memset(o->dims, 0, sizeof(o->dims));
        memcpy(o->dims, pv->t.dims, pv->t.rank * sizeof(int64_t));
        o->nbytes = (size_t)pv->t.numel * veil_dtype_size(o->dtype);
        o->data = veil_aligned_alloc(64, o->nbytes > 0 ? o->nbytes : 64);
        if (o->data == NULL) {
            rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for output '%s'", g->values[v].name);
            goto out;
        }
        const void *src = value_addr(p, sc, v);
        if (o->dtype != pv->t.dt)
            veil__engine_half_narrow_par(o->dtype, src, o->data, (size_t)pv->t.numel);
        else if (pv->nbytes > 0)
            memcpy(o->data, src, pv->nbytes);
    }
    if (sc->step_ns != NULL)
        profile_add(m, p, sc, veil_time_mono_ns() - run_t0);
    rc = VEIL_OK;
out:
    if (rc != VEIL_OK)
        for (size_t i = 0; i < n_done && i < g->n_outputs; i++)
            veil_tensor_release(&outputs[i]);
    if (rc != VEIL_OK && sc->step_ns != NULL)
        memset(sc->step_ns, 0, p->n_steps * sizeof(*sc->step_ns));
    pthread_mutex_lock(&p->mu);
    sc->next = p->free_scratch;
    p->free_scratch = sc;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* ---- A model's plan cache ---- */

veil_err veil__engine_model_get_plan(struct veil_engine_model *m, const struct veil_tensor *inputs,
                                     struct veil__engine_plan **out, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_OK;
    pthread_mutex_lock(&m->mu);
    m->use_clock++;
    for (size_t i = 0; i < m->n_plans; i++)
        if (veil__engine_plan_matches(m, m->plans[i], inputs)) {
            m->plans[i]->last_use = m->use_clock;
            m->plans[i]->refs++;
            *out = m->plans[i];
            goto out;
        }
    struct veil__engine_plan *p = NULL;
    /* Built under the lock: plans are rare (one per signature). */
    rc = veil__engine_plan_build(m, inputs, &p, eb);
    if (rc != VEIL_OK)
        goto out;
    p->last_use = m->use_clock;
    p->refs = 1;
    if (m->n_plans < m->max_plans) {
        p->cached = true;
        m->plans[m->n_plans++] = p;
    } else {
        /* Evict the least recently used idle plan; if every plan is busy, do not cache. */
        size_t lru = SIZE_MAX;
        for (size_t i = 0; i < m->n_plans; i++)
            if (m->plans[i]->refs == 0 &&
                (lru == SIZE_MAX || m->plans[i]->last_use < m->plans[lru]->last_use))
                lru = i;
        if (lru != SIZE_MAX) {
            veil__engine_plan_free(m->plans[lru]);
            m->plans[lru] = p;
            p->cached = true;
        }
    }
    *out = p;
out:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

void veil__engine_model_put_plan(struct veil_engine_model *m, struct veil__engine_plan *p)
{
    pthread_mutex_lock(&m->mu);
    p->refs--;
    bool dead = !p->cached && p->refs == 0;
    pthread_mutex_unlock(&m->mu);
    if (dead)
        veil__engine_plan_free(p);
}

veil_err veil__engine_model_run_here(struct veil_engine_model *m, const struct veil_tensor *inputs,
                                     struct veil_tensor *outputs, struct veil_errbuf *eb)
{
    struct veil__engine_plan *p = NULL;
    veil_err rc = veil__engine_model_get_plan(m, inputs, &p, eb);
    if (rc != VEIL_OK)
        return rc;
    rc = veil__engine_plan_exec(m, p, inputs, outputs, eb);
    veil__engine_model_put_plan(m, p);
    return rc;
}

/* The plan cache as control-flow kernels reach it (through their hooks, never by name). */
static const struct veil__engine_planner k_planner = {
    .get_plan = veil__engine_model_get_plan,
    .put_plan = veil__engine_model_put_plan,
    .run_here = veil__engine_model_run_here,
};
