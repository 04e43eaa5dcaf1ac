/*
 * The strict JSON parser: accepted documents, raw spans kept byte-exact, and every class of
 * malformed input refused without a crash.
 */
#include "veil/json.h"

#include "harness.h"

static veil_err parse(const char *text, struct veil_arena *a, struct veil_json **out)
{
    return veil_json_parse(veil_span_from_str(text), a, out, NULL);
}

TEST(parses_values_and_keeps_raw_bytes)
{
    struct veil_arena a;
    struct veil_json *v = NULL;
    veil_arena_init(&a, 4096, 1u << 20);
    const char *text = " {\"tcbInfo\":{\"a\" : [1, -2.5e3, true, false, null, \"x\\u00e9\\n\"]},"
                       "\"signature\":\"ab\"} ";
    ASSERT_OK(parse(text, &a, &v));
    ASSERT_EQ_U64(v->type, VEIL_JSON_OBJECT);
    const struct veil_json *ti = veil_json_get(v, "tcbInfo");
    ASSERT_TRUE(ti != NULL);
    ASSERT_EQ_U64(ti->raw.len, strlen("{\"a\" : [1, -2.5e3, true, false, null, \"x\\u00e9\\n\"]}"));
    ASSERT_MEM_EQ(ti->raw.p, "{\"a\" : [1,", 10);
    const struct veil_json *arr = veil_json_get(ti, "a");
    ASSERT_EQ_U64(arr->n, 6);
    ASSERT_TRUE(arr->items[0]->is_int);
    ASSERT_EQ_I64(arr->items[0]->i, 1);
    ASSERT_FALSE(arr->items[1]->is_int);
    ASSERT_TRUE(arr->items[1]->num == -2500.0);
    ASSERT_TRUE(arr->items[2]->b);
    ASSERT_EQ_U64(arr->items[4]->type, VEIL_JSON_NULL);
    ASSERT_STR_EQ(arr->items[5]->str, "x\xc3\xa9\n");
    ASSERT_TRUE(veil_json_get(v, "missing") == NULL);
    veil_arena_release(&a);
}

TEST(surrogate_pairs)
{
    struct veil_arena a;
    struct veil_json *v = NULL;
    veil_arena_init(&a, 4096, 1u << 20);
    ASSERT_OK(parse("\"\\ud83d\\ude00\"", &a, &v));
    ASSERT_STR_EQ(v->str, "\xf0\x9f\x98\x80");
    veil_arena_release(&a);
}

TEST(rejects_malformed)
{
    static const char *const bad[] = {
        "",
        "{",
        "[1,]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "01",
        "1.",
        "1e",
        "-",
        "\"abc",
        "\"\\x\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\u0000\"",
        "tru",
        "nul",
        "[1 2]",
        "{\"a\":1,\"a\":2}",
        "1 2",
        "\"\x01\"",
        "\"\xc0\xaf\"",
        "\"\xed\xa0\x80\"",
        "\"\xf5\x80\x80\x80\"",
        "// c\n1",
        "[1]x",
        "\"\xe2\x82\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct veil_arena a;
        struct veil_json *v = NULL;
        veil_arena_init(&a, 4096, 1u << 20);
        veil_err rc = parse(bad[i], &a, &v);
        veil_arena_release(&a);
        if (rc != VEIL_E_FORMAT)
            HFAIL("accepted or wrong error for bad input #%zu (%s)", i, veil_err_name(rc));
    }
}

TEST(depth_limit)
{
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 99);
    deep[199] = '\0';
    struct veil_arena a;
    struct veil_json *v = NULL;
    veil_arena_init(&a, 4096, 1u << 20);
    ASSERT_ERR(parse(deep, &a, &v), VEIL_E_LIMIT);
    veil_arena_release(&a);
}

TEST(arena_cap_is_a_limit)
{
    struct veil_arena a;
    struct veil_json *v = NULL;
    veil_arena_init(&a, 256, 512);
    ASSERT_ERR(parse("[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]", &a, &v), VEIL_E_LIMIT);
    veil_arena_release(&a);
}

RUN_TESTS()
