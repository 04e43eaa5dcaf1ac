/*
 * The sealed model format (docs/format/sealed-model.md): a bounded header, a key commitment,
 * then AES-256-GCM chunks whose nonces carry the chunk index and a last-chunk flag.
 *
 * Invariants: the header is parsed with the span reader and authenticated (key commitment)
 * before any chunk is decrypted; a chunk's plaintext becomes visible to the caller only after
 * its tag verified (files: the output is an unnamed temporary until every chunk verified;
 * memory: the buffer is wiped on failure). Chunks are independent, so sealing and unsealing
 * run on a pool of worker threads that take chunk indices from an atomic counter.
 */
#include "veil/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint8_t MAGIC[8] = {'V', 'E', 'I', 'L', 'S', 'E', 'A', 'L'};
#define FIXED_HEADER_LEN 68u
#define MIN_HEADER_LEN (FIXED_HEADER_LEN + 5u)
#define MAX_PLAINTEXT (1ULL << 62)
#define KDF_LABEL "veil sealed model v1"

_Static_assert(FIXED_HEADER_LEN == 8 + 2 + 2 + 4 + 4 + 8 + 8 + VEIL_SEAL_SALT_LEN,
               "fixed header layout");
_Static_assert(VEIL_LIMIT_SEAL_NAME <= 255 && VEIL_LIMIT_SEAL_KEY_ID <= 255 &&
                   VEIL_LIMIT_SEAL_CONTENT_TYPE <= 255,
               "lengths are one byte");

/* Per-file key material and the header bytes; lives in secure memory. */
struct seal_keys {
    struct veil_seal_header hdr;
    uint8_t header[VEIL_LIMIT_SEAL_HEADER];
    uint8_t data_key[32];
    uint8_t commitment[VEIL_SEAL_COMMIT_LEN];
};

bool veil_seal_is_sealed(struct veil_span prefix)
{
    return prefix.len >= sizeof(MAGIC) && memcmp(prefix.p, MAGIC, sizeof(MAGIC)) == 0;
}

static bool printable(struct veil_span s, bool allow_slash)
{
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] < 0x21 || s.p[i] > 0x7e)
            return false;
        if (!allow_slash && (s.p[i] == '/' || s.p[i] == '\\'))
            return false;
    }
    return true;
}

static veil_err get_string(struct veil_span *s, size_t min, size_t max, bool allow_slash,
                           const char *what, char *out, struct veil_errbuf *eb)
{
    uint8_t n;
    struct veil_span v;
    if (veil_span_get_u8(s, &n) != VEIL_OK || veil_span_get_bytes(s, n, &v) != VEIL_OK)
        return veil_errf(eb, VEIL_E_FORMAT, "sealed header: %s runs past the header", what);
    if (n < min || n > max)
        return veil_errf(eb, VEIL_E_FORMAT, "sealed header: %s length %u is outside %zu..%zu", what,
                         n, min, max);
    if (!printable(v, allow_slash))
        return veil_errf(eb, VEIL_E_FORMAT, "sealed header: %s has a forbidden character", what);
    memcpy(out, v.p, n);
    out[n] = '\0';
    return VEIL_OK;
}

