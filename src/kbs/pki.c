/*
 * Certificate authority helpers for the broker (P-256 keys, X.509 v3 certificates with
 * explicit constraints and key usages) and sealed blobs: small files encrypted under the
 * broker's master key with AES-256-GCM, the label bound as associated data so that one blob
 * cannot be passed off as another.
 */
#include "kbs_int.h"

#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <string.h>

#define BLOB_MAGIC "VKB1"

veil_err veil__kbs_new_key(EVP_PKEY **out)
{
    *out = EVP_EC_gen("P-256");
    return *out != NULL ? VEIL_OK : VEIL_E_CRYPTO;
}

static bool add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return false;
    bool ok = X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

static bool set_serial(X509 *cert)
{
    uint8_t raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return false;
    raw[0] &= 0x7f; /* positive */
    BIGNUM *bn = BN_bin2bn(raw, sizeof(raw), NULL);
    bool ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
    BN_free(bn);
    return ok;
}

static bool set_name(X509_NAME *name, const char *cn)
{
    return X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"Veil", -1,
                                      -1, 0) == 1 &&
           X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                      0) == 1;
}

veil_err veil__kbs_make_ca(EVP_PKEY *key, const char *cn, X509 **out)
{
    X509 *c = X509_new();
    *out = NULL;
    bool ok =
        c != NULL && X509_set_version(c, 2) == 1 && set_serial(c) &&
        X509_gmtime_adj(X509_getm_notBefore(c), -300) != NULL &&
        X509_gmtime_adj(X509_getm_notAfter(c), 10L * 365 * 86400) != NULL &&
        set_name(X509_get_subject_name(c), cn) &&
        X509_set_issuer_name(c, X509_get_subject_name(c)) == 1 && X509_set_pubkey(c, key) == 1 &&
        add_ext(c, c, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
        add_ext(c, c, NID_key_usage, "critical,keyCertSign,cRLSign") &&
        add_ext(c, c, NID_subject_key_identifier, "hash") && X509_sign(c, key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(c);
        return VEIL_E_CRYPTO;
    }
    *out = c;
    return VEIL_OK;
}

static bool looks_like_ip(const char *s)
{
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(s);
    ASN1_OCTET_STRING_free(ip);
    return ip != NULL;
}

static const char *eku_of(enum veil__kbs_cert_kind kind)
{
    switch (kind) {
    case VEIL_KBS_CERT_BROKER:
        return "serverAuth," VEIL__KBS_OID_BROKER;
    case VEIL_KBS_CERT_SERVING:
        return "serverAuth," VEIL__KBS_OID_SERVING;
    case VEIL_KBS_CERT_SERVER:
        return "serverAuth";
    default:
        return "clientAuth";
    }
}

bool veil__kbs_cert_has_eku(X509 *cert, const char *oid)
{
    bool found = false;
    ASN1_OBJECT *want = OBJ_txt2obj(oid, 1);
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(cert, NID_ext_key_usage, NULL, NULL);
    for (int i = 0; want != NULL && eku != NULL && i < sk_ASN1_OBJECT_num(eku) && !found; i++)
        found = OBJ_cmp(sk_ASN1_OBJECT_value(eku, i), want) == 0;
    EXTENDED_KEY_USAGE_free(eku);
    ASN1_OBJECT_free(want);
    return found;
}

veil_err veil__kbs_issue(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *subject_key, const char *cn,
                         const char *const *san, int64_t validity_s, enum veil__kbs_cert_kind kind,
                         X509 **out)
{
    veil_err rc = VEIL_E_CRYPTO;
    X509 *c = X509_new();
    struct veil_buf sans;
    veil_buf_init(&sans, 8192);
    *out = NULL;
    for (size_t i = 0; san != NULL && san[i] != NULL; i++) {
        /* Exact names only: no wildcards, separators, spaces or control characters. */
        if (!veil_attest_host_name_ok(san[i], strlen(san[i]))) {
            rc = VEIL_E_INVALID;
            goto out;
        }
        if (veil_buf_appendf(&sans, "%s%s:%s", sans.len ? "," : "",
                             looks_like_ip(san[i]) ? "IP" : "DNS", san[i]) != VEIL_OK) {
            rc = VEIL_E_LIMIT;
            goto out;
        }
    }
    bool ok = c != NULL && X509_set_version(c, 2) == 1 && set_serial(c) &&
              X509_gmtime_adj(X509_getm_notBefore(c), -300) != NULL &&
              X509_gmtime_adj(X509_getm_notAfter(c), (long)validity_s) != NULL &&
              set_name(X509_get_subject_name(c), cn) &&
              X509_set_issuer_name(c, X509_get_subject_name(ca)) == 1 &&
              X509_set_pubkey(c, subject_key) == 1 &&
              add_ext(c, ca, NID_basic_constraints, "critical,CA:FALSE") &&
              add_ext(c, ca, NID_key_usage, "critical,digitalSignature,keyAgreement") &&
              add_ext(c, ca, NID_ext_key_usage, eku_of(kind)) &&
              add_ext(c, ca, NID_subject_key_identifier, "hash") &&
              add_ext(c, ca, NID_authority_key_identifier, "keyid:always") &&
              (sans.len == 0 || add_ext(c, ca, NID_subject_alt_name, (const char *)sans.p)) &&
              X509_sign(c, ca_key, EVP_sha256()) > 0;
    if (!ok)
        goto out;
    *out = c;
    c = NULL;
    rc = VEIL_OK;
out:
    X509_free(c);
    veil_buf_release(&sans);
    return rc;
}

static veil_err bio_to_buf(BIO *bio, struct veil_buf *b)
{
    char *p = NULL;
    long n = BIO_get_mem_data(bio, &p);
    if (n <= 0)
        return VEIL_E_CRYPTO;
    return veil_buf_append(b, p, (size_t)n);
}

veil_err veil__kbs_cert_pem(X509 *cert, struct veil_buf *b)
{
    BIO *bio = BIO_new(BIO_s_mem());
    veil_err rc = VEIL_E_CRYPTO;
    if (bio != NULL && PEM_write_bio_X509(bio, cert) == 1)
        rc = bio_to_buf(bio, b);
    BIO_free(bio);
    return rc;
}

veil_err veil__kbs_key_pem(EVP_PKEY *key, struct veil_buf *b)
{
    BIO *bio = BIO_new(BIO_s_secmem());
    veil_err rc = VEIL_E_CRYPTO;
    if (bio != NULL && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1)
        rc = bio_to_buf(bio, b);
    BIO_free(bio);
    return rc;
}

veil_err veil__kbs_parse_cert(struct veil_span pem, X509 **out)
{
    *out = NULL;
    if (pem.len > INT32_MAX)
        return VEIL_E_LIMIT;
    BIO *bio = BIO_new_mem_buf(pem.p, (int)pem.len);
    if (bio != NULL)
        *out = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    return *out != NULL ? VEIL_OK : VEIL_E_FORMAT;
}

/* An ASN1_TIME as Unix seconds: its distance from the epoch, which OpenSSL computes exactly. */
static veil_err asn1_time_unix(const ASN1_TIME *t, ASN1_TIME *epoch, int64_t *out)
{
    int days = 0, secs = 0;
    if (t == NULL || ASN1_TIME_diff(&days, &secs, epoch, t) != 1)
        return VEIL_E_FORMAT;
    *out = (int64_t)days * 86400 + secs;
    return VEIL_OK;
}

veil_err veil__kbs_cert_dates(const X509 *cert, int64_t *not_before, int64_t *not_after,
                              char *serial, size_t serial_cap)
{
    veil_err rc = VEIL_E_FORMAT;
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    BIGNUM *bn = NULL;
    char *hex = NULL;
    *not_before = *not_after = 0;
    serial[0] = '\0';
    if (epoch == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    if ((rc = asn1_time_unix(X509_get0_notBefore(cert), epoch, not_before)) != VEIL_OK ||
        (rc = asn1_time_unix(X509_get0_notAfter(cert), epoch, not_after)) != VEIL_OK)
        goto out;
    rc = VEIL_E_FORMAT;
    if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL)) == NULL ||
        (hex = BN_bn2hex(bn)) == NULL)
        goto out;
    if (strlen(hex) >= serial_cap) {
        rc = VEIL_E_LIMIT;
        goto out;
    }
    memcpy(serial, hex, strlen(hex) + 1);
    rc = VEIL_OK;
