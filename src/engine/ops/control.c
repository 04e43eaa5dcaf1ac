/*
 * Control-flow operators, planned and run through their registry rows' plan_step and run_step
 * (exec/plan.c calls them). If: its branches are lifted into the main graph when the model
 * loads (ir/subgraph.c); the planner skips the nodes of a branch not taken (per plan, or per
 * run for a condition known only then), and the If itself picks the taken branch's outputs.
 *
 * Loop and Scan run their body, a model of its own (built at load, engine.c), once per
 * iteration through its own plan cache, so a body whose shapes depend on the iteration still
 * runs. The outer plan is static: it probes the body once at the first iteration's signature
 * for the output types and shapes; loop-carried values must keep their shape, and scan outputs
 * (stacked per iteration) need the trip count when planning. Each run checks that every
 * iteration gives what the probe said. Iterations are capped (VEIL__ENGINE_LOOP_MAX_ITERS).
 */
#include "../engine_int.h"

#include <stdio.h>
#include <string.h>

/* ---- If ---- */

static bool same_shape(const struct veil__engine_tv *a, const struct veil__engine_tv *b)
{
    return a->dt == b->dt && a->rank == b->rank &&
           memcmp(a->dims, b->dims, a->rank * sizeof(int64_t)) == 0;
}

/*
 * Plans an If: with its condition known, its outputs are the taken branch's values (shared
 * storage, or the constants themselves) and the step does nothing at run time; otherwise both
 * branches must give the same types and shapes, and the step copies the chosen one's outputs.
 */
veil_err veil__engine_if_plan(struct veil__engine_plan *p, const struct veil__engine_graph *g,
                              const struct veil__engine_planner *pl, uint64_t max_act,
                              struct veil__engine_step *st, int64_t s, struct veil_errbuf *eb)
{
    /* The outputs are the branches' values, already checked against the cap; no body runs. */
    (void)pl;
    (void)max_act;
    const struct veil__engine_node *n = &g->nodes[st->node];
    size_t n_out = n->n_out;
    if (n->n_in != 1 + 2 * n_out || n->in[0] < 0)
        return veil_errf(eb, VEIL_E_INVALID, "If node '%s' has %zu inputs for %zu outputs", n->name,
                         n->n_in, n_out);
    const struct veil__engine_pval *c = &p->vals[n->in[0]];
    if (c->t.numel != 1 || !(veil__engine_dt_is_numeric(c->t.dt) || c->t.dt == VEIL_DT_BOOL))
        return veil_errf(eb, VEIL_E_INVALID,
                         "If node '%s': the condition has %llu elements of %s; If takes one "
                         "boolean",
                         n->name, (unsigned long long)c->t.numel, veil_dtype_name(c->t.dt));
    const struct veil__engine_branch_fail *fail[2] = {
        veil__engine_plan_branch_failed(p, st->node, 0),
        veil__engine_plan_branch_failed(p, st->node, 1)};
    bool known = !c->runtime && c->t.data != NULL;
    if (known) {
        uint8_t b = veil__engine_cond_true(&c->t, c->t.data) ? 0 : 1;
        if (fail[b] != NULL)
            return veil_errf(eb, VEIL_E_INVALID, "its %s branch: %s", b == 0 ? "then" : "else",
                             fail[b]->msg);
        for (size_t k = 0; k < n_out; k++) {
            int32_t src = n->in[1 + b * n_out + k], v = n->out[k];
            if (v < 0)
                continue;
            struct veil__engine_pval *pv = &p->vals[v];
            pv->t = p->vals[src].t;
            pv->nbytes = p->vals[src].nbytes;
            if (p->vals[src].runtime) {
                pv->runtime = true;
                pv->alias = true;
                pv->root = src;
                pv->first = pv->last = s;
            }
        }
        return VEIL_OK;
    }
    if (fail[0] != NULL && fail[1] != NULL)
        return veil_errf(eb, VEIL_E_INVALID, "neither branch can run: then: %s; else: %s",
                         fail[0]->msg, fail[1]->msg);
    uint8_t ref = fail[0] != NULL ? 1 : 0;
    for (size_t k = 0; k < n_out; k++) {
        const struct veil__engine_pval *a = &p->vals[n->in[1 + ref * n_out + k]];
        if (fail[1 - ref] == NULL) {
            const struct veil__engine_pval *b = &p->vals[n->in[1 + (1 - ref) * n_out + k]];
            if (!same_shape(&a->t, &b->t))
                return veil_errf(eb, VEIL_E_UNSUPPORTED,
                                 "output %zu is %s of rank %zu in one branch and %s of rank %zu "
                                 "in the other, or their shapes differ, while the condition is "
                                 "known only at run time",
                                 k, veil_dtype_name(a->t.dt), a->t.rank, veil_dtype_name(b->t.dt),
                                 b->t.rank);
        }
        int32_t v = n->out[k];
        if (v < 0)
            continue;
        struct veil__engine_pval *pv = &p->vals[v];
        pv->t = a->t;
        pv->t.data = NULL;
        pv->nbytes = a->nbytes;
        pv->runtime = true;
        pv->first = pv->last = s;
    }
    st->runtime = true;
    return VEIL_OK;
}

