/*
 * HTTP/1.1 on libevent's evhttp, with TLS through OpenSSL bufferevents. Every request goes
 * to one handler; replies may come from any thread and are posted back to the loop, where
 * headers and body are queued together so they leave in one write (TCP_NODELAY is set too).
 * Request headers and bodies are capped by evhttp before the handler sees them.
 *
 * Connections are admitted into the loop's limits (limit.c) without standing between evhttp
 * and its bufferevent: evhttp asks make_bev for each accepted connection's bufferevent, and
 * on_admit, run once the accept callback has returned, finds the connection evhttp built
 * around it, gives it a close callback and an input-buffer callback, and admits or refuses
 * it. The input callback counts the bytes of the request being received against the
 * in-flight budget (and ends the pre-authentication phase); the request then takes its
 * body's bytes over until it is answered. A connection is only ever freed here from outside
 * evhttp's own callbacks and never with a request at the handler, so a request's
 * evhttp_request outlives its reply.
 */
#include "net_int.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#define CONN_BUCKETS 1024u /* hash buckets from evhttp's connection to its record (power of 2) */
#define ADMIT_BURST 64u    /* connections accepted before on_admit runs, at most */

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
    unsigned max_conns;        /* this port's own cap; 0: only the loop's */
    unsigned nconns;           /* admitted and open */
    unsigned npending;         /* made by make_bev, waiting for on_admit */
    struct rest_conn *pending; /* waiting for on_admit, in accept order */
    struct rest_conn *pending_tail;
    struct rest_conn *conns; /* admitted and open */
    struct rest_conn *kills; /* to be closed by on_kill */
    struct rest_conn **buckets;
    struct event *admit_ev;
    struct event *kill_ev;
    struct net_guard guard;
};

/*
 * The record of one connection, from make_bev to evhttp's close callback (or, for a
 * connection evhttp could not set up, to on_admit). Requests handed to the handler hold a
 * reference, so a late reply finds it even after the connection is gone.
 */
struct rest_conn {
    struct net_slot slot; /* admission */
    struct veil_http_server *srv;
    struct bufferevent *bev;         /* evhttp's, made by make_bev; NULL once closed */
    struct evhttp_connection *evcon; /* set by on_admit; NULL once closed */
    struct evbuffer_cb_entry *in_cb; /* on_input on the bufferevent's input */
    struct rest_conn *prev, *next;   /* srv->pending, then srv->conns */
    struct rest_conn *hnext;         /* srv->buckets chain */
    struct rest_conn *knext;         /* srv->kills */
    size_t pending;                  /* bytes of the request being received, budgeted */
    unsigned busy;                   /* requests at the handler */
    unsigned refs;                   /* the connection's own, and one per request */
    bool kill;                       /* over the budget: no more bytes are taken */
    bool closed;
};

