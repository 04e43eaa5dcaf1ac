/* The HTTP/1.1 and gRPC servers on a real loop: replies from other threads, trailers, errors,
 * and graceful stop. The gRPC client is a small nghttp2 client speaking h2c. */
#include "harness.h"
#include "net_int.h"
#include "veil/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

static struct veil_net_loop *g_loop;

static void *reply_later(void *arg)
{
    struct veil_http_req *req = arg;
    veil_http_req_reply(req, 201, "text/plain", "X-Test: yes\r\n", veil_span_from_str("later"));
    return NULL;
}

static void http_handler(void *ud, struct veil_http_req *req)
{
    (void)ud;
    struct veil_span p = veil_http_req_path(req);
    if (veil_span_eq_str(p, "/thread")) {
        pthread_t t;
        pthread_create(&t, NULL, reply_later, req);
        pthread_detach(t);
        return;
    }
    /* Echo method, path and body. */
    char out[4096];
    struct veil_span b = veil_http_req_body(req);
    int n = snprintf(out, sizeof(out), "%s %.*s %.*s", veil_http_req_method(req), (int)p.len,
                     (const char *)p.p, (int)b.len, (const char *)b.p);
    veil_http_req_reply(req, 200, "text/plain", NULL, veil_span_make(out, (size_t)n));
}

static void grpc_handler(void *ud, struct veil_grpc_call *call)
{
    (void)ud;
    const char *m = veil_grpc_call_method(call);
    struct veil_span msg = veil_grpc_call_message(call);
    if (strcmp(m, "/t.S/Echo") == 0)
        veil_grpc_call_finish(call, 0, NULL, msg);
    else
        veil_grpc_call_finish(call, VEIL_GRPC_UNIMPLEMENTED, "no such method: ü", msg);
}

static void *loop_main(void *arg)
{
    (void)arg;
    if (veil_net_loop_run(g_loop, 5) != VEIL_OK)
        abort();
    return NULL;
}

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        abort();
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static size_t http_roundtrip(uint16_t port, const char *req, char *out, size_t cap)
{
    int fd = connect_to(port);
    if (write(fd, req, strlen(req)) < 0)
        abort();
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd, out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fd);
    return n;
}

/* The loop's admission counts and budget, read on the loop thread. */
struct counts {
    unsigned nconns, npreauth;
    size_t used;
    uint64_t evicted, expired;
    int pipe_w;
};

static void read_counts(void *arg)
{
    struct counts *c = arg;
    c->nconns = g_loop->admit.nconns;
    c->npreauth = g_loop->admit.npreauth;
    c->used = g_loop->budget.used;
    c->evicted = g_loop->admit.evicted;
    c->expired = g_loop->admit.expired;
    char one = 1;
    if (write(c->pipe_w, &one, 1) != 1)
        abort();
}

static struct counts loop_counts(void)
{
    int p[2];
    struct counts c;
    memset(&c, 0, sizeof(c));
    if (pipe(p) != 0)
        abort();
    c.pipe_w = p[1];
    if (veil_net_loop_post(g_loop, read_counts, &c) != VEIL_OK)
        abort();
    char one;
    if (read(p[0], &one, 1) != 1)
        abort();
    close(p[0]);
    close(p[1]);
    return c;
}

