/*
 * net_int.h: internals shared by the files of the net module: the loop structure, the list
 * of servers it owns, the in-flight request count that graceful shutdown waits on, and the
 * admission limits every server of a loop shares (limit.c): connection caps, the handshake
 * deadline, the in-flight byte budget and the accept-error guard.
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
 * counted and reported with the next event after the interval.
 */
struct net_ratelog {
    uint64_t last_ns; /* when a line was last written; 0: never */
    uint64_t suppressed;
};

/*
 * Whether to write a line now; *suppressed_out is the count of events not logged since the
 * last line (then reset). Pure: now_ns and interval_ns come from the caller.
 */
VEIL_NODISCARD bool veil__net_ratelog_tick(struct net_ratelog *r, uint64_t now_ns,
                                           uint64_t interval_ns, uint64_t *suppressed_out);

/*
 * Connection admission. Every accepted connection of every server on a loop holds a slot in
 * the loop's table: a count per peer address, a global count, one list ordered by last
 * activity (least recent first) from which idle connections are closed to make room, and a
 * second list, in accept order, of the connections still before authentication (TLS
 * handshake not finished, or in plaintext no byte received yet), which are capped and closed
 * at the handshake deadline.
 */
struct net_peer;
struct net_slot;

struct net_slot_ops {
    /* A request of the connection is in progress: it is not closed to make room. */
    bool (*busy)(const struct net_slot *slot);
    /* Whether the handshake has finished since the slot was last told (may be NULL). */
    bool (*authed)(const struct net_slot *slot);
    /* Closes the connection (its slot is already removed). Never called from inside one of
     * that connection's own callbacks. */
    void (*evict)(struct net_slot *slot);
};

struct net_slot {
    const struct net_slot_ops *ops;
    struct net_slot *prev, *next;   /* activity order */
    struct net_slot *pprev, *pnext; /* pre-authentication list, accept order */
    struct net_peer *peer;          /* NULL: not admitted */
    uint64_t active_ns;
    uint64_t accepted_ns;
    bool preauth; /* in the pre-authentication list */
};

struct net_admit {
    unsigned max_conns, max_per_peer, max_preauth;
    uint64_t handshake_ns; /* deadline of the pre-authentication phase */
    unsigned nconns, npreauth;
    struct net_slot *head, *tail;   /* least recently active first */
    struct net_slot *phead, *ptail; /* oldest pre-authentication connection first */
    struct net_peer **buckets;
    uint64_t refused, evicted, expired; /* totals, for logs and tests */
};

/* Key of a peer: its IP address (IPv4-mapped IPv6 folded into IPv4); port ignored. */
struct net_peer_key {
    uint8_t family; /* 4 or 6; 0: other (all such peers share one key) */
    uint8_t addr[16];
};

/* Fills key from a peer address (sa may be NULL or of another family: key family 0). Pure. */
void veil__net_peer_key(const struct sockaddr *sa, size_t salen, struct net_peer_key *key);

/* Sets up an empty table (zero caps count as 1). Allocates nothing. */
void veil__net_admit_init(struct net_admit *a, unsigned max_conns, unsigned max_per_peer,
                          unsigned max_preauth, uint64_t handshake_ns);
/* Frees the table's peers; the slots belong to the servers and are not touched. */
void veil__net_admit_release(struct net_admit *a);

/*
 * Admits slot for a peer as a pre-authentication connection. Over a cap, closes a connection
 * to make room through its ops->evict: the least recently active idle one of the same peer
 * for the peer cap, of anyone for the global cap, and the oldest pre-authentication one for
 * that cap. Errors: VEIL_E_LIMIT (over the peer or global cap and every candidate busy:
 * refuse the newcomer), VEIL_E_NOMEM. Loop thread only.
 */
VEIL_NODISCARD veil_err veil__net_admit_add(struct net_admit *a, struct net_slot *slot,
                                            const struct net_peer_key *key, uint64_t now_ns);
/* Marks activity (moves the slot to the end of the eviction order). No-op if not admitted. */
void veil__net_admit_touch(struct net_admit *a, struct net_slot *slot, uint64_t now_ns);
/* Takes the slot out of the pre-authentication list. No-op if it is not in it. */
void veil__net_admit_authed(struct net_admit *a, struct net_slot *slot);
/* Closes up to n idle connections, least recently active first; returns how many. */
unsigned veil__net_admit_evict_idle(struct net_admit *a, unsigned n);
/*
 * Closes the pre-authentication connections whose handshake deadline has passed at now_ns
 * (those whose ops->authed now says done leave the list instead); returns how many closed.
 */