veil_err veil_seal_header_parse(struct veil_span bytes, struct veil_seal_header *out,
                                struct veil_errbuf *eb)
{
    struct veil_seal_header h;
    struct veil_span s = bytes, hs;
    uint8_t magic[8];
    memset(out, 0, sizeof(*out));
    memset(&h, 0, sizeof(h));
    if (bytes.len < 16 || veil_span_get_copy(&s, 8, magic) != VEIL_OK)
        return veil_errf(eb, VEIL_E_INCOMPLETE, "file too short for a sealed header (%zu bytes)",
                         bytes.len);
    if (memcmp(magic, MAGIC, 8) != 0)
        return veil_errf(eb, VEIL_E_FORMAT, "not a sealed model file (bad magic)");
    if (veil_span_get_u16be(&s, &h.format_version) != VEIL_OK ||
        veil_span_get_u16be(&s, &h.algorithm) != VEIL_OK ||
        veil_span_get_u32be(&s, &h.header_len) != VEIL_OK)
        return veil_errf(eb, VEIL_E_INCOMPLETE, "sealed header truncated");
    if (h.format_version != VEIL_SEAL_FORMAT_VERSION)
        return veil_errf(eb, VEIL_E_UNSUPPORTED, "sealed format version %u is not supported",
                         h.format_version);
    if (h.algorithm != VEIL_SEAL_ALG_AES256GCM_HKDF_SHA256)
        return veil_errf(eb, VEIL_E_UNSUPPORTED, "sealed algorithm %u is not supported",
                         h.algorithm);
    if (h.header_len < MIN_HEADER_LEN || h.header_len > VEIL_LIMIT_SEAL_HEADER)
        return veil_errf(eb, VEIL_E_FORMAT, "sealed header length %u is outside %u..%u",
                         h.header_len, MIN_HEADER_LEN, VEIL_LIMIT_SEAL_HEADER);
    /* The rest of the header is read from a view limited to header_len. */
    s = bytes;
    if (veil_span_get_bytes(&s, h.header_len, &hs) != VEIL_OK)
        return veil_errf(eb, VEIL_E_INCOMPLETE, "sealed header truncated: %zu of %u bytes",
                         bytes.len, h.header_len);
    if (veil_span_skip(&hs, 16) != VEIL_OK || veil_span_get_u32be(&hs, &h.chunk_size) != VEIL_OK ||
        veil_span_get_u64be(&hs, &h.plaintext_len) != VEIL_OK ||
        veil_span_get_u64be(&hs, &h.model_version) != VEIL_OK ||
        veil_span_get_copy(&hs, VEIL_SEAL_SALT_LEN, h.salt) != VEIL_OK)
        return veil_errf(eb, VEIL_E_FORMAT, "sealed header shorter than its fixed fields");
    if (h.chunk_size < VEIL_SEAL_MIN_CHUNK || h.chunk_size > VEIL_SEAL_MAX_CHUNK ||
        (h.chunk_size & (h.chunk_size - 1)) != 0)
        return veil_errf(eb, VEIL_E_FORMAT, "sealed chunk size %u is not a power of two in %u..%u",
                         h.chunk_size, VEIL_SEAL_MIN_CHUNK, VEIL_SEAL_MAX_CHUNK);
    if (h.plaintext_len > MAX_PLAINTEXT)
        return veil_errf(eb, VEIL_E_FORMAT, "sealed plaintext length is out of range");
    veil_err rc = get_string(&hs, 1, VEIL_LIMIT_SEAL_KEY_ID, true, "key ID", h.key_id, eb);
    if (rc == VEIL_OK)
        rc = get_string(&hs, 1, VEIL_LIMIT_SEAL_NAME, false, "model name", h.model_name, eb);
    if (rc == VEIL_OK)
        rc = get_string(&hs, 0, VEIL_LIMIT_SEAL_CONTENT_TYPE, true, "content type", h.content_type,
                        eb);
    if (rc != VEIL_OK)
        return rc;
    if (veil_span_expect_end(&hs) != VEIL_OK)
        return veil_errf(eb, VEIL_E_FORMAT, "sealed header has %zu unexpected trailing bytes",
                         hs.len);
    h.chunk_count = h.plaintext_len == 0 ? 1 : (h.plaintext_len - 1) / h.chunk_size + 1;
    h.sealed_len = (uint64_t)h.header_len + VEIL_SEAL_COMMIT_LEN + h.plaintext_len +
                   h.chunk_count * VEIL_SEAL_TAG_LEN;
    *out = h;
    return VEIL_OK;
}

/* Serialises a header for sealing into k->header and parses it back into k->hdr. */
static veil_err build_header(struct seal_keys *k, const char *key_id,
                             const struct veil_seal_params *p, uint64_t plen, const uint8_t *salt,
                             struct veil_errbuf *eb)
{
    const char *ctype = p->content_type != NULL ? p->content_type : "application/octet-stream";
    uint32_t chunk = p->chunk_size != 0 ? p->chunk_size : VEIL_SEAL_DEFAULT_CHUNK;
    size_t kl = strlen(key_id), nl = p->model_name != NULL ? strlen(p->model_name) : 0;
    size_t cl = strlen(ctype);
    if (nl == 0 || nl > VEIL_LIMIT_SEAL_NAME ||
        !printable(veil_span_make(p->model_name, nl), false))
        return veil_errf(eb, VEIL_E_INVALID,
                         "model name must be 1 to %d printable characters without '/'",
                         VEIL_LIMIT_SEAL_NAME);
    if (cl > VEIL_LIMIT_SEAL_CONTENT_TYPE || !printable(veil_span_make(ctype, cl), true))
        return veil_errf(eb, VEIL_E_INVALID, "content type must be at most %d printable characters",
                         VEIL_LIMIT_SEAL_CONTENT_TYPE);
    if (chunk < VEIL_SEAL_MIN_CHUNK || chunk > VEIL_SEAL_MAX_CHUNK || (chunk & (chunk - 1)) != 0)
        return veil_errf(eb, VEIL_E_INVALID, "chunk size must be a power of two in %u..%u",
                         VEIL_SEAL_MIN_CHUNK, VEIL_SEAL_MAX_CHUNK);
    if (plen > MAX_PLAINTEXT)
        return veil_errf(eb, VEIL_E_INVALID, "model too large to seal");
    struct veil_buf b;
    veil_buf_init(&b, VEIL_LIMIT_SEAL_HEADER);
    uint32_t hlen = (uint32_t)(FIXED_HEADER_LEN + 3 + kl + nl + cl);
    veil_err rc = veil_buf_append(&b, MAGIC, sizeof(MAGIC));
    if (rc == VEIL_OK)
        rc = veil_buf_append_u16be(&b, VEIL_SEAL_FORMAT_VERSION);
    if (rc == VEIL_OK)
        rc = veil_buf_append_u16be(&b, VEIL_SEAL_ALG_AES256GCM_HKDF_SHA256);
    if (rc == VEIL_OK)
        rc = veil_buf_append_u32be(&b, hlen);
    if (rc == VEIL_OK)
        rc = veil_buf_append_u32be(&b, chunk);
    if (rc == VEIL_OK)
        rc = veil_buf_append_u64be(&b, plen);
    if (rc == VEIL_OK)
        rc = veil_buf_append_u64be(&b, p->model_version);
    if (rc == VEIL_OK)
        rc = veil_buf_append(&b, salt, VEIL_SEAL_SALT_LEN);
    if (rc == VEIL_OK)
        rc = veil_buf_append_u8(&b, (uint8_t)kl);
    if (rc == VEIL_OK)
        rc = veil_buf_append(&b, key_id, kl);
    if (rc == VEIL_OK)
        rc = veil_buf_append_u8(&b, (uint8_t)nl);
    if (rc == VEIL_OK)
        rc = veil_buf_append(&b, p->model_name, nl);
    if (rc == VEIL_OK)
        rc = veil_buf_append_u8(&b, (uint8_t)cl);
    if (rc == VEIL_OK)
        rc = veil_buf_append(&b, ctype, cl);
    if (rc != VEIL_OK) {
        veil_buf_release(&b);
        return veil_errf(eb, rc, "cannot build sealed header: %s", veil_err_str(rc));
    }
    VEIL_ASSERT(b.len == hlen);
    memcpy(k->header, b.p, b.len);
    veil_buf_release(&b);
    return veil_seal_header_parse(veil_span_make(k->header, hlen), &k->hdr, eb);
}

