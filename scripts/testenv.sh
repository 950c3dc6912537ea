# shellcheck shell=sh
# The setup of a test run, sourced by scripts/test.sh and scripts/sanitize.sh from the
# repository's root:
#
#   . scripts/testenv.sh
#   test_tmpdir                      a folder for this run, as TMPDIR
#   test_install PREFIX [BUILD [CMAKE_ARGS]]
#                                    builds (in BUILD, default build/) and installs into PREFIX,
#                                    and exports what the specs find it by

# The staged install and every spec's temporary files go under one folder of this run, removed
# however the run ends (a spec that fails midway cannot leave its files behind). Others may
# traverse it, wherever the repository is: some specs run the command as another user.
test_tmpdir() {
    TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/apikey-tests.XXXXXX")
    chmod 755 "$TMPDIR"
    export TMPDIR
    trap 'chmod -R u+rwx "$TMPDIR" 2>/dev/null; rm -rf "$TMPDIR"' EXIT
}

# The specs run against the installed tree: APIKEY_TEST_PREFIX is its prefix (spec/helpers.lua),
# LUA_PATH and LUA_CPATH point into it for every Lua process they start.
test_install() {
    BUILD_DIR=${2:-${BUILD_DIR:-}} CMAKE_ARGS=${3:-${CMAKE_ARGS:-}} \
        sh scripts/install.sh --with-tests "$1"
    export APIKEY_TEST_PREFIX="$1"
    export LUA_PATH="$1/share/lua/5.4/?.lua;$1/share/lua/5.4/?/init.lua;;"
    export LUA_CPATH="$1/lib/lua/5.4/?.so;;"
}
