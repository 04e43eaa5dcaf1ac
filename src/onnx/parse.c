/*
 * The ONNX parser: decodes a ModelProto with protobuf-c (generated from proto/onnx.proto) and
 * copies its graph into the read-only description of veil/onnx.h. Invariants of the result:
 * every name is NUL-terminated and at most VEIL_ONNX_MAX_NAME bytes, every tensor's data size
 * equals the product of its dims times its element size (checked without overflow), every rank
 * is at most VEIL_LIMIT_TENSOR_RANK, and a tensor's data lies inside the model or inside a file
 * the caller's external source returned (checked range). Large raw tensor data is not copied:
 * the result points into the decoded message it keeps, or into the external source's bytes.
 */
#include "veil/onnx.h"

#include "onnx.pb-c.h"

#include <string.h>

struct parsed {
    VeilOnnx__ModelProto *pb;
    struct veil_arena arena;
    size_t total_nodes;                   /* nodes over every graph converted so far */
    const struct veil_onnx_external *ext; /* NULL: external data is refused */
};

static veil_err conv_graph(struct parsed *pm, const VeilOnnx__GraphProto *g,
                           struct veil_onnx_graph *out, struct veil_errbuf *eb);

static void *pb_alloc(void *ud, size_t n)
{
    (void)ud;
    void *p = veil_malloc(n);
    /* protobuf-c copies large tensors' bytes in right away: huge pages fault in far faster. */
    veil_advise_huge(p, n);
    return p;
}

static void pb_free(void *ud, void *p)
{
    (void)ud;
    /* Tensor bytes of a decrypted model are plaintext weights: wiped before they are freed. */
    veil_free_wipe(p);
}

size_t veil_dtype_size(enum veil_dtype dt)
{
    switch (dt) {
    case VEIL_DT_FLOAT:
    case VEIL_DT_INT32:
    case VEIL_DT_UINT32:
        return 4;
    case VEIL_DT_UINT8:
    case VEIL_DT_INT8:
    case VEIL_DT_BOOL:
        return 1;
    case VEIL_DT_UINT16:
    case VEIL_DT_INT16:
    case VEIL_DT_FLOAT16:
    case VEIL_DT_BFLOAT16:
        return 2;
    case VEIL_DT_INT64:
    case VEIL_DT_DOUBLE:
    case VEIL_DT_UINT64:
        return 8;
    case VEIL_DT_UNDEFINED:
    case VEIL_DT_STRING:
        break;
    }
    return 0;
}

const char *veil_dtype_name(enum veil_dtype dt)
{
    switch (dt) {
    case VEIL_DT_FLOAT:
        return "float";
    case VEIL_DT_UINT8:
        return "uint8";
    case VEIL_DT_INT8:
        return "int8";
    case VEIL_DT_UINT16:
        return "uint16";
    case VEIL_DT_INT16:
        return "int16";
    case VEIL_DT_INT32:
        return "int32";
    case VEIL_DT_INT64:
        return "int64";
    case VEIL_DT_STRING:
        return "string";
    case VEIL_DT_BOOL:
        return "bool";
    case VEIL_DT_FLOAT16:
        return "float16";
    case VEIL_DT_DOUBLE:
        return "double";
    case VEIL_DT_UINT32:
        return "uint32";
    case VEIL_DT_UINT64:
        return "uint64";
    case VEIL_DT_BFLOAT16:
        return "bfloat16";
    case VEIL_DT_UNDEFINED:
        break;
    }
    return "undefined";
}

static const char *nz(const char *s)
{
    return s != NULL ? s : "";
}

static veil_err check_name(const char *s, const char *what, struct veil_errbuf *eb)
{
    if (s != NULL && strnlen(s, VEIL_ONNX_MAX_NAME + 1) > VEIL_ONNX_MAX_NAME)
        return veil_errf(eb, VEIL_E_LIMIT, "%s name longer than %u bytes", what,
                         VEIL_ONNX_MAX_NAME);
    return VEIL_OK;
}

static bool dtype_known(int32_t v)
{
    return (v >= VEIL_DT_FLOAT && v <= VEIL_DT_UINT64) || v == VEIL_DT_BFLOAT16;
}

/* ONNX types past uint64 other than bfloat16 (complex, float8, 4-bit) exist but are not supported.
 */
static veil_err dtype_err(int32_t v)
{
    return v >= 14 && v <= 23 ? VEIL_E_UNSUPPORTED : VEIL_E_FORMAT;
}

bool veil_onnx_location_ok(const char *s, size_t len)
{
    if (len == 0 || len > VEIL_ONNX_MAX_LOCATION || s[0] == '/')
        return false;
    size_t comp = 0; /* start of the current component */
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '/') {
            size_t n = i - comp;
            if (n == 0 || (n == 1 && s[comp] == '.') ||
                (n == 2 && s[comp] == '.' && s[comp + 1] == '.'))
                return false;
            comp = i + 1;
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '\\')
            return false;
    }
    return true;
}

