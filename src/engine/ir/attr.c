/*
 * Readers of a node's copied attributes, by name, with the default when an attribute is
 * absent or of another type, and the attribute-derived facts several passes and kernels
 * share (a Transpose's permutation). They read the node only, so every layer may use them.
 */
#include "engine_int.h"

#include <string.h>

const struct veil__engine_attr *veil__engine_attr_get(const struct veil__engine_node *n,
                                                      const char *name)
{
    for (size_t i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0)
            return &n->attrs[i];
    return NULL;
}

const struct veil__engine_attr *veil__engine_attr_typed(const struct veil__engine_node *n,
                                                        const char *name,
                                                        enum veil_onnx_attr_type t)
{
    const struct veil__engine_attr *a = veil__engine_attr_get(n, name);
    return a != NULL && a->type == t ? a : NULL;
}

int64_t veil__engine_attr_i(const struct veil__engine_node *n, const char *name, int64_t def)
{
    const struct veil__engine_attr *a = veil__engine_attr_get(n, name);
    return a != NULL && a->type == VEIL_ONNX_ATTR_INT ? a->i : def;
}

float veil__engine_attr_f(const struct veil__engine_node *n, const char *name, float def)
{
    const struct veil__engine_attr *a = veil__engine_attr_get(n, name);
    return a != NULL && a->type == VEIL_ONNX_ATTR_FLOAT ? a->f : def;
}

const char *veil__engine_attr_s(const struct veil__engine_node *n, const char *name,
                                const char *def)
{
    const struct veil__engine_attr *a = veil__engine_attr_get(n, name);
    return a != NULL && a->type == VEIL_ONNX_ATTR_STRING ? a->s : def;
}

veil_err veil__engine_transpose_perm(const struct veil__engine_node *n, size_t r, size_t *perm,
                                     struct veil_errbuf *eb)
{
    const struct veil__engine_attr *a = veil__engine_attr_typed(n, "perm", VEIL_ONNX_ATTR_INTS);
    bool used[VEIL__ENGINE_RANK] = {false};
    if (r > VEIL__ENGINE_RANK || (a != NULL && a->n != r))
        return veil_errf(eb, VEIL_E_INVALID, "perm has %zu entries for rank %zu",
                         a != NULL ? a->n : r, r);
    for (size_t i = 0; i < r; i++) {
        int64_t p = a != NULL ? a->ints[i] : (int64_t)(r - 1 - i);
        size_t ax;
        veil_err rc = veil__engine_norm_axis(p, r, &ax, eb);
        if (rc != VEIL_OK)
            return rc;
        if (used[ax])
            return veil_errf(eb, VEIL_E_INVALID, "perm repeats axis %zu", ax);
        used[ax] = true;
        perm[i] = ax;
    }
    return VEIL_OK;
}
