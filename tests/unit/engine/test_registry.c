/*
 * The operator registry of ops/registry.c: rows sorted by name with no duplicates, counts that
 * form ranges, kernels where a row needs them (an infer for every loadable row, an exec for
 * every row that is not a view, none for the Upsample row that ir/legacy.c rewrites), value
 * inputs that exist, and lookups by name and by index that agree with the table; and the
 * operator table of docs/engine.md, which must list the same rows in the same order with the
 * same input and output counts.
 */
#include "harness.h"

#include "engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TEST(rows_sorted_and_unique)
{
    ASSERT_TRUE(veil__engine_op_count() > 100);
    for (size_t i = 1; i < veil__engine_op_count(); i++)
        if (strcmp(veil__engine_op_at(i - 1)->name, veil__engine_op_at(i)->name) >= 0) {
            fprintf(stderr, "rows %zu and %zu: %s before %s\n", i - 1, i,
                    veil__engine_op_at(i - 1)->name, veil__engine_op_at(i)->name);
            ASSERT_TRUE(false);
        }
}

TEST(rows_consistent)
{
    for (size_t i = 0; i < veil__engine_op_count(); i++) {
        const struct veil__engine_op_def *op = veil__engine_op_at(i);
        ASSERT_TRUE(op->name != NULL && op->name[0] != '\0');
        ASSERT_TRUE(op->min_in <= op->max_in);
        ASSERT_TRUE(op->min_out >= 1 && op->min_out <= op->max_out);
        /* Inputs that decide shapes are inputs the operator can have. */
        ASSERT_TRUE(op->max_in >= 32 || (op->shape_inputs >> op->max_in) == 0);
        if (op->max_opset != 0) {
            /* Rewritten before planning: nothing to run. */
            ASSERT_TRUE(op->infer == NULL && op->prepare == NULL && op->exec == NULL);
            continue;
        }
        if (op->plan_step != NULL) {
            /* Control flow: planned and run by its own hooks, never through kernels. */
            ASSERT_TRUE(op->run_step != NULL && op->infer == NULL && op->exec == NULL);
            continue;
        }
        ASSERT_TRUE(op->infer != NULL && op->run_step == NULL);
        /* Only views compute nothing. */
        ASSERT_TRUE(op->exec != NULL || op->view);
    }
}

TEST(lookups_agree)
{
    for (size_t i = 0; i < veil__engine_op_count(); i++) {
        const struct veil__engine_op_def *op = veil__engine_op_at(i);
        ASSERT_TRUE(veil__engine_op_find(op->name) == op);
        int k = veil__engine_op_index(op->name);
        if (op->infer == NULL && op->plan_step == NULL) {
            ASSERT_EQ_I64(k, -1);
            continue;
        }
        ASSERT_EQ_I64(k, (int64_t)i);
        ASSERT_TRUE(veil__engine_op_get(k) == op);
        ASSERT_TRUE(veil__engine_op_known(op->name, 7) && veil__engine_op_known(op->name, 17));
    }
    ASSERT_TRUE(veil__engine_op_find("NoSuchOperator") == NULL);
    ASSERT_EQ_I64(veil__engine_op_index("NoSuchOperator"), -1);
    ASSERT_FALSE(veil__engine_op_known("NoSuchOperator", 13));
    ASSERT_TRUE(veil__engine_op_find("conv") == NULL); /* names are case-sensitive */
}

TEST(upsample_only_before_opset_10)
{
    ASSERT_TRUE(veil__engine_op_known("Upsample", 7));
    ASSERT_TRUE(veil__engine_op_known("Upsample", 9));
    ASSERT_FALSE(veil__engine_op_known("Upsample", 10));
    ASSERT_FALSE(veil__engine_op_known("Upsample", 13));
    ASSERT_EQ_I64(veil__engine_op_index("Upsample"), -1);
}

/* A count range as the table writes it: "1", "1-3", or "1 or more" (no upper bound). */
static void fmt_range(char *buf, size_t cap, unsigned lo, unsigned hi)
{
    if (lo == hi)
        snprintf(buf, cap, "%u", lo);
    else if (hi == 255)
        snprintf(buf, cap, "%u or more", lo);
    else
        snprintf(buf, cap, "%u-%u", lo, hi);
}

/* Copies table cell k (0-based) of a "| a | b | ... |" line into out, trimmed. */
static bool cell(const char *line, size_t k, char *out, size_t cap)
{
    const char *p = strchr(line, '|');
    for (size_t i = 0; p != NULL && i < k; i++)
        p = strchr(p + 1, '|');
    if (p == NULL)
        return false;
    const char *e = strchr(p + 1, '|');
    if (e == NULL)
        return false;
    p++;
    while (p < e && *p == ' ')
        p++;
    while (e > p && e[-1] == ' ')
        e--;
    if ((size_t)(e - p) >= cap)
        return false;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return true;
}

TEST(docs_table_matches)
{
    const char *src = getenv("VEIL_SRC");
    ASSERT_TRUE(src != NULL);
    char path[4096];
    snprintf(path, sizeof(path), "%s/docs/engine.md", src);
    FILE *f = fopen(path, "r");
    ASSERT_TRUE(f != NULL);
    char line[1024];
    bool in_table = false;
    size_t row = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (!in_table) {
            in_table = strncmp(line, "| operator | inputs | outputs |", 31) == 0;
            continue;
        }
        if (strncmp(line, "|---", 4) == 0)
            continue;
        if (line[0] != '|')
            break;
        char name[64], ins[32], outs[32], want_in[32], want_out[32];
        ASSERT_TRUE(cell(line, 0, name, sizeof(name)) && cell(line, 1, ins, sizeof(ins)) &&
                    cell(line, 2, outs, sizeof(outs)));
        ASSERT_TRUE(row < veil__engine_op_count());
        const struct veil__engine_op_def *op = veil__engine_op_at(row);
        fmt_range(want_in, sizeof(want_in), op->min_in, op->max_in);
        fmt_range(want_out, sizeof(want_out), op->min_out, op->max_out);
        ASSERT_STR_EQ(name, op->name);
        ASSERT_STR_EQ(ins, want_in);
        ASSERT_STR_EQ(outs, want_out);
        row++;
    }
    fclose(f);
    ASSERT_TRUE(in_table);
    ASSERT_EQ_U64(row, veil__engine_op_count());
}

RUN_TESTS()