/* An If whose condition is a run-time value: copies the taken branch's outputs. */
veil_err veil__engine_if_run(const struct veil__engine_plan *p,
                             const struct veil__engine_scratch *sc,
                             const struct veil__engine_graph *g,
                             const struct veil__engine_planner *pl,
                             const struct veil__engine_step *st, struct veil_errbuf *eb)
{
    (void)pl;
    const struct veil__engine_node *n = &g->nodes[st->node];
    uint8_t b =
        veil__engine_cond_true(&p->vals[n->in[0]].t, veil__engine_plan_addr(p, sc, n->in[0])) ? 0
                                                                                              : 1;
    const struct veil__engine_branch_fail *f = veil__engine_plan_branch_failed(p, st->node, b);
    if (f != NULL)
        return veil_errf(eb, VEIL_E_INVALID, "node '%s' (If): its %s branch cannot run: %s",
                         n->name, b == 0 ? "then" : "else", f->msg);
    for (size_t k = 0; k < n->n_out; k++) {
        int32_t v = n->out[k], src = n->in[1 + b * n->n_out + k];
        if (v < 0 || p->vals[v].nbytes == 0)
            continue;
        void *dst = veil__engine_plan_addr(p, sc, v);
        const void *from = veil__engine_plan_addr(p, sc, src);
        if (dst != from)
            memmove(dst, from, p->vals[v].nbytes);
    }
    return VEIL_OK;
}

/* ---- Loop and Scan ---- */

#define MAX_IO VEIL__ENGINE_BODY_MAX_IO

/* What a Loop's or Scan's plan decided, kept in its step (kp.ptr). */
struct body_state {
    bool scan;        /* Scan, else Loop */
    size_t n_state;   /* loop-carried values (Loop) or states (Scan) */
    size_t n_scan_in; /* Scan: scanned inputs */
    size_t n_scan;    /* scan outputs */
    int64_t trip;     /* iterations, when known while planning (-1 otherwise) */
    struct veil__engine_tv state[MAX_IO];
    size_t state_off[MAX_IO];            /* in the step scratch */
    struct veil__engine_tv elem[MAX_IO]; /* one iteration's scan output */
    size_t in_axis[MAX_IO], out_axis[MAX_IO];
    bool in_rev[MAX_IO], out_rev[MAX_IO];
    struct veil__engine_tv slice[MAX_IO]; /* Scan: one iteration's slice of each scanned input */
    size_t slice_off[MAX_IO];
};

static size_t tv_bytes(const struct veil__engine_tv *t)
{
    return (size_t)t->numel * veil_dtype_size(t->dt);
}

static void tv_set(struct veil__engine_tv *t, enum veil_dtype dt, size_t rank, const int64_t *dims)
{
    memset(t, 0, sizeof(*t));
    t->dt = dt;
    t->rank = rank;
    memcpy(t->dims, dims, rank * sizeof(int64_t));
    t->numel = veil__engine_numel(dims, rank);
}

static bool tv_same(const struct veil__engine_tv *a, const struct veil__engine_tv *b)
{
    return a->dt == b->dt && a->rank == b->rank &&
           memcmp(a->dims, b->dims, a->rank * sizeof(int64_t)) == 0;
}

static void tv_str(const struct veil__engine_tv *t, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "%s [", veil_dtype_name(t->dt));
    for (size_t d = 0; d < t->rank && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)t->dims[d]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

static struct veil_tensor tensor_from(const struct veil__engine_tv *t, const void *data)
{
    struct veil_tensor x;
    memset(&x, 0, sizeof(x));
    x.dtype = t->dt;
    x.rank = t->rank;
    memcpy(x.dims, t->dims, t->rank * sizeof(int64_t));
    x.nbytes = tv_bytes(t);
    x.data = (void *)(uintptr_t)data;
    return x;
}

