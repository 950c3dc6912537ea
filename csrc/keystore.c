/*
 * keystore.c: the keystore model. Owns the loaded entries, the hash index that makes verify
 * O(1), and the operations: open, refresh (reload when the file changed), create, revoke,
 * verify. Writers follow one protocol: lock, re-read under the lock, change, replace
 * atomically; a file that cannot be read is never written.
 */
/* SHA256_Init/Update/Final: deprecated in OpenSSL 3 in favour of EVP, and kept here on
 * purpose. A check hashes 36 bytes on every request; EVP_DigestInit_ex2 on OpenSSL 3.0 frees
 * and allocates its provider context on every call, and costs more than the hash itself
 * (bench/README: 74 ns a digest through a reused EVP context, 50 ns through these, on one
 * machine). They run the same assembly. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "apikey.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

/* Prefixes e's message with what could not be done to which file, as storage.c words its own
 * failures: "cannot read PATH: reason". */
static int fail_on(ak_err *e, const char *verb, const char *path)
{
    char msg[sizeof e->msg];
    size_t used;
    snprintf(msg, sizeof msg, "cannot %s %s: ", verb, path);
    used = strlen(msg);
    snprintf(msg + used, sizeof msg - used, "%s", e->msg);
    memcpy(e->msg, msg, sizeof msg);
    return -1;
}

/* Whether two hashes are equal, in constant time: the whole 32 bytes are always read and
 * combined, with no branch on their content. Word by word, where CRYPTO_memcmp goes byte by
 * byte: this runs for every probe of every check. */
static int hash_equal(const unsigned char a[AK_HASH_LEN], const unsigned char b[AK_HASH_LEN])
{
    uint64_t diff = 0;
    for (size_t i = 0; i < AK_HASH_LEN; i += sizeof(uint64_t)) {
        uint64_t x, y;
        memcpy(&x, a + i, sizeof x);
        memcpy(&y, b + i, sizeof y);
        diff |= x ^ y;
    }
    return diff == 0;
}

/* SHA-256 of the key text. The context holds the key's bytes: wiped before returning. */
static int hash_key(const char *key, size_t len, unsigned char out[AK_HASH_LEN])
{
    SHA256_CTX c;
    int ok = SHA256_Init(&c) == 1 && SHA256_Update(&c, key, len) == 1 && SHA256_Final(out, &c) == 1;
    OPENSSL_cleanse(&c, sizeof c);
    return ok ? 0 : -1;
}

/* The hash is uniformly random, so its first bytes are a good slot number. */
static size_t slot_of(const unsigned char hash[AK_HASH_LEN], size_t mask)
{
    uint64_t h;
    memcpy(&h, hash, sizeof h);
    return (size_t)h & mask;
}

/* FNV-1a: the slot of a scope name in the names' table. */
static size_t scope_slot(const char *name, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)name[i]) * 16777619u;
    return h & (AK_SCOPE_TABLE - 1);
}

/* The bit of scope name [name, name + len) in ix, or -1 when it has none. */
static int scope_bit(const ak_index *ix, const char *name, size_t len)
{
    for (size_t j = scope_slot(name, len); ix->table[j] != 0; j = (j + 1) & (AK_SCOPE_TABLE - 1)) {
        const ak_scope_name *sn = &ix->names[ix->table[j] - 1];
        if (sn->len == len && memcmp(sn->name, name, len) == 0)
            return ix->table[j] - 1;
    }
    return -1;
}

/* The bits of a record's scopes in ix, giving a bit to each new name while there is room. */
static uint64_t scope_bits_of(ak_index *ix, const ak_record *r)
{
    uint64_t bits = 0;
    if (r->scopes == NULL)
        return AK_SCOPES_ALL;
    for (const unsigned char *p = r->scopes; p < r->scopes + r->scopes_len; p += 2 + p[1]) {
        const char *name = (const char *)p + 2;
        size_t len = p[1];
        int b = scope_bit(ix, name, len);
        if (b < 0 && ix->nnames < AK_SCOPE_BITS) {
            size_t j = scope_slot(name, len);
            while (ix->table[j] != 0)
                j = (j + 1) & (AK_SCOPE_TABLE - 1);
            b = (int)ix->nnames++;
            ix->names[b].len = (unsigned char)len;
            memcpy(ix->names[b].name, name, len);
            ix->table[j] = (unsigned char)(b + 1);
        }
        bits |= b < 0 ? AK_SCOPES_BEYOND : (uint64_t)1 << b;
    }
    return bits;
}

static void index_free(ak_index *ix)
{
    free(ix->slots);
    free(ix->hot);
    free(ix->names);
    memset(ix, 0, sizeof *ix);
}

