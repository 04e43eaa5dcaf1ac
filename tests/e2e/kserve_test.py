#!/usr/bin/env python3
"""End-to-end tests of KServe v2 / Open Inference Protocol on `veil serve`'s ports, against
independent peers: python3-grpcio with stubs generated at test time from proto/kserve (the
protocol's package and field numbers), and curl and python's http.client for REST. Covers every
RPC and REST path, JSON and binary tensors, named outputs and parameters, each error case of
../shared/reference/kserve-v2.md with its status code, plaintext, TLS and mutual TLS, batching,
and the same model answering identically over TF Serving's Predict and KServe's ModelInfer.

Usage: kserve_test.py --veil BUILD/src/cli/veil --proto proto --work DIR"""

import argparse
import json
import os
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_common import (Server, check, check_eq, curl, finish, fresh_dir,  # noqa: E402
                          gen_kserve_stubs, gen_stubs, make_affine, make_certs, make_two_io)

args = None


def pb():
    import grpc
    from kserve import grpc_service_pb2, grpc_service_pb2_grpc
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    return argparse.Namespace(grpc=grpc, k=grpc_service_pb2, kg=grpc_service_pb2_grpc,
                              types=types_pb2, predict=predict_pb2,
                              ps=prediction_service_pb2_grpc)


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


