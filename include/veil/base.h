/*
 * veil/base.h: the bottom module. Error codes and messages, logging, checked byte spans for
 * parsing untrusted input, capped growable buffers, arenas, allocation wrappers with failure
 * injection, secure memory, atomic file writes and time.
 *
 * Every other module depends on this header and on nothing else of the project's.
 */
#ifndef VEIL_BASE_H
#define VEIL_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Attributes (STYLE rule 13) ---- */

#define VEIL_NODISCARD __attribute__((warn_unused_result))
#define VEIL_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define VEIL_NONNULL(...) __attribute__((nonnull(__VA_ARGS__)))

/* ---- Limits (STYLE rule 23): every growable buffer takes its cap from here. ---- */

#define VEIL_LIMIT_ERRMSG 256
#define VEIL_LIMIT_KEY_FILE 4096               /* bytes of a model key file */
#define VEIL_LIMIT_SEAL_HEADER 4096            /* bytes of a sealed file header */
#define VEIL_LIMIT_SEAL_NAME 255               /* model name in a sealed header */
#define VEIL_LIMIT_SEAL_KEY_ID 128             /* key ID in a sealed header */
#define VEIL_LIMIT_SEAL_CONTENT_TYPE 128       /* content type in a sealed header */
#define VEIL_LIMIT_MODEL_BYTES (4ULL << 30)    /* largest model file loaded in memory */
#define VEIL_LIMIT_BUNDLE_BYTES (256ULL << 30) /* a sealed model bundle, model and data files */
#define VEIL_LIMIT_HTTP_HEADERS (64u << 10)    /* all request headers of one request */
#define VEIL_LIMIT_CONFIG_FILE (4u << 20)      /* config, policy and batching files */
#define VEIL_LIMIT_TENSOR_RANK 8               /* rank of any tensor */

/* ---- Errors (STYLE rules 14-16) ---- */

/* X(name, value, message): the one project-wide error code space. */
#define VEIL_ERR_MAP(X)                                                                            \
    X(VEIL_OK, 0, "success")                                                                       \
    X(VEIL_E_INTERNAL, -1, "internal error")                                                       \
    X(VEIL_E_NOMEM, -2, "out of memory")                                                           \
    X(VEIL_E_INVALID, -3, "invalid argument")                                                      \
    X(VEIL_E_FORMAT, -4, "malformed input")                                                        \
    X(VEIL_E_INCOMPLETE, -5, "incomplete input")                                                   \
    X(VEIL_E_LIMIT, -6, "limit exceeded")                                                          \
    X(VEIL_E_IO, -7, "I/O error")                                                                  \
    X(VEIL_E_NOTFOUND, -8, "not found")                                                            \
    X(VEIL_E_EXISTS, -9, "already exists")                                                         \
    X(VEIL_E_AUTH, -10, "authentication failed")                                                   \
    X(VEIL_E_CRYPTO, -11, "cryptographic library failure")                                         \
    X(VEIL_E_UNSUPPORTED, -12, "unsupported")                                                      \
    X(VEIL_E_MISMATCH, -13, "mismatch")                                                            \
    X(VEIL_E_PERM, -14, "permission denied")                                                       \
    X(VEIL_E_TIMEOUT, -15, "timed out")                                                            \
    X(VEIL_E_STATE, -16, "invalid state")                                                          \
    X(VEIL_E_REJECTED, -17, "rejected by policy")                                                  \
    X(VEIL_E_UNAVAILABLE, -18, "unavailable")                                                      \
    X(VEIL_E_CANCELLED, -19, "cancelled")                                                          \
    X(VEIL_E_EXPIRED, -20, "expired")

#define VEIL__ERR_ENUM(name, value, msg) name = value,
enum veil_err { VEIL_ERR_MAP(VEIL__ERR_ENUM) };
#undef VEIL__ERR_ENUM
typedef enum veil_err veil_err;

/* A static, never-NULL description of rc ("unknown error" for values outside the map). */
const char *veil_err_str(veil_err rc);

/* The short symbolic name of rc ("VEIL_E_FORMAT"); never NULL. */
const char *veil_err_name(veil_err rc);

