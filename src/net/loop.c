/*
 * The event loop: one libevent base driven by one thread. Other threads hand work back to it
 * through a mutex-protected task queue and a user event. SIGTERM/SIGINT (or
 * veil_net_loop_stop) start a graceful shutdown: servers stop accepting and send GOAWAY, then
 * the loop keeps running until every request in flight is answered or the drain time ends.
 * The loop also owns the admission limits its servers share (limit.c) and a periodic sweep
 * that enforces handshake deadlines.
 */
#include "net_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SWEEP_INTERVAL_MS 250 /* handshake deadlines are enforced this finely */

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static int threads_ok;

static void threads_init(void)
{
    threads_ok = evthread_use_pthreads() == 0;
    /* A peer that closes mid-write must yield EPIPE, not kill the server. */
    signal(SIGPIPE, SIG_IGN);
}

static void run_tasks(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct veil_net_loop *loop = arg;
    pthread_mutex_lock(&loop->mu);
    struct net_task *t = loop->head;
    loop->head = loop->tail = NULL;
    pthread_mutex_unlock(&loop->mu);
    while (t != NULL) {
        struct net_task *next = t->next;
        t->fn(t->arg);
        veil_free(t);
        t = next;
    }
}

static void begin_shutdown(struct veil_net_loop *loop)
{
    if (loop->stopping)
        return;
    loop->stopping = true;
    VEIL_LOG_INFO("shutting down: no new connections, draining requests in flight");
    for (struct net_server_ref *r = loop->servers; r != NULL; r = r->next)
        r->ops->shutdown(r->srv);
    loop->drain_deadline_ns = veil_time_mono_ns() + (uint64_t)loop->drain_s * 1000000000ULL;
    struct timeval tv = {0, 20000};
    event_add(loop->drain_tick, &tv);
}

static void drain_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct veil_net_loop *loop = arg;
    long n = atomic_load(&loop->inflight);
    if (n <= 0 || veil_time_mono_ns() >= loop->drain_deadline_ns) {
        if (n > 0)
            VEIL_LOG_WARN("shutdown: %ld requests still in flight after the drain time", n);
        event_base_loopexit(loop->base, NULL);
        return;
    }
    struct timeval tv = {0, 20000};
    event_add(loop->drain_tick, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct veil_net_loop *loop = arg;
    VEIL_LOG_INFO("signal %d received", (int)sig);
    begin_shutdown(loop);
}

static void stop_task(void *arg)
{
    begin_shutdown(arg);
}

veil_err veil_net_loop_new(struct veil_net_loop **out, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct veil_net_loop *loop = NULL;
    *out = NULL;
    pthread_once(&threads_once, threads_init);
    if (!threads_ok) {
        rc = veil_errf(eb, VEIL_E_INTERNAL, "libevent has no thread support");
        goto out;
    }
    loop = veil_calloc(1, sizeof(*loop));
    if (loop == NULL) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    loop->spare_fd = -1;
    pthread_mutex_init(&loop->mu, NULL);
    atomic_init(&loop->inflight, 0);
    atomic_init(&loop->stop_requested, false);
    loop->base = event_base_new();
    if (loop->base == NULL) {
        rc = veil_errf(eb, VEIL_E_INTERNAL, "cannot create the event base");
        goto out;
    }
    loop->wake = event_new(loop->base, -1, 0, run_tasks, loop);
    loop->sigterm = evsignal_new(loop->base, SIGTERM, on_signal, loop);
    loop->sigint = evsignal_new(loop->base, SIGINT, on_signal, loop);
    loop->drain_tick = evtimer_new(loop->base, drain_check, loop);
    loop->sweep = event_new(loop->base, -1, EV_PERSIST, veil__net_sweep, loop);
    struct timeval sweep_tv = {0, SWEEP_INTERVAL_MS * 1000};
    if (loop->wake == NULL || loop->sigterm == NULL || loop->sigint == NULL ||
        loop->drain_tick == NULL || loop->sweep == NULL || event_add(loop->sweep, &sweep_tv) != 0) {
        rc = VEIL_E_NOMEM;
        goto out;
    }
    struct veil_net_limits lim;
    veil_net_limits_default(0, &lim);
    veil__net_admit_init(&loop->admit, lim.max_conns, lim.max_conns_per_peer, lim.max_preauth,
                         (uint64_t)lim.handshake_timeout_s * 1000000000ULL);
    loop->budget.max = lim.max_inflight_bytes;
    /* The reserve descriptor that lets a listener at EMFILE still take and close a pending
     * connection (see the accept-error guard in limit.c). */
    loop->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    *out = loop;
    loop = NULL;
    rc = VEIL_OK;
out:
    veil_net_loop_free(loop);
    return rc;
}

