-- Crash safety: `apikey create` and `apikey revoke` killed with SIGKILL at random moments.
-- After every kill the keystore loads, every key whose create printed its line is there and
-- verifies, every revoke that printed its line stays revoked, nothing else changed, and a
-- temp file left by the dead writer blocks nothing.
--
-- Seeded and reproducible: APIKEY_CRASH_SEED (printed), APIKEY_CRASH_RUNS (default 200).
-- Half the delays are spread over the whole command, half over the moments it writes its temp
-- file and renames it (where a kill hurts most); both spans are measured first, with the
-- fault shim tracing the calls, and printed. APIKEY_CRASH_SPANS="MAX,FROM,TO" (milliseconds)
-- sets them, to replay a run exactly.
local rel = require("spec.helpers").reliability

local RUNS = tonumber(os.getenv("APIKEY_CRASH_RUNS")) or 200
local SEED = tonumber(os.getenv("APIKEY_CRASH_SEED")) or (os.time() % 1000000)
local KEYS_LOW, KEYS_HIGH = 90, 120 -- the keystore is kept between these sizes

-- Starts the command, SIGKILLs it after delay seconds (unless it ended first), and returns
-- its exit code (137 when killed), stdout and stderr.
local function run_killed(args, delay, dir, env)
    local out, err = dir .. "/killed.out", dir .. "/killed.err"
    local script = ("%s <%s >%s 2>%s & pid=$!; sleep %.4f; kill -KILL $pid 2>/dev/null; "
        .. "wait $pid; echo $?"):format(rel.command(args, { env = env }), "/dev/null",
        rel.quote(out), rel.quote(err), delay)
    -- sh's own "Killed" notice goes to /dev/null.
    local status = rel.capture("timeout -s KILL " .. rel.TIMEOUT .. " sh -c " .. rel.quote(script)
        .. " 2>/dev/null")
    local r = { code = tonumber(status), out = rel.read(out) or "", err = rel.read(err) or "",
        args = args }
    os.remove(out)
    os.remove(err)
    return r
end

