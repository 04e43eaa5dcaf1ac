/*
 * RA-TLS with the sim provider: a certificate whose tagged-evidence extension binds its key
 * (and nonce) verifies; evidence moved to another key or nonce, claims that name another key,
 * an untrusted sim key, a certificate outside its validity window, a missing or malformed
 * extension are all refused. Also the sim evidence format itself.
 */
#include "common.h"

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "harness.h"

struct sim_env {
    struct veil_attest_provider *p;
    struct veil_attest_roots *roots;
};

static const uint8_t meas[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

static bool sim_env_init(struct sim_env *e)
{
    struct veil_buf priv, pub;
    veil_buf_init_secret(&priv, 4096);
    veil_buf_init(&pub, 4096);
    bool ok = veil_attest_sim_keygen(&priv, &pub, NULL) == VEIL_OK &&
              veil_attest_roots_new(&e->roots) == VEIL_OK &&
              veil_attest_roots_add_sim_key(e->roots, veil_buf_span(&pub), NULL) == VEIL_OK &&
              veil_attest_provider_new_sim(veil_buf_span(&priv), meas, 3, &e->p, NULL) == VEIL_OK;
    veil_buf_release(&priv);
    veil_buf_release(&pub);
    if (!ok) {
        veil_attest_provider_free(e->p);
        veil_attest_roots_free(e->roots);
        e->p = NULL;
        e->roots = NULL;
    }
    return ok;
}

static void sim_env_release(struct sim_env *e)
{
    veil_attest_provider_free(e->p);
    veil_attest_roots_free(e->roots);
}

static struct veil_attest_verify_opts now_opts(void)
{
    struct veil_attest_verify_opts o = {veil_time_now(), false};
    return o;
}

TEST(sim_evidence_roundtrip)
{
    struct sim_env e = {0};
    ASSERT_TRUE(sim_env_init(&e));
    uint8_t rd[64];
    memset(rd, 0xAB, sizeof(rd));
    struct veil_buf ev;
    veil_buf_init(&ev, VEIL_ATTEST_MAX_EVIDENCE);
    ASSERT_OK(veil_attest_provider_get_evidence(e.p, rd, &ev, NULL, NULL));
    ASSERT_STR_EQ(veil_attest_provider_kind(e.p), "sim");
    ASSERT_EQ_U64(ev.len, VEIL_ATTEST_SIM_LEN);
    struct veil_attest_claims c;
    struct veil_attest_verify_opts o = now_opts();
    veil_err rc = veil_attest_verify(veil_buf_span(&ev), NULL, e.roots, &o, &c);
    ev.p[20] ^= 1; /* measurement */
    struct veil_attest_claims c2;
    veil_err rc2 = veil_attest_verify(veil_buf_span(&ev), NULL, e.roots, &o, &c2);
    veil_buf_release(&ev);
    sim_env_release(&e);
    ASSERT_OK(rc);
    ASSERT_EQ_U64(c.tee, VEIL_TEE_SIM);
    ASSERT_MEM_EQ(c.sim_measurement, meas, 32);
    ASSERT_MEM_EQ(c.report_data, rd, 64);
    ASSERT_EQ_U64(c.sim_svn, 3);
    ASSERT_STR_CONTAINS(c.detail, "INSECURE");
    ASSERT_ERR(rc2, VEIL_E_AUTH);
    ASSERT_EQ_U64(c2.reason, VEIL_ATTEST_REPORT_SIGNATURE);
}

TEST(ratls_cert_verifies_and_binds_key)
{
    struct sim_env e = {0};
    ASSERT_TRUE(sim_env_init(&e));
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    ASSERT_OK(veil_attest_ratls_create(e.p, 3600, veil_span_make(NULL, 0), &key, &cert, NULL));
    struct veil_attest_claims c;
    struct veil_attest_verify_opts o = now_opts();
    veil_err rc = veil_attest_ratls_verify(cert, NULL, e.roots, &o, &c);
    /* The broker can see which TEE it deals with before choosing collateral. */
    struct veil_span ev, claims;
    enum veil_tee tee = VEIL_TEE_NONE;
    uint8_t fmspc[6];
    bool has = true;
    veil_err prc = veil_attest_ratls_get_evidence(cert, &ev, &claims);
    if (prc == VEIL_OK)
        prc = veil_attest_peek(ev, &tee, fmspc, &has);
    /* The certificate is self-signed by the key the evidence binds. */
    int self = X509_verify(cert, key);
    X509_free(cert);
    EVP_PKEY_free(key);
    sim_env_release(&e);
    ASSERT_OK(rc);
    ASSERT_TRUE(c.verified);
    ASSERT_EQ_U64(c.tee, VEIL_TEE_SIM);
    ASSERT_MEM_EQ(c.sim_measurement, meas, 32);
    ASSERT_EQ_I64(self, 1);
    ASSERT_OK(prc);
    ASSERT_EQ_U64(tee, VEIL_TEE_SIM);
    ASSERT_FALSE(has);
}

TEST(ratls_untrusted_sim_key)
{
    struct sim_env a = {0}, b = {0};
    ASSERT_TRUE(sim_env_init(&a));
    if (!sim_env_init(&b)) {
        sim_env_release(&a);
        HFAIL("sim_env_init failed");
    }
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    ASSERT_OK(veil_attest_ratls_create(a.p, 3600, veil_span_make(NULL, 0), &key, &cert, NULL));
    struct veil_attest_claims c;
    struct veil_attest_verify_opts o = now_opts();
    veil_err rc = veil_attest_ratls_verify(cert, NULL, b.roots, &o, &c);
    X509_free(cert);
    EVP_PKEY_free(key);
    sim_env_release(&a);
    sim_env_release(&b);
    ASSERT_ERR(rc, VEIL_E_AUTH);
    ASSERT_EQ_U64(c.reason, VEIL_ATTEST_SIM_KEY_UNTRUSTED);
}

/* A certificate for a fresh key carrying the given extension bytes. */
static X509 *forge(const uint8_t *ext, size_t len, EVP_PKEY **key_out)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    ASN1_OBJECT *obj = OBJ_txt2obj("2.23.133.5.4.9", 1);
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    X509_EXTENSION *e = NULL;
    if (k && x && obj && os && ASN1_OCTET_STRING_set(os, ext, (int)len) == 1 &&
        (e = X509_EXTENSION_create_by_OBJ(NULL, obj, 0, os)) != NULL) {
        X509_set_version(x, 2);
        X509_gmtime_adj(X509_getm_notBefore(x), 0);
        X509_gmtime_adj(X509_getm_notAfter(x), 3600);
        X509_set_pubkey(x, k);
        X509_add_ext(x, e, -1);
        X509_sign(x, k, EVP_sha256());
    }
    X509_EXTENSION_free(e);
    ASN1_OCTET_STRING_free(os);
    ASN1_OBJECT_free(obj);
    *key_out = k;
    return x;
}

