/*
 * `veil serve`: the TensorFlow-Serving-compatible model server. Flags follow
 * tensorflow_model_server (--name=value, bare booleans or =true/false); Veil adds the TLS
 * identity flags, the explicit --plaintext opt-in and the model key source.
 */
#include "cli.h"
#include "serve_kbs.h"
#include "veil/serve.h"

#include <stdlib.h>
#include <string.h>

/* TF Serving flags accepted for compatibility that change nothing here. */
static const char *const ignored_flags[] = {"rest_api_num_threads",
                                            "grpc_max_threads",
                                            "tensorflow_session_parallelism",
                                            "tensorflow_intra_op_parallelism",
                                            "tensorflow_inter_op_parallelism",
                                            "num_load_threads",
                                            "num_unload_threads",
                                            "max_num_load_retries",
                                            "load_retry_interval_micros",
                                            "flush_filesystem_caches",
                                            "saved_model_tags",
                                            "enable_signature_method_name_check",
                                            "enable_profiler",
                                            "per_process_gpu_memory_fraction",
                                            "enable_per_model_batching_parameters",
                                            "enable_serialization_as_tensor_content",
                                            "tensorflow_session_config_file"};
static const size_t n_ignored_flags = sizeof(ignored_flags) / sizeof(ignored_flags[0]);

/*
 * TF Serving flags for TensorFlow features an ONNX model has no use for (TFLite, XLA, TPUs,
 * SavedModel rewriting, TF's thread pools): a TF Serving command line keeps working, and the
 * log says in one line that the flag was ignored.
 */
static const char *const tf_only_flags[] = {"prefer_tflite_model",
                                            "use_tflite_model",
                                            "num_tflite_pools",
                                            "num_tflite_interpreters",
                                            "num_tflite_interpreters_per_pool",
                                            "tflite_num_threads",
                                            "thread_pool_factory_config_file",
                                            "remove_unused_fields_from_bundle_metagraph",
                                            "xla_cpu_compilation_enabled",
                                            "mixed_precision",
                                            "skip_initialize_tpu",
                                            "use_tpu"};
static const size_t n_tf_only_flags = sizeof(tf_only_flags) / sizeof(tf_only_flags[0]);

/* Boolean flags of both lists: they may stand alone, as in TF Serving (--prefer_tflite_model). */
static const char *const compat_bool_flags[] = {"flush_filesystem_caches",
                                                "enable_signature_method_name_check",
                                                "enable_profiler",
                                                "enable_per_model_batching_parameters",
                                                "enable_serialization_as_tensor_content",
                                                "prefer_tflite_model",
                                                "use_tflite_model",
                                                "remove_unused_fields_from_bundle_metagraph",
                                                "xla_cpu_compilation_enabled",
                                                "skip_initialize_tpu",
                                                "use_tpu"};

static bool in_list(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, list[i]) == 0)
            return true;
    return false;
}

/* Prints "  title: --a, --b, ..." wrapped under the title. */
static void help_list(FILE *f, const char *title, const char *const *names, size_t n)
{
    size_t col = (size_t)fprintf(f, "  %s:", title);
    for (size_t i = 0; i < n; i++) {
        size_t w = strlen(names[i]) + 4;
        if (col + w > 96) {
            fprintf(f, "\n   ");
            col = 3;
        }
        col += (size_t)fprintf(f, " --%s%s", names[i], i + 1 < n ? "," : "\n");
    }
}

