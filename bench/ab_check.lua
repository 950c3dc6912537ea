-- ab_check.lua: the ways to check a key that ab_check.c times, in the Lua state of one build.
--
-- Returns a function (keystore, keys_file, scope) -> ways, names: ways[name](n) runs n checks
-- and fails on a wrong answer; names lists them in the order they are timed. The valid and
-- unknown keys come from bench_keys.lua. The scope is given to authenticate as a server's guard
-- gives it; a build from before scopes ignores it.
local apikey = require "apikey"
local verifier = require "apikey.verifier"
local bench = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

return function(path, keys_file, scope)
    local valid, unknown = dofile(bench .. "bench_keys.lua")(keys_file)
    local headers = {}
    for i, k in ipairs(valid) do
        headers[i] = "Bearer " .. k
    end
    for i, k in ipairs(unknown) do
        unknown[i] = "Bearer " .. k
    end

    local ks = assert(apikey.open { path = path })
    local v = assert(verifier.new { path = path, interval = 1 })
    -- way(obj, check, keys, want, extra): a function of n running check(obj, keys[i], extra)
    -- over the keys in turn, each answer checked.
    local function way(obj, check, keys, want_valid, extra)
        local i, count = 1, #keys
        return function(n)
            for _ = 1, n do
                if (check(obj, keys[i], extra) ~= nil) ~= want_valid then
                    error("wrong answer for " .. keys[i])
                end
                i = i == count and 1 or i + 1
            end
        end
    end
    local ways = {
        api = way(ks, ks.verify, valid, true),
        verifier = way(v, v.verify, valid, true),
        authenticate = way(v, v.authenticate, headers, true),
        authenticate_scope = way(v, v.authenticate, headers, true, scope),
        authenticate_unknown = way(v, v.authenticate, unknown, false, scope),
    }
    return ways, { "api", "verifier", "authenticate", "authenticate_scope", "authenticate_unknown" }
end