static struct veil_span ext_of(X509 *cert)
{
    ASN1_OBJECT *obj = OBJ_txt2obj("2.23.133.5.4.9", 1);
    int idx = X509_get_ext_by_OBJ(cert, obj, -1);
    ASN1_OBJECT_free(obj);
    ASN1_OCTET_STRING *os = X509_EXTENSION_get_data(X509_get_ext(cert, idx));
    return veil_span_make(ASN1_STRING_get0_data(os), (size_t)ASN1_STRING_length(os));
}

TEST(ratls_evidence_moved_to_another_key)
{
    struct sim_env e = {0};
    ASSERT_TRUE(sim_env_init(&e));
    EVP_PKEY *key = NULL, *k2 = NULL, *k3 = NULL;
    X509 *cert = NULL;
    ASSERT_OK(veil_attest_ratls_create(e.p, 3600, veil_span_make(NULL, 0), &key, &cert, NULL));
    struct veil_span ext = ext_of(cert);
    struct veil_attest_verify_opts o = now_opts();
    struct veil_attest_claims c1, c2;

    /* 1. The whole extension copied into a certificate for another key. */
    X509 *copy = forge(ext.p, ext.len, &k2);
    veil_err rc1 = veil_attest_ratls_verify(copy, NULL, e.roots, &o, &c1);

    /* 2. Claims rewritten to name the new key, evidence kept: REPORT_DATA no longer binds. */
    struct veil_span ev, claims;
    ASSERT_OK(veil_attest_ratls_parse_ext(ext, &ev, &claims));
    k3 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    unsigned char *spki = NULL;
    int spki_len = i2d_PUBKEY(k3, &spki);
    uint8_t h[32];
    ASSERT_OK(veil__attest_sha256(veil_span_make(spki, (size_t)spki_len), h));
    OPENSSL_free(spki);
    struct veil_buf nc, val;
    veil_buf_init(&nc, 256);
    veil_buf_init(&val, 4096);
    ASSERT_OK(veil__attest_ratls_claims_encode(h, veil_span_make(NULL, 0), &nc));
    static const uint8_t head[] = {0xD9, 0xEA, 0x60, 0x82, 0x58};
    ASSERT_OK(veil_buf_append(&val, head, sizeof(head)));
    ASSERT_OK(veil_buf_append_u8(&val, (uint8_t)ev.len));
    ASSERT_OK(veil_buf_append(&val, ev.p, ev.len));
    ASSERT_OK(veil_buf_append_u8(&val, 0x58));
    ASSERT_OK(veil_buf_append_u8(&val, (uint8_t)nc.len));
    ASSERT_OK(veil_buf_append(&val, nc.p, nc.len));
    EVP_PKEY *k4 = NULL;
    X509 *forged = forge(val.p, val.len, &k4);
    /* forge() made its own key; put k3 in so the claims name the certificate's key. */
    X509_set_pubkey(forged, k3);
    X509_sign(forged, k3, EVP_sha256());
    veil_err rc2 = veil_attest_ratls_verify(forged, NULL, e.roots, &o, &c2);

    veil_buf_release(&nc);
    veil_buf_release(&val);
    X509_free(forged);
    X509_free(copy);
    X509_free(cert);
    EVP_PKEY_free(key);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(k3);
    EVP_PKEY_free(k4);
    sim_env_release(&e);
    ASSERT_ERR(rc1, VEIL_E_AUTH);
    ASSERT_EQ_U64(c1.reason, VEIL_ATTEST_BINDING);
    ASSERT_ERR(rc2, VEIL_E_AUTH);
    ASSERT_EQ_U64(c2.reason, VEIL_ATTEST_BINDING);
    ASSERT_STR_CONTAINS(c2.detail, "REPORT_DATA");
    static const uint8_t zero[32];
    ASSERT_MEM_EQ(c2.sim_measurement, zero, 32); /* nothing reported from refused evidence */
}

