/*
 * Hostile evidence: flipped bytes in every signed region, truncation at every length, bytes
 * appended, wrong chains and swapped collateral, roots that are not pinned. Every variant must
 * be rejected with a reason, never accepted and never crash (run under ASan/UBSan in CI).
 */
#include "common.h"

#include <stddef.h>

#include "harness.h"

struct fixture {
    struct veil_buf ev;
    struct veil_attest_collateral_files col;
    struct veil_attest_roots *roots;
    int64_t now;
};

static bool fixture_load(struct fixture *f, const char *dir, const char *c, const char *file)
{
    char cdir[4096];
    memset(f, 0, sizeof(*f));
    snprintf(cdir, sizeof(cdir), "%s/%s", dir, c);
    f->roots = load_roots(dir);
    f->now = case_now(dir, c);
    return f->roots != NULL && read_case_file(dir, c, file, &f->ev) == VEIL_OK &&
           veil_attest_collateral_load_dir(&f->col, cdir, NULL) == VEIL_OK;
}

static void fixture_release(struct fixture *f)
{
    veil_buf_release(&f->ev);
    veil_attest_collateral_files_release(&f->col);
    veil_attest_roots_free(f->roots);
}

/* Verifies ev with f's collateral (or col when not NULL); returns the reason. */
static enum veil_attest_reason verdict(const struct fixture *f, struct veil_span ev,
                                       const struct veil_attest_collateral *col, veil_err *rc)
{
    struct veil_attest_claims c;
    struct veil_attest_verify_opts opts = {f->now, false};
    *rc = veil_attest_verify(ev, col != NULL ? col : &f->col.col, f->roots, &opts, &c);
    if (*rc == VEIL_OK && !c.verified)
        return VEIL_ATTEST_MALFORMED; /* inconsistent: caught by the caller's assertion */
    return c.reason;
}

static enum veil_attest_reason flip(const struct fixture *f, size_t off, uint8_t mask)
{
    uint8_t *copy = veil_malloc(f->ev.len);
    if (copy == NULL)
        return VEIL_ATTEST_MALFORMED; /* allocation failure injected: not a verdict */
    memcpy(copy, f->ev.p, f->ev.len);
    copy[off] ^= mask;
    veil_err rc;
    enum veil_attest_reason r = verdict(f, veil_span_make(copy, f->ev.len), NULL, &rc);
    veil_free(copy);
    return rc == VEIL_OK ? VEIL_ATTEST_OK : r;
}

TEST(sgx_flip_each_region)
{
    NEED_CORPUS(dir);
    struct fixture f;
    if (!fixture_load(&f, dir, "sgx-dcap-v3-dcap-qvl", "quote.bin")) {
        fixture_release(&f);
        HFAIL("cannot load fixture");
    }
    veil_err rc;
    ASSERT_EQ_U64(verdict(&f, veil_buf_span(&f.ev), NULL, &rc), VEIL_ATTEST_OK);
    const size_t s = 436; /* start of the signature data */
    struct {
        size_t off;
        enum veil_attest_reason want;
    } cases[] = {
        {0, VEIL_ATTEST_UNSUPPORTED},                     /* version */
        {8, VEIL_ATTEST_QUOTE_SIGNATURE},                 /* QE SVN in the header */
        {30, VEIL_ATTEST_QUOTE_SIGNATURE},                /* user data */
        {48 + 48, VEIL_ATTEST_QUOTE_SIGNATURE},           /* ATTRIBUTES (DEBUG bit lives here) */
        {48 + 64, VEIL_ATTEST_QUOTE_SIGNATURE},           /* MRENCLAVE */
        {48 + 128, VEIL_ATTEST_QUOTE_SIGNATURE},          /* MRSIGNER */
        {48 + 258, VEIL_ATTEST_QUOTE_SIGNATURE},          /* ISVSVN */
        {48 + 320, VEIL_ATTEST_QUOTE_SIGNATURE},          /* REPORT_DATA */
        {s + 5, VEIL_ATTEST_QUOTE_SIGNATURE},             /* quote signature r */
        {s + 40, VEIL_ATTEST_QUOTE_SIGNATURE},            /* quote signature s */
        {s + 64 + 7, VEIL_ATTEST_QE_REPORT_DATA},         /* attestation key */
        {s + 128 + 64, VEIL_ATTEST_QE_REPORT_SIGNATURE},  /* QE report MRENCLAVE */
        {s + 128 + 320, VEIL_ATTEST_QE_REPORT_SIGNATURE}, /* QE report data */
        {s + 512 + 3, VEIL_ATTEST_QE_REPORT_SIGNATURE},   /* QE report signature */
        {s + 578 + 1, VEIL_ATTEST_QE_REPORT_DATA},        /* QE auth data */
        {s + 578 + 32, VEIL_ATTEST_UNSUPPORTED},          /* certification data type */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum veil_attest_reason got = flip(&f, cases[i].off, 0x01);
        if (got != cases[i].want) {
            fixture_release(&f);
            HFAIL("flip at %zu: got %s, want %s", cases[i].off, veil_attest_reason_name(got),
                  veil_attest_reason_name(cases[i].want));
        }
    }
    /* Any byte of the PEM chain: rejected one way or another, never accepted. */
    for (size_t off = s + 584 + 32; off < f.ev.len; off += 97)
        if (flip(&f, off, 0x04) == VEIL_ATTEST_OK) {
            fixture_release(&f);
            HFAIL("flipped PCK chain byte %zu accepted", off);
        }
    fixture_release(&f);
}

