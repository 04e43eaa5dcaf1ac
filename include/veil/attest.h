/*
 * veil/attest.h: attestation evidence, its verification, RA-TLS certificates and the policy.
 *
 * Verifiers (broker side) are pure functions of (evidence bytes, collateral, pinned roots, now):
 * SGX DCAP ECDSA quote v3, TDX quote v4/v5, SEV-SNP attestation report, and `sim`, software
 * evidence for machines without a TEE that is accepted only where a policy names it.
 * Providers (workload side) obtain evidence whose REPORT_DATA is chosen by the caller: `sim`,
 * `gramine` (/dev/attestation) and `tsm` (Linux configfs-tsm). RA-TLS carries evidence in the
 * TCG DICE tagged-evidence extension (OID 2.23.133.5.4.9) of a self-signed certificate whose
 * key the evidence binds. The policy (docs/attest/policy.md) says which workloads may receive
 * which keys. Formats and the threat model are in docs/attest/.
 */
#ifndef VEIL_ATTEST_H
#define VEIL_ATTEST_H

#include "veil/base.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

/* ---- Limits ---- */

#define VEIL_ATTEST_MAX_EVIDENCE (64u << 10)  /* largest quote/report/sim evidence */
#define VEIL_ATTEST_MAX_COLLATERAL (1u << 20) /* largest single collateral file */
#define VEIL_ATTEST_MAX_ADVISORIES 64
#define VEIL_ATTEST_ADVISORY_LEN 32 /* "INTEL-SA-00615" and NUL fit easily */
#define VEIL_ATTEST_REPORT_DATA_LEN 64

/* ---- TEE kinds ---- */

enum veil_tee {
    VEIL_TEE_NONE = 0,
    VEIL_TEE_SGX,
    VEIL_TEE_TDX,
    VEIL_TEE_SNP,
    VEIL_TEE_SIM,
};

/* "sgx", "tdx", "snp", "sim" or "none". Never NULL. */
const char *veil_attest_tee_name(enum veil_tee tee);

/* ---- Verification outcome ---- */

/* X(NAME, "snake_name", "description"): why evidence was rejected (OK when it was not). */
#define VEIL_ATTEST_REASON_MAP(X)                                                                  \
    X(OK, "ok", "evidence verified")                                                               \
    X(MALFORMED, "malformed", "malformed evidence")                                                \
    X(UNSUPPORTED, "unsupported", "unsupported evidence format or version")                        \
    X(COLLATERAL_MISSING, "collateral_missing", "required collateral missing")                     \
    X(COLLATERAL_MALFORMED, "collateral_malformed", "malformed collateral")                        \
    X(ROOT_UNTRUSTED, "root_untrusted", "chain does not end at a pinned root")                     \
    X(CHAIN_INVALID, "chain_invalid", "certificate chain invalid")                                 \
    X(CERT_EXPIRED, "cert_expired", "certificate outside its validity period")                     \
    X(REVOKED, "revoked", "certificate revoked")                                                   \
    X(CRL_INVALID, "crl_invalid", "CRL signature or issuer invalid")                               \
    X(CRL_EXPIRED, "crl_expired", "CRL expired")                                                   \
    X(COLLATERAL_SIGNATURE, "collateral_signature", "collateral signature invalid")                \
    X(COLLATERAL_EXPIRED, "collateral_expired", "collateral expired")                              \
    X(TCB_INFO_MISMATCH, "tcb_info_mismatch", "TCB info does not match the PCK certificate")       \
    X(QE_REPORT_SIGNATURE, "qe_report_signature", "QE report signature invalid")                   \
    X(QE_REPORT_DATA, "qe_report_data", "QE report data does not bind the attestation key")        \
    X(QE_IDENTITY_MISMATCH, "qe_identity_mismatch", "QE identity mismatch")                        \
    X(QUOTE_SIGNATURE, "quote_signature", "quote signature invalid")                               \
    X(TDX_MODULE_MISMATCH, "tdx_module_mismatch", "TDX module identity mismatch")                  \
    X(TCB_NOT_SUPPORTED, "tcb_not_supported", "no matching TCB level (TCB not supported)")         \
    X(TCB_REVOKED, "tcb_revoked", "TCB level revoked")                                             \
    X(CERT_MISMATCH, "cert_mismatch", "endorsement certificate does not match the report")         \
    X(REPORT_SIGNATURE, "report_signature", "report signature invalid")                            \
    X(SIM_KEY_UNTRUSTED, "sim_key_untrusted", "simulation key not trusted")                        \
    X(BINDING, "binding", "report data does not bind the certificate key")

