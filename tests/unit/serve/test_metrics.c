/*
 * The Prometheus metrics text: label values are escaped, so a model name (chosen by a client
 * for unknown models, or by whoever writes the config) cannot close its label or add lines.
 */
#include "harness.h"
#include "serve_int.h"

#include <string.h>

/* Whether some line of text starts with prefix. */
static bool has_line(const struct veil_buf *b, const char *prefix)
{
    struct veil_span s = veil_buf_span(b), line;
    while (veil_span_get_until(&s, '\n', &line) == VEIL_OK)
        if (veil_span_starts_with(line, prefix))
            return true;
    return false;
}

/* Issue 18, finding 6: a model name with a quote and a newline injected a metric line. */
TEST(label_values_are_escaped)
{
    struct sv_metrics *m = NULL;
    ASSERT_OK(veil__serve_metrics_new(&m));
    static const char evil[] = "x\"} 1\ninjected_metric{a=\"b\"} 99\n\\";
    veil__serve_metrics_request(m, evil, 1, "predict", "REST", 0, 1000);
    veil__serve_metrics_batch(m, evil, 4);
    veil__serve_metrics_runtime(m, evil, 2000);
    struct veil_buf b;
    veil_buf_init(&b, 1 << 20);
    ASSERT_OK(veil__serve_metrics_render(m, &b));
    ASSERT_OK(veil_buf_append_u8(&b, '\0'));
    if (has_line(&b, "injected_metric"))
        HFAIL("a model name injected a line:\n%s", (const char *)b.p);
    static const char esc[] = "model_name=\"x\\\"} 1\\ninjected_metric{a=\\\"b\\\"} 99\\n\\\\\"";
    ASSERT_STR_CONTAINS((const char *)b.p, esc);
    /* Every series of the three families carries the escaped value. */
    ASSERT_STR_CONTAINS((const char *)b.p, ":tensorflow:serving:request_count{model_name=\"x\\\"");
    ASSERT_STR_CONTAINS((const char *)b.p, "processed_batch_size_count{model_name=\"x\\\"");
    ASSERT_STR_CONTAINS((const char *)b.p, "runtime_latency_count{model_name=\"x\\\"");
    /* Each line is a comment or a sample whose labels close before the value. */
    struct veil_span s = veil_span_make(b.p, b.len - 1), line;
    while (veil_span_get_until(&s, '\n', &line) == VEIL_OK)
        ASSERT_TRUE(veil_span_starts_with(line, "# ") ||
                    veil_span_starts_with(line, ":tensorflow"));
    veil_buf_release(&b);
    veil__serve_metrics_free(m);
}

/* The one escape serves every family (the repository's version-state gauge too), bounded. */
TEST(escape_is_bounded)
{
    char out[8];
    veil__serve_metrics_escape("a\"b\\c\nd", out, sizeof(out));
    ASSERT_STR_EQ(out, "a\\\"b\\\\");
    char big[64];
    veil__serve_metrics_escape("x\ny\"", big, sizeof(big));
    ASSERT_STR_EQ(big, "x\\ny\\\"");
    veil__serve_metrics_escape("", big, sizeof(big));
    ASSERT_STR_EQ(big, "");
}

TEST(plain_names_are_unchanged)
{
    struct sv_metrics *m = NULL;
    ASSERT_OK(veil__serve_metrics_new(&m));
    veil__serve_metrics_request(m, "resnet-50_v2.onnx", 3, "predict", "gRPC", 0, 1000);
    struct veil_buf b;
    veil_buf_init(&b, 1 << 20);
    ASSERT_OK(veil__serve_metrics_render(m, &b));
    ASSERT_OK(veil_buf_append_u8(&b, '\0'));
    ASSERT_STR_CONTAINS((const char *)b.p, "model_name=\"resnet-50_v2.onnx\",version=\"3\"");
    veil_buf_release(&b);
    veil__serve_metrics_free(m);
}

RUN_TESTS()