out:
    OPENSSL_free(hex);
    BN_free(bn);
    ASN1_TIME_free(epoch);
    return rc;
}

veil_err veil__kbs_parse_key(struct veil_span pem, EVP_PKEY **out)
{
    *out = NULL;
    if (pem.len > INT32_MAX)
        return VEIL_E_LIMIT;
    BIO *bio = BIO_new_mem_buf(pem.p, (int)pem.len);
    if (bio != NULL)
        *out = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    return *out != NULL ? VEIL_OK : VEIL_E_FORMAT;
}

static veil_err gcm(bool enc, const uint8_t key[32], const uint8_t nonce[12], const char *label,
                    const uint8_t *in, size_t n, uint8_t *out, uint8_t tag[16])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0;
    bool ok = c != NULL && n <= INT32_MAX &&
              EVP_CipherInit_ex2(c, EVP_aes_256_gcm(), key, nonce, enc, NULL) == 1 &&
              EVP_CipherUpdate(c, NULL, &len, (const uint8_t *)label, (int)strlen(label)) == 1 &&
              (n == 0 || EVP_CipherUpdate(c, out, &len, in, (int)n) == 1);
    veil_err rc = ok ? VEIL_OK : VEIL_E_CRYPTO;
    if (ok && enc) {
        if (EVP_CipherFinal_ex(c, out + n, &len) != 1 ||
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
            rc = VEIL_E_CRYPTO;
    } else if (ok) {
        if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1 ||
            EVP_CipherFinal_ex(c, out + n, &len) != 1)
            rc = VEIL_E_AUTH;
    }
    EVP_CIPHER_CTX_free(c);
    return rc;
}

