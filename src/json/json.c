/*
 * A strict JSON parser into an arena tree (contract in veil/json.h).
 *
 * The parser is a pure function of its input: recursion is bounded by a depth limit, every
 * byte is read through the span reader, strings are checked to be valid UTF-8 without NULs,
 * duplicate keys and trailing bytes are refused, and all memory comes from the caller's arena.
 */
#include "veil/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct jp {
    struct veil_span s; /* what is left to parse */
    size_t total;       /* length of the whole input, for error positions */
    struct veil_arena *a;
    struct veil_errbuf *eb;
};

static size_t pos(const struct jp *p)
{
    return p->total - p->s.len;
}

static veil_err fail(struct jp *p, const char *what)
{
    return veil_errf(p->eb, VEIL_E_FORMAT, "JSON: %s at byte %zu", what, pos(p));
}

/* Consumes one byte the caller has already seen through peek(). */
static void advance(struct jp *p)
{
    veil_err rc = veil_span_skip(&p->s, 1);
    VEIL_ASSERT(rc == VEIL_OK);
}

static void skip_ws(struct jp *p)
{
    uint8_t c;
    while (p->s.len > 0) {
        c = p->s.p[0];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        advance(p);
    }
}

static bool peek(const struct jp *p, uint8_t *c)
{
    if (p->s.len == 0)
        return false;
    *c = p->s.p[0];
    return true;
}

static veil_err expect_lit(struct jp *p, const char *lit)
{
    size_t n = strlen(lit);
    struct veil_span sub;
    if (veil_span_get_bytes(&p->s, n, &sub) != VEIL_OK || memcmp(sub.p, lit, n) != 0)
        return fail(p, "bad literal");
    return VEIL_OK;
}

static veil_err get_hex4(struct jp *p, uint32_t *v)
{
    struct veil_span h;
    if (veil_span_get_bytes(&p->s, 4, &h) != VEIL_OK)
        return fail(p, "truncated \\u escape");
    *v = 0;
    for (size_t i = 0; i < 4; i++) {
        uint8_t c = h.p[i];
        uint32_t d;
        if (c >= '0' && c <= '9')
            d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (uint32_t)(c - 'A' + 10);
        else
            return fail(p, "bad \\u escape");
        *v = (*v << 4) | d;
    }
    return VEIL_OK;
}

