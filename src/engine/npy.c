/*
 * NumPy .npy files (format versions 1.0 to 3.0) for tensors: the input and output format of
 * `veil run` and of the engine's tests. The parser reads untrusted bytes through spans, accepts
 * only little-endian C-order arrays of the engine's dtypes, checks the shape's byte count
 * against the data exactly, and returns a view (no copy). The writer emits version 1.0 with the
 * header padded so the data starts 64-byte aligned.
 */
#include "veil/engine.h"

#include <stdio.h>
#include <string.h>

#define NPY_MAX_HEADER 65536u

static const struct {
    const char *descr;
    enum veil_dtype dt;
} descrs[] = {
    {"<f4", VEIL_DT_FLOAT},  {"<f8", VEIL_DT_DOUBLE}, {"<i8", VEIL_DT_INT64},
    {"<i4", VEIL_DT_INT32},  {"<i2", VEIL_DT_INT16},  {"|i1", VEIL_DT_INT8},
    {"<u8", VEIL_DT_UINT64}, {"<u4", VEIL_DT_UINT32}, {"<u2", VEIL_DT_UINT16},
    {"|u1", VEIL_DT_UINT8},  {"|b1", VEIL_DT_BOOL},   {"<f2", VEIL_DT_FLOAT16},
};

/* Finds key (with its quotes and colon) in the header and returns what follows, trimmed. */
static bool find_key(struct veil_span hdr, const char *key, struct veil_span *rest)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl <= hdr.len; i++) {
        if (memcmp(hdr.p + i, key, kl) != 0)
            continue;
        struct veil_span r = veil_span_make(hdr.p + i + kl, hdr.len - i - kl);
        r = veil_span_trim(r);
        if (r.len == 0 || r.p[0] != ':')
            continue;
        *rest = veil_span_trim(veil_span_make(r.p + 1, r.len - 1));
        return true;
    }
    return false;
}

