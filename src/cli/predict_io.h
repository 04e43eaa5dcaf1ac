/*
 * predict_io.h: the model side of `veil predict` and `veil bench`: a model's signature from
 * the server's metadata (gRPC or REST), input tensors (from .npy files or random with a
 * seed), PredictRequest encodings for both APIs, and decoding of the outputs.
 */
#ifndef VEIL_CLI_PREDICT_IO_H
#define VEIL_CLI_PREDICT_IO_H

#include "attest_client.h"
#include "client.h"
#include "veil/engine.h"

#define VEIL_CLI_MAX_IO 16

struct veil_cli_tensor {
    char name[128];
    enum veil_dtype dtype;
    size_t rank;
    int64_t dims[VEIL_LIMIT_TENSOR_RANK]; /* -1: dynamic (signatures only) */
    uint8_t *data;                        /* veil_malloc'd; NULL in signatures */
    size_t nbytes;
};

struct veil_cli_model {
    const char *name;
    uint64_t version; /* 0: latest */
    const char *label;
    const char *signature; /* NULL: serving_default */
    size_t n_in, n_out;
    struct veil_cli_tensor in[VEIL_CLI_MAX_IO];
    struct veil_cli_tensor out[VEIL_CLI_MAX_IO];
};

/* Collects one answer (a veil_cli_done_fn target): status, message and a copy of the body. */
struct veil_cli_reply {
    int status;
    char message[512];
    struct veil_buf body; /* initialised by the caller */
};
void veil_cli_on_reply(void *ud, int status, const char *message, const uint8_t *body, size_t len);

/* Frees the tensors' data. */
void veil_cli_model_release(struct veil_cli_model *m);

/*
 * Asks the server for the model's signature (GetModelMetadata over c, gRPC when grpc) and
 * fills m->in / m->out names, dtypes and shapes. Errors: the server's, VEIL_E_FORMAT.
 */
VEIL_NODISCARD veil_err veil_cli_fetch_signature(struct veil_cli_conn *c, bool grpc,
                                                 struct veil_cli_model *m, struct veil_errbuf *eb);

/*
 * Gives every input data: from an .npy file named in files ("NAME=FILE", n_files entries),
 * or random with seed (dynamic dimensions: batch for the first, 1 for the others).
 * Errors: VEIL_E_INVALID (unknown input name, dtype or shape mismatch), file errors.
 */
VEIL_NODISCARD veil_err veil_cli_make_inputs(struct veil_cli_model *m, char *const *files,
                                             size_t n_files, int64_t batch, uint64_t seed,
                                             struct veil_errbuf *eb);

/* Serialises a PredictRequest for m's inputs (gRPC), or the REST JSON body. */
VEIL_NODISCARD veil_err veil_cli_encode_grpc(const struct veil_cli_model *m, struct veil_buf *out);
VEIL_NODISCARD veil_err veil_cli_encode_rest(const struct veil_cli_model *m, struct veil_buf *out);
/* The REST path for predict ("/v1/models/NAME[/versions/N|/labels/L]:predict"). */
void veil_cli_rest_path(const struct veil_cli_model *m, const char *verb, char *out, size_t cap);

/*
 * Decodes a PredictResponse (gRPC) or the REST predict answer into m->out (replacing any
 * previous outputs). Errors: VEIL_E_FORMAT naming the problem.
 */
VEIL_NODISCARD veil_err veil_cli_decode_grpc(struct veil_cli_model *m, struct veil_span msg,
                                             struct veil_errbuf *eb);
VEIL_NODISCARD veil_err veil_cli_decode_rest(struct veil_cli_model *m, struct veil_span body,
                                             struct veil_errbuf *eb);

/* Prints outputs (names, dtypes, shapes, a value summary, and top-k for classifier scores). */
void veil_cli_print_outputs(const struct veil_cli_model *m, unsigned top_k);

/* Options shared by `veil predict` and `veil bench`. */
struct veil_cli_client_args {
    struct veil_cli_target target;
    struct veil_cli_attest_opts attest; /* --attest POLICY and what verifies evidence */
    bool rest;
    bool plaintext;
    struct veil_cli_model model;
    char *inputs[VEIL_CLI_MAX_IO];
    size_t n_inputs;
    int64_t batch;
    uint64_t seed;
    unsigned top_k;
    /* bench */
    uint64_t concurrency, loop, connections;
    double duration_s, warmup_s;
    bool json;
};

/*
 * Parses the shared options (long options also accepted with one dash, as `-batch 8
 * -cnum 4 -loop 100`). bench enables the load options. Returns -1 after --help, 0 on success,
 * else an exit status after printing the problem.
 */
int veil_cli_client_parse(int argc, char **argv, bool bench, struct veil_cli_client_args *a);

#endif
