/*
 * Subgraphs of If lifted into the main graph. Each branch's nodes and initializers join the
 * main graph under names made unique by the branch ("<If label>#<n>/then/<name>"); names a
 * branch does not define resolve to the enclosing graphs, innermost first (ONNX's outer
 * scope). Every lifted node records the If that guards it and which branch it belongs to; the
 * If node itself is rewritten to read its condition and then every branch output, then's
 * first, so ordinary data flow orders the branches before it. Whether a branch runs is decided
 * per plan (a condition known when planning) or per run (veil__engine_plan_exec checks the guards).
 *
 * Loop and Scan bodies run once per iteration, so they are not lifted: they stay subgraphs,
 * built into models of their own (ops/control.c). The outer values a body reads (its free
 * names, found through every graph nested in it) become extra inputs of the node, after its
 * own, so the planner orders and keeps them like any input; the body sees them as extra
 * graph inputs of the same names, after its declared ones.
 */
#include "../engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct map_ent {
    const char *orig;
    const char *mapped;
};

/* The names one graph defines, sorted by their name in the file. */
struct scope {
    const struct scope *up;
    struct map_ent *ents;
    size_t n;
};

struct flat_build {
    struct veil__engine_flat *f;
    size_t cap_nodes, cap_inits;
    uint32_t n_ifs; /* If nodes lifted so far, for unique prefixes */
};

static int ent_cmp(const void *a, const void *b)
{
    return strcmp(((const struct map_ent *)a)->orig, ((const struct map_ent *)b)->orig);
}

static const char *resolve(const struct scope *sc, const char *name)
{
    if (name[0] == '\0')
        return name;
    for (; sc != NULL; sc = sc->up) {
        struct map_ent key = {name, NULL};
        const struct map_ent *e = bsearch(&key, sc->ents, sc->n, sizeof(*sc->ents), ent_cmp);
        if (e != NULL)
            return e->mapped;
    }
    return name;
}

static bool is_if(const struct veil_onnx_node *n)
{
    return strcmp(n->op_type, "If") == 0 &&
           (n->domain[0] == '\0' || strcmp(n->domain, "ai.onnx") == 0);
}

static veil_err push_node(struct flat_build *b, size_t *idx)
{
    struct veil__engine_flat *f = b->f;
    if (f->n_nodes == b->cap_nodes) {
        size_t cap = b->cap_nodes ? b->cap_nodes * 2 : 64;
        struct veil_onnx_node *nn = veil_reallocarray(f->nodes, cap, sizeof(*nn));
        if (nn == NULL)
            return VEIL_E_NOMEM;
        f->nodes = nn;
        int32_t *ng = veil_reallocarray(f->guard, cap, sizeof(*ng));
        if (ng == NULL)
            return VEIL_E_NOMEM;
        f->guard = ng;
        uint8_t *nb = veil_reallocarray(f->branch, cap, sizeof(*nb));
        if (nb == NULL)
            return VEIL_E_NOMEM;
        f->branch = nb;
        struct veil__engine_flat_body *nbd = veil_reallocarray(f->bodies, cap, sizeof(*nbd));
        if (nbd == NULL)
            return VEIL_E_NOMEM;
        f->bodies = nbd;
        b->cap_nodes = cap;
    }
    *idx = f->n_nodes++;
    memset(&f->bodies[*idx], 0, sizeof(f->bodies[*idx]));
    return VEIL_OK;
}

static veil_err push_init(struct flat_build *b, const struct veil_onnx_tensor *t, const char *name)
{
    struct veil__engine_flat *f = b->f;
    if (f->n_inits == b->cap_inits) {
        size_t cap = b->cap_inits ? b->cap_inits * 2 : 64;
        struct veil_onnx_tensor *nt = veil_reallocarray(f->inits, cap, sizeof(*nt));
        if (nt == NULL)
            return VEIL_E_NOMEM;
        f->inits = nt;
        b->cap_inits = cap;
    }
    f->inits[f->n_inits] = *t;
    f->inits[f->n_inits].name = name;
    f->n_inits++;
    return VEIL_OK;
}

