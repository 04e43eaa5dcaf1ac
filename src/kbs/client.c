/*
 * The broker's clients. Provisioning: a workload connects to a broker it authenticates by the
 * pinned broker CA and the broker usage in its certificate, fetches a single-use nonce, makes a
 * fresh key pair with an RA-TLS certificate whose evidence binds that nonce and key, and
 * presents it to receive its keys and serving certificate; brokers are tried in turn with
 * exponential backoff until a deadline, each with a challenge of its own. Administration: one
 * request with an admin client certificate, to a broker authenticated the same way.
 */
#include "kbs_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    SSL *ssl;
    char host[256];
};

static void conn_close(struct conn *c)
{
    if (c->ssl != NULL) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
}

static veil_err split_hostport(const char *hp, size_t len, char *host, size_t hostcap, char port[8])
{
    const char *end = hp + len, *colon = NULL;
    for (const char *q = hp; q < end; q++)
        if (*q == ':')
            colon = q;
    if (colon == NULL || colon == hp || (size_t)(end - colon - 1) >= 8 || end == colon + 1)
        return VEIL_E_INVALID;
    size_t hl = (size_t)(colon - hp);
    if (hp[0] == '[' && colon[-1] == ']') {
        hp++;
        hl -= 2;
    }
    if (hl == 0 || hl >= hostcap)
        return VEIL_E_INVALID;
    memcpy(host, hp, hl);
    host[hl] = '\0';
    memcpy(port, colon + 1, (size_t)(end - colon - 1));
    port[end - colon - 1] = '\0';
    return VEIL_OK;
}

/*
 * TCP connect with a timeout, then TLS with the server checked against ctx's CA and host,
 * presenting cert and key as the client certificate when given (on this connection only, so
 * one context serves the challenge and the provisioning connection).
 */
static veil_err conn_open(SSL_CTX *ctx, X509 *cert, EVP_PKEY *key, const char *hp, size_t hplen,
                          unsigned timeout_ms, struct conn *c, struct veil_errbuf *eb)
{
    char port[8];
    c->fd = -1;
    c->ssl = NULL;
    if (split_hostport(hp, hplen, c->host, sizeof(c->host), port) != VEIL_OK)
        return veil_errf(eb, VEIL_E_INVALID, "broker address '%.*s' is not HOST:PORT", (int)hplen,
                         hp);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(c->host, port, &hints, &ai) != 0 || ai == NULL)
        return veil_errf(eb, VEIL_E_UNAVAILABLE, "cannot resolve %s", c->host);
    c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int r = c->fd < 0 ? -1 : connect(c->fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (r != 0 && errno == EINPROGRESS) {
        struct pollfd pf = {c->fd, POLLOUT, 0};
        int err = 0;
        socklen_t el = sizeof(err);
        r = poll(&pf, 1, (int)timeout_ms) == 1 &&
                    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0
                ? 0
                : -1;
    }
    if (r != 0) {
        conn_close(c);
        return veil_errf(eb, VEIL_E_UNAVAILABLE, "cannot connect to %.*s", (int)hplen, hp);
    }
    int flags = fcntl(c->fd, F_GETFL);
    fcntl(c->fd, F_SETFL, flags & ~O_NONBLOCK);
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
        (cert != NULL &&
         (SSL_use_certificate(c->ssl, cert) != 1 || SSL_use_PrivateKey(c->ssl, key) != 1))) {
        conn_close(c);
        return veil_crypto_openssl_err(eb, VEIL_E_CRYPTO, "TLS set-up failed");
    }
    unsigned char ipbuf[16];
    bool is_ip =
        inet_pton(AF_INET, c->host, ipbuf) == 1 || inet_pton(AF_INET6, c->host, ipbuf) == 1;
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, c->host)
               : X509_VERIFY_PARAM_set1_host(vp, c->host, 0)) != 1 ||
        (!is_ip && SSL_set_tlsext_host_name(c->ssl, c->host) != 1)) {
        conn_close(c);
        return veil_crypto_openssl_err(eb, VEIL_E_CRYPTO, "TLS set-up failed");
    }
    if (SSL_connect(c->ssl) != 1) {
        long vr = SSL_get_verify_result(c->ssl);
        veil_err rc = vr != X509_V_OK
                          ? veil_errf(eb, VEIL_E_AUTH, "%s: broker certificate refused: %s",
                                      c->host, X509_verify_cert_error_string(vr))
                          : veil_crypto_openssl_err(eb, VEIL_E_UNAVAILABLE, "TLS handshake failed");
        conn_close(c);
        return rc;
    }
    /*
     * The chain and the name are right; the certificate must also be a broker's (its own
     * extended key usage), never a workload's serving certificate, whatever CA was pinned.
     */
    X509 *peer = SSL_get1_peer_certificate(c->ssl);
    bool broker = peer != NULL && veil__kbs_cert_has_eku(peer, VEIL__KBS_OID_BROKER);
    X509_free(peer);
    if (!broker) {
        conn_close(c);
        return veil_errf(eb, VEIL_E_AUTH,
                         "%s: broker certificate refused: it is not a key broker's certificate "
                         "(pin the broker CA, broker-ca.pem, not the serving CA)",
                         c->host);
    }
    return VEIL_OK;
}

