/*
 * net_int.h: internals shared by the files of the net module: the loop structure, the list
 * of servers it owns, and the in-flight request count that graceful shutdown waits on.
 */
#ifndef VEIL_NET_INT_H
#define VEIL_NET_INT_H

#include "veil/net.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

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

/*
 * A rate-limited log line: the first event of an interval is logged at once, the others are
 * counted and reported with the next event after the interval (or by veil__net_ratelog_flush).
 */
struct net_ratelog {
    uint64_t last_ns; /* when a line was last written; 0: never */
    uint64_t suppressed;
};

/* Whether to write a line now; *suppressed_out is the count of events not logged since the
 * last line (reset). Pure: now_ns and interval_ns come from the caller. */
bool veil__net_ratelog_tick(struct net_ratelog *r, uint64_t now_ns, uint64_t interval_ns,
                            uint64_t *suppressed_out);

/*
 * Connection admission. Every accepted connection of every server on a loop holds a slot in
 * the loop's table: a count per peer address, a global count, and one list ordered by last
 * activity (least recent first) from which idle connections are closed to make room.
 */
struct net_peer;
struct net_slot;

struct net_slot_ops {
    bool (*busy)(const struct net_slot *slot); /* a request of it is in progress */
    void (*evict)(struct net_slot *slot);      /* close it (the slot is already removed) */
};

struct net_slot {
    const struct net_slot_ops *ops;
    struct net_slot *prev, *next; /* activity order */
    struct net_peer *peer;        /* NULL: not admitted */
    uint64_t active_ns;
};

struct net_admit {
    unsigned max_conns, max_per_peer;
    unsigned nconns;
    struct net_slot *head, *tail; /* least recently active first */
    struct net_peer **buckets;
    size_t nbuckets;
    uint64_t refused, evicted; /* totals, for logs and tests */
    struct net_ratelog log;
};

/* Key of a peer: its IP address (IPv4-mapped IPv6 folded into IPv4); port ignored. */
struct net_peer_key {
    uint8_t family; /* 4 or 6; 0: other (all such peers share one key) */
    uint8_t addr[16];
};

void veil__net_peer_key(const struct sockaddr *sa, size_t salen, struct net_peer_key *key);

void veil__net_admit_init(struct net_admit *a, unsigned max_conns, unsigned max_per_peer);
void veil__net_admit_release(struct net_admit *a);

/*
 * Admits slot for a peer. Over a cap, closes the least recently active idle connection (of
 * the same peer for the peer cap, of anyone for the global cap) through its ops->evict.
 * Errors: VEIL_E_LIMIT (over a cap and every candidate busy: refuse the connection),
 * VEIL_E_NOMEM. Loop thread only.
 */
VEIL_NODISCARD veil_err veil__net_admit_add(struct net_admit *a, struct net_slot *slot,
                                            const struct net_peer_key *key, uint64_t now_ns);
/* Marks activity (moves the slot to the end of the eviction order). No-op if not admitted. */
void veil__net_admit_touch(struct net_admit *a, struct net_slot *slot, uint64_t now_ns);
/* Closes up to n idle connections, least recently active first; returns how many. */
unsigned veil__net_admit_evict_idle(struct net_admit *a, unsigned n);
/* Removes an admitted slot; no-op if not admitted. */
void veil__net_admit_remove(struct net_admit *a, struct net_slot *slot);

/*
 * A listener's accept-error guard: EMFILE/ENFILE are met with the reserve descriptor (closed,
 * the pending connection accepted and closed, reopened), the listener rests
 * VEIL_NET_ACCEPT_PAUSE_MS instead of spinning, and errors are logged once per
 * VEIL_NET_ACCEPT_LOG_INTERVAL_S with a count.
 */
#define VEIL_NET_EMFILE_EVICT 16u /* idle connections closed per EMFILE */

struct net_guard {
    struct veil_net_loop *loop;
    struct evconnlistener *lis;
    struct event *resume; /* re-enables the listener after a pause */
    struct event *tick;   /* periodic: flushes the error count; also how the REST error
                           * callback finds this guard (see net_guard_of) */
    const char *what;     /* "gRPC" or "REST" */
    struct net_ratelog log;
    uint64_t errors, dropped;
};

/* Starts guarding lis. Errors: VEIL_E_NOMEM. */
VEIL_NODISCARD veil_err veil__net_guard_init(struct net_guard *g, struct veil_net_loop *loop,
                                             struct evconnlistener *lis, const char *what);
void veil__net_guard_release(struct net_guard *g);

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
    /* Admission and the in-flight byte budget (loop thread only). */
    struct net_admit admit;
    size_t max_inflight;
    size_t inflight_bytes;
    uint64_t budget_refused;
    int spare_fd; /* the reserve descriptor for EMFILE; -1 when it could not be reopened */
    uint64_t drain_deadline_ns;
    unsigned drain_s;
};

struct veil_tls_ctx {
    SSL_CTX *ssl;
    char alpn[16];
};

/* Takes n bytes from the loop's in-flight budget; false (nothing taken) when over it. */
VEIL_NODISCARD bool veil__net_budget_take(struct veil_net_loop *loop, size_t n);
/* Returns n bytes taken before. */
void veil__net_budget_give(struct veil_net_loop *loop, size_t n);
/* The bytes left in the budget. */
size_t veil__net_budget_room(const struct veil_net_loop *loop);

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
