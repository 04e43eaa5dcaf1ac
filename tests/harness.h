/*
 * A small test harness: TEST(name) defines a test, RUN_TESTS() in main runs them all and
 * prints "N passed, N failed". Assertions print both values and fail the current test.
 * Include it from exactly one .c file per test program.
 */
#ifndef VEIL_TEST_HARNESS_H
#define VEIL_TEST_HARNESS_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct harness_test {
    const char *name;
    void (*fn)(void);
};

static struct harness_test harness_tests[256];
static size_t harness_ntests;
static int harness_failed_now;
static int harness_skipped_now;

#define TEST(name)                                                                                 \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void register_##name(void)                                 \
    {                                                                                              \
        if (harness_ntests < sizeof(harness_tests) / sizeof(harness_tests[0]))                     \
            harness_tests[harness_ntests++] = (struct harness_test){#name, test_##name};           \
    }                                                                                              \
    static void test_##name(void)

#define HFAIL(...)                                                                                 \
    do {                                                                                           \
        fprintf(stderr, "  FAIL %s:%d: ", __FILE__, __LINE__);                                     \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        harness_failed_now = 1;                                                                    \
        return;                                                                                    \
    } while (0)

/* Marks the current test skipped with a reason, and returns from it. */
#define SKIP(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "  SKIP: ");                                                               \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        harness_skipped_now = 1;                                                                   \
        return;                                                                                    \
    } while (0)

#define ASSERT_TRUE(c)                                                                             \
    do {                                                                                           \
        if (!(c))                                                                                  \
            HFAIL("expected true: %s", #c);                                                        \
    } while (0)
#define ASSERT_FALSE(c) ASSERT_TRUE(!(c))
#define ASSERT_EQ_U64(a, b)                                                                        \
    do {                                                                                           \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                           \
        if (a_ != b_)                                                                              \
            HFAIL("%s == %s: %" PRIu64 " != %" PRIu64, #a, #b, a_, b_);                            \
    } while (0)
#define ASSERT_EQ_I64(a, b)                                                                        \
    do {                                                                                           \
        int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                                              \
        if (a_ != b_)                                                                              \
            HFAIL("%s == %s: %" PRId64 " != %" PRId64, #a, #b, a_, b_);                            \
    } while (0)
#define ASSERT_STR_EQ(a, b)                                                                        \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                                       \
            HFAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");   \
    } while (0)
#define ASSERT_STR_CONTAINS(hay, needle)                                                           \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (h_ == NULL || strstr(h_, n_) == NULL)                                                  \
            HFAIL("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_);                       \
    } while (0)
#define ASSERT_MEM_EQ(a, b, n)                                                                     \
    do {                                                                                           \
        if (memcmp((a), (b), (n)) != 0)                                                            \
            HFAIL("memory differs: %s vs %s (%zu bytes)", #a, #b, (size_t)(n));                    \
    } while (0)
/* rc must be VEIL_OK; prints the error name otherwise. */
#define ASSERT_OK(expr)                                                                            \
    do {                                                                                           \
        veil_err rc_ = (expr);                                                                     \
        if (rc_ != VEIL_OK)                                                                        \
            HFAIL("%s returned %s", #expr, veil_err_name(rc_));                                    \
    } while (0)
#define ASSERT_ERR(expr, want)                                                                     \
    do {                                                                                           \
        veil_err rc_ = (expr);                                                                     \
        if (rc_ != (want))                                                                         \
            HFAIL("%s returned %s, expected %s", #expr, veil_err_name(rc_), veil_err_name(want));  \
    } while (0)

static int harness_run(int argc, char **argv)
{
    size_t passed = 0, failed = 0, skipped = 0;
    for (size_t i = 0; i < harness_ntests; i++) {
        if (argc > 1 && strcmp(argv[1], harness_tests[i].name) != 0)
            continue;
        harness_failed_now = 0;
        harness_skipped_now = 0;
        harness_tests[i].fn();
        if (harness_failed_now) {
            failed++;
            fprintf(stderr, "not ok - %s\n", harness_tests[i].name);
        } else if (harness_skipped_now) {
            skipped++;
            fprintf(stderr, "skip   - %s\n", harness_tests[i].name);
        } else {
            passed++;
            fprintf(stderr, "ok     - %s\n", harness_tests[i].name);
        }
    }
    printf("%zu passed, %zu failed, %zu skipped\n", passed, failed, skipped);
    return failed == 0 ? 0 : 1;
}

#define RUN_TESTS()                                                                                \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        return harness_run(argc, argv);                                                            \
    }

#endif
