/*
 * The policy: strict parsing (unknown fields, bad hex, duplicates refused), matching verified
 * claims from the corpus (TCB status, debug, measurement, SVN, SEPT_VE_DISABLE, collateral age,
 * sim only when named), key grants, and reload semantics (a broken file leaves the old policy).
 */
#include "common.h"

#include <unistd.h>

#include "harness.h"

static veil_err parse(const char *text, struct veil_attest_policy **p, struct veil_errbuf *eb)
{
    return veil_attest_policy_parse(veil_span_from_str(text), p, eb);
}

#define SGX_MRENCLAVE "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
#define SGX_MRSIGNER "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"

TEST(parse_refuses_bad_policies)
{
    static const char *const bad[] = {
        "[]",
        "{\"workloads\":[]}",
        "{\"version\":2,\"workloads\":[]}",
        "{\"version\":1,\"workloads\":[],\"extra\":1}",
        "{\"version\":1,\"workloads\":[{\"name\":\"a\",\"tee\":\"sgx\",\"keys\":[]}]}",
        "{\"version\":1,\"workloads\":[{\"name\":\"a\",\"tee\":\"sgx\",\"mrenclave\":\"00\","
        "\"keys\":[]}]}",
        "{\"version\":1,\"workloads\":[{\"name\":\"a\",\"tee\":\"tpm\",\"keys\":[]}]}",
        "{\"version\":1,\"workloads\":[{\"name\":\"a\",\"tee\":\"sgx\",\"mrenclave\":"
        "\"" SGX_MRENCLAVE "\"}]}",
        "{\"version\":1,\"workloads\":[{\"name\":\"a\",\"tee\":\"sgx\",\"mrenclave\":"
        "\"" SGX_MRENCLAVE "\",\"keys\":[],\"mrtd\":\"00\"}]}",
        "{\"version\":1,\"workloads\":[{\"name\":\"a\",\"tee\":\"sgx\",\"mrenclave\":"
        "\"" SGX_MRENCLAVE "\",\"keys\":[],\"tcb_status\":[\"Fine\"]}]}",
        "{\"version\":1,\"workloads\":[{\"name\":\"a\",\"tee\":\"sim\",\"measurement\":[],"
        "\"keys\":[]}]}",
        "{\"version\":1,\"workloads\":[{\"name\":\"a\",\"tee\":\"sgx\",\"mrenclave\":"
        "\"" SGX_MRENCLAVE
        "\",\"keys\":[]},{\"name\":\"a\",\"tee\":\"sgx\",\"mrenclave\":\"" SGX_MRENCLAVE
        "\",\"keys\":[]}]}",
        "{\"version\":1,\"workloads\":[{\"name\":\"a\",\"tee\":\"sgx\",\"mrenclave\":"
        "\"" SGX_MRENCLAVE "\",\"keys\":[],\"allow_debug\":\"yes\"}]}",
        "{\"version\":1,\"workloads\":[{\"name\":\"a\",\"tee\":\"tdx\",\"mrtd\":\"" SGX_MRENCLAVE
        "\",\"keys\":[]}]}",
        "{\"version\":1,",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct veil_attest_policy *p = NULL;
        struct veil_errbuf eb = {{0}};
        veil_err rc = parse(bad[i], &p, &eb);
        veil_attest_policy_free(p);
        if (rc != VEIL_E_FORMAT || p != NULL)
            HFAIL("bad policy #%zu: %s", i, veil_err_name(rc));
        ASSERT_STR_CONTAINS(eb.msg, "policy");
    }
}

static veil_err verified(const char *dir, const char *c, const char *file,
                         struct veil_attest_claims *out)
{
    return verify_case_file(dir, c, file, -1, false, out);
}

