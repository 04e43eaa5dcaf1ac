/* Fuzzes the KServe v2 REST side: the inference body parser (JSON and binary tensor data, the
 * first input byte choosing Inference-Header-Content-Length: none, the offset of the first NUL
 * (which is then dropped), or a number), binding to a
 * two-input signature, the response writer on what was bound, and the /v2 URL grammar. */
#include "serve/serve_int.h"

#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void sig_init(struct sv_sig *s)
{
    static char *const names[] = {(char *)"a", (char *)"b"};
    memset(s, 0, sizeof(*s));
    s->n_in = s->n_out = 2;
    for (size_t i = 0; i < 2; i++) {
        s->in[i].name = s->out[i].name = names[i];
        s->in[i].dt = s->out[i].dt = i == 0 ? VEIL_DT_FLOAT : VEIL_DT_INT64;
        s->in[i].tf_dtype = s->out[i].tf_dtype = veil__serve_tf_dtype(s->in[i].dt);
        s->in[i].rank = s->out[i].rank = 2;
        s->in[i].dims[0] = s->out[i].dims[0] = -1;
        s->in[i].dims[1] = s->out[i].dims[1] = 2;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_arena a;
    struct sv_status st;
    struct sv_sig sig;
    struct kv2_request *rq = veil_calloc(1, sizeof(*rq));
    struct veil_span s = veil_span_make(data, size);
    uint8_t mode = 0;
    char hl[32];
    const char *header = NULL;
    uint8_t *body = NULL;
    if (rq == NULL || veil_span_get_u8(&s, &mode) != VEIL_OK) {
        veil_free(rq);
        return 0;
    }
    /* mode 0: JSON only; 1: the header is the JSON's length up to the first NUL; else a number. */
    if (mode == 1) {
        /* JSON, a NUL, the binary part: the body is both without the NUL. */
        const uint8_t *nul = memchr(s.p, 0, s.len);
        size_t jl = nul != NULL ? (size_t)(nul - s.p) : s.len;
        snprintf(hl, sizeof(hl), "%zu", jl);
        header = hl;
        body = veil_malloc(s.len + 1);
        if (body == NULL) {
            veil_free(rq);
            return 0;
        }
        memcpy(body, s.p, jl);
        if (nul != NULL)
            memcpy(body + jl, nul + 1, s.len - jl - 1);
        s = veil_span_make(body, nul != NULL ? s.len - 1 : s.len);
    } else if (mode > 1) {
        snprintf(hl, sizeof(hl), "%u", (unsigned)mode * 7u);
        header = hl;
    }
    sig_init(&sig);
    veil_arena_init(&a, 4096, 64u << 20);
    if (veil__serve_kv2_parse_rest(s, header, &a, rq, &st)) {
        for (size_t i = 0; i < rq->n_in; i++) {
            uint64_t numel = 0;
            if (rq->in[i].t.dtype != VEIL_DT_STRING &&
                (veil_tensor_numel(rq->in[i].t.dims, rq->in[i].t.rank, &numel) != VEIL_OK ||
                 numel * veil_dtype_size(rq->in[i].t.dtype) != rq->in[i].t.nbytes))
                __builtin_trap();
        }
        struct veil_tensor in[SV_MAX_IO];
        struct kv2_plan plan;
        if (veil__serve_kv2_bind(rq, &sig, in, &plan, &st)) {
            /* Echo the inputs as outputs: same types and shapes the signature declares. */
            struct veil_buf b;
            size_t jl = 0;
            veil_buf_init(&b, 64u << 20);
            (void)veil__serve_kv2_encode_rest(rq, "m", 1, &sig, in, &plan, &b, &jl, &st);
            if (jl > b.len)
                __builtin_trap();
            veil_buf_release(&b);
        }
    }
    struct kv2_route rt;
    (void)veil__serve_kv2_route_parse(veil_span_make(data, size), &rt);
    veil_arena_release(&a);
    veil_free(body);
    veil_free(rq);
    return 0;
}
