-- A reader for concurrency_spec.lua: verifies keys in a loop, with the C core, while other
-- processes change the keystore, and writes what it saw to a result file.
--
--   lua5.4 spec/support/verify_loop.lua KEYSTORE OUTPUTS STOPFILE RESULT
--
-- from the repository's root, as busted runs, so that it loads spec.helpers as the specs do
-- (which puts the installed tree under test on the module paths).
--
-- OUTPUTS holds the writers' stdout: c-N.out (create lines) and r-N.out (revoke lines), N from
-- 1 to 16, and r-N.started (an alias a line, written before its revoke starts). Each round it
-- reads them, then reloads the keystore if it changed, and checks: the reload never fails;
-- every alias listed is one a writer may create, with the hint of its printed key; every key
-- printed by a create verifies, unless a revoke of it has started; no key whose revoke was
-- printed before the round verifies or is listed. It stops when STOPFILE exists, or after 300
-- seconds; RESULT appears, whole, when it is done.
local h = require "spec.helpers"
local core = require "apikey.core"

local path, outputs, stopfile, result = ...
assert(result, "usage: verify_loop.lua KEYSTORE OUTPUTS STOPFILE RESULT")

local ALIAS = "^w%d+%-k%d+$"
local NEVER_CREATED = "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f"
local DEADLINE = os.time() + 300

local stats = { rounds = 0, reloads = 0, verifies = 0, max_keys = 0 }
local failures, nfailures = {}, 0

local function fail(msg)
    nfailures = nfailures + 1
    if #failures < 20 then
        failures[#failures + 1] = msg
    end
end

-- What the writers' files OUTPUTS/NAME (N from 1 to 16 for NAME's %d) say: for each match
-- of pattern, its first capture -> its second, or true when it has one.
local function collect(name, pattern)
    local found = {}
    for n = 1, 16 do
        local data = h.read_file(outputs .. "/" .. name:format(n))
        if data then
            for k, v in data:gmatch(pattern) do
                found[k] = v or true
            end
        end
    end
    return found
end

-- Keys printed by creates so far (alias -> key).
local function printed_keys()
    return collect("c-%d.out", "API key created for alias '([^'\n]*)': (" .. h.UUID .. ")")
end

-- Aliases whose revoke has started.
local function started_revokes()
    return collect("r-%d.started", "([^\n]+)\n")
end

-- Aliases whose revoke was printed so far.
local function printed_revokes()
    return collect("r-%d.out", "API key '([^'\n]*)' has been revoked%.\n")
end

local ks, msg = require("apikey").open { path = path }
if not ks then
    fail("open: " .. tostring(msg))
end

while ks do
    local stop = h.read_file(stopfile) ~= nil
    local keys, revoked = printed_keys(), printed_revokes()
    local changed, err = ks:refresh()
    stats.rounds = stats.rounds + 1
    if changed == nil then
        fail("reload failed: " .. tostring(err))
    elseif changed then
        stats.reloads = stats.reloads + 1
    end
    local entries = ks:list()
    stats.max_keys = math.max(stats.max_keys, #entries)
    for _, e in ipairs(entries) do
        if not e.alias:match(ALIAS) then
            fail("listed an alias no writer creates: " .. e.alias)
        elseif revoked[e.alias] then
            fail("listed " .. e.alias .. " after its revoke was printed")
        elseif keys[e.alias] and keys[e.alias]:sub(-4) ~= e.hint then
            fail("wrong hint for " .. e.alias)
        end
    end
    local suspects = {}
    for alias, key in pairs(keys) do
        local e, why = ks:verify(key)
        stats.verifies = stats.verifies + 1
        if revoked[alias] then
            if e then
                fail("the key of " .. alias .. " verifies after its revoke was printed")
            end
        elseif not e then
            suspects[alias] = why
        elseif e.alias ~= alias then
            fail("the key of " .. alias .. " verifies as " .. e.alias)
        end
    end
    if next(suspects) then
        -- Refused: right only if a revoke of the key has started (it may have been written
        -- and not printed yet).
        local started = started_revokes()
        for alias, why in pairs(suspects) do
            if not started[alias] then
                fail(("the printed key of %s does not verify (%s)"):format(alias, why))
            end
        end
    end
    if ks:verify(NEVER_CREATED) then
        fail("a key never created verifies")
    end
    if stop or os.time() > DEADLINE then
        break
    end
    h.sleep(0.001)
end
if ks then
    ks:close()
end

local f = assert(io.open(result .. ".part", "wb"))
f:write(("rounds=%d reloads=%d verifies=%d max_keys=%d failures=%d\n"):format(stats.rounds,
    stats.reloads, stats.verifies, stats.max_keys, nfailures))
for _, m in ipairs(failures) do
    f:write(m, "\n")
end
f:close()
assert(os.rename(result .. ".part", result))
