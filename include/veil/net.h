/*
 * veil/net.h: the network layer. One libevent loop thread runs every connection: TLS 1.2/1.3
 * through libevent's OpenSSL bufferevents (with ALPN), HTTP/1.1 through evhttp, and gRPC on
 * HTTP/2 through nghttp2 (5-byte framed messages, grpc-status trailers, grpc-timeout
 * deadlines, identity and gzip message encodings, message size limits).
 *
 * Requests are handed to callbacks on the loop thread. A callback may answer at once or hand
 * the request to another thread; the reply functions (veil_http_req_reply,
 * veil_grpc_call_finish) may be called from any thread, exactly once per request, and are
 * safe after the client went away (the reply is then dropped).
 */
#ifndef VEIL_NET_H
#define VEIL_NET_H

#include "veil/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Limits (STYLE rule 23) ---- */

/*
 * Request caps, gunzip output included. TF Serving accepts gRPC messages up to INT32_MAX; the
 * default here is 64 MiB (16x gRPC's own 4 MiB default, a batch of 85 224x224x3 float images)
 * so that one request, inflated or not, cannot take a small machine's memory. The serve
 * flags (--max_message_bytes, or TF Serving's --grpc_channel_arguments with
 * grpc.max_receive_message_length) raise it up to VEIL_NET_MAX_MESSAGE_MAX.
 */
#define VEIL_NET_MAX_MESSAGE_DEFAULT ((size_t)64 << 20)   /* gRPC message */
#define VEIL_NET_MAX_MESSAGE_MAX ((size_t)INT32_MAX)      /* TF Serving's own cap */
#define VEIL_NET_MAX_HTTP_BODY_DEFAULT ((size_t)64 << 20) /* REST request body */
#define VEIL_NET_MAX_STREAMS_DEFAULT 128u                 /* concurrent HTTP/2 streams */
/*
 * Connection admission (all servers of a loop together, see struct veil_net_limits). The
 * connection cap defaults to the open-file limit less VEIL_NET_FD_RESERVE, at most
 * VEIL_NET_MAX_CONNS_DEFAULT; a peer (one IP address) may hold a quarter of it, and a quarter
 * of it may be in their TLS handshake at once. The in-flight byte budget defaults to physical
 * memory / VEIL_NET_INFLIGHT_RAM_SHARE within [VEIL_NET_INFLIGHT_MIN_DEFAULT,
 * VEIL_NET_INFLIGHT_MAX_DEFAULT], and never below two largest messages.
 */
#define VEIL_NET_MAX_CONNS_DEFAULT 4096u /* open connections, all ports */
#define VEIL_NET_FD_RESERVE 64u          /* descriptors kept for everything else */
#define VEIL_NET_PEER_SHARE 4u           /* a peer's cap: connections / this */
#define VEIL_NET_PREAUTH_SHARE 4u        /* handshakes in progress: connections / this */
#define VEIL_NET_INFLIGHT_RAM_SHARE 16u  /* in-flight budget: physical memory / this */
#define VEIL_NET_INFLIGHT_MIN_DEFAULT ((size_t)256 << 20)
#define VEIL_NET_INFLIGHT_MAX_DEFAULT ((size_t)4 << 30)
#define VEIL_NET_HANDSHAKE_TIMEOUT_S 10u /* TLS handshake, or a plaintext peer's first byte */
#define VEIL_NET_IDLE_TIMEOUT_S 600u     /* no byte received on a gRPC connection */
#define VEIL_NET_REST_TIMEOUT_S 60u      /* REST read or write making no progress */
#define VEIL_NET_ACCEPT_PAUSE_MS 100u    /* listener rest after an accept error */
#define VEIL_NET_LOG_INTERVAL_S 5u       /* one refusal or accept-error line per */
#define VEIL_NET_GRPC_PATH_MAX 256u      /* bytes of a gRPC :path */

/* ---- Grammar helpers (pure functions, fuzzed) ---- */

/*
 * Reads one gRPC length-prefixed message (1-byte compressed flag, 4-byte big-endian length,
 * payload) from the front of *s: on success *compressed and *msg (a view into s) are set and
 * s is advanced. Errors: VEIL_E_INCOMPLETE (fewer bytes than the prefix announces),
 * VEIL_E_FORMAT (flag other than 0 or 1), VEIL_E_LIMIT (length above max).
 */
VEIL_NODISCARD veil_err veil_grpc_frame_read(struct veil_span *s, size_t max, bool *compressed,
                                             struct veil_span *msg);