/* Sends one request on c and reads the response into resp. */
static veil_err exchange(struct conn *c, const char *method, const char *path,
                         struct veil_span body, int *status, struct veil_buf *resp,
                         struct veil_span *resp_body, struct veil_errbuf *eb)
{
    struct veil_buf req;
    struct veil_kbs_http_head h;
    veil_buf_init_secret(&req, VEIL_LIMIT_KBS_BODY + 1024);
    veil_err rc =
        veil_buf_appendf(&req,
                         "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                         method, path, c->host, body.len);
    if (rc == VEIL_OK)
        rc = veil_buf_append(&req, body.p, body.len);
    if (rc == VEIL_OK)
        rc = veil__kbs_write_all(c->ssl, req.p, req.len);
    veil_buf_release(&req);
    if (rc != VEIL_OK)
        return veil_errf(eb, VEIL_E_UNAVAILABLE, "sending to the broker failed");
    rc = veil__kbs_read_message(c->ssl, false, resp, &h, resp_body);
    if (rc != VEIL_OK)
        return veil_errf(
            eb, rc == VEIL_E_FORMAT || rc == VEIL_E_LIMIT ? VEIL_E_FORMAT : VEIL_E_UNAVAILABLE,
            "reading the broker's answer failed: %s", veil_err_str(rc));
    *status = h.status;
    return VEIL_OK;
}

/* ---- Provisioning ---- */

void veil_kbs_grant_free(struct veil_kbs_grant *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < g->n_keys; i++)
        veil_model_key_free(g->keys[i]);
    veil_free(g->keys);
    veil_free(g->cert_pem);
    veil_free(g->ca_pem);
    veil_free(g->min_versions);
    EVP_PKEY_free(g->pkey);
    veil_free(g);
}

