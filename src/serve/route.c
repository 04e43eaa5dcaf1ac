/*
 * The REST URL grammar of TF Serving (http_rest_api_util.cc): the GET and POST regexes, matched
 * case-insensitively by hand, with percent-decoding of model names and labels after matching.
 */
#include "serve_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- URL grammar ---- */

bool veil__serve_eat_ci(struct veil_span *s, const char *lit)
{
    size_t n = strlen(lit);
    if (s->len < n || strncasecmp((const char *)s->p, lit, n) != 0)
        return false;
    sv_skip(s, n);
    return true;
}

/* [^/:]+ */
static bool eat_segment(struct veil_span *s, struct veil_span *out)
{
    size_t n = 0;
    while (n < s->len && s->p[n] != '/' && s->p[n] != ':')
        n++;
    if (n == 0)
        return false;
    *out = veil_span_make(s->p, n);
    sv_skip(s, n);
    return true;
}

bool veil__serve_path_unescape(struct veil_span seg, char *out, size_t cap)
{
    size_t w = 0;
    for (size_t i = 0; i < seg.len; i++) {
        uint8_t c = seg.p[i];
        if (c == '%' && i + 2 < seg.len && veil_hex_digit(seg.p[i + 1]) >= 0 &&
            veil_hex_digit(seg.p[i + 2]) >= 0) {
            c = (uint8_t)(veil_hex_digit(seg.p[i + 1]) * 16 + veil_hex_digit(seg.p[i + 2]));
            i += 2;
        }
        if (c < 0x20 || c == 0x7f)
            return false;
        if (w + 1 >= cap)
            return false;
        out[w++] = (char)c;
    }
    out[w] = '\0';
    return true;
}

/* The optional /versions/N or /labels/L part. */
static bool eat_version_or_label(struct veil_span *s, struct sv_route *rt)
{
    struct veil_span save = *s, seg;
    if (veil__serve_eat_ci(s, "/versions/")) {
        size_t n = 0;
        while (n < s->len && s->p[n] >= '0' && s->p[n] <= '9')
            n++;
        if (n == 0) {
            *s = save;
            return false;
        }
        struct veil_span d = veil_span_make(s->p, n);
        sv_skip(s, n);
        rt->has_version = true;
        snprintf(rt->version_text, sizeof(rt->version_text), "%.*s", (int)(n > 30 ? 30 : n),
                 (const char *)d.p);
        if (!veil__serve_json_i64(d, &rt->version))
            rt->version_overflow = true;
        return true;
    }
    if (veil__serve_eat_ci(s, "/labels/")) {
        if (!eat_segment(s, &seg) ||
            !veil__serve_path_unescape(seg, rt->label, sizeof(rt->label))) {
            *s = save;
            return false;
        }
        rt->has_label = true;
        return true;
    }
    return true;
}

bool veil__serve_rest_route_parse(const char *method, struct veil_span path, struct sv_route *rt)
{
    struct veil_span s = path, seg;
    memset(rt, 0, sizeof(*rt));
    if (!veil__serve_eat_ci(&s, "/v1/models"))
        return false;
    if (strcmp(method, "GET") == 0) {
        if (s.len == 0) {
            rt->missing_name = true;
            return true;
        }
        if (!veil__serve_eat_ci(&s, "/") || !eat_segment(&s, &seg))
            return false;
        if (!veil__serve_path_unescape(seg, rt->name, sizeof(rt->name)))
            return false;
        struct veil_span before = s;
        if (!eat_version_or_label(&s, rt))
            s = before;
        if (veil__serve_eat_ci(&s, "/metadata"))
            rt->metadata = true;
        return s.len == 0;
    }
    if (strcmp(method, "POST") == 0) {
        if (!veil__serve_eat_ci(&s, "/") || !eat_segment(&s, &seg))
            return false;
        if (!veil__serve_path_unescape(seg, rt->name, sizeof(rt->name)))
            return false;
        if (!eat_version_or_label(&s, rt))
            return false;
        if (veil__serve_eat_ci(&s, ":predict"))
            rt->verb = SV_VERB_PREDICT;
        else if (veil__serve_eat_ci(&s, ":classify"))
            rt->verb = SV_VERB_CLASSIFY;
        else if (veil__serve_eat_ci(&s, ":regress"))
            rt->verb = SV_VERB_REGRESS;
        else
            return false;
        return s.len == 0;
    }
    return false;
}
