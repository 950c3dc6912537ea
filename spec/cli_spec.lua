-- The `apikey` command, run as a subprocess against temporary keystores: the user guide's
-- lines to the character, and the exit codes.
local json = require "dkjson"
local h = require "spec.helpers"

local run, create = h.run, h.create

-- A keystore path in a fresh temporary folder.
local function keystore(finally)
    return h.tmpdir(finally) .. "/keys.p12"
end

-- The test that `apikey COMMAND` without its alias is a usage error.
local function needs_an_alias(command)
    it("needs an alias: a usage error", function()
        local ks = keystore(finally)
        local out, err, code = run { command, "--keystore", ks }
        assert.same({ "", 2 }, { out, code })
        assert.equal("apikey: missing argument 'alias' (see 'apikey --help')\n", err)
    end)
end

-- A test for each value of option that create refuses with message (its %s: the value),
-- writing nothing.
local function refuses_each(what, option, values, message)
    for _, bad in ipairs(values) do
        it("refuses the " .. what .. " '" .. bad .. "' and writes nothing", function()
            local ks = keystore(finally)
            local out, err, code = run { "create", "k", "--keystore", ks, option .. "=" .. bad }
            assert.same({ "", 1 }, { out, code })
            assert.equal(message:format(bad), err)
            assert.is_false(h.exists(ks))
        end)
    end
end

local function created_line(alias, key, expiry)
    return ("API key created for alias '%s': %s (%s)\n%s\n"):format(alias, key, expiry, h.STORE_LINE)
end

