/*
 * JSON for the REST API: a parser into arena values (RFC 8259 plus rapidjson's NaN/Infinity),
 * TF Serving's tensor decoding rules (row "instances" and columnar "inputs", shapes from the
 * nesting, JSON type per dtype), and the predict response writer (floats always with a point
 * or exponent, shortest round-trip form, bare NaN/Infinity tokens). Numbers stay tokens until
 * the typed decoder writes them straight into tensor memory, with an exact fast path for
 * short decimals.
 */
#include "serve_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jp {
    struct veil_span s;
    size_t start_len;
    struct veil_arena *a;
    struct sv_status *st;
    const char *err;
    size_t err_off;
};

static size_t jp_off(const struct jp *p)
{
    return p->start_len - p->s.len;
}

static bool jp_err(struct jp *p, const char *msg)
{
    if (p->err == NULL) {
        p->err = msg;
        p->err_off = jp_off(p);
    }
    return false;
}

static void jp_ws(struct jp *p)
{
    size_t i = 0;
    while (i < p->s.len &&
           (p->s.p[i] == ' ' || p->s.p[i] == '\t' || p->s.p[i] == '\n' || p->s.p[i] == '\r'))
        i++;
    sv_skip(&p->s, i);
}

static bool jp_lit(struct jp *p, const char *lit)
{
    size_t n = strlen(lit);
    if (p->s.len < n || memcmp(p->s.p, lit, n) != 0)
        return false;
    sv_skip(&p->s, n);
    return true;
}

static int hex4(const uint8_t *h)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = h[i];
        int d = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t utf8_put(uint32_t cp, uint8_t *o)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xc0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xe0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (uint8_t)(0xf0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* Parses a string (the opening quote is next) into an unescaped arena copy. */
static bool jp_string(struct jp *p, struct veil_span *out)
{
    sv_skip(&p->s, 1);
    size_t n = 0;
    bool esc = false;
    while (n < p->s.len && p->s.p[n] != '"') {
        if (p->s.p[n] == '\\') {
            esc = true;
            n++;
        } else if (p->s.p[n] < 0x20) {
            sv_skip(&p->s, n);
            return jp_err(p, "Invalid encoding in string.");
        }
        n++;
    }
    if (n >= p->s.len)
        return jp_err(p, "Missing a closing quotation mark in string.");
    if (!esc) {
        *out = veil_span_make(p->s.p, n);
        sv_skip(&p->s, n + 1);
        return true;
    }
    uint8_t *o = NULL;
    if (veil_arena_alloc(p->a, n + 1, 1, (void **)&o) != VEIL_OK)
        return jp_err(p, "Out of memory.");
    size_t w = 0;
    const uint8_t *q = p->s.p;
    for (size_t i = 0; i < n; i++) {
        if (q[i] != '\\') {
            o[w++] = q[i];
            continue;
        }
        i++;
        switch (q[i]) {
        case '"':
            o[w++] = '"';
            break;
        case '\\':
            o[w++] = '\\';
            break;
        case '/':
            o[w++] = '/';
            break;
        case 'b':
            o[w++] = '\b';
            break;
        case 'f':
            o[w++] = '\f';
            break;
        case 'n':
            o[w++] = '\n';
            break;
        case 'r':
            o[w++] = '\r';
            break;
        case 't':
            o[w++] = '\t';
            break;
        case 'u': {
            if (i + 4 >= n)
                return jp_err(p, "Incorrect hex digit after \\u escape in string.");
            int cp = hex4(q + i + 1);
            if (cp < 0)
                return jp_err(p, "Incorrect hex digit after \\u escape in string.");
            i += 4;
            uint32_t c = (uint32_t)cp;
            if (c >= 0xd800 && c <= 0xdbff) {
                if (i + 6 >= n || q[i + 1] != '\\' || q[i + 2] != 'u')
                    return jp_err(p, "The surrogate pair in string is invalid.");
                int lo = hex4(q + i + 3);
                if (lo < 0xdc00 || lo > 0xdfff)
                    return jp_err(p, "The surrogate pair in string is invalid.");
                c = 0x10000 + ((c - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
                i += 6;
            }
            /* A \u escape never expands past its own six bytes. */
            w += utf8_put(c, o + w);
            break;
        }
        default:
            return jp_err(p, "Invalid escape character in string.");
        }
    }
    *out = veil_span_make(o, w);
    sv_skip(&p->s, n + 1);
    return true;
}

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static bool jp_number(struct jp *p, struct veil_span *out)
{
    const uint8_t *s = p->s.p;
    size_t n = p->s.len, i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i < n && s[i] == 'I') {
        if (n - i >= 8 && memcmp(s + i, "Infinity", 8) == 0) {
            *out = veil_span_make(s, i + 8);
            sv_skip(&p->s, i + 8);
            return true;
        }
        return jp_err(p, "Invalid value.");
    }
    if (i >= n || !is_digit(s[i]))
        return jp_err(p, "Invalid value.");
    if (s[i] == '0') {
        i++;
    } else {
        while (i < n && is_digit(s[i]))
            i++;
    }
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i]))
            return jp_err(p, "Missing fraction part in number.");
        while (i < n && is_digit(s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !is_digit(s[i]))
            return jp_err(p, "Missing exponent in number.");
        while (i < n && is_digit(s[i]))
            i++;
    }
    *out = veil_span_make(s, i);
    sv_skip(&p->s, i);
    return true;
}

/* Length of the number token at the front of s (JSON grammar plus NaN and +-Infinity), or 0. */
static size_t number_len(const uint8_t *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n)
        return 0;
    if (!is_digit(s[i])) {
        if (n - i >= 8 && memcmp(s + i, "Infinity", 8) == 0)
            return i + 8;
        if (i == 0 && n >= 3 && memcmp(s, "NaN", 3) == 0)
            return 3;
        return 0;
    }
    if (s[i] == '0')
        i++;
    else
        while (i < n && is_digit(s[i]))
            i++;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i]))
            return 0;
        while (i < n && is_digit(s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !is_digit(s[i]))
            return 0;
        while (i < n && is_digit(s[i]))
            i++;
    }
    return i;
}

