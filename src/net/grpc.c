/*
 * gRPC on HTTP/2 (nghttp2) over libevent bufferevents, plain (h2c prior knowledge) or TLS
 * (an OpenSSL filter over the socket's bufferevent). The socket is read by on_sock_read, all
 * that is pending per wake-up, not by its bufferevent (4 KiB per call). Each stream collects its
 * request body up to the message cap plus the 5-byte prefix; at END_STREAM the one unary message is
 * unframed (and gunzipped under the same cap) and handed to the handler as a call. The call
 * outlives its stream: when the client resets the stream or drops the connection, the call is only
 * detached, and its late finish frees it. Every connection holds an admission slot of the loop
 * (limit.c), pre-authentication until its TLS handshake ends (plaintext: its first byte), and
 * every buffered request byte (a body being received, an inflated message, a call being
 * served) is taken from the loop's in-flight budget before it is allocated and given back when
 * it is freed: a stream that would pass the budget ends at once with RESOURCE_EXHAUSTED.
 */
#include "net_int.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <nghttp2/nghttp2.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#define OUTPUT_HIGH_WATER (4u << 20) /* stop producing frames above this much unsent output */
#define SOCKET_READ_MAX (1u << 20)   /* most bytes moved per socket read or write */
#define SOCKET_READ_MIN 4096u        /* read size when the socket reports nothing pending */

struct h2_conn;
struct h2_stream;

struct veil_grpc_server {
    struct veil_net_loop *loop;
    struct evconnlistener *lis;
    const struct veil_tls_ctx *tls;
    veil_grpc_handler_fn fn;
    void *ud;
    uint16_t port;
    size_t max_msg;
    unsigned max_streams;
    unsigned max_conns;
    unsigned idle_s;
    unsigned nconns;
    bool shutting;
    struct h2_conn *conns;
    struct net_guard guard;
};

struct h2_conn {
    struct net_slot slot; /* admission (first: see conn_of) */
    struct veil_grpc_server *srv;
    struct bufferevent *bev;
    struct bufferevent *sock;         /* the socket's bufferevent: bev, or under TLS below it */
    struct event *rd;                 /* reads the socket (see on_sock_read) */
    struct evbuffer_cb_entry *raw_cb; /* TLS: watches the socket's output drain */
    struct event *drained;            /* TLS: runs conn_flush once the socket output is empty */
    nghttp2_session *ng;
    struct h2_stream *streams;
    struct h2_conn *prev, *next;
};

struct h2_stream {
    int32_t id;
    struct h2_conn *conn;
    struct h2_stream *prev, *next;
    struct veil_buf body;
    char path[VEIL_NET_GRPC_PATH_MAX];
    bool post;
    bool grpc_ct;
    bool bad_encoding;
    bool gzip;
    bool responded; /* a response has been submitted: ignore the rest of the request */
    bool too_big;
    bool framed;    /* the message's prefix has been read: body.max is its framed size */
    bool extra;     /* data past the announced message: a second message */
    size_t charged; /* bytes of body taken from the loop's in-flight budget */
    uint64_t deadline_ns;
    struct veil_grpc_call *call;
    struct veil_buf resp; /* framed response message being sent */
    size_t resp_off;
};

struct veil_grpc_call {
    struct veil_grpc_server *srv;
    struct h2_stream *st; /* NULL once the stream is gone (loop thread only) */
    char method[VEIL_NET_GRPC_PATH_MAX];
    struct veil_buf msg;
    struct veil_span message;
    size_t charged; /* bytes of msg taken from the loop's in-flight budget */
    uint64_t deadline_ns;
    uint64_t start_ns;
    int status;
    char *errmsg;
    struct veil_buf resp;
};

static void conn_close(struct h2_conn *c);

/* ---- Calls ---- */

static void call_free(struct veil_grpc_call *call)
{
    if (call == NULL)
        return;
    veil__net_budget_give(&call->srv->loop->budget, call->charged);
    veil_buf_release(&call->msg);
    veil_buf_release(&call->resp);
    veil_free(call->errmsg);
    veil_free(call);
}

const char *veil_grpc_call_method(const struct veil_grpc_call *call)
{
    return call->method;
}