/* A decimal number of at most 19 digits (no sign, no blanks), as ONNX writes offsets. */
static bool parse_decimal(const char *s, uint64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/*
 * Points t->data at the external bytes of tensor tp (its size already in t->nbytes): reads
 * the external_data entries, checks them (docs/format/external-data.md) and asks the source.
 */
static veil_err conv_external(struct parsed *pm, const VeilOnnx__TensorProto *tp,
                              struct veil_onnx_tensor *t, struct veil_errbuf *eb)
{
    const char *name = t->name, *location = NULL, *offset_s = NULL, *length_s = NULL;
    bool seen_checksum = false;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const char *k = nz(tp->external_data[i]->key), *v = tp->external_data[i]->value;
        const char **slot = strcmp(k, "location") == 0 ? &location
                            : strcmp(k, "offset") == 0 ? &offset_s
                            : strcmp(k, "length") == 0 ? &length_s
                                                       : NULL;
        bool dup = slot != NULL ? *slot != NULL : seen_checksum;
        if (slot == NULL && strcmp(k, "checksum") != 0)
            return veil_errf(eb, VEIL_E_FORMAT,
                             "tensor '%s': unknown external_data key '%.64s' (location, offset, "
                             "length and checksum are defined)",
                             name, k);
        if (dup)
            return veil_errf(eb, VEIL_E_FORMAT, "tensor '%s': external_data key '%s' given twice",
                             name, k);
        if (slot != NULL)
            *slot = nz(v);
        else
            seen_checksum = true; /* read and ignored, as ONNX Runtime does */
    }
    if (location == NULL)
        return veil_errf(eb, VEIL_E_FORMAT,
                         "tensor '%s' is stored externally but names no location", name);
    if (tp->has_raw_data || tp->n_float_data || tp->n_int32_data || tp->n_int64_data ||
        tp->n_double_data || tp->n_uint64_data || tp->n_string_data)
        return veil_errf(eb, VEIL_E_FORMAT,
                         "tensor '%s' is stored externally and also carries data in the model",
                         name);
    if (!veil_onnx_location_ok(location, strlen(location)))
        return veil_errf(eb, VEIL_E_FORMAT,
                         "tensor '%s': external data location '%.128s' is not a plain relative "
                         "path (no '..', '.', empty or absolute components, printable ASCII)",
                         name, location);
    uint64_t offset = 0, length = t->nbytes;
    if (offset_s != NULL && !parse_decimal(offset_s, &offset))
        return veil_errf(eb, VEIL_E_FORMAT,
                         "tensor '%s': external data offset '%.32s' is not a "
                         "decimal number",
                         name, offset_s);
    if (length_s != NULL && (!parse_decimal(length_s, &length) || length != t->nbytes))
        return veil_errf(eb, VEIL_E_FORMAT,
                         "tensor '%s': external data length '%.32s' is not the %zu bytes its dims "
                         "need",
                         name, length_s, t->nbytes);
    if (pm->ext == NULL)
        return veil_errf(eb, VEIL_E_UNSUPPORTED,
                         "tensor '%s' stores its data in the external file '%s': load the model "
                         "from its folder or seal it with its data files (veil seal makes a "
                         "bundle)",
                         name, location);
    struct veil_span file = {0};
    veil_err rc = pm->ext->get(pm->ext->ctx, location, &file, eb);
    if (rc != VEIL_OK)
        return veil_err_prefix(eb, rc, "tensor '%s'", name);
    uint64_t end;
    if (__builtin_add_overflow(offset, (uint64_t)t->nbytes, &end) || end > file.len)
        return veil_errf(eb, VEIL_E_FORMAT,
                         "tensor '%s': bytes %llu to %llu of '%s' are needed, the file has %zu",
                         name, (unsigned long long)offset, (unsigned long long)offset + t->nbytes,
                         location, file.len);
    t->data = t->nbytes > 0 ? file.p + offset : NULL;
    return VEIL_OK;
}

