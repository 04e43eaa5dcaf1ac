/*
 * `veil serve --kbs`: provisioning the server from the key broker. Before the server listens,
 * the workload attests (sim, gramine or tsm evidence in an RA-TLS certificate), receives the
 * keys its policy grants and a serving certificate for its in-memory key, and serves TLS with
 * that certificate. Model keys then come from a key source backed by the grant; a key ID the
 * grant lacks (a new model version sealed under a new key) is fetched from the broker when the
 * repository first needs it. A renewal thread attests again (new nonce, new key pair, new
 * evidence) at two thirds of the certificate's lifetime and swaps the new certificate in for
 * new handshakes; while no broker answers it retries with backoff and the old certificate
 * serves until it expires. The same provider answers clients that check the server themselves
 * (docs/attest/server-check.md) with evidence for the TLS key they see. Provisioning and
 * evidence calls are serialised: an evidence provider is not reentrant (gramine's report-data
 * file, tsm's configfs entry).
 */
#include "serve_kbs.h"

#include "attest_client.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

/* One provisioning round of a renewal: short, so that shutdown never waits long for it. */
#define RENEW_ROUND_DEADLINE_S 1
#define RENEW_CONNECT_TIMEOUT_MS 3000

/*
 * Clients' attestation requests (docs/attest/server-check.md). Evidence costs the TEE a quote
 * and shares the provider with provisioning, so anonymous clients get at most a burst of 32
 * and 16 a second, and wait at most 5 s for a provisioning round to end. The certificate they
 * get is valid for 5 minutes (from an hour back, as every RA-TLS certificate).
 */
#define EVIDENCE_BURST 32.0
#define EVIDENCE_PER_S 16.0
#define EVIDENCE_WAIT_S 5
#define EVIDENCE_VALIDITY_S 300
/* TLS keys a client may ask evidence for: the current one and the one before the last renewal
 * (a client that connected just before a swap). */
#define EVIDENCE_KEYS 2

struct kbs_keys {
    pthread_mutex_t mu; /* serialises provisioning and guards keys */
    struct veil_kbs_client_opts copts;
    struct veil_attest_provider *provider;
    size_t n;
    struct veil_model_key *keys[VEIL_LIMIT_KBS_KEYS];
};

struct veil_cli_kbs_state {
    struct veil_buf cert_pem; /* leaf then CA */
    struct veil_buf key_pem;  /* secret */
    char workload[128];
    /* The grant's minimum versions, as the server options take them (names in grant_min). */
    struct veil_serve_min_version *min;
    struct veil_kbs_min_version *grant_min;
    size_t n_min;

    /* Renewal. kk is borrowed from the key source, which is freed after the thread stops. */
    struct kbs_keys *kk;
    struct veil_kbs_renewal plan; /* of the certificate new handshakes present */
    char serial[72];
    struct veil_serve *srv;
    pthread_mutex_t mu; /* guards stop */
    pthread_cond_t cv;
    bool stop;
    bool running;
    pthread_t thread;

    /* The TLS keys clients may ask evidence for (newest first) and the rate limit, under id_mu. */
    pthread_mutex_t id_mu;
    EVP_PKEY *tls_keys[EVIDENCE_KEYS];
    uint8_t tls_key_sha256[EVIDENCE_KEYS][32];
    double tokens;
    uint64_t tokens_at_ns;
};

/* The workload's clock in Unix milliseconds, the clock certificate dates are read against. */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static veil_err take_keys(struct kbs_keys *kk, struct veil_kbs_grant *g)
{
    for (size_t i = 0; i < g->n_keys; i++) {
        bool have = false;
        for (size_t j = 0; j < kk->n && !have; j++)
            have = strcmp(kk->keys[j]->id, g->keys[i]->id) == 0;
        if (have)
            continue;
        if (kk->n == VEIL_LIMIT_KBS_KEYS)
            return VEIL_E_LIMIT;
        kk->keys[kk->n++] = g->keys[i];
        g->keys[i] = NULL;
    }
    return VEIL_OK;
}

