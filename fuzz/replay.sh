#!/bin/sh
# fuzz/replay.sh: replays the seed corpus and every regression input through each harness,
# built without libFuzzer (standalone.c is the main) but with ASan and UBSan, so that the
# test suite checks them on every run with only a C compiler.
#
#   sh fuzz/replay.sh [HARNESS...]      default: record time p12 verify; exits 1 on any failure
#
# Builds into build/fuzz-replay/ (FUZZ_REPLAY_OUT to change); CC picks the compiler
# (default cc: gcc or clang both work).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
names=${*:-record time p12 verify}
out=${FUZZ_REPLAY_OUT:-$root/build/fuzz-replay}
cc=${CC:-cc}
cflags="-g -O1 -D_GNU_SOURCE -fno-omit-frame-pointer"
cflags="$cflags -fsanitize=address,undefined -fno-sanitize-recover=all"

. "$here/build.sh"

# A sanitizer report fails the run; leaks count (LSan is on by default with ASan).
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS UBSAN_OPTIONS

# A harness that hangs fails instead (a key derivation a hostile file made slow, say).
limit=
command -v timeout >/dev/null 2>&1 && limit="timeout ${FUZZ_REPLAY_TIMEOUT:-300}"

status=0
for name in $names; do
    bin=$out/replay_$name
    harness_deps "$name"
    # shellcheck disable=SC2086
    "$cc" $cflags -I"$root/csrc" "$here/standalone.c" "$here/fuzz_$name.c" $binding \
        "$out/libcore.a" -lcrypto -luuid $libs -o "$bin"
    dirs=
    for d in "$here/corpus/$name" "$here/regressions/$name"; do
        [ -d "$d" ] && dirs="$dirs $d"
    done
    # shellcheck disable=SC2086
    if ! $limit "$bin" $dirs; then
        echo "replay: $name FAILED" >&2
        status=1
    fi
done
exit $status
