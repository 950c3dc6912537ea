-- The Lua API, `require "apikey"`: every call, every failure code it can return, and misuse.
local h = require "spec.helpers"
local apikey = require "apikey"

-- An integer, on Lua 5.1 too (which has no integer subtype)
local function is_integer(x)
    if math.type then
        return math.type(x) == "integer"
    end
    return type(x) == "number" and x % 1 == 0
end

local FAST = 1000 -- PBKDF2 iterations for keystores with a password, to keep the specs quick

local keystore, fails = h.open_keystore, h.fails

-- A test for each value of the create option that create refuses: 'invalid', naming the
-- value as an invalid WHAT.
local function invalid_each(what, option, values)
    for _, bad in ipairs(values) do
        it("returns 'invalid' for the " .. what .. " '" .. bad .. "'", function()
            local ks = keystore(finally)
            fails("invalid", "invalid " .. what .. " '" .. bad .. "'", ks:create("k", { [option] = bad }))
        end)
    end
end

describe("apikey.open", function()
    it("opens a missing file as an empty keystore and writes nothing", function()
        local ks, path = keystore(finally)
        assert.same({}, ks:list())
        assert.equal(0, ks:count())
        assert.is_false(h.exists(path))
        assert.is_false(h.exists(path .. ".lock"))
    end)

    it("opens a keystore written before, with its keys", function()
        local ks, path = keystore(finally)
        local key = assert(ks:create("ci-bot"))
        ks:close()
        local again = assert(apikey.open { path = path })
        assert.equal("ci-bot", again:verify(key).alias)
        again:close()
    end)

    it("opens a keystore with its password, and only with it: 'badpassword' otherwise", function()
        local ks, path = keystore(finally, { password = "right", iterations = FAST })
        assert(ks:create("ci-bot"))
        for _, wrong in ipairs { "wrong", "", false } do
            fails("badpassword", path, apikey.open { path = path, password = wrong or nil })
        end
        local again = assert(apikey.open { path = path, password = "right" })
        assert.equal(1, again:count())
        again:close()
    end)

    it("returns 'corrupt' for a file that is not a keystore, naming it", function()
        local dir = h.tmpdir(finally)
        local path = dir .. "/keys.p12"
        h.write_file(path, "not a keystore")
        os.execute("chmod 600 " .. h.quote(path))
        fails("corrupt", path, apikey.open { path = path })
    end)

    it("returns 'io' for a path that is a folder, naming it", function()
        local dir = h.tmpdir(finally)
        fails("io", dir, apikey.open { path = dir })
    end)

    it("returns 'insecure' for a keystore that group or others can write", function()
        local ks, path = keystore(finally)
        assert(ks:create("ci-bot"))
        assert.equal(0, h.sh("chmod 664 " .. h.quote(path)))
        fails("insecure", "chmod 600 " .. path, apikey.open { path = path })
        assert.equal(0, h.sh("chmod 646 " .. h.quote(path)))
        fails("insecure", path, apikey.open { path = path })
    end)

    it("raises on misuse", function()
        assert.has_error(function() apikey.open() end)
        assert.has_error(function() apikey.open("keys.p12") end)
        assert.has_error(function() apikey.open {} end)
        assert.has_error(function() apikey.open { path = "" } end)
        assert.has_error(function() apikey.open { path = 42 } end)
        assert.has_error(function() apikey.open { path = "k.p12", password = 42 } end)
        assert.has_error(function() apikey.open { path = "k.p12", iterations = 0 } end)
        assert.has_error(function() apikey.open { path = "k.p12", iterations = 1.5 } end)
        assert.has_error(function() apikey.open { path = "k.p12", lock_timeout = -1 } end)
        assert.has_error(function() apikey.open { path = "k.p12", lock_timeout = "1" } end)
        assert.has_error(function() apikey.open { path = "k.p12", lock_timeout = 0 / 0 } end)
    end)
end)

