/*
 * veil/crypto.h: model keys and the sealed model format (docs/format/sealed-model.md).
 *
 * A sealed file is a bounded header followed by AES-256-GCM chunks. The header is the
 * associated data of every chunk; each file has its own data key derived with HKDF-SHA256
 * from the model key, a random salt and the header; chunk nonces carry the chunk index and a
 * last-chunk flag, so truncation, reordering, extension and any flipped bit are detected.
 * Plaintext is released only chunk by chunk after the chunk's tag has verified.
 */
#ifndef VEIL_CRYPTO_H
#define VEIL_CRYPTO_H

#include "veil/base.h"

#define VEIL_MODEL_KEY_LEN 32
#define VEIL_SEAL_SALT_LEN 32
#define VEIL_SEAL_TAG_LEN 16
#define VEIL_SEAL_COMMIT_LEN 32
#define VEIL_SEAL_FORMAT_VERSION 1
#define VEIL_SEAL_ALG_AES256GCM_HKDF_SHA256 1
#define VEIL_SEAL_DEFAULT_CHUNK (1u << 20)
#define VEIL_SEAL_MIN_CHUNK (4u << 10)
#define VEIL_SEAL_MAX_CHUNK (64u << 20)

/*
 * A 256-bit model key and its key ID. Always allocated in secure memory by the functions
 * below and wiped by veil_model_key_free.
 */
struct veil_model_key {
    char id[VEIL_LIMIT_SEAL_KEY_ID + 1];
    uint8_t key[VEIL_MODEL_KEY_LEN];
};

/*
 * Makes a fresh random key. id (NULL: a random "k-" + 16 hex digits ID) must be 1 to
 * VEIL_LIMIT_SEAL_KEY_ID printable ASCII characters without spaces.
 * Errors: VEIL_E_INVALID (bad id), VEIL_E_NOMEM, VEIL_E_CRYPTO.
 */
VEIL_NODISCARD veil_err veil_model_key_generate(const char *id, struct veil_model_key **out,
                                                struct veil_errbuf *eb);

/*
 * Makes a key from 32 raw bytes and an ID (same rules as above). The bytes are copied.
 * Errors: VEIL_E_INVALID, VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_model_key_from_bytes(const char *id, const uint8_t *bytes, size_t len,
                                                  struct veil_model_key **out,
                                                  struct veil_errbuf *eb);

/*
 * Parses a key file (docs/format/sealed-model.md, "Key files"). Pure function of its input.
 * Errors: VEIL_E_FORMAT naming the problem, VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_model_key_parse(struct veil_span text, struct veil_model_key **out,
                                             struct veil_errbuf *eb);

/*
 * Reads and parses a key file. Warns (log) when the file is readable by group or others.
 * Errors: those of veil_file_read_all and veil_model_key_parse.
 */
VEIL_NODISCARD veil_err veil_model_key_load(const char *path, struct veil_model_key **out,
                                            struct veil_errbuf *eb);

/*
 * Writes a key file with mode 0600, atomically, refusing to overwrite an existing file.
 * Errors: VEIL_E_EXISTS, VEIL_E_IO, VEIL_E_PERM, VEIL_E_NOTFOUND, VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_model_key_save(const struct veil_model_key *key, const char *path,
                                            struct veil_errbuf *eb);

/* Wipes and frees a key. NULL is a no-op. */
void veil_model_key_free(struct veil_model_key *key);

/* The parsed, bounded header of a sealed file. Strings are NUL-terminated. */
struct veil_seal_header {
    uint16_t format_version;
    uint16_t algorithm;
    uint32_t chunk_size;
    uint64_t plaintext_len;
    uint64_t model_version;
    char key_id[VEIL_LIMIT_SEAL_KEY_ID + 1];
    char model_name[VEIL_LIMIT_SEAL_NAME + 1];
    char content_type[VEIL_LIMIT_SEAL_CONTENT_TYPE + 1];
    uint8_t salt[VEIL_SEAL_SALT_LEN];
    uint32_t header_len;  /* bytes of the header on disk, the associated data */
    uint64_t chunk_count; /* derived: number of chunks */
    uint64_t sealed_len;  /* derived: exact size of the whole sealed file */
};

/*
 * Parses the header at the start of a sealed file. Pure: no key needed, nothing is trusted
 * until veil_unseal_* has verified the key commitment. Only the header's bytes are read.
 * Errors: VEIL_E_INCOMPLETE (fewer bytes than the header needs), VEIL_E_FORMAT (bad magic,
 * field out of range, trailing bytes in the header), VEIL_E_UNSUPPORTED (version, algorithm).
 */
VEIL_NODISCARD veil_err veil_seal_header_parse(struct veil_span bytes, struct veil_seal_header *out,
                                               struct veil_errbuf *eb);

/* What a caller requires of a sealed file before any plaintext is released. */
struct veil_seal_expect {
    const char *model_name; /* NULL: any name */
    bool check_version;
    uint64_t model_version;
};

/* Parameters for sealing. */
struct veil_seal_params {
    const char *model_name; /* required, 1..VEIL_LIMIT_SEAL_NAME bytes */
    uint64_t model_version;
    const char *content_type; /* NULL: "application/octet-stream" */
    uint32_t chunk_size;      /* 0: VEIL_SEAL_DEFAULT_CHUNK; else a power of two in range */
};

