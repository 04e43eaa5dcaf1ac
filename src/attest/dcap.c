/*
 * Intel DCAP quote verification: SGX ECDSA quote v3 and TDX quote v4/v5 (TD report 1.0/1.5).
 *
 * Check order follows Intel's QVL (docs/attest/verification.md): parse with bounds, Root CA
 * CRL, TCB info and QE identity (signatures over their exact bytes, validity at `now`), PCK
 * chain to the pinned root with both CRLs, FMSPC/PCE-ID binding, QE report signature by the
 * PCK, QE report data binding of the attestation key, QE identity, quote signature, then TCB
 * level matching (with the TDX module identity) and convergence with the QE status. Claims are
 * copied out only after every check passed, so no field of a forged quote is ever reported.
 * Bytes after the declared signature data are tolerated and never read.
 */
#include "attest_int.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

static const uint8_t intel_qe_vendor[16] = {0x93, 0x9A, 0x72, 0x33, 0xF7, 0x9C, 0x4C, 0xA9,
                                            0x94, 0x0A, 0x0D, 0xB3, 0x95, 0x7F, 0x06, 0x07};

#define HDR_LEN 48
#define SGX_BODY_LEN 384
#define TD10_BODY_LEN 584
#define TD15_BODY_LEN 648
#define TEE_TYPE_SGX 0x00000000u
#define TEE_TYPE_TDX 0x00000081u

struct quote {
    uint16_t version;
    uint32_t tee_type;
    uint16_t body_type; /* 1 SGX, 2 TD report 1.0, 3 TD report 1.5 */
    struct veil_span body;
    struct veil_span signed_part;
    struct veil_span sig, att_key, qe_report, qe_sig, qe_auth, pck_chain;
};

/* Reads the QE report and what follows it up to and including the type-5 PCK chain. */
static veil_err parse_qe_part(struct veil_span *s, struct quote *q, struct veil_errbuf *eb)
{
    uint16_t auth_len, ctype;
    uint32_t clen;
    if (veil_span_get_bytes(s, 384, &q->qe_report) != VEIL_OK ||
        veil_span_get_bytes(s, 64, &q->qe_sig) != VEIL_OK ||
        veil_span_get_u16le(s, &auth_len) != VEIL_OK ||
        veil_span_get_bytes(s, auth_len, &q->qe_auth) != VEIL_OK ||
        veil_span_get_u16le(s, &ctype) != VEIL_OK || veil_span_get_u32le(s, &clen) != VEIL_OK)
        return veil_errf(eb, VEIL_E_FORMAT, "declared length exceeds input (QE report data)");
    if (ctype != 5)
        return veil_errf(eb, VEIL_E_UNSUPPORTED,
                         "certification data type %u (only 5, PCK chain, is verifiable offline)",
                         ctype);
    if (veil_span_get_bytes(s, clen, &q->pck_chain) != VEIL_OK)
        return veil_errf(eb, VEIL_E_FORMAT, "declared length exceeds input (PCK chain)");
    return veil_span_expect_end(s) == VEIL_OK
               ? VEIL_OK
               : veil_errf(eb, VEIL_E_FORMAT, "bytes after certification data");
}

/* Pure parser of a quote's structure; no signature is checked here. */
static veil_err parse_quote(struct veil_span in, struct quote *q, struct veil_errbuf *eb)
{
    struct veil_span s = in, hdr, tmp, sigdata;
    uint16_t key_type;
    uint32_t siglen;
    memset(q, 0, sizeof(*q));
    if (veil_span_get_bytes(&s, HDR_LEN, &hdr) != VEIL_OK)
        return veil_errf(eb, VEIL_E_FORMAT, "declared length exceeds input (header)");
    tmp = hdr;
    if (veil_span_get_u16le(&tmp, &q->version) != VEIL_OK ||
        veil_span_get_u16le(&tmp, &key_type) != VEIL_OK ||
        veil_span_get_u32le(&tmp, &q->tee_type) != VEIL_OK)
        return VEIL_E_INTERNAL; /* the header span holds 48 bytes */
    if (q->version < 3 || q->version > 5)
        return veil_errf(eb, VEIL_E_UNSUPPORTED, "quote version %u", q->version);
    if (key_type != 2)
        return veil_errf(eb, VEIL_E_UNSUPPORTED, "attestation key type %u (only ECDSA P-256)",
                         key_type);
    if (memcmp(hdr.p + 12, intel_qe_vendor, 16) != 0)
        return veil_errf(eb, VEIL_E_UNSUPPORTED, "QE vendor is not Intel");
    size_t body_len;
    if (q->version == 3) {
        if (q->tee_type != 0)
            return veil_errf(eb, VEIL_E_FORMAT, "reserved header field not zero");
        q->body_type = 1;
        body_len = SGX_BODY_LEN;
    } else {
        if (q->tee_type != TEE_TYPE_SGX && q->tee_type != TEE_TYPE_TDX)
            return veil_errf(eb, VEIL_E_UNSUPPORTED, "TEE type 0x%x", q->tee_type);
        if (hdr.p[8] | hdr.p[9] | hdr.p[10] | hdr.p[11])
            return veil_errf(eb, VEIL_E_FORMAT, "reserved header field not zero");
        q->body_type = q->tee_type == TEE_TYPE_TDX ? 2 : 1;
        body_len = q->body_type == 2 ? TD10_BODY_LEN : SGX_BODY_LEN;
        if (q->version == 5) {
            uint16_t bt;
            uint32_t bs;
            if (veil_span_get_u16le(&s, &bt) != VEIL_OK || veil_span_get_u32le(&s, &bs) != VEIL_OK)
                return veil_errf(eb, VEIL_E_FORMAT, "declared length exceeds input (body)");
            size_t want = bt == 1   ? SGX_BODY_LEN
                          : bt == 2 ? TD10_BODY_LEN
                          : bt == 3 ? TD15_BODY_LEN
                                    : 0;
            if (want == 0)
                return veil_errf(eb, VEIL_E_UNSUPPORTED, "quote v5 body type %u", bt);
            if (bs != want)
                return veil_errf(eb, VEIL_E_FORMAT, "body size %u does not match type %u", bs, bt);
            if ((bt == 1) != (q->tee_type == TEE_TYPE_SGX))
                return veil_errf(eb, VEIL_E_FORMAT, "body type %u does not match TEE type", bt);
            q->body_type = bt;
            body_len = want;
        }
    }
    if (veil_span_get_bytes(&s, body_len, &q->body) != VEIL_OK)
        return veil_errf(eb, VEIL_E_FORMAT, "declared length exceeds input (report body)");
    q->signed_part = veil_span_make(in.p, in.len - s.len);
    if (veil_span_get_u32le(&s, &siglen) != VEIL_OK ||
        veil_span_get_bytes(&s, siglen, &sigdata) != VEIL_OK)
        return veil_errf(eb, VEIL_E_FORMAT, "declared length exceeds input (signature data)");
    /* Whatever follows sigdata in s is trailing data: tolerated, never read. */
    if (veil_span_get_bytes(&sigdata, 64, &q->sig) != VEIL_OK ||
        veil_span_get_bytes(&sigdata, 64, &q->att_key) != VEIL_OK)
        return veil_errf(eb, VEIL_E_FORMAT, "declared length exceeds input (signature)");
    if (q->version == 3)
        return parse_qe_part(&sigdata, q, eb);
    uint16_t ctype;
    uint32_t clen;
    struct veil_span inner;
    if (veil_span_get_u16le(&sigdata, &ctype) != VEIL_OK ||
        veil_span_get_u32le(&sigdata, &clen) != VEIL_OK)
        return veil_errf(eb, VEIL_E_FORMAT, "declared length exceeds input (certification data)");
    if (ctype != 6)
        return veil_errf(eb, VEIL_E_UNSUPPORTED, "outer certification data type %u (want 6)",
                         ctype);
    if (veil_span_get_bytes(&sigdata, clen, &inner) != VEIL_OK)
        return veil_errf(eb, VEIL_E_FORMAT, "declared length exceeds input (QE report data)");
    if (veil_span_expect_end(&sigdata) != VEIL_OK)
        return veil_errf(eb, VEIL_E_FORMAT, "bytes after certification data");
    return parse_qe_part(&inner, q, eb);
}

