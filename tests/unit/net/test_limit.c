/* Tests of the admission helpers of src/net/limit.c: rate-limited logging, peer keys, the
 * per-peer and global caps with least-recently-active idle eviction, the pre-authentication
 * cap and deadline, the in-flight byte budget, and the machine-sized defaults. */
#include "harness.h"
#include "net_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

struct tconn {
    struct net_slot slot; /* first */
    bool busy;
    bool authed; /* what ops->authed reports */
    bool evicted;
};

static bool t_busy(const struct net_slot *s)
{
    return ((const struct tconn *)(const void *)s)->busy;
}

static bool t_authed(const struct net_slot *s)
{
    return ((const struct tconn *)(const void *)s)->authed;
}

static void t_evict(struct net_slot *s)
{
    ((struct tconn *)(void *)s)->evicted = true;
}

static const struct net_slot_ops tops = {t_busy, t_authed, t_evict};

static void key4(const char *ip, struct net_peer_key *k)
{
    struct sockaddr_in in;
    memset(&in, 0, sizeof(in));
    in.sin_family = AF_INET;
    if (inet_pton(AF_INET, ip, &in.sin_addr) != 1)
        memset(&in.sin_addr, 0, sizeof(in.sin_addr));
    veil__net_peer_key((struct sockaddr *)&in, sizeof(in), k);
}

static void reset(struct tconn *c, size_t n)
{
    memset(c, 0, n * sizeof(*c));
    for (size_t i = 0; i < n; i++)
        c[i].slot.ops = &tops;
}

TEST(ratelog_one_line_per_interval_with_count)
{
    struct net_ratelog r = {0, 0};
    uint64_t more = 99;
    ASSERT_TRUE(veil__net_ratelog_tick(&r, 1000, 100, &more));
    ASSERT_EQ_U64(more, 0);
    for (int i = 0; i < 5; i++)
        ASSERT_FALSE(veil__net_ratelog_tick(&r, 1050, 100, &more));
    ASSERT_TRUE(veil__net_ratelog_tick(&r, 1100, 100, &more));
    ASSERT_EQ_U64(more, 5);
    ASSERT_FALSE(veil__net_ratelog_tick(&r, 1150, 100, &more));
}

TEST(peer_key_folds_mapped_ipv4)
{
    struct net_peer_key a, b, c;
    key4("10.1.2.3", &a);
    struct sockaddr_in6 in6;
    memset(&in6, 0, sizeof(in6));
    in6.sin6_family = AF_INET6;
    ASSERT_TRUE(inet_pton(AF_INET6, "::ffff:10.1.2.3", &in6.sin6_addr) == 1);
    veil__net_peer_key((struct sockaddr *)&in6, sizeof(in6), &b);
    ASSERT_TRUE(memcmp(&a, &b, sizeof(a)) == 0);
    ASSERT_EQ_U64(a.family, 4);
    ASSERT_TRUE(inet_pton(AF_INET6, "2001:db8::1", &in6.sin6_addr) == 1);
    veil__net_peer_key((struct sockaddr *)&in6, sizeof(in6), &c);
    ASSERT_EQ_U64(c.family, 6);
    /* A truncated address is no address. */
    veil__net_peer_key((struct sockaddr *)&in6, 8, &c);
    ASSERT_EQ_U64(c.family, 0);
}

