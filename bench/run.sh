#!/usr/bin/env bash
# bench/run.sh: builds what the benchmarks need, runs them all, and writes bench/results/:
# one .txt per benchmark (key=value lines), hyperfine's markdown for the CLI, and
# results/table.md, the tables of bench/README.md. About 6 minutes on 2 cores.
#
#   bash bench/run.sh                 everything
#   bash bench/run.sh verify load     only some parts of: verify load ref cli http
#                                     (build and keys always run first)
#
# Needs: a C compiler, OpenSSL 3, libuuid and Lua 5.4 headers (as for the build), lua5.4 with
# lua-argparse and lua-dkjson (as for the CLI), a JDK 17 (javac, java), hyperfine, GNU time
# (/usr/bin/time), lighttpd with mod_magnet, and wrk. On Debian 12:
#   apt-get install build-essential pkg-config libssl-dev uuid-dev liblua5.4-dev lua5.4 \
#       lua-argparse lua-dkjson openjdk-17-jdk-headless hyperfine time lighttpd \
#       lighttpd-modules-lua wrk curl cmake
# Environment: BENCH_SECS (CPU seconds per verify measurement, default 2), BENCH_HTTP_SECS
# (seconds per wrk run, default 3), BENCH_HTTP_ROUNDS (default 5), CC, CFLAGS.
set -euo pipefail

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$bench")
results=$bench/results
secs=${BENCH_SECS:-2}
http_secs=${BENCH_HTTP_SECS:-3}
http_rounds=${BENCH_HTTP_ROUNDS:-5}
sizes=(10 100 1000 100000)
cli_sizes=(10 1000)
ref_sizes=(10 100 1000)

