#include "harness.h"
#include "veil/json.h"

static struct veil_arena arena;

static struct veil_json *parse(const char *text, veil_err want, struct veil_errbuf *eb)
{
    struct veil_json *v = NULL;
    veil_err rc = veil_json_parse(veil_span_from_str(text), &arena, &v, eb);
    if (rc != want) {
        fprintf(stderr, "  parse(%s) gave %s: %s\n", text, veil_err_name(rc), eb->msg);
        return NULL;
    }
    return rc == VEIL_OK ? v : (struct veil_json *)&arena;
}

TEST(values_and_raw_bytes)
{
    veil_arena_init(&arena, 4096, 1 << 20);
    struct veil_errbuf eb = {{0}};
    struct veil_json *v =
        parse(" {\"a\": [1, -2.5e1, true, null], \"s\": \"x\\u00e9\\n\"} ", VEIL_OK, &eb);
    ASSERT_TRUE(v != NULL);
    ASSERT_EQ_U64(v->type, VEIL_JSON_OBJECT);
    const struct veil_json *a = veil_json_get(v, "a");
    ASSERT_TRUE(a != NULL && a->type == VEIL_JSON_ARRAY && a->n == 4);
    ASSERT_TRUE(a->items[0]->is_int);
    ASSERT_EQ_I64(a->items[0]->i, 1);
    ASSERT_FALSE(a->items[1]->is_int);
    ASSERT_TRUE(a->items[1]->num == -25.0);
    ASSERT_TRUE(a->items[2]->b);
    ASSERT_EQ_U64(a->items[3]->type, VEIL_JSON_NULL);
    ASSERT_STR_EQ(veil_json_get_str(v, "s"), "x\xc3\xa9\n");
    ASSERT_TRUE(veil_json_get_str(v, "a") == NULL);
    ASSERT_TRUE(veil_json_get(v, "missing") == NULL);
    ASSERT_TRUE(veil_span_eq_str(a->raw, "[1, -2.5e1, true, null]"));
    veil_arena_release(&arena);
}

TEST(strictness)
{
    static const char *bad[] = {"",        "{",   "[1,]",     "{\"a\":1,}",    "{\"a\":1,\"a\":2}",
                                "01",      "1.",  "\"\\x\"",  "\"a\\u0000b\"", "[1] x",
                                "{'a':1}", "tru", "\"\xc3\"", "NaN",           "// c\n1"};
    veil_arena_init(&arena, 4096, 1 << 20);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct veil_errbuf eb = {{0}};
        struct veil_json *v = NULL;
        veil_err rc = veil_json_parse(veil_span_from_str(bad[i]), &arena, &v, &eb);
        if (rc == VEIL_OK || v != NULL)
            HFAIL("accepted bad JSON #%zu: %s", i, bad[i]);
        if (eb.msg[0] == '\0')
            HFAIL("no message for bad JSON #%zu", i);
    }
    veil_arena_release(&arena);
}

TEST(depth_and_arena_limits)
{
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    struct veil_json *v = NULL;
    struct veil_errbuf eb = {{0}};
    veil_arena_init(&arena, 4096, 1 << 20);
    ASSERT_ERR(veil_json_parse(veil_span_make(deep, sizeof(deep)), &arena, &v, &eb), VEIL_E_LIMIT);
    veil_arena_release(&arena);
    veil_arena_init(&arena, 256, 512);
    ASSERT_ERR(veil_json_parse(veil_span_from_str("[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]"),
                               &arena, &v, &eb),
               VEIL_E_LIMIT);
    veil_arena_release(&arena);
}

TEST(writer_escapes)
{
    struct veil_buf b;
    veil_buf_init(&b, 100);
    ASSERT_OK(veil_json_append_str(&b, veil_span_make("a\"b\\c\n\x01", 7)));
    ASSERT_STR_EQ((const char *)b.p, "\"a\\\"b\\\\c\\u000a\\u0001\"");
    struct veil_json *v = NULL;
    veil_arena_init(&arena, 4096, 1 << 20);
    ASSERT_OK(veil_json_parse(veil_buf_span(&b), &arena, &v, NULL));
    ASSERT_EQ_U64(v->str_len, 7);
    ASSERT_MEM_EQ(v->str, "a\"b\\c\n\x01", 7);
    veil_arena_release(&arena);
    veil_buf_release(&b);
}

RUN_TESTS()
