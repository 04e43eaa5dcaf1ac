/*
 * The KServe v2 gRPC frontend: inference.GRPCInferenceService (ServerLive, ServerReady,
 * ModelReady, ServerMetadata, ModelMetadata, ModelInfer) on the TF Serving gRPC port, from the
 * project's proto/kserve/grpc_service.proto. Calls run on request threads like TF Serving's:
 * protobuf-c decodes into the request arena, raw_input_contents are used in place, typed
 * contents are converted once, and the request is bound to the signature and run through the
 * same repository, batching, limits and metrics. A request with raw contents is answered with
 * raw_output_contents, one with typed contents with typed contents (raw when a type has none).
 * Other methods of Triton's service answer UNIMPLEMENTED.
 */
#include "serve_int.h"

#include <stdio.h>
#include <string.h>

#include "kserve/grpc_service.pb-c.h"

#define KS "/inference.GRPCInferenceService/"

struct kgjob {
    struct veil_serve *s;
    struct veil_grpc_call *call;
    struct veil_arena arena;
    struct sv_version *v;
    char api[24];
    char model[SV_NAME_MAX + 1];
    uint64_t start_ns;
    bool raw; /* answer with raw_output_contents */
    struct kv2_request rq;
    struct kv2_plan plan;
    struct veil_tensor in[SV_MAX_IO];
};

static void job_end(struct kgjob *j, int code, const char *msg, struct veil_span resp)
{
    /* Server-level calls are not model requests: only model calls are counted. */
    if (strncmp(j->api, "Model", 5) == 0)
        veil__serve_metrics_request(j->s->metrics, j->v != NULL ? j->model : "",
                                    j->v != NULL ? j->v->version : 0, j->api, "GRPC", code,
                                    veil_time_mono_ns() - j->start_ns);
    veil_grpc_call_finish(j->call, code, msg, resp);
    if (j->v != NULL)
        veil__serve_repo_release(j->s->repo, j->v);
    veil_arena_release(&j->arena);
    veil_free(j);
}

static void job_fail(struct kgjob *j, const struct sv_status *st)
{
    job_end(j, st->code, st->msg, veil_span_make(NULL, 0));
}

static void job_reply(struct kgjob *j, const ProtobufCMessage *msg)
{
    struct sv_status st;
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *p = NULL;
    if (veil_arena_alloc_uninit(&j->arena, n > 0 ? n : 1, 8, (void **)&p) != VEIL_OK) {
        sv_fail(&st, VEIL_GRPC_RESOURCE_EXHAUSTED, "response too large");
        job_fail(j, &st);
        return;
    }
    protobuf_c_message_pack(msg, p);
    job_end(j, 0, NULL, veil_span_make(p, n));
}

static void *unpack(struct kgjob *j, const ProtobufCMessageDescriptor *d)
{
    ProtobufCAllocator al;
    veil__serve_pb_allocator(&j->arena, &al);
    struct veil_span m = veil_grpc_call_message(j->call);
    return protobuf_c_message_unpack(d, &al, m.len, m.p);
}

/* Resolves name and version to a held AVAILABLE version. */
static bool acquire(struct kgjob *j, const char *name, const char *version, struct sv_status *st)
{
    bool has = false;
    int64_t ver = 0;
    if (name == NULL || name[0] == '\0')
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "the request names no model");
    if (!veil__serve_kv2_version(version, &has, &ver))
        return sv_fail(st, VEIL_GRPC_NOT_FOUND, "model '%s' has no version '%s'", name, version);
    if (!veil__serve_repo_acquire(j->s->repo, name, has, ver, NULL, &j->v, st))
        return false;
    snprintf(j->model, sizeof(j->model), "%s", name);
    return true;
}

/* ---- Server and model state ---- */

static void do_server_live(struct kgjob *j)
{
    Inference__ServerLiveResponse r;
    inference__server_live_response__init(&r);
    r.live = 1;
    job_reply(j, &r.base);
}

static void do_server_ready(struct kgjob *j)
{
    Inference__ServerReadyResponse r;
    inference__server_ready_response__init(&r);
    r.ready = veil__serve_ready(j->s);
    job_reply(j, &r.base);
}