#define VEIL__ATTEST_REASON_ENUM(name, snake, text) VEIL_ATTEST_##name,
enum veil_attest_reason { VEIL_ATTEST_REASON_MAP(VEIL__ATTEST_REASON_ENUM) };
#undef VEIL__ATTEST_REASON_ENUM

/* Snake-case name ("quote_signature") and description of a reason. Never NULL. */
const char *veil_attest_reason_name(enum veil_attest_reason r);
const char *veil_attest_reason_str(enum veil_attest_reason r);

/*
 * What verified evidence says. Identity fields (measurements, attributes, report data) are
 * filled only after every signature and chain check passed; on rejection only tee, version,
 * reason and detail are meaningful. Which group of fields applies follows from tee.
 */
struct veil_attest_claims {
    enum veil_tee tee;
    enum veil_attest_reason reason;
    char detail[VEIL_LIMIT_ERRMSG]; /* human-readable detail of reason */
    bool verified;                  /* true only when reason == VEIL_ATTEST_OK */
    uint32_t version;               /* quote version, report version or sim version */
    bool debug;                     /* the TEE lets the host read the workload's memory */
    uint8_t report_data[VEIL_ATTEST_REPORT_DATA_LEN];

    /* Intel DCAP (SGX and TDX). */
    char tcb_status[40]; /* "UpToDate", "SWHardeningNeeded", ... */
    size_t advisory_count;
    char advisory_ids[VEIL_ATTEST_MAX_ADVISORIES][VEIL_ATTEST_ADVISORY_LEN];
    uint8_t fmspc[6];
    uint32_t tcb_eval_num;      /* tcbEvaluationDataNumber of the TCB info */
    int64_t collateral_issued;  /* latest issueDate/thisUpdate of the collateral */
    int64_t collateral_expires; /* earliest nextUpdate of the collateral */

    /* SGX enclave report. */
    uint8_t mrenclave[32];
    uint8_t mrsigner[32];
    uint16_t isv_prod_id;
    uint16_t isv_svn;
    uint8_t attributes[16];
    uint32_t miscselect;
    uint8_t cpusvn[16];

    /* TDX TD report (1.0 and 1.5). */
    uint8_t tee_tcb_svn[16];
    uint8_t tee_tcb_svn2[16]; /* TD report 1.5 only */
    uint8_t mrseam[48];
    uint8_t mrsignerseam[48];
    uint64_t seam_attributes;
    uint64_t td_attributes;
    uint64_t xfam;
    uint8_t mrtd[48];
    uint8_t mrconfigid[48];
    uint8_t mrowner[48];
    uint8_t mrownerconfig[48];
    uint8_t rtmr[4][48];
    uint8_t mrservicetd[48]; /* TD report 1.5 only */

    /* SEV-SNP report. */
    uint8_t measurement[48];
    uint64_t snp_policy;
    uint32_t vmpl;
    uint32_t guest_svn;
    uint8_t host_data[32];
    uint8_t id_key_digest[48];
    uint8_t author_key_digest[48];
    uint8_t family_id[16];
    uint8_t image_id[16];
    uint8_t chip_id[64];
    uint64_t reported_tcb;
    uint64_t current_tcb;
    uint64_t platform_info;
    uint8_t fw_major, fw_minor, fw_build;
    char product[16]; /* "Milan", "Genoa", "Turin" */
    bool vlek;        /* signed by a VLEK rather than a VCEK */

    /* sim. */
    uint8_t sim_measurement[32];
    uint32_t sim_svn;
};