/* ---- JSON helpers over collateral ---- */

static veil_err j_hex(const struct veil_json *o, const char *key, uint8_t *out, size_t n)
{
    const struct veil_json *v = veil_json_get(o, key);
    if (v == NULL || v->type != VEIL_JSON_STRING)
        return VEIL_E_FORMAT;
    return veil_hex_decode(veil_span_make(v->str, v->str_len), out, n);
}

static veil_err j_int(const struct veil_json *o, const char *key, int64_t min, int64_t max,
                      int64_t *out)
{
    const struct veil_json *v = veil_json_get(o, key);
    if (v == NULL || v->type != VEIL_JSON_NUMBER || !v->is_int || v->i < min || v->i > max)
        return VEIL_E_FORMAT;
    *out = v->i;
    return VEIL_OK;
}

static veil_err j_time(const struct veil_json *o, const char *key, int64_t *out)
{
    const struct veil_json *v = veil_json_get(o, key);
    if (v == NULL || v->type != VEIL_JSON_STRING)
        return VEIL_E_FORMAT;
    return veil_time_parse_rfc3339(veil_span_make(v->str, v->str_len), out);
}

static bool j_str_eq(const struct veil_json *o, const char *key, const char *want)
{
    const struct veil_json *v = veil_json_get(o, key);
    return v != NULL && v->type == VEIL_JSON_STRING && strcmp(v->str, want) == 0;
}

/* ---- TCB statuses ---- */

enum tcb_status {
    TCB_UP_TO_DATE,
    TCB_SW_HARDENING,
    TCB_CONFIG,
    TCB_CONFIG_SW,
    TCB_OUT_OF_DATE,
    TCB_OUT_OF_DATE_CONFIG,
    TCB_REVOKED,
    TCB_BAD,
};

static const char *const status_names[] = {
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
};

static enum tcb_status status_parse(const struct veil_json *level)
{
    const struct veil_json *v = veil_json_get(level, "tcbStatus");
    if (v == NULL || v->type != VEIL_JSON_STRING)
        return TCB_BAD;
    for (size_t i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++)
        if (strcmp(v->str, status_names[i]) == 0)
            return (enum tcb_status)i;
    return TCB_BAD;
}

/* Intel QVL's convergence of the platform status with an OutOfDate/Revoked QE or module. */
static enum tcb_status converge(enum tcb_status platform, enum tcb_status other)
{
    if (other == TCB_REVOKED)
        return TCB_REVOKED;
    if (other == TCB_OUT_OF_DATE) {
        if (platform == TCB_UP_TO_DATE || platform == TCB_SW_HARDENING)
            return TCB_OUT_OF_DATE;
        if (platform == TCB_CONFIG || platform == TCB_CONFIG_SW)
            return TCB_OUT_OF_DATE_CONFIG;
    }
    return platform;
}

static veil_err add_advisories(struct veil_attest_claims *c, const struct veil_json *level)
{
    const struct veil_json *a = veil_json_get(level, "advisoryIDs");
    if (a == NULL)
        return VEIL_OK;
    if (a->type != VEIL_JSON_ARRAY)
        return VEIL_E_FORMAT;
    for (size_t i = 0; i < a->n; i++) {
        const struct veil_json *s = a->items[i];
        if (s->type != VEIL_JSON_STRING || s->str_len == 0 ||
            s->str_len >= VEIL_ATTEST_ADVISORY_LEN)
            return VEIL_E_FORMAT;
        bool dup = false;
        for (size_t k = 0; k < c->advisory_count; k++)
            if (strcmp(c->advisory_ids[k], s->str) == 0)
                dup = true;
        if (dup)
            continue;
        if (c->advisory_count >= VEIL_ATTEST_MAX_ADVISORIES)
            return VEIL_E_LIMIT;
        memcpy(c->advisory_ids[c->advisory_count++], s->str, s->str_len + 1);
    }
    return VEIL_OK;
}

