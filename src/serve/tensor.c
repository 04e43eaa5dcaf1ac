/*
 * Tensors on the wire: TensorProto to dense engine tensors following TF's Tensor::FromProto
 * (tensor_content wins and must have the exact size, used in place without a copy; typed
 * values fill the rest with the last value, except half_val, whose count must fit the shape),
 * and back with the typed fields TF Serving sends.
 * Also the canonical status helpers shared by both frontends.
 */
#include "serve_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool sv_fail(struct sv_status *st, int code, const char *fmt, ...)
{
    va_list ap;
    st->code = code;
    va_start(ap, fmt);
    int n = vsnprintf(st->msg, SV_MSG_MAX + 1, fmt, ap);
    va_end(ap);
    if (n > SV_MSG_MAX)
        memcpy(st->msg + SV_MSG_MAX, "...TRUNCATED", 13);
    return false;
}

int sv_http_status(int code)
{
    static const int map[] = {200, 499, 500, 400, 504, 404, 409, 403, 429,
                              400, 409, 400, 501, 500, 503, 500, 401};
    if (code < 0 || (size_t)code >= sizeof(map) / sizeof(map[0]))
        return 500;
    return map[code];
}

int veil__serve_code_of(veil_err rc)
{
    switch (rc) {
    case VEIL_OK:
        return VEIL_GRPC_OK;
    case VEIL_E_INVALID:
    case VEIL_E_FORMAT:
    case VEIL_E_MISMATCH:
        return VEIL_GRPC_INVALID_ARGUMENT;
    case VEIL_E_NOTFOUND:
        return VEIL_GRPC_NOT_FOUND;
    case VEIL_E_UNSUPPORTED:
        return VEIL_GRPC_UNIMPLEMENTED;
    case VEIL_E_LIMIT:
    case VEIL_E_NOMEM:
        return VEIL_GRPC_RESOURCE_EXHAUSTED;
    case VEIL_E_TIMEOUT:
    case VEIL_E_EXPIRED:
        return VEIL_GRPC_DEADLINE_EXCEEDED;
    case VEIL_E_UNAVAILABLE:
        return VEIL_GRPC_UNAVAILABLE;
    case VEIL_E_CANCELLED:
        return VEIL_GRPC_CANCELLED;
    case VEIL_E_PERM:
    case VEIL_E_AUTH:
    case VEIL_E_REJECTED:
        return VEIL_GRPC_PERMISSION_DENIED;
    case VEIL_E_STATE:
        return VEIL_GRPC_FAILED_PRECONDITION;
    default:
        return VEIL_GRPC_INTERNAL;
    }
}

int veil__serve_run_code_of(veil_err rc)
{
    switch (rc) {
    case VEIL_E_INVALID:
    case VEIL_E_FORMAT:
    case VEIL_E_MISMATCH:
    case VEIL_E_LIMIT:
    case VEIL_E_NOMEM:
    case VEIL_E_TIMEOUT:
    case VEIL_E_EXPIRED:
    case VEIL_E_UNAVAILABLE:
    case VEIL_E_CANCELLED:
        return veil__serve_code_of(rc);
    default:
        return VEIL_GRPC_INTERNAL;
    }
}

int veil__serve_tf_dtype(enum veil_dtype dt)
{
    switch (dt) {
    case VEIL_DT_FLOAT:
        return TF_DT_FLOAT;
    case VEIL_DT_UINT8:
        return TF_DT_UINT8;
    case VEIL_DT_INT8:
        return TF_DT_INT8;
    case VEIL_DT_UINT16:
        return TF_DT_UINT16;
    case VEIL_DT_INT16:
        return TF_DT_INT16;
    case VEIL_DT_INT32:
        return TF_DT_INT32;
    case VEIL_DT_INT64:
        return TF_DT_INT64;
    case VEIL_DT_STRING:
        return TF_DT_STRING;
    case VEIL_DT_BOOL:
        return TF_DT_BOOL;
    case VEIL_DT_FLOAT16:
        return TF_DT_HALF;
    case VEIL_DT_BFLOAT16:
        return TF_DT_BFLOAT16;
    case VEIL_DT_DOUBLE:
        return TF_DT_DOUBLE;
    case VEIL_DT_UINT32:
        return TF_DT_UINT32;
    case VEIL_DT_UINT64:
        return TF_DT_UINT64;
    default:
        return TF_DT_INVALID;
    }
}

