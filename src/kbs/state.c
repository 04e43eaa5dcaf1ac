/*
 * `veil kbs init`: creates a broker state directory. The master key is the only secret kept in
 * the clear (mode 0600, in a 0700 directory); the CA and TLS private keys and the key store are
 * sealed under it. The administrator's credentials (admin.pem, admin.key) are written for the
 * operator to take away.
 */
#include "kbs_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = veil_malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static veil_err write_file(const char *dir, const char *name, struct veil_span data, unsigned mode,
                           struct veil_errbuf *eb)
{
    char *p = join(dir, name);
    veil_err rc = p == NULL ? VEIL_E_NOMEM
                            : veil_file_write_atomic(p, data, mode, VEIL_ATOMIC_NO_REPLACE, eb);
    veil_free(p);
    return rc;
}

static veil_err write_cert(const char *dir, const char *name, X509 *c, struct veil_errbuf *eb)
{
    struct veil_buf b;
    veil_buf_init(&b, 65536);
    veil_err rc = veil__kbs_cert_pem(c, &b);
    if (rc == VEIL_OK)
        rc = write_file(dir, name, veil_buf_span(&b), 0644, eb);
    veil_buf_release(&b);
    return rc;
}

static veil_err write_sealed_key(const char *dir, const char *name, const uint8_t master[32],
                                 EVP_PKEY *k, struct veil_errbuf *eb)
{
    struct veil_buf b;
    char *p = join(dir, name);
    veil_buf_init_secret(&b, 65536);
    veil_err rc = p == NULL ? VEIL_E_NOMEM : veil__kbs_key_pem(k, &b);
    if (rc == VEIL_OK)
        rc = veil__kbs_blob_store(master, name, p, veil_buf_span(&b), eb);
    veil_buf_release(&b);
    veil_free(p);
    return rc;
}