static veil_err conv_tensor(struct parsed *pm, const VeilOnnx__TensorProto *tp,
                            struct veil_onnx_tensor *t, struct veil_errbuf *eb)
{
    const char *name = nz(tp->name);
    veil_err rc = check_name(tp->name, "tensor", eb);
    if (rc != VEIL_OK)
        return rc;
    t->name = name;
    bool external = tp->has_data_location &&
                    tp->data_location == VEIL_ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    if (tp->has_data_location && !external &&
        tp->data_location != VEIL_ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT)
        return veil_errf(eb, VEIL_E_FORMAT, "tensor '%s' has unknown data location %d", name,
                         (int)tp->data_location);
    if (!external && tp->n_external_data > 0)
        return veil_errf(eb, VEIL_E_FORMAT,
                         "tensor '%s' has external_data entries but is not stored externally",
                         name);
    if (!tp->has_data_type || !dtype_known(tp->data_type))
        return veil_errf(eb, tp->has_data_type ? dtype_err(tp->data_type) : VEIL_E_FORMAT,
                         "tensor '%s' has unsupported or unknown data type %d", name,
                         tp->has_data_type ? (int)tp->data_type : 0);
    if (tp->data_type == VEIL_DT_STRING)
        return veil_errf(eb, VEIL_E_UNSUPPORTED,
                         "tensor '%s' holds strings, which are not "
                         "supported",
                         name);
    t->dtype = (enum veil_dtype)tp->data_type;
    if (tp->n_dims > VEIL_LIMIT_TENSOR_RANK)
        return veil_errf(eb, VEIL_E_LIMIT, "tensor '%s' has rank %zu, above %d", name, tp->n_dims,
                         VEIL_LIMIT_TENSOR_RANK);
    t->rank = tp->n_dims;
    uint64_t numel = 1;
    for (size_t i = 0; i < tp->n_dims; i++) {
        if (tp->dims[i] < 0)
            return veil_errf(eb, VEIL_E_FORMAT, "tensor '%s' has negative dimension %lld", name,
                             (long long)tp->dims[i]);
        t->dims[i] = tp->dims[i];
        if (__builtin_mul_overflow(numel, (uint64_t)tp->dims[i], &numel))
            return veil_errf(eb, VEIL_E_LIMIT, "tensor '%s' has too many elements", name);
    }
    size_t esz = veil_dtype_size(t->dtype);
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, (uint64_t)esz, &nbytes) || nbytes > VEIL_LIMIT_MODEL_BYTES)
        return veil_errf(eb, VEIL_E_LIMIT, "tensor '%s' is larger than the model size cap", name);
    t->nbytes = (size_t)nbytes;
    t->data = NULL;
    if (external)
        return conv_external(pm, tp, t, eb);
    if (tp->has_raw_data) {
        if (tp->raw_data.len != nbytes)
            return veil_errf(eb, VEIL_E_FORMAT,
                             "tensor '%s' has %zu bytes of raw data, its dims need %llu", name,
                             tp->raw_data.len, (unsigned long long)nbytes);
        t->data = nbytes > 0 ? tp->raw_data.data : NULL;
        return VEIL_OK;
    }
    size_t have = 0;
    const void *src = NULL;
    switch (t->dtype) {
    case VEIL_DT_FLOAT:
        have = tp->n_float_data;
        src = tp->float_data;
        break;
    case VEIL_DT_INT64:
        have = tp->n_int64_data;
        src = tp->int64_data;
        break;
    case VEIL_DT_DOUBLE:
        have = tp->n_double_data;
        src = tp->double_data;
        break;
    case VEIL_DT_UINT64:
        have = tp->n_uint64_data;
        src = tp->uint64_data;
        break;
    case VEIL_DT_UINT32:
        have = tp->n_uint64_data;
        break;
    case VEIL_DT_INT32:
        have = tp->n_int32_data;
        src = tp->int32_data;
        break;
    default:
        have = tp->n_int32_data;
        break;
    }
    if (have != numel)
        return veil_errf(eb, VEIL_E_FORMAT,
                         "tensor '%s' has %zu elements of data, its dims "
                         "need %llu",
                         name, have, (unsigned long long)numel);
    if (numel == 0)
        return VEIL_OK;
    if (src != NULL) {
        t->data = src;
        return VEIL_OK;
    }
    /* Narrow types travel widened in int32_data (uint32 in uint64_data): narrow them here. */
    void *dst;
    rc = veil_arena_alloc(&pm->arena, (size_t)nbytes, 64, &dst);
    if (rc != VEIL_OK)
        return veil_errf(eb, rc, "tensor '%s': no memory for its data", name);
    for (size_t i = 0; i < numel; i++) {
        switch (t->dtype) {
        case VEIL_DT_UINT32:
            ((uint32_t *)dst)[i] = (uint32_t)tp->uint64_data[i];
            break;
        case VEIL_DT_UINT8:
            ((uint8_t *)dst)[i] = (uint8_t)tp->int32_data[i];
            break;
        case VEIL_DT_INT8:
            ((int8_t *)dst)[i] = (int8_t)tp->int32_data[i];
            break;
        case VEIL_DT_BOOL:
            ((uint8_t *)dst)[i] = tp->int32_data[i] != 0;
            break;
        case VEIL_DT_UINT16:
        case VEIL_DT_FLOAT16:
        case VEIL_DT_BFLOAT16:
            /* The two 16-bit float types travel as their bit patterns (onnx.proto). */
            ((uint16_t *)dst)[i] = (uint16_t)tp->int32_data[i];
            break;
        case VEIL_DT_INT16:
            ((int16_t *)dst)[i] = (int16_t)tp->int32_data[i];
            break;
        default:
            return veil_errf(eb, VEIL_E_INTERNAL, "tensor '%s': unexpected dtype", name);
        }
    }
    t->data = dst;
    return VEIL_OK;
}

