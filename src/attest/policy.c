/*
 * The attestation policy (docs/attest/policy.md): which workloads, identified by TEE type and
 * measurements, may receive which keys, and under which conditions (debug refused unless
 * stated, accepted TCB statuses, minimum SVN, collateral age). Parsing is strict: unknown
 * fields, wrong hex lengths, empty measurement lists and duplicate workload names are refused,
 * so a typo can never widen what is accepted. A parsed policy is immutable.
 */
#include "attest_int.h"

#include <arpa/inet.h>
#include <strings.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_WORKLOADS 256
#define MAX_MEAS 64
#define MAX_KEYS 256
#define MAX_NAME 128
#define MAX_HOSTS 16
#define MAX_HOST_LEN 253
#define MAX_MIN_VERSIONS 64

static const char *const tcb_names[] = {
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
};
#define TCB_NAME_COUNT (sizeof(tcb_names) / sizeof(tcb_names[0]))

struct veil_attest_workload {
    const char *name;
    enum veil_tee tee;
    size_t n_meas;
    uint8_t (*meas)[48]; /* MRENCLAVE (32), MRTD (48), SNP MEASUREMENT (48) or sim (32) */
    size_t meas_len;
    bool has_mrsigner;
    uint8_t mrsigner[32];
    bool has_prod;
    uint16_t isv_prod_id;
    bool has_min_svn;
    uint32_t min_svn;
    bool has_rtmr[4];
    uint8_t rtmr[4][48];
    bool allow_debug;
    bool require_sept_ve_disable;
    unsigned tcb_mask;
    int64_t max_collateral_age; /* 0: no limit beyond the collateral's own nextUpdate */
    uint32_t max_vmpl;
    bool has_min_snp_tcb;
    uint8_t min_snp[5]; /* bootloader, tee, snp, microcode, fmc */
    size_t n_keys;
    const char **keys;
    size_t n_hosts;
    const char **hosts; /* names its serving certificate may carry (exact DNS names or IPs) */
    size_t n_min;
    const char **min_model; /* the lowest version of each model the workload may serve */
    int64_t *min_version;
    int64_t cert_lifetime_s; /* 0: the broker's default */
};

struct veil_attest_policy {
    struct veil_arena arena;
    size_t n;
    struct veil_attest_workload *w;
};

static veil_err perr(struct veil_errbuf *eb, const char *wname, const char *fmt, ...)
    VEIL_PRINTF(3, 4);
static veil_err perr(struct veil_errbuf *eb, const char *wname, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (wname != NULL)
        return veil_errf(eb, VEIL_E_FORMAT, "policy: workload \"%s\": %s", wname, msg);
    return veil_errf(eb, VEIL_E_FORMAT, "policy: %s", msg);
}

static veil_err hex_list(struct veil_attest_policy *p, const struct veil_json *v, size_t len,
                         struct veil_attest_workload *w, const char *key, struct veil_errbuf *eb)
{
    const struct veil_json *one = v;
    size_t n = v->type == VEIL_JSON_ARRAY ? v->n : 1;
    if (v->type != VEIL_JSON_ARRAY && v->type != VEIL_JSON_STRING)
        return perr(eb, w->name, "%s must be a hex string or a list of them", key);
    if (n == 0 || n > MAX_MEAS)
        return perr(eb, w->name, "%s must list 1 to 64 values", key);
    veil_err rc = veil_arena_allocarray(&p->arena, n, 48, 8, (void **)&w->meas);
    if (rc != VEIL_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        one = v->type == VEIL_JSON_ARRAY ? v->items[i] : v;
        if (one->type != VEIL_JSON_STRING ||
            veil_hex_decode(veil_span_make(one->str, one->str_len), w->meas[i], len) != VEIL_OK)
            return perr(eb, w->name, "%s: values must be hex of the right length", key);
    }
    w->n_meas = n;
    w->meas_len = len;
    return VEIL_OK;
}

