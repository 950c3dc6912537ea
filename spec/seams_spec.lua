-- The edges of the keystore file against the real system: who may own it and its folder (a
-- real second user), its ACLs and extended attributes (real setfacl and setfattr), a path that
-- is a symbolic link, the command reached through a link, a keystore that is a mount point
-- (a real bind mount), and one its owner made read-only. Each refusal is one line that names
-- the file and the fix, and leaves the keystore as it was.
local h = require "spec.helpers"

local q = h.quote

-- The words that run a command as nobody (root reads and writes anything, so a second user
-- is needed), or nil and why not.
local function nobody()
    if h.capture("id -u") ~= "0\n" then
        return nil, "needs root to run a command as another user"
    end
    if h.sh("command -v setpriv >/dev/null 2>&1") ~= 0 then
        return nil, "needs setpriv to run a command as another user"
    end
    local wrap = { "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups" }
    if h.sh(h.quote_all(wrap) .. " lua5.4 " .. q(h.bin) .. " --version >/dev/null 2>&1") ~= 0 then
        return nil, "the installed command is not readable by another user here"
    end
    return wrap
end

-- Runs the installed command under wrap (a list of words, or nil): stdout, stderr, exit code.
local function run_as(wrap, args)
    local argv = {}
    table.move(wrap or {}, 1, #(wrap or {}), 1, argv)
    argv[#argv + 1] = "lua5.4"
    argv[#argv + 1] = h.bin
    table.move(args, 1, #args, #argv + 1, argv)
    return h.exec(argv, { NO_COLOR = "1" })
end

local function run(args)
    return run_as(nil, args)
end

-- Asserts a failure: exit 1, nothing on stdout, one "apikey: " line holding every text given.
local function assert_refused(out, err, code, ...)
    assert.same({ "", 1 }, { out, code }, err)
    assert.matches("^apikey: [^\n]+\n$", err)
    for _, text in ipairs { ... } do
        assert.is_truthy(err:find(text, 1, true), ("%q does not say %q"):format(err, text))
    end
end

local function sh_ok(cmd)
    assert.equal(0, h.sh(cmd), cmd)
end

local function owner(path)
    return (h.capture("stat -c %U " .. q(path)):gsub("%s+$", ""))
end

local function listing(dir)
    return h.capture("ls -A " .. q(dir))
end

-- The failure apikey.open returns for path: message, code.
local function open_fails(path)
    local ks, msg, code = require("apikey").open { path = path }
    assert.is_nil(ks)
    return msg, code
end

-- A new folder that nobody can reach (the run's folder is 755, h.tmpdir's are 700).
local function open_dir(finally)
    local dir = h.tmpdir(finally)
    sh_ok("chmod 755 " .. q(dir))
    return dir
end

-- The words that run a command as nobody, or nil once the test is marked pending.
local function as_nobody()
    local wrap, why = nobody()
    if not wrap then
        pending(why)
    end
    return wrap
end

-- As as_nobody, with a new folder that nobody can reach and in it "shared", a folder that all
-- may write (mode 1777, as /tmp).
local function shared_dir(finally)
    local wrap = as_nobody()
    if not wrap then
        return nil
    end
    local dir = open_dir(finally)
    local shared = dir .. "/shared"
    sh_ok("mkdir -m 1777 " .. q(shared))
    return wrap, dir, shared
end

-- Runs each command (a list of argument lists) on the keystore ks and asserts that each is
-- refused with every text given.
local function refused_all(commands, ks, ...)
    for _, args in ipairs(commands) do
        local argv = { table.unpack(args) }
        argv[#argv + 1] = "--keystore"
        argv[#argv + 1] = ks
        local out, err, code = run(argv)
        assert_refused(out, err, code, ...)
    end
end

describe("a keystore another user could have written", function()
    it("is refused when another user owns it: the owner and the fix named, code insecure, the file left as it was", function()
        local wrap = as_nobody()
        if not wrap then
            return
        end
        local dir = open_dir(finally)
        local ks = dir .. "/keys.p12"
        local key = h.create(ks, "mine")
        sh_ok("chown nobody:nogroup " .. q(ks))
        local before = h.read_file(ks)
        refused_all({ { "list" }, { "create", "new" }, { "revoke", "mine" }, { "verify", key } }, ks,
            "keystore " .. ks .. " belongs to user nobody", "run as root: chown root " .. ks)
        local msg, code = open_fails(ks)
        assert.equal("insecure", code, msg)
        assert.equal(before, h.read_file(ks))
        assert.equal("nobody", owner(ks))
        -- Its owner uses it as before.
        local out, err, rc = run_as(wrap, { "verify", key, "--keystore", ks })
        assert.same({ "mine\n", "", 0 }, { out, err, rc })
    end)

    it("is refused when another user planted it in a folder that all may write (mode 1777): its keys are not accepted and root does not write it", function()
        local wrap, dir, shared = shared_dir(finally)
        if not wrap then
            return
        end
        local ks = shared .. "/keys.p12"
        -- nobody plants a keystore with a key of its own
        local out, err, code = run_as(wrap, { "create", "planted", "--keystore", ks })
        assert.equal(0, code, err)
        local planted = out:match("'planted': (" .. h.UUID .. ")")
        assert.truthy(planted, out)
        local before, files = h.read_file(ks), listing(shared)

        out, err, code = run { "verify", planted, "--keystore", ks }
        assert_refused(out, err, code, "keystore " .. ks .. " belongs to user nobody",
            "folder of your own")
        refused_all({ { "list" }, { "create", "root-key" }, { "revoke", "planted" } }, ks, ks,
            "belongs to user nobody")
        local msg, rc = open_fails(ks)
        assert.equal("insecure", rc, msg)
        -- Not written, so not handed back to nobody with root's key in it.
        assert.equal(before, h.read_file(ks))
        assert.equal(files, listing(shared))
        assert.equal("nobody", owner(ks))
    end)

    it("is refused, with its lock file left uncreated, in a folder group or others may write without the sticky bit, saying chmod go-w", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/keys.p12"
        local key = h.create(ks, "mine")
        os.remove(ks .. ".lock")
        local before = h.read_file(ks)
        for _, mode in ipairs { "777", "775", "757", "770" } do
            sh_ok(("chmod %s %s"):format(mode, q(dir)))
            refused_all({ { "list" }, { "create", "new" }, { "revoke", "mine" }, { "verify", key } }, ks,
                ("folder %s of %s is writable by group or others (mode %04o)"):format(dir, ks, tonumber(mode, 8)),
                "run: chmod go-w " .. dir)
            local msg, code = open_fails(ks)
            assert.equal("insecure", code, msg)
        end
        assert.equal(before, h.read_file(ks))
        assert.equal("keys.p12\n", listing(dir))
        -- The fix works.
        sh_ok("chmod go-w " .. q(dir))
        assert.same({ "mine\n", "", 0 }, { run { "verify", key, "--keystore", ks } })
    end)

    it("is refused when another user owns its folder", function()
        local wrap = as_nobody()
        if not wrap then
            return
        end
        local dir = open_dir(finally)
        local theirs = dir .. "/theirs"
        sh_ok("mkdir -m 700 " .. q(theirs))
        local ks = theirs .. "/keys.p12"
        h.create(ks, "mine")
        local before = h.read_file(ks)
        sh_ok("chown nobody " .. q(theirs))
        refused_all({ { "list" }, { "create", "new" } }, ks,
            ("folder %s of %s belongs to user nobody"):format(theirs, ks), "chown root " .. theirs)
        assert.equal(before, h.read_file(ks))
    end)

    it("is used when it is the user's own in a folder with the sticky bit, or root's when read by another user", function()
        local wrap, dir, shared = shared_dir(finally)
        if not wrap then
            return
        end
        -- root's own keystore in a sticky folder: written and read
        local ks = shared .. "/keys.p12"
        local key = h.create(ks, "root-key")
        assert.same({ "root-key\n", "", 0 }, { run { "verify", key, "--keystore", ks } })
        -- nobody's own keystore there too
        local theirs = shared .. "/theirs.p12"
        local out, err, code = run_as(wrap, { "create", "their-key", "--keystore", theirs })
        assert.equal(0, code, err)
        assert.equal("nobody", owner(theirs))
        out, err, code = run_as(wrap, { "list", "--keystore", theirs })
        assert.same({ 0, "" }, { code, err })
        assert.truthy(out:find("^their%-key "), out)
        -- a server running as nobody reads a keystore of root's that it was given read access to
        local served = dir .. "/served.p12"
        key = h.create(served, "server-key")
        sh_ok("chmod 644 " .. q(served))
        assert.same({ "server-key\n", "", 0 }, { run_as(wrap, { "verify", key, "--keystore", served }) })
    end)

    it("is refused when another user planted its lock file in a folder that all may write, and nothing is written", function()
        local wrap, _, shared = shared_dir(finally)
        if not wrap then
            return
        end
        local ks = shared .. "/keys.p12"
        sh_ok(h.quote_all(wrap) .. " sh -c " .. q("umask 0; : >" .. q(ks .. ".lock")))
        assert.equal("nobody", owner(ks .. ".lock"))
        local out, err, code = run { "create", "root-key", "--keystore", ks }
        assert_refused(out, err, code, "lock file " .. ks .. ".lock belongs to user nobody")
        assert.is_false(h.exists(ks))
        assert.equal("keys.p12.lock\n", listing(shared))
    end)

    it("is refused through a symbolic link that another user made in a folder that all may write", function()
        local wrap, dir, shared = shared_dir(finally)
        if not wrap then
            return
        end
        local real = dir .. "/keys.p12"
        local key = h.create(real, "mine")
        local link = shared .. "/keys.p12"
        sh_ok(h.quote_all(wrap) .. " ln -s " .. q(real) .. " " .. q(link))
        local out, err, code = run { "verify", key, "--keystore", link }
        assert_refused(out, err, code, "symbolic link " .. link .. " belongs to user nobody")
    end)

    it("is refused through a symbolic link another user owns, and the fix it gives works", function()
        if not as_nobody() then
            return
        end
        local dir = h.tmpdir(finally)
        local real = dir .. "/keys.p12"
        local key = h.create(real, "mine")
        local link = dir .. "/link.p12"
        sh_ok("ln -s " .. q(real) .. " " .. q(link) .. " && chown -h nobody " .. q(link))
        local out, err, code = run { "verify", key, "--keystore", link }
        assert_refused(out, err, code, "symbolic link " .. link .. " belongs to user nobody",
            "run as root: chown -h root " .. link)
        sh_ok("chown -h root " .. q(link))
        assert.same({ "mine\n", "", 0 }, { run { "verify", key, "--keystore", link } })
    end)
end)

describe("a keystore with POSIX ACLs and extended attributes", function()
    -- A keystore in a folder others can reach, with an ACL entry that lets nobody read it,
    -- or nil once the test is marked pending.
    local function with_acl(finally)
        local wrap = as_nobody()
        if not wrap then
            return nil
        end
        local dir = open_dir(finally)
        local ks = dir .. "/keys.p12"
        local key = h.create(ks, "first")
        if h.sh("setfacl -m u:nobody:r " .. q(ks) .. " 2>/dev/null") ~= 0 then
            pending("this file system does not take POSIX ACLs (setfacl failed)")
            return nil
        end
        return wrap, dir, ks, key
    end

    local function acl(path)
        return h.capture("getfacl -cp " .. q(path) .. " 2>/dev/null")
    end

    it("keeps an ACL entry that lets another user read it across create and revoke: that user still reads it", function()
        local wrap, _, ks, first = with_acl(finally)
        if not wrap then
            return
        end
        local want = acl(ks)
        assert.truthy(want:find("user:nobody:r--", 1, true), want)
        assert.same({ "first\n", "", 0 }, { run_as(wrap, { "verify", first, "--keystore", ks }) })

        local second = h.create(ks, "second")
        assert.equal(want, acl(ks))
        assert.same({ "second\n", "", 0 }, { run_as(wrap, { "verify", second, "--keystore", ks }) })
        assert.equal(0, select(3, run { "revoke", "first", "--keystore", ks }))
        assert.equal(want, acl(ks))
        local out, err, code = run_as(wrap, { "list", "--keystore", ks })
        assert.same({ 0, "" }, { code, err })
        assert.truthy(out:find("^second "), out)
        assert.same({ "", "unknown\n", 1 }, { run_as(wrap, { "verify", first, "--keystore", ks }) })
    end)

    it("lets a verifier running as that user follow a revoke: it reloads the rewritten file and refuses the key", function()
        local wrap, dir, ks, first = with_acl(finally)
        if not wrap then
            return
        end
        -- The verifier, as nobody: it says whether the key is valid, then waits until the key
        -- is refused (at most 10 s) and says why, and what state it is in.
        local script = dir .. "/follow.lua"
        h.write_file(script, [[
local v = assert(require("apikey").verifier { path = arg[1], interval = 0 })
print(v:verify(arg[2]) and "valid" or "refused")
io.stdout:flush()
local deadline, entry, why = os.time() + 10, nil, nil
repeat
    entry, why = v:verify(arg[2])
    if entry then os.execute("sleep 0.05") end
until not entry or os.time() > deadline
print(tostring(why), v:status().state)
]])
        local out = dir .. "/out"
        assert.equal(0, h.sh(("%s %s lua5.4 %s %s %s >%s 2>&1 &"):format(h.env_words(),
            h.quote_all(wrap), q(script), q(ks), q(first), q(out))))
        local function lines()
            return select(2, (h.read_file(out) or ""):gsub("\n", ""))
        end
        local function wait_for(cond)
            for _ = 1, 200 do
                if cond() then
                    return true
                end
                os.execute("sleep 0.05")
            end
            return false
        end
        assert.is_true(wait_for(function() return lines() >= 1 end), h.read_file(out))
        assert.equal(0, select(3, run { "revoke", "first", "--keystore", ks }))
        assert.is_true(wait_for(function() return lines() >= 2 end), h.read_file(out))
        assert.equal("valid\nunknown\tok\n", h.read_file(out))
    end)

    it("keeps its extended attributes across a write", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/keys.p12"
        h.create(ks, "first")
        if h.sh("setfattr -n user.apikey.origin -v kept " .. q(ks) .. " 2>/dev/null") ~= 0 then
            pending("this file system does not take user extended attributes (setfattr failed)")
            return
        end
        h.create(ks, "second")
        assert.equal("kept", h.capture("getfattr --only-values -n user.apikey.origin " .. q(ks) .. " 2>/dev/null"))
    end)

    it("is not written when its ACL or attributes cannot be carried over: one line, the file byte for byte, no temp file", function()
        local wrap, dir, ks, first = with_acl(finally)
        if not wrap then
            return
        end
        local shim = assert(require("spec.helpers").reliability.faultshim(dir))
        local want, before, files = acl(ks), h.read_file(ks), listing(dir)
        for _, err_name in ipairs { "ENOTSUP", "EIO" } do
            local log = dir .. "/faults.log"
            local out, err, code = h.exec({ "lua5.4", h.bin, "create", "second", "--keystore", ks }, {
                NO_COLOR = "1", LD_PRELOAD = require("spec.helpers").reliability.preload(shim),
                APIKEY_FAULT = "fsetxattr:" .. err_name, APIKEY_FAULT_LOG = log })
            assert.truthy((h.read_file(log) or ""):find("fsetxattr " .. err_name, 1, true), err)
            os.remove(log)
            assert_refused(out, err, code, "cannot carry the ACL and extended attributes of " .. ks,
                "so it is not changed")
            assert.equal(before, h.read_file(ks))
            assert.equal(files, listing(dir))
            assert.equal(want, acl(ks))
        end
        assert.same({ "first\n", "", 0 }, { run_as(wrap, { "verify", first, "--keystore", ks }) })
    end)
end)

describe("a keystore path that is a symbolic link", function()
    it("is read and written through the link: the file it points to is replaced in its own folder, and the link stays a link", function()
        local dir = h.tmpdir(finally)
        sh_ok("mkdir " .. q(dir .. "/real") .. " " .. q(dir .. "/links"))
        local file = dir .. "/real/keys.p12"
        local first = h.create(file, "first")
        sh_ok("chmod 640 " .. q(file))
        local link = dir .. "/links/keys.p12"
        sh_ok("ln -s ../real/keys.p12 " .. q(link))

        local second = h.create(link, "second")
        assert.equal(0, h.sh("test -L " .. q(link)))
        assert.equal("../real/keys.p12\n", h.capture("readlink " .. q(link)))
        assert.equal("640", h.mode(file))
        assert.same({ "second\n", "", 0 }, { run { "verify", second, "--keystore", file } })
        assert.same({ "first\n", "", 0 }, { run { "verify", first, "--keystore", link } })
        assert.equal(0, select(3, run { "revoke", "first", "--keystore", link }))
        assert.same({ "", "unknown\n", 1 }, { run { "verify", first, "--keystore", file } })
        -- The lock and the temp files are beside the file, none beside the link.
        assert.equal("keys.p12\nkeys.p12.lock\n", listing(dir .. "/real"))
        assert.equal("keys.p12\n", listing(dir .. "/links"))
    end)

    it("shares one lock between writers through the link and writers given the file: every change lands", function()
        local dir = h.tmpdir(finally)
        local file = dir .. "/keys.p12"
        h.create(file, "first")
        local link = dir .. "/link.p12"
        sh_ok("ln -s keys.p12 " .. q(link))
        local jobs = {}
        for i = 1, 4 do
            for _, path in ipairs { file, link } do
                jobs[#jobs + 1] = ("lua5.4 %s create %s --keystore %s >/dev/null &"):format(q(h.bin),
                    q(("k%d-%s"):format(i, path == file and "file" or "link")), q(path))
            end
        end
        sh_ok(table.concat(jobs, " ") .. " wait")
        local out = run { "list", "--keystore", link }
        assert.equal(9, #h.lines(out), out)
    end)

    it("is refused when it points to nothing, and no lock file is made", function()
        local dir = h.tmpdir(finally)
        sh_ok("mkdir " .. q(dir .. "/real"))
        local link = dir .. "/keys.p12"
        sh_ok("ln -s real/missing.p12 " .. q(link))
        refused_all({ { "create", "new" }, { "list" } }, link,
            link .. " is a symbolic link to a missing file", "fix the link")
        assert.equal("keys.p12\nreal\n", listing(dir))
        assert.equal("", listing(dir .. "/real"))
    end)
end)

describe("bin/apikey reached through a symbolic link", function()
    -- A copy of the installed tree, so that a default keystore can be made in it.
    local function copy_install(dir)
        local prefix = dir .. "/opt/apikey"
        sh_ok(("mkdir -p %s && cp -a %s/. %s"):format(q(prefix), q(h.prefix), q(prefix)))
        sh_ok("rm -rf " .. q(prefix .. "/security"))
        return prefix
    end

    it("finds its installation and its default keystore through links, with or without LUA_PATH", function()
        local dir = h.tmpdir(finally)
        local prefix = copy_install(dir)
        sh_ok("mkdir -p " .. q(dir .. "/usr/local/bin") .. " " .. q(dir .. "/bin"))
        local link = dir .. "/usr/local/bin/apikey"
        sh_ok(("ln -s %s %s"):format(q(prefix .. "/bin/apikey"), q(link)))
        -- a link to the link, relative
        local chained = dir .. "/bin/apikey"
        sh_ok(("ln -s ../usr/local/bin/apikey %s"):format(q(chained)))
        local default = prefix .. "/security/metricshub-keystore.p12"

        for _, env in ipairs { { LUA_PATH = false, LUA_CPATH = false }, {} } do
            for _, cmd in ipairs { link, chained } do
                local out, err, code = h.exec({ "lua5.4", cmd, "--help" }, env)
                assert.same({ "", 0 }, { err, code }, cmd)
                assert.truthy(out:gsub("%s+", " "):find(default, 1, true), out)
                -- run as a program too, through its #! line
                out, err, code = h.exec({ cmd, "list" }, env)
                assert.same({ "No API keys found.\n", "", 0 }, { out, err, code })
            end
        end
        local out, err, code = h.exec({ link, "create", "by-default" }, { LUA_PATH = false, LUA_CPATH = false })
        assert.same({ "", 0 }, { err, code }, out)
        assert.truthy(h.exists(default), "the key is not in the installation's keystore")
        assert.is_false(h.exists(dir .. "/usr/local/security"))
        local key = out:match("(" .. h.UUID .. ")")
        assert.same({ "by-default\n", "", 0 }, { h.exec({ chained, "verify", key }) })
    end)

    it("says in one line, without a traceback, when its modules are missing", function()
        local dir = h.tmpdir(finally)
        sh_ok("mkdir -p " .. q(dir .. "/bin"))
        sh_ok(("cp %s %s"):format(q(h.bin), q(dir .. "/bin/apikey")))
        -- Nothing else to find them in.
        local out, err, code = h.exec({ "lua5.4", dir .. "/bin/apikey", "list" },
            { LUA_PATH = dir .. "/none/?.lua", LUA_CPATH = dir .. "/none/?.so" })
        assert_refused(out, err, code, "cannot load its Lua modules from " .. dir .. "/share/lua/5.4",
            "reinstall apikey")
    end)
end)

describe("a keystore that is a mount point", function()
    local MOUNT_POINT = "is a mount point (a file mounted on its own)"
    local FIX = "mount its folder instead"

    it("is not replaced, and the error says to mount its folder instead (a real bind mount)", function()
        -- One finally per test: it unmounts, then removes the folder.
        local dir = h.tmpdir()
        local ks = dir .. "/container/keys.p12"
        h.defer(finally, function()
            os.execute("umount " .. q(ks) .. " 2>/dev/null")
            h.remove(dir)
        end)
        sh_ok("mkdir " .. q(dir .. "/host") .. " " .. q(dir .. "/container"))
        local source = dir .. "/host/keys.p12"
        local key = h.create(source, "mine")
        h.write_file(ks, "")
        local mounted = h.sh(("mount --bind %s %s 2>/dev/null"):format(q(source), q(ks))) == 0
        if not mounted then
            pending("mounting is not permitted here (mount --bind failed); the fault shim's EBUSY case stands for it")
            return
        end
        local before = h.read_file(source)
        assert.same({ "mine\n", "", 0 }, { run { "verify", key, "--keystore", ks } })
        refused_all({ { "create", "new" }, { "revoke", "mine" } }, ks, "cannot replace " .. ks, MOUNT_POINT, FIX)
        assert.equal(before, h.read_file(source))
        assert.equal(before, h.read_file(ks))
        assert.equal("keys.p12\nkeys.p12.lock\n", listing(dir .. "/container"))
    end)

    it("is reported as one when the rename fails with EBUSY or EXDEV (fault shim)", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/keys.p12"
        h.create(ks, "mine")
        local rel = require("spec.helpers").reliability
        local shim = assert(rel.faultshim(dir))
        local before, files = h.read_file(ks), listing(dir)
        for _, err_name in ipairs { "EBUSY", "EXDEV" } do
            local out, err, code = h.exec({ "lua5.4", h.bin, "create", "new", "--keystore", ks }, {
                NO_COLOR = "1", LD_PRELOAD = rel.preload(shim), APIKEY_FAULT = "rename:" .. err_name })
            assert_refused(out, err, code, "cannot replace " .. ks, MOUNT_POINT, FIX)
            assert.equal(before, h.read_file(ks))
            assert.equal(files, listing(dir))
        end
    end)
end)

describe("a keystore its owner made read-only (mode 0400)", function()
    it("is not written: create and revoke refuse with its mode and chmod u+w, code io, no lock file made, the mode kept", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/keys.p12"
        local key = h.create(ks, "mine")
        os.remove(ks .. ".lock")
        sh_ok("chmod 400 " .. q(ks))
        local before = h.read_file(ks)
        refused_all({ { "create", "new" }, { "revoke", "mine" } }, ks,
            ("keystore %s is read-only (mode 0400)"):format(ks), "run: chmod u+w " .. ks)
        local ks_api = assert(require("apikey").open { path = ks })
        local created, msg, code = ks_api:create("api")
        ks_api:close()
        assert.same({ nil, "io" }, { created, code }, msg)
        assert.equal(before, h.read_file(ks))
        assert.equal("400", h.mode(ks))
        assert.equal("keys.p12\n", listing(dir))
        -- It is still read.
        assert.same({ "mine\n", "", 0 }, { run { "verify", key, "--keystore", ks } })
        -- The fix works.
        sh_ok("chmod u+w " .. q(ks))
        h.create(ks, "new")
        assert.equal("600", h.mode(ks))
    end)
end)
