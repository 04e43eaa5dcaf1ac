/*
 * The model repository: each model's base path holds numbered version folders with model.onnx
 * or a sealed model.onnx.veil. A scan (at start, then every poll period on the poller thread)
 * loads the versions the policy wants (latest N, all, specific) and unloads the others only
 * once a wanted version is AVAILABLE, so serving never gaps. Requests hold a version by a
 * reference count under the repository mutex; an unloaded version is freed when its last
 * request releases it. A version that fails to load stays listed as END with its error, and is
 * retried only when its model file changes. Sealed models are decrypted into secure memory
 * with a key from the key source and the plaintext is wiped right after the engine loaded it.
 */
#include "serve_int.h"

#include <dirent.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char *arena_str(struct veil_arena *a, const char *s)
{
    char *o = NULL;
    if (s == NULL || veil_arena_strdup(a, veil_span_from_str(s), &o) != VEIL_OK)
        return NULL;
    return o;
}

static veil_err copy_config(struct veil_arena *a, const struct sv_model_config *in,
                            struct sv_model_config *out)
{
    *out = *in;
    out->name = arena_str(a, in->name);
    out->base_path = arena_str(a, in->base_path);
    if (out->name == NULL || out->base_path == NULL)
        return VEIL_E_NOMEM;
    if (in->n_versions > 0) {
        if (veil_arena_allocarray(a, in->n_versions, sizeof(int64_t), 8, (void **)&out->versions) !=
            VEIL_OK)
            return VEIL_E_NOMEM;
        memcpy(out->versions, in->versions, in->n_versions * sizeof(int64_t));
    }
    if (in->n_labels > 0) {
        if (veil_arena_allocarray(a, in->n_labels, sizeof(struct sv_label), 8,
                                  (void **)&out->labels) != VEIL_OK)
            return VEIL_E_NOMEM;
        for (size_t i = 0; i < in->n_labels; i++) {
            out->labels[i].version = in->labels[i].version;
            out->labels[i].name = arena_str(a, in->labels[i].name);
            if (out->labels[i].name == NULL)
                return VEIL_E_NOMEM;
        }
    }
    return VEIL_OK;
}

veil_err veil__serve_repo_new(const struct sv_model_config *cfgs, size_t n, int64_t poll_s,
                              struct veil_key_source *keys, const struct veil_engine_options *eopt,
                              const struct sv_batching *batching, struct sv_metrics *metrics,
                              struct sv_repo **out, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct sv_repo *r = NULL;
    *out = NULL;
    r = veil_calloc(1, sizeof(*r));
    if (r == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    atomic_init(&r->first_scan_done, false);
    r->poll_s = poll_s;
    r->keys = keys;
    if (eopt != NULL)
        r->eopt = *eopt;
    r->batching = batching;
    r->metrics = metrics;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfgs[i].name, cfgs[j].name) == 0) {
                rc = veil_errf(eb, VEIL_E_INVALID, "model %s configured twice", cfgs[i].name);
                goto out;
            }
    if ((rc = veil__serve_repo_reconfigure(r, cfgs, n, eb)) != VEIL_OK)
        goto out;
    *out = r;
    r = NULL;
    rc = VEIL_OK;
out:
    veil__serve_repo_free(r);
    return rc;
}

static void version_unload_now(struct sv_version *v)
{
    veil__serve_batcher_free(v->batcher);
    v->batcher = NULL;
    veil_engine_model_free(v->em);
    v->em = NULL;
    for (size_t i = 0; i < v->sig.n_in; i++)
        veil_free(v->sig.in[i].name);
    for (size_t i = 0; i < v->sig.n_out; i++)
        veil_free(v->sig.out[i].name);
    memset(&v->sig, 0, sizeof(v->sig));
}

void veil__serve_repo_free(struct sv_repo *r)
{
    if (r == NULL)
        return;
    if (r->poller_started) {
        pthread_mutex_lock(&r->mu);
        r->stop = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->poller, NULL);
    }
    for (size_t i = 0; i < r->n_models; i++) {
        struct sv_model *m = r->models[i];
        struct sv_version *v = m->versions;
        while (v != NULL) {
            struct sv_version *next = v->next;
            version_unload_now(v);
            veil_free(v);
            v = next;
        }
        veil_arena_release(&m->cfg_arena);
        veil_free(m);
    }
    veil_free(r->models);
    veil_free(r->config_path);
    veil_arena_release(&r->min_arena);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    veil_free(r);
}

