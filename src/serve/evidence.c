/*
 * The attestation endpoint of the serving ports (docs/attest/server-check.md): a client sends
 * a nonce of its own and the SHA-256 of the TLS key it sees, and gets back an RA-TLS
 * certificate for that key whose evidence binds the nonce, which it verifies against its own
 * policy before sending anything else. REST: POST /veil/v1/attestation with a JSON body; gRPC:
 * /veil.v1.Attestation/GetEvidence with a two-field protobuf message. The evidence itself
 * comes from the embedding program's hook (veil_serve_options.evidence_fn), on a request
 * thread, since a quote can take milliseconds. The request parsers are pure.
 */
#include "serve_int.h"

#include "veil/json.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>

#define EVIDENCE_CERT_MAX (VEIL_LIMIT_CONFIG_FILE)

struct ejob {
    struct veil_serve *s;
    struct veil_http_req *req;   /* REST, or */
    struct veil_grpc_call *call; /* gRPC */
    struct sv_evidence_req er;
};

static bool fail(char *why, size_t cap, const char *msg)
{
    snprintf(why, cap, "%s", msg);
    return false;
}

static bool nonce_ok(size_t n)
{
    return n >= SV_EVIDENCE_NONCE_MIN && n <= SV_EVIDENCE_NONCE_MAX;
}

bool veil__serve_evidence_parse_json(struct veil_span body, struct sv_evidence_req *out, char *why,
                                     size_t cap)
{
    struct veil_arena a;
    struct veil_json *doc = NULL;
    bool ok = false;
    memset(out, 0, sizeof(*out));
    veil_arena_init(&a, 1024, 64u << 10);
    if (body.len > 4096 || veil_json_parse(body, &a, &doc, NULL) != VEIL_OK ||
        doc->type != VEIL_JSON_OBJECT) {
        ok = fail(why, cap, "the body must be a JSON object {\"nonce\": HEX, \"key_sha256\": HEX}");
        goto out;
    }
    for (size_t i = 0; i < doc->n; i++) {
        const char *k = doc->members[i].key;
        const struct veil_json *v = doc->members[i].value;
        if (strcmp(k, "nonce") == 0) {
            if (v->type != VEIL_JSON_STRING || v->str_len % 2 != 0 || !nonce_ok(v->str_len / 2) ||
                veil_hex_decode(veil_span_make(v->str, v->str_len), out->nonce, v->str_len / 2) !=
                    VEIL_OK) {
                ok = fail(why, cap, "\"nonce\" must be 16 to 64 bytes in hex");
                goto out;
            }
            out->nonce_len = v->str_len / 2;
        } else if (strcmp(k, "key_sha256") == 0) {
            if (v->type != VEIL_JSON_STRING || veil_hex_decode(veil_span_make(v->str, v->str_len),
                                                               out->key_sha256, 32) != VEIL_OK) {
                ok = fail(why, cap, "\"key_sha256\" must be 64 hex digits");
                goto out;
            }
            out->has_key = true;
        } else {
            ok = fail(why, cap, "unknown member: only \"nonce\" and \"key_sha256\"");
            goto out;
        }
    }
    if (out->nonce_len == 0 || !out->has_key) {
        ok = fail(why, cap, "both \"nonce\" and \"key_sha256\" are required");
        goto out;
    }
    ok = true;
out:
    veil_arena_release(&a);
    return ok;
}

/* Reads a protobuf varint (at most 10 bytes). */
static bool pb_varint(struct veil_span *s, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        uint8_t b;
        if (veil_span_get_u8(s, &b) != VEIL_OK)
            return false;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0)
            return true;
    }
    return false;
}