/* Caller-owned detail for an error. Every function that takes one accepts NULL. */
struct veil_errbuf {
    char msg[VEIL_LIMIT_ERRMSG];
};

/*
 * Formats a message into eb (when eb is not NULL) and returns rc, so a failing path reads
 * `return veil_errf(eb, VEIL_E_FORMAT, "header shorter than %zu bytes", n);`.
 * The message is truncated to fit. Thread-safe as long as eb is not shared.
 */
veil_err veil_errf(struct veil_errbuf *eb, veil_err rc, const char *fmt, ...) VEIL_PRINTF(3, 4);

/* As veil_errf, but only when eb holds no message yet: keeps the innermost, most precise detail. */
veil_err veil_errf_keep(struct veil_errbuf *eb, veil_err rc, const char *fmt, ...)
    VEIL_PRINTF(3, 4);

/* Prefixes the message in eb with "prefix: " (no-op when eb is NULL). Returns rc. */
veil_err veil_err_prefix(struct veil_errbuf *eb, veil_err rc, const char *fmt, ...)
    VEIL_PRINTF(3, 4);

/* The message of eb, or veil_err_str(rc) when eb is NULL or empty. Never NULL. */
const char *veil_errbuf_msg(const struct veil_errbuf *eb, veil_err rc);

/* ---- Assertions (STYLE rule 17): programmer errors only, on in every build. ---- */

_Noreturn void veil__assert_fail(const char *expr, const char *file, int line);
#define VEIL_ASSERT(e) ((e) ? (void)0 : veil__assert_fail(#e, __FILE__, __LINE__))

/* ---- Logging (STYLE rule 31) ---- */

enum veil_log_level {
    VEIL_LOG_LEVEL_ERR = 0,
    VEIL_LOG_LEVEL_WARN,
    VEIL_LOG_LEVEL_INFO,
    VEIL_LOG_LEVEL_DEBUG
};

/* A log sink receives one formatted message (no trailing newline) and its origin. */
typedef void (*veil_log_fn)(void *ud, enum veil_log_level level, const char *file, int line,
                            const char *func, const char *msg);

/*
 * Installs the sink (NULL restores the default, which writes one line per message to stderr)
 * and the most verbose level that is delivered. Call before threads start (STYLE rule 30).
 */
void veil_log_set_sink(veil_log_fn fn, void *ud);
void veil_log_set_level(enum veil_log_level level);
enum veil_log_level veil_log_get_level(void);

/* Formats and delivers one message. Thread-safe; messages longer than 1 KiB are truncated. */
void veil_log_write(enum veil_log_level level, const char *file, int line, const char *func,
                    const char *fmt, ...) VEIL_PRINTF(5, 6);

#define VEIL_LOG_(lvl, ...)                                                                        \
    do {                                                                                           \
        if ((lvl) <= veil_log_get_level())                                                         \
            veil_log_write((lvl), __FILE__, __LINE__, __func__, __VA_ARGS__);                      \
    } while (0)
#define VEIL_LOG_ERR(...) VEIL_LOG_(VEIL_LOG_LEVEL_ERR, __VA_ARGS__)
#define VEIL_LOG_WARN(...) VEIL_LOG_(VEIL_LOG_LEVEL_WARN, __VA_ARGS__)
#define VEIL_LOG_INFO(...) VEIL_LOG_(VEIL_LOG_LEVEL_INFO, __VA_ARGS__)
#define VEIL_LOG_DEBUG(...) VEIL_LOG_(VEIL_LOG_LEVEL_DEBUG, __VA_ARGS__)
/* Logs fmt followed by ": <veil_err_str(rc)>". */
#define VEIL_LOG_ERR_RC(rc, fmt, ...) VEIL_LOG_ERR(fmt ": %s", ##__VA_ARGS__, veil_err_str(rc))

/* ---- Allocation (STYLE rule 21) ---- */

/*
 * malloc/calloc/realloc/free through one place so tests can inject failures. veil_malloc(0)
 * returns a unique non-NULL pointer. All return NULL on failure (or injected failure).
 * veil_allocarray returns NULL when n * size overflows. Thread-safe.
 */