static veil_err map_names(struct veil__engine_flat *f, const struct scope *sc,
                          const char *const *in, size_t n, const char *const **out)
{
    const char **arr;
    veil_err rc = veil_arena_allocarray(&f->arena, n + 1, sizeof(*arr), 8, (void **)&arr);
    if (rc != VEIL_OK)
        return rc;
    for (size_t i = 0; i < n; i++)
        arr[i] = resolve(sc, in[i]);
    *out = arr;
    return VEIL_OK;
}

static veil_err emit_graph(struct flat_build *b, const struct veil_onnx_graph *g,
                           const struct scope *sc, int32_t guard, uint8_t branch, unsigned depth,
                           struct veil_errbuf *eb);

/*
 * The scope of one branch: its initializers and its nodes' outputs, renamed under prefix.
 * Errors: VEIL_E_FORMAT (a name defined twice in the branch), VEIL_E_NOMEM.
 */
static veil_err branch_scope(struct veil__engine_flat *f, const struct veil_onnx_graph *g,
                             const char *prefix, const struct scope *up, struct scope *out,
                             struct veil_errbuf *eb)
{
    size_t n = g->n_initializers;
    for (size_t i = 0; i < g->n_nodes; i++)
        n += g->nodes[i].n_outputs;
    out->up = up;
    out->n = 0;
    veil_err rc =
        veil_arena_allocarray(&f->arena, n + 1, sizeof(*out->ents), 8, (void **)&out->ents);
    if (rc != VEIL_OK)
        return veil_errf(eb, rc, "no memory for a subgraph");
    for (size_t i = 0; i < g->n_initializers + g->n_nodes; i++) {
        size_t n_names = i < g->n_initializers ? 1 : g->nodes[i - g->n_initializers].n_outputs;
        for (size_t k = 0; k < n_names; k++) {
            const char *orig = i < g->n_initializers ? g->initializers[i].name
                                                     : g->nodes[i - g->n_initializers].outputs[k];
            if (orig[0] == '\0')
                continue;
            size_t len = strlen(prefix) + strlen(orig) + 1;
            char *m;
            if ((rc = veil_arena_alloc(&f->arena, len, 1, (void **)&m)) != VEIL_OK)
                return veil_errf(eb, rc, "no memory for a subgraph");
            snprintf(m, len, "%s%s", prefix, orig);
            out->ents[out->n++] = (struct map_ent){orig, m};
        }
    }
    qsort(out->ents, out->n, sizeof(*out->ents), ent_cmp);
    for (size_t i = 1; i < out->n; i++)
        if (strcmp(out->ents[i - 1].orig, out->ents[i].orig) == 0)
            return veil_errf(eb, VEIL_E_FORMAT, "value '%s' is defined more than once in %.*s",
                             out->ents[i].orig, (int)(strlen(prefix) - 1), prefix);
    return VEIL_OK;
}

static veil_err emit_if(struct flat_build *b, const struct veil_onnx_node *on,
                        const struct scope *sc, int32_t guard, uint8_t branch, unsigned depth,
                        struct veil_errbuf *eb)
{
    struct veil__engine_flat *f = b->f;
    const char *label = on->name[0] != '\0' ? on->name : on->op_type;
    const struct veil_onnx_attr *ta = veil_onnx_node_attr(on, "then_branch");
    const struct veil_onnx_attr *ea = veil_onnx_node_attr(on, "else_branch");
    veil_err rc;

