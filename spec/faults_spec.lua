-- Injected faults: with write, fsync, rename or close failing as on a full or broken disk
-- (tests/faultshim.c, loaded with LD_PRELOAD), create and revoke fail with one clear line and
-- exit 1, the keystore stays byte-for-byte as it was, no temp file is left behind, and the
-- next command without the fault works.
local rel = require("spec.helpers").reliability

local injected, cases = 0, 0

local MESSAGES = { ENOSPC = "No space left on device", EIO = "Input/output error" }

describe("injected faults", function()
    local shimdir, shim

    setup(function()
        shimdir = rel.tmpdir()
        local why
        shim, why = rel.faultshim(shimdir)
        assert(shim, "cannot build tests/faultshim.c: " .. tostring(why))
    end)

    teardown(function()
        rel.remove(shimdir)
        rel.cleanup()
        rel.summary(("faults: %d faults injected in %d cases (write, fsync, rename, close; "
            .. "ENOSPC, EIO, short writes, EINTR); each failing command left the keystore "
            .. "unchanged and no temp file"):format(injected, cases))
    end)

    local dir, ks, keys, before

    before_each(function()
        dir, ks, keys, before = rel.keystore_dir(3)
    end)

    after_each(function()
        rel.remove(dir)
    end)

    -- Runs args with the fault shim; returns the result and how many faults it injected.
    local function with_fault(args, fault, match)
        local log = shimdir .. "/faults.log"
        os.remove(log)
        local r = rel.run(args, { env = { LD_PRELOAD = rel.preload(shim), APIKEY_FAULT = fault,
            APIKEY_FAULT_MATCH = match, APIKEY_FAULT_LOG = log } })
        local n = 0
        for _ in (rel.read(log) or ""):gmatch("[^\n]+") do
            n = n + 1
        end
        injected = injected + n
        cases = cases + 1
        return r, n
    end

    local COMMANDS = {
        create = { args = { "create", "new" } },
        revoke = { args = { "revoke", "key-2" } },
    }

    local function args_of(command, path)
        local args = { table.unpack(COMMANDS[command].args) }
        args[#args + 1] = "--keystore"
        args[#args + 1] = path or ks
        return args
    end

    -- The command again, without the fault: it must work, and the listing must show it.
    local function works_after(command)
        local r = rel.run(args_of(command))
        if command == "create" then
            rel.assert_created(r, "new")
        else
            assert.equal(0, r.code, rel.show(r))
            assert.equal("API key 'key-2' has been revoked.\n", r.out)
        end
        local rows = rel.parse_list(rel.run({ "list", "--keystore", ks }).out)
        local aliases = {}
        for i, row in ipairs(rows) do
            aliases[i] = row.alias
        end
        if command == "create" then
            assert.same({ "key-1", "key-2", "key-3", "new" }, aliases)
        else
            assert.same({ "key-1", "key-3" }, aliases)
        end
        assert.same({}, rel.temps(ks))
    end

    for _, op in ipairs({ "write", "fsync", "rename", "close" }) do
        for _, err in ipairs({ "ENOSPC", "EIO" }) do
            for _, command in ipairs({ "create", "revoke" }) do
                it(("%s failing with %s makes %s fail cleanly"):format(op, err, command), function()
                    local r, n = with_fault(args_of(command), op .. ":" .. err)
                    assert.is_true(n >= 1, "the fault was not injected: " .. rel.show(r))
                    rel.assert_error(r, MESSAGES[err])
                    assert.is_truthy(r.err:find(ks, 1, true), "does not name the keystore: "
                        .. rel.show(r))
                    assert.is_true(rel.read(ks) == before, "the keystore changed")
                    assert.same({}, rel.temps(ks))
                    for alias, key in pairs(keys) do
                        local v = rel.run({ "verify", key, "--keystore", ks })
                        assert.equal(alias .. "\n", v.out, rel.show(v))
                    end
                    works_after(command)
                end)
            end
        end
    end

    it("a first create that cannot write leaves no keystore behind", function()
        local fresh = dir .. "/sub/fresh.p12"
        for _, op in ipairs({ "write", "fsync", "rename", "close" }) do
            local r, n = with_fault({ "create", "first", "--keystore", fresh }, op .. ":ENOSPC")
            assert.is_true(n >= 1, "the fault was not injected: " .. rel.show(r))
            rel.assert_error(r, MESSAGES.ENOSPC)
            assert.is_false(rel.exists(fresh), "a keystore was left by a failed " .. op)
            assert.same({}, rel.temps(fresh))
        end
        rel.assert_created(rel.run({ "create", "first", "--keystore", fresh }), "first")
    end)

    it("a short write is completed by the next one", function()
        local r, n = with_fault(args_of("create"), "write:SHORT")
        assert.is_true(n >= 2, "fewer than two short writes: " .. rel.show(r))
        rel.assert_created(r, "new")
        local rows = rel.parse_list(rel.run({ "list", "--keystore", ks }).out)
        assert.equal(4, #rows)
        assert.same({}, rel.temps(ks))
    end)

    it("a write that fails after a short one makes create fail cleanly", function()
        local r, n = with_fault(args_of("create"), "write:SHORT:1,write:EIO:2")
        assert.equal(2, n, rel.show(r))
        rel.assert_error(r, MESSAGES.EIO)
        assert.is_true(rel.read(ks) == before, "the keystore changed")
        assert.same({}, rel.temps(ks))
        works_after("create")
    end)

    it("an fsync interrupted by a signal (EINTR) is retried", function()
        local r, n = with_fault(args_of("revoke"), "fsync:EINTR:1")
        assert.equal(1, n, rel.show(r))
        assert.equal(0, r.code, rel.show(r))
        assert.equal("API key 'key-2' has been revoked.\n", r.out)
        assert.same({}, rel.temps(ks))
    end)

    it("a failed fsync of the folder after the rename: the change is made, shown, and warned of",
        function()
            for _, err in ipairs({ "EIO", "ENOSPC" }) do
                local r, n = with_fault(args_of("create"), "fsync:" .. err, "=" .. dir)
                assert.equal(1, n, rel.show(r))
                -- The rename happened: the key is in the file, so it is shown (else it would be
                -- lost), and one warning line names the folder and the error.
                local key = rel.assert_created(r, "new")
                assert.matches("^apikey: warning: [^\n]*could not be synced to disk[^\n]*\n$", r.err)
                assert.is_truthy(r.err:find(dir, 1, true), rel.show(r))
                assert.is_truthy(r.err:find(MESSAGES[err], 1, true), rel.show(r))
                assert.same({}, rel.temps(ks))
                local v = rel.run({ "verify", key, "--keystore", ks })
                assert.equal("new\n", v.out, rel.show(v))
                for alias, old in pairs(keys) do
                    v = rel.run({ "verify", old, "--keystore", ks })
                    assert.equal(alias .. "\n", v.out, rel.show(v))
                end
                r = with_fault({ "revoke", "new", "--keystore", ks }, "fsync:" .. err, "=" .. dir)
                assert.same({ 0, "API key 'new' has been revoked.\n" }, { r.code, r.out })
                assert.matches("^apikey: warning: [^\n]*could not be synced to disk[^\n]*\n$", r.err)
                local gone = rel.run({ "verify", key, "--keystore", ks })
                assert.same({ "", "unknown\n", 1 }, { gone.out, gone.err, gone.code })
            end
            works_after("create")
        end)

    it("a fault on another file (the lock) changes nothing the keystore needs", function()
        local r = with_fault(args_of("create"), "write:EIO", ".lock")
        rel.assert_created(r, "new")
    end)
end)
