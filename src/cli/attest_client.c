/*
 * Clients that check the server themselves (docs/attest/server-check.md). Trusting the serving
 * CA means trusting the broker's operator to have attested the server; with --attest the
 * client also asks the server, on the very connection it will use, for evidence of its TLS key
 * bound to a nonce the client chose, and verifies it with the broker's verifier against a
 * policy of its own. The nonce makes a recorded answer useless; comparing the evidence's key
 * with the key the TLS handshake proved makes another server's answer, relayed, useless.
 */
#include "attest_client.h"

#include "cli.h"
#include "predict_io.h"
#include "veil/attest.h"
#include "veil/json.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>

#define ATTEST_NONCE_LEN 32
#define ATTEST_MAX_KEYS 16 /* keys remembered as checked (a renewing server has a few) */

struct veil_cli_attest {
    struct veil_attest_policy *policy;
    struct veil_attest_roots *roots;
    struct veil_attest_collateral_files col;
    bool have_col;
    EVP_PKEY *checked[ATTEST_MAX_KEYS];
    size_t n_checked;
};

veil_err veil_cli_attest_new(const struct veil_cli_attest_opts *o, struct veil_cli_attest **out,
                             struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_cli_attest *a = NULL;
    struct veil_buf pem;
    veil_buf_init(&pem, 65536);
    *out = NULL;
    if (o->roots == NULL && o->sim_key == NULL) {
        rc = veil_errf(eb, VEIL_E_INVALID,
                       "--attest needs --attest-roots DIR (Intel and AMD roots) or "
                       "--attest-sim-key PUB.pem to verify evidence with");
        goto out;
    }
    if ((a = veil_calloc(1, sizeof(*a))) == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    if ((rc = veil_attest_policy_load(o->policy, &a->policy, eb)) != VEIL_OK) {
        rc = veil_err_prefix(eb, rc, "--attest %s", o->policy);
        goto out;
    }
    if ((rc = veil_attest_roots_new(&a->roots)) != VEIL_OK)
        goto out;
    if (o->roots != NULL && (rc = veil_attest_roots_load_dir(a->roots, o->roots, eb)) != VEIL_OK) {
        rc = veil_err_prefix(eb, rc, "--attest-roots %s", o->roots);
        goto out;
    }
    if (o->sim_key != NULL &&
        ((rc = veil_file_read_all(o->sim_key, pem.max, &pem, eb)) != VEIL_OK ||
         (rc = veil_attest_roots_add_sim_key(a->roots, veil_buf_span(&pem), eb)) != VEIL_OK)) {
        rc = veil_err_prefix(eb, rc, "--attest-sim-key %s", o->sim_key);
        goto out;
    }
    if (o->collateral != NULL) {
        a->have_col = true;
        if ((rc = veil_attest_collateral_load_dir(&a->col, o->collateral, eb)) != VEIL_OK) {
            rc = veil_err_prefix(eb, rc, "--attest-collateral %s", o->collateral);
            goto out;
        }
    }
    *out = a;
    a = NULL;
    rc = VEIL_OK;
out:
    veil_buf_release(&pem);
    veil_cli_attest_free(a);
    return rc;
}

void veil_cli_attest_free(struct veil_cli_attest *a)
{
    if (a == NULL)
        return;
    veil_attest_policy_free(a->policy);
    veil_attest_roots_free(a->roots);
    if (a->have_col)
        veil_attest_collateral_files_release(&a->col);
    for (size_t i = 0; i < a->n_checked; i++)
        EVP_PKEY_free(a->checked[i]);
    veil_free(a);
}

veil_err veil_cli_spki_sha256(EVP_PKEY *key, uint8_t out[32])
{
    unsigned char *der = NULL;
    unsigned int n = 0;
    int len = i2d_PUBKEY(key, &der);
    bool ok = len > 0 && EVP_Digest(der, (size_t)len, out, &n, EVP_sha256(), NULL) == 1 && n == 32;
    OPENSSL_free(der);
    return ok ? VEIL_OK : VEIL_E_CRYPTO;
}

/* Reads a protobuf varint (at most 10 bytes). */
static bool pb_varint(struct veil_span *s, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        uint8_t b;
        if (veil_span_get_u8(s, &b) != VEIL_OK)
            return false;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0)
            return true;
    }
    return false;
}