describe("apikey create", function()
    it("prints a new lower-case UUID v4 key once, with no expiration", function()
        local ks = keystore(finally)
        local out, err, code = run { "create", "mcp-openai", "--keystore", ks }
        assert.same({ "", 0 }, { err, code })
        local key = out:match("^API key created for alias 'mcp%-openai': (" .. h.UUID .. ") ")
        assert.truthy(key, out)
        assert.equal(created_line("mcp-openai", key, "No expiration"), out)
    end)

    it("gives a different key each time", function()
        local ks = keystore(finally)
        assert.not_equal(create(ks, "a"), create(ks, "b"))
    end)

    it("prints the --expires-on date as given, in local time", function()
        local ks = keystore(finally)
        local out, err, code = run { "create", "mcp-claude", "--keystore", ks, "--expires-on", "2099-12-31T23:59:59" }
        assert.same({ "", 0 }, { err, code })
        local key = out:match("(" .. h.UUID .. ")")
        assert.equal(created_line("mcp-claude", key, "Expires on 2099-12-31T23:59:59"), out)
    end)

    it("converts a --expires-on date in UTC (Z) to local time", function()
        local ks = keystore(finally)
        local out, err, code = run({ "create", "ny", "--keystore", ks, "--expires-on", "2099-07-01T12:00:00Z" },
            { TZ = "America/New_York" })
        assert.same({ "", 0 }, { err, code })
        assert.equal(created_line("ny", out:match("(" .. h.UUID .. ")"), "Expires on 2099-07-01T08:00:00"), out)
    end)

    it("converts a --expires-on date with an offset (+hh:mm) to local time", function()
        local ks = keystore(finally)
        local out, err, code = run { "create", "off", "--keystore", ks, "--expires-on", "2099-01-01T00:30:00+02:00" }
        assert.same({ "", 0 }, { err, code })
        assert.equal(created_line("off", out:match("(" .. h.UUID .. ")"), "Expires on 2098-12-31T22:30:00"), out)
    end)

    for _, case in ipairs {
        { "90d", 90 * 86400 }, { "12h", 12 * 3600 }, { "30m", 30 * 60 }, { "45s", 45 }, { "2w", 14 * 86400 },
    } do
        it("sets the expiry " .. case[1] .. " after creation with --expires-in " .. case[1], function()
            local ks = keystore(finally)
            local out, err, code = run { "create", "k", "--keystore", ks, "--expires-in", case[1] }
            assert.same({ "", 0 }, { err, code })
            local listed = json.decode((run { "list", "--json", "--keystore", ks }))[1]
            assert.equal(case[2], h.utc_seconds(listed.expires) - h.utc_seconds(listed.created))
            -- TZ is UTC: the printed local date is the stored one.
            local shown = listed.expires:gsub("Z$", "")
            assert.equal(created_line("k", out:match("(" .. h.UUID .. ")"), "Expires on " .. shown), out)
        end)
    end

    refuses_each("duration", "--expires-in",
        { "0d", "0", "90", "d", "-1d", "1.5d", "90 d", "90x", "", "99999999999999d" },
        "apikey: invalid duration '%s': use a whole number above 0 followed by s, m, h, d or w, e.g. 90d\n")

    it("refuses a duration that ends after the year 9999", function()
        local ks = keystore(finally)
        local out, err, code = run { "create", "k", "--keystore", ks, "--expires-in", "999999w" }
        assert.same({ "", 1 }, { out, code })
        assert.equal("apikey: the duration '999999w' ends after the year 9999; give a shorter one\n", err)
    end)

    refuses_each("malformed date", "--expires-on", {
        "2027-02-30T00:00:00", "2027-01-01", "2027-01-01 00:00:00", "2027-01-01T24:00:00",
        "2027-13-01T00:00:00", "2027-01-01T00:00:00+25:00", "tomorrow", "",
    }, "apikey: invalid date '%s': use YYYY-MM-DDThh:mm:ss (local time), optionally followed by Z or +hh:mm, e.g. 2027-01-01T00:00:00\n")

    it("shows at most 160 bytes of a long malformed date, in one line", function()
        local ks = keystore(finally)
        local out, err, code = run { "create", "k", "--keystore", ks, "--expires-on", ("9"):rep(5000) .. "\n" }
        assert.same({ "", 1 }, { out, code })
        assert.equal("apikey: invalid date '" .. ("9"):rep(160) .. "...': use YYYY-MM-DDThh:mm:ss (local time), "
            .. "optionally followed by Z or +hh:mm, e.g. 2027-01-01T00:00:00\n", err)
    end)

    it("refuses a date in the past, naming it", function()
        local ks = keystore(finally)
        local out, err, code = run { "create", "mcp-claude", "--keystore", ks, "--expires-on", "2025-12-31T23:59:59" }
        assert.same({ "", 1 }, { out, code })
        assert.equal("apikey: the date 2025-12-31T23:59:59 is in the past; give a later date\n", err)
        assert.is_false(h.exists(ks))
    end)

    it("refuses --expires-on with --expires-in as a usage error", function()
        local ks = keystore(finally)
        local out, err, code = run { "create", "k", "--keystore", ks, "--expires-on", "2099-01-01T00:00:00", "--expires-in", "1d" }
        assert.same({ "", 2 }, { out, code })
        assert.equal("apikey: option '--expires-in' can not be used together with option '--expires-on' (see 'apikey --help')\n", err)
        assert.is_false(h.exists(ks))
    end)

    it("refuses an alias that exists in another case, and keeps the file as it was", function()
        local ks = keystore(finally)
        create(ks, "mcp-openai")
        local before = h.read_file(ks)
        local out, err, code = run { "create", "MCP-OpenAI", "--keystore", ks }
        assert.same({ "", 1 }, { out, code })
        assert.matches("^apikey: [^\n]*'MCP%-OpenAI' already exists[^\n]*\n$", err)
        assert.equal(before, h.read_file(ks))
    end)

    local invalid = {
        { "", "the alias is empty; give a name such as ci-bot" },
        { ("a"):rep(129), "the alias is 129 bytes long; the limit is 128" },
        { "a\tb", "the alias 'a\\x09b' contains the control character U+0009; use printable characters only" },
        { "a\nb", "the alias 'a\\x0Ab' contains the control character U+000A; use printable characters only" },
        { "a\27[31mb", "the alias 'a\\x1B[31mb' contains the control character U+001B; use printable characters only" },
        { "a\u{202E}b", "the alias 'a\\u{202E}b' contains the control character U+202E; use printable characters only" },
        { "\xff\xfe", "the alias '\\xFF\\xFE' is not valid UTF-8" },
        { " lead", "the alias ' lead' starts or ends with a blank; remove it" },
        { "trail ", "the alias 'trail ' starts or ends with a blank; remove it" },
        { "nbsp\u{A0}", "the alias 'nbsp\u{A0}' starts or ends with a blank; remove it" },
    }
    for _, case in ipairs(invalid) do
        it("refuses the alias " .. ("%q"):format(case[1]):gsub("\\\n", "\\n") .. " and writes nothing", function()
            local ks = keystore(finally)
            local out, err, code = run { "create", case[1], "--keystore", ks }
            assert.same({ "", 1 }, { out, code })
            assert.equal("apikey: " .. case[2] .. "\n", err)
            assert.is_false(h.exists(ks))
        end)
    end

    it("accepts an alias of 128 bytes and one in UTF-8 with inner blanks", function()
        local ks = keystore(finally)
        local long, utf = ("a"):rep(128), "clé d’été ✓"
        create(ks, long)
        create(ks, utf)
        local out = run { "list", "--keystore", ks }
        assert.matches("^" .. long .. " %*+%x%x%x%x %(No expiration%)\n", out)
        assert.matches("\n" .. utf .. " %*+%x%x%x%x %(No expiration%)\n$", out)
    end)

    needs_an_alias("create")
end)