static veil_err get_u32(const struct veil_json *v, uint32_t max, uint32_t *out)
{
    if (v->type != VEIL_JSON_NUMBER || !v->is_int || v->i < 0 || (uint64_t)v->i > max)
        return VEIL_E_FORMAT;
    *out = (uint32_t)v->i;
    return VEIL_OK;
}

bool veil_attest_host_name_ok(const char *s, size_t len)
{
    uint8_t ip[16];
    char tmp[64];
    if (len == 0 || len > MAX_HOST_LEN || memchr(s, '\0', len) != NULL)
        return false;
    if (len < sizeof(tmp)) {
        memcpy(tmp, s, len);
        tmp[len] = '\0';
        if (inet_pton(AF_INET, tmp, ip) == 1 || inet_pton(AF_INET6, tmp, ip) == 1)
            return true;
    }
    /* A DNS name: dot-separated labels of letters, digits and inner hyphens, 1..63 each. */
    size_t label = 0;
    bool digits_only = true;
    for (size_t i = 0; i <= len; i++) {
        char ch = i < len ? s[i] : '.';
        if (ch == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        bool digit = ch >= '0' && ch <= '9';
        if (!alpha && !digit && !(ch == '-' && label > 0))
            return false;
        digits_only = digits_only && !alpha && ch != '-';
        label++;
    }
    /* All-numeric dotted names that are not valid IPs ("1.2.3.999") are refused too. */
    return !digits_only;
}

/* A model name as the server's config accepts it: printable, no '/', '"' or '\\'. */
static bool model_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '/' || c == '"' || c == '\\')
            return false;
    }
    return true;
}

