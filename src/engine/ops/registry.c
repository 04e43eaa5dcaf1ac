/*
 * The operator table: the union of the per-family tables, looked up by ONNX operator name.
 * An operator missing here is refused at load time (veil__graph_build names every one).
 */
#include "engine_int.h"

#include <string.h>

extern const struct veil__op_def veil__ops_elem[], veil__ops_shape[], veil__ops_gather[],
    veil__ops_resize[], veil__ops_einsum[], veil__ops_nn[], veil__ops_dnnl[];
extern const size_t veil__ops_elem_count, veil__ops_shape_count, veil__ops_gather_count,
    veil__ops_resize_count, veil__ops_einsum_count, veil__ops_nn_count, veil__ops_dnnl_count;

struct family {
    const struct veil__op_def *ops;
    const size_t *count;
};

static const struct family families[] = {
    {veil__ops_elem, &veil__ops_elem_count},     {veil__ops_shape, &veil__ops_shape_count},
    {veil__ops_gather, &veil__ops_gather_count}, {veil__ops_resize, &veil__ops_resize_count},
    {veil__ops_einsum, &veil__ops_einsum_count}, {veil__ops_nn, &veil__ops_nn_count},
    {veil__ops_dnnl, &veil__ops_dnnl_count},
};

#define FAMILY_SHIFT 8

int veil__op_index(const char *name)
{
    for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++)
        for (size_t i = 0; i < *families[f].count; i++)
            if (strcmp(families[f].ops[i].name, name) == 0)
                return (int)((f << FAMILY_SHIFT) | i);
    return -1;
}

const struct veil__op_def *veil__op_get(int op)
{
    VEIL_ASSERT(op >= 0);
    size_t f = (size_t)op >> FAMILY_SHIFT, i = (size_t)op & ((1u << FAMILY_SHIFT) - 1);
    VEIL_ASSERT(f < sizeof(families) / sizeof(families[0]) && i < *families[f].count);
    return &families[f].ops[i];
}

const struct veil__op_def *veil__op_find(const char *name)
{
    int i = veil__op_index(name);
    return i < 0 ? NULL : veil__op_get(i);
}

bool veil__op_known(const char *name, int64_t opset)
{
    return veil__op_find(name) != NULL || (opset < 10 && strcmp(name, "Upsample") == 0);
}