static veil_err parse_grant(struct veil_span body, EVP_PKEY *pkey, struct veil_kbs_grant **out,
                            struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_FORMAT;
    struct veil_arena a;
    struct veil_json *doc = NULL;
    struct veil_kbs_grant *g = NULL;
    X509 *cert = NULL;
    veil_arena_init(&a, 8192, VEIL_LIMIT_KBS_BODY * 4);
    if (veil_json_parse(body, &a, &doc, eb) != VEIL_OK)
        goto out;
    const char *wl = veil_json_get_str(doc, "workload");
    const char *cp = veil_json_get_str(doc, "certificate");
    const char *ca = veil_json_get_str(doc, "ca");
    const struct veil_json *keys = veil_json_get(doc, "keys");
    if (wl == NULL || cp == NULL || ca == NULL || keys == NULL || keys->type != VEIL_JSON_ARRAY) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "broker answer lacks workload, keys or certificates");
        goto out;
    }
    g = veil_calloc(1, sizeof(*g));
    if (g == NULL || (keys->n > 0 && (g->keys = veil_calloc(keys->n, sizeof(*g->keys))) == NULL) ||
        (g->cert_pem = veil_strdup(cp)) == NULL || (g->ca_pem = veil_strdup(ca)) == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "out of memory");
        goto out;
    }
    snprintf(g->workload, sizeof(g->workload), "%s", wl);
    for (size_t i = 0; i < keys->n; i++) {
        const char *id = veil_json_get_str(keys->items[i], "id");
        const char *hex = veil_json_get_str(keys->items[i], "key");
        uint8_t raw[32];
        if (id == NULL || hex == NULL ||
            veil_hex_decode(veil_span_from_str(hex), raw, sizeof(raw)) != VEIL_OK) {
            rc = veil_errf(eb, VEIL_E_FORMAT, "broker answer has a malformed key");
            goto out;
        }
        rc = veil_model_key_from_bytes(id, raw, sizeof(raw), &g->keys[i], eb);
        veil_memzero(raw, sizeof(raw));
        veil_memzero((void *)(uintptr_t)hex, strlen(hex)); /* decoded copy in the arena */
        if (rc != VEIL_OK)
            goto out;
        g->n_keys = i + 1;
    }
    const struct veil_json *mins = veil_json_get(doc, "min_versions");
    if (mins != NULL) {
        if (mins->type != VEIL_JSON_OBJECT || mins->n > 64 ||
            (mins->n > 0 &&
             (g->min_versions = veil_calloc(mins->n, sizeof(*g->min_versions))) == NULL)) {
            rc = veil_errf(eb, VEIL_E_FORMAT, "broker answer has malformed min_versions");
            goto out;
        }
        for (size_t i = 0; i < mins->n; i++) {
            const struct veil_json *mv = mins->members[i].value;
            const char *model = mins->members[i].key;
            if (mv->type != VEIL_JSON_NUMBER || !mv->is_int || mv->i < 0 || model[0] == '\0' ||
                strlen(model) >= sizeof(g->min_versions[i].model)) {
                rc = veil_errf(eb, VEIL_E_FORMAT, "broker answer has malformed min_versions");
                goto out;
            }
            snprintf(g->min_versions[i].model, sizeof(g->min_versions[i].model), "%s", model);
            g->min_versions[i].version = mv->i;
            g->n_min_versions = i + 1;
        }
    }
    /* The certificate must be for the key this workload attested with. */
    if (veil__kbs_parse_cert(veil_span_from_str(cp), &cert) != VEIL_OK ||
        EVP_PKEY_eq(X509_get0_pubkey(cert), pkey) != 1) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "broker issued a certificate for another key");
        goto out;
    }
    if (veil__kbs_cert_dates(cert, &g->not_before, &g->not_after, g->serial, sizeof(g->serial)) !=
        VEIL_OK) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "broker issued a certificate with unreadable dates");
        goto out;
    }
    if (EVP_PKEY_up_ref(pkey) != 1) {
        rc = VEIL_E_CRYPTO;
        goto out;
    }
    g->pkey = pkey;
    *out = g;
    g = NULL;
    rc = VEIL_OK;
out:
    X509_free(cert);
    veil_kbs_grant_free(g);
    veil_arena_release(&a);
    return rc;
}

