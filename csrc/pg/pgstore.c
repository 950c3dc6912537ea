/*
 * pgstore.c: the PostgreSQL store through libpq. Owns the connection, the schema (created on
 * first use, with a version), and the operations on the table of keys: create, rotate, revoke
 * (by alias or by key), read, verify, and LISTEN/NOTIFY for `apikey sync`. Keys are made and
 * hashed by keystore.c, as the file's are; the table holds the hash, never the key. Messages
 * name the store by database, user and host: a connection string may hold a password, and is
 * never repeated.
 */
#include "pgstore.h"

#include <errno.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "pqlib.h"
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ak_store {
    PGconn *conn;
    char name[256];
};

/*
 * Version 1. One row per alias (its folded form unique by a constraint, so that two writers
 * anywhere cannot make two keys with one alias). scopes: the key's scopes, NULL for full
 * access. previous_hash and previous_hint: the key that the last rotate replaced, valid until
 * grace_until, then refused as expired (NULL when none); the row keeps one. A trigger notifies
 * channel apikey_keys once per statement that changes the table. Made under an advisory lock of the
 * transaction: concurrent first uses wait for each other.
 */
static const char SCHEMA_SQL[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(1634755449);"
    "CREATE TABLE IF NOT EXISTS apikey_schema (version integer NOT NULL);"
    "CREATE TABLE IF NOT EXISTS apikey_keys ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " alias text NOT NULL CHECK (octet_length(alias) BETWEEN 1 AND 128),"
    " alias_folded text NOT NULL CONSTRAINT apikey_keys_alias_unique UNIQUE,"
    " hash bytea NOT NULL CONSTRAINT apikey_keys_hash_unique UNIQUE"
    "  CHECK (octet_length(hash) = 32),"
    " hint text NOT NULL,"
    " created timestamptz NOT NULL,"
    " expires timestamptz,"
    " scopes text[],"
    " previous_hash bytea CHECK (octet_length(previous_hash) = 32),"
    " previous_hint text,"
    " grace_until timestamptz);"
    "CREATE OR REPLACE FUNCTION apikey_keys_notify() RETURNS trigger LANGUAGE plpgsql AS"
    " $$BEGIN PERFORM pg_notify('apikey_keys', ''); RETURN NULL; END$$;"
    "CREATE OR REPLACE TRIGGER apikey_keys_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE"
    " ON apikey_keys FOR EACH STATEMENT EXECUTE FUNCTION apikey_keys_notify();"
    "INSERT INTO apikey_schema SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM apikey_schema);"
    "COMMIT;";

/* What a row is read as, in this order (the COL_ numbers): its scopes as names joined by commas
 * (a NULL element as '*', which no scope holds), with their number and dimensions, so that a
 * list that does not read back as it is (an element with a comma, an empty list, two
 * dimensions) is told from a good one. */
#define ROW_COLUMNS                                                                                \
    "id, alias, encode(hash, 'hex'), hint, extract(epoch FROM created)::bigint,"                   \
    " extract(epoch FROM expires)::bigint, array_to_string(scopes, ',', '*'),"                     \
    " cardinality(scopes), array_ndims(scopes), encode(previous_hash, 'hex'), previous_hint,"      \
    " extract(epoch FROM grace_until)::bigint"
enum {
    COL_ID,
    COL_ALIAS,
    COL_HASH,
    COL_HINT,
    COL_CREATED,
    COL_EXPIRES,
    COL_SCOPES,
    COL_NSCOPES,
    COL_NDIMS,
    COL_PREV_HASH,
    COL_PREV_HINT,
    COL_GRACE,
    COL_COUNT
};

const char *store_name(const ak_store *st)
{
    return st->name;
}

/* libpq's message (in an ak_err's msg) on one line: its lines joined with "; ", blanks around
 * them dropped. */
static void one_line(char *s)
{
    char out[sizeof((ak_err *)0)->msg];
    size_t w = 0;
    for (const char *r = s; *r != '\0' && w + 3 < sizeof out; r++) {
        if (*r != '\n' && *r != '\t') {
            out[w++] = *r;
            continue;
        }
        while (w > 0 && out[w - 1] == ' ')
            w--;
        while (r[1] == ' ' || r[1] == '\t' || r[1] == '\n')
            r++;
        if (r[1] != '\0' && w > 0) {
            if (out[w - 1] != ':' && out[w - 1] != '.')
                out[w++] = ';';
            out[w++] = ' ';
        }
    }
    while (w > 0 && out[w - 1] == ' ')
        w--;
    out[w] = '\0';
    memcpy(s, out, w + 1);
}

static int fail_conn(ak_store *st, const char *verb, ak_err *e)
{
    ak_fail(e, AK_EIO, "cannot %s the store (%s): %s", verb, st->name, PQerrorMessage(st->conn));
    one_line(e->msg);
    return -1;
}

/* The store's name from what the connection was given: no password in it. */
static void describe(ak_store *st)
{
    const char *db = PQdb(st->conn), *user = PQuser(st->conn), *host = PQhost(st->conn);
    snprintf(st->name, sizeof st->name, "database %s of user %s on %s",
             db != NULL && *db != '\0' ? db : "(default)",
             user != NULL && *user != '\0' ? user : "(default)",
             host != NULL && *host != '\0' ? host : "the default socket");
}

/* Runs sql with text parameters; 0 with *res (PQclear it) when it returned want; -1 with e
 * otherwise, *res kept for the caller to read the error's fields (or NULL). */
static int query(ak_store *st, const char *what, const char *sql, int n, const char *const *params,
                 ExecStatusType want, PGresult **res, ak_err *e)
{
    *res = PQexecParams(st->conn, sql, n, NULL, params, NULL, NULL, 0);
    if (*res != NULL && PQresultStatus(*res) == want)
        return 0;
    if (PQstatus(st->conn) == CONNECTION_BAD)
        return fail_conn(st, "reach", e);
    ak_fail(e, AK_EIO, "cannot %s in the store (%s): %s", what, st->name,
            *res != NULL ? PQresultErrorMessage(*res) : PQerrorMessage(st->conn));
    one_line(e->msg);
    return -1;
}

static int schema_version(ak_store *st, long *version, ak_err *e)
{
    PGresult *res;
    int rc = query(st, "read the schema's version",
                   "SELECT to_regclass('apikey_schema') IS NOT NULL"
                   " AND EXISTS (SELECT 1 FROM pg_class WHERE relname = 'apikey_keys')",
                   0, NULL, PGRES_TUPLES_OK, &res, e);
    *version = 0;
    if (rc == 0 && strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
        PQclear(res);
        rc = query(st, "read the schema's version", "SELECT max(version) FROM apikey_schema", 0,
                   NULL, PGRES_TUPLES_OK, &res, e);
        if (rc == 0)
            *version = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    }
    PQclear(res);
    return rc;
}

static int schema_ensure(ak_store *st, ak_err *e)
{
    long version;
    if (schema_version(st, &version, e) != 0)
        return -1;
    if (version == 0) {
        PGresult *res = PQexec(st->conn, SCHEMA_SQL);
        int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok) {
            ak_fail(e, AK_EIO,
                    "cannot create the tables of the store (%s): %s; the user needs the right to "
                    "create tables in its schema, or the tables made once by one that has it",
                    st->name, PQresultErrorMessage(res));
            one_line(e->msg);
        }
        PQclear(res);
        if (!ok) {
            PQclear(PQexec(st->conn, "ROLLBACK"));
            return -1;
        }
        if (schema_version(st, &version, e) != 0)
            return -1;
    }
    if (version != AK_STORE_SCHEMA_VERSION)
        return ak_fail(e, AK_ECORRUPT,
                       "the store (%s) has tables of schema version %ld, and this apikey knows "
                       "version %d; use the apikey that made them, or a newer one",
                       st->name, version, AK_STORE_SCHEMA_VERSION);
    return 0;
}

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

