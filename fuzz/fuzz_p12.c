/*
 * fuzz_p12.c: p12_load on arbitrary bytes, with the empty password and with another one.
 *
 * The MAC would stop almost every mutated file at the door, so each input is tried three ways:
 * 1. as it is (the outer DER, the MAC check, both empty-password forms);
 * 2. when it parses as PKCS#12: with its MAC recomputed for the password (iteration count 1),
 *    so that mutations of the AuthenticatedSafe and its bags reach the loader;
 * 3. when it parses as a SafeContents (a sequence of bags): wrapped by this harness into a
 *    keystore, once in plain data and once encrypted (PBES2, AES-256-CBC), with a good MAC, so
 *    that mutated bags, friendlyNames and records reach the loader through both paths.
 *
 * Checks, besides memory safety and leaks:
 * - a failure leaves nothing behind and says why (code badpassword/corrupt/nomem/crypto, one
 *   line);
 * - every loaded entry has a NUL-terminated alias of alias_len bytes and a sane record;
 * - whatever loads saves (p12_save), and loads again to the same entries in the same order;
 * - saving that again keeps the foreign ContentInfos byte for byte (all but the last, ours).
 */
#include "apikey.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HARNESS "fuzz_p12"
#include "fuzz.h"

static const struct {
    const char *pass;
    size_t len;
} passwords[] = {{"", 0}, {"fuzz-password", 13}};

static void check_entries(const ak_entries *es)
{
    for (size_t i = 0; i < es->n; i++) {
        const ak_entry *en = &es->v[i];
        const ak_record *r = &en->rec;
        CHECK(en->alias != NULL && en->alias[en->alias_len] == '\0', "entry %zu: alias", i);
        CHECK(memchr(r->hint, '\0', sizeof r->hint) != NULL, "entry %zu: hint", i);
        CHECK(r->created >= 0 && r->created <= AK_TIME_MAX, "entry %zu: created", i);
        CHECK(r->expires == AK_NO_EXPIRY || (r->expires >= 0 && r->expires <= AK_TIME_MAX),
              "entry %zu: expires", i);
    }
}

static void check_same_entries(const ak_entries *a, const ak_entries *b)
{
    CHECK(a->n == b->n, "%zu entries became %zu", a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const ak_entry *x = &a->v[i], *y = &b->v[i];
        CHECK(x->alias_len == y->alias_len && memcmp(x->alias, y->alias, x->alias_len) == 0,
              "entry %zu: alias '%s' became '%s'", i, x->alias, y->alias);
        CHECK(memcmp(x->rec.hash, y->rec.hash, AK_HASH_LEN) == 0, "entry %zu: hash", i);
        CHECK(strcmp(x->rec.hint, y->rec.hint) == 0, "entry %zu: hint", i);
        CHECK(x->rec.created == y->rec.created, "entry %zu: created", i);
        CHECK(x->rec.expires == y->rec.expires, "entry %zu: expires", i);
    }
}

/* The DER of each ContentInfo of a file's AuthenticatedSafe. */
static STACK_OF(PKCS7) *content_infos(const unsigned char *buf, size_t len)
{
    const unsigned char *p = buf;
    PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)len);
    STACK_OF(PKCS7) *cis;
    CHECK(p12 != NULL && p == buf + len, "a saved file does not parse as PKCS#12");
    cis = PKCS12_unpack_authsafes(p12);
    CHECK(cis != NULL, "a saved file has no AuthenticatedSafe");
    PKCS12_free(p12);
    return cis;
}

static int same_der(PKCS7 *a, PKCS7 *b)
{
    unsigned char *da = NULL, *db = NULL;
    int la = i2d_PKCS7(a, &da), lb = i2d_PKCS7(b, &db);
    int same = la > 0 && la == lb && memcmp(da, db, (size_t)la) == 0;
    OPENSSL_free(da);
    OPENSSL_free(db);
    return same;
}

static void check_foreign_kept(const unsigned char *a, size_t alen, const unsigned char *b,
                               size_t blen)
{
    STACK_OF(PKCS7) *x = content_infos(a, alen), *y = content_infos(b, blen);
    int n = sk_PKCS7_num(x);
    CHECK(n >= 1 && n == sk_PKCS7_num(y), "%d ContentInfos became %d", n, sk_PKCS7_num(y));
    for (int i = 0; i + 1 < n; i++)
        CHECK(same_der(sk_PKCS7_value(x, i), sk_PKCS7_value(y, i)),
              "foreign ContentInfo %d changed", i);
    sk_PKCS7_pop_free(x, PKCS7_free);
    sk_PKCS7_pop_free(y, PKCS7_free);
}

static unsigned char *save(const ak_entries *es, const ak_foreign *f, const char *pass,
                           size_t passlen, size_t *len)
{
    unsigned char *out = NULL;
    ak_err e;
    memset(&e, 0, sizeof e);
    CHECK(p12_save(es, f, pass, passlen, 1, &out, len, &e) == 0 && out != NULL,
          "a loaded keystore does not save: %s (%s)", e.msg, ak_code_name(e.code));
    return out;
}

