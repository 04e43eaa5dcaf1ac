/*
 * Public-key plumbing for the verifiers: the pinned roots, certificate and CRL parsing, chain
 * verification at a caller-given time, raw ECDSA signatures as Intel and AMD encode them.
 *
 * Trust rests on the pinned fingerprints below: a root certificate is accepted only when its
 * DER SHA-256 equals one of them, and every chain must end at that exact certificate. The
 * OpenSSL store used for a chain holds only the pinned root, so a root inside the evidence is
 * never a trust anchor.
 */
#include "attest_int.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* SHA-256 of the DER certificates (shared/testdata/attestation/roots/ROOTS.md, vendor sites). */
static const char *const pinned_fpr[VEIL_ROOT_COUNT] = {
    /* Intel SGX Root CA, ECDSA P-256, valid 2018-05-21 .. 2049-12-31. */
    "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3",
    /* AMD ARK-Milan, RSA-4096, valid 2020-10-22 .. 2045-10-22. */
    "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    /* AMD ARK-Genoa, valid 2022-01-26 .. 2047-01-26. */
    "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    /* AMD ARK-Turin, valid 2023-05-15 .. 2048-05-15. */
    "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
};

void veil__attest_ossl_err(char *out, size_t cap)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0)
        last = e;
    if (cap == 0)
        return;
    if (last == 0)
        snprintf(out, cap, "no OpenSSL detail");
    else
        ERR_error_string_n(last, out, cap);
}

veil_err veil__attest_reject(struct veil_attest_claims *c, enum veil_attest_reason r,
                             const char *fmt, ...)
{
    va_list ap;
    c->reason = r;
    c->verified = false;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
    VEIL_LOG_DEBUG("attestation rejected (%s): %s", veil_attest_reason_name(r), c->detail);
    return VEIL_E_AUTH;
}

static veil_err digest(const EVP_MD *md, struct veil_span in, uint8_t *out)
{
    unsigned int n = 0;
    if (EVP_Digest(in.p, in.len, out, &n, md, NULL) != 1) {
        ERR_clear_error();
        return VEIL_E_CRYPTO;
    }
    return VEIL_OK;
}

veil_err veil__attest_sha256(struct veil_span in, uint8_t out[32])
{
    return digest(EVP_sha256(), in, out);
}

veil_err veil__attest_sha384(struct veil_span in, uint8_t out[48])
{
    return digest(EVP_sha384(), in, out);
}

veil_err veil__attest_certs_parse(struct veil_span bytes, STACK_OF(X509) * *out,
                                  struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    STACK_OF(X509) *sk = NULL;
    BIO *bio = NULL;
    X509 *x = NULL;
    *out = NULL;
    if (bytes.len == 0 || bytes.len > INT32_MAX) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "no certificate");
        goto out;
    }
    if ((sk = sk_X509_new_null()) == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    if (bytes.p[0] == 0x30) {
        const unsigned char *q = bytes.p;
        x = d2i_X509(NULL, &q, (long)bytes.len);
        if (x == NULL || q != bytes.p + bytes.len) {
            ERR_clear_error();
            rc = veil_errf(eb, VEIL_E_FORMAT, "bad DER certificate");
            goto out;
        }
        if (!sk_X509_push(sk, x)) {
            rc = VEIL_E_NOMEM;
            goto out;
        }
        x = NULL;
    } else {
        if ((bio = BIO_new_mem_buf(bytes.p, (int)bytes.len)) == NULL) {
            rc = VEIL_E_NOMEM;
            goto out;
        }
        while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
            if (sk_X509_num(sk) >= 8 || !sk_X509_push(sk, x)) {
                rc = veil_errf(eb, VEIL_E_LIMIT, "too many certificates");
                goto out;
            }
            x = NULL;
        }
        ERR_clear_error(); /* the end of the PEM data is reported as an error */
        if (sk_X509_num(sk) == 0) {
            rc = veil_errf(eb, VEIL_E_FORMAT, "no PEM certificate");
            goto out;
        }
    }
    *out = sk;
    sk = NULL;
    rc = VEIL_OK;
out:
    X509_free(x);
    BIO_free(bio);
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

