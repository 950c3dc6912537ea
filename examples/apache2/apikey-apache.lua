-- apikey-apache.lua: API keys for Apache httpd's mod_lua (Lua 5.3), the access-checker hook
-- of apikey.conf. A valid key makes its alias the request's user; anything else gets 401
-- with WWW-Authenticate, and a keystore that cannot be read gets 500. See README.md beside
-- this file.
--
-- The settings come from Apache's environment (Debian: /etc/apache2/envvars), read once:
--   APIKEY_KEYSTORE           the keystore (default /opt/apikey/security/metricshub-keystore.p12)
--   APIKEY_KEYSTORE_PASSWORD  its password, if it has one

local guard -- this thread's apikey.guard (apikey.conf keeps one Lua state per thread)
local request -- the request being checked: its log is where the guard's lines go

local function log(line, level)
    if level == "error" then
        request:err(line)
    else
        request:info(line)
    end
end

-- A valid key: the alias becomes the request's user (REMOTE_USER for CGI, %u in the access
-- log), the authentication type "Bearer", and the Authorization header is removed, so the key
-- goes no further. Otherwise the request ends here: 401 with WWW-Authenticate, or 500; the
-- environment variable APIKEY_ERROR says why (%{APIKEY_ERROR}e in a log format).
function check(r)
    request = r
    if not guard then
        guard = require("apikey.guard").new {
            keystore = os.getenv("APIKEY_KEYSTORE") or "/opt/apikey/security/metricshub-keystore.p12",
            password = os.getenv("APIKEY_KEYSTORE_PASSWORD"),
            realm = "apikey",
            interval = 1,
            log = log,
            advice = "check APIKEY_KEYSTORE and APIKEY_KEYSTORE_PASSWORD in Apache's environment "
                .. "(/etc/apache2/envvars), and that Apache's user can read the file",
        }
    end
    local alias, status, challenge, why = guard:check(r.headers_in["Authorization"], r.method)
    if alias then
        r.user = alias
        r.ap_auth_type = "Bearer"
        r.headers_in["Authorization"] = nil
        return apache2.OK
    end
    r.subprocess_env["APIKEY_ERROR"] = why
    if challenge then
        r.err_headers_out["WWW-Authenticate"] = challenge
    end
    return status
end
