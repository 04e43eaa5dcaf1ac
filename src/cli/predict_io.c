/*
 * Model inputs and outputs for `veil predict` and `veil bench`: the signature from the
 * server's metadata, inputs from .npy files or a seeded generator, and both API encodings
 * (TF Serving's PredictRequest with tensor_content, and the REST columnar JSON form). Replies
 * are decoded with protobuf-c (gRPC) or the strict JSON parser (REST).
 */
#include "predict_io.h"

#include "veil/json.h"
#include "veil/serve.h"

#include "tensorflow_serving/apis/get_model_metadata.pb-c.h"
#include "tensorflow_serving/apis/predict.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static enum veil_dtype from_tf(int tf)
{
    return veil_serve_engine_dtype(tf);
}

static int to_tf(enum veil_dtype dt)
{
    return veil_serve_tf_dtype(dt);
}

/* The engine dtype of a TF DataType name as the REST metadata writes it ("DT_FLOAT"). */
static enum veil_dtype from_tf_name(const char *s)
{
    for (int tf = 1; s != NULL && tf < 64; tf++)
        if (strcmp(veil_serve_tf_dtype_name(tf), s) == 0)
            return veil_serve_engine_dtype(tf);
    return VEIL_DT_UNDEFINED;
}

void veil_cli_model_release(struct veil_cli_model *m)
{
    for (size_t i = 0; i < VEIL_CLI_MAX_IO; i++) {
        veil_free(m->in[i].data);
        veil_free(m->out[i].data);
        m->in[i].data = m->out[i].data = NULL;
    }
}

/* ---- Signature ---- */

void veil_cli_on_reply(void *ud, int status, const char *message, const uint8_t *body, size_t len)
{
    struct veil_cli_reply *r = ud;
    r->status = status;
    snprintf(r->message, sizeof(r->message), "%s", message != NULL ? message : "");
    if (len > 0 && veil_buf_append(&r->body, body, len) != VEIL_OK)
        r->status = -1;
}

static veil_err tensor_from_info(struct veil_cli_tensor *t, const char *name, int dtype,
                                 const Tensorflow__TensorShapeProto *shape)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->dtype = from_tf(dtype);
    if (shape == NULL || shape->n_dim > VEIL_LIMIT_TENSOR_RANK)
        return VEIL_E_FORMAT;
    t->rank = shape->n_dim;
    for (size_t d = 0; d < shape->n_dim; d++)
        t->dims[d] = shape->dim[d]->size;
    return VEIL_OK;
}

