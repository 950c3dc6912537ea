/*
 * binding.c: the Lua binding, module `apikey.core`, one source for Lua 5.4, 5.3 and 5.1
 * (LuaJIT 2.1), written in 5.4's API with luacompat.h for the others. Mechanism only:
 * conversion between C and Lua values, the Keystore userdata and its methods, and the core's
 * limits as constants (core.ALIAS_MAX, ...). Policy (defaults, alias rules, date options,
 * formatting) lives in lua/apikey/init.lua, which adds `create` to the same methods table
 * (core.Keystore), so that apikey.open returns this userdata itself.
 *
 * Misuse (a wrong argument type, a closed keystore) raises; a failure the caller must handle
 * returns fail, message, code.
 */
#include "apikey.h"

#include "luacompat.h"

#include <openssl/crypto.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#ifdef APIKEY_WITH_STORE
#include "pg/pgstore.h"
#endif

#define KEYSTORE_MT "apikey.Keystore"
#define MASK_STARS "********************" /* 20 stars, then the hint: how a key is shown */
#define LOCK_TIMEOUT_MAX_MS 86400000      /* a day */

typedef struct {
    ak_keystore ks;
    ak_reload *reload; /* made by the first refresh_background */
    int open;
} keystore_ud;

/* The keystores' metatable is also in the registry under the address of this variable: found
 * by a pointer, it is compared without looking up its name, which luaL_testudata does through
 * a strcmp on every call (3% of a check, measured with bench/ab.sh). */
static const char keystore_mt_key;

static keystore_ud *test_keystore(lua_State *L, int idx)
{
    void *p = lua_touserdata(L, idx);
    int same;
    if (p == NULL || !lua_getmetatable(L, idx))
        return NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &keystore_mt_key);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same ? p : NULL;
}

/* The keystore a method is called on, open. fname names the method in the error: called
 * through pcall(ks.list, ks), Lua itself could not name it. */
static keystore_ud *keystore_at(lua_State *L, int idx, const char *fname)
{
    keystore_ud *u = test_keystore(L, idx);
    if (u == NULL)
        luaL_error(L, "bad argument #1 to '%s' (apikey keystore expected, got %s)", fname,
                   luaL_typename(L, idx));
    else if (!u->open)
        luaL_error(L, "bad argument #1 to '%s' (the keystore is closed)", fname);
    return u;
}

static keystore_ud *check_keystore(lua_State *L, const char *fname)
{
    return keystore_at(L, 1, fname);
}

/* A string argument, and only a string: a number is not taken for a key or an alias. */
static const char *check_string(lua_State *L, int arg, size_t *len)
{
    luaL_checktype(L, arg, LUA_TSTRING);
    return lua_tolstring(L, arg, len);
}

/* A string argument of method fname, or nil (NULL): one call into Lua when it is a string, as
 * it is on every request of a server. The error names the method as the user called it (Lua
 * would name the verifier's function by its place in apikey.core). */
static const char *opt_string(lua_State *L, int arg, size_t *len, const char *fname)
{
    int t = lua_type(L, arg);
    if (t == LUA_TSTRING)
        return lua_tolstring(L, arg, len);
    if (t != LUA_TNIL && t != LUA_TNONE)
        luaL_error(L, "bad argument #%d to '%s' (string expected, got %s)", arg, fname,
                   luaL_typename(L, arg));
    return NULL;
}