/* Rebuilds the index over es; on failure the old index is kept. Load factor <= 1/2. */
static int index_build(ak_index *ix, const ak_entries *es, ak_err *e)
{
    ak_index new = {0};
    size_t n = 16;
    int scoped = 0;
    if (es->n > UINT32_MAX / 4)
        return ak_fail(e, AK_ELIMIT, "too many keys for one keystore (at most %lu)",
                       (unsigned long)(UINT32_MAX / 4));
    while (n < es->n * 2)
        n *= 2;
    for (size_t i = 0; i < es->n && !scoped; i++)
        scoped = es->v[i].rec.scopes != NULL;
    new.slots = calloc(n, sizeof *new.slots);
    /* at least one record, so that an empty keystore's list is not a NULL from a 0-byte call */
    new.hot = aligned_alloc(AK_HOT_ALIGN, (es->n > 0 ? es->n : 1) * sizeof *new.hot);
    new.names = scoped ? malloc(AK_SCOPE_BITS * sizeof *new.names) : NULL;
    if (new.slots == NULL || new.hot == NULL || (scoped && new.names == NULL)) {
        index_free(&new);
        return ak_fail(e, AK_ENOMEM, "out of memory");
    }
    new.nslots = n;
    for (size_t i = 0; i < es->n; i++) {
        const ak_record *r = &es->v[i].rec;
        size_t j = slot_of(r->hash, n - 1);
        while (new.slots[j] != 0)
            j = (j + 1) & (n - 1);
        new.slots[j] = (uint32_t)(i + 1);
        memset(&new.hot[i], 0, sizeof new.hot[i]);
        memcpy(new.hot[i].hash, r->hash, AK_HASH_LEN);
        new.hot[i].until = record_until(r);
        new.hot[i].scope_bits = scope_bits_of(&new, r);
    }
    index_free(ix);
    *ix = new;
    return 0;
}

int keystore_has_scope(const ak_keystore *ks, const ak_entry *en, const char *name, size_t len)
{
    uint64_t bits = ks->index.hot[en - ks->entries.v].scope_bits;
    int b;
    if (bits & AK_SCOPES_ALL)
        return 1;
    b = scope_bit(&ks->index, name, len);
    if (b >= 0)
        return (int)(bits >> b) & 1;
    return (bits & AK_SCOPES_BEYOND) ? record_has_scope(&en->rec, name, len) : 0;
}

/* Aliases are one namespace, compared as Java compares them (alias.c). */
static long find_alias(const ak_entries *es, const char *alias, size_t len)
{
    for (size_t i = 0; es != NULL && i < es->n; i++)
        if (alias_equal(es->v[i].alias, es->v[i].alias_len, alias, len))
            return (long)i;
    return -1;
}

/* Removes every entry of the alias: its key and the keys it replaced by rotate, and every key
 * of that alias another tool wrote. */
static void remove_alias(ak_entries *es, const char *alias, size_t len)
{
    for (size_t i = es->n; i-- > 0;)
        if (alias_equal(es->v[i].alias, es->v[i].alias_len, alias, len))
            entries_remove(es, i);
}

/* The entry of the alias that is in use: the one not rotated. */
static long find_live(const ak_entries *es, const char *alias, size_t len)
{
    for (size_t i = 0; i < es->n; i++)
        if (!es->v[i].rec.rotated && alias_equal(es->v[i].alias, es->v[i].alias_len, alias, len))
            return (long)i;
    return -1;
}

/* The entry whose hash is hash, by a constant-time comparison with every entry (a writer's
 * list has no index): -1 when none. */
static long find_hash(const ak_entries *es, const unsigned char hash[AK_HASH_LEN])
{
    long found = -1;
    for (size_t i = 0; i < es->n; i++)
        if (hash_equal(es->v[i].rec.hash, hash) && found < 0)
            found = (long)i;
    return found;
}

/* What another tool's entry is, for a message. */
static const char *kind_name(ak_kind kind)
{
    switch (kind) {
    case AK_KIND_SECRET:
        return "a secret key of another tool";
    case AK_KIND_PRIVATE:
        return "a private key";
    case AK_KIND_CERT:
        return "a certificate";
    default:
        return "an entry of another tool";
    }
}

/* What one read of the file gave: entries, foreign content, and the stamp of what was read. */
typedef struct {
    ak_entries entries;
    ak_foreign *foreign;
    ak_stamp stamp;
    int metricshub_pass; /* read with MetricsHub's store password (no password was given) */
} snapshot;

static void snapshot_free(snapshot *s)
{
    entries_clear(&s->entries);
    foreign_free(s->foreign);
    s->foreign = NULL;
}

