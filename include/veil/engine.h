/*
 * veil/engine.h: the inference engine. Loads an ONNX model from memory (the decrypted bytes
 * never touch disk), validates it, optimises it once, and runs it on the CPU with oneDNN.
 *
 * A loaded model is immutable: its weights are shared read-only by every concurrent run, and
 * each run uses its own scratch memory, so veil_engine_run may be called from many threads
 * at once on the same model. Runs execute on the engine's compute lanes: max(1, cores /
 * threads) threads of the process, each one OpenMP team, shared by every model; a caller
 * blocks while its run waits for a lane and executes there.
 */
#ifndef VEIL_ENGINE_H
#define VEIL_ENGINE_H

#include "veil/base.h"
#include "veil/onnx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * enum veil_dtype, veil_dtype_size() and veil_dtype_name() come from veil/onnx.h: element types
 * are numbered as ONNX's TensorProto.DataType (a fact of the format).
 */

/* The declared name, type and shape of a model input or output. dims[i] < 0: dynamic. */
struct veil_tensor_info {
    const char *name; /* owned by the model */
    enum veil_dtype dtype;
    size_t rank;
    int64_t dims[VEIL_LIMIT_TENSOR_RANK];
};

/*
 * A dense, row-major tensor. For inputs, data is borrowed from the caller for the duration of
 * the run. For outputs of veil_engine_run, data is allocated by the engine with
 * veil_aligned_alloc and owned by the caller, who frees it with veil_tensor_release.
 */
struct veil_tensor {
    enum veil_dtype dtype;
    size_t rank;
    int64_t dims[VEIL_LIMIT_TENSOR_RANK];
    void *data;
    size_t nbytes;
};

/* Frees an output tensor's data and zeroes the struct. Safe on a zeroed struct. */
void veil_tensor_release(struct veil_tensor *t);
/* Product of dims into *out. Errors: VEIL_E_LIMIT on overflow, VEIL_E_INVALID on a negative dim. */
VEIL_NODISCARD veil_err veil_tensor_numel(const int64_t *dims, size_t rank, uint64_t *out);

struct veil_engine_options {
    unsigned threads; /* compute threads per run; 0 = all cores */
    /*
     * Only direct convolutions. By default 3x3 stride-1 convolutions may use Winograd
     * kernels where the CPU has them: about twice as fast, with rounding that differs from
     * the direct sum in the last bits (relative error around 1e-6).
     */
    bool direct_conv;
    /* Time every node of every run (see veil_engine_model_profile): two clock reads a node. */
    bool profile;
    /*
     * Plans kept per model (one per distinct input signature, see veil_engine_model_peak_bytes):
     * 0 means VEIL_ENGINE_DEFAULT_PLANS, larger values are capped at VEIL_ENGINE_MAX_PLANS. A
     * signature whose plan was evicted (least recently used first) is planned again on its next
     * run; a run while every cached plan is in use gets a plan of its own, freed after the run.
     */
    unsigned max_plans;
};

#define VEIL_ENGINE_DEFAULT_PLANS 16
#define VEIL_ENGINE_MAX_PLANS 64

/* The default cap on one plan's activation memory (see veil_engine_model_set_max_activation). */
#define VEIL_ENGINE_DEFAULT_MAX_ACTIVATION (64ull << 30)

struct veil_engine_model;

/*
 * Parses, validates and prepares an ONNX model from bytes (borrowed; the model keeps no
 * reference to them after return). A model with operators the engine lacks is refused with
 * VEIL_E_UNSUPPORTED and eb naming every missing operator. Errors: VEIL_E_FORMAT (malformed
 * protobuf or graph), VEIL_E_UNSUPPORTED, VEIL_E_LIMIT, VEIL_E_NOMEM. opt may be NULL.
 * Thread-safe.
 */
VEIL_NODISCARD veil_err veil_engine_model_load(struct veil_span onnx,
                                               const struct veil_engine_options *opt,
                                               struct veil_engine_model **out,
                                               struct veil_errbuf *eb);

/*
 * As veil_engine_model_load, reading tensors stored as ONNX external data through ext
 * (veil/onnx.h: a folder's or a bundle's source; NULL refuses such tensors, naming them). The
 * bytes ext returns are read during the call only. Further errors: those of
 * veil_onnx_parse_external.
 */
VEIL_NODISCARD veil_err veil_engine_model_load_external(struct veil_span onnx,
                                                        const struct veil_onnx_external *ext,
                                                        const struct veil_engine_options *opt,
                                                        struct veil_engine_model **out,
                                                        struct veil_errbuf *eb);

/*
 * Peak activation bytes of the largest plan built so far (a plan is built on the first run of
 * each distinct input signature: input shapes, plus the values of inputs that decide shapes).
 * 0 before the first run. Thread-safe.
 */
size_t veil_engine_model_peak_bytes(struct veil_engine_model *m);

/*
 * Sets the cap on one plan's activation memory in bytes (0 restores the default,
 * VEIL_ENGINE_DEFAULT_MAX_ACTIVATION): runs whose input shapes need more fail with
 * VEIL_E_LIMIT. Applies to plans built afterwards; call it after load and before the first
 * run (not concurrently with runs).
 */
void veil_engine_model_set_max_activation(struct veil_engine_model *m, uint64_t bytes);

/*
 * Bytes of weights the model holds: constants in the model's plain layout plus their copies
 * reordered for the kernels. After the first run, float weights of 1 MiB or more that every
 * plan reads only reordered keep just that copy when the plain layout can be rebuilt from it (a
 * new plan, built on a new input signature, rebuilds the plain copy while it is built and drops
 * it again); Winograd weights are a one-way transform, so those keep their plain copy too.
 * Thread-safe.
 */
