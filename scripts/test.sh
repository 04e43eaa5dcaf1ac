#!/usr/bin/env bash
# The test command. On a fresh Debian 12 machine it installs what it needs, then runs every
# test: source checks, the gcc debug build with warnings as errors, short libFuzzer runs of
# every fuzz target, the optimised build (its warnings differ), and the clang AddressSanitizer +
# UndefinedBehaviorSanitizer build. Exits non-zero if any stage fails. VEIL_FUZZ_SECONDS
# (default 5) sets each fuzz run.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
failed=()
stage() {
    local name=$1
    shift
    echo "==== $name"
    if ! "$@"; then
        failed+=("$name")
    fi
}

scripts/install-deps.sh || exit 1
stage "source checks" scripts/checksrc.sh
stage "format check" scripts/format.sh --check
stage "gcc build" bash -c 'cmake --preset dev >/dev/null && cmake --build --preset dev'
stage "gcc tests" ctest --preset dev
stage "fuzz smoke" scripts/fuzz.sh "${VEIL_FUZZ_SECONDS:-5}"
stage "release build" bash -c 'cmake --preset release >/dev/null && cmake --build --preset release'
stage "asan build" bash -c 'cmake --preset asan >/dev/null && cmake --build --preset asan'
# Whole-model tests (label "slow") run in the gcc build only: under ASan they take too long.
stage "asan tests" ctest --preset asan -LE slow

if [ ${#failed[@]} -gt 0 ]; then
    echo "test command: FAILED stages: ${failed[*]}"
    exit 1
fi
echo "test command: all stages passed"
