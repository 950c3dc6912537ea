-- Dates as Java reads them (issue 9, item 4): `--expires-on` and `opts.expires` take what
-- MetricsHub's `LocalDateTime.parse` takes (minutes only, fractions of a second, which are
-- dropped), resolve a local time in a DST gap or overlap as `LocalDateTime.atZone` does, print
-- what was stored, and say when a date is after 9999. Then the same local times compared, zone
-- by zone, with Java 17 itself (tests/JavaDates.java, one JVM for every zone and date).
local h = require "spec.helpers"
local json = require "dkjson"

local TIME_MAX = 253402300799

-- The zones with daylight saving these specs run in, each with its 2027 changes: the clocks
-- go forward at 01:00 (London) or 02:00 (New York) for an hour, and back at 02:00 to 01:00.
local ZONES = {
    { tz = "Europe/London", gap = "2027-03-28", overlap = "2027-10-31", gap_at = "01",
        -- 01:30 does not exist: moved forward by the gap, 02:30 BST, 01:30Z.
        gap_local = "2027-03-28T02:30:00", gap_utc = "2027-03-28T01:30:00Z",
        -- 01:30 happens twice: the earlier offset (BST, +01:00), 00:30Z.
        overlap_utc = "2027-10-31T00:30:00Z" },
    { tz = "America/New_York", gap = "2027-03-14", overlap = "2027-11-07", gap_at = "02",
        gap_local = "2027-03-14T03:30:00", gap_utc = "2027-03-14T07:30:00Z",
        overlap_utc = "2027-11-07T05:30:00Z" },
}

local function zone_installed(tz)
    return h.sh("test -f /usr/share/zoneinfo/" .. tz) == 0
end

-- Runs `apikey create ALIAS --expires-on DATE` in a new keystore under TZ=tz: stdout,
-- stderr, exit code, and the expiry stored (UTC, as list --json shows it) when created.
local function create_on(finally, tz, date)
    local ks = h.tmpdir(finally) .. "/ks.p12"
    local out, err, code = h.run({ "create", "dated", "--keystore", ks, "--expires-on", date },
        { TZ = tz })
    local stored
    if code == 0 then
        stored = json.decode((h.run({ "list", "--json", "--keystore", ks }, { TZ = tz })))[1].expires
    end
    return out, err, code, stored
end

local function created(out)
    return out:match("^API key created for alias 'dated': " .. h.UUID .. " %((.-)%)\n")
end