struct veil_span veil_grpc_call_message(const struct veil_grpc_call *call)
{
    return call->message;
}

uint64_t veil_grpc_call_deadline_ns(const struct veil_grpc_call *call)
{
    return call->deadline_ns;
}

uint64_t veil_grpc_call_start_ns(const struct veil_grpc_call *call)
{
    return call->start_ns;
}

/* ---- Responses ---- */

static ssize_t resp_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ud;
    struct h2_stream *st = src->ptr;
    size_t left = st->resp.len - st->resp_off;
    size_t n = left < length ? left : length;
    if (n > 0)
        memcpy(buf, st->resp.p + st->resp_off, n);
    st->resp_off += n;
    if (st->resp_off == st->resp.len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv tr[] = {
            {(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, NGHTTP2_NV_FLAG_NONE},
        };
        if (nghttp2_submit_trailer(ng, id, tr, 1) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

/* Percent-encodes msg as gRPC's grpc-message requires (bytes outside 0x20-0x7e, and '%'). */
static void pct_encode(const char *msg, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const uint8_t *p = (const uint8_t *)msg; *p != '\0' && o + 4 < cap; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
}

static void submit_status(struct h2_stream *st, int status, const char *msg)
{
    char code[12];
    char enc[3 * 1024 + 8];
    snprintf(code, sizeof(code), "%d", status);
    pct_encode(msg != NULL ? msg : "", enc, sizeof(enc));
    nghttp2_nv hdrs[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-status", (uint8_t *)code, 11, strlen(code), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-message", (uint8_t *)enc, 12, strlen(enc), NGHTTP2_NV_FLAG_NONE},
    };
    size_t n = enc[0] != '\0' ? 4 : 3;
    st->responded = true;
    if (nghttp2_submit_response(st->conn->ng, st->id, hdrs, n, NULL) != 0)
        (void)nghttp2_submit_rst_stream(st->conn->ng, NGHTTP2_FLAG_NONE, st->id,
                                        NGHTTP2_INTERNAL_ERROR);
}

static void submit_message(struct h2_stream *st, struct veil_buf *framed)
{
    nghttp2_nv hdrs[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-accept-encoding", (uint8_t *)"identity,gzip", 20, 13,
         NGHTTP2_NV_FLAG_NONE},
    };
    veil_buf_release(&st->resp);
    st->resp = *framed;
    veil_buf_init(framed, framed->max);
    st->resp_off = 0;
    st->responded = true;
    nghttp2_data_provider prd;
    prd.source.ptr = st;
    prd.read_callback = resp_read;
    if (nghttp2_submit_response(st->conn->ng, st->id, hdrs, 3, &prd) != 0)
        (void)nghttp2_submit_rst_stream(st->conn->ng, NGHTTP2_FLAG_NONE, st->id,
                                        NGHTTP2_INTERNAL_ERROR);
}

/* Bytes written but not yet handed to the socket: the connection's output and, under TLS,
 * the records waiting in the socket bufferevent below it. */
static size_t conn_unsent(const struct h2_conn *c)
{
    size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
    struct bufferevent *raw = bufferevent_get_underlying(c->bev);
    if (raw != NULL)
        n += evbuffer_get_length(bufferevent_get_output(raw));
    return n;
}

/* Sends what nghttp2 has queued; closes the connection when it is done or broken. */
static void conn_flush(struct h2_conn *c)
{
    if (nghttp2_session_send(c->ng) != 0) {
        conn_close(c);
        return;
    }
    if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng) &&
        conn_unsent(c) == 0)
        conn_close(c);
}

static void finish_task(void *arg)
{
    struct veil_grpc_call *call = arg;
    atomic_fetch_sub(&call->srv->loop->inflight, 1);
    struct h2_stream *st = call->st;
    if (st != NULL) {
        st->call = NULL;
        if (call->status == 0)
            submit_message(st, &call->resp);
        else
            submit_status(st, call->status, call->errmsg);
        struct h2_conn *c = st->conn;
        call_free(call);
        conn_flush(c);
        return;
    }
    call_free(call);
}

