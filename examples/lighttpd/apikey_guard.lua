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
-- on to the backend (default false: the key goes no further than this check); opts.scopes: the
-- scope a request needs, by its method, with ["*"] for the other methods (default
-- guard.DEFAULT_SCOPES: GET, HEAD and OPTIONS need read, the others write; false: none; a key
-- with full access passes all).
guard.DEFAULT_SCOPES = { GET = "read", HEAD = "read", OPTIONS = "read", ["*"] = "write" }

function guard.setup(opts)
    assert(type(opts) == "table", "apikey_guard.setup: a table of settings expected")
    assert(type(opts.keystore) == "string" and opts.keystore ~= "",
        "apikey_guard.setup: keystore must be the path of the keystore file")
    local realm = opts.realm or "apikey"
    assert(type(realm) == "string" and not realm:find('["\\%c]'),
        "apikey_guard.setup: realm must be a string without quotes, backslashes or controls")
    local scopes = opts.scopes
    if scopes == nil then
        scopes = guard.DEFAULT_SCOPES
    end
    assert(scopes == false or type(scopes) == "table",
        "apikey_guard.setup: scopes must be a table of method = scope, or false")
    local need, forbidden, forbidden_body = {}, {}, {}
    for method, scope in pairs(scopes or {}) do
        assert(type(method) == "string" and type(scope) == "string"
            and scope:find("^[%w:._-]+$"),
            "apikey_guard.setup: scopes maps a method to a scope name (letters, digits, ':._-')")
        need[method] = scope
        -- RFC 6750 section 3.1: the scope the request needs
        forbidden[scope] = ('Bearer realm="%s", error="insufficient_scope", scope="%s"')
            :format(realm, scope)
        forbidden_body[scope] = ("403 Forbidden: this API key does not have the scope %s\n")
            :format(scope)
    end
    settings = {
        scoped = next(need) ~= nil,
        need = need,
        forbidden = forbidden,
        forbidden_body = forbidden_body,
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
-- set; returns 0, and lighttpd goes on. A valid key without the scope the request's method
-- needs: 403 with WWW-Authenticate (error="insufficient_scope" and the scope), REMOTE_USER set
-- and APIKEY_ERROR insufficient_scope. Otherwise sets WWW-Authenticate and APIKEY_ERROR (the
-- reason, for the access log: missing, unknown, expired or malformed) and returns 401; while
-- the keystore cannot be used (not loaded yet, or unreadable for too long), returns 500.
function guard.check(r)
    local v = verifier or load()
    if not v then
        return 500
    end
    local scope
    if settings.scoped then
        local need = settings.need
        scope = need[r.req_attr["request.method"]] or need["*"]
    end
    local entry, why, holder = v:authenticate(r.req_header["Authorization"], scope)
    if why == "insufficient_scope" then
        r.req_env["REMOTE_USER"] = holder.alias
        r.req_env["APIKEY_ERROR"] = why
        r.resp_header["WWW-Authenticate"] = settings.forbidden[scope]
        -- A body of its own: for an error without one, lighttpd makes its error page and drops
        -- every response header but a 401's WWW-Authenticate.
        r.resp_header["Content-Type"] = "text/plain"
        r.resp_body:set(settings.forbidden_body[scope])
        return 403
    end
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