bool veil__serve_evidence_parse_pb(struct veil_span msg, struct sv_evidence_req *out, char *why,
                                   size_t cap)
{
    struct veil_span s = msg;
    memset(out, 0, sizeof(*out));
    while (s.len > 0) {
        uint64_t tag = 0, len = 0;
        struct veil_span field;
        if (!pb_varint(&s, &tag))
            return fail(why, cap, "malformed GetEvidenceRequest");
        uint64_t num = tag >> 3, type = tag & 7;
        if (type == 2) {
            if (!pb_varint(&s, &len) || len > s.len ||
                veil_span_get_bytes(&s, (size_t)len, &field) != VEIL_OK)
                return fail(why, cap, "malformed GetEvidenceRequest");
            if (num == 1) {
                if (!nonce_ok(field.len))
                    return fail(why, cap, "nonce must be 16 to 64 bytes");
                memcpy(out->nonce, field.p, field.len);
                out->nonce_len = field.len;
            } else if (num == 2) {
                if (field.len != 32)
                    return fail(why, cap, "key_sha256 must be 32 bytes");
                memcpy(out->key_sha256, field.p, 32);
                out->has_key = true;
            }
        } else if (type == 0) {
            if (!pb_varint(&s, &len))
                return fail(why, cap, "malformed GetEvidenceRequest");
        } else if (type == 1 || type == 5) {
            if (veil_span_skip(&s, type == 1 ? 8 : 4) != VEIL_OK)
                return fail(why, cap, "malformed GetEvidenceRequest");
        } else {
            return fail(why, cap, "malformed GetEvidenceRequest");
        }
        if ((num == 1 || num == 2) && type != 2)
            return fail(why, cap, "malformed GetEvidenceRequest");
    }
    if (out->nonce_len == 0 || !out->has_key)
        return fail(why, cap, "both nonce (1) and key_sha256 (2) are required");
    return true;
}

/* The canonical code for a hook's error. */
static int code_of(veil_err rc)
{
    switch (rc) {
    case VEIL_E_NOTFOUND:
        return VEIL_GRPC_NOT_FOUND;
    case VEIL_E_UNAVAILABLE:
    case VEIL_E_LIMIT:
    case VEIL_E_TIMEOUT:
        return VEIL_GRPC_UNAVAILABLE;
    default:
        return VEIL_GRPC_INTERNAL;
    }
}

