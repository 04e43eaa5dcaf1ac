/*
 * engine_int.h: the engine's internals shared by its files, in one section per layer.
 *
 * ir/ holds the load-time IR (struct veil__engine_graph): built once from the parsed ONNX model,
 * checked (known operators, defined values, no cycles), rewritten from older opsets, optimised
 * (constant inputs kept as aligned copies, fusions) and then never changed. exec/ plans and
 * runs it: for each distinct input signature (input shapes plus the values of the few inputs
 * that decide shapes) a plan is built once: the shape and dtype of every value, every value
 * computable from constants folded, the kernel of every remaining step prepared (oneDNN
 * primitives created), and one activation arena laid out by value lifetimes. A run takes a
 * scratch arena of its plan from a pool, executes the steps without allocating, and copies
 * the outputs out. ops/ holds the kernels, one file per operator family, and the registry
 * (ops/registry.c) that maps each ONNX operator to them.
 *
 * No two files depend on each other in a circle (scripts/engine-cycles.sh, the
 * unit.engine.cycles test). From the bottom up: exec/tensor.c and exec/kernel.c depend on no
 * other engine file; ir/attr.c reads nodes; the operator families in ops/ use ir/attr.c and
 * exec's storage rules, weights cache, lanes and tensors (ops/half.c, the 16-bit float
 * conversions and where a plan rounds to 16 bits, uses only the lanes); ops/registry.c names the
 * families' kernels; ir/graph.c and exec/plan.c look operators up in the registry; engine.c drives
 * the pipeline: build, legacy rewrites, order, optimise, plan, run.
 */
#ifndef VEIL_ENGINE_INT_H
#define VEIL_ENGINE_INT_H

#include "veil/engine.h"
#include "veil/onnx.h"

#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VEIL__ENGINE_RANK VEIL_LIMIT_TENSOR_RANK
#define VEIL__ENGINE_MAX_POST 4 /* fused post-operations per node */
/* Inputs (fused reads included) and outputs of one planned node: DenseNet-201 concatenates 49. */
#define VEIL__ENGINE_MAX_NODE_IN 64
#define VEIL__ENGINE_MAX_NODE_OUT 32
#define VEIL__ENGINE_MAX_ACT (64ull << 30) /* cap on one plan's activation bytes */
#define VEIL__ENGINE_FOLD_MAX (64u << 20)  /* largest value produced by constant folding */

/* ==== Tensors: shared by every layer (exec/tensor.c) ==== */

/* A tensor view handed to kernels: shape, dtype and data pointer. */
struct veil__engine_tv {
    enum veil_dtype dt;
    size_t rank;
    int64_t dims[VEIL__ENGINE_RANK];
    uint64_t numel;
    void *data; /* NULL at plan time for values only known at run time */
};

/* ==== The IR (ir/) ==== */

/* A copied attribute of a node. */
struct veil__engine_attr {
    char *name;
    enum veil_onnx_attr_type type;
    float f;
    int64_t i;
    char *s;       /* NUL-terminated copy of a STRING attribute */
    int64_t *ints; /* INTS */
    float *floats; /* FLOATS */
    char **strs;   /* STRINGS: NUL-terminated copies (a string's bytes up to its first NUL) */
    size_t n;
    int32_t tensor; /* TENSOR: value id of the constant holding it, or -1 */
};

/* Activations that can be fused after a convolution, matmul or gemm. */
enum veil__engine_post_kind {
    VEIL__ENGINE_POST_RELU = 1,
    VEIL__ENGINE_POST_LEAKY, /* a = alpha */
    VEIL__ENGINE_POST_CLIP,  /* a = min, b = max */
    VEIL__ENGINE_POST_SIGMOID,
    VEIL__ENGINE_POST_TANH,
    VEIL__ENGINE_POST_GELU_ERF,
    VEIL__ENGINE_POST_GELU_TANH,
    VEIL__ENGINE_POST_LINEAR, /* a * x + b */
    VEIL__ENGINE_POST_SWISH,  /* x * sigmoid(x) */
    VEIL__ENGINE_POST_HARDSWISH,
};

struct veil__engine_post {
    enum veil__engine_post_kind kind;
    float a, b;
};

struct veil__engine_node {
    int op; /* index into the operator table */
    char *name;
    char *op_type;
    size_t n_in, n_out;
    int32_t *in;  /* value ids; -1 for an omitted optional input */
    int32_t *out; /* value ids; -1 for an omitted optional output */
    struct veil__engine_attr *attrs;
    size_t n_attrs;
    /* Fusions decided at load. */
    struct veil__engine_post post[VEIL__ENGINE_MAX_POST];
    size_t n_post;
    int32_t add_in; /* a residual added after the kernel (before post ops with index >= add_at) */
    size_t add_at;
    bool dead; /* removed by an optimisation pass */
    /*
     * A node lifted out of an If branch (ir/subgraph.c): the If node (index in the graph's
     * nodes) whose branch holds it, and which branch (0 then, 1 else); guard is -1 for a node
     * of the main graph. The node runs only when every If up its guard chain takes its branch.
     */
    int32_t guard;
    uint8_t branch;
    /*
     * A Loop's or Scan's body, a model of its own run once per iteration (ops/control.c): its
     * inputs are those the subgraph declares, then the outer values it reads, which are also
     * this node's inputs from in[n_in - body_captured] on.
     */
    struct veil_engine_model *body;
    size_t body_captured;
};

struct veil__engine_value {
    char *name;
    int32_t producer; /* node index or -1 */
    int32_t input;    /* graph input index or -1 */
    bool is_output;
    bool shape_key; /* a graph input whose values decide shapes: part of the plan key */
    /*
     * A graph input whose values decide an If's condition (or a Loop's): part of the plan key
     * when it is one integer or boolean (a sample rate, a flag), so the condition folds when
     * planning.
     */
    bool cond_key;
    /* Constants (initializers, Constant nodes' tensors, folded weights). */
    bool is_const;
    struct veil__engine_tv c; /* c.data owned (veil_aligned_alloc) when is_const */
    size_t nbytes;
    /*
     * The model's element type for a constant it stores as float16 or bfloat16 (held widened
     * to float in c), or for a graph input of those types; VEIL_DT_UNDEFINED otherwise.
     */
    enum veil_dtype half_dt;
    /*
     * Weights held only reordered: every plan so far read this constant only through the
     * weights cache, so its plain copy was freed (c.data NULL) and is rebuilt from the cache
     * when the next plan is built (veil__engine_wcache_rehydrate). plain_needed: some plan read it
     * otherwise; it is never dropped.
     */
    bool dropped, plain_needed;
};

struct veil__engine_graph {
    struct veil__engine_node *nodes;
    size_t n_nodes, cap_nodes;
    struct veil__engine_value *values;
    size_t n_values, cap_values;
    int32_t *order; /* topological order of live nodes */
    size_t n_order;
    int32_t *inputs; /* value ids of the real graph inputs (initializers excluded) */
    size_t n_inputs;
    int32_t *outputs;
    size_t n_outputs;
    int64_t opset;
    bool subgraph; /* a Loop or Scan body: inputs may leave their types to the outer plan */
    /*
     * Activations prefer 16-channel blocks: some Conv has group > 1 (depthwise kernels), or
     * Winograd convolutions (3x3, stride 1) are in use, which read and write only that layout.
     */
    bool blocked_convs;
    bool winograd; /* 3x3 stride-1 convolutions may use oneDNN's Winograd kernels */
};

/* ==== Execution: plans, storage, weights cache, lanes (exec/) ==== */

/* Instruction sets of the engine's own vector kernels (ops/vec.c, ops/attention.c), narrowest
 * first. */
enum veil__engine_vec_isa { VEIL__ENGINE_VEC_BASE, VEIL__ENGINE_VEC_AVX2, VEIL__ENGINE_VEC_AVX512 };

struct veil__engine_pval {
    struct veil__engine_tv t; /* shape and dtype; t.data = constant data or NULL */
    /*
     * The element type the model gives the value: t.dt, except VEIL_DT_FLOAT16 or
     * VEIL_DT_BFLOAT16 for values of those types, which are held as float (t.dt FLOAT) and
     * rounded to that type where ops/half.c says (veil__engine_half_plan_node). Set from
     * declarations (inputs, constants), Cast targets and CastLike, and otherwise carried from a
     * node's first input of t.dt (exec/plan.c, value_dtype).
     */
    enum veil_dtype ldt;
    bool round_half; /* rounded to ldt by the step writing it, after its kernel (ops/half.c) */
    bool half_exact; /* a 16-bit value holding only values of ldt (ops/half.c) */
    void *owned;     /* folded data owned by the plan */
    bool runtime;    /* computed at run time: lives in the arena */
    bool alias;      /* shares its storage with value root */
    int32_t root;
    size_t nbytes;
    size_t off;          /* offset in the arena of the root's storage */
    int64_t first, last; /* lifetime in step indices (roots only) */
    bool blocked;        /* stored in oneDNN layout md (set by its producer), not row-major */
    dnnl_memory_desc_t md;
};

struct veil__engine_plan;
struct veil__engine_step;
struct veil__engine_scratch;

/*
 * One oneDNN argument binding. Its address is fixed for a given scratch arena: a value's
 * storage (value >= 0), a constant owned by the kernel state (ptr), or a region of the step's
 * scratch (off). Memory objects are therefore created once per scratch arena, never per run.
 */
