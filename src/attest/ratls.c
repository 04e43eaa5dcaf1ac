/*
 * RA-TLS: evidence inside an X.509 certificate, in the TCG DICE tagged-evidence extension
 * (OID 2.23.133.5.4.9), encoded as Gramine writes it (docs/attest/ratls.md):
 *
 *   extension value = CBOR tag 60000 ( [ bstr evidence, bstr claims ] )
 *   claims          = CBOR map { "pubkey-hash": bstr( CBOR [ hash-alg-id, bstr hash ] ),
 *                                optional "nonce": bstr }
 *   REPORT_DATA     = SHA-256(claims) || 32 zero bytes
 *
 * where hash is the digest of the certificate's DER SubjectPublicKeyInfo (alg 1 SHA-256,
 * 7 SHA-384, 8 SHA-512) and nonce the broker's challenge. The verifier checks the certificate's
 * validity window, the key hash, then the evidence, then that the evidence's REPORT_DATA commits
 * to the claims, so evidence can be moved neither to another key nor to another nonce.
 */
#include "attest_int.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define DICE_OID "2.23.133.5.4.9"
#define CBOR_TAG_EVIDENCE 60000u

/* ---- Minimal CBOR (RFC 8949): definite lengths only ---- */

static veil_err cbor_head(struct veil_span *s, uint8_t *major, uint64_t *arg)
{
    uint8_t b;
    if (veil_span_get_u8(s, &b) != VEIL_OK)
        return VEIL_E_FORMAT;
    *major = b >> 5;
    uint8_t ai = b & 0x1F;
    if (ai < 24) {
        *arg = ai;
        return VEIL_OK;
    }
    if (ai == 24) {
        uint8_t v;
        if (veil_span_get_u8(s, &v) != VEIL_OK)
            return VEIL_E_FORMAT;
        *arg = v;
    } else if (ai == 25) {
        uint16_t v;
        if (veil_span_get_u16be(s, &v) != VEIL_OK)
            return VEIL_E_FORMAT;
        *arg = v;
    } else if (ai == 26) {
        uint32_t v;
        if (veil_span_get_u32be(s, &v) != VEIL_OK)
            return VEIL_E_FORMAT;
        *arg = v;
    } else if (ai == 27) {
        if (veil_span_get_u64be(s, arg) != VEIL_OK)
            return VEIL_E_FORMAT;
    } else {
        return VEIL_E_FORMAT; /* indefinite lengths and reserved values */
    }
    return VEIL_OK;
}

static veil_err cbor_bytes(struct veil_span *s, uint8_t want_major, struct veil_span *out)
{
    uint8_t major;
    uint64_t n;
    if (cbor_head(s, &major, &n) != VEIL_OK || major != want_major || n > SIZE_MAX)
        return VEIL_E_FORMAT;
    return veil_span_get_bytes(s, (size_t)n, out) == VEIL_OK ? VEIL_OK : VEIL_E_FORMAT;
}

static veil_err cbor_put_head(struct veil_buf *b, uint8_t major, uint64_t v)
{
    uint8_t m = (uint8_t)(major << 5);
    veil_err rc;
    if (v < 24)
        return veil_buf_append_u8(b, (uint8_t)(m | v));
    if (v <= 0xFF) {
        if ((rc = veil_buf_append_u8(b, m | 24)) != VEIL_OK)
            return rc;
        return veil_buf_append_u8(b, (uint8_t)v);
    }
    if (v <= 0xFFFF) {
        if ((rc = veil_buf_append_u8(b, m | 25)) != VEIL_OK)
            return rc;
        return veil_buf_append_u16be(b, (uint16_t)v);
    }
    if (v <= 0xFFFFFFFFu) {
        if ((rc = veil_buf_append_u8(b, m | 26)) != VEIL_OK)
            return rc;
        return veil_buf_append_u32be(b, (uint32_t)v);
    }
    if ((rc = veil_buf_append_u8(b, m | 27)) != VEIL_OK)
        return rc;
    return veil_buf_append_u64be(b, v);
}

static veil_err cbor_put_bytes(struct veil_buf *b, uint8_t major, const void *p, size_t n)
{
    veil_err rc = cbor_put_head(b, major, n);
    return rc != VEIL_OK ? rc : veil_buf_append(b, p, n);
}

