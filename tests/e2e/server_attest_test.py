#!/usr/bin/python3
"""Clients that check the server themselves: `veil predict --attest POLICY` and `veil bench
--attest POLICY` against `veil serve --kbs --tee sim`, with sim evidence. Usage:

    server_attest_test.py --veil PATH --work DIR

A good server passes over gRPC and REST. Refused, each with its reason and without a single
request reaching a model (the server's request counters do not move, a relay sees nothing
but the attestation request): a policy that lists another build, evidence signed by a sim key
the client does not trust, a relay that forwards the genuine server's fresh answer for its own
connection (evidence for another key), a relay that replays an answer it recorded earlier
(another nonce), and a server without attestation. A flood of attestation requests is
limited."""

import argparse
import hashlib
import http.client
import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_common import check, finish, free_port, fresh_dir, make_affine  # noqa: E402


def run(cmd, cwd, check_rc=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)
    if check_rc and r.returncode != 0:
        raise RuntimeError("%s failed: %s%s" % (" ".join(cmd[:3]), r.stdout, r.stderr))
    return r


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def wait_for(fn, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if fn():
                return True
        except (OSError, http.client.HTTPException, ssl.SSLError):
            pass
        time.sleep(0.05)
    return False


class Relay:
    """A TLS server with a certificate of its own that the client trusts (an attacker's host
    under a CA the client was given), answering /veil/v1/attestation with what the genuine
    server answers (relay) or with an answer recorded earlier (replay), and counting every
    other request it receives."""

    def __init__(self, work, certdir, upstream_port, upstream_key_sha256, mode):
        self.upstream_port = upstream_port
        self.key_hex = upstream_key_sha256
        self.mode = mode
        self.recorded = None
        self.others = 0
        self.attest_requests = 0
        relay = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                if self.path != "/veil/v1/attestation":
                    relay.others += 1
                    self.reply(404, b"{}")
                    return
                relay.attest_requests += 1
                if relay.mode == "replay":
                    self.reply(200, relay.recorded)
                    return
                # Ask the genuine server to attest its own key for the client's nonce.
                req = json.loads(body)
                req["key_sha256"] = relay.key_hex
                self.reply(200, relay.upstream(json.dumps(req).encode()))

            def do_GET(self):
                relay.others += 1
                self.reply(404, b"{}")

            def reply(self, status, data):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(certdir, "server.pem"), os.path.join(certdir, "server.key"))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def upstream(self, body):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection("127.0.0.1", self.upstream_port, timeout=10, context=ctx)
        try:
            c.request("POST", "/veil/v1/attestation", body=body,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            return r.read()
        finally:
            c.close()

    def record(self):
        """What the genuine server answered a nonce of the relay's own, for replaying."""
        self.recorded = self.upstream(json.dumps(
            {"nonce": os.urandom(32).hex(), "key_sha256": self.key_hex}).encode())

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    work = fresh_dir(args.work)
    veil = args.veil
    procs = []

    run([veil, "keygen", "-o", "model.key", "--id", "affine-key-1"], work)
    run([veil, "keygen", "--sim", "-o", "sim.key"], work)
    run([veil, "keygen", "--sim", "-o", "other-sim.key"], work)
    make_affine(os.path.join(work, "affine.onnx"), 2.0, 1.0)
    os.makedirs(os.path.join(work, "repo/affine/1"))
    run([veil, "seal", "affine.onnx", "--key", "model.key", "--name", "affine", "--version", "1",
         "-o", "repo/affine/1/model.onnx.veil"], work)
    run([veil, "kbs", "init", "--state", "broker", "--host", "127.0.0.1"], work)
    kport = free_port()
    klog = open(os.path.join(work, "kbs.log"), "w")
    procs.append(subprocess.Popen([veil, "kbs", "serve", "--state", "broker", "--listen",
                                   "127.0.0.1:%d" % kport, "--sim-key", "sim.key.pub.pem"],
                                  cwd=work, stdout=klog, stderr=subprocess.STDOUT))
    try:
        if not wait_for(lambda: "listening" in read(os.path.join(work, "kbs.log")), 30):
            raise RuntimeError("broker did not start")
        admin = [veil, "kbs", "admin", "--broker", "127.0.0.1:%d" % kport, "--ca",
                 "broker/broker-ca.pem", "--cert", "broker/admin.pem", "--key",
                 "broker/admin.key"]
        run(admin + ["add", "affine", "--key-file", "model.key"], work)
        meas = hashlib.sha256(open(veil, "rb").read()).hexdigest()
        entry = {"name": "affine-server", "tee": "sim", "measurement": [meas],
                 "allow_debug": True, "keys": ["affine"]}
        with open(os.path.join(work, "policy.json"), "w") as f:
            json.dump({"version": 1, "workloads": [dict(entry, names=["localhost"])]}, f)
        run(admin + ["policy", "policy.json"], work)
        # The client's own policies: this build, and a build it would accept instead.
        with open(os.path.join(work, "client-policy.json"), "w") as f:
            json.dump({"version": 1, "workloads": [dict(entry, keys=[])]}, f)
        with open(os.path.join(work, "other-build.json"), "w") as f:
            json.dump({"version": 1, "workloads": [dict(entry, keys=[],
                                                        measurement=["ab" * 32])]}, f)

        gport, rport = free_port(), free_port()
        slog_path = os.path.join(work, "serve.log")
        slog = open(slog_path, "w")
        procs.append(subprocess.Popen(
            [veil, "serve", "--host=127.0.0.1", "--model_name=affine",
             "--model_base_path=" + os.path.join(work, "repo/affine"), "--port=%d" % gport,
             "--rest_api_port=%d" % rport, "--kbs=127.0.0.1:%d" % kport,
             "--kbs-ca=broker/broker-ca.pem", "--tee=sim", "--sim-key=sim.key", "--svn=1"],
            cwd=work, stdout=slog, stderr=subprocess.STDOUT))
        ca = os.path.join(work, "broker/serving-ca.pem")
        vctx = ssl.create_default_context(cafile=ca)

        def get(path):
            c = http.client.HTTPSConnection("localhost", rport, timeout=10, context=vctx)
            try:
                c.request("GET", path)
                r = c.getresponse()
                return r.status, r.read().decode()
            finally:
                c.close()

        if not wait_for(lambda: get("/readyz")[0] == 200, 60):
            raise RuntimeError("server not ready:\n" + read(slog_path))

        def counters():
            _, text = get("/monitoring/prometheus/metrics")
            return sorted(l for l in text.splitlines()
                          if l.startswith(":tensorflow:serving:request_count"))

        attest = ["--attest", "client-policy.json", "--attest-sim-key", "sim.key.pub.pem"]
        predict_grpc = [veil, "predict", "--server", "localhost:%d" % gport, "--model", "affine",
                        "--ca", ca]
        predict_rest = [veil, "predict", "--rest", "--server", "localhost:%d" % rport, "--model",
                        "affine", "--ca", ca]

        # ---- A good server passes ----
        for name, cmd in (("gRPC", predict_grpc), ("REST", predict_rest)):
            r = run(cmd + attest, work, check_rc=False)
            check(r.returncode == 0 and "from an attested server" in r.stdout
                  and "attested: the server is workload 'affine-server'" in r.stderr,
                  "predict --attest over %s passes: %s%s" % (name, r.stdout[-300:], r.stderr[-300:]))
        for name, extra in (("gRPC", []), ("REST", ["--rest"])):
            port = rport if extra else gport
            r = run([veil, "bench", "--server", "localhost:%d" % port, "--model", "affine",
                     "--ca", ca, "--concurrency", "4", "--connections", "3", "--duration", "1",
                     "--warmup", "0", "--json"] + extra + attest, work, check_rc=False)
            rep = json.loads(r.stdout) if r.returncode == 0 else {}
            ok = rep.get("ok", 0) > 0 and rep.get("errors") == {}
            check(ok and r.stderr.count("attested: the server is workload") == 1,
                  "bench --attest over %s passes, one check for its connections to one key: %s"
                  % (name, (r.stdout + r.stderr)[-400:]))

        # ---- Refusals: a clear reason, and nothing sent ----
        def refused(what, cmd, reason):
            before = counters()
            r = run(cmd, work, check_rc=False)
            after = counters()
            check(r.returncode != 0 and re.search(reason, r.stderr) is not None,
                  "%s is refused (%s): %s" % (what, reason, r.stderr.strip()[-300:]))
            check(before == after, "%s: no request reached the server's models" % what)

        other = ["--attest", "other-build.json", "--attest-sim-key", "sim.key.pub.pem"]
        refused("a server the policy does not list (gRPC)", predict_grpc + other,
                "does not match the policy: .*measurement")
        refused("a server the policy does not list (REST)", predict_rest + other,
                "does not match the policy")
        refused("evidence from an untrusted sim key", predict_rest +
                ["--attest", "client-policy.json", "--attest-sim-key", "other-sim.key.pub.pem"],
                "evidence does not verify")
        r = run(predict_rest + ["--attest", "client-policy.json"], work, check_rc=False)
        check(r.returncode != 0 and "--attest-roots DIR" in r.stderr,
              "--attest without roots or a sim key is refused: " + r.stderr.strip())

        # A relay: its own host certificate (under a CA the client trusts), the genuine
        # server's evidence for its own key.
        run([veil, "certs", "-o", "relay", "--host", "localhost"], work)
        pem = ssl.get_server_certificate(("127.0.0.1", rport))
        der = ssl.PEM_cert_to_DER_cert(pem)
        spki = subprocess.run(["openssl", "x509", "-inform", "DER", "-pubkey", "-noout"],
                              input=der, capture_output=True, check=True).stdout
        spki_der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=spki,
                                  capture_output=True, check=True).stdout
        key_hex = hashlib.sha256(spki_der).hexdigest()
        relay_ca = os.path.join(work, "relay/ca.pem")
        for mode, reason in (("relay", "evidence is for another key than this TLS connection's"),
                             ("replay", "does not answer this client's nonce")):
            relay = Relay(work, os.path.join(work, "relay"), rport, key_hex, mode)
            try:
                if mode == "replay":
                    relay.record()
                r = run([veil, "predict", "--rest", "--server", "localhost:%d" % relay.port,
                         "--model", "affine", "--ca", relay_ca] + attest, work, check_rc=False)
                check(r.returncode != 0 and reason in r.stderr,
                      "a %s is refused (%s): %s" % (mode, reason, r.stderr.strip()[-300:]))
                check(relay.attest_requests == 1 and relay.others == 0,
                      "the %s received the attestation request and nothing else (%d, %d)"
                      % (mode, relay.attest_requests, relay.others))
            finally:
                relay.stop()

        # A flood of attestation requests is limited (a burst of 32, then 16 a second).
        c = http.client.HTTPSConnection("localhost", rport, timeout=10, context=vctx)
        codes = {}
        for _ in range(200):
            c.request("POST", "/veil/v1/attestation", body=json.dumps(
                {"nonce": os.urandom(32).hex(), "key_sha256": key_hex}))
            r = c.getresponse()
            body = r.read().decode()
            codes[r.status] = codes.get(r.status, 0) + 1
            if r.status == 503:
                check("too many attestation requests" in body, "the flood is told why: " + body)
                break
        c.close()
        check(codes.get(200, 0) >= 32 and codes.get(503, 0) == 1,
              "a flood of attestation requests is refused after the burst: %s" % codes)
        time.sleep(2.5)
        r = run(predict_rest + attest, work, check_rc=False)
        check(r.returncode == 0, "attestation answers again after the flood: " + r.stderr[-300:])

        # A server without attestation (plain TLS, no broker) says so.
        plain_rport, plain_gport = free_port(), free_port()
        plog = open(os.path.join(work, "plain.log"), "w")
        os.makedirs(os.path.join(work, "plain/affine/1"))
        make_affine(os.path.join(work, "plain/affine/1/model.onnx"), 2.0, 1.0)
        procs.append(subprocess.Popen(
            [veil, "serve", "--host=127.0.0.1", "--model_name=affine",
             "--model_base_path=" + os.path.join(work, "plain/affine"),
             "--port=%d" % plain_gport, "--rest_api_port=%d" % plain_rport,
             "--tls_cert=relay/server.pem", "--tls_key=relay/server.key"],
            cwd=work, stdout=plog, stderr=subprocess.STDOUT))
        pctx = ssl.create_default_context(cafile=relay_ca)

        def plain_ready():
            c = http.client.HTTPSConnection("localhost", plain_rport, timeout=5, context=pctx)
            try:
                c.request("GET", "/readyz")
                return c.getresponse().status == 200
            finally:
                c.close()

        if not wait_for(plain_ready, 30):
            raise RuntimeError("plain server not ready:\n" + read(os.path.join(work, "plain.log")))
        for name, cmd in (("gRPC", ["--server", "localhost:%d" % plain_gport]),
                          ("REST", ["--rest", "--server", "localhost:%d" % plain_rport])):
            r = run([veil, "predict", "--model", "affine", "--ca", relay_ca] + cmd + attest, work,
                    check_rc=False)
            check(r.returncode != 0 and "has no attestation" in r.stderr,
                  "a server without attestation is refused over %s: %s"
                  % (name, r.stderr.strip()[-300:]))
        log = read(slog_path)
        check("AddressSanitizer" not in log and "runtime error" not in log,
              "no sanitizer report from the server")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)
    finish()


if __name__ == "__main__":
    main()