def f32(b):
    return list(struct.unpack("<%df" % (len(b) // 4), b))


def binary_body(header, chunks):
    """A binary-extension body: the JSON header, then the chunks; returns (body, headers)."""
    h = json.dumps(header).encode()
    body = h + b"".join(chunks)
    return body, {"Inference-Header-Content-Length": str(len(h)),
                  "Content-Type": "application/octet-stream"}


def split_binary(h, data):
    """Splits a response by Inference-Header-Content-Length: (json, [binary chunks by output])."""
    n = int(h.get("inference-header-content-length", len(data)))
    js = json.loads(data[:n])
    rest, out = data[n:], {}
    for o in js["outputs"]:
        size = o.get("parameters", {}).get("binary_data_size")
        if size is not None:
            out[o["name"]], rest = rest[:size], rest[size:]
    check_eq(rest, b"", "binary response has no trailing bytes")
    return js, out


def expect_err(srv, method, path, body, status, substr, what, headers=None):
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    st, h, data = srv.http(method, path, body, headers)
    try:
        js = json.loads(data)
    except ValueError:
        js = data
    ok = st == status and isinstance(js, dict) and list(js.keys()) == ["error"]
    ok = ok and (substr is None or substr in js["error"])
    ok = ok and h.get("content-type") == "application/json"
    check(ok, "%s %s -> %d %r (got %d %r)" % (method, path, status, substr, st, js))


def infer_body(x, name="input", dtype="FP32", shape=None, **extra):
    import numpy as np
    a = np.asarray(x)
    d = {"inputs": [{"name": name, "shape": list(shape or a.shape), "datatype": dtype,
                     "data": a.tolist()}]}
    d.update(extra)
    return d


# ---- REST ----

def rest_checks(srv):
    print("REST server and model state:")
    for p in ("/v2", "/v2/"):
        st, js = srv.rest_json("GET", p)
        check_eq(st, 200, "GET %s" % p)
        check(isinstance(js, dict) and js.get("name") == "veil" and
              isinstance(js.get("version"), str) and
              "binary_tensor_data" in js.get("extensions", []), "server metadata %r" % js)
    check_eq(srv.rest_json("GET", "/v2/health/live"), (200, {"live": True}), "live")
    check_eq(srv.rest_json("GET", "/v2/health/ready"), (200, {"ready": True}), "ready")
    meta = {"name": "m", "versions": ["1"], "platform": "onnx_onnxv1",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3]}],
            "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}]}
    check_eq(srv.rest_json("GET", "/v2/models/m"), (200, meta), "model metadata")
    check_eq(srv.rest_json("GET", "/v2/models/m/versions/1"), (200, meta),
             "model metadata of version 1")
    st, js = srv.rest_json("GET", "/v2/models/mv")
    check_eq((st, js.get("versions")), (200, ["2", "1"]), "versions of a two-version model")
    st, js = srv.rest_json("GET", "/v2/models/two")
    check_eq([i["name"] for i in js["inputs"]] + [o["name"] for o in js["outputs"]],
             ["a", "b", "sum", "prod"], "two-input model metadata")
    check_eq(srv.rest_json("GET", "/v2/models/m/ready"), (200, {"name": "m", "ready": True}),
             "model ready")
    check_eq(srv.rest_json("GET", "/v2/models/mv/versions/1/ready"),
             (200, {"name": "mv", "ready": True}), "version ready")
    check_eq(srv.rest_json("GET", "/v2/models/m/versions/9/ready"),
             (400, {"name": "m", "ready": False}), "a version that is not loaded is not ready")
    expect_err(srv, "GET", "/v2/models/nope/ready", None, 404, "nope", "unknown model ready")
    expect_err(srv, "GET", "/v2/models/nope", None, 404, "nope", "unknown model metadata")
    expect_err(srv, "GET", "/v2/models/m/versions/9", None, 404, None, "unknown version metadata")
    expect_err(srv, "GET", "/v2/models/m/versions/x1", None, 404, None, "non-numeric version")
    expect_err(srv, "GET", "/v2/nothing", None, 404, None, "unknown /v2 path")
    expect_err(srv, "GET", "/v2/models/m/infer", None, 405, "POST", "GET on infer")
    expect_err(srv, "POST", "/v2/models/m", "{}", 405, "GET", "POST on metadata")
    # Paths are case-sensitive: /V2 is not KServe's, the TF Serving router answers it.
    st, _, _ = srv.http("GET", "/V2/health/live")
    check_eq(st, 404, "/V2 is not a KServe path")

    print("REST inference, JSON tensors:")
    st, js = srv.rest_json("POST", "/v2/models/m/infer",
                           infer_body([[1, 2, 3], [4, 5, 6]], id="42"))
    want = {"model_name": "m", "model_version": "1", "id": "42",
            "outputs": [{"name": "output", "datatype": "FP32", "shape": [2, 3],
                         "data": [3.0, 5.0, 7.0, 9.0, 11.0, 13.0]}]}
    check_eq((st, js), (200, want), "nested data, id echoed")
    st, js2 = srv.rest_json("POST", "/v2/models/m/infer",
                            infer_body([1, 2, 3, 4, 5, 6], shape=[2, 3], id="42"))
    check_eq((st, js2), (200, want), "flat data answers the same")
    st, js = srv.rest_json("POST", "/v2/models/m/versions/1/infer", infer_body([[0.5, 0, -1]]))
    check_eq((st, js["outputs"][0]["data"], "id" in js), (200, [2.0, 1.0, -1.0], False),
             "versioned path, no id")
    st, js = srv.rest_json("POST", "/v2/models/mv/versions/1/infer", infer_body([[1, 1, 1]]))
    st2, js2 = srv.rest_json("POST", "/v2/models/mv/infer", infer_body([[1, 1, 1]]))
    check_eq((js["model_version"], js["outputs"][0]["data"], js2["model_version"],
              js2["outputs"][0]["data"]), ("1", [1.0] * 3, "2", [2.0] * 3),
             "version 1 by path, version 2 by default")
    params = infer_body([[1, 2, 3]], parameters={"priority": 1, "x": "y", "z": True})
    params["inputs"][0]["parameters"] = {"anything": 3.5}
    params["outputs"] = [{"name": "output", "parameters": {"other": "v"}}]
    st, js = srv.rest_json("POST", "/v2/models/m/infer", params)
    check_eq((st, js["outputs"][0]["data"]), (200, [3.0, 5.0, 7.0]), "unknown parameters ignored")
    st, h, _ = srv.http("POST", "/v2/models/m/infer", json.dumps(infer_body([[1, 2, 3]])))
    check_eq((h.get("content-type"), "inference-header-content-length" in h),
             ("application/json", False), "JSON reply headers")

    print("REST named outputs:")
    two = {"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
                      {"name": "b", "shape": [1, 2], "datatype": "FP32", "data": [3, 4]}]}
    st, js = srv.rest_json("POST", "/v2/models/two/infer", two)
    check_eq([(o["name"], o["data"]) for o in js["outputs"]],
             [("sum", [4.0, 6.0]), ("prod", [3.0, 8.0])], "all outputs without 'outputs'")
    st, js = srv.rest_json("POST", "/v2/models/two/infer", dict(two, outputs=[{"name": "prod"}]))
    check_eq([(o["name"], o["data"]) for o in js["outputs"]], [("prod", [3.0, 8.0])],
             "one named output")
    st, js = srv.rest_json("POST", "/v2/models/two/infer",
                           dict(two, outputs=[{"name": "prod"}, {"name": "sum"}]))
    check_eq([o["name"] for o in js["outputs"]], ["prod", "sum"], "outputs in the asked order")

    print("REST binary tensor data:")
    import numpy as np
    x = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    body, hd = binary_body({"id": "b", "inputs": [
        {"name": "input", "shape": [2, 3], "datatype": "FP32",
         "parameters": {"binary_data_size": x.nbytes}}]}, [x.tobytes()])
    st, h, data = srv.http("POST", "/v2/models/m/infer", body, hd)
    check_eq((st, json.loads(data)), (200, want | {"id": "b"}), "binary input, JSON output")
    body, hd = binary_body({"inputs": [
        {"name": "input", "shape": [2, 3], "datatype": "FP32",
         "parameters": {"binary_data_size": x.nbytes}}],
        "outputs": [{"name": "output", "parameters": {"binary_data": True}}]}, [x.tobytes()])
    st, h, data = srv.http("POST", "/v2/models/m/infer", body, hd)
    js, bins = split_binary(h, data)
    check_eq((st, h.get("content-type"), js["outputs"][0].get("parameters"),
              "data" in js["outputs"][0]),
             (200, "application/octet-stream", {"binary_data_size": 24}, False),
             "binary output header")
    check_eq(f32(bins["output"]), want["outputs"][0]["data"], "binary output bytes")
    check_eq(int(h["content-length"]), len(data), "Content-Length is the whole body")
    # binary_data_output for all, one output overriding it back to JSON.
    a = np.array([[1, 2]], dtype=np.float32)
    b = np.array([[3, 4]], dtype=np.float32)
    body, hd = binary_body({"parameters": {"binary_data_output": True}, "inputs": [
        {"name": "a", "shape": [1, 2], "datatype": "FP32",
         "parameters": {"binary_data_size": 8}},
        {"name": "b", "shape": [1, 2], "datatype": "FP32", "data": [3, 4]}],
        "outputs": [{"name": "sum"}, {"name": "prod", "parameters": {"binary_data": False}}]},
        [a.tobytes()])
    st, h, data = srv.http("POST", "/v2/models/two/infer", body, hd)
    js, bins = split_binary(h, data)
    check_eq((st, f32(bins.get("sum", b"")), js["outputs"][1].get("data")),
             (200, [4.0, 6.0], [3.0, 8.0]), "binary_data_output with a JSON override")
    body, hd = binary_body({"parameters": {"binary_data_output": True}, "inputs": [
        {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
        {"name": "b", "shape": [1, 2], "datatype": "FP32", "data": [3, 4]}]}, [])
    st, h, data = srv.http("POST", "/v2/models/two/infer", body, hd)
    js, bins = split_binary(h, data)
    check_eq((st, sorted(bins), f32(bins.get("prod", b""))), (200, ["prod", "sum"], [3.0, 8.0]),
             "binary_data_output for every output")

    print("REST binary and JSON tensors agree:")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    st, js = srv.rest_json("POST", "/v2/models/m/infer", infer_body(x.tolist()))
    jbytes = np.asarray(js["outputs"][0]["data"], dtype=np.float32).tobytes()
    body, hd = binary_body({"inputs": [
        {"name": "input", "shape": [5, 3], "datatype": "FP32",
         "parameters": {"binary_data_size": x.nbytes}}],
        "outputs": [{"name": "output", "parameters": {"binary_data": True}}]}, [x.tobytes()])
    st, h, data = srv.http("POST", "/v2/models/m/infer", body, hd)
    _, bins = split_binary(h, data)
    check_eq(bins["output"], jbytes, "binary and JSON outputs are bit-identical")
    check_eq(bins["output"], (x * 2 + 1).astype(np.float32).tobytes(), "and equal x*2+1")

    print("REST errors:")
    P = "/v2/models/m/infer"
    good = infer_body([[1, 2, 3]])
    expect_err(srv, "POST", "/v2/models/nope/infer", good, 404, "nope", "unknown model")
    expect_err(srv, "POST", "/v2/models/m/versions/9/infer", good, 404, None, "unknown version")
    expect_err(srv, "POST", P, "{bad json", 400, None, "malformed JSON")
    expect_err(srv, "POST", P, "[1]", 400, "object", "body not an object")
    expect_err(srv, "POST", P, {"id": "x"}, 400, "inputs", "no inputs")
    expect_err(srv, "POST", P, dict(good, id=5), 400, "id", "non-string id")
    expect_err(srv, "POST", P, infer_body([[1, 2, 3]], name="nope"), 400, "nope",
               "unknown input name")
    expect_err(srv, "POST", "/v2/models/two/infer", {"inputs": two["inputs"][:1]}, 400, "b",
               "missing input")
    expect_err(srv, "POST", "/v2/models/two/infer",
               {"inputs": [two["inputs"][0], two["inputs"][0]]}, 400, "twice", "input twice")
    expect_err(srv, "POST", P, infer_body([[1, 2, 3]], dtype="INT32"), 400, "FP32",
               "wrong datatype")
    expect_err(srv, "POST", P, infer_body([[1, 2, 3]], dtype="FP8"), 400, "FP8",
               "unknown datatype")
    expect_err(srv, "POST", P, infer_body([1, 2], shape=[1, 3]), 400, "elements",
               "too few elements")
    expect_err(srv, "POST", P, infer_body([1, 2, 3, 4], shape=[1, 3]), 400, "elements",
               "too many elements")
    expect_err(srv, "POST", P, infer_body([1, 2, 3], shape=[1, -3]), 400, "shape",
               "negative dimension")
    expect_err(srv, "POST", P, infer_body([1, 2, 3], shape=[3]), 400, None,
               "shape the model refuses (rank)")
    expect_err(srv, "POST", P, infer_body([1, 2, 3, 4], shape=[1, 4]), 400, None,
               "shape the model refuses (static dim)")
    expect_err(srv, "POST", P, infer_body([["a", "b", "c"]]), 400, None, "strings for FP32")
    expect_err(srv, "POST", P, dict(good, outputs=[{"name": "nope"}]), 400, "nope",
               "unknown output")
    expect_err(srv, "POST", P, dict(good, outputs=[{"name": "output"}, {"name": "output"}]),
               400, "twice", "output twice")
    expect_err(srv, "POST", P, dict(good, outputs=[
        {"name": "output", "parameters": {"classification": 2}}]), 400, "classification",
        "classification refused")
    expect_err(srv, "POST", P, dict(good, parameters={"binary_data_output": "yes"}), 400,
               "boolean", "non-boolean binary_data_output")
    expect_err(srv, "POST", P, dict(good, parameters=[1]), 400, "parameters",
               "parameters not an object")
    x = np.array([[1, 2, 3]], dtype=np.float32)
    hdr = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32",
                       "parameters": {"binary_data_size": 12}}]}
    body, hd = binary_body(hdr, [x.tobytes()[:8]])
    expect_err(srv, "POST", P, body, 400, "binary_data_size", "binary data cut short",
               headers=hd)
    body, hd = binary_body(hdr, [x.tobytes() + b"\0\0\0\0"])
    expect_err(srv, "POST", P, body, 400, "bytes of binary data", "extra binary bytes",
               headers=hd)
    h2 = json.loads(json.dumps(hdr))
    h2["inputs"][0]["parameters"]["binary_data_size"] = 8
    body, hd = binary_body(h2, [x.tobytes()[:8]])
    expect_err(srv, "POST", P, body, 400, "does not match", "chunk size != shape x type",
               headers=hd)
    body, hd = binary_body(hdr, [x.tobytes()])
    for v, what in (("99999", "header length beyond the body"), ("12x", "non-numeric header"),
                    ("-5", "negative header"), ("0", "raw binary request (length 0)")):
        expect_err(srv, "POST", P, body, 400, "Inference-Header-Content-Length"
                   if v != "0" else "raw binary", what,
                   headers={"Inference-Header-Content-Length": v})
    expect_err(srv, "POST", P, json.dumps(hdr), 400, "Inference-Header-Content-Length",
               "binary_data_size without the header")
    h3 = json.loads(json.dumps(hdr))
    h3["inputs"][0]["data"] = [1, 2, 3]
    body, hd = binary_body(h3, [x.tobytes()])
    expect_err(srv, "POST", P, body, 400, "both", "data and binary_data_size", headers=hd)
    body, hd = binary_body({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32"}]},
                           [])
    expect_err(srv, "POST", P, body, 400, "neither", "neither data nor binary", headers=hd)


def curl_checks(srv, base, extra):
    print("curl:")
    rc, code, body = curl(*extra, base + "/v2/health/ready")
    check_eq((rc, code, body), (0, 200, b'{"ready":true}'), "curl ready")
    rc, code, body = curl(*extra, "-d", '{"inputs":[{"name":"input","shape":[1,3],'
                          '"datatype":"FP32","data":[1,2,3]}]}', base + "/v2/models/m/infer")
    check(rc == 0 and code == 200 and json.loads(body)["outputs"][0]["data"] == [3.0, 5.0, 7.0],
          "curl JSON infer (rc %d code %d)" % (rc, code))
    import numpy as np
    hdr = json.dumps({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32",
                                  "parameters": {"binary_data_size": 12}}],
                      "outputs": [{"name": "output", "parameters": {"binary_data": True}}]})
    path = os.path.join(args.work, "curl-body.bin")
    with open(path, "wb") as f:
        f.write(hdr.encode() + np.array([1, 2, 3], dtype=np.float32).tobytes())
    rc, code, body = curl(*extra, "-H", "Inference-Header-Content-Length: %d" % len(hdr), "-H",
                          "Content-Type: application/octet-stream", "--data-binary", "@" + path,
                          base + "/v2/models/m/infer")
    check(rc == 0 and code == 200 and f32(body[-12:]) == [3.0, 5.0, 7.0],
          "curl binary infer (rc %d code %d)" % (rc, code))
    rc, code, body = curl(*extra, base + "/v2/models/nope/ready")
    check(rc == 0 and code == 404 and "error" in json.loads(body), "curl unknown model ready")


