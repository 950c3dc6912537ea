-- Shared by the reliability specs (crash, faults, concurrency, hostile input): running the
-- installed command with a time limit, snapshots of a keystore and its folder, the fault
-- shim, and a check that no key ever reaches standard error.
--
-- The specs run against an installed tree: APIKEY_TEST_PREFIX is its prefix, with LUA_PATH
-- and LUA_CPATH pointing into it, and the command is run as `lua5.4 PREFIX/bin/apikey ...`.
--
-- Quoting, files, shell commands and temporary folders come from spec/helpers.lua.
local luassert = require "luassert"
local h = require "spec.helpers"

local rel = {}

rel.prefix = h.prefix
rel.lua = os.getenv("APIKEY_TEST_LUA") or "lua5.4"
rel.bin = h.bin
-- No single command may take longer than this (seconds); it is then killed and fails.
rel.TIMEOUT = 60

-- The repository's root, from this file's own path (spec/support/reliability.lua).
rel.root = (debug.getinfo(1, "S").source:match("^@(.-)spec/support/reliability%.lua$") or "")
if rel.root == "" then
    rel.root = "."
end
rel.root = rel.root:gsub("/$", "")

-- A key as create prints it: UUID v4, lower case.
rel.UUID = h.UUID
rel.CREATED = "^API key created for alias '(.-)': (" .. rel.UUID .. ") %((.-)%)\n"
    .. h.STORE_LINE .. "\n$"

local has_system, system = pcall(require, "system")

--- Seconds since an arbitrary point, with sub-millisecond resolution.
function rel.clock()
    if has_system then
        return system.gettime()
    end
    return os.clock()
end

--- Sleeps for a short while (seconds).
function rel.sleep(seconds)
    if has_system then
        system.sleep(seconds)
    else
        os.execute(("sleep %.3f"):format(seconds))
    end
end

rel.quote = h.quote
rel.read = h.read_file
--- Runs a shell command line; returns its exit code (128 + n when killed by signal n).
rel.sh = h.sh
--- Permission bits in octal, e.g. "600".
rel.mode = h.mode
rel.remove = h.remove

function rel.write(path, data, mode)
    h.write_file(path, data)
    if mode then
        rel.chmod(mode, path)
    end
end

--- What a shell command prints, without trailing blanks.
function rel.capture(cmd)
    return (h.capture(cmd):gsub("%s+$", ""))
end

function rel.chmod(mode, path)
    assert(rel.sh(("chmod %s %s"):format(mode, rel.quote(path))) == 0, "chmod failed: " .. path)
end

--- Whether anything is at path, a dangling symbolic link included.
function rel.exists(path)
    return rel.sh("test -e " .. rel.quote(path) .. " || test -L " .. rel.quote(path)) == 0
end

--- A new empty folder, removed when the test ends (pass busted's finally, or nil and remove
-- it with rel.remove).
function rel.tmpdir(finally)
    -- Canonical, so that a path the fault shim reads back from /proc matches.
    return rel.capture("realpath " .. rel.quote(h.tmpdir(finally)))
end