    if (ta == NULL || ea == NULL || ta->g == NULL || ea->g == NULL)
        return veil_errf(eb, VEIL_E_FORMAT, "If node '%s' lacks a then_branch or else_branch graph",
                         label);
    if (depth >= VEIL_ONNX_MAX_GRAPH_DEPTH)
        return veil_errf(eb, VEIL_E_LIMIT, "If node '%s' is nested more than %u deep", label,
                         VEIL_ONNX_MAX_GRAPH_DEPTH);
    if (on->n_inputs != 1 || on->inputs[0][0] == '\0')
        return veil_errf(eb, VEIL_E_FORMAT, "If node '%s' has %zu inputs; If takes its condition",
                         label, on->n_inputs);
    const struct veil_onnx_graph *br[2] = {ta->g, ea->g};
    for (size_t k = 0; k < 2; k++) {
        if (br[k]->n_inputs != 0)
            return veil_errf(eb, VEIL_E_FORMAT,
                             "If node '%s': %s declares %zu inputs (none allowed)", label,
                             k == 0 ? "then_branch" : "else_branch", br[k]->n_inputs);
        if (br[k]->n_outputs != on->n_outputs)
            return veil_errf(
                eb, VEIL_E_FORMAT, "If node '%s': %s gives %zu outputs, the node has %zu", label,
                k == 0 ? "then_branch" : "else_branch", br[k]->n_outputs, on->n_outputs);
    }
    if (on->n_outputs == 0 || 1 + 2 * on->n_outputs > VEIL__ENGINE_IF_MAX_IO)
        return veil_errf(eb, VEIL_E_LIMIT, "If node '%s' has %zu outputs; 1 to %d are supported",
                         label, on->n_outputs, (VEIL__ENGINE_IF_MAX_IO - 1) / 2);
    size_t self;
    if ((rc = push_node(b, &self)) != VEIL_OK)
        return veil_errf(eb, rc, "no memory for a subgraph");
    uint32_t serial = b->n_ifs++;
    const char **ins;
    if ((rc = veil_arena_allocarray(&f->arena, 2 * on->n_outputs + 2, sizeof(*ins), 8,
                                    (void **)&ins)) != VEIL_OK)
        return veil_errf(eb, rc, "no memory for a subgraph");
    ins[0] = resolve(sc, on->inputs[0]);
    for (uint8_t k = 0; k < 2; k++) {
        char prefix[VEIL_ONNX_MAX_NAME + 64];
        snprintf(prefix, sizeof(prefix), "%s#%u/%s/", label, serial, k == 0 ? "then" : "else");
        char *pfx;
        if ((rc = veil_arena_strdup(&f->arena, veil_span_from_str(prefix), &pfx)) != VEIL_OK)
            return veil_errf(eb, rc, "no memory for a subgraph");
        struct scope bs;
        if ((rc = branch_scope(f, br[k], pfx, sc, &bs, eb)) != VEIL_OK)
            return rc;
        for (size_t i = 0; i < br[k]->n_initializers; i++)
            if ((rc = push_init(b, &br[k]->initializers[i],
                                resolve(&bs, br[k]->initializers[i].name))) != VEIL_OK)
                return veil_errf(eb, rc, "no memory for a subgraph");
        if ((rc = emit_graph(b, br[k], &bs, (int32_t)self, k, depth + 1, eb)) != VEIL_OK)
            return rc;
        for (size_t i = 0; i < on->n_outputs; i++)
            ins[1 + k * on->n_outputs + i] = resolve(&bs, br[k]->outputs[i].name);
    }
    struct veil_onnx_node *d = &f->nodes[self];
    *d = *on;
    d->inputs = ins;
    d->n_inputs = 1 + 2 * on->n_outputs;
    d->attrs = NULL; /* the branches are lifted; If keeps no attribute */
    d->n_attrs = 0;
    if ((rc = map_names(f, sc, on->outputs, on->n_outputs, &d->outputs)) != VEIL_OK)
        return veil_errf(eb, rc, "no memory for a subgraph");
    f->guard[self] = guard;
    f->branch[self] = branch;
    return VEIL_OK;
}

/* A growing list of distinct names. */
struct name_list {
    const char **v;
    size_t n, cap;
};

static bool name_listed(const struct name_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], name) == 0)
            return true;
    return false;
}

static veil_err name_add(struct name_list *l, const char *name)
{
    if (name_listed(l, name))
        return VEIL_OK;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        const char **nv = veil_reallocarray(l->v, cap, sizeof(*nv));
        if (nv == NULL)
            return VEIL_E_NOMEM;
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = name;
    return VEIL_OK;
}

