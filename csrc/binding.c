/*
 * binding.c: the Lua 5.4 binding, module `apikey.core`. Mechanism only: argument checks,
 * conversion between C and Lua values, and the Keystore userdata. Policy (defaults, alias
 * rules, date options, formatting) lives in lua/apikey/init.lua.
 *
 * Misuse (a wrong argument type, a closed keystore) raises; a failure the caller must handle
 * returns fail, message, code.
 */
#include "apikey.h"

#include <lauxlib.h>
#include <lua.h>
#include <openssl/crypto.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define KEYSTORE_MT "apikey.Keystore"
#define DEFAULT_ITERATIONS 2048
#define DEFAULT_LOCK_TIMEOUT_MS 10000

typedef struct {
    ak_keystore ks;
    int open;
} keystore_ud;

static keystore_ud *check_keystore(lua_State *L)
{
    keystore_ud *u = luaL_checkudata(L, 1, KEYSTORE_MT);
    luaL_argcheck(L, u->open, 1, "the keystore is closed");
    return u;
}

static const char *check_text(lua_State *L, int arg, size_t *len)
{
    const char *s = luaL_checklstring(L, arg, len);
    luaL_argcheck(L, strlen(s) == *len, arg, "contains a NUL byte");
    return s;
}

static int push_failure(lua_State *L, const ak_err *e)
{
    luaL_pushfail(L);
    lua_pushstring(L, e->msg);
    lua_pushstring(L, ak_code_name(e->code));
    return 3;
}

static void push_entry(lua_State *L, const ak_entry *en)
{
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, en->alias, en->alias_len);
    lua_setfield(L, -2, "alias");
    lua_pushstring(L, en->rec.hint);
    lua_setfield(L, -2, "hint");
    lua_pushinteger(L, (lua_Integer)en->rec.created);
    lua_setfield(L, -2, "created");
    if (en->rec.expires != AK_NO_EXPIRY) {
        lua_pushinteger(L, (lua_Integer)en->rec.expires);
        lua_setfield(L, -2, "expires");
    }
}

/* verify returns one table per entry, made on first use and kept in the userdata's user value
 * (so a server's hot path allocates nothing). Any change of content drops the cache. */
static void cache_reset(lua_State *L, int ud)
{
    lua_newtable(L);
    lua_setiuservalue(L, ud, 1);
}

static void push_cached_entry(lua_State *L, const keystore_ud *u, const ak_entry *en)
{
    lua_Integer i = (lua_Integer)(en - u->ks.entries.v) + 1;
    lua_getiuservalue(L, 1, 1);
    if (lua_rawgeti(L, -1, i) == LUA_TNIL) {
        lua_pop(L, 1);
        push_entry(L, en);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, i);
    }
    lua_remove(L, -2);
}

/* core.open(path [, password [, iterations [, lock_timeout_ms]]]) */
static int core_open(lua_State *L)
{
    size_t path_len, pass_len = 0;
    const char *path = check_text(L, 1, &path_len);
    const char *pass = lua_isnoneornil(L, 2) ? "" : luaL_checklstring(L, 2, &pass_len);
    lua_Integer iter = luaL_optinteger(L, 3, DEFAULT_ITERATIONS);
    lua_Integer timeout = luaL_optinteger(L, 4, DEFAULT_LOCK_TIMEOUT_MS);
    keystore_ud *u;
    ak_err e;

    luaL_argcheck(L, path_len > 0, 1, "empty path");
    /* No more than p12_load accepts: a file written with more could not be read again. */
    if (iter < 1 || iter > AK_ITER_MAX)
        return luaL_argerror(
            L, 3, lua_pushfstring(L, "iterations out of range (1 to %d)", (int)AK_ITER_MAX));
    luaL_argcheck(L, timeout >= 0 && timeout <= 86400000, 4, "lock timeout out of range");
    /* The userdata exists, marked closed, before the resources it will own. */
    u = lua_newuserdatauv(L, sizeof *u, 1);
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, KEYSTORE_MT);
    cache_reset(L, -2);
    if (keystore_open(&u->ks, path, pass, pass_len, (int)iter, (int)timeout, &e) != 0)
        return push_failure(L, &e);
    u->open = 1;
    return 1;
}

