/*
 * HTTP/1.1 on libevent's evhttp, with TLS through OpenSSL bufferevents. Every request goes
 * to one handler; replies may come from any thread and are posted back to the loop, where
 * headers and body are queued together so they leave in one write (TCP_NODELAY is set too).
 * Request headers and bodies are capped by evhttp before the handler sees them.
 *
 * evhttp 2.1 neither counts connections nor tells when one opens or closes, so each connection's
 * bufferevent is a pass-through filter over the socket (or TLS) bufferevent: its context is our
 * record of the connection (freed with it), its input side charges the bytes received to the
 * loop's in-flight budget until the request is handed over, and its admission slot is taken as
 * soon as the socket is known (at the next accept or the next loop turn). Connections are closed
 * from here with shutdown(2): evhttp then sees end-of-file and frees them itself.
 */
#include "net_int.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct rest_conn;

struct veil_http_server {
    struct veil_net_loop *loop;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    const struct veil_tls_ctx *tls;
    veil_http_handler_fn fn;
    void *ud;
    uint16_t port;
    size_t max_body;
    unsigned max_conns; /* this port's own cap; 0: none */
    unsigned nconns;
    struct rest_conn *conns;      /* every connection record, admitted or not */
    struct rest_conn *last_input; /* the connection whose bytes were last passed on */
    struct event *admit_ev;       /* admits connections whose socket is set */
    struct net_guard guard;
    struct net_ratelog refuse_log;
};

/* One REST connection (the context of its filter bufferevent). */
struct rest_conn {
    struct net_slot slot;
    struct veil_http_server *srv; /* NULL once the server is gone */
    struct bufferevent *top;      /* the filter evhttp owns */
    struct rest_conn *prev, *next;
    unsigned refs; /* the filter, and each request handed out */
    unsigned busy; /* requests handed to the handler and not answered */
    bool admitted; /* admission was decided */
    bool killed;   /* shut down; evhttp frees it soon */
    bool flushing; /* in on_top_out */
    struct evbuffer_cb_entry *out_cb;
    size_t pending; /* bytes received since the last request, charged to the budget */
};