veil_err veil__kbs_blob_seal(const uint8_t master[32], const char *label, struct veil_span plain,
                             struct veil_buf *out)
{
    uint8_t nonce[12];
    size_t start = out->len;
    veil_err rc = veil_random_bytes(nonce, sizeof(nonce));
    if (rc == VEIL_OK)
        rc = veil_buf_reserve(out, 4 + 12 + plain.len + 16);
    if (rc != VEIL_OK)
        return rc;
    memcpy(out->p + start, BLOB_MAGIC, 4);
    memcpy(out->p + start + 4, nonce, 12);
    uint8_t *ct = out->p + start + 16;
    rc = gcm(true, master, nonce, label, plain.p, plain.len, ct, ct + plain.len);
    if (rc == VEIL_OK)
        out->len += 4 + 12 + plain.len + 16;
    return rc;
}

veil_err veil__kbs_blob_open(const uint8_t master[32], const char *label, struct veil_span blob,
                             struct veil_buf *out_secret)
{
    struct veil_span magic, nonce;
    if (veil_span_get_bytes(&blob, 4, &magic) != VEIL_OK || !veil_span_eq_str(magic, BLOB_MAGIC) ||
        veil_span_get_bytes(&blob, 12, &nonce) != VEIL_OK || blob.len < 16)
        return VEIL_E_FORMAT;
    size_t n = blob.len - 16;
    veil_err rc = veil_buf_reserve(out_secret, n);
    if (rc != VEIL_OK)
        return rc;
    uint8_t tag[16];
    memcpy(tag, blob.p + n, 16);
    rc = gcm(false, master, nonce.p, label, blob.p, n, out_secret->p + out_secret->len, tag);
    if (rc != VEIL_OK) {
        veil_memzero(out_secret->p + out_secret->len, n);
        return rc;
    }
    out_secret->len += n;
    out_secret->p[out_secret->len] = 0;
    return VEIL_OK;
}

veil_err veil__kbs_blob_load(const uint8_t master[32], const char *label, const char *path,
                             struct veil_buf *out_secret, struct veil_errbuf *eb)
{
    struct veil_buf raw;
    veil_buf_init(&raw, VEIL_LIMIT_CONFIG_FILE);
    veil_err rc = veil_file_read_all(path, raw.max, &raw, eb);
    if (rc == VEIL_OK) {
        rc = veil__kbs_blob_open(master, label, veil_buf_span(&raw), out_secret);
        if (rc == VEIL_E_AUTH)
            veil_errf(eb, rc, "%s: does not decrypt under the master key (wrong key or tampered)",
                      path);
        else if (rc != VEIL_OK)
            veil_errf(eb, rc, "%s: not a sealed broker file", path);
    }
    veil_buf_release(&raw);
    return rc;
}

veil_err veil__kbs_blob_store(const uint8_t master[32], const char *label, const char *path,
                              struct veil_span plain, struct veil_errbuf *eb)
{
    struct veil_buf out;
    veil_buf_init(&out, VEIL_LIMIT_CONFIG_FILE);
    veil_err rc = veil__kbs_blob_seal(master, label, plain, &out);
    if (rc != VEIL_OK)
        rc = veil_errf(eb, rc, "%s: cannot seal: %s", path, veil_err_str(rc));
    else
        rc = veil_file_write_atomic(path, veil_buf_span(&out), 0600, VEIL_ATOMIC_REPLACE, eb);
    veil_buf_release(&out);
    return rc;
}
