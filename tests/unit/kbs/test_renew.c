/*
 * Tests of the renewal plan (src/kbs/renew.c): two thirds of the usable lifetime, counted from
 * the later of notBefore and the receipt, and the retry backoff between failed renewals.
 */
#include "harness.h"
#include "veil/kbs.h"

/* A broker-issued certificate: notBefore five minutes back, the lifetime ahead. */
TEST(renewal_is_due_at_two_thirds_of_the_usable_lifetime)
{
    struct veil_kbs_renewal r;
    const int64_t now_s = 1760000000, now_ms = now_s * 1000 + 250;
    /* A 6 s certificate received a quarter second after its issue: due 4 s after issue. */
    veil_kbs_renewal_plan(now_s - 300, now_s + 6, now_ms, &r);
    ASSERT_EQ_I64(r.start_ms, now_ms);
    ASSERT_EQ_I64(r.expiry_ms, (now_s + 6) * 1000);
    ASSERT_EQ_I64(r.renew_at_ms, now_ms + (5750 * 2) / 3);
    ASSERT_TRUE(r.renew_at_ms < r.expiry_ms);
    /* Counting from the backdated notBefore would have made it due 96 s in the past. */
    ASSERT_TRUE(r.renew_at_ms > now_ms);
    /* The 24-hour default: 16 hours after receipt. */
    veil_kbs_renewal_plan(now_s - 300, now_s + 86400, now_s * 1000, &r);
    ASSERT_EQ_I64(r.renew_at_ms, (now_s + 57600) * 1000);
    ASSERT_EQ_U64(r.backoff_cap_ms, 60000);
    /* A workload whose clock lags the broker's by more than the backdating: from notBefore. */
    veil_kbs_renewal_plan(now_s + 600, now_s + 900, now_s * 1000, &r);
    ASSERT_EQ_I64(r.start_ms, (now_s + 600) * 1000);
    ASSERT_EQ_I64(r.renew_at_ms, (now_s + 800) * 1000);
    /* A lifetime that does not divide by three rounds down, never past two thirds. */
    veil_kbs_renewal_plan(0, 1, 0, &r);
    ASSERT_EQ_I64(r.renew_at_ms, 666);
}

TEST(expired_or_backwards_certificates_are_due_at_once)
{
    struct veil_kbs_renewal r;
    veil_kbs_renewal_plan(1000, 2000, 2000 * 1000, &r);
    ASSERT_EQ_I64(r.renew_at_ms, 2000 * 1000);
    veil_kbs_renewal_plan(1000, 1500, 3000 * 1000, &r);
    ASSERT_EQ_I64(r.renew_at_ms, 3000 * 1000);
    ASSERT_EQ_U64(r.backoff_cap_ms, 1000);
    veil_kbs_renewal_plan(2000, 1000, 0, &r); /* notAfter before notBefore: at receipt */
    ASSERT_EQ_I64(r.renew_at_ms, 0);
    /* Dates a broker could send that do not fit in milliseconds saturate, never wrap. */
    veil_kbs_renewal_plan(INT64_MIN, INT64_MAX, 0, &r);
    ASSERT_EQ_I64(r.start_ms, 0);
    ASSERT_EQ_I64(r.expiry_ms, INT64_MAX);
    ASSERT_TRUE(r.renew_at_ms > 0 && r.renew_at_ms < INT64_MAX);
    ASSERT_EQ_U64(r.backoff_cap_ms, 60000);
    veil_kbs_renewal_plan(INT64_MAX, INT64_MIN, 5, &r);
    ASSERT_EQ_I64(r.renew_at_ms, 5);
}

TEST(failed_renewals_back_off_to_a_tenth_of_the_lifetime)
{
    struct veil_kbs_renewal r;
    /* 6 s: 250, 500, then the 1 s floor of the cap. */
    veil_kbs_renewal_plan(-300, 6, 0, &r);
    ASSERT_EQ_U64(r.backoff_cap_ms, 1000);
    uint32_t b = veil_kbs_renewal_backoff(&r, 0);
    ASSERT_EQ_U64(b, 250);
    ASSERT_EQ_U64((b = veil_kbs_renewal_backoff(&r, b)), 500);
    ASSERT_EQ_U64((b = veil_kbs_renewal_backoff(&r, b)), 1000);
    ASSERT_EQ_U64((b = veil_kbs_renewal_backoff(&r, b)), 1000);
    /* 300 s: a tenth is 30 s. */
    veil_kbs_renewal_plan(0, 300, 0, &r);
    ASSERT_EQ_U64(r.backoff_cap_ms, 30000);
    b = 0;
    for (int i = 0; i < 20; i++)
        b = veil_kbs_renewal_backoff(&r, b);
    ASSERT_EQ_U64(b, 30000);
    /* A day: capped at a minute, and doubling never overflows. */
    veil_kbs_renewal_plan(0, 86400, 0, &r);
    ASSERT_EQ_U64(veil_kbs_renewal_backoff(&r, UINT32_MAX), 60000);
}

RUN_TESTS()
