--- The `apikey` command: create, list, rotate, revoke and verify API keys from a shell.
--
-- main(argv, opts) -> exit code: 0 done, 1 a failed operation, 2 a usage error.
-- opts.prefix: the install prefix (its security/metricshub-keystore.p12 is the default
-- keystore); opts.stdout, opts.stderr, opts.stdin (files) and opts.env (a table of
-- variables) replace the process's own, for tests and embedding.
local apikey = require "apikey"
local argparse = require "argparse"
local core = require "apikey.core"
local store = require "apikey.store"

local cli = {}

local printable = apikey.printable
local KEYSTORE_NAME = "metricshub-keystore.p12"

local HELP_EPILOG = [[
Options --keystore, --password-file and --store are accepted by every command.

Environment:
   APIKEY_KEYSTORE           the keystore, when --keystore is not given
   APIKEY_KEYSTORE_PASSWORD  its password, when --password-file is not given
                             (default: none; then file permissions protect it)
   APIKEY_STORE              the PostgreSQL store, when --store is not given
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
        p:option("--store", "A PostgreSQL database, as a libpq connection string "
            .. "(postgresql://USER@HOST/DB): create, list, rotate, revoke and verify work on "
            .. "its table instead of the keystore; sync follows it (default: APIKEY_STORE, else "
            .. "none).")
            :argname("URL"):target(root and "root_store" or "store")
    end

    local parser = argparse("apikey", "Create, list, rotate, revoke and verify API keys; change "
        .. "the keystore's password. Only a SHA-256 hash of each key is kept, in a PKCS#12 "
        .. "keystore.")
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
            .. "with Z or +hh:mm; seconds optional, a fraction dropped.")
            :argname("DATETIME"),
        create:option("--expires-in", "Expiry after a duration: a number and s, m, h, d or w "
            .. "(e.g. 90d).")
            :argname("DURATION"))
    create:option("--scope", "What the key may do: one or more scope names, comma-separated "
        .. "(e.g. read,mcp); the option may be repeated. Default: full access.")
        :argname("SCOPE[,SCOPE...]"):count("*")

    local list = parser:command("list", "List the keys: alias, masked key, expiry, scopes.")
    common(list)
    list:flag("--json", "Print a JSON array of {alias, hint, created, expires, expired, scopes, "
        .. "rotated}.")

    local rotate = parser:command("rotate", "Give an alias a new key, with the same scopes and "
        .. "expiry, and print it, once.")
    common(rotate)
    rotate:argument("alias", "The alias whose key to replace.")
    rotate:option("--grace", "How long the old key keeps working (e.g. 1h, 7d); default: it "
        .. "stops at once.")
        :argname("DURATION")
    rotate:mutex(
        rotate:option("--expires-on", "Expiry date of the new key, instead of the old key's.")
            :argname("DATETIME"),
        rotate:option("--expires-in", "Expiry of the new key after a duration (e.g. 90d).")
            :argname("DURATION"))

    local revoke = parser:command("revoke", "Revoke (delete) the keys of an alias, or of the "
        .. "alias a key belongs to.")
    common(revoke)
    revoke:argument("alias", "The alias of the key to revoke."):args("?")
    revoke:option("--key", "Revoke the alias of a key read from standard input (only '-' is "
        .. "taken: a key on the command line would show in the process list).")
        :argname("-")

    local migrate = parser:command("migrate", "Turn every MetricsHub key of the keystore into "
        .. "an apikey key (same alias, key and expiry), so that no key stays in the file in the "
        .. "clear. MetricsHub's own server reads its own entries only: after this, check keys "
        .. "with apikey, not with MetricsHub's server.")
    common(migrate)
    migrate:flag("--dry-run", "Print what would be migrated, change nothing.")

    local verify = parser:command("verify", "Check a key: print its alias, or why it is refused.")
    common(verify)
    verify:argument("key", "The key; read from standard input when absent or -.")
        :args("?")

    local passwd = parser:command("passwd", "Change the keystore's password (the current one "
        .. "from --password-file or APIKEY_KEYSTORE_PASSWORD), in one write: other tools' keys "
        .. "protected with it are protected with the new one. The new password is the first line "
        .. "of standard input unless an option gives it.")
    common(passwd)
    passwd:mutex(
        passwd:option("--new-password-file", "A file whose first line is the new password.")
            :argname("FILE"),
        passwd:flag("--no-password", "Remove the password: the file's permissions then protect "
            .. "it."))

    local has_passwd = parser:command("has-passwd", "Tell whether the keystore has a password: "
        .. "exit status 0 when it has, 1 when not.")
    common(has_passwd)

    local sync = parser:command("sync", "Keep the keystore file equal to the store's table: "
        .. "follow its changes, and write the file (atomically) only when they change it.")
    common(sync)
    sync:option("--interval", "Seconds between two full reads of the store when no change is "
        .. "notified, and between two tries while it is away (default 10).")
        :argname("SECONDS")
    sync:flag("--once", "Sync once and exit: 0 when the file is equal to the store.")

    return parser, asked
