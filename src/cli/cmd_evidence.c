/*
 * `veil evidence`: offline work on attestation evidence.
 *   verify      verifies evidence (a DCAP quote, an SNP report, sim evidence, or an RA-TLS
 *               certificate in PEM) against collateral and pinned roots at a given time, prints
 *               every claim, and optionally matches a policy. Exit 0 only when valid (and
 *               accepted by the policy when one is given), 1 when rejected, 2 on usage errors.
 *   sim-keygen  makes a simulation key pair (INSECURE evidence for machines without a TEE).
 *   sim-make    writes sim evidence for given report data, signed with a simulation key.
 */
#include "cli.h"
#include "veil/attest.h"

#include <getopt.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

static void help(FILE *f)
{
    fprintf(
        f,
        "usage: veil evidence verify --evidence FILE --collateral DIR --roots DIR\n"
        "                            [--now RFC3339] [--policy FILE] [--json]\n"
        "                            [--ignore-crl-freshness]\n"
        "       veil evidence sim-keygen --private FILE --public FILE\n"
        "       veil evidence sim-make --key FILE --out FILE [--report-data HEX]\n"
        "                              [--measurement HEX] [--svn N]\n\n"
        "verify: checks evidence offline (SGX quote v3, TDX quote v4/v5, SEV-SNP report,\n"
        "sim evidence, or an RA-TLS certificate in PEM) with the collateral files of DIR\n"
        "(names in docs/attest/collateral.md) and the pinned roots of DIR, at --now\n"
        "(default: the current time). Prints every claim, the TCB status and advisory\n"
        "IDs. Exit status 0 only when the evidence is valid and, with --policy, accepted.\n\n"
        "  --evidence FILE           the evidence to verify\n"
        "  --collateral DIR          collateral directory (TCB info, QE identity, CRLs, VCEK...)\n"
        "  --roots DIR               pinned roots (intel_sgx_root_ca.der, amd_ark_*.pem,\n"
        "                            sim_*.pub.pem)\n"
        "  --now TIME                verification time, RFC 3339 (e.g. 2025-07-01T00:00:00Z)\n"
        "  --policy FILE             also match the claims against this policy\n"
        "  --json                    print one JSON object instead of text\n"
        "  --ignore-crl-freshness    accept CRLs past their nextUpdate (signatures still "
        "checked)\n");
}

/* ---- Output ---- */

struct out {
    bool json;
    bool first; /* no member printed yet in the current JSON object */
};

static void json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void key_(struct out *o, const char *k)
{
    if (o->json) {
        printf("%s", o->first ? "" : ",");
        json_str(k);
        putchar(':');
        o->first = false;
    } else {
        printf("%-20s ", k);
    }
}

static void field_str(struct out *o, const char *k, const char *v)
{
    key_(o, k);
    if (o->json)
        json_str(v);
    else
        printf("%s\n", v);
}

static void field_hex(struct out *o, const char *k, const uint8_t *p, size_t n)
{
    char h[257];
    veil_hex_encode(p, n, h);
    field_str(o, k, h);
}

static void field_u64(struct out *o, const char *k, uint64_t v)
{
    key_(o, k);
    printf(o->json ? "%llu" : "%llu\n", (unsigned long long)v);
}

static void field_x64(struct out *o, const char *k, uint64_t v)
{
    char b[24];
    snprintf(b, sizeof(b), "0x%016llx", (unsigned long long)v);
    field_str(o, k, b);
}

static void field_bool(struct out *o, const char *k, bool v)
{
    key_(o, k);
    printf(o->json ? "%s" : "%s\n", v ? "true" : "false");
}

static void obj_open(struct out *o, const char *k)
{
    if (o->json) {
        key_(o, k);
        putchar('{');
        o->first = true;
    } else {
        printf("[%s]\n", k);
    }
}

static void obj_close(struct out *o)
{
    if (o->json) {
        putchar('}');
        o->first = false;
    }
}

