/*
 * `veil bench`: a load generator for TF Serving's APIs. One thread drives every connection
 * through one poll loop and keeps --concurrency requests in flight (gRPC: HTTP/2 streams
 * spread over a few connections; REST: one keep-alive connection per request in flight). The
 * request is encoded once; latencies are kept per request (bounded, reservoir-sampled past the
 * cap) for exact percentiles.
 */
#include "cli.h"
#include "predict_io.h"
#include "veil/net.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SAMPLES (4u << 20)
#define MAX_STATUSES 32

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

struct bench;

struct slot {
    struct bench *b;
    size_t index;
    bool busy;
    uint64_t t0;
};

struct bench {
    struct veil_cli_client_args *a;
    struct veil_cli_attest *attest; /* NULL without --attest */
    SSL_CTX *ctx;
    struct veil_cli_conn *conns[256];
    size_t nconns;
    struct slot *slots;
    struct veil_buf req;
    char path[512];
    bool measuring;
    uint64_t measured_sent, ok, errors, reconnects;
    int status_code[MAX_STATUSES];
    uint64_t status_count[MAX_STATUSES];
    char last_error[256];
    uint32_t *lat_us; /* samples */
    size_t nlat;
    uint64_t seen; /* measured completions, for reservoir sampling */
    uint64_t rng;
    double max_ms, sum_ms;
};

static const char *grpc_status_name(int s)
{
    return s < 0 ? "connection failed" : veil_grpc_status_name(s);
}

static void count_status(struct bench *b, int status)
{
    for (size_t i = 0; i < MAX_STATUSES; i++) {
        if (b->status_count[i] != 0 && b->status_code[i] == status) {
            b->status_count[i]++;
            return;
        }
        if (b->status_count[i] == 0) {
            b->status_code[i] = status;
            b->status_count[i] = 1;
            return;
        }
    }
}

static void on_done(void *ud, int status, const char *message, const uint8_t *body, size_t len)
{
    (void)body;
    (void)len;
    struct slot *s = ud;
    struct bench *b = s->b;
    s->busy = false;
    bool good = b->a->rest ? status == 200 : status == 0;
    if (!b->measuring)
        return;
    double ms = (double)(veil_time_mono_ns() - s->t0) / 1e6;
    if (!good) {
        b->errors++;
        count_status(b, status);
        snprintf(b->last_error, sizeof(b->last_error), "%s", message != NULL ? message : "");
        return;
    }
    b->ok++;
    b->sum_ms += ms;
    if (ms > b->max_ms)
        b->max_ms = ms;
    uint32_t us = ms * 1000 > 4e9 ? UINT32_MAX : (uint32_t)(ms * 1000);
    b->seen++;
    if (b->nlat < MAX_SAMPLES) {
        b->lat_us[b->nlat++] = us;
    } else {
        /* Reservoir sampling keeps percentiles unbiased on long runs. */
        b->rng = b->rng * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t j = (b->rng >> 11) % b->seen;
        if (j < MAX_SAMPLES)
            b->lat_us[j] = us;
    }
}

static veil_err connect_one(struct bench *b, size_t i, struct veil_errbuf *eb)
{
    veil_cli_conn_free(b->conns[i]);
    b->conns[i] = NULL;
    veil_err rc = veil_cli_conn_open(&b->a->target, b->ctx, !b->a->rest, &b->conns[i], eb);
    /* With --attest no connection carries a request before its server key was checked (once
     * per key: a reconnect to the same key needs no new evidence). */
    if (rc == VEIL_OK && b->attest != NULL &&
        (rc = veil_cli_attest_conn(b->attest, b->conns[i], !b->a->rest, b->a->target.timeout_ms,
                                   eb)) != VEIL_OK) {
        veil_cli_conn_free(b->conns[i]);
        b->conns[i] = NULL;
    }
    return rc;
}