struct veil__engine_dnnl_arg {
    int arg;
    dnnl_memory_desc_t md;
    int32_t value;   /* -1 when ptr or off is used */
    const void *ptr; /* constant data */
    size_t off;      /* offset in the step scratch region when value < 0 and ptr == NULL */
};

#define VEIL__ENGINE_MAX_EX 4
#define VEIL__ENGINE_MAX_ARGS 12

struct veil__engine_dnnl_exec {
    dnnl_primitive_t prim;
    size_t n_args;
    struct veil__engine_dnnl_arg args[VEIL__ENGINE_MAX_ARGS];
};

/* Per-kernel prepared state: the oneDNN primitives of a step run in order. */
struct veil__engine_kstate {
    struct veil__engine_dnnl_exec ex[VEIL__ENGINE_MAX_EX];
    size_t n_ex;
    void *owned[4]; /* constant buffers owned by the state (veil_aligned_free) */
    /*
     * The operator's exec runs the primitives itself, between its own work (the recurrent
     * operators), with the arguments bound for the run's scratch: sc->args from
     * sc->args_base[st->ex_base + e].
     */
    bool self_exec;
};

struct veil__engine_kctx {
    const struct veil__engine_graph *g;
    const struct veil__engine_node *n;
    const struct veil__engine_step *st;
    struct veil__engine_tv in[VEIL__ENGINE_MAX_NODE_IN];
    struct veil__engine_tv out[VEIL__ENGINE_MAX_NODE_OUT];
    struct veil__engine_tv add; /* n->add_in's value, for kernels that read it themselves */
    size_t n_in, n_out;
    struct veil__engine_scratch *sc; /* NULL while folding constants at plan time */
    int64_t opset;
    struct veil_errbuf *eb;
};

/*
 * Kernel parameters, by operator: what infer and prepare decide at plan time and exec reads,
 * one struct per operator or group of operators, members of the union in struct
 * veil__engine_kparams. A step's parameters start zeroed, and each operator reads and writes
 * only its own member: a prepare of ops/dnnl.c writes the member of the operator it prepares,
 * kernels that read through a Transpose read its transpose member, and the fused attention
 * replaces the first MatMul's matmul member by its attention member once it takes the chain
 * over. A new operator adds its struct here and its member to the union.
 */

/* Unary math and activations (ops/elementwise.c). */
struct veil__engine_kp_unary {
    int64_t kind; /* the operator (an enum of ops/elementwise.c) */
    float a, b;   /* its float attributes: alpha, gamma, beta, bias, lambd, the IsInf flags */
};

/*
 * Binary operators, Where and Expand (ops/elementwise.c). A Mul of a channel-blocked map
 * ([N][Cp/B][H][W][B]) by one value per (batch, channel) or per channel runs on the map's
 * layout when veil__engine_mul_prepare (ops/dnnl.c) sets mulblk.on.
 */
struct veil__engine_kp_binary {
    int64_t kind; /* the operator (an enum of ops/elementwise.c) */
    struct {
        bool on;
        int64_t map;              /* which input (0 or 1) is the blocked map */
        int64_t block;            /* B: channels per block */
        int64_t padded_channels;  /* Cp: the map's channels padded to whole blocks */
        int64_t scale_n, scale_c; /* the scale's batch and channel extents (1 or full) */
        int64_t scale_n_stride;   /* elements between the scale's batches */
        bool blocked_out; /* the product stays blocked (padding channels 0) or is row-major */
    } mulblk;
};

/* Max, Min, Sum and Mean (ops/elementwise.c). */
struct veil__engine_kp_variadic {
    int64_t kind; /* the pairwise operator folded over the inputs */
    bool mean;    /* divide by the input count at the end */
};

/* Shape (ops/shape.c). */
struct veil__engine_kp_shape {
    int64_t start; /* the first dimension reported */
};

/*
 * Transpose (ops/shape.c): output axis i is input axis perm[i]. Also read by the kernels that
 * read through a Transpose (ops/dnnl.c, ops/attention.c) and by its oneDNN prepare.
 */
struct veil__engine_kp_transpose {
    int64_t perm[VEIL__ENGINE_RANK];
};

/* Slice (ops/shape.c): a strided view of the input. */
struct veil__engine_kp_slice {
    int64_t base;                       /* the first element read */
    int64_t strides[VEIL__ENGINE_RANK]; /* input elements per output step on each axis */
};

/* One axis: Concat, Split (ops/shape.c) and Gather (ops/gather.c). */
struct veil__engine_kp_axis {
    int64_t axis; /* normalised to [0, rank) */
};

/* Constant and ConstantOfShape (ops/shape.c). */
struct veil__engine_kp_constant {
    int64_t value; /* the graph constant holding the value, or -1 */
    int64_t kind;  /* Constant without one: which value attribute (an enum of ops/shape.c) */
    float f;       /* value_float */
    int64_t i;     /* value_int */
};

/* Pad (ops/shape.c). */
struct veil__engine_kp_pad {
    int64_t mode;                     /* constant, reflect or edge (an enum of ops/shape.c) */
    int64_t begin[VEIL__ENGINE_RANK]; /* elements added before each axis (negative: cut) */
    float fill_f;                     /* constant_value for float and double inputs */
    int64_t fill_i;                   /* constant_value for integer inputs */
};

/* Trilu (ops/shape.c). */
struct veil__engine_kp_trilu {
    bool upper;
};

/* DepthToSpace and SpaceToDepth (ops/shape.c): 6-D strided copies. */
struct veil__engine_kp_view6 {
    int64_t dims[6];    /* the output viewed as 6-D */
    int64_t strides[6]; /* the input strides that each of those axes walks */
};

/* CumSum (ops/shape.c). */
struct veil__engine_kp_cumsum {
    bool exclusive, reverse;
};

/*
 * Cast and CastLike (ops/elementwise.c), decided by veil__engine_half_plan_node (ops/half.c):
 * the 16-bit target type to round to, and the 16-bit type to round the input to first
 * (VEIL_DT_UNDEFINED for neither).
 */
struct veil__engine_kp_cast {
    int64_t to_half, from_half;
};

/* EyeLike (ops/shape.c). */
struct veil__engine_kp_eyelike {
    int64_t k; /* the diagonal: 0 main, above positive */
};

/* GatherElements, ScatterElements and ScatterND (ops/gather.c). */
struct veil__engine_kp_scatter {
    int64_t axis;      /* GatherElements, ScatterElements */
    int64_t reduction; /* the scatters: none, add or mul (an enum of ops/gather.c) */
};

/* GatherND (ops/gather.c). */
struct veil__engine_kp_gather_nd {
    int64_t batch_dims;
};

/* OneHot (ops/gather.c). */
struct veil__engine_kp_onehot {
    int64_t axis, depth;
};

/*
 * Resize (ops/resize.c): one separable pass per axis that is not the identity, in the order
 * given; each axis' windows and weights are in kparams.ptr. The passes alternate between two
 * scratch buffers of buf_elems floats each (the step's scratch), the last writing the output.
 */
struct veil__engine_kp_resize {
    float extrapolation;              /* extrapolation_value of tf_crop_and_resize */
    bool fill;                        /* some output lies outside the crop: set after the passes */
    int64_t n_pass;                   /* passes (axes resized) */
    int64_t order[VEIL__ENGINE_RANK]; /* the axis each pass resizes */
    int64_t buf_elems;                /* the largest intermediate, in elements */
    bool bilinear; /* the last two axes only, in ONNX Runtime's float arithmetic (no passes) */
};

/* The most bytes one Resize node's per-axis tables may take (VEIL_E_LIMIT beyond). */
#define VEIL__ENGINE_RESIZE_MAX_TABLES ((size_t)1 << 30)

/* GridSample (ops/resize.c). */
struct veil__engine_kp_gridsample {
    int64_t mode;       /* linear, nearest or cubic (an enum of ops/resize.c) */
    int64_t padding;    /* zeros, border or reflection (an enum of ops/resize.c) */
    bool align_corners; /* -1 and 1 are the corner positions' centres, not their outer edges */
};

/* Reductions (ops/nn.c). */
struct veil__engine_kp_reduce {
    int64_t kind;                       /* the reduction (an enum of ops/nn.c) */
    int64_t reduced[VEIL__ENGINE_RANK]; /* per input axis: 1 when it is reduced */
};

/* LayerNormalization (ops/nn.c). */
struct veil__engine_kp_layernorm {
    int64_t axis; /* the first normalised axis, normalised to [0, rank) */
    float eps;
};

/* ArgMax and ArgMin (ops/nn.c). */
struct veil__engine_kp_argmax {
    int64_t axis;
    bool select_last; /* select_last_index */
    bool min;         /* ArgMin */
};

/* TopK (ops/nn.c). */
struct veil__engine_kp_topk {
    int64_t axis, k;
    bool largest;
};

/* BatchNormalization (ops/nn.c). */
struct veil__engine_kp_batchnorm {
    float eps;
};

/* InstanceNormalization and MeanVarianceNormalization (ops/nn.c). */
struct veil__engine_kp_norm {
    bool instance; /* InstanceNormalization: scale and bias per channel */
    float eps;
    int64_t reduced[VEIL__ENGINE_RANK]; /* per input axis: 1 when the statistics span it */
};

