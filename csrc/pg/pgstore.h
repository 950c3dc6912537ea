/*
 * pgstore.h: the PostgreSQL store, an optional part of the core built when libpq is found
 * (APIKEY_WITH_STORE). A table of API keys that holds what the file's records hold, never a
 * key; `apikey --store URL` runs its commands against it, and `apikey sync` keeps a keystore
 * file equal to it. Layers: pgstore_lua.c (the binding, module apikey.core) calls pgstore.c,
 * which calls keystore.c (new keys, hashes, the file's writes), alias.c and libpq.
 */
#ifndef APIKEY_PGSTORE_H
#define APIKEY_PGSTORE_H

#include "apikey.h"

struct lua_State;

/* The schema this core writes and reads, in table apikey_schema. */
#define AK_STORE_SCHEMA_VERSION 1

typedef struct ak_store ak_store;

/*
 * Connects with a libpq connection string or URL (connect_timeout 10 s unless it sets one),
 * creates the schema when it is missing (once, under an advisory lock, so that concurrent first
 * uses do not race), and checks its version. Messages name the store by its database, user and
 * host, never by the string itself, which may hold a password. 0 with *out; -1 with e: AK_EIO
 * when the database cannot be reached or refuses, AK_EINVALID for a string libpq cannot parse,
 * AK_ECORRUPT for a schema of another version.
 */
int store_open(ak_store **out, const char *conninfo, ak_err *e);
void store_close(ak_store *st);
/* "database D of user U on H" for messages. */
const char *store_name(const ak_store *st);

/* A new key for alias (folded as Java folds aliases, unique by a constraint of the table):
 * AK_EEXISTS when the alias is taken. The key goes to key_out and its row to *row (alias
 * malloc'd: entries_clear or free it). */
int store_create(ak_store *st, const char *alias, size_t alias_len, int64_t created,
                 int64_t expires, char key_out[AK_KEY_LEN + 1], ak_entries *row, ak_err *e);
/* Removes the key of alias (folded); stored gets the alias as stored (AK_ALIAS_MAX + 1 bytes).
 * AK_ENOTFOUND when there is none. */
int store_revoke(ak_store *st, const char *alias, size_t alias_len, char *stored,
                 size_t *stored_len, ak_err *e);
/* Every row, in creation order, appended to out. */
int store_read(ak_store *st, ak_entries *out, ak_err *e);
/* Looks a key up by its hash: AK_VALID or AK_EXPIRED with the row appended to row,
 * AK_UNKNOWN, AK_MALFORMED; -1 with e when the store failed. */
int store_verify(ak_store *st, const char *key, size_t len, int64_t now, ak_verdict *verdict,
                 ak_entries *row, ak_err *e);
/* LISTEN to the table's notifications (a trigger sends one per changing statement). */
int store_listen(ak_store *st, ak_err *e);
/* Waits up to timeout_ms for a notification: 0 with *notified; -1 with e when the connection
 * is lost. */
int store_wait(ak_store *st, int timeout_ms, int *notified, ak_err *e);

/* From binding.c, for pgstore_lua.c: an entry table as every method returns it; the open
 * keystore at idx, its cached entry tables dropped because the caller is about to change it. */
void binding_push_entry(struct lua_State *L, const ak_entry *en, int64_t now);
ak_keystore *binding_keystore_to_change(struct lua_State *L, int idx, const char *fname);
/* Adds core.store_open, core.store_create, core.sleep and core.Store to the module's table at
 * the top of the stack. */
void pgstore_lua_register(struct lua_State *L);

#endif