/* The certificate (field 1, DER) of a GetEvidenceResponse. */
static veil_err parse_pb_answer(struct veil_span msg, X509 **out)
{
    struct veil_span s = msg, der = {0};
    while (s.len > 0) {
        uint64_t tag = 0, len = 0;
        if (!pb_varint(&s, &tag) || (tag & 7) != 2 || !pb_varint(&s, &len) || len > s.len)
            return VEIL_E_FORMAT;
        struct veil_span f;
        if (veil_span_get_bytes(&s, (size_t)len, &f) != VEIL_OK)
            return VEIL_E_FORMAT;
        if (tag >> 3 == 1)
            der = f;
    }
    const unsigned char *p = der.p;
    if (der.len == 0 || der.len > INT32_MAX || (*out = d2i_X509(NULL, &p, (long)der.len)) == NULL ||
        p != der.p + der.len) {
        X509_free(*out);
        *out = NULL;
        return VEIL_E_FORMAT;
    }
    return VEIL_OK;
}

/* The certificate (PEM) of a REST answer {"certificate": PEM}. */
static veil_err parse_json_answer(struct veil_span body, X509 **out)
{
    struct veil_arena ar;
    struct veil_json *doc = NULL;
    veil_err rc = VEIL_E_FORMAT;
    veil_arena_init(&ar, 4096, 4u << 20);
    const char *pem = veil_json_parse(body, &ar, &doc, NULL) == VEIL_OK
                          ? veil_json_get_str(doc, "certificate")
                          : NULL;
    BIO *bio = pem != NULL ? BIO_new_mem_buf(pem, -1) : NULL;
    if (bio != NULL && (*out = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        rc = VEIL_OK;
    BIO_free(bio);
    veil_arena_release(&ar);
    return rc;
}

/* The server's refusal as an error: no attestation at all is told apart. */
static veil_err refused(const struct veil_cli_reply *r, bool grpc, struct veil_errbuf *eb)
{
    bool none = grpc ? r->status == 12 /* UNIMPLEMENTED */ : r->status == 501;
    if (grpc)
        return veil_errf(eb, none ? VEIL_E_UNSUPPORTED : VEIL_E_FORMAT,
                         "the server did not attest: gRPC status %d: %s", r->status, r->message);
    struct veil_arena ar;
    struct veil_json *doc = NULL;
    veil_arena_init(&ar, 4096, 1u << 20);
    const char *msg = veil_json_parse(veil_buf_span(&r->body), &ar, &doc, NULL) == VEIL_OK
                          ? veil_json_get_str(doc, "error")
                          : NULL;
    veil_err rc = veil_errf(eb, none ? VEIL_E_UNSUPPORTED : VEIL_E_FORMAT,
                            "the server did not attest: HTTP %d: %s", r->status,
                            msg != NULL ? msg : "no reason given");
    veil_arena_release(&ar);
    return rc;
}

veil_err veil_cli_attest_conn(struct veil_cli_attest *a, struct veil_cli_conn *c, bool grpc,
                              unsigned timeout_ms, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    EVP_PKEY *peer = veil_cli_conn_peer_key(c);
    X509 *cert = NULL;
    struct veil_buf req;
    struct veil_cli_reply ans = {0};
    uint8_t nonce[ATTEST_NONCE_LEN], kh[32];
    veil_buf_init(&req, 1024);
    veil_buf_init(&ans.body, 4u << 20);
    if (peer == NULL) {
        rc = veil_errf(eb, VEIL_E_INVALID, "--attest needs TLS");
        goto out;
    }
    for (size_t i = 0; i < a->n_checked; i++)
        if (EVP_PKEY_eq(a->checked[i], peer) == 1) {
            rc = VEIL_OK;
            goto out;
        }
    if ((rc = veil_random_bytes(nonce, sizeof(nonce))) != VEIL_OK ||
        (rc = veil_cli_spki_sha256(peer, kh)) != VEIL_OK)
        goto out;
    if (grpc) {
        /* GetEvidenceRequest { bytes nonce = 1; bytes key_sha256 = 2; } */
        uint8_t m[2 + ATTEST_NONCE_LEN + 2 + 32];
        m[0] = 0x0a;
        m[1] = ATTEST_NONCE_LEN;
        memcpy(m + 2, nonce, ATTEST_NONCE_LEN);
        m[2 + ATTEST_NONCE_LEN] = 0x12;
        m[3 + ATTEST_NONCE_LEN] = 32;
        memcpy(m + 4 + ATTEST_NONCE_LEN, kh, 32);
        rc = veil_buf_append(&req, m, sizeof(m));
        if (rc == VEIL_OK)
            rc = veil_cli_grpc_call(c, "/veil.v1.Attestation/GetEvidence", veil_buf_span(&req),
                                    veil_cli_on_reply, &ans);
    } else {
        char nh[2 * ATTEST_NONCE_LEN + 1], khh[65];
        veil_hex_encode(nonce, sizeof(nonce), nh);
        veil_hex_encode(kh, sizeof(kh), khh);
        rc = veil_buf_appendf(&req, "{\"nonce\":\"%s\",\"key_sha256\":\"%s\"}", nh, khh);
        if (rc == VEIL_OK)
            rc = veil_cli_rest_call(c, "POST", "/veil/v1/attestation", veil_buf_span(&req),
                                    veil_cli_on_reply, &ans);
    }
    if (rc == VEIL_OK)
        rc = veil_cli_wait_idle(c, timeout_ms, eb);
    if (rc != VEIL_OK) {
        rc = veil_err_prefix(eb, rc, "attestation request");
        goto out;
    }
    if (grpc ? ans.status != 0 : ans.status != 200) {
        rc = refused(&ans, grpc, eb);
        goto out;
    }
    rc = grpc ? parse_pb_answer(veil_buf_span(&ans.body), &cert)
              : parse_json_answer(veil_buf_span(&ans.body), &cert);
    if (rc != VEIL_OK) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "the server's attestation answer holds no certificate");
        goto out;
    }
    struct veil_attest_verify_opts vo = {veil_time_now(), false};
    struct veil_attest_claims claims;
    const struct veil_attest_workload *w = NULL;
    rc = veil_attest_ratls_check_server(cert, veil_span_make(nonce, sizeof(nonce)), peer,
                                        a->have_col ? &a->col.col : NULL, a->roots, a->policy, &vo,
                                        &claims, &w, eb);
    if (rc != VEIL_OK)
        goto out;
    char meas[97] = "";
    if (claims.tee == VEIL_TEE_SIM)
        veil_hex_encode(claims.sim_measurement, 32, meas);
    else if (claims.tee == VEIL_TEE_SGX)
        veil_hex_encode(claims.mrenclave, 32, meas);
    else if (claims.tee == VEIL_TEE_TDX)
        veil_hex_encode(claims.mrtd, 48, meas);
    else
        veil_hex_encode(claims.measurement, 48, meas);
    fprintf(stderr,
            "attested: the server is workload '%s' of the policy (%s, measurement %.16s...)\n",
            veil_attest_workload_name(w), veil_attest_tee_name(claims.tee), meas);
    if (a->n_checked < ATTEST_MAX_KEYS && EVP_PKEY_up_ref(peer) == 1)
        a->checked[a->n_checked++] = peer;
    rc = VEIL_OK;
out:
    ERR_clear_error();
    X509_free(cert);
    veil_memzero(nonce, sizeof(nonce));
    veil_buf_release(&req);
    veil_buf_release(&ans.body);
    return rc;
}