veil_err veil_kbs_init(const char *dir, const char *const *hosts, struct veil_errbuf *eb)
{
    static const char *const default_hosts[] = {"localhost", "127.0.0.1", NULL};
    veil_err rc = VEIL_E_INTERNAL;
    uint8_t master[32];
    EVP_PKEY *sca_key = NULL, *aca_key = NULL, *bca_key = NULL, *broker_key = NULL,
             *admin_key = NULL;
    X509 *sca = NULL, *aca = NULL, *bca = NULL, *broker = NULL, *admin = NULL;
    char *mpath = join(dir, "master.key");
    struct veil__kbs_store *st = NULL;
    struct veil_buf pem;
    veil_buf_init_secret(&pem, 65536);
    if (mpath == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "out of memory");
    if (access(mpath, F_OK) == 0) {
        rc = veil_errf(eb, VEIL_E_EXISTS, "%s: a broker state exists here already", dir);
        goto out;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = veil_errf(eb, VEIL_E_IO, "%s: %s", dir, strerror(errno));
        goto out;
    }
    /*
     * Three CAs, each signing one kind of certificate: the broker CA only the broker's own TLS
     * certificate, the serving CA only workloads' serving certificates, the admin CA only
     * administrators. An admitted workload's serving certificate is then never a broker
     * certificate to the broker's clients, which pin the broker CA.
     */
    if (veil_random_bytes(master, sizeof(master)) != VEIL_OK ||
        veil__kbs_new_key(&sca_key) != VEIL_OK || veil__kbs_new_key(&aca_key) != VEIL_OK ||
        veil__kbs_new_key(&bca_key) != VEIL_OK || veil__kbs_new_key(&broker_key) != VEIL_OK ||
        veil__kbs_new_key(&admin_key) != VEIL_OK ||
        veil__kbs_make_ca(sca_key, "Veil serving CA", &sca) != VEIL_OK ||
        veil__kbs_make_ca(aca_key, "Veil admin CA", &aca) != VEIL_OK ||
        veil__kbs_make_ca(bca_key, "Veil broker CA", &bca) != VEIL_OK) {
        rc = veil_crypto_openssl_err(eb, VEIL_E_CRYPTO, "cannot make the broker's keys");
        goto out;
    }
    if (veil__kbs_issue(bca, bca_key, broker_key, "Veil key broker",
                        hosts != NULL ? hosts : default_hosts, 10L * 365 * 86400,
                        VEIL_KBS_CERT_BROKER, &broker) != VEIL_OK) {
        rc = veil_errf(eb, VEIL_E_INVALID,
                       "cannot issue the broker's certificate (a --host that is not an exact DNS "
                       "name or IP address?)");
        goto out;
    }
    if (veil__kbs_issue(aca, aca_key, admin_key, "admin", NULL, 10L * 365 * 86400,
                        VEIL_KBS_CERT_CLIENT, &admin) != VEIL_OK) {
        rc = veil_crypto_openssl_err(eb, VEIL_E_CRYPTO, "cannot make the broker's keys");
        goto out;
    }
    rc = write_file(dir, "master.key", veil_span_make(master, 32), 0600, eb);
    if (rc == VEIL_OK)
        rc = write_cert(dir, "serving-ca.pem", sca, eb);
    if (rc == VEIL_OK)
        rc = write_sealed_key(dir, "serving-ca.key", master, sca_key, eb);
    if (rc == VEIL_OK)
        rc = write_cert(dir, "broker-ca.pem", bca, eb);
    if (rc == VEIL_OK)
        rc = write_sealed_key(dir, "broker-ca.key", master, bca_key, eb);
    if (rc == VEIL_OK)
        rc = write_cert(dir, "admin-ca.pem", aca, eb);
    if (rc == VEIL_OK)
        rc = write_cert(dir, "broker.pem", broker, eb);
    if (rc == VEIL_OK)
        rc = write_sealed_key(dir, "broker.key", master, broker_key, eb);
    if (rc == VEIL_OK)
        rc = write_cert(dir, "admin.pem", admin, eb);
    if (rc == VEIL_OK)
        rc = veil__kbs_key_pem(admin_key, &pem);
    if (rc == VEIL_OK)
        rc = write_file(dir, "admin.key", veil_buf_span(&pem), 0600, eb);
    if (rc == VEIL_OK)
        rc = write_file(dir, "policy.json",
                        veil_span_from_str("{\"version\": 1, \"workloads\": []}\n"), 0600, eb);
    if (rc == VEIL_OK) {
        char *kp = join(dir, "keys.db");
        rc = kp == NULL ? VEIL_E_NOMEM : veil__kbs_store_open(kp, master, true, &st, eb);
        veil_free(kp);
    }
out:
    veil_memzero(master, sizeof(master));
    veil__kbs_store_free(st);
    veil_buf_release(&pem);
    EVP_PKEY_free(sca_key);
    EVP_PKEY_free(aca_key);
    EVP_PKEY_free(bca_key);
    EVP_PKEY_free(broker_key);
    EVP_PKEY_free(admin_key);
    X509_free(sca);
    X509_free(aca);
    X509_free(bca);
    X509_free(broker);
    X509_free(admin);
    veil_free(mpath);
    return rc;
}

veil_err veil__kbs_load_master(const char *dir, uint8_t master[32], struct veil_errbuf *eb)
{
    char *path = join(dir, "master.key");
    struct veil_buf b;
    veil_buf_init_secret(&b, 64);
    veil_err rc = path == NULL ? VEIL_E_NOMEM : veil_file_read_all(path, b.max, &b, eb);
    if (rc == VEIL_OK && b.len != 32)
        rc = veil_errf(eb, VEIL_E_FORMAT, "%s: a master key is 32 bytes, not %zu", path, b.len);
    if (rc == VEIL_OK)
        memcpy(master, b.p, 32);
    veil_buf_release(&b);
    veil_free(path);
    return rc;
}

veil_err veil__kbs_read_cert(const char *dir, const char *name, X509 **out, struct veil_errbuf *eb)
{
    char *path = join(dir, name);
    struct veil_buf b;
    *out = NULL;
    veil_buf_init(&b, VEIL_LIMIT_CONFIG_FILE);
    veil_err rc = path == NULL ? VEIL_E_NOMEM : veil_file_read_all(path, b.max, &b, eb);
    if (rc == VEIL_OK && veil__kbs_parse_cert(veil_buf_span(&b), out) != VEIL_OK)
        rc = veil_errf(eb, VEIL_E_FORMAT, "%s: not a PEM certificate", path);
    veil_buf_release(&b);
    veil_free(path);
    return rc;
}