static void do_model_ready(struct kgjob *j)
{
    struct sv_status st = {0, ""};
    Inference__ModelReadyRequest *req = unpack(j, &inference__model_ready_request__descriptor);
    if (req == NULL) {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "Could not parse ModelReadyRequest");
        job_fail(j, &st);
        return;
    }
    if (req->name[0] == '\0') {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "the request names no model");
        job_fail(j, &st);
        return;
    }
    /* A health call: OK with ready false for a model or version that is not there. */
    Inference__ModelReadyResponse r;
    inference__model_ready_response__init(&r);
    r.ready = acquire(j, req->name, req->version, &st);
    job_reply(j, &r.base);
}

static void do_server_metadata(struct kgjob *j)
{
    static char ext0[] = "binary_tensor_data";
    char *ext[] = {ext0};
    Inference__ServerMetadataResponse r;
    inference__server_metadata_response__init(&r);
    r.name = (char *)"veil";
    r.version = (char *)SV_KV2_VERSION;
    r.n_extensions = 1;
    r.extensions = ext;
    job_reply(j, &r.base);
}

static bool tensor_meta(struct kgjob *j, const struct sv_tinfo *tis, size_t n,
                        Inference__ModelMetadataResponse__TensorMetadata ***out,
                        struct sv_status *st)
{
    Inference__ModelMetadataResponse__TensorMetadata *tm = NULL, **tp = NULL;
    if (veil_arena_allocarray(&j->arena, n + 1, sizeof(*tm), 8, (void **)&tm) != VEIL_OK ||
        veil_arena_allocarray(&j->arena, n + 1, sizeof(*tp), 8, (void **)&tp) != VEIL_OK)
        return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < n; i++) {
        int64_t *dims = NULL;
        inference__model_metadata_response__tensor_metadata__init(&tm[i]);
        if (veil_arena_allocarray(&j->arena, tis[i].rank + 1, sizeof(*dims), 8, (void **)&dims) !=
            VEIL_OK)
            return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        for (size_t d = 0; d < tis[i].rank; d++)
            dims[d] = tis[i].dims[d] < 0 ? -1 : tis[i].dims[d];
        const char *dn = veil__serve_kv2_dtype_name(tis[i].dt);
        tm[i].name = tis[i].name;
        tm[i].datatype = (char *)(uintptr_t)(dn != NULL ? dn : "");
        tm[i].n_shape = tis[i].rank;
        tm[i].shape = dims;
        tp[i] = &tm[i];
    }
    *out = tp;
    return true;
}

static void do_model_metadata(struct kgjob *j)
{
    struct sv_status st = {0, ""};
    int64_t vers[64];
    char vtext[64][24];
    char *vp[64];
    size_t nv = 0;
    bool known = false;
    Inference__ModelMetadataRequest *req =
        unpack(j, &inference__model_metadata_request__descriptor);
    if (req == NULL) {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "Could not parse ModelMetadataRequest");
        goto fail;
    }
    if (!acquire(j, req->name, req->version, &st))
        goto fail;
    veil__serve_kv2_versions(j->s->repo, j->model, vers, 64, &nv, &known);
    for (size_t i = 0; i < nv; i++) {
        snprintf(vtext[i], sizeof(vtext[i]), "%lld", (long long)vers[i]);
        vp[i] = vtext[i];
    }
    Inference__ModelMetadataResponse r;
    inference__model_metadata_response__init(&r);
    r.name = j->model;
    r.n_versions = nv;
    r.versions = vp;
    r.platform = (char *)SV_KV2_PLATFORM;
    if (!tensor_meta(j, j->v->sig.in, j->v->sig.n_in, &r.inputs, &st) ||
        !tensor_meta(j, j->v->sig.out, j->v->sig.n_out, &r.outputs, &st))
        goto fail;
    r.n_inputs = j->v->sig.n_in;
    r.n_outputs = j->v->sig.n_out;
    job_reply(j, &r.base);
    return;
fail:
    job_fail(j, &st);
}

/* ---- ModelInfer ---- */

