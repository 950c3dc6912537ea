-- examples/lighttpd/ in a real lighttpd: the mod_magnet script lets a request in with a valid
-- key only, and follows `apikey create` and `apikey revoke` without a restart. The server runs
-- as the current user on 127.0.0.1, on a free port; the keys are made with the installed
-- command; the requests are made with curl.
local h = require "spec.helpers"
local webserver = require "spec.support.webserver"

local quote, capture, trim = h.quote, h.capture, h.trim

-- lighttpd wants an absolute path to the script
local EXAMPLE = h.root .. "/examples/lighttpd/"
local BODY = "hello from behind apikey\n"
local UNKNOWN_KEY = "0b6e6d2a-3f8e-4c55-9d7e-3b2f9b1c8a10"

local within, alive = webserver.within, webserver.alive

local LIGHTTPD = trim(capture("command -v lighttpd || ls /usr/sbin/lighttpd 2>/dev/null"))

-- A lighttpd with the example's config snippet and script; env: its environment.
-- curl's requests and the stop by PID are those of the other servers' specs
local Server = setmetatable({}, { __index = webserver.Server })
Server.__index = Server

local function config(dir, port)
    local snippet = assert(h.read_file(EXAMPLE .. "50-apikey.conf"))
    -- the snippet names the script where README.md puts it; here it is in the source tree
    local script = snippet:match('"(/[^"]*apikey%-auth%.lua)"')
    assert(script, "50-apikey.conf names no apikey-auth.lua")
    local pattern = script:gsub("%p", "%%%0")
    local replacement = (EXAMPLE .. "apikey-auth.lua"):gsub("%%", "%%%%")
    snippet = snippet:gsub(pattern, replacement)
    return table.concat({
        ('server.document-root = "%s/www"'):format(dir),
        'server.bind = "127.0.0.1"',
        ("server.port = %d"):format(port),
        ('server.errorlog = "%s/error.log"'):format(dir),
        'server.modules = ( "mod_accesslog", "mod_cgi" )',
        ('accesslog.filename = "%s/access.log"'):format(dir),
        'accesslog.format = "%s %u %{APIKEY_ERROR}e \\"%r\\""',
        'cgi.assign = ( ".cgi" => "" )',
        snippet,
    }, "\n")
end