static veil_err signature_grpc(struct veil_cli_conn *c, struct veil_cli_model *m,
                               struct veil_errbuf *eb)
{
    Tensorflow__Serving__ModelSpec spec;
    tensorflow__serving__model_spec__init(&spec);
    Google__Protobuf__Int64Value ver;
    google__protobuf__int64_value__init(&ver);
    Tensorflow__Serving__GetModelMetadataRequest req;
    tensorflow__serving__get_model_metadata_request__init(&req);
    char *field = (char *)"signature_def";
    spec.name = (char *)(uintptr_t)m->name;
    if (m->version != 0) {
        ver.value = (int64_t)m->version;
        spec.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
        spec.version = &ver;
    } else if (m->label != NULL) {
        spec.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION_LABEL;
        spec.version_label = (char *)(uintptr_t)m->label;
    }
    req.model_spec = &spec;
    req.n_metadata_field = 1;
    req.metadata_field = &field;
    struct veil_buf msg;
    struct veil_cli_reply r = {0};
    veil_buf_init(&msg, 1 << 20);
    veil_buf_init(&r.body, 64u << 20);
    veil_err rc = veil_buf_reserve(
        &msg, tensorflow__serving__get_model_metadata_request__get_packed_size(&req));
    if (rc == VEIL_OK) {
        msg.len = tensorflow__serving__get_model_metadata_request__pack(&req, msg.p);
        rc = veil_cli_grpc_call(c, "/tensorflow.serving.PredictionService/GetModelMetadata",
                                veil_buf_span(&msg), veil_cli_on_reply, &r);
    }
    if (rc == VEIL_OK)
        rc = veil_cli_wait_idle(c, 30000, eb);
    Tensorflow__Serving__GetModelMetadataResponse *resp = NULL;
    Tensorflow__Serving__SignatureDefMap *map = NULL;
    if (rc == VEIL_OK && r.status < 0) {
        rc = veil_errf(eb, VEIL_E_UNAVAILABLE,
                       "the server closed the connection (%s); under mutual TLS it needs "
                       "--cert and --key",
                       r.message);
        goto out;
    }
    if (rc == VEIL_OK && r.status != 0) {
        rc = veil_errf(eb, VEIL_E_REJECTED, "GetModelMetadata failed (gRPC status %d): %s",
                       r.status, r.message);
        goto out;
    }
    if (rc != VEIL_OK)
        goto out;
    resp = tensorflow__serving__get_model_metadata_response__unpack(NULL, r.body.len, r.body.p);
    for (size_t i = 0; resp != NULL && i < resp->n_metadata; i++)
        if (strcmp(resp->metadata[i]->key, "signature_def") == 0 && resp->metadata[i]->value)
            map = tensorflow__serving__signature_def_map__unpack(
                NULL, resp->metadata[i]->value->value.len, resp->metadata[i]->value->value.data);
    const char *want = m->signature != NULL ? m->signature : "serving_default";
    const Tensorflow__SignatureDef *sig = NULL;
    for (size_t i = 0; map != NULL && i < map->n_signature_def; i++)
        if (strcmp(map->signature_def[i]->key, want) == 0)
            sig = map->signature_def[i]->value;
    if (sig == NULL || sig->n_inputs > VEIL_CLI_MAX_IO || sig->n_outputs > VEIL_CLI_MAX_IO) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "the server's metadata has no signature '%s'", want);
        goto out;
    }
    m->n_in = sig->n_inputs;
    m->n_out = sig->n_outputs;
    for (size_t i = 0; rc == VEIL_OK && i < sig->n_inputs; i++)
        rc = tensor_from_info(&m->in[i], sig->inputs[i]->key, sig->inputs[i]->value->dtype,
                              sig->inputs[i]->value->tensor_shape);
    for (size_t i = 0; rc == VEIL_OK && i < sig->n_outputs; i++)
        rc = tensor_from_info(&m->out[i], sig->outputs[i]->key, sig->outputs[i]->value->dtype,
                              sig->outputs[i]->value->tensor_shape);
    if (rc != VEIL_OK)
        rc = veil_errf(eb, rc, "malformed signature in the server's metadata");
out:
    if (map != NULL)
        tensorflow__serving__signature_def_map__free_unpacked(map, NULL);
    if (resp != NULL)
        tensorflow__serving__get_model_metadata_response__free_unpacked(resp, NULL);
    veil_buf_release(&msg);
    veil_buf_release(&r.body);
    return rc;
}

static veil_err tensors_from_json(const struct veil_json *map, struct veil_cli_tensor *ts,
                                  size_t *n)
{
    if (map == NULL || map->type != VEIL_JSON_OBJECT || map->n > VEIL_CLI_MAX_IO)
        return VEIL_E_FORMAT;
    for (size_t i = 0; i < map->n; i++) {
        struct veil_cli_tensor *t = &ts[i];
        const struct veil_json *info = map->members[i].value;
        const struct veil_json *dims = veil_json_get(veil_json_get(info, "tensor_shape"), "dim");
        memset(t, 0, sizeof(*t));
        snprintf(t->name, sizeof(t->name), "%s", map->members[i].key);
        t->dtype = from_tf_name(veil_json_get_str(info, "dtype"));
        if (dims != NULL && (dims->type != VEIL_JSON_ARRAY || dims->n > VEIL_LIMIT_TENSOR_RANK))
            return VEIL_E_FORMAT;
        t->rank = dims != NULL ? dims->n : 0;
        for (size_t d = 0; d < t->rank; d++) {
            const struct veil_json *sz = veil_json_get(dims->items[d], "size");
            /* TF Serving writes int64 sizes as JSON strings. */
            if (sz != NULL && sz->type == VEIL_JSON_STRING)
                t->dims[d] = strtoll(sz->str, NULL, 10);
            else if (sz != NULL && sz->is_int)
                t->dims[d] = sz->i;
            else
                return VEIL_E_FORMAT;
        }
    }
    *n = map->n;
    return VEIL_OK;
}

