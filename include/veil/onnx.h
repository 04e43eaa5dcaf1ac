/*
 * veil/onnx.h: the ONNX model parser. Turns the bytes of an ONNX ModelProto into a plain,
 * read-only description of its graph (nodes, attributes, initializers, inputs, outputs) that
 * the engine builds its IR from. The parser is a pure function of its input: no I/O, no
 * globals, no logging. It checks every size, rank, count and dtype against the caps below.
 * Tensors whose data lives outside the model (ONNX external data) are read through a source the
 * caller gives: a folder (the module's only I/O, veil_onnx_dir_*) or a bundle, the plaintext of
 * a sealed model that holds the model and its data files (veil_onnx_bundle_*). The formats and
 * rules are in docs/format/external-data.md.
 *
 * The element type enum lives here, at the lowest module that needs it; veil/engine.h
 * includes this header, so engine users see it too.
 */
#ifndef VEIL_ONNX_H
#define VEIL_ONNX_H

#include "veil/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Element types, numbered as ONNX's TensorProto.DataType (a fact of the format). */
enum veil_dtype {
    VEIL_DT_UNDEFINED = 0,
    VEIL_DT_FLOAT = 1,
    VEIL_DT_UINT8 = 2,
    VEIL_DT_INT8 = 3,
    VEIL_DT_UINT16 = 4,
    VEIL_DT_INT16 = 5,
    VEIL_DT_INT32 = 6,
    VEIL_DT_INT64 = 7,
    VEIL_DT_STRING = 8,
    VEIL_DT_BOOL = 9,
    VEIL_DT_FLOAT16 = 10,
    VEIL_DT_DOUBLE = 11,
    VEIL_DT_UINT32 = 12,
    VEIL_DT_UINT64 = 13,
    /* 14 and 15 (complex64, complex128) are not supported. */
    VEIL_DT_BFLOAT16 = 16,
};

/* Bytes per element of a fixed-size dtype; 0 for UNDEFINED, STRING and unknown values. */
size_t veil_dtype_size(enum veil_dtype dt);
/* ONNX's name of the dtype ("float", "int64", ...); "undefined" for unknown values. */
const char *veil_dtype_name(enum veil_dtype dt);

/* Caps on what a model may declare (STYLE rule 23); over a cap the parse fails VEIL_E_LIMIT. */
#define VEIL_ONNX_MAX_NODES 100000u        /* nodes in the graph */
#define VEIL_ONNX_MAX_INITIALIZERS 100000u /* initializers in the graph */
#define VEIL_ONNX_MAX_IO 4096u             /* graph inputs, and graph outputs */
#define VEIL_ONNX_MAX_NODE_IO 4096u        /* inputs, and outputs, of one node */
#define VEIL_ONNX_MAX_ATTRS 256u           /* attributes of one node */
#define VEIL_ONNX_MAX_NAME 4096u           /* bytes of any name */
#define VEIL_ONNX_MAX_ATTR_LIST 65536u     /* elements of a list-valued attribute */
#define VEIL_ONNX_MAX_GRAPH_DEPTH 16u      /* subgraphs nested inside subgraphs, all levels */

/* Attribute kinds, numbered as ONNX's AttributeProto.AttributeType. */
enum veil_onnx_attr_type {
    VEIL_ONNX_ATTR_UNDEFINED = 0,
    VEIL_ONNX_ATTR_FLOAT = 1,
    VEIL_ONNX_ATTR_INT = 2,
    VEIL_ONNX_ATTR_STRING = 3,
    VEIL_ONNX_ATTR_TENSOR = 4,
    VEIL_ONNX_ATTR_GRAPH = 5,
    VEIL_ONNX_ATTR_FLOATS = 6,
    VEIL_ONNX_ATTR_INTS = 7,
    VEIL_ONNX_ATTR_STRINGS = 8,
};

/*
 * A dense tensor: an initializer or a tensor-valued attribute. data holds nbytes bytes of
 * row-major, little-endian elements of dtype (nbytes == numel * veil_dtype_size(dtype),
 * checked), and may be NULL only when nbytes is 0. dtype is never STRING or UNDEFINED.
 */
