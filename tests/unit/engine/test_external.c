/*
 * ONNX external data and the model bundle (docs/format/external-data.md): the location rules,
 * every external_data refusal, the folder source's confinement (symbolic links, sub-folders,
 * non-files), the bundle reader's rules and its round trip with veil_onnx_bundle_head, and a
 * model run with its weights read from a bundle.
 */
#include "harness.h"
#include "model_builder.h"

#include "veil/onnx.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* One in-memory file as an external source. */
struct mem_file {
    const char *location;
    struct veil_span bytes;
};

static veil_err mem_get(void *ctx, const char *location, struct veil_span *bytes,
                        struct veil_errbuf *eb)
{
    const struct mem_file *f = ctx;
    if (strcmp(location, f->location) != 0)
        return veil_errf(eb, VEIL_E_NOTFOUND, "no file '%s'", location);
    *bytes = f->bytes;
    return VEIL_OK;
}

/* Marks tensor t as stored externally with the given key/value pairs (NULL-terminated). */
static void make_external(struct mb *b, VeilOnnx__TensorProto *t, const char *const *kv)
{
    size_t n = 0;
    while (kv[2 * n] != NULL)
        n++;
    t->has_raw_data = 0;
    t->raw_data.len = 0;
    t->has_data_location = 1;
    t->data_location = VEIL_ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    t->n_external_data = n;
    t->external_data = mb_alloc(b, (n + 1) * sizeof(*t->external_data));
    for (size_t i = 0; i < n; i++) {
        VeilOnnx__StringStringEntryProto *e = mb_alloc(b, sizeof(*e));
        veil_onnx__string_string_entry_proto__init(e);
        e->key = mb_str(b, kv[2 * i]);
        e->value = mb_str(b, kv[2 * i + 1]);
        t->external_data[i] = e;
    }
}

static const float W[4] = {1.5f, -2.0f, 0.25f, 8.0f};

/* y = x + w, w [4] stored externally as kv says; the packed model goes to out. */
static void build(const char *const *kv, struct veil_buf *out)
{
    struct mb b;
    mb_init(&b);
    int64_t d[1] = {4};
    mb_input(&b, "x", 1, 1, d);
    mb_output(&b, "y", 1, 1, d);
    VeilOnnx__TensorProto *t = mb_init_f(&b, "w", 1, d, W);
    if (kv != NULL)
        make_external(&b, t, kv);
    mb_node(&b, "Add", "x,w", "y", 0);
    mb_pack(&b, out);
    mb_release(&b);
}

/* 8 bytes of padding, then the weights: a file for offset 8. */
static void weights_file(uint8_t file[24])
{
    memset(file, 0xEE, 8);
    memcpy(file + 8, W, sizeof(W));
}

static veil_err parse_with(const char *const *kv, struct veil_span file, struct veil_errbuf *eb)
{
    struct veil_buf m;
    struct mem_file f = {"w.bin", file};
    struct veil_onnx_external ext = {mem_get, &f};
    struct veil_onnx_model *om = NULL;
    build(kv, &m);
    veil_err rc = veil_onnx_parse_external(veil_buf_span(&m), &ext, &om, eb);
    if (rc == VEIL_OK) {
        VEIL_ASSERT(om->initializers[0].data == file.p + 8);
        veil_onnx_model_free(om);
    }
    veil_buf_release(&m);
    return rc;
}

