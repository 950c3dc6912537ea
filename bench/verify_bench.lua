-- verify_bench.lua: checks per second through the Lua API, one thread.
--
--   lua5.4 bench/verify_bench.lua KEYSTORE KEYS_FILE [SECONDS [SCOPE]]
--
-- Needs apikey.core and lua/ on LUA_CPATH / LUA_PATH. For each way in (apikey.open's
-- ks:verify, a verifier's verify and authenticate) it prints one line with valid and unknown
-- keys per second; with SCOPE, one more: authenticate(header, SCOPE), which the keys must
-- pass (they have the scope, or full access). Valid keys come from KEYS_FILE (one a line);
-- unknown ones are fresh random UUIDs. Every answer is checked.
local apikey = require "apikey"
local verifier = require "apikey.verifier"

local path, keys_file, secs, scope = arg[1], arg[2], tonumber(arg[3] or "2"), arg[4]
if not (path and keys_file) then
    io.stderr:write("usage: lua5.4 verify_bench.lua KEYSTORE KEYS_FILE [SECONDS [SCOPE]]\n")
    os.exit(2)
end

local valid, unknown = dofile(arg[0]:gsub("[^/]*$", "") .. "bench_keys.lua")(keys_file)

-- Calls check(obj, keys[i], extra), cycling, in 5 slices of secs / 5 CPU seconds each (os.clock: this
-- process's CPU time, so that other processes on a busy machine count as little as they can);
-- returns the median slice's calls per CPU second.
local function rate(check, obj, keys, want_valid, extra)
    local clock, n, i = os.clock, #keys, 1
    local rates = {}
    for s = 1, 5 do
        local done, t0, t1 = 0, clock(), nil
        repeat
            for _ = 1, 4096 do
                local e = check(obj, keys[i], extra)
                if (e ~= nil) ~= want_valid then
                    error(("wrong answer for key %s"):format(keys[i]))
                end
                i = i == n and 1 or i + 1
            end
            done = done + 4096
            t1 = clock()
        until t1 - t0 >= secs / 5
        rates[s] = done / (t1 - t0)
    end
    table.sort(rates)
    return rates[3]
end

local function report(name, obj, check, good, bad, extra)
    print(("keys=%d way=%s valid_per_s=%.0f unknown_per_s=%.0f"):format(#good, name,
        rate(check, obj, good, true, extra), rate(check, obj, bad, false, extra)))
end

local function bearer(keys)
    local t = {}
    for i, k in ipairs(keys) do
        t[i] = "Bearer " .. k
    end
    return t
end

local api = assert(apikey.open { path = path })
report("api", api, api.verify, valid, unknown)
api:close()

local v = assert(verifier.new { path = path, interval = 1 })
report("verifier", v, v.verify, valid, unknown)
report("authenticate", v, v.authenticate, bearer(valid), bearer(unknown))
if scope then
    report("authenticate_scope", v, v.authenticate, bearer(valid), bearer(unknown), scope)
end
v:close()
