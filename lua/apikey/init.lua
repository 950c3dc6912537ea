--- apikey: API keys kept as SHA-256 hashes inside a PKCS#12 keystore.
--
-- This module holds the policy (defaults, alias rules, dates and durations, what a listing
-- shows); the C core `apikey.core` holds the mechanism (file format, crypto, locking, index).
-- Misuse (a wrong argument type) raises; a failure the caller must handle returns
-- nil, message, code.
local core = require "apikey.core"
-- math.type and utf8 on Lua 5.1 (LuaJIT) too: Lua's own on 5.3 and later
local compat = require "apikey.compat"
local math, utf8 = compat.math, compat.utf8

local apikey = {
    version = core.version,
    format_local = core.format_local,
    format_utc = core.format_utc,
    -- apikey.verifier{ path = ..., interval = ... }: checks keys in a long-running process
    verifier = require("apikey.verifier").new,
}

-- Defaults, each in one place. With an empty password the encryption only obscures the file,
-- so a low cost is honest; with a real password, OWASP's figure for PBKDF2-HMAC-SHA256.
local ITERATIONS_NO_PASSWORD = 2048
local ITERATIONS_PASSWORD = 600000
local LOCK_TIMEOUT = 10 -- seconds a writer waits for another writer
local PRINTABLE_MAX = 160 -- bytes of user text in a message: more than any alias
-- Limits of the file format and of the core, from the core.
local ALIAS_MAX, TIME_MAX = core.ALIAS_MAX, core.TIME_MAX

local UNITS = { s = 1, m = 60, h = 3600, d = 86400, w = 604800 }

local function argerror(fname, n, msg)
    error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 3)
end

local function is_integer(v)
    return math.type(v) == "integer"
end

-- Code points that would make a listing lie or break (controls, line and paragraph separators,
-- bidirectional controls) or that show nothing (default-ignorable and format characters):
-- the core's rule, from the Unicode properties.
local hidden = core.hidden

--- Text from a user made fit for one line of a message: control characters, bidirectional
-- overrides and bytes that are not UTF-8 are escaped (\x1B, \u{202E}), and text longer than
-- any alias is cut with "...". Text shaped like a key is masked as `list` masks keys, so a key
-- pasted in the wrong place is not echoed into a terminal's scrollback or a log. Invisible
-- characters (U+200B, U+FEFF, ...) are escaped too, so that two names never look the same.
local H = "%x"
local KEY_SHAPE = H:rep(8) .. "%-" .. H:rep(4) .. "%-" .. H:rep(4) .. "%-" .. H:rep(4) .. "%-"
    .. H:rep(8) .. "(" .. H:rep(4) .. ")"
-- keep_keys: leave key-shaped text as it is (for aliases read from the keystore, which are
-- names, not pasted input).
function apikey.printable(s, keep_keys)
    if not keep_keys then
        s = s:gsub(KEY_SHAPE, function(hint) return core.MASK .. hint end)
    end
    local out, used, i = {}, 0, 1
    while i <= #s do
        local b = s:byte(i)
        local len = b < 0x80 and 1 or b >= 0xF0 and 4 or b >= 0xE0 and 3 or b >= 0xC2 and 2 or 1
        local ch = s:sub(i, i + len - 1)
        local piece
        if #ch == len and utf8.len(ch) == 1 then
            local c = utf8.codepoint(ch)
            if not hidden(c) then
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

-- What each fault of an alias (core.check_alias, where the rules are) tells the user.
local ALIAS_FAULTS = {
    empty = "the alias is empty; give a name such as ci-bot",
    long = "the alias is %d bytes long; the limit is %d",
    utf8 = "the alias '%s' is not valid UTF-8",
    control = "the alias '%s' contains the control character U+%04X; use printable characters only",
    invisible = "the alias '%s' contains the invisible character U+%04X; use visible characters only",
    blank = "the alias '%s' starts or ends with a blank; remove it",
    key = "the alias '%s' is shaped like an API key; an alias is a name, and a key pasted there "
        .. "would be kept in the clear",
    reserved = "the alias '%s' starts with api_key:, the prefix of MetricsHub's own keys; choose "
        .. "another alias",
}

