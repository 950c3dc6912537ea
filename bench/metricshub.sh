#!/usr/bin/env bash
# A MetricsHub keystore of N keys (default 1,000; tests/MetricsHubStore.java writes it as
# MetricsHub's `apikey create` does, with a masterKey): the time of `apikey list`,
# `apikey migrate`, a verifier's load and, after the migration, a verifier's load again,
# beside MetricsHub's way (a JVM that loads the file and decrypts every entry: its `apikey list`
# and one server-side look-up of an unknown key). Then the largest such keystore a load takes
# (the key-derivation budget, README "Sharing the file with Java and MetricsHub").
#
#   bash bench/metricshub.sh [N]       results in bench/results/metricshub.txt
set -euo pipefail

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$bench")
n=${1:-1000}
work=$(mktemp -d "${TMPDIR:-/tmp}/apikey-bench-mh.XXXXXX")
trap 'rm -rf "$work"' EXIT
say() { printf '== %s\n' "$*" >&2; }

say "build"
cmake -S "$root" -B "$work/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$work/build" >/dev/null
cmake --install "$work/build" --prefix "$work/prefix" >/dev/null
javac -d "$work/java" "$root/tests/MetricsHubStore.java"
export LUA_PATH="$work/prefix/share/lua/5.4/?.lua;$work/prefix/share/lua/5.4/?/init.lua;;"
export LUA_CPATH="$work/prefix/lib/lua/5.4/?.so;;"
ak=$work/prefix/bin/apikey
mh() { java -cp "$work/java" MetricsHubStore "$@"; }

say "a MetricsHub keystore of $n keys"
ks=$work/mh-$n.p12
mh "$ks" - masterkey >/dev/null
mh "$ks" - fill "$n" >"$work/keys"
key=$(sed -n "$((n / 2 + 1))p" "$work/keys")
cp -p "$ks" "$work/migrated.p12"
"$ak" migrate --keystore "$work/migrated.p12" >/dev/null

# A verifier's load: the process that opens the file with apikey.verifier and checks one key.
load_lua='local clock = require("apikey.core").clock; local t = clock()
    local v = assert(require("apikey").verifier { path = os.getenv("KS") })
    local ms = (clock() - t) * 1e3
    assert(v:verify(os.getenv("KEY")))
    print(("%.1f"):format(ms))'

results=$bench/results
mkdir -p "$results"
say "hyperfine"
hyperfine --style basic --warmup 1 --runs 5 --export-json "$work/mh.json" \
    -n "apikey list" "$ak list --keystore $ks" \
    -n "apikey verify" "$ak verify $key --keystore $ks" \
    --prepare "cp -p $ks $work/new.p12" \
    -n "apikey migrate" "$ak migrate --keystore $work/new.p12" \
    -n "verifier load (lua5.4 process)" "KS=$ks KEY=$key lua5.4 -e '$load_lua'" \
    -n "verifier load after migrate (lua5.4 process)" "KS=$work/migrated.p12 KEY=$key lua5.4 -e '$load_lua'" \
    -n "MetricsHub list (JVM: load, decrypt all)" "java -cp $work/java MetricsHubStore $ks - keys" \
    -n "MetricsHub server look-up (JVM: load, decrypt all)" \
    "java -cp $work/java MetricsHubStore $ks - find 00000000-0000-4000-8000-000000000000" >&2
{
    printf 'date=%s keys=%s cores=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$n" "$(nproc)"
    MH_JSON=$work/mh.json lua5.4 -e '
        local json = require "dkjson"
        local f = assert(io.open(os.getenv("MH_JSON")))
        for _, r in ipairs(json.decode(f:read("a")).results) do
            print(("%s: %.1f ms ± %.1f ms (user+sys %.1f ms)"):format(r.command, r.mean * 1e3,
                r.stddev * 1e3, (r.user + r.system) * 1e3))
        end'
    # The load's own time inside the process.
    printf 'verifier load, inside the process: %s ms; after migrate: %s ms\n' \
        "$(KS=$ks KEY=$key lua5.4 -e "$load_lua")" \
        "$(KS=$work/migrated.p12 KEY=$key lua5.4 -e "$load_lua")"
} | tee "$results/metricshub.txt"

# The budget: 2,000 MetricsHub keys are refused, 1,990 are not.
say "the budget's limit"
for m in 1990 2000; do
    rm -f "$work/limit.p12"
    mh "$work/limit.p12" - masterkey fill "$m" >/dev/null
    if out=$("$ak" list --keystore "$work/limit.p12" 2>&1 >/dev/null); then
        echo "keys=$m loads"
    else
        echo "keys=$m refused: $out"
    fi
done | sed "s|$work/||g" | tee -a "$results/metricshub.txt"
