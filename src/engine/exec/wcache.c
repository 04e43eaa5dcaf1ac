/*
 * The weights cache: constant weights reordered into the layouts oneDNN primitives prefer,
 * made once per (constant, layout) and shared read-only by every plan of a model, so batch
 * sizes do not multiply weight memory. Large float weights read only through the cache lose
 * their plain copy (dropped), which is rebuilt from a reversible reordered copy before the
 * next plan is built. Reordered weights are plaintext weights too and are wiped when freed.
 */
#include "engine_int.h"

#include <string.h>

void veil__engine_wcache_release(struct veil__engine_wcache *wc)
{
    for (size_t i = 0; i < wc->n; i++) {
        /* Reordered weights are plaintext weights too: wiped before they are freed. */
        veil_memzero(wc->ents[i].data, dnnl_memory_desc_get_size(&wc->ents[i].md));
        veil_aligned_free(wc->ents[i].data);
    }
    veil_free(wc->ents);
    memset(wc, 0, sizeof(*wc));
}

/* Reorders constant data from md src into a new buffer of layout dst (owned by ks). */
veil_err veil__engine_reorder_const(dnnl_engine_t eng, const dnnl_memory_desc_t *src,
                                    const void *data, const dnnl_memory_desc_t *dst,
                                    struct veil__engine_kstate *ks, const void **out,
                                    struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t ms = NULL, md = NULL;
    dnnl_stream_t stream = NULL;
    size_t slot = 0;
    while (slot < 4 && ks->owned[slot] != NULL)
        slot++;
    VEIL_ASSERT(slot < 4);
    size_t sz = dnnl_memory_desc_get_size(dst);
    void *buf = veil__engine_big_alloc(sz > 0 ? sz : 64);
    if (buf == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for weights");
    ks->owned[slot] = buf;
    if ((rc = veil__engine_dnnl_err(
             dnnl_reorder_primitive_desc_create(&pd, src, eng, dst, eng, NULL), "weights reorder",
             eb)) != VEIL_OK ||
        (rc = veil__engine_dnnl_err(dnnl_primitive_create(&prim, pd), "weights reorder", eb)) !=
            VEIL_OK ||
        (rc = veil__engine_dnnl_err(dnnl_memory_create(&ms, src, eng, (void *)(uintptr_t)data),
                                    "memory", eb)) != VEIL_OK ||
        (rc = veil__engine_dnnl_err(dnnl_memory_create(&md, dst, eng, buf), "memory", eb)) !=
            VEIL_OK ||
        (rc = veil__engine_dnnl_err(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags),
                                    "stream", eb)) != VEIL_OK)
        goto out;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, ms}, {DNNL_ARG_TO, md}};
    if ((rc = veil__engine_dnnl_err(dnnl_primitive_execute(prim, stream, 2, args), "reorder",
                                    eb)) != VEIL_OK ||
        (rc = veil__engine_dnnl_err(dnnl_stream_wait(stream), "reorder", eb)) != VEIL_OK)
        goto out;
    *out = buf;
    rc = VEIL_OK;
out:
    if (stream != NULL)
        dnnl_stream_destroy(stream);
    if (ms != NULL)
        dnnl_memory_destroy(ms);
    if (md != NULL)
        dnnl_memory_destroy(md);
    if (prim != NULL)
        dnnl_primitive_destroy(prim);
    if (pd != NULL)
        dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* Whether oneDNN has a reorder from layout a to layout b (it has none out of Winograd's). */
static bool reorder_exists(dnnl_engine_t eng, const dnnl_memory_desc_t *a,
                           const dnnl_memory_desc_t *b)
{
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_reorder_primitive_desc_create(&pd, a, eng, b, eng, NULL) != dnnl_success)
        return false;
    dnnl_primitive_desc_destroy(pd);
    return true;
}

/*
 * As veil__engine_reorder_const, through the model's cache when data is a graph constant's own
 * data: the reordered copy is made once per (constant, layout) and shared by all plans. Counts the
 * read in c->wreads (see veil__engine_wcache_drop).
 */