/*
 * Parses a grpc-timeout header value ("1-8 digits" + one of H M S m u n) into nanoseconds.
 * Errors: VEIL_E_FORMAT.
 */
VEIL_NODISCARD veil_err veil_grpc_timeout_parse(struct veil_span s, uint64_t *ns);

/*
 * Decompresses a gzip (or zlib) stream into out, which grows to at most max bytes.
 * Errors: VEIL_E_FORMAT (corrupt or truncated stream, trailing data), VEIL_E_LIMIT (output
 * larger than max), VEIL_E_NOMEM. out is reset first.
 */
VEIL_NODISCARD veil_err veil_net_gunzip(struct veil_span in, size_t max, struct veil_buf *out,
                                        struct veil_errbuf *eb);

/* Compresses in as gzip into out (reset first, capped at max). Errors: LIMIT, NOMEM, INTERNAL. */
VEIL_NODISCARD veil_err veil_net_gzip(struct veil_span in, size_t max, struct veil_buf *out);

/* ---- TLS ---- */

/* Where a PEM object comes from: bytes in memory (preferred when len > 0) or a file path. */
struct veil_pem_source {
    struct veil_span pem;
    const char *path;
};

struct veil_tls_config {
    struct veil_pem_source cert;      /* server certificate chain, required */
    struct veil_pem_source key;       /* its private key, required */
    struct veil_pem_source client_ca; /* CA for client certificates; required when verifying */
    bool client_verify;               /* mutual TLS: refuse clients without a valid cert */
};

/*
 * A server-side TLS context (TLS 1.2 and 1.3 only). Shareable; its identity changes only
 * through veil_tls_ctx_swap, on the thread that makes connections from it.
 */
struct veil_tls_ctx;

/*
 * Makes a TLS context. alpn is the one protocol selected in ALPN ("h2" or "http/1.1"); a client
 * that offers ALPN without it gets no ALPN answer (and fails later if it needs one). The private
 * key bytes are wiped from OpenSSL's temporary buffers after loading. Errors: VEIL_E_INVALID
 * (missing cert/key, verification without a CA), VEIL_E_FORMAT (bad PEM), VEIL_E_MISMATCH (key does
 * not match cert), VEIL_E_CRYPTO, I/O errors of the files, VEIL_E_NOMEM. eb names the failing part.
 */
VEIL_NODISCARD veil_err veil_tls_ctx_new(const struct veil_tls_config *cfg, const char *alpn,
                                         struct veil_tls_ctx **out, struct veil_errbuf *eb);

/* Frees a context (connections using it keep their own reference). NULL is a no-op. */
void veil_tls_ctx_free(struct veil_tls_ctx *ctx);

/*
 * Moves fresh's identity and settings (certificate chain, key, client verification) into ctx,
 * for renewing a certificate without a restart: handshakes that start afterwards on servers
 * using ctx present fresh's certificate, while connections made before keep the OpenSSL
 * context they were made from (each holds its own reference) and are not touched. fresh is
 * freed either way. Not thread-safe: call on the loop thread of the servers using ctx (from a
 * veil_net_loop_post task), or before they run. Errors: VEIL_E_INVALID (fresh was made for
 * another ALPN protocol; ctx is unchanged).
 */
VEIL_NODISCARD veil_err veil_tls_ctx_swap(struct veil_tls_ctx *ctx, struct veil_tls_ctx *fresh);

/*
 * The notAfter of ctx's leaf certificate in Unix seconds, or 0 when it cannot be read.
 * Thread-safe against other readers; not against veil_tls_ctx_swap.
 */
int64_t veil_tls_ctx_not_after(const struct veil_tls_ctx *ctx);

/* ---- The loop ---- */

struct veil_net_loop;

/*
 * Makes an event loop (one per process is the plan). Errors: VEIL_E_NOMEM, VEIL_E_INTERNAL.
 */
VEIL_NODISCARD veil_err veil_net_loop_new(struct veil_net_loop **out, struct veil_errbuf *eb);

/*
 * Runs the loop on the calling thread until veil_net_loop_stop. SIGTERM and SIGINT start a
 * graceful shutdown: listeners close, HTTP/2 peers get GOAWAY, requests in flight finish
 * (bounded by drain_s seconds), then the loop returns. Errors: VEIL_E_INTERNAL.
 */
VEIL_NODISCARD veil_err veil_net_loop_run(struct veil_net_loop *loop, unsigned drain_s);