veil_err veil_npy_parse(struct veil_span bytes, struct veil_tensor *out, struct veil_errbuf *eb)
{
    struct veil_span s = bytes, magic, hdr, r;
    uint8_t major, minor;
    memset(out, 0, sizeof(*out));
    if (veil_span_get_bytes(&s, 6, &magic) != VEIL_OK || memcmp(magic.p, "\x93NUMPY", 6) != 0 ||
        veil_span_get_u8(&s, &major) != VEIL_OK || veil_span_get_u8(&s, &minor) != VEIL_OK)
        return veil_errf(eb, VEIL_E_FORMAT, "not a .npy file (bad magic)");
    uint32_t hlen;
    if (major == 1) {
        uint16_t h16;
        if (veil_span_get_u16le(&s, &h16) != VEIL_OK)
            return veil_errf(eb, VEIL_E_FORMAT, ".npy header truncated");
        hlen = h16;
    } else if (major == 2 || major == 3) {
        if (veil_span_get_u32le(&s, &hlen) != VEIL_OK)
            return veil_errf(eb, VEIL_E_FORMAT, ".npy header truncated");
    } else {
        return veil_errf(eb, VEIL_E_UNSUPPORTED, ".npy format version %u", (unsigned)major);
    }
    if (hlen > NPY_MAX_HEADER)
        return veil_errf(eb, VEIL_E_LIMIT, ".npy header of %u bytes is too long", hlen);
    if (veil_span_get_bytes(&s, hlen, &hdr) != VEIL_OK)
        return veil_errf(eb, VEIL_E_FORMAT, ".npy header truncated");
    if (!find_key(hdr, "'descr'", &r) || r.len < 5 || r.p[0] != '\'')
        return veil_errf(eb, VEIL_E_FORMAT, ".npy header has no descr");
    enum veil_dtype dt = VEIL_DT_UNDEFINED;
    for (size_t i = 0; i < sizeof(descrs) / sizeof(descrs[0]); i++)
        if (memcmp(r.p + 1, descrs[i].descr, 3) == 0 && r.p[4] == '\'')
            dt = descrs[i].dt;
    if (dt == VEIL_DT_UNDEFINED)
        return veil_errf(eb, VEIL_E_UNSUPPORTED,
                         ".npy element type is not supported (use "
                         "little-endian float16/32/64, int8-64, uint8-64 or bool)");
    if (!find_key(hdr, "'fortran_order'", &r) || !veil_span_starts_with(r, "False"))
        return veil_errf(eb, VEIL_E_UNSUPPORTED, ".npy array must be in C order");
    if (!find_key(hdr, "'shape'", &r) || r.len == 0 || r.p[0] != '(')
        return veil_errf(eb, VEIL_E_FORMAT, ".npy header has no shape");
    size_t i = 1, rank = 0;
    for (;;) {
        while (i < r.len && (r.p[i] == ' ' || r.p[i] == ','))
            i++;
        if (i >= r.len)
            return veil_errf(eb, VEIL_E_FORMAT, ".npy shape is not closed");
        if (r.p[i] == ')')
            break;
        if (r.p[i] < '0' || r.p[i] > '9')
            return veil_errf(eb, VEIL_E_FORMAT, ".npy shape has a bad dimension");
        int64_t v = 0;
        while (i < r.len && r.p[i] >= '0' && r.p[i] <= '9') {
            if (__builtin_mul_overflow(v, 10, &v) ||
                __builtin_add_overflow(v, (int64_t)(r.p[i] - '0'), &v))
                return veil_errf(eb, VEIL_E_LIMIT, ".npy dimension overflows");
            i++;
        }
        if (rank == VEIL_LIMIT_TENSOR_RANK)
            return veil_errf(eb, VEIL_E_LIMIT, ".npy rank above %d", VEIL_LIMIT_TENSOR_RANK);
        out->dims[rank++] = v;
    }
    uint64_t numel, nbytes;
    if (veil_tensor_numel(out->dims, rank, &numel) != VEIL_OK ||
        __builtin_mul_overflow(numel, (uint64_t)veil_dtype_size(dt), &nbytes))
        return veil_errf(eb, VEIL_E_LIMIT, ".npy array is too large");
    if (nbytes != s.len)
        return veil_errf(eb, VEIL_E_FORMAT, ".npy data has %zu bytes, its shape needs %llu", s.len,
                         (unsigned long long)nbytes);
    out->dtype = dt;
    out->rank = rank;
    out->data = (void *)(uintptr_t)s.p;
    out->nbytes = (size_t)nbytes;
    return VEIL_OK;
}

veil_err veil_npy_write(const struct veil_tensor *t, struct veil_buf *out)
{
    const char *descr = NULL;
    for (size_t i = 0; i < sizeof(descrs) / sizeof(descrs[0]); i++)
        if (descrs[i].dt == t->dtype)
            descr = descrs[i].descr;
    if (descr == NULL || t->rank > VEIL_LIMIT_TENSOR_RANK)
        return VEIL_E_INVALID;
    char hdr[512];
    int n = snprintf(hdr, sizeof(hdr), "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (size_t i = 0; i < t->rank; i++)
        n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "%lld%s", (long long)t->dims[i],
                      t->rank == 1 ? "," : (i + 1 < t->rank ? ", " : ""));
    n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "), }");
    /* Pad with spaces and end with a newline so magic + header is a multiple of 64. */
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    veil_err rc;
    if ((rc = veil_buf_append(out, "\x93NUMPY\x01\x00", 8)) != VEIL_OK)
        return rc;
    uint16_t hl = (uint16_t)((size_t)n + pad + 1);
    uint8_t le[2] = {(uint8_t)(hl & 0xff), (uint8_t)(hl >> 8)};
    if ((rc = veil_buf_append(out, le, 2)) != VEIL_OK ||
        (rc = veil_buf_append(out, hdr, (size_t)n)) != VEIL_OK)
        return rc;
    for (size_t i = 0; i < pad; i++)
        if ((rc = veil_buf_append_u8(out, ' ')) != VEIL_OK)
            return rc;
    if ((rc = veil_buf_append_u8(out, '\n')) != VEIL_OK)
        return rc;
    return t->nbytes > 0 ? veil_buf_append(out, t->data, t->nbytes) : VEIL_OK;
}
