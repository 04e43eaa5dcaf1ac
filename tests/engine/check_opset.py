#!/usr/bin/python3
"""Opsets 18 to 21: hand-built models against ONNX Runtime.

Each case is a small model written with onnx.helper at opset 18, 19, 20 or 21 (IR version 8
to 10) in the newer operator forms exporters write: reduction axes as an input, Split's
num_outputs, Pad's axes input, GroupNormalization, Mish, the Bitwise operators, CenterCropPad,
Col2Im, Resize's antialias, axes, keep_aspect_ratio_policy and half_pixel_symmetric,
GridSample (opsets 16 and 20, 2-D and 3-D), Scatter reductions, AveragePool dilations, Gelu.
Random inputs from a fixed seed run through `veil run --output-dir` and ONNX Runtime
(tests/engine/ort_run.js); float outputs agree within 1e-4 relative L2, integers exactly.

Usage: check_opset.py VEIL_BINARY WORKDIR [CASE...]
Exit status: 0 pass, 1 failure, 77 skip (python3-onnx or onnxruntime-node missing).
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
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper
except ImportError:
    print("SKIP: python3-numpy or python3-onnx is not available")
    sys.exit(77)

F, I64, I32, U8 = T.FLOAT, T.INT64, T.INT32, T.UINT8
NP = {F: np.float32, I64: np.int64, I32: np.int32, U8: np.uint8}


def vi(name, dt, shape):
    return h.make_tensor_value_info(name, dt, shape)


def const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def model(nodes, inputs, outputs, inits=(), opset=18, ir=8):
    g = h.make_graph(nodes, "case", [vi(*i[:3]) for i in inputs],
                     [vi(*o) for o in outputs], list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = ir
    return m


def cases():
    """(name, model, {input: (dtype, shape)})"""
    out = []
    x4 = ("x", F, [2, 3, 4, 5])
    for op in ("ReduceMax", "ReduceMin", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2",
               "ReduceLogSumExp", "ReduceSumSquare", "ReduceSum"):
        for keep in (0, 1):
            out.append(("%s_axes_input_keep%d" % (op.lower(), keep),
                        model([h.make_node(op, ["x", "axes"], ["y"], keepdims=keep)], [x4],
                              [("y", F, None)], [const("axes", np.array([1, -1], np.int64))]),
                        {"x": (F, [2, 3, 4, 5])}))
        out.append(("%s_noop_empty_axes" % op.lower(),
                    model([h.make_node(op, ["x"], ["y"], noop_with_empty_axes=1)], [x4],
                          [("y", F, None)]), {"x": (F, [2, 3, 4, 5])}))
    out.append(("reducelogsum_axes_input",
                model([h.make_node("ReduceLogSum", ["xa", "axes"], ["y"])],
                      [("xa", F, [3, 4])], [("y", F, None)],
                      [const("axes", np.array([0], np.int64))]), {"xa": (F, [3, 4], "pos")}))
    out.append(("split_num_outputs_uneven",
                model([h.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3)],
                      [("x", F, [2, 10])], [("a", F, None), ("b", F, None), ("c", F, None)]),
                {"x": (F, [2, 10])}))
    for mode in ("constant", "reflect", "edge"):
        out.append(("pad_axes_%s" % mode,
                    model([h.make_node("Pad", ["x", "pads", "", "axes"], ["y"], mode=mode)],
                          [("x", F, [2, 3, 5, 6])], [("y", F, None)],
                          [const("pads", np.array([1, 2, 2, 1], np.int64)),
                           const("axes", np.array([2, -1], np.int64))]),
                    {"x": (F, [2, 3, 5, 6])}))
    out.append(("pad_wrap_opset19",
                model([h.make_node("Pad", ["x", "pads"], ["y"], mode="wrap")],
                      [("x", F, [1, 2, 4, 5])], [("y", F, None)],
                      [const("pads", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))], opset=19),
                {"x": (F, [1, 2, 4, 5])}))
    for opset in (18, 21):
        ng = 2
        sb = 4 if opset == 21 else ng
        out.append(("groupnorm_opset%d" % opset,
                    model([h.make_node("GroupNormalization", ["x", "s", "b"], ["y"],
                                       num_groups=ng, epsilon=1e-5)],
                          [("x", F, [2, 4, 3, 3])], [("y", F, None)],
                          [const("s", np.linspace(0.5, 1.5, sb).astype(np.float32)),
                           const("b", np.linspace(-1, 1, sb).astype(np.float32))],
                          opset=opset, ir=10 if opset == 21 else 8),
                    {"x": (F, [2, 4, 3, 3])}))
    out.append(("mish", model([h.make_node("Mish", ["x"], ["y"])], [("x", F, [3, 7])],
                              [("y", F, None)]), {"x": (F, [3, 7], "wide")}))
    for op in ("BitwiseAnd", "BitwiseOr", "BitwiseXor"):
        out.append((op.lower(), model([h.make_node(op, ["a", "b"], ["y"])],
                                      [("a", I32, [4, 5]), ("b", I32, [5])], [("y", I32, None)]),
                    {"a": (I32, [4, 5]), "b": (I32, [5])}))
    out.append(("bitwisenot", model([h.make_node("BitwiseNot", ["a"], ["y"])],
                                    [("a", U8, [4, 5])], [("y", U8, None)]),
                {"a": (U8, [4, 5])}))
    out.append(("centercroppad",
                model([h.make_node("CenterCropPad", ["x", "shape"], ["y"], axes=[1, 2])],
                      [("x", F, [3, 7, 4])], [("y", F, None)],
                      [const("shape", np.array([5, 6], np.int64))]),
                {"x": (F, [3, 7, 4])}))
    out.append(("col2im",
                model([h.make_node("Col2Im", ["x", "img", "blk"], ["y"], strides=[1, 1],
                                   pads=[0, 1, 0, 1])],
                      [("x", F, [1, 2 * 4, 20])], [("y", F, None)],
                      [const("img", np.array([5, 4], np.int64)),
                       const("blk", np.array([2, 2], np.int64))]),
                {"x": (F, [1, 8, 20])}))
    for aa in (0, 1):
        out.append(("resize_linear_antialias%d" % aa,
                    model([h.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear",
                                       antialias=aa)],
                          [("x", F, [1, 2, 12, 16])], [("y", F, None)],
                          [const("scales", np.array([1, 1, 0.5, 0.375], np.float32))]),
                    {"x": (F, [1, 2, 12, 16])}))
    out.append(("resize_cubic_antialias",
                model([h.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic",
                                   antialias=1)],
                      [("x", F, [1, 1, 10, 10])], [("y", F, None)],
                      [const("scales", np.array([1, 1, 0.6, 0.6], np.float32))]),
                {"x": (F, [1, 1, 10, 10])}))
    for policy in ("not_larger", "not_smaller"):
        out.append(("resize_keep_aspect_%s" % policy,
                    model([h.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest",
                                       keep_aspect_ratio_policy=policy, axes=[2, 3])],
                          [("x", F, [1, 2, 6, 8])], [("y", F, None)],
                          [const("sizes", np.array([9, 9], np.int64))]),
                    {"x": (F, [1, 2, 6, 8])}))
    # Resize of opsets 18 and 19 beyond the cases above: antialias by sizes, with
    # exclude_outside, other coordinate modes and an axis growing beside one shrinking; the
    # axes attribute (scales, sizes, reversed, negative, with a crop); keep_aspect_ratio_policy
    # with linear sampling; half_pixel_symmetric where in * scale is not a whole length.
    x4 = ("x", F, [1, 2, 12, 16])
    spec4 = {"x": (F, [1, 2, 12, 16])}
    for mode, ctm in (("linear", "half_pixel"), ("linear", "pytorch_half_pixel"),
                      ("linear", "align_corners"), ("linear", "asymmetric"),
                      ("cubic", "half_pixel"), ("cubic", "align_corners")):
        out.append(("resize_%s_antialias_sizes_%s" % (mode, ctm),
                    model([h.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode=mode,
                                       antialias=1, coordinate_transformation_mode=ctm)],
                          [x4], [("y", F, None)],
                          [const("sizes", np.array([1, 2, 5, 7], np.int64))]), spec4))
    out.append(("resize_cubic_antialias_exclude_outside",
                model([h.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic",
                                   antialias=1, exclude_outside=1, cubic_coeff_a=-0.5)],
                      [x4], [("y", F, None)],
                      [const("scales", np.array([1, 1, 0.3, 0.45], np.float32))]), spec4))
    out.append(("resize_linear_antialias_exclude_outside",
                model([h.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear",
                                   antialias=1, exclude_outside=1)],
                      [x4], [("y", F, None)],
                      [const("scales", np.array([1, 1, 0.25, 0.2], np.float32))]), spec4))
    for mode in ("linear", "cubic"):
        out.append(("resize_%s_antialias_shrink_and_grow" % mode,
                    model([h.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode,
                                       antialias=1)],
                          [x4], [("y", F, None)],
                          [const("scales", np.array([1, 1, 0.4, 1.75], np.float32))]), spec4))
        out.append(("resize_%s_antialias_axes_opset19" % mode,
                    model([h.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode,
                                       antialias=1, axes=[3, 2],
                                       coordinate_transformation_mode="half_pixel_symmetric")],
                          [x4], [("y", F, None)],
                          [const("scales", np.array([0.3, 0.6], np.float32))], opset=19),
                    spec4))
    for mode in ("nearest", "linear", "cubic"):
        out.append(("resize_axes_scales_%s" % mode,
                    model([h.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode,
                                       axes=[2, 3])],
                          [x4], [("y", F, None)],
                          [const("scales", np.array([0.5, 1.5], np.float32))]), spec4))
    out.append(("resize_axes_sizes_negative",
                model([h.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear",
                                   axes=[-1])],
                      [x4], [("y", F, None)], [const("sizes", np.array([23], np.int64))]),
                spec4))
    out.append(("resize_axes_crop_and_resize",
                model([h.make_node("Resize", ["x", "roi", "", "sizes"], ["y"], mode="linear",
                                   axes=[3, 2], extrapolation_value=2.5,
                                   coordinate_transformation_mode="tf_crop_and_resize")],
                      [x4], [("y", F, None)],
                      [const("roi", np.array([-0.1, 0.2, 0.9, 1.2], np.float32)),
                       const("sizes", np.array([9, 7], np.int64))]), spec4))
    for policy in ("not_larger", "not_smaller"):
        for opset, ctm in ((18, "half_pixel"), (19, "half_pixel_symmetric")):
            out.append(("resize_keep_aspect_%s_linear_opset%d" % (policy, opset),
                        model([h.make_node("Resize", ["x", "", "", "sizes"], ["y"],
                                           mode="linear", keep_aspect_ratio_policy=policy,
                                           coordinate_transformation_mode=ctm, axes=[2, 3])],
                              [("x", F, [1, 2, 7, 9])], [("y", F, None)],
                              [const("sizes", np.array([10, 10], np.int64))],
                              opset=opset),
                        {"x": (F, [1, 2, 7, 9])}))
    out.append(("resize_keep_aspect_not_smaller_cubic_axes",
                model([h.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="cubic",
                                   keep_aspect_ratio_policy="not_smaller", axes=[3, 2])],
                      [x4], [("y", F, None)], [const("sizes", np.array([5, 4], np.int64))]),
                spec4))
    for mode in ("nearest", "linear", "cubic"):
        out.append(("resize_half_pixel_symmetric_%s" % mode,
                    model([h.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode,
                                       coordinate_transformation_mode="half_pixel_symmetric")],
                          [("x", F, [1, 1, 5, 7])], [("y", F, None)],
                          [const("scales", np.array([1, 1, 1.7, 0.8], np.float32))], opset=19),
                    {"x": (F, [1, 1, 5, 7])}))
    # GridSample with opset 16's mode names and opset 20's, every padding mode, both corner
    # conventions, grids reaching well outside [-1, 1] ("wide": [-4, 4)); 3-D at opset 20.
    for opset, modes in ((16, ("bilinear", "nearest", "bicubic")),
                         (20, ("linear", "nearest", "cubic"))):
        for mode in modes:
            for pad in ("zeros", "border", "reflection"):
                for ac in (0, 1):
                    out.append(("gridsample_%s_%s_ac%d_opset%d" % (mode, pad, ac, opset),
                                model([h.make_node("GridSample", ["x", "g"], ["y"], mode=mode,
                                                   padding_mode=pad, align_corners=ac)],
                                      [("x", F, [2, 3, 5, 6]), ("g", F, [2, 4, 7, 2])],
                                      [("y", F, None)], opset=opset, ir=9 if opset == 20 else 8),
                                {"x": (F, [2, 3, 5, 6]), "g": (F, [2, 4, 7, 2], "wide")}))
    for mode in ("linear", "nearest"):
        for pad in ("zeros", "border", "reflection"):
            out.append(("gridsample_3d_%s_%s" % (mode, pad),
                        model([h.make_node("GridSample", ["x", "g"], ["y"], mode=mode,
                                           padding_mode=pad, align_corners=0)],
                              [("x", F, [1, 2, 4, 5, 6]), ("g", F, [1, 3, 4, 5, 3])],
                              [("y", F, None)], opset=20, ir=9),
                        {"x": (F, [1, 2, 4, 5, 6]), "g": (F, [1, 3, 4, 5, 3], "wide")}))
    for red in ("max", "min"):
        out.append(("scatterelements_%s" % red,
                    model([h.make_node("ScatterElements", ["x", "idx", "upd"], ["y"], axis=1,
                                       reduction=red)],
                          [("x", F, [3, 4])], [("y", F, None)],
                          [const("idx", np.array([[0, 1], [2, 2], [3, 0]], np.int64)),
                           const("upd", np.linspace(-2, 2, 6).reshape(3, 2).astype(np.float32))]),
                    {"x": (F, [3, 4])}))
        out.append(("scatternd_%s" % red,
                    model([h.make_node("ScatterND", ["x", "idx", "upd"], ["y"], reduction=red)],
                          [("x", F, [4, 3])], [("y", F, None)],
                          [const("idx", np.array([[1], [3], [1]], np.int64)),
                           const("upd", np.linspace(-2, 2, 9).reshape(3, 3).astype(np.float32))]),
                    {"x": (F, [4, 3])}))
    out.append(("averagepool_dilations_opset19",
                model([h.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2],
                                   dilations=[2, 2], strides=[1, 1])],
                      [("x", F, [1, 2, 7, 7])], [("y", F, None)], opset=19),
                {"x": (F, [1, 2, 7, 7])}))
    for approx in ("none", "tanh"):
        out.append(("gelu_opset20_%s" % approx,
                    model([h.make_node("Gelu", ["x"], ["y"], approximate=approx)],
                          [("x", F, [4, 9])], [("y", F, None)], opset=20, ir=9),
                    {"x": (F, [4, 9], "wide")}))
    # A small convolutional network at opset 21 / IR 10 (what a current exporter writes).
    w = np.random.default_rng(7).standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.2
    out.append(("convnet_opset21",
                model([h.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                       h.make_node("Relu", ["c"], ["r"]),
                       h.make_node("ReduceMean", ["r", "ax"], ["m"], keepdims=1),
                       h.make_node("Flatten", ["m"], ["y"])],
                      [("x", F, [1, 3, 8, 8])], [("y", F, None)],
                      [const("w", w), const("ax", np.array([2, 3], np.int64))], opset=21, ir=10),
                {"x": (F, [1, 3, 8, 8])}))
    return out


def run(cmd, env=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return p.returncode, p.stdout, p.stderr


def rel_l2(a, b):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


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
    failures = 0
    for name, m, spec in cases():
        if only and name not in only:
            continue
        d = os.path.join(work, name)
        for sub in ("veil", "ort"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        path = os.path.join(d, "model.onnx")
        onnx.save(m, path)
        rng = np.random.default_rng(99)
        args = []
        for iname, s in spec.items():
            dt, shape = s[0], s[1]
            kind = s[2] if len(s) > 2 else ""
            if dt == F:
                a = rng.uniform(0.1 if kind == "pos" else -1, 1, size=shape)
                a = (a * (4 if kind == "wide" else 1)).astype(np.float32)
            elif dt == U8:
                a = rng.integers(0, 256, size=shape).astype(np.uint8)
            else:
                a = rng.integers(-1000, 1000, size=shape).astype(NP[dt])
            f = os.path.join(d, iname + ".npy")
            np.save(f, a)
            args.append("%s=%s" % (iname, f))
        rc, out, err = run(["node", os.path.join(HERE, "ort_run.js"), "run", path,
                            os.path.join(d, "ort"), "1"] + args)
        if rc != 0:
            print("FAIL %s: onnxruntime: %s" % (name, err.strip()[-300:]))
            failures += 1
            continue
        cmd = [veil, "run", path, "--threads", "1", "--json", "--output-dir",
               os.path.join(d, "veil")]
        for a in args:
            cmd += ["--input", a]
        rc, out, err = run(cmd)
        if rc != 0:
            print("FAIL %s: veil run: %s" % (name, err.strip()[-300:]))
            failures += 1
            continue
        for o in json.loads(out)["outputs"]:
            v = np.load(os.path.join(d, "veil", o["name"] + ".npy"))
            r = np.load(os.path.join(d, "ort", o["name"] + ".npy"))
            if v.shape != r.shape:
                print("FAIL %s output %s: shape %s, ONNX Runtime %s" %
                      (name, o["name"], v.shape, r.shape))
                failures += 1
                continue
            if np.issubdtype(r.dtype, np.floating):
                e = rel_l2(v, r)
                ok = e <= TOL
                detail = "relative L2 %.2e" % e
            else:
                ok = np.array_equal(v, r)
                detail = "exact" if ok else "differs"
            failures += 0 if ok else 1
            print("%s %s output %s: %s" % ("ok  " if ok else "FAIL", name, o["name"], detail))
    print("opset 18-21 agreement: %s" %
          ("all passed" if failures == 0 else "%d failures" % failures))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
