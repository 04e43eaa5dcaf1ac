/*
 * The hardware providers against prepared directories: gramine writes the report data to
 * user_report_data and returns the quote; tsm writes inblob, reads outblob and auxblob, and
 * cleans up entries it made. The evidence they return verifies like any other.
 */
#include "common.h"

#include <unistd.h>

#include "harness.h"

static char *mkdtemp_path(char *tmpl)
{
    return mkdtemp(tmpl);
}

static bool put(const char *path, const void *p, size_t n)
{
    return veil_file_write_atomic(path, veil_span_make(p, n), 0644, VEIL_ATOMIC_REPLACE, NULL) ==
           VEIL_OK;
}

static void rm_rf(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "  cannot remove %s\n", dir);
}

TEST(gramine_provider)
{
    char root[] = "/tmp/veil-gramine-XXXXXX", path[4096];
    ASSERT_TRUE(mkdtemp_path(root) != NULL);
    snprintf(path, sizeof(path), "%s/dev", root);
    ASSERT_TRUE(mkdir(path, 0700) == 0);
    snprintf(path, sizeof(path), "%s/dev/attestation", root);
    ASSERT_TRUE(mkdir(path, 0700) == 0);
    const char *dir = corpus_dir();
    struct veil_buf quote;
    if (dir != NULL)
        ASSERT_OK(read_case_file(dir, "sgx-dcap-v3-dcap-qvl", "quote.bin", &quote));
    else {
        veil_buf_init(&quote, 64);
        ASSERT_OK(veil_buf_append_str(&quote, "not a real quote"));
    }
    snprintf(path, sizeof(path), "%s/dev/attestation/quote", root);
    ASSERT_TRUE(put(path, quote.p, quote.len));
    snprintf(path, sizeof(path), "%s/dev/attestation/attestation_type", root);
    ASSERT_TRUE(put(path, "dcap", 4));

    struct veil_attest_provider *p = NULL;
    uint8_t rd[64];
    for (size_t i = 0; i < 64; i++)
        rd[i] = (uint8_t)i;
    struct veil_buf ev, written;
    veil_buf_init(&ev, VEIL_ATTEST_MAX_EVIDENCE);
    ASSERT_OK(veil_attest_provider_new_gramine(root, &p, NULL));
    ASSERT_STR_EQ(veil_attest_provider_kind(p), "gramine");
    veil_err rc = veil_attest_provider_get_evidence(p, rd, &ev, NULL, NULL);
    veil_attest_provider_free(p);
    snprintf(path, sizeof(path), "%s/dev/attestation/user_report_data", root);
    veil_buf_init(&written, 128);
    veil_err rc2 = veil_file_read_all(path, written.max, &written, NULL);
    bool same_quote = ev.len == quote.len && memcmp(ev.p, quote.p, quote.len) == 0;
    bool same_rd = written.len == 64 && memcmp(written.p, rd, 64) == 0;
    veil_err vrc = VEIL_OK;
    if (dir != NULL) {
        /* The quote the provider returned verifies with the corpus collateral. */
        struct veil_attest_claims c;
        struct veil_attest_collateral_files col;
        char cdir[4096];
        if (snprintf(cdir, sizeof(cdir), "%s/sgx-dcap-v3-dcap-qvl", dir) >= (int)sizeof(cdir))
            HFAIL("corpus path too long");
        struct veil_attest_roots *roots = load_roots(dir);
        struct veil_attest_verify_opts o = {t3339("2025-07-01T00:00:00Z"), false};
        vrc = veil_attest_collateral_load_dir(&col, cdir, NULL);
        if (vrc == VEIL_OK)
            vrc = veil_attest_verify(veil_buf_span(&ev), &col.col, roots, &o, &c);
        veil_attest_collateral_files_release(&col);
        veil_attest_roots_free(roots);
    }
    veil_buf_release(&ev);
    veil_buf_release(&written);
    veil_buf_release(&quote);
    rm_rf(root);
    ASSERT_OK(rc);
    ASSERT_OK(rc2);
    ASSERT_TRUE(same_quote);
    ASSERT_TRUE(same_rd);
    ASSERT_OK(vrc);
}

TEST(gramine_provider_refuses_epid)
{
    char root[] = "/tmp/veil-gramine-XXXXXX", path[4096];
    ASSERT_TRUE(mkdtemp_path(root) != NULL);
    snprintf(path, sizeof(path), "%s/dev", root);
    ASSERT_TRUE(mkdir(path, 0700) == 0);
    snprintf(path, sizeof(path), "%s/dev/attestation", root);
    ASSERT_TRUE(mkdir(path, 0700) == 0);
    snprintf(path, sizeof(path), "%s/dev/attestation/attestation_type", root);
    ASSERT_TRUE(put(path, "epid\n", 5));
    snprintf(path, sizeof(path), "%s/dev/attestation/quote", root);
    ASSERT_TRUE(put(path, "q", 1));
    struct veil_attest_provider *p = NULL;
    uint8_t rd[64] = {0};
    struct veil_buf ev;
    struct veil_errbuf eb = {{0}};
    veil_buf_init(&ev, VEIL_ATTEST_MAX_EVIDENCE);
    ASSERT_OK(veil_attest_provider_new_gramine(root, &p, NULL));
    veil_err rc = veil_attest_provider_get_evidence(p, rd, &ev, NULL, &eb);
    veil_attest_provider_free(p);
    veil_buf_release(&ev);
    rm_rf(root);
    ASSERT_ERR(rc, VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "epid");
}

