"""Shared helpers for the `veil serve` end-to-end tests: test models (ONNX, made with the onnx
package), certificates (openssl CLI), Python gRPC stubs generated from the project's .proto
files, a server process wrapper with bounded start and stop, and small HTTP/gRPC clients.
Everything binds to 127.0.0.1 on free ports and is torn down by the test itself."""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

FAILS = []


def check(cond, what):
    if cond:
        print("  ok   " + what)
    else:
        print("  FAIL " + what)
        FAILS.append(what)
    return cond


def check_eq(got, want, what):
    ok = got == want
    if not ok:
        what = "%s: got %r, want %r" % (what, got, want)
    return check(ok, what)


def finish():
    if FAILS:
        print("%d check(s) failed:" % len(FAILS))
        for f in FAILS:
            print("   " + f)
        sys.exit(1)
    print("all checks passed")
    sys.exit(0)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


# ---- models ----

def make_affine(path, mul, add, width=3, in_name="input", out_name="output"):
    """y = x * mul + add, float32 [batch, width] with a dynamic batch dimension."""
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info(in_name, TensorProto.FLOAT, ["batch", width])
    y = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["batch", width])
    a = helper.make_tensor("a", TensorProto.FLOAT, [1], [mul])
    b = helper.make_tensor("b", TensorProto.FLOAT, [1], [add])
    g = helper.make_graph([helper.make_node("Mul", [in_name, "a"], ["t"]),
                           helper.make_node("Add", ["t", "b"], [out_name])],
                          "affine", [x], [y], [a, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(m, path)


def make_slow(path, width, depth):
    """y = x * 2 + 1 through `depth` extra Mul/Add pairs (by 1 and 0): a model whose run time
    is set by depth, for tests that need the engine to be the bottleneck."""
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", width])
    inits = [helper.make_tensor(n, TensorProto.FLOAT, [1], [v])
             for n, v in (("one", 1.0), ("zero", 0.0), ("two", 2.0))]
    nodes, cur = [], "input"
    for i in range(depth):
        nodes.append(helper.make_node("Mul", [cur, "one"], ["m%d" % i]))
        nodes.append(helper.make_node("Add", ["m%d" % i, "zero"], ["a%d" % i]))
        cur = "a%d" % i
    nodes.append(helper.make_node("Mul", [cur, "two"], ["t"]))
    nodes.append(helper.make_node("Add", ["t", "one"], ["output"]))
    g = helper.make_graph(nodes, "slow", [x], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(m, path)


def make_two_io(path):
    """Two inputs a, b float32 [batch, 2]; outputs sum = a + b and prod = a * b."""
    import onnx
    from onnx import TensorProto, helper
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 2])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 2])
    s = helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 2])
    p = helper.make_tensor_value_info("prod", TensorProto.FLOAT, ["batch", 2])
    g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["sum"]),
                           helper.make_node("Mul", ["a", "b"], ["prod"])],
                          "two", [a, b], [s, p])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(m, path)


# ---- certificates ----

def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)


def make_certs(d):
    """A CA, a server certificate for localhost/127.0.0.1, and a client certificate."""
    fresh_dir(d)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=veil test CA",
            cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client", "rogue"):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", who + ".key", "-out", who + ".csr", "-subj", "/CN=" + who, cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=d)
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "client.pem", "-days", "2", "-extfile", "client.ext", cwd=d)
    # A client certificate signed by nobody the server trusts.
    openssl("x509", "-req", "-in", "rogue.csr", "-signkey", "rogue.key", "-out", "rogue.pem",
            "-days", "2", cwd=d)
    return {k: os.path.join(d, k) for k in ("ca.pem", "server.pem", "server.key", "client.pem",
                                           "client.key", "rogue.pem", "rogue.key")}


# ---- gRPC stubs ----

def gen_stubs(proto_dir, out_dir):
    import grpc_tools
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    fresh_dir(out_dir)
    files = []
    for sub in ("tensorflow/core/framework", "tensorflow/core/protobuf", "tensorflow_serving/apis"):
        for f in sorted(os.listdir(os.path.join(proto_dir, sub))):
            if f.endswith(".proto"):
                files.append(sub + "/" + f)
    r = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I" + proto_dir, "-I" + wkt,
                        "--python_out=" + out_dir, "--grpc_python_out=" + out_dir] + files,
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("protoc failed: " + r.stderr)
    sys.path.insert(0, out_dir)


