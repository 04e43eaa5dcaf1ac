/*
 * Admission limits shared by every server on a loop: connection caps per peer address and
 * overall (over a cap, the least recently active idle connection is closed to make room; when
 * all are busy the newcomer is refused), a cap and a deadline on connections that have not
 * authenticated yet (oldest closed first), the server-wide budget of request bytes in flight,
 * the accept-error guard (reserve descriptor for EMFILE/ENFILE, a rest instead of a spinning
 * listener, one log line per interval with a count), and the machine-sized defaults.
 * Everything here runs on the loop thread except the defaults and the rlimit helper.
 */
#include "net_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define PEER_BUCKETS 1024u /* hash buckets of the peer table (a power of two) */
#define NS_PER_S 1000000000ULL

struct net_peer {
    struct net_peer *next;
    struct net_peer_key key;
    unsigned n;
};

/* ---- Rate-limited logging ---- */

bool veil__net_ratelog_tick(struct net_ratelog *r, uint64_t now_ns, uint64_t interval_ns,
                            uint64_t *suppressed_out)
{
    *suppressed_out = 0;
    if (r->last_ns != 0 && now_ns - r->last_ns < interval_ns) {
        r->suppressed++;
        return false;
    }
    *suppressed_out = r->suppressed;
    r->suppressed = 0;
    r->last_ns = now_ns != 0 ? now_ns : 1;
    return true;
}

void veil__net_log_refusal(struct veil_net_loop *loop, const char *what, const char *why)
{
    uint64_t more = 0;
    if (!veil__net_ratelog_tick(&loop->refuse_log, veil_time_mono_ns(),
                                (uint64_t)VEIL_NET_LOG_INTERVAL_S * NS_PER_S, &more))
        return;
    VEIL_LOG_WARN("%s refused: %s (%u connections open, %zu of %zu request bytes in flight; "
                  "%llu more refusals not logged since the last report)",
                  what, why, loop->admit.nconns, loop->budget.used, loop->budget.max,
                  (unsigned long long)more);
}

/* ---- Peers ---- */

void veil__net_peer_key(const struct sockaddr *sa, size_t salen, struct net_peer_key *key)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(key, 0, sizeof(*key));
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET && salen >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        key->family = 4;
        memcpy(key->addr, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6 && salen >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        const uint8_t *a = in6->sin6_addr.s6_addr;
        /* An IPv4 client of a dual-stack socket is the same peer as over IPv4. */
        if (memcmp(a, mapped, sizeof(mapped)) == 0) {
            key->family = 4;
            memcpy(key->addr, a + 12, 4);
        } else {
            key->family = 6;
            memcpy(key->addr, a, 16);
        }
    }
}

static size_t peer_hash(const struct net_peer_key *k)
{
    /* FNV-1a: peers choose their addresses only within their own networks. */
    uint32_t h = 2166136261u;
    h = (h ^ k->family) * 16777619u;
    for (size_t i = 0; i < sizeof(k->addr); i++)
        h = (h ^ k->addr[i]) * 16777619u;
    return h & (PEER_BUCKETS - 1);
}

static struct net_peer *peer_find(struct net_admit *a, const struct net_peer_key *k)
{
    if (a->buckets == NULL)
        return NULL;
    for (struct net_peer *p = a->buckets[peer_hash(k)]; p != NULL; p = p->next)
        if (p->key.family == k->family && memcmp(p->key.addr, k->addr, sizeof(k->addr)) == 0)
            return p;
    return NULL;
}

/* ---- Admission ---- */

void veil__net_admit_init(struct net_admit *a, unsigned max_conns, unsigned max_per_peer,
                          unsigned max_preauth, uint64_t handshake_ns)
{
    memset(a, 0, sizeof(*a));
    a->max_conns = max_conns != 0 ? max_conns : 1;
    a->max_per_peer = max_per_peer != 0 ? max_per_peer : 1;
    a->max_preauth = max_preauth != 0 ? max_preauth : 1;
    a->handshake_ns = handshake_ns;
}

void veil__net_admit_release(struct net_admit *a)
{
    /* Servers remove their connections' slots when they free them; only peers can remain
     * here if one did not, and the slots (owned by the servers) are not touched. */
    for (size_t i = 0; a->buckets != NULL && i < PEER_BUCKETS; i++) {
        while (a->buckets[i] != NULL) {
            struct net_peer *p = a->buckets[i];
            a->buckets[i] = p->next;
            veil_free(p);
        }
    }
    a->head = a->tail = a->phead = a->ptail = NULL;
    a->nconns = a->npreauth = 0;
    veil_free(a->buckets);
    a->buckets = NULL;
}