static void help(FILE *f)
{
    fprintf(
        f,
        "usage: veil serve --model_base_path=DIR [--model_name=NAME] | --model_config_file=F\n"
        "                  (--tls_cert=PEM --tls_key=PEM [--tls_client_ca=PEM] |\n"
        "                   --ssl_config_file=F | --plaintext) [options]\n\n"
        "Serves ONNX models (model.onnx or sealed model.onnx.veil in numbered version\n"
        "folders) over TensorFlow Serving's gRPC API and REST API.\n\n"
        "  --port=N                       gRPC port (default 8500; 0: off)\n"
        "  --rest_api_port=N              REST port (default 8501; 0: off)\n"
        "  --host=ADDR                    bind address (default 0.0.0.0)\n"
        "  --model_name=NAME              model name with --model_base_path (default 'default')\n"
        "  --model_base_path=DIR          folder of numbered versions\n"
        "  --model_config_file=F          text ModelServerConfig (several models, policies, "
        "labels)\n"
        "  --file_system_poll_wait_seconds=N  rescan versions every N s (default 1; 0: once)\n"
        "  --allow_version_labels_for_unavailable_models  let version_labels point at versions\n"
        "                                 that are not AVAILABLE (default: refused)\n"
        "  --model_config_file_poll_wait_seconds=N  re-read --model_config_file every N s\n"
        "                                 (default 0: never)\n"
        "  --enable_batching[=true|false] dynamic batching\n"
        "  --enable_model_warmup[=true|false]  run assets.extra/tf_serving_warmup_requests before\n"
        "                                 a version is AVAILABLE (default true)\n"
        "  --num_request_iterations_for_warmup=N  runs of each warmup request (default 1)\n"
        "  --batching_parameters_file=F   text BatchingParameters\n"
        "  --tls_cert=F --tls_key=F       server certificate chain and key (PEM)\n"
        "  --tls_client_ca=F              require client certificates signed by this CA (mutual "
        "TLS)\n"
        "  --ssl_config_file=F            TF Serving's text SSLConfig instead of the three above\n"
        "  --plaintext                    serve WITHOUT TLS (explicit opt-in)\n"
        "  --key=PATH                     key file or folder of key files for sealed models\n"
        "  --kbs=HOST:PORT[,HOST:PORT]    attest to these key brokers for model keys and the\n"
        "                                 serving certificate (instead of --key and --tls_*),\n"
        "                                 renewed at two thirds of its lifetime\n"
        "  --kbs-ca=F                     the brokers' CA (STATE/broker-ca.pem, pinned)\n"
        "  --tee=sim|gramine|tsm          where evidence comes from (sim: INSECURE, no TEE)\n"
        "  --sim-key=F --svn=N            sim attestation key (veil keygen --sim) and SVN\n"
        "  --tee-root=PATH                root of the gramine or tsm interface (tests)\n"
        "  --allow_plaintext_models       with --kbs, also serve plaintext model.onnx files\n"
        "                                 (development only: by default only sealed ones)\n"
        "  --tls_san=N1,N2                names for the broker-issued certificate (each\n"
        "                                 granted by the policy; default: all it grants)\n"
        "  --monitoring_config_file=F     text MonitoringConfig (Prometheus path)\n"
        "  --rest_api_timeout_in_ms=N     REST request timeout (default 30000)\n"
        "  --rest_api_enable_cors_support add CORS headers\n"
        "  --enable_grpc_healthcheck_service  grpc.health.v1.Health/Check (SERVING when ready)\n"
        "  --engine_threads=N             compute threads per run (default: all cores)\n"
        "  --request_threads=N            request decode/encode threads (default 2 x cores, >= 4)\n"
        "  --max_message_bytes=N          gRPC message / REST body cap, also after gunzip\n"
        "                                 (default 64 MiB, at most 2 GiB-1)\n"
        "  --grpc_channel_arguments=K=V,...  TF Serving's: grpc.max_receive_message_length sets\n"
        "                                 --max_message_bytes, grpc.max_concurrent_streams\n"
        "                                 --max_streams; other keys are ignored\n"
        "  --max_connections=N            open connections over both ports (default: open-file\n"
        "                                 limit - 64, at most 4096; the soft limit is raised to\n"
        "                                 the hard one); over it the least recently active idle\n"
        "                                 connection is closed\n"
        "  --max_connections_per_peer=N   of them from one IP address (default: a quarter)\n"
        "  --max_pending_handshakes=N     of them before their TLS handshake ends (default: a\n"
        "                                 quarter); over it the oldest such one is closed\n"
        "  --handshake_timeout_seconds=N  deadline for the TLS handshake, or a plaintext\n"
        "                                 client's first byte (default 10)\n"
        "  --max_inflight_bytes=N         request bytes buffered server-wide (default: RAM/16\n"
        "                                 within 256 MiB-4 GiB, at least 2 messages); past it\n"
        "                                 RESOURCE_EXHAUSTED / HTTP 429\n"
        "  --max_streams=N                concurrent HTTP/2 streams per connection (128)\n"
        "  --drain_seconds=N              on SIGTERM, wait up to N s for requests in flight\n"
        "                                 (default 10)\n"
        "  --allow-core-dumps             keep core dumps on (debugging only: a core holds model\n"
        "                                 keys, plaintext weights and the TLS private key)\n"
        "  --log_level=err|warn|info|debug\n"
        "  --version                      print the version and exit\n\n"
        "TensorFlow Serving's other flags:\n");
    help_list(f, "accepted, no effect here", ignored_flags, n_ignored_flags);
    help_list(f, "TensorFlow-only, ignored with a warning", tf_only_flags, n_tf_only_flags);
    fprintf(f, "  refused: --grpc_socket_path, --use_alts_credentials, --platform_config_file\n");
}

