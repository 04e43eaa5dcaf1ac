/* Unit tests of the warmup file readers (warmup.c): TFRecord framing with its masked CRC-32C
 * values, and the PredictRequest inside a PredictionLog. */
#include "harness.h"
#include "serve_int.h"

/* One TFRecord record of data written into out (len + 16 bytes), as TensorFlow writes it. The
 * CRC values are those of TensorFlow's crc32c::Mask for these inputs, computed independently. */
static size_t record(const uint8_t *data, size_t len, uint8_t *out)
{
    uint64_t n = len;
    memcpy(out, &n, 8);
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < 8; i++) {
        c ^= out[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    c = ~c;
    uint32_t m = ((c >> 15) | (c << 17)) + 0xA282EAD8u;
    memcpy(out + 8, &m, 4);
    memcpy(out + 12, data, len);
    c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        c ^= data[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    c = ~c;
    m = ((c >> 15) | (c << 17)) + 0xA282EAD8u;
    memcpy(out + 12 + len, &m, 4);
    return len + 16;
}

TEST(crc32c_known_answer)
{
    /* CRC-32C of "123456789" is 0xE3069283 (RFC 3720 B.4's check value). */
    uint8_t buf[64];
    size_t n = record((const uint8_t *)"123456789", 9, buf);
    uint32_t m;
    memcpy(&m, buf + n - 4, 4);
    uint32_t c = 0xE3069283u;
    ASSERT_EQ_U64(m, (uint32_t)(((c >> 15) | (c << 17)) + 0xA282EAD8u));
    struct veil_span s = veil_span_make(buf, n), rec;
    ASSERT_OK(veil__serve_tfrecord_next(&s, &rec));
    ASSERT_EQ_U64(rec.len, 9);
    ASSERT_MEM_EQ(rec.p, "123456789", 9);
    ASSERT_EQ_U64(s.len, 0);
}

TEST(tfrecord_framing)
{
    uint8_t buf[256];
    size_t n = record((const uint8_t *)"ab", 2, buf);
    n += record((const uint8_t *)"", 0, buf + n);
    struct veil_span s = veil_span_make(buf, n), rec;
    ASSERT_OK(veil__serve_tfrecord_next(&s, &rec));
    ASSERT_EQ_U64(rec.len, 2);
    ASSERT_OK(veil__serve_tfrecord_next(&s, &rec));
    ASSERT_EQ_U64(rec.len, 0);
    ASSERT_EQ_U64(s.len, 0);
    /* Every cut is incomplete and leaves the span where it was. */
    for (size_t cut = 1; cut < 18; cut++) {
        s = veil_span_make(buf, cut);
        ASSERT_ERR(veil__serve_tfrecord_next(&s, &rec), VEIL_E_INCOMPLETE);
        ASSERT_EQ_U64(s.len, cut);
    }
    /* A flipped bit in the length, its CRC, the data or the data's CRC is corrupt. */
    for (size_t i = 0; i < 18; i++) {
        uint8_t bad[32];
        memcpy(bad, buf, 18);
        bad[i] ^= 0x01;
        s = veil_span_make(bad, 18);
        veil_err rc = veil__serve_tfrecord_next(&s, &rec);
        ASSERT_TRUE(rc == VEIL_E_FORMAT || (i < 8 && rc == VEIL_E_INCOMPLETE));
    }
    /* A length beyond the file. */
    uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    s = veil_span_make(huge, sizeof(huge));
    ASSERT_TRUE(veil__serve_tfrecord_next(&s, &rec) != VEIL_OK);
}

TEST(prediction_log)
{
    /* PredictionLog { predict_log (6) { request (1): "\x0a\x00" } } */
    static const uint8_t log[] = {0x32, 0x04, 0x0a, 0x02, 0x0a, 0x00};
    struct veil_span req;
    ASSERT_OK(veil__serve_warmup_predict(veil_span_make(log, sizeof(log)), &req));
    ASSERT_EQ_U64(req.len, 2);
    /* log_metadata (1) before it is skipped. */
    static const uint8_t log2[] = {0x0a, 0x01, 0x00, 0x32, 0x02, 0x0a, 0x00};
    ASSERT_OK(veil__serve_warmup_predict(veil_span_make(log2, sizeof(log2)), &req));
    ASSERT_EQ_U64(req.len, 0);
    /* classify_log (2): not a predict_log. */
    static const uint8_t cls[] = {0x12, 0x00};
    ASSERT_ERR(veil__serve_warmup_predict(veil_span_make(cls, sizeof(cls)), &req),
               VEIL_E_UNSUPPORTED);
    /* Cut or malformed. */
    static const uint8_t cut[] = {0x32, 0x05, 0x0a};
    ASSERT_ERR(veil__serve_warmup_predict(veil_span_make(cut, sizeof(cut)), &req), VEIL_E_FORMAT);
    static const uint8_t bad[] = {0x33};
    ASSERT_ERR(veil__serve_warmup_predict(veil_span_make(bad, sizeof(bad)), &req), VEIL_E_FORMAT);
}

RUN_TESTS()
