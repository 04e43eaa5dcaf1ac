/*
 * `sim` evidence: software evidence for machines without a TEE (docs/attest/sim.md).
 *
 * INSECURE by design: anyone holding the simulation key can claim any measurement. It exists
 * so the whole key-release flow runs unchanged on laptops and CI. The verifier accepts it
 * only when signed by a key the broker trusts, and the policy refuses it unless a workload
 * names tee "sim". Layout (208 bytes, integers little-endian): "VEILSIM1", version u32 (1),
 * svn u32, measurement[32], report_data[64], Ed25519 public key[32], then an Ed25519
 * signature[64] over the 144 bytes before it.
 */
#include "attest_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#define SIM_SIGNED_LEN 144
_Static_assert(SIM_SIGNED_LEN + 64 == VEIL_ATTEST_SIM_LEN, "sim layout");

veil_err veil__attest_sim_sign(EVP_PKEY *key, const uint8_t measurement[32], uint32_t svn,
                               const uint8_t report_data[64], struct veil_buf *out)
{
    veil_err rc = VEIL_E_INTERNAL;
    EVP_MD_CTX *mctx = NULL;
    uint8_t ev[VEIL_ATTEST_SIM_LEN];
    size_t publen = 32, siglen = 64;
    memcpy(ev, VEIL_ATTEST_SIM_MAGIC, 8);
    for (size_t i = 0; i < 4; i++) {
        ev[8 + i] = (uint8_t)(1u >> (8 * i));
        ev[12 + i] = (uint8_t)(svn >> (8 * i));
    }
    memcpy(ev + 16, measurement, 32);
    memcpy(ev + 48, report_data, 64);
    if (EVP_PKEY_get_raw_public_key(key, ev + 112, &publen) != 1 || publen != 32) {
        rc = VEIL_E_CRYPTO;
        goto out;
    }
    if ((mctx = EVP_MD_CTX_new()) == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    if (EVP_DigestSignInit(mctx, NULL, NULL, NULL, key) != 1 ||
        EVP_DigestSign(mctx, ev + SIM_SIGNED_LEN, &siglen, ev, SIM_SIGNED_LEN) != 1 ||
        siglen != 64) {
        rc = VEIL_E_CRYPTO;
        goto out;
    }
    rc = veil_buf_append(out, ev, sizeof(ev));
out:
    ERR_clear_error();
    EVP_MD_CTX_free(mctx);
    veil_memzero(ev, sizeof(ev));
    return rc;
}

veil_err veil__attest_verify_sim(struct veil_span ev, const struct veil_attest_roots *roots,
                                 struct veil_attest_claims *out)
{
    struct veil_span s = ev, magic, body, pub, sig;
    uint32_t version, svn;
    out->tee = VEIL_TEE_SIM;
    if (veil_span_get_bytes(&s, 8, &magic) != VEIL_OK ||
        memcmp(magic.p, VEIL_ATTEST_SIM_MAGIC, 8) != 0 ||
        veil_span_get_u32le(&s, &version) != VEIL_OK || veil_span_get_u32le(&s, &svn) != VEIL_OK)
        return veil__attest_reject(out, VEIL_ATTEST_MALFORMED, "sim evidence header");
    out->version = version;
    if (version != 1)
        return veil__attest_reject(out, VEIL_ATTEST_UNSUPPORTED, "sim version %u", version);
    if (veil_span_get_bytes(&s, 96, &body) != VEIL_OK || veil_span_get_bytes(&s, 32, &pub) ||
        veil_span_get_bytes(&s, 64, &sig) != VEIL_OK || veil_span_expect_end(&s) != VEIL_OK)
        return veil__attest_reject(out, VEIL_ATTEST_MALFORMED, "sim evidence is not %d bytes",
                                   VEIL_ATTEST_SIM_LEN);
    EVP_PKEY *key = NULL;
    for (size_t i = 0; roots != NULL && i < roots->sim_key_count; i++) {
        uint8_t raw[32];
        size_t n = sizeof(raw);
        if (EVP_PKEY_get_raw_public_key(roots->sim_keys[i], raw, &n) == 1 && n == 32 &&
            memcmp(raw, pub.p, 32) == 0)
            key = roots->sim_keys[i];
    }
    ERR_clear_error();
    if (key == NULL)
        return veil__attest_reject(out, VEIL_ATTEST_SIM_KEY_UNTRUSTED,
                                   "sim evidence signed by an untrusted key");
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    if (mctx == NULL)
        return VEIL_E_NOMEM;
    int ok = EVP_DigestVerifyInit(mctx, NULL, NULL, NULL, key) == 1 &&
             EVP_DigestVerify(mctx, sig.p, sig.len, ev.p, SIM_SIGNED_LEN) == 1;
    EVP_MD_CTX_free(mctx);
    ERR_clear_error();
    if (!ok)
        return veil__attest_reject(out, VEIL_ATTEST_REPORT_SIGNATURE,
                                   "sim evidence signature does not verify");
    struct veil_attest_claims c;
    memset(&c, 0, sizeof(c));
    c.tee = VEIL_TEE_SIM;
    c.version = version;
    c.sim_svn = svn;
    memcpy(c.sim_measurement, body.p, 32);
    memcpy(c.report_data, body.p + 32, 64);
    c.verified = true;
    c.reason = VEIL_ATTEST_OK;
    snprintf(c.detail, sizeof(c.detail), "INSECURE simulated evidence verified (no TEE)");
    *out = c;
    return VEIL_OK;
}

veil_err veil_attest_sim_measure_file(const char *path, uint8_t out[32], struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    EVP_MD_CTX *mctx = NULL;
    uint8_t chunk[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return veil_errf(eb, errno == ENOENT ? VEIL_E_NOTFOUND : VEIL_E_IO, "cannot open %s", path);
    if ((mctx = EVP_MD_CTX_new()) == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    if (EVP_DigestInit_ex(mctx, EVP_sha256(), NULL) != 1) {
        rc = VEIL_E_CRYPTO;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = veil_errf(eb, VEIL_E_IO, "cannot read %s", path);
            goto out;
        }
        if (n == 0)
            break;
        if (EVP_DigestUpdate(mctx, chunk, (size_t)n) != 1) {
            rc = VEIL_E_CRYPTO;
            goto out;
        }
    }
    rc = EVP_DigestFinal_ex(mctx, out, NULL) == 1 ? VEIL_OK : VEIL_E_CRYPTO;
out:
    ERR_clear_error();
    EVP_MD_CTX_free(mctx);
    close(fd);
    return rc;
}

static veil_err bio_to_buf(BIO *bio, struct veil_buf *out)
{
    char *p = NULL;
    long n = BIO_get_mem_data(bio, &p);
    if (n <= 0)
        return VEIL_E_CRYPTO;
    return veil_buf_append(out, p, (size_t)n);
}

veil_err veil_attest_sim_keygen(struct veil_buf *priv, struct veil_buf *pub, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    BIO *b1 = BIO_new(BIO_s_secmem()), *b2 = BIO_new(BIO_s_mem());
    if (k == NULL) {
        rc = veil_errf(eb, VEIL_E_CRYPTO, "Ed25519 key generation failed");
        goto out;
    }
    if (b1 == NULL || b2 == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    if (PEM_write_bio_PrivateKey(b1, k, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_PUBKEY(b2, k) != 1) {
        rc = veil_errf(eb, VEIL_E_CRYPTO, "cannot encode the sim key");
        goto out;
    }
    if ((rc = bio_to_buf(b1, priv)) != VEIL_OK || (rc = bio_to_buf(b2, pub)) != VEIL_OK)
        goto out;
    rc = VEIL_OK;
out:
    ERR_clear_error();
    BIO_free(b1);
    BIO_free(b2);
    EVP_PKEY_free(k);
    return rc;
}
