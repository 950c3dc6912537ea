#!/bin/sh
# fuzz/replay.sh: replays the seed corpus and every regression input through each harness,
# built without libFuzzer (standalone.c is the main) but with ASan and UBSan, so that the
# test suite checks them on every run with only a C compiler.
#
#   sh fuzz/replay.sh [HARNESS...]      default: record time p12; exits 1 on any failure
#
# Builds into build/fuzz-replay/ (FUZZ_REPLAY_OUT to change); CC picks the compiler
# (default cc: gcc or clang both work).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
names=${*:-record time p12}
out=${FUZZ_REPLAY_OUT:-$root/build/fuzz-replay}
cc=${CC:-cc}
cflags="-g -O1 -D_GNU_SOURCE -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"

mkdir -p "$out/obj"
rm -f "$out/obj"/*.o "$out/libcore.a"
for src in "$root"/csrc/*.c; do
    case $src in */binding.c) continue ;; esac
    # shellcheck disable=SC2086
    "$cc" $cflags -I"$root/csrc" -c "$src" -o "$out/obj/$(basename "$src" .c).o"
done
ar rcs "$out/libcore.a" "$out"/obj/*.o

# A sanitizer report fails the run; leaks count (LSan is on by default with ASan).
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS UBSAN_OPTIONS

status=0
for name in $names; do
    bin=$out/replay_$name
    # shellcheck disable=SC2086
    "$cc" $cflags -I"$root/csrc" "$here/standalone.c" "$here/fuzz_$name.c" "$out/libcore.a" \
        -lcrypto -luuid -o "$bin"
    dirs=
    for d in "$here/corpus/$name" "$here/regressions/$name"; do
        [ -d "$d" ] && dirs="$dirs $d"
    done
    # shellcheck disable=SC2086
    if ! "$bin" $dirs; then
        echo "replay: $name FAILED" >&2
        status=1
    fi
done
exit $status