/* ---- Loading ---- */

static veil_err build_sig(struct veil_engine_model *em, struct sv_sig *sig, struct veil_errbuf *eb)
{
    size_t ni = veil_engine_model_num_inputs(em), no = veil_engine_model_num_outputs(em);
    if (ni > SV_MAX_IO || no > SV_MAX_IO)
        return veil_errf(eb, VEIL_E_LIMIT, "model has more than %d inputs or outputs", SV_MAX_IO);
    for (size_t k = 0; k < ni + no; k++) {
        bool in = k < ni;
        const struct veil_tensor_info *info =
            in ? veil_engine_model_input(em, k) : veil_engine_model_output(em, k - ni);
        struct sv_tinfo *t = in ? &sig->in[k] : &sig->out[k - ni];
        t->name = veil_strdup(info->name != NULL ? info->name : "");
        if (t->name == NULL)
            return VEIL_E_NOMEM;
        t->dt = info->dtype;
        t->tf_dtype = veil__serve_tf_dtype(info->dtype);
        t->rank = info->rank;
        memcpy(t->dims, info->dims, sizeof(t->dims));
        if (in)
            sig->n_in++;
        else
            sig->n_out++;
    }
    return VEIL_OK;
}

/*
 * A stamp of a model file's identity: modification and status-change times, inode and size.
 * The status-change time cannot be set back from user space, so a file replaced in place
 * (even with its old modification time restored) gets a new stamp.
 */
static int64_t file_stamp(const struct stat *sb)
{
    uint64_t h = 1469598103934665603ull;
    const uint64_t parts[] = {(uint64_t)sb->st_mtim.tv_sec, (uint64_t)sb->st_mtim.tv_nsec,
                              (uint64_t)sb->st_ctim.tv_sec, (uint64_t)sb->st_ctim.tv_nsec,
                              (uint64_t)sb->st_ino,         (uint64_t)sb->st_size};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        h = (h ^ parts[i]) * 1099511628211ull;
    return (int64_t)(h >> 2) + 1; /* positive: -1 and 0 mean "ask again" and "no file" */
}

/* Finds the model file of a version folder: sealed, else plain ONNX. */
static veil_err model_file(const char *dir, char *path, size_t cap, bool *sealed, int64_t *stamp)
{
    struct stat sb;
    snprintf(path, cap, "%s/model.onnx.veil", dir);
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
        *sealed = true;
        *stamp = file_stamp(&sb);
        return VEIL_OK;
    }
    snprintf(path, cap, "%s/model.onnx", dir);
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
        *sealed = false;
        *stamp = file_stamp(&sb);
        return VEIL_OK;
    }
    *stamp = 0;
    return VEIL_E_NOTFOUND;
}