int store_open(ak_store **out, const char *conninfo, ak_err *e)
{
    if (pqlib_load(e) != 0)
        return -1;
    /* dbname is expanded as a connection string; later keywords would override it, earlier
     * ones are defaults it may override. Over TCP, a peer that vanished without a word (a
     * network cut) is found within about a minute rather than the system's retransmission
     * time-out, which may be a quarter of an hour: sync would wait that long. */
    const char *const keys[] = {"connect_timeout",
                                "keepalives_idle",
                                "keepalives_interval",
                                "keepalives_count",
                                "tcp_user_timeout",
                                "fallback_application_name",
                                "dbname",
                                NULL};
    const char *const vals[] = {"10", "30", "10", "3", "60000", "apikey", conninfo, NULL};
    char *perr = NULL;
    PQconninfoOption *parsed = PQconninfoParse(conninfo, &perr);
    ak_store *st;

    *out = NULL;
    if (parsed == NULL) {
        /* libpq's reason may quote the string, password included: not repeated. */
        PQfreemem(perr);
        return ak_fail(e, AK_EINVALID,
                       "the store is not a valid libpq connection string; give "
                       "postgresql://USER@HOST/DB or 'host=HOST dbname=DB user=USER'");
    }
    PQconninfoFree(parsed);
    st = calloc(1, sizeof *st);
    if (st == NULL)
        return ak_fail(e, AK_ENOMEM, "cannot connect to the store: out of memory");
    st->conn = PQconnectdbParams(keys, vals, 1);
    if (st->conn == NULL) {
        free(st);
        return ak_fail(e, AK_ENOMEM, "cannot connect to the store: out of memory");
    }
    /* Notices and the server's farewell at shutdown are not the command's output: a lost
     * connection is reported by the call that finds it. */
    PQsetNoticeProcessor(st->conn, ignore_notice, NULL);
    describe(st);
    if (PQstatus(st->conn) != CONNECTION_OK) {
        fail_conn(st, "reach", e);
        store_close(st);
        return -1;
    }
    describe(st);
    if (schema_ensure(st, e) != 0) {
        store_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

void store_close(ak_store *st)
{
    if (st == NULL)
        return;
    PQfinish(st->conn);
    free(st);
}

static void to_hex(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int from_hex(const char *s, unsigned char *out, size_t n)
{
    if (strlen(s) != 2 * n)
        return -1;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        out[i / 2] = (unsigned char)(i % 2 ? (out[i / 2] << 4) | v : v);
    }
    return 0;
}

static int parse_time(const char *s, int64_t *out)
{
    char *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > AK_TIME_MAX)
        return -1;
    *out = (int64_t)v;
    return 0;
}

int store_scopes_from_text(const char *text, long expect, unsigned char *buf, size_t *len)
{
    long count = 0;
    const char *p = text;

    *len = 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (n == 0 || n > AK_SCOPE_MAX || ++count > AK_SCOPES_MAX)
            return -1;
        buf[(*len)++] = DER_UTF8_STRING;
        buf[(*len)++] = (unsigned char)n;
        memcpy(buf + *len, p, n);
        *len += n;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if ((expect >= 0 && count != expect) || record_scopes_valid(buf, *len) != 0)
        return -1;
    return 0;
}

/* Row i of res (ROW_COLUMNS) appended to out: its key, and the key it replaced (previous_hash)
 * while the row has one, marked rotated until grace_until, as a file's rotate leaves it. The
 * previous key's own creation and expiry are not kept: it takes the row's creation, and its
 * grace_until was cut to its expiry when it was rotated. A row that cannot be read whole (its
 * scopes above all: never read as full access) is refused, naming it by its id. */
static int push_row(ak_store *st, PGresult *res, int i, ak_entries *out, ak_err *e)
{
    ak_record rec;
    unsigned char scopes[STORE_SCOPES_BUF];
    size_t scopes_len = 0;
    const char *alias = PQgetvalue(res, i, COL_ALIAS), *hint = PQgetvalue(res, i, COL_HINT);
    const char *prev_hint = PQgetvalue(res, i, COL_PREV_HINT);
    size_t alias_len = strlen(alias);
    int has_scopes = !PQgetisnull(res, i, COL_SCOPES);
    int rotated = !PQgetisnull(res, i, COL_PREV_HASH);
    unsigned char prev_hash[AK_HASH_LEN];
    int64_t grace = 0;

    memset(&rec, 0, sizeof rec);
    rec.expires = AK_NO_EXPIRY;
    if (alias_len == 0 || alias_len > AK_ALIAS_MAX ||
        from_hex(PQgetvalue(res, i, COL_HASH), rec.hash, AK_HASH_LEN) != 0 ||
        strlen(hint) != AK_HINT_LEN ||
        parse_time(PQgetvalue(res, i, COL_CREATED), &rec.created) != 0 ||
        (!PQgetisnull(res, i, COL_EXPIRES) &&
         parse_time(PQgetvalue(res, i, COL_EXPIRES), &rec.expires) != 0) ||
        (has_scopes && (strcmp(PQgetvalue(res, i, COL_NDIMS), "1") != 0 ||
                        store_scopes_from_text(PQgetvalue(res, i, COL_SCOPES),
                                               strtol(PQgetvalue(res, i, COL_NSCOPES), NULL, 10),
                                               scopes, &scopes_len) != 0)) ||
        (rotated && (from_hex(PQgetvalue(res, i, COL_PREV_HASH), prev_hash, AK_HASH_LEN) != 0 ||
                     strlen(prev_hint) != AK_HINT_LEN || PQgetisnull(res, i, COL_GRACE) ||
                     parse_time(PQgetvalue(res, i, COL_GRACE), &grace) != 0)))
        return ak_fail(e, AK_ECORRUPT,
                       "row %s of the store (%s) is not an API key apikey can use (its alias, "
                       "hash, hint, scopes, previous key or a date out of range); it is not "
                       "used: fix or delete it in table apikey_keys",
                       PQgetvalue(res, i, COL_ID), st->name);
    memcpy(rec.hint, hint, AK_HINT_LEN);
    rec.scopes = has_scopes ? scopes : NULL;
    rec.scopes_len = scopes_len;
    if (entries_push(out, alias, alias_len, &rec, e) != 0)
        return -1;
    if (!rotated)
        return 0;
    memcpy(rec.hash, prev_hash, AK_HASH_LEN);
    memcpy(rec.hint, prev_hint, AK_HINT_LEN);
    rec.expires = AK_NO_EXPIRY;
    rec.rotated = 1;
    rec.grace_end = grace;
    return entries_push(out, alias, alias_len, &rec, e);
}

static void int_text(int64_t v, char *buf, size_t size)
{
    snprintf(buf, size, "%lld", (long long)v);
}

int store_create(ak_store *st, const char *alias, size_t alias_len, int64_t created,
                 int64_t expires, const char *scopes, char key_out[AK_KEY_LEN + 1], ak_entries *row,
                 ak_err *e)
{
    unsigned char scopes_der[STORE_SCOPES_BUF];
    size_t scopes_len;
    unsigned char hash[AK_HASH_LEN];
    char hash_hex[2 * AK_HASH_LEN + 1], created_s[24], expires_s[24], hint[AK_HINT_LEN + 1];
    char *alias_z, *folded;
    size_t folded_len;
    PGresult *res;
    int rc;

    if (alias_len == 0 || alias_len > AK_ALIAS_MAX || memchr(alias, '\0', alias_len) != NULL)
        return ak_fail(e, AK_EINVALID, "an alias is 1 to %d bytes, without NUL", AK_ALIAS_MAX);
    if (scopes != NULL && store_scopes_from_text(scopes, -1, scopes_der, &scopes_len) != 0)
        return ak_fail(e, AK_EINVALID,
                       "scopes are 1 to %d names of 1 to %d letters, digits or ':._-', no two "
                       "alike",
                       AK_SCOPES_MAX, AK_SCOPE_MAX);
    folded = alias_fold(alias, alias_len, &folded_len);
    alias_z = strndup(alias, alias_len);
    if (folded == NULL || alias_z == NULL) {
        free(folded);
        free(alias_z);
        return ak_fail(e, AK_EINVALID, "the alias is not UTF-8, or memory ran out");
    }
    if (keystore_new_key(key_out, e) != 0 || keystore_key_hash(key_out, AK_KEY_LEN, hash) != 0) {
        if (e->code != AK_ECRYPTO)
            ak_fail(e, AK_ECRYPTO, "cannot hash the new key");
        OPENSSL_cleanse(key_out, AK_KEY_LEN + 1);
        free(folded);
        free(alias_z);
        return -1;
    }
    to_hex(hash, AK_HASH_LEN, hash_hex);
    memcpy(hint, key_out + AK_KEY_LEN - AK_HINT_LEN, AK_HINT_LEN + 1);
    int_text(created, created_s, sizeof created_s);
    int_text(expires, expires_s, sizeof expires_s);
    {
        const char *const params[] = {
            alias_z, folded, hash_hex, hint, created_s, expires == AK_NO_EXPIRY ? NULL : expires_s,
            scopes};
        rc = query(st, "add the key",
                   "INSERT INTO apikey_keys (alias, alias_folded, hash, hint, created, expires,"
                   " scopes) VALUES ($1, $2, decode($3, 'hex'), $4, to_timestamp($5::bigint),"
                   " to_timestamp($6::bigint), string_to_array($7, ',')) RETURNING " ROW_COLUMNS,
                   7, params, PGRES_TUPLES_OK, &res, e);
    }
    if (rc != 0 && res != NULL) {
        const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
        if (constraint != NULL && strcmp(constraint, "apikey_keys_alias_unique") == 0)
            ak_fail(e, AK_EEXISTS,
                    "an API key with alias '%s' already exists in the store (%s) (aliases ignore "
                    "case); revoke it first or choose another alias",
                    alias_z, st->name);
    }
    if (rc == 0)
        rc = push_row(st, res, 0, row, e);
    PQclear(res);
    OPENSSL_cleanse(hash, sizeof hash);
    free(folded);
    free(alias_z);
    if (rc != 0)
        OPENSSL_cleanse(key_out, AK_KEY_LEN + 1);
    return rc;
}

/* The alias as stored into stored (AK_ALIAS_MAX + 1 bytes). */
static void copy_alias(const char *a, char *stored, size_t *stored_len)
{
    *stored_len = strlen(a) > AK_ALIAS_MAX ? AK_ALIAS_MAX : strlen(a);
    memcpy(stored, a, *stored_len);
    stored[*stored_len] = '\0';
}

/* Why a rotate changed no row: the alias has none, or its key expired and the new one has no
 * expiry of its own. */
static void not_rotated(ak_store *st, const char *folded, const char *alias, size_t alias_len,
                        ak_err *e)
{
    const char *const params[] = {folded};
    PGresult *res;
    int64_t t;
    char when[32];

    if (query(st, "read the key",
              "SELECT extract(epoch FROM expires)::bigint FROM apikey_keys"
              " WHERE alias_folded = $1",
              1, params, PGRES_TUPLES_OK, &res, e) != 0) {
        PQclear(res);
        return;
    }
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0) ||
        parse_time(PQgetvalue(res, 0, 0), &t) != 0) {
        ak_fail(e, AK_ENOTFOUND, "no API key found with alias '%.*s' in the store (%s)",
                (int)alias_len, alias, st->name);
    } else {
        time_format_local(t, when, sizeof when);
        ak_fail(e, AK_EINVALID,
                "the key of alias '%.*s' expired on %s; give the new key an expiry of its own",
                (int)alias_len, alias, when);
    }
    PQclear(res);
}

