#!/usr/bin/env python3
"""Models with ONNX external data (docs/format/external-data.md), end to end.

Usage: check_external.py VEIL WORKDIR

Builds a small convolution + product network with onnx.helper and saves it with the `onnx`
package's own external-data writer in three layouts (every tensor in one file, one file per
tensor, a file in a sub-folder, plus a Constant attribute stored externally), then for each:
`veil run` on the plaintext folder against ONNX Runtime (on the same weights embedded); `veil seal` into a bundle, checked with
`veil inspect`; the bundle run with the data files deleted (nothing is read from disk);
`veil unseal` restoring every file byte for byte; and the bundle served by `veil serve` over
REST. Then the refusals: a location leading out of the folder, a symbolic link out of it, a
missing file, a file too short for its tensor, an absolute location, each from `veil run` and
`veil seal` with the reason named. Exit 77 without onnx or onnxruntime-node.
"""
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import convert_model_to_external_data
except ImportError as e:
    print("skip: %s" % e)
    sys.exit(77)

TOL = 1e-5
failures = 0


def check(cond, what):
    global failures
    print("%s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        failures += 1
    return cond


def run(cmd, timeout=300, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, **kw)
    return p.returncode, p.stdout, p.stderr


def build_model():
    """x [N,3,8,8] -> Conv(4) + Relu -> Reshape(shape initializer) -> MatMul -> Add(Constant)."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal((4,)).astype(np.float32)
    shape = np.array([-1, 144], dtype=np.int64)
    w2 = rng.standard_normal((144, 10)).astype(np.float32) * 0.1
    bias = rng.standard_normal((10,)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Reshape", ["r", "shape"], ["f"]),
        helper.make_node("MatMul", ["f", "w2"], ["m"]),
        helper.make_node("Constant", [], ["bias"],
                         value=numpy_helper.from_array(bias, "bias_value")),
        helper.make_node("Add", ["m", "bias"], ["y"]),
    ]
    g = helper.make_graph(
        nodes, "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
         numpy_helper.from_array(shape, "shape"), numpy_helper.from_array(w2, "w2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def save(model, folder, layout):
    """Saves model.onnx into folder with external data in the given layout; returns its path."""
    os.makedirs(folder)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    if layout == "one_file":
        convert_model_to_external_data(m, all_tensors_to_one_file=True, location="weights.bin",
                                       size_threshold=0, convert_attribute=True)
    elif layout == "per_tensor":
        convert_model_to_external_data(m, all_tensors_to_one_file=False, size_threshold=0,
                                       convert_attribute=True)
    else:  # a sub-folder, and the small tensors kept inside the model
        convert_model_to_external_data(m, all_tensors_to_one_file=True,
                                       location="data/weights.bin", size_threshold=1024)
        os.makedirs(os.path.join(folder, "data"))
    path = os.path.join(folder, "model.onnx")
    onnx.save_model(m, path)
    return path


def data_files(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            rel = os.path.relpath(p, folder)
            if rel != "model.onnx":
                with open(p, "rb") as fh:
                    out[rel] = fh.read()
    return out


def rel_l2(a, b):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def veil_outputs(veil, model, xfile, outdir, extra=()):
    os.makedirs(outdir, exist_ok=True)
    rc, out, err = run([veil, "run", model, "--threads", "2", "--json", "--input",
                        "x=" + xfile, "--output-dir", outdir] + list(extra))
    if rc != 0:
        return None, err.strip()
    return np.load(os.path.join(outdir, "y.npy")), ""


def set_location(path, tensor, location, out_path):
    """Copies the model at path to out_path with tensor's external location replaced."""
    m = onnx.load(path, load_external_data=False)
    for t in m.graph.initializer:
        if t.name == tensor:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
    onnx.save_model(m, out_path)


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    veil, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    model = build_model()
    x = np.random.default_rng(3).standard_normal((3, 3, 8, 8)).astype(np.float32)
    xfile = os.path.join(work, "x.npy")
    np.save(xfile, x)
    key = os.path.join(work, "model.key")
    rc, _, err = run([veil, "keygen", "-o", key])
    if not check(rc == 0, "keygen " + err.strip()):
        return 1

    # ONNX Runtime's reference runs the same weights embedded in the model: its shape inference
    # cannot read a Reshape's shape from external data, which Veil reads like any tensor.
    embedded = os.path.join(work, "embedded.onnx")
    onnx.save_model(model, embedded)
    ortdir = os.path.join(work, "ort")
    rc, _, err = run(["node", os.path.join(HERE, "ort_run.js"), "run", embedded, ortdir, "2",
                      "x=" + xfile])
    if rc == 77:
        print("skip: " + err.strip())
        return 77
    if not check(rc == 0, "ONNX Runtime runs the embedded model %s" % err.strip()[-300:]):
        return 1
    ref = np.load(os.path.join(ortdir, "y.npy"))

    for layout in ("one_file", "per_tensor", "sub_folder"):
        folder = os.path.join(work, layout)
        path = save(model, folder, layout)
        files = data_files(folder)
        check(len(files) >= 1, "%s: the onnx package wrote %d data files" % (layout, len(files)))
        v, err = veil_outputs(veil, path, xfile, os.path.join(work, layout + "_veil"))
        if check(v is not None, "%s: veil run loads the plaintext folder %s" % (layout, err)):
            e = rel_l2(v, ref)
            check(v.shape == ref.shape and e <= TOL,
                  "%s: plaintext agrees with ONNX Runtime (relative L2 %.2e)" % (layout, e))

        sealed = os.path.join(work, layout + ".onnx.veil")
        rc, out, err = run([veil, "seal", path, "--key", key, "--name", "ext", "--version", "1",
                            "-o", sealed])
        if not check(rc == 0 and "external data file" in out,
                     "%s: seal makes a bundle: %s" % (layout, (out + err).strip())):
            continue
        rc, out, _ = run([veil, "inspect", sealed, "--json"])
        check(rc == 0 and json.loads(out).get("content_type") ==
              "application/vnd.veil.onnx-bundle", "%s: inspect shows the bundle type" % layout)
        # The bundle carries everything: with the folder gone it still runs.
        moved = folder + "_moved"
        os.rename(folder, moved)
        v, err = veil_outputs(veil, sealed, xfile, os.path.join(work, layout + "_sealed"),
                              ["--key", key])
        if check(v is not None, "%s: the sealed bundle runs without its folder %s" %
                 (layout, err)):
            e = rel_l2(v, ref)
            check(e <= TOL, "%s: sealed agrees with ONNX Runtime (%.2e)" % (layout, e))
        os.rename(moved, folder)
        restored = os.path.join(work, layout + "_restored")
        os.makedirs(restored)
        rc, out, err = run([veil, "unseal", sealed, "--key", key, "-o",
                            os.path.join(restored, "model.onnx")])
        check(rc == 0, "%s: unseal %s" % (layout, (out + err).strip()))
        with open(path, "rb") as a, open(os.path.join(restored, "model.onnx"), "rb") as b:
            same_model = a.read() == b.read()
        check(same_model and data_files(restored) == files,
              "%s: unseal restores the model and its %d data files byte for byte" %
              (layout, len(files)))
        rc, _, err = run([veil, "unseal", sealed, "--key", key, "-o",
                          os.path.join(restored, "model.onnx")])
        check(rc != 0 and "exists" in err, "%s: unseal refuses to replace files: %s" %
              (layout, err.strip()))

    # The bundle served by veil serve (plaintext port, key file).
    try:
        from serve_common import Server
        base = os.path.join(work, "repo", "ext", "1")
        os.makedirs(base)
        shutil.copy(os.path.join(work, "one_file.onnx.veil"), os.path.join(base,
                                                                           "model.onnx.veil"))
        srv = Server(veil, work, ["--model_name=ext",
                                  "--model_base_path=" + os.path.dirname(base), "--plaintext",
                                  "--key=" + key], "serve_bundle")
        try:
            st, js = srv.rest_json("POST", "/v1/models/ext:predict",
                                   {"instances": x.tolist()})
            ok = st == 200 and rel_l2(np.array(js["predictions"], dtype=np.float32), ref) <= TOL
            check(ok, "veil serve answers from the sealed bundle (HTTP %d)" % st)
        finally:
            srv.stop()
    except RuntimeError as e:
        check(False, "veil serve with a bundle: %s" % e)

    # Refusals, from veil run and veil seal alike.
    src = os.path.join(work, "one_file", "model.onnx")
    secret = os.path.join(work, "secret.bin")
    with open(secret, "wb") as f:
        f.write(b"\0" * 65536)
    cases = []
    d = os.path.join(work, "bad_dotdot")
    os.makedirs(d)
    shutil.copy(os.path.join(work, "one_file", "weights.bin"), d)
    set_location(src, "w2", "../secret.bin", os.path.join(d, "model.onnx"))
    cases.append(("location with ..", d, "not a plain relative path"))
    d = os.path.join(work, "bad_abs")
    os.makedirs(d)
    shutil.copy(os.path.join(work, "one_file", "weights.bin"), d)
    set_location(src, "w2", secret, os.path.join(d, "model.onnx"))
    cases.append(("absolute location", d, "not a plain relative path"))
    d = os.path.join(work, "bad_link")
    os.makedirs(d)
    shutil.copy(os.path.join(work, "one_file", "weights.bin"), d)
    os.symlink(secret, os.path.join(d, "w2.bin"))
    set_location(src, "w2", "w2.bin", os.path.join(d, "model.onnx"))
    cases.append(("symbolic link out of the folder", d, "leads outside the model's folder"))
    d = os.path.join(work, "bad_missing")
    os.makedirs(d)
    shutil.copy(src, d)
    cases.append(("missing data file", d, "external data file 'weights.bin'"))
    d = os.path.join(work, "bad_short")
    os.makedirs(d)
    shutil.copy(src, d)
    with open(os.path.join(work, "one_file", "weights.bin"), "rb") as f:
        data = f.read()
    with open(os.path.join(d, "weights.bin"), "wb") as f:
        f.write(data[:len(data) // 2])
    cases.append(("data file too short", d, "are needed, the file has"))
    for what, d, want in cases:
        m = os.path.join(d, "model.onnx")
        rc, _, err = run([veil, "run", m, "--input", "x=" + xfile])
        check(rc != 0 and want in err, "run refuses a %s: %s" % (what, err.strip()[-200:]))
        out = os.path.join(d, "model.onnx.veil")
        rc, _, err = run([veil, "seal", m, "--key", key, "--name", "ext", "--version", "1",
                          "-o", out])
        check(rc != 0 and want in err and not os.path.exists(out),
              "seal refuses a %s: %s" % (what, err.strip()[-200:]))

    print("external data: %d failure(s)" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
