#!/usr/bin/env python3
"""Model warmup as TF Serving does it: a version folder's assets.extra/tf_serving_warmup_requests
(a TFRecord file of PredictionLog messages, written here byte by byte: length, masked CRC-32C,
data, masked CRC-32C) runs before the version becomes AVAILABLE; a corrupt file, a record that
is not a predict_log or a request the model refuses fails the load; --enable_model_warmup=false
skips it.

Usage: serve_warmup_test.py --veil BUILD/src/cli/veil --proto proto --work DIR"""

import argparse
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_common import (Server, check, check_eq, finish, fresh_dir, gen_stubs,  # noqa: E402
                          make_affine)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 & -(c & 1))
    return c ^ 0xFFFFFFFF


def masked(c):
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(records):
    out = b""
    for r in records:
        n = struct.pack("<Q", len(r))
        out += n + struct.pack("<I", masked(crc32c(n))) + r + struct.pack("<I", masked(crc32c(r)))
    return out


def field(num, payload):
    """A length-delimited protobuf field."""
    key, n, v = bytearray(), len(payload), (num << 3) | 2
    for x in (v, n):
        while True:
            b = x & 0x7F
            x >>= 7
            key.append(b | (0x80 if x else 0))
            if not x:
                break
    return bytes(key) + payload


def predict_log(req):
    """PredictionLog { predict_log (6): PredictLog { request (1): req } }."""
    return field(6, field(1, req.SerializeToString()))


def request(name="input", rows=1):
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2
    r = predict_pb2.PredictRequest()
    r.model_spec.name = "m"
    t = r.inputs[name]
    t.dtype = types_pb2.DT_FLOAT
    t.tensor_shape.dim.add().size = rows
    t.tensor_shape.dim.add().size = 3
    t.float_val.extend([1.0] * (3 * rows))
    return r


def status(srv, name):
    st, js = srv.rest_json("GET", "/v1/models/" + name)
    if st != 200:
        return None, ""
    v = js["model_version_status"][0]
    return v["state"], v["status"]["error_message"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", required=True)
    ap.add_argument("--proto", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    work = fresh_dir(args.work)
    gen_stubs(args.proto, os.path.join(work, "stubs"))
    base = os.path.join(work, "models")
    files = {
        "good": tfrecord([predict_log(request(rows=r)) for r in (1, 2, 3)]),
        "corrupt": tfrecord([predict_log(request())])[:-1] + b"\x00",
        "cut": tfrecord([predict_log(request())])[:20],
        "classify": tfrecord([field(2, b"")]),
        "wrong_input": tfrecord([predict_log(request(name="nope"))]),
    }
    for name, data in files.items():
        d = os.path.join(base, name, "1")
        make_affine(os.path.join(d, "model.onnx"), 2.0, 1.0)
        os.makedirs(os.path.join(d, "assets.extra"))
        with open(os.path.join(d, "assets.extra", "tf_serving_warmup_requests"), "wb") as f:
            f.write(data)
    make_affine(os.path.join(base, "plain", "1", "model.onnx"), 2.0, 1.0)
    cfg = os.path.join(work, "models.config")
    with open(cfg, "w") as f:
        f.write("model_config_list {\n")
        for n in list(files) + ["plain"]:
            f.write("  config { name: '%s' base_path: '%s' model_platform: 'onnx' }\n" %
                    (n, os.path.join(base, n)))
        f.write("}\n")

    print("warmup on (the default):")
    srv = Server(args.veil, work, ["--plaintext", "--model_config_file=" + cfg,
                                   "--num_request_iterations_for_warmup=2"], "warm",
                 wait_ready=False)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and any(
                status(srv, n)[0] not in ("AVAILABLE", "END") for n in list(files) + ["plain"]):
            time.sleep(0.1)
        check_eq(status(srv, "good"), ("AVAILABLE", ""), "a good warmup file: AVAILABLE")
        check("model good version 1 warmed up with 3 requests" in srv.read_log(),
              "the log says how many requests warmed it up")
        check_eq(status(srv, "plain"), ("AVAILABLE", ""), "no warmup file: AVAILABLE")
        st, js = srv.rest_json("POST", "/v1/models/good:predict", {"instances": [[1, 2, 3]]})
        check_eq((st, js), (200, {"predictions": [[3.0, 5.0, 7.0]]}), "the warmed model answers")
        for name, want in (("corrupt", "corrupt (CRC mismatch)"), ("cut", "cut short"),
                           ("classify", "not a predict_log"), ("wrong_input", "lacks input")):
            state, msg = status(srv, name)
            check(state == "END" and want in msg and "tf_serving_warmup_requests" in msg,
                  "%s: the load fails with %r (%s %r)" % (name, want, state, msg))
        st, _ = srv.rest_json("GET", "/readyz")
        check_eq(st, 503, "not ready while a model has no AVAILABLE version")
    finally:
        srv.stop()

    print("--enable_model_warmup=false:")
    srv = Server(args.veil, work, ["--plaintext", "--model_config_file=" + cfg,
                                   "--enable_model_warmup=false"], "nowarm")
    try:
        for n in list(files) + ["plain"]:
            check_eq(status(srv, n)[0], "AVAILABLE", "%s loads without warmup" % n)
        check("warmed up" not in srv.read_log(), "nothing was warmed up")
    finally:
        srv.stop()
    finish()


if __name__ == "__main__":
    main()
