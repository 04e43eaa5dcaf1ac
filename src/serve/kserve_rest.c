/*
 * The KServe v2 REST frontend on the REST port: /v2 server metadata, liveness and readiness,
 * model metadata and readiness, and inference with JSON tensors or the binary tensor extension.
 * Server-level paths answer on the loop thread; model paths are decoded, run and encoded on
 * request threads with the repository, batching, limits and metrics the TF Serving frontend
 * uses. Errors are {"error": "..."} with the status of their canonical code (invalid requests
 * 400, unknown models 404); health answers 200 for true and 400 for false.
 */
#include "serve_int.h"

#include <stdio.h>
#include <string.h>

struct kjob {
    struct veil_serve *s;
    struct veil_http_req *req;
    struct veil_arena arena;
    struct kv2_route rt;
    struct sv_version *v;
    const char *api;
    uint64_t start_ns;
    struct kv2_request rq;
    struct kv2_plan plan;
    struct veil_tensor in[SV_MAX_IO];
};

/* ---- Replies ---- */

static const char *cors(const struct veil_serve *s)
{
    return s->opt.rest_api_enable_cors_support
               ? "Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: POST, GET\r\n"
                 "Access-Control-Allow-Headers: Content-Type, Inference-Header-Content-Length\r\n"
               : NULL;
}

static void reply_error(struct veil_serve *s, struct veil_http_req *req, int http, const char *msg)
{
    struct veil_buf b;
    veil_buf_init(&b, 64u << 10);
    if (veil_buf_append_str(&b, "{\"error\":") != VEIL_OK ||
        veil__serve_json_str(&b, veil_span_from_str(msg)) != VEIL_OK ||
        veil_buf_append_u8(&b, '}') != VEIL_OK)
        veil_http_req_reply(req, 500, "application/json", cors(s),
                            veil_span_from_str("{\"error\":\"error message too long\"}"));
    else
        veil_http_req_reply(req, http, "application/json", cors(s), veil_buf_span(&b));
    veil_buf_release(&b);
}

static void reply_json(struct veil_serve *s, struct veil_http_req *req, int http, const char *text)
{
    veil_http_req_reply(req, http, "application/json", cors(s), veil_span_from_str(text));
}

/* Ends a job: body (JSON, and binary after json_len bytes when json_len > 0) or an error. */
static void job_end(struct kjob *j, int code, const char *msg, int http, struct veil_buf *body,
                    size_t json_len)
{
    if (code != VEIL_GRPC_OK) {
        reply_error(j->s, j->req, http != 0 ? http : sv_http_status(code), msg);
    } else if (json_len > 0) {
        char hdr[512];
        const char *c = cors(j->s);
        snprintf(hdr, sizeof(hdr), "Inference-Header-Content-Length: %zu\r\n%s", json_len,
                 c != NULL ? c : "");
        veil_http_req_reply(j->req, http != 0 ? http : 200, "application/octet-stream", hdr,
                            veil_buf_span(body));
    } else {
        veil_http_req_reply(j->req, http != 0 ? http : 200, "application/json", cors(j->s),
                            veil_buf_span(body));
    }
    veil__serve_metrics_request(j->s->metrics, j->v != NULL ? j->rt.name : "",
                                j->v != NULL ? j->v->version : 0, j->api, "REST", code,
                                veil_time_mono_ns() - j->start_ns);
    if (j->v != NULL)
        veil__serve_repo_release(j->s->repo, j->v);
    veil_arena_release(&j->arena);
    veil_free(j);
}

static void job_fail(struct kjob *j, const struct sv_status *st)
{
    job_end(j, st->code, st->msg, 0, NULL, 0);
}

/* Resolves the route's model and version to a held AVAILABLE version. */
static bool acquire(struct kjob *j, struct sv_status *st)
{
    bool has = false;
    int64_t ver = 0;
    if (!veil__serve_kv2_version(j->rt.version, &has, &ver))
        return sv_fail(st, VEIL_GRPC_NOT_FOUND, "model '%s' has no version '%s'", j->rt.name,
                       j->rt.version);
    return veil__serve_repo_acquire(j->s->repo, j->rt.name, has, ver, NULL, &j->v, st);
}

/* ---- Model metadata and readiness ---- */