static veil_err kbs_get_locked(struct kbs_keys *kk, const char *key_id, struct veil_model_key **out,
                               struct veil_errbuf *eb)
{
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < kk->n; i++)
            if (strcmp(kk->keys[i]->id, key_id) == 0)
                return veil_model_key_from_bytes(kk->keys[i]->id, kk->keys[i]->key,
                                                 VEIL_MODEL_KEY_LEN, out, eb);
        if (round == 1)
            break;
        /* Not in the grant yet: attest again and ask for this key. */
        struct veil_kbs_grant *g = NULL;
        const char *ids[1] = {key_id};
        veil_err rc = veil_kbs_provision(&kk->copts, kk->provider, ids, 1, &g, eb);
        if (rc == VEIL_E_REJECTED)
            return rc;
        if (rc != VEIL_OK)
            return veil_errf(eb, VEIL_E_UNAVAILABLE, "key broker unavailable: %s",
                             veil_errbuf_msg(eb, rc));
        rc = take_keys(kk, g);
        veil_kbs_grant_free(g);
        if (rc != VEIL_OK)
            return veil_errf(eb, rc, "too many keys");
    }
    return veil_errf(eb, VEIL_E_NOTFOUND, "the key broker did not release key '%s'", key_id);
}

static veil_err kbs_get(void *ud, const char *key_id, struct veil_model_key **out,
                        struct veil_errbuf *eb)
{
    struct kbs_keys *kk = ud;
    *out = NULL;
    pthread_mutex_lock(&kk->mu);
    veil_err rc = kbs_get_locked(kk, key_id, out, eb);
    pthread_mutex_unlock(&kk->mu);
    return rc;
}

static void kbs_free(void *ud)
{
    struct kbs_keys *kk = ud;
    if (kk == NULL)
        return;
    for (size_t i = 0; i < kk->n; i++)
        veil_model_key_free(kk->keys[i]);
    veil_attest_provider_free(kk->provider);
    pthread_mutex_destroy(&kk->mu);
    veil_free(kk);
}

static const struct veil_key_source_ops kbs_ops = {kbs_get, kbs_free};

static veil_err make_provider(const struct veil_cli_kbs_opts *k, struct veil_attest_provider **out,
                              struct veil_errbuf *eb)
{
    *out = NULL;
    if (strcmp(k->tee, "sim") == 0) {
        if (k->sim_key == NULL)
            return veil_errf(eb, VEIL_E_INVALID, "--tee=sim needs --sim-key=FILE");
        struct veil_buf pem;
        uint8_t meas[32];
        veil_buf_init_secret(&pem, 65536);
        veil_err rc = veil_file_read_all(k->sim_key, pem.max, &pem, eb);
        if (rc == VEIL_OK)
            rc = veil_attest_sim_measure_file("/proc/self/exe", meas, eb);
        if (rc == VEIL_OK)
            rc = veil_attest_provider_new_sim(veil_buf_span(&pem), meas, k->svn, out, eb);
        veil_buf_release(&pem);
        return rc;
    }
    if (strcmp(k->tee, "gramine") == 0)
        return veil_attest_provider_new_gramine(k->tee_root != NULL ? k->tee_root : "/", out, eb);
    if (strcmp(k->tee, "tsm") == 0)
        return veil_attest_provider_new_tsm(
            k->tee_root != NULL ? k->tee_root : "/sys/kernel/config/tsm/report", out, eb);
    return veil_errf(eb, VEIL_E_INVALID, "--tee must be sim, gramine or tsm, not '%s'", k->tee);
}

/* Makes key the newest TLS key clients may ask evidence for (a reference is taken). */
static veil_err remember_tls_key(struct veil_cli_kbs_state *st, EVP_PKEY *key)
{
    uint8_t h[32];
    if (veil_cli_spki_sha256(key, h) != VEIL_OK || EVP_PKEY_up_ref(key) != 1)
        return VEIL_E_CRYPTO;
    pthread_mutex_lock(&st->id_mu);
    EVP_PKEY_free(st->tls_keys[EVIDENCE_KEYS - 1]);
    for (size_t i = EVIDENCE_KEYS - 1; i > 0; i--) {
        st->tls_keys[i] = st->tls_keys[i - 1];
        memcpy(st->tls_key_sha256[i], st->tls_key_sha256[i - 1], 32);
    }
    st->tls_keys[0] = key;
    memcpy(st->tls_key_sha256[0], h, 32);
    pthread_mutex_unlock(&st->id_mu);
    return VEIL_OK;
}

