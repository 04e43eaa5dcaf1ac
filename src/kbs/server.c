/*
 * The key broker server: a listener thread drives each accepted connection's TLS handshake and
 * reads its request without blocking, under a handshake deadline and a whole-request deadline,
 * in a bounded pending set; only a complete request goes to the pool of worker threads, which
 * answer it with blocking OpenSSL (a send timeout) and hand kept-alive connections back. Slow
 * or silent peers therefore never hold a worker (issue 18, slowloris), and excess connections
 * are shed rather than queued without bound.
 *
 * Authorisation is per request, from the client certificate the TLS handshake proved
 * possession of: /kbs/v1/challenge needs none and hands out a single-use nonce;
 * /kbs/v1/provision requires an RA-TLS certificate that is inside its validity window and whose
 * evidence binds an outstanding nonce (consumed on first sight) and the certificate's key,
 * verifies and matches the policy; /kbs/v1/admin/... requires a certificate issued by the
 * admin CA. The key store and policy sit behind a read-write lock; every decision is appended
 * durably to the audit log before its effect (a released key, a changed store) leaves the
 * broker.
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
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define QUEUE_CAP 256
#define PENDING_CAP 512 /* connections between accept and a complete request */
#define MAX_REQUESTS_PER_CONN 100
#define IO_TIMEOUT_S 10
#define MAX_SAN 16
/*
 * Refusals of unauthenticated peers (no certificate, failed attestation, not an admin) are
 * audited at most AUDIT_UNAUTH_BURST at once and AUDIT_UNAUTH_RATE a second on average; the
 * rest are counted and reported in one summary record, so anonymous peers cannot make the
 * broker append and fdatasync without bound.
 */
#define AUDIT_UNAUTH_BURST 32.0
#define AUDIT_UNAUTH_RATE 4.0

struct veil_kbs_server {
    char *state_dir;
    char *policy_path;
    int listen_fd;
    uint16_t port;
    unsigned threads;
    int64_t cert_validity_s;
    SSL_CTX *ssl;
    X509 *serving_ca;
    EVP_PKEY *serving_ca_key;
    struct veil_buf serving_ca_pem;
    /* The broker's own names (its certificate's SANs): never granted to a workload. */
    char broker_names[MAX_SAN][VEIL__KBS_NAME_MAX + 1];
    size_t n_broker_names;
    X509_STORE *admin_store;
    struct veil_attest_roots *roots;
    struct veil_attest_collateral_files col;
    struct veil__kbs_store *store;
    struct veil_attest_policy *policy;
    int64_t policy_mtime;
    pthread_rwlock_t lock; /* store and policy */
    struct veil__kbs_audit audit;
    int wake[2];
    _Atomic bool stopping;
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    struct conn *queue[QUEUE_CAP]; /* complete requests waiting for a worker */
    size_t qhead, qlen;
    struct conn *returned; /* kept-alive connections going back to the listener */
    uint64_t handshake_timeout_ns, request_timeout_ns;
    /* Token bucket for the audit records of refusals before authentication. */
    pthread_mutex_t unauth_lock;
    double unauth_tokens;
    uint64_t unauth_refill_ns, unauth_suppressed;
    struct veil__kbs_nonces nonces; /* outstanding challenges */
    uint64_t nonce_ttl_ms;
};

/* ---- Small helpers ---- */

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = veil_malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int64_t file_mtime(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

/* Accepts any client certificate during the handshake: each endpoint checks it afterwards
 * (RA-TLS certificates are self-signed; admin certificates chain to the admin CA). The
 * handshake still proves the client holds the certificate's private key. */
static int accept_any_cert(int ok, X509_STORE_CTX *ctx)
{
    (void)ok;
    (void)ctx;
    return 1;
}

static bool set_nonblocking(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) == 0;
}

static veil_err parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len,
                             struct veil_errbuf *eb)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof(host))
        return veil_errf(eb, VEIL_E_INVALID, "listen address '%s' is not HOST:PORT", listen);
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') {
        h[strlen(h) - 1] = '\0';
        h++;
    }
    struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(h[0] ? h : NULL, colon + 1, &hints, &ai) != 0 || ai == NULL)
        return veil_errf(eb, VEIL_E_INVALID, "cannot resolve listen address '%s'", listen);
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return VEIL_OK;
}

/* ---- Opening ---- */

/*
 * The broker's TLS identity: broker.pem must be issued by the broker CA (broker-ca.pem) and
 * carry the broker usage. A state made when one CA signed both the broker and the workloads
 * is refused: a workload's serving certificate from that CA would pass for the broker.
 */
static veil_err open_broker_identity(const char *dir, X509 **ca, X509 **cert,
                                     struct veil_errbuf *eb)
{
    char *probe = path_join(dir, "broker-ca.pem");
    bool have = probe != NULL && access(probe, F_OK) == 0;
    veil_free(probe);
    if (!have)
        return veil_errf(eb, VEIL_E_STATE,
                         "%s: no broker CA (broker-ca.pem): this state signs the broker and the "
                         "workloads with one CA, so an admitted workload could impersonate the "
                         "broker; run `veil kbs migrate --state %s`, then pin broker-ca.pem in "
                         "administrators and `veil serve --kbs-ca`",
                         dir, dir);
    veil_err rc = veil__kbs_read_cert(dir, "broker-ca.pem", ca, eb);
    if (rc == VEIL_OK)
        rc = veil__kbs_read_cert(dir, "broker.pem", cert, eb);
    if (rc != VEIL_OK)
        return rc;
    EVP_PKEY *cak = X509_get0_pubkey(*ca);
    if (cak == NULL || X509_verify(*cert, cak) != 1 ||
        !veil__kbs_cert_has_eku(*cert, VEIL__KBS_OID_BROKER))
        return veil_errf(eb, VEIL_E_STATE,
                         "%s/broker.pem is not a broker certificate issued by broker-ca.pem", dir);
    return VEIL_OK;
}

/* A policy may grant a workload none of the broker's own names. */
static veil_err policy_names_ok(const struct veil_kbs_server *s, const struct veil_attest_policy *p,
                                struct veil_errbuf *eb)
{
    for (size_t i = 0; i < veil_attest_policy_workload_count(p); i++) {
        const struct veil_attest_workload *w = veil_attest_policy_workload(p, i);
        for (size_t b = 0; b < s->n_broker_names; b++)
            if (veil_attest_workload_grants_host(w, s->broker_names[b]))
                return veil_errf(eb, VEIL_E_FORMAT,
                                 "policy: workload \"%s\": name \"%s\" is the broker's own "
                                 "name; a serving certificate for it could impersonate the broker",
                                 veil_attest_workload_name(w), s->broker_names[b]);
    }
    return VEIL_OK;
}