void *veil_malloc(size_t size);
void *veil_calloc(size_t n, size_t size);
void *veil_realloc(void *p, size_t size);
void *veil_allocarray(size_t n, size_t size);
void *veil_reallocarray(void *p, size_t n, size_t size);
void veil_free(void *p);
/* A heap copy of s (NULL on failure); veil_strndup copies at most n bytes and terminates. */
char *veil_strdup(const char *s);
char *veil_strndup(const char *s, size_t n);
/* align must be a power of two >= sizeof(void *). Free with veil_aligned_free only (not free or
 * veil_free): the block starts below the returned address. */
void *veil_aligned_alloc(size_t align, size_t size);
void veil_aligned_free(void *p);
/*
 * Tunes the process's allocator for large, short-lived blocks (request bodies, tensors,
 * model outputs of several MB): blocks up to 64 MiB come from the heap and freed memory stays
 * there for reuse (up to 256 MiB), instead of going to mmap and back or being trimmed after
 * each free, which costs a page fault per 4 KiB touched on every reuse. Process-wide; call
 * once at start-up. Idempotent.
 */
void veil_alloc_tune_large_blocks(void);

/*
 * Advises transparent huge pages for the whole 2 MiB pages inside [p, p + size) (a large
 * block about to be filled: far fewer page faults). Advice only; no effect below 4 MiB.
 */
void veil_advise_huge(void *p, size_t size);

/*
 * Returns the heap's free memory to the system (glibc's malloc_trim): after freeing large
 * blocks that the heap would otherwise keep (see veil_alloc_tune_large_blocks), such as a
 * parsed model's tensors. Takes the heap's locks for a moment. Thread-safe.
 */
void veil_heap_release(void);

/*
 * Wipes a veil_malloc block (all of its usable bytes, whatever size was asked for) and frees
 * it: for allocators handed to libraries that free without a size, such as protobuf-c's, when
 * the blocks may hold secrets. NULL is a no-op.
 */
void veil_free_wipe(void *p);

/*
 * Failure injection for tests: after n more successful allocations, every allocation fails
 * until veil_alloc_fail_reset(). The environment variable VEIL_TEST_FAIL_ALLOC=N sets the
 * same at the first allocation. veil_alloc_count() returns allocations made so far.
 */
void veil_alloc_fail_after(uint64_t n);
void veil_alloc_fail_reset(void);
uint64_t veil_alloc_count(void);

/* ---- Secure memory (STYLE rule 24) ---- */

/* Wipes n bytes in a way the compiler cannot remove. p may be NULL when n is 0. */
void veil_memzero(void *p, size_t n);

/* Constant-time equality of two n-byte regions: true when equal. */
bool veil_memeq_ct(const void *a, const void *b, size_t n);

/*
 * Allocates size bytes for secrets: page-aligned anonymous memory that is zeroed, locked in
 * RAM where the system allows (mlock failure is tolerated, logged once), excluded from core
 * dumps (MADV_DONTDUMP) and wiped by veil_secure_free. *out is NULL on failure.
 * Errors: VEIL_E_NOMEM. Thread-safe.
 */
VEIL_NODISCARD veil_err veil_secure_alloc(size_t size, void **out);

/*
 * As veil_secure_alloc, but the pages are not locked yet: for a large buffer that several
 * threads fill, so its pages fault in on the threads that write them. Call veil_secure_lock
 * once it is filled. Errors: VEIL_E_NOMEM.
 */
VEIL_NODISCARD veil_err veil_secure_alloc_unlocked(size_t size, void **out);
/* Locks the pages of a buffer from veil_secure_alloc_unlocked in RAM (best effort, as above). */
void veil_secure_lock(void *p, size_t size);

/* Wipes and unmaps memory from veil_secure_alloc; size must be the size allocated. NULL no-op. */
void veil_secure_free(void *p, size_t size);

/*
 * Keeps the secrets of a server process (model keys, plaintext weights, TLS and CA private
 * keys, released keys) out of core files, for the whole process and not only its secure
 * memory: sets RLIMIT_CORE to 0 (soft and hard, so it cannot be raised again without
 * privilege) and PR_SET_DUMPABLE to 0, which makes the kernel write no core at all, even
 * through a piped core_pattern, and also refuses ptrace and /proc/PID/mem to processes of the
 * same user without CAP_SYS_PTRACE. With allow_dumps it changes nothing and logs a warning
 * that a core of this process holds those secrets (for debugging only).
 * Call it once at start, before secrets are loaded. Both settings are inherited by children.
 * Errors: VEIL_E_PERM / VEIL_E_IO (the kernel refused a setting; eb names which, and the
 * process may be left with only the other one applied). Not thread-safe with itself.
 */