static veil_err parse_workload(struct veil_attest_policy *p, const struct veil_json *o,
                               struct veil_attest_workload *w, struct veil_errbuf *eb)
{
    veil_err rc;
    if (o->type != VEIL_JSON_OBJECT)
        return perr(eb, NULL, "%s", "each workload must be an object");
    const struct veil_json *name = veil_json_get(o, "name");
    const struct veil_json *tee = veil_json_get(o, "tee");
    if (name == NULL || name->type != VEIL_JSON_STRING || name->str_len == 0 ||
        name->str_len > MAX_NAME)
        return perr(eb, NULL, "%s", "workload needs a name of 1 to 128 bytes");
    w->name = name->str;
    if (tee == NULL || tee->type != VEIL_JSON_STRING)
        return perr(eb, w->name, "%s", "needs \"tee\"");
    static const enum veil_tee tees[] = {VEIL_TEE_SGX, VEIL_TEE_TDX, VEIL_TEE_SNP, VEIL_TEE_SIM};
    for (size_t i = 0; i < 4; i++)
        if (strcmp(tee->str, veil_attest_tee_name(tees[i])) == 0)
            w->tee = tees[i];
    if (w->tee == VEIL_TEE_NONE)
        return perr(eb, w->name, "unknown tee \"%s\" (sgx, tdx, snp or sim)", tee->str);
    w->tcb_mask = 1u; /* UpToDate only */
    w->require_sept_ve_disable = true;
    bool keys_seen = false, unmeasured[4] = {false, false, false, true};
    for (size_t i = 0; i < o->n; i++) {
        const char *k = o->members[i].key;
        const struct veil_json *v = o->members[i].value;
        bool sgx = w->tee == VEIL_TEE_SGX, tdx = w->tee == VEIL_TEE_TDX;
        bool snp = w->tee == VEIL_TEE_SNP, sim = w->tee == VEIL_TEE_SIM;
        rc = VEIL_OK; /* branches that only set a flag leave it so */
        if (strcmp(k, "name") == 0 || strcmp(k, "tee") == 0) {
            continue;
        } else if (strcmp(k, "mrenclave") == 0 && sgx) {
            rc = hex_list(p, v, 32, w, k, eb);
        } else if ((strcmp(k, "mrtd") == 0 && tdx) || (strcmp(k, "measurement") == 0 && snp)) {
            rc = hex_list(p, v, 48, w, k, eb);
        } else if (strcmp(k, "measurement") == 0 && sim) {
            rc = hex_list(p, v, 32, w, k, eb);
        } else if (strcmp(k, "mrsigner") == 0 && sgx) {
            rc = v->type == VEIL_JSON_STRING
                     ? veil_hex_decode(veil_span_make(v->str, v->str_len), w->mrsigner, 32)
                     : VEIL_E_FORMAT;
            if (rc != VEIL_OK)
                return perr(eb, w->name, "%s", "mrsigner must be 64 hex digits");
            w->has_mrsigner = true;
        } else if (strcmp(k, "isv_prod_id") == 0 && sgx) {
            uint32_t x;
            if (get_u32(v, 65535, &x) != VEIL_OK)
                return perr(eb, w->name, "%s", "isv_prod_id must be 0..65535");
            w->isv_prod_id = (uint16_t)x;
            w->has_prod = true;
        } else if (strcmp(k, "min_svn") == 0 && !tdx) {
            if (get_u32(v, UINT32_MAX, &w->min_svn) != VEIL_OK)
                return perr(eb, w->name, "%s", "min_svn must be a non-negative integer");
            w->has_min_svn = true;
        } else if (tdx && strncmp(k, "rtmr", 4) == 0 && k[4] >= '0' && k[4] <= '3' && !k[5]) {
            size_t r = (size_t)(k[4] - '0');
            if (v->type != VEIL_JSON_STRING ||
                veil_hex_decode(veil_span_make(v->str, v->str_len), w->rtmr[r], 48) != VEIL_OK)
                return perr(eb, w->name, "%s must be 96 hex digits", k);
            w->has_rtmr[r] = true;
        } else if (tdx && strcmp(k, "allow_unmeasured_rtmrs") == 0) {
            if (v->type != VEIL_JSON_ARRAY || v->n == 0 || v->n > 4)
                return perr(eb, w->name, "%s", "allow_unmeasured_rtmrs must list 0..3");
            for (size_t j = 0; j < v->n; j++) {
                uint32_t r;
                if (get_u32(v->items[j], 3, &r) != VEIL_OK)
                    return perr(eb, w->name, "%s", "allow_unmeasured_rtmrs must list 0..3");
                unmeasured[r] = true;
            }
        } else if (strcmp(k, "names") == 0) {
            if (v->type != VEIL_JSON_ARRAY || v->n == 0 || v->n > MAX_HOSTS)
                return perr(eb, w->name, "%s", "names must list 1 to 16 DNS names or IPs");
            if ((rc = veil_arena_allocarray(&p->arena, v->n + 1, sizeof(char *), 8,
                                            (void **)&w->hosts)) != VEIL_OK)
                return rc;
            for (size_t j = 0; j < v->n; j++) {
                const struct veil_json *h = v->items[j];
                if (h->type != VEIL_JSON_STRING || !veil_attest_host_name_ok(h->str, h->str_len))
                    return perr(eb, w->name, "%s",
                                "names must be exact DNS names or IP addresses (no wildcards, "
                                "letters, digits, '-' and '.' only)");
                for (size_t q = 0; q < j; q++)
                    if (strcasecmp(w->hosts[q], h->str) == 0)
                        return perr(eb, w->name, "name \"%s\" is listed twice", h->str);
                w->hosts[j] = h->str;
            }
            w->n_hosts = v->n;
        } else if (strcmp(k, "min_versions") == 0) {
            if (v->type != VEIL_JSON_OBJECT || v->n == 0 || v->n > MAX_MIN_VERSIONS)
                return perr(eb, w->name, "%s",
                            "min_versions must map 1 to 64 model names to versions");
            if ((rc = veil_arena_allocarray(&p->arena, v->n, sizeof(char *), 8,
                                            (void **)&w->min_model)) != VEIL_OK ||
                (rc = veil_arena_allocarray(&p->arena, v->n, sizeof(int64_t), 8,
                                            (void **)&w->min_version)) != VEIL_OK)
                return rc;
            for (size_t j = 0; j < v->n; j++) {
                const char *model = v->members[j].key;
                const struct veil_json *mv = v->members[j].value;
                if (!model_name_ok(model))
                    return perr(eb, w->name, "%s",
                                "min_versions: model names are 1..255 printable characters "
                                "without '/', '\"' or '\\'");
                if (mv->type != VEIL_JSON_NUMBER || !mv->is_int || mv->i < 0)
                    return perr(eb, w->name, "min_versions: \"%s\" needs a version >= 0", model);
                w->min_model[j] = model;
                w->min_version[j] = mv->i;
            }
            w->n_min = v->n;
        } else if (strcmp(k, "cert_lifetime_s") == 0) {
            if (v->type != VEIL_JSON_NUMBER || !v->is_int ||
                v->i < VEIL_ATTEST_CERT_LIFETIME_MIN_S || v->i > VEIL_ATTEST_CERT_LIFETIME_MAX_S)
                return perr(eb, w->name, "cert_lifetime_s must be an integer from %d to %d",
                            VEIL_ATTEST_CERT_LIFETIME_MIN_S, VEIL_ATTEST_CERT_LIFETIME_MAX_S);
            w->cert_lifetime_s = v->i;
        } else if (strcmp(k, "allow_debug") == 0) {
            if (v->type != VEIL_JSON_BOOL)
                return perr(eb, w->name, "%s", "allow_debug must be true or false");
            w->allow_debug = v->b;
        } else if (strcmp(k, "require_sept_ve_disable") == 0 && tdx) {
            if (v->type != VEIL_JSON_BOOL)
                return perr(eb, w->name, "%s", "require_sept_ve_disable must be a boolean");
            w->require_sept_ve_disable = v->b;
        } else if (strcmp(k, "tcb_status") == 0 && (sgx || tdx)) {
            if (v->type != VEIL_JSON_ARRAY || v->n == 0)
                return perr(eb, w->name, "%s", "tcb_status must be a non-empty list");
            w->tcb_mask = 0;
            for (size_t j = 0; j < v->n; j++) {
                size_t t = TCB_NAME_COUNT;
                if (v->items[j]->type == VEIL_JSON_STRING)
                    for (t = 0; t < TCB_NAME_COUNT; t++)
                        if (strcmp(v->items[j]->str, tcb_names[t]) == 0)
                            break;
                if (t == TCB_NAME_COUNT)
                    return perr(eb, w->name, "%s", "unknown TCB status in tcb_status");
                w->tcb_mask |= 1u << t;
            }
        } else if (strcmp(k, "max_collateral_age_s") == 0 && (sgx || tdx)) {
            uint32_t x;
            if (get_u32(v, UINT32_MAX, &x) != VEIL_OK || x == 0)
                return perr(eb, w->name, "%s", "max_collateral_age_s must be a positive integer");
            w->max_collateral_age = x;
        } else if (strcmp(k, "max_vmpl") == 0 && snp) {
            if (get_u32(v, 3, &w->max_vmpl) != VEIL_OK)
                return perr(eb, w->name, "%s", "max_vmpl must be 0..3");
        } else if (strcmp(k, "min_tcb") == 0 && snp) {
            static const char *const parts[] = {"bootloader", "tee", "snp", "microcode", "fmc"};
            if (v->type != VEIL_JSON_OBJECT)
                return perr(eb, w->name, "%s", "min_tcb must be an object");
            for (size_t j = 0; j < v->n; j++) {
                size_t t = 0;
                uint32_t x;
                while (t < 5 && strcmp(v->members[j].key, parts[t]) != 0)
                    t++;
                if (t == 5 || get_u32(v->members[j].value, 255, &x) != VEIL_OK)
                    return perr(eb, w->name, "min_tcb: bad field \"%s\"", v->members[j].key);
                w->min_snp[t] = (uint8_t)x;
            }
            w->has_min_snp_tcb = true;
        } else if (strcmp(k, "keys") == 0) {
            if (v->type != VEIL_JSON_ARRAY || v->n > MAX_KEYS)
                return perr(eb, w->name, "%s", "keys must be a list of key IDs");
            if ((rc = veil_arena_allocarray(&p->arena, v->n + 1, sizeof(char *), 8,
                                            (void **)&w->keys)) != VEIL_OK)
                return rc;
            for (size_t j = 0; j < v->n; j++) {
                if (v->items[j]->type != VEIL_JSON_STRING || v->items[j]->str_len == 0 ||
                    v->items[j]->str_len > VEIL_LIMIT_SEAL_KEY_ID)
                    return perr(eb, w->name, "%s", "key IDs must be 1..128 byte strings");
                w->keys[j] = v->items[j]->str;
            }
            w->n_keys = v->n;
            keys_seen = true;
        } else {
            return perr(eb, w->name, "unknown or inapplicable field \"%s\"", k);
        }
        if (rc != VEIL_OK)
            return rc;
    }
    if (!keys_seen)
        return perr(eb, w->name, "%s", "needs \"keys\" (may be an empty list)");
    if (w->tee == VEIL_TEE_SGX && w->n_meas == 0 && !(w->has_mrsigner && w->has_prod))
        return perr(eb, w->name, "%s", "needs mrenclave, or mrsigner with isv_prod_id");
    if (w->tee != VEIL_TEE_SGX && w->n_meas == 0)
        return perr(eb, w->name, "%s", "needs a measurement list");
    /*
     * MRTD measures only the TD's firmware: the kernel, its command line and the initrd are in
     * RTMR1 and RTMR2 (RTMR0: the firmware's configuration). A TD naming only MRTD would let
     * any kernel in, so each of RTMR0-2 must be named unless the policy says it is not.
     */
    for (size_t r = 0; w->tee == VEIL_TEE_TDX && r < 4; r++)
        if (!w->has_rtmr[r] && !unmeasured[r])
            return perr(eb, w->name,
                        "needs rtmr%zu (or \"allow_unmeasured_rtmrs\": [%zu] to accept any "
                        "value)",
                        r, r);
    /* AMD publishes no TCB status: without a minimum, any firmware, however old, passes. */
    if (w->tee == VEIL_TEE_SNP && !w->has_min_snp_tcb)
        return perr(eb, w->name, "%s", "needs min_tcb (the lowest firmware versions accepted)");
    return VEIL_OK;
}

