#!/usr/bin/python3
"""One loaded model answers every input signature, in any order and at once.

For every model of check_models.py (ResNet-50, MobileNetV2, the BERT-style encoders at opsets 17
and 12, the GPT-2-style decoder, the DistilBERT-style encoder), engine_shapes_run loads the
model ONCE with a plan cache of 3 plans and runs, in this order, batch 1, 2, 3, 8, 1, 5 (the
text models at sequence lengths 16, 128, 7, 128, 16, 7 beside them): five signatures, so plans
are evicted and rebuilt, and a signature comes back after its plan was evicted. Then 4 threads
run the same cases at once in rotated orders, 3 rounds each. Every output of every run is
compared with ONNX Runtime's for the same inputs within 1e-4 relative L2 error.

Usage: check_shapes.py VEIL_SHAPES_RUN WORKDIR
Exit status: 0 pass, 1 failure, 77 skip (torch or onnxruntime-node missing).
"""
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    import numpy as np  # noqa: F401  (check_models needs it too)
except ImportError:
    print("SKIP: python3-numpy is not available")
    sys.exit(77)

import check_models  # noqa: E402

BATCHES = (1, 2, 3, 8, 1, 5)
SEQS = (16, 128, 7, 128, 16, 7)
PLANS, THREADS, ROUNDS = 3, 4, 3


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    driver, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    models = [c[0] for c in check_models.CASES]
    rc, out, err = check_models.run(["/usr/bin/python3", os.path.join(HERE, "export_models.py"),
                                     work] + models)
    if rc == 77:
        print(out.strip() or "SKIP: torch missing")
        return 77
    if rc != 0:
        print("model export failed:\n" + out + err)
        return 1
    probe = check_models.run(["node", os.path.join(HERE, "ort_run.js"), "probe"])
    if probe[0] == 77 or "not installed" in probe[2]:
        print("SKIP: onnxruntime-node is not installed (cd tests/peers && npm install)")
        return 77
    failures = 0
    for model, spec, _, seq in check_models.CASES:
        path = os.path.join(work, model + ".onnx")
        dirs, refs = [], []
        for i, batch in enumerate(BATCHES):
            s = SEQS[i] if seq is not None else None
            d = os.path.join(work, "shapes_%s_%d" % (model, i))
            if os.path.isdir(d):
                shutil.rmtree(d)
            os.makedirs(os.path.join(d, "ort"))
            files, _ = check_models.make_inputs(spec, batch, s, 100 + i, d)
            rc, out, err = check_models.run(
                ["node", os.path.join(HERE, "ort_run.js"), "run", path, os.path.join(d, "ort"),
                 "2"] + ["%s=%s" % kv for kv in files.items()])
            if rc != 0:
                print("FAIL %s case %d: onnxruntime: %s" % (model, i, err.strip()))
                failures += 1
                continue
            ref = {}
            for f in os.listdir(os.path.join(d, "ort")):
                if f.endswith(".npy"):
                    ref[f[:-4]] = np.load(os.path.join(d, "ort", f))
            dirs.append(d)
            refs.append(ref)
        if len(dirs) != len(BATCHES):
            continue
        rc, out, err = check_models.run([driver, path, "1", str(PLANS), str(THREADS),
                                         str(ROUNDS)] + dirs)
        if rc != 0:
            print("FAIL %s: engine_shapes_run exited %d:\n%s%s" % (model, rc, out, err))
            failures += 1
            continue
        worst, n_checked = 0.0, 0
        for d, ref in zip(dirs, refs):
            for sub in sorted(os.listdir(d)):
                if sub != "seq" and not sub.startswith("par_"):
                    continue
                for name, r in ref.items():
                    f = os.path.join(d, sub, name + ".npy")
                    if not os.path.exists(f):
                        print("FAIL %s %s/%s: output %s missing" % (model, d, sub, name))
                        failures += 1
                        continue
                    v = np.load(f)
                    if v.shape != r.shape:
                        print("FAIL %s %s/%s output %s: shape %s, ONNX Runtime %s" %
                              (model, os.path.basename(d), sub, name, v.shape, r.shape))
                        failures += 1
                        continue
                    e = check_models.rel_l2(v, r)
                    n_checked += 1
                    worst = max(worst, e)
                    if e > check_models.TOL:
                        print("FAIL %s %s/%s output %s: relative L2 error %.2e" %
                              (model, os.path.basename(d), sub, name, e))
                        failures += 1
        ok = n_checked >= len(dirs) * len(refs[0])
        if not ok:
            print("FAIL %s: only %d outputs checked" % (model, n_checked))
            failures += 1
        print("%s %s: %d outputs of %d signatures (sequential, then %d threads x %d rounds, "
              "plan cache %d) against ONNX Runtime, worst relative L2 %.2e" %
              ("ok  " if ok and worst <= check_models.TOL else "FAIL", model, n_checked,
               len(set(zip(BATCHES, SEQS if seq else BATCHES))), THREADS, ROUNDS, PLANS, worst))
    print("shape sequences: %s" % ("all passed" if failures == 0 else "%d failures" % failures))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
