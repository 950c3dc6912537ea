--- apikey: API keys kept as SHA-256 hashes inside a PKCS#12 keystore.
--
-- This module holds the policy (defaults, alias rules, dates and durations, what a listing
-- shows); the C core `apikey.core` holds the mechanism (file format, crypto, locking, index).
-- Misuse (a wrong argument type) raises; a failure the caller must handle returns
-- nil, message, code.
local core = require "apikey.core"

local apikey = {
    version = core.version,
    format_local = core.format_local,
    format_utc = core.format_utc,
    -- apikey.verifier{ path = ..., interval = ... }: checks keys in a long-running process
    verifier = require("apikey.verifier").new,
}

-- With an empty password the encryption only obscures the file, so a low cost is honest;
-- with a real password, OWASP's figure for PBKDF2-HMAC-SHA256.
local ITERATIONS_NO_PASSWORD = 2048
local ITERATIONS_PASSWORD = 600000
local LOCK_TIMEOUT = 10 -- seconds a writer waits for another writer
local ALIAS_MAX = 128 -- bytes
local TIME_MAX = 253402300799 -- 9999-12-31T23:59:59Z, the last time the file format holds
local MASK = ("*"):rep(20)
local PRINTABLE_MAX = 160 -- bytes of user text in a message: more than any alias

local UNITS = { s = 1, m = 60, h = 3600, d = 86400, w = 604800 }

local function argerror(fname, n, msg)
    error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 3)
end

local function is_integer(v)
    return math.type(v) == "integer"
end

-- Code points that would make a listing lie or break: C0 and C1 controls, line and
-- paragraph separators, and the bidirectional overrides and marks.
local function is_control(c)
    return c < 0x20 or (c >= 0x7F and c <= 0x9F) or c == 0x061C or c == 0x200E or c == 0x200F
        or (c >= 0x2028 and c <= 0x202E) or (c >= 0x2066 and c <= 0x2069)
end

local function is_blank(c)
    return c == 0x20 or c == 0xA0 or c == 0x1680 or (c >= 0x2000 and c <= 0x200B)
        or c == 0x202F or c == 0x205F or c == 0x3000 or c == 0xFEFF
end

--- Text from a user made fit for one line of a message: control characters, bidirectional
-- overrides and bytes that are not UTF-8 are escaped (\x1B, \u{202E}), and text longer than
-- any alias is cut with "...". Text shaped like a key is masked as `list` masks keys, so a key
-- pasted in the wrong place is not echoed into a terminal's scrollback or a log.
local H = "%x"
local KEY_SHAPE = H:rep(8) .. "%-" .. H:rep(4) .. "%-" .. H:rep(4) .. "%-" .. H:rep(4) .. "%-"
    .. H:rep(8) .. "(" .. H:rep(4) .. ")"
