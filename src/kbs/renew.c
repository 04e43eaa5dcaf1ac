/*
 * When a workload renews its serving certificate: two thirds of the way through the part of
 * the certificate's lifetime that it can use, and, while the broker does not answer, again
 * after a backoff that doubles up to a tenth of that lifetime (1 s to 60 s). The broker dates
 * notBefore five minutes back for clients whose clocks lag, so the usable lifetime starts at
 * the later of notBefore and the moment the workload received the certificate: counting from
 * notBefore would put the renewal of a short-lived certificate in the past. Pure functions of
 * their arguments; times are Unix seconds (certificate fields) and milliseconds (clocks).
 */
#include "kbs_int.h"

#define RENEW_BACKOFF_FIRST_MS 250u
#define RENEW_BACKOFF_MIN_CAP_MS 1000u
#define RENEW_BACKOFF_MAX_CAP_MS 60000u

/* Seconds to milliseconds, saturating: certificate dates come from the broker. */
static int64_t s_to_ms(int64_t s)
{
    int64_t ms = 0;
    if (__builtin_mul_overflow(s, 1000, &ms))
        return s < 0 ? INT64_MIN : INT64_MAX;
    return ms;
}

void veil_kbs_renewal_plan(int64_t not_before_s, int64_t not_after_s, int64_t received_ms,
                           struct veil_kbs_renewal *out)
{
    int64_t nb = s_to_ms(not_before_s), na = s_to_ms(not_after_s);
    out->start_ms = nb > received_ms ? nb : received_ms;
    out->expiry_ms = na;
    if (na <= out->start_ms) {
        /* Expired on arrival (or dated backwards): renew at once, retry at the shortest cap. */
        out->renew_at_ms = received_ms;
        out->backoff_cap_ms = RENEW_BACKOFF_MIN_CAP_MS;
        return;
    }
    /* Both ends are in range and start < end, so the difference cannot overflow as uint64. */
    uint64_t life = (uint64_t)na - (uint64_t)out->start_ms;
    out->renew_at_ms = out->start_ms + (int64_t)(life / 3 * 2 + life % 3 * 2 / 3);
    uint64_t cap = life / 10;
    out->backoff_cap_ms = cap < RENEW_BACKOFF_MIN_CAP_MS   ? RENEW_BACKOFF_MIN_CAP_MS
                          : cap > RENEW_BACKOFF_MAX_CAP_MS ? RENEW_BACKOFF_MAX_CAP_MS
                                                           : (uint32_t)cap;
}

uint32_t veil_kbs_renewal_backoff(const struct veil_kbs_renewal *plan, uint32_t prev_ms)
{
    if (prev_ms == 0)
        return RENEW_BACKOFF_FIRST_MS < plan->backoff_cap_ms ? RENEW_BACKOFF_FIRST_MS
                                                             : plan->backoff_cap_ms;
    uint64_t next = (uint64_t)prev_ms * 2;
    return next > plan->backoff_cap_ms ? plan->backoff_cap_ms : (uint32_t)next;
}
