-- The key derivation budget of one load: every derivation a keystore file asks for (its MAC,
-- classic PKCS#12 or PBMAC1, and each encrypted content) is counted before any runs, against
-- 10 million iterations for the MAC and 20 million in all.
--
-- The files refused here carry a MAC that does not verify and ciphertext that decrypts to
-- nothing (spec/fixtures/kdf_budget/make.py writes them): a load that checked the MAC first
-- would answer "badpassword", so "corrupt" with the budget's message shows that it stopped
-- before any key derivation. The time of each refusal is bounded too: the CPU time of the
-- load, under one second, where running what the file asks for takes from seconds to minutes.
local apikey = require "apikey"
local h = require "spec.helpers"

local FIXTURES = (debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "./") .. "fixtures/kdf_budget/"

local ITER_MAX, BUDGET = 10000000, 20000000

-- The key and alias of pbmac1-fits.p12 (make.py).
local PBMAC1_KEY, PBMAC1_ALIAS = "0b7f3c2e-5d41-4a8e-9c3b-7e2f1a6d4c80", "pbmac1-key"

-- A copy of a fixture, mode 600, in a folder removed when the test ends.
local function copy(finally, name)
    local path = h.tmpdir(finally) .. "/" .. name
    local data = assert(h.read_file(FIXTURES .. name), "missing fixture " .. name)
    h.write_file(path, data)
    assert(os.execute("chmod 600 " .. h.quote(path)))
    return path
end

-- Opens path with the empty password; returns the handle or nil, the message and code, and the
-- CPU seconds the open took.
local function load(path)
    local t0 = os.clock()
    local ks, msg, code = apikey.open { path = path }
    return ks, msg, code, os.clock() - t0
end

-- Asserts that the fixture is refused with code, one line naming the file and saying each of
-- the plain texts in says, in well under a second.
local function refused(finally, name, code, says)
    local path = copy(finally, name)
    local ks, msg, got, secs = load(path)
    assert.is_nil(ks)
    assert.equal(code, got, msg)
    assert.is_nil(msg:find("\n"), msg)
    assert.truthy(msg:find(path, 1, true), "the message does not name the file: " .. msg)
    for _, s in ipairs(says) do
        assert.truthy(msg:find(s, 1, true), ("the message does not say %q: %s"):format(s, msg))
    end
    assert.is_true(secs < 1, ("the refusal took %.2f s of CPU"):format(secs))
    return msg
end

-- "3.0.19" -> true when before 3.4 (the OpenSSL versions without PBMAC1).
local function before_3_4(version)
    local major, minor = version:match("^(%d+)%.(%d+)")
    assert(major, "no version in " .. version)
    return tonumber(major) < 3 or (tonumber(major) == 3 and tonumber(minor) < 4)
end

-- The refusal of a PBMAC1 MAC by an OpenSSL that cannot check one; returns whether msg is it
-- (and then asserts its version is before 3.4).
local function cannot_check_pbmac1(msg)
    local version = msg and msg:match("a PBMAC1 MAC %(RFC 9579%), which this OpenSSL %(([^)]*)%) "
        .. "cannot check; OpenSSL 3%.4 or later can")
    if version then
        assert.is_true(before_3_4(version), "OpenSSL " .. version .. " says it cannot check PBMAC1")
    end
    return version ~= nil
end

describe("the key derivation budget of one load", function()
    describe("is refused before any derivation runs", function()
        it("a classic PKCS#12 MAC over the limit (mac-over-limit.p12: 2^31 - 1 iterations)",
            function()
                refused(finally, "mac-over-limit.p12", "corrupt",
                    { "its integrity check (MAC) asks for 2147483647 iterations, outside 1 to "
                        .. ITER_MAX })
            end)

        it("a PBMAC1 MAC whose PBKDF2 asks for too much, MacData saying 1 (pbmac1-over-limit.p12)",
            function()
                refused(finally, "pbmac1-over-limit.p12", "corrupt",
                    { "its integrity check (a PBMAC1 MAC) asks for 2147483647 PBKDF2 iterations, "
                        .. "outside 1 to " .. ITER_MAX })
            end)

        it("PBES2 contents whose sum with the MAC goes over: apikey's file at its most, its "
            .. "encrypted content twice (contents-over-budget.p12)", function()
                refused(finally, "contents-over-budget.p12", "corrupt",
                    { "it asks for 30000000 key derivation iterations in all (10000000 for its "
                        .. "integrity check, 20000000 for 2 encrypted contents), more than the "
                        .. BUDGET .. " one load may run" })
            end)

        it("a PBMAC1 MAC and a content, each within its limit, over together "
            .. "(pbmac1-contents-over-budget.p12)", function()
                refused(finally, "pbmac1-contents-over-budget.p12", "corrupt",
                    { "it asks for 20000001 key derivation iterations in all (10000000 for its "
                        .. "integrity check, 10000001 for 1 encrypted content), more than the "
                        .. BUDGET })
            end)

        it("one iteration over the budget (over-budget-by-one.p12)", function()
            refused(finally, "over-budget-by-one.p12", "corrupt",
                { "it asks for 20000001 key derivation iterations in all (1 for its integrity "
                    .. "check, 20000000 for 1 encrypted content)" })
        end)

        it("through the command: one line naming the file, exit 1, the file unchanged",
            function()
                local path = copy(finally, "contents-over-budget.p12")
                local before = h.read_file(path)
                local out, err, code = h.run({ "list", "--keystore", path })
                assert.equal(1, code, err)
                assert.equal("", out)
                assert.equal(1, #h.lines(err), err)
                assert.truthy(err:find(path, 1, true), err)
                assert.truthy(err:find("30000000 key derivation iterations in all", 1, true), err)
                assert.equal(before, h.read_file(path))
            end)
    end)

    describe("lets through what fits", function()
        it("exactly the budget (at-budget.p12): counted, then its MAC is checked and fails",
            function()
                refused(finally, "at-budget.p12", "badpassword", { "wrong password" })
            end)

        it("a PBMAC1 MAC at the budget (pbmac1-at-budget.p12): counted, then checked where "
            .. "OpenSSL can", function()
                local path = copy(finally, "pbmac1-at-budget.p12")
                local ks, msg, code, secs = load(path)
                assert.is_nil(ks)
                assert.is_true(secs < 1)
                if not cannot_check_pbmac1(msg) then
                    assert.equal("badpassword", code, msg)
                else
                    assert.equal("corrupt", code, msg)
                end
            end)

        it("a PBMAC1 keystore that verifies (pbmac1-fits.p12): loaded by OpenSSL 3.4 or later, "
            .. "refused by name before", function()
                local path = copy(finally, "pbmac1-fits.p12")
                local ks, msg, code = load(path)
                if ks then
                    local entry = ks:verify(PBMAC1_KEY)
                    assert.equal(PBMAC1_ALIAS, entry and entry.alias)
                    ks:close()
                else
                    assert.equal("corrupt", code, msg)
                    assert.is_true(cannot_check_pbmac1(msg), msg)
                end
            end)

        it("a keystore apikey writes, with and without a password", function()
            for _, password in ipairs({ "", "a password" }) do
                local path = h.tmpdir(finally) .. "/keys.p12"
                local ks = assert(apikey.open { path = path, password = password, iterations = 1000 })
                local key = assert(ks:create("fits"))
                ks:close()
                local again = assert(apikey.open { path = path, password = password })
                assert.equal("fits", again:verify(key).alias)
                again:close()
            end
        end)

        it("a keystore apikey writes at the most it allows: MAC and content at 10 million "
            .. "iterations each, the whole budget", function()
                local path = h.tmpdir(finally) .. "/keys.p12"
                local ks = assert(apikey.open { path = path, iterations = ITER_MAX })
                local key = assert(ks:create("most"))
                ks:close()
                local again, msg = apikey.open { path = path }
                assert(again, msg)
                assert.equal("most", again:verify(key).alias)
                again:close()
            end)
    end)
end)