static veil_err put_tensors(struct veil_buf *b, const struct sv_tinfo *tis, size_t n)
{
    veil_err rc = veil_buf_append_u8(b, '[');
    for (size_t i = 0; rc == VEIL_OK && i < n; i++) {
        const char *dn = veil__serve_kv2_dtype_name(tis[i].dt);
        rc = veil_buf_append_str(b, i ? ",{\"name\":" : "{\"name\":");
        if (rc == VEIL_OK)
            rc = veil__serve_json_str(b, veil_span_from_str(tis[i].name));
        if (rc == VEIL_OK)
            rc = veil_buf_appendf(b, ",\"datatype\":\"%s\",\"shape\":[", dn != NULL ? dn : "");
        for (size_t d = 0; rc == VEIL_OK && d < tis[i].rank; d++)
            rc = veil_buf_appendf(b, "%s%lld", d ? "," : "",
                                  (long long)(tis[i].dims[d] < 0 ? -1 : tis[i].dims[d]));
        if (rc == VEIL_OK)
            rc = veil_buf_append_str(b, "]}");
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_u8(b, ']');
    return rc;
}

static void do_metadata(struct kjob *j)
{
    struct sv_status st = {0, ""};
    struct veil_buf b;
    int64_t vers[64];
    size_t nv = 0;
    bool known = false;
    veil_buf_init(&b, 4u << 20);
    if (!acquire(j, &st))
        goto fail;
    veil__serve_kv2_versions(j->s->repo, j->rt.name, vers, 64, &nv, &known);
    veil_err rc = veil_buf_append_str(&b, "{\"name\":");
    if (rc == VEIL_OK)
        rc = veil__serve_json_str(&b, veil_span_from_str(j->rt.name));
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(&b, ",\"versions\":[");
    for (size_t i = 0; rc == VEIL_OK && i < nv; i++)
        rc = veil_buf_appendf(&b, "%s\"%lld\"", i ? "," : "", (long long)vers[i]);
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(&b, "],\"platform\":\"" SV_KV2_PLATFORM "\",\"inputs\":");
    if (rc == VEIL_OK)
        rc = put_tensors(&b, j->v->sig.in, j->v->sig.n_in);
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(&b, ",\"outputs\":");
    if (rc == VEIL_OK)
        rc = put_tensors(&b, j->v->sig.out, j->v->sig.n_out);
    if (rc == VEIL_OK)
        rc = veil_buf_append_u8(&b, '}');
    if (rc != VEIL_OK) {
        sv_fail(&st, VEIL_GRPC_INTERNAL, "metadata too large");
        goto fail;
    }
    job_end(j, 0, NULL, 0, &b, 0);
    veil_buf_release(&b);
    return;
fail:
    veil_buf_release(&b);
    job_fail(j, &st);
}

static void do_ready(struct kjob *j)
{
    struct sv_status st = {0, ""};
    struct veil_buf b;
    int64_t vers[1];
    size_t nv = 0;
    bool known = false;
    veil_buf_init(&b, 4096);
    veil__serve_kv2_versions(j->s->repo, j->rt.name, vers, 1, &nv, &known);
    if (!known) {
        sv_fail(&st, VEIL_GRPC_NOT_FOUND, "model '%s' is not served", j->rt.name);
        veil_buf_release(&b);
        job_fail(j, &st);
        return;
    }
    /* A known model (or version) that is not AVAILABLE is "false": 400 (section 1.1). */
    bool ready = acquire(j, &st);
    veil_err rc = veil_buf_append_str(&b, "{\"name\":");
    if (rc == VEIL_OK)
        rc = veil__serve_json_str(&b, veil_span_from_str(j->rt.name));
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(&b, ready ? ",\"ready\":true}" : ",\"ready\":false}");
    if (rc != VEIL_OK) {
        sv_fail(&st, VEIL_GRPC_INTERNAL, "reply too large");
        veil_buf_release(&b);
        job_fail(j, &st);
        return;
    }
    job_end(j, 0, NULL, ready ? 200 : 400, &b, 0);
    veil_buf_release(&b);
}

/* ---- Inference ---- */

static void infer_done(void *arg, bool ok, struct veil_tensor *outs, size_t n_out,
                       struct sv_status *st)
{
    struct kjob *j = arg;
    struct sv_status est = {0, ""};
    if (!ok) {
        job_fail(j, st);
        return;
    }
    struct veil_buf b;
    size_t json_len = 0;
    veil_buf_init(&b, SV_REQ_ARENA_MAX);
    bool good = veil__serve_kv2_encode_rest(&j->rq, j->rt.name, j->v->version, &j->v->sig, outs,
                                            &j->plan, &b, &json_len, &est);
    for (size_t i = 0; i < n_out; i++)
        veil_tensor_release(&outs[i]);
    if (good)
        job_end(j, 0, NULL, 0, &b, json_len);
    else
        job_fail(j, &est);
    veil_buf_release(&b);
}

static void do_infer(struct kjob *j)
{
    struct sv_status st = {0, ""};
    veil_err brc = veil_http_req_body_status(j->req);
    if (brc != VEIL_OK) {
        sv_fail(&st,
                brc == VEIL_E_LIMIT ? VEIL_GRPC_RESOURCE_EXHAUSTED : VEIL_GRPC_INVALID_ARGUMENT,
                "Failed to decompress request body: %s", veil_http_req_body_error(j->req));
        goto fail;
    }
    /* The model first (404 for an unknown one), then the body against its signature. */
    if (!acquire(j, &st) ||
        !veil__serve_kv2_parse_rest(veil_http_req_body(j->req),
                                    veil_http_req_header(j->req, "Inference-Header-Content-Length"),
                                    &j->arena, &j->rq, &st) ||
        !veil__serve_kv2_bind(&j->rq, &j->v->sig, j->in, &j->plan, &st))
        goto fail;
    uint32_t tmo = j->s->opt.rest_api_timeout_ms != 0 ? j->s->opt.rest_api_timeout_ms : 30000;
    veil__serve_run(j->s->repo, j->v, j->in, j->start_ns + (uint64_t)tmo * 1000000ULL, infer_done,
                    j);
    return;
fail:
    job_fail(j, &st);
}

static void job_main(void *arg)
{
    struct kjob *j = arg;
    if (j->rt.op == KV2_INFER)
        do_infer(j);
    else if (j->rt.op == KV2_MODEL_READY)
        do_ready(j);
    else
        do_metadata(j);
}

/* ---- Routing (loop thread) ---- */

static void server_metadata(struct veil_serve *s, struct veil_http_req *req)
{
    reply_json(s, req, 200,
               "{\"name\":\"veil\",\"version\":\"" SV_KV2_VERSION
               "\",\"extensions\":[\"binary_tensor_data\"]}");
}

void veil__serve_kserve_rest_handle(struct veil_serve *s, struct veil_http_req *req)
{
    const char *method = veil_http_req_method(req);
    struct veil_span path = veil_http_req_path(req);
    struct kv2_route rt;
    if (!veil__serve_kv2_route_parse(path, &rt)) {
        char msg[600];
        snprintf(msg, sizeof(msg), "no such KServe v2 path: %.*s",
                 (int)(path.len > 500 ? 500 : path.len), (const char *)path.p);
        reply_error(s, req, 404, msg);
        return;
    }
    const char *want = rt.op == KV2_INFER ? "POST" : "GET";
    if (strcmp(method, want) != 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "method %.16s not allowed here; use %s", method, want);
        reply_error(s, req, 405, msg);
        return;
    }
    switch (rt.op) {
    case KV2_SERVER_META:
        server_metadata(s, req);
        return;
    case KV2_LIVE:
        reply_json(s, req, 200, "{\"live\":true}");
        return;
    case KV2_READY:
        if (veil__serve_ready(s))
            reply_json(s, req, 200, "{\"ready\":true}");
        else
            reply_json(s, req, 400, "{\"ready\":false}");
        return;
    default:
        break;
    }
    struct kjob *j = veil_calloc(1, sizeof(*j));
    if (j == NULL) {
        reply_error(s, req, 429, "out of memory");
        return;
    }
    j->s = s;
    j->req = req;
    j->rt = rt;
    j->start_ns = veil_http_req_start_ns(req);
    j->api = rt.op == KV2_INFER         ? "ModelInfer"
             : rt.op == KV2_MODEL_READY ? "ModelReady"
                                        : "ModelMetadata";
    veil_arena_init(&j->arena, 64u << 10, SV_REQ_ARENA_MAX);
    if (!veil__serve_sched_submit(s->sched, job_main, j)) {
        struct sv_status st;
        sv_fail(&st, VEIL_GRPC_UNAVAILABLE, "server overloaded: request queue is full");
        job_fail(j, &st);
    }
}
