/*
 * kbs_int.h: internals shared by the files of the kbs module: HTTP framing over OpenSSL,
 * certificate authority helpers, sealed blobs under the master key, the key store, the
 * audit log, the table of outstanding challenge nonces and the challenge answer's parser.
 */
#ifndef VEIL_KBS_INT_H
#define VEIL_KBS_INT_H

#include "veil/kbs.h"
#include "veil/json.h"

#include <openssl/ssl.h>
#include <pthread.h>

/* ---- HTTP (http.c) ---- */

/*
 * Reads up to n bytes into p. Returns how many (at least 1), or 0 at the end of the stream, on
 * a timeout or on an error.
 */
typedef size_t (*veil__kbs_read_fn)(void *ctx, uint8_t *p, size_t n);

/*
 * Reads one whole message (head and Content-Length body) into buf, whose earlier contents are
 * dropped, by calling rd(ctx, ...) until it is complete. On success head's method and path and
 * *body view buf as it is after the last growth (valid until buf changes); bytes read past the
 * message are discarded (the broker answers a request before reading the next). On failure
 * *head is zeroed and *body is empty. Errors: VEIL_E_CANCELLED (end of stream before any
 * byte), VEIL_E_INCOMPLETE (end of stream or timeout mid-message), those of
 * veil_kbs_http_parse, VEIL_E_LIMIT (buf's maximum), VEIL_E_NOMEM. Pure apart from rd.
 */
VEIL_NODISCARD veil_err veil__kbs_read_message_from(veil__kbs_read_fn rd, void *ctx,
                                                    bool is_request, struct veil_buf *buf,
                                                    struct veil_kbs_http_head *head,
                                                    struct veil_span *body);
/*
 * Whether bytes start with one whole request (is_request) or response: on VEIL_OK, *head and
 * *body view bytes. Pure. Errors: VEIL_E_INCOMPLETE (head or body not all there yet), those of
 * veil_kbs_http_parse.
 */
VEIL_NODISCARD veil_err veil__kbs_http_complete(struct veil_span bytes, bool is_request,
                                                struct veil_kbs_http_head *head,
                                                struct veil_span *body);
/* veil__kbs_read_message_from over an OpenSSL connection (SSL_read). */
VEIL_NODISCARD veil_err veil__kbs_read_message(SSL *ssl, bool is_request, struct veil_buf *buf,
                                               struct veil_kbs_http_head *head,
                                               struct veil_span *body);
/* Writes all n bytes. Errors: VEIL_E_IO. */
VEIL_NODISCARD veil_err veil__kbs_write_all(SSL *ssl, const void *p, size_t n);

/* ---- PKI (pki.c) ---- */

/* Makes a P-256 key pair. */
VEIL_NODISCARD veil_err veil__kbs_new_key(EVP_PKEY **out);
/* Makes a self-signed CA certificate for key, valid for ten years. */
VEIL_NODISCARD veil_err veil__kbs_make_ca(EVP_PKEY *key, const char *cn, X509 **out);

/*
 * Leaf certificate kinds. SERVER and CLIENT are plain TLS identities (`veil certs`, the admin
 * client). BROKER is the key broker's own TLS identity, issued only by the broker CA; SERVING
 * is a workload's serving certificate, issued only by the serving CA. Each of the last two
 * carries its own extended key usage (an OID under the UUID arc 2.25, X.667) beside
 * serverAuth, and the broker's clients refuse a broker certificate without the broker usage,
 * so a serving certificate can never stand in for the broker even under a misconfigured CA.
 */
enum veil__kbs_cert_kind {
    VEIL_KBS_CERT_SERVER,
    VEIL_KBS_CERT_CLIENT,
    VEIL_KBS_CERT_BROKER,
    VEIL_KBS_CERT_SERVING
};

#define VEIL__KBS_OID_BROKER "2.25.118680522568038220124356479914066063362"
#define VEIL__KBS_OID_SERVING "2.25.208693128968357849454603975516163413909"

/* Whether cert's extended key usage lists oid (dotted text). */
bool veil__kbs_cert_has_eku(X509 *cert, const char *oid);

/* State files (state.c): DIR/master.key; DIR/NAME as a PEM certificate; a sealed private key. */
VEIL_NODISCARD veil_err veil__kbs_load_master(const char *dir, uint8_t master[32],
                                              struct veil_errbuf *eb);
VEIL_NODISCARD veil_err veil__kbs_read_cert(const char *dir, const char *name, X509 **out,
                                            struct veil_errbuf *eb);