/* ---- PCK certificate SGX extension ---- */

/* Is oid (DER content) the SGX extension OID followed by the given extra arcs (all < 128)? */
static bool oid_is(struct veil_span oid, const uint8_t *extra, size_t n)
{
    static const uint8_t base[] = {0x2A, 0x86, 0x48, 0x86, 0xF8, 0x4D, 0x01, 0x0D, 0x01};
    return oid.len == sizeof(base) + n && memcmp(oid.p, base, sizeof(base)) == 0 &&
           memcmp(oid.p + sizeof(base), extra, n) == 0;
}

static veil_err parse_pck_tcb(struct veil_span s, struct veil_pck_ext *e)
{
    unsigned seen = 0;
    while (s.len > 0) {
        uint8_t tag;
        struct veil_span item, oid, val;
        if (veil__attest_der_get(&s, &tag, &item) != VEIL_OK || tag != 0x30)
            return VEIL_E_FORMAT;
        if (veil__attest_der_get(&item, &tag, &oid) != VEIL_OK || tag != 0x06)
            return VEIL_E_FORMAT;
        if (veil__attest_der_get(&item, &tag, &val) != VEIL_OK || item.len != 0)
            return VEIL_E_FORMAT;
        for (uint8_t k = 1; k <= 18; k++) {
            const uint8_t arcs[2] = {2, k};
            if (!oid_is(oid, arcs, 2))
                continue;
            if (seen & (1u << k))
                return VEIL_E_FORMAT;
            seen |= 1u << k;
            uint64_t v;
            if (k <= 17) {
                if (tag != 0x02 || veil__attest_der_uint(val, &v) != VEIL_OK)
                    return VEIL_E_FORMAT;
                if (k <= 16) {
                    if (v > 255)
                        return VEIL_E_FORMAT;
                    e->comp[k - 1] = (uint8_t)v;
                } else {
                    if (v > 65535)
                        return VEIL_E_FORMAT;
                    e->pcesvn = v;
                }
            } else {
                if (tag != 0x04 || val.len != 16)
                    return VEIL_E_FORMAT;
                memcpy(e->cpusvn, val.p, 16);
            }
        }
    }
    return seen == 0x7FFFEu ? VEIL_OK : VEIL_E_FORMAT; /* arcs 1..18 all present */
}

static veil_err parse_pck_ext(X509 *leaf, struct veil_pck_ext *e)
{
    memset(e, 0, sizeof(*e));
    ASN1_OBJECT *obj = OBJ_txt2obj("1.2.840.113741.1.13.1", 1);
    if (obj == NULL)
        return VEIL_E_NOMEM;
    int idx = X509_get_ext_by_OBJ(leaf, obj, -1);
    int idx2 = idx >= 0 ? X509_get_ext_by_OBJ(leaf, obj, idx) : -1;
    ASN1_OBJECT_free(obj);
    if (idx < 0 || idx2 >= 0)
        return VEIL_E_FORMAT;
    ASN1_OCTET_STRING *os = X509_EXTENSION_get_data(X509_get_ext(leaf, idx));
    return veil__attest_pck_ext_parse(
        veil_span_make(ASN1_STRING_get0_data(os), (size_t)ASN1_STRING_length(os)), e);
}

veil_err veil__attest_pck_ext_parse(struct veil_span s, struct veil_pck_ext *e)
{
    memset(e, 0, sizeof(*e));
    uint8_t tag;
    struct veil_span seq;
    if (veil__attest_der_get(&s, &tag, &seq) != VEIL_OK || tag != 0x30 || s.len != 0)
        return VEIL_E_FORMAT;
    while (seq.len > 0) {
        struct veil_span item, oid, val;
        if (veil__attest_der_get(&seq, &tag, &item) != VEIL_OK || tag != 0x30)
            return VEIL_E_FORMAT;
        if (veil__attest_der_get(&item, &tag, &oid) != VEIL_OK || tag != 0x06)
            return VEIL_E_FORMAT;
        if (veil__attest_der_get(&item, &tag, &val) != VEIL_OK || item.len != 0)
            return VEIL_E_FORMAT;
        for (uint8_t k = 1; k <= 7; k++) {
            if (!oid_is(oid, &k, 1))
                continue;
            if (e->seen & (1u << k))
                return VEIL_E_FORMAT;
            e->seen |= 1u << k;
            if (k == 2) {
                if (tag != 0x30 || parse_pck_tcb(val, e) != VEIL_OK)
                    return VEIL_E_FORMAT;
            } else if (k == 3) {
                if (tag != 0x04 || val.len != 2)
                    return VEIL_E_FORMAT;
                memcpy(e->pceid, val.p, 2);
            } else if (k == 4) {
                if (tag != 0x04 || val.len != 6)
                    return VEIL_E_FORMAT;
                memcpy(e->fmspc, val.p, 6);
            }
        }
    }
    unsigned need = (1u << 2) | (1u << 3) | (1u << 4);
    return (e->seen & need) == need ? VEIL_OK : VEIL_E_FORMAT;
}

/* ---- Signed collateral: {"<name>":{...},"signature":"<hex r||s>"} ---- */

struct signed_doc {
    const struct veil_json *body;
    int64_t issue, next;
};