static veil_err provision_body(const char *const *key_ids, size_t n, const char *const *san,
                               struct veil_buf *b)
{
    veil_err rc = veil_buf_append_str(b, "{\"keys\":[");
    for (size_t i = 0; rc == VEIL_OK && i < n; i++) {
        if (i > 0)
            rc = veil_buf_append_u8(b, ',');
        if (rc == VEIL_OK)
            rc = veil_json_append_str(b, veil_span_from_str(key_ids[i]));
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(b, "],\"san\":[");
    for (size_t i = 0; rc == VEIL_OK && san != NULL && san[i] != NULL; i++) {
        if (i > 0)
            rc = veil_buf_append_u8(b, ',');
        if (rc == VEIL_OK)
            rc = veil_json_append_str(b, veil_span_from_str(san[i]));
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(b, "]}");
    return rc;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A client TLS context that pins ca_file; certificates are set per connection. */
static veil_err client_ctx(const char *ca_file, SSL_CTX **out, struct veil_errbuf *eb)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    *out = NULL;
    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        SSL_CTX_free(ctx);
        return veil_crypto_openssl_err(eb, VEIL_E_INVALID, "TLS set-up (broker CA file?)");
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    *out = ctx;
    return VEIL_OK;
}

/* The broker's refusal (status, body) as an error: final for 401/403, FORMAT otherwise. */
static veil_err refusal(const char *what, const char *hp, size_t len, int status,
                        struct veil_span rb, struct veil_errbuf *eb)
{
    struct veil_arena a;
    struct veil_json *doc = NULL;
    veil_arena_init(&a, 4096, 1 << 20);
    const char *msg =
        veil_json_parse(rb, &a, &doc, NULL) == VEIL_OK ? veil_json_get_str(doc, "error") : NULL;
    veil_err rc = veil_errf(eb, status == 403 || status == 401 ? VEIL_E_REJECTED : VEIL_E_FORMAT,
                            "broker %.*s refused the %s (HTTP %d): %s", (int)len, hp, what, status,
                            msg != NULL ? msg : "no reason given");
    veil_arena_release(&a);
    return rc;
}

/*
 * One attempt at one broker: a challenge over TLS without a client certificate, then a fresh
 * key and RA-TLS certificate binding the challenge's nonce, then the provisioning request
 * presenting it. VEIL_E_UNAVAILABLE (in ceb) means try again; anything else is final.
 */
static veil_err provision_one(SSL_CTX *ctx, struct veil_attest_provider *p, const char *hp,
                              size_t len, unsigned timeout, struct veil_span body,
                              struct veil_buf *resp, struct veil_kbs_grant **out,
                              struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    EVP_PKEY *pkey = NULL;
    X509 *cert = NULL;
    struct conn c = {.fd = -1};
    struct veil_span rb;
    int status = 0;
    uint8_t nonce[VEIL__KBS_NONCE_LEN];

    /* Unreachable brokers, failed handshakes and lost answers are retried, as before. */
    if ((rc = conn_open(ctx, NULL, NULL, hp, len, timeout, &c, eb)) != VEIL_OK) {
        rc = rc == VEIL_E_INVALID ? rc : VEIL_E_UNAVAILABLE;
        goto out;
    }
    rc = exchange(&c, "POST", "/kbs/v1/challenge", veil_span_make(NULL, 0), &status, resp, &rb, eb);
    conn_close(&c);
    if (rc != VEIL_OK) {
        rc = VEIL_E_UNAVAILABLE;
        goto out;
    }
    if (status == 503) {
        rc = veil_errf(eb, VEIL_E_UNAVAILABLE, "%.*s: too many outstanding challenges", (int)len,
                       hp);
        goto out;
    }
    if (status != 200) {
        rc = refusal("challenge", hp, len, status, rb, eb);
        goto out;
    }
    if (veil__kbs_challenge_parse(rb, nonce) != VEIL_OK) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "broker %.*s sent a malformed challenge", (int)len, hp);
        goto out;
    }
    /* Evidence per attempt: its REPORT_DATA binds this broker's nonce and this key. */
    rc = veil_attest_ratls_create(p, 86400, veil_span_make(nonce, sizeof(nonce)), &pkey, &cert, eb);
    if (rc != VEIL_OK)
        goto out;
    if ((rc = conn_open(ctx, cert, pkey, hp, len, timeout, &c, eb)) != VEIL_OK) {
        rc = rc == VEIL_E_INVALID ? rc : VEIL_E_UNAVAILABLE;
        goto out;
    }
    rc = exchange(&c, "POST", "/kbs/v1/provision", body, &status, resp, &rb, eb);
    conn_close(&c);
    if (rc != VEIL_OK) {
        rc = VEIL_E_UNAVAILABLE;
        goto out;
    }
    if (status == 200)
        rc = parse_grant(rb, pkey, out, eb);
    else if (status == 503)
        rc = veil_errf(eb, VEIL_E_UNAVAILABLE, "%.*s: broker busy (HTTP 503)", (int)len, hp);
    else /* The broker decided: a refusal is final, not retried. */
        rc = refusal("provisioning", hp, len, status, rb, eb);
out:
    veil_memzero(nonce, sizeof(nonce));
    EVP_PKEY_free(pkey);
    X509_free(cert);
    return rc;
}