static void list_unlink(struct net_admit *a, struct net_slot *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        a->head = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    else
        a->tail = s->prev;
    s->prev = s->next = NULL;
}

static void list_append(struct net_admit *a, struct net_slot *s)
{
    s->prev = a->tail;
    s->next = NULL;
    if (a->tail != NULL)
        a->tail->next = s;
    else
        a->head = s;
    a->tail = s;
}

void veil__net_admit_authed(struct net_admit *a, struct net_slot *s)
{
    if (!s->preauth)
        return;
    if (s->pprev != NULL)
        s->pprev->pnext = s->pnext;
    else
        a->phead = s->pnext;
    if (s->pnext != NULL)
        s->pnext->pprev = s->pprev;
    else
        a->ptail = s->pprev;
    s->pprev = s->pnext = NULL;
    s->preauth = false;
    a->npreauth--;
}

void veil__net_admit_remove(struct net_admit *a, struct net_slot *slot)
{
    struct net_peer *p = slot->peer;
    if (p == NULL)
        return;
    veil__net_admit_authed(a, slot);
    list_unlink(a, slot);
    slot->peer = NULL;
    a->nconns--;
    if (--p->n == 0) {
        struct net_peer **pp = &a->buckets[peer_hash(&p->key)];
        while (*pp != p)
            pp = &(*pp)->next;
        *pp = p->next;
        veil_free(p);
    }
}

void veil__net_admit_touch(struct net_admit *a, struct net_slot *slot, uint64_t now_ns)
{
    if (slot->peer == NULL)
        return;
    slot->active_ns = now_ns;
    if (a->tail != slot) {
        list_unlink(a, slot);
        list_append(a, slot);
    }
}

/* The least recently active idle slot (of peer p, or of anyone when p is NULL). */
static struct net_slot *oldest_idle(struct net_admit *a, const struct net_peer *p)
{
    for (struct net_slot *s = a->head; s != NULL; s = s->next)
        if ((p == NULL || s->peer == p) && !s->ops->busy(s))
            return s;
    return NULL;
}

static void evict(struct net_admit *a, struct net_slot *s)
{
    veil__net_admit_remove(a, s);
    a->evicted++;
    s->ops->evict(s);
}

/* Whether the oldest pre-authentication slot has finished its handshake in the meantime. */
static bool head_authed(struct net_admit *a)
{
    struct net_slot *s = a->phead;
    if (s->ops->authed == NULL || !s->ops->authed(s))
        return false;
    veil__net_admit_authed(a, s);
    return true;
}

unsigned veil__net_admit_evict_idle(struct net_admit *a, unsigned n)
{
    unsigned done = 0;
    while (done < n) {
        struct net_slot *victim = oldest_idle(a, NULL);
        if (victim == NULL)
            break;
        evict(a, victim);
        done++;
    }
    return done;
}

unsigned veil__net_admit_expire(struct net_admit *a, uint64_t now_ns)
{
    unsigned done = 0;
    while (a->phead != NULL && now_ns >= a->phead->accepted_ns &&
           now_ns - a->phead->accepted_ns >= a->handshake_ns) {
        if (head_authed(a))
            continue;
        struct net_slot *s = a->phead;
        veil__net_admit_remove(a, s);
        a->expired++;
        s->ops->evict(s);
        done++;
    }
    return done;
}