/* Asks the loop to shut down gracefully, as SIGTERM does. Thread-safe, async-signal-unsafe. */
void veil_net_loop_stop(struct veil_net_loop *loop);

/* Frees the loop and every server on it. Call after veil_net_loop_run returned. NULL no-op. */
void veil_net_loop_free(struct veil_net_loop *loop);

/* A callback run on the loop thread. */
typedef void (*veil_net_task_fn)(void *arg);

/*
 * Runs fn(arg) on the loop thread soon. Thread-safe. Errors: VEIL_E_NOMEM (fn not queued).
 */
VEIL_NODISCARD veil_err veil_net_loop_post(struct veil_net_loop *loop, veil_net_task_fn fn,
                                           void *arg);

/* ---- Admission limits (shared by every server on a loop) ---- */

struct veil_net_limits {
    unsigned max_conns;           /* open connections over all servers of the loop */
    unsigned max_conns_per_peer;  /* of them, from one IP address */
    unsigned max_preauth;         /* of them, before authentication (TLS handshake) */
    unsigned handshake_timeout_s; /* deadline for a TLS handshake or a first byte */
    size_t max_inflight_bytes;    /* request bytes buffered at once, server-wide */
};

/*
 * Fills lim with the defaults for this machine (see the limits above): the connection caps
 * from the current RLIMIT_NOFILE soft limit, the byte budget from physical memory and
 * max_message (the largest request the servers accept; 0: VEIL_NET_MAX_MESSAGE_DEFAULT).
 * Never fails. Thread-safe.
 */
void veil_net_limits_default(size_t max_message, struct veil_net_limits *lim);

/*
 * Raises the RLIMIT_NOFILE soft limit to the hard limit (a server holds one descriptor per
 * connection; the common soft default of 1024 is far below what the hard limit allows).
 * Writes the resulting soft limit to *soft (may be NULL). Errors: VEIL_E_IO (getrlimit or
 * setrlimit failed; the limit is unchanged). Process-wide; call before threads start.
 */
VEIL_NODISCARD veil_err veil_net_raise_nofile(uint64_t *soft);

/*
 * Sets the loop's admission limits; zero fields take the defaults of
 * veil_net_limits_default(max_message), except that the per-peer and pre-authentication caps
 * default to a quarter of the connection cap in effect. A connection over the peer or global
 * cap closes the least recently active idle connection (of that peer, or anyone's) to make
 * room, and is refused when every candidate is busy; a connection over the
 * pre-authentication cap closes the oldest connection still in its handshake. Writes the
 * limits in effect to *used (may be NULL). Loop thread or before run only. Never fails.
 */
void veil_net_loop_set_limits(struct veil_net_loop *loop, const struct veil_net_limits *lim,
                              size_t max_message, struct veil_net_limits *used);

/* ---- Common server options ---- */

struct veil_net_listen {
    const char *host;               /* bind address, e.g. "0.0.0.0" or "127.0.0.1" */
    uint16_t port;                  /* 0: any free port (see veil_*_server_port) */
    const struct veil_tls_ctx *tls; /* NULL: plaintext */
    size_t max_body;                /* request body / gRPC message cap; 0: the default above */
    unsigned max_conns;             /* this server's own cap; 0: only the loop's limits */
    unsigned max_streams;           /* HTTP/2 concurrent streams; 0: default */
    unsigned idle_timeout_s;        /* 0: default */
};

/* ---- HTTP/1.1 ---- */

struct veil_http_server;
struct veil_http_req;

/* Called on the loop thread for every complete request; must end in veil_http_req_reply. */
typedef void (*veil_http_handler_fn)(void *ud, struct veil_http_req *req);

/*
 * Listens for HTTP/1.1 (over TLS when lst->tls is set). Errors: VEIL_E_IO (bind, naming the
 * address), VEIL_E_NOMEM, VEIL_E_INTERNAL. Loop thread or before run only.
 */
VEIL_NODISCARD veil_err veil_http_server_new(struct veil_net_loop *loop,
                                             const struct veil_net_listen *lst,
                                             veil_http_handler_fn fn, void *ud,
                                             struct veil_http_server **out, struct veil_errbuf *eb);

/* The port actually bound. */
uint16_t veil_http_server_port(const struct veil_http_server *s);

/*
 * Request accessors; valid until the reply. Loop thread or the thread the request was handed
 * to (no concurrent use). The path excludes the query string; the method is upper case.
 */
