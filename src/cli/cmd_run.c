/*
 * `veil run`: runs a model file (ONNX, or a sealed .veil file with --key, decrypted in memory
 * only) on inputs from .npy files or on random inputs from a fixed seed, prints the outputs'
 * names and shapes with a summary, writes outputs as .npy files, and times repeated runs.
 */
#include "cli.h"
#include "veil/crypto.h"
#include "veil/engine.h"
#include "veil/serve.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define RUN_MAX_INPUTS 64

struct run_args {
    const char *model, *key, *out_dir;
    const char *in_spec[RUN_MAX_INPUTS]; /* NAME=FILE.npy */
    size_t n_in_spec;
    const char *shape_spec[RUN_MAX_INPUTS]; /* NAME=D0,D1,... */
    size_t n_shape_spec;
    uint64_t batch, iterations, threads;
    bool have_batch, json, direct_conv, profile;
};

static void run_help(FILE *f)
{
    fprintf(f,
            "usage: veil run MODEL [--input NAME=FILE.npy ...] [--batch N] [--iterations N]\n"
            "                [--output-dir DIR] [--json] [--threads N] [--shape NAME=D0,D1,...]\n"
            "                [--key FILE] [--direct-conv] [--profile]\n\n"
            "Runs an ONNX model (or a sealed .veil model, decrypted in memory with --key) on\n"
            "the CPU and prints its outputs' names, shapes and a summary.\n\n"
            "  -i, --input NAME=FILE.npy  an input from a .npy file; inputs not given are\n"
            "                             random from a fixed seed (floats uniform in [-1, 1),\n"
            "                             integers in [0, 1000), inputs named *mask* all ones)\n"
            "  -b, --batch N              batch size (dimension 0) of random inputs (default 1)\n"
            "      --shape NAME=D0,D1,... the full shape of a random input (dynamic dimensions\n"
            "                             other than the batch default to 1)\n"
            "  -n, --iterations N         time N runs after a warm-up run\n"
            "  -o, --output-dir DIR       write each output as DIR/NAME.npy\n"
            "      --json                 print one JSON object (outputs, load_ms, p50_ms,\n"
            "                             p90_ms, p99_ms, items_per_s, peak_activation_bytes,\n"
            "                             weight_bytes)\n"
            "  -t, --threads N            compute threads (default: all cores)\n"
            "  -k, --key FILE             model key for a sealed model\n"
            "      --direct-conv          no Winograd kernels for 3x3 convolutions (slower;\n"
            "                             rounding of the plain sum)\n"
            "      --profile              time every node; print the time per operator (fused\n"
            "                             operations joined with +) over the timed runs, or\n"
            "                             over the one run without --iterations\n"
            "  -h, --help                 this help\n");
}

