/*
 * Client connections for `veil predict` and `veil bench`. Connection set-up (TCP, TLS,
 * ALPN) is blocking; afterwards sockets are non-blocking and veil_cli_pump drives any number
 * of connections from one thread: gRPC calls as HTTP/2 streams through nghttp2 (many in
 * flight per connection), REST calls as HTTP/1.1 keep-alive requests (one at a time per
 * connection). Response heads from the server are parsed with the broker's strict HTTP/1.1
 * head parser; gRPC messages are read through the span reader.
 */
#include "client.h"

#include "veil/kbs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_RESPONSE (1u << 30)
#define OUT_HIGH_WATER (1u << 20)

struct call {
    struct call *prev, *next; /* the connection's calls in flight */
    int32_t stream_id;
    veil_cli_done_fn done;
    void *ud;
    uint8_t prefix[5];
    struct veil_span msg;
    size_t sent;
    struct veil_buf resp;
    int grpc_status;
    bool has_grpc_status;
    int http_status;
    char message[256];
};

struct veil_cli_conn {
    int fd;
    SSL *ssl;
    bool http2;
    bool failed;
    char authority[300];
    bool tls;
    nghttp2_session *h2;
    size_t pending;
    struct call *calls;
    struct veil_buf out;
    size_t out_off;
    /* HTTP/1.1: one request at a time. */
    struct call *h1;
    struct veil_buf h1_req;
};

veil_err veil_cli_target_parse(struct veil_cli_target *t, const char *hp)
{
    const char *colon = strrchr(hp, ':');
    if (colon == NULL || colon == hp || strlen(colon + 1) == 0 || strlen(colon + 1) >= 8)
        return VEIL_E_INVALID;
    size_t hl = (size_t)(colon - hp);
    if (hp[0] == '[' && colon[-1] == ']') {
        hp++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(t->host))
        return VEIL_E_INVALID;
    for (const char *q = colon + 1; *q; q++)
        if (*q < '0' || *q > '9')
            return VEIL_E_INVALID;
    memcpy(t->host, hp, hl);
    t->host[hl] = '\0';
    snprintf(t->port, sizeof(t->port), "%s", colon + 1);
    return VEIL_OK;
}

veil_err veil_cli_tls_ctx(const struct veil_cli_target *t, const char *alpn, SSL_CTX **out,
                          struct veil_errbuf *eb)
{
    *out = NULL;
    if (!t->tls)
        return VEIL_OK;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    unsigned char proto[32];
    size_t al = strlen(alpn);
    proto[0] = (unsigned char)al;
    memcpy(proto + 1, alpn, al);
    bool ok = ctx != NULL && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
              (t->ca != NULL ? SSL_CTX_load_verify_locations(ctx, t->ca, NULL) == 1
                             : SSL_CTX_set_default_verify_paths(ctx) == 1) &&
              SSL_CTX_set_alpn_protos(ctx, proto, (unsigned)al + 1) == 0;
    if (ok && t->cert != NULL)
        ok = SSL_CTX_use_certificate_chain_file(ctx, t->cert) == 1 &&
             SSL_CTX_use_PrivateKey_file(ctx, t->key != NULL ? t->key : t->cert,
                                         SSL_FILETYPE_PEM) == 1;
    if (!ok) {
        SSL_CTX_free(ctx);
        unsigned long e = ERR_get_error();
        char reason[160] = "unknown";
        if (e != 0)
            ERR_error_string_n(e, reason, sizeof(reason));
        ERR_clear_error();
        return veil_errf(eb, VEIL_E_INVALID, "TLS set-up (CA, certificate or key file): %s",
                         reason);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    *out = ctx;
    return VEIL_OK;
}

static void call_link(struct veil_cli_conn *c, struct call *k)
{
    k->prev = NULL;
    k->next = c->calls;
    if (c->calls != NULL)
        c->calls->prev = k;
    c->calls = k;
    c->pending++;
}

static void call_finish(struct veil_cli_conn *c, struct call *k, int status, const char *msg,
                        const uint8_t *body, size_t len)
{
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        c->calls = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    k->done(k->ud, status, msg, body, len);
    veil_buf_release(&k->resp);
    veil_free(k);
    c->pending--;
}

static void conn_fail(struct veil_cli_conn *c, const char *why)
{
    if (c->failed)
        return;
    c->failed = true;
    c->h1 = NULL;
    while (c->calls != NULL) {
        struct call *k = c->calls;
        if (c->h2 != NULL && k->stream_id > 0)
            nghttp2_session_set_stream_user_data(c->h2, k->stream_id, NULL);
        call_finish(c, k, -1, why, NULL, 0);
    }
}

/* ---- Raw I/O over the socket or TLS: > 0 bytes, 0 would block, < 0 failure/EOF ---- */

static ssize_t io_write(struct veil_cli_conn *c, const uint8_t *p, size_t n)
{
    if (c->ssl == NULL) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return 0;
        return w < 0 ? -1 : w;
    }
    int w = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    if (w > 0)
        return w;
    int e = SSL_get_error(c->ssl, w);
    return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? 0 : -1;
}

