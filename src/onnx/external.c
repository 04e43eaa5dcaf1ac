/*
 * Sources of ONNX external data (docs/format/external-data.md): a folder on disk, for
 * plaintext models, and a bundle, the plaintext of a sealed model that holds the model and
 * every file its tensors name. The folder source is the onnx module's only I/O; the bundle
 * reader is a pure function of its bytes.
 */
#include "veil/onnx.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- Name lookup shared by both sources ---- */

/* Open addressing over twice the file cap: a load factor of at most one half. */
#define SLOTS (2u * VEIL_ONNX_BUNDLE_MAX_FILES)

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* The slot of name in a table whose slots hold index + 1 into names (0: empty). */
static uint32_t *slot_of(uint32_t *slots, const char *const *names, const char *name)
{
    uint32_t i = name_hash(name) % SLOTS;
    while (slots[i] != 0 && strcmp(names[slots[i] - 1], name) != 0)
        i = (i + 1) % SLOTS;
    return &slots[i];
}

/* ---- The folder source ---- */

struct dir_file {
    void *map;
    size_t len;
};

struct veil_onnx_dir {
    int dirfd;
    char *real; /* the folder's real path, for kernels without openat2 */
    size_t n;
    char *names[VEIL_ONNX_MAX_EXTERNAL_FILES];
    struct dir_file files[VEIL_ONNX_MAX_EXTERNAL_FILES];
    uint32_t slots[SLOTS];
};

static veil_err errno_err(int e)
{
    return e == ENOENT ? VEIL_E_NOTFOUND : e == EACCES || e == EPERM ? VEIL_E_PERM : VEIL_E_IO;
}

veil_err veil_onnx_dir_open(const char *dir, struct veil_onnx_dir **out, struct veil_errbuf *eb)
{
    *out = NULL;
    struct veil_onnx_dir *d = veil_calloc(1, sizeof(*d));
    if (d == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for an external data source");
    d->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->dirfd < 0) {
        int e = errno;
        veil_free(d);
        return veil_errf(eb, errno_err(e), "model folder %s: %s", dir, strerror(e));
    }
    char real[PATH_MAX];
    d->real = realpath(dir, real) != NULL ? veil_strdup(real) : NULL;
    if (d->real == NULL) {
        int e = errno;
        veil_onnx_dir_free(d);
        return veil_errf(eb, errno_err(e), "model folder %s: %s", dir, strerror(e));
    }
    *out = d;
    return VEIL_OK;
}

/*
 * Opens location below the folder. openat2's RESOLVE_BENEATH refuses (EXDEV) any path, symbolic
 * links included, that would leave the folder; where the kernel lacks openat2 the opened file's
 * real path is compared with the folder's instead.
 */
