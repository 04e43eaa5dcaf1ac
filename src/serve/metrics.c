/*
 * Prometheus metrics: request counts and latency histograms by model, version, API,
 * entrypoint and status, and batch size and model run time histograms by model, kept in a small
 * table under one mutex (the label space is bounded by the configured models: unknown model names
 * are counted under one shared label so clients cannot grow the table).
 */
#include "serve_int.h"

#include <stdio.h>
#include <string.h>

#define MET_MAX_SERIES 4096

static const double lat_bounds_us[] = {10,     50,     100,     250,     500,     1000,
                                       2500,   5000,   10000,   25000,   50000,   100000,
                                       250000, 500000, 1000000, 2500000, 5000000, 10000000};
#define N_LAT (sizeof(lat_bounds_us) / sizeof(lat_bounds_us[0]))
static const unsigned batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
#define N_BATCH (sizeof(batch_bounds) / sizeof(batch_bounds[0]))

/* A label value escaped for the text format: each byte takes at most two. */
#define LABEL_MAX (2 * SV_NAME_MAX + 1)

struct series {
    char model[SV_NAME_MAX + 1];
    char label[LABEL_MAX]; /* model, escaped */
    int64_t version;
    char api[24];
    char entry[8];
    int code;
    uint64_t count;
    double sum_us;
    uint64_t buckets[N_LAT];
};

struct bseries {
    char model[SV_NAME_MAX + 1];
    char label[LABEL_MAX];
    uint64_t count; /* batches */
    uint64_t sum;
    uint64_t buckets[N_BATCH];
    uint64_t rt_count; /* engine runs */
    double rt_sum_us;
    uint64_t rt_buckets[N_LAT];
};

struct sv_metrics {
    pthread_mutex_t mu;
    struct series *s;
    size_t n;
    struct bseries *b;
    size_t nb;
};

veil_err veil__serve_metrics_new(struct sv_metrics **out)
{
    struct sv_metrics *m = veil_calloc(1, sizeof(*m));
    *out = NULL;
    if (m == NULL)
        return VEIL_E_NOMEM;
    m->s = veil_calloc(MET_MAX_SERIES, sizeof(*m->s));
    m->b = veil_calloc(SV_MAX_MODELS, sizeof(*m->b));
    if (m->s == NULL || m->b == NULL) {
        veil_free(m->s);
        veil_free(m->b);
        veil_free(m);
        return VEIL_E_NOMEM;
    }
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return VEIL_OK;
}

void veil__serve_metrics_free(struct sv_metrics *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->mu);
    veil_free(m->s);
    veil_free(m->b);
    veil_free(m);
}

/*
 * Escapes a label value as the Prometheus text format requires (backslash, double quote and
 * line feed become \\, \" and \n), so a model name cannot end its label or inject a line.
 */