--- The names in a folder, sorted.
function rel.ls(dir)
    local out = {}
    local listing = rel.capture("ls -A " .. rel.quote(dir) .. " 2>/dev/null")
    for name in listing:gmatch("[^\n]+") do
        out[#out + 1] = name
    end
    table.sort(out)
    return out
end

--- Temp files of a keystore left in its folder ("NAME.tmp-XXXXXX").
function rel.temps(path)
    local dir, base = path:gsub("/+$", ""):match("^(.*)/([^/]+)$")
    local out = {}
    for _, name in ipairs(rel.ls(dir)) do
        if name:sub(1, #base + 5) == base .. ".tmp-" then
            out[#out + 1] = name
        end
    end
    return out
end

-- Keys created during this spec file: none of them may ever appear on standard error.
rel.secrets = {}

--- Remembers a key: rel.run fails the test if it ever shows on standard error.
function rel.secret(key)
    rel.secrets[#rel.secrets + 1] = key:lower()
    return key
end

--- The first remembered key found in text (in any case), or nil.
function rel.leaked(text)
    local low = text:lower()
    for _, key in ipairs(rel.secrets) do
        if low:find(key, 1, true) then
            return key
        end
    end
    return nil
end

--- The shell words that run the installed command with args (a list), in opts.env, under
-- opts.wrap (a list of words put before the interpreter, e.g. setpriv ...).
-- The environment is h.env_words's with NO_COLOR=1, unless opts.env (name = string sets,
-- name = false unsets) says otherwise.
function rel.command(args, opts)
    opts = opts or {}
    local words = { h.env_words({ NO_COLOR = "1" }, opts.env) }
    if opts.wrap then
        words[#words + 1] = h.quote_all(opts.wrap)
    end
    words[#words + 1] = rel.quote(rel.lua) .. " " .. rel.quote(rel.bin)
    words[#words + 1] = h.quote_all(args)
    return table.concat(words, " ")
end

local scratch

-- A folder for the files that carry a command's input and output.
local function scratch_dir()
    if not scratch then
        scratch = rel.tmpdir()
    end
    return scratch
end

--- Removes the folder rel.run used for its files (call from teardown).
function rel.cleanup()
    if scratch then
        rel.remove(scratch)
        scratch = nil
    end
end

--- Runs the installed command: rel.run({ "list", "--keystore", path }, opts).
-- opts.env (see rel.command), opts.stdin (a string; default /dev/null), opts.wrap,
-- opts.timeout (seconds, default rel.TIMEOUT). Returns { code, out, err, seconds }.
-- Fails the test when a remembered key shows on standard error.
function rel.run(args, opts)
    opts = opts or {}
    local cmd = ("timeout -s KILL %d %s"):format(opts.timeout or rel.TIMEOUT,
        rel.command(args, opts))
    local t0 = rel.clock()
    local out, err, code = h.sh_files(cmd, opts.stdin, scratch_dir())
    local r = { code = code, out = out or "", err = err or "", seconds = rel.clock() - t0,
        args = args }
    local key = rel.leaked(r.err)
    if key then
        error(("a key appeared on standard error of `apikey %s`: %q"):format(
            table.concat(args, " "), r.err), 2)
    end
    return r
end

-- What a result looks like in a failure message.
function rel.show(r)
    local args = {}
    for i, a in ipairs(r.args or {}) do
        args[i] = #a > 60 and ("%q..."):format(a:sub(1, 40)) or a
    end
    return ("`apikey %s` -> exit %s, stdout %q, stderr %q"):format(table.concat(args, " "),
        tostring(r.code), r.out:sub(1, 300), r.err:sub(1, 300))
end

--- Asserts that a command failed the way a user can act on: exit code (default 1), nothing
-- on stdout, and one short line on stderr, "apikey: ..." with no control characters.
-- pattern, if given, must be found (plain text) in that line.
function rel.assert_error(r, pattern, code)
    luassert(r.code == (code or 1), "wrong exit code: " .. rel.show(r))
    luassert(r.out == "", "printed on stdout: " .. rel.show(r))
    luassert(r.err:match("^apikey: [^\n]+\n$"), "not one 'apikey: ' line: " .. rel.show(r))
    luassert(not r.err:sub(1, -2):find("%c"), "control characters in the error: " .. rel.show(r))
    luassert(#r.err <= 1024, "error longer than 1024 bytes: " .. rel.show(r))
    if pattern then
        luassert(r.err:find(pattern, 1, true), ("error does not say %q: %s"):format(pattern,
            rel.show(r)))
    end
end

--- Asserts a non-zero exit with one line on stderr and nothing on stdout (usage errors and
-- failures alike).
function rel.assert_refused(r)
    luassert(r.code ~= 0 and r.code < 128, "not a clean failure: " .. rel.show(r))
    rel.assert_error(r, nil, r.code)
end

--- Asserts a create that worked; returns the key (remembered as a secret) and the
-- parenthesised expiry text.
function rel.assert_created(r, alias)
    luassert(r.code == 0, "create failed: " .. rel.show(r))
    local a, key, expiry = r.out:match(rel.CREATED)
    luassert(a, "unexpected output: " .. rel.show(r))
    luassert(alias == nil or a == alias, "wrong alias: " .. rel.show(r))
    return rel.secret(key), expiry
end

--- The aliases and hints a `list` output shows: { { alias, hint, expiry } ... }.
function rel.parse_list(out)
    local rows = {}
    if out == "No API keys found.\n" then
        return rows
    end
    for line in out:gmatch("([^\n]*)\n") do
        local alias, hint, expiry = line:match("^(.-) %*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*"
            .. "(....) %((.-)%)$")
        luassert(alias, "not a list line: " .. ("%q"):format(line))
        rows[#rows + 1] = { alias = alias, hint = hint, expiry = expiry }
    end
    return rows
end

--- Opens a keystore with the Lua API (for fast set-up and checks).
function rel.open(path, password, iterations)
    local apikey = require "apikey"
    return assert(apikey.open { path = path, password = password, iterations = iterations })
end

--- A keystore at path with n keys "<prefix>1".."<prefix>n" made with the Lua API; returns
-- { alias = key } and the aliases in order.
function rel.populate(path, n, prefix, password)
    local ks = rel.open(path, password, 2048)
    local keys, order = {}, {}
    for i = 1, n do
        local alias = (prefix or "key-") .. i
        local key = assert(ks:create(alias))
        keys[alias] = rel.secret(key)
        order[#order + 1] = alias
    end
    ks:close()
    return keys, order
end

--- A new folder (remove it with rel.remove) with a keystore "keys.p12" of n keys "key-1"..
-- "key-n" made with the Lua API. Returns the folder, the keystore's path, { alias = key } and
-- the keystore's bytes.
function rel.keystore_dir(n)
    local dir = rel.tmpdir()
    local ks = dir .. "/keys.p12"
    local keys = rel.populate(ks, n, "key-")
    return dir, ks, keys, rel.read(ks)
end

--- The fault shim (tests/faultshim.c) built into dir, or APIKEY_FAULTSHIM when set. Returns
-- the library's path, or nil and why.
function rel.faultshim(dir)
    local prebuilt = os.getenv("APIKEY_FAULTSHIM")
    if prebuilt and prebuilt ~= "" then
        return prebuilt
    end
    local cc = os.getenv("CC") or "cc"
    local so = dir .. "/faultshim.so"
    local log = dir .. "/faultshim.build"
    local cmd = ("%s -shared -fPIC -O1 -Wall -Wextra -Werror -o %s %s -ldl >%s 2>&1"):format(
        cc, rel.quote(so), rel.quote(rel.root .. "/tests/faultshim.c"), rel.quote(log),
        rel.quote(log))
    if rel.sh(cmd) ~= 0 then
        return nil, rel.read(log) or "cannot run " .. cc
    end
    return so
end

--- The LD_PRELOAD value that adds library to the one in use: a sanitizer runtime preloaded
-- by the caller must stay first.
function rel.preload(library)
    local current = os.getenv("LD_PRELOAD")
    if current and current ~= "" then
        return current .. ":" .. library
    end
    return library
end

--- When the specs run as root, the words that run a command as nobody (root reads any file,
-- so "unreadable" needs another user); {} when not root; nil when there is no way.
function rel.unprivileged()
    if rel.capture("id -u") ~= "0" then
        return {}
    end
    if rel.sh("command -v setpriv >/dev/null 2>&1") ~= 0 then
        return nil
    end
    local probe = "setpriv --reuid=65534 --regid=65534 --clear-groups " .. rel.quote(rel.lua)
        .. " -e 'require \"apikey\"' >/dev/null 2>&1"
    if rel.sh(probe) ~= 0 then
        return nil -- the install is not readable by nobody
    end
    return { "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups" }
end

--- Prints a summary line for the closing note, after the test output.
function rel.summary(line)
    io.stderr:write("\n[reliability] ", line, "\n")
    io.stderr:flush()
end

return rel
