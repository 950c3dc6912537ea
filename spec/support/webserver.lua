-- A real web server running one of the examples, for spec/nginx_spec.lua, haproxy_spec.lua
-- and apache2_spec.lua, and the behaviour every example must show (webserver.behaves).
--
-- A site is a folder (removed at the end) holding conf/ (the config and the example's files),
-- keys/ (the keystore) and run/ (logs, PID file, sockets). When the specs run as root, the
-- server runs as nobody (through setpriv), so run/ is nobody's and the keystore is readable by
-- all: the setup a README describes, a server reading a keystore of root's. The server listens
-- on 127.0.0.1, on a random free port (another is tried when it is taken), and is stopped by
-- its PID.
local h = require "spec.helpers"
local busted = require "busted"

local assert = require "luassert"

local describe, it, setup, teardown, pending = busted.describe, busted.it, busted.setup,
    busted.teardown, busted.pending
local quote = h.quote

local webserver = {}

webserver.UNKNOWN_KEY = "0b6e6d2a-3f8e-4c55-9d7e-3b2f9b1c8a10"

local AS_ROOT = h.output("id -u") == "0"
webserver.user = AS_ROOT and "nobody" or h.output("id -un")

-- The words that start a command as the server's user.
local function as_server_user()
    if AS_ROOT then
        return "setpriv --reuid=nobody --regid=nogroup --clear-groups --"
    end
    return ""
end

-- Calls check() until it returns true or `seconds` pass; true and the time it took, or false.
function webserver.within(seconds, check)
    local start = h.clock()
    repeat
        if check() then
            return true, h.clock() - start
        end
        h.sleep(0.05)
    until h.clock() - start > seconds
    return check() and true or false, h.clock() - start
end
local within = webserver.within

-- A process that has exited but was not reaped (a zombie) counts as stopped.
function webserver.alive(pid)
    local stat = h.read_file("/proc/" .. pid .. "/stat")
    return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"
end
local alive = webserver.alive

-- The path of a server program, or nil when it is not installed.
function webserver.program(name)
    local path = h.output("command -v " .. name .. " || ls /usr/sbin/" .. name .. " 2>/dev/null")
    return path ~= "" and path or nil
end

-- A new site folder: conf/, keys/ and run/ in it, and the example's files copied to conf/.
function webserver.site(example)
    local dir = h.tmpdir()
    h.chmod("755", dir)
    for _, sub in ipairs { "conf", "keys", "run" } do
        assert(h.sh("mkdir -m 755 " .. quote(dir .. "/" .. sub)) == 0)
    end
    if AS_ROOT then
        assert(h.sh("chown nobody:nogroup " .. quote(dir .. "/run")) == 0)
    end
    assert(h.sh(("cp %s/examples/%s/* %s/conf/"):format(quote(h.root), example, quote(dir))) == 0)
    return {
        dir = dir,
        conf = dir .. "/conf",
        run = dir .. "/run",
        keystore = dir .. "/keys/keys.p12",
    }
end

-- Creates a key with the command, in a keystore the server's user can read.
function webserver.create(site, alias, extra)
    local key = h.create(site.keystore, alias, extra)
    h.chmod("644", site.keystore)
    return key
end

function webserver.revoke(site, alias)
    local _, err, code = h.run { "revoke", alias, "--keystore", site.keystore }
    assert(code == 0, err)
end

local Server = {}
Server.__index = Server
webserver.Server = Server -- for a spec that starts its server its own way

-- Starts a server: configure(port) writes its config and returns the command line that runs
-- it in the foreground, its standard output going to run/server.out and its errors to
-- run/server.err. error_log: the file of run/ that its error log goes to (default: all it
-- writes). Returns the server, { pid, port, site }, once it answers HTTP on its port.
function webserver.start(site, configure, error_log)
    local last
    for _ = 1, 8 do
        local port = math.random(20000, 60999)
        local cmd = configure(port)
        local pid = h.output(("%s %s >%s 2>%s </dev/null & echo $!"):format(as_server_user(), cmd,
            quote(site.run .. "/server.out"), quote(site.run .. "/server.err")))
        assert(pid:match("^%d+$"), "could not start the server: " .. pid)
        local self = setmetatable({ pid = pid, port = port, site = site, error_log = error_log },
            Server)
        local up = within(10, function()
            return not alive(pid) or self:answers()
        end)
        if up and alive(pid) then
            return self
        end
        self:stop()
        last = self:logs()
        if not last:find("in use", 1, true) then
            break
        end
    end
    error("the server did not start:\n" .. tostring(last))
end

function Server:answers()
    return h.sh(("curl -s -o /dev/null --max-time 1 http://127.0.0.1:%d/"):format(self.port)) == 0
end

-- Everything the server wrote: its output and every file in run/ that is a log.
function Server:logs()
    return h.capture(("cd %s && cat *.log server.out server.err 2>/dev/null")
        :format(quote(self.site.run)))
end

-- What its error log holds.
function Server:errors()
    if self.error_log then
        return h.read_file(self.site.run .. "/" .. self.error_log) or ""
    end
    return self:logs()
end

-- The server's process and its children (the workers), sorted.
function Server:pids()
    local children = h.output("pgrep -P " .. self.pid .. " | sort -n | tr '\\n' ' '")
    return self.pid .. " " .. children
end

function Server:stop()
    if alive(self.pid) then
        os.execute("kill " .. self.pid)
        if not within(5, function() return not alive(self.pid) end) then
            os.execute("kill -9 " .. self.pid)
        end
    end
end

-- GET path with an Authorization header (none when nil; one header each for a list): status,
-- headers (lower-case names), body.
function Server:get(path, authorization)
    local values = type(authorization) == "table" and authorization or { authorization }
    local options = {}
    for i, value in ipairs(values) do
        options[i] = "-H " .. quote("Authorization: " .. value)
    end
    local cmd = ("curl -sS -i --max-time 5 %s %s"):format(table.concat(options, " "),
        quote(("http://127.0.0.1:%d%s"):format(self.port, path)))
    local raw = h.capture(cmd .. " 2>&1")
    local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
    assert(head, "no HTTP response: " .. raw)
    local status = tonumber(head:match("^HTTP/%S+ (%d+)"))
    local headers = {}
    for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
        headers[name:lower()] = value
    end
    return status, headers, body
end

function Server:status_of(path, authorization)
    return (self:get(path, authorization))
end

-- A request of another method than GET (curl -X), with a body for POST and PUT: status,
-- headers.
function Server:request(method, path, authorization)
    local how = method == "HEAD" and "-I" or "-i -X " .. quote(method)
    local cmd = ("curl -sS %s --max-time 5 %s %s %s"):format(how,
        (method == "POST" or method == "PUT") and "--data x=1" or "",
        authorization and "-H " .. quote("Authorization: " .. authorization) or "",
        quote(("http://127.0.0.1:%d%s"):format(self.port, path)))
    local raw = h.capture(cmd .. " 2>&1")
    local head = raw:match("^(.-)\r\n\r\n") or raw
    local headers = {}
    for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
        headers[name:lower()] = value
    end
    return tonumber(head:match("^HTTP/%S+ (%d+)")), headers
end

-- Stops the server, if there is one, and removes its site.
local function shut_down(server, site)
    if server then
        server:stop()
    end
    h.remove(site.dir)
end

-- The behaviour every example must show, as busted tests. example: the folder's name;
-- start(site) starts the server on a site; echo: the path of the backend's answer, which
-- shows what reached it, as `alias=ALIAS` and `authorization=VALUE` lines.
function webserver.behaves(example, start, echo)
    -- The sanitizer pass (scripts/sanitize.sh) runs these servers with no sanitizer runtime, so
    -- they cannot load its module. They are not wrapped as lighttpd is: nginx, HAProxy and
    -- Apache leave their own memory to the exit, which LeakSanitizer would report. The core
    -- code they run is the verifier's, which the API and verifier specs run in that pass.
    if h.sh(("grep -q __asan_init %s/lib/lua/5.4/apikey/core.so"):format(quote(h.prefix))) == 0 then
        describe("examples/" .. example, function()
            pending("not run against a module built with sanitizers")
        end)
        return
    end
    describe("examples/" .. example, function()
        local site, server, key
        local keys = {} -- every key made, to check that none reaches a log

        local function create(alias, extra)
            local k = webserver.create(site, alias, extra)
            keys[#keys + 1] = k
            return k
        end

        setup(function()
            site = webserver.site(example)
            key = create("ci-bot")
            keys[#keys + 1] = h.create_expired(site.keystore, "old-bot")
            server = start(site)
        end)

        teardown(function()
            shut_down(server, site)
        end)

        it("answers 401 with WWW-Authenticate: Bearer to a request without a key", function()
            local status, headers, body = server:get(echo)
            assert.equal(401, status)
            assert.equal('Bearer realm="apikey"', headers["www-authenticate"])
            assert.falsy(body:find("alias=", 1, true))
            for _, auth in ipairs { "Basic dXNlcjpwYXNzd29yZA==", "Bearer", key } do
                assert.equal(401, server:status_of(echo, auth), auth)
            end
        end)

        it("answers 401 to an unknown, expired or malformed key", function()
            for _, token in ipairs { webserver.UNKNOWN_KEY, keys[2], "secret", key .. "x" } do
                local status, headers, body = server:get(echo, "Bearer " .. token)
                assert.equal(401, status, token)
                assert.equal('Bearer realm="apikey", error="invalid_token"',
                    headers["www-authenticate"])
                assert.falsy(body:find(token, 1, true), "the 401 shows the key")
            end
        end)

        it("refuses several Authorization headers, even with a valid key", function()
            -- 401, or 400 from a server that refuses such a request before any check (nginx)
            for _, values in ipairs { { key, key }, { key, "x" } } do
                local status = server:status_of(echo, { "Bearer " .. values[1], "Bearer " .. values[2] })
                assert.truthy(status == 401 or status == 400, status)
            end
        end)

        it("lets a valid key reach the backend with its alias, without the key", function()
            local status, _, body = server:get(echo, "Bearer " .. key)
            assert.equal(200, status)
            assert.truthy(body:find("alias=ci-bot\n", 1, true), body)
            assert.truthy(body:find("authorization=\n", 1, true), body)
            assert.falsy(body:find(key, 1, true), body)
            assert.equal(200, server:status_of(echo, "bearer  " .. key))
        end)

        it("lets a read key GET (200) and answers 403 with insufficient_scope to its POST", function()
            local reader = create("reader", { "--scope", "read" })
            assert.is_true((within(3, function()
                return server:status_of(echo, "Bearer " .. reader) == 200
            end)), "the new read key was not let in within 3 s")
            local status, headers = server:request("POST", echo, "Bearer " .. reader)
            assert.equal(403, status)
            assert.equal('Bearer realm="apikey", error="insufficient_scope", scope="write"',
                headers["www-authenticate"])
        end)

        it("accepts a key made by `apikey create` within 2 s, with the same processes", function()
            local pids = server:pids()
            local new = create("new-bot")
            local ok, took = within(3, function()
                return server:status_of(echo, "Bearer " .. new) == 200
            end)
            assert.is_true(ok, "the new key was still refused after 3 s")
            assert.is_true(took < 2.5, ("took %.2f s"):format(took))
            assert.equal(pids, server:pids())
        end)

        it("refuses a key once `apikey revoke` ran, within 2 s, with the same processes", function()
            local pids = server:pids()
            local doomed = create("doomed-bot")
            assert.is_true((within(3, function()
                return server:status_of(echo, "Bearer " .. doomed) == 200
            end)))
            webserver.revoke(site, "doomed-bot")
            local ok, took = within(3, function()
                return server:status_of(echo, "Bearer " .. doomed) == 401
            end)
            assert.is_true(ok, "the revoked key was still let in after 3 s")
            assert.is_true(took < 2.5, ("took %.2f s"):format(took))
            assert.equal(200, server:status_of(echo, "Bearer " .. key))
            assert.equal(pids, server:pids())
        end)

        it("runs as " .. webserver.user, function()
            for pid in server:pids():gmatch("%d+") do
                assert.equal(webserver.user, h.output("ps -o user= -p " .. pid))
            end
        end)

        it("writes no key to any log", function()
            server:get(echo, "Bearer " .. key)
            server:get(echo, "Bearer " .. webserver.UNKNOWN_KEY)
            local logs = server:logs()
            assert.truthy(logs:find("ci-bot", 1, true), "the alias is not logged")
            for _, k in ipairs(keys) do
                assert.falsy(logs:find(k, 1, true), "a log shows a key")
            end
            assert.falsy(logs:find(webserver.UNKNOWN_KEY, 1, true), "a log shows a key")
        end)
    end)

    describe("examples/" .. example .. " with a keystore it cannot read", function()
        local site, server

        setup(function()
            site = webserver.site(example)
        end)

        teardown(function()
            shut_down(server, site)
        end)

        it("answers 500 and logs one line, then recovers once the keystore is fixed", function()
            h.write_file(site.keystore, "not a keystore", "644")
            server = start(site)
            for _ = 1, 3 do
                assert.equal(500, server:status_of(echo))
                assert.equal(500, server:status_of(echo, "Bearer " .. webserver.UNKNOWN_KEY))
            end
            h.sleep(1.1) -- past the guard's next try: the same failure is not logged again
            assert.equal(500, server:status_of(echo))
            local _, n = server:errors():gsub("cannot load the keystore", "")
            assert.equal(1, n, server:errors())

            os.remove(site.keystore)
            local key = webserver.create(site, "ci-bot")
            assert.is_true((within(3, function()
                return server:status_of(echo, "Bearer " .. key) == 200
            end)), "still failing 3 s after the keystore was fixed")
            assert.equal(401, server:status_of(echo))
            assert.falsy(server:logs():find(key, 1, true), "a log shows a key")
        end)
    end)
end

return webserver
