/*
 * Server TLS contexts: TLS 1.2 and 1.3 only, certificate chain and key from PEM in memory or
 * files (the serving identity may come from a key broker, never touching disk), optional
 * client certificate verification against a CA (mutual TLS), and one ALPN protocol. A plain
 * HTTP request on a TLS port is answered with a short plain-HTTP 400 that says to use https.
 */
#include "net_int.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>
#include <sys/socket.h>

veil_err veil__net_ssl_err(struct veil_errbuf *eb, veil_err rc, const char *what)
{
    unsigned long e = ERR_get_error();
    unsigned long last = e;
    while (e != 0) {
        last = e;
        e = ERR_get_error();
    }
    (void)last;
    if (last != 0) {
        char r[200];
        ERR_error_string_n(last, r, sizeof(r));
        return veil_errf(eb, rc, "%s: %s", what, r);
    }
    return veil_errf(eb, rc, "%s", what);
}

#define PLAIN_HTTP_BODY "This port speaks TLS: use https:// for this address.\n"
#define PLAIN_HTTP_REPLY                                                                           \
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 53\r\n"               \
    "Connection: close\r\n\r\n" PLAIN_HTTP_BODY
_Static_assert(sizeof(PLAIN_HTTP_BODY) - 1 == 53, "Content-Length of the plain HTTP reply");

/*
 * A client that sends plain HTTP to a TLS port would otherwise see the connection close with no
 * word (curl: "Empty reply from server"). OpenSSL recognises an HTTP request line in place of
 * the first TLS record (SSL_R_HTTP_REQUEST); as nginx does, the request is answered with a
 * plain-HTTP 400 saying to use https, written straight to the socket while the handshake fails
 * (nothing of TLS has been sent yet), before the connection is closed. Only a handshake that
 * failed (SSL_ERROR_SSL, as its caller sees it) on that error counts, and only where the TLS
 * runs on a socket BIO; a port whose TLS runs over a filter (gRPC's) just closes.
 */