static veil_err signature_rest(struct veil_cli_conn *c, struct veil_cli_model *m,
                               struct veil_errbuf *eb)
{
    char path[512];
    struct veil_cli_reply r = {0};
    veil_buf_init(&r.body, 64u << 20);
    veil_cli_rest_path(m, "/metadata", path, sizeof(path));
    veil_err rc =
        veil_cli_rest_call(c, "GET", path, veil_span_make(NULL, 0), veil_cli_on_reply, &r);
    if (rc == VEIL_OK)
        rc = veil_cli_wait_idle(c, 30000, eb);
    struct veil_arena a;
    struct veil_json *doc = NULL;
    veil_arena_init(&a, 1 << 16, 256u << 20);
    if (rc == VEIL_OK && r.status < 0)
        rc = veil_errf(eb, VEIL_E_UNAVAILABLE,
                       "the server closed the connection (%s); under mutual TLS it needs "
                       "--cert and --key",
                       r.message);
    else if (rc == VEIL_OK && r.status != 200)
        rc = veil_errf(eb, VEIL_E_REJECTED, "metadata request failed (HTTP %d): %.*s", r.status,
                       (int)(r.body.len > 300 ? 300 : r.body.len), (const char *)r.body.p);
    if (rc == VEIL_OK && veil_json_parse(veil_buf_span(&r.body), &a, &doc, eb) != VEIL_OK)
        rc = VEIL_E_FORMAT;
    if (rc == VEIL_OK) {
        const char *want = m->signature != NULL ? m->signature : "serving_default";
        const struct veil_json *sigs = veil_json_get(
            veil_json_get(veil_json_get(doc, "metadata"), "signature_def"), "signature_def");
        const struct veil_json *sig = veil_json_get(sigs, want);
        if (sig == NULL ||
            tensors_from_json(veil_json_get(sig, "inputs"), m->in, &m->n_in) != VEIL_OK ||
            tensors_from_json(veil_json_get(sig, "outputs"), m->out, &m->n_out) != VEIL_OK)
            rc = veil_errf(eb, VEIL_E_FORMAT, "the server's metadata has no usable signature '%s'",
                           want);
    }
    veil_arena_release(&a);
    veil_buf_release(&r.body);
    return rc;
}

veil_err veil_cli_fetch_signature(struct veil_cli_conn *c, bool grpc, struct veil_cli_model *m,
                                  struct veil_errbuf *eb)
{
    return grpc ? signature_grpc(c, m, eb) : signature_rest(c, m, eb);
}

/* ---- Inputs ---- */

static uint64_t next_rand(uint64_t *s)
{
    /* splitmix64: a fixed seed gives the same inputs everywhere. */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void fill_random(struct veil_cli_tensor *t, size_t n, uint64_t *s)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t r = next_rand(s);
        double u = (double)(r >> 11) / 9007199254740992.0; /* [0, 1) */
        switch (t->dtype) {
        case VEIL_DT_FLOAT:
            ((float *)t->data)[i] = (float)(u * 2.0 - 1.0);
            break;
        case VEIL_DT_DOUBLE:
            ((double *)t->data)[i] = u * 2.0 - 1.0;
            break;
        case VEIL_DT_INT64:
            ((int64_t *)t->data)[i] = (int64_t)(r % 100);
            break;
        case VEIL_DT_INT32:
            ((int32_t *)t->data)[i] = (int32_t)(r % 100);
            break;
        case VEIL_DT_BOOL:
            t->data[i] = (uint8_t)(r & 1);
            break;
        case VEIL_DT_FLOAT16:
        case VEIL_DT_BFLOAT16:
            ((uint16_t *)(void *)t->data)[i] = veil_half_from_double(t->dtype, u * 2.0 - 1.0);
            break;
        default:
            for (size_t b = 0; b < veil_dtype_size(t->dtype); b++)
                t->data[i * veil_dtype_size(t->dtype) + b] = (uint8_t)(r >> (8 * b));
        }
    }
}