static veil_err verify_signed_doc(struct veil_arena *a, struct veil_span text, const char *name,
                                  struct veil_span chain_pem, X509 *root, X509_CRL *root_crl,
                                  const struct veil_attest_verify_opts *opts,
                                  struct veil_attest_claims *c, struct signed_doc *out)
{
    veil_err rc = VEIL_E_INTERNAL;
    STACK_OF(X509) *chain = NULL;
    struct veil_errbuf eb = {{0}};
    struct veil_json *doc = NULL;
    uint8_t sig[64];
    if (text.len == 0 || chain_pem.len == 0) {
        rc = veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_MISSING,
                                 "%s or its issuer chain missing", name);
        goto out;
    }
    rc = veil_json_parse(text, a, &doc, &eb);
    if (rc == VEIL_E_NOMEM)
        goto out;
    const struct veil_json *body = veil_json_get(doc, name);
    const struct veil_json *sigv = veil_json_get(doc, "signature");
    if (rc != VEIL_OK || doc->n != 2 || body == NULL || body->type != VEIL_JSON_OBJECT ||
        sigv == NULL || sigv->type != VEIL_JSON_STRING ||
        veil_hex_decode(veil_span_make(sigv->str, sigv->str_len), sig, 64) != VEIL_OK) {
        rc = veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_MALFORMED, "%s: %s", name,
                                 eb.msg[0] ? eb.msg : "unexpected structure");
        goto out;
    }
    if ((rc = veil__attest_certs_parse(chain_pem, &chain, &eb)) != VEIL_OK) {
        if (rc != VEIL_E_NOMEM)
            rc = veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_MALFORMED, "%s issuer chain: %s",
                                     name, eb.msg);
        goto out;
    }
    struct veil_chain_req req = {sk_X509_value(chain, 0), chain,     root,
                                 {root_crl, NULL},        opts->now, opts->ignore_crl_freshness};
    enum veil_attest_reason why;
    if ((rc = veil__attest_chain_verify(&req, &why, &eb)) != VEIL_OK) {
        if (rc == VEIL_E_AUTH)
            rc = veil__attest_reject(c, why, "%s signing chain: %s", name, eb.msg);
        goto out;
    }
    rc = veil__attest_ecdsa_verify_raw(X509_get0_pubkey(req.leaf), EVP_sha256(), body->raw,
                                       veil_span_make(sig, 64));
    if (rc != VEIL_OK) {
        if (rc == VEIL_E_AUTH)
            rc = veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_SIGNATURE,
                                     "%s signature does not verify", name);
        goto out;
    }
    if (j_time(body, "issueDate", &out->issue) != VEIL_OK ||
        j_time(body, "nextUpdate", &out->next) != VEIL_OK) {
        rc = veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_MALFORMED, "%s dates", name);
        goto out;
    }
    if (opts->now < out->issue || opts->now > out->next) {
        char a1[21], a2[21];
        veil_time_format_rfc3339(out->issue, a1);
        veil_time_format_rfc3339(out->next, a2);
        rc = veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_EXPIRED,
                                 "%s valid %s .. %s only (nextUpdate passed or not yet issued)",
                                 name, a1, a2);
        goto out;
    }
    out->body = body;
    rc = VEIL_OK;
out:
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

/* Checks a CRL's signature with key, its issuer name and its dates at now. */
static veil_err check_crl(X509_CRL *crl, X509 *issuer, const char *name,
                          const struct veil_attest_verify_opts *opts, struct veil_attest_claims *c,
                          int64_t *this_up, int64_t *next_up)
{
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) != 0)
        return veil__attest_reject(c, VEIL_ATTEST_CRL_INVALID, "%s issuer does not match", name);
    if (X509_CRL_verify(crl, X509_get0_pubkey(issuer)) != 1) {
        ERR_clear_error();
        return veil__attest_reject(c, VEIL_ATTEST_CRL_INVALID, "%s signature does not verify",
                                   name);
    }
    if (veil__attest_asn1_time(X509_CRL_get0_lastUpdate(crl), this_up) != VEIL_OK ||
        veil__attest_asn1_time(X509_CRL_get0_nextUpdate(crl), next_up) != VEIL_OK)
        return veil__attest_reject(c, VEIL_ATTEST_CRL_INVALID, "%s dates", name);
    if (opts->now < *this_up)
        return veil__attest_reject(c, VEIL_ATTEST_CRL_EXPIRED, "%s not yet valid", name);
    if (opts->now > *next_up && !opts->ignore_crl_freshness) {
        char t[21];
        veil_time_format_rfc3339(*next_up, t);
        return veil__attest_reject(c, VEIL_ATTEST_CRL_EXPIRED, "%s expired (nextUpdate %s)", name,
                                   t);
    }
    return VEIL_OK;
}

/* ---- Report bodies ---- */