int store_revoke(ak_store *st, const char *alias, size_t alias_len, char *stored,
                 size_t *stored_len, ak_err *e)
{
    size_t folded_len;
    char *folded = alias_fold(alias, alias_len, &folded_len);
    PGresult *res;
    int rc;

    if (folded == NULL || memchr(alias, '\0', alias_len) != NULL) {
        free(folded);
        return ak_fail(e, AK_ENOTFOUND, "no API key found with that alias in the store (%s)",
                       st->name);
    }
    {
        const char *const params[] = {folded};
        rc = query(st, "remove the key",
                   "DELETE FROM apikey_keys WHERE alias_folded = $1 RETURNING alias", 1, params,
                   PGRES_TUPLES_OK, &res, e);
    }
    free(folded);
    if (rc == 0 && PQntuples(res) == 0)
        rc = ak_fail(e, AK_ENOTFOUND, "no API key found with alias '%.*s' in the store (%s)",
                     (int)alias_len, alias, st->name);
    if (rc == 0)
        copy_alias(PQgetvalue(res, 0, 0), stored, stored_len);
    PQclear(res);
    return rc;
}

int store_read(ak_store *st, ak_entries *out, ak_err *e)
{
    PGresult *res;
    int rc = query(st, "read the keys", "SELECT " ROW_COLUMNS " FROM apikey_keys ORDER BY id", 0,
                   NULL, PGRES_TUPLES_OK, &res, e);
    for (int i = 0; rc == 0 && i < PQntuples(res); i++)
        rc = push_row(st, res, i, out, e);
    PQclear(res);
    return rc;
}