TEST(ratls_malformed_extension)
{
    struct veil_attest_verify_opts o = now_opts();
    struct veil_attest_claims c;
    static const uint8_t bad[][8] = {
        {0xD9, 0xEA, 0x61, 0x82, 0x40, 0x40},       /* wrong tag */
        {0xD9, 0xEA, 0x60, 0x83, 0x40, 0x40, 0x40}, /* three items */
        {0xD9, 0xEA, 0x60, 0x82, 0x5F, 0xFF},       /* indefinite length */
        {0xD9, 0xEA, 0x60, 0x82, 0x45, 0x00},       /* length past the end */
        {0xD9, 0xEA, 0x60, 0x82, 0x40, 0x40},       /* empty evidence and claims */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        EVP_PKEY *k = NULL;
        X509 *x = forge(bad[i], sizeof(bad[i]), &k);
        veil_err rc = veil_attest_ratls_verify(x, NULL, NULL, &o, &c);
        X509_free(x);
        EVP_PKEY_free(k);
        ASSERT_ERR(rc, VEIL_E_AUTH);
        ASSERT_EQ_U64(c.reason, VEIL_ATTEST_MALFORMED);
    }
    /* No extension at all. */
    X509 *x = X509_new();
    veil_err rc = veil_attest_ratls_verify(x, NULL, NULL, &o, &c);
    X509_free(x);
    ASSERT_ERR(rc, VEIL_E_AUTH);
    ASSERT_EQ_U64(c.reason, VEIL_ATTEST_MALFORMED);
}