static void load_and_round_trip(const unsigned char *buf, size_t len, const char *pass,
                                size_t passlen)
{
    ak_entries es = {0}, es2 = {0}, es3 = {0};
    ak_foreign *f = NULL, *f2 = NULL, *f3 = NULL;
    unsigned char *out, *out2;
    size_t outlen = 0, out2len = 0;
    ak_err e;

    memset(&e, 0, sizeof e);
    if (p12_load(buf, len, pass, passlen, &es, &f, &e) != 0) {
        CHECK(es.n == 0 && f == NULL, "a failed load left %zu entries behind", es.n);
        CHECK(e.code == AK_EBADPASSWORD || e.code == AK_ECORRUPT || e.code == AK_ENOMEM ||
                  e.code == AK_ECRYPTO,
              "load failed with code %s", ak_code_name(e.code));
        CHECK(e.msg[0] != '\0' && memchr(e.msg, '\0', sizeof e.msg) != NULL &&
                  strchr(e.msg, '\n') == NULL,
              "load failed without a one-line message");
        entries_clear(&es);
        ERR_clear_error();
        return;
    }
    check_entries(&es);

    out = save(&es, f, pass, passlen, &outlen);
    CHECK(p12_load(out, outlen, pass, passlen, &es2, &f2, &e) == 0,
          "a saved keystore does not load: %s", e.msg);
    check_same_entries(&es, &es2);

    out2 = save(&es2, f2, pass, passlen, &out2len);
    CHECK(p12_load(out2, out2len, pass, passlen, &es3, &f3, &e) == 0,
          "a keystore saved twice does not load: %s", e.msg);
    check_same_entries(&es, &es3);
    check_foreign_kept(out, outlen, out2, out2len);

    OPENSSL_free(out);
    OPENSSL_free(out2);
    entries_clear(&es);
    entries_clear(&es2);
    entries_clear(&es3);
    foreign_free(f);
    foreign_free(f2);
    foreign_free(f3);
    ERR_clear_error();
}

/* Serializes p12 after giving it a SHA-256 MAC for pass, iteration count 1. */
static unsigned char *with_mac(PKCS12 *p12, const char *pass, size_t passlen, int *len)
{
    unsigned char *der = NULL;
    if (PKCS12_set_mac(p12, pass, (int)passlen, NULL, 0, 1, EVP_sha256()) != 1)
        return NULL;
    *len = i2d_PKCS12(p12, &der);
    return *len > 0 ? der : NULL;
}

static void try_remac(const unsigned char *data, size_t size)
{
    for (size_t i = 0; i < sizeof passwords / sizeof passwords[0]; i++) {
        const unsigned char *p = data;
        PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)size);
        unsigned char *der;
        int len = 0;
        if (p12 == NULL)
            break;
        der = with_mac(p12, passwords[i].pass, passwords[i].len, &len);
        if (der != NULL)
            load_and_round_trip(der, (size_t)len, passwords[i].pass, passwords[i].len);
        OPENSSL_free(der);
        PKCS12_free(p12);
    }
    ERR_clear_error();
}

/* A keystore made of one ContentInfo holding bags, encrypted or not, with a good MAC. */
static void try_wrapped(STACK_OF(PKCS12_SAFEBAG) *bags, int encrypt, const char *pass,
                        size_t passlen)
{
    STACK_OF(PKCS7) *safes = sk_PKCS7_new_null();
    PKCS7 *ci = encrypt
                    ? PKCS12_pack_p7encdata(NID_aes_256_cbc, pass, (int)passlen, NULL, 0, 1, bags)
                    : PKCS12_pack_p7data(bags);
    PKCS12 *p12 = NULL;
    unsigned char *der = NULL;
    int len = 0;

    if (safes == NULL || ci == NULL || sk_PKCS7_push(safes, ci) <= 0) {
        PKCS7_free(ci);
        goto done;
    }
    p12 = PKCS12_add_safes(safes, 0);
    if (p12 == NULL)
        goto done;
    der = with_mac(p12, pass, passlen, &len);
    if (der != NULL)
        load_and_round_trip(der, (size_t)len, pass, passlen);
done:
    OPENSSL_free(der);
    PKCS12_free(p12);
    sk_PKCS7_pop_free(safes, PKCS7_free);
    ERR_clear_error();
}

static void try_safecontents(const unsigned char *data, size_t size)
{
    const unsigned char *p = data;
    STACK_OF(PKCS12_SAFEBAG) *bags = (STACK_OF(PKCS12_SAFEBAG) *)ASN1_item_d2i(
        NULL, &p, (long)size, ASN1_ITEM_rptr(PKCS12_SAFEBAGS));
    if (bags == NULL) {
        ERR_clear_error();
        return;
    }
    try_wrapped(bags, 0, "", 0);
    try_wrapped(bags, 1, passwords[1].pass, passwords[1].len);
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    for (size_t i = 0; i < sizeof passwords / sizeof passwords[0]; i++)
        load_and_round_trip(data, size, passwords[i].pass, passwords[i].len);
    try_remac(data, size);
    try_safecontents(data, size);
    return 0;
}
