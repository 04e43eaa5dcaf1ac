/*
 * A tiny ONNX model builder for tests: fills the protobuf-c structs generated from
 * proto/onnx.proto and packs them, so tests can make exactly the model (good or hostile) they
 * need. All memory comes from one arena released by mb_release.
 */
#ifndef VEIL_TEST_MODEL_BUILDER_H
#define VEIL_TEST_MODEL_BUILDER_H

#include "onnx.pb-c.h"
#include "veil/base.h"
#include "veil/engine.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct mb {
    struct veil_arena a;
    VeilOnnx__NodeProto *nodes[64];
    size_t n_nodes;
    VeilOnnx__TensorProto *inits[64];
    size_t n_inits;
    VeilOnnx__ValueInfoProto *ins[16], *outs[16];
    size_t n_ins, n_outs;
    int64_t opset;
};

static __attribute__((unused)) void *mb_alloc(struct mb *b, size_t n)
{
    void *p;
    if (veil_arena_alloc(&b->a, n ? n : 1, 16, &p) != VEIL_OK)
        abort();
    return p;
}

static __attribute__((unused)) char *mb_str(struct mb *b, const char *s)
{
    char *p = mb_alloc(b, strlen(s) + 1);
    memcpy(p, s, strlen(s) + 1);
    return p;
}

static __attribute__((unused)) void mb_init(struct mb *b)
{
    memset(b, 0, sizeof(*b));
    veil_arena_init(&b->a, 64u << 10, 1u << 30);
    b->opset = 17;
}

static __attribute__((unused)) void mb_release(struct mb *b)
{
    veil_arena_release(&b->a);
}

/* A value info; a negative dim becomes the symbolic dimension "N". */
static __attribute__((unused)) VeilOnnx__ValueInfoProto *
mb_vi(struct mb *b, const char *name, int dt, size_t rank, const int64_t *dims)
{
    VeilOnnx__ValueInfoProto *v = mb_alloc(b, sizeof(*v));
    VeilOnnx__TypeProto *tp = mb_alloc(b, sizeof(*tp));
    VeilOnnx__TypeProto__Tensor *tt = mb_alloc(b, sizeof(*tt));
    VeilOnnx__TensorShapeProto *sh = mb_alloc(b, sizeof(*sh));
    veil_onnx__value_info_proto__init(v);
    veil_onnx__type_proto__init(tp);
    veil_onnx__type_proto__tensor__init(tt);
    veil_onnx__tensor_shape_proto__init(sh);
    v->name = mb_str(b, name);
    v->type = tp;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = dt;
    tt->shape = sh;
    sh->n_dim = rank;
    sh->dim = mb_alloc(b, rank * sizeof(*sh->dim) + 1);
    for (size_t i = 0; i < rank; i++) {
        VeilOnnx__TensorShapeProto__Dimension *d = mb_alloc(b, sizeof(*d));
        veil_onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] >= 0) {
            d->has_dim_value = 1;
            d->dim_value = dims[i];
        } else {
            d->dim_param = mb_str(b, "N");
        }
        sh->dim[i] = d;
    }
    return v;
}

static __attribute__((unused)) void mb_input(struct mb *b, const char *name, int dt, size_t rank,
                                             const int64_t *dims)
{
    b->ins[b->n_ins++] = mb_vi(b, name, dt, rank, dims);
}

static __attribute__((unused)) void mb_output(struct mb *b, const char *name, int dt, size_t rank,
                                              const int64_t *dims)
{
    b->outs[b->n_outs++] = mb_vi(b, name, dt, rank, dims);
}

/* A tensor with raw data of nbytes bytes (which may disagree with dims on purpose). */
static __attribute__((unused)) VeilOnnx__TensorProto *mb_tensor(struct mb *b, const char *name,
                                                                int dt, size_t rank,
                                                                const int64_t *dims,
                                                                const void *data, size_t nbytes)
{
    VeilOnnx__TensorProto *t = mb_alloc(b, sizeof(*t));
    veil_onnx__tensor_proto__init(t);
    t->name = mb_str(b, name);
    t->has_data_type = 1;
    t->data_type = dt;
    t->n_dims = rank;
    t->dims = mb_alloc(b, rank * sizeof(int64_t) + 1);
    if (rank > 0)
        memcpy(t->dims, dims, rank * sizeof(int64_t));
    t->has_raw_data = 1;
    t->raw_data.len = nbytes;
    t->raw_data.data = mb_alloc(b, nbytes);
    if (nbytes > 0)
        memcpy(t->raw_data.data, data, nbytes);
    return t;
}

