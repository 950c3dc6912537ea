/*
 * pqlib.c: libpq loaded on first use of the store (see pqlib.h for why). The pointers are
 * filled once, all or none: a libpq that lacks one of them is not used.
 */
#include <libpq-fe.h>

#include "apikey.h"

#include <dlfcn.h>
#include <stddef.h>

#include "pqlib.h"

#define AK_PQ_DEFINE(name) __typeof__(name) *ak_##name;
AK_PQ_FUNCTIONS(AK_PQ_DEFINE)
#undef AK_PQ_DEFINE

#define LIBPQ "libpq.so.5"

int pqlib_load(ak_err *e)
{
    static int loaded;
    void *lib;

    if (loaded)
        return 0;
    lib = dlopen(LIBPQ, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return ak_fail(e, AK_EIO,
                       "the PostgreSQL store needs libpq (%s), which cannot be loaded: %s; "
                       "install Debian's libpq5",
                       LIBPQ, dlerror());
#define AK_PQ_RESOLVE(name)                                                                        \
    if ((*(void **)&ak_##name = dlsym(lib, #name)) == NULL)                                        \
        return ak_fail(e, AK_EIO, "the libpq found (%s) lacks %s; install Debian's libpq5", LIBPQ, \
                       #name);
    AK_PQ_FUNCTIONS(AK_PQ_RESOLVE)
#undef AK_PQ_RESOLVE
    loaded = 1;
    return 0;
}