# ---- gRPC ----

def infer_req(P, model, x, raw=True, name="input", version="", rid=""):
    import numpy as np
    a = np.asarray(x, dtype=np.float32)
    r = P.k.ModelInferRequest(model_name=model, model_version=version, id=rid)
    t = r.inputs.add(name=name, datatype="FP32", shape=list(a.shape))
    if raw:
        r.raw_input_contents.append(a.tobytes())
    else:
        t.contents.fp32_contents.extend(a.flatten().tolist())
    return r


def out_f32(resp, i=0):
    if resp.raw_output_contents:
        return f32(resp.raw_output_contents[i])
    return list(resp.outputs[i].contents.fp32_contents)


def grpc_checks(srv, P, full=True):
    print("gRPC inference.GRPCInferenceService:")
    k = P.kg.GRPCInferenceServiceStub(srv.channel())
    check_eq(k.ServerLive(P.k.ServerLiveRequest(), timeout=10).live, True, "ServerLive")
    check_eq(k.ServerReady(P.k.ServerReadyRequest(), timeout=10).ready, True, "ServerReady")
    md = k.ServerMetadata(P.k.ServerMetadataRequest(), timeout=10)
    check(md.name == "veil" and md.version != "" and "binary_tensor_data" in md.extensions,
          "ServerMetadata %r" % str(md).replace("\n", " "))
    check_eq(k.ModelReady(P.k.ModelReadyRequest(name="m"), timeout=10).ready, True,
             "ModelReady")
    check_eq(k.ModelReady(P.k.ModelReadyRequest(name="m", version="1"), timeout=10).ready, True,
             "ModelReady of version 1")
    check_eq(k.ModelReady(P.k.ModelReadyRequest(name="m", version="9"), timeout=10).ready, False,
             "ModelReady of a missing version is false")
    check_eq(k.ModelReady(P.k.ModelReadyRequest(name="nope"), timeout=10).ready, False,
             "ModelReady of an unknown model is false")
    mm = k.ModelMetadata(P.k.ModelMetadataRequest(name="m"), timeout=10)
    check_eq((mm.name, list(mm.versions), mm.platform,
              [(t.name, t.datatype, list(t.shape)) for t in mm.inputs],
              [(t.name, t.datatype, list(t.shape)) for t in mm.outputs]),
             ("m", ["1"], "onnx_onnxv1", [("input", "FP32", [-1, 3])],
              [("output", "FP32", [-1, 3])]), "ModelMetadata")
    expect_grpc(lambda: k.ModelMetadata(P.k.ModelMetadataRequest(name="nope"), timeout=10),
                "NOT_FOUND", "nope", "ModelMetadata of an unknown model")

    r = k.ModelInfer(infer_req(P, "m", [[1, 2, 3], [4, 5, 6]], rid="7"), timeout=10)
    check_eq((r.model_name, r.model_version, r.id, r.outputs[0].name, r.outputs[0].datatype,
              list(r.outputs[0].shape), len(r.raw_output_contents)),
             ("m", "1", "7", "output", "FP32", [2, 3], 1), "ModelInfer raw: response fields")
    check_eq(out_f32(r), [3.0, 5.0, 7.0, 9.0, 11.0, 13.0], "ModelInfer raw: values")
    r2 = k.ModelInfer(infer_req(P, "m", [[1, 2, 3], [4, 5, 6]], raw=False), timeout=10)
    check_eq((len(r2.raw_output_contents), list(r2.outputs[0].contents.fp32_contents)),
             (0, [3.0, 5.0, 7.0, 9.0, 11.0, 13.0]), "ModelInfer typed: typed reply")
    if not full:
        return k
    r = k.ModelInfer(infer_req(P, "mv", [[1, 1, 1]], version="1"), timeout=10)
    check_eq((r.model_version, out_f32(r)), ("1", [1.0] * 3), "ModelInfer of version 1")
    # Named outputs and parameters (unknown ones ignored).
    req = P.k.ModelInferRequest(model_name="two")
    for n, v in (("a", [1, 2]), ("b", [3, 4])):
        t = req.inputs.add(name=n, datatype="FP32", shape=[1, 2])
        t.contents.fp32_contents.extend(v)
        t.parameters["whatever"].int64_param = 3
    req.parameters["priority"].int64_param = 1
    req.outputs.add(name="prod").parameters["binary_data"].bool_param = True
    r = k.ModelInfer(req, timeout=10)
    check_eq([(o.name, list(o.contents.fp32_contents)) for o in r.outputs], [("prod", [3.0, 8.0])],
             "ModelInfer named output")

    print("gRPC errors:")
    good = infer_req(P, "m", [[1, 2, 3]])
    expect_grpc(lambda: k.ModelInfer(infer_req(P, "nope", [[1, 2, 3]]), timeout=10), "NOT_FOUND",
                None, "unknown model")
    expect_grpc(lambda: k.ModelInfer(infer_req(P, "m", [[1, 2, 3]], version="9"), timeout=10),
                "NOT_FOUND", None, "unknown version")
    expect_grpc(lambda: k.ModelInfer(infer_req(P, "", [[1, 2, 3]]), timeout=10),
                "INVALID_ARGUMENT", "model", "no model name")
    expect_grpc(lambda: k.ModelInfer(infer_req(P, "m", [[1, 2, 3]], name="x"), timeout=10),
                "INVALID_ARGUMENT", "x", "unknown input")
    bad = P.k.ModelInferRequest()
    bad.CopyFrom(good)
    bad.inputs[0].datatype = "INT32"
    expect_grpc(lambda: k.ModelInfer(bad, timeout=10), "INVALID_ARGUMENT", "FP32",
                "wrong datatype")
    bad.inputs[0].datatype = "NOPE"
    expect_grpc(lambda: k.ModelInfer(bad, timeout=10), "INVALID_ARGUMENT", "NOPE",
                "unknown datatype")
    bad.CopyFrom(good)
    bad.raw_input_contents[0] = bad.raw_input_contents[0][:8]
    expect_grpc(lambda: k.ModelInfer(bad, timeout=10), "INVALID_ARGUMENT", "raw_input_contents",
                "raw size mismatch")
    bad.CopyFrom(good)
    bad.raw_input_contents.append(b"1234")
    expect_grpc(lambda: k.ModelInfer(bad, timeout=10), "INVALID_ARGUMENT", "entries",
                "raw entries != inputs")
    bad.CopyFrom(good)
    bad.inputs[0].contents.fp32_contents.extend([1, 2, 3])
    expect_grpc(lambda: k.ModelInfer(bad, timeout=10), "INVALID_ARGUMENT", "contents",
                "contents and raw together")
    typed = infer_req(P, "m", [[1, 2, 3]], raw=False)
    typed.inputs[0].contents.fp32_contents.append(4)
    expect_grpc(lambda: k.ModelInfer(typed, timeout=10), "INVALID_ARGUMENT", "exactly 3",
                "typed count mismatch")
    typed = infer_req(P, "m", [[1, 2, 3]], raw=False)
    typed.inputs[0].contents.ClearField("fp32_contents")
    typed.inputs[0].contents.int_contents.extend([1, 2, 3])
    expect_grpc(lambda: k.ModelInfer(typed, timeout=10), "INVALID_ARGUMENT", "field",
                "typed values in the wrong field")
    bad.CopyFrom(good)
    bad.inputs[0].shape[:] = [1, 4]
    bad.raw_input_contents[0] = b"\0" * 16
    expect_grpc(lambda: k.ModelInfer(bad, timeout=10), "INVALID_ARGUMENT", None,
                "shape the model refuses")
    bad.CopyFrom(good)
    bad.inputs[0].shape[:] = [1, -3]
    expect_grpc(lambda: k.ModelInfer(bad, timeout=10), "INVALID_ARGUMENT", "negative",
                "negative dimension")
    bad.CopyFrom(good)
    bad.outputs.add(name="nope")
    expect_grpc(lambda: k.ModelInfer(bad, timeout=10), "INVALID_ARGUMENT", "nope",
                "unknown output")
    ch = srv.channel()
    raw_call = ch.unary_unary("/inference.GRPCInferenceService/RepositoryIndex",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
    expect_grpc(lambda: raw_call(b"", timeout=10), "UNIMPLEMENTED", "RepositoryIndex",
                "other Triton methods are UNIMPLEMENTED")
    junk = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                          request_serializer=lambda b: b, response_deserializer=lambda b: b)
    expect_grpc(lambda: junk(b"\x0a\xff\xff", timeout=10), "INVALID_ARGUMENT", "parse",
                "undecodable ModelInferRequest")
    return k