static bool is_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * Tries to read the array at the front of s as a regular nested list of numbers: every list at
 * one level has the same length, numbers only at the innermost level, no empty list. On
 * success fills rank/dims and returns the array's length in bytes; 0 means "not flat" (the
 * generic parser then takes over and reports any syntax error precisely).
 */
static size_t scan_flat(struct veil_span s, uint8_t *rank_out, int64_t *dims)
{
    const uint8_t *p = s.p;
    size_t n = s.len, i = 0;
    int64_t count[VEIL_LIMIT_TENSOR_RANK];
    bool known[VEIL_LIMIT_TENSOR_RANK] = {false};
    int depth = -1, leaf = -1;
    bool need_value = false; /* after '[' or ',' */
    while (i < n) {
        uint8_t c = p[i];
        if (is_ws(c)) {
            i++;
            continue;
        }
        if (c == '[') {
            if (depth >= 0 && !need_value)
                return 0;
            depth++;
            if (depth >= VEIL_LIMIT_TENSOR_RANK || (leaf >= 0 && depth >= leaf))
                return 0;
            if (depth > 0)
                count[depth - 1]++;
            count[depth] = 0;
            need_value = true;
            i++;
            continue;
        }
        if (c == ']') {
            if (depth < 0 || (need_value && count[depth] > 0) || count[depth] == 0)
                return 0;
            if (!known[depth]) {
                dims[depth] = count[depth];
                known[depth] = true;
            } else if (dims[depth] != count[depth]) {
                return 0;
            }
            if (leaf >= 0 && depth != leaf - 1 && !known[depth + 1])
                return 0;
            depth--;
            need_value = false;
            i++;
            if (depth < 0) {
                if (leaf < 1)
                    return 0;
                *rank_out = (uint8_t)leaf;
                return i;
            }
            continue;
        }
        if (c == ',') {
            if (need_value || depth < 0)
                return 0;
            need_value = true;
            i++;
            continue;
        }
        if (!need_value || depth < 0)
            return 0;
        size_t k = number_len(p + i, n - i);
        if (k == 0)
            return 0;
        if (leaf < 0)
            leaf = depth + 1;
        else if (depth + 1 != leaf)
            return 0;
        count[depth]++;
        need_value = false;
        i += k;
    }
    return 0;
}

static bool jp_value(struct jp *p, struct json_val **out, unsigned depth);

static bool jp_new(struct jp *p, enum json_kind k, struct json_val **out)
{
    struct json_val *v = NULL;
    if (veil_arena_alloc(p->a, sizeof(*v), 8, (void **)&v) != VEIL_OK)
        return jp_err(p, "Out of memory.");
    v->kind = k;
    v->offset = jp_off(p);
    *out = v;
    return true;
}

static bool jp_value(struct jp *p, struct json_val **out, unsigned depth)
{
    struct json_val *v = NULL;
    if (depth > SV_JSON_MAX_DEPTH)
        return jp_err(p, "Nesting too deep.");
    jp_ws(p);
    if (p->s.len == 0)
        return jp_err(p, "Invalid value.");
    uint8_t c = p->s.p[0];
    if (c == '[') {
        uint8_t rank = 0;
        int64_t dims[VEIL_LIMIT_TENSOR_RANK];
        size_t len = scan_flat(p->s, &rank, dims);
        if (len > 0 && dims[0] <= UINT32_MAX) {
            if (!jp_new(p, JSON_ARRAY, &v))
                return false;
            v->flat = true;
            v->flat_rank = rank;
            memcpy(v->flat_dims, dims, rank * sizeof(dims[0]));
            v->n = (uint32_t)dims[0];
            v->text = veil_span_make(p->s.p, len);
            sv_skip(&p->s, len);
            *out = v;
            return true;
        }
    }
    if (c == '{' || c == '[') {
        bool obj = c == '{';
        if (!jp_new(p, obj ? JSON_OBJECT : JSON_ARRAY, &v))
            return false;
        sv_skip(&p->s, 1);
        jp_ws(p);
        struct json_val **tail = &v->child;
        if (p->s.len > 0 && p->s.p[0] == (obj ? '}' : ']')) {
            sv_skip(&p->s, 1);
            *out = v;
            return true;
        }
        for (;;) {
            struct veil_span key = {NULL, 0};
            struct json_val *m = NULL;
            if (obj) {
                jp_ws(p);
                if (p->s.len == 0 || p->s.p[0] != '"')
                    return jp_err(p, "Missing a name for object member.");
                if (!jp_string(p, &key))
                    return false;
                jp_ws(p);
                if (p->s.len == 0 || p->s.p[0] != ':')
                    return jp_err(p, "Missing a colon after a name of object member.");
                sv_skip(&p->s, 1);
            }
            if (!jp_value(p, &m, depth + 1))
                return false;
            m->key = key;
            *tail = m;
            tail = &m->next;
            if (v->n == UINT32_MAX)
                return jp_err(p, "Too many members.");
            v->n++;
            jp_ws(p);
            if (p->s.len > 0 && p->s.p[0] == ',') {
                sv_skip(&p->s, 1);
                continue;
            }
            if (p->s.len > 0 && p->s.p[0] == (obj ? '}' : ']')) {
                sv_skip(&p->s, 1);
                break;
            }
            return jp_err(p, obj ? "Missing a comma or '}' after an object member."
                                 : "Missing a comma or ']' after an array element.");
        }
        *out = v;
        return true;
    }
    if (c == '"') {
        if (!jp_new(p, JSON_STRING, &v) || !jp_string(p, &v->text))
            return false;
        *out = v;
        return true;
    }
    if (c == 't' || c == 'f' || c == 'n' || c == 'N') {
        enum json_kind k;
        if (jp_lit(p, "true"))
            k = JSON_TRUE;
        else if (jp_lit(p, "false"))
            k = JSON_FALSE;
        else if (jp_lit(p, "null"))
            k = JSON_NULL;
        else if (p->s.len >= 3 && memcmp(p->s.p, "NaN", 3) == 0)
            k = JSON_NUMBER;
        else
            return jp_err(p, "Invalid value.");
        if (!jp_new(p, k, &v))
            return false;
        if (k == JSON_NUMBER) {
            v->text = veil_span_make(p->s.p, 3);
            sv_skip(&p->s, 3);
        }
        *out = v;
        return true;
    }
    if (!jp_new(p, JSON_NUMBER, &v) || !jp_number(p, &v->text))
        return false;
    *out = v;
    return true;
}