struct veil_http_req {
    struct veil_http_server *srv;
    struct rest_conn *conn; /* a reference, or NULL */
    size_t charged;         /* bytes taken from the in-flight budget */
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

static void conn_unref(struct rest_conn *rc);

static void req_free(struct veil_http_req *req)
{
    if (req == NULL)
        return;
    veil__net_budget_give(req->srv->loop, req->charged);
    if (req->conn != NULL) {
        if (req->conn->busy > 0)
            req->conn->busy--;
        if (req->conn->srv != NULL)
            veil__net_admit_touch(&req->srv->loop->admit, &req->conn->slot, veil_time_mono_ns());
        conn_unref(req->conn);
    }
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
    struct bufferevent *under = bev != NULL ? bufferevent_get_underlying(bev) : NULL;
    return under != NULL && bufferevent_openssl_get_ssl(under) != NULL;
}

/* The record of the connection er arrived on, or NULL (evhttp made its bufferevent itself). */
static struct rest_conn *conn_of_request(struct veil_http_server *srv, struct evhttp_request *er)
{
    struct evhttp_connection *ec = evhttp_request_get_connection(er);
    struct bufferevent *bev = ec != NULL ? evhttp_connection_get_bufferevent(ec) : NULL;
    if (bev == NULL)
        return NULL;
    /* evhttp runs the request callback from the read that passed its last bytes on. */
    if (srv->last_input != NULL && srv->last_input->top == bev)
        return srv->last_input;
    for (struct rest_conn *rc = srv->conns; rc != NULL; rc = rc->next)
        if (rc->top == bev)
            return rc;
    return NULL;
}

static void reply_json_error(struct evhttp_request *er, int status, const char *reason_phrase,
                             const char *msg)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        evhttp_send_error(er, status, reason_phrase);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(er), "Content-Type", "application/json");
    (void)evbuffer_add_printf(b, "{ \"error\": \"%s\" }", msg);
    evhttp_send_reply(er, status, reason_phrase, b);
    evbuffer_free(b);
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
    struct rest_conn *rc = conn_of_request(srv, er);
    if (rc != NULL) {
        /* The bytes of this request move from the connection to the request. */
        veil__net_budget_give(srv->loop, rc->pending);
        rc->pending = 0;
        rc->busy++;
        rc->refs++;
        req->conn = rc;
    }
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
    if (!veil__net_budget_take(srv->loop, blen)) {
        req_free(req);
        reply_json_error(er, 429, "Too Many Requests",
                         "server busy: request bytes in flight over the server's budget");
        return;
    }
    req->charged = blen;
    const char *ce = evhttp_find_header(evhttp_request_get_input_headers(er), "Content-Encoding");
    if (header_is(ce, "gzip") || header_is(ce, "deflate")) {
        /* Inflated under the body cap and within what the budget has left (the buffer's
         * capacity is at most its cap plus one byte), refused as soon as it passes either. */
        size_t room = veil__net_budget_room(srv->loop);
        size_t cap = room > 0 && room - 1 < srv->max_body ? room - 1 : srv->max_body;
        if (room == 0)
            cap = 0;
        req->body_rc = veil_net_gunzip(req->body, cap, &req->inflated, &req->body_eb);
        if (req->body_rc == VEIL_E_LIMIT && cap < srv->max_body) {
            srv->loop->budget_refused++;
            req->body_rc = veil_errf(&req->body_eb, VEIL_E_LIMIT,
                                     "server busy: request bytes in flight over the budget");
        }
        if (req->body_rc == VEIL_OK && !veil__net_budget_take(srv->loop, req->inflated.cap)) {
            veil_buf_release(&req->inflated);
            req->body_rc = veil_errf(&req->body_eb, VEIL_E_LIMIT,
                                     "server busy: request bytes in flight over the budget");
        } else if (req->body_rc == VEIL_OK) {
            req->charged += req->inflated.cap;
        }
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

/* ---- Connection records and admission ---- */

static void conn_unref(struct rest_conn *rc)
{
    if (--rc->refs == 0)
        veil_free(rc);
}

static void conn_unlink(struct rest_conn *rc)
{
    struct veil_http_server *srv = rc->srv;
    if (srv == NULL)
        return;
    veil__net_admit_remove(&srv->loop->admit, &rc->slot);
    veil__net_budget_give(srv->loop, rc->pending);
    rc->pending = 0;
    if (srv->last_input == rc)
        srv->last_input = NULL;
    if (rc->prev != NULL)
        rc->prev->next = rc->next;
    else
        srv->conns = rc->next;
    if (rc->next != NULL)
        rc->next->prev = rc->prev;
    srv->nconns--;
    rc->srv = NULL;
}

/* The filter's context is freed with the connection. */
static void conn_gone(void *ctx)
{
    struct rest_conn *rc = ctx;
    if (rc->out_cb != NULL)
        (void)evbuffer_remove_cb_entry(bufferevent_get_output(rc->top), rc->out_cb);
    rc->out_cb = NULL;
    conn_unlink(rc);
    conn_unref(rc);
}

/* Closes a connection through evhttp: after shutdown(2) it reads end-of-file and frees it. */
static void conn_kill(struct rest_conn *rc)
{
    evutil_socket_t fd = bufferevent_getfd(rc->top);
    rc->killed = true;
    if (fd >= 0)
        (void)shutdown(fd, SHUT_RDWR);
}

static struct rest_conn *rest_conn_of(const struct net_slot *slot)
{
    return (struct rest_conn *)(uintptr_t)((const char *)slot - offsetof(struct rest_conn, slot));
}

static bool slot_busy(const struct net_slot *slot)
{
    return rest_conn_of(slot)->busy > 0;
}

static void slot_evict(struct net_slot *slot)
{
    VEIL_LOG_DEBUG("idle REST connection closed to make room for a new one");
    conn_kill(rest_conn_of(slot));
}

static const struct net_slot_ops rest_slot_ops = {slot_busy, slot_evict};

static void log_refusal(struct veil_http_server *srv, const char *why)
{
    uint64_t more = 0;
    if (veil__net_ratelog_tick(&srv->refuse_log, veil_time_mono_ns(),
                               (uint64_t)VEIL_NET_ACCEPT_LOG_INTERVAL_S * 1000000000ULL, &more))
        VEIL_LOG_WARN("REST connection refused: %s (%u open on this port, %u in all; %llu more "
                      "refusals since the last report)",
                      why, srv->nconns, srv->loop->admit.nconns, (unsigned long long)more);
}

/* Admits every connection whose socket evhttp has set by now. */
static void admit_pending(struct veil_http_server *srv)
{
    for (struct rest_conn *rc = srv->conns; rc != NULL && !rc->admitted; rc = rc->next) {
        evutil_socket_t fd = bufferevent_getfd(rc->top);
        if (fd < 0)
            continue;
        rc->admitted = true;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        struct net_peer_key key;
        if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
            sl = 0;
        veil__net_peer_key((struct sockaddr *)&ss, sl, &key);
        const char *why = NULL;
        if (srv->max_conns != 0 && srv->nconns > srv->max_conns)
            why = "the port's connection cap";
        else if (veil__net_admit_add(&srv->loop->admit, &rc->slot, &key, veil_time_mono_ns()) !=
                 VEIL_OK)
            why = "every connection busy at the connection caps";
        if (why != NULL) {
            log_refusal(srv, why);
            conn_kill(rc);
        }
    }
}

static void on_admit(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    admit_pending(arg);
}

/* Passes received bytes up to evhttp, charging them to the budget until the request is
 * handed over; a connection that would pass the budget is closed. */
static enum bufferevent_filter_result filter_in(struct evbuffer *src, struct evbuffer *dst,
                                                ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                void *ctx)
{
    (void)mode;
    struct rest_conn *rc = ctx;
    size_t n = evbuffer_get_length(src);
    if (limit >= 0 && (size_t)limit < n)
        n = (size_t)limit;
    if (n == 0)
        return BEV_NEED_MORE;
    struct veil_http_server *srv = rc->srv;
    if (srv != NULL && !rc->killed) {
        if (!veil__net_budget_take(srv->loop, n)) {
            log_refusal(srv, "request bytes in flight over the server's budget");
            (void)evbuffer_drain(src, evbuffer_get_length(src));
            conn_kill(rc);
            return BEV_NEED_MORE;
        }
        rc->pending += n;
        srv->last_input = rc;
        veil__net_admit_touch(&srv->loop->admit, &rc->slot, veil_time_mono_ns());
    }
    if (rc->killed) {
        (void)evbuffer_drain(src, evbuffer_get_length(src));
        return BEV_NEED_MORE;
    }
    return evbuffer_remove_buffer(src, dst, n) > 0 ? BEV_OK : BEV_NEED_MORE;
}

static enum bufferevent_filter_result filter_out(struct evbuffer *src, struct evbuffer *dst,
                                                 ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                 void *ctx)
{
    (void)mode;
    (void)ctx;
    size_t n = evbuffer_get_length(src);
    if (limit >= 0 && (size_t)limit < n)
        n = (size_t)limit;
    if (n == 0)
        return BEV_NEED_MORE;
    return evbuffer_remove_buffer(src, dst, n) > 0 ? BEV_OK : BEV_NEED_MORE;
}

/*
 * libevent 2.1's filter passes output on only while writing is enabled, and evhttp queues a
 * reply before it enables writing (enabling a filter does not look at its output again): the
 * reply would sit there. Every byte evhttp queues is pushed down at once instead; the socket
 * below still writes all of a reply's pieces in one go on its next write event.
 */
static void on_top_out(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    struct rest_conn *rc = arg;
    if (info->n_added == 0 || rc->flushing)
        return;
    rc->flushing = true;
    (void)bufferevent_flush(rc->top, EV_WRITE, BEV_FLUSH);
    rc->flushing = false;
}

/* evhttp's bufferevent for each accepted connection (its socket is set right after). */
static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
    struct veil_http_server *srv = arg;
    struct bufferevent *inner = NULL, *top = NULL;
    SSL *ssl = NULL;
    /* The connection accepted before this one has its socket now. */
    admit_pending(srv);
    struct rest_conn *rc = veil_calloc(1, sizeof(*rc));
    if (rc == NULL)
        goto fail;
    if (srv->tls != NULL) {
        ssl = SSL_new(srv->tls->ssl);
        if (ssl == NULL)
            goto fail;
        inner = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                               BEV_OPT_CLOSE_ON_FREE);
        if (inner == NULL)
            goto fail;
        ssl = NULL;
        bufferevent_openssl_set_allow_dirty_shutdown(inner, 1);
    } else {
        inner = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (inner == NULL)
            goto fail;
    }
    top =
        bufferevent_filter_new(inner, filter_in, filter_out, BEV_OPT_CLOSE_ON_FREE, conn_gone, rc);
    if (top == NULL)
        goto fail;
    rc->slot.ops = &rest_slot_ops;
    rc->top = top;
    rc->refs = 1;
    rc->out_cb = evbuffer_add_cb(bufferevent_get_output(top), on_top_out, rc);
    if (rc->out_cb == NULL) {
        bufferevent_free(top); /* frees inner and, through conn_gone, rc */
        return NULL;
    }
    rc->srv = srv;
    /* Newest first: admit_pending stops at the first admitted record. */
    rc->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = rc;
    srv->conns = rc;
    srv->nconns++;
    event_active(srv->admit_ev, EV_TIMEOUT, 1);
    return top;