veil_err veil__attest_ratls_claims_encode(const uint8_t spki_hash[32], struct veil_span nonce,
                                          struct veil_buf *out)
{
    if (nonce.len > VEIL_ATTEST_RATLS_NONCE_MAX)
        return VEIL_E_LIMIT;
    uint8_t inner[2 + 2 + 32];
    inner[0] = 0x82; /* array(2) */
    inner[1] = 0x01; /* SHA-256 in the IANA Named Information registry */
    inner[2] = 0x58;
    inner[3] = 32;
    memcpy(inner + 4, spki_hash, 32);
    veil_err rc = cbor_put_head(out, 5, nonce.len > 0 ? 2 : 1); /* map */
    if (rc == VEIL_OK)
        rc = cbor_put_bytes(out, 3, "pubkey-hash", 11);
    if (rc == VEIL_OK)
        rc = cbor_put_bytes(out, 2, inner, sizeof(inner));
    if (rc == VEIL_OK && nonce.len > 0)
        rc = cbor_put_bytes(out, 3, "nonce", 5);
    if (rc == VEIL_OK && nonce.len > 0)
        rc = cbor_put_bytes(out, 2, nonce.p, nonce.len);
    return rc;
}

veil_err veil__attest_ratls_claims_parse(struct veil_span claims, uint64_t *alg,
                                         struct veil_span *hash, struct veil_span *nonce)
{
    struct veil_span s = claims;
    uint8_t major;
    uint64_t entries, n;
    bool found = false, has_nonce = false;
    *nonce = veil_span_make(NULL, 0);
    if (cbor_head(&s, &major, &entries) != VEIL_OK || major != 5 || entries == 0 || entries > 8)
        return VEIL_E_FORMAT;
    for (uint64_t i = 0; i < entries; i++) {
        struct veil_span key, val;
        if (cbor_bytes(&s, 3, &key) != VEIL_OK || cbor_bytes(&s, 2, &val) != VEIL_OK)
            return VEIL_E_FORMAT;
        if (veil_span_eq_str(key, "nonce")) {
            /* One nonce only: the broker must check the very nonce REPORT_DATA commits to. */
            if (has_nonce || val.len == 0 || val.len > VEIL_ATTEST_RATLS_NONCE_MAX)
                return VEIL_E_FORMAT;
            has_nonce = true;
            *nonce = val;
            continue;
        }
        if (!veil_span_eq_str(key, "pubkey-hash") || found)
            return VEIL_E_FORMAT;
        found = true;
        if (cbor_head(&val, &major, &n) != VEIL_OK || major != 4 || n != 2 ||
            cbor_head(&val, &major, alg) != VEIL_OK || major != 0 ||
            cbor_bytes(&val, 2, hash) != VEIL_OK || val.len != 0)
            return VEIL_E_FORMAT;
    }
    if (!found || s.len != 0)
        return VEIL_E_FORMAT;
    size_t want = *alg == 1 ? 32 : *alg == 7 ? 48 : *alg == 8 ? 64 : 0;
    if (want == 0)
        return VEIL_E_UNSUPPORTED;
    return hash->len == want ? VEIL_OK : VEIL_E_FORMAT;
}

veil_err veil_attest_ratls_parse_ext(struct veil_span ext_value, struct veil_span *evidence,
                                     struct veil_span *claims)
{
    struct veil_span s = ext_value;
    uint8_t major;
    uint64_t v;
    if (cbor_head(&s, &major, &v) != VEIL_OK || major != 6 || v != CBOR_TAG_EVIDENCE)
        return VEIL_E_FORMAT;
    if (cbor_head(&s, &major, &v) != VEIL_OK || major != 4 || v != 2)
        return VEIL_E_FORMAT;
    if (cbor_bytes(&s, 2, evidence) != VEIL_OK || cbor_bytes(&s, 2, claims) != VEIL_OK)
        return VEIL_E_FORMAT;
    return s.len == 0 ? VEIL_OK : VEIL_E_FORMAT;
}