bool veil__serve_json_parse(struct veil_span doc, struct veil_arena *a, struct json_val **out,
                            struct sv_status *st)
{
    struct jp p = {doc, doc.len, a, st, NULL, 0};
    *out = NULL;
    jp_ws(&p);
    if (p.s.len == 0)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "JSON Parse error: The document is empty. at offset: %zu", jp_off(&p));
    struct json_val *root = NULL;
    if (jp_value(&p, &root, 0)) {
        jp_ws(&p);
        if (p.s.len == 0) {
            *out = root;
            return true;
        }
        jp_err(&p, "The document root must not be followed by other values.");
    }
    return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "JSON Parse error: %s at offset: %zu", p.err,
                   p.err_off);
}

/* ---- Numbers ---- */

static const double pow10tab[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                  1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                  1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static bool slow_f64(struct veil_span tok, double *out)
{
    char buf[400];
    if (tok.len >= sizeof(buf))
        return false;
    memcpy(buf, tok.p, tok.len);
    buf[tok.len] = '\0';
    char *end = NULL;
    *out = strtod(buf, &end);
    return end == buf + tok.len;
}

bool veil__serve_json_f64(struct veil_span tok, double *out)
{
    const uint8_t *s = tok.p;
    size_t n = tok.len, i = 0;
    bool neg = false;
    if (n > 0 && s[0] == '-') {
        neg = true;
        i++;
    }
    if (n - i == 3 && memcmp(s + i, "NaN", 3) == 0) {
        *out = NAN;
        return true;
    }
    if (n - i == 8 && memcmp(s + i, "Infinity", 8) == 0) {
        *out = neg ? -INFINITY : INFINITY;
        return true;
    }
    /* Clinger's fast path: a mantissa below 2^53 and a power of ten up to 22 are both exact,
     * so one IEEE multiplication or division rounds correctly. */
    uint64_t m = 0;
    int digits = 0, exp10 = 0;
    while (i < n && is_digit(s[i])) {
        if (digits < 19) {
            m = m * 10 + (uint64_t)(s[i] - '0');
            if (m != 0)
                digits++;
        } else {
            return slow_f64(tok, out);
        }
        i++;
    }
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && is_digit(s[i])) {
            if (digits >= 19)
                return slow_f64(tok, out);
            m = m * 10 + (uint64_t)(s[i] - '0');
            if (m != 0)
                digits++;
            exp10--;
            i++;
        }
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool eneg = false;
        int e = 0;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        while (i < n && is_digit(s[i])) {
            if (e < 100000)
                e = e * 10 + (s[i] - '0');
            i++;
        }
        exp10 += eneg ? -e : e;
    }
    if (i != n)
        return false;
    if (m > (1ULL << 53) || exp10 < -22 || exp10 > 22)
        return slow_f64(tok, out);
    double v = (double)m;
    v = exp10 < 0 ? v / pow10tab[-exp10] : v * pow10tab[exp10];
    *out = neg ? -v : v;
    return true;
}

bool veil__serve_json_u64(struct veil_span tok, uint64_t *out)
{
    uint64_t v = 0;
    if (tok.len == 0 || tok.len > 20)
        return false;
    for (size_t i = 0; i < tok.len; i++) {
        if (!is_digit(tok.p[i]))
            return false;
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, tok.p[i] - '0', &v))
            return false;
    }
    *out = v;
    return true;
}

bool veil__serve_json_i64(struct veil_span tok, int64_t *out)
{
    uint64_t u = 0;
    bool neg = tok.len > 0 && tok.p[0] == '-';
    struct veil_span d = tok;
    if (neg)
        sv_skip(&d, 1);
    if (!veil__serve_json_u64(d, &u))
        return false;
    if (neg) {
        if (u > (uint64_t)INT64_MAX + 1)
            return false;
        *out = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
    } else {
        if (u > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)u;
    }
    return true;
}

/* ---- Writing ---- */

