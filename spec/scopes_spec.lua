-- Keys that carry scopes, keys rotated with a grace period, and a key revoked by the key itself:
-- the Lua API, the verifier and the command.
local json = require "dkjson"
local h = require "spec.helpers"
local apikey = require "apikey"
local core = require "apikey.core"

local run, create = h.run, h.create
local UNKNOWN_KEY = "0b6e6d2a-3f8e-4c55-9d7e-3b2f9b1c8a10"

local keystore, fails = h.open_keystore, h.fails

-- The version of each of our records in a keystore with no password, by alias, as
-- `openssl pkcs12 -info` prints the bags (friendlyName, then the record in hex).
local function record_versions(path)
    local out = h.capture("openssl pkcs12 -info -nodes -passin pass: -in " .. h.quote(path)
        .. " 2>&1")
    local versions = {}
    for alias, hex in out:gmatch("friendlyName: ([^\n]*)\n(30 [^\n]*)") do
        -- SEQUENCE, its length (one octet below 128, else 81 or 82 and the length), INTEGER
        local bytes = {}
        for b in hex:gmatch("%x%x") do
            bytes[#bytes + 1] = tonumber(b, 16)
        end
        local at = bytes[2] < 0x80 and 3 or 3 + (bytes[2] - 0x80)
        assert.same({ 2, 1 }, { bytes[at], bytes[at + 1] })
        versions[#versions + 1] = alias .. "=" .. bytes[at + 2]
    end
    return versions
end

describe("scopes, in the Lua API", function()
    it("a key made with scopes has them in its entry, from create, list and verify", function()
        local ks = keystore(finally)
        local key, entry = assert(ks:create("reader", { scopes = { "read", "metrics:read", "mcp" } }))
        assert.same({ "read", "metrics:read", "mcp" }, entry.scopes)
        assert.same({ "read", "metrics:read", "mcp" }, ks:list()[1].scopes)
        assert.same({ "read", "metrics:read", "mcp" }, ks:verify(key).scopes)
    end)

    it("a key made without scopes has full access: no scopes field", function()
        local ks = keystore(finally)
        local key, entry = assert(ks:create("all"))
        assert.is_nil(entry.scopes)
        assert.is_nil(ks:verify(key).scopes)
        assert.is_true(apikey.authorize(ks:verify(key), "write"))
    end)

    it("keeps the scopes across a reopen, drops repeats, keeps the order given", function()
        local ks, path = keystore(finally)
        local key = assert(ks:create("k", { scopes = { "write", "read", "write" } }))
        ks:close()
        local again <close> = assert(apikey.open { path = path })
        assert.same({ "write", "read" }, again:verify(key).scopes)
    end)

    it("takes 32 scopes of 64 bytes, and refuses more as 'invalid'", function()
        local ks = keystore(finally)
        local many = {}
        for i = 1, 32 do
            many[i] = ("s%02d"):format(i) .. ("x"):rep(61)
        end
        local key = assert(ks:create("many", { scopes = many }))
        assert.same(many, ks:verify(key).scopes)
        many[33] = "one-more"
        fails("invalid", "at most 32", ks:create("more", { scopes = many }))
        fails("invalid", "the limit is 64", ks:create("long", { scopes = { ("x"):rep(65) } }))
    end)

    for _, bad in ipairs { "", "a b", "read,write", "caf\xc3\xa9", "x\0y", "line\n" } do
        it(("refuses the scope %q as 'invalid', writing nothing"):format(bad), function()
            local ks, path = keystore(finally)
            local ok, msg, code = ks:create("k", { scopes = { bad } })
            fails("invalid", nil, ok, msg, code)
            assert.is_false(h.exists(path))
        end)
    end

    it("refuses an empty list of scopes, and raises for a list that is not of strings", function()
        local ks = keystore(finally)
        fails("invalid", "no scope given", ks:create("k", { scopes = {} }))
        assert.has_error(function() ks:create("k", { scopes = "read" }) end)
        assert.has_error(function() ks:create("k", { scopes = { 1 } }) end)
    end)

    it("apikey.authorize, ks:authorize: a scope the key has, or any for full access", function()
        local ks = keystore(finally)
        local key = assert(ks:create("reader", { scopes = { "read" } }))
        local entry = ks:verify(key)
        assert.is_true(apikey.authorize(entry, "read"))
        assert.is_false(apikey.authorize(entry, "write"))
        assert.is_false(apikey.authorize(entry, "Read"))
        assert.is_true(ks:authorize(entry, "read"))
        assert.is_true(apikey.authorize({ alias = "x" }, "anything"))
        assert.has_error(function() apikey.authorize(entry, nil) end)
        assert.has_error(function() apikey.authorize(nil, "read") end)
    end)

    it("writes a key without scopes as before (record version 1), and a scoped one as version 2, which older versions refuse", function()
        local ks, path = keystore(finally)
        assert(ks:create("plain"))
        assert(ks:create("scoped", { scopes = { "read" } }))
        assert.same({ "plain=1", "scoped=2" }, record_versions(path))
    end)

    it("loads a keystore written before scopes existed, its keys with full access", function()
        local dir = h.tmpdir(finally)
        local path = dir .. "/old.p12"
        -- written by p12_save before this change (fuzz/make_seeds.sh), iteration count 1
        assert.equal(0, h.sh(("cp %s %s && chmod 600 %s"):format(
            h.quote(h.root .. "/fuzz/corpus/p12/keystore-3-keys"), h.quote(path), h.quote(path))))
        local ks <close> = assert(apikey.open { path = path })
        local list = ks:list()
        assert.equal(3, #list)
        for _, e in ipairs(list) do
            assert.is_nil(e.scopes)
            assert.is_nil(e.rotated)
        end
    end)
end)

describe("scopes, in the verifier", function()
    local dir, path, v, reader, writer, all

    before_each(function()
        dir = h.tmpdir()
        path = dir .. "/keys.p12"
        local ks <close> = assert(apikey.open { path = path })
        reader = assert(ks:create("reader", { scopes = { "read" } }))
        writer = assert(ks:create("writer", { scopes = { "write", "read" } }))
        all = assert(ks:create("all"))
        v = assert(apikey.verifier { path = path })
    end)

    after_each(function()
        v:close()
        h.remove(dir)
    end)

    it("v:verify and v:authenticate return the entry with its scopes", function()
        assert.same({ "read" }, v:verify(reader).scopes)
        assert.same({ "write", "read" }, v:authenticate("Bearer " .. writer).scopes)
        assert.is_nil(v:authenticate("Bearer " .. all).scopes)
    end)

    it("v:authenticate(header, scope): the entry when the key has the scope or full access", function()
        assert.equal("reader", v:authenticate("Bearer " .. reader, "read").alias)
        assert.equal("writer", v:authenticate("Bearer " .. writer, "write").alias)
        assert.equal("all", v:authenticate("Bearer " .. all, "write").alias)
        assert.equal("all", v:authenticate("Bearer " .. all, "anything").alias)
    end)

    it("v:authenticate(header, scope): nil, 'insufficient_scope' and the entry when it lacks it", function()
        local entry, why, holder = v:authenticate("Bearer " .. reader, "write")
        assert.same({ nil, "insufficient_scope", "reader" }, { entry, why, holder.alias })
        assert.same({ "read" }, holder.scopes)
    end)

    it("v:authenticate(header, scope): a key that is refused is refused for its own reason", function()
        assert.same({ nil, "unknown" }, { v:authenticate("Bearer " .. UNKNOWN_KEY, "read") })
        assert.same({ nil, "missing" }, { v:authenticate(nil, "read") })
        assert.same({ nil, "malformed" }, { v:authenticate("Bearer nope", "read") })
    end)

    it("v:authorize(entry, scope) answers as apikey.authorize", function()
        local entry = v:verify(reader)
        assert.is_true(v:authorize(entry, "read"))
        assert.is_false(v:authorize(entry, "write"))
        assert.is_true(v:authorize(v:verify(all), "write"))
    end)

    it("raises for a scope or a header that is not a string, naming authenticate", function()
        assert.has_error(function() v:authenticate("Bearer " .. reader, 1) end,
            "bad argument #3 to 'authenticate' (string expected, got number)")
        assert.has_error(function() v:authenticate({}) end,
            "bad argument #2 to 'authenticate' (string expected, got table)")
    end)
end)

describe("scope checks on a keystore with many scope names", function()
    -- The check finds a scope through bits over the keystore's names, 62 of them; names
    -- beyond those are looked for in the key's list. Every answer must be the entry's list's.
    local function names_of(i)
        local t = { "n" .. i, "n" .. (i * 7 % 90), "shared" }
        if i % 3 == 0 then t[#t + 1] = ("x"):rep(63) .. (i % 10) end -- 64 bytes
        return t
    end
    local asked = { "shared", "n", "n1x", "read", "write", ("x"):rep(64), ("x"):rep(63) .. "0" }
    for i = 0, 99 do
        asked[#asked + 1] = "n" .. i
    end

    local function check_all(check, keys)
        local granted, refused = 0, 0
        for alias, key in pairs(keys) do
            local entry = assert(check("Bearer " .. key))
            assert.equal(alias, entry.alias)
            for _, scope in ipairs(asked) do
                local got, why, holder = check("Bearer " .. key, scope)
                if apikey.authorize(entry, scope) then
                    assert.equal(alias, got and got.alias, alias .. " in " .. scope)
                    granted = granted + 1
                else
                    assert.same({ nil, "insufficient_scope", alias },
                        { got, why, holder and holder.alias }, alias .. " in " .. scope)
                    refused = refused + 1
                end
            end
        end
        return granted, refused
    end

    it("answers for every key and name as the key's list does, before and after changes", function()
        local ks, path = keystore(finally)
        local keys = {}
        for i = 1, 80 do
            keys["k" .. i] = assert(ks:create("k" .. i, { scopes = names_of(i) }))
        end
        keys.all = assert(ks:create("all"))
        local check = function(...) return ks:authenticate(...) end
        local granted, refused = check_all(check, keys)
        assert.is_true(granted > 300 and refused > 7000, granted .. " granted, " .. refused)

        -- Reopened (names in file order), after a revoke, and in a verifier.
        local again = assert(apikey.open { path = path })
        h.defer(finally, function() again:close() end)
        assert.is_true(again:revoke("k1"))
        keys.k1 = nil
        keys.late = assert(again:create("late", { scopes = { "late", "n5" } }))
        asked[#asked + 1] = "late"
        check_all(function(...) return again:authenticate(...) end, keys)
        local v = assert(apikey.verifier { path = path })
        h.defer(finally, function() v:close() end)
        check_all(function(...) return v:authenticate(...) end, keys)
    end)
end)

describe("rotate, in the Lua API", function()
    it("gives the alias a new key with the same scopes and expiry; the old one stops at once", function()
        local ks = keystore(finally)
        local old = assert(ks:create("bot", { scopes = { "read" }, expires_in = "30d" }))
        local before = ks:verify(old)
        local key, entry, previous = assert(ks:rotate("bot"))
        assert.not_equal(old, key)
        assert.same({ "bot", { "read" }, before.expires }, { entry.alias, entry.scopes, entry.expires })
        assert.equal("bot", ks:verify(key).alias)
        assert.same({ nil, "expired" }, { ks:verify(old) })
        assert.is_true(previous.expired)
        assert.equal("integer", math.type(previous.rotated))
    end)

    it("with a grace period, the old key works until it ends, then is refused as expired", function()
        local ks = keystore(finally)
        local old = assert(ks:create("bot"))
        local now = os.time()
        local key, _, previous = assert(ks:rotate("bot", { grace = "1h" }))
        assert.equal("bot", ks:verify(old).alias)
        assert.equal("bot", ks:verify(key).alias)
        assert.is_false(previous.expired)
        assert.is_true(previous.rotated >= now + 3600 and previous.rotated <= os.time() + 3600)
        assert.same({ nil, "expired" }, { ks:verify(old, previous.rotated) })
        assert.equal("bot", ks:verify(key, previous.rotated).alias)
        local list = ks:list()
        assert.same({ "bot", "bot" }, { list[1].alias, list[2].alias })
        assert.same({ key:sub(-4), old:sub(-4) }, { list[1].hint, list[2].hint })
        assert.is_nil(list[1].rotated)
    end)

    it("takes a new expiry instead of the old one", function()
        local ks = keystore(finally)
        assert(ks:create("bot", { expires_in = "1d" }))
        local _, entry = assert(ks:rotate("bot", { expires_in = "90d" }))
        assert.is_true(entry.expires >= os.time() + 90 * 86400 - 5)
        local _, again = assert(ks:rotate("bot", { expires = "2099-01-01T00:00:00Z" }))
        assert.equal(h.utc_seconds("2099-01-01T00:00:00Z"), again.expires)
    end)

    it("revoke removes the alias's key and the key it replaced", function()
        local ks = keystore(finally)
        local old = assert(ks:create("bot"))
        local key = assert(ks:rotate("bot", { grace = "1h" }))
        assert(ks:revoke("bot"))
        assert.same({}, ks:list())
        assert.same({ nil, "unknown" }, { ks:verify(old) })
        assert.same({ nil, "unknown" }, { ks:verify(key) })
    end)

    it("drops the keys it replaced before once their grace has ended", function()
        local ks = keystore(finally)
        assert(ks:create("bot"))
        assert(ks:rotate("bot"))
        assert.equal(2, ks:count())
        assert(ks:rotate("bot"))
        assert.equal(2, ks:count())
    end)

    it("refuses an unknown alias ('notfound'), a bad grace ('invalid'), an expired key without a new expiry", function()
        local ks, path = keystore(finally)
        fails("notfound", "'nope'", ks:rotate("nope"))
        assert(ks:create("bot"))
        fails("invalid", "invalid grace period '0s'", ks:rotate("bot", { grace = "0s" }))
        fails("invalid", "invalid grace period 'soon'", ks:rotate("bot", { grace = "soon" }))
        assert.has_error(function() ks:rotate("bot", { grace = -1 }) end)
        assert.has_error(function() ks:rotate("bot", { graze = "1h" }) end)
        h.create_expired(path, "old")
        fails("invalid", "expired on", ks:rotate("old"))
    end)

    it("core.unrotate undoes a rotate whose key nobody saw", function()
        local ks = keystore(finally)
        local old = assert(ks:create("bot", { scopes = { "read" } }))
        local key = assert(ks:rotate("bot"))
        assert(core.unrotate(ks, key))
        assert.equal("bot", ks:verify(old).alias)
        assert.same({ nil, "unknown" }, { ks:verify(key) })
        assert.equal(1, ks:count())
        assert.is_nil(ks:list()[1].rotated)
    end)
end)

describe("revoke_key, in the Lua API", function()
    it("revokes the alias a key belongs to and returns it", function()
        local ks = keystore(finally)
        local key = assert(ks:create("Leaky"))
        local other = assert(ks:create("other"))
        assert.equal("Leaky", ks:revoke_key(key:upper()))
        assert.same({ nil, "unknown" }, { ks:verify(key) })
        assert.equal("other", ks:verify(other).alias)
    end)

    it("revokes the alias of a key that rotate replaced, and its new key", function()
        local ks = keystore(finally)
        local old = assert(ks:create("bot"))
        local new = assert(ks:rotate("bot", { grace = "1h" }))
        assert.equal("bot", ks:revoke_key(old))
        assert.same({ nil, "unknown" }, { ks:verify(new) })
    end)

    it("returns 'notfound' for a key that is not there, 'invalid' for text that is not a key", function()
        local ks, path = keystore(finally)
        assert(ks:create("bot"))
        local before = h.read_file(path)
        fails("notfound", nil, ks:revoke_key(UNKNOWN_KEY))
        local ok, msg, code = ks:revoke_key("not-a-key")
        fails("invalid", "not an API key", ok, msg, code)
        assert.equal(before, h.read_file(path))
        assert.has_error(function() ks:revoke_key(nil) end)
    end)
end)

describe("apikey create --scope, list", function()
    it("prints and lists the scopes after the expiry; the others' lines are the guide's", function()
        local ks = h.tmpdir(finally) .. "/keys.p12"
        local plain = create(ks, "plain")
        local out, err, code = run { "create", "reader", "--keystore", ks, "--scope", "read,mcp",
            "--scope", "metrics:read" }
        assert.same({ "", 0 }, { err, code })
        local key = out:match("(" .. h.UUID .. ")")
        assert.equal(("API key created for alias 'reader': %s (No expiration) [read, mcp, metrics:read]\n%s\n")
            :format(key, h.STORE_LINE), out)
        assert.equal(("plain ********************%s (No expiration)\nreader ********************%s (No expiration) [read, mcp, metrics:read]\n")
            :format(plain:sub(-4), key:sub(-4)), (run { "list", "--keystore", ks }))
        local list = json.decode((run { "list", "--json", "--keystore", ks }), 1, json.null)
        assert.same({ json.null, { "read", "mcp", "metrics:read" } }, { list[1].scopes, list[2].scopes })
    end)

    for _, bad in ipairs { "a b", "", "read,,write", "caf\xc3\xa9" } do
        it(("refuses --scope %q, exit 1, writing nothing"):format(bad), function()
            local ks = h.tmpdir(finally) .. "/keys.p12"
            local out, err, code = run { "create", "k", "--keystore", ks, "--scope", bad }
            assert.same({ "", 1 }, { out, code })
            assert.matches("^apikey: [^\n]*scope[^\n]*\n$", err)
            assert.is_false(h.exists(ks))
        end)
    end
end)

describe("apikey rotate", function()
    it("prints the new key as create does; the old key stops at once, refused as expired", function()
        local ks = h.tmpdir(finally) .. "/keys.p12"
        local old = create(ks, "mcp-openai", { "--scope", "read" })
        local out, err, code = run { "rotate", "mcp-openai", "--keystore", ks }
        assert.same({ "", 0 }, { err, code })
        local key = out:match("(" .. h.UUID .. ")")
        assert.not_equal(old, key)
        assert.equal(("API key created for alias 'mcp-openai': %s (No expiration) [read]\n%s\n"
            .. "The previous key of 'mcp-openai' no longer works.\n"):format(key, h.STORE_LINE), out)
        assert.same({ "", "expired\n", 1 }, { run { "verify", old, "--keystore", ks } })
        assert.same({ "mcp-openai\n", "", 0 }, { run { "verify", key, "--keystore", ks } })
    end)

    it("--grace keeps the old key working, on its own line in list, until the grace ends", function()
        local ks = h.tmpdir(finally) .. "/keys.p12"
        local old = create(ks, "mcp-openai")
        local out, err, code = run { "rotate", "mcp-openai", "--keystore", ks, "--grace", "2s" }
        assert.same({ "", 0 }, { err, code })
        local key = out:match("(" .. h.UUID .. ")")
        local until_ = out:match("The previous key of 'mcp%-openai' stays valid until (%S+)%.\n$")
        assert.truthy(until_, out)
        assert.equal(("mcp-openai ********************%s (No expiration)\n"
            .. "mcp-openai ********************%s (Rotated, valid until %s)\n")
            :format(key:sub(-4), old:sub(-4), until_), (run { "list", "--keystore", ks }))
        assert.same({ "mcp-openai\n", "", 0 }, { run { "verify", old, "--keystore", ks } })
        h.sleep(2.2)
        assert.same({ "", "expired\n", 1 }, { run { "verify", old, "--keystore", ks } })
        assert.equal(("mcp-openai ********************%s (Rotated, expired on %s)\n"):format(old:sub(-4), until_),
            h.lines((run { "list", "--keystore", ks }))[2] .. "\n")
        assert.same({ "API key 'mcp-openai' has been revoked.\n", "", 0 },
            { run { "revoke", "mcp-openai", "--keystore", ks } })
        assert.equal("No API keys found.\n", (run { "list", "--keystore", ks }))
    end)

    it("--expires-in gives the new key its own expiry", function()
        local ks = h.tmpdir(finally) .. "/keys.p12"
        create(ks, "bot", { "--expires-on", "2099-01-01T00:00:00" })
        local out = run { "rotate", "bot", "--keystore", ks, "--expires-on", "2098-01-01T00:00:00" }
        assert.truthy(out:find("(Expires on 2098-01-01T00:00:00)", 1, true), out)
    end)

    it("prints 'No API key found with alias ...' for an unknown alias, exit 1", function()
        local ks = h.tmpdir(finally) .. "/keys.p12"
        assert.same({ "", "No API key found with alias 'nope'.\n", 1 }, { run { "rotate", "nope", "--keystore", ks } })
    end)

    it("refuses a bad --grace, exit 1, and --expires-on with --expires-in, exit 2", function()
        local ks = h.tmpdir(finally) .. "/keys.p12"
        create(ks, "bot")
        local before = h.read_file(ks)
        local out, err, code = run { "rotate", "bot", "--keystore", ks, "--grace", "90" }
        assert.same({ "", 1 }, { out, code })
        assert.matches("invalid grace period '90'", err)
        assert.equal(2, select(3, run { "rotate", "bot", "--keystore", ks, "--expires-on",
            "2099-01-01T00:00:00", "--expires-in", "1d" }))
        assert.equal(before, h.read_file(ks))
    end)

    it("undoes the rotation when the new key cannot be printed", function()
        local ks = h.tmpdir(finally) .. "/keys.p12"
        local old = create(ks, "bot")
        local cmd = h.lua .. " " .. h.quote_all { h.bin, "rotate", "bot", "--keystore", ks }
            .. " >/dev/full"
        local _, err, code = h.exec({ "sh", "-c", cmd })
        assert.equal(1, code)
        assert.truthy(err:find("rotation of alias 'bot' was undone", 1, true), err)
        assert.same({ "bot\n", "", 0 }, { run { "verify", old, "--keystore", ks } })
        assert.equal(1, #h.lines((run { "list", "--keystore", ks })))
    end)
end)

describe("apikey revoke --key -", function()
    it("revokes the alias of the key read from standard input, with the usual line", function()
        local ks = h.tmpdir(finally) .. "/keys.p12"
        local key = create(ks, "mcp-openai")
        local other = create(ks, "other")
        assert.same({ "API key 'mcp-openai' has been revoked.\n", "", 0 },
            { run({ "revoke", "--key", "-", "--keystore", ks }, nil, key .. "\n") })
        assert.same({ "", "unknown\n", 1 }, { run { "verify", key, "--keystore", ks } })
        assert.same({ "other\n", "", 0 }, { run { "verify", other, "--keystore", ks } })
    end)

    it("says so for a key that is not there, exit 1, the file unchanged", function()
        local ks = h.tmpdir(finally) .. "/keys.p12"
        create(ks, "bot")
        local before = h.read_file(ks)
        assert.same({ "", "No API key found for the key given.\n", 1 },
            { run({ "revoke", "--key", "-", "--keystore", ks }, nil, UNKNOWN_KEY .. "\n") })
        local out, err, code = run({ "revoke", "--key", "-", "--keystore", ks }, nil, "hello\n")
        assert.same({ "", 1 }, { out, code })
        assert.matches("^apikey: the text given is not an API key", err)
        assert.equal(before, h.read_file(ks))
    end)

    it("takes the key from standard input only: --key KEY is a usage error that does not echo it", function()
        local ks = h.tmpdir(finally) .. "/keys.p12"
        local key = create(ks, "bot")
        local out, err, code = run { "revoke", "--key", key, "--keystore", ks }
        assert.same({ "", 2 }, { out, code })
        assert.matches("^apikey: %-%-key takes only '%-'", err)
        assert.is_nil(err:find(key:sub(1, 32), 1, true))
        assert.same({ "bot\n", "", 0 }, { run { "verify", key, "--keystore", ks } })
    end)

    it("refuses an alias with --key, exit 2", function()
        local ks = h.tmpdir(finally) .. "/keys.p12"
        assert.same({ "", "apikey: give an alias or --key -, not both (see 'apikey --help')\n", 2 },
            { run({ "revoke", "bot", "--key", "-", "--keystore", ks }, nil, UNKNOWN_KEY .. "\n") })
    end)
end)

describe("apikey --help", function()
    it("shows rotate, --scope, --grace and --key", function()
        assert.truthy((run { "--help" }):find("rotate", 1, true))
        assert.truthy((run { "create", "--help" }):find("--scope", 1, true))
        assert.truthy((run { "rotate", "--help" }):find("--grace", 1, true))
        assert.truthy((run { "revoke", "--help" }):find("--key", 1, true))
    end)
end)
