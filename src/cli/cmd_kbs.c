/*
 * `veil kbs`: the key broker. Subcommands: init (make a state directory), serve (run the
 * broker; the default), admin (manage keys and the policy with an admin certificate) and
 * provision (attest and fetch keys as a workload would, for checks and benchmarks).
 */
#include "cli.h"
#include "veil/json.h"
#include "veil/kbs.h"

#include <getopt.h>
#include <signal.h>
#include <string.h>

static struct veil_kbs_server *g_server;

static void on_signal(int sig)
{
    (void)sig;
    if (g_server != NULL)
        veil_kbs_server_stop(g_server);
}

static void help(FILE *f)
{
    fprintf(f,
            "usage: veil kbs init --state DIR [--host NAME]...\n"
            "       veil kbs migrate --state DIR\n"
            "       veil kbs [serve] --state DIR [--listen HOST:PORT] [--roots DIR]\n"
            "                [--collateral DIR] [--sim-key PUB.pem] [--threads N]\n"
            "                [--handshake-timeout MS] [--request-timeout MS] [--nonce-ttl MS]\n"
            "                [--cert-lifetime S] [--allow-core-dumps]\n"
            "       veil kbs admin --broker HOST:PORT --ca BROKER-CA.pem --cert ADMIN.pem\n"
            "                --key ADMIN.key\n"
            "                COMMAND   (list | add NAME [--key-file F | --id ID] | rotate NAME |\n"
            "                           retire ID | policy FILE)\n"
            "       veil kbs provision --broker HOST:PORT[,...] --ca BROKER-CA.pem --tee sim\n"
            "                --sim-key SIM.key [--keys ID,...] [--measurement HEX] [--svn N]\n\n"
            "The key broker holds model keys encrypted under its master key, releases them only\n"
            "to workloads whose RA-TLS evidence matches the policy, signs their serving\n"
            "certificates, and appends every decision to STATE/audit.log. Its own certificate\n"
            "comes from the broker CA (STATE/broker-ca.pem, which its clients pin), serving\n"
            "certificates from the serving CA (STATE/serving-ca.pem), with the names the policy\n"
            "grants each workload; `migrate` upgrades a state made with one CA for both. The\n"
            "broker turns core dumps off at start (its memory holds the CA keys and released\n"
            "model keys); --allow-core-dumps keeps them on, for debugging only. A peer is dropped\n"
            "when its TLS handshake takes over --handshake-timeout (default 5000 ms) or a whole\n"
            "request over --request-timeout (default 10000 ms, from accept or the previous\n"
            "answer). Provisioning needs a nonce from POST /kbs/v1/challenge bound into the\n"
            "evidence; each nonce is single use and expires after --nonce-ttl (default\n"
            "60000 ms). Serving certificates last the policy's cert_lifetime_s for their\n"
            "workload, else --cert-lifetime (default 86400 s); servers renew them at two\n"
            "thirds of that.\n");
}

/* Options shared by the subcommands; each uses the ones it needs. */
struct kbs_args {
    const char *state, *listen, *roots, *collateral, *sim_key, *broker, *ca, *cert, *key, *key_file,
        *id, *keys, *tee, *measurement;
    const char *hosts[17];
    size_t nhosts;
    uint64_t threads, svn, handshake_ms, request_ms, nonce_ttl_ms, cert_lifetime_s;
    bool allow_core_dumps;
};

