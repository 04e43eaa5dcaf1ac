/*
 * net_int.h: internals shared by the files of the net module: the loop structure, the list
 * of servers it owns, and the in-flight request count that graceful shutdown waits on.
 */
#ifndef VEIL_NET_INT_H
#define VEIL_NET_INT_H

#include "veil/net.h"

#include <event2/event.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>

struct net_task {
    struct net_task *next;
    veil_net_task_fn fn;
    void *arg;
};

/* Each server kind registers how it stops accepting, and how it is freed. */
struct net_server_ops {
    void (*shutdown)(void *srv); /* stop accepting, tell peers to go away */
    void (*free)(void *srv);
};

struct net_server_ref {
    struct net_server_ref *next;
    const struct net_server_ops *ops;
    void *srv;
};

struct veil_net_loop {
    struct event_base *base;
    struct event *wake; /* made active by veil_net_loop_post from any thread */
    struct event *sigterm;
    struct event *sigint;
    struct event *drain_tick;
    pthread_mutex_t mu;
    struct net_task *head, *tail; /* posted tasks, under mu */
    struct net_server_ref *servers;
    atomic_long inflight; /* requests handed to a handler and not yet answered */
    atomic_bool stop_requested;
    bool stopping; /* loop thread only */
    uint64_t drain_deadline_ns;
    unsigned drain_s;
};

struct veil_tls_ctx {
    SSL_CTX *ssl;
    char alpn[16];
};

/* Registers a server with the loop, which frees it in veil_net_loop_free. */
VEIL_NODISCARD veil_err veil__net_loop_add_server(struct veil_net_loop *loop,
                                                  const struct net_server_ops *ops, void *srv);

/* Opens a listening TCP socket (non-blocking, SO_REUSEADDR, TCP_NODELAY inherited). */
VEIL_NODISCARD veil_err veil__net_listen_socket(const char *host, uint16_t port, int *fd_out,
                                                uint16_t *port_out, struct veil_errbuf *eb);

/* Sets TCP_NODELAY on an accepted socket. */
void veil__net_nodelay(int fd);

/* Drains OpenSSL's error queue into eb as "what: reason" and returns rc. */
veil_err veil__net_ssl_err(struct veil_errbuf *eb, veil_err rc, const char *what);

#endif /* VEIL_NET_INT_H */