veil_err veil_cli_make_inputs(struct veil_cli_model *m, char *const *files, size_t n_files,
                              int64_t batch, uint64_t seed, struct veil_errbuf *eb)
{
    for (size_t f = 0; f < n_files; f++) {
        const char *eq = strchr(files[f], '=');
        size_t k;
        for (k = 0; k < m->n_in; k++)
            if (eq != NULL && strlen(m->in[k].name) == (size_t)(eq - files[f]) &&
                strncmp(m->in[k].name, files[f], (size_t)(eq - files[f])) == 0)
                break;
        if (eq == NULL || k == m->n_in)
            return veil_errf(eb, VEIL_E_INVALID, "--input %s: no such input in the signature",
                             files[f]);
        struct veil_buf b;
        struct veil_tensor t = {0}; /* its data points into b */
        veil_buf_init(&b, VEIL_LIMIT_MODEL_BYTES);
        veil_err rc = veil_file_read_all(eq + 1, b.max, &b, eb);
        if (rc == VEIL_OK)
            rc = veil_npy_parse(veil_buf_span(&b), &t, eb);
        struct veil_cli_tensor *in = &m->in[k];
        if (rc == VEIL_OK && in->dtype != VEIL_DT_UNDEFINED && t.dtype != in->dtype)
            rc = veil_errf(eb, VEIL_E_INVALID, "holds %s, input '%s' takes %s",
                           veil_dtype_name(t.dtype), in->name, veil_dtype_name(in->dtype));
        if (rc == VEIL_OK && (in->data = veil_malloc(t.nbytes)) == NULL)
            rc = veil_errf(eb, VEIL_E_NOMEM, "out of memory");
        if (rc == VEIL_OK) {
            in->dtype = t.dtype;
            in->rank = t.rank;
            memcpy(in->dims, t.dims, sizeof(in->dims));
            memcpy(in->data, t.data, t.nbytes);
            in->nbytes = t.nbytes;
        }
        veil_buf_release(&b);
        if (rc != VEIL_OK)
            return veil_err_prefix(eb, rc, "%s", eq + 1);
    }
    uint64_t s = seed;
    for (size_t k = 0; k < m->n_in; k++) {
        struct veil_cli_tensor *in = &m->in[k];
        if (in->data != NULL)
            continue;
        if (veil_dtype_size(in->dtype) == 0)
            return veil_errf(eb, VEIL_E_UNSUPPORTED,
                             "input '%s' has a dtype this client cannot make", in->name);
        for (size_t d = 0; d < in->rank; d++)
            if (in->dims[d] < 0)
                in->dims[d] = d == 0 ? batch : 1;
        uint64_t n;
        if (veil_tensor_numel(in->dims, in->rank, &n) != VEIL_OK || n > (1ull << 31))
            return veil_errf(eb, VEIL_E_LIMIT, "input '%s' is too large", in->name);
        in->nbytes = (size_t)n * veil_dtype_size(in->dtype);
        in->data = veil_malloc(in->nbytes);
        if (in->data == NULL)
            return veil_errf(eb, VEIL_E_NOMEM, "out of memory");
        fill_random(in, (size_t)n, &s);
    }
    return VEIL_OK;
}

/* ---- Requests ---- */

static void fill_spec(const struct veil_cli_model *m, Tensorflow__Serving__ModelSpec *spec,
                      Google__Protobuf__Int64Value *ver)
{
    spec->name = (char *)(uintptr_t)m->name;
    if (m->signature != NULL)
        spec->signature_name = (char *)(uintptr_t)m->signature;
    if (m->version != 0) {
        ver->value = (int64_t)m->version;
        spec->version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
        spec->version = ver;
    } else if (m->label != NULL) {
        spec->version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION_LABEL;
        spec->version_label = (char *)(uintptr_t)m->label;
    }
}