const char *veil_http_req_method(const struct veil_http_req *req);
struct veil_span veil_http_req_path(const struct veil_http_req *req);
/* A header's value (case-insensitive name), or NULL. */
const char *veil_http_req_header(const struct veil_http_req *req, const char *name);
/* The body as one contiguous span (gzip already removed when Content-Encoding said so). */
struct veil_span veil_http_req_body(const struct veil_http_req *req);
/*
 * Non-OK when the body could not be accepted (corrupt gzip: VEIL_E_FORMAT with a message in
 * the text returned by veil_http_req_body_error, VEIL_E_LIMIT over the cap).
 */
veil_err veil_http_req_body_status(const struct veil_http_req *req);
const char *veil_http_req_body_error(const struct veil_http_req *req);
/* Monotonic time (ns) when the request was complete. */
uint64_t veil_http_req_start_ns(const struct veil_http_req *req);

/*
 * Sends the reply (status line, Content-Type, extra headers "Name: value\r\n..." or NULL, a
 * Content-Length body) in one write, and frees the request. Thread-safe; call exactly once.
 * The body is copied. Errors are not reported: a reply that cannot be sent is dropped.
 */
void veil_http_req_reply(struct veil_http_req *req, int status, const char *content_type,
                         const char *extra_headers, struct veil_span body);

/* ---- gRPC over HTTP/2 ---- */

struct veil_grpc_server;
struct veil_grpc_call;

/*
 * Called on the loop thread for every complete unary call (one request message); must end in
 * veil_grpc_call_finish.
 */
typedef void (*veil_grpc_handler_fn)(void *ud, struct veil_grpc_call *call);

/*
 * Listens for gRPC over HTTP/2 (over TLS with ALPN "h2" when lst->tls is set, else h2c with
 * prior knowledge). Errors: as veil_http_server_new.
 */
VEIL_NODISCARD veil_err veil_grpc_server_new(struct veil_net_loop *loop,
                                             const struct veil_net_listen *lst,
                                             veil_grpc_handler_fn fn, void *ud,
                                             struct veil_grpc_server **out, struct veil_errbuf *eb);

uint16_t veil_grpc_server_port(const struct veil_grpc_server *s);

/* The method path ("/tensorflow.serving.PredictionService/Predict"). */
const char *veil_grpc_call_method(const struct veil_grpc_call *call);
/* The request message, decompressed. Valid until finish. */
struct veil_span veil_grpc_call_message(const struct veil_grpc_call *call);
/* The absolute deadline (veil_time_mono_ns clock) from grpc-timeout, or 0 for none. */
uint64_t veil_grpc_call_deadline_ns(const struct veil_grpc_call *call);
/* Monotonic time (ns) when the request was complete. */
uint64_t veil_grpc_call_start_ns(const struct veil_grpc_call *call);

/*
 * Ends the call: status 0 sends response (copied) as the one message then trailers with
 * grpc-status 0; other status codes (the canonical gRPC codes) send trailers only, with msg
 * (NULL: none) percent-encoded in grpc-message. Thread-safe; call exactly once. A call whose
 * client went away is just freed.
 */
void veil_grpc_call_finish(struct veil_grpc_call *call, int status, const char *msg,
                           struct veil_span response);

/* gRPC status codes (the canonical codes). */
enum veil_grpc_status {
    VEIL_GRPC_OK = 0,
    VEIL_GRPC_CANCELLED = 1,
    VEIL_GRPC_UNKNOWN = 2,
    VEIL_GRPC_INVALID_ARGUMENT = 3,
    VEIL_GRPC_DEADLINE_EXCEEDED = 4,
    VEIL_GRPC_NOT_FOUND = 5,
    VEIL_GRPC_ALREADY_EXISTS = 6,
    VEIL_GRPC_PERMISSION_DENIED = 7,
    VEIL_GRPC_RESOURCE_EXHAUSTED = 8,
    VEIL_GRPC_FAILED_PRECONDITION = 9,
    VEIL_GRPC_ABORTED = 10,
    VEIL_GRPC_OUT_OF_RANGE = 11,
    VEIL_GRPC_UNIMPLEMENTED = 12,
    VEIL_GRPC_INTERNAL = 13,
    VEIL_GRPC_UNAVAILABLE = 14,
    VEIL_GRPC_DATA_LOSS = 15,
    VEIL_GRPC_UNAUTHENTICATED = 16,
};

/* The canonical name ("NOT_FOUND"); "UNKNOWN" for values outside the range. */
const char *veil_grpc_status_name(int status);

#endif /* VEIL_NET_H */
