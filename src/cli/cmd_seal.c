/*
 * `veil seal`, `veil unseal` and `veil inspect`: the sealed model format from the command
 * line. Outputs are written atomically, so a failed or interrupted run leaves nothing behind.
 */
#include "cli.h"
#include "veil/crypto.h"
#include "veil/onnx.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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
               "with key ID, model name and version authenticated). An ONNX model whose\n"
               "tensors name external data files is sealed with them as one bundle\n"
               "(docs/format/external-data.md).\n\n"
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
            "written; OUT (mode 0600) appears only when the whole file verified. A bundle's\n"
            "model is written to OUT and its data files beside it, under their locations.\n\n"
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

/* What a bundle is sealed from: its directory, the model and each data file, all in memory
 * (the files mapped). dir is NULL when the model names no external data. */
struct bundle {
    struct veil_onnx_dir *dir;
    void *model_map;
    size_t model_len;
    struct veil_buf head;
    struct veil_seal_part *parts;
    size_t n;
    uint64_t total;
};

static void bundle_release(struct bundle *bd)
{
    veil_onnx_dir_free(bd->dir);
    if (bd->model_map != NULL)
        munmap(bd->model_map, bd->model_len);
    veil_buf_release(&bd->head);
    veil_free(bd->parts);
    memset(bd, 0, sizeof(*bd));
}

/*
 * Decides how to seal the model at path: when it is an ONNX file whose tensors name external
 * data, fills bd with the bundle's pieces after parsing the model against its folder, so that
 * every location and range is checked before anything is sealed. Otherwise leaves bd->dir NULL.
 */
static veil_err bundle_plan(const char *path, const char *ctype, struct bundle *bd,
                            struct veil_errbuf *eb)
{
    veil_err rc = VEIL_OK;
    struct veil_onnx_model *om = NULL;
    char *dcopy = NULL, *bcopy = NULL;
    const char **names = NULL;
    uint64_t *sizes = NULL;
    veil_buf_init(&bd->head, 1u << 24);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0 ||
        (uint64_t)st.st_size > VEIL_LIMIT_MODEL_BYTES)
        goto out; /* not a model to look into: veil_seal_file reports what is wrong */
    bd->model_map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (bd->model_map == MAP_FAILED) {
        bd->model_map = NULL;
        goto out;
    }
    bd->model_len = (size_t)st.st_size;
    struct veil_span model = veil_span_make(bd->model_map, bd->model_len);
    if (!veil_onnx_has_external_data(model))
        goto out;
    if (ctype != NULL && strcmp(ctype, VEIL_ONNX_BUNDLE_CONTENT_TYPE) != 0) {
        rc = veil_errf(eb, VEIL_E_INVALID,
                       "%s names external data, so it is sealed as a bundle (content type %s), "
                       "not as %s",
                       path, VEIL_ONNX_BUNDLE_CONTENT_TYPE, ctype);
        goto out;
    }
    dcopy = veil_strdup(path);
    bcopy = veil_strdup(path);
    if (dcopy == NULL || bcopy == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = veil_onnx_dir_open(dirname(dcopy), &bd->dir, eb)) != VEIL_OK)
        goto out;
    struct veil_onnx_external ext = veil_onnx_dir_external(bd->dir);
    if ((rc = veil_onnx_parse_external(model, &ext, &om, eb)) != VEIL_OK) {
        (void)veil_err_prefix(eb, rc, "%s", path);
        goto out;
    }
    size_t nf = veil_onnx_dir_count(bd->dir) + 1;
    names = veil_calloc(nf, sizeof(*names));
    sizes = veil_calloc(nf, sizeof(*sizes));
    bd->parts = veil_calloc(nf + 1, sizeof(*bd->parts));
    if (names == NULL || sizes == NULL || bd->parts == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "out of memory");
        goto out;
    }
    names[0] = basename(bcopy);
    sizes[0] = bd->model_len;
    bd->parts[1].mem = model;
    for (size_t i = 1; i < nf; i++) {
        names[i] = veil_onnx_dir_location(bd->dir, i - 1);
        sizes[i] = veil_onnx_dir_size(bd->dir, i - 1);
        if ((rc = ext.get(ext.ctx, names[i], &bd->parts[i + 1].mem, eb)) != VEIL_OK)
            goto out;
    }
    if ((rc = veil_onnx_bundle_head(names, sizes, nf, &bd->head, eb)) != VEIL_OK)
        goto out;
    bd->parts[0].mem = veil_buf_span(&bd->head);
    bd->n = nf + 1;
    bd->total = 0;
    for (size_t i = 0; i < bd->n; i++)
        bd->total += bd->parts[i].mem.len;
out:
    if (rc == VEIL_OK && bd->parts == NULL) {
        veil_onnx_dir_free(bd->dir);
        bd->dir = NULL;
    }
    if (fd >= 0)
        close(fd);
    veil_onnx_model_free(om);
    veil_free(dcopy);
    veil_free(bcopy);
    veil_free(names);
    veil_free(sizes);
    return rc;
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
    struct bundle bd = {0};
    rc = bundle_plan(a.in, a.ctype, &bd, &eb);
    if (rc == VEIL_OK && bd.dir != NULL) {
        p.content_type = VEIL_ONNX_BUNDLE_CONTENT_TYPE;
        prog.total = bd.total;
        rc = veil_seal_parts(bd.parts, bd.n, a.out, key, &p, veil_cli_progress_update, &prog, &eb);
    } else if (rc == VEIL_OK) {
        /* The total for the progress line comes from the input's size. */
        FILE *f = fopen(a.in, "rb");
        if (f != NULL) {
            if (fseek(f, 0, SEEK_END) == 0)
                prog.total = (uint64_t)ftell(f);
            fclose(f);
        }
        rc = veil_seal_file(a.in, a.out, key, &p, veil_cli_progress_update, &prog, &eb);
    }
    veil_cli_progress_done(&prog);
    veil_model_key_free(key);
    bool bundled = rc == VEIL_OK && bd.parts != NULL;
    size_t n_ext = bundled ? bd.n - 2 : 0;
    uint64_t ext_bytes = bundled ? bd.total - bd.parts[0].mem.len - bd.parts[1].mem.len : 0;
    bundle_release(&bd);
    if (rc != VEIL_OK)
        return veil_cli_fail_rc("seal", rc, &eb);
    if (n_ext > 0)
        printf("sealed %s with %zu external data file%s (%llu bytes) as model '%s' version %llu "
               "-> %s\n",
               a.in, n_ext, n_ext == 1 ? "" : "s", (unsigned long long)ext_bytes, a.name,
               (unsigned long long)a.version, a.out);
    else
        printf("sealed %s as model '%s' version %llu -> %s\n", a.in, a.name,
               (unsigned long long)a.version, a.out);
    return 0;
}

