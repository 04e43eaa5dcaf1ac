/*
 * serve_int.h: internals shared by the files of the serve module: the status type that carries
 * TF Serving's codes and messages, the configuration structures read from text protos, the
 * model repository, the request scheduler, metrics, and the codecs for tensors and JSON.
 */
#ifndef VEIL_SERVE_INT_H
#define VEIL_SERVE_INT_H

#include "veil/engine.h"
#include "veil/net.h"
#include "veil/serve.h"

#include <pthread.h>
#include <stdatomic.h>

#include "tensorflow/core/framework/tensor.pb-c.h"

/* ---- Limits ---- */

#define SV_MSG_MAX 1024    /* status messages longer than this end in ...TRUNCATED */
#define SV_NAME_MAX 255    /* model names, labels, aliases */
#define SV_MAX_MODELS 1024 /* models in one config */
#define SV_MAX_IO 64       /* inputs or outputs of one signature */
#define SV_REQ_ARENA_MAX ((size_t)3 << 30) /* per-request arena cap */
#define SV_JSON_MAX_DEPTH 64               /* nesting of a REST body */

/* Consumes n bytes the caller has already checked are there. */
static inline void sv_skip(struct veil_span *s, size_t n)
{
    if (n == 0)
        return;
    veil_err rc = veil_span_skip(s, n);
    VEIL_ASSERT(rc == VEIL_OK);
}

static inline void sv_get_u8(struct veil_span *s, uint8_t *v)
{
    veil_err rc = veil_span_get_u8(s, v);
    VEIL_ASSERT(rc == VEIL_OK);
}

/* ---- Status: a canonical code (gRPC numbering) and TF Serving's message ---- */

struct sv_status {
    int code;
    char msg[SV_MSG_MAX + 16];
};

/* Sets code and a formatted message (cut at SV_MSG_MAX with "...TRUNCATED"); returns false. */
bool sv_fail(struct sv_status *st, int code, const char *fmt, ...) VEIL_PRINTF(3, 4);
/* The HTTP status for a canonical code (TF Serving's mapping). */
int sv_http_status(int code);

/* ---- Text-format protobuf (configuration files), a pure parser ---- */

struct tp_node {
    struct veil_span name;
    bool is_msg;
    bool is_string; /* value came from a quoted string (unescaped) */
    struct veil_span value;
    struct tp_node *child; /* fields of a message */
    struct tp_node *next;
    uint32_t line;
};

/*
 * Parses protobuf text format into a tree allocated in a (values are unescaped copies).
 * Errors: VEIL_E_FORMAT with the line in eb, VEIL_E_LIMIT (depth), VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil__serve_tp_parse(struct veil_span text, struct veil_arena *a,
                                             struct tp_node **root, struct veil_errbuf *eb);

enum sv_policy { SV_POLICY_LATEST = 0, SV_POLICY_ALL, SV_POLICY_SPECIFIC };

struct sv_label {
    char *name;
    int64_t version;
};

struct sv_model_config {
    char *name;
    char *base_path;
    enum sv_policy policy;
    uint32_t latest_n;
    int64_t *versions;
    size_t n_versions;
    struct sv_label *labels;
    size_t n_labels;
};

struct sv_batching {
    int64_t max_batch_size;
    int64_t batch_timeout_micros;
    int64_t max_enqueued_batches;
    int64_t num_batch_threads;
    int64_t allowed[64];
    size_t n_allowed;
};

struct sv_ssl {
    struct veil_span server_key;
    struct veil_span server_cert;
    struct veil_span custom_ca;
    bool client_verify;
};

struct sv_monitoring {
    bool enable;
    char path[256];
};

/*
 * Config extraction from text: all pure, allocating from a (strings live in a). Unknown
 * fields and wrong value kinds are VEIL_E_FORMAT naming field and line.
 */
VEIL_NODISCARD veil_err veil__serve_parse_model_config(struct veil_span text, struct veil_arena *a,
                                                       struct sv_model_config **out, size_t *n,
                                                       struct veil_errbuf *eb);
