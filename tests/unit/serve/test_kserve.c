/* Unit tests of the KServe v2 parsers (kserve.c): the /v2 URL grammar, datatypes and versions,
 * the REST inference body with JSON and binary tensors, binding to a signature, and the REST
 * response with JSON and binary outputs. */
#include "harness.h"
#include "serve_int.h"

static struct veil_arena A;

static struct sv_sig sig_two(void)
{
    static char *const in[] = {(char *)"a", (char *)"b"};
    static char *const out[] = {(char *)"sum", (char *)"prod"};
    struct sv_sig s;
    memset(&s, 0, sizeof(s));
    s.n_in = 2;
    s.n_out = 2;
    for (size_t i = 0; i < 2; i++) {
        s.in[i].name = in[i];
        s.out[i].name = out[i];
        s.in[i].dt = s.out[i].dt = VEIL_DT_FLOAT;
        s.in[i].tf_dtype = s.out[i].tf_dtype = TF_DT_FLOAT;
        s.in[i].rank = s.out[i].rank = 2;
        s.in[i].dims[0] = s.out[i].dims[0] = -1;
        s.in[i].dims[1] = s.out[i].dims[1] = 2;
    }
    return s;
}

/* Parses body (header_len as the header, or NULL); returns the status code (0: success). */
static int parse(struct veil_span body, const char *header_len, struct kv2_request *rq,
                 struct sv_status *st)
{
    veil_arena_release(&A);
    veil_arena_init(&A, 4096, 1 << 26);
    return veil__serve_kv2_parse_rest(body, header_len, &A, rq, st) ? 0 : st->code;
}

static int parse_str(const char *body, struct kv2_request *rq, struct sv_status *st)
{
    return parse(veil_span_from_str(body), NULL, rq, st);
}