veil_err veil__net_admit_add(struct net_admit *a, struct net_slot *slot,
                             const struct net_peer_key *key, uint64_t now_ns)
{
    if (a->buckets == NULL) {
        a->buckets = veil_calloc(PEER_BUCKETS, sizeof(*a->buckets));
        if (a->buckets == NULL)
            return VEIL_E_NOMEM;
    }
    struct net_peer *p = peer_find(a, key);
    if (p != NULL && p->n >= a->max_per_peer) {
        struct net_slot *victim = oldest_idle(a, p);
        if (victim == NULL) {
            a->refused++;
            return VEIL_E_LIMIT;
        }
        evict(a, victim);
    }
    if (a->nconns >= a->max_conns) {
        struct net_slot *victim = oldest_idle(a, NULL);
        if (victim == NULL) {
            a->refused++;
            return VEIL_E_LIMIT;
        }
        evict(a, victim);
    }
    /*
     * Peers that open connections and never finish a handshake would otherwise hold every
     * pre-authentication place until their deadline: the oldest makes room for the newest,
     * whose handshake takes milliseconds.
     */
    while (a->npreauth >= a->max_preauth && a->phead != NULL) {
        if (!head_authed(a))
            evict(a, a->phead);
    }
    /* An eviction may have freed the peer's entry. */
    p = peer_find(a, key);
    if (p == NULL) {
        p = veil_calloc(1, sizeof(*p));
        if (p == NULL)
            return VEIL_E_NOMEM;
        p->key = *key;
        size_t h = peer_hash(key);
        p->next = a->buckets[h];
        a->buckets[h] = p;
    }
    p->n++;
    a->nconns++;
    slot->peer = p;
    slot->active_ns = now_ns;
    slot->accepted_ns = now_ns;
    list_append(a, slot);
    slot->preauth = true;
    slot->pnext = NULL;
    slot->pprev = a->ptail;
    if (a->ptail != NULL)
        a->ptail->pnext = slot;
    else
        a->phead = slot;
    a->ptail = slot;
    a->npreauth++;
    return VEIL_OK;
}

/* ---- In-flight byte budget ---- */

bool veil__net_budget_take(struct net_budget *b, size_t n)
{
    if (n > b->max - b->used) {
        b->refused++;
        return false;
    }
    b->used += n;
    return true;
}

void veil__net_budget_give(struct net_budget *b, size_t n)
{
    VEIL_ASSERT(n <= b->used);
    b->used -= n;
}

size_t veil__net_budget_room(const struct net_budget *b)
{
    return b->max - b->used;
}

/* ---- Accept-error guard ---- */

static void guard_log(struct net_guard *g, int err, bool flush)
{
    uint64_t more = 0;
    uint64_t interval = (uint64_t)VEIL_NET_LOG_INTERVAL_S * NS_PER_S;
    if (flush) {
        if (g->log.suppressed == 0)
            return;
        more = g->log.suppressed;
        g->log.suppressed = 0;
        g->log.last_ns = veil_time_mono_ns();
        VEIL_LOG_WARN("%s: %llu more accept errors in the last %u s (%llu pending connections "
                      "dropped in all)",
                      g->what, (unsigned long long)more, VEIL_NET_LOG_INTERVAL_S,
                      (unsigned long long)g->dropped);
        return;
    }
    if (!veil__net_ratelog_tick(&g->log, veil_time_mono_ns(), interval, &more))
        return;
    VEIL_LOG_WARN("%s: accept failed: %s (%llu more errors since the last report, %llu pending "
                  "connections dropped in all)",
                  g->what, strerror(err), (unsigned long long)more, (unsigned long long)g->dropped);
}

static void guard_apply(struct net_guard *g)
{
    if (g->lis == NULL)
        return;
    if (g->paused || g->held)
        (void)evconnlistener_disable(g->lis);
    else
        (void)evconnlistener_enable(g->lis);
}

void veil__net_guard_hold(struct net_guard *g, bool hold)
{
    if (g->held == hold)
        return;
    g->held = hold;
    guard_apply(g);
}

static void guard_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct net_guard *g = arg;
    g->paused = false;
    guard_apply(g);
}