/* The values a policy matches on, per TEE. */
static void print_measurements(struct out *o, const struct veil_attest_claims *c)
{
    obj_open(o, "measurements");
    switch (c->tee) {
    case VEIL_TEE_SGX:
        field_hex(o, "mrenclave", c->mrenclave, 32);
        field_hex(o, "mrsigner", c->mrsigner, 32);
        field_u64(o, "isv_prod_id", c->isv_prod_id);
        field_u64(o, "isv_svn", c->isv_svn);
        break;
    case VEIL_TEE_TDX:
        field_hex(o, "mrtd", c->mrtd, 48);
        for (size_t i = 0; i < 4; i++) {
            char k[8];
            snprintf(k, sizeof(k), "rtmr%zu", i);
            field_hex(o, k, c->rtmr[i], 48);
        }
        break;
    case VEIL_TEE_SNP:
        field_hex(o, "measurement", c->measurement, 48);
        field_u64(o, "guest_svn", c->guest_svn);
        break;
    case VEIL_TEE_SIM:
        field_hex(o, "measurement", c->sim_measurement, 32);
        field_u64(o, "svn", c->sim_svn);
        break;
    case VEIL_TEE_NONE:
        break;
    }
    obj_close(o);
}

/* Every other claim. */
static void print_claims(struct out *o, const struct veil_attest_claims *c)
{
    obj_open(o, "claims");
    field_hex(o, "report_data", c->report_data, 64);
    switch (c->tee) {
    case VEIL_TEE_SGX:
        field_hex(o, "attributes", c->attributes, 16);
        field_u64(o, "miscselect", c->miscselect);
        field_hex(o, "cpusvn", c->cpusvn, 16);
        break;
    case VEIL_TEE_TDX:
        field_hex(o, "tee_tcb_svn", c->tee_tcb_svn, 16);
        field_hex(o, "mrseam", c->mrseam, 48);
        field_hex(o, "mrsignerseam", c->mrsignerseam, 48);
        field_x64(o, "seam_attributes", c->seam_attributes);
        field_x64(o, "td_attributes", c->td_attributes);
        field_bool(o, "sept_ve_disable", (c->td_attributes & (1ull << 28)) != 0);
        field_x64(o, "xfam", c->xfam);
        field_hex(o, "mrconfigid", c->mrconfigid, 48);
        field_hex(o, "mrowner", c->mrowner, 48);
        field_hex(o, "mrownerconfig", c->mrownerconfig, 48);
        if (c->version >= 5) {
            field_hex(o, "tee_tcb_svn2", c->tee_tcb_svn2, 16);
            field_hex(o, "mrservicetd", c->mrservicetd, 48);
        }
        break;
    case VEIL_TEE_SNP:
        field_str(o, "product", c->product);
        field_str(o, "signer", c->vlek ? "VLEK" : "VCEK");
        field_x64(o, "policy", c->snp_policy);
        field_u64(o, "vmpl", c->vmpl);
        field_x64(o, "reported_tcb", c->reported_tcb);
        field_x64(o, "current_tcb", c->current_tcb);
        field_x64(o, "platform_info", c->platform_info);
        field_hex(o, "host_data", c->host_data, 32);
        field_hex(o, "id_key_digest", c->id_key_digest, 48);
        field_hex(o, "author_key_digest", c->author_key_digest, 48);
        field_hex(o, "family_id", c->family_id, 16);
        field_hex(o, "image_id", c->image_id, 16);
        field_hex(o, "chip_id", c->chip_id, 64);
        {
            char fw[16];
            snprintf(fw, sizeof(fw), "%u.%u.%u", c->fw_major, c->fw_minor, c->fw_build);
            field_str(o, "firmware", fw);
        }
        break;
    case VEIL_TEE_SIM:
        field_str(o, "warning", "INSECURE: simulated evidence, no TEE");
        break;
    case VEIL_TEE_NONE:
        break;
    }
    if (c->tee == VEIL_TEE_SGX || c->tee == VEIL_TEE_TDX) {
        char t[21];
        field_hex(o, "fmspc", c->fmspc, 6);
        field_u64(o, "tcb_eval_num", c->tcb_eval_num);
        veil_time_format_rfc3339(c->collateral_issued, t);
        field_str(o, "collateral_issued", t);
        veil_time_format_rfc3339(c->collateral_expires, t);
        field_str(o, "collateral_expires", t);
    }
    obj_close(o);
}