TEST(sgx_tcb_status_and_identity)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_OK(verified(dir, "sgx-dcap-v3-dcap-qvl", "quote.bin", &c));
    int64_t now = t3339("2025-07-01T00:00:00Z");
    struct veil_attest_policy *p = NULL;
    const struct veil_attest_workload *w = NULL;
    struct veil_errbuf eb = {{0}};
    /* Default TCB statuses: UpToDate only. */
    ASSERT_OK(parse("{\"version\":1,\"workloads\":[{\"name\":\"svc\",\"tee\":\"sgx\","
                    "\"mrenclave\":[\"" SGX_MRENCLAVE "\"],\"keys\":[\"k1\"]}]}",
                    &p, &eb));
    ASSERT_ERR(veil_attest_policy_match(p, &c, now, &w, &eb), VEIL_E_REJECTED);
    ASSERT_STR_CONTAINS(eb.msg, "TCB status");
    veil_attest_policy_free(p);
    /* Accepted when the status is listed; the workload's keys come back. */
    ASSERT_OK(parse("{\"version\":1,\"workloads\":[{\"name\":\"svc\",\"tee\":\"sgx\","
                    "\"mrsigner\":\"" SGX_MRSIGNER "\",\"isv_prod_id\":0,\"min_svn\":0,"
                    "\"tcb_status\":[\"UpToDate\",\"ConfigurationAndSWHardeningNeeded\"],"
                    "\"max_collateral_age_s\":2592000,\"keys\":[\"k1\",\"k2\"]}]}",
                    &p, &eb));
    ASSERT_OK(veil_attest_policy_match(p, &c, now, &w, &eb));
    ASSERT_STR_EQ(veil_attest_workload_name(w), "svc");
    ASSERT_EQ_U64(veil_attest_workload_tee(w), VEIL_TEE_SGX);
    ASSERT_EQ_U64(veil_attest_workload_key_count(w), 2);
    ASSERT_STR_EQ(veil_attest_workload_key(w, 1), "k2");
    ASSERT_TRUE(veil_attest_workload_key(w, 2) == NULL);
    ASSERT_TRUE(veil_attest_workload_may_receive(w, "k1"));
    ASSERT_FALSE(veil_attest_workload_may_receive(w, "k3"));
    /* Collateral freshness: the same claims a month later are too old. */
    ASSERT_ERR(veil_attest_policy_match(p, &c, now + 40 * 86400, &w, &eb), VEIL_E_REJECTED);
    veil_attest_policy_free(p);
    /* Low SVN, wrong measurement, wrong product. */
    static const char *const rej[][2] = {
        {"\"mrsigner\":\"" SGX_MRSIGNER "\",\"isv_prod_id\":0,\"min_svn\":1", "SVN"},
        {"\"mrenclave\":\"" SGX_MRSIGNER "\"", "measurement"},
        {"\"mrsigner\":\"" SGX_MRSIGNER "\",\"isv_prod_id\":7", "product"},
        {"\"mrsigner\":\"" SGX_MRENCLAVE "\",\"isv_prod_id\":0", "MRSIGNER"},
    };
    for (size_t i = 0; i < sizeof(rej) / sizeof(rej[0]); i++) {
        char text[1024];
        snprintf(text, sizeof(text),
                 "{\"version\":1,\"workloads\":[{\"name\":\"svc\",\"tee\":\"sgx\",%s,"
                 "\"tcb_status\":[\"ConfigurationAndSWHardeningNeeded\"],\"keys\":[]}]}",
                 rej[i][0]);
        ASSERT_OK(parse(text, &p, &eb));
        veil_err rc = veil_attest_policy_match(p, &c, now, &w, &eb);
        veil_attest_policy_free(p);
        ASSERT_ERR(rc, VEIL_E_REJECTED);
        ASSERT_STR_CONTAINS(eb.msg, rej[i][1]);
    }
}

TEST(sgx_debug_refused_unless_stated)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_OK(verified(dir, "sgx-dcap-v3-dcap-qvl", "quote.bin", &c));
    c.debug = true; /* claims as a debug enclave would produce them */
    int64_t now = t3339("2025-07-01T00:00:00Z");
    struct veil_attest_policy *p = NULL;
    const struct veil_attest_workload *w = NULL;
    struct veil_errbuf eb = {{0}};