fail:
    /* evhttp then makes a plain bufferevent, which a TLS port refuses to serve. */
    if (inner != NULL)
        bufferevent_free(inner);
    SSL_free(ssl);
    veil_free(rc);
    return NULL;
}

static void http_shutdown(void *p)
{
    struct veil_http_server *srv = p;
    veil__net_guard_release(&srv->guard);
    if (srv->bound != NULL) {
        evhttp_del_accept_socket(srv->http, srv->bound);
        srv->bound = NULL;
    }
}

static void http_free(void *p)
{
    struct veil_http_server *srv = p;
    veil__net_guard_release(&srv->guard);
    if (srv->http != NULL)
        evhttp_free(srv->http);
    /* Filters evhttp freed may finish later (libevent finalizes bufferevents from the loop):
     * their records forget the server now. */
    while (srv->conns != NULL)
        conn_unlink(srv->conns);
    if (srv->admit_ev != NULL)
        event_free(srv->admit_ev);
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
    srv->max_conns = lst->max_conns;
    srv->admit_ev = event_new(loop->base, -1, 0, on_admit, srv);
    srv->http = evhttp_new(loop->base);
    if (srv->http == NULL || srv->admit_ev == NULL) {
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
    evhttp_set_bevcb(srv->http, make_bev, srv);
    rc = veil__net_listen_socket(lst->host, lst->port, &fd, &srv->port, eb);
    if (rc != VEIL_OK)
        goto out;
    srv->bound = evhttp_accept_socket_with_handle(srv->http, fd);
    if (srv->bound == NULL) {
        rc = veil_errf(eb, VEIL_E_IO, "cannot accept on %s:%u", lst->host, (unsigned)srv->port);
        goto out;
    }
    fd = -1;
    rc = veil__net_guard_init(&srv->guard, loop, evhttp_bound_socket_get_listener(srv->bound),
                              "REST");
    if (rc != VEIL_OK)
        goto out;
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
