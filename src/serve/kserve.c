/*
 * KServe v2 / Open Inference Protocol: the parts both frontends share. Datatype names, version
 * strings, the /v2 URL grammar, the REST inference body (JSON plus the binary tensor extension:
 * Inference-Header-Content-Length, binary_data_size, binary_data, binary_data_output), binding a
 * request to a model's signature, and the REST response. The parsers are pure functions over
 * untrusted bytes: every size comes through the checked span readers, is overflow-checked and
 * capped by SV_REQ_ARENA_MAX, and every refusal is INVALID_ARGUMENT with a message naming what
 * was wrong (../shared/reference/kserve-v2.md is the contract).
 */
#include "serve_int.h"

#include <stdio.h>
#include <string.h>

/* ---- Datatypes and versions ---- */

static const struct {
    const char *name;
    enum veil_dtype dt;
} dtypes[] = {
    {"BOOL", VEIL_DT_BOOL},     {"UINT8", VEIL_DT_UINT8},   {"UINT16", VEIL_DT_UINT16},
    {"UINT32", VEIL_DT_UINT32}, {"UINT64", VEIL_DT_UINT64}, {"INT8", VEIL_DT_INT8},
    {"INT16", VEIL_DT_INT16},   {"INT32", VEIL_DT_INT32},   {"INT64", VEIL_DT_INT64},
    {"FP16", VEIL_DT_FLOAT16},  {"FP32", VEIL_DT_FLOAT},    {"FP64", VEIL_DT_DOUBLE},
    {"BYTES", VEIL_DT_STRING},  {"BF16", VEIL_DT_BFLOAT16},
};

const char *veil__serve_kv2_dtype_name(enum veil_dtype dt)
{
    for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
        if (dtypes[i].dt == dt)
            return dtypes[i].name;
    return NULL;
}

enum veil_dtype veil__serve_kv2_dtype_parse(struct veil_span name)
{
    for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
        if (veil_span_eq_str(name, dtypes[i].name))
            return dtypes[i].dt;
    return VEIL_DT_UNDEFINED;
}

bool veil__serve_kv2_version(const char *s, bool *has, int64_t *version)
{
    *has = false;
    *version = 0;
    if (s == NULL || s[0] == '\0')
        return true;
    struct veil_span d = veil_span_from_str(s);
    for (size_t i = 0; i < d.len; i++)
        if (d.p[i] < '0' || d.p[i] > '9')
            return false;
    if (!veil__serve_json_i64(d, version))
        return false;
    *has = true;
    return true;
}

/* ---- URL grammar ---- */

bool veil__serve_kv2_route_parse(struct veil_span path, struct kv2_route *rt)
{
    struct veil_span s = path, seg[5];
    size_t n = 0;
    memset(rt, 0, sizeof(*rt));
    if (veil_span_eq_str(s, "/v2") || veil_span_eq_str(s, "/v2/")) {
        rt->op = KV2_SERVER_META;
        return true;
    }
    if (veil_span_eq_str(s, "/v2/health/live")) {
        rt->op = KV2_LIVE;
        return true;
    }
    if (veil_span_eq_str(s, "/v2/health/ready")) {
        rt->op = KV2_READY;
        return true;
    }
    if (!veil_span_starts_with(s, "/v2/models/"))
        return false;
    sv_skip(&s, strlen("/v2/models/"));
    /* NAME [/versions/V] [/ready | /infer]: at most 4 segments, none empty. */
    while (n < 5) {
        if (veil_span_get_until(&s, '/', &seg[n]) != VEIL_OK) {
            seg[n++] = s;
            break;
        }
        n++;
    }
    if (n == 5)
        return false;
    for (size_t i = 0; i < n; i++)
        if (seg[i].len == 0)
            return false;
    if (seg[0].len == 0 || !veil__serve_path_unescape(seg[0], rt->name, sizeof(rt->name)))
        return false;
    size_t i = 1;
    if (n >= 3 && veil_span_eq_str(seg[1], "versions")) {
        snprintf(rt->version, sizeof(rt->version), "%.*s", (int)(seg[2].len > 31 ? 31 : seg[2].len),
                 (const char *)seg[2].p);
        if (seg[2].len > 31)
            rt->version[0] = 'x'; /* cut: make sure it cannot parse as a version */
        i = 3;
    }
    if (i == n) {
        rt->op = KV2_MODEL_META;
        return true;
    }
    if (i + 1 != n)
        return false;
    if (veil_span_eq_str(seg[i], "ready"))
        rt->op = KV2_MODEL_READY;
    else if (veil_span_eq_str(seg[i], "infer"))
        rt->op = KV2_INFER;
    else
        return false;
    return true;
}

