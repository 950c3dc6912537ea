/*
 * pgstore_lua.c: the store's part of module apikey.core: the apikey.Store userdata, with the
 * methods of a keystore that make sense for a table (list, revoke, revoke_key, verify, warning,
 * close; lua/apikey/store.lua adds create and rotate with the API's policy) and those of `apikey
 * sync` (listen, wait, sync_to). As binding.c: misuse raises, a failure returns fail, message,
 * code.
 */
#include "pgstore.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <openssl/crypto.h>
#include <string.h>
#include <time.h>

#define STORE_MT "apikey.Store"

typedef struct {
    ak_store *st; /* NULL once closed */
} store_ud;

static ak_store *check_store(lua_State *L, const char *fname)
{
    store_ud *u = luaL_testudata(L, 1, STORE_MT);
    if (u == NULL)
        luaL_error(L, "bad argument #1 to '%s' (apikey store expected, got %s)", fname,
                   luaL_typename(L, 1));
    else if (u->st == NULL)
        luaL_error(L, "bad argument #1 to '%s' (the store is closed)", fname);
    return u->st;
}

static const char *check_string(lua_State *L, int arg, size_t *len)
{
    luaL_checktype(L, arg, LUA_TSTRING);
    return lua_tolstring(L, arg, len);
}

static int fail(lua_State *L, const ak_err *e)
{
    luaL_pushfail(L);
    lua_pushstring(L, e->msg);
    lua_pushstring(L, ak_code_name(e->code));
    return 3;
}

/* core.store_open(conninfo) -> store | fail, message, code */
static int core_store_open(lua_State *L)
{
    size_t len;
    const char *conninfo = check_string(L, 1, &len);
    store_ud *u;
    ak_err e;

    luaL_argcheck(L, strlen(conninfo) == len, 1, "contains a NUL byte");
    u = lua_newuserdatauv(L, sizeof *u, 0);
    u->st = NULL;
    luaL_setmetatable(L, STORE_MT);
    if (store_open(&u->st, conninfo, &e) != 0)
        return fail(L, &e);
    return 1;
}

/* core.store_create(store, alias, created [, expires [, scopes]]) -> key, entry; scopes: the
 * names joined by commas, or nil for full access */
static int core_store_create(lua_State *L)
{
    ak_store *st = check_store(L, "create");
    size_t alias_len, scopes_len;
    const char *alias = check_string(L, 2, &alias_len);
    lua_Integer created = luaL_checkinteger(L, 3);
    lua_Integer expires = lua_isnoneornil(L, 4) ? AK_NO_EXPIRY : luaL_checkinteger(L, 4);
    const char *scopes = lua_isnoneornil(L, 5) ? NULL : check_string(L, 5, &scopes_len);
    char key[AK_KEY_LEN + 1];
    ak_entries row = {0};
    ak_err e;

    luaL_argcheck(L, scopes == NULL || strlen(scopes) == scopes_len, 5, "contains a NUL byte");
    if (store_create(st, alias, alias_len, created, expires, scopes, key, &row, &e) != 0) {
        entries_clear(&row);
        return fail(L, &e);
    }
    lua_pushlstring(L, key, AK_KEY_LEN);
    OPENSSL_cleanse(key, sizeof key);
    binding_push_entry(L, &row.v[0], created);
    entries_clear(&row);
    return 2;
}

/* st:revoke(alias) -> true, the alias as stored; st:revoke_key(key) -> the alias of the row that
 * the key belongs to (its key or its previous key). Either removes the alias's row. */
static int revoke_by(lua_State *L, const char *fname,
                     int (*revoke)(ak_store *, const char *, size_t, char *, size_t *, ak_err *))
{
    ak_store *st = check_store(L, fname);
    size_t len, stored_len = 0;
    const char *text = check_string(L, 2, &len);
    char stored[AK_ALIAS_MAX + 1];
    ak_err e;
    int by_key = revoke == store_revoke_key;

    if (revoke(st, text, len, stored, &stored_len, &e) != 0)
        return fail(L, &e);
    if (!by_key)
        lua_pushboolean(L, 1);
    lua_pushlstring(L, stored, stored_len);
    return by_key ? 1 : 2;
}