static veil_err put_utf8(struct veil_buf *b, uint32_t cp)
{
    uint8_t u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (uint8_t)(0xC0 | (cp >> 6));
        u[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (uint8_t)(0xE0 | (cp >> 12));
        u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (uint8_t)(0xF0 | (cp >> 18));
        u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return veil_buf_append(b, u, n);
}

/* Validates one UTF-8 sequence starting with lead byte c (already consumed) and copies it. */
static veil_err utf8_seq(struct jp *p, uint8_t c, struct veil_buf *b)
{
    size_t extra;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
        extra = 1;
        cp = c & 0x1Fu;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        extra = 2;
        cp = c & 0x0Fu;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        extra = 3;
        cp = c & 0x07u;
        min = 0x10000;
    } else {
        return fail(p, "invalid UTF-8");
    }
    struct veil_span cont;
    if (veil_span_get_bytes(&p->s, extra, &cont) != VEIL_OK)
        return fail(p, "truncated UTF-8");
    for (size_t i = 0; i < extra; i++) {
        if ((cont.p[i] & 0xC0) != 0x80)
            return fail(p, "invalid UTF-8");
        cp = (cp << 6) | (cont.p[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return fail(p, "invalid UTF-8");
    veil_err rc = veil_buf_append_u8(b, c);
    if (rc == VEIL_OK)
        rc = veil_buf_append(b, cont.p, extra);
    return rc;
}

/* Parses a string (the opening quote is next) into an arena copy. */
static veil_err parse_string(struct jp *p, const char **out, size_t *out_len)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_buf b;
    veil_buf_init(&b, VEIL_LIMIT_CONFIG_FILE);
    uint8_t c;
    if (veil_span_get_u8(&p->s, &c) != VEIL_OK || c != '"') {
        rc = fail(p, "expected string");
        goto out;
    }
    for (;;) {
        if (veil_span_get_u8(&p->s, &c) != VEIL_OK) {
            rc = fail(p, "unterminated string");
            goto out;
        }
        if (c == '"')
            break;
        if (c < 0x20) {
            rc = fail(p, "control character in string");
            goto out;
        }
        if (c == '\\') {
            uint8_t e;
            if (veil_span_get_u8(&p->s, &e) != VEIL_OK) {
                rc = fail(p, "unterminated escape");
                goto out;
            }
            uint32_t cp;
            switch (e) {
            case '"':
                cp = '"';
                break;
            case '\\':
                cp = '\\';
                break;
            case '/':
                cp = '/';
                break;
            case 'b':
                cp = '\b';
                break;
            case 'f':
                cp = '\f';
                break;
            case 'n':
                cp = '\n';
                break;
            case 'r':
                cp = '\r';
                break;
            case 't':
                cp = '\t';
                break;
            case 'u':
                if ((rc = get_hex4(p, &cp)) != VEIL_OK)
                    goto out;
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    rc = fail(p, "lone low surrogate");
                    goto out;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo;
                    if (expect_lit(p, "\\u") != VEIL_OK) {
                        rc = fail(p, "lone high surrogate");
                        goto out;
                    }
                    if ((rc = get_hex4(p, &lo)) != VEIL_OK)
                        goto out;
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        rc = fail(p, "bad surrogate pair");
                        goto out;
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                if (cp == 0) {
                    rc = fail(p, "NUL in string");
                    goto out;
                }
                break;
            default:
                rc = fail(p, "bad escape");
                goto out;
            }
            if ((rc = put_utf8(&b, cp)) != VEIL_OK)
                goto out;
        } else if (c < 0x80) {
            if ((rc = veil_buf_append_u8(&b, c)) != VEIL_OK)
                goto out;
        } else {
            if ((rc = utf8_seq(p, c, &b)) != VEIL_OK)
                goto out;
        }
    }
    char *s = NULL;
    if ((rc = veil_arena_strdup(p->a, veil_buf_span(&b), &s)) != VEIL_OK)
        goto out;
    *out = s;
    *out_len = b.len;
    rc = VEIL_OK;
out:
    veil_buf_release(&b);
    return rc;
}

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static veil_err parse_number(struct jp *p, struct veil_json *v)
{
    struct veil_span start = p->s;
    size_t n = 0;
    bool integer = true;
    uint8_t c;
    if (peek(p, &c) && c == '-')
        advance(p);
    if (!peek(p, &c) || !is_digit(c))
        return fail(p, "bad number");
    advance(p);
    if (c != '0')
        while (peek(p, &c) && is_digit(c))
            advance(p);
    if (peek(p, &c) && c == '.') {
        integer = false;
        advance(p);
        if (!peek(p, &c) || !is_digit(c))
            return fail(p, "bad fraction");
        while (peek(p, &c) && is_digit(c))
            advance(p);
    }
    if (peek(p, &c) && (c == 'e' || c == 'E')) {
        integer = false;
        advance(p);
        if (peek(p, &c) && (c == '+' || c == '-'))
            advance(p);
        if (!peek(p, &c) || !is_digit(c))
            return fail(p, "bad exponent");
        while (peek(p, &c) && is_digit(c))
            advance(p);
    }
    n = start.len - p->s.len;
    if (n > 64)
        return fail(p, "number too long");
    char tmp[65];
    memcpy(tmp, start.p, n);
    tmp[n] = '\0';
    v->type = VEIL_JSON_NUMBER;
    errno = 0;
    v->num = strtod(tmp, NULL);
    if (integer) {
        errno = 0;
        char *end = NULL;
        long long ll = strtoll(tmp, &end, 10);
        if (errno == 0 && end == tmp + n) {
            v->is_int = true;
            v->i = (int64_t)ll;
        }
    }
    return VEIL_OK;
}

static veil_err parse_value(struct jp *p, size_t depth, struct veil_json **out);

static veil_err grow(struct jp *p, void **arr, size_t n, size_t *cap, size_t elem)
{
    if (n < *cap)
        return VEIL_OK;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *na = NULL;
    veil_err rc = veil_arena_allocarray(p->a, ncap, elem, 8, &na);
    if (rc != VEIL_OK)
        return rc;
    if (n > 0)
        memcpy(na, *arr, n * elem);
    *arr = na;
    *cap = ncap;
    return VEIL_OK;
}

static veil_err parse_array(struct jp *p, size_t depth, struct veil_json *v)
{
    veil_err rc;
    size_t cap = 0;
    void *items = NULL;
    uint8_t c;
    v->type = VEIL_JSON_ARRAY;
    advance(p);
    skip_ws(p);
    if (peek(p, &c) && c == ']') {
        advance(p);
        return VEIL_OK;
    }
    for (;;) {
        struct veil_json *item = NULL;
        if ((rc = parse_value(p, depth + 1, &item)) != VEIL_OK)
            return rc;
        if ((rc = grow(p, &items, v->n, &cap, sizeof(struct veil_json *))) != VEIL_OK)
            return rc;
        ((struct veil_json **)items)[v->n++] = item;
        v->items = items;
        skip_ws(p);
        if (veil_span_get_u8(&p->s, &c) != VEIL_OK)
            return fail(p, "unterminated array");
        if (c == ']')
            return VEIL_OK;
        if (c != ',')
            return fail(p, "expected ',' or ']'");
    }
}

static veil_err parse_object(struct jp *p, size_t depth, struct veil_json *v)
{
    veil_err rc;
    size_t cap = 0;
    void *members = NULL;
    uint8_t c;
    v->type = VEIL_JSON_OBJECT;
    advance(p);
    skip_ws(p);
    if (peek(p, &c) && c == '}') {
        advance(p);
        return VEIL_OK;
    }
    for (;;) {
        struct veil_json_member m = {0};
        skip_ws(p);
        if ((rc = parse_string(p, &m.key, &m.key_len)) != VEIL_OK)
            return rc;
        for (size_t i = 0; i < v->n; i++)
            if (v->members[i].key_len == m.key_len &&
                memcmp(v->members[i].key, m.key, m.key_len) == 0)
                return fail(p, "duplicate key");
        skip_ws(p);
        if (veil_span_get_u8(&p->s, &c) != VEIL_OK || c != ':')
            return fail(p, "expected ':'");
        if ((rc = parse_value(p, depth + 1, &m.value)) != VEIL_OK)
            return rc;
        if ((rc = grow(p, &members, v->n, &cap, sizeof(struct veil_json_member))) != VEIL_OK)
            return rc;
        ((struct veil_json_member *)members)[v->n++] = m;
        v->members = members;
        skip_ws(p);
        if (veil_span_get_u8(&p->s, &c) != VEIL_OK)
            return fail(p, "unterminated object");
        if (c == '}')
            return VEIL_OK;
        if (c != ',')
            return fail(p, "expected ',' or '}'");
    }
}

static veil_err parse_value(struct jp *p, size_t depth, struct veil_json **out)
{
    veil_err rc;
    struct veil_json *v = NULL;
    uint8_t c;
    if (depth > VEIL_JSON_MAX_DEPTH)
        return veil_errf(p->eb, VEIL_E_LIMIT, "JSON: nesting deeper than %d", VEIL_JSON_MAX_DEPTH);
    skip_ws(p);
    if (!peek(p, &c))
        return fail(p, "unexpected end");
    if ((rc = veil_arena_alloc(p->a, sizeof(*v), 8, (void **)&v)) != VEIL_OK)
        return rc;
    struct veil_span start = p->s;
    switch (c) {
    case '{':
        rc = parse_object(p, depth, v);
        break;
    case '[':
        rc = parse_array(p, depth, v);
        break;
    case '"':
        v->type = VEIL_JSON_STRING;
        rc = parse_string(p, &v->str, &v->str_len);
        break;
    case 't':
        v->type = VEIL_JSON_BOOL;
        v->b = true;
        rc = expect_lit(p, "true");
        break;
    case 'f':
        v->type = VEIL_JSON_BOOL;
        rc = expect_lit(p, "false");
        break;
    case 'n':
        v->type = VEIL_JSON_NULL;
        rc = expect_lit(p, "null");
        break;
    default:
        if (c == '-' || is_digit(c))
            rc = parse_number(p, v);
        else
            rc = fail(p, "unexpected character");
        break;
    }
    if (rc != VEIL_OK)
        return rc;
    v->raw = veil_span_make(start.p, start.len - p->s.len);
    *out = v;
    return VEIL_OK;
}

veil_err veil_json_parse(struct veil_span text, struct veil_arena *a, struct veil_json **out,
                         struct veil_errbuf *eb)
{
    struct jp p = {text, text.len, a, eb};
    struct veil_json *v = NULL;
    *out = NULL;
    veil_err rc = parse_value(&p, 0, &v);
    if (rc != VEIL_OK)
        return rc;
    skip_ws(&p);
    if (p.s.len != 0)
        return fail(&p, "trailing bytes after value");
    *out = v;
    return VEIL_OK;
}

const struct veil_json *veil_json_get(const struct veil_json *obj, const char *key)
{
    if (obj == NULL || obj->type != VEIL_JSON_OBJECT)
        return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < obj->n; i++)
        if (obj->members[i].key_len == kl && memcmp(obj->members[i].key, key, kl) == 0)
            return obj->members[i].value;
    return NULL;
}

const char *veil_json_get_str(const struct veil_json *obj, const char *key)
{
    const struct veil_json *v = veil_json_get(obj, key);
    return v != NULL && v->type == VEIL_JSON_STRING ? v->str : NULL;
}

veil_err veil_json_append_str(struct veil_buf *b, struct veil_span s)
{
    static const char hex[] = "0123456789abcdef";
    veil_err rc = veil_buf_append_u8(b, '"');
    for (size_t i = 0; rc == VEIL_OK && i < s.len; i++) {
        uint8_t c = s.p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            rc = veil_buf_append(b, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            rc = veil_buf_append(b, esc, 6);
        } else {
            rc = veil_buf_append_u8(b, c);
        }
    }
    if (rc == VEIL_OK)
        rc = veil_buf_append_u8(b, '"');
    return rc;
}