#define BASE                                                                                       \
    "{\"version\":1,\"workloads\":[{\"name\":\"svc\",\"tee\":\"sgx\",\"mrenclave\":"               \
    "\"" SGX_MRENCLAVE                                                                             \
    "\",\"tcb_status\":[\"ConfigurationAndSWHardeningNeeded\"],\"keys\":[]%s}]}"
    char text[1024];
    snprintf(text, sizeof(text), BASE, "");
    ASSERT_OK(parse(text, &p, &eb));
    ASSERT_ERR(veil_attest_policy_match(p, &c, now, &w, &eb), VEIL_E_REJECTED);
    ASSERT_STR_CONTAINS(eb.msg, "debug");
    veil_attest_policy_free(p);
    snprintf(text, sizeof(text), BASE, ",\"allow_debug\":true");
    ASSERT_OK(parse(text, &p, &eb));
    ASSERT_OK(veil_attest_policy_match(p, &c, now, &w, &eb));
    veil_attest_policy_free(p);
}

TEST(snp_debug_and_vmpl)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_OK(verified(dir, "snp-milan-vcek-go-sev-guest", "report.bin", &c));
    ASSERT_TRUE(c.debug);
    int64_t now = t3339("2025-06-01T00:00:00Z");
    struct veil_attest_policy *p = NULL;
    const struct veil_attest_workload *w = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(parse("{\"version\":1,\"workloads\":[{\"name\":\"g\",\"tee\":\"snp\","
                    "\"measurement\":\"b07af9620f3b839b47996422ddec6058338951d984e312115131ea8270"
                    "5eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01\",\"min_tcb\":{},\"keys\":[\"m\"]}]}",
                    &p, &eb));
    ASSERT_ERR(veil_attest_policy_match(p, &c, now, &w, &eb), VEIL_E_REJECTED);
    ASSERT_STR_CONTAINS(eb.msg, "debug");
    veil_attest_policy_free(p);

    ASSERT_OK(verified(dir, "snp-milan-vcek-virtee", "report.bin", &c));
    ASSERT_OK(parse("{\"version\":1,\"workloads\":[{\"name\":\"v\",\"tee\":\"snp\","
                    "\"measurement\":[\"7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b5"
                    "79ea158d3e1a0dc39b2c60bd95b9c480cd81841f\"],\"min_svn\":0,\"max_vmpl\":0,"
                    "\"min_tcb\":{\"bootloader\":3,\"tee\":0,\"snp\":8,\"microcode\":115},"
                    "\"keys\":[\"m\"]}]}",
                    &p, &eb));
    ASSERT_OK(veil_attest_policy_match(p, &c, now, &w, &eb));
    veil_attest_policy_free(p);
    ASSERT_OK(parse("{\"version\":1,\"workloads\":[{\"name\":\"v\",\"tee\":\"snp\","
                    "\"measurement\":[\"7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b5"
                    "79ea158d3e1a0dc39b2c60bd95b9c480cd81841f\"],"
                    "\"min_tcb\":{\"microcode\":116},\"keys\":[\"m\"]}]}",
                    &p, &eb));
    ASSERT_ERR(veil_attest_policy_match(p, &c, now, &w, &eb), VEIL_E_REJECTED);
    ASSERT_STR_CONTAINS(eb.msg, "min_tcb");
    veil_attest_policy_free(p);
}

TEST(tdx_sept_ve_and_rtmr)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_OK(verified(dir, "tdx-v4-dcap-qvl", "quote.bin", &c));
    int64_t now = t3339("2025-07-01T00:00:00Z");
    char mrtd[97], rtmr0[97], text[2048];
    veil_hex_encode(c.mrtd, 48, mrtd);
    veil_hex_encode(c.rtmr[0], 48, rtmr0);
    struct veil_attest_policy *p = NULL;
    const struct veil_attest_workload *w = NULL;
    struct veil_errbuf eb = {{0}};
    snprintf(text, sizeof(text),
             "{\"version\":1,\"workloads\":[{\"name\":\"td\",\"tee\":\"tdx\",\"mrtd\":[\"%s\"],"
             "\"rtmr0\":\"%s\",\"allow_unmeasured_rtmrs\":[1,2],\"keys\":[\"k\"]}]}",
             mrtd, rtmr0);
    ASSERT_OK(parse(text, &p, &eb));
    ASSERT_OK(veil_attest_policy_match(p, &c, now, &w, &eb));
    c.td_attributes &= ~(1ull << 28);
    ASSERT_ERR(veil_attest_policy_match(p, &c, now, &w, &eb), VEIL_E_REJECTED);
    ASSERT_STR_CONTAINS(eb.msg, "SEPT_VE_DISABLE");
    c.td_attributes |= 1ull << 28;
    c.rtmr[0][0] ^= 1;
    ASSERT_ERR(veil_attest_policy_match(p, &c, now, &w, &eb), VEIL_E_REJECTED);
    ASSERT_STR_CONTAINS(eb.msg, "RTMR");
    /* Unverified claims are never matched. */
    c.rtmr[0][0] ^= 1;
    c.verified = false;
    ASSERT_ERR(veil_attest_policy_match(p, &c, now, &w, &eb), VEIL_E_INVALID);
    veil_attest_policy_free(p);
}

