/*
 * veil/kbs.h: the key broker service and its client (docs/kbs/protocol.md).
 *
 * The broker holds model keys encrypted at rest under a master key, authenticates workloads by
 * their RA-TLS client certificates (evidence verified by the attest module, then matched
 * against the policy), releases only the keys the matching workload may receive, and signs a
 * short-lived serving certificate for the workload's attested key under the broker's serving
 * CA, which clients pin. Administrators authenticate with client certificates from the
 * broker's admin CA. Every decision is appended to an audit log.
 */
#ifndef VEIL_KBS_H
#define VEIL_KBS_H

#include "veil/attest.h"
#include "veil/base.h"
#include "veil/crypto.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#define VEIL_KBS_DEFAULT_PORT 8443
#define VEIL_LIMIT_KBS_BODY (1u << 20)  /* request and response bodies */
#define VEIL_LIMIT_KBS_HEAD (16u << 10) /* request and response heads */
#define VEIL_LIMIT_KBS_KEYS 4096        /* keys in a store */

/* ---- Broker state ---- */

/*
 * Creates a broker state directory (mode 0700): master key, three CAs each signing one kind
 * of certificate (broker CA: the broker's own TLS certificate, broker-ca.pem, which the
 * broker's clients pin; serving CA: workloads' serving certificates, serving-ca.pem, which
 * prediction clients pin; admin CA: administrators), the broker's TLS certificate for the
 * given host names / IP addresses (NULL-terminated; NULL: localhost and 127.0.0.1), an empty
 * key store, a policy that admits nothing, and one administrator certificate (admin.pem,
 * admin.key). Refuses a directory that already holds a master key.
 * Errors: VEIL_E_EXISTS, VEIL_E_INVALID (a host that is not an exact DNS name or IP address),
 * I/O errors naming the path, VEIL_E_CRYPTO, VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_kbs_init(const char *state_dir, const char *const *hosts,
                                      struct veil_errbuf *eb);

/*
 * Brings a broker state directory made before the broker had a CA of its own (its TLS
 * certificate signed by the serving CA) to the current layout: a new broker CA (broker-ca.pem,
 * its key sealed as broker-ca.key) and broker.pem re-issued under it for the same key and
 * names. Clients of the broker (administrators, `veil serve --kbs`) must then pin
 * broker-ca.pem. Safe to run again after a crash. Errors: VEIL_E_EXISTS (already migrated), I/O
 * errors naming the path, VEIL_E_AUTH (wrong master key), VEIL_E_CRYPTO, VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_kbs_migrate(const char *state_dir, struct veil_errbuf *eb);

/*
 * Makes a CA and certificates for TLS and mutual TLS in dir (created if missing): ca.pem and
 * ca.key, server.pem and server.key (serverAuth, SANs from hosts, NULL-terminated; NULL:
 * localhost and 127.0.0.1), client.pem and client.key (clientAuth), valid for days days. Keys
 * are written with mode 0600. Existing files are never overwritten.
 * Errors: VEIL_E_EXISTS, I/O errors naming the path, VEIL_E_CRYPTO, VEIL_E_INVALID (a name).
 */
VEIL_NODISCARD veil_err veil_kbs_make_certs(const char *dir, const char *const *hosts, int days,
                                            struct veil_errbuf *eb);

struct veil_kbs_server_opts {
    const char *state_dir;
    const char *listen;         /* "HOST:PORT"; NULL: 127.0.0.1:8443 */
    const char *roots_dir;      /* pinned TEE roots (attest); NULL: none but sim keys */
    const char *collateral_dir; /* DCAP collateral for hardware evidence; NULL: none */
    const char *sim_key_pem;    /* a trusted sim public key file (attest); NULL: none */
    unsigned threads;           /* worker threads; 0: 8 x cores */
    int64_t cert_validity_s;    /* serving certificates; 0: 24 hours */
    /*
     * Deadlines (milliseconds) that drop slow peers: the TLS handshake must finish within
     * handshake_timeout_ms of accept (0: 5 s), and each whole request, head and body, must
     * arrive within request_timeout_ms of accept or of the previous response (0: 10 s).
     */
    uint32_t handshake_timeout_ms;
    uint32_t request_timeout_ms;
    /*
     * Challenges (POST /kbs/v1/challenge): each nonce is single use and expires nonce_ttl_ms
     * after issue (0: 60000); at most nonce_max are outstanding (0: 4096), beyond which new
     * challenges get 503 until nonces are used or expire.
     */
    uint32_t nonce_ttl_ms;
    uint32_t nonce_max;
};