static void info_cb(const SSL *ssl, int where, int ret)
{
    if (where != SSL_CB_ACCEPT_EXIT || ret > 0 || SSL_get_error(ssl, ret) != SSL_ERROR_SSL)
        return;
    unsigned long e = ERR_peek_error();
    if (ERR_GET_LIB(e) != ERR_LIB_SSL ||
        (ERR_GET_REASON(e) != SSL_R_HTTP_REQUEST && ERR_GET_REASON(e) != SSL_R_HTTPS_PROXY_REQUEST))
        return;
    BIO *rb = SSL_get_rbio(ssl);
    if (rb == NULL || BIO_method_type(rb) != BIO_TYPE_SOCKET)
        return;
    int fd = SSL_get_fd(ssl);
    if (fd < 0)
        return;
    /* Take the rest of the request first: closing over unread bytes would reset the
     * connection and could discard the reply before the client reads it. */
    char sink[4096];
    for (int i = 0; i < 16 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
        ;
    (void)send(fd, PLAIN_HTTP_REPLY, sizeof(PLAIN_HTTP_REPLY) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)shutdown(fd, SHUT_WR);
}

/* Gets the PEM bytes of src into buf (a copy either way, so it can be wiped). */
static veil_err pem_get(const struct veil_pem_source *src, const char *what, struct veil_buf *buf,
                        struct veil_errbuf *eb)
{
    if (src->pem.len > 0)
        return veil_buf_append(buf, src->pem.p, src->pem.len);
    if (src->path == NULL || src->path[0] == '\0')
        return veil_errf(eb, VEIL_E_INVALID, "no %s given", what);
    veil_err rc = veil_file_read_all(src->path, VEIL_LIMIT_CONFIG_FILE, buf, eb);
    if (rc != VEIL_OK)
        return veil_err_prefix(eb, rc, "%s %s", what, src->path);
    return VEIL_OK;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    const struct veil_tls_ctx *ctx = arg;
    unsigned char proto[17];
    size_t n = strlen(ctx->alpn);
    proto[0] = (unsigned char)n;
    memcpy(proto + 1, ctx->alpn, n);
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;
    if (SSL_select_next_proto(&sel, &sel_len, proto, (unsigned)(n + 1), in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    /* sel points into proto (ours) or in (the client's); return the client's copy. */
    struct veil_span s = veil_span_make(in, inlen);
    while (s.len > 0) {
        uint8_t l = 0;
        struct veil_span name;
        if (veil_span_get_u8(&s, &l) != VEIL_OK || veil_span_get_bytes(&s, l, &name) != VEIL_OK)
            break;
        if (l == n && memcmp(name.p, ctx->alpn, n) == 0) {
            *out = name.p;
            *outlen = l;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

veil_err veil_tls_ctx_new(const struct veil_tls_config *cfg, const char *alpn,
                          struct veil_tls_ctx **out, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_tls_ctx *ctx = NULL;
    struct veil_buf cert, key, ca;
    BIO *bio = NULL;
    X509 *x = NULL;
    EVP_PKEY *pk = NULL;
    veil_buf_init(&cert, VEIL_LIMIT_CONFIG_FILE);
    veil_buf_init_secret(&key, VEIL_LIMIT_CONFIG_FILE);
    veil_buf_init(&ca, VEIL_LIMIT_CONFIG_FILE);
    *out = NULL;
    if (alpn == NULL || strlen(alpn) == 0 || strlen(alpn) >= sizeof(ctx->alpn)) {
        rc = veil_errf(eb, VEIL_E_INVALID, "bad ALPN protocol");
        goto out;
    }
    if ((rc = pem_get(&cfg->cert, "server certificate", &cert, eb)) != VEIL_OK ||
        (rc = pem_get(&cfg->key, "server private key", &key, eb)) != VEIL_OK)
        goto out;
    if (cfg->client_verify) {
        if ((rc = pem_get(&cfg->client_ca, "client CA certificate", &ca, eb)) != VEIL_OK)
            goto out;
    } else if (cfg->client_ca.pem.len > 0 || cfg->client_ca.path != NULL) {
        if ((rc = pem_get(&cfg->client_ca, "client CA certificate", &ca, eb)) != VEIL_OK)
            goto out;
    }
    ctx = veil_calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    memcpy(ctx->alpn, alpn, strlen(alpn) + 1);
    ERR_clear_error();
    ctx->ssl = SSL_CTX_new(TLS_server_method());
    if (ctx->ssl == NULL) {
        rc = veil__net_ssl_err(eb, VEIL_E_CRYPTO, "SSL_CTX_new");
        goto out;
    }
    if (SSL_CTX_set_min_proto_version(ctx->ssl, TLS1_2_VERSION) != 1) {
        rc = veil__net_ssl_err(eb, VEIL_E_CRYPTO, "TLS version");
        goto out;
    }
    SSL_CTX_set_options(ctx->ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                      SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx->ssl, SSL_MODE_RELEASE_BUFFERS);

    /* The certificate chain: the first PEM certificate is the leaf, the rest the chain. */
    bio = BIO_new_mem_buf(cert.p, (int)cert.len);
    if (bio == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (x == NULL) {
        rc = veil__net_ssl_err(eb, VEIL_E_FORMAT, "server certificate is not PEM");
        goto out;
    }
    if (SSL_CTX_use_certificate(ctx->ssl, x) != 1) {
        rc = veil__net_ssl_err(eb, VEIL_E_CRYPTO, "server certificate");
        goto out;
    }
    X509_free(x);
    x = NULL;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx->ssl, x) != 1) {
            rc = veil__net_ssl_err(eb, VEIL_E_CRYPTO, "certificate chain");
            goto out;
        }
        x = NULL;
    }
    ERR_clear_error();
    BIO_free(bio);
    bio = BIO_new_mem_buf(key.p, (int)key.len);
    if (bio == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (pk == NULL) {
        rc = veil__net_ssl_err(eb, VEIL_E_FORMAT, "server private key is not PEM");
        goto out;
    }
    if (SSL_CTX_use_PrivateKey(ctx->ssl, pk) != 1 || SSL_CTX_check_private_key(ctx->ssl) != 1) {
        rc = veil__net_ssl_err(eb, VEIL_E_MISMATCH,
                               "server private key does not match the certificate");
        goto out;
    }
    if (ca.len > 0) {
        X509_STORE *store = SSL_CTX_get_cert_store(ctx->ssl);
        STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
        BIO_free(bio);
        bio = BIO_new_mem_buf(ca.p, (int)ca.len);
        if (bio == NULL || names == NULL) {
            sk_X509_NAME_free(names);
            rc = VEIL_E_NOMEM;
            goto out;
        }
        size_t n = 0;
        while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
            X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(x));
            if (nm != NULL && sk_X509_NAME_push(names, nm) <= 0)
                X509_NAME_free(nm);
            if (X509_STORE_add_cert(store, x) != 1) {
                sk_X509_NAME_pop_free(names, X509_NAME_free);
                rc = veil__net_ssl_err(eb, VEIL_E_CRYPTO, "client CA certificate");
                goto out;
            }
            X509_free(x);
            x = NULL;
            n++;
        }
        ERR_clear_error();
        if (n == 0) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            rc = veil_errf(eb, VEIL_E_FORMAT, "client CA certificate is not PEM");
            goto out;
        }
        SSL_CTX_set_client_CA_list(ctx->ssl, names);
    }
    if (cfg->client_verify)
        SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    else
        SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_alpn_select_cb(ctx->ssl, alpn_select, ctx);
    SSL_CTX_set_info_callback(ctx->ssl, info_cb);
    *out = ctx;
    ctx = NULL;
    rc = VEIL_OK;
out:
    X509_free(x);
    EVP_PKEY_free(pk);
    BIO_free(bio);
    veil_buf_release(&cert);
    veil_buf_release(&key);
    veil_buf_release(&ca);
    veil_tls_ctx_free(ctx);
    return rc;
}

void veil_tls_ctx_free(struct veil_tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl);
    veil_free(ctx);
}

veil_err veil_tls_ctx_swap(struct veil_tls_ctx *ctx, struct veil_tls_ctx *fresh)
{
    veil_err rc = VEIL_E_INVALID;
    if (fresh == NULL || strcmp(ctx->alpn, fresh->alpn) != 0)
        goto out;
    /*
     * The ALPN callback's argument is the wrapper that made the OpenSSL context; fresh is about
     * to be freed, so the new context points at ctx, which outlives every connection. The old
     * context keeps pointing at ctx as well, for connections still in their handshake.
     */
    SSL_CTX_set_alpn_select_cb(fresh->ssl, alpn_select, ctx);
    SSL_CTX *old = ctx->ssl;
    ctx->ssl = fresh->ssl;
    fresh->ssl = old;
    rc = VEIL_OK;
out:
    veil_tls_ctx_free(fresh);
    return rc;
}

int64_t veil_tls_ctx_not_after(const struct veil_tls_ctx *ctx)
{
    X509 *leaf = SSL_CTX_get0_certificate(ctx->ssl);
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    int days = 0, secs = 0;
    bool ok = leaf != NULL && epoch != NULL &&
              ASN1_TIME_diff(&days, &secs, epoch, X509_get0_notAfter(leaf)) == 1;
    ASN1_TIME_free(epoch);
    return ok ? (int64_t)days * 86400 + secs : 0;
}
