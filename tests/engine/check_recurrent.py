#!/usr/bin/python3
"""Recurrent operators (LSTM, GRU, RNN): Veil's engine against ONNX Runtime.

Two kinds of models, each run through `veil run --output-dir` and through ONNX Runtime
(onnxruntime-node, tests/engine/ort_run.js) on the same random inputs:

- Nodes built with onnx.helper, many to a model (one model per opset: 7, 14 and 21): every
  direction, both layouts (opset 14 on), sequence_lens of unequal lengths including 0 and
  the full length, initial_h and initial_c, peepholes, clip, input_forget, linear_before_reset,
  non-default activations with alpha and beta values, hidden sizes that are not multiples of
  16, batch 1 and larger, weights as initializers and as graph inputs, and outputs omitted in
  every combination.
- torch.nn.LSTM, GRU and RNN exported by torch.onnx (two layers, bidirectional,
  batch_first, initial states given; the RNN with ReLU).

Every output must agree within 1e-4 relative L2 error (||veil - ort|| / ||ort||).

Usage: check_recurrent.py VEIL_BINARY WORKDIR
Exit status: 0 pass, 1 failure, 77 skip (numpy, onnx, torch or onnxruntime-node missing).
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 1e-4

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:
    print("SKIP: %s" % e)
    sys.exit(77)

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def rel_l2(a, b):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p.returncode, p.stdout, p.stderr


class Builder:
    """Collects the nodes, inputs and initializers of one model, twice: as written for Veil,
    and for ONNX Runtime, whose CPU kernels refuse layout 1, with each layout-1 node written as
    Transposes around its layout-0 form (the same computation)."""

    def __init__(self, opset):
        self.opset = opset
        self.nodes, self.ort_nodes, self.inputs, self.outputs, self.inits = [], [], [], [], []
        self.feeds = {}

    def tensor(self, name, arr, const):
        if const:
            self.inits.append(numpy_helper.from_array(arr, name))
        else:
            dt = TensorProto.INT32 if arr.dtype == np.int32 else TensorProto.FLOAT
            self.inputs.append(helper.make_tensor_value_info(name, dt, list(arr.shape)))
            self.feeds[name] = arr
        return name

    def model(self, nodes):
        g = helper.make_graph(nodes, "recurrent", self.inputs, self.outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)])
        m.ir_version = 7
        return m


def add_case(b, rng, name, op, seq, batch, inp, hid, direction="forward", layout=0,
             bias=True, lens=None, h0=False, c0=False, peep=False, const=True, outs=(1, 1, 1),
             **attrs):
    """Adds one node; outs says which of Y, Y_h (and Y_c) it writes."""
    g = GATES[op]
    dirs = 2 if direction == "bidirectional" else 1
    sc = 1.0 / np.sqrt(hid)
    x = rng.standard_normal((batch, seq, inp) if layout else (seq, batch, inp))
    ins = [b.tensor(name + "_X", x.astype(np.float32), False)]
    w = (rng.standard_normal((dirs, g * hid, inp)) * sc).astype(np.float32)
    r = (rng.standard_normal((dirs, g * hid, hid)) * sc).astype(np.float32)
    ins.append(b.tensor(name + "_W", w, const))
    ins.append(b.tensor(name + "_R", r, const))
    opt = []
    if bias:
        opt.append((3, b.tensor(name + "_B",
                                (rng.standard_normal((dirs, 2 * g * hid)) * sc).astype(np.float32),
                                const)))
    if lens is not None:
        opt.append((4, b.tensor(name + "_L", np.array(lens, dtype=np.int32), False)))
    st = (batch, dirs, hid) if layout else (dirs, batch, hid)
    if h0:
        opt.append((5, b.tensor(name + "_H0", rng.standard_normal(st).astype(np.float32), False)))
    if c0:
        opt.append((6, b.tensor(name + "_C0", rng.standard_normal(st).astype(np.float32), False)))
    if peep:
        opt.append((7, b.tensor(name + "_P", rng.standard_normal((dirs, 3 * hid)).astype(
            np.float32) * 0.5, const)))
    for slot, nm in opt:
        while len(ins) < slot:
            ins.append("")
        ins.append(nm)
    n_out = 3 if op == "LSTM" else 2
    outs = list(outs)[:n_out]
    onames = [name + "_" + k if outs[i] else "" for i, k in enumerate(["Y", "Yh", "Yc"][:n_out])]
    while onames and onames[-1] == "":
        onames.pop()
    for o in onames:
        if o:
            b.outputs.append(helper.make_tensor_value_info(o, TensorProto.FLOAT, None))
    kw = dict(name=name, hidden_size=hid, direction=direction, **attrs)
    if not layout:
        node = helper.make_node(op, ins, onames, **kw)
        b.nodes.append(node)
        b.ort_nodes.append(node)
        return
    b.nodes.append(helper.make_node(op, ins, onames, layout=1, **kw))
    tin = list(ins)
    for k in (0, 5, 6):
        if k < len(tin) and tin[k]:
            tin[k] = ins[k] + "_t"
            b.ort_nodes.append(helper.make_node("Transpose", [ins[k]], [tin[k]], perm=[1, 0, 2]))
    touts = [o + "_t" if o else "" for o in onames]
    b.ort_nodes.append(helper.make_node(op, tin, touts, **kw))
    for k, o in enumerate(onames):
        if o:
            b.ort_nodes.append(helper.make_node("Transpose", [touts[k]], [o],
                                                perm=[2, 0, 1, 3] if k == 0 else [1, 0, 2]))


def built_cases(work, rng):
    """Models of built nodes, grouped by opset, layout and operator; returns
    [(name, veil_path, ort_path, feeds)]."""
    models = []

    def group(tag, opset, fill):
        b = Builder(opset)
        fill(b)
        vp = os.path.join(work, tag + ".onnx")
        op = os.path.join(work, tag + ".ort.onnx")
        onnx.save(b.model(b.nodes), vp)
        onnx.save(b.model(b.ort_nodes), op)
        models.append((tag, vp, op, b.feeds))

    for opset in (7, 14, 21):
        for layout in (0,) if opset < 14 else (0, 1):
            for op in ("LSTM", "GRU", "RNN"):
                def fill(b, op=op, layout=layout):
                    k = [0]

                    def case(*a, **kw):
                        add_case(b, rng, "%s_%d" % (op.lower(), k[0]), op, *a, **kw)
                        k[0] += 1

                    for direction in ("forward", "reverse", "bidirectional"):
                        case(5, 3, 4, 7, direction, layout, h0=True, c0=op == "LSTM")
                        case(6, 4, 3, 17, direction, layout, lens=[6, 2, 0, 5], h0=True,
                             c0=op == "LSTM", const=False)
                    case(4, 1, 33, 20, "bidirectional", layout, bias=False, outs=(0, 1, 1))
                    case(3, 2, 5, 9, "forward", layout, outs=(1, 0, 0))
                    case(3, 2, 5, 9, "reverse", layout,
                         outs=(0, 0, 1) if op == "LSTM" else (0, 1, 0))
                    case(7, 3, 6, 5, "bidirectional", layout, clip=0.7, lens=[7, 4, 1])
                    if op == "LSTM":
                        case(6, 3, 4, 6, "bidirectional", layout, peep=True, h0=True, c0=True,
                             lens=[3, 6, 5], clip=1.5)
                        case(5, 2, 4, 6, "forward", layout, input_forget=1, peep=True)
                        case(5, 2, 4, 6, "reverse", layout, input_forget=1, clip=0.9)
                    if op == "GRU":
                        case(6, 3, 5, 11, "bidirectional", layout, linear_before_reset=1,
                             h0=True, lens=[6, 1, 4])
                        case(6, 2, 5, 11, "reverse", layout, linear_before_reset=1, clip=0.5)
                group("%s_opset%d_layout%d" % (op.lower(), opset, layout), opset, fill)

    acts = [
        ("LSTM", ["HardSigmoid", "LeakyRelu", "ScaledTanh", "Sigmoid", "Softsign", "Tanh"],
         [0.3, 0.05, 0.8], [0.45, 1.2]),
        ("LSTM", ["Sigmoid", "Elu", "Softplus", "HardSigmoid", "Affine", "Tanh"],
         [0.9, 0.25, 0.6], [0.5, 0.1]),
        ("GRU", ["Sigmoid", "ThresholdedRelu", "HardSigmoid", "Softsign"], [0.1, 0.2], [0.5]),
        ("GRU", ["sigmoid", "RELU"], [], []),
        ("RNN", ["Relu", "Elu"], [1.3], []),
        ("RNN", ["Affine", "LeakyRelu"], [0.7, 0.2], [0.1]),
        ("RNN", ["Relu", "Tanh"], [], []),
        ("RNN", ["Softplus"], [], []),
    ]

    def fill_acts(b):
        for k, (op, names, al, be) in enumerate(acts):
            per = 3 if op == "LSTM" else 2 if op == "GRU" else 1
            bidi = len(names) == 2 * per
            kw = {"activations": names}
            if al:
                kw["activation_alpha"] = al
            if be:
                kw["activation_beta"] = be
            direction = "bidirectional" if bidi else "forward"
            add_case(b, rng, "act%d_a" % k, op, 6, 3, 4, 10, direction, 0, h0=True,
                     lens=[6, 3, 5], **kw)
            add_case(b, rng, "act%d_b" % k, op, 6, 3, 4, 10, direction, 1, **kw)

    group("activations_opset14", 14, fill_acts)
    return models


def torch_cases(work, rng):
    """torch.nn recurrent modules exported to ONNX; returns [(name, path, path, feeds)] or
    None."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    models = []
    specs = [
        ("torch_lstm", torch.nn.LSTM(12, 19, num_layers=2, bidirectional=True, batch_first=True)),
        ("torch_gru", torch.nn.GRU(12, 21, num_layers=2, bidirectional=True)),
        ("torch_rnn", torch.nn.RNN(12, 16, num_layers=2, nonlinearity="relu", bidirectional=True,
                                   batch_first=True)),
        ("torch_lstm_uni", torch.nn.LSTM(8, 64, num_layers=1)),
    ]
    for name, mod in specs:
        lstm = isinstance(mod, torch.nn.LSTM)
        mod.eval()
        layers = mod.num_layers * (2 if mod.bidirectional else 1)
        bf = mod.batch_first
        x = torch.randn((3, 9, 12) if bf else (9, 3, mod.input_size))
        h = torch.randn(layers, 3, mod.hidden_size)
        args = (x, (h, torch.randn(layers, 3, mod.hidden_size))) if lstm else (x, h)
        names = ["x", "h0", "c0"] if lstm else ["x", "h0"]
        outs = ["y", "hn", "cn"] if lstm else ["y", "hn"]
        path = os.path.join(work, name + ".onnx")

        class Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x, h, c=None):
                if c is None:
                    y, hn = self.m(x, h)
                    return y, hn
                y, (hn, cn) = self.m(x, (h, c))
                return y, hn, cn

        flat = (x, h) + ((args[1][1],) if lstm else ())
        torch.onnx.export(Wrap(mod), flat, path, input_names=names, output_names=outs,
                          opset_version=14)
        feeds = {n: t.numpy().astype(np.float32) for n, t in zip(names, flat)}
        models.append((name, path, path, feeds))
    return models


