/*
 * SEV-SNP attestation report verification (AMD SEV-SNP Firmware ABI, ATTESTATION_REPORT).
 *
 * Order: structure (exact size, known version, reserved fields zero), product (CPUID fields or
 * the certificate's productName), ARK pinned by fingerprint, ASK/ASVK signed by the ARK,
 * VCEK/VLEK signed by the ASK/ASVK and valid at `now`, the certificate bound to the report
 * (REPORTED_TCB = its SPL extensions, CHIP_ID = hwID for a VCEK, CSP_ID for a VLEK), then the
 * ECDSA P-384 signature over bytes 0x000..0x29F. Claims are copied out only after all of it.
 */
#include "attest_int.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define SNP_REPORT_LEN 0x4A0
#define SNP_SIGNED_LEN 0x2A0

enum product { PROD_UNKNOWN, PROD_MILAN, PROD_GENOA, PROD_TURIN };
static const char *const product_names[] = {"", "Milan", "Genoa", "Turin"};

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* Value bytes of the AMD extension 1.3.6.1.4.1.3704.1.<arc>; NOTFOUND when absent. */
static veil_err amd_ext(X509 *x, const char *arc, struct veil_span *out)
{
    char oid[64];
    snprintf(oid, sizeof(oid), "1.3.6.1.4.1.3704.1.%s", arc);
    ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
    if (obj == NULL)
        return VEIL_E_NOMEM;
    int idx = X509_get_ext_by_OBJ(x, obj, -1);
    int idx2 = idx >= 0 ? X509_get_ext_by_OBJ(x, obj, idx) : -1;
    ASN1_OBJECT_free(obj);
    if (idx < 0)
        return VEIL_E_NOTFOUND;
    if (idx2 >= 0)
        return VEIL_E_FORMAT;
    ASN1_OCTET_STRING *os = X509_EXTENSION_get_data(X509_get_ext(x, idx));
    *out = veil_span_make(ASN1_STRING_get0_data(os), (size_t)ASN1_STRING_length(os));
    return VEIL_OK;
}

static veil_err amd_ext_uint(X509 *x, const char *arc, uint64_t *v)
{
    struct veil_span s, c;
    uint8_t tag;
    veil_err rc = amd_ext(x, arc, &s);
    if (rc != VEIL_OK)
        return rc;
    if (veil__attest_der_get(&s, &tag, &c) != VEIL_OK || tag != 0x02 || s.len != 0)
        return VEIL_E_FORMAT;
    return veil__attest_der_uint(c, v);
}

static veil_err amd_ext_str(X509 *x, const char *arc, char *out, size_t cap)
{
    struct veil_span s, c;
    uint8_t tag;
    veil_err rc = amd_ext(x, arc, &s);
    if (rc != VEIL_OK)
        return rc;
    if (veil__attest_der_get(&s, &tag, &c) != VEIL_OK || tag != 0x16 || s.len != 0 || c.len >= cap)
        return VEIL_E_FORMAT;
    for (size_t i = 0; i < c.len; i++)
        if (c.p[i] < 0x20 || c.p[i] > 0x7E)
            return VEIL_E_FORMAT;
    memcpy(out, c.p, c.len);
    out[c.len] = '\0';
    return VEIL_OK;
}

static bool cn_is(X509 *x, const char *want)
{
    char cn[128];
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    ERR_clear_error();
    return n > 0 && strcmp(cn, want) == 0;
}

static enum product product_from_name(const char *name)
{
    if (strncmp(name, "Milan", 5) == 0)
        return PROD_MILAN;
    if (strncmp(name, "Genoa", 5) == 0)
        return PROD_GENOA;
    if (strncmp(name, "Turin", 5) == 0)
        return PROD_TURIN;
    return PROD_UNKNOWN;
}

static enum product product_from_cpuid(uint8_t fam, uint8_t model)
{
    if (fam == 0x19 && model <= 0x0F)
        return PROD_MILAN;
    if (fam == 0x19 && model >= 0x10 && model <= 0x1F)
        return PROD_GENOA;
    if (fam == 0x1A && model <= 0x11)
        return PROD_TURIN;
    return PROD_UNKNOWN;
}

/* Byte-reverses a 72-byte little-endian R or S into 48 big-endian bytes. */
static bool rs_from_le(const uint8_t *p, uint8_t out[48])
{
    if (!all_zero(p + 48, 24))
        return false;
    for (size_t i = 0; i < 48; i++)
        out[i] = p[47 - i];
    return true;
}