veil_err veil_kbs_server_open(const struct veil_kbs_server_opts *opts, struct veil_kbs_server **out,
                              struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_kbs_server *s = NULL;
    uint8_t master[32];
    char *path = NULL;
    EVP_PKEY *broker_key = NULL;
    X509 *broker_cert = NULL, *admin_ca = NULL, *broker_ca = NULL;
    struct veil_buf sim;
    veil_buf_init(&sim, 65536);
    *out = NULL;

    s = veil_calloc(1, sizeof(*s));
    if (s == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "out of memory");
    s->listen_fd = -1;
    s->wake[0] = s->wake[1] = -1;
    s->audit.fd = -1;
    veil_buf_init(&s->serving_ca_pem, 65536);
    pthread_rwlock_init(&s->lock, NULL);
    pthread_mutex_init(&s->qlock, NULL);
    pthread_cond_init(&s->qcond, NULL);
    pthread_mutex_init(&s->unauth_lock, NULL);
    s->unauth_tokens = AUDIT_UNAUTH_BURST;
    s->unauth_refill_ns = veil_time_mono_ns();
    /* Workers block on the network and on audit flushes, so there are more than cores. */
    s->threads = opts->threads != 0 ? opts->threads : 8 * veil_cpu_count();
    s->cert_validity_s = opts->cert_validity_s > 0 ? opts->cert_validity_s : 86400;
    s->handshake_timeout_ns =
        (uint64_t)(opts->handshake_timeout_ms != 0 ? opts->handshake_timeout_ms : 5000) * 1000000;
    s->request_timeout_ns =
        (uint64_t)(opts->request_timeout_ms != 0 ? opts->request_timeout_ms : 10000) * 1000000;
    s->nonce_ttl_ms = opts->nonce_ttl_ms != 0 ? opts->nonce_ttl_ms : VEIL__KBS_NONCE_TTL_DEFAULT_MS;
    s->state_dir = veil_strdup(opts->state_dir);
    s->policy_path = path_join(opts->state_dir, "policy.json");
    if (s->state_dir == NULL || s->policy_path == NULL ||
        veil__kbs_nonces_init(&s->nonces,
                              opts->nonce_max != 0 ? opts->nonce_max : VEIL__KBS_NONCE_MAX_DEFAULT,
                              s->nonce_ttl_ms) != VEIL_OK) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "out of memory");
        goto out;
    }
    rc = veil__kbs_load_master(s->state_dir, master, eb);
    if (rc == VEIL_OK)
        rc = veil__kbs_read_cert(s->state_dir, "serving-ca.pem", &s->serving_ca, eb);
    if (rc == VEIL_OK)
        rc = veil__kbs_read_sealed_key(s->state_dir, "serving-ca.key", master, &s->serving_ca_key,
                                       eb);
    if (rc == VEIL_OK)
        rc = veil__kbs_read_cert(s->state_dir, "admin-ca.pem", &admin_ca, eb);
    if (rc == VEIL_OK)
        rc = open_broker_identity(s->state_dir, &broker_ca, &broker_cert, eb);
    if (rc == VEIL_OK)
        rc = veil__kbs_read_sealed_key(s->state_dir, "broker.key", master, &broker_key, eb);
    if (rc != VEIL_OK)
        goto out;
    if (veil__kbs_cert_names(broker_cert, s->broker_names, MAX_SAN, &s->n_broker_names) !=
        VEIL_OK) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "%s/broker.pem: unreadable names", s->state_dir);
        goto out;
    }
    if (veil__kbs_cert_pem(s->serving_ca, &s->serving_ca_pem) != VEIL_OK) {
        rc = veil_errf(eb, VEIL_E_CRYPTO, "cannot encode the serving CA");
        goto out;
    }
    path = path_join(s->state_dir, "keys.db");
    rc = path == NULL ? VEIL_E_NOMEM : veil__kbs_store_open(path, master, false, &s->store, eb);
    if (rc != VEIL_OK)
        goto out;
    rc = veil_attest_policy_load(s->policy_path, &s->policy, eb);
    if (rc == VEIL_OK)
        rc = policy_names_ok(s, s->policy, eb);
    if (rc != VEIL_OK)
        goto out;
    s->policy_mtime = file_mtime(s->policy_path);
    veil_free(path);
    path = path_join(s->state_dir, "audit.log");
    rc = path == NULL ? VEIL_E_NOMEM : veil__kbs_audit_open(&s->audit, path, eb);
    if (rc != VEIL_OK)
        goto out;

    rc = veil_attest_roots_new(&s->roots);
    if (rc == VEIL_OK && opts->roots_dir != NULL)
        rc = veil_attest_roots_load_dir(s->roots, opts->roots_dir, eb);
    if (rc == VEIL_OK && opts->sim_key_pem != NULL) {
        rc = veil_file_read_all(opts->sim_key_pem, sim.max, &sim, eb);
        if (rc == VEIL_OK)
            rc = veil_attest_roots_add_sim_key(s->roots, veil_buf_span(&sim), eb);
    }
    if (rc == VEIL_OK && opts->collateral_dir != NULL)
        rc = veil_attest_collateral_load_dir(&s->col, opts->collateral_dir, eb);
    if (rc != VEIL_OK)
        goto out;

    s->admin_store = X509_STORE_new();
    s->ssl = SSL_CTX_new(TLS_server_method());
    if (s->admin_store == NULL || X509_STORE_add_cert(s->admin_store, admin_ca) != 1 ||
        s->ssl == NULL || SSL_CTX_set_min_proto_version(s->ssl, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate(s->ssl, broker_cert) != 1 ||
        SSL_CTX_use_PrivateKey(s->ssl, broker_key) != 1 ||
        SSL_CTX_add1_chain_cert(s->ssl, broker_ca) != 1) {
        rc = veil_crypto_openssl_err(eb, VEIL_E_CRYPTO, "TLS set-up failed");
        goto out;
    }
    SSL_CTX_set_verify(s->ssl, SSL_VERIFY_PEER, accept_any_cert);
    SSL_CTX_set_session_cache_mode(s->ssl, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(s->ssl, 0);

    struct sockaddr_storage ss;
    socklen_t sl = 0;
    rc = parse_listen(opts->listen != NULL ? opts->listen : "127.0.0.1:8443", &ss, &sl, eb);
    if (rc != VEIL_OK)
        goto out;
    s->listen_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (s->listen_fd < 0 ||
        setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(s->listen_fd, (struct sockaddr *)&ss, sl) != 0 || listen(s->listen_fd, 128) != 0) {
        rc = veil_errf(eb, VEIL_E_IO, "cannot listen on %s: %s",
                       opts->listen != NULL ? opts->listen : "127.0.0.1:8443", strerror(errno));
        goto out;
    }
    struct sockaddr_storage bound;
    socklen_t bl = sizeof(bound);
    getsockname(s->listen_fd, (struct sockaddr *)&bound, &bl);
    s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    /* The listener accepts in a loop until EAGAIN and must never block there. */
    if (!set_nonblocking(s->listen_fd, true) || pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = veil_errf(eb, VEIL_E_IO, "pipe: %s", strerror(errno));
        goto out;
    }
    *out = s;
    s = NULL;
    rc = VEIL_OK;
out:
    veil_memzero(master, sizeof(master));
    veil_free(path);
    EVP_PKEY_free(broker_key);
    X509_free(broker_ca);
    X509_free(broker_cert);
    X509_free(admin_ca);
    veil_buf_release(&sim);
    veil_kbs_server_free(s);
    return rc;
}

uint16_t veil_kbs_server_port(const struct veil_kbs_server *s)
{
    return s->port;
}

void veil_kbs_server_stop(struct veil_kbs_server *s)
{
    atomic_store(&s->stopping, true);
    if (s->wake[1] >= 0) {
        ssize_t w = write(s->wake[1], "x", 1);
        (void)w;
    }
}

void veil_kbs_server_free(struct veil_kbs_server *s)
{
    if (s == NULL)
        return;
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    for (int i = 0; i < 2; i++)
        if (s->wake[i] >= 0)
            close(s->wake[i]);
    SSL_CTX_free(s->ssl);
    X509_free(s->serving_ca);
    EVP_PKEY_free(s->serving_ca_key);
    veil_buf_release(&s->serving_ca_pem);
    X509_STORE_free(s->admin_store);
    veil_attest_roots_free(s->roots);
    veil_attest_collateral_files_release(&s->col);
    veil__kbs_store_free(s->store);
    veil_attest_policy_free(s->policy);
    veil__kbs_audit_close(&s->audit);
    pthread_rwlock_destroy(&s->lock);
    pthread_mutex_destroy(&s->qlock);
    pthread_cond_destroy(&s->qcond);
    pthread_mutex_destroy(&s->unauth_lock);
    veil__kbs_nonces_release(&s->nonces);
    veil_free(s->state_dir);
    veil_free(s->policy_path);
    veil_free(s);
}

veil_err veil_kbs_server_reload_policy(struct veil_kbs_server *s, struct veil_errbuf *eb)
{
    struct veil_attest_policy *p = NULL;
    int64_t mtime = file_mtime(s->policy_path);
    veil_err rc = veil_attest_policy_load(s->policy_path, &p, eb);
    if (rc == VEIL_OK && (rc = policy_names_ok(s, p, eb)) != VEIL_OK) {
        veil_attest_policy_free(p);
        p = NULL;
    }
    if (rc != VEIL_OK) {
        VEIL_LOG_ERR("policy %s refused, keeping the previous one: %s", s->policy_path,
                     veil_errbuf_msg(eb, rc));
        pthread_rwlock_wrlock(&s->lock);
        s->policy_mtime = mtime; /* do not retry the same broken file in a loop */
        pthread_rwlock_unlock(&s->lock);
        return rc;
    }
    pthread_rwlock_wrlock(&s->lock);
    struct veil_attest_policy *old = s->policy;
    s->policy = p;
    s->policy_mtime = mtime;
    pthread_rwlock_unlock(&s->lock);
    veil_attest_policy_free(old);
    VEIL_LOG_INFO("policy reloaded from %s (%zu workloads)", s->policy_path,
                  veil_attest_policy_workload_count(p));
    return VEIL_OK;
}

/* ---- Responses and audit records ---- */

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

static veil_err respond(SSL *ssl, int status, struct veil_span body, bool close)
{
    struct veil_buf b;
    veil_buf_init_secret(&b, VEIL_LIMIT_KBS_BODY + 1024);
    veil_err rc = veil_buf_appendf(&b,
                                   "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                                   "Content-Length: %zu\r\nCache-Control: no-store\r\n%s\r\n",
                                   status, status_text(status), body.len,
                                   close ? "Connection: close\r\n" : "");
    if (rc == VEIL_OK)
        rc = veil_buf_append(&b, body.p, body.len);
    if (rc == VEIL_OK)
        rc = veil__kbs_write_all(ssl, b.p, b.len);
    veil_buf_release(&b);
    return rc;
}

static veil_err respond_error(SSL *ssl, int status, const char *msg, bool close)
{
    struct veil_buf b;
    veil_buf_init(&b, 4096);
    veil_err rc = veil_buf_append_str(&b, "{\"error\":");
    if (rc == VEIL_OK)
        rc = veil_json_append_str(&b, veil_span_from_str(msg));
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(&b, "}");
    if (rc == VEIL_OK)
        rc = respond(ssl, status, veil_buf_span(&b), close);
    veil_buf_release(&b);
    return rc;
}

/* Who is on the other end: address and, when present, certificate subject and fingerprint. */
struct peer {
    char addr[64];
    char subject[256];
    char fingerprint[65];
    X509 *cert; /* borrowed from the SSL */
};

static void describe_peer(int fd, SSL *ssl, struct peer *p)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[48] = "?";
    uint16_t port = 0;
    memset(p, 0, sizeof(*p));
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    snprintf(p->addr, sizeof(p->addr), "%s:%u", host, port);
    p->cert = SSL_get0_peer_certificate(ssl);
    if (p->cert != NULL) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(p->cert), NID_commonName, p->subject,
                                  sizeof(p->subject));
        uint8_t md[32];
        unsigned n = 0;
        if (X509_digest(p->cert, EVP_sha256(), md, &n) == 1 && n == 32)
            veil_hex_encode(md, 32, p->fingerprint);
    }
}