/* After a change that was made but not confirmed on disk, pushes the warning and returns 1. */
static int push_warning(lua_State *L, const keystore_ud *u)
{
    if (!u->ks.warned)
        return 0;
    lua_pushstring(L, u->ks.warning.msg);
    return 1;
}

/* ks:create(alias, created [, expires]) -> key, entry [, warning] */
static int keystore_create_l(lua_State *L)
{
    keystore_ud *u = check_keystore(L);
    size_t alias_len, index = 0;
    const char *alias = luaL_checklstring(L, 2, &alias_len);
    lua_Integer created = luaL_checkinteger(L, 3);
    lua_Integer expires = lua_isnoneornil(L, 4) ? AK_NO_EXPIRY : luaL_checkinteger(L, 4);
    char key[AK_KEY_LEN + 1];
    ak_err e;

    if (keystore_create(&u->ks, alias, alias_len, created, expires, key, &index, &e) != 0)
        return push_failure(L, &e);
    cache_reset(L, 1);
    lua_pushlstring(L, key, AK_KEY_LEN);
    OPENSSL_cleanse(key, sizeof key);
    push_entry(L, &u->ks.entries.v[index]);
    return 2 + push_warning(L, u);
}

/* ks:revoke(alias) -> true [, warning] */
static int keystore_revoke_l(lua_State *L)
{
    keystore_ud *u = check_keystore(L);
    size_t alias_len;
    const char *alias = luaL_checklstring(L, 2, &alias_len);
    ak_err e;

    if (keystore_revoke(&u->ks, alias, alias_len, &e) != 0)
        return push_failure(L, &e);
    cache_reset(L, 1);
    lua_pushboolean(L, 1);
    return 1 + push_warning(L, u);
}