/* The hash of a key's text in hex, for a query: 0; -1 when the text is not of a key's form;
 * -2 when hashing failed. */
static int key_hash_hex(const char *key, size_t len, char hex[2 * AK_HASH_LEN + 1])
{
    unsigned char hash[AK_HASH_LEN];
    int rc = keystore_key_hash(key, len, hash);
    if (rc == 0)
        to_hex(hash, AK_HASH_LEN, hex);
    OPENSSL_cleanse(hash, sizeof hash);
    return rc;
}

/* Of the entries from start on, keeps the one whose hash is that of hex (a row gives its key and
 * the key it replaced): 0, or -1 when none is. */
static int keep_hash(ak_entries *row, size_t start, const char *hex)
{
    unsigned char hash[AK_HASH_LEN];
    int found = -1;
    if (from_hex(hex, hash, AK_HASH_LEN) != 0)
        return -1;
    for (size_t j = row->n; j-- > start;) {
        if (CRYPTO_memcmp(row->v[j].rec.hash, hash, AK_HASH_LEN) == 0)
            found = 0;
        else
            entries_remove(row, j);
    }
    return found;
}

int store_verify(ak_store *st, const char *key, size_t len, int64_t now, ak_verdict *verdict,
                 ak_entries *row, ak_err *e)
{
    char hash_hex[2 * AK_HASH_LEN + 1];
    const char *const params[] = {hash_hex};
    PGresult *res;
    size_t start = row->n;
    int rc = key_hash_hex(key, len, hash_hex);

    *verdict = AK_UNKNOWN;
    if (rc == -1) {
        *verdict = AK_MALFORMED;
        return 0;
    }
    if (rc != 0)
        return 0; /* fail closed */
    rc = query(st, "look the key up",
               "SELECT " ROW_COLUMNS " FROM apikey_keys WHERE hash = decode($1, 'hex')"
               " OR previous_hash = decode($1, 'hex')",
               1, params, PGRES_TUPLES_OK, &res, e);
    if (rc == 0 && PQntuples(res) == 1) {
        rc = push_row(st, res, 0, row, e);
        if (rc == 0 && keep_hash(row, start, hash_hex) == 0) {
            const ak_record *r = &row->v[start].rec;
            *verdict = record_expired(r, now) ? AK_EXPIRED : AK_VALID;
        }
    }
    PQclear(res);
    return rc;
}

