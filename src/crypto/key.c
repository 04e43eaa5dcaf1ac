/*
 * Model keys: 256-bit AES keys with an ID, held in secure memory and wiped when freed.
 * The key file format is in docs/format/sealed-model.md ("Key files"); its parser is a pure
 * function over the span reader.
 */
#include "veil/crypto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define KEY_FILE_TAG "VEIL-MODEL-KEY-1"

static bool valid_id(const char *id, size_t len)
{
    if (len == 0 || len > VEIL_LIMIT_SEAL_KEY_ID)
        return false;
    for (size_t i = 0; i < len; i++)
        if (id[i] < 0x21 || id[i] > 0x7e)
            return false;
    return true;
}

static veil_err key_new(struct veil_model_key **out)
{
    void *p;
    veil_err rc = veil_secure_alloc(sizeof(struct veil_model_key), &p);
    if (rc != VEIL_OK)
        return rc;
    *out = p;
    return VEIL_OK;
}

void veil_model_key_free(struct veil_model_key *key)
{
    veil_secure_free(key, sizeof(*key));
}

veil_err veil_model_key_from_bytes(const char *id, const uint8_t *bytes, size_t len,
                                   struct veil_model_key **out, struct veil_errbuf *eb)
{
    *out = NULL;
    if (id == NULL || !valid_id(id, strlen(id)))
        return veil_errf(eb, VEIL_E_INVALID,
                         "key ID must be 1 to %d printable characters without spaces",
                         VEIL_LIMIT_SEAL_KEY_ID);
    if (len != VEIL_MODEL_KEY_LEN)
        return veil_errf(eb, VEIL_E_INVALID, "a model key is %d bytes, not %zu", VEIL_MODEL_KEY_LEN,
                         len);
    struct veil_model_key *k;
    veil_err rc = key_new(&k);
    if (rc != VEIL_OK)
        return veil_errf(eb, rc, "out of memory");
    memcpy(k->id, id, strlen(id) + 1);
    memcpy(k->key, bytes, VEIL_MODEL_KEY_LEN);
    *out = k;
    return VEIL_OK;
}

veil_err veil_model_key_generate(const char *id, struct veil_model_key **out,
                                 struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    uint8_t raw[VEIL_MODEL_KEY_LEN];
    char gen_id[32];
    *out = NULL;
    if (id == NULL) {
        uint8_t r[8];
        char hex[17];
        if (veil_random_bytes(r, sizeof(r)) != VEIL_OK)
            return veil_errf(eb, VEIL_E_CRYPTO, "random number generator failed");
        veil_hex_encode(r, sizeof(r), hex);
        snprintf(gen_id, sizeof(gen_id), "k-%s", hex);
        id = gen_id;
    }
    if (veil_random_bytes(raw, sizeof(raw)) != VEIL_OK) {
        rc = veil_errf(eb, VEIL_E_CRYPTO, "random number generator failed");
        goto out;
    }
    rc = veil_model_key_from_bytes(id, raw, sizeof(raw), out, eb);
out:
    veil_memzero(raw, sizeof(raw));
    return rc;
}

/* The ID of a raw 32-byte key: "raw-" + 16 hex digits of SHA-256("veil key id" || key). */
static veil_err raw_key_id(const uint8_t *key, char out[21])
{
    uint8_t in[11 + VEIL_MODEL_KEY_LEN], h[32];
    memcpy(in, "veil key id", 11);
    memcpy(in + 11, key, VEIL_MODEL_KEY_LEN);
    veil_err rc = veil_sha256(veil_span_make(in, sizeof(in)), h);
    veil_memzero(in, sizeof(in));
    if (rc != VEIL_OK)
        return rc;
    memcpy(out, "raw-", 4);
    veil_hex_encode(h, 8, out + 4);
    return VEIL_OK;
}

