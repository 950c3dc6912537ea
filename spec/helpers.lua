-- The specs' helpers, one module for every spec: `local h = require "spec.helpers"`.
-- Temporary folders, running commands, reading files; h.reliability adds what the reliability
-- specs (crash, faults, concurrency, hostile input) share (spec/support/reliability.lua).
--
-- The specs run against an installed tree, its prefix h.prefix: APIKEY_TEST_PREFIX when set
-- (scripts/test.sh stages an install for each run and sets it), else build/stage of the
-- repository, which `sh scripts/install.sh --with-tests build/stage` makes for running busted
-- by hand. Loading this module stops with a one-line hint when that tree is missing (or
-- build/stage is older than a source), and puts it first on package.path and package.cpath;
-- the command is run as `lua5.4 PREFIX/bin/apikey ...`.
local helpers = {}

function helpers.quote(s)
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

function helpers.trim(s)
    return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- Everything a shell command prints on stdout.
function helpers.capture(cmd)
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    p:close()
    return out
end

-- What a shell command prints, without the blanks around it.
function helpers.output(cmd)
    return helpers.trim(helpers.capture(cmd))
end

-- The repository's root, absolute, from this file's own path (spec/helpers.lua).
do
    local dir = debug.getinfo(1, "S").source:match("^@(.-)spec/helpers%.lua$") or ""
    helpers.root = helpers.output("cd " .. helpers.quote(dir == "" and "." or dir) .. " && pwd")
end

-- The interpreter that runs the command (and the scripts the specs start).
helpers.lua = os.getenv("APIKEY_TEST_LUA") or "lua5.4"

-- The Lua version of this run, "5.4", "5.3" or "5.1" (LuaJIT): the API and verifier specs also
-- run under the last two, against the modules installed for them.
helpers.lua_version = _VERSION:match("%d+%.%d+")
local V = helpers.lua_version

do
    local prefix = os.getenv("APIKEY_TEST_PREFIX") or ""
    local staged_by_hand = prefix == ""
    local stage = "sh scripts/install.sh --with-tests build/stage"
    local hint = "APIKEY_TEST_PREFIX is " .. prefix .. ", which holds no apikey install"
    if staged_by_hand then
        prefix = helpers.root .. "/build/stage"
        hint = "no apikey install to test in " .. prefix .. "; run: " .. stage
    end
    for _, file in ipairs { "/bin/apikey", "/lib/lua/" .. V .. "/apikey/core.so" } do
        local f = io.open(prefix .. file, "rb")
        if not f then
            error(hint, 0)
        end
        f:close()
    end
    -- A source changed since build/stage was staged would go untested: the first such file.
    if staged_by_hand then
        local find = [[cd %s && find csrc -type f -newer %s/lib/lua/5.4/apikey/core.so;
            tail -n +2 bin/apikey | cmp -s - %s/bin/apikey -i 0:$(head -n 1 %s/bin/apikey | wc -c) \
                || echo bin/apikey
            for f in $(find lua -name '*.lua'); do
                cmp -s "$f" %s/share/lua/5.4/"${f#lua/}" || echo "$f"
            done]]
        local q = helpers.quote(prefix)
        local changed = helpers.capture(find:format(helpers.quote(helpers.root), q, q, q, q))
            :match("[^\n]+")
        if changed then
            error(("%s changed since %s was staged; run: %s"):format(changed, prefix, stage), 0)
        end
    end
    helpers.prefix = prefix
    helpers.bin = prefix .. "/bin/apikey"
    package.path = ("%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;%s"):format(prefix, V,
        prefix, V, package.path)
    package.cpath = ("%s/lib/lua/%s/?.so;%s"):format(prefix, V, package.cpath)
end

-- A key as create prints it: UUID v4, lower case.
helpers.UUID = "%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x"
helpers.STORE_LINE = "Please store this key securely, as it will not be shown again."

-- The words of a list, each quoted, with blanks between.
function helpers.quote_all(list)
    local out = {}
    for i, s in ipairs(list) do
        out[i] = helpers.quote(s)
    end
    return table.concat(out, " ")
end

function helpers.read_file(path)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    local data = f:read("a")
    f:close()
    return data
end

-- Writes data to path, and gives it mode (e.g. "600") if given.
function helpers.write_file(path, data, mode)
    local f = assert(io.open(path, "wb"))
    assert(f:write(data))
    assert(f:close())
    if mode then
        helpers.chmod(mode, path)
    end
end

function helpers.chmod(mode, path)
    assert(helpers.sh(("chmod %s %s"):format(mode, helpers.quote(path))) == 0,
        "chmod failed: " .. path)
end

-- Whether anything is at path, a dangling symbolic link included.
function helpers.exists(path)
    local q = helpers.quote(path)
    return helpers.sh("test -e " .. q .. " || test -L " .. q) == 0
