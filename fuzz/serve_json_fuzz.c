/* Fuzzes the REST side: the JSON parser, predict decoding (row and columnar forms) against a
 * one-input and a two-input signature, the response writer on what was decoded, and the URL
 * grammar on the same bytes. */
#include "serve/serve_int.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void sig_init(struct sv_sig *s, size_t n, enum veil_dtype dt)
{
    static char *const names[] = {(char *)"a", (char *)"b"};
    memset(s, 0, sizeof(*s));
    s->n_in = n;
    for (size_t i = 0; i < n; i++) {
        s->in[i].name = names[i];
        s->in[i].dt = dt;
        s->in[i].tf_dtype = veil__serve_tf_dtype(dt);
        s->in[i].rank = 2;
        s->in[i].dims[0] = -1;
        s->in[i].dims[1] = 2;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_arena a;
    struct json_val *root = NULL;
    struct sv_status st;
    struct sv_sig sigs[3];
    sig_init(&sigs[0], 1, VEIL_DT_FLOAT);
    sig_init(&sigs[1], 2, VEIL_DT_INT64);
    sig_init(&sigs[2], 1, VEIL_DT_BOOL);
    veil_arena_init(&a, 4096, 64u << 20);
    char name[64];
    if (veil__serve_json_parse(veil_span_make(data, size), &a, &root, &st) &&
        veil__serve_rest_signature_name(root, name, sizeof(name), &st)) {
        for (size_t k = 0; k < 3; k++) {
            struct veil_tensor t[SV_MAX_IO];
            bool row = false;
            if (!veil__serve_rest_decode_predict(root, &sigs[k], &a, t, &row, &st))
                continue;
            for (size_t i = 0; i < sigs[k].n_in; i++) {
                uint64_t numel = 0;
                if (veil_tensor_numel(t[i].dims, t[i].rank, &numel) != VEIL_OK ||
                    numel * veil_dtype_size(t[i].dtype) != t[i].nbytes)
                    __builtin_trap();
            }
            const char *names[2] = {"a", "b"};
            struct veil_buf b;
            veil_buf_init(&b, 64u << 20);
            (void)veil__serve_rest_encode_predict(t, names, sigs[k].n_in, row, &b, &st);
            veil_buf_release(&b);
        }
    }
    struct sv_route rt;
    (void)veil__serve_rest_route_parse("GET", veil_span_make(data, size), &rt);
    (void)veil__serve_rest_route_parse("POST", veil_span_make(data, size), &rt);
    veil_arena_release(&a);
    return 0;
}
