#include "harness.h"
#include "net_int.h"
#include "veil/net.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* Runs a server handshake on one end of a socket pair after the client end sent `first`;
 * returns what the client end then reads (up to cap - 1 bytes, NUL-terminated). */
static size_t handshake_after(struct veil_tls_ctx *ctx, const char *first, char *got, size_t cap)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        abort();
    if (write(sv[0], first, strlen(first)) != (ssize_t)strlen(first))
        abort();
    /* The client sends nothing more: a handshake waiting for more bytes sees end-of-file. */
    (void)shutdown(sv[0], SHUT_WR);
    SSL *ssl = SSL_new(ctx->ssl);
    SSL_set_fd(ssl, sv[1]);
    ERR_clear_error();
    int r = SSL_accept(ssl);
    SSL_free(ssl);
    close(sv[1]);
    size_t n = 0;
    ssize_t k;
    while (r <= 0 && n + 1 < cap && (k = read(sv[0], got + n, cap - 1 - n)) > 0)
        n += (size_t)k;
    got[n] = '\0';
    close(sv[0]);
    ERR_clear_error();
    return n;
}

TEST(plain_http_on_tls_port_gets_400)
{
    struct veil_buf c, k;
    veil_buf_init(&c, 1 << 16);
    veil_buf_init(&k, 1 << 16);
    make_identity(&c, &k);
    struct veil_tls_config cfg = {
        {veil_buf_span(&c), NULL}, {veil_buf_span(&k), NULL}, {{NULL, 0}, NULL}, false};
    struct veil_tls_ctx *ctx = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(veil_tls_ctx_new(&cfg, "http/1.1", &ctx, &eb));
    char got[1024];
    handshake_after(ctx, "GET /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n", got, sizeof(got));
    ASSERT_TRUE(strncmp(got, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    ASSERT_STR_CONTAINS(got, "Connection: close");
    ASSERT_STR_CONTAINS(got, "use https://");
    handshake_after(ctx, "POST /v2/models/m/infer HTTP/1.1\r\n\r\n", got, sizeof(got));
    ASSERT_STR_CONTAINS(got, "400 Bad Request");
    /* Anything else that is not TLS just fails: no plaintext is written to it. */
    ASSERT_EQ_U64(handshake_after(ctx, "\x16\x03\x01\x00\x02\x01\x00", got, sizeof(got)) > 0 &&
                      strstr(got, "HTTP/1.1") != NULL,
                  0);
    ASSERT_EQ_U64(handshake_after(ctx, "hello there, this is not TLS", got, sizeof(got)) > 0 &&
                      strstr(got, "HTTP/1.1") != NULL,
                  0);
    veil_tls_ctx_free(ctx);
    veil_buf_release(&c);
    veil_buf_release(&k);
}

RUN_TESTS()