/* HKDF-SHA256 as specified: data key and key commitment from the model key and the header. */
static veil_err derive_keys(struct seal_keys *k, const struct veil_model_key *key,
                            struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_CRYPTO;
    uint8_t info[sizeof(KDF_LABEL) - 1 + 32];
    uint8_t okm[64];
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *kctx = NULL;
    memcpy(info, KDF_LABEL, sizeof(KDF_LABEL) - 1);
    if (veil_sha256(veil_span_make(k->header, k->hdr.header_len), info + sizeof(KDF_LABEL) - 1) !=
        VEIL_OK)
        goto out;
    kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    if (kctx == NULL)
        goto out;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)key->key,
                                          VEIL_MODEL_KEY_LEN),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, k->hdr.salt, VEIL_SEAL_SALT_LEN),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, sizeof(info)),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_KDF_derive(kctx, okm, sizeof(okm), params) != 1)
        goto out;
    memcpy(k->data_key, okm, 32);
    memcpy(k->commitment, okm + 32, 32);
    rc = VEIL_OK;
out:
    if (rc != VEIL_OK)
        rc = veil_crypto_openssl_err(eb, rc, "key derivation failed");
    veil_memzero(okm, sizeof(okm));
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return rc;
}

static void make_nonce(uint64_t idx, bool last, uint8_t nonce[12])
{
    nonce[0] = nonce[1] = nonce[2] = 0;
    for (int i = 0; i < 8; i++)
        nonce[3 + i] = (uint8_t)(idx >> (56 - 8 * i));
    nonce[11] = last ? 1 : 0;
}

/* ---- The chunk worker pool ---- */

/* A piece of a plaintext made of several: bytes in memory, or a file's bytes read by fd. */
struct seal_piece {
    int fd; /* -1: mem */
    const uint8_t *mem;
    uint64_t start; /* offset of the piece in the plaintext */
    uint64_t len;
};

/*
 * Copies plaintext bytes [off, off + len) from the pieces into dst. Returns VEIL_OK, or the read
 * error (VEIL_E_INCOMPLETE: a file ended early).
 */
static veil_err gather(const struct seal_piece *p, size_t n, uint64_t off, size_t len, uint8_t *dst)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) { /* the last piece starting at or before off */
        size_t mid = (lo + hi) / 2;
        if (p[mid].start <= off)
            lo = mid;
        else
            hi = mid;
    }
    for (size_t i = lo; len > 0 && i < n; i++) {
        if (off >= p[i].start + p[i].len)
            continue;
        uint64_t in = off - p[i].start;
        size_t take = (size_t)(p[i].len - in < len ? p[i].len - in : len);
        if (p[i].fd < 0) {
            memcpy(dst, p[i].mem + in, take);
        } else {
            veil_err rc = veil_file_pread_all(p[i].fd, dst, take, in);
            if (rc != VEIL_OK)
                return rc;
        }
        dst += take;
        off += take;
        len -= take;
    }
    return len == 0 ? VEIL_OK : VEIL_E_INCOMPLETE;
}

struct job {
    const struct seal_keys *k;
    bool encrypt;
    int in_fd; /* -1: read from in_mem, or from parts */
    const uint8_t *in_mem;
    const struct seal_piece *parts; /* the plaintext as pieces (veil_seal_parts) */
    size_t n_parts;
    int out_fd; /* -1: write to out_mem */
    uint8_t *out_mem;
    _Atomic uint64_t next;
    _Atomic uint64_t done_bytes;
    _Atomic bool failed;
    pthread_mutex_t lock;
    uint64_t fail_chunk; /* lowest failing chunk, under lock */
    veil_err fail_rc;
    char fail_msg[VEIL_LIMIT_ERRMSG];
    veil_progress_fn progress;
    void *progress_ud;
};

