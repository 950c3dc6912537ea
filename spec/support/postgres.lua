-- A real PostgreSQL 15 for the store's specs: Debian's initdb and pg_ctl into a temporary
-- folder, listening on a Unix socket in that folder only (no TCP port), with trust
-- authentication (nothing but the folder's owner and root can reach the socket).
--
-- PostgreSQL refuses to run as root: when the specs run as root (CI), the server runs as user
-- nobody (setpriv), and its folder is given to nobody; otherwise as the user running the
-- specs. It is stopped by its PID: pg.start(dir, finally) stops it when the test ends.
--
--   local pg = require("spec.support.postgres")(h)
--   if not pg.available() then pending(pg.missing) return end
--   local db = pg.start(h.tmpdir(finally), finally)
--   db.conninfo, db:sql("SELECT 1"), db:stop(), db:start()
return function(h)
    local pg = {}
    local BIN = os.getenv("APIKEY_TEST_PG_BIN") or "/usr/lib/postgresql/15/bin"
    local TIMEOUT = 30 -- seconds any server command may take

    local function have(file)
        return h.sh("test -x " .. h.quote(file)) == 0
    end

    --- Whether the specs can start a server and the core has the store.
    function pg.available()
        if not have(BIN .. "/initdb") or not have(BIN .. "/pg_ctl") then
            pg.missing = BIN .. "/initdb not found: install Debian's postgresql (scripts/packages.txt)"
            return false
        end
        if not require("apikey.store").available() then
            pg.missing = "the core was built without libpq: install libpq-dev and build again"
            return false
        end
        return true
    end

    local as_root = h.output("id -u") == "0"
    -- The words that run a server command as its user, with a clean environment (no
    -- LD_PRELOAD of a sanitizer run, no PG* variables of the caller).
    local function as_server(cmd)
        local prefix = "env -i PATH=/usr/bin:/bin LANG=C.UTF-8 "
        if as_root then
            prefix = "setpriv --reuid=nobody --regid=nogroup --clear-groups " .. prefix
        end
        return ("timeout -s KILL %d %s%s"):format(TIMEOUT, prefix, cmd)
    end

    local Server = {}
    Server.__index = Server

    local function run(cmd, what)
        local out, err, code = h.sh_files(cmd)
        assert(code == 0, ("%s failed (%s): %s%s"):format(what, tostring(code), out or "",
            err or ""))
        return out
    end

    --- Starts the server again on its folder (after stop); its PID in self.pid.
    function Server:start()
        local opts = ("-c listen_addresses='' -k %s -c fsync=off -c synchronous_commit=off "
            .. "-c max_connections=60"):format(self.dir)
        run(as_server(("%s/pg_ctl -D %s -l %s -w -t %d -o %s start"):format(BIN,
            h.quote(self.data), h.quote(self.dir .. "/server.log"), TIMEOUT, h.quote(opts))),
            "pg_ctl start")
        self.pid = assert(tonumber((h.read_file(self.data .. "/postmaster.pid") or "")
            :match("^(%d+)")), "no postmaster.pid")
        return self
    end

    --- Stops the server by its PID (fast shutdown: clients are disconnected), waiting until it
    -- is gone; SIGKILL after TIMEOUT seconds. Safe to call when it is stopped.
    function Server:stop()
        local pid = self.pid
        if not pid then
            return
        end
        self.pid = nil
        h.sh(("kill -INT %d 2>/dev/null"):format(pid))
        local deadline = h.clock() + TIMEOUT
        while h.sh(("kill -0 %d 2>/dev/null"):format(pid)) == 0 do
            if h.clock() > deadline then
                h.sh(("kill -KILL %d 2>/dev/null"):format(pid))
                break
            end
            h.sleep(0.05)
        end
    end

    --- Runs SQL with psql as the server's superuser; its output (unaligned, tuples only).
    function Server:sql(query, db)
        return h.trim(run(("env -i %s/psql -X -A -t -q -v ON_ERROR_STOP=1 -h %s -U postgres "
            .. "-d %s -c %s"):format(BIN, h.quote(self.dir), db or "postgres", h.quote(query)),
            "psql"))
    end

    --- A new server in dir (a fresh folder of the test), started; stopped by finally.
    function pg.start(dir, finally)
        if as_root then
            assert(h.sh("chown nobody:nogroup " .. h.quote(dir)) == 0, "chown failed")
            -- nobody must reach the folder: every folder above it must let others through.
            assert(h.sh(as_server("test -w " .. h.quote(dir))) == 0,
                dir .. " is not reachable by user nobody; run the specs with TMPDIR in /tmp")
        end
        local self = setmetatable({ dir = dir, data = dir .. "/data" }, Server)
        self.conninfo = ("host=%s user=postgres dbname=postgres"):format(dir)
        if finally then
            h.defer(finally, function()
                self:stop()
            end)
        end
        run(as_server(("%s/initdb -D %s -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 "
            .. "--no-sync --no-instructions"):format(BIN, h.quote(self.data))), "initdb")
        return self:start()
    end

    return pg
end