/* ---- Pinned roots ---- */

/*
 * The trust anchors a verifier accepts: the Intel SGX Root CA, the AMD ARKs for Milan, Genoa
 * and Turin, and local simulation public keys. Intel and AMD roots are accepted only when their
 * certificate's SHA-256 fingerprint is one pinned in the code, so a roots directory cannot
 * widen trust. Immutable once loaded; may be shared by threads for verification.
 */
struct veil_attest_roots;

/* Makes an empty set. Errors: VEIL_E_NOMEM. *out is NULL on failure. */
VEIL_NODISCARD veil_err veil_attest_roots_new(struct veil_attest_roots **out);

/*
 * Adds one root certificate (DER or PEM). Errors: VEIL_E_FORMAT (not a certificate),
 * VEIL_E_AUTH (fingerprint not pinned), VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_attest_roots_add_cert(struct veil_attest_roots *roots,
                                                   struct veil_span cert, struct veil_errbuf *eb);

/*
 * Trusts a simulation public key (PEM SubjectPublicKeyInfo, Ed25519). Sim evidence is
 * accepted only when signed by a key added here. Errors: VEIL_E_FORMAT, VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_attest_roots_add_sim_key(struct veil_attest_roots *roots,
                                                      struct veil_span pem, struct veil_errbuf *eb);

/*
 * Loads a roots directory: intel_sgx_root_ca.der or .pem, amd_ark_{milan,genoa,turin}.pem
 * and every sim_*.pub.pem. Other files are ignored. Errors: as the adders, VEIL_E_IO,
 * VEIL_E_NOTFOUND (directory missing, or no root at all in it).
 */
VEIL_NODISCARD veil_err veil_attest_roots_load_dir(struct veil_attest_roots *roots, const char *dir,
                                                   struct veil_errbuf *eb);

/* Frees a set. NULL is a no-op. */
void veil_attest_roots_free(struct veil_attest_roots *roots);

/* ---- Collateral ---- */

/*
 * Views of the collateral a verifier needs; absent items have len 0. DCAP: the PCS bodies
 * and chains named as in docs/attest/collateral.md. SNP: the VCEK or VLEK certificate (DER or
 * PEM), the ASK or ASVK (PEM; a cert_chain.pem of intermediate then ARK is accepted too) and
 * optionally the ARK, which must then equal the pinned one.
 */
struct veil_attest_collateral {
    struct veil_span tcb_info;
    struct veil_span tcb_info_issuer_chain;
    struct veil_span qe_identity;
    struct veil_span qe_identity_issuer_chain;
    struct veil_span pck_crl;
    struct veil_span pck_crl_issuer_chain;
    struct veil_span root_ca_crl;
    struct veil_span vek;
    struct veil_span ask;
    struct veil_span ark;
};

/* A collateral directory read into memory; col's spans point into bufs. */
struct veil_attest_collateral_files {
    struct veil_attest_collateral col;
    struct veil_buf bufs[10];
};

/*
 * Reads the files of a collateral directory that exist (names in docs/attest/collateral.md).
 * Missing files are left empty; the verifier says what it lacks. Call
 * veil_attest_collateral_files_release afterwards, also on error.
 * Errors: VEIL_E_NOTFOUND (directory), VEIL_E_LIMIT (file too big), VEIL_E_IO, VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_attest_collateral_load_dir(struct veil_attest_collateral_files *f,
                                                        const char *dir, struct veil_errbuf *eb);
void veil_attest_collateral_files_release(struct veil_attest_collateral_files *f);

/* ---- Verification ---- */

struct veil_attest_verify_opts {
    int64_t now;               /* seconds since the epoch; the only clock a verifier uses */
    bool ignore_crl_freshness; /* accept CRLs past nextUpdate (still signature-checked) */
};

/*
 * Verifies evidence of any supported kind (detected from its bytes) and fills *out. Pure: no
 * I/O, no clock. Pointers are borrowed for the call. Thread-safe.
 * Returns VEIL_OK when the evidence verified (out->verified, reason OK); VEIL_E_AUTH when it
 * was rejected, with out->reason and out->detail saying why; VEIL_E_NOMEM or VEIL_E_CRYPTO
 * (with detail in out->detail) when the verifier itself failed.
 */
