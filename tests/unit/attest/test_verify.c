/*
 * Every recorded evidence case of the shared corpus reaches its expected verdict at its fixed
 * `now`: SGX quote v3, TDX quote v4/v5, SEV-SNP reports, and the derived negative cases, plus
 * the time-based negatives (collateral expired, CRL expired) and trailing-data handling.
 */
#include "common.h"

#include "harness.h"

static const char *hex(const uint8_t *p, size_t n)
{
    static char buf[2][257];
    static int k;
    k ^= 1;
    veil_hex_encode(p, n, buf[k]);
    return buf[k];
}

/* Reads expected.json's fields.<key> as a string ("" when absent). */
static const char *expected_field(const char *dir, const char *c, const char *key)
{
    static char out[512];
    struct veil_buf b;
    struct veil_arena a;
    struct veil_json *doc = NULL;
    out[0] = '\0';
    veil_arena_init(&a, 4096, 1u << 20);
    if (read_case_file(dir, c, "expected.json", &b) == VEIL_OK &&
        veil_json_parse(veil_buf_span(&b), &a, &doc, NULL) == VEIL_OK) {
        const struct veil_json *v = veil_json_get(veil_json_get(doc, "fields"), key);
        if (v != NULL && v->type == VEIL_JSON_STRING)
            snprintf(out, sizeof(out), "%s", v->str);
        else if (v != NULL && v->type == VEIL_JSON_NUMBER)
            snprintf(out, sizeof(out), "%lld", (long long)v->i);
        else if (v != NULL && v->type == VEIL_JSON_BOOL)
            snprintf(out, sizeof(out), "%s", v->b ? "true" : "false");
    }
    veil_buf_release(&b);
    veil_arena_release(&a);
    return out;
}

TEST(sgx_dcap_qvl_ok)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_OK(verify_case_file(dir, "sgx-dcap-v3-dcap-qvl", "quote.bin", -1, false, &c));
    ASSERT_TRUE(c.verified);
    ASSERT_EQ_U64(c.tee, VEIL_TEE_SGX);
    ASSERT_EQ_U64(c.version, 3);
    ASSERT_STR_EQ(c.tcb_status, "ConfigurationAndSWHardeningNeeded");
    ASSERT_EQ_U64(c.advisory_count, 2);
    ASSERT_STR_EQ(c.advisory_ids[0], "INTEL-SA-00289");
    ASSERT_STR_EQ(c.advisory_ids[1], "INTEL-SA-00615");
    ASSERT_FALSE(c.debug);
    ASSERT_STR_EQ(hex(c.fmspc, 6), "00a067110000");
    ASSERT_EQ_I64(c.collateral_expires, t3339("2025-07-19T10:01:18Z"));
}

TEST(sgx_dcap_qvl_expired_collateral)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_ERR(verify_case_file(dir, "sgx-dcap-v3-dcap-qvl", "quote.bin",
                                t3339("2025-07-20T00:00:00Z"), false, &c),
               VEIL_E_AUTH);
    ASSERT_EQ_U64(c.reason, VEIL_ATTEST_COLLATERAL_EXPIRED);
    ASSERT_FALSE(c.verified);
    /* Before the collateral was issued is as bad as after it expired. */
    ASSERT_ERR(verify_case_file(dir, "sgx-dcap-v3-dcap-qvl", "quote.bin",
                                t3339("2025-06-01T00:00:00Z"), false, &c),
               VEIL_E_AUTH);
    ASSERT_TRUE(c.reason == VEIL_ATTEST_COLLATERAL_EXPIRED || c.reason == VEIL_ATTEST_CRL_EXPIRED);
}

TEST(sgx_mobilecoin_crl_expired)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_ERR(verify_case_file(dir, "sgx-dcap-v3-mobilecoin", "quote.bin", -1, false, &c),
               VEIL_E_AUTH);
    ASSERT_EQ_U64(c.reason, VEIL_ATTEST_CRL_EXPIRED);
    ASSERT_STR_CONTAINS(c.detail, "PCK CRL");
    ASSERT_STR_EQ(c.tcb_status, "");
}

