/*
 * Element-wise operators of ops/elementwise.c on one-node models built in the test, for what ONNX's
 * node tests leave out (most of their cases for these operators use opsets below 11): every
 * unary math and activation operator in float and double against a double reference written
 * here (with attributes given and defaulted), integer Sign, Abs and Shrink, IsNaN and IsInf,
 * Mod in both modes at the integer edges, BitShift past the type's width, PRelu's
 * unidirectional broadcast, the variadic Max, Min, Sum and Mean over four inputs that broadcast
 * against each other, CastLike, and the refusals: Mod fmod=0 on floats, bad fmod values, bad or
 * missing BitShift directions, malformed attributes, a slope that does not broadcast to X, and
 * a variadic node without inputs (at load).
 */
#include "harness.h"
#include "engine_test.h"
#include "model_builder.h"

#include "veil/engine.h"

#include <math.h>

static VeilOnnx__AttributeProto *attr_str(struct mb *b, const char *name, const char *v)
{
    VeilOnnx__AttributeProto *a = mb_alloc(b, sizeof(*a));
    veil_onnx__attribute_proto__init(a);
    a->name = mb_str(b, name);
    a->has_type = 1;
    a->type = VEIL_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    a->has_s = 1;
    a->s.len = strlen(v);
    a->s.data = (uint8_t *)mb_str(b, v);
    return a;
}

/*
 * A model of one node `op` reading graph inputs x0.. (the dtypes and shapes of in[]) and
 * writing y (dtype ydt, shape yrank/ydims), with n_attrs attributes from attrs.
 */
static void one_node(struct mb *b, const char *op, const struct veil_tensor *in, size_t n_in,
                     int ydt, size_t yrank, const int64_t *ydims, size_t n_attrs,
                     VeilOnnx__AttributeProto *const *attrs)
{
    char names[128] = "";
    size_t len = 0;
    for (size_t i = 0; i < n_in && len < sizeof(names); i++) {
        char nm[24];
        snprintf(nm, sizeof(nm), "x%zu", i);
        mb_input(b, nm, (int)in[i].dtype, in[i].rank, in[i].dims);
        len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s", i ? "," : "", nm);
    }
    VeilOnnx__NodeProto *n = mb_node(b, op, names, "y", 0);
    n->n_attribute = n_attrs;
    n->attribute = mb_alloc(b, (n_attrs + 1) * sizeof(*n->attribute));
    for (size_t i = 0; i < n_attrs; i++)
        n->attribute[i] = attrs[i];
    mb_output(b, "y", ydt, yrank, ydims);
}

/*
 * Packs and loads the model in b (released here), runs it on n_in inputs and hands its one
 * output to *out (zeroed on failure; the caller releases it). Returns load's or run's error.
 */
static veil_err run_model(struct mb *b, const struct veil_tensor *in, size_t n_in,
                          struct veil_tensor *out, struct veil_errbuf *eb)
{
    struct veil_buf buf;
    struct veil_engine_model *m = NULL;
    memset(out, 0, sizeof(*out));
    mb_pack(b, &buf);
    mb_release(b);
    struct veil_engine_options opt = {.threads = 2};
    veil_err rc = veil_engine_model_load(veil_buf_span(&buf), &opt, &m, eb);
    veil_buf_release(&buf);
    if (rc == VEIL_OK)
        rc = veil_engine_run(m, in, n_in, out, 1, eb);
    veil_engine_model_free(m);
    return rc;
}

/* One node over one or two inputs, its output's dtype and shape those of in[0] (or given). */
static veil_err run_op(const char *op, const struct veil_tensor *in, size_t n_in, int ydt,
                       size_t n_attrs, VeilOnnx__AttributeProto *const *attrs, struct mb *b,
                       struct veil_tensor *out, struct veil_errbuf *eb)
{
    one_node(b, op, in, n_in, ydt, in[0].rank, in[0].dims, n_attrs, attrs);
    return run_model(b, in, n_in, out, eb);
}

static bool close_to(double got, double want, double rtol, double atol)
{
    if (isnan(want))
        return isnan(got);
    if (isinf(want))
        return got == want;
    return fabs(got - want) <= atol + rtol * fabs(want);
}

/* ---- Unary operators against a double reference ---- */

/* Halves go to the even neighbour. */
static double ref_round(double x)
{
    if (!isfinite(x))
        return x;
    double r = floor(x), d = x - r;
    if (d > 0.5 || (d == 0.5 && fmod(r, 2.0) != 0.0))
        r += 1.0;
    return r;
}

static double clamp01(double v)
{
    return v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v);
}

enum ref_kind {
    R_FLOOR,
    R_CEIL,
    R_ROUND,
    R_SIGN,
    R_SIN,
    R_COS,
    R_TAN,
    R_ASIN,
    R_ACOS,
    R_ATAN,
    R_SINH,
    R_COSH,
    R_ASINH,
    R_ACOSH,
    R_ATANH,
    R_ELU,
    R_SELU,
    R_CELU,
    R_HSIGMOID,
    R_HSWISH,
    R_THRELU,
    R_SOFTPLUS,
    R_SOFTSIGN,
    R_SHRINK,
};

static double ref_unary(int k, double x, double a, double b)
{
    switch (k) {
    case R_FLOOR:
        return floor(x);
    case R_CEIL:
        return ceil(x);
    case R_ROUND:
        return ref_round(x);
    case R_SIGN:
        return isnan(x) ? x : (x > 0) - (x < 0);
    case R_SIN:
        return sin(x);
    case R_COS:
        return cos(x);
    case R_TAN:
        return tan(x);
    case R_ASIN:
        return asin(x);
    case R_ACOS:
        return acos(x);
    case R_ATAN:
        return atan(x);
    case R_SINH:
        return sinh(x);
    case R_COSH:
        return cosh(x);
    case R_ASINH:
        return asinh(x);
    case R_ACOSH:
        return acosh(x);
    case R_ATANH:
        return atanh(x);
    case R_ELU:
        return x < 0 ? a * (exp(x) - 1.0) : x;
    case R_SELU:
        return x <= 0 ? b * (a * exp(x) - a) : b * x;
    case R_CELU:
        return fmax(0.0, x) + fmin(0.0, a * (exp(x / a) - 1.0));
    case R_HSIGMOID:
        return clamp01(a * x + b);
    case R_HSWISH:
        return x * clamp01(x / 6.0 + 0.5);
    case R_THRELU:
        return x > a ? x : 0.0;
    case R_SOFTPLUS:
        return log(exp(x) + 1.0);
    case R_SOFTSIGN:
        return x / (1.0 + fabs(x));
    default: /* R_SHRINK: a = bias, b = lambd */
        return x < -b ? x + a : (x > b ? x - a : 0.0);
    }
}