veil_err veil_net_loop_run(struct veil_net_loop *loop, unsigned drain_s)
{
    loop->drain_s = drain_s;
    if (evsignal_add(loop->sigterm, NULL) != 0 || evsignal_add(loop->sigint, NULL) != 0)
        return VEIL_E_INTERNAL;
    if (atomic_load(&loop->stop_requested))
        begin_shutdown(loop);
    int r = event_base_dispatch(loop->base);
    event_del(loop->sigterm);
    event_del(loop->sigint);
    return r < 0 ? VEIL_E_INTERNAL : VEIL_OK;
}

void veil_net_loop_stop(struct veil_net_loop *loop)
{
    atomic_store(&loop->stop_requested, true);
    if (veil_net_loop_post(loop, stop_task, loop) != VEIL_OK)
        VEIL_LOG_ERR("cannot queue the stop request");
}

veil_err veil_net_loop_post(struct veil_net_loop *loop, veil_net_task_fn fn, void *arg)
{
    struct net_task *t = veil_malloc(sizeof(*t));
    if (t == NULL)
        return VEIL_E_NOMEM;
    t->next = NULL;
    t->fn = fn;
    t->arg = arg;
    pthread_mutex_lock(&loop->mu);
    if (loop->tail != NULL)
        loop->tail->next = t;
    else
        loop->head = t;
    loop->tail = t;
    pthread_mutex_unlock(&loop->mu);
    event_active(loop->wake, EV_READ, 0);
    return VEIL_OK;
}

void veil_net_loop_free(struct veil_net_loop *loop)
{
    if (loop == NULL)
        return;
    /* Replies posted after the loop stopped are delivered (queued on their connections, or
     * freed when the connection is gone) before the servers and connections go away. */
    if (loop->wake != NULL)
        run_tasks(-1, 0, loop);
    struct net_server_ref *r = loop->servers;
    while (r != NULL) {
        struct net_server_ref *next = r->next;
        r->ops->free(r->srv);
        veil_free(r);
        r = next;
    }
    if (loop->wake != NULL)
        event_free(loop->wake);
    if (loop->sigterm != NULL)
        event_free(loop->sigterm);
    if (loop->sigint != NULL)
        event_free(loop->sigint);
    if (loop->drain_tick != NULL)
        event_free(loop->drain_tick);
    if (loop->sweep != NULL)
        event_free(loop->sweep);
    if (loop->base != NULL)
        event_base_free(loop->base);
    veil__net_admit_release(&loop->admit);
    if (loop->spare_fd >= 0)
        close(loop->spare_fd);
    pthread_mutex_destroy(&loop->mu);
    veil_free(loop);
}

veil_err veil__net_loop_add_server(struct veil_net_loop *loop, const struct net_server_ops *ops,
                                   void *srv)
{
    struct net_server_ref *r = veil_calloc(1, sizeof(*r));
    if (r == NULL)
        return VEIL_E_NOMEM;
    r->ops = ops;
    r->srv = srv;
    r->next = loop->servers;
    loop->servers = r;
    return VEIL_OK;
}

void veil__net_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

veil_err veil__net_listen_socket(const char *host, uint16_t port, int *fd_out, uint16_t *port_out,
                                 struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct addrinfo hints, *res = NULL;
    int fd = -1;
    char portstr[8];
    *fd_out = -1;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
    int gr = getaddrinfo(host, portstr, &hints, &res);
    if (gr != 0) {
        rc = veil_errf(eb, VEIL_E_INVALID, "cannot resolve %s: %s", host, gai_strerror(gr));
        goto out;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = veil_errf(eb, VEIL_E_IO, "socket: %s", strerror(errno));
        goto out;
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* Linux copies TCP_NODELAY to accepted sockets: replies never wait for Nagle. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        rc = veil_errf(eb, VEIL_E_IO, "cannot bind %s:%u: %s", host, (unsigned)port,
                       strerror(errno));
        goto out;
    }
    if (listen(fd, 1024) != 0) {
        rc = veil_errf(eb, VEIL_E_IO, "listen %s:%u: %s", host, (unsigned)port, strerror(errno));
        goto out;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        rc = veil_errf(eb, VEIL_E_IO, "getsockname: %s", strerror(errno));
        goto out;
    }
    if (ss.ss_family == AF_INET)
        *port_out = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else
        *port_out = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    *fd_out = fd;
    fd = -1;
    rc = VEIL_OK;
out:
    if (fd >= 0)
        close(fd);
    if (res != NULL)
        freeaddrinfo(res);
    return rc;
}
