-- Concurrency: many `apikey` processes writing one keystore at once lose nothing, and a
-- reader verifying keys in a loop all the while never fails to load the file and never sees
-- a key that was not created or that was revoked.
local rel = require("spec.helpers").reliability

local WORKERS, PER_WORKER = 8, 25
local TIME_LIMIT = 300 -- seconds for all the writers of one phase

describe("concurrent apikey commands on one keystore", function()
    local dir, ks, outputs, stopfile, result, pidfile
    local keys = {} -- every key a create printed, alias -> key
    local phase_seconds = {}

    setup(function()
        dir = rel.tmpdir()
        ks = dir .. "/shared.p12"
        outputs = dir .. "/out"
        stopfile, result, pidfile = dir .. "/stop", dir .. "/reader.result", dir .. "/reader.pid"
        assert(rel.sh("mkdir " .. rel.quote(outputs)) == 0)
        local reader = ("%s %s %s %s %s %s"):format(rel.quote(rel.lua),
            rel.quote(rel.root .. "/spec/support/verify_loop.lua"), rel.quote(ks),
            rel.quote(outputs), rel.quote(stopfile), rel.quote(result))
        assert(rel.sh(("timeout -s KILL %d %s >%s 2>&1 & echo $! >%s"):format(TIME_LIMIT * 4,
            reader, rel.quote(dir .. "/reader.log"), rel.quote(pidfile))) == 0)
    end)

    -- Tells the reader to stop (the stop file) and waits up to tries times 50 ms for its
    -- result; returns the result, or nil if it has not come.
    local function stop_reader(tries)
        rel.write(stopfile, "")
        for _ = 1, tries do
            if rel.read(result) then
                break
            end
            rel.sleep(0.05)
        end
        return rel.read(result)
    end

    teardown(function()
        -- The reader stops at the stop file; if it is still there, end it by its id.
        local done = stop_reader(100)
        local pid = (rel.read(pidfile) or ""):match("%d+")
        if pid and not done then
            os.execute("kill " .. pid .. " 2>/dev/null")
        end
        rel.remove(dir)
        rel.cleanup()
    end)

    -- Runs the jobs ({ { name, command, { alias ... } } ...}) at once, each running its
    -- command for its aliases one after another, and waits for all. For each command the
    -- alias goes to OUTPUTS/NAME.started first; its stdout to NAME.out, its stderr to NAME.err,
    -- and "status alias" to NAME.rc.
    local function run_jobs(jobs)
        local lines = { "apikey() { " .. rel.command({}) .. ' "$@" --keystore ' .. rel.quote(ks)
            .. "; }" }
        for _, job in ipairs(jobs) do
            local name, command, aliases = job[1], job[2], job[3]
            local base = outputs .. "/" .. name
            local quoted = {}
            for i, a in ipairs(aliases) do
                quoted[i] = rel.quote(a)
            end
            lines[#lines + 1] = ("(for a in %s; do echo \"$a\" >>%s; apikey %s \"$a\" </dev/null "
                .. ">>%s 2>>%s; echo \"$? $a\" >>%s; done) &"):format(table.concat(quoted, " "),
                rel.quote(base .. ".started"), command, rel.quote(base .. ".out"),
                rel.quote(base .. ".err"), rel.quote(base .. ".rc"))
        end
        lines[#lines + 1] = "wait"
        local script = dir .. "/jobs.sh"
        rel.write(script, table.concat(lines, "\n") .. "\n")
        local t0 = rel.clock()
        local code = rel.sh(("timeout -s KILL %d sh %s"):format(TIME_LIMIT, rel.quote(script)))
        phase_seconds[#phase_seconds + 1] = rel.clock() - t0
        assert.equal(0, code, "the writers did not all end within the time limit")
        for _, job in ipairs(jobs) do
            local base = outputs .. "/" .. job[1]
            local statuses = rel.read(base .. ".rc") or ""
            local n = 0
            for status, alias in statuses:gmatch("(%d+) ([^\n]+)\n") do
                n = n + 1
                assert(status == "0", ("%s %s exited %s: %s"):format(job[2], alias, status,
                    rel.read(base .. ".err") or ""))
            end
            assert.equal(#job[3], n, job[1] .. ": not every command ran")
            assert.equal("", rel.read(base .. ".err") or "")
        end
    end

    local function aliases_of(w, from, to)
        local out = {}
        for k = from, to do
            out[#out + 1] = ("w%d-k%d"):format(w, k)
        end
        return out
    end

    -- Reads the keys the creates of job name printed (asserting one per alias).
    local function collect(name, aliases)
        local out = rel.read(outputs .. "/" .. name .. ".out") or ""
        local n = 0
        for alias, key in out:gmatch("API key created for alias '([^'\n]*)': (" .. rel.UUID
            .. ") %(No expiration%)\n") do
            assert.is_nil(keys[alias], "printed twice: " .. alias)
            keys[alias] = rel.secret(key)
            n = n + 1
        end
        assert.equal(#aliases, n, name .. ": not every create printed its key")
    end

    -- The keystore holds exactly the aliases of expected; every key there verifies, every
    -- other printed key is unknown; no temp file is left.
    local function holds_exactly(expected)
        local r = rel.run({ "list", "--keystore", ks })
        assert.equal(0, r.code, rel.show(r))
        local listed, want = {}, {}
        for _, row in ipairs(rel.parse_list(r.out)) do
            assert.is_nil(listed[row.alias], "listed twice: " .. row.alias)
            listed[row.alias] = row.hint
        end
        local n = 0
        for _, alias in ipairs(expected) do
            want[alias] = true
            n = n + 1
            assert.is_truthy(listed[alias], "lost: " .. alias)
            assert.equal(keys[alias]:sub(-4), listed[alias], "wrong hint: " .. alias)
        end
        for alias in pairs(listed) do
            assert.is_truthy(want[alias], "should not be there: " .. alias)
        end
        local api = rel.open(ks)
        assert.equal(n, api:count())
        for alias, key in pairs(keys) do
            local e, why = api:verify(key)
            if want[alias] then
                assert.is_truthy(e, alias .. " does not verify: " .. tostring(why))
                assert.equal(alias, e.alias)
            else
                assert.same({ nil, "unknown" }, { e, why }, alias .. " still verifies")
            end
        end
        api:close()
        -- The command agrees, for a few of them.
        for i = 1, #expected, math.max(1, #expected // 8) do
            local v = rel.run({ "verify", "--keystore", ks }, { stdin = keys[expected[i]] .. "\n" })
            assert.equal(expected[i] .. "\n", v.out, rel.show(v))
        end
        assert.same({}, rel.temps(ks))
        return n
    end

    it(("%d processes creating %d keys each end with exactly %d keys, all of which verify")
        :format(WORKERS, PER_WORKER, WORKERS * PER_WORKER), function()
        local jobs, expected = {}, {}
        for w = 1, WORKERS do
            local aliases = aliases_of(w, 1, PER_WORKER)
            jobs[w] = { "c-" .. w, "create", aliases }
            table.move(aliases, 1, #aliases, #expected + 1, expected)
        end
        run_jobs(jobs)
        for _, job in ipairs(jobs) do
            collect(job[1], job[3])
        end
        assert.equal(WORKERS * PER_WORKER, holds_exactly(expected))
    end)

    it("8 processes revoking disjoint sets lose nothing and leave exactly the others", function()
        local jobs, expected = {}, {}
        for w = 1, WORKERS do
            jobs[w] = { "r-" .. w, "revoke", aliases_of(w, 1, 10) }
            table.move(aliases_of(w, 11, PER_WORKER), 1, PER_WORKER - 10, #expected + 1, expected)
        end
        run_jobs(jobs)
        for _, job in ipairs(jobs) do
            local out = rel.read(outputs .. "/" .. job[1] .. ".out")
            local want = {}
            for i, alias in ipairs(job[3]) do
                want[i] = ("API key '%s' has been revoked.\n"):format(alias)
            end
            assert.equal(table.concat(want), out)
        end
        assert.equal(WORKERS * (PER_WORKER - 10), holds_exactly(expected))
    end)

    it("processes creating and revoking at once lose nothing", function()
        local jobs, expected = {}, {}
        for w = 1, 4 do
            -- New creators w9..w12; revokers take the rest of w5..w8.
            local created = aliases_of(w + 8, 1, 15)
            jobs[#jobs + 1] = { "c-" .. (w + 8), "create", created }
            jobs[#jobs + 1] = { "r-" .. (w + 12), "revoke", aliases_of(w + 4, 11, PER_WORKER) }
            table.move(aliases_of(w, 11, PER_WORKER), 1, PER_WORKER - 10, #expected + 1, expected)
            table.move(created, 1, #created, #expected + 1, expected)
        end
        run_jobs(jobs)
        for w = 9, 12 do
            collect("c-" .. w, aliases_of(w, 1, 15))
        end
        assert.equal(120, holds_exactly(expected))
    end)

    it("a reader verifying in a loop all the while never failed to load the file and never "
        .. "saw a key that was not created or was revoked", function()
        local text = stop_reader(600)
        assert.is_truthy(text, "the reader did not finish: "
            .. (rel.read(dir .. "/reader.log") or ""))
        local stats = text:match("^[^\n]*")
        local failures = tonumber(stats:match("failures=(%d+)"))
        assert.equal(0, failures, text)
        local rounds = tonumber(stats:match("rounds=(%d+)"))
        local reloads = tonumber(stats:match("reloads=(%d+)"))
        -- It ran alongside the writers: it saw the file change many times.
        assert.is_true(reloads >= 10, "the reader saw too few changes: " .. stats)
        local t = {}
        for i, s in ipairs(phase_seconds) do
            t[i] = ("%.1f"):format(s)
        end
        rel.summary(("concurrency: 8 creators x 25 keys = 200 keys, then 8 revokers x 10 and "
            .. "4 creators x 15 with 4 revokers x 15 at once; nothing lost (phases took %s s); "
            .. "the reader did %d rounds, %d reloads, %s verifies, 0 failures"):format(
            table.concat(t, ", "), rounds, reloads, stats:match("verifies=(%d+)")))
    end)
end)
