#!/bin/sh
# Builds apikey and installs it under a prefix, on Debian 12, as root (packages are installed
# only when missing, so a ready machine needs no root). Safe to run again.
#
#   sh scripts/install.sh [--with-tests] [--lua VERSIONS] [PREFIX]
#       PREFIX: argument, else $PREFIX, else /opt/apikey
#       VERSIONS: the Luas to install the module for, among 5.1 (LuaJIT), 5.3 and 5.4, e.g.
#       --lua 5.1,5.4 (their packages are installed when missing); by default every Lua whose
#       headers are installed
#
# Result: PREFIX/bin/apikey (the command, on Lua 5.4), and for each Lua version V:
# PREFIX/share/lua/V/apikey/*.lua, PREFIX/lib/lua/V/apikey/core.so.
# The build folder is build/ (BUILD_DIR to change); CMAKE_ARGS adds options to the configure.
set -eu

sections="runtime build"
lua_versions=""
while [ $# -gt 0 ]; do
    case $1 in
    --with-tests) sections="$sections test" ;;
    --lua)
        [ $# -ge 2 ] || { echo "install.sh: --lua needs versions, e.g. --lua 5.1,5.4" >&2; exit 2; }
        lua_versions=$(echo "$2" | tr ', ' ';;')
        shift
        ;;
    *) break ;;
    esac
    shift
done
for v in $(echo "$lua_versions" | tr ';' ' '); do
    case $v in
    5.1 | 5.3) sections="$sections lua$v" ;;
    5.4) ;;
    *) echo "install.sh: --lua $v: the versions are 5.1 (LuaJIT), 5.3 and 5.4" >&2; exit 2 ;;
    esac
done
prefix=${1:-${PREFIX:-/opt/apikey}}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}

# The packages of the given sections of scripts/packages.txt.
packages_of() {
    awk -v want=" $* " '
        /^\[.*\]$/ { s = substr($0, 2, length($0) - 2); on = index(want, " " s " ") > 0; next }
        on && NF && $1 !~ /^#/ { print $1 }' "$root/scripts/packages.txt"
}

missing=""
for p in $(packages_of "$sections"); do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install.sh: missing Debian packages:$missing; run as root, or: apt-get install$missing" >&2
        exit 1
    fi
    echo "install.sh: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086 # one word a package
    apt-get install -y -q --no-install-recommends $missing
fi

# shellcheck disable=SC2086 # CMAKE_ARGS holds several options
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DAPIKEY_LUA=$lua_versions" \
    ${CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)"
cmake --install "$build" --prefix "$prefix" >/dev/null
echo "install.sh: installed apikey in $prefix (run $prefix/bin/apikey --help)"
