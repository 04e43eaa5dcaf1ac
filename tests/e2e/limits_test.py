#!/usr/bin/python3
"""Hostile-load limits of `veil serve` (issue 18, findings 2 and 3), each bounded in time and on
127.0.0.1 only:

  fd     more idle TCP connections than the open-file limit (the server runs under
         `ulimit -n 256`) on both ports, with the default caps and with --max_connections
         raised past the limit (EMFILE path): mutual-TLS gRPC and REST requests still succeed
         within seconds, the server's CPU stays low and its log small.
  bomb   a 1 MB gzip body that inflates to 1 GiB over REST and 512 MiB over gRPC: refused
         (429 / RESOURCE_EXHAUSTED) with the server's peak RSS (VmHWM) growing < 160 MiB.
  hoard  unfinished large gRPC streams: over the message cap they are refused at the prefix;
         under it, the in-flight byte budget refuses the stream that would pass it, and peak
         RSS stays bounded.
"""

import argparse
import gzip
import json
import os
import socket
import threading
import time
import zlib

from serve_common import (Server, check, check_eq, finish, fresh_dir, gen_stubs, make_affine,
                          make_certs)

MiB = 1 << 20


def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def limited_veil(work, nofile):
    """A wrapper that runs veil under `ulimit -n nofile` (soft and hard)."""
    path = os.path.join(work, "veil-nofile-%d" % nofile)
    with open(path, "w") as f:
        f.write("#!/bin/sh\nulimit -n %d || exit 99\nexec %s \"$@\"\n" % (nofile, args.veil))
    os.chmod(path, 0o755)
    return path


