/*
 * The server object: validates the options the way tensorflow_model_server does, reads the
 * text-format config files (models, batching, SSL, monitoring), makes the TLS contexts (the
 * same identity on both ports, ALPN h2 for gRPC and http/1.1 for REST), binds the ports, and
 * starts the repository, request threads and the event loop. Plaintext needs an explicit
 * opt-in and is logged as a warning.
 */
#include "serve_int.h"

#include <stdio.h>
#include <string.h>

static char *dup_opt(struct veil_arena *a, const char *s)
{
    char *o = NULL;
    if (s == NULL)
        return NULL;
    if (veil_arena_strdup(a, veil_span_from_str(s), &o) != VEIL_OK)
        return NULL;
    return o;
}

static veil_err read_text(const char *path, const char *what, struct veil_buf *b,
                          struct veil_errbuf *eb)
{
    veil_err rc = veil_file_read_all(path, VEIL_LIMIT_CONFIG_FILE, b, eb);
    if (rc != VEIL_OK)
        return veil_err_prefix(eb, rc, "%s %s", what, path);
    return VEIL_OK;
}

static veil_err make_tls(struct veil_serve *s, struct veil_errbuf *eb)
{
    const struct veil_serve_options *o = &s->opt;
    struct veil_tls_config tc;
    struct veil_buf text;
    veil_err rc = VEIL_OK;
    memset(&tc, 0, sizeof(tc));
    veil_buf_init_secret(&text, VEIL_LIMIT_CONFIG_FILE);
    bool have_pem = o->tls_cert_pem.len > 0 || o->tls_cert_path != NULL;
    if (o->ssl_config_file != NULL) {
        struct sv_ssl ssl;
        if (have_pem) {
            rc = veil_errf(eb, VEIL_E_INVALID,
                           "--ssl_config_file and --tls_cert/--tls_key are exclusive");
            goto out;
        }
        if ((rc = read_text(o->ssl_config_file, "SSL config", &text, eb)) != VEIL_OK)
            goto out;
        rc = veil__serve_parse_ssl(veil_buf_span(&text), &s->arena, &ssl, eb);
        if (rc != VEIL_OK) {
            rc = veil_err_prefix(eb, rc, "%s", o->ssl_config_file);
            goto out;
        }
        tc.cert.pem = ssl.server_cert;
        tc.key.pem = ssl.server_key;
        tc.client_ca.pem = ssl.custom_ca;
        tc.client_verify = ssl.client_verify;
        if (tc.cert.pem.len == 0 || tc.key.pem.len == 0) {
            rc = veil_errf(eb, VEIL_E_INVALID, "%s: server_cert and server_key are required",
                           o->ssl_config_file);
            goto out;
        }
    } else if (have_pem) {
        tc.cert.pem = o->tls_cert_pem;
        tc.cert.path = o->tls_cert_path;
        tc.key.pem = o->tls_key_pem;
        tc.key.path = o->tls_key_path;
        tc.client_ca.pem = o->tls_client_ca_pem;
        tc.client_ca.path = o->tls_client_ca_path;
        tc.client_verify = o->tls_client_verify;
        if (tc.key.pem.len == 0 && tc.key.path == NULL) {
            rc = veil_errf(eb, VEIL_E_INVALID, "a TLS certificate needs its key (--tls_key)");
            goto out;
        }
    } else {
        if (!o->plaintext) {
            rc = veil_errf(eb, VEIL_E_INVALID,
                           "no TLS identity: give --tls_cert and --tls_key (or "
                           "--ssl_config_file), or --plaintext to serve without TLS");
            goto out;
        }
        VEIL_LOG_WARN("PLAINTEXT: serving gRPC and REST WITHOUT TLS; requests, responses and "
                      "model outputs travel in the clear");
        goto out;
    }
    if (o->plaintext) {
        rc = veil_errf(eb, VEIL_E_INVALID, "--plaintext contradicts the TLS options given");
        goto out;
    }
    if (tc.client_verify && tc.client_ca.pem.len == 0 && tc.client_ca.path == NULL) {
        rc = veil_errf(eb, VEIL_E_INVALID,
                       "client verification needs a CA (--tls_client_ca or "
                       "custom_ca)");
        goto out;
    }
    if ((rc = veil_tls_ctx_new(&tc, "h2", &s->tls_grpc, eb)) != VEIL_OK ||
        (rc = veil_tls_ctx_new(&tc, "http/1.1", &s->tls_rest, eb)) != VEIL_OK ||
        (rc = veil__serve_identity_init(s, &tc, eb)) != VEIL_OK)
        goto out;
    VEIL_LOG_INFO("TLS on: %s", tc.client_verify ? "mutual (client certificates required)"
                                                 : "server authentication only");
out:
    veil_buf_release(&text);
    return rc;
}

