/*
 * bench_seal: throughput of sealing and unsealing a large file (default 512 MiB) against the
 * raw AES-256-GCM throughput of this machine on the same number of threads (the ceiling),
 * plus the peak memory of `veil unseal` run as a separate process.
 *
 * usage: bench_seal VEIL_BINARY [SIZE_MIB] [DIR]
 */
#include "veil/crypto.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define RAW_BUF (1u << 20)

struct raw_arg {
    uint64_t bytes;
};

static void *raw_worker(void *p)
{
    struct raw_arg *a = p;
    uint8_t key[32] = {1}, iv[12] = {2}, tag[16];
    uint8_t *in = malloc(RAW_BUF), *out = malloc(RAW_BUF);
    memset(in, 7, RAW_BUF);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    EVP_EncryptInit_ex2(c, EVP_aes_256_gcm(), key, iv, NULL);
    for (uint64_t done = 0; done < a->bytes; done += RAW_BUF) {
        int n;
        iv[0]++;
        EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv);
        EVP_EncryptUpdate(c, out, &n, in, RAW_BUF);
        EVP_EncryptFinal_ex(c, out, &n);
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag);
    }
    EVP_CIPHER_CTX_free(c);
    free(in);
    free(out);
    return NULL;
}

/* Raw AES-256-GCM over 1 MiB buffers in memory on `threads` threads, in GB/s. */
static double raw_gcm(unsigned threads, uint64_t total)
{
    pthread_t t[64];
    struct raw_arg a = {total / threads};
    uint64_t t0 = veil_time_mono_ns();
    for (unsigned i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, raw_worker, &a);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    return (double)total / (double)(veil_time_mono_ns() - t0);
}

