/*
 * The operator registry of ops/registry.c: rows sorted by name with no duplicates, counts that
 * form ranges, kernels where a row needs them (an infer for every loadable row, an exec for
 * every row that is not a view, none for the Upsample row that ir/legacy.c rewrites), value
 * inputs that exist, and lookups by name and by index that agree with the table.
 */
#include "harness.h"

#include "engine_int.h"

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
        ASSERT_TRUE(op->infer != NULL);
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
        if (op->infer == NULL) {
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

RUN_TESTS()
