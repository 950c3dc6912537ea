/* Preloaded by scripts/sanitize.sh into each wrapped program of a sanitizer run, after the
 * sanitizer runtime. */
#include <stdlib.h>

/* Its children are instrumented only when they are wrapped programs again (found on PATH).
 * Valgrind follows no child anyway, and there dropping LD_PRELOAD would also disable the
 * other libraries preloaded with it (the fault shim): built with -DKEEP_PRELOAD for it. */
#ifndef KEEP_PRELOAD
__attribute__((constructor)) static void drop_preload(void)
{
    unsetenv("LD_PRELOAD");
}
#endif

/* Modules stay loaded to the end, so that leak reports can name their functions. */
int dlclose(void *handle)
{
    (void)handle;
    return 0;
}
