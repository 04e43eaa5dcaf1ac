#!/usr/bin/env python3
"""End-to-end tests of float16 and bfloat16 models on `veil serve`, with independent clients:
python3-grpcio with stubs generated from proto/ at test time, numpy for the 16-bit values, and
python's http.client. A float16 model (y = x * a + b with float16 weights, plus y cast to float)
and a bfloat16 model are served and asked over:
  - TF Serving REST: metadata (DT_HALF, DT_BFLOAT16), row and columnar JSON numbers;
  - TF Serving gRPC: DT_HALF / DT_BFLOAT16 in tensor_content and in half_val, answered in
    half_val; and the hostile cases (a half_val count that fits no shape, an odd tensor_content
    length, patterns beyond 16 bits, the wrong dtype), each a clear INVALID_ARGUMENT;
  - KServe v2 REST (FP16 and BF16 as JSON numbers and as binary tensor data) and gRPC
    (raw_input_contents; typed contents refused).
Every answer is checked bit for bit against numpy: each element computed in float and rounded
once to the output's type.

Usage: serve_half_test.py --veil BUILD/src/cli/veil --proto proto --work DIR"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_common import (Server, check, check_eq, finish, fresh_dir,  # noqa: E402
                          gen_kserve_stubs, gen_stubs)

import numpy as np  # noqa: E402

A16 = np.array([0.5, -1.25, 3.0, 0.1], dtype=np.float16)
B16 = np.array([1.0, 0.333, -2.0, 1e-3], dtype=np.float16)
XS = np.array([[1.0, 2.0, -3.5, 0.25], [100.0, 1e-3, 7.0, -65504.0]], dtype=np.float32)


def bf16_bits(a):
    """float32 -> bfloat16 bit patterns, rounded to nearest even (NaN kept quiet)."""
    u = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(a, dtype=np.float32))
    r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def bf16_value(bits):
    return (np.asarray(bits, dtype=np.uint32) << 16).view(np.float32)


def want_half(x16):
    """The float16 model's answer: x * a + b in float, rounded once to float16."""
    y = x16.astype(np.float32) * A16.astype(np.float32) + B16.astype(np.float32)
    return y.astype(np.float16)


B_BF = bf16_bits(np.array([0.5, -2.0, 1e-3, 300.0], dtype=np.float32))


def want_bf16(xbits):
    return bf16_bits(bf16_value(xbits) + bf16_value(B_BF))