VEIL_NODISCARD veil_err veil_attest_verify(struct veil_span evidence,
                                           const struct veil_attest_collateral *col,
                                           const struct veil_attest_roots *roots,
                                           const struct veil_attest_verify_opts *opts,
                                           struct veil_attest_claims *out);

/*
 * Reads, WITHOUT verifying anything, what a broker needs to pick collateral: the TEE kind of
 * the evidence and, for DCAP quotes, the FMSPC from the PCK certificate embedded in the quote
 * (*has_fmspc says whether one was found). Never base a decision on these values; verify.
 * Pure. Errors: VEIL_E_FORMAT (not recognisable evidence), VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_attest_peek(struct veil_span evidence, enum veil_tee *tee,
                                         uint8_t fmspc[6], bool *has_fmspc);

/* Views of the certificates in an SEV-SNP extended-report certificate table. */
struct veil_attest_snp_certs {
    struct veil_span vcek;
    struct veil_span vlek;
    struct veil_span ask; /* ASK, or ASVK for VLEK hosts */
    struct veil_span ark;
};

/*
 * Parses the certificate table a `tsm` provider returns as auxblob for SEV-SNP (GHCB extended
 * guest request: entries of GUID[16] in RFC 4122 byte order, offset u32le, length u32le, ended
 * by an all-zero entry; offsets from the table's start). Entries with unknown GUIDs are
 * skipped; absent certificates have len 0. Views into aux. Nothing is trusted: pass them as
 * collateral (vek, ask) and let veil_attest_verify check them. Pure.
 * Errors: VEIL_E_FORMAT (no terminator, entry outside the table, duplicate GUID).
 */
VEIL_NODISCARD veil_err veil_attest_snp_certs_parse(struct veil_span aux,
                                                    struct veil_attest_snp_certs *out);

/* ---- sim evidence (docs/attest/sim.md): INSECURE, for machines without a TEE ---- */

/*
 * SHA-256 of the file at path (the running binary: "/proc/self/exe"), the sim measurement.
 * Errors: those of reading the file, VEIL_E_CRYPTO.
 */
VEIL_NODISCARD veil_err veil_attest_sim_measure_file(const char *path, uint8_t out[32],
                                                     struct veil_errbuf *eb);

/* ---- Providers (workload side) ---- */

/* Where evidence comes from. Opaque; not thread-safe (one user at a time). */
struct veil_attest_provider;

/*
 * A sim provider signing with the Ed25519 private key in key_pem (PKCS#8 PEM; copied) and
 * claiming the given measurement and SVN. Errors: VEIL_E_FORMAT (key), VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_attest_provider_new_sim(struct veil_span key_pem,
                                                     const uint8_t measurement[32], uint32_t svn,
                                                     struct veil_attest_provider **out,
                                                     struct veil_errbuf *eb);

/*
 * Makes a fresh sim key pair: private key as PKCS#8 PEM into priv, public key PEM into pub
 * (both buffers initialised by the caller; priv should be a secret buffer).
 * Errors: VEIL_E_CRYPTO, VEIL_E_LIMIT, VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_attest_sim_keygen(struct veil_buf *priv, struct veil_buf *pub,
                                               struct veil_errbuf *eb);

/*
 * A Gramine provider: checks <root>/dev/attestation/attestation_type is "dcap" (when the file
 * exists), writes REPORT_DATA to <root>/dev/attestation/user_report_data and reads
 * <root>/dev/attestation/quote. root is "" or "/" inside an enclave (copied).
 * Errors: VEIL_E_NOMEM, VEIL_E_INVALID (root too long).
 */
VEIL_NODISCARD veil_err veil_attest_provider_new_gramine(const char *root,
                                                         struct veil_attest_provider **out,
                                                         struct veil_errbuf *eb);

