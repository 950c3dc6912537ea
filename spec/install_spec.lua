-- The install ways README documents work as written: each is taken from README's own text and
-- run from a clean copy of the repository into temporary folders (another prefix for
-- scripts/install.sh, `luarocks --tree` for LuaRocks), with no LUA_PATH or LUA_CPATH set; then
-- the installed command is used, and the Lua module is required the way README says.
local h = require "spec.helpers"

-- The repository's root, from this file's own path (spec/install_spec.lua).
local root = debug.getinfo(1, "S").source:match("^@(.-)spec/install_spec%.lua$") or ""
root = root == "" and "." or root:gsub("/$", "")

local README = assert(h.read_file(root .. "/README.md"), "cannot read README.md")

-- The fenced code blocks of README: { { lang = "sh", text = "..." }, ... }.
local function code_blocks()
    local blocks = {}
    for lang, text in README:gmatch("\n```(%w*)\n(.-)\n```") do
        blocks[#blocks + 1] = { lang = lang, text = text }
    end
    return blocks
end

-- The text of the one block of language lang that contains needle (plain text).
local function block(lang, needle)
    local found
    for _, b in ipairs(code_blocks()) do
        if b.lang == lang and b.text:find(needle, 1, true) then
            assert(not found, ("README has two %s blocks with %q"):format(lang, needle))
            found = b.text
        end
    end
    return assert(found, ("README has no %s block with %q"):format(lang, needle))
end

-- A pattern that matches text as it is.
local function literal(text)
    return (text:gsub("%p", "%%%0"))
end

-- Replaces every plain occurrence of from in s.
local function replace(s, from, to)
    return (s:gsub(literal(from), (to:gsub("%%", "%%%%"))))
end

-- The environment of every command here: a root shell's PATH on Debian (a test run may put
-- wrappers of lua5.4 first, which LuaRocks would take for the interpreter), none of the test
-- run's Lua paths or install.sh settings, and a home of the run's own (LuaRocks may write
-- there).
local function env(home, extra)
    local vars = { PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        LUA_PATH = false, LUA_CPATH = false, LUA_PATH_5_4 = false, LUA_CPATH_5_4 = false,
        BUILD_DIR = false, CMAKE_ARGS = false, PREFIX = false, HOME = home, NO_COLOR = "1" }
    for k, v in pairs(extra or {}) do
        vars[k] = v
    end
    return vars
end

local function show(out, err, code)
    return ("exit %s, stdout %q, stderr %q"):format(tostring(code), tostring(out), tostring(err))
end

-- Runs a shell command line in folder dir; returns stdout, stderr, exit code.
local function sh_in(dir, line, vars)
    return h.exec({ "sh", "-ec", "cd " .. h.quote(dir) .. "\n" .. line }, vars)
end

