/*
 * Small OpenSSL helpers shared by the modules: SHA-256 and draining OpenSSL's error queue
 * into an errbuf at the module boundary (STYLE rule 15).
 */
#include "veil/crypto.h"

#include <openssl/err.h>
#include <openssl/evp.h>

veil_err veil_sha256(struct veil_span data, uint8_t out[32])
{
    unsigned int n = 0;
    if (EVP_Digest(data.p != NULL ? data.p : (const uint8_t *)"", data.len, out, &n, EVP_sha256(),
                   NULL) != 1 ||
        n != 32)
        return VEIL_E_CRYPTO;
    return VEIL_OK;
}

veil_err veil_crypto_openssl_err(struct veil_errbuf *eb, veil_err rc, const char *what)
{
    unsigned long e = ERR_get_error();
    char reason[160] = "no detail";
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    return veil_errf(eb, rc, "%s: %s", what, reason);
}
