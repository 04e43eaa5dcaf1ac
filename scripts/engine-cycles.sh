#!/usr/bin/env bash
# Checks that no two files of the engine depend on each other in a circle, through any chain
# of calls. A file depends on another when its object file leaves undefined a symbol that the
# other's object defines (nm). Prints each dependency with the symbols it rests on, then every
# cycle found; exits 1 when there is one. Usage: engine-cycles.sh OBJDIR [--quiet], where
# OBJDIR holds the objects of src/engine's sources under their source paths (CMake's
# build/<preset>/src/engine/CMakeFiles/veil_engine.dir).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
objdir=$(cd "${1:?usage: engine-cycles.sh OBJDIR [--quiet]}" && pwd)
quiet=${2:-}
cd "$root/src/engine"
table=$(mktemp)
trap 'rm -f "$table"' EXIT
objs=()
while IFS= read -r src; do
    obj="$objdir/$src.o"
    if [ ! -f "$obj" ]; then
        echo "engine-cycles: no object $obj for $src (build first)" >&2
        exit 2
    fi
    objs+=("$obj")
done < <(find . -name '*.c' | sed 's|^\./||' | LC_ALL=C sort)
[ "${#objs[@]}" -gt 0 ] || { echo "engine-cycles: no sources found" >&2; exit 2; }
# One nm per kind over every object; nm -A starts each line with "OBJECT:".
{
    nm -A --defined-only -g "${objs[@]}" | awk '{ split($1, a, ":"); print "D", a[1], $NF }'
    nm -A -u "${objs[@]}" | awk '{ split($1, a, ":"); print "U", a[1], $NF }'
} >"$table"
/usr/bin/python3 - "$table" "$quiet" "$objdir" <<'PY'
import sys
defined, uses = {}, []
prefix = sys.argv[3] + "/"
for line in open(sys.argv[1]):
    kind, obj, sym = line.split()
    # Back from the object's path to its source's: OBJDIR/ir/graph.c.o is ir/graph.c.
    f = obj[len(prefix):-2] if obj.startswith(prefix) and obj.endswith(".o") else obj
    if kind == "D":
        defined[sym] = f
    else:
        uses.append((f, sym))
edges = {}
for f, sym in uses:
    g = defined.get(sym)
    if g is not None and g != f:
        edges.setdefault(f, {}).setdefault(g, set()).add(sym)
files = sorted(set(defined.values()) | {f for f, _ in uses})
if sys.argv[2] != "--quiet":
    for f in files:
        for g in sorted(edges.get(f, {})):
            syms = sorted(edges[f][g])
            more = " ..." if len(syms) > 4 else ""
            print(f"{f} -> {g}: {' '.join(syms[:4])}{more}")
# Tarjan's strongly connected components: a component of more than one file is a cycle.
index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]
def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges.get(v, {}):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            comps.append(sorted(comp))
sys.setrecursionlimit(10000)
for f in files:
    if f not in index:
        visit(f)
for comp in comps:
    print("engine-cycles: files that depend on each other in a circle: " + ", ".join(comp))
    for f in comp:
        for g in sorted(edges.get(f, {})):
            if g in comp:
                print(f"    {f} -> {g}: {' '.join(sorted(edges[f][g]))}")
if comps:
    sys.exit(1)
print(f"engine-cycles: ok ({len(files)} files, no cycles)")
PY
