#!/usr/bin/env bash
# The sealing commands end to end: key files, round trip, every tampering case with its own
# message and a non-zero exit, and no plaintext left behind by a failed or killed unseal.
set -u
veil=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fails=0
pass=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# flip_byte FILE OFFSET: inverts every bit of one byte (writing a fixed value would leave a
# random byte that already held it unchanged).
flip_byte() {
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "\\$(printf '%03o' $((b ^ 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# expect_fail NAME MESSAGE CMD...: the command exits non-zero and prints MESSAGE on stderr.
expect_fail() {
    local name=$1 msg=$2
    shift 2
    if "$@" 2>err.txt >/dev/null; then
        bad "$name: succeeded"
    elif ! grep -q -- "$msg" err.txt; then
        bad "$name: message '$(cat err.txt)' lacks '$msg'"
    else
        ok
    fi
}

"$veil" keygen -o m.key --id prod-1 >/dev/null || bad "keygen"
[ "$(stat -c %a m.key)" = 600 ] && ok || bad "key mode $(stat -c %a m.key)"
expect_fail "keygen overwrite" "refusing to overwrite" "$veil" keygen -o m.key
"$veil" keygen -o other.key --id prod-2 >/dev/null
"$veil" keygen -o same-id.key --id prod-1 >/dev/null

head -c 3000000 /dev/urandom > model.onnx
"$veil" seal model.onnx --key m.key --name resnet50 --version 2 -o model.onnx.veil >/dev/null \
    || bad "seal"
"$veil" inspect model.onnx.veil | grep -q "model name:     resnet50" && ok || bad "inspect"
"$veil" inspect model.onnx.veil --json | grep -q '"model_version":2' && ok || bad "inspect json"
"$veil" unseal model.onnx.veil --key m.key --name resnet50 --version 2 -o plain >/dev/null \
    && cmp -s plain model.onnx && ok || bad "round trip"
[ "$(stat -c %a plain)" = 600 ] && ok || bad "plaintext mode"
rm -f plain

expect_fail "wrong key ID" "sealed under key ID 'prod-1'" "$veil" unseal model.onnx.veil --key other.key -o plain
expect_fail "wrong key" "wrong key" "$veil" unseal model.onnx.veil --key same-id.key -o plain
expect_fail "wrong name" "expected 'vgg'" "$veil" unseal model.onnx.veil --key m.key --name vgg -o plain
expect_fail "rollback" "expected 1" "$veil" unseal model.onnx.veil --key m.key --version 1 -o plain
cp model.onnx.veil t1; flip_byte t1 2000000
expect_fail "flipped chunk bit" "chunk 1 of 3 failed authentication" "$veil" unseal t1 --key m.key -o plain
cp model.onnx.veil t2; flip_byte t2 40 # a byte of the random salt
expect_fail "flipped header byte" "key commitment mismatch" "$veil" unseal t2 --key m.key -o plain
cp model.onnx.veil t2b; printf 'Z' | dd of=t2b bs=1 seek=75 conv=notrunc status=none
expect_fail "broken header length" "runs past the header" "$veil" unseal t2b --key m.key -o plain
head -c 2500000 model.onnx.veil > t3
expect_fail "truncated" "file truncated" "$veil" unseal t3 --key m.key -o plain
cat model.onnx.veil model.onnx.veil > t4
expect_fail "extended" "trailing data" "$veil" unseal t4 --key m.key -o plain
head -c 40 model.onnx.veil > t5
expect_fail "tiny" "too short" "$veil" unseal t5 --key m.key -o plain
expect_fail "not sealed" "bad magic" "$veil" unseal model.onnx --key m.key -o plain
expect_fail "inspect garbage" "bad magic" "$veil" inspect model.onnx
[ -e plain ] && bad "a failed unseal left plaintext behind" || ok

# A killed unseal leaves no plaintext: kill it mid-way (large file, one thread).
head -c 400000000 /dev/zero > big
"$veil" seal big --key m.key --name big --version 1 -o big.veil >/dev/null
rm -f big
"$veil" unseal big.veil --key m.key -o big.out --threads 1 >/dev/null 2>&1 &
pid=$!
sleep 0.15
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
if [ -e big.out ]; then
    # The unseal may have finished before the kill on a fast machine; then it must be whole.
    [ "$(stat -c %s big.out)" = 400000000 ] && ok || bad "killed unseal left a partial file"
else
    ok
fi
[ -z "$(ls -A | grep -E '^\.' )" ] && ok || bad "temporary files left behind: $(ls -A)"

echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
