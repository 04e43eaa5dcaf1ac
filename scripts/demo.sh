#!/usr/bin/env bash
# The main command: the whole confidential flow on one machine, with sim evidence (no TEE here).
#
#   1. installs what Veil needs and builds it (release);
#   2. makes a ResNet-50 ONNX model with fixed random weights (no download);
#   3. makes a model key, a sim attestation key, TLS certificates for mutual TLS clients;
#   4. seals the model into a model repository;
#   5. starts the key broker (`veil kbs`), imports the key and a policy naming this build;
#   6. starts `veil serve --kbs ... --tee sim`: it attests, gets the key and its serving
#      certificate, decrypts the model in memory and serves gRPC and REST over mutual TLS;
#   7. runs `veil predict` and short `veil bench` runs (batch 1, then 4) as a client that pins
#      the broker's CA;
#   8. shuts everything down.
#
# Everything lands in one folder: VEIL_DEMO_DIR, default .veil-demo/ in the repository. A second
# run reuses the model, keys and certificates there. VEIL_DEMO_MODEL=mobilenet_v2 uses a
# smaller model; VEIL_BIN=PATH uses an existing veil binary instead of building one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${VEIL_DEMO_DIR:-$root/.veil-demo}
model=${VEIL_DEMO_MODEL:-resnet50}
bench_s=${VEIL_DEMO_BENCH_SECONDS:-5}
step() { printf '\n== %s\n' "$*"; }
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    return 0
}
trap cleanup EXIT
free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_for() { # wait_for SECONDS COMMAND...: until COMMAND succeeds
    local limit=$1
    shift
    for _ in $(seq $((limit * 10))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

if [ -n "${VEIL_BIN:-}" ]; then
    veil=$VEIL_BIN
else
    step "1. installing dependencies and building Veil"
    cd "$root"
    scripts/install-deps.sh
    cmake --preset release >/dev/null
    cmake --build --preset release --target veil >/dev/null
    veil=$root/build/release/src/cli/veil
fi
mkdir -p "$dir"
cd "$dir"
echo "working in $dir"

step "2. making the $model ONNX model (fixed seed, no download)"
if [ ! -s "$model.onnx" ]; then
    /usr/bin/python3 "$root/scripts/make_model.py" "$model" "$model.onnx"
fi
ls -l "$model.onnx"

step "3. keys and certificates"
[ -f model.key ] || "$veil" keygen -o model.key --id "$model-key-1"
[ -f sim.key ] || "$veil" keygen --sim -o sim.key
[ -f clients/ca.pem ] || "$veil" certs -o clients --host localhost --host 127.0.0.1
echo "model key: model.key; sim attestation key: sim.key; client CA and certificate: clients/"

step "4. sealing the model into the repository"
if [ ! -f "models/$model/1/model.onnx.veil" ]; then
    mkdir -p "models/$model/1"
    "$veil" seal "$model.onnx" --key model.key --name "$model" --version 1 \
        -o "models/$model/1/model.onnx.veil"
fi
"$veil" inspect "models/$model/1/model.onnx.veil" | sed -n '2,7p'

step "5. starting the key broker with the key and a policy for this build"
# A broker state from before the broker had its own CA is the demo's scratch: make it anew.
[ -f broker/master.key ] && [ ! -f broker/broker-ca.pem ] && rm -rf broker
# The broker answers as 127.0.0.1; the server's certificate is for localhost (a workload is
# never granted one of the broker's names).
[ -f broker/master.key ] || "$veil" kbs init --state broker --host 127.0.0.1
kport=$(free_port)
"$veil" kbs serve --state broker --listen "127.0.0.1:$kport" --sim-key sim.key.pub.pem \
    >broker.log 2>&1 &
pids+=($!)
wait_for 20 grep -q listening broker.log || { cat broker.log; exit 1; }
admin=("$veil" kbs admin --broker "127.0.0.1:$kport" --ca broker/broker-ca.pem
       --cert broker/admin.pem --key broker/admin.key)
if ! "${admin[@]}" list | grep -q "\"$model-key-1\""; then
    "${admin[@]}" add "$model" --key-file model.key >/dev/null
fi
measurement=$(sha256sum "$veil" | cut -c1-64)
cat >policy.json <<JSON
{"version": 1, "workloads": [
  {"name": "$model-server", "tee": "sim", "measurement": ["$measurement"], "min_svn": 1,
   "allow_debug": true, "names": ["localhost"], "keys": ["$model"]}]}
JSON
"${admin[@]}" policy policy.json >/dev/null
echo "broker on 127.0.0.1:$kport holds $model-key-1; the policy admits this build's sim measurement"
echo "$measurement"

step "6. starting veil serve: attest, receive the key and certificate, decrypt in memory"
gport=$(free_port)
rport=$(free_port)
"$veil" serve --model_name="$model" --model_base_path="$dir/models/$model" \
    --port="$gport" --rest_api_port="$rport" \
    --kbs="127.0.0.1:$kport" --kbs-ca=broker/broker-ca.pem --tee=sim --sim-key=sim.key --svn=1 \
    --tls_client_ca=clients/ca.pem >serve.log 2>&1 &
pids+=($!)
tls=(--ca broker/serving-ca.pem --cert clients/client.pem --key clients/client.key)
model_available() {
    curl -sf --cacert broker/serving-ca.pem --cert clients/client.pem --key clients/client.key \
        "https://localhost:$rport/v1/models/$model" | grep -q AVAILABLE
}
if ! wait_for 300 model_available; then
    echo "the server did not become ready:"
    tail -20 serve.log
    exit 1
fi
grep -E "provisioned|attesting" serve.log | sed 's/^/    /'
curl -s --cacert broker/serving-ca.pem --cert clients/client.pem --key clients/client.key \
    "https://localhost:$rport/v1/models/$model" | tr -d '\n' | tr -s ' '
echo

step "7a. veil predict over gRPC with mutual TLS, pinning the broker's CA"
"$veil" predict --server "localhost:$gport" --model "$model" "${tls[@]}" --seed 7

step "7b. veil predict over REST with mutual TLS"
"$veil" predict --server "localhost:$rport" --rest --model "$model" "${tls[@]}" --seed 7 \
    --top-k 3

step "7c. veil bench over gRPC with mutual TLS ($bench_s s each at batch 1 and 4, 4 in flight)"
# Two batch sizes on one loaded model: every input signature the graph allows is served.
for b in 1 4; do
    "$veil" bench --server "localhost:$gport" --model "$model" "${tls[@]}" \
        --duration "$bench_s" --concurrency 4 --warmup 1 --batch "$b"
done

step "7d. the broker's audit log"
tail -3 broker/audit.log | cut -c1-220

step "8. shutting down"
cleanup
pids=()
echo "done; everything is in $dir (run again to reuse it)"