static void truncate_all(const char *dir, const char *c, const char *file, size_t trailing)
{
    struct fixture f;
    if (!fixture_load(&f, dir, c, file)) {
        fixture_release(&f);
        HFAIL("cannot load %s", c);
    }
    size_t structural = f.ev.len - trailing;
    for (size_t n = 0; n < structural; n++) {
        veil_err rc;
        enum veil_attest_reason r = verdict(&f, veil_span_make(f.ev.p, n), NULL, &rc);
        if (rc != VEIL_E_AUTH || (r != VEIL_ATTEST_MALFORMED && r != VEIL_ATTEST_UNSUPPORTED)) {
            fixture_release(&f);
            HFAIL("%s cut to %zu bytes: %s", c, n, veil_attest_reason_name(r));
        }
    }
    fixture_release(&f);
}

TEST(truncation_at_every_length)
{
    NEED_CORPUS(dir);
    truncate_all(dir, "sgx-dcap-v3-dcap-qvl", "quote.bin", 0);
    if (harness_failed_now)
        return;
    truncate_all(dir, "tdx-v4-dcap-qvl", "quote.bin", 70); /* trailing bytes, see below */
    if (harness_failed_now)
        return;
    truncate_all(dir, "tdx-v5-dcap-qvl-tcb-not-supported", "quote.bin", 0);
    if (harness_failed_now)
        return;
    truncate_all(dir, "snp-milan-vcek-virtee", "report.bin", 0);
}

TEST(trailing_bytes_tolerated_but_never_signed)
{
    NEED_CORPUS(dir);
    struct fixture f;
    if (!fixture_load(&f, dir, "tdx-v4-dcap-qvl", "quote.bin")) {
        fixture_release(&f);
        HFAIL("cannot load fixture");
    }
    veil_err rc;
    /* The recorded quote carries 70 zero bytes after its signature data. */
    ASSERT_EQ_U64(verdict(&f, veil_buf_span(&f.ev), NULL, &rc), VEIL_ATTEST_OK);
    ASSERT_EQ_U64(verdict(&f, veil_span_make(f.ev.p, f.ev.len - 70), NULL, &rc), VEIL_ATTEST_OK);
    ASSERT_EQ_U64(flip(&f, f.ev.len - 1, 0xFF), VEIL_ATTEST_OK);
    /* Cut inside the signature data: malformed. */
    ASSERT_EQ_U64(verdict(&f, veil_span_make(f.ev.p, f.ev.len - 71), NULL, &rc),
                  VEIL_ATTEST_MALFORMED);
    /* RTMR0 and the TD attributes are signed. */
    ASSERT_EQ_U64(flip(&f, 48 + 328, 0x80), VEIL_ATTEST_QUOTE_SIGNATURE);
    ASSERT_EQ_U64(flip(&f, 48 + 120, 0x01), VEIL_ATTEST_QUOTE_SIGNATURE);
    /* An SNP report must be exactly 1184 bytes. */
    fixture_release(&f);
    if (!fixture_load(&f, dir, "snp-milan-vcek-virtee", "report.bin")) {
        fixture_release(&f);
        HFAIL("cannot load fixture");
    }
    uint8_t *longer = veil_calloc(1, f.ev.len + 1);
    memcpy(longer, f.ev.p, f.ev.len);
    enum veil_attest_reason r = verdict(&f, veil_span_make(longer, f.ev.len + 1), NULL, &rc);
    veil_free(longer);
    ASSERT_EQ_U64(r, VEIL_ATTEST_MALFORMED);
    fixture_release(&f);
}