static int open_beneath(struct veil_onnx_dir *d, const char *location)
{
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    long fd = syscall(SYS_openat2, d->dirfd, location, &how, sizeof(how));
    if (fd >= 0 || errno != ENOSYS)
        return (int)fd;
    int f = openat(d->dirfd, location, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (f < 0)
        return -1;
    char link[64], real[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", f);
    ssize_t n = readlink(link, real, sizeof(real) - 1);
    size_t rl = strlen(d->real);
    if (n < 0 || (size_t)n <= rl || strncmp(real, d->real, rl) != 0 ||
        (real[rl] != '/' && strcmp(d->real, "/") != 0)) {
        close(f);
        errno = EXDEV;
        return -1;
    }
    return f;
}

static veil_err dir_get(void *ctx, const char *location, struct veil_span *bytes,
                        struct veil_errbuf *eb)
{
    struct veil_onnx_dir *d = ctx;
    uint32_t *slot = slot_of(d->slots, (const char *const *)d->names, location);
    if (*slot != 0) {
        const struct dir_file *f = &d->files[*slot - 1];
        *bytes = veil_span_make(f->map, f->len);
        return VEIL_OK;
    }
    if (d->n == VEIL_ONNX_MAX_EXTERNAL_FILES)
        return veil_errf(eb, VEIL_E_LIMIT, "the model names more than %u external data files",
                         VEIL_ONNX_MAX_EXTERNAL_FILES);
    int fd = open_beneath(d, location);
    if (fd < 0) {
        int e = errno;
        if (e == EXDEV || e == ELOOP)
            return veil_errf(eb, VEIL_E_PERM,
                             "external data file '%s' leads outside the model's folder", location);
        return veil_errf(eb, errno_err(e), "external data file '%s': %s", location, strerror(e));
    }
    veil_err rc = VEIL_OK;
    struct stat st;
    void *map = NULL;
    char *name = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc =
            veil_errf(eb, VEIL_E_FORMAT, "external data file '%s' is not a regular file", location);
        goto out;
    }
    if ((uint64_t)st.st_size > VEIL_LIMIT_BUNDLE_BYTES || (uint64_t)st.st_size > SIZE_MAX) {
        rc = veil_errf(eb, VEIL_E_LIMIT, "external data file '%s' is above the %llu-byte cap",
                       location, (unsigned long long)VEIL_LIMIT_BUNDLE_BYTES);
        goto out;
    }
    if (st.st_size > 0) {
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            map = NULL;
            rc = veil_errf(eb, VEIL_E_IO, "external data file '%s': cannot map it: %s", location,
                           strerror(errno));
            goto out;
        }
    }
    name = veil_strdup(location);
    if (name == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for an external data file");
        goto out;
    }
    d->names[d->n] = name;
    d->files[d->n] = (struct dir_file){map, (size_t)st.st_size};
    d->n++;
    *slot = (uint32_t)d->n;
    *bytes = veil_span_make(map, (size_t)st.st_size);
    map = NULL;
out:
    if (map != NULL)
        munmap(map, (size_t)st.st_size);
    close(fd);
    return rc;
}

struct veil_onnx_external veil_onnx_dir_external(struct veil_onnx_dir *d)
{
    return (struct veil_onnx_external){dir_get, d};
}

size_t veil_onnx_dir_count(const struct veil_onnx_dir *d)
{
    return d->n;
}

const char *veil_onnx_dir_location(const struct veil_onnx_dir *d, size_t i)
{
    VEIL_ASSERT(i < d->n);
    return d->names[i];
}

uint64_t veil_onnx_dir_size(const struct veil_onnx_dir *d, size_t i)
{
    VEIL_ASSERT(i < d->n);
    return d->files[i].len;
}

void veil_onnx_dir_free(struct veil_onnx_dir *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n; i++) {
        if (d->files[i].map != NULL)
            munmap(d->files[i].map, d->files[i].len);
        veil_free(d->names[i]);
    }
    if (d->dirfd >= 0)
        close(d->dirfd);
    veil_free(d->real);
    veil_free(d);
}

/* ---- The bundle ---- */

static const uint8_t BUNDLE_MAGIC[8] = {'V', 'E', 'I', 'L', 'B', 'N', 'D', 'L'};
#define BUNDLE_VERSION 1u
#define BUNDLE_FIXED 16u /* magic, version, reserved, count */

struct bundle_priv {
    struct veil_onnx_bundle_file files[VEIL_ONNX_BUNDLE_MAX_FILES];
    char *names[VEIL_ONNX_BUNDLE_MAX_FILES];
    uint32_t slots[SLOTS];
    uint64_t offs[VEIL_ONNX_BUNDLE_MAX_FILES], lens[VEIL_ONNX_BUNDLE_MAX_FILES];
};

