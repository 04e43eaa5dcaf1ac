/*
 * Protobuf text format, as TF Serving's configuration files use it (ModelServerConfig,
 * BatchingParameters, SSLConfig, MonitoringConfig): `name: value` and `name { ... }` (the
 * colon before a brace optional, `<...>` as an alternative to braces), quoted strings with C
 * escapes in single or double quotes (adjacent strings concatenate), `#` comments, and `,` or
 * `;` separators. The parser is a pure function into an arena tree; the extractors reject
 * unknown fields so a typo in a config file is an error with its line, never ignored.
 */
#include "serve_int.h"

#include <stdio.h>
#include <string.h>

#define TP_MAX_DEPTH 32

struct tp_lexer {
    struct veil_span s;
    uint32_t line;
    struct veil_arena *a;
    struct veil_errbuf *eb;
};

static void skip_ws(struct tp_lexer *lx)
{
    while (lx->s.len > 0) {
        uint8_t c = lx->s.p[0];
        if (c == '\n') {
            lx->line++;
        } else if (c == '#') {
            while (lx->s.len > 0 && lx->s.p[0] != '\n')
                sv_skip(&lx->s, 1);
            continue;
        } else if (c != ' ' && c != '\t' && c != '\r' && c != '\f' && c != '\v') {
            return;
        }
        sv_skip(&lx->s, 1);
    }
}

static bool is_ident(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || c == '+';
}

static veil_err lex_ident(struct tp_lexer *lx, struct veil_span *out)
{
    size_t n = 0;
    while (n < lx->s.len && is_ident(lx->s.p[n]))
        n++;
    if (n == 0)
        return veil_errf(lx->eb, VEIL_E_FORMAT, "line %u: expected a name or value", lx->line);
    return veil_span_get_bytes(&lx->s, n, out);
}

/* Reads one or more adjacent quoted strings, unescaped, into the arena. */
static veil_err lex_string(struct tp_lexer *lx, struct veil_span *out)
{
    veil_err rc;
    struct veil_buf b;
    veil_buf_init(&b, VEIL_LIMIT_CONFIG_FILE);
    while (lx->s.len > 0 && (lx->s.p[0] == '"' || lx->s.p[0] == '\'')) {
        uint8_t q, c;
        sv_get_u8(&lx->s, &q);
        for (;;) {
            if (veil_span_get_u8(&lx->s, &c) != VEIL_OK || c == '\n') {
                rc = veil_errf(lx->eb, VEIL_E_FORMAT, "line %u: unterminated string", lx->line);
                goto out;
            }
            if (c == q)
                break;
            if (c == '\\') {
                uint8_t e;
                if (veil_span_get_u8(&lx->s, &e) != VEIL_OK) {
                    rc = veil_errf(lx->eb, VEIL_E_FORMAT, "line %u: bad escape", lx->line);
                    goto out;
                }
                switch (e) {
                case 'n':
                    c = '\n';
                    break;
                case 't':
                    c = '\t';
                    break;
                case 'r':
                    c = '\r';
                    break;
                case 'a':
                    c = '\a';
                    break;
                case 'b':
                    c = '\b';
                    break;
                case 'f':
                    c = '\f';
                    break;
                case 'v':
                    c = '\v';
                    break;
                case '\\':
                case '\'':
                case '"':
                case '?':
                    c = e;
                    break;
                case 'x': {
                    int v = 0, d, k = 0;
                    while (k < 2 && lx->s.len > 0 && (d = veil_hex_digit(lx->s.p[0])) >= 0) {
                        v = v * 16 + d;
                        sv_skip(&lx->s, 1);
                        k++;
                    }
                    if (k == 0) {
                        rc = veil_errf(lx->eb, VEIL_E_FORMAT, "line %u: bad \\x escape", lx->line);
                        goto out;
                    }
                    c = (uint8_t)v;
                    break;
                }
                default:
                    if (e >= '0' && e <= '7') {
                        int v = e - '0', k = 1;
                        while (k < 3 && lx->s.len > 0 && lx->s.p[0] >= '0' && lx->s.p[0] <= '7') {
                            v = v * 8 + (lx->s.p[0] - '0');
                            sv_skip(&lx->s, 1);
                            k++;
                        }
                        c = (uint8_t)v;
                    } else {
                        rc = veil_errf(lx->eb, VEIL_E_FORMAT, "line %u: bad escape \\%c", lx->line,
                                       e);
                        goto out;
                    }
                }
            }
            if ((rc = veil_buf_append_u8(&b, c)) != VEIL_OK)
                goto out;
        }
        skip_ws(lx);
    }
    {
        char *copy = NULL;
        rc = veil_arena_strdup(lx->a, veil_buf_span(&b), &copy);
        if (rc != VEIL_OK)
            goto out;
        *out = veil_span_make(copy, b.len);
    }
    rc = VEIL_OK;
out:
    veil_buf_release(&b);
    return rc;
}

