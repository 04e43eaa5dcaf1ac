/*
 * Models of opsets 7 to 10: operands that were attributes then (Clip's min and max, Pad's pads
 * and value, Slice's starts, ends and axes, TopK's k), Resize of opset 10 and Upsample (scales
 * as an attribute in opset 7, an input in 9) give what those versions define (nearest
 * shrinking as ONNX Runtime rounds it, checked against it by hand); the forms that
 * cannot be honoured (BatchNormalization with spatial=0, Upsample from opset 10, a missing
 * attribute) are refused with the node named.
 */
#include "harness.h"
#include "engine_test.h"
#include "model_builder.h"

#include "veil/engine.h"

#include <float.h>

/* Starts in b a model of the given opset whose one input is the float tensor "x" of dims d. */
static void start(struct mb *b, int64_t opset, size_t rank, const int64_t *d)
{
    mb_init(b);
    b->opset = opset;
    mb_input(b, "x", 1, rank, d);
}

/* Loads the one-input model in b (released here), runs it on in and hands back output 0. */
static veil_err run1(struct mb *b, const struct veil_tensor *in, size_t n_out,
                     struct veil_tensor *out, struct veil_errbuf *eb)
{
    struct veil_engine_model *m = NULL;
    struct veil_engine_options opt = {.threads = 2};
    veil_err rc = mb_load(b, &opt, &m, eb);
    if (rc == VEIL_OK)
        rc = veil_engine_run(m, in, 1, out, n_out, eb);
    veil_engine_model_free(m);
    return rc;
}

