-- bench/store_bench.lua: the PostgreSQL store with `apikey sync`, on a real PostgreSQL 15
-- started in a temporary folder (as spec/store_spec.lua starts it: a Unix socket, run as
-- nobody under root). Prints key=value lines:
--   propagation: from `apikey --store ... create` returning to a verifier on another "server"
--     (a process that checks its own file, which a running `apikey sync` keeps) accepting the
--     key; the verifier looks at its file on every check (interval 0), so a server with the
--     default interval of 1 s adds up to 1 s to these;
--   full sync of 100,000 keys: `apikey sync --once` into a new file, again with nothing to do,
--     one poll of a running sync with nothing to do, and one key created at that size until it
--     is accepted.
--
--   APIKEY_TEST_PREFIX=/opt/apikey lua5.4 bench/store_bench.lua      (bench/run.sh store)
-- BENCH_STORE_ROUNDS: propagation samples (default 200); BENCH_STORE_KEYS (default 100000).
local root = debug.getinfo(1, "S").source:match("^@(.-)bench/store_bench%.lua$") or ""
package.path = (root == "" and "./" or root) .. "?.lua;" .. package.path
local h = require "spec.helpers"
local pg = require("spec.support.postgres")(h)
local apikey = require "apikey"
local store = require "apikey.store"

local ROUNDS = tonumber(os.getenv("BENCH_STORE_ROUNDS")) or 200
local KEYS = tonumber(os.getenv("BENCH_STORE_KEYS")) or 100000

assert(pg.available(), pg.missing)

local function percentile(xs, p)
    local s = table.move(xs, 1, #xs, 1, {})
    table.sort(s)
    return s[math.max(1, math.ceil(#s * p))]
end

local function ms(s)
    return ("%.1f"):format(s * 1000)
end

-- Seconds test() takes to become true (polled every half millisecond), at most limit.
local function until_true(limit, test)
    local t0 = h.clock()
    while not test() do
        assert(h.clock() - t0 < limit, "timed out")
        h.sleep(0.0005)
    end
    return h.clock() - t0
end

local function timed(cmd)
    local t0 = h.clock()
    assert(h.sh(cmd) == 0, cmd)
    return h.clock() - t0
end

local dir, pgdir = h.tmpdir(), h.tmpdir()
local db, sync_pid
local ok, err = pcall(function()
    db = pg.start(pgdir)
    local cmd = ("%s %s %s"):format(h.env_words(), h.quote(h.lua), h.quote(h.bin))
    local function start_sync(file)
        return tonumber(h.output(("%s sync --store %s --keystore %s >/dev/null 2>&1 & echo $!")
            :format(cmd, h.quote(db.conninfo), h.quote(file))))
    end

    -- propagation
    local file = dir .. "/server-b.p12"
    sync_pid = start_sync(file)
    until_true(10, function()
        return h.exists(file)
    end)
    local v = assert(apikey.verifier { path = file, interval = 0 })
    local prop, creates = {}, {}
    for i = 1, ROUNDS do
        local t0 = h.clock()
        local out = h.capture(("%s --store %s create p-%d"):format(cmd, h.quote(db.conninfo), i))
        local t1 = h.clock()
        local key = assert(out:match("': (" .. h.UUID .. ") "), out)
        prop[i] = until_true(10, function()
            return v:verify(key) ~= nil
        end)
        creates[i] = t1 - t0
    end
    v:close()
    print(("part=propagation rounds=%d p50_ms=%s p99_ms=%s max_ms=%s create_p50_ms=%s")
        :format(ROUNDS, ms(percentile(prop, 0.5)), ms(percentile(prop, 0.99)),
            ms(percentile(prop, 1)), ms(percentile(creates, 0.5))))

    -- a full sync of KEYS keys
    h.sh(("kill -TERM %d"):format(sync_pid))
    sync_pid = nil
    db:sql("TRUNCATE apikey_keys")
    db:sql(("INSERT INTO apikey_keys (alias, alias_folded, hash, hint, created) SELECT "
        .. "'bulk-' || g, 'bulk-' || g, sha256(('bulk-' || g)::bytea), 'abcd', now() FROM "
        .. "generate_series(1, %d) g"):format(KEYS))
    local big = dir .. "/big.p12"
    local once = ("%s sync --once --store %s --keystore %s >/dev/null"):format(cmd,
        h.quote(db.conninfo), h.quote(big))
    local cold = timed(once)
    local size = tonumber(h.output("stat -c %s " .. h.quote(big)))
    local again = timed(once)
    local st = assert(store.open(db.conninfo))
    local ks = assert(apikey.open { path = big })
    local t0 = h.clock()
    local changed, n = st:sync_to(ks)
    local poll = h.clock() - t0
    assert(changed == false and n == KEYS, n)
    ks:close()
    st:close()
    sync_pid = start_sync(big)
    h.sleep(2)
    v = assert(apikey.verifier { path = big, interval = 0 })
    local out = h.capture(("%s --store %s create one-more"):format(cmd, h.quote(db.conninfo)))
    local key = assert(out:match("': (" .. h.UUID .. ") "), out)
    local arrival = until_true(60, function()
        return v:verify(key) ~= nil
    end)
    v:close()
    print(("part=fullsync keys=%d file_bytes=%d once_new_file_ms=%s once_unchanged_ms=%s "
        .. "poll_unchanged_ms=%s one_key_arrives_ms=%s"):format(KEYS, size, ms(cold), ms(again),
        ms(poll), ms(arrival)))
end)
if sync_pid then
    h.sh(("kill -TERM %d"):format(sync_pid))
end
if db then
    db:stop()
end
h.remove(dir)
h.remove(pgdir)
assert(ok, err)
