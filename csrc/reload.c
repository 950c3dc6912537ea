/*
 * reload.c: a keystore's changed file read off the request path. A thread of its own opens the
 * file as a second keystore (read, decrypt, parse, index); meanwhile the keystore in use
 * answers with the keys it has, and the caller's next call takes the new content in whole
 * (keystore_take: pointers swapped, nothing parsed). The content replaced is freed by the
 * thread too. One thread at a time per keystore; the thread touches only its own keystore and
 * the path and password, which do not change while the keystore is open. Where no thread can
 * be started, the read is made in the caller, as keystore_refresh makes it.
 */
#include "apikey.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct ak_reload {
    pthread_t thread;
    int running;      /* a thread was started and not joined */
    atomic_int done;  /* the thread finished its job */
    int load;         /* its job includes a read (not only freeing old content) */
    int rc;           /* the read's result */
    ak_err err;       /* why it failed */
    ak_stamp stamp;   /* the file's stamp when the read was asked for */
    ak_keystore next; /* what the read gave */
    ak_keystore old;  /* the content replaced, to free */
    const ak_keystore *ks;
};

static void *reload_main(void *arg)
{
    ak_reload *r = arg;
    keystore_close(&r->old);
    if (r->load) {
        const ak_keystore *ks = r->ks;
        r->rc = keystore_open(&r->next, ks->path, ks->pass, ks->passlen, ks->iter,
                              ks->lock_timeout_ms, &r->err);
    }
    atomic_store_explicit(&r->done, 1, memory_order_release);
    return NULL;
}

/* Starts the thread: 0, or -1 when it cannot start (then nothing changed). */
static int reload_start(ak_reload *r, int load)
{
    r->load = load;
    r->rc = 0;
    atomic_store_explicit(&r->done, 0, memory_order_relaxed);
    if (pthread_create(&r->thread, NULL, reload_main, r) != 0) {
        r->load = 0;
        return -1;
    }
    r->running = 1;
    return 0;
}

/* Joins a thread that has finished; 1 while one is still running. */
static int reload_busy(ak_reload *r)
{
    if (!r->running)
        return 0;
    if (!atomic_load_explicit(&r->done, memory_order_acquire))
        return 1;
    pthread_join(r->thread, NULL);
    r->running = 0;
    return 0;
}

int keystore_refresh_background(ak_keystore *ks, ak_reload **rp, int *changed, int *pending,
                                ak_err *e)
{
    ak_reload *r = *rp;
    ak_stamp now;
    int rc;
    *changed = 0;
    *pending = 0;
    if (r == NULL) {
        r = calloc(1, sizeof *r);
        if (r == NULL)
            return ak_fail(e, AK_ENOMEM, "cannot reload %s: out of memory", ks->path);
        r->ks = ks;
        *rp = r;
    }
    if (reload_busy(r)) {
        *pending = r->load;
        return 0;
    }
    if (r->load) {
        r->load = 0;
        if (r->rc != 0) {
            keystore_close(&r->next);
            ks->failed = 1;
            ks->failed_stamp = r->stamp;
            ks->failed_err = r->err;
            *e = r->err;
            return -1;
        }
        keystore_take(ks, &r->next);
        /* The replaced content, now in r->next, is freed by a thread, not here. */
        r->old = r->next;
        memset(&r->next, 0, sizeof r->next);
        *changed = 1;
        if (reload_start(r, 0) != 0)
            keystore_close(&r->old); /* no thread: freed here after all */
        return 0;
    }
    rc = keystore_stamp_changed(ks, &now, e);
    if (rc <= 0)
        return rc;
    r->stamp = now;
    /* A server may forbid new threads (HAProxy limits its processes, threads included, unless
     * told insecure-fork-wanted): then the file is read here, as keystore_refresh does. */
    if (reload_start(r, 1) != 0)
        return keystore_refresh(ks, changed, e);
    *pending = 1;
    return 0;
}

void reload_free(ak_reload *r)
{
    if (r == NULL)
        return;
    if (r->running)
        pthread_join(r->thread, NULL);
    keystore_close(&r->next);
    keystore_close(&r->old);
    free(r);
}