VEIL_NODISCARD veil_err veil__serve_parse_batching(struct veil_span text, struct veil_arena *a,
                                                   struct sv_batching *out, struct veil_errbuf *eb);
VEIL_NODISCARD veil_err veil__serve_parse_ssl(struct veil_span text, struct veil_arena *a,
                                              struct sv_ssl *out, struct veil_errbuf *eb);
VEIL_NODISCARD veil_err veil__serve_parse_monitoring(struct veil_span text, struct veil_arena *a,
                                                     struct sv_monitoring *out,
                                                     struct veil_errbuf *eb);
/* Fills TF's defaults for unset batching fields (0 means unset). */
void veil__serve_batching_defaults(struct sv_batching *b);

/* ---- Tensors ---- */

enum tf_dtype {
    TF_DT_INVALID = 0,
    TF_DT_FLOAT = 1,
    TF_DT_DOUBLE = 2,
    TF_DT_INT32 = 3,
    TF_DT_UINT8 = 4,
    TF_DT_INT16 = 5,
    TF_DT_INT8 = 6,
    TF_DT_STRING = 7,
    TF_DT_COMPLEX64 = 8,
    TF_DT_INT64 = 9,
    TF_DT_BOOL = 10,
    TF_DT_BFLOAT16 = 14,
    TF_DT_UINT16 = 17,
    TF_DT_COMPLEX128 = 18,
    TF_DT_HALF = 19,
    TF_DT_UINT32 = 22,
    TF_DT_UINT64 = 23,
};

/* TF DataType of an engine dtype (TF_DT_INVALID when none). */
int veil__serve_tf_dtype(enum veil_dtype dt);
/* "DT_FLOAT"; "DT_INVALID" for unknown values. */
const char *veil__serve_tf_dtype_name(int tf);
/* TF's short name used in messages ("float", "int64", "string"). */
const char *veil__serve_tf_dtype_short(int tf);

struct sv_tinfo {
    char *name;
    int tf_dtype;
    enum veil_dtype dt;
    size_t rank;
    int64_t dims[VEIL_LIMIT_TENSOR_RANK];
};

struct sv_sig {
    size_t n_in, n_out;
    struct sv_tinfo in[SV_MAX_IO];
    struct sv_tinfo out[SV_MAX_IO];
};

/*
 * Turns a TensorProto into a dense tensor of the signature's dtype (TF's Tensor::FromProto
 * rules: tensor_content wins and must have the exact size; else typed values with the
 * last-value broadcast). tensor_content is used in place (no copy); typed values are written
 * into memory from a. Pure. Errors set st (INVALID_ARGUMENT, UNIMPLEMENTED) and return false.
 */
bool veil__serve_tensor_from_proto(const Tensorflow__TensorProto *tp, const struct sv_tinfo *ti,
                                   struct veil_arena *a, struct veil_tensor *out,
                                   struct sv_status *st);

/*
 * Fills tp (initialised by the caller) from t with TF Serving's typed fields; numeric values
 * are referenced in place where the field type matches, else converted into a.
 */
bool veil__serve_tensor_to_proto(const struct veil_tensor *t, struct veil_arena *a,
                                 Tensorflow__TensorProto *tp, struct sv_status *st);

/* A ProtobufCAllocator that takes memory from an arena (frees are no-ops). */
void veil__serve_pb_allocator(struct veil_arena *a, ProtobufCAllocator *out);

/* Checks t against ti (dtype, rank, static dims). Sets st (INVALID_ARGUMENT) on mismatch. */
bool veil__serve_tensor_check(const struct veil_tensor *t, const struct sv_tinfo *ti,
                              size_t arg_index, struct sv_status *st);

/* ---- JSON (REST) ---- */

enum json_kind {
    JSON_NULL,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT
};

struct json_val {
    enum json_kind kind;
    uint32_t n; /* members of an array or object */
    /*
     * A flat array is a regular nested list of numbers only (the usual tensor payload). Its
     * members are not materialised: text spans the whole list and flat_dims its shape, and
     * the typed decoder parses the numbers straight into tensor memory.
     */
    bool flat;
    uint8_t flat_rank;
    int64_t flat_dims[VEIL_LIMIT_TENSOR_RANK];
    struct veil_span text;  /* number token, the unescaped string, or a flat array's text */
    struct veil_span key;   /* when a member of an object: its unescaped key */
    struct json_val *child; /* first member */
    struct json_val *next;  /* next sibling */
    size_t offset;          /* byte offset in the document */
};