describe("--expires-on as Java's LocalDateTime.parse reads it", function()
    for _, case in ipairs {
        { "2099-12-31T23:59", "2099-12-31T23:59:00" },
        { "2099-12-31T23:59:59.9", "2099-12-31T23:59:59" },
        { "2099-12-31T23:59:59.999999999", "2099-12-31T23:59:59" },
        { "2099-12-31T23:59:59.", "2099-12-31T23:59:59" },
        { "2099-12-31T23:59Z", "2099-12-31T23:59:00" },
        { "2099-12-31T23:59:30.5+01:00", "2099-12-31T22:59:30" },
    } do
        it(("takes %s and stores %s (minutes only; a fraction dropped)"):format(case[1], case[2]),
            function()
                local out, err, code, stored = create_on(finally, "UTC", case[1])
                assert.same({ "", 0 }, { err, code })
                assert.equal("Expires on " .. case[2], created(out))
                assert.equal(case[2] .. "Z", stored)
            end)
    end

    it("refuses what Java refuses: 10 digits of fraction, a fraction without seconds, +YYYY, hours only",
        function()
            for _, date in ipairs { "2099-12-31T23:59:59.1234567890", "2099-12-31T23:59.5",
                "+2099-12-31T23:59", "2099-12-31T23", "2099-12-31T23:59:59,5", "2099-02-29T00:00" } do
                local out, err, code = create_on(finally, "UTC", date)
                assert.same({ "", 1 }, { out, code })
                assert.equal(("apikey: invalid date '%s': use YYYY-MM-DDThh:mm:ss (local time), "
                    .. "optionally followed by Z or +hh:mm, e.g. 2027-01-01T00:00:00\n"):format(date), err)
            end
        end)

    it("says that a date after 9999 is, instead of calling it malformed", function()
        for _, c in ipairs { { "UTC", "+10000-01-01T00:00" }, { "UTC", "10000-01-01T00:00:00" },
            { "UTC", "+999999999-12-31T23:59:59.999999999" }, { "UTC", "9999-12-31T23:59:59-00:01" },
            { "America/New_York", "9999-12-31T23:30" } } do
            local out, err, code = create_on(finally, c[1], c[2])
            assert.same({ "", 1 }, { out, code })
            assert.equal(("apikey: the date %s is after the year 9999; give an earlier date\n")
                :format(c[2]), err)
        end
        -- The last second the format holds is taken.
        local out, err, code, stored = create_on(finally, "UTC", "9999-12-31T23:59:59.5")
        assert.same({ "", 0 }, { err, code })
        assert.equal("Expires on 9999-12-31T23:59:59", created(out))
        assert.equal("9999-12-31T23:59:59Z", stored)
    end)

    it("says that a date before 1970 is in the past", function()
        local out, err, code = create_on(finally, "UTC", "1969-12-31T23:59")
        assert.same({ "", 1 }, { out, code })
        assert.equal("apikey: the date 1969-12-31T23:59 is in the past; give a later date\n", err)
    end)

    it("gives the Lua API the same dates: fractions dropped, 'invalid' after 9999", function()
        local ks <close> = assert(require("apikey").open { path = h.tmpdir(finally) .. "/ks.p12" })
        local _, entry = assert(ks:create("frac", { expires = "2099-06-01T12:00:30.75Z" }))
        assert.equal(h.utc_seconds("2099-06-01T12:00:30Z"), entry.expires)
        _, entry = assert(ks:create("mins", { expires = "2099-06-01T12:00Z" }))
        assert.equal(h.utc_seconds("2099-06-01T12:00:00Z"), entry.expires)
        local ok, msg, code = ks:create("late", { expires = "+10000-01-01T00:00" })
        assert.same({ nil, "invalid" }, { ok, code })
        assert.equal("the date +10000-01-01T00:00 is after the year 9999; give an earlier date", msg)
        assert.equal(TIME_MAX, require("apikey.core").parse_time("9999-12-31T23:59:59.999Z"))
        assert.same({ nil, "late" }, { require("apikey.core").parse_time("+10000-01-01T00:00Z") })
        assert.same({ nil, "early" }, { require("apikey.core").parse_time("1969-12-31T23:59Z") })
        assert.same({ nil, "malformed" }, { require("apikey.core").parse_time("2099-06-01") })
    end)

    for _, z in ipairs(ZONES) do
        describe("under TZ=" .. z.tz, function()
            before_each(function()
                if not zone_installed(z.tz) then
                    pending("needs tzdata (/usr/share/zoneinfo/" .. z.tz .. ")")
                end
            end)

            it("moves a local time in the spring gap forward by the gap, and prints it so", function()
                if not zone_installed(z.tz) then
                    return
                end
                local out, err, code, stored = create_on(finally, z.tz, z.gap .. "T" .. z.gap_at .. ":30")
                assert.same({ "", 0 }, { err, code })
                assert.equal("Expires on " .. z.gap_local, created(out))
                assert.equal(z.gap_utc, stored)
                -- With seconds and a fraction, the same instant.
                out, err, code, stored = create_on(finally, z.tz, z.gap .. "T" .. z.gap_at .. ":30:00.25")
                assert.same({ "", 0 }, { err, code })
                assert.equal("Expires on " .. z.gap_local, created(out))
                assert.equal(z.gap_utc, stored)
            end)

            it("takes the earlier offset for a local time in the autumn overlap", function()
                if not zone_installed(z.tz) then
                    return
                end
                local out, err, code, stored = create_on(finally, z.tz, z.overlap .. "T01:30")
                assert.same({ "", 0 }, { err, code })
                assert.equal("Expires on " .. z.overlap .. "T01:30:00", created(out))
                assert.equal(z.overlap_utc, stored)
            end)
        end)
    end
end)

-- Java 17's bin folder, or nil.
local function jdk17()
    local dir = h.capture("ls -d /usr/lib/jvm/java-17-openjdk-*/bin 2>/dev/null | head -n 1")
        :gsub("%s+$", "")
    if dir ~= "" and h.sh("test -x " .. h.quote(dir .. "/java")) == 0 then
        return dir
    end
    return nil
end