/* The measurement that identifies a workload of this TEE, as hex. */
static void measurement_hex(const struct veil_attest_claims *c, char out[97])
{
    switch (c->tee) {
    case VEIL_TEE_SGX:
        veil_hex_encode(c->mrenclave, 32, out);
        break;
    case VEIL_TEE_TDX:
        veil_hex_encode(c->mrtd, 48, out);
        break;
    case VEIL_TEE_SNP:
        veil_hex_encode(c->measurement, 48, out);
        break;
    case VEIL_TEE_SIM:
        veil_hex_encode(c->sim_measurement, 32, out);
        break;
    default:
        out[0] = '\0';
    }
}

/* Appends one audit record; a record that cannot be written blocks the decision. */
static veil_err audit(struct veil_kbs_server *s, const struct peer *p, const char *action,
                      bool allowed, const char *reason, const struct veil_attest_claims *claims,
                      const char *workload, const char *const *keys, size_t nkeys)
{
    struct veil_buf b;
    char now[21], meas[97];
    veil_buf_init(&b, 64 << 10);
    veil_time_format_rfc3339(veil_time_now(), now);
    veil_err rc = veil_buf_appendf(&b,
                                   "{\"time\":\"%s\",\"peer\":\"%s\",\"action\":\"%s\","
                                   "\"decision\":\"%s\",\"reason\":",
                                   now, p->addr, action, allowed ? "allow" : "deny");
    if (rc == VEIL_OK)
        rc = veil_json_append_str(&b, veil_span_from_str(reason != NULL ? reason : ""));
    if (rc == VEIL_OK && p->subject[0] != '\0') {
        rc = veil_buf_append_str(&b, ",\"cert_subject\":");
        if (rc == VEIL_OK)
            rc = veil_json_append_str(&b, veil_span_from_str(p->subject));
        if (rc == VEIL_OK)
            rc = veil_buf_appendf(&b, ",\"cert_sha256\":\"%s\"", p->fingerprint);
    }
    if (rc == VEIL_OK && claims != NULL) {
        measurement_hex(claims, meas);
        rc = veil_buf_appendf(&b, ",\"tee\":\"%s\",\"verified\":%s",
                              veil_attest_tee_name(claims->tee),
                              claims->verified ? "true" : "false");
        if (rc == VEIL_OK && claims->verified)
            rc = veil_buf_appendf(&b, ",\"measurement\":\"%s\",\"debug\":%s,\"tcb_status\":", meas,
                                  claims->debug ? "true" : "false");
        if (rc == VEIL_OK && claims->verified)
            rc = veil_json_append_str(&b, veil_span_from_str(claims->tcb_status));
    }
    if (rc == VEIL_OK && workload != NULL) {
        rc = veil_buf_append_str(&b, ",\"workload\":");
        if (rc == VEIL_OK)
            rc = veil_json_append_str(&b, veil_span_from_str(workload));
    }
    if (rc == VEIL_OK && nkeys > 0) {
        rc = veil_buf_append_str(&b, ",\"keys\":[");
        for (size_t i = 0; rc == VEIL_OK && i < nkeys; i++) {
            if (i > 0)
                rc = veil_buf_append_u8(&b, ',');
            if (rc == VEIL_OK)
                rc = veil_json_append_str(&b, veil_span_from_str(keys[i]));
        }
        if (rc == VEIL_OK)
            rc = veil_buf_append_u8(&b, ']');
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_u8(&b, '}');
    if (rc == VEIL_OK)
        rc = veil__kbs_audit_write(&s->audit, veil_buf_span(&b));
    if (rc != VEIL_OK)
        VEIL_LOG_ERR_RC(rc, "audit log write failed; refusing the %s request", action);
    veil_buf_release(&b);
    return rc;
}

/*
 * Takes a token for an unauthenticated refusal's record: true (with *suppressed set to the
 * refusals not recorded since the last token, now reported by the caller) or false (counted).
 */
static bool unauth_admit(struct veil_kbs_server *s, uint64_t *suppressed)
{
    pthread_mutex_lock(&s->unauth_lock);
    uint64_t now = veil_time_mono_ns();
    s->unauth_tokens += (double)(now - s->unauth_refill_ns) / 1e9 * AUDIT_UNAUTH_RATE;
    if (s->unauth_tokens > AUDIT_UNAUTH_BURST)
        s->unauth_tokens = AUDIT_UNAUTH_BURST;
    s->unauth_refill_ns = now;
    bool ok = s->unauth_tokens >= 1.0;
    if (ok) {
        s->unauth_tokens -= 1.0;
        *suppressed = s->unauth_suppressed;
        s->unauth_suppressed = 0;
    } else {
        s->unauth_suppressed++;
    }
    pthread_mutex_unlock(&s->unauth_lock);
    return ok;
}

/* The summary record of n unrecorded refusals. */
static veil_err audit_suppressed(struct veil_kbs_server *s, uint64_t n)
{
    struct peer anyone;
    char reason[64];
    memset(&anyone, 0, sizeof(anyone));
    snprintf(anyone.addr, sizeof(anyone.addr), "*");
    snprintf(reason, sizeof(reason), "%llu refusals suppressed", (unsigned long long)n);
    return audit(s, &anyone, "unauthenticated", false, reason, NULL, NULL, NULL, 0);
}

/*
 * Audits the refusal of a peer that has not authenticated, within the rate limit: over it the
 * refusal is only counted and VEIL_OK returned (the refusal itself still happens).
 */
static veil_err audit_unauth(struct veil_kbs_server *s, const struct peer *p, const char *action,
                             const char *reason, const struct veil_attest_claims *claims)
{
    uint64_t n = 0;
    if (!unauth_admit(s, &n))
        return VEIL_OK;
    veil_err rc = n > 0 ? audit_suppressed(s, n) : VEIL_OK;
    if (rc == VEIL_OK)
        rc = audit(s, p, action, false, reason, claims, NULL, NULL, 0);
    return rc;
}

/* ---- Challenge ---- */

/*
 * POST /kbs/v1/challenge: a fresh nonce for one provisioning request. Any peer may ask, with
 * or without a certificate: it releases nothing, and the table of outstanding nonces is bounded
 * (503 when full). Issuing is not audited (a record per anonymous request is the flood the
 * audit's token bucket exists to stop); refusals are, within that bucket.
 */
static veil_err handle_challenge(struct veil_kbs_server *s, SSL *ssl, const struct peer *p)
{
    uint8_t nonce[VEIL__KBS_NONCE_LEN];
    char hex[2 * VEIL__KBS_NONCE_LEN + 1], body[160];
    veil_err rc = veil__kbs_nonce_issue(&s->nonces, veil_time_mono_ns(), nonce);
    if (rc == VEIL_E_LIMIT) {
        (void)audit_unauth(s, p, "challenge", "too many outstanding challenges", NULL);
        return respond_error(ssl, 503, "too many outstanding challenges; retry later", true);
    }
    if (rc != VEIL_OK)
        return respond_error(ssl, 500, "cannot draw a nonce", true);
    veil_hex_encode(nonce, sizeof(nonce), hex);
    int n = snprintf(body, sizeof(body), "{\"nonce\":\"%s\",\"expires_in_ms\":%llu}", hex,
                     (unsigned long long)s->nonce_ttl_ms);
    return respond(ssl, 200, veil_span_make(body, (size_t)n), false);
}

/* ---- Provisioning ---- */

static bool granted(const struct veil_attest_workload *w, const struct veil__kbs_key *k)
{
    return !k->retired && (veil_attest_workload_may_receive(w, k->id) ||
                           veil_attest_workload_may_receive(w, k->name));
}

static veil_err handle_provision(struct veil_kbs_server *s, SSL *ssl, const struct peer *p,
                                 struct veil_span body)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_arena a;
    struct veil_json *req = NULL;
    struct veil_attest_claims *claims = NULL;
    const char *released[VEIL_LIMIT_KBS_KEYS];
    const struct veil__kbs_key *rel_keys[VEIL_LIMIT_KBS_KEYS];
    size_t nrel = 0;
    const char *san[MAX_SAN + 1] = {NULL};
    X509 *issued = NULL;
    struct veil_buf out;
    char reason[400];
    veil_arena_init(&a, 8192, VEIL_LIMIT_KBS_BODY * 4);
    veil_buf_init_secret(&out, VEIL_LIMIT_KBS_BODY);
    bool locked = false;

    if (p->cert == NULL) {
        (void)audit_unauth(s, p, "provision", "no client certificate", NULL);
        rc = respond_error(ssl, 401, "an RA-TLS client certificate is required", true);
        goto out;
    }
    struct veil_errbuf jeb = {{0}};
    if (body.len > 0 &&
        (veil_json_parse(body, &a, &req, &jeb) != VEIL_OK || req->type != VEIL_JSON_OBJECT)) {
        snprintf(reason, sizeof(reason), "malformed request: %s", jeb.msg);
        (void)audit_unauth(s, p, "provision", reason, NULL);
        rc = respond_error(ssl, 400, reason, true);
        goto out;
    }
    const struct veil_json *want = veil_json_get(req, "keys");
    const struct veil_json *sanj = veil_json_get(req, "san");
    if ((want != NULL && want->type != VEIL_JSON_ARRAY) ||
        (sanj != NULL && (sanj->type != VEIL_JSON_ARRAY || sanj->n > MAX_SAN))) {
        rc = respond_error(
            ssl, 400, "\"keys\" and \"san\" must be arrays of strings (san: at most 16)", true);
        goto out;
    }
    for (size_t i = 0; sanj != NULL && i < sanj->n; i++) {
        const struct veil_json *v = sanj->items[i];
        /* Exact DNS names or IP addresses only: a newline or other control character would
         * reach the certificate, the audit log and the logs of whoever reads them. */
        if (v->type != VEIL_JSON_STRING || !veil_attest_host_name_ok(v->str, v->str_len)) {
            snprintf(reason, sizeof(reason),
                     "\"san\"[%zu] is not a DNS name or IP address (letters, digits, '-' and "
                     "'.'; no control characters, spaces, ',' or '*')",
                     i);
            rc = respond_error(ssl, 400, reason, true);
            goto out;
        }
        san[i] = v->str;
    }

    /*
     * Freshness: the evidence must commit to a nonce this broker issued, unexpired and never
     * seen before, so a captured certificate and key cannot be presented again (issue 17). The
     * nonce is consumed here, before anything is verified: whatever the request's outcome, it
     * is spent. Attestation below proves REPORT_DATA commits to this very nonce.
     */
    struct veil_span nonce, ev_view, claims_view;
    const char *stale = NULL;
    bool fresh = false;
    veil_err nrc = veil_attest_ratls_get_nonce(p->cert, &nonce);
    if (nrc == VEIL_E_NOMEM) {
        rc = respond_error(ssl, 500, "out of memory", true);
        goto out;
    }
    if (nrc == VEIL_E_NOTFOUND &&
        veil_attest_ratls_get_evidence(p->cert, &ev_view, &claims_view) == VEIL_OK) {
        stale = "freshness: the RA-TLS certificate carries no nonce (POST /kbs/v1/challenge "
                "first and bind its nonce into the evidence)";
    } else if (nrc == VEIL_OK) {
        switch (veil__kbs_nonce_consume(&s->nonces, veil_time_mono_ns(), nonce)) {
        case VEIL__KBS_NONCE_FRESH:
            fresh = true;
            break;
        case VEIL__KBS_NONCE_EXPIRED:
            stale = "freshness: the nonce has expired";
            break;
        default:
            stale = "freshness: the nonce is unknown or was already used";
        }
    }
    if (stale != NULL) {
        if (audit_unauth(s, p, "provision", stale, NULL) != VEIL_OK) {
            rc = respond_error(ssl, 500, "audit log unavailable", true);
            goto out;
        }
        rc = respond_error(ssl, 403, stale, true);
        goto out;
    }

    /* Attestation: the certificate's evidence, bound to its key, verified against the roots. */
    claims = veil_calloc(1, sizeof(*claims));
    if (claims == NULL) {
        rc = respond_error(ssl, 500, "out of memory", true);
        goto out;
    }
    struct veil_attest_verify_opts vo = {.now = veil_time_now()};
    veil_err vrc = veil_attest_ratls_verify(p->cert, &s->col.col, s->roots, &vo, claims);
    if (vrc != VEIL_OK) {
        snprintf(reason, sizeof(reason), "attestation failed: %s: %s",
                 veil_attest_reason_name(claims->reason), claims->detail);
        if (audit_unauth(s, p, "provision", reason, claims) != VEIL_OK) {
            rc = respond_error(ssl, 500, "audit log unavailable", true);
            goto out;
        }
        snprintf(reason, sizeof(reason), "attestation failed: %s",
                 veil_attest_reason_str(claims->reason));
        rc = respond_error(ssl, 403, reason, true);
        goto out;
    }
    /* Attestation fails above without an extension or with malformed claims; this check keeps
     * a verified certificate without a consumed nonce out all the same. */
    if (!fresh) {
        rc = respond_error(ssl, 403, "freshness: no nonce was consumed", true);
        goto out;
    }

    pthread_rwlock_rdlock(&s->lock);
    locked = true;
    const struct veil_attest_workload *w = NULL;
    struct veil_errbuf peb = {{0}};
    if (veil_attest_policy_match(s->policy, claims, vo.now, &w, &peb) != VEIL_OK) {
        snprintf(reason, sizeof(reason), "policy: %s", veil_errbuf_msg(&peb, VEIL_E_REJECTED));
        if (audit(s, p, "provision", false, reason, claims, NULL, NULL, 0) != VEIL_OK)
            rc = respond_error(ssl, 500, "audit log unavailable", true);
        else
            rc = respond_error(ssl, 403, reason, true);
        goto out;
    }
    const char *wname = veil_attest_workload_name(w);
    if (want != NULL && want->n > 0) {
        for (size_t i = 0; i < want->n && i < VEIL_LIMIT_KBS_KEYS; i++) {
            const struct veil_json *v = want->items[i];
            const struct veil__kbs_key *k =
                v->type == VEIL_JSON_STRING ? veil__kbs_store_find(s->store, v->str) : NULL;
            if (k == NULL || !granted(w, k)) {
                snprintf(reason, sizeof(reason), "key '%.128s' is %s for workload '%.128s'",
                         v->type == VEIL_JSON_STRING ? v->str : "?",
                         k == NULL    ? "unknown"
                         : k->retired ? "retired"
                                      : "not granted",
                         wname);
                if (audit(s, p, "provision", false, reason, claims, wname, NULL, 0) != VEIL_OK)
                    rc = respond_error(ssl, 500, "audit log unavailable", true);
                else
                    rc = respond_error(ssl, 403, reason, true);
                goto out;
            }
            rel_keys[nrel] = k;
            released[nrel++] = k->id;
        }
    } else {
        for (size_t i = 0; i < s->store->n; i++)
            if (granted(w, &s->store->keys[i])) {
                rel_keys[nrel] = &s->store->keys[i];
                released[nrel++] = s->store->keys[i].id;
            }
    }
    /*
     * The serving certificate carries only names the policy grants this workload: those asked
     * for, each granted, or all of them. A workload cannot choose the broker's names (the
     * policy refuses those) nor any other name, so its certificate speaks only for it.
     */
    const char *deny = NULL;
    if (veil_attest_workload_host_count(w) == 0) {
        snprintf(reason, sizeof(reason),
                 "policy grants workload '%.128s' no names for a serving certificate (\"names\")",
                 wname);
        deny = reason;
    } else if (sanj == NULL || sanj->n == 0) {
        for (size_t i = 0; i < veil_attest_workload_host_count(w) && i < MAX_SAN; i++)
            san[i] = veil_attest_workload_host(w, i);
    } else {
        for (size_t i = 0; san[i] != NULL && deny == NULL; i++)
            if (!veil_attest_workload_grants_host(w, san[i])) {
                snprintf(reason, sizeof(reason),
                         "name '%.200s' is not granted to workload '%.128s'", san[i], wname);
                deny = reason;
            }
    }
    if (deny != NULL) {
        if (audit(s, p, "provision", false, deny, claims, wname, NULL, 0) != VEIL_OK)
            rc = respond_error(ssl, 500, "audit log unavailable", true);
        else
            rc = respond_error(ssl, 403, deny, true);
        goto out;
    }
    /* The policy may shorten (or lengthen) the lifetime per workload; the server renews at two
     * thirds of it, so a short lifetime bounds how long a certificate outlives its workload's
     * admission. */
    EVP_PKEY *pub = X509_get0_pubkey(p->cert);
    int64_t lifetime = veil_attest_workload_cert_lifetime(w);
    if (pub == NULL || veil__kbs_issue(s->serving_ca, s->serving_ca_key, pub, wname, san,
                                       lifetime > 0 ? lifetime : s->cert_validity_s,
                                       VEIL_KBS_CERT_SERVING, &issued) != VEIL_OK) {
        rc =
            respond_error(ssl, 400, "cannot issue a certificate for this key or these names", true);
        goto out;
    }
    rc = veil_buf_append_str(&out, "{\"workload\":");
    if (rc == VEIL_OK)
        rc = veil_json_append_str(&out, veil_span_from_str(wname));
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(&out, ",\"keys\":[");
    for (size_t i = 0; rc == VEIL_OK && i < nrel; i++) {
        char hex[65];
        veil_hex_encode(rel_keys[i]->key, 32, hex);
        rc = veil_buf_appendf(&out, "%s{\"id\":", i ? "," : "");
        if (rc == VEIL_OK)
            rc = veil_json_append_str(&out, veil_span_from_str(rel_keys[i]->id));
        if (rc == VEIL_OK)
            rc = veil_buf_appendf(&out, ",\"key\":\"%s\"}", hex);
        veil_memzero(hex, sizeof(hex));
    }
    struct veil_buf pem;
    veil_buf_init(&pem, 65536);
    if (rc == VEIL_OK)
        rc = veil__kbs_cert_pem(issued, &pem);
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(&out, "]");
    /* The policy's minimum versions travel with the keys: the server refuses older ones. */
    for (size_t i = 0; rc == VEIL_OK && i < veil_attest_workload_min_version_count(w); i++) {
        int64_t mv = 0;
        const char *model = veil_attest_workload_min_version(w, i, &mv);
        rc = veil_buf_append_str(&out, i == 0 ? ",\"min_versions\":{" : ",");
        if (rc == VEIL_OK)
            rc = veil_json_append_str(&out, veil_span_from_str(model));
        if (rc == VEIL_OK)
            rc = veil_buf_appendf(&out, ":%lld", (long long)mv);
        if (rc == VEIL_OK && i + 1 == veil_attest_workload_min_version_count(w))
            rc = veil_buf_append_str(&out, "}");
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(&out, ",\"certificate\":");
    if (rc == VEIL_OK)
        rc = veil_json_append_str(&out, veil_buf_span(&pem));
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(&out, ",\"ca\":");
    if (rc == VEIL_OK)
        rc = veil_json_append_str(&out, veil_buf_span(&s->serving_ca_pem));
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(&out, "}");
    veil_buf_release(&pem);
    if (rc != VEIL_OK) {
        rc = respond_error(ssl, 500, "response too large", true);
        goto out;
    }
    if (audit(s, p, "provision", true, "policy matched", claims, wname, released, nrel) !=
        VEIL_OK) {
        rc = respond_error(ssl, 500, "audit log unavailable", true);
        goto out;
    }
    pthread_rwlock_unlock(&s->lock);
    locked = false;
    rc = respond(ssl, 200, veil_buf_span(&out), false);
out:
    if (locked)
        pthread_rwlock_unlock(&s->lock);
    X509_free(issued);
    veil_free(claims);
    veil_buf_release(&out);
    veil_arena_release(&a);
    return rc;
}

/* ---- Administration ---- */

static bool is_admin(struct veil_kbs_server *s, const struct peer *p)
{
    if (p->cert == NULL)
        return false;
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    bool ok = ctx != NULL && X509_STORE_CTX_init(ctx, s->admin_store, p->cert, NULL) == 1 &&
              X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) == 1 &&
              X509_verify_cert(ctx) == 1;
    X509_STORE_CTX_free(ctx);
    return ok;
}

