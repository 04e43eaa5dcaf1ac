/*
 * Model warmup (TF Serving's --enable_model_warmup): before a version becomes AVAILABLE, the
 * Predict requests of its assets.extra/tf_serving_warmup_requests file run on the engine, so
 * the first clients do not pay for plans and caches. The file is a TFRecord file (each record
 * a little-endian u64 length, its masked CRC-32C, the data and its masked CRC-32C) of
 * PredictionLog messages, as TF Serving's tools write it; only predict_log entries are
 * supported. The record and message readers are pure functions over the file's bytes.
 */
#include "serve_int.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "tensorflow_serving/apis/predict.pb-c.h"

#define WARMUP_FILE "assets.extra/tf_serving_warmup_requests"
#define WARMUP_MAX_RECORDS 1000           /* TF Serving's kMaxNumRecords */
#define WARMUP_MAX_FILE ((size_t)1 << 30) /* the file is read whole */
#define PREDICTION_LOG_PREDICT_LOG 6      /* PredictionLog.predict_log */
#define PREDICT_LOG_REQUEST 1             /* PredictLog.request */

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: files are small. */
static uint32_t crc32c(struct veil_span s)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < s.len; i++) {
        c ^= s.p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return ~c;
}

/* TFRecord's mask: rotate right by 15 and add a constant. */
static uint32_t masked(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

veil_err veil__serve_tfrecord_next(struct veil_span *s, struct veil_span *rec)
{
    struct veil_span t = *s, lenb, data;
    uint64_t len = 0;
    uint32_t lcrc = 0, dcrc = 0;
    *rec = veil_span_make(NULL, 0);
    if (veil_span_get_bytes(&t, 8, &lenb) != VEIL_OK || veil_span_get_u32le(&t, &lcrc) != VEIL_OK)
        return VEIL_E_INCOMPLETE;
    struct veil_span lv = lenb;
    if (veil_span_get_u64le(&lv, &len) != VEIL_OK)
        return VEIL_E_INCOMPLETE;
    if (masked(crc32c(lenb)) != lcrc)
        return VEIL_E_FORMAT;
    if (len > t.len)
        return VEIL_E_INCOMPLETE;
    if (veil_span_get_bytes(&t, (size_t)len, &data) != VEIL_OK ||
        veil_span_get_u32le(&t, &dcrc) != VEIL_OK)
        return VEIL_E_INCOMPLETE;
    if (masked(crc32c(data)) != dcrc)
        return VEIL_E_FORMAT;
    *rec = data;
    *s = t;
    return VEIL_OK;
}

/* The length-delimited field `field` of message m (the last one, as protobuf merges). */
static veil_err pb_field(struct veil_span m, uint64_t field, bool *found, struct veil_span *out)
{
    *found = false;
    while (m.len > 0) {
        uint64_t key = 0, v = 0;
        struct veil_span sub;
        if (veil_span_get_varint(&m, &key) != VEIL_OK)
            return VEIL_E_FORMAT;
        switch (key & 7) {
        case 0:
            if (veil_span_get_varint(&m, &v) != VEIL_OK)
                return VEIL_E_FORMAT;
            break;
        case 1:
            if (veil_span_skip(&m, 8) != VEIL_OK)
                return VEIL_E_FORMAT;
            break;
        case 2:
            if (veil_span_get_varint(&m, &v) != VEIL_OK || v > m.len ||
                veil_span_get_bytes(&m, (size_t)v, &sub) != VEIL_OK)
                return VEIL_E_FORMAT;
            if (key >> 3 == field) {
                *found = true;
                *out = sub;
            }
            break;
        case 5:
            if (veil_span_skip(&m, 4) != VEIL_OK)
                return VEIL_E_FORMAT;
            break;
        default:
            return VEIL_E_FORMAT;
        }
    }
    return VEIL_OK;
}

veil_err veil__serve_warmup_predict(struct veil_span rec, struct veil_span *request)
{
    bool found = false;
    struct veil_span log;
    *request = veil_span_make(NULL, 0);
    if (pb_field(rec, PREDICTION_LOG_PREDICT_LOG, &found, &log) != VEIL_OK)
        return VEIL_E_FORMAT;
    if (!found)
        return VEIL_E_UNSUPPORTED;
    if (pb_field(log, PREDICT_LOG_REQUEST, &found, request) != VEIL_OK)
        return VEIL_E_FORMAT;
    return VEIL_OK; /* an absent request is an empty one */
}

/* Runs one PredictRequest (its bytes) on em against sig. */
static veil_err run_one(struct veil_span req_bytes, struct veil_engine_model *em,
                        const struct sv_sig *sig, unsigned iterations, struct veil_errbuf *eb)
{
    struct veil_arena a;
    ProtobufCAllocator al;
    struct sv_status st = {0, ""};
    struct veil_tensor in[SV_MAX_IO], out[SV_MAX_IO];
    veil_err rc = VEIL_E_FORMAT;
    veil_arena_init(&a, 64u << 10, SV_REQ_ARENA_MAX);
    veil__serve_pb_allocator(&a, &al);
    memset(out, 0, sizeof(out));
    Tensorflow__Serving__PredictRequest *req =
        tensorflow__serving__predict_request__unpack(&al, req_bytes.len, req_bytes.p);
    if (req == NULL) {
        rc = veil_errf(eb, VEIL_E_FORMAT, "not a PredictRequest");
        goto out;
    }
    if (req->n_inputs != sig->n_in) {
        rc = veil_errf(eb, VEIL_E_INVALID, "the request has %zu inputs, the model %zu",
                       req->n_inputs, sig->n_in);
        goto out;
    }
    for (size_t k = 0; k < sig->n_in; k++) {
        const Tensorflow__TensorProto *tp = NULL;
        for (size_t i = 0; i < req->n_inputs; i++)
            if (req->inputs[i]->key != NULL && strcmp(req->inputs[i]->key, sig->in[k].name) == 0)
                tp = req->inputs[i]->value;
        if (tp == NULL) {
            rc = veil_errf(eb, VEIL_E_INVALID, "the request lacks input %s", sig->in[k].name);
            goto out;
        }
        if (!veil__serve_tensor_from_proto(tp, &sig->in[k], &a, &in[k], &st) ||
            !veil__serve_tensor_check(&in[k], &sig->in[k], k, &st)) {
            rc = veil_errf(eb, VEIL_E_INVALID, "%s", st.msg);
            goto out;
        }
    }
    for (unsigned it = 0; it < iterations; it++) {
        if ((rc = veil_engine_run(em, in, sig->n_in, out, sig->n_out, eb)) != VEIL_OK)
            goto out;
        for (size_t i = 0; i < sig->n_out; i++)
            veil_tensor_release(&out[i]);
    }
    rc = VEIL_OK;
out:
    for (size_t i = 0; i < sig->n_out; i++)
        veil_tensor_release(&out[i]);
    veil_arena_release(&a);
    return rc;
}

veil_err veil__serve_warmup(const char *version_dir, struct veil_engine_model *em,
                            const struct sv_sig *sig, unsigned iterations, size_t *n_run,
                            struct veil_errbuf *eb)
{
    char path[4096 + 64];
    struct stat sb;
    struct veil_buf file;
    veil_err rc = VEIL_E_INTERNAL;
    *n_run = 0;
    snprintf(path, sizeof(path), "%s/" WARMUP_FILE, version_dir);
    if (stat(path, &sb) != 0)
        return VEIL_OK; /* no warmup file: nothing to do, as in TF Serving */
    veil_buf_init(&file, WARMUP_MAX_FILE);
    if ((rc = veil_file_read_all(path, WARMUP_MAX_FILE, &file, eb)) != VEIL_OK)
        goto out;
    struct veil_span s = veil_buf_span(&file);
    while (s.len > 0) {
        struct veil_span rec, req;
        if (*n_run == WARMUP_MAX_RECORDS) {
            rc = veil_errf(eb, VEIL_E_LIMIT, "more than %d warmup records in %s",
                           WARMUP_MAX_RECORDS, path);
            goto out;
        }
        if ((rc = veil__serve_tfrecord_next(&s, &rec)) != VEIL_OK) {
            rc = veil_errf(eb, VEIL_E_FORMAT, "warmup record %zu of %s is %s", *n_run + 1, path,
                           rc == VEIL_E_INCOMPLETE ? "cut short" : "corrupt (CRC mismatch)");
            goto out;
        }
        rc = veil__serve_warmup_predict(rec, &req);
        if (rc == VEIL_E_UNSUPPORTED) {
            rc = veil_errf(eb, rc,
                           "warmup record %zu of %s is not a predict_log (only Predict "
                           "requests warm up an ONNX model)",
                           *n_run + 1, path);
            goto out;
        }
        if (rc != VEIL_OK) {
            rc = veil_errf(eb, rc, "warmup record %zu of %s is not a PredictionLog", *n_run + 1,
                           path);
            goto out;
        }
        if ((rc = run_one(req, em, sig, iterations, eb)) != VEIL_OK) {
            char why[sizeof(eb->msg)];
            snprintf(why, sizeof(why), "%s", veil_errbuf_msg(eb, rc));
            rc = veil_errf(eb, rc, "warmup record %zu of %s: %s", *n_run + 1, path, why);
            goto out;
        }
        (*n_run)++;
    }
    rc = VEIL_OK;
out:
    veil_buf_release(&file);
    return rc;
}
