/*
 * Entry point of evidence verification: recognises the kind of evidence from its bytes and
 * hands it to the matching verifier, and reads collateral directories. The claims struct is
 * cleared first, so a rejected verification never leaves identity fields from an earlier use.
 */
#include "attest_int.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

const char *veil_attest_tee_name(enum veil_tee tee)
{
    switch (tee) {
    case VEIL_TEE_SGX:
        return "sgx";
    case VEIL_TEE_TDX:
        return "tdx";
    case VEIL_TEE_SNP:
        return "snp";
    case VEIL_TEE_SIM:
        return "sim";
    case VEIL_TEE_NONE:
        break;
    }
    return "none";
}

const char *veil_attest_reason_name(enum veil_attest_reason r)
{
    switch (r) {
#define X(name, snake, text)                                                                       \
    case VEIL_ATTEST_##name:                                                                       \
        return snake;
        VEIL_ATTEST_REASON_MAP(X)
#undef X
    }
    return "unknown";
}

const char *veil_attest_reason_str(enum veil_attest_reason r)
{
    switch (r) {
#define X(name, snake, text)                                                                       \
    case VEIL_ATTEST_##name:                                                                       \
        return text;
        VEIL_ATTEST_REASON_MAP(X)
#undef X
    }
    return "unknown reason";
}

static uint16_t rd16(struct veil_span s, size_t off)
{
    return (uint16_t)(s.p[off] | s.p[off + 1] << 8);
}

veil_err veil_attest_verify(struct veil_span evidence, const struct veil_attest_collateral *col,
                            const struct veil_attest_roots *roots,
                            const struct veil_attest_verify_opts *opts,
                            struct veil_attest_claims *out)
{
    static const struct veil_attest_collateral none;
    memset(out, 0, sizeof(*out));
    if (col == NULL)
        col = &none;
    if (opts == NULL)
        return veil__attest_reject(out, VEIL_ATTEST_MALFORMED, "no verification time given");
    if (evidence.len > VEIL_ATTEST_MAX_EVIDENCE)
        return veil__attest_reject(out, VEIL_ATTEST_MALFORMED, "evidence larger than %u bytes",
                                   VEIL_ATTEST_MAX_EVIDENCE);
    if (veil_span_starts_with(evidence, VEIL_ATTEST_SIM_MAGIC))
        return veil__attest_verify_sim(evidence, roots, out);
    if (evidence.len >= 4) {
        uint16_t v = rd16(evidence, 0), key_type = rd16(evidence, 2);
        /* A DCAP quote starts with version 3..5 then the attestation key type (2 or 3); an SNP
         * report starts with a 32-bit version, whose upper half is zero. */
        if (v >= 3 && v <= 5 && (key_type == 2 || key_type == 3))
            return veil__attest_verify_dcap(evidence, col, roots, opts, out);
        if (v >= 2 && v <= 5 && key_type == 0)
            return veil__attest_verify_snp(evidence, col, roots, opts, out);
    }
    return veil__attest_reject(out, VEIL_ATTEST_UNSUPPORTED,
                               "evidence is neither a DCAP quote, an SNP report nor sim evidence");
}

veil_err veil_attest_peek(struct veil_span evidence, enum veil_tee *tee, uint8_t fmspc[6],
                          bool *has_fmspc)
{
    *tee = VEIL_TEE_NONE;
    *has_fmspc = false;
    if (veil_span_starts_with(evidence, VEIL_ATTEST_SIM_MAGIC)) {
        *tee = VEIL_TEE_SIM;
        return VEIL_OK;
    }
    if (evidence.len < 4)
        return VEIL_E_FORMAT;
    uint16_t v = rd16(evidence, 0), key_type = rd16(evidence, 2);
    if (v >= 3 && v <= 5 && (key_type == 2 || key_type == 3))
        return veil__attest_dcap_peek(evidence, tee, fmspc, has_fmspc);
    if (v >= 2 && v <= 5 && key_type == 0 && evidence.len == 0x4A0) {
        *tee = VEIL_TEE_SNP;
        return VEIL_OK;
    }
    return VEIL_E_FORMAT;
}

/* ---- Collateral directories ---- */

static veil_err load_opt(struct veil_buf *b, const char *dir, const char *name,
                         struct veil_span *dst, struct veil_errbuf *eb)
{
    char path[4096];
    struct stat st;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return veil_errf(eb, VEIL_E_LIMIT, "path too long");
    if (stat(path, &st) != 0)
        return VEIL_OK; /* absent: left empty */
    veil_err rc = veil_file_read_all(path, b->max, b, eb);
    if (rc != VEIL_OK)
        return veil_err_prefix(eb, rc, "%s", path);
    *dst = veil_buf_span(b);
    return VEIL_OK;
}

veil_err veil_attest_collateral_load_dir(struct veil_attest_collateral_files *f, const char *dir,
                                         struct veil_errbuf *eb)
{
    struct stat st;
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < sizeof(f->bufs) / sizeof(f->bufs[0]); i++)
        veil_buf_init(&f->bufs[i], VEIL_ATTEST_MAX_COLLATERAL);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return veil_errf(eb, VEIL_E_NOTFOUND, "collateral directory %s not found", dir);
    struct veil_attest_collateral *c = &f->col;
    struct {
        const char *name;
        struct veil_span *dst;
    } files[] = {
        {"tcb_info.json", &c->tcb_info},
        {"tcb_info_issuer_chain.pem", &c->tcb_info_issuer_chain},
        {"qe_identity.json", &c->qe_identity},
        {"qe_identity_issuer_chain.pem", &c->qe_identity_issuer_chain},
        {"pck_crl.der", &c->pck_crl},
        {"pck_crl_issuer_chain.pem", &c->pck_crl_issuer_chain},
        {"root_ca_crl.der", &c->root_ca_crl},
    };
    size_t i = 0;
    for (; i < sizeof(files) / sizeof(files[0]); i++) {
        veil_err rc = load_opt(&f->bufs[i], dir, files[i].name, files[i].dst, eb);
        if (rc != VEIL_OK)
            return rc;
    }
    /* SNP: first name found wins for each slot. */
    static const char *const vek_names[] = {"vcek.der", "vcek.pem", "vlek.der", "vlek.pem"};
    static const char *const ask_names[] = {"ask.pem", "asvk.pem", "cert_chain.pem"};
    for (size_t k = 0; k < 4 && c->vek.len == 0; k++) {
        veil_err rc = load_opt(&f->bufs[i], dir, vek_names[k], &c->vek, eb);
        if (rc != VEIL_OK)
            return rc;
    }
    i++;
    for (size_t k = 0; k < 3 && c->ask.len == 0; k++) {
        veil_err rc = load_opt(&f->bufs[i], dir, ask_names[k], &c->ask, eb);
        if (rc != VEIL_OK)
            return rc;
    }
    i++;
    return load_opt(&f->bufs[i], dir, "ark.pem", &c->ark, eb);
}

void veil_attest_collateral_files_release(struct veil_attest_collateral_files *f)
{
    for (size_t i = 0; i < sizeof(f->bufs) / sizeof(f->bufs[0]); i++)
        veil_buf_release(&f->bufs[i]);
    memset(&f->col, 0, sizeof(f->col));
}