/* DER SubjectPublicKeyInfo of a key, hashed with md. */
static veil_err spki_hash(EVP_PKEY *key, const EVP_MD *md, uint8_t *out, size_t *out_len)
{
    unsigned char *der = NULL;
    unsigned int n = 0;
    int len = i2d_PUBKEY(key, &der);
    if (len <= 0)
        return VEIL_E_CRYPTO;
    int ok = EVP_Digest(der, (size_t)len, out, &n, md, NULL);
    OPENSSL_free(der);
    if (ok != 1)
        return VEIL_E_CRYPTO;
    *out_len = n;
    return VEIL_OK;
}

veil_err veil_attest_ratls_create(struct veil_attest_provider *p, int64_t validity_s,
                                  struct veil_span nonce, EVP_PKEY **key_out, X509 **cert_out,
                                  struct veil_errbuf *eb)
{
    EVP_PKEY *key = NULL;
    *key_out = NULL;
    *cert_out = NULL;
    if ((key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL) {
        ERR_clear_error();
        return veil_errf(eb, VEIL_E_CRYPTO, "key generation failed");
    }
    veil_err rc = veil_attest_ratls_create_for_key(p, key, validity_s, nonce, cert_out, eb);
    if (rc != VEIL_OK) {
        EVP_PKEY_free(key);
        return rc;
    }
    *key_out = key;
    return VEIL_OK;
}

veil_err veil_attest_ratls_create_for_key(struct veil_attest_provider *p, EVP_PKEY *key,
                                          int64_t validity_s, struct veil_span nonce,
                                          X509 **cert_out, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    X509 *x = NULL;
    ASN1_OBJECT *obj = NULL;
    ASN1_OCTET_STRING *os = NULL;
    X509_EXTENSION *ext = NULL;
    struct veil_buf claims, ev, val;
    uint8_t h[32], rd[VEIL_ATTEST_REPORT_DATA_LEN] = {0};
    size_t hlen = 0;
    *cert_out = NULL;
    veil_buf_init(&claims, 256);
    veil_buf_init(&ev, VEIL_ATTEST_MAX_EVIDENCE);
    veil_buf_init(&val, VEIL_ATTEST_MAX_EVIDENCE + 512);
    if (validity_s <= 0 || validity_s > 366 * 86400) {
        rc = veil_errf(eb, VEIL_E_INVALID, "RA-TLS validity out of range");
        goto out;
    }
    if (nonce.len > VEIL_ATTEST_RATLS_NONCE_MAX) {
        rc = veil_errf(eb, VEIL_E_INVALID, "RA-TLS nonce over %d bytes",
                       VEIL_ATTEST_RATLS_NONCE_MAX);
        goto out;
    }
    if ((rc = spki_hash(key, EVP_sha256(), h, &hlen)) != VEIL_OK ||
        (rc = veil__attest_ratls_claims_encode(h, nonce, &claims)) != VEIL_OK ||
        (rc = veil__attest_sha256(veil_buf_span(&claims), rd)) != VEIL_OK)
        goto out;
    if ((rc = veil_attest_provider_get_evidence(p, rd, &ev, NULL, eb)) != VEIL_OK)
        goto out;
    if ((rc = cbor_put_head(&val, 6, CBOR_TAG_EVIDENCE)) != VEIL_OK ||
        (rc = cbor_put_head(&val, 4, 2)) != VEIL_OK ||
        (rc = cbor_put_bytes(&val, 2, ev.p, ev.len)) != VEIL_OK ||
        (rc = cbor_put_bytes(&val, 2, claims.p, claims.len)) != VEIL_OK)
        goto out;

    uint8_t serial[16];
    if ((rc = veil_random_bytes(serial, sizeof(serial))) != VEIL_OK)
        goto out;
    serial[0] &= 0x7F;
    time_t now = (time_t)veil_time_now();
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    X509_NAME *name = NULL;
    rc = VEIL_E_CRYPTO;
    if (bn == NULL || (x = X509_new()) == NULL || X509_set_version(x, 2) != 1 ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
        X509_time_adj_ex(X509_getm_notBefore(x), 0, (long)-3600, &now) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), 0, (long)validity_s, &now) == NULL ||
        (name = X509_get_subject_name(x)) == NULL ||
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Veil", -1, -1,
                                   0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"Veil RA-TLS",
                                   -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, name) != 1 || X509_set_pubkey(x, key) != 1) {
        BN_free(bn);
        rc = veil_errf(eb, VEIL_E_CRYPTO, "cannot build the certificate");
        goto out;
    }
    BN_free(bn);
    if ((obj = OBJ_txt2obj(DICE_OID, 1)) == NULL || (os = ASN1_OCTET_STRING_new()) == NULL ||
        ASN1_OCTET_STRING_set(os, val.p, (int)val.len) != 1 ||
        (ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 0, os)) == NULL ||
        X509_add_ext(x, ext, -1) != 1 || X509_sign(x, key, EVP_sha256()) <= 0) {
        rc = veil_errf(eb, VEIL_E_CRYPTO, "cannot add the evidence extension or sign");
        goto out;
    }
    *cert_out = x;
    x = NULL;
    rc = VEIL_OK;
