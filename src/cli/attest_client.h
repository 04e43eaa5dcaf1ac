/*
 * attest_client.h: `veil predict --attest` and `veil bench --attest` (attest_client.c): before
 * anything is sent on a connection, the server attests its TLS key for a nonce the client
 * draws, and the answer is checked against the client's own policy (docs/attest/server-check.md).
 */
#ifndef VEIL_CLI_ATTEST_CLIENT_H
#define VEIL_CLI_ATTEST_CLIENT_H

#include "client.h"

/* Where the client's verifier comes from: the policy file and what verifies evidence. */
struct veil_cli_attest_opts {
    const char *policy;     /* policy file (docs/attest/policy.md); NULL: no attestation */
    const char *roots;      /* roots directory (veil_attest_roots_load_dir), or NULL */
    const char *sim_key;    /* a trusted sim public key (PEM), or NULL */
    const char *collateral; /* DCAP / SNP collateral directory, or NULL */
};

struct veil_cli_attest;

/*
 * Loads the policy, the roots and the collateral. Errors: VEIL_E_INVALID (no roots and no sim
 * key: nothing could verify), those of loading the files, with the path in eb.
 */
VEIL_NODISCARD veil_err veil_cli_attest_new(const struct veil_cli_attest_opts *o,
                                            struct veil_cli_attest **out, struct veil_errbuf *eb);
void veil_cli_attest_free(struct veil_cli_attest *a);

/*
 * Checks the server at the other end of c (a TLS connection with nothing sent on it yet):
 * asks it for evidence for a fresh 32-byte nonce and the key of this TLS session (REST POST
 * /veil/v1/attestation, or gRPC /veil.v1.Attestation/GetEvidence when grpc), then verifies the
 * answer (veil_attest_ratls_check_server). A key already checked on an earlier connection is
 * not asked again: the handshake proved this peer holds that same attested key. The first
 * check of each key prints the matched workload to stderr. Errors: VEIL_E_REJECTED (the policy
 * refused the server), VEIL_E_AUTH (the evidence does not verify, or answers another nonce or
 * key), VEIL_E_UNSUPPORTED (the server has no attestation), VEIL_E_FORMAT, transport errors;
 * eb says which, and the caller must send nothing on c.
 */
VEIL_NODISCARD veil_err veil_cli_attest_conn(struct veil_cli_attest *a, struct veil_cli_conn *c,
                                             bool grpc, unsigned timeout_ms,
                                             struct veil_errbuf *eb);

/*
 * SHA-256 of key's DER SubjectPublicKeyInfo into out: the name RA-TLS claims and attestation
 * requests give a key. Errors: VEIL_E_CRYPTO.
 */
VEIL_NODISCARD veil_err veil_cli_spki_sha256(EVP_PKEY *key, uint8_t out[32]);

#endif
