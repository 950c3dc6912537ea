-- Hostile input: every bad alias, date, key, keystore path and password gets one clear line
-- on stderr and a non-zero exit, and leaves the keystore byte-for-byte as it was.
local rel = require("spec.helpers").reliability

local SEED = tonumber(os.getenv("APIKEY_HOSTILE_SEED")) or 20240229

local tried = 0 -- hostile inputs tried, for the summary line
local flips_refused, flips_harmless = 0, 0

-- Runs args (a list) with `--keystore path` and then the words of more (a list, if any)
-- after them, and opts as rel.run takes them, as one more input tried.
local function try(args, path, opts, more)
    tried = tried + 1
    local full = { table.unpack(args) }
    full[#full + 1] = "--keystore"
    full[#full + 1] = path
    for _, w in ipairs(more or {}) do
        full[#full + 1] = w
    end
    return rel.run(full, opts)
end

teardown(function()
    rel.cleanup()
    rel.summary(("hostile: %d inputs tried, each refused with one clear line and the "
        .. "keystore unchanged, or accepted as documented; bit flips: %d refused, %d in bytes "
        .. "that do not matter (the file still loads with the same keys); seed %d "
        .. "(APIKEY_HOSTILE_SEED)"):format(tried, flips_refused, flips_harmless, SEED))
end)

describe("hostile input", function()
    local dir, ks, keys, before

    -- A fresh folder and keystore with two keys for each test.
    before_each(function()
        dir, ks, keys, before = rel.keystore_dir(2)
    end)

    after_each(function()
        rel.remove(dir)
    end)

    local function unchanged(path)
        assert.is_true(rel.read(path or ks) == before, "the keystore changed")
    end

    -- Runs `create ALIAS` and expects a refusal that leaves the keystore alone.
    local function refuses_alias(alias, says, extra)
        tried = tried + 1
        local args = { "create", alias, "--keystore", ks }
        for _, a in ipairs(extra or {}) do
            args[#args + 1] = a
        end
        local r = rel.run(args)
        rel.assert_refused(r)
        if says then
            assert.is_truthy(r.err:find(says, 1, true), "error does not say " .. says .. ": "
                .. rel.show(r))
        end
        unchanged()
        return r
    end

    describe("apikey create ALIAS", function()
        it("refuses an empty alias", function()
            refuses_alias("", "empty")
        end)

        it("refuses an alias of 10,000 characters, without echoing it", function()
            local r = refuses_alias(("a"):rep(10000), "128")
            assert.is_falsy(r.err:find(("a"):rep(200), 1, true))
        end)

        it("refuses an alias of 129 bytes and takes one of 128", function()
            refuses_alias(("b"):rep(129))
            local r = rel.run({ "create", ("b"):rep(128), "--keystore", ks })
            rel.assert_created(r, ("b"):rep(128))
        end)

        it("refuses control characters (tab, escape, DEL, C1), shown escaped", function()
            for _, alias in ipairs({ "a\tb", "red\27[31m", "del\127", "c1\194\155x", "bell\7" }) do
                refuses_alias(alias, "control character")
            end
        end)

        it("refuses a newline in an alias", function()
            refuses_alias("first\nsecond", "control character")
            refuses_alias("first\r\nsecond")
            refuses_alias("trailing\n")
        end)

        it("refuses invalid UTF-8", function()
            for _, alias in ipairs({ "bad\255", "\192\128", "half\226\130", "\237\160\128" }) do
                refuses_alias(alias, "UTF-8")
            end
        end)

        it("refuses an alias of blanks only, or with leading or trailing blanks", function()
            local blanks = { " ", "   ", "\194\160", " lead", "trail ", "\227\128\128x" }
            for _, alias in ipairs(blanks) do
                refuses_alias(alias)
            end
        end)

        it("refuses bidirectional overrides, which would make a listing lie", function()
            refuses_alias("evil\226\128\174gpj.exe", "control character")
        end)

        it("refuses a case variant of an existing alias", function()
            refuses_alias("KEY-1")
            refuses_alias("Key-2")
            refuses_alias("key-1")
        end)

        it("refuses an alias that looks like an option as a usage error", function()
            local r = refuses_alias("--not-an-alias")
            assert.equal(2, r.code)
        end)

        it("refuses a NUL byte in an alias given to the Lua API", function()
            tried = tried + 1
            local k = rel.open(ks)
            local ok, msg, code = k:create("nul\0byte")
            k:close()
            assert.is_nil(ok)
            assert.equal("invalid", code)
            assert.is_falsy(msg:find("\0", 1, true), "the message holds a NUL byte")
            unchanged()
        end)
    end)

    describe("apikey create --expires-on", function()
        local function refuses_date(date, says)
            return refuses_alias("dated", says, { "--expires-on", date })
        end

        local function accepts_date(date, shown)
            tried = tried + 1
            local r = rel.run({ "create", "dated", "--keystore", ks, "--expires-on", date })
            local _, expiry = rel.assert_created(r, "dated")
            assert.equal("Expires on " .. shown, expiry)
        end

        it("refuses malformed dates", function()
            for _, date in ipairs({ "", "tomorrow", "2030-01-01", "2030-01-01 00:00:00",
                "2030-1-1T00:00:00", "2030-01-01T00:00:00junk",
                "30-01-01T00:00:00", "2030-01-01t00:00:00",
                "+2030-01-01T00:00:00", "2030-01-01T00:00:00+0530", "2030-01-01T00:00:00 Z",
                "２０３０-01-01T00:00:00", "2030-01-01T00:00:00\n" }) do
                refuses_date(date)
            end
        end)

        it("refuses a date or a duration of 5,000 characters with a short error", function()
            refuses_date(("9"):rep(5000))
            refuses_date("2030-01-01T00:00:00" .. ("Z"):rep(5000))
            refuses_alias("dated", nil, { "--expires-in", ("9"):rep(5000) .. "d" })
        end)

        it("refuses February 30 and February 29 of a common year", function()
            refuses_date("2030-02-30T00:00:00")
            refuses_date("2031-02-29T12:00:00")
            refuses_date("2030-04-31T00:00:00")
            refuses_date("2030-13-01T00:00:00")
            refuses_date("2030-00-10T00:00:00")
        end)

        it("refuses 24:00 and other out-of-range times", function()
            refuses_date("2030-01-01T24:00:00")
            refuses_date("2030-01-01T23:60:00")
            refuses_date("2030-01-01T23:59:61")
        end)

        it("refuses a date in the past", function()
            refuses_date("2000-01-01T00:00:00", "past")
            refuses_date("1970-01-01T00:00:00")
            refuses_date("1969-12-31T23:59:59")
        end)

        it("accepts minutes only and a fraction of a second, as Java's LocalDateTime.parse", function()
            accepts_date("2030-01-01T00:00", "2030-01-01T00:00:00")
            assert.equal(0, rel.run({ "revoke", "dated", "--keystore", ks }).code)
            accepts_date("2030-01-01T00:00:00.5", "2030-01-01T00:00:00")
        end)

        it("accepts February 29 of a leap year", function()
            accepts_date("2032-02-29T12:00:00", "2032-02-29T12:00:00")
        end)

        it("accepts the year 9999, a valid future date", function()
            accepts_date("9999-06-01T00:00:00", "9999-06-01T00:00:00")
        end)

        it("refuses the year 10000", function()
            refuses_date("10000-01-01T00:00:00")
        end)

        it("accepts offsets such as +05:30, -08:00 and Z, shown in local time", function()
            accepts_date("2030-06-01T12:00:00+05:30", "2030-06-01T06:30:00")
            assert.equal(0, rel.run({ "revoke", "dated", "--keystore", ks }).code)
            accepts_date("2030-06-01T12:00:00-08:00", "2030-06-01T20:00:00")
            assert.equal(0, rel.run({ "revoke", "dated", "--keystore", ks }).code)
            accepts_date("2030-06-01T12:00:00Z", "2030-06-01T12:00:00")
        end)

        it("refuses an offset of +25:00 and other impossible offsets", function()
            refuses_date("2030-06-01T12:00:00+25:00")
            refuses_date("2030-06-01T12:00:00+05:60")
            refuses_date("2030-06-01T12:00:00+5:30")
            refuses_date("2030-06-01T12:00:00+05")
        end)

        it("refuses malformed durations", function()
            for _, d in ipairs({ "", "0d", "-1d", "1y", "d", "1.5d", "99999999999999d", "1 d" }) do
                refuses_alias("dated", nil, { "--expires-in", d })
            end
        end)
    end)

    describe("apikey verify KEY", function()
        -- Expects verify to refuse the key with one word on stderr.
        local function refuses_key(key, via_stdin, words)
            tried = tried + 1
            local r
            if via_stdin then
                r = rel.run({ "verify", "--keystore", ks }, { stdin = key })
            else
                r = rel.run({ "verify", key, "--keystore", ks })
            end
            assert.equal(1, r.code, rel.show(r))
            assert.equal("", r.out, rel.show(r))
            local word = r.err:match("^(%a+)\n$")
            assert.is_truthy(word, "not one word on stderr: " .. rel.show(r))
            assert.is_truthy(words[word], "unexpected verdict: " .. rel.show(r))
            unchanged()
            return r
        end

        local MALFORMED = { malformed = true }
        local REFUSED = { malformed = true, unknown = true }

        it("refuses an empty key, from the argument and from stdin", function()
            refuses_key("", false, MALFORMED)
            refuses_key("", true, MALFORMED)
            refuses_key("\n", true, MALFORMED)
        end)

        it("refuses a key of 1 MB quickly", function()
            local r = refuses_key(("a"):rep(1024 * 1024), true, MALFORMED)
            assert.is_true(r.seconds < 10, "took " .. r.seconds .. " s")
            refuses_key(keys["key-1"] .. ("0"):rep(1024 * 1024 - 36), true, MALFORMED)
        end)

        it("refuses a key with NUL bytes", function()
            local key = keys["key-1"]
            refuses_key(key .. "\0", true, MALFORMED)
            refuses_key("\0" .. key, true, MALFORMED)
            refuses_key(key:sub(1, 10) .. "\0" .. key:sub(12), true, MALFORMED)
            refuses_key(("\0"):rep(36), true, MALFORMED)
        end)

        it("refuses non-hex keys of the right shape", function()
            refuses_key("zzzzzzzz-zzzz-4zzz-8zzz-zzzzzzzzzzzz", false, REFUSED)
            refuses_key("00000000-0000-0000-0000-00000000000g", false, REFUSED)
            refuses_key(keys["key-1"]:gsub("%-", "_"), false, REFUSED)
            refuses_key("é" .. keys["key-1"]:sub(3), false, REFUSED)
        end)

        it("refuses a key one character off, or without its dashes", function()
            local key = keys["key-1"]
            local last = key:sub(-1) == "0" and "1" or "0"
            refuses_key(key:sub(1, -2) .. last, false, REFUSED)
            refuses_key(key:gsub("%-", ""), false, REFUSED)
            refuses_key(key .. key, false, REFUSED)
        end)

        it("accepts the upper-case form of a valid key (keys are normalized to lower case)",
            function()
                tried = tried + 1
                local r = rel.run({ "verify", keys["key-2"]:upper(), "--keystore", ks })
                assert.equal(0, r.code, rel.show(r))
                assert.equal("key-2\n", r.out)
                r = rel.run({ "verify", "--keystore", ks },
                    { stdin = keys["key-2"]:upper() .. "\n" })
                assert.equal(0, r.code, rel.show(r))
                assert.equal("key-2\n", r.out)
                unchanged()
            end)
    end)

    describe("--keystore PATH", function()
        local function refuses_path(args_list, path, content)
            for _, args in ipairs(args_list) do
                local r = try(args, path)
                rel.assert_error(r)
                assert.is_truthy(r.err:find(path, 1, true), "the error does not name the file: "
                    .. rel.show(r))
                if content then
                    assert.is_true(rel.read(path) == content, "the file changed")
                end
            end
            assert.same({}, rel.temps(path))
        end

        local READ_AND_WRITE = { { "list" }, { "create", "new" }, { "revoke", "key-1" } }

        -- The words that run a command without root's rights (see rel.unprivileged), or nil
        -- once the test is marked pending: root `does` what the test needs refused.
        local function unprivileged(does)
            local wrap = rel.unprivileged()
            if not wrap then
                pending("running as root without setpriv: root " .. does)
            end
            return wrap
        end

        it("refuses a folder", function()
            local folder = dir .. "/folder"
            assert(rel.sh("mkdir " .. rel.quote(folder)) == 0)
            refuses_path(READ_AND_WRITE, folder)
            assert.same({}, rel.ls(folder))
        end)

        it("refuses a folder given with a trailing slash", function()
            local folder = dir .. "/folder/"
            assert(rel.sh("mkdir " .. rel.quote(folder)) == 0)
            refuses_path({ { "list" }, { "create", "new" } }, folder)
        end)

        it("does not write through or over a dangling symbolic link", function()
            local link, target = dir .. "/link.p12", dir .. "/nowhere/target.p12"
            assert(rel.sh(("ln -s %s %s"):format(rel.quote(target), rel.quote(link))) == 0)
            tried = tried + 1
            local r = rel.run({ "create", "new", "--keystore", link })
            rel.assert_error(r)
            assert.is_true(rel.sh("test -L " .. rel.quote(link)) == 0, "the link was replaced")
            assert.is_false(rel.exists(target), "the link's target was created")
            assert.same({}, rel.temps(link))
        end)

        it("refuses a keystore its user cannot read", function()
            local wrap = unprivileged("reads any file")
            if not wrap then
                return
            end
            rel.chmod("755", dir)
            if #wrap == 0 then
                rel.chmod("000", ks)
            end
            for _, args in ipairs(READ_AND_WRITE) do
                local r = try(args, ks, { wrap = wrap })
                rel.assert_error(r, "Permission denied")
                assert.is_truthy(r.err:find(ks, 1, true), rel.show(r))
            end
            rel.chmod("600", ks)
            unchanged()
        end)

        it("refuses to write in a read-only folder, leaving the keystore as it was", function()
            local wrap = unprivileged("writes in any folder")
            if not wrap then
                return
            end
            -- The keystore belongs to the user who runs the command; its folder does not let
            -- that user create the lock file or a temp file.
            os.remove(ks .. ".lock")
            if #wrap > 0 then
                assert(rel.sh("chown 65534:65534 " .. rel.quote(ks)) == 0)
                rel.chmod("755", dir)
            else
                rel.chmod("555", dir)
            end
            for _, args in ipairs({ { "create", "new" }, { "revoke", "key-1" } }) do
                local r = try(args, ks, { wrap = wrap })
                rel.assert_error(r, "Permission denied")
            end
            local r = rel.run({ "list", "--keystore", ks }, { wrap = wrap })
            assert.equal(0, r.code, rel.show(r))
            rel.chmod("700", dir)
            unchanged()
            assert.same({ "keys.p12" }, rel.ls(dir))
        end)

        it("refuses a named pipe at once, without waiting for a writer", function()
            local fifo = dir .. "/pipe.p12"
            assert(rel.sh("mkfifo -m 600 " .. rel.quote(fifo)) == 0)
            for _, args in ipairs(READ_AND_WRITE) do
                local r = try(args, fifo, { timeout = 10 })
                rel.assert_error(r)
            end
            assert.is_true(rel.sh("test -p " .. rel.quote(fifo)) == 0, "the pipe was replaced")
        end)

        it("refuses a zero-length file", function()
            rel.write(ks, "", "600")
            refuses_path(READ_AND_WRITE, ks, "")
        end)

        it("refuses files that are not PKCS#12", function()
            math.randomseed(SEED)
            local noise = {}
            for i = 1, 4096 do
                noise[i] = string.char(math.random(0, 255))
            end
            local samples = {
                "hello\n",
                table.concat(noise),
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                "\48\3\2\1\3", -- SEQUENCE { INTEGER 3 }: the start of a PFX, no more
                "\48\132\255\255\255\255", -- a SEQUENCE claiming 4 GB
                before:sub(1, 64) .. ("\0"):rep(#before - 64),
            }
            for _, data in ipairs(samples) do
                rel.write(ks, data, "600")
                refuses_path(READ_AND_WRITE, ks, data)
            end
        end)

        it("refuses the keystore truncated at every sixteenth of its length", function()
            for i = 1, 15 do
                local part = before:sub(1, #before * i // 16)
                rel.write(ks, part, "600")
                refuses_path(READ_AND_WRITE, ks, part)
            end
            rel.write(ks, before:sub(1, -2), "600")
            refuses_path(READ_AND_WRITE, ks, before:sub(1, -2))
        end)

        it("refuses single-bit flips, or loads the same keys when the bit does not matter",
            function()
                local listed = rel.run({ "list", "--keystore", ks }).out
                math.randomseed(SEED)
                for _ = 1, 64 do
                    local pos = math.random(1, #before)
                    local bit = 1 << math.random(0, 7)
                    local flipped = before:sub(1, pos - 1)
                        .. string.char(before:byte(pos) ~ bit) .. before:sub(pos + 1)
                    rel.write(ks, flipped, "600")
                    tried = tried + 1
                    local r = rel.run({ "list", "--keystore", ks })
                    if r.code == 0 then
                        flips_harmless = flips_harmless + 1
                        assert.equal(listed, r.out, ("byte %d bit %d: a different listing"):format(
                            pos, bit))
                        for alias, key in pairs(keys) do
                            local v = rel.run({ "verify", key, "--keystore", ks })
                            assert.equal(alias .. "\n", v.out, rel.show(v))
                        end
                    else
                        flips_refused = flips_refused + 1
                        rel.assert_error(r)
                        local c = rel.run({ "create", "new", "--keystore", ks })
                        rel.assert_error(c)
                        local v = rel.run({ "verify", keys["key-1"], "--keystore", ks })
                        rel.assert_error(v)
                    end
                    assert.is_true(rel.read(ks) == flipped, ("byte %d bit %d: the file changed")
                        :format(pos, bit))
                end
            end)
    end)

    describe("passwords", function()
        local protected, pwfile

        before_each(function()
            protected = dir .. "/protected.p12"
            rel.populate(protected, 2, "pw-", "correct horse")
            before = rel.read(protected)
            pwfile = dir .. "/password"
        end)

        local function refuses(args, opts, says)
            for _, a in ipairs(args) do
                local r = try(a, protected, opts)
                rel.assert_error(r, says)
            end
            unchanged(protected)
        end

        local ALL = { { "list" }, { "create", "new" }, { "revoke", "pw-1" } }

        it("refuses a wrong password from a file or the environment", function()
            rel.write(pwfile, "wrong horse\n", "600")
            local with_file = {}
            for i, a in ipairs(ALL) do
                with_file[i] = { table.unpack(a) }
                table.insert(with_file[i], "--password-file")
                table.insert(with_file[i], pwfile)
            end
            refuses(with_file, nil, "password")
            refuses(ALL, { env = { APIKEY_KEYSTORE_PASSWORD = "wrong horse" } }, "password")
            refuses(ALL, { env = { APIKEY_KEYSTORE_PASSWORD = "correct horse " } }, "password")
        end)

        it("refuses a protected keystore when no password is given", function()
            refuses(ALL, nil, "password")
        end)

        it("accepts the right password, from a file with a trailing newline", function()
            rel.write(pwfile, "correct horse\n", "600")
            local r = rel.run({ "list", "--keystore", protected, "--password-file", pwfile })
            assert.equal(0, r.code, rel.show(r))
            assert.equal(2, #rel.parse_list(r.out))
        end)

        it("refuses a missing password file", function()
            local missing = dir .. "/no-such-file"
            for _, a in ipairs(ALL) do
                local r = try(a, protected, nil, { "--password-file", missing })
                rel.assert_refused(r)
                assert.is_truthy(r.err:find(missing, 1, true), "does not name the file: "
                    .. rel.show(r))
            end
            unchanged(protected)
        end)

        it("refuses an empty password file, or one whose first line is empty", function()
            for _, content in ipairs({ "", "\n", "\ncorrect horse\n" }) do
                rel.write(pwfile, content, "600")
                for _, a in ipairs(ALL) do
                    rel.assert_refused(try(a, protected, nil, { "--password-file", pwfile }))
                end
            end
            unchanged(protected)
        end)

        it("refuses a password file that is a folder", function()
            tried = tried + 1
            rel.assert_refused(rel.run({ "list", "--keystore", protected, "--password-file", dir }))
            unchanged(protected)
        end)
    end)
end)

describe("hygiene", function()
    local dir, ks

    before_each(function()
        dir = rel.tmpdir()
        ks = dir .. "/keys.p12"
    end)

    after_each(function()
        rel.remove(dir)
    end)

    it("never shows a key on stderr, whatever goes wrong around it", function()
        local r = rel.run({ "create", "ci-bot", "--keystore", ks })
        local key = rel.assert_created(r, "ci-bot")
        assert.equal("", r.err)
        local variants = { key, key:upper(), key .. "x", "x" .. key, key .. "\0", key .. " ",
            " " .. key, key:sub(1, 35), key:gsub("%-", ""), key .. "\r\n" }
        local good = rel.read(ks)
        local function attempt(args, opts)
            for _, v in ipairs(variants) do
                tried = tried + 1
                -- rel.run itself fails the test when the key shows on stderr.
                local full = { table.unpack(args) }
                table.insert(full, 2, v:find("[%z\r\n ]") and "-" or v)
                local o = { env = opts and opts.env, stdin = v }
                rel.run(full, o)
                rel.run(args, o)
            end
        end
        attempt({ "verify", "--keystore", ks })
        attempt({ "verify", "--keystore", ks }, { env = { APIKEY_KEYSTORE_PASSWORD = "nope" } })
        attempt({ "verify", "--keystore", ks, "--password-file", dir .. "/missing" })
        attempt({ "verify", "--keystore", dir .. "/missing.p12" })
        attempt({ "verify", "--keystore", dir })
        rel.chmod("664", ks)
        attempt({ "verify", "--keystore", ks })
        rel.chmod("600", ks)
        rel.write(ks, good:sub(1, #good // 2), "600")
        attempt({ "verify", "--keystore", ks })
        rel.write(ks, good, "600")
        attempt({ "verify", "--keystore", ks, "--bogus-option" })
        attempt({ "verify", "--keystore", ks, "extra-argument" })
    end)

    it("keeps the key out of the stderr of list, revoke and a refused create", function()
        local key = rel.assert_created(rel.run({ "create", "ci-bot", "--keystore", ks }))
        local r = rel.run({ "create", "CI-BOT", "--keystore", ks })
        rel.assert_error(r)
        r = rel.run({ "list", "--keystore", ks })
        assert.is_falsy(r.out:find(key, 1, true), "list shows the key")
        r = rel.run({ "revoke", "ci-bot", "--keystore", ks })
        assert.equal(0, r.code, rel.show(r))
        r = rel.run({ "verify", key, "--keystore", ks })
        assert.equal("unknown\n", r.err)
    end)

    it("refuses a keystore writable by group or others, saying `chmod 600`", function()
        local keys = rel.populate(ks, 1, "key-")
        local good = rel.read(ks)
        for _, mode in ipairs({ "664", "660", "620", "606", "602", "666", "777" }) do
            rel.chmod(mode, ks)
            for _, args in ipairs({ { "list" }, { "create", "new" }, { "revoke", "key-1" },
                { "verify", keys["key-1"] } }) do
                local r = try(args, ks)
                rel.assert_error(r, "chmod 600")
                assert.is_truthy(r.err:find(ks, 1, true), "does not name the file: " .. rel.show(r))
            end
            assert.is_true(rel.read(ks) == good, "the keystore changed")
            assert.equal(mode, rel.mode(ks))
        end
    end)

    it("accepts a keystore readable by group or others, and keeps its mode on a write", function()
        rel.populate(ks, 1, "key-")
        rel.chmod("644", ks)
        local r = rel.run({ "list", "--keystore", ks })
        assert.equal(0, r.code, rel.show(r))
        rel.assert_created(rel.run({ "create", "second", "--keystore", ks }))
        assert.equal("644", rel.mode(ks))
    end)

    it("creates a new keystore with mode 600", function()
        rel.assert_created(rel.run({ "create", "first", "--keystore", ks }))
        assert.equal("600", rel.mode(ks))
    end)
end)
