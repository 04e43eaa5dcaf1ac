/*
 * Operators as opsets 7 to 10 write them, rewritten at load into the forms of opset 11 that
 * the kernels implement. Before opset 11 (10 for Slice and TopK) some operands were
 * attributes: Clip's min and max, Pad's pads and value, Slice's starts, ends and axes, TopK's
 * k. They become constant inputs. Resize (opset 10: X and scales) gains the empty roi slot,
 * and Upsample (opsets 7 to 9: scales as an attribute, then an input) becomes that same
 * Resize.
 * BatchNormalization before opset 9 normalised per element when `spatial` was 0, which the
 * engine does not do: such a node is refused.
 */
#include "engine_int.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* A new constant of n elements of dt copied from data, as an input slot value. */
static veil_err add_const(struct veil__engine_graph *g, const struct veil__engine_node *n,
                          const char *what, enum veil_dtype dt, size_t rank, int64_t count,
                          const void *data, int32_t *id)
{
    size_t es = veil_dtype_size(dt), nb = (size_t)count * es;
    void *p = veil_aligned_alloc(64, nb + 64);
    if (p == NULL)
        return VEIL_E_NOMEM;
    if (nb > 0)
        memcpy(p, data, nb);
    char name[160];
    snprintf(name, sizeof(name), "%s/%s", n->name, what);
    int64_t dims[1] = {count};
    veil_err rc = veil__engine_graph_add_const(g, name, dt, rank, dims, p, id);
    if (rc != VEIL_OK)
        veil_aligned_free(p);
    return rc;
}

/* Gives node n the inputs ins[0, k) (-1 for an empty slot); n has at most k inputs. */
static veil_err set_inputs(struct veil__engine_node *n, const int32_t *ins, size_t k)
{
    veil_err rc = veil__engine_node_grow_inputs(n, k);
    if (rc == VEIL_OK)
        memcpy(n->in, ins, k * sizeof(int32_t));
    return rc;
}

static veil_err clip_attrs(struct veil__engine_graph *g, struct veil__engine_node *n)
{
    float lo = veil__engine_attr_f(n, "min", -FLT_MAX), hi = veil__engine_attr_f(n, "max", FLT_MAX);
    int32_t ins[3] = {n->in[0], -1, -1};
    veil_err rc = add_const(g, n, "min", VEIL_DT_FLOAT, 0, 1, &lo, &ins[1]);
    if (rc == VEIL_OK)
        rc = add_const(g, n, "max", VEIL_DT_FLOAT, 0, 1, &hi, &ins[2]);
    return rc == VEIL_OK ? set_inputs(n, ins, 3) : rc;
}

static veil_err pad_attrs(struct veil__engine_graph *g, struct veil__engine_node *n,
                          struct veil_errbuf *eb)
{
    const struct veil__engine_attr *pads = veil__engine_attr_typed(n, "pads", VEIL_ONNX_ATTR_INTS);
    if (pads == NULL)
        return veil_errf(eb, VEIL_E_INVALID, "node '%s' (Pad, opset %lld) has no pads attribute",
                         n->name, (long long)g->opset);
    float value = veil__engine_attr_f(n, "value", 0.0f);
    int32_t ins[3] = {n->in[0], -1, -1};
    veil_err rc = add_const(g, n, "pads", VEIL_DT_INT64, 1, (int64_t)pads->n, pads->ints, &ins[1]);
    if (rc == VEIL_OK)
        rc = add_const(g, n, "value", VEIL_DT_FLOAT, 0, 1, &value, &ins[2]);
    return rc == VEIL_OK ? set_inputs(n, ins, 3) : rc;
}

static veil_err slice_attrs(struct veil__engine_graph *g, struct veil__engine_node *n,
                            struct veil_errbuf *eb)
{
    const struct veil__engine_attr *st = veil__engine_attr_typed(n, "starts", VEIL_ONNX_ATTR_INTS),
                                   *en = veil__engine_attr_typed(n, "ends", VEIL_ONNX_ATTR_INTS),
                                   *ax = veil__engine_attr_typed(n, "axes", VEIL_ONNX_ATTR_INTS);
    if (st == NULL || en == NULL)
        return veil_errf(eb, VEIL_E_INVALID,
                         "node '%s' (Slice, opset %lld) needs starts and ends attributes", n->name,
                         (long long)g->opset);
    int32_t ins[4] = {n->in[0], -1, -1, -1};
    veil_err rc = add_const(g, n, "starts", VEIL_DT_INT64, 1, (int64_t)st->n, st->ints, &ins[1]);
    if (rc == VEIL_OK)
        rc = add_const(g, n, "ends", VEIL_DT_INT64, 1, (int64_t)en->n, en->ints, &ins[2]);
    if (rc == VEIL_OK && ax != NULL)
        rc = add_const(g, n, "axes", VEIL_DT_INT64, 1, (int64_t)ax->n, ax->ints, &ins[3]);
    return rc == VEIL_OK ? set_inputs(n, ins, ax != NULL ? 4 : 3) : rc;
}

