--- apikey.verifier: checks API keys in a long-running process (a web server, a daemon).
--
-- A verifier is a keystore opened by apikey.open, with the module's defaults, that follows its
-- file: at most once per `interval` seconds it compares the file's identity (inode, size, mtime
-- with nanoseconds) with what it loaded and reloads when they differ, so `apikey create` and
-- `apikey revoke` take effect without a restart. A reload that fails (a half-copied or corrupt
-- file, a wrong password) keeps the last good keys and reports the error; a deleted keystore
-- is an empty one, so deleting it revokes every key.
--
-- Misuse (a wrong argument type) raises; a failure the caller must handle returns
-- nil, message, code.
-- It needs apikey (init.lua), which exposes it as apikey.verifier: that module is required
-- when a verifier is made, not when this one loads, so either can be required first.
local core = require "apikey.core"

local clock = core.coarse_clock -- the clock the check in C compares with
local time = os.time
local type = type

local INTERVAL = 1 -- seconds between looks at the file
local MAX_STALE = 60 -- seconds the keys of a file that changed and cannot be read stay in use

-- A verifier is a table: [1] its keystore, [2] the core.coarse_clock() time of its next look at
-- the file, [3] true while it refuses every key (the core's verify and authenticate read these
-- three), and the fields below.
local KEYSTORE, NEXT_CHECK, REFUSING = 1, 2, 3

local Verifier = {}
Verifier.__index = Verifier
Verifier.__name = "apikey.Verifier"

local OPTIONS = {
    path = true, password = true, interval = true, max_stale = true, log = true, background = true,
}

local function argerror(msg)
    error(("bad argument #1 to 'verifier' (%s)"):format(msg), 3)
end

local function plural(n)
    return n == 1 and "" or "s"
end

local function is_seconds(v)
    return type(v) == "number" and v >= 0 and v < math.huge
end

-- Calls the caller's log function with line. An error in it is the caller's, and is reported
-- on stderr: it must never make a check raise.
local function say(self, line)
    local log = self._log
    if log then
        local ok, err = pcall(log, line)
        if not ok then
            io.stderr:write(("apikey: the verifier's log function failed (%s); the line was: %s\n")
                :format(tostring(err), line))
        end
    end
end

local look_background -- the look at the file with opts.background, below

--- Opens the keystore at opts.path and returns a verifier, or nil, message, code when the
-- first load fails (the codes of apikey.open: "badpassword", "corrupt", "io", "insecure").
-- opts.path (required); opts.password (default none); opts.interval: seconds between checks
-- for a changed file (default 1; 0 checks on every call); opts.log: a function called with
-- one line when a reload brings new keys, when it fails, and when it works again;
-- opts.background: read a changed file in a thread of the core, off the request path (default
-- false: the check that sees the change reads it).
local function new(opts)
    local apikey = require "apikey"
    apikey._check_options("verifier", 1, opts, OPTIONS)
    local interval, max_stale, log = opts.interval, opts.max_stale, opts.log
    if interval == nil then
        interval = INTERVAL
    elseif not is_seconds(interval) then
        argerror("interval must be a number of seconds, 0 or more")
    end
    if max_stale == nil then
        max_stale = MAX_STALE
    elseif not is_seconds(max_stale) then
        argerror("max_stale must be a number of seconds, 0 or more")
    end
    if log ~= nil and type(log) ~= "function" then
        argerror("log must be a function, got " .. type(log))
    end
    if opts.background ~= nil and type(opts.background) ~= "boolean" then
        argerror("background must be a boolean, got " .. type(opts.background))
    end
    local ks, msg, code = apikey.open { path = opts.path, password = opts.password }
    if not ks then
        return nil, msg, code
    end
    local now = time()
    -- Fields a caller may read: loaded_at (when the keys in use were read), checked_at (when
    -- the file was last compared with them), both Unix seconds; reloads (how many times new
    -- content was taken in); and while reloads fail, last_error, last_error_code, failed_at.
    return setmetatable({
        path = opts.path,
        interval = interval,
        max_stale = max_stale,
        loaded_at = now,
        checked_at = now,
        reloads = 0,
        _log = log,
        [KEYSTORE] = ks,
        [NEXT_CHECK] = clock() + interval,
        [REFUSING] = false,
        _look = opts.background and look_background or nil,
    }, Verifier)
end