veil_err veil__attest_verify_snp(struct veil_span report, const struct veil_attest_collateral *col,
                                 const struct veil_attest_roots *roots,
                                 const struct veil_attest_verify_opts *opts,
                                 struct veil_attest_claims *out)
{
    veil_err rc = VEIL_E_INTERNAL;
    STACK_OF(X509) *vek_sk = NULL, *ask_sk = NULL, *untrusted = NULL, *ark_sk = NULL;
    struct veil_errbuf eb = {{0}};
    struct veil_attest_claims *tmp = NULL;
    struct veil_span s = report, r;
    out->tee = VEIL_TEE_SNP;
    if (veil_span_get_bytes(&s, SNP_REPORT_LEN, &r) != VEIL_OK || s.len != 0) {
        rc = veil__attest_reject(out, VEIL_ATTEST_MALFORMED, "SNP report is %zu bytes, not %d",
                                 report.len, SNP_REPORT_LEN);
        goto out;
    }
    const uint8_t *p = r.p;
    uint32_t version = le32(p), algo = le32(p + 0x34), flags = le32(p + 0x48);
    out->version = version;
    if (version < 2 || version > 5) {
        rc = veil__attest_reject(out, VEIL_ATTEST_UNSUPPORTED, "SNP report version %u", version);
        goto out;
    }
    if (algo != 1) {
        rc = veil__attest_reject(out, VEIL_ATTEST_UNSUPPORTED, "signature algorithm %u", algo);
        goto out;
    }
    uint32_t signing_key = (flags >> 2) & 7;
    if (signing_key > 1 || (flags >> 5) != 0 || !all_zero(p + 0x4C, 4) ||
        !all_zero(p + 0x18B, 0x15) || (version < 3 && !all_zero(p + 0x188, 3)) || p[0x1EB] != 0 ||
        p[0x1EF] != 0 || !all_zero(p + 0x208, 0x98) ||
        !all_zero(p + 0x330, SNP_REPORT_LEN - 0x330)) {
        rc = veil__attest_reject(out, VEIL_ATTEST_MALFORMED,
                                 "reserved fields or signing key field not as specified");
        goto out;
    }
    bool vlek = signing_key == 1;

    /* Certificates. */
    if (col->vek.len == 0 || col->ask.len == 0) {
        rc = veil__attest_reject(out, VEIL_ATTEST_COLLATERAL_MISSING, "%s or %s certificate",
                                 vlek ? "VLEK" : "VCEK", vlek ? "ASVK" : "ASK");
        goto out;
    }
    if ((rc = veil__attest_certs_parse(col->vek, &vek_sk, &eb)) != VEIL_OK ||
        (rc = veil__attest_certs_parse(col->ask, &ask_sk, &eb)) != VEIL_OK) {
        if (rc != VEIL_E_NOMEM)
            rc = veil__attest_reject(out, VEIL_ATTEST_COLLATERAL_MALFORMED, "certificates: %s",
                                     eb.msg);
        goto out;
    }
    X509 *vek = sk_X509_value(vek_sk, 0);
    if (!cn_is(vek, vlek ? "SEV-VLEK" : "SEV-VCEK")) {
        rc = veil__attest_reject(out, VEIL_ATTEST_CERT_MISMATCH,
                                 "report says signed by %s but the certificate is not one",
                                 vlek ? "VLEK" : "VCEK");
        goto out;
    }
    char pname[32] = "";
    enum product prod = PROD_UNKNOWN;
    if (amd_ext_str(vek, "2", pname, sizeof(pname)) == VEIL_OK)
        prod = product_from_name(pname);
    if (version >= 3) {
        enum product cp = product_from_cpuid(p[0x188], p[0x189]);
        if (cp == PROD_UNKNOWN || (prod != PROD_UNKNOWN && prod != cp)) {
            rc = veil__attest_reject(out, VEIL_ATTEST_CERT_MISMATCH,
                                     "CPUID family/model do not match the certificate product");
            goto out;
        }
        prod = cp;
    }
    if (prod == PROD_UNKNOWN) {
        rc = veil__attest_reject(out, VEIL_ATTEST_UNSUPPORTED, "unknown AMD product '%s'", pname);
        goto out;
    }
    X509 *ark = roots != NULL ? roots->root[VEIL_ROOT_AMD_ARK_MILAN + (prod - PROD_MILAN)] : NULL;
    if (ark == NULL) {
        rc = veil__attest_reject(out, VEIL_ATTEST_ROOT_UNTRUSTED, "ARK-%s not loaded",
                                 product_names[prod]);
        goto out;
    }
    if (col->ark.len > 0) {
        if (veil__attest_certs_parse(col->ark, &ark_sk, &eb) != VEIL_OK ||
            X509_cmp(sk_X509_value(ark_sk, 0), ark) != 0) {
            rc = veil__attest_reject(out, VEIL_ATTEST_ROOT_UNTRUSTED,
                                     "supplied ARK is not the pinned ARK-%s", product_names[prod]);
            goto out;
        }
    }
    /* The intermediate: the certificate named for this product and key kind. */
    char want_cn[32];
    snprintf(want_cn, sizeof(want_cn), vlek ? "SEV-VLEK-%s" : "SEV-%s", product_names[prod]);
    X509 *ask = NULL;
    for (int i = 0; i < sk_X509_num(ask_sk); i++)
        if (cn_is(sk_X509_value(ask_sk, i), want_cn))
            ask = sk_X509_value(ask_sk, i);
    if (ask == NULL) {
        rc = veil__attest_reject(out, VEIL_ATTEST_CHAIN_INVALID, "no %s certificate", want_cn);
        goto out;
    }
    if ((untrusted = sk_X509_new_null()) == NULL || !sk_X509_push(untrusted, ask)) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    struct veil_chain_req req = {vek, untrusted, ark, {NULL, NULL}, opts->now, false};
    enum veil_attest_reason why;
    if ((rc = veil__attest_chain_verify(&req, &why, &eb)) != VEIL_OK) {
        if (rc == VEIL_E_AUTH)
            rc = veil__attest_reject(out, why, "%s chain: %s", vlek ? "VLEK" : "VCEK", eb.msg);
        goto out;
    }
    EVP_PKEY *vek_key = X509_get0_pubkey(vek);
    char group[32] = "";
    size_t glen = 0;
    if (vek_key == NULL || EVP_PKEY_get_id(vek_key) != EVP_PKEY_EC ||
        EVP_PKEY_get_utf8_string_param(vek_key, "group", group, sizeof(group), &glen) != 1 ||
        strcmp(group, "secp384r1") != 0) {
        ERR_clear_error();
        rc = veil__attest_reject(out, VEIL_ATTEST_CERT_MISMATCH, "endorsement key is not P-384");
        goto out;
    }

