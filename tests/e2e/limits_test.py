#!/usr/bin/python3
"""Hostile-load limits of `veil serve` (issue 18: findings 2 and 3, and the pre-authentication
gRPC slots of finding 6), each bounded in time and on 127.0.0.1 only:

  fd         more idle TCP connections than the open-file limit on both mutual-TLS ports (the
             server runs under `ulimit -n 256`, soft and hard), with the default caps, with a
             low --max_connections and with --max_connections past the limit (EMFILE): gRPC
             and REST predictions (`veil predict --rest` included) still succeed within
             seconds, the server's CPU stays low, its descriptors within the limit and its
             log small.
  preauth    1100 idle peers on the gRPC port (more than the 1024 slots the server once had)
             do not keep a client out; with --handshake_timeout_seconds every idle peer of
             both ports is closed at the deadline.
  bomb       a 1 MB gzip body that inflates to 1 GiB over REST and 512 MiB over gRPC: refused
             (413 / RESOURCE_EXHAUSTED) with the server's peak RSS (VmHWM) bounded; under a
             small --max_inflight_bytes the same bomb is refused for the budget (429).
  hoard      unfinished large gRPC streams: over the message cap they are refused at their
             length prefix; under it, the in-flight byte budget refuses the streams that
             would pass it while normal requests still succeed; unfinished REST uploads past
             the budget have their connections closed.
  keepalive  REST keep-alive and pipelining, plaintext and TLS: the connection tracking must
             not stop a second request on a connection from being read.

Usage: limits_test.py --veil BUILD/src/cli/veil --proto PROTO_DIR --work DIR [suite...]"""

import argparse
import json
import os
import resource
import socket
import ssl
import subprocess
import threading
import time
import zlib

from serve_common import (Server, check, check_eq, finish, fresh_dir, gen_stubs, make_affine,
                          make_certs)

MiB = 1 << 20
NOFILE = 256  # the server's open-file limit in the fd suite


