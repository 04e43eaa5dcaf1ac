#!/usr/bin/env python3
"""`veil serve` as a TF Serving command line meets it: TensorFlow-only flags (TFLite, XLA, TPU,
SavedModel rewriting, TF thread pools) are accepted with one warning line each instead of
refusing to start, bare boolean flags do not swallow the next argument, unknown flags are still
refused, and --help lists every flag the parser accepts (read from src/cli/cmd_serve.c).

Usage: serve_flags_test.py --veil BUILD/src/cli/veil --src SOURCE_DIR --work DIR"""

import argparse
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_common import Server, check, check_eq, finish, fresh_dir, make_affine  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    work = fresh_dir(args.work)

    print("--help completeness:")
    r = subprocess.run([args.veil, "serve", "--help"], capture_output=True, text=True, timeout=30)
    check_eq(r.returncode, 0, "--help exits 0")
    shown = set(re.findall(r"--([a-z][a-z0-9_-]*)", r.stdout))
    with open(os.path.join(args.src, "src", "cli", "cmd_serve.c")) as f:
        src = f.read()
    accepted = set(re.findall(r'strcmp\(name, "([a-z0-9_-]+)"\)', src))
    for lst in ("ignored_flags", "tf_only_flags", "compat_bool_flags"):
        m = re.search(lst + r"\[\] = \{(.*?)\};", src, re.S)
        check(m is not None, "list %s found in cmd_serve.c" % lst)
        if m:
            accepted |= set(re.findall(r'"([a-z0-9_]+)"', m.group(1)))
    # A flag spelled with dashes and with underscores needs to be shown once.
    missing = sorted(a for a in accepted
                     if a not in shown and a.replace("_", "-") not in shown and
                     a.replace("-", "_") not in shown)
    check_eq(missing, [], "every accepted flag is in --help")
    check("model_config_file_poll_wait_seconds" in shown,
          "--model_config_file_poll_wait_seconds is in --help")

    base = os.path.join(work, "models", "m")
    make_affine(os.path.join(base, "1", "model.onnx"), 2.0, 1.0)
    tf_only = ["--prefer_tflite_model", "--use_tflite_model=true",
               "--thread_pool_factory_config_file=/nonexistent/pool.config",
               "--remove_unused_fields_from_bundle_metagraph", "--xla_cpu_compilation_enabled",
               "--mixed_precision=bfloat16", "--num_tflite_pools=2"]
    print("TensorFlow-only flags:")
    # Bare booleans first, each followed by a real flag it must not swallow.
    srv = Server(args.veil, work, tf_only + ["--model_name=m", "--model_base_path=" + base,
                                             "--plaintext"], "tfonly")
    try:
        st, js = srv.rest_json("GET", "/v1/models/m")
        check_eq(st, 200, "serves model m after the TF-only flags")
        log = srv.read_log()
    finally:
        srv.stop()
    for f in tf_only:
        name = f[2:].split("=")[0]
        lines = [ln for ln in log.splitlines() if "--%s does not apply" % name in ln]
        check_eq(len(lines), 1, "one warning line for --%s" % name)
        check(all("warn" in ln for ln in lines), "the line is a warning (%r)" % lines[:1])
    print("refusals:")
    for extra, msg in ((["--no_such_flag=1"], "unknown flag --no_such_flag"),
                       (["--grpc_socket_path=/tmp/s"], "not supported")):
        r = subprocess.run([args.veil, "serve", "--model_name=m", "--model_base_path=" + base,
                            "--plaintext", "--port=0", "--rest_api_port=0"] + extra,
                           capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and msg in r.stderr,
              "refuses %s (%r)" % (extra[0], r.stderr.strip()[-120:]))
    finish()


if __name__ == "__main__":
    main()
