/*
 * The gRPC frontend: tensorflow.serving.PredictionService (Predict, GetModelMetadata;
 * Classify, Regress and MultiInference answer UNIMPLEMENTED) and
 * tensorflow.serving.ModelService (GetModelStatus); inference.GRPCInferenceService (KServe v2)
 * goes to kserve_grpc.c. Calls arrive on the loop thread and are
 * handed to request threads at once; each request decodes into its own arena (protobuf-c
 * allocates from it, tensor_content is used in place), runs, encodes and finishes there.
 * Codes and messages follow TF Serving (tfserving-api.md section 2).
 */
#include "serve_int.h"

#include <stdio.h>
#include <string.h>

#include "tensorflow_serving/apis/get_model_metadata.pb-c.h"
#include "tensorflow_serving/apis/get_model_status.pb-c.h"
#include "tensorflow_serving/apis/predict.pb-c.h"

#define PS "/tensorflow.serving.PredictionService/"
#define MS "/tensorflow.serving.ModelService/"

struct gjob {
    struct veil_serve *s;
    struct veil_grpc_call *call;
    struct veil_arena arena;
    struct sv_version *v;
    char api[24];
    char model[SV_NAME_MAX + 1];
    uint64_t start_ns;
    bool keep[SV_MAX_IO]; /* outputs kept by output_filter */
    struct veil_tensor in[SV_MAX_IO];
};

static void job_end(struct gjob *j, int code, const char *msg, struct veil_span resp)
{
    veil__serve_metrics_request(j->s->metrics, j->v != NULL ? j->model : "",
                                j->v != NULL ? j->v->version : 0, j->api, "GRPC", code,
                                veil_time_mono_ns() - j->start_ns);
    /* The call (and everything borrowed from it) is gone after this. */
    veil_grpc_call_finish(j->call, code, msg, resp);
    if (j->v != NULL)
        veil__serve_repo_release(j->s->repo, j->v);
    veil_arena_release(&j->arena);
    veil_free(j);
}

static void job_fail(struct gjob *j, const struct sv_status *st)
{
    job_end(j, st->code, st->msg, veil_span_make(NULL, 0));
}

/* Resolves a ModelSpec to a held version (TF's ModelSpec checks first). */
static bool resolve(struct gjob *j, const Tensorflow__Serving__ModelSpec *spec,
                    struct sv_status *st)
{
    if (spec == NULL)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "Missing ModelSpec");
    if (spec->name == NULL || spec->name[0] == '\0')
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "ModelSpec has no name specified.");
    bool has_version = false;
    int64_t version = 0;
    const char *label = NULL;
    if (spec->version_choice_case == TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION &&
        spec->version != NULL) {
        has_version = true;
        version = spec->version->value;
    } else if (spec->version_choice_case ==
               TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION_LABEL) {
        label = spec->version_label;
    }
    if (!veil__serve_repo_acquire(j->s->repo, spec->name, has_version, version, label, &j->v, st))
        return false;
    snprintf(j->model, sizeof(j->model), "%s", spec->name);
    return true;
}

static bool pack_reply(struct gjob *j, const ProtobufCMessage *msg, struct veil_span *out,
                       struct sv_status *st)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *p = NULL;
    if (veil_arena_alloc(&j->arena, n > 0 ? n : 1, 8, (void **)&p) != VEIL_OK)
        return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "response too large");
    protobuf_c_message_pack(msg, p);
    *out = veil_span_make(p, n);
    return true;
}

static void names_set(const char *const *names, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && o + 2 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? "," : "", names[i]);
}

/* ---- Predict ---- */

