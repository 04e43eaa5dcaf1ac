/*
 * bench_kbs: key releases per second with a fresh nonce and full RA-TLS verification. Starts
 * `veil kbs serve` as its own process, then C client threads each fetch a challenge over TLS,
 * attest (fresh key pair and RA-TLS certificate binding the nonce per release, sim evidence),
 * open mutual TLS, and receive one key and a serving certificate, for D seconds: two TLS
 * handshakes per release, as every workload does. Prints releases/s, latency, and the
 * broker's own CPU time per release (clients share this machine's cores, so the broker's
 * capacity is shown too).
 *
 * usage: bench_kbs VEIL_BINARY [SECONDS] [CLIENTS]
 */
#include "veil/kbs.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

static char state[] = "/tmp/veil-bench-kbs-XXXXXX";
static char broker[64], ca[512];
static struct veil_buf sim_priv;
static uint8_t meas[32];
static _Atomic uint64_t ok_count, fail_count;
static uint64_t deadline_ns;
static double lat_ms[1 << 16];
static _Atomic size_t nlat;

static double broker_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* Fields after the command: state(3) ... utime(14) stime(15). */
    for (int field = 3; p != NULL && field <= 15; field++) {
        p = strchr(p + 1, ' ');
        if (p != NULL && field == 13)
            ut = strtoul(p + 1, NULL, 10);
        if (p != NULL && field == 14)
            st = strtoul(p + 1, NULL, 10);
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void *client(void *arg)
{
    (void)arg;
    const char *ids[] = {"bench@1"};
    /* One provider per client, as a workload holds one for its lifetime; each release still
     * makes its own key pair, evidence and certificate for its own nonce. */
    struct veil_attest_provider *p = NULL;
    if (veil_attest_provider_new_sim(veil_buf_span(&sim_priv), meas, 1, &p, NULL) != VEIL_OK) {
        atomic_fetch_add(&fail_count, 1);
        return NULL;
    }
    while (veil_time_mono_ns() < deadline_ns) {
        struct veil_kbs_grant *g = NULL;
        struct veil_kbs_client_opts o = {.brokers = broker, .ca_file = ca, .deadline_s = 5};
        uint64_t t0 = veil_time_mono_ns();
        veil_err rc = veil_kbs_provision(&o, p, ids, 1, &g, NULL);
        double ms = (double)(veil_time_mono_ns() - t0) / 1e6;
        if (rc == VEIL_OK && g->n_keys == 1) {
            atomic_fetch_add(&ok_count, 1);
            size_t i = atomic_fetch_add(&nlat, 1);
            if (i < sizeof(lat_ms) / sizeof(lat_ms[0]))
                lat_ms[i] = ms;
        } else {
            atomic_fetch_add(&fail_count, 1);
        }
        veil_kbs_grant_free(g);
    }
    veil_attest_provider_free(p);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_kbs VEIL_BINARY [SECONDS] [CLIENTS]\n");
        return 2;
    }
    const char *veil = argv[1];
    int secs = argc > 2 ? atoi(argv[2]) : 10;
    int nclients = argc > 3 ? atoi(argv[3]) : 8;
    if (secs <= 0 || nclients <= 0 || nclients > 256) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    veil_log_set_level(VEIL_LOG_LEVEL_ERR);
    signal(SIGPIPE, SIG_IGN);
    if (mkdtemp(state) == NULL || rmdir(state) != 0)
        return 1;
    struct veil_errbuf eb = {{0}};
    if (veil_kbs_init(state, NULL, &eb) != VEIL_OK) {
        fprintf(stderr, "init: %s\n", eb.msg);
        return 1;
    }
    struct veil_buf pub;
    veil_buf_init(&pub, 65536);
    veil_buf_init_secret(&sim_priv, 65536);
    char pubpath[512];
    snprintf(pubpath, sizeof(pubpath), "%s/sim.pub.pem", state);
    if (veil_attest_sim_keygen(&sim_priv, &pub, &eb) != VEIL_OK ||
        veil_file_write_atomic(pubpath, veil_buf_span(&pub), 0644, 0, &eb) != VEIL_OK) {
        fprintf(stderr, "sim key: %s\n", eb.msg);
        return 1;
    }
    for (int i = 0; i < 32; i++)
        meas[i] = (uint8_t)i;
    char hex[65], policy[1024], policy_path[512];
    veil_hex_encode(meas, 32, hex);
    snprintf(policy, sizeof(policy),
             "{\"version\":1,\"workloads\":[{\"name\":\"bench\",\"tee\":\"sim\",\"measurement\":"
             "[\"%s\"],\"allow_debug\":true,\"names\":[\"bench.local\"],"
             "\"keys\":[\"bench\"]}]}",
             hex);
    snprintf(policy_path, sizeof(policy_path), "%s/policy.json", state);
    if (veil_file_write_atomic(policy_path, veil_span_from_str(policy), 0600, 0, &eb) != VEIL_OK)
        return 1;

    int port = 20000 + (int)(getpid() % 20000);
    snprintf(broker, sizeof(broker), "127.0.0.1:%d", port);
    snprintf(ca, sizeof(ca), "%s/broker-ca.pem", state);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", 1);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl(veil, veil, "kbs", "serve", "--state", state, "--listen", broker, "--sim-key",
              pubpath, (char *)NULL);
        _exit(127);
    }
    /* Wait for the broker, then add the key over the admin API. */
    char cert[512], key[512];
    snprintf(cert, sizeof(cert), "%s/admin.pem", state);
    snprintf(key, sizeof(key), "%s/admin.key", state);
    struct veil_kbs_admin_opts ao = {broker, ca, cert, key, 2000};
    struct veil_buf resp;
    veil_buf_init(&resp, 1 << 20);
    int status = 0;
    for (int i = 0; i < 100; i++) {
        if (veil_kbs_admin_request(&ao, "POST", "/kbs/v1/admin/keys",
                                   veil_span_from_str("{\"name\":\"bench\"}"), &status, &resp,
                                   &eb) == VEIL_OK)
            break;
        usleep(50000);
    }
    if (status != 200) {
        fprintf(stderr, "broker did not come up: %s\n", eb.msg);
        kill(pid, SIGKILL);
        return 1;
    }
    /* Warm-up, then the measured run. */
    deadline_ns = veil_time_mono_ns() + 500000000ull;
    client(NULL);
    atomic_store(&ok_count, 0);
    atomic_store(&fail_count, 0);
    atomic_store(&nlat, 0);
    double cpu0 = broker_cpu_s(pid);
    uint64_t t0 = veil_time_mono_ns();
    deadline_ns = t0 + (uint64_t)secs * 1000000000ull;
    pthread_t t[256];
    for (int i = 0; i < nclients; i++)
        pthread_create(&t[i], NULL, client, NULL);
    for (int i = 0; i < nclients; i++)
        pthread_join(t[i], NULL);
    double wall = (double)(veil_time_mono_ns() - t0) / 1e9;
    double cpu = broker_cpu_s(pid) - cpu0;
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);

    uint64_t ok = atomic_load(&ok_count);
    size_t n = atomic_load(&nlat);
    if (n > sizeof(lat_ms) / sizeof(lat_ms[0]))
        n = sizeof(lat_ms) / sizeof(lat_ms[0]);
    qsort(lat_ms, n, sizeof(double), cmp_double);
    double per = ok > 0 ? cpu / (double)ok : 0;
    unsigned cores = veil_cpu_count();
    printf("bench/kbs: %d clients, %d s, %u cores shared by broker and clients\n", nclients, secs,
           cores);
    printf("%-48s %10.0f /s   (target >= 200/s)\n",
           "key releases (nonce + full RA-TLS verification)", (double)ok / wall);
    printf("%-48s %10llu\n", "failed releases", (unsigned long long)atomic_load(&fail_count));
    if (n > 0)
        printf("%-48s %7.2f / %.2f / %.2f ms\n", "latency p50 / p90 / p99", lat_ms[n / 2],
               lat_ms[n * 9 / 10], lat_ms[n * 99 / 100]);
    printf("%-48s %10.3f ms\n", "broker CPU per release", per * 1e3);
    if (per > 0)
        printf("%-48s %10.0f /s\n", "broker capacity on all cores (CPU bound)",
               (double)cores / per);
    veil_buf_release(&pub);
    veil_buf_release(&sim_priv);
    veil_buf_release(&resp);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", state);
    return system(cmd) == 0 && ok > 0 ? 0 : 1;
}