veil_err veil__serve_json_str(struct veil_buf *b, struct veil_span s)
{
    static const char hex[] = "0123456789abcdef";
    veil_err rc = veil_buf_append_u8(b, '"');
    size_t run = 0;
    for (size_t i = 0; rc == VEIL_OK && i < s.len; i++) {
        uint8_t c = s.p[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        rc = veil_buf_append(b, s.p + run, i - run);
        run = i + 1;
        char e[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"':
            e[1] = '"';
            break;
        case '\\':
            e[1] = '\\';
            break;
        case '\n':
            e[1] = 'n';
            break;
        case '\r':
            e[1] = 'r';
            break;
        case '\t':
            e[1] = 't';
            break;
        default:
            e[1] = 'u';
            e[2] = '0';
            e[3] = '0';
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            el = 6;
        }
        if (rc == VEIL_OK)
            rc = veil_buf_append(b, e, el);
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append(b, s.p + run, s.len - run);
    if (rc == VEIL_OK)
        rc = veil_buf_append_u8(b, '"');
    return rc;
}

/* The shortest decimal that reads back as the same value, with a point or an exponent. */
static veil_err put_real(struct veil_buf *b, double v, bool is_float)
{
    char tmp[40];
    if (isnan(v))
        return veil_buf_append_str(b, "NaN");
    if (isinf(v))
        return veil_buf_append_str(b, v < 0 ? "-Infinity" : "Infinity");
    int p0 = is_float ? 6 : 15, p1 = is_float ? 9 : 17;
    for (int prec = p0; prec <= p1; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
        if (is_float ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v)
            break;
    }
    veil_err rc = veil_buf_append_str(b, tmp);
    /* TF Serving always marks a real number as one (3.0, not 3). */
    if (rc == VEIL_OK && strpbrk(tmp, ".e") == NULL)
        rc = veil_buf_append_str(b, ".0");
    return rc;
}

static veil_err put_elem(struct veil_buf *b, const struct veil_tensor *t, size_t i)
{
    char tmp[32];
    switch (t->dtype) {
    case VEIL_DT_FLOAT:
        return put_real(b, ((const float *)t->data)[i], true);
    case VEIL_DT_DOUBLE:
        return put_real(b, ((const double *)t->data)[i], false);
    case VEIL_DT_INT32:
        snprintf(tmp, sizeof(tmp), "%d", ((const int32_t *)t->data)[i]);
        break;
    case VEIL_DT_INT16:
        snprintf(tmp, sizeof(tmp), "%d", ((const int16_t *)t->data)[i]);
        break;
    case VEIL_DT_INT8:
        snprintf(tmp, sizeof(tmp), "%d", ((const int8_t *)t->data)[i]);
        break;
    case VEIL_DT_UINT8:
        snprintf(tmp, sizeof(tmp), "%u", ((const uint8_t *)t->data)[i]);
        break;
    case VEIL_DT_UINT32:
        snprintf(tmp, sizeof(tmp), "%u", ((const uint32_t *)t->data)[i]);
        break;
    case VEIL_DT_INT64:
        snprintf(tmp, sizeof(tmp), "%lld", (long long)((const int64_t *)t->data)[i]);
        break;
    case VEIL_DT_UINT64:
        snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)((const uint64_t *)t->data)[i]);
        break;
    case VEIL_DT_BOOL:
        return veil_buf_append_str(b, ((const uint8_t *)t->data)[i] ? "true" : "false");
    case VEIL_DT_FLOAT16:
    case VEIL_DT_BFLOAT16:
        /* As the float of the same value: its shortest form reads back to the same bits. */
        return put_real(b, veil_half_to_float(t->dtype, ((const uint16_t *)t->data)[i]), true);
    default:
        return VEIL_E_UNSUPPORTED;
    }
    return veil_buf_append_str(b, tmp);
}

/* Writes dims[d..rank) of t starting at element *idx as nested lists. */
static veil_err put_nested(struct veil_buf *b, const struct veil_tensor *t, size_t d, size_t *idx)
{
    if (d == t->rank) {
        veil_err rc = put_elem(b, t, *idx);
        (*idx)++;
        return rc;
    }
    veil_err rc = veil_buf_append_u8(b, '[');
    for (int64_t i = 0; rc == VEIL_OK && i < t->dims[d]; i++) {
        if (i > 0)
            rc = veil_buf_append_u8(b, ',');
        if (rc == VEIL_OK)
            rc = put_nested(b, t, d + 1, idx);
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_u8(b, ']');
    return rc;
}

/*
 * float16 and bfloat16 travel as JSON numbers too (TF Serving answers UNIMPLEMENTED for them,
 * and Triton wants binary data): numbers are rounded to nearest even on the way in and written
 * as the shortest decimal of the value on the way out.
 */
static bool json_dtype_ok(enum veil_dtype dt)
{
    return dt == VEIL_DT_FLOAT || dt == VEIL_DT_DOUBLE || dt == VEIL_DT_INT32 ||
           dt == VEIL_DT_INT16 || dt == VEIL_DT_INT8 || dt == VEIL_DT_UINT8 ||
           dt == VEIL_DT_UINT32 || dt == VEIL_DT_INT64 || dt == VEIL_DT_UINT64 ||
           dt == VEIL_DT_BOOL || dt == VEIL_DT_FLOAT16 || dt == VEIL_DT_BFLOAT16;
}

bool veil__serve_rest_encode_predict(const struct veil_tensor *outs, const char *const *names,
                                     size_t n, bool row_format, struct veil_buf *b,
                                     struct sv_status *st)
{
    veil_err rc = VEIL_OK;
    for (size_t j = 0; j < n; j++)
        if (!json_dtype_ok(outs[j].dtype))
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "Failed to write JSON value for tensor type: %s",
                           veil__serve_tf_dtype_name(veil__serve_tf_dtype(outs[j].dtype)));
    if (row_format) {
        for (size_t j = 0; j < n; j++) {
            if (outs[j].rank == 0)
                return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                               "Tensor name: %s has no shape information ", names[j]);
            if (outs[j].dims[0] != outs[0].dims[0])
                return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                               "Tensor name: %s has inconsistent batch size: %lld expecting: %lld",
                               names[j], (long long)outs[j].dims[0], (long long)outs[0].dims[0]);
        }
        rc = veil_buf_append_str(b, "{\"predictions\": [");
        int64_t rows = n > 0 ? outs[0].dims[0] : 0;
        size_t idx[SV_MAX_IO] = {0};
        for (int64_t r = 0; rc == VEIL_OK && r < rows; r++) {
            if (r > 0)
                rc = veil_buf_append_u8(b, ',');
            if (n > 1 && rc == VEIL_OK)
                rc = veil_buf_append_u8(b, '{');
            for (size_t j = 0; rc == VEIL_OK && j < n; j++) {
                if (n > 1) {
                    if (j > 0)
                        rc = veil_buf_append_u8(b, ',');
                    if (rc == VEIL_OK)
                        rc = veil__serve_json_str(b, veil_span_from_str(names[j]));
                    if (rc == VEIL_OK)
                        rc = veil_buf_append_str(b, ": ");
                }
                if (rc == VEIL_OK)
                    rc = put_nested(b, &outs[j], 1, &idx[j]);
            }
            if (n > 1 && rc == VEIL_OK)
                rc = veil_buf_append_u8(b, '}');
        }
        if (rc == VEIL_OK)
            rc = veil_buf_append_str(b, "]}");
    } else {
        rc = veil_buf_append_str(b, "{\"outputs\": ");
        if (rc == VEIL_OK && n != 1)
            rc = veil_buf_append_u8(b, '{');
        for (size_t j = 0; rc == VEIL_OK && j < n; j++) {
            size_t idx = 0;
            if (n != 1) {
                if (j > 0)
                    rc = veil_buf_append_str(b, ", ");
                if (rc == VEIL_OK)
                    rc = veil__serve_json_str(b, veil_span_from_str(names[j]));
                if (rc == VEIL_OK)
                    rc = veil_buf_append_str(b, ": ");
            }
            if (rc == VEIL_OK)
                rc = put_nested(b, &outs[j], 0, &idx);
        }
        if (rc == VEIL_OK && n != 1)
            rc = veil_buf_append_u8(b, '}');
        if (rc == VEIL_OK)
            rc = veil_buf_append_u8(b, '}');
    }
    if (rc != VEIL_OK)
        return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "response too large");
    return true;
}