VEIL_NODISCARD veil_err veil_harden_process(bool allow_dumps, struct veil_errbuf *eb);

/* ---- Checked spans for untrusted bytes (STYLE rule 25) ---- */

/* A read-only view of bytes. Readers consume from the front and never read past len. */
struct veil_span {
    const uint8_t *p;
    size_t len;
};

static inline struct veil_span veil_span_make(const void *p, size_t len)
{
    struct veil_span s = {(const uint8_t *)p, len};
    return s;
}
struct veil_span veil_span_from_str(const char *s);

/*
 * Each reader checks the length first and consumes only on success. A span too short for the
 * read returns VEIL_E_INCOMPLETE and leaves the span and the output untouched.
 */
VEIL_NODISCARD veil_err veil_span_get_u8(struct veil_span *s, uint8_t *v);
VEIL_NODISCARD veil_err veil_span_get_u16be(struct veil_span *s, uint16_t *v);
VEIL_NODISCARD veil_err veil_span_get_u32be(struct veil_span *s, uint32_t *v);
VEIL_NODISCARD veil_err veil_span_get_u64be(struct veil_span *s, uint64_t *v);
VEIL_NODISCARD veil_err veil_span_get_u16le(struct veil_span *s, uint16_t *v);
VEIL_NODISCARD veil_err veil_span_get_u32le(struct veil_span *s, uint32_t *v);
VEIL_NODISCARD veil_err veil_span_get_u64le(struct veil_span *s, uint64_t *v);
/* Takes n bytes as a sub-span view (no copy). */
VEIL_NODISCARD veil_err veil_span_get_bytes(struct veil_span *s, size_t n, struct veil_span *sub);
/* Copies n bytes to dst. */
VEIL_NODISCARD veil_err veil_span_get_copy(struct veil_span *s, size_t n, void *dst);
VEIL_NODISCARD veil_err veil_span_skip(struct veil_span *s, size_t n);
/* Takes the bytes up to (not including) the first byte c, and consumes c too. E_INCOMPLETE if none.
 */
VEIL_NODISCARD veil_err veil_span_get_until(struct veil_span *s, uint8_t c, struct veil_span *sub);
/* Protobuf-style base-128 varint, at most 10 bytes: E_INCOMPLETE if cut, E_FORMAT if too long. */
VEIL_NODISCARD veil_err veil_span_get_varint(struct veil_span *s, uint64_t *v);
/* VEIL_OK when s is empty, else VEIL_E_FORMAT (trailing bytes). */
VEIL_NODISCARD veil_err veil_span_expect_end(const struct veil_span *s);
/* Byte-wise comparisons (not constant time: never for secrets). */
bool veil_span_eq(struct veil_span a, struct veil_span b);
bool veil_span_eq_str(struct veil_span a, const char *s);
bool veil_span_starts_with(struct veil_span a, const char *prefix);
/* Removes ASCII whitespace from both ends. */
struct veil_span veil_span_trim(struct veil_span s);

/* ---- Capped growable buffers (STYLE rule 23) ---- */

struct veil_buf {
    uint8_t *p;
    size_t len;
    size_t cap;
    size_t max;  /* hard cap on len, set at init */
    bool secret; /* wipe on every reallocation and release */
};

/* Initialises an empty buffer that may never grow past max bytes. Allocates nothing. */
void veil_buf_init(struct veil_buf *b, size_t max);
/* As veil_buf_init, and every byte this buffer ever held is wiped when freed or moved. */
void veil_buf_init_secret(struct veil_buf *b, size_t max);
/* Frees the storage (wiping it when secret); the buffer is left empty but keeps max. */
void veil_buf_release(struct veil_buf *b);
/* Sets len to 0 and keeps the storage. */
void veil_buf_reset(struct veil_buf *b);
/* Ensures room for n more bytes. Errors: VEIL_E_LIMIT past max, VEIL_E_NOMEM. */
VEIL_NODISCARD veil_err veil_buf_reserve(struct veil_buf *b, size_t n);
/*
 * The capacity veil_buf_reserve(b, n) would leave b with (b->cap when it need not grow), so a
 * caller can account for memory before it is allocated; 0 when n more bytes would pass max.
 * Pure; allocates nothing.
 */
