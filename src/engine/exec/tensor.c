/*
 * Tensor views and element types: element counts, broadcasting, reading and writing one
 * element of any numeric dtype as int64 or double, axis and index checks shared by the
 * operator families, and the large aligned allocations activation arenas and reordered weights
 * live in, and the public veil_tensor_release and veil_tensor_numel. Nothing here allocates
 * except veil__engine_big_alloc, and nothing keeps state.
 */
#include "engine_int.h"

#include <string.h>
#include <sys/mman.h>

void veil_tensor_release(struct veil_tensor *t)
{
    if (t == NULL)
        return;
    veil_aligned_free(t->data);
    memset(t, 0, sizeof(*t));
}

veil_err veil_tensor_numel(const int64_t *dims, size_t rank, uint64_t *out)
{
    uint64_t n = 1;
    *out = 0;
    if (rank > VEIL_LIMIT_TENSOR_RANK)
        return VEIL_E_LIMIT;
    for (size_t i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return VEIL_E_INVALID;
        if (__builtin_mul_overflow(n, (uint64_t)dims[i], &n))
            return VEIL_E_LIMIT;
    }
    *out = n;
    return VEIL_OK;
}

uint64_t veil__engine_numel(const int64_t *dims, size_t rank)
{
    uint64_t n = 1;
    for (size_t i = 0; i < rank; i++)
        n *= (uint64_t)dims[i];
    return n;
}

veil_err veil__engine_broadcast(const struct veil__engine_tv *a, const struct veil__engine_tv *b,
                                size_t *rank, int64_t *dims, struct veil_errbuf *eb)
{
    size_t r = a->rank > b->rank ? a->rank : b->rank;
    for (size_t i = 0; i < r; i++) {
        int64_t da = i + a->rank >= r ? a->dims[i + a->rank - r] : 1;
        int64_t db = i + b->rank >= r ? b->dims[i + b->rank - r] : 1;
        if (da != db && da != 1 && db != 1)
            return veil_errf(eb, VEIL_E_INVALID,
                             "shapes cannot broadcast: dimension %zu is %lld "
                             "and %lld",
                             i, (long long)da, (long long)db);
        dims[i] = da == 1 ? db : da;
    }
    *rank = r;
    return VEIL_OK;
}

/* Float to integer conversions saturate (NaN gives 0): never undefined behaviour. */
static int64_t sat_i64(double v)
{
    if (!(v == v))
        return 0;
    if (v >= 9223372036854775807.0)
        return INT64_MAX;
    if (v <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)v;
}

static int64_t clamp_i(double v, double lo, double hi)
{
    if (!(v == v))
        return 0;
    return v < lo ? (int64_t)lo : v > hi ? (int64_t)hi : (int64_t)v;
}

int64_t veil__engine_get_i64(const struct veil__engine_tv *t, uint64_t i)
{
    switch (t->dt) {
    case VEIL_DT_INT64:
        return ((const int64_t *)t->data)[i];
    case VEIL_DT_INT32:
        return ((const int32_t *)t->data)[i];
    case VEIL_DT_INT16:
        return ((const int16_t *)t->data)[i];
    case VEIL_DT_INT8:
        return ((const int8_t *)t->data)[i];
    case VEIL_DT_UINT8:
    case VEIL_DT_BOOL:
        return ((const uint8_t *)t->data)[i];
    case VEIL_DT_UINT16:
        return ((const uint16_t *)t->data)[i];
    case VEIL_DT_UINT32:
        return ((const uint32_t *)t->data)[i];
    case VEIL_DT_UINT64:
        return (int64_t)((const uint64_t *)t->data)[i];
    case VEIL_DT_FLOAT:
        return sat_i64(((const float *)t->data)[i]);
    case VEIL_DT_DOUBLE:
        return sat_i64(((const double *)t->data)[i]);
    default:
        return 0;
    }
}

bool veil__engine_dt_is_float(enum veil_dtype dt)
{
    return dt == VEIL_DT_FLOAT || dt == VEIL_DT_DOUBLE;
}

bool veil__engine_dt_is_int(enum veil_dtype dt)
{
    switch (dt) {
    case VEIL_DT_INT8:
    case VEIL_DT_INT16:
    case VEIL_DT_INT32:
    case VEIL_DT_INT64:
    case VEIL_DT_UINT8:
    case VEIL_DT_UINT16:
    case VEIL_DT_UINT32:
    case VEIL_DT_UINT64:
        return true;
    default:
        return false;
    }
}

bool veil__engine_dt_is_numeric(enum veil_dtype dt)
{
    return veil__engine_dt_is_float(dt) || veil__engine_dt_is_int(dt);
}

double veil__engine_get_f64(const struct veil__engine_tv *t, uint64_t i)
{
    switch (t->dt) {
    case VEIL_DT_FLOAT:
        return ((const float *)t->data)[i];
    case VEIL_DT_DOUBLE:
        return ((const double *)t->data)[i];
    case VEIL_DT_UINT64:
        return (double)((const uint64_t *)t->data)[i];
    default:
        return (double)veil__engine_get_i64(t, i);
    }
}