veil_err veil_model_key_parse(struct veil_span text, struct veil_model_key **out,
                              struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    uint8_t raw[VEIL_MODEL_KEY_LEN];
    char id[VEIL_LIMIT_SEAL_KEY_ID + 1] = "";
    bool have_key = false, have_tag = false;
    *out = NULL;

    if (text.len == VEIL_MODEL_KEY_LEN && !veil_span_starts_with(text, KEY_FILE_TAG)) {
        char rid[21];
        if (raw_key_id(text.p, rid) != VEIL_OK)
            return veil_errf(eb, VEIL_E_CRYPTO, "cannot hash key");
        return veil_model_key_from_bytes(rid, text.p, text.len, out, eb);
    }
    for (unsigned lineno = 1; text.len > 0; lineno++) {
        struct veil_span line;
        if (veil_span_get_until(&text, '\n', &line) != VEIL_OK) {
            line = text; /* last line without a newline */
            text.len = 0;
        }
        line = veil_span_trim(line);
        if (line.len == 0 || line.p[0] == '#')
            continue;
        if (!have_tag) {
            if (!veil_span_eq_str(line, KEY_FILE_TAG)) {
                rc = veil_errf(eb, VEIL_E_FORMAT, "not a model key file: the first line must be %s",
                               KEY_FILE_TAG);
                goto out;
            }
            have_tag = true;
            continue;
        }
        struct veil_span name;
        if (veil_span_get_until(&line, ':', &name) != VEIL_OK) {
            rc = veil_errf(eb, VEIL_E_FORMAT, "key file line %u: expected 'name: value'", lineno);
            goto out;
        }
        name = veil_span_trim(name);
        line = veil_span_trim(line);
        if (veil_span_eq_str(name, "id")) {
            if (!valid_id((const char *)line.p, line.len)) {
                rc = veil_errf(eb, VEIL_E_FORMAT,
                               "key file line %u: key ID must be 1 to %d printable characters",
                               lineno, VEIL_LIMIT_SEAL_KEY_ID);
                goto out;
            }
            memcpy(id, line.p, line.len);
            id[line.len] = '\0';
        } else if (veil_span_eq_str(name, "key")) {
            if (veil_hex_decode(line, raw, sizeof(raw)) != VEIL_OK) {
                rc = veil_errf(eb, VEIL_E_FORMAT, "key file line %u: key must be 64 hex digits",
                               lineno);
                goto out;
            }
            have_key = true;
        } else {
            rc = veil_errf(eb, VEIL_E_FORMAT, "key file line %u: unknown field '%.*s'", lineno,
                           (int)(name.len > 32 ? 32 : name.len), (const char *)name.p);
            goto out;
        }
    }
    if (!have_tag) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "empty key file");
        goto out;
    }
    if (!have_key || id[0] == '\0') {
        rc = veil_errf(eb, VEIL_E_FORMAT, "key file lacks the %s line", have_key ? "id" : "key");
        goto out;
    }
    rc = veil_model_key_from_bytes(id, raw, sizeof(raw), out, eb);
out:
    veil_memzero(raw, sizeof(raw));
    return rc;
}

veil_err veil_model_key_load(const char *path, struct veil_model_key **out, struct veil_errbuf *eb)
{
    struct veil_buf b;
    *out = NULL;
    veil_buf_init_secret(&b, VEIL_LIMIT_KEY_FILE);
    veil_err rc = veil_file_read_all(path, b.max, &b, eb);
    if (rc == VEIL_OK) {
        rc = veil_model_key_parse(veil_buf_span(&b), out, eb);
        if (rc != VEIL_OK)
            (void)veil_err_prefix(eb, rc, "%s", path);
    }
    struct stat st;
    if (rc == VEIL_OK && stat(path, &st) == 0 && (st.st_mode & 077) != 0)
        VEIL_LOG_WARN("key file %s is readable by others (mode %03o); use chmod 600", path,
                      (unsigned)(st.st_mode & 0777));
    veil_buf_release(&b);
    return rc;
}

veil_err veil_model_key_save(const struct veil_model_key *key, const char *path,
                             struct veil_errbuf *eb)
{
    struct veil_buf b;
    char hex[2 * VEIL_MODEL_KEY_LEN + 1];
    veil_buf_init_secret(&b, VEIL_LIMIT_KEY_FILE);
    veil_hex_encode(key->key, VEIL_MODEL_KEY_LEN, hex);
    veil_err rc = veil_buf_appendf(&b, "%s\nid: %s\nkey: %s\n", KEY_FILE_TAG, key->id, hex);
    veil_memzero(hex, sizeof(hex));
    if (rc == VEIL_OK)
        rc = veil_file_write_atomic(path, veil_buf_span(&b), 0600, VEIL_ATOMIC_NO_REPLACE, eb);
    else
        rc = veil_errf(eb, rc, "out of memory");
    veil_buf_release(&b);
    return rc;
}