static veil_err parse_fields(struct tp_lexer *lx, uint8_t close, unsigned depth,
                             struct tp_node **first)
{
    struct tp_node **tail = first;
    veil_err rc;
    if (depth > TP_MAX_DEPTH)
        return veil_errf(lx->eb, VEIL_E_LIMIT, "line %u: nesting too deep", lx->line);
    for (;;) {
        skip_ws(lx);
        if (lx->s.len == 0) {
            if (close != 0)
                return veil_errf(lx->eb, VEIL_E_FORMAT, "line %u: missing '%c'", lx->line, close);
            return VEIL_OK;
        }
        if (close != 0 && lx->s.p[0] == close) {
            sv_skip(&lx->s, 1);
            return VEIL_OK;
        }
        struct tp_node *n = NULL;
        rc = veil_arena_alloc(lx->a, sizeof(*n), 8, (void **)&n);
        if (rc != VEIL_OK)
            return rc;
        n->line = lx->line;
        /* Extension and Any names in brackets are not used by these configs. */
        if ((rc = lex_ident(lx, &n->name)) != VEIL_OK)
            return rc;
        skip_ws(lx);
        bool colon = false;
        if (lx->s.len > 0 && lx->s.p[0] == ':') {
            sv_skip(&lx->s, 1);
            colon = true;
            skip_ws(lx);
        }
        if (lx->s.len == 0)
            return veil_errf(lx->eb, VEIL_E_FORMAT, "line %u: value expected after '%.*s'",
                             lx->line, (int)n->name.len, (const char *)n->name.p);
        uint8_t c = lx->s.p[0];
        if (c == '{' || c == '<') {
            sv_skip(&lx->s, 1);
            n->is_msg = true;
            rc = parse_fields(lx, c == '{' ? '}' : '>', depth + 1, &n->child);
            if (rc != VEIL_OK)
                return rc;
        } else if (!colon) {
            return veil_errf(lx->eb, VEIL_E_FORMAT, "line %u: expected ':' after '%.*s'", lx->line,
                             (int)n->name.len, (const char *)n->name.p);
        } else if (c == '"' || c == '\'') {
            n->is_string = true;
            if ((rc = lex_string(lx, &n->value)) != VEIL_OK)
                return rc;
        } else if (c == '[') {
            return veil_errf(lx->eb, VEIL_E_FORMAT, "line %u: list values are not supported",
                             lx->line);
        } else {
            if ((rc = lex_ident(lx, &n->value)) != VEIL_OK)
                return rc;
        }
        *tail = n;
        tail = &n->next;
        skip_ws(lx);
        if (lx->s.len > 0 && (lx->s.p[0] == ',' || lx->s.p[0] == ';'))
            sv_skip(&lx->s, 1);
    }
}

veil_err veil__serve_tp_parse(struct veil_span text, struct veil_arena *a, struct tp_node **root,
                              struct veil_errbuf *eb)
{
    struct tp_lexer lx = {text, 1, a, eb};
    *root = NULL;
    struct tp_node *first = NULL;
    veil_err rc = parse_fields(&lx, 0, 0, &first);
    if (rc != VEIL_OK)
        return rc;
    *root = first;
    return VEIL_OK;
}

