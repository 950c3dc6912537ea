#!/usr/bin/env bash
# bench/run.sh: builds what the benchmarks need, runs them all, and writes bench/results/:
# one .txt per benchmark (key=value lines), hyperfine's markdown for the CLI, and
# results/table.md, the tables of bench/README.md. About 5 minutes on 2 cores.
#
#   bash bench/run.sh                 everything
#   bash bench/run.sh verify load     only some parts of: verify load ref cli http store servers
#                                     (build and keys always run first; servers, every web
#                                     server with the example against without, only when named)
#
# Needs: a C compiler, OpenSSL 3, libuuid and Lua 5.4 headers (as for the build), lua5.4 with
# lua-argparse and lua-dkjson (as for the CLI), a JDK 17 (javac, java), hyperfine, GNU time
# (/usr/bin/time), lighttpd with mod_magnet, and wrk. On Debian 12:
#   apt-get install build-essential pkg-config libssl-dev uuid-dev libacl1-dev libattr1-dev libunistring-dev liblua5.4-dev lua5.4 \
#       lua-argparse lua-dkjson openjdk-17-jdk-headless hyperfine time lighttpd \
#       lighttpd-modules-lua wrk curl cmake
# and for the store part, Debian's postgresql and libpq-dev.
# Environment: BENCH_SECS (CPU seconds per verify measurement, default 2), BENCH_HTTP_SECS
# (seconds per wrk run, default 3), BENCH_HTTP_ROUNDS (default 5), CC, CFLAGS; for `servers`:
# BENCH_SERVERS (default "lighttpd nginx haproxy apache"), BENCH_SERVERS_ROUNDS (default 3),
# BENCH_REWRITE_SECS (seconds per wrk run under rewrites, default 10).
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
declare -A server_pid server_port
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
read -r -a deps_cflags <<<"$(pkg-config --cflags libcrypto uuid libacl libattr)"
read -r -a deps_libs <<<"$(pkg-config --libs libcrypto uuid libacl libattr) -lunistring"
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
    # The yardstick: OpenSSL's own rate for SHA-256 of 36 bytes (its last line gives bytes/s in
    # thousands, "sha256  322087.42k").
    openssl speed -seconds "$secs" -bytes 36 -evp sha256 2>/dev/null \
        | awk '/^sha256/ { sub(/k$/, "", $2); printf "openssl_speed_per_s=%.0f\n", $2 * 1000 / 36 }' \
        | tee "$results/verify_sha.txt"
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
    printf 'wall_s=%s maxrss_kb=%s\n' \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')" "$(tail -1 "$work/rss.txt")"
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
    say "commands, whole process (hyperfine)"
    local ks key rks rkey runs java="java -cp $work/java RefVerify"
    : >"$results/cli.md"
    for n in "${cli_sizes[@]}"; do
        ks=$work/ks-$n.p12
        key=$(middle_key "$work/ks-$n.keys")
        rks=$work/ref-$n.p12
        rkey=$(middle_key "$work/ref-$n.keys")
        # --prepare runs before every run of every command: a fresh copy for create.
        hyperfine --style basic --warmup 3 --runs 30 \
            --export-json "$work/cli-ours-$n.json" --export-markdown "$work/cli-ours-$n.md" \
            -n "apikey list ($n keys)" "$ak list --keystore $ks" \
            -n "apikey verify ($n keys)" "$ak verify $key --keystore $ks" \
            --prepare "cp -p $ks $work/new.p12" \
            -n "apikey create ($n keys)" "$ak create bench-new --keystore $work/new.p12" \
            >&2
        runs=5
        [ "$n" -lt 1000 ] || runs=3
        hyperfine --style basic --warmup 1 --runs "$runs" \
            --export-json "$work/cli-ref-$n.json" --export-markdown "$work/cli-ref-$n.md" \
            -n "reference list ($n keys)" "$java list $rks" \
            -n "reference verify ($n keys)" "$java verify $rks $rkey" \
            --prepare "cp -p $rks $work/new-ref.p12" \
            -n "reference create ($n keys)" "$java create $work/new-ref.p12 bench-new" \
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
        -n "+ require argparse" "lua5.4 -e 'require \"argparse\"'" \
        -n "+ require apikey.core (OpenSSL)" \
        "lua5.4 -e 'require \"argparse\"; require \"apikey.core\"'" \
        -n "+ require apikey.cli" "lua5.4 -e 'require \"apikey.cli\"'" \
        -n "+ open the keystore (10 keys)" \
        "lua5.4 -e 'require \"apikey.cli\"; require(\"apikey\").open { path = \"$work/ks-10.p12\" }'" \
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
# Starts lighttpd on 127.0.0.1 serving $work/www, with the magnet script $2 (none when empty),
# configured in $work/$1.conf; its PID and port go to server_pid[$1] and server_port[$1]. Ports
# are tried at random below the range the kernel gives to outgoing connections, until one binds.
start_server() {
    local name=$1 script=$2 conf=$work/$1.conf port pid low
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    for _ in $(seq 20); do
        port=$((10000 + RANDOM % (low - 10000)))
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
        lighttpd -D -f "$conf" 2>>"$work/$name-error.log" &
        pid=$!
        for _ in $(seq 50); do
            if ! kill -0 "$pid" 2>/dev/null; then
                break
            fi
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                servers+=("$pid")
                server_pid[$name]=$pid
                server_port[$name]=$port
                return
            fi
            sleep 0.1
        done
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
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

# CPU time (ns) that process $1 has used so far: user and system, from the scheduler.
cpu_ns() { cut -d' ' -f1 "/proc/$1/schedstat"; }

# One wrk run for way $1 against the server named $2 (which must answer HTTP $3), more
# arguments for wrk and curl after. One line: requests/s and latencies as wrk saw them, and
# the server's CPU time per request (a measure that other processes on the machine do not
# change, unlike requests/s).
load_test() {
    local way=$1 name=$2 want=$3 out=$work/wrk.txt code url pid c0 c1
    shift 3
    url=http://127.0.0.1:${server_port[$name]}/index.txt
    pid=${server_pid[$name]}
    code=$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url")
    [ "$code" = "$want" ] || die "$way: expected HTTP $want from $url, got $code"
    c0=$(cpu_ns "$pid")
    wrk -t1 -c16 -d"$http_secs"s --latency "$@" "$url" >"$out"
    c1=$(cpu_ns "$pid")
    awk -v way="$way" -v cpu="$((c1 - c0))" '
        / requests in / { n = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /^ +50%/ { p50 = $2 }
        /^ +99%/ { p99 = $2 }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        END {
            printf "way=%s rps=%s p50=%s p99=%s non2xx=%d requests=%d", way, rps, p50, p99,
                non2xx, n
            printf " server_cpu_us_per_req=%.3f\n", cpu / 1000 / n
        }
    ' "$out"
}

# Five servers at once: no auth; mod_magnet with a script that does nothing (what mod_magnet
# itself costs); one that only reads the Authorization header; one that checks it with a
# verifier and does nothing else; the apikey example. Keys: the 1,000-key keystore. wrk runs
# against each in turn, for several rounds, so that a busy spell of the machine falls on all
# of them alike; the report takes each one's median.
http() {
    say "lighttpd with wrk: no auth, apikey auth"
    local key round auth bad
    key=$(middle_key "$work/ks-1000.keys")
    auth="Authorization: Bearer $key"
    bad="Authorization: Bearer 00000000-0000-4000-8000-000000000000"
    mkdir -p "$work/www"
    head -c 4096 /dev/zero | tr '\0' 'a' >"$work/www/index.txt"
    printf 'return 0\n' >"$work/noop.lua"
    printf 'local h = lighty.r.req_header["Authorization"]\nreturn 0\n' >"$work/header.lua"
    # The check alone: the header, then v:authenticate, and nothing else of the example.
    cat >"$work/check.lua" <<EOF
local v = package.loaded.bench_verifier
if v == nil then
    package.path = "$prefix/share/lua/5.4/?.lua;$prefix/share/lua/5.4/?/init.lua;" .. package.path
    package.cpath = "$prefix/lib/lua/5.4/?.so;" .. package.cpath
    v = assert(require("apikey").verifier { path = "$work/ks-1000.p12", interval = 1 })
    package.loaded.bench_verifier = v
end
return v:authenticate(lighty.r.req_header["Authorization"]) and 0 or 401
EOF
    start_server none ""
    start_server noop "$work/noop.lua"
    start_server header "$work/header.lua"
    start_server check "$work/check.lua"
    APIKEY_PREFIX=$prefix APIKEY_KEYSTORE=$work/ks-1000.p12 \
        start_server apikey "$root/examples/lighttpd/apikey-auth.lua"
    : >"$results/http.txt"
    # Every request carries the same Authorization header, so that all servers parse the same.
    for round in $(seq "$http_rounds"); do
        {
            load_test none none 200 -H "$auth"
            load_test magnet noop 200 -H "$auth"
            load_test header header 200 -H "$auth"
            load_test check check 200 -H "$auth"
            load_test apikey apikey 200 -H "$auth"
            load_test unknown apikey 401 -H "$bad"
        } | sed "s/^/round=$round /" | tee -a "$results/http.txt"
    done
    stop_servers
}

# --- the PostgreSQL store ----------------------------------------------------------------------
# Propagation through `apikey sync` (from `apikey --store create` returning to a verifier of
# another file accepting the key) and a full sync of 100,000 keys, against a PostgreSQL 15
# started in a temporary folder of its own (bench/store_bench.lua).
store() {
    say "PostgreSQL store: propagation, full sync of 100,000 keys"
    APIKEY_TEST_PREFIX=$prefix lua5.4 "$bench/store_bench.lua" | tee "$results/store.txt"
}

# --- every server: lighttpd, nginx, HAProxy, Apache + wrk -------------------------------------
# Each server as its example sets it up (examples/*), beside the same server without the check,
# all on 127.0.0.1, one event loop each (lighttpd; nginx, 1 worker; HAProxy, 1 thread; Apache,
# event MPM, 1 child of 4 threads). Two sites on each: /index.txt, the 4 KiB file served by the
# server itself, and /proxy/index.txt, passed on to a backend (a plain nginx, 1 worker, serving
# the same file, over kept-alive connections where the server can keep them). Each server runs
# in a session of its own, so its CPU is the sum over the session's threads. Then the keystore
# of 100,000 keys, without and with a password, rewritten every second: latency as wrk sees it.

# A free port: random, below the range the kernel gives to outgoing connections.
free_port() {
    local port low
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    while :; do
        port=$((10000 + RANDOM % (low - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# launch NAME PORT COMMAND...: runs the command in a session of its own (its PID is the
# session's id), with apikey's settings from the environment and no LUA_PATH of ours, and
# waits until it answers on PORT.
launch() {
    local name=$1 port=$2 pid
    shift 2
    env -u LUA_PATH -u LUA_CPATH setsid "$@" >"$work/$name.out" 2>&1 </dev/null &
    pid=$!
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            servers+=("$pid")
            server_pid[$name]=$pid
            server_port[$name]=$port
            return
        fi
        sleep 0.1
    done
    cat "$work/$name.out" >&2
    die "$name did not start"
}

# Stops the server NAME (by its PID) and waits for it.
stop_one() {
    local pid=${server_pid[$1]} p keep=()
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${servers[@]}"; do
        [ "$p" = "$pid" ] || keep+=("$p")
    done
    servers=("${keep[@]}")
}

# CPU time (ns) of every thread of every process in session $1.
session_cpu_ns() {
    local total=0 p t
    for p in $(pgrep -s "$1"); do
        for t in /proc/"$p"/task/*/schedstat; do
            [ -r "$t" ] && total=$((total + $(cut -d' ' -f1 "$t" 2>/dev/null || echo 0)))
        done
    done
    echo "$total"
}

# nginx: the backend ($1 = "backend"), or a front server without ($2 = none) or with the check
# (apikey), on the keystore $3 with password $4 (may be empty).
nginx_conf() {
    local name=$1 auth=$2 ks=$3 pass=$4 port=$5 run=$work/$1
    mkdir -p "$run"
    {
        [ "$auth" = none ] || printf 'load_module /usr/lib/nginx/modules/%s;\n' \
            ndk_http_module.so ngx_http_lua_module.so
        printf 'daemon off;\nworker_processes 1;\npid %s/nginx.pid;\n' "$run"
        printf 'error_log %s/error.log notice;\n' "$run"
        printf 'events { worker_connections 1024; }\nhttp {\n'
        printf 'access_log off;\nkeepalive_requests 1000000;\n'
        for t in client_body proxy fastcgi uwsgi scgi; do
            printf '%s_temp_path %s/%s;\n' "$t" "$run" "$t"
        done
        if [ "$name" = backend ]; then
            printf 'server { listen 127.0.0.1:%s; root %s/www; }\n}\n' "$port" "$work"
            return
        fi
        if [ "$auth" != none ]; then
            sed -e "s|/etc/nginx/apikey|$root/examples/nginx|g" \
                -e "s|/opt/apikey/security/metricshub-keystore.p12|$ks|" \
                -e "s|/opt/apikey|$prefix|g" "$root/examples/nginx/apikey-http.conf" \
                | if [ -n "$pass" ]; then
                    sed "s|^\( *\)keystore = \(.*\)$|&\n\1password = \"$pass\",|"
                else cat; fi
        fi
        printf 'upstream backend { server 127.0.0.1:%s; keepalive 16; }\n' "${server_port[backend]}"
        printf 'server {\nlisten 127.0.0.1:%s;\nroot %s/www;\n' "$port" "$work"
        # the example's site: its variables and, with the check, its access phase
        printf 'set $apikey_alias "";\nset $apikey_error "";\n'
        [ "$auth" = none ] ||
            printf 'access_by_lua_block { require("apikey_nginx").access() }\n'

        printf 'location /proxy/ {\nproxy_http_version 1.1;\nproxy_set_header Connection "";\n'
        printf 'proxy_set_header X-Apikey-Alias $apikey_alias;\nproxy_pass http://backend;\n}\n'
        printf '}\n}\n'
    } >"$run/nginx.conf"
}

start_nginx() {
    local name=$1 port
    port=$(free_port)
    nginx_conf "$@" "$port"
    launch "$name" "$port" nginx -e "$work/$name/error.log" -p "$work/$name" \
        -c "$work/$name/nginx.conf"
}

start_lighttpd() {
    local name=$1 auth=$2 ks=$3 pass=$4 port conf=$work/$1.conf
    port=$(free_port)
    {
        printf 'server.document-root = "%s"\n' "$work/www"
        printf 'server.bind = "127.0.0.1"\nserver.port = %s\n' "$port"
        printf 'server.errorlog = "%s"\n' "$work/$name-error.log"
        printf 'server.max-keep-alive-requests = 1000000\n'
        printf 'mimetype.assign = ( ".txt" => "text/plain" )\n'
        printf 'server.modules += ( "mod_proxy" )\n'
        if [ "$auth" != none ]; then
            printf 'server.modules += ( "mod_magnet" )\n'
            printf 'magnet.attract-raw-url-to = ( "%s" )\n' "$root/examples/lighttpd/apikey-auth.lua"
        fi
        printf '$HTTP["url"] =^ "/proxy/" {\n'
        printf '  proxy.server = ( "" => ( ( "host" => "127.0.0.1", "port" => %s ) ) )\n}\n' \
            "${server_port[backend]}"
    } >"$conf"
    APIKEY_PREFIX=$prefix APIKEY_KEYSTORE=$ks APIKEY_KEYSTORE_PASSWORD=$pass \
        launch "$name" "$port" lighttpd -D -f "$conf"
}

# HAProxy serves the file itself with `http-request return ... file` (read when it starts).
# $5: "fork" adds insecure-fork-wanted, which lets the reload run in a thread.
start_haproxy() {
    local name=$1 auth=$2 ks=$3 pass=$4 fork=${5:-} port conf=$work/$1.cfg
    port=$(free_port)
    {
        printf 'global\n    nbthread 1\n    maxconn 1024\n'
        [ -z "$fork" ] || printf '    insecure-fork-wanted\n'
        [ "$auth" = none ] || printf '    lua-load %s\n' "$root/examples/haproxy/apikey.lua"
        printf 'defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n'
        printf '    timeout server 30s\n'
        printf 'frontend www\n    bind 127.0.0.1:%s\n' "$port"
        [ "$auth" = none ] || printf '    http-request lua.apikey\n'
        printf '    http-request return status 200 content-type text/plain file %s' \
            "$work/www/index.txt"
        printf ' unless { path_beg /proxy/ }\n    default_backend app\n'
        printf 'backend app\n    http-reuse always\n    server app1 127.0.0.1:%s\n' \
            "${server_port[backend]}"
    } >"$conf"
    APIKEY_PREFIX=$prefix APIKEY_KEYSTORE=$ks APIKEY_KEYSTORE_PASSWORD=$pass \
        launch "$name" "$port" haproxy -db -f "$conf"
}

start_apache() {
    local name=$1 auth=$2 ks=$3 pass=$4 port run=$work/$1 m=/usr/lib/apache2/modules
    port=$(free_port)
    mkdir -p "$run"
    {
        printf 'ServerName 127.0.0.1\nListen 127.0.0.1:%s\n' "$port"
        printf 'DefaultRuntimeDir %s\nPidFile %s/apache2.pid\n' "$run" "$run"
        printf 'Mutex file:%s default\nErrorLog %s/error.log\nLogLevel warn\n' "$run" "$run"
        [ "$(id -u)" != 0 ] || printf 'User nobody\nGroup nogroup\n'
        for mod in mpm_event authz_core proxy proxy_http; do
            printf 'LoadModule %s_module %s/mod_%s.so\n' "$mod" "$m" "$mod"
        done
        [ "$auth" = none ] || printf 'LoadModule lua_module %s/mod_lua.so\n' "$m"
        # 4 threads, each a Lua state with its own keys; up to 4 + 8 x idle threads connections
        printf 'ServerLimit 1\nStartServers 1\nThreadLimit 4\nThreadsPerChild 4\n'
        printf 'MinSpareThreads 1\nMaxSpareThreads 4\nMaxRequestWorkers 4\n'
        printf 'AsyncRequestWorkerFactor 8\n'
        printf 'MaxConnectionsPerChild 0\nKeepAlive On\nMaxKeepAliveRequests 0\n'
        printf 'DocumentRoot %s/www\n<Directory %s/www>\n    Require all granted\n' "$work" "$work"
        printf '</Directory>\n'
        if [ "$auth" != none ]; then
            sed -e "s|/etc/apache2/apikey/|$root/examples/apache2/|" \
                -e "s|/opt/apikey|$prefix|g" "$root/examples/apache2/apikey.conf"
        fi
        printf 'ProxyPass /proxy/ http://127.0.0.1:%s/proxy/\n' "${server_port[backend]}"
    } >"$run/httpd.conf"
    APIKEY_KEYSTORE=$ks APIKEY_KEYSTORE_PASSWORD=$pass \
        launch "$name" "$port" apache2 -DFOREGROUND -f "$run/httpd.conf"
}

# One wrk run against server $2 at path $3 (which must answer 200): requests/s, latency
# (p50, p99, max, in µs), the server's and the backend's CPU per request. $1: the line's
# leading fields; more arguments go to wrk (and curl). BENCH_WRK_SECS: the run's length.
wrk_run() {
    local fields=$1 name=$2 path=$3 out=$work/wrk.txt url code sid b c0 c1 b0 b1
    shift 3
    url=http://127.0.0.1:${server_port[$name]}$path
    code=$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url")
    [ "$code" = 200 ] || die "$fields: expected HTTP 200 from $url, got $code"
    sid=${server_pid[$name]}
    b=${server_pid[backend]}
    c0=$(session_cpu_ns "$sid")
    b0=$(session_cpu_ns "$b")
    wrk -t1 -c16 -d"${BENCH_WRK_SECS:-$http_secs}"s --latency "$@" "$url" >"$out"
    c1=$(session_cpu_ns "$sid")
    b1=$(session_cpu_ns "$b")
    awk -v f="$fields" -v cpu="$((c1 - c0))" -v bcpu="$((b1 - b0))" '
        function us(v) {
            if (v ~ /us$/) return v + 0
            if (v ~ /ms$/) return v * 1000
            if (v ~ /m$/) return v * 60e6
            return v * 1e6
        }
        / requests in / { n = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /^ +Latency +[0-9]/ { max = us($4) }
        /^ +50%/ { p50 = us($2) }
        /^ +99%/ { p99 = us($2) }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        END {
            printf "%s rps=%s p50_us=%.0f p99_us=%.0f max_us=%.0f non2xx=%d requests=%d", f, rps,
                p50, p99, max, non2xx, n
            printf " server_cpu_us_per_req=%.3f backend_cpu_us_per_req=%.3f\n", cpu / 1000 / n,
                bcpu / 1000 / n
        }
    ' "$out"
}

# Rewrites keystore $2 from $1 every second (a new file renamed over it, as apikey does), until
# stopped; its PID in rewriter_pid.
start_rewriter() {
    local from=$1 to=$2
    (
        while :; do
            cp "$from" "$to.new"
            mv -f "$to.new" "$to"
            sleep 1
        done
    ) &
    rewriter_pid=$!
}

servers() {
    say "every server with wrk: without and with the check, static and proxied, rewrites"
    local key auth srv round site path a ks src pass kind rkey rauth rounds=${BENCH_SERVERS_ROUNDS:-3}
    local rw_secs=${BENCH_REWRITE_SECS:-10} list rw_list
    read -r -a list <<<"${BENCH_SERVERS:-lighttpd nginx haproxy apache}"
    rw_list=("${list[@]}")
    [[ " ${list[*]} " != *" haproxy "* ]] || rw_list+=(haproxy-fork)
    key=$(middle_key "$work/ks-1000.keys")
    auth="Authorization: Bearer $key"
    mkdir -p "$work/www/proxy"
    head -c 4096 /dev/zero | tr '\0' 'a' >"$work/www/index.txt"
    cp "$work/www/index.txt" "$work/www/proxy/index.txt"
    # nginx's workers and Apache's children run as nobody when started by root
    chmod 755 "$work"
    chmod 644 "$work"/ks-*.p12
    [ -e "$work/pw-100000.p12" ] ||
        "$work/bin/gen_keystore" 100000 "$work/pw-100000.p12" "$work/pw-100000.keys" 600000 \
            bench-secret
    chmod 644 "$work/pw-100000.p12"
    : >"$results/servers.txt"
    start_nginx backend none "" ""
    for srv in "${list[@]}"; do
        "start_$srv" "$srv-none" none "$work/ks-1000.p12" ""
        "start_$srv" "$srv-apikey" apikey "$work/ks-1000.p12" ""
        for round in $(seq "$rounds"); do
            for site in static proxy; do
                path=/index.txt
                [ "$site" = static ] || path=/proxy/index.txt
                for a in none apikey; do
                    wrk_run "test=throughput round=$round server=$srv site=$site auth=$a" \
                        "$srv-$a" "$path" -H "$auth"
                done
            done | tee -a "$results/servers.txt"
        done
        stop_one "$srv-none"
        stop_one "$srv-apikey"
    done
    # Latency while the keystore of 100,000 keys is rewritten every second: the same server,
    # first left alone, then with the rewrites.
    for srv in "${rw_list[@]}"; do
        for kind in plain password; do
            ks=$work/rw.p12
            pass=""
            src=$work/ks-100000
            if [ "$kind" = password ]; then
                pass=bench-secret
                src=$work/pw-100000
            fi
            rkey=$(middle_key "$src.keys")
            src=$src.p12
            cp "$src" "$ks"
            rauth="Authorization: Bearer $rkey"
            if [ "$srv" = haproxy-fork ]; then
                start_haproxy rw apikey "$ks" "$pass" fork
            else
                "start_$srv" rw apikey "$ks" "$pass"
            fi
            # the first request loads the keys where the server loads them on demand
            curl -s -o /dev/null -H "$rauth" "http://127.0.0.1:${server_port[rw]}/index.txt"
            sleep 1
            BENCH_WRK_SECS=$rw_secs wrk_run \
                "test=rewrite server=$srv keystore=$kind rewrites=0" rw /index.txt -H "$rauth" \
                | tee -a "$results/servers.txt"
            start_rewriter "$src" "$ks"
            BENCH_WRK_SECS=$rw_secs wrk_run \
                "test=rewrite server=$srv keystore=$kind rewrites=1" rw /index.txt -H "$rauth" \
                | tee -a "$results/servers.txt"
            kill "$rewriter_pid" 2>/dev/null || true
            wait "$rewriter_pid" 2>/dev/null || true
            stop_one rw
        done
    done
    stop_one backend
}

mkdir -p "$results"
want=("$@")
[ $# -gt 0 ] || want=(verify load ref cli http store)
parts=(build keys)
for part in "${want[@]}"; do
    case $part in
    build | keys) ;;
    verify | load | ref | cli | http | store | servers) parts+=("$part") ;;
    *) die "unknown part '$part' (build keys verify load ref cli http store servers)" ;;
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
