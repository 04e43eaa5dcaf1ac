/*
 * End-to-end: runs `veil evidence verify --json` on every case folder of the shared corpus and
 * compares the printed verdict, reason, TCB status, advisory IDs and debug flag with the case's
 * expected.json, and the exit status with the verdict. The binary comes from VEIL_BIN (set by
 * CMake); the test is skipped when the binary or the corpus is absent.
 */
#include "common.h"

#include <dirent.h>
#include <openssl/pem.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

struct run {
    int status;
    struct veil_arena arena;
    struct veil_json *out;
};

/* Runs the binary with args; parses stdout as one JSON object. */
static bool run_verify(const char *args, struct run *r)
{
    char cmd[8192];
    struct veil_buf b;
    const char *bin = getenv("VEIL_BIN");
    snprintf(cmd, sizeof(cmd), "%s evidence verify --json %s 2>/dev/null", bin, args);
    veil_arena_init(&r->arena, 4096, 1u << 20);
    veil_buf_init(&b, 1u << 20);
    r->out = NULL;
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return false;
    char chunk[4096];
    size_t n;
    bool ok = true;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ok = ok && veil_buf_append(&b, chunk, n) == VEIL_OK;
    int st = pclose(f);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    ok = ok && veil_json_parse(veil_buf_span(&b), &r->arena, &r->out, NULL) == VEIL_OK;
    if (!ok)
        fprintf(stderr, "  output of %s:\n%.*s\n", cmd, (int)b.len, (const char *)b.p);
    veil_buf_release(&b);
    return ok;
}

static const char *jstr(const struct veil_json *o, const char *k)
{
    const struct veil_json *v = veil_json_get(o, k);
    return v != NULL && v->type == VEIL_JSON_STRING ? v->str : NULL;
}

/* Compares the printed advisory IDs with an expected JSON array. */
static bool same_advisories(const struct veil_json *got, const struct veil_json *want)
{
    if (got == NULL || want == NULL || got->type != VEIL_JSON_ARRAY || got->n != want->n)
        return false;
    for (size_t i = 0; i < got->n; i++)
        if (strcmp(got->items[i]->str, want->items[i]->str) != 0)
            return false;
    return true;
}

/* The reason Veil must give for each negative case of the corpus. */
static const char *expected_reason(const char *c)
{
    static const char *const map[][2] = {
        {"neg-sgx-flipped-body", "quote_signature"},
        {"neg-sgx-truncated", "malformed"},
        {"neg-sgx-foreign-pck-chain", "tcb_info_mismatch"},
        {"neg-tdx-flipped-rtmr0", "quote_signature"},
        {"neg-snp-flipped-measurement", "report_signature"},
        {"sgx-dcap-v3-mobilecoin", "crl_expired"},
        {"tdx-v4-go-tdx-guest", "tcb_not_supported"},
        {"tdx-v5-dcap-qvl-tcb-not-supported", "tcb_not_supported"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i][0], c) == 0)
            return map[i][1];
    return NULL;
}

static size_t cases_checked;

/* Checks one evidence file of one case against "expected" (an object of expected.json). */
static void check_one(const char *dir, const char *c, const char *file, const char *now,
                      const struct veil_json *exp, const char *extra)
{
    char args[4096];
    struct run r;
    snprintf(args, sizeof(args),
             "--evidence %s/%s/%s --collateral %s/%s --roots %s/roots --now %s %s", dir, c, file,
             dir, c, dir, now, extra);
    if (!run_verify(args, &r)) {
        veil_arena_release(&r.arena);
        HFAIL("%s/%s: no JSON output", c, file);
    }
    const char *want = jstr(exp, "result");
    if (want == NULL)
        want = jstr(exp, "crypto"); /* crypto-only expectation (no policy given) */
    const char *verdict = jstr(r.out, "verdict"), *reason = jstr(r.out, "reason");
    char got_v[16], got_r[64], got_tcb[64];
    snprintf(got_v, sizeof(got_v), "%s", verdict ? verdict : "?");
    snprintf(got_r, sizeof(got_r), "%s", reason ? reason : "?");
    snprintf(got_tcb, sizeof(got_tcb), "%s",
             jstr(r.out, "tcb_status") ? jstr(r.out, "tcb_status") : "?");
    bool adv_ok =
        veil_json_get(exp, "advisory_ids") == NULL ||
        same_advisories(veil_json_get(r.out, "advisory_ids"), veil_json_get(exp, "advisory_ids"));
    const struct veil_json *dbg_want = veil_json_get(exp, "debug");
    if (dbg_want == NULL)
        dbg_want = veil_json_get(exp, "debug_allowed");
    const struct veil_json *dbg_got = veil_json_get(r.out, "debug");
    bool dbg_ok = strcmp(got_v, "ok") != 0 || dbg_want == NULL ||
                  (dbg_got != NULL && dbg_got->type == VEIL_JSON_BOOL && dbg_got->b == dbg_want->b);
    const char *tcb_want = jstr(exp, "tcb_status");
    int status = r.status;
    veil_arena_release(&r.arena);
    fprintf(stderr, "  %-36s %-26s verdict %-6s reason %s\n", c, file, got_v, got_r);
    ASSERT_TRUE(want != NULL);
    ASSERT_STR_EQ(got_v, want);
    ASSERT_EQ_I64(status, strcmp(want, "ok") == 0 ? 0 : 1);
    if (tcb_want != NULL)
        ASSERT_STR_EQ(got_tcb, tcb_want);
    ASSERT_TRUE(adv_ok);
    ASSERT_TRUE(dbg_ok);
    if (strcmp(want, "reject") == 0 && extra[0] == '\0' && expected_reason(c) != NULL)
        ASSERT_STR_EQ(got_r, expected_reason(c));
    cases_checked++;
}