/* ---- Extraction helpers ---- */

static bool name_is(const struct tp_node *n, const char *s)
{
    return veil_span_eq_str(n->name, s);
}

static veil_err unknown(const struct tp_node *n, const char *msg, struct veil_errbuf *eb)
{
    return veil_errf(eb, VEIL_E_FORMAT, "line %u: unknown field '%.*s' in %s", n->line,
                     (int)n->name.len, (const char *)n->name.p, msg);
}

static veil_err want_scalar(const struct tp_node *n, struct veil_errbuf *eb)
{
    if (n->is_msg)
        return veil_errf(eb, VEIL_E_FORMAT, "line %u: '%.*s' takes a value, not a message", n->line,
                         (int)n->name.len, (const char *)n->name.p);
    return VEIL_OK;
}

static veil_err get_string(const struct tp_node *n, struct veil_arena *a, char **out,
                           struct veil_errbuf *eb)
{
    veil_err rc = want_scalar(n, eb);
    if (rc != VEIL_OK)
        return rc;
    if (!n->is_string)
        return veil_errf(eb, VEIL_E_FORMAT, "line %u: '%.*s' needs a quoted string", n->line,
                         (int)n->name.len, (const char *)n->name.p);
    /* A "\0" escape would silently cut the C string (a name or a base path) short. */
    if (n->value.len > 0 && memchr(n->value.p, 0, n->value.len) != NULL)
        return veil_errf(eb, VEIL_E_FORMAT, "line %u: '%.*s' holds a NUL byte", n->line,
                         (int)n->name.len, (const char *)n->name.p);
    return veil_arena_strdup(a, n->value, out);
}

static veil_err get_i64(const struct tp_node *n, int64_t *out, struct veil_errbuf *eb)
{
    veil_err rc = want_scalar(n, eb);
    if (rc != VEIL_OK)
        return rc;
    struct veil_span v = n->value;
    bool neg = false;
    uint64_t acc = 0;
    if (n->is_string || v.len == 0)
        goto bad;
    if (v.p[0] == '-' || v.p[0] == '+') {
        neg = v.p[0] == '-';
        sv_skip(&v, 1);
    }
    if (v.len == 0 || v.len > 19)
        goto bad;
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            goto bad;
        acc = acc * 10 + (uint64_t)(v.p[i] - '0');
    }
    if (acc > (uint64_t)INT64_MAX)
        goto bad;
    *out = neg ? -(int64_t)acc : (int64_t)acc;
    return VEIL_OK;
bad:
    return veil_errf(eb, VEIL_E_FORMAT, "line %u: '%.*s' needs an integer", n->line,
                     (int)n->name.len, (const char *)n->name.p);
}

static veil_err get_bool(const struct tp_node *n, bool *out, struct veil_errbuf *eb)
{
    veil_err rc = want_scalar(n, eb);
    if (rc != VEIL_OK)
        return rc;
    if (!n->is_string && (veil_span_eq_str(n->value, "true") || veil_span_eq_str(n->value, "1") ||
                          veil_span_eq_str(n->value, "True") || veil_span_eq_str(n->value, "t"))) {
        *out = true;
        return VEIL_OK;
    }
    if (!n->is_string && (veil_span_eq_str(n->value, "false") || veil_span_eq_str(n->value, "0") ||
                          veil_span_eq_str(n->value, "False") || veil_span_eq_str(n->value, "f"))) {
        *out = false;
        return VEIL_OK;
    }
    return veil_errf(eb, VEIL_E_FORMAT, "line %u: '%.*s' needs true or false", n->line,
                     (int)n->name.len, (const char *)n->name.p);
}

static veil_err want_msg(const struct tp_node *n, struct veil_errbuf *eb)
{
    if (!n->is_msg)
        return veil_errf(eb, VEIL_E_FORMAT, "line %u: '%.*s' takes a message { ... }", n->line,
                         (int)n->name.len, (const char *)n->name.p);
    return VEIL_OK;
}

