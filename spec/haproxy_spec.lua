-- examples/haproxy/ in a real HAProxy (Lua 5.3), as nobody when the specs run as root, in
-- front of a backend of the same HAProxy (a Lua service on a socket) that echoes what reached
-- it. The behaviour checked is spec/support/webserver.lua's, the same for every server.
local h = require "spec.helpers"
local webserver = require "spec.support.webserver"

local HAPROXY = webserver.program("haproxy")

if not HAPROXY then
    describe("examples/haproxy", function()
        pending("haproxy is not installed (apt-get install haproxy)")
    end)
    return
end

-- The backend: shows the alias and any Authorization header that reached it.
local ECHO = [[
core.register_service("echo", "http", function(applet)
    local function first(name)
        local values = applet.headers[name]
        return values and values[0] or ""
    end
    local body = "alias=" .. first("x-apikey-alias") .. "\nauthorization="
        .. first("authorization") .. "\n"
    applet:set_status(200)
    applet:add_header("content-length", tostring(#body))
    applet:start_response()
    applet:send(body)
end)
]]

local function start(site)
    local run = site.run
    h.write_file(site.conf .. "/echo.lua", ECHO)
    return webserver.start(site, function(port)
        local cfg = assert(h.read_file(site.conf .. "/apikey.cfg"))
        local function replace(from, to)
            cfg = cfg:gsub(from:gsub("%p", "%%%0"), (to:gsub("%%", "%%%%")))
        end
        -- the paths and addresses README.md gives, replaced by the site's
        replace("/etc/haproxy/apikey.lua", site.conf .. "/apikey.lua")
        replace("bind :80", ("bind 127.0.0.1:%d"):format(port))
        replace("127.0.0.1:8080", run .. "/echo.sock")
        -- the access log on standard output, and the backend
        replace("global\n", "global\n    log stdout format raw local0\n    lua-load "
            .. site.conf .. "/echo.lua\n")
        replace("defaults\n", "defaults\n    log global\n")
        cfg = cfg .. ("\nfrontend echo\n    bind %s/echo.sock\n    http-request use-service "
            .. "lua.echo\n"):format(run)
        h.write_file(site.conf .. "/haproxy.cfg", cfg)
        return ("%s %s -db -f %s"):format(h.env_words {
            APIKEY_PREFIX = h.prefix,
            APIKEY_KEYSTORE = site.keystore,
            LUA_PATH = false,
            LUA_CPATH = false,
        }, h.quote(HAPROXY), h.quote(site.conf .. "/haproxy.cfg"))
    end, "server.out") -- HAProxy's log (stdout); its standard error repeats the Lua lines
end

webserver.behaves("haproxy", start, "/echo")