/* Sets t's shape from the request and checks its size against the caps. */
static bool set_shape(const Inference__ModelInferRequest__InferInputTensor *x, enum veil_dtype dt,
                      struct veil_tensor *t, uint64_t *numel, struct sv_status *st)
{
    uint64_t n = 0, nbytes = 0;
    if (x->n_shape > VEIL_LIMIT_TENSOR_RANK)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "input '%s': rank %zu exceeds %d", x->name,
                       x->n_shape, VEIL_LIMIT_TENSOR_RANK);
    t->dtype = dt;
    t->rank = x->n_shape;
    for (size_t d = 0; d < x->n_shape; d++) {
        if (x->shape[d] < 0)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "input '%s': shape has a negative dimension", x->name);
        t->dims[d] = x->shape[d];
    }
    if (veil_tensor_numel(t->dims, t->rank, &n) != VEIL_OK ||
        __builtin_mul_overflow(n, (uint64_t)(dt == VEIL_DT_STRING ? 1 : veil_dtype_size(dt)),
                               &nbytes) ||
        nbytes > SV_REQ_ARENA_MAX)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "input '%s': shape is too large", x->name);
    t->nbytes = (size_t)nbytes;
    *numel = n;
    return true;
}

static size_t contents_total(const Inference__InferTensorContents *c)
{
    return c->n_bool_contents + c->n_int_contents + c->n_int64_contents + c->n_uint_contents +
           c->n_uint64_contents + c->n_fp32_contents + c->n_fp64_contents + c->n_bytes_contents;
}

/* Fills t from typed contents: exactly numel values in the datatype's field and none elsewhere. */
static bool from_contents(struct kgjob *j, const Inference__ModelInferRequest__InferInputTensor *x,
                          struct veil_tensor *t, uint64_t numel, struct sv_status *st)
{
    static const Inference__InferTensorContents empty = INFERENCE__INFER_TENSOR_CONTENTS__INIT;
    const Inference__InferTensorContents *c = x->contents != NULL ? x->contents : &empty;
    size_t have = 0;
    switch (t->dtype) {
    case VEIL_DT_BOOL:
        have = c->n_bool_contents;
        break;
    case VEIL_DT_INT8:
    case VEIL_DT_INT16:
    case VEIL_DT_INT32:
        have = c->n_int_contents;
        break;
    case VEIL_DT_INT64:
        have = c->n_int64_contents;
        break;
    case VEIL_DT_UINT8:
    case VEIL_DT_UINT16:
    case VEIL_DT_UINT32:
        have = c->n_uint_contents;
        break;
    case VEIL_DT_UINT64:
        have = c->n_uint64_contents;
        break;
    case VEIL_DT_FLOAT:
        have = c->n_fp32_contents;
        break;
    case VEIL_DT_DOUBLE:
        have = c->n_fp64_contents;
        break;
    case VEIL_DT_STRING:
        have = c->n_bytes_contents;
        break;
    default:
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "input '%s': %s data can only travel in raw_input_contents", x->name,
                       veil__serve_kv2_dtype_name(t->dtype));
    }
    if (have != numel || contents_total(c) != have)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "input '%s': contents must hold exactly %llu values in the field of "
                       "datatype %s (got %zu there, %zu in all)",
                       x->name, (unsigned long long)numel, veil__serve_kv2_dtype_name(t->dtype),
                       have, contents_total(c));
    if (t->dtype == VEIL_DT_STRING)
        return true; /* binding refuses it: no model Veil serves takes strings */
    /* Fields whose element type is the tensor's are used in place. */
    switch (t->dtype) {
    case VEIL_DT_INT32:
        t->data = c->int_contents;
        return true;
    case VEIL_DT_INT64:
        t->data = c->int64_contents;
        return true;
    case VEIL_DT_UINT32:
        t->data = c->uint_contents;
        return true;
    case VEIL_DT_UINT64:
        t->data = c->uint64_contents;
        return true;
    case VEIL_DT_FLOAT:
        t->data = c->fp32_contents;
        return true;
    case VEIL_DT_DOUBLE:
        t->data = c->fp64_contents;
        return true;
    default:
        break;
    }
    if (veil_arena_alloc_uninit(&j->arena, t->nbytes > 0 ? t->nbytes : 1, 64, &t->data) != VEIL_OK)
        return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory for input '%s'", x->name);
    for (size_t i = 0; i < numel; i++) {
        int64_t v = 0;
        int64_t lo = 0, hi = 1;
        switch (t->dtype) {
        case VEIL_DT_BOOL:
            v = c->bool_contents[i] != 0;
            break;
        case VEIL_DT_INT8:
            v = c->int_contents[i], lo = INT8_MIN, hi = INT8_MAX;
            break;
        case VEIL_DT_INT16:
            v = c->int_contents[i], lo = INT16_MIN, hi = INT16_MAX;
            break;
        case VEIL_DT_UINT8:
            v = c->uint_contents[i], hi = UINT8_MAX;
            break;
        default: /* UINT16 */
            v = c->uint_contents[i], hi = UINT16_MAX;
            break;
        }
        if (v < lo || v > hi)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "input '%s': value %lld is out of range for %s", x->name, (long long)v,
                           veil__serve_kv2_dtype_name(t->dtype));
        if (t->dtype == VEIL_DT_INT8)
            ((int8_t *)t->data)[i] = (int8_t)v;
        else if (t->dtype == VEIL_DT_INT16)
            ((int16_t *)t->data)[i] = (int16_t)v;
        else if (t->dtype == VEIL_DT_UINT16)
            ((uint16_t *)t->data)[i] = (uint16_t)v;
        else
            ((uint8_t *)t->data)[i] = (uint8_t)v;
    }
    return true;
}