/* A google.protobuf wrapper: `{ value: N }`; a bare value is accepted too. */
static veil_err get_wrapped_i64(const struct tp_node *n, int64_t *out, struct veil_errbuf *eb)
{
    if (!n->is_msg)
        return get_i64(n, out, eb);
    *out = 0;
    for (const struct tp_node *c = n->child; c != NULL; c = c->next) {
        if (!name_is(c, "value"))
            return unknown(c, "a wrapper value", eb);
        veil_err rc = get_i64(c, out, eb);
        if (rc != VEIL_OK)
            return rc;
    }
    return VEIL_OK;
}

/* ---- ModelServerConfig ---- */

static veil_err parse_policy(const struct tp_node *n, struct veil_arena *a,
                             struct sv_model_config *m, struct veil_errbuf *eb)
{
    veil_err rc;
    if ((rc = want_msg(n, eb)) != VEIL_OK)
        return rc;
    size_t kinds = 0;
    for (const struct tp_node *c = n->child; c != NULL; c = c->next) {
        if ((rc = want_msg(c, eb)) != VEIL_OK)
            return rc;
        kinds++;
        if (name_is(c, "latest")) {
            m->policy = SV_POLICY_LATEST;
            m->latest_n = 1;
            for (const struct tp_node *d = c->child; d != NULL; d = d->next) {
                int64_t v = 0;
                if (!name_is(d, "num_versions"))
                    return unknown(d, "latest", eb);
                if ((rc = get_i64(d, &v, eb)) != VEIL_OK)
                    return rc;
                if (v < 1 || v > 1000)
                    return veil_errf(eb, VEIL_E_FORMAT, "line %u: num_versions out of range",
                                     d->line);
                m->latest_n = (uint32_t)v;
            }
        } else if (name_is(c, "all")) {
            m->policy = SV_POLICY_ALL;
            if (c->child != NULL)
                return unknown(c->child, "all", eb);
        } else if (name_is(c, "specific")) {
            m->policy = SV_POLICY_SPECIFIC;
            size_t cnt = 0;
            for (const struct tp_node *d = c->child; d != NULL; d = d->next) {
                if (!name_is(d, "versions"))
                    return unknown(d, "specific", eb);
                cnt++;
            }
            if (cnt == 0)
                return veil_errf(eb, VEIL_E_FORMAT, "line %u: specific policy lists no versions",
                                 c->line);
            if ((rc = veil_arena_allocarray(a, cnt, sizeof(int64_t), 8, (void **)&m->versions)) !=
                VEIL_OK)
                return rc;
            m->n_versions = 0;
            for (const struct tp_node *d = c->child; d != NULL; d = d->next)
                if ((rc = get_i64(d, &m->versions[m->n_versions++], eb)) != VEIL_OK)
                    return rc;
        } else {
            return unknown(c, "model_version_policy", eb);
        }
    }
    if (kinds > 1)
        return veil_errf(eb, VEIL_E_FORMAT, "line %u: more than one version policy", n->line);
    return VEIL_OK;
}

/*
 * Checks a model or label name from the config: 1..SV_NAME_MAX bytes, no control character,
 * '/', '"' or '\\'. Names go into paths, logs, JSON and the Prometheus text, and REST matches
 * them against percent-decoded URLs (which refuse control characters), so any of these would
 * let a config entry cut, inject or never match. On failure the error names the offending
 * byte, not the raw name.
 */
static veil_err check_name(const char *what, const char *name, unsigned line,
                           struct veil_errbuf *eb)
{
    size_t len = strlen(name);
    if (len == 0 || len > SV_NAME_MAX)
        return veil_errf(eb, VEIL_E_FORMAT, "line %u: %s name must be 1 to %d bytes", line, what,
                         SV_NAME_MAX);
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)name[i];
        if (c < 0x20 || c == 0x7f || c == '/' || c == '"' || c == '\\')
            return veil_errf(eb, VEIL_E_FORMAT,
                             "line %u: %s name has byte 0x%02x at offset %zu: names are "
                             "printable, without '/', '\"', '\\' or control characters",
                             line, what, c, i);
    }
    return VEIL_OK;
}