def same_answers(srv, P):
    """One model, one input, four APIs: TF Predict, TF REST, KServe gRPC, KServe REST."""
    print("TF Serving and KServe answer identically:")
    import numpy as np
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    ps = P.ps.PredictionServiceStub(srv.channel())
    req = P.predict.PredictRequest()
    req.model_spec.name = "m"
    t = req.inputs["input"]
    t.dtype = P.types.DT_FLOAT
    for d in x.shape:
        t.tensor_shape.dim.add().size = d
    t.tensor_content = x.tobytes()
    tf = np.asarray(ps.Predict(req, timeout=10).outputs["output"].float_val,
                    dtype=np.float32).tobytes()
    k = P.kg.GRPCInferenceServiceStub(srv.channel())
    kg = k.ModelInfer(infer_req(P, "m", x), timeout=10).raw_output_contents[0]
    kt = np.asarray(k.ModelInfer(infer_req(P, "m", x, raw=False), timeout=10)
                    .outputs[0].contents.fp32_contents, dtype=np.float32).tobytes()
    st, js = srv.rest_json("POST", "/v1/models/m:predict", {"instances": x.tolist()})
    tr = np.asarray(js["predictions"], dtype=np.float32).tobytes()
    st, js = srv.rest_json("POST", "/v2/models/m/infer", infer_body(x.tolist()))
    kr = np.asarray(js["outputs"][0]["data"], dtype=np.float32).tobytes()
    check(tf == kg == kt == tr == kr, "Predict, ModelInfer raw and typed, :predict and v2 infer "
          "give the same bytes")