static int snapshot_read(const ak_keystore *ks, snapshot *s, ak_err *e)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc;
    memset(s, 0, sizeof *s);
    rc = storage_read(ks->path, &buf, &len, &s->stamp, e);
    if (rc < 0)
        return -1;
    if (rc == 1)
        return 0; /* no file yet: an empty keystore */
    rc = p12_load(buf, len, ks->pass, ks->passlen, &s->entries, &s->foreign, e);
    /* No password given and the empty one fails: a MetricsHub keystore has its fixed one. */
    if (rc != 0 && e->code == AK_EBADPASSWORD && ks->passlen == 0) {
        ak_err e2;
        if (p12_load(buf, len, AK_METRICSHUB_STORE_PASSWORD, strlen(AK_METRICSHUB_STORE_PASSWORD),
                     &s->entries, &s->foreign, &e2) == 0) {
            rc = 0;
            s->metricshub_pass = 1;
        } else if (e2.code != AK_EBADPASSWORD) {
            *e = e2;
        }
    }
    free(buf);
    if (rc != 0)
        return fail_on(e, "read", ks->path);
    return 0;
}

/* Makes s the loaded content (s is consumed). */
static int snapshot_adopt(ak_keystore *ks, snapshot *s, ak_err *e)
{
    if (index_build(&ks->index, &s->entries, e) != 0) {
        snapshot_free(s);
        return -1;
    }
    entries_clear(&ks->entries);
    foreign_free(ks->foreign);
    ks->entries = s->entries;
    ks->foreign = s->foreign;
    ks->stamp = s->stamp;
    ks->metricshub_pass = s->metricshub_pass;
    return 0;
}

int keystore_open(ak_keystore *ks, const char *path, const char *pass, size_t passlen, int iter,
                  int lock_timeout_ms, ak_err *e)
{
    snapshot s;
    memset(ks, 0, sizeof *ks);
    ks->path = strdup(path);
    ks->pass = malloc(passlen + 1);
    if (ks->path == NULL || ks->pass == NULL) {
        keystore_close(ks);
        return ak_fail(e, AK_ENOMEM, "cannot set up the keystore: out of memory");
    }
    if (passlen > 0)
        memcpy(ks->pass, pass, passlen);
    ks->pass[passlen] = '\0';
    ks->passlen = passlen;
    ks->iter = iter;
    ks->lock_timeout_ms = lock_timeout_ms;
    if (snapshot_read(ks, &s, e) != 0 || snapshot_adopt(ks, &s, e) != 0) {
        keystore_close(ks);
        return -1;
    }
    return 0;
}

int keystore_stamp_changed(ak_keystore *ks, ak_stamp *now, ak_err *e)
{
    if (storage_stamp(ks->path, now, e) != 0)
        return -1;
    if (storage_stamp_equal(now, &ks->stamp))
        return 0;
    if (ks->failed && storage_stamp_equal(now, &ks->failed_stamp)) {
        *e = ks->failed_err;
        return -1;
    }
    return 1;
}

int keystore_refresh(ak_keystore *ks, int *changed, ak_err *e)
{
    ak_stamp now;
    snapshot s;
    int rc = keystore_stamp_changed(ks, &now, e);
    *changed = 0;
    if (rc <= 0)
        return rc;
    if (snapshot_read(ks, &s, e) != 0 || snapshot_adopt(ks, &s, e) != 0) {
        ks->failed = 1;
        ks->failed_stamp = now;
        ks->failed_err = *e;
        return -1;
    }
    ks->failed = 0;
    *changed = 1;
    return 0;
}

/* Writes s to the file (the caller holds the lock), then makes it the loaded content. */
static int snapshot_commit(ak_keystore *ks, snapshot *s, ak_err *e)
{
    unsigned char *der = NULL;
    size_t len = 0;
    int rc;
    /* Written with the password it was read with: MetricsHub must still open its file. */
    const char *pass = s->metricshub_pass ? AK_METRICSHUB_STORE_PASSWORD : ks->pass;
    size_t passlen = s->metricshub_pass ? strlen(AK_METRICSHUB_STORE_PASSWORD) : ks->passlen;
    if (p12_save(&s->entries, s->foreign, pass, passlen, ks->iter, &der, &len, e) != 0) {
        snapshot_free(s);
        return fail_on(e, "write", ks->path);
    }
    rc = storage_replace(ks->path, der, len, e);
    OPENSSL_free(der);
    /* 1: the file is replaced, only its folder's sync failed. The change is made: report it
     * as made, with the warning, rather than hide a key that is in the file. */
    ks->warned = rc == 1;
    if (ks->warned)
        ks->warning = *e;
    if (rc < 0 || storage_stamp(ks->path, &s->stamp, e) != 0) {
        snapshot_free(s);
        return -1;
    }
    return snapshot_adopt(ks, s, e);
}

/*
 * A new key: 16 bytes from OpenSSL's generator with the version (4) and variant (10) bits set,
 * as lower-case UUID text (122 random bits). A failure of the generator is a failure of the
 * create: no key is made from a weaker source.
 */