/*
 * A configfs-tsm provider (TDX and SEV-SNP guests): makes a report entry under
 * <root> (normally "/sys/kernel/config/tsm/report"), writes inblob, reads outblob (and
 * auxblob when present), checks generation and removes the entry. When the directory made is
 * already populated (a prepared test tree), it is used as is and left in place.
 * Errors: VEIL_E_NOMEM, VEIL_E_INVALID (root too long).
 */
VEIL_NODISCARD veil_err veil_attest_provider_new_tsm(const char *root,
                                                     struct veil_attest_provider **out,
                                                     struct veil_errbuf *eb);

/* The provider's kind name: "sim", "gramine" or "tsm". */
const char *veil_attest_provider_kind(const struct veil_attest_provider *p);

/*
 * Obtains evidence whose REPORT_DATA is exactly report_data, appended to out (initialised by
 * the caller with a cap of at least VEIL_ATTEST_MAX_EVIDENCE). For tsm, when the provider
 * returned an auxblob, it is appended to aux (may be NULL to drop it).
 * Errors: VEIL_E_NOTFOUND / VEIL_E_IO / VEIL_E_PERM (interface), VEIL_E_STATE (tsm generation
 * moved: another writer interfered), VEIL_E_UNSUPPORTED (Gramine not configured for DCAP),
 * VEIL_E_LIMIT, VEIL_E_CRYPTO, VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_attest_provider_get_evidence(
    struct veil_attest_provider *p, const uint8_t report_data[VEIL_ATTEST_REPORT_DATA_LEN],
    struct veil_buf *out, struct veil_buf *aux, struct veil_errbuf *eb);

/* Frees a provider (wiping key material). NULL is a no-op. */
void veil_attest_provider_free(struct veil_attest_provider *p);

/* ---- RA-TLS (docs/attest/ratls.md) ---- */

/* The longest nonce an RA-TLS certificate's claims may carry (bytes). */
#define VEIL_ATTEST_RATLS_NONCE_MAX 64

/*
 * Makes a fresh P-256 key pair in memory and a self-signed certificate for it, valid from now
 * minus an hour for validity_s seconds, carrying evidence from p in the TCG DICE tagged-evidence
 * extension. The evidence's REPORT_DATA is SHA-256 of the CBOR claims that hold SHA-256 of the
 * certificate's SubjectPublicKeyInfo and, when nonce is not empty, the nonce (a broker's
 * challenge; copied) (Gramine's standard encoding). The caller owns *key and *cert
 * (EVP_PKEY_free, X509_free). Errors: VEIL_E_INVALID (validity, or a nonce over
 * VEIL_ATTEST_RATLS_NONCE_MAX bytes), those of the provider, VEIL_E_CRYPTO, NOMEM.
 */
VEIL_NODISCARD veil_err veil_attest_ratls_create(struct veil_attest_provider *p, int64_t validity_s,
                                                 struct veil_span nonce, EVP_PKEY **key,
                                                 X509 **cert, struct veil_errbuf *eb);

/*
 * As veil_attest_ratls_create, for an existing key: the certificate is for key's public key and
 * signed with it (key is borrowed; it must hold a private key). A server uses it to attest its
 * TLS key to a client for the client's nonce (docs/attest/server-check.md). Errors: as
 * veil_attest_ratls_create.
 */
VEIL_NODISCARD veil_err veil_attest_ratls_create_for_key(struct veil_attest_provider *p,
                                                         EVP_PKEY *key, int64_t validity_s,
                                                         struct veil_span nonce, X509 **cert,
                                                         struct veil_errbuf *eb);

/*
 * Verifies a TLS peer's RA-TLS certificate: finds the tagged-evidence extension, checks that
 * opts->now lies inside the certificate's notBefore..notAfter, that the claims bind the
 * certificate's public key and that REPORT_DATA binds the claims (and so any nonce in them),
 * then verifies the evidence as veil_attest_verify does. Whether the nonce is fresh is the
 * caller's to check (veil_attest_ratls_get_nonce). cert is borrowed. Thread-safe.
 * Returns VEIL_OK with *out filled; VEIL_E_AUTH with out->reason (CERT_EXPIRED, BINDING,
 * MALFORMED, or the evidence's reason); VEIL_E_NOMEM / VEIL_E_CRYPTO when the verifier failed.
 */