def gzip_zeros(n):
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(MiB)
    out = [z.compress(chunk) for _ in range(n // MiB)]
    out.append(z.flush())
    return b"".join(out)


def predict_req(P, name, rows):
    import numpy as np
    req = P.predict.PredictRequest()
    req.model_spec.name = name
    arr = np.asarray(rows, dtype=np.float32)
    req.inputs["input"].dtype = 1
    for d in arr.shape:
        req.inputs["input"].tensor_shape.dim.add().size = d
    req.inputs["input"].tensor_content = arr.tobytes()
    return req


class PB:
    pass


def pb():
    P = PB()
    import tensorflow_serving.apis.predict_pb2 as predict
    import tensorflow_serving.apis.prediction_service_pb2_grpc as ps
    P.predict, P.ps = predict, ps
    return P


def grpc_code(fn):
    import grpc
    try:
        return "OK", fn()
    except grpc.RpcError as e:
        return e.code().name, e.details()


def legit_requests(P, srv, what, bound_s=10):
    """One mutual-TLS gRPC Predict and one REST predict, each within bound_s seconds."""
    t0 = time.time()
    ch = srv.channel()
    code, r = grpc_code(lambda: P.ps.PredictionServiceStub(ch).Predict(
        predict_req(P, "m", [[1, 2, 3]]), timeout=bound_s))
    ch.close()
    check(code == "OK" and list(r.outputs["output"].float_val) == [3.0, 5.0, 7.0],
          "gRPC Predict answered %s (%s, %.1f s)" % (what, code, time.time() - t0))
    t0 = time.time()
    try:
        st, _, body = srv.http("POST", "/v1/models/m:predict",
                               json.dumps({"instances": [[1, 2, 3]]}), timeout=bound_s)
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        st, body = 0, repr(e).encode()
    check(st == 200 and json.loads(body) == {"predictions": [[3.0, 5.0, 7.0]]},
          "REST predict answered %s (%s, %.1f s)" % (what, st, time.time() - t0))


def suite_fd(work):
    P = pb()
    base = os.path.join(work, "models", "m")
    make_affine(os.path.join(base, "1", "model.onnx"), 2.0, 1.0)
    certs = make_certs(os.path.join(work, "certs"))
    tls = {"ca": certs["ca.pem"], "cert": certs["client.pem"], "key": certs["client.key"]}
    flags = ["--model_name=m", "--model_base_path=" + base, "--tls_cert=" + certs["server.pem"],
             "--tls_key=" + certs["server.key"], "--tls_client_ca=" + certs["ca.pem"]]
    for variant, extra in (("default caps", []), ("--max_connections past the fd limit",
                                                  ["--max_connections=2000"])):
        print("-- %s" % variant)
        global_veil = args.veil
        args.veil = limited_veil(work, 256)
        try:
            srv = Server(args.veil, work, flags + extra, "fd-%d" % len(extra), tls=tls)
        finally:
            args.veil = global_veil
        idle = []
        try:
            pid = srv.proc.pid
            log0 = os.path.getsize(srv.log_path)
            # 600 idle connections (400 on REST, 200 on gRPC): more than the 256 descriptors
            # the server may open.
            for i in range(600):
                port = srv.rest_port if i % 3 else srv.grpc_port
                s = socket.socket()
                s.settimeout(2)
                try:
                    s.connect(("127.0.0.1", port))
                except OSError:
                    s.close()
                    continue
                idle.append(s)
            time.sleep(1.0)
            cpu0, t0 = cpu_seconds(pid), time.time()
            time.sleep(3.0)
            cpu = (cpu_seconds(pid) - cpu0) / (time.time() - t0)
            check(cpu < 0.25, "server CPU while %d idle connections are held: %.0f%% of a core"
                  % (len(idle), cpu * 100))
            legit_requests(P, srv, "with the idle connections held")
            fds = open_fds(pid)
            check(fds <= 256, "server descriptors %d within the limit of 256" % fds)
            grown = os.path.getsize(srv.log_path) - log0
            with open(srv.log_path) as f:
                lines = sum(1 for _ in f)
            check(grown < 64 * 1024 and lines < 200,
                  "server log grew %d bytes (%d lines in all)" % (grown, lines))
            print("  measured: cpu %.1f%%, fds %d, log +%d bytes, %d lines"
                  % (cpu * 100, fds, grown, lines))
        finally:
            for s in idle:
                s.close()
            srv.stop()


def suite_bomb(work):
    import grpc
    base = os.path.join(work, "models", "m")
    make_affine(os.path.join(base, "1", "model.onnx"), 2.0, 1.0)
    srv = Server(args.veil, work, ["--model_name=m", "--model_base_path=" + base, "--plaintext"],
                 "bomb")
    try:
        pid = srv.proc.pid
        bomb = gzip_zeros(1024 * MiB)
        print("  REST bomb: %d bytes inflating to 1 GiB" % len(bomb))
        hwm0 = proc_status(pid, "VmHWM")
        t0 = time.time()
        try:
            st, _, _ = srv.http("POST", "/v1/models/m:predict", bomb,
                                {"Content-Encoding": "gzip"}, timeout=30)
        except Exception as e:  # noqa: BLE001
            st = repr(e)
        grown = proc_status(pid, "VmHWM") - hwm0
        check(st in (413, 429), "REST gzip bomb refused (%s, %.1f s)" % (st, time.time() - t0))
        check(grown < 160 * MiB, "REST gzip bomb: peak RSS grew %d MiB" % (grown // MiB))
        print("  measured: REST VmHWM +%d MiB" % (grown // MiB))

        # gRPC: the client compresses a 512 MiB message of zeros (about 0.5 MB on the wire).
        ch = grpc.insecure_channel("127.0.0.1:%d" % srv.grpc_port,
                                   options=[("grpc.max_send_message_length", -1)])
        call = ch.unary_unary("/tensorflow.serving.PredictionService/Predict",
                              request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
        hwm0 = proc_status(pid, "VmHWM")
        code, _ = grpc_code(lambda: call(bytes(512 * MiB), timeout=40,
                                         compression=grpc.Compression.Gzip))
        grown = proc_status(pid, "VmHWM") - hwm0
        ch.close()
        check_eq(code, "RESOURCE_EXHAUSTED", "gRPC gzip bomb refused")
        check(grown < 160 * MiB, "gRPC gzip bomb: peak RSS grew %d MiB" % (grown // MiB))
        print("  measured: gRPC VmHWM +%d MiB" % (grown // MiB))
        st, _, _ = srv.http("GET", "/v1/models/m")
        check_eq(st, 200, "still serving after the bombs")
    finally:
        srv.stop()


def hoard(srv, n, size):
    """Opens n gRPC streams, each sending one size-byte message and never ending the stream.
    Returns (futures, release): the streams stay open until release is set."""
    import grpc
    release = threading.Event()
    ch = grpc.insecure_channel("127.0.0.1:%d" % srv.grpc_port,
                               options=[("grpc.max_send_message_length", -1)])
    call = ch.stream_unary("/tensorflow.serving.PredictionService/Predict",
                           request_serializer=lambda b: b, response_deserializer=lambda b: b)
    payload = bytes(size)

    def gen():
        yield payload
        release.wait(30)

    futs = [call.future(gen(), timeout=40) for _ in range(n)]
    return ch, futs, release


def suite_hoard(work):
    base = os.path.join(work, "models", "m")
    make_affine(os.path.join(base, "1", "model.onnx"), 2.0, 1.0)
    common = ["--model_name=m", "--model_base_path=" + base, "--plaintext"]

    print("-- three unfinished 150 MiB streams, default limits")
    srv = Server(args.veil, work, common, "hoard-default")
    try:
        pid = srv.proc.pid
        hwm0 = proc_status(pid, "VmHWM")
        ch, futs, release = hoard(srv, 3, 150 * MiB)
        time.sleep(6)
        grown = proc_status(pid, "VmHWM") - hwm0
        done = [f for f in futs if f.done()]
        codes = [f.exception().code().name for f in done if f.exception() is not None]
        check(codes.count("RESOURCE_EXHAUSTED") == 3,
              "150 MiB streams refused while still sending: %s" % codes)
        check(grown < 200 * MiB, "peak RSS grew %d MiB with three hoarding streams"
              % (grown // MiB))
        print("  measured: VmHWM +%d MiB" % (grown // MiB))
        release.set()
        ch.close()
    finally:
        srv.stop()

    print("-- unfinished 40 MiB streams against --max_inflight_bytes=100000000")
    srv = Server(args.veil, work, common + ["--max_inflight_bytes=100000000"], "hoard-budget")
    try:
        pid = srv.proc.pid
        hwm0 = proc_status(pid, "VmHWM")
        ch, futs, release = hoard(srv, 4, 40 * MiB)
        time.sleep(6)
        grown = proc_status(pid, "VmHWM") - hwm0
        codes = [f.exception().code().name for f in futs
                 if f.done() and f.exception() is not None]
        pending = sum(1 for f in futs if not f.done())
        check(codes.count("RESOURCE_EXHAUSTED") >= 2 and pending >= 1,
              "the budget refuses the streams past it (refused %s, %d held)" % (codes, pending))
        check(grown < 200 * MiB, "peak RSS grew %d MiB with four hoarding streams"
              % (grown // MiB))
        print("  measured: VmHWM +%d MiB, %d streams held" % (grown // MiB, pending))
        release.set()
        ch.close()
        time.sleep(0.5)
        st, _, body = srv.http("POST", "/v1/models/m:predict",
                               json.dumps({"instances": [[1, 2, 3]]}))
        check_eq(st, 200, "the budget is given back once the streams end")
    finally:
        srv.stop()


SUITES = {"fd": suite_fd, "bomb": suite_bomb, "hoard": suite_hoard}

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", required=True)
    ap.add_argument("--proto", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("suites", nargs="*", default=sorted(SUITES))
    args = ap.parse_args()
    args.veil = os.path.abspath(args.veil)
    work = fresh_dir(os.path.abspath(args.work))
    gen_stubs(args.proto, os.path.join(work, "stubs"))
    for name in args.suites:
        print("== " + name)
        t0 = time.time()
        SUITES[name](fresh_dir(os.path.join(work, name)))
        print("   %s took %.1f s" % (name, time.time() - t0))
    finish()
