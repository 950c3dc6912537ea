/*
 * pgstore.c: the PostgreSQL store through libpq. Owns the connection, the schema (created on
 * first use, with a version), and the operations on the table of keys: create, revoke, read,
 * verify, and LISTEN/NOTIFY for `apikey sync`. Keys are made and hashed by keystore.c, as the
 * file's are; the table holds the hash, never the key. Messages name the store by database,
 * user and host: a connection string may hold a password, and is never repeated.
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
 * anywhere cannot make two keys with one alias). scopes, previous_hash, previous_hint and
 * grace_until are nullable and unused by this version: the room for scopes (NULL is full
 * access) and for a rotation's previous key, valid until grace_until, as the file's records
 * gain them. A trigger notifies channel apikey_keys once per statement that changes the table.
 * Made under an advisory lock of the transaction: concurrent first uses wait for each other.
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

#define ROW_COLUMNS                                                                                \
    "alias, encode(hash, 'hex'), hint, extract(epoch FROM created)::bigint,"                       \
    " extract(epoch FROM expires)::bigint"

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

/* Row i of res (columns ROW_COLUMNS, from column first) appended to out. */
static int push_row(ak_store *st, PGresult *res, int i, ak_entries *out, ak_err *e)
{
    ak_record rec;
    const char *alias = PQgetvalue(res, i, 0), *hint = PQgetvalue(res, i, 2);
    size_t alias_len = strlen(alias);

    memset(&rec, 0, sizeof rec);
    rec.expires = AK_NO_EXPIRY;
    if (alias_len == 0 || alias_len > AK_ALIAS_MAX ||
        from_hex(PQgetvalue(res, i, 1), rec.hash, AK_HASH_LEN) != 0 ||
        strlen(hint) != AK_HINT_LEN || parse_time(PQgetvalue(res, i, 3), &rec.created) != 0 ||
        (!PQgetisnull(res, i, 4) && parse_time(PQgetvalue(res, i, 4), &rec.expires) != 0))
        return ak_fail(e, AK_ECORRUPT,
                       "a row of the store (%s) is not an API key apikey can use (alias, hash, "
                       "hint or a date out of range); fix or delete it in table apikey_keys",
                       st->name);
    memcpy(rec.hint, hint, AK_HINT_LEN);
    return entries_push(out, alias, alias_len, &rec, e);
}

static void int_text(int64_t v, char *buf, size_t size)
{
    snprintf(buf, size, "%lld", (long long)v);
}

int store_create(ak_store *st, const char *alias, size_t alias_len, int64_t created,
                 int64_t expires, char key_out[AK_KEY_LEN + 1], ak_entries *row, ak_err *e)
{
    unsigned char hash[AK_HASH_LEN];
    char hash_hex[2 * AK_HASH_LEN + 1], created_s[24], expires_s[24], hint[AK_HINT_LEN + 1];
    char *alias_z, *folded;
    size_t folded_len;
    PGresult *res;
    int rc;

    if (alias_len == 0 || alias_len > AK_ALIAS_MAX || memchr(alias, '\0', alias_len) != NULL)
        return ak_fail(e, AK_EINVALID, "an alias is 1 to %d bytes, without NUL", AK_ALIAS_MAX);
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
            alias_z, folded, hash_hex, hint, created_s, expires == AK_NO_EXPIRY ? NULL : expires_s};
        rc = query(st, "add the key",
                   "INSERT INTO apikey_keys (alias, alias_folded, hash, hint, created, expires)"
                   " VALUES ($1, $2, decode($3, 'hex'), $4, to_timestamp($5::bigint),"
                   " to_timestamp($6::bigint)) RETURNING " ROW_COLUMNS,
                   6, params, PGRES_TUPLES_OK, &res, e);
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
    if (rc == 0) {
        const char *a = PQgetvalue(res, 0, 0);
        *stored_len = strlen(a) > AK_ALIAS_MAX ? AK_ALIAS_MAX : strlen(a);
        memcpy(stored, a, *stored_len);
        stored[*stored_len] = '\0';
    }
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

int store_verify(ak_store *st, const char *key, size_t len, int64_t now, ak_verdict *verdict,
                 ak_entries *row, ak_err *e)
{
    unsigned char hash[AK_HASH_LEN];
    char hash_hex[2 * AK_HASH_LEN + 1];
    const char *const params[] = {hash_hex};
    PGresult *res;
    int rc = keystore_key_hash(key, len, hash);

    *verdict = AK_UNKNOWN;
    if (rc == -1) {
        *verdict = AK_MALFORMED;
        return 0;
    }
    if (rc != 0)
        return 0; /* fail closed */
    to_hex(hash, AK_HASH_LEN, hash_hex);
    OPENSSL_cleanse(hash, sizeof hash);
    rc = query(st, "look the key up",
               "SELECT " ROW_COLUMNS " FROM apikey_keys WHERE hash = decode($1, 'hex')", 1, params,
               PGRES_TUPLES_OK, &res, e);
    if (rc == 0 && PQntuples(res) == 1) {
        rc = push_row(st, res, 0, row, e);
        if (rc == 0) {
            const ak_record *r = &row->v[row->n - 1].rec;
            *verdict = r->expires != AK_NO_EXPIRY && r->expires <= now ? AK_EXPIRED : AK_VALID;
        }
    }
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
