#!/usr/bin/env bash
# The confidential flow end to end, with sim evidence: a key broker holding the model key and a
# policy, `veil serve --kbs --tee sim` attesting to it for its key and serving certificate, and
# clients that pin only the broker's serving CA sending predictions over TLS. Also: a server
# whose evidence the policy refuses gets nothing and does not start.
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
die() { bad "$*"; echo "$pass passed, $fails failed"; exit 1; }
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cd "$work"

# The owner: a model key, a sealed model, a broker with the key and a policy.
"$veil" keygen -o model.key --id affine-key-1 >/dev/null || die "keygen"
"$veil" keygen --sim -o sim.key >/dev/null || die "sim keygen"
/usr/bin/python3 -c "
import sys; sys.path.insert(0, '$src/tests/e2e')
import serve_common; serve_common.make_affine('$work/affine.onnx', 2.0, 1.0)" || die "model"
mkdir -p repo/affine/1
"$veil" seal affine.onnx --key model.key --name affine --version 1 \
    -o repo/affine/1/model.onnx.veil >/dev/null || die "seal"
rm -f affine.onnx

"$veil" kbs init --state broker --host 127.0.0.1 >/dev/null || die "kbs init"
kport=$(port)
"$veil" kbs serve --state broker --listen "127.0.0.1:$kport" --sim-key sim.key.pub.pem \
    >kbs.log 2>&1 &
pids+=($!)
admin=("$veil" kbs admin --broker "127.0.0.1:$kport" --ca broker/broker-ca.pem
       --cert broker/admin.pem --key broker/admin.key)
for _ in $(seq 100); do grep -q listening kbs.log && break; sleep 0.05; done
"${admin[@]}" add affine --key-file model.key >/dev/null || die "import key"
meas=$(sha256sum "$veil" | cut -c1-64)
cat >policy.json <<JSON
{"version": 1, "workloads": [
  {"name": "affine-server", "tee": "sim", "measurement": ["$meas"], "min_svn": 2,
   "allow_debug": true, "names": ["localhost"], "keys": ["affine"]}]}
JSON
"${admin[@]}" policy policy.json >/dev/null || die "policy"
# The serving CA signs workloads only: an administrator pinning it does not reach the broker.
if "$veil" kbs admin --broker "127.0.0.1:$kport" --ca broker/serving-ca.pem \
    --cert broker/admin.pem --key broker/admin.key list >wrongca.log 2>&1; then
    bad "the broker passed as a workload's CA"
else
    grep -q "broker certificate refused" wrongca.log && ok || bad "wrong CA: $(cat wrongca.log)"
fi
# A policy granting a workload the broker's own name is refused.
sed 's/"names": \["localhost"\]/"names": ["127.0.0.1"]/' policy.json >bad-policy.json
if "${admin[@]}" policy bad-policy.json >badpolicy.log 2>&1; then
    bad "a policy granting the broker's name was accepted"
else
    grep -q "the broker's own name" badpolicy.log && ok || bad "bad policy: $(cat badpolicy.log)"
fi

# A server below the policy's minimum SVN is refused and never listens.
gport=$(port)
rport=$(port)
if timeout 60 "$veil" serve --model_name=affine --model_base_path="$work/repo/affine" \
    --port="$gport" --rest_api_port="$rport" --kbs="127.0.0.1:$kport" \
    --kbs-ca=broker/broker-ca.pem --tee=sim --sim-key=sim.key --svn=1 >refused.log 2>&1; then
    bad "a server under the minimum SVN started"
else
    grep -q "SVN below the minimum" refused.log && ok || bad "refusal reason: $(tail -2 refused.log)"
fi

# The attested server: provisioned, then serving with the broker-issued certificate.
"$veil" serve --model_name=affine --model_base_path="$work/repo/affine" --port="$gport" \
    --rest_api_port="$rport" --kbs="127.0.0.1:$kport" --kbs-ca=broker/broker-ca.pem \
    --tee=sim --sim-key=sim.key --svn=3 >serve.log 2>&1 &
pids+=($!)
ready=0
for _ in $(seq 200); do
    if curl -sf --cacert broker/serving-ca.pem "https://localhost:$rport/v1/models/affine" \
        2>/dev/null | grep -q AVAILABLE; then
        ready=1
        break
    fi
    sleep 0.1
done
[ $ready = 1 ] && ok || die "server did not become ready: $(tail -5 serve.log)"

# A client that trusts only the broker's CA predicts over REST ...
out=$(curl -sf --cacert broker/serving-ca.pem -d '{"instances": [[1.0, 2.0, 3.0]]}' \
    "https://localhost:$rport/v1/models/affine:predict")
echo "$out" | tr -d ' \n' | grep -q '"predictions":\[\[3.0,5.0,7.0\]\]' && ok \
    || bad "REST prediction: $out"
# ... and a client that trusts the system CAs only refuses the server.
if curl -sf "https://localhost:$rport/v1/models/affine" >/dev/null 2>&1; then
    bad "a client without the broker CA accepted the server"
else
    ok
