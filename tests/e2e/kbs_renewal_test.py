#!/usr/bin/python3
"""Renewal of the broker-issued serving certificate under load, with sim evidence. Usage:

    kbs_renewal_test.py --veil PATH --proto DIR --work DIR [--seconds N]

A key broker whose policy gives the workload 6-second certificates, and `veil serve --kbs
--tee sim`. For N seconds (default 20) clients send predictions over REST and gRPC, each on
new connections and on one connection kept open: every request must succeed, new
connections must see at least two renewals (the certificate's serial changes, the log says
renewed), and the kept connections, made before the first renewal, must keep answering.
Then the broker goes away: the server logs failed renewals, keeps serving, reports not ready
once its certificate expires, and renews again when the broker is back. Last, a policy that no
longer admits the workload refuses its renewal, and its certificate runs out."""

import argparse
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_common import (check, check_eq, finish, free_port, fresh_dir,  # noqa: E402
                          gen_stubs, make_affine)

LIFETIME_S = 6
BODY = json.dumps({"instances": [[1.0, 2.0, 3.0]]})
WANT = [[3.0, 5.0, 7.0]]


class Conn(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1, checking the certificate for the name the policy grants."""

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname="localhost")


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    if r.returncode != 0:
        raise RuntimeError("%s failed: %s%s" % (cmd[:3], r.stdout, r.stderr))
    return r.stdout


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def wait_for(what, fn, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if fn():
                return True
        except (OSError, http.client.HTTPException, ssl.SSLError):
            pass
        time.sleep(0.05)
    return False


class Load:
    """Client threads sending predictions until stopped; every failure is recorded."""

    def __init__(self, P, rest_port, grpc_port, ctx, ca):
        self.P, self.rest_port, self.grpc_port, self.ctx, self.ca = P, rest_port, grpc_port, ctx, ca
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.failures = []  # the first ten
        self.n_failures = 0
        self.counts = {"rest_new": 0, "rest_kept": 0, "grpc_new": 0, "grpc_kept": 0}
        self.serials = []  # serials seen by new REST connections, in order
        self.kept_serial = None
        self.kept_after_renewal = 0  # kept-connection requests answered after a swap was seen
        self.threads = []

    def fail(self, what):
        with self.lock:
            self.n_failures += 1
            if len(self.failures) < 10:
                self.failures.append(what)

    def count(self, k):
        with self.lock:
            self.counts[k] += 1

    def rest_once(self, c):
        c.request("POST", "/v1/models/affine:predict", body=BODY,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        if r.status != 200 or json.loads(data).get("predictions") != WANT:
            raise RuntimeError("HTTP %d %r" % (r.status, data[:200]))

    def rest_new(self):
        while not self.stop.is_set():
            c = Conn("localhost", self.rest_port, timeout=10, context=self.ctx)
            try:
                self.rest_once(c)
                serial = c.sock.getpeercert()["serialNumber"]
                with self.lock:
                    if not self.serials or self.serials[-1] != serial:
                        self.serials.append(serial)
                self.count("rest_new")
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.fail("REST, new connection: %r" % e)
            finally:
                c.close()

    def rest_kept(self):
        c = Conn("localhost", self.rest_port, timeout=10, context=self.ctx)
        sock = None
        try:
            while not self.stop.is_set():
                try:
                    self.rest_once(c)
                except Exception as e:  # noqa: BLE001
                    self.fail("REST, kept connection: %r" % e)
                    return
                if sock is None:
                    sock = c.sock
                    self.kept_serial = sock.getpeercert()["serialNumber"]
                elif c.sock is not sock:
                    self.fail("REST, kept connection: the client had to reconnect")
                    return
                self.count("rest_kept")
                with self.lock:
                    if len(self.serials) > 1:
                        self.kept_after_renewal += 1
                time.sleep(0.02)
        finally:
            c.close()

    def channel(self):
        creds = self.P.grpc.ssl_channel_credentials(root_certificates=self.ca)
        return self.P.grpc.secure_channel(
            "127.0.0.1:%d" % self.grpc_port, creds,
            options=[("grpc.ssl_target_name_override", "localhost")])

    def grpc_once(self, stub):
        import numpy as np
        req = self.P.predict.PredictRequest()
        req.model_spec.name = "affine"
        t = req.inputs["input"]
        t.dtype = self.P.types.DT_FLOAT
        t.tensor_shape.dim.add().size = 1
        t.tensor_shape.dim.add().size = 3
        t.tensor_content = np.asarray([[1.0, 2.0, 3.0]], dtype=np.float32).tobytes()
        r = stub.Predict(req, timeout=10)
        out = r.outputs["output"]
        got = (np.frombuffer(out.tensor_content, dtype=np.float32).tolist()
               if out.tensor_content else list(out.float_val))
        if got != WANT[0]:
            raise RuntimeError("gRPC answer %r" % got)

    def grpc_new(self):
        while not self.stop.is_set():
            ch = self.channel()
            try:
                self.grpc_once(self.P.ps.PredictionServiceStub(ch))
                self.count("grpc_new")
            except Exception as e:  # noqa: BLE001
                self.fail("gRPC, new channel: %r" % e)
            finally:
                ch.close()

    def grpc_kept(self):
        ch = self.channel()
        stub = self.P.ps.PredictionServiceStub(ch)
        try:
            while not self.stop.is_set():
                try:
                    self.grpc_once(stub)
                    self.count("grpc_kept")
                except Exception as e:  # noqa: BLE001
                    self.fail("gRPC, kept channel: %r" % e)
                time.sleep(0.02)
        finally:
            ch.close()

    def start(self):
        for fn in (self.rest_new, self.rest_new, self.rest_kept, self.grpc_new, self.grpc_kept):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", required=True)
    ap.add_argument("--proto", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    work = fresh_dir(args.work)
    veil = args.veil
    gen_stubs(args.proto, os.path.join(work, "stubs"))
    import grpc
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    P = argparse.Namespace(grpc=grpc, types=types_pb2, predict=predict_pb2,
                           ps=prediction_service_pb2_grpc)

    # The owner: a key, a sealed model, a broker holding the key, a policy with 6 s certificates.
    run([veil, "keygen", "-o", "model.key", "--id", "affine-key-1"], cwd=work)
    run([veil, "keygen", "--sim", "-o", "sim.key"], cwd=work)
    make_affine(os.path.join(work, "affine.onnx"), 2.0, 1.0)
    os.makedirs(os.path.join(work, "repo/affine/1"))
    run([veil, "seal", "affine.onnx", "--key", "model.key", "--name", "affine", "--version", "1",
         "-o", "repo/affine/1/model.onnx.veil"], cwd=work)
    run([veil, "kbs", "init", "--state", "broker", "--host", "127.0.0.1"], cwd=work)
    kport = free_port()
    procs = []

    def start_broker(name):
        log = open(os.path.join(work, name), "w")
        p = subprocess.Popen([veil, "kbs", "serve", "--state", "broker", "--listen",
                              "127.0.0.1:%d" % kport, "--sim-key", "sim.key.pub.pem"],
                             cwd=work, stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        if not wait_for("broker", lambda: "listening" in read(os.path.join(work, name)), 30):
            raise RuntimeError("broker did not start: " + read(os.path.join(work, name)))
        return p

    broker = start_broker("kbs.log")
    admin = [veil, "kbs", "admin", "--broker", "127.0.0.1:%d" % kport, "--ca",
             "broker/broker-ca.pem", "--cert", "broker/admin.pem", "--key", "broker/admin.key"]
    run(admin + ["add", "affine", "--key-file", "model.key"], cwd=work)
    meas = run(["sha256sum", veil]).split()[0]
    policy = {"version": 1, "workloads": [
        {"name": "affine-server", "tee": "sim", "measurement": [meas], "allow_debug": True,
         "names": ["localhost"], "cert_lifetime_s": LIFETIME_S, "keys": ["affine"]}]}
    with open(os.path.join(work, "policy.json"), "w") as f:
        json.dump(policy, f)
    run(admin + ["policy", "policy.json"], cwd=work)

    rest_port, grpc_port = free_port(), free_port()
    serve_log = os.path.join(work, "serve.log")
    slog = open(serve_log, "w")
    server = subprocess.Popen(
        [veil, "serve", "--host=127.0.0.1", "--model_name=affine",
         "--model_base_path=" + os.path.join(work, "repo/affine"), "--port=%d" % grpc_port,
         "--rest_api_port=%d" % rest_port, "--kbs=127.0.0.1:%d" % kport,
         "--kbs-ca=broker/broker-ca.pem", "--tee=sim", "--sim-key=sim.key", "--svn=1",
         "--enable_grpc_healthcheck_service"], cwd=work, stdout=slog, stderr=subprocess.STDOUT)
    procs.append(server)
    ca_path = os.path.join(work, "broker/serving-ca.pem")
    ctx = ssl.create_default_context(cafile=ca_path)
    with open(ca_path, "rb") as f:
        ca = f.read()
    # Probes that must see an expired certificate's server: no verification at all.
    probe_ctx = ssl.create_default_context()
    probe_ctx.check_hostname = False
    probe_ctx.verify_mode = ssl.CERT_NONE

    def get(path, context):
        c = Conn("localhost", rest_port, timeout=10, context=context)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode(errors="replace")
        finally:
            c.close()

    try:
        if not wait_for("ready", lambda: get("/readyz", ctx)[0] == 200, 60):
            raise RuntimeError("server not ready:\n" + read(serve_log))
        check(True, "the attested server is ready")
        # The certificate is the policy's: 6 s ahead (notBefore is five minutes back).
        c = Conn("localhost", rest_port, timeout=10, context=ctx)
        c.connect()
        cert = c.sock.getpeercert()
        c.close()
        left = ssl.cert_time_to_seconds(cert["notAfter"]) - time.time()
        check(0 < left <= LIFETIME_S + 1, "serving certificate lasts the policy's %d s (%.1f s left)"
              % (LIFETIME_S, left))

        # ---- Renewals under load ----
        load = Load(P, rest_port, grpc_port, ctx, ca)
        load.start()
        time.sleep(args.seconds)
        # Kept connections must have been made before the first swap: check they were.
        kept_serial = load.kept_serial
        load.finish()
        renewed = read(serve_log).count("renewed the serving certificate")
        print("  requests: %s; serials seen on new connections: %d; renewals logged: %d"
              % (load.counts, len(load.serials), renewed))
        check(load.n_failures == 0, "no request failed during renewals: %d failed, first %r"
              % (load.n_failures, load.failures))
        check(all(v > 0 for v in load.counts.values()), "every client sent requests: %s"
              % load.counts)
        check(len(load.serials) >= 3, "new connections saw at least 2 renewals (%d serials)"
              % len(load.serials))
        check(renewed >= 2, "the server logged at least 2 renewals (%d)" % renewed)
        check(kept_serial is not None and load.serials and kept_serial == load.serials[0]
              and kept_serial != load.serials[-1],
              "the kept REST connection still has the first certificate")
        check(load.kept_after_renewal > 0,
              "the kept REST connection answered after a swap (%d requests)"
              % load.kept_after_renewal)
        log = read(serve_log)
        check("TLS identity replaced for new connections" in log, "the swap is logged")

        # ---- The broker goes away: failed renewals, then expiry ----
        keep = Conn("localhost", rest_port, timeout=10, context=probe_ctx)
        keep.request("GET", "/readyz")
        r = keep.getresponse()
        r.read()
        check_eq(r.status, 200, "readiness before the broker stops")
        kept_ch = Load(P, rest_port, grpc_port, ctx, ca).channel()
        health = kept_ch.unary_unary("/grpc.health.v1.Health/Check",
                                     request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
        check_eq(health(b"", timeout=10), b"\x08\x01", "gRPC health SERVING before the outage")
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=30)
        check(wait_for("failure", lambda: "renewing the serving certificate failed"
                       in read(serve_log), 3 * LIFETIME_S), "a failed renewal is logged")

        def expired():
            keep.request("GET", "/readyz")
            r = keep.getresponse()
            body = r.read().decode()
            return r.status == 503 and "expired" in body

        check(wait_for("expiry", expired, 3 * LIFETIME_S),
              "readiness reports the expired certificate (503)")
        check(wait_for("expiry log", lambda: re.search(
            r"the serving certificate expired at \S+ without renewal", read(serve_log)), 5),
            "the expiry is logged")
        check_eq(health(b"", timeout=10), b"\x08\x02", "gRPC health NOT_SERVING after expiry")
        st, body = get("/v2/health/ready", probe_ctx)
        check_eq(st, 400, "KServe server ready is false after expiry")
        try:
            get("/readyz", ctx)
            check(False, "a verifying client refuses the expired certificate")
        except ssl.SSLCertVerificationError as e:
            check("expired" in str(e), "a verifying client refuses the expired certificate")
        # Established connections keep working meanwhile.
        keep.request("POST", "/v1/models/affine:predict", body=BODY)
        r = keep.getresponse()
        check_eq(json.loads(r.read()).get("predictions"), WANT,
                 "a kept connection still predicts while the certificate is expired")

        # ---- The broker is back: renewed, ready again ----
        before = read(serve_log).count("renewed the serving certificate")
        start_broker("kbs2.log")
        check(wait_for("renewal", lambda: read(serve_log).count("renewed the serving certificate")
                       > before, 30), "the server renews once the broker is back")
        check(wait_for("ready", lambda: get("/readyz", ctx)[0] == 200, 10),
              "ready again with a renewed certificate, for a verifying client")
        check_eq(health(b"", timeout=10), b"\x08\x01", "gRPC health SERVING again")

        # ---- The policy no longer admits the workload: renewal refused, certificate expires ----
        policy["workloads"][0]["measurement"] = ["00" * 32]
        with open(os.path.join(work, "policy-revoked.json"), "w") as f:
            json.dump(policy, f)
        run(admin + ["policy", "policy-revoked.json"], cwd=work)
        check(wait_for("refusal", lambda: re.search(
            r"renewing the serving certificate failed \(broker \S+ refused the provisioning "
            r"\(HTTP 403\): policy: ", read(serve_log)), 3 * LIFETIME_S),
            "a renewal the policy refuses is logged with the broker's reason")
        check(wait_for("expiry", expired, 3 * LIFETIME_S),
              "a workload the policy dropped is not ready within one certificate lifetime")
        keep.close()
        kept_ch.close()

        # A clean stop: the renewal thread ends with the server.
        t0 = time.time()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        check_eq(server.returncode, 0, "server exit status after SIGTERM")
        check(time.time() - t0 < 15, "the server stops promptly (%.1f s)" % (time.time() - t0))
        log = read(serve_log)
        check("ERROR: AddressSanitizer" not in log and "runtime error" not in log,
              "no sanitizer report from the server")
    except Exception:
        print(read(serve_log)[-4000:])
        raise
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        slog.close()
    finish()


if __name__ == "__main__":
    main()