static void predict_done(void *arg, bool ok, struct veil_tensor *outs, size_t n_out,
                         struct sv_status *st)
{
    struct gjob *j = arg;
    struct sv_status est = {0, ""};
    Tensorflow__Serving__PredictResponse resp;
    tensorflow__serving__predict_response__init(&resp);
    Tensorflow__Serving__ModelSpec spec;
    tensorflow__serving__model_spec__init(&spec);
    Google__Protobuf__Int64Value ver;
    google__protobuf__int64_value__init(&ver);
    Tensorflow__Serving__PredictResponse__OutputsEntry ents[SV_MAX_IO];
    Tensorflow__Serving__PredictResponse__OutputsEntry *entp[SV_MAX_IO];
    Tensorflow__TensorProto tps[SV_MAX_IO];
    struct veil_span packed = {NULL, 0};
    if (!ok) {
        job_fail(j, st);
        return;
    }
    size_t k = 0;
    bool good = true;
    for (size_t i = 0; i < n_out && good; i++) {
        if (!j->keep[i])
            continue;
        tensorflow__serving__predict_response__outputs_entry__init(&ents[k]);
        tensorflow__tensor_proto__init(&tps[k]);
        good = veil__serve_tensor_to_proto(&outs[i], &j->arena, &tps[k], &est);
        ents[k].key = j->v->sig.out[i].name;
        ents[k].value = &tps[k];
        entp[k] = &ents[k];
        k++;
    }
    if (good) {
        ver.value = j->v->version;
        spec.name = j->model;
        spec.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
        spec.version = &ver;
        spec.signature_name = "serving_default";
        resp.model_spec = &spec;
        resp.n_outputs = k;
        resp.outputs = entp;
        good = pack_reply(j, &resp.base, &packed, &est);
    }
    for (size_t i = 0; i < n_out; i++)
        veil_tensor_release(&outs[i]);
    if (!good)
        job_fail(j, &est);
    else
        job_end(j, 0, NULL, packed);
}

static void do_predict(struct gjob *j)
{
    struct sv_status st = {0, ""};
    ProtobufCAllocator al;
    veil__serve_pb_allocator(&j->arena, &al);
    struct veil_span m = veil_grpc_call_message(j->call);
    Tensorflow__Serving__PredictRequest *req =
        tensorflow__serving__predict_request__unpack(&al, m.len, m.p);
    if (req == NULL) {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "Could not parse PredictRequest");
        goto fail;
    }
    if (!resolve(j, req->model_spec, &st))
        goto fail;
    const char *sig = req->model_spec->signature_name;
    if (sig != NULL && sig[0] != '\0' && strcmp(sig, "serving_default") != 0) {
        sv_fail(&st, VEIL_GRPC_FAILED_PRECONDITION, "Serving signature key \"%s\" not found.", sig);
        goto fail;
    }
    const struct sv_sig *sg = &j->v->sig;
    /* Input aliases: counts first, then names (TF's messages). */
    const char *sent[SV_MAX_IO + 1], *want[SV_MAX_IO];
    char sent_s[600], want_s[600];
    for (size_t i = 0; i < sg->n_in; i++)
        want[i] = sg->in[i].name;
    size_t ns = req->n_inputs < SV_MAX_IO ? req->n_inputs : SV_MAX_IO;
    for (size_t i = 0; i < ns; i++)
        sent[i] = req->inputs[i]->key != NULL ? req->inputs[i]->key : "";
    names_set(want, sg->n_in, want_s, sizeof(want_s));
    if (req->n_inputs != sg->n_in) {
        char extra[600] = "", missing[600] = "";
        size_t eo = 0, mo = 0;
        for (size_t i = 0; i < ns; i++) {
            bool known = false;
            for (size_t k = 0; k < sg->n_in && !known; k++)
                known = strcmp(sent[i], want[k]) == 0;
            if (!known && eo + 2 < sizeof(extra))
                eo += (size_t)snprintf(extra + eo, sizeof(extra) - eo, "%s%s", eo ? "," : "",
                                       sent[i]);
        }
        for (size_t k = 0; k < sg->n_in; k++) {
            bool got = false;
            for (size_t i = 0; i < ns && !got; i++)
                got = strcmp(sent[i], want[k]) == 0;
            if (!got && mo + 2 < sizeof(missing))
                mo += (size_t)snprintf(missing + mo, sizeof(missing) - mo, "%s%s", mo ? "," : "",
                                       want[k]);
        }
        names_set(sent, ns, sent_s, sizeof(sent_s));
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT,
                "input size does not match signature: %zu!=%zu len({%s}) != len({%s}). Sent "
                "extra: {%s}. Missing but required: {%s}.",
                req->n_inputs, sg->n_in, sent_s, want_s, extra, missing);
        goto fail;
    }
    for (size_t k = 0; k < sg->n_in; k++) {
        const Tensorflow__TensorProto *tp = NULL;
        for (size_t i = 0; i < req->n_inputs; i++)
            if (strcmp(sent[i], want[k]) == 0)
                tp = req->inputs[i]->value;
        if (tp == NULL) {
            for (size_t i = 0; i < req->n_inputs; i++) {
                bool known = false;
                for (size_t q = 0; q < sg->n_in && !known; q++)
                    known = strcmp(sent[i], want[q]) == 0;
                if (!known) {
                    sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT,
                            "input tensor alias not found in signature: %s. Inputs expected to "
                            "be in the set {%s}.",
                            sent[i], want_s);
                    goto fail;
                }
            }
            sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "duplicate input tensor alias");
            goto fail;
        }
        if (!veil__serve_tensor_from_proto(tp, &sg->in[k], &j->arena, &j->in[k], &st) ||
            !veil__serve_tensor_check(&j->in[k], &sg->in[k], k, &st))
            goto fail;
    }
    /* output_filter: each alias must exist and appear once; empty means all. */
    for (size_t i = 0; i < sg->n_out; i++)
        j->keep[i] = req->n_output_filter == 0;
    for (size_t f = 0; f < req->n_output_filter; f++) {
        const char *a = req->output_filter[f];
        size_t idx = SIZE_MAX;
        for (size_t i = 0; i < sg->n_out; i++)
            if (strcmp(sg->out[i].name, a) == 0)
                idx = i;
        if (idx == SIZE_MAX) {
            const char *outs[SV_MAX_IO];
            char set[600];
            for (size_t i = 0; i < sg->n_out; i++)
                outs[i] = sg->out[i].name;
            names_set(outs, sg->n_out, set, sizeof(set));
            sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT,
                    "output tensor alias not found in signature: %s Outputs expected to be in "
                    "the set {%s}.",
                    a, set);
            goto fail;
        }
        if (j->keep[idx]) {
            sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "duplicate output tensor alias: %s", a);
            goto fail;
        }
        j->keep[idx] = true;
    }
    veil__serve_run(j->s->repo, j->v, j->in, veil_grpc_call_deadline_ns(j->call), predict_done, j);
    return;