/* GroupNormalization (ops/nn.c). */
struct veil__engine_kp_groupnorm {
    int64_t groups;
    bool per_channel; /* scale and bias per channel (opset 21), else per group (opset 18) */
    float eps;
};

/* Col2Im (ops/nn.c): the 2-D or N-D image, block and geometry. */
struct veil__engine_kp_col2im {
    size_t sp; /* spatial axes */
    int64_t image[VEIL__ENGINE_RANK], block[VEIL__ENGINE_RANK];
    int64_t strides[VEIL__ENGINE_RANK], dilations[VEIL__ENGINE_RANK];
    int64_t pads[2 * VEIL__ENGINE_RANK];
    int64_t blocks[VEIL__ENGINE_RANK]; /* sliding positions per axis */
};

/* LRN (ops/nn.c). */
struct veil__engine_kp_lrn {
    int64_t size;
    float alpha, beta, bias;
};

/* GlobalAveragePool and GlobalMaxPool (ops/nn.c). */
struct veil__engine_kp_global_pool {
    bool max;
};

/*
 * The window of a pooling or a convolution over sp spatial axes, from the attributes
 * (veil__engine_pool_geometry, ops/nn.c).
 */
struct veil__engine_kp_window {
    int64_t kernel[VEIL__ENGINE_RANK];
    int64_t strides[VEIL__ENGINE_RANK];
    int64_t pads[2 * VEIL__ENGINE_RANK]; /* sp begin pads, then sp end pads */
    int64_t dilations[VEIL__ENGINE_RANK];
};

/* MaxPool and AveragePool (ops/nn.c; MaxPool's oneDNN prepare in ops/dnnl.c). */
struct veil__engine_kp_pool {
    struct veil__engine_kp_window window;
    bool max;               /* MaxPool */
    bool count_include_pad; /* AveragePool */
    bool indices;           /* MaxPool's second output is wanted */
    bool storage_order;     /* its indices column-major within each plane */
};

/* Conv and ConvTranspose (ops/dnnl.c). */
struct veil__engine_kp_conv {
    struct veil__engine_kp_window window;
    int64_t group;
    int64_t out_channels;
};

/*
 * MatMul (ops/dnnl.c): A [batch..., M, K] times B [batch..., K, N], both batch shapes padded
 * to batch_rank with leading 1s and broadcast to batch.
 */
struct veil__engine_kp_matmul {
    int64_t m, k, n;
    int64_t batch_rank;
    int64_t a_batch[VEIL__ENGINE_RANK], b_batch[VEIL__ENGINE_RANK], batch[VEIL__ENGINE_RANK];
};

/* Gemm (ops/dnnl.c). */
struct veil__engine_kp_gemm {
    int64_t m, k, n;
    bool trans_a, trans_b;
    float alpha, beta;
};

/*
 * The fused attention (ops/attention.c), in the parameters of the MatMul step that runs it.
 * Operands are 4-D views [batch, heads, rows, columns], missing leading dims 1.
 */
struct veil__engine_kp_attention {
    int64_t b, h, sq, sk, d, dv;
    int64_t threads;         /* the team size the scratch was sized for */
    int64_t per_thread;      /* scratch bytes per thread */
    int64_t mask;            /* which mask is read (an enum of ops/attention.c) */
    int64_t mask_strides[4]; /* the mask's element strides against the scores */
    int64_t isa;             /* enum veil__engine_vec_isa: the kernels to run */
    bool scores_first;       /* a run-time Where mask: the scores are its second input */
    float scale;
    float fill; /* a Where's fill value */
    /* Element strides of Q [B,H,Sq,D], K^T [B,H,D,Sk], V [B,H,Sk,Dv] and O [B,H,Sq,Dv]. */
    int64_t q_strides[4], k_strides[4], v_strides[4], o_strides[4];
};

/*
 * QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear (ops/quant.c): len scales (1: per
 * tensor), each shared by inner consecutive elements; the output type; whether output 0 is
 * written channels-last for the convolution that alone reads it. The integer products keep
 * their parameters in kparams.ptr.
 */
struct veil__engine_kp_quant {
    int64_t len, inner;
    enum veil_dtype odt;
    bool nhwc;
};

/* Kernel parameters decided at plan time, read by exec (see above). */
struct veil__engine_kparams {
    union {
        struct veil__engine_kp_unary unary;
        struct veil__engine_kp_binary binary;
        struct veil__engine_kp_variadic variadic;
        struct veil__engine_kp_shape shape;
        struct veil__engine_kp_transpose transpose;
        struct veil__engine_kp_slice slice;
        struct veil__engine_kp_axis axis;
        struct veil__engine_kp_constant constant;
        struct veil__engine_kp_pad pad;
        struct veil__engine_kp_trilu trilu;
        struct veil__engine_kp_view6 view6;
        struct veil__engine_kp_cumsum cumsum;
        struct veil__engine_kp_eyelike eyelike;
        struct veil__engine_kp_cast cast;
        struct veil__engine_kp_scatter scatter;
        struct veil__engine_kp_gather_nd gather_nd;
        struct veil__engine_kp_onehot onehot;
        struct veil__engine_kp_resize resize;
        struct veil__engine_kp_gridsample gridsample;
        struct veil__engine_kp_reduce reduce;
        struct veil__engine_kp_layernorm layernorm;
        struct veil__engine_kp_argmax argmax;
        struct veil__engine_kp_topk topk;
        struct veil__engine_kp_batchnorm batchnorm;
        struct veil__engine_kp_norm norm;
        struct veil__engine_kp_groupnorm groupnorm;
        struct veil__engine_kp_col2im col2im;
        struct veil__engine_kp_lrn lrn;
        struct veil__engine_kp_global_pool global_pool;
        struct veil__engine_kp_pool pool;
        struct veil__engine_kp_conv conv;
        struct veil__engine_kp_matmul matmul;
        struct veil__engine_kp_gemm gemm;
        struct veil__engine_kp_attention attention;
        struct veil__engine_kp_quant quant;
    };
    void *ptr; /* op-specific prepared data owned by the step (veil_free) */
};

struct veil__engine_step {
    int32_t node;
    bool runtime;
    bool guarded; /* in an If branch whose condition is only known at run time */
    struct veil__engine_kparams kp;
    struct veil__engine_kstate *ks;
    size_t scratch_bytes; /* per-run scratch for this step (the shared step region) */
    size_t ex_base;       /* index of this step's first exec in a scratch's args_base */
    /*
     * A fused kernel that does this node's work and that of later nodes (ops/attention.c). It runs
     * instead of the operator's, reading the node's inputs, then the values xval in that order
     * (in kctx in[n_in + k]; -1 for none), which it reads or writes besides the node's own.
     */
    veil_err (*xexec)(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);
    int32_t xval[4];
    size_t n_xval;
    /* 1 + the index of the earlier fused step that does this node's work; 0 when none. */
    int64_t absorbed_by;
    bool view;     /* the operator is a view: output 0 shares input 0's storage, nothing runs */
    bool half_out; /* some value this step writes has round_half set (struct veil__engine_pval) */
};

struct veil__engine_scratch {
    struct veil__engine_scratch *next;
    uint8_t *arena;
    uint8_t *step_region; /* per-step scratch, shared by steps as they run one at a time */
    dnnl_stream_t stream;
    dnnl_memory_t *mems;   /* created once for this arena */
    dnnl_exec_arg_t *args; /* per (step, exec): args_base[] indexes into this */
    size_t *args_base;     /* one per (step, exec) */
    size_t n_mems;
    uint64_t *step_ns; /* per step, this run's time; only when the model profiles */
};

/*
 * A branch of an If that could not be planned at this signature (its condition is a run-time
 * value): running the If into it fails with the recorded reason.
 */
struct veil__engine_branch_fail {
    int32_t node; /* the If */
    uint8_t branch;
    char msg[sizeof(((struct veil_errbuf *)0)->msg)];
};

struct veil__engine_plan {
    int64_t key[64 * VEIL__ENGINE_RANK];
    size_t key_len;
    struct veil__engine_pval *vals; /* one per graph value */
    size_t n_vals;
    struct veil__engine_step *steps; /* one per node in order */
    size_t n_steps;
    size_t n_ex; /* oneDNN executions over all steps */
    size_t arena_bytes;
    size_t step_region_off;
    size_t peak_act_bytes;
    pthread_mutex_t mu;
    struct veil__engine_scratch *free_scratch;
    uint64_t last_use;
    size_t refs; /* runs using the plan (guarded by the model's mutex) */
    struct veil__engine_branch_fail *fails;
    size_t n_fails;
    bool cached; /* in the model's cache; an uncached plan dies with its last run */
};

/*
 * Weights reordered into a primitive's layout, shared by every plan of the model (so batch
 * sizes do not multiply weight memory). Keyed by the constant's data pointer and layout.
 */
struct veil__engine_wcache_ent {
    int32_t value;             /* the graph constant */
    dnnl_memory_desc_t src_md; /* its plain layout as the reorder read it */
    dnnl_memory_desc_t md;
    void *data; /* veil_aligned_alloc, owned by the cache */
    /*
     * oneDNN can reorder md back into src_md. Not so for every layout: Winograd weights
     * (format kind wino) are a one-way transform, so they never stand in for the plain copy.
     */
    bool reversible;
};