struct veil_http_req {
    struct veil_http_server *srv;
    struct rest_conn *conn; /* NULL for a refused request answered at once */
    size_t charged;         /* bytes of body and inflated body taken from the budget */
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

/* ---- Connection records ---- */

static size_t conn_hash(const struct evhttp_connection *evcon)
{
    /* Allocator addresses: the low bits are alignment, the next ones spread well. */
    uintptr_t v = (uintptr_t)evcon;
    return (size_t)((v >> 4) ^ (v >> 14)) & (CONN_BUCKETS - 1);
}

static struct rest_conn *conn_find(const struct veil_http_server *srv,
                                   const struct evhttp_connection *evcon)
{
    if (evcon == NULL)
        return NULL;
    for (struct rest_conn *rc = srv->buckets[conn_hash(evcon)]; rc != NULL; rc = rc->hnext)
        if (rc->evcon == evcon)
            return rc;
    return NULL;
}

static void conn_unref(struct rest_conn *rc)
{
    if (--rc->refs == 0)
        veil_free(rc);
}

static void list_unlink(struct rest_conn **head, struct rest_conn *rc)
{
    if (rc->prev != NULL)
        rc->prev->next = rc->next;
    else
        *head = rc->next;
    if (rc->next != NULL)
        rc->next->prev = rc->prev;
    rc->prev = rc->next = NULL;
}

static void list_push(struct rest_conn **head, struct rest_conn *rc)
{
    rc->prev = NULL;
    rc->next = *head;
    if (*head != NULL)
        (*head)->prev = rc;
    *head = rc;
}

static void kill_cancel(struct rest_conn *rc)
{
    struct rest_conn **pp = &rc->srv->kills;
    while (*pp != NULL && *pp != rc)
        pp = &(*pp)->knext;
    if (*pp == rc)
        *pp = rc->knext;
    rc->knext = NULL;
}

/*
 * Forgets an admitted connection: its admission slot, its budgeted bytes, its place in the
 * server's lists. Its evhttp connection is being freed (or the server is).
 */
static void conn_forget(struct rest_conn *rc)
{
    struct veil_http_server *srv = rc->srv;
    struct veil_net_loop *loop = srv->loop;
    if (rc->in_cb != NULL && rc->bev != NULL)
        (void)evbuffer_remove_cb_entry(bufferevent_get_input(rc->bev), rc->in_cb);
    rc->in_cb = NULL;
    veil__net_admit_remove(&loop->admit, &rc->slot);
    veil__net_budget_give(&loop->budget, rc->pending);
    rc->pending = 0;
    struct rest_conn **pp = &srv->buckets[conn_hash(rc->evcon)];
    while (*pp != NULL && *pp != rc)
        pp = &(*pp)->hnext;
    if (*pp == rc)
        *pp = rc->hnext;
    rc->hnext = NULL;
    kill_cancel(rc);
    list_unlink(&srv->conns, rc);
    srv->nconns--;
    rc->closed = true;
    rc->evcon = NULL;
    rc->bev = NULL;
}

/* evhttp's close callback: the connection is being freed (its bufferevent still exists). */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct rest_conn *rc = arg;
    conn_forget(rc);
    conn_unref(rc);
}

/*
 * Counts the bytes added to the connection's input (decrypted, under TLS): the request being
 * received holds them until on_request hands them to the request. A connection whose bytes
 * would pass the budget is closed (from on_kill, outside evhttp's read), releasing them.
 */
static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    struct rest_conn *rc = arg;
    if (info->n_added == 0 || rc->closed)
        return;
    struct veil_http_server *srv = rc->srv;
    struct veil_net_loop *loop = srv->loop;
    /* Bytes of a request: a plaintext peer's first, or the first after a TLS handshake. */
    veil__net_admit_authed(&loop->admit, &rc->slot);
    veil__net_admit_touch(&loop->admit, &rc->slot, veil_time_mono_ns());
    if (rc->kill)
        return;
    if (!veil__net_budget_take(&loop->budget, info->n_added)) {
        veil__net_log_refusal(loop, "REST request",
                              "in-flight byte budget full; its connection is closed");
        rc->kill = true;
        rc->knext = srv->kills;
        srv->kills = rc;
        event_active(srv->kill_ev, EV_TIMEOUT, 1);
        return;
    }
    rc->pending += info->n_added;
}

static void on_kill(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct veil_http_server *srv = arg;
    while (srv->kills != NULL) {
        struct rest_conn *rc = srv->kills;
        srv->kills = rc->knext;
        rc->knext = NULL;
        /* A request that completed meanwhile was answered by on_request instead. */
        if (!rc->closed && rc->busy == 0)
            evhttp_connection_free(rc->evcon); /* runs on_close */
    }
}

static struct rest_conn *conn_of_slot(const struct net_slot *slot)
{
    return (struct rest_conn *)(uintptr_t)((const char *)slot - offsetof(struct rest_conn, slot));
}

/* A request at the handler, or a reply still being written. */
static bool slot_busy(const struct net_slot *slot)
{
    const struct rest_conn *rc = conn_of_slot(slot);
    return rc->busy > 0 || evbuffer_get_length(bufferevent_get_output(rc->bev)) > 0;
}

/* Under TLS, a handshake that ended without a request yet. */
static bool slot_authed(const struct net_slot *slot)
{
    const struct rest_conn *rc = conn_of_slot(slot);
    SSL *ssl = rc->srv->tls != NULL ? bufferevent_openssl_get_ssl(rc->bev) : NULL;
    return ssl != NULL && SSL_is_init_finished(ssl);
}

