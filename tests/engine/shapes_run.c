/*
 * engine_shapes_run: one loaded model, many input signatures. Loads MODEL once, then runs the
 * cases CASE... (folders holding one NAME.npy per model input) in the order given, writing each
 * case's outputs to CASE/seq/OUTPUT.npy; then THREADS threads run the cases at once, each in
 * its own rotated order for ROUNDS rounds, writing CASE/par_T_R/OUTPUT.npy. The plan cache holds
 * PLANS plans, so sequences with more signatures evict and rebuild plans. Every output is
 * compared with ONNX Runtime's by tests/engine/check_shapes.py.
 *
 * Usage: engine_shapes_run MODEL COMPUTE_THREADS PLANS THREADS ROUNDS CASE...
 * Exit status: 0 when every run succeeded, 1 otherwise (each failure printed).
 */
#include "veil/base.h"
#include "veil/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_IO 16
#define MAX_CASES 64

struct run_case {
    const char *dir;
    struct veil_buf files[MAX_IO];
    struct veil_tensor in[MAX_IO];
    char sig[128];
};

struct shared {
    struct veil_engine_model *m;
    struct run_case *cases;
    size_t n_cases, n_in, n_out;
    unsigned rounds;
    pthread_mutex_t mu;
    unsigned failures;
};

static int load_case(struct veil_engine_model *m, struct run_case *c)
{
    size_t n_in = veil_engine_model_num_inputs(m), len = 0;
    for (size_t i = 0; i < n_in; i++) {
        const struct veil_tensor_info *ti = veil_engine_model_input(m, i);
        char path[4096];
        struct veil_errbuf eb = {{0}};
        snprintf(path, sizeof(path), "%s/%s.npy", c->dir, ti->name);
        veil_buf_init(&c->files[i], (size_t)4 << 30);
        veil_err rc = veil_file_read_all(path, (size_t)4 << 30, &c->files[i], &eb);
        if (rc == VEIL_OK)
            rc = veil_npy_parse(veil_buf_span(&c->files[i]), &c->in[i], &eb);
        if (rc != VEIL_OK) {
            fprintf(stderr, "%s: %s\n", path, veil_errbuf_msg(&eb, rc));
            return 1;
        }
        for (size_t d = 0; d < c->in[i].rank && len + 24 < sizeof(c->sig); d++)
            len +=
                (size_t)snprintf(c->sig + len, sizeof(c->sig) - len, "%s%lld",
                                 d == 0 ? (i == 0 ? "" : " ") : "x", (long long)c->in[i].dims[d]);
    }
    return 0;
}

/* Runs case c and writes its outputs to c->dir/sub. Returns 0 on success. */
static int run_case(struct shared *s, struct run_case *c, const char *sub)
{
    struct veil_tensor out[MAX_IO];
    struct veil_errbuf eb = {{0}};
    char dir[4096];
    int bad = 0;
    veil_err rc = veil_engine_run(s->m, c->in, s->n_in, out, s->n_out, &eb);
    if (rc != VEIL_OK) {
        fprintf(stderr, "FAIL run %s (%s) into %s: %s\n", c->dir, c->sig, sub,
                veil_errbuf_msg(&eb, rc));
        return 1;
    }
    snprintf(dir, sizeof(dir), "%s/%s", c->dir, sub);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "FAIL mkdir %s\n", dir);
        bad = 1;
    }
    for (size_t j = 0; j < s->n_out; j++) {
        struct veil_buf b;
        char path[4200];
        veil_buf_init(&b, (size_t)4 << 30);
        snprintf(path, sizeof(path), "%s/%s.npy", dir, veil_engine_model_output(s->m, j)->name);
        if (!bad && (veil_npy_write(&out[j], &b) != VEIL_OK ||
                     veil_file_write_atomic(path, veil_buf_span(&b), 0644, 0, &eb) != VEIL_OK)) {
            fprintf(stderr, "FAIL writing %s\n", path);
            bad = 1;
        }
        veil_buf_release(&b);
        veil_tensor_release(&out[j]);
    }
    return bad;
}

