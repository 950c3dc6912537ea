#!/bin/sh
# The whole test suite, from a fresh Debian 12 (as root) or a ready machine (as anyone):
# installs the packages, builds, installs into a staging prefix of this run, and runs the busted
# specs against that installed tree. Ends with "N passed, N failed[, N skipped]"; exits non-zero when a test
# failed, when busted did not finish, or when no test ran.
#
# Then the same specs with the C module built with sanitizers (scripts/sanitize.sh).
#
#   bash scripts/test.sh [busted options...]      e.g. --filter=revoke
set -eu

cd "$(dirname "$0")/.."
. scripts/testenv.sh
test_tmpdir
test_install "$TMPDIR/stage"

# run NAME COMMAND...: runs one pass of the suite, its output also in build/NAME.log, and adds
# its busted summary ("N successes / N failures / N errors / N pending") to the totals. A pass
# that ends without a summary, or exits non-zero with none failed (a sanitizer report), counts
# as one failure.
passed=0 failed=0 skipped=0
run() {
    name=$1
    shift
    log=build/$name.log
    status=build/$name.status
    rm -f "$log" "$status"
    # The status goes through a file: POSIX sh has no pipefail.
    { "$@" && echo 0 >"$status" || echo $? >"$status"; } 2>&1 | tee "$log"
    rc=$(cat "$status" 2>/dev/null || echo 1)
    summary=$(grep -E '^[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' \
        "$log" | tail -n 1 || true)
    if [ -z "$summary" ]; then
        echo "test.sh: the $name pass stopped (status $rc) before busted's summary; see $log" >&2
        failed=$((failed + 1))
        return
    fi
    # shellcheck disable=SC2086 # split the summary into words
    set -- $summary
    passed=$((passed + $1)) skipped=$((skipped + ${10}))
    if [ $(($4 + $7)) -gt 0 ]; then
        failed=$((failed + $4 + $7))
    elif [ "$rc" -ne 0 ]; then
        echo "test.sh: the $name pass exited with status $rc; see $log" >&2
        failed=$((failed + 1))
    fi
}

run busted lua5.4 /usr/bin/busted --output=plainTerminal --verbose "$@" spec
# The API and verifier specs again under Lua 5.1 (LuaJIT, nginx's Lua) and 5.3 (HAProxy's and
# Apache's), against the modules installed for them; about 5 s each.
for lua in luajit lua5.3; do
    run "busted-$lua" "$lua" /usr/bin/busted --ignore-lua --output=plainTerminal --verbose "$@" \
        spec/api_spec.lua spec/verifier_spec.lua
done
# The same specs again with the C module built with AddressSanitizer (leaks included) and
# UndefinedBehaviorSanitizer: any report fails the run. APIKEY_TEST_SANITIZE=0 skips it for a
# quick run by hand; CI always runs it.
if [ "${APIKEY_TEST_SANITIZE:-1}" != 0 ]; then
    run sanitize sh scripts/sanitize.sh "$@"
fi

echo
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
if [ $((passed + failed)) -eq 0 ]; then
    echo "test.sh: no test ran" >&2
    exit 1
fi
[ "$failed" -eq 0 ]