/* Whether the server closed fd (EOF or reset) as far as can be seen without waiting. */
static bool closed_by_server(int fd)
{
    char b[256];
    ssize_t r = recv(fd, b, sizeof(b), MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* Sends req on fd and reads one reply of a known-length body into out. */
static size_t exchange(int fd, const char *req, char *out, size_t cap)
{
    if (write(fd, req, strlen(req)) < 0)
        abort();
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, out + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        out[n] = '\0';
        const char *end = strstr(out, "\r\n\r\n");
        const char *cl = strstr(out, "Content-Length: ");
        if (end != NULL && cl != NULL && n >= (size_t)(end + 4 - out) + (size_t)atoi(cl + 16))
            break;
    }
    out[n] = '\0';
    return n;
}

/*
 * REST connections count against the loop's limits without getting in evhttp's way: idle
 * connections past the pre-authentication cap close the oldest, two requests on one kept-alive
 * connection and two pipelined ones are answered, an upload past the in-flight budget has its
 * connection closed, a late idle connection is closed at the handshake deadline, and every
 * count and byte is given back once the clients are gone.
 */
TEST(rest_connections_count_against_the_loop_limits)
{
    struct veil_errbuf eb = {{0}};
    struct veil_http_server *hs = NULL;
    ASSERT_OK(veil_net_loop_new(&g_loop, &eb));
    struct veil_net_limits lim = {16, 16, 4, 1, 64u << 10};
    veil_net_loop_set_limits(g_loop, &lim, 0, NULL);
    struct veil_net_listen lst = {"127.0.0.1", 0, NULL, 1u << 20, 0, 0, 0};
    ASSERT_OK(veil_http_server_new(g_loop, &lst, http_handler, NULL, &hs, &eb));
    uint16_t hp = veil_http_server_port(hs);
    pthread_t t;
    pthread_create(&t, NULL, loop_main, NULL);

    int idle[6];
    for (int i = 0; i < 6; i++)
        idle[i] = connect_to(hp);
    usleep(100 * 1000);
    struct counts c = loop_counts();
    ASSERT_EQ_U64(c.nconns, 4);
    ASSERT_EQ_U64(c.npreauth, 4);
    ASSERT_EQ_U64(c.evicted, 2);
    ASSERT_TRUE(closed_by_server(idle[0]) && closed_by_server(idle[1]));
    ASSERT_FALSE(closed_by_server(idle[5]));

    char out[8192];
    int fd = connect_to(hp);
    exchange(fd, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out));
    ASSERT_STR_CONTAINS(out, "\r\n\r\nGET /one ");
    exchange(fd, "POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", out, sizeof(out));
    ASSERT_STR_CONTAINS(out, "\r\n\r\nPOST /two abc");
    http_roundtrip(hp,
                   "GET /p1 HTTP/1.1\r\nHost: x\r\n\r\n"
                   "GET /p2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                   out, sizeof(out));
    ASSERT_STR_CONTAINS(out, "GET /p1 ");
    ASSERT_STR_CONTAINS(out, "GET /p2 ");

    /* 100 KB of a 200 KB upload: past the 64 KiB budget, the connection is closed. */
    int up = connect_to(hp);
    const char *head = "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n";
    ASSERT_TRUE(write(up, head, strlen(head)) > 0);
    static char zeros[100000];
    ssize_t w = write(up, zeros, sizeof(zeros));
    (void)w;
    ssize_t r = read(up, out, sizeof(out));
    ASSERT_TRUE(r <= 0);
    close(up);
    c = loop_counts();
    ASSERT_TRUE(c.used < (64u << 10));

    /* The third idle connection made room for fd (whose first byte ended its
     * pre-authentication phase): fd stays past the deadline, the last three idle ones do not. */
    ASSERT_TRUE(closed_by_server(idle[2]));
    usleep(1500 * 1000);
    c = loop_counts();
    ASSERT_EQ_U64(c.expired, 3);
    ASSERT_TRUE(closed_by_server(idle[3]) && closed_by_server(idle[4]) &&
                closed_by_server(idle[5]));
    exchange(fd, "GET /three HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out));
    ASSERT_STR_CONTAINS(out, "\r\n\r\nGET /three ");
    close(fd);
    for (int i = 0; i < 6; i++)
        close(idle[i]);
    usleep(200 * 1000);
    c = loop_counts();
    ASSERT_EQ_U64(c.nconns, 0);
    ASSERT_EQ_U64(c.npreauth, 0);
    ASSERT_EQ_U64(c.used, 0);

    veil_net_loop_stop(g_loop);
    pthread_join(t, NULL);
    veil_net_loop_free(g_loop);
}

/* ---- a minimal h2c gRPC client ---- */

struct h2c {
    int fd;
    char status[8];
    char grpc_status[8];
    char grpc_message[128];
    uint8_t data[256];
    size_t data_len;
    size_t data_total;  /* every DATA byte, beyond what data holds */
    uint64_t data_hash; /* FNV-1a over every DATA byte */
    bool closed;
};

static ssize_t c_send(nghttp2_session *s, const uint8_t *d, size_t n, int f, void *ud)
{
    (void)s;
    (void)f;
    struct h2c *c = ud;
    return write(c->fd, d, n);
}

static int c_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name, size_t nl,
                    const uint8_t *v, size_t vl, uint8_t fl, void *ud)
{
    (void)s;
    (void)fr;
    (void)fl;
    struct h2c *c = ud;
    char *dst = NULL;
    size_t cap = 0;
    if (nl == 7 && memcmp(name, ":status", 7) == 0)
        dst = c->status, cap = sizeof(c->status);
    else if (nl == 11 && memcmp(name, "grpc-status", 11) == 0)
        dst = c->grpc_status, cap = sizeof(c->grpc_status);
    else if (nl == 12 && memcmp(name, "grpc-message", 12) == 0)
        dst = c->grpc_message, cap = sizeof(c->grpc_message);
    if (dst != NULL) {
        size_t k = vl < cap - 1 ? vl : cap - 1;
        memcpy(dst, v, k);
        dst[k] = '\0';
    }
    return 0;
}

static int c_data(nghttp2_session *s, uint8_t fl, int32_t id, const uint8_t *d, size_t n, void *ud)
{
    (void)s;
    (void)fl;
    (void)id;
    struct h2c *c = ud;
    for (size_t i = 0; i < n; i++)
        c->data_hash = (c->data_hash ^ d[i]) * 1099511628211u;
    c->data_total += n;
    if (c->data_len + n <= sizeof(c->data)) {
        memcpy(c->data + c->data_len, d, n);
        c->data_len += n;
    }
    return 0;
}

static int c_close(nghttp2_session *s, int32_t id, uint32_t e, void *ud)
{
    (void)s;
    (void)id;
    (void)e;
    ((struct h2c *)ud)->closed = true;
    return 0;
}

struct body_src {
    const uint8_t *p;
    size_t n, off;
};

static ssize_t c_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *fl,
                      nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)id;
    (void)ud;
    struct body_src *b = src->ptr;
    size_t k = b->n - b->off < len ? b->n - b->off : len;
    memcpy(buf, b->p + b->off, k);
    b->off += k;
    if (b->off == b->n)
        *fl |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)k;
}

