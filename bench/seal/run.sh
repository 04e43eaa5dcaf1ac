#!/usr/bin/env bash
# Runs bench/seal on a release build: seal/unseal throughput for a 512 MiB file (or $1 MiB)
# beside the machine's raw AES-256-GCM throughput, and `openssl speed` as a second reference.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
scripts/install-deps.sh >/dev/null
cmake --preset release >/dev/null
cmake --build --preset release --target veil bench_seal >/dev/null
build/release/bench/seal/bench_seal build/release/src/cli/veil "${1:-512}" "${2:-/tmp}"
echo "openssl speed -evp aes-256-gcm (1 MiB blocks, $(nproc) processes):"
openssl speed -evp aes-256-gcm -bytes 1048576 -seconds 2 -multi "$(nproc)" 2>/dev/null | tail -1