static int new_key(char key_out[AK_KEY_LEN + 1], ak_err *e)
{
    uuid_t raw;
    if (RAND_bytes(raw, (int)sizeof raw) != 1) {
        size_t used;
        OPENSSL_cleanse(raw, sizeof raw);
        ak_fail_ssl(e, AK_ECRYPTO, "cannot make a new key: the random generator failed");
        used = strlen(e->msg);
        snprintf(e->msg + used, sizeof e->msg - used,
                 "; the system's random source may be blocked or not ready yet; nothing was "
                 "written");
        return -1;
    }
    raw[6] = (unsigned char)((raw[6] & 0x0f) | 0x40);
    raw[8] = (unsigned char)((raw[8] & 0x3f) | 0x80);
    uuid_unparse_lower(raw, key_out);
    OPENSSL_cleanse(raw, sizeof raw);
    return 0;
}

/* The hint and hash of a new key, into rec. */
static int key_record(const char key[AK_KEY_LEN + 1], ak_record *rec, ak_err *e)
{
    memcpy(rec->hint, key + AK_KEY_LEN - AK_HINT_LEN, AK_HINT_LEN);
    rec->hint[AK_HINT_LEN] = '\0';
    if (hash_key(key, AK_KEY_LEN, rec->hash) != 0)
        return ak_fail(e, AK_ECRYPTO, "cannot hash the new key");
    return 0;
}

int keystore_create(ak_keystore *ks, const char *alias, size_t alias_len, int64_t created,
                    int64_t expires, char key_out[AK_KEY_LEN + 1], size_t *index, ak_err *e)
{
    return keystore_create_scoped(ks, alias, alias_len, created, expires, NULL, 0, key_out, index,
                                  e);
}

int keystore_create_scoped(ak_keystore *ks, const char *alias, size_t alias_len, int64_t created,
                           int64_t expires, const unsigned char *scopes, size_t scopes_len,
                           char key_out[AK_KEY_LEN + 1], size_t *index, ak_err *e)
{
    ak_lock lk;
    snapshot s;
    ak_record rec;
    int rc = -1;

    long other;

    /* The rules for a new alias (alias_check) are the API's to apply: this takes any alias the
     * file format holds, as other tools write them. */
    if (alias_len == 0 || alias_len > AK_ALIAS_MAX || memchr(alias, '\0', alias_len) != NULL)
        return ak_fail(e, AK_EINVALID, "an alias is 1 to %d bytes, without NUL", AK_ALIAS_MAX);
    if (scopes != NULL && record_scopes_valid(scopes, scopes_len) != 0)
        return ak_fail(e, AK_EINVALID,
                       "scopes are 1 to %d names of 1 to %d letters, digits or ':._-', no two "
                       "alike",
                       AK_SCOPES_MAX, AK_SCOPE_MAX);
    /* The key first: a generator that fails leaves no trace, not even a lock file. */
    if (new_key(key_out, e) != 0)
        return -1;
    if (storage_lock(ks->path, ks->lock_timeout_ms, &lk, e) != 0) {
        OPENSSL_cleanse(key_out, AK_KEY_LEN + 1);
        return -1;
    }
    if (snapshot_read(ks, &s, e) != 0)
        goto out;
    if (find_alias(&s.entries, alias, alias_len) >= 0) {
        snapshot_free(&s);
        ak_fail(e, AK_EEXISTS,
                "an API key with alias '%.*s' already exists in %s (aliases ignore case); revoke "
                "it first or choose another alias",
                (int)alias_len, alias, ks->path);
        goto out;
    }
    other = find_alias(foreign_names(s.foreign), alias, alias_len);
    if (other >= 0) {
        ak_kind kind = foreign_names(s.foreign)->v[other].kind;
        snapshot_free(&s);
        ak_fail(e, AK_EEXISTS,
                "alias '%.*s' is taken in %s by %s (aliases ignore case, as Java's); choose "
                "another alias",
                (int)alias_len, alias, ks->path, kind_name(kind));
        goto out;
    }
    memset(&rec, 0, sizeof rec);
    rec.created = created;
    rec.expires = expires;
    rec.scopes = scopes;
    rec.scopes_len = scopes != NULL ? scopes_len : 0;
    if (key_record(key_out, &rec, e) != 0 ||
        entries_push(&s.entries, alias, alias_len, &rec, e) != 0) {
        snapshot_free(&s);
        goto out;
    }
    *index = s.entries.n - 1;
    rc = snapshot_commit(ks, &s, e);
out:
    storage_unlock(&lk);
    if (rc != 0)
        OPENSSL_cleanse(key_out, AK_KEY_LEN + 1);
    return rc;
}