/*
 * Parses a JSON document (RFC 8259 plus NaN, Infinity, -Infinity as rapidjson accepts) into
 * values allocated from a. Strings are unescaped; numbers stay as tokens for the typed
 * decoder. Pure. Errors set st to INVALID_ARGUMENT with TF Serving's "JSON Parse error: ..."
 * text and return false.
 */
bool veil__serve_json_parse(struct veil_span doc, struct veil_arena *a, struct json_val **out,
                            struct sv_status *st);

/* Writes a JSON string literal (escaped) to b. */
VEIL_NODISCARD veil_err veil__serve_json_str(struct veil_buf *b, struct veil_span s);

/* Parses a JSON number token as double / int64 / uint64 (exactness checked). */
bool veil__serve_json_f64(struct veil_span tok, double *out);
bool veil__serve_json_i64(struct veil_span tok, int64_t *out);
bool veil__serve_json_u64(struct veil_span tok, uint64_t *out);

/*
 * Decodes the instances / inputs of a parsed REST predict body against a signature into
 * tensors (row or columnar format, TF's json_tensor.cc rules), written straight into memory
 * from a. Pure. On success *row_format tells which form was used and tensors[i] corresponds
 * to sig->in[i]. Errors set st and return false.
 */
bool veil__serve_rest_decode_predict(const struct json_val *root, const struct sv_sig *sig,
                                     struct veil_arena *a, struct veil_tensor *tensors,
                                     bool *row_format, struct sv_status *st);

/*
 * Checks that root is an object and copies its "signature_name" (empty when absent) to out.
 * Errors set st (INVALID_ARGUMENT) and return false.
 */
bool veil__serve_rest_signature_name(const struct json_val *root, char *out, size_t cap,
                                     struct sv_status *st);

/* Encodes predict outputs (aliases names[i]) as {"predictions": ...} or {"outputs": ...}. */
bool veil__serve_rest_encode_predict(const struct veil_tensor *outs, const char *const *names,
                                     size_t n, bool row_format, struct veil_buf *b,
                                     struct sv_status *st);

/*
 * Writes every element of v (a list nested any way, or a single scalar) in row-major order into
 * data as ti->dt, for KServe v2 tensor data (flat or nested, the shape comes from the request).
 * The count must be exactly numel. Pure. Errors set st (INVALID_ARGUMENT) and return false.
 */
bool veil__serve_json_fill_elems(const struct json_val *v, const struct sv_tinfo *ti, void *data,
                                 size_t numel, struct sv_status *st);
/* True when dt has a JSON form (numbers or booleans) in both directions. */
bool veil__serve_json_dtype_ok(enum veil_dtype dt);
/* Appends t's elements as one flat JSON list. Errors: VEIL_E_UNSUPPORTED (no JSON form), caps. */
VEIL_NODISCARD veil_err veil__serve_json_put_flat(struct veil_buf *b, const struct veil_tensor *t);

/* Decodes standard base64 with padding. Errors: VEIL_E_FORMAT. */
VEIL_NODISCARD veil_err veil__serve_b64_decode(struct veil_span in, struct veil_arena *a,
                                               struct veil_span *out);

/* ---- REST URLs ---- */

enum sv_verb { SV_VERB_NONE = 0, SV_VERB_CLASSIFY, SV_VERB_REGRESS, SV_VERB_PREDICT };

struct sv_route {
    char name[SV_NAME_MAX + 1];
    char label[SV_NAME_MAX + 1];
    bool has_version;
    bool has_label;
    bool version_overflow; /* digits that do not fit int64 */
    int64_t version;
    char version_text[32];
    bool metadata;
    enum sv_verb verb;
    bool missing_name; /* GET /v1/models */
};