static veil_err respond_key(SSL *ssl, const struct veil__kbs_key *k, bool with_material)
{
    struct veil_buf b;
    char hex[65];
    veil_buf_init_secret(&b, 4096);
    veil_err rc = veil_buf_append_str(&b, "{\"id\":");
    if (rc == VEIL_OK)
        rc = veil_json_append_str(&b, veil_span_from_str(k->id));
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(&b, ",\"name\":");
    if (rc == VEIL_OK)
        rc = veil_json_append_str(&b, veil_span_from_str(k->name));
    if (rc == VEIL_OK)
        rc = veil_buf_appendf(&b, ",\"version\":%u,\"retired\":%s,\"created\":%lld", k->version,
                              k->retired ? "true" : "false", (long long)k->created);
    if (rc == VEIL_OK && with_material) {
        veil_hex_encode(k->key, 32, hex);
        rc = veil_buf_appendf(&b, ",\"key\":\"%s\"", hex);
        veil_memzero(hex, sizeof(hex));
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_u8(&b, '}');
    if (rc == VEIL_OK)
        rc = respond(ssl, 200, veil_buf_span(&b), false);
    veil_buf_release(&b);
    return rc;
}

static veil_err admin_list(struct veil_kbs_server *s, SSL *ssl)
{
    struct veil_buf b;
    veil_buf_init(&b, VEIL_LIMIT_KBS_BODY);
    pthread_rwlock_rdlock(&s->lock);
    veil_err rc = veil_buf_append_str(&b, "{\"keys\":[");
    for (size_t i = 0; rc == VEIL_OK && i < s->store->n; i++) {
        const struct veil__kbs_key *k = &s->store->keys[i];
        rc = veil_buf_appendf(&b, "%s{\"id\":", i ? "," : "");
        if (rc == VEIL_OK)
            rc = veil_json_append_str(&b, veil_span_from_str(k->id));
        if (rc == VEIL_OK)
            rc = veil_buf_append_str(&b, ",\"name\":");
        if (rc == VEIL_OK)
            rc = veil_json_append_str(&b, veil_span_from_str(k->name));
        if (rc == VEIL_OK)
            rc = veil_buf_appendf(&b, ",\"version\":%u,\"retired\":%s,\"created\":%lld}",
                                  k->version, k->retired ? "true" : "false", (long long)k->created);
    }
    size_t nw = veil_attest_policy_workload_count(s->policy);
    pthread_rwlock_unlock(&s->lock);
    if (rc == VEIL_OK)
        rc = veil_buf_appendf(&b, "],\"policy_workloads\":%zu}", nw);
    if (rc == VEIL_OK)
        rc = respond(ssl, 200, veil_buf_span(&b), false);
    else
        rc = respond_error(ssl, 500, "listing too large", false);
    veil_buf_release(&b);
    return rc;
}

static veil_err admin_add(struct veil_kbs_server *s, SSL *ssl, const struct peer *p,
                          struct veil_span body, const char *rotate_name)
{
    struct veil_arena a;
    struct veil_json *req = NULL;
    struct veil_errbuf eb = {{0}};
    uint8_t raw[32];
    bool have_raw = false;
    const char *name = rotate_name, *id = NULL;
    veil_err rc;
    veil_arena_init(&a, 4096, VEIL_LIMIT_KBS_BODY * 4);
    if (rotate_name == NULL) {
        if (veil_json_parse(body, &a, &req, &eb) != VEIL_OK || req->type != VEIL_JSON_OBJECT) {
            rc = respond_error(ssl, 400, eb.msg[0] ? eb.msg : "body must be a JSON object", false);
            goto out;
        }
        name = veil_json_get_str(req, "name");
        id = veil_json_get_str(req, "id");
        const char *hex = veil_json_get_str(req, "key");
        if (name == NULL) {
            rc = respond_error(ssl, 400, "\"name\" is required", false);
            goto out;
        }
        if (hex != NULL) {
            if (veil_hex_decode(veil_span_from_str(hex), raw, 32) != VEIL_OK) {
                rc = respond_error(ssl, 400, "\"key\" must be 64 hex digits", false);
                goto out;
            }
            have_raw = true;
        }
    }
    pthread_rwlock_wrlock(&s->lock);
    if (rotate_name != NULL) {
        bool known = false;
        for (size_t i = 0; i < s->store->n; i++)
            known = known || strcmp(s->store->keys[i].name, rotate_name) == 0;
        if (!known) {
            pthread_rwlock_unlock(&s->lock);
            rc = respond_error(ssl, 404, "no key with this name to rotate", false);
            goto out;
        }
    }
    const struct veil__kbs_key *k = NULL;
    rc = veil__kbs_store_add(s->store, name, id, have_raw ? raw : NULL, &k, &eb);
    const char *ids[1] = {k != NULL ? k->id : (id != NULL ? id : name)};
    veil_err arc =
        audit(s, p, rotate_name != NULL ? "rotate-key" : "add-key", rc == VEIL_OK,
              rc == VEIL_OK ? "committed" : veil_errbuf_msg(&eb, rc), NULL, NULL, ids, 1);
    if (rc == VEIL_OK) {
        /* The material goes back only for keys the broker generated. */
        rc = respond_key(ssl, k, !have_raw);
    } else {
        int st = rc == VEIL_E_EXISTS ? 409 : rc == VEIL_E_INVALID || rc == VEIL_E_LIMIT ? 400 : 500;
        rc = respond_error(ssl, st, veil_errbuf_msg(&eb, rc), false);
    }
    pthread_rwlock_unlock(&s->lock);
    (void)arc;
out:
    veil_memzero(raw, sizeof(raw));
    veil_arena_release(&a);
    return rc;
}

static veil_err admin_retire(struct veil_kbs_server *s, SSL *ssl, const struct peer *p,
                             const char *id)
{
    struct veil_errbuf eb = {{0}};
    pthread_rwlock_wrlock(&s->lock);
    veil_err rc = veil__kbs_store_retire(s->store, id, &eb);
    const char *ids[1] = {id};
    (void)audit(s, p, "retire-key", rc == VEIL_OK, rc == VEIL_OK ? "committed" : eb.msg, NULL, NULL,
                ids, 1);
    const struct veil__kbs_key *k = veil__kbs_store_find(s->store, id);
    if (rc == VEIL_OK && k != NULL)
        rc = respond_key(ssl, k, false);
    else
        rc = respond_error(ssl, rc == VEIL_E_NOTFOUND ? 404 : 500, veil_errbuf_msg(&eb, rc), false);
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

static veil_err admin_policy(struct veil_kbs_server *s, SSL *ssl, const struct peer *p,
                             struct veil_span body)
{
    struct veil_errbuf eb = {{0}};
    struct veil_attest_policy *np = NULL;
    veil_err rc = veil_attest_policy_parse(body, &np, &eb);
    if (rc == VEIL_OK)
        rc = policy_names_ok(s, np, &eb);
    if (rc != VEIL_OK) {
        veil_attest_policy_free(np);
        (void)audit(s, p, "replace-policy", false, eb.msg, NULL, NULL, NULL, 0);
        return respond_error(ssl, 400, veil_errbuf_msg(&eb, rc), false);
    }
    pthread_rwlock_wrlock(&s->lock);
    rc = veil_file_write_atomic(s->policy_path, body, 0600, VEIL_ATOMIC_REPLACE, &eb);
    if (rc == VEIL_OK) {
        veil_attest_policy_free(s->policy);
        s->policy = np;
        np = NULL;
        s->policy_mtime = file_mtime(s->policy_path);
    }
    (void)audit(s, p, "replace-policy", rc == VEIL_OK, rc == VEIL_OK ? "committed" : eb.msg, NULL,
                NULL, NULL, 0);
    pthread_rwlock_unlock(&s->lock);
    veil_attest_policy_free(np);
    if (rc != VEIL_OK)
        return respond_error(ssl, 500, veil_errbuf_msg(&eb, rc), false);
    return respond(ssl, 200, veil_span_from_str("{\"policy\":\"replaced\"}"), false);
}

static veil_err handle_admin(struct veil_kbs_server *s, SSL *ssl, const struct peer *p,
                             const struct veil_kbs_http_head *h, struct veil_span body)
{
    if (!is_admin(s, p)) {
        (void)audit_unauth(s, p, "admin", "client certificate not issued by the admin CA", NULL);
        return respond_error(ssl, 403, "an administrator certificate is required", true);
    }
    struct veil_span path = h->path;
    char tail[200];
    bool get = veil_span_eq_str(h->method, "GET"), post = veil_span_eq_str(h->method, "POST"),
         put = veil_span_eq_str(h->method, "PUT");
    if (veil_span_eq_str(path, "/kbs/v1/admin/keys")) {
        if (get)
            return admin_list(s, ssl);
        if (post)
            return admin_add(s, ssl, p, body, NULL);
        return respond_error(ssl, 405, "use GET or POST", false);
    }
    if (veil_span_eq_str(path, "/kbs/v1/admin/policy")) {
        if (put)
            return admin_policy(s, ssl, p, body);
        return respond_error(ssl, 405, "use PUT", false);
    }
    if (veil_span_starts_with(path, "/kbs/v1/admin/keys/") && path.len - 19 < sizeof(tail)) {
        memcpy(tail, path.p + 19, path.len - 19);
        tail[path.len - 19] = '\0';
        char *slash = strrchr(tail, '/');
        if (slash != NULL && post && strcmp(slash, "/rotate") == 0) {
            *slash = '\0';
            return admin_add(s, ssl, p, body, tail);
        }
        if (slash != NULL && post && strcmp(slash, "/retire") == 0) {
            *slash = '\0';
            return admin_retire(s, ssl, p, tail);
        }
    }
    return respond_error(ssl, 404, "no such admin endpoint", false);
}

/* ---- Connections ---- */

/*
 * A connection from accept to a complete request is owned by the listener thread, which
 * drives its TLS handshake and reads its request without blocking. A worker only ever holds a
 * connection whose request is all there, so peers that trickle bytes hold a slot of the
 * bounded pending set, not a worker, and lose it at their deadline.
 */
struct conn {
    int fd;
    SSL *ssl;
    struct veil_buf buf; /* secret: an admin request body may carry a model key */
    uint64_t handshake_deadline_ns, deadline_ns;
    bool handshaken;
    short events;
    veil_err rc; /* when handed to a worker: VEIL_OK, or the framing error to answer */
    int requests;
    struct conn *next;
};

static void conn_free(struct conn *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl);
    ERR_clear_error();
    if (c->fd >= 0)
        close(c->fd);
    veil_buf_release(&c->buf);
    veil_free(c);
}

static struct conn *conn_new(struct veil_kbs_server *s, int fd)
{
    struct conn *c = veil_calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->fd = fd;
    veil_buf_init_secret(&c->buf, VEIL_LIMIT_KBS_HEAD + VEIL_LIMIT_KBS_BODY);
    c->ssl = SSL_new(s->ssl);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
        c->fd = -1; /* the caller closes fd */
        conn_free(c);
        return NULL;
    }
    uint64_t now = veil_time_mono_ns();
    c->deadline_ns = now + s->request_timeout_ns;
    c->handshake_deadline_ns = now + s->handshake_timeout_ns;
    if (c->handshake_deadline_ns > c->deadline_ns)
        c->handshake_deadline_ns = c->deadline_ns;
    c->events = POLLIN;
    return c;
}