TEST(claims_parse)
{
    uint64_t alg;
    struct veil_span h, n;
    uint8_t hash[32] = {9};
    struct veil_buf b;
    veil_buf_init(&b, 256);
    ASSERT_OK(veil__attest_ratls_claims_encode(hash, veil_span_make(NULL, 0), &b));
    ASSERT_OK(veil__attest_ratls_claims_parse(veil_buf_span(&b), &alg, &h, &n));
    ASSERT_EQ_U64(alg, 1);
    ASSERT_EQ_U64(h.len, 32);
    ASSERT_MEM_EQ(h.p, hash, 32);
    ASSERT_EQ_U64(n.len, 0);
    b.p[b.len - 35] = 0x02; /* algorithm 2 (SHA-256-128) is not accepted */
    ASSERT_ERR(veil__attest_ratls_claims_parse(veil_buf_span(&b), &alg, &h, &n),
               VEIL_E_UNSUPPORTED);
    ASSERT_ERR(veil__attest_ratls_claims_parse(veil_span_make(b.p, b.len - 1), &alg, &h, &n),
               VEIL_E_FORMAT);
    veil_buf_release(&b);
}

TEST(claims_with_nonce)
{
    uint64_t alg;
    struct veil_span h, n;
    uint8_t hash[32] = {9}, nonce[65];
    memset(nonce, 0x5A, sizeof(nonce));
    struct veil_buf b;
    veil_buf_init(&b, 512);
    ASSERT_OK(veil__attest_ratls_claims_encode(hash, veil_span_make(nonce, 32), &b));
    ASSERT_OK(veil__attest_ratls_claims_parse(veil_buf_span(&b), &alg, &h, &n));
    ASSERT_EQ_U64(n.len, 32);
    ASSERT_MEM_EQ(n.p, nonce, 32);
    ASSERT_MEM_EQ(h.p, hash, 32);
    /* A second "nonce" entry: which one would the broker check? Refused. */
    b.p[0] = 0xA3; /* map(3) */
    static const uint8_t again[] = {0x65, 'n', 'o', 'n', 'c', 'e', 0x41, 0x01};
    ASSERT_OK(veil_buf_append(&b, again, sizeof(again)));
    ASSERT_ERR(veil__attest_ratls_claims_parse(veil_buf_span(&b), &alg, &h, &n), VEIL_E_FORMAT);
    /* Empty or over-long nonces are refused at both ends. */
    veil_buf_reset(&b);
    ASSERT_ERR(veil__attest_ratls_claims_encode(hash, veil_span_make(nonce, 65), &b), VEIL_E_LIMIT);
    static const uint8_t empty[] = {0xA1, 0x65, 'n', 'o', 'n', 'c', 'e', 0x40};
    ASSERT_ERR(veil__attest_ratls_claims_parse(veil_span_make(empty, sizeof(empty)), &alg, &h, &n),
               VEIL_E_FORMAT);
    veil_buf_release(&b);
}

/*
 * Issue 17, attack 3: the nonce is inside the claims REPORT_DATA commits to, so evidence made
 * for one nonce cannot be presented with another; a certificate without one says so.
 */
