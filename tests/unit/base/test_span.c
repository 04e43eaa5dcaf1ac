#include "harness.h"
#include "veil/base.h"

TEST(reads_integers_both_endians)
{
    const uint8_t b[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    struct veil_span s = veil_span_make(b, sizeof(b));
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    ASSERT_OK(veil_span_get_u8(&s, &u8));
    ASSERT_EQ_U64(u8, 1);
    ASSERT_OK(veil_span_get_u16be(&s, &u16));
    ASSERT_EQ_U64(u16, 0x0203);
    ASSERT_OK(veil_span_get_u32le(&s, &u32));
    ASSERT_EQ_U64(u32, 0x07060504);
    ASSERT_OK(veil_span_get_u64be(&s, &u64));
    ASSERT_EQ_U64(u64, 0x08090a0b0c0d0e0fULL);
    ASSERT_OK(veil_span_expect_end(&s));
}

TEST(short_read_consumes_nothing)
{
    const uint8_t b[] = {1, 2, 3};
    struct veil_span s = veil_span_make(b, sizeof(b));
    uint32_t v = 77;
    ASSERT_ERR(veil_span_get_u32be(&s, &v), VEIL_E_INCOMPLETE);
    ASSERT_EQ_U64(v, 77);
    ASSERT_EQ_U64(s.len, 3);
    struct veil_span sub;
    ASSERT_ERR(veil_span_get_bytes(&s, 4, &sub), VEIL_E_INCOMPLETE);
    ASSERT_OK(veil_span_get_bytes(&s, 2, &sub));
    ASSERT_EQ_U64(sub.len, 2);
    ASSERT_EQ_U64(sub.p[1], 2);
    ASSERT_ERR(veil_span_expect_end(&s), VEIL_E_FORMAT);
    ASSERT_ERR(veil_span_skip(&s, SIZE_MAX), VEIL_E_INCOMPLETE);
}

TEST(varint)
{
    const uint8_t ok[] = {0xac, 0x02};
    struct veil_span s = veil_span_make(ok, sizeof(ok));
    uint64_t v;
    ASSERT_OK(veil_span_get_varint(&s, &v));
    ASSERT_EQ_U64(v, 300);
    const uint8_t cut[] = {0x80, 0x80};
    s = veil_span_make(cut, sizeof(cut));
    ASSERT_ERR(veil_span_get_varint(&s, &v), VEIL_E_INCOMPLETE);
    const uint8_t toolong[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    s = veil_span_make(toolong, sizeof(toolong));
    ASSERT_ERR(veil_span_get_varint(&s, &v), VEIL_E_FORMAT);
    const uint8_t max[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    s = veil_span_make(max, sizeof(max));
    ASSERT_OK(veil_span_get_varint(&s, &v));
    ASSERT_EQ_U64(v, UINT64_MAX);
}

TEST(until_and_trim)
{
    struct veil_span s = veil_span_from_str("  key=value\nrest");
    struct veil_span line, k;
    ASSERT_OK(veil_span_get_until(&s, '\n', &line));
    line = veil_span_trim(line);
    ASSERT_TRUE(veil_span_starts_with(line, "key="));
    ASSERT_OK(veil_span_get_until(&line, '=', &k));
    ASSERT_TRUE(veil_span_eq_str(k, "key"));
    ASSERT_TRUE(veil_span_eq_str(line, "value"));
    ASSERT_ERR(veil_span_get_until(&s, '\n', &line), VEIL_E_INCOMPLETE);
    ASSERT_TRUE(veil_span_eq_str(s, "rest"));
}

TEST(errors_have_names_and_messages)
{
    ASSERT_STR_EQ(veil_err_name(VEIL_E_FORMAT), "VEIL_E_FORMAT");
    ASSERT_STR_EQ(veil_err_str(VEIL_OK), "success");
    ASSERT_STR_EQ(veil_err_str((veil_err)-999), "unknown error");
    struct veil_errbuf eb = {{0}};
    ASSERT_ERR(veil_errf(&eb, VEIL_E_LIMIT, "too big: %d", 5), VEIL_E_LIMIT);
    ASSERT_STR_EQ(eb.msg, "too big: 5");
    (void)veil_err_prefix(&eb, VEIL_E_LIMIT, "file %s", "x");
    ASSERT_STR_EQ(eb.msg, "file x: too big: 5");
    ASSERT_ERR(veil_errf(NULL, VEIL_E_IO, "ignored"), VEIL_E_IO);
}

RUN_TESTS()