describe("ks:create", function()
    it("returns a lower-case UUID v4 key and its entry, without an expiry", function()
        local ks = keystore(finally)
        local before = os.time()
        local key, e = ks:create("ci-bot")
        assert.matches("^" .. h.UUID .. "$", key)
        assert.same({ "ci-bot", key:sub(-4), ("*"):rep(20) .. key:sub(-4), false },
            { e.alias, e.hint, e.masked, e.expired })
        assert.is_nil(e.expires)
        assert.is_true(is_integer(e.created) and e.created >= before and e.created <= os.time())
    end)

    it("takes expires as a local date, a UTC date, a date with an offset, or a Unix time", function()
        local ks = keystore(finally)
        local t = os.time { year = 2099, month = 12, day = 31, hour = 23, min = 59, sec = 59 }
        assert.equal(t, select(2, ks:create("local", { expires = "2099-12-31T23:59:59" })).expires)
        assert.equal(4102444800, select(2, ks:create("utc", { expires = "2100-01-01T00:00:00Z" })).expires)
        assert.equal(4102444800 - 5400, select(2, ks:create("offset", { expires = "2100-01-01T00:00:00+01:30" })).expires)
        assert.equal(4102444800, select(2, ks:create("unix", { expires = 4102444800 })).expires)
    end)

    it("takes expires_in as a duration from now", function()
        local ks = keystore(finally)
        for unit, seconds in pairs { s = 1, m = 60, h = 3600, d = 86400, w = 604800 } do
            local _, e = assert(ks:create("in-" .. unit, { expires_in = "7" .. unit }))
            assert.equal(7 * seconds, e.expires - e.created)
        end
    end)

    it("returns 'exists' for an alias that exists, regardless of case, and keeps the file", function()
        local ks, path = keystore(finally)
        assert(ks:create("CI-Bot"))
        local before = h.read_file(path)
        fails("exists", "ci-bot", ks:create("ci-bot"))
        fails("exists", "CI-BOT", ks:create("CI-BOT"))
        assert.equal(before, h.read_file(path))
        assert.equal(1, ks:count())
    end)

    it("sees a key another process created: 'exists' even when this handle has not reloaded", function()
        local ks, path = keystore(finally)
        local other = assert(apikey.open { path = path })
        assert(other:create("ci-bot"))
        other:close()
        fails("exists", "ci-bot", ks:create("ci-bot"))
    end)

    local invalid = {
        { "", "the alias is empty" },
        { ("x"):rep(129), "129 bytes" },
        { "a\0b", "control character U+0000" },
        { "a\tb", "control character U+0009" },
        { "a\127b", "control character U+007F" },
        { "a\u{85}b", "control character U+0085" },
        { "a\u{2066}b", "control character U+2066" },
        { "\xc3\x28", "not valid UTF-8" },
        { "\xed\xa0\x80", "not valid UTF-8" },
        { " ci-bot", "starts or ends with a blank" },
        { "ci-bot ", "starts or ends with a blank" },
        { "\u{3000}ci-bot", "starts or ends with a blank" },
        -- invisible: Unicode's default-ignorable code points and the other format characters
        { "abc\u{200B}def", "invisible character U+200B" },
        { "\u{FEFF}abc", "invisible character U+FEFF" },
        { "ab\u{AD}c", "invisible character U+00AD" },
        { "a\u{34F}b", "invisible character U+034F" },
        { "a\u{115F}b", "invisible character U+115F" },
        { "a\u{FFF9}b", "invisible character U+FFF9" },
        { "ab\u{E0041}", "invisible character U+E0041" },
        { "ab\u{3164}", "invisible character U+3164" },
        -- a key pasted where the alias goes
        { "0d6e1c5a-3b0f-4d3e-9a51-8c2f7e4b91a7", "shaped like an API key" },
        { "key 0D6E1C5A-3B0F-4D3E-9A51-8C2F7E4B91A7", "shaped like an API key" },
        { "API_KEY:bot", "the prefix of MetricsHub's own keys" },
    }
    for _, case in ipairs(invalid) do
        it("returns 'invalid' for the alias " .. ("%q"):format(case[1]):gsub("\\\n", "\\n"), function()
            local ks, path = keystore(finally)
            fails("invalid", case[2], ks:create(case[1]))
            assert.is_false(h.exists(path))
        end)
    end

    it("accepts an alias of 128 bytes", function()
        local ks = keystore(finally)
        assert.equal(("é"):rep(64), select(2, assert(ks:create(("é"):rep(64)))).alias)
    end)

    invalid_each("date", "expires", { "2099-02-29T00:00:00", "2099-12-31",
        "2099-12-31T23:59:60", "2099-12-31T24:00:00", "2099-12-31T23:59:59+24:00",
        "31/12/2099", "" })

    it("takes minutes only and a fraction of a second (dropped), as Java's LocalDateTime.parse", function()
        local ks = keystore(finally)
        local _, entry = assert(ks:create("minutes", { expires = "2099-12-31T23:59" }))
        local _, frac = assert(ks:create("fraction", { expires = "2099-12-31T23:59:59.5" }))
        assert.equal(59, frac.expires - entry.expires)
    end)

    it("returns 'invalid' for a date in the past, naming the date and saying it is past", function()
        local ks, path = keystore(finally)
        fails("invalid", "the date 2020-01-01T00:00:00Z is in the past",
            ks:create("k", { expires = "2020-01-01T00:00:00Z" }))
        fails("invalid", "is in the past", ks:create("k", { expires = os.time() }))
        fails("invalid", "is in the past", ks:create("k", { expires = -1 }))
        assert.is_false(h.exists(path))
    end)

    it("returns 'invalid' for a Unix time after the year 9999", function()
        local ks = keystore(finally)
        fails("invalid", "after the year 9999", ks:create("k", { expires = 253402300800 }))
        assert(ks:create("k", { expires = 253402300799 }))
    end)

    invalid_each("duration", "expires_in",
        { "0s", "0d", "000w", "90", "d", "-1d", "+1d", "1.5d", "1e3s", "90 d", " 90d", "90D", "90y", "" })

    it("returns 'locked' when another writer holds the lock past lock_timeout, and writes nothing", function()
        local ks, path = keystore(finally, { lock_timeout = 0.2 })
        assert(ks:create("first"))
        local before = h.read_file(path)
        local ready = path .. ".ready"
        -- flock(1) holds the lock for 3 s in the background.
        assert.equal(0, h.sh(("flock %s sh -c 'touch %s; sleep 3' >/dev/null 2>&1 &")
            :format(h.quote(path .. ".lock"), h.quote(ready))))
        for _ = 1, 200 do
            if h.exists(ready) then
                break
            end
            h.sh("sleep 0.02")
        end
        assert.is_true(h.exists(ready))
        fails("locked", path, ks:create("second"))
        fails("locked", path, ks:revoke("first"))
        assert.equal(before, h.read_file(path))
    end)

    it("returns 'io' when the keystore's folder cannot be made", function()
        local dir = h.tmpdir(finally)
        local ks = assert(apikey.open { path = dir .. "/missing/parent/keys.p12" })
        fails("io", dir .. "/missing", ks:create("k"))
        ks:close()
    end)

    it("raises on misuse", function()
        local ks = keystore(finally)
        assert.has_error(function() ks:create() end)
        assert.has_error(function() ks:create(42) end)
        assert.has_error(function() ks:create("k", "90d") end)
        assert.has_error(function() ks:create("k", { expires = true }) end)
        assert.has_error(function() ks:create("k", { expires = 4102444800.5 }) end)
        assert.has_error(function() ks:create("k", { expires_in = 90 }) end)
        assert.has_error(function() ks:create("k", { expires = "2099-01-01T00:00:00", expires_in = "1d" }) end)
        assert.has_error(function() ks.create({}, "k") end)
        assert.equal(0, ks:count())
    end)
end)