static void slot_evict(struct net_slot *slot)
{
    struct rest_conn *rc = conn_of_slot(slot);
    VEIL_LOG_DEBUG("REST connection closed to make room (idle or before its handshake ended)");
    evhttp_connection_free(rc->evcon); /* runs on_close */
}

static const struct net_slot_ops rest_slot_ops = {slot_busy, slot_authed, slot_evict};

/* evhttp's bufferevent for each accepted connection; its socket is set right after. */
static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
    struct veil_http_server *srv = arg;
    struct bufferevent *bev = NULL;
    struct rest_conn *rc = veil_calloc(1, sizeof(*rc));
    /* On NULL evhttp makes a plain bufferevent of its own, which on_request refuses. */
    if (rc == NULL)
        return NULL;
    if (srv->tls != NULL) {
        SSL *ssl = SSL_new(srv->tls->ssl);
        if (ssl != NULL)
            bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                 BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL) {
            SSL_free(ssl);
            veil_free(rc);
            return NULL;
        }
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    } else {
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL) {
            veil_free(rc);
            return NULL;
        }
    }
    rc->slot.ops = &rest_slot_ops;
    rc->srv = srv;
    rc->bev = bev;
    rc->refs = 1;
    /* Held until on_admit: a connection evhttp fails to set up frees its bufferevent, and
     * this reference keeps it valid for on_admit to see that. */
    bufferevent_incref(bev);
    /* In accept order, so that admission closes the oldest first. */
    rc->prev = srv->pending_tail;
    if (srv->pending_tail != NULL)
        srv->pending_tail->next = rc;
    else
        srv->pending = rc;
    srv->pending_tail = rc;
    srv->npending++;
    event_active(srv->admit_ev, EV_TIMEOUT, 1);
    /* A burst of accepts stops at the room under the connection cap (and at ADMIT_BURST):
     * the rest wait in the backlog until on_admit has made room. */
    const struct net_admit *a = &srv->loop->admit;
    if (srv->npending >= ADMIT_BURST || a->nconns + srv->npending >= a->max_conns)
        veil__net_guard_hold(&srv->guard, true);
    return bev;
}

/* Admits (or refuses) one connection made by make_bev, now that evhttp has set it up. */
static void admit_one(struct veil_http_server *srv, struct rest_conn *rc)
{
    struct veil_net_loop *loop = srv->loop;
    bufferevent_event_cb evcb = NULL;
    void *cbarg = NULL;
    bufferevent_getcb(rc->bev, NULL, NULL, &evcb, &cbarg);
    if (evcb == NULL || cbarg == NULL) {
        /* evhttp could not set the connection up and freed it (its callbacks are cleared). */
        bufferevent_decref(rc->bev);
        conn_unref(rc);
        return;
    }
    /*
     * evhttp (libevent 2.1) gives a connection's bufferevent its callbacks with the
     * evhttp_connection as their argument, and has no other way from a bufferevent to its
     * connection; the check below holds as long as that does.
     */
    struct evhttp_connection *evcon = cbarg;
    VEIL_ASSERT(evhttp_connection_get_bufferevent(evcon) == rc->bev);
    rc->evcon = evcon;
    evhttp_connection_set_closecb(evcon, on_close, rc);
    size_t h = conn_hash(evcon);
    rc->hnext = srv->buckets[h];
    srv->buckets[h] = rc;
    list_push(&srv->conns, rc);
    srv->nconns++;
    bufferevent_decref(rc->bev); /* evhttp holds its own */
    rc->in_cb = evbuffer_add_cb(bufferevent_get_input(rc->bev), on_input, rc);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    struct net_peer_key key;
    if (getpeername(bufferevent_getfd(rc->bev), (struct sockaddr *)&ss, &sl) != 0)
        sl = 0;
    veil__net_peer_key((struct sockaddr *)&ss, sl, &key);
    const char *why = NULL;
    veil_err arc = VEIL_OK;
    if (rc->in_cb == NULL)
        why = "out of memory";
    else if (srv->max_conns != 0 && srv->nconns > srv->max_conns)
        why = "the port's connection cap";
    else if ((arc = veil__net_admit_add(&loop->admit, &rc->slot, &key, veil_time_mono_ns())) !=
             VEIL_OK)
        why =
            arc == VEIL_E_LIMIT ? "every connection busy at the connection caps" : "out of memory";
    if (why != NULL) {
        veil__net_log_refusal(loop, "REST connection", why);
        evhttp_connection_free(evcon); /* runs on_close */
    }
}