int keystore_revoke(ak_keystore *ks, const char *alias, size_t alias_len, char *stored,
                    size_t *stored_len, ak_err *e)
{
    ak_lock lk;
    ak_stamp st;
    snapshot s;
    long i, other;
    int rc = -1;

    /* A keystore that does not exist has no key: taking the lock would make its folder and
     * lock file for nothing. */
    if (storage_stamp(ks->path, &st, e) != 0)
        return -1;
    if (!st.exists)
        return ak_fail(e, AK_ENOTFOUND, "no API key found with alias '%.*s' in %s", (int)alias_len,
                       alias, ks->path);
    if (storage_lock(ks->path, ks->lock_timeout_ms, &lk, e) != 0)
        return -1;
    if (snapshot_read(ks, &s, e) != 0)
        goto out;
    i = find_alias(&s.entries, alias, alias_len);
    if (i < 0) {
        other = find_alias(foreign_names(s.foreign), alias, alias_len);
        if (other >= 0)
            ak_fail(e, AK_ENOTFOUND,
                    "that alias is %s in %s, not an API key; apikey does not remove it",
                    kind_name(foreign_names(s.foreign)->v[other].kind), ks->path);
        else
            ak_fail(e, AK_ENOTFOUND, "no API key found with alias '%.*s' in %s", (int)alias_len,
                    alias, ks->path);
        snapshot_free(&s);
        goto out;
    }
    memcpy(stored, s.entries.v[i].alias, s.entries.v[i].alias_len + 1);
    *stored_len = s.entries.v[i].alias_len;
    remove_alias(&s.entries, alias, alias_len);
    rc = snapshot_commit(ks, &s, e);
out:
    storage_unlock(&lk);
    return rc;
}

int keystore_migrate(ak_keystore *ks, int64_t now, size_t *count, ak_err *e)
{
    ak_lock lk;
    snapshot s;
    int rc = -1;

    *count = 0;
    if (storage_lock(ks->path, ks->lock_timeout_ms, &lk, e) != 0)
        return -1;
    if (snapshot_read(ks, &s, e) != 0)
        goto out;
    for (size_t i = 0; i < s.entries.n; i++) {
        ak_entry *en = &s.entries.v[i];
        if (en->kind != AK_KIND_METRICSHUB)
            continue;
        /* Same alias, hash and expiry; the key itself leaves the file with its bag. */
        OPENSSL_cleanse(en->bag, en->bag_len);
        free(en->bag);
        en->bag = NULL;
        en->bag_len = 0;
        en->kind = AK_KIND_APIKEY;
        en->rec.created = now;
        (*count)++;
    }
    if (*count == 0) {
        snapshot_free(&s);
        rc = 0;
        goto out;
    }
    rc = snapshot_commit(ks, &s, e);
out:
    storage_unlock(&lk);
    return rc;
}

/* What each byte may be in a key: its lower-case form for a hex digit, '-' for a dash, 0 for
 * anything else. A table rather than comparisons: a key's digits and letters come in random
 * order, and branches on them are mispredicted about half the time, on every request. */
static const char key_chars[256] = {
    ['-'] = '-', ['0'] = '0', ['1'] = '1', ['2'] = '2', ['3'] = '3', ['4'] = '4',
    ['5'] = '5', ['6'] = '6', ['7'] = '7', ['8'] = '8', ['9'] = '9', ['a'] = 'a',
    ['b'] = 'b', ['c'] = 'c', ['d'] = 'd', ['e'] = 'e', ['f'] = 'f', ['A'] = 'a',
    ['B'] = 'b', ['C'] = 'c', ['D'] = 'd', ['E'] = 'e', ['F'] = 'f'};

/* Checks the UUID text form 8-4-4-4-12 and writes it in lower case. Always inlined: called
 * from more than one place, GCC makes it a function of its own, and the check, which reads
 * back at once the 36 bytes it wrote one by one, took 7% longer through the Lua API
 * (bench/ab.sh). */
static inline __attribute__((always_inline)) int normalize_key(const char *key, size_t len,
                                                               char out[AK_KEY_LEN])
{
    unsigned bad = 0, dashes = 0;
    if (len != AK_KEY_LEN)
        return -1;
    for (size_t i = 0; i < AK_KEY_LEN; i++) {
        char c = key_chars[(unsigned char)key[i]];
        bad |= c == 0;
        dashes += c == '-';
        out[i] = c;
    }
    /* Four dashes, all where they belong: none elsewhere. */
    bad |= dashes != 4 || out[8] != '-' || out[13] != '-' || out[18] != '-' || out[23] != '-';
    return bad ? -1 : 0;
}

ak_verdict keystore_verify(ak_keystore *ks, const char *key, size_t len, int64_t now,
                           const ak_entry **out)
{
    /* What holds the key or its hash, together, so that one wipe clears it all on every path. */
    struct {
        char norm[AK_KEY_LEN];
        unsigned char hash[AK_HASH_LEN];
        SHA256_CTX c;
    } w;
    ak_verdict verdict = AK_UNKNOWN; /* also when hashing fails: fail closed */
    size_t mask = ks->index.nslots - 1;

    *out = NULL;
    if (normalize_key(key, len, w.norm) != 0) {
        verdict = AK_MALFORMED;
    } else if (SHA256_Init(&w.c) == 1 && SHA256_Update(&w.c, w.norm, AK_KEY_LEN) == 1 &&
               SHA256_Final(w.hash, &w.c) == 1) {
        for (size_t j = slot_of(w.hash, mask); ks->index.slots[j] != 0; j = (j + 1) & mask) {
            size_t i = ks->index.slots[j] - 1;
            const ak_hot *h = &ks->index.hot[i];
            if (hash_equal(h->hash, w.hash)) {
                *out = &ks->entries.v[i];
                verdict = until_passed(h->until, now) ? AK_EXPIRED : AK_VALID;
                break;
            }
        }
    }
    OPENSSL_cleanse(&w, sizeof w);
    return verdict;
}

