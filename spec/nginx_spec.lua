-- examples/nginx/ in a real nginx with its Lua module (LuaJIT): one worker, as nobody when the
-- specs run as root, proxying to a second server of the same nginx that echoes what reached
-- it. The behaviour checked is spec/support/webserver.lua's, the same for every server.
local h = require "spec.helpers"
local webserver = require "spec.support.webserver"

local NGINX = webserver.program("nginx")
local LUA_MODULE = "/usr/lib/nginx/modules/ngx_http_lua_module.so"

if not NGINX or not h.exists(LUA_MODULE) then
    describe("examples/nginx", function()
        pending("nginx is not installed (apt-get install nginx libnginx-mod-http-lua)")
    end)
    return
end

-- The example's two snippets, with the paths README.md gives replaced by the site's.
local function snippet(site, name, port)
    local text = assert(h.read_file(site.conf .. "/" .. name))
    local function replace(from, to)
        text = text:gsub(from:gsub("%p", "%%%0"), (to:gsub("%%", "%%%%")))
    end
    replace("/etc/nginx/apikey", site.conf)
    replace("/opt/apikey/security/metricshub-keystore.p12", site.keystore)
    replace("/opt/apikey", h.prefix)
    replace("/var/log/nginx/access.log", site.run .. "/access.log")
    replace("listen 80;", ("listen 127.0.0.1:%d;"):format(port))
    replace("http://127.0.0.1:8080", "http://unix:" .. site.run .. "/backend.sock:")
    return text
end

local function start(site)
    return webserver.start(site, function(port)
        local run = site.run
        h.write_file(site.conf .. "/nginx.conf", table.concat({
            "load_module /usr/lib/nginx/modules/ndk_http_module.so;",
            "load_module " .. LUA_MODULE .. ";",
            "daemon off;",
            "worker_processes 1;",
            "pid " .. run .. "/nginx.pid;",
            "error_log " .. run .. "/error.log notice;",
            "events { worker_connections 64; }",
            "http {",
            "client_body_temp_path " .. run .. "/body;",
            "proxy_temp_path " .. run .. "/proxy;",
            "fastcgi_temp_path " .. run .. "/fastcgi;",
            "uwsgi_temp_path " .. run .. "/uwsgi;",
            "scgi_temp_path " .. run .. "/scgi;",
            snippet(site, "apikey-http.conf", port),
            snippet(site, "apikey-site.conf", port),
            -- the upstream: shows the alias and any Authorization header that reached it
            "server {",
            "    listen unix:" .. run .. "/backend.sock;",
            "    access_log off;",
            '    location / { return 200 "alias=$http_x_apikey_alias\\n'
                .. 'authorization=$http_authorization\\n"; }',
            "}",
            "}",
        }, "\n"))
        return ("%s -e %s -p %s -c %s"):format(h.quote(NGINX), h.quote(run .. "/error.log"),
            h.quote(run), h.quote(site.conf .. "/nginx.conf"))
    end)
end

webserver.behaves("nginx", start, "/echo")