    /* Bind the certificate to the report. */
    uint64_t rtcb = le64(p + 0x180), bl, tee, snp, ucode, fmc = 0;
    if (amd_ext_uint(vek, "3.1", &bl) || amd_ext_uint(vek, "3.2", &tee) ||
        amd_ext_uint(vek, "3.3", &snp) || amd_ext_uint(vek, "3.8", &ucode) ||
        (prod == PROD_TURIN && amd_ext_uint(vek, "3.9", &fmc))) {
        rc = veil__attest_reject(out, VEIL_ATTEST_CERT_MISMATCH, "certificate lacks TCB SPLs");
        goto out;
    }
    uint8_t tb[8];
    for (size_t i = 0; i < 8; i++)
        tb[i] = (uint8_t)(rtcb >> (8 * i));
    bool tcb_ok =
        prod == PROD_TURIN
            ? (tb[0] == fmc && tb[1] == bl && tb[2] == tee && tb[3] == snp && tb[7] == ucode)
            : (tb[0] == bl && tb[1] == tee && tb[6] == snp && tb[7] == ucode);
    if (!tcb_ok) {
        rc = veil__attest_reject(out, VEIL_ATTEST_CERT_MISMATCH,
                                 "REPORTED_TCB does not match the certificate's TCB");
        goto out;
    }
    if (vlek) {
        char csp[128];
        struct veil_span hw;
        if (amd_ext_str(vek, "5", csp, sizeof(csp)) != VEIL_OK ||
            amd_ext(vek, "4", &hw) == VEIL_OK) {
            rc = veil__attest_reject(out, VEIL_ATTEST_CERT_MISMATCH,
                                     "VLEK certificate must carry CSP_ID and no hwID");
            goto out;
        }
    } else if ((flags & 2) == 0) { /* MASK_CHIP_KEY clear */
        struct veil_span hw, c;
        uint8_t tag;
        if (amd_ext(vek, "4", &hw) != VEIL_OK) {
            rc = veil__attest_reject(out, VEIL_ATTEST_CERT_MISMATCH, "VCEK lacks hwID");
            goto out;
        }
        if (hw.len != 64) { /* also accept the DER OCTET STRING form */
            if (veil__attest_der_get(&hw, &tag, &c) != VEIL_OK || tag != 0x04 || hw.len != 0)
                c.len = 0;
            hw = c;
        }
        if (hw.len != 64 || memcmp(hw.p, p + 0x1A0, 64) != 0) {
            rc = veil__attest_reject(out, VEIL_ATTEST_CERT_MISMATCH,
                                     "CHIP_ID does not match the VCEK hwID");
            goto out;
        }
    }