void veil__engine_set_f64(struct veil__engine_tv *t, uint64_t i, double v)
{
    switch (t->dt) {
    case VEIL_DT_FLOAT:
        ((float *)t->data)[i] = (float)v;
        break;
    case VEIL_DT_DOUBLE:
        ((double *)t->data)[i] = v;
        break;
    case VEIL_DT_INT64:
        ((int64_t *)t->data)[i] = sat_i64(v);
        break;
    case VEIL_DT_INT32:
        ((int32_t *)t->data)[i] = (int32_t)clamp_i(v, INT32_MIN, INT32_MAX);
        break;
    case VEIL_DT_INT16:
        ((int16_t *)t->data)[i] = (int16_t)clamp_i(v, INT16_MIN, INT16_MAX);
        break;
    case VEIL_DT_INT8:
        ((int8_t *)t->data)[i] = (int8_t)clamp_i(v, INT8_MIN, INT8_MAX);
        break;
    case VEIL_DT_UINT8:
        ((uint8_t *)t->data)[i] = (uint8_t)clamp_i(v, 0, UINT8_MAX);
        break;
    case VEIL_DT_BOOL:
        ((uint8_t *)t->data)[i] = v != 0;
        break;
    case VEIL_DT_UINT16:
        ((uint16_t *)t->data)[i] = (uint16_t)clamp_i(v, 0, UINT16_MAX);
        break;
    case VEIL_DT_UINT32:
        ((uint32_t *)t->data)[i] = (uint32_t)clamp_i(v, 0, UINT32_MAX);
        break;
    case VEIL_DT_UINT64:
        ((uint64_t *)t->data)[i] = !(v > 0)                      ? 0
                                   : v >= 18446744073709551615.0 ? UINT64_MAX
                                                                 : (uint64_t)v;
        break;
    default:
        break;
    }
}

void veil__engine_set_i64(struct veil__engine_tv *t, uint64_t i, int64_t v)
{
    switch (t->dt) {
    case VEIL_DT_FLOAT:
        ((float *)t->data)[i] = (float)v;
        break;
    case VEIL_DT_DOUBLE:
        ((double *)t->data)[i] = (double)v;
        break;
    case VEIL_DT_INT64:
        ((int64_t *)t->data)[i] = v;
        break;
    case VEIL_DT_UINT64:
        ((uint64_t *)t->data)[i] = (uint64_t)v;
        break;
    case VEIL_DT_INT32:
        ((int32_t *)t->data)[i] = (int32_t)v;
        break;
    case VEIL_DT_INT16:
        ((int16_t *)t->data)[i] = (int16_t)v;
        break;
    case VEIL_DT_INT8:
        ((int8_t *)t->data)[i] = (int8_t)v;
        break;
    case VEIL_DT_UINT8:
        ((uint8_t *)t->data)[i] = (uint8_t)v;
        break;
    case VEIL_DT_UINT16:
        ((uint16_t *)t->data)[i] = (uint16_t)v;
        break;
    case VEIL_DT_UINT32:
        ((uint32_t *)t->data)[i] = (uint32_t)v;
        break;
    case VEIL_DT_BOOL:
        ((uint8_t *)t->data)[i] = v != 0;
        break;
    default:
        break;
    }
}

veil_err veil__engine_norm_axis(int64_t axis, size_t rank, size_t *out, struct veil_errbuf *eb)
{
    int64_t r = (int64_t)rank;
    *out = 0;
    if (axis < -r || axis >= r)
        return veil_errf(eb, VEIL_E_INVALID, "axis %lld out of range for rank %zu", (long long)axis,
                         rank);
    *out = (size_t)(axis < 0 ? axis + r : axis);
    return VEIL_OK;
}

veil_err veil__engine_read_ints(const struct veil__engine_tv *t, int64_t *v, size_t cap, size_t *n,
                                struct veil_errbuf *eb)
{
    *n = 0;
    if ((t->dt != VEIL_DT_INT64 && t->dt != VEIL_DT_INT32) || t->rank > 1 || t->numel > cap)
        return veil_errf(eb, VEIL_E_INVALID, "expected at most %zu int64 values", cap);
    for (uint64_t i = 0; i < t->numel; i++)
        v[i] = veil__engine_get_i64(t, i);
    *n = (size_t)t->numel;
    return VEIL_OK;
}

bool veil__engine_has_input(const struct veil__engine_ictx *c, size_t i)
{
    return i < c->n_in && c->n->in[i] >= 0;
}

void veil__engine_strides_of(const int64_t *dims, size_t rank, int64_t *st)
{
    int64_t s = 1;
    for (size_t i = rank; i-- > 0;) {
        st[i] = s;
        s *= dims[i];
    }
}

bool veil__engine_dt_is_index(enum veil_dtype dt)
{
    return dt == VEIL_DT_INT64 || dt == VEIL_DT_INT32;
}

void *veil__engine_big_alloc(size_t size)
{
    const size_t huge = 2u << 20;
    if (size < huge)
        return veil_aligned_alloc(64, size);
    void *p = veil_aligned_alloc(huge, size);
    /* Advice only: failure (no THP support) leaves ordinary pages. */
    if (p != NULL)
        (void)madvise(p, size, MADV_HUGEPAGE);
    return p;
}