# ---- the server ----

class Server:
    def __init__(self, veil, work, args, name, tls=None, wait_ready=True, ready_timeout=30,
                 nofile=None):
        self.grpc_port = free_port()
        self.rest_port = free_port()
        self.tls = tls  # dict with ca / client cert for probing, or None
        self.log_path = os.path.join(work, name + ".log")
        self.log = open(self.log_path, "w")
        cmd = [veil, "serve", "--host=127.0.0.1", "--port=%d" % self.grpc_port,
               "--rest_api_port=%d" % self.rest_port] + args
        preexec = None
        if nofile is not None:
            # `ulimit -n nofile` for the server alone, soft and hard: it cannot raise it.
            def preexec():
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=preexec)
        try:
            self.wait_ready(ready_timeout, "/readyz" if wait_ready else "/healthz")
        except BaseException:
            # Never leave a server behind: the caller's finally only covers a started server.
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.log.close()
            raise

    def wait_ready(self, timeout, path):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited early:\n" + self.read_log())
            try:
                st, _, _ = self.http("GET", path, timeout=2)
                if st == 200:
                    return
            except (OSError, http.client.HTTPException, ssl.SSLError):
                pass
            time.sleep(0.05)
        raise RuntimeError("server not ready in time:\n" + self.read_log())

    def read_log(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def ssl_ctx(self, client_cert=True):
        ctx = ssl.create_default_context(cafile=self.tls["ca"])
        if client_cert and self.tls.get("cert"):
            ctx.load_cert_chain(self.tls["cert"], self.tls["key"])
        return ctx

    def http(self, method, path, body=None, headers=None, timeout=10, client_cert=True):
        if self.tls:
            c = http.client.HTTPSConnection("127.0.0.1", self.rest_port, timeout=timeout,
                                            context=self.ssl_ctx(client_cert))
        else:
            c = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
        finally:
            c.close()

    def rest_json(self, method, path, body=None, headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        st, h, data = self.http(method, path, body, headers)
        try:
            return st, json.loads(data) if data else None
        except ValueError:
            return st, data

    def channel(self, client_cert=True, options=None):
        import grpc
        opts = options or []
        if not self.tls:
            return grpc.insecure_channel("127.0.0.1:%d" % self.grpc_port, options=opts)
        with open(self.tls["ca"], "rb") as f:
            ca = f.read()
        key = cert = None
        if client_cert and self.tls.get("cert"):
            with open(self.tls["key"], "rb") as f:
                key = f.read()
            with open(self.tls["cert"], "rb") as f:
                cert = f.read()
        creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                             certificate_chain=cert)
        return grpc.secure_channel("localhost:%d" % self.grpc_port, creds, options=opts)

    def stop(self, expect_clean=True):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                check(False, "server stopped within 20 s of SIGTERM")
        if expect_clean:
            check_eq(self.proc.returncode, 0, "server exit status after SIGTERM")
        self.log.close()


def curl(*args, timeout=30):
    """Runs curl; returns (exit code, HTTP status or 0, body bytes)."""
    r = subprocess.run(["curl", "-s", "-S", "-o", "-", "-w", "\n%{http_code}"] + list(args),
                       capture_output=True, timeout=timeout)
    out = r.stdout
    body, _, code = out.rpartition(b"\n")
    try:
        code = int(code)
    except ValueError:
        code = 0
    return r.returncode, code, body


def gen_kserve_stubs(proto_dir, out_dir):
    """Python stubs for the KServe v2 service (proto/kserve/grpc_service.proto), written beside
    those of gen_stubs (call that first: it empties out_dir); import kserve.grpc_service_pb2."""
    os.makedirs(out_dir, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I" + proto_dir,
                        "--python_out=" + out_dir, "--grpc_python_out=" + out_dir,
                        "kserve/grpc_service.proto"], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("protoc failed: " + r.stderr)
    if out_dir not in sys.path:
        sys.path.insert(0, out_dir)