/* Whether body output 0 is the body's own condition input passed through (through Identity). */
static bool cond_passthrough(const struct veil_engine_model *body)
{
    const struct veil__engine_graph *g = &body->g;
    int32_t v = g->outputs[0];
    for (size_t hops = 0; hops < 64 && v >= 0; hops++) {
        if (v == g->inputs[1])
            return true;
        int32_t pr = g->values[v].producer;
        if (pr < 0 || strcmp(g->nodes[pr].op_type, "Identity") != 0 || g->nodes[pr].n_in < 1)
            return false;
        v = g->nodes[pr].in[0];
    }
    return false;
}

/*
 * Probes the body at the first iteration's signature: in[] describes its inputs (data where
 * known now). Fills out[] with the body outputs' types and shapes and *cond_const with its
 * condition output when that folds (-1: a run-time value). Errors: VEIL_E_UNSUPPORTED (an
 * input whose values decide the body's shapes is a run-time value), the body plan's errors.
 */
static veil_err probe_body(const struct veil__engine_planner *pl, struct veil_engine_model *body,
                           const struct veil_tensor *in, struct veil__engine_tv *out,
                           int *cond_const, struct veil_errbuf *eb)
{
    const struct veil__engine_graph *bg = &body->g;
    for (size_t i = 0; i < bg->n_inputs; i++) {
        const struct veil__engine_value *v = &bg->values[bg->inputs[i]];
        bool keyed =
            v->shape_key || (v->cond_key && veil__engine_numel(in[i].dims, in[i].rank) == 1 &&
                             (veil__engine_dt_is_int(in[i].dtype) || in[i].dtype == VEIL_DT_BOOL));
        if (keyed && in[i].data == NULL)
            return veil_errf(eb, VEIL_E_UNSUPPORTED,
                             "the body's shapes depend on the values of its input '%s', which "
                             "are known only at run time",
                             v->name);
    }
    struct veil__engine_plan *bp = NULL;
    veil_err rc = pl->get_plan(body, in, &bp, eb);
    if (rc != VEIL_OK)
        return veil_err_prefix(eb, rc, "body");
    for (size_t k = 0; k < bg->n_outputs; k++) {
        out[k] = bp->vals[bg->outputs[k]].t;
        out[k].data = NULL;
    }
    *cond_const = -1;
    const struct veil__engine_pval *c = &bp->vals[bg->outputs[0]];
    if (bg->n_outputs > 0 && !c->runtime && c->t.data != NULL && c->t.numel == 1)
        *cond_const = veil__engine_get_i64(&c->t, 0) != 0;
    pl->put_plan(body, bp);
    return VEIL_OK;
}

static veil_err out_value(struct veil__engine_plan *p, int32_t v, const struct veil__engine_tv *t,
                          uint64_t max_act, int64_t s, const struct veil__engine_node *n, size_t k,
                          struct veil_errbuf *eb)
{
    if (v < 0)
        return VEIL_OK;
    uint64_t nbytes;
    if (__builtin_mul_overflow(t->numel, (uint64_t)veil_dtype_size(t->dt), &nbytes) ||
        nbytes > max_act)
        return veil_errf(eb, VEIL_E_LIMIT, "%s node '%s': output %zu needs more than %llu bytes",
                         n->op_type, n->name, k, (unsigned long long)max_act);
    struct veil__engine_pval *pv = &p->vals[v];
    pv->t = *t;
    pv->t.data = NULL;
    pv->nbytes = (size_t)nbytes;
    pv->runtime = true;
    pv->first = pv->last = s;
    return VEIL_OK;
}

/* Lays the state buffers (and Scan's slice buffers) out in the step scratch. */
static void layout_scratch(struct body_state *bs, struct veil__engine_step *st)
{
    size_t off = 0;
    for (size_t k = 0; k < bs->n_state; k++) {
        bs->state_off[k] = off;
        off += (tv_bytes(&bs->state[k]) + 63) & ~(size_t)63;
    }
    for (size_t k = 0; k < bs->n_scan_in; k++) {
        bs->slice_off[k] = off;
        off += (tv_bytes(&bs->slice[k]) + 63) & ~(size_t)63;
    }
    st->scratch_bytes = off;
}

