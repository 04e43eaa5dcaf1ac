/*
 * If guards as a plan records them: the branches that failed to plan at its signature, and
 * the truth of a condition. Used by the planner (exec/plan.c) and by If itself (ops/control.c).
 */
#include "engine_int.h"

const struct veil__engine_branch_fail *
veil__engine_plan_branch_failed(const struct veil__engine_plan *p, int32_t node, uint8_t branch)
{
    for (size_t i = 0; i < p->n_fails; i++)
        if (p->fails[i].node == node && p->fails[i].branch == branch)
            return &p->fails[i];
    return NULL;
}

bool veil__engine_cond_true(const struct veil__engine_tv *t, const void *data)
{
    if (t->numel == 0)
        return false;
    struct veil__engine_tv v = *t;
    v.data = (void *)(uintptr_t)data;
    return v.dt == VEIL_DT_FLOAT || v.dt == VEIL_DT_DOUBLE ? veil__engine_get_f64(&v, 0) != 0.0
                                                           : veil__engine_get_i64(&v, 0) != 0;
}
