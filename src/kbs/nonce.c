/*
 * Challenge nonces (docs/kbs/protocol.md, "Challenge"): the broker draws 32 random bytes per
 * challenge and holds them in a bounded table until one provisioning request consumes them or
 * they expire. A nonce is removed from the table under the lock in the same step that finds
 * it, so it can be used once only, however many requests race with it. When the table is full
 * and nothing in it has expired, a new challenge is refused rather than evicting an older one:
 * a flood of anonymous challenges must not invalidate a workload's nonce while its TEE is still
 * producing evidence for it. Also the client's parser of the challenge answer.
 */
#include "kbs_int.h"

#include <string.h>

veil_err veil__kbs_nonces_init(struct veil__kbs_nonces *t, size_t cap, uint64_t ttl_ms)
{
    memset(t, 0, sizeof(*t));
    if (cap == 0 || (t->slots = veil_allocarray(cap, sizeof(*t->slots))) == NULL)
        return VEIL_E_NOMEM;
    pthread_mutex_init(&t->lock, NULL);
    t->cap = cap;
    t->ttl_ns = ttl_ms * 1000000u;
    return VEIL_OK;
}

void veil__kbs_nonces_release(struct veil__kbs_nonces *t)
{
    if (t->slots == NULL)
        return;
    veil_memzero(t->slots, t->cap * sizeof(*t->slots));
    veil_free(t->slots);
    pthread_mutex_destroy(&t->lock);
    memset(t, 0, sizeof(*t));
}

/* Removes slot i by moving the last slot into it. Called with the lock held. */
static void drop(struct veil__kbs_nonces *t, size_t i)
{
    t->slots[i] = t->slots[t->n - 1];
    veil_memzero(&t->slots[t->n - 1], sizeof(t->slots[0]));
    t->n--;
}

veil_err veil__kbs_nonce_issue(struct veil__kbs_nonces *t, uint64_t now_ns,
                               uint8_t out[VEIL__KBS_NONCE_LEN])
{
    veil_err rc = VEIL_OK;
    uint8_t v[VEIL__KBS_NONCE_LEN];
    memset(out, 0, VEIL__KBS_NONCE_LEN);
    if (veil_random_bytes(v, sizeof(v)) != VEIL_OK)
        return VEIL_E_CRYPTO;
    pthread_mutex_lock(&t->lock);
    if (t->n == t->cap)
        for (size_t i = t->n; i-- > 0;)
            if (t->slots[i].expires_ns <= now_ns)
                drop(t, i);
    if (t->n == t->cap) {
        rc = VEIL_E_LIMIT;
    } else {
        memcpy(t->slots[t->n].v, v, sizeof(v));
        t->slots[t->n].expires_ns = now_ns + t->ttl_ns;
        t->n++;
        memcpy(out, v, sizeof(v));
    }
    pthread_mutex_unlock(&t->lock);
    veil_memzero(v, sizeof(v));
    return rc;
}

enum veil__kbs_nonce_status veil__kbs_nonce_consume(struct veil__kbs_nonces *t, uint64_t now_ns,
                                                    struct veil_span nonce)
{
    enum veil__kbs_nonce_status st = VEIL__KBS_NONCE_UNKNOWN;
    if (nonce.len != VEIL__KBS_NONCE_LEN)
        return st;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->n; i++)
        if (veil_memeq_ct(t->slots[i].v, nonce.p, VEIL__KBS_NONCE_LEN)) {
            st = t->slots[i].expires_ns > now_ns ? VEIL__KBS_NONCE_FRESH : VEIL__KBS_NONCE_EXPIRED;
            drop(t, i);
            break;
        }
    pthread_mutex_unlock(&t->lock);
    return st;
}

veil_err veil__kbs_challenge_parse(struct veil_span body, uint8_t nonce[VEIL__KBS_NONCE_LEN])
{
    veil_err rc = VEIL_E_FORMAT;
    struct veil_arena a;
    struct veil_json *doc = NULL;
    memset(nonce, 0, VEIL__KBS_NONCE_LEN);
    if (body.len > VEIL_LIMIT_KBS_BODY)
        return VEIL_E_LIMIT;
    veil_arena_init(&a, 1024, 64 << 10);
    veil_err jrc = veil_json_parse(body, &a, &doc, NULL);
    if (jrc == VEIL_E_LIMIT || jrc == VEIL_E_NOMEM) {
        rc = jrc;
        goto out;
    }
    const char *hex = jrc == VEIL_OK ? veil_json_get_str(doc, "nonce") : NULL;
    if (hex == NULL || strlen(hex) != 2 * VEIL__KBS_NONCE_LEN ||
        veil_hex_decode(veil_span_from_str(hex), nonce, VEIL__KBS_NONCE_LEN) != VEIL_OK) {
        memset(nonce, 0, VEIL__KBS_NONCE_LEN);
        goto out;
    }
    rc = VEIL_OK;
out:
    veil_arena_release(&a);
    return rc;
}