static void on_admit(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct veil_http_server *srv = arg;
    while (srv->pending != NULL) {
        struct rest_conn *rc = srv->pending;
        srv->pending = rc->next;
        if (srv->pending != NULL)
            srv->pending->prev = NULL;
        else
            srv->pending_tail = NULL;
        rc->next = NULL;
        srv->npending--;
        admit_one(srv, rc);
    }
    veil__net_guard_hold(&srv->guard, false);
}

/* ---- Requests ---- */

static void req_free(struct veil_http_req *req)
{
    if (req == NULL)
        return;
    veil__net_budget_give(&req->srv->loop->budget, req->charged);
    struct rest_conn *rc = req->conn;
    if (rc != NULL) {
        rc->busy--;
        if (!rc->closed)
            veil__net_admit_touch(&req->srv->loop->admit, &rc->slot, veil_time_mono_ns());
        conn_unref(rc);
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

/*
 * Answers er at once with {"error": msg} (msg has no characters JSON would escape); close
 * asks the client to close the connection. Loop thread, from on_request.
 */
static void reply_now(struct evhttp_request *er, int status, const char *msg, bool close)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(er);
    struct evbuffer *b = evbuffer_new();
    if (close)
        evhttp_add_header(h, "Connection", "close");
    if (status == 429 || status == 503)
        evhttp_add_header(h, "Retry-After", "1");
    if (b == NULL) {
        evhttp_send_error(er, status, reason(status));
        return;
    }
    evhttp_add_header(h, "Content-Type", "application/json");
    (void)evbuffer_add_printf(b, "{ \"error\": \"%s\" }", msg);
    evhttp_send_reply(er, status, reason(status), b);
    evbuffer_free(b);
}

/* Answers a request on_request refuses, and frees it. */
static void req_refuse(struct veil_http_req *req, int status, const char *msg, bool close)
{
    struct evhttp_request *er = req->er;
    req_free(req);
    reply_now(er, status, msg, close);
}

static void on_request(struct evhttp_request *er, void *arg)
{
    struct veil_http_server *srv = arg;
    struct veil_net_loop *loop = srv->loop;
    struct rest_conn *rc = conn_find(srv, evhttp_request_get_connection(er));
    if (rc == NULL) {
        /* evhttp made this connection's bufferevent itself (make_bev was out of memory): it
         * is not counted, and on a TLS port it is not encrypted. */
        VEIL_LOG_WARN("REST request on a connection that was not admitted refused");
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
    req->conn = rc;
    rc->refs++;
    rc->busy++;
    req->start_ns = veil_time_mono_ns();
    veil__net_admit_touch(&loop->admit, &rc->slot, req->start_ns);
    /*
     * The bytes received for this request move from the connection to the request (its body,
     * taken again below); what is still unparsed in the connection's input (pipelined
     * requests) stays counted on the connection.
     */
    size_t unparsed = evbuffer_get_length(bufferevent_get_input(rc->bev));
    if (rc->pending > unparsed) {
        veil__net_budget_give(&loop->budget, rc->pending - unparsed);
        rc->pending = unparsed;
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
        req_refuse(req, 503, "out of memory", false);
        return;
    }
    if (rc->kill) {
        /* The request completed in the read that passed the budget: answer it instead of
         * closing the connection under it. */
        kill_cancel(rc);
        req_refuse(req, 429, VEIL_NET_BUDGET_MSG, true);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(er);
    size_t blen = evbuffer_get_length(in);
    if (!veil__net_budget_take(&loop->budget, blen)) {
        veil__net_log_refusal(loop, "REST request", "in-flight byte budget full");
        req_refuse(req, 429, VEIL_NET_BUDGET_MSG, false);
        return;
    }
    req->charged = blen;
    const uint8_t *bp = blen > 0 ? evbuffer_pullup(in, -1) : NULL;
    if (blen > 0 && bp == NULL) {
        req_refuse(req, 503, "out of memory", false);
        return;
    }
    req->body = veil_span_make(bp, blen);
    const char *ce = evhttp_find_header(evhttp_request_get_input_headers(er), "Content-Encoding");
    if (header_is(ce, "gzip") || header_is(ce, "deflate")) {
        /*
         * Inflated under the body cap and within what the budget has left (the buffer's
         * capacity is at most its cap plus one byte, so it fits the room it is given), and
         * stopped as soon as it passes either: a small bomb never becomes a large buffer.
         */
        size_t room = veil__net_budget_room(&loop->budget);
        size_t cap = room == 0 ? 0 : room - 1 < srv->max_body ? room - 1 : srv->max_body;
        req->body_rc = veil_net_gunzip(req->body, cap, &req->inflated, &req->body_eb);
        if (req->body_rc == VEIL_E_LIMIT && cap < srv->max_body) {
            loop->budget.refused++;
            veil__net_log_refusal(loop, "REST request", "in-flight byte budget full");
            req_refuse(req, 429, VEIL_NET_BUDGET_MSG, false);
            return;
        }
        if (req->body_rc == VEIL_E_LIMIT) {
            char msg[128];
            snprintf(msg, sizeof(msg),
                     "decompressed request body larger than the limit of %zu bytes", srv->max_body);
            req_refuse(req, 413, msg, false);
            return;
        }
        if (req->body_rc == VEIL_OK) {
            bool ok = veil__net_budget_take(&loop->budget, req->inflated.cap);
            VEIL_ASSERT(ok); /* the cap above keeps the buffer within the room */
            req->charged += req->inflated.cap;
            /* The compressed body is not needed any more. */
            (void)evbuffer_drain(in, blen);
            veil__net_budget_give(&loop->budget, blen);
            req->charged -= blen;
        }
        req->body = veil_buf_span(&req->inflated);
    }
    atomic_fetch_add(&loop->inflight, 1);
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
    atomic_fetch_sub(&req->srv->loop->inflight, 1);
    if (req->conn->closed) {
        /*
         * Cannot happen while the server exists: a connection with a request at the handler
         * is never freed here, and evhttp reads nothing from it meanwhile. Were it freed
         * anyway, its evhttp_request went with it and must not be touched.
         */
        req_free(req);
        return;
    }
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
    struct evhttp_request *er = req->er;
    struct evbuffer *out = req->out;
    req->out = NULL;
    int status = req->status;
    /* The request's bytes are given back first: the reply may free the connection. */
    req_free(req);
    evhttp_send_reply(er, status, reason(status), out);
    evbuffer_free(out);
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

/* ---- The server ---- */

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
    /* Frees every connection, each through on_close. */
    if (srv->http != NULL)
        evhttp_free(srv->http);
    /* Connections never admitted: evhttp has freed them, the reference of make_bev remains. */
    while (srv->pending != NULL) {
        struct rest_conn *rc = srv->pending;
        srv->pending = rc->next;
        bufferevent_decref(rc->bev);
        conn_unref(rc);
    }
    srv->pending_tail = NULL;
    /* evhttp calls no close callback for a connection it already considers disconnected. */
    while (srv->conns != NULL) {
        struct rest_conn *rc = srv->conns;
        conn_forget(rc);
        conn_unref(rc);
    }
    if (srv->admit_ev != NULL)
        event_free(srv->admit_ev);
    if (srv->kill_ev != NULL)
        event_free(srv->kill_ev);
    veil_free(srv->buckets);
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
    srv->buckets = veil_calloc(CONN_BUCKETS, sizeof(*srv->buckets));
    srv->admit_ev = event_new(loop->base, -1, 0, on_admit, srv);
    srv->kill_ev = event_new(loop->base, -1, 0, on_kill, srv);
    srv->http = evhttp_new(loop->base);
    if (srv->buckets == NULL || srv->admit_ev == NULL || srv->kill_ev == NULL ||
        srv->http == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    evhttp_set_gencb(srv->http, on_request, srv);
    evhttp_set_max_headers_size(srv->http, VEIL_LIMIT_HTTP_HEADERS);
    evhttp_set_max_body_size(srv->http, (ev_ssize_t)srv->max_body);
    evhttp_set_timeout(srv->http, VEIL_NET_REST_TIMEOUT_S);
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