TEST(sgx_mobilecoin_relaxed_crl)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_OK(verify_case_file(dir, "sgx-dcap-v3-mobilecoin", "quote.bin", -1, true, &c));
    ASSERT_STR_EQ(c.tcb_status, "SWHardeningNeeded");
    ASSERT_EQ_U64(c.advisory_count, 2);
    ASSERT_STR_EQ(c.advisory_ids[0], "INTEL-SA-00334");
    ASSERT_STR_EQ(c.advisory_ids[1], "INTEL-SA-00615");
    ASSERT_STR_EQ(hex(c.fmspc, 6), "00906ed50000");
}

TEST(tdx_v4_dcap_qvl_ok)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_OK(verify_case_file(dir, "tdx-v4-dcap-qvl", "quote.bin", -1, false, &c));
    ASSERT_EQ_U64(c.tee, VEIL_TEE_TDX);
    ASSERT_EQ_U64(c.version, 4);
    ASSERT_STR_EQ(c.tcb_status, "UpToDate");
    ASSERT_EQ_U64(c.advisory_count, 0);
    ASSERT_FALSE(c.debug);
    ASSERT_EQ_U64(c.td_attributes, 0x10000000u);
    ASSERT_STR_EQ(hex(c.tee_tcb_svn, 3), "060103");
    ASSERT_STR_EQ(hex(c.fmspc, 6), "b0c06f000000");
}

TEST(tdx_v4_go_tdx_guest_tcb_not_supported)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_ERR(verify_case_file(dir, "tdx-v4-go-tdx-guest", "quote.bin", -1, false, &c),
               VEIL_E_AUTH);
    ASSERT_EQ_U64(c.reason, VEIL_ATTEST_TCB_NOT_SUPPORTED);
    ASSERT_EQ_U64(c.tee, VEIL_TEE_TDX);
    /* Trailing bytes after the signature data change nothing. */
    ASSERT_ERR(verify_case_file(dir, "tdx-v4-go-tdx-guest",
                                "quote.original_with_trailing_bytes.bin", -1, false, &c),
               VEIL_E_AUTH);
    ASSERT_EQ_U64(c.reason, VEIL_ATTEST_TCB_NOT_SUPPORTED);
}

TEST(tdx_v5_tcb_not_supported)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_ERR(
        verify_case_file(dir, "tdx-v5-dcap-qvl-tcb-not-supported", "quote.bin", -1, false, &c),
        VEIL_E_AUTH);
    ASSERT_EQ_U64(c.reason, VEIL_ATTEST_TCB_NOT_SUPPORTED);
    ASSERT_EQ_U64(c.version, 5);
}

static void check_snp(const char *dir, const char *name)
{
    struct veil_attest_claims c;
    ASSERT_OK(verify_case_file(dir, name, "report.bin", -1, false, &c));
    ASSERT_EQ_U64(c.tee, VEIL_TEE_SNP);
    ASSERT_STR_EQ(hex(c.measurement, 48), expected_field(dir, name, "measurement"));
    ASSERT_STR_EQ(hex(c.report_data, 64), expected_field(dir, name, "report_data"));
    ASSERT_STR_EQ(hex(c.chip_id, 64), expected_field(dir, name, "chip_id"));
    char buf[32];
    snprintf(buf, sizeof(buf), "0x%llx", (unsigned long long)c.snp_policy);
    ASSERT_STR_EQ(buf, expected_field(dir, name, "policy"));
    snprintf(buf, sizeof(buf), "0x%016llx", (unsigned long long)c.reported_tcb);
    ASSERT_STR_EQ(buf, expected_field(dir, name, "reported_tcb"));
    snprintf(buf, sizeof(buf), "%u", c.version);
    ASSERT_STR_EQ(buf, expected_field(dir, name, "version"));
    ASSERT_STR_EQ(c.debug ? "true" : "false", expected_field(dir, name, "debug_allowed"));
    ASSERT_EQ_U64(c.vmpl, 0);
}