struct veil__engine_wcache {
    struct veil__engine_wcache_ent *ents;
    size_t n, cap;
};

enum { VEIL__ENGINE_PROF_RAN = 1, VEIL__ENGINE_PROF_ATTENTION = 2 };

struct veil_engine_model {
    struct veil__engine_graph g;
    struct veil__engine_wcache wcache; /* used under mu (plans are built under it) */
    struct veil_tensor_info *in_info, *out_info;
    size_t n_in, n_out;
    unsigned threads;
    uint64_t max_act; /* cap on a plan's activation arena */
    dnnl_engine_t deng;
    pthread_mutex_t mu;
    struct veil__engine_plan *plans[VEIL_ENGINE_MAX_PLANS];
    size_t n_plans, max_plans; /* cached plans, and the cap (options.max_plans) */
    uint64_t use_clock;
    /* Profiling (options.profile), under mu: per graph node, time over completed runs. */
    enum veil__engine_vec_isa attention_isa; /* see veil__engine_model_cap_attention */
    uint64_t *prof_ns;
    uint8_t *prof_ran; /* PROF_RAN: ran in a profiled run; PROF_ATTENTION: as fused attention */
    uint64_t prof_runs, prof_run_ns;
};

/* What an operator's infer and prepare see of the node being planned. */
struct veil__engine_ictx {
    const struct veil__engine_graph *g;
    const struct veil__engine_node *n;
    struct veil__engine_tv in[VEIL__ENGINE_MAX_NODE_IN];
    struct veil__engine_tv out[VEIL__ENGINE_MAX_NODE_OUT];
    struct veil__engine_tv add; /* the fused residual, when n->add_in >= 0 */
    size_t n_in, n_out;
    struct veil__engine_kparams *kp;
    struct veil__engine_pval *vals;     /* the plan's values: layouts are read and set by prepare */
    struct veil__engine_wcache *wcache; /* the model's reordered weights */
    uint32_t *wreads;         /* per value: reads through the weights cache in this plan */
    const bool *blockable;    /* per value: every reader accepts a oneDNN blocked layout */
    const int64_t *last_read; /* per value: the last step reading it (INT64_MAX for outputs) */
    bool *viewed;             /* per value: another value shares its storage (no in-place) */
    int64_t step;             /* this node's step index */
    int32_t node;             /* this node's index in g->nodes */
    /*
     * For kernels that take over a neighbour's work (a MatMul reading through a Transpose):
     * the plan's steps, each node's step index, and per value the node that is its only reader
     * (reading it once; -1 when it has none, several, or is a graph output).
     */
    struct veil__engine_step *steps;
    const int32_t *step_of;
    const int32_t *sole_reader;
    unsigned threads;                        /* the model's compute threads */
    enum veil__engine_vec_isa attention_isa; /* the widest fused-attention, recurrent kernels */
    int64_t opset;
    struct veil_errbuf *eb;
};

/* ==== Operators (ops/) ==== */

/*
 * A model's plan cache as control-flow kernels reach it to run a Loop's or Scan's body: passed
 * to their hooks by the planner (exec/plan.c), so the ops never call back into it by name.
 * get_plan takes the model's plan for these inputs (built and cached when new; inputs need
 * data only where their values are part of the plan key) until put_plan; run_here runs the
 * model on the calling thread (already on a compute lane), outputs as veil_engine_run gives
 * them.
 */
struct veil__engine_planner {
    veil_err (*get_plan)(struct veil_engine_model *m, const struct veil_tensor *inputs,
                         struct veil__engine_plan **out, struct veil_errbuf *eb);
    void (*put_plan)(struct veil_engine_model *m, struct veil__engine_plan *p);
    veil_err (*run_here)(struct veil_engine_model *m, const struct veil_tensor *inputs,
                         struct veil_tensor *outputs, struct veil_errbuf *eb);
};

/*
 * One row of the operator registry (ops/registry.c), written with designated initializers.
 * Input and output counts count every slot, omitted optional ones included.
 */
struct veil__engine_op_def {
    const char *name;
    uint8_t min_in, max_in, min_out, max_out; /* the node's input and output counts */
    /*
     * The last opset whose models may use the operator, or 0 for no limit. A row with one has
     * no kernels: the operator is rewritten into another before planning (ir/legacy.c).
     */
    int64_t max_opset;
    /* Shapes and dtypes of the outputs from the inputs; fills kp. */
    veil_err (*infer)(struct veil__engine_ictx *c);
    /* Optional: creates the runtime kernel state (oneDNN primitives). */
    veil_err (*prepare)(struct veil__engine_ictx *c, dnnl_engine_t eng,
                        struct veil__engine_step *st);
    /* Computes the outputs; NULL for views (nothing to compute). */
    veil_err (*exec)(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);
    uint32_t shape_inputs; /* bit i: input i decides output shapes (its values are needed) */
    bool view;             /* output 0 is input 0's data reinterpreted (no copy) */
    bool no_fold;          /* never evaluated at plan time */
    bool outputs_optional; /* any output may be omitted, output 0 too, as long as one is kept */
    /*
     * Control flow (If, Loop, Scan; ops/control.c), whose rows have these instead of infer and
     * exec: plan_step plans step st (index s) of plan p, setting its outputs' values and, when
     * it runs, st->runtime; run_step runs it on a run's scratch.
     */
    veil_err (*plan_step)(struct veil__engine_plan *p, const struct veil__engine_graph *g,
                          const struct veil__engine_planner *pl, uint64_t max_act,
                          struct veil__engine_step *st, int64_t s, struct veil_errbuf *eb);
    veil_err (*run_step)(const struct veil__engine_plan *p, const struct veil__engine_scratch *sc,
                         const struct veil__engine_graph *g, const struct veil__engine_planner *pl,
                         const struct veil__engine_step *st, struct veil_errbuf *eb);
};

/* The registry row of operator `name`, or NULL when there is none. */
const struct veil__engine_op_def *veil__engine_op_find(const char *name);
/* Row `op` (from veil__engine_op_index; asserts it names an operator with kernels). */
const struct veil__engine_op_def *veil__engine_op_get(int op);
/* The index of operator `name`'s row for veil__engine_op_get, or -1 (unknown, or no kernels). */
int veil__engine_op_index(const char *name);
/* The number of rows, and row i (i below it), in name order: for tests and documentation. */
size_t veil__engine_op_count(void);
const struct veil__engine_op_def *veil__engine_op_at(size_t i);

/*
 * Whether a default-domain node of this operator can be loaded in a model of this opset: it
 * has a row, and the opset is at most the row's max_opset (Upsample: loaded as a Resize
 * before opset 10, ir/legacy.c).
 */
bool veil__engine_op_known(const char *name, int64_t opset);

/* ---- IR: subgraphs (ir/subgraph.c) ---- */

/* Inputs of a lifted If: its condition and both branches' outputs. */
#define VEIL__ENGINE_IF_MAX_IO 255
/* Inputs of a Loop or Scan, the outer values its body reads included. */
#define VEIL__ENGINE_BODY_MAX_IO 255

/* A Loop or Scan node's body: the graph, and the outer values it reads (names inside it). */
struct veil__engine_flat_body {
    const struct veil_onnx_graph *g; /* NULL for other nodes */
    const char *const *captured;
    size_t n_captured;
};

/*
 * A model's main graph with the branches of every If lifted into it: model is the parsed model
 * with nodes and initializers replaced by the lifted lists; guard and branch are per node as
 * in struct veil__engine_node, bodies per node for Loop and Scan. Names point into the parsed
 * model or into arena.
 */
struct veil__engine_flat {
    struct veil_onnx_model model;
    struct veil_onnx_node *nodes;
    size_t n_nodes;
    int32_t *guard;
    uint8_t *branch;
    struct veil__engine_flat_body *bodies;
    struct veil_onnx_tensor *inits;
    size_t n_inits;
    struct veil_arena arena;
};

/*
 * Lifts the branches of om's If nodes (nested up to VEIL_ONNX_MAX_GRAPH_DEPTH) into *f and
 * records each Loop's and Scan's body with the outer values it reads (appended to the node's
 * inputs). *f borrows om (keep it alive) and is freed with veil__engine_flat_release (also
 * after a failure). Errors: VEIL_E_FORMAT (an If without both branches, a branch with inputs
 * or with another output count than the node, a name defined twice in a branch, a Loop or
 * Scan without a body), VEIL_E_LIMIT (If outputs above (VEIL__ENGINE_IF_MAX_IO - 1) / 2, inputs
 * above VEIL__ENGINE_BODY_MAX_IO, nesting), VEIL_E_NOMEM.
 */
veil_err veil__engine_flatten(const struct veil_onnx_model *om, struct veil__engine_flat *f,
                              struct veil_errbuf *eb);
/* Frees what veil__engine_flatten made; a zeroed struct is a no-op. */
void veil__engine_flat_release(struct veil__engine_flat *f);

/* ---- IR: graph building and editing (ir/graph.c) ---- */

/*
 * Builds g (zeroed here; release it with veil__engine_graph_release whatever the result) from
 * the flat model of a parsed one (veil__engine_flatten), which the graph does not keep:
 * constants are copied. subgraph: the graph of a Loop or Scan body, whose inputs may lack
 * types (the outer plan gives them). Checks that every
 * operator has a registry row (all missing ones are named in one VEIL_E_UNSUPPORTED), each
 * node's input and output counts (VEIL_E_INVALID), that every value is defined once and every
 * output computed (VEIL_E_FORMAT), and the dtypes of inputs, outputs and constants
 * (VEIL_E_UNSUPPORTED). Nodes of older opsets still need veil__engine_graph_legacy before
 * anything plans them. VEIL_E_NOMEM on allocation failure.
 */