static void check_case(const char *dir, const char *c)
{
    struct veil_buf b;
    struct veil_arena a;
    struct veil_json *doc = NULL;
    veil_arena_init(&a, 4096, 1u << 20);
    if (read_case_file(dir, c, "expected.json", &b) != VEIL_OK ||
        veil_json_parse(veil_buf_span(&b), &a, &doc, NULL) != VEIL_OK) {
        veil_buf_release(&b);
        veil_arena_release(&a);
        HFAIL("%s: cannot read expected.json", c);
    }
    const char *now = jstr(doc, "now"), *ev = jstr(doc, "evidence");
    const struct veil_json *exp = veil_json_get(doc, "expected");
    const struct veil_json *files = veil_json_get(exp, "files");
    if (now == NULL || ev == NULL || exp == NULL) {
        veil_buf_release(&b);
        veil_arena_release(&a);
        HFAIL("%s: expected.json lacks now/evidence/expected", c);
    }
    if (files != NULL) {
        for (size_t i = 0; i < files->n && !harness_failed_now; i++)
            check_one(dir, c, files->items[i]->str, now, exp, "");
    } else {
        check_one(dir, c, ev, now, exp, "");
    }
    /* Variants recorded in expected.json. */
    const struct veil_json *relaxed = veil_json_get(exp, "if_crl_freshness_not_enforced");
    if (relaxed != NULL && !harness_failed_now)
        check_one(dir, c, ev, now, relaxed, "--ignore-crl-freshness");
    const struct veil_json *also = veil_json_get(exp, "also");
    for (size_t i = 0; also != NULL && i < also->n && !harness_failed_now; i++)
        check_one(dir, c, ev, jstr(also->items[i], "now"), also->items[i], "");
    veil_buf_release(&b);
    veil_arena_release(&a);
}

TEST(every_corpus_case)
{
    NEED_CORPUS(dir);
    if (getenv("VEIL_BIN") == NULL || access(getenv("VEIL_BIN"), X_OK) != 0)
        SKIP("VEIL_BIN does not name the veil binary");
    DIR *d = opendir(dir);
    ASSERT_TRUE(d != NULL);
    struct dirent *e;
    char names[64][256];
    size_t n = 0;
    while ((e = readdir(d)) != NULL && n < 64) {
        char p[4096];
        struct stat st;
        if (snprintf(p, sizeof(p), "%s/%s/expected.json", dir, e->d_name) < (int)sizeof(p) &&
            stat(p, &st) == 0)
            snprintf(names[n++], sizeof(names[0]), "%s", e->d_name);
    }
    closedir(d);
    ASSERT_TRUE(n >= 14);
    for (size_t i = 0; i < n; i++) {
        check_case(dir, names[i]);
        if (harness_failed_now)
            return;
    }
    ASSERT_TRUE(cases_checked >= 18);
}