def compare(veil, tag, path, ort_path, feeds, work):
    d = os.path.join(work, tag)
    for sub in ("in", "veil", "ort"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    args = []
    for name, arr in feeds.items():
        f = os.path.join(d, "in", name + ".npy")
        np.save(f, arr)
        args.append("%s=%s" % (name, f))
    rc, out, err = run(["node", os.path.join(HERE, "ort_run.js"), "run", ort_path,
                        os.path.join(d, "ort"), "2"] + args)
    if rc != 0:
        print("FAIL %s: onnxruntime: %s" % (tag, err.strip()[-2000:]))
        return 1
    cmd = [veil, "run", path, "--threads", "2", "--json", "--output-dir", os.path.join(d, "veil")]
    for a in args:
        cmd += ["--input", a]
    rc, out, err = run(cmd)
    if rc != 0:
        print("FAIL %s: veil run: %s" % (tag, err.strip()))
        return 1
    failures, worst = 0, 0.0
    for o in json.loads(out)["outputs"]:
        v = np.load(os.path.join(d, "veil", o["name"] + ".npy"))
        r = np.load(os.path.join(d, "ort", o["name"] + ".npy"))
        if v.shape != r.shape:
            print("FAIL %s output %s: shape %s, ONNX Runtime %s" % (tag, o["name"], v.shape,
                                                                   r.shape))
            failures += 1
            continue
        e = rel_l2(v, r)
        worst = max(worst, e)
        if not e <= TOL:
            print("FAIL %s output %s: relative L2 error vs ONNX Runtime %.2e" % (tag, o["name"],
                                                                                e))
            failures += 1
    n = len(json.loads(out)["outputs"])
    print("%s %s: %d outputs, worst relative L2 error vs ONNX Runtime %.2e" %
          ("ok  " if failures == 0 else "FAIL", tag, n, worst))
    return failures


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    veil, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    rc, _, err = run(["node", os.path.join(HERE, "ort_run.js"), "probe"])
    if rc == 77 or "not installed" in err:
        print("SKIP: onnxruntime-node is not installed (cd tests/peers && npm install)")
        return 77
    rng = np.random.default_rng(7)
    models = built_cases(work, rng)
    tm = torch_cases(work, rng)
    if tm is None:
        print("SKIP: torch is not available")
        return 77
    failures = 0
    for tag, path, ort_path, feeds in models + tm:
        failures += compare(veil, tag, path, ort_path, feeds, work)
    print("recurrent agreement: %s" % ("all passed" if failures == 0 else
                                       "%d failures" % failures))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