-- keep_keys: leave key-shaped text as it is (for aliases read from the keystore, which are
-- names, not pasted input).
function apikey.printable(s, keep_keys)
    if not keep_keys then
        s = s:gsub(KEY_SHAPE, function(hint) return ("*"):rep(20) .. hint end)
    end
    local out, used, i = {}, 0, 1
    while i <= #s do
        local b = s:byte(i)
        local len = b < 0x80 and 1 or b >= 0xF0 and 4 or b >= 0xE0 and 3 or b >= 0xC2 and 2 or 1
        local ch = s:sub(i, i + len - 1)
        local piece
        if #ch == len and utf8.len(ch) == 1 then
            local c = utf8.codepoint(ch)
            if not is_control(c) then
                piece = ch
            elseif c < 0x80 then
                piece = ("\\x%02X"):format(c)
            else
                piece = ("\\u{%X}"):format(c)
            end
        else
            len, piece = 1, ("\\x%02X"):format(b)
        end
        if used + #piece > PRINTABLE_MAX then
            out[#out + 1] = "..."
            break
        end
        out[#out + 1] = piece
        used = used + #piece
        i = i + len
    end
    return table.concat(out)
end
local printable = apikey.printable

--- Checks an alias; returns true, or nil and a message.
local function check_alias(alias)
    if alias == "" then
        return nil, "the alias is empty; give a name such as ci-bot"
    end
    if #alias > ALIAS_MAX then
        return nil, ("the alias is %d bytes long; the limit is %d"):format(#alias, ALIAS_MAX)
    end
    if not utf8.len(alias) then
        return nil, ("the alias '%s' is not valid UTF-8"):format(printable(alias))
    end
    local first, last
    for _, c in utf8.codes(alias) do
        if is_control(c) then
            return nil, ("the alias '%s' contains the control character U+%04X; use printable "
                .. "characters only"):format(printable(alias), c)
        end
        first = first or c
        last = c
    end
    if is_blank(first) or is_blank(last) then
        return nil, ("the alias '%s' starts or ends with a blank; remove it")
            :format(printable(alias))
    end
    return true
end

--- Parses a duration such as "90d", "12h", "30m", "45s" or "2w" into seconds.
local function parse_duration(text)
    local n, unit = text:match("^(%d+)([smhdw])$")
    if n and #n <= 12 and tonumber(n) > 0 then
        return tonumber(n) * UNITS[unit]
    end
    return nil
end

-- The expiry time asked for in create's options, false for none, or nil and a message.
local function expiry(opts, now)
    local expires, expires_in = opts.expires, opts.expires_in
    if expires ~= nil and expires_in ~= nil then
        argerror("create", 3, "give expires or expires_in, not both")
    end
    local t, shown
    if type(expires) == "string" then
        t = core.parse_time(expires)
        if not t then
            return nil, ("invalid date '%s': use YYYY-MM-DDThh:mm:ss (local time), optionally "
                .. "followed by Z or +hh:mm, e.g. 2027-01-01T00:00:00"):format(printable(expires))
        end
        shown = printable(expires)
    elseif is_integer(expires) then
        t = expires
        shown = t >= 0 and t <= TIME_MAX and core.format_local(t) or tostring(t)
    elseif expires ~= nil then
        argerror("create", 3, "expires must be a date string or an integer Unix time, got "
            .. (math.type(expires) or type(expires)))
    elseif type(expires_in) == "string" then
        local seconds = parse_duration(expires_in)
        if not seconds then
            return nil, ("invalid duration '%s': use a whole number above 0 followed by s, m, h, "
                .. "d or w, e.g. 90d"):format(printable(expires_in))
        end
        t = now + seconds
        if t > TIME_MAX then
            return nil, ("the duration '%s' ends after the year 9999; give a shorter one")
                :format(printable(expires_in))
        end
        return t
    elseif expires_in ~= nil then
        argerror("create", 3, "expires_in must be a string such as '90d', got " .. type(expires_in))
    else
        return false
    end
    if t <= now then
        return nil, ("the date %s is in the past; give a later date"):format(shown)
    end
    if t > TIME_MAX then
        return nil, ("the date %s is after the year 9999; give an earlier date"):format(shown)
    end
    return t
end

-- Adds what a listing shows to an entry from the core.
local function describe(e, now)
    e.masked = MASK .. e.hint
    e.expired = e.expires ~= nil and e.expires <= now
    return e
end

local Keystore = {}
Keystore.__index = Keystore
Keystore.__name = "apikey.Keystore"

local function check_open(self, fname)
    if getmetatable(self) ~= Keystore then
        argerror(fname, 1, "apikey keystore expected, got " .. type(self))
    end
    if self._closed then
        argerror(fname, 1, "the keystore is closed")
    end
    return self._core
end

--- Opens a keystore. A missing file is an empty keystore; nothing is written until the
-- first create.
-- opts.path (required), opts.password (default ""), opts.iterations (PBKDF2 cost of the
-- writes; default 2048 without a password, 600000 with one), opts.lock_timeout (seconds a
-- writer waits for another, default 10).
function apikey.open(opts)
    if type(opts) ~= "table" then
        argerror("open", 1, "table expected, got " .. type(opts))
    end
    local path, password = opts.path, opts.password
    if type(path) ~= "string" or path == "" then
        argerror("open", 1, "path must be a non-empty string")
    end
    if password ~= nil and type(password) ~= "string" then
        argerror("open", 1, "password must be a string, got " .. type(password))
    end
    local iterations = opts.iterations
    if iterations == nil then
        local none = password == nil or password == ""
        iterations = none and ITERATIONS_NO_PASSWORD or ITERATIONS_PASSWORD
    elseif not is_integer(iterations) or iterations < 1 then
        argerror("open", 1, "iterations must be a positive integer")
    end
    local lock_timeout = opts.lock_timeout or LOCK_TIMEOUT
    if type(lock_timeout) ~= "number" or not (lock_timeout >= 0 and lock_timeout <= 86400) then
        argerror("open", 1, "lock_timeout must be a number of seconds from 0 to 86400")
    end
    local timeout_ms = math.floor(lock_timeout * 1000 + 0.5)
    local ks, msg, code = core.open(path, password, iterations, timeout_ms)
    if not ks then
        return nil, msg, code
    end
    return setmetatable({ path = path, _core = ks }, Keystore)
end

--- Creates a key for alias. opts.expires: "YYYY-MM-DDThh:mm:ss" (local time, or with Z or
-- +hh:mm) or an integer Unix time; opts.expires_in: a duration such as "90d". Returns the
-- key (the only time it is available) and its entry.
function Keystore:create(alias, opts)
    local ks = check_open(self, "create")
    if type(alias) ~= "string" then
        argerror("create", 2, "alias must be a string, got " .. type(alias))
    end
    if opts ~= nil and type(opts) ~= "table" then
        argerror("create", 3, "table expected, got " .. type(opts))
    end
    local ok, why = check_alias(alias)
    if not ok then
        return nil, why, "invalid"
    end
    local now = os.time()
    local expires
    expires, why = expiry(opts or {}, now)
    if expires == nil then
        return nil, why, "invalid"
    end
    local key, entry, code = ks:create(alias, now, expires or nil)
    if not key then
        return nil, entry, code
    end
    return key, describe(entry, now), code -- code: nil, or the warning of a change not synced
end

--- The entries in creation order, each { alias, hint, masked, created, expires, expired },
-- after picking up any change to the file.
function Keystore:list()
    local ks = check_open(self, "list")
    local ok, msg, code = ks:refresh()
    if ok == nil then
        return nil, msg, code
    end
    local now = os.time()
    local entries = ks:list()
    for _, e in ipairs(entries) do
        describe(e, now)
    end
    return entries
end

--- Removes the key of alias (matched without regard to ASCII case).
function Keystore:revoke(alias)
    local ks = check_open(self, "revoke")
    if type(alias) ~= "string" then
        argerror("revoke", 2, "alias must be a string, got " .. type(alias))
    end
    return ks:revoke(alias)
end

--- Checks a key against the keys loaded (by open, create, revoke, list or refresh): its
-- entry, or nil and "unknown", "expired" or "malformed". The entry is shared between calls:
-- read it, do not change it. now (an integer Unix time) defaults to the clock. A long-running
-- process that must see other processes' changes uses apikey.verifier instead.
function Keystore:verify(key, now)
    local ks = check_open(self, "verify")
    if type(key) ~= "string" then
        argerror("verify", 2, "key must be a string, got " .. type(key))
    end
    if now ~= nil and not is_integer(now) then
        argerror("verify", 3, "now must be an integer Unix time")
    end
    local e, why = ks:verify(key, now)
    if e and e.masked == nil then
        e.masked = MASK .. e.hint
        e.expired = false
    end
    return e, why
end

--- Reloads the file if it changed: true if it did, false if not, or nil, message, code.
function Keystore:refresh()
    return check_open(self, "refresh"):refresh()
end

--- The number of keys.
function Keystore:count()
    return check_open(self, "count"):count()
end

--- Releases the keystore; safe to call more than once.
function Keystore:close()
    if getmetatable(self) ~= Keystore then
        argerror("close", 1, "apikey keystore expected, got " .. type(self))
    end
    if not self._closed then
        self._closed = true
        self._core:close()
    end
end

Keystore.__close = Keystore.close

function Keystore:__tostring()
    return self._closed and "apikey keystore (closed)" or ("apikey keystore (%s)"):format(self.path)
end

return apikey