def metrics_checks(srv):
    st, _, body = srv.http("GET", "/monitoring/prometheus/metrics")
    text = body.decode()
    check(st == 200 and 'API="ModelInfer",entrypoint="REST"' in text and
          'API="ModelInfer",entrypoint="GRPC"' in text and 'API="Predict"' in text,
          "metrics count KServe requests by protocol and entry point")


def suite_plain(work, P):
    base = os.path.join(work, "models")
    make_affine(os.path.join(base, "m", "1", "model.onnx"), 2.0, 1.0)
    make_two_io(os.path.join(base, "two", "1", "model.onnx"))
    make_affine(os.path.join(base, "mv", "1", "model.onnx"), 0.0, 1.0)
    make_affine(os.path.join(base, "mv", "2", "model.onnx"), 0.0, 2.0)
    cfg = os.path.join(work, "models.config")
    with open(cfg, "w") as f:
        f.write("model_config_list {\n")
        for n, pol in (("m", ""), ("two", ""), ("mv", "model_version_policy { all {} }")):
            f.write("  config { name: '%s' base_path: '%s' model_platform: 'onnx' %s }\n" %
                    (n, os.path.join(base, n), pol))
        f.write("}\n")
    srv = Server(args.veil, work, ["--model_config_file=" + cfg, "--plaintext"], "kplain")
    try:
        rest_checks(srv)
        curl_checks(srv, "http://127.0.0.1:%d" % srv.rest_port, [])
        grpc_checks(srv, P)
        same_answers(srv, P)
        metrics_checks(srv)
    finally:
        srv.stop()


