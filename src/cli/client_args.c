/*
 * Command-line options of `veil predict` and `veil bench`. The load generator's options keep
 * the names the seed systems' clients use (-batch, -cnum, -loop) as aliases.
 */
#include "cli.h"
#include "predict_io.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f, bool bench)
{
    if (bench)
        fprintf(
            f,
            "usage: veil bench --model NAME [options]\n\n"
            "Load generator for a model server (TF Serving's gRPC or REST API): keeps\n"
            "--concurrency requests in flight for --duration seconds (or --loop requests),\n"
            "then prints throughput, latency percentiles, errors by status and a histogram.\n\n");
    else
        fprintf(f, "usage: veil predict --model NAME [options]\n\n"
                   "Sends one Predict request (gRPC or REST) and prints the outputs; classifier\n"
                   "scores also get their top-k classes.\n\n");
    fprintf(f, "  --server HOST:PORT       server (alias --url; default localhost:8500, or :8501\n"
               "                           with --rest)\n"
               "  --rest                   use the REST API instead of gRPC\n"
               "  --model NAME             model name (required)\n"
               "  --version N | --label L  model version or label (default: latest)\n"
               "  --signature NAME         signature (default serving_default)\n"
               "  --input NAME=FILE.npy    an input from a .npy file (repeatable); the others are\n"
               "                           random with --seed\n"
               "  --batch N                batch size of random inputs (alias -batch; default 1)\n"
               "  --seed N                 seed of random inputs (default 0)\n"
               "  --ca FILE                CA that signed the server's certificate (alias --crt)\n"
               "  --cert FILE --key FILE   client certificate for mutual TLS\n"
               "  --plaintext              no TLS (only when the server was started that way)\n"
               "  --attest POLICY          before sending anything, have the server attest its\n"
               "                           TLS key for a fresh nonce and check it against this\n"
               "                           policy (docs/attest/server-check.md)\n"
               "  --attest-roots DIR       Intel and AMD roots for --attest (pinned fingerprints)\n"
               "  --attest-sim-key PUB     trust sim evidence signed by this key (INSECURE)\n"
               "  --attest-collateral DIR  DCAP or SNP collateral for --attest\n");
    if (bench)
        fprintf(f,
                "  --concurrency N          requests in flight (alias -cnum; default 1)\n"
                "  --loop N                 total requests (alias -loop; 0 = until interrupted)\n"
                "  --duration S             seconds to run when --loop is not given (default 10)\n"
                "  --warmup S               seconds of warm-up, not measured (default 1)\n"
                "  --connections N          connections (default: gRPC min(concurrency, 4),\n"
                "                           REST one per request in flight)\n"
                "  --json                   print one JSON object instead of the report\n");
    else
        fprintf(f,
                "  --top-k K                classes to show for classifier outputs (default 5)\n");
}

static bool parse_double(const char *s, double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= 0) || v > 1e7)
        return false;
    *out = v;
    return true;
}

