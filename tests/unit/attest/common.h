/*
 * Helpers shared by the attest tests: locating the shared attestation corpus (SKIP when it is
 * absent), loading a case's evidence, collateral and roots, and its fixed `now`.
 */
#ifndef VEIL_TEST_ATTEST_COMMON_H
#define VEIL_TEST_ATTEST_COMMON_H

#include "attest_int.h"
#include "veil/attest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The corpus directory, or NULL when it is not there. */
__attribute__((unused)) static const char *corpus_dir(void)
{
    static char path[4096];
    const char *shared = getenv("VEIL_SHARED");
    struct stat st;
    snprintf(path, sizeof(path), "%s/testdata/attestation", shared != NULL ? shared : "../shared");
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? path : NULL;
}

#define NEED_CORPUS(dir)                                                                           \
    const char *dir = corpus_dir();                                                                \
    if (dir == NULL)                                                                               \
    SKIP("attestation corpus not found (set VEIL_SHARED to the shared folder)")

/* Reads corpus/<case>/<file> into b (initialised here). */
__attribute__((unused)) static veil_err read_case_file(const char *dir, const char *c,
                                                       const char *file, struct veil_buf *b)
{
    char path[4096];
    veil_buf_init(b, 1u << 20);
    if (snprintf(path, sizeof(path), "%s/%s/%s", dir, c, file) >= (int)sizeof(path))
        return VEIL_E_LIMIT;
    return veil_file_read_all(path, b->max, b, NULL);
}

__attribute__((unused)) static struct veil_attest_roots *load_roots(const char *dir)
{
    char path[4096];
    struct veil_attest_roots *r = NULL;
    if (snprintf(path, sizeof(path), "%s/roots", dir) >= (int)sizeof(path) ||
        veil_attest_roots_new(&r) != VEIL_OK)
        return NULL;
    if (veil_attest_roots_load_dir(r, path, NULL) != VEIL_OK) {
        veil_attest_roots_free(r);
        return NULL;
    }
    return r;
}

/* Parses a case's expected.json "now". */
__attribute__((unused)) static int64_t case_now(const char *dir, const char *c)
{
    struct veil_buf b;
    struct veil_arena a;
    struct veil_json *doc = NULL;
    int64_t now = -1;
    veil_arena_init(&a, 4096, 1u << 20);
    if (read_case_file(dir, c, "expected.json", &b) == VEIL_OK &&
        veil_json_parse(veil_buf_span(&b), &a, &doc, NULL) == VEIL_OK) {
        const struct veil_json *n = veil_json_get(doc, "now");
        if (n != NULL && n->type == VEIL_JSON_STRING &&
            veil_time_parse_rfc3339(veil_span_make(n->str, n->str_len), &now) != VEIL_OK)
            now = -1;
    }
    veil_buf_release(&b);
    veil_arena_release(&a);
    return now;
}

__attribute__((unused)) static int64_t t3339(const char *s)
{
    int64_t t = -1;
    if (veil_time_parse_rfc3339(veil_span_from_str(s), &t) != VEIL_OK)
        return -1;
    return t;
}

/*
 * Verifies corpus/<case>/<file> with the case's collateral and roots at now (< 0: the case's
 * own now). Returns the verifier's rc; claims in *out.
 */
__attribute__((unused)) static veil_err verify_case_file(const char *dir, const char *c,
                                                         const char *file, int64_t now,
                                                         bool ignore_crl,
                                                         struct veil_attest_claims *out)
{
    struct veil_buf ev;
    struct veil_attest_collateral_files col;
    char cdir[4096];
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_attest_roots *roots = load_roots(dir);
    snprintf(cdir, sizeof(cdir), "%s/%s", dir, c);
    memset(out, 0, sizeof(*out));
    if (roots == NULL)
        return VEIL_E_NOTFOUND;
    if ((rc = read_case_file(dir, c, file, &ev)) != VEIL_OK) {
        veil_buf_release(&ev);
        veil_attest_roots_free(roots);
        return rc;
    }
    if ((rc = veil_attest_collateral_load_dir(&col, cdir, NULL)) == VEIL_OK) {
        struct veil_attest_verify_opts opts = {now >= 0 ? now : case_now(dir, c), ignore_crl};
        rc = veil_attest_verify(veil_buf_span(&ev), &col.col, roots, &opts, out);
    }
    veil_attest_collateral_files_release(&col);
    veil_buf_release(&ev);
    veil_attest_roots_free(roots);
    return rc;
}

#endif
