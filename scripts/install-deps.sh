#!/usr/bin/env bash
# Installs what the build and the tests need, idempotently: Debian packages listed in
# scripts/deps/*.apt that are missing (one `apt-get update` at most), then the npm test peers of
# tests/peers/package.json when they are not installed yet. Safe to run again and again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

want=$(cat "$root"/scripts/deps/*.apt | sed 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)
missing=()
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
else
    echo "install-deps: Debian packages present"
fi

peers="$root/tests/peers"
if [ -f "$peers/package.json" ] && command -v npm >/dev/null 2>&1; then
    stamp="$peers/node_modules/.veil-installed"
    if [ ! -f "$stamp" ] || [ "$peers/package.json" -nt "$stamp" ]; then
        echo "install-deps: installing npm test peers"
        # onnxruntime-node bundles its CPU binaries; skip its optional GPU download.
        (cd "$peers" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund \
            --loglevel=error >/dev/null)
        mkdir -p "$peers/node_modules" && touch "$stamp"
    else
        echo "install-deps: npm test peers present"
    fi
fi
