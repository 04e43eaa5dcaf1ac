/*
 * File helpers. Output files are written atomically: data goes to an unnamed O_TMPFILE file
 * in the target directory (so a crash or SIGKILL leaves nothing behind), and commit fsyncs
 * it, gives it a hidden name with linkat, renames it over the target and fsyncs the
 * directory. Where O_TMPFILE is unsupported, a hidden ".NAME.tmp.XXXXXX" file is used instead.
 * A hidden temporary left by a crash between link and rename is removed by the next open.
 */
#include "veil/base.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static veil_err errno_to_err(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return VEIL_E_NOTFOUND;
    case EACCES:
    case EPERM:
    case EROFS:
        return VEIL_E_PERM;
    case EEXIST:
        return VEIL_E_EXISTS;
    case ENOMEM:
        return VEIL_E_NOMEM;
    default:
        return VEIL_E_IO;
    }
}

veil_err veil_file_read_all(const char *path, size_t max, struct veil_buf *out,
                            struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return veil_errf(eb, errno_to_err(e), "%s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = veil_errf(eb, VEIL_E_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = veil_errf(eb, VEIL_E_INVALID, "%s: is a directory", path);
        goto out;
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max) {
        rc = veil_errf(eb, VEIL_E_LIMIT, "%s: file is %lld bytes, more than the limit of %zu", path,
                       (long long)st.st_size, max);
        goto out;
    }
    /*
     * A regular file's size is known: one allocation with a spare byte, so the read that sees
     * the end needs no growth (no doubling copies of a large model).
     */
    if (S_ISREG(st.st_mode) && st.st_size > 0 && (uint64_t)st.st_size < max - out->len &&
        out->len == 0 && veil_buf_reserve(out, (size_t)st.st_size + 1) == VEIL_OK)
        veil_advise_huge(out->p, out->cap); /* else the loop below grows it step by step */
    for (;;) {
        size_t want = 65536 < max - out->len ? 65536 : max - out->len;
        rc = veil_buf_reserve(out, out->cap > out->len + 1 ? 0 : want);
        if (rc != VEIL_OK && out->len == max) {
            /* Probe for one more byte beyond the cap: the file is too large. */
            uint8_t extra;
            ssize_t n = read(fd, &extra, 1);
            if (n == 0) {
                rc = VEIL_OK;
                break;
            }
            rc = veil_errf(eb, VEIL_E_LIMIT, "%s: larger than the limit of %zu bytes", path, max);
            goto out;
        }
        if (rc != VEIL_OK) {
            rc = veil_errf(eb, rc, "%s: %s", path, veil_err_str(rc));
            goto out;
        }
        size_t room = out->cap - out->len - 1;
        if (room > max - out->len)
            room = max - out->len;
        ssize_t n = read(fd, out->p + out->len, room);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = veil_errf(eb, VEIL_E_IO, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0) {
            rc = VEIL_OK;
            break;
        }
        out->len += (size_t)n;
        out->p[out->len] = 0;
    }
out:
    close(fd);
    return rc;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return veil_strdup(".");
    if (slash == path)
        return veil_strdup("/");
    return veil_strndup(path, (size_t)(slash - path));
}

static char *hidden_tmp_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t dlen = slash == NULL ? 0 : (size_t)(slash - path) + 1;
    const char *base = path + dlen;
    size_t n = strlen(path) + 32;
    char *t = veil_malloc(n);
    if (t == NULL)
        return NULL;
    uint8_t rnd[6];
    char hex[13];
    if (veil_random_bytes(rnd, sizeof(rnd)) != VEIL_OK) {
        veil_free(t);
        return NULL;
    }
    veil_hex_encode(rnd, sizeof(rnd), hex);
    snprintf(t, n, "%.*s.%s.tmp.%s", (int)dlen, path, base, hex);
    return t;
}

/*
 * Removes hidden temporaries of path (".NAME.tmp.<12 hex>") that a crash between linking and
 * renaming left behind. Writers of one path are expected to be serialised by their caller.
 */
static void remove_stale_temporaries(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash == NULL ? path : slash + 1;
    char *dir = dir_of(path);
    DIR *d = dir != NULL ? opendir(dir) : NULL;
    size_t bl = strlen(base);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (n[0] != '.' || strncmp(n + 1, base, bl) != 0 || strncmp(n + 1 + bl, ".tmp.", 5) != 0 ||
            strlen(n + 1 + bl + 5) != 12 || strspn(n + 1 + bl + 5, "0123456789abcdef") != 12)
            continue;
        char full[4096];
        snprintf(full, sizeof(full), "%s/%s", dir, n);
        unlink(full);
    }
    if (d != NULL)
        closedir(d);
    veil_free(dir);
}

static void atomic_reset(struct veil_atomic_file *af)
{
    af->fd = -1;
    af->path = NULL;
    af->tmp_path = NULL;
    af->no_replace = false;
}