static const char *check_text(lua_State *L, int arg, size_t *len)
{
    const char *s = check_string(L, arg, len);
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

/* An entry's scopes as a list of strings, or nothing for full access. */
static void set_scopes(lua_State *L, const ak_record *r)
{
    const unsigned char *p = r->scopes, *end = r->scopes + r->scopes_len;
    lua_Integer i = 0;
    if (p == NULL)
        return;
    lua_createtable(L, AK_SCOPES_MAX, 0);
    for (; p < end; p += 2 + p[1]) {
        lua_pushlstring(L, (const char *)p + 2, p[1]);
        lua_rawseti(L, -2, ++i);
    }
    lua_setfield(L, -2, "scopes");
}

/* An entry as every method returns it: { alias, hint, masked, created, expires, expired,
 * scopes, rotated, kind }, complete when it is made, so that no layer above adds to a table
 * another caller holds. expired is judged at now. */
static void push_entry(lua_State *L, const ak_entry *en, int64_t now)
{
    lua_createtable(L, 0, 9);
    lua_pushlstring(L, en->alias, en->alias_len);
    lua_setfield(L, -2, "alias");
    lua_pushstring(L, en->rec.hint);
    lua_setfield(L, -2, "hint");
    lua_pushfstring(L, MASK_STARS "%s", en->rec.hint);
    lua_setfield(L, -2, "masked");
    if (en->rec.created != AK_NO_EXPIRY) { /* a MetricsHub key has no creation time */
        lua_pushinteger(L, (lua_Integer)en->rec.created);
        lua_setfield(L, -2, "created");
    }
    lua_pushstring(L, en->kind == AK_KIND_METRICSHUB ? "metricshub" : "apikey");
    lua_setfield(L, -2, "kind");
    if (en->rec.expires != AK_NO_EXPIRY) {
        lua_pushinteger(L, (lua_Integer)en->rec.expires);
        lua_setfield(L, -2, "expires");
    }
    lua_pushboolean(L, record_expired(&en->rec, now));
    lua_setfield(L, -2, "expired");
    set_scopes(L, &en->rec);
    if (en->rec.rotated) {
        lua_pushinteger(L, (lua_Integer)en->rec.grace_end);
        lua_setfield(L, -2, "rotated");
    }
}

/* verify returns one table per entry, made on first use and kept in the userdata's user value
 * (so a server's hot path allocates nothing). Any change of content drops the cache; a
 * table handed out is never changed. verify returns valid keys only, so a cached entry's
 * expired is false. */
static void cache_reset(lua_State *L, int ud)
{
    lua_newtable(L);
    lua_setiuservalue(L, ud, 1);
}

static void push_cached_entry(lua_State *L, int ud, const keystore_ud *u, const ak_entry *en)
{
    lua_Integer i = (lua_Integer)(en - u->ks.entries.v) + 1;
    lua_getiuservalue(L, ud, 1);
    if (lua_rawgeti(L, -1, i) == LUA_TNIL) {
        lua_pop(L, 1);
        push_entry(L, en, INT64_MIN);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, i);
    }
    lua_remove(L, -2);
}

#ifdef APIKEY_WITH_STORE
/* For the store's binding (pg/pgstore_lua.c), which returns the same entries and writes a
 * keystore's file for `apikey sync`. */
void binding_push_entry(lua_State *L, const ak_entry *en, int64_t now)
{
    push_entry(L, en, now);
}

ak_keystore *binding_keystore_to_change(lua_State *L, int idx, const char *fname)
{
    keystore_ud *u = keystore_at(L, idx, fname);
    cache_reset(L, idx);
    return &u->ks;
}
#endif

/* core.open(path, password, iterations, lock_timeout_ms): apikey.open checks the options a
 * caller gives and fills in the defaults; these checks only keep the C side safe. */
static int core_open(lua_State *L)
{
    size_t path_len, pass_len;
    const char *path = check_text(L, 1, &path_len);
    const char *pass = check_string(L, 2, &pass_len);
    lua_Integer iter = luaL_checkinteger(L, 3);
    lua_Integer timeout = luaL_checkinteger(L, 4);
    keystore_ud *u;
    ak_err e;

    luaL_argcheck(L, path_len > 0, 1, "empty path");
    /* No more than p12_load accepts: a file written with more could not be read again. */
    luaL_argcheck(L, iter >= 1 && iter <= AK_ITER_MAX, 3, "iterations out of range");
    luaL_argcheck(L, timeout >= 0 && timeout <= LOCK_TIMEOUT_MAX_MS, 4,
                  "lock timeout out of range");
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

/* ks:warning() -> the warning of the last create or revoke, when the change was made but not
 * confirmed on disk (the folder could not be synced), or nil. */
static int keystore_warning_l(lua_State *L)
{
    keystore_ud *u = check_keystore(L, "warning");
    if (!u->ks.warned)
        return 0;
    lua_pushstring(L, u->ks.warning.msg);
    return 1;
}

/* After a change that made a key (the keystore at index 1): drops the cached entries, pushes
 * the key, wipes it, and pushes its entry. */
static void push_new_key(lua_State *L, char key[AK_KEY_LEN + 1], const ak_entry *en, int64_t now)
{
    cache_reset(L, 1);
    lua_pushlstring(L, key, AK_KEY_LEN);
    OPENSSL_cleanse(key, AK_KEY_LEN + 1);
    push_entry(L, en, now);
}

/* The scope list at argument arg (a table of strings, or nil) as a record holds it, in buf
 * (room for AK_SCOPES_MAX names of AK_SCOPE_MAX bytes): its length, or 0 for nil (full access).
 * The core checks the names; here only their number and sizes, so that they fit. */
#define SCOPES_BUF (AK_SCOPES_MAX * (2 + AK_SCOPE_MAX))
static size_t check_scopes(lua_State *L, int arg, unsigned char buf[SCOPES_BUF])
{
    size_t len = 0;
    lua_Integer n;
    if (lua_isnoneornil(L, arg))
        return 0;
    luaL_checktype(L, arg, LUA_TTABLE);
    n = (lua_Integer)lua_rawlen(L, arg);
    luaL_argcheck(L, n >= 1 && n <= AK_SCOPES_MAX, arg, "1 to 32 scopes expected");
    for (lua_Integer i = 1; i <= n; i++) {
        size_t k;
        const char *name;
        lua_rawgeti(L, arg, i);
        luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, arg, "scopes must be strings");
        name = lua_tolstring(L, -1, &k);
        luaL_argcheck(L, k >= 1 && k <= AK_SCOPE_MAX, arg, "a scope is 1 to 64 bytes");
        buf[len++] = DER_UTF8_STRING;
        buf[len++] = (unsigned char)k;
        memcpy(buf + len, name, k);
        len += k;
        lua_pop(L, 1);
    }
    return len;
}