static void print_advisories(struct out *o, const struct veil_attest_claims *c)
{
    key_(o, "advisory_ids");
    if (o->json) {
        putchar('[');
        for (size_t i = 0; i < c->advisory_count; i++) {
            printf("%s", i ? "," : "");
            json_str(c->advisory_ids[i]);
        }
        putchar(']');
    } else {
        for (size_t i = 0; i < c->advisory_count; i++)
            printf("%s%s", i ? ", " : "", c->advisory_ids[i]);
        printf("%s\n", c->advisory_count ? "" : "(none)");
    }
}

/* ---- verify ---- */

static int load_evidence_and_verify(const char *evidence, const char *collateral,
                                    const char *roots_dir, int64_t now, bool ignore_crl,
                                    struct veil_attest_claims *c, struct veil_errbuf *eb,
                                    veil_err *vrc)
{
    struct veil_buf ev;
    struct veil_attest_collateral_files col;
    struct veil_attest_roots *roots = NULL;
    X509 *cert = NULL;
    veil_err rc;
    int status = 2;
    veil_buf_init(&ev, VEIL_ATTEST_MAX_EVIDENCE);
    memset(&col, 0, sizeof(col));
    if ((rc = veil_file_read_all(evidence, ev.max, &ev, eb)) != VEIL_OK ||
        (rc = veil_attest_collateral_load_dir(&col, collateral, eb)) != VEIL_OK ||
        (rc = veil_attest_roots_new(&roots)) != VEIL_OK ||
        (rc = veil_attest_roots_load_dir(roots, roots_dir, eb)) != VEIL_OK) {
        status = veil_cli_fail_rc("evidence", rc, eb);
        status = 2;
        goto out;
    }
    struct veil_attest_verify_opts opts = {now, ignore_crl};
    if (veil_span_starts_with(veil_buf_span(&ev), "-----BEGIN CERTIFICATE")) {
        BIO *bio = BIO_new_mem_buf(ev.p, (int)ev.len);
        cert = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        ERR_clear_error();
        if (cert == NULL) {
            status = veil_cli_fail("evidence", "%s: not a PEM certificate", evidence);
            goto out;
        }
        *vrc = veil_attest_ratls_verify(cert, &col.col, roots, &opts, c);
    } else {
        *vrc = veil_attest_verify(veil_buf_span(&ev), &col.col, roots, &opts, c);
    }
    if (*vrc != VEIL_OK && *vrc != VEIL_E_AUTH) {
        status =
            veil_cli_fail("evidence", "verifier failed: %s (%s)", veil_err_str(*vrc), c->detail);
        goto out;
    }
    status = 0;
out:
    X509_free(cert);
    veil_attest_roots_free(roots);
    veil_attest_collateral_files_release(&col);
    veil_buf_release(&ev);
    return status;
}