static veil_err parse_label(const struct tp_node *n, struct sv_label *l, struct veil_arena *a,
                            struct veil_errbuf *eb)
{
    veil_err rc;
    bool has_key = false, has_value = false;
    if ((rc = want_msg(n, eb)) != VEIL_OK)
        return rc;
    for (const struct tp_node *c = n->child; c != NULL; c = c->next) {
        if (name_is(c, "key")) {
            if ((rc = get_string(c, a, &l->name, eb)) != VEIL_OK)
                return rc;
            has_key = true;
        } else if (name_is(c, "value")) {
            if ((rc = get_i64(c, &l->version, eb)) != VEIL_OK)
                return rc;
            has_value = true;
        } else {
            return unknown(c, "version_labels", eb);
        }
    }
    if (!has_key || !has_value || l->name[0] == '\0')
        return veil_errf(eb, VEIL_E_FORMAT, "line %u: version_labels needs key and value", n->line);
    return check_name("label", l->name, n->line, eb);
}

static veil_err parse_one_model(const struct tp_node *n, struct veil_arena *a,
                                struct sv_model_config *m, struct veil_errbuf *eb)
{
    veil_err rc;
    size_t nl = 0;
    memset(m, 0, sizeof(*m));
    m->policy = SV_POLICY_LATEST;
    m->latest_n = 1;
    if ((rc = want_msg(n, eb)) != VEIL_OK)
        return rc;
    for (const struct tp_node *c = n->child; c != NULL; c = c->next)
        if (name_is(c, "version_labels"))
            nl++;
    if (nl > 0 && (rc = veil_arena_allocarray(a, nl, sizeof(struct sv_label), 8,
                                              (void **)&m->labels)) != VEIL_OK)
        return rc;
    for (const struct tp_node *c = n->child; c != NULL; c = c->next) {
        if (name_is(c, "name")) {
            rc = get_string(c, a, &m->name, eb);
        } else if (name_is(c, "base_path")) {
            rc = get_string(c, a, &m->base_path, eb);
        } else if (name_is(c, "model_platform")) {
            char *p = NULL;
            rc = get_string(c, a, &p, eb);
            if (rc == VEIL_OK && strcmp(p, "tensorflow") != 0 && strcmp(p, "onnx") != 0)
                rc = veil_errf(eb, VEIL_E_FORMAT, "line %u: model_platform '%s' is not served",
                               c->line, p);
        } else if (name_is(c, "model_type") || name_is(c, "logging_config")) {
            rc = VEIL_OK; /* deprecated / request logging: accepted and not used */
        } else if (name_is(c, "model_version_policy")) {
            rc = parse_policy(c, a, m, eb);
        } else if (name_is(c, "version_labels")) {
            rc = parse_label(c, &m->labels[m->n_labels], a, eb);
            if (rc == VEIL_OK) {
                for (size_t i = 0; i < m->n_labels; i++)
                    if (strcmp(m->labels[i].name, m->labels[m->n_labels].name) == 0)
                        return veil_errf(eb, VEIL_E_FORMAT,
                                         "line %u: label '%s' maps to more than one version",
                                         c->line, m->labels[i].name);
                m->n_labels++;
            }
        } else {
            rc = unknown(c, "config", eb);
        }
        if (rc != VEIL_OK)
            return rc;
    }
    if (m->name == NULL || m->name[0] == '\0')
        return veil_errf(eb, VEIL_E_FORMAT, "line %u: config without a name", n->line);
    if ((rc = check_name("model", m->name, n->line, eb)) != VEIL_OK)
        return rc;
    if (m->base_path == NULL || m->base_path[0] == '\0')
        return veil_errf(eb, VEIL_E_FORMAT, "line %u: config '%s' without a base_path", n->line,
                         m->name);
    return VEIL_OK;
}