TEST(locations)
{
    static const char *good[] = {"w.bin", "data/w.bin", "a b/c.d", "..x", "x..", ".hidden"};
    static const char *bad[] = {"",     "/abs", "../x", "a/../b",    "a/./b", ".",
                                "a//b", "a/",   "a\\b", "tab\there", "\x7f"};
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
        ASSERT_TRUE(veil_onnx_location_ok(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        ASSERT_FALSE(veil_onnx_location_ok(bad[i], strlen(bad[i])));
    char longname[VEIL_ONNX_MAX_LOCATION + 2];
    memset(longname, 'a', sizeof(longname));
    ASSERT_TRUE(veil_onnx_location_ok(longname, VEIL_ONNX_MAX_LOCATION));
    ASSERT_FALSE(veil_onnx_location_ok(longname, VEIL_ONNX_MAX_LOCATION + 1));
    ASSERT_FALSE(veil_onnx_location_ok("a\0b", 3));
}

TEST(external_entries)
{
    uint8_t file[24];
    weights_file(file);
    struct veil_span f = veil_span_make(file, sizeof(file));
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(parse_with((const char *[]){"location", "w.bin", "offset", "8", NULL}, f, &eb));
    ASSERT_OK(parse_with(
        (const char *[]){"location", "w.bin", "offset", "8", "length", "16", "checksum", "x", NULL},
        f, &eb));
    struct {
        const char *kv[9];
        veil_err want;
        const char *msg;
    } cases[] = {
        {{"offset", "8", NULL}, VEIL_E_FORMAT, "names no location"},
        {{"location", "w.bin", "location", "w.bin", NULL}, VEIL_E_FORMAT, "given twice"},
        {{"location", "w.bin", "colour", "red", NULL}, VEIL_E_FORMAT, "unknown external_data key"},
        {{"location", "w.bin", "offset", "-8", NULL}, VEIL_E_FORMAT, "not a decimal number"},
        {{"location", "w.bin", "offset", "8 ", NULL}, VEIL_E_FORMAT, "not a decimal number"},
        {{"location", "w.bin", "offset", "8", "length", "12", NULL},
         VEIL_E_FORMAT,
         "not the 16 bytes"},
        {{"location", "w.bin", "offset", "9", NULL}, VEIL_E_FORMAT, "bytes 9 to 25 of 'w.bin'"},
        {{"location", "w.bin", "offset", "18446744073709551615", NULL},
         VEIL_E_FORMAT,
         "not a decimal number"},
        {{"location", "w.bin", "offset", "9223372036854775807", NULL}, VEIL_E_FORMAT, "are needed"},
        {{"location", "../w.bin", NULL}, VEIL_E_FORMAT, "not a plain relative path"},
        {{"location", "/etc/passwd", NULL}, VEIL_E_FORMAT, "not a plain relative path"},
        {{"location", "other.bin", NULL}, VEIL_E_NOTFOUND, "no file 'other.bin'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        veil_err rc = parse_with(cases[i].kv, f, &eb);
        ASSERT_EQ_I64(rc, cases[i].want);
        ASSERT_STR_CONTAINS(veil_errbuf_msg(&eb, rc), cases[i].msg);
        ASSERT_STR_CONTAINS(veil_errbuf_msg(&eb, rc), "tensor 'w'");
    }
}

TEST(external_refused_without_a_source)
{
    struct veil_buf m;
    struct veil_onnx_model *om = NULL;
    struct veil_errbuf eb = {{0}};
    build((const char *[]){"location", "w.bin", NULL}, &m);
    ASSERT_TRUE(veil_onnx_has_external_data(veil_buf_span(&m)));
    ASSERT_ERR(veil_onnx_parse(veil_buf_span(&m), &om, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(veil_errbuf_msg(&eb, VEIL_E_UNSUPPORTED), "external file 'w.bin'");
    ASSERT_TRUE(om == NULL);
    veil_buf_release(&m);
    build(NULL, &m);
    ASSERT_FALSE(veil_onnx_has_external_data(veil_buf_span(&m)));
    veil_buf_release(&m);
    ASSERT_FALSE(veil_onnx_has_external_data(veil_span_make("\xff\xff", 2)));
}

TEST(inline_and_external_conflicts)
{
    struct mb b;
    struct veil_buf m;
    struct veil_onnx_model *om = NULL;
    struct veil_errbuf eb = {{0}};
    uint8_t file[24];
    weights_file(file);
    struct mem_file f = {"w.bin", veil_span_make(file, sizeof(file))};
    struct veil_onnx_external ext = {mem_get, &f};
    int64_t d[1] = {4};
    /* Data in the model as well as outside it. */
    mb_init(&b);
    mb_input(&b, "x", 1, 1, d);
    mb_output(&b, "y", 1, 1, d);
    VeilOnnx__TensorProto *t = mb_init_f(&b, "w", 1, d, W);
    make_external(&b, t, (const char *[]){"location", "w.bin", NULL});
    t->has_raw_data = 1;
    t->raw_data.len = sizeof(W);
    t->raw_data.data = mb_alloc(&b, sizeof(W));
    mb_node(&b, "Add", "x,w", "y", 0);
    mb_pack(&b, &m);
    mb_release(&b);
    ASSERT_ERR(veil_onnx_parse_external(veil_buf_span(&m), &ext, &om, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(veil_errbuf_msg(&eb, VEIL_E_FORMAT), "also carries data");
    veil_buf_release(&m);
    /* external_data entries on a tensor stored in the model. */
    mb_init(&b);
    mb_input(&b, "x", 1, 1, d);
    mb_output(&b, "y", 1, 1, d);
    t = mb_init_f(&b, "w", 1, d, W);
    make_external(&b, t, (const char *[]){"location", "w.bin", NULL});
    t->data_location = VEIL_ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
    t->has_raw_data = 1;
    t->raw_data.len = sizeof(W);
    t->raw_data.data = mb_alloc(&b, sizeof(W));
    memcpy(t->raw_data.data, W, sizeof(W));
    mb_node(&b, "Add", "x,w", "y", 0);
    mb_pack(&b, &m);
    mb_release(&b);
    ASSERT_ERR(veil_onnx_parse_external(veil_buf_span(&m), &ext, &om, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(veil_errbuf_msg(&eb, VEIL_E_FORMAT), "not stored externally");
    veil_buf_release(&m);
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    VEIL_ASSERT(f != NULL && fwrite(p, 1, n, f) == n && fclose(f) == 0);
}

TEST(folder_source)
{
    char dir[] = "/tmp/veil-ext-XXXXXX", path[600], outside[256];
    struct veil_errbuf eb = {{0}};
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/sub", dir);
    ASSERT_TRUE(mkdir(path, 0700) == 0);
    snprintf(path, sizeof(path), "%s/sub/w.bin", dir);
    write_file(path, "abcdef", 6);
    snprintf(outside, sizeof(outside), "%s-outside.bin", dir);
    write_file(outside, "secret", 6);
    snprintf(path, sizeof(path), "%s/link.bin", dir);
    ASSERT_TRUE(symlink(outside, path) == 0);
    snprintf(path, sizeof(path), "%s/inner.bin", dir);
    ASSERT_TRUE(symlink("sub/w.bin", path) == 0);

    struct veil_onnx_dir *d = NULL;
    ASSERT_OK(veil_onnx_dir_open(dir, &d, &eb));
    struct veil_onnx_external ext = veil_onnx_dir_external(d);
    struct veil_span s, s2;
    ASSERT_OK(ext.get(ext.ctx, "sub/w.bin", &s, &eb));
    ASSERT_EQ_U64(s.len, 6);
    ASSERT_MEM_EQ(s.p, "abcdef", 6);
    ASSERT_OK(ext.get(ext.ctx, "sub/w.bin", &s2, &eb));
    ASSERT_TRUE(s2.p == s.p);                           /* opened once */
    ASSERT_OK(ext.get(ext.ctx, "inner.bin", &s2, &eb)); /* a link that stays inside */
    ASSERT_EQ_U64(veil_onnx_dir_count(d), 2);
    ASSERT_STR_EQ(veil_onnx_dir_location(d, 0), "sub/w.bin");
    ASSERT_EQ_U64(veil_onnx_dir_size(d, 0), 6);
    ASSERT_ERR(ext.get(ext.ctx, "link.bin", &s2, &eb), VEIL_E_PERM);
    ASSERT_STR_CONTAINS(veil_errbuf_msg(&eb, VEIL_E_PERM), "leads outside the model's folder");
    ASSERT_ERR(ext.get(ext.ctx, "sub", &s2, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(veil_errbuf_msg(&eb, VEIL_E_FORMAT), "not a regular file");
    ASSERT_ERR(ext.get(ext.ctx, "none.bin", &s2, &eb), VEIL_E_NOTFOUND);
    veil_onnx_dir_free(d);
    ASSERT_ERR(veil_onnx_dir_open("/nonexistent/veil", &d, &eb), VEIL_E_NOTFOUND);

    snprintf(path, sizeof(path), "rm -rf '%s' '%s'", dir, outside);
    ASSERT_TRUE(system(path) == 0);
}

/* A bundle of the given files, built with veil_onnx_bundle_head. */
static void make_bundle(const char *const *names, const struct veil_span *data, size_t n,
                        struct veil_buf *out)
{
    uint64_t sizes[8];
    for (size_t i = 0; i < n; i++)
        sizes[i] = data[i].len;
    veil_buf_init(out, 1u << 24);
    VEIL_ASSERT(veil_onnx_bundle_head(names, sizes, n, out, NULL) == VEIL_OK);
    for (size_t i = 0; i < n; i++)
        VEIL_ASSERT(veil_buf_append(out, data[i].p, data[i].len) == VEIL_OK);
}

TEST(bundle_runs_a_model)
{
    struct veil_buf m, bundle;
    uint8_t file[24];
    weights_file(file);
    build((const char *[]){"location", "data/w.bin", "offset", "8", NULL}, &m);
    const char *names[] = {"model.onnx", "data/w.bin"};
    struct veil_span data[] = {veil_buf_span(&m), veil_span_make(file, sizeof(file))};
    make_bundle(names, data, 2, &bundle);
    struct veil_onnx_bundle b;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(veil_onnx_bundle_parse(veil_buf_span(&bundle), &b, &eb));
    ASSERT_EQ_U64(b.n_files, 2);
    ASSERT_STR_EQ(b.files[1].name, "data/w.bin");
    ASSERT_MEM_EQ(b.files[1].bytes.p, file, sizeof(file));
    struct veil_onnx_external ext = veil_onnx_bundle_external(&b);
    struct veil_span s;
    ASSERT_ERR(ext.get(ext.ctx, "model.onnx", &s, &eb), VEIL_E_NOTFOUND);
    struct veil_engine_model *em = NULL;
    ASSERT_OK(veil_engine_model_load_external(b.files[0].bytes, &ext, NULL, &em, &eb));
    veil_onnx_bundle_release(&b);
    veil_buf_release(&bundle); /* the model holds its own copy of the weights */
    float x[4] = {1, 2, 3, 4};
    struct veil_tensor in = {
        .dtype = VEIL_DT_FLOAT, .rank = 1, .dims = {4}, .data = x, .nbytes = sizeof(x)};
    struct veil_tensor out = {0};
    ASSERT_OK(veil_engine_run(em, &in, 1, &out, 1, &eb));
    const float *y = out.data;
    for (int i = 0; i < 4; i++)
        ASSERT_TRUE(y[i] == x[i] + W[i]);
    veil_tensor_release(&out);
    veil_engine_model_free(em);
    veil_buf_release(&m);
}

TEST(bundle_refusals)
{
    const char *names[] = {"model.onnx", "a.bin"};
    struct veil_span data[] = {veil_span_make("mm", 2), veil_span_make("aaa", 3)};
    struct veil_buf good;
    make_bundle(names, data, 2, &good);
    struct veil_onnx_bundle b;
    struct veil_errbuf eb = {{0}};
    ASSERT_OK(veil_onnx_bundle_parse(veil_buf_span(&good), &b, &eb));
    veil_onnx_bundle_release(&b);
    /* Every truncation is refused, never read past. */
    for (size_t n = 0; n < good.len; n++)
        ASSERT_ERR(veil_onnx_bundle_parse(veil_span_make(good.p, n), &b, &eb), VEIL_E_FORMAT);
    struct {
        size_t at;
        uint8_t byte;
        veil_err want;
        const char *msg;
    } flips[] = {
        {0, 'X', VEIL_E_FORMAT, "bad magic"},
        {8, 2, VEIL_E_UNSUPPORTED, "version 2"},
        {10, 1, VEIL_E_FORMAT, "reserved field"},
        {12, 0, VEIL_E_FORMAT, "0 files"},
        {18, '/', VEIL_E_FORMAT, "not a plain relative path"}, /* "/odel.onnx" */
        {28, 0x50, VEIL_E_FORMAT, "must start at"},            /* entry 0's offset */
    };
    for (size_t i = 0; i < sizeof(flips) / sizeof(*flips); i++) {
        struct veil_buf c;
        veil_buf_init(&c, 1u << 20);
        ASSERT_OK(veil_buf_append(&c, good.p, good.len));
        c.p[flips[i].at] = flips[i].byte;
        veil_err rc = veil_onnx_bundle_parse(veil_buf_span(&c), &b, &eb);
        ASSERT_EQ_I64(rc, flips[i].want);
        ASSERT_STR_CONTAINS(veil_errbuf_msg(&eb, rc), flips[i].msg);
        veil_buf_release(&c);
    }
    /* Trailing bytes. */
    ASSERT_OK(veil_buf_append(&good, "z", 1));
    ASSERT_ERR(veil_onnx_bundle_parse(veil_buf_span(&good), &b, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(veil_errbuf_msg(&eb, VEIL_E_FORMAT), "follow the last file");
    veil_buf_release(&good);
    /* The writer refuses what the reader would. */
    struct veil_buf h;
    veil_buf_init(&h, 1u << 20);
    uint64_t sizes[2] = {1, 1};
    ASSERT_ERR(veil_onnx_bundle_head((const char *[]){"m", "m"}, sizes, 2, &h, &eb),
               VEIL_E_INVALID);
    ASSERT_ERR(veil_onnx_bundle_head((const char *[]){"m", "../x"}, sizes, 2, &h, &eb),
               VEIL_E_INVALID);
    ASSERT_ERR(veil_onnx_bundle_head(NULL, sizes, 0, &h, &eb), VEIL_E_INVALID);
    uint64_t huge[2] = {1, VEIL_LIMIT_BUNDLE_BYTES};
    ASSERT_ERR(veil_onnx_bundle_head((const char *[]){"m", "x"}, huge, 2, &h, &eb), VEIL_E_LIMIT);
    ASSERT_EQ_U64(h.len, 0);
    veil_buf_release(&h);
    /* Duplicate names written by hand. */
    struct veil_buf dup;
    make_bundle((const char *[]){"m", "a"}, data, 2, &dup);
    dup.p[16 + 2 + 1 + 16 + 2] = 'm'; /* entry 1's name "a" -> "m" */
    ASSERT_ERR(veil_onnx_bundle_parse(veil_buf_span(&dup), &b, &eb), VEIL_E_FORMAT);
    ASSERT_STR_CONTAINS(veil_errbuf_msg(&eb, VEIL_E_FORMAT), "repeats the name");
    veil_buf_release(&dup);
}

RUN_TESTS()
