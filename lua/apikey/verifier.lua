--- apikey.verifier: checks API keys in a long-running process (a web server, a daemon).
--
-- It keeps one keystore loaded and follows the file: at most once per `interval` seconds it
-- compares the file's identity (inode, size, mtime with nanoseconds) with what it loaded and
-- reloads when they differ, so `apikey create` and `apikey revoke` take effect without a
-- restart. A reload that fails (a half-copied or corrupt file, a wrong password) keeps the
-- last good keys and reports the error; a deleted keystore is an empty one, so deleting it
-- revokes every key.
--
-- It needs only the C core, so that `apikey` (init.lua) can expose it without a cycle.
-- Misuse (a wrong argument type) raises; a failure the caller must handle returns
-- nil, message, code.
local core = require "apikey.core"

local clock = core.clock
local time = os.time
local type = type

local verifier = {}

local Verifier = {}
Verifier.__name = "apikey.Verifier"

local function argerror(fname, n, msg)
    error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 3)
end


--- Opens the keystore at opts.path and returns a verifier, or nil, message, code when the
-- first load fails (the codes of apikey.open: "badpassword", "corrupt", "io", "insecure").
-- opts.path (required); opts.password (default none); opts.interval: seconds between checks
-- for a changed file (default 1; 0 checks on every call); opts.log: a function called with
-- one line when a reload brings new keys, when it fails, and when it works again.
function verifier.new(opts)
    if type(opts) ~= "table" then
        argerror("verifier", 1, "table expected, got " .. type(opts))
    end
    local path, password, interval, log = opts.path, opts.password, opts.interval, opts.log
    if type(path) ~= "string" or path == "" then
        argerror("verifier", 1, "path must be a non-empty string")
    end
    if password ~= nil and type(password) ~= "string" then
        argerror("verifier", 1, "password must be a string, got " .. type(password))
    end
    if interval == nil then
        interval = 1
    elseif type(interval) ~= "number" or not (interval >= 0 and interval < math.huge) then
        argerror("verifier", 1, "interval must be a number of seconds, 0 or more")
    end
    if log ~= nil and type(log) ~= "function" then
        argerror("verifier", 1, "log must be a function, got " .. type(log))
    end

    local ks, msg, code = core.open(path, password)
    if not ks then
        return nil, msg, code
    end
    local ks_verify, ks_authenticate, ks_refresh = ks.verify, ks.authenticate, ks.refresh
    local next_check = clock() + interval

    -- Fields a caller may read: loaded_at (when the keys in use were read), checked_at (when
    -- the file was last compared with them), both Unix seconds; reloads (how many times new
    -- content was taken in); and while reloads fail, last_error, last_error_code, failed_at.
    local started = time()
    local self = setmetatable({
        path = path,
        interval = interval,
        loaded_at = started,
        checked_at = started,
        reloads = 0,
    }, Verifier)

    -- The slow path: compare the file with what is loaded, reload if it changed.
    local function refresh()
        next_check = clock() + interval
        local changed, err, err_code = ks_refresh(ks)
        local now = time()
        self.checked_at = now
        if changed == nil then
            if log and err ~= self.last_error then
                local n = ks:count()
                log(("apikey: cannot reload %s, keeping the %d key%s loaded before: %s")
                    :format(path, n, n == 1 and "" or "s", err))
            end
            self.last_error, self.last_error_code, self.failed_at = err, err_code, now
            return nil, err, err_code
        end
        if changed then
            self.loaded_at, self.reloads = now, self.reloads + 1
        end
        if log and (changed or self.last_error) then
            local n = ks:count()
            log(("apikey: loaded %s: %d key%s"):format(path, n, n == 1 and "" or "s"))
        end
        self.last_error, self.last_error_code, self.failed_at = nil, nil, nil
        return changed
    end

    -- The hot path: one clock read, one comparison, then the core's O(1) lookup.
    local function verify(_, key)
        if clock() >= next_check then
            refresh()
        end
        return ks_verify(ks, key)
    end

    --- Checks a key: its entry { alias, hint, created, expires }, or nil and "unknown",
    -- "expired" or "malformed". The entry is shared between calls: read it, do not change it.
    self.verify = verify

    --- Checks an Authorization header value "Bearer <key>" (the scheme in any case): like
    -- verify, with nil and "missing" when the value is nil or not of that form.
    function self.authenticate(_, header)
        if header ~= nil and type(header) ~= "string" then
            argerror("authenticate", 2, "string expected, got " .. type(header))
        end
        if clock() >= next_check then
            refresh()
        end
        return ks_authenticate(ks, header)
    end

    --- Compares the file with the keys in use now, whatever the interval: true if new keys
    -- were loaded, false if the file had not changed, or nil, message, code.
    function self.refresh(_)
        return refresh()
    end

    --- The state: path, keys (how many are loaded), loaded_at, checked_at, reloads, and
    -- error, error_code and failed_at while reloads fail.
    function self.status(_)
        return {
            path = path,
            keys = ks:count(),
            loaded_at = self.loaded_at,
            checked_at = self.checked_at,
            reloads = self.reloads,
            error = self.last_error,
            error_code = self.last_error_code,
            failed_at = self.failed_at,
        }
    end

    --- Releases the keystore; safe to call more than once. A closed verifier raises.
    function self.close(_)
        ks:close()
    end

    return self
end

Verifier.__close = function(self)
    self:close()
end

function Verifier:__tostring()
    return ("apikey verifier (%s)"):format(self.path)
end

return verifier