/*
 * Matches a REST path against TF Serving's regexes for method ("GET" or "POST"); false means
 * "Malformed request". Names and labels are percent-decoded. Pure.
 */
bool veil__serve_rest_route_parse(const char *method, struct veil_span path, struct sv_route *rt);
/* Consumes lit from the front of s, ASCII case-insensitively; false (s unchanged) otherwise. */
bool veil__serve_eat_ci(struct veil_span *s, const char *lit);
/*
 * Percent-decodes one URL path segment seg into out (cap bytes with the NUL), for the TF
 * Serving and KServe routes alike; false when it does not fit or decodes to a control
 * character (a %00 would cut a model name short; names reach logs, metrics and the model
 * table). A '%' not followed by two hex digits stays as it is. Pure.
 */
bool veil__serve_path_unescape(struct veil_span seg, char *out, size_t cap);

/* ---- Metrics ---- */

struct sv_metrics;
VEIL_NODISCARD veil_err veil__serve_metrics_new(struct sv_metrics **out);
void veil__serve_metrics_free(struct sv_metrics *m);
/* Records one request. api: "Predict"...; entry: "GRPC" / "REST". Thread-safe. */
void veil__serve_metrics_request(struct sv_metrics *m, const char *model, int64_t version,
                                 const char *api, const char *entry, int code, uint64_t latency_ns);
/* Records one batch formed by the batcher (batch_size rows, before padding). Thread-safe. */
void veil__serve_metrics_batch(struct sv_metrics *m, const char *model, size_t batch_size);
/* Records one engine run of model (batched or not) that took run_ns. Thread-safe. */
void veil__serve_metrics_runtime(struct sv_metrics *m, const char *model, uint64_t run_ns);
/* Appends the Prometheus text exposition (without model states) to b. */
VEIL_NODISCARD veil_err veil__serve_metrics_render(struct sv_metrics *m, struct veil_buf *b);

/* ---- Repository ---- */

enum sv_state {
    SV_UNKNOWN = 0,
    SV_START = 10,
    SV_LOADING = 20,
    SV_AVAILABLE = 30,
    SV_UNLOADING = 40,
    SV_END = 50
};

struct sv_batcher;
struct sv_repo;

struct sv_version {
    struct sv_model *model;
    int64_t version;
    enum sv_state state;
    int err_code;
    char err_msg[256];
    struct veil_engine_model *em;
    struct sv_sig sig;
    unsigned refs;      /* requests holding it, under the repo mutex */
    bool failed_once;   /* do not retry a failed load until the file changes */
    int64_t file_mtime; /* stamp of the model file when last loaded (repo.c file_stamp) */
    struct sv_batcher *batcher;
    struct sv_version *next; /* sorted by version, highest first */
};

struct sv_model {
    struct sv_model_config cfg;
    struct veil_arena cfg_arena; /* the strings of cfg */
    bool removed;                /* dropped by a config reload: unloading, not served */
    struct sv_version *versions;
    struct sv_repo *repo;
};

struct sv_repo {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t poller;
    bool poller_started;
    bool stop;
    struct sv_model **models; /* removed models stay (flagged) until the repository is freed */
    size_t n_models;
    char *config_path; /* re-read every config_poll_s seconds when > 0 */
    int64_t config_poll_s;
    int64_t poll_s;
    struct veil_key_source *keys;
    struct veil_engine_options eopt;
    const struct sv_batching *batching; /* NULL: no batching */
    struct sv_metrics *metrics;
    atomic_bool first_scan_done;
    /* Only sealed model files load (veil_serve_options.sealed_only); set before start. */
    bool sealed_only;
    /* veil_serve_options.min_versions, copied (names in min_arena); set before start. */
    size_t n_min;
    struct veil_serve_min_version *min;
    struct veil_arena min_arena;
    /* veil_serve_options.allow_version_labels_for_unavailable_models; set before start. */
    bool allow_unavailable_labels;
    /* Warmup replays per request before AVAILABLE (0: no warmup); set before start. */
    unsigned warmup_iterations;
    /*
     * Set when the first load leaves a version label on a version that is not AVAILABLE:
     * fatal_msg says which, on_fatal(on_fatal_ud) was called once (the server stops) and the
     * repository never reports ready. on_fatal is set before start.
     */
    atomic_bool fatal;
    char fatal_msg[SV_NAME_MAX + 128];
    void (*on_fatal)(void *ud);
    void *on_fatal_ud;
};