veil_err veil__serve_parse_model_config(struct veil_span text, struct veil_arena *a,
                                        struct sv_model_config **out, size_t *n,
                                        struct veil_errbuf *eb)
{
    struct tp_node *root = NULL;
    veil_err rc = veil__serve_tp_parse(text, a, &root, eb);
    const struct tp_node *list = NULL;
    size_t cnt = 0;
    *out = NULL;
    *n = 0;
    if (rc != VEIL_OK)
        return rc;
    for (const struct tp_node *c = root; c != NULL; c = c->next) {
        if (name_is(c, "model_config_list")) {
            if ((rc = want_msg(c, eb)) != VEIL_OK)
                return rc;
            if (list != NULL)
                return veil_errf(eb, VEIL_E_FORMAT, "line %u: model_config_list given twice",
                                 c->line);
            list = c;
        } else if (name_is(c, "custom_model_config")) {
            return veil_errf(eb, VEIL_E_FORMAT, "line %u: custom_model_config is not supported",
                             c->line);
        } else {
            return unknown(c, "ModelServerConfig", eb);
        }
    }
    if (list == NULL)
        return veil_errf(eb, VEIL_E_FORMAT, "no model_config_list in the model config");
    for (const struct tp_node *c = list->child; c != NULL; c = c->next) {
        if (!name_is(c, "config"))
            return unknown(c, "model_config_list", eb);
        cnt++;
    }
    if (cnt > SV_MAX_MODELS)
        return veil_errf(eb, VEIL_E_LIMIT, "more than %u models", SV_MAX_MODELS);
    struct sv_model_config *ms = NULL;
    if (cnt > 0 && (rc = veil_arena_allocarray(a, cnt, sizeof(*ms), 8, (void **)&ms)) != VEIL_OK)
        return rc;
    size_t i = 0;
    for (const struct tp_node *c = list->child; c != NULL; c = c->next, i++) {
        if ((rc = parse_one_model(c, a, &ms[i], eb)) != VEIL_OK)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(ms[j].name, ms[i].name) == 0)
                return veil_errf(eb, VEIL_E_FORMAT, "line %u: model '%s' configured twice", c->line,
                                 ms[i].name);
    }
    *out = ms;
    *n = cnt;
    return VEIL_OK;
}

/* ---- BatchingParameters ---- */

void veil__serve_batching_defaults(struct sv_batching *b)
{
    if (b->max_batch_size <= 0)
        b->max_batch_size = 1000;
    if (b->batch_timeout_micros < 0)
        b->batch_timeout_micros = 0;
    if (b->max_enqueued_batches <= 0)
        b->max_enqueued_batches = 10;
    if (b->num_batch_threads <= 0)
        b->num_batch_threads = (int64_t)veil_cpu_count();
}

veil_err veil__serve_parse_batching(struct veil_span text, struct veil_arena *a,
                                    struct sv_batching *out, struct veil_errbuf *eb)
{
    struct tp_node *root = NULL;
    veil_err rc = veil__serve_tp_parse(text, a, &root, eb);
    memset(out, 0, sizeof(*out));
    out->batch_timeout_micros = -1;
    if (rc != VEIL_OK)
        return rc;
    for (const struct tp_node *c = root; c != NULL; c = c->next) {
        if (name_is(c, "max_batch_size"))
            rc = get_wrapped_i64(c, &out->max_batch_size, eb);
        else if (name_is(c, "batch_timeout_micros"))
            rc = get_wrapped_i64(c, &out->batch_timeout_micros, eb);
        else if (name_is(c, "max_enqueued_batches"))
            rc = get_wrapped_i64(c, &out->max_enqueued_batches, eb);
        else if (name_is(c, "num_batch_threads"))
            rc = get_wrapped_i64(c, &out->num_batch_threads, eb);
        else if (name_is(c, "allowed_batch_sizes")) {
            if (out->n_allowed >= sizeof(out->allowed) / sizeof(out->allowed[0]))
                return veil_errf(eb, VEIL_E_LIMIT, "line %u: too many allowed_batch_sizes",
                                 c->line);
            rc = get_i64(c, &out->allowed[out->n_allowed], eb);
            if (rc == VEIL_OK)
                out->n_allowed++;
        } else if (name_is(c, "thread_pool_name") || name_is(c, "pad_variable_length_inputs") ||
                   name_is(c, "enable_large_batch_splitting") ||
                   name_is(c, "max_execution_batch_size")) {
            rc = VEIL_OK; /* accepted; batches here are never split or padded in dims > 0 */
        } else {
            rc = unknown(c, "BatchingParameters", eb);
        }
        if (rc != VEIL_OK)
            return rc;
    }
    veil__serve_batching_defaults(out);
    for (size_t i = 0; i < out->n_allowed; i++) {
        if (out->allowed[i] <= 0 || (i > 0 && out->allowed[i] <= out->allowed[i - 1]))
            return veil_errf(eb, VEIL_E_FORMAT, "allowed_batch_sizes must be increasing");
    }
    if (out->n_allowed > 0 && out->allowed[out->n_allowed - 1] != out->max_batch_size)
        return veil_errf(eb, VEIL_E_FORMAT,
                         "the last allowed_batch_sizes entry must equal max_batch_size");
    return VEIL_OK;
}

