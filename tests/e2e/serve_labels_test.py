#!/usr/bin/env python3
"""Version labels as TF Serving checks them: a label on a version that is not AVAILABLE refuses
the config at start (FAILED_PRECONDITION "... which is not currently available for inference")
unless --allow_version_labels_for_unavailable_models, and a config reload with such a label
keeps the current config, labels included.

Usage: serve_labels_test.py --veil BUILD/src/cli/veil --work DIR"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_common import (Server, check, check_eq, finish, fresh_dir, free_port,  # noqa: E402
                          make_affine)

MSG = "which is not currently available for inference"


def config(base, labels, policy="all {}"):
    body = "".join("    version_labels { key: '%s' value: %d }\n" % kv for kv in labels)
    return ("model_config_list {\n  config {\n    name: 'm' base_path: '%s'\n"
            "    model_platform: 'onnx'\n    model_version_policy { %s }\n%s  }\n}\n" %
            (base, policy, body))


def predict(srv, label):
    return srv.rest_json("POST", "/v1/models/m/labels/%s:predict" % label,
                         {"instances": [[1, 1, 1]]})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    work = fresh_dir(args.work)
    base = os.path.join(work, "models", "m")
    for v in (1, 2):
        make_affine(os.path.join(base, str(v), "model.onnx"), 0.0, float(v))
    cfg = os.path.join(work, "models.config")

    print("refused at start:")
    for labels, policy, what in (([("canary", 3)], "all {}", "a version that does not exist"),
                                 ([("old", 1)], "latest { num_versions: 1 }",
                                  "a version the policy does not load")):
        with open(cfg, "w") as f:
            f.write(config(base, labels, policy))
        r = subprocess.run([args.veil, "serve", "--host=127.0.0.1", "--port=%d" % free_port(),
                            "--rest_api_port=%d" % free_port(), "--plaintext",
                            "--model_config_file=" + cfg], capture_output=True, text=True,
                           timeout=60)
        want = "Request to assign label to version %d of model m, %s" % (labels[0][1], MSG)
        check(r.returncode != 0 and "Failed to start server" in r.stderr and
              "FAILED_PRECONDITION" in r.stderr and want in r.stderr,
              "label on %s refuses to start (rc %d, %r)" % (what, r.returncode,
                                                            r.stderr.strip()[-200:]))
    srv = Server(args.veil, work, ["--plaintext", "--model_config_file=" + cfg,
                                   "--allow_version_labels_for_unavailable_models"], "allow")
    try:
        st, _ = srv.rest_json("GET", "/v1/models/m")
        check_eq(st, 200, "--allow_version_labels_for_unavailable_models starts anyway")
    finally:
        srv.stop()

    print("reload with an unavailable label keeps the current config:")
    with open(cfg, "w") as f:
        f.write(config(base, [("stable", 1)]))
    srv = Server(args.veil, work, ["--plaintext", "--model_config_file=" + cfg,
                                   "--model_config_file_poll_wait_seconds=1"], "reload")
    try:
        st, js = predict(srv, "stable")
        check_eq((st, js), (200, {"predictions": [[1.0, 1.0, 1.0]]}), "stable is version 1")
        with open(cfg, "w") as f:
            f.write(config(base, [("stable", 2), ("canary", 7)]))
        deadline = time.time() + 15
        while time.time() < deadline and MSG not in srv.read_log():
            time.sleep(0.2)
        log = srv.read_log()
        check("not reloaded, keeping the current models" in log and
              "Request to assign label to version 7 of model m, " + MSG in log,
              "the reload is refused with TF Serving's message")
        st, js = predict(srv, "stable")
        check_eq((st, js), (200, {"predictions": [[1.0, 1.0, 1.0]]}),
                 "stable still points at version 1")
        st, js = predict(srv, "canary")
        check(st == 400 and "Unrecognized servable version label: canary" in js.get("error", ""),
              "canary was not added (%d %r)" % (st, js))
        with open(cfg, "w") as f:
            f.write(config(base, [("stable", 2), ("canary", 1)]))
        deadline = time.time() + 15
        while time.time() < deadline and predict(srv, "canary")[0] != 200:
            time.sleep(0.2)
        check_eq(predict(srv, "stable"), (200, {"predictions": [[2.0, 2.0, 2.0]]}),
                 "a reload with available labels applies: stable is version 2")
        check_eq(predict(srv, "canary"), (200, {"predictions": [[1.0, 1.0, 1.0]]}),
                 "canary is version 1")
    finally:
        srv.stop()
    finish()


if __name__ == "__main__":
    main()
