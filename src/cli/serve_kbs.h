/*
 * serve_kbs.h: provisioning `veil serve` from the key broker (serve_kbs.c).
 */
#ifndef VEIL_CLI_SERVE_KBS_H
#define VEIL_CLI_SERVE_KBS_H

#include "veil/kbs.h"
#include "veil/serve.h"

#include <openssl/pem.h>

struct veil_cli_kbs_opts {
    const char *brokers;    /* "HOST:PORT[,HOST:PORT...]" */
    const char *ca;         /* the broker CA (broker-ca.pem), pinned */
    const char *tee;        /* "sim", "gramine" or "tsm" */
    const char *sim_key;    /* sim private key file (tee sim) */
    const char *tee_root;   /* gramine / tsm interface root; NULL: the system's */
    const char *const *san; /* names for the serving certificate; NULL: localhost, 127.0.0.1 */
    uint32_t svn;           /* sim SVN */
    int64_t deadline_s;     /* give up provisioning after this long; 0: 300 s */
};

struct veil_cli_kbs_state;

/*
 * Attests to the brokers (retrying with backoff until the deadline) and, on success, sets the
 * server's TLS certificate and key (in memory, from *state) and its attestation hook for
 * clients (o->evidence_fn, backed by *state), and makes a key source backed by the grant in
 * *keys. The caller frees *keys with veil_key_source_free and *state with
 * veil_cli_kbs_state_free after the server is freed. Errors: VEIL_E_INVALID (options),
 * VEIL_E_REJECTED (refused by policy), VEIL_E_UNAVAILABLE (no broker answered), those of the
 * evidence provider.
 */
VEIL_NODISCARD veil_err veil_cli_serve_provision(const struct veil_cli_kbs_opts *k,
                                                 struct veil_serve_options *o,
                                                 struct veil_key_source **keys,
                                                 struct veil_cli_kbs_state **state,
                                                 struct veil_errbuf *eb);

/*
 * Starts renewing the serving certificate on a thread of its own: at two thirds of the
 * certificate's lifetime (veil_kbs_renewal_plan) it provisions again from the brokers (a new
 * nonce, key pair and evidence), keeps newly granted keys in the key source, and hands the new
 * certificate to srv (veil_serve_set_tls_identity), which presents it to new connections on
 * both ports. A failed renewal is logged and retried with backoff (veil_kbs_renewal_backoff)
 * while the old certificate serves; past its notAfter the server reports not ready until a
 * renewal succeeds. srv and the key source made by veil_cli_serve_provision must outlive the
 * thread: call veil_cli_serve_renewal_stop before freeing either. Errors: VEIL_E_STATE
 * (already running, or st has no key source), VEIL_E_INTERNAL (no thread).
 */
VEIL_NODISCARD veil_err veil_cli_serve_renewal_start(struct veil_cli_kbs_state *st,
                                                     struct veil_serve *srv,
                                                     struct veil_errbuf *eb);

/*
 * Stops the renewal thread and waits for it (at most one provisioning round, a few seconds
 * when a broker does not answer). A state whose thread is not running, and NULL, are no-ops.
 */
void veil_cli_serve_renewal_stop(struct veil_cli_kbs_state *st);

/* Frees the state (stopping its renewal thread first). NULL is a no-op. */
void veil_cli_kbs_state_free(struct veil_cli_kbs_state *st);

#endif