end

-- Reads the password from the first line of a file, reading at most PASSWORD_FILE_MAX bytes.
local PASSWORD_FILE_MAX = 65536
local function read_password(path)
    local f, err = io.open(path, "rb")
    if not f then
        return nil, ("cannot open the password file %s; check the path given to --password-file")
            :format(err)
    end
    local data, rerr = f:read(PASSWORD_FILE_MAX + 1)
    f:close()
    if data == nil and rerr then
        return nil, ("cannot read the password file %s: %s"):format(path, rerr)
    end
    data = data or ""
    if #data > PASSWORD_FILE_MAX then
        return nil, ("the password file %s is over %d KiB; it should hold the password on its "
            .. "first line"):format(path, PASSWORD_FILE_MAX // 1024)
    end
    local line = data:match("^[^\n]*"):gsub("\r$", "")
    if line == "" then
        return nil, ("the password file %s is empty; put the password on its first line")
            :format(path)
    end
    return line
end

local function expiry_text(e)
    if e.rotated then
        -- replaced by rotate: valid until its grace or its own expiry ends, whichever is first
        local until_ = e.expires and math.min(e.expires, e.rotated) or e.rotated
        return (e.expired and "Rotated, expired on " or "Rotated, valid until ")
            .. apikey.format_local(until_)
    end
    if e.expires == nil then
        return "No expiration"
    end
    return (e.expired and "Expired on " or "Expires on ") .. apikey.format_local(e.expires)
end

-- " [read, mcp]" for a key with scopes, "" for one with full access (the guide's lines).
local function scopes_text(e)
    return e.scopes and " [" .. table.concat(e.scopes, ", ") .. "]" or ""
end

local function list_json(entries)
    local json = require "dkjson" -- loaded for --json only: it costs every command a start-up
    local out = {}
    for i, e in ipairs(entries) do
        out[i] = {
            alias = e.alias,
            hint = e.hint,
            created = e.created and apikey.format_utc(e.created) or json.null,
            expires = e.expires and apikey.format_utc(e.expires) or json.null,
            expired = e.expired,
            scopes = e.scopes or json.null,
            rotated = e.rotated and apikey.format_utc(e.rotated) or json.null,
        }
    end
    return json.encode(out, { keyorder = { "alias", "hint", "created", "expires", "expired",
        "scopes", "rotated" } })
end

-- The command's output. Every write is checked, and so are the final flushes: a listing or a
-- key that could not be written is a failure, not an exit 0 with nothing shown.
local Output = {}
Output.__index = Output

local function output(stdout, stderr, stdin, getenv)
    return setmetatable({ stdout = stdout, stderr = stderr, stdin = stdin, getenv = getenv },
        Output)
end

function Output:write(f, ...)
    local ok, err = f:write(...)
    if not ok then
        self.failed = self.failed or err -- the first failed write: the run then fails
    end
end

-- A line on stdout; a line on stderr as it is.
function Output:say(line)
    self:write(self.stdout, line, "\n")
end

function Output:complain(line)
    self:write(self.stderr, line, "\n")
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

-- One line on stderr, "apikey: MESSAGE", with the prefix red on a terminal; returns status
-- (default 1).
function Output:report(msg, status)
    local prefix = "apikey:"
    if use_color(self.stderr, self.getenv) then
        prefix = "\27[1;31mapikey:\27[0m"
    end
    self:write(self.stderr, prefix, " ", msg, "\n")
    return status or 1
end

-- A failed operation of the Lua API, told in the command's terms.
function Output:fail(msg, code)
    -- The core's advice names no option, as servers use it too; here a file is chosen with
    -- --keystore.
    msg = msg:gsub("choose another keystore file", "%0 with --keystore")
        :gsub("choose a keystore on a writable file system", "%0 with --keystore")
    if code == "badpassword" and not msg:find("--password-file", 1, true) then
        msg = msg .. "; give the keystore's password with --password-file FILE or "
            .. "APIKEY_KEYSTORE_PASSWORD"
    end
    return self:report(msg)
end

-- A change that was made but not confirmed on disk: done, and said on stderr.
function Output:warn(warning)
    if warning then
        self:report("warning: " .. warning .. "; the change is made")
    end
end

-- Pushes stdout out now: true, or nil and why it (or an earlier write) failed.
function Output:flush()
    local ok, err = self.stdout:flush()
    if not ok or self.failed then
        return nil, self.failed or err
    end
    return true
end

-- The exit status of a run that would end with status.
function Output:finish(status)
    for _, f in ipairs { self.stdout, self.stderr } do
        local ok, err = f:flush()
        if not ok then
            self.failed = self.failed or err
        end
    end
    if self.failed and status == 0 then
        -- a change made is not undone for a line that could not be shown: say that it is made
        self:report("cannot write the output: " .. self.failed
            .. (self.changed and "; the change is made" or ""))
        return 1
    end
    return status
end

local commands = {}

-- The scopes of --scope (repeated, comma-separated), or nil when none was given.
local function scope_list(given)
    if given == nil or #given == 0 then
        return nil
    end
    local list = {}
    for _, arg in ipairs(given) do
        for piece in (arg .. ","):gmatch("([^,]*),") do
            list[#list + 1] = piece:match("^%s*(.-)%s*$")
        end
    end
    return list
end

-- Prints a new key as create does.
local function say_key(out, entry, key)
    out:say(("API key created for alias '%s': %s (%s)%s")
        :format(printable(entry.alias, true), key, expiry_text(entry), scopes_text(entry)))
    out:say("Please store this key securely, as it will not be shown again.")
end

function commands.create(ks, args, out)
    local key, entry, code = ks:create(args.alias, {
        expires = args.expires_on,
        expires_in = args.expires_in,
        scopes = scope_list(args.scope),
    })
    if not key then
        return out:fail(entry, code)
    end
    local warning = ks:warning()
    say_key(out, entry, key)
    local ok, err = out:flush()
    if not ok then
        -- Nobody saw the key: it must not stay valid.
        local revoked, msg = ks:revoke(entry.alias)
        if revoked then
            return out:report(("cannot write the new key to standard output (%s); the key of "
                .. "alias '%s' was removed again: nothing was created"):format(err,
                printable(entry.alias, true)))
        end
        return out:report(("cannot write the new key to standard output (%s), and removing it "
            .. "again failed: %s; revoke alias '%s'"):format(err, msg, printable(entry.alias, true)))
    end
    out:warn(warning)
    return 0
end

function commands.rotate(ks, args, out)
    local key, entry, old = ks:rotate(args.alias, {
        grace = args.grace,
        expires = args.expires_on,
        expires_in = args.expires_in,
    })
    if not key then
        if old == "notfound" then
            out:complain(("No API key found with alias '%s'."):format(printable(args.alias)))
            return 1
        end
        return out:fail(entry, old)
    end
    local warning = ks:warning()
    local alias = printable(entry.alias, true)
    say_key(out, entry, key)
    if old.expired then
        out:say(("The previous key of '%s' no longer works."):format(alias))
    else
        out:say(("The previous key of '%s' stays valid until %s."):format(alias,
            apikey.format_local(math.min(old.rotated, old.expires or old.rotated))))
    end
    local ok, err = out:flush()
    if not ok then
        -- Nobody saw the new key: it must not stay valid, and the old one is in use again.
        local undone, msg
        if ks.unrotate then -- a store's
            undone, msg = ks:unrotate(key, old)
        else
            undone, msg = core.unrotate(ks, key)
        end
        if undone then
            return out:report(("cannot write the new key to standard output (%s); the rotation "
                .. "of alias '%s' was undone: its previous key is in use"):format(err, alias))
        end
        return out:report(("cannot write the new key to standard output (%s), and undoing the "
            .. "rotation failed: %s; revoke alias '%s'"):format(err, msg, alias))
    end
    out:warn(warning)
    return 0
end

function commands.list(ks, args, out)
    local entries, msg, code = ks:list()
    if not entries then
        return out:fail(msg, code)
    end
    if args.json then
        out:say(list_json(entries))
    elseif #entries == 0 then
        out:say("No API keys found.")
    else
        for _, e in ipairs(entries) do
            -- Another tool may have written any text as an alias: never raw to a terminal.
            out:say(("%s %s (%s)%s"):format(printable(e.alias, true), e.masked, expiry_text(e),
                scopes_text(e)))
        end
    end
    return 0
end

-- revoke --key -: the alias of a key read from standard input.
local function revoke_key(ks, out)
    local key = (out.stdin:read("l") or ""):gsub("\r$", "")
    local alias, msg, code = ks:revoke_key(key)
    if alias then
        out.changed = true
        out:say(("API key '%s' has been revoked."):format(printable(alias, true)))
        out:warn(ks:warning())
        return 0
    elseif code == "notfound" then
        out:complain("No API key found for the key given.")
        return 1
    end
    return out:fail(msg, code)
end

function commands.revoke(ks, args, out)
    if args.key then
        return revoke_key(ks, out)
    end
    local ok, msg, code = ks:revoke(args.alias)
    if ok then
        -- The alias as stored (`revoke MCP-Claude` revokes `mcp-claude`), escaped as list does.
        out.changed = true
        out:say(("API key '%s' has been revoked."):format(printable(msg, true)))
        out:warn(ks:warning())
        return 0
    elseif code == "notfound" and msg:find(", not an API key;", 1, true) then
        -- a certificate or another tool's key: say which, and that it stays
        out:complain(("No API key found with alias '%s': %s"):format(printable(args.alias), msg))
        return 1
    elseif code == "notfound" then
        out:complain(("No API key found with alias '%s'."):format(printable(args.alias)))
        return 1
    end
    return out:fail(msg, code)
end

function commands.migrate(ks, args, out)
    local entries, msg, code = ks:list()
    if not entries then
        return out:fail(msg, code)
    end
    local verb = args.dry_run and "Would migrate" or "Migrated"
    local lines = {}
    for _, e in ipairs(entries) do
        if e.kind == "metricshub" then
            lines[#lines + 1] = ("%s MetricsHub API key '%s' %s (%s)"):format(verb,
                printable(e.alias, true), e.masked, expiry_text(e))
        end
    end
    if not args.dry_run and #lines > 0 then
        local n
        n, msg, code = ks:migrate()
        if not n then
            return out:fail(msg, code)
        end
        out.changed = true
        if n ~= #lines then -- another writer changed the file in between: say what was done
            lines = {}
        end
        for _, line in ipairs(lines) do
            out:say(line)
        end
        out:say(("%d MetricsHub API key%s migrated."):format(n, n == 1 and "" or "s"))
        out:warn(ks:warning())
        return 0
    end
    for _, line in ipairs(lines) do
        out:say(line)
    end
    out:say(("%d MetricsHub API key%s %s."):format(#lines, #lines == 1 and "" or "s",
        args.dry_run and "would be migrated; nothing was changed" or "migrated"))
    return 0
end

function commands.verify(ks, args, out)
    local key = args.key
    if key == nil or key == "-" then
        key = (out.stdin:read("l") or ""):gsub("\r$", "")
    end
    local entry, why, code = ks:verify(key)
    if entry then
        out:say(printable(entry.alias, true))
        return 0
    elseif code then -- the store failed
        return out:fail(why, code)
    end
    out:complain(why)
    return 1
end

-- The new password of passwd: --new-password-file's first line, "" for --no-password, else
-- the first line of standard input (asked for without echo on a terminal). Never shown.
local function new_password(args, out)
    if args.no_password then
        return ""
    elseif args.new_password_file then
        local pw, msg = read_password(args.new_password_file)
        return pw, msg and msg:gsub("%-%-password%-file", "--new-password-file")
    end
    local terminal = out.stdin == io.stdin and os.execute("test -t 0") == true
    local function ask(prompt)
        if not terminal then
            return out.stdin:read("l")
        end
        out.stderr:write(prompt)
        out.stderr:flush()
        os.execute("stty -echo 2>/dev/null")
        local line = out.stdin:read("l")
        os.execute("stty echo 2>/dev/null")
        out.stderr:write("\n")
        return line
    end
    local pw = (ask("New password: ") or ""):gsub("\r$", "")
    if pw == "" then
        return nil, "no new password: the first line of standard input is empty; give it there "
            .. "or with --new-password-file FILE, or remove the password with --no-password"
    end
    if terminal and (ask("Repeat it: ") or ""):gsub("\r$", "") ~= pw then
        return nil, "the two passwords typed differ; nothing was changed"
    end
    return pw
end

function commands.passwd(ks, args, out, old)
    local pw, msg = new_password(args, out)
    if not pw then
        return out:report(msg)
    end
    local count, err, code = ks:passwd(pw)
    if not count then
        return out:fail(err, code)
    end
    out.changed = true
    local path = printable(ks:path(), true)
    local had = old ~= nil and old ~= ""
    if args.no_password then
        out:say(had and ("The password of keystore %s has been removed."):format(path)
            or ("Keystore %s had no password and still has none."):format(path))
    else
        out:say(("The password of keystore %s has been %s."):format(path, had and "changed"
            or "set"))
    end
    if count > 0 then
        out:say(("Other tools' entries protected with the new password too: %d."):format(count))
    end
    out:warn(ks:warning())
    return 0
end

-- has-passwd: 0 when the file has a password, 1 when not; needs no password.
local function has_passwd(path, out)
    local has, how, code = apikey.has_password(path)
    if has == nil then
        return out:fail(how, code)
    end
    path = printable(path, true)
    if has then
        out:say(("Keystore %s has a password."):format(path))
        return 0
    elseif how == "metricshub" then
        out:say(("Keystore %s has no password of its own: MetricsHub's fixed store password, "
            .. "public in its source, opens it."):format(path))
    elseif how == "missing" then
        out:say(("Keystore %s does not exist yet, so it has no password."):format(path))
    else
        out:say(("Keystore %s has no password."):format(path))
    end
    return 1
end

local INTERVAL_MAX = 86400

-- `apikey sync`: runs until stopped, or once; each line out at once, for a journal.
local function sync(args, out, conninfo, path, password)
    local interval = args.interval and tonumber(args.interval)
    if args.interval and not (interval and interval > 0 and interval <= INTERVAL_MAX) then
        return out:report(("--interval takes a number of seconds above 0, at most %d (see "
            .. "'apikey --help')"):format(INTERVAL_MAX), 2)
    end
    local ok, msg, code = store.sync {
        conninfo = conninfo, path = path, password = password, interval = interval,
        once = args.once,
        say = function(line)
            out:say(line)
            out:flush()
        end,
        complain = function(line)
            out:report(line)
            out.stderr:flush()
        end,
    }
    if ok then
        return 0
    end
    -- With --once a failure was told as it happened; otherwise the file could not be opened.
    return args.once and 1 or out:fail(msg, code)
end

-- A file that is closed at the level of the system (the command started with `>&-`): a seek
-- then fails with EBADF, where a terminal or a pipe gives ESPIPE.
local EBADF = 9
local function is_closed(f)
    local _, _, errno = f:seek("cur")
    return errno == EBADF
end

-- A standard descriptor closed by the caller gets /dev/null for the run, so that no file this
-- command opens (the keystore, its lock, its new copy) takes its number and receives what is
-- meant for the terminal. Returns the files to keep open until the end.
local function hold_closed_descriptors()
    local held = {}
    for i, f in ipairs { io.stdin, io.stdout, io.stderr } do
        if is_closed(f) then
            held[#held + 1] = io.open("/dev/null", i == 1 and "r" or "w")
        end
    end
    return held
end

-- The value of option NAME (given before or after the command name), else of the environment
-- variable env when set and not empty: the value or false; nil, "--NAME needs WHAT", 2 when the
-- option is given empty.
local function setting(args, getenv, name, env, what)
    local value = args[name] or args["root_" .. name]
    if value == "" then
        return nil, ("--%s needs %s"):format(name, what), 2
    end
    if not value then
        value = getenv(env)
    end
    return value ~= nil and value ~= "" and value
end

-- The keystore: --keystore, else APIKEY_KEYSTORE, else the installation's default.
-- Returns the path, or nil, message and exit status.
local function keystore_path(args, getenv, default)
    local path, msg, status = setting(args, getenv, "keystore", "APIKEY_KEYSTORE", "a path")
    if path == nil then
        return nil, msg, status
    end
    path = path or default
    if not path then
        return nil, "no keystore given; use --keystore PATH or set APIKEY_KEYSTORE", 1
    end
    return path
end

-- The password: the first line of --password-file, else APIKEY_KEYSTORE_PASSWORD, else none.
local function keystore_password(args, getenv)
    local file = args.password_file or args.root_password_file
    if file then
        return read_password(file)
    end
    return getenv("APIKEY_KEYSTORE_PASSWORD")
end

-- The command line parsed: args, or nil and the exit status of --help, --version or a usage
-- error (already printed).
local function parse(argv, default_keystore, out)
    local parser, asked = build_parser(default_keystore or "PREFIX/security/" .. KEYSTORE_NAME)
    local ok, args = parser:pparse(table.move(argv, 1, #argv, 1, {}))
    if asked.help then
        out:say(asked.help:get_help())
        return nil, 0
    elseif asked.version then
        out:say("apikey " .. apikey.version)
        return nil, 0
    elseif not ok then
        local msg = args:gsub("\n(%a)", function(c)
            return "; " .. c:lower()
        end)
        return nil, out:report(msg .. " (see 'apikey --help')", 2)
    end
    -- revoke: an alias, or --key - (the key from standard input), not both. The value of
    -- --key is never shown: it may be a key.
    if args.command == "revoke" then
        local problem
        if args.key and args.key ~= "-" then
            problem = "--key takes only '-': the key is read from standard input, so that it "
                .. "stays out of the process list and the shell's history"
        elseif args.key and args.alias then
            problem = "give an alias or --key -, not both"
        elseif not args.key and not args.alias then
            problem = "missing argument 'alias'"
        end
        if problem then
            return nil, out:report(problem .. " (see 'apikey --help')", 2)
        end
    end
    return args
end

-- A key nobody can see, or a listing that goes nowhere: true when the command is refused.
local function refuse_closed_stdout(args, out, stdout_closed)
    if args.command ~= "verify" and stdout_closed then
        out:report(("standard output is closed; nothing was done (%s prints to it)")
            :format(args.command))
        return true
    end
    return false
end

-- A command run against the store's table; its exit status.
local function with_store(args, out, conninfo, stdout_closed)
    if args.command == "migrate" then
        return out:report("migrate works on a keystore file's MetricsHub keys, not on a store; "
            .. "run it without --store and APIKEY_STORE")
    end
    if args.command == "passwd" or args.command == "has-passwd" then
        return out:report(("%s works on a keystore file's password, not on a store; run it "
            .. "without --store and APIKEY_STORE"):format(args.command))
    end
    if refuse_closed_stdout(args, out, stdout_closed) then
        return 1
    end
    local st <close>, err, code = store.open(conninfo)
    if not st then
        return out:report(err, code == "invalid" and 2 or 1)
    end
    return commands[args.command](st, args, out)
end

function cli.main(argv, opts)
    argv, opts = argv or {}, opts or {}
    local env = opts.env
    local getenv = env and function(name)
        return env[name]
    end or os.getenv
    local out = output(opts.stdout or io.stdout, opts.stderr or io.stderr, opts.stdin or io.stdin,
        getenv)
    local stdout_closed = is_closed(out.stdout)
    out.held = hold_closed_descriptors()
    core.ignore_sigpipe()

    local default_keystore = opts.prefix
        and opts.prefix:gsub("/$", "") .. "/security/" .. KEYSTORE_NAME
    local args, status = parse(argv, default_keystore, out)
    if not args then
        return out:finish(status)
    end
    local path, password, msg
    local conninfo
    -- The store: --store, else APIKEY_STORE, else none (false).
    conninfo, msg, status = setting(args, getenv, "store", "APIKEY_STORE", "a connection string")
    if conninfo == nil then
        return out:finish(out:report(msg, status))
    elseif not conninfo and args.command == "sync" then
        return out:finish(out:report("sync follows a store: give --store URL or set APIKEY_STORE "
            .. "(see 'apikey --help')", 2))
    elseif conninfo and args.command ~= "sync" then
        return out:finish(with_store(args, out, conninfo, stdout_closed))
    end
    path, msg, status = keystore_path(args, getenv, default_keystore)
    if not path then
        return out:finish(out:report(msg, status))
    end
    password, msg = keystore_password(args, getenv)
    if msg then
        return out:finish(out:report(msg))
    end
    if args.command == "sync" then
        return out:finish(sync(args, out, conninfo, path, password))
    end
    if refuse_closed_stdout(args, out, stdout_closed) then
        return out:finish(1)
    end
    if args.command == "has-passwd" then
        return out:finish(has_passwd(path, out))
    end
    local ks <close>, err, code = apikey.open { path = path, password = password }
    if not ks then
        return out:finish(out:fail(err, code))
    end
    return out:finish(commands[args.command](ks, args, out, password))
end

return cli