int store_revoke_key(ak_store *st, const char *key, size_t len, char *stored, size_t *stored_len,
                     ak_err *e)
{
    char hash_hex[2 * AK_HASH_LEN + 1];
    const char *const params[] = {hash_hex};
    PGresult *res;
    int rc = key_hash_hex(key, len, hash_hex);

    if (rc == -1)
        return ak_fail(e, AK_EINVALID,
                       "the text given is not an API key (36 characters: hexadecimal digits in "
                       "groups of 8, 4, 4, 4 and 12, with dashes between)");
    if (rc != 0)
        return ak_fail(e, AK_ECRYPTO, "cannot hash the key");
    rc = query(st, "remove the key",
               "DELETE FROM apikey_keys WHERE hash = decode($1, 'hex')"
               " OR previous_hash = decode($1, 'hex') RETURNING alias",
               1, params, PGRES_TUPLES_OK, &res, e);
    if (rc == 0 && PQntuples(res) == 0)
        rc = ak_fail(e, AK_ENOTFOUND, "no API key in the store (%s) is the key given", st->name);
    if (rc == 0)
        copy_alias(PQgetvalue(res, 0, 0), stored, stored_len);
    PQclear(res);
    return rc;
}

int store_rotate(ak_store *st, const char *alias, size_t alias_len, int64_t now, int64_t grace_end,
                 int keep_expiry, int64_t expires, char key_out[AK_KEY_LEN + 1], ak_entries *rows,
                 ak_err *e)
{
    char hash_hex[2 * AK_HASH_LEN + 1], now_s[24], grace_s[24], expires_s[24];
    char hint[AK_HINT_LEN + 1];
    size_t folded_len;
    char *folded = alias_fold(alias, alias_len, &folded_len);
    PGresult *res = NULL;
    int rc = -1;

    if (folded == NULL || memchr(alias, '\0', alias_len) != NULL) {
        free(folded);
        return ak_fail(e, AK_ENOTFOUND, "no API key found with that alias in the store (%s)",
                       st->name);
    }
    if (keystore_new_key(key_out, e) != 0)
        goto out;
    if (key_hash_hex(key_out, AK_KEY_LEN, hash_hex) != 0) {
        ak_fail(e, AK_ECRYPTO, "cannot hash the new key");
        goto out;
    }
    memcpy(hint, key_out + AK_KEY_LEN - AK_HINT_LEN, AK_HINT_LEN + 1);
    int_text(now, now_s, sizeof now_s);
    int_text(grace_end, grace_s, sizeof grace_s);
    int_text(expires, expires_s, sizeof expires_s);
    {
        /* One statement: the key becomes the previous one (its grace cut to its own expiry, so
         * that it is never valid longer than it was), the new key takes its place with the
         * row's scopes. A key that has expired keeps its expiry only if the new key has one of
         * its own. The old key's creation and expiry are returned, for its entry and an undo. */
        const char *const params[] = {folded,
                                      hash_hex,
                                      hint,
                                      grace_s,
                                      now_s,
                                      keep_expiry ? "t" : "f",
                                      expires == AK_NO_EXPIRY ? NULL : expires_s};
        rc = query(st, "rotate the key",
                   "WITH old AS (SELECT id AS old_id, created AS old_created, expires AS"
                   " old_expires FROM apikey_keys WHERE alias_folded = $1 FOR UPDATE)"
                   " UPDATE apikey_keys k SET previous_hash = k.hash, previous_hint = k.hint,"
                   " grace_until = LEAST(to_timestamp($4::bigint), k.expires),"
                   " hash = decode($2, 'hex'), hint = $3, created = to_timestamp($5::bigint),"
                   " expires = CASE WHEN $6::boolean THEN k.expires"
                   " ELSE to_timestamp($7::bigint) END"
                   " FROM old WHERE k.id = old_id AND (NOT $6::boolean OR k.expires IS NULL"
                   " OR k.expires > to_timestamp($5::bigint))"
                   " RETURNING " ROW_COLUMNS ", extract(epoch FROM old_created)::bigint,"
                   " extract(epoch FROM old_expires)::bigint",
                   7, params, PGRES_TUPLES_OK, &res, e);
    }
    if (rc == 0 && PQntuples(res) == 0) {
        rc = -1;
        PQclear(res);
        res = NULL;
        not_rotated(st, folded, alias, alias_len, e);
    }
    if (rc == 0)
        rc = push_row(st, res, 0, rows, e);
    if (rc == 0 && (rows->n < 2 || !rows->v[rows->n - 1].rec.rotated))
        rc = ak_fail(e, AK_ECORRUPT, "the store (%s) did not keep the rotated key", st->name);
    if (rc == 0) {
        /* The previous key's entry as it was: its creation and expiry, its grace. */
        ak_record *old = &rows->v[rows->n - 1].rec;
        if (parse_time(PQgetvalue(res, 0, COL_COUNT), &old->created) != 0 ||
            (!PQgetisnull(res, 0, COL_COUNT + 1) &&
             parse_time(PQgetvalue(res, 0, COL_COUNT + 1), &old->expires) != 0))
            rc = ak_fail(e, AK_ECORRUPT, "the rotated key's dates are out of range");
    }
out:
    PQclear(res);
    free(folded);
    if (rc != 0)
        OPENSSL_cleanse(key_out, AK_KEY_LEN + 1);
    return rc;
}