/* Progress callback: called with the plaintext bytes done so far (may be called from any thread).
 */
typedef void (*veil_progress_fn)(void *ud, uint64_t done);

/*
 * Seals in_path into out_path (written atomically, mode 0644). Streams with bounded memory.
 * Errors: VEIL_E_INVALID (params), I/O errors naming the path, VEIL_E_EXISTS, VEIL_E_CRYPTO.
 */
VEIL_NODISCARD veil_err veil_seal_file(const char *in_path, const char *out_path,
                                       const struct veil_model_key *key,
                                       const struct veil_seal_params *params,
                                       veil_progress_fn progress, void *progress_ud,
                                       struct veil_errbuf *eb);

/* One piece of the plaintext veil_seal_parts seals: a whole regular file (path), or bytes in
 * memory (path NULL). */
struct veil_seal_part {
    const char *path;
    struct veil_span mem;
};

#define VEIL_SEAL_MAX_PARTS 8192u

/*
 * Seals the concatenation of n pieces (1 to VEIL_SEAL_MAX_PARTS) into out_path, as
 * veil_seal_file does one file: streamed, on all cores, with bounded memory, and no plaintext
 * written anywhere; a file that changes size while it is read fails the seal. Memory pieces
 * are borrowed for the call. Errors: those of veil_seal_file, naming the piece's path.
 */
VEIL_NODISCARD veil_err veil_seal_parts(const struct veil_seal_part *parts, size_t n,
                                        const char *out_path, const struct veil_model_key *key,
                                        const struct veil_seal_params *params,
                                        veil_progress_fn progress, void *progress_ud,
                                        struct veil_errbuf *eb);

/*
 * Seals plaintext in memory into *out (caller releases). salt may be NULL (random); a fixed
 * salt is for known-answer tests only. Errors: VEIL_E_INVALID, VEIL_E_NOMEM, VEIL_E_CRYPTO.
 */
VEIL_NODISCARD veil_err veil_seal_mem(struct veil_span plaintext, const struct veil_model_key *key,
                                      const struct veil_seal_params *params, const uint8_t *salt,
                                      struct veil_buf *out, struct veil_errbuf *eb);

/*
 * Unseals in_path into out_path (written atomically with mode 0600, so a failure leaves no
 * partial plaintext), on `threads` threads (0 = all cores), in memory bounded by
 * threads x 2 chunks. expect may be NULL.
 * Errors: VEIL_E_FORMAT / VEIL_E_UNSUPPORTED (header), VEIL_E_MISMATCH (key ID, name or
 * version other than expected), VEIL_E_AUTH (wrong key, tampered header or chunk),
 * VEIL_E_INCOMPLETE (truncated), VEIL_E_FORMAT (trailing data), I/O errors.
 * eb names the failing chunk or field.
 */
VEIL_NODISCARD veil_err veil_unseal_file(const char *in_path, const char *out_path,
                                         const struct veil_model_key *key,
                                         const struct veil_seal_expect *expect, unsigned threads,
                                         veil_progress_fn progress, void *progress_ud,
                                         struct veil_errbuf *eb);

/*
 * Unseals a sealed file held in memory into secure memory: on success *out_plain points to
 * header.plaintext_len bytes from veil_secure_alloc (free with
 * veil_secure_free(*out_plain, *out_len)), and *out_hdr (when not NULL) receives the header.
 * Same errors as veil_unseal_file. threads: 0 = all cores. Thread-safe.
 */
VEIL_NODISCARD veil_err veil_unseal_mem(struct veil_span sealed, const struct veil_model_key *key,
                                        const struct veil_seal_expect *expect, unsigned threads,
                                        uint8_t **out_plain, size_t *out_len,
                                        struct veil_seal_header *out_hdr, struct veil_errbuf *eb);

/*
 * As veil_unseal_mem, reading the sealed file from path with bounded extra memory.
 * Errors: as above, plus I/O errors naming the path and VEIL_E_LIMIT above
 * VEIL_LIMIT_BUNDLE_BYTES (a bundle of a model and its data files;
 * a bare model file is held to VEIL_LIMIT_MODEL_BYTES by its parser).
 */
VEIL_NODISCARD veil_err veil_unseal_path(const char *path, const struct veil_model_key *key,
                                         const struct veil_seal_expect *expect, unsigned threads,
                                         uint8_t **out_plain, size_t *out_len,
                                         struct veil_seal_header *out_hdr, struct veil_errbuf *eb);

/* True when the first bytes of a file carry the sealed-file magic. */
bool veil_seal_is_sealed(struct veil_span prefix);

/* SHA-256 of data into out[32]. Errors: VEIL_E_CRYPTO. */
VEIL_NODISCARD veil_err veil_sha256(struct veil_span data, uint8_t out[32]);

/*
 * Drains OpenSSL's error queue into eb as "what: <first OpenSSL reason>" and returns rc.
 * Every module that calls OpenSSL uses this at its boundary (STYLE rule 15).
 */
veil_err veil_crypto_openssl_err(struct veil_errbuf *eb, veil_err rc, const char *what);

#endif /* VEIL_CRYPTO_H */