static int parse_args(int argc, char **argv, struct kbs_args *a)
{
    static const struct option opts[] = {{"state", required_argument, NULL, 's'},
                                         {"listen", required_argument, NULL, 'l'},
                                         {"roots", required_argument, NULL, 'r'},
                                         {"collateral", required_argument, NULL, 'c'},
                                         {"sim-key", required_argument, NULL, 'S'},
                                         {"broker", required_argument, NULL, 'b'},
                                         {"ca", required_argument, NULL, 'a'},
                                         {"cert", required_argument, NULL, 'C'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"key-file", required_argument, NULL, 'f'},
                                         {"id", required_argument, NULL, 'i'},
                                         {"keys", required_argument, NULL, 'K'},
                                         {"tee", required_argument, NULL, 't'},
                                         {"host", required_argument, NULL, 'H'},
                                         {"threads", required_argument, NULL, 'T'},
                                         {"svn", required_argument, NULL, 'v'},
                                         {"measurement", required_argument, NULL, 'm'},
                                         {"allow-core-dumps", no_argument, NULL, 'D'},
                                         {"handshake-timeout", required_argument, NULL, 'W'},
                                         {"request-timeout", required_argument, NULL, 'R'},
                                         {"nonce-ttl", required_argument, NULL, 'N'},
                                         {"cert-lifetime", required_argument, NULL, 'L'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    memset(a, 0, sizeof(*a));
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            a->state = optarg;
            break;
        case 'l':
            a->listen = optarg;
            break;
        case 'r':
            a->roots = optarg;
            break;
        case 'c':
            a->collateral = optarg;
            break;
        case 'S':
            a->sim_key = optarg;
            break;
        case 'b':
            a->broker = optarg;
            break;
        case 'a':
            a->ca = optarg;
            break;
        case 'C':
            a->cert = optarg;
            break;
        case 'k':
            a->key = optarg;
            break;
        case 'f':
            a->key_file = optarg;
            break;
        case 'i':
            a->id = optarg;
            break;
        case 'K':
            a->keys = optarg;
            break;
        case 't':
            a->tee = optarg;
            break;
        case 'm':
            a->measurement = optarg;
            break;
        case 'D':
            a->allow_core_dumps = true;
            break;
        case 'H':
            if (a->nhosts == 16)
                return veil_cli_fail("kbs", "at most 16 --host names");
            a->hosts[a->nhosts++] = optarg;
            break;
        case 'T':
            if (!veil_cli_parse_u64(optarg, &a->threads) || a->threads > 128)
                return veil_cli_fail("kbs", "--threads must be 0..128");
            break;
        case 'W':
        case 'R':
            if (!veil_cli_parse_u64(optarg, c == 'W' ? &a->handshake_ms : &a->request_ms) ||
                (c == 'W' ? a->handshake_ms : a->request_ms) == 0 ||
                (c == 'W' ? a->handshake_ms : a->request_ms) > 600000)
                return veil_cli_fail("kbs", "--handshake-timeout and --request-timeout are "
                                            "milliseconds, 1..600000");
            break;
        case 'N':
            if (!veil_cli_parse_u64(optarg, &a->nonce_ttl_ms) || a->nonce_ttl_ms == 0 ||
                a->nonce_ttl_ms > 3600000)
                return veil_cli_fail("kbs", "--nonce-ttl is milliseconds, 1..3600000");
            break;
        case 'L':
            if (!veil_cli_parse_u64(optarg, &a->cert_lifetime_s) ||
                a->cert_lifetime_s < VEIL_ATTEST_CERT_LIFETIME_MIN_S ||
                a->cert_lifetime_s > VEIL_ATTEST_CERT_LIFETIME_MAX_S)
                return veil_cli_fail("kbs", "--cert-lifetime is seconds, %d..%d",
                                     VEIL_ATTEST_CERT_LIFETIME_MIN_S,
                                     VEIL_ATTEST_CERT_LIFETIME_MAX_S);
            break;
        case 'v':
            if (!veil_cli_parse_u64(optarg, &a->svn) || a->svn > UINT32_MAX)
                return veil_cli_fail("kbs", "--svn must be a 32-bit number");
            break;
        case 'h':
            help(stdout);
            return -1;
        default:
            help(stderr);
            return 2;
        }
    }
    return 0;
}

static int cmd_init(struct kbs_args *a)
{
    if (a->state == NULL)
        return veil_cli_fail("kbs init", "--state DIR is required");
    struct veil_errbuf eb = {{0}};
    veil_err rc = veil_kbs_init(a->state, a->nhosts > 0 ? a->hosts : NULL, &eb);
    if (rc != VEIL_OK)
        return veil_cli_fail_rc("kbs init", rc, &eb);
    printf("broker state created in %s\n"
           "  broker CA (administrators and `veil serve --kbs` pin it): %s/broker-ca.pem\n"
           "  serving CA (prediction clients pin it):                   %s/serving-ca.pem\n"
           "  administrator credentials:             %s/admin.pem, %s/admin.key\n"
           "  policy (admits nothing yet):           %s/policy.json\n",
           a->state, a->state, a->state, a->state, a->state, a->state);
    return 0;
}

static int cmd_migrate(struct kbs_args *a)
{
    if (a->state == NULL)
        return veil_cli_fail("kbs migrate", "--state DIR is required");
    struct veil_errbuf eb = {{0}};
    veil_err rc = veil_kbs_migrate(a->state, &eb);
    if (rc != VEIL_OK)
        return veil_cli_fail_rc("kbs migrate", rc, &eb);
    printf("broker state in %s migrated: the broker's certificate now comes from its own CA,\n"
           "  %s/broker-ca.pem: administrators and `veil serve --kbs` must pin it instead of\n"
           "  serving-ca.pem (prediction clients keep pinning serving-ca.pem)\n",
           a->state, a->state);
    return 0;
}

