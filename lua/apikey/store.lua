--- apikey.store: API keys in a PostgreSQL table, for many servers, and `apikey sync`, which keeps
-- a local keystore file equal to that table so that each server checks keys as it does today,
-- from its file, without waiting on the network.
--
-- The store is the core's apikey.Store (built when libpq is found, see store.available()), with
-- the methods of a keystore that a table has: create and rotate (added here, with the API's
-- policy), list, revoke, revoke_key, verify, warning and close. Misuse raises; a failure returns nil, message, code.
local core = require "apikey.core"

local store = {}

--- Whether this build of the core has the PostgreSQL store (libpq).
function store.available()
    return core.store_open ~= nil
end

local UNAVAILABLE = "this apikey was built without the PostgreSQL store (libpq was not found "
    .. "when it was built); install libpq-dev and build it again"

--- Connects to the store, creating its tables on first use: the store, or nil, message, code.
-- conninfo: a libpq connection string, postgresql://USER@HOST/DB or 'host=... dbname=...'.
function store.open(conninfo)
    if type(conninfo) ~= "string" or conninfo == "" then
        error("bad argument #1 to 'open' (a connection string expected)", 2)
    end
    if not store.available() then
        return nil, UNAVAILABLE, "invalid"
    end
    return core.store_open(conninfo)
end

if store.available() then
    local apikey = require "apikey"
    local create = core.store_create

    --- st:create(alias [, opts]) -> key, entry | nil, message, code: as ks:create.
    function core.Store:create(alias, opts)
        local now, expires, scopes = apikey._create_args(alias, opts)
        if not now then
            return nil, expires, scopes
        end
        return create(self, alias, now, expires or nil, scopes and table.concat(scopes, ","))
    end

    --- st:rotate(alias [, opts]) -> key, entry, old entry | nil, message, code: as ks:rotate.
    -- The row keeps one previous key: a rotate during the grace of the last one ends the grace
    -- of the key before it.
    function core.Store:rotate(alias, opts)
        local now, grace_end, keep, expires = apikey._rotate_args(alias, opts)
        if not now then
            return nil, grace_end, keep
        end
        return core.store_rotate(self, alias, now, grace_end, keep, expires or nil)
    end

    --- st:unrotate(key, old) -> true | nil, message, code: undoes the rotate that made key,
    -- old being the entry of the key it replaced, as rotate returned it.
    function core.Store:unrotate(key, old)
        return core.store_unrotate(self, key, old.created, old.expires)
    end
end

local INTERVAL = 10 -- seconds between two full reads when no change is notified

--- Follows the store and keeps a keystore file equal to it. opts: conninfo, path, password
-- (of the file), interval (seconds, default 10), once (one sync, then return), say(line) for
-- what was done, complain(line) for failures.
--
-- LISTEN first, then a full read, after every (re)connection: no change is missed between the
-- two, and notifications are not replayed. Then a full read on every notification, and every
-- interval seconds anyway. The file is written with the writers' protocol (lock, temp file,
-- fsync, rename) only when its keys differ. While the store or the file fails, the file stays
-- as it is; a failure is told once per change of state (the store fails, the file fails, all
-- works), and retried every interval. Returns true after a sync with once, else nil, message, code.
function store.sync(opts)
    local apikey = require "apikey"
    local interval = opts.interval or INTERVAL
    local say, complain = opts.say, opts.complain
    local ks, msg, code = apikey.open { path = opts.path, password = opts.password }
    if not ks then
        return nil, msg, code
    end
    local st, failing
    local function failed(where, why, c)
        if where ~= failing then
            complain(("%s; %s stays as it is%s"):format(why, opts.path,
                opts.once and "" or (", trying again every %g s"):format(interval)))
        end
        failing, msg, code = where, why, c
        if where == "store" and st then
            st:close()
            st = nil
        end
    end
    while true do
        if not st then
            local err, c
            st, err, c = store.open(opts.conninfo)
            if st then
                local ok
                ok, err, c = st:listen()
                if not ok then
                    failed("store", err, c)
                end
            else
                failed("store", err, c)
            end
        end
        if st then
            local changed, n, c, where = st:sync_to(ks)
            if changed == nil then
                failed(where, n, c)
            else
                if failing then
                    say(("Synced again with the store (%s)."):format(st:name()))
                    failing = nil
                end
                if changed then
                    say(("Synced %d API key%s to %s."):format(n, n == 1 and "" or "s", opts.path))
                end
            end
        end
        if opts.once then
            ks:close()
            if st then
                st:close()
            end
            if failing then
                return nil, msg, code
            end
            return true
        end
        if st then
            local ok, err, c = st:wait(interval)
            if ok == nil then
                failed("store", err, c)
                -- A restart of the server: try again at once, then every interval.
            end
        else
            core.sleep(interval)
        end
    end
end

return store
