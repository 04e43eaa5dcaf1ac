#include "harness.h"
#include "veil/crypto.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static struct veil_model_key *kat_key(void)
{
    uint8_t raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)i;
    struct veil_model_key *k = NULL;
    if (veil_model_key_from_bytes("kat-key-1", raw, 32, &k, NULL) != VEIL_OK)
        abort();
    return k;
}

static const struct veil_seal_params kat_params = {.model_name = "kat-model",
                                                   .model_version = 7,
                                                   .content_type = "application/onnx",
                                                   .chunk_size = 4096};

/* Reads "name = value" from tests/vectors/sealed-v1.txt. */
static char *vector(const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/vectors/sealed-v1.txt", getenv("VEIL_SRC"));
    struct veil_buf b;
    veil_buf_init(&b, 1 << 20);
    if (veil_file_read_all(path, b.max, &b, NULL) != VEIL_OK)
        return NULL;
    struct veil_span s = veil_buf_span(&b), line;
    char *out = NULL;
    while (veil_span_get_until(&s, '\n', &line) == VEIL_OK) {
        struct veil_span k;
        if (veil_span_get_until(&line, '=', &k) == VEIL_OK &&
            veil_span_eq_str(veil_span_trim(k), name)) {
            line = veil_span_trim(line);
            out = veil_strndup((const char *)line.p, line.len);
        }
    }
    veil_buf_release(&b);
    return out;
}

static void seal_kat(struct veil_span plain, struct veil_buf *out)
{
    uint8_t salt[32];
    for (int i = 0; i < 32; i++)
        salt[i] = (uint8_t)(32 + i);
    struct veil_model_key *k = kat_key();
    veil_buf_init(out, 1 << 24);
    if (veil_seal_mem(plain, k, &kat_params, salt, out, NULL) != VEIL_OK)
        abort();
    veil_model_key_free(k);
}

TEST(known_answer_vector_1)
{
    struct veil_buf out;
    seal_kat(veil_span_from_str("hello"), &out);
    char *want = vector("vector1_sealed_hex");
    ASSERT_TRUE(want != NULL);
    char *hex = veil_malloc(2 * out.len + 1);
    veil_hex_encode(out.p, out.len, hex);
    int same = strcmp(hex, want) == 0;
    veil_free(hex);
    veil_free(want);
    veil_buf_release(&out);
    ASSERT_TRUE(same);
}

TEST(known_answer_vector_2)
{
    uint8_t *plain = veil_malloc(10000);
    for (int j = 0; j < 10000; j++)
        plain[j] = (uint8_t)(j % 251);
    struct veil_buf out;
    seal_kat(veil_span_make(plain, 10000), &out);
    uint8_t h[32];
    char hex[65];
    ASSERT_OK(veil_sha256(veil_buf_span(&out), h));
    veil_hex_encode(h, 32, hex);
    char *want = vector("vector2_sealed_sha256");
    ASSERT_TRUE(want != NULL);
    ASSERT_STR_EQ(hex, want);
    struct veil_seal_header hdr;
    ASSERT_OK(veil_seal_header_parse(veil_buf_span(&out), &hdr, NULL));
    ASSERT_EQ_U64(hdr.chunk_count, 3);
    ASSERT_EQ_U64(hdr.sealed_len, out.len);
    veil_free(want);
    veil_free(plain);
    veil_buf_release(&out);
}

/* Unseals sealed and expects rc, with eb naming the problem. */
static veil_err try_unseal(struct veil_span sealed, const struct veil_model_key *k,
                           const struct veil_seal_expect *ex, struct veil_errbuf *eb)
{
    uint8_t *p = NULL;
    size_t n = 0;
    memset(eb, 0, sizeof(*eb));
    veil_err rc = veil_unseal_mem(sealed, k, ex, 2, &p, &n, NULL, eb);
    if (rc == VEIL_OK)
        veil_secure_free(p, n);
    else if (p != NULL)
        abort(); /* no plaintext may be handed out on failure */
    return rc;
}