int store_unrotate(ak_store *st, const char *key, size_t len, int64_t created, int64_t expires,
                   ak_err *e)
{
    char hash_hex[2 * AK_HASH_LEN + 1], created_s[24], expires_s[24];
    const char *const params[] = {hash_hex, created_s, expires == AK_NO_EXPIRY ? NULL : expires_s};
    PGresult *res;
    int rc;

    if (key_hash_hex(key, len, hash_hex) != 0)
        return ak_fail(e, AK_EINVALID, "the text given is not an API key");
    int_text(created, created_s, sizeof created_s);
    int_text(expires, expires_s, sizeof expires_s);
    rc = query(st, "undo the rotation",
               "UPDATE apikey_keys SET hash = previous_hash, hint = previous_hint,"
               " created = to_timestamp($2::bigint), expires = to_timestamp($3::bigint),"
               " previous_hash = NULL, previous_hint = NULL, grace_until = NULL"
               " WHERE hash = decode($1, 'hex') AND previous_hash IS NOT NULL RETURNING id",
               3, params, PGRES_TUPLES_OK, &res, e);
    if (rc == 0 && PQntuples(res) == 0)
        rc = ak_fail(e, AK_ENOTFOUND, "no rotated API key in the store (%s) is the key given",
                     st->name);
    PQclear(res);
    return rc;
}