veil_err veil__attest_crl_parse(struct veil_span bytes, X509_CRL **out)
{
    *out = NULL;
    if (bytes.len == 0 || bytes.len > INT32_MAX)
        return VEIL_E_FORMAT;
    X509_CRL *crl = NULL;
    if (bytes.p[0] == 0x30) {
        const unsigned char *q = bytes.p;
        crl = d2i_X509_CRL(NULL, &q, (long)bytes.len);
        if (crl != NULL && q != bytes.p + bytes.len) {
            X509_CRL_free(crl);
            crl = NULL;
        }
    } else {
        BIO *bio = BIO_new_mem_buf(bytes.p, (int)bytes.len);
        if (bio == NULL)
            return VEIL_E_NOMEM;
        crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }
    if (crl == NULL) {
        ERR_clear_error();
        return VEIL_E_FORMAT;
    }
    *out = crl;
    return VEIL_OK;
}

veil_err veil__attest_asn1_time(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        ERR_clear_error();
        return VEIL_E_FORMAT;
    }
    /* Days from civil (proleptic Gregorian), avoiding timegm's time_t limits. */
    int64_t y = (int64_t)tm.tm_year + 1900, m = tm.tm_mon + 1, d = tm.tm_mday;
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468;
    *out = days * 86400 + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
    return VEIL_OK;
}

static enum veil_attest_reason map_x509_err(int e)
{
    switch (e) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return VEIL_ATTEST_CERT_EXPIRED;
    case X509_V_ERR_CERT_REVOKED:
        return VEIL_ATTEST_REVOKED;
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
        return VEIL_ATTEST_CRL_EXPIRED;
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
        return VEIL_ATTEST_CRL_INVALID;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        return VEIL_ATTEST_ROOT_UNTRUSTED;
    default:
        return VEIL_ATTEST_CHAIN_INVALID;
    }
}

/* Accepts CRLs past nextUpdate when the caller relaxed CRL freshness; nothing else. */
static int cb_ignore_crl_expiry(int ok, X509_STORE_CTX *ctx)
{
    if (!ok && X509_STORE_CTX_get_error(ctx) == X509_V_ERR_CRL_HAS_EXPIRED)
        return 1;
    return ok;
}

