#!/usr/bin/env bash
# Mechanical source checks (STYLE rule 35): banned functions in src/, raw allocation outside
# src/base/alloc.c, and printing from library modules (only src/cli/ may print).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
status=0
banned='\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|strtok|sscanf|alloca)[[:space:]]*\('
if out=$(grep -rnE "$banned" src include); then
    echo "checksrc: banned function:"
    echo "$out"
    status=1
fi
rawalloc='(^|[^_[:alnum:]>.])(malloc|calloc|realloc|free)[[:space:]]*\('
if out=$(grep -rnE "$rawalloc" src include | grep -v '^src/base/alloc.c:'); then
    echo "checksrc: raw allocation outside src/base/alloc.c (use veil_malloc and friends):"
    echo "$out"
    status=1
fi
printing='\b(printf|puts|putchar)[[:space:]]*\(|\b(stdout|stderr)\b'
if out=$(grep -rnE "$printing" src --include=*.c | grep -vE '^src/(cli|base/(log|err)\.c)'); then
    echo "checksrc: library code writes to stdout/stderr (log through VEIL_LOG_*):"
    echo "$out"
    status=1
fi
# libFuzzer writes its findings as crash-*, slow-unit-*, leak-*, timeout-* and oom-* files in
# the folder it runs from: one must become a named corpus entry or a regression test instead.
artefacts='(^|/)(crash|slow-unit|leak|timeout|oom)-[0-9a-f]+$'
if out=$(git ls-files --cached --others --exclude-standard 2>/dev/null | grep -E "$artefacts"); then
    echo "checksrc: libFuzzer artefacts in the tree (name them as corpus entries or tests):"
    echo "$out"
    status=1
fi
[ $status -eq 0 ] && echo "checksrc: ok"
exit $status