/* ---- Versions of a model ---- */

void veil__serve_kv2_versions(struct sv_repo *r, const char *name, int64_t *out, size_t cap,
                              size_t *n, bool *known)
{
    struct sv_version_status vs[64];
    struct sv_status st;
    size_t nv = 0;
    *n = 0;
    *known = veil__serve_repo_status(r, name, false, 0, vs, 64, &nv, &st);
    for (size_t i = 0; *known && i < nv && *n < cap; i++)
        if (vs[i].state == SV_AVAILABLE)
            out[(*n)++] = vs[i].version;
}

/* ---- Tensors ---- */

bool veil__serve_kv2_bytes_ok(struct veil_span b, uint64_t numel)
{
    for (uint64_t i = 0; i < numel; i++) {
        uint32_t len = 0;
        struct veil_span el;
        if (veil_span_get_u32le(&b, &len) != VEIL_OK ||
            veil_span_get_bytes(&b, len, &el) != VEIL_OK)
            return false;
    }
    return veil_span_expect_end(&b) == VEIL_OK;
}

/* Sets t's shape from a JSON list of non-negative integers and checks its size. */
static bool parse_shape(const struct json_val *shape, const char *name, enum veil_dtype dt,
                        struct veil_tensor *t, uint64_t *numel, struct sv_status *st)
{
    if (shape == NULL || shape->kind != JSON_ARRAY)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "input '%s': 'shape' must be a list of integers", name);
    if (shape->n > VEIL_LIMIT_TENSOR_RANK)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "input '%s': rank %u exceeds %d", name,
                       shape->n, VEIL_LIMIT_TENSOR_RANK);
    t->rank = shape->n;
    if (shape->n > 0) {
        /* The project's element decoder reads the list; each dim must be an integer >= 0. */
        struct sv_tinfo ti;
        struct sv_status tmp;
        memset(&ti, 0, sizeof(ti));
        ti.name = (char *)(uintptr_t)name;
        ti.dt = VEIL_DT_INT64;
        ti.tf_dtype = TF_DT_INT64;
        bool ok = shape->flat && shape->flat_rank == 1 &&
                  veil__serve_json_fill_elems(shape, &ti, t->dims, shape->n, &tmp);
        for (size_t d = 0; ok && d < t->rank; d++)
            ok = t->dims[d] >= 0;
        if (!ok)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "input '%s': 'shape' must be a list of non-negative integers", name);
    }
    uint64_t n = 0, nbytes = 0;
    if (veil_tensor_numel(t->dims, t->rank, &n) != VEIL_OK ||
        __builtin_mul_overflow(n, (uint64_t)(dt == VEIL_DT_STRING ? 1 : veil_dtype_size(dt)),
                               &nbytes) ||
        nbytes > SV_REQ_ARENA_MAX)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "input '%s': shape is too large", name);
    t->dtype = dt;
    t->nbytes = (size_t)nbytes;
    *numel = n;
    return true;
}

static const struct json_val *member(const struct json_val *obj, const char *key)
{
    for (const struct json_val *m = obj->child; m != NULL; m = m->next)
        if (veil_span_eq_str(m->key, key))
            return m;
    return NULL;
}

