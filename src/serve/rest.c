/*
 * The REST frontend (TF Serving's HTTP API): URL grammar of http_rest_api_util.cc (case-
 * insensitive, /versions/N or /labels/L, :predict / :classify / :regress, /metadata), model
 * status and metadata JSON, predict in row and columnar forms, exact error bodies and HTTP
 * codes; plus Prometheus metrics and liveness/readiness probes outside /v1/, and /v2 paths
 * handed to the KServe v2 frontend (kserve_rest.c). Requests are
 * routed on the loop thread and decoded, run and encoded on request threads.
 */
#include "serve_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define NOT_FOUND_HTML                                                                             \
    "<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n"              \
    "The requested URL was not found on this server.\n</BODY></HTML>\n"

struct rjob {
    struct veil_serve *s;
    struct veil_http_req *req;
    struct veil_arena arena;
    struct sv_route rt;
    struct sv_version *v;
    const char *api;
    bool row_format;
    uint64_t start_ns;
    struct veil_tensor in[SV_MAX_IO];
};

/* ---- Replies ---- */

static const char *cors(const struct veil_serve *s)
{
    return s->opt.rest_api_enable_cors_support
               ? "Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: POST, GET\r\n"
                 "Access-Control-Allow-Headers: Content-Type\r\n"
               : NULL;
}

static void reply_error(struct veil_serve *s, struct veil_http_req *req, int code, const char *msg)
{
    struct veil_buf b;
    veil_buf_init(&b, 64u << 10);
    if (veil_buf_append_str(&b, "{ \"error\": ") != VEIL_OK ||
        veil__serve_json_str(&b, veil_span_from_str(msg)) != VEIL_OK ||
        veil_buf_append_str(&b, " }") != VEIL_OK) {
        veil_http_req_reply(req, sv_http_status(code), "application/json", cors(s),
                            veil_span_from_str("{ \"error\": \"error message too long\" }"));
        veil_buf_release(&b);
        return;
    }
    veil_http_req_reply(req, sv_http_status(code), "application/json", cors(s), veil_buf_span(&b));
    veil_buf_release(&b);
}

static void job_end(struct rjob *j, int code, const char *msg, struct veil_buf *body)
{
    if (code != VEIL_GRPC_OK)
        reply_error(j->s, j->req, code, msg);
    else
        veil_http_req_reply(j->req, 200, "application/json", cors(j->s), veil_buf_span(body));
    if (j->api != NULL)
        veil__serve_metrics_request(j->s->metrics, j->v != NULL ? j->rt.name : "",
                                    j->v != NULL ? j->v->version : 0, j->api, "REST", code,
                                    veil_time_mono_ns() - j->start_ns);
    if (j->v != NULL)
        veil__serve_repo_release(j->s->repo, j->v);
    veil_arena_release(&j->arena);
    veil_free(j);
}

static void job_fail(struct rjob *j, const struct sv_status *st)
{
    job_end(j, st->code, st->msg, NULL);
}

static bool acquire(struct rjob *j, struct sv_status *st)
{
    if (j->rt.version_overflow)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "Failed to convert version: %s to numeric.",
                       j->rt.version_text);
    return veil__serve_repo_acquire(j->s->repo, j->rt.name, j->rt.has_version, j->rt.version,
                                    j->rt.has_label ? j->rt.label : NULL, &j->v, st);
}

/* ---- Status ---- */

static const char *state_name(int s)
{
    switch (s) {
    case SV_START:
        return "START";
    case SV_LOADING:
        return "LOADING";
    case SV_AVAILABLE:
        return "AVAILABLE";
    case SV_UNLOADING:
        return "UNLOADING";
    case SV_END:
        return "END";
    default:
        return "UNKNOWN";
    }
}