static ssize_t io_read(struct veil_cli_conn *c, uint8_t *p, size_t n)
{
    if (c->ssl == NULL) {
        ssize_t r = recv(c->fd, p, n, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return 0;
        return r <= 0 ? -1 : r;
    }
    int r = SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

/* ---- HTTP/2 callbacks ---- */

static ssize_t h2_read_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)sid;
    (void)ud;
    struct call *k = src->ptr;
    size_t total = 5 + k->msg.len, n = 0;
    while (n < len && k->sent < total) {
        size_t take;
        if (k->sent < 5) {
            take = 5 - k->sent < len - n ? 5 - k->sent : len - n;
            memcpy(buf + n, k->prefix + k->sent, take);
        } else {
            size_t off = k->sent - 5;
            take = k->msg.len - off < len - n ? k->msg.len - off : len - n;
            memcpy(buf + n, k->msg.p + off, take);
        }
        n += take;
        k->sent += take;
    }
    if (k->sent == total)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *ud)
{
    (void)flags;
    (void)ud;
    struct call *k = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (k == NULL)
        return 0;
    struct veil_span n = veil_span_make(name, namelen), v = veil_span_make(value, valuelen);
    if (veil_span_eq_str(n, ":status") && valuelen == 3) {
        k->http_status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
    } else if (veil_span_eq_str(n, "grpc-status") && valuelen > 0 && valuelen < 4) {
        int st = 0;
        for (size_t i = 0; i < valuelen; i++)
            st = value[i] >= '0' && value[i] <= '9' ? st * 10 + (value[i] - '0') : 2;
        k->grpc_status = st;
        k->has_grpc_status = true;
    } else if (veil_span_eq_str(n, "grpc-message")) {
        /* Percent-decoded, as gRPC encodes it. */
        size_t o = 0;
        for (size_t i = 0; i < v.len && o + 1 < sizeof(k->message); i++) {
            int hi, lo;
            if (v.p[i] == '%' && i + 2 < v.len &&
                (hi = (v.p[i + 1] >= 'A' ? (v.p[i + 1] | 32) - 'a' + 10 : v.p[i + 1] - '0')) >= 0 &&
                hi < 16 &&
                (lo = (v.p[i + 2] >= 'A' ? (v.p[i + 2] | 32) - 'a' + 10 : v.p[i + 2] - '0')) >= 0 &&
                lo < 16) {
                k->message[o++] = (char)(hi * 16 + lo);
                i += 2;
            } else {
                k->message[o++] = (char)v.p[i];
            }
        }
        k->message[o] = '\0';
    }
    return 0;
}

static int h2_on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data,
                      size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    struct call *k = nghttp2_session_get_stream_user_data(s, sid);
    if (k != NULL && veil_buf_append(&k->resp, data, len) != VEIL_OK)
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL);
    return 0;
}