TEST(gramine_provider_missing_device)
{
    struct veil_attest_provider *p = NULL;
    uint8_t rd[64] = {0};
    struct veil_buf ev;
    struct veil_errbuf eb = {{0}};
    veil_buf_init(&ev, VEIL_ATTEST_MAX_EVIDENCE);
    ASSERT_OK(veil_attest_provider_new_gramine("/nonexistent-veil-root", &p, NULL));
    veil_err rc = veil_attest_provider_get_evidence(p, rd, &ev, NULL, &eb);
    veil_attest_provider_free(p);
    veil_buf_release(&ev);
    ASSERT_ERR(rc, VEIL_E_NOTFOUND);
    ASSERT_STR_CONTAINS(eb.msg, "user_report_data");
}

TEST(tsm_provider_prepared_entry)
{
    char root[] = "/tmp/veil-tsm-XXXXXX", entry[4096], path[4200];
    ASSERT_TRUE(mkdtemp_path(root) != NULL);
    /* The provider's first entry name; a prepared entry is used as is and kept. */
    snprintf(entry, sizeof(entry), "%s/veil-%ld-0", root, (long)getpid());
    ASSERT_TRUE(mkdir(entry, 0700) == 0);
    const char *dir = corpus_dir();
    struct veil_buf report;
    if (dir != NULL)
        ASSERT_OK(read_case_file(dir, "snp-milan-vcek-virtee", "report.bin", &report));
    else {
        veil_buf_init(&report, 64);
        ASSERT_OK(veil_buf_append_str(&report, "outblob"));
    }
    snprintf(path, sizeof(path), "%s/outblob", entry);
    ASSERT_TRUE(put(path, report.p, report.len));
    snprintf(path, sizeof(path), "%s/auxblob", entry);
    ASSERT_TRUE(put(path, "certs", 5));
    snprintf(path, sizeof(path), "%s/generation", entry);
    ASSERT_TRUE(put(path, "7\n", 2));

    struct veil_attest_provider *p = NULL;
    uint8_t rd[64];
    memset(rd, 0x5A, sizeof(rd));
    struct veil_buf ev, aux, inblob;
    veil_buf_init(&ev, VEIL_ATTEST_MAX_EVIDENCE);
    veil_buf_init(&aux, VEIL_ATTEST_MAX_EVIDENCE);
    veil_buf_init(&inblob, 128);
    ASSERT_OK(veil_attest_provider_new_tsm(root, &p, NULL));
    veil_err rc = veil_attest_provider_get_evidence(p, rd, &ev, &aux, NULL);
    /* The second call makes a fresh entry; on a plain directory no outblob appears there (the
     * kernel makes it on configfs), so the call fails after writing inblob. */
    struct veil_buf ev2;
    veil_buf_init(&ev2, VEIL_ATTEST_MAX_EVIDENCE);
    veil_err rc_fresh = veil_attest_provider_get_evidence(p, rd, &ev2, NULL, NULL);
    veil_buf_release(&ev2);
    veil_attest_provider_free(p);
    snprintf(path, sizeof(path), "%s/veil-%ld-1", root, (long)getpid());
    struct stat st;
    char in1[4300];
    snprintf(in1, sizeof(in1), "%s/inblob", path);
    bool fresh_written = stat(in1, &st) == 0 && st.st_size == 64;
    snprintf(path, sizeof(path), "%s/inblob", entry);
    veil_err rc_in = veil_file_read_all(path, inblob.max, &inblob, NULL);
    bool same = ev.len == report.len && memcmp(ev.p, report.p, report.len) == 0;
    bool same_aux = aux.len == 5 && memcmp(aux.p, "certs", 5) == 0;
    bool same_in = inblob.len == 64 && memcmp(inblob.p, rd, 64) == 0;
    veil_buf_release(&ev);
    veil_buf_release(&aux);
    veil_buf_release(&inblob);
    veil_buf_release(&report);
    rm_rf(root);
    ASSERT_OK(rc);
    ASSERT_OK(rc_in);
    ASSERT_TRUE(same);
    ASSERT_TRUE(same_aux);
    ASSERT_TRUE(same_in);
    ASSERT_ERR(rc_fresh, VEIL_E_NOTFOUND);
    ASSERT_TRUE(fresh_written);
}

TEST(tsm_provider_missing_root)
{
    struct veil_attest_provider *p = NULL;
    uint8_t rd[64] = {0};
    struct veil_buf ev;
    veil_buf_init(&ev, VEIL_ATTEST_MAX_EVIDENCE);
    ASSERT_OK(veil_attest_provider_new_tsm("/nonexistent-veil-tsm", &p, NULL));
    veil_err rc = veil_attest_provider_get_evidence(p, rd, &ev, NULL, NULL);
    veil_attest_provider_free(p);
    veil_buf_release(&ev);
    ASSERT_ERR(rc, VEIL_E_NOTFOUND);
}

RUN_TESTS()
