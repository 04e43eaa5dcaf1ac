/*
 * The attestation endpoint's request parsers (src/serve/evidence.c): the REST JSON body and
 * the gRPC GetEvidenceRequest, with the nonce bounds, the key hash size, unknown fields and
 * truncation.
 */
#include "harness.h"
#include "serve_int.h"

static const char *hex32 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

TEST(json_requests)
{
    struct sv_evidence_req r;
    char why[160], body[512];
    snprintf(body, sizeof(body), "{\"nonce\":\"%s\",\"key_sha256\":\"%s\"}", hex32, hex32);
    ASSERT_TRUE(veil__serve_evidence_parse_json(veil_span_from_str(body), &r, why, sizeof(why)));
    ASSERT_EQ_U64(r.nonce_len, 32);
    ASSERT_TRUE(r.has_key && r.nonce[31] == 0x1f && r.key_sha256[0] == 0);
    static const char *const bad[][2] = {
        {"{\"nonce\":\"0001\",\"key_sha256\":\"K\"}", "16 to 64 bytes"},
        {"{\"nonce\":\"N\"}", "required"},
        {"{\"key_sha256\":\"K\"}", "required"},
        {"{\"nonce\":\"N\",\"key_sha256\":\"0011\"}", "64 hex digits"},
        {"{\"nonce\":\"N\",\"key_sha256\":\"K\",\"extra\":1}", "unknown member"},
        {"{\"nonce\":1,\"key_sha256\":\"K\"}", "16 to 64 bytes"},
        {"[1]", "JSON object"},
        {"not json", "JSON object"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[512];
        /* N and K stand for valid values, so that each case fails for one reason. */
        size_t o = 0;
        for (const char *p = bad[i][0]; *p != '\0' && o + 65 < sizeof(text); p++) {
            if ((*p == 'N' || *p == 'K') && p[-1] == '"') {
                memcpy(text + o, hex32, 64);
                o += 64;
            } else {
                text[o++] = *p;
            }
        }
        text[o] = '\0';
        if (veil__serve_evidence_parse_json(veil_span_from_str(text), &r, why, sizeof(why)))
            HFAIL("accepted %s", text);
        ASSERT_STR_CONTAINS(why, bad[i][1]);
    }
}

TEST(grpc_requests)
{
    struct sv_evidence_req r;
    char why[160];
    uint8_t m[128];
    size_t n = 0;
    m[n++] = 0x18; /* an unknown varint field (3) first: skipped */
    m[n++] = 0x96;
    m[n++] = 0x01;
    m[n++] = 0x0a;
    m[n++] = 20;
    memset(m + n, 0x33, 20);
    n += 20;
    m[n++] = 0x12;
    m[n++] = 32;
    memset(m + n, 0x44, 32);
    n += 32;
    ASSERT_TRUE(veil__serve_evidence_parse_pb(veil_span_make(m, n), &r, why, sizeof(why)));
    ASSERT_EQ_U64(r.nonce_len, 20);
    ASSERT_TRUE(r.nonce[19] == 0x33 && r.key_sha256[31] == 0x44);
    /* Truncated in the key, a key of 31 bytes, no key, a nonce of 8 or 65 bytes. */
    ASSERT_TRUE(!veil__serve_evidence_parse_pb(veil_span_make(m, n - 1), &r, why, sizeof(why)));
    ASSERT_STR_CONTAINS(why, "malformed");
    m[n - 33] = 31;
    ASSERT_TRUE(!veil__serve_evidence_parse_pb(veil_span_make(m, n - 1), &r, why, sizeof(why)));
    ASSERT_STR_CONTAINS(why, "key_sha256 must be 32 bytes");
    ASSERT_TRUE(!veil__serve_evidence_parse_pb(veil_span_make(m, 25), &r, why, sizeof(why)));
    ASSERT_STR_CONTAINS(why, "required");
    uint8_t short_nonce[] = {0x0a, 8, 1, 2, 3, 4, 5, 6, 7, 8};
    ASSERT_TRUE(!veil__serve_evidence_parse_pb(veil_span_make(short_nonce, sizeof(short_nonce)), &r,
                                               why, sizeof(why)));
    ASSERT_STR_CONTAINS(why, "16 to 64 bytes");
    uint8_t big[2 + 65] = {0x0a, 65};
    ASSERT_TRUE(
        !veil__serve_evidence_parse_pb(veil_span_make(big, sizeof(big)), &r, why, sizeof(why)));
    /* A nonce sent as a varint, a group wire type, an overlong varint. */
    uint8_t wrong_type[] = {0x08, 0x01};
    ASSERT_TRUE(
        !veil__serve_evidence_parse_pb(veil_span_make(wrong_type, 2), &r, why, sizeof(why)));
    uint8_t group[] = {0x0b};
    ASSERT_TRUE(!veil__serve_evidence_parse_pb(veil_span_make(group, 1), &r, why, sizeof(why)));
    uint8_t overlong[12] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    ASSERT_TRUE(!veil__serve_evidence_parse_pb(veil_span_make(overlong, 12), &r, why, sizeof(why)));
}

RUN_TESTS()
