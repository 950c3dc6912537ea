-- The PostgreSQL store and `apikey sync`, against a real PostgreSQL 15 started by each test in
-- its own folder (spec/support/postgres.lua: a Unix socket there, no TCP port, run as nobody
-- when the specs run as root, stopped by PID when the test ends). About 20 s in all.
local h = require "spec.helpers"
local pg = require("spec.support.postgres")(h)
local apikey = require "apikey"

local available = pg.available()
local PASSWORD = "Pw-never-printed-7c1"

-- The command against a store: out, err, code.
local function store_run(db, args, env, stdin)
    local argv = { "--store", db.conninfo }
    table.move(args, 1, #args, 3, argv)
    return h.run(argv, env, stdin)
end

-- One `apikey sync --once` of the store into file: out, err, code.
local function sync_once(db, file)
    return h.run({ "sync", "--once", "--store", db.conninfo, "--keystore", file })
end

local function store_create(db, alias)
    local out, err, code = store_run(db, { "create", alias })
    assert(code == 0, ("create %s failed (%s): %s"):format(alias, tostring(code), err))
    return assert(out:match("^API key created for alias '.-': (" .. h.UUID .. ") "), out)
end

-- Starts `apikey sync` in the background: its PID; its output goes to FILE.out and FILE.err.
local function start_sync(db, file, extra, finally)
    local argv = { h.lua, h.bin, "sync", "--store", db.conninfo, "--keystore", file }
    for _, a in ipairs(extra or {}) do
        argv[#argv + 1] = a
    end
    local pid = tonumber(h.output(("%s %s </dev/null >%s 2>%s & echo $!"):format(h.env_words(),
        h.quote_all(argv), h.quote(file .. ".out"), h.quote(file .. ".err"))))
    assert(pid, "the sync did not start")
    h.defer(finally, function()
        h.sh(("kill -KILL %d 2>/dev/null"):format(pid))
    end)
    return pid
end

-- Waits up to limit seconds for test() to be true: the seconds it took, or nil.
local function within(limit, test)
    local t0 = h.clock()
    repeat
        if test() then
            return h.clock() - t0
        end
        h.sleep(0.01)
    until h.clock() - t0 > limit
    return nil
end

local function accepts(file, key)
    local ks = apikey.open { path = file }
    if not ks then
        return false
    end
    local ok = ks:verify(key) ~= nil
    ks:close()
    return ok
end

local function aliases_of(file)
    local ks = assert(apikey.open { path = file })
    local out = {}
    for _, e in ipairs(assert(ks:list())) do
        out[#out + 1] = e.alias
    end
    ks:close()
    return out
end

describe("apikey --store", function()
    if not available then
        pending(pg.missing)
        return
    end

    it("creates, lists, verifies and revokes keys in a table that holds no key", function()
        local db = pg.start(h.tmpdir(finally), finally)
        local out, err, code = store_run(db, { "list" })
        assert.are.equal("No API keys found.\n", out)
        assert.are.equal(0, code, err)
        -- the schema was made on first use, with its version and room for scopes and rotation
        assert.are.equal("1", db:sql("SELECT version FROM apikey_schema"))
        assert.are.equal("grace_until|timestamp with time zone\nprevious_hash|bytea\n"
            .. "scopes|ARRAY", db:sql("SELECT column_name, data_type FROM "
            .. "information_schema.columns WHERE table_name = 'apikey_keys' AND column_name IN "
            .. "('scopes', 'previous_hash', 'grace_until') ORDER BY 1"))

        local key = store_create(db, "MCP-OpenAI")
        out, err, code = h.run({ "create", "mcp-openai" }, { APIKEY_STORE = db.conninfo })
        assert.are.equal(1, code)
        assert.are.equal("", out)
        assert.matches("an API key with alias 'mcp%-openai' already exists in the store", err)
        out = store_run(db, { "list" })
        assert.are.equal(("MCP-OpenAI ********************%s (No expiration)\n"):format(
            key:sub(-4)), out)
        out, err, code = store_run(db, { "verify", key:upper() })
        assert.are.same({ "MCP-OpenAI\n", "", 0 }, { out, err, code })
        out, err, code = store_run(db, { "verify", "00000000-0000-4000-8000-000000000000" })
        assert.are.same({ "", "unknown\n", 1 }, { out, err, code })
        -- the row holds the hash and the hint, never the key
        local rows = db:sql("SELECT * FROM apikey_keys")
        assert.is_nil(rows:find(key, 1, true))
        assert.is_nil(rows:find(key:gsub("-", ""), 1, true))
        out, err, code = store_run(db, { "revoke", "mcp-openai" })
        assert.are.same({ "API key 'MCP-OpenAI' has been revoked.\n", "", 0 }, { out, err, code })
        out, err, code = store_run(db, { "revoke", "mcp-openai" })
        assert.are.same({ "", "No API key found with alias 'mcp-openai'.\n", 1 },
            { out, err, code })
        out, err, code = store_run(db, { "verify", key })
        assert.are.same({ "", "unknown\n", 1 }, { out, err, code })
    end)

    it("never prints the connection string, which may hold a password", function()
        local dir = h.tmpdir(finally)
        local conninfo = ("host=%s/nowhere user=postgres password=%s"):format(dir, PASSWORD)
        local out, err, code = h.run({ "--store", conninfo, "list" })
        assert.are.equal(1, code)
        assert.are.equal("", out)
        assert.matches("^apikey: cannot reach the store %(database postgres of user postgres on "
            .. "[^)]*nowhere%): .*No such file or directory", err)
        assert.is_nil(err:find(PASSWORD, 1, true))
        out, err, code = h.run({ "--store", "postgresql://u:" .. PASSWORD .. "@[::1", "list" })
        assert.are.equal(2, code)
        assert.is_nil(err:find(PASSWORD, 1, true))
        assert.matches("not a valid libpq connection string", err)
    end)

    it("loses nothing to 8 concurrent creators, and lets one alias be taken once", function()
        local db = pg.start(h.tmpdir(finally), finally)
        local dir = h.tmpdir(finally)
        local cmd = ("%s %s %s --store %s create"):format(h.env_words(), h.quote(h.lua),
            h.quote(h.bin), h.quote(db.conninfo))
        -- 8 writers at once on a database never used: the schema is made once, under a lock.
        local script = {}
        for w = 1, 8 do
            script[#script + 1] = ("(for i in 1 2 3 4 5; do %s w%d-$i; done >%s/w%d.out 2>&1) &")
                :format(cmd, w, dir, w)
        end
        for w = 1, 8 do
            script[#script + 1] = ("%s same >%s/s%d.out 2>&1 &"):format(cmd, dir, w)
        end
        script[#script + 1] = "wait"
        assert.are.equal(0, h.sh("timeout -s KILL 60 sh -c " .. h.quote(table.concat(script,
            "\n"))))
        local keys = {}
        for w = 1, 8 do
            for key in (h.read_file(("%s/w%d.out"):format(dir, w))):gmatch("': (" .. h.UUID .. ")")
            do
                keys[#keys + 1] = key
            end
        end
        assert.are.equal(40, #keys)
        local entries = {}
        local out = store_run(db, { "list", "--json" })
        for alias in out:gmatch('"alias":"([^"]+)"') do
            entries[#entries + 1] = alias
        end
        assert.are.equal(41, #entries)
        for _, key in ipairs(keys) do
            local _, _, code = store_run(db, { "verify", key })
            assert.are.equal(0, code)
        end
        local made = 0
        for w = 1, 8 do
            local text = h.read_file(("%s/s%d.out"):format(dir, w))
            if text:find("^API key created for alias 'same'") then
                made = made + 1
            else
                assert.matches("already exists in the store", text)
            end
        end
        assert.are.equal(1, made)
    end)
end)

describe("apikey sync", function()
    if not available then
        pending(pg.missing)
        return
    end

    it("brings a created key to two servers' files, and takes a revoked one away, within 2 s",
        function()
            local db = pg.start(h.tmpdir(finally), finally)
            local a, b = h.tmpdir(finally) .. "/a.p12", h.tmpdir(finally) .. "/b.p12"
            -- a poll every 60 s: what arrives within 2 s came by notification
            start_sync(db, a, { "--interval", "60" }, finally)
            start_sync(db, b, { "--interval", "60" }, finally)
            assert.truthy(within(10, function()
                return h.exists(a) and h.exists(b)
            end), "the syncs did not write their files")
            h.sleep(0.2)

            local key = store_create(db, "ci-bot")
            local ta = within(2, function()
                return accepts(a, key)
            end)
            local tb = within(2, function()
                return accepts(b, key)
            end)
            assert.truthy(ta and tb, "the key did not reach both files within 2 s")
            local _, _, code = store_run(db, { "revoke", "ci-bot" })
            assert.are.equal(0, code)
            ta = within(2, function()
                return not accepts(a, key)
            end)
            tb = within(2, function()
                return not accepts(b, key)
            end)
            assert.truthy(ta and tb, "the revoked key stayed in a file for more than 2 s")
            -- each write said on its own line, once the file is in place
            local said = "^Synced 0 API keys to .-a%.p12%.\nSynced 1 API key to .-a%.p12%.\n"
                .. "Synced 0 API keys to .-a%.p12%.\n$"
            within(1, function()
                return h.read_file(a .. ".out"):find(said) ~= nil
            end)
            assert.matches(said, h.read_file(a .. ".out"))
            assert.are.equal("", h.read_file(a .. ".err"))
        end)

    it("keeps the file while the database is away, says so once, and catches up when it is back",
        function()
            local db = pg.start(h.tmpdir(finally), finally)
            local file = h.tmpdir(finally) .. "/k.p12"
            db.conninfo = db.conninfo .. " password=" .. PASSWORD
            local key = store_create(db, "before")
            start_sync(db, file, { "--interval", "1" }, finally)
            assert.truthy(within(10, function()
                return accepts(file, key)
            end))
            local v = assert(apikey.verifier { path = file, interval = 0 })
            local bytes = h.read_file(file)

            db:stop()
            assert.truthy(within(3, function()
                return (h.read_file(file .. ".err") or "") ~= ""
            end), "the sync did not report the database gone")
            h.sleep(3) -- three tries, reported once
            local err = h.read_file(file .. ".err")
            assert.matches("^apikey: cannot reach the store %(database postgres of user postgres "
                .. "on [^)]+%): .*; .-k%.p12 stays as it is, trying again every 1 s\n$", err)
            assert.is_nil(err:find(PASSWORD, 1, true))
            assert.are.equal(bytes, h.read_file(file))
            assert.truthy(v:verify(key))
            local out, _, code = h.run({ "verify", key, "--keystore", file })
            assert.are.same({ "before\n", 0 }, { out, code })

            -- back: a key made before the sync reconnects arrives by its full read, within one
            -- interval (1 s) of the database's return
            db:start()
            local t0 = h.clock()
            local late = store_create(db, "meanwhile")
            assert.truthy(within(1.5 - (h.clock() - t0), function()
                return v:verify(late) ~= nil
            end), "the key created meanwhile did not arrive within one interval")
            assert.truthy(v:verify(key))
            local said = "\nSynced again with the store %(database postgres of user postgres on "
                .. "[^)]+%)%.\nSynced 2 API keys to .-k%.p12%.\n$"
            within(1, function()
                return h.read_file(file .. ".out"):find(said) ~= nil
            end)
            assert.matches(said, h.read_file(file .. ".out"))
            assert.are.equal(err, h.read_file(file .. ".err"))
            v:close()
        end)

    it("leaves a whole file when killed with SIGKILL while it writes", function()
        local db = pg.start(h.tmpdir(finally), finally)
        local dir = h.tmpdir(finally)
        local file = dir .. "/k.p12"
        local key = store_create(db, "real")
        -- 3,000 rows (hashes of no key): each write takes long enough to be hit
        db:sql("INSERT INTO apikey_keys (alias, alias_folded, hash, hint, created) SELECT "
            .. "'bulk-' || g, 'bulk-' || g, sha256(('bulk-' || g)::bytea), 'abcd', now() FROM "
            .. "generate_series(1, 3000) g")
        local cmd = ("%s %s %s sync --once --store %s --keystore %s"):format(h.env_words(),
            h.quote(h.lua), h.quote(h.bin), h.quote(db.conninfo), h.quote(file))
        local t0 = h.clock()
        assert.are.equal(0, h.sh(cmd .. " >/dev/null"))
        local span = h.clock() - t0
        local counts, killed = { [3001] = true }, 0
        math.randomseed(os.time())
        for run = 1, 16 do
            -- one key more or less each run: every sync has a write to do
            local n = 3001 + run % 2
            if run % 2 == 1 then
                db:sql(("INSERT INTO apikey_keys (alias, alias_folded, hash, hint, created) VALUES "
                    .. "('extra', 'extra', sha256('extra-%d'::bytea), 'abcd', now())"):format(run))
            else
                db:sql("DELETE FROM apikey_keys WHERE alias = 'extra'")
            end
            counts[n] = true
            local delay = span * (0.3 + 0.7 * math.random())
            local script = ("%s >/dev/null 2>&1 & pid=$!; sleep %.3f; kill -KILL $pid 2>/dev/null; "
                .. "wait $pid; echo $?"):format(cmd, delay)
            -- sh's own "Killed" notice goes to /dev/null
            local status = h.output("sh -c " .. h.quote(script) .. " 2>/dev/null")
            if status == "137" then
                killed = killed + 1
            end
            local ks = assert(apikey.open { path = file })
            assert.truthy(counts[ks:count()], "a file of " .. ks:count() .. " keys")
            assert.truthy(ks:verify(key))
            ks:close()
        end
        assert.truthy(killed > 0, "no sync was killed")
        -- the next sync that writes finishes the work, and removes what a dead one left (a sync
        -- that finds the file equal to the table takes no lock and leaves it)
        db:sql("INSERT INTO apikey_keys (alias, alias_folded, hash, hint, created) VALUES "
            .. "('last', 'last', sha256('last'::bytea), 'abcd', now())")
        assert.are.equal(0, h.sh(cmd .. " >/dev/null"))
        assert.are.equal(3002, #aliases_of(file))
        assert.are.equal("", h.output("ls " .. h.quote(dir) .. " | grep tmp || true"))
    end)

    it("needs a store, and says when a --once sync fails", function()
        local dir = h.tmpdir(finally)
        local out, err, code = h.run({ "sync", "--keystore", dir .. "/k.p12" })
        assert.are.same({ "", 2 }, { out, code })
        assert.matches("sync follows a store: give %-%-store URL or set APIKEY_STORE", err)
        out, err, code = h.run({ "sync", "--once", "--keystore", dir .. "/k.p12", "--store",
            "host=" .. dir .. " user=postgres" })
        assert.are.same({ "", 1 }, { out, code })
        assert.matches("^apikey: cannot reach the store .*; .-k%.p12 stays as it is\n$", err)
        assert.is_false(h.exists(dir .. "/k.p12"))
    end)
end)

describe("apikey --store with scopes and rotation", function()
    if not available then
        pending(pg.missing)
        return
    end

    local function list_of(args)
        local out, err, code = h.run(args)
        assert(code == 0, err)
        return out
    end

    it("takes a scoped key to a synced file with its scopes, and syncs a change of scopes alone",
        function()
            local db = pg.start(h.tmpdir(finally), finally)
            local file = h.tmpdir(finally) .. "/k.p12"
            local out, err, code = store_run(db, { "create", "grafana", "--scope", "read",
                "--scope", "metrics:read" })
            assert.are.equal(0, code, err)
            local key = assert(out:match("^API key created for alias 'grafana': (" .. h.UUID
                .. ") %(No expiration%) %[read, metrics:read%]\n"), out)
            local admin = store_create(db, "admin")
            assert.are.equal("{read,metrics:read}|", db:sql("SELECT scopes, '' FROM apikey_keys "
                .. "WHERE alias = 'grafana'"))
            out = list_of { "--store", db.conninfo, "list" }
            assert.are.equal(("grafana ********************%s (No expiration) [read, metrics:read]\n"
                .. "admin ********************%s (No expiration)\n"):format(key:sub(-4),
                admin:sub(-4)), out)
            local json = list_of { "--store", db.conninfo, "list", "--json" }
            assert.matches('"alias":"grafana",[^}]*"scopes":%["read","metrics:read"%]', json)
            assert.matches('"alias":"admin",[^}]*"scopes":null', json)
            assert.are.same({ "grafana\n", "", 0 }, { store_run(db, { "verify", key }) })

            -- the file holds what the table holds: list shows the same lines, a server enforces
            assert.are.same({ ("Synced 2 API keys to %s.\n"):format(file), "", 0 },
                { sync_once(db, file) })
            assert.are.equal(out, list_of { "list", "--keystore", file })
            assert.are.equal(json, list_of { "list", "--json", "--keystore", file })
            local v = assert(apikey.verifier { path = file, interval = 0 })
            local bearer = "Bearer " .. key
            assert.are.equal("grafana", v:authenticate(bearer, "read").alias)
            local entry, why = v:authenticate(bearer, "write")
            assert.are.same({ nil, "insufficient_scope" }, { entry, why })
            assert.are.equal("admin", v:authenticate("Bearer " .. admin, "write").alias)

            -- a change of scopes alone, made in the table, is a change to write
            db:sql("UPDATE apikey_keys SET scopes = '{read,write}' WHERE alias = 'grafana'")
            assert.are.same({ ("Synced 2 API keys to %s.\n"):format(file), "", 0 },
                { sync_once(db, file) })
            assert.are.equal("grafana", v:authenticate(bearer, "write").alias)
            assert.are.same({ "", "", 0 }, { sync_once(db, file) })

            -- scopes that do not read back as a list of scopes are never taken for full access:
            -- the sync refuses and the file stays; list and verify through the store refuse
            local bytes = h.read_file(file)
            for _, bad in ipairs { "'{}'", "'{NULL}'", "'{read,NULL}'", "'{\"read,write\"}'",
                "'{\"read only\"}'", "'{read,read}'", "'{{read},{write}}'", "'{\"\"}'" } do
                db:sql("UPDATE apikey_keys SET scopes = " .. bad .. " WHERE alias = 'grafana'")
                out, err, code = sync_once(db, file)
                assert.are.same({ "", 1 }, { out, code }, bad)
                assert.matches("^apikey: row %d+ of the store %(.-%) is not an API key apikey can "
                    .. "use %(.-%); it is not used: fix or delete it in table apikey_keys; .-k%.p12 "
                    .. "stays as it is\n$", err)
                assert.are.equal(bytes, h.read_file(file))
                out, _, code = store_run(db, { "verify", key })
                assert.are.same({ "", 1 }, { out, code }, bad)
                out, _, code = store_run(db, { "list" })
                assert.are.same({ "", 1 }, { out, code }, bad)
            end
            assert.are.equal("grafana", v:authenticate(bearer, "write").alias)
            v:close()
        end)

    it("rotates with a grace period: both keys in on the synced file during it, the new one after",
        function()
            local db = pg.start(h.tmpdir(finally), finally)
            local file = h.tmpdir(finally) .. "/k.p12"
            local old = store_create(db, "ci-bot")
            local out, err, code = store_run(db, { "rotate", "ci-bot", "--grace", "2s" })
            assert.are.equal(0, code, err)
            local new = assert(out:match("^API key created for alias 'ci%-bot': (" .. h.UUID
                .. ") %(No expiration%)\nPlease store this key securely, as it will not be shown "
                .. "again%.\nThe previous key of 'ci%-bot' stays valid until "
                .. "%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.\n$"), out)
            local rows = db:sql("SELECT * FROM apikey_keys")
            for _, k in ipairs { old, new } do
                assert.is_nil(rows:find(k, 1, true))
                assert.is_nil(rows:find(k:gsub("-", ""), 1, true))
            end
            out = list_of { "--store", db.conninfo, "list" }
            assert.matches(("^ci%%-bot %%*+%s %%(No expiration%%)\nci%%-bot %%*+%s %%(Rotated, "
                .. "valid until [^)]+%%)\n$"):format(new:sub(-4), old:sub(-4)), out)
            assert.are.same({ "ci-bot\n", "", 0 }, { store_run(db, { "verify", old }) })
            assert.are.same({ "ci-bot\n", "", 0 }, { store_run(db, { "verify", new }) })

            assert.are.same({ ("Synced 2 API keys to %s.\n"):format(file), "", 0 },
                { sync_once(db, file) })
            assert.are.equal(out, list_of { "list", "--keystore", file })
            local v = assert(apikey.verifier { path = file, interval = 0 })
            assert.are.equal("ci-bot", v:verify(old).alias)
            assert.are.equal("ci-bot", v:verify(new).alias)
            -- the grace ends on the server by its clock, with no sync needed
            assert.truthy(within(4, function()
                return select(2, v:verify(old)) == "expired"
            end), "the previous key was still valid after its grace")
            assert.are.equal("ci-bot", v:verify(new).alias)
            assert.are.same({ "", "expired\n", 1 }, { store_run(db, { "verify", old }) })

            -- a scoped key keeps its scopes; without --grace the previous key stops at once
            out = store_run(db, { "create", "reader", "--scope", "read" })
            local r1 = assert(out:match("': (" .. h.UUID .. ") "))
            out, err, code = store_run(db, { "rotate", "reader", "--expires-in", "1d" })
            assert.are.equal(0, code, err)
            local r2 = assert(out:match("^API key created for alias 'reader': (" .. h.UUID
                .. ") %(Expires on [^)]+%) %[read%]\n.-\nThe previous key of 'reader' no longer "
                .. "works%.\n$"), out)
            assert.are.same({ "", "expired\n", 1 }, { store_run(db, { "verify", r1 }) })
            assert.are.same({ ("Synced 4 API keys to %s.\n"):format(file), "", 0 },
                { sync_once(db, file) })
            local entry, why = v:authenticate("Bearer " .. r2, "write")
            assert.are.same({ nil, "insufficient_scope" }, { entry, why })
            assert.are.equal("expired", select(2, v:verify(r1)))

            -- an unknown alias; a key that expired is rotated only with an expiry of its own
            assert.are.same({ "", "No API key found with alias 'nobody'.\n", 1 },
                { store_run(db, { "rotate", "nobody" }) })
            db:sql("UPDATE apikey_keys SET expires = now() - interval '1 day' WHERE alias = 'ci-bot'")
            out, err, code = store_run(db, { "rotate", "ci-bot" })
            assert.are.same({ "", 1 }, { out, code })
            assert.matches("the key of alias 'ci%-bot' expired on .-; give the new key an expiry "
                .. "of its own\n$", err)
            v:close()
        end)

    it("revokes by the key itself, its current or its previous one", function()
        local db = pg.start(h.tmpdir(finally), finally)
        local file = h.tmpdir(finally) .. "/k.p12"
        local oldest = store_create(db, "leaky")
        local out = store_run(db, { "rotate", "leaky", "--grace", "1h" })
        local old = assert(out:match("': (" .. h.UUID .. ") "))
        -- the row keeps one previous key: a rotate during its grace ends the one before it
        out = store_run(db, { "rotate", "leaky", "--grace", "1h" })
        local new = assert(out:match("': (" .. h.UUID .. ") "))
        assert.are.same({ "", "unknown\n", 1 }, { store_run(db, { "verify", oldest }) })
        assert.are.same({ "leaky\n", "", 0 }, { store_run(db, { "verify", old }) })
        local other = store_create(db, "other")
        -- a rotation whose new key could not be printed is undone: the key it had is in use again,
        -- with its expiry
        assert.are.equal(0, select(3, store_run(db, { "create", "undone", "--expires-in", "30d" })))
        local before = list_of { "--store", db.conninfo, "list" }
        local cmd = h.lua .. " " .. h.quote_all { h.bin, "--store", db.conninfo, "rotate", "undone",
            "--expires-in", "1d" } .. " >/dev/full"
        local _, err, code = h.exec({ "sh", "-c", cmd })
        assert.are.equal(1, code)
        assert.truthy(err:find("rotation of alias 'undone' was undone", 1, true), err)
        assert.are.equal(before, list_of { "--store", db.conninfo, "list" })
        assert.are.equal(0, select(3, store_run(db, { "revoke", "undone" })))
        assert.are.same({ ("Synced 3 API keys to %s.\n"):format(file), "", 0 },
            { sync_once(db, file) })

        assert.are.same({ "API key 'leaky' has been revoked.\n", "", 0 },
            { store_run(db, { "revoke", "--key", "-" }, nil, old:upper() .. "\n") })
        for _, k in ipairs { old, new } do
            assert.are.same({ "", "No API key found for the key given.\n", 1 },
                { store_run(db, { "revoke", "--key", "-" }, nil, k .. "\n") })
            assert.are.same({ "", "unknown\n", 1 }, { store_run(db, { "verify", k }) })
        end
        out, err, code = store_run(db, { "revoke", "--key", "-" }, nil, "hello\n")
        assert.are.same({ "", 1 }, { out, code })
        assert.matches("the text given is not an API key", err)
        assert.are.same({ "API key 'other' has been revoked.\n", "", 0 },
            { store_run(db, { "revoke", "--key", "-" }, nil, other .. "\n") })
        assert.are.same({ ("Synced 0 API keys to %s.\n"):format(file), "", 0 },
            { sync_once(db, file) })
        for _, k in ipairs { oldest, old, new, other } do
            assert.is_false(accepts(file, k))
        end
    end)
end)