/* After a non-blocking TLS call returned r: 0 to wait for c->events, -1 to drop c. */
static int tls_wait(struct conn *c, int r)
{
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        c->events = POLLIN;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        c->events = POLLOUT;
        return 0;
    default:
        ERR_clear_error();
        return -1;
    }
}

/*
 * Advances c without blocking: 1 when it is ready for a worker (a whole request, or a framing
 * error to answer, in c->rc), 0 while it waits for the peer, -1 when it is to be dropped.
 */
static int conn_advance(struct conn *c)
{
    if (!c->handshaken) {
        int r = SSL_accept(c->ssl);
        if (r != 1)
            return tls_wait(c, r);
        c->handshaken = true;
    }
    for (;;) {
        struct veil_kbs_http_head h;
        struct veil_span body;
        c->rc = veil__kbs_http_complete(veil_buf_span(&c->buf), true, &h, &body);
        if (c->rc != VEIL_E_INCOMPLETE)
            return 1;
        size_t room = c->buf.max - c->buf.len < 4096 ? c->buf.max - c->buf.len : 4096;
        c->rc = room == 0 ? VEIL_E_LIMIT : veil_buf_reserve(&c->buf, room);
        if (c->rc != VEIL_OK)
            return 1;
        room = c->buf.cap - 1 - c->buf.len;
        if (room > c->buf.max - c->buf.len)
            room = c->buf.max - c->buf.len;
        int r = SSL_read(c->ssl, c->buf.p + c->buf.len, room > 65536 ? 65536 : (int)room);
        if (r <= 0)
            return tls_wait(c, r);
        c->buf.len += (size_t)r;
    }
}