struct veil_kbs_server;

/*
 * Opens the broker: loads the state (decrypting the key store with the master key), the
 * policy and the roots, and binds the listening socket. Errors name what failed: VEIL_E_IO,
 * VEIL_E_FORMAT (state or policy), VEIL_E_AUTH (key store fails to decrypt), VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_kbs_server_open(const struct veil_kbs_server_opts *opts,
                                             struct veil_kbs_server **out, struct veil_errbuf *eb);

/* The bound port (useful with port 0). */
uint16_t veil_kbs_server_port(const struct veil_kbs_server *s);

/*
 * Serves until veil_kbs_server_stop is called (from any thread or a signal handler), then
 * waits for requests in progress. Returns VEIL_OK after a stop.
 */
VEIL_NODISCARD veil_err veil_kbs_server_run(struct veil_kbs_server *s, struct veil_errbuf *eb);

/* Asks a running server to stop. Async-signal-safe. */
void veil_kbs_server_stop(struct veil_kbs_server *s);

/* Re-reads the policy file; a broken policy is refused (logged) and the old one kept. */
VEIL_NODISCARD veil_err veil_kbs_server_reload_policy(struct veil_kbs_server *s,
                                                      struct veil_errbuf *eb);

/* Frees a stopped server, wiping keys. NULL is a no-op. */
void veil_kbs_server_free(struct veil_kbs_server *s);

/* ---- Client: workload provisioning ---- */

struct veil_kbs_client_opts {
    const char *brokers;    /* "HOST:PORT[,HOST:PORT...]" */
    const char *ca_file;    /* the broker CA (PEM, broker-ca.pem), pinned */
    const char *const *san; /* names for the serving certificate, NULL-terminated; may be NULL */
    int64_t deadline_s;     /* give up after this long; 0: 60 s */
    unsigned timeout_ms;    /* per connection attempt; 0: 5000 */
};

/* What a broker released to this workload. Free with veil_kbs_grant_free (wipes keys). */
struct veil_kbs_grant {
    char workload[128];
    size_t n_keys;
    struct veil_model_key **keys;
    char *cert_pem; /* serving certificate for `pkey`, issued by the broker's serving CA */
    char *ca_pem;   /* the serving CA */
    EVP_PKEY *pkey; /* the workload's private key (created with the RA-TLS certificate) */
    /* The serving certificate's validity (Unix seconds) and serial number (hex). */
    int64_t not_before;
    int64_t not_after;
    char serial[72];
    /* The policy's lowest version of each model this workload may serve. */
    size_t n_min_versions;
    struct veil_kbs_min_version {
        char model[256];
        int64_t version;
    } * min_versions;
};

/*
 * Attests to a broker and receives keys and a serving certificate. For each broker tried (in
 * turn, with exponential backoff, until one answers or the deadline passes) it fetches a
 * challenge nonce over TLS (the broker authenticated as below), makes a fresh key pair and an
 * RA-TLS certificate from provider p whose evidence binds that nonce and the key, and
 * provisions with it. A full challenge table (503) is retried like an unreachable broker.
 * key_ids (n may be 0: every key the policy grants) names the keys wanted. A refusal by
 * policy or freshness is final (VEIL_E_REJECTED with the broker's reason); unreachable brokers
 * are retried. Errors: VEIL_E_REJECTED, VEIL_E_UNAVAILABLE
 * (deadline passed), VEIL_E_AUTH (broker certificate not from the pinned CA, or without the
 * broker usage: a serving certificate never passes), VEIL_E_FORMAT.
 */
