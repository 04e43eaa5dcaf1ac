#!/usr/bin/env bash
# The main command: on a fresh Debian 12 machine, installs what Veil needs, builds it, makes a
# real ResNet-50 ONNX model locally (fixed seed, no download), makes a model key, seals the
# model, inspects it, and unseals it again, checking the result byte for byte. Everything lands
# in one folder (default .veil-demo/ in the repository; VEIL_DEMO_DIR overrides), and a second
# run reuses what exists there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dir=${VEIL_DEMO_DIR:-$root/.veil-demo}
step() { printf '\n== %s\n' "$*"; }

step "installing dependencies"
scripts/install-deps.sh
step "building (release)"
cmake --preset release >/dev/null
cmake --build --preset release --target veil >/dev/null
veil=$root/build/release/src/cli/veil
mkdir -p "$dir/models/resnet50/1"
cd "$dir"

step "making a ResNet-50 ONNX model with fixed random weights"
if [ ! -s resnet50.onnx ]; then
    /usr/bin/python3 "$root/scripts/make_model.py" resnet50 resnet50.onnx
fi
ls -l resnet50.onnx

step "making a model key (mode 0600)"
[ -f model.key ] || "$veil" keygen -o model.key --id resnet50-key-1
ls -l model.key

step "sealing the model"
start=$(date +%s.%N)
"$veil" seal resnet50.onnx --key model.key --name resnet50 --version 1 \
    -o models/resnet50/1/model.onnx.veil
echo "took $(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo '?') s"

step "inspecting the sealed file (no key needed)"
"$veil" inspect models/resnet50/1/model.onnx.veil

step "unsealing with the expected name and version"
rm -f resnet50.unsealed.onnx
"$veil" unseal models/resnet50/1/model.onnx.veil --key model.key --name resnet50 --version 1 \
    -o resnet50.unsealed.onnx
cmp resnet50.onnx resnet50.unsealed.onnx
echo "round trip: identical ($(stat -c %s resnet50.onnx) bytes)"
rm -f resnet50.unsealed.onnx

step "refusing a rollback: asking for version 2 of a version-1 file"
if "$veil" unseal models/resnet50/1/model.onnx.veil --key model.key --version 2 -o x.onnx; then
    echo "error: a version mismatch was accepted"
    exit 1
fi
[ ! -e x.onnx ] && echo "refused, and no plaintext was written"

step "done: files are in $dir"