/* core.create(ks, alias, created [, expires [, scopes]]) -> key, entry: the mechanism under
 * ks:create, which apikey adds to the methods with its policy (alias rules, dates, scopes). */
static int core_create(lua_State *L)
{
    keystore_ud *u = check_keystore(L, "create");
    size_t alias_len, index = 0;
    const char *alias = check_string(L, 2, &alias_len);
    lua_Integer created = luaL_checkinteger(L, 3);
    lua_Integer expires = lua_isnoneornil(L, 4) ? AK_NO_EXPIRY : luaL_checkinteger(L, 4);
    unsigned char scopes[SCOPES_BUF];
    size_t scopes_len = check_scopes(L, 5, scopes);
    char key[AK_KEY_LEN + 1];
    ak_err e;

    if (keystore_create_scoped(&u->ks, alias, alias_len, created, expires,
                               scopes_len > 0 ? scopes : NULL, scopes_len, key, &index, &e) != 0)
        return push_failure(L, &e);
    push_new_key(L, key, &u->ks.entries.v[index], created);
    return 2;
}

/* ks:revoke(alias) -> true, the alias as stored (then ks:warning() tells whether it was
 * confirmed on disk) */
static int keystore_revoke_l(lua_State *L)
{
    keystore_ud *u = check_keystore(L, "revoke");
    size_t alias_len, stored_len = 0;
    const char *alias = check_string(L, 2, &alias_len);
    char stored[AK_ALIAS_MAX + 1];
    ak_err e;

    if (keystore_revoke(&u->ks, alias, alias_len, stored, &stored_len, &e) != 0)
        return push_failure(L, &e);
    cache_reset(L, 1);
    lua_pushboolean(L, 1);
    lua_pushlstring(L, stored, stored_len);
    return 2;
}

/* ks:migrate() -> count: every MetricsHub key made one of ours, in one write */
static int keystore_migrate_l(lua_State *L)
{
    keystore_ud *u = check_keystore(L, "migrate");
    size_t count = 0;
    ak_err e;

    if (keystore_migrate(&u->ks, (int64_t)time(NULL), &count, &e) != 0)
        return push_failure(L, &e);
    cache_reset(L, 1);
    lua_pushinteger(L, (lua_Integer)count);
    return 1;
}

/* core.check_alias(alias) -> true | fail, fault, code point: the rules of alias.c, for the
 * messages of the layer above. fault: "empty", "long", "utf8", "control", "invisible",
 * "blank", "key" or "reserved"; the code point for control, invisible and blank. */