struct un_case {
    const char *op;
    int ref;
    const char *an, *bn; /* attributes set (NULL: left to the default) */
    float a, b;          /* the attribute values, or the spec's defaults the reference uses */
};

static const struct un_case k_unary[] = {
    {"Floor", R_FLOOR, NULL, NULL, 0, 0},
    {"Ceil", R_CEIL, NULL, NULL, 0, 0},
    {"Round", R_ROUND, NULL, NULL, 0, 0},
    {"Sign", R_SIGN, NULL, NULL, 0, 0},
    {"Sin", R_SIN, NULL, NULL, 0, 0},
    {"Cos", R_COS, NULL, NULL, 0, 0},
    {"Tan", R_TAN, NULL, NULL, 0, 0},
    {"Asin", R_ASIN, NULL, NULL, 0, 0},
    {"Acos", R_ACOS, NULL, NULL, 0, 0},
    {"Atan", R_ATAN, NULL, NULL, 0, 0},
    {"Sinh", R_SINH, NULL, NULL, 0, 0},
    {"Cosh", R_COSH, NULL, NULL, 0, 0},
    {"Asinh", R_ASINH, NULL, NULL, 0, 0},
    {"Acosh", R_ACOSH, NULL, NULL, 0, 0},
    {"Atanh", R_ATANH, NULL, NULL, 0, 0},
    {"Elu", R_ELU, NULL, NULL, 1.0f, 0},
    {"Elu", R_ELU, "alpha", NULL, 0.7f, 0},
    {"Selu", R_SELU, NULL, NULL, 1.67326319217681884765625f, 1.05070102214813232421875f},
    {"Selu", R_SELU, "alpha", "gamma", 2.0f, 0.5f},
    {"Celu", R_CELU, NULL, NULL, 1.0f, 0},
    {"Celu", R_CELU, "alpha", NULL, 2.0f, 0},
    {"HardSigmoid", R_HSIGMOID, NULL, NULL, 0.2f, 0.5f},
    {"HardSigmoid", R_HSIGMOID, "alpha", "beta", 0.3f, 0.4f},
    {"HardSwish", R_HSWISH, NULL, NULL, 0, 0},
    {"ThresholdedRelu", R_THRELU, NULL, NULL, 1.0f, 0},
    {"ThresholdedRelu", R_THRELU, "alpha", NULL, 0.6f, 0},
    {"Softplus", R_SOFTPLUS, NULL, NULL, 0, 0},
    {"Softsign", R_SOFTSIGN, NULL, NULL, 0, 0},
    {"Shrink", R_SHRINK, NULL, NULL, 0.0f, 0.5f},
    {"Shrink", R_SHRINK, "bias", "lambd", 0.3f, 0.8f},
};

/* Halves (Round's ties), both sides of 0 and +-1 (the inverse functions' domains), large. */
static const double k_xs[] = {-40,   -10,   -3.5, -2.5,  -1.5, -1.25, -1,  -0.999, -0.8,
                              -0.75, -0.5,  -0.3, -0.25, 0,    0.25,  0.3, 0.5,    0.75,
                              0.8,   0.999, 1,    1.25,  1.5,  2.5,   3.5, 10,     40};
#define N_XS (sizeof(k_xs) / sizeof(k_xs[0]))

TEST(unary_against_reference)
{
    for (size_t c = 0; c < sizeof(k_unary) / sizeof(k_unary[0]); c++) {
        const struct un_case *uc = &k_unary[c];
        for (int dbl = 0; dbl < 2; dbl++) {
            struct mb b;
            struct veil_errbuf eb = {{0}};
            struct veil_tensor out;
            float xf[N_XS];
            double xd[N_XS];
            for (size_t i = 0; i < N_XS; i++) {
                xf[i] = (float)k_xs[i];
                xd[i] = k_xs[i];
            }
            int64_t d[1] = {(int64_t)N_XS};
            enum veil_dtype dt = dbl ? VEIL_DT_DOUBLE : VEIL_DT_FLOAT;
            struct veil_tensor in = tensor_of(dt, 1, d, dbl ? (const void *)xd : (const void *)xf);
            VeilOnnx__AttributeProto *attrs[2];
            size_t na = 0;
            mb_init(&b);
            if (uc->an != NULL)
                attrs[na++] = mb_attr_f(&b, uc->an, uc->a);
            if (uc->bn != NULL)
                attrs[na++] = mb_attr_f(&b, uc->bn, uc->b);
            veil_err rc = run_op(uc->op, &in, 1, (int)dt, na, attrs, &b, &out, &eb);
            if (rc != VEIL_OK)
                HFAIL("%s: %s", uc->op, veil_errbuf_msg(&eb, rc));
            ASSERT_EQ_U64(out.dtype, dt);
            ASSERT_EQ_U64(out.dims[0], N_XS);
            for (size_t i = 0; i < N_XS; i++) {
                double got = dbl ? ((const double *)out.data)[i] : ((const float *)out.data)[i];
                double want = ref_unary(uc->ref, dbl ? xd[i] : (double)xf[i], uc->a, uc->b);
                if (!close_to(got, want, dbl ? 1e-12 : 1e-5, dbl ? 1e-15 : 1e-6)) {
                    veil_tensor_release(&out);
                    HFAIL("%s(%s) at %g: %.9g, expected %.9g", uc->op, dbl ? "double" : "float",
                          k_xs[i], got, want);
                }
            }
            veil_tensor_release(&out);
        }
    }
}

/* NaN stays NaN through every unary operator except the two that compare it to a threshold. */
TEST(unary_nan_propagates)
{
    for (size_t c = 0; c < sizeof(k_unary) / sizeof(k_unary[0]); c++) {
        const char *op = k_unary[c].op;
        struct mb b;
        struct veil_errbuf eb = {{0}};
        struct veil_tensor out;
        float x[2] = {NAN, 1.0f};
        int64_t d[1] = {2};
        struct veil_tensor in = tensor_of(VEIL_DT_FLOAT, 1, d, x);
        mb_init(&b);
        ASSERT_OK(run_op(op, &in, 1, VEIL_DT_FLOAT, 0, NULL, &b, &out, &eb));
        float y = ((const float *)out.data)[0];
        veil_tensor_release(&out);
        if (strcmp(op, "ThresholdedRelu") == 0 || strcmp(op, "Shrink") == 0)
            ASSERT_TRUE(y == 0.0f);
        else if (!isnan(y))
            HFAIL("%s(NaN) = %g", op, (double)y);
    }
}