static bool scalar_of(const struct veil__engine_pval *pv, bool want_int)
{
    return pv->t.numel == 1 &&
           (want_int ? veil__engine_dt_is_int(pv->t.dt)
                     : (pv->t.dt == VEIL_DT_BOOL || veil__engine_dt_is_int(pv->t.dt)));
}

veil_err veil__engine_loop_plan(struct veil__engine_plan *p, const struct veil__engine_graph *g,
                                const struct veil__engine_planner *pl, uint64_t max_act,
                                struct veil__engine_step *st, int64_t s, struct veil_errbuf *eb)
{
    const struct veil__engine_node *n = &g->nodes[st->node];
    struct veil_engine_model *body = n->body;
    veil_err rc = VEIL_E_INTERNAL;
    struct body_state *bs = NULL;
    static const int64_t zero = 0;
    static const uint8_t yes = 1;

    size_t own = n->n_in - n->body_captured;
    if (body == NULL || own < 2)
        return veil_errf(eb, VEIL_E_INVALID, "Loop node '%s' takes a trip count and a condition",
                         n->name);
    size_t n_state = own - 2, nb_out = body->g.n_outputs;
    if (body->g.n_inputs != 2 + n_state + n->body_captured)
        return veil_errf(eb, VEIL_E_INVALID,
                         "Loop node '%s': its body declares %zu inputs; with %zu loop-carried "
                         "values it takes %zu",
                         n->name, body->g.n_inputs - n->body_captured, n_state, 2 + n_state);
    if (nb_out < 1 + n_state || n->n_out != nb_out - 1)
        return veil_errf(eb, VEIL_E_INVALID,
                         "Loop node '%s': its body gives %zu outputs; the node has %zu outputs "
                         "and %zu loop-carried values",
                         n->name, nb_out, n->n_out, n_state);
    int64_t trip_max = -1; /* unbounded */
    if (n->in[0] >= 0) {
        const struct veil__engine_pval *mv = &p->vals[n->in[0]];
        if (!scalar_of(mv, true))
            return veil_errf(eb, VEIL_E_INVALID,
                             "Loop node '%s': the trip count must be one integer", n->name);
        if (!mv->runtime && mv->t.data != NULL) {
            trip_max = veil__engine_get_i64(&mv->t, 0);
            if (trip_max < 0)
                trip_max = 0;
        }
    }
    int cond0 = 1; /* no condition input: true */
    if (n->in[1] >= 0) {
        const struct veil__engine_pval *cv = &p->vals[n->in[1]];
        if (!scalar_of(cv, false))
            return veil_errf(eb, VEIL_E_INVALID,
                             "Loop node '%s': the condition must be one boolean", n->name);
        cond0 = !cv->runtime && cv->t.data != NULL ? veil__engine_get_i64(&cv->t, 0) != 0 : -1;
    }
    bs = veil_calloc(1, sizeof(*bs));
    if (bs == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for a plan");
    bs->n_state = n_state;
    bs->n_scan = nb_out - 1 - n_state;
    struct veil_tensor in[MAX_IO];
    struct veil__engine_tv bout[MAX_IO];
    int64_t dims0[1] = {0};
    struct veil__engine_tv it, ct;
    tv_set(&it, VEIL_DT_INT64, 0, dims0);
    tv_set(&ct, VEIL_DT_BOOL, 0, dims0);
    in[0] = tensor_from(&it, &zero);
    in[1] = tensor_from(&ct, &yes);
    for (size_t k = 0; k < n_state + n->body_captured; k++) {
        int32_t v = n->in[2 + k];
        if (v < 0) {
            rc = veil_errf(eb, VEIL_E_INVALID, "Loop node '%s': loop-carried input %zu is omitted",
                           n->name, k);
            goto out;
        }
        in[2 + k] = tensor_from(&p->vals[v].t, p->vals[v].runtime ? NULL : p->vals[v].t.data);
        if (k < n_state)
            bs->state[k] = p->vals[v].t;
    }
    int body_cond;
    if ((rc = probe_body(pl, body, in, bout, &body_cond, eb)) != VEIL_OK)
        goto out;
    for (size_t k = 0; k < n_state; k++)
        if (!tv_same(&bout[1 + k], &bs->state[k])) {
            char a[160], b[160];
            tv_str(&bs->state[k], a, sizeof(a));
            tv_str(&bout[1 + k], b, sizeof(b));
            rc = veil_errf(eb, VEIL_E_UNSUPPORTED,
                           "Loop node '%s': loop-carried value %zu goes in as %s and comes out "
                           "of the body as %s (values that change shape are not supported)",
                           n->name, k, a, b);
            goto out;
        }
    /* The condition never turns false when it starts true and the body passes it through. */
    bool cond_fixed = cond0 == 1 && (body_cond == 1 || cond_passthrough(body));
    bs->trip = trip_max >= 0 && (cond_fixed || cond0 == 0) ? (cond0 == 0 ? 0 : trip_max) : -1;
    if (bs->n_scan > 0 && bs->trip < 0) {
        rc = veil_errf(eb, VEIL_E_UNSUPPORTED,
                       "Loop node '%s': its scan outputs need the trip count when planning, but "
                       "it depends on run-time values (trip count or condition)",
                       n->name);
        goto out;
    }
    if (bs->trip > VEIL__ENGINE_LOOP_MAX_ITERS) {
        rc = veil_errf(eb, VEIL_E_LIMIT, "Loop node '%s' would run %lld iterations, above %d",
                       n->name, (long long)bs->trip, VEIL__ENGINE_LOOP_MAX_ITERS);
        goto out;
    }
    for (size_t k = 0; k < n->n_out; k++) {
        struct veil__engine_tv t;
        if (k < n_state) {
            t = bs->state[k];
        } else {
            const struct veil__engine_tv *e = &bout[1 + k];
            if (e->rank + 1 > VEIL__ENGINE_RANK) {
                rc =
                    veil_errf(eb, VEIL_E_LIMIT, "Loop node '%s': scan output %zu has rank above %d",
                              n->name, k - n_state, VEIL__ENGINE_RANK);
                goto out;
            }
            bs->elem[k - n_state] = *e;
            int64_t d[VEIL__ENGINE_RANK];
            d[0] = bs->trip;
            memcpy(d + 1, e->dims, e->rank * sizeof(int64_t));
            tv_set(&t, e->dt, e->rank + 1, d);
        }
        if ((rc = out_value(p, n->out[k], &t, max_act, s, n, k, eb)) != VEIL_OK)
            goto out;
    }
    layout_scratch(bs, st);
    st->kp.ptr = bs;
    bs = NULL;
    st->runtime = true;
    rc = VEIL_OK;
out:
    veil_free(bs);
    return rc;
}

static veil_err axis_attr(const struct veil__engine_node *n, const char *name, size_t count,
                          const size_t *ranks, size_t *axes, bool dirs, bool *rev,
                          struct veil_errbuf *eb)
{
    const struct veil__engine_attr *a = veil__engine_attr_typed(n, name, VEIL_ONNX_ATTR_INTS);
    if (a != NULL && a->n != count)
        return veil_errf(eb, VEIL_E_INVALID, "Scan node '%s': %s has %zu entries, not %zu", n->name,
                         name, a->n, count);
    for (size_t k = 0; k < count; k++) {
        int64_t v = a != NULL ? a->ints[k] : 0;
        if (dirs) {
            if (v != 0 && v != 1)
                return veil_errf(eb, VEIL_E_INVALID, "Scan node '%s': %s must be 0 or 1", n->name,
                                 name);
            rev[k] = v == 1;
            continue;
        }
        int64_t r = (int64_t)ranks[k];
        if (v < -r || v >= r)
            return veil_errf(eb, VEIL_E_INVALID, "Scan node '%s': %s %lld is out of range", n->name,
                             name, (long long)v);
        axes[k] = (size_t)(v < 0 ? v + r : v);
    }
    return VEIL_OK;
}

veil_err veil__engine_scan_plan(struct veil__engine_plan *p, const struct veil__engine_graph *g,
                                const struct veil__engine_planner *pl, uint64_t max_act,
                                struct veil__engine_step *st, int64_t s, struct veil_errbuf *eb)
{
    const struct veil__engine_node *n = &g->nodes[st->node];
    struct veil_engine_model *body = n->body;
    veil_err rc = VEIL_E_INTERNAL;
    struct body_state *bs = NULL;

