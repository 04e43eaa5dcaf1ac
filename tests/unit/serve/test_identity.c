/*
 * Renewing the server's TLS identity in one process (src/serve/identity.c): a TLS server on
 * free ports, clients over real sockets, and veil_serve_set_tls_identity under them. A kept
 * connection keeps its certificate and keeps answering; new handshakes on both ports get the
 * new one; an expired certificate makes the server not ready, with the reason in /readyz.
 */
#include "../engine/model_builder.h"
#include "harness.h"

#include "veil/serve.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void *serve_main(void *arg)
{
    if (veil_serve_run(arg) != VEIL_OK)
        abort();
    return NULL;
}

/* A self-signed P-256 identity valid from from_s to to_s seconds from now, as PEM. */
static X509 *make_identity(long from_s, long to_s, struct veil_buf *cert, struct veil_buf *key)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    static long serial = 1;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), from_s);
    X509_gmtime_adj(X509_getm_notAfter(x), to_s);
    X509_set_pubkey(x, pk);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, nm);
    X509_sign(x, pk, EVP_sha256());
    BIO *b = BIO_new(BIO_s_mem());
    char *p = NULL;
    PEM_write_bio_X509(b, x);
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
    EVP_PKEY_free(pk);
    return x;
}

struct client {
    int fd;
    SSL *ssl;
};

/* Connects to 127.0.0.1:port and completes a TLS handshake offering ALPN alpn. */
static bool client_open(SSL_CTX *cctx, uint16_t port, const char *alpn, struct client *c)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    unsigned char proto[17];
    size_t n = strlen(alpn);
    proto[0] = (unsigned char)n;
    memcpy(proto + 1, alpn, n);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    c->ssl = NULL;
    if (c->fd < 0 || setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return false;
    c->ssl = SSL_new(cctx);
    return c->ssl != NULL && SSL_set_alpn_protos(c->ssl, proto, (unsigned)(n + 1)) == 0 &&
           SSL_set_fd(c->ssl, c->fd) == 1 && SSL_connect(c->ssl) == 1;
}

static void client_close(struct client *c)
{
    SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->ssl = NULL;
}

/* Whether the server presented cert x on this connection. */
static bool presented(const struct client *c, X509 *x)
{
    X509 *peer = SSL_get1_peer_certificate(c->ssl);
    bool same = peer != NULL && X509_cmp(peer, x) == 0;
    X509_free(peer);
    return same;
}

/* Sends GET path (kept alive) and reads one response head and body; returns the status. */
static int get(struct client *c, const char *path, char *body, size_t cap)
{
    char req[256], buf[8192];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", path);
    if (SSL_write(c->ssl, req, n) != n)
        return -1;
    size_t got = 0;
    const char *end = NULL;
    long clen = -1;
    while (got + 1 < sizeof(buf)) {
        int k = SSL_read(c->ssl, buf + got, (int)(sizeof(buf) - 1 - got));
        if (k <= 0)
            return -1;
        got += (size_t)k;
        buf[got] = '\0';
        if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl = strcasestr(buf, "content-length:");
            clen = cl != NULL ? strtol(cl + 15, NULL, 10) : 0;
        }
        if (end != NULL && (long)(got - (size_t)(end + 4 - buf)) >= clen)
            break;
    }
    if (end == NULL)
        return -1;
    snprintf(body, cap, "%s", end + 4);
    return (int)strtol(buf + 9, NULL, 10);
}

/* Waits until the loop thread has swapped in a certificate with this notAfter. */
static bool wait_not_after(struct veil_serve *s, int64_t want_min, int64_t want_max)
{
    for (int i = 0; i < 500; i++) {
        int64_t na = veil_serve_tls_not_after(s);
        if (na >= want_min && na <= want_max)
            return true;
        usleep(10000);
    }
    return false;
}

/* A model repository with one Relu model "m", version 1, in a new temporary folder. */
struct repo {
    char dir[64], base[256], ver[256], file[256];
};

