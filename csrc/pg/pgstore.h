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

/* Room for the scopes of one key as a record holds them (ak_record.scopes). */
#define STORE_SCOPES_BUF (AK_SCOPES_MAX * (2 + AK_SCOPE_MAX))
/* Scope names joined by commas into a record's form in buf (STORE_SCOPES_BUF bytes), *len bytes:
 * 0; -1 when they are not a valid list (record_scopes_valid: an empty name, a character other
 * than letters, digits and ":._-", too many, two alike) or, expect >= 0, not expect names. */
int store_scopes_from_text(const char *text, long expect, unsigned char *buf, size_t *len);

/* A new key for alias (folded as Java folds aliases, unique by a constraint of the table):
 * AK_EEXISTS when the alias is taken. scopes: names joined by commas, or NULL for full access.
 * The key goes to key_out and its row to *row (alias malloc'd: entries_clear or free it). */
int store_create(ak_store *st, const char *alias, size_t alias_len, int64_t created,
                 int64_t expires, const char *scopes, char key_out[AK_KEY_LEN + 1], ak_entries *row,
                 ak_err *e);
/* As keystore_rotate, on the alias's row: its key becomes the row's previous key, valid until
 * grace_end or its own expiry, whichever is first (a key it replaced before is dropped: the
 * row holds one); the new key keeps the row's scopes. rows gets the new key's entry, then the
 * previous key's, with the creation and expiry it had. AK_ENOTFOUND when the alias has no row;
 * AK_EINVALID when keep_expiry and the key has expired. */
int store_rotate(ak_store *st, const char *alias, size_t alias_len, int64_t now, int64_t grace_end,
                 int keep_expiry, int64_t expires, char key_out[AK_KEY_LEN + 1], ak_entries *rows,
                 ak_err *e);
/* Undoes a rotate whose new key nobody saw: the previous key is the row's key again, with the
 * creation and expiry it had. AK_ENOTFOUND when no rotated row has the key. */
int store_unrotate(ak_store *st, const char *key, size_t len, int64_t created, int64_t expires,
                   ak_err *e);
/* Removes the row that the key text belongs to, as its key or its previous key; stored gets
 * its alias. AK_EINVALID when the text is not a key, AK_ENOTFOUND when no row has it. */
int store_revoke_key(ak_store *st, const char *key, size_t len, char *stored, size_t *stored_len,
                     ak_err *e);
/* Removes the key of alias (folded); stored gets the alias as stored (AK_ALIAS_MAX + 1 bytes).
 * AK_ENOTFOUND when there is none. */
int store_revoke(ak_store *st, const char *alias, size_t alias_len, char *stored,
                 size_t *stored_len, ak_err *e);
/* Every row, in creation order, appended to out: its key, then the key it replaced while it
 * has one. A row that cannot be read whole is AK_ECORRUPT, and nothing is read. */
int store_read(ak_store *st, ak_entries *out, ak_err *e);
/* Looks a key up by its hash, a row's key or its previous key: AK_VALID or AK_EXPIRED with
 * that key's entry appended to row,
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
/* Adds core.store_open, core.store_create, core.store_rotate, core.store_unrotate, core.sleep
 * and core.Store to the module's table at the top of the stack. */
void pgstore_lua_register(struct lua_State *L);

#endif
