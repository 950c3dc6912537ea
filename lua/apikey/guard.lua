--- apikey.guard: the check a web server makes on each request's Authorization header, the
-- same in every server (examples/nginx, examples/haproxy, examples/apache2): a verifier
-- loaded once and kept (see apikey.verifier), the answer to give, and one log line per change
-- of state. The server's own script only reads the header and applies the answer.
--
--   local guard = require("apikey.guard").new { keystore = path, log = function(line) ... end }
--   local alias, status, challenge, why = guard:check(authorization, method)
--
-- A changed keystore is read off the request path (apikey.verifier's background).
--
-- alias: the key's alias; let the request in. Otherwise status is 401, with challenge the
-- WWW-Authenticate value to send and why "missing", "unknown", "expired" or "malformed"; 403
-- for a valid key without the scope the request's method needs (why "insufficient_scope",
-- challenge naming the scope, RFC 6750 section 3.1, and a fifth value: the key's alias); or 500
-- (no challenge) while the keystore cannot be used: without a keystore nobody gets in.
local apikey = require "apikey"

local Guard = {}
Guard.__index = Guard

local OPTIONS = {
    keystore = true, password = true, realm = true, interval = true, log = true, advice = true,
    scopes = true,
}

-- The scope each request method needs, ["*"] for the other methods: reading needs read,
-- anything else write. A key made without scopes has full access and passes every check.
local DEFAULT_SCOPES = { GET = "read", HEAD = "read", OPTIONS = "read", ["*"] = "write" }

local function check_options(opts)
    assert(type(opts) == "table", "apikey.guard: a table of settings expected")
    for name in pairs(opts) do
        assert(OPTIONS[name], ("apikey.guard: unknown setting '%s'"):format(tostring(name)))
    end
    assert(type(opts.keystore) == "string" and opts.keystore ~= "",
        "apikey.guard: keystore must be the path of the keystore file")
    assert(opts.password == nil or type(opts.password) == "string",
        "apikey.guard: password must be a string")
    assert(opts.realm == nil or type(opts.realm) == "string" and not opts.realm:find('["\\%c]'),
        "apikey.guard: realm must be a string without quotes, backslashes or controls")
    assert(opts.log == nil or type(opts.log) == "function", "apikey.guard: log must be a function")
    assert(opts.scopes == nil or opts.scopes == false or type(opts.scopes) == "table",
        "apikey.guard: scopes must be a table of method = scope, or false")
    for method, scope in pairs(opts.scopes or {}) do
        assert(type(method) == "string" and type(scope) == "string" and scope:find("^[%w:._-]+$"),
            "apikey.guard: scopes maps a method to a scope name (letters, digits, ':._-')")
    end
end

--- A guard; nothing is read until the first check (or guard:load()).
-- opts.keystore (required): the keystore file; opts.password: its password (default none);
-- opts.realm: shown in WWW-Authenticate (default "apikey"); opts.interval: seconds between
-- looks at the file (default 1); opts.log: a function given each line for the server's error
-- log and its level, "error" or "info" (no line holds a key); opts.advice: what the line about
-- a keystore that cannot be loaded tells to check; opts.scopes: the scope a request needs, by
-- its method, ["*"] for the other methods (default: GET, HEAD and OPTIONS need read, the others
-- write; false: no scope is checked).
local function new(opts)
    check_options(opts)
    local realm = opts.realm or "apikey"
    local user_log = opts.log or function() end
    local scopes = opts.scopes
    if scopes == nil then
        scopes = DEFAULT_SCOPES
    end
    local forbidden = {} -- RFC 6750 section 3.1: the scope the request needs
    for _, scope in pairs(scopes or {}) do
        forbidden[scope] = ('Bearer realm="%s", error="insufficient_scope", scope="%s"')
            :format(realm, scope)
    end
    return setmetatable({
        scopes = scopes or nil,
        forbidden = forbidden,
        path = opts.keystore,
        password = opts.password,
        interval = opts.interval or 1,
        -- each line with its level, "error" (a keystore that cannot be read) or "info"
        log = function(line)
            user_log(line, line:find("^apikey: cannot") and "error" or "info")
        end,
        advice = opts.advice or "check the keystore's path, its password, and that the "
            .. "server's user can read it",
        -- RFC 6750 section 3: no error code when no credential was sent
        challenge = ('Bearer realm="%s"'):format(realm),
        challenge_invalid = ('Bearer realm="%s", error="invalid_token"'):format(realm),
        retry_at = 0, -- after a failed first load: when to try again
    }, Guard)
end

--- The verifier, loading the keystore when it has none yet; nil while it cannot be loaded. It
-- tries at most once a second (a wrong password costs a key derivation each time) and logs
-- once per reason, not once per request.
function Guard:load()
    if self.verifier then
        return self.verifier
    end
    local now = os.time()
    if now < self.retry_at then
        return nil
    end
    -- a changed keystore is read off the request path: no request waits for a reload
    local v, msg = apikey.verifier {
        path = self.path,
        password = self.password,
        interval = self.interval,
        log = self.log,
        background = true,
    }
    if not v then
        self.retry_at = now + 1
        if msg ~= self.open_error then
            self.log(("apikey: cannot load the keystore, so every request gets 500: %s; %s")
                :format(msg, self.advice))
        end
        self.open_error = msg
        return nil
    end
    local n = v:status().keys
    self.log(("apikey: checking API keys against %s (%d key%s)")
        :format(self.path, n, n == 1 and "" or "s"))
    self.verifier, self.open_error = v, nil
    return v
end

--- The answer to a request whose Authorization header is authorization (nil when absent) and
-- whose method is method: alias, or nil, status (401, 403 or 500), challenge (for 401 and
-- 403), why, and for 403 the alias of the key that lacks the scope.
function Guard:check(authorization, method)
    local v = self.verifier or self:load()
    if not v then
        return nil, 500, nil, "unavailable"
    end
    local scopes, scope = self.scopes, nil
    if scopes then
        scope = scopes[method] or scopes["*"]
    end
    local entry, why, holder = v:authenticate(authorization, scope)
    if entry then
        return entry.alias
    end
    if why == "insufficient_scope" then
        return nil, 403, self.forbidden[scope], why, holder.alias
    end
    if why == "unavailable" then
        -- the keystore changed and has not been readable for too long (see apikey.verifier)
        return nil, 500, nil, why
    end
    return nil, 401, why == "missing" and self.challenge or self.challenge_invalid, why
end

--- The verifier's state (see apikey.verifier's status), or nil before the keystore loaded.
function Guard:status()
    return self.verifier and self.verifier:status()
end

return { new = new }