veil_err veil_cli_encode_grpc(const struct veil_cli_model *m, struct veil_buf *out)
{
    Tensorflow__Serving__ModelSpec spec;
    tensorflow__serving__model_spec__init(&spec);
    Google__Protobuf__Int64Value ver;
    google__protobuf__int64_value__init(&ver);
    Tensorflow__Serving__PredictRequest req;
    tensorflow__serving__predict_request__init(&req);
    Tensorflow__Serving__PredictRequest__InputsEntry entries[VEIL_CLI_MAX_IO], *ep[VEIL_CLI_MAX_IO];
    Tensorflow__TensorProto tps[VEIL_CLI_MAX_IO];
    Tensorflow__TensorShapeProto shapes[VEIL_CLI_MAX_IO];
    Tensorflow__TensorShapeProto__Dim dims[VEIL_CLI_MAX_IO][VEIL_LIMIT_TENSOR_RANK];
    Tensorflow__TensorShapeProto__Dim *dimp[VEIL_CLI_MAX_IO][VEIL_LIMIT_TENSOR_RANK];
    fill_spec(m, &spec, &ver);
    for (size_t i = 0; i < m->n_in; i++) {
        const struct veil_cli_tensor *t = &m->in[i];
        tensorflow__serving__predict_request__inputs_entry__init(&entries[i]);
        tensorflow__tensor_proto__init(&tps[i]);
        tensorflow__tensor_shape_proto__init(&shapes[i]);
        for (size_t d = 0; d < t->rank; d++) {
            tensorflow__tensor_shape_proto__dim__init(&dims[i][d]);
            dims[i][d].size = t->dims[d];
            dimp[i][d] = &dims[i][d];
        }
        shapes[i].n_dim = t->rank;
        shapes[i].dim = dimp[i];
        tps[i].dtype = (Tensorflow__DataType)to_tf(t->dtype);
        tps[i].tensor_shape = &shapes[i];
        tps[i].tensor_content.data = t->data;
        tps[i].tensor_content.len = t->nbytes;
        entries[i].key = (char *)(uintptr_t)t->name;
        entries[i].value = &tps[i];
        ep[i] = &entries[i];
    }
    req.model_spec = &spec;
    req.n_inputs = m->n_in;
    req.inputs = ep;
    size_t n = tensorflow__serving__predict_request__get_packed_size(&req);
    veil_err rc = veil_buf_reserve(out, n);
    if (rc == VEIL_OK)
        out->len += tensorflow__serving__predict_request__pack(&req, out->p + out->len);
    return rc;
}

static veil_err append_value(struct veil_buf *b, const struct veil_cli_tensor *t, size_t i)
{
    switch (t->dtype) {
    case VEIL_DT_FLOAT: {
        float v = ((const float *)t->data)[i];
        return isfinite(v) ? veil_buf_appendf(b, "%.9g", (double)v)
                           : veil_buf_append_str(b, isnan(v) ? "NaN"
                                                    : v > 0  ? "Infinity"
                                                             : "-Infinity");
    }
    case VEIL_DT_DOUBLE: {
        double v = ((const double *)t->data)[i];
        return isfinite(v) ? veil_buf_appendf(b, "%.17g", v)
                           : veil_buf_append_str(b, isnan(v) ? "NaN"
                                                    : v > 0  ? "Infinity"
                                                             : "-Infinity");
    }
    case VEIL_DT_INT64:
        return veil_buf_appendf(b, "%lld", (long long)((const int64_t *)t->data)[i]);
    case VEIL_DT_INT32:
        return veil_buf_appendf(b, "%d", ((const int32_t *)t->data)[i]);
    case VEIL_DT_INT16:
        return veil_buf_appendf(b, "%d", ((const int16_t *)t->data)[i]);
    case VEIL_DT_INT8:
        return veil_buf_appendf(b, "%d", ((const int8_t *)t->data)[i]);
    case VEIL_DT_UINT8:
        return veil_buf_appendf(b, "%u", t->data[i]);
    case VEIL_DT_UINT16:
        return veil_buf_appendf(b, "%u", ((const uint16_t *)t->data)[i]);
    case VEIL_DT_UINT32:
        return veil_buf_appendf(b, "%u", ((const uint32_t *)t->data)[i]);
    case VEIL_DT_UINT64:
        return veil_buf_appendf(b, "%llu", (unsigned long long)((const uint64_t *)t->data)[i]);
    case VEIL_DT_BOOL:
        return veil_buf_append_str(b, t->data[i] ? "true" : "false");
    default:
        return VEIL_E_UNSUPPORTED;
    }
}

