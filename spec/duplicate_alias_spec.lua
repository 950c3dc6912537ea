-- A keystore another tool wrote with two API keys of one alias ("dup" and "DUP": the same
-- alias as Java compares them) beside a third key: read as it is, listed with both, and revoke
-- removes every key of that alias. spec/fixtures/dup_alias/make.py writes the file.
local h = require "spec.helpers"

local FIXTURE = (debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "./")
    .. "fixtures/dup_alias/dup-alias.p12"
local DUP1 = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a41"
local DUP2 = "0a9b8c7d-6e5f-4a3b-9c1d-2e3f4a5b6c72"
local OTHER = "1b2c3d4e-5f60-4718-a9b0-c1d2e3f4a583"

describe("a keystore holding two API keys of one alias", function()
    local path

    before_each(function()
        path = h.tmpdir(finally) .. "/ks.p12"
        h.write_file(path, assert(h.read_file(FIXTURE)), "600")
    end)

    it("is read as it is: list shows both, and each key verifies", function()
        local out, err, code = h.run({ "list", "--keystore", path })
        assert.same({ "", 0 }, { err, code })
        assert.same({ "dup ********************3a41 (No expiration)",
            "DUP ********************6c72 (No expiration)",
            "other ********************a583 (No expiration)" }, h.lines(out))
        local ks <close> = assert(require("apikey").open { path = path })
        for key, alias in pairs { [DUP1] = "dup", [DUP2] = "DUP", [OTHER] = "other" } do
            assert.equal(alias, assert(ks:verify(key)).alias)
        end
        assert.equal(3, #ks:list())
    end)

    it("revoke removes every key of that alias, whatever its case, and keeps the others", function()
        local out, err, code = h.run({ "revoke", "Dup", "--keystore", path })
        assert.same({ "", 0 }, { err, code })
        assert.equal("API key 'dup' has been revoked.\n", out)
        out, err, code = h.run({ "list", "--keystore", path })
        assert.same({ "", 0 }, { err, code })
        assert.same({ "other ********************a583 (No expiration)" }, h.lines(out))
        local ks <close> = assert(require("apikey").open { path = path })
        assert.same({ nil, "unknown" }, { ks:verify(DUP1) })
        assert.same({ nil, "unknown" }, { ks:verify(DUP2) })
        -- The alias is free again.
        assert(ks:create("dup"))
    end)
end)