fail:
    job_fail(j, &st);
}

/* ---- GetModelMetadata ---- */

static bool tensor_info(struct gjob *j, const struct sv_tinfo *ti, Tensorflow__TensorInfo **out,
                        struct sv_status *st)
{
    Tensorflow__TensorInfo *info = NULL;
    Tensorflow__TensorShapeProto *sh = NULL;
    Tensorflow__TensorShapeProto__Dim *dims = NULL, **dimp = NULL;
    if (veil_arena_alloc(&j->arena, sizeof(*info), 8, (void **)&info) != VEIL_OK ||
        veil_arena_alloc(&j->arena, sizeof(*sh), 8, (void **)&sh) != VEIL_OK ||
        veil_arena_allocarray(&j->arena, ti->rank + 1, sizeof(*dims), 8, (void **)&dims) !=
            VEIL_OK ||
        veil_arena_allocarray(&j->arena, ti->rank + 1, sizeof(*dimp), 8, (void **)&dimp) != VEIL_OK)
        return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    tensorflow__tensor_info__init(info);
    tensorflow__tensor_shape_proto__init(sh);
    for (size_t d = 0; d < ti->rank; d++) {
        tensorflow__tensor_shape_proto__dim__init(&dims[d]);
        dims[d].size = ti->dims[d] < 0 ? -1 : ti->dims[d];
        dimp[d] = &dims[d];
    }
    sh->n_dim = ti->rank;
    sh->dim = dimp;
    info->dtype = (Tensorflow__DataType)ti->tf_dtype;
    info->tensor_shape = sh;
    info->encoding_case = TENSORFLOW__TENSOR_INFO__ENCODING_NAME;
    info->name = ti->name;
    *out = info;
    return true;
}