static void job_fail(struct job *j, uint64_t chunk, veil_err rc, const char *msg)
{
    pthread_mutex_lock(&j->lock);
    if (!atomic_load(&j->failed) || chunk < j->fail_chunk) {
        j->fail_chunk = chunk;
        j->fail_rc = rc;
        snprintf(j->fail_msg, sizeof(j->fail_msg), "%s", msg);
    }
    atomic_store(&j->failed, true);
    pthread_mutex_unlock(&j->lock);
}

/* Plaintext and sealed offsets and sizes of chunk i. */
static void chunk_geometry(const struct veil_seal_header *h, uint64_t i, uint64_t *pt_off,
                           size_t *pt_len, uint64_t *ct_off)
{
    *pt_off = i * h->chunk_size;
    *pt_len = i + 1 == h->chunk_count ? (size_t)(h->plaintext_len - *pt_off) : h->chunk_size;
    *ct_off = (uint64_t)h->header_len + VEIL_SEAL_COMMIT_LEN +
              i * ((uint64_t)h->chunk_size + VEIL_SEAL_TAG_LEN);
}

/* A read-only, page-aligned mapping of [off, off + len) of an input file, unmapped after use
 * so that memory stays bounded whatever the file's size. */
struct window {
    void *base;
    size_t len;
};

static const uint8_t *window_map(struct window *w, int fd, uint64_t off, size_t len)
{
    static size_t page;
    if (page == 0)
        page = (size_t)sysconf(_SC_PAGESIZE);
    if (len == 0)
        return NULL;
    uint64_t aligned = off / page * page;
    size_t span = (size_t)(off - aligned) + len;
    void *p = mmap(NULL, span, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, (off_t)aligned);
    if (p == MAP_FAILED)
        return NULL;
    w->base = p;
    w->len = span;
    return (const uint8_t *)p + (off - aligned);
}

static void window_unmap(struct window *w)
{
    if (w->base != NULL)
        munmap(w->base, w->len);
    w->base = NULL;
}

static void run_worker(struct job *j, bool reports_progress)
{
    const struct veil_seal_header *h = &j->k->hdr;
    size_t bufsize = (size_t)h->chunk_size + VEIL_SEAL_TAG_LEN;
    uint8_t *inbuf = NULL, *outbuf = NULL;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    char msg[VEIL_LIMIT_ERRMSG];
    /* Buffers that hold plaintext live in secure memory. */
    if (c == NULL || veil_secure_alloc(bufsize, (void **)&inbuf) != VEIL_OK ||
        veil_secure_alloc(bufsize, (void **)&outbuf) != VEIL_OK) {
        job_fail(j, 0, VEIL_E_NOMEM, "out of memory for chunk buffers");
        goto out;
    }
    if (EVP_CipherInit_ex2(c, EVP_aes_256_gcm(), j->k->data_key, NULL, j->encrypt, NULL) != 1) {
        job_fail(j, 0, VEIL_E_CRYPTO, "cannot initialise AES-256-GCM");
        goto out;
    }
    for (;;) {
        uint64_t i = atomic_fetch_add(&j->next, 1);
        if (i >= h->chunk_count || atomic_load(&j->failed))
            break;
        uint64_t pt_off, ct_off;
        size_t pt_len;
        chunk_geometry(h, i, &pt_off, &pt_len, &ct_off);
        bool last = i + 1 == h->chunk_count;
        uint8_t nonce[12];
        make_nonce(i, last, nonce);
        size_t in_len = j->encrypt ? pt_len : pt_len + VEIL_SEAL_TAG_LEN;
        uint64_t in_off = j->encrypt ? pt_off : ct_off;
        size_t out_len = j->encrypt ? pt_len + VEIL_SEAL_TAG_LEN : pt_len;
        uint64_t out_off = j->encrypt ? ct_off : pt_off;
        struct window inw = {0};
        const uint8_t *in = j->in_mem != NULL ? j->in_mem + in_off : NULL;
        if (j->parts != NULL) {
            veil_err rc = gather(j->parts, j->n_parts, in_off, in_len, inbuf);
            in = inbuf;
            if (rc != VEIL_OK) {
                snprintf(msg, sizeof(msg), "chunk %llu: %s", (unsigned long long)i,
                         rc == VEIL_E_INCOMPLETE ? "input ended early (file truncated or changed)"
                                                 : "read failed");
                job_fail(j, i, rc, msg);
                break;
            }
        } else if (j->in_fd >= 0) {
            /* Map the chunk straight from the page cache; fall back to a copying read. */
            in = window_map(&inw, j->in_fd, in_off, in_len);
            veil_err rc = VEIL_OK;
            if (in == NULL) {
                rc = veil_file_pread_all(j->in_fd, inbuf, in_len, in_off);
                in = inbuf;
            }
            if (rc != VEIL_OK) {
                snprintf(msg, sizeof(msg), "chunk %llu: %s", (unsigned long long)i,
                         rc == VEIL_E_INCOMPLETE ? "input ended early (file truncated or changed)"
                                                 : "read failed");
                job_fail(j, i, rc, msg);
                break;
            }
        }
        /* In memory, output goes straight to its place; the caller releases it only once
         * every chunk verified (files: it is written only after its tag verified). */
        uint8_t *out = outbuf;
        if (j->out_mem != NULL)
            out = j->out_mem + out_off;

        int n = 0, fin = 0;
        bool ok = EVP_CipherInit_ex(c, NULL, NULL, NULL, nonce, j->encrypt) == 1 &&
                  EVP_CipherUpdate(c, NULL, &n, j->k->header, (int)h->header_len) == 1;
        if (ok && pt_len > 0)
            ok = EVP_CipherUpdate(c, out, &n, in, (int)pt_len) == 1;
        bool auth_failed = false;
        if (ok && j->encrypt) {
            ok = EVP_CipherFinal_ex(c, out + pt_len, &fin) == 1 &&
                 EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, VEIL_SEAL_TAG_LEN, out + pt_len) == 1;
        } else if (ok) {
            auth_failed = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, VEIL_SEAL_TAG_LEN,
                                              (void *)(uintptr_t)(in + pt_len)) != 1 ||
                          EVP_CipherFinal_ex(c, out + pt_len, &fin) != 1;
            if (auth_failed)
                veil_memzero(out, pt_len);
        }
        bool wrote = true;
        if (ok && !auth_failed && j->out_fd >= 0 && out == outbuf)
            wrote = veil_file_pwrite_all(j->out_fd, out, out_len, out_off) == VEIL_OK;
        window_unmap(&inw);
        if (auth_failed) {
            snprintf(msg, sizeof(msg),
                     "chunk %llu of %llu failed authentication: the file was modified, "
                     "reordered or truncated",
                     (unsigned long long)i, (unsigned long long)h->chunk_count);
            job_fail(j, i, VEIL_E_AUTH, msg);
            break;
        }
        if (!ok) {
            job_fail(j, i, VEIL_E_CRYPTO, "AES-256-GCM failed");
            break;
        }
        if (!wrote) {
            snprintf(msg, sizeof(msg), "chunk %llu: write failed: %s", (unsigned long long)i,
                     strerror(errno));
            job_fail(j, i, VEIL_E_IO, msg);
            break;
        }
        uint64_t done = atomic_fetch_add(&j->done_bytes, pt_len) + pt_len;
        if (reports_progress && j->progress != NULL)
            j->progress(j->progress_ud, done);
    }