static int parse_args(int argc, char **argv, struct run_args *a)
{
    static const struct option opts[] = {{"input", required_argument, NULL, 'i'},
                                         {"batch", required_argument, NULL, 'b'},
                                         {"iterations", required_argument, NULL, 'n'},
                                         {"output-dir", required_argument, NULL, 'o'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"shape", required_argument, NULL, 's'},
                                         {"direct-conv", no_argument, NULL, 'd'},
                                         {"profile", no_argument, NULL, 'p'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    memset(a, 0, sizeof(*a));
    a->batch = 1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "i:b:n:o:t:k:h", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            if (a->n_in_spec == RUN_MAX_INPUTS || strchr(optarg, '=') == NULL)
                return veil_cli_fail("run", "bad --input '%s' (NAME=FILE.npy)", optarg) + 1;
            a->in_spec[a->n_in_spec++] = optarg;
            break;
        case 's':
            if (a->n_shape_spec == RUN_MAX_INPUTS || strchr(optarg, '=') == NULL)
                return veil_cli_fail("run", "bad --shape '%s' (NAME=D0,D1,...)", optarg) + 1;
            a->shape_spec[a->n_shape_spec++] = optarg;
            break;
        case 'b':
            if (!veil_cli_parse_u64(optarg, &a->batch) || a->batch == 0 || a->batch > 1000000)
                return veil_cli_fail("run", "bad --batch '%s'", optarg) + 1;
            a->have_batch = true;
            break;
        case 'n':
            if (!veil_cli_parse_u64(optarg, &a->iterations) || a->iterations > 10000000)
                return veil_cli_fail("run", "bad --iterations '%s'", optarg) + 1;
            break;
        case 't':
            if (!veil_cli_parse_u64(optarg, &a->threads) || a->threads > 4096)
                return veil_cli_fail("run", "bad --threads '%s'", optarg) + 1;
            break;
        case 'o':
            a->out_dir = optarg;
            break;
        case 'j':
            a->json = true;
            break;
        case 'd':
            a->direct_conv = true;
            break;
        case 'p':
            a->profile = true;
            break;
        case 'k':
            a->key = optarg;
            break;
        case 'h':
            run_help(stdout);
            return 0;
        default:
            run_help(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        run_help(stderr);
        return 2;
    }
    a->model = argv[optind];
    return -1;
}

/* xorshift64*: the fixed-seed generator of random inputs. */
static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static int fill_random(const struct veil_tensor_info *ti, const struct run_args *a,
                       struct veil_tensor *t, void **owned, uint64_t *seed)
{
    memset(t, 0, sizeof(*t));
    t->dtype = ti->dtype;
    t->rank = ti->rank;
    const char *spec = NULL;
    size_t nl = strlen(ti->name);
    for (size_t i = 0; i < a->n_shape_spec; i++)
        if (strncmp(a->shape_spec[i], ti->name, nl) == 0 && a->shape_spec[i][nl] == '=')
            spec = a->shape_spec[i] + nl + 1;
    for (size_t d = 0; d < ti->rank; d++)
        t->dims[d] = ti->dims[d] >= 0 ? ti->dims[d] : (d == 0 ? (int64_t)a->batch : 1);
    if (spec != NULL) {
        size_t d = 0;
        char *end;
        const char *p = spec;
        while (*p != '\0') {
            long long v = strtoll(p, &end, 10);
            if (end == p || v < 0 || d == VEIL_LIMIT_TENSOR_RANK)
                return veil_cli_fail("run", "bad --shape for '%s'", ti->name);
            t->dims[d++] = v;
            p = *end == ',' ? end + 1 : end;
            if (*end != ',' && *end != '\0')
                return veil_cli_fail("run", "bad --shape for '%s'", ti->name);
        }
        if (d != ti->rank)
            return veil_cli_fail("run", "--shape for '%s' needs %zu dimensions", ti->name,
                                 ti->rank);
    }
    uint64_t numel;
    size_t es = veil_dtype_size(ti->dtype);
    if (es == 0 || veil_tensor_numel(t->dims, t->rank, &numel) != VEIL_OK ||
        numel > (1ull << 32) / es)
        return veil_cli_fail("run", "cannot make a random input '%s'", ti->name);
    t->nbytes = (size_t)numel * es;
    *owned = veil_aligned_alloc(64, t->nbytes + 64);
    if (*owned == NULL)
        return veil_cli_fail("run", "out of memory");
    t->data = *owned;
    bool mask = strstr(ti->name, "mask") != NULL;
    for (uint64_t i = 0; i < numel; i++) {
        uint64_t r = next_rand(seed);
        double f = (double)(r >> 11) / 9007199254740992.0 * 2.0 - 1.0;
        int64_t iv = mask ? 1 : (int64_t)((r >> 33) % 1000);
        switch (ti->dtype) {
        case VEIL_DT_FLOAT:
            ((float *)t->data)[i] = (float)f;
            break;
        case VEIL_DT_DOUBLE:
            ((double *)t->data)[i] = f;
            break;
        case VEIL_DT_INT64:
            ((int64_t *)t->data)[i] = iv;
            break;
        case VEIL_DT_INT32:
            ((int32_t *)t->data)[i] = (int32_t)iv;
            break;
        case VEIL_DT_BOOL:
            ((uint8_t *)t->data)[i] = mask ? 1 : (uint8_t)(r >> 63);
            break;
        case VEIL_DT_FLOAT16:
        case VEIL_DT_BFLOAT16:
            ((uint16_t *)t->data)[i] = veil_half_from_double(ti->dtype, f);
            break;
        default:
            memset((uint8_t *)t->data + i * es, (int)(iv & 0x7f), es);
            break;
        }
    }
    return -1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_shape(FILE *f, const struct veil_tensor *t)
{
    fputc('[', f);
    for (size_t d = 0; d < t->rank; d++)
        fprintf(f, "%s%lld", d ? ", " : "", (long long)t->dims[d]);
    fputc(']', f);
}

static void json_name(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* Prints the profile per run: a table, or a "profile" member continuing the JSON object. */
static int print_profile(struct veil_engine_model *m, bool json)
{
    struct veil_errbuf eb = {{0}};
    struct veil_engine_prof_row *rows = NULL;
    size_t n = 0;
    uint64_t runs;
    double run_ms;
    veil_err rc = veil_engine_model_profile(m, NULL, 0, &n, &runs, &run_ms, &eb);
    if (rc == VEIL_OK && (rows = veil_calloc(n + 1, sizeof(*rows))) == NULL)
        rc = veil_errf(&eb, VEIL_E_NOMEM, "no memory for the profile");
    if (rc == VEIL_OK)
        rc = veil_engine_model_profile(m, rows, n, &n, &runs, &run_ms, &eb);
    if (rc != VEIL_OK) {
        veil_free(rows);
        return veil_cli_fail("run", "profile: %s", veil_errbuf_msg(&eb, rc));
    }
    double per = runs > 0 ? 1.0 / (double)runs : 0, total = run_ms * per, in_nodes = 0;
    for (size_t i = 0; i < n; i++)
        in_nodes += rows[i].ms * per;
    if (json) {
        printf(", \"profile\": {\"runs\": %llu, \"run_ms\": %.3f, \"outside_nodes_ms\": %.3f, "
               "\"ops\": [",
               (unsigned long long)runs, total, total - in_nodes);
        for (size_t i = 0; i < n; i++) {
            printf("%s{\"op\": ", i ? ", " : "");
            json_name(rows[i].op);
            printf(", \"nodes\": %llu, \"ms\": %.4f}", (unsigned long long)rows[i].nodes,
                   rows[i].ms * per);
        }
        printf("]}");
    } else {
        printf("profile over %llu run%s, %.2f ms per run:\n", (unsigned long long)runs,
               runs == 1 ? "" : "s", total);
        printf("  %10s %6s %6s  %s\n", "ms/run", "%", "nodes", "operator");
        for (size_t i = 0; i < n; i++)
            printf("  %10.3f %6.1f %6llu  %s\n", rows[i].ms * per,
                   total > 0 ? 100.0 * rows[i].ms * per / total : 0,
                   (unsigned long long)rows[i].nodes, rows[i].op);
        printf("  %10.3f %6.1f %6s  (inputs and outputs copied, run set-up)\n", total - in_nodes,
               total > 0 ? 100.0 * (total - in_nodes) / total : 0, "");
    }
    veil_free(rows);
    return 0;
}

/*
 * Builds the model at a->model: a plaintext ONNX file (its external data read from its folder)
 * or a sealed file, recognised by its .veil suffix or its magic, bare or a bundle.
 */
static veil_err load_model(const struct run_args *a, const struct veil_engine_options *opt,
                           struct veil_engine_model **m, struct veil_errbuf *eb)
{
    veil_err rc;
    uint8_t head[16] = {0};
    size_t plen = strlen(a->model), got = 0;
    bool sealed = plen > 5 && strcmp(a->model + plen - 5, ".veil") == 0;
    if (!sealed) {
        FILE *f = fopen(a->model, "rb");
        if (f != NULL) {
            got = fread(head, 1, sizeof(head), f);
            fclose(f);
        }
        sealed = veil_seal_is_sealed(veil_span_make(head, got));
    }
    if (!sealed)
        return veil_serve_model_from_file(a->model, opt, m, eb);
    if (a->key == NULL)
        return veil_errf(eb, VEIL_E_INVALID, "%s is a sealed model: pass --key FILE", a->model);
    struct veil_model_key *key = NULL;
    if ((rc = veil_model_key_load(a->key, &key, eb)) != VEIL_OK)
        return rc;
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    struct veil_seal_header hdr;
    rc = veil_unseal_path(a->model, key, NULL, 0, &plain, &plain_len, &hdr, eb);
    veil_model_key_free(key);
    if (rc == VEIL_OK)
        rc = veil_serve_model_from_plain(veil_span_make(plain, plain_len), &hdr, opt, m, eb);
    if (plain != NULL)
        veil_secure_free(plain, plain_len);
    return rc;
}

int veil_cmd_run(int argc, char **argv)
{
    struct run_args a;
    int st = parse_args(argc, argv, &a);
    int ret = 1;
    struct veil_errbuf eb = {{0}};
    struct veil_engine_model *m = NULL;
    struct veil_buf files[RUN_MAX_INPUTS];
    void *owned[RUN_MAX_INPUTS] = {NULL};
    struct veil_tensor in[RUN_MAX_INPUTS], *out = NULL;
    double *times = NULL;
    size_t n_in = 0, n_out = 0;
    veil_err rc;

    if (st >= 0)
        return st;
    /* As veil serve does: outputs of several MB are reused from the heap, not page-faulted in
     * afresh on every run. */
    veil_alloc_tune_large_blocks();
    for (size_t i = 0; i < RUN_MAX_INPUTS; i++)
        veil_buf_init(&files[i], 0);
    uint64_t t0 = veil_time_mono_ns();
    struct veil_engine_options opt = {
        .threads = (unsigned)a.threads, .direct_conv = a.direct_conv, .profile = a.profile};
    rc = load_model(&a, &opt, &m, &eb);
    if (rc != VEIL_OK) {
        veil_cli_fail("run", "%s: %s", a.model, veil_errbuf_msg(&eb, rc));
        goto out;
    }
    double load_ms = (double)(veil_time_mono_ns() - t0) / 1e6;
    n_in = veil_engine_model_num_inputs(m);
    n_out = veil_engine_model_num_outputs(m);
    if (n_in > RUN_MAX_INPUTS) {
        veil_cli_fail("run", "model has more than %d inputs", RUN_MAX_INPUTS);
        goto out;
    }
    for (size_t s = 0; s < a.n_in_spec; s++) {
        const char *eq = strchr(a.in_spec[s], '=');
        size_t nl = (size_t)(eq - a.in_spec[s]);
        bool found = false;
        for (size_t i = 0; i < n_in; i++)
            if (strlen(veil_engine_model_input(m, i)->name) == nl &&
                strncmp(veil_engine_model_input(m, i)->name, a.in_spec[s], nl) == 0)
                found = true;
        if (!found) {
            veil_cli_fail("run", "model has no input named '%.*s'", (int)nl, a.in_spec[s]);
            goto out;
        }
    }
    uint64_t seed = 0x5eed5eed5eedull;
    int64_t items = 1;
    for (size_t i = 0; i < n_in; i++) {
        const struct veil_tensor_info *ti = veil_engine_model_input(m, i);
        const char *file = NULL;
        size_t nl = strlen(ti->name);
        for (size_t s = 0; s < a.n_in_spec; s++)
            if (strncmp(a.in_spec[s], ti->name, nl) == 0 && a.in_spec[s][nl] == '=')
                file = a.in_spec[s] + nl + 1;
        if (file != NULL) {
            veil_buf_init(&files[i], 1u << 31);
            if ((rc = veil_file_read_all(file, files[i].max, &files[i], &eb)) != VEIL_OK ||
                (rc = veil_npy_parse(veil_buf_span(&files[i]), &in[i], &eb)) != VEIL_OK) {
                veil_cli_fail("run", "input '%s' from %s: %s", ti->name, file,
                              veil_errbuf_msg(&eb, rc));
                goto out;
            }
        } else if ((st = fill_random(ti, &a, &in[i], &owned[i], &seed)) >= 0) {
            goto out;
        }
        if (i == 0 && in[i].rank > 0)
            items = in[i].dims[0];
    }
    out = veil_calloc(n_out + 1, sizeof(*out));
    times = veil_calloc(a.iterations + 1, sizeof(double));
    if (out == NULL || times == NULL) {
        veil_cli_fail("run", "out of memory");
        goto out;
    }
    /* The first run builds the plan for these shapes and is the warm-up when timing. */
    uint64_t r0 = veil_time_mono_ns();
    if ((rc = veil_engine_run(m, in, n_in, out, n_out, &eb)) != VEIL_OK) {
        veil_cli_fail("run", "%s", veil_errbuf_msg(&eb, rc));
        goto out;
    }
    double first_ms = (double)(veil_time_mono_ns() - r0) / 1e6;
    if (a.profile && a.iterations > 0)
        veil_engine_model_profile_reset(m);
    size_t n_times = 0;
    for (uint64_t it = 0; it < a.iterations; it++) {
        struct veil_tensor tmp[RUN_MAX_INPUTS];
        if (n_out > RUN_MAX_INPUTS)
            break;
        uint64_t s0 = veil_time_mono_ns();
        if ((rc = veil_engine_run(m, in, n_in, tmp, n_out, &eb)) != VEIL_OK) {
            veil_cli_fail("run", "%s", veil_errbuf_msg(&eb, rc));
            goto out;
        }
        times[n_times++] = (double)(veil_time_mono_ns() - s0) / 1e6;
        for (size_t k = 0; k < n_out; k++)
            veil_tensor_release(&tmp[k]);
    }
    if (n_times == 0)
        times[n_times++] = first_ms;
    qsort(times, n_times, sizeof(double), cmp_double);
    double p50 = times[(n_times - 1) / 2], p90 = times[(size_t)((double)(n_times - 1) * 0.9)],
           p99 = times[(size_t)((double)(n_times - 1) * 0.99)], sum = 0;
    for (size_t k = 0; k < n_times; k++)
        sum += times[k];
    double items_per_s = sum > 0 ? (double)items * (double)n_times * 1000.0 / sum : 0;
    if (a.out_dir != NULL) {
        for (size_t k = 0; k < n_out; k++) {
            const char *name = veil_engine_model_output(m, k)->name;
            char path[4096], safe[256];
            size_t j = 0;
            for (; name[j] != '\0' && j < sizeof(safe) - 1; j++)
                safe[j] = (name[j] == '/' || name[j] == '\\') ? '_' : name[j];
            safe[j] = '\0';
            snprintf(path, sizeof(path), "%s/%s.npy", a.out_dir, safe);
            struct veil_buf nb;
            veil_buf_init(&nb, SIZE_MAX / 2);
            rc = veil_npy_write(&out[k], &nb);
            if (rc == VEIL_OK)
                rc = veil_file_write_atomic(path, veil_buf_span(&nb), 0644, VEIL_ATOMIC_REPLACE,
                                            &eb);
            veil_buf_release(&nb);
            if (rc != VEIL_OK) {
                veil_cli_fail("run", "writing %s: %s", path, veil_errbuf_msg(&eb, rc));
                goto out;
            }
        }
    }
    if (a.json) {
        printf("{\"model\": ");
        json_name(a.model);
        printf(", \"outputs\": [");
        for (size_t k = 0; k < n_out; k++) {
            printf("%s{\"name\": ", k ? ", " : "");
            json_name(veil_engine_model_output(m, k)->name);
            printf(", \"dtype\": \"%s\", \"shape\": [", veil_dtype_name(out[k].dtype));
            for (size_t d = 0; d < out[k].rank; d++)
                printf("%s%lld", d ? ", " : "", (long long)out[k].dims[d]);
            printf("]}");
        }
        printf("], \"load_ms\": %.3f, \"first_run_ms\": %.3f, \"iterations\": %zu, "
               "\"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"items_per_s\": %.3f, "
               "\"batch\": %lld, \"threads\": %u, \"peak_activation_bytes\": %zu, "
               "\"weight_bytes\": %zu",
               load_ms, first_ms, a.iterations ? n_times : 0, p50, p90, p99, items_per_s,
               (long long)items, veil_engine_model_threads(m), veil_engine_model_peak_bytes(m),
               veil_engine_model_weight_bytes(m));
        if (a.profile && print_profile(m, true) != 0)
            goto out;
        printf("}\n");
    } else {
        for (size_t k = 0; k < n_out; k++) {
            printf("output %s: %s ", veil_engine_model_output(m, k)->name,
                   veil_dtype_name(out[k].dtype));
            print_shape(stdout, &out[k]);
            bool half = out[k].dtype == VEIL_DT_FLOAT16 || out[k].dtype == VEIL_DT_BFLOAT16;
            if ((out[k].dtype == VEIL_DT_FLOAT || half) && out[k].nbytes > 0) {
                size_t n = out[k].nbytes / veil_dtype_size(out[k].dtype);
                double mn = INFINITY, mx = -INFINITY, s = 0;
                for (size_t e = 0; e < n; e++) {
                    double x =
                        half ? veil_half_to_float(out[k].dtype, ((const uint16_t *)out[k].data)[e])
                             : ((const float *)out[k].data)[e];
                    mn = x < mn ? x : mn;
                    mx = x > mx ? x : mx;
                    s += x;
                }
                printf(" min %.6g max %.6g mean %.6g", mn, mx, s / (double)n);
            }
            putchar('\n');
        }
        printf("loaded in %.1f ms; first run %.2f ms; peak activations %.1f MiB; weights %.1f "
               "MiB; %u threads\n",
               load_ms, first_ms, (double)veil_engine_model_peak_bytes(m) / 1048576.0,
               (double)veil_engine_model_weight_bytes(m) / 1048576.0, veil_engine_model_threads(m));
        if (a.iterations > 0)
            printf("%zu runs: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, %.2f items/s\n", n_times, p50,
                   p90, p99, items_per_s);
        if (a.profile && print_profile(m, false) != 0)
            goto out;
    }
    ret = 0;
out:
    for (size_t k = 0; out != NULL && k < n_out; k++)
        veil_tensor_release(&out[k]);
    veil_free(out);
    veil_free(times);
    for (size_t i = 0; i < RUN_MAX_INPUTS; i++) {
        veil_aligned_free(owned[i]);
        veil_buf_release(&files[i]);
    }
    veil_engine_model_free(m);
    return ret;
}