TEST(admission_evicts_oldest_idle_of_the_peer_then_refuses_when_busy)
{
    struct net_admit a;
    struct tconn c[4];
    struct net_peer_key p, q;
    reset(c, 4);
    key4("127.0.0.1", &p);
    key4("127.0.0.2", &q);
    veil__net_admit_init(&a, 3, 2, 100, 1000);
    ASSERT_OK(veil__net_admit_add(&a, &c[0].slot, &p, 1));
    ASSERT_OK(veil__net_admit_add(&a, &c[1].slot, &p, 2));
    /* Peer cap: the least recently active idle connection of that peer goes. */
    veil__net_admit_touch(&a, &c[0].slot, 3);
    ASSERT_OK(veil__net_admit_add(&a, &c[2].slot, &p, 4));
    ASSERT_TRUE(c[1].evicted);
    ASSERT_FALSE(c[0].evicted);
    ASSERT_EQ_U64(a.nconns, 2);
    /* All of the peer's connections busy: refused. */
    c[0].busy = c[2].busy = true;
    ASSERT_ERR(veil__net_admit_add(&a, &c[1].slot, &p, 5), VEIL_E_LIMIT);
    ASSERT_EQ_U64(a.refused, 1);
    /* Another peer fits under the global cap; a fourth connection finds nothing idle. */
    ASSERT_OK(veil__net_admit_add(&a, &c[3].slot, &q, 6));
    c[3].busy = true;
    reset(&c[1], 1);
    ASSERT_ERR(veil__net_admit_add(&a, &c[1].slot, &q, 7), VEIL_E_LIMIT);
    /* Global cap with an idle connection: it makes room. */
    c[3].busy = false;
    ASSERT_OK(veil__net_admit_add(&a, &c[1].slot, &q, 8));
    ASSERT_TRUE(c[3].evicted);
    ASSERT_EQ_U64(a.evicted, 2);
    ASSERT_EQ_U64(veil__net_admit_evict_idle(&a, 5), 1); /* c[1]; c[0] and c[2] are busy */
    veil__net_admit_remove(&a, &c[0].slot);
    veil__net_admit_remove(&a, &c[0].slot); /* a no-op the second time */
    veil__net_admit_remove(&a, &c[2].slot);
    ASSERT_EQ_U64(a.nconns, 0);
    ASSERT_EQ_U64(a.npreauth, 0);
    ASSERT_TRUE(a.head == NULL && a.phead == NULL);
    veil__net_admit_release(&a);
}

TEST(preauth_cap_closes_the_oldest_handshake)
{
    struct net_admit a;
    struct tconn c[6];
    struct net_peer_key p;
    reset(c, 6);
    key4("192.0.2.7", &p);
    veil__net_admit_init(&a, 100, 100, 3, 1000);
    for (int i = 0; i < 3; i++)
        ASSERT_OK(veil__net_admit_add(&a, &c[i].slot, &p, (uint64_t)i));
    ASSERT_EQ_U64(a.npreauth, 3);
    /* The fourth handshake closes the oldest one. */
    ASSERT_OK(veil__net_admit_add(&a, &c[3].slot, &p, 10));
    ASSERT_TRUE(c[0].evicted);
    ASSERT_EQ_U64(a.npreauth, 3);
    /* A connection told authenticated leaves the list and is not counted. */
    veil__net_admit_authed(&a, &c[1].slot);
    veil__net_admit_authed(&a, &c[1].slot); /* no-op */
    ASSERT_EQ_U64(a.npreauth, 2);
    ASSERT_OK(veil__net_admit_add(&a, &c[4].slot, &p, 11));
    ASSERT_FALSE(c[2].evicted);
    /* Full again, but the oldest (c[2]) finished its handshake meanwhile (ops->authed): it
     * leaves the list, which makes room without closing anyone. */
    c[2].authed = true;
    ASSERT_OK(veil__net_admit_add(&a, &c[5].slot, &p, 12));
    ASSERT_FALSE(c[2].evicted || c[3].evicted);
    ASSERT_FALSE(c[2].slot.preauth);
    ASSERT_EQ_U64(a.npreauth, 3); /* c[3], c[4], c[5] */
    ASSERT_EQ_U64(a.nconns, 5);
    /* The pre-authentication cap never refuses: it closes the oldest handshake. */
    reset(&c[0], 1);
    ASSERT_OK(veil__net_admit_add(&a, &c[0].slot, &p, 13));
    ASSERT_TRUE(c[3].evicted);
    ASSERT_EQ_U64(a.evicted, 2);
    for (int i = 0; i < 6; i++)
        veil__net_admit_remove(&a, &c[i].slot);
    ASSERT_EQ_U64(a.nconns, 0);
    veil__net_admit_release(&a);
}