static bool io_map(struct gjob *j, const struct sv_tinfo *tis, size_t n, bool inputs,
                   Tensorflow__SignatureDef *sd, struct sv_status *st)
{
    void **ents = NULL;
    size_t esz = inputs ? sizeof(Tensorflow__SignatureDef__InputsEntry)
                        : sizeof(Tensorflow__SignatureDef__OutputsEntry);
    uint8_t *store = NULL;
    if (veil_arena_allocarray(&j->arena, n + 1, sizeof(void *), 8, (void **)&ents) != VEIL_OK ||
        veil_arena_allocarray(&j->arena, n + 1, esz, 8, (void **)&store) != VEIL_OK)
        return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < n; i++) {
        Tensorflow__TensorInfo *info = NULL;
        if (!tensor_info(j, &tis[i], &info, st))
            return false;
        if (inputs) {
            Tensorflow__SignatureDef__InputsEntry *e =
                (Tensorflow__SignatureDef__InputsEntry *)(void *)(store + i * esz);
            tensorflow__signature_def__inputs_entry__init(e);
            e->key = tis[i].name;
            e->value = info;
            ents[i] = e;
        } else {
            Tensorflow__SignatureDef__OutputsEntry *e =
                (Tensorflow__SignatureDef__OutputsEntry *)(void *)(store + i * esz);
            tensorflow__signature_def__outputs_entry__init(e);
            e->key = tis[i].name;
            e->value = info;
            ents[i] = e;
        }
    }
    if (inputs) {
        sd->n_inputs = n;
        sd->inputs = (Tensorflow__SignatureDef__InputsEntry **)ents;
    } else {
        sd->n_outputs = n;
        sd->outputs = (Tensorflow__SignatureDef__OutputsEntry **)ents;
    }
    return true;
}

static void do_metadata(struct gjob *j)
{
    struct sv_status st = {0, ""};
    ProtobufCAllocator al;
    veil__serve_pb_allocator(&j->arena, &al);
    struct veil_span m = veil_grpc_call_message(j->call);
    Tensorflow__Serving__GetModelMetadataRequest *req =
        tensorflow__serving__get_model_metadata_request__unpack(&al, m.len, m.p);
    if (req == NULL) {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "Could not parse GetModelMetadataRequest");
        goto fail;
    }
    if (req->model_spec == NULL) {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "Missing ModelSpec");
        goto fail;
    }
    if (req->n_metadata_field == 0) {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT,
                "GetModelMetadataRequest must specify at least one metadata_field");
        goto fail;
    }
    for (size_t i = 0; i < req->n_metadata_field; i++)
        if (strcmp(req->metadata_field[i], "signature_def") != 0) {
            sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "Metadata field %s is not supported",
                    req->metadata_field[i]);
            goto fail;
        }
    if (!resolve(j, req->model_spec, &st))
        goto fail;
    Tensorflow__SignatureDef sd;
    tensorflow__signature_def__init(&sd);
    Tensorflow__Serving__SignatureDefMap__SignatureDefEntry sde;
    tensorflow__serving__signature_def_map__signature_def_entry__init(&sde);
    Tensorflow__Serving__SignatureDefMap__SignatureDefEntry *sdep = &sde;
    Tensorflow__Serving__SignatureDefMap map;
    tensorflow__serving__signature_def_map__init(&map);
    if (!io_map(j, j->v->sig.in, j->v->sig.n_in, true, &sd, &st) ||
        !io_map(j, j->v->sig.out, j->v->sig.n_out, false, &sd, &st))
        goto fail;
    sd.method_name = "tensorflow/serving/predict";
    sde.key = "serving_default";
    sde.value = &sd;
    map.n_signature_def = 1;
    map.signature_def = &sdep;
    struct veil_span packed_map = {NULL, 0};
    if (!pack_reply(j, &map.base, &packed_map, &st))
        goto fail;
    Google__Protobuf__Any any;
    google__protobuf__any__init(&any);
    any.type_url = "type.googleapis.com/tensorflow.serving.SignatureDefMap";
    any.value.data = (uint8_t *)(uintptr_t)packed_map.p;
    any.value.len = packed_map.len;
    Tensorflow__Serving__GetModelMetadataResponse__MetadataEntry me;
    tensorflow__serving__get_model_metadata_response__metadata_entry__init(&me);
    Tensorflow__Serving__GetModelMetadataResponse__MetadataEntry *mep = &me;
    me.key = "signature_def";
    me.value = &any;
    Google__Protobuf__Int64Value ver;
    google__protobuf__int64_value__init(&ver);
    ver.value = j->v->version;
    Tensorflow__Serving__ModelSpec spec;
    tensorflow__serving__model_spec__init(&spec);
    spec.name = j->model;
    spec.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
    spec.version = &ver;
    Tensorflow__Serving__GetModelMetadataResponse resp;
    tensorflow__serving__get_model_metadata_response__init(&resp);
    resp.model_spec = &spec;
    resp.n_metadata = 1;
    resp.metadata = &mep;
    struct veil_span packed = {NULL, 0};
    if (!pack_reply(j, &resp.base, &packed, &st))
        goto fail;
    job_end(j, 0, NULL, packed);
    return;