static void guard_on_error(struct net_guard *g, int err)
{
    struct veil_net_loop *loop = g->loop;
    g->errors++;
    bool freed = false;
    if (err == EMFILE || err == ENFILE) {
        /* Out of descriptors (the caps were set past the open-file limit, or something else
         * holds descriptors): idle connections make room, least recently active first. */
        freed = veil__net_admit_evict_idle(&loop->admit, VEIL_NET_EMFILE_EVICT) > 0;
        if (!freed && loop->spare_fd >= 0) {
            /*
             * Nothing idle to close: the pending connection would keep the listening socket
             * readable, and the loop spinning on it. Give back the reserve descriptor, take
             * the connection and close it (the peer sees its connection closed instead of
             * waiting in the backlog), then take the reserve again.
             */
            close(loop->spare_fd);
            loop->spare_fd = -1;
            int fd = accept(evconnlistener_get_fd(g->lis), NULL, NULL);
            if (fd >= 0) {
                close(fd);
                g->dropped++;
                freed = true;
            }
            loop->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
    }
    guard_log(g, err, false);
    if (freed)
        return; /* the next accept can succeed: no rest needed */
    /* Nothing could be done now: rest instead of spinning on a listener that stays readable. */
    struct timeval tv = {0, (suseconds_t)VEIL_NET_ACCEPT_PAUSE_MS * 1000};
    g->paused = true;
    guard_apply(g);
    (void)evtimer_add(g->resume, &tv);
}

struct loop_find {
    struct veil_net_loop *loop;
};

static int loop_find_cb(const struct event_base *base, const struct event *ev, void *arg)
{
    (void)base;
    struct loop_find *f = arg;
    if (event_get_callback(ev) != veil__net_sweep)
        return 0;
    f->loop = event_get_callback_arg(ev);
    return 1;
}

/*
 * The listeners' error callback. Its argument is the listener's user data, which for the
 * REST port is evhttp's (libevent 2.1 has no getter for it), so the loop is found through
 * its always-pending sweep event instead (public API; a walk over the events of the base
 * only on an accept error, which the reserve descriptor and the rest make rare), then the
 * guard of this listener among the loop's.
 */
static void guard_errorcb(struct evconnlistener *lis, void *ud)
{
    (void)ud;
    int err = errno;
    struct loop_find f = {NULL};
    (void)event_base_foreach_event(evconnlistener_get_base(lis), loop_find_cb, &f);
    struct net_guard *g = f.loop != NULL ? f.loop->guards : NULL;
    while (g != NULL && g->lis != lis)
        g = g->next;
    if (g != NULL)
        guard_on_error(g, err);
    else
        (void)evconnlistener_disable(lis); /* cannot happen: never spin regardless */
}

veil_err veil__net_guard_init(struct net_guard *g, struct veil_net_loop *loop,
                              struct evconnlistener *lis, const char *what)
{
    memset(g, 0, sizeof(*g));
    g->loop = loop;
    g->lis = lis;
    g->what = what;
    g->resume = evtimer_new(loop->base, guard_resume, g);
    if (g->resume == NULL) {
        g->lis = NULL;
        return VEIL_E_NOMEM;
    }
    g->next = loop->guards;
    loop->guards = g;
    evconnlistener_set_error_cb(lis, guard_errorcb);
    return VEIL_OK;
}

void veil__net_guard_release(struct net_guard *g)
{
    if (g->loop == NULL)
        return;
    struct net_guard **pp = &g->loop->guards;
    while (*pp != NULL && *pp != g)
        pp = &(*pp)->next;
    if (*pp == g)
        *pp = g->next;
    guard_log(g, 0, true);
    if (g->resume != NULL)
        event_free(g->resume);
    g->resume = NULL;
    g->lis = NULL;
    g->loop = NULL;
}

/* ---- The periodic sweep ---- */

void veil__net_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct veil_net_loop *loop = arg;
    struct net_admit *a = &loop->admit;
    uint64_t now = veil_time_mono_ns();
    (void)veil__net_admit_expire(a, now);
    /* Connections closed for the limits are many under attack: one line per interval. */
    if (now - loop->closed_report_ns >= (uint64_t)VEIL_NET_LOG_INTERVAL_S * NS_PER_S) {
        uint64_t ev = a->evicted - loop->evicted_reported;
        uint64_t ex = a->expired - loop->expired_reported;
        if (ev > 0 || ex > 0)
            VEIL_LOG_WARN("in the last %u s: %llu connections closed to make room at the "
                          "connection caps, %llu at the handshake deadline (%u open, %u of them "
                          "before their handshake)",
                          VEIL_NET_LOG_INTERVAL_S, (unsigned long long)ev, (unsigned long long)ex,
                          a->nconns, a->npreauth);
        loop->evicted_reported = a->evicted;
        loop->expired_reported = a->expired;
        loop->closed_report_ns = now;
    }
    for (struct net_guard *g = loop->guards; g != NULL; g = g->next) {
        if (g->log.last_ns != 0 &&
            veil_time_mono_ns() - g->log.last_ns >= (uint64_t)VEIL_NET_LOG_INTERVAL_S * NS_PER_S)
            guard_log(g, 0, true);
    }
    struct net_ratelog *r = &loop->refuse_log;
    if (r->suppressed > 0 &&
        veil_time_mono_ns() - r->last_ns >= (uint64_t)VEIL_NET_LOG_INTERVAL_S * NS_PER_S) {
        VEIL_LOG_WARN("%llu more connections or requests refused in the last %u s (%u "
                      "connections open, %zu of %zu request bytes in flight)",
                      (unsigned long long)r->suppressed, VEIL_NET_LOG_INTERVAL_S,
                      loop->admit.nconns, loop->budget.used, loop->budget.max);
        r->suppressed = 0;
        r->last_ns = veil_time_mono_ns();
    }
}

