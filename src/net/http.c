/*
 * HTTP/1.1 on libevent's evhttp, with TLS through OpenSSL bufferevents. Every request goes
 * to one handler; replies may come from any thread and are posted back to the loop, where
 * headers and body are queued together so they leave in one write (TCP_NODELAY is set too).
 * Request headers and bodies are capped by evhttp before the handler sees them.
 */
#include "net_int.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <string.h>
#include <unistd.h>

struct veil_http_server {
    struct veil_net_loop *loop;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    const struct veil_tls_ctx *tls;
    veil_http_handler_fn fn;
    void *ud;
    uint16_t port;
    size_t max_body;
};

struct veil_http_req {
    struct veil_http_server *srv;
    struct evhttp_request *er;
    char method[16];
    char *path;
    struct veil_span body;
    struct veil_buf inflated;
    veil_err body_rc;
    struct veil_errbuf body_eb;
    uint64_t start_ns;
    /* The reply, filled by veil_http_req_reply on any thread. */
    int status;
    char ctype[96];
    char *extra;
    struct evbuffer *out;
};

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "UNKNOWN";
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    }
    return "Unknown";
}

static void req_free(struct veil_http_req *req)
{
    if (req == NULL)
        return;
    veil_free(req->path);
    veil_free(req->extra);
    veil_buf_release(&req->inflated);
    if (req->out != NULL)
        evbuffer_free(req->out);
    veil_free(req);
}

static bool header_is(const char *v, const char *want)
{
    return v != NULL && strcasecmp(v, want) == 0;
}

/* True when er arrived over TLS, or the server is plaintext. evhttp gives a connection a plain
 * socket bufferevent when tls_bev fails (out of memory): a TLS port must never serve that. */
static bool over_expected_transport(const struct veil_http_server *srv, struct evhttp_request *er)
{
    if (srv->tls == NULL)
        return true;
    struct evhttp_connection *ec = evhttp_request_get_connection(er);
    struct bufferevent *bev = ec != NULL ? evhttp_connection_get_bufferevent(ec) : NULL;
    return bev != NULL && bufferevent_openssl_get_ssl(bev) != NULL;
}

static void on_request(struct evhttp_request *er, void *arg)
{
    struct veil_http_server *srv = arg;
    if (!over_expected_transport(srv, er)) {
        VEIL_LOG_WARN("REST request on a connection without TLS refused");
        evhttp_add_header(evhttp_request_get_output_headers(er), "Connection", "close");
        evhttp_send_error(er, 503, "Service Unavailable");
        return;
    }
    struct veil_http_req *req = veil_calloc(1, sizeof(*req));
    if (req == NULL) {
        evhttp_send_error(er, 503, "Service Unavailable");
        return;
    }
    req->srv = srv;
    req->er = er;
    req->start_ns = veil_time_mono_ns();
    veil_buf_init(&req->inflated, srv->max_body);
    snprintf(req->method, sizeof(req->method), "%s", method_name(evhttp_request_get_command(er)));
    const char *uri = evhttp_request_get_uri(er);
    if (uri == NULL)
        uri = "/";
    size_t plen = strcspn(uri, "?#");
    req->path = veil_strndup(uri, plen);
    req->out = evbuffer_new();
    if (req->path == NULL || req->out == NULL) {
        req_free(req);
        evhttp_send_error(er, 503, "Service Unavailable");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(er);
    size_t blen = evbuffer_get_length(in);
    const uint8_t *bp = blen > 0 ? evbuffer_pullup(in, -1) : NULL;
    if (blen > 0 && bp == NULL) {
        req_free(req);
        evhttp_send_error(er, 503, "Service Unavailable");
        return;
    }
    req->body = veil_span_make(bp, blen);
    const char *ce = evhttp_find_header(evhttp_request_get_input_headers(er), "Content-Encoding");
    if (header_is(ce, "gzip") || header_is(ce, "deflate")) {
        req->body_rc = veil_net_gunzip(req->body, srv->max_body, &req->inflated, &req->body_eb);
        req->body = veil_buf_span(&req->inflated);
    }
    atomic_fetch_add(&srv->loop->inflight, 1);
    srv->fn(srv->ud, req);
}

const char *veil_http_req_method(const struct veil_http_req *req)
{
    return req->method;
}

struct veil_span veil_http_req_path(const struct veil_http_req *req)
{
    return veil_span_from_str(req->path);
}

const char *veil_http_req_header(const struct veil_http_req *req, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(req->er), name);
}

struct veil_span veil_http_req_body(const struct veil_http_req *req)
{
    return req->body;
}

veil_err veil_http_req_body_status(const struct veil_http_req *req)
{
    return req->body_rc;
}