/* ---- Base64 ---- */

veil_err veil__serve_b64_decode(struct veil_span in, struct veil_arena *a, struct veil_span *out)
{
    if (in.len % 4 != 0)
        return VEIL_E_FORMAT;
    uint8_t *o = NULL;
    veil_err rc = veil_arena_alloc(a, in.len / 4 * 3 + 1, 1, (void **)&o);
    if (rc != VEIL_OK)
        return rc;
    size_t w = 0;
    for (size_t i = 0; i < in.len; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            uint8_t c = in.p[i + (size_t)k];
            int d;
            if (c >= 'A' && c <= 'Z')
                d = c - 'A';
            else if (c >= 'a' && c <= 'z')
                d = c - 'a' + 26;
            else if (c >= '0' && c <= '9')
                d = c - '0' + 52;
            else if (c == '+')
                d = 62;
            else if (c == '/')
                d = 63;
            else if (c == '=' && i + 4 == in.len && k >= 2)
                d = 0, pad++;
            else
                return VEIL_E_FORMAT;
            if (pad > 0 && c != '=')
                return VEIL_E_FORMAT;
            v = v << 6 | (uint32_t)d;
        }
        o[w++] = (uint8_t)(v >> 16);
        if (pad < 2)
            o[w++] = (uint8_t)(v >> 8);
        if (pad < 1)
            o[w++] = (uint8_t)v;
    }
    *out = veil_span_make(o, w);
    return VEIL_OK;
}

/* ---- REST predict decoding (json_tensor.cc rules) ---- */

static const char *kind_name(enum json_kind k)
{
    static const char *const n[] = {"Null", "False", "True", "Number", "String", "Array", "Object"};
    return n[k];
}

static bool is_b64_obj(const struct json_val *v)
{
    return v->kind == JSON_OBJECT && v->n == 1 && veil_span_eq_str(v->child->key, "b64") &&
           v->child->kind == JSON_STRING;
}

static bool type_err(const struct json_val *v, const struct sv_tinfo *ti, struct sv_status *st)
{
    if (v->kind == JSON_STRING)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "JSON Value: \"%.*s\" Type: String is not of expected type: %s",
                       (int)(v->text.len > 64 ? 64 : v->text.len), (const char *)v->text.p,
                       veil__serve_tf_dtype_short(ti->tf_dtype));
    if (v->kind == JSON_NUMBER)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "JSON Value: %.*s Type: Number is not of expected type: %s",
                       (int)(v->text.len > 64 ? 64 : v->text.len), (const char *)v->text.p,
                       veil__serve_tf_dtype_short(ti->tf_dtype));
    return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                   "JSON Value: %s Type: %s is not of expected type: %s",
                   v->kind == JSON_TRUE    ? "true"
                   : v->kind == JSON_FALSE ? "false"
                   : v->kind == JSON_NULL  ? "null"
                                           : "{...}",
                   kind_name(v->kind), veil__serve_tf_dtype_short(ti->tf_dtype));
}

static bool is_integer_tok(struct veil_span t)
{
    for (size_t i = 0; i < t.len; i++)
        if (t.p[i] == '.' || t.p[i] == 'e' || t.p[i] == 'E' || t.p[i] == 'N' || t.p[i] == 'I')
            return false;
    return true;
}

/* Writes one scalar JSON value into element idx of data. */
static bool put_scalar(const struct json_val *v, const struct sv_tinfo *ti, void *data, size_t idx,
                       struct sv_status *st)
{
    switch (ti->dt) {
    case VEIL_DT_FLOAT:
    case VEIL_DT_DOUBLE:
    case VEIL_DT_FLOAT16:
    case VEIL_DT_BFLOAT16: {
        double d;
        if (v->kind != JSON_NUMBER || !veil__serve_json_f64(v->text, &d))
            return type_err(v, ti, st);
        if (ti->dt == VEIL_DT_FLOAT)
            ((float *)data)[idx] = (float)d;
        else if (ti->dt == VEIL_DT_DOUBLE)
            ((double *)data)[idx] = d;
        else
            /* Rounded once, from the decimal's double value. */
            ((uint16_t *)data)[idx] = veil_half_from_double(ti->dt, d);
        return true;
    }
    case VEIL_DT_INT32:
    case VEIL_DT_INT16:
    case VEIL_DT_INT8:
    case VEIL_DT_UINT8: {
        int64_t i;
        if (v->kind != JSON_NUMBER || !is_integer_tok(v->text) ||
            !veil__serve_json_i64(v->text, &i) || i < INT32_MIN || i > INT32_MAX)
            return type_err(v, ti, st);
        if (ti->dt == VEIL_DT_INT32)
            ((int32_t *)data)[idx] = (int32_t)i;
        else if (ti->dt == VEIL_DT_INT16)
            ((int16_t *)data)[idx] = (int16_t)i;
        else if (ti->dt == VEIL_DT_INT8)
            ((int8_t *)data)[idx] = (int8_t)i;
        else
            ((uint8_t *)data)[idx] = (uint8_t)i;
        return true;
    }
    case VEIL_DT_INT64: {
        int64_t i;
        if (v->kind != JSON_NUMBER || !is_integer_tok(v->text) ||
            !veil__serve_json_i64(v->text, &i))
            return type_err(v, ti, st);
        ((int64_t *)data)[idx] = i;
        return true;
    }
    case VEIL_DT_UINT32:
    case VEIL_DT_UINT64: {
        uint64_t u;
        if (v->kind != JSON_NUMBER || !veil__serve_json_u64(v->text, &u) ||
            (ti->dt == VEIL_DT_UINT32 && u > UINT32_MAX))
            return type_err(v, ti, st);
        if (ti->dt == VEIL_DT_UINT32)
            ((uint32_t *)data)[idx] = (uint32_t)u;
        else
            ((uint64_t *)data)[idx] = u;
        return true;
    }
    case VEIL_DT_BOOL:
        if (v->kind != JSON_TRUE && v->kind != JSON_FALSE)
            return type_err(v, ti, st);
        ((uint8_t *)data)[idx] = v->kind == JSON_TRUE;
        return true;
    default:
        return sv_fail(st, VEIL_GRPC_UNIMPLEMENTED, "Conversion of JSON Value: to type: %s",
                       veil__serve_tf_dtype_short(ti->tf_dtype));
    }
}