TEST(ratls_nonce_is_bound_into_report_data)
{
    struct sim_env e = {0};
    ASSERT_TRUE(sim_env_init(&e));
    uint8_t nonce[32], other[32];
    memset(nonce, 0x11, sizeof(nonce));
    memset(other, 0x22, sizeof(other));
    EVP_PKEY *key = NULL, *k2 = NULL, *k3 = NULL;
    X509 *cert = NULL, *plain = NULL;
    ASSERT_OK(veil_attest_ratls_create(e.p, 3600, veil_span_make(nonce, 32), &key, &cert, NULL));
    ASSERT_OK(veil_attest_ratls_create(e.p, 3600, veil_span_make(NULL, 0), &k3, &plain, NULL));
    struct veil_attest_verify_opts o = now_opts();
    struct veil_attest_claims c1, c2;
    veil_err rc1 = veil_attest_ratls_verify(cert, NULL, e.roots, &o, &c1);
    struct veil_span n = {0}, none = {0};
    veil_err nrc = veil_attest_ratls_get_nonce(cert, &n);
    veil_err nrc2 = veil_attest_ratls_get_nonce(plain, &none);
    bool got = nrc == VEIL_OK && n.len == 32 && memcmp(n.p, nonce, 32) == 0;
    /* The extension ends with the nonce: put another there, keep the evidence and the key. */
    struct veil_span ext = ext_of(cert);
    struct veil_buf val;
    veil_buf_init(&val, 8192);
    ASSERT_OK(veil_buf_append(&val, ext.p, ext.len));
    memcpy(val.p + val.len - 32, other, 32);
    X509 *moved = forge(val.p, val.len, &k2);
    X509_set_pubkey(moved, key);
    X509_sign(moved, key, EVP_sha256());
    veil_err rc2 = veil_attest_ratls_verify(moved, NULL, e.roots, &o, &c2);
    veil_buf_release(&val);
    X509_free(moved);
    X509_free(cert);
    X509_free(plain);
    EVP_PKEY_free(key);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(k3);
    sim_env_release(&e);
    ASSERT_OK(rc1);
    ASSERT_TRUE(got);
    ASSERT_ERR(nrc2, VEIL_E_NOTFOUND);
    ASSERT_EQ_U64(none.len, 0);
    ASSERT_ERR(rc2, VEIL_E_AUTH);
    ASSERT_EQ_U64(c2.reason, VEIL_ATTEST_BINDING);
}

/* Issue 17: the RA-TLS certificate's validity window was never checked (2001 still passed). */
TEST(ratls_validity_window_is_checked)
{
    struct sim_env e = {0};
    ASSERT_TRUE(sim_env_init(&e));
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    ASSERT_OK(veil_attest_ratls_create(e.p, 3600, veil_span_make(NULL, 0), &key, &cert, NULL));
    struct veil_attest_claims c;
    /* The same certificate, by clocks before and after its window. */
    struct veil_attest_verify_opts early = {veil_time_now() - 2 * 3600, false};
    struct veil_attest_verify_opts late = {veil_time_now() + 2 * 3600, false};
    veil_err rc_early = veil_attest_ratls_verify(cert, NULL, e.roots, &early, &c);
    enum veil_attest_reason r_early = c.reason;
    veil_err rc_late = veil_attest_ratls_verify(cert, NULL, e.roots, &late, &c);
    enum veil_attest_reason r_late = c.reason;
    /* Dates of 2001, re-signed by the key: evidence and binding are intact, the dates are not. */
    ASN1_TIME *nb = ASN1_TIME_new(), *na = ASN1_TIME_new();
    ASSERT_TRUE(nb != NULL && na != NULL && ASN1_TIME_set_string(nb, "20010101000000Z") == 1 &&
                ASN1_TIME_set_string(na, "20011231235959Z") == 1);
    ASSERT_EQ_I64(X509_set1_notBefore(cert, nb), 1);
    ASSERT_EQ_I64(X509_set1_notAfter(cert, na), 1);
    ASSERT_TRUE(X509_sign(cert, key, EVP_sha256()) > 0);
    ASN1_TIME_free(nb);
    ASN1_TIME_free(na);
    struct veil_attest_verify_opts o = now_opts();
    veil_err rc_2001 = veil_attest_ratls_verify(cert, NULL, e.roots, &o, &c);
    enum veil_attest_reason r_2001 = c.reason;
    struct veil_attest_verify_opts then = {978307200 + 86400, false}; /* 2001-01-02 */
    veil_err rc_then = veil_attest_ratls_verify(cert, NULL, e.roots, &then, &c);
    X509_free(cert);
    EVP_PKEY_free(key);
    sim_env_release(&e);
    ASSERT_ERR(rc_early, VEIL_E_AUTH);
    ASSERT_EQ_U64(r_early, VEIL_ATTEST_CERT_EXPIRED);
    ASSERT_ERR(rc_late, VEIL_E_AUTH);
    ASSERT_EQ_U64(r_late, VEIL_ATTEST_CERT_EXPIRED);
    ASSERT_ERR(rc_2001, VEIL_E_AUTH);
    ASSERT_EQ_U64(r_2001, VEIL_ATTEST_CERT_EXPIRED);
    ASSERT_OK(rc_then); /* only the dates refused it */
}