int store_listen(ak_store *st, ak_err *e)
{
    PGresult *res;
    int rc = query(st, "listen to the changes", "LISTEN apikey_keys", 0, NULL, PGRES_COMMAND_OK,
                   &res, e);
    PQclear(res);
    return rc;
}

static int drain(ak_store *st)
{
    PGnotify *n;
    int any = 0;
    while ((n = PQnotifies(st->conn)) != NULL) {
        any = 1;
        PQfreemem(n);
    }
    return any;
}

static long long ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int store_wait(ak_store *st, int timeout_ms, int *notified, ak_err *e)
{
    long long deadline = ms_now() + timeout_ms;
    *notified = drain(st);
    while (!*notified) {
        struct pollfd p = {.fd = PQsocket(st->conn), .events = POLLIN};
        long long left = deadline - ms_now();
        int r;
        if (p.fd < 0)
            return fail_conn(st, "reach", e);
        if (left <= 0)
            return 0;
        r = poll(&p, 1, (int)left);
        if (r < 0 && errno != EINTR)
            return ak_fail(e, AK_EIO, "cannot wait for the store (%s): %s", st->name,
                           strerror(errno));
        if (r <= 0)
            continue;
        if (!PQconsumeInput(st->conn) || PQstatus(st->conn) == CONNECTION_BAD)
            return fail_conn(st, "reach", e);
        *notified = drain(st);
    }
    return 0;
}