static void do_status(struct rjob *j)
{
    struct sv_status st = {0, ""};
    struct sv_version_status vs[64];
    size_t n = 0;
    struct veil_buf b;
    veil_buf_init(&b, 1u << 20);
    if (j->rt.version_overflow) {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "Failed to convert version: %s to numeric.",
                j->rt.version_text);
        goto fail;
    }
    /* A label does not narrow the status (TF Serving passes it through). */
    if (!veil__serve_repo_status(j->s->repo, j->rt.name, j->rt.has_version, j->rt.version, vs, 64,
                                 &n, &st))
        goto fail;
    veil_err rc = veil_buf_append_str(&b, "{\n \"model_version_status\": [");
    for (size_t i = 0; rc == VEIL_OK && i < n; i++) {
        rc = veil_buf_appendf(&b,
                              "%s\n  {\n   \"version\": \"%lld\",\n   \"state\": \"%s\",\n"
                              "   \"status\": {\n    \"error_code\": \"%s\",\n"
                              "    \"error_message\": ",
                              i ? "," : "", (long long)vs[i].version, state_name(vs[i].state),
                              veil_grpc_status_name(vs[i].err_code));
        if (rc == VEIL_OK)
            rc = veil__serve_json_str(&b, veil_span_from_str(vs[i].err_msg));
        if (rc == VEIL_OK)
            rc = veil_buf_append_str(&b, "\n   }\n  }");
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(&b, "\n ]\n}\n");
    if (rc != VEIL_OK) {
        sv_fail(&st, VEIL_GRPC_INTERNAL, "status too large");
        goto fail;
    }
    job_end(j, 0, NULL, &b);
    veil_buf_release(&b);
    return;
fail:
    veil_buf_release(&b);
    job_fail(j, &st);
}

/* ---- Metadata ---- */

static veil_err put_tinfo_map(struct veil_buf *b, const struct sv_tinfo *tis, size_t n)
{
    veil_err rc = veil_buf_append_str(b, "{");
    for (size_t i = 0; rc == VEIL_OK && i < n; i++) {
        const struct sv_tinfo *t = &tis[i];
        rc = veil_buf_append_str(b, i ? ",\n       " : "\n       ");
        if (rc == VEIL_OK)
            rc = veil__serve_json_str(b, veil_span_from_str(t->name));
        if (rc == VEIL_OK)
            rc = veil_buf_appendf(b,
                                  ": {\n        \"dtype\": \"%s\",\n        \"tensor_shape\": {\n"
                                  "         \"dim\": [",
                                  veil__serve_tf_dtype_name(t->tf_dtype));
        for (size_t d = 0; rc == VEIL_OK && d < t->rank; d++)
            rc = veil_buf_appendf(b,
                                  "%s\n          {\n           \"size\": \"%lld\",\n"
                                  "           \"name\": \"\"\n          }",
                                  d ? "," : "", (long long)(t->dims[d] < 0 ? -1 : t->dims[d]));
        if (rc == VEIL_OK)
            rc = veil_buf_append_str(b, "\n         ],\n         \"unknown_rank\": false\n"
                                        "        },\n        \"name\": ");
        if (rc == VEIL_OK)
            rc = veil__serve_json_str(b, veil_span_from_str(t->name));
        if (rc == VEIL_OK)
            rc = veil_buf_append_str(b, "\n       }");
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(b, "\n      }");
    return rc;
}

static void do_metadata(struct rjob *j)
{
    struct sv_status st = {0, ""};
    struct veil_buf b;
    veil_buf_init(&b, 4u << 20);
    if (!acquire(j, &st))
        goto fail;
    veil_err rc = veil_buf_append_str(&b, "{\n \"model_spec\": {\n  \"name\": ");
    if (rc == VEIL_OK)
        rc = veil__serve_json_str(&b, veil_span_from_str(j->rt.name));
    if (rc == VEIL_OK)
        rc = veil_buf_appendf(&b,
                              ",\n  \"signature_name\": \"\",\n  \"version\": \"%lld\"\n },\n"
                              " \"metadata\": {\n  \"signature_def\": {\n   \"signature_def\": {\n"
                              "    \"serving_default\": {\n     \"inputs\": ",
                              (long long)j->v->version);
    if (rc == VEIL_OK)
        rc = put_tinfo_map(&b, j->v->sig.in, j->v->sig.n_in);
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(&b, ",\n     \"outputs\": ");
    if (rc == VEIL_OK)
        rc = put_tinfo_map(&b, j->v->sig.out, j->v->sig.n_out);
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(&b, ",\n     \"method_name\": \"tensorflow/serving/predict\",\n"
                                     "     \"defaults\": {}\n    }\n   }\n  }\n }\n}\n");
    if (rc != VEIL_OK) {
        sv_fail(&st, VEIL_GRPC_INTERNAL, "metadata too large");
        goto fail;
    }
    job_end(j, 0, NULL, &b);
    veil_buf_release(&b);
    return;
fail:
    veil_buf_release(&b);
    job_fail(j, &st);
}

/* ---- Predict ---- */

static void predict_done(void *arg, bool ok, struct veil_tensor *outs, size_t n_out,
                         struct sv_status *st)
{
    struct rjob *j = arg;
    struct sv_status est = {0, ""};
    if (!ok) {
        job_fail(j, st);
        return;
    }
    const char *names[SV_MAX_IO];
    for (size_t i = 0; i < n_out; i++)
        names[i] = j->v->sig.out[i].name;
    struct veil_buf b;
    veil_buf_init(&b, SV_REQ_ARENA_MAX);
    bool good = veil__serve_rest_encode_predict(outs, names, n_out, j->row_format, &b, &est);
    for (size_t i = 0; i < n_out; i++)
        veil_tensor_release(&outs[i]);
    if (good)
        job_end(j, 0, NULL, &b);
    else
        job_fail(j, &est);
    veil_buf_release(&b);
}

static void do_predict(struct rjob *j)
{
    struct sv_status st = {0, ""};
    struct json_val *root = NULL;
    char sig[SV_NAME_MAX + 1];
    struct veil_span body = veil_http_req_body(j->req);
    veil_err brc = veil_http_req_body_status(j->req);
    if (brc != VEIL_OK) {
        sv_fail(&st,
                brc == VEIL_E_LIMIT ? VEIL_GRPC_RESOURCE_EXHAUSTED : VEIL_GRPC_INVALID_ARGUMENT,
                "Failed to decompress request body: %s", veil_http_req_body_error(j->req));
        goto fail;
    }
    /* TF Serving's order: JSON syntax, then signature_name, then the model, then tensors. */
    if (!veil__serve_json_parse(body, &j->arena, &root, &st) ||
        !veil__serve_rest_signature_name(root, sig, sizeof(sig), &st) || !acquire(j, &st))
        goto fail;
    if (sig[0] != '\0' && strcmp(sig, "serving_default") != 0) {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT,
                "Serving signature name: \"%s\" not found in signature def", sig);
        goto fail;
    }
    if (!veil__serve_rest_decode_predict(root, &j->v->sig, &j->arena, j->in, &j->row_format, &st))
        goto fail;
    for (size_t k = 0; k < j->v->sig.n_in; k++)
        if (!veil__serve_tensor_check(&j->in[k], &j->v->sig.in[k], k, &st))
            goto fail;
    uint32_t tmo = j->s->opt.rest_api_timeout_ms != 0 ? j->s->opt.rest_api_timeout_ms : 30000;
    veil__serve_run(j->s->repo, j->v, j->in, j->start_ns + (uint64_t)tmo * 1000000ULL, predict_done,
                    j);
    return;
fail:
    job_fail(j, &st);
}

