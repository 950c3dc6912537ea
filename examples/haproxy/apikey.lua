-- apikey.lua: API keys for HAProxy (2.6, Lua 5.3). `lua-load` it in the global section; the
-- action `http-request lua.apikey` then lets a request in with a valid key only. See README.md
-- beside this file.
--
-- The settings come from HAProxy's environment, read once when it starts:
--   APIKEY_PREFIX             where apikey is installed (default /opt/apikey)
--   APIKEY_KEYSTORE           the keystore (default PREFIX/security/metricshub-keystore.p12)
--   APIKEY_KEYSTORE_PASSWORD  its password, if it has one
local prefix = os.getenv("APIKEY_PREFIX") or "/opt/apikey"
package.path = ("%s/share/lua/5.3/?.lua;%s/share/lua/5.3/?/init.lua;%s")
    :format(prefix, prefix, package.path)
package.cpath = ("%s/lib/lua/5.3/?.so;%s"):format(prefix, package.cpath)

local LEVELS = { error = core.err, info = core.info }

-- One verifier for the process: a lua-load'ed script has one Lua state, shared by the threads.
local guard = require("apikey.guard").new {
    keystore = os.getenv("APIKEY_KEYSTORE") or prefix .. "/security/metricshub-keystore.p12",
    password = os.getenv("APIKEY_KEYSTORE_PASSWORD"),
    realm = "apikey",
    interval = 1,
    log = function(line, level)
        core.log(LEVELS[level], line)
    end,
    advice = "check APIKEY_KEYSTORE and APIKEY_KEYSTORE_PASSWORD in HAProxy's environment, "
        .. "and that HAProxy's user can read the file",
}

-- The keystore is loaded when HAProxy has started, not on the first request.
core.register_init(function()
    guard:load()
end)

-- A valid key: the Authorization header is removed, so the key goes no further, and the
-- backend gets the alias in X-Apikey-Alias (replacing any the client sent); txn.apikey_alias
-- holds it for the log format. Otherwise the request is answered here: 401 with
-- WWW-Authenticate (txn.apikey_error says why), or 500 while the keystore cannot be used.
core.register_action("apikey", { "http-req" }, function(txn)
    -- the header's values, numbered from 0; several are joined, and then refused
    local values = txn.http:req_get_headers()["authorization"]
    local header = values and table.concat(values, ", ", 0, #values)
    local alias, status, challenge, why = guard:check(header, txn.sf:method())
    if alias then
        txn.http:req_del_header("Authorization")
        txn.http:req_set_header("X-Apikey-Alias", alias)
        txn:set_var("txn.apikey_alias", alias)
        return
    end
    txn:set_var("txn.apikey_error", why)
    local reply = txn:reply { status = status, body = "" }
    if challenge then
        reply:add_header("WWW-Authenticate", challenge)
    end
    txn:done(reply)
end)