end

-- Runs a shell command line; returns its exit code (128 + n when killed by signal n).
function helpers.sh(cmd)
    local ok, how, n = os.execute(cmd)
    if type(ok) == "number" then -- Lua 5.1: the wait status
        return ok % 128 ~= 0 and 128 + ok % 128 or math.floor(ok / 256)
    end
    if how == "signal" then
        return 128 + n
    end
    return ok and 0 or n
end

-- Permission bits in octal, e.g. "600".
function helpers.mode(path)
    return (helpers.capture("stat -c %a " .. helpers.quote(path)):gsub("%s+$", ""))
end

-- Removes a folder and all in it, whatever its modes.
function helpers.remove(dir)
    local q = helpers.quote(dir)
    os.execute("chmod -R u+rwx " .. q .. " 2>/dev/null; rm -rf " .. q)
end

-- busted keeps one `finally` a test: each call replaces the one before. defer(finally, fn)
-- keeps them all instead, and runs them last first when the test ends (each even when one
-- before it failed; the first error is raised then). Every cleanup of the specs goes through
-- it, so that no server, process or folder a test started outlives it.
local deferred = setmetatable({}, { __mode = "k" })
function helpers.defer(finally, fn)
    local list = deferred[finally]
    if not list then
        list = {}
        deferred[finally] = list
        finally(function()
            deferred[finally] = nil
            local first
            for i = #list, 1, -1 do
                local ok, err = pcall(list[i])
                first = first or (not ok and err or nil)
            end
            if first then
                error(first, 0)
            end
        end)
    end
    list[#list + 1] = fn
end

-- A new empty folder, removed when the test ends (pass busted's finally, or nil and remove
-- it with helpers.remove). Its path is canonical, so that a path the fault shim reads back
-- from /proc matches.
function helpers.tmpdir(finally)
    local dir = helpers.output("realpath \"$(mktemp -d \"${TMPDIR:-/tmp}/apikey-spec.XXXXXX\")\"")
    assert(dir ~= "", "mktemp failed")
    if finally then
        helpers.defer(finally, function()
            helpers.remove(dir)
        end)
    end
    return dir
end

-- A keystore opened with the Lua API (opts added to apikey.open's) in a new folder, closed and
-- removed when the test ends: the keystore and its path.
function helpers.open_keystore(finally, opts)
    local o = { path = helpers.tmpdir(finally) .. "/keys.p12" }
    for k, v in pairs(opts or {}) do
        o[k] = v
    end
    local ks = assert(require("apikey").open(o))
    helpers.defer(finally, function()
        ks:close()
    end)
    return ks, o.path
end

-- Asserts a failure of the Lua API: nil, a one-line message holding pattern (plain text, when
-- given), and the code.
function helpers.fails(code, pattern, ok, msg, got)
    local luassert = require "luassert"
    luassert.is_nil(ok)
    luassert.equal(code, got, msg)
    luassert.is_string(msg)
    luassert.is_nil(msg:find("\n"), msg)
    if pattern then
        luassert.truthy(msg:find(pattern, 1, true), msg)
    end
end

-- What a command's environment is unless told otherwise: APIKEY_KEYSTORE and
-- APIKEY_KEYSTORE_PASSWORD unset, so that the caller's environment never reaches a real
-- keystore, and TZ=UTC.
local DEFAULT_ENV = { APIKEY_KEYSTORE = false, APIKEY_KEYSTORE_PASSWORD = false, TZ = "UTC" }

-- The env(1) words for DEFAULT_ENV changed by each table given, in turn (name = string sets,
-- name = false unsets; a nil is skipped).
function helpers.env_words(...)
    local vars = {}
    for k, v in pairs(DEFAULT_ENV) do
        vars[k] = v
    end
    for i = 1, select("#", ...) do
        for k, v in pairs(select(i, ...) or {}) do
            vars[k] = v
        end
    end
    local names = {}
    for k in pairs(vars) do
        names[#names + 1] = k
    end
    table.sort(names)
    -- env(1) takes its -u options before the assignments.
    local unset, set = { "env" }, {}
    for _, k in ipairs(names) do
        if vars[k] == false then
            unset[#unset + 1] = "-u " .. k
        else
            set[#set + 1] = helpers.quote(k .. "=" .. vars[k])
        end
    end
    return table.concat(unset, " ") .. " " .. table.concat(set, " ")
end

-- Runs a shell command line with stdin (a string, or nothing: /dev/null), its output going
-- through files: "in", "out" and "err" in dir, or temporary files when dir is nil. Returns
-- stdout, stderr (nil where a file is missing), exit code.
function helpers.sh_files(cmd, stdin, dir)
    local out, err, input
    if dir then
        out, err, input = dir .. "/out", dir .. "/err", dir .. "/in"
    else
        out, err, input = os.tmpname(), os.tmpname(), stdin and os.tmpname()
    end
    if stdin then
        helpers.write_file(input, stdin)
    else
        input = "/dev/null"
    end
    local code = helpers.sh(("%s <%s >%s 2>%s"):format(cmd, helpers.quote(input),
        helpers.quote(out), helpers.quote(err)))
    local o, e = helpers.read_file(out), helpers.read_file(err)
    os.remove(out)
    os.remove(err)
    if stdin then
        os.remove(input)
    end
    return o, e, code
end

-- Runs argv (a list) with env changes (see helpers.env_words) and stdin (see
-- helpers.sh_files). Returns stdout, stderr, exit code.
function helpers.exec(argv, env, stdin)
    return helpers.sh_files(helpers.env_words(env) .. " " .. helpers.quote_all(argv), stdin)
end

-- Runs the installed command: run({ "list", "--json" }, env, stdin).
function helpers.run(args, env, stdin)
    local argv = { helpers.lua, helpers.bin }
    table.move(args, 1, #args, 3, argv)
    return helpers.exec(argv, env, stdin)
end

-- Creates a key with the command and returns it (asserting success).
function helpers.create(keystore, alias, extra, env)
    local args = { "create", alias, "--keystore", keystore }
    for _, a in ipairs(extra or {}) do
        args[#args + 1] = a
    end
    local out, err, code = helpers.run(args, env)
    assert(code == 0, ("create %s failed (%s): %s"):format(alias, tostring(code), err))
    return assert(out:match("^API key created for alias '.-': (" .. helpers.UUID .. ") "), out)
end

-- Adds a key that expired an hour ago (the API refuses a past date, the core takes it).
-- Returns the key.
function helpers.create_expired(keystore, alias, password)
    local ks = assert(require("apikey").open { path = keystore, password = password,
        iterations = 1000, lock_timeout = 5 })
    local now = os.time()
    local key = assert(require("apikey.core").create(ks, alias, now - 7200, now - 3600))
    ks:close()
    return key, now - 3600
end

-- Unix seconds of "YYYY-MM-DDThh:mm:ssZ" (independent of the C core's parser).
function helpers.utc_seconds(s)
    local y, mo, d, h, mi, se = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)Z$")
    assert(y, "not an ISO-8601 UTC time: " .. tostring(s))
    y, mo = tonumber(y), tonumber(mo)
    if mo <= 2 then
        y = y - 1
    end
    local floor = math.floor -- not //: this module loads under Lua 5.1 too
    local era = floor(y / 400)
    local yoe = y - era * 400
    local doy = floor((153 * (mo > 2 and mo - 3 or mo + 9) + 2) / 5) + tonumber(d) - 1
    local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
    local days = era * 146097 + doe - 719468
    return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(se)
end

-- Lines of a text, without their newlines.
function helpers.lines(text)
    local out = {}
    for line in text:gmatch("([^\n]*)\n") do
        out[#out + 1] = line
    end
    return out
end

local has_system, system = pcall(require, "system")

-- Seconds since an arbitrary point, with sub-millisecond resolution.
function helpers.clock()
    if has_system then
        return system.gettime()
    end
    return os.clock()
end

-- Sleeps for a short while (seconds).
function helpers.sleep(seconds)
    if has_system then
        system.sleep(seconds)
    else
        os.execute(("sleep %.3f"):format(seconds))
    end
end

-- Java 17's bin folder (keytool, java, javac), or nil: for the specs that share a keystore
-- with Java.
function helpers.jdk17()
    local dir = helpers.capture("ls -d /usr/lib/jvm/java-17-openjdk-*/bin 2>/dev/null | head -n 1")
        :gsub("%s+$", "")
    if dir ~= "" and helpers.sh("test -x " .. helpers.quote(dir .. "/keytool")) == 0 then
        return dir
    end
    return nil
end

-- Runs a shell command line; asserts it succeeds and returns its standard output.
function helpers.must(cmd)
    local out, err, code = helpers.sh_files(cmd)
    assert(code == 0, ("%s failed (%s): %s%s"):format(cmd, tostring(code), out or "", err or ""))
    return out
end

-- Java's keytool from jdk (helpers.jdk17()) on a PKCS12 file: its standard output.
function helpers.keytool(jdk, file, storepass, ...)
    return helpers.must(helpers.quote_all { jdk .. "/keytool", ... }
        .. " -storetype PKCS12 -keystore " .. helpers.quote(file) .. " -storepass "
        .. helpers.quote(storepass) .. " -noprompt")
end

helpers.reliability = require("spec.support.reliability")(helpers)

return helpers
