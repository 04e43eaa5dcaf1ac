/*
 * Replays a fuzz target's corpus as an ordinary test: every file under the directories given
 * on the command line is passed once to LLVMFuzzerTestOneInput. A crash or sanitizer report
 * fails the test; an empty corpus fails too, so a corpus cannot silently disappear.
 */
#include "veil/base.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    size_t count = 0;
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (d == NULL) {
            fprintf(stderr, "replay: cannot open corpus %s\n", argv[i]);
            return 1;
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
            struct veil_buf b;
            veil_buf_init(&b, 64u << 20);
            if (veil_file_read_all(path, b.max, &b, NULL) != VEIL_OK) {
                fprintf(stderr, "replay: cannot read %s\n", path);
                closedir(d);
                return 1;
            }
            LLVMFuzzerTestOneInput(b.p != NULL ? b.p : (const uint8_t *)"", b.len);
            veil_buf_release(&b);
            count++;
        }
        closedir(d);
    }
    if (count == 0) {
        fprintf(stderr, "replay: empty corpus\n");
        return 1;
    }
    printf("replayed %zu inputs\n", count);
    return 0;
}
