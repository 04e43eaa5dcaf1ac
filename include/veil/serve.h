/*
 * veil/serve.h: the model server behind `veil serve`. TensorFlow Serving's gRPC API
 * (PredictionService, ModelService) and REST API over TLS or mutual TLS, a polled model
 * repository with TF Serving's version policies and labels, dynamic batching, Prometheus
 * metrics and health endpoints. docs/serve/README.md describes the behaviour in full;
 * ../shared/reference/tfserving-api.md is the wire contract it follows.
 *
 * Model keys come from a key source: today a key file or a directory of key files; a key
 * broker client plugs into the same interface (veil_key_source_new).
 */
#ifndef VEIL_SERVE_H
#define VEIL_SERVE_H

#include "veil/base.h"
#include "veil/crypto.h"
#include "veil/engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Key sources ---- */

/*
 * How a key source answers: get returns a new key (the caller frees it with
 * veil_model_key_free) for key_id, or VEIL_E_NOTFOUND when it has none, VEIL_E_UNAVAILABLE
 * when it cannot answer yet (a broker not reached: the load is retried at the next poll).
 * get is called from the repository's loader thread, never concurrently with itself.
 * free releases ud (may be NULL).
 */
struct veil_key_source_ops {
    veil_err (*get)(void *ud, const char *key_id, struct veil_model_key **out,
                    struct veil_errbuf *eb);
    void (*free)(void *ud);
};

struct veil_key_source;

/*
 * Wraps a key provider. ops is borrowed (usually static); ud is owned from now on and released
 * with ops->free by veil_key_source_free. Errors: VEIL_E_NOMEM (ud is then released too).
 */
VEIL_NODISCARD veil_err veil_key_source_new(const struct veil_key_source_ops *ops, void *ud,
                                            struct veil_key_source **out);

/*
 * A key source over a key file, or a directory whose regular files are all key files (each
 * parsed with veil_model_key_parse; files that do not parse are skipped with a warning). The
 * keys are read once, here, into secure memory. Errors: those of veil_model_key_load, VEIL_E_IO
 * (unreadable directory), VEIL_E_NOTFOUND (a directory with no key), VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_key_source_new_files(const char *path, struct veil_key_source **out,
                                                  struct veil_errbuf *eb);

/* Asks the source for the key key_id. Errors: as the provider's get. */
VEIL_NODISCARD veil_err veil_key_source_get(struct veil_key_source *ks, const char *key_id,
                                            struct veil_model_key **out, struct veil_errbuf *eb);

/* Releases the source and its provider. NULL is a no-op. */
void veil_key_source_free(struct veil_key_source *ks);

/* ---- Model files (docs/format/external-data.md) ---- */

/*
 * Builds an engine model from the plaintext of a sealed file whose authenticated header is hdr:
 * a bundle when hdr->content_type is VEIL_ONNX_BUNDLE_CONTENT_TYPE (the model and its external
 * data files; nothing is read from disk), otherwise a bare ONNX file. plain is read during the
 * call only. Errors: those of veil_onnx_bundle_parse and veil_engine_model_load_external.
 */
VEIL_NODISCARD veil_err veil_serve_model_from_plain(struct veil_span plain,
                                                    const struct veil_seal_header *hdr,
                                                    const struct veil_engine_options *opt,
                                                    struct veil_engine_model **out,
                                                    struct veil_errbuf *eb);

/*
 * Builds an engine model from the ONNX file at path (plaintext, at most VEIL_LIMIT_MODEL_BYTES),
 * reading external data from the file's folder (veil_onnx_dir_open). Errors: I/O errors naming
 * the path, and those of veil_engine_model_load_external.
 */
VEIL_NODISCARD veil_err veil_serve_model_from_file(const char *path,
                                                   const struct veil_engine_options *opt,
                                                   struct veil_engine_model **out,
                                                   struct veil_errbuf *eb);

/* ---- TensorFlow DataType numbers (a fact of TF's types.proto) ---- */

/* The TF DataType of an engine dtype (DT_INVALID = 0 when TF has none). */
int veil_serve_tf_dtype(enum veil_dtype dt);
/* The engine dtype of a TF DataType (VEIL_DT_UNDEFINED when the engine has none). */
enum veil_dtype veil_serve_engine_dtype(int tf);
/* TF's enum name of a DataType ("DT_FLOAT"); "DT_INVALID" for unknown values. Never NULL. */
const char *veil_serve_tf_dtype_name(int tf);

/* ---- The server ---- */