TEST(clip_and_pad_attributes_opset_10)
{
    float x[6] = {-3, -1, 0, 0.5f, 2, 9};
    int64_t d[2] = {2, 3}, pd[2] = {3, 5};
    struct veil_tensor in = tensor_f(x, 2, d), out[2];
    struct veil_errbuf eb = {{0}};
    struct mb b;
    start(&b, 10, 2, d);
    mb_node(&b, "Clip", "x", "y", 2, mb_attr_f(&b, "min", -1.5f), mb_attr_f(&b, "max", 1.0f));
    mb_output(&b, "y", 1, 2, d);
    ASSERT_OK(run1(&b, &in, 1, out, &eb));
    const float want_clip[6] = {-1.5f, -1, 0, 0.5f, 1, 1};
    ASSERT_MEM_EQ(out[0].data, want_clip, sizeof(want_clip));
    veil_tensor_release(&out[0]);

    /* Only max: min defaults to the lowest float. */
    start(&b, 9, 2, d);
    mb_node(&b, "Clip", "x", "y", 1, mb_attr_f(&b, "max", 0.0f));
    mb_output(&b, "y", 1, 2, d);
    ASSERT_OK(run1(&b, &in, 1, out, &eb));
    const float want_max[6] = {-3, -1, 0, 0, 0, 0};
    ASSERT_MEM_EQ(out[0].data, want_max, sizeof(want_max));
    veil_tensor_release(&out[0]);

    /* Pad one row before, two columns after, with 7. */
    static const int64_t pads[4] = {1, 0, 0, 2};
    start(&b, 10, 2, d);
    mb_node(&b, "Pad", "x", "y", 2, mb_attr_ints(&b, "pads", 4, pads), mb_attr_f(&b, "value", 7));
    mb_output(&b, "y", 1, 2, pd);
    ASSERT_OK(run1(&b, &in, 1, out, &eb));
    ASSERT_TRUE(out[0].rank == 2 && out[0].dims[0] == 3 && out[0].dims[1] == 5);
    const float want_pad[15] = {7, 7, 7, 7, 7, -3, -1, 0, 7, 7, 0.5f, 2, 9, 7, 7};
    ASSERT_MEM_EQ(out[0].data, want_pad, sizeof(want_pad));
    veil_tensor_release(&out[0]);

    /* Without pads the node is refused, named. */
    start(&b, 10, 2, d);
    mb_node(&b, "Pad", "x", "y", 0);
    mb_output(&b, "y", 1, 2, pd);
    ASSERT_ERR(run1(&b, &in, 1, out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "pads");
}

TEST(slice_and_topk_attributes_opset_9)
{
    float x[12];
    for (int i = 0; i < 12; i++)
        x[i] = (float)((i * 5) % 12);
    int64_t d[2] = {3, 4}, sd[2] = {2, 2}, kd[2] = {3, 2};
    struct veil_tensor in = tensor_f(x, 2, d), out[2];
    struct veil_errbuf eb = {{0}};
    /* Rows 1.. and columns 1..3 (axes given); negative end counts from the back. */
    static const int64_t starts[2] = {1, 1}, ends[2] = {INT64_MAX, -1}, axes[2] = {0, 1};
    struct mb b;
    start(&b, 9, 2, d);
    mb_node(&b, "Slice", "x", "y", 3, mb_attr_ints(&b, "starts", 2, starts),
            mb_attr_ints(&b, "ends", 2, ends), mb_attr_ints(&b, "axes", 2, axes));
    mb_output(&b, "y", 1, 2, sd);
    ASSERT_OK(run1(&b, &in, 1, out, &eb));
    ASSERT_TRUE(out[0].dims[0] == 2 && out[0].dims[1] == 2);
    const float want_slice[4] = {x[5], x[6], x[9], x[10]};
    ASSERT_MEM_EQ(out[0].data, want_slice, sizeof(want_slice));
    veil_tensor_release(&out[0]);

    /* The two largest of each row, largest first, with their indices. */
    start(&b, 9, 2, d);
    mb_node(&b, "TopK", "x", "v,i", 1, mb_attr_i(&b, "k", 2));
    mb_output(&b, "v", 1, 2, kd);
    mb_output(&b, "i", 7, 2, kd);
    ASSERT_OK(run1(&b, &in, 2, out, &eb));
    for (int r = 0; r < 3; r++) {
        float best = -1, second = -1;
        int64_t bi = -1, si = -1;
        for (int c = 0; c < 4; c++) {
            float v = x[r * 4 + c];
            if (v > best) {
                second = best;
                si = bi;
                best = v;
                bi = c;
            } else if (v > second) {
                second = v;
                si = c;
            }
        }
        const float *ov = out[0].data;
        const int64_t *oi = out[1].data;
        ASSERT_TRUE(ov[r * 2] == best && ov[r * 2 + 1] == second);
        ASSERT_TRUE(oi[r * 2] == bi && oi[r * 2 + 1] == si);
    }
    veil_tensor_release(&out[0]);
    veil_tensor_release(&out[1]);
}

/* Nearest and linear upsampling by (1, 1, 2, 2) of a 1x1x2x2 input, asymmetric coordinates. */
static void check_upsample(const char *op, int64_t opset, const char *mode, bool scales_attr)
{
    float x[4] = {1, 2, 3, 4}, scales[4] = {1, 1, 2, 2};
    int64_t d[4] = {1, 1, 2, 2}, od[4] = {1, 1, 4, 4}, sd[1] = {4};
    struct veil_tensor in = tensor_f(x, 4, d), out;
    struct veil_errbuf eb = {{0}};
    struct mb b;
    start(&b, opset, 4, d);
    if (scales_attr) {
        mb_node(&b, op, "x", "y", 2, mb_attr_s(&b, "mode", mode),
                mb_attr_floats(&b, "scales", 4, scales));
    } else {
        mb_init_f(&b, "scales", 1, sd, scales);
        mb_node(&b, op, "x,scales", "y", 1, mb_attr_s(&b, "mode", mode));
    }
    mb_output(&b, "y", 1, 4, od);
    ASSERT_OK(run1(&b, &in, 1, &out, &eb));
    ASSERT_TRUE(out.rank == 4 && out.dims[2] == 4 && out.dims[3] == 4);
    /* Asymmetric: output i reads input i / 2; nearest rounds down, linear interpolates
     * (clamped at the last input row and column). */
    static const float nearest[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
    static const float linear[16] = {1, 1.5f, 2, 2, 2, 2.5f, 3, 3, 3, 3.5f, 4, 4, 3, 3.5f, 4, 4};
    ASSERT_MEM_EQ(out.data, strcmp(mode, "nearest") == 0 ? nearest : linear, sizeof(nearest));
    veil_tensor_release(&out);
}

TEST(resize_10_and_upsample)
{
    check_upsample("Upsample", 7, "nearest", true);
    check_upsample("Upsample", 8, "linear", true);
    check_upsample("Upsample", 9, "nearest", false);
    check_upsample("Resize", 10, "nearest", false);
    check_upsample("Resize", 10, "linear", false);
    /* Shrinking by 0.6, nearest rounds up (as ONNX Runtime does for opset 10): 10 -> 6. */
    float x[10], scales[4] = {1, 1, 1, 0.6f};
    for (int i = 0; i < 10; i++)
        x[i] = (float)i;
    int64_t d[4] = {1, 1, 1, 10}, od[4] = {1, 1, 1, 6}, sd[1] = {4};
    struct veil_tensor in = tensor_f(x, 4, d), out;
    struct veil_errbuf eb = {{0}};
    struct mb b;
    start(&b, 10, 4, d);
    mb_init_f(&b, "scales", 1, sd, scales);
    mb_node(&b, "Resize", "x,scales", "y", 1, mb_attr_s(&b, "mode", "nearest"));
    mb_output(&b, "y", 1, 4, od);
    ASSERT_OK(run1(&b, &in, 1, &out, &eb));
    static const float want[6] = {0, 2, 4, 5, 7, 9};
    ASSERT_TRUE(out.dims[3] == 6);
    ASSERT_MEM_EQ(out.data, want, sizeof(want));
    veil_tensor_release(&out);
}

TEST(legacy_refusals)
{
    float x[4] = {1, 2, 3, 4}, one[1] = {1}, zero[1] = {0};
    int64_t d[4] = {1, 1, 2, 2}, cd[1] = {1};
    struct veil_tensor in = tensor_f(x, 4, d), out;
    struct veil_errbuf eb = {{0}};
    struct mb b;
    /*
     * BatchNormalization of opset 8: spatial=0 (statistics per element) is refused, spatial=1
     * is the usual normalisation.
     */
    for (int64_t spatial = 0; spatial < 2; spatial++) {
        start(&b, 8, 4, d);
        mb_init_f(&b, "s", 1, cd, one);
        mb_init_f(&b, "bb", 1, cd, zero);
        mb_init_f(&b, "mean", 1, cd, zero);
        mb_init_f(&b, "var", 1, cd, one);
        mb_node(&b, "BatchNormalization", "x,s,bb,mean,var", "y", 1,
                mb_attr_i(&b, "spatial", spatial));
        mb_output(&b, "y", 1, 4, d);
        veil_err rc = run1(&b, &in, 1, &out, &eb);
        if (spatial == 0) {
            ASSERT_ERR(rc, VEIL_E_UNSUPPORTED);
            ASSERT_STR_CONTAINS(eb.msg, "spatial=0");
            continue;
        }
        ASSERT_OK(rc);
        for (int i = 0; i < 4; i++)
            ASSERT_TRUE(fabsf(((const float *)out.data)[i] - x[i] / sqrtf(1 + 1e-5f)) < 1e-6f);
        veil_tensor_release(&out);
    }
    /* Upsample is gone from opset 10. */
    float scales[4] = {1, 1, 2, 2};
    int64_t sd[1] = {4}, od[4] = {1, 1, 4, 4};
    start(&b, 10, 4, d);
    mb_init_f(&b, "scales", 1, sd, scales);
    mb_node(&b, "Upsample", "x,scales", "y", 0);
    mb_output(&b, "y", 1, 4, od);
    ASSERT_ERR(run1(&b, &in, 1, &out, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "Upsample");
    /* Upsample of opset 7 without scales. */
    start(&b, 7, 4, d);
    mb_node(&b, "Upsample", "x", "y", 0);
    mb_output(&b, "y", 1, 4, od);
    ASSERT_ERR(run1(&b, &in, 1, &out, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "scales");
}

RUN_TESTS()