static veil_err topk_attr(struct veil__engine_graph *g, struct veil__engine_node *n,
                          struct veil_errbuf *eb)
{
    const struct veil__engine_attr *k = veil__engine_attr_typed(n, "k", VEIL_ONNX_ATTR_INT);
    if (k == NULL)
        return veil_errf(eb, VEIL_E_INVALID, "node '%s' (TopK, opset %lld) has no k attribute",
                         n->name, (long long)g->opset);
    int32_t ins[2] = {n->in[0], -1};
    veil_err rc = add_const(g, n, "k", VEIL_DT_INT64, 1, 1, &k->i, &ins[1]);
    return rc == VEIL_OK ? set_inputs(n, ins, 2) : rc;
}

/*
 * Resize of opset 10 (inputs X, scales) or Upsample (scales an attribute before opset 9): a
 * Resize with the inputs of opset 11 (an empty roi). The kernel maps coordinates as opset 10
 * did in models of that opset (see resize_infer).
 */
static veil_err resize_10(struct veil__engine_graph *g, struct veil__engine_node *n,
                          struct veil_errbuf *eb)
{
    int32_t ins[3] = {n->in[0], -1, n->n_in > 1 ? n->in[1] : -1};
    veil_err rc = VEIL_OK;
    if (ins[2] < 0) {
        const struct veil__engine_attr *sc =
            veil__engine_attr_typed(n, "scales", VEIL_ONNX_ATTR_FLOATS);
        if (sc == NULL)
            return veil_errf(eb, VEIL_E_INVALID, "node '%s' (%s, opset %lld) has no scales",
                             n->name, n->op_type, (long long)g->opset);
        rc = add_const(g, n, "scales", VEIL_DT_FLOAT, 1, (int64_t)sc->n, sc->floats, &ins[2]);
    }
    if (rc == VEIL_OK && strcmp(n->op_type, "Resize") != 0)
        rc = veil__engine_node_retype(n, "Resize");
    if (rc == VEIL_OK)
        rc = set_inputs(n, ins, 3);
    return rc;
}

veil_err veil__engine_graph_legacy(struct veil__engine_graph *g, struct veil_errbuf *eb)
{
    if (g->opset >= 11)
        return VEIL_OK;
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct veil__engine_node *n = &g->nodes[i];
        char op[32];
        snprintf(op, sizeof(op), "%s", n->op_type); /* n->op_type may be replaced below */
        veil_err rc = VEIL_OK;
        if (strcmp(op, "Clip") == 0 && n->n_in == 1) {
            rc = clip_attrs(g, n);
        } else if (strcmp(op, "Pad") == 0 && n->n_in == 1) {
            rc = pad_attrs(g, n, eb);
        } else if (strcmp(op, "Slice") == 0 && n->n_in == 1 && g->opset < 10) {
            rc = slice_attrs(g, n, eb);
        } else if (strcmp(op, "TopK") == 0 && n->n_in == 1 && g->opset < 10) {
            rc = topk_attr(g, n, eb);
        } else if (strcmp(op, "Resize") == 0 || strcmp(op, "Upsample") == 0) {
            if (strcmp(op, "Upsample") == 0 && g->opset >= 10)
                return veil_errf(eb, VEIL_E_UNSUPPORTED,
                                 "node '%s': Upsample is deprecated from opset 10 (use Resize)",
                                 n->name);
            rc = resize_10(g, n, eb);
        } else if (strcmp(op, "BatchNormalization") == 0 && g->opset < 9 &&
                   veil__engine_attr_i(n, "spatial", 1) == 0) {
            return veil_errf(eb, VEIL_E_UNSUPPORTED,
                             "node '%s' (BatchNormalization, opset %lld): spatial=0 "
                             "(statistics per element) is not supported",
                             n->name, (long long)g->opset);
        }
        if (rc == VEIL_E_NOMEM)
            return veil_errf(eb, rc, "no memory for node '%s' (%s, opset %lld)", n->name, op,
                             (long long)g->opset);
        if (rc != VEIL_OK)
            return rc;
    }
    return VEIL_OK;
}