veil_err veil__engine_wcache_reorder(const struct veil__engine_ictx *c, int32_t value,
                                     dnnl_engine_t eng, const dnnl_memory_desc_t *src,
                                     const void *data, const dnnl_memory_desc_t *dst,
                                     struct veil__engine_kstate *ks, const void **out,
                                     struct veil_errbuf *eb)
{
    struct veil__engine_wcache *wc = c->wcache;
    /* Only the graph's own constants: a plan's folded values die with the plan. */
    if (wc == NULL || value < 0 || !c->g->values[value].is_const ||
        c->g->values[value].c.data != data || data == NULL)
        return veil__engine_reorder_const(eng, src, data, dst, ks, out, eb);
    for (size_t i = 0; i < wc->n; i++)
        if (wc->ents[i].value == value && dnnl_memory_desc_equal(&wc->ents[i].md, dst) &&
            dnnl_memory_desc_equal(&wc->ents[i].src_md, src)) {
            *out = wc->ents[i].data;
            if (c->wreads != NULL)
                c->wreads[value]++;
            return VEIL_OK;
        }
    if (wc->n == wc->cap) {
        size_t nc = wc->cap ? wc->cap * 2 : 64;
        struct veil__engine_wcache_ent *ne = veil_reallocarray(wc->ents, nc, sizeof(*ne));
        if (ne == NULL)
            return veil_errf(eb, VEIL_E_NOMEM, "no memory for weights");
        wc->ents = ne;
        wc->cap = nc;
    }
    struct veil__engine_kstate tmp;
    memset(&tmp, 0, sizeof(tmp));
    veil_err rc = veil__engine_reorder_const(eng, src, data, dst, &tmp, out, eb);
    if (rc != VEIL_OK) {
        veil_aligned_free(tmp.owned[0]);
        return rc;
    }
    wc->ents[wc->n++] = (struct veil__engine_wcache_ent){value, *src, *dst, tmp.owned[0],
                                                         reorder_exists(eng, dst, src)};
    if (c->wreads != NULL)
        c->wreads[value]++;
    (void)ks;
    return VEIL_OK;
}

/* Whether the plain copy of v can be rebuilt, whole, from cache entry e. */
static bool restores(const struct veil__engine_wcache_ent *e, const struct veil__engine_value *v)
{
    return e->reversible && dnnl_memory_desc_get_size(&e->src_md) == v->nbytes;
}

veil_err veil__engine_wcache_rehydrate(struct veil_engine_model *m, struct veil_errbuf *eb)
{
    for (size_t i = 0; i < m->wcache.n; i++) {
        const struct veil__engine_wcache_ent *e = &m->wcache.ents[i];
        struct veil__engine_value *v = &m->g.values[e->value];
        /* A later entry of the same constant may be the one to rebuild from. */
        if (!v->dropped || !restores(e, v))
            continue;
        struct veil__engine_kstate tmp;
        const void *plain;
        memset(&tmp, 0, sizeof(tmp));
        veil_err rc =
            veil__engine_reorder_const(m->deng, &e->md, e->data, &e->src_md, &tmp, &plain, eb);
        if (rc != VEIL_OK) {
            veil_aligned_free(tmp.owned[0]);
            return rc;
        }
        v->c.data = tmp.owned[0];
        v->dropped = false;
    }
    for (size_t v = 0; v < m->g.n_values; v++)
        if (m->g.values[v].dropped)
            return veil_errf(eb, VEIL_E_INTERNAL, "weights '%s' have no copy to rebuild from",
                             m->g.values[v].name);
    return VEIL_OK;
}

void veil__engine_wcache_drop(struct veil_engine_model *m, const uint32_t *wreads,
                              const uint32_t *n_reads)
{
    struct veil__engine_graph *g = &m->g;
    bool dropped = false;
    for (size_t v = 0; v < g->n_values; v++)
        if (g->values[v].is_const && n_reads[v] > 0 && wreads[v] != n_reads[v])
            g->values[v].plain_needed = true;
    for (size_t i = 0; i < m->wcache.n; i++) {
        const struct veil__engine_wcache_ent *e = &m->wcache.ents[i];
        struct veil__engine_value *v = &g->values[e->value];
        /* Only a copy the plain layout can be rebuilt from lets the plain copy go. */
        if (!restores(e, v) || v->dropped || v->plain_needed || v->is_output ||
            v->c.dt != VEIL_DT_FLOAT || v->nbytes < ((size_t)1 << 20) || n_reads[e->value] == 0 ||
            wreads[e->value] != n_reads[e->value])
            continue;
        veil_memzero(v->c.data, v->nbytes);
        veil_aligned_free(v->c.data);
        v->c.data = NULL;
        v->dropped = true;
        dropped = true;
    }
    /* The heap keeps large freed blocks (veil_alloc_tune_large_blocks): hand them back. */
    if (dropped)
        veil_heap_release();
}

size_t veil__engine_weight_bytes(const struct veil_engine_model *m)
{
    size_t n = 0;
    for (size_t v = 0; v < m->g.n_values; v++)
        if (m->g.values[v].is_const && !m->g.values[v].dropped)
            n += m->g.values[v].nbytes;
    for (size_t i = 0; i < m->wcache.n; i++)
        n += dnnl_memory_desc_get_size(&m->wcache.ents[i].md);
    return n;
}
