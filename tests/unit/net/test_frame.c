#include "harness.h"
#include "veil/net.h"

TEST(grpc_frame_reads_one_message)
{
    const uint8_t b[] = {0, 0, 0, 0, 3, 'a', 'b', 'c', 1, 0, 0, 0, 0};
    struct veil_span s = veil_span_make(b, sizeof(b)), msg;
    bool z = true;
    ASSERT_OK(veil_grpc_frame_read(&s, 100, &z, &msg));
    ASSERT_FALSE(z);
    ASSERT_EQ_U64(msg.len, 3);
    ASSERT_MEM_EQ(msg.p, "abc", 3);
    ASSERT_OK(veil_grpc_frame_read(&s, 100, &z, &msg));
    ASSERT_TRUE(z);
    ASSERT_EQ_U64(msg.len, 0);
    ASSERT_EQ_U64(s.len, 0);
}

TEST(grpc_frame_incomplete_limit_and_bad_flag)
{
    const uint8_t cut[] = {0, 0, 0, 0, 4, 'a'};
    const uint8_t big[] = {0, 0, 0, 1, 0, 'a'};
    const uint8_t flag[] = {2, 0, 0, 0, 0};
    struct veil_span s = veil_span_make(cut, sizeof(cut)), msg;
    bool z;
    ASSERT_ERR(veil_grpc_frame_read(&s, 100, &z, &msg), VEIL_E_INCOMPLETE);
    ASSERT_EQ_U64(s.len, sizeof(cut));
    s = veil_span_make(cut, 3);
    ASSERT_ERR(veil_grpc_frame_read(&s, 100, &z, &msg), VEIL_E_INCOMPLETE);
    s = veil_span_make(big, sizeof(big));
    ASSERT_ERR(veil_grpc_frame_read(&s, 255, &z, &msg), VEIL_E_LIMIT);
    s = veil_span_make(flag, sizeof(flag));
    ASSERT_ERR(veil_grpc_frame_read(&s, 100, &z, &msg), VEIL_E_FORMAT);
}

TEST(grpc_timeout_grammar)
{
    uint64_t ns = 0;
    ASSERT_OK(veil_grpc_timeout_parse(veil_span_from_str("100m"), &ns));
    ASSERT_EQ_U64(ns, 100000000ULL);
    ASSERT_OK(veil_grpc_timeout_parse(veil_span_from_str("2S"), &ns));
    ASSERT_EQ_U64(ns, 2000000000ULL);
    ASSERT_OK(veil_grpc_timeout_parse(veil_span_from_str("99999999H"), &ns));
    ASSERT_EQ_U64(ns, UINT64_MAX); /* saturates instead of wrapping */
    ASSERT_OK(veil_grpc_timeout_parse(veil_span_from_str("99999999u"), &ns));
    ASSERT_EQ_U64(ns, 99999999000ULL);
    ASSERT_OK(veil_grpc_timeout_parse(veil_span_from_str("7n"), &ns));
    ASSERT_EQ_U64(ns, 7);
    ASSERT_ERR(veil_grpc_timeout_parse(veil_span_from_str("100"), &ns), VEIL_E_FORMAT);
    ASSERT_ERR(veil_grpc_timeout_parse(veil_span_from_str("m"), &ns), VEIL_E_FORMAT);
    ASSERT_ERR(veil_grpc_timeout_parse(veil_span_from_str("123456789S"), &ns), VEIL_E_FORMAT);
    ASSERT_ERR(veil_grpc_timeout_parse(veil_span_from_str("1x"), &ns), VEIL_E_FORMAT);
    ASSERT_ERR(veil_grpc_timeout_parse(veil_span_from_str("-1S"), &ns), VEIL_E_FORMAT);
}

TEST(status_names)
{
    ASSERT_STR_EQ(veil_grpc_status_name(0), "OK");
    ASSERT_STR_EQ(veil_grpc_status_name(9), "FAILED_PRECONDITION");
    ASSERT_STR_EQ(veil_grpc_status_name(16), "UNAUTHENTICATED");
    ASSERT_STR_EQ(veil_grpc_status_name(17), "UNKNOWN");
    ASSERT_STR_EQ(veil_grpc_status_name(-1), "UNKNOWN");
}

TEST(gzip_round_trip_and_caps)
{
    struct veil_buf z, out;
    uint8_t data[10000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i % 7);
    veil_buf_init(&z, 1u << 20);
    veil_buf_init(&out, sizeof(data));
    ASSERT_OK(veil_net_gzip(veil_span_make(data, sizeof(data)), 1u << 20, &z));
    ASSERT_TRUE(z.len < sizeof(data));
    ASSERT_OK(veil_net_gunzip(veil_buf_span(&z), sizeof(data), &out, NULL));
    ASSERT_EQ_U64(out.len, sizeof(data));
    ASSERT_MEM_EQ(out.p, data, sizeof(data));
    /* One byte short of the output: refused, not truncated. */
    struct veil_buf small;
    struct veil_errbuf eb = {{0}};
    veil_buf_init(&small, sizeof(data) - 1);
    ASSERT_ERR(veil_net_gunzip(veil_buf_span(&z), sizeof(data) - 1, &small, &eb), VEIL_E_LIMIT);
    ASSERT_EQ_U64(small.len, 0);
    /* Truncated and corrupt streams, trailing bytes, empty input. */
    ASSERT_ERR(veil_net_gunzip(veil_span_make(z.p, z.len - 4), sizeof(data), &out, &eb),
               VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(eb.msg, "truncated");
    uint8_t bad[64];
    memcpy(bad, z.p, 20);
    memset(bad + 10, 0xff, 10);
    ASSERT_ERR(veil_net_gunzip(veil_span_make(bad, 20), sizeof(data), &out, &eb), VEIL_E_FORMAT);
    ASSERT_OK(veil_buf_append(&z, "x", 1));
    ASSERT_ERR(veil_net_gunzip(veil_buf_span(&z), sizeof(data), &out, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(eb.msg, "trailing");
    ASSERT_ERR(veil_net_gunzip(veil_span_make(bad, 0), sizeof(data), &out, &eb), VEIL_E_FORMAT);
    veil_buf_release(&z);
    veil_buf_release(&out);
    veil_buf_release(&small);
}

TEST(gzip_bomb_is_capped)
{
    /* 64 MiB of zeros compress to ~64 KiB; inflating under a 1 MiB cap must stop early. */
    size_t n = 64u << 20;
    uint8_t *zeros = veil_calloc(1, n);
    ASSERT_TRUE(zeros != NULL);
    struct veil_buf z, out;
    veil_buf_init(&z, 1u << 20);
    veil_buf_init(&out, 1u << 20);
    ASSERT_OK(veil_net_gzip(veil_span_make(zeros, n), 1u << 20, &z));
    veil_free(zeros);
    ASSERT_ERR(veil_net_gunzip(veil_buf_span(&z), 1u << 20, &out, NULL), VEIL_E_LIMIT);
    ASSERT_TRUE(out.cap <= (1u << 20) + 1);
    veil_buf_release(&z);
    veil_buf_release(&out);
}

RUN_TESTS()
