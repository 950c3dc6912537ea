-- apikey: API keys kept as SHA-256 hashes in a PKCS#12 keystore; a Lua module and a command.
--
--   luarocks --lua-version 5.4 make --deps-mode=none rockspec/apikey-scm-1.rockspec
--                                                  (from the repository, as README says)
--
-- The module builds for Lua 5.1 (LuaJIT), 5.3 and 5.4; the apikey command runs on 5.4.
-- The dependencies are named as on LuaRocks; on Debian they may come from its packages
-- (lua5.4, lua-argparse, lua-dkjson), hence --deps-mode=none: see README.
rockspec_format = "3.0"
package = "apikey"
version = "scm-1"
source = {
   url = "git+file:///dev/null/apikey", -- no public repository yet: build with `luarocks make`
}
description = {
   license = "MIT",
   summary = "API keys for a web server or REST API, stored hashed in a PKCS#12 keystore",
   detailed = [[
      Creates, lists, revokes and verifies API keys. Only SHA-256(key) is stored, in a standard
      PKCS#12 file shared safely between writers (lock, atomic replace). Verification is O(1)
      from an in-memory index that reloads when the file changes. C core on OpenSSL 3.
   ]],
}
dependencies = {
   "lua >= 5.1, < 5.5",
   "argparse",
   "dkjson",
}
external_dependencies = {
   OPENSSL = { header = "openssl/evp.h", library = "crypto" },
   UUID = { header = "uuid/uuid.h", library = "uuid" },
   UNISTRING = { header = "unicase.h", library = "unistring" },
}
build = {
   type = "cmake",
   variables = {
      CMAKE_BUILD_TYPE = "Release",
      CMAKE_INSTALL_PREFIX = "$(PREFIX)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      LUADIR = "$(LUADIR)",
      LIBDIR = "$(LIBDIR)",
      OPENSSL_ROOT_DIR = "$(OPENSSL_DIR)",
      APIKEY_INSTALL_SCRIPT = "OFF",
      APIKEY_WERROR = "OFF",
   },
   install = {
      bin = { apikey = "bin/apikey" },
   },
}