def make_models(base):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 4])
    yf = helper.make_tensor_value_info("yf", TensorProto.FLOAT, ["batch", 4])
    g = helper.make_graph([helper.make_node("Mul", ["x", "a"], ["t"]),
                           helper.make_node("Add", ["t", "b"], ["y"]),
                           helper.make_node("Cast", ["y"], ["yf"], to=TensorProto.FLOAT)],
                          "half", [x], [y, yf],
                          [numpy_helper.from_array(A16, "a"), numpy_helper.from_array(B16, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    os.makedirs(os.path.join(base, "half", "1"))
    onnx.save(m, os.path.join(base, "half", "1", "model.onnx"))
    xb = helper.make_tensor_value_info("x", TensorProto.BFLOAT16, ["batch", 4])
    yb = helper.make_tensor_value_info("y", TensorProto.BFLOAT16, ["batch", 4])
    bt = helper.make_tensor("b", TensorProto.BFLOAT16, [4], B_BF.tobytes(), raw=True)
    g = helper.make_graph([helper.make_node("Add", ["x", "b"], ["y"])], "bf", [xb], [yb], [bt])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    os.makedirs(os.path.join(base, "bf", "1"))
    onnx.save(m, os.path.join(base, "bf", "1", "model.onnx"))


def pb():
    import grpc
    from kserve import grpc_service_pb2, grpc_service_pb2_grpc
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    return argparse.Namespace(grpc=grpc, types=types_pb2, predict=predict_pb2,
                              ps=prediction_service_pb2_grpc, k=grpc_service_pb2,
                              kg=grpc_service_pb2_grpc)


def grpc_code(fn):
    import grpc
    try:
        return "OK", fn()
    except grpc.RpcError as e:
        return e.code().name, e.details()


def expect_grpc(fn, code, substr, what):
    got, det = grpc_code(fn)
    ok = got == code and (substr is None or (isinstance(det, str) and substr in det))
    check(ok, "%s -> %s %r (got %s %r)" % (what, code, substr, got, det))


def same_bits(got, want, what):
    got = np.asarray(got)
    want = np.asarray(want)
    ok = got.shape == want.shape and np.array_equal(got.view(np.uint16) if got.dtype ==
                                                    np.float16 else got, want.view(np.uint16)
                                                    if want.dtype == np.float16 else want)
    if not ok:
        what = "%s: got %r, want %r" % (what, got, want)
    check(ok, what)


def rest_checks(srv):
    print("TF Serving REST:")
    st, js = srv.rest_json("GET", "/v1/models/half/metadata")
    sig = js["metadata"]["signature_def"]["signature_def"]["serving_default"]
    check_eq((st, sig["inputs"]["x"]["dtype"], sig["outputs"]["y"]["dtype"],
              sig["outputs"]["yf"]["dtype"]), (200, "DT_HALF", "DT_HALF", "DT_FLOAT"),
             "metadata names DT_HALF")
    x16 = XS.astype(np.float16)
    want = want_half(x16)
    # Row format: JSON numbers in, numbers out (the shortest decimal of each float16 value).
    st, js = srv.rest_json("POST", "/v1/models/half:predict",
                           {"instances": [[float(v) for v in r] for r in XS]})
    check_eq(st, 200, "row predict status")
    if st == 200:
        got = np.array([p["y"] for p in js["predictions"]], dtype=np.float32)
        same_bits(got.astype(np.float16), want, "row predict y (float16) bit for bit")
        check(np.array_equal(got, want.astype(np.float32)), "row predict y: exact float values")
        same_bits(np.array([p["yf"] for p in js["predictions"]], dtype=np.float32),
                  want.astype(np.float32), "row predict yf (the Cast to float)")
    # Columnar format; numbers that need rounding on the way in (0.1, 70000 -> infinity).
    st, js = srv.rest_json("POST", "/v1/models/half:predict",
                           {"inputs": {"x": [[0.1, 70000, -1e-8, 3.0]]}})
    check_eq(st, 200, "columnar predict status")
    if st == 200:
        x = np.array([[0.1, 70000, -1e-8, 3.0]], dtype=np.float64).astype(np.float16)
        w = want_half(x)
        got = js["outputs"]["y"]
        ok = len(got) == 1 and all((np.isinf(w[0][i]) and got[0][i] in (float("inf"),
                                                                       float("-inf")))
                                   or np.float16(got[0][i]) == w[0][i] for i in range(4))
        check(ok, "columnar predict y: %r, want %r" % (got, w.tolist()))
    st, js = srv.rest_json("POST", "/v1/models/half:predict", {"instances": [["a", 1, 2, 3]]})
    check(st == 400 and "is not of expected type: half" in js.get("error", ""),
          "a string for a half input -> 400 (%d %r)" % (st, js))
    # bfloat16: numbers rounded to nearest even.
    st, js = srv.rest_json("POST", "/v1/models/bf:predict",
                           {"instances": [[1.00390625, 1.01171875, 0.1, -3e38]]})
    check_eq(st, 200, "bfloat16 predict status")
    if st == 200:
        xb = bf16_bits(np.array([1.00390625, 1.01171875, 0.1, -3e38], dtype=np.float32))
        check_eq(list(xb[:2]), [0x3F80, 0x3F82], "bfloat16 ties round to even")
        got = bf16_bits(np.array(js["predictions"], dtype=np.float32))
        same_bits(got, want_bf16(xb)[None], "bfloat16 predict bit for bit")


def tensor(P, dt, shape):
    t = P.predict.PredictRequest().inputs["x"]
    t.dtype = dt
    for d in shape:
        t.tensor_shape.dim.add().size = d
    return t


def predict(P, model, fill):
    req = P.predict.PredictRequest()
    req.model_spec.name = model
    t = req.inputs["x"]
    fill(t)
    return req


def grpc_checks(srv, P):
    print("TF Serving gRPC:")
    ps = P.ps.PredictionServiceStub(srv.channel())
    x16 = XS.astype(np.float16)
    want = want_half(x16)

    def shape(t, dt, dims):
        t.dtype = dt
        for d in dims:
            t.tensor_shape.dim.add().size = d

    def content(t):
        shape(t, P.types.DT_HALF, x16.shape)
        t.tensor_content = x16.tobytes()

    def half_val(t):
        shape(t, P.types.DT_HALF, x16.shape)
        t.half_val.extend(int(v) for v in x16.view(np.uint16).ravel())

    for name, fill in (("tensor_content", content), ("half_val", half_val)):
        r = ps.Predict(predict(P, "half", fill), timeout=10)
        y = r.outputs["y"]
        check_eq(y.dtype, P.types.DT_HALF, "%s: output dtype DT_HALF" % name)
        check_eq([d.size for d in y.tensor_shape.dim], [2, 4], "%s: output shape" % name)
        same_bits(np.array(list(y.half_val), dtype=np.uint16).view(np.float16).reshape(2, 4),
                  want, "%s: y in half_val, bit for bit" % name)
        same_bits(np.array(list(r.outputs["yf"].float_val), dtype=np.float32).reshape(2, 4),
                  want.astype(np.float32), "%s: yf in float_val" % name)

    def one_value(t):
        shape(t, P.types.DT_HALF, [3, 4])
        t.half_val.append(int(np.float16(2.0).view(np.uint16)))

    r = ps.Predict(predict(P, "half", one_value), timeout=10)
    same_bits(np.array(list(r.outputs["y"].half_val), dtype=np.uint16).view(np.float16),
              want_half(np.full((3, 4), 2.0, dtype=np.float16)).ravel(),
              "one half_val value fills the tensor")
    xb = bf16_bits(XS)

    def bf(t):
        shape(t, P.types.DT_BFLOAT16, XS.shape)
        t.half_val.extend(int(v) for v in xb.ravel())

    r = ps.Predict(predict(P, "bf", bf), timeout=10)
    check_eq(r.outputs["y"].dtype, P.types.DT_BFLOAT16, "bfloat16 output dtype")
    same_bits(np.array(list(r.outputs["y"].half_val), dtype=np.uint16).reshape(2, 4),
              want_bf16(xb), "bfloat16 in half_val, bit for bit")

    def bf_content(t):
        shape(t, P.types.DT_BFLOAT16, XS.shape)
        t.tensor_content = xb.tobytes()

    r = ps.Predict(predict(P, "bf", bf_content), timeout=10)
    same_bits(np.array(list(r.outputs["y"].half_val), dtype=np.uint16).reshape(2, 4),
              want_bf16(xb), "bfloat16 in tensor_content")
    print("hostile:")

    def short(t):
        shape(t, P.types.DT_HALF, [2, 4])
        t.half_val.extend([0x3C00] * 3)

    expect_grpc(lambda: ps.Predict(predict(P, "half", short), timeout=10), "INVALID_ARGUMENT",
                "half_val holds 3 values; its shape has 8 elements", "half_val count 3 for [2,4]")

    def long_(t):
        shape(t, P.types.DT_HALF, [1, 4])
        t.half_val.extend([0x3C00] * 5)

    expect_grpc(lambda: ps.Predict(predict(P, "half", long_), timeout=10), "INVALID_ARGUMENT",
                "half_val holds 5 values", "half_val count 5 for [1,4]")

    def odd(t):
        shape(t, P.types.DT_HALF, [1, 4])
        t.tensor_content = b"\x00\x3c" * 3 + b"\x00"

    expect_grpc(lambda: ps.Predict(predict(P, "half", odd), timeout=10), "INVALID_ARGUMENT",
                "tensor_content holds 7 bytes; 4 elements of half need 8",
                "odd tensor_content length")

    def wide(t):
        shape(t, P.types.DT_HALF, [1, 4])
        t.half_val.extend([0x3C00, 70000, 0, 0])

    expect_grpc(lambda: ps.Predict(predict(P, "half", wide), timeout=10), "INVALID_ARGUMENT",
                "half_val[1] is 70000, not a 16-bit pattern", "half_val beyond 16 bits")

    def as_float(t):
        shape(t, P.types.DT_FLOAT, [1, 4])
        t.float_val.extend([1, 2, 3, 4])

    expect_grpc(lambda: ps.Predict(predict(P, "half", as_float), timeout=10), "INVALID_ARGUMENT",
                "to be half but float is provided", "DT_FLOAT for a DT_HALF input")

    def half_for_bf(t):
        shape(t, P.types.DT_HALF, [1, 4])
        t.half_val.extend([0x3C00] * 4)

    expect_grpc(lambda: ps.Predict(predict(P, "bf", half_for_bf), timeout=10),
                "INVALID_ARGUMENT", "to be bfloat16 but half is provided",
                "DT_HALF for a DT_BFLOAT16 input")
    # The server still answers after the refusals.
    r = ps.Predict(predict(P, "half", content), timeout=10)
    check_eq(len(r.outputs["y"].half_val), 8, "predict after the refusals")


def kserve_checks(srv, P):
    print("KServe v2 REST:")
    st, js = srv.rest_json("GET", "/v2/models/half")
    check_eq((st, js["inputs"][0]["datatype"], [o["datatype"] for o in js["outputs"]]),
             (200, "FP16", ["FP16", "FP32"]), "metadata datatypes")
    st, js = srv.rest_json("GET", "/v2/models/bf")
    check_eq(js["inputs"][0]["datatype"], "BF16", "bfloat16 metadata datatype")
    x16 = XS.astype(np.float16)
    want = want_half(x16)
    body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP16",
                        "data": [float(v) for v in XS.ravel()]}]}
    st, js = srv.rest_json("POST", "/v2/models/half/infer", body)
    check_eq(st, 200, "FP16 JSON infer status")
    if st == 200:
        outs = {o["name"]: o for o in js["outputs"]}
        check_eq((outs["y"]["datatype"], outs["y"]["shape"]), ("FP16", [2, 4]),
                 "FP16 output datatype and shape")
        same_bits(np.array(outs["y"]["data"], dtype=np.float32).astype(np.float16),
                  want.ravel(), "FP16 JSON numbers out, bit for bit")
    # Binary tensor data both ways.
    hdr = json.dumps({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP16",
                                  "parameters": {"binary_data_size": 16}}],
                      "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
    st, h, data = srv.http("POST", "/v2/models/half/infer", hdr + x16.tobytes(),
                           {"Inference-Header-Content-Length": str(len(hdr)),
                            "Content-Type": "application/octet-stream"})
    check_eq(st, 200, "FP16 binary infer status")
    if st == 200:
        n = int(h.get("inference-header-content-length", "0"))
        meta = json.loads(data[:n])
        check_eq(meta["outputs"][0]["parameters"]["binary_data_size"], 16,
                 "FP16 binary output size")
        same_bits(np.frombuffer(data[n:n + 16], dtype=np.float16).reshape(2, 4), want,
                  "FP16 binary output bit for bit")
    # An odd binary chunk for FP16.
    hdr = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP16",
                                  "parameters": {"binary_data_size": 7}}]}).encode()
    st, h, data = srv.http("POST", "/v2/models/half/infer", hdr + b"\x00" * 7,
                           {"Inference-Header-Content-Length": str(len(hdr))})
    check(st == 400 and b"does not match shape and datatype" in data,
          "odd FP16 binary chunk -> 400 (%d %r)" % (st, data[:120]))
    xb = bf16_bits(XS)
    body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "BF16",
                        "data": bf16_value(xb).ravel().tolist()}]}
    st, js = srv.rest_json("POST", "/v2/models/bf/infer", body)
    check_eq(st, 200, "BF16 JSON infer status")
    if st == 200:
        same_bits(bf16_bits(np.array(js["outputs"][0]["data"], dtype=np.float32)),
                  want_bf16(xb).ravel(), "BF16 JSON numbers out, bit for bit")
    print("KServe v2 gRPC:")
    k = P.kg.GRPCInferenceServiceStub(srv.channel())
    req = P.k.ModelInferRequest(model_name="half")
    inp = req.inputs.add(name="x", datatype="FP16", shape=[2, 4])
    req.raw_input_contents.append(x16.tobytes())
    r = k.ModelInfer(req, timeout=10)
    names = [o.name for o in r.outputs]
    if check(len(r.raw_output_contents) == len(names) and "y" in names, "raw outputs"):
        i = names.index("y")
        check_eq(r.outputs[i].datatype, "FP16", "gRPC FP16 output datatype")
        same_bits(np.frombuffer(r.raw_output_contents[i], dtype=np.float16).reshape(2, 4), want,
                  "gRPC FP16 raw output bit for bit")
    req = P.k.ModelInferRequest(model_name="half")
    inp = req.inputs.add(name="x", datatype="FP16", shape=[1, 4])
    inp.contents.fp32_contents.extend([1, 2, 3, 4])
    expect_grpc(lambda: k.ModelInfer(req, timeout=10), "INVALID_ARGUMENT",
                "FP16 data can only travel in raw_input_contents", "FP16 typed contents")
    req = P.k.ModelInferRequest(model_name="half")
    req.inputs.add(name="x", datatype="FP16", shape=[1, 4])
    req.raw_input_contents.append(b"\x00" * 7)
    expect_grpc(lambda: k.ModelInfer(req, timeout=10), "INVALID_ARGUMENT",
                "raw_input_contents holds 7 bytes", "odd FP16 raw contents")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", required=True)
    ap.add_argument("--proto", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    work = fresh_dir(a.work)
    gen_stubs(a.proto, os.path.join(work, "pb"))
    gen_kserve_stubs(a.proto, os.path.join(work, "pb"))
    base = os.path.join(work, "models")
    make_models(base)
    cfg = os.path.join(work, "models.config")
    with open(cfg, "w") as f:
        f.write("model_config_list {\n"
                "  config { name: 'half' base_path: '%s' model_platform: 'tensorflow' }\n"
                "  config { name: 'bf' base_path: '%s' model_platform: 'tensorflow' }\n}\n" %
                (os.path.join(base, "half"), os.path.join(base, "bf")))
    P = pb()
    srv = Server(a.veil, work, ["--model_config_file=" + cfg, "--plaintext"], "half")
    try:
        rest_checks(srv)
        grpc_checks(srv, P)
        kserve_checks(srv, P)
    finally:
        srv.stop()
    finish()


if __name__ == "__main__":
    main()
