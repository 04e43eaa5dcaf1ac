/*
 * Scheduling: a fixed pool of request threads that decode, run and encode requests off the
 * event loop, with a bounded queue (full means UNAVAILABLE, never unbounded growth); and the
 * dynamic batcher of TF Serving's batching parameters: requests to one model version queue up
 * to max_batch_size rows or batch_timeout_micros, are concatenated along dim 0 (padded to the
 * next allowed_batch_sizes entry), run once, and the outputs are split back so each client
 * sees exactly what it would see unbatched.
 */
#include "serve_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- Request threads ---- */

struct sched_item {
    struct sched_item *next;
    void (*fn)(void *);
    void *arg;
};

struct sv_sched {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sched_item *head, *tail;
    size_t queued, max_queue;
    bool stop;
    pthread_t *threads;
    unsigned n;
};

static void *sched_main(void *arg)
{
    struct sv_sched *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && s->head == NULL)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->head == NULL)
            break;
        struct sched_item *it = s->head;
        s->head = it->next;
        if (s->head == NULL)
            s->tail = NULL;
        s->queued--;
        pthread_mutex_unlock(&s->mu);
        it->fn(it->arg);
        veil_free(it);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

veil_err veil__serve_sched_new(unsigned threads, size_t max_queue, struct sv_sched **out)
{
    struct sv_sched *s = veil_calloc(1, sizeof(*s));
    *out = NULL;
    if (s == NULL)
        return VEIL_E_NOMEM;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->max_queue = max_queue;
    s->threads = veil_calloc(threads, sizeof(pthread_t));
    if (s->threads == NULL) {
        veil__serve_sched_free(s);
        return VEIL_E_NOMEM;
    }
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&s->threads[i], NULL, sched_main, s) != 0) {
            veil__serve_sched_free(s);
            return VEIL_E_INTERNAL;
        }
        s->n++;
    }
    *out = s;
    return VEIL_OK;
}

bool veil__serve_sched_submit(struct sv_sched *s, void (*fn)(void *), void *arg)
{
    struct sched_item *it = veil_malloc(sizeof(*it));
    if (it == NULL)
        return false;
    it->next = NULL;
    it->fn = fn;
    it->arg = arg;
    pthread_mutex_lock(&s->mu);
    if (s->stop || s->queued >= s->max_queue) {
        pthread_mutex_unlock(&s->mu);
        veil_free(it);
        return false;
    }
    if (s->tail != NULL)
        s->tail->next = it;
    else
        s->head = it;
    s->tail = it;
    s->queued++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return true;
}

void veil__serve_sched_free(struct sv_sched *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (unsigned i = 0; i < s->n; i++)
        pthread_join(s->threads[i], NULL);
    veil_free(s->threads);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    veil_free(s);
}

/* ---- Running ---- */

static void run_direct(struct sv_version *v, struct veil_tensor *inputs, sv_done_fn done, void *arg)
{
    struct veil_tensor outs[SV_MAX_IO];
    struct veil_errbuf eb = {{0}};
    struct sv_status st = {0, ""};
    memset(outs, 0, sizeof(outs));
    uint64_t t_run = veil_time_mono_ns();
    veil_err rc = veil_engine_run(v->em, inputs, v->sig.n_in, outs, v->sig.n_out, &eb);
    t_run = veil_time_mono_ns() - t_run;
    veil__serve_metrics_runtime(v->model->repo->metrics, v->model->cfg.name, t_run);
    VEIL_LOG_DEBUG("unbatched run ran in %.2f ms", (double)t_run / 1e6);
    if (rc != VEIL_OK) {
        sv_fail(&st, veil__serve_run_code_of(rc), "%s", veil_errbuf_msg(&eb, rc));
        done(arg, false, NULL, 0, &st);
        return;
    }
    done(arg, true, outs, v->sig.n_out, &st);
}

struct bitem {
    struct bitem *next;
    struct veil_tensor *inputs;
    int64_t rows;
    uint64_t deadline_ns;
    sv_done_fn done;
    void *arg;
};