veil_err veil_attest_policy_parse(struct veil_span text, struct veil_attest_policy **out,
                                  struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_attest_policy *p = NULL;
    struct veil_json *doc = NULL;
    *out = NULL;
    if (text.len > VEIL_LIMIT_CONFIG_FILE)
        return veil_errf(eb, VEIL_E_LIMIT, "policy larger than %u bytes", VEIL_LIMIT_CONFIG_FILE);
    if ((p = veil_calloc(1, sizeof(*p))) == NULL)
        return VEIL_E_NOMEM;
    veil_arena_init(&p->arena, 16u << 10, 16u * VEIL_LIMIT_CONFIG_FILE);
    if ((rc = veil_json_parse(text, &p->arena, &doc, eb)) != VEIL_OK) {
        rc = veil_err_prefix(eb, rc, "policy");
        goto out;
    }
    if (doc->type != VEIL_JSON_OBJECT) {
        rc = perr(eb, NULL, "%s", "top level must be an object");
        goto out;
    }
    const struct veil_json *ws = NULL;
    bool have_version = false;
    for (size_t i = 0; i < doc->n; i++) {
        const char *k = doc->members[i].key;
        const struct veil_json *v = doc->members[i].value;
        if (strcmp(k, "version") == 0) {
            if (v->type != VEIL_JSON_NUMBER || !v->is_int || v->i != 1) {
                rc = perr(eb, NULL, "%s", "version must be 1");
                goto out;
            }
            have_version = true;
        } else if (strcmp(k, "workloads") == 0) {
            ws = v;
        } else {
            rc = perr(eb, NULL, "unknown field \"%s\"", k);
            goto out;
        }
    }
    if (!have_version || ws == NULL || ws->type != VEIL_JSON_ARRAY || ws->n > MAX_WORKLOADS) {
        rc = perr(eb, NULL, "%s", "needs \"version\": 1 and a \"workloads\" list");
        goto out;
    }
    if (ws->n > 0 &&
        (rc = veil_arena_allocarray(&p->arena, ws->n, sizeof(*p->w), 8, (void **)&p->w)) != VEIL_OK)
        goto out;
    for (size_t i = 0; i < ws->n; i++) {
        if ((rc = parse_workload(p, ws->items[i], &p->w[i], eb)) != VEIL_OK)
            goto out;
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->w[j].name, p->w[i].name) == 0) {
                rc = perr(eb, p->w[i].name, "%s", "duplicate workload name");
                goto out;
            }
        p->n = i + 1;
    }
    *out = p;
    p = NULL;
    rc = VEIL_OK;