/*
 * Attests the server's TLS key to a client (docs/attest/server-check.md): makes an RA-TLS
 * certificate (veil_attest_ratls_create_for_key) for the server's TLS key whose DER
 * SubjectPublicKeyInfo hashes (SHA-256) to key_sha256, binding nonce (16..64 bytes, the
 * client's), and appends its DER to cert_der. Called on a request thread, possibly from several
 * at once; may block while evidence is made. Errors: VEIL_E_NOTFOUND (not a key of this
 * server), VEIL_E_UNAVAILABLE (busy: retry later), others (failed); eb says why and reaches
 * the client.
 */
typedef veil_err (*veil_serve_evidence_fn)(void *ud, struct veil_span nonce,
                                           const uint8_t key_sha256[32], struct veil_buf *cert_der,
                                           struct veil_errbuf *eb);

struct veil_serve_options {
    const char *host;   /* bind address; NULL: "0.0.0.0" */
    uint16_t grpc_port; /* 0: no gRPC (TF Serving's --port=0) */
    uint16_t rest_port; /* 0: no REST */
    bool grpc_any_port; /* bind gRPC to a free port (tests); grpc_port ignored */
    bool rest_any_port;

    /* The repository: either model_name + model_base_path, or model_config_file. */
    const char *model_name; /* NULL: "default" */
    const char *model_base_path;
    const char *model_config_file;               /* text ModelServerConfig */
    int64_t file_system_poll_wait_seconds;       /* 0: scan once; < 0: never after start */
    int64_t model_config_file_poll_wait_seconds; /* 0: read once */

    /* Batching (TF Serving's --enable_batching / --batching_parameters_file). */
    bool enable_batching;
    const char *batching_parameters_file; /* text BatchingParameters, or NULL for defaults */

    /* TLS for both ports. Either the three PEM sources or ssl_config_file (text SSLConfig). */
    const char *ssl_config_file;
    const char *tls_cert_path;
    const char *tls_key_path;
    const char *tls_client_ca_path;
    struct veil_span tls_cert_pem; /* in memory; wins over the path when len > 0 */
    struct veil_span tls_key_pem;
    struct veil_span tls_client_ca_pem;
    bool tls_client_verify;
    bool plaintext; /* explicit opt-in to serve without TLS (logged as a warning) */

    const char *monitoring_config_file;   /* text MonitoringConfig; metrics path from it */
    bool enable_grpc_healthcheck_service; /* grpc.health.v1.Health/Check on the gRPC port */
    uint32_t rest_api_timeout_ms;         /* 0: 30000 */
    bool rest_api_enable_cors_support;

    struct veil_key_source *keys; /* borrowed; NULL: sealed models cannot load */
    /*
     * Refuse plaintext model.onnx files: a version folder without model.onnx.veil ends with
     * FAILED_PRECONDITION in its status. Set whenever keys come from an attested broker, so a
     * host cannot plant a model of its own under the attested certificate.
     */
    bool sealed_only;
    /*
     * The attestation endpoint's hook (POST /veil/v1/attestation, gRPC
     * /veil.v1.Attestation/GetEvidence); NULL: the endpoint answers that this server has no
     * attestation. evidence_ud is passed to it.
     */
    veil_serve_evidence_fn evidence_fn;
    void *evidence_ud;
    /*
     * The lowest version of each named model that may load (from the key broker's policy,
     * delivered with the keys): a lower version ends with FAILED_PRECONDITION, so deleting
     * the newest version folder cannot roll the server back below it. Copied.
     */
    const struct veil_serve_min_version {
        const char *model;
        int64_t version;
    } * min_versions;
    size_t n_min_versions;
    /*
     * TF Serving's --allow_version_labels_for_unavailable_models. False (the default): every
     * version label of the model config must point at an AVAILABLE version, checked after the
     * first load (veil_serve_run then returns VEIL_E_STATE) and before each config reload (a
     * reload that fails it keeps the current config).
     */
    bool allow_version_labels_for_unavailable_models;
    /*
     * TF Serving's --enable_model_warmup (the CLI's default is on, as TF Serving's): before a
     * version becomes AVAILABLE, the Predict requests of its assets.extra/
     * tf_serving_warmup_requests (TFRecord of PredictionLog) run num_request_iterations_for_warmup
     * times each (0: once); a bad file or a refused request fails the version's load.
     */
    bool enable_model_warmup;
    unsigned num_request_iterations_for_warmup;
    unsigned engine_threads;  /* per run; 0: engine default */
    unsigned request_threads; /* 0: max(4, 2 x CPUs) */
    /* gRPC message and REST body cap, after gunzip too; 0: VEIL_NET_MAX_MESSAGE_DEFAULT. */
    size_t max_message_bytes;
    /*
     * Admission limits over both ports (veil/net.h, struct veil_net_limits); 0: the defaults,
     * sized from the open-file limit (which veil_serve_new raises to its hard limit) and from
     * physical memory. Over the connection caps the least recently active idle connection
     * is closed to make room; over the pre-authentication cap the oldest connection still in
     * its TLS handshake; request bytes past the in-flight budget are refused with
     * RESOURCE_EXHAUSTED (gRPC) or 429 (REST).
     */
    unsigned max_connections;           /* open connections */
    unsigned max_connections_per_peer;  /* of them from one IP address; 0: a quarter */
    unsigned max_pending_handshakes;    /* of them before their handshake ends; 0: a quarter */
    unsigned handshake_timeout_seconds; /* TLS handshake (plaintext: first byte) deadline */
    size_t max_inflight_bytes;          /* request bytes buffered server-wide */
    unsigned max_streams;               /* 0: default */
    unsigned drain_seconds;             /* graceful shutdown bound; 0: 10 */
};