fail:
    job_fail(j, &st);
}

/* ---- GetModelStatus ---- */

static void do_status(struct gjob *j)
{
    struct sv_status st = {0, ""};
    ProtobufCAllocator al;
    struct sv_version_status vs[64];
    size_t n = 0;
    veil__serve_pb_allocator(&j->arena, &al);
    struct veil_span m = veil_grpc_call_message(j->call);
    Tensorflow__Serving__GetModelStatusRequest *req =
        tensorflow__serving__get_model_status_request__unpack(&al, m.len, m.p);
    if (req == NULL) {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "Could not parse GetModelStatusRequest");
        goto fail;
    }
    const Tensorflow__Serving__ModelSpec *spec = req->model_spec;
    if (spec == NULL) {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "Missing ModelSpec");
        goto fail;
    }
    if (spec->name == NULL || spec->name[0] == '\0') {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "ModelSpec has no name specified.");
        goto fail;
    }
    bool has_version =
        spec->version_choice_case == TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION &&
        spec->version != NULL;
    if (!veil__serve_repo_status(j->s->repo, spec->name, has_version,
                                 has_version ? spec->version->value : 0, vs, 64, &n, &st))
        goto fail;
    Tensorflow__Serving__ModelVersionStatus mvs[64], *mvsp[64];
    Tensorflow__Serving__StatusProto sp[64];
    for (size_t i = 0; i < n; i++) {
        tensorflow__serving__model_version_status__init(&mvs[i]);
        tensorflow__serving__status_proto__init(&sp[i]);
        mvs[i].version = vs[i].version;
        mvs[i].state = (Tensorflow__Serving__ModelVersionStatus__State)vs[i].state;
        sp[i].error_code = (Tensorflow__Error__Code)vs[i].err_code;
        sp[i].error_message = vs[i].err_msg;
        mvs[i].status = &sp[i];
        mvsp[i] = &mvs[i];
    }
    Tensorflow__Serving__GetModelStatusResponse resp;
    tensorflow__serving__get_model_status_response__init(&resp);
    resp.n_model_version_status = n;
    resp.model_version_status = mvsp;
    struct veil_span packed = {NULL, 0};
    if (!pack_reply(j, &resp.base, &packed, &st))
        goto fail;
    job_end(j, 0, NULL, packed);
    return;
fail:
    job_fail(j, &st);
}

/* ---- grpc.health.v1.Health/Check (with --enable_grpc_healthcheck_service) ---- */

/*
 * HealthCheckRequest { string service = 1; } is read with the span reader (unknown fields are
 * skipped); the answer is HealthCheckResponse { status = 1 }: SERVING (1) when the server is
 * ready and the service is "" or one of TF Serving's two, NOT_SERVING (2) while models load,
 * NOT_FOUND for another service name, as gRPC's health service does.
 */
static bool health_service(struct veil_span m, struct veil_span *service)
{
    *service = veil_span_make(NULL, 0);
    while (m.len > 0) {
        uint64_t key = 0, v = 0;
        struct veil_span sub;
        if (veil_span_get_varint(&m, &key) != VEIL_OK)
            return false;
        switch (key & 7) {
        case 0:
            if (veil_span_get_varint(&m, &v) != VEIL_OK)
                return false;
            break;
        case 1:
            if (veil_span_skip(&m, 8) != VEIL_OK)
                return false;
            break;
        case 2:
            if (veil_span_get_varint(&m, &v) != VEIL_OK || v > m.len ||
                veil_span_get_bytes(&m, (size_t)v, &sub) != VEIL_OK)
                return false;
            if (key >> 3 == 1)
                *service = sub;
            break;
        case 5:
            if (veil_span_skip(&m, 4) != VEIL_OK)
                return false;
            break;
        default:
            return false;
        }
    }
    return true;
}