enum veil_dtype veil_serve_engine_dtype(int tf)
{
    switch (tf) {
    case TF_DT_FLOAT:
        return VEIL_DT_FLOAT;
    case TF_DT_UINT8:
        return VEIL_DT_UINT8;
    case TF_DT_INT8:
        return VEIL_DT_INT8;
    case TF_DT_UINT16:
        return VEIL_DT_UINT16;
    case TF_DT_INT16:
        return VEIL_DT_INT16;
    case TF_DT_INT32:
        return VEIL_DT_INT32;
    case TF_DT_INT64:
        return VEIL_DT_INT64;
    case TF_DT_STRING:
        return VEIL_DT_STRING;
    case TF_DT_BOOL:
        return VEIL_DT_BOOL;
    case TF_DT_HALF:
        return VEIL_DT_FLOAT16;
    case TF_DT_BFLOAT16:
        return VEIL_DT_BFLOAT16;
    case TF_DT_DOUBLE:
        return VEIL_DT_DOUBLE;
    case TF_DT_UINT32:
        return VEIL_DT_UINT32;
    case TF_DT_UINT64:
        return VEIL_DT_UINT64;
    default:
        return VEIL_DT_UNDEFINED;
    }
}

const char *veil__serve_tf_dtype_name(int tf)
{
    static const char *const names[] = {
        "DT_INVALID",    "DT_FLOAT",  "DT_DOUBLE",    "DT_INT32",   "DT_UINT8",   "DT_INT16",
        "DT_INT8",       "DT_STRING", "DT_COMPLEX64", "DT_INT64",   "DT_BOOL",    "DT_QINT8",
        "DT_QUINT8",     "DT_QINT32", "DT_BFLOAT16",  "DT_QINT16",  "DT_QUINT16", "DT_UINT16",
        "DT_COMPLEX128", "DT_HALF",   "DT_RESOURCE",  "DT_VARIANT", "DT_UINT32",  "DT_UINT64"};
    if (tf < 0 || (size_t)tf >= sizeof(names) / sizeof(names[0]))
        return "DT_INVALID";
    return names[tf];
}

const char *veil__serve_tf_dtype_short(int tf)
{
    static const char *const names[] = {
        "INVALID",   "float",  "double",     "int32", "uint8",    "int16",   "int8",     "string",
        "complex64", "int64",  "bool",       "qint8", "quint8",   "qint32",  "bfloat16", "qint16",
        "quint16",   "uint16", "complex128", "half",  "resource", "variant", "uint32",   "uint64"};
    if (tf < 0 || (size_t)tf >= sizeof(names) / sizeof(names[0]))
        return "unknown type";
    return names[tf];
}

/* ---- protobuf-c allocation from a request arena ---- */

/* protobuf-c initialises everything it allocates (its default allocator is malloc), so the
 * arena need not zero a 600 KB tensor_content before protobuf-c copies it in. */
static void *pb_alloc(void *ud, size_t size)
{
    void *p = NULL;
    if (veil_arena_alloc_uninit(ud, size, 64, &p) != VEIL_OK)
        return NULL;
    return p;
}

static void pb_free(void *ud, void *p)
{
    (void)ud;
    (void)p;
}

void veil__serve_pb_allocator(struct veil_arena *a, ProtobufCAllocator *out)
{
    out->alloc = pb_alloc;
    out->free = pb_free;
    out->allocator_data = a;
}

/* ---- TensorProto -> tensor ---- */

#define FILL(field, n_field, ctype, conv)                                                          \
    do {                                                                                           \
        ctype *d_ = (ctype *)data;                                                                 \
        for (uint64_t i_ = 0; i_ < numel; i_++) {                                                  \
            size_t k_ = i_ < tp->n_field ? (size_t)i_ : tp->n_field - 1;                           \
            d_[i_] = (ctype)(conv(tp->field[k_]));                                                 \
        }                                                                                          \
    } while (0)