static void repo_make(struct repo *r)
{
    struct mb b;
    mb_init(&b);
    int64_t d[2] = {-1, 3};
    mb_input(&b, "x", 1, 2, d);
    mb_node(&b, "Relu", "x", "y", 0);
    mb_output(&b, "y", 1, 2, d);
    struct veil_buf onnx;
    mb_pack(&b, &onnx);
    mb_release(&b);
    snprintf(r->dir, sizeof(r->dir), "/tmp/veil-test-identity-XXXXXX");
    if (mkdtemp(r->dir) == NULL)
        abort();
    snprintf(r->base, sizeof(r->base), "%s/m", r->dir);
    snprintf(r->ver, sizeof(r->ver), "%s/m/1", r->dir);
    snprintf(r->file, sizeof(r->file), "%s/m/1/model.onnx", r->dir);
    FILE *f = NULL;
    if (mkdir(r->base, 0700) != 0 || mkdir(r->ver, 0700) != 0 ||
        (f = fopen(r->file, "wb")) == NULL || fwrite(onnx.p, 1, onnx.len, f) != onnx.len)
        abort();
    fclose(f);
    veil_buf_release(&onnx);
}

static void repo_remove(struct repo *r)
{
    unlink(r->file);
    rmdir(r->ver);
    rmdir(r->base);
    rmdir(r->dir);
}

/* Starts s on a thread and waits until it is ready. */
static bool start(struct veil_serve *s, pthread_t *t)
{
    pthread_create(t, NULL, serve_main, s);
    for (int i = 0; i < 3000 && !veil_serve_is_ready(s); i++)
        usleep(10000);
    return veil_serve_is_ready(s);
}

