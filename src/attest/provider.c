/*
 * Evidence providers on the workload side. `sim` signs software evidence with a local key
 * (INSECURE, docs/attest/sim.md). `gramine` uses Gramine's /dev/attestation pseudo-files inside
 * an SGX enclave. `tsm` uses the Linux configfs-tsm report interface of TDX and SEV-SNP guests.
 * The hardware providers take a root path so tests can run them against a prepared directory.
 */
#include "attest_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

enum provider_kind { PROV_SIM, PROV_GRAMINE, PROV_TSM };

struct veil_attest_provider {
    enum provider_kind kind;
    char root[1024];
    EVP_PKEY *sim_key;
    uint8_t measurement[32];
    uint32_t svn;
    uint64_t counter; /* tsm entry names */
};

static veil_err new_provider(enum provider_kind kind, const char *root,
                             struct veil_attest_provider **out, struct veil_errbuf *eb)
{
    *out = NULL;
    struct veil_attest_provider *p = veil_calloc(1, sizeof(*p));
    if (p == NULL)
        return VEIL_E_NOMEM;
    p->kind = kind;
    if (root != NULL && (size_t)snprintf(p->root, sizeof(p->root), "%s", root) >= sizeof(p->root)) {
        veil_free(p);
        return veil_errf(eb, VEIL_E_INVALID, "provider root path too long");
    }
    *out = p;
    return VEIL_OK;
}

veil_err veil_attest_provider_new_sim(struct veil_span key_pem, const uint8_t measurement[32],
                                      uint32_t svn, struct veil_attest_provider **out,
                                      struct veil_errbuf *eb)
{
    struct veil_attest_provider *p = NULL;
    veil_err rc = new_provider(PROV_SIM, NULL, &p, eb);
    if (rc != VEIL_OK)
        return rc;
    BIO *bio = key_pem.len > 0 && key_pem.len <= INT32_MAX
                   ? BIO_new_mem_buf(key_pem.p, (int)key_pem.len)
                   : NULL;
    if (bio != NULL)
        p->sim_key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ERR_clear_error();
    if (p->sim_key == NULL || EVP_PKEY_get_id(p->sim_key) != EVP_PKEY_ED25519) {
        veil_attest_provider_free(p);
        return veil_errf(eb, VEIL_E_FORMAT, "sim key is not an Ed25519 private key in PEM");
    }
    memcpy(p->measurement, measurement, 32);
    p->svn = svn;
    VEIL_LOG_WARN("sim attestation provider in use: evidence is INSECURE (no TEE)");
    *out = p;
    return VEIL_OK;
}

veil_err veil_attest_provider_new_gramine(const char *root, struct veil_attest_provider **out,
                                          struct veil_errbuf *eb)
{
    return new_provider(PROV_GRAMINE, root, out, eb);
}

veil_err veil_attest_provider_new_tsm(const char *root, struct veil_attest_provider **out,
                                      struct veil_errbuf *eb)
{
    return new_provider(PROV_TSM, root, out, eb);
}

const char *veil_attest_provider_kind(const struct veil_attest_provider *p)
{
    return p->kind == PROV_SIM ? "sim" : p->kind == PROV_GRAMINE ? "gramine" : "tsm";
}

void veil_attest_provider_free(struct veil_attest_provider *p)
{
    if (p == NULL)
        return;
    EVP_PKEY_free(p->sim_key);
    veil_memzero(p, sizeof(*p));
    veil_free(p);
}

static veil_err errno_rc(int e)
{
    return e == ENOENT ? VEIL_E_NOTFOUND : (e == EACCES || e == EPERM) ? VEIL_E_PERM : VEIL_E_IO;
}

static veil_err write_file(const char *path, const void *p, size_t n, struct veil_errbuf *eb)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return veil_errf(eb, errno_rc(errno), "cannot open %s: %s", path, strerror(errno));
    const uint8_t *q = p;
    while (n > 0) {
        ssize_t w = write(fd, q, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            return veil_errf(eb, VEIL_E_IO, "cannot write %s: %s", path, strerror(e));
        }
        q += w;
        n -= (size_t)w;
    }
    if (close(fd) != 0)
        return veil_errf(eb, VEIL_E_IO, "cannot write %s: %s", path, strerror(errno));
    return VEIL_OK;
}

static veil_err read_generation(const char *dir, bool *have, uint64_t *gen)
{
    char path[1200];
    struct veil_buf b;
    *have = false;
    snprintf(path, sizeof(path), "%s/generation", dir);
    veil_buf_init(&b, 64);
    veil_err rc = veil_file_read_all(path, b.max, &b, NULL);
    if (rc == VEIL_E_NOTFOUND) {
        veil_buf_release(&b);
        return VEIL_OK;
    }
    if (rc != VEIL_OK) {
        veil_buf_release(&b);
        return rc;
    }
    struct veil_span s = veil_span_trim(veil_buf_span(&b));
    uint64_t v = 0;
    rc = s.len == 0 ? VEIL_E_FORMAT : VEIL_OK;
    for (size_t i = 0; i < s.len && rc == VEIL_OK; i++) {
        if (s.p[i] < '0' || s.p[i] > '9' || v > UINT64_MAX / 10 - 1)
            rc = VEIL_E_FORMAT;
        else
            v = v * 10 + (uint64_t)(s.p[i] - '0');
    }
    veil_buf_release(&b);
    if (rc == VEIL_OK) {
        *have = true;
        *gen = v;
    }
    return rc;
}