static bool has_param(Inference__ModelInferRequest__InferRequestedOutputTensor *o, const char *k)
{
    for (size_t i = 0; i < o->n_parameters; i++)
        if (o->parameters[i]->key != NULL && strcmp(o->parameters[i]->key, k) == 0)
            return true;
    return false;
}

/* Decodes a ModelInferRequest into j->rq (the shared form the binder takes). */
static bool decode_infer(struct kgjob *j, const Inference__ModelInferRequest *req,
                         struct sv_status *st)
{
    struct kv2_request *rq = &j->rq;
    bool raw = req->n_raw_input_contents > 0;
    if (req->n_inputs == 0)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "the request has no inputs");
    if (req->n_inputs > SV_MAX_IO || req->n_outputs > SV_MAX_IO)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "at most %d inputs and outputs", SV_MAX_IO);
    if (raw && req->n_raw_input_contents != req->n_inputs)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "raw_input_contents has %zu entries for %zu inputs",
                       req->n_raw_input_contents, req->n_inputs);
    if (req->id[0] != '\0')
        rq->id = req->id;
    for (size_t i = 0; i < req->n_inputs; i++) {
        const Inference__ModelInferRequest__InferInputTensor *x = req->inputs[i];
        struct kv2_input *in = &rq->in[i];
        uint64_t numel = 0;
        if (x->name[0] == '\0' || strlen(x->name) > SV_NAME_MAX)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "input %zu must have a name of 1 to %d bytes", i, SV_NAME_MAX);
        in->name = x->name;
        enum veil_dtype dt = veil__serve_kv2_dtype_parse(veil_span_from_str(x->datatype));
        if (dt == VEIL_DT_UNDEFINED)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "input '%s': datatype '%.32s' is not supported", x->name, x->datatype);
        if (!set_shape(x, dt, &in->t, &numel, st))
            return false;
        if (!raw) {
            if (!from_contents(j, x, &in->t, numel, st))
                return false;
            continue;
        }
        if (x->contents != NULL)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "input '%s' sets contents while the request uses raw_input_contents",
                           x->name);
        struct veil_span b =
            veil_span_make(req->raw_input_contents[i].data, req->raw_input_contents[i].len);
        if (dt == VEIL_DT_STRING) {
            if (!veil__serve_kv2_bytes_ok(b, numel))
                return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                               "input '%s': BYTES data is not %llu length-prefixed elements",
                               x->name, (unsigned long long)numel);
            in->t.nbytes = b.len;
        } else if (b.len != in->t.nbytes) {
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "input '%s': raw_input_contents holds %zu bytes, shape and datatype "
                           "need %zu",
                           x->name, b.len, in->t.nbytes);
        }
        if (b.len == 0 || ((uintptr_t)b.p & 63) == 0) {
            in->t.data = (void *)(uintptr_t)b.p;
        } else {
            if (veil_arena_alloc_uninit(&j->arena, b.len, 64, &in->t.data) != VEIL_OK)
                return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory for input '%s'",
                               x->name);
            memcpy(in->t.data, b.p, b.len);
        }
    }
    rq->n_in = req->n_inputs;
    /* An empty tensor still gets an address: the engine is never handed NULL data. */
    for (size_t i = 0; i < rq->n_in; i++)
        if (rq->in[i].t.data == NULL &&
            veil_arena_alloc(&j->arena, 1, 64, &rq->in[i].t.data) != VEIL_OK)
            return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < req->n_outputs; i++) {
        Inference__ModelInferRequest__InferRequestedOutputTensor *o = req->outputs[i];
        if (o->name[0] == '\0')
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "output %zu has no name", i);
        if (has_param(o, "classification"))
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "output '%s': the classification parameter is not supported", o->name);
        rq->out[i].name = o->name;
    }
    rq->n_out = req->n_outputs;
    j->raw = raw;
    return true;
}

