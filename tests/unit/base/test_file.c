#include "harness.h"
#include "veil/base.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/veil-test-file-XXXXXX";

static size_t count_entries(void)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    if (d)
        closedir(d);
    return n;
}

TEST(atomic_write_and_read)
{
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof(path), "%s/out.bin", dir);
    ASSERT_OK(veil_file_write_atomic(path, veil_span_from_str("first"), 0600,
                                     VEIL_ATOMIC_NO_REPLACE, NULL));
    struct stat st;
    ASSERT_EQ_I64(stat(path, &st), 0);
    ASSERT_EQ_U64(st.st_mode & 0777, 0600);
    struct veil_errbuf eb = {{0}};
    ASSERT_ERR(veil_file_write_atomic(path, veil_span_from_str("second"), 0600,
                                      VEIL_ATOMIC_NO_REPLACE, &eb),
               VEIL_E_EXISTS);
    ASSERT_STR_CONTAINS(eb.msg, "refusing to overwrite");
    ASSERT_OK(veil_file_write_atomic(path, veil_span_from_str("second"), 0644, VEIL_ATOMIC_REPLACE,
                                     NULL));
    struct veil_buf b;
    veil_buf_init(&b, 100);
    ASSERT_OK(veil_file_read_all(path, 100, &b, NULL));
    ASSERT_EQ_U64(b.len, 6);
    ASSERT_MEM_EQ(b.p, "second", 6);
    veil_buf_release(&b);
    veil_buf_init(&b, 3);
    ASSERT_ERR(veil_file_read_all(path, 3, &b, &eb), VEIL_E_LIMIT);
    veil_buf_release(&b);
    ASSERT_EQ_U64(count_entries(), 1);
}

/* Sizes around the read loop's 64 KiB steps and a multi-MiB file (read into one allocation):
 * contents intact; a file exactly at the cap is read, one byte over it refused. */
TEST(read_all_sizes)
{
    static const size_t sizes[] = {1, 65535, 65536, 65537, (5u << 20) + 3};
    char path[256];
    snprintf(path, sizeof(path), "%s/sized.bin", dir);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        uint8_t *data = malloc(n);
        ASSERT_TRUE(data != NULL);
        for (size_t i = 0; i < n; i++)
            data[i] = (uint8_t)(i * 131 + k);
        ASSERT_OK(
            veil_file_write_atomic(path, veil_span_make(data, n), 0600, VEIL_ATOMIC_REPLACE, NULL));
        struct veil_buf b;
        veil_buf_init(&b, 64u << 20);
        ASSERT_OK(veil_file_read_all(path, 64u << 20, &b, NULL));
        ASSERT_EQ_U64(b.len, n);
        ASSERT_MEM_EQ(b.p, data, n);
        veil_buf_release(&b);
        veil_buf_init(&b, n);
        ASSERT_OK(veil_file_read_all(path, n, &b, NULL));
        ASSERT_EQ_U64(b.len, n);
        veil_buf_release(&b);
        struct veil_errbuf eb = {{0}};
        veil_buf_init(&b, n);
        ASSERT_ERR(veil_file_read_all(path, n - 1, &b, &eb), VEIL_E_LIMIT);
        veil_buf_release(&b);
        free(data);
    }
    ASSERT_EQ_I64(unlink(path), 0);
}

TEST(abort_leaves_nothing)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/aborted.bin", dir);
    struct veil_atomic_file af;
    ASSERT_OK(veil_atomic_open(&af, path, 0600, 0, NULL));
    ASSERT_OK(veil_atomic_write(&af, "partial", 7, NULL));
    veil_atomic_abort(&af);
    ASSERT_TRUE(access(path, F_OK) != 0);
    ASSERT_EQ_U64(count_entries(), 1);
    veil_atomic_abort(&af);
}

TEST(missing_paths)
{
    struct veil_buf b;
    veil_buf_init(&b, 100);
    struct veil_errbuf eb = {{0}};
    ASSERT_ERR(veil_file_read_all("/nonexistent/x", 100, &b, &eb), VEIL_E_NOTFOUND);
    ASSERT_STR_CONTAINS(eb.msg, "/nonexistent/x");
    struct veil_atomic_file af;
    ASSERT_ERR(veil_atomic_open(&af, "/nonexistent/dir/x", 0600, 0, &eb), VEIL_E_NOTFOUND);
    char path[256];
    snprintf(path, sizeof(path), "%s/out.bin", dir);
    unlink(path);
    rmdir(dir);
}

RUN_TESTS()