/* The repository refused the config after its first load: stop serving (veil_serve_run then
 * returns VEIL_E_STATE). Called on the repository thread; the stop is posted to the loop. */
static void repo_fatal(void *ud)
{
    struct veil_serve *s = ud;
    veil_net_loop_stop(s->loop);
}

veil_err veil_serve_new(const struct veil_serve_options *opt, struct veil_serve **out,
                        struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_serve *s = NULL;
    struct veil_buf text;
    struct sv_model_config *cfgs = NULL;
    size_t n_cfgs = 0;
    struct sv_model_config single;
    veil_buf_init(&text, VEIL_LIMIT_CONFIG_FILE);
    *out = NULL;
    s = veil_calloc(1, sizeof(*s));
    if (s == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    veil_arena_init(&s->arena, 16u << 10, 64u << 20);
    atomic_init(&s->started, false);
    atomic_init(&s->tls_not_after, 0);
    s->opt = *opt;
    struct veil_serve_options *o = &s->opt;
    o->host = dup_opt(&s->arena, opt->host != NULL ? opt->host : "0.0.0.0");
    o->model_name = dup_opt(&s->arena, opt->model_name != NULL ? opt->model_name : "default");
    o->model_base_path = dup_opt(&s->arena, opt->model_base_path);
    o->model_config_file = dup_opt(&s->arena, opt->model_config_file);
    o->batching_parameters_file = dup_opt(&s->arena, opt->batching_parameters_file);
    o->ssl_config_file = dup_opt(&s->arena, opt->ssl_config_file);
    o->tls_cert_path = dup_opt(&s->arena, opt->tls_cert_path);
    o->tls_key_path = dup_opt(&s->arena, opt->tls_key_path);
    o->tls_client_ca_path = dup_opt(&s->arena, opt->tls_client_ca_path);
    o->monitoring_config_file = dup_opt(&s->arena, opt->monitoring_config_file);
    if (o->host == NULL || o->model_name == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    if (o->drain_seconds == 0)
        o->drain_seconds = 10;

    /* tensorflow_model_server's startup checks. */
    if (o->model_base_path == NULL && o->model_config_file == NULL) {
        rc = veil_errf(eb, VEIL_E_INVALID,
                       "Both server_options.model_base_path and "
                       "server_options.model_config_file are empty!");
        goto out;
    }
    if (o->batching_parameters_file != NULL && !o->enable_batching) {
        rc = veil_errf(eb, VEIL_E_INVALID, "--batching_parameters_file requires --enable_batching");
        goto out;
    }
    bool grpc_on = o->grpc_port != 0 || o->grpc_any_port;
    bool rest_on = o->rest_port != 0 || o->rest_any_port;
    if (!grpc_on && !rest_on) {
        rc = veil_errf(eb, VEIL_E_INVALID, "--port=0 and no REST port: nothing to serve");
        goto out;
    }
    if (rest_on && grpc_on && !o->grpc_any_port && !o->rest_any_port &&
        o->rest_port == o->grpc_port) {
        VEIL_LOG_ERR("--rest_api_port cannot be the same as --port; REST is off");
        rest_on = false;
    }

    /* Models. */
    if (o->model_config_file != NULL) {
        if ((rc = read_text(o->model_config_file, "model config", &text, eb)) != VEIL_OK)
            goto out;
        rc = veil__serve_parse_model_config(veil_buf_span(&text), &s->arena, &cfgs, &n_cfgs, eb);
        if (rc != VEIL_OK) {
            rc = veil_err_prefix(eb, rc, "%s", o->model_config_file);
            goto out;
        }
        if (n_cfgs == 0)
            VEIL_LOG_WARN("%s lists no model", o->model_config_file);
    } else {
        memset(&single, 0, sizeof(single));
        single.name = (char *)(uintptr_t)o->model_name;
        single.base_path = (char *)(uintptr_t)o->model_base_path;
        single.policy = SV_POLICY_LATEST;
        single.latest_n = 1;
        cfgs = &single;
        n_cfgs = 1;
    }

    /* Batching. */
    if (o->enable_batching) {
        if (o->batching_parameters_file != NULL) {
            veil_buf_reset(&text);
            if ((rc = read_text(o->batching_parameters_file, "batching parameters", &text, eb)) !=
                VEIL_OK)
                goto out;
            rc = veil__serve_parse_batching(veil_buf_span(&text), &s->arena, &s->batching, eb);
            if (rc != VEIL_OK) {
                rc = veil_err_prefix(eb, rc, "%s", o->batching_parameters_file);
                goto out;
            }
        } else {
            memset(&s->batching, 0, sizeof(s->batching));
            veil__serve_batching_defaults(&s->batching);
        }
    }

    /* Monitoring: on at the default path unless a config says otherwise. */
    s->monitoring.enable = true;
    snprintf(s->monitoring.path, sizeof(s->monitoring.path), "/monitoring/prometheus/metrics");
    if (o->monitoring_config_file != NULL) {
        veil_buf_reset(&text);
        if ((rc = read_text(o->monitoring_config_file, "monitoring config", &text, eb)) != VEIL_OK)
            goto out;
        rc = veil__serve_parse_monitoring(veil_buf_span(&text), &s->arena, &s->monitoring, eb);
        if (rc != VEIL_OK) {
            rc = veil_err_prefix(eb, rc, "%s", o->monitoring_config_file);
            goto out;
        }
    }

    if ((rc = make_tls(s, eb)) != VEIL_OK)
        goto out;
    if ((rc = veil__serve_metrics_new(&s->metrics)) != VEIL_OK)
        goto out;
    /*
     * Request bodies, decoded tensors and batches are large (a 224x224 image is 600 KB) and
     * short-lived. glibc would hand each to mmap and back, or trim the heap after it, so every
     * request paid a page fault per 4 KiB touched (about 1 ms per ResNet-50 request on two
     * cores); keeping such blocks in the heap for reuse removes that.
     */
    veil_alloc_tune_large_blocks();
    unsigned threads = o->request_threads;
    if (threads == 0) {
        threads = 2 * veil_cpu_count();
        if (threads < 4)
            threads = 4;
    }
    if ((rc = veil__serve_sched_new(threads, 65536, &s->sched)) != VEIL_OK)
        goto out;
    if ((rc = veil_net_loop_new(&s->loop, eb)) != VEIL_OK)
        goto out;
    /* One descriptor per connection: take what the hard limit allows, then size the
     * connection caps and the in-flight byte budget from it and from physical memory. */
    uint64_t nofile = 0;
    if (veil_net_raise_nofile(&nofile) != VEIL_OK)
        VEIL_LOG_WARN("cannot raise the open-file limit; connection caps follow the current one");
    struct veil_net_limits lim = {o->max_connections, o->max_connections_per_peer,
                                  o->max_pending_handshakes, o->handshake_timeout_seconds,
                                  o->max_inflight_bytes};
    struct veil_net_limits used;
    veil_net_loop_set_limits(s->loop, &lim, o->max_message_bytes, &used);
    VEIL_LOG_INFO("limits: %u connections (%u per peer, %u in their handshake, %u s to finish "
                  "it), %zu request bytes in flight, %zu-byte messages; %llu open files",
                  used.max_conns, used.max_conns_per_peer, used.max_preauth,
                  used.handshake_timeout_s, used.max_inflight_bytes,
                  o->max_message_bytes != 0 ? o->max_message_bytes : VEIL_NET_MAX_MESSAGE_DEFAULT,
                  (unsigned long long)nofile);
    struct veil_engine_options eopt = {.threads = o->engine_threads};
    rc = veil__serve_repo_new(cfgs, n_cfgs, o->file_system_poll_wait_seconds, o->keys, &eopt,
                              o->enable_batching ? &s->batching : NULL, s->metrics, &s->repo, eb);
    if (rc != VEIL_OK)
        goto out;
    s->repo->sealed_only = o->sealed_only;
    if ((rc = veil__serve_repo_set_min_versions(s->repo, o->min_versions, o->n_min_versions, eb)) !=
        VEIL_OK)
        goto out;
    s->repo->allow_unavailable_labels = o->allow_version_labels_for_unavailable_models;
    s->repo->warmup_iterations = !o->enable_model_warmup ? 0
                                 : o->num_request_iterations_for_warmup == 0
                                     ? 1
                                     : o->num_request_iterations_for_warmup;
    s->repo->on_fatal = repo_fatal;
    s->repo->on_fatal_ud = s;
    struct veil_net_listen lst = {o->host,
                                  o->grpc_port,
                                  s->tls_grpc,
                                  o->max_message_bytes,
                                  0, /* the loop's limits cover both ports */
                                  o->max_streams,
                                  0};
    if (grpc_on) {
        lst.port = o->grpc_any_port ? 0 : o->grpc_port;
        rc = veil_grpc_server_new(s->loop, &lst, veil__serve_grpc_handle, s, &s->grpc, eb);
        if (rc != VEIL_OK)
            goto out;
        VEIL_LOG_INFO("gRPC on %s:%u%s", o->host, (unsigned)veil_grpc_server_port(s->grpc),
                      s->tls_grpc != NULL ? " (TLS)" : " (PLAINTEXT)");
    }
    if (rest_on) {
        lst.port = o->rest_any_port ? 0 : o->rest_port;
        lst.tls = s->tls_rest;
        rc = veil_http_server_new(s->loop, &lst, veil__serve_rest_handle, s, &s->http, eb);
        if (rc != VEIL_OK)
            goto out;
        VEIL_LOG_INFO("REST on %s:%u%s", o->host, (unsigned)veil_http_server_port(s->http),
                      s->tls_rest != NULL ? " (TLS)" : " (PLAINTEXT)");
    }
    if ((rc = veil__serve_repo_start(s->repo, o->model_config_file,
                                     o->model_config_file_poll_wait_seconds, eb)) != VEIL_OK)
        goto out;
    *out = s;
    s = NULL;
    rc = VEIL_OK;
out:
    veil_buf_release(&text);
    veil_serve_free(s);
    return rc;
}

veil_err veil_serve_run(struct veil_serve *s)
{
    atomic_store(&s->started, true);
    veil_err rc = veil_net_loop_run(s->loop, s->opt.drain_seconds);
    if (rc == VEIL_OK && atomic_load(&s->repo->fatal))
        rc = VEIL_E_STATE;
    return rc;
}

const char *veil_serve_error(const struct veil_serve *s)
{
    return s->repo != NULL && atomic_load(&s->repo->fatal) ? s->repo->fatal_msg : "";
}

void veil_serve_stop(struct veil_serve *s)
{
    veil_net_loop_stop(s->loop);
}

bool veil_serve_is_ready(struct veil_serve *s)
{
    return veil__serve_ready(s);
}

veil_err veil_serve_run_engine(struct veil_serve *s, const char *name,
                               const struct veil_tensor *inputs, size_t n_in,
                               struct veil_tensor *outputs, size_t n_out, struct veil_errbuf *eb)
{
    struct sv_version *v = NULL;
    struct sv_status st;
    if (name == NULL || !veil__serve_repo_acquire(s->repo, name, false, 0, NULL, &v, &st))
        return veil_errf(eb, VEIL_E_NOTFOUND, "%s", name == NULL ? "no model name" : st.msg);
    veil_err rc = veil_engine_run(v->em, inputs, n_in, outputs, n_out, eb);
    veil__serve_repo_release(s->repo, v);
    return rc;
}

uint16_t veil_serve_grpc_port(const struct veil_serve *s)
{
    return s->grpc != NULL ? veil_grpc_server_port(s->grpc) : 0;
}

uint16_t veil_serve_rest_port(const struct veil_serve *s)
{
    return s->http != NULL ? veil_http_server_port(s->http) : 0;
}

void veil_serve_free(struct veil_serve *s)
{
    if (s == NULL)
        return;
    /* Request threads finish first (their replies are posted to the loop), then batchers in
     * the repository, then the loop delivers what was posted and closes everything. */
    veil__serve_sched_free(s->sched);
    veil__serve_repo_free(s->repo);
    veil_net_loop_free(s->loop);
    veil_tls_ctx_free(s->tls_grpc);
    veil_tls_ctx_free(s->tls_rest);
    veil__serve_identity_release(s);
    veil__serve_metrics_free(s->metrics);
    veil_arena_release(&s->arena);
    veil_free(s);
}
