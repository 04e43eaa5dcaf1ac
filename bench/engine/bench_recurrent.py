#!/usr/bin/python3
"""LSTM and GRU timings: Veil's engine against ONNX Runtime on the same one-node models.

Configurations: Silero VAD's recurrent sizes (LSTM input = hidden = 64, and 128; batch 1) as
one step (sequence 1, the model's per-chunk call) and as 100 steps (the per-step cost without
the per-run overhead), and a larger case (sequence 100, batch 8, input = hidden = 256), as an
LSTM and as a GRU. Each alternates Veil (`veil run --json --iterations N`) and ONNX Runtime
(tests/engine/ort_run.js bench) for several rounds and keeps each one's best median. A
one-node Relu on Silero's step input comes first: the per-run floor of each runtime, which a
one-step run of either mostly is.

Usage: bench_recurrent.py VEIL_BINARY [WORKDIR] [--threads N] [--rounds N]
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ORT = os.path.join(ROOT, "tests", "engine", "ort_run.js")

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:
    print("bench needs python3-numpy and python3-onnx: %s" % e)
    sys.exit(77)

# (label, op, seq, batch, input, hidden, iterations)
CONFIGS = [
    ("Relu [1, 1, 64] (per-run floor)", "Relu", 1, 1, 64, 64, 20000),
    ("Silero LSTM, hidden 64, 1 step", "LSTM", 1, 1, 64, 64, 20000),
    ("Silero LSTM, hidden 64, 100 steps", "LSTM", 100, 1, 64, 64, 2000),
    ("Silero LSTM, hidden 128, 1 step", "LSTM", 1, 1, 128, 128, 20000),
    ("Silero LSTM, hidden 128, 100 steps", "LSTM", 100, 1, 128, 128, 1000),
    ("LSTM seq 100, batch 8, hidden 256", "LSTM", 100, 8, 256, 256, 100),
    ("GRU seq 100, batch 8, hidden 256", "GRU", 100, 8, 256, 256, 100),
]


def make_model(path, op, seq, batch, inp, hid):
    rng = np.random.default_rng(0)
    if op == "Relu":
        vi = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [seq, batch, inp])]
        g = helper.make_graph([helper.make_node("Relu", ["X"], ["Y"])], "bench", vi,
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
        m.ir_version = 7
        onnx.save(m, path)
        f = path + "_X.npy"
        np.save(f, rng.standard_normal((seq, batch, inp)).astype(np.float32))
        return ["X=" + f]
    g = 4 if op == "LSTM" else 3
    sc = 1.0 / np.sqrt(hid)
    inits = [numpy_helper.from_array((rng.standard_normal((1, g * hid, n)) * sc).astype(
        np.float32), name) for name, n in (("W", inp), ("R", hid))]
    inits.append(numpy_helper.from_array((rng.standard_normal((1, 2 * g * hid)) * sc).astype(
        np.float32), "B"))
    ins = ["X", "W", "R", "B", "", "h0"] + (["c0"] if op == "LSTM" else [])
    outs = ["Y", "Yh"] + (["Yc"] if op == "LSTM" else [])
    node = helper.make_node(op, ins, outs, hidden_size=hid)
    vi = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [seq, batch, inp]),
          helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, batch, hid])]
    if op == "LSTM":
        vi.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, [1, batch, hid]))
    out_vi = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs]
    m = helper.make_model(helper.make_graph([node], "bench", vi, out_vi, inits),
                          opset_imports=[helper.make_opsetid("", 14)])
    m.ir_version = 7
    onnx.save(m, path)
    files = []
    for v in vi:
        shape = [d.dim_value for d in v.type.tensor_type.shape.dim]
        f = os.path.join(os.path.dirname(path), "%s_%s.npy" % (os.path.basename(path), v.name))
        np.save(f, rng.standard_normal(shape).astype(np.float32))
        files.append("%s=%s" % (v.name, f))
    return files


def veil_ms(veil, path, files, threads, iters):
    cmd = [veil, "run", path, "--json", "--threads", str(threads), "--iterations", str(iters)]
    for f in files:
        cmd += ["--input", f]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError("veil run: " + p.stderr)
    return json.loads(p.stdout)["p50_ms"]


def ort_ms(path, files, threads, iters):
    p = subprocess.run(["node", ORT, "bench", path, str(threads), str(max(10, iters // 10)),
                        str(iters)] + files, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)["median_ms"]


def main():
    args = sys.argv[1:]
    threads, rounds = 1, 3
    for flag in ("--threads", "--rounds"):
        if flag in args:
            i = args.index(flag)
            v = int(args[i + 1])
            del args[i:i + 2]
            if flag == "--threads":
                threads = v
            else:
                rounds = v
    if not args:
        print(__doc__)
        return 2
    veil = args[0]
    work = args[1] if len(args) > 1 else tempfile.mkdtemp(prefix="veil-rnn-bench-")
    os.makedirs(work, exist_ok=True)
    print("| case | Veil ms | ORT ms | ratio | Veil us per step (run / seq) |")
    print("|---|---|---|---|---|")
    for label, op, seq, batch, inp, hid, iters in CONFIGS:
        path = os.path.join(work, "%s_s%d_b%d_h%d.onnx" % (op.lower(), seq, batch, hid))
        files = make_model(path, op, seq, batch, inp, hid)
        v, o = [], []
        for _ in range(rounds):
            v.append(veil_ms(veil, path, files, threads, iters))
            t = ort_ms(path, files, threads, iters)
            if t is not None:
                o.append(t)
        vb = min(v)
        ob = min(o) if o else None
        print("| %s | %.4f | %s | %s | %.2f |" % (
            label, vb, "%.4f" % ob if ob else "-", "%.2fx" % (ob / vb) if ob else "-",
            vb * 1000.0 / seq))
    return 0


if __name__ == "__main__":
    sys.exit(main())
