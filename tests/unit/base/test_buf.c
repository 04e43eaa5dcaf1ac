#include "harness.h"
#include "veil/base.h"

TEST(append_and_cap)
{
    struct veil_buf b;
    veil_buf_init(&b, 10);
    ASSERT_OK(veil_buf_append_str(&b, "hello"));
    ASSERT_OK(veil_buf_appendf(&b, "%d", 1234));
    ASSERT_EQ_U64(b.len, 9);
    ASSERT_STR_EQ((const char *)b.p, "hello1234");
    ASSERT_ERR(veil_buf_append_str(&b, "xy"), VEIL_E_LIMIT);
    ASSERT_EQ_U64(b.len, 9);
    ASSERT_OK(veil_buf_append_u8(&b, 'z'));
    ASSERT_ERR(veil_buf_appendf(&b, "q"), VEIL_E_LIMIT);
    veil_buf_release(&b);
    ASSERT_EQ_U64(b.len, 0);
    veil_buf_release(&b);
}

TEST(reserve_cap_predicts_the_growth)
{
    struct veil_buf b;
    veil_buf_init(&b, 1000);
    ASSERT_EQ_U64(veil_buf_reserve_cap(&b, 10), 64);
    ASSERT_EQ_U64(veil_buf_reserve_cap(&b, 1000), 1001);
    ASSERT_EQ_U64(veil_buf_reserve_cap(&b, 1001), 0);
    ASSERT_OK(veil_buf_reserve(&b, 100));
    ASSERT_EQ_U64(b.cap, 128);
    ASSERT_EQ_U64(veil_buf_reserve_cap(&b, 127), 128); /* fits: no growth */
    ASSERT_EQ_U64(veil_buf_reserve_cap(&b, 128), 256);
    size_t want = veil_buf_reserve_cap(&b, 600);
    ASSERT_OK(veil_buf_reserve(&b, 600));
    ASSERT_EQ_U64(b.cap, want);
    ASSERT_EQ_U64(want, 1001); /* 1024 clamped to max + 1 */
    veil_buf_release(&b);
}

TEST(big_endian_appends)
{
    struct veil_buf b;
    veil_buf_init_secret(&b, 64);
    ASSERT_OK(veil_buf_append_u16be(&b, 0x0102));
    ASSERT_OK(veil_buf_append_u32be(&b, 0x03040506));
    ASSERT_OK(veil_buf_append_u64be(&b, 0x0708090a0b0c0d0eULL));
    const uint8_t want[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    ASSERT_EQ_U64(b.len, sizeof(want));
    ASSERT_MEM_EQ(b.p, want, sizeof(want));
    size_t n;
    uint8_t *p = veil_buf_steal(&b, &n);
    ASSERT_EQ_U64(n, sizeof(want));
    ASSERT_TRUE(b.p == NULL);
    veil_free(p);
}

TEST(allocation_failure_is_reported)
{
    struct veil_buf b;
    veil_buf_init(&b, 1 << 20);
    veil_alloc_fail_after(0);
    veil_err rc = veil_buf_append_str(&b, "x");
    veil_alloc_fail_reset();
    ASSERT_ERR(rc, VEIL_E_NOMEM);
    ASSERT_EQ_U64(b.len, 0);
    ASSERT_OK(veil_buf_append_str(&b, "x"));
    veil_buf_release(&b);
}

TEST(secure_memory)
{
    void *p;
    ASSERT_OK(veil_secure_alloc(100, &p));
    memset(p, 0xab, 100);
    uint8_t ref[100];
    memset(ref, 0xab, 100);
    ASSERT_TRUE(veil_memeq_ct(p, ref, 100));
    ref[99] = 0;
    ASSERT_FALSE(veil_memeq_ct(p, ref, 100));
    veil_secure_free(p, 100);
    veil_secure_free(NULL, 0);
}

TEST(allocarray_overflow)
{
    ASSERT_TRUE(veil_allocarray(SIZE_MAX / 2, 3) == NULL);
    void *p = veil_allocarray(4, 4);
    ASSERT_TRUE(p != NULL);
    veil_free(p);
}

RUN_TESTS()
