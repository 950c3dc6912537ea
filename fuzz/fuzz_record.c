/*
 * fuzz_record.c: record_decode on arbitrary bytes, and record_encode of what decodes.
 *
 * Checks, besides memory safety and leaks:
 * - a decoded record has a NUL-terminated hint and times that format back (1970..9999);
 * - what decodes encodes, decodes again to the same record, and encodes again to the same
 *   bytes (the encoding is canonical), which OpenSSL's own DER parser reads in full;
 * - a record built from the input's bytes (any hash, hint, times in range) survives
 *   encode then decode unchanged.
 */
#include "apikey.h"

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HARNESS "fuzz_record"
#include "fuzz.h"

static void check_sane(const ak_record *r, const char *what)
{
    CHECK(memchr(r->hint, '\0', sizeof r->hint) != NULL, "%s: hint not terminated", what);
    CHECK(r->created >= 0 && r->created <= AK_TIME_MAX, "%s: created %lld", what,
          (long long)r->created);
    CHECK(r->expires == AK_NO_EXPIRY || (r->expires >= 0 && r->expires <= AK_TIME_MAX),
          "%s: expires %lld", what, (long long)r->expires);
}

static void check_same(const ak_record *a, const ak_record *b, const char *what)
{
    CHECK(memcmp(a->hash, b->hash, AK_HASH_LEN) == 0, "%s: hash differs", what);
    CHECK(strcmp(a->hint, b->hint) == 0, "%s: hint '%s' became '%s'", what, a->hint, b->hint);
    CHECK(a->created == b->created, "%s: created %lld became %lld", what, (long long)a->created,
          (long long)b->created);
    CHECK(a->expires == b->expires, "%s: expires %lld became %lld", what, (long long)a->expires,
          (long long)b->expires);
}

/* Encodes r, decodes it back, checks it is the same record; returns the encoding. */
static unsigned char *round_trip(const ak_record *r, size_t *len, const char *what)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    ak_record back;
    ASN1_SEQUENCE_ANY *seq;

    CHECK(record_encode(r, &der, len) == 0, "%s: encode failed", what);
    CHECK(der != NULL && *len > 0, "%s: empty encoding", what);
    memset(&back, 0xA5, sizeof back);
    CHECK(record_decode(der, *len, &back) == 0, "%s: its encoding does not decode", what);
    check_same(r, &back, what);

    p = der;
    seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, (long)*len);
    CHECK(seq != NULL && p == der + *len, "%s: encoding is not one DER SEQUENCE", what);
    sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
    return der;
}

static void check_decoded(const unsigned char *data, size_t size)
{
    ak_record r;
    unsigned char *der1, *der2;
    size_t len1 = 0, len2 = 0;

    memset(&r, 0x5A, sizeof r);
    if (record_decode(data, size, &r) != 0)
        return;
    check_sane(&r, "decoded");
    der1 = round_trip(&r, &len1, "decoded");
    {
        ak_record again;
        CHECK(record_decode(der1, len1, &again) == 0, "re-decode");
        der2 = round_trip(&again, &len2, "re-encoded");
    }
    CHECK(len1 == len2 && memcmp(der1, der2, len1) == 0, "encoding not canonical");
    OPENSSL_free(der1);
    OPENSSL_free(der2);
}

/* A record made from 48 bytes: hash, 4 hint characters, and two times mapped into range. */
static void check_built(const unsigned char *data, size_t size)
{
    static const char alphabet[] = "0123456789abcdef-";
    ak_record r;
    uint64_t c, x;
    unsigned char *der;
    size_t len = 0;

    if (size < 48)
        return;
    memset(&r, 0, sizeof r);
    memcpy(r.hash, data, AK_HASH_LEN);
    for (int i = 0; i < AK_HINT_LEN; i++)
        r.hint[i] = alphabet[data[32 + i] % (sizeof alphabet - 1)];
    r.hint[AK_HINT_LEN] = '\0';
    memcpy(&c, data + 36, sizeof c);
    memcpy(&x, data + 40, sizeof x);
    r.created = (int64_t)(c % (uint64_t)(AK_TIME_MAX + 1));
    r.expires = (x & 1) ? AK_NO_EXPIRY : (int64_t)((x >> 1) % (uint64_t)(AK_TIME_MAX + 1));
    der = round_trip(&r, &len, "built");
    OPENSSL_free(der);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    check_decoded(data, size);
    check_built(data, size);
    return 0;
}