size_t veil_buf_reserve_cap(const struct veil_buf *b, size_t n);
VEIL_NODISCARD veil_err veil_buf_append(struct veil_buf *b, const void *p, size_t n);
VEIL_NODISCARD veil_err veil_buf_append_str(struct veil_buf *b, const char *s);
VEIL_NODISCARD veil_err veil_buf_append_u8(struct veil_buf *b, uint8_t v);
VEIL_NODISCARD veil_err veil_buf_append_u16be(struct veil_buf *b, uint16_t v);
VEIL_NODISCARD veil_err veil_buf_append_u32be(struct veil_buf *b, uint32_t v);
VEIL_NODISCARD veil_err veil_buf_append_u64be(struct veil_buf *b, uint64_t v);
/* printf-style append; the buffer stays NUL-terminated past len on success. */
VEIL_NODISCARD veil_err veil_buf_appendf(struct veil_buf *b, const char *fmt, ...)
    VEIL_PRINTF(2, 3);
VEIL_NODISCARD veil_err veil_buf_vappendf(struct veil_buf *b, const char *fmt, va_list ap)
    VEIL_PRINTF(2, 0);
/* A view of the contents, valid until the next change of b. */
struct veil_span veil_buf_span(const struct veil_buf *b);
/* Hands the storage to the caller (free with veil_free) and leaves b empty. */
uint8_t *veil_buf_steal(struct veil_buf *b, size_t *len);

/* ---- Arenas (STYLE rule 22): request-lifetime memory freed in one call. ---- */

struct veil_arena_block;
struct veil_arena {
    struct veil_arena_block *head;
    size_t block_size; /* default size of a new block */
    size_t total;      /* bytes handed out so far */
    size_t max;        /* cap on total */
};

/* Initialises an empty arena; nothing is allocated until the first veil_arena_alloc. */
void veil_arena_init(struct veil_arena *a, size_t block_size, size_t max);
/* Frees every block; the arena is left empty and reusable. */
void veil_arena_release(struct veil_arena *a);
/*
 * Returns size bytes aligned to align (a power of two, at most 64), zeroed, valid until
 * veil_arena_release. Errors: VEIL_E_LIMIT past max, VEIL_E_NOMEM, VEIL_E_INVALID (align).
 */
VEIL_NODISCARD veil_err veil_arena_alloc(struct veil_arena *a, size_t size, size_t align,
                                         void **out);
/*
 * As veil_arena_alloc but the bytes are not zeroed: for callers that write every byte they
 * later read (protobuf-c's unpack, whose default allocator is plain malloc).
 */
VEIL_NODISCARD veil_err veil_arena_alloc_uninit(struct veil_arena *a, size_t size, size_t align,
                                                void **out);
/* As veil_arena_alloc for n elements of size bytes, failing with VEIL_E_LIMIT on overflow. */
VEIL_NODISCARD veil_err veil_arena_allocarray(struct veil_arena *a, size_t n, size_t size,
                                              size_t align, void **out);
/* A NUL-terminated copy of s in the arena. */
VEIL_NODISCARD veil_err veil_arena_strdup(struct veil_arena *a, struct veil_span s, char **out);

/* ---- Files ---- */

/*
 * Reads a whole file of at most max bytes into *out (caller frees with veil_buf_release).
 * Errors: VEIL_E_NOTFOUND, VEIL_E_PERM, VEIL_E_LIMIT (file larger than max), VEIL_E_IO, NOMEM.
 */
VEIL_NODISCARD veil_err veil_file_read_all(const char *path, size_t max, struct veil_buf *out,
                                           struct veil_errbuf *eb);