#define ID(x) (x)
#define BOOLV(x) ((x) ? 1 : 0)

bool veil__serve_tensor_from_proto(const Tensorflow__TensorProto *tp, const struct sv_tinfo *ti,
                                   struct veil_arena *a, struct veil_tensor *out,
                                   struct sv_status *st)
{
    memset(out, 0, sizeof(*out));
    int tf = (int)tp->dtype;
    enum veil_dtype dt = veil_serve_engine_dtype(tf);
    if (dt == VEIL_DT_UNDEFINED)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "tensor parsing error: %s (dtype %d)",
                       ti->name, tf);
    if (tf != ti->tf_dtype)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "Expects arg[%s] to be %s but %s is provided", ti->name,
                       veil__serve_tf_dtype_short(ti->tf_dtype), veil__serve_tf_dtype_short(tf));
    if (dt == VEIL_DT_STRING)
        return sv_fail(st, VEIL_GRPC_UNIMPLEMENTED, "string tensors are not supported: %s",
                       ti->name);
    const Tensorflow__TensorShapeProto *sh = tp->tensor_shape;
    size_t rank = sh != NULL ? sh->n_dim : 0;
    if (sh != NULL && sh->unknown_rank)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "tensor parsing error: %s", ti->name);
    if (rank > VEIL_LIMIT_TENSOR_RANK)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "tensor parsing error: %s", ti->name);
    out->dtype = dt;
    out->rank = rank;
    for (size_t i = 0; i < rank; i++) {
        if (sh->dim[i] == NULL || sh->dim[i]->size < 0)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "tensor parsing error: %s", ti->name);
        out->dims[i] = sh->dim[i]->size;
    }
    uint64_t numel = 0;
    if (veil_tensor_numel(out->dims, rank, &numel) != VEIL_OK)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "tensor parsing error: %s", ti->name);
    size_t es = veil_dtype_size(dt);
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, (uint64_t)es, &nbytes) || nbytes > SV_REQ_ARENA_MAX)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "tensor parsing error: %s", ti->name);
    out->nbytes = (size_t)nbytes;
    if (tp->tensor_content.len > 0) {
        if (tp->tensor_content.len != nbytes)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "tensor parsing error: %s (tensor_content holds %zu bytes; %llu "
                           "elements of %s need %llu)",
                           ti->name, tp->tensor_content.len, (unsigned long long)numel,
                           veil__serve_tf_dtype_short(tf), (unsigned long long)nbytes);
        out->data = tp->tensor_content.data;
        return true;
    }
    /*
     * half_val carries float16 and bfloat16 as 16-bit patterns. TF copies the first values and
     * repeats the last; here the count must be 0 (zeros), 1 (one value for every element, TF's
     * scalar broadcast) or exactly the element count, since any other count is a client's
     * mistake that repetition would turn into wrong numbers silently.
     */
    if ((dt == VEIL_DT_FLOAT16 || dt == VEIL_DT_BFLOAT16) && tp->n_half_val > 1 &&
        tp->n_half_val != numel)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "tensor parsing error: %s (half_val holds %zu values; its shape has %llu "
                       "elements: send that many, or one value for all)",
                       ti->name, tp->n_half_val, (unsigned long long)numel);
    for (size_t i = 0; (dt == VEIL_DT_FLOAT16 || dt == VEIL_DT_BFLOAT16) && i < tp->n_half_val; i++)
        if (tp->half_val[i] < INT16_MIN || tp->half_val[i] > UINT16_MAX)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "tensor parsing error: %s (half_val[%zu] is %d, not a 16-bit pattern)",
                           ti->name, i, (int)tp->half_val[i]);
    void *data = NULL;
    if (veil_arena_alloc(a, nbytes > 0 ? (size_t)nbytes : 1, 64, &data) != VEIL_OK)
        return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "tensor too large: %s", ti->name);
    out->data = data;
    if (numel == 0)
        return true;
    /* No values: zeros (already zeroed by the arena). */
    switch (dt) {
    case VEIL_DT_FLOAT:
        if (tp->n_float_val > 0)
            FILL(float_val, n_float_val, float, ID);
        break;
    case VEIL_DT_DOUBLE:
        if (tp->n_double_val > 0)
            FILL(double_val, n_double_val, double, ID);
        break;
    case VEIL_DT_INT32:
        if (tp->n_int_val > 0)
            FILL(int_val, n_int_val, int32_t, ID);
        break;
    case VEIL_DT_INT16:
        if (tp->n_int_val > 0)
            FILL(int_val, n_int_val, int16_t, ID);
        break;
    case VEIL_DT_INT8:
        if (tp->n_int_val > 0)
            FILL(int_val, n_int_val, int8_t, ID);
        break;
    case VEIL_DT_UINT8:
        if (tp->n_int_val > 0)
            FILL(int_val, n_int_val, uint8_t, ID);
        break;
    case VEIL_DT_UINT16:
        if (tp->n_int_val > 0)
            FILL(int_val, n_int_val, uint16_t, ID);
        break;
    case VEIL_DT_INT64:
        if (tp->n_int64_val > 0)
            FILL(int64_val, n_int64_val, int64_t, ID);
        break;
    case VEIL_DT_UINT32:
        if (tp->n_uint32_val > 0)
            FILL(uint32_val, n_uint32_val, uint32_t, ID);
        break;
    case VEIL_DT_UINT64:
        if (tp->n_uint64_val > 0)
            FILL(uint64_val, n_uint64_val, uint64_t, ID);
        break;
    case VEIL_DT_BOOL:
        if (tp->n_bool_val > 0)
            FILL(bool_val, n_bool_val, uint8_t, BOOLV);
        break;
    case VEIL_DT_FLOAT16:
    case VEIL_DT_BFLOAT16:
        /* The low 16 bits: a pattern sent sign-extended (as a Java short) reads the same. */
        if (tp->n_half_val > 0)
            FILL(half_val, n_half_val, uint16_t, ID);
        break;
    default:
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "tensor parsing error: %s", ti->name);
    }
    return true;
}