/* Typed contents for t when its datatype has a field; false when it has none (FP16). */
static bool to_contents(struct kgjob *j, const struct veil_tensor *t,
                        Inference__InferTensorContents *c)
{
    uint64_t numel = 0;
    if (veil_tensor_numel(t->dims, t->rank, &numel) != VEIL_OK)
        return false;
    size_t n = (size_t)numel;
    switch (t->dtype) {
    case VEIL_DT_FLOAT:
        c->n_fp32_contents = n, c->fp32_contents = t->data;
        return true;
    case VEIL_DT_DOUBLE:
        c->n_fp64_contents = n, c->fp64_contents = t->data;
        return true;
    case VEIL_DT_INT32:
        c->n_int_contents = n, c->int_contents = t->data;
        return true;
    case VEIL_DT_INT64:
        c->n_int64_contents = n, c->int64_contents = t->data;
        return true;
    case VEIL_DT_UINT32:
        c->n_uint_contents = n, c->uint_contents = t->data;
        return true;
    case VEIL_DT_UINT64:
        c->n_uint64_contents = n, c->uint64_contents = t->data;
        return true;
    case VEIL_DT_BOOL:
    case VEIL_DT_INT8:
    case VEIL_DT_INT16:
    case VEIL_DT_UINT8:
    case VEIL_DT_UINT16:
        break;
    default:
        return false;
    }
    int32_t *w = NULL;
    if (veil_arena_allocarray(&j->arena, n + 1, sizeof(*w), 8, (void **)&w) != VEIL_OK)
        return false;
    for (size_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case VEIL_DT_INT8:
            w[i] = ((const int8_t *)t->data)[i];
            break;
        case VEIL_DT_INT16:
            w[i] = ((const int16_t *)t->data)[i];
            break;
        case VEIL_DT_UINT16:
            w[i] = ((const uint16_t *)t->data)[i];
            break;
        default: /* BOOL, UINT8 */
            w[i] = ((const uint8_t *)t->data)[i];
            break;
        }
    }
    if (t->dtype == VEIL_DT_BOOL)
        c->n_bool_contents = n, c->bool_contents = (protobuf_c_boolean *)w;
    else if (t->dtype == VEIL_DT_INT8 || t->dtype == VEIL_DT_INT16)
        c->n_int_contents = n, c->int_contents = w;
    else
        c->n_uint_contents = n, c->uint_contents = (uint32_t *)w;
    return true;
}