VEIL_NODISCARD veil_err veil__kbs_read_sealed_key(const char *dir, const char *name,
                                                  const uint8_t master[32], EVP_PKEY **out,
                                                  struct veil_errbuf *eb);

#define VEIL__KBS_NAME_MAX 253
/*
 * The DNS names and IP addresses (as text) of cert's subject alternative names, at most cap.
 * Errors: VEIL_E_LIMIT (more than cap), VEIL_E_FORMAT (an unreadable name).
 */
VEIL_NODISCARD veil_err veil__kbs_cert_names(X509 *cert, char names[][VEIL__KBS_NAME_MAX + 1],
                                             size_t cap, size_t *n);

/*
 * Issues a leaf certificate for subject_key's public key under (ca, ca_key): common name cn,
 * subject alternative names san (NULL-terminated; entries that parse as IP addresses become
 * IP SANs, the rest DNS names; may be NULL; each must pass veil_attest_host_name_ok, else
 * VEIL_E_INVALID), valid from 5 minutes ago for validity_s seconds, with the extended key
 * usage of kind.
 */
VEIL_NODISCARD veil_err veil__kbs_issue(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *subject_key,
                                        const char *cn, const char *const *san, int64_t validity_s,
                                        enum veil__kbs_cert_kind kind, X509 **out);

/* PEM encodings appended to b (keys: PKCS#8, unencrypted; b should be a secret buffer). */
VEIL_NODISCARD veil_err veil__kbs_cert_pem(X509 *cert, struct veil_buf *b);
VEIL_NODISCARD veil_err veil__kbs_key_pem(EVP_PKEY *key, struct veil_buf *b);
/* Parses PEM from memory. Errors: VEIL_E_FORMAT. */
VEIL_NODISCARD veil_err veil__kbs_parse_cert(struct veil_span pem, X509 **out);
VEIL_NODISCARD veil_err veil__kbs_parse_key(struct veil_span pem, EVP_PKEY **out);

/*
 * A certificate's notBefore and notAfter in Unix seconds, and its serial number as upper-case
 * hex (NUL-terminated, at most serial_cap - 1 digits). Errors: VEIL_E_FORMAT (a date or the
 * serial does not convert), VEIL_E_LIMIT (serial longer than serial_cap allows).
 */
VEIL_NODISCARD veil_err veil__kbs_cert_dates(const X509 *cert, int64_t *not_before,
                                             int64_t *not_after, char *serial, size_t serial_cap);

/* ---- Sealed blobs under the master key (pki.c) ---- */

/* "VKB1" || nonce (12) || AES-256-GCM(plaintext, aad = label) || tag (16). */
VEIL_NODISCARD veil_err veil__kbs_blob_seal(const uint8_t master[32], const char *label,
                                            struct veil_span plain, struct veil_buf *out);
/* Errors: VEIL_E_FORMAT (not a blob), VEIL_E_AUTH (wrong master key, label or tampered). */
VEIL_NODISCARD veil_err veil__kbs_blob_open(const uint8_t master[32], const char *label,
                                            struct veil_span blob, struct veil_buf *out_secret);
/* Reads path and opens it as a blob into a secret buffer. */
VEIL_NODISCARD veil_err veil__kbs_blob_load(const uint8_t master[32], const char *label,
                                            const char *path, struct veil_buf *out_secret,
                                            struct veil_errbuf *eb);
/* Seals plain and writes it to path atomically and durably (mode 0600). */
VEIL_NODISCARD veil_err veil__kbs_blob_store(const uint8_t master[32], const char *label,
                                             const char *path, struct veil_span plain,
                                             struct veil_errbuf *eb);

/* ---- Key store (store.c) ---- */

struct veil__kbs_key {
    char id[VEIL_LIMIT_SEAL_KEY_ID + 1];
    char name[VEIL_LIMIT_SEAL_KEY_ID + 1];
    uint32_t version;
    bool retired;
    int64_t created;
    uint8_t key[VEIL_MODEL_KEY_LEN];
};

/* The keys of a broker; every change is written durably before it takes effect. */
struct veil__kbs_store {
    char *path;
    uint8_t master[32];
    size_t n;
    struct veil__kbs_key *keys; /* secure memory, VEIL_LIMIT_KBS_KEYS entries */
};

/* Loads (or, with create, makes an empty) store at path. Errors name the file. */
VEIL_NODISCARD veil_err veil__kbs_store_open(const char *path, const uint8_t master[32],
                                             bool create, struct veil__kbs_store **out,
                                             struct veil_errbuf *eb);
