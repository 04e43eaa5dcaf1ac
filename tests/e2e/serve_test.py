#!/usr/bin/python3
"""End-to-end tests of `veil serve` with independent clients: python3-grpcio with stubs
generated from the project's .proto files, and curl. Usage:

    serve_test.py --veil PATH --proto DIR --work DIR SUITE

    serve_test.py --veil PATH --proto DIR --work DIR --models DIR cnn

SUITE is one of: api, tls, config, reload, batching, robust, sealed, cnn (a torch-exported
ResNet-18 at mixed batch sizes against ONNX Runtime; exit status 77 without torch or
onnxruntime-node)."""

import argparse
import base64
import gzip
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_common import (FAILS, Server, check, check_eq, curl, finish, fresh_dir,  # noqa: E402
                          gen_stubs, make_affine, make_certs, make_slow, make_two_io)

args = None


def pb():
    """The generated modules, imported after gen_stubs."""
    import grpc
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                         get_model_status_pb2, model_service_pb2_grpc,
                                         predict_pb2, prediction_service_pb2_grpc,
                                         regression_pb2)
    return argparse.Namespace(grpc=grpc, types=types_pb2, predict=predict_pb2,
                              meta=get_model_metadata_pb2, status=get_model_status_pb2,
                              ps=prediction_service_pb2_grpc, ms=model_service_pb2_grpc,
                              cls=classification_pb2, reg=regression_pb2)


def predict_req(P, model, arr=None, name="input", version=None, label=None, sig=None,
                content=True, dtype=None):
    import numpy as np
    req = P.predict.PredictRequest()
    req.model_spec.name = model
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    if sig is not None:
        req.model_spec.signature_name = sig
    if arr is not None:
        a = np.asarray(arr, dtype=np.float32)
        t = req.inputs[name]
        t.dtype = dtype if dtype is not None else P.types.DT_FLOAT
        for d in a.shape:
            t.tensor_shape.dim.add().size = d
        if content:
            t.tensor_content = a.tobytes()
        else:
            t.float_val.extend(a.flatten().tolist())
    return req


def grpc_code(fn):
    """Runs fn; returns (code name, details) of the RpcError, or ("OK", result)."""
    import grpc
    try:
        return "OK", fn()
    except grpc.RpcError as e:
        return e.code().name, e.details()


def expect_grpc(fn, code, substr, what):
    got, det = grpc_code(fn)
    ok = got == code and (substr is None or (isinstance(det, str) and substr in det))
    check(ok, "%s -> %s %r (got %s %r)" % (what, code, substr, got, det))


def expect_rest(srv, method, path, body, status, substr, what, headers=None):
    st, js = srv.rest_json(method, path, body, headers)
    msg = js.get("error") if isinstance(js, dict) else js
    ok = st == status and (substr is None or (isinstance(msg, str) and substr in msg))
    if isinstance(js, dict) and status != 200:
        ok = ok and list(js.keys()) == ["error"]
    check(ok, "%s %s -> %d %r (got %d %r)" % (method, path, status, substr, st, js))
    return js


# ---------------------------------------------------------------------------------------------

def suite_api(work):
    P = pb()
    base = os.path.join(work, "models")
    make_affine(os.path.join(base, "m", "1", "model.onnx"), 2.0, 1.0)
    make_two_io(os.path.join(base, "two", "7", "model.onnx"))
    cfg = os.path.join(work, "models.config")
    with open(cfg, "w") as f:
        f.write("""# two models
model_config_list {
  config { name: 'm' base_path: '%s' model_platform: "tensorflow" }
  config: { name: "two", base_path: "%s"; model_platform: "tensorflow" }
}
""" % (os.path.join(base, "m"), os.path.join(base, "two")))
    srv = Server(args.veil, work, ["--model_config_file=" + cfg, "--plaintext",
                                   "--enable_grpc_healthcheck_service"], "api")
    try:
        rest_api(srv)
        grpc_api(srv, P)
        curl_api(srv)
        keepalive_timing(srv)
    finally:
        srv.stop()