static void infer_done(void *arg, bool ok, struct veil_tensor *outs, size_t n_out,
                       struct sv_status *st)
{
    struct kgjob *j = arg;
    struct sv_status est = {0, ""};
    Inference__ModelInferResponse r;
    Inference__ModelInferResponse__InferOutputTensor ot[SV_MAX_IO], *otp[SV_MAX_IO];
    Inference__InferTensorContents ct[SV_MAX_IO];
    ProtobufCBinaryData raw[SV_MAX_IO];
    int64_t shapes[SV_MAX_IO][VEIL_LIMIT_TENSOR_RANK];
    char vtext[24];
    if (!ok) {
        job_fail(j, st);
        return;
    }
    _Static_assert(sizeof(protobuf_c_boolean) == sizeof(int32_t), "bool_contents as int32");
    inference__model_infer_response__init(&r);
    const struct kv2_plan *p = &j->plan;
    bool good = true;
    /* Typed answers need a field for every output's type; otherwise all go raw. */
    bool raw_reply = j->raw;
    for (size_t i = 0; i < p->n && !raw_reply; i++) {
        inference__infer_tensor_contents__init(&ct[i]);
        raw_reply = !to_contents(j, &outs[p->idx[i]], &ct[i]);
    }
    for (size_t i = 0; i < p->n; i++) {
        const struct veil_tensor *t = &outs[p->idx[i]];
        const char *dn = veil__serve_kv2_dtype_name(t->dtype);
        inference__model_infer_response__infer_output_tensor__init(&ot[i]);
        if (dn == NULL) {
            good = sv_fail(&est, VEIL_GRPC_INTERNAL, "output '%s' has a type v2 cannot carry",
                           j->v->sig.out[p->idx[i]].name);
            break;
        }
        memcpy(shapes[i], t->dims, t->rank * sizeof(t->dims[0]));
        ot[i].name = j->v->sig.out[p->idx[i]].name;
        ot[i].datatype = (char *)(uintptr_t)dn;
        ot[i].n_shape = t->rank;
        ot[i].shape = shapes[i];
        if (raw_reply) {
            raw[i].data = t->data;
            raw[i].len = t->nbytes;
        } else {
            ot[i].contents = &ct[i];
        }
        otp[i] = &ot[i];
    }
    if (good) {
        snprintf(vtext, sizeof(vtext), "%lld", (long long)j->v->version);
        r.model_name = j->model;
        r.model_version = vtext;
        if (j->rq.id != NULL)
            r.id = j->rq.id;
        r.n_outputs = p->n;
        r.outputs = otp;
        if (raw_reply) {
            r.n_raw_output_contents = p->n;
            r.raw_output_contents = raw;
        }
        size_t n = protobuf_c_message_get_packed_size(&r.base);
        uint8_t *buf = NULL;
        if (veil_arena_alloc_uninit(&j->arena, n > 0 ? n : 1, 8, (void **)&buf) != VEIL_OK) {
            good = sv_fail(&est, VEIL_GRPC_RESOURCE_EXHAUSTED, "response too large");
        } else {
            protobuf_c_message_pack(&r.base, buf);
            for (size_t i = 0; i < n_out; i++)
                veil_tensor_release(&outs[i]);
            job_end(j, 0, NULL, veil_span_make(buf, n));
            return;
        }
    }
    for (size_t i = 0; i < n_out; i++)
        veil_tensor_release(&outs[i]);
    job_fail(j, &est);
}

static void do_model_infer(struct kgjob *j)
{
    struct sv_status st = {0, ""};
    Inference__ModelInferRequest *req = unpack(j, &inference__model_infer_request__descriptor);
    if (req == NULL) {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "Could not parse ModelInferRequest");
        goto fail;
    }
    if (!acquire(j, req->model_name, req->model_version, &st) || !decode_infer(j, req, &st) ||
        !veil__serve_kv2_bind(&j->rq, &j->v->sig, j->in, &j->plan, &st))
        goto fail;
    veil__serve_run(j->s->repo, j->v, j->in, veil_grpc_call_deadline_ns(j->call), infer_done, j);
    return;
fail:
    job_fail(j, &st);
}

static void job_main(void *arg)
{
    struct kgjob *j = arg;
    struct sv_status st = {0, ""};
    const char *m = j->api;
    if (strcmp(m, "ServerLive") == 0) {
        do_server_live(j);
    } else if (strcmp(m, "ServerReady") == 0) {
        do_server_ready(j);
    } else if (strcmp(m, "ModelReady") == 0) {
        do_model_ready(j);
    } else if (strcmp(m, "ServerMetadata") == 0) {
        do_server_metadata(j);
    } else if (strcmp(m, "ModelMetadata") == 0) {
        do_model_metadata(j);
    } else if (strcmp(m, "ModelInfer") == 0) {
        do_model_infer(j);
    } else {
        sv_fail(&st, VEIL_GRPC_UNIMPLEMENTED, "Method not found: %s",
                veil_grpc_call_method(j->call));
        j->api[0] = '\0';
        job_fail(j, &st);
    }
}

void veil__serve_kserve_grpc_handle(struct veil_serve *s, struct veil_grpc_call *call)
{
    struct kgjob *j = veil_calloc(1, sizeof(*j));
    if (j == NULL) {
        veil_grpc_call_finish(call, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory",
                              veil_span_make(NULL, 0));
        return;
    }
    j->s = s;
    j->call = call;
    j->start_ns = veil_grpc_call_start_ns(call);
    const char *api = veil_grpc_call_method(call) + strlen(KS);
    snprintf(j->api, sizeof(j->api), "%s", strlen(api) < sizeof(j->api) ? api : "");
    veil_arena_init(&j->arena, 64u << 10, SV_REQ_ARENA_MAX);
    if (!veil__serve_sched_submit(s->sched, job_main, j)) {
        struct sv_status st;
        sv_fail(&st, VEIL_GRPC_UNAVAILABLE, "server overloaded: request queue is full");
        job_fail(j, &st);
    }
}
