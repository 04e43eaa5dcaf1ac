/*
 * The broker's HTTP/1.1 framing: a strict parser for message heads (request or response) and
 * the blocking read/write of whole messages over an OpenSSL connection. Only Content-Length
 * bodies are accepted (no chunked encoding), heads and bodies are capped, and every byte is
 * read through the span reader. The reader grows its buffer after parsing the head, so the
 * head's views are carried across that growth as offsets, never as pointers.
 */
#include "kbs_int.h"

#include <openssl/err.h>
#include <limits.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

static bool is_tchar(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool ieq(struct veil_span s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t a = s.p[i], b = (uint8_t)lit[i];
        if (a >= 'A' && a <= 'Z')
            a = (uint8_t)(a + 32);
        if (a != b)
            return false;
    }
    return true;
}

/* Takes one CRLF-terminated line (without the CRLF). */
static veil_err get_line(struct veil_span *s, struct veil_span *line)
{
    veil_err rc = veil_span_get_until(s, '\n', line);
    if (rc != VEIL_OK)
        return rc;
    if (line->len == 0 || line->p[line->len - 1] != '\r')
        return VEIL_E_FORMAT;
    line->len--;
    return VEIL_OK;
}

static veil_err parse_uint(struct veil_span s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (s.len == 0 || s.len > 19)
        return VEIL_E_FORMAT;
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return VEIL_E_FORMAT;
        v = v * 10 + (uint64_t)(s.p[i] - '0');
    }
    if (v > max)
        return VEIL_E_LIMIT;
    *out = v;
    return VEIL_OK;
}

veil_err veil_kbs_http_parse(struct veil_span bytes, bool is_request,
                             struct veil_kbs_http_head *out)
{
    struct veil_kbs_http_head h;
    memset(&h, 0, sizeof(h));
    memset(out, 0, sizeof(*out));
    struct veil_span s = bytes, line;
    if (bytes.len > VEIL_LIMIT_KBS_HEAD)
        s.len = VEIL_LIMIT_KBS_HEAD;
    veil_err rc = get_line(&s, &line);
    if (rc != VEIL_OK)
        return rc == VEIL_E_INCOMPLETE && bytes.len >= VEIL_LIMIT_KBS_HEAD ? VEIL_E_LIMIT : rc;
    struct veil_span a, b;
    if (veil_span_get_until(&line, ' ', &a) != VEIL_OK)
        return VEIL_E_FORMAT;
    if (veil_span_get_until(&line, ' ', &b) != VEIL_OK) {
        if (is_request)
            return VEIL_E_FORMAT;
        b = line; /* a response without a reason phrase */
        line = veil_span_make(NULL, 0);
    }
    if (is_request) {
        if (a.len == 0 || a.len > 16 || b.len == 0 || b.p[0] != '/' ||
            !veil_span_eq_str(line, "HTTP/1.1"))
            return VEIL_E_FORMAT;
        for (size_t i = 0; i < a.len; i++)
            if (!is_tchar(a.p[i]))
                return VEIL_E_FORMAT;
        for (size_t i = 0; i < b.len; i++)
            if (b.p[i] <= 0x20 || b.p[i] >= 0x7f)
                return VEIL_E_FORMAT;
        h.method = a;
        h.path = b;
    } else {
        uint64_t st;
        if (!veil_span_eq_str(a, "HTTP/1.1") || b.len != 3 || parse_uint(b, 999, &st) != VEIL_OK ||
            st < 100)
            return VEIL_E_FORMAT;
        h.status = (int)st;
    }
    for (size_t count = 0;; count++) {
        rc = get_line(&s, &line);
        if (rc == VEIL_E_INCOMPLETE && bytes.len >= VEIL_LIMIT_KBS_HEAD)
            return VEIL_E_LIMIT;
        if (rc != VEIL_OK)
            return rc;
        if (line.len == 0)
            break;
        if (count >= 100)
            return VEIL_E_LIMIT;
        struct veil_span name;
        if (veil_span_get_until(&line, ':', &name) != VEIL_OK || name.len == 0)
            return VEIL_E_FORMAT;
        for (size_t i = 0; i < name.len; i++)
            if (!is_tchar(name.p[i]))
                return VEIL_E_FORMAT;
        for (size_t i = 0; i < line.len; i++)
            if ((line.p[i] < 0x20 && line.p[i] != '\t') || line.p[i] == 0x7f)
                return VEIL_E_FORMAT;
        struct veil_span value = veil_span_trim(line);
        if (ieq(name, "content-length")) {
            uint64_t n;
            if (h.has_content_length)
                return VEIL_E_FORMAT;
            rc = parse_uint(value, VEIL_LIMIT_KBS_BODY, &n);
            if (rc != VEIL_OK)
                return rc;
            h.content_length = n;
            h.has_content_length = true;
        } else if (ieq(name, "transfer-encoding")) {
            return VEIL_E_FORMAT;
        } else if (ieq(name, "connection")) {
            h.close = ieq(value, "close");
        }
    }
    h.head_len = (size_t)(s.p - bytes.p);
    *out = h;
    return VEIL_OK;
}

