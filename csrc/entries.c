/*
 * entries.c: the ordered list of API key entries (record + alias) held in memory.
 * Order is file order, which is creation order; `list` prints in this order.
 */
#include "apikey.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

/* The scopes an entry owns: its copy of what its record borrowed. */
static void free_scopes(ak_entry *en)
{
    free((void *)en->rec.scopes);
    en->rec.scopes = NULL;
    en->rec.scopes_len = 0;
}

int entries_push(ak_entries *es, const char *alias, size_t alias_len, const ak_record *rec,
                 ak_err *e)
{
    char *copy;
    unsigned char *scopes = NULL;
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
    if (rec->scopes != NULL) {
        scopes = malloc(rec->scopes_len);
        if (scopes == NULL) {
            free(copy);
            return ak_fail(e, AK_ENOMEM, "out of memory");
        }
        memcpy(scopes, rec->scopes, rec->scopes_len);
    }
    memcpy(copy, alias, alias_len);
    copy[alias_len] = '\0';
    es->v[es->n].alias = copy;
    es->v[es->n].alias_len = alias_len;
    es->v[es->n].rec = *rec;
    es->v[es->n].rec.scopes = scopes;
    es->v[es->n].kind = AK_KIND_APIKEY;
    es->v[es->n].bag = NULL;
    es->v[es->n].bag_len = 0;
    es->n++;
    return 0;
}

void entries_move(ak_entries *es, size_t from, size_t to)
{
    ak_entry en = es->v[from];
    if (from < to)
        memmove(&es->v[from], &es->v[from + 1], (to - from) * sizeof *es->v);
    else if (from > to)
        memmove(&es->v[to + 1], &es->v[to], (from - to) * sizeof *es->v);
    es->v[to] = en;
}

/* A MetricsHub bag holds a key, encrypted with a password anyone can read: wiped. */
static void entry_free(ak_entry *en)
{
    free(en->alias);
    free_scopes(en);
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