fi
# Sealed-only: a plaintext model the host plants as version 2 is refused with a clear status
# (and version 1 keeps answering); a sealed version replaced in place is reloaded, never kept.
status() { curl -sf --cacert broker/serving-ca.pem "https://localhost:$rport/v1/models/affine"; }
predict() {
    curl -sf --cacert broker/serving-ca.pem -d '{"instances": [[1.0, 2.0, 3.0]]}' \
        "https://localhost:$rport/v1/models/affine:predict" | tr -d ' \n'
}
/usr/bin/python3 -c "
import sys; sys.path.insert(0, '$src/tests/e2e')
import serve_common
serve_common.make_affine('$work/repo/affine/2/model.onnx', 5.0, 0.0)
serve_common.make_affine('$work/affine3.onnx', 3.0, 0.0)" || die "models"
refused=0
for _ in $(seq 100); do
    status | grep -q 'plaintext.*refused: this server serves only sealed models' && { refused=1; break; }
    sleep 0.1
done
[ $refused = 1 ] && ok || bad "planted plaintext model: $(status)"
status | tr -d ' \n' | grep -q '"version":"2","state":"END","status":{"error_code":"FAILED_PRECONDITION"' \
    && ok || bad "plaintext version status: $(status)"
predict | grep -q '"predictions":\[\[3.0,5.0,7.0\]\]' && ok || bad "version 1 after the plant: $(predict)"
rm -rf repo/affine/2
"$veil" seal affine3.onnx --key model.key --name affine --version 1 -o affine3.veil >/dev/null \
    || die "seal 3"
mv affine3.veil repo/affine/1/model.onnx.veil
reloaded=0
for _ in $(seq 150); do
    predict | grep -q '"predictions":\[\[3.0,6.0,9.0\]\]' && { reloaded=1; break; }
    sleep 0.1
done
[ $reloaded = 1 ] && ok || bad "replaced sealed version was not reloaded: $(predict)"
grep -q "its model file changed; reloading it" serve.log && ok || bad "reload not logged"

# A minimum version in the policy travels with the key: a server refuses older versions, so
# deleting the newest version folder cannot roll it back.
sed 's/"names": \["localhost"\]/"names": ["localhost"], "min_versions": {"affine": 2}/' \
    policy.json >policy-min.json
"${admin[@]}" policy policy-min.json >/dev/null || die "policy with min_versions"
mkdir -p repo/affine/2
/usr/bin/python3 -c "
import sys; sys.path.insert(0, '$src/tests/e2e')
import serve_common; serve_common.make_affine('$work/affine4.onnx', 4.0, 0.0)" || die "model 4"
"$veil" seal affine4.onnx --key model.key --name affine --version 2 \
    -o repo/affine/2/model.onnx.veil >/dev/null || die "seal v2"
g2=$(port)
r2=$(port)
"$veil" serve --model_name=affine --model_base_path="$work/repo/affine" --port="$g2" \
    --rest_api_port="$r2" --kbs="127.0.0.1:$kport" --kbs-ca=broker/broker-ca.pem \
    --tee=sim --sim-key=sim.key --svn=3 >serve2.log 2>&1 &
pids+=($!)
status2() { curl -sf --cacert broker/serving-ca.pem "https://localhost:$r2/v1/models/affine"; }
up=0
for _ in $(seq 200); do
    status2 2>/dev/null | tr -d ' \n' | grep -q '"version":"2","state":"AVAILABLE"' && { up=1; break; }
    sleep 0.1
done
[ $up = 1 ] && ok || die "server with a minimum version did not serve version 2: $(tail -3 serve2.log)"
rm -rf repo/affine/2
below=0
for _ in $(seq 100); do
    status2 | grep -q 'version 1 is below the minimum version 2' && { below=1; break; }
    sleep 0.1
done
[ $below = 1 ] && ok || bad "rollback below the minimum: $(status2)"
# Version 2 (4x) may keep answering until a wanted version loads; version 1 (3x) never does.
out2=$(curl -s --cacert broker/serving-ca.pem -d '{"instances": [[1.0, 2.0, 3.0]]}' \
    "https://localhost:$r2/v1/models/affine:predict" | tr -d ' \n')
echo "$out2" | grep -q '\[\[3.0,6.0,9.0\]\]' && bad "a version below the minimum answered: $out2" || ok
out3=$(curl -s --cacert broker/serving-ca.pem -d '{"instances": [[1.0, 2.0, 3.0]]}' \
    "https://localhost:$r2/v1/models/affine/versions/1:predict")
echo "$out3" | grep -q '"predictions"' && bad "version 1 answered when asked by number: $out3" || ok

# The broker recorded the release.
grep -q '"action":"provision","decision":"allow"' broker/audit.log && ok || bad "audit allow"
grep -q '"decision":"deny","reason":"policy: workload \\"affine-server\\": SVN below' broker/audit.log \
    && ok || bad "audit deny: $(grep deny broker/audit.log | head -2)"
grep -q '"keys":\["affine-key-1"\]' broker/audit.log && ok || bad "audit key list"
echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