TEST(routes)
{
    struct kv2_route rt;
    ASSERT_TRUE(veil__serve_kv2_route_parse(veil_span_from_str("/v2"), &rt));
    ASSERT_EQ_U64(rt.op, KV2_SERVER_META);
    ASSERT_TRUE(veil__serve_kv2_route_parse(veil_span_from_str("/v2/"), &rt));
    ASSERT_EQ_U64(rt.op, KV2_SERVER_META);
    ASSERT_TRUE(veil__serve_kv2_route_parse(veil_span_from_str("/v2/health/live"), &rt));
    ASSERT_EQ_U64(rt.op, KV2_LIVE);
    ASSERT_TRUE(veil__serve_kv2_route_parse(veil_span_from_str("/v2/health/ready"), &rt));
    ASSERT_EQ_U64(rt.op, KV2_READY);
    ASSERT_TRUE(veil__serve_kv2_route_parse(veil_span_from_str("/v2/models/m"), &rt));
    ASSERT_EQ_U64(rt.op, KV2_MODEL_META);
    ASSERT_STR_EQ(rt.name, "m");
    ASSERT_STR_EQ(rt.version, "");
    ASSERT_TRUE(veil__serve_kv2_route_parse(veil_span_from_str("/v2/models/a%2Fb/ready"), &rt));
    ASSERT_EQ_U64(rt.op, KV2_MODEL_READY);
    ASSERT_STR_EQ(rt.name, "a/b");
    ASSERT_TRUE(
        veil__serve_kv2_route_parse(veil_span_from_str("/v2/models/m/versions/12/infer"), &rt));
    ASSERT_EQ_U64(rt.op, KV2_INFER);
    ASSERT_STR_EQ(rt.version, "12");
    ASSERT_TRUE(veil__serve_kv2_route_parse(veil_span_from_str("/v2/models/m/versions/3"), &rt));
    ASSERT_EQ_U64(rt.op, KV2_MODEL_META);
    /* A model may be called "versions" or "ready". */
    ASSERT_TRUE(veil__serve_kv2_route_parse(veil_span_from_str("/v2/models/ready/ready"), &rt));
    ASSERT_STR_EQ(rt.name, "ready");
    static const char *const bad[] = {
        "/v2x",
        "/v2/health",
        "/v2/models",
        "/v2/models/",
        "/v2/models/m/",
        "/v2/models/m/infer/",
        "/v2/models/m/versions",
        "/v2/models/m/versions/",
        "/v2/models/m/versions/1/",
        "/v2/models/m/versions/1/ready/x",
        "/v2/models/m/predict",
        "/v2/models//infer",
        "/V2/models/m",
        "/v2/Models/m",
        "/v2/models/m/INFER",
        "/v2/models/a%00b",
        "/v2/models/a%0Ab/infer", /* control characters, as on the TF Serving routes */
        "/v2/models/a%7Fb/ready",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_FALSE(veil__serve_kv2_route_parse(veil_span_from_str(bad[i]), &rt));
    /* A version too long to keep cannot parse as one. */
    ASSERT_TRUE(veil__serve_kv2_route_parse(
        veil_span_from_str("/v2/models/m/versions/1234567890123456789012345678901234/ready"), &rt));
    bool has = false;
    int64_t v = 0;
    ASSERT_FALSE(veil__serve_kv2_version(rt.version, &has, &v));
}

TEST(datatypes_and_versions)
{
    ASSERT_EQ_U64(veil__serve_kv2_dtype_parse(veil_span_from_str("FP32")), VEIL_DT_FLOAT);
    ASSERT_EQ_U64(veil__serve_kv2_dtype_parse(veil_span_from_str("BYTES")), VEIL_DT_STRING);
    ASSERT_EQ_U64(veil__serve_kv2_dtype_parse(veil_span_from_str("UINT16")), VEIL_DT_UINT16);
    ASSERT_EQ_U64(veil__serve_kv2_dtype_parse(veil_span_from_str("fp32")), VEIL_DT_UNDEFINED);
    ASSERT_EQ_U64(veil__serve_kv2_dtype_parse(veil_span_from_str("BF16")), VEIL_DT_BFLOAT16);
    ASSERT_EQ_U64(veil__serve_kv2_dtype_parse(veil_span_from_str("bf16")), VEIL_DT_UNDEFINED);
    ASSERT_STR_EQ(veil__serve_kv2_dtype_name(VEIL_DT_BFLOAT16), "BF16");
    ASSERT_STR_EQ(veil__serve_kv2_dtype_name(VEIL_DT_INT64), "INT64");
    ASSERT_STR_EQ(veil__serve_kv2_dtype_name(VEIL_DT_FLOAT16), "FP16");
    ASSERT_TRUE(veil__serve_kv2_dtype_name(VEIL_DT_UNDEFINED) == NULL);
    bool has = true;
    int64_t v = 5;
    ASSERT_TRUE(veil__serve_kv2_version("", &has, &v));
    ASSERT_FALSE(has);
    ASSERT_TRUE(veil__serve_kv2_version("0042", &has, &v));
    ASSERT_TRUE(has);
    ASSERT_EQ_I64(v, 42);
    ASSERT_FALSE(veil__serve_kv2_version("-1", &has, &v));
    ASSERT_FALSE(veil__serve_kv2_version("1.0", &has, &v));
    ASSERT_FALSE(veil__serve_kv2_version("99999999999999999999", &has, &v));
}

TEST(json_request)
{
    struct kv2_request rq;
    struct sv_status st;
    ASSERT_EQ_U64(parse_str("{\"id\":\"7\",\"parameters\":{\"binary_data_output\":true,\"x\":1},"
                            "\"inputs\":[{\"name\":\"a\",\"shape\":[2,2],\"datatype\":\"FP32\","
                            "\"data\":[[1,2],[3,4.5]]},{\"name\":\"b\",\"shape\":[1,2],"
                            "\"datatype\":\"INT64\",\"data\":[-5,6],\"parameters\":{\"q\":\"s\"}}],"
                            "\"outputs\":[{\"name\":\"prod\",\"parameters\":{\"binary_data\":"
                            "false}},{\"name\":\"sum\"}]}",
                            &rq, &st),
                  0);
    ASSERT_STR_EQ(rq.id, "7");
    ASSERT_TRUE(rq.binary_output);
    ASSERT_EQ_U64(rq.n_in, 2);
    ASSERT_STR_EQ(rq.in[0].name, "a");
    ASSERT_EQ_U64(rq.in[0].t.rank, 2);
    ASSERT_EQ_U64(rq.in[0].t.nbytes, 16);
    ASSERT_TRUE(((float *)rq.in[0].t.data)[3] == 4.5f);
    ASSERT_EQ_U64(rq.in[1].t.dtype, VEIL_DT_INT64);
    ASSERT_EQ_I64(((int64_t *)rq.in[1].t.data)[0], -5);
    ASSERT_EQ_U64(rq.n_out, 2);
    ASSERT_FALSE(rq.out[0].binary);
    ASSERT_TRUE(rq.out[1].binary); /* binary_data_output applies where binary_data is absent */
    /* FP16 and BF16 take JSON numbers, nested or flat, rounded to nearest even. */
    ASSERT_EQ_U64(parse_str("{\"inputs\":[{\"name\":\"h\",\"shape\":[2,2],\"datatype\":\"FP16\","
                            "\"data\":[[1,0.1],[-2.5,65520]]},{\"name\":\"b\",\"shape\":[3],"
                            "\"datatype\":\"BF16\",\"data\":[1.00390625,-0.0,NaN]}]}",
                            &rq, &st),
                  0);
    uint16_t want_h[4] = {0x3c00, 0x2e66, 0xc100, 0x7c00}, want_b[3] = {0x3f80, 0x8000, 0x7fc0};
    ASSERT_EQ_U64(rq.in[0].t.dtype, VEIL_DT_FLOAT16);
    ASSERT_EQ_U64(rq.in[0].t.nbytes, 8);
    ASSERT_MEM_EQ(rq.in[0].t.data, want_h, sizeof(want_h));
    ASSERT_EQ_U64(rq.in[1].t.dtype, VEIL_DT_BFLOAT16);
    ASSERT_MEM_EQ(rq.in[1].t.data, want_b, sizeof(want_b));
    /* A scalar (shape []) is one element; BOOL takes true/false. */
    ASSERT_EQ_U64(parse_str("{\"inputs\":[{\"name\":\"a\",\"shape\":[],\"datatype\":\"BOOL\","
                            "\"data\":true}]}",
                            &rq, &st),
                  0);
    ASSERT_EQ_U64(rq.in[0].t.nbytes, 1);
    ASSERT_EQ_U64(((uint8_t *)rq.in[0].t.data)[0], 1);
    /* A zero dimension is an empty tensor. */
    ASSERT_EQ_U64(parse_str("{\"inputs\":[{\"name\":\"a\",\"shape\":[0,2],\"datatype\":\"FP32\","
                            "\"data\":[]}]}",
                            &rq, &st),
                  0);
    ASSERT_EQ_U64(rq.in[0].t.nbytes, 0);
}

TEST(json_request_errors)
{
    struct kv2_request rq;
    struct sv_status st;
    static const struct {
        const char *body, *msg;
    } bad[] = {
        {"", "JSON Parse error"},
        {"[]", "object"},
        {"{}", "inputs"},
        {"{\"inputs\":[]}", "inputs"},
        {"{\"inputs\":[1]}", "input object"},
        {"{\"id\":1,\"inputs\":[{}]}", "'id'"},
        {"{\"inputs\":[{\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}", "name"},
        {"{\"inputs\":[{\"name\":\"\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}", "name"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"data\":[1]}]}", "datatype"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"F32\",\"data\":[1]}]}",
         "not supported"},
        {"{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"data\":[1]}]}", "shape"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[-1],\"datatype\":\"FP32\",\"data\":[1]}]}",
         "non-negative"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1.5],\"datatype\":\"FP32\",\"data\":[1]}]}",
         "non-negative"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[\"1\"],\"datatype\":\"FP32\",\"data\":[1]}]}",
         "non-negative"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[[1]],\"datatype\":\"FP32\",\"data\":[1]}]}",
         "shape"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1,1,1,1,1,1,1,1,1],\"datatype\":\"FP32\","
         "\"data\":[1]}]}",
         "rank"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[4294967296,4294967296],\"datatype\":\"FP32\","
         "\"data\":[1]}]}",
         "too large"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[2],\"datatype\":\"FP32\",\"data\":[1]}]}",
         "1 elements"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1,2]}]}",
         "more elements"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[{}]}]}",
         "object"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"INT32\",\"data\":[1.5]}]}",
         "int32"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"UINT16\",\"data\":[1]}]}",
         "binary"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[2],\"datatype\":\"FP16\",\"data\":[1]}]}",
         "1 elements"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"BF16\",\"data\":[true]}]}",
         "bfloat16"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[2],\"datatype\":\"FP16\",\"parameters\":"
         "{\"binary_data_size\":3}}]}",
         "Inference-Header-Content-Length"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"FP32\"}]}", "neither"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"FP32\",\"parameters\":"
         "{\"binary_data_size\":4}}]}",
         "Inference-Header-Content-Length"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1],"
         "\"parameters\":[]}]}",
         "parameters"},
        {"{\"parameters\":{\"binary_data_output\":1},\"inputs\":[{\"name\":\"a\",\"shape\":[1],"
         "\"datatype\":\"FP32\",\"data\":[1]}]}",
         "boolean"},
        {"{\"parameters\":{\"x\":[1]},\"inputs\":[{\"name\":\"a\",\"shape\":[1],"
         "\"datatype\":\"FP32\",\"data\":[1]}]}",
         "string, number or boolean"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}],"
         "\"outputs\":{}}",
         "outputs"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}],"
         "\"outputs\":[{\"name\":\"x\",\"parameters\":{\"classification\":3}}]}",
         "classification"},
        {"{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[1]}]}",
         "strings"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int code = parse_str(bad[i].body, &rq, &st);
        if (code != VEIL_GRPC_INVALID_ARGUMENT)
            fprintf(stderr, "  case %zu: %s -> %d\n", i, bad[i].body, code);
        ASSERT_EQ_U64(code, VEIL_GRPC_INVALID_ARGUMENT);
        if (strstr(st.msg, bad[i].msg) == NULL)
            fprintf(stderr, "  case %zu: %s\n", i, st.msg);
        ASSERT_STR_CONTAINS(st.msg, bad[i].msg);
    }
}

