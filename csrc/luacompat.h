/*
 * luacompat.h: binding.c is written against the Lua 5.4 API; this header gives the few calls
 * it uses that Lua 5.3 and Lua 5.1 lack, written with their own API. For 5.1 it uses only
 * what PUC Lua 5.1 has, so that the module built for 5.1 loads in LuaJIT 2.1 and in Lua 5.1
 * alike. With Lua 5.4 it adds nothing.
 *
 * What differs, and how binding.c is kept correct on each:
 * - a userdata's user value (its entry cache, a table): 5.4 has numbered user values, 5.3
 *   one value, 5.1 the userdata's environment table;
 * - fail is nil before 5.4;
 * - 5.1 has no integer subtype: a number is an integer when it has no fraction and fits a
 *   lua_Integer; lua_rawgeti returns no type, and a metatable gets no __name, before 5.3;
 * - lua_rawgetp and lua_rawsetp (a table indexed by a C pointer) come with 5.2.
 */
#ifndef AK_LUACOMPAT_H
#define AK_LUACOMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 504
#define luaL_pushfail(L) lua_pushnil(L)
/* binding.c keeps one user value, a table, so the count is always 1 */
#define lua_newuserdatauv(L, size, nuvalue) lua_newuserdata((L), (size))
#define lua_getiuservalue(L, idx, n) ak_getiuservalue((L), (idx))
#define lua_setiuservalue(L, idx, n) ak_setiuservalue((L), (idx))

static inline int ak_getiuservalue(lua_State *L, int idx)
{
#if LUA_VERSION_NUM == 503
    return lua_getuservalue(L, idx);
#else
    lua_getfenv(L, idx);
    return lua_type(L, -1);
#endif
}

static inline int ak_setiuservalue(lua_State *L, int idx)
{
#if LUA_VERSION_NUM == 503
    lua_setuservalue(L, idx);
    return 1;
#else
    return lua_setfenv(L, idx);
#endif
}
#endif

#if LUA_VERSION_NUM < 503
#define lua_isinteger(L, idx) ak_isinteger((L), (idx))
#define lua_rawgeti(L, idx, n) ak_rawgeti((L), (idx), (n))
#define luaL_newmetatable(L, tname) ak_newmetatable((L), (tname))

/* with __name, as 5.3 and later set it (error messages and tostring use it) */
static inline int ak_newmetatable(lua_State *L, const char *tname)
{
    if (!(luaL_newmetatable)(L, tname))
        return 0;
    lua_pushstring(L, tname);
    lua_setfield(L, -2, "__name");
    return 1;
}

static inline int ak_isinteger(lua_State *L, int idx)
{
    lua_Number n;
    if (lua_type(L, idx) != LUA_TNUMBER)
        return 0;
    n = lua_tonumber(L, idx);
    /* 2^63: the bounds of a 64-bit lua_Integer, exact as doubles */
    return n >= -9223372036854775808.0 && n < 9223372036854775808.0 &&
           n == (lua_Number)(lua_Integer)n;
}

static inline int ak_rawgeti(lua_State *L, int idx, lua_Integer n)
{
    (lua_rawgeti)(L, idx, (int)n);
    return lua_type(L, -1);
}
#endif

#if LUA_VERSION_NUM < 502
/* LuaJIT declares some of these; the module uses its own so that PUC Lua 5.1 loads it too. */
#undef luaL_newlibtable
#undef luaL_newlib
#define luaL_setfuncs(L, l, nup) ak_setfuncs((L), (l), (nup))
#define luaL_testudata(L, idx, tname) ak_testudata((L), (idx), (tname))
#define luaL_setmetatable(L, tname) ak_setmetatable((L), (tname))
#define luaL_newlibtable(L, l) lua_createtable((L), 0, (int)(sizeof(l) / sizeof((l)[0]) - 1))
#define luaL_newlib(L, l) (luaL_newlibtable((L), (l)), luaL_setfuncs((L), (l), 0))
#define lua_rawlen(L, idx) lua_objlen((L), (idx))

static inline void ak_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
    for (; l->name != NULL; l++) {
        if (l->func == NULL) {
            lua_pushboolean(L, 0); /* a placeholder, as 5.2 and later make */
        } else {
            for (int i = 0; i < nup; i++)
                lua_pushvalue(L, -nup);
            lua_pushcclosure(L, l->func, nup);
        }
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}

static inline void *ak_testudata(lua_State *L, int idx, const char *tname)
{
    void *p = lua_touserdata(L, idx);
    int same;
    if (p == NULL || !lua_getmetatable(L, idx))
        return NULL;
    luaL_getmetatable(L, tname);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same ? p : NULL;
}

static inline void ak_setmetatable(lua_State *L, const char *tname)
{
    luaL_getmetatable(L, tname);
    lua_setmetatable(L, -2);
}

/* Only ever called on LUA_REGISTRYINDEX, a pseudo-index that the key pushed does not move. */
#define lua_rawgetp(L, idx, p) (lua_pushlightuserdata((L), (void *)(p)), lua_rawget((L), (idx)))
#define lua_rawsetp(L, idx, p)                                                                     \
    (lua_pushlightuserdata((L), (void *)(p)), lua_insert((L), -2), lua_rawset((L), (idx)))
#endif

#endif