    /* The signature. */
    uint8_t rs[96];
    if (!rs_from_le(p + 0x2A0, rs) || !rs_from_le(p + 0x2E8, rs + 48)) {
        rc = veil__attest_reject(out, VEIL_ATTEST_REPORT_SIGNATURE, "signature out of range");
        goto out;
    }
    rc = veil__attest_ecdsa_verify_raw(vek_key, EVP_sha384(), veil_span_make(p, SNP_SIGNED_LEN),
                                       veil_span_make(rs, 96));
    if (rc != VEIL_OK) {
        if (rc == VEIL_E_AUTH)
            rc = veil__attest_reject(out, VEIL_ATTEST_REPORT_SIGNATURE,
                                     "report signature does not verify with the %s key",
                                     vlek ? "VLEK" : "VCEK");
        goto out;
    }

    if ((tmp = veil_calloc(1, sizeof(*tmp))) == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    tmp->tee = VEIL_TEE_SNP;
    tmp->version = version;
    tmp->guest_svn = le32(p + 0x04);
    tmp->snp_policy = le64(p + 0x08);
    memcpy(tmp->family_id, p + 0x10, 16);
    memcpy(tmp->image_id, p + 0x20, 16);
    tmp->vmpl = le32(p + 0x30);
    tmp->current_tcb = le64(p + 0x38);
    tmp->platform_info = le64(p + 0x40);
    memcpy(tmp->report_data, p + 0x50, 64);
    memcpy(tmp->measurement, p + 0x90, 48);
    memcpy(tmp->host_data, p + 0xC0, 32);
    memcpy(tmp->id_key_digest, p + 0xE0, 48);
    memcpy(tmp->author_key_digest, p + 0x110, 48);
    tmp->reported_tcb = rtcb;
    memcpy(tmp->chip_id, p + 0x1A0, 64);
    tmp->fw_build = p[0x1E8];
    tmp->fw_minor = p[0x1E9];
    tmp->fw_major = p[0x1EA];
    tmp->debug = (tmp->snp_policy & (1ull << 19)) != 0;
    tmp->vlek = vlek;
    snprintf(tmp->product, sizeof(tmp->product), "%s", product_names[prod]);
    tmp->reason = VEIL_ATTEST_OK;
    tmp->verified = true;
    snprintf(tmp->detail, sizeof(tmp->detail), "SNP report v%u verified (%s, %s)", version,
             product_names[prod], vlek ? "VLEK" : "VCEK");
    *out = *tmp;
    rc = VEIL_OK;
out:
    veil_free(tmp);
    sk_X509_free(untrusted);
    sk_X509_pop_free(vek_sk, X509_free);
    sk_X509_pop_free(ask_sk, X509_free);
    sk_X509_pop_free(ark_sk, X509_free);
    return rc;
}

veil_err veil_attest_snp_certs_parse(struct veil_span aux, struct veil_attest_snp_certs *out)
{
    /* GHCB specification, SNP extended guest request certificate table. */
    static const uint8_t guids[4][16] = {
        {0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac,
         0xcd}, /* VCEK 63da758d-e664-4564-adc5-f4b93be8accd */
        {0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8,
         0xa1}, /* VLEK a8074bc2-a25a-483e-aae6-39c045a0b8a1 */
        {0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7,
         0x82}, /* ASK 4ab7b379-bbac-4fe4-a02f-05aef327c782 */
        {0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0,
         0xae}, /* ARK c0b406a4-a803-4952-9743-3fb6014cd0ae */
    };
    struct veil_span *slots[4] = {&out->vcek, &out->vlek, &out->ask, &out->ark};
    struct veil_span s = aux;
    memset(out, 0, sizeof(*out));
    for (;;) {
        struct veil_span guid;
        uint32_t off, len;
        if (veil_span_get_bytes(&s, 16, &guid) != VEIL_OK ||
            veil_span_get_u32le(&s, &off) != VEIL_OK || veil_span_get_u32le(&s, &len) != VEIL_OK)
            return VEIL_E_FORMAT; /* no terminating entry */
        if (all_zero(guid.p, 16) && off == 0 && len == 0)
            return VEIL_OK;
        struct veil_span body = aux, cert;
        if (veil_span_skip(&body, off) != VEIL_OK ||
            veil_span_get_bytes(&body, len, &cert) != VEIL_OK || len == 0)
            return VEIL_E_FORMAT;
        for (size_t i = 0; i < 4; i++) {
            if (memcmp(guid.p, guids[i], 16) != 0)
                continue;
            if (slots[i]->len != 0)
                return VEIL_E_FORMAT;
            *slots[i] = cert;
        }
    }
}
