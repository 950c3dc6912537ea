-- apikey-auth.lua: a lighttpd mod_magnet script that lets a request in only with a valid API
-- key, sent as "Authorization: Bearer <key>", that has the scope the request's method needs.
-- No valid key gets 401, a key without the scope 403, both with WWW-Authenticate; a keystore
-- that cannot be read gets 500. See README.md beside this file.
local guard = package.loaded.apikey_guard
if guard == nil then
    -- First request. apikey_guard.lua is beside this script; apikey is under its install
    -- prefix (or on Lua's usual paths, as with the prefix /usr/local).
    local prefix = os.getenv("APIKEY_PREFIX") or "/opt/apikey"
    local here = debug.getinfo(1, "S").source:match("^@?(.*/)") or "./"
    local path = ("%s?.lua;%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;")
        :format(here, prefix, prefix)
    if package.path:sub(1, #path) ~= path then
        package.path = path .. package.path
        package.cpath = prefix .. "/lib/lua/5.4/?.so;" .. package.cpath
    end
    guard = require "apikey_guard"
    -- The settings, read once: a change takes effect when lighttpd restarts. The keystore is
    -- the one `apikey` uses by default, unless APIKEY_KEYSTORE says otherwise.
    guard.setup {
        keystore = os.getenv("APIKEY_KEYSTORE") or prefix .. "/security/metricshub-keystore.p12",
        password = os.getenv("APIKEY_KEYSTORE_PASSWORD"),
        realm = "apikey",
        interval = 1,
        -- The scope each request method needs ("*": any other method); a key made without
        -- --scope has full access. false: no scope is checked.
        scopes = { GET = "read", HEAD = "read", OPTIONS = "read", ["*"] = "write" },
    }
end
return guard.check(lighty.r)