/*
 * Builds a repository of the given models (configs copied). Nothing is loaded until
 * veil__serve_repo_start. Errors: VEIL_E_INVALID (duplicate name), VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil__serve_repo_new(const struct sv_model_config *cfgs, size_t n,
                                             int64_t poll_s, struct veil_key_source *keys,
                                             const struct veil_engine_options *eopt,
                                             const struct sv_batching *batching,
                                             struct sv_metrics *metrics, struct sv_repo **out,
                                             struct veil_errbuf *eb);
/*
 * Sets the lowest version of each named model that may load (copied). Before start.
 * Errors: VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil__serve_repo_set_min_versions(struct sv_repo *r,
                                                          const struct veil_serve_min_version *mv,
                                                          size_t n, struct veil_errbuf *eb);
/*
 * Starts the repository thread: the first scan, then a scan every poll_s seconds (when > 0) and
 * a re-read of config_path every config_poll_s seconds (when both are set).
 */
VEIL_NODISCARD veil_err veil__serve_repo_start(struct sv_repo *r, const char *config_path,
                                               int64_t config_poll_s, struct veil_errbuf *eb);
/*
 * Replaces the model list (TF Serving's config reload): new models are added, changed ones take
 * their new base path, policy and labels, and models missing from cfgs are unloaded and no
 * longer served. Repository thread only (or before start). Errors: VEIL_E_NOMEM,
 * VEIL_E_LIMIT (too many models).
 */
VEIL_NODISCARD veil_err veil__serve_repo_reconfigure(struct sv_repo *r,
                                                     const struct sv_model_config *cfgs, size_t n,
                                                     struct veil_errbuf *eb);
/* One scan of every base path: loads and unloads versions by policy. */
void veil__serve_repo_scan(struct sv_repo *r);
void veil__serve_repo_free(struct sv_repo *r);

/*
 * Resolves a ModelSpec to a held AVAILABLE version (release with veil__serve_repo_release).
 * has_version / label select the version; neither: the latest available. Errors set st as TF
 * Serving does (NOT_FOUND Servable not found..., INVALID_ARGUMENT for a label).
 */
bool veil__serve_repo_acquire(struct sv_repo *r, const char *name, bool has_version,
                              int64_t version, const char *label, struct sv_version **out,
                              struct sv_status *st);
void veil__serve_repo_release(struct sv_repo *r, struct sv_version *v);

/* One version's status, as GetModelStatus reports it. */
struct sv_version_status {
    int64_t version;
    int state;
    int err_code;
    char err_msg[256];
};

/*
 * Copies the status of a model's versions (highest first; only `version` when has_version)
 * into out[cap]. Errors set st (NOT_FOUND with TF Serving's texts).
 */
bool veil__serve_repo_status(struct sv_repo *r, const char *name, bool has_version, int64_t version,
                             struct sv_version_status *out, size_t cap, size_t *n,
                             struct sv_status *st);
/* True when every model has an AVAILABLE version. */
bool veil__serve_repo_ready(struct sv_repo *r);
/* Appends the model state gauges in Prometheus text to b. */
VEIL_NODISCARD veil_err veil__serve_repo_metrics(struct sv_repo *r, struct veil_buf *b);

/* ---- Scheduler ---- */

/*
 * The completion of a run: rc VEIL_OK with outs[n_out] owned by the callee (release each
 * with veil_tensor_release), or an error in st. Called on a scheduler thread.
 */
typedef void (*sv_done_fn)(void *arg, bool ok, struct veil_tensor *outs, size_t n_out,
                           struct sv_status *st);

struct sv_sched;

/* Starts threads request threads. Errors: VEIL_E_NOMEM, VEIL_E_INTERNAL. */
VEIL_NODISCARD veil_err veil__serve_sched_new(unsigned threads, size_t max_queue,
                                              struct sv_sched **out);
