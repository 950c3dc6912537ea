#!/bin/sh
# Builds one C helper of the test suite, tests/NAME.c, as OUT/NAME.so:
#
#   sh tests/build.sh OUT NAME [COMPILER OPTIONS...]
#
#   faultshim  the faults of spec/faults_spec.lua and spec/crash_spec.lua (LD_PRELOAD)
#   preload    preloaded by scripts/sanitize.sh into each instrumented program
#              (-DKEEP_PRELOAD under valgrind)
#   canary     the Lua module that leaks on purpose, to show the instrumentation of
#              scripts/sanitize.sh is live (-fsanitize=address under ASan)
#
# CC picks the compiler (default cc).
set -eu

if [ $# -lt 2 ]; then
    echo "usage: sh tests/build.sh OUT NAME [COMPILER OPTIONS...]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
out=$1
name=$2
shift 2
mkdir -p "$out"
"${CC:-cc}" -shared -fPIC -O1 -g -Wall -Wextra -Werror "$@" -o "$out/$name.so" "$here/$name.c" -ldl