/* ---- Defaults ---- */

void veil_net_limits_default(size_t max_message, struct veil_net_limits *lim)
{
    struct rlimit rl;
    uint64_t nofile = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        nofile = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    uint64_t conns = nofile > VEIL_NET_FD_RESERVE + 16 ? nofile - VEIL_NET_FD_RESERVE : 16;
    if (conns > VEIL_NET_MAX_CONNS_DEFAULT)
        conns = VEIL_NET_MAX_CONNS_DEFAULT;
    lim->max_conns = (unsigned)conns;
    lim->max_conns_per_peer = lim->max_conns / VEIL_NET_PEER_SHARE;
    lim->max_preauth = lim->max_conns / VEIL_NET_PREAUTH_SHARE;
    lim->handshake_timeout_s = VEIL_NET_HANDSHAKE_TIMEOUT_S;

    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    uint64_t phys = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
    uint64_t budget = phys / VEIL_NET_INFLIGHT_RAM_SHARE;
    if (budget < VEIL_NET_INFLIGHT_MIN_DEFAULT)
        budget = VEIL_NET_INFLIGHT_MIN_DEFAULT;
    if (budget > VEIL_NET_INFLIGHT_MAX_DEFAULT)
        budget = VEIL_NET_INFLIGHT_MAX_DEFAULT;
    /* A gzip request holds its compressed body and its inflated message at once. */
    uint64_t msg = max_message != 0 ? max_message : VEIL_NET_MAX_MESSAGE_DEFAULT;
    uint64_t two = 2 * msg + (1u << 20);
    if (budget < two)
        budget = two;
    lim->max_inflight_bytes = budget > SIZE_MAX ? SIZE_MAX : (size_t)budget;
}

veil_err veil_net_raise_nofile(uint64_t *soft)
{
    struct rlimit rl;
    if (soft != NULL)
        *soft = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return VEIL_E_IO;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) != 0)
            return VEIL_E_IO;
        rl = up;
    }
    if (soft != NULL)
        *soft = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    return VEIL_OK;
}

void veil_net_loop_set_limits(struct veil_net_loop *loop, const struct veil_net_limits *lim,
                              size_t max_message, struct veil_net_limits *used)
{
    struct veil_net_limits d, u;
    veil_net_limits_default(max_message, &d);
    u.max_conns = lim->max_conns != 0 ? lim->max_conns : d.max_conns;
    u.max_conns_per_peer =
        lim->max_conns_per_peer != 0 ? lim->max_conns_per_peer : u.max_conns / VEIL_NET_PEER_SHARE;
    if (u.max_conns_per_peer == 0)
        u.max_conns_per_peer = 1;
    if (u.max_conns_per_peer > u.max_conns)
        u.max_conns_per_peer = u.max_conns;
    u.max_preauth = lim->max_preauth != 0 ? lim->max_preauth : u.max_conns / VEIL_NET_PREAUTH_SHARE;
    if (u.max_preauth == 0)
        u.max_preauth = 1;
    u.handshake_timeout_s =
        lim->handshake_timeout_s != 0 ? lim->handshake_timeout_s : d.handshake_timeout_s;
    u.max_inflight_bytes =
        lim->max_inflight_bytes != 0 ? lim->max_inflight_bytes : d.max_inflight_bytes;
    loop->admit.max_conns = u.max_conns;
    loop->admit.max_per_peer = u.max_conns_per_peer;
    loop->admit.max_preauth = u.max_preauth;
    loop->admit.handshake_ns = (uint64_t)u.handshake_timeout_s * NS_PER_S;
    loop->budget.max = u.max_inflight_bytes;
    if (loop->budget.max < loop->budget.used)
        loop->budget.max = loop->budget.used;
    if (used != NULL)
        *used = u;
}
