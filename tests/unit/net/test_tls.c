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

/* A client SSL for the handshake tests: offers ALPN alpn, verifies nothing (tests read the
 * certificate it got). */
static SSL *test_client(SSL_CTX **cctx, const char *alpn)
{
    *cctx = SSL_CTX_new(TLS_client_method());
    unsigned char proto[17];
    size_t n = strlen(alpn);
    proto[0] = (unsigned char)n;
    memcpy(proto + 1, alpn, n);
    if (*cctx == NULL || SSL_CTX_set_alpn_protos(*cctx, proto, (unsigned)(n + 1)) != 0)
        abort();
    return SSL_new(*cctx);
}

/* Drives a client and a server SSL joined by a BIO pair until both finish the handshake. */
static bool pair_handshake(SSL *cli, SSL *srv)
{
    BIO *a = NULL, *b = NULL;
    if (BIO_new_bio_pair(&a, 0, &b, 0) != 1)
        abort();
    SSL_set_bio(cli, a, a);
    SSL_set_bio(srv, b, b);
    SSL_set_connect_state(cli);
    SSL_set_accept_state(srv);
    int rc = 0, rs = 0;
    for (int i = 0; i < 100 && (rc != 1 || rs != 1); i++) {
        if (rc != 1)
            rc = SSL_do_handshake(cli);
        if (rs != 1)
            rs = SSL_do_handshake(srv);
    }
    return rc == 1 && rs == 1;
}

/* Sends msg from one end and reads it at the other: the connection still carries data. */
static bool pair_echo(SSL *from, SSL *to, const char *msg)
{
    char got[64] = "";
    if (SSL_write(from, msg, (int)strlen(msg)) != (int)strlen(msg))
        return false;
    int n = SSL_read(to, got, sizeof(got) - 1);
    return n == (int)strlen(msg) && memcmp(got, msg, strlen(msg)) == 0;
}

static X509 *cert_of(struct veil_buf *pem)
{
    BIO *b = BIO_new_mem_buf(pem->p, (int)pem->len);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    return x;
}

/*
 * Renewal swaps a context's identity for new handshakes only: a connection made before the
 * swap keeps its certificate and carries data after the old context is gone, a handshake after
 * it gets the new certificate with ALPN still selected, and a context made for another ALPN
 * protocol is refused.
 */
TEST(swap_changes_new_handshakes_only)
{
    struct veil_buf c1, k1, c2, k2;
    veil_buf_init(&c1, 1 << 16);
    veil_buf_init(&k1, 1 << 16);
    veil_buf_init(&c2, 1 << 16);
    veil_buf_init(&k2, 1 << 16);
    make_identity(&c1, &k1);
    make_identity(&c2, &k2);
    struct veil_errbuf eb = {{0}};
    struct veil_tls_ctx *ctx = NULL, *fresh = NULL, *other = NULL;
    struct veil_tls_config cfg = {
        {veil_buf_span(&c1), NULL}, {veil_buf_span(&k1), NULL}, {{NULL, 0}, NULL}, false};
    ASSERT_OK(veil_tls_ctx_new(&cfg, "h2", &ctx, &eb));
    int64_t now = veil_time_now();
    ASSERT_TRUE(veil_tls_ctx_not_after(ctx) >= now + 3590 &&
                veil_tls_ctx_not_after(ctx) <= now + 3600);
    X509 *x1 = cert_of(&c1), *x2 = cert_of(&c2);

    SSL_CTX *cctx_old = NULL, *cctx_new = NULL;
    SSL *cli_old = test_client(&cctx_old, "h2"), *srv_old = SSL_new(ctx->ssl);
    ASSERT_TRUE(pair_handshake(cli_old, srv_old));
    X509 *peer = SSL_get1_peer_certificate(cli_old);
    ASSERT_TRUE(peer != NULL && X509_cmp(peer, x1) == 0);
    X509_free(peer);

    cfg.cert.pem = veil_buf_span(&c2);
    cfg.key.pem = veil_buf_span(&k2);
    ASSERT_OK(veil_tls_ctx_new(&cfg, "http/1.1", &other, &eb));
    ASSERT_ERR(veil_tls_ctx_swap(ctx, other), VEIL_E_INVALID); /* frees other */
    ASSERT_TRUE(X509_cmp(SSL_CTX_get0_certificate(ctx->ssl), x1) == 0);
    ASSERT_OK(veil_tls_ctx_new(&cfg, "h2", &fresh, &eb));
    ASSERT_OK(veil_tls_ctx_swap(ctx, fresh)); /* frees fresh and drops ctx's old reference */

    /* The old connection, whose context now lives only through it, still works. */
    ASSERT_TRUE(pair_echo(cli_old, srv_old, "before the swap, after"));
    ASSERT_TRUE(pair_echo(srv_old, cli_old, "and back"));
    /* A new handshake gets the new certificate, and ALPN through the moved callback. */
    SSL *cli_new = test_client(&cctx_new, "h2"), *srv_new = SSL_new(ctx->ssl);
    ASSERT_TRUE(pair_handshake(cli_new, srv_new));
    peer = SSL_get1_peer_certificate(cli_new);
    ASSERT_TRUE(peer != NULL && X509_cmp(peer, x2) == 0);
    X509_free(peer);
    const unsigned char *sel = NULL;
    unsigned sel_len = 0;
    SSL_get0_alpn_selected(cli_new, &sel, &sel_len);
    ASSERT_TRUE(sel_len == 2 && memcmp(sel, "h2", 2) == 0);
    ASSERT_TRUE(pair_echo(cli_new, srv_new, "new"));

    SSL_free(cli_old);
    SSL_free(srv_old);
    SSL_free(cli_new);
    SSL_free(srv_new);
    SSL_CTX_free(cctx_old);
    SSL_CTX_free(cctx_new);
    X509_free(x1);
    X509_free(x2);
    veil_tls_ctx_free(ctx);
    veil_buf_release(&c1);
    veil_buf_release(&k1);
    veil_buf_release(&c2);
    veil_buf_release(&k2);
}

RUN_TESTS()