static void finish(struct ejob *j, int code, const char *msg, struct veil_span der)
{
    if (j->call != NULL) {
        struct veil_buf pb;
        uint8_t head[11];
        size_t n = 0;
        veil_buf_init(&pb, EVIDENCE_CERT_MAX + sizeof(head));
        if (code == VEIL_GRPC_OK) {
            /* GetEvidenceResponse { bytes certificate = 1; }: tag, varint length, DER. */
            head[n++] = 0x0a;
            for (uint64_t v = der.len;; v >>= 7) {
                head[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
                if (v <= 0x7f)
                    break;
            }
            if (veil_buf_append(&pb, head, n) != VEIL_OK ||
                veil_buf_append(&pb, der.p, der.len) != VEIL_OK) {
                code = VEIL_GRPC_INTERNAL;
                msg = "response too large";
            }
        }
        veil_grpc_call_finish(j->call, code, msg, veil_buf_span(&pb));
        veil_buf_release(&pb);
    } else {
        struct veil_buf b;
        veil_buf_init(&b, 2 * EVIDENCE_CERT_MAX);
        veil_err rc = VEIL_OK;
        if (code == VEIL_GRPC_OK) {
            /* The certificate as PEM, a form any TLS toolkit reads. */
            BIO *bio = BIO_new(BIO_s_mem());
            const unsigned char *p = der.p;
            X509 *x = d2i_X509(NULL, &p, (long)der.len);
            char *pem = NULL;
            long pl = 0;
            rc = bio != NULL && x != NULL && PEM_write_bio_X509(bio, x) == 1 &&
                         (pl = BIO_get_mem_data(bio, &pem)) > 0
                     ? VEIL_OK
                     : VEIL_E_CRYPTO;
            if (rc == VEIL_OK)
                rc = veil_buf_append_str(&b, "{\"certificate\": ");
            if (rc == VEIL_OK)
                rc = veil__serve_json_str(&b, veil_span_make(pem, (size_t)pl));
            if (rc == VEIL_OK)
                rc = veil_buf_append_str(&b, "}\n");
            X509_free(x);
            BIO_free(bio);
            ERR_clear_error();
        } else {
            rc = veil_buf_append_str(&b, "{\"error\": ");
            if (rc == VEIL_OK)
                rc = veil__serve_json_str(&b, veil_span_from_str(msg));
            if (rc == VEIL_OK)
                rc = veil_buf_append_str(&b, "}\n");
        }
        if (rc != VEIL_OK)
            veil_http_req_reply(j->req, 500, "application/json", NULL,
                                veil_span_from_str("{\"error\": \"cannot encode the answer\"}\n"));
        else
            veil_http_req_reply(j->req, code == VEIL_GRPC_OK ? 200 : sv_http_status(code),
                                "application/json", NULL, veil_buf_span(&b));
        veil_buf_release(&b);
    }
    veil_free(j);
}

static void job_main(void *arg)
{
    struct ejob *j = arg;
    const struct veil_serve_options *o = &j->s->opt;
    struct veil_buf der;
    struct veil_errbuf eb = {{0}};
    veil_buf_init(&der, EVIDENCE_CERT_MAX);
    veil_err rc = o->evidence_fn(o->evidence_ud, veil_span_make(j->er.nonce, j->er.nonce_len),
                                 j->er.key_sha256, &der, &eb);
    if (rc == VEIL_OK)
        finish(j, VEIL_GRPC_OK, NULL, veil_buf_span(&der));
    else
        finish(j, code_of(rc), veil_errbuf_msg(&eb, rc), veil_span_make(NULL, 0));
    veil_buf_release(&der);
}

/* Checks what every request needs, then queues it; on refusal answers at once. */
static void submit(struct ejob *j, bool parsed, const char *why)
{
    if (j->s->opt.evidence_fn == NULL) {
        finish(j, VEIL_GRPC_UNIMPLEMENTED,
               "this server has no attestation: it was not provisioned by a key broker (--kbs)",
               veil_span_make(NULL, 0));
        return;
    }
    if (!parsed) {
        finish(j, VEIL_GRPC_INVALID_ARGUMENT, why, veil_span_make(NULL, 0));
        return;
    }
    if (!veil__serve_sched_submit(j->s->sched, job_main, j))
        finish(j, VEIL_GRPC_UNAVAILABLE, "server overloaded: request queue is full",
               veil_span_make(NULL, 0));
}

void veil__serve_evidence_rest(struct veil_serve *s, struct veil_http_req *req)
{
    char why[160] = "";
    if (strcmp(veil_http_req_method(req), "POST") != 0) {
        veil_http_req_reply(req, 405, "application/json", "Allow: POST\r\n",
                            veil_span_from_str("{\"error\": \"use POST\"}\n"));
        return;
    }
    struct ejob *j = veil_calloc(1, sizeof(*j));
    if (j == NULL) {
        veil_http_req_reply(req, 503, "application/json", NULL,
                            veil_span_from_str("{\"error\": \"out of memory\"}\n"));
        return;
    }
    j->s = s;
    j->req = req;
    bool ok = veil_http_req_body_status(req) == VEIL_OK &&
              veil__serve_evidence_parse_json(veil_http_req_body(req), &j->er, why, sizeof(why));
    submit(j, ok, why[0] != '\0' ? why : "unreadable body");
}

void veil__serve_evidence_grpc(struct veil_serve *s, struct veil_grpc_call *call)
{
    char why[160] = "";
    struct ejob *j = veil_calloc(1, sizeof(*j));
    if (j == NULL) {
        veil_grpc_call_finish(call, VEIL_GRPC_RESOURCE_EXHAUSTED, "out of memory",
                              veil_span_make(NULL, 0));
        return;
    }
    j->s = s;
    j->call = call;
    bool ok = veil__serve_evidence_parse_pb(veil_grpc_call_message(call), &j->er, why, sizeof(why));
    submit(j, ok, why);
}