TEST(snp_milan_go_sev_guest)
{
    NEED_CORPUS(dir);
    check_snp(dir, "snp-milan-vcek-go-sev-guest");
}

TEST(snp_milan_virtee)
{
    NEED_CORPUS(dir);
    check_snp(dir, "snp-milan-vcek-virtee");
}

TEST(snp_milan_trustee_idblock)
{
    NEED_CORPUS(dir);
    check_snp(dir, "snp-milan-vcek-trustee-idblock");
}

TEST(snp_genoa_azure)
{
    NEED_CORPUS(dir);
    check_snp(dir, "snp-genoa-vcek-azure-trustee");
    struct veil_attest_claims c;
    ASSERT_OK(verify_case_file(dir, "snp-genoa-vcek-azure-trustee", "report.bin", -1, false, &c));
    ASSERT_STR_EQ(c.product, "Genoa");
}

TEST(snp_vcek_expired)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_ERR(verify_case_file(dir, "snp-milan-vcek-virtee", "report.bin",
                                t3339("2031-01-01T00:00:00Z"), false, &c),
               VEIL_E_AUTH);
    ASSERT_EQ_U64(c.reason, VEIL_ATTEST_CERT_EXPIRED);
}

TEST(neg_sgx_flipped_body)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_ERR(verify_case_file(dir, "neg-sgx-flipped-body", "quote.bin", -1, false, &c),
               VEIL_E_AUTH);
    ASSERT_EQ_U64(c.reason, VEIL_ATTEST_QUOTE_SIGNATURE);
    static const uint8_t zero[32];
    ASSERT_MEM_EQ(c.mrenclave, zero, 32); /* never reported before the signature check */
}

TEST(neg_sgx_truncated)
{
    NEED_CORPUS(dir);
    static const char *const files[] = {"quote.truncated_1000.bin", "quote.truncated_4599.bin",
                                        "quote.truncated_40.bin"};
    for (size_t i = 0; i < 3; i++) {
        struct veil_attest_claims c;
        ASSERT_ERR(verify_case_file(dir, "neg-sgx-truncated", files[i], -1, false, &c),
                   VEIL_E_AUTH);
        ASSERT_EQ_U64(c.reason, VEIL_ATTEST_MALFORMED);
        ASSERT_STR_CONTAINS(c.detail, "exceeds input");
    }
}

TEST(neg_sgx_foreign_pck_chain)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_ERR(verify_case_file(dir, "neg-sgx-foreign-pck-chain", "quote.bin", -1, false, &c),
               VEIL_E_AUTH);
    ASSERT_TRUE(c.reason == VEIL_ATTEST_TCB_INFO_MISMATCH ||
                c.reason == VEIL_ATTEST_QE_REPORT_SIGNATURE);
}

TEST(neg_tdx_flipped_rtmr0)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_ERR(verify_case_file(dir, "neg-tdx-flipped-rtmr0", "quote.bin", -1, false, &c),
               VEIL_E_AUTH);
    ASSERT_EQ_U64(c.reason, VEIL_ATTEST_QUOTE_SIGNATURE);
}

TEST(neg_snp_flipped_measurement)
{
    NEED_CORPUS(dir);
    struct veil_attest_claims c;
    ASSERT_ERR(verify_case_file(dir, "neg-snp-flipped-measurement", "report.bin", -1, false, &c),
               VEIL_E_AUTH);
    ASSERT_EQ_U64(c.reason, VEIL_ATTEST_REPORT_SIGNATURE);
}

