#!/usr/bin/python3
"""Whole-model agreement: Veil's engine against ONNX Runtime, and against itself across batches.

For each model exported by export_models.py (ResNet-50, MobileNetV2, the small BERT-style
encoder at opsets 17 and 12, the GPT-2-style decoder, the DistilBERT-style encoder; all with dynamic batch), random inputs from a fixed seed are run through
`veil run --output-dir` and through ONNX Runtime (onnxruntime-node, tests/engine/ort_run.js).
Every output must agree within 1e-4 relative L2 error (||veil - ort|| / ||ort||). Each model
also runs at two batch sizes, and the rows of the larger batch must match the smaller batch's
rows within the same bound (dynamic batch gives the same answer per item).

Usage: check_models.py VEIL_BINARY WORKDIR
Exit status: 0 pass, 1 failure, 77 skip (torch or onnxruntime-node missing).
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 1e-4

try:
    import numpy as np
except ImportError:
    print("SKIP: python3-numpy is not available")
    sys.exit(77)

# (model, {input: (dtype, shape with B for batch and S for sequence)}, batches, sequence)
CASES = [
    ("resnet50", {"input": ("f4", ("B", 3, 224, 224))}, (1, 2), None),
    ("mobilenet_v2", {"input": ("f4", ("B", 3, 224, 224))}, (1, 3), None),
    ("bert_small", {"input_ids": ("i8", ("B", "S")), "attention_mask": ("i8", ("B", "S"))},
     (1, 3), 48),
    ("bert_small_op12", {"input_ids": ("i8", ("B", "S")), "attention_mask": ("i8", ("B", "S"))},
     (1, 3), 48),
    ("gpt_small", {"input_ids": ("i8", ("B", "S"))}, (1, 3), 40),
    ("distilbert_small",
     {"input_ids": ("i8", ("B", "S")), "attention_mask": ("i8", ("B", "S"))}, (1, 3), 48),
]


def rel_l2(a, b):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def make_inputs(spec, batch, seq, seed, outdir):
    rng = np.random.default_rng(seed)
    files = {}
    arrays = {}
    for name, (dt, shape) in spec.items():
        shp = tuple(batch if d == "B" else seq if d == "S" else d for d in shape)
        if dt == "f4":
            a = rng.standard_normal(shp).astype(np.float32)
        elif name == "attention_mask":
            a = np.ones(shp, dtype=np.int64)
            # Pad the tail of every other sequence so the mask matters.
            for b in range(0, shp[0], 2):
                a[b, shp[1] * 3 // 4:] = 0
        else:
            a = rng.integers(0, 1000, size=shp, dtype=np.int64)
        path = os.path.join(outdir, "%s.npy" % name)
        np.save(path, a)
        files[name] = path
        arrays[name] = a
    return files, arrays


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p.returncode, p.stdout, p.stderr


def check_sealed(veil, work):
    """`veil run` on a sealed copy of MobileNetV2 (decrypted in memory) gives the same outputs."""
    if run([veil, "keygen", "--help"])[0] != 0:
        print("skip sealed-model check: this veil binary has no keygen/seal commands")
        return 0
    key = os.path.join(work, "run_test.key")
    sealed = os.path.join(work, "mobilenet_v2.onnx.veil")
    for f in (key, sealed):
        if os.path.exists(f):
            os.remove(f)
    steps = [[veil, "keygen", "-o", key],
             [veil, "seal", os.path.join(work, "mobilenet_v2.onnx"), "--key", key, "--name",
              "mobilenet_v2", "--version", "1", "-o", sealed]]
    for cmd in steps:
        rc, out, err = run(cmd)
        if rc != 0:
            print("FAIL sealed model: %s: %s" % (" ".join(cmd[1:3]), err.strip()))
            return 1
    outs = []
    for path, extra in ((os.path.join(work, "mobilenet_v2.onnx"), []), (sealed, ["--key", key])):
        d = os.path.join(work, "sealed_run_%d" % len(outs))
        os.makedirs(d, exist_ok=True)
        rc, out, err = run([veil, "run", path, "--batch", "2", "--output-dir", d] + extra)
        if rc != 0:
            print("FAIL sealed model: veil run: %s" % err.strip())
            return 1
        outs.append(np.load(os.path.join(d, "logits.npy")))
    rc, out, err = run([veil, "run", sealed])
    refused = rc != 0 and "--key" in err
    same = np.array_equal(outs[0], outs[1])
    print("%s sealed MobileNetV2: outputs identical to the plain model: %s; refused without "
          "--key: %s" % ("ok  " if same and refused else "FAIL", same, refused))
    return 0 if same and refused else 1


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    veil, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    rc, out, err = run(["/usr/bin/python3", os.path.join(HERE, "export_models.py"), work] +
                       [c[0] for c in CASES])
    if rc == 77:
        print(out.strip() or "SKIP: torch missing")
        return 77
    if rc != 0:
        print("model export failed:\n" + out + err)
        return 1
    probe = run(["node", os.path.join(HERE, "ort_run.js"), "probe"])
    if probe[0] == 77 or "not installed" in probe[2]:
        print("SKIP: onnxruntime-node is not installed (cd tests/peers && npm install)")
        return 77
    failures = 0
    for model, spec, batches, seq in CASES:
        path = os.path.join(work, model + ".onnx")
        per_batch = {}
        for batch in batches:
            d = os.path.join(work, "%s_b%d" % (model, batch))
            os.makedirs(os.path.join(d, "veil"), exist_ok=True)
            os.makedirs(os.path.join(d, "ort"), exist_ok=True)
            files, _ = make_inputs(spec, batch, seq, 1234, d)
            args = ["%s=%s" % kv for kv in files.items()]
            rc, out, err = run(["node", os.path.join(HERE, "ort_run.js"), "run", path,
                                os.path.join(d, "ort"), "2"] + args)
            if rc != 0:
                print("FAIL %s batch %d: onnxruntime: %s" % (model, batch, err.strip()))
                failures += 1
                continue
            cmd = [veil, "run", path, "--threads", "2", "--json", "--output-dir",
                   os.path.join(d, "veil")]
            for a in args:
                cmd += ["--input", a]
            rc, out, err = run(cmd)
            if rc != 0:
                print("FAIL %s batch %d: veil run: %s" % (model, batch, err.strip()))
                failures += 1
                continue
            info = json.loads(out)
            per_batch[batch] = {}
            for o in info["outputs"]:
                v = np.load(os.path.join(d, "veil", o["name"] + ".npy"))
                r = np.load(os.path.join(d, "ort", o["name"] + ".npy"))
                per_batch[batch][o["name"]] = v
                if v.shape != r.shape:
                    print("FAIL %s batch %d output %s: shape %s, ONNX Runtime %s" %
                          (model, batch, o["name"], v.shape, r.shape))
                    failures += 1
                    continue
                e = rel_l2(v, r)
                ok = e <= TOL
                failures += 0 if ok else 1
                print("%s %s batch %d output %s: relative L2 error vs ONNX Runtime %.2e" %
                      ("ok  " if ok else "FAIL", model, batch, o["name"], e))
        if len(per_batch) == len(batches):
            small, big = batches[0], batches[-1]
            for name, v in per_batch[small].items():
                w = per_batch[big][name][:small]
                e = rel_l2(w, v)
                ok = e <= TOL
                failures += 0 if ok else 1
                print("%s %s output %s: batch %d rows vs batch %d: relative L2 %.2e" %
                      ("ok  " if ok else "FAIL", model, name, big, small, e))
    failures += check_sealed(veil, work)
    print("model agreement: %s" % ("all passed" if failures == 0 else "%d failures" % failures))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
