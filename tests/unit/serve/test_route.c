#include "harness.h"
#include "serve_int.h"

static bool route(const char *m, const char *p, struct sv_route *rt)
{
    return veil__serve_rest_route_parse(m, veil_span_from_str(p), rt);
}

TEST(get_paths)
{
    struct sv_route rt;
    ASSERT_TRUE(route("GET", "/v1/models/m", &rt));
    ASSERT_STR_EQ(rt.name, "m");
    ASSERT_FALSE(rt.has_version || rt.has_label || rt.metadata);
    ASSERT_TRUE(route("GET", "/v1/models/m/versions/00012", &rt));
    ASSERT_TRUE(rt.has_version);
    ASSERT_EQ_I64(rt.version, 12);
    ASSERT_TRUE(route("GET", "/V1/Models/My%20Model/LABELS/stable/METADATA", &rt));
    ASSERT_STR_EQ(rt.name, "My Model");
    ASSERT_STR_EQ(rt.label, "stable");
    ASSERT_TRUE(rt.metadata);
    ASSERT_TRUE(route("GET", "/v1/models/m/metadata", &rt));
    ASSERT_TRUE(rt.metadata);
    ASSERT_TRUE(route("GET", "/v1/models", &rt));
    ASSERT_TRUE(rt.missing_name);
    ASSERT_TRUE(route("GET", "/v1/models/m/versions/99999999999999999999", &rt));
    ASSERT_TRUE(rt.version_overflow);
}

TEST(post_paths)
{
    struct sv_route rt;
    ASSERT_TRUE(route("POST", "/v1/models/m:predict", &rt));
    ASSERT_EQ_U64(rt.verb, SV_VERB_PREDICT);
    ASSERT_TRUE(route("POST", "/v1/models/m/versions/3:CLASSIFY", &rt));
    ASSERT_EQ_U64(rt.verb, SV_VERB_CLASSIFY);
    ASSERT_EQ_I64(rt.version, 3);
    ASSERT_TRUE(route("POST", "/v1/models/m/labels/x:regress", &rt));
    ASSERT_EQ_U64(rt.verb, SV_VERB_REGRESS);
    ASSERT_STR_EQ(rt.label, "x");
}

TEST(malformed_paths)
{
    static const char *const bad[][2] = {
        {"POST", "/v1/models/m"},
        {"POST", "/v1/models/m:explain"},
        {"POST", "/v1/models/:predict"},
        {"POST", "/v1/models/m/versions/x:predict"},
        {"POST", "/v1/models/m/version/1:predict"},
        {"POST", "/v1/models/m/versions/-1:predict"},
        {"POST", "/v1/models/m/versions/1/labels/a:predict"},
        {"POST", "/v1/models/m/metadata"},
        {"GET", "/v1/models/m:predict"},
        {"GET", "/v1/models/"},
        {"GET", "/v1/models/m/versions/"},
        {"GET", "/v1/models/m/extra"},
        {"PUT", "/v1/models/m"},
        {"DELETE", "/v1/models/m"},
        {"GET", "/v1/modelsx"},
        {"POST", "/v1/models/m:predict/"},
    };
    struct sv_route rt;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (route(bad[i][0], bad[i][1], &rt))
            HFAIL("accepted %s %s", bad[i][0], bad[i][1]);
}

/*
 * Issue 18, finding 6: /v1/models/a%00b decoded to "a\0b" and served model "a". A decoded
 * control character in a name or label is refused (the REST layer answers 400), not cut.
 */
TEST(control_characters_in_names_are_refused)
{
    struct sv_route rt;
    static const char *const bad[] = {
        "/v1/models/a%00b",          "/v1/models/a%00",          "/v1/models/%0aevil",
        "/v1/models/m%0D%0AX:1",     "/v1/models/m%1f",          "/v1/models/m%7F",
        "/v1/models/m/labels/a%00b", "/v1/models/m/labels/x%0a", "/v1/models/m/labels/%09/metadata",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (route("GET", bad[i], &rt))
            HFAIL("GET %s accepted as model '%s' label '%s'", bad[i], rt.name, rt.label);
    }
    ASSERT_FALSE(route("POST", "/v1/models/a%00b:predict", &rt));
    ASSERT_FALSE(route("POST", "/v1/models/a/labels/b%0a:predict", &rt));
    /* Printable escapes still decode. */
    ASSERT_TRUE(route("GET", "/v1/models/a%20b%2Fc%7e", &rt));
    ASSERT_STR_EQ(rt.name, "a b/c~");
}

RUN_TESTS()