/* The shape implied by the first element at each nesting level. */
static bool infer_shape(const struct json_val *v, int64_t *dims, size_t *rank, struct sv_status *st)
{
    size_t r = *rank;
    while (v->kind == JSON_ARRAY) {
        if (v->flat) {
            if (r + v->flat_rank > VEIL_LIMIT_TENSOR_RANK)
                return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "Tensor rank exceeds %d",
                               VEIL_LIMIT_TENSOR_RANK);
            memcpy(dims + r, v->flat_dims, v->flat_rank * sizeof(dims[0]));
            r += v->flat_rank;
            break;
        }
        if (r >= VEIL_LIMIT_TENSOR_RANK)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "Tensor rank exceeds %d",
                           VEIL_LIMIT_TENSOR_RANK);
        dims[r++] = v->n;
        if (v->n == 0)
            break;
        v = v->child;
    }
    *rank = r;
    return true;
}

struct fill_ctx {
    size_t level0; /* nesting level of the tensor's outer list in the document (messages) */
    const struct sv_tinfo *ti;
    const int64_t *dims;
    size_t rank;
    void *data;
    size_t idx;
    struct sv_status *st;
};

/* Parses a flat array's numbers straight into the tensor (its shape must be the rest). */
static bool fill_flat(struct fill_ctx *f, const struct json_val *v, size_t level)
{
    for (size_t d = 0; d < v->flat_rank; d++) {
        if (level + d >= f->rank)
            return sv_fail(f->st, VEIL_GRPC_INVALID_ARGUMENT,
                           "Expecting value at level: %zu but found a list or object",
                           level + d + f->level0);
        if (v->flat_dims[d] != f->dims[level + d])
            return sv_fail(f->st, VEIL_GRPC_INVALID_ARGUMENT,
                           "Encountered list at unexpected size: %lld at level: %zu expected "
                           "size: %lld",
                           (long long)v->flat_dims[d], level + d + f->level0,
                           (long long)f->dims[level + d]);
    }
    if (level + v->flat_rank != f->rank)
        return sv_fail(f->st, VEIL_GRPC_INVALID_ARGUMENT,
                       "Expecting shape with rank %zu but scalar value found at incorrect level: "
                       "%zu",
                       f->rank, level + v->flat_rank + f->level0);
    const uint8_t *p = v->text.p;
    size_t n = v->text.len, i = 0;
    struct json_val tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.kind = JSON_NUMBER;
    bool is_f32 = f->ti->dt == VEIL_DT_FLOAT;
    while (i < n) {
        uint8_t c = p[i];
        if (c == '[' || c == ']' || c == ',' || is_ws(c)) {
            i++;
            continue;
        }
        if (is_f32) {
            /* Fused scan and convert for short decimals (the common case). */
            size_t j = i;
            bool neg = false;
            uint64_t m = 0;
            int digits = 0, frac = 0;
            if (p[j] == '-') {
                neg = true;
                j++;
            }
            while (j < n && is_digit(p[j]) && digits < 15) {
                m = m * 10 + (uint64_t)(p[j] - '0');
                digits++;
                j++;
            }
            if (j < n && p[j] == '.') {
                j++;
                while (j < n && is_digit(p[j]) && digits < 15) {
                    m = m * 10 + (uint64_t)(p[j] - '0');
                    digits++;
                    frac++;
                    j++;
                }
            }
            if (digits > 0 && (j == n || p[j] == ',' || p[j] == ']' || is_ws(p[j]))) {
                double d = (double)m / pow10tab[frac];
                ((float *)f->data)[f->idx++] = (float)(neg ? -d : d);
                i = j;
                continue;
            }
        }
        /* The scanner validated the text: this is a number token. */
        size_t k = number_len(p + i, n - i);
        struct veil_span tok = veil_span_make(p + i, k);
        if (is_f32) {
            double d;
            if (!veil__serve_json_f64(tok, &d)) {
                tmp.text = tok;
                return type_err(&tmp, f->ti, f->st);
            }
            ((float *)f->data)[f->idx++] = (float)d;
        } else {
            tmp.text = tok;
            if (!put_scalar(&tmp, f->ti, f->data, f->idx++, f->st))
                return false;
        }
        i += k;
    }
    return true;
}

static bool fill(struct fill_ctx *f, const struct json_val *v, size_t level)
{
    if (level == f->rank) {
        if (v->kind == JSON_ARRAY || (v->kind == JSON_OBJECT && !is_b64_obj(v)))
            return sv_fail(f->st, VEIL_GRPC_INVALID_ARGUMENT,
                           "Expecting value at level: %zu but found a list or object",
                           level + f->level0);
        if (is_b64_obj(v))
            return sv_fail(f->st, VEIL_GRPC_INVALID_ARGUMENT,
                           "JSON Value: {b64} Type: Object is not of expected type: %s",
                           veil__serve_tf_dtype_short(f->ti->tf_dtype));
        return put_scalar(v, f->ti, f->data, f->idx++, f->st);
    }
    if (v->kind != JSON_ARRAY)
        return sv_fail(f->st, VEIL_GRPC_INVALID_ARGUMENT,
                       "Expecting shape with rank %zu but scalar value found at incorrect level: "
                       "%zu",
                       f->rank, level + f->level0);
    if (v->flat)
        return fill_flat(f, v, level);
    if ((int64_t)v->n != f->dims[level])
        return sv_fail(f->st, VEIL_GRPC_INVALID_ARGUMENT,
                       "Encountered list at unexpected size: %u at level: %zu expected size: %lld",
                       v->n, level + f->level0, (long long)f->dims[level]);
    for (const struct json_val *c = v->child; c != NULL; c = c->next)
        if (!fill(f, c, level + 1))
            return false;
    return true;
}