-- Starts lighttpd on a random free port (trying another when the port is taken) and waits
-- until it listens.
function Server.start(dir, env)
    local unset, set = {}, {}
    for k, v in pairs(env) do
        if v then
            set[#set + 1] = quote(k .. "=" .. v)
        else
            unset[#unset + 1] = "-u " .. k
        end
    end
    local vars = table.concat(unset, " ") .. " " .. table.concat(set, " ")
    local last
    for _ = 1, 8 do
        local port = math.random(20000, 60999)
        h.write_file(dir .. "/lighttpd.conf", config(dir, port))
        os.remove(dir .. "/error.log")
        local pid = trim(capture(("env %s %s -D -f %s >%s 2>&1 </dev/null & echo $!"):format(
            vars, quote(LIGHTTPD), quote(dir .. "/lighttpd.conf"),
            quote(dir .. "/lighttpd.out"))))
        assert(pid:match("^%d+$"), "could not start lighttpd: " .. pid)
        local self = setmetatable({ pid = pid, port = port, dir = dir }, Server)
        -- lighttpd logs "server started" once it listens, and exits when it cannot bind
        local up = within(10, function()
            local log = h.read_file(dir .. "/error.log") or ""
            return not alive(pid) or log:find("server started", 1, true)
        end)
        if up and alive(pid) then
            return self
        end
        self:stop()
        last = (h.read_file(dir .. "/lighttpd.out") or "")
            .. (h.read_file(dir .. "/error.log") or "")
        if not last:find("in use", 1, true) then
            break
        end
    end
    error("lighttpd did not start:\n" .. tostring(last))
end

local function setup_site(dir)
    assert(os.execute("mkdir " .. quote(dir .. "/www")))
    h.write_file(dir .. "/www/hello.txt", BODY)
    -- a CGI backend that shows the environment lighttpd gives it
    h.write_file(dir .. "/www/env.cgi",
        '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\nenv\n')
    assert(os.execute("chmod 755 " .. quote(dir .. "/www/env.cgi")))
end

-- A new folder for a site.
local function site_dir()
    return trim(capture("mktemp -d \"${TMPDIR:-/tmp}/apikey-lighttpd.XXXXXX\""))
end

-- Stops the server, if there is one, and removes the site's folder.
local function shut_down(server, dir)
    if server then
        server:stop()
    end
    os.execute("rm -rf " .. quote(dir))
end

local function server_env(keystore)
    -- the script finds apikey under APIKEY_PREFIX only, as on a server
    return {
        APIKEY_PREFIX = h.prefix,
        APIKEY_KEYSTORE = keystore,
        APIKEY_KEYSTORE_PASSWORD = false,
        LUA_PATH = false,
        LUA_CPATH = false,
        LUA_PATH_5_4 = false,
        LUA_CPATH_5_4 = false,
    }
end

local function revoke(keystore, alias)
    local _, err, code = h.run { "revoke", alias, "--keystore", keystore }
    assert(code == 0, err)
end

if LIGHTTPD == "" then
    describe("examples/lighttpd", function()
        pending("lighttpd is not installed (apt-get install lighttpd lighttpd-modules-lua curl)")
    end)
    return
end

describe("examples/lighttpd", function()
    local dir, keystore, server, key
    local keys = {} -- every key made, to check that none reaches a log

    local function create(alias, extra)
        local k = h.create(keystore, alias, extra)
        keys[#keys + 1] = k
        return k
    end

    setup(function()
        dir = site_dir()
        keystore = dir .. "/keys.p12"
        setup_site(dir)
        key = create("ci-bot")
        server = Server.start(dir, server_env(keystore))
    end)

    teardown(function()
        shut_down(server, dir)
    end)

    it("answers 401 with WWW-Authenticate: Bearer to a request without a key", function()
        local status, headers, body = server:get("/hello.txt")
        assert.equal(401, status)
        assert.equal('Bearer realm="apikey"', headers["www-authenticate"])
        assert.falsy(body:find(BODY, 1, true))
        for _, auth in ipairs { "", "Basic dXNlcjpwYXNzd29yZA==", "Bearer", key } do
            assert.equal(401, server:status_of("/hello.txt", auth), auth)
        end
    end)

    it("answers 401 to an unknown key and to text that is not a key", function()
        for _, token in ipairs { UNKNOWN_KEY, "secret", key .. "x" } do
            local status, headers, body = server:get("/hello.txt", "Bearer " .. token)
            assert.equal(401, status)
            assert.equal('Bearer realm="apikey", error="invalid_token"',
                headers["www-authenticate"])
            assert.falsy(body:find(token, 1, true), "the 401 shows the key")
        end
    end)

    it("serves the file to a valid key, the scheme in any case", function()
        local status, _, body = server:get("/hello.txt", "Bearer " .. key)
        assert.equal(200, status)
        assert.equal(BODY, body)
        assert.equal(200, server:status_of("/hello.txt", "bearer " .. key))
    end)

    it("hands the key's alias to the backend as REMOTE_USER, and not the key", function()
        local status, _, body = server:get("/env.cgi", "Bearer " .. key)
        assert.equal(200, status)
        assert.truthy(body:find("\nREMOTE_USER=ci-bot\n", 1, true), body)
        assert.truthy(body:find("\nAUTH_TYPE=Bearer\n", 1, true), body)
        assert.falsy(body:find("HTTP_AUTHORIZATION", 1, true), body)
        assert.falsy(body:find(key, 1, true), body)
    end)

    it("accepts a key made by `apikey create` while it runs, with no restart", function()
        local pid = server.pid
        local new = create("new-bot")
        local ok, took = within(3, function()
            return server:status_of("/hello.txt", "Bearer " .. new) == 200
        end)
        assert.is_true(ok, "the new key was still refused after 3 s")
        assert.is_true(took < 2.5, ("took %.2f s"):format(took))
        assert.equal(pid, server.pid)
        assert.is_true(alive(pid))
    end)

    it("refuses a key once `apikey revoke` ran, with no restart", function()
        local doomed = create("doomed-bot")
        assert.is_true((within(3, function()
            return server:status_of("/hello.txt", "Bearer " .. doomed) == 200
        end)))
        revoke(keystore, "doomed-bot")
        local ok, took = within(3, function()
            return server:status_of("/hello.txt", "Bearer " .. doomed) == 401
        end)
        assert.is_true(ok, "the revoked key was still let in after 3 s")
        assert.is_true(took < 2.5, ("took %.2f s"):format(took))
        assert.equal(200, server:status_of("/hello.txt", "Bearer " .. key))
    end)

    it("refuses a key once it has expired", function()
        local brief = create("brief-bot", { "--expires-in", "5s" })
        assert.is_true((within(3, function()
            return server:status_of("/hello.txt", "Bearer " .. brief) == 200
        end)), "the new key was refused before it expired")
        local ok = within(8, function()
            return server:status_of("/hello.txt", "Bearer " .. brief) == 401
        end)
        assert.is_true(ok, "the key was still let in 8 s after it was made to last 5 s")
    end)

    it("refuses two Authorization headers as malformed, even when one holds a valid key", function()
        assert.equal(401, server:status_of("/hello.txt", { "Bearer " .. key, "Bearer " .. UNKNOWN_KEY }))
        local log
        assert.is_true((within(5, function()
            log = h.read_file(dir .. "/access.log") or ""
            return log:find('401 - malformed "GET', 1, true)
        end)), log)
    end)

    it("lets a read key GET (200) and answers 403 with insufficient_scope to its POST", function()
        local reader = create("reader", { "--scope", "read" })
        assert.is_true((within(3, function()
            return server:status_of("/env.cgi", "Bearer " .. reader) == 200
        end)), "the read key was refused on GET")
        assert.equal(200, (server:request("HEAD", "/hello.txt", "Bearer " .. reader)))
        local status, headers = server:request("POST", "/env.cgi", "Bearer " .. reader)
        assert.equal(403, status)
        assert.equal('Bearer realm="apikey", error="insufficient_scope", scope="write"',
            headers["www-authenticate"])
        assert.equal(403, (server:request("DELETE", "/hello.txt", "Bearer " .. reader)))
        local log
        assert.is_true((within(5, function()
            log = h.read_file(dir .. "/access.log") or ""
            return log:find('403 reader insufficient_scope "POST /env.cgi', 1, true)
        end)), log)
    end)

    it("lets a write key POST but not GET, and a key with full access do both", function()
        local writer = create("writer", { "--scope", "write" })
        assert.is_true((within(3, function()
            return server:request("POST", "/env.cgi", "Bearer " .. writer) == 200
        end)), "the write key was refused on POST")
        local status, headers = server:get("/hello.txt", "Bearer " .. writer)
        assert.equal(403, status)
        assert.equal('Bearer realm="apikey", error="insufficient_scope", scope="read"',
            headers["www-authenticate"])
        assert.equal(200, (server:request("POST", "/env.cgi", "Bearer " .. key)))
        assert.equal(200, server:status_of("/hello.txt", "Bearer " .. key))
        -- a refused key is still a 401 on POST, not a 403
        assert.equal(401, (server:request("POST", "/env.cgi", "Bearer " .. UNKNOWN_KEY)))
    end)

    it("logs the alias and why a request was refused, and never a key", function()
        server:get("/hello.txt", "Bearer " .. key)
        server:get("/hello.txt", "Bearer " .. UNKNOWN_KEY)
        server:get("/hello.txt")
        -- lighttpd writes its access log in batches
        local log
        assert.is_true((within(5, function()
            log = h.read_file(dir .. "/access.log") or ""
            return log:find('200 ci-bot - "GET /hello.txt', 1, true)
                and log:find('401 - unknown "GET', 1, true)
                and log:find('401 - missing "GET', 1, true)
        end)), log)
        local errors = h.read_file(dir .. "/error.log") or ""
        for _, k in ipairs(keys) do
            assert.falsy(log:find(k, 1, true), "the access log shows a key")
            assert.falsy(errors:find(k, 1, true), "the error log shows a key")
        end
    end)
end)

describe("examples/lighttpd with a keystore it cannot read", function()
    it("answers 500 to every request, then recovers once the keystore is fixed", function()
        local dir = site_dir()
        local server
        h.defer(finally, function()
            shut_down(server, dir)
        end)
        local keystore = dir .. "/keys.p12"
        setup_site(dir)
        h.write_file(keystore, "not a keystore")
        assert(os.execute("chmod 600 " .. quote(keystore)))
        server = Server.start(dir, server_env(keystore))

        assert.equal(500, server:status_of("/hello.txt"))
        assert.equal(500, server:status_of("/hello.txt", "Bearer " .. UNKNOWN_KEY))
        os.execute("sleep 1.1") -- past the script's one try a second
        assert.equal(500, server:status_of("/hello.txt"))
        local errors = h.read_file(dir .. "/error.log") or ""
        -- one line for the failure, however many requests: no stack trace, no repeat
        local _, lines = errors:gsub("cannot load the keystore", "")
        assert.equal(1, lines, errors)
        assert.falsy(errors:find("traceback", 1, true), errors)
        assert.falsy(errors:find("--keystore", 1, true), errors)

        os.remove(keystore)
        local key = h.create(keystore, "ci-bot")
        assert.is_true((within(3, function()
            return server:status_of("/hello.txt", "Bearer " .. key) == 200
        end)), "still failing 3 s after the keystore was fixed")
        assert.equal(401, server:status_of("/hello.txt"))
    end)
end)