TEST(renewed_identity_reaches_new_handshakes_only)
{
    struct repo rp;
    repo_make(&rp);
    struct veil_buf c1, k1, c2, k2, c3, k3;
    veil_buf_init(&c1, 1 << 16);
    veil_buf_init_secret(&k1, 1 << 16);
    veil_buf_init(&c2, 1 << 16);
    veil_buf_init_secret(&k2, 1 << 16);
    veil_buf_init(&c3, 1 << 16);
    veil_buf_init_secret(&k3, 1 << 16);
    X509 *x1 = make_identity(-60, 3600, &c1, &k1);
    X509 *x2 = make_identity(-60, 7200, &c2, &k2);
    X509 *x3 = make_identity(-7200, -10, &c3, &k3); /* already expired */

    struct veil_serve_options so;
    memset(&so, 0, sizeof(so));
    so.host = "127.0.0.1";
    so.grpc_any_port = true;
    so.rest_any_port = true;
    so.model_name = "m";
    so.model_base_path = rp.base;
    so.file_system_poll_wait_seconds = -1;
    so.tls_cert_pem = veil_buf_span(&c1);
    so.tls_key_pem = veil_buf_span(&k1);
    struct veil_errbuf eb = {{0}};
    struct veil_serve *s = NULL;
    ASSERT_OK(veil_serve_new(&so, &s, &eb));
    int64_t now = veil_time_now();
    ASSERT_TRUE(veil_serve_tls_not_after(s) >= now + 3590 &&
                veil_serve_tls_not_after(s) <= now + 3600);
    pthread_t t;
    ASSERT_TRUE(start(s, &t));

    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    ASSERT_TRUE(cctx != NULL);
    /* Sessions are not resumed across the tests' connections: each shows its certificate. */
    SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_OFF);
    struct client kept, fresh, grpc;
    char body[4096];
    ASSERT_TRUE(client_open(cctx, veil_serve_rest_port(s), "http/1.1", &kept));
    ASSERT_TRUE(presented(&kept, x1));
    ASSERT_EQ_I64(get(&kept, "/v1/models/m", body, sizeof(body)), 200);

    /* A broken identity is refused and the current one stays. */
    ASSERT_ERR(veil_serve_set_tls_identity(s, veil_buf_span(&c1), veil_buf_span(&k2), &eb),
               VEIL_E_MISMATCH);
    ASSERT_ERR(veil_serve_set_tls_identity(s, veil_span_from_str("junk"), veil_buf_span(&k2), &eb),
               VEIL_E_FORMAT);
    ASSERT_TRUE(veil_serve_tls_not_after(s) <= now + 3600);

    ASSERT_OK(veil_serve_set_tls_identity(s, veil_buf_span(&c2), veil_buf_span(&k2), &eb));
    ASSERT_TRUE(wait_not_after(s, now + 7190, now + 7300));
    ASSERT_TRUE(client_open(cctx, veil_serve_rest_port(s), "http/1.1", &fresh));
    ASSERT_TRUE(presented(&fresh, x2));
    ASSERT_EQ_I64(get(&fresh, "/v1/models/m", body, sizeof(body)), 200);
    ASSERT_TRUE(client_open(cctx, veil_serve_grpc_port(s), "h2", &grpc));
    ASSERT_TRUE(presented(&grpc, x2));
    const unsigned char *sel = NULL;
    unsigned sel_len = 0;
    SSL_get0_alpn_selected(grpc.ssl, &sel, &sel_len);
    ASSERT_TRUE(sel_len == 2 && memcmp(sel, "h2", 2) == 0);
    client_close(&grpc);
    /* The connection from before the swap still has the first certificate and still answers. */
    ASSERT_TRUE(presented(&kept, x1));
    ASSERT_EQ_I64(get(&kept, "/v1/models/m", body, sizeof(body)), 200);
    ASSERT_STR_CONTAINS(body, "AVAILABLE");
    ASSERT_TRUE(veil_serve_is_ready(s));
    client_close(&fresh);

    /* A certificate past its notAfter: not ready, and /readyz says why. */
    ASSERT_OK(veil_serve_set_tls_identity(s, veil_buf_span(&c3), veil_buf_span(&k3), &eb));
    ASSERT_TRUE(wait_not_after(s, now - 7300, now - 5));
    ASSERT_TRUE(!veil_serve_is_ready(s));
    ASSERT_EQ_I64(get(&kept, "/readyz", body, sizeof(body)), 503);
    ASSERT_STR_CONTAINS(body, "the TLS certificate has expired and was not renewed");
    ASSERT_EQ_I64(get(&kept, "/v2/health/ready", body, sizeof(body)), 400);
    /* Renewed again: ready again. */
    ASSERT_OK(veil_serve_set_tls_identity(s, veil_buf_span(&c2), veil_buf_span(&k2), &eb));
    ASSERT_TRUE(wait_not_after(s, now + 7190, now + 7300));
    ASSERT_TRUE(veil_serve_is_ready(s));
    ASSERT_EQ_I64(get(&kept, "/readyz", body, sizeof(body)), 200);
    client_close(&kept);

    veil_serve_stop(s);
    pthread_join(t, NULL);
    veil_serve_free(s);
    SSL_CTX_free(cctx);
    X509_free(x1);
    X509_free(x2);
    X509_free(x3);
    veil_buf_release(&c1);
    veil_buf_release(&k1);
    veil_buf_release(&c2);
    veil_buf_release(&k2);
    veil_buf_release(&c3);
    veil_buf_release(&k3);
    repo_remove(&rp);
}

/* A renewed identity keeps mutual TLS: clients without a certificate from the CA are still
 * refused, those with one get the new server certificate. */
