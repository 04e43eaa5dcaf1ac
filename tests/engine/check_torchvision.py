#!/usr/bin/python3
"""torchvision architectures exported at opset 17: Veil's engine against ONNX Runtime.

Every architecture of docs/engine.md ("Real models") is built by Debian's python3-torchvision
0.14 with random weights from a fixed seed (batch-norm statistics randomised so folding them
is exercised), exported by torch.onnx at opset 17 with a dynamic batch dimension (detection
models at batch 1), cached in WORKDIR/tv/, and run on random inputs through `veil run
--output-dir` and ONNX Runtime (tests/engine/ort_run.js) at batch 1 and 8 (classification and
segmentation) or 1 (detection, video, optical flow). An output agrees when its relative L2
error is at most 1e-4, or 3x ONNX Runtime's own disagreement between its `all` and `disabled`
graph optimisation levels where that is larger. An architecture torch cannot export is listed
with torch's error, not counted as a failure of the engine.

Usage: check_torchvision.py VEIL_BINARY WORKDIR [NAME...]
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
    import torch
    import torchvision
except ImportError as e:
    print("SKIP: python3-torch/python3-torchvision/python3-numpy not available: %s" % e)
    sys.exit(77)

M = torchvision.models
CLS = [("resnet18", M.resnet18), ("resnet50", M.resnet50), ("resnet101", M.resnet101),
       ("resnext50_32x4d", M.resnext50_32x4d), ("wide_resnet50_2", M.wide_resnet50_2),
       ("mobilenet_v2", M.mobilenet_v2), ("mobilenet_v3_small", M.mobilenet_v3_small),
       ("mobilenet_v3_large", M.mobilenet_v3_large), ("efficientnet_b0", M.efficientnet_b0),
       ("efficientnet_b3", M.efficientnet_b3), ("efficientnet_v2_s", M.efficientnet_v2_s),
       ("regnet_y_400mf", M.regnet_y_400mf), ("regnet_y_8gf", M.regnet_y_8gf),
       ("convnext_tiny", M.convnext_tiny), ("densenet121", M.densenet121),
       ("squeezenet1_1", M.squeezenet1_1), ("shufflenet_v2_x1_0", M.shufflenet_v2_x1_0),
       ("mnasnet1_0", M.mnasnet1_0), ("googlenet", M.googlenet), ("inception_v3", M.inception_v3),
       ("vgg16_bn", M.vgg16_bn), ("alexnet", M.alexnet), ("vit_b_16", M.vit_b_16),
       ("swin_t", M.swin_t), ("maxvit_t", getattr(M, "maxvit_t", None))]
SEG = [("fcn_resnet50", M.segmentation.fcn_resnet50),
       ("deeplabv3_mobilenet_v3_large", M.segmentation.deeplabv3_mobilenet_v3_large),
       ("lraspp_mobilenet_v3_large", M.segmentation.lraspp_mobilenet_v3_large)]
DET = [("ssdlite320_mobilenet_v3_large", M.detection.ssdlite320_mobilenet_v3_large),
       ("fasterrcnn_mobilenet_v3_large_320_fpn",
        M.detection.fasterrcnn_mobilenet_v3_large_320_fpn),
       ("retinanet_resnet50_fpn", M.detection.retinanet_resnet50_fpn),
       ("keypointrcnn_resnet50_fpn", M.detection.keypointrcnn_resnet50_fpn)]
OTHER = [("r3d_18", M.video.r3d_18), ("raft_small", M.optical_flow.raft_small)]


def build(name, ctor):
    torch.manual_seed(0)
    kw = {}
    if name in ("googlenet", "inception_v3"):
        kw = {"aux_logits": False, "init_weights": True}
    if name.startswith(("fcn_", "deeplab", "lraspp")):
        kw = {"weights_backbone": None, "aux_loss": False}
    if "rcnn" in name or "retinanet" in name or "ssdlite" in name:
        kw = {"weights_backbone": None}
    m = ctor(weights=None, **kw)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    with torch.no_grad():
        for prm in m.parameters():
            # Zero-initialised weights (ViT's head) would make every output 0 and the check
            # vacuous: give them small random values.
            if prm.dim() > 1 and not prm.any():
                prm.normal_(0, 0.02)
    return m.eval()


def shape_of(name):
    if name == "inception_v3":
        return (3, 299, 299)
    if name == "r3d_18":
        return (3, 8, 112, 112)
    if name.startswith("ssdlite"):
        return (3, 320, 320)
    if "rcnn" in name or "retinanet" in name:
        return (3, 320, 320)
    if name == "raft_small":
        return (3, 128, 128)
    if name.startswith(("fcn_", "deeplab", "lraspp")):
        return (3, 256, 256)
    return (3, 224, 224)


class Wrap(torch.nn.Module):
    """Segmentation models return a dict; detection models take a list of images."""

    def __init__(self, m, kind):
        super().__init__()
        self.m, self.kind = m, kind

    def forward(self, x, *rest):
        if self.kind == "seg":
            return self.m(x)["out"]
        if self.kind == "det":
            out = self.m([x[0]])[0]
            return tuple(out[k] for k in sorted(out))
        if self.kind == "flow":
            return self.m(x, rest[0], num_flow_updates=2)[-1]
        return self.m(x)


def export(name, ctor, kind, path):
    m = Wrap(build(name, ctor), kind)
    shp = shape_of(name)
    x = torch.rand((1,) + shp)
    args = (x, torch.rand((1,) + shp)) if kind == "flow" else (x,)
    names = ["input", "input2"] if kind == "flow" else ["input"]
    dyn = {} if kind in ("det", "flow", "video") else {"input": {0: "batch"}}
    torch.onnx.export(m, args, path + ".tmp", opset_version=17, input_names=names,
                      dynamic_axes=dyn or None, do_constant_folding=True)
    os.rename(path + ".tmp", path)


def run(cmd, env=None, timeout=1800):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                       timeout=timeout)
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
    os.makedirs(os.path.join(work, "tv"), exist_ok=True)
    probe = run(["node", os.path.join(HERE, "ort_run.js"), "probe"])
    if probe[0] == 77 or "not installed" in probe[2]:
        print("SKIP: onnxruntime-node is not installed (cd tests/peers && npm install)")
        return 77
    archs = [(n, c, "cls") for n, c in CLS] + [(n, c, "seg") for n, c in SEG] + \
        [(n, c, "det") for n, c in DET] + [(OTHER[0][0], OTHER[0][1], "video"),
                                            (OTHER[1][0], OTHER[1][1], "flow")]
    failures, rows = 0, []
    for name, ctor, kind in archs:
        if only and name not in only:
            continue
        if ctor is None:
            rows.append((name, "-", "not in this torchvision", "-", "-"))
            continue
        path = os.path.join(work, "tv", name + ".onnx")
        if not os.path.exists(path):
            try:
                export(name, ctor, kind, path)
            except Exception as e:  # torch's own limits are reported, not failures
                msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else repr(e)
                print("NOTE %s: torch cannot export it: %s" % (name, msg))
                rows.append((name, "-", "torch export fails: " + msg, "-", "-"))
                continue
        batches = (1, 8) if kind in ("cls", "seg") else (1,)
        for batch in batches:
            d = os.path.join(work, "tv", "%s_b%d" % (name, batch))
            for sub in ("veil", "ort_all", "ort_disabled"):
                os.makedirs(os.path.join(d, sub), exist_ok=True)
            rng = np.random.default_rng(1234)
            args = []
            for iname in (["input", "input2"] if kind == "flow" else ["input"]):
                a = rng.uniform(0, 1, size=(batch,) + shape_of(name)).astype(np.float32)
                f = os.path.join(d, iname + ".npy")
                np.save(f, a)
                args.append("%s=%s" % (iname, f))
            ok_ort = True
            for level in ("all", "disabled"):
                env = dict(os.environ, ORT_OPT_LEVEL=level)
                rc, out, err = run(["node", os.path.join(HERE, "ort_run.js"), "run", path,
                                    os.path.join(d, "ort_" + level), "2"] + args, env=env)
                if rc != 0:
                    print("NOTE %s batch %d: onnxruntime (%s) fails: %s" %
                          (name, batch, level, err.strip()[-200:]))
                    ok_ort = False
                    break
            if not ok_ort:
                rows.append(("%s b%d" % (name, batch), "-", "ONNX Runtime fails", "-", "-"))
                continue
            cmd = [veil, "run", path, "--threads", "2", "--json", "--output-dir",
                   os.path.join(d, "veil")]
            for a in args:
                cmd += ["--input", a]
            rc, out, err = run(cmd)
            if rc != 0:
                print("FAIL %s batch %d: veil run: %s" % (name, batch, err.strip()[-300:]))
                rows.append(("%s b%d" % (name, batch), "no", err.strip()[-120:], "-", "FAIL"))
                failures += 1
                continue
            worst, worst_self, ok_all = 0.0, 0.0, True
            for o in json.loads(out)["outputs"]:
                v = np.load(os.path.join(d, "veil", o["name"] + ".npy"))
                r = np.load(os.path.join(d, "ort_all", o["name"] + ".npy"))
                r0 = np.load(os.path.join(d, "ort_disabled", o["name"] + ".npy"))
                if v.shape != r.shape:
                    print("FAIL %s batch %d output %s: shape %s, ONNX Runtime %s" %
                          (name, batch, o["name"], v.shape, r.shape))
                    ok_all = False
                    continue
                if not np.issubdtype(r.dtype, np.floating):
                    if not np.array_equal(v, r):
                        ok_all = False
                    continue
                e, se = rel_l2(v, r), rel_l2(r0, r)
                ok = e <= max(TOL, 3 * se)
                ok_all = ok_all and ok
                worst, worst_self = max(worst, e), max(worst_self, se)
            failures += 0 if ok_all else 1
            rows.append(("%s b%d" % (name, batch), "yes", "%.2e" % worst, "%.2e" % worst_self,
                         "ok" if ok_all else "FAIL"))
            print("%s %s batch %d: relative L2 %.2e (ONNX Runtime all vs disabled %.2e)" %
                  ("ok  " if ok_all else "FAIL", name, batch, worst, worst_self))
    print("| architecture | loads | rel. L2 vs ONNX Runtime | ONNX Runtime self | verdict |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| %s |" % " | ".join(r))
    print("torchvision agreement: %s" %
          ("all passed" if failures == 0 else "%d failures" % failures))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