void veil_grpc_call_finish(struct veil_grpc_call *call, int status, const char *msg,
                           struct veil_span response)
{
    call->status = status;
    if (status != 0) {
        const char *m = msg != NULL ? msg : "";
        call->errmsg = veil_strdup(m);
    } else {
        veil_buf_init(&call->resp, (size_t)UINT32_MAX + 5);
        if (response.len > UINT32_MAX || veil_buf_append_u8(&call->resp, 0) != VEIL_OK ||
            veil_buf_append_u32be(&call->resp, (uint32_t)response.len) != VEIL_OK ||
            veil_buf_append(&call->resp, response.p, response.len) != VEIL_OK) {
            veil_buf_release(&call->resp);
            call->status = VEIL_GRPC_RESOURCE_EXHAUSTED;
            call->errmsg = veil_strdup("response message too large");
        }
    }
    if (veil_net_loop_post(call->srv->loop, finish_task, call) != VEIL_OK)
        VEIL_LOG_ERR("cannot post a gRPC reply");
}

/* ---- Requests ---- */

/* Frees what a stream's body holds and gives its bytes back to the budget. */
static void stream_drop_body(struct h2_stream *st)
{
    veil_buf_release(&st->body);
    veil__net_budget_give(&st->conn->srv->loop->budget, st->charged);
    st->charged = 0;
}