def rest_api(srv):
    print("REST:")
    st, js = srv.rest_json("GET", "/v1/models/m")
    check_eq(st, 200, "status code")
    check_eq(js, {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {
        "error_code": "OK", "error_message": ""}}]}, "model status JSON")
    st, h, _ = srv.http("GET", "/v1/models/m")
    check_eq(h.get("content-type"), "application/json", "status content type")
    st, js = srv.rest_json("GET", "/v1/models/m/versions/1")
    check_eq((st, js["model_version_status"][0]["version"]), (200, "1"), "status of version 1")
    st, js = srv.rest_json("GET", "/v1/models/m/metadata")
    check_eq(st, 200, "metadata code")
    check_eq(js["model_spec"], {"name": "m", "signature_name": "", "version": "1"},
             "metadata model_spec")
    sd = js["metadata"]["signature_def"]["signature_def"]["serving_default"]
    check_eq(sd["inputs"]["input"]["dtype"], "DT_FLOAT", "metadata input dtype")
    check_eq(sd["inputs"]["input"]["tensor_shape"]["dim"],
             [{"size": "-1", "name": ""}, {"size": "3", "name": ""}], "metadata input dims")
    check_eq(sd["method_name"], "tensorflow/serving/predict", "metadata method name")
    st, js = srv.rest_json("GET", "/v1/models/m/versions/1/metadata")
    check_eq(st, 200, "metadata of version 1")

    # Predict, row and columnar forms.
    st, js = srv.rest_json("POST", "/v1/models/m:predict", {"instances": [[1, 2, 3], [4, 5, 6]]})
    check_eq((st, js), (200, {"predictions": [[3.0, 5.0, 7.0], [9.0, 11.0, 13.0]]}),
             "row predict")
    st, js = srv.rest_json("POST", "/v1/models/m:predict", {"inputs": [[0.5, -1, 1e1]]})
    check_eq((st, js), (200, {"outputs": [[2.0, -1.0, 21.0]]}), "columnar predict")
    st, js = srv.rest_json("POST", "/v1/models/m:predict", {"inputs": {"input": [[1, 1, 1]]}})
    check_eq((st, js), (200, {"outputs": [[3.0, 3.0, 3.0]]}), "columnar named predict")
    st, js = srv.rest_json("POST", "/v1/models/m/versions/1:predict",
                           {"signature_name": "serving_default", "instances": [[0, 0, 0]]})
    check_eq((st, js), (200, {"predictions": [[1.0, 1.0, 1.0]]}), "predict version 1")
    st, js = srv.rest_json("POST", "/V1/MODELS/m:PREDICT", {"instances": [[0, 0, 0]]})
    check_eq(st, 200, "case-insensitive URL")
    st, js = srv.rest_json("POST", "/v1/models/m:predict?x=1", {"instances": [[0, 0, 0]]})
    check_eq(st, 200, "query string ignored")
    st, h, raw = srv.http("POST", "/v1/models/m:predict",
                          b'{"instances": [[NaN, Infinity, -Infinity]]}')
    check_eq(st, 200, "NaN/Infinity accepted")
    check(b"NaN" in raw and b"Infinity" in raw and b"-Infinity" in raw,
          "NaN/Infinity written as bare tokens: %r" % raw)
    out = json.loads(raw)["predictions"][0]
    check(math.isnan(out[0]) and out[1] == math.inf and out[2] == -math.inf, "NaN/Inf values")
    st, js = srv.rest_json("POST", "/v1/models/m:predict", {"instances": [[1.5, 2.25, 1e-3]]})
    check_eq(js, {"predictions": [[4.0, 5.5, 1.002]]}, "shortest float output")
    body = gzip.compress(json.dumps({"instances": [[1, 2, 3]]}).encode())
    st, js = srv.rest_json("POST", "/v1/models/m:predict", body, {"Content-Encoding": "gzip"})
    check_eq((st, js), (200, {"predictions": [[3.0, 5.0, 7.0]]}), "gzip request body")
    st, js = srv.rest_json("POST", "/v1/models/m:predict", b"\x1f\x8b garbage",
                           {"Content-Encoding": "gzip"})
    check_eq(st, 400, "corrupt gzip body")
    # Two inputs, two outputs.
    st, js = srv.rest_json("POST", "/v1/models/two:predict",
                           {"instances": [{"a": [1, 2], "b": [3, 4]}, {"a": [0, 1], "b": [5, 6]}]})
    check_eq((st, js), (200, {"predictions": [{"sum": [4.0, 6.0], "prod": [3.0, 8.0]},
                                              {"sum": [5.0, 7.0], "prod": [0.0, 6.0]}]}),
             "row predict with two inputs and outputs")
    st, js = srv.rest_json("POST", "/v1/models/two:predict",
                           {"inputs": {"a": [[1, 2]], "b": [[3, 4]], "ignored": 1}})
    check_eq((st, js), (200, {"outputs": {"sum": [[4.0, 6.0]], "prod": [[3.0, 8.0]]}}),
             "columnar predict with two outputs")

    # Errors of the contract.
    expect_rest(srv, "POST", "/v1/models/nope:predict", {"instances": [[1, 2, 3]]}, 404,
                "Servable not found for request: Latest(nope)", "unknown model")
    expect_rest(srv, "POST", "/v1/models/m/versions/9:predict", {"instances": [[1, 2, 3]]}, 404,
                "Servable not found for request: Specific(m, 9)", "unknown version")
    expect_rest(srv, "GET", "/v1/models/nope/metadata", None, 404,
                "Servable not found for request: Latest(nope)", "metadata of unknown model")
    expect_rest(srv, "GET", "/v1/models/nope", None, 404,
                "Could not find any versions of model nope", "status of unknown model")
    expect_rest(srv, "GET", "/v1/models/m/versions/9", None, 404,
                "Could not find version 9 of model m", "status of unknown version")
    expect_rest(srv, "POST", "/v1/models/m/labels/beta:predict", {"instances": [[1, 2, 3]]}, 400,
                "Unrecognized servable version label: beta", "unknown label")
    expect_rest(srv, "POST", "/v1/models/m:predict", b"", 400,
                "JSON Parse error: The document is empty", "empty body")
    expect_rest(srv, "POST", "/v1/models/m:predict", b"{\"instances\": [1,", 400,
                "JSON Parse error", "invalid JSON")
    expect_rest(srv, "POST", "/v1/models/m:predict", [1, 2], 400, "Is not object",
                "top level not an object")
    expect_rest(srv, "POST", "/v1/models/m:predict", {"signature_name": 5, "instances": [[1]]},
                400, "'signature_name' key must be a string value.", "signature_name type")
    expect_rest(srv, "POST", "/v1/models/m:predict", {"signature_name": "x", "instances": [[1]]},
                400, 'Serving signature name: "x" not found in signature def',
                "unknown signature")
    expect_rest(srv, "POST", "/v1/models/m:predict", {"foo": 1}, 400,
                "Missing 'inputs' or 'instances' key", "no instances or inputs")
    expect_rest(srv, "POST", "/v1/models/m:predict", {"inputs": [[1, 2, 3]],
                                                      "instances": [[1, 2, 3]]}, 400,
                "expecting only one of 'inputs' or 'instances' keys to exist",
                "both instances and inputs")
    expect_rest(srv, "POST", "/v1/models/m:predict", {"instances": 5}, 400,
                "Expecting 'instances' to be an list/array", "instances not a list")
    expect_rest(srv, "POST", "/v1/models/m:predict", {"instances": []}, 400,
                "No values in 'instances' array", "empty instances")
    expect_rest(srv, "POST", "/v1/models/m:predict", {"instances": [["x", 1, 2]]}, 400,
                'JSON Value: "x" Type: String is not of expected type: float', "wrong JSON type")
    expect_rest(srv, "POST", "/v1/models/m:predict", {"instances": [[1, 2, 3], [1, 2]]}, 400,
                "Encountered list at unexpected size", "ragged instances")
    expect_rest(srv, "POST", "/v1/models/m:predict", {"instances": [[1, 2, 3], 4]}, 400,
                "incorrect level", "wrong nesting")
    expect_rest(srv, "POST", "/v1/models/m:predict", {"instances": [[1, 2]]}, 400,
                "expected shape", "wrong static dimension")
    expect_rest(srv, "POST", "/v1/models/two:predict", {"instances": [{"a": [1, 2], "c": [1, 2]}]},
                400, "keys must be equal to: a,b", "row objects with wrong keys")
    expect_rest(srv, "POST", "/v1/models/two:predict",
                {"instances": [{"a": [1, 2], "b": [1, 2], "c": 1}]}, 400,
                "keys must be equal to: a,b", "row objects with extra keys")
    expect_rest(srv, "POST", "/v1/models/two:predict", {"inputs": {"a": [[1, 2]]}}, 400,
                "Missing named input: b in 'inputs' object.", "columnar missing input")
    expect_rest(srv, "POST", "/v1/models/m:classify", {"signature_name": ""}, 400,
                "When method is classify, key 'examples' is expected and was not found",
                "classify without examples")
    expect_rest(srv, "POST", "/v1/models/m:regress", {"examples": [{"x": 1}]}, 501, None,
                "regress is unimplemented")
    for method, path in (("POST", "/v1/models/m/versions/abc:predict"),
                         ("POST", "/v1/models/m/version/5:predict"),
                         ("POST", "/v1/models/m/versions/-1:predict"),
                         ("POST", "/v1/models/m/label/x:predict"),
                         ("POST", "/v1/models/m/versions/1/labels/x:predict"),
                         ("GET", "/v1/models/m:predict"),
                         ("POST", "/v1/models/m"),
                         ("POST", "/v1/models/m/metadata"),
                         ("PUT", "/v1/models/m:predict"),
                         ("DELETE", "/v1/models/m"),
                         ("POST", "/v1/models/m:explain")):
        expect_rest(srv, method, path, {"instances": [[1, 2, 3]]} if method == "POST" else None,
                    400, "Malformed request: %s %s" % (method, path), "malformed URL")
    expect_rest(srv, "GET", "/v1/models", None, 400, "Missing model name in request.",
                "no model name")
    expect_rest(srv, "POST", "/v1/models/m/versions/99999999999999999999:predict",
                {"instances": [[1, 2, 3]]}, 400,
                "Failed to convert version: 99999999999999999999 to numeric.", "version overflow")
    st, h, body = srv.http("GET", "/v9/models/m")
    check(st == 404 and b"Not Found" in body and h.get("content-type", "").startswith("text/html"),
          "path outside /v1/ and /v2/ -> 404 HTML page")
    st, h, body = srv.http("OPTIONS", "/v1/models/m:predict", headers={"Origin": "http://x.y"})
    check_eq(st, 200, "CORS preflight with Origin")
    expect_rest(srv, "OPTIONS", "/v1/models/m:predict", None, 400,
                "Origin header is missing in CORS preflight", "CORS preflight without Origin")
    # Health and metrics.
    st, _, _ = srv.http("GET", "/healthz")
    check_eq(st, 200, "liveness")
    st, _, _ = srv.http("GET", "/readyz")
    check_eq(st, 200, "readiness")
    st, h, body = srv.http("GET", "/monitoring/prometheus/metrics")
    text = body.decode()
    check(st == 200 and h.get("content-type", "").startswith("text/plain"), "metrics endpoint")
    check(':tensorflow:serving:request_count{model_name="m",version="1",API="Predict",'
          'entrypoint="REST",status="OK"}' in text, "request count by model/version/API/status")
    check(":tensorflow:serving:request_latency_bucket{" in text, "latency histogram")
    runs = [line for line in text.splitlines() if line.startswith(
        ':tensorflow:serving:runtime_latency_count{model_name="m",API="Predict",runtime="veil"} ')]
    check(len(runs) == 1 and int(runs[0].split()[-1]) > 0, "model run time histogram: %r" % runs)
    check(':veil:serving:model_version_state{model_name="m",version="1",state="AVAILABLE"} 1'
          in text, "model load state")