TEST(binary_request)
{
    struct kv2_request rq;
    struct sv_status st;
    struct veil_buf b;
    const char *hdr = "{\"inputs\":[{\"name\":\"a\",\"shape\":[1,2],\"datatype\":\"FP32\","
                      "\"parameters\":{\"binary_data_size\":8}},{\"name\":\"s\",\"shape\":[2],"
                      "\"datatype\":\"BYTES\",\"parameters\":{\"binary_data_size\":11}}]}";
    float a[2] = {1.5f, -2.0f};
    char len[24];
    veil_buf_init(&b, 1 << 20);
    ASSERT_OK(veil_buf_append_str(&b, hdr));
    ASSERT_OK(veil_buf_append(&b, a, sizeof(a)));
    ASSERT_OK(veil_buf_append(&b, "\x02\0\0\0hi\x01\0\0\0x", 11));
    snprintf(len, sizeof(len), "%zu", strlen(hdr));
    ASSERT_EQ_U64(parse(veil_buf_span(&b), len, &rq, &st), 0);
    ASSERT_EQ_U64(rq.in[0].t.nbytes, 8);
    ASSERT_MEM_EQ(rq.in[0].t.data, a, 8);
    ASSERT_EQ_U64(((uintptr_t)rq.in[0].t.data) % 64, 0); /* copied to aligned memory if needed */
    ASSERT_EQ_U64(rq.in[1].t.dtype, VEIL_DT_STRING);
    /* The length header: too long, not a number, zero (raw requests are not supported). */
    static const char *const bad_len[] = {"9999", "12x", "-1",  "",
                                          " ",    "0",   "1e3", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++)
        ASSERT_EQ_U64(parse(veil_buf_span(&b), bad_len[i], &rq, &st), VEIL_GRPC_INVALID_ARGUMENT);
    /* The chunks must add up to the binary part exactly. */
    struct veil_span s = veil_buf_span(&b);
    ASSERT_EQ_U64(parse(veil_span_make(s.p, s.len - 1), len, &rq, &st), VEIL_GRPC_INVALID_ARGUMENT);
    ASSERT_OK(veil_buf_append_u8(&b, 0));
    ASSERT_EQ_U64(parse(veil_buf_span(&b), len, &rq, &st), VEIL_GRPC_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(st.msg, "1 bytes of binary data");
    veil_buf_release(&b);
    /* A chunk must match shape x datatype. */
    const char *h2 = "{\"inputs\":[{\"name\":\"a\",\"shape\":[1,2],\"datatype\":\"FP32\","
                     "\"parameters\":{\"binary_data_size\":4}}]}";
    veil_buf_init(&b, 1 << 20);
    ASSERT_OK(veil_buf_append_str(&b, h2));
    ASSERT_OK(veil_buf_append(&b, a, 4));
    snprintf(len, sizeof(len), "%zu", strlen(h2));
    ASSERT_EQ_U64(parse(veil_buf_span(&b), len, &rq, &st), VEIL_GRPC_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(st.msg, "does not match");
    veil_buf_release(&b);
    /* BYTES elements must fill their chunk exactly. */
    ASSERT_TRUE(veil__serve_kv2_bytes_ok(veil_span_make("\x01\0\0\0a\0\0\0\0", 9), 2));
    ASSERT_FALSE(veil__serve_kv2_bytes_ok(veil_span_make("\x01\0\0\0a\0\0\0\0", 9), 1));
    ASSERT_FALSE(veil__serve_kv2_bytes_ok(veil_span_make("\x05\0\0\0a", 5), 1));
    ASSERT_FALSE(veil__serve_kv2_bytes_ok(veil_span_make("\xff\xff\xff\xff", 4), 1));
    ASSERT_FALSE(veil__serve_kv2_bytes_ok(veil_span_make("\x01\0\0", 3), 1));
}

TEST(bind_and_encode)
{
    struct kv2_request rq;
    struct sv_status st;
    struct kv2_plan plan;
    struct veil_tensor in[SV_MAX_IO];
    struct sv_sig sig = sig_two();
#define TWO                                                                                        \
    "{\"id\":\"q\",\"inputs\":[{\"name\":\"b\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[3," \
    "4]},"                                                                                         \
    "{\"name\":\"a\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[1,2]}]%s}"
    char body[512];
    snprintf(body, sizeof(body), TWO, "");
    ASSERT_EQ_U64(parse_str(body, &rq, &st), 0);
    ASSERT_TRUE(veil__serve_kv2_bind(&rq, &sig, in, &plan, &st));
    ASSERT_TRUE(((float *)in[0].data)[0] == 1.0f); /* signature order, not request order */
    ASSERT_TRUE(((float *)in[1].data)[0] == 3.0f);
    ASSERT_EQ_U64(plan.n, 2);
    /* Encode: outputs sum=[4,6], prod=[3,8]; prod in binary. */
    float sum[2] = {4, 6}, prod[2] = {3, 8};
    struct veil_tensor outs[2];
    memset(outs, 0, sizeof(outs));
    for (size_t i = 0; i < 2; i++) {
        outs[i].dtype = VEIL_DT_FLOAT;
        outs[i].rank = 2;
        outs[i].dims[0] = 1;
        outs[i].dims[1] = 2;
        outs[i].nbytes = 8;
    }
    outs[0].data = sum;
    outs[1].data = prod;
    struct veil_buf b;
    size_t jl = 1;
    veil_buf_init(&b, 1 << 20);
    ASSERT_TRUE(veil__serve_kv2_encode_rest(&rq, "two", 7, &sig, outs, &plan, &b, &jl, &st));
    ASSERT_EQ_U64(jl, 0);
    ASSERT_OK(veil_buf_append_u8(&b, 0));
    ASSERT_STR_EQ((const char *)b.p,
                  "{\"model_name\":\"two\",\"model_version\":\"7\",\"id\":\"q\",\"outputs\":["
                  "{\"name\":\"sum\",\"datatype\":\"FP32\",\"shape\":[1,2],\"data\":[4.0,6.0]},"
                  "{\"name\":\"prod\",\"datatype\":\"FP32\",\"shape\":[1,2],\"data\":[3.0,8.0]}]}");
    veil_buf_release(&b);
    snprintf(body, sizeof(body), TWO,
             ",\"outputs\":[{\"name\":\"prod\",\"parameters\":{\"binary_data\":true}}]");
    ASSERT_EQ_U64(parse_str(body, &rq, &st), 0);
    ASSERT_TRUE(veil__serve_kv2_bind(&rq, &sig, in, &plan, &st));
    ASSERT_EQ_U64(plan.n, 1);
    ASSERT_EQ_U64(plan.idx[0], 1);
    veil_buf_init(&b, 1 << 20);
    ASSERT_TRUE(veil__serve_kv2_encode_rest(&rq, "two", 7, &sig, outs, &plan, &b, &jl, &st));
    const char *want = "{\"model_name\":\"two\",\"model_version\":\"7\",\"id\":\"q\",\"outputs\":["
                       "{\"name\":\"prod\",\"datatype\":\"FP32\",\"shape\":[1,2],\"parameters\":"
                       "{\"binary_data_size\":8}}]}";
    ASSERT_EQ_U64(jl, strlen(want));
    ASSERT_EQ_U64(b.len, jl + 8);
    ASSERT_MEM_EQ(b.p, want, jl);
    ASSERT_MEM_EQ(b.p + jl, prod, 8);
    veil_buf_release(&b);
    /* Binding refusals. */
    static const char *const bad[] = {
        "{\"inputs\":[{\"name\":\"a\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[1,2]}]}",
        "{\"inputs\":[{\"name\":\"a\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[1,2]},"
        "{\"name\":\"a\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[1,2]}]}",
        "{\"inputs\":[{\"name\":\"a\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[1,2]},"
        "{\"name\":\"c\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[1,2]}]}",
        "{\"inputs\":[{\"name\":\"a\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[1,2]},"
        "{\"name\":\"b\",\"shape\":[1,2],\"datatype\":\"FP64\",\"data\":[1,2]}]}",
        "{\"inputs\":[{\"name\":\"a\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[1,2]},"
        "{\"name\":\"b\",\"shape\":[2],\"datatype\":\"FP32\",\"data\":[1,2]}]}",
        "{\"inputs\":[{\"name\":\"a\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[1,2]},"
        "{\"name\":\"b\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[1,2]}],"
        "\"outputs\":[{\"name\":\"x\"}]}",
        "{\"inputs\":[{\"name\":\"a\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[1,2]},"
        "{\"name\":\"b\",\"shape\":[1,2],\"datatype\":\"FP32\",\"data\":[1,2]}],"
        "\"outputs\":[{\"name\":\"sum\"},{\"name\":\"sum\"}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ASSERT_EQ_U64(parse_str(bad[i], &rq, &st), 0);
        ASSERT_FALSE(veil__serve_kv2_bind(&rq, &sig, in, &plan, &st));
        ASSERT_EQ_U64(st.code, VEIL_GRPC_INVALID_ARGUMENT);
    }
    veil_arena_release(&A);
}

RUN_TESTS()