/* A JSON string that is a usable name (non-empty, no NUL, at most SV_NAME_MAX) copied into a. */
static bool take_name(const struct json_val *v, const char *what, struct veil_arena *a, char **out,
                      struct sv_status *st)
{
    if (v == NULL || v->kind != JSON_STRING || v->text.len == 0 || v->text.len > SV_NAME_MAX ||
        memchr(v->text.p, 0, v->text.len) != NULL)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "%s must have a 'name' string of 1 to %d bytes", what, SV_NAME_MAX);
    if (veil_arena_strdup(a, v->text, out) != VEIL_OK)
        return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    return true;
}

/*
 * Checks a parameters object (values are strings, numbers or booleans) and finds key in it.
 * Unknown keys are ignored, as the protocol asks.
 */
static bool params(const struct json_val *obj, const char *what, const char *key,
                   const struct json_val **found, struct sv_status *st)
{
    if (found != NULL)
        *found = NULL;
    if (obj == NULL)
        return true;
    if (obj->kind != JSON_OBJECT)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "%s: 'parameters' must be an object", what);
    for (const struct json_val *m = obj->child; m != NULL; m = m->next) {
        if (m->kind == JSON_ARRAY || m->kind == JSON_OBJECT || m->kind == JSON_NULL)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "%s: parameter '%.*s' must be a string, number or boolean", what,
                           (int)(m->key.len > 64 ? 64 : m->key.len), (const char *)m->key.p);
        if (found != NULL && key != NULL && veil_span_eq_str(m->key, key))
            *found = m;
    }
    return true;
}

static bool param_bool(const struct json_val *v, const char *what, const char *key, bool *out,
                       struct sv_status *st)
{
    if (v == NULL)
        return true;
    if (v->kind != JSON_TRUE && v->kind != JSON_FALSE)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "%s: parameter '%s' must be a boolean", what,
                       key);
    *out = v->kind == JSON_TRUE;
    return true;
}

/* Counts the string elements of BYTES JSON data (any nesting); false on another kind. */
static bool count_strings(const struct json_val *v, uint64_t *n)
{
    if (v->kind == JSON_STRING) {
        (*n)++;
        return true;
    }
    if (v->kind != JSON_ARRAY || v->flat)
        return false;
    for (const struct json_val *m = v->child; m != NULL; m = m->next)
        if (!count_strings(m, n))
            return false;
    return true;
}