/* Whether the sealed file at path declares a bundle (checked again, authenticated, on unseal). */
static bool is_bundle(const char *path)
{
    uint8_t head[VEIL_LIMIT_SEAL_HEADER];
    struct veil_seal_header hdr;
    struct veil_errbuf eb = {{0}};
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    size_t got = fread(head, 1, sizeof(head), f);
    fclose(f);
    return veil_seal_header_parse(veil_span_make(head, got), &hdr, &eb) == VEIL_OK &&
           strcmp(hdr.content_type, VEIL_ONNX_BUNDLE_CONTENT_TYPE) == 0;
}

/* Creates the folders of rel (a checked location) below base, as mkdir -p would. */
static veil_err make_parents(const char *base, const char *rel, struct veil_errbuf *eb)
{
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/%s", base, rel);
    if (n < 0 || (size_t)n >= sizeof(path))
        return veil_errf(eb, VEIL_E_LIMIT, "path too long for %s", rel);
    for (char *c = path + strlen(base) + 1; *c != '\0'; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return veil_errf(eb, VEIL_E_IO, "%s: %s", path, strerror(errno));
        *c = '/';
    }
    return VEIL_OK;
}

static veil_err write_new(const char *path, struct veil_span bytes, struct veil_errbuf *eb)
{
    struct veil_atomic_file af = {.fd = -1};
    veil_err rc = veil_atomic_open(&af, path, 0600, VEIL_ATOMIC_NO_REPLACE, eb);
    if (rc == VEIL_OK)
        rc = veil_atomic_write(&af, bytes.p, bytes.len, eb);
    if (rc == VEIL_OK)
        rc = veil_atomic_commit(&af, eb);
    veil_atomic_abort(&af);
    return rc;
}

/*
 * Unseals a bundle: the model to out, each data file beside it under its location. Every file
 * is checked not to exist before any is written, so a refusal leaves nothing behind.
 */
static veil_err unseal_bundle(const char *in, const char *out, const struct veil_model_key *key,
                              const struct veil_seal_expect *ex, unsigned threads,
                              struct veil_errbuf *eb)
{
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    struct veil_seal_header hdr;
    struct veil_onnx_bundle b = {0};
    char *ocopy = veil_strdup(out), path[4096];
    veil_err rc = ocopy == NULL ? veil_errf(eb, VEIL_E_NOMEM, "out of memory") : VEIL_OK;
    if (rc == VEIL_OK)
        rc = veil_unseal_path(in, key, ex, threads, &plain, &plain_len, &hdr, eb);
    if (rc == VEIL_OK && strcmp(hdr.content_type, VEIL_ONNX_BUNDLE_CONTENT_TYPE) != 0)
        rc = veil_errf(eb, VEIL_E_MISMATCH, "%s changed while it was read", in);
    if (rc == VEIL_OK)
        rc = veil_onnx_bundle_parse(veil_span_make(plain, plain_len), &b, eb);
    const char *dir = ocopy != NULL ? dirname(ocopy) : ".";
    for (size_t i = 0; rc == VEIL_OK && i < b.n_files; i++) {
        int n = i == 0 ? snprintf(path, sizeof(path), "%s", out)
                       : snprintf(path, sizeof(path), "%s/%s", dir, b.files[i].name);
        struct stat st;
        if (n < 0 || (size_t)n >= sizeof(path))
            rc = veil_errf(eb, VEIL_E_LIMIT, "path too long for %s", b.files[i].name);
        else if (lstat(path, &st) == 0)
            rc = veil_errf(eb, VEIL_E_EXISTS, "%s exists: not replaced", path);
    }
    for (size_t i = 0; rc == VEIL_OK && i < b.n_files; i++) {
        if (i == 0) {
            rc = write_new(out, b.files[0].bytes, eb);
            continue;
        }
        if ((rc = make_parents(dir, b.files[i].name, eb)) != VEIL_OK)
            break;
        snprintf(path, sizeof(path), "%s/%s", dir, b.files[i].name);
        rc = write_new(path, b.files[i].bytes, eb);
    }
    if (rc == VEIL_OK)
        printf("unsealed %s -> %s and %zu external data file%s beside it\n", in, out, b.n_files - 1,
               b.n_files == 2 ? "" : "s");
    veil_onnx_bundle_release(&b);
    if (plain != NULL)
        veil_secure_free(plain, plain_len);
    veil_free(ocopy);
    return rc;
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
    if (is_bundle(a.in)) {
        rc = unseal_bundle(a.in, a.out, key, &ex, (unsigned)a.threads, &eb);
        veil_model_key_free(key);
        return rc != VEIL_OK ? veil_cli_fail_rc("unseal", rc, &eb) : 0;
    }
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
