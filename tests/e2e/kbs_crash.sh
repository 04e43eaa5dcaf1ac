#!/usr/bin/env bash
# The key broker killed with SIGKILL while keys rotate, then restarted: every rotation the
# broker acknowledged is still there, the key store still decrypts, nothing half-written is
# left, and every audit record is a whole JSON line.
set -u
veil=$1
work=$(mktemp -d)
state=$work/state
pid=
cleanup() { [ -n "$pid" ] && { kill "$pid"; wait "$pid"; } 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "0 passed, 1 failed"; exit 1; }

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$veil" kbs init --state "$state" >/dev/null || fail "init"
admin=("$veil" kbs admin --broker "127.0.0.1:$port" --ca "$state/broker-ca.pem"
       --cert "$state/admin.pem" --key "$state/admin.key")

start() {
    "$veil" kbs serve --state "$state" --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        grep -q listening "$work/serve.log" 2>/dev/null && return 0
        sleep 0.05
    done
    fail "broker did not start: $(cat "$work/serve.log")"
}

start
"${admin[@]}" add resnet50 >/dev/null || fail "add"
acked=1
rounds=25
for round in $(seq $rounds); do
    # Rotate in the background and kill the broker at a random moment.
    ( "${admin[@]}" rotate resnet50 >"$work/rot.$round" 2>/dev/null && echo ok >>"$work/rot.$round" ) &
    rot=$!
    sleep "0.0$((RANDOM % 40))"
    kill -9 "$pid"
    wait "$pid" 2>/dev/null
    wait "$rot" 2>/dev/null
    grep -q '^ok$' "$work/rot.$round" && acked=$((acked + 1))
    start
done
# One more acknowledged rotation after the last restart: it also clears any temporary that a
# kill between link and rename left behind.
"${admin[@]}" rotate resnet50 >/dev/null || fail "rotate after restarts"
acked=$((acked + 1))
"${admin[@]}" list >"$work/list.json" || fail "list after restarts"
have=$(grep -o '"version":[0-9]*' "$work/list.json" | wc -l)
# Every acknowledged rotation is present; a rotation that was cut off may or may not be.
[ "$have" -ge "$acked" ] || fail "acknowledged $acked keys but the store has $have"
# Versions are unique and contiguous: no half-applied state.
/usr/bin/python3 - "$work/list.json" <<'PY' || fail "key list inconsistent"
import json, sys
keys = json.load(open(sys.argv[1]))["keys"]
vs = sorted(k["version"] for k in keys if k["name"] == "resnet50")
assert vs == list(range(1, len(vs) + 1)), vs
assert len({k["id"] for k in keys}) == len(keys)
PY
/usr/bin/python3 - "$state/audit.log" <<'PY' || fail "audit log has a broken line"
import json, sys
for line in open(sys.argv[1]):
    json.loads(line)
PY
leftover=$(ls -A "$state" | grep -vE '^(master\.key|(serving|broker)-ca\.(pem|key)|admin-ca\.pem|broker\.(pem|key)|admin\.(pem|key)|policy\.json|keys\.db|audit\.log)$')
[ -z "$leftover" ] || fail "unexpected files left: $leftover"
echo "rounds: $rounds, acknowledged rotations: $((acked - 2)) + 1, keys in store: $have"
echo "1 passed, 0 failed"
