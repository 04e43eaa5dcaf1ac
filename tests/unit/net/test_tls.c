#include "harness.h"
#include "veil/net.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* A fresh P-256 key and self-signed certificate as PEM. */
static void make_identity(struct veil_buf *cert, struct veil_buf *key)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pk);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"t", -1, -1, 0);
    X509_set_issuer_name(x, nm);
    X509_sign(x, pk, EVP_sha256());
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    if (veil_buf_append(cert, p, (size_t)n) != VEIL_OK)
        abort();
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL);
    n = BIO_get_mem_data(b, &p);
    if (veil_buf_append(key, p, (size_t)n) != VEIL_OK)
        abort();
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(pk);
}

TEST(context_from_memory_pem)
{
    struct veil_buf c, k;
    veil_buf_init(&c, 1 << 16);
    veil_buf_init(&k, 1 << 16);
    make_identity(&c, &k);
    struct veil_tls_config cfg = {
        {veil_buf_span(&c), NULL}, {veil_buf_span(&k), NULL}, {{NULL, 0}, NULL}, false};
    struct veil_tls_ctx *ctx = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(veil_tls_ctx_new(&cfg, "h2", &ctx, &eb));
    veil_tls_ctx_free(ctx);
    /* Mutual TLS with the same self-signed cert as the CA. */
    cfg.client_ca.pem = veil_buf_span(&c);
    cfg.client_verify = true;
    ASSERT_OK(veil_tls_ctx_new(&cfg, "http/1.1", &ctx, &eb));
    veil_tls_ctx_free(ctx);
    veil_buf_release(&c);
    veil_buf_release(&k);
}

TEST(context_errors)
{
    struct veil_buf c1, k1, c2, k2;
    veil_buf_init(&c1, 1 << 16);
    veil_buf_init(&k1, 1 << 16);
    veil_buf_init(&c2, 1 << 16);
    veil_buf_init(&k2, 1 << 16);
    make_identity(&c1, &k1);
    make_identity(&c2, &k2);
    struct veil_tls_ctx *ctx = NULL;
    struct veil_errbuf eb = {{0}};
    struct veil_tls_config cfg = {
        {veil_buf_span(&c1), NULL}, {veil_buf_span(&k2), NULL}, {{NULL, 0}, NULL}, false};
    ASSERT_ERR(veil_tls_ctx_new(&cfg, "h2", &ctx, &eb), VEIL_E_MISMATCH);
    ASSERT_TRUE(ctx == NULL);
    cfg.key.pem = veil_span_from_str("not a key");
    ASSERT_ERR(veil_tls_ctx_new(&cfg, "h2", &ctx, &eb), VEIL_E_FORMAT);
    cfg.key.pem = veil_buf_span(&k1);
    cfg.cert.pem = veil_span_from_str("-----BEGIN CERTIFICATE-----\nAAAA\n");
    ASSERT_ERR(veil_tls_ctx_new(&cfg, "h2", &ctx, &eb), VEIL_E_FORMAT);
    cfg.cert.pem = veil_buf_span(&c1);
    cfg.client_verify = true;
    ASSERT_ERR(veil_tls_ctx_new(&cfg, "h2", &ctx, &eb), VEIL_E_INVALID);
    cfg.client_ca.pem = veil_span_from_str("junk");
    ASSERT_ERR(veil_tls_ctx_new(&cfg, "h2", &ctx, &eb), VEIL_E_FORMAT);
    cfg.client_ca.pem = veil_span_make(NULL, 0);
    cfg.client_verify = false;
    cfg.cert.pem = veil_span_make(NULL, 0);
    cfg.cert.path = "/nonexistent/cert.pem";
    ASSERT_ERR(veil_tls_ctx_new(&cfg, "h2", &ctx, &eb), VEIL_E_NOTFOUND);
    ASSERT_STR_CONTAINS(eb.msg, "/nonexistent/cert.pem");
    veil_buf_release(&c1);
    veil_buf_release(&k1);
    veil_buf_release(&c2);
    veil_buf_release(&k2);
}

RUN_TESTS()