veil_err veil_kbs_provision(const struct veil_kbs_client_opts *opts, struct veil_attest_provider *p,
                            const char *const *key_ids, size_t n, struct veil_kbs_grant **out,
                            struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    SSL_CTX *ctx = NULL;
    struct veil_buf body, resp;
    veil_buf_init(&body, VEIL_LIMIT_KBS_BODY);
    veil_buf_init_secret(&resp, VEIL_LIMIT_KBS_HEAD + VEIL_LIMIT_KBS_BODY);
    *out = NULL;
    unsigned timeout = opts->timeout_ms ? opts->timeout_ms : 5000;
    uint64_t deadline = veil_time_mono_ns() +
                        (uint64_t)(opts->deadline_s > 0 ? opts->deadline_s : 60) * 1000000000ull;

    if ((rc = client_ctx(opts->ca_file, &ctx, eb)) != VEIL_OK)
        goto out;
    rc = provision_body(key_ids, n, opts->san, &body);
    if (rc != VEIL_OK)
        goto out;

    uint64_t backoff_ms = 200;
    for (unsigned attempt = 0;; attempt++) {
        const char *list = opts->brokers;
        while (*list != '\0') {
            const char *comma = strchr(list, ',');
            size_t len = comma != NULL ? (size_t)(comma - list) : strlen(list);
            struct veil_errbuf ceb = {{0}};
            veil_err crc =
                provision_one(ctx, p, list, len, timeout, veil_buf_span(&body), &resp, out, &ceb);
            if (crc != VEIL_E_UNAVAILABLE) {
                rc = crc == VEIL_OK ? VEIL_OK : veil_errf(eb, crc, "%s", ceb.msg);
                goto out;
            }
            VEIL_LOG_WARN("key broker %.*s: %s", (int)len, list, ceb.msg);
            if (eb != NULL)
                memcpy(eb->msg, ceb.msg, sizeof(ceb.msg));
            list += len + (comma != NULL ? 1 : 0);
        }
        if (veil_time_mono_ns() + backoff_ms * 1000000ull >= deadline) {
            (void)veil_err_prefix(eb, VEIL_E_UNAVAILABLE, "no key broker answered after %u rounds",
                                  attempt + 1);
            rc = VEIL_E_UNAVAILABLE;
            goto out;
        }
        sleep_ms(backoff_ms);
        backoff_ms = backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2;
    }
out:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    veil_buf_release(&body);
    veil_buf_release(&resp);
    return rc;
}

/* ---- Administration ---- */

veil_err veil_kbs_admin_request(const struct veil_kbs_admin_opts *opts, const char *method,
                                const char *path, struct veil_span body, int *status,
                                struct veil_buf *resp, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    struct veil_buf raw;
    veil_buf_init_secret(&raw, VEIL_LIMIT_KBS_HEAD + VEIL_LIMIT_KBS_BODY);
    struct conn c = {.fd = -1};
    *status = 0;
    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_load_verify_locations(ctx, opts->ca_file, NULL) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, opts->cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, opts->key_file, SSL_FILETYPE_PEM) != 1) {
        rc = veil_crypto_openssl_err(eb, VEIL_E_INVALID,
                                     "TLS set-up (CA, admin certificate or key file)");
        goto out;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    rc = conn_open(ctx, NULL, NULL, opts->broker, strlen(opts->broker),
                   opts->timeout_ms ? opts->timeout_ms : 10000, &c, eb);
    if (rc != VEIL_OK)
        goto out;
    struct veil_span rb;
    rc = exchange(&c, method, path, body, status, &raw, &rb, eb);
    if (rc == VEIL_OK)
        rc = veil_buf_append(resp, rb.p, rb.len);
out:
    conn_close(&c);
    ERR_clear_error();
    SSL_CTX_free(ctx);
    veil_buf_release(&raw);
    return rc;
}
