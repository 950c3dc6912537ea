/*
 * fuzz_verify.c: what a server does with every request, through the Lua binding as the
 * verifier calls it: ks:authenticate(header) on an Authorization value, and ks:verify(key).
 *
 * The keystore holds three keys with known text: valid, expired, and valid until 9999. An
 * independent oracle says what each input must give: a value that is not "Bearer", blanks,
 * one token, blanks gives "missing"; a token (or key) that is not the UUID text form, in any
 * case, gives "malformed"; one of the three keys gives its entry (or "expired"); any other
 * UUID gives "unknown". Checks, besides memory safety and leaks: the binding agrees with the
 * oracle on every input, and an entry it returns is the right alias.
 */
#include "apikey.h"

#include <ctype.h>
#include <lauxlib.h>
#include <lua.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HARNESS "fuzz_verify"
#include "fuzz.h"

int luaopen_apikey_core(lua_State *L);

#define NOW INT64_C(1800000000) /* 2027-01-15, the time ks:verify is given */

static const struct {
    const char *alias, *key;
    int64_t expires;
} keys[] = {
    {"valid", "6f1d2c3b-4a59-4e8d-9c7b-1a2b3c4d5e6f", AK_NO_EXPIRY},
    {"expired", "0a0b0c0d-0e0f-4a1b-8c2d-3e4f5a6b7c8d", INT64_C(1767225601)},
    {"until-9999", "ffffffff-ffff-4fff-bfff-ffffffffffff", AK_TIME_MAX},
};
#define NKEYS (sizeof keys / sizeof keys[0])

static lua_State *L;
static int ks_ref;
static char dir[64], path[96];

static void cleanup(void)
{
    if (L != NULL)
        lua_close(L);
    unlink(path);
    snprintf(path, sizeof path, "%s/keys.p12.lock", dir);
    unlink(path);
    rmdir(dir);
}

static void write_keystore(void)
{
    ak_entries es = {0};
    unsigned char *der;
    size_t len;
    ak_err e;
    FILE *f;

    for (size_t i = 0; i < NKEYS; i++) {
        ak_record r;
        unsigned int n;
        memset(&r, 0, sizeof r);
        CHECK(EVP_Digest(keys[i].key, AK_KEY_LEN, r.hash, &n, EVP_sha256(), NULL) == 1, "hash");
        memcpy(r.hint, keys[i].key + AK_KEY_LEN - AK_HINT_LEN, AK_HINT_LEN);
        r.created = INT64_C(1767225600);
        r.expires = keys[i].expires;
        CHECK(entries_push(&es, keys[i].alias, strlen(keys[i].alias), &r, &e) == 0, "%s", e.msg);
    }
    CHECK(p12_save(&es, NULL, "", 0, 1, &der, &len, &e) == 0, "%s", e.msg);
    entries_clear(&es);
    f = fopen(path, "wb");
    CHECK(f != NULL && fwrite(der, 1, len, f) == len && fclose(f) == 0, "cannot write %s", path);
    OPENSSL_free(der);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    strcpy(dir, "/tmp/apikey-fuzz-verify.XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/keys.p12", dir);
    atexit(cleanup);
    write_keystore();

    L = luaL_newstate();
    CHECK(L != NULL, "lua");
    luaL_requiref(L, "apikey.core", luaopen_apikey_core, 0);
    lua_getfield(L, -1, "open");
    lua_pushstring(L, path);
    lua_pushliteral(L, "");
    lua_pushinteger(L, 1);
    lua_pushinteger(L, 0);
    CHECK(lua_pcall(L, 4, 2, 0) == LUA_OK && lua_isuserdata(L, -2), "core.open: %s",
          lua_tostring(L, -1));
    lua_pop(L, 1);
    ks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    return 0;
}

/* The oracle. Which key s is (0..NKEYS-1), NKEYS for another UUID, -1 if not a UUID's text. */
static int oracle_key(const char *s, size_t n)
{
    char lower[AK_KEY_LEN + 1];
    if (n != AK_KEY_LEN)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return -1;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return -1;
        }
        lower[i] = (char)tolower(c);
    }
    lower[n] = '\0';
    for (size_t k = 0; k < NKEYS; k++)
        if (strcmp(lower, keys[k].key) == 0)
            return (int)k;
    return NKEYS;
}

static int blank(char c)
{
    return c == ' ' || c == '\t';
}

/* The token of "Bearer <token>" with blanks around; NULL if the value is not of that form. */
static const char *oracle_bearer(const char *s, size_t n, size_t *tlen)
{
    size_t a = 0, b = n, t;
    while (a < b && blank(s[a]))
        a++;
    while (b > a && blank(s[b - 1]))
        b--;
    if (b - a < 8 || !blank(s[a + 6]))
        return NULL;
    for (int i = 0; i < 6; i++)
        if (tolower((unsigned char)s[a + i]) != "bearer"[i])
            return NULL;
    for (t = a + 6; blank(s[t]); t++)
        ;
    for (size_t i = t; i < b; i++)
        if (blank(s[i]))
            return NULL;
    *tlen = b - t;
    return s + t;
}

/* Expected result of a verify of key at time now: the alias, or NULL and the reason. */
static const char *expect(const char *key, size_t n, int64_t now, const char **why)
{
    int k = oracle_key(key, n);
    *why = NULL;
    if (k < 0)
        *why = "malformed";
    else if (k == NKEYS)
        *why = "unknown";
    else if (keys[k].expires != AK_NO_EXPIRY && keys[k].expires <= now)
        *why = "expired";
    return *why == NULL ? keys[k].alias : NULL;
}

/* Compares the results of a call (at the top: 1 or 2 values) with what was expected. */
static void check_result(int nres, const char *alias, const char *why, const char *what)
{
    if (alias != NULL) {
        CHECK(nres >= 1 && lua_istable(L, -nres), "%s: no entry, expected '%s'", what, alias);
        lua_getfield(L, -nres, "alias");
        CHECK(lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), alias) == 0,
              "%s: entry of '%s', expected '%s'", what, lua_tostring(L, -1), alias);
        lua_pop(L, 1);
    } else {
        CHECK(nres == 2 && lua_isnil(L, -2) && lua_isstring(L, -1), "%s: expected fail, %s", what,
              why);
        CHECK(strcmp(lua_tostring(L, -1), why) == 0, "%s: '%s', expected '%s'", what,
              lua_tostring(L, -1), why);
    }
}

static int call(const char *method, const unsigned char *data, size_t size, int with_now)
{
    int top = lua_gettop(L), nargs = with_now ? 3 : 2;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ks_ref);
    lua_getfield(L, -1, method);
    lua_insert(L, -2);
    lua_pushlstring(L, (const char *)data, size);
    if (with_now)
        lua_pushinteger(L, (lua_Integer)NOW);
    CHECK(lua_pcall(L, nargs, LUA_MULTRET, 0) == LUA_OK, "ks:%s raised: %s", method,
          lua_tostring(L, -1));
    return lua_gettop(L) - top;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *s = (const char *)data, *alias, *why, *token;
    size_t tlen = 0;
    int n;

    n = call("verify", data, size, 1);
    alias = expect(s, size, NOW, &why);
    check_result(n, alias, why, "verify");
    lua_settop(L, 0);

    n = call("authenticate", data, size, 0);
    token = oracle_bearer(s, size, &tlen);
    if (token == NULL) {
        alias = NULL;
        why = "missing";
    } else {
        alias = expect(token, tlen, (int64_t)time(NULL), &why);
    }
    check_result(n, alias, why, "authenticate");
    lua_settop(L, 0);
    return 0;
}