veil_err veil_onnx_bundle_parse(struct veil_span bytes, struct veil_onnx_bundle *out,
                                struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    memset(out, 0, sizeof(*out));
    struct veil_span s = bytes, magic;
    uint16_t version = 0, reserved = 0;
    uint32_t n = 0;
    if (veil_span_get_bytes(&s, sizeof(BUNDLE_MAGIC), &magic) != VEIL_OK ||
        memcmp(magic.p, BUNDLE_MAGIC, sizeof(BUNDLE_MAGIC)) != 0)
        return veil_errf(eb, VEIL_E_FORMAT, "not a model bundle (bad magic)");
    if (veil_span_get_u16le(&s, &version) != VEIL_OK ||
        veil_span_get_u16le(&s, &reserved) != VEIL_OK || veil_span_get_u32le(&s, &n) != VEIL_OK)
        return veil_errf(eb, VEIL_E_FORMAT, "model bundle: truncated header");
    if (version != BUNDLE_VERSION)
        return veil_errf(eb, VEIL_E_UNSUPPORTED, "model bundle version %u is not supported (1 is)",
                         version);
    if (reserved != 0)
        return veil_errf(eb, VEIL_E_FORMAT, "model bundle: reserved field is %u, not 0", reserved);
    if (n == 0 || n > VEIL_ONNX_BUNDLE_MAX_FILES)
        return veil_errf(eb, VEIL_E_FORMAT, "model bundle: %u files (1 to %u allowed)", n,
                         VEIL_ONNX_BUNDLE_MAX_FILES);
    struct bundle_priv *p = veil_calloc(1, sizeof(*p));
    if (p == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for a model bundle");
    out->priv = p;
    uint64_t expect = 0; /* where the next file's data must start; known after the directory */
    uint64_t *offs = p->offs, *lens = p->lens;
    for (uint32_t i = 0; i < n; i++) {
        uint16_t nl = 0;
        struct veil_span name;
        if (veil_span_get_u16le(&s, &nl) != VEIL_OK || nl == 0 || nl > VEIL_ONNX_MAX_LOCATION ||
            veil_span_get_bytes(&s, nl, &name) != VEIL_OK ||
            veil_span_get_u64le(&s, &offs[i]) != VEIL_OK ||
            veil_span_get_u64le(&s, &lens[i]) != VEIL_OK) {
            rc = veil_errf(eb, VEIL_E_FORMAT,
                           "model bundle: directory entry %u is truncated or its name length is "
                           "out of range",
                           i);
            goto fail;
        }
        if (!veil_onnx_location_ok((const char *)name.p, name.len)) {
            rc = veil_errf(eb, VEIL_E_FORMAT,
                           "model bundle: entry %u's name is not a plain relative path", i);
            goto fail;
        }
        p->names[i] = veil_malloc(name.len + 1);
        if (p->names[i] == NULL) {
            rc = veil_errf(eb, VEIL_E_NOMEM, "no memory for a model bundle");
            goto fail;
        }
        memcpy(p->names[i], name.p, name.len);
        p->names[i][name.len] = '\0';
        uint32_t *slot = slot_of(p->slots, (const char *const *)p->names, p->names[i]);
        if (*slot != 0) {
            rc = veil_errf(eb, VEIL_E_FORMAT, "model bundle: entry %u repeats the name '%s'", i,
                           p->names[i]);
            goto fail;
        }
        *slot = i + 1;
    }
    expect = (uint64_t)(bytes.len - s.len);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t end;
        if (offs[i] != expect || __builtin_add_overflow(offs[i], lens[i], &end) ||
            end > bytes.len) {
            rc = veil_errf(eb, VEIL_E_FORMAT,
                           "model bundle: entry %u ('%s') holds bytes %llu+%llu, but its data "
                           "must start at %llu and lie within the bundle's %zu bytes",
                           i, p->names[i], (unsigned long long)offs[i], (unsigned long long)lens[i],
                           (unsigned long long)expect, bytes.len);
            goto fail;
        }
        p->files[i].name = p->names[i];
        p->files[i].bytes = veil_span_make(bytes.p + offs[i], (size_t)lens[i]);
        expect = end;
    }
    if (expect != bytes.len) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "model bundle: %llu bytes follow the last file",
                       (unsigned long long)(bytes.len - expect));
        goto fail;
    }
    out->files = p->files;
    out->n_files = n;
    return VEIL_OK;
fail:
    veil_onnx_bundle_release(out);
    return rc;
}