struct sv_batcher {
    struct sv_version *v;
    char model[SV_NAME_MAX + 1]; /* a copy: the config may be swapped while batches run */
    struct sv_batching p;
    struct sv_metrics *metrics;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct bitem *head, *tail;
    int64_t queued_rows;
    uint64_t head_since_ns;
    int64_t target_rows; /* rows expected back: the last batch's plus those already waiting */
    bool stop;
    pthread_t *threads;
    size_t n;
};

static bool compatible(const struct sv_version *v, const struct veil_tensor *a,
                       const struct veil_tensor *b)
{
    for (size_t k = 0; k < v->sig.n_in; k++) {
        if (a[k].dtype != b[k].dtype || a[k].rank != b[k].rank)
            return false;
        for (size_t d = 1; d < a[k].rank; d++)
            if (a[k].dims[d] != b[k].dims[d])
                return false;
    }
    return true;
}

static void fail_item(struct bitem *it, int code, const char *msg)
{
    struct sv_status st;
    sv_fail(&st, code, "%s", msg);
    it->done(it->arg, false, NULL, 0, &st);
}

/* Runs items (a list of compatible requests, rows in total) as one batch. */
static void run_batch(struct sv_batcher *b, struct bitem *items, int64_t rows)
{
    struct sv_version *v = b->v;
    struct veil_tensor in[SV_MAX_IO], outs[SV_MAX_IO];
    struct veil_errbuf eb = {{0}};
    memset(in, 0, sizeof(in));
    memset(outs, 0, sizeof(outs));
    uint64_t now = veil_time_mono_ns();
    /* Expired requests leave the batch before it runs. */
    struct bitem **pp = &items;
    while (*pp != NULL) {
        struct bitem *it = *pp;
        if (it->deadline_ns != 0 && now > it->deadline_ns) {
            *pp = it->next;
            rows -= it->rows;
            fail_item(it, VEIL_GRPC_DEADLINE_EXCEEDED, "Deadline exceeded");
            veil_free(it);
            continue;
        }
        pp = &it->next;
    }
    if (items == NULL)
        return;
    veil__serve_metrics_batch(b->metrics, b->model, (size_t)rows);
    if (items->next == NULL && b->p.n_allowed == 0) {
        run_direct(v, items->inputs, items->done, items->arg);
        veil_free(items);
        return;
    }
    int64_t padded = rows;
    for (size_t i = 0; i < b->p.n_allowed; i++)
        if (b->p.allowed[i] >= rows) {
            padded = b->p.allowed[i];
            break;
        }
    bool ok = true;
    const char *why = "out of memory forming a batch";
    for (size_t k = 0; ok && k < v->sig.n_in; k++) {
        const struct veil_tensor *t0 = &items->inputs[k];
        size_t row_bytes = t0->dims[0] > 0 ? t0->nbytes / (size_t)t0->dims[0] : 0;
        if (t0->dims[0] == 0) {
            uint64_t per = 1;
            for (size_t d = 1; d < t0->rank; d++)
                per *= (uint64_t)t0->dims[d];
            row_bytes = (size_t)per * veil_dtype_size(t0->dtype);
        }
        in[k] = *t0;
        in[k].dims[0] = padded;
        in[k].nbytes = row_bytes * (size_t)padded;
        in[k].data = veil_aligned_alloc(64, in[k].nbytes > 0 ? in[k].nbytes : 64);
        if (in[k].data == NULL) {
            ok = false;
            break;
        }
        size_t off = 0;
        for (struct bitem *it = items; it != NULL; it = it->next) {
            memcpy((uint8_t *)in[k].data + off, it->inputs[k].data, it->inputs[k].nbytes);
            off += it->inputs[k].nbytes;
        }
        memset((uint8_t *)in[k].data + off, 0, in[k].nbytes - off);
    }
    veil_err rc = VEIL_OK;
    uint64_t t_run = veil_time_mono_ns();
    if (ok) {
        rc = veil_engine_run(v->em, in, v->sig.n_in, outs, v->sig.n_out, &eb);
        if (rc != VEIL_OK) {
            ok = false;
            why = veil_errbuf_msg(&eb, rc);
        }
    }
    t_run = veil_time_mono_ns() - t_run;
    if (ok)
        veil__serve_metrics_runtime(b->metrics, b->model, t_run);
    VEIL_LOG_DEBUG("batch of %lld rows (%lld with padding) ran in %.1f ms", (long long)rows,
                   (long long)padded, (double)t_run / 1e6);
    for (size_t j = 0; ok && j < v->sig.n_out; j++)
        if (outs[j].rank == 0 || outs[j].dims[0] != padded) {
            ok = false;
            why = "the model's output has no batch dimension; batching cannot split it";
        }
    int64_t row = 0;
    for (struct bitem *it = items; it != NULL;) {
        struct bitem *next = it->next;
        if (!ok) {
            fail_item(it, rc != VEIL_OK ? veil__serve_run_code_of(rc) : VEIL_GRPC_INTERNAL, why);
        } else {
            struct veil_tensor mine[SV_MAX_IO];
            bool mine_ok = true;
            memset(mine, 0, sizeof(mine));
            for (size_t j = 0; j < v->sig.n_out && mine_ok; j++) {
                size_t rb = outs[j].nbytes / (size_t)padded;
                mine[j] = outs[j];
                mine[j].dims[0] = it->rows;
                mine[j].nbytes = rb * (size_t)it->rows;
                mine[j].data = veil_aligned_alloc(64, mine[j].nbytes > 0 ? mine[j].nbytes : 64);
                if (mine[j].data == NULL) {
                    mine_ok = false;
                    break;
                }
                memcpy(mine[j].data, (uint8_t *)outs[j].data + rb * (size_t)row, mine[j].nbytes);
            }
            if (mine_ok) {
                struct sv_status st = {0, ""};
                it->done(it->arg, true, mine, v->sig.n_out, &st);
            } else {
                for (size_t j = 0; j < v->sig.n_out; j++)
                    veil_tensor_release(&mine[j]);
                fail_item(it, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory splitting a batch");
            }
        }
        row += it->rows;
        veil_free(it);
        it = next;
    }
    for (size_t k = 0; k < v->sig.n_in; k++)
        veil_aligned_free(in[k].data);
    for (size_t j = 0; j < v->sig.n_out; j++)
        veil_tensor_release(&outs[j]);
}

static void deadline_ts(uint64_t mono_deadline, struct timespec *ts)
{
    uint64_t now = veil_time_mono_ns();
    uint64_t wait = mono_deadline > now ? mono_deadline - now : 0;
    clock_gettime(CLOCK_REALTIME, ts);
    uint64_t ns = (uint64_t)ts->tv_nsec + wait % 1000000000ULL;
    ts->tv_sec += (time_t)(wait / 1000000000ULL + ns / 1000000000ULL);
    ts->tv_nsec = (long)(ns % 1000000000ULL);
}

static void *batcher_main(void *arg)
{
    struct sv_batcher *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->stop && b->head == NULL)
            pthread_cond_wait(&b->cv, &b->mu);
        if (b->head == NULL)
            break;
        uint64_t until = b->head_since_ns + (uint64_t)b->p.batch_timeout_micros * 1000ULL;
        /* A batch closes when it is full, when batch_timeout_micros has passed, or as soon as
         * it holds the rows expected back: those of the batch that just ran (its clients send
         * again once answered) plus those that were already waiting. Closed-loop clients thus
         * meet in one batch, and a lone client never waits for the timeout. */
        int64_t target = b->target_rows > 0 ? b->target_rows : 1;
        if (target > b->p.max_batch_size)
            target = b->p.max_batch_size;
        while (!b->stop && b->head != NULL && b->queued_rows < target &&
               veil_time_mono_ns() < until) {
            struct timespec ts;
            deadline_ts(until, &ts);
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        }
        if (b->head == NULL)
            continue;
        /* Take compatible requests from the front, up to max_batch_size rows. */
        struct bitem *first = b->head, *taken = NULL, **tail = &taken;
        int64_t rows = 0;
        struct bitem **pp = &b->head;
        while (*pp != NULL) {
            struct bitem *it = *pp;
            if (rows + it->rows > b->p.max_batch_size)
                break;
            if (it != first && !compatible(b->v, first->inputs, it->inputs)) {
                pp = &it->next;
                continue;
            }
            *pp = it->next;
            it->next = NULL;
            *tail = it;
            tail = &it->next;
            rows += it->rows;
        }
        b->tail = NULL;
        for (struct bitem *x = b->head; x != NULL; x = x->next)
            b->tail = x;
        b->queued_rows -= rows;
        b->head_since_ns = veil_time_mono_ns();
        if (b->head != NULL)
            pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
        run_batch(b, taken, rows);
        pthread_mutex_lock(&b->mu);
        b->target_rows = rows + b->queued_rows;
        /* Requests that waited during the run get a fresh window for the others to return. */
        b->head_since_ns = veil_time_mono_ns();
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

veil_err veil__serve_batcher_new(struct sv_version *v, const struct sv_batching *p,
                                 struct sv_metrics *m, struct sv_batcher **out)
{
    struct sv_batcher *b = veil_calloc(1, sizeof(*b));
    *out = NULL;
    if (b == NULL)
        return VEIL_E_NOMEM;
    b->v = v;
    snprintf(b->model, sizeof(b->model), "%s", v->model->cfg.name);
    b->p = *p;
    b->metrics = m;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    size_t n = p->num_batch_threads > 0 ? (size_t)p->num_batch_threads : 1;
    if (n > 64)
        n = 64;
    b->threads = veil_calloc(n, sizeof(pthread_t));
    if (b->threads == NULL) {
        veil__serve_batcher_free(b);
        return VEIL_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (pthread_create(&b->threads[i], NULL, batcher_main, b) != 0) {
            veil__serve_batcher_free(b);
            return VEIL_E_INTERNAL;
        }
        b->n++;
    }
    *out = b;
    return VEIL_OK;
}

void veil__serve_batcher_free(struct sv_batcher *b)
{
    if (b == NULL)
        return;
    pthread_mutex_lock(&b->mu);
    b->stop = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    for (size_t i = 0; i < b->n; i++)
        pthread_join(b->threads[i], NULL);
    veil_free(b->threads);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    veil_free(b);
}

void veil__serve_run(struct sv_repo *r, struct sv_version *v, struct veil_tensor *inputs,
                     uint64_t deadline_ns, sv_done_fn done, void *arg)
{
    (void)r;
    struct sv_status st;
    if (deadline_ns != 0 && veil_time_mono_ns() > deadline_ns) {
        sv_fail(&st, VEIL_GRPC_DEADLINE_EXCEEDED, "Deadline exceeded");
        done(arg, false, NULL, 0, &st);
        return;
    }
    struct sv_batcher *b = v->batcher;
    int64_t rows = -1;
    for (size_t k = 0; b != NULL && k < v->sig.n_in; k++) {
        if (inputs[k].rank == 0 || (rows >= 0 && inputs[k].dims[0] != rows)) {
            rows = -1;
            break;
        }
        rows = inputs[k].dims[0];
    }
    if (b == NULL || rows < 0) {
        run_direct(v, inputs, done, arg);
        return;
    }
    if (rows > b->p.max_batch_size) {
        sv_fail(&st, VEIL_GRPC_INVALID_ARGUMENT,
                "Task size %lld is larger than maximum input batch size %lld", (long long)rows,
                (long long)b->p.max_batch_size);
        done(arg, false, NULL, 0, &st);
        return;
    }
    struct bitem *it = veil_calloc(1, sizeof(*it));
    if (it == NULL) {
        sv_fail(&st, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        done(arg, false, NULL, 0, &st);
        return;
    }
    it->inputs = inputs;
    it->rows = rows;
    it->deadline_ns = deadline_ns;
    it->done = done;
    it->arg = arg;
    pthread_mutex_lock(&b->mu);
    if (b->queued_rows + rows > b->p.max_enqueued_batches * b->p.max_batch_size) {
        pthread_mutex_unlock(&b->mu);
        veil_free(it);
        sv_fail(&st, VEIL_GRPC_UNAVAILABLE,
                "The batch scheduling queue to which this task was submitted is full");
        done(arg, false, NULL, 0, &st);
        return;
    }
    if (b->head == NULL)
        b->head_since_ns = veil_time_mono_ns();
    if (b->tail != NULL)
        b->tail->next = it;
    else
        b->head = it;
    b->tail = it;
    b->queued_rows += rows;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}