TEST(sim_refused_unless_named)
{
    struct sim_env e = {0};
    ASSERT_TRUE(sim_env_init(&e));
    uint8_t rd[64] = {0};
    struct veil_buf ev;
    veil_buf_init(&ev, VEIL_ATTEST_MAX_EVIDENCE);
    ASSERT_OK(veil_attest_provider_get_evidence(e.p, rd, &ev, NULL, NULL));
    struct veil_attest_claims c;
    struct veil_attest_verify_opts o = now_opts();
    veil_err rc = veil_attest_verify(veil_buf_span(&ev), NULL, e.roots, &o, &c);
    veil_buf_release(&ev);
    sim_env_release(&e);
    ASSERT_OK(rc);
    struct veil_attest_policy *p = NULL;
    const struct veil_attest_workload *w = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(veil_attest_policy_parse(
        veil_span_from_str("{\"version\":1,\"workloads\":[{\"name\":\"prod\",\"tee\":\"sgx\","
                           "\"mrenclave\":\"0102030405060708090a000000000000000000000000000000"
                           "00000000000000\",\"keys\":[\"k\"]}]}"),
        &p, &eb));
    veil_err m1 = veil_attest_policy_match(p, &c, o.now, &w, &eb);
    veil_attest_policy_free(p);
    ASSERT_ERR(m1, VEIL_E_REJECTED);
    ASSERT_STR_CONTAINS(eb.msg, "sim");
    ASSERT_OK(veil_attest_policy_parse(
        veil_span_from_str("{\"version\":1,\"workloads\":[{\"name\":\"dev\",\"tee\":\"sim\","
                           "\"measurement\":\"0102030405060708090a000000000000000000000000000000"
                           "00000000000000\",\"min_svn\":3,\"keys\":[\"k\"]}]}"),
        &p, &eb));
    veil_err m2 = veil_attest_policy_match(p, &c, o.now, &w, &eb);
    veil_attest_policy_free(p);
    ASSERT_OK(m2);
}

/* A sim-only policy admitting measurement m (hex in the JSON). */
static struct veil_attest_policy *sim_policy(const uint8_t m[32])
{
    char hex[65], text[512];
    veil_hex_encode(m, 32, hex);
    snprintf(text, sizeof(text),
             "{\"version\":1,\"workloads\":[{\"name\":\"srv\",\"tee\":\"sim\","
             "\"measurement\":[\"%s\"],\"allow_debug\":true,\"keys\":[]}]}",
             hex);
    struct veil_attest_policy *p = NULL;
    if (veil_attest_policy_parse(veil_span_from_str(text), &p, NULL) != VEIL_OK)
        abort();
    return p;
}

/*
 * A client checking a server (veil predict --attest): the server's RA-TLS certificate for its
 * own TLS key and the client's nonce passes; an answer for another nonce (a replay), for
 * another key (a relay forwarding a genuine server's answer), from an untrusted sim key, past
 * its dates, without a nonce, or from a build the policy does not list is refused, each with
 * its own reason.
 */
