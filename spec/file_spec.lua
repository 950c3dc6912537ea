-- The keystore file: a PKCS#12 file that OpenSSL reads, that never holds a key's text, that
-- keeps what other tools put in it, that is never damaged by a failed command, and that
-- only its owner can read.
local h = require "spec.helpers"

local run, create, q = h.run, h.create, h.quote

-- `openssl pkcs12 -info` of a file: exit code and everything it printed.
local function info(path, password, extra)
    local out = os.tmpname()
    local code = h.sh(("openssl pkcs12 -info -in %s -passin %s %s >%s 2>&1")
        :format(q(path), q("pass:" .. (password or "")), extra or "-nokeys", q(out)))
    local text = h.read_file(out)
    os.remove(out)
    return code, text
end

local function count(text, plain)
    local n, i = 0, 1
    while true do
        local s, e = text:find(plain, i, true)
        if not s then
            return n
        end
        n, i = n + 1, e + 1
    end
end

local function hex(s)
    return (s:gsub(".", function(c)
        return ("%02X"):format(c:byte())
    end))
end

-- Asserts that no form of the key (its text, upper case, hex of its text) is in the text,
-- except the 4-character hint, which is there by design.
local function assert_no_key(key, text, where)
    for _, form in ipairs { key, key:upper(), key:sub(1, 32), hex(key), hex(key):lower(), hex(key:sub(1, 16)) } do
        assert.is_nil(text:find(form, 1, true), ("%s holds %s"):format(where, form))
    end
end

-- A file listing of a folder, to see that a failed command leaves nothing behind.
local function listing(dir)
    return h.capture("ls -A " .. q(dir))
end