veil_err veil__engine_graph_build(struct veil__engine_graph *g,
                                  const struct veil__engine_flat *flat, bool subgraph,
                                  struct veil_errbuf *eb);
/* Frees everything g owns and zeroes it; a zeroed graph is a no-op. */
void veil__engine_graph_release(struct veil__engine_graph *g);
/*
 * Orders g's live nodes topologically into g->order (every node after the producers of its
 * inputs). Errors: VEIL_E_FORMAT (a cycle, naming a node on it), VEIL_E_NOMEM.
 */
veil_err veil__engine_graph_order(struct veil__engine_graph *g, struct veil_errbuf *eb);
/* Adds a constant value owning data (taken over on success). */
veil_err veil__engine_graph_add_const(struct veil__engine_graph *g, const char *name,
                                      enum veil_dtype dt, size_t rank, const int64_t *dims,
                                      void *data, int32_t *id);

/* Gives node n at least `want` input slots, new ones empty (-1). VEIL_E_NOMEM on failure. */
veil_err veil__engine_node_grow_inputs(struct veil__engine_node *n, size_t want);

/* Gives node n another operator (its attributes stay). VEIL_E_NOMEM on failure. */
veil_err veil__engine_node_retype(struct veil__engine_node *n, const char *op_type);

/*
 * Appends an INT (value i), FLOAT (value f) or STRING (a copy of str) attribute to node n.
 * VEIL_E_INVALID for another type, a STRING without str, or a name n already has;
 * VEIL_E_NOMEM on failure.
 */
veil_err veil__engine_node_add_attr(struct veil__engine_node *n, const char *name,
                                    enum veil_onnx_attr_type type, int64_t i, float f,
                                    const char *str);

/* ---- IR: attribute helpers (ir/attr.c) ---- */

/* Attribute helpers (by name; defaults when absent). */
const struct veil__engine_attr *veil__engine_attr_get(const struct veil__engine_node *n,
                                                      const char *name);
/* The attribute called name when it has type t; NULL when absent or of another type. */
const struct veil__engine_attr *veil__engine_attr_typed(const struct veil__engine_node *n,
                                                        const char *name,
                                                        enum veil_onnx_attr_type t);
int64_t veil__engine_attr_i(const struct veil__engine_node *n, const char *name, int64_t def);
float veil__engine_attr_f(const struct veil__engine_node *n, const char *name, float def);
const char *veil__engine_attr_s(const struct veil__engine_node *n, const char *name,
                                const char *def);

/*
 * A Transpose node's permutation for rank r (its perm attribute, default reversed) into perm:
 * output axis i is input axis perm[i]. Errors: VEIL_E_INVALID (wrong length, an axis out of
 * range or repeated).
 */
veil_err veil__engine_transpose_perm(const struct veil__engine_node *n, size_t r, size_t *perm,
                                     struct veil_errbuf *eb);

/* ---- IR: rewrites and optimiser passes (ir/legacy.c, ir/opt.c) ---- */

/*
 * Rewrites the nodes of a model of opset 7 to 10 whose operands were attributes then (Clip,
 * Pad, Slice, TopK) or whose operator changed (Resize of opset 10, Upsample) into the opset-11
 * forms the kernels implement (ir/legacy.c); refuses BatchNormalization with spatial=0. Nothing
 * to do from opset 11.
 */
veil_err veil__engine_graph_legacy(struct veil__engine_graph *g, struct veil_errbuf *eb);
/*
 * The optimiser passes of ir/opt.c (docs/engine.md lists them), run once after
 * veil__engine_graph_order: fusions and rewrites mark the nodes they replace dead, so g is
 * ordered again afterwards. Errors: VEIL_E_NOMEM.
 */
veil_err veil__engine_graph_optimize(struct veil__engine_graph *g, struct veil_errbuf *eb);

/* ---- Exec: tensor and dtype helpers (exec/tensor.c) ---- */

/* Shape helpers. */
uint64_t veil__engine_numel(const int64_t *dims, size_t rank);
veil_err veil__engine_broadcast(const struct veil__engine_tv *a, const struct veil__engine_tv *b,
                                size_t *rank, int64_t *dims, struct veil_errbuf *eb);
/* Element type classes: float or double; a signed or unsigned integer (not bool); either. */
bool veil__engine_dt_is_float(enum veil_dtype dt);
bool veil__engine_dt_is_int(enum veil_dtype dt);
bool veil__engine_dt_is_numeric(enum veil_dtype dt);
/* Reads element i of an integer or float tensor as int64 / double. */
int64_t veil__engine_get_i64(const struct veil__engine_tv *t, uint64_t i);
double veil__engine_get_f64(const struct veil__engine_tv *t, uint64_t i);
void veil__engine_set_f64(struct veil__engine_tv *t, uint64_t i, double v);
void veil__engine_set_i64(struct veil__engine_tv *t, uint64_t i, int64_t v);
/*
 * Normalises a possibly negative axis of a tensor of rank `rank` into *out. Errors:
 * VEIL_E_INVALID (axis outside [-rank, rank)).
 */
veil_err veil__engine_norm_axis(int64_t axis, size_t rank, size_t *out, struct veil_errbuf *eb);
/*
 * Reads a 1-D (or scalar) int64 or int32 tensor of at most cap values into v; *n = the count.
 * Errors: VEIL_E_INVALID (another dtype, rank above 1, or more than cap values).
 */
veil_err veil__engine_read_ints(const struct veil__engine_tv *t, int64_t *v, size_t cap, size_t *n,
                                struct veil_errbuf *eb);
/* Whether the node being planned has input i (present and not omitted). */
bool veil__engine_has_input(const struct veil__engine_ictx *c, size_t i);
/* Row-major element strides of dims into st. */
void veil__engine_strides_of(const int64_t *dims, size_t rank, int64_t *st);
/* Whether dt is an index type (int64 or int32). */
bool veil__engine_dt_is_index(enum veil_dtype dt);

/*
 * Allocates a large buffer (activation arenas, reordered weights) aligned to 2 MiB and asks the
 * kernel for transparent huge pages on it, which cuts TLB misses on big tensors. Free with
 * veil_aligned_free. NULL on failure.
 */
void *veil__engine_big_alloc(size_t size);

/* ---- Ops: control flow (ops/control.c), planned and run through their registry rows ---- */

#define VEIL__ENGINE_LOOP_MAX_ITERS 1000000 /* iterations of one Loop or Scan in one run */

/*
 * If: with its condition known when planning, its outputs are the taken branch's values; else
 * both branches must give the same types and shapes (VEIL_E_UNSUPPORTED otherwise) and each
 * run copies the chosen one's. Errors: VEIL_E_INVALID (a condition of other than one element,
 * the taken branch failed to plan).
 */
veil_err veil__engine_if_plan(struct veil__engine_plan *p, const struct veil__engine_graph *g,
                              const struct veil__engine_planner *pl, uint64_t max_act,
                              struct veil__engine_step *st, int64_t s, struct veil_errbuf *eb);
veil_err veil__engine_if_run(const struct veil__engine_plan *p,
                             const struct veil__engine_scratch *sc,
                             const struct veil__engine_graph *g,
                             const struct veil__engine_planner *pl,
                             const struct veil__engine_step *st, struct veil_errbuf *eb);
/*
 * Loop and Scan: probes the body at the first iteration's signature and sets the outputs'
 * types and shapes, the step's scratch and state. Errors: VEIL_E_INVALID (inputs or body not
 * matching the node), VEIL_E_UNSUPPORTED (values that change shape across iterations, scan
 * outputs without a trip count known when planning, body shapes deciding on run-time values),
 * VEIL_E_LIMIT (iterations above VEIL__ENGINE_LOOP_MAX_ITERS, outputs above max_act),
 * VEIL_E_NOMEM. The run fails with the body's errors, VEIL_E_INVALID (an iteration giving
 * other shapes than the probe) or VEIL_E_LIMIT (the iteration cap).
 */
veil_err veil__engine_loop_plan(struct veil__engine_plan *p, const struct veil__engine_graph *g,
                                const struct veil__engine_planner *pl, uint64_t max_act,
                                struct veil__engine_step *st, int64_t s, struct veil_errbuf *eb);
veil_err veil__engine_scan_plan(struct veil__engine_plan *p, const struct veil__engine_graph *g,
                                const struct veil__engine_planner *pl, uint64_t max_act,
                                struct veil__engine_step *st, int64_t s, struct veil_errbuf *eb);
veil_err veil__engine_body_run(const struct veil__engine_plan *p,
                               const struct veil__engine_scratch *sc,
                               const struct veil__engine_graph *g,
                               const struct veil__engine_planner *pl,
                               const struct veil__engine_step *st, struct veil_errbuf *eb);

/* ---- Exec: plans (exec/plan.c) ---- */

/* The address of value v in a run's scratch, or its constant data (exec/storage.c). */
void *veil__engine_plan_addr(const struct veil__engine_plan *p,
                             const struct veil__engine_scratch *sc, int32_t v);