static int store_revoke_l(lua_State *L)
{
    return revoke_by(L, "revoke", store_revoke);
}

static int store_revoke_key_l(lua_State *L)
{
    return revoke_by(L, "revoke_key", store_revoke_key);
}

/* core.store_rotate(store, alias, now, grace_end, keep_expiry [, expires]) -> key, entry, old
 * entry: the mechanism under st:rotate (see store_rotate). */
static int core_store_rotate(lua_State *L)
{
    ak_store *st = check_store(L, "rotate");
    size_t alias_len;
    const char *alias = check_string(L, 2, &alias_len);
    lua_Integer now = luaL_checkinteger(L, 3);
    lua_Integer grace_end = luaL_checkinteger(L, 4);
    int keep = lua_toboolean(L, 5);
    lua_Integer expires = lua_isnoneornil(L, 6) ? AK_NO_EXPIRY : luaL_checkinteger(L, 6);
    char key[AK_KEY_LEN + 1];
    ak_entries rows = {0};
    ak_err e;

    if (store_rotate(st, alias, alias_len, now, grace_end, keep, expires, key, &rows, &e) != 0) {
        entries_clear(&rows);
        return fail(L, &e);
    }
    lua_pushlstring(L, key, AK_KEY_LEN);
    OPENSSL_cleanse(key, sizeof key);
    binding_push_entry(L, &rows.v[0], now);
    binding_push_entry(L, &rows.v[1], now);
    entries_clear(&rows);
    return 3;
}

/* core.store_unrotate(store, key, created [, expires]) -> true: undoes the rotate that made key
 * (nobody saw it); created and expires: the previous key's, from rotate's old entry. */
static int core_store_unrotate(lua_State *L)
{
    ak_store *st = check_store(L, "unrotate");
    size_t len;
    const char *key = check_string(L, 2, &len);
    lua_Integer created = luaL_checkinteger(L, 3);
    lua_Integer expires = lua_isnoneornil(L, 4) ? AK_NO_EXPIRY : luaL_checkinteger(L, 4);
    ak_err e;

    if (store_unrotate(st, key, len, created, expires, &e) != 0)
        return fail(L, &e);
    lua_pushboolean(L, 1);
    return 1;
}

