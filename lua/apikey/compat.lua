--- apikey.compat: what the API modules use of Lua 5.4 that older Luas lack or do otherwise:
-- math.type (5.1, LuaJIT, has none), and the utf8 functions len, codepoint and codes, strict as
-- in 5.4 (no code point above U+10FFFF, no surrogate, no overlong form; 5.3's accept
-- surrogates and code points up to 2^31, 5.1 has no utf8). On 5.4 these are Lua's own.
local compat = { math = math, utf8 = utf8 }

if _VERSION == "Lua 5.4" then
    return compat
end

local floor, huge = math.floor, math.huge

-- 5.1 has one number type: a number is an integer when it has no fraction and is finite.
compat.math = math.type and math or setmetatable({
    type = function(x)
        if type(x) ~= "number" then
            return nil
        end
        return (x == floor(x) and x > -huge and x < huge) and "integer" or "float"
    end,
}, { __index = math })

-- The code point that starts at byte i of s and the index after it, or nil when the bytes
-- there are not UTF-8.
local function decode(s, i)
    local b = s:byte(i)
    if b == nil then
        return nil
    end
    if b < 0x80 then
        return b, i + 1
    end
    local n, c, min
    if b >= 0xF0 and b <= 0xF4 then
        n, c, min = 3, b - 0xF0, 0x10000
    elseif b >= 0xE0 and b <= 0xEF then
        n, c, min = 2, b - 0xE0, 0x800
    elseif b >= 0xC2 and b <= 0xDF then
        n, c, min = 1, b - 0xC0, 0x80
    else
        return nil
    end
    for j = i + 1, i + n do
        local cont = s:byte(j)
        if cont == nil or cont < 0x80 or cont > 0xBF then
            return nil
        end
        c = c * 64 + (cont - 0x80)
    end
    if c < min or c > 0x10FFFF or (c >= 0xD800 and c <= 0xDFFF) then
        return nil
    end
    return c, i + n + 1
end

local utf8 = {}
compat.utf8 = utf8

--- The number of code points in s, or nil and the position of the first invalid byte.
function utf8.len(s)
    local i, n = 1, 0
    while i <= #s do
        local _, next_i = decode(s, i)
        if not next_i then
            return nil, i
        end
        i, n = next_i, n + 1
    end
    return n
end

--- The code point at byte i of s (default 1); raises when it is not UTF-8.
function utf8.codepoint(s, i)
    local c = decode(s, i or 1)
    if not c then
        error("invalid UTF-8 code", 2)
    end
    return c
end

--- for position, code_point in utf8.codes(s): raises at the first invalid byte.
function utf8.codes(s)
    local i = 1
    return function()
        if i > #s then
            return nil
        end
        local at = i
        local c, next_i = decode(s, i)
        if not c then
            error("invalid UTF-8 code", 2)
        end
        i = next_i
        return at, c
    end
end

return compat
