#!/bin/sh
# fuzz/run.sh: builds the libFuzzer harnesses (ASan + UBSan) and runs each for a bounded time.
#
#   fuzz/run.sh [SECONDS] [HARNESS...]     default: 60 seconds each; record time p12 verify
#
# Builds into build/fuzz/ (FUZZ_OUT to change). The working corpus grows in
# build/fuzz/corpus/NAME; the seed corpus (fuzz/corpus/NAME) and the regression inputs
# (fuzz/regressions/NAME) are read, never written. A crashing input is copied into
# fuzz/regressions/NAME/, to be kept, and the script exits 1.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
secs=${1:-60}
[ $# -gt 0 ] && shift
names=${*:-record time p12 verify}
out=${FUZZ_OUT:-$root/build/fuzz}
cc=${CC:-clang}

cflags="-g -O1 -D_GNU_SOURCE -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"

. "$here/build.sh"

status=0
for name in $names; do
    bin=$out/fuzz_$name
    harness_deps "$name"
    echo "== $name: building"
    # shellcheck disable=SC2086
    "$cc" $cflags -fsanitize=fuzzer -I"$root/csrc" "$here/fuzz_$name.c" $binding \
        "$out/libcore.a" -lcrypto -luuid $libs -o "$bin"

    mkdir -p "$out/corpus/$name" "$out/artifacts/$name" "$here/regressions/$name"
    dict=
    [ -f "$here/$name.dict" ] && dict=-dict=$here/$name.dict
    # A keystore may ask for up to 20 million key derivation iterations in all (a few
    # seconds), and the p12 harness loads each input several times: more than a minute is a
    # hang. Records and dates take microseconds.
    timeout=10
    [ "$name" = p12 ] && timeout=60
    echo "== $name: fuzzing for $secs s"
    set +e
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$secs" -timeout=$timeout -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/$name/" $dict \
        "$out/corpus/$name" "$here/corpus/$name" "$here/regressions/$name" \
        >"$out/$name.log" 2>&1
    rc=$?
    set -e
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$out/$name.log" || true
    found=$(ls "$out/artifacts/$name" 2>/dev/null || true)
    if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
        status=1
        echo "== $name: FAILED (exit $rc); log: $out/$name.log"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_[a-z0-9]+: check failed)' "$out/$name.log" |
            head -5 || true
        for f in $found; do
            cp "$out/artifacts/$name/$f" "$here/regressions/$name/$f"
            echo "   kept as fuzz/regressions/$name/$f"
        done
        rm -f "$out/artifacts/$name"/*
    else
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$name.log")
        files=$(find "$out/corpus/$name" -type f | wc -l)
        echo "== $name: ok, $execs executions in $secs s, corpus $files files"
    fi
done
exit $status
