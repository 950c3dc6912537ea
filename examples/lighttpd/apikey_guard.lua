--- apikey_guard: the state behind apikey-auth.lua, lighttpd's mod_magnet script.
--
-- mod_magnet runs the script afresh for every request and clears its globals, but a module
-- that it `require`s stays loaded: this one holds the verifier, so the keystore is read once
-- and then only when the file changes. Everything here runs inside lighttpd's single event
-- loop, one request at a time.
local apikey = require "apikey"

local guard = {}

local settings -- from guard.setup
local verifier -- made on the first request, kept until lighttpd stops
local retry_at, open_error = 0, nil -- after a failed first load: when to try again, and why

-- mod_magnet sends print to lighttpd's error log.
local function log(line)
    print(line)
end

--- Records the settings; the keystore is read on the first request.
-- opts.keystore (required): the keystore file; opts.password: its password (default none);
-- opts.realm: shown in WWW-Authenticate (default "apikey"); opts.interval: seconds between
-- checks for a changed keystore (default 1); opts.forward_key: pass the Authorization header
-- on to the backend (default false: the key goes no further than this check).
function guard.setup(opts)
    assert(type(opts) == "table", "apikey_guard.setup: a table of settings expected")
    assert(type(opts.keystore) == "string" and opts.keystore ~= "",
        "apikey_guard.setup: keystore must be the path of the keystore file")
    local realm = opts.realm or "apikey"
    assert(type(realm) == "string" and not realm:find('["\\%c]'),
        "apikey_guard.setup: realm must be a string without quotes, backslashes or controls")
    settings = {
        path = opts.keystore,
        password = opts.password,
        interval = opts.interval or 1,
        forward_key = opts.forward_key == true,
        -- RFC 6750 section 3: no error code when no credential was sent
        challenge = ('Bearer realm="%s"'):format(realm),
        challenge_invalid = ('Bearer realm="%s", error="invalid_token"'):format(realm),
    }
    verifier, retry_at, open_error = nil, 0, nil
end

-- The verifier, loading the keystore on first use; nil while it cannot be loaded, and then
-- every request gets 500: without a keystore nobody gets in. The error log says why once per
-- change of state, not once per request.
local function load()
    if settings == nil then
        error("apikey_guard: setup was not called (see apikey-auth.lua)", 0)
    end
    local now = os.time()
    if now < retry_at then
        return nil
    end
    local v, msg = apikey.verifier {
        path = settings.path,
        password = settings.password,
        interval = settings.interval,
        log = log,
    }
    if not v then
        -- at most one attempt a second: a wrong password costs a key derivation each time
        retry_at = now + 1
        if msg ~= open_error then
            log(("apikey: cannot load the keystore, so every request gets 500: %s; check "
                .. "APIKEY_KEYSTORE and APIKEY_KEYSTORE_PASSWORD in lighttpd's environment, and "
                .. "that lighttpd's user can read the file"):format(msg))
        end
        open_error = msg
        return nil
    end
    local n = v:status().keys
    log(("apikey: checking API keys against %s (%d key%s)")
        :format(settings.path, n, n == 1 and "" or "s"))
    verifier, open_error = v, nil
    return v
end

--- Checks the request's Authorization header. A valid key: REMOTE_USER (the key's alias) and
-- AUTH_TYPE ("Bearer") go into the request environment, where the backend (CGI, FastCGI,
-- SCGI) and the access log (%u) see them, and the header is dropped unless forward_key is
-- set; returns 0, and lighttpd goes on. Otherwise sets WWW-Authenticate and APIKEY_ERROR (the
-- reason, for the access log: missing, unknown, expired or malformed) and returns 401; while
-- the keystore cannot be used (not loaded yet, or unreadable for too long), returns 500.
function guard.check(r)
    local v = verifier or load()
    if not v then
        return 500
    end
    local entry, why = v:authenticate(r.req_header["Authorization"])
    if entry then
        local env = r.req_env
        env["REMOTE_USER"] = entry.alias
        env["AUTH_TYPE"] = "Bearer"
        if not settings.forward_key then
            r.req_header["Authorization"] = nil
        end
        return 0
    end
    r.req_env["APIKEY_ERROR"] = why
    if why == "unavailable" then
        -- the keystore changed and has not been readable for too long (see apikey.verifier)
        return 500
    end
    r.resp_header["WWW-Authenticate"] = why == "missing" and settings.challenge
        or settings.challenge_invalid
    return 401
end

--- The verifier's state (see apikey.verifier's status), or nil before the first request.
function guard.status()
    return verifier and verifier:status()
end

return guard