static __attribute__((unused)) VeilOnnx__TensorProto *
mb_init_f(struct mb *b, const char *name, size_t rank, const int64_t *dims, const float *data)
{
    size_t n = 1;
    for (size_t i = 0; i < rank; i++)
        n *= (size_t)dims[i];
    VeilOnnx__TensorProto *t = mb_tensor(b, name, 1, rank, dims, data, n * sizeof(float));
    b->inits[b->n_inits++] = t;
    return t;
}

static __attribute__((unused)) VeilOnnx__TensorProto *
mb_init_i64(struct mb *b, const char *name, size_t rank, const int64_t *dims, const int64_t *data)
{
    size_t n = 1;
    for (size_t i = 0; i < rank; i++)
        n *= (size_t)dims[i];
    VeilOnnx__TensorProto *t = mb_tensor(b, name, 7, rank, dims, data, n * sizeof(int64_t));
    b->inits[b->n_inits++] = t;
    return t;
}

/* An attribute of the given type with no value yet. */
static VeilOnnx__AttributeProto *mb_attr_new(struct mb *b, const char *name,
                                             VeilOnnx__AttributeProto__AttributeType type)
{
    VeilOnnx__AttributeProto *a = mb_alloc(b, sizeof(*a));
    veil_onnx__attribute_proto__init(a);
    a->name = mb_str(b, name);
    a->has_type = 1;
    a->type = type;
    return a;
}