veil_err veil__kbs_http_complete(struct veil_span bytes, bool is_request,
                                 struct veil_kbs_http_head *head, struct veil_span *body)
{
    *body = veil_span_make(NULL, 0);
    veil_err rc = veil_kbs_http_parse(bytes, is_request, head);
    if (rc != VEIL_OK)
        return rc;
    if (bytes.len - head->head_len < head->content_length) {
        memset(head, 0, sizeof(*head));
        return VEIL_E_INCOMPLETE;
    }
    if (head->content_length > 0)
        *body = veil_span_make(bytes.p + head->head_len, (size_t)head->content_length);
    return VEIL_OK;
}

/* The offset of a view inside buf: unlike the view, it survives buf moving. */
static size_t offset_in(const struct veil_buf *buf, struct veil_span v)
{
    return v.len == 0 ? 0 : (size_t)(v.p - buf->p);
}

static struct veil_span view_at(const struct veil_buf *buf, size_t off, size_t len)
{
    return len == 0 ? veil_span_make(NULL, 0) : veil_span_make(buf->p + off, len);
}

veil_err veil__kbs_read_message_from(veil__kbs_read_fn rd, void *ctx, bool is_request,
                                     struct veil_buf *buf, struct veil_kbs_http_head *head,
                                     struct veil_span *body)
{
    veil_err rc;
    memset(head, 0, sizeof(*head));
    *body = veil_span_make(NULL, 0);
    veil_buf_reset(buf);
    for (;;) {
        /* The head is parsed afresh after each read, so no view outlives a growth here. */
        rc = veil_kbs_http_parse(veil_buf_span(buf), is_request, head);
        if (rc == VEIL_OK)
            break;
        if (rc != VEIL_E_INCOMPLETE)
            goto fail;
        rc = veil_buf_reserve(buf, 4096);
        if (rc != VEIL_OK)
            goto fail;
        size_t n = rd(ctx, buf->p + buf->len, 4096);
        if (n == 0) {
            rc = buf->len == 0 ? VEIL_E_CANCELLED : VEIL_E_INCOMPLETE;
            goto fail;
        }
        buf->len += n;
    }
    /*
     * Reading the body grows buf, which may move it: the head's views would then point at
     * freed memory (issue 18, before authentication). Keep offsets across the growth and
     * rebuild the views after it.
     */
    size_t method_off = offset_in(buf, head->method), path_off = offset_in(buf, head->path);
    size_t need = head->head_len + (size_t)head->content_length;
    while (buf->len < need) {
        rc = veil_buf_reserve(buf, need - buf->len);
        if (rc != VEIL_OK)
            goto fail;
        size_t n = rd(ctx, buf->p + buf->len, need - buf->len);
        if (n == 0) {
            rc = VEIL_E_INCOMPLETE;
            goto fail;
        }
        buf->len += n;
    }
    head->method = view_at(buf, method_off, head->method.len);
    head->path = view_at(buf, path_off, head->path.len);
    *body = view_at(buf, head->head_len, (size_t)head->content_length);
    return VEIL_OK;
fail:
    memset(head, 0, sizeof(*head));
    return rc;
}

static size_t ssl_read(void *ctx, uint8_t *p, size_t n)
{
    int r = SSL_read(ctx, p, n > INT_MAX ? INT_MAX : (int)n);
    return r > 0 ? (size_t)r : 0;
}

veil_err veil__kbs_read_message(SSL *ssl, bool is_request, struct veil_buf *buf,
                                struct veil_kbs_http_head *head, struct veil_span *body)
{
    return veil__kbs_read_message_from(ssl_read, ssl, is_request, buf, head, body);
}

veil_err veil__kbs_write_all(SSL *ssl, const void *p, size_t n)
{
    const uint8_t *q = p;
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        int w = SSL_write(ssl, q, chunk);
        if (w <= 0)
            return VEIL_E_IO;
        q += w;
        n -= (size_t)w;
    }
    return VEIL_OK;
}
