#!/usr/bin/env bash
# clang-format over the project's C sources: --check reports files that differ (CI), no
# argument rewrites them in place.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
files=$(git ls-files 'src/*.c' 'src/*.h' 'include/*.h' 'tests/*.c' 'tests/*.h' 'fuzz/*.c' 'bench/*.c' 2>/dev/null || true)
[ -n "$files" ] || exit 0
if [ "${1:-}" = "--check" ]; then
    clang-format --dry-run -Werror $files && echo "format: ok"
else
    clang-format -i $files
fi