/* st:list() -> { entry, ... } in creation order */
static int store_list_l(lua_State *L)
{
    ak_store *st = check_store(L, "list");
    int64_t now = (int64_t)time(NULL);
    ak_entries rows = {0};
    ak_err e;

    if (store_read(st, &rows, &e) != 0) {
        entries_clear(&rows);
        return fail(L, &e);
    }
    lua_createtable(L, rows.n > INT32_MAX ? 0 : (int)rows.n, 0);
    for (size_t i = 0; i < rows.n; i++) {
        binding_push_entry(L, &rows.v[i], now);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    entries_clear(&rows);
    return 1;
}

/* st:verify(key [, now]) -> entry | fail, "unknown" | "expired" | "malformed";
 * fail, message, code when the store failed */
static int store_verify_l(lua_State *L)
{
    static const char *const reasons[] = {"valid", "unknown", "expired", "malformed"};
    ak_store *st = check_store(L, "verify");
    size_t len;
    const char *key = check_string(L, 2, &len);
    int64_t now = (int64_t)time(NULL);
    ak_entries row = {0};
    ak_verdict v;
    ak_err e;

    if (!lua_isnoneornil(L, 3)) {
        luaL_argcheck(L, lua_isinteger(L, 3), 3, "now must be an integer Unix time");
        now = (int64_t)lua_tointeger(L, 3);
    }
    if (store_verify(st, key, len, now, &v, &row, &e) != 0) {
        entries_clear(&row);
        return fail(L, &e);
    }
    if (v == AK_VALID) {
        binding_push_entry(L, &row.v[0], now);
        entries_clear(&row);
        return 1;
    }
    entries_clear(&row);
    luaL_pushfail(L);
    lua_pushstring(L, reasons[v]);
    return 2;
}

/* st:warning() -> nil: a change to the table is confirmed by its commit */
static int store_warning_l(lua_State *L)
{
    check_store(L, "warning");
    return 0;
}

/* st:listen() -> true */
static int store_listen_l(lua_State *L)
{
    ak_err e;
    if (store_listen(check_store(L, "listen"), &e) != 0)
        return fail(L, &e);
    lua_pushboolean(L, 1);
    return 1;
}

/* st:wait(seconds) -> whether a change was notified within them; fail, message, code when the
 * connection is lost */
static int store_wait_l(lua_State *L)
{
    ak_store *st = check_store(L, "wait");
    lua_Number s = luaL_checknumber(L, 2);
    int notified;
    ak_err e;

    luaL_argcheck(L, s >= 0 && s <= 86400, 2, "seconds out of range");
    if (store_wait(st, (int)(s * 1000), &notified, &e) != 0)
        return fail(L, &e);
    lua_pushboolean(L, notified);
    return 1;
}

/* st:sync_to(ks) -> changed, count | fail, message, code, "store" or "keystore": reads every
 * row, then makes the keystore file's keys those rows (keystore_sync: lock, re-read, and an
 * atomic replace only when they differ). */
static int store_sync_to_l(lua_State *L)
{
    ak_store *st = check_store(L, "sync_to");
    ak_keystore *ks = binding_keystore_to_change(L, 2, "sync_to");
    ak_entries rows = {0};
    int changed = 0;
    ak_err e;

    if (store_read(st, &rows, &e) != 0) {
        entries_clear(&rows);
        fail(L, &e);
        lua_pushliteral(L, "store");
        return 4;
    }
    if (keystore_sync(ks, &rows, &changed, &e) != 0) {
        entries_clear(&rows);
        fail(L, &e);
        lua_pushliteral(L, "keystore");
        return 4;
    }
    lua_pushboolean(L, changed);
    lua_pushinteger(L, (lua_Integer)rows.n);
    entries_clear(&rows);
    return 2;
}

static int store_name_l(lua_State *L)
{
    lua_pushstring(L, store_name(check_store(L, "name")));
    return 1;
}

/* close, __gc and __close: safe to call more than once */
static int store_close_l(lua_State *L)
{
    store_ud *u = luaL_checkudata(L, 1, STORE_MT);
    store_close(u->st);
    u->st = NULL;
    return 0;
}

static int store_tostring_l(lua_State *L)
{
    store_ud *u = luaL_checkudata(L, 1, STORE_MT);
    if (u->st != NULL)
        lua_pushfstring(L, "apikey store (%s)", store_name(u->st));
    else
        lua_pushliteral(L, "apikey store (closed)");
    return 1;
}

/* core.sleep(seconds): for the retries of `apikey sync` while the store is away */
static int core_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    struct timespec ts;
    luaL_argcheck(L, s >= 0 && s <= 86400, 1, "seconds out of range");
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 0;
}

static const luaL_Reg store_methods[] = {{"revoke", store_revoke_l},
                                         {"revoke_key", store_revoke_key_l},
                                         {"list", store_list_l},
                                         {"verify", store_verify_l},
                                         {"warning", store_warning_l},
                                         {"listen", store_listen_l},
                                         {"wait", store_wait_l},
                                         {"sync_to", store_sync_to_l},
                                         {"name", store_name_l},
                                         {"close", store_close_l},
                                         {NULL, NULL}};

static const luaL_Reg store_meta[] = {{"__gc", store_close_l},
                                      {"__close", store_close_l},
                                      {"__tostring", store_tostring_l},
                                      {NULL, NULL}};

void pgstore_lua_register(lua_State *L)
{
    lua_pushcfunction(L, core_store_open);
    lua_setfield(L, -2, "store_open");
    lua_pushcfunction(L, core_store_create);
    lua_setfield(L, -2, "store_create");
    lua_pushcfunction(L, core_store_rotate);
    lua_setfield(L, -2, "store_rotate");
    lua_pushcfunction(L, core_store_unrotate);
    lua_setfield(L, -2, "store_unrotate");
    lua_pushcfunction(L, core_sleep);
    lua_setfield(L, -2, "sleep");
    luaL_newmetatable(L, STORE_MT);
    luaL_setfuncs(L, store_meta, 0);
    luaL_newlib(L, store_methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
    lua_setfield(L, -3, "Store"); /* core.Store: the methods, for apikey.store to extend */
    lua_pop(L, 1);
}