def suite_tls(work, P):
    certs = make_certs(os.path.join(work, "certs"))
    base = os.path.join(work, "models")
    mp = ["--model_name=m", "--model_base_path=" + os.path.join(base, "m")]
    tls = ["--tls_cert=" + certs["server.pem"], "--tls_key=" + certs["server.key"]]
    print("TLS:")
    srv = Server(args.veil, work, mp + tls, "ktls", tls={"ca": certs["ca.pem"]})
    try:
        st, js = srv.rest_json("POST", "/v2/models/m/infer", infer_body([[1, 2, 3]]))
        check_eq((st, js["outputs"][0]["data"]), (200, [3.0, 5.0, 7.0]), "REST v2 over TLS")
        curl_checks(srv, "https://localhost:%d" % srv.rest_port, ["--cacert", certs["ca.pem"]])
        grpc_checks(srv, P, full=False)
        for p in ("/v2/health/live", "/v1/models/m"):
            rc, code, body = curl("http://127.0.0.1:%d%s" % (srv.rest_port, p))
            check(rc == 0 and code == 400 and b"use https://" in body,
                  "plain HTTP to the TLS port %s: 400 saying to use https (rc %d, code %d, %r)" %
                  (p, rc, code, body[:80]))
    finally:
        srv.stop()
    print("mutual TLS:")
    srv = Server(args.veil, work, mp + tls + ["--tls_client_ca=" + certs["ca.pem"]], "kmtls",
                 tls={"ca": certs["ca.pem"], "cert": certs["client.pem"],
                      "key": certs["client.key"]})
    try:
        st, js = srv.rest_json("POST", "/v2/models/m/infer", infer_body([[1, 2, 3]]))
        check_eq((st, js["outputs"][0]["data"]), (200, [3.0, 5.0, 7.0]), "REST v2 over mTLS")
        curl_checks(srv, "https://localhost:%d" % srv.rest_port,
                    ["--cacert", certs["ca.pem"], "--cert", certs["client.pem"], "--key",
                     certs["client.key"]])
        rc, code, _ = curl("--cacert", certs["ca.pem"],
                           "https://localhost:%d/v2/health/live" % srv.rest_port)
        check(rc != 0 or code != 200, "REST v2 without a client certificate fails")
        grpc_checks(srv, P, full=False)
        k = P.kg.GRPCInferenceServiceStub(srv.channel(client_cert=False))
        expect_grpc(lambda: k.ServerLive(P.k.ServerLiveRequest(), timeout=10), "UNAVAILABLE",
                    None, "gRPC v2 without a client certificate fails")
    finally:
        srv.stop()


