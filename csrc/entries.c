/*
 * entries.c: the ordered list of API key entries (record + alias) held in memory.
 * Order is file order, which is creation order; `list` prints in this order.
 */
#include "apikey.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

int entries_push(ak_entries *es, const char *alias, size_t alias_len, const ak_record *rec,
                 ak_err *e)
{
    char *copy;
    if (es->n == es->cap) {
        size_t cap = es->cap ? es->cap * 2 : 16;
        ak_entry *v = realloc(es->v, cap * sizeof *v);
        if (v == NULL)
            return ak_fail(e, AK_ENOMEM, "out of memory");
        es->v = v;
        es->cap = cap;
    }
    copy = malloc(alias_len + 1);
    if (copy == NULL)
        return ak_fail(e, AK_ENOMEM, "out of memory");
    memcpy(copy, alias, alias_len);
    copy[alias_len] = '\0';
    es->v[es->n].alias = copy;
    es->v[es->n].alias_len = alias_len;
    es->v[es->n].rec = *rec;
    es->v[es->n].kind = AK_KIND_APIKEY;
    es->v[es->n].bag = NULL;
    es->v[es->n].bag_len = 0;
    es->n++;
    return 0;
}

/* A MetricsHub bag holds a key, encrypted with a password anyone can read: wiped. */
static void entry_free(ak_entry *en)
{
    free(en->alias);
    if (en->bag != NULL) {
        OPENSSL_cleanse(en->bag, en->bag_len);
        free(en->bag);
    }
}

void entries_remove(ak_entries *es, size_t i)
{
    entry_free(&es->v[i]);
    memmove(&es->v[i], &es->v[i + 1], (es->n - i - 1) * sizeof *es->v);
    es->n--;
}

void entries_clear(ak_entries *es)
{
    for (size_t i = 0; i < es->n; i++)
        entry_free(&es->v[i]);
    free(es->v);
    es->v = NULL;
    es->n = es->cap = 0;
}