/* Queues fn(arg) on a request thread. False when the queue is full (UNAVAILABLE). */
bool veil__serve_sched_submit(struct sv_sched *s, void (*fn)(void *), void *arg);
/* Stops after the queued work is done and joins the threads. */
void veil__serve_sched_free(struct sv_sched *s);

/*
 * Runs v's model on inputs (n = v->sig.n_in), through its batcher when batching is on, else
 * inline. done is called exactly once (possibly before this returns). deadline_ns 0: none.
 */
void veil__serve_run(struct sv_repo *r, struct sv_version *v, struct veil_tensor *inputs,
                     uint64_t deadline_ns, sv_done_fn done, void *arg);

/* Creates / frees a version's batcher (called by the repository). */
VEIL_NODISCARD veil_err veil__serve_batcher_new(struct sv_version *v, const struct sv_batching *b,
                                                struct sv_metrics *m, struct sv_batcher **out);
void veil__serve_batcher_free(struct sv_batcher *b);

/* ---- KServe v2 / Open Inference Protocol (kserve.c, kserve_rest.c, kserve_grpc.c) ---- */

#define SV_KV2_PLATFORM "onnx_onnxv1"
#define SV_KV2_VERSION "0.1.0" /* the project version (CMakeLists.txt), in server metadata */

/* The v2 datatype of an engine dtype ("FP32", "BYTES" for strings), or NULL when v2 has none. */
const char *veil__serve_kv2_dtype_name(enum veil_dtype dt);
/* The engine dtype of a v2 datatype name; VEIL_DT_UNDEFINED when unknown or unsupported (BF16). */
enum veil_dtype veil__serve_kv2_dtype_parse(struct veil_span name);

/*
 * Parses a v2 version string: empty means the server's choice (*has false), else decimal digits
 * that fit int64. False when it is neither (no such version can exist).
 */
bool veil__serve_kv2_version(const char *s, bool *has, int64_t *version);

/* One request input: its name and a dense tensor (in place in the request, or in the arena). */
struct kv2_input {
    char *name;
    struct veil_tensor t;
};

/* One requested output; binary: answer it as binary tensor data (REST). */
struct kv2_output {
    char *name;
    bool binary;
};

/* A decoded inference request, from REST (JSON and binary) or gRPC. */
struct kv2_request {
    char *id;           /* NULL when absent */
    bool binary_output; /* parameters.binary_data_output */
    size_t n_in;
    size_t n_out; /* 0: every output, binary as binary_output says */
    struct kv2_input in[SV_MAX_IO];
    struct kv2_output out[SV_MAX_IO];
};

/*
 * Parses a REST inference body: the JSON object, then (when header_len, the value of
 * Inference-Header-Content-Length, is not NULL) the binary tensor data after its first
 * header_len bytes, cut into the inputs with binary_data_size in order. Checks names, datatypes,
 * shapes (rank, overflow, size caps), that each binary chunk has exactly the tensor's size and
 * that the chunks add up to the binary part. Tensors point into body when aligned, else into
 * copies in a; JSON data is decoded into a. Pure. Errors set st (INVALID_ARGUMENT) and return
 * false.
 */
bool veil__serve_kv2_parse_rest(struct veil_span body, const char *header_len, struct veil_arena *a,
                                struct kv2_request *rq, struct sv_status *st);

/*
 * Checks that a BYTES tensor's bytes are exactly numel 4-byte-little-endian-length-prefixed
 * elements. Pure.
 */
bool veil__serve_kv2_bytes_ok(struct veil_span b, uint64_t numel);

/* Which of a signature's outputs a request answers, in the answer's order. */
struct kv2_plan {
    size_t n;
    size_t idx[SV_MAX_IO];
    bool binary[SV_MAX_IO];
};

/*
 * Matches a request against a signature: every signature input exactly once by name, with its
 * datatype and a shape it accepts, copied into in[] in signature order (data borrowed from rq);
 * the requested outputs (unknown or repeated names refused) into plan. Pure. Errors set st
 * (INVALID_ARGUMENT) and return false.
 */