VEIL_NODISCARD veil_err veil_attest_ratls_verify(X509 *cert,
                                                 const struct veil_attest_collateral *col,
                                                 const struct veil_attest_roots *roots,
                                                 const struct veil_attest_verify_opts *opts,
                                                 struct veil_attest_claims *out);

/*
 * Finds the tagged-evidence extension of cert and returns views of its evidence and claims
 * (valid while cert lives), without verifying anything; for veil_attest_peek.
 * Errors: VEIL_E_NOTFOUND (no extension, or more than one), VEIL_E_FORMAT, VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_attest_ratls_get_evidence(X509 *cert, struct veil_span *evidence,
                                                       struct veil_span *claims);

/*
 * Returns a view (valid while cert lives) of the nonce in cert's RA-TLS claims, without
 * verifying anything: veil_attest_ratls_verify then proves REPORT_DATA commits to it.
 * Errors: VEIL_E_NOTFOUND (no extension, more than one, or claims without a nonce),
 * VEIL_E_FORMAT (malformed extension or claims), VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_attest_ratls_get_nonce(X509 *cert, struct veil_span *nonce);

/*
 * Extracts the evidence bytes from an RA-TLS certificate's extension without verifying
 * anything (views into cert's memory, valid while cert lives). Pure parser.
 * Errors: VEIL_E_NOTFOUND (no extension), VEIL_E_FORMAT.
 */
VEIL_NODISCARD veil_err veil_attest_ratls_parse_ext(struct veil_span ext_value,
                                                    struct veil_span *evidence,
                                                    struct veil_span *claims);

/* ---- Policy (docs/attest/policy.md) ---- */

/* A parsed, immutable policy. Opaque; safe to share between threads once loaded. */
struct veil_attest_policy;
/* One workload entry of a policy; lives as long as its policy. */
struct veil_attest_workload;

/*
 * Parses a policy document (JSON). Pure function of its input. Unknown fields, duplicate
 * names, bad hex lengths and workloads without a measurement are refused.
 * Errors: VEIL_E_FORMAT / VEIL_E_LIMIT with detail, VEIL_E_NOMEM. *out is NULL on failure.
 */
VEIL_NODISCARD veil_err veil_attest_policy_parse(struct veil_span text,
                                                 struct veil_attest_policy **out,
                                                 struct veil_errbuf *eb);

/*
 * Reads and parses a policy file (at most VEIL_LIMIT_CONFIG_FILE bytes). For reloading: on
 * any error *out is NULL and the caller keeps the policy it had.
 * Errors: those of veil_file_read_all and veil_attest_policy_parse.
 */
VEIL_NODISCARD veil_err veil_attest_policy_load(const char *path, struct veil_attest_policy **out,
                                                struct veil_errbuf *eb);

/* Frees a policy. NULL is a no-op. */
void veil_attest_policy_free(struct veil_attest_policy *policy);

/*
 * Matches verified claims against the policy at time now: the first workload whose every
 * condition holds is returned in *out (borrowed from policy). Claims that did not verify are
 * never matched. Thread-safe.
 * Errors: VEIL_E_REJECTED with the reason in eb (for a single candidate workload, the first
 * condition it failed), VEIL_E_INVALID (claims not verified).
 */
VEIL_NODISCARD veil_err veil_attest_policy_match(const struct veil_attest_policy *policy,
                                                 const struct veil_attest_claims *claims,
                                                 int64_t now,
                                                 const struct veil_attest_workload **out,
                                                 struct veil_errbuf *eb);

/* Number of workloads, and the i-th one (NULL when out of range). */
size_t veil_attest_policy_workload_count(const struct veil_attest_policy *policy);
const struct veil_attest_workload *
veil_attest_policy_workload(const struct veil_attest_policy *policy, size_t i);