work=$(mktemp -d "${TMPDIR:-/tmp}/apikey-bench.XXXXXX")
servers=()
cleanup() {
    stop_servers
    rm -rf "$work"
}
trap cleanup EXIT

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# --- build ---------------------------------------------------------------------------------
# The project as a user installs it (CMake, its default RelWithDebInfo: -O2 -g) into a scratch
# prefix: PREFIX/bin/apikey, the Lua modules, apikey/core.so. The bench programs link the core's
# C files (all but the Lua binding) directly, with the same flags.
cc=${CC:-cc}
read -r -a cflags <<<"${CFLAGS:--O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra}"
read -r -a deps_cflags <<<"$(pkg-config --cflags libcrypto uuid)"
read -r -a deps_libs <<<"$(pkg-config --libs libcrypto uuid)"
core_src=()
for f in "$root"/csrc/*.c; do
    [ "$(basename "$f")" = binding.c ] || core_src+=("$f")
done
prefix=$work/prefix

build() {
    say "build"
    cmake -S "$root" -B "$work/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$work/build" >/dev/null
    cmake --install "$work/build" --prefix "$prefix" >/dev/null
    mkdir -p "$work/bin" "$work/java"
    for prog in gen_keystore verify_bench; do
        "$cc" "${cflags[@]}" -I"$root/csrc" "${deps_cflags[@]}" -o "$work/bin/$prog" \
            "$bench/$prog.c" "${core_src[@]}" "${deps_libs[@]}"
    done
    javac -d "$work/java" "$bench/java/RefVerify.java"
}

# The Lua API as installed, for the Lua benchmarks.
export LUA_PATH="$prefix/share/lua/5.4/?.lua;$prefix/share/lua/5.4/?/init.lua;;"
export LUA_CPATH="$prefix/lib/lua/5.4/?.so;;"
ak=$prefix/bin/apikey

# --- keystores -----------------------------------------------------------------------------
# ks-N.p12 with its keys in ks-N.keys (ours, written in one go by gen_keystore), and
# ref-N.p12 / ref-N.keys (the reference's format, written by RefVerify).
keys() {
    say "keystores"
    for n in "${sizes[@]}"; do
        "$work/bin/gen_keystore" "$n" "$work/ks-$n.p12" "$work/ks-$n.keys"
    done
    for n in "${ref_sizes[@]}"; do
        rm -f "$work/ref-$n.p12"
        java -cp "$work/java" RefVerify make "$work/ref-$n.p12" "$work/ref-$n.keys" "$n"
    done
}

# A key from the middle of a keys file: an ordinary one, neither first nor last.
middle_key() { sed -n "$(($(wc -l <"$1") / 2 + 1))p" "$1"; }

# --- verify per second ---------------------------------------------------------------------
verify() {
    say "verify per second, C core and Lua"
    : >"$results/verify_c.txt"
    : >"$results/verify_lua.txt"
    for n in "${sizes[@]}"; do
        "$work/bin/verify_bench" "$work/ks-$n.p12" "$work/ks-$n.keys" "$secs" \
            | tee -a "$results/verify_c.txt"
        lua5.4 "$bench/verify_bench.lua" "$work/ks-$n.p12" "$work/ks-$n.keys" "$secs" \
            | tee -a "$results/verify_lua.txt"
    done
}

# --- load: time and peak memory --------------------------------------------------------------
# A process that only loads: the load itself as timed inside it (load_ms), the whole process's
# wall time, and GNU time's "Maximum resident set size" (KiB). The program's own output is left
# in $work/out.txt.
timed() {
    local t0 t1
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%M' -o "$work/rss.txt" "$@" >"$work/out.txt"
    t1=$EPOCHREALTIME
    printf 'wall_s=%s maxrss_kb=%s\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')" \
        "$(tail -1 "$work/rss.txt")"
}

load() {
    say "load time and peak memory"
    : >"$results/load.txt"
    local lua_open='local clock = require("apikey.core").clock; local t = clock()
        assert(require("apikey").open { path = os.getenv("KS") })
        print(("load_ms=%.1f"):format((clock() - t) * 1e3))'
    local stats
    for n in "${sizes[@]}"; do
        for run in 1 2 3; do
            stats=$(timed "$work/bin/verify_bench" --load "$work/ks-$n.p12")
            printf 'keys=%s way=c run=%s %s %s\n' "$n" "$run" "$stats" \
                "$(sed 's/^keys=[0-9]* //' "$work/out.txt")"
            stats=$(KS=$work/ks-$n.p12 timed lua5.4 -e "$lua_open")
            printf 'keys=%s way=lua run=%s %s %s\n' "$n" "$run" "$stats" "$(cat "$work/out.txt")"
        done | tee -a "$results/load.txt"
    done
    # The reference has no long-lived load: every check loads and decrypts. Its nearest
    # equivalent is one `list` (load, decrypt every entry), JVM included.
    for n in "${ref_sizes[@]}"; do
        printf 'keys=%s way=ref run=1 %s\n' "$n" \
            "$(timed java -cp "$work/java" RefVerify list "$work/ref-$n.p12")" \
            | tee -a "$results/load.txt"
    done
}

# --- the CLI, whole process ----------------------------------------------------------------
cli() {
    say "CLI wall time (hyperfine)"
    local ks key rks rkey
    : >"$results/cli.md"
    for n in "${cli_sizes[@]}"; do
        ks=$work/ks-$n.p12
        key=$(middle_key "$work/ks-$n.keys")
        rks=$work/ref-$n.p12
        rkey=$(middle_key "$work/ref-$n.keys")
        hyperfine --style basic --warmup 3 --runs 30 \
            --export-json "$work/cli-ours-$n.json" --export-markdown "$work/cli-ours-$n.md" \
            -n "apikey list ($n keys)" "$ak list --keystore $ks" \
            -n "apikey verify ($n keys)" "$ak verify $key --keystore $ks" \
            --prepare "cp -p $ks $work/new.p12" \
            -n "apikey create ($n keys)" "$ak create bench-new --keystore $work/new.p12" \
            >&2
        local runs=5
        [ "$n" -ge 1000 ] && runs=3
        hyperfine --style basic --warmup 1 --runs "$runs" \
            --export-json "$work/cli-ref-$n.json" --export-markdown "$work/cli-ref-$n.md" \
            -n "reference list ($n keys)" "java -cp $work/java RefVerify list $rks" \
            -n "reference verify ($n keys)" "java -cp $work/java RefVerify verify $rks $rkey" \
            --prepare "cp -p $rks $work/new-ref.p12" \
            -n "reference create ($n keys)" "java -cp $work/java RefVerify create $work/new-ref.p12 bench-new" \
            >&2
        for f in "$work/cli-ours-$n" "$work/cli-ref-$n"; do
            sed "s|$work/||g" "$f.md" >>"$results/cli.md"
            echo >>"$results/cli.md"
            cp "$f.json" "$results/$(basename "$f").json"
        done
    done
    # Where the time of `apikey list` goes: the interpreter, the CLI's Lua libraries, the
    # apikey modules with the core and OpenSSL, then the work.
    hyperfine --style basic --warmup 3 --runs 30 --export-json "$work/cli-startup.json" \
        -n "lua5.4 -e ''" "lua5.4 -e ''" \
        -n "+ require argparse, dkjson" "lua5.4 -e 'require \"argparse\"; require \"dkjson\"'" \
        -n "+ require apikey.cli (core, OpenSSL)" "lua5.4 -e 'require \"apikey.cli\"'" \
        -n "apikey list (10 keys)" "$ak list --keystore $work/ks-10.p12" >&2
    cp "$work/cli-startup.json" "$results/"
    sed -i "s|$work/||g" "$results"/cli-*.json
}

# --- the reference, per check, in one warm JVM -----------------------------------------------
ref() {
    say "reference: one check = load + decrypt + scan"
    : >"$results/reference.txt"
    for n in "${ref_sizes[@]}"; do
        java -cp "$work/java" RefVerify bench "$work/ref-$n.p12" "$work/ref-$n.keys" "$secs" \
            | tee -a "$results/reference.txt"
    done
}

# --- lighttpd + wrk ---------------------------------------------------------------------------
free_port() {
    local p
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

# Starts lighttpd on 127.0.0.1:$2 serving $work/www, with the magnet script $3 (none when
# empty), configured in $work/$1.conf, and waits until it answers. Its PID goes to servers.
start_server() {
    local name=$1 port=$2 script=$3 conf=$work/$1.conf
    {
        printf 'server.document-root = "%s"\n' "$work/www"
        printf 'server.bind = "127.0.0.1"\nserver.port = %s\n' "$port"
        printf 'server.errorlog = "%s"\n' "$work/$name-error.log"
        printf 'mimetype.assign = ( ".txt" => "text/plain" )\n'
        if [ -n "$script" ]; then
            printf 'server.modules += ( "mod_magnet" )\n'
            printf 'magnet.attract-raw-url-to = ( "%s" )\n' "$script"
        fi
    } >"$conf"
    lighttpd -D -f "$conf" &
    servers+=($!)
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
        sleep 0.1
    done
    die "lighttpd did not start; see $work/$name-error.log"
}

stop_servers() {
    local pid
    for pid in "${servers[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    servers=()
}

# One wrk run against url $2 (which must answer HTTP $3), more arguments for wrk and curl
# after: requests/s and latencies as one line for way $1.
load_test() {
    local way=$1 url=$2 want=$3 out=$work/wrk.txt code
    shift 3
    code=$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url")
    [ "$code" = "$want" ] || die "$way: expected HTTP $want from $url, got $code"
    wrk -t1 -c16 -d"$http_secs"s --latency "$@" "$url" >"$out"
    awk -v way="$way" '
        /^Requests\/sec:/ { rps = $2 }
        /^ +50%/ { p50 = $2 }
        /^ +99%/ { p99 = $2 }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        END { printf "way=%s rps=%s p50=%s p99=%s non2xx=%d\n", way, rps, p50, p99, non2xx }
    ' "$out"
}

# Three servers at once: no auth, mod_magnet with a script that does nothing (what mod_magnet
# itself costs), and the apikey example over the 1,000-key keystore. wrk runs against each in
# turn, for several rounds, so that a busy spell of the machine falls on all of them alike;
# the report takes each one's median.
http() {
    say "lighttpd with wrk: no auth, apikey auth"
    local key round port_none port_noop port_auth bad=00000000-0000-4000-8000-000000000000
    key=$(middle_key "$work/ks-1000.keys")
    mkdir -p "$work/www"
    head -c 4096 /dev/zero | tr '\0' 'a' >"$work/www/index.txt"
    printf 'return 0\n' >"$work/noop.lua"
    port_none=$(free_port)
    start_server none "$port_none" ""
    port_noop=$(free_port)
    start_server noop "$port_noop" "$work/noop.lua"
    port_auth=$(free_port)
    APIKEY_PREFIX=$prefix APIKEY_KEYSTORE=$work/ks-1000.p12 \
        start_server apikey "$port_auth" "$root/examples/lighttpd/apikey-auth.lua"
    : >"$results/http.txt"
    for round in $(seq "$http_rounds"); do
        {
            load_test none "http://127.0.0.1:$port_none/index.txt" 200
            load_test magnet "http://127.0.0.1:$port_noop/index.txt" 200
            load_test apikey "http://127.0.0.1:$port_auth/index.txt" 200 \
                -H "Authorization: Bearer $key"
            load_test unknown "http://127.0.0.1:$port_auth/index.txt" 401 \
                -H "Authorization: Bearer $bad"
        } | sed "s/^/round=$round /" | tee -a "$results/http.txt"
    done
    stop_servers
}

mkdir -p "$results"
want=("$@")
[ $# -gt 0 ] || want=(verify load ref cli http)
parts=(build keys)
for part in "${want[@]}"; do
    case $part in
    build | keys) ;;
    verify | load | ref | cli | http) parts+=("$part") ;;
    *) die "unknown part '$part' (build keys verify load ref cli http)" ;;
    esac
done
{
    printf 'date=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf 'cpu=%s\n' "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    printf 'cores=%s\n' "$(nproc)"
    printf 'openssl=%s\n' "$(openssl version 2>/dev/null || echo unknown)"
    printf 'lua=%s\n' "$(lua5.4 -v 2>&1)"
    printf 'java=%s\n' "$(java -version 2>&1 | head -1)"
    printf 'lighttpd=%s\n' "$(lighttpd -v 2>/dev/null | head -1)"
} >"$results/env.txt"
for part in "${parts[@]}"; do
    "$part"
done
lua5.4 "$bench/report.lua" "$results" >"$results/table.md"
say "done: $results/table.md"