struct worker {
    struct shared *s;
    unsigned id;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    struct shared *s = w->s;
    for (unsigned r = 0; r < s->rounds; r++) {
        /* Thread t starts at case t and steps by t+1: neighbours run different shapes. */
        size_t k = (w->id + (size_t)r * (w->id + 1)) % s->n_cases;
        char sub[64];
        snprintf(sub, sizeof(sub), "par_%u_%u", w->id, r);
        int bad = run_case(s, &s->cases[k], sub);
        pthread_mutex_lock(&s->mu);
        s->failures += (unsigned)bad;
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: %s MODEL COMPUTE_THREADS PLANS THREADS ROUNDS CASE...\n", argv[0]);
        return 2;
    }
    static struct run_case cases[MAX_CASES];
    struct shared s;
    memset(&s, 0, sizeof(s));
    size_t n_cases = (size_t)(argc - 6);
    unsigned threads = (unsigned)strtoul(argv[4], NULL, 10);
    if (n_cases > MAX_CASES || threads == 0 || threads > 16) {
        fprintf(stderr, "too many cases or bad thread count\n");
        return 2;
    }
    struct veil_engine_options opt = {.threads = (unsigned)strtoul(argv[2], NULL, 10),
                                      .max_plans = (unsigned)strtoul(argv[3], NULL, 10)};
    struct veil_errbuf eb = {{0}};
    struct veil_buf model;
    veil_buf_init(&model, (size_t)4 << 30);
    veil_err rc = veil_file_read_all(argv[1], (size_t)4 << 30, &model, &eb);
    if (rc == VEIL_OK)
        rc = veil_engine_model_load(veil_buf_span(&model), &opt, &s.m, &eb);
    veil_buf_release(&model);
    if (rc != VEIL_OK) {
        fprintf(stderr, "FAIL load %s: %s\n", argv[1], veil_errbuf_msg(&eb, rc));
        return 1;
    }
    s.n_in = veil_engine_model_num_inputs(s.m);
    s.n_out = veil_engine_model_num_outputs(s.m);
    if (s.n_in > MAX_IO || s.n_out > MAX_IO) {
        fprintf(stderr, "FAIL: too many inputs or outputs\n");
        return 1;
    }
    s.cases = cases;
    s.n_cases = n_cases;
    s.rounds = (unsigned)strtoul(argv[5], NULL, 10);
    pthread_mutex_init(&s.mu, NULL);
    int status = 0;
    for (size_t i = 0; i < n_cases; i++) {
        cases[i].dir = argv[6 + i];
        if (load_case(s.m, &cases[i]) != 0)
            status = 1;
    }
    for (size_t i = 0; status == 0 && i < n_cases; i++) {
        int bad = run_case(&s, &cases[i], "seq");
        printf("%s sequential run %zu: %s\n", bad ? "FAIL" : "ran ", i, cases[i].sig);
        s.failures += (unsigned)bad;
    }
    if (status == 0) {
        pthread_t th[16];
        struct worker w[16];
        for (unsigned t = 0; t < threads; t++) {
            w[t] = (struct worker){&s, t};
            if (pthread_create(&th[t], NULL, work, &w[t]) != 0) {
                fprintf(stderr, "FAIL pthread_create\n");
                threads = t;
                status = 1;
                break;
            }
        }
        for (unsigned t = 0; t < threads; t++)
            pthread_join(th[t], NULL);
        printf("concurrent: %u threads x %u rounds, %u failed runs\n", threads, s.rounds,
               s.failures);
    }
    for (size_t i = 0; i < n_cases; i++)
        for (size_t k = 0; k < MAX_IO; k++)
            veil_buf_release(&cases[i].files[k]);
    veil_engine_model_free(s.m);
    pthread_mutex_destroy(&s.mu);
    return status != 0 || s.failures != 0 ? 1 : 0;
}