/* Whether graph g itself defines name (an input, an initializer or a node output). */
static bool graph_defines(const struct veil_onnx_graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_inputs; i++)
        if (strcmp(g->inputs[i].name, name) == 0)
            return true;
    for (size_t i = 0; i < g->n_initializers; i++)
        if (strcmp(g->initializers[i].name, name) == 0)
            return true;
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i].n_outputs; k++)
            if (strcmp(g->nodes[i].outputs[k], name) == 0)
                return true;
    return false;
}

/*
 * Adds to out the names g reads (node inputs, graph outputs, and what its nested subgraphs
 * read) that g does not define: the values it takes from the graphs around it.
 */
static veil_err free_names(const struct veil_onnx_graph *g, struct name_list *out)
{
    struct name_list used = {NULL, 0, 0};
    veil_err rc = VEIL_OK;
    for (size_t i = 0; i < g->n_nodes && rc == VEIL_OK; i++) {
        const struct veil_onnx_node *n = &g->nodes[i];
        for (size_t k = 0; k < n->n_inputs && rc == VEIL_OK; k++)
            if (n->inputs[k][0] != '\0')
                rc = name_add(&used, n->inputs[k]);
        for (size_t a = 0; a < n->n_attrs && rc == VEIL_OK; a++)
            if (n->attrs[a].g != NULL)
                rc = free_names(n->attrs[a].g, &used);
    }
    for (size_t i = 0; i < g->n_outputs && rc == VEIL_OK; i++)
        rc = name_add(&used, g->outputs[i].name);
    for (size_t i = 0; i < used.n && rc == VEIL_OK; i++)
        if (!graph_defines(g, used.v[i]))
            rc = name_add(out, used.v[i]);
    veil_free(used.v);
    return rc;
}

static bool has_body(const struct veil_onnx_node *n)
{
    return (strcmp(n->op_type, "Loop") == 0 || strcmp(n->op_type, "Scan") == 0) &&
           (n->domain[0] == '\0' || strcmp(n->domain, "ai.onnx") == 0);
}

/*
 * A Loop or Scan node: copied with the outer values its body reads appended to its inputs
 * (resolved through sc), and the body recorded for the graph builder.
 */
static veil_err emit_body_node(struct flat_build *b, const struct veil_onnx_node *on,
                               const struct scope *sc, int32_t guard, uint8_t branch,
                               unsigned depth, struct veil_errbuf *eb)
{
    struct veil__engine_flat *f = b->f;
    const char *label = on->name[0] != '\0' ? on->name : on->op_type;
    const struct veil_onnx_attr *ba = veil_onnx_node_attr(on, "body");
    struct name_list cap = {NULL, 0, 0};
    veil_err rc = VEIL_E_INTERNAL;
    size_t idx;

    if (ba == NULL || ba->g == NULL)
        return veil_errf(eb, VEIL_E_FORMAT, "%s node '%s' has no body graph", on->op_type, label);
    if (depth >= VEIL_ONNX_MAX_GRAPH_DEPTH)
        return veil_errf(eb, VEIL_E_LIMIT, "%s node '%s' is nested more than %u deep", on->op_type,
                         label, VEIL_ONNX_MAX_GRAPH_DEPTH);
    if ((rc = free_names(ba->g, &cap)) != VEIL_OK) {
        rc = veil_errf(eb, rc, "no memory for a subgraph");
        goto out;
    }
    if (on->n_inputs + cap.n > VEIL__ENGINE_BODY_MAX_IO) {
        rc = veil_errf(eb, VEIL_E_LIMIT,
                       "%s node '%s' takes %zu inputs and its body reads %zu outer values; at "
                       "most %d in all are supported",
                       on->op_type, label, on->n_inputs, cap.n, VEIL__ENGINE_BODY_MAX_IO);
        goto out;
    }
    if ((rc = push_node(b, &idx)) != VEIL_OK) {
        rc = veil_errf(eb, rc, "no memory for a subgraph");
        goto out;
    }
    struct veil_onnx_node *d = &f->nodes[idx];
    *d = *on;
    const char **ins, **inner;
    if ((rc = veil_arena_allocarray(&f->arena, on->n_inputs + cap.n + 1, sizeof(*ins), 8,
                                    (void **)&ins)) != VEIL_OK ||
        (rc = veil_arena_allocarray(&f->arena, cap.n + 1, sizeof(*inner), 8, (void **)&inner)) !=
            VEIL_OK ||
        (rc = map_names(f, sc, on->outputs, on->n_outputs, &d->outputs)) != VEIL_OK) {
        rc = veil_errf(eb, rc, "no memory for a subgraph");
        goto out;
    }
    for (size_t i = 0; i < on->n_inputs; i++)
        ins[i] = resolve(sc, on->inputs[i]);
    for (size_t i = 0; i < cap.n; i++) {
        inner[i] = cap.v[i];
        ins[on->n_inputs + i] = resolve(sc, cap.v[i]);
    }
    d->inputs = ins;
    d->n_inputs = on->n_inputs + cap.n;
    f->guard[idx] = guard;
    f->branch[idx] = branch;
    f->bodies[idx] = (struct veil__engine_flat_body){ba->g, inner, cap.n};
    rc = VEIL_OK;
out:
    veil_free(cap.v);
    return rc;
}