/* A production policy refuses the go-sev-guest report, whose guest policy allows debugging. */
TEST(snp_debug_refused_by_policy)
{
    NEED_CORPUS(dir);
    if (getenv("VEIL_BIN") == NULL || access(getenv("VEIL_BIN"), X_OK) != 0)
        SKIP("VEIL_BIN does not name the veil binary");
    char pol[] = "/tmp/veil-attest-policy-XXXXXX";
    int fd = mkstemp(pol);
    ASSERT_TRUE(fd >= 0);
    const char *text =
        "{\"version\":1,\"workloads\":[{\"name\":\"gosev\",\"tee\":\"snp\",\"measurement\":"
        "[\"b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a6"
        "08eb0cf2e4872b01\"],\"min_tcb\":{},\"keys\":[\"k1\"]}]}";
    ASSERT_TRUE(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    char args[5 * 4096];
    struct run r;
    const char *c = "snp-milan-vcek-go-sev-guest";
    if (snprintf(args, sizeof(args),
                 "--evidence %s/%s/report.bin --collateral %s/%s --roots %s/roots "
                 "--now 2025-06-01T00:00:00Z --policy %s",
                 dir, c, dir, c, dir, pol) >= (int)sizeof(args))
        HFAIL("paths too long");
    bool ok = run_verify(args, &r);
    unlink(pol);
    const char *v = ok ? jstr(r.out, "verdict") : NULL;
    const char *why = ok ? jstr(veil_json_get(r.out, "policy"), "reason") : NULL;
    char vs[16] = "", ws[256] = "";
    snprintf(vs, sizeof(vs), "%s", v ? v : "");
    snprintf(ws, sizeof(ws), "%s", why ? why : "");
    int status = r.status;
    veil_arena_release(&r.arena);
    ASSERT_TRUE(ok);
    ASSERT_STR_EQ(vs, "reject");
    ASSERT_STR_CONTAINS(ws, "debug");
    ASSERT_EQ_I64(status, 1);
}

/* An RA-TLS certificate in PEM is accepted as evidence: binding checked, then the evidence. */
TEST(ratls_certificate_through_cli)
{
    if (getenv("VEIL_BIN") == NULL || access(getenv("VEIL_BIN"), X_OK) != 0)
        SKIP("VEIL_BIN does not name the veil binary");
    char dir[] = "/tmp/veil-ratls-cli-XXXXXX", path[4200], args[4096];
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    struct veil_buf priv, pub;
    struct veil_attest_provider *p = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    uint8_t m[32] = {7};
    veil_buf_init_secret(&priv, 4096);
    veil_buf_init(&pub, 4096);
    bool ok =
        veil_attest_sim_keygen(&priv, &pub, NULL) == VEIL_OK &&
        veil_attest_provider_new_sim(veil_buf_span(&priv), m, 1, &p, NULL) == VEIL_OK &&
        veil_attest_ratls_create(p, 3600, veil_span_make(NULL, 0), &key, &cert, NULL) == VEIL_OK;
    snprintf(path, sizeof(path), "%s/sim_test.pub.pem", dir);
    ok = ok && veil_file_write_atomic(path, veil_buf_span(&pub), 0644, VEIL_ATOMIC_REPLACE, NULL) ==
                   VEIL_OK;
    snprintf(path, sizeof(path), "%s/cert.pem", dir);
    FILE *f = ok ? fopen(path, "w") : NULL;
    ok = f != NULL && PEM_write_X509(f, cert) == 1;
    if (f != NULL)
        fclose(f);
    struct run r = {0};
    char verdict[16] = "", tee[16] = "";
    if (ok) {
        snprintf(args, sizeof(args), "--evidence %s/cert.pem --collateral %s --roots %s", dir, dir,
                 dir);
        ok = run_verify(args, &r);
        if (ok) {
            snprintf(verdict, sizeof(verdict), "%s",
                     jstr(r.out, "verdict") ? jstr(r.out, "verdict") : "");
            snprintf(tee, sizeof(tee), "%s", jstr(r.out, "tee") ? jstr(r.out, "tee") : "");
        }
        veil_arena_release(&r.arena);
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    veil_attest_provider_free(p);
    veil_buf_release(&priv);
    veil_buf_release(&pub);
    snprintf(path, sizeof(path), "rm -rf '%s'", dir);
    if (system(path) != 0)
        fprintf(stderr, "  cannot remove %s\n", dir);
    ASSERT_TRUE(ok);
    ASSERT_STR_EQ(verdict, "ok");
    ASSERT_STR_EQ(tee, "sim");
    ASSERT_EQ_I64(r.status, 0);
}

RUN_TESTS()