-- The packages of sections of scripts/packages.txt.
local function packages_of(sections)
    local want, out, on = {}, {}, false
    for _, s in ipairs(sections) do
        want[s] = true
    end
    for line in (h.read_file(root .. "/scripts/packages.txt") .. "\n"):gmatch("([^\n]*)\n") do
        local section = line:match("^%[(.*)%]$")
        if section then
            on = want[section] or false
        elseif on and line:match("^%S") and not line:match("^#") then
            out[#out + 1] = line:match("^(%S+)")
        end
    end
    return out
end

-- The packages named by dependency fields of installed packages: { name = true }.
local function depends_of(names)
    local out = {}
    local fmt = "${Depends}, ${Pre-Depends}, ${Recommends}\\n"
    local text = h.capture(("dpkg-query -W -f='%s' %s 2>/dev/null"):format(fmt,
        h.quote_all(names)))
    for name in text:gmatch("[%w][%w%.%+%-]*") do
        out[name] = true
    end
    return out
end

-- A clean copy of the repository's tracked files (as they are in the working tree), or of the
-- whole tree without build folders when it is not a git checkout.
local function clean_copy(dest)
    local q, d = h.quote(root), h.quote(dest)
    local cmd
    if h.sh("git -C " .. q .. " rev-parse --is-inside-work-tree >/dev/null 2>&1") == 0 then
        cmd = ("git -C %s ls-files -z | tar -C %s --null -T - -cf - | tar -C %s -xf -"):format(q,
            q, d)
    else
        cmd = ("tar -C %s --exclude='./build*' -cf - . | tar -C %s -xf -"):format(q, d)
    end
    assert(h.sh("mkdir -p " .. d .. " && (" .. cmd .. ")") == 0, "cannot copy the repository")
    assert(h.exists(dest .. "/rockspec/apikey-scm-1.rockspec"), "the copy has no rockspec")
end

describe("install ways of README", function()
    local tmp, src, home

    setup(function()
        tmp = h.tmpdir()
        src, home = tmp .. "/src", tmp .. "/home"
        assert(h.sh("mkdir -p " .. h.quote(home)) == 0)
        clean_copy(src)
    end)

    teardown(function()
        h.remove(tmp)
    end)

    -- Uses the installed command bin: a create, list and verify with its default keystore
    -- (the one README names for the prefix), which --help shows. Returns the key.
    local function use_command(bin, keystore, alias)
        local out, err, code = h.exec({ bin, "create", alias }, env(home))
        assert.equal(0, code, show(out, err, code))
        local key = out:match("^API key created for alias '" .. literal(alias) .. "': (" .. h.UUID
            .. ") %(No expiration%)\n" .. h.STORE_LINE .. "\n$")
        assert.is_truthy(key, show(out, err, code))
        assert.equal("600", h.mode(keystore))
        out, err, code = h.exec({ bin, "list" }, env(home))
        local lines = h.lines(out)
        assert.equal(alias .. " ********************" .. key:sub(-4) .. " (No expiration)",
            lines[#lines], show(out, err, code))
        out, err, code = h.exec({ bin, "verify", key }, env(home))
        assert.equal(alias .. "\n", out, show(out, err, code))
        out, err, code = h.exec({ bin, "--help" }, env(home))
        assert.is_truthy(out:find(keystore, 1, true), "--help does not name " .. keystore
            .. ": " .. show(out, err, code))
        return key
    end

    -- Requires the module with the environment given, from a program that sets nothing itself
    -- (prelude: Lua text run first), and checks it loads from prefix and works.
    local function use_module(vars, prefix, prelude)
        local dir = h.tmpdir(finally)
        local script = (prelude or "") .. [[

            local apikey = require "apikey"
            print(package.searchpath("apikey", package.path))
            print(package.searchpath("apikey.core", package.cpath))
            local ks <close> = assert(apikey.open { path = arg[1] })
            local key = assert(ks:create("from-lua"))
            print(ks:verify(key).alias)
        ]]
        h.write_file(dir .. "/use.lua", script)
        local out, err, code = h.exec({ "lua5.4", dir .. "/use.lua", dir .. "/keys.p12" }, vars)
        assert.equal(0, code, show(out, err, code))
        assert.same({ prefix .. "/share/lua/5.4/apikey/init.lua",
            prefix .. "/lib/lua/5.4/apikey/core.so", "from-lua" }, h.lines(out))
    end

    describe("scripts/install.sh into a prefix", function()
        local prefix

        setup(function()
            prefix = tmp .. "/opt-apikey"
        end)

        it("installs and creates a first key, as written", function()
            local line = block("sh", "scripts/install.sh && ")
            assert.is_truthy(line:find("/opt/apikey/bin/apikey create my-first-key", 1, true))
            -- "sh scripts/install.sh /other/prefix for another place"
            line = replace(line, "sh scripts/install.sh", "sh scripts/install.sh " .. prefix)
            line = replace(line, "/opt/apikey", prefix)
            local out, err, code = sh_in(src, line, env(home))
            assert.equal(0, code, show(out, err, code))
            assert.is_truthy(out:find("API key created for alias 'my%-first%-key': " .. h.UUID
                .. " %(No expiration%)\n" .. h.STORE_LINE .. "\n$"), show(out, err, code))
            local keystore = replace("/opt/apikey/security/metricshub-keystore.p12",
                "/opt/apikey", prefix)
            assert.is_truthy(README:find("The keystore is then `/opt/apikey/security/"
                .. "metricshub-keystore.p12`.", 1, true))
            assert.equal("600", h.mode(keystore))
            use_command(prefix .. "/bin/apikey", keystore, "second")
        end)

        it("README's LUA_PATH and LUA_CPATH lines make require \"apikey\" work", function()
            local lines = replace(block("sh", "LUA_CPATH="), "/opt/apikey", prefix)
            local vars = env(home)
            for _, line in ipairs(h.lines(lines .. "\n")) do
                local name, value = line:match('^export ([%w_]+)="(.*)"$')
                assert.is_truthy(name, "not an export line: " .. line)
                vars[name] = value
            end
            assert.is_string(vars.LUA_PATH)
            assert.is_string(vars.LUA_CPATH)
            use_module(vars, prefix)
        end)

        it("README's package.path lines make require \"apikey\" work", function()
            use_module(env(home), prefix, replace(block("lua", "package.cpath ="), "/opt/apikey",
                prefix))
        end)
    end)

    describe("LuaRocks", function()
        local tree

        setup(function()
            tree = tmp .. "/tree"
        end)

        it("the apt-get line names lua5.4 and all the build and the command need", function()
            local apt = block("sh", "luarocks"):match("apt%-get install ([^\n]*)")
            assert.is_truthy(apt, "no apt-get line in README's LuaRocks block")
            local named, list = {}, {}
            for word in apt:gmatch("%S+") do
                if word:sub(1, 1) ~= "-" then
                    named[word] = true
                    list[#list + 1] = word
                end
            end
            assert.is_true(named["lua5.4"], "lua5.4 missing: LuaRocks would run Lua 5.1")
            assert.is_true(named.luarocks)
            -- Each package the build and the command need is named, or comes with one named.
            local deps = depends_of(list)
            for _, p in ipairs(packages_of({ "runtime", "build" })) do
                assert.is_true(named[p] or deps[p] or false, ("README's apt-get line lacks %s")
                    :format(p))
            end
            -- Each one named is installed here, so the run below uses what README says.
            for _, p in ipairs(list) do
                local status = h.capture("dpkg-query -W -f='${Status}' " .. h.quote(p)
                    .. " 2>/dev/null")
                assert.equal("install ok installed", status, p .. " is not installed")
            end
        end)

        it("installs into a tree, as written, a command that runs Lua 5.4", function()
            local line = block("sh", "luarocks"):match("\n(luarocks [^\n]*)")
            assert.is_truthy(line, "no luarocks line in README's LuaRocks block")
            line = "luarocks --tree " .. h.quote(tree) .. line:sub(#"luarocks" + 1)
            local out, err, code = sh_in(src, line, env(home))
            assert.equal(0, code, show(out, err, code))
            -- LuaRocks' wrapper runs the interpreter it found: Lua 5.4, not 5.1.
            local wrapper = assert(h.read_file(tree .. "/bin/apikey"), "no " .. tree .. "/bin/apikey")
            assert.is_truthy(wrapper:find("/lua5.4'", 1, true), "not run by lua5.4: " .. wrapper)
            out, err, code = h.exec({ tree .. "/bin/apikey", "--version" }, env(home))
            assert.equal(0, code, show(out, err, code))
            use_command(tree .. "/bin/apikey", tree .. "/security/metricshub-keystore.p12",
                "from-rock")
            -- The module is where a tree puts it: for the default tree, /usr/local, which
            -- Lua 5.4 searches by default.
            assert.is_true(h.exists(tree .. "/share/lua/5.4/apikey/init.lua"))
            assert.is_true(h.exists(tree .. "/lib/lua/5.4/apikey/core.so"))
            out = h.exec({ "lua5.4", "-e", "print(package.path) print(package.cpath)" },
                env(home))
            assert.is_truthy(out:find("/usr/local/share/lua/5.4/?.lua;", 1, true), out)
            assert.is_truthy(out:find("/usr/local/share/lua/5.4/?/init.lua;", 1, true), out)
            assert.is_truthy(out:find("/usr/local/lib/lua/5.4/?.so;", 1, true), out)
            use_module(env(home, { LUA_PATH = tree .. "/share/lua/5.4/?.lua;" .. tree
                .. "/share/lua/5.4/?/init.lua;;", LUA_CPATH = tree .. "/lib/lua/5.4/?.so;;" }),
                tree)
        end)
    end)
end)