/*
 * An output file that appears at its path complete or not at all. The data goes to an
 * unnamed file (O_TMPFILE) in the target's directory, or a hidden temporary name there where
 * the file system lacks O_TMPFILE; commit fsyncs it, links it in place with rename(2) and
 * fsyncs the directory. A crash or kill before commit leaves nothing behind when O_TMPFILE is
 * available; abort removes the temporary file otherwise. A hidden temporary that a crash
 * left behind is removed by the next veil_atomic_open of the same path, so writers of one
 * path must be serialised by the caller.
 */
struct veil_atomic_file {
    int fd;
    char *path;     /* final path (owned) */
    char *tmp_path; /* hidden temporary name, or NULL for an O_TMPFILE file (owned) */
    bool no_replace;
};

enum veil_atomic_flags {
    VEIL_ATOMIC_REPLACE = 0,     /* an existing file at path is replaced on commit */
    VEIL_ATOMIC_NO_REPLACE = 1u, /* commit fails with VEIL_E_EXISTS if path exists */
};

/*
 * Opens an atomic output with permission bits mode (e.g. 0600). With VEIL_ATOMIC_NO_REPLACE an
 * existing path is refused here already. Errors: VEIL_E_EXISTS, VEIL_E_NOTFOUND (directory),
 * VEIL_E_PERM, VEIL_E_IO, VEIL_E_NOMEM. On error *af is left released (fd -1).
 */
VEIL_NODISCARD veil_err veil_atomic_open(struct veil_atomic_file *af, const char *path,
                                         unsigned mode, unsigned flags, struct veil_errbuf *eb);
/* Writes all n bytes at the current end (retrying short writes). Errors: VEIL_E_IO. */
VEIL_NODISCARD veil_err veil_atomic_write(struct veil_atomic_file *af, const void *p, size_t n,
                                          struct veil_errbuf *eb);
/* Makes the file appear at its path durably. The handle is released either way. */
VEIL_NODISCARD veil_err veil_atomic_commit(struct veil_atomic_file *af, struct veil_errbuf *eb);
/* Discards the output and releases the handle. Safe on a released handle. */
void veil_atomic_abort(struct veil_atomic_file *af);

/* Writes data to path atomically and durably (open + write + commit). */
VEIL_NODISCARD veil_err veil_file_write_atomic(const char *path, struct veil_span data,
                                               unsigned mode, unsigned flags,
                                               struct veil_errbuf *eb);

/* Reads exactly n bytes at offset off. Errors: VEIL_E_INCOMPLETE at end of file, VEIL_E_IO. */
VEIL_NODISCARD veil_err veil_file_pread_all(int fd, void *p, size_t n, uint64_t off);
/* Writes exactly n bytes at offset off. Errors: VEIL_E_IO. */
VEIL_NODISCARD veil_err veil_file_pwrite_all(int fd, const void *p, size_t n, uint64_t off);

/* ---- Time ---- */

/* Monotonic clock in nanoseconds, for durations. */
uint64_t veil_time_mono_ns(void);
/* Wall clock in seconds since the Unix epoch. */
int64_t veil_time_now(void);
/*
 * Parses an RFC 3339 timestamp ("2024-05-01T12:00:00Z", fractional seconds and numeric
 * offsets accepted) into seconds since the epoch. Errors: VEIL_E_FORMAT.
 */
VEIL_NODISCARD veil_err veil_time_parse_rfc3339(struct veil_span s, int64_t *out);
/* Formats t as "YYYY-MM-DDTHH:MM:SSZ" into out (at least 21 bytes). */
void veil_time_format_rfc3339(int64_t t, char out[21]);

/* ---- Misc ---- */

/* Number of online CPUs, at least 1. */
unsigned veil_cpu_count(void);

/* Lower-case hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void veil_hex_encode(const uint8_t *p, size_t n, char *out);
/* Decodes exactly 2n hex digits of s into out[n]. Errors: VEIL_E_FORMAT. */
VEIL_NODISCARD veil_err veil_hex_decode(struct veil_span s, uint8_t *out, size_t n);
/* The value of one hexadecimal digit (0-9, a-f, A-F), or -1 for any other byte. Pure. */
int veil_hex_digit(uint8_t c);

/* Fills n bytes with cryptographically secure random bytes. Errors: VEIL_E_CRYPTO. */
VEIL_NODISCARD veil_err veil_random_bytes(void *p, size_t n);

#endif /* VEIL_BASE_H */
