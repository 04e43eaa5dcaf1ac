#include "harness.h"
#include "veil/base.h"

TEST(rfc3339)
{
    int64_t t;
    ASSERT_OK(veil_time_parse_rfc3339(veil_span_from_str("1970-01-01T00:00:00Z"), &t));
    ASSERT_EQ_I64(t, 0);
    ASSERT_OK(veil_time_parse_rfc3339(veil_span_from_str("2024-02-29T12:34:56.789Z"), &t));
    ASSERT_EQ_I64(t, 1709210096);
    ASSERT_OK(veil_time_parse_rfc3339(veil_span_from_str("2024-02-29T14:34:56+02:00"), &t));
    ASSERT_EQ_I64(t, 1709210096);
    ASSERT_ERR(veil_time_parse_rfc3339(veil_span_from_str("2023-02-29T00:00:00Z"), &t),
               VEIL_E_FORMAT);
    ASSERT_ERR(veil_time_parse_rfc3339(veil_span_from_str("2024-01-01T00:00:00"), &t),
               VEIL_E_FORMAT);
    ASSERT_ERR(veil_time_parse_rfc3339(veil_span_from_str("2024-01-01T00:00:00Zjunk"), &t),
               VEIL_E_FORMAT);
    char out[21];
    veil_time_format_rfc3339(1709210096, out);
    ASSERT_STR_EQ(out, "2024-02-29T12:34:56Z");
}

TEST(hex)
{
    const uint8_t b[] = {0x00, 0xff, 0x1a};
    char h[7];
    veil_hex_encode(b, 3, h);
    ASSERT_STR_EQ(h, "00ff1a");
    uint8_t d[3];
    ASSERT_OK(veil_hex_decode(veil_span_from_str("00FF1a"), d, 3));
    ASSERT_MEM_EQ(d, b, 3);
    ASSERT_ERR(veil_hex_decode(veil_span_from_str("00FF1"), d, 3), VEIL_E_FORMAT);
    ASSERT_ERR(veil_hex_decode(veil_span_from_str("00FF1g"), d, 3), VEIL_E_FORMAT);
}

TEST(random_and_cpus)
{
    uint8_t a[32] = {0}, b[32] = {0};
    ASSERT_OK(veil_random_bytes(a, sizeof(a)));
    ASSERT_OK(veil_random_bytes(b, sizeof(b)));
    ASSERT_FALSE(memcmp(a, b, sizeof(a)) == 0);
    ASSERT_TRUE(veil_cpu_count() >= 1);
}

static int sink_calls;
static char sink_msg[128];
static void sink(void *ud, enum veil_log_level level, const char *file, int line, const char *func,
                 const char *msg)
{
    (void)ud;
    (void)level;
    (void)file;
    (void)line;
    (void)func;
    sink_calls++;
    snprintf(sink_msg, sizeof(sink_msg), "%s", msg);
}

TEST(log_sink_and_level)
{
    veil_log_set_sink(sink, NULL);
    veil_log_set_level(VEIL_LOG_LEVEL_WARN);
    VEIL_LOG_INFO("hidden %d", 1);
    VEIL_LOG_ERR_RC(VEIL_E_IO, "reading %s", "x");
    veil_log_set_sink(NULL, NULL);
    veil_log_set_level(VEIL_LOG_LEVEL_INFO);
    ASSERT_EQ_U64(sink_calls, 1);
    ASSERT_STR_EQ(sink_msg, "reading x: I/O error");
}

/* Aligned blocks: every alignment honoured, the whole size writable (ASan checks the bounds),
 * zero size allowed, an overflowing size refused, and injected failures reported. */
TEST(aligned_alloc)
{
    static const size_t aligns[] = {8, 16, 64, 4096, 2u << 20};
    for (size_t i = 0; i < sizeof(aligns) / sizeof(aligns[0]); i++)
        for (size_t size = 0; size <= 3 * 4096 + 5; size += 4096 + 1) {
            uint8_t *p = veil_aligned_alloc(aligns[i], size);
            ASSERT_TRUE(p != NULL);
            ASSERT_EQ_U64((uintptr_t)p % aligns[i], 0);
            memset(p, 0xa5, size);
            veil_aligned_free(p);
        }
    veil_aligned_free(NULL);
    ASSERT_TRUE(veil_aligned_alloc(64, SIZE_MAX - 8) == NULL);
    veil_alloc_fail_after(0);
    ASSERT_TRUE(veil_aligned_alloc(64, 100) == NULL);
    veil_alloc_fail_reset();
    void *q = veil_aligned_alloc(64, 100);
    ASSERT_TRUE(q != NULL);
    veil_aligned_free(q);
}

RUN_TESTS()