veil_err veil_atomic_open(struct veil_atomic_file *af, const char *path, unsigned mode,
                          unsigned flags, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    char *dir = NULL;
    atomic_reset(af);
    af->no_replace = (flags & VEIL_ATOMIC_NO_REPLACE) != 0;
    if (af->no_replace && access(path, F_OK) == 0) {
        rc = veil_errf(eb, VEIL_E_EXISTS, "%s: already exists; refusing to overwrite it", path);
        goto out;
    }
    remove_stale_temporaries(path);
    af->path = veil_strdup(path);
    dir = dir_of(path);
    if (af->path == NULL || dir == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "out of memory");
        goto out;
    }
    af->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, (mode_t)mode);
    if (af->fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR || e == EACCES || e == EPERM || e == EROFS) {
            rc = veil_errf(eb, errno_to_err(e), "%s: cannot write in directory %s: %s", path, dir,
                           strerror(e));
            goto out;
        }
        /* The file system has no O_TMPFILE: fall back to a hidden named temporary. */
        af->tmp_path = hidden_tmp_name(path);
        if (af->tmp_path == NULL) {
            rc = veil_errf(eb, VEIL_E_NOMEM, "out of memory");
            goto out;
        }
        af->fd = open(af->tmp_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
        if (af->fd < 0) {
            e = errno;
            rc = veil_errf(eb, errno_to_err(e), "%s: %s", af->tmp_path, strerror(e));
            goto out;
        }
    }
    /* O_TMPFILE applies the umask; set the intended mode explicitly. */
    (void)fchmod(af->fd, (mode_t)mode);
    rc = VEIL_OK;
out:
    veil_free(dir);
    if (rc != VEIL_OK)
        veil_atomic_abort(af);
    return rc;
}

veil_err veil_atomic_write(struct veil_atomic_file *af, const void *p, size_t n,
                           struct veil_errbuf *eb)
{
    const uint8_t *q = p;
    while (n > 0) {
        ssize_t w = write(af->fd, q, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return veil_errf(eb, VEIL_E_IO, "%s: write failed: %s", af->path, strerror(errno));
        }
        q += w;
        n -= (size_t)w;
    }
    return VEIL_OK;
}

static veil_err fsync_dir(const char *path)
{
    char *dir = dir_of(path);
    if (dir == NULL)
        return VEIL_E_NOMEM;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    veil_free(dir);
    if (fd < 0)
        return VEIL_E_IO;
    int r = fsync(fd);
    close(fd);
    return r == 0 ? VEIL_OK : VEIL_E_IO;
}

veil_err veil_atomic_commit(struct veil_atomic_file *af, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    if (af->fd < 0 || af->path == NULL) {
        rc = veil_errf(eb, VEIL_E_STATE, "atomic file is not open");
        goto out;
    }
    if (fsync(af->fd) != 0) {
        rc = veil_errf(eb, VEIL_E_IO, "%s: fsync failed: %s", af->path, strerror(errno));
        goto out;
    }
    if (af->tmp_path == NULL) {
        /* Give the unnamed file a hidden name, then rename it into place. */
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", af->fd);
        af->tmp_path = hidden_tmp_name(af->path);
        if (af->tmp_path == NULL) {
            rc = veil_errf(eb, VEIL_E_NOMEM, "out of memory");
            goto out;
        }
        if (linkat(AT_FDCWD, proc, AT_FDCWD, af->tmp_path, AT_SYMLINK_FOLLOW) != 0) {
            int e = errno;
            veil_free(af->tmp_path);
            af->tmp_path = NULL;
            rc =
                veil_errf(eb, errno_to_err(e), "%s: cannot link output: %s", af->path, strerror(e));
            goto out;
        }
    }
    if (af->no_replace) {
        if (renameat2(AT_FDCWD, af->tmp_path, AT_FDCWD, af->path, RENAME_NOREPLACE) != 0) {
            int e = errno;
            rc = veil_errf(eb, errno_to_err(e), "%s: %s", af->path,
                           e == EEXIST ? "already exists; refusing to overwrite it" : strerror(e));
            goto out;
        }
    } else if (rename(af->tmp_path, af->path) != 0) {
        int e = errno;
        rc = veil_errf(eb, errno_to_err(e), "%s: rename failed: %s", af->path, strerror(e));
        goto out;
    }
    veil_free(af->tmp_path);
    af->tmp_path = NULL;
    if (fsync_dir(af->path) != VEIL_OK) {
        rc = veil_errf(eb, VEIL_E_IO, "%s: fsync of directory failed", af->path);
        goto out;
    }
    rc = VEIL_OK;
out:
    veil_atomic_abort(af);
    return rc;
}

void veil_atomic_abort(struct veil_atomic_file *af)
{
    if (af->fd >= 0)
        close(af->fd);
    if (af->tmp_path != NULL)
        unlink(af->tmp_path);
    veil_free(af->tmp_path);
    veil_free(af->path);
    atomic_reset(af);
}

veil_err veil_file_write_atomic(const char *path, struct veil_span data, unsigned mode,
                                unsigned flags, struct veil_errbuf *eb)
{
    struct veil_atomic_file af;
    veil_err rc = veil_atomic_open(&af, path, mode, flags, eb);
    if (rc != VEIL_OK)
        return rc;
    rc = veil_atomic_write(&af, data.p, data.len, eb);
    if (rc != VEIL_OK) {
        veil_atomic_abort(&af);
        return rc;
    }
    return veil_atomic_commit(&af, eb);
}

veil_err veil_file_pread_all(int fd, void *p, size_t n, uint64_t off)
{
    uint8_t *q = p;
    while (n > 0) {
        ssize_t r = pread(fd, q, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return VEIL_E_IO;
        }
        if (r == 0)
            return VEIL_E_INCOMPLETE;
        q += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return VEIL_OK;
}

veil_err veil_file_pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
    const uint8_t *q = p;
    while (n > 0) {
        ssize_t w = pwrite(fd, q, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return VEIL_E_IO;
        }
        q += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return VEIL_OK;
}