TEST(snp_flip_each_region)
{
    NEED_CORPUS(dir);
    struct fixture f;
    if (!fixture_load(&f, dir, "snp-milan-vcek-trustee-idblock", "report.bin")) {
        fixture_release(&f);
        HFAIL("cannot load fixture");
    }
    struct {
        size_t off;
        enum veil_attest_reason want;
    } cases[] = {
        {0x000, VEIL_ATTEST_UNSUPPORTED},           /* version */
        {0x008, VEIL_ATTEST_REPORT_SIGNATURE},      /* guest policy (DEBUG is bit 19) */
        {0x00A, VEIL_ATTEST_REPORT_SIGNATURE},      /* policy byte holding DEBUG */
        {0x030, VEIL_ATTEST_REPORT_SIGNATURE},      /* VMPL */
        {0x050, VEIL_ATTEST_REPORT_SIGNATURE},      /* REPORT_DATA */
        {0x090, VEIL_ATTEST_REPORT_SIGNATURE},      /* MEASUREMENT */
        {0x0C0, VEIL_ATTEST_REPORT_SIGNATURE},      /* HOST_DATA */
        {0x0E0, VEIL_ATTEST_REPORT_SIGNATURE},      /* ID_KEY_DIGEST */
        {0x180, VEIL_ATTEST_CERT_MISMATCH},         /* REPORTED_TCB vs VCEK */
        {0x1A0, VEIL_ATTEST_CERT_MISMATCH},         /* CHIP_ID vs hwID */
        {0x04C, VEIL_ATTEST_MALFORMED},             /* reserved */
        {0x2A0, VEIL_ATTEST_REPORT_SIGNATURE},      /* R */
        {0x2E8, VEIL_ATTEST_REPORT_SIGNATURE},      /* S */
        {0x2A0 + 60, VEIL_ATTEST_REPORT_SIGNATURE}, /* R's upper zero bytes */
        {0x400, VEIL_ATTEST_MALFORMED},             /* reserved signature tail */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum veil_attest_reason got = flip(&f, cases[i].off, 0x08);
        if (got != cases[i].want) {
            fixture_release(&f);
            HFAIL("flip at 0x%zx: got %s, want %s", cases[i].off, veil_attest_reason_name(got),
                  veil_attest_reason_name(cases[i].want));
        }
    }
    fixture_release(&f);
}

/* Replaces one collateral item with the bytes of another case's file. */
static enum veil_attest_reason with_swapped(const struct fixture *f, const char *dir, const char *c,
                                            const char *file, size_t field_offset)
{
    struct veil_buf b;
    veil_err rc;
    if (read_case_file(dir, c, file, &b) != VEIL_OK) {
        veil_buf_release(&b);
        return VEIL_ATTEST_OK;
    }
    struct veil_attest_collateral col = f->col.col;
    memcpy((char *)&col + field_offset, &(struct veil_span){b.p, b.len}, sizeof(struct veil_span));
    enum veil_attest_reason r = verdict(f, veil_buf_span(&f->ev), &col, &rc);
    veil_buf_release(&b);
    return rc == VEIL_OK ? VEIL_ATTEST_OK : r;
}

