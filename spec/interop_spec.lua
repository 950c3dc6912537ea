-- Sharing the keystore with Java 17's keytool and with MetricsHub: the real keytool rewrites a
-- keystore apikey wrote, and tests/MetricsHubStore.java writes and reads one exactly as
-- MetricsHub's command and server do. A JVM starts in about half a second: each test batches
-- its Java operations into as few runs as it can.
local h = require "spec.helpers"

local q = h.quote

local JDK = h.jdk17()
local must = h.must

local function keytool(file, storepass, ...)
    return h.keytool(JDK, file, storepass, ...)
end

-- The aliases keytool lists, sorted, each with its entry type.
local function keytool_list(file, storepass)
    local out, seen = keytool(file, storepass, "-list"), {}
    for alias, kind in out:gmatch("\n([^\n,]+), [^\n]-, (%a+Entry)") do
        seen[#seen + 1] = alias .. " " .. kind
    end
    table.sort(seen)
    return seen
end

-- The API, with a cheap key derivation (the command uses 600,000 iterations with a password).
local function open(path, password)
    return assert(require("apikey").open { path = path, password = password, iterations = 2048 })
end

local function aliases(ks)
    local out = {}
    for _, e in ipairs(assert(ks:list())) do
        out[#out + 1] = e.alias
    end
    return out
end

-- In a describe: a new folder for each test (none, and the test pending, without Java 17);
-- returns a function that gives the current one.
local function folder_per_test()
    local dir
    before_each(function()
        dir = nil
        if not JDK then
            pending("needs Java 17 (openjdk-17-jdk-headless)")
            return
        end
        dir = h.tmpdir()
    end)
    after_each(function()
        if dir then
            h.remove(dir)
        end
    end)
    return function()
        return dir
    end
end

describe("a keystore shared with Java 17's keytool", function()
    local dir, ks_path, pwfile

    before_each(function()
        if not JDK then
            pending("needs Java 17 (openjdk-17-jdk-headless)")
        end
    end)

    setup(function()
        dir = h.tmpdir()
        ks_path = dir .. "/ks.p12"
        pwfile = dir .. "/pw"
    end)

    teardown(function()
        h.remove(dir)
    end)

    it("keeps apikey's entries through every keytool operation that rewrites the file", function()
        if not JDK then
            return
        end
        local ks = open(ks_path, "changeit")
        local one = assert(ks:create("one"))
        local two = assert(ks:create("two"))
        ks:close()
        -- keytool adds a Java secret key and a trusted certificate, renames and deletes foreign
        -- entries: each a rewrite of the file.
        must(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=ca "
            .. "-days 2 -keyout %s -out %s 2>/dev/null"):format(q(dir .. "/ca.key"), q(dir .. "/ca.pem")))
        keytool(ks_path, "changeit", "-genseckey", "-alias", "javasecret", "-keyalg", "AES",
            "-keysize", "128")
        keytool(ks_path, "changeit", "-importcert", "-alias", "ca", "-file", dir .. "/ca.pem")
        keytool(ks_path, "changeit", "-changealias", "-alias", "javasecret", "-destalias", "renamed")
        keytool(ks_path, "changeit", "-delete", "-alias", "ca")
        assert.same({ "one SecretKeyEntry", "renamed SecretKeyEntry", "two SecretKeyEntry" },
            keytool_list(ks_path, "changeit"))
        -- keytool -storepasswd re-protects every key with the new password, so it must decrypt
        -- each one: it fails on an apikey entry (a hash, not an encrypted key) as it fails on
        -- MetricsHub's own keys (entry password "secret"), and leaves the file as it was.
        local before = h.read_file(ks_path)
        local _, _, failed = h.sh_files(h.quote_all { JDK .. "/keytool", "-storepasswd", "-new",
            "changed", "-storetype", "PKCS12", "-keystore", ks_path, "-storepass", "changeit" })
        assert.is_not.equal(0, failed)
        assert.is_true(before == h.read_file(ks_path))

        -- The command finds both keys: list, verify, and create of a taken alias.
        h.write_file(pwfile, "changeit\n")
        local common = { "--keystore", ks_path, "--password-file", pwfile }
        local out, err, code = h.run({ "list", table.unpack(common) })
        assert.equal(0, code, err)
        assert.same({ "one ********************" .. one:sub(-4) .. " (No expiration)",
            "two ********************" .. two:sub(-4) .. " (No expiration)" }, h.lines(out))
        out, err, code = h.run({ "verify", two, table.unpack(common) })
        assert.equal("two\n", out, err)
        assert.equal(0, code)
        _, err, code = h.run({ "create", "ONE", table.unpack(common) })
        assert.equal(1, code)
        assert.matches("already", err)
        -- revoke and create through the command, then keytool again.
        out, err, code = h.run({ "revoke", "two", table.unpack(common) })
        assert.equal(0, code, err)
        assert.equal("API key 'two' has been revoked.\n", out)
        ks = open(ks_path, "changeit")
        local three = assert(ks:create("three"))
        assert.same({ "one", "three" }, aliases(ks))
        ks:close()
        keytool(ks_path, "changeit", "-genseckey", "-alias", "later", "-keyalg", "AES", "-keysize", "128")
        assert.same({ "later SecretKeyEntry", "one SecretKeyEntry", "renamed SecretKeyEntry",
            "three SecretKeyEntry" }, keytool_list(ks_path, "changeit"))
        ks = open(ks_path, "changeit")
        assert.same({ "one", "three" }, aliases(ks))
        assert.equal("one", assert(ks:verify(one)).alias)
        assert.equal("three", assert(ks:verify(three)).alias)
        assert.same({ nil, "unknown" }, { ks:verify(two) })
        ks:close()
    end)
end)

describe("one namespace of aliases, compared as Java compares them", function()
    local folder = folder_per_test()

    it("refuses an alias that Java's lower-casing makes the same as one in the file", function()
        if not JDK then
            return
        end
        local dir = folder()
        local path = dir .. "/ks.p12"
        local ks = open(path, "changeit")
        for _, pair in ipairs { { "Éric", "éric" }, { "CAFÉ", "café" },
            { "İstanbul", "i\u{307}stanbul" }, { "ΣΟΦΟΣ", "σοφος" } } do
            assert(ks:create(pair[1]))
            local ok, msg, code = ks:create(pair[2])
            assert.is_nil(ok, pair[2])
            assert.equal("exists", code, msg)
        end
        -- Two different names stay two: "i" with a dot above is not "i".
        assert(ks:create("istanbul"))
        ks:close()
        -- Java sees each of them once, under the name its own lower-casing gives.
        assert.same({ "café SecretKeyEntry", "istanbul SecretKeyEntry", "i̇stanbul SecretKeyEntry",
            "éric SecretKeyEntry", "σοφος SecretKeyEntry" }, keytool_list(path, "changeit"))
    end)

    it("refuses a certificate's alias, and revoke never removes another tool's entry", function()
        if not JDK then
            return
        end
        local dir = folder()
        local path = dir .. "/ks.p12"
        keytool(path, "changeit", "-genkeypair", "-alias", "mycert", "-keyalg", "EC", "-groupname",
            "secp256r1", "-dname", "CN=test", "-validity", "2")
        keytool(path, "changeit", "-genseckey", "-alias", "javakey", "-keyalg", "AES", "-keysize", "128")
        h.write_file(dir .. "/pw", "changeit\n")
        local common = { "--keystore", path, "--password-file", dir .. "/pw" }
        local before = h.read_file(path)
        local out, err, code = h.run({ "create", "MyCert", table.unpack(common) })
        assert.same({ "", 1 }, { out, code })
        assert.matches("alias 'MyCert' is taken in .- by a private key", err)
        out, err, code = h.run({ "revoke", "MYCERT", table.unpack(common) })
        assert.same({ "", 1 }, { out, code })
        assert.equal("No API key found with alias 'MYCERT': that alias is a private key in " .. path
            .. ", not an API key; apikey does not remove it\n", err)
        out, err, code = h.run({ "revoke", "JavaKey", table.unpack(common) })
        assert.equal(1, code)
        assert.matches("that alias is a secret key of another tool", err)
        assert.is_true(before == h.read_file(path))
        assert.same({ "javakey SecretKeyEntry", "mycert PrivateKeyEntry" }, keytool_list(path, "changeit"))
    end)
end)

describe("a MetricsHub keystore", function()
    local classes

    -- Runs tests/MetricsHubStore.java on file with MetricsHub's store password: its lines.
    local function metricshub(file, ...)
        return h.lines(must(h.quote_all { JDK .. "/java", "-cp", classes, "MetricsHubStore", file,
            "-", ... }))
    end

    setup(function()
        if JDK then
            classes = h.tmpdir()
            must(h.quote_all { JDK .. "/javac", "-d", classes, "tests/MetricsHubStore.java" })
        end
    end)

    teardown(function()
        if classes then
            h.remove(classes)
        end
    end)

    local folder = folder_per_test()

    it("opens as it is: list, verify, revoke, create and migrate, and MetricsHub still reads it", function()
        if not JDK then
            return
        end
        local dir = folder()
        local path = dir .. "/metricshub-keystore.p12"
        local expired = "11111111-2222-4333-8444-555555555555"
        local out = metricshub(path, "masterkey", "create", "mcp-openai", "create", "MCP-Claude",
            "2099-12-31T23:59", "put", "old", expired, "2020-01-01T00:00:00.5")
        local master = out[1]
        local openai = out[2]:match("^created mcp%-openai (.+)$")
        local claude = out[3]:match("^created MCP%-Claude (.+)$")
        local ks = { "--keystore", path }

        -- Seen as MetricsHub's own list shows them, without a password.
        local lines, err, code = h.run({ "list", table.unpack(ks) })
        assert.same({ "", 0 }, { err, code })
        assert.same({ "mcp-openai ********************" .. openai:sub(-4) .. " (No expiration)",
            "mcp-claude ********************" .. claude:sub(-4) .. " (Expires on 2099-12-31T23:59:00)",
            "old ********************5555 (Expired on 2020-01-01T00:00:00)" }, h.lines(lines))
        assert.same({ "mcp-openai\n", "", 0 }, { h.run({ "verify", openai, table.unpack(ks) }) })
        assert.same({ "", "expired\n", 1 }, { h.run({ "verify", expired, table.unpack(ks) }) })
        local v = assert(require("apikey").verifier { path = path })
        assert.equal("mcp-claude", assert(v:authenticate("Bearer " .. claude)).alias)
        assert.equal("metricshub", v:verify(claude).kind)
        v:close()

        -- revoke removes a MetricsHub key; create adds ours; MetricsHub's server still finds
        -- masterKey and its remaining keys.
        assert.same({ "API key 'mcp-claude' has been revoked.\n", "", 0 },
            { h.run({ "revoke", "MCP-Claude", table.unpack(ks) }) })
        local _, cerr, ccode = h.run({ "create", "MCP-OpenAI", table.unpack(ks) })
        assert.equal(1, ccode)
        assert.matches("already exists", cerr)
        local ours = h.create(path, "ours")
        local before = h.read_file(path)
        out, err, code = h.run({ "migrate", "--dry-run", table.unpack(ks) })
        assert.same({ "", 0 }, { err, code })
        assert.equal("Would migrate MetricsHub API key 'mcp-openai' ********************"
            .. openai:sub(-4) .. " (No expiration)\nWould migrate MetricsHub API key 'old' "
            .. "********************5555 (Expired on 2020-01-01T00:00:00)\n"
            .. "2 MetricsHub API keys would be migrated; nothing was changed.\n", out)
        assert.is_true(before == h.read_file(path))
        assert.same({ master, "key mcp-openai " .. openai .. " -",
            "key old " .. expired .. " 2020-01-01T00:00:00.500", "found mcp-openai valid", "none" },
            metricshub(path, "master", "keys", "find", openai, "find", ours))

        -- migrate: the same keys, now as hashes; no key left in the clear; masterKey kept.
        out, err, code = h.run({ "migrate", table.unpack(ks) })
        assert.same({ "", 0 }, { err, code })
        assert.matches("\n2 MetricsHub API keys migrated.\n$", out)
        assert.same({ "mcp-openai\n", "", 0 }, { h.run({ "verify", openai, table.unpack(ks) }) })
        assert.same({ "ours\n", "", 0 }, { h.run({ "verify", ours, table.unpack(ks) }) })
        local json = h.run({ "list", "--json", table.unpack(ks) })
        assert.not_matches("metricshub", json)
        assert.same({ master, "none", "alias masterkey secret", "alias mcp-openai secret",
            "alias old secret", "alias ours secret" },
            metricshub(path, "master", "find", openai, "aliases"))
        assert.is_nil(h.read_file(path):find(openai, 1, true))
    end)
end)