static veil_err conv_value_info(const VeilOnnx__ValueInfoProto *vi, struct veil_onnx_value_info *o,
                                struct veil_errbuf *eb)
{
    veil_err rc = check_name(vi->name, "value", eb);
    if (rc != VEIL_OK)
        return rc;
    o->name = nz(vi->name);
    if (o->name[0] == '\0')
        return veil_errf(eb, VEIL_E_FORMAT, "a graph input or output has no name");
    o->dtype = VEIL_DT_UNDEFINED;
    o->has_shape = false;
    o->rank = 0;
    const VeilOnnx__TypeProto__Tensor *tt = vi->type != NULL ? vi->type->tensor_type : NULL;
    if (tt == NULL)
        return VEIL_OK;
    if (tt->has_elem_type) {
        if (tt->elem_type != 0 && !dtype_known(tt->elem_type))
            return veil_errf(eb, dtype_err(tt->elem_type),
                             "value '%s' has unsupported or unknown "
                             "element type %d",
                             o->name, (int)tt->elem_type);
        o->dtype = (enum veil_dtype)tt->elem_type;
    }
    if (tt->shape == NULL)
        return VEIL_OK;
    if (tt->shape->n_dim > VEIL_LIMIT_TENSOR_RANK)
        return veil_errf(eb, VEIL_E_LIMIT, "value '%s' has rank %zu, above %d", o->name,
                         tt->shape->n_dim, VEIL_LIMIT_TENSOR_RANK);
    o->has_shape = true;
    o->rank = tt->shape->n_dim;
    for (size_t i = 0; i < o->rank; i++) {
        const VeilOnnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        if (d->has_dim_value) {
            if (d->dim_value < 0)
                return veil_errf(eb, VEIL_E_FORMAT, "value '%s' has negative dimension %lld",
                                 o->name, (long long)d->dim_value);
            o->dims[i] = d->dim_value;
        } else {
            o->dims[i] = -1;
        }
    }
    return VEIL_OK;
}

static veil_err conv_attr(struct parsed *pm, const VeilOnnx__AttributeProto *ap,
                          struct veil_onnx_attr *a, const char *node, struct veil_errbuf *eb)
{
    veil_err rc = check_name(ap->name, "attribute", eb);
    if (rc != VEIL_OK)
        return rc;
    a->name = nz(ap->name);
    if (ap->ref_attr_name != NULL)
        return veil_errf(eb, VEIL_E_UNSUPPORTED,
                         "node '%s': attribute '%s' refers to a function "
                         "attribute",
                         node, a->name);
    if (ap->n_floats > VEIL_ONNX_MAX_ATTR_LIST || ap->n_ints > VEIL_ONNX_MAX_ATTR_LIST ||
        ap->n_strings > VEIL_ONNX_MAX_ATTR_LIST)
        return veil_errf(eb, VEIL_E_LIMIT, "node '%s': attribute '%s' has too many elements", node,
                         a->name);
    a->type = ap->has_type ? (enum veil_onnx_attr_type)ap->type : VEIL_ONNX_ATTR_UNDEFINED;
    a->f = ap->f;
    a->i = ap->i;
    a->s = ap->has_s ? veil_span_make(ap->s.data, ap->s.len) : veil_span_make("", 0);
    a->floats = ap->floats;
    a->ints = ap->ints;
    a->strings = NULL;
    a->t = NULL;
    a->g = NULL;
    a->n = 0;
    switch (a->type) {
    case VEIL_ONNX_ATTR_FLOATS:
        a->n = ap->n_floats;
        break;
    case VEIL_ONNX_ATTR_INTS:
        a->n = ap->n_ints;
        break;
    case VEIL_ONNX_ATTR_STRINGS: {
        struct veil_span *sv;
        rc = veil_arena_allocarray(&pm->arena, ap->n_strings + 1, sizeof(*sv), 8, (void **)&sv);
        if (rc != VEIL_OK)
            return veil_errf(eb, rc, "no memory for attributes");
        for (size_t i = 0; i < ap->n_strings; i++)
            sv[i] = veil_span_make(ap->strings[i].data, ap->strings[i].len);
        a->strings = sv;
        a->n = ap->n_strings;
        break;
    }
    case VEIL_ONNX_ATTR_TENSOR: {
        if (ap->t == NULL)
            return veil_errf(eb, VEIL_E_FORMAT, "node '%s': tensor attribute '%s' has no tensor",
                             node, a->name);
        struct veil_onnx_tensor *t;
        rc = veil_arena_alloc(&pm->arena, sizeof(*t), 8, (void **)&t);
        if (rc != VEIL_OK)
            return veil_errf(eb, rc, "no memory for attributes");
        rc = conv_tensor(pm, ap->t, t, eb);
        if (rc != VEIL_OK)
            return veil_err_prefix(eb, rc, "node '%s' attribute '%s'", node, a->name);
        a->t = t;
        break;
    }
    case VEIL_ONNX_ATTR_GRAPH: {
        if (ap->g == NULL)
            return veil_errf(eb, VEIL_E_FORMAT, "node '%s': graph attribute '%s' has no graph",
                             node, a->name);
        struct veil_onnx_graph *sub;
        rc = veil_arena_alloc(&pm->arena, sizeof(*sub), 8, (void **)&sub);
        if (rc != VEIL_OK)
            return veil_errf(eb, rc, "no memory for a subgraph");
        rc = conv_graph(pm, ap->g, sub, eb);
        if (rc != VEIL_OK)
            return veil_err_prefix(eb, rc, "node '%s' attribute '%s'", node, a->name);
        a->g = sub;
        break;
    }
    case VEIL_ONNX_ATTR_UNDEFINED:
        /* Writers that omit the type field still set exactly one value; a graph is one. */
        if (ap->g != NULL)
            return veil_errf(eb, VEIL_E_FORMAT,
                             "node '%s': attribute '%s' holds a graph but has no type", node,
                             a->name);
        break;
    default:
        if ((int)a->type == 10 || ap->n_graphs > 0)
            return veil_errf(eb, VEIL_E_UNSUPPORTED,
                             "node '%s': attribute '%s' is a list of graphs, which no supported "
                             "operator takes",
                             node, a->name);
        break;
    }
    return VEIL_OK;
}