static double secs_since(uint64_t t0)
{
    return (double)(veil_time_mono_ns() - t0) / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_seal VEIL_BINARY [SIZE_MIB] [DIR]\n");
        return 2;
    }
    const char *veil = argv[1];
    uint64_t mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 512;
    const char *dir = argc > 3 ? argv[3] : "/tmp";
    uint64_t size = mib << 20;
    unsigned threads = veil_cpu_count();
    char plain[512], sealed[512], out[512], keyp[512];
    snprintf(plain, sizeof(plain), "%s/veil-bench-plain", dir);
    snprintf(sealed, sizeof(sealed), "%s/veil-bench.veil", dir);
    snprintf(out, sizeof(out), "%s/veil-bench-out", dir);
    snprintf(keyp, sizeof(keyp), "%s/veil-bench.key", dir);

    /* Input: pseudo-random bytes (content does not change AES-GCM speed). */
    FILE *f = fopen(plain, "wb");
    if (f == NULL) {
        perror(plain);
        return 1;
    }
    uint8_t *blk = malloc(RAW_BUF);
    uint64_t x = 88172645463325252ull;
    for (uint64_t done = 0; done < size; done += RAW_BUF) {
        for (size_t i = 0; i < RAW_BUF; i += 8) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            memcpy(blk + i, &x, 8);
        }
        fwrite(blk, 1, RAW_BUF, f);
    }
    fclose(f);
    free(blk);

    struct veil_model_key *key = NULL;
    struct veil_errbuf eb = {{0}};
    unlink(keyp);
    if (veil_model_key_generate("bench", &key, &eb) != VEIL_OK ||
        veil_model_key_save(key, keyp, &eb) != VEIL_OK) {
        fprintf(stderr, "key: %s\n", eb.msg);
        return 1;
    }
    struct veil_seal_params p = {.model_name = "bench", .model_version = 1};

    /* The file system's own ceiling: write the same number of bytes and fsync. */
    double fs_s;
    {
        char fsp[600];
        snprintf(fsp, sizeof(fsp), "%s/veil-bench-fs", dir);
        uint8_t *z = calloc(1, RAW_BUF);
        uint64_t t1 = veil_time_mono_ns();
        FILE *w = fopen(fsp, "wb");
        for (uint64_t done = 0; w != NULL && done < size; done += RAW_BUF)
            fwrite(z, 1, RAW_BUF, w);
        if (w != NULL) {
            fflush(w);
            fsync(fileno(w));
            fclose(w);
        }
        fs_s = secs_since(t1);
        unlink(fsp);
        free(z);
    }
    double raw1 = raw_gcm(1, 1ull << 30);
    double rawn = raw_gcm(threads, 2ull << 30);

    uint64_t t0 = veil_time_mono_ns();
    if (veil_seal_file(plain, sealed, key, &p, NULL, NULL, &eb) != VEIL_OK) {
        fprintf(stderr, "seal: %s\n", eb.msg);
        return 1;
    }
    double seal_s = secs_since(t0);

    /* Unseal in-process (library), best of three, output to a file with fsync. */
    double unseal_s = 1e9;
    for (int r = 0; r < 3; r++) {
        t0 = veil_time_mono_ns();
        if (veil_unseal_file(sealed, out, key, NULL, 0, NULL, NULL, &eb) != VEIL_OK) {
            fprintf(stderr, "unseal: %s\n", eb.msg);
            return 1;
        }
        double s = secs_since(t0);
        if (s < unseal_s)
            unseal_s = s;
    }
    /* Unseal into memory (what the server does), best of three. */
    double mem_s = 1e9;
    for (int r = 0; r < 3; r++) {
        uint8_t *pt = NULL;
        size_t n = 0;
        t0 = veil_time_mono_ns();
        if (veil_unseal_path(sealed, key, NULL, 0, &pt, &n, NULL, &eb) != VEIL_OK) {
            fprintf(stderr, "unseal to memory: %s\n", eb.msg);
            return 1;
        }
        double s = secs_since(t0);
        veil_secure_free(pt, n);
        if (s < mem_s)
            mem_s = s;
    }
    /* Peak memory of the real command, as a child process. */
    unlink(out);
    pid_t pid = fork();
    if (pid == 0) {
        execl(veil, veil, "unseal", sealed, "--key", keyp, "-o", out, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    t0 = veil_time_mono_ns();
    wait4(pid, &status, 0, &ru);
    double cli_s = secs_since(t0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "veil unseal failed\n");
        return 1;
    }

    double gb = (double)size / 1e9;
    printf("bench/seal: %llu MiB file, %u threads\n", (unsigned long long)mib, threads);
    printf("%-44s %10s %12s\n", "operation", "GB/s", "vs ceiling");
    printf("%-44s %10.2f %12s\n", "raw AES-256-GCM, 1 thread (in memory)", raw1, "");
    printf("%-44s %10.2f %12s\n", "raw AES-256-GCM, all threads (ceiling)", rawn, "1.00x");
    printf("%-44s %10.2f %11.2fx\n", "veil seal (file -> file, fsync)", gb / seal_s,
           gb / seal_s / rawn);
    printf("%-44s %10.2f %11.2fx\n", "veil unseal (file -> file, fsync)", gb / unseal_s,
           gb / unseal_s / rawn);
    printf("%-44s %10.2f %11.2fx\n", "veil unseal (file -> secure memory)", gb / mem_s,
           gb / mem_s / rawn);
    printf("%-44s %10.2f %11.2fx\n", "`veil unseal` command (process, cold start)", gb / cli_s,
           gb / cli_s / rawn);
    printf("%-44s %10.2f %12s\n", "file system: plain write + fsync (ceiling)", gb / fs_s, "");
    printf("file -> file unseal reaches %.0f%% of the file system's own write speed\n",
           100.0 * fs_s / unseal_s);
    printf("peak memory of `veil unseal`: %.1f MiB (limit 64 MiB)\n", (double)ru.ru_maxrss / 1024);
    printf("target unseal >= 2 GB/s (decryption, to memory): %s\n",
           gb / mem_s >= 2.0 ? "met" : "NOT met");
    veil_model_key_free(key);
    unlink(plain);
    unlink(sealed);
    unlink(out);
    unlink(keyp);
    return 0;
}