static void read_sgx_body(struct veil_span b, struct veil_attest_claims *c)
{
    memcpy(c->cpusvn, b.p, 16);
    c->miscselect = (uint32_t)b.p[16] | (uint32_t)b.p[17] << 8 | (uint32_t)b.p[18] << 16 |
                    (uint32_t)b.p[19] << 24;
    memcpy(c->attributes, b.p + 48, 16);
    memcpy(c->mrenclave, b.p + 64, 32);
    memcpy(c->mrsigner, b.p + 128, 32);
    c->isv_prod_id = (uint16_t)(b.p[256] | b.p[257] << 8);
    c->isv_svn = (uint16_t)(b.p[258] | b.p[259] << 8);
    memcpy(c->report_data, b.p + 320, 64);
    c->debug = (c->attributes[0] & 0x02) != 0;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void read_td_body(struct veil_span b, struct veil_attest_claims *c)
{
    memcpy(c->tee_tcb_svn, b.p, 16);
    memcpy(c->mrseam, b.p + 16, 48);
    memcpy(c->mrsignerseam, b.p + 64, 48);
    c->seam_attributes = le64(b.p + 112);
    c->td_attributes = le64(b.p + 120);
    c->xfam = le64(b.p + 128);
    memcpy(c->mrtd, b.p + 136, 48);
    memcpy(c->mrconfigid, b.p + 184, 48);
    memcpy(c->mrowner, b.p + 232, 48);
    memcpy(c->mrownerconfig, b.p + 280, 48);
    for (size_t i = 0; i < 4; i++)
        memcpy(c->rtmr[i], b.p + 328 + 48 * i, 48);
    memcpy(c->report_data, b.p + 520, 64);
    if (b.len == TD15_BODY_LEN) {
        memcpy(c->tee_tcb_svn2, b.p + 584, 16);
        memcpy(c->mrservicetd, b.p + 600, 48);
    }
    c->debug = (c->td_attributes & 0xFF) != 0; /* the "TD under debug" byte */
}

/* ---- QE identity ---- */

static veil_err match_qe_identity(const struct veil_json *qe, struct veil_span qe_report,
                                  struct veil_attest_claims *c, enum tcb_status *status,
                                  const struct veil_json **level_out)
{
    uint8_t misc[4], misc_mask[4], attr[16], attr_mask[16], mrsigner[32];
    int64_t prodid;
    if (j_hex(qe, "miscselect", misc, 4) || j_hex(qe, "miscselectMask", misc_mask, 4) ||
        j_hex(qe, "attributes", attr, 16) || j_hex(qe, "attributesMask", attr_mask, 16) ||
        j_hex(qe, "mrsigner", mrsigner, 32) || j_int(qe, "isvprodid", 0, 65535, &prodid))
        return veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_MALFORMED, "QE identity fields");
    const uint8_t *r = qe_report.p;
    if (memcmp(r + 128, mrsigner, 32) != 0)
        return veil__attest_reject(c, VEIL_ATTEST_QE_IDENTITY_MISMATCH, "QE MRSIGNER");
    if ((r[256] | r[257] << 8) != prodid)
        return veil__attest_reject(c, VEIL_ATTEST_QE_IDENTITY_MISMATCH, "QE ISVPRODID");
    /* miscselect in the JSON is big-endian hex of the 32-bit value; the report is LE. */
    for (size_t i = 0; i < 4; i++)
        if ((r[16 + i] & misc_mask[3 - i]) != misc[3 - i])
            return veil__attest_reject(c, VEIL_ATTEST_QE_IDENTITY_MISMATCH, "QE MISCSELECT");
    for (size_t i = 0; i < 16; i++)
        if ((r[48 + i] & attr_mask[i]) != attr[i])
            return veil__attest_reject(c, VEIL_ATTEST_QE_IDENTITY_MISMATCH, "QE ATTRIBUTES");
    int64_t svn = r[258] | r[259] << 8;
    const struct veil_json *levels = veil_json_get(qe, "tcbLevels");
    if (levels == NULL || levels->type != VEIL_JSON_ARRAY)
        return veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_MALFORMED, "QE identity levels");
    for (size_t i = 0; i < levels->n; i++) {
        int64_t lsvn;
        const struct veil_json *tcb = veil_json_get(levels->items[i], "tcb");
        enum tcb_status st = status_parse(levels->items[i]);
        if (j_int(tcb, "isvsvn", 0, 65535, &lsvn) != VEIL_OK || st == TCB_BAD)
            return veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_MALFORMED, "QE identity level");
        if (lsvn <= svn) {
            *status = st;
            *level_out = levels->items[i];
            return VEIL_OK;
        }
    }
    return veil__attest_reject(c, VEIL_ATTEST_TCB_NOT_SUPPORTED,
                               "QE ISVSVN %lld below every QE identity level", (long long)svn);
}

/* ---- TCB levels ---- */

static veil_err comps16(const struct veil_json *tcb, const char *key, uint8_t out[16])
{
    const struct veil_json *a = veil_json_get(tcb, key);
    if (a == NULL || a->type != VEIL_JSON_ARRAY || a->n != 16)
        return VEIL_E_FORMAT;
    for (size_t i = 0; i < 16; i++) {
        int64_t v;
        if (j_int(a->items[i], "svn", 0, 255, &v) != VEIL_OK)
            return VEIL_E_FORMAT;
        out[i] = (uint8_t)v;
    }
    return VEIL_OK;
}

static veil_err level_sgx(const struct veil_json *level, int64_t version, uint8_t comp[16],
                          int64_t *pcesvn)
{
    const struct veil_json *tcb = veil_json_get(level, "tcb");
    if (tcb == NULL || j_int(tcb, "pcesvn", 0, 65535, pcesvn) != VEIL_OK)
        return VEIL_E_FORMAT;
    if (version >= 3)
        return comps16(tcb, "sgxtcbcomponents", comp);
    for (size_t i = 0; i < 16; i++) {
        char key[24];
        int64_t v;
        snprintf(key, sizeof(key), "sgxtcbcomp%02zusvn", i + 1);
        if (j_int(tcb, key, 0, 255, &v) != VEIL_OK)
            return VEIL_E_FORMAT;
        comp[i] = (uint8_t)v;
    }
    return VEIL_OK;
}

/* TDX module identity (Intel QVL TdxModuleCheck): returns the module's status. */
static veil_err check_tdx_module(const struct veil_json *ti, const struct veil_attest_claims *q,
                                 struct veil_attest_claims *c, enum tcb_status *status,
                                 const struct veil_json **level_out)
{
    const struct veil_json *ident = NULL;
    *status = TCB_UP_TO_DATE;
    *level_out = NULL;
    if (q->tee_tcb_svn[1] > 0) {
        char id[8];
        snprintf(id, sizeof(id), "TDX_%02X", q->tee_tcb_svn[1]);
        const struct veil_json *ids = veil_json_get(ti, "tdxModuleIdentities");
        if (ids == NULL || ids->type != VEIL_JSON_ARRAY)
            return veil__attest_reject(c, VEIL_ATTEST_TDX_MODULE_MISMATCH,
                                       "TCB info has no TDX module identities");
        for (size_t i = 0; i < ids->n; i++)
            if (j_str_eq(ids->items[i], "id", id))
                ident = ids->items[i];
        if (ident == NULL)
            return veil__attest_reject(c, VEIL_ATTEST_TDX_MODULE_MISMATCH,
                                       "no TDX module identity %s", id);
    } else {
        ident = veil_json_get(ti, "tdxModule");
        if (ident == NULL)
            return veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_MALFORMED, "tdxModule missing");
    }
    uint8_t mrsigner[48], attr[8], mask[8];
    if (j_hex(ident, "mrsigner", mrsigner, 48) || j_hex(ident, "attributes", attr, 8) ||
        j_hex(ident, "attributesMask", mask, 8))
        return veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_MALFORMED, "TDX module identity");
    if (memcmp(mrsigner, q->mrsignerseam, 48) != 0)
        return veil__attest_reject(c, VEIL_ATTEST_TDX_MODULE_MISMATCH, "MRSIGNERSEAM");
    for (size_t i = 0; i < 8; i++)
        if ((((uint8_t)(q->seam_attributes >> (8 * i))) & mask[i]) != attr[i])
            return veil__attest_reject(c, VEIL_ATTEST_TDX_MODULE_MISMATCH, "SEAM_ATTRIBUTES");
    if (q->tee_tcb_svn[1] == 0)
        return VEIL_OK;
    const struct veil_json *levels = veil_json_get(ident, "tcbLevels");
    if (levels == NULL || levels->type != VEIL_JSON_ARRAY)
        return veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_MALFORMED, "module levels");
    for (size_t i = 0; i < levels->n; i++) {
        int64_t svn;
        enum tcb_status st = status_parse(levels->items[i]);
        if (j_int(veil_json_get(levels->items[i], "tcb"), "isvsvn", 0, 255, &svn) || st == TCB_BAD)
            return veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_MALFORMED, "module level");
        if (svn <= q->tee_tcb_svn[0]) {
            *status = st;
            *level_out = levels->items[i];
            return VEIL_OK;
        }
    }
    return veil__attest_reject(c, VEIL_ATTEST_TCB_NOT_SUPPORTED,
                               "TDX module SVN %u below every module level", q->tee_tcb_svn[0]);
}

