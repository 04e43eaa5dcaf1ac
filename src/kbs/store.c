/*
 * The broker's key store: model keys with a name, a version and a state, kept in memory in
 * secure pages and on disk as one blob sealed under the master key (label "veil kbs keys v1").
 * Every change builds the new state, writes it atomically and durably (temporary file, fsync,
 * rename, directory fsync), and only then takes effect in memory: a crash at any point leaves
 * either the old or the new state on disk, never a mix, and no acknowledged key is lost.
 */
#include "kbs_int.h"

#include <stdio.h>
#include <string.h>

#define STORE_LABEL "veil kbs keys v1"

static bool valid_text(const char *s, size_t max, bool allow_at)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\' || (!allow_at && s[i] == '@'))
            return false;
    return true;
}

static veil_err serialise(const struct veil__kbs_key *keys, size_t n, struct veil_buf *out)
{
    veil_err rc = veil_buf_append_str(out, "{\"version\":1,\"keys\":[");
    for (size_t i = 0; rc == VEIL_OK && i < n; i++) {
        char hex[2 * VEIL_MODEL_KEY_LEN + 1];
        veil_hex_encode(keys[i].key, VEIL_MODEL_KEY_LEN, hex);
        rc = veil_buf_appendf(out,
                              "%s{\"id\":\"%s\",\"name\":\"%s\",\"version\":%u,\"retired\":%s,"
                              "\"created\":%lld,\"key\":\"%s\"}",
                              i ? "," : "", keys[i].id, keys[i].name, keys[i].version,
                              keys[i].retired ? "true" : "false", (long long)keys[i].created, hex);
        veil_memzero(hex, sizeof(hex));
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(out, "]}");
    return rc;
}

/* Writes keys[0..n) as the store's new durable state. */
static veil_err commit(const struct veil__kbs_store *st, const struct veil__kbs_key *keys, size_t n,
                       struct veil_errbuf *eb)
{
    struct veil_buf plain;
    veil_buf_init_secret(&plain, VEIL_LIMIT_CONFIG_FILE);
    veil_err rc = serialise(keys, n, &plain);
    if (rc != VEIL_OK)
        rc = veil_errf(eb, rc, "key store too large");
    else
        rc = veil__kbs_blob_store(st->master, STORE_LABEL, st->path, veil_buf_span(&plain), eb);
    veil_buf_release(&plain);
    return rc;
}

static veil_err parse(struct veil__kbs_store *st, struct veil_span text, struct veil_errbuf *eb)
{
    struct veil_arena a;
    struct veil_json *doc = NULL;
    veil_arena_init(&a, 1 << 16, VEIL_LIMIT_CONFIG_FILE * 4);
    veil_err rc = veil_json_parse(text, &a, &doc, eb);
    const struct veil_json *keys = veil_json_get(doc, "keys");
    if (rc == VEIL_OK &&
        (keys == NULL || keys->type != VEIL_JSON_ARRAY || keys->n > VEIL_LIMIT_KBS_KEYS))
        rc = veil_errf(eb, VEIL_E_FORMAT, "key store: no key list");
    for (size_t i = 0; rc == VEIL_OK && i < keys->n; i++) {
        const struct veil_json *k = keys->items[i];
        struct veil__kbs_key *dst = &st->keys[i];
        const char *id = veil_json_get_str(k, "id"), *name = veil_json_get_str(k, "name");
        const char *hex = veil_json_get_str(k, "key");
        const struct veil_json *ver = veil_json_get(k, "version");
        const struct veil_json *ret = veil_json_get(k, "retired");
        const struct veil_json *cr = veil_json_get(k, "created");
        if (id == NULL || name == NULL || hex == NULL || ver == NULL || !ver->is_int ||
            ver->i < 0 || ver->i > UINT32_MAX || ret == NULL || ret->type != VEIL_JSON_BOOL ||
            cr == NULL || !cr->is_int || !valid_text(id, VEIL_LIMIT_SEAL_KEY_ID, true) ||
            !valid_text(name, VEIL_LIMIT_SEAL_KEY_ID, false) ||
            veil_hex_decode(veil_span_from_str(hex), dst->key, VEIL_MODEL_KEY_LEN) != VEIL_OK) {
            rc = veil_errf(eb, VEIL_E_FORMAT, "key store: entry %zu is malformed", i);
            break;
        }
        snprintf(dst->id, sizeof(dst->id), "%s", id);
        snprintf(dst->name, sizeof(dst->name), "%s", name);
        dst->version = (uint32_t)ver->i;
        dst->retired = ret->b;
        dst->created = cr->i;
        st->n = i + 1;
    }
    veil_arena_release(&a);
    return rc;
}

void veil__kbs_store_free(struct veil__kbs_store *st)
{
    if (st == NULL)
        return;
    veil_secure_free(st->keys, VEIL_LIMIT_KBS_KEYS * sizeof(struct veil__kbs_key));
    veil_free(st->path);
    veil_secure_free(st, sizeof(*st));
}

veil_err veil__kbs_store_open(const char *path, const uint8_t master[32], bool create,
                              struct veil__kbs_store **out, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil__kbs_store *st = NULL;
    struct veil_buf plain;
    veil_buf_init_secret(&plain, VEIL_LIMIT_CONFIG_FILE);
    *out = NULL;
    if (veil_secure_alloc(sizeof(*st), (void **)&st) != VEIL_OK ||
        veil_secure_alloc(VEIL_LIMIT_KBS_KEYS * sizeof(struct veil__kbs_key), (void **)&st->keys) !=
            VEIL_OK ||
        (st->path = veil_strdup(path)) == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "out of memory");
        goto out;
    }
    memcpy(st->master, master, 32);
    if (create) {
        rc = commit(st, st->keys, 0, eb);
    } else {
        rc = veil__kbs_blob_load(master, STORE_LABEL, path, &plain, eb);
        if (rc == VEIL_OK)
            rc = parse(st, veil_buf_span(&plain), eb);
    }
    if (rc != VEIL_OK)
        goto out;
    *out = st;
    st = NULL;
out:
    veil_buf_release(&plain);
    if (st != NULL)
        veil__kbs_store_free(st);
    return rc;
}

