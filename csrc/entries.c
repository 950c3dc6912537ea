/*
 * entries.c: the ordered list of API key entries (record + alias) held in memory.
 * Order is file order, which is creation order; `list` prints in this order.
 */
#include "apikey.h"

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
    es->n++;
    return 0;
}

void entries_remove(ak_entries *es, size_t i)
{
    free(es->v[i].alias);
    memmove(&es->v[i], &es->v[i + 1], (es->n - i - 1) * sizeof *es->v);
    es->n--;
}

void entries_clear(ak_entries *es)
{
    for (size_t i = 0; i < es->n; i++)
        free(es->v[i].alias);
    free(es->v);
    es->v = NULL;
    es->n = es->cap = 0;
}