TEST(sign_abs_shrink_integers)
{
    struct mb b;
    struct veil_errbuf eb = {{0}};
    struct veil_tensor out;
    int64_t d4[1] = {4}, d5[1] = {5};
    int32_t xi[4] = {-5, 0, 7, INT32_MIN + 1};
    struct veil_tensor in = tensor_of(VEIL_DT_INT32, 1, d4, xi);
    mb_init(&b);
    ASSERT_OK(run_op("Sign", &in, 1, VEIL_DT_INT32, 0, NULL, &b, &out, &eb));
    const int32_t sign_want[4] = {-1, 0, 1, -1};
    ASSERT_MEM_EQ(out.data, sign_want, sizeof(sign_want));
    veil_tensor_release(&out);

    /* Unsigned values above INT64_MAX are positive: Abs keeps them, Sign gives 1. */
    uint64_t xu[4] = {0, 1, (1ull << 63) + 5, UINT64_MAX};
    in = tensor_of(VEIL_DT_UINT64, 1, d4, xu);
    mb_init(&b);
    ASSERT_OK(run_op("Abs", &in, 1, VEIL_DT_UINT64, 0, NULL, &b, &out, &eb));
    ASSERT_MEM_EQ(out.data, xu, sizeof(xu));
    veil_tensor_release(&out);
    mb_init(&b);
    ASSERT_OK(run_op("Sign", &in, 1, VEIL_DT_UINT64, 0, NULL, &b, &out, &eb));
    const uint64_t usign_want[4] = {0, 1, 1, 1};
    ASSERT_MEM_EQ(out.data, usign_want, sizeof(usign_want));
    veil_tensor_release(&out);

    int8_t x8[4] = {-128, -1, 0, 127};
    in = tensor_of(VEIL_DT_INT8, 1, d4, x8);
    mb_init(&b);
    ASSERT_OK(run_op("Sign", &in, 1, VEIL_DT_INT8, 0, NULL, &b, &out, &eb));
    const int8_t sign8_want[4] = {-1, -1, 0, 1};
    ASSERT_MEM_EQ(out.data, sign8_want, sizeof(sign8_want));
    veil_tensor_release(&out);

    int32_t xs[5] = {-3, -1, 0, 2, 5};
    in = tensor_of(VEIL_DT_INT32, 1, d5, xs);
    mb_init(&b);
    VeilOnnx__AttributeProto *attrs[2] = {mb_attr_f(&b, "bias", 1.0f),
                                          mb_attr_f(&b, "lambd", 1.5f)};
    ASSERT_OK(run_op("Shrink", &in, 1, VEIL_DT_INT32, 2, attrs, &b, &out, &eb));
    const int32_t shrink_want[5] = {-2, 0, 0, 1, 4};
    ASSERT_MEM_EQ(out.data, shrink_want, sizeof(shrink_want));
    veil_tensor_release(&out);
}

TEST(isnan_isinf)
{
    float x[5] = {-INFINITY, -1.0f, 0.0f, NAN, INFINITY};
    int64_t d[1] = {5};
    struct veil_tensor in = tensor_of(VEIL_DT_FLOAT, 1, d, x), out;
    struct veil_errbuf eb = {{0}};
    struct mb b;
    mb_init(&b);
    ASSERT_OK(run_op("IsNaN", &in, 1, VEIL_DT_BOOL, 0, NULL, &b, &out, &eb));
    const uint8_t nan_want[5] = {0, 0, 0, 1, 0};
    ASSERT_EQ_U64(out.dtype, VEIL_DT_BOOL);
    ASSERT_MEM_EQ(out.data, nan_want, 5);
    veil_tensor_release(&out);
    for (int neg = 0; neg < 2; neg++)
        for (int pos = 0; pos < 2; pos++) {
            mb_init(&b);
            VeilOnnx__AttributeProto *attrs[2] = {mb_attr_i(&b, "detect_negative", neg),
                                                  mb_attr_i(&b, "detect_positive", pos)};
            ASSERT_OK(run_op("IsInf", &in, 1, VEIL_DT_BOOL, 2, attrs, &b, &out, &eb));
            const uint8_t want[5] = {(uint8_t)neg, 0, 0, 0, (uint8_t)pos};
            ASSERT_MEM_EQ(out.data, want, 5);
            veil_tensor_release(&out);
        }
    double xd[3] = {-INFINITY, NAN, INFINITY};
    int64_t d3[1] = {3};
    struct veil_tensor ind = tensor_of(VEIL_DT_DOUBLE, 1, d3, xd);
    mb_init(&b);
    ASSERT_OK(run_op("IsInf", &ind, 1, VEIL_DT_BOOL, 0, NULL, &b, &out, &eb));
    const uint8_t inf_want[3] = {1, 0, 1};
    ASSERT_MEM_EQ(out.data, inf_want, 3);
    veil_tensor_release(&out);
}

