-- report.lua: turns the files of bench/results/ into the markdown tables of bench/README.md.
--
--   lua5.4 bench/report.lua bench/results > bench/results/table.md
--
-- Reads the key=value lines that run.sh's parts write, and hyperfine's JSON for the CLI.
-- A part that was not run leaves its cells as "not run".
local json = require "dkjson"

local dir = arg[1] or "bench/results"
local NA = "not run"

-- Every line of a results file as a table of its key=value pairs.
local function records(name)
    local f = io.open(dir .. "/" .. name)
    if not f then
        return {}
    end
    local out = {}
    for line in f:lines() do
        local r = {}
        for k, v in line:gmatch("([%w_]+)=(%S+)") do
            r[k] = tonumber(v) or v
        end
        if next(r) then
            out[#out + 1] = r
        end
    end
    f:close()
    return out
end

local function find(list, want)
    for _, r in ipairs(list) do
        local ok = true
        for k, v in pairs(want) do
            if r[k] ~= v then
                ok = false
                break
            end
        end
        if ok then
            return r
        end
    end
end

local function median(list, key, want)
    local v = {}
    for _, r in ipairs(list) do
        local ok = r[key] ~= nil
        for k, w in pairs(want) do
            ok = ok and r[k] == w
        end
        if ok then
            v[#v + 1] = r[key]
        end
    end
    if #v == 0 then
        return nil
    end
    table.sort(v)
    return v[(#v + 1) // 2]
end

-- 1234567 -> "1,234,567"
local function int(n)
    local s = ("%d"):format(math.floor(n + 0.5))
    local sign, digits = s:match("^(-?)(%d+)$")
    return sign .. digits:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
end

-- A duration in seconds, in the unit that reads best.
local function dur(s)
    if s == nil then
        return NA
    elseif s < 1e-6 then
        return ("%.0f ns"):format(s * 1e9)
    elseif s < 1e-3 then
        return ("%.1f µs"):format(s * 1e6)
    elseif s < 1 then
        return ("%.1f ms"):format(s * 1e3)
    end
    return ("%.2f s"):format(s)
end

local function rate(per_s)
    if per_s == nil then
        return NA
    end
    if per_s < 100 then
        return ("%.1f/s"):format(per_s)
    end
    return int(per_s) .. "/s"
end

local function mib(kb)
    return kb and ("%.1f MiB"):format(kb / 1024) or NA
end

local function row(cells)
    return "| " .. table.concat(cells, " | ") .. " |"
end

local function header(cells)
    local sep = {}
    for i = 1, #cells do
        sep[i] = i == 1 and "---" or "---:"
    end
    return row(cells) .. "\n" .. row(sep)
end

local function met(ok)
    if ok == nil then
        return NA
    end
    return ok and "met" or "**missed**"
end

local env = {}
for line in io.lines(dir .. "/env.txt") do
    local k, v = line:match("^(%w+)=(.*)$")
    if k then
        env[k] = v
    end
end

local vc = records("verify_c.txt")
local vl = records("verify_lua.txt")
local ld = records("load.txt")
local ref = records("reference.txt")
local http = records("http.txt")
local srv = records("servers.txt")
local SERVERS = { "lighttpd", "nginx", "haproxy", "apache" }
local SERVER_NAMES = { lighttpd = "lighttpd", nginx = "nginx", haproxy = "HAProxy",
    apache = "Apache", ["haproxy-fork"] = "HAProxy, insecure-fork-wanted" }

-- Medians of the throughput runs of server s at site (static, proxy), with (apikey) and without
-- (none) the check: requests/s, server CPU per request, server + backend CPU per request.
local function throughput(s, site)
    local r = {}
    for _, a in ipairs { "none", "apikey" } do
        local want = { test = "throughput", server = s, site = site, auth = a }
        local total = {}
        for _, x in ipairs(srv) do
            if x.test == "throughput" and x.server == s and x.site == site and x.auth == a then
                total[#total + 1] = { t = x.server_cpu_us_per_req + x.backend_cpu_us_per_req }
            end
        end
        r[a] = {
            rps = median(srv, "rps", want),
            cpu = median(srv, "server_cpu_us_per_req", want),
            total = median(total, "t", {}),
        }
    end
    if not (r.none.rps and r.apikey.rps) then
        return nil
    end
    -- the cost ratio: what the server alone spends on the static file, with the backend's
    -- share behind a proxy (the check adds the same work either way)
    local key = site == "static" and "cpu" or "total"
    r.rps_ratio = r.apikey.rps / r.none.rps
    r.cpu_ratio = r.none[key] / r.apikey[key]
    return r
end

local function cli_mean(who, n, what)
    local name = n and ("cli-%s-%d.json"):format(who, n) or ("cli-%s.json"):format(who)
    local f = io.open(dir .. "/" .. name)
    if not f then
        return nil
    end
    local doc = json.decode(f:read("a"))
    f:close()
    for _, r in ipairs(doc.results) do
        if r.command:find(what, 1, true) == 1 then
            return r.mean, r.stddev, r.user + r.system
        end
    end
end

local function ref_ms(n, kind)
    local r = find(ref, { keys = n })
    return r and r[kind .. "_ms"] / 1e3
end

local out = {}
local function say(s)
    out[#out + 1] = s or ""
end

say(("One run of `bash bench/run.sh`, %s: %s, %s cores; %s; %s; %s."):format(env.date or "?",
    env.cpu or "?", env.cores or "?", env.openssl or "?", (env.lua or "?"):match("^Lua [%d.]+")
    or "?", env.java or "?"))
say()

-- Summary: ours beside the reference, and the targets.
say("### Summary")
say()
say(header { "measure", "ours", "reference (Java 17)", "target", "" })
do
    local c = find(vc, { keys = 100000 })
    local l = find(vl, { keys = 100000, way = "verifier" })
    local l1k = find(vl, { keys = 1000, way = "verifier" })
    local c10 = find(vc, { keys = 10 })
    say(row { "one check, valid key, 10 keys",
        c10 and dur(1 / c10.valid_per_s) .. " (C core)" or NA,
        dur(ref_ms(10, "valid")), "", "" })
    say(row { "one check, valid key, 1,000 keys",
        l1k and dur(1 / l1k.valid_per_s) .. " (Lua verifier)" or NA, dur(ref_ms(1000, "valid")),
        "", "" })
    say(row { "verify/s, 100,000 keys, C core, valid key", c and rate(c.valid_per_s) or NA,
        "not run (see below)", "≥ 1,000,000/s", met(c and c.valid_per_s >= 1e6) })
    say(row { "verify/s, 100,000 keys, Lua verifier, valid key", l and rate(l.valid_per_s) or NA,
        "not run", "≥ 300,000/s", met(l and l.valid_per_s >= 3e5) })
    local t = median(ld, "wall_s", { keys = 100000, way = "c" })
    local m = median(ld, "load_ms", { keys = 100000, way = "c" })
    local rss = median(ld, "maxrss_kb", { keys = 100000, way = "c" })
    say(row { "load 100,000 keys (C core)",
        m and ("%s (process %s, peak %s)"):format(dur(m / 1e3), dur(t), mib(rss)) or NA, "not run",
        "< 1 s", met(m and m < 1000) })
    local ours = cli_mean("ours", 10, "apikey list")
    local theirs = cli_mean("ref", 10, "reference list")
    say(row { "`apikey list`, 10 keys, whole process", dur(ours), dur(theirs), "< 20 ms",
        met(ours and ours < 0.02) })
    local none = median(http, "rps", { way = "none" })
    local auth = median(http, "rps", { way = "apikey" })
    local cpu_none = median(http, "server_cpu_us_per_req", { way = "none" })
    local cpu_auth = median(http, "server_cpu_us_per_req", { way = "apikey" })
    local ratio = none and auth and auth / none
    local cap = cpu_none and cpu_auth and cpu_none / cpu_auth
    say(row { "lighttpd with apikey / without: server CPU per request",
        cap and ("%.1f%% (%.2f µs / %.2f µs)"):format(cap * 100, cpu_none, cpu_auth) or NA, "n/a",
        "≥ 90%", met(cap and cap >= 0.9) })
    say(row { "lighttpd with apikey / without: requests/s seen by wrk",
        ratio and ("%.1f%% (%s / %s)"):format(ratio * 100, rate(auth), rate(none)) or NA, "n/a",
        "≥ 90%", met(ratio and ratio >= 0.9) })
    for _, s in ipairs(SERVERS) do
        for _, site in ipairs { "static", "proxy" } do
            local r = throughput(s, site)
            local target = site == "static" and 0.9 or 0.98
            if r then
                say(row { ("%s with apikey / without, %s: CPU per request; requests/s")
                    :format(SERVER_NAMES[s], site == "static" and "4 KiB file" or "proxied"),
                    ("%.1f%%; %.1f%%"):format(r.cpu_ratio * 100, r.rps_ratio * 100), "n/a",
                    ("≥ %d%%"):format(target * 100), met(r.cpu_ratio >= target) })
            end
        end
    end
end
say()

-- Verify per second.
say("### Verify per second, one thread (per CPU second, median of 5 slices)")
say()
local sizes = { 10, 100, 1000, 100000 }
local cols = { "way in", "key" }
for _, n in ipairs(sizes) do
    cols[#cols + 1] = int(n) .. " keys"
end
say(header(cols))
local ways = {
    { "C core `keystore_verify`", function(n)
        return find(vc, { keys = n })
    end },
    { "Lua `apikey.open` ks:verify", function(n)
        return find(vl, { keys = n, way = "api" })
    end },
    { "Lua verifier `v:verify`", function(n)
        return find(vl, { keys = n, way = "verifier" })
    end },
    { "Lua verifier `v:authenticate`", function(n)
        return find(vl, { keys = n, way = "authenticate" })
    end },
}
for _, w in ipairs(ways) do
    for _, kind in ipairs { "valid", "unknown" } do
        local cells = { w[1], kind }
        for _, n in ipairs(sizes) do
            local r = w[2](n)
            cells[#cells + 1] = r and rate(r[kind .. "_per_s"]) or NA
        end
        say(row(cells))
    end
end
for _, kind in ipairs { "valid", "unknown" } do
    local cells = { "reference: load + decrypt + scan", kind }
    for _, n in ipairs(sizes) do
        local s, w = ref_ms(n, kind), ref_ms(n, kind .. "_wall")
        cells[#cells + 1] = s and ("%s (%s; wall %s)"):format(rate(1 / s), dur(s), dur(w)) or NA
    end
    say(row(cells))
end
say()

-- Against the raw SHA-256 rate, which bounds every check: each hashes the key once.
say("### Checks against the raw SHA-256 rate of a 36-byte key, 1,000 keys, valid keys")
say()
say("`openssl speed`: `openssl speed -seconds S -bytes 36 -evp sha256`, the yardstick of the "
    .. "targets; EVP, reused context: the same digest through one EVP context reused, as a "
    .. "careful program would call it; both measured in this run.")
say()
say(header { "way in", "checks/s", "vs `openssl speed`", "vs EVP, reused context", "target",
    "" })
do
    local sha = records("verify_sha.txt")[1]
    local c1k = find(vc, { keys = 1000 })
    local speed = sha and sha.openssl_speed_per_s
    local evp = c1k and c1k.sha256_per_s
    local function ratio(r, base)
        return r and base and ("%.2f"):format(r / base) or NA
    end
    local function line(name, r, want)
        say(row { name, rate(r), ratio(r, speed), ratio(r, evp), ("≥ %.1f"):format(want),
            met(r and speed and r / speed >= want) })
    end
    say(row { "SHA-256, `openssl speed`", rate(speed), "1.00", ratio(speed, evp), "", "" })
    say(row { "SHA-256, EVP, reused context", rate(evp), ratio(evp, speed), "1.00", "", "" })
    local low = c1k and c1k.sha256_low_per_s
    say(row { "SHA-256, low-level `SHA256_*` (as the core hashes)", rate(low), ratio(low, speed),
        ratio(low, evp), "", "" })
    line("C core `keystore_verify`", c1k and c1k.valid_per_s, 0.8)
    for _, w in ipairs { { "api", "Lua `apikey.open` ks:verify" },
        { "verifier", "Lua verifier `v:verify`" },
        { "authenticate", "Lua verifier `v:authenticate`" } } do
        local r = find(vl, { keys = 1000, way = w[1] })
        line(w[2], r and r.valid_per_s, 0.5)
    end
end
say()

-- Load.
say("### Load a keystore: time and peak memory (median of 3 processes)")
say()
say(header { "keys", "C core: load", "C core: process, peak RSS", "Lua `apikey.open`: load",
    "Lua: process, peak RSS", "reference: `list` process (load + decrypt all), peak RSS" })
for _, n in ipairs(sizes) do
    local function proc(way)
        local t = median(ld, "wall_s", { keys = n, way = way })
        local rss = median(ld, "maxrss_kb", { keys = n, way = way })
        return t and ("%s, %s"):format(dur(t), mib(rss)) or NA
    end
    local function inside(way)
        local m = median(ld, "load_ms", { keys = n, way = way })
        return m and dur(m / 1e3) or NA
    end
    say(row { int(n), inside("c"), proc("c"), inside("lua"), proc("lua"), proc("ref") })
end
say()

-- CLI.
say("### CLI, whole process (hyperfine: wall mean ± σ; CPU = user + system)")
say()
say(header { "command", "keys", "ours: wall", "ours: CPU", "reference (JVM): wall",
    "reference: CPU" })
for _, what in ipairs { "list", "create", "verify" } do
    for _, n in ipairs { 10, 1000 } do
        local m, s, c = cli_mean("ours", n, "apikey " .. what)
        local rm, rs, rc = cli_mean("ref", n, "reference " .. what)
        say(row { "`apikey " .. what .. "`", int(n),
            m and ("%s ± %s"):format(dur(m), dur(s)) or NA, dur(c),
            rm and ("%s ± %s"):format(dur(rm), dur(rs)) or NA, dur(rc) })
    end
end
say()

say("Where the time of `apikey list` (10 keys) goes:")
say()
say(header { "process", "wall", "CPU" })
for _, what in ipairs { "lua5.4 -e ''", "+ require argparse", "+ require apikey.core (OpenSSL)",
    "+ require apikey.cli", "+ open the keystore (10 keys)", "apikey list (10 keys)" } do
    local m, s, c = cli_mean("startup", nil, what)
    say(row { "`" .. what .. "`", m and ("%s ± %s"):format(dur(m), dur(s)) or NA, dur(c) })
end
say()

-- HTTP.
say("### lighttpd serving a 4 KiB file, wrk -t1 -c16 on 127.0.0.1 (median of the rounds)")
say()
say(header { "server", "requests/s (wrk)", "vs no auth", "p50", "p99", "server CPU per request",
    "vs no auth" })
local none = median(http, "rps", { way = "none" })
local cpu_none = median(http, "server_cpu_us_per_req", { way = "none" })
local labels = {
    none = "no auth",
    magnet = "mod_magnet running a script that returns 0",
    header = "mod_magnet, a script that reads the Authorization header",
    check = "mod_magnet, a script that reads it and calls v:authenticate",
    apikey = "apikey (examples/lighttpd), valid key: 200",
    unknown = "apikey (examples/lighttpd), unknown key: 401",
}
for _, way in ipairs { "none", "magnet", "header", "check", "apikey", "unknown" } do
    local rps = median(http, "rps", { way = way })
    local r = rps and find(http, { way = way, rps = rps })
    local cpu = median(http, "server_cpu_us_per_req", { way = way })
    say(row { labels[way], rate(rps), none and rps and ("%.1f%%"):format(rps / none * 100) or NA,
        r and r.p50 or NA, r and r.p99 or NA, cpu and ("%.2f µs"):format(cpu) or NA,
        cpu_none and cpu and ("%.1f%%"):format(cpu_none / cpu * 100) or NA })
end


-- Every server.
local function us(v)
    return v and dur(v / 1e6) or NA
end
if #srv > 0 then
    say()
    say("### Every server, with the example against without: wrk -t1 -c16 on 127.0.0.1, a 4 KiB "
        .. "file (median of the rounds)")
    say()
    say("Static: the file served by the server itself. Proxied: passed on to the backend (a "
        .. "plain nginx, 1 worker, serving the same file). CPU per request is the server's; "
        .. "behind the proxy, + the backend's.")
    say()
    say(header { "server", "site", "requests/s without", "with", "with / without",
        "CPU per request without", "with", "without / with", "target" })
    for _, s in ipairs(SERVERS) do
        for _, site in ipairs { "static", "proxy" } do
            local r = throughput(s, site)
            if r then
                local cpu = function(x)
                    return site == "static" and ("%.2f µs"):format(x.cpu)
                        or ("%.2f + %.2f µs"):format(x.cpu, x.total - x.cpu)
                end
                local target = site == "static" and 0.9 or 0.98
                say(row { SERVER_NAMES[s], site == "static" and "static" or "proxied",
                    rate(r.none.rps), rate(r.apikey.rps), ("%.1f%%"):format(r.rps_ratio * 100),
                    cpu(r.none), cpu(r.apikey), ("%.1f%%"):format(r.cpu_ratio * 100),
                    ("≥ %d%%: %s"):format(target * 100, met(r.cpu_ratio >= target)) })
            end
        end
    end
    say()
    say("### Latency while the keystore of 100,000 keys is rewritten every second (wrk -t1 "
        .. "-c16, the 4 KiB file, one run each)")
    say()
    say(header { "server", "keystore", "p50 / p99 / max, no rewrites", "with rewrites",
        "p99 with / without", "target ≤ 1.5" })
    for _, s in ipairs { "lighttpd", "nginx", "haproxy", "haproxy-fork", "apache" } do
        for _, kind in ipairs { "plain", "password" } do
            local a = find(srv, { test = "rewrite", server = s, keystore = kind, rewrites = 0 })
            local b = find(srv, { test = "rewrite", server = s, keystore = kind, rewrites = 1 })
            if a and b then
                local ratio = b.p99_us / a.p99_us
                say(row { SERVER_NAMES[s], kind == "plain" and "no password" or "password",
                    ("%s / %s / %s"):format(us(a.p50_us), us(a.p99_us), us(a.max_us)),
                    ("%s / %s / %s"):format(us(b.p50_us), us(b.p99_us), us(b.max_us)),
                    ("%.2f"):format(ratio), met(ratio <= 1.5) })
            end
        end
    end
end

io.write(table.concat(out, "\n"), "\n")