static void grpc_call(uint16_t port, const char *path, const uint8_t *body, size_t n, struct h2c *c)
{
    char pathbuf[256];
    snprintf(pathbuf, sizeof(pathbuf), "%s", path);
    memset(c, 0, sizeof(*c));
    c->data_hash = 14695981039346656037u;
    c->fd = connect_to(port);
    nghttp2_session_callbacks *cb;
    nghttp2_session *s;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, c_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, c_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, c_close);
    nghttp2_session_client_new(&s, cb, c);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, NULL, 0);
    nghttp2_nv hdrs[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
        {(uint8_t *)":authority", (uint8_t *)"x", 10, 1, 0},
        {(uint8_t *)":path", (uint8_t *)pathbuf, 5, strlen(pathbuf), 0},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0},
        {(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, 0},
    };
    struct body_src src = {body, n, 0};
    nghttp2_data_provider prd;
    prd.source.ptr = &src;
    prd.read_callback = c_read;
    nghttp2_submit_request(s, NULL, hdrs, 6, &prd, NULL);
    uint8_t buf[4096];
    while (!c->closed) {
        if (nghttp2_session_send(s) != 0)
            break;
        ssize_t r = read(c->fd, buf, sizeof(buf));
        if (r <= 0)
            break;
        if (nghttp2_session_mem_recv(s, buf, (size_t)r) < 0)
            break;
    }
    nghttp2_session_del(s);
    close(c->fd);
}

