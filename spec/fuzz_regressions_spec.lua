-- The fuzzers' seed corpus and every input that ever crashed a harness (fuzz/regressions/),
-- replayed through the harnesses built with ASan and UBSan but without libFuzzer
-- (fuzz/replay.sh): a bug the fuzzers found that comes back fails here. Needs a C compiler
-- with the sanitizer runtimes (gcc or clang) and the OpenSSL and libuuid headers.
local h = require "spec.helpers"

local HARNESSES = {
    record = "record_decode, and record_encode of what decodes",
    time = "time_parse_iso and time_parse_gentime",
    p12 = "p12_load, and p12_save of what loads",
    verify = "ks:verify and ks:authenticate through the Lua binding",
}

describe("fuzz regressions", function()
    local output, ok

    setup(function()
        local log = os.tmpname()
        -- The replay programs carry their own sanitizer runtime: nothing preloaded may come
        -- first (as under scripts/sanitize.sh).
        ok = os.execute(("env -u LD_PRELOAD sh %s/fuzz/replay.sh >%s 2>&1"):format(
            h.quote(h.root), h.quote(log)))
        output = h.read_file(log) or ""
        os.remove(log)
    end)

    for _, name in ipairs({ "record", "time", "p12", "verify" }) do
        it(("%s: every corpus and regression input passes (%s)"):format(name, HARNESSES[name]),
            function()
                local n = output:match("replay_" .. name .. ": (%d+) inputs replayed")
                assert(n and not output:find("replay: " .. name .. " FAILED", 1, true),
                    "fuzz/replay.sh " .. name .. " failed:\n" .. output)
                assert(tonumber(n) > 0, "no input replayed for " .. name)
            end)
    end

    it("replay.sh exits 0", function()
        assert(ok, "fuzz/replay.sh failed:\n" .. output)
    end)
end)
