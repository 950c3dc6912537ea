-- examples/apache2/ in a real Apache httpd with mod_lua (Lua 5.3), as nobody when the specs run
-- as root: one child process with one worker thread, the content a mod_lua handler that
-- echoes what reached it. The behaviour checked is spec/support/webserver.lua's, the same for
-- every server.
local h = require "spec.helpers"
local webserver = require "spec.support.webserver"

local APACHE = webserver.program("apache2")
local MODULES = "/usr/lib/apache2/modules/"

if not APACHE or not h.exists(MODULES .. "mod_lua.so") then
    describe("examples/apache2", function()
        pending("apache2 is not installed (apt-get install apache2)")
    end)
    return
end

-- The backend: shows the request's user and any Authorization header that reached it.
local ECHO = [[
function handle(r)
    r.content_type = "text/plain"
    r:puts("alias=" .. (r.user or "") .. "\nauthorization="
        .. (r.headers_in["Authorization"] or "") .. "\n")
    return apache2.OK
end
]]

local function start(site)
    local run, conf = site.run, site.conf
    h.write_file(conf .. "/echo.lua", ECHO)
    local snippet = assert(h.read_file(conf .. "/apikey.conf"))
    -- the paths README.md gives, replaced by the site's
    snippet = snippet:gsub("/etc/apache2/apikey/", conf .. "/"):gsub("/opt/apikey", h.prefix)
    return webserver.start(site, function(port)
        h.write_file(conf .. "/httpd.conf", table.concat({
            "ServerName 127.0.0.1",
            ("Listen 127.0.0.1:%d"):format(port),
            "DefaultRuntimeDir " .. run,
            "PidFile " .. run .. "/apache2.pid",
            "Mutex file:" .. run .. " default",
            "ErrorLog " .. run .. "/error.log",
            "LogLevel warn",
            "LoadModule mpm_event_module " .. MODULES .. "mod_mpm_event.so",
            "LoadModule authz_core_module " .. MODULES .. "mod_authz_core.so",
            "LoadModule lua_module " .. MODULES .. "mod_lua.so",
            "ServerLimit 1",
            "StartServers 1",
            "ThreadLimit 1",
            "ThreadsPerChild 1",
            "MinSpareThreads 1",
            "MaxSpareThreads 1",
            "MaxRequestWorkers 1",
            'LogFormat "%h %u %{APIKEY_ERROR}e \\"%r\\" %>s" apikey',
            "CustomLog " .. run .. "/access.log apikey",
            "DocumentRoot " .. run,
            "<Location />",
            "    Require all granted",
            "</Location>",
            snippet,
            "LuaMapHandler ^/echo$ " .. conf .. "/echo.lua handle",
        }, "\n"))
        -- mod_lua takes LUA_PATH and LUA_CPATH from the environment, before its own paths:
        -- the specs' point to the Lua 5.4 modules
        return ("%s %s -DFOREGROUND -f %s"):format(h.env_words {
            APIKEY_KEYSTORE = site.keystore,
            LUA_PATH = false,
            LUA_CPATH = false,
        }, h.quote(APACHE), h.quote(conf .. "/httpd.conf"))
    end, "error.log")
end

webserver.behaves("apache2", start, "/echo")