/* Writes t's values as nested JSON arrays following its shape. */
static veil_err append_nested(struct veil_buf *b, const struct veil_cli_tensor *t, size_t dim,
                              size_t *idx)
{
    if (dim == t->rank)
        return append_value(b, t, (*idx)++);
    veil_err rc = veil_buf_append_u8(b, '[');
    for (int64_t i = 0; rc == VEIL_OK && i < t->dims[dim]; i++) {
        if (i > 0)
            rc = veil_buf_append_u8(b, ',');
        if (rc == VEIL_OK)
            rc = append_nested(b, t, dim + 1, idx);
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_u8(b, ']');
    return rc;
}

veil_err veil_cli_encode_rest(const struct veil_cli_model *m, struct veil_buf *out)
{
    veil_err rc = veil_buf_append_str(out, "{");
    if (rc == VEIL_OK && m->signature != NULL) {
        rc = veil_buf_append_str(out, "\"signature_name\":");
        if (rc == VEIL_OK)
            rc = veil_json_append_str(out, veil_span_from_str(m->signature));
        if (rc == VEIL_OK)
            rc = veil_buf_append_u8(out, ',');
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(out, "\"inputs\":{");
    for (size_t i = 0; rc == VEIL_OK && i < m->n_in; i++) {
        size_t idx = 0;
        if (i > 0)
            rc = veil_buf_append_u8(out, ',');
        if (rc == VEIL_OK)
            rc = veil_json_append_str(out, veil_span_from_str(m->in[i].name));
        if (rc == VEIL_OK)
            rc = veil_buf_append_u8(out, ':');
        if (rc == VEIL_OK)
            rc = append_nested(out, &m->in[i], 0, &idx);
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(out, "}}");
    return rc;
}

void veil_cli_rest_path(const struct veil_cli_model *m, const char *verb, char *out, size_t cap)
{
    if (m->version != 0)
        snprintf(out, cap, "/v1/models/%s/versions/%llu%s", m->name, (unsigned long long)m->version,
                 verb);
    else if (m->label != NULL)
        snprintf(out, cap, "/v1/models/%s/labels/%s%s", m->name, m->label, verb);
    else
        snprintf(out, cap, "/v1/models/%s%s", m->name, verb);
}

/* ---- Replies ---- */

static veil_err set_output(struct veil_cli_tensor *t, const char *name, enum veil_dtype dt,
                           size_t rank, const int64_t *dims, const void *data, size_t nbytes)
{
    char keep[sizeof(t->name)];
    snprintf(keep, sizeof(keep), "%s", name); /* name may point into t */
    veil_free(t->data);
    memset(t, 0, sizeof(*t));
    memcpy(t->name, keep, sizeof(keep));
    t->dtype = dt;
    t->rank = rank;
    memcpy(t->dims, dims, rank * sizeof(int64_t));
    t->data = veil_malloc(nbytes);
    if (t->data == NULL)
        return VEIL_E_NOMEM;
    if (nbytes > 0)
        memcpy(t->data, data, nbytes);
    t->nbytes = nbytes;
    return VEIL_OK;
}

veil_err veil_cli_decode_grpc(struct veil_cli_model *m, struct veil_span msg,
                              struct veil_errbuf *eb)
{
    Tensorflow__Serving__PredictResponse *r =
        tensorflow__serving__predict_response__unpack(NULL, msg.len, msg.p);
    if (r == NULL)
        return veil_errf(eb, VEIL_E_FORMAT, "malformed PredictResponse");
    veil_err rc = VEIL_OK;
    if (r->n_outputs > VEIL_CLI_MAX_IO)
        rc = veil_errf(eb, VEIL_E_LIMIT, "too many outputs");
    for (size_t i = 0; rc == VEIL_OK && i < r->n_outputs; i++) {
        const Tensorflow__TensorProto *tp = r->outputs[i]->value;
        int64_t dims[VEIL_LIMIT_TENSOR_RANK];
        uint64_t n = 1;
        enum veil_dtype dt = tp != NULL ? from_tf(tp->dtype) : VEIL_DT_UNDEFINED;
        size_t es = veil_dtype_size(dt);
        if (tp == NULL || tp->tensor_shape == NULL || es == 0 ||
            tp->tensor_shape->n_dim > VEIL_LIMIT_TENSOR_RANK) {
            rc = veil_errf(eb, VEIL_E_FORMAT, "output '%s' is not a dense numeric tensor",
                           r->outputs[i]->key);
            break;
        }
        for (size_t d = 0; d < tp->tensor_shape->n_dim; d++) {
            dims[d] = tp->tensor_shape->dim[d]->size;
            if (dims[d] < 0 || __builtin_mul_overflow(n, (uint64_t)dims[d], &n))
                rc =
                    veil_errf(eb, VEIL_E_FORMAT, "output '%s' has a bad shape", r->outputs[i]->key);
        }
        if (rc != VEIL_OK)
            break;
        const void *data = tp->tensor_content.data;
        size_t nbytes = tp->tensor_content.len;
        if (nbytes == 0 && dt == VEIL_DT_FLOAT && tp->n_float_val == n) {
            data = tp->float_val;
            nbytes = n * 4;
        } else if (nbytes == 0 && dt == VEIL_DT_INT64 && tp->n_int64_val == n) {
            data = tp->int64_val;
            nbytes = n * 8;
        } else if (nbytes == 0 && dt == VEIL_DT_DOUBLE && tp->n_double_val == n) {
            data = tp->double_val;
            nbytes = n * 8;
        } else if (nbytes == 0 && dt == VEIL_DT_INT32 && tp->n_int_val == n) {
            data = tp->int_val;
            nbytes = n * 4;
        }
        if (nbytes != n * es) {
            rc = veil_errf(eb, VEIL_E_FORMAT, "output '%s' holds %zu bytes for %llu elements",
                           r->outputs[i]->key, nbytes, (unsigned long long)n);
            break;
        }
        rc = set_output(&m->out[i], r->outputs[i]->key, dt, tp->tensor_shape->n_dim, dims, data,
                        nbytes);
        m->n_out = i + 1;
    }
    tensorflow__serving__predict_response__free_unpacked(r, NULL);
    return rc;
}

/* Collects the numbers of a nested JSON array into doubles and records the shape. */
static veil_err flatten(const struct veil_json *v, size_t depth, size_t *rank, int64_t *dims,
                        struct veil_buf *vals)
{
    if (v->type == VEIL_JSON_NUMBER || v->type == VEIL_JSON_BOOL) {
        if (*rank == SIZE_MAX)
            *rank = depth;
        else if (*rank != depth)
            return VEIL_E_FORMAT;
        double d = v->type == VEIL_JSON_BOOL ? (v->b ? 1 : 0) : v->is_int ? (double)v->i : v->num;
        return veil_buf_append(vals, &d, sizeof(d));
    }
    if (v->type != VEIL_JSON_ARRAY || depth >= VEIL_LIMIT_TENSOR_RANK)
        return VEIL_E_FORMAT;
    if (dims[depth] < 0)
        dims[depth] = (int64_t)v->n;
    else if (dims[depth] != (int64_t)v->n)
        return VEIL_E_FORMAT;
    for (size_t i = 0; i < v->n; i++) {
        veil_err rc = flatten(v->items[i], depth + 1, rank, dims, vals);
        if (rc != VEIL_OK)
            return rc;
    }
    return VEIL_OK;
}

static veil_err output_from_json(struct veil_cli_tensor *t, const char *name,
                                 const struct veil_json *v)
{
    struct veil_buf vals;
    int64_t dims[VEIL_LIMIT_TENSOR_RANK];
    size_t rank = SIZE_MAX;
    for (size_t d = 0; d < VEIL_LIMIT_TENSOR_RANK; d++)
        dims[d] = -1;
    veil_buf_init(&vals, 1u << 30);
    veil_err rc = flatten(v, 0, &rank, dims, &vals);
    if (rc == VEIL_OK && rank == SIZE_MAX)
        rank = 1, dims[0] = 0; /* an empty array */
    if (rc == VEIL_OK)
        rc = set_output(t, name, VEIL_DT_DOUBLE, rank, dims, vals.p, vals.len);
    veil_buf_release(&vals);
    return rc;
}

veil_err veil_cli_decode_rest(struct veil_cli_model *m, struct veil_span body,
                              struct veil_errbuf *eb)
{
    struct veil_arena a;
    struct veil_json *doc = NULL;
    veil_arena_init(&a, 1 << 16, 1u << 30);
    veil_err rc = veil_json_parse(body, &a, &doc, eb);
    const struct veil_json *outs = rc == VEIL_OK ? veil_json_get(doc, "outputs") : NULL;
    if (rc == VEIL_OK && outs == NULL)
        outs = veil_json_get(doc, "predictions");
    if (rc == VEIL_OK && outs == NULL)
        rc = veil_errf(eb, VEIL_E_FORMAT, "the answer has neither \"outputs\" nor \"predictions\"");
    if (rc == VEIL_OK && outs->type == VEIL_JSON_OBJECT) {
        for (size_t i = 0; rc == VEIL_OK && i < outs->n && i < VEIL_CLI_MAX_IO; i++) {
            rc = output_from_json(&m->out[i], outs->members[i].key, outs->members[i].value);
            m->n_out = i + 1;
        }
    } else if (rc == VEIL_OK) {
        rc = output_from_json(&m->out[0], m->n_out > 0 ? m->out[0].name : "output", outs);
        m->n_out = 1;
    }
    if (rc != VEIL_OK && eb != NULL && eb->msg[0] == '\0')
        veil_errf(eb, rc, "outputs are not numeric arrays of a regular shape");
    veil_arena_release(&a);
    return rc;
}

static double value_at(const struct veil_cli_tensor *t, size_t i)
{
    switch (t->dtype) {
    case VEIL_DT_FLOAT:
        return ((const float *)t->data)[i];
    case VEIL_DT_DOUBLE:
        return ((const double *)t->data)[i];
    case VEIL_DT_INT64:
        return (double)((const int64_t *)t->data)[i];
    case VEIL_DT_INT32:
        return ((const int32_t *)t->data)[i];
    case VEIL_DT_UINT8:
    case VEIL_DT_BOOL:
        return t->data[i];
    default:
        return NAN;
    }
}

void veil_cli_print_outputs(const struct veil_cli_model *m, unsigned top_k)
{
    for (size_t o = 0; o < m->n_out; o++) {
        const struct veil_cli_tensor *t = &m->out[o];
        size_t es = veil_dtype_size(t->dtype), n = es ? t->nbytes / es : 0;
        printf("output '%s': %s [", t->name, veil_dtype_name(t->dtype));
        for (size_t d = 0; d < t->rank; d++)
            printf("%s%lld", d ? ", " : "", (long long)t->dims[d]);
        printf("]");
        double mn = INFINITY, mx = -INFINITY, sum = 0;
        for (size_t i = 0; i < n; i++) {
            double v = value_at(t, i);
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
            sum += v;
        }
        if (n > 0)
            printf(" min %.6g max %.6g mean %.6g", mn, mx, sum / (double)n);
        printf("\n");
        if (n > 0 && n <= 16) {
            printf("  values:");
            for (size_t i = 0; i < n; i++)
                printf(" %.6g", value_at(t, i));
            printf("\n");
        }
        /* A classifier's scores: [batch, classes] with many classes. */
        if (top_k > 0 && t->rank == 2 && t->dims[1] > 16) {
            size_t classes = (size_t)t->dims[1];
            for (int64_t b = 0; b < t->dims[0] && b < 8; b++) {
                printf("  top-%u of item %lld:", top_k, (long long)b);
                bool used[64] = {0};
                size_t best_idx[64];
                for (unsigned k = 0; k < top_k && k < 64; k++) {
                    size_t best = SIZE_MAX;
                    for (size_t c = 0; c < classes; c++) {
                        bool taken = false;
                        for (unsigned j = 0; j < k; j++)
                            taken = taken || (used[j] && best_idx[j] == c);
                        if (!taken &&
                            (best == SIZE_MAX || value_at(t, (size_t)b * classes + c) >
                                                     value_at(t, (size_t)b * classes + best)))
                            best = c;
                    }
                    best_idx[k] = best;
                    used[k] = true;
                    printf(" %zu (%.4g)", best, value_at(t, (size_t)b * classes + best));
                }
                printf("\n");
            }
        }
    }
}
