#!/usr/bin/env bash
# Runs bench/serve on a release build: ResNet-50 through `veil serve` (gRPC, mutual TLS,
# batching, 8 clients at batch 1, then 1 client) beside the engine alone at its best batch
# size, printed side by side, then KServe v2 gRPC and REST (binary tensors) beside TF Serving's
# gRPC. Usage: bench/serve/run.sh [seconds per window] [clients] [rounds]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
build=${VEIL_BENCH_BUILD:-build/release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_serve >/dev/null
model=${VEIL_BENCH_MODEL:-$build/bench/serve/resnet50.onnx}
if [ ! -f "$model" ]; then
    /usr/bin/python3 bench/serve/export_resnet50.py "$model" >/dev/null
fi
"$build/bench/serve/bench_serve" "$model" "${1:-10}" "${2:-8}" "${3:-3}"