def grpc_api(srv, P):
    import numpy as np
    print("gRPC:")
    ch = srv.channel()
    ps = P.ps.PredictionServiceStub(ch)
    ms = P.ms.ModelServiceStub(ch)
    x = [[1, 2, 3], [4, 5, 6]]
    r = ps.Predict(predict_req(P, "m", x), timeout=10)
    out = r.outputs["output"]
    check_eq(list(out.float_val), [3.0, 5.0, 7.0, 9.0, 11.0, 13.0], "Predict with tensor_content")
    check_eq([d.size for d in out.tensor_shape.dim], [2, 3], "output shape")
    check_eq(out.dtype, P.types.DT_FLOAT, "output dtype")
    check_eq((r.model_spec.name, r.model_spec.version.value, r.model_spec.signature_name),
             ("m", 1, "serving_default"), "response model_spec")
    r = ps.Predict(predict_req(P, "m", x, content=False), timeout=10)
    check_eq(list(r.outputs["output"].float_val), [3.0, 5.0, 7.0, 9.0, 11.0, 13.0],
             "Predict with float_val")
    req = predict_req(P, "m", None)
    t = req.inputs["input"]
    t.dtype = P.types.DT_FLOAT
    t.tensor_shape.dim.add().size = 2
    t.tensor_shape.dim.add().size = 3
    t.float_val.extend([1.0, 2.0])
    r = ps.Predict(req, timeout=10)
    check_eq(list(r.outputs["output"].float_val), [3.0, 5.0, 5.0, 5.0, 5.0, 5.0],
             "typed values broadcast the last value")
    r = ps.Predict(predict_req(P, "m", x, version=1), timeout=10)
    check_eq(r.model_spec.version.value, 1, "Predict version 1")
    r = ps.Predict(predict_req(P, "m", x), timeout=10, compression=P.grpc.Compression.Gzip)
    check_eq(list(r.outputs["output"].float_val)[:3], [3.0, 5.0, 7.0], "gzip-compressed request")
    req = predict_req(P, "two", [[1, 2]], name="a")
    req.inputs["b"].CopyFrom(predict_req(P, "two", [[3, 4]], name="b").inputs["b"])
    req.output_filter.append("prod")
    r = ps.Predict(req, timeout=10)
    check_eq((sorted(r.outputs.keys()), list(r.outputs["prod"].float_val)), (["prod"], [3.0, 8.0]),
             "output_filter")
    # Over gRPC's 4 MiB default: TF Serving accepts up to INT32_MAX.
    big = np.ones((400000, 3), dtype=np.float32)
    ch2 = srv.channel(options=[("grpc.max_send_message_length", 64 << 20),
                               ("grpc.max_receive_message_length", 64 << 20)])
    r = P.ps.PredictionServiceStub(ch2).Predict(predict_req(P, "m", big), timeout=60)
    check_eq((len(r.outputs["output"].float_val), r.outputs["output"].float_val[-1]),
             (1200000, 3.0), "4.8 MB request and response")
    ch2.close()

    expect_grpc(lambda: ps.Predict(predict_req(P, "nope", x), timeout=10), "NOT_FOUND",
                "Servable not found for request: Latest(nope)", "unknown model")
    expect_grpc(lambda: ps.Predict(predict_req(P, "m", x, version=5), timeout=10), "NOT_FOUND",
                "Servable not found for request: Specific(m, 5)", "unknown version")
    expect_grpc(lambda: ps.Predict(predict_req(P, "", x), timeout=10), "INVALID_ARGUMENT",
                "ModelSpec has no name specified.", "empty model name")
    expect_grpc(lambda: ps.Predict(predict_req(P, "m", x, label="zz"), timeout=10),
                "INVALID_ARGUMENT", "Unrecognized servable version label: zz", "unknown label")
    expect_grpc(lambda: ps.Predict(predict_req(P, "m", x, sig="other"), timeout=10),
                "FAILED_PRECONDITION", 'Serving signature key "other" not found.',
                "unknown signature")
    expect_grpc(lambda: ps.Predict(predict_req(P, "m", x, name="wrong"), timeout=10),
                "INVALID_ARGUMENT", "input tensor alias not found in signature: wrong",
                "unknown input alias")
    req = predict_req(P, "m", x)
    req.inputs["extra"].CopyFrom(req.inputs["input"])
    expect_grpc(lambda: ps.Predict(req, timeout=10), "INVALID_ARGUMENT",
                "input size does not match signature: 2!=1", "extra input")
    expect_grpc(lambda: ps.Predict(predict_req(P, "m", x, dtype=P.types.DT_INT32), timeout=10),
                "INVALID_ARGUMENT", "to be float but int32 is provided", "wrong dtype")
    req = predict_req(P, "m", x)
    req.inputs["input"].tensor_content = b"\0" * 7
    expect_grpc(lambda: ps.Predict(req, timeout=10), "INVALID_ARGUMENT",
                "tensor parsing error: input", "tensor_content of the wrong size")
    expect_grpc(lambda: ps.Predict(predict_req(P, "m", [[1, 2]]), timeout=10), "INVALID_ARGUMENT",
                "expected shape", "wrong shape")
    req = predict_req(P, "m", x)
    req.inputs["input"].tensor_shape.dim[0].size = -1
    expect_grpc(lambda: ps.Predict(req, timeout=10), "INVALID_ARGUMENT", "tensor parsing error",
                "negative dim")
    req = predict_req(P, "m", x)
    req.inputs["input"].dtype = 77
    expect_grpc(lambda: ps.Predict(req, timeout=10), "INVALID_ARGUMENT", None, "unknown dtype")
    req = predict_req(P, "m", x)
    req.output_filter.append("nope")
    expect_grpc(lambda: ps.Predict(req, timeout=10), "INVALID_ARGUMENT",
                "output tensor alias not found in signature: nope", "bad output_filter")
    req = predict_req(P, "m", x)
    req.output_filter.extend(["output", "output"])
    expect_grpc(lambda: ps.Predict(req, timeout=10), "INVALID_ARGUMENT",
                "duplicate output tensor alias: output", "duplicate output_filter")

    mreq = P.meta.GetModelMetadataRequest()
    mreq.model_spec.name = "m"
    mreq.metadata_field.append("signature_def")
    r = ps.GetModelMetadata(mreq, timeout=10)
    check_eq((r.model_spec.name, r.model_spec.version.value), ("m", 1), "metadata model_spec")
    any_ = r.metadata["signature_def"]
    check_eq(any_.type_url, "type.googleapis.com/tensorflow.serving.SignatureDefMap",
             "metadata Any type")
    sdm = P.meta.SignatureDefMap()
    any_.Unpack(sdm)
    sd = sdm.signature_def["serving_default"]
    check_eq((sd.inputs["input"].dtype, [d.size for d in sd.inputs["input"].tensor_shape.dim],
              sd.method_name), (P.types.DT_FLOAT, [-1, 3], "tensorflow/serving/predict"),
             "SignatureDef contents")
    expect_grpc(lambda: ps.GetModelMetadata(P.meta.GetModelMetadataRequest(), timeout=10),
                "INVALID_ARGUMENT", "Missing ModelSpec", "metadata without model_spec")
    mreq2 = P.meta.GetModelMetadataRequest()
    mreq2.model_spec.name = "m"
    expect_grpc(lambda: ps.GetModelMetadata(mreq2, timeout=10), "INVALID_ARGUMENT",
                "GetModelMetadataRequest must specify at least one metadata_field",
                "metadata without fields")
    mreq2.metadata_field.append("graph")
    expect_grpc(lambda: ps.GetModelMetadata(mreq2, timeout=10), "INVALID_ARGUMENT",
                "Metadata field graph is not supported", "unsupported metadata field")
    mreq.model_spec.name = "nope"
    expect_grpc(lambda: ps.GetModelMetadata(mreq, timeout=10), "NOT_FOUND",
                "Servable not found", "metadata of unknown model")

    sreq = P.status.GetModelStatusRequest()
    sreq.model_spec.name = "m"
    r = ms.GetModelStatus(sreq, timeout=10)
    check_eq([(v.version, v.state, v.status.error_code) for v in r.model_version_status],
             [(1, P.status.ModelVersionStatus.AVAILABLE, 0)], "GetModelStatus")
    sreq.model_spec.version.value = 3
    expect_grpc(lambda: ms.GetModelStatus(sreq, timeout=10), "NOT_FOUND",
                "Could not find version 3 of model m", "status of unknown version")
    sreq = P.status.GetModelStatusRequest()
    sreq.model_spec.name = "nope"
    expect_grpc(lambda: ms.GetModelStatus(sreq, timeout=10), "NOT_FOUND",
                "Could not find any versions of model nope", "status of unknown model")
    creq = P.cls.ClassificationRequest()
    creq.model_spec.name = "m"
    expect_grpc(lambda: ps.Classify(creq, timeout=10), "UNIMPLEMENTED", None, "Classify")
    rreq = P.reg.RegressionRequest()
    rreq.model_spec.name = "m"
    expect_grpc(lambda: ps.Regress(rreq, timeout=10), "UNIMPLEMENTED", None, "Regress")
    unknown = ch.unary_unary("/tensorflow.serving.PredictionService/Nope",
                             request_serializer=lambda b: b, response_deserializer=lambda b: b)
    expect_grpc(lambda: unknown(b"", timeout=10), "UNIMPLEMENTED", None, "unknown method")
    health = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=lambda b: b,
                            response_deserializer=lambda b: b)
    check_eq(grpc_code(lambda: health(b"", timeout=10)), ("OK", b"\x08\x01"),
             "grpc.health.v1 Check: SERVING")
    svc = b"tensorflow.serving.PredictionService"
    check_eq(grpc_code(lambda: health(b"\x0a" + bytes([len(svc)]) + svc, timeout=10)),
             ("OK", b"\x08\x01"), "health of PredictionService: SERVING")
    expect_grpc(lambda: health(b"\x0a\x03abc", timeout=10), "NOT_FOUND", None,
                "health of an unknown service")
    garbage = ch.unary_unary("/tensorflow.serving.PredictionService/Predict",
                             request_serializer=lambda b: b, response_deserializer=lambda b: b)
    expect_grpc(lambda: garbage(b"\xff\xff\xff", timeout=10), "INVALID_ARGUMENT", None,
                "undecodable PredictRequest")
    ch.close()