const struct veil__kbs_key *veil__kbs_store_find(const struct veil__kbs_store *st, const char *id)
{
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->keys[i].id, id) == 0)
            return &st->keys[i];
    return NULL;
}

veil_err veil__kbs_store_add(struct veil__kbs_store *st, const char *name, const char *id,
                             const uint8_t *raw, const struct veil__kbs_key **out,
                             struct veil_errbuf *eb)
{
    *out = NULL;
    if (!valid_text(name, 100, false))
        return veil_errf(eb, VEIL_E_INVALID,
                         "key name must be 1 to 100 printable characters without '@' or quotes");
    if (st->n >= VEIL_LIMIT_KBS_KEYS)
        return veil_errf(eb, VEIL_E_LIMIT, "the key store is full (%d keys)", VEIL_LIMIT_KBS_KEYS);
    struct veil__kbs_key *k = &st->keys[st->n];
    memset(k, 0, sizeof(*k));
    uint32_t version = 1;
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->keys[i].name, name) == 0 && st->keys[i].version >= version)
            version = st->keys[i].version + 1;
    if (id != NULL)
        snprintf(k->id, sizeof(k->id), "%s", id);
    else
        snprintf(k->id, sizeof(k->id), "%s@%u", name, version);
    if (!valid_text(k->id, VEIL_LIMIT_SEAL_KEY_ID, true) || (id != NULL && strlen(id) > 128))
        return veil_errf(eb, VEIL_E_INVALID, "key ID must be 1 to 128 printable characters");
    if (veil__kbs_store_find(st, k->id) != NULL)
        return veil_errf(eb, VEIL_E_EXISTS, "key ID '%s' exists already", k->id);
    snprintf(k->name, sizeof(k->name), "%s", name);
    k->version = version;
    k->created = veil_time_now();
    if (raw != NULL)
        memcpy(k->key, raw, VEIL_MODEL_KEY_LEN);
    else if (veil_random_bytes(k->key, VEIL_MODEL_KEY_LEN) != VEIL_OK)
        return veil_errf(eb, VEIL_E_CRYPTO, "random number generator failed");
    /* Durable first: the slot past st->n only counts once the file says so. */
    veil_err rc = commit(st, st->keys, st->n + 1, eb);
    if (rc != VEIL_OK) {
        veil_memzero(k, sizeof(*k));
        return rc;
    }
    st->n++;
    *out = k;
    return VEIL_OK;
}

veil_err veil__kbs_store_retire(struct veil__kbs_store *st, const char *id, struct veil_errbuf *eb)
{
    struct veil__kbs_key *k = NULL;
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->keys[i].id, id) == 0)
            k = &st->keys[i];
    if (k == NULL)
        return veil_errf(eb, VEIL_E_NOTFOUND, "no key with ID '%s'", id);
    if (k->retired)
        return VEIL_OK;
    k->retired = true;
    veil_err rc = commit(st, st->keys, st->n, eb);
    if (rc != VEIL_OK)
        k->retired = false;
    return rc;
}
