--- apikey_guard: the state behind apikey-auth.lua, lighttpd's mod_magnet script.
--
-- mod_magnet runs the script afresh for every request and clears its globals, but a module
-- that it `require`s stays loaded: this one holds the check (apikey.guard, the one every
-- server example uses), so the keystore is read once and then only when the file changes.
-- Everything here runs inside lighttpd's single event loop, one request at a time.
local guard = {}

local checker -- the apikey.guard made by guard.setup, kept until lighttpd stops
local forward_key = false

--- Records the settings; the keystore is read on the first request.
-- opts.keystore (required): the keystore file; opts.password: its password (default none);
-- opts.realm: shown in WWW-Authenticate (default "apikey"); opts.interval: seconds between
-- checks for a changed keystore (default 1); opts.forward_key: pass the Authorization header
-- on to the backend (default false: the key goes no further than this check); opts.scopes: the
-- scope a request needs, by its method, with ["*"] for the other methods (default: GET, HEAD
-- and OPTIONS need read, the others write; false: none; a key with full access passes all).
function guard.setup(opts)
    assert(type(opts) == "table", "apikey_guard.setup: a table of settings expected")
    checker = require("apikey.guard").new {
        keystore = opts.keystore,
        password = opts.password,
        realm = opts.realm,
        interval = opts.interval,
        scopes = opts.scopes,
        -- mod_magnet sends print to lighttpd's error log
        log = function(line)
            print(line)
        end,
        advice = "check APIKEY_KEYSTORE and APIKEY_KEYSTORE_PASSWORD in lighttpd's environment, "
            .. "and that lighttpd's user can read the file",
    }
    forward_key = opts.forward_key == true
end

--- Checks the request's Authorization header. A valid key: REMOTE_USER (the key's alias) and
-- AUTH_TYPE ("Bearer") go into the request environment, where the backend (CGI, FastCGI,
-- SCGI) and the access log (%u) see them, and the header is dropped unless forward_key is
-- set; returns 0, and lighttpd goes on. Otherwise sets APIKEY_ERROR (the reason, for the
-- access log: missing, unknown, expired or malformed) and returns 401 with WWW-Authenticate;
-- 403 with WWW-Authenticate naming the scope for a valid key without the scope the method
-- needs (REMOTE_USER set, APIKEY_ERROR insufficient_scope); or 500 while the keystore cannot be
-- used (not loaded yet, or unreadable for too long).
function guard.check(r)
    if checker == nil then
        error("apikey_guard: setup was not called (see apikey-auth.lua)", 0)
    end
    local alias, status, challenge, why, holder =
        checker:check(r.req_header["Authorization"], r.req_attr["request.method"])
    if alias then
        local env = r.req_env
        env["REMOTE_USER"] = alias
        env["AUTH_TYPE"] = "Bearer"
        if not forward_key then
            r.req_header["Authorization"] = nil
        end
        return 0
    end
    r.req_env["APIKEY_ERROR"] = why
    if challenge then
        r.resp_header["WWW-Authenticate"] = challenge
    end
    if status == 403 then
        r.req_env["REMOTE_USER"] = holder
        -- A body of its own: for an error without one, lighttpd makes its error page and drops
        -- every response header but a 401's WWW-Authenticate.
        r.resp_header["Content-Type"] = "text/plain"
        r.resp_body:set("403 Forbidden: this API key does not have the scope this request needs\n")
    end
    return status
end

--- The verifier's state (see apikey.verifier's status), or nil before the first request.
function guard.status()
    return checker and checker:status()
end

return guard
