--- apikey_nginx: API keys for nginx's Lua module (lua-nginx-module, LuaJIT). A worker makes
-- its verifier in init_worker_by_lua (apikey-http.conf); access_by_lua (apikey-site.conf)
-- lets a request in with a valid key only. See README.md beside this file.
--
-- Each worker process has its own Lua VM, so its own verifier: each loads the keystore when it
-- starts and looks at the file at most once per interval. A check runs in the worker's event
-- loop and does not yield.
local M = {}

local guard -- this worker's apikey.guard

local LEVELS = { error = ngx.ERR, info = ngx.NOTICE }

--- Called from init_worker_by_lua with the settings: keystore (required), password, realm,
-- interval (see apikey.guard). Loads the keystore now; if it cannot be read, every request
-- gets 500 and the error log says why, until it can.
function M.init_worker(opts)
    opts.log = function(line, level)
        ngx.log(LEVELS[level], line)
    end
    opts.advice = opts.advice or "check the keystore path in nginx's apikey configuration, and "
        .. "that nginx's worker user can read the file"
    guard = require("apikey.guard").new(opts)
    guard:load()
end

--- Called from access_by_lua: a valid key sets $apikey_alias and removes the Authorization
-- header, so the key goes no further; anything else ends the request with 401 and
-- WWW-Authenticate ($apikey_error says why), or 500 while the keystore cannot be used.
function M.access()
    if not guard then
        ngx.log(ngx.ERR, "apikey: init_worker was not called (see apikey-http.conf)")
        return ngx.exit(500)
    end
    -- nginx itself answers 400 to a request with several Authorization headers
    local alias, status, challenge, why = guard:check(ngx.var.http_authorization,
        ngx.req.get_method())
    if alias then
        ngx.var.apikey_alias = alias
        ngx.req.clear_header("Authorization")
        return
    end
    ngx.var.apikey_error = why
    if challenge then
        ngx.header["WWW-Authenticate"] = challenge
    end
    return ngx.exit(status)
end

--- This worker's verifier state (see apikey.verifier's status), or nil.
function M.status()
    return guard and guard:status()
end

return M