void veil__serve_metrics_escape(const char *v, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = v; *p != '\0' && o + 2 < cap; p++) {
        if (*p == '\\' || *p == '"' || *p == '\n') {
            out[o++] = '\\';
            out[o++] = *p == '\n' ? 'n' : *p;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

void veil__serve_metrics_request(struct sv_metrics *m, const char *model, int64_t version,
                                 const char *api, const char *entry, int code, uint64_t latency_ns)
{
    if (m == NULL)
        return;
    if (model == NULL || model[0] == '\0' || strlen(model) > SV_NAME_MAX)
        model = "";
    double us = (double)latency_ns / 1000.0;
    pthread_mutex_lock(&m->mu);
    struct series *s = NULL;
    for (size_t i = 0; i < m->n && s == NULL; i++)
        if (m->s[i].version == version && m->s[i].code == code &&
            strcmp(m->s[i].model, model) == 0 && strcmp(m->s[i].api, api) == 0 &&
            strcmp(m->s[i].entry, entry) == 0)
            s = &m->s[i];
    if (s == NULL && m->n < MET_MAX_SERIES) {
        s = &m->s[m->n++];
        snprintf(s->model, sizeof(s->model), "%s", model);
        veil__serve_metrics_escape(s->model, s->label, sizeof(s->label));
        s->version = version;
        snprintf(s->api, sizeof(s->api), "%s", api);
        snprintf(s->entry, sizeof(s->entry), "%s", entry);
        s->code = code;
    }
    if (s != NULL) {
        s->count++;
        s->sum_us += us;
        for (size_t i = 0; i < N_LAT; i++)
            if (us <= lat_bounds_us[i])
                s->buckets[i]++;
    }
    pthread_mutex_unlock(&m->mu);
}

/* The per-model series of model, added when new; NULL when the table is full. Under m->mu. */
static struct bseries *model_series(struct sv_metrics *m, const char *model)
{
    for (size_t i = 0; i < m->nb; i++)
        if (strcmp(m->b[i].model, model) == 0)
            return &m->b[i];
    if (m->nb == SV_MAX_MODELS)
        return NULL;
    struct bseries *b = &m->b[m->nb++];
    snprintf(b->model, sizeof(b->model), "%s", model);
    veil__serve_metrics_escape(b->model, b->label, sizeof(b->label));
    return b;
}

void veil__serve_metrics_runtime(struct sv_metrics *m, const char *model, uint64_t run_ns)
{
    if (m == NULL)
        return;
    double us = (double)run_ns / 1000.0;
    pthread_mutex_lock(&m->mu);
    struct bseries *b = model_series(m, model);
    if (b != NULL) {
        b->rt_count++;
        b->rt_sum_us += us;
        for (size_t i = 0; i < N_LAT; i++)
            if (us <= lat_bounds_us[i])
                b->rt_buckets[i]++;
    }
    pthread_mutex_unlock(&m->mu);
}

void veil__serve_metrics_batch(struct sv_metrics *m, const char *model, size_t batch_size)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    struct bseries *b = model_series(m, model);
    if (b != NULL) {
        b->count++;
        b->sum += batch_size;
        for (size_t i = 0; i < N_BATCH; i++)
            if (batch_size <= batch_bounds[i])
                b->buckets[i]++;
    }
    pthread_mutex_unlock(&m->mu);
}

veil_err veil__serve_metrics_render(struct sv_metrics *m, struct veil_buf *b)
{
    veil_err rc = veil_buf_append_str(b, "# TYPE :tensorflow:serving:request_count counter\n");
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; rc == VEIL_OK && i < m->n; i++) {
        const struct series *s = &m->s[i];
        rc =
            veil_buf_appendf(b,
                             ":tensorflow:serving:request_count{model_name=\"%s\",version=\"%lld\","
                             "API=\"%s\",entrypoint=\"%s\",status=\"%s\"} %llu\n",
                             s->label, (long long)s->version, s->api, s->entry,
                             veil_grpc_status_name(s->code), (unsigned long long)s->count);
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(b, "# TYPE :tensorflow:serving:request_latency histogram\n");
    for (size_t i = 0; rc == VEIL_OK && i < m->n; i++) {
        const struct series *s = &m->s[i];
        char labels[LABEL_MAX + 128];
        snprintf(labels, sizeof(labels),
                 "model_name=\"%s\",version=\"%lld\",API=\"%s\",entrypoint=\"%s\",status=\"%s\"",
                 s->label, (long long)s->version, s->api, s->entry, veil_grpc_status_name(s->code));
        for (size_t k = 0; rc == VEIL_OK && k < N_LAT; k++)
            rc = veil_buf_appendf(b,
                                  ":tensorflow:serving:request_latency_bucket{%s,le=\"%g\"} %llu\n",
                                  labels, lat_bounds_us[k], (unsigned long long)s->buckets[k]);
        if (rc == VEIL_OK)
            rc =
                veil_buf_appendf(b,
                                 ":tensorflow:serving:request_latency_bucket{%s,le=\"+Inf\"} %llu\n"
                                 ":tensorflow:serving:request_latency_sum{%s} %.3f\n"
                                 ":tensorflow:serving:request_latency_count{%s} %llu\n",
                                 labels, (unsigned long long)s->count, labels, s->sum_us, labels,
                                 (unsigned long long)s->count);
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(b, "# TYPE :tensorflow:serving:batching_session:"
                                    "processed_batch_size histogram\n");
    for (size_t i = 0; rc == VEIL_OK && i < m->nb; i++) {
        const struct bseries *s = &m->b[i];
        if (s->count == 0)
            continue;
        for (size_t k = 0; rc == VEIL_OK && k < N_BATCH; k++)
            rc = veil_buf_appendf(b,
                                  ":tensorflow:serving:batching_session:processed_batch_size_bucket"
                                  "{model_name=\"%s\",le=\"%u\"} %llu\n",
                                  s->label, batch_bounds[k], (unsigned long long)s->buckets[k]);
        if (rc == VEIL_OK)
            rc = veil_buf_appendf(
                b,
                ":tensorflow:serving:batching_session:processed_batch_size_bucket{model_name=\"%"
                "s\","
                "le=\"+Inf\"} %llu\n"
                ":tensorflow:serving:batching_session:processed_batch_size_sum{model_name=\"%s\"} "
                "%llu\n"
                ":tensorflow:serving:batching_session:processed_batch_size_count{model_name=\"%s\"}"
                " "
                "%llu\n",
                s->label, (unsigned long long)s->count, s->label, (unsigned long long)s->sum,
                s->label, (unsigned long long)s->count);
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_str(b, "# TYPE :tensorflow:serving:runtime_latency histogram\n");
    for (size_t i = 0; rc == VEIL_OK && i < m->nb; i++) {
        const struct bseries *s = &m->b[i];
        if (s->rt_count == 0)
            continue;
        char labels[LABEL_MAX + 64];
        snprintf(labels, sizeof(labels), "model_name=\"%s\",API=\"Predict\",runtime=\"veil\"",
                 s->label);
        for (size_t k = 0; rc == VEIL_OK && k < N_LAT; k++)
            rc = veil_buf_appendf(b,
                                  ":tensorflow:serving:runtime_latency_bucket{%s,le=\"%g\"} %llu\n",
                                  labels, lat_bounds_us[k], (unsigned long long)s->rt_buckets[k]);
        if (rc == VEIL_OK)
            rc =
                veil_buf_appendf(b,
                                 ":tensorflow:serving:runtime_latency_bucket{%s,le=\"+Inf\"} %llu\n"
                                 ":tensorflow:serving:runtime_latency_sum{%s} %.3f\n"
                                 ":tensorflow:serving:runtime_latency_count{%s} %llu\n",
                                 labels, (unsigned long long)s->rt_count, labels, s->rt_sum_us,
                                 labels, (unsigned long long)s->rt_count);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}
