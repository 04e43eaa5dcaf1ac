/*
 * Compute lanes: the threads that execute every run of every model in the process.
 *
 * OpenMP gives each thread that opens a parallel region its own team of workers. Were runs
 * executed on their callers' threads (request threads, batchers, the CLI's main thread), a
 * server would hold one idle team per caller: more OpenMP threads than cores, which makes
 * libgomp put workers to sleep after every region (a futex wake per kernel, about 3 ms per
 * ResNet-50 run on 2 cores) and lets concurrent runs oversubscribe the cores. Runs therefore
 * go to a fixed set of lanes, each one OpenMP team of the model's thread count: as many lanes
 * as fit in the cores (at least one), so concurrent callers queue for a lane instead.
 *
 * Between the kernels of a run libgomp's workers spin, which keeps them quick to start the
 * next kernel; but they also spin for about 10 ms after the run's last kernel, taking a core
 * from whatever runs next (in a server: reading the next request, writing the reply). A lane
 * left without work for LANE_PARK_NS therefore parks its team: it opens a parallel region in
 * which every thread of the team blocks on the lane condition variable until a job is queued.
 * Waking the team costs a few tens of microseconds; back-to-back runs never park.
 *
 * Inside a run, kernels spread loops over the lane's team with veil__engine_parallel.
 */
#include "engine_int.h"

#include <omp.h>
#include <pthread.h>
#include <time.h>

#define LANE_PARK_NS 50000L /* 50 us */

struct lane_job {
    struct lane_job *next;
    void (*fn)(void *);
    void *arg;
    bool done;
    pthread_cond_t cv; /* signalled when done */
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_work; /* on CLOCK_MONOTONIC, made by the first veil__engine_lanes_reserve */
static bool g_work_made;
static struct lane_job *g_head, *g_tail;
static unsigned long g_gen; /* jobs queued so far: parked teams wake when it moves */
static unsigned g_lanes;
static _Thread_local bool t_lane; /* this thread is a lane */

/* Blocks every thread of this lane's OpenMP team until a job is queued (g_mu held). */
static void lane_park(void)
{
    unsigned long gen = g_gen;
    pthread_mutex_unlock(&g_mu);
#pragma omp parallel
    {
        pthread_mutex_lock(&g_mu);
        while (g_gen == gen)
            pthread_cond_wait(&g_work, &g_mu);
        pthread_mutex_unlock(&g_mu);
    }
    pthread_mutex_lock(&g_mu);
}

/* Waits (g_mu held) until a job is queued, parking the team once idle for LANE_PARK_NS. */
static void lane_wait(void)
{
    if (g_head != NULL)
        return;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += LANE_PARK_NS;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (g_head == NULL && pthread_cond_timedwait(&g_work, &g_mu, &until) == 0)
        ;
    while (g_head == NULL)
        lane_park();
}

static void *lane_main(void *arg)
{
    (void)arg;
    t_lane = true;
    pthread_mutex_lock(&g_mu);
    for (;;) {
        lane_wait();
        struct lane_job *j = g_head;
        g_head = j->next;
        if (g_head == NULL)
            g_tail = NULL;
        pthread_mutex_unlock(&g_mu);
        j->fn(j->arg);
        pthread_mutex_lock(&g_mu);
        j->done = true;
        pthread_cond_signal(&j->cv);
    }
    return NULL;
}

void veil__engine_lanes_reserve(unsigned threads_per_run)
{
    unsigned cpus = veil_cpu_count();
    unsigned want = threads_per_run > 0 && threads_per_run < cpus ? cpus / threads_per_run : 1;
    pthread_mutex_lock(&g_mu);
    if (!g_work_made) {
        pthread_condattr_t ca;
        if (pthread_condattr_init(&ca) != 0) {
            pthread_mutex_unlock(&g_mu);
            return; /* no lanes: runs execute on their callers */
        }
        (void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        int rc = pthread_cond_init(&g_work, &ca);
        pthread_condattr_destroy(&ca);
        if (rc != 0) {
            pthread_mutex_unlock(&g_mu);
            return;
        }
        g_work_made = true;
    }
    while (g_lanes < want) {
        pthread_attr_t attr;
        pthread_t t;
        if (pthread_attr_init(&attr) != 0)
            break;
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, lane_main, NULL);
        pthread_attr_destroy(&attr);
        if (rc != 0)
            break; /* fewer lanes (or none: runs then execute on their callers) */
        g_lanes++;
    }
    pthread_mutex_unlock(&g_mu);
}

void veil__engine_lanes_call(void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&g_mu);
    if (t_lane || g_lanes == 0) {
        pthread_mutex_unlock(&g_mu);
        fn(arg);
        return;
    }
    struct lane_job j = {NULL, fn, arg, false, PTHREAD_COND_INITIALIZER};
    if (g_tail != NULL)
        g_tail->next = &j;
    else
        g_head = &j;
    g_tail = &j;
    g_gen++;
    pthread_cond_broadcast(&g_work);
    while (!j.done)
        pthread_cond_wait(&j.cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
    pthread_cond_destroy(&j.cv);
}

void veil__engine_parallel(uint64_t n, uint64_t grain, veil__engine_range_fn fn, void *ud)
{
    int nt = omp_get_max_threads();
    if (n <= grain || nt <= 1 || omp_in_parallel()) {
        if (n > 0)
            fn(ud, 0, n);
        return;
    }
    uint64_t chunks = n / grain;
    if (chunks < (uint64_t)nt)
        nt = (int)chunks;
#pragma omp parallel num_threads(nt)
    {
        uint64_t t = (uint64_t)omp_get_thread_num(), tn = (uint64_t)omp_get_num_threads();
        uint64_t lo = n * t / tn, hi = n * (t + 1) / tn;
        if (lo < hi)
            fn(ud, lo, hi);
    }
}