static veil_err conv_names(struct parsed *pm, char **names, size_t n, const char *const **out,
                           const char *node, struct veil_errbuf *eb)
{
    if (n > VEIL_ONNX_MAX_NODE_IO)
        return veil_errf(eb, VEIL_E_LIMIT, "node '%s' has more than %u inputs or outputs", node,
                         VEIL_ONNX_MAX_NODE_IO);
    const char **arr;
    veil_err rc = veil_arena_allocarray(&pm->arena, n + 1, sizeof(*arr), 8, (void **)&arr);
    if (rc != VEIL_OK)
        return veil_errf(eb, rc, "no memory for node names");
    for (size_t i = 0; i < n; i++) {
        rc = check_name(names[i], "value", eb);
        if (rc != VEIL_OK)
            return rc;
        arr[i] = nz(names[i]);
    }
    *out = arr;
    return VEIL_OK;
}

static veil_err conv_graph(struct parsed *pm, const VeilOnnx__GraphProto *g,
                           struct veil_onnx_graph *out, struct veil_errbuf *eb)
{
    veil_err rc;
    if (g->n_sparse_initializer > 0)
        return veil_errf(eb, VEIL_E_UNSUPPORTED, "sparse initializers are not supported");
    if (g->n_node > VEIL_ONNX_MAX_NODES - pm->total_nodes)
        return veil_errf(eb, VEIL_E_LIMIT, "graphs have more than %u nodes in all",
                         VEIL_ONNX_MAX_NODES);
    pm->total_nodes += g->n_node;
    rc = check_name(g->name, "graph", eb);
    if (rc != VEIL_OK)
        return rc;
    if (g->n_initializer > VEIL_ONNX_MAX_INITIALIZERS)
        return veil_errf(eb, VEIL_E_LIMIT, "graph has %zu initializers, above %u", g->n_initializer,
                         VEIL_ONNX_MAX_INITIALIZERS);
    if (g->n_input > VEIL_ONNX_MAX_IO || g->n_output > VEIL_ONNX_MAX_IO)
        return veil_errf(eb, VEIL_E_LIMIT, "graph has more than %u inputs or outputs",
                         VEIL_ONNX_MAX_IO);
    struct veil_onnx_tensor *inits;
    struct veil_onnx_value_info *ins, *outs;
    struct veil_onnx_node *nodes;
    if ((rc = veil_arena_allocarray(&pm->arena, g->n_initializer + 1, sizeof(*inits), 8,
                                    (void **)&inits)) != VEIL_OK ||
        (rc = veil_arena_allocarray(&pm->arena, g->n_input + 1, sizeof(*ins), 8, (void **)&ins)) !=
            VEIL_OK ||
        (rc = veil_arena_allocarray(&pm->arena, g->n_output + 1, sizeof(*outs), 8,
                                    (void **)&outs)) != VEIL_OK ||
        (rc = veil_arena_allocarray(&pm->arena, g->n_node + 1, sizeof(*nodes), 8,
                                    (void **)&nodes)) != VEIL_OK)
        return veil_errf(eb, rc, "no memory for the graph");
    for (size_t i = 0; i < g->n_initializer; i++) {
        rc = conv_tensor(pm, g->initializer[i], &inits[i], eb);
        if (rc != VEIL_OK)
            return veil_err_prefix(eb, rc, "initializer %zu", i);
        if (inits[i].name[0] == '\0')
            return veil_errf(eb, VEIL_E_FORMAT, "initializer %zu has no name", i);
    }
    for (size_t i = 0; i < g->n_input; i++)
        if ((rc = conv_value_info(g->input[i], &ins[i], eb)) != VEIL_OK)
            return veil_err_prefix(eb, rc, "graph input %zu", i);
    for (size_t i = 0; i < g->n_output; i++)
        if ((rc = conv_value_info(g->output[i], &outs[i], eb)) != VEIL_OK)
            return veil_err_prefix(eb, rc, "graph output %zu", i);
    for (size_t i = 0; i < g->n_node; i++) {
        const VeilOnnx__NodeProto *np = g->node[i];
        struct veil_onnx_node *n = &nodes[i];
        if ((rc = check_name(np->name, "node", eb)) != VEIL_OK ||
            (rc = check_name(np->op_type, "operator", eb)) != VEIL_OK ||
            (rc = check_name(np->domain, "domain", eb)) != VEIL_OK)
            return rc;
        n->name = nz(np->name);
        n->op_type = nz(np->op_type);
        n->domain = nz(np->domain);
        const char *label = n->name[0] != '\0' ? n->name : n->op_type;
        if (n->op_type[0] == '\0')
            return veil_errf(eb, VEIL_E_FORMAT, "node %zu has no operator type", i);
        if ((rc = conv_names(pm, np->input, np->n_input, &n->inputs, label, eb)) != VEIL_OK ||
            (rc = conv_names(pm, np->output, np->n_output, &n->outputs, label, eb)) != VEIL_OK)
            return rc;
        n->n_inputs = np->n_input;
        n->n_outputs = np->n_output;
        if (np->n_attribute > VEIL_ONNX_MAX_ATTRS)
            return veil_errf(eb, VEIL_E_LIMIT, "node '%s' has more than %u attributes", label,
                             VEIL_ONNX_MAX_ATTRS);
        struct veil_onnx_attr *attrs;
        rc = veil_arena_allocarray(&pm->arena, np->n_attribute + 1, sizeof(*attrs), 8,
                                   (void **)&attrs);
        if (rc != VEIL_OK)
            return veil_errf(eb, rc, "no memory for attributes");
        for (size_t k = 0; k < np->n_attribute; k++)
            if ((rc = conv_attr(pm, np->attribute[k], &attrs[k], label, eb)) != VEIL_OK)
                return rc;
        n->attrs = attrs;
        n->n_attrs = np->n_attribute;
    }
    out->name = nz(g->name);
    out->initializers = inits;
    out->n_initializers = g->n_initializer;
    out->inputs = ins;
    out->n_inputs = g->n_input;
    out->outputs = outs;
    out->n_outputs = g->n_output;
    out->nodes = nodes;
    out->n_nodes = g->n_node;
    return VEIL_OK;
}

