/*
 * attest_int.h: internals shared by the files of the attest module: a DER reader, OpenSSL
 * helpers for chains and raw signatures, and the per-format verifiers that veil_attest_verify
 * dispatches to. JSON (policy, collateral) comes from the json module.
 */
#ifndef VEIL_ATTEST_INT_H
#define VEIL_ATTEST_INT_H

#include "veil/attest.h"
#include "veil/json.h"

#include <openssl/x509.h>

/* ---- DER (der.c) ---- */

/*
 * Reads one DER TLV with a single-byte tag and a definite length from s. Views only.
 * Errors: VEIL_E_FORMAT (high tag numbers, indefinite or non-minimal lengths, overrun).
 */
VEIL_NODISCARD veil_err veil__attest_der_get(struct veil_span *s, uint8_t *tag,
                                             struct veil_span *content);

/* Decodes a DER INTEGER's content as a non-negative value of at most 64 bits. */
VEIL_NODISCARD veil_err veil__attest_der_uint(struct veil_span content, uint64_t *v);

/* Encodes a dotted OID ("1.2.840.113741.1.13.1.2") into DER content bytes for comparison. */
VEIL_NODISCARD veil_err veil__attest_oid_encode(const char *dotted, uint8_t *out, size_t cap,
                                                size_t *len);

/* ---- PKI helpers (pki.c) ---- */

/* Pinned root kinds. */
enum veil_root_kind {
    VEIL_ROOT_INTEL_SGX = 0,
    VEIL_ROOT_AMD_ARK_MILAN,
    VEIL_ROOT_AMD_ARK_GENOA,
    VEIL_ROOT_AMD_ARK_TURIN,
    VEIL_ROOT_COUNT,
};

#define VEIL_ATTEST_MAX_SIM_KEYS 16

struct veil_attest_roots {
    X509 *root[VEIL_ROOT_COUNT];
    EVP_PKEY *sim_keys[VEIL_ATTEST_MAX_SIM_KEYS];
    size_t sim_key_count;
};

/* Parses all certificates of a PEM bundle (or one DER certificate) into a new stack. */
VEIL_NODISCARD veil_err veil__attest_certs_parse(struct veil_span bytes, STACK_OF(X509) * *out,
                                                 struct veil_errbuf *eb);

/* Parses one CRL, DER or PEM. */
VEIL_NODISCARD veil_err veil__attest_crl_parse(struct veil_span bytes, X509_CRL **out);

/* Converts an ASN1_TIME into seconds since the epoch. */
VEIL_NODISCARD veil_err veil__attest_asn1_time(const ASN1_TIME *t, int64_t *out);

/* Chain verification request: leaf + untrusted intermediates to the pinned root at now. */
struct veil_chain_req {
    X509 *leaf;
    STACK_OF(X509) * untrusted; /* may be NULL */
    X509 *root;                 /* the pinned root */
    X509_CRL *crls[2];          /* may be NULL; with any CRL, every link is CRL-checked */
    int64_t now;
    bool ignore_crl_expiry;
};

/*
 * Verifies a chain at req->now and that it ends at req->root byte for byte. Returns VEIL_OK
 * or VEIL_E_AUTH with *reason (CHAIN_INVALID, CERT_EXPIRED, REVOKED, CRL_INVALID, CRL_EXPIRED,
 * ROOT_UNTRUSTED) and detail in eb; VEIL_E_NOMEM/VEIL_E_CRYPTO on internal failure.
 */
VEIL_NODISCARD veil_err veil__attest_chain_verify(const struct veil_chain_req *req,
                                                  enum veil_attest_reason *reason,
                                                  struct veil_errbuf *eb);

/*
 * Verifies a raw big-endian r||s ECDSA signature (2*n bytes) over msg with key, digest md
 * (EVP_sha256 or EVP_sha384). VEIL_OK when valid, VEIL_E_AUTH when not, VEIL_E_CRYPTO/NOMEM.
 */
VEIL_NODISCARD veil_err veil__attest_ecdsa_verify_raw(EVP_PKEY *key, const EVP_MD *md,
                                                      struct veil_span msg, struct veil_span rs);

/* Builds a P-256 public key from the raw 64-byte x||y point. Errors: VEIL_E_FORMAT. */
VEIL_NODISCARD veil_err veil__attest_p256_from_raw(struct veil_span xy, EVP_PKEY **out);