def keepalive_timing(srv):
    """20 predicts on one keep-alive connection, each request sent in one write: a reply split
    by Nagle's algorithm would stall ~40 ms each (delayed ACK)."""
    body = json.dumps({"instances": [[1, 2, 3]]}).encode()
    req = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
           % len(body)) + body
    s = socket.create_connection(("127.0.0.1", srv.rest_port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    codes = []
    buf = b""
    for _ in range(20):
        t0 = time.time()
        s.sendall(req)
        while True:
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if sep:
                clen = [int(h.split(b":")[1]) for h in head.split(b"\r\n")
                        if h.lower().startswith(b"content-length:")][0]
                if len(rest) >= clen:
                    codes.append((head.split(b"\r\n")[0], rest[:clen]))
                    buf = rest[clen:]
                    break
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        times.append(time.time() - t0)
    s.close()
    check_eq(codes, [(b"HTTP/1.1 200 OK", b'{"predictions": [[3.0,5.0,7.0]]}')] * 20,
             "20 keep-alive replies")
    times.sort()
    print("  keep-alive predict: median %.2f ms, max %.2f ms" % (times[10] * 1e3, times[-1] * 1e3))
    check(times[10] < 0.030, "keep-alive replies are not delayed by Nagle (median %.1f ms)"
          % (times[10] * 1e3))


def curl_api(srv):
    print("curl:")
    base = "http://127.0.0.1:%d" % srv.rest_port
    rc, code, body = curl(base + "/v1/models/m")
    check(rc == 0 and code == 200 and b'"AVAILABLE"' in body, "curl status")
    rc, code, body = curl("-d", '{"instances": [[1,2,3]]}', base + "/v1/models/m:predict")
    check(rc == 0 and code == 200 and json.loads(body) == {"predictions": [[3.0, 5.0, 7.0]]},
          "curl predict")
    rc, code, body = curl("-d", '{"instances": [[1,2,3]]}', base + "/v1/models/zz:predict")
    check(rc == 0 and code == 404 and json.loads(body)["error"].startswith("Servable not found"),
          "curl unknown model")


# ---------------------------------------------------------------------------------------------

def suite_tls(work):
    P = pb()
    certs = make_certs(os.path.join(work, "certs"))
    base = os.path.join(work, "models")
    make_affine(os.path.join(base, "m", "1", "model.onnx"), 2.0, 1.0)
    mp = ["--model_name=m", "--model_base_path=" + os.path.join(base, "m")]
    x = [[1, 2, 3]]

    print("one-way TLS:")
    srv = Server(args.veil, work, mp + ["--tls_cert=" + certs["server.pem"],
                                        "--tls_key=" + certs["server.key"]], "tls1",
                 tls={"ca": certs["ca.pem"]})
    try:
        ps = P.ps.PredictionServiceStub(srv.channel())
        r = ps.Predict(predict_req(P, "m", x), timeout=10)
        check_eq(list(r.outputs["output"].float_val), [3.0, 5.0, 7.0], "gRPC over TLS")
        st, js = srv.rest_json("POST", "/v1/models/m:predict", {"instances": x})
        check_eq((st, js), (200, {"predictions": [[3.0, 5.0, 7.0]]}), "REST over TLS")
        url = "https://localhost:%d/v1/models/m:predict" % srv.rest_port
        rc, code, body = curl("--cacert", certs["ca.pem"], "-d", '{"instances": [[1,2,3]]}', url)
        check(rc == 0 and code == 200, "curl over TLS (rc %d, code %d)" % (rc, code))
        for v in ("--tlsv1.2", "--tlsv1.3"):
            rc, code, _ = curl("--cacert", certs["ca.pem"], v, "--tls-max", v[6:],
                               "https://localhost:%d/v1/models/m" % srv.rest_port)
            check(rc == 0 and code == 200, "curl %s (rc %d)" % (v, rc))
        rc, code, _ = curl("http://127.0.0.1:%d/v1/models/m" % srv.rest_port)
        check(rc != 0 or code != 200, "plain HTTP to the TLS port fails")
        plain = P.ps.PredictionServiceStub(P.grpc.insecure_channel(
            "127.0.0.1:%d" % srv.grpc_port))
        expect_grpc(lambda: plain.Predict(predict_req(P, "m", x), timeout=5), "UNAVAILABLE", None,
                    "plaintext gRPC client on the TLS port")
    finally:
        srv.stop()

    print("mutual TLS:")
    srv = Server(args.veil, work, mp + ["--tls_cert=" + certs["server.pem"],
                                        "--tls_key=" + certs["server.key"],
                                        "--tls_client_ca=" + certs["ca.pem"]], "mtls",
                 tls={"ca": certs["ca.pem"], "cert": certs["client.pem"],
                      "key": certs["client.key"]})
    try:
        mtls_checks(srv, P, certs, x)
    finally:
        srv.stop()

    print("--ssl_config_file (mutual TLS):")
    def pem(p):
        with open(p) as f:
            return f.read().replace("\n", "\\n")
    cfg = os.path.join(work, "ssl.config")
    with open(cfg, "w") as f:
        f.write('server_key: "%s"\nserver_cert: "%s"\ncustom_ca: "%s"\nclient_verify: true\n' %
                (pem(certs["server.key"]), pem(certs["server.pem"]), pem(certs["ca.pem"])))
    srv = Server(args.veil, work, mp + ["--ssl_config_file=" + cfg], "sslcfg",
                 tls={"ca": certs["ca.pem"], "cert": certs["client.pem"],
                      "key": certs["client.key"]})
    try:
        mtls_checks(srv, P, certs, x)
    finally:
        srv.stop()

    print("startup refusals:")
    for extra, msg in (([], "no TLS identity"),
                       (["--tls_cert=" + certs["server.pem"], "--tls_key=" + certs["client.key"]],
                        "does not match"),
                       (["--batching_parameters_file=/x"], "requires --enable_batching")):
        port = str(__import__("serve_common").free_port())
        r = subprocess.run([args.veil, "serve", "--host=127.0.0.1", "--port=" + port,
                            "--rest_api_port=0"] + mp + extra, capture_output=True, text=True,
                           timeout=30)
        check(r.returncode != 0 and msg in r.stderr and "Failed to start server" in r.stderr,
              "refuses to start (%s): %r" % (msg, r.stderr.strip()[-200:]))


def mtls_checks(srv, P, certs, x):
    ps = P.ps.PredictionServiceStub(srv.channel())
    r = ps.Predict(predict_req(P, "m", x), timeout=10)
    check_eq(list(r.outputs["output"].float_val), [3.0, 5.0, 7.0], "gRPC with a client cert")
    nocert = P.ps.PredictionServiceStub(srv.channel(client_cert=False))
    expect_grpc(lambda: nocert.Predict(predict_req(P, "m", x), timeout=5), "UNAVAILABLE", None,
                "gRPC without a client cert is refused")
    url = "https://localhost:%d/v1/models/m:predict" % srv.rest_port
    rc, code, body = curl("--cacert", certs["ca.pem"], "--cert", certs["client.pem"], "--key",
                          certs["client.key"], "-d", '{"instances": [[1,2,3]]}', url)
    check(rc == 0 and code == 200 and json.loads(body) == {"predictions": [[3.0, 5.0, 7.0]]},
          "curl with a client cert")
    rc, code, _ = curl("--cacert", certs["ca.pem"], "-d", '{"instances": [[1,2,3]]}', url)
    check(rc != 0 and code == 0, "curl without a client cert is refused (rc %d)" % rc)
    rc, code, _ = curl("--cacert", certs["ca.pem"], "--cert", certs["rogue.pem"], "--key",
                       certs["rogue.key"], url)
    check(rc != 0 and code == 0, "curl with an untrusted client cert is refused (rc %d)" % rc)


# ---------------------------------------------------------------------------------------------

def suite_config(work):
    """--model_config_file with version policies and labels; failed versions in status."""
    P = pb()
    base = os.path.join(work, "models")
    for v, mul in ((1, 1.0), (2, 2.0), (3, 3.0)):
        make_affine(os.path.join(base, "all", str(v), "model.onnx"), mul, 0.0)
        make_affine(os.path.join(base, "spec", str(v), "model.onnx"), mul, 0.0)
        make_affine(os.path.join(base, "lat", str(v), "model.onnx"), mul, 0.0)
    os.makedirs(os.path.join(base, "lat", "00000004"))
    make_affine(os.path.join(base, "lat", "00000004", "model.onnx"), 4.0, 0.0)
    os.makedirs(os.path.join(base, "bad", "1"))
    with open(os.path.join(base, "bad", "1", "model.onnx"), "wb") as f:
        f.write(b"this is not an onnx model")
    make_affine(os.path.join(base, "mixed", "1", "model.onnx"), 1.0, 0.0)
    os.makedirs(os.path.join(base, "mixed", "2"))
    with open(os.path.join(base, "mixed", "2", "model.onnx"), "wb") as f:
        f.write(b"\x08\x01garbage")
    os.makedirs(os.path.join(base, "mixed", "not_a_version"))
    cfg = os.path.join(work, "models.config")
    with open(cfg, "w") as f:
        f.write("""model_config_list {
  config { name: "all" base_path: "%(b)s/all" model_platform: "tensorflow"
           model_version_policy { all {} } }
  config { name: "spec" base_path: "%(b)s/spec" model_platform: "tensorflow"
           model_version_policy { specific { versions: 1 versions: 3 } }
           version_labels { key: "stable" value: 1 }
           version_labels { key: "canary" value: 3 } }
  config { name: "lat" base_path: "%(b)s/lat" model_platform: "tensorflow"
           model_version_policy { latest { num_versions: 2 } } }
  config { name: "bad" base_path: "%(b)s/bad" model_platform: "tensorflow" }
  config { name: "mixed" base_path: "%(b)s/mixed" model_platform: "tensorflow"
           model_version_policy: { all: {} } }
}
""" % {"b": base})
    srv = Server(args.veil, work, ["--model_config_file=" + cfg, "--plaintext",
                                   "--enable_grpc_healthcheck_service"], "config",
                 wait_ready=False)
    try:
        # "bad" never becomes available, so readiness stays off: wait on the others.
        end = time.time() + 30
        while time.time() < end:
            st, js = srv.rest_json("GET", "/v1/models/mixed")
            if st == 200 and len(js["model_version_status"]) == 2 and all(
                    v["state"] in ("AVAILABLE", "END") for v in js["model_version_status"]):
                break
            time.sleep(0.1)

        def versions(name):
            st, js = srv.rest_json("GET", "/v1/models/" + name)
            return sorted((int(v["version"]), v["state"]) for v in js["model_version_status"])
        check_eq(versions("all"), [(1, "AVAILABLE"), (2, "AVAILABLE"), (3, "AVAILABLE")],
                 "all-versions policy")
        check_eq(versions("spec"), [(1, "AVAILABLE"), (3, "AVAILABLE")], "specific policy")
        check_eq(versions("lat"), [(3, "AVAILABLE"), (4, "AVAILABLE")],
                 "latest-2 policy (00000004 is version 4)")

        def pred(path):
            st, js = srv.rest_json("POST", path, {"instances": [[1, 1, 1]]})
            return st, js.get("predictions", js) if isinstance(js, dict) else js
        check_eq(pred("/v1/models/all:predict"), (200, [[3.0, 3.0, 3.0]]), "latest of all")
        check_eq(pred("/v1/models/all/versions/2:predict"), (200, [[2.0, 2.0, 2.0]]),
                 "specific version")
        check_eq(pred("/v1/models/spec/labels/stable:predict"), (200, [[1.0, 1.0, 1.0]]),
                 "label stable")
        check_eq(pred("/v1/models/spec/labels/canary:predict"), (200, [[3.0, 3.0, 3.0]]),
                 "label canary")
        expect_rest(srv, "POST", "/v1/models/spec/versions/2:predict", {"instances": [[1, 1, 1]]},
                    404, "Specific(spec, 2)", "version outside the policy")
        ps = P.ps.PredictionServiceStub(srv.channel())
        r = ps.Predict(predict_req(P, "spec", [[1, 1, 1]], label="canary"), timeout=10)
        check_eq((r.model_spec.version.value, list(r.outputs["output"].float_val)),
                 (3, [3.0, 3.0, 3.0]), "gRPC version_label")
        st, js = srv.rest_json("GET", "/v1/models/spec/labels/stable")
        check_eq((st, len(js["model_version_status"])), (200, 2), "status with a label")
        st, js = srv.rest_json("GET", "/v1/models/bad")
        vs = js["model_version_status"]
        check(st == 200 and len(vs) == 1 and vs[0]["state"] == "END" and
              vs[0]["status"]["error_code"] != "OK" and vs[0]["status"]["error_message"] != "",
              "failed load reported as END with its error: %r" % vs)
        check_eq(versions("mixed"), [(1, "AVAILABLE"), (2, "END")],
                 "a failed version beside a good one")
        check_eq(pred("/v1/models/mixed:predict"), (200, [[1.0, 1.0, 1.0]]),
                 "the good version keeps serving")
        expect_rest(srv, "POST", "/v1/models/bad:predict", {"instances": [[1, 1, 1]]}, 404,
                    "Latest(bad)", "model without an available version")
        st, _, _ = srv.http("GET", "/readyz")
        check_eq(st, 503, "not ready while a model has no available version")
        health = srv.channel().unary_unary("/grpc.health.v1.Health/Check",
                                           request_serializer=lambda b: b,
                                           response_deserializer=lambda b: b)
        check_eq(grpc_code(lambda: health(b"", timeout=10)), ("OK", b"\x08\x02"),
                 "grpc health NOT_SERVING while not ready")
    finally:
        srv.stop()
    print("config reload:")
    live = os.path.join(work, "live.config")
    with open(live, "w") as f:
        f.write('model_config_list { config { name: "x" base_path: "%s/all" } }' % base)
    srv = Server(args.veil, work, ["--model_config_file=" + live, "--plaintext",
                                   "--model_config_file_poll_wait_seconds=1"], "reloadcfg")
    try:
        st, _ = srv.rest_json("POST", "/v1/models/x:predict", {"instances": [[1, 1, 1]]})
        check_eq(st, 200, "model x served")
        with open(live + ".tmp", "w") as f:
            f.write('model_config_list { config { name: "y" base_path: "%s/spec" '
                    'model_version_policy { specific { versions: 1 } } } }' % base)
        os.rename(live + ".tmp", live)
        end = time.time() + 20
        while time.time() < end:
            st_y, _ = srv.rest_json("POST", "/v1/models/y:predict", {"instances": [[1, 1, 1]]})
            st_x, _ = srv.rest_json("POST", "/v1/models/x:predict", {"instances": [[1, 1, 1]]})
            if st_y == 200 and st_x == 404:
                break
            time.sleep(0.1)
        check_eq((st_x, st_y), (404, 200), "after reload: x removed, y added")
        with open(live + ".tmp", "w") as f:
            f.write("model_config_list { config { name: ")
        os.rename(live + ".tmp", live)
        time.sleep(2.5)
        st_y, _ = srv.rest_json("POST", "/v1/models/y:predict", {"instances": [[1, 1, 1]]})
        check_eq(st_y, 200, "a broken config file keeps the current models")
        check("not reloaded, keeping the current models" in srv.read_log(), "reload error logged")
    finally:
        srv.stop()
    print("config file errors:")
    bad = os.path.join(work, "bad.config")
    for text, msg in (('model_config_list { config { name: "x" base_path: "/x" typo: 1 } }',
                       "unknown field 'typo'"),
                      ('model_config_list { config { name: "x" } }', "without a base_path"),
                      ('model_config_list { config { name: "x" base_path: "/x" ', "missing"),
                      ('model_config_list { config { name: "x" base_path: "/x" } '
                       'config { name: "x" base_path: "/y" } }', "configured twice")):
        with open(bad, "w") as f:
            f.write(text)
        r = subprocess.run([args.veil, "serve", "--host=127.0.0.1", "--port=0",
                            "--rest_api_port=%d" % __import__("serve_common").free_port(),
                            "--plaintext", "--model_config_file=" + bad],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and msg in r.stderr, "config error %r: %r" % (msg, r.stderr[-200:]))


# ---------------------------------------------------------------------------------------------

def suite_reload(work):
    """Versions appear and disappear under load: zero failed requests, without and with
    batching (where the last request of an unloaded version finishes on a batch thread)."""
    for batching in (False, True):
        print("reload, batching %s:" % ("on" if batching else "off"))
        reload_once(work, batching)


def reload_once(work, batching):
    P = pb()
    tag = "b" if batching else "p"
    base = os.path.join(work, "models" + tag, "m")
    make_affine(os.path.join(base, "1", "model.onnx"), 1.0, 0.0)
    extra = ["--enable_batching"] if batching else []
    srv = Server(args.veil, work, ["--model_name=m", "--model_base_path=" + base, "--plaintext",
                                   "--file_system_poll_wait_seconds=1"] + extra, "reload" + tag)
    stop = threading.Event()
    stats = {"ok": 0, "fail": [], "seen": set()}
    lock = threading.Lock()

    def rest_client():
        while not stop.is_set():
            try:
                st, js = srv.rest_json("POST", "/v1/models/m:predict", {"instances": [[1, 1, 1]]})
                with lock:
                    if st == 200:
                        stats["ok"] += 1
                        stats["seen"].add(js["predictions"][0][0])
                    else:
                        stats["fail"].append((st, js))
            except Exception as e:  # noqa: BLE001
                with lock:
                    stats["fail"].append(repr(e))

    def grpc_client():
        ps = P.ps.PredictionServiceStub(srv.channel())
        while not stop.is_set():
            code, r = grpc_code(lambda: ps.Predict(predict_req(P, "m", [[1, 1, 1]]), timeout=10))
            with lock:
                if code == "OK":
                    stats["ok"] += 1
                    stats["seen"].add(r.outputs["output"].float_val[0])
                else:
                    stats["fail"].append((code, r))

    def wait_versions(want, what):
        end = time.time() + 20
        got = None
        while time.time() < end:
            st, js = srv.rest_json("GET", "/v1/models/m")
            got = sorted((int(v["version"]), v["state"]) for v in js["model_version_status"])
            if [v for v in got if v[1] == "AVAILABLE"] == want:
                break
            time.sleep(0.1)
        check_eq([v for v in got if v[1] == "AVAILABLE"], want, what)

    threads = [threading.Thread(target=rest_client) for _ in range(2)] + \
              [threading.Thread(target=grpc_client) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        tmp = os.path.join(work, "v2tmp" + tag)
        make_affine(os.path.join(tmp, "model.onnx"), 2.0, 0.0)
        os.rename(tmp, os.path.join(base, "2"))
        wait_versions([(2, "AVAILABLE")], "version 2 replaced version 1")
        time.sleep(0.5)
        shutil.rmtree(os.path.join(base, "2"))
        wait_versions([(1, "AVAILABLE")], "removing version 2 brings version 1 back")
        time.sleep(0.5)
        tmp = os.path.join(work, "v3tmp" + tag)
        os.makedirs(tmp)
        with open(os.path.join(tmp, "model.onnx"), "wb") as f:
            f.write(b"broken")
        os.rename(tmp, os.path.join(base, "3"))
        end = time.time() + 20
        while time.time() < end:
            st, js = srv.rest_json("GET", "/v1/models/m/versions/3")
            if st == 200 and js["model_version_status"][0]["state"] == "END":
                break
            time.sleep(0.1)
        check_eq(js["model_version_status"][0]["state"], "END", "broken version 3 is END")
        wait_versions([(1, "AVAILABLE")], "version 1 keeps serving beside a broken version 3")
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        srv.stop()
    print("  %d requests, %d failed, outputs seen %s" % (stats["ok"], len(stats["fail"]),
                                                        sorted(stats["seen"])))
    check(stats["ok"] > 50, "clients kept sending")
    check_eq(stats["fail"][:5], [], "zero failed requests during reloads")
    check_eq(sorted(stats["seen"]), [1.0, 2.0], "both versions served")


# ---------------------------------------------------------------------------------------------

def suite_batching(work):
    P = pb()
    base = os.path.join(work, "models", "m")
    make_affine(os.path.join(base, "1", "model.onnx"), 2.0, 1.0)
    bp = os.path.join(work, "batching.config")
    with open(bp, "w") as f:
        f.write("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 5000 }\n"
                "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 2 }\n"
                "allowed_batch_sizes: 4\nallowed_batch_sizes: 8\n")
    srv = Server(args.veil, work, ["--model_name=m", "--model_base_path=" + base, "--plaintext",
                                   "--enable_batching", "--batching_parameters_file=" + bp],
                 "batching")
    bad = []
    try:
        ps = P.ps.PredictionServiceStub(srv.channel())

        def worker(i):
            for k in range(20):
                v = float(i * 100 + k)
                rows = 1 + (k % 3)
                x = [[v, v + 1, v + 2]] * rows
                code, r = grpc_code(lambda: ps.Predict(predict_req(P, "m", x), timeout=20))
                want = [2 * v + 1, 2 * v + 3, 2 * v + 5] * rows
                if code != "OK" or list(r.outputs["output"].float_val) != want or \
                        [d.size for d in r.outputs["output"].tensor_shape.dim] != [rows, 3]:
                    bad.append((i, k, code, r))
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=120)
        check_eq(bad[:3], [], "every batched client gets exactly its own rows")
        st, js = srv.rest_json("POST", "/v1/models/m:predict", {"instances": [[1, 2, 3]]})
        check_eq((st, js), (200, {"predictions": [[3.0, 5.0, 7.0]]}), "REST through the batcher")
        expect_grpc(lambda: ps.Predict(predict_req(P, "m", [[1, 2, 3]] * 9), timeout=10),
                    "INVALID_ARGUMENT", "larger than maximum input batch size 8",
                    "request larger than max_batch_size")
        st, _, body = srv.http("GET", "/monitoring/prometheus/metrics")
        text = body.decode()
        sizes = [line for line in text.splitlines()
                 if line.startswith(":tensorflow:serving:batching_session:processed_batch_size_"
                                    "count{model_name=\"m\"}")]
        check(len(sizes) == 1 and int(sizes[0].split()[-1]) > 0, "batch size histogram: %r" % sizes)
    finally:
        srv.stop()

    print("queue bound:")
    with open(bp, "w") as f:
        f.write("max_batch_size { value: 1 }\nbatch_timeout_micros { value: 0 }\n"
                "max_enqueued_batches { value: 1 }\nnum_batch_threads { value: 1 }\n")
    big = os.path.join(work, "models", "big")
    # Each run takes many milliseconds, far longer than a client needs to send a request.
    make_slow(os.path.join(big, "1", "model.onnx"), 200000, 60)
    srv = Server(args.veil, work, ["--model_name=big", "--model_base_path=" + big, "--plaintext",
                                   "--enable_batching", "--batching_parameters_file=" + bp,
                                   "--request_threads=16"], "queue")
    try:
        import numpy as np
        ps = P.ps.PredictionServiceStub(srv.channel(options=[
            ("grpc.max_receive_message_length", 64 << 20)]))
        x = np.ones((1, 200000), dtype=np.float32)
        codes = []

        def w():
            for _ in range(6):
                code, r = grpc_code(lambda: ps.Predict(predict_req(P, "big", x), timeout=60))
                if code == "OK":
                    code = "OK" if r.outputs["output"].float_val[7] == 3.0 else "WRONG"
                codes.append((code, r if code not in ("OK", "WRONG") else None))
        ts = [threading.Thread(target=w) for _ in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=120)
        names = sorted(set(c for c, _ in codes))
        print("  outcomes: %s" % {c: sum(1 for x, _ in codes if x == c) for c in names})
        check(set(names) <= {"OK", "UNAVAILABLE"}, "only OK or UNAVAILABLE under overload")
        full = [d for c, d in codes if c == "UNAVAILABLE"]
        check(all("queue" in d and "is full" in d for d in full), "queue-full message")
        check("UNAVAILABLE" in names, "a full queue answers UNAVAILABLE instead of growing")
    finally:
        srv.stop()


# ---------------------------------------------------------------------------------------------

def suite_robust(work):
    P = pb()
    base = os.path.join(work, "models", "m")
    make_affine(os.path.join(base, "1", "model.onnx"), 2.0, 1.0)
    srv = Server(args.veil, work, ["--model_name=m", "--model_base_path=" + base, "--plaintext",
                                   "--max_message_bytes=1000000"], "robust")
    try:
        ps = P.ps.PredictionServiceStub(srv.channel())

        def ok_now(what):
            code, r = grpc_code(lambda: ps.Predict(predict_req(P, "m", [[1, 2, 3]]), timeout=10))
            check(code == "OK" and list(r.outputs["output"].float_val) == [3.0, 5.0, 7.0],
                  "still serving after " + what)
            st, js = srv.rest_json("POST", "/v1/models/m:predict", {"instances": [[1, 2, 3]]})
            check_eq(st, 200, "REST still serving after " + what)

        for port in (srv.grpc_port, srv.rest_port):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(os.urandom(4096))
            s.close()
        ok_now("garbage bytes on both ports")
        stalled = []
        for port, data in ((srv.grpc_port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00"),
                           (srv.rest_port, b"POST /v1/models/m:predict HTTP/1.1\r\n"
                                           b"Content-Length: 1000\r\n\r\n{\"inst")):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(data)
            stalled.append(s)
        ok_now("clients stalled mid-request")
        for s in stalled:
            s.close()
        s = socket.create_connection(("127.0.0.1", srv.rest_port), timeout=5)
        body = json.dumps({"instances": [[1, 2, 3]] * 20000}).encode()
        s.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body)
        s.close()
        ok_now("a client that disconnects before its response")
        s = socket.create_connection(("127.0.0.1", srv.rest_port), timeout=5)
        s.sendall(b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 +
                  b"\r\n\r\n")
        resp = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                resp += chunk
        except OSError:
            pass
        s.close()
        check(not resp.startswith(b"HTTP/1.1 200"), "oversized headers are refused")
        ok_now("oversized headers")
        import numpy as np
        big = np.ones((100000, 3), dtype=np.float32)
        ch2 = srv.channel(options=[("grpc.max_send_message_length", 64 << 20)])
        expect_grpc(lambda: P.ps.PredictionServiceStub(ch2).Predict(predict_req(P, "m", big),
                                                                     timeout=20),
                    "RESOURCE_EXHAUSTED", None, "message over --max_message_bytes")
        ch2.close()
        ok_now("an oversized message")
        # Many connections at once, each with a request.
        res = []

        def one():
            c = srv.channel()
            code, _ = grpc_code(lambda: P.ps.PredictionServiceStub(c).Predict(
                predict_req(P, "m", [[1, 2, 3]]), timeout=20))
            res.append(code)
            c.close()
        ts = [threading.Thread(target=one) for _ in range(40)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=60)
        check_eq(sorted(set(res)), ["OK"], "40 concurrent connections")
        # A request in flight when SIGTERM arrives still completes.
        x = np.ones((300000, 3), dtype=np.float32)
        ch3 = srv.channel(options=[("grpc.max_receive_message_length", 64 << 20)])
        fut = P.ps.PredictionServiceStub(ch3).Predict.future(predict_req(P, "m", x[:80000]),
                                                             timeout=30)
        time.sleep(0.02)
    finally:
        srv.stop()
    code, r = grpc_code(lambda: fut.result())
    check(code in ("OK", "UNAVAILABLE"), "request around SIGTERM ends cleanly (%s)" % code)
    print("REST deadline:")
    srv = Server(args.veil, work, ["--model_name=m", "--model_base_path=" + base, "--plaintext",
                                   "--rest_api_timeout_in_ms=1"], "deadline")
    try:
        # Decoding 600k numbers takes longer than 1 ms: the deadline passes before the run.
        body = ("{\"instances\": [" + ",".join(["[1.5,2.5,3.5]"] * 200000) + "]}").encode()
        st, js = srv.rest_json("POST", "/v1/models/m:predict", body)
        check_eq((st, js), (504, {"error": "Deadline exceeded"}), "REST timeout -> 504")
        st, js = srv.rest_json("GET", "/v1/models/m")
        check_eq(st, 200, "status is not subject to the predict deadline")
    finally:
        srv.stop()


# ---------------------------------------------------------------------------------------------

def suite_sealed(work):
    """A sealed model.onnx.veil served with a key file; a wrong key is reported, not fatal."""
    d = os.path.join(work, "sealed")
    fresh_dir(d)
    plain = os.path.join(d, "plain.onnx")
    make_affine(plain, 2.0, 1.0)
    key = os.path.join(d, "model.key")
    other = os.path.join(d, "other.key")
    for k in (key, other):
        r = subprocess.run([args.veil, "keygen", "-o", k], capture_output=True, text=True,
                           timeout=30)
        if not check(r.returncode == 0, "keygen: " + r.stderr.strip()):
            return
    base = os.path.join(d, "models")
    out = os.path.join(base, "sm", "1")
    os.makedirs(out)
    r = subprocess.run([args.veil, "seal", plain, "--key", key, "--name", "sm", "--version", "1",
                        "-o", os.path.join(out, "model.onnx.veil")], capture_output=True,
                       text=True, timeout=60)
    if not check(r.returncode == 0, "seal: " + r.stderr.strip()):
        return
    # Version 2 sealed for another name must be refused (a swapped file).
    out2 = os.path.join(base, "sm", "2")
    os.makedirs(out2)
    r = subprocess.run([args.veil, "seal", plain, "--key", key, "--name", "other", "--version",
                        "2", "-o", os.path.join(out2, "model.onnx.veil")], capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == 0, "seal v2")
    cfg = os.path.join(d, "models.config")
    with open(cfg, "w") as f:
        f.write('model_config_list { config { name: "sm" base_path: "%s" '
                'model_platform: "tensorflow" model_version_policy { all {} } } }\n'
                % os.path.join(base, "sm"))
    srv = Server(args.veil, work, ["--model_config_file=" + cfg, "--plaintext", "--key=" + key],
                 "sealed")
    try:
        st, js = srv.rest_json("POST", "/v1/models/sm:predict", {"instances": [[1, 2, 3]]})
        check_eq((st, js), (200, {"predictions": [[3.0, 5.0, 7.0]]}), "sealed model predicts")
        st, js = srv.rest_json("GET", "/v1/models/sm")
        vs = {v["version"]: v for v in js["model_version_status"]}
        check(vs.get("2", {}).get("state") == "END" and vs["2"]["status"]["error_code"] != "OK",
              "a sealed file for another model name is refused: %r" % vs.get("2"))
        check(vs.get("1", {}).get("state") == "AVAILABLE", "version 1 stays available")
    finally:
        srv.stop()
    srv = Server(args.veil, work, ["--model_config_file=" + cfg, "--plaintext", "--key=" + other],
                 "sealed_wrongkey",
                 wait_ready=False)
    try:
        end = time.time() + 30
        vs = []
        while time.time() < end:
            st, js = srv.rest_json("GET", "/v1/models/sm")
            if st == 200:
                vs = js["model_version_status"]
                if all(v["state"] == "END" for v in vs):
                    break
            time.sleep(0.1)
        check(len(vs) >= 1 and all(v["state"] == "END" and v["status"]["error_message"]
                                   for v in vs), "wrong key: versions END with an error: %r" % vs)
    finally:
        srv.stop()


# ---------------------------------------------------------------------------------------------

def cnn_setup(work):
    """ResNet-18 exported by torch into --models, and ONNX Runtime's logits for a pool of six
    images (one batch of six: a row of the answer depends only on its own image). Exits 77
    (skip) without torch or onnxruntime-node."""
    import numpy as np
    here = os.path.dirname(os.path.abspath(__file__))
    eng = os.path.join(here, "..", "engine")
    r = subprocess.run(["/usr/bin/python3", os.path.join(eng, "export_models.py"), args.models,
                        "resnet18"], capture_output=True, text=True, timeout=600)
    if r.returncode == 77:
        print("SKIP: " + r.stdout.strip())
        sys.exit(77)
    if r.returncode != 0:
        raise RuntimeError("ResNet-18 export failed: " + r.stdout + r.stderr)
    onnx_path = os.path.join(args.models, "resnet18.onnx")
    pool = np.random.default_rng(7).standard_normal((6, 3, 224, 224)).astype(np.float32)
    np.save(os.path.join(work, "pool.npy"), pool)
    ort_dir = fresh_dir(os.path.join(work, "ort"))
    r = subprocess.run(["node", os.path.join(eng, "ort_run.js"), "run", onnx_path, ort_dir, "2",
                        "input=" + os.path.join(work, "pool.npy")],
                       capture_output=True, text=True, timeout=300)
    if r.returncode == 77:
        print("SKIP: onnxruntime-node is not installed (cd tests/peers && npm install)")
        sys.exit(77)
    if r.returncode != 0:
        raise RuntimeError("onnxruntime failed: " + r.stderr)
    ref = np.load(os.path.join(ort_dir, "logits.npy"))
    base = os.path.join(work, "models", "resnet18")
    os.makedirs(os.path.join(base, "1"), exist_ok=True)
    shutil.copy(onnx_path, os.path.join(base, "1", "model.onnx"))
    return base, pool, ref


def cnn_clients(srv, P, pool, ref, what):
    """Two gRPC and two REST clients at once, each sending batches of 1, 2, 3, 2, 1, 3 rows
    taken from the pool at its own offset. Every answer must be OK, of the right shape, and
    each row within 1e-4 relative L2 of ONNX Runtime's row for the same image."""
    import numpy as np
    ps = P.ps.PredictionServiceStub(srv.channel(options=[
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.max_send_message_length", 64 << 20)]))
    results = []
    lock = threading.Lock()

    def rel(a, b):
        return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b))

    def one(kind, c, k):
        rows = (1, 2, 3, 2, 1, 3)[k]
        idx = [(c * 2 + k + j) % len(pool) for j in range(rows)]
        x = pool[idx]
        try:
            if kind == "grpc":
                code, r = grpc_code(lambda: ps.Predict(predict_req(P, "resnet18", x),
                                                       timeout=120))
                if code != "OK":
                    return (kind, rows, code, str(r)[:200])
                shape = [d.size for d in r.outputs["logits"].tensor_shape.dim]
                raw = r.outputs["logits"].tensor_content
                got = (np.frombuffer(raw, dtype=np.float32) if raw else
                       np.array(r.outputs["logits"].float_val, dtype=np.float32))
            else:
                st, js = srv.rest_json("POST", "/v1/models/resnet18:predict",
                                       {"instances": x.tolist()})
                if st != 200:
                    return (kind, rows, st, str(js)[:200])
                got = np.array(js["predictions"], dtype=np.float32)
                shape = list(got.shape)
            if shape != [rows, 1000]:
                return (kind, rows, "shape", shape)
            got = got.reshape(rows, 1000)
            errs = [rel(got[j], ref[i]) for j, i in enumerate(idx)]
            if max(errs) > 1e-4:
                return (kind, rows, "error", max(errs))
            return None
        except Exception as e:  # a broken connection counts as a failed request
            return (kind, rows, "exception", repr(e)[:200])

    def client(kind, c):
        for k in range(6):
            bad = one(kind, c, k)
            with lock:
                results.append(bad)

    ts = [threading.Thread(target=client, args=(kind, c))
          for c, kind in enumerate(("grpc", "rest", "grpc", "rest"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
    failed = [r for r in results if r is not None]
    check(len(results) == 24 and not failed,
          "%s: %d requests at batch sizes 1, 2 and 3 over gRPC and REST, %d failed, every row "
          "equal to ONNX Runtime's (first failures: %r)" % (what, len(results), len(failed),
                                                           failed[:3]))
    # The order the issue was found in: batch 1, then 2, then 1 again, one after another.
    for rows in (1, 2, 1):
        bad = one("grpc", 0, {1: 0, 2: 1}[rows])
        check(bad is None, "%s: a lone request at batch %d after the others (%r)" %
              (what, rows, bad))


def suite_cnn(work):
    """A real CNN (ResNet-18, exported by torch at test time) answers every batch size in any
    order: batching on (plaintext) and off (mutual TLS), gRPC and REST clients at once."""
    P = pb()
    base, pool, ref = cnn_setup(work)
    bp = os.path.join(work, "batching.config")
    with open(bp, "w") as f:
        f.write("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 20000 }\n"
                "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 2 }\n")
    mp = ["--model_name=resnet18", "--model_base_path=" + base]
    print("batching on:")
    srv = Server(args.veil, work, mp + ["--plaintext", "--enable_batching",
                                        "--batching_parameters_file=" + bp], "cnn_batching",
                 ready_timeout=120)
    try:
        cnn_clients(srv, P, pool, ref, "batching on")
    finally:
        srv.stop()
    print("batching off, mutual TLS:")
    certs = make_certs(os.path.join(work, "certs"))
    srv = Server(args.veil, work, mp + ["--tls_cert=" + certs["server.pem"],
                                        "--tls_key=" + certs["server.key"],
                                        "--tls_client_ca=" + certs["ca.pem"]], "cnn_direct",
                 tls={"ca": certs["ca.pem"], "cert": certs["client.pem"],
                      "key": certs["client.key"]}, ready_timeout=120)
    try:
        cnn_clients(srv, P, pool, ref, "batching off")
    finally:
        srv.stop()


SUITES = {"api": suite_api, "tls": suite_tls, "config": suite_config, "reload": suite_reload,
          "batching": suite_batching, "robust": suite_robust, "sealed": suite_sealed,
          "cnn": suite_cnn}


def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", required=True)
    ap.add_argument("--proto", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--models", help="where whole models are exported (suite cnn)")
    ap.add_argument("suite", choices=sorted(SUITES))
    args = ap.parse_args()
    work = fresh_dir(os.path.join(args.work, args.suite))
    gen_stubs(args.proto, os.path.join(work, "pb"))
    print("suite %s" % args.suite)
    SUITES[args.suite](work)
    finish()


if __name__ == "__main__":
    main()