TEST(unary_refusals)
{
    float x[2] = {1.0f, -1.0f};
    int64_t d[1] = {2};
    struct veil_tensor in = tensor_of(VEIL_DT_FLOAT, 1, d, x), out;
    struct veil_errbuf eb = {{0}};
    struct mb b;

    mb_init(&b);
    VeilOnnx__AttributeProto *a1[1] = {mb_attr_i(&b, "detect_negative", 2)};
    ASSERT_ERR(run_op("IsInf", &in, 1, VEIL_DT_BOOL, 1, a1, &b, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'IsInf'");
    ASSERT_STR_CONTAINS(eb.msg, "detect_negative");

    mb_init(&b);
    int64_t two[2] = {1, 2};
    VeilOnnx__AttributeProto *a2[1] = {mb_attr_ints(&b, "alpha", 2, two)};
    ASSERT_ERR(run_op("Selu", &in, 1, VEIL_DT_FLOAT, 1, a2, &b, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "alpha must be a float");

    mb_init(&b);
    VeilOnnx__AttributeProto *a3[1] = {mb_attr_f(&b, "alpha", 0.0f)};
    ASSERT_ERR(run_op("Celu", &in, 1, VEIL_DT_FLOAT, 1, a3, &b, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "alpha must not be 0");

    /* Integer inputs where ONNX allows only floats. */
    int32_t xi[2] = {1, 2};
    struct veil_tensor ini = tensor_of(VEIL_DT_INT32, 1, d, xi);
    mb_init(&b);
    ASSERT_ERR(run_op("Floor", &ini, 1, VEIL_DT_INT32, 0, NULL, &b, &out, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "int32");
    mb_init(&b);
    ASSERT_ERR(run_op("IsNaN", &ini, 1, VEIL_DT_BOOL, 0, NULL, &b, &out, &eb), VEIL_E_UNSUPPORTED);
}

/* ---- Mod ---- */

TEST(mod_integer_modes)
{
    int32_t x[8] = {-7, 7, -7, 7, 5, -5, INT32_MIN, 3};
    int32_t y[8] = {3, -3, -3, 3, 0, 0, -1, 5};
    const int32_t want_mod[8] = {2, -2, -1, 1, 0, 0, 0, 3};  /* the divisor's sign */
    const int32_t want_fmod[8] = {-1, 1, -1, 1, 0, 0, 0, 3}; /* the dividend's sign */
    int64_t d[1] = {8};
    struct veil_tensor in[2] = {tensor_of(VEIL_DT_INT32, 1, d, x),
                                tensor_of(VEIL_DT_INT32, 1, d, y)};
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    for (int fm = 0; fm < 2; fm++) {
        struct mb b;
        mb_init(&b);
        VeilOnnx__AttributeProto *a[1] = {mb_attr_i(&b, "fmod", fm)};
        ASSERT_OK(run_op("Mod", in, 2, VEIL_DT_INT32, fm ? 1 : 0, a, &b, &out, &eb));
        ASSERT_MEM_EQ(out.data, fm ? want_fmod : want_mod, sizeof(want_mod));
        veil_tensor_release(&out);
    }
    /* int64's extremes, with a broadcast divisor. */
    int64_t x64[3] = {INT64_MIN, INT64_MAX, -1}, ym[1] = {-1}, y7[1] = {7};
    int64_t d3[1] = {3}, d1[1] = {1};
    struct veil_tensor in64[2] = {tensor_of(VEIL_DT_INT64, 1, d3, x64),
                                  tensor_of(VEIL_DT_INT64, 1, d1, ym)};
    struct mb b;
    mb_init(&b);
    ASSERT_OK(run_op("Mod", in64, 2, VEIL_DT_INT64, 0, NULL, &b, &out, &eb));
    const int64_t want_m1[3] = {0, 0, 0};
    ASSERT_MEM_EQ(out.data, want_m1, sizeof(want_m1));
    veil_tensor_release(&out);
    in64[1] = tensor_of(VEIL_DT_INT64, 1, d1, y7);
    mb_init(&b);
    ASSERT_OK(run_op("Mod", in64, 2, VEIL_DT_INT64, 0, NULL, &b, &out, &eb));
    /* INT64_MAX = 7 * 1317624576693539401, so INT64_MIN leaves -1 truncated, 6 floored. */
    const int64_t want_7[3] = {6, 0, 6};
    ASSERT_MEM_EQ(out.data, want_7, sizeof(want_7));
    veil_tensor_release(&out);
    /* Unsigned: both modes are the plain remainder. */
    uint8_t xu[3] = {250, 7, 9}, yu[3] = {7, 0, 200};
    struct veil_tensor inu[2] = {tensor_of(VEIL_DT_UINT8, 1, d3, xu),
                                 tensor_of(VEIL_DT_UINT8, 1, d3, yu)};
    mb_init(&b);
    ASSERT_OK(run_op("Mod", inu, 2, VEIL_DT_UINT8, 0, NULL, &b, &out, &eb));
    const uint8_t want_u[3] = {5, 0, 9};
    ASSERT_MEM_EQ(out.data, want_u, sizeof(want_u));
    veil_tensor_release(&out);
}

TEST(mod_float_fmod)
{
    float x[5] = {5.5f, -5.5f, 5.5f, -5.5f, 1.0f}, y[5] = {2.0f, 2.0f, -2.0f, -2.0f, 0.0f};
    int64_t d[1] = {5};
    struct veil_tensor in[2] = {tensor_of(VEIL_DT_FLOAT, 1, d, x),
                                tensor_of(VEIL_DT_FLOAT, 1, d, y)};
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    struct mb b;
    mb_init(&b);
    VeilOnnx__AttributeProto *a[1] = {mb_attr_i(&b, "fmod", 1)};
    ASSERT_OK(run_op("Mod", in, 2, VEIL_DT_FLOAT, 1, a, &b, &out, &eb));
    const float *o = out.data;
    ASSERT_TRUE(o[0] == 1.5f && o[1] == -1.5f && o[2] == 1.5f && o[3] == -1.5f && isnan(o[4]));
    veil_tensor_release(&out);
}

TEST(mod_refusals)
{
    float x[2] = {1.0f, 2.0f};
    int64_t d[1] = {2};
    struct veil_tensor in[2] = {tensor_of(VEIL_DT_FLOAT, 1, d, x),
                                tensor_of(VEIL_DT_FLOAT, 1, d, x)};
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    struct mb b;
    /* fmod=0 (the default) is integer modulo, which ONNX forbids on floats. */
    mb_init(&b);
    ASSERT_ERR(run_op("Mod", in, 2, VEIL_DT_FLOAT, 0, NULL, &b, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'Mod'");
    ASSERT_STR_CONTAINS(eb.msg, "fmod=0");
    ASSERT_STR_CONTAINS(eb.msg, "float");
    mb_init(&b);
    VeilOnnx__AttributeProto *a0[1] = {mb_attr_i(&b, "fmod", 0)};
    ASSERT_ERR(run_op("Mod", in, 2, VEIL_DT_FLOAT, 1, a0, &b, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "fmod=0");

    int32_t xi[2] = {7, 3};
    struct veil_tensor ini[2] = {tensor_of(VEIL_DT_INT32, 1, d, xi),
                                 tensor_of(VEIL_DT_INT32, 1, d, xi)};
    mb_init(&b);
    VeilOnnx__AttributeProto *a2[1] = {mb_attr_i(&b, "fmod", 2)};
    ASSERT_ERR(run_op("Mod", ini, 2, VEIL_DT_INT32, 1, a2, &b, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "fmod must be the integer 0 or 1");
    mb_init(&b);
    VeilOnnx__AttributeProto *af[1] = {mb_attr_f(&b, "fmod", 1.0f)};
    ASSERT_ERR(run_op("Mod", ini, 2, VEIL_DT_INT32, 1, af, &b, &out, &eb), VEIL_E_INVALID);
    /* Mixed types. */
    struct veil_tensor mixed[2] = {in[0], ini[1]};
    mb_init(&b);
    ASSERT_ERR(run_op("Mod", mixed, 2, VEIL_DT_FLOAT, 0, NULL, &b, &out, &eb), VEIL_E_INVALID);
}

/* ---- BitShift ---- */

static veil_err shift(const struct veil_tensor *in, const char *dir, struct veil_tensor *out,
                      struct veil_errbuf *eb)
{
    struct mb b;
    mb_init(&b);
    VeilOnnx__AttributeProto *a[1] = {dir != NULL ? attr_str(&b, "direction", dir) : NULL};
    return run_op("BitShift", in, 2, (int)in[0].dtype, dir != NULL, a, &b, out, eb);
}

TEST(bitshift_widths)
{
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    int64_t d4[1] = {4}, d3[1] = {3}, d2[1] = {2}, d22[2] = {2, 2}, d1[1] = {1};
    /* Shifts by the width or more clear every bit. */
    uint8_t x8[4] = {1, 255, 128, 3}, y8[4] = {1, 1, 8, 200};
    struct veil_tensor in8[2] = {tensor_of(VEIL_DT_UINT8, 1, d4, x8),
                                 tensor_of(VEIL_DT_UINT8, 1, d4, y8)};
    ASSERT_OK(shift(in8, "LEFT", &out, &eb));
    const uint8_t l8[4] = {2, 254, 0, 0};
    ASSERT_MEM_EQ(out.data, l8, 4);
    veil_tensor_release(&out);
    ASSERT_OK(shift(in8, "RIGHT", &out, &eb));
    const uint8_t r8[4] = {0, 127, 0, 0};
    ASSERT_MEM_EQ(out.data, r8, 4);
    veil_tensor_release(&out);

    uint32_t x32[2] = {1, 1}, y32[2] = {31, 32};
    struct veil_tensor in32[2] = {tensor_of(VEIL_DT_UINT32, 1, d2, x32),
                                  tensor_of(VEIL_DT_UINT32, 1, d2, y32)};
    ASSERT_OK(shift(in32, "LEFT", &out, &eb));
    const uint32_t l32[2] = {1u << 31, 0};
    ASSERT_MEM_EQ(out.data, l32, sizeof(l32));
    veil_tensor_release(&out);

    uint64_t x64[3] = {1, 1ull << 63, 5}, y64[3] = {63, 1, 64};
    struct veil_tensor in64[2] = {tensor_of(VEIL_DT_UINT64, 1, d3, x64),
                                  tensor_of(VEIL_DT_UINT64, 1, d3, y64)};
    ASSERT_OK(shift(in64, "LEFT", &out, &eb));
    const uint64_t l64[3] = {1ull << 63, 0, 0};
    ASSERT_MEM_EQ(out.data, l64, sizeof(l64));
    veil_tensor_release(&out);
    ASSERT_OK(shift(in64, "RIGHT", &out, &eb));
    const uint64_t r64[3] = {0, 1ull << 62, 0};
    ASSERT_MEM_EQ(out.data, r64, sizeof(r64));
    veil_tensor_release(&out);

    /* A broadcast shift amount. */
    uint16_t x16[4] = {1, 2, 0x8001, 0xffff}, y16[1] = {4};
    struct veil_tensor in16[2] = {tensor_of(VEIL_DT_UINT16, 2, d22, x16),
                                  tensor_of(VEIL_DT_UINT16, 1, d1, y16)};
    ASSERT_OK(shift(in16, "LEFT", &out, &eb));
    const uint16_t l16[4] = {16, 32, 0x0010, 0xfff0};
    ASSERT_EQ_U64(out.rank, 2);
    ASSERT_MEM_EQ(out.data, l16, sizeof(l16));
    veil_tensor_release(&out);
}

TEST(bitshift_refusals)
{
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    int64_t d2[1] = {2};
    uint8_t x8[2] = {1, 2};
    struct veil_tensor in8[2] = {tensor_of(VEIL_DT_UINT8, 1, d2, x8),
                                 tensor_of(VEIL_DT_UINT8, 1, d2, x8)};
    ASSERT_ERR(shift(in8, "UP", &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'BitShift'");
    ASSERT_STR_CONTAINS(eb.msg, "\"UP\"");
    ASSERT_ERR(shift(in8, "left", &out, &eb), VEIL_E_INVALID);
    ASSERT_ERR(shift(in8, "", &out, &eb), VEIL_E_INVALID);
    ASSERT_ERR(shift(in8, NULL, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "direction");
    /* direction given as an integer. */
    struct mb b;
    mb_init(&b);
    VeilOnnx__AttributeProto *a[1] = {mb_attr_i(&b, "direction", 0)};
    ASSERT_ERR(run_op("BitShift", in8, 2, VEIL_DT_UINT8, 1, a, &b, &out, &eb), VEIL_E_INVALID);
    /* Signed integers are outside BitShift's types. */
    int32_t xi[2] = {1, 2};
    struct veil_tensor ini[2] = {tensor_of(VEIL_DT_INT32, 1, d2, xi),
                                 tensor_of(VEIL_DT_INT32, 1, d2, xi)};
    ASSERT_ERR(shift(ini, "LEFT", &out, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "int32");
}

/* ---- PRelu, comparisons, logic ---- */

TEST(prelu_unidirectional)
{
    float x[2 * 3 * 2 * 2], slope[3] = {0.1f, -2.0f, 0.0f};
    for (size_t i = 0; i < 24; i++)
        x[i] = (float)i * 0.5f - 6.0f;
    int64_t xd[4] = {2, 3, 2, 2}, sd[3] = {3, 1, 1};
    struct veil_tensor in[2] = {tensor_of(VEIL_DT_FLOAT, 4, xd, x),
                                tensor_of(VEIL_DT_FLOAT, 3, sd, slope)};
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    struct mb b;
    mb_init(&b);
    ASSERT_OK(run_op("PRelu", in, 2, VEIL_DT_FLOAT, 0, NULL, &b, &out, &eb));
    for (size_t i = 0; i < 24; i++) {
        float s = slope[(i / 4) % 3], want = x[i] < 0 ? x[i] * s : x[i];
        ASSERT_TRUE(((const float *)out.data)[i] == want);
    }
    veil_tensor_release(&out);

    int32_t xi[2] = {-4, 5}, si[1] = {3};
    int64_t d2[1] = {2}, d1[1] = {1};
    struct veil_tensor ini[2] = {tensor_of(VEIL_DT_INT32, 1, d2, xi),
                                 tensor_of(VEIL_DT_INT32, 1, d1, si)};
    mb_init(&b);
    ASSERT_OK(run_op("PRelu", ini, 2, VEIL_DT_INT32, 0, NULL, &b, &out, &eb));
    const int32_t want_i[2] = {-12, 5};
    ASSERT_MEM_EQ(out.data, want_i, sizeof(want_i));
    veil_tensor_release(&out);

    /* A slope that broadcasts with X only by growing X's shape is refused. */
    float x3[3] = {1, 2, 3}, s23[6] = {0};
    int64_t d3[1] = {3}, d23[2] = {2, 3};
    struct veil_tensor bad[2] = {tensor_of(VEIL_DT_FLOAT, 1, d3, x3),
                                 tensor_of(VEIL_DT_FLOAT, 2, d23, s23)};
    mb_init(&b);
    ASSERT_ERR(run_op("PRelu", bad, 2, VEIL_DT_FLOAT, 0, NULL, &b, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'PRelu'");
    ASSERT_STR_CONTAINS(eb.msg, "slope");
}

/*
 * Float Add, Sub, Mul, Div and Pow with each operand a full row, a broadcast scalar row or both
 * full (the vector loops), and Pow by the exponents that skip powf (2, 3, 1, 0.5) on special
 * values: the results must be what the operators define, pow's signed zero and infinities
 * included.
 */
TEST(float_binary_rows)
{
    enum { R = 3, L = 21 };
    float a[R * L], b[R * L], col[R], row[L];
    uint32_t seed = 99;
    for (size_t i = 0; i < R * L; i++) {
        a[i] = rnd(&seed) * 4.0f;
        b[i] = rnd(&seed) * 4.0f + (i % 2 ? 5.0f : -5.0f);
    }
    for (size_t i = 0; i < R; i++)
        col[i] = rnd(&seed) + 2.0f;
    for (size_t i = 0; i < L; i++)
        row[i] = rnd(&seed) - 3.0f;
    static const char *const ops[] = {"Add", "Sub", "Mul", "Div", "Pow"};
    int64_t full[2] = {R, L}, cold[2] = {R, 1}, rowd[2] = {1, L};
    /* x op y for: full op full, full op column, column op full, full op row, row op full. */
    struct {
        const float *x, *y;
        const int64_t *xd, *yd;
    } shapes[] = {{a, b, full, full},
                  {a, col, full, cold},
                  {col, b, cold, full},
                  {a, row, full, rowd},
                  {row, b, rowd, full}};
    struct veil_errbuf eb = {{0}};
    for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++)
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            struct veil_tensor in[2] = {tensor_of(VEIL_DT_FLOAT, 2, shapes[s].xd, shapes[s].x),
                                        tensor_of(VEIL_DT_FLOAT, 2, shapes[s].yd, shapes[s].y)};
            struct veil_tensor out;
            struct mb mb;
            mb_init(&mb);
            one_node(&mb, ops[o], in, 2, VEIL_DT_FLOAT, 2, full, 0, NULL);
            ASSERT_OK(run_model(&mb, in, 2, &out, &eb));
            for (int64_t r = 0; r < R; r++)
                for (int64_t c = 0; c < L; c++) {
                    double x = shapes[s].x[(shapes[s].xd[0] > 1 ? r : 0) * shapes[s].xd[1] +
                                           (shapes[s].xd[1] > 1 ? c : 0)];
                    double y = shapes[s].y[(shapes[s].yd[0] > 1 ? r : 0) * shapes[s].yd[1] +
                                           (shapes[s].yd[1] > 1 ? c : 0)];
                    double want = o == 0   ? x + y
                                  : o == 1 ? x - y
                                  : o == 2 ? x * y
                                  : o == 3 ? x / y
                                           : pow(x, y);
                    ASSERT_TRUE(close_to(((const float *)out.data)[r * L + c], want, 1e-5, 1e-6));
                }
            veil_tensor_release(&out);
        }
    const float sp[] = {-INFINITY, -2.5f, -1.0f, -0.0f,    0.0f, 1e-30f,
                        0.5f,      3.0f,  1e20f, INFINITY, NAN};
    const float exps[] = {2.0f, 3.0f, 1.0f, 0.5f};
    int64_t nd[1] = {sizeof(sp) / sizeof(sp[0])}, sd[1] = {1};
    for (size_t e = 0; e < sizeof(exps) / sizeof(exps[0]); e++) {
        struct veil_tensor in[2] = {tensor_of(VEIL_DT_FLOAT, 1, nd, sp),
                                    tensor_of(VEIL_DT_FLOAT, 1, sd, &exps[e])};
        struct veil_tensor out;
        struct mb mb;
        mb_init(&mb);
        one_node(&mb, "Pow", in, 2, VEIL_DT_FLOAT, 1, nd, 0, NULL);
        ASSERT_OK(run_model(&mb, in, 2, &out, &eb));
        for (int64_t i = 0; i < nd[0]; i++) {
            float got = ((const float *)out.data)[i], want = powf(sp[i], exps[e]);
            if (isnan(want)) {
                ASSERT_TRUE(isnan(got));
            } else {
                ASSERT_TRUE(close_to(got, want, 1e-6, 0));
                ASSERT_TRUE(signbit(got) == signbit(want));
            }
        }
        veil_tensor_release(&out);
    }
}

TEST(compare_and_logic_broadcast)
{
    int64_t x[6] = {1, 2, 3, 4, 5, 6}, y[3] = {2, 5, 6};
    int64_t xd[2] = {2, 3}, yd[1] = {3};
    struct veil_tensor in[2] = {tensor_of(VEIL_DT_INT64, 2, xd, x),
                                tensor_of(VEIL_DT_INT64, 1, yd, y)};
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    struct mb b;
    mb_init(&b);
    ASSERT_OK(run_op("GreaterOrEqual", in, 2, VEIL_DT_BOOL, 0, NULL, &b, &out, &eb));
    const uint8_t ge[6] = {0, 0, 0, 1, 1, 1};
    ASSERT_MEM_EQ(out.data, ge, 6);
    veil_tensor_release(&out);
    mb_init(&b);
    ASSERT_OK(run_op("LessOrEqual", in, 2, VEIL_DT_BOOL, 0, NULL, &b, &out, &eb));
    const uint8_t le[6] = {1, 1, 1, 0, 1, 1};
    ASSERT_MEM_EQ(out.data, le, 6);
    veil_tensor_release(&out);

    /* NaN compares false both ways. */
    float xf[2] = {NAN, 1.0f}, yf[2] = {NAN, 1.0f};
    int64_t d2[1] = {2};
    struct veil_tensor inf[2] = {tensor_of(VEIL_DT_FLOAT, 1, d2, xf),
                                 tensor_of(VEIL_DT_FLOAT, 1, d2, yf)};
    mb_init(&b);
    ASSERT_OK(run_op("GreaterOrEqual", inf, 2, VEIL_DT_BOOL, 0, NULL, &b, &out, &eb));
    const uint8_t gef[2] = {0, 1};
    ASSERT_MEM_EQ(out.data, gef, 2);
    veil_tensor_release(&out);

    uint8_t p[4] = {0, 0, 1, 1}, q[2] = {0, 1};
    int64_t pd[2] = {2, 2}, qd[1] = {2};
    struct veil_tensor inb[2] = {tensor_of(VEIL_DT_BOOL, 2, pd, p),
                                 tensor_of(VEIL_DT_BOOL, 1, qd, q)};
    mb_init(&b);
    ASSERT_OK(run_op("Or", inb, 2, VEIL_DT_BOOL, 0, NULL, &b, &out, &eb));
    const uint8_t or_want[4] = {0, 1, 1, 1};
    ASSERT_MEM_EQ(out.data, or_want, 4);
    veil_tensor_release(&out);
    mb_init(&b);
    ASSERT_OK(run_op("Xor", inb, 2, VEIL_DT_BOOL, 0, NULL, &b, &out, &eb));
    const uint8_t xor_want[4] = {0, 1, 1, 0};
    ASSERT_MEM_EQ(out.data, xor_want, 4);
    veil_tensor_release(&out);
    /* Or on integers is outside its types. */
    mb_init(&b);
    ASSERT_ERR(run_op("Or", in, 2, VEIL_DT_BOOL, 0, NULL, &b, &out, &eb), VEIL_E_UNSUPPORTED);
}

/* ---- Variadic Max, Min, Sum, Mean ---- */

/* Element `o` of a row-major output of shape od (rank r), read from t broadcast to it. */
static double bcast_at(const struct veil_tensor *t, const int64_t *od, size_t r, size_t o)
{
    size_t off = 0, stride = 1;
    for (size_t i = r; i-- > 0;) {
        size_t idx = o % (size_t)od[i];
        o /= (size_t)od[i];
        size_t ti = i + t->rank >= r ? i + t->rank - r : SIZE_MAX;
        if (ti == SIZE_MAX)
            continue;
        size_t dim = (size_t)t->dims[ti];
        off += (dim == 1 ? 0 : idx) * stride;
        stride *= dim;
    }
    switch (t->dtype) {
    case VEIL_DT_FLOAT:
        return ((const float *)t->data)[off];
    case VEIL_DT_INT32:
        return ((const int32_t *)t->data)[off];
    default:
        return ((const double *)t->data)[off];
    }
}

TEST(variadic_broadcast_against_reference)
{
    /* [2,1,4], [3,1], [1] and [5,1,1,1] broadcast to [5,2,3,4]. */
    static const int64_t shp[4][4] = {{2, 1, 4}, {3, 1}, {1}, {5, 1, 1, 1}};
    static const size_t rk[4] = {3, 2, 1, 4}, cnt[4] = {8, 3, 1, 5};
    const int64_t od[4] = {5, 2, 3, 4};
    const char *ops[4] = {"Max", "Min", "Sum", "Mean"};
    uint32_t seed = 11;
    float f[4][8];
    double dd[4][8];
    int32_t iv[4][8];
    for (size_t k = 0; k < 4; k++)
        for (size_t i = 0; i < cnt[k]; i++) {
            seed = seed * 1664525u + 1013904223u;
            iv[k][i] = (int32_t)((seed >> 8) % 2001) - 1000;
            f[k][i] = (float)iv[k][i] / 64.0f;
            dd[k][i] = (double)iv[k][i] / 3.0;
        }
    for (int dti = 0; dti < 3; dti++) {
        enum veil_dtype dt = dti == 0 ? VEIL_DT_FLOAT : dti == 1 ? VEIL_DT_DOUBLE : VEIL_DT_INT32;
        struct veil_tensor in[4];
        for (size_t k = 0; k < 4; k++)
            in[k] = tensor_of(dt, rk[k], shp[k],
                              dti == 0   ? (const void *)f[k]
                              : dti == 1 ? (const void *)dd[k]
                                         : (const void *)iv[k]);
        for (size_t o = 0; o < 4; o++) {
            bool is_sum = o >= 2;
            if (dt == VEIL_DT_INT32 && is_sum)
                continue;
            /* Every count of inputs from 1 to 4, so the single-input copy runs too. */
            for (size_t n = 1; n <= 4; n++) {
                size_t r = 0;
                int64_t dims[4] = {1, 1, 1, 1};
                for (size_t k = 0; k < n; k++)
                    if (rk[k] > r)
                        r = rk[k];
                for (size_t k = 0; k < n; k++)
                    for (size_t i = 0; i < rk[k]; i++)
                        if (shp[k][i] != 1)
                            dims[r - rk[k] + i] = shp[k][i];
                if (n == 4)
                    ASSERT_MEM_EQ(dims, od, sizeof(od));
                struct mb b;
                struct veil_errbuf eb = {{0}};
                struct veil_tensor out;
                mb_init(&b);
                one_node(&b, ops[o], in, n, (int)dt, r, dims, 0, NULL);
                veil_err rc = run_model(&b, in, n, &out, &eb);
                if (rc != VEIL_OK)
                    HFAIL("%s of %zu: %s", ops[o], n, veil_errbuf_msg(&eb, rc));
                ASSERT_EQ_U64(out.rank, r);
                ASSERT_MEM_EQ(out.dims, dims, r * sizeof(int64_t));
                size_t total = 1;
                for (size_t i = 0; i < r; i++)
                    total *= (size_t)dims[i];
                for (size_t e = 0; e < total; e++) {
                    double want = bcast_at(&in[0], dims, r, e);
                    for (size_t k = 1; k < n; k++) {
                        double v = bcast_at(&in[k], dims, r, e);
                        want = o == 0 ? fmax(want, v) : o == 1 ? fmin(want, v) : want + v;
                    }
                    if (o == 3)
                        want /= (double)n;
                    double got = dt == VEIL_DT_FLOAT    ? ((const float *)out.data)[e]
                                 : dt == VEIL_DT_DOUBLE ? ((const double *)out.data)[e]
                                                        : ((const int32_t *)out.data)[e];
                    if (!close_to(got, want, 1e-6, 1e-6)) {
                        veil_tensor_release(&out);
                        HFAIL("%s of %zu (%s) element %zu: %.9g, expected %.9g", ops[o], n,
                              veil_dtype_name(dt), e, got, want);
                    }
                }
                veil_tensor_release(&out);
            }
        }
    }
}

TEST(variadic_edges)
{
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    struct mb b;
    int64_t d2[1] = {2};
    /* NaN from any input wins in Max and Min, whichever side it is on. */
    float a[2] = {NAN, 1.0f}, c[2] = {0.0f, NAN};
    struct veil_tensor inf[2] = {tensor_of(VEIL_DT_FLOAT, 1, d2, a),
                                 tensor_of(VEIL_DT_FLOAT, 1, d2, c)};
    mb_init(&b);
    ASSERT_OK(run_op("Max", inf, 2, VEIL_DT_FLOAT, 0, NULL, &b, &out, &eb));
    ASSERT_TRUE(isnan(((const float *)out.data)[0]) && isnan(((const float *)out.data)[1]));
    veil_tensor_release(&out);
    mb_init(&b);
    ASSERT_OK(run_op("Min", inf, 2, VEIL_DT_FLOAT, 0, NULL, &b, &out, &eb));
    ASSERT_TRUE(isnan(((const float *)out.data)[0]) && isnan(((const float *)out.data)[1]));
    veil_tensor_release(&out);

    /* uint64 above INT64_MAX compares as unsigned. */
    uint64_t u0[2] = {1ull << 63, 5}, u1[2] = {3, UINT64_MAX};
    struct veil_tensor inu[2] = {tensor_of(VEIL_DT_UINT64, 1, d2, u0),
                                 tensor_of(VEIL_DT_UINT64, 1, d2, u1)};
    mb_init(&b);
    ASSERT_OK(run_op("Max", inu, 2, VEIL_DT_UINT64, 0, NULL, &b, &out, &eb));
    const uint64_t umax[2] = {1ull << 63, UINT64_MAX};
    ASSERT_MEM_EQ(out.data, umax, sizeof(umax));
    veil_tensor_release(&out);

    /* Types must agree; Sum and Mean take only floats. */
    int32_t xi[2] = {1, 2};
    struct veil_tensor mixed[2] = {inf[0], tensor_of(VEIL_DT_INT32, 1, d2, xi)};
    mb_init(&b);
    ASSERT_ERR(run_op("Sum", mixed, 2, VEIL_DT_FLOAT, 0, NULL, &b, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'Sum'");
    ASSERT_STR_CONTAINS(eb.msg, "types differ");
    struct veil_tensor ints[2] = {mixed[1], mixed[1]};
    mb_init(&b);
    ASSERT_ERR(run_op("Mean", ints, 2, VEIL_DT_INT32, 0, NULL, &b, &out, &eb), VEIL_E_UNSUPPORTED);
    /* Shapes that do not broadcast. */
    float x3[3] = {1, 2, 3};
    int64_t d3[1] = {3};
    struct veil_tensor nb[2] = {inf[0], tensor_of(VEIL_DT_FLOAT, 1, d3, x3)};
    mb_init(&b);
    ASSERT_ERR(run_op("Max", nb, 2, VEIL_DT_FLOAT, 0, NULL, &b, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "broadcast");
}

TEST(variadic_without_inputs_refused_at_load)
{
    const char *ops[4] = {"Max", "Min", "Sum", "Mean"};
    for (size_t o = 0; o < 4; o++) {
        struct mb b;
        struct veil_engine_model *m = NULL;
        struct veil_errbuf eb = {{0}};
        struct veil_buf buf;
        int64_t d[1] = {2};
        mb_init(&b);
        mb_node(&b, ops[o], "", "y", 0);
        mb_output(&b, "y", VEIL_DT_FLOAT, 1, d);
        mb_pack(&b, &buf);
        mb_release(&b);
        veil_err rc = veil_engine_model_load(veil_buf_span(&buf), NULL, &m, &eb);
        veil_buf_release(&buf);
        ASSERT_ERR(rc, VEIL_E_INVALID);
        ASSERT_TRUE(m == NULL);
        ASSERT_STR_CONTAINS(eb.msg, "has 0 inputs");
        ASSERT_STR_CONTAINS(eb.msg, ops[o]);
    }
}

/* ---- CastLike ---- */

TEST(castlike)
{
    float x[4] = {1.5f, -2.7f, 1e10f, NAN};
    int32_t like[1] = {0};
    int64_t d4[1] = {4}, d1[1] = {1};
    struct veil_tensor in[2] = {tensor_of(VEIL_DT_FLOAT, 1, d4, x),
                                tensor_of(VEIL_DT_INT32, 1, d1, like)};
    struct veil_tensor out;
    struct veil_errbuf eb = {{0}};
    struct mb b;
    mb_init(&b);
    ASSERT_OK(run_op("CastLike", in, 2, VEIL_DT_INT32, 0, NULL, &b, &out, &eb));
    ASSERT_EQ_U64(out.dtype, VEIL_DT_INT32);
    /* Conversions truncate toward zero and saturate; NaN gives 0. */
    const int32_t want[4] = {1, -2, INT32_MAX, 0};
    ASSERT_MEM_EQ(out.data, want, sizeof(want));
    veil_tensor_release(&out);

    int64_t xi[2] = {-3, 1ll << 40};
    double liked[3] = {0, 0, 0};
    int64_t d2[1] = {2}, d3[1] = {3};
    struct veil_tensor in2[2] = {tensor_of(VEIL_DT_INT64, 1, d2, xi),
                                 tensor_of(VEIL_DT_DOUBLE, 1, d3, liked)};
    mb_init(&b);
    ASSERT_OK(run_op("CastLike", in2, 2, VEIL_DT_DOUBLE, 0, NULL, &b, &out, &eb));
    ASSERT_EQ_U64(out.dtype, VEIL_DT_DOUBLE);
    ASSERT_EQ_U64(out.dims[0], 2);
    ASSERT_TRUE(((const double *)out.data)[0] == -3.0 &&
                ((const double *)out.data)[1] == (double)(1ll << 40));
    veil_tensor_release(&out);
}

RUN_TESTS()