static void dispatch(struct h2_stream *st)
{
    struct veil_grpc_server *srv = st->conn->srv;
    struct veil_grpc_call *call = NULL;
    struct veil_errbuf eb = {{0}};
    if (!st->post || !st->grpc_ct) {
        submit_status(st, VEIL_GRPC_INTERNAL, "not a gRPC request (POST application/grpc)");
        return;
    }
    if (st->extra) {
        submit_status(st, VEIL_GRPC_UNIMPLEMENTED, "only unary calls with one message are served");
        return;
    }
    if (st->too_big) {
        submit_status(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "request message larger than the limit");
        return;
    }
    struct veil_span s = veil_buf_span(&st->body);
    bool compressed = false;
    struct veil_span msg;
    veil_err rc = veil_grpc_frame_read(&s, srv->max_msg, &compressed, &msg);
    if (rc == VEIL_E_LIMIT) {
        submit_status(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "request message larger than the limit");
        return;
    }
    if (rc != VEIL_OK) {
        submit_status(st, VEIL_GRPC_INTERNAL, "malformed gRPC message framing");
        return;
    }
    if (s.len != 0) {
        submit_status(st, VEIL_GRPC_UNIMPLEMENTED, "only unary calls with one message are served");
        return;
    }
    if (compressed && st->bad_encoding) {
        submit_status(st, VEIL_GRPC_UNIMPLEMENTED, "unsupported grpc-encoding");
        return;
    }
    if (compressed && !st->gzip) {
        submit_status(st, VEIL_GRPC_INTERNAL, "compressed message without grpc-encoding");
        return;
    }
    call = veil_calloc(1, sizeof(*call));
    if (call == NULL) {
        submit_status(st, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    call->srv = srv;
    call->st = st;
    memcpy(call->method, st->path, sizeof(call->method));
    call->deadline_ns = st->deadline_ns;
    call->start_ns = veil_time_mono_ns();
    veil_buf_init(&call->msg, srv->max_msg);
    if (compressed) {
        /*
         * Inflated under the message cap and within what the budget has left (the buffer's
         * capacity is at most its cap plus one byte, so it fits the room it is given), and
         * stopped as soon as it passes either: a small bomb never becomes a large buffer.
         */
        struct net_budget *budget = &srv->loop->budget;
        size_t room = veil__net_budget_room(budget);
        size_t cap = room == 0 ? 0 : room - 1 < srv->max_msg ? room - 1 : srv->max_msg;
        rc = veil_net_gunzip(msg, cap, &call->msg, &eb);
        if (rc == VEIL_E_LIMIT && cap < srv->max_msg) {
            budget->refused++;
            veil__net_log_refusal(srv->loop, "gRPC request", "in-flight byte budget full");
            submit_status(st, VEIL_GRPC_RESOURCE_EXHAUSTED, VEIL_NET_BUDGET_MSG);
            call_free(call);
            return;
        }
        if (rc != VEIL_OK) {
            submit_status(st,
                          rc == VEIL_E_LIMIT ? VEIL_GRPC_RESOURCE_EXHAUSTED : VEIL_GRPC_INTERNAL,
                          veil_errbuf_msg(&eb, rc));
            call_free(call);
            return;
        }
        if (!veil__net_budget_take(budget, call->msg.cap)) {
            submit_status(st, VEIL_GRPC_RESOURCE_EXHAUSTED, VEIL_NET_BUDGET_MSG);
            call_free(call);
            return;
        }
        call->charged = call->msg.cap;
        call->message = veil_buf_span(&call->msg);
        /* The compressed body is no longer needed. */
        stream_drop_body(st);
    } else {
        /* The body moves to the call, which outlives the stream; no copy. */
        size_t off = (size_t)(msg.p - st->body.p);
        call->msg = st->body;
        call->charged = st->charged;
        st->charged = 0;
        veil_buf_init(&st->body, st->body.max);
        call->message = veil_span_make(call->msg.p + off, msg.len);
    }
    st->call = call;
    st->responded = true;
    atomic_fetch_add(&srv->loop->inflight, 1);
    srv->fn(srv->ud, call);
}

static void stream_free(struct h2_stream *st)
{
    if (st->call != NULL)
        st->call->st = NULL;
    struct h2_conn *c = st->conn;
    if (st->prev != NULL)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next != NULL)
        st->next->prev = st->prev;
    veil__net_budget_give(&c->srv->loop->budget, st->charged);
    st->charged = 0;
    veil_buf_release(&st->body);
    veil_buf_release(&st->resp);
    veil_free(st);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct h2_conn *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2_stream *st = veil_calloc(1, sizeof(*st));
    if (st == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->id = f->hd.stream_id;
    st->conn = c;
    veil_buf_init(&st->body, c->srv->max_msg + 5);
    veil_buf_init(&st->resp, 0);
    st->next = c->streams;
    if (c->streams != NULL)
        c->streams->prev = st;
    c->streams = st;
    if (nghttp2_session_set_stream_user_data(ng, st->id, st) != 0) {
        stream_free(st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

static bool nv_is(const uint8_t *p, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(p, s, n) == 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (st == NULL)
        return 0;
    if (nv_is(name, namelen, ":path")) {
        if (valuelen >= sizeof(st->path))
            valuelen = 0; /* an over-long path matches no method: UNIMPLEMENTED */
        memcpy(st->path, value, valuelen);
        st->path[valuelen] = '\0';
    } else if (nv_is(name, namelen, ":method")) {
        st->post = nv_is(value, valuelen, "POST");
    } else if (nv_is(name, namelen, "content-type")) {
        struct veil_span v = veil_span_make(value, valuelen);
        st->grpc_ct = veil_span_starts_with(v, "application/grpc");
    } else if (nv_is(name, namelen, "grpc-encoding")) {
        st->gzip = nv_is(value, valuelen, "gzip");
        st->bad_encoding = !st->gzip && !nv_is(value, valuelen, "identity");
    } else if (nv_is(name, namelen, "grpc-timeout")) {
        uint64_t ns = 0;
        if (veil_grpc_timeout_parse(veil_span_make(value, valuelen), &ns) == VEIL_OK) {
            uint64_t now = veil_time_mono_ns();
            st->deadline_ns = ns > UINT64_MAX - now ? UINT64_MAX : now + ns;
        }
    }
    return 0;
}

/*
 * Makes room for n more body bytes, taking the buffer's growth from the loop's in-flight
 * budget before it is allocated. Over the budget the body is dropped and the call ends at
 * once with RESOURCE_EXHAUSTED (the rest of its data is ignored): a few unfinished large
 * streams cannot hold the server's memory. Over the message cap (or out of memory) the body
 * is dropped and the stream answered at its end. False when the body was dropped.
 */
static bool stream_reserve(struct h2_stream *st, size_t n)
{
    struct veil_grpc_server *srv = st->conn->srv;
    size_t cap = veil_buf_reserve_cap(&st->body, n);
    if (cap == 0) {
        st->too_big = true;
        stream_drop_body(st);
        return false;
    }
    if (cap > st->charged) {
        if (!veil__net_budget_take(&srv->loop->budget, cap - st->charged)) {
            st->too_big = true;
            stream_drop_body(st);
            veil__net_log_refusal(srv->loop, "gRPC request", "in-flight byte budget full");
            submit_status(st, VEIL_GRPC_RESOURCE_EXHAUSTED, VEIL_NET_BUDGET_MSG);
            return false;
        }
        st->charged = cap;
    }
    if (veil_buf_reserve(&st->body, n) != VEIL_OK) {
        st->too_big = true;
        stream_drop_body(st);
        return false;
    }
    return true;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (st == NULL || st->responded || st->too_big || st->extra)
        return 0;
    if (st->framed && len > st->body.max - st->body.len) {
        /* More than the one message its prefix announced: not a unary call. */
        st->extra = true;
        stream_drop_body(st);
        return 0;
    }
    if (!stream_reserve(st, len))
        return 0;
    if (veil_buf_append(&st->body, data, len) != VEIL_OK) {
        st->too_big = true;
        stream_drop_body(st);
        return 0;
    }
    /* Refuse an announced oversize message as soon as its prefix arrives. */
    if (!st->framed && st->body.len >= 5) {
        struct veil_span s = veil_buf_span(&st->body);
        uint8_t flag;
        uint32_t mlen;
        if (veil_span_get_u8(&s, &flag) == VEIL_OK && veil_span_get_u32be(&s, &mlen) == VEIL_OK) {
            st->framed = true;
            if ((size_t)mlen > st->conn->srv->max_msg) {
                st->too_big = true;
                stream_drop_body(st);
                submit_status(st, VEIL_GRPC_RESOURCE_EXHAUSTED,
                              "request message larger than the limit");
                return 0;
            }
            if (st->body.len > (size_t)mlen + 5) {
                st->extra = true;
                stream_drop_body(st);
                return 0;
            }
            /* The body never holds more than the message it announces: with that as its
             * cap it grows to exactly that size, so what it takes from the budget is what
             * the message needs, not the next power of two. */
            st->body.max = (size_t)mlen + 5;
            if (st->body.cap < (size_t)mlen + 5 && st->body.len < (1u << 20)) {
                /* Size the buffer once from the prefix instead of doubling up to it: an
                 * image-sized message (up to ~1 MB) is received without a realloc. What has
                 * arrived bounds the up-front reservation to 4x (it plus 256 KiB); flow
                 * control and the cap bound the rest. */
                size_t want = (size_t)mlen + 5 - st->body.len;
                size_t room = 4 * (st->body.len + (256u << 10));
                (void)stream_reserve(st, want < room ? want : room);
            }
        }
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
        if (st != NULL && !st->responded)
            dispatch(st);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t err, void *ud)
{
    (void)err;
    (void)ud;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (st != NULL) {
        (void)nghttp2_session_set_stream_user_data(ng, id, NULL);
        stream_free(st);
    }
    return 0;
}

static ssize_t on_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)ng;
    (void)flags;
    struct h2_conn *c = ud;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) >= OUTPUT_HIGH_WATER)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (evbuffer_add(out, data, len) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

/* ---- Connections ---- */

static void conn_close(struct h2_conn *c)
{
    struct veil_grpc_server *srv = c->srv;
    veil__net_admit_remove(&srv->loop->admit, &c->slot);
    while (c->streams != NULL)
        stream_free(c->streams);
    if (c->ng != NULL)
        nghttp2_session_del(c->ng);
    if (c->raw_cb != NULL)
        (void)evbuffer_remove_cb_entry(bufferevent_get_output(bufferevent_get_underlying(c->bev)),
                                       c->raw_cb);
    if (c->drained != NULL)
        event_free(c->drained);
    if (c->rd != NULL)
        event_free(c->rd);
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    srv->nconns--;
    veil_free(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct h2_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t r = nghttp2_session_mem_recv(c->ng, v.iov_base, v.iov_len);
        if (r < 0) {
            VEIL_LOG_DEBUG("HTTP/2 session error: %s", nghttp2_strerror((int)r));
            conn_close(c);
            return;
        }
        evbuffer_drain(in, (size_t)r);
    }
    conn_flush(c);
}

/*
 * Reads the socket in place of its bufferevent, whose reads libevent 2.1 caps at 4 KiB: a
 * 600 KB request took some 150 trips through the loop (epoll, FIONREAD, readv each). One
 * read here takes all the socket holds (up to SOCKET_READ_MAX) into the bufferevent's input,
 * then runs its read callback: on_read, or under TLS the filter, which decrypts all of it and
 * then calls on_read. Under plaintext the event's timeout is the idle timeout.
 */
static void on_sock_read(evutil_socket_t fd, short what, void *arg)
{
    struct h2_conn *c = arg;
    if (what & EV_TIMEOUT) {
        VEIL_LOG_DEBUG("gRPC connection idle for %u s: closed", c->srv->idle_s);
        conn_close(c);
        return;
    }
    veil__net_admit_touch(&c->srv->loop->admit, &c->slot, veil_time_mono_ns());
    struct evbuffer *in = bufferevent_get_input(c->sock);
    if (evbuffer_get_length(in) > SOCKET_READ_MAX) {
        /* Its consumer has stopped taking input (it never should): bound the memory. */
        VEIL_LOG_WARN("gRPC connection closed: %zu bytes read but not consumed",
                      evbuffer_get_length(in));
        conn_close(c);
        return;
    }
    int pending = 0;
    if (ioctl(fd, FIONREAD, &pending) != 0 || pending <= 0)
        pending = (int)SOCKET_READ_MIN;
    size_t want = (size_t)pending < SOCKET_READ_MAX ? (size_t)pending : SOCKET_READ_MAX;
    /* A socket bufferevent freezes its input's end against other writers: this is its reader. */
    struct evbuffer_iovec v[2];
    (void)evbuffer_unfreeze(in, 0);
    int nv = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
    if (nv < 1) {
        (void)evbuffer_freeze(in, 0);
        conn_close(c);
        return;
    }
    struct iovec iov[2];
    size_t room = 0;
    for (int i = 0; i < nv; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len;
        room += v[i].iov_len;
    }
    if (room > want) {
        /* Read no more than asked: the rest of the reservation stays free. */
        size_t over = room - want;
        for (int i = nv - 1; i >= 0 && over > 0; i--) {
            size_t cut = iov[i].iov_len < over ? iov[i].iov_len : over;
            iov[i].iov_len -= cut;
            over -= cut;
        }
    }
    ssize_t got = readv(fd, iov, nv);
    if (got <= 0) {
        (void)evbuffer_commit_space(in, v, 0);
        (void)evbuffer_freeze(in, 0);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        event_del(c->rd);
        bufferevent_trigger_event(
            c->sock, BEV_EVENT_READING | (got == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), 0);
        return;
    }
    /* A plaintext peer has nothing to prove: its first byte ends the pre-authentication
     * phase (under TLS the handshake's end does, see on_event). */
    if (c->srv->tls == NULL)
        veil__net_admit_authed(&c->srv->loop->admit, &c->slot);
    size_t left = (size_t)got;
    for (int i = 0; i < nv; i++) {
        size_t k = iov[i].iov_len < left ? iov[i].iov_len : left;
        v[i].iov_len = k;
        left -= k;
    }
    int committed = evbuffer_commit_space(in, v, nv);
    (void)evbuffer_freeze(in, 0);
    if (committed != 0) {
        conn_close(c);
        return;
    }
    /* May close the connection: nothing of c is touched after this. */
    bufferevent_trigger(c->sock, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
}

/* The TLS filter reports a drained output only while it writes records itself; the last
 * records may still sit in the socket's buffer then. This sees that buffer empty and lets
 * conn_flush decide (from the loop, not from inside libevent's write path). */
static void on_raw_out(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct h2_conn *c = arg;
    if (info->n_deleted > 0 && evbuffer_get_length(buf) == 0 && c->ng != NULL &&
        !nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng))
        event_active(c->drained, EV_TIMEOUT, 1);
}

static void on_drained(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_flush(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_flush(arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct h2_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        veil__net_admit_authed(&c->srv->loop->admit, &c->slot);
        struct timeval tv = {(time_t)c->srv->idle_s, 0};
        bufferevent_set_timeouts(bev, &tv, NULL);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        if (what & BEV_EVENT_ERROR) {
            struct veil_errbuf eb = {{0}};
            (void)veil__net_ssl_err(&eb, VEIL_E_IO, "connection error");
            VEIL_LOG_DEBUG("gRPC %s", eb.msg);
        }
        conn_close(c);
    }
}

/* Admission: a connection with an open stream is busy; an idle one may be closed for room. */
static struct h2_conn *conn_of(const struct net_slot *slot)
{
    return (struct h2_conn *)(uintptr_t)((const char *)slot - offsetof(struct h2_conn, slot));
}

static bool slot_busy(const struct net_slot *slot)
{
    return conn_of(slot)->streams != NULL;
}

static void slot_evict(struct net_slot *slot)
{
    VEIL_LOG_DEBUG("idle gRPC connection closed to make room for a new one");
    conn_close(conn_of(slot));
}

/* The handshake's end is reported by on_event; nothing to ask for. */
static const struct net_slot_ops conn_slot_ops = {slot_busy, NULL, slot_evict};

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)lis;
    struct veil_grpc_server *srv = arg;
    struct h2_conn *c = NULL;
    nghttp2_session_callbacks *cbs = NULL;
    if (srv->shutting) {
        close(fd);
        return;
    }
    if (srv->max_conns != 0 && srv->nconns >= srv->max_conns) {
        veil__net_log_refusal(srv->loop, "gRPC connection", "the port's connection cap");
        close(fd);
        return;
    }
    veil__net_nodelay(fd);
    c = veil_calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    c->slot.ops = &conn_slot_ops;
    struct net_peer_key key;
    veil__net_peer_key(sa, salen > 0 ? (size_t)salen : 0, &key);
    veil_err arc = veil__net_admit_add(&srv->loop->admit, &c->slot, &key, veil_time_mono_ns());
    if (arc != VEIL_OK) {
        veil__net_log_refusal(srv->loop, "gRPC connection",
                              arc == VEIL_E_LIMIT ? "every connection busy at the connection caps"
                                                  : "out of memory");
        veil_free(c);
        close(fd);
        return;
    }
    c->srv = srv;
    c->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    struct event_base *base = srv->loop->base;
    if (srv->tls != NULL) {
        /* TLS as a filter over a socket bufferevent: each wake-up reads everything the
         * socket holds (on_sock_read) and decrypts all of it before the read callback,
         * instead of one 16 KiB record per trip through the loop. */
        SSL *ssl = SSL_new(srv->tls->ssl);
        struct bufferevent *raw = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (raw != NULL) {
            fd = -1;
            (void)bufferevent_set_max_single_write(raw, SOCKET_READ_MAX);
            /* Records beyond this stay in the filter's output, where on_send sees them. */
            bufferevent_setwatermark(raw, EV_WRITE, 0, SOCKET_READ_MAX);
            c->drained = event_new(base, -1, 0, on_drained, c);
            if (c->drained != NULL)
                c->raw_cb = evbuffer_add_cb(bufferevent_get_output(raw), on_raw_out, c);
        }
        if (ssl != NULL && raw != NULL)
            c->bev = bufferevent_openssl_filter_new(base, raw, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                    BEV_OPT_CLOSE_ON_FREE);
        if (c->bev == NULL || c->raw_cb == NULL) {
            if (c->bev == NULL) {
                SSL_free(ssl);
                if (raw != NULL) {
                    if (c->raw_cb != NULL)
                        (void)evbuffer_remove_cb_entry(bufferevent_get_output(raw), c->raw_cb);
                    c->raw_cb = NULL;
                    bufferevent_free(raw);
                } else {
                    close(fd);
                }
            }
            conn_close(c);
            return;
        }
        c->sock = raw;
        /* The handshake's deadline is the loop's (the sweep of limit.c closes it). */
        bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    } else {
        c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (c->bev == NULL) {
            close(fd);
            conn_close(c);
            return;
        }
        c->sock = c->bev;
    }
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        conn_close(c);
        return;
    }
    nghttp2_session_callbacks_set_send_callback(cbs, on_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option *opt = NULL;
    if (nghttp2_option_new(&opt) == 0) {
        nghttp2_option_set_max_send_header_block_length(opt, VEIL_LIMIT_HTTP_HEADERS);
        nghttp2_option_set_max_outbound_ack(opt, 1000);
    }
    int r = nghttp2_session_server_new2(&c->ng, cbs, c, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (r != 0) {
        c->ng = NULL;
        conn_close(c);
        return;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, srv->max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16u << 20},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, VEIL_LIMIT_HTTP_HEADERS},
    };
    if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, 3) != 0 ||
        nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, 64 << 20) != 0) {
        conn_close(c);
        return;
    }
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    /* The socket is read by on_sock_read, not by its bufferevent. */
    bufferevent_disable(c->sock, EV_READ);
    c->rd = event_new(base, bufferevent_getfd(c->sock), EV_READ | EV_PERSIST, on_sock_read, c);
    struct timeval idle = {(time_t)srv->idle_s, 0};
    if (c->rd == NULL || event_add(c->rd, srv->tls != NULL ? NULL : &idle) != 0) {
        conn_close(c);
        return;
    }
    conn_flush(c);
}

