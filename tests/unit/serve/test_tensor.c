#include "harness.h"
#include "serve_int.h"

static struct sv_tinfo float_info(void)
{
    struct sv_tinfo ti;
    memset(&ti, 0, sizeof(ti));
    ti.name = (char *)"x";
    ti.dt = VEIL_DT_FLOAT;
    ti.tf_dtype = TF_DT_FLOAT;
    ti.rank = 2;
    ti.dims[0] = -1;
    ti.dims[1] = 3;
    return ti;
}

static void shape(Tensorflow__TensorProto *tp, Tensorflow__TensorShapeProto *sh,
                  Tensorflow__TensorShapeProto__Dim *d, Tensorflow__TensorShapeProto__Dim **dp,
                  const int64_t *dims, size_t n)
{
    tensorflow__tensor_shape_proto__init(sh);
    for (size_t i = 0; i < n; i++) {
        tensorflow__tensor_shape_proto__dim__init(&d[i]);
        d[i].size = dims[i];
        dp[i] = &d[i];
    }
    sh->n_dim = n;
    sh->dim = dp;
    tp->tensor_shape = sh;
}

TEST(tensor_content_is_used_in_place)
{
    struct veil_arena a;
    veil_arena_init(&a, 4096, 1 << 20);
    Tensorflow__TensorProto tp;
    Tensorflow__TensorShapeProto sh;
    Tensorflow__TensorShapeProto__Dim d[2], *dp[2];
    tensorflow__tensor_proto__init(&tp);
    int64_t dims[2] = {2, 3};
    shape(&tp, &sh, d, dp, dims, 2);
    tp.dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;
    float v[6] = {1, 2, 3, 4, 5, 6};
    tp.tensor_content.data = (uint8_t *)v;
    tp.tensor_content.len = sizeof(v);
    struct sv_tinfo ti = float_info();
    struct veil_tensor t;
    struct sv_status st;
    ASSERT_TRUE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    ASSERT_TRUE(t.data == (void *)v);
    ASSERT_EQ_U64(t.nbytes, 24);
    ASSERT_TRUE(veil__serve_tensor_check(&t, &ti, 0, &st));
    tp.tensor_content.len = 20;
    ASSERT_FALSE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    ASSERT_STR_EQ(st.msg, "tensor parsing error: x (tensor_content holds 20 bytes; 6 elements of "
                          "float need 24)");
    veil_arena_release(&a);
}

TEST(typed_values_broadcast_last)
{
    struct veil_arena a;
    veil_arena_init(&a, 4096, 1 << 20);
    Tensorflow__TensorProto tp;
    Tensorflow__TensorShapeProto sh;
    Tensorflow__TensorShapeProto__Dim d[2], *dp[2];
    tensorflow__tensor_proto__init(&tp);
    int64_t dims[2] = {2, 3};
    shape(&tp, &sh, d, dp, dims, 2);
    tp.dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;
    float v[2] = {7, 8};
    tp.float_val = v;
    tp.n_float_val = 2;
    struct sv_tinfo ti = float_info();
    struct veil_tensor t;
    struct sv_status st;
    ASSERT_TRUE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    const float *f = t.data;
    ASSERT_TRUE(f[0] == 7 && f[1] == 8 && f[2] == 8 && f[5] == 8);
    tp.n_float_val = 0;
    ASSERT_TRUE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    ASSERT_TRUE(((const float *)t.data)[4] == 0);
    veil_arena_release(&a);
}

static struct sv_tinfo half_info(enum veil_dtype dt)
{
    struct sv_tinfo ti = float_info();
    ti.dt = dt;
    ti.tf_dtype = veil__serve_tf_dtype(dt);
    return ti;
}

