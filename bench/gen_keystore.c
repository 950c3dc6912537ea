/*
 * gen_keystore.c: writes a keystore of N keys in one go, for the benchmarks.
 *
 * Creating 100,000 keys with `apikey create` would rewrite the file 100,000 times; this calls
 * the core's p12_save once with N generated entries (alias key-000001..., hash = SHA-256 of a
 * random UUID v4, no expiry) and writes the keys' text, one a line, to a side file so that
 * the benchmarks have valid keys to check.
 *
 *   gen_keystore N KEYSTORE KEYS_FILE [ITERATIONS [PASSWORD [SCOPE,...]]]
 *
 * Without a password the keystore has the empty one, as `apikey` writes it by default.
 */
#include "apikey.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

static int die(const char *what, const ak_err *e)
{
    fprintf(stderr, "gen_keystore: %s: %s\n", what, e != NULL ? e->msg : "failed");
    return 1;
}

int main(int argc, char **argv)
{
    ak_entries es = {0};
    ak_err e;
    FILE *keys;
    unsigned char *der = NULL;
    size_t n, len = 0;
    int iter = argc > 4 ? atoi(argv[4]) : 2048;
    const char *pass = argc > 5 ? argv[5] : "";
    /* SCOPES: every key gets them, as a record holds them ("\x0c\x04read...": comma-separated
     * names given, each under 64 bytes) */
    unsigned char scopes[AK_SCOPES_MAX * (2 + AK_SCOPE_MAX)];
    size_t scopes_len = 0;
    if (argc > 6) {
        char *list = argv[6], *name;
        while ((name = strsep(&list, ",")) != NULL &&
               scopes_len + 2 + strlen(name) <= sizeof scopes) {
            scopes[scopes_len++] = DER_UTF8_STRING;
            scopes[scopes_len++] = (unsigned char)strlen(name);
            memcpy(scopes + scopes_len, name, strlen(name));
            scopes_len += strlen(name);
        }
    }
    int64_t now = (int64_t)time(NULL);

    if (argc < 4 || (n = strtoul(argv[1], NULL, 10)) == 0 || iter < 1) {
        fprintf(stderr,
                "usage: gen_keystore N KEYSTORE KEYS_FILE [ITERATIONS [PASSWORD [SCOPE,...]]]\n");
        return 2;
    }
    keys = fopen(argv[3], "w");
    if (keys == NULL) {
        perror(argv[3]);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        char alias[32], key[AK_KEY_LEN + 1];
        unsigned int hlen = 0;
        uuid_t raw;
        ak_record rec;

        memset(&rec, 0, sizeof rec);
        uuid_generate_random(raw);
        uuid_unparse_lower(raw, key);
        if (EVP_Digest(key, AK_KEY_LEN, rec.hash, &hlen, EVP_sha256(), NULL) != 1)
            return die("SHA-256", NULL);
        memcpy(rec.hint, key + AK_KEY_LEN - AK_HINT_LEN, AK_HINT_LEN);
        rec.created = now;
        rec.expires = AK_NO_EXPIRY;
        rec.scopes = scopes_len > 0 ? scopes : NULL;
        rec.scopes_len = scopes_len;
        snprintf(alias, sizeof alias, "key-%06zu", i + 1);
        if (entries_push(&es, alias, strlen(alias), &rec, &e) != 0)
            return die("entries_push", &e);
        fprintf(keys, "%s\n", key);
    }
    if (fclose(keys) != 0) {
        perror(argv[3]);
        return 1;
    }
    if (p12_save(&es, NULL, pass, strlen(pass), iter, &der, &len, &e) != 0)
        return die("p12_save", &e);
    if (storage_replace(argv[2], der, len, &e) != 0)
        return die("storage_replace", &e);
    OPENSSL_free(der);
    entries_clear(&es);
    return 0;
}
