-- The keystore's password: `apikey passwd` and `ks:passwd` change, set and remove it in one
-- write (other tools' keys protected with it included), `apikey has-passwd` and
-- apikey.has_password tell whether a file has one; verifiers given the old password keep their
-- keys within max_stale. Java 17's keytool shows that its entries follow the new password.
local h = require "spec.helpers"
local apikey = require "apikey"

local q, run = h.quote, h.run
local MH_PASSWORD = "Matrix, Credits: Bertrand, Elvis, Fadhela, Huan, Nassim, Ramassh and Thomas"

-- A keystore file with no password and one key, made through the command.
local function keystore(finally)
    local dir = h.tmpdir(finally)
    local path = dir .. "/keys.p12"
    return path, h.create(path, "ci-bot"), dir
end

-- The command, with every password it was given checked out of everything it printed.
local function runner(secrets)
    return function(args, stdin)
        local out, err, code = run(args, nil, stdin)
        for _, s in ipairs(secrets) do
            assert.is_nil(out:find(s, 1, true), "a password in the output: " .. out)
            assert.is_nil(err:find(s, 1, true), "a password in a message: " .. err)
        end
        return out, err, code
    end
end

-- The iteration counts `openssl pkcs12 -info` prints for a file: MAC's, then each content's.
local function iterations(path, password)
    local out = h.capture(("openssl pkcs12 -info -noout -in %s -passin %s 2>&1"):format(q(path),
        q("pass:" .. password)))
    local counts = {}
    for n in out:gmatch("Iteration (%d+)") do
        counts[tonumber(n)] = true
    end
    return counts
end

describe("apikey passwd and has-passwd", function()
    it("sets a password on a file without one, changes it, and removes it; has-passwd follows", function()
        local path, key, dir = keystore(finally)
        local secrets = { "first-secret", "second-secret" }
        local cmd = runner(secrets)
        h.write_file(dir .. "/first", "first-secret\n")
        h.write_file(dir .. "/second", "second-secret\n")

        assert.same({ "Keystore " .. path .. " has no password.\n", "", 1 },
            { cmd { "has-passwd", "--keystore", path } })
        -- From standard input's first line.
        assert.same({ "The password of keystore " .. path .. " has been set.\n", "", 0 },
            { cmd({ "passwd", "--keystore", path }, "first-secret\nignored\n") })
        assert.same({ "Keystore " .. path .. " has a password.\n", "", 0 },
            { cmd { "has-passwd", "--keystore", path } })
        assert.same({ [600000] = true }, iterations(path, "first-secret"))
        local _, err, code = cmd { "list", "--keystore", path }
        assert.equal(1, code)
        assert.matches("wrong password", err)
        assert.same({ "ci-bot\n", "", 0 },
            { cmd({ "verify", "--keystore", path, "--password-file", dir .. "/first" }, key) })

        -- From --new-password-file; the old one no longer opens it.
        assert.same({ "The password of keystore " .. path .. " has been changed.\n", "", 0 },
            { cmd { "passwd", "--keystore", path, "--password-file", dir .. "/first",
                "--new-password-file", dir .. "/second" } })
        _, err, code = cmd { "list", "--keystore", path, "--password-file", dir .. "/first" }
        assert.equal(1, code)
        assert.matches("wrong password", err)
        assert.same({ "ci-bot\n", "", 0 },
            { cmd({ "verify", "--keystore", path, "--password-file", dir .. "/second" }, key) })

        -- --no-password removes it: back to 2048 iterations, opened with none.
        assert.same({ "The password of keystore " .. path .. " has been removed.\n", "", 0 },
            { cmd { "passwd", "--no-password", "--keystore", path, "--password-file",
                dir .. "/second" } })
        assert.same({ "Keystore " .. path .. " has no password.\n", "", 1 },
            { cmd { "has-passwd", "--keystore", path } })
        assert.same({ [2048] = true }, iterations(path, ""))
        assert.same({ "ci-bot\n", "", 0 }, { cmd({ "verify", "--keystore", path }, key) })
        assert.equal("600", h.mode(path))
    end)

    it("refuses a wrong old password, leaving the file byte for byte", function()
        local path, _, dir = keystore(finally)
        local cmd = runner { "wrong-secret", "new-secret" }
        h.write_file(dir .. "/wrong", "wrong-secret\n")
        h.write_file(dir .. "/new", "new-secret\n")
        local before = h.read_file(path)
        local out, err, code = cmd { "passwd", "--keystore", path, "--password-file",
            dir .. "/wrong", "--new-password-file", dir .. "/new" }
        assert.same({ "", 1 }, { out, code })
        assert.matches("^apikey: cannot read .-: wrong password", err)
        assert.is_true(before == h.read_file(path))
    end)

    it("refuses an empty new password: /dev/null, an empty line, nothing on standard input", function()
        local path = keystore(finally)
        local before = h.read_file(path)
        local out, err, code = run { "passwd", "--keystore", path, "--new-password-file", "/dev/null" }
        assert.same({ "", "apikey: the password file /dev/null is empty; put the password on its "
            .. "first line\n", 1 }, { out, err, code })
        for _, stdin in ipairs { "\n", "" } do
            out, err, code = run({ "passwd", "--keystore", path }, nil, stdin)
            assert.same({ "", 1 }, { out, code })
            assert.matches("no new password: the first line of standard input is empty; .- "
                .. "%-%-no%-password\n$", err)
        end
        out, err, code = run { "passwd", "--keystore", path, "--no-password",
            "--new-password-file", "/dev/null" }
        assert.same({ "", 2 }, { out, code })
        assert.matches("can not be used together", err)
        assert.is_true(before == h.read_file(path))
    end)

    it("refuses a file that does not exist yet, and has-passwd says it has none", function()
        local dir = h.tmpdir(finally)
        local path = dir .. "/keys.p12"
        local out, err, code = run { "passwd", "--keystore", path, "--no-password" }
        assert.same({ "", 1 }, { out, code })
        assert.matches("there is no such file yet", err)
        assert.is_false(h.exists(path))
        assert.is_false(h.exists(path .. ".lock"))
        -- nor the folder of a keystore in a folder that does not exist either
        out, err, code = run { "passwd", "--keystore", dir .. "/sub/keys.p12", "--no-password" }
        assert.same({ "", 1 }, { out, code })
        assert.matches("there is no such file yet", err)
        assert.is_false(h.exists(dir .. "/sub"))
        assert.same({ "Keystore " .. path .. " does not exist yet, so it has no password.\n", "", 1 },
            { run { "has-passwd", "--keystore", path } })
    end)

    it("refuses a MetricsHub keystore, which stays as MetricsHub opens it", function()
        local dir = h.tmpdir(finally)
        local path = dir .. "/metricshub-keystore.p12"
        local ks = assert(apikey.open { path = path, password = MH_PASSWORD, iterations = 2048 })
        local key = assert(ks:create("ci-bot"))
        ks:close()
        local before = h.read_file(path)
        local out, err, code = run({ "passwd", "--keystore", path }, nil, "new-secret\n")
        assert.same({ "", 1 }, { out, code })
        assert.matches("it is a MetricsHub keystore, which MetricsHub opens with its own fixed "
            .. "password only", err)
        assert.is_nil(err:find(MH_PASSWORD, 1, true))
        assert.is_true(before == h.read_file(path))
        assert.same({ "Keystore " .. path .. " has no password of its own: MetricsHub's fixed "
            .. "store password, public in its source, opens it.\n", "", 1 },
            { run { "has-passwd", "--keystore", path } })
        assert.same({ "ci-bot\n", "", 0 }, { run({ "verify", "--keystore", path }, nil, key) })
    end)

    it("works on a keystore file, not on a store", function()
        for _, command in ipairs { "passwd", "has-passwd" } do
            local out, err, code = run { command, "--store", "postgresql://nobody@127.0.0.1:1/none" }
            assert.same({ "", 1 }, { out, code })
            assert.truthy(err:find(command .. " works on a keystore file's password, not on a store",
                1, true), err)
        end
    end)

    it("--help shows both commands and the options of passwd", function()
        local out = run { "--help" }
        assert.matches("\n%s+passwd%s", out)
        assert.matches("\n%s+has%-passwd%s", out)
        out = run { "passwd", "--help" }
        assert.matches("%-%-new%-password%-file FILE", out)
        assert.matches("%-%-no%-password", out)
        assert.matches("exit status 0 when it has, 1 when not", (run { "has-passwd", "--help" }))
    end)
end)

describe("ks:passwd and apikey.has_password", function()
    local function open(path, password)
        return assert(apikey.open { path = path, password = password, iterations = 2048 })
    end

    it("changes, removes and sets the password; the handle goes on with the new one", function()
        local path = keystore(finally)
        local ks = open(path)
        assert.equal(0, ks:passwd("lua-secret", { iterations = 4096 }))
        assert.same({ true, "password" }, { apikey.has_password(path) })
        assert.same({ [4096] = true }, iterations(path, "lua-secret"))
        local key = assert(ks:create("after"))          -- written with the new password
        ks:close()
        local _, msg, code = apikey.open { path = path }
        assert.equal("badpassword", code, msg)
        ks = open(path, "lua-secret")
        assert.equal("after", ks:verify(key).alias)
        assert.equal(0, ks:passwd("other-secret"))      -- default: 600,000 iterations
        assert.same({ [600000] = true }, iterations(path, "other-secret"))
        assert.equal(0, ks:passwd(""))                  -- removed: 2048
        assert.same({ [2048] = true }, iterations(path, ""))
        assert.same({ false, "none" }, { apikey.has_password(path) })
        assert.equal(2, #assert(ks:list()))
        ks:close()
        assert.equal(2, #assert(open(path):list()))
    end)

    it("refuses a missing file and a MetricsHub keystore; raises on misuse", function()
        local dir = h.tmpdir(finally)
        local ks = open(dir .. "/none.p12")
        local ok, msg, code = ks:passwd("x-secret")
        assert.is_nil(ok)
        assert.equal("notfound", code, msg)
        assert.same({ false, "missing" }, { apikey.has_password(dir .. "/none.p12") })
        assert.has_error(function() ks:passwd(nil) end)
        assert.has_error(function() ks:passwd("x", { iteration = 1 }) end)
        assert.has_error(function() ks:passwd("x", { iterations = 0 }) end)
        ks:close()
        local path = dir .. "/mh.p12"
        ks = open(path, MH_PASSWORD)
        assert(ks:create("k"))
        ok, msg, code = ks:passwd("x-secret")
        assert.is_nil(ok)
        assert.equal("invalid", code, msg)
        ks:close()
        assert.same({ false, "metricshub" }, { apikey.has_password(path) })
        h.write_file(dir .. "/junk.p12", "not a keystore", "600")
        ok, msg, code = apikey.has_password(dir .. "/junk.p12")
        assert.same({ nil, "corrupt" }, { ok, code })
        assert.is_string(msg)
    end)

    it("a verifier given the old password reports the failure and keeps its keys within max_stale", function()
        local path, key = keystore(finally)
        local ks = open(path)
        local lines = {}
        local v = assert(apikey.verifier { path = path, interval = 0, max_stale = 1,
            log = function(line) lines[#lines + 1] = line end })
        assert(ks:passwd("rotated-secret", { iterations = 2048 }))
        ks:close()
        assert.equal("ci-bot", v:verify(key).alias)     -- the keys it had
        local s = v:status()
        assert.equal("stale", s.state)
        assert.equal("badpassword", s.error_code)
        assert.truthy(lines[1] and lines[1]:find("wrong password", 1, true), lines[1])
        for _, line in ipairs(lines) do
            assert.is_nil(line:find("rotated-secret", 1, true), line)
        end
        h.sleep(1.5)
        assert.same({ nil, "unavailable" }, { v:verify(key) })
        assert.equal("refusing", v:status().state)
        v:close()
        -- Given the new one, a verifier reads it.
        v = assert(apikey.verifier { path = path, password = "rotated-secret" })
        assert.equal("ci-bot", v:verify(key).alias)
        v:close()
    end)
end)

local JDK = h.jdk17()
local must = h.must

local function keytool(file, storepass, ...)
    return h.keytool(JDK, file, storepass, ...)
end

-- A keystore with the password changeit (the files old and new beside it hold changeit and
-- newsecret), an API key of ours and a secret key keytool made: its folder, path and our key.
local function java_keystore(finally)
    local dir = h.tmpdir(finally)
    local path = dir .. "/ks.p12"
    h.write_file(dir .. "/old", "changeit\n")
    h.write_file(dir .. "/new", "newsecret\n")
    local key = h.create(path, "one", { "--password-file", dir .. "/old" })
    keytool(path, "changeit", "-genseckey", "-alias", "javakey", "-keyalg", "AES", "-keysize", "128")
    return dir, path, key
end

describe("passwd with Java 17's keytool entries", function()
    before_each(function()
        if not JDK then
            pending("needs Java 17 (openjdk-17-jdk-headless)")
        end
    end)

    it("protects keytool's secret key, private key and certificates with the new password", function()
        if not JDK then
            return
        end
        local dir, path, one = java_keystore(finally)
        local cmd = runner { "changeit", "newsecret" }
        keytool(path, "changeit", "-genkeypair", "-alias", "mycert", "-keyalg", "EC", "-groupname",
            "secp256r1", "-dname", "CN=test", "-validity", "2")
        local two = h.create(path, "two", { "--password-file", dir .. "/old" })
        assert.same({ "The password of keystore " .. path .. " has been changed.\n"
            .. "Other tools' entries protected with the new password too: 3.\n", "", 0 },
            { cmd { "passwd", "--keystore", path, "--password-file", dir .. "/old",
                "--new-password-file", dir .. "/new" } })
        -- keytool opens it with the new password, and decrypts each of its keys with it.
        local listed = keytool(path, "newsecret", "-list")
        for _, line in ipairs { "javakey, .-SecretKeyEntry", "mycert, .-PrivateKeyEntry",
            "one, .-SecretKeyEntry", "two, .-SecretKeyEntry" } do
            assert.matches(line, listed)
        end
        for _, alias in ipairs { "javakey", "mycert" } do
            must(h.quote_all { JDK .. "/keytool", "-importkeystore", "-srckeystore", path,
                "-srcstoretype", "PKCS12", "-srcstorepass", "newsecret", "-srcalias", alias,
                "-destkeystore", dir .. "/" .. alias .. ".p12", "-deststoretype", "PKCS12",
                "-deststorepass", "destpass", "-noprompt" })
        end
        assert.matches("Owner: CN=test", keytool(dir .. "/mycert.p12", "destpass", "-list", "-v"))
        assert.same({ "one\n", "", 0 },
            { cmd({ "verify", "--keystore", path, "--password-file", dir .. "/new" }, one) })
        assert.same({ "two\n", "", 0 },
            { cmd({ "verify", "--keystore", path, "--password-file", dir .. "/new" }, two) })
    end)

    it("refuses, by name, a key protected with a password of its own; the file stays byte for byte", function()
        if not JDK then
            return
        end
        local dir, path, key = java_keystore(finally)
        -- keytool gives a PKCS12 entry the store password; Java's KeyStore API can give another.
        h.write_file(dir .. "/Own.java", [[
import java.io.*;
import java.security.KeyStore;
import javax.crypto.spec.SecretKeySpec;
public class Own {
    public static void main(String[] a) throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (FileInputStream in = new FileInputStream(a[0])) { ks.load(in, a[1].toCharArray()); }
        ks.setEntry(a[2], new KeyStore.SecretKeyEntry(new SecretKeySpec(new byte[16], "AES")),
            new KeyStore.PasswordProtection(a[3].toCharArray()));
        try (FileOutputStream out = new FileOutputStream(a[0])) { ks.store(out, a[1].toCharArray()); }
    }
}
]])
        must(h.quote_all { JDK .. "/java", dir .. "/Own.java", path, "changeit", "ownkey", "its-own" })
        local before = h.read_file(path)
        local cmd = runner { "changeit", "newsecret", "its-own" }
        local out, err, code = cmd { "passwd", "--keystore", path, "--password-file", dir .. "/old",
            "--new-password-file", dir .. "/new" }
        assert.same({ "", 1 }, { out, code })
        assert.equal("apikey: cannot change the password of " .. path .. ": other tools' entries "
            .. "are protected with a password that is not the keystore's, so they cannot be "
            .. "protected with the new one: 'ownkey' (a secret key); give them the keystore's "
            .. "password with the tool that made them, or remove them; nothing was written\n", err)
        assert.is_true(before == h.read_file(path))
        local ks = assert(apikey.open { path = path, password = "changeit" })
        local ok, msg, why = ks:passwd("newsecret", { iterations = 2048 })
        assert.same({ nil, "invalid" }, { ok, why })
        assert.matches("'ownkey' %(a secret key%)", msg)
        assert.is_true(before == h.read_file(path))
        assert.equal("one", ks:verify(key).alias)
        ks:close()
        -- Removed with keytool, the rest follows the new password.
        keytool(path, "changeit", "-delete", "-alias", "ownkey")
        assert.same({ 0 }, { select(3, cmd { "passwd", "--keystore", path, "--password-file",
            dir .. "/old", "--new-password-file", dir .. "/new" }) })
        assert.matches("javakey, .-SecretKeyEntry", keytool(path, "newsecret", "-list"))
    end)
end)
