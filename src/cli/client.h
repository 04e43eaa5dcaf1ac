/*
 * client.h: the client side of `veil predict` and `veil bench`: non-blocking connections to a
 * model server over TCP, optionally TLS (one-way or mutual), speaking gRPC over HTTP/2
 * (nghttp2) or REST over HTTP/1.1, all driven by one poll loop so that one thread can keep
 * many requests in flight.
 */
#ifndef VEIL_CLI_CLIENT_H
#define VEIL_CLI_CLIENT_H

#include "veil/base.h"

#include <openssl/ssl.h>

struct veil_cli_target {
    char host[256];
    char port[8];
    bool tls;
    const char *ca;   /* CA to verify the server (NULL with tls: the system's) */
    const char *cert; /* client certificate for mutual TLS, or NULL */
    const char *key;
    unsigned timeout_ms;
};

/* Parses "HOST:PORT" into t (keeping the other fields). Errors: VEIL_E_INVALID. */
VEIL_NODISCARD veil_err veil_cli_target_parse(struct veil_cli_target *t, const char *hostport);

/* A TLS client context for t with ALPN alpn ("h2" or "http/1.1"), or NULL without TLS. */
VEIL_NODISCARD veil_err veil_cli_tls_ctx(const struct veil_cli_target *t, const char *alpn,
                                         SSL_CTX **out, struct veil_errbuf *eb);

/*
 * Called once per request: status is the gRPC status (REST: the HTTP status), message the
 * grpc-message or NULL, body the response message (gRPC: without the 5-byte frame header) or
 * body (REST), valid during the call only.
 */
typedef void (*veil_cli_done_fn)(void *ud, int status, const char *message, const uint8_t *body,
                                 size_t len);

struct veil_cli_conn;

/*
 * Connects (blocking, with t->timeout_ms) and completes the TLS handshake; http2 selects gRPC
 * over HTTP/2, else HTTP/1.1. ctx may be NULL for plaintext. Errors name the host and cause:
 * VEIL_E_UNAVAILABLE (connect), VEIL_E_AUTH (certificate refused), VEIL_E_CRYPTO.
 */
VEIL_NODISCARD veil_err veil_cli_conn_open(const struct veil_cli_target *t, SSL_CTX *ctx,
                                           bool http2, struct veil_cli_conn **out,
                                           struct veil_errbuf *eb);
void veil_cli_conn_free(struct veil_cli_conn *c);

/*
 * The public key the server proved it holds in c's TLS handshake (borrowed from c, valid
 * while c lives), or NULL for a plaintext connection.
 */
EVP_PKEY *veil_cli_conn_peer_key(const struct veil_cli_conn *c);

/*
 * Queues a gRPC unary call (http2 connections): path like
 * "/tensorflow.serving.PredictionService/Predict", msg the serialised request (borrowed until
 * done is called). Errors: VEIL_E_STATE (connection failed), VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_cli_grpc_call(struct veil_cli_conn *c, const char *path,
                                           struct veil_span msg, veil_cli_done_fn done, void *ud);

/*
 * Queues a REST request (HTTP/1.1 connections, one at a time per connection). body may be
 * empty (GET). body is borrowed until done is called. Errors: VEIL_E_STATE (busy or failed).
 */
VEIL_NODISCARD veil_err veil_cli_rest_call(struct veil_cli_conn *c, const char *method,
                                           const char *path, struct veil_span body,
                                           veil_cli_done_fn done, void *ud);

/* Requests queued or in flight on c. */
size_t veil_cli_conn_pending(const struct veil_cli_conn *c);
/* True once c has failed; its pending requests were completed with status -1. */
bool veil_cli_conn_failed(const struct veil_cli_conn *c);

/*
 * Runs I/O on the n connections for at most timeout_ms (returns earlier once something
 * completed). Completion callbacks run from here.
 */
void veil_cli_pump(struct veil_cli_conn **cs, size_t n, int timeout_ms);

/* Runs one blocking call to completion (convenience for single requests). */
VEIL_NODISCARD veil_err veil_cli_wait_idle(struct veil_cli_conn *c, unsigned timeout_ms,
                                           struct veil_errbuf *eb);

#endif