out:
    veil_attest_policy_free(p);
    return rc;
}

veil_err veil_attest_policy_load(const char *path, struct veil_attest_policy **out,
                                 struct veil_errbuf *eb)
{
    struct veil_buf b;
    *out = NULL;
    veil_buf_init(&b, VEIL_LIMIT_CONFIG_FILE);
    veil_err rc = veil_file_read_all(path, b.max, &b, eb);
    if (rc == VEIL_OK)
        rc = veil_attest_policy_parse(veil_buf_span(&b), out, eb);
    veil_buf_release(&b);
    if (rc != VEIL_OK)
        VEIL_LOG_ERR("policy %s refused: %s", path, veil_errbuf_msg(eb, rc));
    return rc;
}

void veil_attest_policy_free(struct veil_attest_policy *policy)
{
    if (policy == NULL)
        return;
    veil_arena_release(&policy->arena);
    veil_free(policy);
}

/* The first condition of w that c fails, or NULL when c satisfies w. */
static const char *check(const struct veil_attest_workload *w, const struct veil_attest_claims *c,
                         int64_t now)
{
    if (c->tee != w->tee)
        return "different TEE";
    if (c->debug && !w->allow_debug)
        return "debug mode is refused";
    const uint8_t *m = c->tee == VEIL_TEE_SGX   ? c->mrenclave
                       : c->tee == VEIL_TEE_TDX ? c->mrtd
                       : c->tee == VEIL_TEE_SNP ? c->measurement
                                                : c->sim_measurement;
    if (w->n_meas > 0) {
        bool found = false;
        for (size_t i = 0; i < w->n_meas && !found; i++)
            found = memcmp(w->meas[i], m, w->meas_len) == 0;
        if (!found)
            return "measurement not listed";
    }
    uint32_t svn = c->tee == VEIL_TEE_SGX   ? c->isv_svn
                   : c->tee == VEIL_TEE_SNP ? c->guest_svn
                                            : c->sim_svn;
    if (w->has_min_svn && svn < w->min_svn)
        return "SVN below the minimum";
    if (w->has_mrsigner && memcmp(w->mrsigner, c->mrsigner, 32) != 0)
        return "MRSIGNER differs";
    if (w->has_prod && w->isv_prod_id != c->isv_prod_id)
        return "ISV product ID differs";
    for (size_t r = 0; r < 4; r++)
        if (w->has_rtmr[r] && memcmp(w->rtmr[r], c->rtmr[r], 48) != 0)
            return "RTMR differs";
    if (c->tee == VEIL_TEE_TDX && w->require_sept_ve_disable &&
        (c->td_attributes & (1ull << 28)) == 0)
        return "SEPT_VE_DISABLE not set";
    if (c->tee == VEIL_TEE_SGX || c->tee == VEIL_TEE_TDX) {
        size_t t = 0;
        while (t < TCB_NAME_COUNT && strcmp(c->tcb_status, tcb_names[t]) != 0)
            t++;
        if (t == TCB_NAME_COUNT || (w->tcb_mask & (1u << t)) == 0)
            return "TCB status not accepted";
        if (now > c->collateral_expires)
            return "collateral expired";
        if (w->max_collateral_age > 0 && now - c->collateral_issued > w->max_collateral_age)
            return "collateral older than max_collateral_age_s";
    }
    if (c->tee == VEIL_TEE_SNP) {
        if (c->vmpl > w->max_vmpl)
            return "VMPL above max_vmpl";
        if (w->has_min_snp_tcb) {
            uint8_t b[8];
            for (size_t i = 0; i < 8; i++)
                b[i] = (uint8_t)(c->reported_tcb >> (8 * i));
            bool turin = strcmp(c->product, "Turin") == 0;
            uint8_t have[5] = {turin ? b[1] : b[0], turin ? b[2] : b[1], turin ? b[3] : b[6], b[7],
                               turin ? b[0] : 0};
            for (size_t i = 0; i < 5; i++)
                if (have[i] < w->min_snp[i])
                    return "REPORTED_TCB below min_tcb";
        }
    }
    return NULL;
}