out:
    EVP_CIPHER_CTX_free(c);
    veil_secure_free(inbuf, bufsize);
    veil_secure_free(outbuf, bufsize);
}

static void *worker_main(void *arg)
{
    run_worker(arg, false);
    return NULL;
}

/* Runs the job on `threads` threads (the caller's among them) and reports the first failure. */
static veil_err run_job(struct job *j, unsigned threads, struct veil_errbuf *eb)
{
    pthread_t tids[64];
    unsigned started = 0;
    if (threads == 0)
        threads = veil_cpu_count();
    if (threads > 64)
        threads = 64;
    if (threads > j->k->hdr.chunk_count)
        threads = (unsigned)j->k->hdr.chunk_count;
    pthread_mutex_init(&j->lock, NULL);
    for (unsigned t = 1; t < threads; t++) {
        if (pthread_create(&tids[started], NULL, worker_main, j) != 0)
            break; /* fewer threads is slower, not wrong */
        started++;
    }
    run_worker(j, true);
    for (unsigned t = 0; t < started; t++)
        pthread_join(tids[t], NULL);
    pthread_mutex_destroy(&j->lock);
    if (atomic_load(&j->failed))
        return veil_errf(eb, j->fail_rc, "%s", j->fail_msg);
    return VEIL_OK;
}

static void job_init(struct job *j, const struct seal_keys *k, bool encrypt)
{
    memset(j, 0, sizeof(*j));
    j->k = k;
    j->encrypt = encrypt;
    j->in_fd = -1;
    j->out_fd = -1;
    atomic_init(&j->next, 0);
    atomic_init(&j->done_bytes, 0);
    atomic_init(&j->failed, false);
}

static veil_err keys_new(struct seal_keys **out)
{
    void *p;
    veil_err rc = veil_secure_alloc(sizeof(struct seal_keys), &p);
    *out = p;
    return rc;
}

static void keys_free(struct seal_keys *k)
{
    veil_secure_free(k, sizeof(*k));
}

/* ---- Sealing ---- */

static veil_err prepare_seal(const struct veil_model_key *key, const struct veil_seal_params *p,
                             uint64_t plen, const uint8_t *salt, struct seal_keys **out,
                             struct veil_errbuf *eb)
{
    struct seal_keys *k = NULL;
    uint8_t rsalt[VEIL_SEAL_SALT_LEN];
    *out = NULL;
    if (keys_new(&k) != VEIL_OK)
        return veil_errf(eb, VEIL_E_NOMEM, "out of memory");
    if (salt == NULL) {
        if (veil_random_bytes(rsalt, sizeof(rsalt)) != VEIL_OK) {
            keys_free(k);
            return veil_errf(eb, VEIL_E_CRYPTO, "random number generator failed");
        }
        salt = rsalt;
    }
    veil_err rc = build_header(k, key->id, p, plen, salt, eb);
    if (rc == VEIL_OK)
        rc = derive_keys(k, key, eb);
    if (rc != VEIL_OK) {
        keys_free(k);
        return rc;
    }
    *out = k;
    return VEIL_OK;
}