/* The hash of a key given as text, for the writers that find an entry by its key: 0; -1 with
 * e (AK_EINVALID) when the text is not a key. */
static int hash_of_text(const char *key, size_t len, unsigned char hash[AK_HASH_LEN], ak_err *e)
{
    char norm[AK_KEY_LEN];
    int rc;
    if (normalize_key(key, len, norm) != 0) {
        OPENSSL_cleanse(norm, sizeof norm);
        return ak_fail(e, AK_EINVALID,
                       "the text given is not an API key (36 characters: hexadecimal digits in "
                       "groups of 8, 4, 4, 4 and 12, with dashes between)");
    }
    rc = hash_key(norm, AK_KEY_LEN, hash);
    OPENSSL_cleanse(norm, sizeof norm);
    return rc == 0 ? 0 : ak_fail(e, AK_ECRYPTO, "cannot hash the key");
}

/* For a writer that finds an entry by its key: takes the lock and reads the file under it, and
 * returns the index of the entry whose key is the text given, the lock held and s read; -1 with
 * e (the lock released, nothing read) when the text is not a key or no entry has it. */
static long lock_and_find_key(ak_keystore *ks, const char *key, size_t len, ak_lock *lk,
                              snapshot *s, ak_err *e)
{
    unsigned char hash[AK_HASH_LEN];
    long i = -1;

    if (hash_of_text(key, len, hash, e) != 0)
        return -1;
    if (storage_lock(ks->path, ks->lock_timeout_ms, lk, e) != 0)
        goto wipe;
    if (snapshot_read(ks, s, e) != 0) {
        storage_unlock(lk);
        goto wipe;
    }
    i = find_hash(&s->entries, hash);
    if (i < 0) {
        snapshot_free(s);
        storage_unlock(lk);
        ak_fail(e, AK_ENOTFOUND, "no API key in %s is the key given", ks->path);
    }
wipe:
    OPENSSL_cleanse(hash, sizeof hash);
    return i;
}

int keystore_revoke_key(ak_keystore *ks, const char *key, size_t len,
                        char alias_out[AK_ALIAS_MAX + 1], size_t *alias_len, ak_err *e)
{
    ak_lock lk;
    snapshot s;
    long i = lock_and_find_key(ks, key, len, &lk, &s, e);
    int rc;

    if (i < 0)
        return -1;
    *alias_len = s.entries.v[i].alias_len;
    memcpy(alias_out, s.entries.v[i].alias, *alias_len + 1);
    remove_alias(&s.entries, alias_out, *alias_len);
    rc = snapshot_commit(ks, &s, e);
    storage_unlock(&lk);
    return rc;
}

int keystore_rotate(ak_keystore *ks, const char *alias, size_t alias_len, int64_t now,
                    int64_t grace_end, int keep_expiry, int64_t expires,
                    char key_out[AK_KEY_LEN + 1], size_t *index, ak_err *e)
{
    ak_lock lk;
    snapshot s;
    ak_record rec;
    long i;
    int rc = -1;

    if (storage_lock(ks->path, ks->lock_timeout_ms, &lk, e) != 0)
        return -1;
    if (snapshot_read(ks, &s, e) != 0)
        goto out;
    /* The keys it replaced before, once their grace has ended, go. */
    for (size_t j = s.entries.n; j-- > 0;) {
        const ak_entry *en = &s.entries.v[j];
        if (en->rec.rotated && record_expired(&en->rec, now) &&
            alias_equal(en->alias, en->alias_len, alias, alias_len))
            entries_remove(&s.entries, j);
    }
    i = find_live(&s.entries, alias, alias_len);
    if (i < 0) {
        snapshot_free(&s);
        ak_fail(e, AK_ENOTFOUND, "no API key found with alias '%.*s' in %s", (int)alias_len, alias,
                ks->path);
        goto out;
    }
    rec = s.entries.v[i].rec; /* its scopes too: entries_push copies them */
    if (keep_expiry && rec.expires != AK_NO_EXPIRY && rec.expires <= now) {
        char when[32];
        snapshot_free(&s);
        time_format_local(rec.expires, when, sizeof when);
        ak_fail(e, AK_EINVALID,
                "the key of alias '%.*s' expired on %s; give the new key an expiry of its own",
                (int)alias_len, alias, when);
        goto out;
    }
    rec.created = now;
    rec.expires = keep_expiry ? rec.expires : expires;
    rec.rotated = 0;
    rec.grace_end = 0;
    if (new_key(key_out, e) != 0 || key_record(key_out, &rec, e) != 0 ||
        entries_push(&s.entries, s.entries.v[i].alias, s.entries.v[i].alias_len, &rec, e) != 0) {
        snapshot_free(&s);
        goto out;
    }
    s.entries.v[i].rec.rotated = 1;
    s.entries.v[i].rec.grace_end = grace_end;
    entries_move(&s.entries, s.entries.n - 1, (size_t)i);
    *index = (size_t)i;
    rc = snapshot_commit(ks, &s, e);
out:
    storage_unlock(&lk);
    if (rc != 0)
        OPENSSL_cleanse(key_out, AK_KEY_LEN + 1);
    return rc;
}