veil_err veil__kbs_read_sealed_key(const char *dir, const char *name, const uint8_t master[32],
                                   EVP_PKEY **out, struct veil_errbuf *eb)
{
    char *path = join(dir, name);
    struct veil_buf b;
    *out = NULL;
    veil_buf_init_secret(&b, VEIL_LIMIT_CONFIG_FILE);
    veil_err rc = path == NULL ? VEIL_E_NOMEM : veil__kbs_blob_load(master, name, path, &b, eb);
    if (rc == VEIL_OK && veil__kbs_parse_key(veil_buf_span(&b), out) != VEIL_OK)
        rc = veil_errf(eb, VEIL_E_FORMAT, "%s: not a private key", path);
    veil_buf_release(&b);
    veil_free(path);
    return rc;
}

veil_err veil__kbs_cert_names(X509 *cert, char names[][VEIL__KBS_NAME_MAX + 1], size_t cap,
                              size_t *n)
{
    *n = 0;
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    veil_err rc = VEIL_OK;
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && rc == VEIL_OK; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char *out = names[*n];
        if (*n == cap) {
            rc = VEIL_E_LIMIT;
        } else if (g->type == GEN_DNS) {
            const ASN1_IA5STRING *d = g->d.dNSName;
            if (d->length <= 0 || d->length > VEIL__KBS_NAME_MAX)
                rc = VEIL_E_FORMAT;
            else {
                memcpy(out, d->data, (size_t)d->length);
                out[d->length] = '\0';
                (*n)++;
            }
        } else if (g->type == GEN_IPADD) {
            const ASN1_OCTET_STRING *ip = g->d.iPAddress;
            int af = ip->length == 4 ? AF_INET : ip->length == 16 ? AF_INET6 : -1;
            if (af < 0 || inet_ntop(af, ip->data, out, VEIL__KBS_NAME_MAX + 1) == NULL)
                rc = VEIL_E_FORMAT;
            else
                (*n)++;
        }
    }
    GENERAL_NAMES_free(gens);
    return rc;
}

veil_err veil_kbs_migrate(const char *dir, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    uint8_t master[32];
    EVP_PKEY *bca_key = NULL, *broker_key = NULL;
    X509 *old = NULL, *bca = NULL, *broker = NULL;
    char names[16][VEIL__KBS_NAME_MAX + 1];
    const char *san[17] = {NULL};
    size_t n = 0;
    char *probe = join(dir, "broker-ca.pem"), *bpath = join(dir, "broker.pem");
    struct veil_buf pem;
    veil_buf_init(&pem, 65536);
    if (probe == NULL || bpath == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "out of memory");
        goto out;
    }
    if (access(probe, F_OK) == 0) {
        rc = veil_errf(eb, VEIL_E_EXISTS, "%s: already has a broker CA (broker-ca.pem)", dir);
        goto out;
    }
    if ((rc = veil__kbs_load_master(dir, master, eb)) != VEIL_OK ||
        (rc = veil__kbs_read_cert(dir, "broker.pem", &old, eb)) != VEIL_OK ||
        (rc = veil__kbs_read_sealed_key(dir, "broker.key", master, &broker_key, eb)) != VEIL_OK)
        goto out;
    if (veil__kbs_cert_names(old, names, 16, &n) != VEIL_OK) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "%s/broker.pem: unreadable names", dir);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        san[i] = names[i];
    /* The broker keeps its key and names; only its issuer changes, to a CA of its own. */
    if (veil__kbs_new_key(&bca_key) != VEIL_OK ||
        veil__kbs_make_ca(bca_key, "Veil broker CA", &bca) != VEIL_OK ||
        veil__kbs_issue(bca, bca_key, broker_key, "Veil key broker", n > 0 ? san : NULL,
                        10L * 365 * 86400, VEIL_KBS_CERT_BROKER, &broker) != VEIL_OK) {
        rc = veil_crypto_openssl_err(eb, VEIL_E_CRYPTO, "cannot make the broker CA");
        goto out;
    }
    rc = write_sealed_key(dir, "broker-ca.key", master, bca_key, eb);
    if (rc == VEIL_OK)
        rc = veil__kbs_cert_pem(broker, &pem);
    if (rc == VEIL_OK)
        rc = veil_file_write_atomic(bpath, veil_buf_span(&pem), 0644, VEIL_ATOMIC_REPLACE, eb);
    /* Last: broker-ca.pem marks a finished migration (a crash before it is simply redone). */
    if (rc == VEIL_OK)
        rc = write_cert(dir, "broker-ca.pem", bca, eb);