static int cmd_serve(struct kbs_args *a)
{
    if (a->state == NULL)
        return veil_cli_fail("kbs", "--state DIR is required");
    struct veil_errbuf eb = {{0}};
    /* Before any key is read: a core of the broker would hold the CA keys and released keys. */
    veil_err rc = veil_harden_process(a->allow_core_dumps, &eb);
    if (rc != VEIL_OK)
        return veil_cli_fail_rc("kbs", rc, &eb);
    struct veil_kbs_server_opts o = {.state_dir = a->state,
                                     .listen = a->listen,
                                     .roots_dir = a->roots,
                                     .collateral_dir = a->collateral,
                                     .sim_key_pem = a->sim_key,
                                     .threads = (unsigned)a->threads,
                                     .cert_validity_s = (int64_t)a->cert_lifetime_s,
                                     .handshake_timeout_ms = (uint32_t)a->handshake_ms,
                                     .request_timeout_ms = (uint32_t)a->request_ms,
                                     .nonce_ttl_ms = (uint32_t)a->nonce_ttl_ms};
    rc = veil_kbs_server_open(&o, &g_server, &eb);
    if (rc != VEIL_OK)
        return veil_cli_fail_rc("kbs", rc, &eb);
    if (a->sim_key != NULL)
        fprintf(stderr,
                "veil kbs: WARNING: trusting sim evidence signed by %s: sim evidence "
                "proves nothing about hardware; use it only where no TEE exists\n",
                a->sim_key);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    printf("veil kbs: listening on port %u\n", veil_kbs_server_port(g_server));
    fflush(stdout);
    rc = veil_kbs_server_run(g_server, &eb);
    veil_kbs_server_free(g_server);
    g_server = NULL;
    return rc == VEIL_OK ? 0 : veil_cli_fail_rc("kbs", rc, &eb);
}

static int cmd_admin(struct kbs_args *a, int argc, char **argv)
{
    if (a->broker == NULL || a->ca == NULL || a->cert == NULL || a->key == NULL)
        return veil_cli_fail("kbs admin", "--broker, --ca, --cert and --key are required");
    if (optind >= argc)
        return veil_cli_fail("kbs admin", "which command? list, add, rotate, retire or policy");
    const char *what = argv[optind];
    const char *arg = optind + 1 < argc ? argv[optind + 1] : NULL;
    struct veil_kbs_admin_opts o = {a->broker, a->ca, a->cert, a->key, 0};
    struct veil_buf body, resp, file;
    struct veil_errbuf eb = {{0}};
    char path[512];
    const char *method = "POST";
    veil_buf_init_secret(&body, VEIL_LIMIT_KBS_BODY);
    veil_buf_init_secret(&resp, VEIL_LIMIT_KBS_BODY);
    veil_buf_init_secret(&file, VEIL_LIMIT_KBS_BODY);
    veil_err rc = VEIL_OK;
    int st = 1;
    if (strcmp(what, "list") == 0) {
        method = "GET";
        snprintf(path, sizeof(path), "/kbs/v1/admin/keys");
    } else if (strcmp(what, "add") == 0 && arg != NULL) {
        snprintf(path, sizeof(path), "/kbs/v1/admin/keys");
        rc = veil_buf_append_str(&body, "{\"name\":");
        if (rc == VEIL_OK)
            rc = veil_json_append_str(&body, veil_span_from_str(arg));
        if (rc == VEIL_OK && a->key_file != NULL) {
            /* Import a model key file: its ID and material go to the broker. */
            struct veil_model_key *mk = NULL;
            rc = veil_model_key_load(a->key_file, &mk, &eb);
            if (rc == VEIL_OK) {
                char hex[65];
                veil_hex_encode(mk->key, 32, hex);
                rc = veil_buf_append_str(&body, ",\"id\":");
                if (rc == VEIL_OK)
                    rc = veil_json_append_str(&body, veil_span_from_str(mk->id));
                if (rc == VEIL_OK)
                    rc = veil_buf_appendf(&body, ",\"key\":\"%s\"", hex);
                veil_memzero(hex, sizeof(hex));
            }
            veil_model_key_free(mk);
        } else if (rc == VEIL_OK && a->id != NULL) {
            rc = veil_buf_append_str(&body, ",\"id\":");
            if (rc == VEIL_OK)
                rc = veil_json_append_str(&body, veil_span_from_str(a->id));
        }
        if (rc == VEIL_OK)
            rc = veil_buf_append_str(&body, "}");
    } else if ((strcmp(what, "rotate") == 0 || strcmp(what, "retire") == 0) && arg != NULL &&
               strchr(arg, '/') == NULL && strlen(arg) < 200) {
        snprintf(path, sizeof(path), "/kbs/v1/admin/keys/%s/%s", arg, what);
    } else if (strcmp(what, "policy") == 0 && arg != NULL) {
        method = "PUT";
        snprintf(path, sizeof(path), "/kbs/v1/admin/policy");
        rc = veil_file_read_all(arg, VEIL_LIMIT_KBS_BODY, &body, &eb);
    } else {
        veil_buf_release(&body);
        veil_buf_release(&resp);
        veil_buf_release(&file);
        return veil_cli_fail("kbs admin", "unknown command or missing argument: %s", what);
    }
    int status = 0;
    if (rc == VEIL_OK)
        rc = veil_kbs_admin_request(&o, method, path, veil_buf_span(&body), &status, &resp, &eb);
    if (rc != VEIL_OK) {
        st = veil_cli_fail_rc("kbs admin", rc, &eb);
    } else {
        fwrite(resp.p, 1, resp.len, stdout);
        putchar('\n');
        st = status == 200 ? 0 : veil_cli_fail("kbs admin", "broker answered HTTP %d", status);
    }
    veil_buf_release(&body);
    veil_buf_release(&resp);
    veil_buf_release(&file);
    return st;
}