static veil_err bundle_get(void *ctx, const char *location, struct veil_span *bytes,
                           struct veil_errbuf *eb)
{
    const struct veil_onnx_bundle *b = ctx;
    struct bundle_priv *p = b->priv;
    uint32_t *slot = slot_of(p->slots, (const char *const *)p->names, location);
    /* Entry 0 is the model itself, never a data file. */
    if (*slot <= 1)
        return veil_errf(eb, VEIL_E_NOTFOUND, "external data file '%s' is not in the sealed bundle",
                         location);
    *bytes = b->files[*slot - 1].bytes;
    return VEIL_OK;
}

struct veil_onnx_external veil_onnx_bundle_external(const struct veil_onnx_bundle *b)
{
    return (struct veil_onnx_external){bundle_get, (void *)(uintptr_t)b};
}

void veil_onnx_bundle_release(struct veil_onnx_bundle *b)
{
    struct bundle_priv *p = b->priv;
    if (p != NULL) {
        for (size_t i = 0; i < VEIL_ONNX_BUNDLE_MAX_FILES; i++)
            veil_free(p->names[i]);
        veil_free(p);
    }
    memset(b, 0, sizeof(*b));
}

static veil_err put_le(struct veil_buf *out, uint64_t v, unsigned bytes)
{
    uint8_t le[8];
    for (unsigned i = 0; i < bytes; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    return veil_buf_append(out, le, bytes);
}

veil_err veil_onnx_bundle_head(const char *const *names, const uint64_t *sizes, size_t n,
                               struct veil_buf *out, struct veil_errbuf *eb)
{
    if (n == 0 || n > VEIL_ONNX_BUNDLE_MAX_FILES)
        return veil_errf(eb, VEIL_E_INVALID, "a bundle holds 1 to %u files, not %zu",
                         VEIL_ONNX_BUNDLE_MAX_FILES, n);
    uint64_t head = BUNDLE_FIXED;
    uint32_t *slots = veil_calloc(SLOTS, sizeof(*slots));
    if (slots == NULL)
        return veil_errf(eb, VEIL_E_NOMEM, "no memory for a bundle");
    veil_err rc = VEIL_OK;
    for (size_t i = 0; i < n && rc == VEIL_OK; i++) {
        size_t len = strlen(names[i]);
        uint32_t *slot = slot_of(slots, names, names[i]);
        if (!veil_onnx_location_ok(names[i], len))
            rc = veil_errf(eb, VEIL_E_INVALID, "'%.128s' is not a plain relative path", names[i]);
        else if (*slot != 0)
            rc = veil_errf(eb, VEIL_E_INVALID, "'%s' is named twice", names[i]);
        *slot = (uint32_t)i + 1;
        head += 2 + len + 16;
    }
    veil_free(slots);
    if (rc != VEIL_OK)
        return rc;
    uint64_t total = head;
    for (size_t i = 0; i < n; i++)
        if (__builtin_add_overflow(total, sizes[i], &total) || total > VEIL_LIMIT_BUNDLE_BYTES)
            return veil_errf(eb, VEIL_E_LIMIT, "the bundle would be above the %llu-byte cap",
                             (unsigned long long)VEIL_LIMIT_BUNDLE_BYTES);
    size_t start = out->len;
    rc = veil_buf_append(out, BUNDLE_MAGIC, sizeof(BUNDLE_MAGIC));
    if (rc == VEIL_OK)
        rc = put_le(out, BUNDLE_VERSION, 2);
    if (rc == VEIL_OK)
        rc = put_le(out, 0, 2);
    if (rc == VEIL_OK)
        rc = put_le(out, n, 4);
    uint64_t off = head;
    for (size_t i = 0; i < n && rc == VEIL_OK; i++) {
        size_t len = strlen(names[i]);
        rc = put_le(out, len, 2);
        if (rc == VEIL_OK)
            rc = veil_buf_append(out, names[i], len);
        if (rc == VEIL_OK)
            rc = put_le(out, off, 8);
        if (rc == VEIL_OK)
            rc = put_le(out, sizes[i], 8);
        off += sizes[i];
    }
    if (rc != VEIL_OK) {
        out->len = start;
        return veil_errf(eb, rc, "no memory for a bundle's directory");
    }
    return VEIL_OK;
}