#define OFF(field) offsetof(struct veil_attest_collateral, field)

TEST(wrong_chains_and_collateral)
{
    NEED_CORPUS(dir);
    struct fixture f;
    if (!fixture_load(&f, dir, "sgx-dcap-v3-dcap-qvl", "quote.bin")) {
        fixture_release(&f);
        HFAIL("cannot load fixture");
    }
    /* TDX TCB info for an SGX quote. */
    ASSERT_EQ_U64(with_swapped(&f, dir, "tdx-v4-dcap-qvl", "tcb_info.json", OFF(tcb_info)),
                  VEIL_ATTEST_TCB_INFO_MISMATCH);
    /* TD QE identity for the SGX QE. */
    ASSERT_EQ_U64(with_swapped(&f, dir, "tdx-v4-dcap-qvl", "qe_identity.json", OFF(qe_identity)),
                  VEIL_ATTEST_QE_IDENTITY_MISMATCH);
    /* TCB info "signed" by the PCK CA instead of the TCB signing key. */
    ASSERT_EQ_U64(with_swapped(&f, dir, "sgx-dcap-v3-dcap-qvl", "pck_crl_issuer_chain.pem",
                               OFF(tcb_info_issuer_chain)),
                  VEIL_ATTEST_COLLATERAL_SIGNATURE);
    /* The root CRL in place of the PCK CRL: wrong issuer. */
    ASSERT_EQ_U64(with_swapped(&f, dir, "sgx-dcap-v3-dcap-qvl", "root_ca_crl.der", OFF(pck_crl)),
                  VEIL_ATTEST_CRL_INVALID);
    /* A PCK CRL from another CA (Platform vs Processor). */
    enum veil_attest_reason r =
        with_swapped(&f, dir, "tdx-v4-dcap-qvl", "pck_crl.der", OFF(pck_crl));
    ASSERT_TRUE(r == VEIL_ATTEST_CRL_INVALID);
    /* Old TCB info of another platform: expired, or not for this FMSPC. */
    r = with_swapped(&f, dir, "sgx-dcap-v3-mobilecoin", "tcb_info.json", OFF(tcb_info));
    ASSERT_TRUE(r == VEIL_ATTEST_COLLATERAL_EXPIRED || r == VEIL_ATTEST_TCB_INFO_MISMATCH ||
                r == VEIL_ATTEST_CERT_EXPIRED);

    /* One changed byte inside the signed tcbInfo value. */
    {
        struct veil_buf b;
        ASSERT_OK(read_case_file(dir, "sgx-dcap-v3-dcap-qvl", "tcb_info.json", &b));
        char *p = strstr((char *)b.p, "\"tcbEvaluationDataNumber\":17");
        if (p == NULL) {
            veil_buf_release(&b);
            fixture_release(&f);
            HFAIL("tcb_info.json layout changed");
        }
        p[strlen("\"tcbEvaluationDataNumber\":1")] = '8';
        struct veil_attest_collateral col = f.col.col;
        col.tcb_info = veil_buf_span(&b);
        veil_err rc;
        r = verdict(&f, veil_buf_span(&f.ev), &col, &rc);
        veil_buf_release(&b);
        ASSERT_EQ_U64(r, VEIL_ATTEST_COLLATERAL_SIGNATURE);
    }
    /* Missing collateral. */
    {
        struct veil_attest_collateral col = f.col.col;
        col.qe_identity.len = 0;
        veil_err rc;
        ASSERT_EQ_U64(verdict(&f, veil_buf_span(&f.ev), &col, &rc), VEIL_ATTEST_COLLATERAL_MISSING);
    }
    /* No Intel root loaded: nothing chains. */
    {
        struct veil_attest_roots *amd_only = NULL;
        struct veil_buf b;
        ASSERT_OK(veil_attest_roots_new(&amd_only));
        ASSERT_OK(read_case_file(dir, "roots", "amd_ark_milan.pem", &b));
        ASSERT_OK(veil_attest_roots_add_cert(amd_only, veil_buf_span(&b), NULL));
        veil_buf_release(&b);
        struct veil_attest_claims c;
        struct veil_attest_verify_opts opts = {f.now, false};
        veil_err rc = veil_attest_verify(veil_buf_span(&f.ev), &f.col.col, amd_only, &opts, &c);
        veil_attest_roots_free(amd_only);
        ASSERT_EQ_I64(rc, VEIL_E_AUTH);
        ASSERT_EQ_U64(c.reason, VEIL_ATTEST_ROOT_UNTRUSTED);
    }
    fixture_release(&f);

    /* SNP: another chip's VCEK, another product's ASK, a foreign ARK. */
    if (!fixture_load(&f, dir, "snp-milan-vcek-virtee", "report.bin")) {
        fixture_release(&f);
        HFAIL("cannot load SNP fixture");
    }
    r = with_swapped(&f, dir, "snp-milan-vcek-trustee-idblock", "vcek.der", OFF(vek));
    ASSERT_TRUE(r == VEIL_ATTEST_CERT_MISMATCH);
    r = with_swapped(&f, dir, "snp-genoa-vcek-azure-trustee", "vcek.der", OFF(vek));
    ASSERT_TRUE(r != VEIL_ATTEST_OK);
    ASSERT_EQ_U64(with_swapped(&f, dir, "snp-genoa-vcek-azure-trustee", "ask.pem", OFF(ask)),
                  VEIL_ATTEST_CHAIN_INVALID);
    ASSERT_EQ_U64(with_swapped(&f, dir, "roots", "amd_ark_genoa.pem", OFF(ark)),
                  VEIL_ATTEST_ROOT_UNTRUSTED);
    ASSERT_EQ_U64(with_swapped(&f, dir, "roots", "amd_asvk_milan.pem", OFF(ask)),
                  VEIL_ATTEST_CHAIN_INVALID);
    fixture_release(&f);
}