/*
 * Strict defaults: a TDX workload names MRTD and RTMR0-2 (MRTD alone measures only the
 * firmware, not the kernel and command line in RTMR1/2) unless allow_unmeasured_rtmrs says
 * otherwise, and an SNP workload sets min_tcb. Each refusal names what is missing.
 */
TEST(strict_tdx_and_snp_defaults)
{
    char td[4096], r[4][120];
    static const char *const mrtd =
        "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d"
        "7215cbb";
    for (int i = 0; i < 4; i++)
        snprintf(r[i], sizeof(r[i]), "\"rtmr%d\":\"%s\",", i, mrtd);
    static const struct {
        const char *rtmrs[4], *extra, *missing; /* missing NULL: accepted */
    } cases[] = {
        {{NULL, NULL, NULL, NULL}, "", "needs rtmr0"},
        {{"x", NULL, NULL, NULL}, "", "needs rtmr1"},
        {{"x", "x", NULL, NULL}, "", "needs rtmr2"},
        {{"x", "x", "x", NULL}, "", NULL},
        {{"x", "x", "x", "x"}, "", NULL},
        {{NULL, "x", "x", NULL}, "\"allow_unmeasured_rtmrs\":[0],", NULL},
        {{NULL, NULL, NULL, NULL}, "\"allow_unmeasured_rtmrs\":[0,1,2],", NULL},
        {{NULL, NULL, NULL, NULL}, "\"allow_unmeasured_rtmrs\":[0,2],", "needs rtmr1"},
        {{"x", "x", "x", NULL}, "\"allow_unmeasured_rtmrs\":[4],", "allow_unmeasured_rtmrs"},
        {{"x", "x", "x", NULL}, "\"allow_unmeasured_rtmrs\":[],", "allow_unmeasured_rtmrs"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = (size_t)snprintf(td, sizeof(td),
                                      "{\"version\":1,\"workloads\":[{\"name\":\"td\","
                                      "\"tee\":\"tdx\",\"mrtd\":\"%s\",%s",
                                      mrtd, cases[i].extra);
        for (int k = 0; k < 4; k++)
            if (cases[i].rtmrs[k] != NULL)
                len += (size_t)snprintf(td + len, sizeof(td) - len, "%s", r[k]);
        snprintf(td + len, sizeof(td) - len, "\"keys\":[]}]}");
        struct veil_attest_policy *p = NULL;
        struct veil_errbuf eb = {{0}};
        veil_err rc = parse(td, &p, &eb);
        veil_attest_policy_free(p);
        if (cases[i].missing == NULL) {
            if (rc != VEIL_OK)
                HFAIL("tdx case %zu refused: %s", i, eb.msg);
        } else {
            if (rc != VEIL_E_FORMAT)
                HFAIL("tdx case %zu accepted", i);
            ASSERT_STR_CONTAINS(eb.msg, cases[i].missing);
        }
    }
    struct veil_attest_policy *p = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_ERR(parse("{\"version\":1,\"workloads\":[{\"name\":\"s\",\"tee\":\"snp\","
                     "\"measurement\":\"" SGX_MRENCLAVE "00000000000000000000000000000000\","
                     "\"keys\":[]}]}",
                     &p, &eb),
               VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(eb.msg, "needs min_tcb");
    /* allow_unmeasured_rtmrs belongs to TDX only. */
    ASSERT_ERR(parse("{\"version\":1,\"workloads\":[{\"name\":\"s\",\"tee\":\"sim\","
                     "\"measurement\":\"" SGX_MRENCLAVE "\",\"allow_unmeasured_rtmrs\":[1],"
                     "\"keys\":[]}]}",
                     &p, &eb),
               VEIL_E_FORMAT);
}

/*
 * The names a workload's serving certificate may carry: exact DNS names or IP addresses,
 * validated (no wildcards, spaces, control characters, empty labels), no duplicates.
 */
TEST(workload_names)
{
    struct veil_attest_policy *p = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(parse("{\"version\":1,\"workloads\":[{\"name\":\"dev\",\"tee\":\"sim\","
                    "\"measurement\":\"" SGX_MRENCLAVE "\",\"names\":[\"model.example.com\","
                    "\"10.0.0.7\",\"::1\",\"serve-1\"],\"keys\":[]}]}",
                    &p, &eb));
    const struct veil_attest_workload *w = veil_attest_policy_workload(p, 0);
    ASSERT_EQ_U64(veil_attest_workload_host_count(w), 4);
    ASSERT_STR_EQ(veil_attest_workload_host(w, 1), "10.0.0.7");
    ASSERT_TRUE(veil_attest_workload_host(w, 4) == NULL);
    ASSERT_TRUE(veil_attest_workload_grants_host(w, "Model.Example.COM"));
    ASSERT_TRUE(veil_attest_workload_grants_host(w, "serve-1"));
    ASSERT_TRUE(!veil_attest_workload_grants_host(w, "localhost"));
    ASSERT_TRUE(!veil_attest_workload_grants_host(w, "example.com"));
    veil_attest_policy_free(p);
    static const char *const bad[] = {
        "\"*.example.com\"",
        "\"a..b\"",
        "\"-a.b\"",
        "\"a-.b\"",
        "\"a b\"",
        "\"a\\nb\"",
        "\"\"",
        "\"1.2.3.999\"",
        "\"a\\u0000b\"",
        "\"x,y\"",
        "\"a/b\"",
        "1",
        "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com\"",
        "\"a.b\",\"A.B\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "{\"version\":1,\"workloads\":[{\"name\":\"dev\",\"tee\":\"sim\","
                 "\"measurement\":\"" SGX_MRENCLAVE "\",\"names\":[%s],\"keys\":[]}]}",
                 bad[i]);
        p = NULL;
        veil_err rc = parse(text, &p, &eb);
        veil_attest_policy_free(p);
        if (rc != VEIL_E_FORMAT)
            HFAIL("names [%s] accepted", bad[i]);
        ASSERT_STR_CONTAINS(eb.msg, "policy");
    }
    ASSERT_TRUE(veil_attest_host_name_ok("localhost", 9));
    ASSERT_TRUE(!veil_attest_host_name_ok("local\0host", 10));
}

/* Minimum versions per model: parsed in order, validated (names, non-negative integers). */
TEST(workload_min_versions)
{
    struct veil_attest_policy *p = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(parse("{\"version\":1,\"workloads\":[{\"name\":\"dev\",\"tee\":\"sim\","
                    "\"measurement\":\"" SGX_MRENCLAVE "\",\"min_versions\":{\"resnet50\":3,"
                    "\"bert\":0},\"keys\":[]}]}",
                    &p, &eb));
    const struct veil_attest_workload *w = veil_attest_policy_workload(p, 0);
    int64_t v = -1;
    ASSERT_EQ_U64(veil_attest_workload_min_version_count(w), 2);
    ASSERT_STR_EQ(veil_attest_workload_min_version(w, 0, &v), "resnet50");
    ASSERT_EQ_I64(v, 3);
    ASSERT_STR_EQ(veil_attest_workload_min_version(w, 1, &v), "bert");
    ASSERT_EQ_I64(v, 0);
    ASSERT_TRUE(veil_attest_workload_min_version(w, 2, &v) == NULL);
    veil_attest_policy_free(p);
    static const char *const bad[] = {
        "{}",          "[]",       "{\"a\":-1}",   "{\"a\":1.5}", "{\"a\":\"2\"}",
        "{\"a/b\":1}", "{\"\":1}", "{\"a\\nb\":1}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "{\"version\":1,\"workloads\":[{\"name\":\"dev\",\"tee\":\"sim\","
                 "\"measurement\":\"" SGX_MRENCLAVE "\",\"min_versions\":%s,\"keys\":[]}]}",
                 bad[i]);
        p = NULL;
        veil_err rc = parse(text, &p, &eb);
        veil_attest_policy_free(p);
        if (rc != VEIL_E_FORMAT)
            HFAIL("min_versions %s accepted", bad[i]);
        ASSERT_STR_CONTAINS(eb.msg, "min_versions");
    }
}

TEST(workload_cert_lifetime)
{
    struct veil_attest_policy *p = NULL;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(parse("{\"version\":1,\"workloads\":[{\"name\":\"a\",\"tee\":\"sim\","
                    "\"measurement\":\"" SGX_MRENCLAVE "\",\"cert_lifetime_s\":3600,\"keys\":[]},"
                    "{\"name\":\"b\",\"tee\":\"sim\",\"measurement\":\"" SGX_MRENCLAVE "\","
                    "\"keys\":[]},{\"name\":\"c\",\"tee\":\"sim\",\"cert_lifetime_s\":5,"
                    "\"measurement\":\"" SGX_MRENCLAVE "\",\"keys\":[]}]}",
                    &p, &eb));
    ASSERT_EQ_I64(veil_attest_workload_cert_lifetime(veil_attest_policy_workload(p, 0)), 3600);
    /* Absent: 0, the broker's default applies. */
    ASSERT_EQ_I64(veil_attest_workload_cert_lifetime(veil_attest_policy_workload(p, 1)), 0);
    ASSERT_EQ_I64(veil_attest_workload_cert_lifetime(veil_attest_policy_workload(p, 2)), 5);
    veil_attest_policy_free(p);
    static const char *const bad[] = {"0",   "4",        "-60",  "31622401",
                                      "1.5", "\"3600\"", "true", "9223372036854775807"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "{\"version\":1,\"workloads\":[{\"name\":\"dev\",\"tee\":\"sim\","
                 "\"measurement\":\"" SGX_MRENCLAVE "\",\"cert_lifetime_s\":%s,\"keys\":[]}]}",
                 bad[i]);
        p = NULL;
        veil_err rc = parse(text, &p, &eb);
        veil_attest_policy_free(p);
        if (rc != VEIL_E_FORMAT)
            HFAIL("cert_lifetime_s %s accepted", bad[i]);
        ASSERT_STR_CONTAINS(eb.msg, "cert_lifetime_s must be an integer from 5 to 31622400");
    }
    /* The longest lifetime is accepted. */
    ASSERT_OK(parse("{\"version\":1,\"workloads\":[{\"name\":\"a\",\"tee\":\"sim\","
                    "\"measurement\":\"" SGX_MRENCLAVE "\",\"cert_lifetime_s\":31622400,"
                    "\"keys\":[]}]}",
                    &p, &eb));
    veil_attest_policy_free(p);
}

TEST(reload_keeps_old_policy_on_error)
{
    char path[] = "/tmp/veil-policy-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    close(fd);
    const char *good = "{\"version\":1,\"workloads\":[{\"name\":\"dev\",\"tee\":\"sim\","
                       "\"measurement\":\"" SGX_MRENCLAVE "\",\"keys\":[\"k\"]}]}";
    struct veil_attest_policy *cur = NULL, *next = NULL;
    struct veil_errbuf eb = {{0}};
    veil_err rc1 =
        veil_file_write_atomic(path, veil_span_from_str(good), 0600, VEIL_ATOMIC_REPLACE, NULL);
    veil_err rc2 = veil_attest_policy_load(path, &cur, &eb);
    veil_err rc3 =
        veil_file_write_atomic(path, veil_span_from_str("{\"version\":1,\"workloads\":["), 0600,
                               VEIL_ATOMIC_REPLACE, NULL);
    veil_err rc4 = veil_attest_policy_load(path, &next, &eb);
    unlink(path);
    ASSERT_OK(rc1);
    ASSERT_OK(rc2);
    ASSERT_OK(rc3);
    ASSERT_ERR(rc4, VEIL_E_FORMAT);
    ASSERT_TRUE(next == NULL);
    ASSERT_EQ_U64(veil_attest_policy_workload_count(cur), 1);
    ASSERT_STR_EQ(veil_attest_workload_name(veil_attest_policy_workload(cur, 0)), "dev");
    ASSERT_TRUE(veil_attest_policy_workload(cur, 1) == NULL);
    veil_attest_policy_free(cur);
}

RUN_TESTS()