/*
 * The serving ports' attestation hook: an RA-TLS certificate for the TLS key the client names,
 * binding the client's nonce, from the provider the broker verified (veil_serve_evidence_fn).
 */
static veil_err client_evidence(void *ud, struct veil_span nonce, const uint8_t key_sha256[32],
                                struct veil_buf *cert_der, struct veil_errbuf *eb)
{
    struct veil_cli_kbs_state *st = ud;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    unsigned char *der = NULL;
    veil_err rc = VEIL_E_INTERNAL;
    pthread_mutex_lock(&st->id_mu);
    uint64_t now = veil_time_mono_ns();
    st->tokens += (double)(now - st->tokens_at_ns) / 1e9 * EVIDENCE_PER_S;
    st->tokens = st->tokens > EVIDENCE_BURST ? EVIDENCE_BURST : st->tokens;
    st->tokens_at_ns = now;
    bool allowed = st->tokens >= 1.0;
    if (allowed)
        st->tokens -= 1.0;
    for (size_t i = 0; allowed && i < EVIDENCE_KEYS && key == NULL; i++)
        if (st->tls_keys[i] != NULL && CRYPTO_memcmp(st->tls_key_sha256[i], key_sha256, 32) == 0 &&
            EVP_PKEY_up_ref(st->tls_keys[i]) == 1)
            key = st->tls_keys[i];
    pthread_mutex_unlock(&st->id_mu);
    if (!allowed)
        return veil_errf(eb, VEIL_E_UNAVAILABLE, "too many attestation requests; retry later");
    if (key == NULL)
        return veil_errf(eb, VEIL_E_NOTFOUND,
                         "this server holds no TLS key with that hash (it renewed its certificate "
                         "since this connection was made: reconnect)");
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += EVIDENCE_WAIT_S;
    if (pthread_mutex_timedlock(&st->kk->mu, &until) != 0) {
        rc = veil_errf(eb, VEIL_E_UNAVAILABLE,
                       "the server is attesting to its key broker; retry in a few seconds");
        goto out;
    }
    rc = veil_attest_ratls_create_for_key(st->kk->provider, key, EVIDENCE_VALIDITY_S, nonce, &cert,
                                          eb);
    pthread_mutex_unlock(&st->kk->mu);
    if (rc != VEIL_OK)
        goto out;
    int n = i2d_X509(cert, &der);
    if (n <= 0 || (rc = veil_buf_append(cert_der, der, (size_t)n)) != VEIL_OK) {
        rc = veil_errf(eb, VEIL_E_CRYPTO, "cannot encode the evidence certificate");
        goto out;
    }
    rc = VEIL_OK;
out:
    OPENSSL_free(der);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

/* The grant's certificate chain (leaf, then the serving CA) and private key as PEM. */
static veil_err grant_identity(const struct veil_kbs_grant *g, struct veil_buf *cert,
                               struct veil_buf *key, struct veil_errbuf *eb)
{
    BIO *bio = BIO_new(BIO_s_secmem());
    char *p = NULL;
    long n = 0;
    veil_err rc = VEIL_OK;
    if (bio == NULL || PEM_write_bio_PrivateKey(bio, g->pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
        (n = BIO_get_mem_data(bio, &p)) <= 0 || veil_buf_append(key, p, (size_t)n) != VEIL_OK ||
        veil_buf_append_str(cert, g->cert_pem) != VEIL_OK ||
        veil_buf_append_str(cert, g->ca_pem) != VEIL_OK)
        rc = veil_errf(eb, VEIL_E_CRYPTO, "cannot encode the serving certificate and key");
    BIO_free(bio);
    return rc;
}

veil_err veil_cli_serve_provision(const struct veil_cli_kbs_opts *k, struct veil_serve_options *o,
                                  struct veil_key_source **keys, struct veil_cli_kbs_state **state,
                                  struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct kbs_keys *kk = NULL;
    struct veil_cli_kbs_state *st = NULL;
    struct veil_kbs_grant *g = NULL;
    *keys = NULL;
    *state = NULL;
    if (k->ca == NULL || k->tee == NULL)
        return veil_errf(eb, VEIL_E_INVALID, "--kbs needs --kbs-ca=FILE and --tee=sim|gramine|tsm");
    if (o->tls_cert_path != NULL || o->tls_key_path != NULL || o->ssl_config_file != NULL)
        return veil_errf(eb, VEIL_E_INVALID,
                         "--kbs provides the serving certificate; drop --tls_cert, --tls_key "
                         "and --ssl_config_file");
    /* Each object's locks are made with it, so that freeing it on any path below is sound. */
    if ((kk = veil_calloc(1, sizeof(*kk))) != NULL)
        pthread_mutex_init(&kk->mu, NULL);
    if ((st = veil_calloc(1, sizeof(*st))) != NULL) {
        pthread_mutex_init(&st->mu, NULL);
        pthread_cond_init(&st->cv, NULL);
        pthread_mutex_init(&st->id_mu, NULL);
        st->tokens = EVIDENCE_BURST;
        st->tokens_at_ns = veil_time_mono_ns();
    }
    if (kk == NULL || st == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "out of memory");
        goto out;
    }
    veil_buf_init(&st->cert_pem, 1 << 20);
    veil_buf_init_secret(&st->key_pem, 65536);
    kk->copts.brokers = k->brokers;
    kk->copts.ca_file = k->ca;
    kk->copts.san = k->san;
    kk->copts.deadline_s = k->deadline_s > 0 ? k->deadline_s : 300;
    rc = make_provider(k, &kk->provider, eb);
    if (rc != VEIL_OK)
        goto out;
    if (strcmp(k->tee, "sim") == 0)
        VEIL_LOG_WARN("attesting with sim evidence: INSECURE, for machines without a TEE only");
    VEIL_LOG_INFO("attesting to key broker %s (not ready until provisioned)", k->brokers);
    rc = veil_kbs_provision(&kk->copts, kk->provider, NULL, 0, &g, eb);
    if (rc != VEIL_OK)
        goto out;
    veil_kbs_renewal_plan(g->not_before, g->not_after, now_ms(), &st->plan);
    snprintf(st->serial, sizeof(st->serial), "%s", g->serial);
    snprintf(st->workload, sizeof(st->workload), "%s", g->workload);
    if ((rc = grant_identity(g, &st->cert_pem, &st->key_pem, eb)) != VEIL_OK)
        goto out;
    if ((rc = remember_tls_key(st, g->pkey)) != VEIL_OK) {
        rc = veil_errf(eb, rc, "cannot hash the serving key");
        goto out;
    }
    rc = take_keys(kk, g);
    if (rc != VEIL_OK)
        goto out;
    char until[21], renew[21];
    veil_time_format_rfc3339(g->not_after, until);
    veil_time_format_rfc3339(st->plan.renew_at_ms / 1000, renew);
    VEIL_LOG_INFO("provisioned as workload '%s' with %zu key(s) and a serving certificate "
                  "(serial %s, valid until %s, renewal due at %s)",
                  st->workload, kk->n, st->serial, until, renew);
    if (g->n_min_versions > 0) {
        st->min = veil_calloc(g->n_min_versions, sizeof(*st->min));
        if (st->min == NULL) {
            rc = veil_errf(eb, VEIL_E_NOMEM, "out of memory");
            goto out;
        }
        st->grant_min = g->min_versions; /* taken from the grant */
        g->min_versions = NULL;
        st->n_min = g->n_min_versions;
        g->n_min_versions = 0;
        for (size_t i = 0; i < st->n_min; i++) {
            st->min[i].model = st->grant_min[i].model;
            st->min[i].version = st->grant_min[i].version;
            VEIL_LOG_INFO("the broker's policy sets the minimum version of model %s to %lld",
                          st->grant_min[i].model, (long long)st->grant_min[i].version);
        }
        o->min_versions = st->min;
        o->n_min_versions = st->n_min;
    }
    /* Clients may check this server themselves: its provider attests its TLS key for them. */
    o->evidence_fn = client_evidence;
    o->evidence_ud = st;
    o->tls_cert_pem = veil_buf_span(&st->cert_pem);
    o->tls_key_pem = veil_buf_span(&st->key_pem);
    struct kbs_keys *borrowed = kk;
    rc = veil_key_source_new(&kbs_ops, kk, keys);
    kk = NULL; /* owned by the source now, or released by it on failure */
    if (rc != VEIL_OK)
        goto out;
    st->kk = borrowed;
    *state = st;
    st = NULL;
out:
    veil_kbs_grant_free(g);
    kbs_free(kk);
    veil_cli_kbs_state_free(st);
    return rc;
}

/* Whether the renewed grant's minimum versions differ from the ones the server enforces. */
static bool min_versions_changed(const struct veil_cli_kbs_state *st,
                                 const struct veil_kbs_grant *g)
{
    if (g->n_min_versions != st->n_min)
        return true;
    for (size_t i = 0; i < g->n_min_versions; i++) {
        bool same = false;
        for (size_t j = 0; j < st->n_min && !same; j++)
            same = strcmp(g->min_versions[i].model, st->grant_min[j].model) == 0 &&
                   g->min_versions[i].version == st->grant_min[j].version;
        if (!same)
            return true;
    }
    return false;
}

/*
 * One renewal: attest again (veil_kbs_provision makes a new key pair and evidence for a new
 * nonce), keep any newly granted keys, and hand the new certificate to the server.
 */
static veil_err renew_once(struct veil_cli_kbs_state *st, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_kbs_grant *g = NULL;
    struct veil_buf cert, key;
    struct veil_kbs_client_opts o = st->kk->copts;
    veil_buf_init(&cert, 1 << 20);
    veil_buf_init_secret(&key, 65536);
    o.deadline_s = RENEW_ROUND_DEADLINE_S;
    o.timeout_ms = RENEW_CONNECT_TIMEOUT_MS;
    pthread_mutex_lock(&st->kk->mu);
    size_t had = st->kk->n;
    rc = veil_kbs_provision(&o, st->kk->provider, NULL, 0, &g, eb);
    int64_t received = now_ms();
    if (rc == VEIL_OK && (rc = take_keys(st->kk, g)) != VEIL_OK)
        rc = veil_errf(eb, rc, "too many keys");
    size_t added = st->kk->n - had;
    pthread_mutex_unlock(&st->kk->mu);
    if (rc != VEIL_OK)
        goto out;
    if (added > 0)
        VEIL_LOG_INFO("the renewal brought %zu newly granted key(s)", added);
    if (strcmp(g->workload, st->workload) != 0)
        VEIL_LOG_WARN("the broker's policy now matches this server as workload '%s' (was '%s')",
                      g->workload, st->workload);
    if (min_versions_changed(st, g))
        VEIL_LOG_WARN("the broker's policy changed this workload's minimum model versions; the "
                      "server enforces the ones it started with until it restarts");
    if ((rc = grant_identity(g, &cert, &key, eb)) != VEIL_OK ||
        (rc = veil_serve_set_tls_identity(st->srv, veil_buf_span(&cert), veil_buf_span(&key),
                                          eb)) != VEIL_OK)
        goto out;
    veil_kbs_renewal_plan(g->not_before, g->not_after, received, &st->plan);
    if (remember_tls_key(st, g->pkey) != VEIL_OK)
        VEIL_LOG_WARN("cannot hash the renewed serving key: clients cannot have it attested");
    char until[21], renew[21];
    veil_time_format_rfc3339(g->not_after, until);
    veil_time_format_rfc3339(st->plan.renew_at_ms / 1000, renew);
    VEIL_LOG_INFO("renewed the serving certificate: serial %s (was %s), valid until %s, next "
                  "renewal due at %s",
                  g->serial, st->serial, until, renew);
    snprintf(st->serial, sizeof(st->serial), "%s", g->serial);
    rc = VEIL_OK;
out:
    veil_kbs_grant_free(g);
    veil_buf_release(&cert);
    veil_buf_release(&key);
    return rc;
}

/* Waits until Unix millisecond `at` or a stop; returns false on a stop. Called with st->mu. */
static bool wait_until(struct veil_cli_kbs_state *st, int64_t at)
{
    while (!st->stop && now_ms() < at) {
        struct timespec ts = {(time_t)(at / 1000), (long)(at % 1000) * 1000000L};
        int r = pthread_cond_timedwait(&st->cv, &st->mu, &ts);
        if (r != 0 && r != ETIMEDOUT && r != EINTR)
            break;
    }
    return !st->stop;
}

static void *renew_main(void *arg)
{
    struct veil_cli_kbs_state *st = arg;
    uint32_t backoff = 0;
    int64_t next = st->plan.renew_at_ms;
    bool told_expired = false;
    pthread_mutex_lock(&st->mu);
    while (wait_until(st, next)) {
        pthread_mutex_unlock(&st->mu);
        struct veil_errbuf eb = {{0}};
        veil_err rc = renew_once(st, &eb);
        if (rc == VEIL_OK) {
            backoff = 0;
            told_expired = false;
            next = st->plan.renew_at_ms;
        } else {
            backoff = veil_kbs_renewal_backoff(&st->plan, backoff);
            next = now_ms() + backoff;
            /* Try once more at the moment of expiry, so that it is logged when it happens. */
            if (!told_expired && st->plan.expiry_ms > now_ms() && st->plan.expiry_ms < next)
                next = st->plan.expiry_ms;
            char until[21];
            veil_time_format_rfc3339(st->plan.expiry_ms / 1000, until);
            if (now_ms() >= st->plan.expiry_ms && !told_expired) {
                VEIL_LOG_ERR("the serving certificate expired at %s without renewal: clients "
                             "refuse new connections and readiness reports not ready until a "
                             "broker renews it",
                             until);
                told_expired = true;
            }
            VEIL_LOG_WARN("renewing the serving certificate failed (%s); retrying in %u ms; the "
                          "current certificate is valid until %s",
                          veil_errbuf_msg(&eb, rc), (unsigned)backoff, until);
        }
        pthread_mutex_lock(&st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

veil_err veil_cli_serve_renewal_start(struct veil_cli_kbs_state *st, struct veil_serve *srv,
                                      struct veil_errbuf *eb)
{
    if (st->running)
        return veil_errf(eb, VEIL_E_STATE, "certificate renewal is already running");
    if (st->kk == NULL)
        return veil_errf(eb, VEIL_E_STATE, "nothing to renew: the server was not provisioned");
    st->srv = srv;
    st->stop = false;
    int r = pthread_create(&st->thread, NULL, renew_main, st);
    if (r != 0)
        return veil_errf(eb, VEIL_E_INTERNAL, "cannot start the renewal thread: %s", strerror(r));
    st->running = true;
    return VEIL_OK;
}

void veil_cli_serve_renewal_stop(struct veil_cli_kbs_state *st)
{
    if (st == NULL || !st->running)
        return;
    pthread_mutex_lock(&st->mu);
    st->stop = true;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->thread, NULL);
    st->running = false;
}

void veil_cli_kbs_state_free(struct veil_cli_kbs_state *st)
{
    if (st == NULL)
        return;
    veil_cli_serve_renewal_stop(st);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    for (size_t i = 0; i < EVIDENCE_KEYS; i++)
        EVP_PKEY_free(st->tls_keys[i]);
    pthread_mutex_destroy(&st->id_mu);
    veil_buf_release(&st->cert_pem);
    veil_buf_release(&st->key_pem);
    veil_free(st->min);
    veil_free(st->grant_min);
    veil_free(st);
}
