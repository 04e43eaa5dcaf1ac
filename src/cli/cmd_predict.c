/*
 * `veil predict`: one Predict request over gRPC or REST, TLS or mutual TLS, with inputs from
 * .npy files or random with a seed; prints the outputs, and top-k classes for a classifier.
 */
#include "cli.h"
#include "predict_io.h"

#include <signal.h>
#include <string.h>

int veil_cmd_predict(int argc, char **argv)
{
    struct veil_cli_client_args a;
    int st = veil_cli_client_parse(argc, argv, false, &a);
    if (st != 0)
        return st < 0 ? 0 : st;
    signal(SIGPIPE, SIG_IGN);
    struct veil_errbuf eb = {{0}};
    SSL_CTX *ctx = NULL;
    struct veil_cli_conn *c = NULL;
    struct veil_buf req;
    struct veil_cli_reply ans = {0};
    veil_buf_init(&req, 1u << 31);
    veil_buf_init(&ans.body, 1u << 31);
    struct veil_cli_attest *att = NULL;
    veil_err rc = VEIL_OK;
    if (a.attest.policy != NULL)
        rc = veil_cli_attest_new(&a.attest, &att, &eb);
    if (rc == VEIL_OK)
        rc = veil_cli_tls_ctx(&a.target, a.rest ? "http/1.1" : "h2", &ctx, &eb);
    if (rc == VEIL_OK)
        rc = veil_cli_conn_open(&a.target, ctx, !a.rest, &c, &eb);
    /* The server proves what it is before it sees any request, the metadata lookup included. */
    if (rc == VEIL_OK && att != NULL)
        rc = veil_cli_attest_conn(att, c, !a.rest, a.target.timeout_ms, &eb);
    if (rc == VEIL_OK)
        rc = veil_cli_fetch_signature(c, !a.rest, &a.model, &eb);
    if (rc == VEIL_OK)
        rc = veil_cli_make_inputs(&a.model, a.inputs, a.n_inputs, a.batch, a.seed, &eb);
    if (rc == VEIL_OK)
        rc = a.rest ? veil_cli_encode_rest(&a.model, &req) : veil_cli_encode_grpc(&a.model, &req);
    uint64_t t0 = veil_time_mono_ns();
    if (rc == VEIL_OK && a.rest) {
        char path[512];
        veil_cli_rest_path(&a.model, ":predict", path, sizeof(path));
        rc = veil_cli_rest_call(c, "POST", path, veil_buf_span(&req), veil_cli_on_reply, &ans);
    } else if (rc == VEIL_OK) {
        rc = veil_cli_grpc_call(c, "/tensorflow.serving.PredictionService/Predict",
                                veil_buf_span(&req), veil_cli_on_reply, &ans);
    }
    if (rc == VEIL_OK)
        rc = veil_cli_wait_idle(c, 120000, &eb);
    double ms = (double)(veil_time_mono_ns() - t0) / 1e6;
    int status = 1;
    if (rc != VEIL_OK) {
        veil_cli_fail("predict", "%s", veil_errbuf_msg(&eb, rc));
    } else if (a.rest && ans.status != 200) {
        veil_cli_fail("predict", "HTTP %d: %.*s", ans.status,
                      (int)(ans.body.len > 500 ? 500 : ans.body.len), (const char *)ans.body.p);
    } else if (!a.rest && ans.status != 0) {
        veil_cli_fail("predict", "gRPC status %d: %s", ans.status, ans.message);
    } else {
        rc = a.rest ? veil_cli_decode_rest(&a.model, veil_buf_span(&ans.body), &eb)
                    : veil_cli_decode_grpc(&a.model, veil_buf_span(&ans.body), &eb);
        if (rc != VEIL_OK) {
            veil_cli_fail("predict", "%s", veil_errbuf_msg(&eb, rc));
        } else {
            printf("model %s over %s%s%s: answered in %.2f ms\n", a.model.name,
                   a.rest ? "REST" : "gRPC",
                   a.plaintext     ? " (plaintext)"
                   : a.target.cert ? " (mutual TLS)"
                                   : " (TLS)",
                   att != NULL ? " from an attested server" : "", ms);
            veil_cli_print_outputs(&a.model, a.top_k);
            status = 0;
        }
    }
    veil_cli_conn_free(c);
    veil_cli_attest_free(att);
    SSL_CTX_free(ctx);
    veil_buf_release(&req);
    veil_buf_release(&ans.body);
    veil_cli_model_release(&a.model);
    return status;
}