static bool parse_input(const struct json_val *jv, size_t i, struct veil_span *bin, bool have_bin,
                        struct veil_arena *a, struct kv2_input *in, struct sv_status *st)
{
    char what[32];
    snprintf(what, sizeof(what), "input %zu", i);
    if (jv->kind != JSON_OBJECT)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "%s must be an object", what);
    if (!take_name(member(jv, "name"), what, a, &in->name, st))
        return false;
    const struct json_val *dtv = member(jv, "datatype");
    if (dtv == NULL || dtv->kind != JSON_STRING)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "input '%s': 'datatype' string missing",
                       in->name);
    enum veil_dtype dt = veil__serve_kv2_dtype_parse(dtv->text);
    if (dt == VEIL_DT_UNDEFINED)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "input '%s': datatype '%.*s' is not supported", in->name,
                       (int)(dtv->text.len > 32 ? 32 : dtv->text.len), (const char *)dtv->text.p);
    uint64_t numel = 0;
    if (!parse_shape(member(jv, "shape"), in->name, dt, &in->t, &numel, st))
        return false;
    const struct json_val *bds = NULL;
    if (!params(member(jv, "parameters"), in->name, "binary_data_size", &bds, st))
        return false;
    const struct json_val *data = member(jv, "data");
    if (bds != NULL) {
        uint64_t size = 0;
        struct veil_span chunk;
        if (data != NULL)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "input '%s' has both 'data' and binary_data_size", in->name);
        if (bds->kind != JSON_NUMBER || !veil__serve_json_u64(bds->text, &size))
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "input '%s': binary_data_size must be a non-negative integer", in->name);
        if (!have_bin)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "input '%s' has binary_data_size but the request has no "
                           "Inference-Header-Content-Length header",
                           in->name);
        if (size > bin->len || veil_span_get_bytes(bin, (size_t)size, &chunk) != VEIL_OK)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "input '%s': binary_data_size %llu exceeds the %zu bytes of binary "
                           "data left",
                           in->name, (unsigned long long)size, bin->len);
        if (dt == VEIL_DT_STRING) {
            if (!veil__serve_kv2_bytes_ok(chunk, numel))
                return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                               "input '%s': BYTES data is not %llu length-prefixed elements "
                               "filling binary_data_size exactly",
                               in->name, (unsigned long long)numel);
            in->t.nbytes = chunk.len;
        } else if (size != in->t.nbytes) {
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "input '%s': binary_data_size %llu does not match shape and datatype "
                           "(%zu bytes)",
                           in->name, (unsigned long long)size, in->t.nbytes);
        }
        if (((uintptr_t)chunk.p & 63) == 0 || chunk.len == 0) {
            in->t.data = (void *)(uintptr_t)chunk.p;
            return true;
        }
        /* The engine reads elements in place: give it aligned memory. */
        if (veil_arena_alloc_uninit(a, chunk.len, 64, &in->t.data) != VEIL_OK)
            return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory for input '%s'",
                           in->name);
        memcpy(in->t.data, chunk.p, chunk.len);
        return true;
    }
    if (data == NULL)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "input '%s' has neither 'data' nor binary_data_size", in->name);
    if (dt == VEIL_DT_STRING) {
        /* Validated only: no model Veil serves takes string tensors, so binding refuses it. */
        uint64_t n = 0;
        if (!count_strings(data, &n) || n != numel)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "input '%s': BYTES data must be %llu strings", in->name,
                           (unsigned long long)numel);
        in->t.nbytes = 0;
        return true;
    }
    struct sv_tinfo ti;
    memset(&ti, 0, sizeof(ti));
    ti.name = in->name;
    ti.dt = dt;
    ti.tf_dtype = veil__serve_tf_dtype(dt);
    if (!veil__serve_json_dtype_ok(dt))
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "input '%s': %s data has no JSON form; send it as binary tensor data",
                       in->name, veil__serve_kv2_dtype_name(dt));
    if (veil_arena_alloc(a, in->t.nbytes > 0 ? in->t.nbytes : 1, 64, &in->t.data) != VEIL_OK)
        return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory for input '%s'", in->name);
    return veil__serve_json_fill_elems(data, &ti, in->t.data, (size_t)numel, st);
}

/* Strictly decimal digits, no sign or spaces, at most max. */
static bool parse_header_len(const char *h, size_t max, size_t *out)
{
    struct veil_span s = veil_span_trim(veil_span_from_str(h));
    uint64_t v = 0;
    if (s.len == 0 || s.len > 19)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s.p[i] - '0');
    }
    if (v > max)
        return false;
    *out = (size_t)v;
    return true;
}

