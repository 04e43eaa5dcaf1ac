/*
 * What the steps' prepared kernels share: the translation of oneDNN statuses into engine
 * errors (a descriptor oneDNN refuses is the engine's failure, never the input's), and the
 * release of a step's kernel state, its primitives and the constant buffers it owns.
 */
#include "engine_int.h"

veil_err veil__engine_dnnl_err(dnnl_status_t st, const char *what, struct veil_errbuf *eb)
{
    if (st == dnnl_success)
        return VEIL_OK;
    /* oneDNN refusing a descriptor the engine built is the engine's failure, not the input's. */
    veil_err rc = st == dnnl_out_of_memory ? VEIL_E_NOMEM : VEIL_E_INTERNAL;
    return veil_errf(eb, rc, "oneDNN %s failed (status %d)", what, (int)st);
}

void veil__engine_kstate_free(struct veil__engine_kstate *ks)
{
    if (ks == NULL)
        return;
    for (size_t i = 0; i < ks->n_ex; i++)
        if (ks->ex[i].prim != NULL)
            dnnl_primitive_destroy(ks->ex[i].prim);
    for (size_t i = 0; i < sizeof(ks->owned) / sizeof(ks->owned[0]); i++)
        veil_aligned_free(ks->owned[i]);
    veil_free(ks);
}