out:
    veil_memzero(master, sizeof(master));
    veil_buf_release(&pem);
    EVP_PKEY_free(bca_key);
    EVP_PKEY_free(broker_key);
    X509_free(old);
    X509_free(bca);
    X509_free(broker);
    veil_free(probe);
    veil_free(bpath);
    return rc;
}

static veil_err write_key(const char *dir, const char *name, EVP_PKEY *k, struct veil_errbuf *eb)
{
    struct veil_buf b;
    veil_buf_init_secret(&b, 65536);
    veil_err rc = veil__kbs_key_pem(k, &b);
    if (rc == VEIL_OK)
        rc = write_file(dir, name, veil_buf_span(&b), 0600, eb);
    veil_buf_release(&b);
    return rc;
}

veil_err veil_kbs_make_certs(const char *dir, const char *const *hosts, int days,
                             struct veil_errbuf *eb)
{
    static const char *const default_hosts[] = {"localhost", "127.0.0.1", NULL};
    static const char *const names[] = {"ca.pem",     "ca.key",     "server.pem",
                                        "server.key", "client.pem", "client.key"};
    veil_err rc = VEIL_E_INTERNAL;
    EVP_PKEY *ca_key = NULL, *srv_key = NULL, *cli_key = NULL;
    X509 *ca = NULL, *srv = NULL, *cli = NULL;
    int64_t validity = (int64_t)(days > 0 ? days : 365) * 86400;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return veil_errf(eb, VEIL_E_IO, "%s: %s", dir, strerror(errno));
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *p = join(dir, names[i]);
        bool exists = p != NULL && access(p, F_OK) == 0;
        veil_free(p);
        if (exists)
            return veil_errf(eb, VEIL_E_EXISTS, "%s/%s exists; refusing to overwrite it", dir,
                             names[i]);
    }
    if (veil__kbs_new_key(&ca_key) != VEIL_OK || veil__kbs_new_key(&srv_key) != VEIL_OK ||
        veil__kbs_new_key(&cli_key) != VEIL_OK ||
        veil__kbs_make_ca(ca_key, "Veil TLS CA", &ca) != VEIL_OK) {
        rc = veil_crypto_openssl_err(eb, VEIL_E_CRYPTO, "cannot make keys");
        goto out;
    }
    rc = veil__kbs_issue(
        ca, ca_key, srv_key, hosts != NULL && hosts[0] != NULL ? hosts[0] : "localhost",
        hosts != NULL ? hosts : default_hosts, validity, VEIL_KBS_CERT_SERVER, &srv);
    if (rc == VEIL_OK)
        rc = veil__kbs_issue(ca, ca_key, cli_key, "veil client", NULL, validity,
                             VEIL_KBS_CERT_CLIENT, &cli);
    if (rc != VEIL_OK) {
        rc = veil_errf(eb, rc, "cannot issue certificates (bad host name?)");
        goto out;
    }
    rc = write_cert(dir, "ca.pem", ca, eb);
    if (rc == VEIL_OK)
        rc = write_key(dir, "ca.key", ca_key, eb);
    if (rc == VEIL_OK)
        rc = write_cert(dir, "server.pem", srv, eb);
    if (rc == VEIL_OK)
        rc = write_key(dir, "server.key", srv_key, eb);
    if (rc == VEIL_OK)
        rc = write_cert(dir, "client.pem", cli, eb);
    if (rc == VEIL_OK)
        rc = write_key(dir, "client.key", cli_key, eb);
out:
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(cli_key);
    X509_free(ca);
    X509_free(srv);
    X509_free(cli);
    return rc;
}
