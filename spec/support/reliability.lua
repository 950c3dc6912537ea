-- Part of spec/helpers.lua, as its field `reliability`: what the reliability specs (crash,
-- faults, concurrency, hostile input) share. Running the installed command with a time limit,
-- snapshots of a keystore and its folder, the fault shim, and a check that no key ever
-- reaches standard error. Everything else of spec/helpers.lua is there too, by the same names
-- (rel.quote, rel.tmpdir, ...), with rel.read and rel.write for read_file and write_file:
--
--   local rel = require("spec.helpers").reliability
local luassert = require "luassert"

return function(h)
    local rel = setmetatable({}, { __index = h })

    -- No single command may take longer than this (seconds); it is then killed and fails.
    rel.TIMEOUT = 60

    rel.CREATED = "^API key created for alias '(.-)': (" .. h.UUID .. ") %((.-)%)\n"
        .. h.STORE_LINE .. "\n$"

    rel.read = h.read_file
    rel.write = h.write_file

    --- The names in a folder, sorted.
    function rel.ls(dir)
        local out = {}
        local listing = h.capture("ls -A " .. rel.quote(dir) .. " 2>/dev/null")
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

    -- Keys created during this run: none of them may ever appear on standard error.
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
        luassert(not r.err:sub(1, -2):find("%c"),
            "control characters in the error: " .. rel.show(r))
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

    --- The fault shim (tests/faultshim.c) built into dir by tests/build.sh, or APIKEY_FAULTSHIM
    -- when set. Returns the library's path, or nil and why.
    function rel.faultshim(dir)
        local prebuilt = os.getenv("APIKEY_FAULTSHIM")
        if prebuilt and prebuilt ~= "" then
            return prebuilt
        end
        local log = dir .. "/faultshim.build"
        local cmd = ("sh %s %s faultshim >%s 2>&1"):format(rel.quote(h.root .. "/tests/build.sh"),
            rel.quote(dir), rel.quote(log))
        if rel.sh(cmd) ~= 0 then
            return nil, rel.read(log) or "cannot run tests/build.sh"
        end
        return dir .. "/faultshim.so"
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
        if h.output("id -u") ~= "0" then
            return {}
        end
        if rel.sh("command -v setpriv >/dev/null 2>&1") ~= 0 then
            return nil
        end
        local probe = "setpriv --reuid=65534 --regid=65534 --clear-groups " .. rel.quote(rel.lua)
            .. " " .. rel.quote(rel.bin) .. " --version >/dev/null 2>&1"
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
end