TEST(half_val_and_tensor_content)
{
    struct veil_arena a;
    veil_arena_init(&a, 4096, 1 << 20);
    Tensorflow__TensorProto tp;
    Tensorflow__TensorShapeProto sh;
    Tensorflow__TensorShapeProto__Dim d[2], *dp[2];
    tensorflow__tensor_proto__init(&tp);
    int64_t dims[2] = {2, 3};
    shape(&tp, &sh, d, dp, dims, 2);
    tp.dtype = TENSORFLOW__DATA_TYPE__DT_HALF;
    struct sv_tinfo ti = half_info(VEIL_DT_FLOAT16);
    ASSERT_EQ_U64(ti.tf_dtype, TF_DT_HALF);
    struct veil_tensor t;
    struct sv_status st;
    /* Exactly one pattern per element; a sign-extended pattern reads as its low 16 bits. */
    int32_t hv[6] = {0x3c00, 0x4000, 0x7bff, -1024 /* 0xfc00 */, 0x0001, 0x7e00};
    tp.half_val = hv;
    tp.n_half_val = 6;
    ASSERT_TRUE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    ASSERT_EQ_U64(t.dtype, VEIL_DT_FLOAT16);
    ASSERT_EQ_U64(t.nbytes, 12);
    uint16_t want[6] = {0x3c00, 0x4000, 0x7bff, 0xfc00, 0x0001, 0x7e00};
    ASSERT_MEM_EQ(t.data, want, sizeof(want));
    /* One value fills the tensor (TF's scalar broadcast); none is zeros. */
    tp.n_half_val = 1;
    ASSERT_TRUE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    ASSERT_EQ_U64(((const uint16_t *)t.data)[5], 0x3c00);
    tp.n_half_val = 0;
    ASSERT_TRUE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    ASSERT_EQ_U64(((const uint16_t *)t.data)[3], 0);
    /* Any other count, or a value that is no 16-bit pattern, is refused with the reason. */
    tp.n_half_val = 4;
    ASSERT_FALSE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    ASSERT_EQ_U64(st.code, VEIL_GRPC_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(st.msg, "tensor parsing error: x (half_val holds 4 values; its shape has "
                                "6 elements");
    int32_t more[7] = {0, 0, 0, 0, 0, 0, 0};
    tp.half_val = more;
    tp.n_half_val = 7;
    ASSERT_FALSE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    ASSERT_STR_CONTAINS(st.msg, "half_val holds 7 values");
    hv[2] = 65536;
    tp.half_val = hv;
    tp.n_half_val = 6;
    ASSERT_FALSE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    ASSERT_STR_CONTAINS(st.msg, "half_val[2] is 65536, not a 16-bit pattern");
    hv[2] = -32769;
    ASSERT_FALSE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    /* tensor_content: two bytes per element, exactly; an odd length is refused. */
    tp.n_half_val = 0;
    tp.tensor_content.data = (uint8_t *)want;
    tp.tensor_content.len = 12;
    ASSERT_TRUE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    ASSERT_TRUE(t.data == (void *)want);
    tp.tensor_content.len = 11;
    ASSERT_FALSE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    ASSERT_EQ_U64(st.code, VEIL_GRPC_INVALID_ARGUMENT);
    ASSERT_STR_EQ(st.msg, "tensor parsing error: x (tensor_content holds 11 bytes; 6 elements of "
                          "half need 12)");
    /* bfloat16 (DT_BFLOAT16) uses half_val the same way; the dtypes must match. */
    struct sv_tinfo tb = half_info(VEIL_DT_BFLOAT16);
    ASSERT_EQ_U64(tb.tf_dtype, TF_DT_BFLOAT16);
    tp.tensor_content.len = 0;
    ASSERT_FALSE(veil__serve_tensor_from_proto(&tp, &tb, &a, &t, &st));
    ASSERT_STR_CONTAINS(st.msg, "to be bfloat16 but half is provided");
    tp.dtype = TENSORFLOW__DATA_TYPE__DT_BFLOAT16;
    hv[2] = 0x3f80;
    tp.n_half_val = 6;
    ASSERT_TRUE(veil__serve_tensor_from_proto(&tp, &tb, &a, &t, &st));
    ASSERT_EQ_U64(t.dtype, VEIL_DT_BFLOAT16);
    ASSERT_EQ_U64(((const uint16_t *)t.data)[2], 0x3f80);
    /* Outputs go back in half_val, one pattern per element. */
    Tensorflow__TensorProto out;
    tensorflow__tensor_proto__init(&out);
    ASSERT_TRUE(veil__serve_tensor_to_proto(&t, &a, &out, &st));
    ASSERT_EQ_U64(out.dtype, TENSORFLOW__DATA_TYPE__DT_BFLOAT16);
    ASSERT_EQ_U64(out.n_half_val, 6);
    ASSERT_EQ_U64(out.half_val[2], 0x3f80);
    ASSERT_EQ_U64(out.half_val[3], 0xfc00);
    veil_arena_release(&a);
}

TEST(rejections)
{
    struct veil_arena a;
    veil_arena_init(&a, 4096, 1 << 20);
    Tensorflow__TensorProto tp;
    Tensorflow__TensorShapeProto sh;
    Tensorflow__TensorShapeProto__Dim d[9], *dp[9];
    struct sv_tinfo ti = float_info();
    struct veil_tensor t;
    struct sv_status st;
    tensorflow__tensor_proto__init(&tp);
    int64_t dims[9] = {2, -1, 1, 1, 1, 1, 1, 1, 1};
    shape(&tp, &sh, d, dp, dims, 2);
    tp.dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;
    ASSERT_FALSE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    ASSERT_EQ_U64(st.code, VEIL_GRPC_INVALID_ARGUMENT);
    dims[1] = 3;
    shape(&tp, &sh, d, dp, dims, 9);
    ASSERT_FALSE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    int64_t huge[2] = {INT64_MAX / 2, 4};
    shape(&tp, &sh, d, dp, huge, 2);
    ASSERT_FALSE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    shape(&tp, &sh, d, dp, dims, 2);
    tp.dtype = TENSORFLOW__DATA_TYPE__DT_INT32;
    ASSERT_FALSE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    ASSERT_STR_CONTAINS(st.msg, "to be float but int32 is provided");
    tp.dtype = (Tensorflow__DataType)1234;
    ASSERT_FALSE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    ASSERT_EQ_U64(st.code, VEIL_GRPC_INVALID_ARGUMENT);
    sh.unknown_rank = 1;
    tp.dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;
    ASSERT_FALSE(veil__serve_tensor_from_proto(&tp, &ti, &a, &t, &st));
    veil_arena_release(&a);
}

TEST(shape_check_against_signature)
{
    struct sv_tinfo ti = float_info();
    struct veil_tensor t;
    struct sv_status st;
    memset(&t, 0, sizeof(t));
    t.dtype = VEIL_DT_FLOAT;
    t.rank = 2;
    t.dims[0] = 5;
    t.dims[1] = 3;
    ASSERT_TRUE(veil__serve_tensor_check(&t, &ti, 0, &st));
    t.dims[1] = 4;
    ASSERT_FALSE(veil__serve_tensor_check(&t, &ti, 0, &st));
    ASSERT_STR_CONTAINS(st.msg, "expected shape [-1,3]");
    ASSERT_STR_CONTAINS(st.msg, "got [5,4]");
    t.rank = 1;
    ASSERT_FALSE(veil__serve_tensor_check(&t, &ti, 0, &st));
}

TEST(outputs_use_typed_fields)
{
    struct veil_arena a;
    veil_arena_init(&a, 4096, 1 << 20);
    uint8_t u[4] = {1, 2, 250, 0};
    struct veil_tensor t;
    memset(&t, 0, sizeof(t));
    t.dtype = VEIL_DT_UINT8;
    t.rank = 2;
    t.dims[0] = 2;
    t.dims[1] = 2;
    t.data = u;
    t.nbytes = 4;
    Tensorflow__TensorProto tp;
    struct sv_status st;
    tensorflow__tensor_proto__init(&tp);
    ASSERT_TRUE(veil__serve_tensor_to_proto(&t, &a, &tp, &st));
    ASSERT_EQ_U64(tp.dtype, TENSORFLOW__DATA_TYPE__DT_UINT8);
    ASSERT_EQ_U64(tp.n_int_val, 4);
    ASSERT_EQ_I64(tp.int_val[2], 250);
    ASSERT_EQ_U64(tp.tensor_shape->n_dim, 2);
    /* Round trip through the wire format. */
    size_t n = tensorflow__tensor_proto__get_packed_size(&tp);
    uint8_t buf[256];
    ASSERT_TRUE(n < sizeof(buf));
    tensorflow__tensor_proto__pack(&tp, buf);
    ProtobufCAllocator al;
    veil__serve_pb_allocator(&a, &al);
    Tensorflow__TensorProto *back = tensorflow__tensor_proto__unpack(&al, n, buf);
    ASSERT_TRUE(back != NULL);
    struct sv_tinfo ti;
    memset(&ti, 0, sizeof(ti));
    ti.name = (char *)"u";
    ti.dt = VEIL_DT_UINT8;
    ti.tf_dtype = TF_DT_UINT8;
    struct veil_tensor t2;
    ASSERT_TRUE(veil__serve_tensor_from_proto(back, &ti, &a, &t2, &st));
    ASSERT_MEM_EQ(t2.data, u, 4);
    veil_arena_release(&a);
}

TEST(http_status_mapping)
{
    ASSERT_EQ_U64(sv_http_status(VEIL_GRPC_OK), 200);
    ASSERT_EQ_U64(sv_http_status(VEIL_GRPC_CANCELLED), 499);
    ASSERT_EQ_U64(sv_http_status(VEIL_GRPC_NOT_FOUND), 404);
    ASSERT_EQ_U64(sv_http_status(VEIL_GRPC_FAILED_PRECONDITION), 400);
    ASSERT_EQ_U64(sv_http_status(VEIL_GRPC_RESOURCE_EXHAUSTED), 429);
    ASSERT_EQ_U64(sv_http_status(VEIL_GRPC_UNIMPLEMENTED), 501);
    ASSERT_EQ_U64(sv_http_status(VEIL_GRPC_UNAVAILABLE), 503);
    ASSERT_EQ_U64(sv_http_status(VEIL_GRPC_DEADLINE_EXCEEDED), 504);
    ASSERT_EQ_U64(sv_http_status(VEIL_GRPC_UNAUTHENTICATED), 401);
    ASSERT_EQ_U64(sv_http_status(99), 500);
    struct sv_status st;
    char big[2000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    sv_fail(&st, 3, "%s", big);
    ASSERT_EQ_U64(strlen(st.msg), SV_MSG_MAX + 12);
    ASSERT_STR_CONTAINS(st.msg, "a...TRUNCATED");
}

/*
 * A failed engine run is the server's failure (INTERNAL, HTTP 500), unless the input is what
 * the model refuses or a cap was hit; never UNIMPLEMENTED, which says the method is missing.
 */
TEST(engine_run_failure_codes)
{
    ASSERT_EQ_U64(veil__serve_run_code_of(VEIL_E_UNSUPPORTED), VEIL_GRPC_INTERNAL);
    ASSERT_EQ_U64(veil__serve_run_code_of(VEIL_E_INTERNAL), VEIL_GRPC_INTERNAL);
    ASSERT_EQ_U64(veil__serve_run_code_of(VEIL_E_STATE), VEIL_GRPC_INTERNAL);
    ASSERT_EQ_U64(veil__serve_run_code_of(VEIL_E_CRYPTO), VEIL_GRPC_INTERNAL);
    ASSERT_EQ_U64(sv_http_status(veil__serve_run_code_of(VEIL_E_UNSUPPORTED)), 500);
    ASSERT_EQ_U64(veil__serve_run_code_of(VEIL_E_INVALID), VEIL_GRPC_INVALID_ARGUMENT);
    ASSERT_EQ_U64(veil__serve_run_code_of(VEIL_E_MISMATCH), VEIL_GRPC_INVALID_ARGUMENT);
    ASSERT_EQ_U64(veil__serve_run_code_of(VEIL_E_LIMIT), VEIL_GRPC_RESOURCE_EXHAUSTED);
    ASSERT_EQ_U64(veil__serve_run_code_of(VEIL_E_NOMEM), VEIL_GRPC_RESOURCE_EXHAUSTED);
    ASSERT_EQ_U64(veil__serve_run_code_of(VEIL_E_TIMEOUT), VEIL_GRPC_DEADLINE_EXCEEDED);
}

RUN_TESTS()