out:
    ERR_clear_error();
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(os);
    ASN1_OBJECT_free(obj);
    X509_free(x);
    veil_buf_release(&claims);
    veil_buf_release(&ev);
    veil_buf_release(&val);
    return rc;
}

veil_err veil_attest_ratls_get_evidence(X509 *cert, struct veil_span *evidence,
                                        struct veil_span *claims)
{
    ASN1_OBJECT *obj = OBJ_txt2obj(DICE_OID, 1);
    if (obj == NULL)
        return VEIL_E_NOMEM;
    int idx = X509_get_ext_by_OBJ(cert, obj, -1);
    int idx2 = idx >= 0 ? X509_get_ext_by_OBJ(cert, obj, idx) : -1;
    ASN1_OBJECT_free(obj);
    if (idx < 0 || idx2 >= 0)
        return VEIL_E_NOTFOUND;
    ASN1_OCTET_STRING *os = X509_EXTENSION_get_data(X509_get_ext(cert, idx));
    struct veil_span val =
        veil_span_make(ASN1_STRING_get0_data(os), (size_t)ASN1_STRING_length(os));
    return veil_attest_ratls_parse_ext(val, evidence, claims);
}

veil_err veil_attest_ratls_get_nonce(X509 *cert, struct veil_span *nonce)
{
    struct veil_span evidence, claims, hash;
    uint64_t alg = 0;
    *nonce = veil_span_make(NULL, 0);
    veil_err rc = veil_attest_ratls_get_evidence(cert, &evidence, &claims);
    if (rc != VEIL_OK)
        return rc;
    struct veil_span n;
    if (veil__attest_ratls_claims_parse(claims, &alg, &hash, &n) != VEIL_OK)
        return VEIL_E_FORMAT;
    if (n.len == 0)
        return VEIL_E_NOTFOUND;
    *nonce = n;
    return VEIL_OK;
}

veil_err veil_attest_ratls_verify(X509 *cert, const struct veil_attest_collateral *col,
                                  const struct veil_attest_roots *roots,
                                  const struct veil_attest_verify_opts *opts,
                                  struct veil_attest_claims *out)
{
    memset(out, 0, sizeof(*out));
    struct veil_span evidence, claims, hash, nonce;
    uint64_t alg = 0;
    veil_err rc = veil_attest_ratls_get_evidence(cert, &evidence, &claims);
    if (rc == VEIL_E_NOMEM)
        return rc;
    if (rc == VEIL_E_NOTFOUND)
        return veil__attest_reject(out, VEIL_ATTEST_MALFORMED,
                                   "certificate needs exactly one tagged-evidence extension");
    if (rc != VEIL_OK || veil__attest_ratls_claims_parse(claims, &alg, &hash, &nonce) != VEIL_OK)
        return veil__attest_reject(out, VEIL_ATTEST_MALFORMED, "tagged-evidence extension");

    /*
     * 0. The certificate is valid now by the verifier's clock: a certificate made long ago (or
     * dated into the future) must not stand for a workload today (issue 17, no freshness).
     */
    if (opts == NULL)
        return veil__attest_reject(out, VEIL_ATTEST_MALFORMED, "no verification time given");
    time_t now = (time_t)opts->now;
    const ASN1_TIME *nb = X509_get0_notBefore(cert), *na = X509_get0_notAfter(cert);
    if (nb == NULL || na == NULL || X509_cmp_time(nb, &now) >= 0 || X509_cmp_time(na, &now) <= 0) {
        ERR_clear_error();
        return veil__attest_reject(out, VEIL_ATTEST_CERT_EXPIRED,
                                   "RA-TLS certificate is outside its validity window");
    }