def suite_batching(work, P):
    """Concurrent KServe clients (REST binary and gRPC raw) through the TF batcher."""
    print("batching:")
    import numpy as np
    base = os.path.join(work, "models")
    bp = os.path.join(work, "batching.config")
    with open(bp, "w") as f:
        f.write("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 5000 }\n"
                "num_batch_threads { value: 1 }\n")
    srv = Server(args.veil, work, ["--model_name=m", "--model_base_path=" +
                                   os.path.join(base, "m"), "--plaintext", "--enable_batching",
                                   "--batching_parameters_file=" + bp], "kbatch")
    errors = []
    try:
        def client(i):
            k = P.kg.GRPCInferenceServiceStub(srv.channel())
            for n in range(10):
                x = np.full((1, 3), i * 100 + n, dtype=np.float32)
                if (i + n) % 2:
                    got = f32(k.ModelInfer(infer_req(P, "m", x), timeout=20)
                              .raw_output_contents[0])
                else:
                    body, hd = binary_body({"inputs": [
                        {"name": "input", "shape": [1, 3], "datatype": "FP32",
                         "parameters": {"binary_data_size": 12}}],
                        "outputs": [{"name": "output", "parameters": {"binary_data": True}}]},
                        [x.tobytes()])
                    st, h, data = srv.http("POST", "/v2/models/m/infer", body, hd)
                    got = f32(data[int(h["inference-header-content-length"]):])
                if got != [float(x[0, 0] * 2 + 1)] * 3:
                    errors.append((i, n, got))
        ts = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check_eq(errors, [], "4 concurrent KServe clients get their own rows back")
        st, _, body = srv.http("GET", "/monitoring/prometheus/metrics")
        check(":tensorflow:serving:batching_session:processed_batch_size_count" in body.decode(),
              "KServe requests went through the batcher")
    finally:
        srv.stop()


def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", required=True)
    ap.add_argument("--proto", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    work = fresh_dir(args.work)
    gen_stubs(args.proto, os.path.join(work, "stubs"))
    gen_kserve_stubs(args.proto, os.path.join(work, "stubs"))
    P = pb()
    suite_plain(work, P)
    suite_tls(work, P)
    suite_batching(work, P)
    finish()


if __name__ == "__main__":
    main()