bool veil__serve_kv2_bind(const struct kv2_request *rq, const struct sv_sig *sig,
                          struct veil_tensor *in, struct kv2_plan *plan, struct sv_status *st);

/*
 * Writes the REST inference response for outs (sig order) as plan selects: the JSON object, then
 * the binary outputs' bytes. *json_len is the JSON part's length when binary data follows, else
 * 0 (no Inference-Header-Content-Length). Errors set st and return false.
 */
bool veil__serve_kv2_encode_rest(const struct kv2_request *rq, const char *model, int64_t version,
                                 const struct sv_sig *sig, const struct veil_tensor *outs,
                                 const struct kv2_plan *plan, struct veil_buf *b, size_t *json_len,
                                 struct sv_status *st);

/* The /v2 REST operations. */
enum kv2_op {
    KV2_NONE = 0,
    KV2_SERVER_META,
    KV2_LIVE,
    KV2_READY,
    KV2_MODEL_META,
    KV2_MODEL_READY,
    KV2_INFER
};

struct kv2_route {
    enum kv2_op op;
    char name[SV_NAME_MAX + 1];
    char version[32];
};

/*
 * Matches a /v2 path (case-sensitive, as the protocol's strings are). False: no such path. The
 * model name is percent-decoded; a version longer than 31 bytes is kept cut (it cannot parse).
 * Pure.
 */
bool veil__serve_kv2_route_parse(struct veil_span path, struct kv2_route *rt);

/*
 * A model's AVAILABLE versions (highest first) into out[cap]; *known false when no such model.
 * Thread-safe.
 */
void veil__serve_kv2_versions(struct sv_repo *r, const char *name, int64_t *out, size_t cap,
                              size_t *n, bool *known);

/* ---- Model warmup (warmup.c) ---- */

/*
 * Takes the next TFRecord record (u64le length, its masked CRC-32C, data, masked CRC-32C) from
 * s as a view. Pure. Errors: VEIL_E_INCOMPLETE (cut), VEIL_E_FORMAT (a CRC does not match); s is
 * unchanged on error.
 */
VEIL_NODISCARD veil_err veil__serve_tfrecord_next(struct veil_span *s, struct veil_span *rec);
/*
 * The PredictRequest bytes inside a serialized PredictionLog (predict_log.request). Pure.
 * Errors: VEIL_E_UNSUPPORTED (another log type), VEIL_E_FORMAT (not a protobuf message).
 */
VEIL_NODISCARD veil_err veil__serve_warmup_predict(struct veil_span rec, struct veil_span *request);
/*
 * Runs the Predict requests of version_dir/assets.extra/tf_serving_warmup_requests on em
 * (iterations times each), checked against sig; no file is success with *n_run 0. Errors:
 * VEIL_E_FORMAT (a bad record), VEIL_E_UNSUPPORTED (not predict_log), VEIL_E_INVALID (inputs the
 * model refuses), VEIL_E_LIMIT (over 1000 records or 1 GiB), I/O and engine errors; eb says which
 * record.
 */
VEIL_NODISCARD veil_err veil__serve_warmup(const char *version_dir, struct veil_engine_model *em,
                                           const struct sv_sig *sig, unsigned iterations,
                                           size_t *n_run, struct veil_errbuf *eb);

/* ---- The server object ---- */

struct veil_serve {
    struct veil_serve_options opt;
    struct veil_arena arena; /* copies of option strings and parsed configs */
    struct veil_net_loop *loop;
    struct veil_tls_ctx *tls_grpc;
    struct veil_tls_ctx *tls_rest;
    struct veil_grpc_server *grpc;
    struct veil_http_server *http;
    struct sv_repo *repo;
    struct sv_sched *sched;
    struct sv_metrics *metrics;
    struct sv_batching batching;
    struct sv_monitoring monitoring;
    atomic_bool started;
    /* What renewing the TLS identity needs (identity.c): the client CA and whether clients are
     * verified, as the first identity had them, and the notAfter (Unix seconds; 0: plaintext
     * or unreadable) of the certificate new handshakes present. */
    struct veil_buf tls_client_ca;
    bool tls_client_verify;
    _Atomic int64_t tls_not_after;
};