void veil__kbs_store_free(struct veil__kbs_store *st);
/* The key with this ID, or NULL. */
const struct veil__kbs_key *veil__kbs_store_find(const struct veil__kbs_store *st, const char *id);
/*
 * Adds a key under name: with id NULL, the ID is "NAME@VERSION"; with raw NULL, the key is
 * generated. The new state is committed to disk before this returns VEIL_OK; on failure the
 * store is unchanged. Errors: VEIL_E_EXISTS (ID taken), VEIL_E_INVALID (bad name or ID),
 * VEIL_E_LIMIT, I/O errors.
 */
VEIL_NODISCARD veil_err veil__kbs_store_add(struct veil__kbs_store *st, const char *name,
                                            const char *id, const uint8_t *raw,
                                            const struct veil__kbs_key **out,
                                            struct veil_errbuf *eb);
/* Marks a key retired (never released again), durably. Errors: VEIL_E_NOTFOUND, I/O. */
VEIL_NODISCARD veil_err veil__kbs_store_retire(struct veil__kbs_store *st, const char *id,
                                               struct veil_errbuf *eb);

/* ---- Audit log (audit.c) ---- */

struct veil__kbs_audit {
    int fd;
    pthread_mutex_t lock;
};

VEIL_NODISCARD veil_err veil__kbs_audit_open(struct veil__kbs_audit *a, const char *path,
                                             struct veil_errbuf *eb);
void veil__kbs_audit_close(struct veil__kbs_audit *a);
/*
 * Appends one JSON line (a complete object without the newline) and makes it durable before
 * returning. Errors: VEIL_E_IO.
 */
VEIL_NODISCARD veil_err veil__kbs_audit_write(struct veil__kbs_audit *a, struct veil_span line);

/* ---- Challenge nonces (nonce.c) ---- */

#define VEIL__KBS_NONCE_LEN 32
#define VEIL__KBS_NONCE_MAX_DEFAULT 4096 /* outstanding nonces a broker holds */
#define VEIL__KBS_NONCE_TTL_DEFAULT_MS 60000

struct veil__kbs_nonce {
    uint8_t v[VEIL__KBS_NONCE_LEN];
    uint64_t expires_ns; /* veil_time_mono_ns() */
};

/*
 * The broker's outstanding nonces: issued by /kbs/v1/challenge, each consumed by the first
 * provisioning request that names it, whatever its outcome. At most cap are held; expired ones
 * are dropped when room is needed. Thread-safe (one mutex).
 */
struct veil__kbs_nonces {
    pthread_mutex_t lock;
    struct veil__kbs_nonce *slots;
    size_t cap, n;
    uint64_t ttl_ns;
};

enum veil__kbs_nonce_status {
    VEIL__KBS_NONCE_FRESH,   /* was outstanding and unexpired; now consumed */
    VEIL__KBS_NONCE_EXPIRED, /* was outstanding but past its deadline; now dropped */
    VEIL__KBS_NONCE_UNKNOWN, /* never issued, already consumed, or expired and dropped */
};

/* Sets up an empty table of at most cap nonces living ttl_ms each. Errors: VEIL_E_NOMEM. */
VEIL_NODISCARD veil_err veil__kbs_nonces_init(struct veil__kbs_nonces *t, size_t cap,
                                              uint64_t ttl_ms);
/* Wipes and frees the table; a zeroed table is a no-op. */
void veil__kbs_nonces_release(struct veil__kbs_nonces *t);
/*
 * Draws a fresh random nonce into out and holds it until now_ns + ttl. Errors: VEIL_E_LIMIT
 * (cap nonces outstanding and none expired: the caller answers 503), VEIL_E_CRYPTO (RNG).
 */
VEIL_NODISCARD veil_err veil__kbs_nonce_issue(struct veil__kbs_nonces *t, uint64_t now_ns,
                                              uint8_t out[VEIL__KBS_NONCE_LEN]);
/*
 * Looks nonce up and removes it (atomically: of two concurrent callers with the same nonce,
 * at most one sees FRESH). A nonce of another length is UNKNOWN.
 */
enum veil__kbs_nonce_status veil__kbs_nonce_consume(struct veil__kbs_nonces *t, uint64_t now_ns,
                                                    struct veil_span nonce);

/*
 * Parses a challenge answer's body, {"nonce": "<64 hex digits>", ...}, into nonce. Pure: the
 * client's parser of the broker's bytes (fuzz/kbs_challenge_fuzz.c).
 * Errors: VEIL_E_FORMAT (not JSON, no "nonce" string, not 32 bytes of hex), VEIL_E_LIMIT.
 */
VEIL_NODISCARD veil_err veil__kbs_challenge_parse(struct veil_span body,
                                                  uint8_t nonce[VEIL__KBS_NONCE_LEN]);

#endif
