/*
 * Pure wire helpers: the gRPC length-prefixed message reader, the grpc-timeout grammar,
 * status names, and gzip in both directions with a hard cap on the inflated size (a small
 * compressed body cannot become an unbounded allocation).
 */
#include "veil/net.h"

#include <string.h>
#include <zlib.h>

veil_err veil_grpc_frame_read(struct veil_span *s, size_t max, bool *compressed,
                              struct veil_span *msg)
{
    struct veil_span t = *s;
    uint8_t flag = 0;
    uint32_t len = 0;
    struct veil_span body;
    veil_err rc = veil_span_get_u8(&t, &flag);
    if (rc != VEIL_OK)
        return rc;
    if (flag > 1)
        return VEIL_E_FORMAT;
    rc = veil_span_get_u32be(&t, &len);
    if (rc != VEIL_OK)
        return rc;
    if ((size_t)len > max)
        return VEIL_E_LIMIT;
    rc = veil_span_get_bytes(&t, len, &body);
    if (rc != VEIL_OK)
        return rc;
    *compressed = flag == 1;
    *msg = body;
    *s = t;
    return VEIL_OK;
}

veil_err veil_grpc_timeout_parse(struct veil_span s, uint64_t *ns)
{
    uint64_t v = 0;
    uint8_t c = 0;
    size_t digits = 0;
    /* gRPC's grammar: TimeoutValue (1 to 8 ASCII digits) followed by one unit letter. */
    if (s.len < 2 || s.len > 9)
        return VEIL_E_FORMAT;
    while (s.len > 1) {
        if (veil_span_get_u8(&s, &c) != VEIL_OK || c < '0' || c > '9')
            return VEIL_E_FORMAT;
        v = v * 10 + (uint64_t)(c - '0');
        digits++;
    }
    if (digits == 0 || veil_span_get_u8(&s, &c) != VEIL_OK)
        return VEIL_E_FORMAT;
    uint64_t mul;
    switch (c) {
    case 'H':
        mul = 3600ULL * 1000000000ULL;
        break;
    case 'M':
        mul = 60ULL * 1000000000ULL;
        break;
    case 'S':
        mul = 1000000000ULL;
        break;
    case 'm':
        mul = 1000000ULL;
        break;
    case 'u':
        mul = 1000ULL;
        break;
    case 'n':
        mul = 1ULL;
        break;
    default:
        return VEIL_E_FORMAT;
    }
    uint64_t out;
    if (__builtin_mul_overflow(v, mul, &out))
        out = UINT64_MAX;
    *ns = out;
    return VEIL_OK;
}

const char *veil_grpc_status_name(int status)
{
    static const char *const names[] = {"OK",
                                        "CANCELLED",
                                        "UNKNOWN",
                                        "INVALID_ARGUMENT",
                                        "DEADLINE_EXCEEDED",
                                        "NOT_FOUND",
                                        "ALREADY_EXISTS",
                                        "PERMISSION_DENIED",
                                        "RESOURCE_EXHAUSTED",
                                        "FAILED_PRECONDITION",
                                        "ABORTED",
                                        "OUT_OF_RANGE",
                                        "UNIMPLEMENTED",
                                        "INTERNAL",
                                        "UNAVAILABLE",
                                        "DATA_LOSS",
                                        "UNAUTHENTICATED"};
    if (status < 0 || (size_t)status >= sizeof(names) / sizeof(names[0]))
        return "UNKNOWN";
    return names[status];
}

veil_err veil_net_gunzip(struct veil_span in, size_t max, struct veil_buf *out,
                         struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    z_stream z;
    bool inited = false;
    veil_buf_reset(out);
    memset(&z, 0, sizeof(z));
    if (in.len == 0) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "truncated gzip stream");
        goto out;
    }
    /* 15 + 32: accept both gzip and zlib headers, detected automatically. */
    if (inflateInit2(&z, 15 + 32) != Z_OK) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "cannot start gzip decoder");
        goto out;
    }
    inited = true;
    size_t consumed = 0;
    for (;;) {
        size_t chunk_in = in.len - consumed;
        if (chunk_in > (1u << 30))
            chunk_in = 1u << 30;
        z.next_in = (Bytef *)(uintptr_t)(in.p + consumed);
        z.avail_in = (uInt)chunk_in;
        size_t room = max > out->len ? max - out->len : 0;
        size_t want = room < (256u << 10) ? room : (256u << 10);
        uint8_t spare = 0;
        if (want > 0) {
            if ((rc = veil_buf_reserve(out, want)) != VEIL_OK) {
                rc = veil_errf(eb, rc, "decompressed body larger than %zu bytes", max);
                goto out;
            }
            z.next_out = out->p + out->len;
            z.avail_out = (uInt)want;
        } else {
            /* At the cap: one probe byte tells a complete stream from an oversized one. */
            z.next_out = &spare;
            z.avail_out = 1;
            want = 1;
        }
        int zr = inflate(&z, Z_NO_FLUSH);
        size_t produced = want - z.avail_out;
        consumed += chunk_in - z.avail_in;
        if (room == 0 && produced > 0) {
            rc = veil_errf(eb, VEIL_E_LIMIT, "decompressed body larger than %zu bytes", max);
            goto out;
        }
        if (room > 0)
            out->len += produced;
        if (zr == Z_STREAM_END) {
            if (consumed != in.len) {
                rc = veil_errf(eb, VEIL_E_FORMAT, "trailing bytes after gzip stream");
                goto out;
            }
            break;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            rc = veil_errf(eb, VEIL_E_FORMAT, "corrupt gzip stream");
            goto out;
        }
        if (consumed == in.len && produced == 0) {
            rc = veil_errf(eb, VEIL_E_FORMAT, "truncated gzip stream");
            goto out;
        }
    }
    rc = VEIL_OK;
out:
    if (inited)
        inflateEnd(&z);
    if (rc != VEIL_OK)
        veil_buf_reset(out);
    return rc;
}

veil_err veil_net_gzip(struct veil_span in, size_t max, struct veil_buf *out)
{
    veil_err rc = VEIL_E_INTERNAL;
    z_stream z;
    bool inited = false;
    veil_buf_reset(out);
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    inited = true;
    if (in.len > (1u << 30)) {
        rc = VEIL_E_LIMIT;
        goto out;
    }
    size_t bound = deflateBound(&z, (uLong)in.len);
    if (bound > max) {
        bound = max;
    }
    rc = veil_buf_reserve(out, bound);
    if (rc != VEIL_OK)
        goto out;
    z.next_in = (Bytef *)(uintptr_t)in.p;
    z.avail_in = (uInt)in.len;
    z.next_out = out->p;
    z.avail_out = (uInt)bound;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
        rc = VEIL_E_LIMIT;
        goto out;
    }
    out->len = bound - z.avail_out;
    rc = VEIL_OK;
out:
    if (inited)
        deflateEnd(&z);
    return rc;
}