/* Fills every idle slot with a request; false when the run must stop (unrecoverable). */
static bool submit_idle(struct bench *b, bool allow_new)
{
    for (size_t i = 0; i < b->a->concurrency; i++) {
        struct slot *s = &b->slots[i];
        if (s->busy || !allow_new)
            continue;
        if (b->measuring && b->a->loop != 0 && b->measured_sent >= b->a->loop)
            return true;
        size_t ci = i % b->nconns;
        if (b->conns[ci] == NULL || veil_cli_conn_failed(b->conns[ci])) {
            if (b->conns[ci] != NULL && veil_cli_conn_pending(b->conns[ci]) > 0)
                continue;
            struct veil_errbuf eb = {{0}};
            b->reconnects++;
            if (connect_one(b, ci, &eb) != VEIL_OK) {
                snprintf(b->last_error, sizeof(b->last_error), "%s", eb.msg);
                usleep(10000);
                continue;
            }
        }
        s->busy = true;
        s->t0 = veil_time_mono_ns();
        veil_err rc =
            b->a->rest
                ? veil_cli_rest_call(b->conns[ci], "POST", b->path, veil_buf_span(&b->req), on_done,
                                     s)
                : veil_cli_grpc_call(b->conns[ci], "/tensorflow.serving.PredictionService/Predict",
                                     veil_buf_span(&b->req), on_done, s);
        if (rc != VEIL_OK) {
            s->busy = false;
            continue;
        }
        if (b->measuring)
            b->measured_sent++;
    }
    return true;
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

static double pct(const struct bench *b, double p)
{
    if (b->nlat == 0)
        return 0;
    size_t i = (size_t)ceil(p / 100.0 * (double)b->nlat);
    if (i > 0)
        i--;
    if (i >= b->nlat)
        i = b->nlat - 1;
    return b->lat_us[i] / 1000.0;
}

static void print_histogram(const struct bench *b)
{
    if (b->nlat == 0)
        return;
    double lo = b->lat_us[0] / 1000.0, hi = pct(b, 99.9);
    if (hi <= lo)
        hi = lo + 0.001;
    enum { BUCKETS = 12, WIDTH = 40 };
    uint64_t counts[BUCKETS + 1] = {0};
    for (size_t i = 0; i < b->nlat; i++) {
        double v = b->lat_us[i] / 1000.0;
        size_t k = v > hi ? BUCKETS : (size_t)((v - lo) / (hi - lo) * BUCKETS);
        counts[k > BUCKETS ? BUCKETS : k == BUCKETS && v <= hi ? BUCKETS - 1 : k]++;
    }
    uint64_t top = 1;
    for (size_t k = 0; k <= BUCKETS; k++)
        top = counts[k] > top ? counts[k] : top;
    printf("latency histogram (ms):\n");
    for (size_t k = 0; k <= BUCKETS; k++) {
        char bar[WIDTH + 1];
        size_t n = (size_t)((double)counts[k] / (double)top * WIDTH + 0.5);
        memset(bar, '#', n);
        bar[n] = '\0';
        if (k < BUCKETS)
            printf("  %8.3f - %8.3f |%-*s| %llu\n", lo + (hi - lo) * k / BUCKETS,
                   lo + (hi - lo) * (k + 1) / BUCKETS, WIDTH, bar, (unsigned long long)counts[k]);
        else if (counts[k] > 0)
            printf("  %8.3f +          |%-*s| %llu\n", hi, WIDTH, bar,
                   (unsigned long long)counts[k]);
    }
}

static void report(const struct bench *b, double secs)
{
    const struct veil_cli_client_args *a = b->a;
    double rps = secs > 0 ? (double)b->ok / secs : 0;
    const char *sec = a->plaintext ? "plaintext" : a->target.cert ? "mutual TLS" : "TLS";
    if (a->json) {
        printf("{\"api\":\"%s\",\"security\":\"%s\",\"model\":\"%s\",\"batch\":%lld,"
               "\"concurrency\":%llu,\"connections\":%zu,\"duration_s\":%.3f,\"requests\":%llu,"
               "\"ok\":%llu,\"errors\":{",
               a->rest ? "rest" : "grpc", sec, a->model.name, (long long)a->batch,
               (unsigned long long)a->concurrency, b->nconns, secs,
               (unsigned long long)(b->ok + b->errors), (unsigned long long)b->ok);
        for (size_t i = 0; i < MAX_STATUSES && b->status_count[i]; i++)
            printf("%s\"%d\":%llu", i ? "," : "", b->status_code[i],
                   (unsigned long long)b->status_count[i]);
        printf("},\"throughput_rps\":%.2f,\"items_per_s\":%.2f,\"latency_ms\":{\"p50\":%.3f,"
               "\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f,\"mean\":%.3f}}\n",
               rps, rps * (double)a->batch, pct(b, 50), pct(b, 90), pct(b, 99), b->max_ms,
               b->ok ? b->sum_ms / (double)b->ok : 0);
        return;
    }
    printf("veil bench: model %s over %s (%s), batch %lld, concurrency %llu, %zu connection%s\n",
           a->model.name, a->rest ? "REST" : "gRPC", sec, (long long)a->batch,
           (unsigned long long)a->concurrency, b->nconns, b->nconns == 1 ? "" : "s");
    printf("requests:    %llu ok, %llu errors in %.2f s\n", (unsigned long long)b->ok,
           (unsigned long long)b->errors, secs);
    printf("throughput:  %.1f requests/s, %.1f items/s\n", rps, rps * (double)a->batch);
    printf("latency ms:  p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  mean %.3f\n", pct(b, 50),
           pct(b, 90), pct(b, 99), b->max_ms, b->ok ? b->sum_ms / (double)b->ok : 0);
    if (b->errors == 0) {
        printf("errors:      none\n");
    } else {
        printf("errors by status:");
        for (size_t i = 0; i < MAX_STATUSES && b->status_count[i]; i++)
            printf("  %d %s: %llu", b->status_code[i],
                   a->rest ? (b->status_code[i] < 0 ? "connection failed" : "HTTP")
                           : grpc_status_name(b->status_code[i]),
                   (unsigned long long)b->status_count[i]);
        printf("\nlast error:  %s\n", b->last_error);
    }
    print_histogram(b);
}

static size_t inflight(const struct bench *b)
{
    size_t n = 0;
    for (size_t i = 0; i < b->a->concurrency; i++)
        n += b->slots[i].busy;
    return n;
}

int veil_cmd_bench(int argc, char **argv)
{
    struct veil_cli_client_args a;
    int st = veil_cli_client_parse(argc, argv, true, &a);
    if (st != 0)
        return st < 0 ? 0 : st;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct bench b;
    memset(&b, 0, sizeof(b));
    b.a = &a;
    b.nconns = a.connections;
    b.rng = 0x853c49e6748fea9bull;
    veil_buf_init(&b.req, 1u << 31);
    struct veil_errbuf eb = {{0}};
    int status = 1;
    bool tty = isatty(STDERR_FILENO) && !a.json;
    b.slots = veil_calloc(a.concurrency, sizeof(*b.slots));
    b.lat_us = veil_allocarray(MAX_SAMPLES, sizeof(uint32_t));
    veil_err rc = b.slots != NULL && b.lat_us != NULL ? VEIL_OK : VEIL_E_NOMEM;
    for (size_t i = 0; b.slots != NULL && i < a.concurrency; i++)
        b.slots[i] = (struct slot){&b, i, false, 0};
    if (rc == VEIL_OK && a.attest.policy != NULL)
        rc = veil_cli_attest_new(&a.attest, &b.attest, &eb);
    if (rc == VEIL_OK)
        rc = veil_cli_tls_ctx(&a.target, a.rest ? "http/1.1" : "h2", &b.ctx, &eb);
    if (rc == VEIL_OK)
        rc = connect_one(&b, 0, &eb);
    if (rc == VEIL_OK)
        rc = veil_cli_fetch_signature(b.conns[0], !a.rest, &a.model, &eb);
    if (rc == VEIL_OK)
        rc = veil_cli_make_inputs(&a.model, a.inputs, a.n_inputs, a.batch, a.seed, &eb);
    if (rc == VEIL_OK)
        rc = a.rest ? veil_cli_encode_rest(&a.model, &b.req)
                    : veil_cli_encode_grpc(&a.model, &b.req);
    for (size_t i = 1; rc == VEIL_OK && i < b.nconns; i++)
        rc = connect_one(&b, i, &eb);
    if (rc != VEIL_OK) {
        veil_cli_fail("bench", "%s", veil_errbuf_msg(&eb, rc));
        goto out;
    }
    veil_cli_rest_path(&a.model, ":predict", b.path, sizeof(b.path));

    uint64_t now = veil_time_mono_ns();
    uint64_t warm_end = now + (uint64_t)(a.warmup_s * 1e9);
    uint64_t start = warm_end, end = UINT64_MAX, last_progress = now;
    b.measuring = a.warmup_s <= 0;
    while (!g_interrupted) {
        now = veil_time_mono_ns();
        if (!b.measuring && now >= warm_end) {
            b.measuring = true;
            start = now;
            if (a.loop == 0)
                end = start + (uint64_t)(a.duration_s * 1e9);
        } else if (b.measuring && a.loop == 0 && end == UINT64_MAX) {
            start = now;
            end = start + (uint64_t)(a.duration_s * 1e9);
        }
        bool finished = b.measuring && (now >= end || (a.loop != 0 && b.measured_sent >= a.loop));
        if (finished)
            break;
        submit_idle(&b, true);
        veil_cli_pump(b.conns, b.nconns, 20);
        if (tty && now - last_progress >= 1000000000ull) {
            last_progress = now;
            double el = b.measuring ? (double)(now - start) / 1e9 : 0;
            fprintf(stderr, "\r%s %6.1f s  %10llu ok  %8llu errors  %9.1f req/s   ",
                    b.measuring ? "measuring" : "warming  ", el, (unsigned long long)b.ok,
                    (unsigned long long)b.errors, el > 0 ? (double)b.ok / el : 0.0);
            fflush(stderr);
        }
    }
    /* Let requests in flight finish (bounded), then report the measured window. */
    uint64_t stop = veil_time_mono_ns(), drain_until = stop + 10000000000ull;
    while (inflight(&b) > 0 && veil_time_mono_ns() < drain_until)
        veil_cli_pump(b.conns, b.nconns, 20);
    if (tty)
        fprintf(stderr, "\r\033[K");
    qsort(b.lat_us, b.nlat, sizeof(uint32_t), cmp_u32);
    report(&b, b.measuring ? (double)(stop - start) / 1e9 : 0);
    status = b.ok > 0 ? 0 : 1;
    if (b.ok == 0)
        veil_cli_fail("bench", "no request succeeded%s%s", b.last_error[0] ? ": " : "",
                      b.last_error);
out:
    for (size_t i = 0; i < b.nconns; i++)
        veil_cli_conn_free(b.conns[i]);
    SSL_CTX_free(b.ctx);
    veil_cli_attest_free(b.attest);
    veil_free(b.slots);
    veil_free(b.lat_us);
    veil_buf_release(&b.req);
    veil_cli_model_release(&a.model);
    return status;
}