TEST(http_and_grpc_servers)
{
    struct veil_errbuf eb = {{0}};
    struct veil_http_server *hs = NULL;
    struct veil_grpc_server *gs = NULL;
    ASSERT_OK(veil_net_loop_new(&g_loop, &eb));
    struct veil_net_listen lst = {"127.0.0.1", 0, NULL, 1000, 0, 0, 0};
    ASSERT_OK(veil_http_server_new(g_loop, &lst, http_handler, NULL, &hs, &eb));
    ASSERT_OK(veil_grpc_server_new(g_loop, &lst, grpc_handler, NULL, &gs, &eb));
    uint16_t hp = veil_http_server_port(hs), gp = veil_grpc_server_port(gs);
    ASSERT_TRUE(hp != 0 && gp != 0 && hp != gp);
    pthread_t t;
    pthread_create(&t, NULL, loop_main, NULL);

    char out[8192];
    http_roundtrip(hp,
                   "POST /a/b?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   "Content-Length: 5\r\n\r\nhello",
                   out, sizeof(out));
    ASSERT_STR_CONTAINS(out, "HTTP/1.1 200 OK\r\n");
    ASSERT_STR_CONTAINS(out, "Content-Length: 15\r\n");
    ASSERT_STR_CONTAINS(out, "\r\n\r\nPOST /a/b hello");
    http_roundtrip(hp, "GET /thread HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", out,
                   sizeof(out));
    ASSERT_STR_CONTAINS(out, "HTTP/1.1 201");
    ASSERT_STR_CONTAINS(out, "X-Test: yes\r\n");
    ASSERT_STR_CONTAINS(out, "later");
    /* Over the body cap (1000 bytes). */
    http_roundtrip(hp,
                   "POST /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   "Content-Length: 5000\r\n\r\n",
                   out, sizeof(out));
    ASSERT_STR_CONTAINS(out, "HTTP/1.1 413");

    struct h2c c;
    const uint8_t msg[] = {0, 0, 0, 0, 3, 'a', 'b', 'c'};
    grpc_call(gp, "/t.S/Echo", msg, sizeof(msg), &c);
    ASSERT_STR_EQ(c.status, "200");
    ASSERT_STR_EQ(c.grpc_status, "0");
    ASSERT_EQ_U64(c.data_len, sizeof(msg));
    ASSERT_MEM_EQ(c.data, msg, sizeof(msg));
    grpc_call(gp, "/t.S/Other", msg, sizeof(msg), &c);
    ASSERT_STR_EQ(c.grpc_status, "12");
    ASSERT_STR_EQ(c.grpc_message, "no such method: %C3%BC");
    ASSERT_EQ_U64(c.data_len, 0);
    /* Bad framing, then an announced message over the cap (1000). */
    grpc_call(gp, "/t.S/Echo", msg, 6, &c);
    ASSERT_STR_EQ(c.grpc_status, "13");
    const uint8_t big[] = {0, 0, 0, 0x10, 0, 'x'};
    grpc_call(gp, "/t.S/Echo", big, sizeof(big), &c);
    ASSERT_STR_EQ(c.grpc_status, "8");
    /* Compressed flag without grpc-encoding. */
    const uint8_t z[] = {1, 0, 0, 0, 1, 'x'};
    grpc_call(gp, "/t.S/Echo", z, sizeof(z), &c);
    ASSERT_STR_EQ(c.grpc_status, "13");

    veil_net_loop_stop(g_loop);
    pthread_join(t, NULL);
    veil_net_loop_free(g_loop);
}

/* A message many socket reads long arrives whole (the server reads the socket itself, in
 * large reads), and a connection that sends nothing is closed after the idle timeout. */
TEST(grpc_large_message_and_idle_timeout)
{
    struct veil_errbuf eb = {{0}};
    struct veil_grpc_server *gs = NULL;
    ASSERT_OK(veil_net_loop_new(&g_loop, &eb));
    struct veil_net_listen lst = {"127.0.0.1", 0, NULL, 8u << 20, 0, 0, 1};
    ASSERT_OK(veil_grpc_server_new(g_loop, &lst, grpc_handler, NULL, &gs, &eb));
    uint16_t gp = veil_grpc_server_port(gs);
    pthread_t t;
    pthread_create(&t, NULL, loop_main, NULL);

    size_t mlen = (3u << 20) + 12345, n = mlen + 5;
    uint8_t *msg = malloc(n);
    ASSERT_TRUE(msg != NULL);
    msg[0] = 0;
    msg[1] = (uint8_t)(mlen >> 24);
    msg[2] = (uint8_t)(mlen >> 16);
    msg[3] = (uint8_t)(mlen >> 8);
    msg[4] = (uint8_t)mlen;
    uint64_t x = 88172645463325252u, want = 14695981039346656037u;
    for (size_t i = 5; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        msg[i] = (uint8_t)x;
    }
    for (size_t i = 0; i < n; i++)
        want = (want ^ msg[i]) * 1099511628211u;
    struct h2c c;
    grpc_call(gp, "/t.S/Echo", msg, n, &c);
    ASSERT_STR_EQ(c.grpc_status, "0");
    ASSERT_EQ_U64(c.data_total, n);
    ASSERT_EQ_U64(c.data_hash, want);
    free(msg);

    /* Silent client: the server's SETTINGS, then EOF within the 1 s idle timeout (the read
     * gives up after 10 s, which fails the test). */
    int fd = connect_to(gp);
    uint8_t buf[256];
    ssize_t r;
    while ((r = read(fd, buf, sizeof(buf))) > 0)
        ;
    ASSERT_EQ_I64(r, 0);
    close(fd);

    veil_net_loop_stop(g_loop);
    pthread_join(t, NULL);
    veil_net_loop_free(g_loop);
}

RUN_TESTS()