def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_hwm(pid):
    """Starts a fresh peak-RSS window (Linux 4.0+: 5 to clear_refs resets VmHWM to VmRSS);
    returns the VmHWM to measure growth from."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
    except OSError:
        pass
    return proc_status(pid, "VmHWM")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def log_size(srv):
    srv.log.flush()
    with open(srv.log_path, "rb") as f:
        data = f.read()
    return len(data), data.count(b"\n")


def gzip_zeros(n):
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(MiB)
    out = [z.compress(chunk) for _ in range(n // MiB)]
    out.append(z.flush())
    return b"".join(out)


def pb():
    import grpc
    import tensorflow_serving.apis.predict_pb2 as predict
    import tensorflow_serving.apis.prediction_service_pb2_grpc as ps

    class P:
        pass
    P.grpc, P.predict, P.ps = grpc, predict, ps
    return P


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


def grpc_code(fn):
    import grpc
    try:
        return "OK", fn()
    except grpc.RpcError as e:
        return e.code().name, e.details()


def grpc_predict(P, srv, bound_s):
    ch = srv.channel()
    try:
        code, r = grpc_code(lambda: P.ps.PredictionServiceStub(ch).Predict(
            predict_req(P, "m", [[1, 2, 3]]), timeout=bound_s))
    finally:
        ch.close()
    return code == "OK" and list(r.outputs["output"].float_val) == [3.0, 5.0, 7.0], code


def rest_predict(srv, bound_s):
    try:
        st, _, body = srv.http("POST", "/v1/models/m:predict",
                               json.dumps({"instances": [[1, 2, 3]]}), timeout=bound_s)
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        return False, repr(e)
    return st == 200 and json.loads(body) == {"predictions": [[3.0, 5.0, 7.0]]}, st


def veil_predict_rest(srv, bound_s):
    """`veil predict --rest`: GET metadata then POST predict on one kept-alive connection."""
    cmd = [args.veil, "predict", "--server", "127.0.0.1:%d" % srv.rest_port, "--rest",
           "--model", "m", "--input", "input=" + args.xnpy]
    if srv.tls:
        cmd += ["--ca", srv.tls["ca"], "--cert", srv.tls["cert"], "--key", srv.tls["key"]]
    else:
        cmd += ["--plaintext"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=bound_s)
    except subprocess.TimeoutExpired:
        return False, "timed out"
    return r.returncode == 0 and "values: 3 5 7" in r.stdout, (r.stdout + r.stderr).strip()[-200:]


def legit_requests(P, srv, what, bound_s=10):
    """A gRPC Predict, a REST predict and `veil predict --rest`, each within bound_s."""
    for name, fn in (("gRPC Predict", lambda: grpc_predict(P, srv, bound_s)),
                     ("REST predict", lambda: rest_predict(srv, bound_s)),
                     ("veil predict --rest", lambda: veil_predict_rest(srv, bound_s))):
        t0 = time.time()
        ok, detail = fn()
        check(ok, "%s answered %s (%s, %.1f s)" % (name, what, detail, time.time() - t0))


def open_idle(port, n, timeout=1.0):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(timeout)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


def closed_by_server(s):
    """True when the server has closed s (EOF or reset); bytes it sent are drained first."""
    s.setblocking(False)
    try:
        while True:
            if s.recv(65536) == b"":
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def tls_setup(work):
    certs = make_certs(os.path.join(work, "certs"))
    tls = {"ca": certs["ca.pem"], "cert": certs["client.pem"], "key": certs["client.key"]}
    flags = ["--tls_cert=" + certs["server.pem"], "--tls_key=" + certs["server.key"],
             "--tls_client_ca=" + certs["ca.pem"]]
    return tls, flags


def model_flags(work):
    base = os.path.join(work, "models", "m")
    make_affine(os.path.join(base, "1", "model.onnx"), 2.0, 1.0)
    return ["--model_name=m", "--model_base_path=" + base]


# ---- fd: descriptor exhaustion ----

def suite_fd(work):
    P = pb()
    tls, tflags = tls_setup(work)
    common = model_flags(work) + tflags
    for variant, extra in (("default caps", []),
                           ("--max_connections=150", ["--max_connections=150"]),
                           ("--max_connections=2000, past the open-file limit",
                            ["--max_connections=2000"])):
        print("-- %s, ulimit -n %d" % (variant, NOFILE))
        srv = Server(args.veil, work, common + extra, "fd-%d" % len(os.listdir(work)), tls=tls,
                     nofile=NOFILE)
        idle = []
        try:
            pid = srv.proc.pid
            log0, _ = log_size(srv)
            # 600 idle connections, two thirds on REST: more than the 256 descriptors the
            # server may open, none of them ever starting its TLS handshake.
            for i in range(600):
                idle += open_idle(srv.rest_port if i % 3 else srv.grpc_port, 1)
            time.sleep(1.0)
            cpu0, t0 = cpu_seconds(pid), time.time()
            time.sleep(3.0)
            cpu = (cpu_seconds(pid) - cpu0) / (time.time() - t0)
            check(cpu < 0.25, "server CPU while %d idle connections are held: %.0f%% of a core"
                  % (len(idle), cpu * 100))
            legit_requests(P, srv, "with the idle connections held")
            fds = open_fds(pid)
            check(fds <= NOFILE, "server descriptors %d within the limit of %d" % (fds, NOFILE))
            grown, lines = log_size(srv)
            grown -= log0
            check(grown < 64 * 1024 and lines < 200,
                  "server log grew %d bytes (%d lines in all)" % (grown, lines))
            still = sum(1 for s in idle if not closed_by_server(s))
            print("  measured: cpu %.1f%%, fds %d, log +%d bytes (%d lines), %d of %d idle "
                  "connections still open" % (cpu * 100, fds, grown, lines, still, len(idle)))
        finally:
            for s in idle:
                s.close()
            srv.stop()


# ---- preauth: connections that never finish their handshake ----

def suite_preauth(work):
    P = pb()
    tls, tflags = tls_setup(work)
    common = model_flags(work) + tflags
    print("-- 1100 idle peers on the gRPC port, default limits")
    srv = Server(args.veil, work, common, "preauth-default", tls=tls)
    idle = []
    try:
        idle = open_idle(srv.grpc_port, 1100)
        time.sleep(0.5)
        check(len(idle) >= 1050, "%d idle connections opened" % len(idle))
        t0 = time.time()
        ok, code = grpc_predict(P, srv, 5)
        check(ok, "gRPC Predict answered beside %d idle peers (%s, %.1f s)"
              % (len(idle), code, time.time() - t0))
        grown, lines = log_size(srv)
        check(lines < 200, "server log: %d lines, %d bytes" % (lines, grown))
    finally:
        for s in idle:
            s.close()
        srv.stop()

    print("-- --handshake_timeout_seconds=2: idle peers of both ports are closed")
    srv = Server(args.veil, work, common + ["--handshake_timeout_seconds=2"], "preauth-deadline",
                 tls=tls)
    idle = []
    try:
        pid = srv.proc.pid
        fds0 = open_fds(pid)
        idle = open_idle(srv.grpc_port, 150) + open_idle(srv.rest_port, 150)
        time.sleep(0.5)
        open_now = sum(1 for s in idle if not closed_by_server(s))
        check(open_now == len(idle), "%d of %d idle connections open before the deadline"
              % (open_now, len(idle)))
        time.sleep(3.0)
        closed = sum(1 for s in idle if closed_by_server(s))
        check_eq(closed, len(idle), "idle connections closed by the server 3.5 s after connecting")
        fds = open_fds(pid)
        check(fds <= fds0 + 5, "server descriptors back to %d (%d before)" % (fds, fds0))
        legit_requests(P, srv, "after the deadline")
        # A client that finished its handshake is not closed at the deadline.
        ctx = ssl.create_default_context(cafile=tls["ca"])
        ctx.load_cert_chain(tls["cert"], tls["key"])
        raw = socket.create_connection(("127.0.0.1", srv.rest_port), timeout=5)
        conn = ctx.wrap_socket(raw, server_hostname="localhost")
        time.sleep(3.0)
        conn.sendall(b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        try:
            while True:
                d = conn.recv(65536)
                if not d:
                    break
                reply += d
        except OSError:
            pass
        conn.close()
        check(reply.startswith(b"HTTP/1.1 200"),
              "a TLS client idle past the deadline after its handshake is still served (%r)"
              % reply[:40])
    finally:
        for s in idle:
            s.close()
        srv.stop()


# ---- bomb: decompression amplification ----

def rest_bomb(srv, bomb):
    try:
        st, _, body = srv.http("POST", "/v1/models/m:predict", bomb,
                               {"Content-Encoding": "gzip"}, timeout=60)
        return st, body[:200]
    except Exception as e:  # noqa: BLE001
        return repr(e), b""


def suite_bomb(work):
    import grpc
    common = model_flags(work) + ["--plaintext"]
    bomb = gzip_zeros(1024 * MiB)
    print("  REST bomb: %d bytes inflating to 1 GiB" % len(bomb))

    print("-- default limits")
    srv = Server(args.veil, work, common, "bomb")
    try:
        pid = srv.proc.pid
        hwm0 = reset_hwm(pid)
        t0 = time.time()
        st, body = rest_bomb(srv, bomb)
        grown = proc_status(pid, "VmHWM") - hwm0
        check(st == 413 and b"decompressed request body larger than the limit" in body,
              "REST gzip bomb refused: 413 (%s %r, %.1f s)" % (st, body, time.time() - t0))
        check(grown < 256 * MiB, "REST gzip bomb: peak RSS grew %d MiB" % (grown // MiB))
        print("  measured: REST VmHWM +%d MiB" % (grown // MiB))

        # gRPC: the client compresses a 512 MiB message of zeros (about 0.5 MB on the wire).
        ch = grpc.insecure_channel("127.0.0.1:%d" % srv.grpc_port,
                                   options=[("grpc.max_send_message_length", -1)])
        call = ch.unary_unary("/tensorflow.serving.PredictionService/Predict",
                              request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
        # A first, empty call opens the connection: compressing 512 MiB in the client can
        # take longer than the handshake deadline on a loaded machine, and this suite is
        # about inflation, not about the deadline.
        grpc_code(lambda: call(b"", timeout=10))
        hwm0 = reset_hwm(pid)
        code, detail = grpc_code(lambda: call(bytes(512 * MiB), timeout=60,
                                              compression=grpc.Compression.Gzip))
        grown = proc_status(pid, "VmHWM") - hwm0
        ch.close()
        check(code == "RESOURCE_EXHAUSTED" and "larger than" in str(detail),
              "gRPC gzip bomb refused: RESOURCE_EXHAUSTED (%s: %s)" % (code, detail))
        check(grown < 256 * MiB, "gRPC gzip bomb: peak RSS grew %d MiB" % (grown // MiB))
        print("  measured: gRPC VmHWM +%d MiB" % (grown // MiB))
        ok, st = rest_predict(srv, 10)
        check(ok, "still serving after the bombs (%s)" % st)
    finally:
        srv.stop()

    print("-- --max_message_bytes=1 GiB, --max_inflight_bytes=256 MiB: the budget stops it")
    srv = Server(args.veil, work, common + ["--max_message_bytes=1073741824",
                                            "--max_inflight_bytes=268435456"], "bomb-budget")
    try:
        pid = srv.proc.pid
        hwm0 = reset_hwm(pid)
        st, body = rest_bomb(srv, bomb)
        grown = proc_status(pid, "VmHWM") - hwm0
        check(st == 429 and b"server busy" in body, "REST gzip bomb refused for the budget: 429 "
              "(%s %r)" % (st, body))
        check(grown < 400 * MiB, "REST gzip bomb under the budget: peak RSS grew %d MiB"
              % (grown // MiB))
        print("  measured: REST VmHWM +%d MiB" % (grown // MiB))
        ok, st = rest_predict(srv, 10)
        check(ok, "the budget is back after the refusal (%s)" % st)
    finally:
        srv.stop()


# ---- hoard: unfinished requests ----

def hoard(srv, n, size):
    """Opens n gRPC streams on one channel, each sending one size-byte message and never
    ending the stream. Returns (channel, futures, release): the streams stay open until
    release is set."""
    import grpc
    release = threading.Event()
    ch = grpc.insecure_channel("127.0.0.1:%d" % srv.grpc_port,
                               options=[("grpc.max_send_message_length", -1)])
    call = ch.stream_unary("/tensorflow.serving.PredictionService/Predict",
                           request_serializer=lambda b: b, response_deserializer=lambda b: b)
    payload = bytes(size)

    def gen():
        yield payload
        release.wait(60)

    futs = [call.future(gen(), timeout=90) for _ in range(n)]
    return ch, futs, release


def refused_codes(futs):
    return [f.exception().code().name for f in futs if f.done() and f.exception() is not None]


def wait_refused(futs, n, timeout):
    """Waits until n of the streams were refused (or timeout seconds); returns the codes."""
    end = time.time() + timeout
    while len(refused_codes(futs)) < n and time.time() < end:
        time.sleep(0.2)
    return refused_codes(futs)


def suite_hoard(work):
    P = pb()
    common = model_flags(work) + ["--plaintext"]

    print("-- three unfinished 150 MiB gRPC streams, default limits")
    srv = Server(args.veil, work, common, "hoard-default")
    try:
        pid = srv.proc.pid
        hwm0 = reset_hwm(pid)
        ch, futs, release = hoard(srv, 3, 150 * MiB)
        codes = wait_refused(futs, 3, 30)
        time.sleep(1)
        grown = proc_status(pid, "VmHWM") - hwm0
        check(codes.count("RESOURCE_EXHAUSTED") == 3,
              "150 MiB streams refused while still sending: %s" % codes)
        check(grown < 200 * MiB, "peak RSS grew %d MiB with three hoarding streams"
              % (grown // MiB))
        print("  measured: VmHWM +%d MiB" % (grown // MiB))
        release.set()
        ch.close()
    finally:
        srv.stop()

    print("-- unfinished 100 MiB gRPC streams against --max_inflight_bytes=256 MiB")
    srv = Server(args.veil, work, common + ["--max_message_bytes=209715200",
                                            "--max_inflight_bytes=268435456"], "hoard-budget")
    try:
        pid = srv.proc.pid
        hwm0 = reset_hwm(pid)
        ch, futs, release = hoard(srv, 4, 100 * MiB)
        # Two fit in 256 MiB; each of the other two is refused once it passes what is left.
        codes = wait_refused(futs, 2, 60)
        held = sum(1 for f in futs if not f.done())
        check(codes.count("RESOURCE_EXHAUSTED") >= 1 and held >= 1 and
              len(codes) + held == 4,
              "the budget refuses the streams past it (refused %s, %d held)" % (codes, held))
        ok, code = grpc_predict(P, srv, 10)
        check(ok, "a gRPC Predict is answered while the streams are held (%s)" % code)
        ok, st = rest_predict(srv, 10)
        check(ok, "a REST predict is answered while the streams are held (%s)" % st)
        grown = proc_status(pid, "VmHWM") - hwm0
        check(grown < 400 * MiB, "peak RSS grew %d MiB with four hoarding streams"
              % (grown // MiB))
        print("  measured: VmHWM +%d MiB, %d streams held, refused %s" % (grown // MiB, held,
                                                                         codes))
        release.set()
        ch.close()
        time.sleep(0.5)
    finally:
        srv.stop()

    print("-- unfinished 40 MB REST uploads against --max_inflight_bytes=100 MB")
    srv = Server(args.veil, work, common + ["--max_inflight_bytes=100000000"], "hoard-rest")
    uploads = []
    try:
        pid = srv.proc.pid
        hwm0 = reset_hwm(pid)
        part = bytes(40 * 1000 * 1000)
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", srv.rest_port), timeout=10)
            s.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 60000000\r\n\r\n")
            try:
                s.sendall(part)
            except OSError:
                pass
            uploads.append(s)
        time.sleep(1.5)
        closed = sum(1 for s in uploads if closed_by_server(s))
        check(1 <= closed <= 3, "uploads past the budget have their connections closed (%d of 4)"
              % closed)
        ok, st = rest_predict(srv, 10)
        check(ok, "a REST predict is answered while the uploads are held (%s)" % st)
        ok, code = grpc_predict(P, srv, 10)
        check(ok, "a gRPC Predict is answered while the uploads are held (%s)" % code)
        grown = proc_status(pid, "VmHWM") - hwm0
        check(grown < 300 * MiB, "peak RSS grew %d MiB with four uploads" % (grown // MiB))
        print("  measured: VmHWM +%d MiB, %d of 4 uploads closed" % (grown // MiB, closed))
        grown, lines = log_size(srv)
        check(lines < 100, "server log: %d lines" % lines)
    finally:
        for s in uploads:
            s.close()
        srv.stop()


# ---- keepalive: the connection tracking leaves HTTP/1.1 alone ----

def exchange(sock, data, n_replies, timeout=10):
    """Sends data and reads until n_replies complete responses arrived; returns them."""
    sock.settimeout(timeout)
    sock.sendall(data)
    buf, replies = b"", []
    while len(replies) < n_replies:
        while b"\r\n\r\n" not in buf:
            d = sock.recv(65536)
            if not d:
                return replies
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(rest) < length:
            d = sock.recv(65536)
            if not d:
                return replies
            rest += d
        replies.append((head.split(b"\r\n")[0], rest[:length]))
        buf = rest[length:]
    return replies


def suite_keepalive(work):
    tls, tflags = tls_setup(work)
    mflags = model_flags(work)
    body = json.dumps({"instances": [[1, 2, 3]]}).encode()
    get = b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n"
    post = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body
    for what, flags, t in (("plaintext", ["--plaintext"], None), ("TLS", tflags, tls)):
        print("-- %s" % what)
        srv = Server(args.veil, work, mflags + flags, "keepalive-" + what, tls=t)
        try:
            def connect():
                s = socket.create_connection(("127.0.0.1", srv.rest_port), timeout=10)
                if t is None:
                    return s
                ctx = ssl.create_default_context(cafile=t["ca"])
                ctx.load_cert_chain(t["cert"], t["key"])
                return ctx.wrap_socket(s, server_hostname="localhost")
            s = connect()
            r1 = exchange(s, get, 1)
            r2 = exchange(s, post, 1)
            r3 = exchange(s, post, 1)
            check(len(r1) == 1 and r1[0][0].endswith(b"200 OK") and len(r2) == 1 and
                  json.loads(r2[0][1]) == {"predictions": [[3.0, 5.0, 7.0]]},
                  "GET then POST on one kept-alive connection (%r)"
                  % [r[0] for r in r1 + r2])
            check(len(r3) == 1 and r3[0][0].endswith(b"200 OK"),
                  "a third request on it (%r)" % [r[0] for r in r3])
            s.close()
            s = connect()
            rs = exchange(s, get + post + post + get, 4)
            check(len(rs) == 4 and all(r[0].endswith(b"200 OK") for r in rs),
                  "four pipelined requests in one write answered in order (%d replies)" % len(rs))
            s.close()
            ok, detail = veil_predict_rest(srv, 10)
            check(ok, "veil predict --rest (%s)" % detail)
        finally:
            srv.stop()


SUITES = {"fd": suite_fd, "preauth": suite_preauth, "bomb": suite_bomb, "hoard": suite_hoard,
          "keepalive": suite_keepalive}

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", required=True)
    ap.add_argument("--proto", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("suites", nargs="*", default=sorted(SUITES))
    args = ap.parse_args()
    args.veil = os.path.abspath(args.veil)
    # This process holds over a thousand idle sockets at once.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, 4096):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    # Under AddressSanitizer, freed memory waits in a 256 MiB quarantine, still resident: it
    # would count in the peak RSS this test bounds. A small one keeps the peak meaningful.
    if "ASAN_OPTIONS" in os.environ:
        os.environ["ASAN_OPTIONS"] += ":quarantine_size_mb=8"
    work = fresh_dir(os.path.abspath(args.work))
    gen_stubs(args.proto, os.path.join(work, "stubs"))
    import numpy as np
    args.xnpy = os.path.join(work, "x.npy")
    np.save(args.xnpy, np.array([[1, 2, 3]], dtype=np.float32))
    for name in args.suites:
        print("== " + name)
        t0 = time.time()
        SUITES[name](fresh_dir(os.path.join(work, name)))
        print("   %s took %.1f s" % (name, time.time() - t0))
    finish()