/* SHA-256 / SHA-384 of bytes. Errors: VEIL_E_CRYPTO. */
VEIL_NODISCARD veil_err veil__attest_sha256(struct veil_span in, uint8_t out[32]);
VEIL_NODISCARD veil_err veil__attest_sha384(struct veil_span in, uint8_t out[48]);

/* Sets the claims' reason and formats the detail; returns VEIL_E_AUTH. */
veil_err veil__attest_reject(struct veil_attest_claims *c, enum veil_attest_reason r,
                             const char *fmt, ...) VEIL_PRINTF(3, 4);

/* Drains the OpenSSL error queue into a short string for logs and details. */
void veil__attest_ossl_err(char *out, size_t cap);

/* ---- Per-format verifiers ---- */

/* The fields of the Intel PCK certificate's SGX extension (OID 1.2.840.113741.1.13.1). */
struct veil_pck_ext {
    uint8_t fmspc[6];
    uint8_t pceid[2];
    uint8_t comp[16];
    uint64_t pcesvn;
    uint8_t cpusvn[16];
    unsigned seen; /* bit per top-level field, duplicates refused */
};

/*
 * Parses the SGX extension's DER value (a SEQUENCE of {OID, value}) by OID; TCB (all 16
 * components, PCESVN, CPUSVN), PCE-ID and FMSPC are required. Pure. Errors: VEIL_E_FORMAT.
 */
VEIL_NODISCARD veil_err veil__attest_pck_ext_parse(struct veil_span der, struct veil_pck_ext *e);

/* DCAP quotes v3/v4/v5 (dcap.c). Contract as veil_attest_verify. */
VEIL_NODISCARD veil_err veil__attest_verify_dcap(struct veil_span quote,
                                                 const struct veil_attest_collateral *col,
                                                 const struct veil_attest_roots *roots,
                                                 const struct veil_attest_verify_opts *opts,
                                                 struct veil_attest_claims *out);

/* Quote kind and embedded FMSPC, unverified (dcap.c); contract as veil_attest_peek. */
VEIL_NODISCARD veil_err veil__attest_dcap_peek(struct veil_span quote, enum veil_tee *tee,
                                               uint8_t fmspc[6], bool *has_fmspc);

/* SEV-SNP report (snp.c). */
VEIL_NODISCARD veil_err veil__attest_verify_snp(struct veil_span report,
                                                const struct veil_attest_collateral *col,
                                                const struct veil_attest_roots *roots,
                                                const struct veil_attest_verify_opts *opts,
                                                struct veil_attest_claims *out);

/* sim evidence (sim.c). */
VEIL_NODISCARD veil_err veil__attest_verify_sim(struct veil_span ev,
                                                const struct veil_attest_roots *roots,
                                                struct veil_attest_claims *out);

/* Magic that starts sim evidence. */
#define VEIL_ATTEST_SIM_MAGIC "VEILSIM1"
#define VEIL_ATTEST_SIM_LEN 208

/*
 * Builds signed sim evidence into out (VEIL_ATTEST_SIM_LEN bytes). key is an Ed25519 private
 * key. Errors: VEIL_E_CRYPTO, VEIL_E_LIMIT, VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil__attest_sim_sign(EVP_PKEY *key, const uint8_t measurement[32],
                                              uint32_t svn, const uint8_t report_data[64],
                                              struct veil_buf *out);

/* ---- RA-TLS CBOR (ratls.c) ---- */

/*
 * Encodes the claims map {"pubkey-hash": bstr(CBOR [1, bstr sha256(spki)]), "nonce": bstr}
 * into out; the "nonce" entry only when nonce is not empty.
 * Errors: VEIL_E_LIMIT (nonce over VEIL_ATTEST_RATLS_NONCE_MAX, or out's cap), VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil__attest_ratls_claims_encode(const uint8_t spki_hash[32],
                                                         struct veil_span nonce,
                                                         struct veil_buf *out);

/*
 * Parses claims bytes and returns the hash algorithm ID (1, 7 or 8), the hash view and the
 * nonce view (empty when the claims hold none). Views point into claims. Pure.
 * Errors: VEIL_E_FORMAT (including a duplicate, empty or over-long nonce), VEIL_E_UNSUPPORTED
 * (other algorithms).
 */
VEIL_NODISCARD veil_err veil__attest_ratls_claims_parse(struct veil_span claims, uint64_t *alg,
                                                        struct veil_span *hash,
                                                        struct veil_span *nonce);

#endif /* VEIL_ATTEST_INT_H */