TEST(round_trip_sizes)
{
    struct veil_model_key *k = kat_key();
    static const size_t sizes[] = {0, 1, 4095, 4096, 4097, 8192, 40000};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        uint8_t *plain = veil_malloc(sizes[s]);
        for (size_t i = 0; i < sizes[s]; i++)
            plain[i] = (uint8_t)(i * 7 + s);
        struct veil_buf out;
        veil_buf_init(&out, 1 << 20);
        ASSERT_OK(veil_seal_mem(veil_span_make(plain, sizes[s]), k, &kat_params, NULL, &out, NULL));
        uint8_t *back = NULL;
        size_t n = 99;
        struct veil_seal_header h;
        ASSERT_OK(veil_unseal_mem(veil_buf_span(&out), k, NULL, 3, &back, &n, &h, NULL));
        ASSERT_EQ_U64(n, sizes[s]);
        ASSERT_TRUE(n == 0 || memcmp(back, plain, n) == 0);
        ASSERT_STR_EQ(h.model_name, "kat-model");
        veil_secure_free(back, n);
        veil_buf_release(&out);
        veil_free(plain);
    }
    veil_model_key_free(k);
}

TEST(every_tampering_is_detected)
{
    struct veil_model_key *k = kat_key();
    uint8_t plain[10000];
    for (int j = 0; j < 10000; j++)
        plain[j] = (uint8_t)(j % 251);
    struct veil_buf s;
    seal_kat(veil_span_make(plain, sizeof(plain)), &s);
    struct veil_seal_header h;
    ASSERT_OK(veil_seal_header_parse(veil_buf_span(&s), &h, NULL));
    struct veil_errbuf eb;
    uint8_t *copy = veil_malloc(s.len + 8192);

    /* A flipped bit anywhere: header, commitment, each chunk's ciphertext and tag. */
    for (size_t off = 0; off < s.len; off += (off < h.header_len + 40 ? 1 : 97)) {
        memcpy(copy, s.p, s.len);
        copy[off] ^= 0x10;
        veil_err rc = try_unseal(veil_span_make(copy, s.len), k, NULL, &eb);
        if (rc == VEIL_OK)
            HFAIL("flipped bit at offset %zu was not detected", off);
    }
    /* Truncation at every chunk boundary and inside chunks. */
    for (size_t len = 0; len < s.len; len += 333) {
        veil_err rc = try_unseal(veil_span_make(s.p, len), k, NULL, &eb);
        if (rc != VEIL_E_INCOMPLETE)
            HFAIL("truncation to %zu bytes gave %s (%s)", len, veil_err_name(rc), eb.msg);
    }
    ASSERT_ERR(try_unseal(veil_span_make(s.p, s.len - 1), k, NULL, &eb), VEIL_E_INCOMPLETE);
    ASSERT_STR_CONTAINS(eb.msg, "truncated");
    /* Extension. */
    memcpy(copy, s.p, s.len);
    memcpy(copy + s.len, s.p + h.header_len + 32, 4112);
    ASSERT_ERR(try_unseal(veil_span_make(copy, s.len + 4112), k, NULL, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(eb.msg, "trailing data");
    /* Reordering: swap chunks 0 and 1 (same size). */
    size_t c0 = h.header_len + 32, cl = 4096 + 16;
    memcpy(copy, s.p, s.len);
    memcpy(copy + c0, s.p + c0 + cl, cl);
    memcpy(copy + c0 + cl, s.p + c0, cl);
    ASSERT_ERR(try_unseal(veil_span_make(copy, s.len), k, NULL, &eb), VEIL_E_AUTH);
    ASSERT_STR_CONTAINS(eb.msg, "chunk 0 of 3 failed authentication");
    /* A flipped chunk bit names its chunk. */
    memcpy(copy, s.p, s.len);
    copy[c0 + 2 * cl + 5] ^= 1;
    ASSERT_ERR(try_unseal(veil_span_make(copy, s.len), k, NULL, &eb), VEIL_E_AUTH);
    ASSERT_STR_CONTAINS(eb.msg, "chunk 2 of 3");
    /* A header bit: the commitment catches it before any chunk is decrypted. */
    memcpy(copy, s.p, s.len);
    copy[40] ^= 1;
    ASSERT_ERR(try_unseal(veil_span_make(copy, s.len), k, NULL, &eb), VEIL_E_AUTH);
    ASSERT_STR_CONTAINS(eb.msg, "key commitment");
    veil_free(copy);
    veil_buf_release(&s);
    veil_model_key_free(k);
}

TEST(grafting_a_shorter_header_onto_longer_chunks_is_detected)
{
    /* Seal 8192 bytes (2 chunks) and 4096 bytes (1 chunk) with the same salt: the first chunk
     * of the long file has flag 0 and must not pass as a complete 1-chunk file. */
    struct veil_model_key *k = kat_key();
    uint8_t plain[8192] = {0};
    struct veil_buf two, one;
    seal_kat(veil_span_make(plain, 8192), &two);
    seal_kat(veil_span_make(plain, 4096), &one);
    ASSERT_EQ_U64(one.len, two.len - 4096 - 16);
    /* Graft the 1-chunk header and commitment onto the 2-chunk file's first chunk. */
    size_t hl = one.len - 4096 - 16;
    memcpy(two.p, one.p, hl);
    struct veil_errbuf eb;
    ASSERT_ERR(try_unseal(veil_span_make(two.p, one.len), k, NULL, &eb), VEIL_E_AUTH);
    veil_buf_release(&one);
    veil_buf_release(&two);
    veil_model_key_free(k);
}

TEST(wrong_key_name_version)
{
    struct veil_model_key *k = kat_key(), *other = NULL, *same_id = NULL;
    struct veil_buf s;
    seal_kat(veil_span_from_str("weights"), &s);
    struct veil_errbuf eb;
    ASSERT_OK(veil_model_key_generate("other", &other, NULL));
    ASSERT_ERR(try_unseal(veil_buf_span(&s), other, NULL, &eb), VEIL_E_MISMATCH);
    ASSERT_STR_CONTAINS(eb.msg, "key ID 'kat-key-1'");
    ASSERT_OK(veil_model_key_generate("kat-key-1", &same_id, NULL));
    ASSERT_ERR(try_unseal(veil_buf_span(&s), same_id, NULL, &eb), VEIL_E_AUTH);
    ASSERT_STR_CONTAINS(eb.msg, "wrong key");
    struct veil_seal_expect ex = {.model_name = "other-model"};
    ASSERT_ERR(try_unseal(veil_buf_span(&s), k, &ex, &eb), VEIL_E_MISMATCH);
    ASSERT_STR_CONTAINS(eb.msg, "named 'kat-model'");
    ex = (struct veil_seal_expect){
        .model_name = "kat-model", .check_version = true, .model_version = 6};
    ASSERT_ERR(try_unseal(veil_buf_span(&s), k, &ex, &eb), VEIL_E_MISMATCH);
    ASSERT_STR_CONTAINS(eb.msg, "version 7");
    ex.model_version = 7;
    ASSERT_OK(try_unseal(veil_buf_span(&s), k, &ex, &eb));
    veil_buf_release(&s);
    veil_model_key_free(k);
    veil_model_key_free(other);
    veil_model_key_free(same_id);
}

TEST(header_parser_rejects)
{
    struct veil_buf s;
    seal_kat(veil_span_from_str("x"), &s);
    struct veil_seal_header h;
    struct veil_errbuf eb;
    uint8_t b[512];
    memcpy(b, s.p, s.len);
    ASSERT_OK(veil_seal_header_parse(veil_span_make(b, s.len), &h, &eb));
    b[0] = 'X';
    ASSERT_ERR(veil_seal_header_parse(veil_span_make(b, s.len), &h, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(eb.msg, "magic");
    memcpy(b, s.p, s.len);
    b[9] = 2;
    ASSERT_ERR(veil_seal_header_parse(veil_span_make(b, s.len), &h, &eb), VEIL_E_UNSUPPORTED);
    memcpy(b, s.p, s.len);
    b[11] = 9;
    ASSERT_ERR(veil_seal_header_parse(veil_span_make(b, s.len), &h, &eb), VEIL_E_UNSUPPORTED);
    memcpy(b, s.p, s.len);
    b[18] = 0x30; /* chunk size 0x3000: not a power of two */
    ASSERT_ERR(veil_seal_header_parse(veil_span_make(b, s.len), &h, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(eb.msg, "chunk size");
    memcpy(b, s.p, s.len);
    b[15] += 1; /* header_len one byte longer than its fields */
    ASSERT_ERR(veil_seal_header_parse(veil_span_make(b, s.len), &h, &eb), VEIL_E_FORMAT);
    memcpy(b, s.p, s.len);
    b[68] = 0; /* empty key ID */
    ASSERT_ERR(veil_seal_header_parse(veil_span_make(b, s.len), &h, &eb), VEIL_E_FORMAT);
    ASSERT_ERR(veil_seal_header_parse(veil_span_make(s.p, 40), &h, &eb), VEIL_E_INCOMPLETE);
    ASSERT_TRUE(veil_seal_is_sealed(veil_buf_span(&s)));
    ASSERT_FALSE(veil_seal_is_sealed(veil_span_from_str("ONNX")));
    veil_buf_release(&s);
}

TEST(seal_params_validated)
{
    struct veil_model_key *k = kat_key();
    struct veil_buf out;
    veil_buf_init(&out, 1 << 20);
    struct veil_seal_params p = kat_params;
    p.model_name = "a/b";
    ASSERT_ERR(veil_seal_mem(veil_span_from_str("x"), k, &p, NULL, &out, NULL), VEIL_E_INVALID);
    p = kat_params;
    p.chunk_size = 5000;
    ASSERT_ERR(veil_seal_mem(veil_span_from_str("x"), k, &p, NULL, &out, NULL), VEIL_E_INVALID);
    p = kat_params;
    p.model_name = "";
    ASSERT_ERR(veil_seal_mem(veil_span_from_str("x"), k, &p, NULL, &out, NULL), VEIL_E_INVALID);
    veil_buf_release(&out);
    veil_model_key_free(k);
}

TEST(files_round_trip_and_failed_unseal_leaves_nothing)
{
    char dir[] = "/tmp/veil-seal-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    char in[256], sealed[256], out[256];
    snprintf(in, sizeof(in), "%s/in", dir);
    snprintf(sealed, sizeof(sealed), "%s/in.veil", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    size_t n = 3 * 4096 + 100;
    uint8_t *plain = veil_malloc(n);
    for (size_t i = 0; i < n; i++)
        plain[i] = (uint8_t)(i ^ (i >> 8));
    ASSERT_OK(veil_file_write_atomic(in, veil_span_make(plain, n), 0600, 0, NULL));
    struct veil_model_key *k = kat_key();
    ASSERT_OK(veil_seal_file(in, sealed, k, &kat_params, NULL, NULL, NULL));
    ASSERT_OK(veil_unseal_file(sealed, out, k, NULL, 2, NULL, NULL, NULL));
    struct veil_buf b;
    veil_buf_init(&b, 1 << 20);
    ASSERT_OK(veil_file_read_all(out, b.max, &b, NULL));
    ASSERT_EQ_U64(b.len, n);
    ASSERT_MEM_EQ(b.p, plain, n);
    veil_buf_release(&b);
    struct stat st;
    ASSERT_EQ_I64(stat(out, &st), 0);
    ASSERT_EQ_U64(st.st_mode & 0777, 0600);
    uint8_t *pm = NULL;
    size_t pn = 0;
    ASSERT_OK(veil_unseal_path(sealed, k, NULL, 0, &pm, &pn, NULL, NULL));
    ASSERT_EQ_U64(pn, n);
    ASSERT_MEM_EQ(pm, plain, n);
    veil_secure_free(pm, pn);
    /* Tamper with the last chunk: the unseal fails and no output appears. */
    unlink(out);
    veil_buf_init(&b, 1 << 20);
    ASSERT_OK(veil_file_read_all(sealed, b.max, &b, NULL));
    b.p[b.len - 3] ^= 4;
    ASSERT_OK(veil_file_write_atomic(sealed, veil_buf_span(&b), 0600, 0, NULL));
    veil_buf_release(&b);
    struct veil_errbuf eb = {{0}};
    ASSERT_ERR(veil_unseal_file(sealed, out, k, NULL, 2, NULL, NULL, &eb), VEIL_E_AUTH);
    ASSERT_STR_CONTAINS(eb.msg, "chunk 3 of 4");
    ASSERT_TRUE(access(out, F_OK) != 0);
    ASSERT_ERR(veil_unseal_path(sealed, k, NULL, 0, &pm, &pn, NULL, &eb), VEIL_E_AUTH);
    ASSERT_TRUE(pm == NULL);
    ASSERT_ERR(veil_unseal_file("/nonexistent", out, k, NULL, 2, NULL, NULL, &eb), VEIL_E_NOTFOUND);
    veil_model_key_free(k);
    veil_free(plain);
    unlink(in);
    unlink(sealed);
    rmdir(dir);
}

RUN_TESTS()
