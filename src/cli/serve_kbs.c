/*
 * `veil serve --kbs`: provisioning the server from the key broker. Before the server listens,
 * the workload attests (sim, gramine or tsm evidence in an RA-TLS certificate), receives the
 * keys its policy grants and a serving certificate for its in-memory key, and serves TLS with
 * that certificate. Model keys then come from a key source backed by the grant; a key ID the
 * grant lacks (a new model version sealed under a new key) is fetched from the broker when the
 * repository first needs it.
 */
#include "serve_kbs.h"

#include <string.h>

struct kbs_keys {
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
};

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

static veil_err kbs_get(void *ud, const char *key_id, struct veil_model_key **out,
                        struct veil_errbuf *eb)
{
    struct kbs_keys *kk = ud;
    *out = NULL;
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

static void kbs_free(void *ud)
{
    struct kbs_keys *kk = ud;
    if (kk == NULL)
        return;
    for (size_t i = 0; i < kk->n; i++)
        veil_model_key_free(kk->keys[i]);
    veil_attest_provider_free(kk->provider);
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
    kk = veil_calloc(1, sizeof(*kk));
    st = veil_calloc(1, sizeof(*st));
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
    snprintf(st->workload, sizeof(st->workload), "%s", g->workload);
    BIO *bio = BIO_new(BIO_s_secmem());
    char *p = NULL;
    long n = 0;
    if (bio == NULL || PEM_write_bio_PrivateKey(bio, g->pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
        (n = BIO_get_mem_data(bio, &p)) <= 0 ||
        veil_buf_append(&st->key_pem, p, (size_t)n) != VEIL_OK ||
        veil_buf_append_str(&st->cert_pem, g->cert_pem) != VEIL_OK ||
        veil_buf_append_str(&st->cert_pem, g->ca_pem) != VEIL_OK) {
        BIO_free(bio);
        rc = veil_errf(eb, VEIL_E_CRYPTO, "cannot encode the serving certificate and key");
        goto out;
    }
    BIO_free(bio);
    rc = take_keys(kk, g);
    if (rc != VEIL_OK)
        goto out;
    VEIL_LOG_INFO("provisioned as workload '%s' with %zu key(s) and a serving certificate",
                  st->workload, kk->n);
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
    o->tls_cert_pem = veil_buf_span(&st->cert_pem);
    o->tls_key_pem = veil_buf_span(&st->key_pem);
    rc = veil_key_source_new(&kbs_ops, kk, keys);
    kk = NULL; /* owned by the source now, or released by it on failure */
    if (rc != VEIL_OK)
        goto out;
    *state = st;
    st = NULL;
out:
    veil_kbs_grant_free(g);
    kbs_free(kk);
    veil_cli_kbs_state_free(st);
    return rc;
}

void veil_cli_kbs_state_free(struct veil_cli_kbs_state *st)
{
    if (st == NULL)
        return;
    veil_buf_release(&st->cert_pem);
    veil_buf_release(&st->key_pem);
    veil_free(st->min);
    veil_free(st->grant_min);
    veil_free(st);
}