/*
 * Subgraph nesting, checked on the wire before protobuf-c decodes anything: its decoder
 * recurses once per nested message and has no depth limit, so a model of If nodes nested a
 * million deep would exhaust the stack. The walk follows only the fields that lead to nested
 * graphs (ModelProto.graph 7, GraphProto.node 1, NodeProto.attribute 5, AttributeProto.g 6
 * and graphs 11) and skips every other field by its wire type; anything malformed is left
 * for the decoder to refuse.
 */
enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

enum nest_kind { NEST_MODEL, NEST_GRAPH, NEST_NODE, NEST_ATTR, NEST_TENSOR };

static bool nest_ok(struct veil_span s, enum nest_kind kind, unsigned depth)
{
    while (s.len > 0) {
        uint64_t key, v;
        struct veil_span sub;
        if (veil_span_get_varint(&s, &key) != VEIL_OK)
            return true;
        uint64_t field = key >> 3;
        switch (key & 7u) {
        case WIRE_VARINT:
            if (veil_span_get_varint(&s, &v) != VEIL_OK)
                return true;
            continue;
        case WIRE_I64:
            if (veil_span_skip(&s, 8) != VEIL_OK)
                return true;
            continue;
        case WIRE_I32:
            if (veil_span_skip(&s, 4) != VEIL_OK)
                return true;
            continue;
        case WIRE_LEN:
            if (veil_span_get_varint(&s, &v) != VEIL_OK || v > s.len ||
                veil_span_get_bytes(&s, (size_t)v, &sub) != VEIL_OK)
                return true;
            break;
        default:
            return true;
        }
        bool ok = true;
        if (kind == NEST_MODEL && field == 7)
            ok = nest_ok(sub, NEST_GRAPH, depth);
        else if (kind == NEST_GRAPH && field == 1)
            ok = nest_ok(sub, NEST_NODE, depth);
        else if (kind == NEST_NODE && field == 5)
            ok = nest_ok(sub, NEST_ATTR, depth);
        else if (kind == NEST_ATTR && (field == 6 || field == 11))
            ok = depth < VEIL_ONNX_MAX_GRAPH_DEPTH && nest_ok(sub, NEST_GRAPH, depth + 1);
        if (!ok)
            return false;
    }
    return true;
}

