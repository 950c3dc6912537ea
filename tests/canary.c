/* The leak canary of scripts/sanitize.sh: a Lua module (`require "canary"`) that leaks on
 * purpose when loaded. A sanitizer run must report it first, or the instrumentation is not
 * live. */
#include <stdlib.h>

void *volatile canary_keep;

int luaopen_canary(void *L)
{
    (void)L;
    canary_keep = malloc(4242);
    canary_keep = 0;
    return 0;
}
