#include "harness.h"
#include "serve_int.h"

#include <string.h>

static struct veil_arena A;

TEST(model_config_with_policies_and_labels)
{
    const char *text =
        "# comment\n"
        "model_config_list {\n"
        "  config { name: 'a' base_path: \"/m/a\" model_platform: \"tensorflow\"\n"
        "           model_version_policy { specific { versions: 42 versions: 43 } }\n"
        "           version_labels { key: \"stable\" value: 42 }\n"
        "           version_labels { key: 'canary' value: 43 } }\n"
        "  config: { name: \"b\", base_path: \"/m/\\x62\"; model_version_policy: < all {} > }\n"
        "  config { name: \"c\" base_path: \"/m/c\" model_version_policy { latest { num_versions: "
        "3 } } }\n"
        "  config { name: \"d\" base_path: \"/m/\" \"d\" }\n"
        "}\n";
    struct sv_model_config *m = NULL;
    size_t n = 0;
    struct veil_errbuf eb = {{0}};
    veil_arena_init(&A, 4096, 1 << 20);
    ASSERT_OK(veil__serve_parse_model_config(veil_span_from_str(text), &A, &m, &n, &eb));
    ASSERT_EQ_U64(n, 4);
    ASSERT_STR_EQ(m[0].name, "a");
    ASSERT_STR_EQ(m[0].base_path, "/m/a");
    ASSERT_EQ_U64(m[0].policy, SV_POLICY_SPECIFIC);
    ASSERT_EQ_U64(m[0].n_versions, 2);
    ASSERT_EQ_I64(m[0].versions[1], 43);
    ASSERT_EQ_U64(m[0].n_labels, 2);
    ASSERT_STR_EQ(m[0].labels[1].name, "canary");
    ASSERT_EQ_I64(m[0].labels[1].version, 43);
    ASSERT_STR_EQ(m[1].base_path, "/m/b");
    ASSERT_EQ_U64(m[1].policy, SV_POLICY_ALL);
    ASSERT_EQ_U64(m[2].policy, SV_POLICY_LATEST);
    ASSERT_EQ_U64(m[2].latest_n, 3);
    ASSERT_EQ_U64(m[3].latest_n, 1);
    ASSERT_STR_EQ(m[3].base_path, "/m/d");
    veil_arena_release(&A);
}