/* The failure recorded for If node `node`'s branch (0 then, 1 else) in plan p, or NULL
 * (exec/guard.c, like veil__engine_cond_true). */
const struct veil__engine_branch_fail *
veil__engine_plan_branch_failed(const struct veil__engine_plan *p, int32_t node, uint8_t branch);
/* An If condition's truth: the first element of t (data at data) is nonzero; empty: false. */
bool veil__engine_cond_true(const struct veil__engine_tv *t, const void *data);

/*
 * The model's plan for these inputs (built and cached when new), held until
 * veil__engine_model_put_plan; inputs need data only where their values are part of the plan
 * key. Called outside the model's mutex. Errors: those of veil__engine_plan_build.
 */
veil_err veil__engine_model_get_plan(struct veil_engine_model *m, const struct veil_tensor *inputs,
                                     struct veil__engine_plan **out, struct veil_errbuf *eb);
/* Releases a plan taken with veil__engine_model_get_plan (freed when no longer cached). */
void veil__engine_model_put_plan(struct veil_engine_model *m, struct veil__engine_plan *p);
/*
 * Runs m on the calling thread (a body inside a run already on a compute lane), with inputs of
 * the types its plan expects; outputs as veil_engine_run gives them (the caller releases).
 */
veil_err veil__engine_model_run_here(struct veil_engine_model *m, const struct veil_tensor *inputs,
                                     struct veil_tensor *outputs, struct veil_errbuf *eb);

/*
 * Builds the plan of m for the signature of inputs (one per graph input, checked against the
 * graph by the caller): shapes and dtypes, folded constants, prepared kernels, the memory
 * plan. *out is the caller's (veil__engine_plan_free). Called under m's mutex: it uses and
 * updates the weights cache. Errors: what infer and prepare report (VEIL_E_INVALID,
 * VEIL_E_UNSUPPORTED naming the node), VEIL_E_LIMIT (activations over m's cap, a folded value
 * over VEIL__ENGINE_FOLD_MAX), VEIL_E_NOMEM, VEIL_E_INTERNAL (oneDNN).
 */
veil_err veil__engine_plan_build(struct veil_engine_model *m, const struct veil_tensor *inputs,
                                 struct veil__engine_plan **out, struct veil_errbuf *eb);
/* Frees p, its scratch arenas and kernel state; NULL is a no-op. */
void veil__engine_plan_free(struct veil__engine_plan *p);
/* Whether inputs have p's signature (shapes and the values that decide shapes). */
bool veil__engine_plan_matches(const struct veil_engine_model *m, const struct veil__engine_plan *p,
                               const struct veil_tensor *inputs);
/*
 * Runs p on inputs (of p's signature) with a scratch arena from p's pool, and fills outputs
 * (one per graph output, owned by the caller on success, left empty on failure). Safe from
 * several threads at once on one plan. Errors: what a kernel reports (VEIL_E_INVALID for an
 * index out of range), VEIL_E_NOMEM, VEIL_E_INTERNAL (oneDNN).
 */
veil_err veil__engine_plan_exec(struct veil_engine_model *m, struct veil__engine_plan *p,
                                const struct veil_tensor *inputs, struct veil_tensor *outputs,
                                struct veil_errbuf *eb);

/* ---- Exec: kernel state (exec/kernel.c) ---- */

/*
 * VEIL_OK for dnnl_success; otherwise VEIL_E_NOMEM (oneDNN out of memory) or VEIL_E_INTERNAL,
 * with "oneDNN <what> failed (status N)" in eb.
 */
veil_err veil__engine_dnnl_err(dnnl_status_t st, const char *what, struct veil_errbuf *eb);
/* Destroys ks's primitives, frees its owned buffers and ks itself; NULL is a no-op. */
void veil__engine_kstate_free(struct veil__engine_kstate *ks);

/* ---- Exec: storage and in-place rules (exec/storage.c) ---- */

/* The value whose storage v shares in vals (v itself when it is not an alias). */
int32_t veil__engine_storage_root(const struct veil__engine_pval *vals, int32_t v);

/*
 * For a kernel that may write its output over input k (row by row, each row read before it is
 * written): makes output 0 share input k's storage when that storage dies at this step (no
 * later reader of it or of any value sharing it, same byte size and dtype, row-major layouts).
 * Returns whether it did. Called from prepare.
 */
bool veil__engine_inplace(struct veil__engine_ictx *c, size_t k);
/*
 * Whether value v's storage dies at this step: v is computed at run time, this step is its
 * last reader, and no value sharing its storage (views, earlier in-place writes up to the
 * root) is read later. A kernel may then write over it (in-place sums, veil__engine_inplace).
 */
bool veil__engine_storage_dies(const struct veil__engine_ictx *c, int32_t v);
/*
 * Whether no runtime step after step `since` and before this one has written over the storage
 * of value u (an in-place result or accumulated sum sharing it; views do not count). A kernel
 * that reads a Transpose's input u in place of the Transpose's output, decided at its own
 * later step, needs u unchanged since the Transpose's step.
 */
bool veil__engine_storage_unwritten_since(const struct veil__engine_ictx *c, int32_t u,
                                          int64_t since);

/*
 * Skips the runtime Transpose node tnode, whose output v a later kernel reads through as a
 * strided view of the Transpose's input: v becomes an alias of that input, which is marked
 * viewed (never written in place after its own last reader).
 */
void veil__engine_skip_transpose(const struct veil__engine_ictx *c, int32_t tnode, int32_t v);

/*
 * Skips the runtime node `node` whose output v a later kernel reads as the node's input u
 * instead (doing the node's work itself): v becomes an alias of u, marked viewed as above.
 */
void veil__engine_skip_node(const struct veil__engine_ictx *c, int32_t node, int32_t v, int32_t u);

/* ---- Exec: the weights cache (exec/wcache.c) ---- */

void veil__engine_wcache_release(struct veil__engine_wcache *wc);
/*
 * Rebuilds the plain copy of every dropped constant from a reversible reordered copy (before a
 * plan is built, as plans may read constants plainly or need another layout). Called under the
 * model's mutex. Errors: VEIL_E_NOMEM, VEIL_E_INTERNAL (oneDNN, or no reversible copy: a broken
 * invariant of veil__engine_wcache_drop).
 */
veil_err veil__engine_wcache_rehydrate(struct veil_engine_model *m, struct veil_errbuf *eb);
/*
 * After a plan is built: marks constants this plan read other than through the weights cache
 * (wreads against n_reads, the reading slots of live nodes) as plain_needed, and frees the
 * plain copy of float constants of 1 MiB or more that no plan has read otherwise and that have
 * a reversible reordered copy to rebuild it from. Called under the model's mutex.
 */
void veil__engine_wcache_drop(struct veil_engine_model *m, const uint32_t *wreads,
                              const uint32_t *n_reads);
/* Bytes of weights held: plain constants plus reordered copies. Under the model's mutex. */
size_t veil__engine_weight_bytes(const struct veil_engine_model *m);
/*
 * Reorders constant data from layout src into a new buffer of layout dst, owned by ks (in its
 * first free owned slot; ks must have one). *out = the buffer. Errors: VEIL_E_NOMEM,
 * VEIL_E_INTERNAL (oneDNN).
 */
veil_err veil__engine_reorder_const(dnnl_engine_t eng, const dnnl_memory_desc_t *src,
                                    const void *data, const dnnl_memory_desc_t *dst,
                                    struct veil__engine_kstate *ks, const void **out,
                                    struct veil_errbuf *eb);
/*
 * As veil__engine_reorder_const, through the model's cache when data is graph constant `value`'s
 * own data: the reordered copy is made once per (constant, layout), owned by the cache and shared
 * by all plans; the read is counted in c->wreads (see veil__engine_wcache_drop). Errors as above.
 */
veil_err veil__engine_wcache_reorder(const struct veil__engine_ictx *c, int32_t value,
                                     dnnl_engine_t eng, const dnnl_memory_desc_t *src,
                                     const void *data, const dnnl_memory_desc_t *dst,
                                     struct veil__engine_kstate *ks, const void **out,
                                     struct veil_errbuf *eb);

/* ---- Exec: compute lanes and parallel loops (exec/lanes.c) ---- */

/*
 * Compute lanes: every run executes on one of a fixed set of threads, each an
 * OpenMP team, so the process holds no more OpenMP threads than cores whatever the number of
 * callers. veil__engine_lanes_reserve makes sure there are max(1, cores / threads_per_run) lanes
 * (lanes are never removed; if threads cannot be created, runs execute on their callers).
 * veil__engine_lanes_call runs fn(arg) on a free lane, first come first served, and returns when it
 * has finished; called on a lane, it runs fn inline.
 */
void veil__engine_lanes_reserve(unsigned threads_per_run);
void veil__engine_lanes_call(void (*fn)(void *), void *arg);

/* Runs body(lo, hi) over [0, n) on the run's threads when n is large enough. */
typedef void (*veil__engine_range_fn)(void *ud, uint64_t lo, uint64_t hi);
void veil__engine_parallel(uint64_t n, uint64_t grain, veil__engine_range_fn fn, void *ud);

/* ---- Ops: 16-bit floats (ops/half.c) ---- */