--- Compares the file with the keys in use now, whatever the interval: true if new keys were
-- loaded, false if the file had not changed, or nil, message, code. When the file changed and
-- cannot be read, the keys loaded before stay in use for max_stale seconds; after that every
-- key is refused ("unavailable") until the file reads again: a revoked key does not stay valid
-- for as long as the file is broken.
function Verifier:refresh()
    self[NEXT_CHECK] = clock() + self.interval
    return self:_settle(self[KEYSTORE]:refresh())
end

-- The look at the file that verify and authenticate make when the interval has passed (the
-- core calls it): v:refresh(), or with opts.background, look_background below.
Verifier._look = Verifier.refresh

-- The look with reloads off the request path: a changed file is read in a thread of the core
-- while checks go on with the keys loaded before; the file is looked at on every check until
-- the read is done, and then the new keys are taken in whole, or the failure handled as
-- refresh handles it.
function look_background(self)
    local changed, pending, code = self[KEYSTORE]:refresh_background()
    if changed == nil then
        self[NEXT_CHECK] = clock() + self.interval
        return self:_settle(nil, pending, code)
    end
    if pending then
        self[NEXT_CHECK] = 0
        return false
    end
    self[NEXT_CHECK] = clock() + self.interval
    return self:_settle(changed)
end

-- What a look gave (changed, or nil, message, code) recorded, logged, and returned.
function Verifier:_settle(changed, err, code)
    local ks = self[KEYSTORE]
    local now = time()
    self.checked_at = now
    if changed == nil then
        self.failing_since = self.failing_since or now
        local refuse = now - self.failing_since >= self.max_stale
        if refuse and not self[REFUSING] then
            say(self, ("apikey: cannot reload %s for %d s: refusing every key until it reads "
                .. "again: %s"):format(self.path, now - self.failing_since, err))
        elseif not refuse and err ~= self.last_error then
            local n = ks:count()
            say(self, ("apikey: cannot reload %s, keeping the %d key%s loaded before for at most "
                .. "%d s: %s"):format(self.path, n, plural(n), self.max_stale, err))
        end
        self[REFUSING] = refuse
        self.last_error, self.last_error_code, self.failed_at = err, code, now
        return nil, err, code
    end
    if changed then
        self.loaded_at, self.reloads = now, self.reloads + 1
    end
    if changed or self.last_error then
        local n = ks:count()
        say(self, ("apikey: loaded %s: %d key%s"):format(self.path, n, plural(n)))
    end
    self[REFUSING] = false
    self.failing_since, self.last_error, self.last_error_code, self.failed_at = nil, nil, nil, nil
    return changed
end

--- v:verify(key): a key's entry { alias, hint, masked, created, expires, expired }, or nil and
-- "unknown", "expired", "malformed", or "unavailable" while the verifier refuses every key. The entry is shared between calls: read it, do not
-- change it. The hot path is one call into the core: a clock read, one comparison (calling
-- v:refresh() when the interval has passed), then the keystore's O(1) lookup.
Verifier.verify = core.verifier_verify

--- v:authenticate(header): checks an Authorization header value "Bearer <key>" (the scheme in
-- any case): like verify, with nil and "missing" when the value is nil or not of that form.
Verifier.authenticate = core.verifier_authenticate

--- v:authenticate(header, scope): also checks that the key may act in scope (a string such
-- as "read"): a valid key without it gives nil, "insufficient_scope" and its entry.

--- v:authorize(entry, scope): whether the entry's key may act in scope (apikey.authorize).
function Verifier.authorize(_, entry, scope)
    return require("apikey").authorize(entry, scope)
end

--- The state: path, state ("ok"; "stale" while reloads fail and the keys loaded before are in
-- use; "refusing" once they have failed for max_stale seconds), keys (how many are loaded),
-- loaded_at, checked_at, reloads, and error, error_code, failed_at and failing_since while
-- reloads fail.
function Verifier:status()
    local state = self[REFUSING] and "refusing" or self.last_error and "stale" or "ok"
    return {
        path = self.path,
        state = state,
        failing_since = self.failing_since,
        keys = self[KEYSTORE]:count(),
        loaded_at = self.loaded_at,
        checked_at = self.checked_at,
        reloads = self.reloads,
        error = self.last_error,
        error_code = self.last_error_code,
        failed_at = self.failed_at,
    }
end

--- Releases the keystore; safe to call more than once. A closed verifier raises.
function Verifier:close()
    self[KEYSTORE]:close()
end

Verifier.__close = Verifier.close

function Verifier:__tostring()
    return ("apikey verifier (%s)"):format(self.path)
end

return { new = new }