TEST(server_check_accepts_only_fresh_evidence_for_the_peer_key)
{
    struct sim_env e = {0};
    ASSERT_TRUE(sim_env_init(&e));
    uint8_t nonce[32], old[32], other_meas[32];
    memset(nonce, 0x5a, sizeof(nonce));
    memset(old, 0x77, sizeof(old));
    memset(other_meas, 0xee, sizeof(other_meas));
    EVP_PKEY *tls_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *relay_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ASSERT_TRUE(tls_key != NULL && relay_key != NULL);
    X509 *cert = NULL, *stale = NULL, *plain = NULL;
    ASSERT_OK(veil_attest_ratls_create_for_key(e.p, tls_key, 300, veil_span_make(nonce, 32), &cert,
                                               NULL));
    ASSERT_TRUE(EVP_PKEY_eq(X509_get0_pubkey(cert), tls_key) == 1);
    ASSERT_OK(
        veil_attest_ratls_create_for_key(e.p, tls_key, 300, veil_span_make(old, 32), &stale, NULL));
    ASSERT_OK(
        veil_attest_ratls_create_for_key(e.p, tls_key, 300, veil_span_make(NULL, 0), &plain, NULL));
    struct veil_attest_policy *good = sim_policy(meas), *bad = sim_policy(other_meas);
    struct veil_attest_roots *nobody = NULL;
    ASSERT_OK(veil_attest_roots_new(&nobody));
    struct veil_attest_verify_opts o = now_opts(), later = now_opts();
    later.now += 600;
    struct veil_attest_claims c;
    const struct veil_attest_workload *w = NULL;
    struct veil_errbuf eb = {{0}};
    struct veil_span n = veil_span_make(nonce, 32);

    ASSERT_OK(
        veil_attest_ratls_check_server(cert, n, tls_key, NULL, e.roots, good, &o, &c, &w, &eb));
    ASSERT_TRUE(w != NULL);
    ASSERT_STR_EQ(veil_attest_workload_name(w), "srv");
    ASSERT_TRUE(c.verified && memcmp(c.sim_measurement, meas, 32) == 0);

    ASSERT_ERR(
        veil_attest_ratls_check_server(stale, n, tls_key, NULL, e.roots, good, &o, &c, &w, &eb),
        VEIL_E_AUTH);
    ASSERT_STR_CONTAINS(eb.msg, "does not answer this client's nonce");
    ASSERT_TRUE(w == NULL);
    ASSERT_ERR(
        veil_attest_ratls_check_server(plain, n, tls_key, NULL, e.roots, good, &o, &c, &w, &eb),
        VEIL_E_AUTH);
    ASSERT_STR_CONTAINS(eb.msg, "does not answer this client's nonce");
    ASSERT_ERR(veil_attest_ratls_check_server(cert, veil_span_make(NULL, 0), tls_key, NULL, e.roots,
                                              good, &o, &c, &w, &eb),
               VEIL_E_AUTH);
    ASSERT_ERR(
        veil_attest_ratls_check_server(cert, n, relay_key, NULL, e.roots, good, &o, &c, &w, &eb),
        VEIL_E_AUTH);
    ASSERT_STR_CONTAINS(eb.msg, "for another key than this TLS connection's");
    ASSERT_ERR(
        veil_attest_ratls_check_server(cert, n, tls_key, NULL, nobody, good, &o, &c, &w, &eb),
        VEIL_E_AUTH);
    ASSERT_STR_CONTAINS(eb.msg, "the server's evidence does not verify");
    ASSERT_ERR(
        veil_attest_ratls_check_server(cert, n, tls_key, NULL, e.roots, good, &later, &c, &w, &eb),
        VEIL_E_AUTH);
    ASSERT_STR_CONTAINS(eb.msg, "does not verify");
    ASSERT_ERR(
        veil_attest_ratls_check_server(cert, n, tls_key, NULL, e.roots, bad, &o, &c, &w, &eb),
        VEIL_E_REJECTED);
    ASSERT_STR_CONTAINS(eb.msg, "the server does not match the policy");
    ASSERT_STR_CONTAINS(eb.msg, "measurement");
    ASSERT_TRUE(w == NULL);

    veil_attest_policy_free(good);
    veil_attest_policy_free(bad);
    veil_attest_roots_free(nobody);
    X509_free(cert);
    X509_free(stale);
    X509_free(plain);
    EVP_PKEY_free(tls_key);
    EVP_PKEY_free(relay_key);
    sim_env_release(&e);
}

RUN_TESTS()