TEST(renewed_identity_keeps_client_verification)
{
    struct repo rp;
    repo_make(&rp);
    struct veil_buf ca, cak, c1, k1, c2, k2;
    veil_buf_init(&ca, 1 << 16);
    veil_buf_init_secret(&cak, 1 << 16);
    veil_buf_init(&c1, 1 << 16);
    veil_buf_init_secret(&k1, 1 << 16);
    veil_buf_init(&c2, 1 << 16);
    veil_buf_init_secret(&k2, 1 << 16);
    X509 *xca = make_identity(-60, 3600, &ca, &cak); /* the clients' CA, self-signed */
    X509 *x1 = make_identity(-60, 3600, &c1, &k1);
    X509 *x2 = make_identity(-60, 7200, &c2, &k2);
    char ca_path[] = "/tmp/veil-test-identity-ca-XXXXXX";
    int fd = mkstemp(ca_path);
    ASSERT_TRUE(fd >= 0 && write(fd, ca.p, ca.len) == (ssize_t)ca.len);
    close(fd);

    struct veil_serve_options so;
    memset(&so, 0, sizeof(so));
    so.host = "127.0.0.1";
    so.grpc_any_port = true;
    so.rest_any_port = true;
    so.model_name = "m";
    so.model_base_path = rp.base;
    so.file_system_poll_wait_seconds = -1;
    so.tls_cert_pem = veil_buf_span(&c1);
    so.tls_key_pem = veil_buf_span(&k1);
    so.tls_client_ca_path = ca_path; /* read once: the renewal does not need the file */
    so.tls_client_verify = true;
    struct veil_errbuf eb = {{0}};
    struct veil_serve *s = NULL;
    pthread_t t;
    ASSERT_OK(veil_serve_new(&so, &s, &eb));
    ASSERT_TRUE(start(s, &t));
    unlink(ca_path);
    int64_t now = veil_time_now();
    ASSERT_OK(veil_serve_set_tls_identity(s, veil_buf_span(&c2), veil_buf_span(&k2), &eb));
    ASSERT_TRUE(wait_not_after(s, now + 7190, now + 7300));

    SSL_CTX *anon = SSL_CTX_new(TLS_client_method()), *mtls = SSL_CTX_new(TLS_client_method());
    ASSERT_TRUE(anon != NULL && mtls != NULL);
    BIO *bio = BIO_new_mem_buf(cak.p, (int)cak.len);
    EVP_PKEY *ck = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ASSERT_TRUE(ck != NULL && SSL_CTX_use_certificate(mtls, xca) == 1 &&
                SSL_CTX_use_PrivateKey(mtls, ck) == 1);
    EVP_PKEY_free(ck);
    struct client c;
    char body[4096];
    /* Without a client certificate the server refuses (in TLS 1.3 the refusal arrives with the
     * first read after the handshake). */
    bool refused = !client_open(anon, veil_serve_rest_port(s), "http/1.1", &c) ||
                   get(&c, "/v1/models/m", body, sizeof(body)) < 0;
    client_close(&c);
    ASSERT_TRUE(refused);
    ASSERT_TRUE(client_open(mtls, veil_serve_rest_port(s), "http/1.1", &c));
    ASSERT_TRUE(presented(&c, x2));
    ASSERT_EQ_I64(get(&c, "/v1/models/m", body, sizeof(body)), 200);
    client_close(&c);
    ERR_clear_error();

    veil_serve_stop(s);
    pthread_join(t, NULL);
    veil_serve_free(s);
    SSL_CTX_free(anon);
    SSL_CTX_free(mtls);
    X509_free(xca);
    X509_free(x1);
    X509_free(x2);
    veil_buf_release(&ca);
    veil_buf_release(&cak);
    veil_buf_release(&c1);
    veil_buf_release(&k1);
    veil_buf_release(&c2);
    veil_buf_release(&k2);
    repo_remove(&rp);
}

TEST(plaintext_server_has_no_identity_to_renew)
{
    struct veil_serve_options so;
    memset(&so, 0, sizeof(so));
    so.host = "127.0.0.1";
    so.grpc_any_port = true;
    so.rest_any_port = true;
    so.model_name = "m";
    so.model_base_path = "/nonexistent-veil-test";
    so.file_system_poll_wait_seconds = -1;
    so.plaintext = true;
    struct veil_errbuf eb = {{0}};
    struct veil_serve *s = NULL;
    ASSERT_OK(veil_serve_new(&so, &s, &eb));
    ASSERT_EQ_I64(veil_serve_tls_not_after(s), 0);
    ASSERT_ERR(
        veil_serve_set_tls_identity(s, veil_span_from_str("x"), veil_span_from_str("y"), &eb),
        VEIL_E_STATE);
    ASSERT_STR_CONTAINS(eb.msg, "plaintext");
    veil_serve_free(s);
}

RUN_TESTS()