TEST(only_pinned_roots)
{
    NEED_CORPUS(dir);
    struct veil_attest_roots *r = NULL;
    struct veil_buf b;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(veil_attest_roots_new(&r));
    ASSERT_OK(read_case_file(dir, "roots", "amd_ask_milan.pem", &b));
    veil_err rc = veil_attest_roots_add_cert(r, veil_buf_span(&b), &eb);
    veil_buf_release(&b);
    ASSERT_OK(read_case_file(dir, "roots", "intel_sgx_root_ca.pem", &b));
    veil_err rc2 = veil_attest_roots_add_cert(r, veil_buf_span(&b), NULL);
    veil_buf_release(&b);
    veil_attest_roots_free(r);
    ASSERT_EQ_I64(rc, VEIL_E_AUTH);
    ASSERT_STR_CONTAINS(eb.msg, "not a pinned root");
    ASSERT_OK(rc2);
}

TEST(garbage_evidence)
{
    struct veil_attest_claims c;
    struct veil_attest_verify_opts opts = {0, false};
    static const uint8_t junk[] = {0x03, 0x00, 0x02, 0x00, 0xff};
    ASSERT_ERR(veil_attest_verify(veil_span_make(junk, 0), NULL, NULL, &opts, &c), VEIL_E_AUTH);
    ASSERT_EQ_U64(c.reason, VEIL_ATTEST_UNSUPPORTED);
    ASSERT_ERR(veil_attest_verify(veil_span_make(junk, sizeof(junk)), NULL, NULL, &opts, &c),
               VEIL_E_AUTH);
    ASSERT_EQ_U64(c.reason, VEIL_ATTEST_MALFORMED);
    ASSERT_ERR(veil_attest_verify(veil_span_from_str("VEILSIM1"), NULL, NULL, &opts, &c),
               VEIL_E_AUTH);
    ASSERT_EQ_U64(c.reason, VEIL_ATTEST_MALFORMED);
    ASSERT_ERR(veil_attest_verify(veil_span_make(junk, 2), NULL, NULL, NULL, &c), VEIL_E_AUTH);
}

RUN_TESTS()
