/*
 * Fuzzes the key broker's HTTP/1.1 framing: the head parser on the whole input, as a request
 * and as a response, then the message reader over the input as a stream, cut into reads of a
 * size taken from the first byte (the byte stays in the stream), so bodies up to the 1 MiB cap
 * make the reader grow its buffer after the head is parsed. Views the reader hands out must
 * still match a fresh parse of the buffer it returns (issue 18).
 */
#include "kbs/kbs_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct stream {
    const uint8_t *p;
    size_t len, chunk;
};

static size_t stream_read(void *ctx, uint8_t *p, size_t n)
{
    struct stream *s = ctx;
    if (n > s->chunk)
        n = s->chunk;
    if (n > s->len)
        n = s->len;
    memcpy(p, s->p, n);
    s->p += n;
    s->len -= n;
    return n;
}

static bool same_view(struct veil_span a, struct veil_span b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t chunks[8] = {1, 7, 100, 1000, 4096, 9000, 65536, SIZE_MAX};
    struct veil_kbs_http_head h;
    for (int req = 0; req < 2; req++) {
        if (veil_kbs_http_parse(veil_span_make(data, size), req != 0, &h) == VEIL_OK) {
            if (h.head_len > size || h.content_length > VEIL_LIMIT_KBS_BODY)
                abort();
            if (req && (h.path.len == 0 || h.path.p[0] != '/'))
                abort();
        }
    }
    if (size == 0)
        return 0;
    struct veil_buf buf;
    veil_buf_init(&buf, VEIL_LIMIT_KBS_HEAD + VEIL_LIMIT_KBS_BODY);
    for (int req = 0; req < 2; req++) {
        struct stream s = {data, size, chunks[data[0] & 7]};
        struct veil_span body;
        if (veil__kbs_read_message_from(stream_read, &s, req != 0, &buf, &h, &body) != VEIL_OK) {
            if (h.path.len != 0 || h.method.len != 0 || h.head_len != 0)
                abort(); /* a failed read leaves no views behind */
            continue;
        }
        struct veil_kbs_http_head again;
        if (veil_kbs_http_parse(veil_buf_span(&buf), req != 0, &again) != VEIL_OK ||
            !same_view(h.method, again.method) || !same_view(h.path, again.path) ||
            h.head_len != again.head_len || body.len != h.content_length ||
            buf.len < h.head_len + body.len || (body.len > 0 && body.p != buf.p + h.head_len) ||
            (h.path.len > 0 && (h.path.p < buf.p || h.path.p + h.path.len > buf.p + buf.len)))
            abort();
    }
    veil_buf_release(&buf);
    return 0;
}