static int cmd_provision(struct kbs_args *a)
{
    if (a->broker == NULL || a->ca == NULL)
        return veil_cli_fail("kbs provision", "--broker and --ca are required");
    if (a->tee == NULL || strcmp(a->tee, "sim") != 0 || a->sim_key == NULL)
        return veil_cli_fail("kbs provision", "only --tee sim --sim-key FILE is available here");
    struct veil_errbuf eb = {{0}};
    struct veil_buf pem;
    uint8_t meas[32];
    veil_buf_init_secret(&pem, 65536);
    veil_err rc = veil_file_read_all(a->sim_key, pem.max, &pem, &eb);
    if (rc == VEIL_OK && a->measurement != NULL)
        rc = veil_hex_decode(veil_span_from_str(a->measurement), meas, 32) == VEIL_OK
                 ? VEIL_OK
                 : veil_errf(&eb, VEIL_E_INVALID, "--measurement must be 64 hex digits");
    else if (rc == VEIL_OK)
        rc = veil_attest_sim_measure_file("/proc/self/exe", meas, &eb);
    struct veil_attest_provider *p = NULL;
    if (rc == VEIL_OK)
        rc = veil_attest_provider_new_sim(veil_buf_span(&pem), meas, (uint32_t)a->svn, &p, &eb);
    veil_buf_release(&pem);
    char *ids[64];
    size_t n = 0;
    char *list = a->keys != NULL ? veil_strdup(a->keys) : NULL;
    for (char *save = NULL, *t = list != NULL ? strtok_r(list, ",", &save) : NULL;
         t != NULL && n < 64; t = strtok_r(NULL, ",", &save))
        ids[n++] = t;
    struct veil_kbs_grant *g = NULL;
    struct veil_kbs_client_opts o = {.brokers = a->broker, .ca_file = a->ca, .deadline_s = 20};
    if (rc == VEIL_OK)
        rc = veil_kbs_provision(&o, p, (const char *const *)ids, n, &g, &eb);
    veil_free(list);
    veil_attest_provider_free(p);
    if (rc != VEIL_OK)
        return veil_cli_fail_rc("kbs provision", rc, &eb);
    printf("workload: %s\nkeys released: %zu\n", g->workload, g->n_keys);
    for (size_t i = 0; i < g->n_keys; i++)
        printf("  %s\n", g->keys[i]->id);
    printf("serving certificate issued by the broker's serving CA\n");
    veil_kbs_grant_free(g);
    return 0;
}

int veil_cmd_kbs(int argc, char **argv)
{
    const char *sub = "serve";
    if (argc > 1 && argv[1][0] != '-') {
        sub = argv[1];
        argc--;
        argv++;
    }
    struct kbs_args a;
    int st = parse_args(argc, argv, &a);
    if (st != 0)
        return st < 0 ? 0 : st;
    if (strcmp(sub, "init") == 0)
        return cmd_init(&a);
    if (strcmp(sub, "migrate") == 0)
        return cmd_migrate(&a);
    if (strcmp(sub, "serve") == 0)
        return cmd_serve(&a);
    if (strcmp(sub, "admin") == 0)
        return cmd_admin(&a, argc, argv);
    if (strcmp(sub, "provision") == 0)
        return cmd_provision(&a);
    help(stderr);
    return 2;
}