/*
 * Values the model types float16 or bfloat16 are held as float inside the engine (dt
 * VEIL_DT_FLOAT); veil__engine_dt_is_half says whether dt is one of the two.
 * veil__engine_half_round sets dst[i] = src[i] rounded to dt's precision, kept as float (dst
 * may equal src). The _isa forms run a given variant of the bulk loops (false, doing nothing,
 * where the CPU lacks it), so tests can check every variant the machine has; the _par forms
 * split large arrays over the run's threads (veil__engine_parallel). The 16-bit side may have
 * any alignment.
 */
bool veil__engine_dt_is_half(enum veil_dtype dt);
void veil__engine_half_round(enum veil_dtype dt, const float *src, float *dst, size_t n);
bool veil__engine_half_widen_isa(enum veil__engine_vec_isa isa, enum veil_dtype dt, const void *src,
                                 float *dst, size_t n);
bool veil__engine_half_narrow_isa(enum veil__engine_vec_isa isa, enum veil_dtype dt,
                                  const float *src, void *dst, size_t n);
bool veil__engine_half_round_isa(enum veil__engine_vec_isa isa, enum veil_dtype dt,
                                 const float *src, float *dst, size_t n);
void veil__engine_half_widen_par(enum veil_dtype dt, const void *src, float *dst, size_t n);
void veil__engine_half_narrow_par(enum veil_dtype dt, const float *src, void *dst, size_t n);
void veil__engine_half_round_par(enum veil_dtype dt, const float *src, float *dst, size_t n);
/*
 * Where a plan rounds values the model types 16-bit (ops/half.c explains the rule).
 * veil__engine_half_readers sets (*out)[v] to the kinds of operator that read value v in g's
 * order (free with veil_free; VEIL_E_NOMEM). veil__engine_half_plan_node, called for node n
 * (view: its operator is a view) while planning once its outputs' shapes and ldt are known,
 * sets round_half and half_exact of its 16-bit outputs and, for a Cast or CastLike, kp->cast.
 */
veil_err veil__engine_half_readers(const struct veil__engine_graph *g, uint8_t **out);
void veil__engine_half_plan_node(const struct veil__engine_graph *g,
                                 const struct veil__engine_node *n, bool view,
                                 struct veil__engine_pval *vals, const uint8_t *readers,
                                 struct veil__engine_kparams *kp);

/* ---- Ops: vector kernels (ops/vec.c) ---- */

/*
 * Vector kernels, dispatched on the CPU's instruction sets. veil__engine_softmax_row sets
 * y = softmax(x + a) over one row of len floats, reading x and a with stride xs and as, each 0
 * (one value for the whole row) or 1; a may be NULL; y may equal x. veil__engine_vec_best is the
 * variant these use; veil__engine_softmax_row_isa runs a given variant (false, doing nothing, where
 * the CPU lacks it), so tests can check every variant the machine has.
 */
enum veil__engine_vec_isa veil__engine_vec_best(void);
void veil__engine_softmax_row(const float *x, size_t xs, const float *a, size_t as, float *y,
                              size_t len);
bool veil__engine_softmax_row_isa(enum veil__engine_vec_isa isa, const float *x, size_t xs,
                                  const float *a, size_t as, float *y, size_t len);
/*
 * LayerNormalization of one row of len floats: y = (x - mean) / sqrt(var + eps) * scale +
 * bias (bias may be NULL); *mean and *istd (1 / sqrt(var + eps)) receive the statistics. y may
 * equal x. The _isa form runs a given variant (false where the CPU lacks it).
 */
void veil__engine_layernorm_row(const float *x, float *y, size_t len, const float *scale,
                                const float *bias, float eps, float *mean, float *istd);
bool veil__engine_layernorm_row_isa(enum veil__engine_vec_isa isa, const float *x, float *y,
                                    size_t len, const float *scale, const float *bias, float eps,
                                    float *mean, float *istd);

/* ---- Ops: fused attention (ops/attention.c; the cap is set in engine.c) ---- */

/*
 * Fused attention (AVX-512 or AVX2 kernels): called from a MatMul's prepare. When this
 * MatMul (with at most a scale post-op) feeds only a Softmax over the last axis (with at most a
 * fused mask addend) that feeds only a second MatMul, and the shapes and layouts fit, the step
 * becomes one kernel computing softmax(scale * Q K^T + mask) V without storing the scores: the
 * later two steps are marked absorbed, and Transposes around the three are read through (as views
 * of their inputs) where they are only read here. *taken says whether it did. Errors only
 * from allocation.
 */
veil_err veil__engine_attention_prepare(struct veil__engine_ictx *c, struct veil__engine_step *st,
                                        bool *taken);
/*
 * Caps the instruction set of m's fused attention and recurrent kernels (default
 * VEIL__ENGINE_VEC_AVX512: whatever the CPU has): tests lower it to run the AVX2 kernels, or to
 * VEIL__ENGINE_VEC_BASE to leave the chains unfused and the recurrent gates and products on
 * portable C. Applies to plans built afterwards; call it after load, before the first run.
 */
void veil__engine_model_cap_attention(struct veil_engine_model *m, enum veil__engine_vec_isa cap);

/* ---- Ops: oneDNN-backed kernels and helpers shared between families ---- */

/* MaxPool, GlobalAveragePool and GlobalMaxPool as oneDNN primitives (2-D; required for blocked
 * inputs). */
veil_err veil__engine_pool_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                   struct veil__engine_step *st);
/* Softmax/LogSoftmax (opset >= 13) and float Transpose as oneDNN primitives. */
veil_err veil__engine_softmax_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                      struct veil__engine_step *st);
/*
 * Mul: with an input stored blocked, either kp->binary.mulblk for the element-wise kernel to
 * scale the channel-blocked map (see ops/dnnl.c), or a oneDNN binary primitive; else nothing.
 */
veil_err veil__engine_mul_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                  struct veil__engine_step *st);
veil_err veil__engine_transpose_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                        struct veil__engine_step *st);
/*
 * Fills the window w and the output spatial dims of c->out[0] from the pooling or
 * convolution attributes (auto_pad, ceil_mode); kshape: the kernel's spatial dims for a Conv
 * (is_conv), NULL for pooling (kernel_shape). Defined with the pools (ops/nn.c), shared with
 * Conv (ops/dnnl.c). Errors: VEIL_E_INVALID (attributes inconsistent with the input).
 */
veil_err veil__engine_pool_geometry(struct veil__engine_ictx *c, bool is_conv,
                                    const int64_t *kshape, struct veil__engine_kp_window *w);

/*
 * ---- Ops: the kernels of the registry's rows, by family file ----
 * Each family exports the infer, prepare and exec functions its rows name, with the contracts
 * of struct veil__engine_op_def's members: infer checks the node against its inputs' shapes and
 * dtypes and fills the outputs' and kp (errors: VEIL_E_INVALID naming the problem,
 * VEIL_E_UNSUPPORTED, VEIL_E_LIMIT, VEIL_E_NOMEM); prepare creates kernel state (errors:
 * VEIL_E_NOMEM, VEIL_E_INTERNAL from oneDNN); exec computes the outputs and fails only on
 * data it must reject (an index out of range: VEIL_E_INVALID). The Mul, Softmax, LogSoftmax,
 * Transpose and pooling rows also name oneDNN prepares declared above.
 */

/* ops/elementwise.c: unary, binary, variadic and cast kernels */
veil_err veil__engine_unary_infer(struct veil__engine_ictx *c);
veil_err veil__engine_unary_exec(struct veil__engine_kctx *c,
                                 const struct veil__engine_kparams *kp);
veil_err veil__engine_binary_infer(struct veil__engine_ictx *c);
veil_err veil__engine_binary_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp);
veil_err veil__engine_variadic_infer(struct veil__engine_ictx *c);
veil_err veil__engine_variadic_exec(struct veil__engine_kctx *c,
                                    const struct veil__engine_kparams *kp);
veil_err veil__engine_cast_infer(struct veil__engine_ictx *c);
veil_err veil__engine_cast_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);

/* ops/shape.c: shapes, views, strided copies, constants, padding, CumSum */
veil_err veil__engine_shape_infer(struct veil__engine_ictx *c);
veil_err veil__engine_shape_exec(struct veil__engine_kctx *c,
                                 const struct veil__engine_kparams *kp);
veil_err veil__engine_size_infer(struct veil__engine_ictx *c);
veil_err veil__engine_size_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);
veil_err veil__engine_flatten_infer(struct veil__engine_ictx *c);
veil_err veil__engine_reshape_infer(struct veil__engine_ictx *c);
veil_err veil__engine_squeeze_infer(struct veil__engine_ictx *c);
veil_err veil__engine_unsqueeze_infer(struct veil__engine_ictx *c);
veil_err veil__engine_transpose_infer(struct veil__engine_ictx *c);
veil_err veil__engine_transpose_exec(struct veil__engine_kctx *c,
                                     const struct veil__engine_kparams *kp);
veil_err veil__engine_slice_infer(struct veil__engine_ictx *c);
veil_err veil__engine_slice_exec(struct veil__engine_kctx *c,
                                 const struct veil__engine_kparams *kp);
veil_err veil__engine_concat_infer(struct veil__engine_ictx *c);
veil_err veil__engine_concat_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp);
veil_err veil__engine_split_infer(struct veil__engine_ictx *c);
veil_err veil__engine_split_exec(struct veil__engine_kctx *c,
                                 const struct veil__engine_kparams *kp);