-- Dates around each change of both zones (every quarter hour from 00:00 to 03:45, with
-- seconds, fractions and minutes only), around the ends of the range, and forms Java refuses.
local function dates()
    local out = {}
    for _, day in ipairs { "2027-03-28", "2027-10-31", "2027-03-14", "2027-11-07",
        "2038-03-28", "2038-10-31", "2038-03-14", "2038-11-07", "2099-07-01" } do
        for hour = 0, 3 do
            for _, min in ipairs { "00", "15", "30", "45", "59" } do
                local hm = ("%sT%02d:%s"):format(day, hour, min)
                out[#out + 1] = hm
                out[#out + 1] = hm .. ":59.999999999"
                out[#out + 1] = hm .. ":00.5"
            end
        end
    end
    for _, d in ipairs { "1970-01-01T00:00", "1970-01-01T05:00:00", "1969-12-31T23:59:59",
        "9999-12-31T23:59:59", "9999-12-31T18:00", "+10000-01-01T00:00", "2099-12-31T23:59:59.",
        "2099-12-31T23:59:59.1234567890", "+2099-12-31T23:59", "2099-12-31T23", "2100-02-29T00:00",
        "2096-02-29T00:00", "2099-12-31T24:00", "2099-12-31_23:59", "10000-01-01T00:00", "2099-12-31t23:59" } do
        out[#out + 1] = d
    end
    return out
end

describe("local dates compared with Java 17's LocalDateTime.parse(s).atZone(zone)", function()
    local JDK = jdk17()

    it("gives the same second for every date Java takes in 1970..9999, and refuses the others", function()
        if not JDK then
            pending("needs Java 17 (openjdk-17-jdk-headless)")
            return
        end
        local classes = h.tmpdir(finally)
        local zones, list = {}, dates()
        for _, z in ipairs(ZONES) do
            if zone_installed(z.tz) then
                zones[#zones + 1] = z.tz
            end
        end
        assert(#zones > 0, "no zone with daylight saving installed (tzdata)")
        local argv = { JDK .. "/java", "-cp", classes, "JavaDates" }
        for _, tz in ipairs(zones) do
            argv[#argv + 1] = "@" .. tz
            table.move(list, 1, #list, #argv + 1, argv)
        end
        local _, err, code = h.exec({ JDK .. "/javac", "-d", classes, h.root .. "/tests/JavaDates.java" })
        assert.equal(0, code, err)
        local out
        out, err, code = h.exec(argv)
        assert.equal(0, code, err)
        local java = {}
        for zone, date, seconds in out:gmatch("([^\n ]+) ([^\n ]+) ([^\n ]+)\n") do
            java[zone .. " " .. date] = tonumber(seconds) or false
        end

        -- Ours, in a process of its own per zone (a process reads TZ once).
        local script = [[
            local parse = require("apikey.core").parse_time
            for date in io.lines() do
                local t, why = parse(date)
                print(date .. " " .. (t or why))
            end]]
        local compared, refused = 0, 0
        for _, tz in ipairs(zones) do
            out, err, code = h.exec({ h.lua, "-e", script },
                { TZ = tz, LUA_CPATH = h.prefix .. "/lib/lua/5.4/?.so;;" }, table.concat(list, "\n") .. "\n")
            assert.equal(0, code, err)
            local ours = {}
            for date, v in out:gmatch("([^\n ]+) ([^\n ]+)\n") do
                ours[date] = v
            end
            for _, date in ipairs(list) do
                local want, got = java[tz .. " " .. date], ours[date]
                assert(want ~= nil, "Java printed nothing for " .. tz .. " " .. date)
                if date == "2099-12-31t23:59" then
                    assert.equal("malformed", got) -- Java ignores case; the guide writes T
                elseif want and want >= 0 and want <= TIME_MAX and not date:match("^%+") then
                    assert.equal(tostring(want), got, tz .. " " .. date)
                    compared = compared + 1
                elseif want then
                    -- Java takes it, the format cannot hold it: before 1970 or after 9999.
                    assert.equal(want < 0 and "early" or "late", got, tz .. " " .. date)
                    refused = refused + 1
                elseif date == "10000-01-01T00:00" then
                    assert.equal("late", got) -- Java wants +10000; we say why it cannot be
                else
                    assert.equal("malformed", got, tz .. " " .. date)
                end
            end
        end
        assert.is_true(compared > 500 and refused >= 4, ("compared %d, refused %d"):format(compared, refused))
    end)
end)