/* Answers the complete request in c (blocking, with a send timeout). Returns whether the
 * connection stays open for another request. */
static bool serve_request(struct veil_kbs_server *s, struct conn *c)
{
    struct timeval tv = {IO_TIMEOUT_S, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (!set_nonblocking(c->fd, false))
        return false;
    if (c->rc != VEIL_OK) {
        (void)respond_error(c->ssl, c->rc == VEIL_E_LIMIT ? 413 : 400,
                            c->rc == VEIL_E_LIMIT ? "request too large" : "malformed HTTP request",
                            true);
        return false;
    }
    struct peer p;
    describe_peer(c->fd, c->ssl, &p);
    struct veil_kbs_http_head h;
    struct veil_span body;
    veil_err rc = veil__kbs_http_complete(veil_buf_span(&c->buf), true, &h, &body);
    if (rc != VEIL_OK)
        return false;
    if (veil_span_eq_str(h.path, "/kbs/v1/challenge")) {
        rc = veil_span_eq_str(h.method, "POST") ? handle_challenge(s, c->ssl, &p)
                                                : respond_error(c->ssl, 405, "use POST", false);
    } else if (veil_span_eq_str(h.path, "/kbs/v1/provision")) {
        rc = veil_span_eq_str(h.method, "POST") ? handle_provision(s, c->ssl, &p, body)
                                                : respond_error(c->ssl, 405, "use POST", false);
    } else if (veil_span_starts_with(h.path, "/kbs/v1/admin/")) {
        rc = handle_admin(s, c->ssl, &p, &h, body);
    } else {
        rc = respond_error(c->ssl, 404, "no such endpoint", false);
    }
    return rc == VEIL_OK && !h.close && ++c->requests < MAX_REQUESTS_PER_CONN &&
           !atomic_load(&s->stopping) && set_nonblocking(c->fd, true);
}

static void *worker_main(void *arg)
{
    struct veil_kbs_server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->qlock);
        while (s->qlen == 0 && !atomic_load(&s->stopping))
            pthread_cond_wait(&s->qcond, &s->qlock);
        if (s->qlen == 0) {
            pthread_mutex_unlock(&s->qlock);
            return NULL;
        }
        struct conn *c = s->queue[s->qhead];
        s->qhead = (s->qhead + 1) % QUEUE_CAP;
        s->qlen--;
        pthread_mutex_unlock(&s->qlock);
        if (serve_request(s, c)) {
            /* Keep-alive: the next request is read by the listener, under a fresh deadline. */
            veil_buf_reset(&c->buf);
            c->deadline_ns = veil_time_mono_ns() + s->request_timeout_ns;
            c->events = POLLIN;
            pthread_mutex_lock(&s->qlock);
            c->next = s->returned;
            s->returned = c;
            pthread_mutex_unlock(&s->qlock);
            ssize_t w = write(s->wake[1], "r", 1);
            (void)w;
        } else {
            SSL_shutdown(c->ssl);
            conn_free(c);
        }
    }
}

