-- Key generation: a key is 16 bytes from OpenSSL's RAND_bytes with the UUID v4 version and
-- variant bits set, in lower case. When the random source fails, create fails with one clear
-- line and exit 1, prints no key, and leaves the keystore as it was: no key is ever made from
-- a weaker source. The failures are injected with an LD_PRELOAD shim (tests/randshim.c).
local h = require "spec.helpers"

-- The code a generator failure returns in the Lua API.
local GENERATOR_CODE = "crypto"
local GENERATOR_FAILED = "cannot make a new key: the random generator failed"

-- The repository's root, from this file's own path (spec/keygen_spec.lua).
local root = debug.getinfo(1, "S").source:match("^@(.-)spec/keygen_spec%.lua$") or ""
root = root == "" and "." or root:gsub("/$", "")

-- The 32 hex digits of a key, without its dashes.
local function digits(key)
    return (key:gsub("%-", ""))
end

-- The 122 random bits of a key, as a string of "0" and "1": every bit but the version nibble
-- (digit 13, always 4) and the variant's two high bits (digit 17, always 10xx).
local function random_bits(key)
    local bits = {}
    local hex = digits(key)
    for i = 1, 32 do
        local v = tonumber(hex:sub(i, i), 16)
        local from = (i == 17) and 1 or 3
        if i ~= 13 then
            for b = from, 0, -1 do
                bits[#bits + 1] = ((v >> b) & 1 == 1) and "1" or "0"
            end
        end
    end
    return table.concat(bits)
end

local function assert_v4(key)
    assert.is_truthy(key:match("^" .. h.UUID .. "$"), "not a lower-case UUID v4: " .. key)
    assert.equal(122, #random_bits(key))
end

-- Among keys made one after the other, the random bits of any two have no common prefix of 32
-- bits or more (chance 2^-32 a pair), and agree in at most 97 of their 122 bits (mean 61,
-- standard deviation 5.5; more has a chance of 4e-12 a pair); with 64 keys or more, no bit is
-- the same in every key (chance 2^-63 a bit). Keys from a generator seeded with the time, the
-- pid and the uid share about 96 of their 128 bits.
local function assert_independent(keys)
    local bits = {}
    for i, key in ipairs(keys) do
        assert_v4(key)
        bits[i] = random_bits(key)
    end
    local seen = {}
    for i = 1, #bits do
        assert.is_nil(seen[bits[i]], "the same key twice: " .. keys[i])
        seen[bits[i]] = true
        for j = i + 1, #bits do
            local a, b = bits[i], bits[j]
            local prefix = 0
            while prefix < 122 and a:byte(prefix + 1) == b:byte(prefix + 1) do
                prefix = prefix + 1
            end
            assert.is_true(prefix < 32, ("keys %d and %d share their first %d random bits: %s %s")
                :format(i, j, prefix, keys[i], keys[j]))
            local same = 0
            for k = 1, 122 do
                if a:byte(k) == b:byte(k) then
                    same = same + 1
                end
            end
            assert.is_true(same <= 97, ("keys %d and %d agree in %d of their 122 random bits: %s %s")
                :format(i, j, same, keys[i], keys[j]))
        end
    end
    for k = 1, #bits >= 64 and 122 or 0 do
        local ones = 0
        for i = 1, #bits do
            if bits[i]:byte(k) == 49 then
                ones = ones + 1
            end
        end
        assert.is_true(ones > 0 and ones < #bits, ("random bit %d is %d in every key"):format(k,
            ones > 0 and 1 or 0))
    end
end

-- The names in a folder and each file's bytes: what "unchanged" compares.
local function snapshot(dir)
    local out = {}
    local listing = h.capture("ls -A " .. h.quote(dir))
    for name in listing:gmatch("[^\n]+") do
        out[name] = h.read_file(dir .. "/" .. name) or "(not a file)"
    end
    return out
end

describe("key generation", function()
    local shimdir, shim

    setup(function()
        shimdir = h.tmpdir()
        shim = shimdir .. "/randshim.so"
        local cmd = ("%s -shared -fPIC -O1 -Wall -Wextra -Werror -o %s %s -ldl 2>&1"):format(
            os.getenv("CC") or "cc", h.quote(shim), h.quote(root .. "/tests/randshim.c"))
        local out = h.capture(cmd .. "; echo \"exit $?\"")
        assert(out:match("exit 0\n$"), "cannot build tests/randshim.c: " .. out)
    end)

    teardown(function()
        h.remove(shimdir)
    end)

    -- Runs argv (a list) with a fault of the shim and env's changes; returns stdout, stderr,
    -- exit code and the faults injected (a list of function names).
    local function with_fault(argv, fault, env)
        local log = shimdir .. "/faults.log"
        os.remove(log)
        local preload = os.getenv("LD_PRELOAD")
        preload = (preload and preload ~= "") and (preload .. ":" .. shim) or shim
        local vars = { LD_PRELOAD = preload, APIKEY_RAND_FAULT = fault, APIKEY_RAND_LOG = log,
            NO_COLOR = "1" }
        for k, v in pairs(env or {}) do
            vars[k] = v
        end
        local out, err, code = h.exec(argv, vars)
        return out, err, code, h.lines(h.read_file(log) or "")
    end

    -- `apikey create new` on a keystore holding one key ("old"), with a fault. Returns stdout,
    -- stderr, exit code, the faults injected, the keystore, the old key, and the keystore's
    -- folder as it was before.
    local function create_with_fault(fault)
        local dir = h.tmpdir(finally)
        local ks = dir .. "/keys.p12"
        local old = h.create(ks, "old")
        local before = snapshot(dir)
        local out, err, code, faults = with_fault({ "lua5.4", h.bin, "create", "new",
            "--keystore", ks }, fault)
        assert.same(before, snapshot(dir))
        return out, err, code, faults, ks, old
    end

    local function show(out, err, code)
        return ("exit %s, stdout %q, stderr %q"):format(tostring(code), out, err)
    end

    -- A failed create: exit 1, nothing on stdout, one line naming the generator's failure.
    local function assert_generator_failed(out, err, code)
        assert.equal(1, code, show(out, err, code))
        assert.equal("", out, show(out, err, code))
        assert.is_truthy(err:match("^apikey: [^\n]+\n$"), "not one line: " .. show(out, err, code))
        assert.is_truthy(err:find(GENERATOR_FAILED, 1, true), show(out, err, code))
        assert.is_falsy(err:find("%x%x%x%x%x%x%x%x%-%x%x%x%x%-"), "a key in the error: " .. err)
    end

    it("makes lower-case UUID v4 keys whose random bits are independent, in one process",
        function()
            local dir = h.tmpdir(finally)
            local script = [[
                local apikey = require "apikey"
                local ks <close> = assert(apikey.open { path = os.getenv("KEYSTORE") })
                for i = 1, 100 do
                    print((assert(ks:create("k" .. i))))
                end
            ]]
            local out, err, code = h.exec({ "lua5.4", "-e", script },
                { KEYSTORE = dir .. "/keys.p12" })
            assert.equal(0, code, show(out, err, code))
            local keys = h.lines(out)
            assert.equal(100, #keys)
            assert_independent(keys)
        end)

    it("makes independent keys in processes run one after the other", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/keys.p12"
        local keys = {}
        for i = 1, 16 do
            keys[i] = h.create(ks, "k" .. i)
        end
        assert_independent(keys)
        for i, key in ipairs(keys) do
            local out, err, code = h.run({ "verify", key, "--keystore", ks })
            assert.equal("k" .. i .. "\n", out, show(out, err, code))
        end
    end)

    -- OpenSSL 3.0 seeds its generator in providers/implementations/rands/seeding/rand_unix.c,
    -- ossl_pool_acquire_entropy: first syscall_random(), which calls getentropy() and gives up
    -- on any error but ENOSYS (then it tries syscall(SYS_getrandom)); then /dev/urandom, but
    -- only when wait_random_seeded() agrees, which on Linux 4.8 and later it does not (unless a
    -- process on an older kernel left its shared-memory mark). The CPU sources (RDRAND, TSC)
    -- are not in the default build. So with the kernel's getrandom refused, OpenSSL has no
    -- entropy, its generator does not instantiate, and RAND_bytes fails: the create must fail.
    for _, err_name in ipairs({ "EPERM", "EAGAIN", "ENOSYS" }) do
        it(("fails cleanly when getrandom fails with %s, keystore unchanged"):format(err_name),
            function()
                local out, err, code, faults, ks, old = create_with_fault("getrandom:" .. err_name)
                assert.is_true(#faults >= 1, "no fault injected: " .. show(out, err, code))
                assert_generator_failed(out, err, code)
                -- Without the fault the same create works, and the old key still does.
                local key = h.create(ks, "new")
                assert_v4(key)
                out, err, code = h.run({ "verify", old, "--keystore", ks })
                assert.equal("old\n", out, show(out, err, code))
            end)
    end

    it("fails cleanly when RAND_bytes fails: exit 1, one line, no key, keystore unchanged",
        function()
            local out, err, code, faults, ks, old = create_with_fault("RAND_bytes")
            assert.same({ "RAND_bytes" }, faults)
            assert_generator_failed(out, err, code)
            out, err, code = h.run({ "list", "--keystore", ks })
            assert.equal(1, #h.lines(out), show(out, err, code))
            out, err, code = h.run({ "verify", old, "--keystore", ks })
            assert.equal("old\n", out, show(out, err, code))
        end)

    it("a first create whose generator fails leaves no keystore, lock or folder", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/sub/keys.p12"
        for _, fault in ipairs({ "RAND_bytes", "getrandom:EPERM" }) do
            local out, err, code = with_fault({ "lua5.4", h.bin, "create", "first", "--keystore",
                ks }, fault)
            assert_generator_failed(out, err, code)
            assert.same({}, snapshot(dir))
        end
    end)

    it("the Lua API returns nil, a message and a code, and no key", function()
        local dir = h.tmpdir(finally)
        local ks = dir .. "/keys.p12"
        h.create(ks, "old")
        local before = h.read_file(ks)
        local script = [[
            local apikey = require "apikey"
            local ks <close> = assert(apikey.open { path = os.getenv("KEYSTORE") })
            local key, msg, code = ks:create("new")
            print(tostring(key), code, msg, ks:count())
        ]]
        local out, err, code = with_fault({ "lua5.4", "-e", script }, "RAND_bytes",
            { KEYSTORE = ks })
        assert.equal(0, code, show(out, err, code))
        local key, got_code, msg, count = out:match("^(%S+)\t(%S+)\t([^\t]*)\t(%d+)\n$")
        assert.equal("nil", key, show(out, err, code))
        assert.equal(GENERATOR_CODE, got_code)
        assert.is_truthy(msg:find(GENERATOR_FAILED, 1, true), msg)
        assert.equal("1", count)
        assert.is_true(h.read_file(ks) == before, "the keystore changed")
    end)
end)