describe("ks:list", function()
    it("returns the entries in creation order with alias, hint, masked, created, expires, expired", function()
        local ks, path = keystore(finally)
        local k1 = ks:create("b-first")
        local k2 = ks:create("a-second", { expires = 4102444800 })
        local k3 = h.create_expired(path, "c-third")
        local list = ks:list()
        assert.equal(3, #list)
        assert.same({ "b-first", k1:sub(-4), ("*"):rep(20) .. k1:sub(-4), false },
            { list[1].alias, list[1].hint, list[1].masked, list[1].expired })
        assert.is_nil(list[1].expires)
        assert.same({ "a-second", k2:sub(-4), 4102444800, false },
            { list[2].alias, list[2].hint, list[2].expires, list[2].expired })
        assert.same({ "c-third", k3:sub(-4), true }, { list[3].alias, list[3].hint, list[3].expired })
        for _, e in ipairs(list) do
            assert.is_true(is_integer(e.created))
        end
    end)

    it("shows the changes another process made", function()
        local ks, path = keystore(finally)
        assert(ks:create("mine"))
        local other = assert(apikey.open { path = path })
        assert(other:create("theirs"))
        assert(other:revoke("mine"))
        other:close()
        assert.same({ "theirs" }, { ks:list()[1].alias, ks:list()[2] })
    end)

    it("returns nil, a message and a code when the file became unreadable", function()
        local ks, path = keystore(finally)
        assert(ks:create("k"))
        h.write_file(path, "garbage")
        fails("corrupt", path, ks:list())
    end)
end)

describe("ks:revoke", function()
    it("removes the key of an alias, matched regardless of case; the key stops working", function()
        local ks = keystore(finally)
        local key = assert(ks:create("CI-Bot"))
        assert(ks:create("other"))
        assert.is_true(ks:revoke("ci-bot"))
        assert.same({ nil, "unknown" }, { ks:verify(key) })
        assert.same({ "other" }, { ks:list()[1].alias, ks:list()[2] })
    end)

    it("returns 'notfound' for an alias that is not there, and writes nothing", function()
        local ks, path = keystore(finally)
        fails("notfound", "nope", ks:revoke("nope"))
        assert.is_false(h.exists(path))
        assert(ks:create("k"))
        local before = h.read_file(path)
        fails("notfound", "nope", ks:revoke("nope"))
        assert.equal(before, h.read_file(path))
    end)

    it("lets the alias be used again", function()
        local ks = keystore(finally)
        local old = assert(ks:create("ci-bot"))
        assert(ks:revoke("ci-bot"))
        local new = assert(ks:create("ci-bot"))
        assert.not_equal(old, new)
        assert.equal("ci-bot", ks:verify(new).alias)
    end)

    it("raises on misuse", function()
        local ks = keystore(finally)
        assert.has_error(function() ks:revoke() end)
        assert.has_error(function() ks:revoke(42) end)
    end)
end)

describe("ks:verify", function()
    it("returns the entry of a valid key", function()
        local ks = keystore(finally)
        local key, created = ks:create("ci-bot", { expires = 4102444800 })
        local e = ks:verify(key)
        assert.same({ "ci-bot", key:sub(-4), created.created, 4102444800, false },
            { e.alias, e.hint, e.created, e.expires, e.expired })
    end)

    it("accepts the key in upper case", function()
        local ks = keystore(finally)
        local key = ks:create("ci-bot")
        assert.equal("ci-bot", ks:verify(key:upper()).alias)
    end)

    it("returns nil and 'unknown' for a well-formed key that is not there", function()
        local ks = keystore(finally)
        assert(ks:create("ci-bot"))
        assert.same({ nil, "unknown" }, { ks:verify("eb47c2be-927f-495f-aa97-0ba0f60b8986") })
    end)

    it("returns nil and 'expired' for a key past its date", function()
        local ks, path = keystore(finally)
        local key = h.create_expired(path, "old")
        assert(ks:refresh())
        assert.same({ nil, "expired" }, { ks:verify(key) })
    end)

    it("judges expiry at now, when given: valid before the date, expired from it", function()
        local ks = keystore(finally)
        local key = ks:create("k", { expires = 4102444800 })
        assert.equal("k", ks:verify(key, 4102444799).alias)
        assert.same({ nil, "expired" }, { ks:verify(key, 4102444800) })
    end)

    it("judges a key without expiry valid at any now, the largest integer included", function()
        local ks = keystore(finally)
        local key = ks:create("k")
        local last = math.maxinteger or 2 ^ 53 -- LuaJIT: the largest exact integer of a double
        for _, now in ipairs { 0, 4102444800, last - 1, last } do
            assert.equal("k", (ks:verify(key, now) or {}).alias, tostring(now))
        end
    end)

    for _, bad in ipairs { "", "secret", "eb47c2be-927f-495f-aa97-0ba0f60b89861", "eb47c2be_927f_495f_aa97_0ba0f60b8986",
        "eb47c2be-927f-495f-aa97-0ba0f60b898\0" } do
        it("returns nil and 'malformed' for " .. ("%q"):format(bad):gsub("\\\n", "\\n"), function()
            local ks = keystore(finally)
            assert.same({ nil, "malformed" }, { ks:verify(bad) })
        end)
    end

    it("raises on misuse", function()
        local ks = keystore(finally)
        assert.has_error(function() ks:verify() end)
        assert.has_error(function() ks:verify(42) end)
        assert.has_error(function() ks:verify("k", 1.5) end)
    end)
end)

describe("ks:refresh", function()
    it("reloads when another process changed the file, and says whether it did", function()
        local ks, path = keystore(finally)
        assert.is_false(ks:refresh())
        local other = assert(apikey.open { path = path })
        local key = assert(other:create("theirs"))
        other:close()
        assert.same({ nil, "unknown" }, { ks:verify(key) })
        assert.is_true(ks:refresh())
        assert.equal("theirs", ks:verify(key).alias)
        assert.is_false(ks:refresh())
    end)
end)

describe("ks:close", function()
    it("closes once; calling it again is safe; a closed keystore raises", function()
        local ks = keystore(finally)
        ks:close()
        ks:close()
        assert.equal("apikey keystore (closed)", tostring(ks))
        local ok, err = pcall(ks.list, ks)
        assert.is_false(ok)
        assert.truthy(err:find("bad argument #1 to 'list' (the keystore is closed)", 1, true), err)
        assert.has_error(function() ks:create("k") end)
        assert.has_error(function() ks:verify("k") end)
        assert.has_error(function() ks:revoke("k") end)
    end)

    -- to-be-closed variables are Lua 5.4's: the chunk is compiled there only
    local it_54 = _VERSION == "Lua 5.4" and it or pending
    it_54("closes at the end of the scope with <close>", function()
        local dir = h.tmpdir(finally)
        local outer, shown = assert(load([[
            local apikey, path = ...
            local ks <close> = assert(apikey.open { path = path })
            return ks, tostring(ks)
        ]]))(apikey, dir .. "/keys.p12")
        assert.equal("apikey keystore (" .. dir .. "/keys.p12)", shown)
        assert.equal("apikey keystore (closed)", tostring(outer))
    end)
end)

describe("apikey.open iterations", function()
    it("defaults to 2048 without a password and 600000 with one, and takes a setting", function()
        local dir = h.tmpdir(finally)
        local function iterations(path, pw)
            local out = h.capture(("openssl pkcs12 -info -nokeys -nocerts -in %s -passin %s 2>&1")
                :format(h.quote(path), h.quote("pass:" .. pw)))
            return out:match("MAC:[^\n]-Iteration (%d+)")
        end
        for _, case in ipairs { { "", nil, "2048" }, { "pw", nil, "600000" }, { "pw", 5000, "5000" } } do
            local path = dir .. "/" .. case[3] .. ".p12"
            local ks = assert(apikey.open { path = path, password = case[1], iterations = case[2] })
            assert(ks:create("k"))
            ks:close()
            assert.equal(case[3], iterations(path, case[1]))
        end
    end)
end)

describe("apikey.printable", function()
    it("keeps printable UTF-8 as it is", function()
        assert.equal("ci-bot clé ✓", apikey.printable("ci-bot clé ✓"))
    end)

    it("escapes control characters, bidirectional overrides and bytes that are not UTF-8", function()
        assert.equal("a\\x1B[2J\\x0A\\u{202E}\\xFF\\x00b", apikey.printable("a\27[2J\n\u{202E}\xff\0b"))
    end)

    it("cuts text past 160 bytes with ...", function()
        assert.equal(("x"):rep(160), apikey.printable(("x"):rep(160)))
        assert.equal(("x"):rep(160) .. "...", apikey.printable(("x"):rep(161)))
    end)
end)

describe("one keystore object", function()
    it("is the core's apikey.Keystore userdata, with every method on it", function()
        local ks = keystore(finally)
        assert.equal("userdata", type(ks))
        assert.equal("apikey.Keystore", getmetatable(ks).__name)
        for _, m in ipairs { "create", "list", "revoke", "verify", "authenticate", "refresh", "count", "warning", "close" } do
            assert.is_function(ks[m], m)
        end
    end)

    it("names the method and the type when called on something else", function()
        local ks = keystore(finally)
        local ok, err = pcall(ks.count, {})
        assert.is_false(ok)
        assert.truthy(err:find("bad argument #1 to 'count' (apikey keystore expected, got table)", 1, true), err)
    end)
end)

describe("option names", function()
    local function raises_unknown(name, f)
        local ok, err = pcall(f)
        assert.is_false(ok)
        assert.truthy(err:find("unknown option '" .. name .. "'", 1, true), err)
    end

    it("an option that does not exist raises, naming it, in every call that takes options", function()
        local dir = h.tmpdir(finally)
        local path = dir .. "/keys.p12"
        raises_unknown("pasword", function() apikey.open { path = path, pasword = "x" } end)
        raises_unknown("intervall", function() apikey.verifier { path = path, intervall = 5 } end)
        local ks = keystore(finally)
        raises_unknown("expire", function() ks:create("bot", { expire = "1d" }) end)
        assert.equal(0, ks:count())
        assert.is_false(h.exists(path))
    end)
end)

describe("entries", function()
    it("are complete when returned: verify's has masked and expired, as list's", function()
        local ks = keystore(finally)
        local key, created = assert(ks:create("ci-bot"))
        local e = assert(ks:verify(key))
        assert.same({ "ci-bot", ("*"):rep(20) .. key:sub(-4), false },
            { e.alias, e.masked, e.expired })
        assert.same({ e.alias, e.hint, e.masked, e.created, e.expired },
            { created.alias, created.hint, created.masked, created.created, created.expired })
    end)

    it("are never changed behind the caller: the table verify returns stays as it was", function()
        local ks = keystore(finally)
        local key = assert(ks:create("ci-bot"))
        local e = assert(ks:verify(key))
        local copy = {}
        for k, v in pairs(e) do
            copy[k] = v
        end
        ks:list()
        ks:verify(key)
        assert(ks:create("other"))
        assert.same(copy, e)
    end)
end)

describe("ks:warning", function()
    it("is nil after a change that was confirmed on disk", function()
        local ks = keystore(finally)
        assert(ks:create("ci-bot"))
        assert.is_nil(ks:warning())
        assert(ks:revoke("ci-bot"))
        assert.is_nil(ks:warning())
    end)
end)