/*
 * Whether a message of the given kind names external data anywhere below it: TensorProto's
 * data_location (14) is EXTERNAL or it has external_data (13) entries, reached through
 * GraphProto.initializer (5), AttributeProto.t (5) and the nesting path of nest_ok. Called after
 * nest_ok accepted the bytes, so the recursion is bounded by the same depth.
 */
static bool names_external(struct veil_span s, enum nest_kind kind)
{
    while (s.len > 0) {
        uint64_t key, v;
        struct veil_span sub;
        if (veil_span_get_varint(&s, &key) != VEIL_OK)
            return false;
        uint64_t field = key >> 3;
        switch (key & 7u) {
        case WIRE_VARINT:
            if (veil_span_get_varint(&s, &v) != VEIL_OK)
                return false;
            if (kind == NEST_TENSOR && field == 14 && v == 1)
                return true;
            continue;
        case WIRE_I64:
            if (veil_span_skip(&s, 8) != VEIL_OK)
                return false;
            continue;
        case WIRE_I32:
            if (veil_span_skip(&s, 4) != VEIL_OK)
                return false;
            continue;
        case WIRE_LEN:
            if (veil_span_get_varint(&s, &v) != VEIL_OK || v > s.len ||
                veil_span_get_bytes(&s, (size_t)v, &sub) != VEIL_OK)
                return false;
            break;
        default:
            return false;
        }
        bool found = false;
        if (kind == NEST_TENSOR && field == 13)
            return true;
        if (kind == NEST_MODEL && field == 7)
            found = names_external(sub, NEST_GRAPH);
        else if (kind == NEST_GRAPH && field == 1)
            found = names_external(sub, NEST_NODE);
        else if (kind == NEST_GRAPH && field == 5)
            found = names_external(sub, NEST_TENSOR);
        else if (kind == NEST_NODE && field == 5)
            found = names_external(sub, NEST_ATTR);
        else if (kind == NEST_ATTR && field == 5)
            found = names_external(sub, NEST_TENSOR);
        else if (kind == NEST_ATTR && (field == 6 || field == 11))
            found = names_external(sub, NEST_GRAPH);
        if (found)
            return true;
    }
    return false;
}

bool veil_onnx_has_external_data(struct veil_span bytes)
{
    return bytes.len > 0 && nest_ok(bytes, NEST_MODEL, 0) && names_external(bytes, NEST_MODEL);
}

veil_err veil_onnx_parse(struct veil_span bytes, struct veil_onnx_model **out,
                         struct veil_errbuf *eb)
{
    return veil_onnx_parse_external(bytes, NULL, out, eb);
}