TEST(peek_before_verification)
{
    NEED_CORPUS(dir);
    static const struct {
        const char *c, *file;
        enum veil_tee tee;
        const char *fmspc;
    } cases[] = {
        {"sgx-dcap-v3-dcap-qvl", "quote.bin", VEIL_TEE_SGX, "00a067110000"},
        {"tdx-v4-dcap-qvl", "quote.bin", VEIL_TEE_TDX, "b0c06f000000"},
        {"tdx-v5-dcap-qvl-tcb-not-supported", "quote.bin", VEIL_TEE_TDX, "90c06f000000"},
        {"snp-genoa-vcek-azure-trustee", "report.bin", VEIL_TEE_SNP, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct veil_buf b;
        enum veil_tee tee;
        uint8_t fmspc[6];
        bool has = false;
        ASSERT_OK(read_case_file(dir, cases[i].c, cases[i].file, &b));
        veil_err rc = veil_attest_peek(veil_buf_span(&b), &tee, fmspc, &has);
        veil_buf_release(&b);
        ASSERT_OK(rc);
        ASSERT_EQ_U64(tee, cases[i].tee);
        ASSERT_EQ_U64(has, cases[i].fmspc != NULL);
        if (has)
            ASSERT_STR_EQ(hex(fmspc, 6), cases[i].fmspc);
    }
    enum veil_tee tee;
    uint8_t fmspc[6];
    bool has;
    ASSERT_ERR(veil_attest_peek(veil_span_from_str("junk"), &tee, fmspc, &has), VEIL_E_FORMAT);
}

/* A tsm auxblob certificate table carrying the VCEK feeds the SNP verifier. */
TEST(snp_certificate_table)
{
    NEED_CORPUS(dir);
    static const uint8_t vcek_guid[16] = {0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64,
                                          0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd};
    struct veil_buf vcek, table, report, ask;
    ASSERT_OK(read_case_file(dir, "snp-milan-vcek-virtee", "vcek.der", &vcek));
    ASSERT_OK(read_case_file(dir, "snp-milan-vcek-virtee", "report.bin", &report));
    ASSERT_OK(read_case_file(dir, "snp-milan-vcek-virtee", "ask.pem", &ask));
    veil_buf_init(&table, 1u << 16);
    uint8_t entry[24] = {0};
    memcpy(entry, vcek_guid, 16);
    entry[16] = 48; /* two 24-byte entries, then the certificate */
    entry[20] = (uint8_t)(vcek.len & 0xFF);
    entry[21] = (uint8_t)(vcek.len >> 8);
    static const uint8_t end[24];
    ASSERT_OK(veil_buf_append(&table, entry, 24));
    ASSERT_OK(veil_buf_append(&table, end, 24));
    ASSERT_OK(veil_buf_append(&table, vcek.p, vcek.len));
    struct veil_attest_snp_certs certs;
    veil_err rc = veil_attest_snp_certs_parse(veil_buf_span(&table), &certs);
    veil_err rc_cut = veil_attest_snp_certs_parse(veil_span_make(table.p, table.len - 1), &certs);
    veil_err rc_noend = veil_attest_snp_certs_parse(veil_span_make(table.p, 24), &certs);
    rc = rc == VEIL_OK ? veil_attest_snp_certs_parse(veil_buf_span(&table), &certs) : rc;
    struct veil_attest_collateral col = {0};
    col.vek = certs.vcek;
    col.ask = veil_buf_span(&ask);
    struct veil_attest_roots *roots = load_roots(dir);
    struct veil_attest_verify_opts o = {t3339("2025-06-01T00:00:00Z"), false};
    struct veil_attest_claims c;
    veil_err vrc = veil_attest_verify(veil_buf_span(&report), &col, roots, &o, &c);
    veil_attest_roots_free(roots);
    bool same = certs.vcek.len == vcek.len && memcmp(certs.vcek.p, vcek.p, vcek.len) == 0;
    veil_buf_release(&vcek);
    veil_buf_release(&table);
    veil_buf_release(&report);
    veil_buf_release(&ask);
    ASSERT_OK(rc);
    ASSERT_ERR(rc_cut, VEIL_E_FORMAT);
    ASSERT_ERR(rc_noend, VEIL_E_FORMAT);
    ASSERT_TRUE(same);
    ASSERT_EQ_U64(certs.ark.len, 0);
    ASSERT_OK(vrc);
}

RUN_TESTS()