--- Checks an alias; returns true, or nil and a message.
local function check_alias(alias)
    local ok, fault, cp = core.check_alias(alias)
    if ok then
        return true
    elseif fault == "empty" then
        return nil, ALIAS_FAULTS.empty
    elseif fault == "long" then
        return nil, ALIAS_FAULTS.long:format(#alias, ALIAS_MAX)
    elseif fault == "control" or fault == "invisible" then
        return nil, ALIAS_FAULTS[fault]:format(printable(alias), cp)
    end
    return nil, ALIAS_FAULTS[fault]:format(printable(alias))
end

--- Parses a duration such as "90d", "12h", "30m", "45s" or "2w" into seconds.
local function parse_duration(text)
    local n, unit = text:match("^(%d+)([smhdw])$")
    if n and #n <= 12 and tonumber(n) > 0 then
        return tonumber(n) * UNITS[unit]
    end
    return nil
end

-- The expiry time asked for in the options of create (or of fname), false for none, or nil
-- and a message.
local function expiry(opts, now, fname)
    fname = fname or "create"
    local expires, expires_in = opts.expires, opts.expires_in
    if expires ~= nil and expires_in ~= nil then
        argerror(fname, 2, "give expires or expires_in, not both")
    end
    local t, shown
    if type(expires) == "string" then
        -- As Java's LocalDateTime.parse reads it: seconds and a fraction are optional, and the
        -- fraction is dropped; a local time in a DST gap or overlap is resolved as Java's
        -- atZone does. The line printed after a create shows the time stored.
        local why
        t, why = core.parse_time(expires)
        shown = printable(expires)
        if why == "early" then
            return nil, ("the date %s is in the past; give a later date"):format(shown)
        elseif why == "late" then
            return nil, ("the date %s is after the year 9999; give an earlier date"):format(shown)
        elseif not t then
            return nil, ("invalid date '%s': use YYYY-MM-DDThh:mm:ss (local time), optionally "
                .. "followed by Z or +hh:mm, e.g. 2027-01-01T00:00:00"):format(shown)
        end
    elseif is_integer(expires) then
        t = expires
        shown = t >= 0 and t <= TIME_MAX and core.format_local(t) or tostring(t)
    elseif expires ~= nil then
        argerror(fname, 2, "expires must be a date string or an integer Unix time, got "
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
        argerror(fname, 2, "expires_in must be a string such as '90d', got " .. type(expires_in))
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

-- Every options table is checked where it enters: a name that is not an option raises, so
-- that a typo (`expire`, `pasword`) is not silently ignored.
local function check_options(fname, n, opts, known)
    if type(opts) ~= "table" then
        argerror(fname, n, "table expected, got " .. type(opts))
    end
    for name in pairs(opts) do
        if not known[name] then
            argerror(fname, n, ("unknown option '%s'"):format(printable(tostring(name))))
        end
    end
end
apikey._check_options = check_options -- for apikey.verifier

local OPEN_OPTIONS = { path = true, password = true, iterations = true, lock_timeout = true }
local CREATE_OPTIONS = { expires = true, expires_in = true, scopes = true }
local ROTATE_OPTIONS = { expires = true, expires_in = true, grace = true }

--- Checks a list of scopes: a new list without repeats, in the order given; or nil and a
-- message. A scope is a name of letters, digits and ":._-", at most SCOPE_MAX bytes; a key has
-- at most SCOPES_MAX.
local SCOPE_MAX, SCOPES_MAX = core.SCOPE_MAX, core.SCOPES_MAX
local function check_scopes(fname, scopes)
    if type(scopes) ~= "table" then
        argerror(fname, 2, "scopes must be a list of strings, got " .. type(scopes))
    end
    local out, seen = {}, {}
    for i, scope in ipairs(scopes) do
        if type(scope) ~= "string" then
            argerror(fname, 2, ("scopes[%d] must be a string, got %s"):format(i, type(scope)))
        end
        if not scope:find("^[%w:._-]+$") or scope:find("[\128-\255]") then
            return nil, ("invalid scope '%s': use letters, digits and ':._-', e.g. read or "
                .. "metrics:read"):format(printable(scope))
        end
        if #scope > SCOPE_MAX then
            return nil, ("the scope '%s' is %d bytes long; the limit is %d")
                :format(printable(scope), #scope, SCOPE_MAX)
        end
        if not seen[scope] then
            seen[scope] = true
            out[#out + 1] = scope
        end
    end
    if #out == 0 then
        return nil, "no scope given; give at least one, e.g. read"
    end
    if #out > SCOPES_MAX then
        return nil, ("%d scopes given; a key has at most %d"):format(#out, SCOPES_MAX)
    end
    return out
end

--- Whether a key's entry (from verify, authenticate or list) may act in scope: true for a key
-- with full access (entry.scopes nil), else whether scope is one of entry.scopes.
function apikey.authorize(entry, scope)
    if type(entry) ~= "table" then
        argerror("authorize", 1, "entry must be a table, got " .. type(entry))
    end
    if type(scope) ~= "string" then
        argerror("authorize", 2, "scope must be a string, got " .. type(scope))
    end
    local scopes = entry.scopes
    if scopes == nil then
        return true
    end
    for i = 1, #scopes do
        if scopes[i] == scope then
            return true
        end
    end
    return false
end

-- The PBKDF2 cost of a file with password: the one given (checked), else the default for it.
local function iterations_for(fname, n, password, iterations)
    if iterations == nil then
        return password == "" and ITERATIONS_NO_PASSWORD or ITERATIONS_PASSWORD
    elseif not is_integer(iterations) or iterations < 1 or iterations > core.ITERATIONS_MAX then
        argerror(fname, n, ("iterations must be an integer from 1 to %d"):format(core.ITERATIONS_MAX))
    end
    return iterations
end

--- Opens a keystore: the apikey.Keystore userdata of the core, whose methods are the core's
-- with `create` added below. A missing file is an empty keystore; nothing is written until the
-- first create.
-- opts.path (required), opts.password (default ""), opts.iterations (PBKDF2 cost of the
-- writes; default 2048 without a password, 600000 with one), opts.lock_timeout (seconds a
-- writer waits for another, default 10).
function apikey.open(opts)
    check_options("open", 1, opts, OPEN_OPTIONS)
    local path, password = opts.path, opts.password
    if type(path) ~= "string" or path == "" then
        argerror("open", 1, "path must be a non-empty string")
    end
    if password ~= nil and type(password) ~= "string" then
        argerror("open", 1, "password must be a string, got " .. type(password))
    end
    password = password or ""
    local iterations = iterations_for("open", 1, password, opts.iterations)
    local lock_timeout = opts.lock_timeout or LOCK_TIMEOUT
    if type(lock_timeout) ~= "number"
        or not (lock_timeout >= 0 and lock_timeout <= core.LOCK_TIMEOUT_MAX) then
        argerror("open", 1, ("lock_timeout must be a number of seconds from 0 to %d")
            :format(core.LOCK_TIMEOUT_MAX))
    end
    return core.open(path, password, iterations, math.floor(lock_timeout * 1000 + 0.5))
end

local Keystore = core.Keystore -- the methods of every keystore, C's and these
local create = core.create

--- Creates a key for alias. opts.expires: "YYYY-MM-DDThh:mm[:ss[.fffffffff]]" (local time, or
-- with Z or +hh:mm) or an integer Unix time; opts.expires_in: a duration such as "90d";
-- opts.scopes: a list of scope names (default: full access). Returns the key (the only time it
-- is available) and its entry; ks:warning() then says whether the change could not be
-- confirmed on disk.
-- create's policy, for every place keys are made (a keystore, apikey.store): the arguments
-- checked, the time now, the expiry (false for none) and the scopes (nil for full access); or
-- nil, message, "invalid".
local function create_args(alias, opts)
    if type(alias) ~= "string" then
        argerror("create", 1, "alias must be a string, got " .. type(alias))
    end
    if opts ~= nil then
        check_options("create", 2, opts, CREATE_OPTIONS)
    end
    local ok, why = check_alias(alias)
    if not ok then
        return nil, why, "invalid"
    end
    local now = os.time()
    local expires, scopes
    expires, why = expiry(opts or {}, now)
    if expires == nil then
        return nil, why, "invalid"
    end
    if opts and opts.scopes ~= nil then
        scopes, why = check_scopes("create", opts.scopes)
        if not scopes then
            return nil, why, "invalid"
        end
    end
    return now, expires, scopes
end
apikey._create_args = create_args -- for apikey.store

function Keystore:create(alias, opts)
    local now, expires, scopes = create_args(alias, opts)
    if not now then
        return nil, expires, scopes
    end
    return create(self, alias, now, expires or nil, scopes)
end

--- Gives alias a new key, with the scopes of the one it has. opts.grace: how long the key it
-- had keeps working, a duration such as "1h" or a number of seconds (default: none, it stops
-- at once), then it is refused as expired; opts.expires or opts.expires_in as for create
-- (default: the expiry of the key it had). Returns the new key and its entry, as create, and
-- the entry of the key it had (its `rotated` is the end of its grace).
-- rotate's policy, for every place keys are rotated (a keystore, apikey.store): the arguments
-- checked, then the time now, the end of the grace period, whether the key keeps its expiry,
-- and the new expiry (false for none); or nil, message, "invalid".
local function rotate_args(alias, opts)
    if type(alias) ~= "string" then
        argerror("rotate", 1, "alias must be a string, got " .. type(alias))
    end
    opts = opts or {}
    check_options("rotate", 2, opts, ROTATE_OPTIONS)
    local now = os.time()
    local grace = opts.grace or 0
    if type(grace) == "string" then
        local seconds = parse_duration(grace)
        if not seconds then
            return nil, ("invalid grace period '%s': use a whole number above 0 followed by s, "
                .. "m, h, d or w, e.g. 1h"):format(printable(grace)), "invalid"
        end
        grace = seconds
    elseif not is_integer(grace) or grace < 0 then
        argerror("rotate", 2, "grace must be a duration such as '1h' or a number of seconds")
    end
    if now + grace > TIME_MAX then
        return nil, "the grace period ends after the year 9999; give a shorter one", "invalid"
    end
    local keep = opts.expires == nil and opts.expires_in == nil
    local expires, why = expiry(opts, now, "rotate")
    if expires == nil then
        return nil, why, "invalid"
    end
    return now, now + grace, keep, expires
end
apikey._rotate_args = rotate_args -- for apikey.store

function Keystore:rotate(alias, opts)
    local now, grace_end, keep, expires = rotate_args(alias, opts)
    if not now then
        return nil, grace_end, keep
    end
    return core.rotate(self, alias, now, grace_end, keep, expires or nil)
end

local PASSWD_OPTIONS = { iterations = true }

--- Changes the file's password to new_password ("" removes it), in one atomic write, what other
-- tools protected with the old one included; this handle then uses the new one. opts.iterations:
-- the PBKDF2 cost of the file, default as for open (2048 without a password, 600,000 with one).
-- Returns the number of other tools' keys and contents protected again; nil, message, code when
-- the file does not exist ("notfound"), is MetricsHub's or holds keys of another tool that the
-- old password does not open ("invalid": nothing written), or as a write fails.
function Keystore:passwd(new_password, opts)
    if type(new_password) ~= "string" then
        argerror("passwd", 1, "new_password must be a string, got " .. type(new_password))
    end
    opts = opts or {}
    check_options("passwd", 2, opts, PASSWD_OPTIONS)
    return core.passwd(self, new_password,
        iterations_for("passwd", 2, new_password, opts.iterations))
end

--- Whether the keystore file at path has a password: true, "password"; or false and "none",
-- "metricshub" (MetricsHub's fixed store password, public in its source, opens it) or "missing"
-- (no file yet); nil, message, code when it cannot be told (unreadable, insecure, corrupt).
function apikey.has_password(path)
    if type(path) ~= "string" or path == "" then
        argerror("has_password", 1, "path must be a non-empty string")
    end
    return core.has_password(path)
end

Keystore.authorize = function(_, entry, scope)
    return apikey.authorize(entry, scope)
end

return apikey
