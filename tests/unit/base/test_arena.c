#include "harness.h"
#include "veil/base.h"

TEST(alloc_aligned_zeroed)
{
    struct veil_arena a;
    veil_arena_init(&a, 1024, 1 << 20);
    void *p, *q;
    ASSERT_OK(veil_arena_alloc(&a, 3, 1, &p));
    ASSERT_OK(veil_arena_alloc(&a, 16, 64, &q));
    ASSERT_EQ_U64((uintptr_t)q % 64, 0);
    ASSERT_EQ_U64(((uint8_t *)q)[15], 0);
    void *big;
    ASSERT_OK(veil_arena_alloc(&a, 5000, 8, &big));
    char *s;
    ASSERT_OK(veil_arena_strdup(&a, veil_span_from_str("abc"), &s));
    ASSERT_STR_EQ(s, "abc");
    ASSERT_ERR(veil_arena_alloc(&a, 8, 3, &p), VEIL_E_INVALID);
    veil_arena_release(&a);
    veil_arena_release(&a);
}

TEST(uninit_shares_the_cap_and_alignment)
{
    struct veil_arena a;
    veil_arena_init(&a, 256, 1000);
    void *p, *q;
    ASSERT_OK(veil_arena_alloc_uninit(&a, 100, 64, &p));
    ASSERT_EQ_U64((uintptr_t)p % 64, 0);
    memset(p, 0xab, 100);
    ASSERT_OK(veil_arena_alloc(&a, 100, 8, &q));
    ASSERT_TRUE((uint8_t *)q >= (uint8_t *)p + 100 || (uint8_t *)q + 100 <= (uint8_t *)p);
    ASSERT_EQ_U64(((uint8_t *)q)[99], 0);
    ASSERT_ERR(veil_arena_alloc_uninit(&a, 900, 8, &p), VEIL_E_LIMIT);
    ASSERT_TRUE(p == NULL);
    ASSERT_ERR(veil_arena_alloc_uninit(&a, 8, 3, &p), VEIL_E_INVALID);
    veil_arena_release(&a);
}

TEST(cap_and_overflow)
{
    struct veil_arena a;
    veil_arena_init(&a, 256, 1000);
    void *p;
    ASSERT_OK(veil_arena_alloc(&a, 900, 8, &p));
    ASSERT_ERR(veil_arena_alloc(&a, 200, 8, &p), VEIL_E_LIMIT);
    ASSERT_TRUE(p == NULL);
    ASSERT_ERR(veil_arena_allocarray(&a, SIZE_MAX / 2, 4, 8, &p), VEIL_E_LIMIT);
    veil_arena_release(&a);
}

RUN_TESTS()