static bool parse_bool(const char *v, bool *out)
{
    if (v == NULL || strcmp(v, "true") == 0 || strcmp(v, "1") == 0) {
        *out = true;
        return true;
    }
    if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
        *out = false;
        return true;
    }
    return false;
}

static bool parse_i64(const char *v, int64_t *out)
{
    uint64_t u = 0;
    bool neg = v != NULL && v[0] == '-';
    if (v == NULL || !veil_cli_parse_u64(neg ? v + 1 : v, &u) || u > (uint64_t)INT64_MAX)
        return false;
    *out = neg ? -(int64_t)u : (int64_t)u;
    return true;
}

static bool parse_port(const char *v, uint16_t *out)
{
    uint64_t u = 0;
    if (!veil_cli_parse_u64(v, &u) || u > 65535)
        return false;
    *out = (uint16_t)u;
    return true;
}

static bool parse_uint(const char *v, unsigned *out)
{
    uint64_t u = 0;
    if (!veil_cli_parse_u64(v, &u) || u > 1000000)
        return false;
    *out = (unsigned)u;
    return true;
}

/*
 * TF Serving's --grpc_channel_arguments ("key=value,key=value", passed to its gRPC server):
 * the two keys that size what a client may send take effect, the others are logged and
 * ignored. A message length of -1 (gRPC's "unlimited") is TF Serving's own cap, INT32_MAX.
 */
static bool parse_channel_arguments(const char *v, struct veil_serve_options *o)
{
    char buf[1024];
    size_t n = strlen(v);
    if (n >= sizeof(buf))
        return false;
    memcpy(buf, v, n + 1);
    for (char *t = buf; t != NULL && *t != '\0';) {
        char *comma = strchr(t, ',');
        if (comma != NULL)
            *comma = '\0';
        char *eq = strchr(t, '=');
        const char *key = t, *val = "";
        if (eq != NULL) {
            *eq = '\0';
            val = eq + 1;
        }
        int64_t iv = 0;
        if (strcmp(key, "grpc.max_receive_message_length") == 0) {
            if (!parse_i64(val, &iv) || iv == 0 || iv < -1 || iv > INT32_MAX)
                return false;
            o->max_message_bytes = iv == -1 ? (size_t)INT32_MAX : (size_t)iv;
        } else if (strcmp(key, "grpc.max_concurrent_streams") == 0) {
            if (!parse_uint(val, &o->max_streams) || o->max_streams == 0)
                return false;
        } else {
            VEIL_LOG_INFO("--grpc_channel_arguments: %s has no effect here", key);
        }
        t = comma != NULL ? comma + 1 : NULL;
    }
    return true;
}