/* Selects the platform TCB level (Intel QVL TcbLevelCheck). */
static veil_err match_tcb_level(const struct veil_json *ti, int64_t version, bool tdx,
                                const struct veil_pck_ext *pck, const struct veil_attest_claims *q,
                                struct veil_attest_claims *c, enum tcb_status *status,
                                const struct veil_json **level_out)
{
    const struct veil_json *levels = veil_json_get(ti, "tcbLevels");
    bool sgx_matched = false;
    if (levels == NULL || levels->type != VEIL_JSON_ARRAY || levels->n == 0)
        return veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_MALFORMED, "tcbLevels");
    for (size_t i = 0; i < levels->n; i++) {
        const struct veil_json *l = levels->items[i];
        uint8_t comp[16], tdxc[16];
        int64_t pcesvn;
        enum tcb_status st = status_parse(l);
        if (level_sgx(l, version, comp, &pcesvn) != VEIL_OK || st == TCB_BAD)
            return veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_MALFORMED, "TCB level %zu", i);
        bool ok = (uint64_t)pcesvn <= pck->pcesvn;
        for (size_t k = 0; k < 16 && ok; k++)
            ok = pck->comp[k] >= comp[k];
        if (!ok)
            continue;
        sgx_matched = true;
        if (tdx) {
            if (comps16(veil_json_get(l, "tcb"), "tdxtcbcomponents", tdxc) != VEIL_OK)
                return veil__attest_reject(c, VEIL_ATTEST_COLLATERAL_MALFORMED, "TDX TCB level %zu",
                                           i);
            /* With a module major version, bytes 0 and 1 are judged by the module identity. */
            for (size_t k = q->tee_tcb_svn[1] != 0 ? 2 : 0; k < 16 && ok; k++)
                ok = q->tee_tcb_svn[k] >= tdxc[k];
            if (!ok)
                continue;
        }
        *status = st;
        *level_out = l;
        return VEIL_OK;
    }
    return veil__attest_reject(c, VEIL_ATTEST_TCB_NOT_SUPPORTED,
                               sgx_matched ? "no TDX TCB level matches the TD report"
                                           : "no SGX TCB level matches the PCK certificate");
}

/* ---- The verifier ---- */