struct veil_serve;

/*
 * Validates the options, reads the configuration files, makes TLS contexts, binds the ports
 * and starts the repository (models load in the background; see veil_serve_is_ready).
 * Errors: VEIL_E_INVALID (inconsistent options: no repository, batching file without
 * batching, no TLS and no plaintext opt-in, equal ports), VEIL_E_FORMAT (config file syntax,
 * with line), TLS and bind errors, VEIL_E_NOMEM. eb says which option or file is at fault.
 * Not thread-safe; the options and the strings they point to are copied. Tunes the process's
 * malloc to keep large freed blocks for reuse (mmap threshold 64 MiB, trim threshold
 * 256 MiB): requests allocate and free several buffers of their body's size.
 */
VEIL_NODISCARD veil_err veil_serve_new(const struct veil_serve_options *opt,
                                       struct veil_serve **out, struct veil_errbuf *eb);

/*
 * Serves until SIGTERM/SIGINT or veil_serve_stop, then drains requests in flight and returns.
 * Errors: VEIL_E_INTERNAL (event loop failure), VEIL_E_STATE (after the first load a version
 * label of the model config points at a version that is not AVAILABLE: the server stopped;
 * veil_serve_error has TF Serving's message).
 */
VEIL_NODISCARD veil_err veil_serve_run(struct veil_serve *s);

/*
 * The message of the VEIL_E_STATE that veil_serve_run returned ("" when none), owned by s and
 * valid until veil_serve_free. Call after veil_serve_run returned.
 */
const char *veil_serve_error(const struct veil_serve *s);

/* Starts a graceful shutdown. Thread-safe. */
void veil_serve_stop(struct veil_serve *s);

/*
 * True when every configured model has at least one AVAILABLE version and the TLS certificate
 * (if any) has not passed its notAfter (the readiness probe). Thread-safe.
 */
bool veil_serve_is_ready(struct veil_serve *s);

/*
 * Renews the TLS identity of both ports: cert_pem (leaf first, then its chain) and key_pem
 * (copied) are loaded into new TLS contexts with the client-verification settings the server
 * started with, and the loop thread swaps them in soon after this returns. Handshakes from
 * then on present the new certificate; established connections, and requests on them, keep
 * the identity they were made with and are not interrupted. Thread-safe; not after
 * veil_serve_free. Errors: VEIL_E_STATE (plaintext server), those of veil_tls_ctx_new
 * (VEIL_E_FORMAT, VEIL_E_MISMATCH, ...), VEIL_E_NOMEM; on error the current identity stays.
 */
VEIL_NODISCARD veil_err veil_serve_set_tls_identity(struct veil_serve *s, struct veil_span cert_pem,
                                                    struct veil_span key_pem,
                                                    struct veil_errbuf *eb);

/*
 * The notAfter (Unix seconds) of the certificate new handshakes present; 0 for a plaintext
 * server. A renewal shows here once the loop thread has swapped it in. Thread-safe.
 */
int64_t veil_serve_tls_not_after(struct veil_serve *s);

/*
 * Runs the engine instance behind the latest AVAILABLE version of model `name` once, directly:
 * no frontend, no batching, the caller's thread. For benchmarks that compare the server with
 * the very engine it serves (two loads of one file can differ in speed by their memory).
 * Arguments and outputs as veil_engine_run. Errors: VEIL_E_NOTFOUND (no such model or no
 * available version), those of veil_engine_run. Thread-safe; the version stays loaded for the
 * call.
 */
VEIL_NODISCARD veil_err veil_serve_run_engine(struct veil_serve *s, const char *name,
                                              const struct veil_tensor *inputs, size_t n_in,
                                              struct veil_tensor *outputs, size_t n_out,
                                              struct veil_errbuf *eb);

/* The ports actually bound (0 when that frontend is off). */
uint16_t veil_serve_grpc_port(const struct veil_serve *s);
uint16_t veil_serve_rest_port(const struct veil_serve *s);

/* Frees the server after veil_serve_run returned (or instead of it). NULL is a no-op. */
void veil_serve_free(struct veil_serve *s);

#endif /* VEIL_SERVE_H */