static int core_check_alias(lua_State *L)
{
    static const char *const faults[] = {"ok",        "empty", "long", "utf8",    "control",
                                         "invisible", "blank", "key",  "reserved"};
    size_t len;
    const char *alias = check_string(L, 1, &len);
    unsigned long cp;
    ak_alias_fault f = alias_check(alias, len, &cp);

    if (f == AK_ALIAS_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    luaL_pushfail(L);
    lua_pushstring(L, faults[f]);
    lua_pushinteger(L, (lua_Integer)cp);
    return 3;
}

/* core.hidden(code point) -> whether it must not be shown raw (a control or invisible) */
static int core_hidden(lua_State *L)
{
    lua_Integer cp = luaL_checkinteger(L, 1);
    lua_pushboolean(L, cp < 0 || alias_hidden((unsigned long)cp));
    return 1;
}

/* core.rotate(ks, alias, now, grace_end, keep_expiry [, expires]) -> key, entry, old entry: the
 * mechanism under ks:rotate (see keystore_rotate). */
static int core_rotate(lua_State *L)
{
    keystore_ud *u = check_keystore(L, "rotate");
    size_t alias_len, index = 0;
    const char *alias = check_string(L, 2, &alias_len);
    lua_Integer now = luaL_checkinteger(L, 3);
    lua_Integer grace_end = luaL_checkinteger(L, 4);
    int keep = lua_toboolean(L, 5);
    lua_Integer expires = lua_isnoneornil(L, 6) ? AK_NO_EXPIRY : luaL_checkinteger(L, 6);
    char key[AK_KEY_LEN + 1];
    ak_err e;

    if (keystore_rotate(&u->ks, alias, alias_len, now, grace_end, keep, expires, key, &index, &e) !=
        0)
        return push_failure(L, &e);
    push_new_key(L, key, &u->ks.entries.v[index], now);
    push_entry(L, &u->ks.entries.v[index + 1], now);
    return 3;
}

/* core.unrotate(ks, key) -> true: undoes the rotate that made key (nobody saw it). */
static int core_unrotate(lua_State *L)
{
    keystore_ud *u = check_keystore(L, "unrotate");
    size_t len;
    const char *key = check_string(L, 2, &len);
    ak_err e;

    if (keystore_unrotate(&u->ks, key, len, &e) != 0)
        return push_failure(L, &e);
    cache_reset(L, 1);
    lua_pushboolean(L, 1);
    return 1;
}

/* ks:revoke_key(key) -> alias: revokes the alias the key belongs to (all of its keys). */
static int keystore_revoke_key_l(lua_State *L)
{
    keystore_ud *u = check_keystore(L, "revoke_key");
    size_t len, alias_len = 0;
    const char *key = check_string(L, 2, &len);
    char alias[AK_ALIAS_MAX + 1];
    ak_err e;

    if (keystore_revoke_key(&u->ks, key, len, alias, &alias_len, &e) != 0)
        return push_failure(L, &e);
    cache_reset(L, 1);
    lua_pushlstring(L, alias, alias_len);
    return 1;
}

/* core.passwd(ks, password, iterations) -> count: the file's password changed (see
 * keystore_passwd); count is how many of other tools' keys and contents were protected again. */
static int core_passwd(lua_State *L)
{
    keystore_ud *u = check_keystore(L, "passwd");
    size_t len;
    const char *pass = check_string(L, 2, &len);
    lua_Integer iter = luaL_checkinteger(L, 3);
    int count = 0;
    ak_err e;

    luaL_argcheck(L, iter >= 1 && iter <= AK_ITER_MAX, 3, "iterations out of range");
    if (keystore_passwd(&u->ks, pass, len, (int)iter, &count, &e) != 0)
        return push_failure(L, &e);
    cache_reset(L, 1);
    lua_pushinteger(L, count);
    return 1;
}

/* core.has_password(path) -> has, how: how is "password", "none", "metricshub" (MetricsHub's
 * fixed store password opens it) or "missing" (no file) */
static int core_has_password(lua_State *L)
{
    size_t len;
    const char *path = check_text(L, 1, &len);
    int has, metricshub, exists;
    ak_err e;

    luaL_argcheck(L, len > 0, 1, "empty path");
    if (keystore_has_password(path, &has, &metricshub, &exists, &e) != 0)
        return push_failure(L, &e);
    lua_pushboolean(L, has);
    lua_pushstring(L, has ? "password" : metricshub ? "metricshub" : exists ? "none" : "missing");
    return 2;
}

/* Reloads the keystore at index 1 when its file changed, dropping the cached entry tables
 * then; *changed says whether it did. 0, or -1 with e (the keys loaded before stay). */
static int reload(lua_State *L, keystore_ud *u, int *changed, ak_err *e)
{
    *changed = 0;
    if (keystore_refresh(&u->ks, changed, e) != 0)
        return -1;
    if (*changed)
        cache_reset(L, 1);
    return 0;
}

/* ks:list() -> { entry, ... } in creation order, after picking up any change to the file;
 * fresh tables the caller may change */
static int keystore_list_l(lua_State *L)
{
    keystore_ud *u = check_keystore(L, "list");
    int64_t now = (int64_t)time(NULL);
    int changed;
    ak_err e;

    if (reload(L, u, &changed, &e) != 0)
        return push_failure(L, &e);
    lua_createtable(L, (int)u->ks.entries.n, 0);
    for (size_t i = 0; i < u->ks.entries.n; i++) {
        push_entry(L, &u->ks.entries.v[i], now);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int push_verdict(lua_State *L, int ud, const keystore_ud *u, ak_verdict v,
                        const ak_entry *en)
{
    static const char *const reasons[] = {"valid", "unknown", "expired", "malformed"};
    if (v == AK_VALID) {
        push_cached_entry(L, ud, u, en);
        return 1;
    }
    luaL_pushfail(L);
    lua_pushstring(L, reasons[v]);
    return 2;
}

/* The check of a key at argument 2 against the keystore u at stack index ud, judged at now. */
static int verify_at(lua_State *L, int ud, keystore_ud *u, int64_t now)
{
    size_t len;
    const char *key = check_string(L, 2, &len);
    const ak_entry *en;
    ak_verdict v = keystore_verify(&u->ks, key, len, now, &en);
    return push_verdict(L, ud, u, v, en);
}

/* ks:verify(key [, now]) -> entry | fail, "unknown" | "expired" | "malformed".
 * The entry is shared between calls: treat it as read-only. */
static int keystore_verify_l(lua_State *L)
{
    keystore_ud *u = check_keystore(L, "verify");
    int64_t now;

    if (lua_isnoneornil(L, 3))
        now = (int64_t)time(NULL);
    else {
        luaL_argcheck(L, lua_isinteger(L, 3), 3, "now must be an integer Unix time");
        now = (int64_t)lua_tointeger(L, 3);
    }
    return verify_at(L, 1, u, now);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Whether s starts with "Bearer" in any case. By hand rather than with strncasecmp, which goes
 * through the locale's tables (2% of a check): only the letters of "bearer" give them with
 * their 0x20 bit set. */
static int is_bearer(const char *s)
{
    static const char word[6] = {'b', 'e', 'a', 'r', 'e', 'r'};
    unsigned diff = 0;
    for (int i = 0; i < 6; i++)
        diff |= (unsigned)(((unsigned char)s[i] | 0x20) ^ (unsigned char)word[i]);
    return diff == 0;
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
    if (end - s < 7 || !is_bearer(s) || !is_blank(s[6]))
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

/* The check of an Authorization value at argument 2 (or nil) against the keystore u at stack
 * index ud, and of the scope at argument 3 (or nil: none needed): a valid key without that
 * scope gives fail, "insufficient_scope", its entry. */
static int authenticate_at(lua_State *L, int ud, keystore_ud *u)
{
    size_t len = 0, tlen = 0, slen = 0;
    const char *header = opt_string(L, 2, &len, "authenticate");
    const char *scope = opt_string(L, 3, &slen, "authenticate");
    const char *token = header != NULL ? bearer_token(header, len, &tlen) : NULL;
    const ak_entry *en;
    ak_verdict v;

    if (token == NULL) {
        luaL_pushfail(L);
        /* Several values, as a server joins repeated headers ("Bearer a, Bearer b"): a client
         * that sent credentials, wrongly. */
        if (header != NULL && memchr(header, ',', len) != NULL)
            lua_pushliteral(L, "malformed");
        else
            lua_pushliteral(L, "missing");
        return 2;
    }
    v = keystore_verify(&u->ks, token, tlen, (int64_t)time(NULL), &en);
    if (v == AK_VALID && scope != NULL && !keystore_has_scope(&u->ks, en, scope, slen)) {
        luaL_pushfail(L);
        lua_pushliteral(L, "insufficient_scope");
        push_cached_entry(L, ud, u, en);
        return 3;
    }
    return push_verdict(L, ud, u, v, en);
}

/* ks:authenticate(header) -> entry | fail, "missing" | "unknown" | "expired" | "malformed".
 * header is an Authorization value, or nil. */
static int keystore_authenticate_l(lua_State *L)
{
    return authenticate_at(L, 1, check_keystore(L, "authenticate"));
}

/* The coarse clock (a tick of the kernel's, 1 to 10 ms) is enough for intervals of a second or
 * so, and costs a fifth of the fine one, read on every check of a verifier: 4 ns against 21 ns
 * on the machine of bench/README.md. Linux has it since 2.6.32; the fine one elsewhere. */
#ifdef CLOCK_MONOTONIC_COARSE
#define AK_CLOCK CLOCK_MONOTONIC_COARSE
#else
#define AK_CLOCK CLOCK_MONOTONIC
#endif
static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0) /* a kernel without the coarse clock */
        clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A verifier (lua/apikey/verifier.lua) is a table whose slot VERIFIER_KEYSTORE holds its
 * keystore, VERIFIER_NEXT_CHECK the time (core.coarse_clock) of its next look at the file,
 * and VERIFIER_REFUSING true while it refuses every key (its file changed and has not read for
 * longer than it may keep the old keys). Its verify and authenticate are the two functions
 * below: a server's check is then one call into C, which runs v:refresh() first when the time
 * has come. Returns the keystore's stack index, or 0 while the verifier refuses. */
enum { VERIFIER_KEYSTORE = 1, VERIFIER_NEXT_CHECK = 2, VERIFIER_REFUSING = 3 };

static int verifier_keystore(lua_State *L, const char *fname, keystore_ud **u)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_rawgeti(L, 1, VERIFIER_NEXT_CHECK);
    if (clock_seconds(AK_CLOCK) >= lua_tonumber(L, -1)) {
        lua_getfield(L, 1, "_look"); /* v:refresh(), or its background form */
        lua_pushvalue(L, 1);
        lua_call(L, 1, 0);
    }
    lua_rawgeti(L, 1, VERIFIER_KEYSTORE);
    *u = keystore_at(L, -1, fname);
    lua_rawgeti(L, 1, VERIFIER_REFUSING);
    if (lua_toboolean(L, -1))
        return 0;
    lua_pop(L, 1);
    return lua_gettop(L);
}

static int push_unavailable(lua_State *L)
{
    luaL_pushfail(L);
    lua_pushliteral(L, "unavailable");
    return 2;
}

/* v:verify(key), v:authenticate(header): as the keystore's, after a look at the file when due;
 * fail, "unavailable" while the verifier refuses every key. */
static int verifier_verify(lua_State *L)
{
    keystore_ud *u;
    int ud = verifier_keystore(L, "verify", &u);
    if (ud == 0)
        return push_unavailable(L);
    return verify_at(L, ud, u, (int64_t)time(NULL));
}

static int verifier_authenticate(lua_State *L)
{
    keystore_ud *u;
    int ud;
    lua_settop(L, 3); /* header, scope: what verifier_keystore pushes goes above them */
    ud = verifier_keystore(L, "authenticate", &u);
    if (ud == 0)
        return push_unavailable(L);
    return authenticate_at(L, ud, u);
}

/* ks:refresh() -> changed; on failure the last good content stays loaded */
static int keystore_refresh_l(lua_State *L)
{
    keystore_ud *u = check_keystore(L, "refresh");
    int changed;
    ak_err e;

    if (reload(L, u, &changed, &e) != 0)
        return push_failure(L, &e);
    lua_pushboolean(L, changed);
    return 1;
}

/* ks:refresh_background() -> changed, pending: as refresh, but a changed file is read in a
 * thread (reload.c) while ks answers with what it has; a later call swaps the new content in
 * (changed true). pending: a read is under way, call again soon. */
static int keystore_refresh_background_l(lua_State *L)
{
    keystore_ud *u = check_keystore(L, "refresh_background");
    int changed = 0, pending = 0;
    ak_err e;

    if (keystore_refresh_background(&u->ks, &u->reload, &changed, &pending, &e) != 0)
        return push_failure(L, &e);
    if (changed)
        cache_reset(L, 1);
    lua_pushboolean(L, changed);
    lua_pushboolean(L, pending);
    return 2;
}

static int keystore_count_l(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_keystore(L, "count")->ks.entries.n);
    return 1;
}

static int keystore_path_l(lua_State *L)
{
    lua_pushstring(L, check_keystore(L, "path")->ks.path);
    return 1;
}

/* close, __gc and __close: safe to call more than once */
static int keystore_close_l(lua_State *L)
{
    keystore_ud *u = luaL_checkudata(L, 1, KEYSTORE_MT);
    if (u->open) {
        u->open = 0;
        reload_free(u->reload); /* waits for a read under way */
        u->reload = NULL;
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

/* core.parse_time(text) -> Unix seconds | fail, "malformed" | "early" | "late" */
static int core_parse_time(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    int64_t t;
    int rc = time_parse_iso(s, len, &t);
    if (rc != 0) {
        luaL_pushfail(L);
        lua_pushstring(L, rc == AK_TIME_EARLY  ? "early"
                          : rc == AK_TIME_LATE ? "late"
                                               : "malformed");
        return 2;
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

/* core.ignore_sigpipe(): a write to a pipe whose reader is gone then fails with EPIPE, which the
 * command reports (and, for create, undoes), instead of killing the process silently. For the
 * command only: a server's process keeps its own signal settings. */
static int core_ignore_sigpipe(lua_State *L)
{
    (void)L;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* core.clock() -> seconds (float) of the monotonic clock, for timing */
static int core_clock(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)clock_seconds(CLOCK_MONOTONIC));
    return 1;
}

/* core.coarse_clock() -> seconds (float) of the clock the verifier's check reads, which moves by
 * the kernel's tick (1 to 10 ms): the verifier's times of its next look are in its terms */
static int core_coarse_clock(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)clock_seconds(AK_CLOCK));
    return 1;
}

static const luaL_Reg keystore_methods[] = {{"revoke", keystore_revoke_l},
                                            {"revoke_key", keystore_revoke_key_l},
                                            {"migrate", keystore_migrate_l},
                                            {"warning", keystore_warning_l},
                                            {"list", keystore_list_l},
                                            {"verify", keystore_verify_l},
                                            {"authenticate", keystore_authenticate_l},
                                            {"refresh", keystore_refresh_l},
                                            {"refresh_background", keystore_refresh_background_l},
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
                                          {"create", core_create},
                                          {"rotate", core_rotate},
                                          {"unrotate", core_unrotate},
                                          {"passwd", core_passwd},
                                          {"has_password", core_has_password},
                                          {"parse_time", core_parse_time},
                                          {"check_alias", core_check_alias},
                                          {"hidden", core_hidden},
                                          {"format_local", core_format_local},
                                          {"format_utc", core_format_utc},
                                          {"clock", core_clock},
                                          {"coarse_clock", core_coarse_clock},
                                          {"ignore_sigpipe", core_ignore_sigpipe},
                                          {"verifier_verify", verifier_verify},
                                          {"verifier_authenticate", verifier_authenticate},
                                          {NULL, NULL}};

int luaopen_apikey_core(lua_State *L)
{
    luaL_newlib(L, core_functions);
    luaL_newmetatable(L, KEYSTORE_MT);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &keystore_mt_key);
    luaL_setfuncs(L, keystore_meta, 0);
    luaL_newlib(L, keystore_methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
    lua_setfield(L, -3, "Keystore"); /* core.Keystore: the methods, for apikey to extend */
    lua_pop(L, 1);
    lua_pushliteral(L, APIKEY_VERSION);
    lua_setfield(L, -2, "version");
    /* The limits of the file format and of the core, for the layers above to read. */
    lua_pushinteger(L, AK_ALIAS_MAX);
    lua_setfield(L, -2, "ALIAS_MAX");
    lua_pushinteger(L, (lua_Integer)AK_TIME_MAX);
    lua_setfield(L, -2, "TIME_MAX");
    lua_pushinteger(L, (lua_Integer)AK_ITER_MAX);
    lua_setfield(L, -2, "ITERATIONS_MAX");
    lua_pushinteger(L, LOCK_TIMEOUT_MAX_MS / 1000);
    lua_setfield(L, -2, "LOCK_TIMEOUT_MAX");
    lua_pushinteger(L, AK_KEY_LEN);
    lua_setfield(L, -2, "KEY_LEN");
    lua_pushinteger(L, AK_SCOPE_MAX);
    lua_setfield(L, -2, "SCOPE_MAX");
    lua_pushinteger(L, AK_SCOPES_MAX);
    lua_setfield(L, -2, "SCOPES_MAX");
    lua_pushliteral(L, MASK_STARS);
    lua_setfield(L, -2, "MASK");
#ifdef APIKEY_WITH_STORE
    pgstore_lua_register(L); /* core.store_open, core.Store: the PostgreSQL store */
#endif
    return 1;
}