veil_err veil__attest_verify_dcap(struct veil_span quote, const struct veil_attest_collateral *col,
                                  const struct veil_attest_roots *roots,
                                  const struct veil_attest_verify_opts *opts,
                                  struct veil_attest_claims *out)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_arena arena;
    struct veil_errbuf eb = {{0}};
    struct quote q;
    struct veil_attest_claims *tmp = NULL; /* claims read from the quote, copied out at the end */
    X509_CRL *root_crl = NULL, *pck_crl = NULL;
    STACK_OF(X509) *pck_chain = NULL, *crl_chain = NULL;
    EVP_PKEY *att_key = NULL;
    veil_arena_init(&arena, 16u << 10, 4u * VEIL_ATTEST_MAX_COLLATERAL);
    X509 *root = roots != NULL ? roots->root[VEIL_ROOT_INTEL_SGX] : NULL;

    rc = parse_quote(quote, &q, &eb);
    if (rc != VEIL_OK) {
        rc = veil__attest_reject(
            out, rc == VEIL_E_UNSUPPORTED ? VEIL_ATTEST_UNSUPPORTED : VEIL_ATTEST_MALFORMED,
            "quote: %s", eb.msg);
        goto out;
    }
    bool tdx = q.body_type != 1;
    out->tee = tdx ? VEIL_TEE_TDX : VEIL_TEE_SGX;
    out->version = q.version;
    if (root == NULL) {
        rc = veil__attest_reject(out, VEIL_ATTEST_ROOT_UNTRUSTED, "Intel SGX Root CA not loaded");
        goto out;
    }
    if ((tmp = veil_calloc(1, sizeof(*tmp))) == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }

    /* Root CA CRL, signed by the pinned root. */
    int64_t issued = INT64_MIN, expires = INT64_MAX, t1, t2;
    if (col->root_ca_crl.len == 0 || col->pck_crl.len == 0 || col->pck_crl_issuer_chain.len == 0) {
        rc = veil__attest_reject(out, VEIL_ATTEST_COLLATERAL_MISSING, "CRLs or CRL issuer chain");
        goto out;
    }
    if (veil__attest_crl_parse(col->root_ca_crl, &root_crl) != VEIL_OK) {
        rc = veil__attest_reject(out, VEIL_ATTEST_COLLATERAL_MALFORMED, "root CA CRL");
        goto out;
    }
    if ((rc = check_crl(root_crl, root, "root CA CRL", opts, out, &t1, &t2)) != VEIL_OK)
        goto out;
    issued = t1 > issued ? t1 : issued;
    expires = t2 < expires ? t2 : expires;

    /* TCB info and QE identity. */
    struct signed_doc ti, qe;
    if ((rc = verify_signed_doc(&arena, col->tcb_info, "tcbInfo", col->tcb_info_issuer_chain, root,
                                root_crl, opts, out, &ti)) != VEIL_OK)
        goto out;
    if ((rc = verify_signed_doc(&arena, col->qe_identity, "enclaveIdentity",
                                col->qe_identity_issuer_chain, root, root_crl, opts, out, &qe)) !=
        VEIL_OK)
        goto out;
    int64_t ti_version, qe_version, eval_num;
    if (j_int(ti.body, "version", 2, 3, &ti_version) != VEIL_OK ||
        j_int(ti.body, "tcbEvaluationDataNumber", 0, UINT32_MAX, &eval_num) != VEIL_OK ||
        j_int(qe.body, "version", 2, 2, &qe_version) != VEIL_OK) {
        rc = veil__attest_reject(out, VEIL_ATTEST_COLLATERAL_MALFORMED, "collateral version");
        goto out;
    }
    bool id_ok = tdx ? (ti_version == 3 && j_str_eq(ti.body, "id", "TDX"))
                     : (ti_version == 2
                            ? veil_json_get(ti.body, "id") == NULL || j_str_eq(ti.body, "id", "SGX")
                            : j_str_eq(ti.body, "id", "SGX"));
    if (!id_ok) {
        rc = veil__attest_reject(out, VEIL_ATTEST_TCB_INFO_MISMATCH,
                                 "TCB info is not for %s quotes", tdx ? "TDX" : "SGX");
        goto out;
    }
    if (!j_str_eq(qe.body, "id", tdx ? "TD_QE" : "QE")) {
        rc = veil__attest_reject(out, VEIL_ATTEST_QE_IDENTITY_MISMATCH,
                                 "QE identity is not for the %s", tdx ? "TD QE" : "QE");
        goto out;
    }
    issued = ti.issue > issued ? ti.issue : issued;
    issued = qe.issue > issued ? qe.issue : issued;
    expires = ti.next < expires ? ti.next : expires;
    expires = qe.next < expires ? qe.next : expires;

    /* PCK CRL: its issuer chain to the root, its signature, then the PCK chain. */
    if (veil__attest_crl_parse(col->pck_crl, &pck_crl) != VEIL_OK) {
        rc = veil__attest_reject(out, VEIL_ATTEST_COLLATERAL_MALFORMED, "PCK CRL");
        goto out;
    }
    if ((rc = veil__attest_certs_parse(col->pck_crl_issuer_chain, &crl_chain, &eb)) != VEIL_OK) {
        if (rc != VEIL_E_NOMEM)
            rc = veil__attest_reject(out, VEIL_ATTEST_COLLATERAL_MALFORMED, "PCK CRL chain: %s",
                                     eb.msg);
        goto out;
    }
    struct veil_chain_req creq = {
        sk_X509_value(crl_chain, 0), crl_chain, root, {root_crl, NULL}, opts->now,
        opts->ignore_crl_freshness};
    enum veil_attest_reason why;
    if ((rc = veil__attest_chain_verify(&creq, &why, &eb)) != VEIL_OK) {
        if (rc == VEIL_E_AUTH)
            rc = veil__attest_reject(out, why, "PCK CRL issuer chain: %s", eb.msg);
        goto out;
    }
    if ((rc = check_crl(pck_crl, creq.leaf, "PCK CRL", opts, out, &t1, &t2)) != VEIL_OK)
        goto out;
    issued = t1 > issued ? t1 : issued;
    expires = t2 < expires ? t2 : expires;

    if ((rc = veil__attest_certs_parse(q.pck_chain, &pck_chain, &eb)) != VEIL_OK ||
        sk_X509_num(pck_chain) < 2) {
        if (rc != VEIL_E_NOMEM)
            rc = veil__attest_reject(out, VEIL_ATTEST_MALFORMED, "PCK chain in quote: %s",
                                     eb.msg[0] ? eb.msg : "fewer than two certificates");
        goto out;
    }
    X509 *pck = sk_X509_value(pck_chain, 0);
    /* Type 5 data is exactly leaf, PCK CA and root; the root copy must be the pinned one. */
    if (sk_X509_num(pck_chain) != 3) {
        rc = veil__attest_reject(out, VEIL_ATTEST_MALFORMED,
                                 "PCK chain holds %d certificates, not 3", sk_X509_num(pck_chain));
        goto out;
    }
    if (X509_cmp(sk_X509_value(pck_chain, 2), root) != 0) {
        rc = veil__attest_reject(out, VEIL_ATTEST_ROOT_UNTRUSTED,
                                 "PCK chain in the quote does not end at the pinned root");
        goto out;
    }
    if (X509_NAME_cmp(X509_CRL_get_issuer(pck_crl), X509_get_issuer_name(pck)) != 0) {
        rc = veil__attest_reject(out, VEIL_ATTEST_CRL_INVALID,
                                 "PCK CRL is not from the PCK certificate's issuer");
        goto out;
    }
    struct veil_chain_req preq = {
        pck, pck_chain, root, {root_crl, pck_crl}, opts->now, opts->ignore_crl_freshness};
    if ((rc = veil__attest_chain_verify(&preq, &why, &eb)) != VEIL_OK) {
        if (rc == VEIL_E_AUTH)
            rc = veil__attest_reject(out, why, "PCK chain: %s", eb.msg);
        goto out;
    }
    struct veil_pck_ext ext;
    if (parse_pck_ext(pck, &ext) != VEIL_OK) {
        rc = veil__attest_reject(out, VEIL_ATTEST_MALFORMED, "PCK certificate SGX extension");
        goto out;
    }
    uint8_t fmspc[6], pceid[2];
    if (j_hex(ti.body, "fmspc", fmspc, 6) != VEIL_OK ||
        j_hex(ti.body, "pceId", pceid, 2) != VEIL_OK) {
        rc = veil__attest_reject(out, VEIL_ATTEST_COLLATERAL_MALFORMED, "TCB info FMSPC/PCE-ID");
        goto out;
    }
    if (memcmp(fmspc, ext.fmspc, 6) != 0 || memcmp(pceid, ext.pceid, 2) != 0) {
        char a[13], b[13];
        veil_hex_encode(ext.fmspc, 6, a);
        veil_hex_encode(fmspc, 6, b);
        rc = veil__attest_reject(out, VEIL_ATTEST_TCB_INFO_MISMATCH,
                                 "PCK FMSPC %s / TCB info FMSPC %s (or PCE-ID) differ", a, b);
        goto out;
    }

    /* QE report signed by the PCK; its report data binds the attestation key. */
    rc = veil__attest_ecdsa_verify_raw(X509_get0_pubkey(pck), EVP_sha256(), q.qe_report, q.qe_sig);
    if (rc != VEIL_OK) {
        if (rc == VEIL_E_AUTH)
            rc = veil__attest_reject(out, VEIL_ATTEST_QE_REPORT_SIGNATURE,
                                     "QE report not signed by the PCK key");
        goto out;
    }
    {
        uint8_t h[32];
        EVP_MD_CTX *mctx = EVP_MD_CTX_new();
        bool ok = mctx != NULL && EVP_DigestInit_ex(mctx, EVP_sha256(), NULL) == 1 &&
                  EVP_DigestUpdate(mctx, q.att_key.p, q.att_key.len) == 1 &&
                  EVP_DigestUpdate(mctx, q.qe_auth.p, q.qe_auth.len) == 1 &&
                  EVP_DigestFinal_ex(mctx, h, NULL) == 1;
        EVP_MD_CTX_free(mctx);
        if (!ok) {
            ERR_clear_error();
            rc = VEIL_E_CRYPTO;
            goto out;
        }
        static const uint8_t zero[32];
        if (memcmp(q.qe_report.p + 320, h, 32) != 0 || memcmp(q.qe_report.p + 352, zero, 32) != 0) {
            rc = veil__attest_reject(out, VEIL_ATTEST_QE_REPORT_DATA,
                                     "QE report data is not SHA-256(attestation key || auth data)");
            goto out;
        }
    }
    enum tcb_status qe_status = TCB_UP_TO_DATE; /* set by match_qe_identity on success */
    const struct veil_json *qe_level = NULL;
    if ((rc = match_qe_identity(qe.body, q.qe_report, out, &qe_status, &qe_level)) != VEIL_OK)
        goto out;

    /* The quote itself. */
    if (veil__attest_p256_from_raw(q.att_key, &att_key) != VEIL_OK) {
        rc = veil__attest_reject(out, VEIL_ATTEST_QUOTE_SIGNATURE,
                                 "attestation key is not a P-256 point");
        goto out;
    }
    rc = veil__attest_ecdsa_verify_raw(att_key, EVP_sha256(), q.signed_part, q.sig);
    if (rc != VEIL_OK) {
        if (rc == VEIL_E_AUTH)
            rc = veil__attest_reject(out, VEIL_ATTEST_QUOTE_SIGNATURE,
                                     "quote signature does not verify with the attestation key");
        goto out;
    }
    if (tdx)
        read_td_body(q.body, tmp);
    else
        read_sgx_body(q.body, tmp);

    /* TCB status. */
    enum tcb_status platform = TCB_UP_TO_DATE, module = TCB_UP_TO_DATE; /* set on success */
    const struct veil_json *plevel = NULL, *mlevel = NULL;
    if (tdx && (rc = check_tdx_module(ti.body, tmp, out, &module, &mlevel)) != VEIL_OK)
        goto out;
    if ((rc = match_tcb_level(ti.body, ti_version, tdx, &ext, tmp, out, &platform, &plevel)) !=
        VEIL_OK)
        goto out;
    enum tcb_status st = converge(converge(platform, module), qe_status);
    if (add_advisories(tmp, plevel) != VEIL_OK ||
        (mlevel != NULL && add_advisories(tmp, mlevel) != VEIL_OK) ||
        add_advisories(tmp, qe_level) != VEIL_OK) {
        rc = veil__attest_reject(out, VEIL_ATTEST_COLLATERAL_MALFORMED, "advisory IDs");
        goto out;
    }
    if (st == TCB_REVOKED) {
        rc = veil__attest_reject(out, VEIL_ATTEST_TCB_REVOKED, "TCB level revoked");
        goto out;
    }

    tmp->tee = out->tee;
    tmp->version = out->version;
    snprintf(tmp->tcb_status, sizeof(tmp->tcb_status), "%s", status_names[st]);
    memcpy(tmp->fmspc, ext.fmspc, 6);
    tmp->tcb_eval_num = (uint32_t)eval_num;
    tmp->collateral_issued = issued;
    tmp->collateral_expires = expires;
    tmp->reason = VEIL_ATTEST_OK;
    tmp->verified = true;
    snprintf(tmp->detail, sizeof(tmp->detail), "%s quote v%u verified, TCB %s", tdx ? "TDX" : "SGX",
             q.version, status_names[st]);
    *out = *tmp;
    rc = VEIL_OK;