static int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {{"evidence", required_argument, NULL, 'e'},
                                         {"collateral", required_argument, NULL, 'c'},
                                         {"roots", required_argument, NULL, 'r'},
                                         {"now", required_argument, NULL, 'n'},
                                         {"policy", required_argument, NULL, 'p'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"ignore-crl-freshness", no_argument, NULL, 'i'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *evidence = NULL, *collateral = NULL, *roots = NULL, *now_s = NULL, *policy = NULL;
    bool json = false, ignore_crl = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'e':
            evidence = optarg;
            break;
        case 'c':
            collateral = optarg;
            break;
        case 'r':
            roots = optarg;
            break;
        case 'n':
            now_s = optarg;
            break;
        case 'p':
            policy = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'i':
            ignore_crl = true;
            break;
        case 'h':
            help(stdout);
            return 0;
        default:
            help(stderr);
            return 2;
        }
    }
    if (optind != argc || evidence == NULL || collateral == NULL || roots == NULL) {
        help(stderr);
        return 2;
    }
    int64_t now = veil_time_now();
    if (now_s != NULL && veil_time_parse_rfc3339(veil_span_from_str(now_s), &now) != VEIL_OK)
        return veil_cli_fail("evidence", "--now: not an RFC 3339 time: %s", now_s), 2;

    struct veil_errbuf eb = {{0}}, peb = {{0}};
    struct veil_attest_policy *pol = NULL;
    if (policy != NULL && veil_attest_policy_load(policy, &pol, &peb) != VEIL_OK)
        return veil_cli_fail("evidence", "%s", peb.msg), 2;
    struct veil_attest_claims *c = veil_calloc(1, sizeof(*c));
    if (c == NULL) {
        veil_attest_policy_free(pol);
        return veil_cli_fail("evidence", "out of memory"), 2;
    }
    veil_err vrc = VEIL_E_INTERNAL;
    int status =
        load_evidence_and_verify(evidence, collateral, roots, now, ignore_crl, c, &eb, &vrc);
    if (status != 0)
        goto out;

    const struct veil_attest_workload *w = NULL;
    veil_err prc = VEIL_OK;
    if (pol != NULL && c->verified)
        prc = veil_attest_policy_match(pol, c, now, &w, &peb);
    bool ok = c->verified && (pol == NULL || prc == VEIL_OK);

    struct out o = {json, true};
    if (json)
        putchar('{');
    field_str(&o, "tee", veil_attest_tee_name(c->tee));
    field_str(&o, "verdict", ok ? "ok" : "reject");
    field_str(&o, "reason", c->verified && !ok ? "policy" : veil_attest_reason_name(c->reason));
    field_str(&o, "detail", c->verified && !ok ? peb.msg : c->detail);
    field_u64(&o, "version", c->version);
    field_str(&o, "tcb_status", c->tcb_status);
    print_advisories(&o, c);
    if (c->verified) {
        field_bool(&o, "debug", c->debug);
        print_measurements(&o, c);
        print_claims(&o, c);
    } else if (json) {
        /* Nothing from evidence that failed verification is printed as a claim. */
        printf(",\"measurements\":{}");
    }
    if (pol != NULL) {
        obj_open(&o, "policy");
        field_str(&o, "verdict", ok ? "accept" : "reject");
        if (w != NULL) {
            field_str(&o, "workload", veil_attest_workload_name(w));
            key_(&o, "keys");
            for (size_t i = 0; i < veil_attest_workload_key_count(w); i++) {
                if (json) {
                    printf("%s", i ? "," : "[");
                    json_str(veil_attest_workload_key(w, i));
                } else {
                    printf("%s%s", i ? ", " : "", veil_attest_workload_key(w, i));
                }
            }
            printf(json ? (veil_attest_workload_key_count(w) ? "]" : "[]") : "\n");
        } else {
            field_str(&o, "reason", c->verified ? peb.msg : "evidence did not verify");
        }
        obj_close(&o);
    }
    if (json)
        printf("}\n");
    if (c->tee == VEIL_TEE_SIM && c->verified)
        fprintf(stderr, "veil evidence: WARNING: sim evidence is INSECURE (no TEE)\n");
    status = ok ? 0 : 1;
out:
    veil_free(c);
    veil_attest_policy_free(pol);
    return status;
}

/* ---- sim helpers ---- */

static int cmd_sim_keygen(int argc, char **argv)
{
    static const struct option opts[] = {{"private", required_argument, NULL, 'k'},
                                         {"public", required_argument, NULL, 'p'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *priv_path = NULL, *pub_path = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'k':
            priv_path = optarg;
            break;
        case 'p':
            pub_path = optarg;
            break;
        case 'h':
            help(stdout);
            return 0;
        default:
            help(stderr);
            return 2;
        }
    }
    if (optind != argc || priv_path == NULL || pub_path == NULL) {
        help(stderr);
        return 2;
    }
    struct veil_buf priv, pub;
    struct veil_errbuf eb = {{0}};
    veil_buf_init_secret(&priv, 4096);
    veil_buf_init(&pub, 4096);
    veil_err rc = veil_attest_sim_keygen(&priv, &pub, &eb);
    if (rc == VEIL_OK)
        rc = veil_file_write_atomic(priv_path, veil_buf_span(&priv), 0600, VEIL_ATOMIC_NO_REPLACE,
                                    &eb);
    if (rc == VEIL_OK)
        rc = veil_file_write_atomic(pub_path, veil_buf_span(&pub), 0644, VEIL_ATOMIC_NO_REPLACE,
                                    &eb);
    veil_buf_release(&priv);
    veil_buf_release(&pub);
    if (rc != VEIL_OK)
        return veil_cli_fail_rc("evidence", rc, &eb);
    printf("wrote INSECURE simulation key %s and its public key %s\n", priv_path, pub_path);
    return 0;
}