veil_err veil_attest_policy_match(const struct veil_attest_policy *policy,
                                  const struct veil_attest_claims *claims, int64_t now,
                                  const struct veil_attest_workload **out, struct veil_errbuf *eb)
{
    *out = NULL;
    if (!claims->verified || claims->reason != VEIL_ATTEST_OK)
        return veil_errf(eb, VEIL_E_INVALID, "evidence did not verify");
    size_t candidates = 0;
    const char *first_why = NULL, *first_name = NULL;
    for (size_t i = 0; i < policy->n; i++) {
        const struct veil_attest_workload *w = &policy->w[i];
        if (w->tee != claims->tee)
            continue;
        const char *why = check(w, claims, now);
        if (why == NULL) {
            *out = w;
            return VEIL_OK;
        }
        if (candidates++ == 0) {
            first_why = why;
            first_name = w->name;
        }
    }
    if (candidates == 0)
        return veil_errf(eb, VEIL_E_REJECTED, "no workload in the policy for tee %s",
                         veil_attest_tee_name(claims->tee));
    if (candidates == 1)
        return veil_errf(eb, VEIL_E_REJECTED, "workload \"%s\": %s", first_name, first_why);
    return veil_errf(eb, VEIL_E_REJECTED, "no workload matches (first, \"%s\": %s)", first_name,
                     first_why);
}