out:
    veil_free(tmp);
    EVP_PKEY_free(att_key);
    sk_X509_pop_free(pck_chain, X509_free);
    sk_X509_pop_free(crl_chain, X509_free);
    X509_CRL_free(root_crl);
    X509_CRL_free(pck_crl);
    veil_arena_release(&arena);
    return rc;
}

veil_err veil__attest_dcap_peek(struct veil_span quote, enum veil_tee *tee, uint8_t fmspc[6],
                                bool *has_fmspc)
{
    struct quote q;
    STACK_OF(X509) *chain = NULL;
    struct veil_pck_ext ext;
    *has_fmspc = false;
    if (parse_quote(quote, &q, NULL) != VEIL_OK)
        return VEIL_E_FORMAT;
    *tee = q.body_type == 1 ? VEIL_TEE_SGX : VEIL_TEE_TDX;
    veil_err rc = veil__attest_certs_parse(q.pck_chain, &chain, NULL);
    if (rc == VEIL_E_NOMEM)
        return rc;
    if (rc == VEIL_OK && parse_pck_ext(sk_X509_value(chain, 0), &ext) == VEIL_OK) {
        memcpy(fmspc, ext.fmspc, 6);
        *has_fmspc = true;
    }
    sk_X509_pop_free(chain, X509_free);
    return VEIL_OK;
}
