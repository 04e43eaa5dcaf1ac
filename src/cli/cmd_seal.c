/*
 * `veil seal`, `veil unseal` and `veil inspect`: the sealed model format from the command
 * line. Outputs are written atomically, so a failed or interrupted run leaves nothing behind.
 */
#include "cli.h"
#include "veil/crypto.h"

#include <getopt.h>
#include <string.h>

struct seal_args {
    const char *in, *key, *name, *out, *ctype;
    uint64_t version, chunk, threads;
    bool have_version;
};

/* Prints s as a JSON string: header strings are printable ASCII, so escaping " and \ suffices. */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        putchar(*s);
    }
    putchar('"');
}

static void seal_help(FILE *f)
{
    fprintf(f, "usage: veil seal IN --key KEY --name NAME --version V -o OUT [--content-type T]\n"
               "                    [--chunk-size BYTES]\n\n"
               "Encrypts the model file IN into the sealed format (AES-256-GCM chunks, header\n"
               "with key ID, model name and version authenticated).\n\n"
               "  -k, --key FILE         model key file (veil keygen)\n"
               "  -n, --name NAME        model name bound into the file\n"
               "  -V, --version V        model version bound into the file\n"
               "  -o, --output OUT       sealed output file (e.g. models/NAME/V/model.onnx.veil)\n"
               "      --content-type T   content type (default: application/onnx)\n"
               "      --chunk-size BYTES power of two, 4096..67108864 (default 1048576)\n"
               "  -h, --help             this help\n");
}

static void unseal_help(FILE *f)
{
    fprintf(f,
            "usage: veil unseal IN --key KEY -o OUT [--name NAME] [--version V] [--threads N]\n\n"
            "Decrypts a sealed file. Every chunk is authenticated before its plaintext is\n"
            "written; OUT (mode 0600) appears only when the whole file verified.\n\n"
            "  -k, --key FILE     model key file\n"
            "  -o, --output OUT   plaintext output\n"
            "  -n, --name NAME    refuse a file whose model name differs\n"
            "  -V, --version V    refuse a file whose model version differs\n"
            "      --threads N    decryption threads (default: all cores)\n"
            "  -h, --help         this help\n");
}

