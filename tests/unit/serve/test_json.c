#include "harness.h"
#include "serve_int.h"

#include <math.h>

static struct veil_arena A;

static struct sv_sig one_input(enum veil_dtype dt, size_t rank, int64_t d1)
{
    struct sv_sig s;
    memset(&s, 0, sizeof(s));
    s.n_in = 1;
    s.in[0].name = (char *)"x";
    s.in[0].dt = dt;
    s.in[0].tf_dtype = veil__serve_tf_dtype(dt);
    s.in[0].rank = rank;
    s.in[0].dims[0] = -1;
    s.in[0].dims[1] = d1;
    return s;
}

/* Parses and decodes body; returns the status code (0 on success). */
static int decode(const char *body, const struct sv_sig *sig, struct veil_tensor *t, bool *row,
                  struct sv_status *st)
{
    struct json_val *root = NULL;
    char name[64];
    veil_arena_release(&A);
    veil_arena_init(&A, 4096, 1 << 26);
    if (!veil__serve_json_parse(veil_span_from_str(body), &A, &root, st) ||
        !veil__serve_rest_signature_name(root, name, sizeof(name), st) ||
        !veil__serve_rest_decode_predict(root, sig, &A, t, row, st))
        return st->code;
    return 0;
}

TEST(parser_accepts_and_rejects)
{
    struct json_val *v = NULL;
    struct sv_status st;
    veil_arena_init(&A, 4096, 1 << 20);
    ASSERT_TRUE(veil__serve_json_parse(
        veil_span_from_str(" {\"a\": [1, -2.5e3, true, false, null, \"s\\u00e9\\n\"], \"b\": {}} "),
        &A, &v, &st));
    ASSERT_EQ_U64(v->kind, JSON_OBJECT);
    ASSERT_EQ_U64(v->n, 2);
    ASSERT_EQ_U64(v->child->n, 6);
    struct json_val *s = v->child->child->next->next->next->next->next;
    ASSERT_TRUE(veil_span_eq_str(s->text, "s\xc3\xa9\n"));
    static const char *const bad[][2] = {
        {"", "The document is empty. at offset: 0"},
        {"   ", "The document is empty"},
        {"{\"a\": }", "Invalid value. at offset: 6"},
        {"{\"a\" 1}", "Missing a colon"},
        {"[1 2]", "Missing a comma or ']'"},
        {"{1: 2}", "Missing a name"},
        {"\"abc", "Missing a closing quotation mark"},
        {"\"\\q\"", "Invalid escape"},
        {"\"\\u12G4\"", "Incorrect hex digit"},
        {"1 2", "must not be followed"},
        {"01", "must not be followed"},
        {"1.", "Missing fraction"},
        {"1e", "Missing exponent"},
        {"nul", "Invalid value"},
        {"\"a\x01\"", "Invalid encoding"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (veil__serve_json_parse(veil_span_from_str(bad[i][0]), &A, &v, &st))
            HFAIL("accepted %s", bad[i][0]);
        ASSERT_EQ_U64(st.code, VEIL_GRPC_INVALID_ARGUMENT);
        ASSERT_STR_CONTAINS(st.msg, "JSON Parse error: ");
        ASSERT_STR_CONTAINS(st.msg, bad[i][1]);
    }
    char deep[200];
    memset(deep, '[', sizeof(deep));
    ASSERT_FALSE(veil__serve_json_parse(veil_span_make(deep, sizeof(deep)), &A, &v, &st));
    veil_arena_release(&A);
}

TEST(numbers_exact)
{
    static const char *const toks[] = {"0",
                                       "1",
                                       "-0.5",
                                       "3.14159",
                                       "1e5",
                                       "2.5E-3",
                                       "123456789012345678",
                                       "0.1",
                                       "1.7976931348623157e308",
                                       "4.9e-324",
                                       "9007199254740993",
                                       "1e23",
                                       "0.30000000000000004"};
    for (size_t i = 0; i < sizeof(toks) / sizeof(toks[0]); i++) {
        double d = 0;
        ASSERT_TRUE(veil__serve_json_f64(veil_span_from_str(toks[i]), &d));
        if (d != strtod(toks[i], NULL))
            HFAIL("%s: %.17g != %.17g", toks[i], d, strtod(toks[i], NULL));
    }
    double d;
    ASSERT_TRUE(veil__serve_json_f64(veil_span_from_str("NaN"), &d) && isnan(d));
    ASSERT_TRUE(veil__serve_json_f64(veil_span_from_str("-Infinity"), &d) && d == -INFINITY);
    int64_t i;
    uint64_t u;
    ASSERT_TRUE(veil__serve_json_i64(veil_span_from_str("-9223372036854775808"), &i));
    ASSERT_EQ_I64(i, INT64_MIN);
    ASSERT_FALSE(veil__serve_json_i64(veil_span_from_str("9223372036854775808"), &i));
    ASSERT_TRUE(veil__serve_json_u64(veil_span_from_str("18446744073709551615"), &u));
    ASSERT_FALSE(veil__serve_json_u64(veil_span_from_str("18446744073709551616"), &u));
    ASSERT_FALSE(veil__serve_json_u64(veil_span_from_str("-1"), &u));
}

TEST(row_and_columnar_decoding)
{
    struct sv_sig sig = one_input(VEIL_DT_FLOAT, 2, 3);
    struct veil_tensor t[SV_MAX_IO];
    struct sv_status st;
    bool row = false;
    veil_arena_init(&A, 4096, 1 << 20);
    ASSERT_EQ_U64(decode("{\"instances\": [[1,2,3],[4,5,6.5]]}", &sig, t, &row, &st), 0);
    ASSERT_TRUE(row);
    ASSERT_EQ_U64(t[0].rank, 2);
    ASSERT_EQ_I64(t[0].dims[0], 2);
    ASSERT_EQ_I64(t[0].dims[1], 3);
    ASSERT_TRUE(((float *)t[0].data)[5] == 6.5f);
    ASSERT_EQ_U64(
        decode("{\"inputs\": {\"x\": [[1,2,3]]}, \"signature_name\": \"\"}", &sig, t, &row, &st),
        0);
    ASSERT_FALSE(row);
    ASSERT_EQ_I64(t[0].dims[0], 1);
    ASSERT_EQ_U64(decode("{\"inputs\": 5}", &sig, t, &row, &st), 0);
    ASSERT_EQ_U64(t[0].rank, 0);
    static const char *const bad[][2] = {
        {"{\"instances\": [[1,2,3],[1,2]]}", "Encountered list at unexpected size: 2 at level: 1"},
        {"{\"instances\": [[1,2,3],7]}", "incorrect level"},
        {"{\"instances\": [[1,[2],3]]}", "found a list"},
        {"{\"instances\": [[\"a\",2,3]]}",
         "JSON Value: \"a\" Type: String is not of expected type: float"},
        {"{\"instances\": [[true,2,3]]}", "Type: True is not of expected type: float"},
        {"{\"instances\": [{\"x\": [1,2,3]}, [1,2,3]]}", "keys must be equal to: x"},
        {"{\"instances\": [{\"x\": [1,2,3], \"y\": 1}]}", "keys must be equal to: x"},
        {"{\"instances\": []}", "No values in 'instances' array"},
        {"{\"instances\": {}}", "Expecting 'instances' to be an list/array"},
        {"{\"inputs\": {\"y\": 1}}", "Missing named input: x in 'inputs' object."},
        {"{}", "Missing 'inputs' or 'instances' key"},
        {"{\"inputs\": 1, \"instances\": [1]}", "only one of 'inputs' or 'instances'"},
        {"[1]", "Is not object"},
        {"{\"signature_name\": 1, \"inputs\": 1}", "'signature_name' key must be a string value."},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (decode(bad[i][0], &sig, t, &row, &st) != VEIL_GRPC_INVALID_ARGUMENT)
            HFAIL("accepted %s (%d %s)", bad[i][0], st.code, st.msg);
        ASSERT_STR_CONTAINS(st.msg, bad[i][1]);
    }
    veil_arena_release(&A);
}

TEST(typed_decoding)
{
    struct veil_tensor t[SV_MAX_IO];
    struct sv_status st;
    bool row;
    veil_arena_init(&A, 4096, 1 << 20);
    struct sv_sig s64 = one_input(VEIL_DT_INT64, 1, 0);
    ASSERT_EQ_U64(decode("{\"instances\": [1, -9223372036854775808]}", &s64, t, &row, &st), 0);
    ASSERT_EQ_I64(((int64_t *)t[0].data)[1], INT64_MIN);
    ASSERT_EQ_U64(decode("{\"instances\": [1.5]}", &s64, t, &row, &st), VEIL_GRPC_INVALID_ARGUMENT);
    struct sv_sig s32 = one_input(VEIL_DT_INT32, 1, 0);
    ASSERT_EQ_U64(decode("{\"instances\": [2147483648]}", &s32, t, &row, &st),
                  VEIL_GRPC_INVALID_ARGUMENT);
    struct sv_sig sb = one_input(VEIL_DT_BOOL, 1, 0);
    ASSERT_EQ_U64(decode("{\"instances\": [true, false]}", &sb, t, &row, &st), 0);
    ASSERT_EQ_U64(((uint8_t *)t[0].data)[0], 1);
    ASSERT_EQ_U64(decode("{\"instances\": [1]}", &sb, t, &row, &st), VEIL_GRPC_INVALID_ARGUMENT);
    /* float16 and bfloat16 take numbers, rounded to nearest even (ties to even). */
    struct sv_sig sh = one_input(VEIL_DT_FLOAT16, 1, 0);
    ASSERT_EQ_U64(decode("{\"instances\": [1, 0.1, 65520, -1e-8, 1.00048828125, -Infinity, "
                         "NaN, 6e-8]}",
                         &sh, t, &row, &st),
                  0);
    uint16_t want_h[8] = {0x3c00, 0x2e66, 0x7c00, 0x8000, 0x3c00, 0xfc00, 0x7e00, 0x0001};
    ASSERT_EQ_U64(t[0].dtype, VEIL_DT_FLOAT16);
    ASSERT_EQ_U64(t[0].nbytes, 16);
    ASSERT_MEM_EQ(t[0].data, want_h, sizeof(want_h));
    ASSERT_EQ_U64(decode("{\"inputs\": [[1.5, 2]]}", &sh, t, &row, &st), 0);
    ASSERT_EQ_U64(t[0].rank, 2);
    ASSERT_EQ_U64(((uint16_t *)t[0].data)[1], 0x4000);
    ASSERT_EQ_U64(decode("{\"instances\": [true]}", &sh, t, &row, &st), VEIL_GRPC_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(st.msg, "is not of expected type: half");
    ASSERT_EQ_U64(decode("{\"instances\": [\"1\"]}", &sh, t, &row, &st),
                  VEIL_GRPC_INVALID_ARGUMENT);
    struct sv_sig sbf = one_input(VEIL_DT_BFLOAT16, 1, 0);
    ASSERT_EQ_U64(
        decode("{\"instances\": [1.00390625, 1.01171875, 3.0e38, 1e39]}", &sbf, t, &row, &st), 0);
    uint16_t want_b[4] = {0x3f80, 0x3f82, 0x7f62, 0x7f80};
    ASSERT_MEM_EQ(t[0].data, want_b, sizeof(want_b));
    struct sv_sig su16 = one_input(VEIL_DT_UINT16, 1, 0);
    ASSERT_EQ_U64(decode("{\"instances\": [1]}", &su16, t, &row, &st), VEIL_GRPC_UNIMPLEMENTED);
    ASSERT_STR_CONTAINS(st.msg, "to type: uint16");
    struct sv_sig sf = one_input(VEIL_DT_FLOAT, 1, 0);
    ASSERT_EQ_U64(decode("{\"instances\": [NaN, -Infinity, 1e400]}", &sf, t, &row, &st), 0);
    ASSERT_TRUE(isnan(((float *)t[0].data)[0]));
    ASSERT_TRUE(isinf(((float *)t[0].data)[2]));
    veil_arena_release(&A);
}

TEST(encoding_predict_responses)
{
    float f[6] = {1.0f, 2.5f, 0.1f, NAN, INFINITY, 9e6f};
    int64_t ints[2] = {-3, 4};
    struct veil_tensor o[2];
    memset(o, 0, sizeof(o));
    o[0].dtype = VEIL_DT_FLOAT;
    o[0].rank = 2;
    o[0].dims[0] = 2;
    o[0].dims[1] = 3;
    o[0].data = f;
    o[0].nbytes = sizeof(f);
    o[1].dtype = VEIL_DT_INT64;
    o[1].rank = 1;
    o[1].dims[0] = 2;
    o[1].data = ints;
    o[1].nbytes = sizeof(ints);
    const char *names[2] = {"y", "k"};
    struct veil_buf b;
    struct sv_status st;
    veil_buf_init(&b, 1 << 20);
    ASSERT_TRUE(veil__serve_rest_encode_predict(o, names, 1, true, &b, &st));
    ASSERT_OK(veil_buf_append_u8(&b, 0));
    ASSERT_STR_EQ((char *)b.p, "{\"predictions\": [[1.0,2.5,0.1],[NaN,Infinity,9e+06]]}");
    veil_buf_reset(&b);
    ASSERT_TRUE(veil__serve_rest_encode_predict(o, names, 2, true, &b, &st));
    ASSERT_OK(veil_buf_append_u8(&b, 0));
    ASSERT_STR_EQ((char *)b.p, "{\"predictions\": [{\"y\": [1.0,2.5,0.1],\"k\": -3},"
                               "{\"y\": [NaN,Infinity,9e+06],\"k\": 4}]}");
    veil_buf_reset(&b);
    ASSERT_TRUE(veil__serve_rest_encode_predict(o, names, 2, false, &b, &st));
    ASSERT_OK(veil_buf_append_u8(&b, 0));
    ASSERT_STR_EQ((char *)b.p, "{\"outputs\": {\"y\": [[1.0,2.5,0.1],[NaN,Infinity,9e+06]], "
                               "\"k\": [-3,4]}}");
    o[1].dims[0] = 3;
    veil_buf_reset(&b);
    ASSERT_FALSE(veil__serve_rest_encode_predict(o, names, 2, true, &b, &st));
    ASSERT_STR_CONTAINS(st.msg, "inconsistent batch size");
    veil_buf_release(&b);
}

TEST(encoding_16_bit_floats)
{
    /* 1, 0.1 (0.0999755859375), -65504, the smallest subnormal, NaN, infinity. */
    uint16_t h[6] = {0x3c00, 0x2e66, 0xfbff, 0x0001, 0x7e00, 0x7c00};
    uint16_t bf[2] = {0x3f80, 0xc2f7}; /* 1, -123.5 */
    struct veil_tensor o[2];
    memset(o, 0, sizeof(o));
    o[0].dtype = VEIL_DT_FLOAT16;
    o[0].rank = 2;
    o[0].dims[0] = 2;
    o[0].dims[1] = 3;
    o[0].data = h;
    o[0].nbytes = sizeof(h);
    o[1].dtype = VEIL_DT_BFLOAT16;
    o[1].rank = 1;
    o[1].dims[0] = 2;
    o[1].data = bf;
    o[1].nbytes = sizeof(bf);
    const char *names[2] = {"h", "b"};
    struct veil_buf b;
    struct sv_status st;
    veil_buf_init(&b, 1 << 16);
    ASSERT_TRUE(veil__serve_rest_encode_predict(o, names, 2, false, &b, &st));
    ASSERT_OK(veil_buf_append_u8(&b, 0));
    ASSERT_STR_EQ((const char *)b.p,
                  "{\"outputs\": {\"h\": [[1.0,0.099975586,-65504.0],[5.9604645e-08,NaN,"
                  "Infinity]], \"b\": [1.0,-123.5]}}");
    /* The KServe v2 flat form writes the same numbers. */
    b.len = 0;
    ASSERT_OK(veil__serve_json_put_flat(&b, &o[0]));
    ASSERT_OK(veil_buf_append_u8(&b, 0));
    ASSERT_STR_EQ((const char *)b.p, "[1.0,0.099975586,-65504.0,5.9604645e-08,NaN,Infinity]");
    veil_buf_release(&b);
}

TEST(base64)
{
    struct veil_span out;
    veil_arena_init(&A, 4096, 1 << 20);
    ASSERT_OK(veil__serve_b64_decode(veil_span_from_str("aGVsbG8="), &A, &out));
    ASSERT_TRUE(veil_span_eq_str(out, "hello"));
    ASSERT_OK(veil__serve_b64_decode(veil_span_from_str("YWI="), &A, &out));
    ASSERT_TRUE(veil_span_eq_str(out, "ab"));
    ASSERT_ERR(veil__serve_b64_decode(veil_span_from_str("aGVsbG8"), &A, &out), VEIL_E_FORMAT);
    ASSERT_ERR(veil__serve_b64_decode(veil_span_from_str("a=Vs"), &A, &out), VEIL_E_FORMAT);
    veil_arena_release(&A);
}

TEST(big_float_array_decodes_fast)
{
    /* 1x224x224x3 floats, as a ResNet REST client sends them. */
    struct veil_buf b;
    veil_buf_init(&b, 8u << 20);
    ASSERT_OK(veil_buf_append_str(&b, "{\"instances\": [["));
    for (int i = 0; i < 224; i++) {
        ASSERT_OK(veil_buf_append_str(&b, i ? ",[" : "["));
        for (int j = 0; j < 224; j++)
            ASSERT_OK(veil_buf_appendf(&b, "%s[%d.%d,0.%d,-%d.5]", j ? "," : "", j, i, j, i));
        ASSERT_OK(veil_buf_append_str(&b, "]"));
    }
    ASSERT_OK(veil_buf_append_str(&b, "]]}"));
    struct sv_sig sig;
    memset(&sig, 0, sizeof(sig));
    sig.n_in = 1;
    sig.in[0].name = (char *)"x";
    sig.in[0].dt = VEIL_DT_FLOAT;
    sig.in[0].tf_dtype = 1;
    struct veil_tensor t[SV_MAX_IO];
    struct sv_status st;
    bool row;
    uint64_t best = UINT64_MAX;
    for (int k = 0; k < 5; k++) {
        struct json_val *root = NULL;
        uint64_t t0 = veil_time_mono_ns();
        veil_arena_init(&A, 1 << 20, 1 << 28);
        ASSERT_TRUE(veil__serve_json_parse(veil_buf_span(&b), &A, &root, &st));
        ASSERT_TRUE(veil__serve_rest_decode_predict(root, &sig, &A, t, &row, &st));
        uint64_t dt = veil_time_mono_ns() - t0;
        best = dt < best ? dt : best;
        ASSERT_EQ_U64(t[0].rank, 4);
        ASSERT_EQ_I64(t[0].dims[3], 3);
        ASSERT_TRUE(((float *)t[0].data)[3 * 224 * 224 - 1] == -223.5f);
        veil_arena_release(&A);
    }
    fprintf(stderr, "  1x224x224x3 float JSON (%zu bytes) decoded in %.2f ms\n", b.len,
            (double)best / 1e6);
    /* Printed, not asserted: timings belong to benchmarks (about 2 ms in a release build). */
    veil_buf_release(&b);
}

RUN_TESTS()