static bool alloc_tensor(struct veil_tensor *t, const struct sv_tinfo *ti, struct veil_arena *a,
                         struct sv_status *st)
{
    uint64_t numel = 0, nbytes = 0;
    if (ti->dt == VEIL_DT_STRING || veil_dtype_size(ti->dt) == 0 || ti->dt == VEIL_DT_UINT16)
        return sv_fail(st, VEIL_GRPC_UNIMPLEMENTED, "Conversion of JSON Value: to type: %s",
                       veil__serve_tf_dtype_short(ti->tf_dtype));
    if (veil_tensor_numel(t->dims, t->rank, &numel) != VEIL_OK ||
        __builtin_mul_overflow(numel, (uint64_t)veil_dtype_size(ti->dt), &nbytes) ||
        nbytes > SV_REQ_ARENA_MAX)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "Tensor too large for input: %s", ti->name);
    t->dtype = ti->dt;
    t->nbytes = (size_t)nbytes;
    if (veil_arena_alloc(a, nbytes > 0 ? (size_t)nbytes : 1, 64, &t->data) != VEIL_OK)
        return sv_fail(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "Out of memory for input: %s", ti->name);
    return true;
}

/* A whole tensor from one JSON value (columnar form). */
static bool decode_whole(const struct json_val *v, const struct sv_tinfo *ti, struct veil_arena *a,
                         struct veil_tensor *t, struct sv_status *st)
{
    memset(t, 0, sizeof(*t));
    if (!infer_shape(v, t->dims, &t->rank, st) || !alloc_tensor(t, ti, a, st))
        return false;
    struct fill_ctx f = {0, ti, t->dims, t->rank, t->data, 0, st};
    return fill(&f, v, 0);
}

static const struct json_val *member(const struct json_val *obj, const char *key)
{
    for (const struct json_val *m = obj->child; m != NULL; m = m->next)
        if (veil_span_eq_str(m->key, key))
            return m;
    return NULL;
}

static void key_list(const struct sv_sig *sig, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sig->n_in && o + 2 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? "," : "", sig->in[i].name);
}

/* Row format: instances[i] are values (one input) or objects keyed by alias. */
static bool decode_rows(const struct json_val *inst, const struct sv_sig *sig, struct veil_arena *a,
                        struct veil_tensor *tensors, struct sv_status *st)
{
    if (inst->kind != JSON_ARRAY)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "Expecting 'instances' to be an list/array");
    if (inst->n == 0)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "No values in 'instances' array");
    if (inst->flat) {
        if (sig->n_in != 1)
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "Expecting object with named inputs in 'instances' for a signature "
                           "with %zu inputs",
                           sig->n_in);
        /* A regular list of numbers: the instances stacked are the whole tensor. */
        struct veil_tensor *t = &tensors[0];
        memset(t, 0, sizeof(*t));
        if (!infer_shape(inst, t->dims, &t->rank, st) || !alloc_tensor(t, &sig->in[0], a, st))
            return false;
        struct fill_ctx f = {0, &sig->in[0], t->dims, t->rank, t->data, 0, st};
        return fill(&f, inst, 0);
    }
    const struct json_val *first = inst->child;
    bool named = first->kind == JSON_OBJECT && !is_b64_obj(first);
    if (!named && sig->n_in != 1)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "Expecting object with named inputs in 'instances' for a signature with "
                       "%zu inputs",
                       sig->n_in);
    for (size_t k = 0; k < sig->n_in; k++) {
        const struct sv_tinfo *ti = &sig->in[k];
        struct veil_tensor *t = &tensors[k];
        memset(t, 0, sizeof(*t));
        const struct json_val *v0 = named ? member(first, ti->name) : first;
        if (v0 == NULL) {
            char keys[512];
            key_list(sig, keys, sizeof(keys));
            return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                           "Failed to process element: 0 of 'instances' list. JSON object: "
                           "keys must be equal to: %s",
                           keys);
        }
        t->rank = 1;
        t->dims[0] = inst->n;
        if (!infer_shape(v0, t->dims, &t->rank, st) || !alloc_tensor(t, ti, a, st))
            return false;
        struct fill_ctx f = {1, ti, t->dims + 1, t->rank - 1, t->data, 0, st};
        size_t i = 0;
        for (const struct json_val *e = inst->child; e != NULL; e = e->next, i++) {
            const struct json_val *v = e;
            if (named) {
                if (e->kind != JSON_OBJECT || is_b64_obj(e) || e->n != sig->n_in ||
                    (v = member(e, ti->name)) == NULL) {
                    char keys[512];
                    key_list(sig, keys, sizeof(keys));
                    return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                                   "Failed to process element: %zu of 'instances' list. JSON "
                                   "object: keys must be equal to: %s",
                                   i, keys);
                }
            } else if (e->kind == JSON_OBJECT && !is_b64_obj(e)) {
                return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                               "Failed to process element: %zu of 'instances' list. Mixing "
                               "values and named inputs",
                               i);
            }
            if (!fill(&f, v, 0))
                return false;
        }
    }
    if (named) {
        /* Every object's keys must be exactly the aliases (no extras). */
        size_t i = 0;
        for (const struct json_val *e = inst->child; e != NULL; e = e->next, i++) {
            for (const struct json_val *m = e->child; m != NULL; m = m->next) {
                bool known = false;
                for (size_t k = 0; k < sig->n_in && !known; k++)
                    known = veil_span_eq_str(m->key, sig->in[k].name);
                if (!known) {
                    char keys[512];
                    key_list(sig, keys, sizeof(keys));
                    return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                                   "Failed to process element: %zu of 'instances' list. JSON "
                                   "object: keys must be equal to: %s",
                                   i, keys);
                }
            }
        }
    }
    return true;
}