veil_err veil_onnx_parse_external(struct veil_span bytes, const struct veil_onnx_external *ext,
                                  struct veil_onnx_model **out, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_onnx_model *m = NULL;
    struct parsed *pm = NULL;
    ProtobufCAllocator alloc = {pb_alloc, pb_free, NULL};

    *out = NULL;
    if (bytes.len > VEIL_LIMIT_MODEL_BYTES)
        return veil_errf(eb, VEIL_E_LIMIT, "model of %zu bytes is above the %llu-byte cap",
                         bytes.len, (unsigned long long)VEIL_LIMIT_MODEL_BYTES);
    if (bytes.len == 0)
        return veil_errf(eb, VEIL_E_FORMAT, "model is empty");
    m = veil_calloc(1, sizeof(*m));
    pm = veil_calloc(1, sizeof(*pm));
    if (m == NULL || pm == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for the model");
        goto out;
    }
    veil_arena_init(&pm->arena, 64u << 10, (size_t)VEIL_LIMIT_MODEL_BYTES);
    m->priv = pm;
    pm->ext = ext;
    if (!nest_ok(bytes, NEST_MODEL, 0)) {
        rc = veil_errf(eb, VEIL_E_LIMIT, "subgraphs are nested more than %u deep",
                       VEIL_ONNX_MAX_GRAPH_DEPTH);
        goto out;
    }
    pm->pb = veil_onnx__model_proto__unpack(&alloc, bytes.len, bytes.p);
    if (pm->pb == NULL) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "not a valid ONNX model (protobuf decoding failed)");
        goto out;
    }
    if (pm->pb->graph == NULL) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "ONNX model has no graph");
        goto out;
    }
    m->ir_version = pm->pb->has_ir_version ? pm->pb->ir_version : 0;
    m->producer_name = nz(pm->pb->producer_name);
    m->opset = -1;
    for (size_t i = 0; i < pm->pb->n_opset_import; i++) {
        const VeilOnnx__OperatorSetIdProto *os = pm->pb->opset_import[i];
        const char *d = nz(os->domain);
        if (d[0] == '\0' || strcmp(d, "ai.onnx") == 0)
            m->opset = os->has_version ? os->version : 0;
    }
    if (m->opset < 0) {
        rc = veil_errf(eb, VEIL_E_UNSUPPORTED,
                       "ONNX model imports no default-domain operator "
                       "set (only the default domain is supported)");
        goto out;
    }
    if (m->opset < VEIL_ONNX_OPSET_MIN || m->opset > VEIL_ONNX_OPSET_MAX) {
        rc = veil_errf(eb, VEIL_E_UNSUPPORTED, "ONNX opset %lld is not supported (%d to %d are)",
                       (long long)m->opset, VEIL_ONNX_OPSET_MIN, VEIL_ONNX_OPSET_MAX);
        goto out;
    }
    {
        struct veil_onnx_graph main;
        rc = conv_graph(pm, pm->pb->graph, &main, eb);
        if (rc != VEIL_OK)
            goto out;
        m->nodes = main.nodes;
        m->n_nodes = main.n_nodes;
        m->initializers = main.initializers;
        m->n_initializers = main.n_initializers;
        m->inputs = main.inputs;
        m->n_inputs = main.n_inputs;
        m->outputs = main.outputs;
        m->n_outputs = main.n_outputs;
    }
    *out = m;
    m = NULL;
    rc = VEIL_OK;
out:
    veil_onnx_model_free(m);
    return rc;
}

void veil_onnx_model_free(struct veil_onnx_model *m)
{
    if (m == NULL)
        return;
    struct parsed *pm = m->priv;
    if (pm != NULL) {
        ProtobufCAllocator alloc = {pb_alloc, pb_free, NULL};
        if (pm->pb != NULL)
            veil_onnx__model_proto__free_unpacked(pm->pb, &alloc);
        veil_arena_release(&pm->arena);
        veil_free(pm);
    }
    veil_free(m);
}

const struct veil_onnx_attr *veil_onnx_node_attr(const struct veil_onnx_node *n, const char *name)
{
    for (size_t i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0)
            return &n->attrs[i];
    return NULL;
}

struct tensor_priv {
    struct parsed pm;
    VeilOnnx__TensorProto *tp;
};

veil_err veil_onnx_parse_tensor(struct veil_span bytes, struct veil_onnx_tensor_file *out,
                                struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    ProtobufCAllocator alloc = {pb_alloc, pb_free, NULL};
    struct tensor_priv *tp = NULL;

    memset(out, 0, sizeof(*out));
    if (bytes.len > VEIL_LIMIT_MODEL_BYTES)
        return veil_errf(eb, VEIL_E_LIMIT, "tensor file above the size cap");
    tp = veil_calloc(1, sizeof(*tp));
    if (tp == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for a tensor");
    veil_arena_init(&tp->pm.arena, 64u << 10, (size_t)VEIL_LIMIT_MODEL_BYTES);
    out->priv = tp;
    tp->tp = veil_onnx__tensor_proto__unpack(&alloc, bytes.len, bytes.p);
    if (tp->tp == NULL) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "not a valid TensorProto");
        goto out;
    }
    if ((rc = conv_tensor(&tp->pm, tp->tp, &out->t, eb)) != VEIL_OK)
        goto out;
    return VEIL_OK;
out:
    veil_onnx_tensor_file_release(out);
    return rc;
}

void veil_onnx_tensor_file_release(struct veil_onnx_tensor_file *tf)
{
    struct tensor_priv *tp = tf->priv;
    if (tp != NULL) {
        ProtobufCAllocator alloc = {pb_alloc, pb_free, NULL};
        if (tp->tp != NULL)
            veil_onnx__tensor_proto__free_unpacked(tp->tp, &alloc);
        veil_arena_release(&tp->pm.arena);
        veil_free(tp);
    }
    memset(tf, 0, sizeof(*tf));
}