bool veil__serve_kv2_parse_rest(struct veil_span body, const char *header_len, struct veil_arena *a,
                                struct kv2_request *rq, struct sv_status *st)
{
    struct veil_span json = body, bin = {NULL, 0};
    struct json_val *root = NULL;
    memset(rq, 0, sizeof(*rq));
    if (header_len != NULL) {
        size_t n = 0;
        if (!parse_header_len(header_len, body.len, &n))
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "Inference-Header-Content-Length must be a decimal number of bytes "
                           "no larger than the %zu-byte body",
                           body.len);
        if (n == 0)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "raw binary requests (Inference-Header-Content-Length: 0) are not "
                           "supported");
        if (veil_span_get_bytes(&body, n, &json) != VEIL_OK)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "body shorter than its JSON header");
        bin = body;
    }
    if (!veil__serve_json_parse(json, a, &root, st))
        return false;
    if (root->kind != JSON_OBJECT)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "the request must be a JSON object");
    const struct json_val *id = member(root, "id");
    if (id != NULL) {
        if (id->kind != JSON_STRING || memchr(id->text.p, 0, id->text.len) != NULL)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "'id' must be a string");
        if (veil_arena_strdup(a, id->text, &rq->id) != VEIL_OK)
            return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    const struct json_val *bdo = NULL;
    if (!params(member(root, "parameters"), "request", "binary_data_output", &bdo, st) ||
        !param_bool(bdo, "request", "binary_data_output", &rq->binary_output, st))
        return false;
    const struct json_val *ins = member(root, "inputs");
    if (ins == NULL || ins->kind != JSON_ARRAY || ins->n == 0)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "the request must have a non-empty 'inputs' list");
    if (ins->flat || ins->n > SV_MAX_IO)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "'inputs' must be a list of at most %d input objects", SV_MAX_IO);
    for (const struct json_val *m = ins->child; m != NULL; m = m->next) {
        if (!parse_input(m, rq->n_in, &bin, header_len != NULL, a, &rq->in[rq->n_in], st))
            return false;
        rq->n_in++;
    }
    if (bin.len != 0)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "%zu bytes of binary data follow the inputs' binary_data_size total",
                       bin.len);
    const struct json_val *outs = member(root, "outputs");
    if (outs == NULL)
        return true;
    if (outs->kind != JSON_ARRAY || outs->flat || outs->n > SV_MAX_IO)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "'outputs' must be a list of at most %d output objects", SV_MAX_IO);
    for (const struct json_val *m = outs->child; m != NULL; m = m->next) {
        struct kv2_output *o = &rq->out[rq->n_out];
        char what[32];
        snprintf(what, sizeof(what), "output %zu", rq->n_out);
        if (m->kind != JSON_OBJECT)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "%s must be an object", what);
        if (!take_name(member(m, "name"), what, a, &o->name, st))
            return false;
        const struct json_val *bd = NULL, *cls = NULL, *pv = member(m, "parameters");
        o->binary = rq->binary_output;
        if (!params(pv, o->name, "binary_data", &bd, st) ||
            !param_bool(bd, o->name, "binary_data", &o->binary, st) ||
            !params(pv, o->name, "classification", &cls, st))
            return false;
        if (cls != NULL)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "output '%s': the classification parameter is not supported", o->name);
        rq->n_out++;
    }
    return true;
}

/* ---- Binding to a signature ---- */

bool veil__serve_kv2_bind(const struct kv2_request *rq, const struct sv_sig *sig,
                          struct veil_tensor *in, struct kv2_plan *plan, struct sv_status *st)
{
    bool got[SV_MAX_IO] = {false};
    memset(plan, 0, sizeof(*plan));
    for (size_t i = 0; i < rq->n_in; i++) {
        const struct kv2_input *x = &rq->in[i];
        size_t k = SIZE_MAX;
        for (size_t q = 0; q < sig->n_in && k == SIZE_MAX; q++)
            if (strcmp(sig->in[q].name, x->name) == 0)
                k = q;
        if (k == SIZE_MAX)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "unexpected input '%s'", x->name);
        if (got[k])
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "input '%s' is given twice", x->name);
        got[k] = true;
        const struct sv_tinfo *ti = &sig->in[k];
        if (x->t.dtype != ti->dt) {
            const char *want = veil__serve_kv2_dtype_name(ti->dt);
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "input '%s': datatype %s, the model expects %s", x->name,
                           veil__serve_kv2_dtype_name(x->t.dtype), want != NULL ? want : "?");
        }
        in[k] = x->t;
        if (!veil__serve_tensor_check(&in[k], ti, k, st))
            return false;
    }
    for (size_t k = 0; k < sig->n_in; k++)
        if (!got[k])
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "expected input '%s' is missing",
                           sig->in[k].name);
    if (rq->n_out == 0) {
        plan->n = sig->n_out;
        for (size_t k = 0; k < sig->n_out; k++) {
            plan->idx[k] = k;
            plan->binary[k] = rq->binary_output;
        }
        return true;
    }
    bool want[SV_MAX_IO] = {false};
    for (size_t i = 0; i < rq->n_out; i++) {
        size_t k = SIZE_MAX;
        for (size_t q = 0; q < sig->n_out && k == SIZE_MAX; q++)
            if (strcmp(sig->out[q].name, rq->out[i].name) == 0)
                k = q;
        if (k == SIZE_MAX)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "unexpected output '%s'",
                           rq->out[i].name);
        if (want[k])
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "output '%s' is requested twice",
                           rq->out[i].name);
        want[k] = true;
        plan->idx[plan->n] = k;
        plan->binary[plan->n] = rq->out[i].binary;
        plan->n++;
    }
    return true;
}