size_t veil_attest_policy_workload_count(const struct veil_attest_policy *policy)
{
    return policy->n;
}

const struct veil_attest_workload *
veil_attest_policy_workload(const struct veil_attest_policy *policy, size_t i)
{
    return i < policy->n ? &policy->w[i] : NULL;
}

const char *veil_attest_workload_name(const struct veil_attest_workload *w)
{
    return w->name;
}

enum veil_tee veil_attest_workload_tee(const struct veil_attest_workload *w)
{
    return w->tee;
}

size_t veil_attest_workload_key_count(const struct veil_attest_workload *w)
{
    return w->n_keys;
}

const char *veil_attest_workload_key(const struct veil_attest_workload *w, size_t i)
{
    return i < w->n_keys ? w->keys[i] : NULL;
}

size_t veil_attest_workload_host_count(const struct veil_attest_workload *w)
{
    return w->n_hosts;
}

const char *veil_attest_workload_host(const struct veil_attest_workload *w, size_t i)
{
    return i < w->n_hosts ? w->hosts[i] : NULL;
}

bool veil_attest_workload_grants_host(const struct veil_attest_workload *w, const char *host)
{
    for (size_t i = 0; i < w->n_hosts; i++)
        if (strcasecmp(w->hosts[i], host) == 0)
            return true;
    return false;
}

size_t veil_attest_workload_min_version_count(const struct veil_attest_workload *w)
{
    return w->n_min;
}

const char *veil_attest_workload_min_version(const struct veil_attest_workload *w, size_t i,
                                             int64_t *version)
{
    if (i >= w->n_min)
        return NULL;
    *version = w->min_version[i];
    return w->min_model[i];
}

int64_t veil_attest_workload_cert_lifetime(const struct veil_attest_workload *w)
{
    return w->cert_lifetime_s;
}

bool veil_attest_workload_may_receive(const struct veil_attest_workload *w, const char *key_id)
{
    for (size_t i = 0; i < w->n_keys; i++)
        if (strcmp(w->keys[i], key_id) == 0)
            return true;
    return false;
}