    /* 1. The claims name this certificate's key. */
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    uint8_t h[64];
    size_t hlen = 0;
    const EVP_MD *md = alg == 1 ? EVP_sha256() : alg == 7 ? EVP_sha384() : EVP_sha512();
    if (pub == NULL || spki_hash(pub, md, h, &hlen) != VEIL_OK) {
        ERR_clear_error();
        return veil__attest_reject(out, VEIL_ATTEST_MALFORMED, "certificate public key");
    }
    if (hlen != hash.len || !veil_memeq_ct(h, hash.p, hlen))
        return veil__attest_reject(out, VEIL_ATTEST_BINDING,
                                   "claims do not hold the hash of the certificate's key");

    /* 2. The evidence. */
    rc = veil_attest_verify(evidence, col, roots, opts, out);
    if (rc != VEIL_OK)
        return rc;

    /* 3. The verified REPORT_DATA commits to the claims. */
    uint8_t want[VEIL_ATTEST_REPORT_DATA_LEN] = {0};
    if ((rc = veil__attest_sha256(claims, want)) != VEIL_OK) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    if (!veil_memeq_ct(want, out->report_data, sizeof(want))) {
        enum veil_tee tee = out->tee;
        uint32_t version = out->version;
        memset(out, 0, sizeof(*out));
        out->tee = tee;
        out->version = version;
        return veil__attest_reject(out, VEIL_ATTEST_BINDING,
                                   "REPORT_DATA is not SHA-256 of the certificate's claims");
    }
    return VEIL_OK;
}

veil_err veil_attest_ratls_check_server(X509 *cert, struct veil_span nonce, EVP_PKEY *peer_key,
                                        const struct veil_attest_collateral *col,
                                        const struct veil_attest_roots *roots,
                                        const struct veil_attest_policy *policy,
                                        const struct veil_attest_verify_opts *opts,
                                        struct veil_attest_claims *claims,
                                        const struct veil_attest_workload **workload,
                                        struct veil_errbuf *eb)
{
    struct veil_span got;
    *workload = NULL;
    memset(claims, 0, sizeof(*claims));
    /*
     * Freshness first: an answer captured from an earlier exchange (a replay) names the nonce
     * of that exchange, never this one, which the client drew just now.
     */
    veil_err rc = veil_attest_ratls_get_nonce(cert, &got);
    if (rc == VEIL_E_NOMEM)
        return rc;
    if (rc != VEIL_OK || nonce.len == 0 || got.len != nonce.len ||
        !veil_memeq_ct(got.p, nonce.p, nonce.len))
        return veil_errf(eb, VEIL_E_AUTH,
                         "the server's evidence does not answer this client's nonce (replayed "
                         "or stale evidence)");
    /*
     * The key: evidence for another key than the one this TLS connection's peer proved it
     * holds is what a relay forwarding a genuine server's answer would present.
     */
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    if (pub == NULL || peer_key == NULL || EVP_PKEY_eq(pub, peer_key) != 1) {
        ERR_clear_error();
        return veil_errf(eb, VEIL_E_AUTH,
                         "the server's evidence is for another key than this TLS connection's "
                         "(a relay?)");
    }
    rc = veil_attest_ratls_verify(cert, col, roots, opts, claims);
    if (rc == VEIL_E_AUTH)
        return veil_errf(eb, rc, "the server's evidence does not verify: %s (%s)",
                         veil_attest_reason_str(claims->reason), claims->detail);
    if (rc != VEIL_OK)
        return veil_errf(eb, rc, "cannot verify the server's evidence: %s", claims->detail);
    struct veil_errbuf peb = {{0}};
    if ((rc = veil_attest_policy_match(policy, claims, opts->now, workload, &peb)) != VEIL_OK)
        return veil_errf(eb, VEIL_E_REJECTED, "the server does not match the policy: %s",
                         veil_errbuf_msg(&peb, rc));
    return VEIL_OK;
}
