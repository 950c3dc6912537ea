-- Where the command's output goes nowhere: a full disk, a closed descriptor, a huge password
-- file. Nothing is silent: a key nobody saw does not stay valid, and the exit status says so.
local h = require "spec.helpers"

local function keystore(finally)
    return h.tmpdir(finally) .. "/keys.p12"
end

-- Runs the command with the shell redirection redirect applied to it; returns stderr and the
-- exit code (stdout goes where redirect sends it).
local function run_redirected(args, redirect)
    local cmd = "lua5.4 " .. h.quote(h.bin) .. " " .. h.quote_all(args) .. " " .. redirect
    local _, err, code = h.exec({ "sh", "-c", cmd })
    return err, code
end

local function list(ks)
    local out, err, code = h.run { "list", "--keystore", ks }
    assert.same({ "", 0 }, { err, code })
    return out
end

describe("apikey create with nowhere to print the key", function()
    it("exits 1 when standard output is a full disk, and removes the key again", function()
        local ks = keystore(finally)
        local err, code = run_redirected({ "create", "ci-bot", "--keystore", ks }, ">/dev/full")
        assert.equal(1, code)
        assert.equal("apikey: cannot write the new key to standard output (No space left on "
            .. "device); the key of alias 'ci-bot' was removed again: nothing was created\n", err)
        assert.equal("No API keys found.\n", list(ks))
    end)

    it("does nothing and exits 1 when standard output is closed", function()
        local ks = keystore(finally)
        h.create(ks, "first")
        local before = h.read_file(ks)
        local err, code = run_redirected({ "create", "ci-bot", "--keystore", ks }, ">&-")
        assert.equal(1, code)
        assert.equal("apikey: standard output is closed; nothing was done (create prints to it)\n", err)
        assert.equal(before, h.read_file(ks))
    end)
end)

describe("apikey create into a pipe whose reader is gone", function()
    it("exits 1 instead of dying of SIGPIPE, and removes the key again", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/keys.p12"
        h.create(ks, "first")
        -- the reader closes its end at once; the command writes its key after it opened the
        -- keystore, well after that
        local cmd = ("{ lua5.4 %s create ci-bot --keystore %s 2>%s; echo $? >%s; } | (exec 0<&-; sleep 1)")
            :format(h.quote(h.bin), h.quote(ks), h.quote(dir .. "/err"), h.quote(dir .. "/status"))
        h.sh("sh -c " .. h.quote(cmd))
        assert.equal("1\n", h.read_file(dir .. "/status"))
        assert.equal("apikey: cannot write the new key to standard output (Broken pipe); the key "
            .. "of alias 'ci-bot' was removed again: nothing was created\n", h.read_file(dir .. "/err"))
        assert.matches("^first %*+%x%x%x%x %(No expiration%)\n$", list(ks))
    end)
end)

describe("apikey revoke with nowhere to print", function()
    it("exits 1 and says that the change is made", function()
        local ks = keystore(finally)
        h.create(ks, "ci-bot")
        local err, code = run_redirected({ "revoke", "ci-bot", "--keystore", ks }, ">/dev/full")
        assert.equal(1, code)
        assert.equal("apikey: cannot write the output: No space left on device; the change is made\n", err)
        assert.equal("No API keys found.\n", list(ks))
    end)
end)

describe("apikey list with nowhere to print", function()
    it("exits 1 when standard output is a full disk", function()
        local ks = keystore(finally)
        h.create(ks, "ci-bot")
        local err, code = run_redirected({ "list", "--keystore", ks }, ">/dev/full")
        assert.equal(1, code)
        assert.equal("apikey: cannot write the output: No space left on device\n", err)
    end)

    it("exits 1 when standard output is closed", function()
        local ks = keystore(finally)
        local err, code = run_redirected({ "list", "--keystore", ks }, ">&-")
        assert.equal(1, code)
        assert.equal("apikey: standard output is closed; nothing was done (list prints to it)\n", err)
    end)
end)

describe("apikey --password-file", function()
    it("refuses a file over 64 KiB without reading it whole", function()
        local dir = h.tmpdir(finally)
        h.write_file(dir .. "/pw", "secret\n" .. ("x"):rep(70000))
        local out, err, code = h.run { "list", "--keystore", dir .. "/keys.p12", "--password-file", dir .. "/pw" }
        assert.same({ "", 1 }, { out, code })
        assert.equal(("apikey: the password file %s/pw is over 64 KiB; it should hold the password "
            .. "on its first line\n"):format(dir), err)
    end)

    it("takes a password file of exactly 64 KiB", function()
        local dir = h.tmpdir(finally)
        h.write_file(dir .. "/pw", "secret\n" .. ("x"):rep(65536 - 7))
        local out, err, code = h.run { "list", "--keystore", dir .. "/keys.p12", "--password-file", dir .. "/pw" }
        assert.same({ "No API keys found.\n", "", 0 }, { out, err, code })
    end)
end)