local function sorted_keys(t)
    local out = {}
    for k in pairs(t) do
        out[#out + 1] = k
    end
    table.sort(out)
    return out
end

describe("apikey create and revoke killed with SIGKILL", function()
    teardown(function()
        rel.cleanup()
    end)

    it(("keep every acknowledged change through %d kills at random times"):format(RUNS), function()
        local dir = rel.tmpdir(finally)
        local ks = dir .. "/crash.p12"
        local stats = { runs = 0, killed = 0, finished = 0, midwrite = 0, unacked = 0,
            recoveries = 0, creates = 0, revokes = 0 }

        -- The model: alias -> key (or true when the key was never shown), and revoked keys.
        local present, revoked = rel.populate(ks, KEYS_LOW + 8, "p"), {}

        -- The delays that kill a create before, during and after its write: measured on a
        -- copy of the keystore by killing creates after 0, 0.5, 1 ... ms with the fault shim
        -- tracing which of write and rename happened (seconds).
        local spans = os.getenv("APIKEY_CRASH_SPANS")
        local max_s, from_s, to_s
        if spans then
            local a, b, c = spans:match("^([%d.]+),([%d.]+),([%d.]+)$")
            assert(a, "APIKEY_CRASH_SPANS must be MAX,FROM,TO in milliseconds")
            max_s, from_s, to_s = tonumber(a) / 1000, tonumber(b) / 1000, tonumber(c) / 1000
        else
            local shim = assert(rel.faultshim(dir))
            local copy, trace = dir .. "/calibrate.p12", dir .. "/trace"
            rel.write(copy, rel.read(ks), "600")
            local first_write, last_unrenamed
            local delay, n = 0, 0
            while delay < 2 do
                n = n + 1
                os.remove(trace)
                local r = run_killed({ "create", "calibrate-" .. n, "--keystore", copy }, delay,
                    dir, { LD_PRELOAD = rel.preload(shim), APIKEY_FAULT_TRACE = trace })
                local text = rel.read(trace) or ""
                if text:find("^write ") and not first_write then
                    first_write = delay
                end
                if not text:find("\nrename ") then
                    last_unrenamed = delay
                end
                if r.code ~= 137 then
                    assert(r.code == 0, "a create failed: " .. rel.show(r))
                    max_s = delay
                    break
                end
                -- Steps of 0.5 ms, longer on a slow machine (or under valgrind).
                delay = delay < 0.05 and delay + 0.0005 or delay * 1.1
            end
            assert(max_s and first_write and last_unrenamed, "calibration failed: no create "
                .. "was killed while writing")
            max_s = max_s * 1.1
            from_s = math.max(0, first_write - 0.002)
            to_s = math.max(last_unrenamed, first_write) + 0.001
        end

        math.randomseed(SEED)
        io.stderr:write(("\n[reliability] crash: seed %d (APIKEY_CRASH_SEED), %d runs, delays "
            .. "0-%.1f ms and %.1f-%.1f ms (APIKEY_CRASH_SPANS=%.1f,%.1f,%.1f)\n"):format(SEED,
            RUNS, max_s * 1000, from_s * 1000, to_s * 1000, max_s * 1000, from_s * 1000,
            to_s * 1000))

        local function where(i, op, alias, delay)
            return ("run %d (seed %d, %s %s killed after %.2f ms)"):format(i, SEED, op, alias,
                delay * 1000)
        end

        -- The keystore as the command and the API see it, checked against the model.
        -- pending: the alias whose change was not acknowledged (either state is right).
        local function check(ctx, pending)
            local l = rel.run({ "list", "--keystore", ks })
            assert(l.code == 0, ctx .. ": the keystore does not load: " .. rel.show(l))
            local listed = {}
            for _, row in ipairs(rel.parse_list(l.out)) do
                assert(not listed[row.alias], ctx .. ": alias listed twice: " .. row.alias)
                listed[row.alias] = row.hint
            end
            for alias, key in pairs(present) do
                if alias ~= pending then
                    assert(listed[alias], ctx .. ": acknowledged key lost: " .. alias)
                    assert(key == true or listed[alias] == key:sub(-4),
                        ctx .. ": wrong hint for " .. alias)
                end
            end
            for alias in pairs(listed) do
                assert(present[alias] or alias == pending,
                    ctx .. ": a key that should not be there: " .. alias)
            end
            local api = rel.open(ks)
            for alias, key in pairs(present) do
                if key ~= true and alias ~= pending then
                    local e, why = api:verify(key)
                    assert(e and e.alias == alias, ctx .. ": key of " .. alias
                        .. " does not verify: " .. tostring(why))
                end
            end
            for alias, key in pairs(revoked) do
                local e, why = api:verify(key)
                assert(e == nil and why == "unknown", ctx .. ": revoked key of " .. alias
                    .. " verifies again")
            end
            api:close()
            return listed
        end

        -- An uninterrupted write after a dead writer's temp file: must work and clean up. A
        -- create or a revoke (of the first alias), to keep the keystore's size in bounds.
        local function recover(i)
            local aliases = sorted_keys(present)
            if #aliases > (KEYS_LOW + KEYS_HIGH) // 2 then
                local alias = aliases[1]
                local r = rel.run({ "revoke", alias, "--keystore", ks }, { timeout = 30 })
                assert(r.code == 0, "run " .. i .. ": recovery failed: " .. rel.show(r))
                if present[alias] ~= true then
                    revoked[alias] = present[alias]
                end
                present[alias] = nil
            else
                local alias = "r" .. i
                local r = rel.run({ "create", alias, "--keystore", ks }, { timeout = 30 })
                present[alias] = rel.assert_created(r, alias)
            end
            assert(#rel.temps(ks) == 0, "run " .. i .. ": stale temp files were not removed")
            stats.recoveries = stats.recoveries + 1
        end

        for i = 1, RUNS do
            local aliases = sorted_keys(present)
            local op
            if #aliases <= KEYS_LOW then
                op = "create"
            elseif #aliases >= KEYS_HIGH then
                op = "revoke"
            else
                op = math.random() < 0.5 and "create" or "revoke"
            end
            local alias = op == "create" and "c" .. i or aliases[math.random(1, #aliases)]
            local delay
            if math.random() < 0.5 then
                delay = math.random() * max_s
            else
                delay = from_s + math.random() * (to_s - from_s)
            end
            local before = rel.read(ks)
            local r = run_killed({ op, alias, "--keystore", ks }, delay, dir)
            local ctx = where(i, op, alias, delay)
            stats.runs = stats.runs + 1
            stats[op .. "s"] = stats[op .. "s"] + 1
            assert(r.code == 0 or r.code == 137, ctx .. ": failed: " .. rel.show(r))
            assert(rel.leaked(r.err) == nil, ctx .. ": a key on stderr")

            -- Acknowledged: the command printed its line (its output is flushed at exit).
            local acked, key = false, nil
            if op == "create" then
                local a, k = r.out:match(rel.CREATED)
                if a then
                    assert(a == alias, ctx .. ": wrong alias printed")
                    acked, key = true, rel.secret(k)
                end
            else
                acked = r.out == ("API key '%s' has been revoked.\n"):format(alias)
            end
            if r.code == 137 then
                stats.killed = stats.killed + 1
            else
                stats.finished = stats.finished + 1
                assert(acked, ctx .. ": ended on its own without its line: " .. rel.show(r))
            end
            assert(acked or r.out == "", ctx .. ": partial output: " .. rel.show(r))

            local temps = rel.temps(ks)
            if acked then
                if op == "create" then
                    present[alias] = key
                else
                    if present[alias] ~= true then
                        revoked[alias] = present[alias]
                    end
                    present[alias] = nil
                end
                check(ctx)
            else
                -- Killed: the change either happened whole or not at all.
                local listed = check(ctx, alias)
                local happened = (op == "create") == (listed[alias] ~= nil)
                if happened then
                    stats.unacked = stats.unacked + 1
                    if op == "revoke" and present[alias] ~= true then
                        revoked[alias] = present[alias]
                    end
                    present[alias] = op == "create" or nil
                end
                assert(happened or rel.read(ks) == before,
                    ctx .. ": the file changed but the change is not there")
            end
            if #temps > 0 then
                stats.midwrite = stats.midwrite + 1
                recover(i)
            end
        end

        -- Nothing the dead writers left blocks a last, uninterrupted write.
        recover(RUNS + 1)
        check("after the last run")
        rel.summary(("crash: seed %d, %d runs (%d creates, %d revokes): %d killed, %d of them "
            .. "mid-write (temp file left), %d after the change was written but before it was "
            .. "acknowledged, %d finished before the kill; %d recovery writes; %d keys at the "
            .. "end; no acknowledged change lost"):format(SEED, stats.runs, stats.creates,
            stats.revokes, stats.killed, stats.midwrite, stats.unacked, stats.finished,
            stats.recoveries, #sorted_keys(present)))
    end)
end)