static veil_err emit_graph(struct flat_build *b, const struct veil_onnx_graph *g,
                           const struct scope *sc, int32_t guard, uint8_t branch, unsigned depth,
                           struct veil_errbuf *eb)
{
    struct veil__engine_flat *f = b->f;
    veil_err rc;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct veil_onnx_node *on = &g->nodes[i];
        if (is_if(on)) {
            if ((rc = emit_if(b, on, sc, guard, branch, depth, eb)) != VEIL_OK)
                return rc;
            continue;
        }
        if (has_body(on)) {
            if ((rc = emit_body_node(b, on, sc, guard, branch, depth, eb)) != VEIL_OK)
                return rc;
            continue;
        }
        size_t idx;
        if ((rc = push_node(b, &idx)) != VEIL_OK)
            return veil_errf(eb, rc, "no memory for a subgraph");
        struct veil_onnx_node *d = &f->nodes[idx];
        *d = *on;
        if (sc != NULL &&
            ((rc = map_names(f, sc, on->inputs, on->n_inputs, &d->inputs)) != VEIL_OK ||
             (rc = map_names(f, sc, on->outputs, on->n_outputs, &d->outputs)) != VEIL_OK))
            return veil_errf(eb, rc, "no memory for a subgraph");
        f->guard[idx] = guard;
        f->branch[idx] = branch;
    }
    return VEIL_OK;
}

veil_err veil__engine_flatten(const struct veil_onnx_model *om, struct veil__engine_flat *f,
                              struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct flat_build b = {f, 0, 0, 0};

    memset(f, 0, sizeof(*f));
    veil_arena_init(&f->arena, 64u << 10, (size_t)VEIL_LIMIT_MODEL_BYTES);
    f->model = *om;
    for (size_t i = 0; i < om->n_initializers; i++)
        if ((rc = push_init(&b, &om->initializers[i], om->initializers[i].name)) != VEIL_OK) {
            rc = veil_errf(eb, rc, "no memory for the graph");
            goto out;
        }
    struct veil_onnx_graph main = {
        .name = "",
        .nodes = om->nodes,
        .n_nodes = om->n_nodes,
        .initializers = om->initializers,
        .n_initializers = om->n_initializers,
        .inputs = om->inputs,
        .n_inputs = om->n_inputs,
        .outputs = om->outputs,
        .n_outputs = om->n_outputs,
    };
    if ((rc = emit_graph(&b, &main, NULL, -1, 0, 0, eb)) != VEIL_OK)
        goto out;
    f->model.nodes = f->nodes;
    f->model.n_nodes = f->n_nodes;
    f->model.initializers = f->inits;
    f->model.n_initializers = f->n_inits;
    rc = VEIL_OK;
out:
    if (rc != VEIL_OK)
        veil__engine_flat_release(f);
    return rc;
}

void veil__engine_flat_release(struct veil__engine_flat *f)
{
    veil_free(f->nodes);
    veil_free(f->guard);
    veil_free(f->branch);
    veil_free(f->bodies);
    veil_free(f->inits);
    veil_arena_release(&f->arena);
    memset(f, 0, sizeof(*f));
}
