#!/usr/bin/env bash
# Runs bench/kbs on a release build: key releases per second with full RA-TLS verification.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
scripts/install-deps.sh >/dev/null
cmake --preset release >/dev/null
cmake --build --preset release --target veil bench_kbs >/dev/null
build/release/bench/kbs/bench_kbs build/release/src/cli/veil "${1:-10}" "${2:-8}"