static int h2_on_close(nghttp2_session *s, int32_t sid, uint32_t error, void *ud)
{
    struct veil_cli_conn *c = ud;
    struct call *k = nghttp2_session_get_stream_user_data(s, sid);
    if (k == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(s, sid, NULL);
    if (!k->has_grpc_status) {
        /* No trailers: map the transport outcome (gRPC's HTTP-to-status rules). */
        const char *m = error != 0 ? "stream reset" : "no grpc-status from the server";
        int st = error != 0 ? 14 : k->http_status == 200 ? 13 : k->http_status == 429 ? 14 : 2;
        if (k->http_status != 0 && k->http_status != 200)
            m = "HTTP error from the server";
        call_finish(c, k, st, m, NULL, 0);
        return 0;
    }
    struct veil_span r = veil_buf_span(&k->resp), msg = {NULL, 0};
    uint8_t compressed = 0;
    uint32_t len = 0;
    if (r.len > 0 &&
        (veil_span_get_u8(&r, &compressed) != VEIL_OK || veil_span_get_u32be(&r, &len) != VEIL_OK ||
         veil_span_get_bytes(&r, len, &msg) != VEIL_OK || compressed != 0)) {
        call_finish(c, k, 13, "malformed gRPC response message", NULL, 0);
        return 0;
    }
    call_finish(c, k, k->grpc_status, k->message[0] ? k->message : NULL, msg.p, msg.len);
    return 0;
}

/* ---- Connections ---- */

veil_err veil_cli_conn_open(const struct veil_cli_target *t, SSL_CTX *ctx, bool http2,
                            struct veil_cli_conn **out, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_cli_conn *c = veil_calloc(1, sizeof(*c));
    struct addrinfo *ai = NULL;
    *out = NULL;
    if (c == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "out of memory");
    c->fd = -1;
    c->http2 = http2;
    c->tls = ctx != NULL;
    veil_buf_init(&c->out, 64u << 20);
    veil_buf_init(&c->h1_req, 64u << 20);
    snprintf(c->authority, sizeof(c->authority), "%s:%s", t->host, t->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    if (getaddrinfo(t->host, t->port, &hints, &ai) != 0 || ai == NULL) {
        rc = veil_errf(eb, VEIL_E_UNAVAILABLE, "cannot resolve %s", t->host);
        goto out;
    }
    c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unsigned tmo = t->timeout_ms ? t->timeout_ms : 10000;
    struct timeval tv = {(time_t)(tmo / 1000), (suseconds_t)(tmo % 1000) * 1000};
    int one = 1;
    if (c->fd < 0 || setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        connect(c->fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        rc = veil_errf(eb, VEIL_E_UNAVAILABLE, "cannot connect to %s: %s", c->authority,
                       strerror(errno));
        goto out;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (ctx != NULL) {
        c->ssl = SSL_new(ctx);
        char sni[sizeof(t->host)];
        memcpy(sni, t->host, sizeof(sni)); /* SSL_set_tlsext_host_name takes a mutable string */
        unsigned char ip[16];
        bool is_ip = inet_pton(AF_INET, t->host, ip) == 1 || inet_pton(AF_INET6, t->host, ip) == 1;
        X509_VERIFY_PARAM *vp = c->ssl != NULL ? SSL_get0_param(c->ssl) : NULL;
        if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
            (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, t->host)
                   : X509_VERIFY_PARAM_set1_host(vp, t->host, 0)) != 1 ||
            (!is_ip && SSL_set_tlsext_host_name(c->ssl, sni) != 1)) {
            rc = veil_errf(eb, VEIL_E_CRYPTO, "TLS set-up failed");
            goto out;
        }
        if (SSL_connect(c->ssl) != 1) {
            long vr = SSL_get_verify_result(c->ssl);
            unsigned long e = ERR_get_error();
            char reason[160] = "handshake failed";
            if (e != 0)
                ERR_error_string_n(e, reason, sizeof(reason));
            rc = vr != X509_V_OK ? veil_errf(eb, VEIL_E_AUTH, "%s: server certificate refused: %s",
                                             c->authority, X509_verify_cert_error_string(vr))
                                 : veil_errf(eb, VEIL_E_AUTH, "%s: TLS: %s", c->authority, reason);
            goto out;
        }
        if (http2) {
            const unsigned char *alpn = NULL;
            unsigned alen = 0;
            SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
            if (alen != 2 || memcmp(alpn, "h2", 2) != 0) {
                rc = veil_errf(eb, VEIL_E_UNSUPPORTED, "%s did not negotiate HTTP/2 (ALPN h2)",
                               c->authority);
                goto out;
            }
        }
    }
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    if (http2) {
        nghttp2_session_callbacks *cb = NULL;
        if (nghttp2_session_callbacks_new(&cb) != 0) {
            rc = veil_errf(eb, VEIL_E_NOMEM, "out of memory");
            goto out;
        }
        nghttp2_session_callbacks_set_on_header_callback(cb, h2_on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_on_data);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_on_close);
        int r = nghttp2_session_client_new(&c->h2, cb, c);
        nghttp2_session_callbacks_del(cb);
        nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24},
                                       {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1024}};
        if (r != 0 || nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 2) != 0 ||
            nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, 1 << 28) != 0) {
            rc = veil_errf(eb, VEIL_E_NOMEM, "HTTP/2 session set-up failed");
            goto out;
        }
    }
    *out = c;
    c = NULL;
    rc = VEIL_OK;