static int cmd_sim_make(int argc, char **argv)
{
    static const struct option opts[] = {{"key", required_argument, NULL, 'k'},
                                         {"out", required_argument, NULL, 'o'},
                                         {"report-data", required_argument, NULL, 'r'},
                                         {"measurement", required_argument, NULL, 'm'},
                                         {"svn", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *key_path = NULL, *out_path = NULL, *rd_hex = NULL, *m_hex = NULL;
    uint64_t svn = 0;
    uint8_t rd[64] = {0}, m[32] = {0};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'k':
            key_path = optarg;
            break;
        case 'o':
            out_path = optarg;
            break;
        case 'r':
            rd_hex = optarg;
            break;
        case 'm':
            m_hex = optarg;
            break;
        case 's':
            if (!veil_cli_parse_u64(optarg, &svn) || svn > UINT32_MAX)
                return veil_cli_fail("evidence", "--svn: not a 32-bit number"), 2;
            break;
        case 'h':
            help(stdout);
            return 0;
        default:
            help(stderr);
            return 2;
        }
    }
    if (optind != argc || key_path == NULL || out_path == NULL) {
        help(stderr);
        return 2;
    }
    if (rd_hex != NULL && veil_hex_decode(veil_span_from_str(rd_hex), rd, 64) != VEIL_OK)
        return veil_cli_fail("evidence", "--report-data: need 128 hex digits"), 2;
    struct veil_errbuf eb = {{0}};
    veil_err rc = VEIL_OK;
    if (m_hex != NULL) {
        if (veil_hex_decode(veil_span_from_str(m_hex), m, 32) != VEIL_OK)
            return veil_cli_fail("evidence", "--measurement: need 64 hex digits"), 2;
    } else {
        rc = veil_attest_sim_measure_file("/proc/self/exe", m, &eb);
    }
    struct veil_buf key, ev;
    struct veil_attest_provider *p = NULL;
    veil_buf_init_secret(&key, 16384);
    veil_buf_init(&ev, VEIL_ATTEST_MAX_EVIDENCE);
    if (rc == VEIL_OK)
        rc = veil_file_read_all(key_path, key.max, &key, &eb);
    if (rc == VEIL_OK)
        rc = veil_attest_provider_new_sim(veil_buf_span(&key), m, (uint32_t)svn, &p, &eb);
    if (rc == VEIL_OK)
        rc = veil_attest_provider_get_evidence(p, rd, &ev, NULL, &eb);
    if (rc == VEIL_OK)
        rc = veil_file_write_atomic(out_path, veil_buf_span(&ev), 0644, VEIL_ATOMIC_REPLACE, &eb);
    veil_attest_provider_free(p);
    veil_buf_release(&key);
    veil_buf_release(&ev);
    if (rc != VEIL_OK)
        return veil_cli_fail_rc("evidence", rc, &eb);
    fprintf(stderr, "veil evidence: wrote INSECURE sim evidence to %s\n", out_path);
    return 0;
}

int veil_cmd_evidence(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    if (strcmp(argv[1], "sim-keygen") == 0)
        return cmd_sim_keygen(argc - 1, argv + 1);
    if (strcmp(argv[1], "sim-make") == 0)
        return cmd_sim_make(argc - 1, argv + 1);
    fprintf(stderr, "veil evidence: unknown subcommand '%s'\n", argv[1]);
    help(stderr);
    return 2;
}