int veil_cmd_serve(int argc, char **argv)
{
    struct veil_serve_options o;
    struct veil_key_source *keys = NULL;
    struct veil_serve *srv = NULL;
    struct veil_errbuf eb = {{0}};
    const char *key_path = NULL;
    struct veil_cli_kbs_opts kbs = {0};
    struct veil_cli_kbs_state *kbs_state = NULL;
    const char *san_list[17] = {NULL};
    char san_buf[1024] = "";
    int status = 1;
    bool allow_core_dumps = false;
    bool allow_plaintext = false;
    memset(&o, 0, sizeof(o));
    o.grpc_port = 8500;
    o.rest_port = 8501;
    o.file_system_poll_wait_seconds = 1;
    o.enable_model_warmup = true; /* TF Serving's default */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            help(stdout);
            return 0;
        }
        if (strncmp(a, "--", 2) != 0) {
            help(stderr);
            return veil_cli_fail("serve", "unexpected argument '%s'", a);
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t nl = eq != NULL ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (nl == 0 || nl >= sizeof(name))
            return veil_cli_fail("serve", "bad flag '%s'", a);
        memcpy(name, a + 2, nl);
        name[nl] = '\0';
        const char *val = eq != NULL ? eq + 1 : NULL;
        bool b = false;
        /* Boolean flags may stand alone; the others take =VALUE or the next argument. */
        if (strcmp(name, "enable_batching") == 0 || strcmp(name, "plaintext") == 0 ||
            strcmp(name, "enable_grpc_healthcheck_service") == 0 ||
            strcmp(name, "rest_api_enable_cors_support") == 0 || strcmp(name, "version") == 0 ||
            strcmp(name, "allow-core-dumps") == 0 || strcmp(name, "allow_core_dumps") == 0 ||
            strcmp(name, "allow_plaintext_models") == 0 ||
            strcmp(name, "allow_version_labels_for_unavailable_models") == 0 ||
            strcmp(name, "enable_model_warmup") == 0) {
            if (!parse_bool(val, &b))
                return veil_cli_fail("serve", "--%s takes true or false", name);
            if (strcmp(name, "enable_batching") == 0)
                o.enable_batching = b;
            else if (strcmp(name, "plaintext") == 0)
                o.plaintext = b;
            else if (strcmp(name, "rest_api_enable_cors_support") == 0)
                o.rest_api_enable_cors_support = b;
            else if (strcmp(name, "enable_grpc_healthcheck_service") == 0)
                o.enable_grpc_healthcheck_service = b;
            else if (strcmp(name, "allow_plaintext_models") == 0)
                allow_plaintext = b;
            else if (strcmp(name, "allow_version_labels_for_unavailable_models") == 0)
                o.allow_version_labels_for_unavailable_models = b;
            else if (strcmp(name, "enable_model_warmup") == 0)
                o.enable_model_warmup = b;
            else if (strncmp(name, "allow", 5) == 0)
                allow_core_dumps = b;
            else if (b) {
                printf("Veil ModelServer: 0.1.0 (TensorFlow Serving API compatible)\n");
                return 0;
            }
            continue;
        }
        if (in_list(name, compat_bool_flags,
                    sizeof(compat_bool_flags) / sizeof(compat_bool_flags[0])) &&
            (val == NULL || parse_bool(val, &b))) {
            if (in_list(name, tf_only_flags, n_tf_only_flags))
                VEIL_LOG_WARN("--%s does not apply to ONNX models; ignored", name);
            else
                VEIL_LOG_INFO("--%s is accepted for compatibility and has no effect", name);
            continue;
        }
        if (val == NULL) {
            if (i + 1 >= argc)
                return veil_cli_fail("serve", "--%s needs a value", name);
            val = argv[++i];
        }
        bool ok = true;
        int64_t iv = 0;
        if (strcmp(name, "port") == 0)
            ok = parse_port(val, &o.grpc_port);
        else if (strcmp(name, "rest_api_port") == 0)
            ok = parse_port(val, &o.rest_port);
        else if (strcmp(name, "host") == 0)
            o.host = val;
        else if (strcmp(name, "model_name") == 0)
            o.model_name = val;
        else if (strcmp(name, "model_base_path") == 0)
            o.model_base_path = val;
        else if (strcmp(name, "model_config_file") == 0)
            o.model_config_file = val;
        else if (strcmp(name, "file_system_poll_wait_seconds") == 0)
            ok = parse_i64(val, &o.file_system_poll_wait_seconds);
        else if (strcmp(name, "model_config_file_poll_wait_seconds") == 0)
            ok = parse_i64(val, &o.model_config_file_poll_wait_seconds);
        else if (strcmp(name, "batching_parameters_file") == 0)
            o.batching_parameters_file = val;
        else if (strcmp(name, "ssl_config_file") == 0)
            o.ssl_config_file = val;
        else if (strcmp(name, "tls_cert") == 0)
            o.tls_cert_path = val;
        else if (strcmp(name, "tls_key") == 0)
            o.tls_key_path = val;
        else if (strcmp(name, "tls_client_ca") == 0) {
            o.tls_client_ca_path = val;
            o.tls_client_verify = true;
        } else if (strcmp(name, "key") == 0)
            key_path = val;
        else if (strcmp(name, "kbs") == 0)
            kbs.brokers = val;
        else if (strcmp(name, "kbs-ca") == 0 || strcmp(name, "kbs_ca") == 0)
            kbs.ca = val;
        else if (strcmp(name, "tee") == 0)
            kbs.tee = val;
        else if (strcmp(name, "sim-key") == 0 || strcmp(name, "sim_key") == 0)
            kbs.sim_key = val;
        else if (strcmp(name, "tee-root") == 0 || strcmp(name, "tee_root") == 0)
            kbs.tee_root = val;
        else if (strcmp(name, "svn") == 0) {
            ok = parse_i64(val, &iv) && iv >= 0 && iv <= UINT32_MAX;
            kbs.svn = (uint32_t)iv;
        } else if (strcmp(name, "tls_san") == 0 || strcmp(name, "tls-san") == 0) {
            /* Comma-separated names for the broker-issued serving certificate. */
            ok = strlen(val) < sizeof(san_buf);
            if (ok) {
                memcpy(san_buf, val, strlen(val) + 1);
                size_t n = 0;
                for (char *t = san_buf; t != NULL && *t != '\0' && n < 16;) {
                    char *comma = strchr(t, ',');
                    if (comma != NULL)
                        *comma = '\0';
                    san_list[n++] = t;
                    t = comma != NULL ? comma + 1 : NULL;
                }
                kbs.san = san_list;
            }
        } else if (strcmp(name, "monitoring_config_file") == 0)
            o.monitoring_config_file = val;
        else if (strcmp(name, "rest_api_timeout_in_ms") == 0) {
            ok = parse_i64(val, &iv) && iv >= 0 && iv <= UINT32_MAX;
            o.rest_api_timeout_ms = (uint32_t)iv;
        } else if (strcmp(name, "engine_threads") == 0)
            ok = parse_uint(val, &o.engine_threads);
        else if (strcmp(name, "request_threads") == 0)
            ok = parse_uint(val, &o.request_threads);
        else if (strcmp(name, "max_connections") == 0)
            ok = parse_uint(val, &o.max_connections);
        else if (strcmp(name, "max_connections_per_peer") == 0)
            ok = parse_uint(val, &o.max_connections_per_peer);
        else if (strcmp(name, "max_pending_handshakes") == 0)
            ok = parse_uint(val, &o.max_pending_handshakes);
        else if (strcmp(name, "handshake_timeout_seconds") == 0)
            ok = parse_uint(val, &o.handshake_timeout_seconds) && o.handshake_timeout_seconds > 0;
        else if (strcmp(name, "max_inflight_bytes") == 0) {
            ok = parse_i64(val, &iv) && iv > 0;
            o.max_inflight_bytes = (size_t)iv;
        } else if (strcmp(name, "grpc_channel_arguments") == 0)
            ok = parse_channel_arguments(val, &o);
        else if (strcmp(name, "max_streams") == 0)
            ok = parse_uint(val, &o.max_streams);
        else if (strcmp(name, "num_request_iterations_for_warmup") == 0)
            ok = parse_uint(val, &o.num_request_iterations_for_warmup);
        else if (strcmp(name, "drain_seconds") == 0)
            ok = parse_uint(val, &o.drain_seconds);
        else if (strcmp(name, "max_message_bytes") == 0) {
            ok = parse_i64(val, &iv) && iv > 0 && iv <= INT32_MAX;
            o.max_message_bytes = (size_t)iv;
        } else if (strcmp(name, "log_level") == 0) {
            if (strcmp(val, "err") == 0)
                veil_log_set_level(VEIL_LOG_LEVEL_ERR);
            else if (strcmp(val, "warn") == 0)
                veil_log_set_level(VEIL_LOG_LEVEL_WARN);
            else if (strcmp(val, "info") == 0)
                veil_log_set_level(VEIL_LOG_LEVEL_INFO);
            else if (strcmp(val, "debug") == 0)
                veil_log_set_level(VEIL_LOG_LEVEL_DEBUG);
            else
                ok = false;
        } else if (strcmp(name, "grpc_socket_path") == 0 ||
                   strcmp(name, "use_alts_credentials") == 0 ||
                   strcmp(name, "platform_config_file") == 0) {
            return veil_cli_fail("serve", "--%s is not supported", name);
        } else if (in_list(name, tf_only_flags, n_tf_only_flags)) {
            VEIL_LOG_WARN("--%s does not apply to ONNX models; ignored", name);
        } else if (in_list(name, ignored_flags, n_ignored_flags)) {
            VEIL_LOG_INFO("--%s is accepted for compatibility and has no effect", name);
        } else {
            help(stderr);
            return veil_cli_fail("serve", "unknown flag --%s", name);
        }
        if (!ok)
            return veil_cli_fail("serve", "bad value for --%s: '%s'", name, val);
    }
    /* Before any key, weight or private key is loaded: none of them may end up in a core. */
    veil_err rc = veil_harden_process(allow_core_dumps, &eb);
    if (rc != VEIL_OK)
        return veil_cli_fail("serve", "%s", veil_errbuf_msg(&eb, rc));
    if (kbs.brokers != NULL && key_path != NULL)
        return veil_cli_fail("serve", "--kbs and --key exclude each other");
    if (kbs.brokers != NULL) {
        /* Attested key release: no listening before the broker has provisioned us. */
        if ((rc = veil_cli_serve_provision(&kbs, &o, &keys, &kbs_state, &eb)) != VEIL_OK)
            goto out;
        /* Under the attested certificate only the owner's sealed models may answer. */
        o.sealed_only = !allow_plaintext;
        if (allow_plaintext)
            fprintf(stderr, "veil serve: WARNING: --allow_plaintext_models: plaintext model.onnx "
                            "files from the host are served under the attested certificate; "
                            "for development only\n");
    } else if (kbs.ca != NULL || kbs.tee != NULL || kbs.sim_key != NULL) {
        return veil_cli_fail("serve", "--kbs-ca, --tee and --sim-key need --kbs=HOST:PORT");
    }
    if (key_path != NULL && (rc = veil_key_source_new_files(key_path, &keys, &eb)) != VEIL_OK)
        goto out;
    o.keys = keys;
    if ((rc = veil_serve_new(&o, &srv, &eb)) != VEIL_OK)
        goto out;
    /* The broker's certificate is short-lived: renew it for as long as the server runs. */
    if (kbs_state != NULL && (rc = veil_cli_serve_renewal_start(kbs_state, srv, &eb)) != VEIL_OK)
        goto out;
    if ((rc = veil_serve_run(srv)) != VEIL_OK) {
        /* A config refused after the first load: TF Serving's status text. */
        if (rc == VEIL_E_STATE)
            rc = veil_errf(&eb, rc, "FAILED_PRECONDITION: %s", veil_serve_error(srv));
        goto out;
    }
    status = 0;
out:
    veil_cli_serve_renewal_stop(kbs_state); /* it uses the server and the key source */
    veil_serve_free(srv);
    veil_key_source_free(keys);
    veil_cli_kbs_state_free(kbs_state);
    if (rc != VEIL_OK)
        return veil_cli_fail("serve", "Failed to start server. Error: %s",
                             veil_errbuf_msg(&eb, rc));
    return status;
}