const char *veil_http_req_body_error(const struct veil_http_req *req)
{
    return veil_errbuf_msg(&req->body_eb, req->body_rc);
}

uint64_t veil_http_req_start_ns(const struct veil_http_req *req)
{
    return req->start_ns;
}

static void do_reply(void *arg)
{
    struct veil_http_req *req = arg;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req->er);
    if (req->ctype[0] != '\0')
        evhttp_add_header(h, "Content-Type", req->ctype);
    if (req->extra != NULL) {
        char *line = req->extra;
        while (*line != '\0') {
            char *end = strstr(line, "\r\n");
            if (end == NULL)
                break;
            *end = '\0';
            char *colon = strchr(line, ':');
            if (colon != NULL) {
                *colon = '\0';
                const char *v = colon + 1;
                while (*v == ' ')
                    v++;
                evhttp_add_header(h, line, v);
            }
            line = end + 2;
        }
    }
    /* evhttp queues the status line, headers and body in one output buffer before writing. */
    evhttp_send_reply(req->er, req->status, reason(req->status), req->out);
    atomic_fetch_sub(&req->srv->loop->inflight, 1);
    req_free(req);
}

void veil_http_req_reply(struct veil_http_req *req, int status, const char *content_type,
                         const char *extra_headers, struct veil_span body)
{
    req->status = status;
    snprintf(req->ctype, sizeof(req->ctype), "%s", content_type != NULL ? content_type : "");
    if (extra_headers != NULL)
        req->extra = veil_strdup(extra_headers);
    if (body.len > 0 && evbuffer_add(req->out, body.p, body.len) != 0) {
        req->status = 500;
        evbuffer_drain(req->out, evbuffer_get_length(req->out));
    }
    if (veil_net_loop_post(req->srv->loop, do_reply, req) != VEIL_OK) {
        /* Out of memory for the task: the request cannot be answered, so it leaks its
         * connection until the peer times out; log it loudly. */
        VEIL_LOG_ERR("cannot post an HTTP reply");
    }
}

static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
    struct veil_http_server *srv = arg;
    SSL *ssl = SSL_new(srv->tls->ssl);
    if (ssl == NULL)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static void http_shutdown(void *p)
{
    struct veil_http_server *srv = p;
    if (srv->bound != NULL) {
        evhttp_del_accept_socket(srv->http, srv->bound);
        srv->bound = NULL;
    }
}

static void http_free(void *p)
{
    struct veil_http_server *srv = p;
    if (srv->http != NULL)
        evhttp_free(srv->http);
    veil_free(srv);
}

static const struct net_server_ops http_ops = {http_shutdown, http_free};

veil_err veil_http_server_new(struct veil_net_loop *loop, const struct veil_net_listen *lst,
                              veil_http_handler_fn fn, void *ud, struct veil_http_server **out,
                              struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_http_server *srv = NULL;
    int fd = -1;
    *out = NULL;
    srv = veil_calloc(1, sizeof(*srv));
    if (srv == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    srv->loop = loop;
    srv->fn = fn;
    srv->ud = ud;
    srv->tls = lst->tls;
    srv->max_body = lst->max_body != 0 ? lst->max_body : VEIL_NET_MAX_HTTP_BODY_DEFAULT;
    srv->http = evhttp_new(loop->base);
    if (srv->http == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    evhttp_set_gencb(srv->http, on_request, srv);
    evhttp_set_max_headers_size(srv->http, VEIL_LIMIT_HTTP_HEADERS);
    evhttp_set_max_body_size(srv->http, (ev_ssize_t)srv->max_body);
    evhttp_set_timeout(srv->http, 60);
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_default_content_type(srv->http, "application/json");
    if (srv->tls != NULL)
        evhttp_set_bevcb(srv->http, tls_bev, srv);
    rc = veil__net_listen_socket(lst->host, lst->port, &fd, &srv->port, eb);
    if (rc != VEIL_OK)
        goto out;
    srv->bound = evhttp_accept_socket_with_handle(srv->http, fd);
    if (srv->bound == NULL) {
        rc = veil_errf(eb, VEIL_E_IO, "cannot accept on %s:%u", lst->host, (unsigned)srv->port);
        goto out;
    }
    fd = -1;
    rc = veil__net_loop_add_server(loop, &http_ops, srv);
    if (rc != VEIL_OK)
        goto out;
    *out = srv;
    srv = NULL;
    rc = VEIL_OK;
out:
    if (fd >= 0)
        close(fd);
    if (srv != NULL)
        http_free(srv);
    return rc;
}

uint16_t veil_http_server_port(const struct veil_http_server *s)
{
    return s->port;
}