int keystore_unrotate(ak_keystore *ks, const char *key, size_t len, ak_err *e)
{
    ak_lock lk;
    snapshot s;
    long i = lock_and_find_key(ks, key, len, &lk, &s, e), last = -1;
    int rc;

    if (i < 0)
        return -1;
    for (size_t j = 0; j < s.entries.n; j++) {
        const ak_entry *en = &s.entries.v[j], *new = &s.entries.v[i];
        if (en->rec.rotated && alias_equal(en->alias, en->alias_len, new->alias, new->alias_len) &&
            (last < 0 || en->rec.grace_end > s.entries.v[last].rec.grace_end))
            last = (long)j;
    }
    if (last >= 0)
        s.entries.v[last].rec.rotated = 0, s.entries.v[last].rec.grace_end = 0;
    entries_remove(&s.entries, (size_t)i);
    rc = snapshot_commit(ks, &s, e);
    storage_unlock(&lk);
    return rc;
}

void keystore_take(ak_keystore *ks, ak_keystore *from)
{
    ak_entries entries = ks->entries;
    ak_foreign *foreign = ks->foreign;
    ak_index index = ks->index;
    ks->entries = from->entries;
    ks->foreign = from->foreign;
    ks->index = from->index;
    ks->stamp = from->stamp;
    ks->failed = 0;
    from->entries = entries;
    from->foreign = foreign;
    from->index = index;
}

void keystore_close(ak_keystore *ks)
{
    if (ks->pass != NULL) {
        OPENSSL_cleanse(ks->pass, ks->passlen + 1);
        free(ks->pass);
    }
    free(ks->path);
    entries_clear(&ks->entries);
    foreign_free(ks->foreign);
    index_free(&ks->index);
    memset(ks, 0, sizeof *ks);
}

/* ---- for the PostgreSQL store (csrc/pg/): the same keys, hashes and writes as the file ---- */

int keystore_new_key(char key_out[AK_KEY_LEN + 1], ak_err *e)
{
    return new_key(key_out, e);
}

int keystore_key_hash(const char *key, size_t len, unsigned char hash[AK_HASH_LEN])
{
    char norm[AK_KEY_LEN];
    int rc = normalize_key(key, len, norm) == 0 ? 0 : -1;
    if (rc == 0 && hash_key(norm, AK_KEY_LEN, hash) != 0)
        rc = -2;
    OPENSSL_cleanse(norm, sizeof norm);
    return rc;
}

/* Whether the API keys of es (in order, other kinds skipped) are keys, field by field: scopes
 * and rotation too, so that a change of a key's rights alone is a change to write. */
static int same_keys(const ak_entries *es, const ak_entries *keys)
{
    size_t j = 0;
    for (size_t i = 0; i < es->n; i++) {
        const ak_entry *a = &es->v[i], *b;
        if (a->kind != AK_KIND_APIKEY)
            continue;
        if (j == keys->n)
            return 0;
        b = &keys->v[j++];
        if (a->alias_len != b->alias_len || memcmp(a->alias, b->alias, a->alias_len) != 0 ||
            memcmp(&a->rec.hash, &b->rec.hash, AK_HASH_LEN) != 0 ||
            strcmp(a->rec.hint, b->rec.hint) != 0 || a->rec.created != b->rec.created ||
            a->rec.expires != b->rec.expires || a->rec.rotated != b->rec.rotated ||
            (a->rec.rotated && a->rec.grace_end != b->rec.grace_end) ||
            (a->rec.scopes == NULL) != (b->rec.scopes == NULL) ||
            a->rec.scopes_len != b->rec.scopes_len ||
            (a->rec.scopes != NULL && memcmp(a->rec.scopes, b->rec.scopes, a->rec.scopes_len) != 0))
            return 0;
    }
    return j == keys->n;
}