static veil_err load_sealed(struct sv_repo *r, const struct sv_model *m, int64_t version,
                            const char *path, struct veil_engine_model **em, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    uint8_t head[VEIL_LIMIT_SEAL_HEADER];
    struct veil_seal_header hdr;
    struct veil_model_key *key = NULL;
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = veil_errf(eb, VEIL_E_IO, "cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    ssize_t got = read(fd, head, sizeof(head));
    if (got < 0) {
        rc = veil_errf(eb, VEIL_E_IO, "cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    rc = veil_seal_header_parse(veil_span_make(head, (size_t)got), &hdr, eb);
    if (rc != VEIL_OK)
        goto out;
    if (r->keys == NULL) {
        rc = veil_errf(eb, VEIL_E_NOTFOUND, "sealed model and no key source (--key)");
        goto out;
    }
    rc = veil_key_source_get(r->keys, hdr.key_id, &key, eb);
    if (rc != VEIL_OK)
        goto out;
    struct veil_seal_expect ex = {m->cfg.name, version >= 0, (uint64_t)version};
    rc = veil_unseal_path(path, key, &ex, 0, &plain, &plain_len, &hdr, eb);
    if (rc != VEIL_OK)
        goto out;
    rc = veil_serve_model_from_plain(veil_span_make(plain, plain_len), &hdr, &r->eopt, em, eb);
out:
    if (plain != NULL)
        veil_secure_free(plain, plain_len);
    veil_model_key_free(key);
    if (fd >= 0)
        close(fd);
    return rc;
}

static veil_err load_version(struct sv_repo *r, const struct sv_model *m, int64_t version,
                             const char *path, bool sealed, struct veil_engine_model **em,
                             struct sv_sig *sig, struct veil_errbuf *eb)
{
    veil_err rc;
    *em = NULL;
    if (sealed) {
        rc = load_sealed(r, m, version, path, em, eb);
    } else {
        rc = veil_serve_model_from_file(path, &r->eopt, em, eb);
    }
    if (rc == VEIL_OK)
        rc = build_sig(*em, sig, eb);
    if (rc != VEIL_OK) {
        veil_engine_model_free(*em);
        *em = NULL;
        for (size_t i = 0; i < sig->n_in; i++)
            veil_free(sig->in[i].name);
        for (size_t i = 0; i < sig->n_out; i++)
            veil_free(sig->out[i].name);
        memset(sig, 0, sizeof(*sig));
    }
    return rc;
}

veil_err veil__serve_repo_set_min_versions(struct sv_repo *r,
                                           const struct veil_serve_min_version *mv, size_t n,
                                           struct veil_errbuf *eb)
{
    if (n == 0)
        return VEIL_OK;
    veil_arena_init(&r->min_arena, 4096, 1u << 20);
    veil_err rc = veil_arena_allocarray(&r->min_arena, n, sizeof(*r->min), 8, (void **)&r->min);
    for (size_t i = 0; rc == VEIL_OK && i < n; i++) {
        char *name = arena_str(&r->min_arena, mv[i].model);
        if (name == NULL)
            rc = VEIL_E_NOMEM;
        r->min[i].model = name;
        r->min[i].version = mv[i].version;
    }
    if (rc != VEIL_OK)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for minimum versions");
    r->n_min = n;
    return VEIL_OK;
}

/* Whether version v of m is below the minimum set for it; *min gets that minimum. */
static bool below_min(const struct sv_repo *r, const struct sv_model *m, int64_t v, int64_t *min)
{
    for (size_t i = 0; i < r->n_min; i++)
        if (strcmp(r->min[i].model, m->cfg.name) == 0 && v < r->min[i].version) {
            *min = r->min[i].version;
            return true;
        }
    return false;
}

/* ---- Scanning ---- */

#define SCAN_MAX 4096

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Lists numbered version folders of base (TF: child folders whose name parses as int64). */
static size_t list_versions(const char *base, int64_t *out, size_t cap)
{
    DIR *d = opendir(base);
    size_t n = 0;
    if (d == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < cap) {
        int64_t v = 0;
        if (!veil__serve_json_i64(veil_span_from_str(e->d_name), &v) || v < 0)
            continue;
        char p[4096];
        struct stat sb;
        if ((size_t)snprintf(p, sizeof(p), "%s/%s", base, e->d_name) >= sizeof(p) ||
            stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode))
            continue;
        out[n++] = v;
    }
    closedir(d);
    qsort(out, n, sizeof(*out), cmp_desc);
    /* "00000123" and "123" are one version: drop duplicates. */
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (w == 0 || out[w - 1] != out[i])
            out[w++] = out[i];
    return w;
}

static bool wanted(const struct sv_model *m, const int64_t *found, size_t n, int64_t v)
{
    switch (m->cfg.policy) {
    case SV_POLICY_ALL:
        return true;
    case SV_POLICY_SPECIFIC:
        for (size_t i = 0; i < m->cfg.n_versions; i++)
            if (m->cfg.versions[i] == v)
                return true;
        return false;
    case SV_POLICY_LATEST:
    default:
        for (size_t i = 0; i < n && i < m->cfg.latest_n; i++)
            if (found[i] == v)
                return true;
        return false;
    }
}

static struct sv_version *find_version(struct sv_model *m, int64_t v)
{
    for (struct sv_version *x = m->versions; x != NULL; x = x->next)
        if (x->version == v)
            return x;
    return NULL;
}

static void insert_version(struct sv_model *m, struct sv_version *nv)
{
    struct sv_version **pp = &m->versions;
    while (*pp != NULL && (*pp)->version > nv->version)
        pp = &(*pp)->next;
    nv->next = *pp;
    *pp = nv;
}

static void version_dir(const struct sv_model *m, int64_t v, char *out, size_t cap)
{
    /* The folder name may have leading zeros: find it by value. */
    DIR *d = opendir(m->cfg.base_path);
    snprintf(out, cap, "%s/%lld", m->cfg.base_path, (long long)v);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int64_t x;
        if (veil__serve_json_i64(veil_span_from_str(e->d_name), &x) && x == v) {
            snprintf(out, cap, "%s/%s", m->cfg.base_path, e->d_name);
            break;
        }
    }
    closedir(d);
}

static void scan_model(struct sv_repo *r, struct sv_model *m)
{
    int64_t found[256];
    /* A removed model has no wanted version: everything unloads and is then forgotten. */
    size_t n =
        m->removed ? 0 : list_versions(m->cfg.base_path, found, sizeof(found) / sizeof(found[0]));
    if (n == 0)
        VEIL_LOG_DEBUG("model %s: no version under %s yet", m->cfg.name, m->cfg.base_path);
    /* Loads first: availability is preserved because unloading waits for them. */
    for (size_t i = 0; i < n; i++) {
        int64_t v = found[i];
        if (!wanted(m, found, n, v))
            continue;
        char dir[4096], path[4200];
        bool sealed = false;
        int64_t mtime = 0;
        version_dir(m, v, dir, sizeof(dir));
        veil_err frc = model_file(dir, path, sizeof(path), &sealed, &mtime);
        pthread_mutex_lock(&r->mu);
        struct sv_version *x = find_version(m, v);
        /* Load what is new, what was unloaded and is wanted again, and what failed before
         * only when its model file changed since. */
        bool need =
            x == NULL || (x->state == SV_END && (x->err_code == 0 || mtime != x->file_mtime));
        /*
         * A loaded version whose file changed (replaced, rewritten, removed) is never kept
         * silently: it unloads (below) and loads again from the new file at the next scan,
         * or ends with the new file's error.
         */
        if (x != NULL && x->state == SV_AVAILABLE && mtime != x->file_mtime) {
            VEIL_LOG_WARN("model %s version %lld: its model file changed; reloading it",
                          m->cfg.name, (long long)v);
            x->state = SV_UNLOADING;
        }
        if (!need) {
            pthread_mutex_unlock(&r->mu);
            continue;
        }
        if (x == NULL) {
            x = veil_calloc(1, sizeof(*x));
            if (x == NULL) {
                pthread_mutex_unlock(&r->mu);
                continue;
            }
            x->model = m;
            x->version = v;
            insert_version(m, x);
        }
        x->state = SV_LOADING;
        x->file_mtime = mtime;
        x->err_code = 0;
        x->err_msg[0] = '\0';
        pthread_mutex_unlock(&r->mu);

        struct veil_engine_model *em = NULL;
        struct sv_sig sig;
        struct veil_errbuf eb = {{0}};
        memset(&sig, 0, sizeof(sig));
        veil_err rc = frc;
        int64_t min = 0;
        if (rc != VEIL_OK)
            veil_errf(&eb, rc, "no model.onnx or model.onnx.veil in %s", dir);
        else if (below_min(r, m, v, &min))
            /* The broker's policy says versions below this one must not answer (a rollback
             * to an older, perhaps vulnerable model, by deleting the newest folder). */
            rc = veil_errf(&eb, VEIL_E_STATE,
                           "version %lld is below the minimum version %lld that the key "
                           "broker's policy sets for model %s",
                           (long long)v, (long long)min, m->cfg.name);
        else if (r->sealed_only && !sealed)
            /* Keys come from an attested broker: a plaintext file is the host's, not the
             * owner's, and must never answer under the attested certificate. */
            rc = veil_errf(&eb, VEIL_E_STATE,
                           "plaintext %s refused: this server serves only sealed models "
                           "(model.onnx.veil, made with veil seal)",
                           path);
        else
            rc = load_version(r, m, v, path, sealed, &em, &sig, &eb);
        if (rc == VEIL_OK && r->warmup_iterations > 0) {
            /* TF Serving's warmup: the version is AVAILABLE only once its requests ran. */
            size_t n_run = 0;
            rc = veil__serve_warmup(dir, em, &sig, r->warmup_iterations, &n_run, &eb);
            if (rc != VEIL_OK) {
                /* The engine and the signature's names go with the failed load. */
                struct sv_version gone;
                memset(&gone, 0, sizeof(gone));
                gone.em = em;
                gone.sig = sig;
                version_unload_now(&gone);
                em = NULL;
                memset(&sig, 0, sizeof(sig));
            } else if (n_run > 0) {
                VEIL_LOG_INFO("model %s version %lld warmed up with %zu requests", m->cfg.name,
                              (long long)v, n_run);
            }
        }
        struct sv_batcher *batcher = NULL;
        pthread_mutex_lock(&r->mu);
        if (rc == VEIL_OK) {
            x->em = em;
            x->sig = sig;
            x->failed_once = false;
            if (r->batching != NULL) {
                pthread_mutex_unlock(&r->mu);
                rc = veil__serve_batcher_new(x, r->batching, r->metrics, &batcher);
                pthread_mutex_lock(&r->mu);
                x->batcher = batcher;
            }
        }
        if (rc == VEIL_OK) {
            x->state = SV_AVAILABLE;
            VEIL_LOG_INFO("model %s version %lld is AVAILABLE", m->cfg.name, (long long)v);
        } else {
            version_unload_now(x);
            x->state = SV_END;
            x->failed_once = true;
            /* A key source that cannot answer yet (a broker not reached) is asked again at the
             * next scan; other failures wait for the model file to change. */
            if (rc == VEIL_E_UNAVAILABLE)
                x->file_mtime = -1;
            x->err_code = veil__serve_code_of(rc);
            if (x->err_code == VEIL_GRPC_OK)
                x->err_code = VEIL_GRPC_UNKNOWN;
            snprintf(x->err_msg, sizeof(x->err_msg), "%s", veil_errbuf_msg(&eb, rc));
            VEIL_LOG_ERR("model %s version %lld failed to load: %s", m->cfg.name, (long long)v,
                         x->err_msg);
        }
        pthread_mutex_unlock(&r->mu);
    }
    /* Unloads: only once some wanted version is AVAILABLE, or when none is wanted at all. */
    pthread_mutex_lock(&r->mu);
    bool any_wanted_available = false, any_wanted = false;
    for (struct sv_version *x = m->versions; x != NULL; x = x->next) {
        bool present = false;
        for (size_t i = 0; i < n; i++)
            present = present || found[i] == x->version;
        if (present && wanted(m, found, n, x->version)) {
            any_wanted = true;
            any_wanted_available = any_wanted_available || x->state == SV_AVAILABLE;
        }
    }
    struct sv_version **pp = &m->versions;
    struct sv_version *to_free = NULL;
    while (*pp != NULL) {
        struct sv_version *x = *pp;
        bool present = false;
        for (size_t i = 0; i < n; i++)
            present = present || found[i] == x->version;
        bool keep = present && wanted(m, found, n, x->version);
        if (!keep && x->state == SV_AVAILABLE && (any_wanted_available || !any_wanted)) {
            VEIL_LOG_INFO("model %s version %lld unloading", m->cfg.name, (long long)x->version);
            x->state = SV_UNLOADING;
        }
        if (x->state == SV_UNLOADING) {
            /* Nobody holds it: unload below, outside the lock (else at a later scan). */
            struct sv_version *copy = x->refs == 0 ? veil_calloc(1, sizeof(*copy)) : NULL;
            if (copy != NULL) {
                x->state = SV_END;
                x->err_code = 0;
                copy->em = x->em;
                copy->batcher = x->batcher;
                copy->sig = x->sig;
                copy->next = to_free;
                to_free = copy;
                x->em = NULL;
                x->batcher = NULL;
                memset(&x->sig, 0, sizeof(x->sig));
            }
        }
        /* Forget finished versions whose folder is gone. */
        if (!present && x->state == SV_END && x->refs == 0) {
            *pp = x->next;
            veil_free(x);
            continue;
        }
        pp = &x->next;
    }
    pthread_mutex_unlock(&r->mu);
    while (to_free != NULL) {
        struct sv_version *next = to_free->next;
        version_unload_now(to_free);
        veil_free(to_free);
        to_free = next;
    }
}

static struct sv_model *find_model(struct sv_repo *r, const char *name);

/*
 * TF Serving assigns a version label only to a version that is AVAILABLE (ServerCore's
 * UpdateModelVersionLabelMap, unless --allow_version_labels_for_unavailable_models): the first
 * label of cfg that points elsewhere is refused with TF Serving's FAILED_PRECONDITION text.
 */
static veil_err check_labels(struct sv_repo *r, const struct sv_model_config *cfg,
                             struct veil_errbuf *eb)
{
    veil_err rc = VEIL_OK;
    if (r->allow_unavailable_labels)
        return VEIL_OK;
    pthread_mutex_lock(&r->mu);
    struct sv_model *m = find_model(r, cfg->name);
    for (size_t k = 0; k < cfg->n_labels && rc == VEIL_OK; k++) {
        bool available = false;
        for (struct sv_version *x = m != NULL ? m->versions : NULL; x != NULL && !available;
             x = x->next)
            available = x->version == cfg->labels[k].version && x->state == SV_AVAILABLE;
        if (!available)
            rc = veil_errf(eb, VEIL_E_STATE,
                           "Request to assign label to version %lld of model %s, which is not "
                           "currently available for inference",
                           (long long)cfg->labels[k].version, cfg->name);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void veil__serve_repo_scan(struct sv_repo *r)
{
    for (size_t i = 0; i < r->n_models; i++)
        scan_model(r, r->models[i]);
    if (!atomic_load(&r->first_scan_done)) {
        /* The config's labels are checked once its versions have loaded, as TF Serving
         * does at start; a refused label stops the server before it ever reports ready. */
        struct veil_errbuf eb = {{0}};
        veil_err rc = VEIL_OK;
        for (size_t i = 0; i < r->n_models && rc == VEIL_OK; i++)
            if (!r->models[i]->removed)
                rc = check_labels(r, &r->models[i]->cfg, &eb);
        if (rc != VEIL_OK) {
            snprintf(r->fatal_msg, sizeof(r->fatal_msg), "%s", eb.msg);
            atomic_store(&r->fatal, true);
            VEIL_LOG_ERR("%s", r->fatal_msg);
            if (r->on_fatal != NULL)
                r->on_fatal(r->on_fatal_ud);
        }
    }
    atomic_store(&r->first_scan_done, true);
}

/* Re-reads the model config file; a file that does not parse keeps the current models. */
static void reload_config(struct sv_repo *r)
{
    struct veil_buf text;
    struct veil_arena a;
    struct veil_errbuf eb = {{0}};
    struct sv_model_config *cfgs = NULL;
    size_t n = 0;
    veil_buf_init(&text, VEIL_LIMIT_CONFIG_FILE);
    veil_arena_init(&a, 16u << 10, VEIL_LIMIT_CONFIG_FILE * 4);
    veil_err rc = veil_file_read_all(r->config_path, VEIL_LIMIT_CONFIG_FILE, &text, &eb);
    if (rc == VEIL_OK)
        rc = veil__serve_parse_model_config(veil_buf_span(&text), &a, &cfgs, &n, &eb);
    /* Labels must point at versions that are AVAILABLE now, else nothing of the file applies. */
    for (size_t i = 0; i < n && rc == VEIL_OK; i++)
        rc = check_labels(r, &cfgs[i], &eb);
    if (rc == VEIL_OK)
        rc = veil__serve_repo_reconfigure(r, cfgs, n, &eb);
    if (rc != VEIL_OK)
        VEIL_LOG_ERR("model config %s not reloaded, keeping the current models: %s", r->config_path,
                     veil_errbuf_msg(&eb, rc));
    veil_arena_release(&a);
    veil_buf_release(&text);
}

static void *poller_main(void *arg)
{
    struct sv_repo *r = arg;
    const uint64_t never = UINT64_MAX;
    uint64_t now = veil_time_mono_ns();
    uint64_t next_scan = r->poll_s > 0 ? now + (uint64_t)r->poll_s * 1000000000ULL : never;
    uint64_t next_cfg = r->config_path != NULL && r->config_poll_s > 0
                            ? now + (uint64_t)r->config_poll_s * 1000000000ULL
                            : never;
    veil__serve_repo_scan(r);
    pthread_mutex_lock(&r->mu);
    while (!r->stop && (next_scan != never || next_cfg != never)) {
        uint64_t until = next_scan < next_cfg ? next_scan : next_cfg;
        now = veil_time_mono_ns();
        if (now < until) {
            uint64_t wait = until - now;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + wait % 1000000000ULL;
            ts.tv_sec += (time_t)(wait / 1000000000ULL + ns / 1000000000ULL);
            ts.tv_nsec = (long)(ns % 1000000000ULL);
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&r->mu);
        if (now >= next_cfg) {
            reload_config(r);
            next_cfg = now + (uint64_t)r->config_poll_s * 1000000000ULL;
            veil__serve_repo_scan(r);
        }
        if (now >= next_scan) {
            veil__serve_repo_scan(r);
            next_scan = now + (uint64_t)r->poll_s * 1000000000ULL;
        }
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

veil_err veil__serve_repo_start(struct sv_repo *r, const char *config_path, int64_t config_poll_s,
                                struct veil_errbuf *eb)
{
    if (config_path != NULL && config_poll_s > 0) {
        r->config_path = veil_strdup(config_path);
        if (r->config_path == NULL)
            return VEIL_E_NOMEM;
        r->config_poll_s = config_poll_s;
    }
    /* Loading can take long (large models, key release): the first scan runs on the
     * repository thread too, and readiness reports when it is done. */
    if (pthread_create(&r->poller, NULL, poller_main, r) != 0)
        return veil_errf(eb, VEIL_E_INTERNAL, "cannot start the repository thread");
    r->poller_started = true;
    return VEIL_OK;
}

veil_err veil__serve_repo_reconfigure(struct sv_repo *r, const struct sv_model_config *cfgs,
                                      size_t n, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_OK;
    if (n > SV_MAX_MODELS)
        return veil_errf(eb, VEIL_E_LIMIT, "more than %u models", SV_MAX_MODELS);
    for (size_t i = 0; i < n && rc == VEIL_OK; i++) {
        struct veil_arena a;
        struct sv_model_config cfg;
        veil_arena_init(&a, 4096, VEIL_LIMIT_CONFIG_FILE);
        if ((rc = copy_config(&a, &cfgs[i], &cfg)) != VEIL_OK) {
            veil_arena_release(&a);
            break;
        }
        struct sv_model *m = NULL;
        for (size_t k = 0; k < r->n_models && m == NULL; k++)
            if (strcmp(r->models[k]->cfg.name, cfg.name) == 0)
                m = r->models[k];
        if (m != NULL) {
            /* Readers of cfg hold the mutex; the repository thread (this one) is the only
             * other user, so the old strings can go once the swap is done. */
            struct veil_arena old;
            pthread_mutex_lock(&r->mu);
            old = m->cfg_arena;
            m->cfg = cfg;
            m->cfg_arena = a;
            if (m->removed)
                VEIL_LOG_INFO("model %s is configured again", cfg.name);
            m->removed = false;
            pthread_mutex_unlock(&r->mu);
            veil_arena_release(&old);
            continue;
        }
        m = veil_calloc(1, sizeof(*m));
        struct sv_model **grown =
            m != NULL ? veil_reallocarray(NULL, r->n_models + 1, sizeof(*grown)) : NULL;
        if (grown == NULL) {
            veil_free(m);
            veil_arena_release(&a);
            rc = VEIL_E_NOMEM;
            break;
        }
        m->cfg = cfg;
        m->cfg_arena = a;
        m->repo = r;
        pthread_mutex_lock(&r->mu);
        if (r->n_models > 0)
            memcpy(grown, r->models, r->n_models * sizeof(*grown));
        grown[r->n_models] = m;
        struct sv_model **old = r->models;
        r->models = grown;
        r->n_models++;
        pthread_mutex_unlock(&r->mu);
        veil_free(old);
        if (r->poller_started)
            VEIL_LOG_INFO("model %s added", cfg.name);
    }
    if (rc != VEIL_OK)
        return rc;
    /* Models missing from the new list are unloaded by the next scan. */
    pthread_mutex_lock(&r->mu);
    for (size_t k = 0; k < r->n_models; k++) {
        bool keep = false;
        for (size_t i = 0; i < n && !keep; i++)
            keep = strcmp(r->models[k]->cfg.name, cfgs[i].name) == 0;
        if (!keep && !r->models[k]->removed) {
            r->models[k]->removed = true;
            VEIL_LOG_INFO("model %s removed from the config", r->models[k]->cfg.name);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return VEIL_OK;
}

/* ---- Lookups ---- */

static struct sv_model *find_model(struct sv_repo *r, const char *name)
{
    for (size_t i = 0; i < r->n_models; i++)
        if (!r->models[i]->removed && strcmp(r->models[i]->cfg.name, name) == 0)
            return r->models[i];
    return NULL;
}

bool veil__serve_repo_acquire(struct sv_repo *r, const char *name, bool has_version,
                              int64_t version, const char *label, struct sv_version **out,
                              struct sv_status *st)
{
    *out = NULL;
    pthread_mutex_lock(&r->mu);
    struct sv_model *m = find_model(r, name);
    bool ok = false;
    if (label != NULL && label[0] != '\0') {
        bool found = false;
        for (size_t i = 0; m != NULL && i < m->cfg.n_labels; i++)
            if (strcmp(m->cfg.labels[i].name, label) == 0) {
                version = m->cfg.labels[i].version;
                found = true;
            }
        if (m == NULL) {
            sv_fail(st, VEIL_GRPC_NOT_FOUND, "Servable not found for request: Latest(%s)", name);
            goto out;
        }
        if (!found) {
            sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "Unrecognized servable version label: %s",
                    label);
            goto out;
        }
        has_version = true;
    }
    if (m != NULL) {
        for (struct sv_version *x = m->versions; x != NULL; x = x->next) {
            if (x->state != SV_AVAILABLE || (has_version && x->version != version))
                continue;
            x->refs++;
            *out = x;
            ok = true;
            goto out;
        }
    }
    if (has_version)
        sv_fail(st, VEIL_GRPC_NOT_FOUND, "Servable not found for request: Specific(%s, %lld)", name,
                (long long)version);
    else
        sv_fail(st, VEIL_GRPC_NOT_FOUND, "Servable not found for request: Latest(%s)", name);
out:
    pthread_mutex_unlock(&r->mu);
    return ok;
}

void veil__serve_repo_release(struct sv_repo *r, struct sv_version *v)
{
    if (v == NULL)
        return;
    /* An UNLOADING version is freed by the next scan once nobody holds it: freeing here could
     * run on one of its own batch threads, which cannot join themselves. */
    pthread_mutex_lock(&r->mu);
    v->refs--;
    pthread_mutex_unlock(&r->mu);
}

bool veil__serve_repo_status(struct sv_repo *r, const char *name, bool has_version, int64_t version,
                             struct sv_version_status *out, size_t cap, size_t *n,
                             struct sv_status *st)
{
    bool ok = false;
    *n = 0;
    pthread_mutex_lock(&r->mu);
    struct sv_model *m = find_model(r, name);
    if (m == NULL || m->versions == NULL) {
        sv_fail(st, VEIL_GRPC_NOT_FOUND, "Could not find any versions of model %s", name);
        goto out;
    }
    for (struct sv_version *x = m->versions; x != NULL && *n < cap; x = x->next) {
        if (has_version && x->version != version)
            continue;
        struct sv_version_status *s = &out[(*n)++];
        s->version = x->version;
        s->state = x->state == SV_UNLOADING ? SV_UNLOADING : (int)x->state;
        s->err_code = x->err_code;
        snprintf(s->err_msg, sizeof(s->err_msg), "%s", x->err_msg);
    }
    if (*n == 0) {
        sv_fail(st, VEIL_GRPC_NOT_FOUND, "Could not find version %lld of model %s",
                (long long)version, name);
        goto out;
    }
    ok = true;
out:
    pthread_mutex_unlock(&r->mu);
    return ok;
}

bool veil__serve_repo_ready(struct sv_repo *r)
{
    if (!atomic_load(&r->first_scan_done) || atomic_load(&r->fatal))
        return false;
    bool ready = true;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_models && ready; i++) {
        bool any = r->models[i]->removed;
        for (struct sv_version *x = r->models[i]->versions; x != NULL && !any; x = x->next)
            any = x->state == SV_AVAILABLE;
        ready = any;
    }
    pthread_mutex_unlock(&r->mu);
    return ready;
}

static const char *state_name(int s)
{
    switch (s) {
    case SV_START:
        return "START";
    case SV_LOADING:
        return "LOADING";
    case SV_AVAILABLE:
        return "AVAILABLE";
    case SV_UNLOADING:
        return "UNLOADING";
    case SV_END:
        return "END";
    default:
        return "UNKNOWN";
    }
}

veil_err veil__serve_repo_metrics(struct sv_repo *r, struct veil_buf *b)
{
    veil_err rc = veil_buf_append_str(b, "# TYPE :veil:serving:model_version_state gauge\n");
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; rc == VEIL_OK && i < r->n_models; i++) {
        char label[2 * SV_NAME_MAX + 1];
        veil__serve_metrics_escape(r->models[i]->cfg.name, label, sizeof(label));
        for (struct sv_version *x = r->models[i]->versions; rc == VEIL_OK && x != NULL; x = x->next)
            rc = veil_buf_appendf(b,
                                  ":veil:serving:model_version_state{model_name=\"%s\","
                                  "version=\"%lld\",state=\"%s\"} 1\n",
                                  label, (long long)x->version, state_name(x->state));
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}
