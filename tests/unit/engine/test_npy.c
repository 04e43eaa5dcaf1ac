/*
 * The .npy reader and writer: round trips of every dtype, NumPy-written files (the fuzz
 * corpus), and malformed headers, data sizes and versions.
 */
#include "harness.h"

#include "veil/engine.h"

#include <stdio.h>
#include <stdlib.h>

static bool read_corpus(const char *name, struct veil_buf *b)
{
    char path[1024];
    const char *src = getenv("VEIL_SRC");
    snprintf(path, sizeof(path), "%s/fuzz/corpus/onnx_npy/%s", src ? src : ".", name);
    veil_buf_init(b, 1u << 20);
    return veil_file_read_all(path, b->max, b, NULL) == VEIL_OK;
}

TEST(numpy_files)
{
    struct veil_buf b;
    struct veil_tensor t;
    ASSERT_TRUE(read_corpus("f32_2x3.npy", &b));
    ASSERT_OK(veil_npy_parse(veil_buf_span(&b), &t, NULL));
    ASSERT_EQ_U64(t.dtype, VEIL_DT_FLOAT);
    ASSERT_EQ_U64(t.rank, 2);
    ASSERT_EQ_I64(t.dims[1], 3);
    float v;
    memcpy(&v, (const uint8_t *)t.data + 5 * 4, 4);
    ASSERT_TRUE(v == 5.0f);
    veil_buf_release(&b);
    ASSERT_TRUE(read_corpus("i32_v2.npy", &b));
    ASSERT_OK(veil_npy_parse(veil_buf_span(&b), &t, NULL));
    ASSERT_EQ_U64(t.dtype, VEIL_DT_INT32);
    ASSERT_EQ_U64(t.nbytes, 16);
    veil_buf_release(&b);
    ASSERT_TRUE(read_corpus("bool_scalar.npy", &b));
    ASSERT_OK(veil_npy_parse(veil_buf_span(&b), &t, NULL));
    ASSERT_EQ_U64(t.rank, 0);
    ASSERT_EQ_U64(t.nbytes, 1);
    veil_buf_release(&b);
}

TEST(float16_round_trip)
{
    uint16_t data[3] = {0x3c00, 0xc000, 0x7bff}; /* 1, -2, 65504 */
    struct veil_tensor t = {VEIL_DT_FLOAT16, 1, {3}, data, sizeof(data)}, u;
    struct veil_buf b;
    veil_buf_init(&b, 4096);
    ASSERT_OK(veil_npy_write(&t, &b));
    ASSERT_TRUE(memmem(b.p, b.len, "'<f2'", 5) != NULL);
    ASSERT_OK(veil_npy_parse(veil_buf_span(&b), &u, NULL));
    ASSERT_EQ_U64(u.dtype, VEIL_DT_FLOAT16);
    ASSERT_EQ_U64(u.nbytes, 6);
    ASSERT_MEM_EQ(u.data, data, sizeof(data));
    veil_buf_release(&b);
}

TEST(round_trip)
{
    int64_t data[6] = {1, -2, 3, -4, 5, -6};
    struct veil_tensor t = {VEIL_DT_INT64, 3, {1, 2, 3}, data, sizeof(data)}, u;
    struct veil_buf b;
    veil_buf_init(&b, 4096);
    ASSERT_OK(veil_npy_write(&t, &b));
    ASSERT_EQ_U64((b.len - t.nbytes) % 64, 0);
    ASSERT_OK(veil_npy_parse(veil_buf_span(&b), &u, NULL));
    ASSERT_EQ_U64(u.dtype, VEIL_DT_INT64);
    ASSERT_EQ_U64(u.rank, 3);
    ASSERT_EQ_I64(u.dims[2], 3);
    ASSERT_MEM_EQ(u.data, data, sizeof(data));
    veil_buf_release(&b);
    struct veil_tensor one = {VEIL_DT_FLOAT, 1, {0}, NULL, 0};
    veil_buf_init(&b, 4096);
    ASSERT_OK(veil_npy_write(&one, &b));
    ASSERT_OK(veil_npy_parse(veil_buf_span(&b), &u, NULL));
    ASSERT_EQ_U64(u.rank, 1);
    ASSERT_EQ_I64(u.dims[0], 0);
    veil_buf_release(&b);
}

/* Builds a version 1.0 .npy file from a header string and data bytes into out. */
static size_t mk(char *out, const char *hdr, const void *data, size_t n)
{
    size_t hl = strlen(hdr);
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (char)(hl & 0xff);
    out[9] = (char)(hl >> 8);
    memcpy(out + 10, hdr, hl);
    if (n > 0)
        memcpy(out + 10 + hl, data, n);
    return 10 + hl + n;
}

TEST(malformed)
{
    struct veil_tensor t;
    struct veil_errbuf eb = {{0}};
    char f[256];
    float two[2] = {1, 2};
    static const char bad_magic[] = "\x93NUMPX\x01\x00\x10\x00";
    ASSERT_ERR(veil_npy_parse(veil_span_make(bad_magic, sizeof(bad_magic) - 1), &t, &eb),
               VEIL_E_FORMAT);
    size_t n = mk(f, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", two, 8);
    ASSERT_OK(veil_npy_parse(veil_span_make(f, n), &t, &eb));
    ASSERT_ERR(veil_npy_parse(veil_span_make(f, n - 4), &t, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(eb.msg, "needs 8");
    ASSERT_ERR(veil_npy_parse(veil_span_make(f, n - 9), &t, &eb), VEIL_E_FORMAT);
    n = mk(f, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", two, 8);
    ASSERT_ERR(veil_npy_parse(veil_span_make(f, n), &t, &eb), VEIL_E_UNSUPPORTED);
    n = mk(f, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", two, 8);
    ASSERT_ERR(veil_npy_parse(veil_span_make(f, n), &t, &eb), VEIL_E_UNSUPPORTED);
    n = mk(f, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
           NULL, 0);
    ASSERT_ERR(veil_npy_parse(veil_span_make(f, n), &t, &eb), VEIL_E_LIMIT);
    n = mk(f, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", two, 4);
    ASSERT_ERR(veil_npy_parse(veil_span_make(f, n), &t, &eb), VEIL_E_LIMIT);
    n = mk(f, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, }", two, 8);
    ASSERT_ERR(veil_npy_parse(veil_span_make(f, n), &t, &eb), VEIL_E_FORMAT);
    static const char v9[] = "\x93NUMPY\x09\x00\x00\x00";
    ASSERT_ERR(veil_npy_parse(veil_span_make(v9, sizeof(v9) - 1), &t, &eb), VEIL_E_UNSUPPORTED);
}

RUN_TESTS()
