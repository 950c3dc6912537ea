-- The verifier for long-running processes: checks keys, follows the keystore file, keeps the
-- last good keys when a reload fails, and allocates nothing per check.
local h = require "spec.helpers"
local core = require "apikey.core"
local verifier = require "apikey.verifier"
local apikey = require "apikey"

local sh, sleep, read, write = h.output, h.sleep, h.read_file, h.write_file

-- Replaces path the way a careful tool does: a new file renamed over it.
local function replace(path, data)
    write(path .. ".new", data)
    assert(os.rename(path .. ".new", path))
end

local UNKNOWN_KEY = "0b6e6d2a-3f8e-4c55-9d7e-3b2f9b1c8a10"

describe("apikey.verifier", function()
    local dir, path, writer

    before_each(function()
        dir = sh("mktemp -d \"${TMPDIR:-/tmp}/apikey-verifier-XXXXXX\"")
        path = dir .. "/keys.p12"
        writer = assert(apikey.open { path = path })
    end)

    after_each(function()
        writer:close()
        sh("rm -rf '" .. dir .. "'")
    end)

    local function create(alias, expires)
        local key = assert(core.create(writer, alias, os.time(), expires))
        return key
    end

    describe("new", function()
        it("opens a missing keystore as an empty one, where every key is unknown", function()
            local v = assert(verifier.new { path = path })
            assert.same({ nil, "unknown" }, { v:verify(UNKNOWN_KEY) })
            assert.equal(0, v:status().keys)
        end)

        it("loads the keys that are in the file", function()
            local key = create("ci-bot")
            local v = assert(verifier.new { path = path })
            assert.equal("ci-bot", v:verify(key).alias)
            assert.equal(1, v:status().keys)
        end)

        it("is what apikey.verifier gives", function()
            assert.equal(verifier.new, require("apikey").verifier)
        end)

        it("returns nil, a message and 'corrupt' for a file that is not a keystore", function()
            write(path, "not a keystore")
            local v, msg, code = verifier.new { path = path }
            assert.is_nil(v)
            assert.equal("corrupt", code)
            assert.truthy(msg:find(path, 1, true), msg)
        end)

        it("returns nil, a message and 'badpassword' for a wrong password", function()
            local other = dir .. "/locked.p12"
            local w = assert(apikey.open { path = other, password = "right password" })
            assert(w:create("ci-bot"))
            w:close()
            local v, _, code = verifier.new { path = other, password = "wrong password" }
            assert.is_nil(v)
            assert.equal("badpassword", code)
            v = assert(verifier.new { path = other, password = "right password" })
            assert.equal(1, v:status().keys)
        end)

        it("raises on misuse", function()
            assert.has_error(function() verifier.new() end)
            assert.has_error(function() verifier.new { path = "" } end)
            assert.has_error(function() verifier.new { path = path, password = 42 } end)
            assert.has_error(function() verifier.new { path = path, interval = -1 } end)
            assert.has_error(function() verifier.new { path = path, interval = "1" } end)
            assert.has_error(function() verifier.new { path = path, interval = 0 / 0 } end)
            assert.has_error(function() verifier.new { path = path, log = "stderr" } end)
        end)
    end)

    describe("verify", function()
        it("returns the entry of a valid key: alias, hint, created, expires", function()
            local before = os.time()
            local key = create("ci-bot", before + 3600)
            local v = assert(verifier.new { path = path })
            local e = v:verify(key)
            assert.equal("ci-bot", e.alias)
            assert.equal(key:sub(-4), e.hint)
            assert.is_true(e.created >= before and e.created <= os.time())
            assert.equal(before + 3600, e.expires)
        end)

        it("returns nil and 'unknown' for a key that is not in the keystore", function()
            create("ci-bot")
            local v = assert(verifier.new { path = path })
            assert.same({ nil, "unknown" }, { v:verify(UNKNOWN_KEY) })
        end)

        it("returns nil and 'malformed' for text that is not a key", function()
            local v = assert(verifier.new { path = path })
            for _, text in ipairs { "", "secret", UNKNOWN_KEY .. "0", UNKNOWN_KEY:sub(2) } do
                assert.same({ nil, "malformed" }, { v:verify(text) })
            end
        end)

        it("returns nil and 'expired' for a key past its date", function()
            local key = create("old-bot", os.time() - 10)
            local v = assert(verifier.new { path = path })
            assert.same({ nil, "expired" }, { v:verify(key) })
        end)

        it("gives the same entry table to every call", function()
            local key = create("ci-bot")
            local v = assert(verifier.new { path = path })
            assert.equal(v:verify(key), v:verify(key))
        end)

        it("raises when the key is not a string", function()
            local v = assert(verifier.new { path = path })
            assert.has_error(function() v:verify(nil) end)
            assert.has_error(function() v:verify({}) end)
        end)
    end)

    describe("authenticate", function()
        local key, v

        before_each(function()
            key = create("ci-bot")
            v = assert(verifier.new { path = path })
        end)

        it("accepts 'Bearer <key>', the scheme in any case, blanks around and between", function()
            for _, header in ipairs {
                "Bearer " .. key,
                "bearer " .. key,
                "BEARER " .. key,
                "Bearer     " .. key,
                "  Bearer " .. key .. "  ",
                "\tBearer\t" .. key .. "\t",
            } do
                local e, why = v:authenticate(header)
                assert.equal("ci-bot", e and e.alias, ("%q: %s"):format(header, why))
            end
        end)

        it("returns nil and 'missing' when there is no Bearer credential", function()
            for _, header in ipairs {
                "",
                "   ",
                "Bearer",
                "Bearer   ",
                "Bearer" .. key,
                "Basic dXNlcjpwYXNzd29yZA==",
                "Token " .. key,
                "Bearex " .. key, -- one letter off, in each place and case
                "bEARES " .. key,
                "Xearer " .. key,
                "Be@rer " .. key,
                "Bearer\0" .. key,
                key,
                "Bearer " .. key .. " extra",
                "Bearer\n" .. key,
            } do
                assert.same({ nil, "missing" }, { v:authenticate(header) }, ("%q"):format(header))
            end
            assert.same({ nil, "missing" }, { v:authenticate(nil) })
        end)

        it("returns the verdict of verify for a Bearer token that is not a valid key", function()
            assert.same({ nil, "unknown" }, { v:authenticate("Bearer " .. UNKNOWN_KEY) })
            assert.same({ nil, "malformed" }, { v:authenticate("Bearer secret") })
        end)

        it("takes time linear in the header's length", function()
            local header = "Bearer" .. (" "):rep(200000) .. "a b" .. (" "):rep(200000) .. "c"
            local t0 = os.clock()
            assert.same({ nil, "missing" }, { v:authenticate(header) })
            -- linear: about a millisecond; quadratic would take minutes
            assert.is_true(os.clock() - t0 < 1)
        end)

        it("raises when the header is neither nil nor a string", function()
            assert.has_error(function() v:authenticate(42) end)
        end)
    end)

    describe("following the file", function()
        it("does not look at the file again before the interval has passed", function()
            local v = assert(verifier.new { path = path, interval = 3600 })
            local key = create("ci-bot")
            assert.same({ nil, "unknown" }, { v:verify(key) })
            assert.is_true(v:refresh())
            assert.equal("ci-bot", v:verify(key).alias)
            assert.is_false(v:refresh())
        end)

        it("sees a created key and a revoked key once the interval has passed", function()
            local old = create("old-bot")
            local v = assert(verifier.new { path = path, interval = 0.2 })
            local new = create("new-bot")
            assert(writer:revoke("old-bot"))
            sleep(0.3)
            assert.equal("new-bot", v:verify(new).alias)
            assert.same({ nil, "unknown" }, { v:verify(old) })
            assert.equal(1, v:status().reloads)
        end)

        it("with interval 0, sees every change at the next call", function()
            local v = assert(verifier.new { path = path, interval = 0 })
            local key = create("ci-bot")
            assert.equal("ci-bot", v:authenticate("Bearer " .. key).alias)
            assert(writer:revoke("ci-bot"))
            assert.same({ nil, "unknown" }, { v:authenticate("Bearer " .. key) })
        end)

        it("lets an alias be reused with a new key after a revoke", function()
            local first = create("ci-bot")
            local v = assert(verifier.new { path = path, interval = 0 })
            assert(writer:revoke("ci-bot"))
            local second = create("ci-bot")
            assert.same({ nil, "unknown" }, { v:verify(first) })
            assert.equal("ci-bot", v:verify(second).alias)
        end)

        it("treats a deleted keystore as empty: every key is unknown, and no error", function()
            local key = create("ci-bot")
            local v = assert(verifier.new { path = path, interval = 0 })
            assert.truthy(v:verify(key))
            assert(os.remove(path))
            assert.same({ nil, "unknown" }, { v:verify(key) })
            assert.is_nil(v.last_error)
        end)

        it("picks up a keystore that appears after it opened", function()
            local other = dir .. "/later.p12"
            local v = assert(verifier.new { path = other, interval = 0 })
            local w = assert(apikey.open { path = other })
            local key = assert(w:create("ci-bot"))
            w:close()
            assert.equal("ci-bot", v:verify(key).alias)
        end)

        it("keeps the last good keys when a reload fails, reports why, and recovers", function()
            local key = create("ci-bot")
            local good = read(path)
            local lines = {}
            local v = assert(verifier.new {
                path = path,
                interval = 0,
                log = function(line) lines[#lines + 1] = line end,
            })
            -- a half-copied file, written in place
            write(path, good:sub(1, math.floor(#good / 2)))
            assert.equal("ci-bot", v:verify(key).alias)
            assert.equal("corrupt", v.last_error_code)
            assert.truthy(v.last_error:find(path, 1, true), v.last_error)
            local s = v:status()
            assert.equal("corrupt", s.error_code)
            assert.equal(v.last_error, s.error)
            assert.equal(1, s.keys)
            assert.is_number(s.failed_at)
            local changed, _, code = v:refresh()
            assert.is_nil(changed)
            assert.equal("corrupt", code)

            -- garbage, then a good file with one more key, each renamed over it
            replace(path, ("\0"):rep(4096))
            assert.equal("ci-bot", v:verify(key).alias)
            write(dir .. "/next.p12", good)
            assert(os.execute("chmod 600 '" .. dir .. "/next.p12'"))
            local w = assert(apikey.open { path = dir .. "/next.p12" })
            local new = assert(w:create("new-bot"))
            w:close()
            assert(os.rename(dir .. "/next.p12", path))
            assert.equal("new-bot", v:verify(new).alias)
            assert.equal("ci-bot", v:verify(key).alias)
            assert.is_nil(v.last_error)
            assert.is_nil(v.last_error_code)
            assert.is_nil(v:status().error)

            -- a line when it failed (again when the reason changed), one when it recovered
            assert.truthy(lines[1]:find("cannot reload " .. path, 1, true), lines[1])
            local last = lines[#lines]
            assert.truthy(last:find("loaded " .. path .. ": 2 keys", 1, true), last)
            for _, line in ipairs(lines) do
                assert.falsy(line:find(key, 1, true))
            end
        end)

        it("keeps the last good keys when the file becomes unreadable", function()
            local key = create("ci-bot")
            local v = assert(verifier.new { path = path, interval = 0 })
            assert(os.remove(path))
            assert(os.execute("mkdir '" .. path .. "'"))
            assert.equal("ci-bot", v:verify(key).alias)
            assert.equal("io", v.last_error_code)
        end)
    end)

    describe("background = true", function()
        -- Calls f until it returns true, for at most 5 s.
        local function eventually(f)
            local start = os.time()
            while not f() do
                assert(os.time() - start < 5, "not within 5 s")
                sleep(0.01)
            end
        end

        it("checks with the keys in use while a changed file is read, then takes the new ones in", function()
            local old = create("old-bot")
            local v = assert(verifier.new { path = path, interval = 0, background = true })
            local new = create("new-bot")
            assert(writer:revoke("old-bot"))
            -- the check that sees the change starts the read and answers with the keys in use
            assert.equal("old-bot", v:verify(old).alias)
            eventually(function() return v:verify(new) ~= nil end)
            assert.same({ nil, "unknown" }, { v:verify(old) })
            assert.equal(1, v:status().reloads)
            assert.equal(1, v:status().keys)
        end)

        it("makes no check wait for a slow read (a password's 600,000 key derivations)", function()
            local slow = dir .. "/slow.p12"
            local ks = assert(apikey.open { path = slow, password = "pw" })
            local old = assert(ks:create("old-bot"))
            local v = assert(verifier.new { path = slow, password = "pw", interval = 0, background = true })
            local new = assert(ks:create("new-bot"))
            ks:close()
            local start, longest = core.clock(), 0
            repeat
                local t = core.clock()
                assert.equal("old-bot", v:verify(old).alias)
                local entry = v:verify(new)
                longest = math.max(longest, core.clock() - t)
            until entry
            local took = core.clock() - start
            assert.is_true(took > 0.1, ("the read took only %.3f s"):format(took))
            assert.is_true(longest < took / 4, ("a check took %.3f s of the read's %.3f s")
                :format(longest, took))
        end)

        it("keeps the keys and reports why when the changed file cannot be read", function()
            local key = create("ci-bot")
            local v = assert(verifier.new { path = path, interval = 0, background = true })
            write(path, "not a keystore")
            eventually(function()
                assert.equal("ci-bot", v:verify(key).alias)
                return v.last_error_code == "corrupt"
            end)
            assert.equal("stale", v:status().state)
        end)

        it("closes while a read is under way", function()
            create("ci-bot")
            local v = assert(verifier.new { path = path, interval = 0, background = true })
            create("new-bot")
            v:verify(UNKNOWN_KEY)
            v:close()
            assert.has_error(function() v:verify(UNKNOWN_KEY) end)
        end)
    end)

    describe("status", function()
        it("tells the path, the number of keys, when they were loaded, and no error", function()
            create("a")
            create("b")
            local before = os.time()
            local v = assert(verifier.new { path = path, interval = 7 })
            local s = v:status()
            assert.equal(path, s.path)
            assert.equal(2, s.keys)
            assert.equal(0, s.reloads)
            assert.is_true(s.loaded_at >= before and s.loaded_at <= os.time())
            assert.is_nil(s.error)
            assert.equal(7, v.interval)
        end)
    end)

    describe("memory", function()
        it("stays flat over 200,000 checks, reloads included", function()
            local key = create("ci-bot")
            local expired = create("old-bot", os.time() - 10)
            local header = "Bearer " .. key
            local v = assert(verifier.new { path = path, interval = 0 })
            v:verify(key)
            collectgarbage("collect")
            collectgarbage("collect")
            local before = collectgarbage("count")
            for i = 1, 50000 do
                assert(v:verify(key))
                assert(not v:verify(UNKNOWN_KEY))
                assert(not v:verify(expired))
                assert(v:authenticate(header))
                if i % 10000 == 0 then
                    assert(writer:revoke("old-bot"))
                    expired = create("old-bot", os.time() - 10)
                end
            end
            collectgarbage("collect")
            collectgarbage("collect")
            local growth = collectgarbage("count") - before
            assert.is_true(growth < 64, ("grew by %.1f KiB"):format(growth))
        end)
    end)

    describe("close", function()
        it("releases the keystore; a closed verifier raises; closing twice is safe", function()
            local key = create("ci-bot")
            local v = assert(verifier.new { path = path })
            assert.truthy(v:verify(key))
            v:close()
            assert.has_error(function() v:verify(key) end)
            v:close()
        end)

        -- to-be-closed variables are Lua 5.4's: the chunk is compiled there only
        local it_54 = _VERSION == "Lua 5.4" and it or pending
        it_54("closes at the end of the scope with <close>", function()
            local key = create("ci-bot")
            local v = assert(load([[
                local verifier, path, key = ...
                local v <close> = assert(verifier.new { path = path })
                assert(v:verify(key))
                return v
            ]]))(verifier, path, key)
            assert.has_error(function() v:verify(key) end)
        end)

        it("shows its path", function()
            local v = assert(verifier.new { path = path })
            assert.equal("apikey verifier (" .. path .. ")", tostring(v))
        end)
    end)

    describe("a file that changed and cannot be read", function()
        it("keeps the old keys for max_stale seconds, then refuses every key until it reads again", function()
            local key = create("ci-bot")
            local good = read(path)
            local lines = {}
            local v = assert(verifier.new {
                path = path,
                interval = 0,
                max_stale = 1,
                log = function(line) lines[#lines + 1] = line end,
            })
            replace(path, ("\0"):rep(4096))
            assert.equal("ci-bot", v:verify(key).alias)
            assert.equal("stale", v:status().state)
            assert.truthy(lines[1]:find("for at most 1 s", 1, true), lines[1])
            sleep(2.1)
            assert.same({ nil, "unavailable" }, { v:verify(key) })
            assert.same({ nil, "unavailable" }, { v:authenticate("Bearer " .. key) })
            assert.same({ nil, "unavailable" }, { v:verify(UNKNOWN_KEY) })
            local s = v:status()
            assert.equal("refusing", s.state)
            assert.is_number(s.failing_since)
            assert.truthy(lines[#lines]:find("refusing every key until it reads again", 1, true), lines[#lines])
            replace(path, good)
            assert(os.execute("chmod 600 '" .. path .. "'"))
            assert.equal("ci-bot", v:verify(key).alias)
            assert.equal("ok", v:status().state)
            assert.is_nil(v:status().failing_since)
        end)

        it("with max_stale 0, refuses at once", function()
            local key = create("ci-bot")
            local v = assert(verifier.new { path = path, interval = 0, max_stale = 0 })
            replace(path, "not a keystore")
            assert.same({ nil, "unavailable" }, { v:verify(key) })
        end)

        it("raises on a max_stale that is not a number of seconds", function()
            assert.has_error(function() verifier.new { path = path, max_stale = -1 } end)
            assert.has_error(function() verifier.new { path = path, max_stale = "60" } end)
        end)
    end)

    describe("log", function()
        it("an error in the log function never reaches verify or authenticate", function()
            local key = create("ci-bot")
            local v = assert(verifier.new {
                path = path,
                interval = 0,
                log = function() error("log is broken") end,
            })
            replace(path, "not a keystore")
            local stderr = io.stderr
            local captured = io.tmpfile()
            io.stderr = captured
            local ok, e1 = pcall(v.verify, v, key)
            local ok2, e2 = pcall(v.authenticate, v, "Bearer " .. key)
            io.stderr = stderr
            assert.is_true(ok, tostring(e1))
            assert.is_true(ok2, tostring(e2))
            assert.equal("ci-bot", e1.alias)
            captured:seek("set")
            local said = captured:read("a")
            assert.truthy(said:find("log function failed", 1, true), said)
            assert.is_nil(said:find(key, 1, true))
        end)
    end)

    describe("several Authorization values", function()
        it("are malformed, not missing", function()
            local key = create("ci-bot")
            local v = assert(verifier.new { path = path })
            assert.same({ nil, "malformed" }, { v:authenticate("Bearer " .. key .. ", Bearer " .. UNKNOWN_KEY) })
            assert.same({ nil, "malformed" }, { v:authenticate("Basic dXNlcg==, Bearer " .. key) })
        end)
    end)
end)
