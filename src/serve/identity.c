/*
 * The server's TLS identity after start: renewing it without a restart, and readiness that
 * follows its certificate. A new identity is built into fresh TLS contexts on the caller's
 * thread, with the client-verification settings of the first one (kept here), and swapped in
 * on the loop thread, the only thread that makes connections from the contexts: handshakes
 * from then on present the new certificate on both ports, while established connections keep
 * the OpenSSL context they were made from (reference-counted) and are never touched. A server
 * whose certificate has passed its notAfter is not ready, whatever its models say.
 */
#include "serve_int.h"

#include <string.h>

/* The new contexts in flight from the renewing thread to the loop thread. */
struct identity_swap {
    struct veil_serve *s;
    struct veil_tls_ctx *grpc, *rest;
    int64_t not_after;
};

veil_err veil__serve_identity_init(struct veil_serve *s, const struct veil_tls_config *tc,
                                   struct veil_errbuf *eb)
{
    veil_err rc = VEIL_OK;
    veil_buf_init(&s->tls_client_ca, VEIL_LIMIT_CONFIG_FILE);
    s->tls_client_verify = tc->client_verify;
    if (tc->client_ca.pem.len > 0)
        rc = veil_buf_append(&s->tls_client_ca, tc->client_ca.pem.p, tc->client_ca.pem.len);
    else if (tc->client_ca.path != NULL)
        rc = veil_file_read_all(tc->client_ca.path, VEIL_LIMIT_CONFIG_FILE, &s->tls_client_ca, eb);
    if (rc != VEIL_OK)
        return veil_err_prefix(eb, rc, "client CA certificate");
    struct veil_tls_ctx *any = s->tls_grpc != NULL ? s->tls_grpc : s->tls_rest;
    atomic_store(&s->tls_not_after, any != NULL ? veil_tls_ctx_not_after(any) : 0);
    return VEIL_OK;
}

void veil__serve_identity_release(struct veil_serve *s)
{
    veil_buf_release(&s->tls_client_ca);
}

static void swap_on_loop(void *arg)
{
    struct identity_swap *w = arg;
    struct veil_serve *s = w->s;
    /* Same ALPN by construction: a refusal would be a programming error, and the old identity
     * then simply stays. */
    veil_err rg = s->tls_grpc != NULL ? veil_tls_ctx_swap(s->tls_grpc, w->grpc) : VEIL_OK;
    veil_err rr = s->tls_rest != NULL ? veil_tls_ctx_swap(s->tls_rest, w->rest) : VEIL_OK;
    VEIL_ASSERT(rg == VEIL_OK && rr == VEIL_OK);
    atomic_store(&s->tls_not_after, w->not_after);
    char until[21];
    veil_time_format_rfc3339(w->not_after, until);
    VEIL_LOG_INFO("TLS identity replaced for new connections (certificate valid until %s); "
                  "established connections keep theirs",
                  until);
    veil_free(w);
}

veil_err veil_serve_set_tls_identity(struct veil_serve *s, struct veil_span cert_pem,
                                     struct veil_span key_pem, struct veil_errbuf *eb)
{
    veil_err rc = VEIL_E_INTERNAL;
    struct identity_swap *w = NULL;
    if (s->tls_grpc == NULL && s->tls_rest == NULL)
        return veil_errf(eb, VEIL_E_STATE, "the server serves plaintext: no TLS identity to renew");
    struct veil_tls_config tc = {{cert_pem, NULL},
                                 {key_pem, NULL},
                                 {veil_buf_span(&s->tls_client_ca), NULL},
                                 s->tls_client_verify};
    if ((w = veil_calloc(1, sizeof(*w))) == NULL) {
        rc = veil_errf(eb, VEIL_E_NOMEM, "out of memory");
        goto out;
    }
    w->s = s;
    if ((s->tls_grpc != NULL && (rc = veil_tls_ctx_new(&tc, "h2", &w->grpc, eb)) != VEIL_OK) ||
        (s->tls_rest != NULL && (rc = veil_tls_ctx_new(&tc, "http/1.1", &w->rest, eb)) != VEIL_OK))
        goto out;
    w->not_after = veil_tls_ctx_not_after(w->grpc != NULL ? w->grpc : w->rest);
    if ((rc = veil_net_loop_post(s->loop, swap_on_loop, w)) != VEIL_OK) {
        rc = veil_errf(eb, rc, "cannot hand the new identity to the event loop");
        goto out;
    }
    w = NULL;
    rc = VEIL_OK;
out:
    if (w != NULL) {
        veil_tls_ctx_free(w->grpc);
        veil_tls_ctx_free(w->rest);
        veil_free(w);
    }
    return rc;
}

int64_t veil_serve_tls_not_after(struct veil_serve *s)
{
    return atomic_load(&s->tls_not_after);
}

bool veil__serve_identity_expired(struct veil_serve *s)
{
    int64_t na = atomic_load(&s->tls_not_after);
    return na != 0 && veil_time_now() >= na;
}

bool veil__serve_ready(struct veil_serve *s)
{
    return !veil__serve_identity_expired(s) && veil__serve_repo_ready(s->repo);
}