veil_err veil__attest_chain_verify(const struct veil_chain_req *req,
                                   enum veil_attest_reason *reason, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    STACK_OF(X509) *chain = NULL;
    bool have_crl = false;
    *reason = VEIL_ATTEST_CHAIN_INVALID;
    if (req->root == NULL) {
        *reason = VEIL_ATTEST_ROOT_UNTRUSTED;
        rc = veil_errf(eb, VEIL_E_AUTH, "no pinned root loaded for this chain");
        goto out;
    }
    if ((store = X509_STORE_new()) == NULL || (ctx = X509_STORE_CTX_new()) == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    if (X509_STORE_add_cert(store, req->root) != 1) {
        rc = VEIL_E_CRYPTO;
        goto out;
    }
    for (size_t i = 0; i < 2; i++) {
        if (req->crls[i] == NULL)
            continue;
        if (X509_STORE_add_crl(store, req->crls[i]) != 1) {
            rc = VEIL_E_CRYPTO;
            goto out;
        }
        have_crl = true;
    }
    if (req->ignore_crl_expiry)
        X509_STORE_set_verify_cb(store, cb_ignore_crl_expiry);
    if (X509_STORE_CTX_init(ctx, store, req->leaf, req->untrusted) != 1) {
        rc = VEIL_E_CRYPTO;
        goto out;
    }
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    unsigned long flags = X509_V_FLAG_USE_CHECK_TIME | X509_V_FLAG_CHECK_SS_SIGNATURE;
    if (have_crl)
        flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
    X509_VERIFY_PARAM_set_flags(param, flags);
    X509_VERIFY_PARAM_set_time(param, (time_t)req->now);
    if (X509_verify_cert(ctx) != 1) {
        int e = X509_STORE_CTX_get_error(ctx);
        *reason = map_x509_err(e);
        ERR_clear_error();
        rc = veil_errf(eb, VEIL_E_AUTH, "%s (depth %d)", X509_verify_cert_error_string(e),
                       X509_STORE_CTX_get_error_depth(ctx));
        goto out;
    }
    chain = X509_STORE_CTX_get1_chain(ctx);
    if (chain == NULL || sk_X509_num(chain) < 1 ||
        X509_cmp(sk_X509_value(chain, sk_X509_num(chain) - 1), req->root) != 0) {
        *reason = VEIL_ATTEST_ROOT_UNTRUSTED;
        rc = veil_errf(eb, VEIL_E_AUTH, "chain does not end at the pinned root");
        goto out;
    }
    *reason = VEIL_ATTEST_OK;
    rc = VEIL_OK;
out:
    sk_X509_pop_free(chain, X509_free);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return rc;
}

veil_err veil__attest_ecdsa_verify_raw(EVP_PKEY *key, const EVP_MD *md, struct veil_span msg,
                                       struct veil_span rs)
{
    veil_err rc = VEIL_E_INTERNAL;
    ECDSA_SIG *sig = NULL;
    BIGNUM *r = NULL, *s = NULL;
    unsigned char *der = NULL;
    EVP_MD_CTX *mctx = NULL;
    if (rs.len == 0 || rs.len % 2 != 0 || rs.len > 132) {
        rc = VEIL_E_AUTH;
        goto out;
    }
    size_t h = rs.len / 2;
    r = BN_bin2bn(rs.p, (int)h, NULL);
    s = BN_bin2bn(rs.p + h, (int)h, NULL);
    if (r == NULL || s == NULL || (sig = ECDSA_SIG_new()) == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    if (ECDSA_SIG_set0(sig, r, s) != 1) {
        rc = VEIL_E_CRYPTO;
        goto out;
    }
    r = s = NULL;
    int dlen = i2d_ECDSA_SIG(sig, &der);
    if (dlen <= 0) {
        rc = VEIL_E_CRYPTO;
        goto out;
    }
    if ((mctx = EVP_MD_CTX_new()) == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    if (EVP_DigestVerifyInit(mctx, NULL, md, NULL, key) != 1) {
        rc = VEIL_E_AUTH; /* e.g. a key of the wrong type */
        goto out;
    }
    rc = EVP_DigestVerify(mctx, der, (size_t)dlen, msg.p, msg.len) == 1 ? VEIL_OK : VEIL_E_AUTH;
out:
    ERR_clear_error();
    EVP_MD_CTX_free(mctx);
    OPENSSL_free(der);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return rc;
}

veil_err veil__attest_p256_from_raw(struct veil_span xy, EVP_PKEY **out)
{
    veil_err rc = VEIL_E_INTERNAL;
    EVP_PKEY_CTX *pctx = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY *pkey = NULL;
    uint8_t pt[65];
    *out = NULL;
    if (xy.len != 64)
        return VEIL_E_FORMAT;
    pt[0] = 0x04;
    memcpy(pt + 1, xy.p, 64);
    if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt)) != 1 ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    if ((pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL) {
        rc = VEIL_E_CRYPTO;
        goto out;
    }
    if (EVP_PKEY_fromdata_init(pctx) != 1 ||
        EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        rc = VEIL_E_FORMAT; /* not a point on the curve */
        goto out;
    }
    *out = pkey;
    pkey = NULL;
    rc = VEIL_OK;
out:
    ERR_clear_error();
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return rc;
}

/* ---- Roots ---- */

veil_err veil_attest_roots_new(struct veil_attest_roots **out)
{
    *out = veil_calloc(1, sizeof(**out));
    return *out != NULL ? VEIL_OK : VEIL_E_NOMEM;
}

void veil_attest_roots_free(struct veil_attest_roots *roots)
{
    if (roots == NULL)
        return;
    for (size_t i = 0; i < VEIL_ROOT_COUNT; i++)
        X509_free(roots->root[i]);
    for (size_t i = 0; i < roots->sim_key_count; i++)
        EVP_PKEY_free(roots->sim_keys[i]);
    veil_free(roots);
}

veil_err veil_attest_roots_add_cert(struct veil_attest_roots *roots, struct veil_span cert,
                                    struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    STACK_OF(X509) *sk = NULL;
    unsigned char *der = NULL;
    if ((rc = veil__attest_certs_parse(cert, &sk, eb)) != VEIL_OK)
        goto out;
    if (sk_X509_num(sk) != 1) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "a root file must hold exactly one certificate");
        goto out;
    }
    X509 *x = sk_X509_value(sk, 0);
    int dlen = i2d_X509(x, &der);
    if (dlen <= 0) {
        rc = VEIL_E_CRYPTO;
        goto out;
    }
    uint8_t fpr[32];
    char hex[65];
    if ((rc = veil__attest_sha256(veil_span_make(der, (size_t)dlen), fpr)) != VEIL_OK)
        goto out;
    veil_hex_encode(fpr, 32, hex);
    for (size_t i = 0; i < VEIL_ROOT_COUNT; i++) {
        if (strcmp(hex, pinned_fpr[i]) != 0)
            continue;
        if (roots->root[i] == NULL) {
            if (X509_up_ref(x) != 1) {
                rc = VEIL_E_CRYPTO;
                goto out;
            }
            roots->root[i] = x;
        }
        rc = VEIL_OK;
        goto out;
    }
    rc = veil_errf(eb, VEIL_E_AUTH, "root certificate with SHA-256 %s is not a pinned root", hex);
out:
    OPENSSL_free(der);
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

veil_err veil_attest_roots_add_sim_key(struct veil_attest_roots *roots, struct veil_span pem,
                                       struct veil_errbuf *eb)
{
    if (roots->sim_key_count >= VEIL_ATTEST_MAX_SIM_KEYS)
        return veil_errf(eb, VEIL_E_LIMIT, "too many sim keys");
    if (pem.len == 0 || pem.len > INT32_MAX)
        return veil_errf(eb, VEIL_E_FORMAT, "empty sim key");
    BIO *bio = BIO_new_mem_buf(pem.p, (int)pem.len);
    if (bio == NULL)
        return VEIL_E_NOMEM;
    EVP_PKEY *k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ERR_clear_error();
    if (k == NULL || EVP_PKEY_get_id(k) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(k);
        return veil_errf(eb, VEIL_E_FORMAT, "sim key is not an Ed25519 public key in PEM");
    }
    roots->sim_keys[roots->sim_key_count++] = k;
    return VEIL_OK;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

veil_err veil_attest_roots_load_dir(struct veil_attest_roots *roots, const char *dir,
                                    struct veil_errbuf *eb)
{
    static const char *const names[] = {"intel_sgx_root_ca.der", "intel_sgx_root_ca.pem",
                                        "amd_ark_milan.pem", "amd_ark_genoa.pem",
                                        "amd_ark_turin.pem"};
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_buf b;
    DIR *d = NULL;
    size_t loaded = 0;
    char path[4096];
    veil_buf_init(&b, VEIL_ATTEST_MAX_COLLATERAL);
    if ((d = opendir(dir)) == NULL) {
        rc = veil_errf(eb, VEIL_E_NOTFOUND, "cannot open roots directory %s", dir);
        goto out;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        bool is_root = false, is_sim = false;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (strcmp(e->d_name, names[i]) == 0)
                is_root = true;
        if (strncmp(e->d_name, "sim_", 4) == 0 && ends_with(e->d_name, ".pub.pem"))
            is_sim = true;
        if (!is_root && !is_sim)
            continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= sizeof(path)) {
            rc = veil_errf(eb, VEIL_E_LIMIT, "path too long");
            goto out;
        }
        veil_buf_reset(&b);
        if ((rc = veil_file_read_all(path, b.max, &b, eb)) != VEIL_OK)
            goto out;
        rc = is_root ? veil_attest_roots_add_cert(roots, veil_buf_span(&b), eb)
                     : veil_attest_roots_add_sim_key(roots, veil_buf_span(&b), eb);
        if (rc != VEIL_OK) {
            rc = veil_err_prefix(eb, rc, "%s", path);
            goto out;
        }
        loaded++;
    }
    if (loaded == 0) {
        rc = veil_errf(eb, VEIL_E_NOTFOUND, "no root or sim key in %s", dir);
        goto out;
    }
    rc = VEIL_OK;
out:
    if (d != NULL)
        closedir(d);
    veil_buf_release(&b);
    return rc;
}