out:
    if (ai != NULL)
        freeaddrinfo(ai);
    ERR_clear_error();
    veil_cli_conn_free(c);
    return rc;
}

void veil_cli_conn_free(struct veil_cli_conn *c)
{
    if (c == NULL)
        return;
    conn_fail(c, "connection closed");
    if (c->h2 != NULL)
        nghttp2_session_del(c->h2);
    if (c->ssl != NULL)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    veil_buf_release(&c->out);
    veil_buf_release(&c->h1_req);
    veil_free(c);
}

EVP_PKEY *veil_cli_conn_peer_key(const struct veil_cli_conn *c)
{
    X509 *peer = c->ssl != NULL ? SSL_get0_peer_certificate(c->ssl) : NULL;
    return peer != NULL ? X509_get0_pubkey(peer) : NULL;
}

veil_err veil_cli_grpc_call(struct veil_cli_conn *c, const char *path, struct veil_span msg,
                            veil_cli_done_fn done, void *ud)
{
    if (c->failed || c->h2 == NULL || msg.len > UINT32_MAX)
        return VEIL_E_STATE;
    struct call *k = veil_calloc(1, sizeof(*k));
    if (k == NULL)
        return VEIL_E_NOMEM;
    k->done = done;
    k->ud = ud;
    k->msg = msg;
    k->prefix[0] = 0;
    for (int i = 0; i < 4; i++)
        k->prefix[1 + i] = (uint8_t)(msg.len >> (24 - 8 * i));
    veil_buf_init(&k->resp, MAX_RESPONSE);
    const char *scheme = c->tls ? "https" : "http";
#define NV(n, v)                                                                                   \
    {(uint8_t *)(uintptr_t)(n), (uint8_t *)(uintptr_t)(v), sizeof(n) - 1, strlen(v),               \
     NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv hdrs[] = {NV(":method", "POST"),
                         NV(":scheme", scheme),
                         NV(":path", path),
                         NV(":authority", c->authority),
                         NV("content-type", "application/grpc"),
                         NV("te", "trailers"),
                         NV("user-agent", "veil/0.1")};
#undef NV
    nghttp2_data_provider dp = {.source = {.ptr = k}, .read_callback = h2_read_body};
    int32_t sid = nghttp2_submit_request(c->h2, NULL, hdrs, sizeof(hdrs) / sizeof(hdrs[0]), &dp, k);
    if (sid < 0) {
        veil_buf_release(&k->resp);
        veil_free(k);
        return VEIL_E_STATE;
    }
    k->stream_id = sid;
    call_link(c, k);
    return VEIL_OK;
}

veil_err veil_cli_rest_call(struct veil_cli_conn *c, const char *method, const char *path,
                            struct veil_span body, veil_cli_done_fn done, void *ud)
{
    if (c->failed || c->http2 || c->h1 != NULL)
        return VEIL_E_STATE;
    struct call *k = veil_calloc(1, sizeof(*k));
    if (k == NULL)
        return VEIL_E_NOMEM;
    k->done = done;
    k->ud = ud;
    veil_buf_init(&k->resp, MAX_RESPONSE);
    veil_buf_reset(&c->h1_req);
    veil_err rc = veil_buf_appendf(&c->h1_req,
                                   "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: veil/0.1\r\n"
                                   "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                                   method, path, c->authority, body.len);
    if (rc == VEIL_OK)
        rc = veil_buf_append(&c->h1_req, body.p, body.len);
    if (rc != VEIL_OK) {
        veil_buf_release(&k->resp);
        veil_free(k);
        return rc;
    }
    k->msg = veil_buf_span(&c->h1_req);
    c->h1 = k;
    call_link(c, k);
    return VEIL_OK;
}

size_t veil_cli_conn_pending(const struct veil_cli_conn *c)
{
    return c->pending;
}

bool veil_cli_conn_failed(const struct veil_cli_conn *c)
{
    return c->failed;
}

/* Moves queued bytes towards the socket; false when the connection failed. */
static bool flush(struct veil_cli_conn *c)
{
    for (;;) {
        if (c->http2 && c->out.len - c->out_off < OUT_HIGH_WATER) {
            const uint8_t *data;
            ssize_t n;
            while (c->out.len - c->out_off < OUT_HIGH_WATER &&
                   (n = nghttp2_session_mem_send(c->h2, &data)) > 0)
                if (veil_buf_append(&c->out, data, (size_t)n) != VEIL_OK)
                    return false;
        } else if (!c->http2 && c->h1 != NULL && c->h1->sent < c->h1->msg.len) {
            ssize_t w = io_write(c, c->h1->msg.p + c->h1->sent, c->h1->msg.len - c->h1->sent);
            if (w < 0)
                return false;
            c->h1->sent += (size_t)w;
            return true;
        }
        if (c->out_off == c->out.len)
            return true;
        ssize_t w = io_write(c, c->out.p + c->out_off, c->out.len - c->out_off);
        if (w < 0)
            return false;
        if (w == 0)
            return true;
        c->out_off += (size_t)w;
        if (c->out_off == c->out.len) {
            veil_buf_reset(&c->out);
            c->out_off = 0;
        }
    }
}

/* Parses a complete HTTP/1.1 response, if one has arrived. */
static void h1_try_complete(struct veil_cli_conn *c)
{
    struct call *k = c->h1;
    struct veil_kbs_http_head h;
    veil_err rc = veil_kbs_http_parse(veil_buf_span(&k->resp), false, &h);
    if (rc == VEIL_E_INCOMPLETE)
        return;
    if (rc != VEIL_OK) {
        conn_fail(c, "malformed HTTP response");
        return;
    }
    if (k->resp.len < h.head_len + h.content_length)
        return;
    c->h1 = NULL;
    call_finish(c, k, h.status, NULL, k->resp.p + h.head_len, (size_t)h.content_length);
    if (h.close)
        conn_fail(c, "server closed the connection");
}

static void on_readable(struct veil_cli_conn *c)
{
    uint8_t buf[65536];
    for (;;) {
        ssize_t r = io_read(c, buf, sizeof(buf));
        if (r == 0)
            return;
        if (r < 0) {
            conn_fail(c, "connection lost");
            return;
        }
        if (c->http2) {
            if (nghttp2_session_mem_recv(c->h2, buf, (size_t)r) < 0) {
                conn_fail(c, "HTTP/2 protocol error");
                return;
            }
        } else if (c->h1 != NULL) {
            if (veil_buf_append(&c->h1->resp, buf, (size_t)r) != VEIL_OK) {
                conn_fail(c, "response too large");
                return;
            }
            h1_try_complete(c);
        } else {
            conn_fail(c, "unexpected bytes from the server");
            return;
        }
    }
}

void veil_cli_pump(struct veil_cli_conn **cs, size_t n, int timeout_ms)
{
    struct pollfd pf[256];
    size_t map[256], np = 0;
    int tmo = timeout_ms;
    for (size_t i = 0; i < n && np < 256; i++) {
        struct veil_cli_conn *c = cs[i];
        if (c == NULL || c->failed)
            continue;
        if (!flush(c)) {
            conn_fail(c, "connection lost");
            continue;
        }
        short ev = POLLIN;
        if (c->out_off < c->out.len || (c->h1 != NULL && c->h1->sent < c->h1->msg.len))
            ev |= POLLOUT;
        if (c->ssl != NULL && SSL_pending(c->ssl) > 0)
            tmo = 0;
        pf[np] = (struct pollfd){c->fd, ev, 0};
        map[np++] = i;
    }
    if (np == 0)
        return;
    if (poll(pf, np, tmo) < 0)
        return;
    for (size_t j = 0; j < np; j++) {
        struct veil_cli_conn *c = cs[map[j]];
        if (pf[j].revents & (POLLIN | POLLHUP | POLLERR) ||
            (c->ssl != NULL && SSL_pending(c->ssl) > 0))
            on_readable(c);
        if (!c->failed && !flush(c))
            conn_fail(c, "connection lost");
    }
}

veil_err veil_cli_wait_idle(struct veil_cli_conn *c, unsigned timeout_ms, struct veil_errbuf *eb)
{
    uint64_t deadline = veil_time_mono_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (c->pending > 0 && !c->failed) {
        if (veil_time_mono_ns() > deadline)
            return veil_errf(eb, VEIL_E_TIMEOUT, "no answer from %s within %u ms", c->authority,
                             timeout_ms);
        veil_cli_pump(&c, 1, 100);
    }
    if (c->failed && c->pending > 0)
        return veil_errf(eb, VEIL_E_UNAVAILABLE, "connection to %s failed", c->authority);
    return VEIL_OK;
}