    if (g->opset < 9)
        return veil_errf(eb, VEIL_E_UNSUPPORTED,
                         "Scan node '%s': the opset-8 form (batched, with sequence_lens) is not "
                         "supported",
                         n->name);
    size_t own = n->n_in - n->body_captured;
    int64_t k_in = veil__engine_attr_i(n, "num_scan_inputs", -1);
    if (body == NULL || k_in < 1 || (size_t)k_in > own)
        return veil_errf(eb, VEIL_E_INVALID,
                         "Scan node '%s': num_scan_inputs must be between 1 and its %zu inputs",
                         n->name, own);
    size_t n_state = own - (size_t)k_in, nb_out = body->g.n_outputs;
    if (body->g.n_inputs != own + n->body_captured || nb_out < n_state || n->n_out != nb_out)
        return veil_errf(eb, VEIL_E_INVALID,
                         "Scan node '%s': its body takes %zu inputs and gives %zu outputs; the "
                         "node has %zu inputs and %zu outputs",
                         n->name, body->g.n_inputs - n->body_captured, nb_out, own, n->n_out);
    bs = veil_calloc(1, sizeof(*bs));
    if (bs == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for a plan");
    bs->scan = true;
    bs->n_state = n_state;
    bs->n_scan_in = (size_t)k_in;
    bs->n_scan = nb_out - n_state;
    size_t ranks[MAX_IO];
    for (size_t k = 0; k < own; k++)
        if (n->in[k] < 0) {
            rc = veil_errf(eb, VEIL_E_INVALID, "Scan node '%s': input %zu is omitted", n->name, k);
            goto out;
        }
    for (size_t k = 0; k < bs->n_scan_in; k++)
        ranks[k] = p->vals[n->in[n_state + k]].t.rank;
    if ((rc = axis_attr(n, "scan_input_axes", bs->n_scan_in, ranks, bs->in_axis, false, NULL,
                        eb)) != VEIL_OK ||
        (rc = axis_attr(n, "scan_input_directions", bs->n_scan_in, ranks, NULL, true, bs->in_rev,
                        eb)) != VEIL_OK)
        goto out;
    int64_t trip = -1;
    for (size_t k = 0; k < bs->n_scan_in; k++) {
        const struct veil__engine_tv *t = &p->vals[n->in[n_state + k]].t;
        if (t->rank < 1) {
            rc = veil_errf(eb, VEIL_E_INVALID, "Scan node '%s': scanned input %zu is a scalar",
                           n->name, k);
            goto out;
        }
        int64_t len = t->dims[bs->in_axis[k]];
        if (trip >= 0 && len != trip) {
            rc = veil_errf(eb, VEIL_E_INVALID,
                           "Scan node '%s': scanned inputs have lengths %lld and %lld", n->name,
                           (long long)trip, (long long)len);
            goto out;
        }
        trip = len;
        int64_t d[VEIL__ENGINE_RANK];
        size_t r = 0;
        for (size_t a = 0; a < t->rank; a++)
            if (a != bs->in_axis[k])
                d[r++] = t->dims[a];
        tv_set(&bs->slice[k], t->dt, r, d);
    }
    if (trip > VEIL__ENGINE_LOOP_MAX_ITERS) {
        rc = veil_errf(eb, VEIL_E_LIMIT, "Scan node '%s' would run %lld iterations, above %d",
                       n->name, (long long)trip, VEIL__ENGINE_LOOP_MAX_ITERS);
        goto out;
    }
    bs->trip = trip;
    struct veil_tensor in[MAX_IO];
    struct veil__engine_tv bout[MAX_IO];
    for (size_t k = 0; k < own + n->body_captured; k++) {
        int32_t v = n->in[k];
        if (k >= n_state && k < own) {
            in[k] = tensor_from(&bs->slice[k - n_state], NULL);
            continue;
        }
        in[k] = tensor_from(&p->vals[v].t, p->vals[v].runtime ? NULL : p->vals[v].t.data);
        if (k < n_state)
            bs->state[k] = p->vals[v].t;
    }
    int unused;
    if ((rc = probe_body(pl, body, in, bout, &unused, eb)) != VEIL_OK)
        goto out;
    for (size_t k = 0; k < n_state; k++)
        if (!tv_same(&bout[k], &bs->state[k])) {
            char a[160], b[160];
            tv_str(&bs->state[k], a, sizeof(a));
            tv_str(&bout[k], b, sizeof(b));
            rc = veil_errf(eb, VEIL_E_UNSUPPORTED,
                           "Scan node '%s': state %zu goes in as %s and comes out of the body "
                           "as %s (states that change shape are not supported)",
                           n->name, k, a, b);
            goto out;
        }
    size_t oranks[MAX_IO];
    for (size_t k = 0; k < bs->n_scan; k++)
        oranks[k] = bout[n_state + k].rank + 1;
    if ((rc = axis_attr(n, "scan_output_axes", bs->n_scan, oranks, bs->out_axis, false, NULL,
                        eb)) != VEIL_OK ||
        (rc = axis_attr(n, "scan_output_directions", bs->n_scan, oranks, NULL, true, bs->out_rev,
                        eb)) != VEIL_OK)
        goto out;
    for (size_t k = 0; k < n->n_out; k++) {
        struct veil__engine_tv t;
        if (k < n_state) {
            t = bs->state[k];
        } else {
            const struct veil__engine_tv *e = &bout[k];
            size_t j = k - n_state, ax = bs->out_axis[j];
            if (e->rank + 1 > VEIL__ENGINE_RANK) {
                rc =
                    veil_errf(eb, VEIL_E_LIMIT, "Scan node '%s': scan output %zu has rank above %d",
                              n->name, j, VEIL__ENGINE_RANK);
                goto out;
            }
            bs->elem[j] = *e;
            int64_t d[VEIL__ENGINE_RANK];
            for (size_t a = 0, src = 0; a < e->rank + 1; a++)
                d[a] = a == ax ? trip : e->dims[src++];
            tv_set(&t, e->dt, e->rank + 1, d);
        }
        if ((rc = out_value(p, n->out[k], &t, max_act, s, n, k, eb)) != VEIL_OK)
            goto out;
    }
    layout_scratch(bs, st);
    st->kp.ptr = bs;
    bs = NULL;
    st->runtime = true;
    rc = VEIL_OK;
out:
    veil_free(bs);
    return rc;
}

/*
 * Copies slice j along axis of a tensor of shape t (esz-byte elements) to or from a
 * contiguous buffer: get copies tensor -> buf, else buf -> tensor.
 */
static void slice_copy(uint8_t *tensor, const struct veil__engine_tv *t, size_t axis, int64_t j,
                       uint8_t *buf, bool get)
{
    size_t esz = veil_dtype_size(t->dt);
    uint64_t outer = veil__engine_numel(t->dims, axis);
    uint64_t inner = veil__engine_numel(t->dims + axis + 1, t->rank - axis - 1) * esz;
    uint64_t len = (uint64_t)t->dims[axis];
    for (uint64_t o = 0; o < outer; o++) {
        uint8_t *at = tensor + (o * len + (uint64_t)j) * inner;
        if (get)
            memcpy(buf + o * inner, at, inner);
        else
            memcpy(at, buf + o * inner, inner);
    }
}

veil_err veil__engine_body_run(const struct veil__engine_plan *p,
                               const struct veil__engine_scratch *sc,
                               const struct veil__engine_graph *g,
                               const struct veil__engine_planner *pl,
                               const struct veil__engine_step *st, struct veil_errbuf *eb)
{
    const struct veil__engine_node *n = &g->nodes[st->node];
    const struct body_state *bs = st->kp.ptr;
    struct veil_engine_model *body = n->body;
    size_t nb_in = body->g.n_inputs, nb_out = body->g.n_outputs;
    size_t first = bs->scan ? 0 : 2; /* where the states start among the body inputs */
    size_t own = n->n_in - n->body_captured;
    struct veil_tensor in[MAX_IO], out[MAX_IO];
    veil_err rc = VEIL_OK;
    int64_t iter = 0, trip = bs->trip;
    uint8_t cond = 1;

    if (!bs->scan) {
        trip = INT64_MAX;
        if (n->in[0] >= 0) {
            struct veil__engine_tv t = p->vals[n->in[0]].t;
            t.data = veil__engine_plan_addr(p, sc, n->in[0]);
            trip = veil__engine_get_i64(&t, 0);
        }
        if (n->in[1] >= 0) {
            struct veil__engine_tv t = p->vals[n->in[1]].t;
            t.data = veil__engine_plan_addr(p, sc, n->in[1]);
            cond = veil__engine_get_i64(&t, 0) != 0;
        }
    }
    for (size_t k = 0; k < bs->n_state; k++) {
        void *buf = sc->step_region + bs->state_off[k];
        memcpy(buf, veil__engine_plan_addr(p, sc, n->in[first + k]), tv_bytes(&bs->state[k]));
        in[first + k] = tensor_from(&bs->state[k], buf);
    }
    for (size_t k = first + bs->n_state + bs->n_scan_in; k < nb_in; k++) {
        int32_t v = n->in[own + (k - (first + bs->n_state + bs->n_scan_in))];
        in[k] = tensor_from(&p->vals[v].t, veil__engine_plan_addr(p, sc, v));
    }
    for (;; iter++) {
        if (!bs->scan && (!cond || iter >= trip))
            break;
        if (bs->scan && iter >= trip)
            break;
        if (iter >= VEIL__ENGINE_LOOP_MAX_ITERS)
            return veil_errf(eb, VEIL_E_LIMIT, "%s node '%s' ran more than %d iterations",
                             n->op_type, n->name, VEIL__ENGINE_LOOP_MAX_ITERS);
        int64_t it_val = iter;
        uint8_t cond_val = cond;
        if (!bs->scan) {
            int64_t d0[1] = {0};
            struct veil__engine_tv ti, tc;
            tv_set(&ti, VEIL_DT_INT64, 0, d0);
            tv_set(&tc, VEIL_DT_BOOL, 0, d0);
            in[0] = tensor_from(&ti, &it_val);
            in[1] = tensor_from(&tc, &cond_val);
        }
        for (size_t k = 0; k < bs->n_scan_in; k++) {
            int32_t v = n->in[bs->n_state + k];
            uint8_t *buf = sc->step_region + bs->slice_off[k];
            int64_t j = bs->in_rev[k] ? trip - 1 - iter : iter;
            slice_copy(veil__engine_plan_addr(p, sc, v), &p->vals[v].t, bs->in_axis[k], j, buf,
                       true);
            in[bs->n_state + k] = tensor_from(&bs->slice[k], buf);
        }
        if ((rc = pl->run_here(body, in, out, eb)) != VEIL_OK)
            return veil_err_prefix(eb, rc, "%s node '%s', iteration %lld", n->op_type, n->name,
                                   (long long)iter);
        size_t o0 = bs->scan ? 0 : 1; /* Loop's body gives its condition first */
        for (size_t k = 0; k < nb_out && rc == VEIL_OK; k++) {
            struct veil__engine_tv got;
            tv_set(&got, out[k].dtype, out[k].rank, out[k].dims);
            if (!bs->scan && k == 0) {
                if (got.numel != 1) {
                    rc = veil_errf(eb, VEIL_E_INVALID,
                                   "Loop node '%s': its body's condition has %llu elements",
                                   n->name, (unsigned long long)got.numel);
                    break;
                }
                got.data = out[0].data;
                cond = veil__engine_get_i64(&got, 0) != 0;
                continue;
            }
            size_t j = k - o0;
            const struct veil__engine_tv *want =
                j < bs->n_state ? &bs->state[j] : &bs->elem[j - bs->n_state];
            if (!tv_same(&got, want)) {
                char a[160], b[160];
                tv_str(want, a, sizeof(a));
                tv_str(&got, b, sizeof(b));
                rc = veil_errf(eb, VEIL_E_INVALID,
                               "%s node '%s': at iteration %lld body output %zu is %s, not %s as "
                               "at the first",
                               n->op_type, n->name, (long long)iter, k, b, a);
                break;
            }
            if (j < bs->n_state) {
                memcpy(sc->step_region + bs->state_off[j], out[k].data, tv_bytes(want));
                continue;
            }
            size_t sj = j - bs->n_state;
            int32_t v = n->out[j];
            if (v < 0)
                continue;
            if (iter >= bs->trip) {
                rc = veil_errf(eb, VEIL_E_INTERNAL, "%s node '%s': more iterations than planned",
                               n->op_type, n->name);
                break;
            }
            int64_t pos = bs->out_rev[sj] ? bs->trip - 1 - iter : iter;
            slice_copy(veil__engine_plan_addr(p, sc, v), &p->vals[v].t,
                       bs->scan ? bs->out_axis[sj] : 0, pos, out[k].data, false);
        }
        for (size_t k = 0; k < nb_out; k++)
            veil_tensor_release(&out[k]);
        if (rc != VEIL_OK)
            return rc;
    }
    if (bs->n_scan > 0 && iter != bs->trip)
        return veil_errf(eb, VEIL_E_INVALID,
                         "%s node '%s' stopped after %lld of %lld iterations its scan outputs "
                         "were planned for",
                         n->op_type, n->name, (long long)iter, (long long)bs->trip);
    for (size_t k = 0; k < bs->n_state; k++)
        if (n->out[k] >= 0)
            memcpy(veil__engine_plan_addr(p, sc, n->out[k]), sc->step_region + bs->state_off[k],
                   tv_bytes(&bs->state[k]));
    return VEIL_OK;
}
