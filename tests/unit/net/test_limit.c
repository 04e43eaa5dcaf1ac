/* Tests of the admission helpers of src/net/limit.c: rate-limited logging, peer keys, the
 * per-peer and global caps with least-recently-active idle eviction, and the defaults. */
#include "harness.h"
#include "net_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

struct tconn {
    struct net_slot slot; /* first */
    bool busy;
    bool evicted;
};

static bool t_busy(const struct net_slot *s)
{
    return ((const struct tconn *)(const void *)s)->busy;
}

static void t_evict(struct net_slot *s)
{
    ((struct tconn *)(void *)s)->evicted = true;
}

static const struct net_slot_ops tops = {t_busy, t_evict};

static void key4(const char *ip, struct net_peer_key *k)
{
    struct sockaddr_in in;
    memset(&in, 0, sizeof(in));
    in.sin_family = AF_INET;
    ASSERT_TRUE(inet_pton(AF_INET, ip, &in.sin_addr) == 1);
    veil__net_peer_key((struct sockaddr *)&in, sizeof(in), k);
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
}

TEST(peer_key_folds_mapped_ipv4)
{
    struct net_peer_key a, b;
    key4("10.1.2.3", &a);
    struct sockaddr_in6 in6;
    memset(&in6, 0, sizeof(in6));
    in6.sin6_family = AF_INET6;
    ASSERT_TRUE(inet_pton(AF_INET6, "::ffff:10.1.2.3", &in6.sin6_addr) == 1);
    veil__net_peer_key((struct sockaddr *)&in6, sizeof(in6), &b);
    ASSERT_TRUE(memcmp(&a, &b, sizeof(a)) == 0);
    ASSERT_EQ_U64(a.family, 4);
}

TEST(admission_evicts_oldest_idle_of_the_peer_then_refuses_when_busy)
{
    struct net_admit a;
    struct tconn c[4];
    struct net_peer_key p, q;
    memset(c, 0, sizeof(c));
    for (int i = 0; i < 4; i++)
        c[i].slot.ops = &tops;
    key4("127.0.0.1", &p);
    key4("127.0.0.2", &q);
    veil__net_admit_init(&a, 3, 2);
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
    /* Another peer fits under the global cap; a fourth connection finds nothing idle. */
    ASSERT_OK(veil__net_admit_add(&a, &c[3].slot, &q, 6));
    c[3].busy = true;
    memset(&c[1], 0, sizeof(c[1]));
    c[1].slot.ops = &tops;
    ASSERT_ERR(veil__net_admit_add(&a, &c[1].slot, &q, 7), VEIL_E_LIMIT);
    /* Global cap with an idle connection: it makes room. */
    c[3].busy = false;
    ASSERT_OK(veil__net_admit_add(&a, &c[1].slot, &q, 8));
    ASSERT_TRUE(c[3].evicted);
    ASSERT_EQ_U64(veil__net_admit_evict_idle(&a, 5), 1); /* c[1]; c[0] and c[2] are busy */
    veil__net_admit_remove(&a, &c[0].slot);
    veil__net_admit_remove(&a, &c[0].slot); /* a no-op the second time */
    veil__net_admit_remove(&a, &c[2].slot);
    ASSERT_EQ_U64(a.nconns, 0);
    veil__net_admit_release(&a);
}

TEST(defaults_follow_the_machine)
{
    struct veil_net_limits lim;
    veil_net_limits_default(0, &lim);
    ASSERT_TRUE(lim.max_conns >= 16 && lim.max_conns <= VEIL_NET_MAX_CONNS_DEFAULT);
    ASSERT_EQ_U64(lim.max_conns_per_peer, lim.max_conns / VEIL_NET_PEER_SHARE);
    ASSERT_TRUE(lim.max_inflight_bytes >= VEIL_NET_INFLIGHT_MIN_DEFAULT);
    ASSERT_TRUE(lim.max_inflight_bytes <= VEIL_NET_INFLIGHT_MAX_DEFAULT);
    veil_net_limits_default((size_t)3 << 30, &lim);
    ASSERT_TRUE(lim.max_inflight_bytes >= ((size_t)6 << 30));
}

RUN_TESTS()