unsigned veil__net_admit_expire(struct net_admit *a, uint64_t now_ns);
/* Removes an admitted slot; no-op if not admitted. */
void veil__net_admit_remove(struct net_admit *a, struct net_slot *slot);

/*
 * The server-wide budget of request bytes in flight: every byte a server buffers for a
 * request (a body being received, an inflated message, a request being served) is taken
 * before it is held and given back when it is freed.
 */
struct net_budget {
    size_t max;
    size_t used;
    uint64_t refused; /* takes refused, for logs and tests */
};

/* What a request refused for the budget is told (gRPC message, REST error). */
#define VEIL_NET_BUDGET_MSG                                                                        \
    "server busy: the request bytes in flight are at the server's budget; retry later"

/* Takes n bytes; false (nothing taken) when that would pass the budget. Loop thread only. */
VEIL_NODISCARD bool veil__net_budget_take(struct net_budget *b, size_t n);
/* Gives back n bytes taken before (asserts that they were). */
void veil__net_budget_give(struct net_budget *b, size_t n);
/* The bytes left. */
size_t veil__net_budget_room(const struct net_budget *b);

/*
 * A listener's accept-error guard: EMFILE/ENFILE are met by closing idle connections (as at
 * the caps) or else with the loop's reserve descriptor (closed, the pending connection
 * accepted and closed, reopened); when nothing could be freed the listener rests
 * VEIL_NET_ACCEPT_PAUSE_MS instead of spinning; errors are logged once per
 * VEIL_NET_LOG_INTERVAL_S with a count.
 */
#define VEIL_NET_EMFILE_EVICT 16u /* idle connections closed per EMFILE */

struct net_guard {
    struct net_guard *next; /* the loop's guards */
    struct veil_net_loop *loop;
    struct evconnlistener *lis;
    struct event *resume; /* re-enables the listener after a pause */
    const char *what;     /* "gRPC" or "REST" */
    struct net_ratelog log;
    uint64_t errors, dropped;
    bool paused; /* resting after an accept error */
    bool held;   /* disabled by its server (see veil__net_guard_hold) */
};

/* Starts guarding lis (registered with the loop). Errors: VEIL_E_NOMEM. */
VEIL_NODISCARD veil_err veil__net_guard_init(struct net_guard *g, struct veil_net_loop *loop,
                                             struct evconnlistener *lis, const char *what);
/*
 * The loop's periodic sweep (an event callback, arg the loop): closes pre-authentication
 * connections past their deadline and reports suppressed log lines. Also how the REST
 * listener's error callback, whose argument is evhttp's, finds the loop (see limit.c).
 */
void veil__net_sweep(evutil_socket_t fd, short what, void *arg);
/* Stops guarding (reports suppressed errors); a zeroed guard is a no-op. */
void veil__net_guard_release(struct net_guard *g);
/* A server stops (hold true) or resumes accepting; a rest after an error still applies. */
void veil__net_guard_hold(struct net_guard *g, bool hold);

struct veil_net_loop {
    struct event_base *base;
    struct event *wake; /* made active by veil_net_loop_post from any thread */
    struct event *sigterm;
    struct event *sigint;
    struct event *drain_tick;
    struct event *sweep; /* periodic: handshake deadlines, suppressed-log reports */
    pthread_mutex_t mu;
    struct net_task *head, *tail; /* posted tasks, under mu */
    struct net_server_ref *servers;
    atomic_long inflight; /* requests handed to a handler and not yet answered */
    atomic_bool stop_requested;
    bool stopping; /* loop thread only */
    uint64_t drain_deadline_ns;
    unsigned drain_s;
    /* Admission and the in-flight byte budget (loop thread only). */
    struct net_admit admit;
    struct net_budget budget;
    struct net_guard *guards;
    struct net_ratelog refuse_log; /* refused connections and requests, all servers */
    uint64_t closed_report_ns;     /* when the sweep last reported closed connections */
    uint64_t evicted_reported, expired_reported;
    int spare_fd; /* the reserve descriptor for EMFILE; -1: none */
};

struct veil_tls_ctx {
    SSL_CTX *ssl;
    char alpn[16];
};

/*
 * Logs a refused connection or request through the loop's shared rate limit: one line per
 * VEIL_NET_LOG_INTERVAL_S with the count of those not logged. what names the server, why
 * the reason.
 */
void veil__net_log_refusal(struct veil_net_loop *loop, const char *what, const char *why);

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