describe("the keystore file", function()
    it("is a PKCS#12 file that openssl reads, with one secret bag per key, named by its alias", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/keys.p12"
        create(ks, "mcp-openai")
        create(ks, "mcp-claude", { "--expires-on", "2099-12-31T23:59:59" })
        local code, text = info(ks)
        assert.equal(0, code, text)
        assert.equal(2, count(text, "Secret bag"), text)
        assert.truthy(text:find("friendlyName: mcp-openai", 1, true), text)
        assert.truthy(text:find("friendlyName: mcp-claude", 1, true), text)
        assert.truthy(text:find("MAC: sha256", 1, true), text)
        assert.truthy(text:find("PBES2, PBKDF2, AES-256-CBC", 1, true), text)
    end)

    it("holds neither the key text nor its hex, in its bytes or in openssl's dump", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/keys.p12"
        local keys = { create(ks, "a"), create(ks, "b"), create(ks, "c", { "--expires-in", "1d" }) }
        local bytes = h.read_file(ks)
        local code, text = info(ks)
        assert.equal(0, code, text)
        for _, key in ipairs(keys) do
            assert_no_key(key, bytes, "the file")
            assert_no_key(key, text, "the dump")
        end
    end)

    it("holds neither the key text nor its hex when it has a password", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/keys.p12"
        local key = create(ks, "a", nil, { APIKEY_KEYSTORE_PASSWORD = "X" })
        local code, text = info(ks, "X")
        assert.equal(0, code, text)
        assert.equal(1, count(text, "Secret bag"), text)
        assert_no_key(key, h.read_file(ks), "the file")
        assert_no_key(key, text, "the dump")
        assert.not_equal(0, (info(ks, "")))
    end)

    it("keeps a certificate and a private key put in with openssl pkcs12 -export through a create and a revoke", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/keys.p12"
        assert.equal(0, h.sh(("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
            .. "-subj /CN=t -days 1 -keyout k.pem -out c.pem >/dev/null 2>&1 && "
            .. "openssl pkcs12 -export -in c.pem -inkey k.pem -name tls -passout pass: -out keys.p12 && chmod 600 keys.p12")
            :format(q(dir))))
        local function cert()
            return h.capture(("openssl pkcs12 -in %s -passin pass: -nokeys -clcerts 2>/dev/null | openssl x509 -outform DER | od -An -tx1")
                :format(q(ks)))
        end
        local function pkey()
            return h.capture(("openssl pkcs12 -in %s -passin pass: -nocerts -nodes 2>/dev/null | openssl pkey -outform DER | od -An -tx1")
                :format(q(ks)))
        end
        local want_cert = h.capture(("openssl x509 -in %s/c.pem -outform DER | od -An -tx1"):format(q(dir)))
        local want_key = h.capture(("openssl pkey -in %s/k.pem -outform DER | od -An -tx1"):format(q(dir)))
        assert.not_equal("", want_cert)
        assert.equal(want_cert, cert())
        -- The file as openssl reads it: the certificate and the private key as put in, and
        -- secrets secret bags.
        local function holds(secrets)
            local code, text = info(ks, "", "-nodes")
            assert.equal(0, code, text)
            assert.equal(1, count(text, "Certificate bag"), text)
            assert.equal(1, count(text, "Shrouded Keybag"), text)
            assert.equal(secrets, count(text, "Secret bag"), text)
            assert.equal(want_cert, cert())
            assert.equal(want_key, pkey())
        end

        local key = create(ks, "mcp-openai")
        create(ks, "mcp-claude")
        holds(2)
        assert.same({ "mcp-openai\n", "", 0 }, { run { "verify", key, "--keystore", ks } })

        assert.equal(0, select(3, run { "revoke", "mcp-openai", "--keystore", ks }))
        assert.equal(0, select(3, run { "revoke", "mcp-claude", "--keystore", ks }))
        holds(0)
        assert.same({ "No API keys found.\n", "", 0 }, { run { "list", "--keystore", ks } })
    end)

    it("is created with mode 0600, in a folder made with mode 0700, whatever the umask", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/security/keys.p12"
        local out, err, code = h.exec({ "sh", "-c", ("umask 000; exec lua5.4 %s create k --keystore %s"):format(q(h.bin), q(ks)) })
        assert.same({ "", 0 }, { err, code }, out)
        assert.equal("700", h.mode(dir .. "/security"))
        assert.equal("600", h.mode(ks))
        assert.equal("600", h.mode(ks .. ".lock"))
    end)

    it("keeps the mode of an existing keystore across a write", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/keys.p12"
        create(ks, "a")
        assert.equal(0, h.sh("chmod 640 " .. q(ks)))
        create(ks, "b")
        assert.equal("640", h.mode(ks))
    end)

    it("is replaced, not written in place: a write gives it a new inode and leaves no temp file", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/keys.p12"
        create(ks, "a")
        local inode = h.capture("stat -c %i " .. q(ks))
        create(ks, "b")
        assert.not_equal(inode, h.capture("stat -c %i " .. q(ks)))
        assert.equal("keys.p12\nkeys.p12.lock\n", listing(dir))
    end)

    describe("that cannot be read", function()
        local function damaged(name, damage)
            it("is left byte for byte when it is " .. name .. ": every command fails with one line, exit 1", function()
                local dir = h.tmpdir(finally)
                local ks = dir .. "/keys.p12"
                local key = create(ks, "a")
                create(ks, "b")
                local good = h.read_file(ks)
                h.write_file(ks, damage(good))
                local before, files = h.read_file(ks), listing(dir)
                for _, args in ipairs { { "create", "c" }, { "revoke", "a" }, { "list" }, { "list", "--json" }, { "verify", key } } do
                    args[#args + 1] = "--keystore"
                    args[#args + 1] = ks
                    local out, err, code = run(args)
                    assert.same({ "", 1 }, { out, code }, table.concat(args, " "))
                    assert.matches("^apikey: [^\n]*" .. ks:gsub("%p", "%%%0") .. "[^\n]*\n$", err)
                    assert.equal(before, h.read_file(ks))
                    assert.equal(files, listing(dir))
                end
            end)
        end

        damaged("truncated", function(good)
            return good:sub(1, #good // 2)
        end)
        damaged("cut by one byte", function(good)
            return good:sub(1, -2)
        end)
        damaged("with bytes flipped in the middle", function(good)
            local i = #good // 2
            return good:sub(1, i - 1) .. hex(good:sub(i, i + 3)):gsub("..", function(x)
                return string.char(tonumber(x, 16) ~ 0xFF)
            end) .. good:sub(i + 4)
        end)
        damaged("with its last byte flipped (the MAC)", function(good)
            return good:sub(1, -2) .. string.char(good:byte(-1) ~ 0x01)
        end)
        damaged("random bytes", function()
            return h.capture("head -c 2048 /dev/urandom")
        end)
        damaged("empty (zero length)", function()
            return ""
        end)
        damaged("text", function()
            return "not a keystore\n"
        end)

        it("is left byte for byte when the password is wrong", function()
            local dir = h.tmpdir(finally)
            local ks = dir .. "/keys.p12"
            local key = create(ks, "a", nil, { APIKEY_KEYSTORE_PASSWORD = "pw-right-7Q" })
            local before, files = h.read_file(ks), listing(dir)
            for _, args in ipairs { { "create", "c" }, { "revoke", "a" }, { "list" }, { "verify", key } } do
                args[#args + 1] = "--keystore"
                args[#args + 1] = ks
                local out, err, code = run(args, { APIKEY_KEYSTORE_PASSWORD = "pw-wrong-9Z" })
                assert.same({ "", 1 }, { out, code }, table.concat(args, " "))
                assert.matches("^apikey: [^\n]*" .. ks:gsub("%p", "%%%0") .. "[^\n]*\n$", err)
                assert.is_nil(err:find("pw-wrong-9Z", 1, true))
                assert.is_nil(err:find("pw-right-7Q", 1, true))
            end
            assert.equal(before, h.read_file(ks))
            assert.equal(files, listing(dir))
        end)
    end)
end)