/* ---- tensor -> TensorProto ---- */

bool veil__serve_tensor_to_proto(const struct veil_tensor *t, struct veil_arena *a,
                                 Tensorflow__TensorProto *tp, struct sv_status *st)
{
    Tensorflow__TensorShapeProto *sh = NULL;
    Tensorflow__TensorShapeProto__Dim *dims = NULL;
    Tensorflow__TensorShapeProto__Dim **dimp = NULL;
    uint64_t numel = 0;
    int tf = veil__serve_tf_dtype(t->dtype);
    if (tf == TF_DT_INVALID || t->dtype == VEIL_DT_STRING)
        return sv_fail(st, VEIL_GRPC_INTERNAL, "output dtype %s cannot be returned",
                       veil_dtype_name(t->dtype));
    if (veil_tensor_numel(t->dims, t->rank, &numel) != VEIL_OK ||
        numel * veil_dtype_size(t->dtype) != t->nbytes)
        return sv_fail(st, VEIL_GRPC_INTERNAL, "output tensor has an inconsistent size");
    if (veil_arena_alloc(a, sizeof(*sh), 8, (void **)&sh) != VEIL_OK ||
        (t->rank > 0 &&
         (veil_arena_allocarray(a, t->rank, sizeof(*dims), 8, (void **)&dims) != VEIL_OK ||
          veil_arena_allocarray(a, t->rank, sizeof(*dimp), 8, (void **)&dimp) != VEIL_OK)))
        return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    tensorflow__tensor_shape_proto__init(sh);
    for (size_t i = 0; i < t->rank; i++) {
        tensorflow__tensor_shape_proto__dim__init(&dims[i]);
        dims[i].size = t->dims[i];
        dimp[i] = &dims[i];
    }
    sh->n_dim = t->rank;
    sh->dim = dimp;
    tp->dtype = (Tensorflow__DataType)tf;
    tp->tensor_shape = sh;
    size_t n = (size_t)numel;
    void *conv = NULL;
    switch (t->dtype) {
    case VEIL_DT_FLOAT:
        tp->n_float_val = n;
        tp->float_val = t->data;
        return true;
    case VEIL_DT_DOUBLE:
        tp->n_double_val = n;
        tp->double_val = t->data;
        return true;
    case VEIL_DT_INT32:
        tp->n_int_val = n;
        tp->int_val = t->data;
        return true;
    case VEIL_DT_INT64:
        tp->n_int64_val = n;
        tp->int64_val = t->data;
        return true;
    case VEIL_DT_UINT32:
        tp->n_uint32_val = n;
        tp->uint32_val = t->data;
        return true;
    case VEIL_DT_UINT64:
        tp->n_uint64_val = n;
        tp->uint64_val = t->data;
        return true;
    default:
        break;
    }
    size_t esz = t->dtype == VEIL_DT_BOOL ? sizeof(protobuf_c_boolean) : sizeof(int32_t);
    if (veil_arena_allocarray(a, n > 0 ? n : 1, esz, 8, &conv) != VEIL_OK)
        return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    int32_t *iv = conv;
    for (size_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case VEIL_DT_INT16:
            iv[i] = ((const int16_t *)t->data)[i];
            break;
        case VEIL_DT_INT8:
            iv[i] = ((const int8_t *)t->data)[i];
            break;
        case VEIL_DT_UINT8:
            iv[i] = ((const uint8_t *)t->data)[i];
            break;
        case VEIL_DT_UINT16:
        case VEIL_DT_FLOAT16:
        case VEIL_DT_BFLOAT16:
            iv[i] = ((const uint16_t *)t->data)[i];
            break;
        case VEIL_DT_BOOL:
            ((protobuf_c_boolean *)conv)[i] = ((const uint8_t *)t->data)[i] != 0;
            break;
        default:
            break;
        }
    }
    switch (t->dtype) {
    case VEIL_DT_BOOL:
        tp->n_bool_val = n;
        tp->bool_val = conv;
        break;
    case VEIL_DT_FLOAT16:
    case VEIL_DT_BFLOAT16:
        tp->n_half_val = n;
        tp->half_val = conv;
        break;
    default:
        tp->n_int_val = n;
        tp->int_val = conv;
        break;
    }
    return true;
}