/*
 * Keeps the TLS settings a renewed identity must repeat (a copy of tc's client CA, read from
 * its file when given by path, and client_verify) and the current certificate's notAfter.
 * Called once the contexts are made. Errors: those of reading the CA file, VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil__serve_identity_init(struct veil_serve *s,
                                                  const struct veil_tls_config *tc,
                                                  struct veil_errbuf *eb);
/* Releases what veil__serve_identity_init kept; a zeroed server is a no-op. */
void veil__serve_identity_release(struct veil_serve *s);
/* True when the certificate new handshakes present has passed its notAfter. Thread-safe. */
bool veil__serve_identity_expired(struct veil_serve *s);
/*
 * The readiness every probe reports (/readyz, KServe's server ready, gRPC health): the models
 * are ready and the TLS certificate has not expired. Thread-safe.
 */
bool veil__serve_ready(struct veil_serve *s);

/* ---- The attestation endpoint (evidence.c, docs/attest/server-check.md) ---- */

#define SV_EVIDENCE_REST_PATH "/veil/v1/attestation"
#define SV_EVIDENCE_GRPC_METHOD "/veil.v1.Attestation/GetEvidence"
#define SV_EVIDENCE_NONCE_MIN 16 /* bytes: a client's nonce must be hard to guess */
#define SV_EVIDENCE_NONCE_MAX 64 /* the most an RA-TLS claims nonce holds */

/* A client's attestation request: its nonce and the SHA-256 of the TLS key it sees. */
struct sv_evidence_req {
    uint8_t nonce[SV_EVIDENCE_NONCE_MAX];
    size_t nonce_len;
    uint8_t key_sha256[32];
    bool has_key;
};

/*
 * Parses a REST request body {"nonce": HEX (16..64 bytes), "key_sha256": HEX (32 bytes)}, both
 * required, nothing else. Pure. On failure returns false with a one-line reason in why.
 */
bool veil__serve_evidence_parse_json(struct veil_span body, struct sv_evidence_req *out, char *why,
                                     size_t cap);
/*
 * Parses a gRPC GetEvidenceRequest { bytes nonce = 1; bytes key_sha256 = 2; } (unknown fields
 * skipped, both required, sizes as above). Pure. On failure returns false with why.
 */
bool veil__serve_evidence_parse_pb(struct veil_span msg, struct sv_evidence_req *out, char *why,
                                   size_t cap);
/* Answers an attestation request (loop thread; the evidence is made on a request thread). */
void veil__serve_evidence_rest(struct veil_serve *s, struct veil_http_req *req);
void veil__serve_evidence_grpc(struct veil_serve *s, struct veil_grpc_call *call);

/* Frontend handlers (loop thread). */
void veil__serve_grpc_handle(void *ud, struct veil_grpc_call *call);
void veil__serve_rest_handle(void *ud, struct veil_http_req *req);
/* The KServe v2 frontends: /v2 REST paths and inference.GRPCInferenceService methods. */
void veil__serve_kserve_rest_handle(struct veil_serve *s, struct veil_http_req *req);
void veil__serve_kserve_grpc_handle(struct veil_serve *s, struct veil_grpc_call *call);

/*
 * Writes v escaped as a Prometheus label value (backslash, double quote and line feed become
 * \\, \" and \n) into out (cap bytes, NUL-terminated; cut short rather than overflow).
 */
void veil__serve_metrics_escape(const char *v, char *out, size_t cap);

/* Converts a veil_err from the engine or repository into a canonical code. */
int veil__serve_code_of(veil_err rc);
/*
 * The canonical code of a failed veil_engine_run: inputs the model refuses are
 * INVALID_ARGUMENT, memory and activation caps RESOURCE_EXHAUSTED, and every other failure
 * (a kernel or oneDNN refusing a shape the graph allows included) INTERNAL: the call is
 * implemented, the server failed it (UNIMPLEMENTED would say the method does not exist).
 */
int veil__serve_run_code_of(veil_err rc);

#endif /* VEIL_SERVE_INT_H */
