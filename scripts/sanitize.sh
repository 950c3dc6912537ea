#!/bin/sh
# The whole busted suite against the C module built with AddressSanitizer (leaks included) and
# UndefinedBehaviorSanitizer, or run under Valgrind's memcheck. Any report fails the run, even
# one from a command whose spec passed.
#
#   sh scripts/sanitize.sh [busted options...] [SPEC...]             ASan + UBSan + LSan (CI)
#   sh scripts/sanitize.sh --valgrind [busted options...] [SPEC...]  memcheck; definite leaks
#                                                                    are errors
# Under valgrind the crash and concurrency specs are left out unless named: their kill delays
# and lock waits are measured at native speed, and valgrind is 20 to 50 times slower.
# How: each program that loads the module (lua5.4: busted itself and every `apikey` a spec
# runs; lighttpd for the example) is found on PATH as a wrapper in the run's <mode>/bin that
# starts the real one with the sanitizer runtime preloaded, or under valgrind. A small
# preloaded helper (tests/preload.c) keeps C modules loaded at exit (dlclose does nothing), so
# that a leak report names our functions and what our statics hold is not counted as leaked;
# under ASan it also removes LD_PRELOAD from that process's environment, so the shells and
# tools a spec runs (sh, mktemp, openssl) are not instrumented and their own leaks are not
# counted as ours (valgrind follows no child process anyway).
# A module that leaks on purpose (tests/canary.c) must be reported first, or the run fails: the
# instrumentation is proven live. Reports are printed at the end.
set -eu

cd "$(dirname "$0")/.."
. scripts/testenv.sh
root=$PWD
mode=asan
if [ "${1:-}" = "--valgrind" ]; then
    mode=valgrind
    shift
fi
cc=${CC:-cc}
# The staged install, the wrappers and the specs' temporary files go under the run's folder,
# removed at the end; reports are printed before that.
test_tmpdir
out=$TMPDIR/$mode
stage=$out/stage
logs=$out/logs

if [ "$mode" = valgrind ] && ! command -v valgrind >/dev/null 2>&1; then
    echo "sanitize.sh: valgrind not found (apt-get install valgrind)" >&2
    exit 1
fi
if [ "$mode" = asan ]; then
    cmake_args="-DAPIKEY_SANITIZE=address,undefined -DCMAKE_C_COMPILER=$cc"
else
    cmake_args=""
fi
test_install "$stage" "$root/build/$mode" "$cmake_args ${CMAKE_ARGS:-}"

mkdir -p "$out/bin" "$logs"
chmod 1777 "$logs" # processes run as another user write their reports here too

# tests/preload.c: keeps modules loaded; under ASan, leaves the tools a spec runs uninstrumented.
keep=
[ "$mode" = valgrind ] && keep=-DKEEP_PRELOAD
# shellcheck disable=SC2086
CC=$cc sh tests/build.sh "$out" preload $keep

if [ "$mode" = asan ]; then
    runtime=$("$cc" -print-file-name=libasan.so)
    case $runtime in
    /*) ;;
    *) runtime=$("$cc" -print-file-name=libclang_rt.asan-x86_64.so) ;;
    esac
    if [ ! -f "$runtime" ]; then
        echo "sanitize.sh: no ASan runtime for $cc" >&2
        exit 1
    fi
    # exitcode 86 tells a sanitizer report from a command's own failure in a spec's output.
    ASAN_OPTIONS="detect_leaks=1:exitcode=86:log_path=$logs/asan"
    ASAN_OPTIONS="$ASAN_OPTIONS:detect_stack_use_after_return=1:strict_string_checks=1"
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=86:log_path=$logs/ubsan"
    LSAN_OPTIONS="suppressions=$root/scripts/lsan.supp:print_suppressions=0"
    export ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
fi

# wrap NAME: <mode>/bin/NAME starts the real NAME instrumented.
wrap() {
    real=$(command -v "$1") || return 0
    if [ "$mode" = asan ]; then
        cat >"$out/bin/$1" <<SH
#!/bin/sh
LD_PRELOAD="$runtime:$out/preload.so\${LD_PRELOAD:+:\$LD_PRELOAD}" exec "$real" "\$@"
SH
    else
        cat >"$out/bin/$1" <<SH
#!/bin/sh
LD_PRELOAD="$out/preload.so\${LD_PRELOAD:+:\$LD_PRELOAD}" exec valgrind --tool=memcheck -q \\
    --error-exitcode=86 --leak-check=full --errors-for-leak-kinds=definite \\
    --show-leak-kinds=definite --log-file="$logs/memcheck.%p" "$real" "\$@"
SH
    fi
    chmod 755 "$out/bin/$1"
}
PATH=$PATH:/usr/sbin:/sbin
wrap lua5.4
wrap lighttpd
PATH=$out/bin:$PATH
export PATH

# The instrumentation must be live: a module that leaks on purpose must be reported.
canary_flags=
[ "$mode" = asan ] && canary_flags=-fsanitize=address
# shellcheck disable=SC2086
CC=$cc sh tests/build.sh "$out" canary $canary_flags
lua5.4 -e "package.cpath = '$out/?.so'; require 'canary'" >/dev/null 2>&1 || true
if ! grep -Eqs '4,?242 byte' "$logs"/*; then
    echo "sanitize.sh: the leak canary was not reported: the $mode instrumentation is not live" >&2
    exit 1
fi
rm -f "$logs"/*

# The specs to run: those named, else all of spec/. Under valgrind (20 to 50 times slower),
# all but the two whose timing is measured at native speed: the crash spec's kill delays and
# the concurrency spec's lock waits. ASan runs them all.
specs=spec
if [ "$mode" = valgrind ]; then
    specs=
    for f in spec/*_spec.lua; do
        case $f in */crash_spec.lua | */concurrency_spec.lua) ;; *) specs="$specs $f" ;; esac
    done
fi
for a in "$@"; do
    case $a in -*) ;; *) specs= ;; esac
done

status=0
# shellcheck disable=SC2086 # specs: words, or none
lua5.4 /usr/bin/busted --output=plainTerminal "$@" $specs || status=$?

# Valgrind opens a log per process; only those with something in them are reports.
reports=
for f in $(find "$logs" -type f -size +0c | sort); do
    # LeakSanitizer writes only these lines when its process is killed while it stops the
    # world to check for leaks at exit (the crash spec SIGKILLs commands at random moments):
    # the check did not run, which is not a finding. Any other line is a report.
    if grep -qvE '^==[0-9]+==(Unable to get registers from thread [0-9]+\.|LeakSanitizer has encountered a fatal error\.|HINT: For debugging, try setting environment variable LSAN_OPTIONS=verbosity=1 and LSAN_OPTIONS=log_threads=1|HINT: LeakSanitizer does not work under ptrace \(strace, gdb, etc\))$' "$f"; then
        reports="$reports $f"
    fi
done
reports=${reports# }
if [ -n "$reports" ]; then
    for f in $reports; do
        echo "---- $f"
        head -n 60 "$f"
    done
    echo "sanitize.sh: $(echo "$reports" | wc -w) $mode report(s) above" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "sanitize.sh: busted failed (status $status) with the $mode build" >&2
    exit 1
fi
echo "sanitize.sh: the suite passed under $mode with no report"
