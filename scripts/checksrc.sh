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
[ $status -eq 0 ] && echo "checksrc: ok"
exit $status