TEST(handshake_deadline_closes_only_the_late)
{
    struct net_admit a;
    struct tconn c[4];
    struct net_peer_key p;
    reset(c, 4);
    key4("198.51.100.1", &p);
    veil__net_admit_init(&a, 100, 100, 100, 1000);
    ASSERT_OK(veil__net_admit_add(&a, &c[0].slot, &p, 0));
    ASSERT_OK(veil__net_admit_add(&a, &c[1].slot, &p, 100));
    ASSERT_OK(veil__net_admit_add(&a, &c[2].slot, &p, 200));
    ASSERT_OK(veil__net_admit_add(&a, &c[3].slot, &p, 1500));
    veil__net_admit_authed(&a, &c[1].slot); /* finished in time */
    c[2].authed = true;                     /* finished, not told yet */
    ASSERT_EQ_U64(veil__net_admit_expire(&a, 999), 0);
    ASSERT_EQ_U64(veil__net_admit_expire(&a, 1300), 1);
    ASSERT_TRUE(c[0].evicted);
    ASSERT_FALSE(c[1].evicted || c[2].evicted || c[3].evicted);
    ASSERT_EQ_U64(a.expired, 1);
    ASSERT_EQ_U64(a.npreauth, 1); /* c[3] */
    /* A busy connection past its deadline is still closed: it never authenticated. */
    c[3].busy = true;
    ASSERT_EQ_U64(veil__net_admit_expire(&a, 2500), 1);
    ASSERT_TRUE(c[3].evicted);
    ASSERT_EQ_U64(a.nconns, 2);
    veil__net_admit_remove(&a, &c[1].slot);
    veil__net_admit_remove(&a, &c[2].slot);
    veil__net_admit_release(&a);
}

TEST(budget_takes_and_gives_back)
{
    struct net_budget b = {1000, 0, 0};
    ASSERT_TRUE(veil__net_budget_take(&b, 600));
    ASSERT_FALSE(veil__net_budget_take(&b, 401));
    ASSERT_EQ_U64(b.used, 600);
    ASSERT_EQ_U64(b.refused, 1);
    ASSERT_TRUE(veil__net_budget_take(&b, 400));
    ASSERT_EQ_U64(veil__net_budget_room(&b), 0);
    ASSERT_TRUE(veil__net_budget_take(&b, 0));
    ASSERT_FALSE(veil__net_budget_take(&b, SIZE_MAX));
    veil__net_budget_give(&b, 1000);
    ASSERT_EQ_U64(veil__net_budget_room(&b), 1000);
}

TEST(defaults_follow_the_machine)
{
    struct veil_net_limits lim;
    veil_net_limits_default(0, &lim);
    ASSERT_TRUE(lim.max_conns >= 16 && lim.max_conns <= VEIL_NET_MAX_CONNS_DEFAULT);
    ASSERT_EQ_U64(lim.max_conns_per_peer, lim.max_conns / VEIL_NET_PEER_SHARE);
    ASSERT_EQ_U64(lim.max_preauth, lim.max_conns / VEIL_NET_PREAUTH_SHARE);
    ASSERT_EQ_U64(lim.handshake_timeout_s, VEIL_NET_HANDSHAKE_TIMEOUT_S);
    ASSERT_TRUE(lim.max_inflight_bytes >= VEIL_NET_INFLIGHT_MIN_DEFAULT);
    ASSERT_TRUE(lim.max_inflight_bytes <= VEIL_NET_INFLIGHT_MAX_DEFAULT);
    /* Never below two of the largest messages. */
    veil_net_limits_default((size_t)3 << 30, &lim);
    ASSERT_TRUE(lim.max_inflight_bytes >= ((size_t)6 << 30));
}

TEST(loop_limits_fill_zero_fields)
{
    struct veil_net_loop *loop = NULL;
    ASSERT_OK(veil_net_loop_new(&loop, NULL));
    struct veil_net_limits lim = {200, 0, 0, 3, 0}, used;
    veil_net_loop_set_limits(loop, &lim, 0, &used);
    ASSERT_EQ_U64(used.max_conns, 200);
    ASSERT_EQ_U64(used.max_conns_per_peer, 50);
    ASSERT_EQ_U64(used.max_preauth, 50);
    ASSERT_EQ_U64(used.handshake_timeout_s, 3);
    ASSERT_TRUE(used.max_inflight_bytes >= VEIL_NET_INFLIGHT_MIN_DEFAULT);
    ASSERT_EQ_U64(loop->admit.max_conns, 200);
    ASSERT_EQ_U64(loop->admit.handshake_ns, 3000000000ULL);
    struct veil_net_limits tight = {10, 20, 1, 0, 12345}, u2;
    veil_net_loop_set_limits(loop, &tight, 0, &u2);
    ASSERT_EQ_U64(u2.max_conns_per_peer, 10); /* never above the connection cap */
    ASSERT_EQ_U64(u2.max_preauth, 1);
    ASSERT_EQ_U64(u2.handshake_timeout_s, VEIL_NET_HANDSHAKE_TIMEOUT_S);
    ASSERT_EQ_U64(loop->budget.max, 12345);
    veil_net_loop_free(loop);
}

RUN_TESTS()
