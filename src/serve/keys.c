/*
 * Key sources: where the repository gets model keys for sealed models. The file source reads
 * a key file, or every key file in a directory, once into secure memory and answers by key ID;
 * other providers (the key broker client) plug in through veil_key_source_new.
 */
#include "serve_int.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

struct veil_key_source {
    const struct veil_key_source_ops *ops;
    void *ud;
};

veil_err veil_key_source_new(const struct veil_key_source_ops *ops, void *ud,
                             struct veil_key_source **out)
{
    *out = NULL;
    struct veil_key_source *ks = veil_calloc(1, sizeof(*ks));
    if (ks == NULL) {
        if (ops->free != NULL)
            ops->free(ud);
        return VEIL_E_NOMEM;
    }
    ks->ops = ops;
    ks->ud = ud;
    *out = ks;
    return VEIL_OK;
}

veil_err veil_key_source_get(struct veil_key_source *ks, const char *key_id,
                             struct veil_model_key **out, struct veil_errbuf *eb)
{
    *out = NULL;
    return ks->ops->get(ks->ud, key_id, out, eb);
}

void veil_key_source_free(struct veil_key_source *ks)
{
    if (ks == NULL)
        return;
    if (ks->ops->free != NULL)
        ks->ops->free(ks->ud);
    veil_free(ks);
}

/* ---- Key files ---- */

struct file_keys {
    struct veil_model_key **keys;
    size_t n;
};

static veil_err files_get(void *ud, const char *key_id, struct veil_model_key **out,
                          struct veil_errbuf *eb)
{
    struct file_keys *fk = ud;
    for (size_t i = 0; i < fk->n; i++)
        if (strcmp(fk->keys[i]->id, key_id) == 0)
            return veil_model_key_from_bytes(fk->keys[i]->id, fk->keys[i]->key, VEIL_MODEL_KEY_LEN,
                                             out, eb);
    return veil_errf(eb, VEIL_E_NOTFOUND, "no key with ID %s", key_id);
}

static void files_free(void *ud)
{
    struct file_keys *fk = ud;
    if (fk == NULL)
        return;
    for (size_t i = 0; i < fk->n; i++)
        veil_model_key_free(fk->keys[i]);
    veil_free(fk->keys);
    veil_free(fk);
}

static const struct veil_key_source_ops files_ops = {files_get, files_free};

static veil_err add_key(struct file_keys *fk, struct veil_model_key *k)
{
    struct veil_model_key **nk = veil_reallocarray(fk->keys, fk->n + 1, sizeof(*nk));
    if (nk == NULL) {
        veil_model_key_free(k);
        return VEIL_E_NOMEM;
    }
    fk->keys = nk;
    fk->keys[fk->n++] = k;
    return VEIL_OK;
}

veil_err veil_key_source_new_files(const char *path, struct veil_key_source **out,
                                   struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct file_keys *fk = NULL;
    struct veil_model_key *k = NULL;
    DIR *d = NULL;
    struct stat sb;
    *out = NULL;
    fk = veil_calloc(1, sizeof(*fk));
    if (fk == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    if (stat(path, &sb) != 0) {
        rc = veil_errf(eb, VEIL_E_NOTFOUND, "key path %s does not exist", path);
        goto out;
    }
    if (!S_ISDIR(sb.st_mode)) {
        if ((rc = veil_model_key_load(path, &k, eb)) != VEIL_OK)
            goto out;
        rc = add_key(fk, k);
        k = NULL;
        if (rc != VEIL_OK)
            goto out;
    } else {
        d = opendir(path);
        if (d == NULL) {
            rc = veil_errf(eb, VEIL_E_IO, "cannot read key directory %s", path);
            goto out;
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char p[4096];
            if (e->d_name[0] == '.')
                continue;
            if ((size_t)snprintf(p, sizeof(p), "%s/%s", path, e->d_name) >= sizeof(p))
                continue;
            if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode))
                continue;
            struct veil_errbuf keb = {{0}};
            veil_err krc = veil_model_key_load(p, &k, &keb);
            if (krc != VEIL_OK) {
                VEIL_LOG_WARN("skipping %s: %s", p, veil_errbuf_msg(&keb, krc));
                continue;
            }
            rc = add_key(fk, k);
            k = NULL;
            if (rc != VEIL_OK)
                goto out;
        }
        if (fk->n == 0) {
            rc = veil_errf(eb, VEIL_E_NOTFOUND, "no key file in %s", path);
            goto out;
        }
    }
    rc = veil_key_source_new(&files_ops, fk, out);
    fk = NULL; /* owned by the source now, or freed by it on failure */
out:
    if (d != NULL)
        closedir(d);
    veil_model_key_free(k);
    files_free(fk);
    return rc;
}