veil_err veil__engine_constant_infer(struct veil__engine_ictx *c);
veil_err veil__engine_constant_exec(struct veil__engine_kctx *c,
                                    const struct veil__engine_kparams *kp);
veil_err veil__engine_constant_of_shape_infer(struct veil__engine_ictx *c);
veil_err veil__engine_constant_of_shape_exec(struct veil__engine_kctx *c,
                                             const struct veil__engine_kparams *kp);
veil_err veil__engine_range_infer(struct veil__engine_ictx *c);
veil_err veil__engine_range_exec(struct veil__engine_kctx *c,
                                 const struct veil__engine_kparams *kp);
veil_err veil__engine_pad_infer(struct veil__engine_ictx *c);
veil_err veil__engine_center_crop_pad_infer(struct veil__engine_ictx *c);
veil_err veil__engine_pad_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);
veil_err veil__engine_tile_infer(struct veil__engine_ictx *c);
veil_err veil__engine_tile_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);
veil_err veil__engine_trilu_infer(struct veil__engine_ictx *c);
veil_err veil__engine_trilu_exec(struct veil__engine_kctx *c,
                                 const struct veil__engine_kparams *kp);
veil_err veil__engine_depth_to_space_infer(struct veil__engine_ictx *c);
veil_err veil__engine_depth_space_exec(struct veil__engine_kctx *c,
                                       const struct veil__engine_kparams *kp);
veil_err veil__engine_space_to_depth_infer(struct veil__engine_ictx *c);
veil_err veil__engine_cumsum_infer(struct veil__engine_ictx *c);
veil_err veil__engine_cumsum_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp);
veil_err veil__engine_eyelike_infer(struct veil__engine_ictx *c);
veil_err veil__engine_eyelike_exec(struct veil__engine_kctx *c,
                                   const struct veil__engine_kparams *kp);

/* ops/gather.c: gathers, scatters and OneHot */
veil_err veil__engine_gather_infer(struct veil__engine_ictx *c);
veil_err veil__engine_gather_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp);
veil_err veil__engine_gather_elements_infer(struct veil__engine_ictx *c);
veil_err veil__engine_gather_elements_exec(struct veil__engine_kctx *c,
                                           const struct veil__engine_kparams *kp);
veil_err veil__engine_scatter_elements_infer(struct veil__engine_ictx *c);
veil_err veil__engine_scatter_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                      struct veil__engine_step *st);
veil_err veil__engine_scatter_elements_exec(struct veil__engine_kctx *c,
                                            const struct veil__engine_kparams *kp);
veil_err veil__engine_gather_nd_infer(struct veil__engine_ictx *c);
veil_err veil__engine_gather_nd_exec(struct veil__engine_kctx *c,
                                     const struct veil__engine_kparams *kp);
veil_err veil__engine_scatter_nd_infer(struct veil__engine_ictx *c);
veil_err veil__engine_scatter_nd_exec(struct veil__engine_kctx *c,
                                      const struct veil__engine_kparams *kp);
veil_err veil__engine_onehot_infer(struct veil__engine_ictx *c);
veil_err veil__engine_onehot_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp);

/*
 * ops/resize.c. Resize: infer checks the attributes and inputs (VEIL_E_INVALID naming the
 * problem, VEIL_E_UNSUPPORTED for a dtype other than float, VEIL_E_LIMIT for tables above
 * VEIL__ENGINE_RESIZE_MAX_TABLES) and builds the per-axis tables into kp->ptr; prepare reserves
 * the passes' scratch in the step; exec runs the passes (it allocates its scratch only when
 * folding constants, VEIL_E_NOMEM on failure). GridSample: infer checks shapes, dtypes and
 * attributes (same errors); exec never reads outside the input, whatever the grid holds.
 */
veil_err veil__engine_resize_infer(struct veil__engine_ictx *c);
veil_err veil__engine_resize_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                     struct veil__engine_step *st);
veil_err veil__engine_resize_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp);
veil_err veil__engine_gridsample_infer(struct veil__engine_ictx *c);
veil_err veil__engine_gridsample_exec(struct veil__engine_kctx *c,
                                      const struct veil__engine_kparams *kp);

/* ops/einsum.c */
veil_err veil__engine_einsum_infer(struct veil__engine_ictx *c);
veil_err veil__engine_einsum_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp);

/* ops/nn.c: reductions, normalisations, softmax, pooling, TopK */
veil_err veil__engine_reduce_infer(struct veil__engine_ictx *c);
veil_err veil__engine_reduce_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp);
veil_err veil__engine_softmax_infer(struct veil__engine_ictx *c);
veil_err veil__engine_softmax_exec(struct veil__engine_kctx *c,
                                   const struct veil__engine_kparams *kp);
veil_err veil__engine_ln_infer(struct veil__engine_ictx *c);
veil_err veil__engine_ln_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                 struct veil__engine_step *st);
veil_err veil__engine_ln_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);
veil_err veil__engine_argmax_infer(struct veil__engine_ictx *c);
veil_err veil__engine_argmax_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp);
veil_err veil__engine_hardmax_infer(struct veil__engine_ictx *c);
veil_err veil__engine_hardmax_exec(struct veil__engine_kctx *c,
                                   const struct veil__engine_kparams *kp);
veil_err veil__engine_topk_infer(struct veil__engine_ictx *c);
veil_err veil__engine_topk_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);
veil_err veil__engine_bn_infer(struct veil__engine_ictx *c);
veil_err veil__engine_bn_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);
veil_err veil__engine_gap_infer(struct veil__engine_ictx *c);
veil_err veil__engine_gap_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);
veil_err veil__engine_norm_infer(struct veil__engine_ictx *c);
veil_err veil__engine_norm_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);
veil_err veil__engine_groupnorm_infer(struct veil__engine_ictx *c);
veil_err veil__engine_groupnorm_exec(struct veil__engine_kctx *c,
                                     const struct veil__engine_kparams *kp);
veil_err veil__engine_col2im_infer(struct veil__engine_ictx *c);
veil_err veil__engine_col2im_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp);
veil_err veil__engine_lrn_infer(struct veil__engine_ictx *c);
veil_err veil__engine_lrn_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);
veil_err veil__engine_pool_infer(struct veil__engine_ictx *c);
veil_err veil__engine_pool_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);

/* ops/dnnl.c: Conv, ConvTranspose, MatMul and Gemm on oneDNN */
veil_err veil__engine_conv_infer(struct veil__engine_ictx *c);
veil_err veil__engine_conv_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                   struct veil__engine_step *st);
veil_err veil__engine_conv_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);
veil_err veil__engine_matmul_infer_fused(struct veil__engine_ictx *c);
veil_err veil__engine_matmul_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                     struct veil__engine_step *st);
veil_err veil__engine_matmul_exec(struct veil__engine_kctx *c,
                                  const struct veil__engine_kparams *kp);
veil_err veil__engine_gemm_infer(struct veil__engine_ictx *c);
veil_err veil__engine_gemm_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                   struct veil__engine_step *st);
veil_err veil__engine_gemm_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);

/*
 * ops/quant.c: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, and the integer
 * products (ConvInteger, QLinearConv, MatMulInteger, QLinearMatMul: one prepare and one exec,
 * which runs the oneDNN int8 path or the C kernels). The prepares also fuse: the dynamic
 * quantisation pattern after a product, a DequantizeLinear -> Conv/MatMul -> QuantizeLinear
 * chain (DequantizeLinear's prepare), and channels-last hand-offs to convolutions.
 */
veil_err veil__engine_quantize_infer(struct veil__engine_ictx *c);
veil_err veil__engine_quantize_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                       struct veil__engine_step *st);
veil_err veil__engine_quantize_exec(struct veil__engine_kctx *c,
                                    const struct veil__engine_kparams *kp);
veil_err veil__engine_dequantize_infer(struct veil__engine_ictx *c);
veil_err veil__engine_dequantize_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                         struct veil__engine_step *st);
veil_err veil__engine_dequantize_exec(struct veil__engine_kctx *c,
                                      const struct veil__engine_kparams *kp);
veil_err veil__engine_dynq_infer(struct veil__engine_ictx *c);
veil_err veil__engine_dynq_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                   struct veil__engine_step *st);
veil_err veil__engine_dynq_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);
veil_err veil__engine_qconv_infer(struct veil__engine_ictx *c);
veil_err veil__engine_qmatmul_infer(struct veil__engine_ictx *c);
veil_err veil__engine_qprod_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                    struct veil__engine_step *st);
veil_err veil__engine_qprod_exec(struct veil__engine_kctx *c,
                                 const struct veil__engine_kparams *kp);

/*
 * ops/recurrent.c: LSTM, GRU and RNN. prepare leaves kp.ptr (the node's checked configuration
 * and scratch layout) and a kstate with self_exec set (its matmuls, run by exec); exec also
 * fails on sequence_lens values outside 0 to the sequence length (VEIL_E_INVALID).
 */
veil_err veil__engine_rnn_infer(struct veil__engine_ictx *c);
veil_err veil__engine_rnn_prepare(struct veil__engine_ictx *c, dnnl_engine_t eng,
                                  struct veil__engine_step *st);
veil_err veil__engine_rnn_exec(struct veil__engine_kctx *c, const struct veil__engine_kparams *kp);

#endif /* VEIL_ENGINE_INT_H */
