/*
 * ab_check.c: checks per second of several builds of apikey, in one process, taking turns.
 *
 *   ab_check SECONDS SCRIPT SCOPE NAME PREFIX KEYSTORE KEYS_FILE
 *            [NAME PREFIX KEYSTORE KEYS_FILE]...
 *
 * Each build (its install PREFIX: PREFIX/share/lua/5.4, PREFIX/lib/lua/5.4) gets a Lua state
 * of its own, so that each loads its own modules and its own apikey/core.so. SCRIPT
 * (bench/ab_check.lua) returns a function that, given KEYSTORE, KEYS_FILE and SCOPE, returns
 * the ways to check a key, each a function that runs n checks. For every way, the builds take
 * turns running slices of about 20 ms of CPU time each, SECONDS of CPU time in all per build
 * and way; the line of a build gives the median rate of its slices. Taking turns this often
 * puts both builds under the same conditions (another process's load, its use of the shared
 * caches), which two runs one after the other, on a busy machine, do not.
 *
 * Output: one line per way and build: name=NAME way=WAY per_s=RATE slices=N.
 */
#include "bench.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SIDES 8
#define MAX_WAYS 8
#define MAX_SLICES 4096
#define SLICE_S 0.02

typedef struct {
    const char *name;
    lua_State *L;
    int ways_ref; /* the table of ways, in the registry */
} side;

static void die(lua_State *L, const char *what)
{
    fprintf(stderr, "ab_check: %s: %s\n", what, L != NULL ? lua_tostring(L, -1) : "");
    exit(1);
}

/* Runs way for n checks in s; returns the CPU seconds taken. */
static double run(side *s, const char *way, long n)
{
    double t0;
    lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->ways_ref);
    lua_getfield(s->L, -1, way);
    lua_pushinteger(s->L, n);
    t0 = cpu_s();
    if (lua_pcall(s->L, 1, 0, 0) != LUA_OK)
        die(s->L, way);
    t0 = cpu_s() - t0;
    lua_pop(s->L, 1);
    return t0;
}

int main(int argc, char **argv)
{
    static double rates[MAX_SIDES][MAX_SLICES];
    side sides[MAX_SIDES];
    const char *ways[MAX_WAYS];
    int nsides = 0, nways = 0;
    double secs;

    if (argc < 8 || (argc - 4) % 4 != 0 || (argc - 4) / 4 > MAX_SIDES ||
        (secs = atof(argv[1])) <= 0) {
        fprintf(stderr, "usage: ab_check SECONDS SCRIPT SCOPE NAME PREFIX KEYSTORE KEYS_FILE "
                        "[NAME PREFIX KEYSTORE KEYS_FILE]...\n");
        return 2;
    }
    for (int a = 4; a < argc; a += 4) {
        side *s = &sides[nsides++];
        lua_State *L = luaL_newstate();
        s->name = argv[a];
        s->L = L;
        luaL_openlibs(L);
        lua_getglobal(L, "package");
        lua_pushfstring(L, "%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;;", argv[a + 1],
                        argv[a + 1]);
        lua_setfield(L, -2, "path");
        lua_pushfstring(L, "%s/lib/lua/5.4/?.so", argv[a + 1]);
        lua_setfield(L, -2, "cpath");
        lua_pop(L, 1);
        if (luaL_loadfile(L, argv[2]) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
            die(L, argv[2]);
        lua_pushstring(L, argv[a + 2]);
        lua_pushstring(L, argv[a + 3]);
        lua_pushstring(L, argv[3]);
        if (lua_pcall(L, 3, 2, 0) != LUA_OK)
            die(L, s->name);
        /* ways, then the list of their names in order (the same for every side) */
        if (nsides == 1) {
            for (lua_Integer i = 1; i <= MAX_WAYS && lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
                ways[nways++] = strdup(lua_tostring(L, -1));
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        s->ways_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }

    for (int w = 0; w < nways; w++) {
        long n = 1000;
        int slices = 0;
        /* n such that a slice takes about SLICE_S, from the first build; a warm-up of each */
        while (run(&sides[0], ways[w], n) < SLICE_S / 2)
            n *= 2;
        for (int i = 0; i < nsides; i++)
            run(&sides[i], ways[w], n);
        for (double spent = 0; spent < secs && slices < MAX_SLICES; slices++) {
            for (int i = 0; i < nsides; i++) {
                double t = run(&sides[(i + slices) % nsides], ways[w], n);
                rates[(i + slices) % nsides][slices] = (double)n / t;
                if ((i + slices) % nsides == 0)
                    spent += t;
            }
        }
        for (int i = 0; i < nsides; i++) {
            qsort(rates[i], (size_t)slices, sizeof rates[i][0], cmp_double);
            printf("name=%s way=%s per_s=%.0f slices=%d\n", sides[i].name, ways[w],
                   rates[i][slices / 2], slices);
            fflush(stdout);
        }
    }
    for (int i = 0; i < nsides; i++)
        lua_close(sides[i].L);
    return 0;
}