struct veil_onnx_tensor {
    const char *name;
    enum veil_dtype dtype;
    size_t rank;
    int64_t dims[VEIL_LIMIT_TENSOR_RANK];
    const void *data;
    size_t nbytes;
};

struct veil_onnx_graph;

/* One attribute. Only the members of its type are meaningful; list members hold n elements. */
struct veil_onnx_attr {
    const char *name;
    enum veil_onnx_attr_type type;
    float f;
    int64_t i;
    struct veil_span s;
    const struct veil_onnx_tensor *t; /* VEIL_ONNX_ATTR_TENSOR */
    const struct veil_onnx_graph *g;  /* VEIL_ONNX_ATTR_GRAPH: a subgraph (If, Loop, Scan) */
    const float *floats;              /* VEIL_ONNX_ATTR_FLOATS */
    const int64_t *ints;              /* VEIL_ONNX_ATTR_INTS */
    const struct veil_span *strings;  /* VEIL_ONNX_ATTR_STRINGS (bytes, not NUL-terminated) */
    size_t n;                         /* element count of FLOATS, INTS or STRINGS */
};

/* One node. An input named "" is an omitted optional input. */
struct veil_onnx_node {
    const char *name;
    const char *op_type;
    const char *domain; /* "" for the default ONNX domain */
    const char *const *inputs;
    size_t n_inputs;
    const char *const *outputs;
    size_t n_outputs;
    const struct veil_onnx_attr *attrs;
    size_t n_attrs;
};

/* A declared graph input or output. dims[i] < 0 is a dynamic (named or unknown) dimension. */
struct veil_onnx_value_info {
    const char *name;
    enum veil_dtype dtype; /* VEIL_DT_UNDEFINED when the model does not say */
    bool has_shape;
    size_t rank;
    int64_t dims[VEIL_LIMIT_TENSOR_RANK];
};

/*
 * A graph: the model's main graph or a subgraph held by a GRAPH attribute. A subgraph may read
 * values of the graphs around it by name (ONNX's outer scope); the parser does not resolve
 * names, the engine does.
 */
struct veil_onnx_graph {
    const char *name;
    const struct veil_onnx_node *nodes;
    size_t n_nodes;
    const struct veil_onnx_tensor *initializers;
    size_t n_initializers;
    const struct veil_onnx_value_info *inputs;
    size_t n_inputs;
    const struct veil_onnx_value_info *outputs;
    size_t n_outputs;
};

/*
 * A parsed model. Everything is owned by the model and read-only; it is valid until
 * veil_onnx_model_free. Graph inputs that are also initializers (IR version < 4) are listed
 * in inputs as the file declares them. nodes, initializers, inputs and outputs are those of
 * the main graph; subgraphs hang off their nodes' GRAPH attributes, nested at most
 * VEIL_ONNX_MAX_GRAPH_DEPTH deep, with at most VEIL_ONNX_MAX_NODES nodes over all graphs.
 */
struct veil_onnx_model {
    int64_t ir_version;
    int64_t opset; /* version of the default ("" or "ai.onnx") operator set */
    const char *producer_name;
    const struct veil_onnx_node *nodes;
    size_t n_nodes;
    const struct veil_onnx_tensor *initializers;
    size_t n_initializers;
    const struct veil_onnx_value_info *inputs;
    size_t n_inputs;
    const struct veil_onnx_value_info *outputs;
    size_t n_outputs;
    void *priv; /* the decoded protobuf and the model's arena; not for callers */
};

/* The opsets of the default domain that the parser accepts. */
#define VEIL_ONNX_OPSET_MIN 7
#define VEIL_ONNX_OPSET_MAX 21