static int parse(int argc, char **argv, struct seal_args *a, void (*help)(FILE *))
{
    static const struct option opts[] = {{"key", required_argument, NULL, 'k'},
                                         {"name", required_argument, NULL, 'n'},
                                         {"version", required_argument, NULL, 'V'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"content-type", required_argument, NULL, 'c'},
                                         {"chunk-size", required_argument, NULL, 's'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    memset(a, 0, sizeof(*a));
    optind = 1;
    while ((c = getopt_long(argc, argv, "k:n:V:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            a->key = optarg;
            break;
        case 'n':
            a->name = optarg;
            break;
        case 'V':
            if (!veil_cli_parse_u64(optarg, &a->version))
                return veil_cli_fail(argv[0], "--version must be a non-negative integer") + 1;
            a->have_version = true;
            break;
        case 'o':
            a->out = optarg;
            break;
        case 'c':
            a->ctype = optarg;
            break;
        case 's':
            if (!veil_cli_parse_u64(optarg, &a->chunk) || a->chunk > UINT32_MAX)
                return veil_cli_fail(argv[0], "--chunk-size must be a number of bytes") + 1;
            break;
        case 't':
            if (!veil_cli_parse_u64(optarg, &a->threads) || a->threads > 64)
                return veil_cli_fail(argv[0], "--threads must be 0..64") + 1;
            break;
        case 'h':
            help(stdout);
            return -1;
        default:
            help(stderr);
            return 2;
        }
    }
    if (optind + 1 != argc) {
        help(stderr);
        return 2;
    }
    a->in = argv[optind];
    return 0;
}

int veil_cmd_seal(int argc, char **argv)
{
    struct seal_args a;
    int st = parse(argc, argv, &a, seal_help);
    if (st != 0)
        return st < 0 ? 0 : st;
    if (a.key == NULL || a.name == NULL || !a.have_version || a.out == NULL)
        return veil_cli_fail("seal", "--key, --name, --version and -o are required");
    struct veil_errbuf eb = {{0}};
    struct veil_model_key *key = NULL;
    veil_err rc = veil_model_key_load(a.key, &key, &eb);
    if (rc != VEIL_OK)
        return veil_cli_fail_rc("seal", rc, &eb);
    struct veil_seal_params p = {.model_name = a.name,
                                 .model_version = a.version,
                                 .content_type = a.ctype != NULL ? a.ctype : "application/onnx",
                                 .chunk_size = (uint32_t)a.chunk};
    struct veil_cli_progress prog;
    veil_cli_progress_init(&prog, "sealing", 0);
    /* The total for the progress line comes from the input's size. */
    FILE *f = fopen(a.in, "rb");
    if (f != NULL) {
        if (fseek(f, 0, SEEK_END) == 0)
            prog.total = (uint64_t)ftell(f);
        fclose(f);
    }
    rc = veil_seal_file(a.in, a.out, key, &p, veil_cli_progress_update, &prog, &eb);
    veil_cli_progress_done(&prog);
    veil_model_key_free(key);
    if (rc != VEIL_OK)
        return veil_cli_fail_rc("seal", rc, &eb);
    printf("sealed %s as model '%s' version %llu -> %s\n", a.in, a.name,
           (unsigned long long)a.version, a.out);
    return 0;
}

int veil_cmd_unseal(int argc, char **argv)
{
    struct seal_args a;
    int st = parse(argc, argv, &a, unseal_help);
    if (st != 0)
        return st < 0 ? 0 : st;
    if (a.key == NULL || a.out == NULL)
        return veil_cli_fail("unseal", "--key and -o are required");
    struct veil_errbuf eb = {{0}};
    struct veil_model_key *key = NULL;
    veil_err rc = veil_model_key_load(a.key, &key, &eb);
    if (rc != VEIL_OK)
        return veil_cli_fail_rc("unseal", rc, &eb);
    struct veil_seal_expect ex = {
        .model_name = a.name, .check_version = a.have_version, .model_version = a.version};
    struct veil_cli_progress prog;
    veil_cli_progress_init(&prog, "unsealing", 0);
    FILE *f = fopen(a.in, "rb");
    if (f != NULL) {
        if (fseek(f, 0, SEEK_END) == 0)
            prog.total = (uint64_t)ftell(f);
        fclose(f);
    }
    rc = veil_unseal_file(a.in, a.out, key, &ex, (unsigned)a.threads, veil_cli_progress_update,
                          &prog, &eb);
    veil_cli_progress_done(&prog);
    veil_model_key_free(key);
    if (rc != VEIL_OK)
        return veil_cli_fail_rc("unseal", rc, &eb);
    printf("unsealed %s -> %s\n", a.in, a.out);
    return 0;
}

int veil_cmd_inspect(int argc, char **argv)
{
    bool json = false;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: veil inspect FILE [--json]\n\n"
                   "Prints a sealed file's header. No key is needed; nothing printed is\n"
                   "authenticated until the file is unsealed with its key.\n");
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (path == NULL && argv[i][0] != '-') {
            path = argv[i];
        } else {
            return veil_cli_fail("inspect", "unexpected argument '%s'", argv[i]);
        }
    }
    if (path == NULL)
        return veil_cli_fail("inspect", "usage: veil inspect FILE [--json]");
    struct veil_errbuf eb = {{0}};
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return veil_cli_fail("inspect", "%s: cannot open", path);
    uint8_t head[VEIL_LIMIT_SEAL_HEADER];
    size_t n = fread(head, 1, sizeof(head), f);
    long total = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    fclose(f);
    struct veil_seal_header h;
    veil_err rc = veil_seal_header_parse(veil_span_make(head, n), &h, &eb);
    if (rc != VEIL_OK)
        return veil_cli_fail("inspect", "%s: %s", path, veil_errbuf_msg(&eb, rc));
    char salt[2 * VEIL_SEAL_SALT_LEN + 1];
    veil_hex_encode(h.salt, sizeof(h.salt), salt);
    const char *size_note = total >= 0 && (uint64_t)total == h.sealed_len  ? "matches"
                            : total >= 0 && (uint64_t)total < h.sealed_len ? "TRUNCATED"
                                                                           : "TRAILING DATA";
    if (json) {
        printf("{\"format_version\":%u,\"algorithm\":\"aes-256-gcm-hkdf-sha256\",\"model_name\":",
               h.format_version);
        json_str(h.model_name);
        printf(",\"model_version\":%llu,\"key_id\":", (unsigned long long)h.model_version);
        json_str(h.key_id);
        printf(",\"content_type\":");
        json_str(h.content_type);
        printf(",\"plaintext_bytes\":%llu,\"chunk_size\":%u,\"chunks\":%llu,\"sealed_bytes\":%llu,"
               "\"file_bytes\":%ld,\"salt\":\"%s\"}\n",
               (unsigned long long)h.plaintext_len, h.chunk_size, (unsigned long long)h.chunk_count,
               (unsigned long long)h.sealed_len, total, salt);
        return 0;
    }
    printf("file:           %s\n"
           "format:         veil sealed model v%u (AES-256-GCM chunks, HKDF-SHA256)\n"
           "model name:     %s\n"
           "model version:  %llu\n"
           "key ID:         %s\n"
           "content type:   %s\n"
           "plaintext:      %llu bytes\n"
           "chunks:         %llu of %u bytes\n"
           "sealed size:    %llu bytes (file: %ld bytes, %s)\n"
           "salt:           %s\n"
           "note:           the header is authenticated only when unsealed with the key\n",
           path, h.format_version, h.model_name, (unsigned long long)h.model_version, h.key_id,
           h.content_type, (unsigned long long)h.plaintext_len, (unsigned long long)h.chunk_count,
           h.chunk_size, (unsigned long long)h.sealed_len, total, size_note, salt);
    return 0;
}
