/*
 * Storage rules decided while a plan is built: which values share storage. A value is an
 * alias of its root when it is a view of it, when a kernel writes its output over an input
 * whose storage dies at that step (in place), or when a kernel reads a skipped node's input in
 * place of the node's output. A value another one views is marked viewed and is never written
 * in place, so no write lands on storage something later still reads.
 */
#include "engine_int.h"

int32_t veil__engine_storage_root(const struct veil__engine_pval *vals, int32_t v)
{
    while (vals[v].alias)
        v = vals[v].root;
    return v;
}

bool veil__engine_storage_dies(const struct veil__engine_ictx *c, int32_t v)
{
    if (v < 0 || c->vals == NULL || c->last_read == NULL || c->viewed == NULL ||
        !c->vals[v].runtime || c->last_read[v] != c->step)
        return false;
    /* Every value sharing the storage up to its root (earlier in-place writes) must die too. */
    for (int32_t w = v;; w = c->vals[w].root) {
        if (c->viewed[w] || c->last_read[w] > c->step)
            return false;
        if (!c->vals[w].alias)
            return true;
    }
}

bool veil__engine_storage_unwritten_since(const struct veil__engine_ictx *c, int32_t u,
                                          int64_t since)
{
    int32_t r = veil__engine_storage_root(c->vals, u);
    for (int64_t s = since + 1; s < c->step; s++) {
        const struct veil__engine_step *st = &c->steps[s];
        const struct veil__engine_node *n = &c->g->nodes[st->node];
        if (!st->runtime || st->view)
            continue;
        for (size_t k = 0; k < n->n_out; k++) {
            int32_t w = n->out[k];
            if (w >= 0 && c->vals[w].runtime && c->vals[w].alias &&
                veil__engine_storage_root(c->vals, w) == r)
                return false;
        }
    }
    return true;
}

bool veil__engine_inplace(struct veil__engine_ictx *c, size_t k)
{
    if (k >= c->n_in || c->n->n_out < 1 || !veil__engine_storage_dies(c, c->n->in[k]))
        return false;
    int32_t v = c->n->in[k], out = c->n->out[0];
    if (out < 0 || v == out || !c->vals[out].runtime || c->vals[v].blocked ||
        c->vals[out].blocked || c->vals[out].alias || c->vals[v].t.dt != c->vals[out].t.dt ||
        c->vals[v].nbytes != c->vals[out].nbytes)
        return false;
    c->vals[out].alias = true;
    c->vals[out].root = v;
    return true;
}

void veil__engine_skip_transpose(const struct veil__engine_ictx *c, int32_t tnode, int32_t v)
{
    veil__engine_skip_node(c, tnode, v, c->g->nodes[tnode].in[0]);
}

void veil__engine_skip_node(const struct veil__engine_ictx *c, int32_t node, int32_t v, int32_t u)
{
    struct veil__engine_step *ts = &c->steps[c->step_of[node]];
    veil__engine_kstate_free(ts->ks);
    ts->ks = NULL;
    ts->runtime = false;
    c->vals[v].alias = true;
    c->vals[v].root = u;
    /* u's storage is read later than u's own last reader: never accumulate into it. */
    c->viewed[u] = true;
}

void *veil__engine_plan_addr(const struct veil__engine_plan *p,
                             const struct veil__engine_scratch *sc, int32_t v)
{
    const struct veil__engine_pval *pv = &p->vals[v];
    if (!pv->runtime)
        return pv->t.data;
    return sc->arena + p->vals[veil__engine_storage_root(p->vals, v)].off;
}