bool veil__serve_rest_signature_name(const struct json_val *root, char *out, size_t cap,
                                     struct sv_status *st)
{
    out[0] = '\0';
    if (root->kind != JSON_OBJECT)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "JSON Value: %s Is not object",
                       kind_name(root->kind));
    const struct json_val *sn = member(root, "signature_name");
    if (sn == NULL)
        return true;
    if (sn->kind != JSON_STRING)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "JSON Value: %s 'signature_name' key must be a string value.",
                       kind_name(sn->kind));
    if (sn->text.len >= cap)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "Serving signature name too long");
    memcpy(out, sn->text.p, sn->text.len);
    out[sn->text.len] = '\0';
    return true;
}

bool veil__serve_rest_decode_predict(const struct json_val *root, const struct sv_sig *sig,
                                     struct veil_arena *a, struct veil_tensor *tensors,
                                     bool *row_format, struct sv_status *st)
{
    const struct json_val *inst = member(root, "instances");
    const struct json_val *inputs = member(root, "inputs");
    if (inst == NULL && inputs == NULL)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT, "Missing 'inputs' or 'instances' key");
    if (inst != NULL && inputs != NULL)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "Not formatted correctly expecting only one of 'inputs' or 'instances' "
                       "keys to exist ");
    if (inst != NULL) {
        *row_format = true;
        return decode_rows(inst, sig, a, tensors, st);
    }
    *row_format = false;
    if (inputs->kind == JSON_OBJECT && !is_b64_obj(inputs)) {
        for (size_t k = 0; k < sig->n_in; k++) {
            const struct json_val *v = member(inputs, sig->in[k].name);
            if (v == NULL)
                return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                               "Missing named input: %s in 'inputs' object.", sig->in[k].name);
            if (!decode_whole(v, &sig->in[k], a, &tensors[k], st))
                return false;
        }
        return true;
    }
    if (sig->n_in != 1)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "Expecting 'inputs' to be an object with %zu named inputs", sig->n_in);
    return decode_whole(inputs, &sig->in[0], a, &tensors[0], st);
}

/* ---- Flat element lists (KServe v2 tensor data) ---- */

struct elems_ctx {
    const struct sv_tinfo *ti;
    void *data;
    size_t numel;
    size_t idx;
    struct sv_status *st;
};

static bool elems_count_err(const struct elems_ctx *c)
{
    return sv_fail(c->st, VEIL_GRPC_INVALID_ARGUMENT,
                   "input '%s': data holds more elements than its shape's %zu", c->ti->name,
                   c->numel);
}

static bool elems_walk(struct elems_ctx *c, const struct json_val *v)
{
    if (v->kind != JSON_ARRAY) {
        if (v->kind == JSON_OBJECT)
            return sv_fail(c->st, VEIL_GRPC_INVALID_ARGUMENT,
                           "input '%s': data holds an object where an element was expected",
                           c->ti->name);
        if (c->idx >= c->numel)
            return elems_count_err(c);
        return put_scalar(v, c->ti, c->data, c->idx++, c->st);
    }
    if (!v->flat) {
        for (const struct json_val *m = v->child; m != NULL; m = m->next)
            if (!elems_walk(c, m))
                return false;
        return true;
    }
    /* A regular list of numbers validated by the scanner: read its tokens in order. */
    const uint8_t *p = v->text.p;
    size_t n = v->text.len, i = 0;
    struct json_val tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.kind = JSON_NUMBER;
    while (i < n) {
        uint8_t ch = p[i];
        if (ch == '[' || ch == ']' || ch == ',' || is_ws(ch)) {
            i++;
            continue;
        }
        size_t k = number_len(p + i, n - i);
        if (k == 0)
            return sv_fail(c->st, VEIL_GRPC_INVALID_ARGUMENT, "input '%s': malformed number",
                           c->ti->name);
        if (c->idx >= c->numel)
            return elems_count_err(c);
        tmp.text = veil_span_make(p + i, k);
        if (!put_scalar(&tmp, c->ti, c->data, c->idx++, c->st))
            return false;
        i += k;
    }
    return true;
}

bool veil__serve_json_fill_elems(const struct json_val *v, const struct sv_tinfo *ti, void *data,
                                 size_t numel, struct sv_status *st)
{
    struct elems_ctx c = {ti, data, numel, 0, st};
    if (!json_dtype_ok(ti->dt))
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "input '%s': %s data cannot travel as JSON (use binary tensor data)",
                       ti->name, veil_dtype_name(ti->dt));
    if (v->kind != JSON_ARRAY && numel != 1)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "input '%s': data must be a list of %zu elements", ti->name, numel);
    if (!elems_walk(&c, v))
        return false;
    if (c.idx != numel)
        return sv_fail(st, VEIL_GRPC_INVALID_ARGUMENT,
                       "input '%s': data holds %zu elements, its shape needs %zu", ti->name, c.idx,
                       numel);
    return true;
}

bool veil__serve_json_dtype_ok(enum veil_dtype dt)
{
    return json_dtype_ok(dt);
}

veil_err veil__serve_json_put_flat(struct veil_buf *b, const struct veil_tensor *t)
{
    uint64_t numel = 0;
    veil_err rc = veil_tensor_numel(t->dims, t->rank, &numel);
    if (rc == VEIL_OK && !json_dtype_ok(t->dtype))
        rc = VEIL_E_UNSUPPORTED;
    if (rc == VEIL_OK)
        rc = veil_buf_append_u8(b, '[');
    for (uint64_t i = 0; rc == VEIL_OK && i < numel; i++) {
        if (i > 0)
            rc = veil_buf_append_u8(b, ',');
        if (rc == VEIL_OK)
            rc = put_elem(b, t, (size_t)i);
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_u8(b, ']');
    return rc;
}