/* ks:list() -> { entry, ... } in creation order; fresh tables the caller may change */
static int keystore_list_l(lua_State *L)
{
    keystore_ud *u = check_keystore(L);
    lua_createtable(L, (int)u->ks.entries.n, 0);
    for (size_t i = 0; i < u->ks.entries.n; i++) {
        push_entry(L, &u->ks.entries.v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int push_verdict(lua_State *L, const keystore_ud *u, ak_verdict v, const ak_entry *en)
{
    static const char *const reasons[] = {"valid", "unknown", "expired", "malformed"};
    if (v == AK_VALID) {
        push_cached_entry(L, u, en);
        return 1;
    }
    luaL_pushfail(L);
    lua_pushstring(L, reasons[v]);
    return 2;
}

/* ks:verify(key [, now]) -> entry | fail, "unknown" | "expired" | "malformed".
 * The entry is shared between calls: treat it as read-only. */
static int keystore_verify_l(lua_State *L)
{
    keystore_ud *u = check_keystore(L);
    size_t len;
    const char *key = luaL_checklstring(L, 2, &len);
    int64_t now = lua_isnoneornil(L, 3) ? (int64_t)time(NULL) : (int64_t)luaL_checkinteger(L, 3);
    const ak_entry *en;
    ak_verdict v = keystore_verify(&u->ks, key, len, now, &en);

    return push_verdict(L, u, v, en);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* The token of an Authorization value: "Bearer" in any case, one or more blanks, a token
 * without blanks, then only blanks (RFC 6750 section 2.1, with surrounding blanks allowed);
 * NULL when it is not of that form. Parsed here, in one pass, rather than with a Lua pattern:
 * it runs on every request of a server. */
static const char *bearer_token(const char *s, size_t len, size_t *tlen)
{
    const char *end = s + len, *tok;
    while (s < end && is_blank(*s))
        s++;
    if (end - s < 7 || strncasecmp(s, "bearer", 6) != 0 || !is_blank(s[6]))
        return NULL;
    s += 7;
    while (s < end && is_blank(*s))
        s++;
    tok = s;
    while (s < end && !is_blank(*s))
        s++;
    *tlen = (size_t)(s - tok);
    while (s < end && is_blank(*s))
        s++;
    return (*tlen > 0 && s == end) ? tok : NULL;
}

/* ks:authenticate(header) -> entry | fail, "missing" | "unknown" | "expired" | "malformed".
 * header is an Authorization value, or nil. */
static int keystore_authenticate_l(lua_State *L)
{
    keystore_ud *u = check_keystore(L);
    size_t len, tlen = 0;
    const char *header = lua_isnil(L, 2) ? NULL : luaL_checklstring(L, 2, &len);
    const char *token = header != NULL ? bearer_token(header, len, &tlen) : NULL;
    const ak_entry *en;
    ak_verdict v;

    if (token == NULL) {
        luaL_pushfail(L);
        lua_pushliteral(L, "missing");
        return 2;
    }
    v = keystore_verify(&u->ks, token, tlen, (int64_t)time(NULL), &en);
    return push_verdict(L, u, v, en);
}

/* ks:refresh() -> changed; on failure the last good content stays loaded */
static int keystore_refresh_l(lua_State *L)
{
    keystore_ud *u = check_keystore(L);
    int changed = 0;
    ak_err e;

    if (keystore_refresh(&u->ks, &changed, &e) != 0)
        return push_failure(L, &e);
    if (changed)
        cache_reset(L, 1);
    lua_pushboolean(L, changed);
    return 1;
}

static int keystore_count_l(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_keystore(L)->ks.entries.n);
    return 1;
}

static int keystore_path_l(lua_State *L)
{
    lua_pushstring(L, check_keystore(L)->ks.path);
    return 1;
}

/* close, __gc and __close: safe to call more than once */
static int keystore_close_l(lua_State *L)
{
    keystore_ud *u = luaL_checkudata(L, 1, KEYSTORE_MT);
    if (u->open) {
        u->open = 0;
        keystore_close(&u->ks);
    }
    return 0;
}

static int keystore_tostring_l(lua_State *L)
{
    keystore_ud *u = luaL_checkudata(L, 1, KEYSTORE_MT);
    if (u->open)
        lua_pushfstring(L, "apikey keystore (%s)", u->ks.path);
    else
        lua_pushliteral(L, "apikey keystore (closed)");
    return 1;
}

/* core.parse_time(text) -> Unix seconds | fail */
static int core_parse_time(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    int64_t t;
    if (time_parse_iso(s, len, &t) != 0) {
        luaL_pushfail(L);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)t);
    return 1;
}

static int push_time(lua_State *L, void (*format)(int64_t, char *, size_t))
{
    char buf[64];
    format((int64_t)luaL_checkinteger(L, 1), buf, sizeof buf);
    lua_pushstring(L, buf);
    return 1;
}

static int core_format_local(lua_State *L)
{
    return push_time(L, time_format_local);
}

static int core_format_utc(lua_State *L)
{
    return push_time(L, time_format_utc);
}

/* core.clock() -> seconds (float) of a monotonic clock, for reload intervals */
static int core_clock(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

static const luaL_Reg keystore_methods[] = {{"create", keystore_create_l},
                                            {"revoke", keystore_revoke_l},
                                            {"list", keystore_list_l},
                                            {"verify", keystore_verify_l},
                                            {"authenticate", keystore_authenticate_l},
                                            {"refresh", keystore_refresh_l},
                                            {"count", keystore_count_l},
                                            {"path", keystore_path_l},
                                            {"close", keystore_close_l},
                                            {NULL, NULL}};

static const luaL_Reg keystore_meta[] = {{"__gc", keystore_close_l},
                                         {"__close", keystore_close_l},
                                         {"__tostring", keystore_tostring_l},
                                         {"__index", NULL},
                                         {NULL, NULL}};

static const luaL_Reg core_functions[] = {{"open", core_open},
                                          {"parse_time", core_parse_time},
                                          {"format_local", core_format_local},
                                          {"format_utc", core_format_utc},
                                          {"clock", core_clock},
                                          {NULL, NULL}};

int luaopen_apikey_core(lua_State *L)
{
    luaL_newmetatable(L, KEYSTORE_MT);
    luaL_setfuncs(L, keystore_meta, 0);
    luaL_newlib(L, keystore_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, core_functions);
    lua_pushliteral(L, APIKEY_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