describe("apikey list", function()
    it("prints 'No API keys found.' for a keystore that does not exist, and creates nothing", function()
        local ks = keystore(finally)
        assert.same({ "No API keys found.\n", "", 0 }, { run { "list", "--keystore", ks } })
        assert.is_false(h.exists(ks))
        assert.is_false(h.exists(ks .. ".lock"))
    end)

    it("prints 'No API keys found.' once the last key is revoked", function()
        local ks = keystore(finally)
        create(ks, "only")
        assert.equal(0, select(3, run { "revoke", "only", "--keystore", ks }))
        assert.same({ "No API keys found.\n", "", 0 }, { run { "list", "--keystore", ks } })
    end)

    it("prints one line per key in creation order: alias, 20 stars and the key's last 4 characters", function()
        local ks = keystore(finally)
        local k1 = create(ks, "mcp-openai")
        local k2 = create(ks, "mcp-claude", { "--expires-on", "2099-12-31T23:59:59" })
        local k3 = create(ks, "a-first-by-name")
        local out, err, code = run { "list", "--keystore", ks }
        assert.same({ "", 0 }, { err, code })
        assert.equal("mcp-openai ********************" .. k1:sub(-4) .. " (No expiration)\n"
            .. "mcp-claude ********************" .. k2:sub(-4) .. " (Expires on 2099-12-31T23:59:59)\n"
            .. "a-first-by-name ********************" .. k3:sub(-4) .. " (No expiration)\n", out)
    end)

    it("escapes control characters of an alias that another tool wrote (list and verify)", function()
        local ks = keystore(finally)
        local writer = assert(require("apikey").open { path = ks })
        local key = assert(require("apikey.core").create(writer, "evil\27[2Jalias", os.time()))
        writer:close()
        local out, err, code = run { "list", "--keystore", ks }
        assert.same({ "", 0 }, { err, code })
        assert.equal("evil\\x1B[2Jalias ********************" .. key:sub(-4) .. " (No expiration)\n", out)
        assert.same({ "evil\\x1B[2Jalias\n", "", 0 }, { run { "verify", key, "--keystore", ks } })
        assert.same({ "API key 'evil\\x1B[2Jalias' has been revoked.\n", "", 0 },
            { run { "revoke", "EVIL\27[2JALIAS", "--keystore", ks } })
    end)

    it("prints dates in local time", function()
        local ks = keystore(finally)
        create(ks, "k", { "--expires-on", "2099-07-01T12:00:00Z" })
        local out = run({ "list", "--keystore", ks }, { TZ = "Asia/Tokyo" })
        assert.matches("^k %*+%x%x%x%x %(Expires on 2099%-07%-01T21:00:00%)\n$", out)
    end)

    it("prints '(Expired on ...)' for a key past its date", function()
        local ks = keystore(finally)
        local key, expired_at = h.create_expired(ks, "old")
        create(ks, "new")
        local out, err, code = run { "list", "--keystore", ks }
        assert.same({ "", 0 }, { err, code })
        local when = os.date("!%Y-%m-%dT%H:%M:%S", expired_at)
        assert.equal("old ********************" .. key:sub(-4) .. " (Expired on " .. when .. ")\n",
            h.lines(out)[1] .. "\n")
    end)

    it("--json prints an array of {alias, hint, created, expires, expired, scopes, rotated}", function()
        local ks = keystore(finally)
        local before = os.time()
        local k1 = create(ks, "plain")
        local k2 = create(ks, "dated", { "--expires-on", "2099-12-31T23:59:59+01:00" })
        local k3 = h.create_expired(ks, "old")
        local out, err, code = run { "list", "--json", "--keystore", ks }
        assert.same({ "", 0 }, { err, code })
        local list = json.decode(out, 1, json.null)
        assert.equal(3, #list)
        for _, e in ipairs(list) do
            local created = h.utc_seconds(e.created)
            assert.is_true(created >= before - 7200 and created <= os.time(), e.created)
        end
        assert.same({ "plain", k1:sub(-4), json.null, false },
            { list[1].alias, list[1].hint, list[1].expires, list[1].expired })
        assert.same({ "dated", k2:sub(-4), "2099-12-31T22:59:59Z", false },
            { list[2].alias, list[2].hint, list[2].expires, list[2].expired })
        assert.same({ "old", k3:sub(-4), true }, { list[3].alias, list[3].hint, list[3].expired })
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", list[3].expires)
        local fields = {}
        for k in pairs(list[1]) do
            fields[#fields + 1] = k
        end
        table.sort(fields)
        assert.same({ "alias", "created", "expired", "expires", "hint", "rotated", "scopes" }, fields)
        assert.same({ json.null, json.null }, { list[1].scopes, list[1].rotated })
    end)

    it("--json prints [] when there are no keys", function()
        local ks = keystore(finally)
        assert.same({ "[]\n", "", 0 }, { run { "list", "--json", "--keystore", ks } })
    end)

    it("never prints a key", function()
        local ks = keystore(finally)
        local key = create(ks, "secret")
        local out, err = run { "list", "--keystore", ks }
        local jout, jerr = run { "list", "--json", "--keystore", ks }
        for _, text in ipairs { out, err, jout, jerr } do
            assert.is_nil(text:find(key:sub(1, 32), 1, true))
        end
    end)
end)

describe("apikey revoke", function()
    it("prints the guide's line and removes the key", function()
        local ks = keystore(finally)
        create(ks, "mcp-openai")
        local k2 = create(ks, "mcp-claude")
        assert.same({ "API key 'mcp-openai' has been revoked.\n", "", 0 }, { run { "revoke", "mcp-openai", "--keystore", ks } })
        assert.equal("mcp-claude ********************" .. k2:sub(-4) .. " (No expiration)\n",
            (run { "list", "--keystore", ks }))
    end)

    it("refuses a path that ends with a slash, for list as for create, even when nothing is there", function()
        local path = h.tmpdir(finally) .. "/nope/"
        for _, args in ipairs { { "list" }, { "create", "k" } } do
            table.move({ "--keystore", path }, 1, 2, #args + 1, args)
            assert.same({ "", ("apikey: keystore path '%s' names a folder; give a file name\n"):format(path), 1 },
                { run(args) })
        end
    end)

    it("says there is no such key when the keystore does not exist, and makes no folder or lock file", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/missing/keys.p12"
        assert.same({ "", "No API key found with alias 'ci-bot'.\n", 1 }, { run { "revoke", "ci-bot", "--keystore", ks } })
        assert.is_false(h.exists(dir .. "/missing"))
    end)

    it("finds the alias regardless of case, and prints it as stored", function()
        local ks = keystore(finally)
        create(ks, "mcp-openai")
        assert.same({ "API key 'mcp-openai' has been revoked.\n", "", 0 }, { run { "revoke", "MCP-OpenAI", "--keystore", ks } })
        assert.equal("No API keys found.\n", (run { "list", "--keystore", ks }))
    end)

    it("prints 'No API key found with alias ...' on stderr for an unknown alias, exit 1, file unchanged", function()
        local ks = keystore(finally)
        create(ks, "mcp-openai")
        local before = h.read_file(ks)
        assert.same({ "", "No API key found with alias 'nope'.\n", 1 }, { run { "revoke", "nope", "--keystore", ks } })
        assert.equal(before, h.read_file(ks))
    end)

    it("escapes control characters of an unknown alias in that line", function()
        local ks = keystore(finally)
        assert.same({ "", "No API key found with alias 'a\\x1B[2Jb'.\n", 1 }, { run { "revoke", "a\27[2Jb", "--keystore", ks } })
    end)

    it("masks a key pasted as the alias in that line, so that the key does not reach a log", function()
        local ks = keystore(finally)
        local key = create(ks, "mcp-openai")
        local out, err, code = run { "revoke", key:upper(), "--keystore", ks }
        assert.same({ "", 1 }, { out, code })
        assert.equal("No API key found with alias '********************" .. key:sub(-4):upper() .. "'.\n", err)
    end)

    it("prints 'No API key found with alias ...' when the keystore does not exist, and creates nothing", function()
        local ks = keystore(finally)
        assert.same({ "", "No API key found with alias 'nope'.\n", 1 }, { run { "revoke", "nope", "--keystore", ks } })
        assert.is_false(h.exists(ks))
    end)

    it("lets the alias be used again, with a new key; the old key stops working", function()
        local ks = keystore(finally)
        local old = create(ks, "mcp-openai")
        assert.equal(0, select(3, run { "revoke", "mcp-openai", "--keystore", ks }))
        local new = create(ks, "mcp-openai")
        assert.not_equal(old, new)
        assert.same({ "", "unknown\n", 1 }, { run { "verify", old, "--keystore", ks } })
        assert.same({ "mcp-openai\n", "", 0 }, { run { "verify", new, "--keystore", ks } })
    end)

    needs_an_alias("revoke")
end)

describe("apikey verify", function()
    it("prints the alias of a valid key given as an argument", function()
        local ks = keystore(finally)
        create(ks, "other")
        local key = create(ks, "mcp-openai")
        assert.same({ "mcp-openai\n", "", 0 }, { run { "verify", key, "--keystore", ks } })
    end)

    -- The test that `verify [WORD] --keystore KS` takes a key given on stdin, followed by tail.
    local function reads_stdin(name, word, tail)
        it(name, function()
            local ks = keystore(finally)
            local key = create(ks, "mcp-openai")
            local args = word and { "verify", word, "--keystore", ks } or { "verify", "--keystore", ks }
            assert.same({ "mcp-openai\n", "", 0 }, { run(args, nil, key .. tail) })
        end)
    end

    reads_stdin("reads the key from standard input when no key is given", nil, "\n")
    reads_stdin("reads the key from standard input when the key is '-'", "-", "\r\n")
    reads_stdin("reads only the first line of standard input", nil, "\nsomething else\n")

    it("accepts the key in upper case", function()
        local ks = keystore(finally)
        local key = create(ks, "mcp-openai")
        assert.same({ "mcp-openai\n", "", 0 }, { run { "verify", key:upper(), "--keystore", ks } })
    end)

    it("prints 'unknown' on stderr for a well-formed key that is not in the keystore, exit 1", function()
        local ks = keystore(finally)
        create(ks, "mcp-openai")
        assert.same({ "", "unknown\n", 1 }, { run { "verify", "eb47c2be-927f-495f-aa97-0ba0f60b8986", "--keystore", ks } })
    end)

    it("prints 'unknown' when the keystore does not exist", function()
        local ks = keystore(finally)
        assert.same({ "", "unknown\n", 1 }, { run { "verify", "eb47c2be-927f-495f-aa97-0ba0f60b8986", "--keystore", ks } })
    end)

    it("prints 'unknown' for a revoked key", function()
        local ks = keystore(finally)
        local key = create(ks, "gone")
        run { "revoke", "gone", "--keystore", ks }
        assert.same({ "", "unknown\n", 1 }, { run { "verify", key, "--keystore", ks } })
    end)

    it("prints 'expired' on stderr for a key past its date, exit 1", function()
        local ks = keystore(finally)
        local key = h.create_expired(ks, "old")
        assert.same({ "", "expired\n", 1 }, { run { "verify", key, "--keystore", ks } })
    end)

    it("accepts a key whose date is still ahead", function()
        local ks = keystore(finally)
        local key = create(ks, "soon", { "--expires-in", "1h" })
        assert.same({ "soon\n", "", 0 }, { run { "verify", key, "--keystore", ks } })
    end)

    for _, bad in ipairs { "not-a-key", "eb47c2be-927f-495f-aa97-0ba0f60b898", "eb47c2be927f495faa970ba0f60b8986",
        "eb47c2be-927f-495f-aa97-0ba0f60b898g", " eb47c2be-927f-495f-aa97-0ba0f60b8986" } do
        it("prints 'malformed' on stderr for " .. ("%q"):format(bad) .. ", exit 1", function()
            local ks = keystore(finally)
            create(ks, "k")
            assert.same({ "", "malformed\n", 1 }, { run { "verify", bad, "--keystore", ks } })
        end)
    end

    it("prints 'malformed' for empty standard input", function()
        local ks = keystore(finally)
        create(ks, "k")
        assert.same({ "", "malformed\n", 1 }, { run({ "verify", "--keystore", ks }, nil, "") })
    end)
end)

describe("apikey --keystore and APIKEY_KEYSTORE", function()
    it("uses APIKEY_KEYSTORE when --keystore is not given", function()
        local ks = keystore(finally)
        local out, err, code = run({ "create", "k" }, { APIKEY_KEYSTORE = ks })
        assert.same({ "", 0 }, { err, code })
        assert.is_true(h.exists(ks))
        local key = out:match("(" .. h.UUID .. ")")
        assert.same({ "k\n", "", 0 }, { run({ "verify", key }, { APIKEY_KEYSTORE = ks }) })
    end)

    it("prefers --keystore to APIKEY_KEYSTORE", function()
        local dir = h.tmpdir(finally)
        create(dir .. "/b.p12", "k", nil, { APIKEY_KEYSTORE = dir .. "/a.p12" })
        assert.is_true(h.exists(dir .. "/b.p12"))
        assert.is_false(h.exists(dir .. "/a.p12"))
    end)

    it("takes --keystore before the command too", function()
        local ks = keystore(finally)
        create(ks, "k")
        assert.matches("^k %*+", (run { "--keystore", ks, "list" }))
    end)

    it("defaults to PREFIX/security/metricshub-keystore.p12, creating the folder 0700 and the file 0600", function()
        local dir = h.tmpdir(finally)
        assert.equal(0, h.sh("cp -a " .. h.quote(h.prefix) .. " " .. h.quote(dir .. "/p")))
        os.execute("rm -rf " .. h.quote(dir .. "/p/security"))
        -- The installed command finds its modules and its keystore with no environment.
        local env = { LUA_PATH = false, LUA_CPATH = false, LUA_PATH_5_4 = false, LUA_CPATH_5_4 = false }
        local out, err, code = h.exec({ "lua5.4", dir .. "/p/bin/apikey", "create", "default" }, env)
        assert.same({ "", 0 }, { err, code })
        assert.matches("^API key created for alias 'default'", out)
        local ks = dir .. "/p/security/metricshub-keystore.p12"
        assert.is_true(h.exists(ks))
        assert.equal("700", h.mode(dir .. "/p/security"))
        assert.equal("600", h.mode(ks))
        assert.matches("^default %*+", (h.exec({ dir .. "/p/bin/apikey", "list" }, env)))
    end)

    it("names the file when it is not a regular file", function()
        local dir = h.tmpdir(finally)
        local out, err, code = run { "list", "--keystore", dir }
        assert.same({ "", 1 }, { out, code })
        assert.matches("^apikey: [^\n]*" .. dir:gsub("%p", "%%%0") .. "[^\n]*\n$", err)
    end)

    it("refuses a keystore that group or others can write, and says how to fix it", function()
        local ks = keystore(finally)
        create(ks, "k")
        assert.equal(0, h.sh("chmod 664 " .. h.quote(ks)))
        local out, err, code = run { "list", "--keystore", ks }
        assert.same({ "", 1 }, { out, code })
        assert.equal(("apikey: keystore %s is writable by group or others (mode 0664); run: chmod 600 %s\n"):format(ks, ks), err)
    end)

    it("reports permission denied with what to do (as a user who cannot read the file)", function()
        if h.capture("id -u") ~= "0\n" or h.sh("command -v setpriv >/dev/null") ~= 0 then
            pending("needs root and setpriv to run as another user")
            return
        end
        local function as_nobody(...)
            return h.exec({ "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "lua5.4", h.bin, ... })
        end
        if select(3, as_nobody("--version")) ~= 0 then
            pending("the installed command is not readable by another user here")
            return
        end
        local ks = keystore(finally)
        create(ks, "k")
        local out, err, code = as_nobody("list", "--keystore", ks)
        assert.same({ "", 1 }, { out, code })
        assert.matches("^apikey: [^\n]*" .. ks:gsub("%p", "%%%0") .. "[^\n]*Permission denied[^\n]*%-%-keystore[^\n]*\n$", err)
    end)
end)

describe("apikey --password-file and APIKEY_KEYSTORE_PASSWORD", function()
    it("uses the first line of the password file; without it the keystore does not open and is left as it was", function()
        local dir = h.tmpdir(finally)
        local ks, pw = dir .. "/keys.p12", dir .. "/pw"
        h.write_file(pw, "s3cret\nnot part of it\n")
        local key = create(ks, "k", { "--password-file", pw })
        assert.same({ "k\n", "", 0 }, { run { "verify", key, "--keystore", ks, "--password-file", pw } })
        local before = h.read_file(ks)
        local out, err, code = run { "create", "other", "--keystore", ks }
        assert.same({ "", 1 }, { out, code })
        assert.matches("^apikey: [^\n]*" .. ks:gsub("%p", "%%%0") .. "[^\n]*\n$", err)
        assert.is_nil(err:find("s3cret", 1, true))
        assert.equal(before, h.read_file(ks))
    end)

    it("refuses a wrong password with a clear error, exit 1, and leaves the file byte for byte", function()
        local dir = h.tmpdir(finally)
        local ks, pw, wrong = dir .. "/keys.p12", dir .. "/pw", dir .. "/wrong"
        h.write_file(pw, "s3cret\n")
        h.write_file(wrong, "guess\n")
        create(ks, "k", { "--password-file", pw })
        local before = h.read_file(ks)
        for _, args in ipairs { { "create", "x" }, { "revoke", "k" }, { "list" } } do
            table.move({ "--keystore", ks, "--password-file", wrong }, 1, 4, #args + 1, args)
            local out, err, code = run(args)
            assert.same({ "", 1 }, { out, code })
            assert.matches("^apikey: [^\n]*" .. ks:gsub("%p", "%%%0") .. "[^\n]*password[^\n]*\n$", err)
            assert.truthy(err:find("; give the keystore's password with --password-file FILE or APIKEY_KEYSTORE_PASSWORD\n", 1, true), err)
            assert.is_nil(err:find("guess", 1, true))
        end
        assert.equal(before, h.read_file(ks))
    end)

    it("uses APIKEY_KEYSTORE_PASSWORD, and --password-file before it", function()
        local dir = h.tmpdir(finally)
        local ks, pw = dir .. "/keys.p12", dir .. "/pw"
        h.write_file(pw, "from-file\n")
        local key = create(ks, "k", nil, { APIKEY_KEYSTORE_PASSWORD = "from-env" })
        assert.same({ "k\n", "", 0 }, { run({ "verify", key, "--keystore", ks }, { APIKEY_KEYSTORE_PASSWORD = "from-env" }) })
        local out, err, code = run({ "verify", key, "--keystore", ks, "--password-file", pw }, { APIKEY_KEYSTORE_PASSWORD = "from-env" })
        assert.same({ "", 1 }, { out, code })
        assert.matches("^apikey: [^\n]*password", err)
    end)

    it("takes a password file written with CRLF line ends as the same password", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/keys.p12"
        h.write_file(dir .. "/unix", "s3cret\n")
        h.write_file(dir .. "/dos", "s3cret\r\n")
        local key = create(ks, "k", { "--password-file", dir .. "/unix" })
        assert.same({ "k\n", "", 0 }, { run { "verify", key, "--keystore", ks, "--password-file", dir .. "/dos" } })
    end)

    it("refuses a password file that does not exist, exit 1", function()
        local dir = h.tmpdir(finally)
        local out, err, code = run { "list", "--keystore", dir .. "/keys.p12", "--password-file", dir .. "/none" }
        assert.same({ "", 1 }, { out, code })
        assert.equal(("apikey: cannot open the password file %s/none: No such file or directory; check the path given to --password-file\n")
            :format(dir), err)
    end)

    for name, content in pairs { ["an empty"] = "", ["a blank first line in a"] = "\nsecret\n" } do
        it("refuses " .. name .. " password file, exit 1", function()
            local dir = h.tmpdir(finally)
            h.write_file(dir .. "/pw", content)
            local out, err, code = run { "list", "--keystore", dir .. "/keys.p12", "--password-file", dir .. "/pw" }
            assert.same({ "", 1 }, { out, code })
            assert.equal(("apikey: the password file %s/pw is empty; put the password on its first line\n"):format(dir), err)
        end)
    end
end)

describe("apikey usage", function()
    for _, case in ipairs {
        { {}, "a command is required" },
        { { "frobnicate" }, "unknown command 'frobnicate'" },
        { { "list", "--bogus" }, "unknown option '--bogus'" },
        { { "list", "extra" }, "too many arguments" },
        { { "create", "a", "b" }, "too many arguments" },
        { { "create", "a", "--expires-on" }, "option '--expires-on' requires an argument" },
        { { "list", "--keystore", "" }, "--keystore needs a path" },
    } do
        it("exits 2 on: apikey " .. table.concat(case[1], " "), function()
            local out, err, code = run(case[1])
            assert.same({ "", 2 }, { out, code })
            assert.matches("^apikey: " .. case[2]:gsub("%p", "%%%0") .. "[^\n]*\n$", err)
        end)
    end

    it("keeps argparse's suggestion on the one line", function()
        assert.same({ "", "apikey: unknown option '-x'; did you mean '-h'? (see 'apikey --help')\n", 2 },
            { run { "create", "-x" } })
    end)

    it("--help prints the commands and options, exit 0", function()
        local out, err, code = run { "--help" }
        assert.same({ "", 0 }, { err, code })
        assert.matches("^Usage: apikey ", out)
        for _, word in ipairs { "create", "list", "revoke", "verify", "--keystore", "--password-file",
            "--version", "APIKEY_KEYSTORE", "APIKEY_KEYSTORE_PASSWORD" } do
            assert.truthy(out:find(word, 1, true), word)
        end
    end)

    it("--help names the default keystore of this installation", function()
        local out = run { "--help" }
        local path = h.prefix .. "/security/metricshub-keystore.p12"
        -- argparse wraps long lines: compare without the line breaks and indentation.
        assert.truthy(out:gsub("%s*\n%s*", ""):find(path:gsub("%s", ""), 1, true), out)
    end)

    it("create --help prints create's options, exit 0", function()
        local out, err, code = run { "create", "--help" }
        assert.same({ "", 0 }, { err, code })
        assert.matches("^Usage: apikey create%s", out)
        for _, word in ipairs { "--expires-on", "--expires-in", "--keystore", "--password-file" } do
            assert.truthy(out:find(word, 1, true), word)
        end
    end)

    it("-h is --help", function()
        assert.same({ run { "--help" } }, { run { "-h" } })
    end)

    it("--version prints the version, exit 0", function()
        local out, err, code = run { "--version" }
        assert.same({ "", 0 }, { err, code })
        assert.matches("^apikey %d+%.%d+%.%d+[^\n]*\n$", out)
    end)

    it("colours the 'apikey:' prefix on a terminal, and not when NO_COLOR is set", function()
        if h.sh("command -v script >/dev/null") ~= 0 then
            pending("needs script(1) for a terminal")
            return
        end
        local cmd = "script -qec " .. h.quote("lua5.4 " .. h.quote(h.bin) .. " frobnicate") .. " /dev/null"
        local colour = h.exec({ "sh", "-c", cmd }, { TERM = "xterm", NO_COLOR = false })
        local plain = h.exec({ "sh", "-c", cmd }, { TERM = "xterm", NO_COLOR = "1" })
        assert.truthy(colour:find("\27[1;31mapikey:\27[0m unknown command", 1, true), colour)
        assert.truthy(plain:find("apikey: unknown command", 1, true), plain)
        assert.is_nil(plain:find("\27", 1, true))
    end)
end)

describe("apikey.cli.main", function()
    -- Runs main in this process with files for stdout and stderr.
    local function main(argv, opts)
        local out, err = io.tmpfile(), io.tmpfile()
        opts.stdout, opts.stderr = out, err
        local code = require("apikey.cli").main(argv, opts)
        out:seek("set")
        err:seek("set")
        return out:read("a"), err:read("a"), code
    end

    it("uses PREFIX/security/metricshub-keystore.p12 of opts.prefix, and the variables of opts.env", function()
        local dir = h.tmpdir(finally)
        local out, err, code = main({ "create", "k" }, { prefix = dir .. "/", env = {} })
        assert.same({ "", 0 }, { err, code })
        local key = out:match("(" .. h.UUID .. ")")
        assert.is_true(h.exists(dir .. "/security/metricshub-keystore.p12"))
        local other = dir .. "/other.p12"
        assert.same({ "", "No API key found with alias 'k'.\n", 1 },
            { main({ "revoke", "k" }, { prefix = dir, env = { APIKEY_KEYSTORE = other } }) })
        local input = io.tmpfile()
        input:write(key, "\n")
        input:seek("set")
        assert.same({ "k\n", "", 0 }, { main({ "verify" }, { prefix = dir, env = {}, stdin = input }) })
    end)

    it("needs a keystore when there is no prefix", function()
        assert.same({ "", "apikey: no keystore given; use --keystore PATH or set APIKEY_KEYSTORE\n", 1 },
            { main({ "list" }, { env = {} }) })
    end)
end)
