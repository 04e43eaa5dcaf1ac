#!/usr/bin/env bash
# veil predict and veil bench against veil serve: gRPC and REST, plaintext, TLS and mutual TLS,
# inputs from .npy files and random, the bench report and its JSON, and the clear errors a user
# gets for a wrong model, a missing client certificate, or an untrusted server.
set -u
veil=$1
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
pass=0
fails=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cd "$work"
/usr/bin/python3 - "$src" <<'PY' || { echo "model"; exit 1; }
import sys, numpy as np
sys.path.insert(0, sys.argv[1] + "/tests/e2e")
import serve_common
serve_common.make_affine("repo/affine/1/model.onnx", 2.0, 1.0)
np.save("x.npy", np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32))
PY
"$veil" certs -o certs >/dev/null || bad "certs"

start() { # start NAME ARGS...: a server on fresh ports, exported as G and R
    G=$(port)
    R=$(port)
    "$veil" serve --model_name=affine --model_base_path="$work/repo/affine" --port="$G" \
        --rest_api_port="$R" "$@" >"serve.$G.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        grep -q "affine" "serve.$G.log" 2>/dev/null && \
            "$veil" predict --server "127.0.0.1:$G" --model affine $CLIENT >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    bad "server did not start: $(tail -3 "serve.$G.log")"
}

# Plaintext.
CLIENT="--plaintext"
start --plaintext
out=$("$veil" predict --server "127.0.0.1:$G" --model affine --plaintext --input input=x.npy 2>&1)
echo "$out" | grep -q "values: 3 5 7 9 11 13" && ok || bad "gRPC predict from .npy: $out"
out=$("$veil" predict --server "127.0.0.1:$R" --rest --model affine --plaintext --input input=x.npy 2>&1)
echo "$out" | grep -q "values: 3 5 7 9 11 13" && ok || bad "REST predict from .npy: $out"
a=$("$veil" predict --server "127.0.0.1:$G" --model affine --plaintext --seed 5 --batch 4 | grep values)
b=$("$veil" predict --server "127.0.0.1:$R" --rest --model affine --plaintext --seed 5 --batch 4 | grep values)
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "random inputs differ between APIs: '$a' vs '$b'"
out=$("$veil" predict --server "127.0.0.1:$G" --model nosuch --plaintext 2>&1) && bad "unknown model accepted" \
    || { echo "$out" | grep -q "gRPC status 5" && ok || bad "unknown model message: $out"; }
out=$("$veil" predict --server "127.0.0.1:$G" --model affine --plaintext --input y=x.npy 2>&1) \
    && bad "unknown input accepted" || { echo "$out" | grep -q "no such input" && ok || bad "$out"; }

# Mutual TLS.
CLIENT="--ca certs/ca.pem --cert certs/client.pem --key certs/client.key"
start --tls_cert=certs/server.pem --tls_key=certs/server.key --tls_client_ca=certs/ca.pem
out=$("$veil" predict --server "localhost:$G" --model affine $CLIENT --input input=x.npy 2>&1)
echo "$out" | grep -q "(mutual TLS)" && echo "$out" | grep -q "3 5 7 9 11 13" && ok || bad "mTLS gRPC: $out"
out=$("$veil" predict --server "localhost:$R" --rest --model affine $CLIENT 2>&1)
echo "$out" | grep -q "output 'output'" && ok || bad "mTLS REST: $out"
out=$("$veil" predict --server "localhost:$G" --model affine --ca certs/ca.pem 2>&1) \
    && bad "no client certificate accepted" || { echo "$out" | grep -q "needs --cert" && ok || bad "$out"; }
out=$("$veil" predict --server "localhost:$G" --model affine 2>&1) && bad "untrusted server accepted" \
    || { echo "$out" | grep -q "certificate refused" && ok || bad "untrusted server message: $out"; }

# The load generator: a bounded run, its report and its JSON.
out=$("$veil" bench --server "localhost:$G" --model affine $CLIENT -cnum 4 -loop 300 --warmup 0 2>&1)
echo "$out" | grep -q "requests:    300 ok, 0 errors" && echo "$out" | grep -q "latency histogram" && ok \
    || bad "bench report: $out"
json=$("$veil" bench --server "localhost:$R" --rest --model affine $CLIENT --concurrency 2 \
    --duration 1 --warmup 0.2 --json 2>&1)
echo "$json" | /usr/bin/python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["api"] == "rest" and j["security"] == "mutual TLS" and j["ok"] > 0 and j["errors"] == {}
assert 0 < j["latency_ms"]["p50"] <= j["latency_ms"]["p99"] <= j["latency_ms"]["max"]
' && ok || bad "bench JSON: $json"
out=$("$veil" bench --server "localhost:$G" --model nosuch $CLIENT --loop 5 2>&1) \
    && bad "bench of an unknown model succeeded" || ok

echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