/* ---- SSLConfig ---- */

veil_err veil__serve_parse_ssl(struct veil_span text, struct veil_arena *a, struct sv_ssl *out,
                               struct veil_errbuf *eb)
{
    struct tp_node *root = NULL;
    veil_err rc = veil__serve_tp_parse(text, a, &root, eb);
    memset(out, 0, sizeof(*out));
    if (rc != VEIL_OK)
        return rc;
    for (const struct tp_node *c = root; c != NULL; c = c->next) {
        char *s = NULL;
        if (name_is(c, "server_key")) {
            if ((rc = get_string(c, a, &s, eb)) == VEIL_OK)
                out->server_key = veil_span_from_str(s);
        } else if (name_is(c, "server_cert")) {
            if ((rc = get_string(c, a, &s, eb)) == VEIL_OK)
                out->server_cert = veil_span_from_str(s);
        } else if (name_is(c, "custom_ca")) {
            if ((rc = get_string(c, a, &s, eb)) == VEIL_OK)
                out->custom_ca = veil_span_from_str(s);
        } else if (name_is(c, "client_verify")) {
            rc = get_bool(c, &out->client_verify, eb);
        } else {
            rc = unknown(c, "SSLConfig", eb);
        }
        if (rc != VEIL_OK)
            return rc;
    }
    return VEIL_OK;
}

/* ---- MonitoringConfig ---- */

veil_err veil__serve_parse_monitoring(struct veil_span text, struct veil_arena *a,
                                      struct sv_monitoring *out, struct veil_errbuf *eb)
{
    struct tp_node *root = NULL;
    veil_err rc = veil__serve_tp_parse(text, a, &root, eb);
    memset(out, 0, sizeof(*out));
    snprintf(out->path, sizeof(out->path), "/monitoring/prometheus/metrics");
    if (rc != VEIL_OK)
        return rc;
    for (const struct tp_node *c = root; c != NULL; c = c->next) {
        if (!name_is(c, "prometheus_config"))
            return unknown(c, "MonitoringConfig", eb);
        if ((rc = want_msg(c, eb)) != VEIL_OK)
            return rc;
        for (const struct tp_node *d = c->child; d != NULL; d = d->next) {
            if (name_is(d, "enable")) {
                rc = get_bool(d, &out->enable, eb);
            } else if (name_is(d, "path")) {
                char *p = NULL;
                rc = get_string(d, a, &p, eb);
                if (rc == VEIL_OK && p[0] != '\0') {
                    if (p[0] != '/' || strlen(p) >= sizeof(out->path))
                        return veil_errf(eb, VEIL_E_FORMAT, "line %u: bad metrics path", d->line);
                    snprintf(out->path, sizeof(out->path), "%s", p);
                }
            } else {
                rc = unknown(d, "prometheus_config", eb);
            }
            if (rc != VEIL_OK)
                return rc;
        }
    }
    return VEIL_OK;
}