int keystore_sync(ak_keystore *ks, const ak_entries *keys, int *changed, ak_err *e)
{
    ak_stamp now;
    ak_lock lk;
    snapshot s;
    int rc = -1;

    *changed = 0;
    /* The file as it was loaded, with these keys: nothing to read, lock or write (a poll of a
     * store that did not change). */
    if (ks->stamp.exists && storage_stamp(ks->path, &now, e) == 0 &&
        storage_stamp_equal(&now, &ks->stamp) && same_keys(&ks->entries, keys))
        return 0;
    if (storage_lock(ks->path, ks->lock_timeout_ms, &lk, e) != 0)
        return -1;
    if (snapshot_read(ks, &s, e) != 0)
        goto out;
    if (s.stamp.exists && same_keys(&s.entries, keys)) {
        rc = snapshot_adopt(ks, &s, e);
        goto out;
    }
    for (size_t i = s.entries.n; i-- > 0;)
        if (s.entries.v[i].kind == AK_KIND_APIKEY)
            entries_remove(&s.entries, i);
    for (size_t i = 0; i < keys->n; i++) {
        const ak_entry *k = &keys->v[i];
        if (entries_push(&s.entries, k->alias, k->alias_len, &k->rec, e) != 0) {
            snapshot_free(&s);
            goto out;
        }
    }
    rc = snapshot_commit(ks, &s, e);
    *changed = rc == 0;
out:
    storage_unlock(&lk);
    return rc;
}

/* ---- the keystore's password ------------------------------------------------------------- */

static int is_metricshub_password(const char *pass, size_t len)
{
    size_t n = strlen(AK_METRICSHUB_STORE_PASSWORD);
    return len == n && CRYPTO_memcmp(pass, AK_METRICSHUB_STORE_PASSWORD, n) == 0;
}

static void no_file_to_repass(const ak_keystore *ks, ak_err *e)
{
    ak_fail(e, AK_ENOTFOUND,
            "cannot change the password of %s: there is no such file yet; the first create makes "
            "it, with the password given then",
            ks->path);
}

int keystore_passwd(ak_keystore *ks, const char *pass, size_t passlen, int iter, int *count,
                    ak_err *e)
{
    ak_lock lk;
    snapshot s;
    ak_stamp read, now;
    ak_err e2;
    char *fresh, *old = ks->pass;
    size_t oldlen = ks->passlen;
    int old_iter = ks->iter, rc = -1;

    *count = 0;
    if (iter < 1 || iter > AK_ITER_MAX)
        return ak_fail(e, AK_EINVALID, "iterations out of range");
    fresh = malloc(passlen + 1);
    if (fresh == NULL)
        return ak_fail(e, AK_ENOMEM, "out of memory");
    if (passlen > 0)
        memcpy(fresh, pass, passlen);
    fresh[passlen] = '\0';
    /* A keystore that does not exist has no password to change: looked at before the lock,
     * which would make its folder and lock file for nothing, and again under it. */
    if (storage_stamp(ks->path, &read, e) != 0)
        goto wipe;
    if (!read.exists) {
        no_file_to_repass(ks, e);
        goto wipe;
    }
    if (storage_lock(ks->path, ks->lock_timeout_ms, &lk, e) != 0)
        goto wipe;
    if (snapshot_read(ks, &s, e) != 0)
        goto out;
    if (!s.stamp.exists) {
        snapshot_free(&s);
        no_file_to_repass(ks, e);
        goto out;
    }
    /* MetricsHub opens its keystore with its fixed store password only: with another, its
     * server and its command could no longer open it. */
    if (s.metricshub_pass || is_metricshub_password(ks->pass, ks->passlen)) {
        snapshot_free(&s);
        ak_fail(e, AK_EINVALID,
                "cannot change the password of %s: it is a MetricsHub keystore, which MetricsHub "
                "opens with its own fixed password only and could no longer open with another; "
                "it was left as it is",
                ks->path);
        goto out;
    }
    if (p12_repass(s.foreign, ks->pass, ks->passlen, fresh, passlen, iter, count, e) != 0) {
        snapshot_free(&s);
        fail_on(e, "change the password of", ks->path);
        goto out;
    }
    ks->pass = fresh;
    ks->passlen = passlen;
    ks->iter = iter;
    read = s.stamp;
    rc = snapshot_commit(ks, &s, e);
    /* Not written (the lock is held: the file is the one read): the handle keeps the password
     * of the file. */
    if (rc != 0 && storage_stamp(ks->path, &now, &e2) == 0 && storage_stamp_equal(&now, &read)) {
        ks->pass = old;
        ks->passlen = oldlen;
        ks->iter = old_iter;
        old = fresh;
        oldlen = passlen;
    }
    fresh = old;
    passlen = oldlen;
out:
    storage_unlock(&lk);
wipe:
    OPENSSL_cleanse(fresh, passlen + 1);
    free(fresh);
    return rc;
}

int keystore_has_password(const char *path, int *has, int *metricshub, int *exists, ak_err *e)
{
    ak_keystore ks;
    *has = *metricshub = *exists = 0;
    if (keystore_open(&ks, path, "", 0, 1, 0, e) == 0) {
        *metricshub = ks.metricshub_pass;
        *exists = ks.stamp.exists;
        keystore_close(&ks);
        return 0;
    }
    if (e->code != AK_EBADPASSWORD)
        return -1;
    *has = *exists = 1;
    return 0;
}