size_t veil_engine_model_weight_bytes(struct veil_engine_model *m);

/* Compute threads a run uses (the option, or the core count). */
unsigned veil_engine_model_threads(const struct veil_engine_model *m);

/* Frees a model. No run may be in progress on it. NULL is a no-op. */
void veil_engine_model_free(struct veil_engine_model *m);

/* Time spent in the nodes of one label: an operator type with the operations fused into it. */
struct veil_engine_prof_row {
    char op[96];    /* "Conv", or with fusions "Conv+Add+Relu", "MatMul+Gelu" */
    uint64_t nodes; /* nodes of the optimised graph with this label */
    double ms;      /* total over the profiled runs */
};

/*
 * The profile of the runs completed since load or the last veil_engine_model_profile_reset:
 * one row per label of the nodes that ran (not those folded into constants), slowest first; at most
 * cap rows are written and *n_rows is the number of labels. *runs is the number of runs and *run_ms
 * their summed time from the first input copy to the last output copy (the rows' sum is less: it
 * leaves out those copies). Errors: VEIL_E_INVALID when the model was not loaded with
 * options.profile. Thread-safe.
 */
VEIL_NODISCARD veil_err veil_engine_model_profile(struct veil_engine_model *m,
                                                  struct veil_engine_prof_row *rows, size_t cap,
                                                  size_t *n_rows, uint64_t *runs, double *run_ms,
                                                  struct veil_errbuf *eb);

/* Clears the profile (a warm-up run before the timed ones, say). Thread-safe. */
void veil_engine_model_profile_reset(struct veil_engine_model *m);

/* Model inputs and outputs in graph order; i must be below the count. Pointers live with m. */
size_t veil_engine_model_num_inputs(const struct veil_engine_model *m);
size_t veil_engine_model_num_outputs(const struct veil_engine_model *m);
const struct veil_tensor_info *veil_engine_model_input(const struct veil_engine_model *m, size_t i);
const struct veil_tensor_info *veil_engine_model_output(const struct veil_engine_model *m,
                                                        size_t i);

/*
 * Runs the model. inputs[i] corresponds to veil_engine_model_input(m, i) and must match its
 * dtype and rank and every static dimension. On success outputs[j] (n_out must equal the
 * number of outputs) holds newly allocated results owned by the caller. On failure no output
 * is allocated. Errors: VEIL_E_INVALID (count, dtype or shape mismatch, named in eb, or a shape
 * the graph's operators refuse), VEIL_E_LIMIT, VEIL_E_NOMEM, VEIL_E_UNSUPPORTED or
 * VEIL_E_INTERNAL (a kernel could not be planned or run for this signature: the engine's
 * failure, not the input's). Thread-safe: concurrent runs on one model are allowed, with any
 * mix of input signatures.
 */
VEIL_NODISCARD veil_err veil_engine_run(struct veil_engine_model *m,
                                        const struct veil_tensor *inputs, size_t n_in,
                                        struct veil_tensor *outputs, size_t n_out,
                                        struct veil_errbuf *eb);

/* ---- 16-bit floats ---- */

/*
 * Tensors of dtype VEIL_DT_FLOAT16 (IEEE 754 binary16) and VEIL_DT_BFLOAT16 hold each element
 * as its 16-bit pattern, in inputs and outputs of veil_engine_run alike; the engine computes
 * with them as float (inputs are widened when a run starts, outputs rounded when it ends, and
 * a Cast to either type rounds to its precision). These are the conversions it uses, for
 * callers that read or write such tensors. Rounding is to nearest, ties to even; a value past
 * the largest finite one becomes infinity, subnormals are kept, and a NaN stays a quiet NaN.
 * dt must be VEIL_DT_FLOAT16 or VEIL_DT_BFLOAT16 (anything else is a programmer error and
 * aborts). Pure functions, thread-safe.
 */

/* The 16-bit pattern of v in dt, rounded once from the exact value. */
uint16_t veil_half_from_double(enum veil_dtype dt, double v);
/* The value of the 16-bit pattern bits of dt, exactly. */
float veil_half_to_float(enum veil_dtype dt, uint16_t bits);
/*
 * dst[i] = the value of the i-th of n 16-bit patterns of dt at src (which may have any
 * alignment), exactly. The arrays must not overlap.
 */
void veil_half_widen(enum veil_dtype dt, const void *src, float *dst, size_t n);
/* The i-th 16-bit pattern at dst (any alignment) = src[i] rounded to dt. No overlap. */
void veil_half_narrow(enum veil_dtype dt, const float *src, void *dst, size_t n);

/* ---- NumPy .npy files (inputs and outputs of `veil run` and of tests) ---- */

/*
 * Parses a .npy file (versions 1.0 to 3.0, little-endian, C order, a dtype of the engine) into
 * *out, whose data points into bytes (no copy: valid while bytes are). The data size must match
 * the shape exactly. Errors: VEIL_E_FORMAT, VEIL_E_UNSUPPORTED (dtype, byte order, Fortran
 * order, version), VEIL_E_LIMIT (rank, size). Thread-safe; a pure function of the bytes.
 */
VEIL_NODISCARD veil_err veil_npy_parse(struct veil_span bytes, struct veil_tensor *out,
                                       struct veil_errbuf *eb) VEIL_NONNULL(2);

/*
 * Appends t as a version 1.0 .npy file to out. Errors: VEIL_E_INVALID (dtype without a .npy
 * code), VEIL_E_LIMIT (out's cap), VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_npy_write(const struct veil_tensor *t, struct veil_buf *out)
    VEIL_NONNULL(1, 2);

#endif /* VEIL_ENGINE_H */
