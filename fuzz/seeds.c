/*
 * seeds.c: writes the generated part of the seed corpus (see make_seeds.sh).
 *   seeds RECORD_DIR P12_DIR FOREIGN_P12
 * RECORD_DIR gets records; P12_DIR gets keystores saved by p12_save (iteration count 1, so
 * the fuzzer stays fast) and SafeContents of our bags mixed with the bags of FOREIGN_P12 (an
 * `openssl pkcs12 -export` file with an empty password).
 */
#include "apikey.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pkcs12.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what)
{
    fprintf(stderr, "seeds: %s\n", what);
    exit(1);
}

/* PKCS12_SAFEBAG_create_secret takes the secret's type as a NID, so our record OID must be
 * registered with OpenSSL here (the core writes and reads its bags without a NID). Once, in
 * this single-threaded program: OBJ_create is neither idempotent nor thread-safe on 3.0. */
static int register_record_oid(void)
{
    int nid = OBJ_txt2nid(AK_RECORD_OID);
    if (nid == NID_undef)
        nid = OBJ_create(AK_RECORD_OID, AK_RECORD_OID_SN, AK_RECORD_OID_LN);
    ERR_clear_error();
    return nid;
}

static void write_file(const char *dir, const char *name, const void *buf, size_t len)
{
    char path[4096];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
        die(path);
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = malloc(1 << 20);
    if (f == NULL || buf == NULL)
        die(path);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static ak_record record(int i, int with_expiry)
{
    static const char *const hints[] = {"3f9a", "0b1c", "\xc3\xa9\xc3\xa9", "ffff"};
    ak_record r;
    memset(&r, 0, sizeof r);
    for (int k = 0; k < AK_HASH_LEN; k++)
        r.hash[k] = (unsigned char)(i * 37 + k * 11);
    strcpy(r.hint, hints[i % 4]);
    r.created = INT64_C(1767225600) + i * 86400; /* 2026-01-01 */
    r.expires = with_expiry ? INT64_C(1798761600) + i : AK_NO_EXPIRY;
    return r;
}

static void write_records(const char *dir)
{
    unsigned char *der, ext[128];
    size_t len;
    ak_record r;

    r = record(0, 0);
    if (record_encode(&r, &der, &len) != 0)
        die("record_encode");
    write_file(dir, "record-no-expiry", der, len);
    OPENSSL_free(der);

    r = record(1, 1);
    if (record_encode(&r, &der, &len) != 0)
        die("record_encode");
    write_file(dir, "record-expiry", der, len);
    /* A later version's record: the same with a BOOLEAN and an [0] field appended. */
    memcpy(ext, der, len);
    memcpy(ext + len, "\x01\x01\xff\xa0\x03\x02\x01\x07", 8);
    ext[1] = (unsigned char)(ext[1] + 8);
    write_file(dir, "record-extended", ext, len + 8);
    OPENSSL_free(der);

    r = record(2, 1);
    if (record_encode(&r, &der, &len) != 0)
        die("record_encode");
    write_file(dir, "record-utf8-hint", der, len);
    OPENSSL_free(der);

    /* Version 2: scopes; a rotated key; both. */
    {
        static const unsigned char scopes[] = "\x0c\x04read\x0c\x0cmetrics:read\x0c\x03mcp";
        r = record(3, 1);
        r.scopes = scopes;
        r.scopes_len = sizeof scopes - 1;
        if (record_encode(&r, &der, &len) != 0)
            die("record_encode");
        write_file(dir, "record-scopes", der, len);
        OPENSSL_free(der);
        r.rotated = 1;
        r.grace_end = r.created + 3600;
        if (record_encode(&r, &der, &len) != 0)
            die("record_encode");
        write_file(dir, "record-scopes-rotated", der, len);
        OPENSSL_free(der);
        r.scopes = NULL;
        r.scopes_len = 0;
        if (record_encode(&r, &der, &len) != 0)
            die("record_encode");
        write_file(dir, "record-rotated", der, len);
        OPENSSL_free(der);
    }
    /* Version 1 with a scope list appended: skipped, never read as scopes. */
    r = record(0, 0);
    if (record_encode(&r, &der, &len) != 0)
        die("record_encode");
    memcpy(ext, der, len);
    memcpy(ext + len, "\xa0\x06\x0c\x04read", 8);
    ext[1] = (unsigned char)(ext[1] + 8);
    write_file(dir, "record-v1-scopes-appended", ext, len + 8);
    OPENSSL_free(der);
}

static void add_entries(ak_entries *es, int n)
{
    static const char *const aliases[] = {"ci-bot", "Grafana", "metrics-\xc3\xa9t\xc3\xa9", "a"};
    ak_err e;
    for (int i = 0; i < n; i++) {
        ak_record r = record(i, i % 2);
        if (entries_push(es, aliases[i % 4], strlen(aliases[i % 4]), &r, &e) != 0)
            die(e.msg);
    }
}

static void write_keystore(const char *dir, const char *name, int n, const ak_foreign *f,
                           const char *pass)
{
    ak_entries es = {0};
    unsigned char *out;
    size_t len;
    ak_err e;
    add_entries(&es, n);
    if (p12_save(&es, f, pass, strlen(pass), 1, &out, &len, &e) != 0)
        die(e.msg);
    write_file(dir, name, out, len);
    OPENSSL_free(out);
    entries_clear(&es);
}

static PKCS12_SAFEBAG *our_bag(int nid, int i, const char *alias)
{
    ak_record r = record(i, i % 2);
    unsigned char *der;
    size_t len;
    PKCS12_SAFEBAG *bag;
    if (record_encode(&r, &der, &len) != 0)
        die("record_encode");
    bag = PKCS12_SAFEBAG_create_secret(nid, V_ASN1_OCTET_STRING, der, (int)len);
    if (bag == NULL || PKCS12_add_friendlyname_utf8(bag, alias, (int)strlen(alias)) != 1)
        die("secret bag");
    OPENSSL_free(der);
    return bag;
}

static void write_safecontents(const char *dir, const char *name, STACK_OF(PKCS12_SAFEBAG) *bags)
{
    unsigned char *der = NULL;
    int len = ASN1_item_i2d((ASN1_VALUE *)bags, &der, ASN1_ITEM_rptr(PKCS12_SAFEBAGS));
    if (len <= 0)
        die("SafeContents");
    write_file(dir, name, der, (size_t)len);
    OPENSSL_free(der);
}

int main(int argc, char **argv)
{
    ak_entries es = {0};
    ak_foreign *f = NULL;
    ak_err e;
    unsigned char *buf;
    size_t len;
    int nid;
    STACK_OF(PKCS12_SAFEBAG) *bags;

    if (argc != 4)
        die("usage: seeds RECORD_DIR P12_DIR FOREIGN_P12");
    nid = register_record_oid();
    if (nid == NID_undef)
        die("cannot register the record OID");
    write_records(argv[1]);

    write_keystore(argv[2], "keystore-empty", 0, NULL, "");
    write_keystore(argv[2], "keystore-3-keys", 3, NULL, "");
    write_keystore(argv[2], "keystore-2-keys-password", 2, NULL, "fuzz-password");

    buf = read_file(argv[3], &len);
    if (p12_load(buf, len, "", 0, &es, &f, &e) != 0)
        die(e.msg);
    free(buf);
    entries_clear(&es);
    write_keystore(argv[2], "keystore-2-keys-and-cert", 2, f, "");
    foreign_free(f);

    bags = sk_PKCS12_SAFEBAG_new_null();
    sk_PKCS12_SAFEBAG_push(bags, our_bag(nid, 0, "ci-bot"));
    sk_PKCS12_SAFEBAG_push(bags, our_bag(nid, 1, "Grafana"));
    write_safecontents(argv[2], "safecontents-2-keys", bags);
    {
        /* One of ours, a foreign secret (another type OID), and a bag with no friendlyName. */
        PKCS12_SAFEBAG *other = PKCS12_SAFEBAG_create_secret(
            NID_data, V_ASN1_OCTET_STRING, (const unsigned char *)"\x04\x03xyz", 5);
        ak_record r = record(3, 1);
        unsigned char *der;
        if (other == NULL || record_encode(&r, &der, &len) != 0)
            die("foreign bag");
        sk_PKCS12_SAFEBAG_push(bags, other);
        sk_PKCS12_SAFEBAG_push(
            bags, PKCS12_SAFEBAG_create_secret(nid, V_ASN1_OCTET_STRING, der, (int)len));
        OPENSSL_free(der);
    }
    write_safecontents(argv[2], "safecontents-mixed", bags);
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    return 0;
}