TEST(model_config_errors_name_the_line)
{
    static const char *const bad[][2] = {
        {"model_config_list { config { name: 'a' base_path: '/x' bogus: 1 } }", "unknown field"},
        {"model_config_list {\n config { name: 'a' }\n}", "line 2"},
        {"model_config_list { config { name: 'a' base_path: '/x' ", "missing"},
        {"model_config_list { config { name: 'a\n base_path: '/x' } }", "unterminated"},
        {"model_config_list { config { name: 'a' base_path: '/x' "
         "version_labels { key: 'l' value: 1 } version_labels { key: 'l' value: 2 } } }",
         "more than one version"},
        {"model_config_list { config { name: 'a' base_path: '/x' model_platform: 'pytorch' } }",
         "not served"},
        {"model_config_list { config { name: 1 base_path: '/x' } }", "quoted string"},
        {"custom_model_config { }", "not supported"},
        {"", "no model_config_list"},
        {"model_config_list { config { name: 'a' base_path: '/x' model_version_policy "
         "{ latest { num_versions: 0 } } } }",
         "out of range"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sv_model_config *m = NULL;
        size_t n = 0;
        struct veil_errbuf eb = {{0}};
        veil_arena_init(&A, 4096, 1 << 20);
        veil_err rc =
            veil__serve_parse_model_config(veil_span_from_str(bad[i][0]), &A, &m, &n, &eb);
        veil_arena_release(&A);
        if (rc == VEIL_OK)
            HFAIL("accepted: %s", bad[i][0]);
        ASSERT_STR_CONTAINS(eb.msg, bad[i][1]);
    }
}

TEST(batching_parameters)
{
    struct sv_batching b;
    struct veil_errbuf eb = {{0}};
    veil_arena_init(&A, 4096, 1 << 20);
    ASSERT_OK(veil__serve_parse_batching(
        veil_span_from_str("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 500 }\n"
                           "max_enqueued_batches { value: 3 }\nnum_batch_threads { value: 2 }\n"
                           "allowed_batch_sizes: 16\nallowed_batch_sizes: 64\n"
                           "pad_variable_length_inputs: false\n"),
        &A, &b, &eb));
    ASSERT_EQ_I64(b.max_batch_size, 64);
    ASSERT_EQ_I64(b.batch_timeout_micros, 500);
    ASSERT_EQ_I64(b.max_enqueued_batches, 3);
    ASSERT_EQ_I64(b.num_batch_threads, 2);
    ASSERT_EQ_U64(b.n_allowed, 2);
    ASSERT_OK(veil__serve_parse_batching(veil_span_from_str(""), &A, &b, &eb));
    ASSERT_EQ_I64(b.max_batch_size, 1000);
    ASSERT_EQ_I64(b.batch_timeout_micros, 0);
    ASSERT_EQ_I64(b.max_enqueued_batches, 10);
    ASSERT_ERR(
        veil__serve_parse_batching(
            veil_span_from_str("max_batch_size { value: 8 } allowed_batch_sizes: 4"), &A, &b, &eb),
        VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(eb.msg, "must equal max_batch_size");
    ASSERT_ERR(veil__serve_parse_batching(veil_span_from_str("allowed_batch_sizes: 4 "
                                                             "allowed_batch_sizes: 2"),
                                          &A, &b, &eb),
               VEIL_E_FORMAT);
    ASSERT_ERR(
        veil__serve_parse_batching(veil_span_from_str("max_batch { value: 8 }"), &A, &b, &eb),
        VEIL_E_FORMAT);
    veil_arena_release(&A);
}

TEST(ssl_and_monitoring_configs)
{
    struct sv_ssl s;
    struct sv_monitoring m;
    struct veil_errbuf eb = {{0}};
    veil_arena_init(&A, 4096, 1 << 20);
    ASSERT_OK(veil__serve_parse_ssl(
        veil_span_from_str("server_key: \"-----BEGIN PRIVATE KEY-----\\nAB\\n\"\n"
                           "server_cert: 'C'\ncustom_ca: \"D\"\nclient_verify: true\n"),
        &A, &s, &eb));
    ASSERT_TRUE(veil_span_eq_str(s.server_key, "-----BEGIN PRIVATE KEY-----\nAB\n"));
    ASSERT_TRUE(veil_span_eq_str(s.server_cert, "C"));
    ASSERT_TRUE(veil_span_eq_str(s.custom_ca, "D"));
    ASSERT_TRUE(s.client_verify);
    ASSERT_ERR(veil__serve_parse_ssl(veil_span_from_str("client_verify: maybe"), &A, &s, &eb),
               VEIL_E_FORMAT);
    ASSERT_OK(veil__serve_parse_monitoring(
        veil_span_from_str("prometheus_config { enable: true, path: \"/m\" }"), &A, &m, &eb));
    ASSERT_TRUE(m.enable);
    ASSERT_STR_EQ(m.path, "/m");
    ASSERT_OK(veil__serve_parse_monitoring(veil_span_from_str("prometheus_config { enable: true }"),
                                           &A, &m, &eb));
    ASSERT_STR_EQ(m.path, "/monitoring/prometheus/metrics");
    ASSERT_ERR(veil__serve_parse_monitoring(
                   veil_span_from_str("prometheus_config { path: \"nope\" }"), &A, &m, &eb),
               VEIL_E_FORMAT);
    veil_arena_release(&A);
}

TEST(deep_nesting_is_refused)
{
    char text[400];
    size_t o = 0;
    for (int i = 0; i < 40; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "a{");
    struct tp_node *root = NULL;
    struct veil_errbuf eb = {{0}};
    veil_arena_init(&A, 4096, 1 << 20);
    ASSERT_ERR(veil__serve_tp_parse(veil_span_make(text, o), &A, &root, &eb), VEIL_E_LIMIT);
    veil_arena_release(&A);
}

/*
 * Issue 18, finding 6: names from the config reach paths, logs, JSON and the metrics text, so
 * control characters, '/', '"' and '\' are refused there, and a NUL escape may not cut one.
 */
TEST(model_and_label_names_are_validated)
{
    static const char *const bad[][2] = {
        {"model_config_list { config { name: 'a\\nb' base_path: '/x' } }", "byte 0x0a at offset 1"},
        {"model_config_list { config { name: 'a\\x01' base_path: '/x' } }", "byte 0x01"},
        {"model_config_list { config { name: 'a\\x7f' base_path: '/x' } }", "byte 0x7f"},
        {"model_config_list { config { name: 'a\\tb' base_path: '/x' } }", "byte 0x09"},
        {"model_config_list { config { name: 'a/b' base_path: '/x' } }", "byte 0x2f"},
        {"model_config_list { config { name: 'a\"} 1' base_path: '/x' } }", "byte 0x22"},
        {"model_config_list { config { name: 'a\\\\b' base_path: '/x' } }", "byte 0x5c"},
        {"model_config_list { config { name: 'a\\000b' base_path: '/x' } }", "NUL byte"},
        {"model_config_list { config { name: 'a' base_path: '/x\\000y' } }", "NUL byte"},
        {"model_config_list { config { name: 'a' base_path: '/x' "
         "version_labels { key: 'st\\nable' value: 1 } } }",
         "label name has byte 0x0a"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sv_model_config *m = NULL;
        size_t n = 0;
        struct veil_errbuf eb = {{0}};
        veil_arena_init(&A, 4096, 1 << 20);
        veil_err rc =
            veil__serve_parse_model_config(veil_span_from_str(bad[i][0]), &A, &m, &n, &eb);
        veil_arena_release(&A);
        if (rc == VEIL_OK)
            HFAIL("accepted: %s", bad[i][0]);
        ASSERT_STR_CONTAINS(eb.msg, bad[i][1]);
        ASSERT_TRUE(strchr(eb.msg, '\n') == NULL);
    }
    /* Printable names, spaces and UTF-8 included, still load. */
    struct sv_model_config *m = NULL;
    size_t n = 0;
    struct veil_errbuf eb = {{0}};
    veil_arena_init(&A, 4096, 1 << 20);
    ASSERT_OK(veil__serve_parse_model_config(
        veil_span_from_str("model_config_list { config { name: 'My model-1.2_\xc3\xa9' "
                           "base_path: '/x' } }"),
        &A, &m, &n, &eb));
    ASSERT_STR_EQ(m[0].name, "My model-1.2_\xc3\xa9");
    veil_arena_release(&A);
}

RUN_TESTS()
