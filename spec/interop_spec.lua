-- Sharing the keystore with Java 17's keytool and with MetricsHub: the real keytool rewrites a
-- keystore apikey wrote, and tests/MetricsHubStore.java writes and reads one exactly as
-- MetricsHub's command and server do. A JVM starts in about half a second: each test batches
-- its Java operations into as few runs as it can.
local h = require "spec.helpers"

local q = h.quote

-- Java 17's bin folder (keytool, java, javac), or nil.
local function jdk17()
    local dir = h.capture("ls -d /usr/lib/jvm/java-17-openjdk-*/bin 2>/dev/null | head -n 1")
        :gsub("%s+$", "")
    if dir ~= "" and h.sh("test -x " .. q(dir .. "/keytool")) == 0 then
        return dir
    end
    return nil
end

local JDK = jdk17()

-- Runs a shell command line; asserts it succeeds and returns its standard output.
local function must(cmd)
    local out, err, code = h.sh_files(cmd)
    assert(code == 0, ("%s failed (%s): %s%s"):format(cmd, tostring(code), out or "", err or ""))
    return out
end

local function keytool(file, storepass, ...)
    return must(h.quote_all { JDK .. "/keytool", ... } .. " -storetype PKCS12 -keystore "
        .. q(file) .. " -storepass " .. q(storepass) .. " -noprompt")
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
    local dir

    before_each(function()
        if not JDK then
            pending("needs Java 17 (openjdk-17-jdk-headless)")
        end
        dir = h.tmpdir()
    end)

    after_each(function()
        if dir then
            h.remove(dir)
        end
    end)

    it("refuses an alias that Java's lower-casing makes the same as one in the file", function()
        if not JDK then
            return
        end
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