veil_err veil_seal_mem(struct veil_span plaintext, const struct veil_model_key *key,
                       const struct veil_seal_params *params, const uint8_t *salt,
                       struct veil_buf *out, struct veil_errbuf *eb)
{
    struct seal_keys *k = NULL;
    veil_err rc = prepare_seal(key, params, plaintext.len, salt, &k, eb);
    if (rc != VEIL_OK || k == NULL)
        return rc != VEIL_OK ? rc : VEIL_E_INTERNAL;
    const struct veil_seal_header *h = &k->hdr;
    if (h->sealed_len > SIZE_MAX ||
        (rc = veil_buf_reserve(out, (size_t)h->sealed_len)) != VEIL_OK) {
        rc = veil_errf(eb, rc == VEIL_OK ? VEIL_E_LIMIT : rc, "no room for the sealed output");
        goto out;
    }
    memcpy(out->p + out->len, k->header, h->header_len);
    memcpy(out->p + out->len + h->header_len, k->commitment, VEIL_SEAL_COMMIT_LEN);
    struct job j;
    job_init(&j, k, true);
    j.in_mem = plaintext.p;
    j.out_mem = out->p + out->len;
    rc = run_job(&j, 0, eb);
    if (rc == VEIL_OK)
        out->len += (size_t)h->sealed_len;
out:
    keys_free(k);
    return rc;
}

static veil_err open_input(const char *path, int *fd, uint64_t *size, struct veil_errbuf *eb)
{
    struct stat st;
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0) {
        int e = errno;
        return veil_errf(eb,
                         e == ENOENT   ? VEIL_E_NOTFOUND
                         : e == EACCES ? VEIL_E_PERM
                                       : VEIL_E_IO,
                         "%s: %s", path, strerror(e));
    }
    if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(*fd);
        *fd = -1;
        return veil_errf(eb, VEIL_E_INVALID, "%s: not a regular file", path);
    }
    *size = (uint64_t)st.st_size;
    return VEIL_OK;
}

veil_err veil_seal_parts(const struct veil_seal_part *parts, size_t n, const char *out_path,
                         const struct veil_model_key *key, const struct veil_seal_params *params,
                         veil_progress_fn progress, void *progress_ud, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct seal_piece *pieces = NULL;
    uint64_t *sizes = NULL;
    struct seal_keys *k = NULL;
    struct veil_atomic_file af = {.fd = -1};
    size_t opened = 0;
    uint64_t total = 0;
    if (n == 0 || n > VEIL_SEAL_MAX_PARTS)
        return veil_errf(eb, VEIL_E_INVALID, "%zu pieces to seal (1 to %u allowed)", n,
                         VEIL_SEAL_MAX_PARTS);
    pieces = veil_calloc(n, sizeof(*pieces));
    sizes = veil_calloc(n, sizeof(*sizes));
    if (pieces == NULL || sizes == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        pieces[i].fd = -1;
        if (parts[i].path != NULL) {
            rc = open_input(parts[i].path, &pieces[i].fd, &sizes[i], eb);
            if (rc != VEIL_OK)
                goto out;
            opened = i + 1;
        } else {
            pieces[i].mem = parts[i].mem.p;
            sizes[i] = parts[i].mem.len;
        }
        pieces[i].start = total;
        pieces[i].len = sizes[i];
        if (__builtin_add_overflow(total, sizes[i], &total)) {
            rc = veil_errf(eb, VEIL_E_LIMIT, "the input is too large");
            goto out;
        }
    }
    rc = prepare_seal(key, params, total, NULL, &k, eb);
    if (rc != VEIL_OK)
        goto out;
    rc = veil_atomic_open(&af, out_path, 0644, VEIL_ATOMIC_REPLACE, eb);
    if (rc != VEIL_OK)
        goto out;
    if (veil_file_pwrite_all(af.fd, k->header, k->hdr.header_len, 0) != VEIL_OK ||
        veil_file_pwrite_all(af.fd, k->commitment, VEIL_SEAL_COMMIT_LEN, k->hdr.header_len) !=
            VEIL_OK) {
        rc = veil_errf(eb, VEIL_E_IO, "%s: write failed: %s", out_path, strerror(errno));
        goto out;
    }
    struct job j;
    job_init(&j, k, true);
    /* One file maps its chunks straight from the page cache; several are gathered. */
    if (n == 1 && pieces[0].fd >= 0) {
        j.in_fd = pieces[0].fd;
    } else if (n == 1) {
        j.in_mem = pieces[0].mem;
    } else {
        j.parts = pieces;
        j.n_parts = n;
    }
    j.out_fd = af.fd;
    j.progress = progress;
    j.progress_ud = progress_ud;
    rc = run_job(&j, 0, eb);
    const char *first = parts[0].path != NULL ? parts[0].path : "input";
    if (rc != VEIL_OK) {
        (void)veil_err_prefix(eb, rc, "%s", first);
        goto out;
    }
    /* No input may have grown while it was read. */
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (pieces[i].fd >= 0 &&
            (fstat(pieces[i].fd, &st) != 0 || (uint64_t)st.st_size != sizes[i])) {
            rc = veil_errf(eb, VEIL_E_IO, "%s: input changed while it was sealed", parts[i].path);
            goto out;
        }
    }
    rc = veil_atomic_commit(&af, eb);