int veil_cli_client_parse(int argc, char **argv, bool bench, struct veil_cli_client_args *a)
{
    static const struct option opts[] = {{"server", required_argument, NULL, 's'},
                                         {"rest", no_argument, NULL, 'r'},
                                         {"grpc", no_argument, NULL, 'g'},
                                         {"model", required_argument, NULL, 'm'},
                                         {"version", required_argument, NULL, 'v'},
                                         {"label", required_argument, NULL, 'l'},
                                         {"signature", required_argument, NULL, 'S'},
                                         {"input", required_argument, NULL, 'i'},
                                         {"batch", required_argument, NULL, 'b'},
                                         {"seed", required_argument, NULL, 'e'},
                                         {"ca", required_argument, NULL, 'C'},
                                         {"cert", required_argument, NULL, 'c'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"plaintext", no_argument, NULL, 'p'},
                                         {"attest", required_argument, NULL, 'A'},
                                         {"attest-roots", required_argument, NULL, 'R'},
                                         {"attest-sim-key", required_argument, NULL, 'K'},
                                         {"attest-collateral", required_argument, NULL, 'O'},
                                         {"top-k", required_argument, NULL, 't'},
                                         {"concurrency", required_argument, NULL, 'n'},
                                         {"cnum", required_argument, NULL, 'n'},
                                         {"loop", required_argument, NULL, 'L'},
                                         {"duration", required_argument, NULL, 'd'},
                                         {"warmup", required_argument, NULL, 'w'},
                                         {"connections", required_argument, NULL, 'o'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *cmd = bench ? "bench" : "predict";
    const char *server = NULL;
    uint64_t u;
    int c;
    memset(a, 0, sizeof(*a));
    a->batch = 1;
    a->top_k = 5;
    a->concurrency = 1;
    a->duration_s = 10;
    a->warmup_s = 1;
    a->target.timeout_ms = 10000;
    optind = 1;
    while ((c = getopt_long_only(argc, argv, "h", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 's':
            server = optarg;
            break;
        case 'r':
            a->rest = true;
            break;
        case 'g':
            a->rest = false;
            break;
        case 'm':
            a->model.name = optarg;
            break;
        case 'v':
            ok = veil_cli_parse_u64(optarg, &a->model.version) && a->model.version > 0;
            break;
        case 'l':
            a->model.label = optarg;
            break;
        case 'S':
            a->model.signature = optarg;
            break;
        case 'i':
            ok = a->n_inputs < VEIL_CLI_MAX_IO && strchr(optarg, '=') != NULL;
            if (ok)
                a->inputs[a->n_inputs++] = optarg;
            break;
        case 'b':
            ok = veil_cli_parse_u64(optarg, &u) && u >= 1 && u <= 65536;
            a->batch = (int64_t)u;
            break;
        case 'e':
            ok = veil_cli_parse_u64(optarg, &a->seed);
            break;
        case 'C':
            a->target.ca = optarg;
            break;
        case 'c':
            a->target.cert = optarg;
            break;
        case 'k':
            a->target.key = optarg;
            break;
        case 'p':
            a->plaintext = true;
            break;
        case 'A':
            a->attest.policy = optarg;
            break;
        case 'R':
            a->attest.roots = optarg;
            break;
        case 'K':
            a->attest.sim_key = optarg;
            break;
        case 'O':
            a->attest.collateral = optarg;
            break;
        case 't':
            ok = veil_cli_parse_u64(optarg, &u) && u <= 64;
            a->top_k = (unsigned)u;
            break;
        case 'n':
            ok = bench && veil_cli_parse_u64(optarg, &a->concurrency) && a->concurrency >= 1 &&
                 a->concurrency <= 4096;
            break;
        case 'L':
            ok = bench && veil_cli_parse_u64(optarg, &a->loop);
            break;
        case 'd':
            ok = bench && parse_double(optarg, &a->duration_s) && a->duration_s > 0;
            break;
        case 'w':
            ok = bench && parse_double(optarg, &a->warmup_s);
            break;
        case 'o':
            ok = bench && veil_cli_parse_u64(optarg, &a->connections) && a->connections >= 1 &&
                 a->connections <= 256;
            break;
        case 'j':
            ok = bench;
            a->json = true;
            break;
        case 'h':
            help(stdout, bench);
            return -1;
        default:
            help(stderr, bench);
            return 2;
        }
        if (!ok)
            return veil_cli_fail(cmd, "bad value for option '%s'", argv[optind - 1]);
    }
    if (optind != argc) {
        help(stderr, bench);
        return veil_cli_fail(cmd, "unexpected argument '%s'", argv[optind]);
    }
    if (a->model.name == NULL)
        return veil_cli_fail(cmd, "--model NAME is required");
    if (a->model.version != 0 && a->model.label != NULL)
        return veil_cli_fail(cmd, "--version and --label exclude each other");
    if (veil_cli_target_parse(&a->target, server != NULL ? server
                                          : a->rest      ? "localhost:8501"
                                                         : "localhost:8500") != VEIL_OK)
        return veil_cli_fail(cmd, "--server must be HOST:PORT");
    if ((a->target.cert == NULL) != (a->target.key == NULL))
        return veil_cli_fail(cmd, "--cert and --key go together");
    if (a->plaintext && (a->target.ca != NULL || a->target.cert != NULL))
        return veil_cli_fail(cmd, "--plaintext excludes --ca, --cert and --key");
    if (a->attest.policy == NULL &&
        (a->attest.roots != NULL || a->attest.sim_key != NULL || a->attest.collateral != NULL))
        return veil_cli_fail(cmd, "--attest-roots, --attest-sim-key and --attest-collateral "
                                  "need --attest POLICY");
    if (a->attest.policy != NULL && a->plaintext)
        return veil_cli_fail(cmd, "--attest needs TLS: it checks the server's TLS key");
    a->target.tls = !a->plaintext;
    if (a->connections == 0)
        a->connections = a->rest ? a->concurrency : (a->concurrency < 4 ? a->concurrency : 4);
    if (a->rest && a->connections < a->concurrency)
        a->connections = a->concurrency > 256 ? 256 : a->concurrency;
    return 0;
}
