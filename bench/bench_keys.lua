-- bench_keys.lua: the keys a benchmark checks, shared by verify_bench.lua and ab_check.lua.
--
-- dofile(".../bench_keys.lua")(keys_file) -> valid, unknown: the valid keys of keys_file (one
-- a line, as gen_keystore writes them) in a shuffled order, each string made in that order, so
-- that entries are reached in no order (as a server's requests do) while the strings lie one
-- after another in memory (as a request just received is in cache); and as many random UUIDs
-- as there are valid keys, up to 4096, which no keystore holds.
return function(keys_file)
    local text = assert(io.open(keys_file)):read("a")
    local starts = {}
    for at in text:gmatch("()[^\n]+") do
        starts[#starts + 1] = at
    end
    math.randomseed(1)
    for i = #starts, 2, -1 do
        local j = math.random(i)
        starts[i], starts[j] = starts[j], starts[i]
    end
    local valid = {}
    for i, at in ipairs(starts) do
        valid[i] = text:sub(at, at + 35)
    end
    local unknown = {}
    for i = 1, math.min(#valid, 4096) do
        unknown[i] = ("%08x-%04x-4%03x-%04x-%012x"):format(math.random(0, 0xffffffff),
            math.random(0, 0xffff), math.random(0, 0xfff), 0x8000 | math.random(0, 0x3fff),
            math.random(0, 0xffffffffffff))
    end
    return valid, unknown
end