out:
    veil_atomic_abort(&af);
    for (size_t i = 0; i < opened; i++)
        if (pieces[i].fd >= 0)
            close(pieces[i].fd);
    veil_free(pieces);
    veil_free(sizes);
    keys_free(k);
    return rc;
}

veil_err veil_seal_file(const char *in_path, const char *out_path, const struct veil_model_key *key,
                        const struct veil_seal_params *params, veil_progress_fn progress,
                        void *progress_ud, struct veil_errbuf *eb)
{
    struct veil_seal_part part = {.path = in_path};
    return veil_seal_parts(&part, 1, out_path, key, params, progress, progress_ud, eb);
}

/* ---- Unsealing ---- */

/*
 * Checks a sealed file's header against its size, the key and the caller's expectations, in
 * the order that gives the most precise message, and derives the data key.
 */
static veil_err prepare_unseal(struct veil_span head, uint64_t file_size,
                               const struct veil_model_key *key,
                               const struct veil_seal_expect *expect, struct seal_keys **out,
                               struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct seal_keys *k = NULL;
    *out = NULL;
    if (keys_new(&k) != VEIL_OK)
        return veil_errf(eb, VEIL_E_NOMEM, "out of memory");
    rc = veil_seal_header_parse(head, &k->hdr, eb);
    if (rc == VEIL_E_INCOMPLETE)
        rc = veil_errf(eb, VEIL_E_INCOMPLETE, "file truncated: too short for its sealed header");
    if (rc != VEIL_OK)
        goto out;
    const struct veil_seal_header *h = &k->hdr;
    if (file_size < h->sealed_len) {
        rc = veil_errf(eb, VEIL_E_INCOMPLETE,
                       "file truncated: %llu bytes, but its header promises %llu",
                       (unsigned long long)file_size, (unsigned long long)h->sealed_len);
        goto out;
    }
    if (file_size > h->sealed_len) {
        rc = veil_errf(eb, VEIL_E_FORMAT,
                       "trailing data: %llu bytes after the last chunk (file extended)",
                       (unsigned long long)(file_size - h->sealed_len));
        goto out;
    }
    if (strcmp(h->key_id, key->id) != 0) {
        rc = veil_errf(eb, VEIL_E_MISMATCH, "file is sealed under key ID '%s', not '%s'", h->key_id,
                       key->id);
        goto out;
    }
    memcpy(k->header, head.p, h->header_len);
    if (head.len < (size_t)h->header_len + VEIL_SEAL_COMMIT_LEN) {
        rc = veil_errf(eb, VEIL_E_INCOMPLETE, "file truncated before its key commitment");
        goto out;
    }
    rc = derive_keys(k, key, eb);
    if (rc != VEIL_OK)
        goto out;
    if (!veil_memeq_ct(k->commitment, head.p + h->header_len, VEIL_SEAL_COMMIT_LEN)) {
        rc = veil_errf(eb, VEIL_E_AUTH, "wrong key or modified header (key commitment mismatch)");
        goto out;
    }
    /* The header is authentic from here on; compare what the caller expects. */
    if (expect != NULL && expect->model_name != NULL &&
        strcmp(expect->model_name, h->model_name) != 0) {
        rc = veil_errf(eb, VEIL_E_MISMATCH, "sealed model is named '%s', expected '%s'",
                       h->model_name, expect->model_name);
        goto out;
    }
    if (expect != NULL && expect->check_version && expect->model_version != h->model_version) {
        rc = veil_errf(eb, VEIL_E_MISMATCH, "sealed model has version %llu, expected %llu",
                       (unsigned long long)h->model_version,
                       (unsigned long long)expect->model_version);
        goto out;
    }
    *out = k;
    k = NULL;
    rc = VEIL_OK;
out:
    keys_free(k);
    return rc;
}

/* Reads the first bytes of a sealed file: enough for any header and its commitment. */
static veil_err read_head(int fd, uint64_t size, uint8_t *buf, size_t *len)
{
    size_t n = VEIL_LIMIT_SEAL_HEADER + VEIL_SEAL_COMMIT_LEN;
    if (size < n)
        n = (size_t)size;
    *len = n;
    return veil_file_pread_all(fd, buf, n, 0);
}