static void grpc_shutdown(void *p)
{
    struct veil_grpc_server *srv = p;
    srv->shutting = true;
    if (srv->lis != NULL) {
        veil__net_guard_release(&srv->guard);
        evconnlistener_free(srv->lis);
        srv->lis = NULL;
    }
    struct h2_conn *c = srv->conns;
    while (c != NULL) {
        struct h2_conn *next = c->next;
        (void)nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE,
                                    nghttp2_session_get_last_proc_stream_id(c->ng),
                                    NGHTTP2_NO_ERROR, NULL, 0);
        conn_flush(c);
        c = next;
    }
}

static void grpc_free(void *p)
{
    struct veil_grpc_server *srv = p;
    veil__net_guard_release(&srv->guard);
    if (srv->lis != NULL)
        evconnlistener_free(srv->lis);
    while (srv->conns != NULL)
        conn_close(srv->conns);
    veil_free(srv);
}

static const struct net_server_ops grpc_ops = {grpc_shutdown, grpc_free};

veil_err veil_grpc_server_new(struct veil_net_loop *loop, const struct veil_net_listen *lst,
                              veil_grpc_handler_fn fn, void *ud, struct veil_grpc_server **out,
                              struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_grpc_server *srv = NULL;
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
    srv->max_msg = lst->max_body != 0 ? lst->max_body : VEIL_NET_MAX_MESSAGE_DEFAULT;
    srv->max_streams = lst->max_streams != 0 ? lst->max_streams : VEIL_NET_MAX_STREAMS_DEFAULT;
    srv->max_conns = lst->max_conns;
    srv->idle_s = lst->idle_timeout_s != 0 ? lst->idle_timeout_s : VEIL_NET_IDLE_TIMEOUT_S;
    rc = veil__net_listen_socket(lst->host, lst->port, &fd, &srv->port, eb);
    if (rc != VEIL_OK)
        goto out;
    srv->lis = evconnlistener_new(loop->base, on_accept, srv, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (srv->lis == NULL) {
        rc = veil_errf(eb, VEIL_E_IO, "cannot accept on %s:%u", lst->host, (unsigned)srv->port);
        goto out;
    }
    fd = -1;
    if ((rc = veil__net_guard_init(&srv->guard, loop, srv->lis, "gRPC")) != VEIL_OK)
        goto out;
    rc = veil__net_loop_add_server(loop, &grpc_ops, srv);
    if (rc != VEIL_OK)
        goto out;
    *out = srv;
    srv = NULL;
    rc = VEIL_OK;
out:
    if (fd >= 0)
        close(fd);
    if (srv != NULL)
        grpc_free(srv);
    return rc;
}

uint16_t veil_grpc_server_port(const struct veil_grpc_server *s)
{
    return s->port;
}
