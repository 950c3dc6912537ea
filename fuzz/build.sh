# fuzz/build.sh: sourced by run.sh and replay.sh, which set root, out, cc and cflags.
# Builds the core without the Lua binding as $out/libcore.a (each harness links only what it
# needs) and defines harness_deps NAME, which sets $binding and $libs for a harness:
# fuzz_verify goes through the Lua binding, so it also needs binding.c and liblua, and the
# storage it reaches needs libacl and libattr; every harness needs libunistring (alias.c).

mkdir -p "$out/obj"
rm -f "$out/obj"/*.o "$out/libcore.a"
for src in "$root"/csrc/*.c; do
    case $src in */binding.c) continue ;; esac
    # shellcheck disable=SC2086
    "$cc" $cflags -I"$root/csrc" -c "$src" -o "$out/obj/$(basename "$src" .c).o"
done
ar rcs "$out/libcore.a" "$out"/obj/*.o

lua_cflags=$(pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
lua_libs=$(pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)

harness_deps() {
    binding=''
    libs='-lunistring'
    if [ "$1" = verify ]; then
        binding="$lua_cflags $root/csrc/binding.c"
        libs="$lua_libs -lacl -lattr -lunistring"
    fi
}