static __attribute__((unused)) VeilOnnx__AttributeProto *mb_attr_i(struct mb *b, const char *name,
                                                                   int64_t v)
{
    VeilOnnx__AttributeProto *a =
        mb_attr_new(b, name, VEIL_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
    return a;
}

static __attribute__((unused)) VeilOnnx__AttributeProto *mb_attr_f(struct mb *b, const char *name,
                                                                   float v)
{
    VeilOnnx__AttributeProto *a =
        mb_attr_new(b, name, VEIL_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
    return a;
}

static __attribute__((unused)) VeilOnnx__AttributeProto *
mb_attr_ints(struct mb *b, const char *name, size_t n, const int64_t *v)
{
    VeilOnnx__AttributeProto *a =
        mb_attr_new(b, name, VEIL_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = n;
    a->ints = mb_alloc(b, n * sizeof(int64_t) + 1);
    memcpy(a->ints, v, n * sizeof(int64_t));
    return a;
}

static __attribute__((unused)) VeilOnnx__AttributeProto *
mb_attr_floats(struct mb *b, const char *name, size_t n, const float *v)
{
    VeilOnnx__AttributeProto *a =
        mb_attr_new(b, name, VEIL_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS);
    a->n_floats = n;
    a->floats = mb_alloc(b, n * sizeof(float) + 1);
    memcpy(a->floats, v, n * sizeof(float));
    return a;
}

static __attribute__((unused)) VeilOnnx__AttributeProto *mb_attr_s(struct mb *b, const char *name,
                                                                   const char *v)
{
    VeilOnnx__AttributeProto *a =
        mb_attr_new(b, name, VEIL_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    a->has_s = 1;
    a->s.len = strlen(v);
    a->s.data = (uint8_t *)mb_str(b, v);
    return a;
}

/* Adds node op with comma-separated inputs and outputs ("" entries allowed) and attrs. */
static __attribute__((unused)) VeilOnnx__NodeProto *
mb_node(struct mb *b, const char *op, const char *ins, const char *outs, size_t n_attrs, ...)
{
    VeilOnnx__NodeProto *n = mb_alloc(b, sizeof(*n));
    veil_onnx__node_proto__init(n);
    n->op_type = mb_str(b, op);
    n->name = mb_str(b, op);
    const char *lists[2] = {ins, outs};
    for (int l = 0; l < 2; l++) {
        char **arr = mb_alloc(b, 16 * sizeof(char *));
        size_t cnt = 0;
        const char *p = lists[l];
        while (p != NULL && *p != '\0' && cnt < 16) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            char *s = mb_alloc(b, len + 1);
            memcpy(s, p, len);
            s[len] = '\0';
            arr[cnt++] = s;
            p = comma ? comma + 1 : NULL;
        }
        if (l == 0) {
            n->input = arr;
            n->n_input = cnt;
        } else {
            n->output = arr;
            n->n_output = cnt;
        }
    }
    va_list ap;
    va_start(ap, n_attrs);
    n->n_attribute = n_attrs;
    n->attribute = mb_alloc(b, (n_attrs + 1) * sizeof(*n->attribute));
    for (size_t i = 0; i < n_attrs; i++)
        n->attribute[i] = va_arg(ap, VeilOnnx__AttributeProto *);
    va_end(ap);
    b->nodes[b->n_nodes++] = n;
    return n;
}

/* Packs the model into out (caller releases). */
static __attribute__((unused)) void mb_pack(struct mb *b, struct veil_buf *out)
{
    VeilOnnx__ModelProto m = VEIL_ONNX__MODEL_PROTO__INIT;
    VeilOnnx__GraphProto g = VEIL_ONNX__GRAPH_PROTO__INIT;
    VeilOnnx__OperatorSetIdProto os = VEIL_ONNX__OPERATOR_SET_ID_PROTO__INIT;
    VeilOnnx__OperatorSetIdProto *osp = &os;
    os.domain = (char *)"";
    os.has_version = 1;
    os.version = b->opset;
    m.has_ir_version = 1;
    m.ir_version = 8;
    m.n_opset_import = 1;
    m.opset_import = &osp;
    m.graph = &g;
    g.name = (char *)"test";
    g.n_node = b->n_nodes;
    g.node = b->nodes;
    g.n_initializer = b->n_inits;
    g.initializer = b->inits;
    g.n_input = b->n_ins;
    g.input = b->ins;
    g.n_output = b->n_outs;
    g.output = b->outs;
    size_t n = veil_onnx__model_proto__get_packed_size(&m);
    veil_buf_init(out, n + 16);
    if (veil_buf_reserve(out, n) != VEIL_OK)
        abort();
    out->len = veil_onnx__model_proto__pack(&m, out->p);
}

/* Packs the model in b (released here) and loads it with opt into *m. Returns load's error. */
static __attribute__((unused)) veil_err mb_load(struct mb *b, const struct veil_engine_options *opt,
                                                struct veil_engine_model **m,
                                                struct veil_errbuf *eb)
{
    struct veil_buf buf;
    mb_pack(b, &buf);
    mb_release(b);
    veil_err rc = veil_engine_model_load(veil_buf_span(&buf), opt, m, eb);
    veil_buf_release(&buf);
    return rc;
}

/*
 * Moves the nodes and initializers added since first_node / first_init into a subgraph with
 * the comma-separated outputs outs (no declared types), returned as the GRAPH attribute name:
 * build a branch with mb_node calls, then hand it to the If node made after.
 */
static __attribute__((unused)) VeilOnnx__AttributeProto *
mb_attr_graph(struct mb *b, const char *name, size_t first_node, size_t first_init,
              const char *outs)
{
    VeilOnnx__GraphProto *g = mb_alloc(b, sizeof(*g));
    veil_onnx__graph_proto__init(g);
    g->name = mb_str(b, name);
    g->n_node = b->n_nodes - first_node;
    g->node = mb_alloc(b, (g->n_node + 1) * sizeof(*g->node));
    memcpy(g->node, &b->nodes[first_node], g->n_node * sizeof(*g->node));
    b->n_nodes = first_node;
    g->n_initializer = b->n_inits - first_init;
    g->initializer = mb_alloc(b, (g->n_initializer + 1) * sizeof(*g->initializer));
    memcpy(g->initializer, &b->inits[first_init], g->n_initializer * sizeof(*g->initializer));
    b->n_inits = first_init;
    g->output = mb_alloc(b, 16 * sizeof(*g->output));
    for (const char *p = outs; p != NULL && *p != '\0' && g->n_output < 16;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char *s = mb_alloc(b, len + 1);
        memcpy(s, p, len);
        s[len] = '\0';
        g->output[g->n_output++] = mb_vi(b, s, 0, 0, NULL);
        p = comma ? comma + 1 : NULL;
    }
    VeilOnnx__AttributeProto *a =
        mb_attr_new(b, name, VEIL_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH);
    a->g = g;
    return a;
}

#endif