static void do_health(struct gjob *j)
{
    struct sv_status st = {0, ""};
    struct veil_span service;
    if (!j->s->opt.enable_grpc_healthcheck_service) {
        sv_fail(&st, VEIL_GRPC_UNIMPLEMENTED, "Method not found: %s",
                veil_grpc_call_method(j->call));
        job_fail(j, &st);
        return;
    }
    if (!health_service(veil_grpc_call_message(j->call), &service)) {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "Could not parse HealthCheckRequest");
        job_fail(j, &st);
        return;
    }
    if (service.len != 0 && !veil_span_eq_str(service, "tensorflow.serving.PredictionService") &&
        !veil_span_eq_str(service, "tensorflow.serving.ModelService")) {
        sv_fail(&st, VEIL_GRPC_NOT_FOUND, "unknown service");
        job_fail(j, &st);
        return;
    }
    uint8_t resp[2] = {0x08, veil__serve_ready(j->s) ? 1 : 2};
    job_end(j, 0, NULL, veil_span_make(resp, sizeof(resp)));
}

static void job_main(void *arg)
{
    struct gjob *j = arg;
    struct sv_status st = {0, ""};
    const char *method = veil_grpc_call_method(j->call);
    if (strcmp(method, PS "Predict") == 0) {
        do_predict(j);
    } else if (strcmp(method, PS "GetModelMetadata") == 0) {
        do_metadata(j);
    } else if (strcmp(method, MS "GetModelStatus") == 0) {
        do_status(j);
    } else if (strcmp(method, "/grpc.health.v1.Health/Check") == 0) {
        do_health(j);
    } else if (strcmp(method, PS "Classify") == 0 || strcmp(method, PS "Regress") == 0 ||
               strcmp(method, PS "MultiInference") == 0 ||
               strcmp(method, MS "HandleReloadConfigRequest") == 0) {
        sv_fail(&st, VEIL_GRPC_UNIMPLEMENTED,
                "%s is not implemented: Veil serves ONNX models through Predict", method);
        job_fail(j, &st);
    } else {
        sv_fail(&st, VEIL_GRPC_UNIMPLEMENTED, "Method not found: %s", method);
        job_fail(j, &st);
    }
}

void veil__serve_grpc_handle(void *ud, struct veil_grpc_call *call)
{
    struct veil_serve *s = ud;
    /* KServe v2 shares the port: its package cannot collide with tensorflow.serving's. */
    if (strncmp(veil_grpc_call_method(call), "/inference.GRPCInferenceService/", 32) == 0) {
        veil__serve_kserve_grpc_handle(s, call);
        return;
    }
    if (strcmp(veil_grpc_call_method(call), SV_EVIDENCE_GRPC_METHOD) == 0) {
        veil__serve_evidence_grpc(s, call);
        return;
    }
    struct gjob *j = veil_calloc(1, sizeof(*j));
    if (j == NULL) {
        veil_grpc_call_finish(call, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory",
                              veil_span_make(NULL, 0));
        return;
    }
    j->s = s;
    j->call = call;
    j->start_ns = veil_grpc_call_start_ns(call);
    const char *method = veil_grpc_call_method(call);
    const char *slash = strrchr(method, '/');
    const char *api = slash != NULL ? slash + 1 : method;
    snprintf(j->api, sizeof(j->api), "%s", strlen(api) < sizeof(j->api) ? api : "Unknown");
    veil_arena_init(&j->arena, 64u << 10, SV_REQ_ARENA_MAX);
    if (!veil__serve_sched_submit(s->sched, job_main, j)) {
        struct sv_status st;
        sv_fail(&st, VEIL_GRPC_UNAVAILABLE, "server overloaded: request queue is full");
        job_fail(j, &st);
    }
}
