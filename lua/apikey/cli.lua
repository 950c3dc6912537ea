--- The `apikey` command: create, list, revoke and verify API keys from a shell.
--
-- main(argv, opts) -> exit code: 0 done, 1 a failed operation, 2 a usage error.
-- opts.prefix: the install prefix (its security/metricshub-keystore.p12 is the default
-- keystore); opts.stdout, opts.stderr, opts.stdin (files) and opts.env (a table of
-- variables) replace the process's own, for tests and embedding.
local apikey = require "apikey"
local argparse = require "argparse"
local json = require "dkjson"

local cli = {}

local printable = apikey.printable
local KEYSTORE_NAME = "metricshub-keystore.p12"

local HELP_EPILOG = [[
Options --keystore and --password-file are accepted by every command.

Environment:
   APIKEY_KEYSTORE           the keystore, when --keystore is not given
   APIKEY_KEYSTORE_PASSWORD  its password, when --password-file is not given
                             (default: none; then file permissions protect it)
   NO_COLOR                  when set, errors are not coloured

Exit status: 0 done, 1 the operation failed, 2 a usage error.]]

-- Builds the parser; the returned table records --help and --version, which are handled
-- by main (argparse's own would call os.exit). default_keystore: the path --help shows.
local function build_parser(default_keystore)
    local asked = {}
    local function common(p, root)
        p:add_help(false):help_max_width(80)
        p:flag("-h --help", "Show this help and exit."):action(function()
            asked.help = asked.help or p
        end)
        -- Accepted before and after the command name: the root's go to other targets,
        -- as argparse resets a target the command also defines.
        p:option("--keystore", "The keystore file (default: APIKEY_KEYSTORE, then "
            .. default_keystore .. ").")
            :argname("PATH"):target(root and "root_keystore" or "keystore")
        p:option("--password-file", "A file whose first line is the keystore's password "
            .. "(default: APIKEY_KEYSTORE_PASSWORD, else none).")
            :argname("FILE"):target(root and "root_password_file" or "password_file")
    end

    local parser = argparse("apikey", "Create, list, revoke and verify API keys. Only a SHA-256 "
        .. "hash of each key is kept, in a PKCS#12 keystore.")
        :command_target("command")
        :epilog(HELP_EPILOG)
    common(parser, true)
    parser:flag("--version", "Show the version and exit."):action(function()
        asked.version = true
    end)

    local create = parser:command("create", "Create an API key and print it, once.")
    common(create)
    create:argument("alias", "A name for the key, unique without regard to case.")
    create:mutex(
        create:option("--expires-on", "Expiry date, YYYY-MM-DDThh:mm:ss in local time, or "
            .. "with Z or +hh:mm.")
            :argname("DATETIME"),
        create:option("--expires-in", "Expiry after a duration: a number and s, m, h, d or w "
            .. "(e.g. 90d).")
            :argname("DURATION"))

    local list = parser:command("list", "List the keys: alias, masked key, expiry.")
    common(list)
    list:flag("--json", "Print a JSON array of {alias, hint, created, expires, expired}.")

    local revoke = parser:command("revoke", "Revoke (delete) the key of an alias.")
    common(revoke)
    revoke:argument("alias", "The alias of the key to revoke.")

    local verify = parser:command("verify", "Check a key: print its alias, or why it is refused.")
    common(verify)
    verify:argument("key", "The key; read from standard input when absent or -.")
        :args("?")

    return parser, asked
end

-- Reads the password from the first line of a file.
local function read_password(path)
    local f, err = io.open(path, "rb")
    if not f then
        return nil, ("cannot open the password file %s; check the path given to --password-file")
            :format(err)
    end
    local data, rerr = f:read("a")
    f:close()
    if not data then
        return nil, ("cannot read the password file %s: %s"):format(path, rerr)
    end
    local line = data:match("^[^\n]*"):gsub("\r$", "")
    if line == "" then
        return nil, ("the password file %s is empty; put the password on its first line")
            :format(path)
    end
    return line
end

local function expiry_text(e)
    if e.expires == nil then
        return "No expiration"
    end
    return (e.expired and "Expired on " or "Expires on ") .. apikey.format_local(e.expires)
end

local function list_json(entries)
    local out = {}
    for i, e in ipairs(entries) do
        out[i] = {
            alias = e.alias,
            hint = e.hint,
            created = apikey.format_utc(e.created),
            expires = e.expires and apikey.format_utc(e.expires) or json.null,
            expired = e.expired,
        }
    end
    return json.encode(out, { keyorder = { "alias", "hint", "created", "expires", "expired" } })
end

local commands = {}

function commands.create(ks, args, ctx)
    local key, entry, code = ks:create(args.alias, {
        expires = args.expires_on,
        expires_in = args.expires_in,
    })
    if not key then
        return ctx.fail(entry, code)
    end
    ctx.say(("API key created for alias '%s': %s (%s)")
        :format(entry.alias, key, expiry_text(entry)))
    ctx.say("Please store this key securely, as it will not be shown again.")
    ctx.warn(code)
    return 0
end

function commands.list(ks, args, ctx)
    local entries, msg, code = ks:list()
    if not entries then
        return ctx.fail(msg, code)
    end
    if args.json then
        ctx.say(list_json(entries))
    elseif #entries == 0 then
        ctx.say("No API keys found.")
    else
        for _, e in ipairs(entries) do
            -- Another tool may have written any text as an alias: never raw to a terminal.
            ctx.say(("%s %s (%s)"):format(printable(e.alias, true), e.masked, expiry_text(e)))
        end
    end
    return 0
end

function commands.revoke(ks, args, ctx)
    local ok, msg, code = ks:revoke(args.alias)
    if ok then
        ctx.say(("API key '%s' has been revoked."):format(args.alias))
        ctx.warn(msg)
        return 0
    elseif code == "notfound" then
        ctx.err:write(("No API key found with alias '%s'.\n"):format(printable(args.alias)))
        return 1
    end
    return ctx.fail(msg, code)
end

function commands.verify(ks, args, ctx)
    local key = args.key
    if key == nil or key == "-" then
        key = (ctx.stdin:read("l") or ""):gsub("\r$", "")
    end
    local entry, why = ks:verify(key)
    if entry then
        ctx.say(printable(entry.alias, true))
        return 0
    end
    ctx.err:write(why, "\n")
    return 1
end

local function use_color(stderr, getenv)
    if stderr ~= io.stderr or getenv("NO_COLOR") ~= nil then
        return false
    end
    local term = getenv("TERM")
    if term == nil or term == "" or term == "dumb" then
        return false
    end
    return os.execute("test -t 2") == true
end

function cli.main(argv, opts)
    argv = argv or {}
    opts = opts or {}
    local stdout, stderr = opts.stdout or io.stdout, opts.stderr or io.stderr
    local env = opts.env
    local getenv = env and function(name)
        return env[name]
    end or os.getenv

    local function fail(msg, status)
        local prefix = "apikey:"
        if use_color(stderr, getenv) then
            prefix = "\27[1;31mapikey:\27[0m"
        end
        stderr:write(prefix, " ", msg, "\n")
        return status or 1
    end

    local default_keystore = opts.prefix
        and opts.prefix:gsub("/$", "") .. "/security/" .. KEYSTORE_NAME
    local parser, asked = build_parser(default_keystore or "PREFIX/security/" .. KEYSTORE_NAME)
    local ok, args = parser:pparse(table.move(argv, 1, #argv, 1, {}))
    if asked.help then
        stdout:write(asked.help:get_help(), "\n")
        return 0
    elseif asked.version then
        stdout:write("apikey ", apikey.version, "\n")
        return 0
    elseif not ok then
        local msg = args:gsub("\n(%a)", function(c)
            return "; " .. c:lower()
        end)
        return fail(msg .. " (see 'apikey --help')", 2)
    end

    local path = args.keystore or args.root_keystore
    if path == "" then
        return fail("--keystore needs a path", 2)
    end
    if not path then
        path = getenv("APIKEY_KEYSTORE")
        if path == "" then
            path = nil
        end
    end
    if not path then
        path = default_keystore
        if not path then
            return fail("no keystore given; use --keystore PATH or set APIKEY_KEYSTORE")
        end
    end

    local password
    local password_file = args.password_file or args.root_password_file
    if password_file then
        local msg
        password, msg = read_password(password_file)
        if not password then
            return fail(msg)
        end
    else
        password = getenv("APIKEY_KEYSTORE_PASSWORD")
    end

    local function fail_op(msg, code)
        if code == "badpassword" and not msg:find("--password-file", 1, true) then
            msg = msg .. "; give the keystore's password with --password-file FILE or "
                .. "APIKEY_KEYSTORE_PASSWORD"
        end
        return fail(msg)
    end

    local ks <close>, msg, code = apikey.open { path = path, password = password }
    if not ks then
        return fail_op(msg, code)
    end
    return commands[args.command](ks, args, {
        say = function(line)
            stdout:write(line, "\n")
        end,
        err = stderr,
        stdin = opts.stdin or io.stdin,
        fail = fail_op,
        -- A change that was made but not confirmed on disk: done, and said on stderr.
        warn = function(msg)
            if msg then
                fail("warning: " .. msg .. "; the change is made")
            end
        end,
    })
end

return cli