/* ---- REST response ---- */

bool veil__serve_kv2_encode_rest(const struct kv2_request *rq, const char *model, int64_t version,
                                 const struct sv_sig *sig, const struct veil_tensor *outs,
                                 const struct kv2_plan *plan, struct veil_buf *b, size_t *json_len,
                                 struct sv_status *st)
{
    bool any_bin = false;
    bool bin[SV_MAX_IO];
    *json_len = 0;
    veil_err rc = veil_buf_append_str(b, "{\"model_name\":");
    if (rc == VEIL_OK)
        rc = veil__serve_json_str(b, veil_span_from_str(model));
    if (rc == VEIL_OK)
        rc = veil_buf_appendf(b, ",\"model_version\":\"%lld\"", (long long)version);
    if (rc == VEIL_OK && rq->id != NULL) {
        rc = veil_buf_append_str(b, ",\"id\":");
        if (rc == VEIL_OK)
            rc = veil__serve_json_str(b, veil_span_from_str(rq->id));
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(b, ",\"outputs\":[");
    for (size_t i = 0; rc == VEIL_OK && i < plan->n; i++) {
        const struct veil_tensor *t = &outs[plan->idx[i]];
        const char *dn = veil__serve_kv2_dtype_name(t->dtype);
        if (dn == NULL)
            return sv_fail(st, VEIL_GRPC_INTERNAL, "output '%s' has a type v2 cannot carry",
                           sig->out[plan->idx[i]].name);
        /* Types without a JSON form (UINT16) can only travel as binary data. */
        bin[i] = plan->binary[i] || !veil__serve_json_dtype_ok(t->dtype);
        any_bin = any_bin || bin[i];
        rc = veil_buf_append_str(b, i ? ",{\"name\":" : "{\"name\":");
        if (rc == VEIL_OK)
            rc = veil__serve_json_str(b, veil_span_from_str(sig->out[plan->idx[i]].name));
        if (rc == VEIL_OK)
            rc = veil_buf_appendf(b, ",\"datatype\":\"%s\",\"shape\":[", dn);
        for (size_t d = 0; rc == VEIL_OK && d < t->rank; d++)
            rc = veil_buf_appendf(b, "%s%lld", d ? "," : "", (long long)t->dims[d]);
        if (rc == VEIL_OK && bin[i])
            rc = veil_buf_appendf(b, "],\"parameters\":{\"binary_data_size\":%zu}}", t->nbytes);
        else if (rc == VEIL_OK) {
            rc = veil_buf_append_str(b, "],\"data\":");
            if (rc == VEIL_OK)
                rc = veil__serve_json_put_flat(b, t);
            if (rc == VEIL_OK)
                rc = veil_buf_append_u8(b, '}');
        }
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(b, "]}");
    size_t jl = b->len;
    for (size_t i = 0; rc == VEIL_OK && i < plan->n; i++)
        if (bin[i])
            rc = veil_buf_append(b, outs[plan->idx[i]].data, outs[plan->idx[i]].nbytes);
    if (rc != VEIL_OK)
        return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "response too large");
    *json_len = any_bin ? jl : 0;
    return true;
}