VEIL_NODISCARD veil_err veil_kbs_provision(const struct veil_kbs_client_opts *opts,
                                           struct veil_attest_provider *p,
                                           const char *const *key_ids, size_t n,
                                           struct veil_kbs_grant **out, struct veil_errbuf *eb);

void veil_kbs_grant_free(struct veil_kbs_grant *g);

/* ---- Client: renewing the serving certificate ---- */

/* When to renew a serving certificate, and how long to wait between failed attempts. */
struct veil_kbs_renewal {
    int64_t start_ms;        /* the later of notBefore and the certificate's receipt */
    int64_t expiry_ms;       /* notAfter */
    int64_t renew_at_ms;     /* two thirds of the way from start_ms to expiry_ms */
    uint32_t backoff_cap_ms; /* longest wait between failed renewals: lifetime / 10, 1..60 s */
};

/*
 * Plans the renewal of a certificate valid from not_before_s to not_after_s (Unix seconds)
 * that arrived at received_ms (Unix milliseconds, the workload's clock). The usable lifetime
 * runs from the later of notBefore and the receipt (the broker backdates notBefore for clock
 * skew) to notAfter; renewal is due at two thirds of it. A certificate already expired on
 * arrival is due at once. Pure; saturates dates that do not fit in milliseconds.
 */
void veil_kbs_renewal_plan(int64_t not_before_s, int64_t not_after_s, int64_t received_ms,
                           struct veil_kbs_renewal *out);

/*
 * The wait before the next attempt after a failed renewal: 250 ms after the first failure
 * (prev_ms 0), then doubling, never above plan->backoff_cap_ms. Pure.
 */
uint32_t veil_kbs_renewal_backoff(const struct veil_kbs_renewal *plan, uint32_t prev_ms);

/* ---- Client: administration ---- */

struct veil_kbs_admin_opts {
    const char *broker;    /* "HOST:PORT" */
    const char *ca_file;   /* the broker CA (broker-ca.pem), pinned */
    const char *cert_file; /* admin client certificate */
    const char *key_file;  /* its private key */
    unsigned timeout_ms;   /* 0: 10000 */
};

/*
 * Sends one admin request (method, path, optional JSON body) and returns the HTTP status and
 * body (appended to *resp). Errors: VEIL_E_IO / VEIL_E_TIMEOUT (connection), VEIL_E_AUTH (TLS),
 * VEIL_E_FORMAT (malformed response). An HTTP error status is not an error of this function.
 */
VEIL_NODISCARD veil_err veil_kbs_admin_request(const struct veil_kbs_admin_opts *opts,
                                               const char *method, const char *path,
                                               struct veil_span body, int *status,
                                               struct veil_buf *resp, struct veil_errbuf *eb);

/* ---- HTTP/1.1 message heads (exposed for the fuzz target) ---- */

struct veil_kbs_http_head {
    struct veil_span method; /* requests */
    struct veil_span path;   /* requests */
    int status;              /* responses */
    uint64_t content_length;
    bool has_content_length;
    bool close;      /* Connection: close */
    size_t head_len; /* bytes up to and including the blank line */
};

/*
 * Parses an HTTP/1.1 request (is_request) or response head at the start of bytes: start line,
 * header lines, blank line. Views point into bytes. Pure.
 * Errors: VEIL_E_INCOMPLETE (no blank line yet), VEIL_E_FORMAT (malformed, chunked transfer
 * encoding, duplicate or bad Content-Length), VEIL_E_LIMIT (head over VEIL_LIMIT_KBS_HEAD or
 * body over VEIL_LIMIT_KBS_BODY).
 */
VEIL_NODISCARD veil_err veil_kbs_http_parse(struct veil_span bytes, bool is_request,
                                            struct veil_kbs_http_head *out);

#endif /* VEIL_KBS_H */