/*
 * Parses an ONNX ModelProto from bytes (borrowed for the call only; the result keeps no
 * reference to them) into *out, which the caller frees with veil_onnx_model_free. *out is
 * NULL on failure, and eb says what is wrong and where (node or tensor name).
 * Errors: VEIL_E_FORMAT (malformed protobuf, missing graph, data size not matching dims,
 * negative dims, unknown dtype), VEIL_E_UNSUPPORTED (external data: see
 * veil_onnx_parse_external; sparse initializers,
 * string tensors, a GRAPHS (list of graphs) attribute, default-domain opset outside
 * VEIL_ONNX_OPSET_MIN..MAX), VEIL_E_LIMIT (a cap above, a rank above VEIL_LIMIT_TENSOR_RANK, more
 * than VEIL_LIMIT_MODEL_BYTES of input, size overflow), VEIL_E_NOMEM. Thread-safe; a pure function
 * of the bytes.
 */
VEIL_NODISCARD veil_err veil_onnx_parse(struct veil_span bytes, struct veil_onnx_model **out,
                                        struct veil_errbuf *eb) VEIL_NONNULL(2);

/* Caps on external data (docs/format/external-data.md). */
#define VEIL_ONNX_MAX_EXTERNAL_FILES 4096u /* distinct files one model's tensors name */
#define VEIL_ONNX_MAX_LOCATION 1024u       /* bytes of a location (a relative path) */

/*
 * Where the files named by a model's external data come from. get() puts in *bytes the whole
 * content of the file at location, which the parser has already checked with
 * veil_onnx_location_ok; the bytes must stay valid until the parsed model is freed. It returns
 * VEIL_OK or an error with eb naming the problem (VEIL_E_NOTFOUND for a file that is not there).
 */
struct veil_onnx_external {
    veil_err (*get)(void *ctx, const char *location, struct veil_span *bytes,
                    struct veil_errbuf *eb);
    void *ctx;
};

/*
 * Whether s (len bytes, not NUL-terminated) is a location Veil accepts: 1 to
 * VEIL_ONNX_MAX_LOCATION bytes of printable ASCII other than a backslash, '/'-separated
 * components none of which is empty, "." or "..", not starting with '/'. Pure.
 */
bool veil_onnx_location_ok(const char *s, size_t len);

/*
 * As veil_onnx_parse, reading the data of tensors stored as external data through ext (NULL:
 * such tensors are refused with VEIL_E_UNSUPPORTED naming the tensor and its file). The parsed
 * model's tensors may point into the bytes ext returned. Further errors: VEIL_E_FORMAT (a
 * malformed external_data entry, a location outside the rules, a range outside the file), and
 * whatever ext->get returns, prefixed with the tensor's name. Thread-safe when ext is.
 */
VEIL_NODISCARD veil_err veil_onnx_parse_external(struct veil_span bytes,
                                                 const struct veil_onnx_external *ext,
                                                 struct veil_onnx_model **out,
                                                 struct veil_errbuf *eb) VEIL_NONNULL(3);

/*
 * Whether the model in bytes stores any tensor as external data (an initializer or a tensor
 * attribute, in any subgraph), by a walk over the protobuf wire format that decodes nothing
 * else: cheap even for a model of several GiB. Malformed bytes give false (the parse that
 * follows reports them). Pure.
 */
bool veil_onnx_has_external_data(struct veil_span bytes);

/*
 * A folder of external data files: the source for a plaintext model read from disk. Files are
 * opened below dir only (openat2 with RESOLVE_BENEATH, so no symbolic link leads out of it),
 * mapped read-only on first use, at most VEIL_ONNX_MAX_EXTERNAL_FILES of them, and unmapped by
 * veil_onnx_dir_free.
 */
struct veil_onnx_dir;

/* Opens dir as a source. Errors: VEIL_E_NOTFOUND, VEIL_E_PERM, VEIL_E_IO naming dir. */
VEIL_NODISCARD veil_err veil_onnx_dir_open(const char *dir, struct veil_onnx_dir **out,
                                           struct veil_errbuf *eb) VEIL_NONNULL(1, 2);

/* The source to give veil_onnx_parse_external; valid while d is. Not thread-safe. */
struct veil_onnx_external veil_onnx_dir_external(struct veil_onnx_dir *d) VEIL_NONNULL(1);