/* The workload's name and TEE. */
const char *veil_attest_workload_name(const struct veil_attest_workload *w);
enum veil_tee veil_attest_workload_tee(const struct veil_attest_workload *w);

/* The key IDs the workload may receive: count, i-th (NULL out of range), membership test. */
size_t veil_attest_workload_key_count(const struct veil_attest_workload *w);
const char *veil_attest_workload_key(const struct veil_attest_workload *w, size_t i);
bool veil_attest_workload_may_receive(const struct veil_attest_workload *w, const char *key_id);

/*
 * The names (exact DNS names or IP addresses, policy field "names") the workload's serving
 * certificate may carry: count, i-th (NULL out of range), and membership (DNS names compare
 * case-insensitively). A workload without names gets no serving certificate.
 */
size_t veil_attest_workload_host_count(const struct veil_attest_workload *w);
const char *veil_attest_workload_host(const struct veil_attest_workload *w, size_t i);
bool veil_attest_workload_grants_host(const struct veil_attest_workload *w, const char *host);

/*
 * The lowest version of each model the workload may serve (policy field "min_versions"),
 * delivered with its keys so that the server refuses older versions (a rollback by deleting
 * the newest version folder included): count, and the i-th model name (NULL out of range)
 * with its minimum in *version.
 */
size_t veil_attest_workload_min_version_count(const struct veil_attest_workload *w);
const char *veil_attest_workload_min_version(const struct veil_attest_workload *w, size_t i,
                                             int64_t *version);

/*
 * Bounds of a workload's serving-certificate lifetime (policy field "cert_lifetime_s"): a
 * server renews at two thirds of it, so 5 s means a renewal about every 3 s (tests only), and
 * a year is the longest any certificate should speak for a workload without re-attesting.
 */
#define VEIL_ATTEST_CERT_LIFETIME_MIN_S 5
#define VEIL_ATTEST_CERT_LIFETIME_MAX_S (366 * 86400)

/*
 * The lifetime in seconds of the workload's serving certificates (policy field
 * "cert_lifetime_s", VEIL_ATTEST_CERT_LIFETIME_MIN_S..MAX_S), or 0 when the policy leaves it
 * to the broker's default.
 */
int64_t veil_attest_workload_cert_lifetime(const struct veil_attest_workload *w);

/*
 * Whether s[0, len) is a name a certificate may carry: an IPv4 or IPv6 address, or a DNS name
 * of dot-separated labels (letters, digits, inner hyphens; 1..63 bytes each, 253 in all). No
 * wildcards, spaces, control characters or NULs. Pure.
 */
bool veil_attest_host_name_ok(const char *s, size_t len);

/* ---- Clients checking a server (docs/attest/server-check.md) ---- */

/*
 * Checks a server's answer to a client's attestation request before the client sends it
 * anything: cert is the RA-TLS certificate the server returned; its claims must name exactly
 * nonce (the client's fresh random challenge: an older answer fails, so replays do), it must
 * be for peer_key (the public key the TLS connection's peer proved it holds: evidence a relay
 * forwards from another server fails), it must verify as veil_attest_ratls_verify does (dates,
 * binding of key and nonce into REPORT_DATA, evidence to a pinned root) and the verified claims
 * must match policy at opts->now. Pointers are borrowed; on success *claims is filled and
 * *workload is the matched workload (borrowed from policy). Thread-safe.
 * Errors (eb names the failed check): VEIL_E_AUTH (nonce, key, or evidence), VEIL_E_REJECTED
 * (policy, with its reason), VEIL_E_NOMEM / VEIL_E_CRYPTO (the verifier failed).
 */
VEIL_NODISCARD veil_err veil_attest_ratls_check_server(
    X509 *cert, struct veil_span nonce, EVP_PKEY *peer_key,
    const struct veil_attest_collateral *col, const struct veil_attest_roots *roots,
    const struct veil_attest_policy *policy, const struct veil_attest_verify_opts *opts,
    struct veil_attest_claims *claims, const struct veil_attest_workload **workload,
    struct veil_errbuf *eb);

#endif /* VEIL_ATTEST_H */