static veil_err tsm_get(struct veil_attest_provider *p, const uint8_t rd[64], struct veil_buf *out,
                        struct veil_buf *aux, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    char dir[1100], path[1200];
    bool created = false;
    snprintf(dir, sizeof(dir), "%s/veil-%ld-%llu", p->root, (long)getpid(),
             (unsigned long long)p->counter++);
    if (mkdir(dir, 0700) == 0) {
        created = true;
    } else if (errno != EEXIST) {
        return veil_errf(eb, errno_rc(errno), "cannot create report entry %s: %s", dir,
                         strerror(errno));
    }
    bool have0, have1;
    uint64_t g0 = 0, g1 = 0;
    if ((rc = read_generation(dir, &have0, &g0)) != VEIL_OK) {
        rc = veil_errf(eb, rc, "cannot read %s/generation", dir);
        goto out;
    }
    snprintf(path, sizeof(path), "%s/inblob", dir);
    if ((rc = write_file(path, rd, 64, eb)) != VEIL_OK)
        goto out;
    snprintf(path, sizeof(path), "%s/outblob", dir);
    size_t before = out->len;
    if ((rc = veil_file_read_all(path, VEIL_ATTEST_MAX_EVIDENCE, out, eb)) != VEIL_OK)
        goto out;
    if ((rc = read_generation(dir, &have1, &g1)) != VEIL_OK) {
        rc = veil_errf(eb, rc, "cannot read %s/generation", dir);
        goto out;
    }
    /* Our single write to inblob may advance generation by one; more means a race. */
    if (have0 && have1 && (g1 < g0 || g1 - g0 > 1)) {
        out->len = before;
        rc = veil_errf(eb, VEIL_E_STATE, "report entry %s changed by another writer", dir);
        goto out;
    }
    if (aux != NULL) {
        snprintf(path, sizeof(path), "%s/auxblob", dir);
        struct stat st;
        if (stat(path, &st) == 0 &&
            (rc = veil_file_read_all(path, VEIL_ATTEST_MAX_EVIDENCE, aux, eb)) != VEIL_OK)
            goto out;
    }
    rc = VEIL_OK;
out:
    if (created && rmdir(dir) != 0)
        VEIL_LOG_WARN("cannot remove report entry %s: %s", dir, strerror(errno));
    return rc;
}

/* Only DCAP quotes are verifiable here; an EPID or "none" enclave is refused up front. */
static veil_err gramine_check_type(const struct veil_attest_provider *p, struct veil_errbuf *eb)
{
    char path[1200];
    struct veil_buf b;
    snprintf(path, sizeof(path), "%s/dev/attestation/attestation_type", p->root);
    veil_buf_init(&b, 64);
    veil_err rc = veil_file_read_all(path, b.max, &b, NULL);
    if (rc == VEIL_OK && !veil_span_eq_str(veil_span_trim(veil_buf_span(&b)), "dcap"))
        rc = veil_errf(eb, VEIL_E_UNSUPPORTED,
                       "Gramine attestation type is '%.*s', not 'dcap' (sgx.remote_attestation)",
                       (int)(b.len > 16 ? 16 : b.len), (const char *)b.p);
    else
        rc = VEIL_OK; /* older Gramine without the file: the quote tells */
    veil_buf_release(&b);
    return rc;
}

veil_err veil_attest_provider_get_evidence(struct veil_attest_provider *p,
                                           const uint8_t report_data[VEIL_ATTEST_REPORT_DATA_LEN],
                                           struct veil_buf *out, struct veil_buf *aux,
                                           struct veil_errbuf *eb)
{
    char path[1200];
    veil_err rc;
    switch (p->kind) {
    case PROV_SIM:
        rc = veil__attest_sim_sign(p->sim_key, p->measurement, p->svn, report_data, out);
        return rc == VEIL_OK ? VEIL_OK : veil_errf(eb, rc, "cannot sign sim evidence");
    case PROV_GRAMINE:
        if ((rc = gramine_check_type(p, eb)) != VEIL_OK)
            return rc;
        snprintf(path, sizeof(path), "%s/dev/attestation/user_report_data", p->root);
        if ((rc = write_file(path, report_data, VEIL_ATTEST_REPORT_DATA_LEN, eb)) != VEIL_OK)
            return rc;
        snprintf(path, sizeof(path), "%s/dev/attestation/quote", p->root);
        return veil_file_read_all(path, VEIL_ATTEST_MAX_EVIDENCE, out, eb);
    case PROV_TSM:
        return tsm_get(p, report_data, out, aux, eb);
    }
    return VEIL_E_INTERNAL;
}