/* Hands c to the workers; false (c untouched) when their queue is full. */
static bool dispatch(struct veil_kbs_server *s, struct conn *c)
{
    pthread_mutex_lock(&s->qlock);
    bool ok = s->qlen < QUEUE_CAP;
    if (ok) {
        s->queue[(s->qhead + s->qlen) % QUEUE_CAP] = c;
        s->qlen++;
        pthread_cond_signal(&s->qcond);
    }
    pthread_mutex_unlock(&s->qlock);
    return ok;
}

/* Adds c to the pending set, or drops it when the set is full. */
static void pend(struct conn **pending, size_t *npending, struct conn *c)
{
    if (*npending == PENDING_CAP) {
        conn_free(c); /* shed: each pending slot is released by its deadline at the latest */
        return;
    }
    pending[(*npending)++] = c;
}

veil_err veil_kbs_server_run(struct veil_kbs_server *s, struct veil_errbuf *eb)
{
    pthread_t tids[128];
    unsigned started = 0, want = s->threads > 128 ? 128 : s->threads;
    struct conn **pending = veil_allocarray(PENDING_CAP, sizeof(*pending));
    struct pollfd *pf = veil_allocarray(PENDING_CAP + 2, sizeof(*pf));
    size_t npending = 0;
    if (pending == NULL || pf == NULL) {
        veil_free(pending);
        veil_free(pf);
        return veil_errf(eb, VEIL_E_NOMEM, "out of memory");
    }
    for (unsigned i = 0; i < want; i++)
        if (pthread_create(&tids[started], NULL, worker_main, s) == 0)
            started++;
    if (started == 0) {
        veil_free(pending);
        veil_free(pf);
        return veil_errf(eb, VEIL_E_NOMEM, "cannot start worker threads");
    }
    VEIL_LOG_INFO("key broker listening on port %u with %u workers", s->port, started);
    while (!atomic_load(&s->stopping)) {
        uint64_t now = veil_time_mono_ns(), next = now + 1000000000ull;
        pf[0] = (struct pollfd){s->listen_fd, npending < PENDING_CAP ? POLLIN : 0, 0};
        pf[1] = (struct pollfd){s->wake[0], POLLIN, 0};
        for (size_t i = 0; i < npending; i++) {
            struct conn *c = pending[i];
            uint64_t d = c->handshaken ? c->deadline_ns : c->handshake_deadline_ns;
            if (d < next)
                next = d;
            pf[2 + i] = (struct pollfd){c->fd, c->events, 0};
        }
        int r = poll(pf, 2 + npending, next > now ? (int)((next - now) / 1000000 + 1) : 0);
        if (r < 0 && errno != EINTR)
            break;
        if (file_mtime(s->policy_path) != s->policy_mtime) {
            veil_err prc = veil_kbs_server_reload_policy(s, NULL); /* logged inside */
            (void)prc;
        }
        /* Pending connections: advance those that are ready, drop those past their deadline. */
        now = veil_time_mono_ns();
        size_t kept = 0, n = npending;
        for (size_t i = 0; i < n; i++) {
            struct conn *c = pending[i];
            int st = 0;
            if (r > 0 && (pf[2 + i].revents & (c->events | POLLERR | POLLHUP)))
                st = conn_advance(c);
            uint64_t d = c->handshaken ? c->deadline_ns : c->handshake_deadline_ns;
            if (st == 0 && now >= d)
                st = -1; /* too slow: the deadline covers the whole request, not each read */
            if (st == 0)
                pending[kept++] = c;
            else if (st < 0 || !dispatch(s, c))
                conn_free(c);
        }
        npending = kept;
        if (r > 0 && (pf[1].revents & POLLIN)) {
            char drain[64];
            while (read(s->wake[0], drain, sizeof(drain)) > 0)
                ;
            pthread_mutex_lock(&s->qlock);
            struct conn *back = s->returned;
            s->returned = NULL;
            pthread_mutex_unlock(&s->qlock);
            while (back != NULL) {
                struct conn *c = back;
                back = c->next;
                c->next = NULL;
                /* TLS may already hold the next request's bytes, which poll cannot see. */
                int st = conn_advance(c);
                if (st == 0)
                    pend(pending, &npending, c);
                else if (st < 0 || !dispatch(s, c))
                    conn_free(c);
            }
        }
        if (r <= 0 || !(pf[0].revents & POLLIN))
            continue;
        for (int k = 0; k < 64 && npending < PENDING_CAP; k++) {
            int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd < 0)
                break;
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            struct conn *c = conn_new(s, fd);
            if (c == NULL) {
                close(fd);
                continue;
            }
            int st = conn_advance(c);
            if (st == 0)
                pend(pending, &npending, c);
            else if (st < 0 || !dispatch(s, c))
                conn_free(c);
        }
    }
    pthread_mutex_lock(&s->qlock);
    pthread_cond_broadcast(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    for (size_t i = 0; i < npending; i++)
        conn_free(pending[i]);
    while (s->returned != NULL) {
        struct conn *c = s->returned;
        s->returned = c->next;
        conn_free(c);
    }
    while (s->qlen > 0) {
        conn_free(s->queue[s->qhead]);
        s->qhead = (s->qhead + 1) % QUEUE_CAP;
        s->qlen--;
    }
    veil_free(pending);
    veil_free(pf);
    uint64_t n = 0;
    pthread_mutex_lock(&s->unauth_lock);
    n = s->unauth_suppressed;
    s->unauth_suppressed = 0;
    pthread_mutex_unlock(&s->unauth_lock);
    if (n > 0) {
        veil_err arc = audit_suppressed(s, n); /* logged inside */
        (void)arc;
    }
    return VEIL_OK;
}