/* Files opened so far, in the order they were first named, and each one's location and size. */
size_t veil_onnx_dir_count(const struct veil_onnx_dir *d) VEIL_NONNULL(1);
const char *veil_onnx_dir_location(const struct veil_onnx_dir *d, size_t i) VEIL_NONNULL(1);
uint64_t veil_onnx_dir_size(const struct veil_onnx_dir *d, size_t i) VEIL_NONNULL(1);

/* Unmaps every file and frees d. NULL is a no-op. */
void veil_onnx_dir_free(struct veil_onnx_dir *d);

/* The sealed-header content type of a bundle (docs/format/external-data.md). */
#define VEIL_ONNX_BUNDLE_CONTENT_TYPE "application/vnd.veil.onnx-bundle"
#define VEIL_ONNX_BUNDLE_MAX_FILES (VEIL_ONNX_MAX_EXTERNAL_FILES + 1u)

/* One file of a bundle: its name (NUL-terminated) and its bytes, inside the bundle's bytes. */
struct veil_onnx_bundle_file {
    const char *name;
    struct veil_span bytes;
};

/* A parsed bundle. files[0] is the model; the rest are its external data files. */
struct veil_onnx_bundle {
    const struct veil_onnx_bundle_file *files;
    size_t n_files;
    void *priv;
};

/*
 * Parses the bundle in bytes (borrowed: the result points into them, so they must outlive it)
 * into *out, released with veil_onnx_bundle_release. Errors: VEIL_E_FORMAT (each rule of the
 * format, naming the entry), VEIL_E_UNSUPPORTED (another version), VEIL_E_NOMEM. Pure.
 */
VEIL_NODISCARD veil_err veil_onnx_bundle_parse(struct veil_span bytes, struct veil_onnx_bundle *out,
                                               struct veil_errbuf *eb) VEIL_NONNULL(2);

/* The source of a bundle's external files, looked up by name; valid while b is. Thread-safe. */
struct veil_onnx_external veil_onnx_bundle_external(const struct veil_onnx_bundle *b)
    VEIL_NONNULL(1);

/* Frees what veil_onnx_bundle_parse allocated and zeroes *b. Safe on a zeroed struct. */
void veil_onnx_bundle_release(struct veil_onnx_bundle *b);

/*
 * Appends to out the head of a bundle of n files (names[i] of sizes[i] bytes, names[0] the
 * model): everything before the files' bytes, which follow it in order. The result is the one
 * valid layout for those files. Errors: VEIL_E_INVALID (a count out of range, a name outside
 * veil_onnx_location_ok, a duplicate name), VEIL_E_LIMIT (the total above
 * VEIL_LIMIT_BUNDLE_BYTES), VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_onnx_bundle_head(const char *const *names, const uint64_t *sizes,
                                              size_t n, struct veil_buf *out,
                                              struct veil_errbuf *eb) VEIL_NONNULL(4);

/* A standalone tensor parsed from a serialized TensorProto (ONNX's .pb test data files). */
struct veil_onnx_tensor_file {
    struct veil_onnx_tensor t; /* t.data and t.name point into priv */
    void *priv;
};

/*
 * Parses one serialized TensorProto from bytes (borrowed for the call) into *out, which the
 * caller releases with veil_onnx_tensor_file_release. The same checks as for initializers
 * apply. Errors: VEIL_E_FORMAT, VEIL_E_UNSUPPORTED, VEIL_E_LIMIT, VEIL_E_NOMEM. Thread-safe.
 */
VEIL_NODISCARD veil_err veil_onnx_parse_tensor(struct veil_span bytes,
                                               struct veil_onnx_tensor_file *out,
                                               struct veil_errbuf *eb) VEIL_NONNULL(2);

/* Frees what veil_onnx_parse_tensor allocated and zeroes *tf. Safe on a zeroed struct. */
void veil_onnx_tensor_file_release(struct veil_onnx_tensor_file *tf);

/* Frees a parsed model and everything it points to. NULL is a no-op. */
void veil_onnx_model_free(struct veil_onnx_model *m);

/* The attribute called name of node n, or NULL when the node has none. */
const struct veil_onnx_attr *veil_onnx_node_attr(const struct veil_onnx_node *n, const char *name)
    VEIL_NONNULL(1, 2);

#endif /* VEIL_ONNX_H */
