#!/usr/bin/env bash
# ab.sh: the cost of a check before and after a change, as ratios measured in one run.
#
#   bash bench/ab.sh BEFORE [AFTER]
#
# BEFORE and AFTER are git revisions; without AFTER, the work tree as it is (uncommitted
# changes included). Each side is built as a user builds it (CMake's RelWithDebInfo, installed
# into a scratch prefix; see AB_CFLAGS below). Keystores of 1,000 and 100,000 keys (2,048
# iterations) are written once by the after side's gen_keystore: one with keys of full access, read by both sides, and
# one whose keys all have the scopes read,mcp,metrics:read ("after-scoped"), read by the after
# side only (a side from before scopes refuses it). ab_check.c then loads each side in a Lua
# state of its own, in one process, and has them take turns, 20 ms each, through the ways of
# ab_check.lua: ks:verify, a verifier's verify, authenticate, authenticate with the scope
# metrics:read (the last of the list; a side from before scopes ignores it: today's check),
# and an unknown key. Taking turns in one process is what makes a few per cent visible on a
# busy machine, where two runs one after the other differ by more than that.
#
# Where the linker puts the hot functions and loops moves a check by up to 8% between two builds
# of the same code, so a ratio near 1 is read over several layouts of it: AB_CFLAGS adds flags
# to both sides' builds, which moves their code (bench/README.md uses "-falign-functions=64
# -falign-loops=32 -falign-jumps=32" and "-Wa,-mbranches-within-32B-boundaries"). Empty by
# default: both built as a user builds them.
#
# Environment: AB_SECS (CPU seconds per side and way, default 3), AB_SIZES (default
# "1000 100000"), AB_CFLAGS. Prints one line per side and way, then a table of rates with
# after / before; the lines are also left in $AB_OUT when it is set.
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: bash bench/ab.sh BEFORE [AFTER]" >&2; exit 2; }
before=$1
after=${2:-}
secs=${AB_SECS:-3}
ab_cflags=${AB_CFLAGS:-}
read -r -a sizes <<<"${AB_SIZES:-1000 100000}"
bench=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$bench/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/apikey-ab.XXXXXX")
trap 'rm -rf "$work"' EXIT

cc=${CC:-cc}
read -r -a cflags <<<"${CFLAGS:--O2 -g -std=c11 -D_GNU_SOURCE}"
read -r -a deps_cflags <<<"$(pkg-config --cflags libcrypto uuid libacl libattr)"
read -r -a deps_libs <<<"$(pkg-config --libs libcrypto uuid libacl libattr) -lunistring"
read -r -a lua_cflags <<<"$(pkg-config --cflags lua5.4)"
read -r -a lua_libs <<<"$(pkg-config --libs lua5.4)"

# side NAME REV: the tree of REV (or the work tree when REV is empty) built into $work/NAME.
side() {
    local name=$1 rev=$2 src=$work/$1/src
    mkdir -p "$src"
    if [ -n "$rev" ]; then
        git -C "$root" archive "$rev" | tar -x -C "$src"
    else
        (cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$src")
    fi
    cmake -S "$src" -B "$work/$name/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_FLAGS="$ab_cflags" >/dev/null
    cmake --build "$work/$name/build" >/dev/null
    cmake --install "$work/$name/build" --prefix "$work/$name/prefix" >/dev/null
}

echo "== building $before and ${after:-the work tree}" >&2
side before "$before"
side after "$after"
core=()
for f in "$work"/after/src/csrc/*.c; do
    [ "$(basename "$f")" = binding.c ] || core+=("$f")
done
"$cc" "${cflags[@]}" -I"$work/after/src/csrc" "${deps_cflags[@]}" -o "$work/gen_keystore" \
    "$work/after/src/bench/gen_keystore.c" "${core[@]}" "${deps_libs[@]}"
"$cc" "${cflags[@]}" "${lua_cflags[@]}" -o "$work/ab_check" "$bench/ab_check.c" "${lua_libs[@]}"

out=$work/raw.txt
for n in "${sizes[@]}"; do
    echo "== $n keys" >&2
    "$work/gen_keystore" "$n" "$work/ks-$n.p12" "$work/ks-$n.keys"
    "$work/gen_keystore" "$n" "$work/scoped-$n.p12" "$work/scoped-$n.keys" 2048 "" \
        read,mcp,metrics:read
    "$work/ab_check" "$secs" "$bench/ab_check.lua" metrics:read \
        before "$work/before/prefix" "$work/ks-$n.p12" "$work/ks-$n.keys" \
        after "$work/after/prefix" "$work/ks-$n.p12" "$work/ks-$n.keys" \
        after-scoped "$work/after/prefix" "$work/scoped-$n.p12" "$work/scoped-$n.keys" |
        sed "s/^/keys=$n /" | tee -a "$out"
done
[ -z "${AB_OUT:-}" ] || cp "$out" "$AB_OUT"

# The table: per (keys, way), each side's rate and its ratio to before's.
lua5.4 - "$out" <<'EOF'
local rows, order = {}, {}
for line in io.lines(arg[1]) do
    local f = {}
    for k, v in line:gmatch("(%S+)=(%S+)") do f[k] = v end
    local id = f.keys .. " " .. f.way
    if not rows[id] then rows[id] = {}; order[#order + 1] = id end
    rows[id][f.name] = tonumber(f.per_s)
end
print(("%-8s %-22s %10s %10s %8s %12s %8s"):format("keys", "way", "before", "after",
    "ratio", "after-scoped", "ratio"))
for _, id in ipairs(order) do
    local keys, way = id:match("(%S+) (%S+)")
    local r = rows[id]
    local b, a, s = r.before, r.after, r["after-scoped"]
    print(("%-8s %-22s %9.2fM %9.2fM %8.3f %11.2fM %8.3f"):format(keys, way, b / 1e6, a / 1e6,
        a / b, s / 1e6, s / b))
end
EOF