static void do_classify_regress(struct rjob *j)
{
    struct sv_status st = {0, ""};
    struct json_val *root = NULL;
    char sig[SV_NAME_MAX + 1];
    const char *verb = j->rt.verb == SV_VERB_CLASSIFY ? "classify" : "regress";
    if (!veil__serve_json_parse(veil_http_req_body(j->req), &j->arena, &root, &st) ||
        !veil__serve_rest_signature_name(root, sig, sizeof(sig), &st) || !acquire(j, &st))
        goto fail;
    bool has_examples = false;
    for (const struct json_val *m = root->child; m != NULL; m = m->next)
        has_examples = has_examples || veil_span_eq_str(m->key, "examples");
    if (!has_examples) {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT,
                "When method is %s, key 'examples' is expected and was not found", verb);
        goto fail;
    }
    sv_fail(&st, VEIL_GRPC_UNIMPLEMENTED,
            "%s is not implemented: Veil serves ONNX models through predict", verb);
fail:
    job_fail(j, &st);
}

static void job_main(void *arg)
{
    struct rjob *j = arg;
    struct sv_status st = {0, ""};
    if (j->rt.missing_name) {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "Missing model name in request.");
        job_fail(j, &st);
    } else if (j->rt.verb == SV_VERB_PREDICT) {
        do_predict(j);
    } else if (j->rt.verb != SV_VERB_NONE) {
        do_classify_regress(j);
    } else if (j->rt.metadata) {
        do_metadata(j);
    } else {
        do_status(j);
    }
}

/* ---- Routing (loop thread) ---- */

static void reply_text(struct veil_http_req *req, int status, const char *ctype, const char *text)
{
    veil_http_req_reply(req, status, ctype, NULL, veil_span_from_str(text));
}