bool veil__serve_tensor_check(const struct veil_tensor *t, const struct sv_tinfo *ti,
                              size_t arg_index, struct sv_status *st)
{
    (void)arg_index;
    if (t->dtype != ti->dt)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "Expects arg[%s] to be %s but %s is provided", ti->name,
                       veil__serve_tf_dtype_short(ti->tf_dtype),
                       veil__serve_tf_dtype_short(veil__serve_tf_dtype(t->dtype)));
    bool ok = t->rank == ti->rank;
    for (size_t i = 0; ok && i < t->rank; i++)
        if (ti->dims[i] >= 0 && ti->dims[i] != t->dims[i])
            ok = false;
    if (!ok) {
        char want[160], got[160];
        size_t o = 0;
        want[0] = got[0] = '\0';
        for (size_t i = 0; i < ti->rank && o < sizeof(want) - 24; i++)
            o += (size_t)snprintf(want + o, sizeof(want) - o, "%s%lld", i ? "," : "",
                                  (long long)ti->dims[i]);
        o = 0;
        for (size_t i = 0; i < t->rank && o < sizeof(got) - 24; i++)
            o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%lld", i ? "," : "",
                                  (long long)t->dims[i]);
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "input %s: expected shape [%s] (-1: any size) but got [%s]", ti->name, want,
                       got);
    }
    return true;
}

int veil_serve_tf_dtype(enum veil_dtype dt)
{
    return veil__serve_tf_dtype(dt);
}

const char *veil_serve_tf_dtype_name(int tf)
{
    return veil__serve_tf_dtype_name(tf);
}