veil_err veil_unseal_file(const char *in_path, const char *out_path,
                          const struct veil_model_key *key, const struct veil_seal_expect *expect,
                          unsigned threads, veil_progress_fn progress, void *progress_ud,
                          struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    int in_fd = -1;
    uint64_t size;
    uint8_t head[VEIL_LIMIT_SEAL_HEADER + VEIL_SEAL_COMMIT_LEN];
    size_t head_len;
    struct seal_keys *k = NULL;
    struct veil_atomic_file af = {.fd = -1};
    rc = open_input(in_path, &in_fd, &size, eb);
    if (rc != VEIL_OK)
        goto out;
    if (read_head(in_fd, size, head, &head_len) != VEIL_OK) {
        rc = veil_errf(eb, VEIL_E_IO, "%s: read failed", in_path);
        goto out;
    }
    rc = prepare_unseal(veil_span_make(head, head_len), size, key, expect, &k, eb);
    if (rc != VEIL_OK)
        goto out;
    rc = veil_atomic_open(&af, out_path, 0600, VEIL_ATOMIC_REPLACE, eb);
    if (rc != VEIL_OK)
        goto out;
    struct job j;
    job_init(&j, k, false);
    j.in_fd = in_fd;
    j.out_fd = af.fd;
    j.progress = progress;
    j.progress_ud = progress_ud;
    rc = run_job(&j, threads, eb);
    if (rc != VEIL_OK)
        goto out;
    rc = veil_atomic_commit(&af, eb);
out:
    if (rc != VEIL_OK && eb != NULL && strncmp(eb->msg, in_path, strlen(in_path)) != 0)
        (void)veil_err_prefix(eb, rc, "%s", in_path);
    veil_atomic_abort(&af);
    if (in_fd >= 0)
        close(in_fd);
    keys_free(k);
    return rc;
}

/* Decrypts into fresh secure memory, from memory (in_mem) or a file (in_fd). */
static veil_err unseal_to_mem(struct seal_keys *k, const uint8_t *in_mem, int in_fd,
                              unsigned threads, uint8_t **out_plain, size_t *out_len,
                              struct veil_seal_header *out_hdr, struct veil_errbuf *eb)
{
    const struct veil_seal_header *h = &k->hdr;
    if (h->plaintext_len > VEIL_LIMIT_BUNDLE_BYTES)
        return veil_errf(eb, VEIL_E_LIMIT, "sealed model of %llu bytes exceeds the limit of %llu",
                         (unsigned long long)h->plaintext_len,
                         (unsigned long long)VEIL_LIMIT_BUNDLE_BYTES);
    void *plain;
    if (veil_secure_alloc_unlocked((size_t)h->plaintext_len, &plain) != VEIL_OK)
        return veil_errf(eb, VEIL_E_NOMEM, "out of memory for %llu bytes of plaintext",
                         (unsigned long long)h->plaintext_len);
    struct job j;
    job_init(&j, k, false);
    j.in_mem = in_mem;
    j.in_fd = in_fd;
    j.out_mem = plain;
    veil_err rc = run_job(&j, threads, eb);
    if (rc != VEIL_OK) {
        veil_secure_free(plain, (size_t)h->plaintext_len);
        return rc;
    }
    veil_secure_lock(plain, (size_t)h->plaintext_len);
    *out_plain = plain;
    *out_len = (size_t)h->plaintext_len;
    if (out_hdr != NULL)
        *out_hdr = *h;
    return VEIL_OK;
}

veil_err veil_unseal_mem(struct veil_span sealed, const struct veil_model_key *key,
                         const struct veil_seal_expect *expect, unsigned threads,
                         uint8_t **out_plain, size_t *out_len, struct veil_seal_header *out_hdr,
                         struct veil_errbuf *eb)
{
    struct seal_keys *k = NULL;
    *out_plain = NULL;
    *out_len = 0;
    veil_err rc = prepare_unseal(sealed, sealed.len, key, expect, &k, eb);
    if (rc == VEIL_OK)
        rc = unseal_to_mem(k, sealed.p, -1, threads, out_plain, out_len, out_hdr, eb);
    keys_free(k);
    return rc;
}

veil_err veil_unseal_path(const char *path, const struct veil_model_key *key,
                          const struct veil_seal_expect *expect, unsigned threads,
                          uint8_t **out_plain, size_t *out_len, struct veil_seal_header *out_hdr,
                          struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    int fd = -1;
    uint64_t size;
    uint8_t head[VEIL_LIMIT_SEAL_HEADER + VEIL_SEAL_COMMIT_LEN];
    size_t head_len;
    struct seal_keys *k = NULL;
    *out_plain = NULL;
    *out_len = 0;
    rc = open_input(path, &fd, &size, eb);
    if (rc != VEIL_OK)
        goto out;
    if (read_head(fd, size, head, &head_len) != VEIL_OK) {
        rc = veil_errf(eb, VEIL_E_IO, "%s: read failed", path);
        goto out;
    }
    rc = prepare_unseal(veil_span_make(head, head_len), size, key, expect, &k, eb);
    if (rc == VEIL_OK)
        rc = unseal_to_mem(k, NULL, fd, threads, out_plain, out_len, out_hdr, eb);
    if (rc != VEIL_OK)
        (void)veil_err_prefix(eb, rc, "%s", path);
out:
    if (fd >= 0)
        close(fd);
    keys_free(k);
    return rc;
}