/* Whether path percent-encodes a control character (%00-%1F, %7F), which names refuse. */
static bool has_control_escape(struct veil_span path)
{
    for (size_t i = 0; i + 2 < path.len; i++) {
        uint8_t v;
        if (path.p[i] == '%' &&
            veil_hex_decode(veil_span_make(path.p + i + 1, 2), &v, 1) == VEIL_OK &&
            (v < 0x20 || v == 0x7f))
            return true;
    }
    return false;
}

void veil__serve_rest_handle(void *ud, struct veil_http_req *req)
{
    struct veil_serve *s = ud;
    const char *method = veil_http_req_method(req);
    struct veil_span path = veil_http_req_path(req);
    if (strcmp(method, "GET") == 0 && s->monitoring.enable &&
        veil_span_eq_str(path, s->monitoring.path)) {
        struct veil_buf b;
        veil_buf_init(&b, 64u << 20);
        if (veil__serve_metrics_render(s->metrics, &b) != VEIL_OK ||
            veil__serve_repo_metrics(s->repo, &b) != VEIL_OK) {
            veil_buf_release(&b);
            reply_text(req, 500, "text/plain", "metrics too large\n");
            return;
        }
        veil_http_req_reply(req, 200, "text/plain; version=0.0.4", NULL, veil_buf_span(&b));
        veil_buf_release(&b);
        return;
    }
    if (strcmp(method, "GET") == 0 && veil_span_eq_str(path, "/healthz")) {
        reply_text(req, 200, "application/json", "{\"status\": \"alive\"}\n");
        return;
    }
    if (strcmp(method, "GET") == 0 && veil_span_eq_str(path, "/readyz")) {
        /* An expired certificate says so: clients now refuse every new connection. */
        if (veil__serve_identity_expired(s))
            reply_text(req, 503, "application/json",
                       "{\"status\": \"not ready\", \"reason\": \"the TLS certificate has "
                       "expired and was not renewed\"}\n");
        else if (veil__serve_repo_ready(s->repo))
            reply_text(req, 200, "application/json", "{\"status\": \"ready\"}\n");
        else
            reply_text(req, 503, "application/json", "{\"status\": \"not ready\"}\n");
        return;
    }
    if (veil_span_eq_str(path, SV_EVIDENCE_REST_PATH)) {
        veil__serve_evidence_rest(s, req);
        return;
    }
    /* KServe v2 (case-sensitive paths): /v2 and everything under /v2/. */
    if (veil_span_eq_str(path, "/v2") || veil_span_starts_with(path, "/v2/")) {
        veil__serve_kserve_rest_handle(s, req);
        return;
    }
    struct veil_span p = path;
    if (!veil__serve_eat_ci(&p, "/v1/")) {
        reply_text(req, 404, "text/html", NOT_FOUND_HTML);
        return;
    }
    if (strcmp(method, "OPTIONS") == 0) {
        const char *origin = veil_http_req_header(req, "Origin");
        if (origin != NULL &&
            (strncmp(origin, "http://", 7) == 0 || strncmp(origin, "https://", 8) == 0))
            veil_http_req_reply(req, 200, "application/json", cors(s), veil_span_make(NULL, 0));
        else
            reply_error(s, req, VEIL_GRPC_INVALID_ARGUMENT,
                        "Origin header is missing in CORS preflight");
        return;
    }
    struct rjob *j = veil_calloc(1, sizeof(*j));
    if (j == NULL) {
        reply_error(s, req, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->s = s;
    j->req = req;
    j->start_ns = veil_http_req_start_ns(req);
    veil_arena_init(&j->arena, 64u << 10, SV_REQ_ARENA_MAX);
    if (!veil__serve_rest_route_parse(method, path, &j->rt)) {
        char msg[700];
        snprintf(msg, sizeof(msg), "Malformed request: %s %.*s%s", method,
                 (int)(path.len > 500 ? 500 : path.len), (const char *)path.p,
                 has_control_escape(path)
                     ? ": a model name or label must not contain control characters"
                     : "");
        struct sv_status st;
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT, "%s", msg);
        job_fail(j, &st);
        return;
    }
    j->api = j->rt.verb == SV_VERB_PREDICT    ? "Predict"
             : j->rt.verb == SV_VERB_CLASSIFY ? "Classify"
             : j->rt.verb == SV_VERB_REGRESS  ? "Regress"
             : j->rt.metadata                 ? "GetModelMetadata"
                                              : "GetModelStatus";
    if (!veil__serve_sched_submit(s->sched, job_main, j)) {
        struct sv_status st;
        sv_fail(&st, VEIL_GRPC_UNAVAILABLE, "server overloaded: request queue is full");
        job_fail(j, &st);
    }
}
